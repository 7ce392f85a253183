//! The engine: one OS thread owns the llama.cpp context and runs continuous batching. Handlers talk
//! to it only through `Engine::submit` (a bounded queue in) and an event channel per job (out).

pub mod ceiling;
mod logits;
pub mod model;
mod scheduler;
pub mod sequence;
pub mod template;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::reasoning::chat::Message;
use crate::reasoning::confidence::{ChainScore, ChainScores};
pub use crate::reasoning::vote::StopRule;
pub use model::Model;
pub use sequence::FinishReason;

#[derive(Debug, Clone)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub min_p: f32,
    pub seed: u32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repeat_penalty: f32,
    pub stop: Vec<String>,
    /// Top alternatives to report per token (`Some(0)`: only the chosen token's log-prob).
    pub logprobs: Option<u32>,
    /// OpenAI `logit_bias`: (token id, bias added to its logit).
    pub logit_bias: Vec<(i32, f32)>,
    /// Grammar every sampled answer token must follow (structured output, forced tool calls).
    pub grammar: Option<Grammar>,
}

/// A GBNF grammar and the rule it starts from.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub gbnf: String,
    pub root: &'static str,
}

/// How the engine must force thinking for every sequence of a job. Texts are tokenized by the engine.
#[derive(Debug, Clone)]
pub struct ForcingRequest {
    pub min_thinking: u32,
    /// Thinking budget; `None` = until the model closes (within `max_tokens`).
    pub max_thinking: Option<u32>,
    /// Text that ends thinking when the model writes it.
    pub close_marker: String,
    /// Text the server injects to end thinking (the marker, set apart from the chain).
    pub close_text: String,
    pub budget_message: String,
    pub answer_cue: String,
    pub wait_text: String,
    pub max_extensions: u32,
    pub answer_reserve: u32,
}

/// Self-consistency: how the engine schedules and checks a job's samples.
pub struct VotePlan {
    /// Samples per choice: sample `i` belongs to choice `i / group`.
    pub group: usize,
    /// Launch a choice's samples in waves and stop early by a rule.
    pub adaptive: Option<Adaptive>,
    pub judge: Option<Judge>,
    /// Measure each chain's confidence from its tokens' top-k log-probabilities.
    pub confidence: Option<ConfidenceSpec>,
}

#[derive(Debug, Clone, Copy)]
pub struct Adaptive {
    /// Samples launched together; the next wave starts when this one is over.
    pub wave: usize,
    pub rule: StopRule,
    /// Online confidence filter: the first wave calibrates a threshold keeping this share of
    /// chains like it, and later chains whose group confidence falls below it stop at once.
    pub prune_keep: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConfidenceSpec {
    /// Candidates per token in the token confidence.
    pub top_k: usize,
    /// Tokens per group (sliding window).
    pub window: usize,
    /// The chain score that prunes and weighs.
    pub score: ChainScore,
}

/// How proposed answers are judged (P(True): the probability of "Yes" against "No").
pub enum Judge {
    /// By the serving model, on spare sequences forked from the prompt: the text teacher-forced
    /// after the prompt for one proposed answer, and the token ids of "Yes" and "No".
    Fork { suffix: Box<dyn Fn(&str) -> String + Send + Sync>, yes: Vec<usize>, no: Vec<usize> },
    /// By the `--verifier-model`, which must read the whole judging conversation.
    Verifier { conversation: Box<dyn Fn(&str) -> Vec<Message> + Send + Sync> },
}

impl std::fmt::Debug for VotePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VotePlan")
            .field("group", &self.group)
            .field("adaptive", &self.adaptive)
            .field("judge", &self.judge.is_some())
            .field("confidence", &self.confidence)
            .finish()
    }
}

/// Spellings of the judge's two answers; the first token of each is read from the logits.
pub const JUDGE_YES: [&str; 5] = ["Yes", " Yes", "yes", " yes", "YES"];
pub const JUDGE_NO: [&str; 5] = ["No", " No", "no", " no", "NO"];

