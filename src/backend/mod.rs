//! The contract between the request pipeline and whatever generates tokens. A validated `JobSpec`
//! goes in; `Event`s come out (prefill, deltas, finishes, and the self-consistency group's stops,
//! calibrations and judgements). Two backends keep it: `embedded` (the llama.cpp engine in this
//! process) and `remote` (OpenAI-compatible engines over HTTP). Both drive the same per-sequence
//! controller (`controller.rs`: forcing, stop strings, length, pruning) and the same sample-group
//! state machine (`groups.rs`: waves, early stops, judges), so test-time compute behaves alike.

pub mod controller;
pub mod embedded;
pub mod groups;
pub mod remote;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::reasoning::chat::Message;
use crate::reasoning::confidence::{ChainScore, ChainScores};
use crate::reasoning::tools::Tool;
// The contract's value types that every layer shares.
pub use crate::reasoning::labels::FinishReason;
pub use crate::reasoning::logprobs::{LogprobEntry, TopLogprob};
pub use crate::reasoning::vote::StopRule;

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
    /// Structured output an engine enforces itself (a remote backend passes it on as
    /// `response_format`): the answer's JSON schema, when no grammar was compiled here.
    pub json_schema: Option<String>,
}

/// Why no grammar could be had (the message is what the client is shown, inside the gate's).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrammarError {
    /// llama.cpp cannot turn the schema into GBNF.
    #[error("{0}")]
    Schema(String),
    /// The grammar does not load against the model's vocabulary.
    #[error("{0}")]
    Load(String),
    #[error("the remote backend takes no grammar")]
    Remote,
}

/// Why a backend cannot serve now (`/health` answers 503 with it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unhealthy {
    #[error("no backend replica is up ({})", .0.join(", "))]
    NoReplica(Vec<String>),
}

/// A GBNF grammar and the rule it starts from.
#[derive(Debug, Clone)]
pub struct Grammar {
    pub gbnf: String,
    pub root: &'static str,
}

/// How the backend must force thinking for every sequence of a job. Texts are tokenized by the backend.
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

/// Self-consistency: how the backend schedules and checks a job's samples.
#[derive(Debug)]
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
    /// A wave of its own comes first: the choice's first sample, decoded greedily (temperature
    /// 0, the model's most likely answer); the waves of `wave` sampled chains follow only when
    /// the stop rule is not met by then.
    pub greedy_first: bool,
    pub rule: StopRule,
    /// Online confidence filter: the first wave calibrates a threshold keeping this share of
    /// chains like it, and later chains whose group confidence falls below it stop at once.
    pub prune_keep: Option<f64>,
}

impl Adaptive {
    /// Whether `launched` samples end a wave (the next one waits for them).
    pub fn wave_ends(&self, launched: usize) -> bool {
        let sampled = if self.greedy_first { launched.checked_sub(1) } else { Some(launched) };
        sampled.is_some_and(|l| l.is_multiple_of(self.wave))
    }
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

/// How proposed answers are judged (P(True): the probability of "Yes" against "No", read from
/// the first token after the judging text). Plain data, rendered at the gate: no template is
/// rendered once a job has reached a backend.
#[derive(Debug, Clone)]
pub enum Judge {
    /// By the serving model: `before`, the proposed answer, then `after`, teacher-forced after
    /// the prompt.
    Fork { before: String, after: String },
    /// By the `--verifier-model`, which reads the whole judging conversation
    /// (`reasoning::chat::judging_conversation`) in its own template, on its own thread.
    Verifier { messages: Vec<Message>, question: String },
}

impl Judge {
    /// The serving model's judging text for one answer (None for a verifier-model judge).
    pub fn fork_text(&self, answer: &str) -> Option<String> {
        match self {
            Self::Fork { before, after } => Some(format!("{before}{answer}{after}")),
            Self::Verifier { .. } => None,
        }
    }
}

/// Spellings of the judge's two answers; the first token of each is read from the logits.
pub const JUDGE_YES: [&str; 5] = ["Yes", " Yes", "yes", " yes", "YES"];
pub const JUDGE_NO: [&str; 5] = ["No", " No", "no", " no", "NO"];

#[derive(Debug)]
pub struct JobSpec {
    pub id: String,
    /// The prompt as text (what a remote engine is sent) and as tokens (what the embedded engine
    /// decodes, and what the room checks counted).
    pub text: String,
    pub prompt: Vec<Token>,
    /// Sequences forked from the prompt (OpenAI `n`, or self-consistency samples).
    pub n: usize,
    pub sampling: SamplingParams,
    /// Cap on all tokens each sequence adds after the prompt (thinking, forced text and answer).
    pub max_tokens: u32,
    /// Budget forcing, its injected texts tokenized at the gate.
    pub forcing: Option<controller::JobForcing>,
    /// Collect each sequence's mean log-probability (verifier input) even without `logprobs`.
    pub want_logprob: bool,
    pub vote: Option<VotePlan>,
}

impl JobSpec {
    /// Samples per choice (1 without self-consistency).
    pub fn group(&self) -> usize {
        self.vote.as_ref().map_or(1, |v| v.group.max(1))
    }

