//! The engine: one OS thread owns the llama.cpp context and runs continuous batching. Handlers talk
//! to it only through `Engine::submit` (a bounded queue in) and an event channel per job (out).

mod batch;
pub mod ceiling;
pub mod cpu;
mod crash;
mod logits;
pub mod model;
mod scheduler;
pub mod sequence;
mod slots;
pub mod template;
mod threads;
mod verifier;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::backend::{Bell, Event, JobHandle, JobSpec, SubmitError, Token};
use crate::config::Config;
pub use model::Model;

// The backend contract's token ids, as llama.cpp takes them and back.
impl From<Token> for llama_cpp_2::token::LlamaToken {
    fn from(t: Token) -> Self {
        Self(t.0)
    }
}

impl From<llama_cpp_2::token::LlamaToken> for Token {
    fn from(t: llama_cpp_2::token::LlamaToken) -> Self {
        Self(t.0)
    }
}

/// The name of the thread that owns the llama.cpp context (a panic on it is the engine failing).
pub const THREAD: &str = "engine";

/// A job in the queue, with its reply channel.
pub(crate) struct Job {
    spec: JobSpec,
    events: mpsc::UnboundedSender<Event>,
    handle: JobHandle,
    enqueued: Instant,
}

/// Live engine figures for /health and /metrics.
#[derive(Default)]
pub struct EngineStats {
    pub active_sequences: AtomicU64,
    pub kv_cells_used: AtomicU64,
    /// Test hook (`serve --test-hooks`): the engine thread panics at its next step, so tests can
    /// check what a failed engine looks like from outside.
    pub panic_requested: std::sync::atomic::AtomicBool,
    /// Test hook: the next decode raises SIGSEGV, as a faulting kernel would.
    pub signal_requested: std::sync::atomic::AtomicBool,
}

/// Under `cpu_wait = "auto"`, what tells the decoding threads to go serial on a shared machine.
fn governor(cfg: &Config, threads: i32) -> Option<Arc<threads::Governor>> {
    (cfg.cpu_wait == crate::config::CpuWait::Auto).then(|| threads::Governor::start(threads)).flatten()
}

#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Job>,
    /// Wakes the engine thread while it waits on its jobs' verdicts.
    bell: Arc<Bell>,
    pub model: Arc<Model>,
    /// Total KV cells, and the cells of each slot's private stream (the most one request may use).
    pub n_ctx: u32,
    pub slot_ctx: u32,
    pub parallel: u32,
    /// A second model loaded for `verifier: "model"`.
    pub has_verifier: bool,
    pub stats: Arc<EngineStats>,
}

impl Engine {
    /// Load the model (blocking) and start the engine thread.
    pub fn start(cfg: &Config) -> anyhow::Result<(Self, std::thread::JoinHandle<()>)> {
        let think = match (&cfg.reasoning.think_open, &cfg.reasoning.think_close) {
            (Some(o), Some(c)) => Some((o.clone(), c.clone())),
            _ => None,
        };
        let model =
            Arc::new(Model::load(&cfg.model, cfg.gpu_layers, &cfg.chat_template_fallback, cfg.jinja, think, cfg.backends_dir.as_deref())?);
        let threads = cfg.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(4));
        let verifier = match &cfg.reasoning.verifier_model {
            Some(path) => Some(Arc::new(Model::load(
                path,
                cfg.gpu_layers,
                &cfg.chat_template_fallback,
                cfg.jinja,
                None,
                cfg.backends_dir.as_deref(),
            )?)),
            None => None,
        };
        let has_verifier = verifier.is_some();
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let stats = Arc::new(EngineStats::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let loop_cfg = scheduler::LoopConfig {
            n_ctx: cfg.ctx_size,
            parallel: cfg.parallel,
            n_batch: cfg.batch_size,
            threads,
            cache: cfg.cache_type,
            governor: governor(cfg, threads),
        };
        let bell = Arc::new(Bell::default());
        let (m, s, b) = (model.clone(), stats.clone(), bell.clone());
        let handle =
            std::thread::Builder::new().name(THREAD.into()).spawn(move || scheduler::run(m, verifier, loop_cfg, rx, b, s, ready_tx))?;
        // The context is created on the engine thread; wait for it so a failure is reported here.
        let n_ctx = ready_rx.recv().map_err(|_| anyhow::anyhow!("engine thread exited during start-up"))??;
        crate::metrics::metrics().kv_cells_total.set(n_ctx as i64);
        let slot_ctx = n_ctx / cfg.parallel;
        Ok((Self { tx, bell, model, n_ctx, slot_ctx, parallel: cfg.parallel, has_verifier, stats }, handle))
    }

    pub fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, JobHandle), SubmitError> {
        let (events, rx) = mpsc::unbounded_channel();
        let cancel = JobHandle::with_bell(self.bell.clone());
        let job = Job { spec, events, handle: cancel.clone(), enqueued: Instant::now() };
        match self.tx.try_send(job) {
            Ok(()) => {
                self.bell.ring();
                crate::metrics::metrics().queue_depth.set(self.queue_depth() as i64);
                Ok((rx, cancel))
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::ShuttingDown),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