#[derive(Debug)]
pub struct JobSpec {
    pub id: String,
    pub prompt: Vec<LlamaToken>,
    /// Sequences forked from the prompt (OpenAI `n`, or self-consistency samples).
    pub n: usize,
    pub sampling: SamplingParams,
    /// Cap on all tokens each sequence adds after the prompt (thinking, forced text and answer).
    pub max_tokens: u32,
    pub forcing: Option<ForcingRequest>,
    /// Collect each sequence's mean log-probability (verifier input) even without `logprobs`.
    pub want_logprob: bool,
    pub vote: Option<VotePlan>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogprobEntry {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
    /// Sampled while thinking: not part of `content` when thinking is returned apart.
    #[serde(skip)]
    pub thinking: bool,
}

/// What a finished sequence reports.
#[derive(Debug, Clone, Default)]
pub struct SeqStats {
    pub completion_tokens: u32,
    pub thinking_tokens: u32,
    pub answer_tokens: u32,
    pub extensions: u32,
    pub cut_off: bool,
    pub mean_logprob: f64,
    pub thinking_ms: f64,
    pub answer_ms: f64,
    pub thinking: String,
    pub answer: String,
    /// Measured when the job asked for confidence.
    pub confidence: Option<ChainScores>,
}

#[derive(Debug)]
pub enum Event {
    /// The prompt is in the KV cache (`cached_tokens` of it copied from another request's).
    Prefilled { prompt_tokens: usize, cached_tokens: usize, prompt_ms: f64 },
    Delta { index: usize, thinking: String, answer: String, logprobs: Vec<LogprobEntry> },
    Finished { index: usize, reason: FinishReason, stats: SeqStats },
    /// A self-consistency choice stopped early: its remaining samples were cancelled or skipped.
    Stopped { choice: usize },
    /// The online confidence filter's threshold for a choice, calibrated on its first wave.
    Calibrated { choice: usize, threshold: f64 },
    /// P(True) of one proposed answer of a choice.
    Judged { choice: usize, answer: String, score: f64 },
    Error { message: String },
}

#[derive(Debug)]
pub enum SubmitError {
    QueueFull,
    ShuttingDown,
}

/// A job in the queue, with its reply channel.
pub(crate) struct Job {
    spec: JobSpec,
    events: mpsc::UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
    enqueued: Instant,
}

/// Lets a handler stop its job (dropping the event receiver does the same).
#[derive(Clone)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Live engine figures for /health and /metrics.
#[derive(Default)]
pub struct EngineStats {
    pub active_sequences: AtomicU64,
    pub kv_cells_used: AtomicU64,
    /// Test hook (`serve --test-hooks`): the engine thread panics at its next step, so tests can
    /// check what a failed engine looks like from outside.
    pub panic_requested: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Job>,
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
        let model = Arc::new(Model::load(
            &cfg.model,
            cfg.gpu_layers,
            &cfg.chat_template_fallback,
            cfg.jinja,
            think,
            cfg.backends_dir.as_deref(),
        )?);
        let threads = cfg.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(4));
        let verifier = match &cfg.reasoning.verifier_model {
            Some(path) => Some(Arc::new(Model::load(path, cfg.gpu_layers, &cfg.chat_template_fallback, cfg.jinja, None, cfg.backends_dir.as_deref())?)),
            None => None,
        };
        let has_verifier = verifier.is_some();
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let stats = Arc::new(EngineStats::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let loop_cfg = scheduler::LoopConfig { n_ctx: cfg.ctx_size, parallel: cfg.parallel, n_batch: cfg.batch_size, threads };
        let (m, s) = (model.clone(), stats.clone());
        let handle = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || scheduler::run(m, verifier, loop_cfg, rx, s, ready_tx))?;
        // The context is created on the engine thread; wait for it so a failure is reported here.
        let n_ctx = ready_rx.recv().map_err(|_| anyhow::anyhow!("engine thread exited during start-up"))??;
        crate::metrics::metrics().kv_cells_total.set(n_ctx as i64);
        let slot_ctx = n_ctx / cfg.parallel;
        Ok((Self { tx, model, n_ctx, slot_ctx, parallel: cfg.parallel, has_verifier, stats }, handle))
    }

    pub fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, CancelHandle), SubmitError> {
        let (events, rx) = mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job { spec, events, cancel: cancel.clone(), enqueued: Instant::now() };
        match self.tx.try_send(job) {
            Ok(()) => {
                crate::metrics::metrics().queue_depth.set(self.queue_depth() as i64);
                Ok((rx, CancelHandle(cancel)))
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::ShuttingDown),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}