    /// Sequence `index`'s sampling: its own seed, and greedy for a choice's first sample when the
    /// plan decodes that one first (`Adaptive::greedy_first`). Both backends start sequences so.
    pub fn sampling_of(&self, index: usize) -> SamplingParams {
        let mut s = self.sampling.clone();
        s.seed = s.seed.wrapping_add(index as u32);
        let greedy_first = self.vote.as_ref().and_then(|v| v.adaptive).is_some_and(|a| a.greedy_first);
        if greedy_first && index.is_multiple_of(self.group()) {
            s.temperature = 0.0;
        }
        s
    }
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

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The engine failed (a decode error, every replica gone): the server's fault.
    #[error("{0}")]
    Failed(String),
    /// The engine refused the request as sent (a remote engine's 4xx, such as a JSON schema it
    /// cannot enforce): the client's, with the request field at fault where known.
    #[error("{message}")]
    Refused { message: String, param: Option<String> },
}

#[derive(Debug)]
pub enum Event {
    /// The job left the queue: its prompt is being prefilled (or sent to a remote engine).
    Admitted,
    /// The prompt is in the KV cache (`cached_tokens` of it reused from another request's).
    Prefilled {
        prompt_tokens: usize,
        cached_tokens: usize,
        prompt_ms: f64,
    },
    Delta {
        index: usize,
        thinking: String,
        answer: String,
        logprobs: Vec<LogprobEntry>,
    },
    Finished {
        index: usize,
        reason: FinishReason,
        stats: SeqStats,
    },
    /// A self-consistency choice stopped early: its remaining samples were cancelled or skipped.
    Stopped {
        choice: usize,
    },
    /// The online confidence filter's threshold for a choice, calibrated on its first wave.
    Calibrated {
        choice: usize,
        threshold: f64,
    },
    /// P(True) of one proposed answer of a choice, and the prompt tokens judging it read beyond
    /// the request's shared prompt (billed in `usage`).
    Judged {
        choice: usize,
        answer: String,
        score: f64,
        tokens: u32,
    },
    Error(JobError),
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("every slot is busy and the queue is full")]
    QueueFull,
    #[error("the server is shutting down")]
    ShuttingDown,
    /// No replica of a remote backend is up.
    #[error("{0}")]
    Unavailable(String),
}

/// A handler's side of a running job: it may stop the job (dropping the event receiver does the
/// same) and, for a job whose stop rule reads verdicts (`StopRule::Verified`), hand in each
/// finished sample's verdict.
#[derive(Clone, Default)]
pub struct JobHandle(Arc<Control>);

#[derive(Default)]
struct Control {
    cancelled: AtomicBool,
    verdicts: std::sync::Mutex<Vec<SampleVerdict>>,
    arrived: tokio::sync::Notify,
    /// A worker thread that waits for what the handle hands in (the embedded engine's).
    bell: Option<Arc<Bell>>,
}

/// Wakes a backend's worker thread (not an async task) when there is something to do: a job
/// submitted, a verdict handed in, a job cancelled. Rings are not counted: one wait takes them all.
#[derive(Default)]
pub struct Bell {
    rung: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
}

impl Bell {
    pub fn ring(&self) {
        if let Ok(mut rung) = self.rung.lock() {
            *rung = true;
            self.cv.notify_one();
        }
    }

    /// Returns once rung since the last wait, or after `timeout`.
    pub fn wait(&self, timeout: std::time::Duration) {
        let Ok(rung) = self.rung.lock() else { return };
        if let Ok((mut rung, _)) = self.cv.wait_timeout_while(rung, timeout, |r| !*r) {
            *rung = false;
        }
    }
}

/// What a checking verifier found of one finished sample's program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleVerdict {
    pub index: usize,
    /// Passed every test it was given.
    pub passed: bool,
    /// Samples whose programs behave alike share this key.
    pub behaviour: u64,
}

impl SampleVerdict {
    /// A sample that could not be checked counts as failing.
    pub fn failed(index: usize) -> Self {
        Self { index, passed: false, behaviour: 0 }
    }
}

impl JobHandle {
    /// A handle whose verdicts and cancel also ring `bell`.
    pub fn with_bell(bell: Arc<Bell>) -> Self {
        Self(Arc::new(Control { bell: Some(bell), ..Control::default() }))
    }
    fn wake(&self) {
        self.0.arrived.notify_one();
        if let Some(b) = &self.0.bell {
            b.ring();
        }
    }
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
        self.wake();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }
    pub fn verdict(&self, v: SampleVerdict) {
        if let Ok(mut q) = self.0.verdicts.lock() {
            q.push(v);
        }
        self.wake();
    }
    /// Verdicts handed in since the last call.
    pub fn take_verdicts(&self) -> Vec<SampleVerdict> {
        self.0.verdicts.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default()
    }
    /// Resolves once a verdict (or a cancel) was handed in after the last wait.
    pub async fn arrived(&self) {
        self.0.arrived.notified().await;
    }
}

/// What a request may ask of a backend; a request needing something absent gets a 400 naming it.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// Grammar-constrained sampling here (`response_format` with a schema, forced tool calls).
    pub grammar: bool,
    /// The engine itself takes a JSON schema for the answer (`response_format`).
    pub json_schema: bool,
    /// `verifier: "model"` (a second model in this process).
    pub verifier_model: bool,
}

/// Why the model's text side could not serve a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TextError {
    /// The input itself is refused (a template that rejects the conversation): the client's fault.
    #[error("{0}")]
    Invalid(String),
    /// The input does not fit in the model's context.
    #[error("{0}")]
    TooLong(String),
    /// The backend could not be asked (a remote engine down or failing).
    #[error("{0}")]
    Unavailable(String),
}

/// A token id in the model's vocabulary: the contract's own type, so nothing above the embedded
/// engine depends on llama.cpp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(pub i32);

/// The model's text side, for the request pipeline: its chat template, tokenizer and vocabulary.
/// Calls may block (a remote backend asks its engine), so the pipeline runs them off the async
/// workers.
pub trait Vocabulary: Send + Sync {
    fn render_chat(&self, messages: &[Message], tools: &[Tool]) -> Result<String, TextError>;
    fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<Token>, TextError>;
    /// Vocabulary size, where known (logit-bias keys are checked against it).
    fn n_vocab(&self) -> Option<i32>;
    /// End-of-generation token ids (`ignore_eos` bans them).
    fn eog(&self) -> &[i32];
    fn think_markers(&self) -> Option<(String, String)>;
    /// A grammar for a JSON schema, checked against this vocabulary.
    fn json_grammar(&self, schema: &str) -> Result<Grammar, GrammarError>;
    /// A grammar for tool calls following `schema` (one call, or several when `parallel`).
    fn tool_grammar(&self, schema: &str, parallel: bool) -> Result<Grammar, GrammarError>;
}

/// What `/health` shows of a backend that can serve, named by `backend`.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum Health {
    Embedded {
        slots_total: u32,
        slots_busy: u64,
        queue_depth: usize,
        kv_cells_used: u64,
        n_ctx: u32,
        slot_ctx: u32,
        gpu_layers: u32,
        n_layer: u32,
        devices: Vec<String>,
        /// The llama.cpp CPU kernels this process runs: the variant chosen for this CPU and its
        /// instruction-set features.
        cpu: Option<embedded::engine::cpu::CpuBackend>,
    },
    Remote {
        backend_model: String,
        slot_ctx: u32,
        replicas: Vec<remote::replicas::ReplicaStatus>,
    },
}

/// A token generator the request pipeline can submit jobs to.
pub trait Backend: Send + Sync {
    fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, JobHandle), SubmitError>;
    fn vocabulary(&self) -> Arc<dyn Vocabulary>;
    /// The most tokens one request may hold (prompt and output).
    fn slot_ctx(&self) -> u32;
    fn capabilities(&self) -> Capabilities;
    /// Model and engine facts for `/v1/models` (`meta`).
    fn meta(&self) -> serde_json::Value;
    /// Live state for `/health`: `Err` with the reason when the backend cannot serve.
    fn health(&self) -> Result<Health, Unhealthy>;
    /// Test hook: make the backend fail visibly (the embedded engine thread panics, or dies of a
    /// signal inside a decode).
    fn fail_for_test(&self, _how: EngineFault) {}
}

/// How the test hook makes the engine fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineFault {
    /// The engine thread panics at its next step.
    Panic,
    /// SIGSEGV inside the next decode, as a faulting llama.cpp kernel would.
    Signal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_bell_wakes_its_waiter_and_a_ring_before_the_wait_is_kept() {
        let bell = Arc::new(Bell::default());
        let handle = JobHandle::with_bell(bell.clone());
        handle.verdict(SampleVerdict::failed(0));
        let t = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(10), "the ring before the wait was lost");
        // Taken: the next wait sleeps until its timeout, or until another thread rings.
        let t = Instant::now();
        bell.wait(Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(50));
        let ringer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            handle.cancel();
        });
        let t = Instant::now();
        bell.wait(Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(10), "the cancel did not ring");
        ringer.join().unwrap();
    }
}
