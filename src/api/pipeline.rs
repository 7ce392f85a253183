//! The request pipeline chat, text completions and voted responses share: submitting jobs to the
//! backend, folding their events into per-choice results (one usage builder for all), collecting
//! a whole answer or streaming it through the one streamer, and the one log line per request.

use std::pin::Pin;
use std::time::Instant;

use axum::response::Response;
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::ApiError;
use super::openai::{Completion, CompletionTokensDetails, Progress, PromptTokensDetails, Timings, Usage};
use super::sse::{self, Item};
use crate::backend::{Backend, CancelHandle, Event, FinishReason, JobSpec, LogprobEntry, SeqStats, SubmitError};
use crate::metrics::metrics;

pub fn submit(backend: &dyn Backend, spec: JobSpec) -> Result<(UnboundedReceiver<Event>, CancelHandle), ApiError> {
    backend.submit(spec).map_err(|e| match e {
        SubmitError::QueueFull => ApiError::too_many_requests(1),
        SubmitError::ShuttingDown => ApiError::unavailable("The server is shutting down"),
        SubmitError::Unavailable(why) => ApiError::unavailable(why),
    })
}

/// The events of one response's jobs (completions submits one per prompt), each tagged with its job.
pub type Events = Pin<Box<dyn Stream<Item = (usize, Event)> + Send>>;

pub fn events(receivers: Vec<UnboundedReceiver<Event>>) -> Events {
    Box::pin(futures::stream::select_all(
        receivers.into_iter().enumerate().map(|(i, rx)| UnboundedReceiverStream::new(rx).map(move |e| (i, e))),
    ))
}

#[derive(Debug, Default, Clone)]
pub struct ChoiceResult {
    pub thinking: String,
    pub answer: String,
    pub logprobs: Vec<LogprobEntry>,
    pub finish: Option<FinishReason>,
    pub stats: SeqStats,
}

/// Per-job accumulation of engine events.
pub struct Collector {
    pub endpoint: &'static str,
    /// Effort label of the reasoning plan, for the thinking metrics (None: no thinking).
    pub effort: Option<&'static str>,
    pub id: String,
    pub started: Instant,
    pub first_token: Option<Instant>,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub prompt_ms: f64,
    pub choices: Vec<ChoiceResult>,
    pub error: Option<String>,
    /// Self-consistency: choices stopped early, and P(True) scores per (choice, answer).
    pub stopped: Vec<usize>,
    pub judged: Vec<(usize, String, f64)>,
    /// Online confidence filter thresholds per choice.
    pub calibrated: Vec<(usize, f64)>,
}

impl Collector {
    pub fn new(endpoint: &'static str, id: String, n: usize, started: Instant) -> Self {
        Self {
            endpoint,
            effort: None,
            id,
            started,
            first_token: None,
            prompt_tokens: 0,
            cached_tokens: 0,
            prompt_ms: 0.0,
            choices: vec![ChoiceResult::default(); n],
            error: None,
            stopped: Vec::new(),
            judged: Vec::new(),
            calibrated: Vec::new(),
        }
    }

    pub fn absorb(&mut self, event: &Event) {
        match event {
            Event::Prefilled { prompt_tokens, cached_tokens, prompt_ms } => {
                self.prompt_tokens = *prompt_tokens;
                self.cached_tokens = *cached_tokens;
                self.prompt_ms = *prompt_ms;
            }
            Event::Delta { index, thinking, answer, logprobs } => {
                if self.first_token.is_none() {
                    let now = Instant::now();
                    self.first_token = Some(now);
                    metrics().ttft.with_label_values(&[self.endpoint]).observe((now - self.started).as_secs_f64());
                }
                let c = &mut self.choices[*index];
                c.thinking.push_str(thinking);
                c.answer.push_str(answer);
                c.logprobs.extend(logprobs.iter().cloned());
            }
            Event::Finished { index, reason, stats } => {
                if let Some(effort) = self.effort {
                    let m = metrics();
                    m.thinking_tokens.with_label_values(&[effort]).observe(stats.thinking_tokens as f64);
                    m.thinking_seconds.with_label_values(&[effort]).observe(stats.thinking_ms / 1000.0);
                    m.forced_cutoffs.with_label_values(&[effort]).inc_by(u64::from(stats.cut_off));
                    m.wait_extensions.with_label_values(&[effort]).inc_by(stats.extensions as u64);
                }
                let c = &mut self.choices[*index];
                c.finish = Some(*reason);
                c.stats = stats.clone();
            }
            Event::Error { message } => self.error = Some(message.clone()),
            Event::Stopped { choice } => self.stopped.push(*choice),
            Event::Judged { choice, answer, score } => self.judged.push((*choice, answer.clone(), *score)),
            Event::Calibrated { choice, threshold } => self.calibrated.push((*choice, *threshold)),
        }
    }

    pub fn done(&self) -> bool {
        self.error.is_some() || self.choices.iter().all(|c| c.finish.is_some())
    }

    pub fn completion_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.completion_tokens).sum()
    }

    pub fn reasoning_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.thinking_tokens).sum()
    }

    pub fn timings(&self) -> Timings {
        let thinking_ms: f64 = self.choices.iter().map(|c| c.stats.thinking_ms).fold(0.0, f64::max);
        let answer_ms: f64 = self.choices.iter().map(|c| c.stats.answer_ms).fold(0.0, f64::max);
        let predicted = self.completion_tokens();
        let predicted_ms = self.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        Timings {
            prompt_n: self.prompt_tokens as u32,
            prompt_ms: self.prompt_ms,
            predicted_n: predicted,
            predicted_ms,
            predicted_per_second: if predicted_ms > 0.0 { predicted as f64 * 1000.0 / predicted_ms } else { 0.0 },
            thinking_n: self.reasoning_tokens(),
            thinking_ms,
            answer_n: self.choices.iter().map(|c| c.stats.answer_tokens).sum(),
            answer_ms,
            ttft_ms: self.first_token.map_or(0.0, |t| (t - self.started).as_secs_f64() * 1000.0),
            total_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// The one structured log line per job, plus the latency histogram.
    pub fn log(&self) {
        let total = self.started.elapsed().as_secs_f64();
        metrics().request_latency.with_label_values(&[self.endpoint]).observe(total);
        let finish: Vec<&str> = self.choices.iter().map(|c| c.finish.map_or("none", FinishReason::as_str)).collect();
        tracing::info!(
            id = %self.id,
            endpoint = self.endpoint,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens(),
            reasoning_tokens = self.reasoning_tokens(),
            prompt_ms = self.prompt_ms as u64,
            ttft_ms = self.first_token.map_or(0, |t| (t - self.started).as_millis() as u64),
            total_ms = (total * 1000.0) as u64,
            finish = ?finish,
            error = self.error.as_deref().unwrap_or(""),
            "request done"
        );
    }
}

/// OpenAI `usage` over the jobs of one response.
pub fn usage(cols: &[Collector]) -> Usage {
    let prompt: usize = cols.iter().map(|c| c.prompt_tokens).sum();
    let completion: u32 = cols.iter().map(Collector::completion_tokens).sum();
    Usage {
        prompt_tokens: prompt as u32,
        completion_tokens: completion,
        total_tokens: prompt as u32 + completion,
        prompt_tokens_details: PromptTokensDetails { cached_tokens: cols.iter().map(|c| c.cached_tokens as u32).sum() },
        completion_tokens_details: CompletionTokensDetails { reasoning_tokens: cols.iter().map(Collector::reasoning_tokens).sum() },
    }
}

/// One response's events read into its collectors: until every choice finished, or, with
/// `drain`, until the backend closes the channel (a vote's judgements follow its finishes).
struct Reader {
    cols: Vec<Collector>,
    events: Events,
    drain: bool,
}

impl Reader {
    /// The next event, already absorbed into its job's collector.
    async fn next(&mut self) -> Option<(usize, Event)> {
        if !self.drain && self.cols.iter().all(Collector::done) {
            return None;
        }
        let (i, event) = self.events.next().await?;
        self.cols[i].absorb(&event);
        Some((i, event))
    }

    /// The first failure once reading stopped, or a channel closed before every choice finished.
    fn failure(&self) -> Option<ApiError> {
        match self.cols.iter().find_map(|c| c.error.clone()) {
            Some(m) => Some(ApiError::internal(m)),
            None if !self.cols.iter().all(Collector::done) => Some(ApiError::internal("the engine dropped the request")),
            None => None,
        }
    }
}

/// A whole (non-streamed) answer: every event read, each job logged.
pub async fn collect(cols: Vec<Collector>, events: Events, drain: bool) -> Result<Vec<Collector>, ApiError> {
    let mut r = Reader { cols, events, drain };
    while r.next().await.is_some() {}
    r.cols.iter().for_each(Collector::log);
    match r.failure() {
        Some(e) => Err(e),
        None => Ok(r.cols),
    }
}

/// The fields every object of one response shares.
#[derive(Clone)]
pub struct Envelope {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Envelope {
    pub fn new(id: String, model: String) -> Self {
        Self { id, created: unix_now(), model }
    }

    pub fn wrap<C>(&self, object: &'static str, choices: Vec<C>) -> Completion<C> {
        Completion {
            id: self.id.clone(),
            object,
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: super::FINGERPRINT,
            choices,
            usage: None,
            timings: None,
            thinkscale: None,
        }
    }
}

/// What a streamed endpoint sends: a chunk with one choice, or a progress comment.
pub enum Out<C> {
    Choice(C),
    Progress(Progress),
}

/// How one endpoint turns events into chunks; `stream` does the rest (reading, errors, usage, logs).
pub trait Render: Send + 'static {
    type Choice: Serialize + Send + 'static;
    /// The chunks' `object`.
    const OBJECT: &'static str;
    /// Read until the backend closes the channel (see `read`).
    const DRAIN: bool = false;
    /// Chunks before any event: role announcements, echoed prompts.
    fn opening(&mut self) -> Vec<Out<Self::Choice>> {
        Vec::new()
    }
    /// Chunks for one event of job `job`, already absorbed into its collector.
    fn event(&mut self, job: usize, event: &Event) -> Vec<Out<Self::Choice>>;
    /// Chunks once every job finished without error (a vote's decided answers); grading hooks.
    fn closing(&mut self, _cols: &[Collector]) -> Vec<Out<Self::Choice>> {
        Vec::new()
    }
}

/// The one streamer: server-sent chunks for chat, voted chat and text completions. A failure
/// mid-stream is sent as an OpenAI error object; the usage chunk comes last when asked for.
pub fn stream<R: Render>(env: Envelope, cols: Vec<Collector>, events: Events, include_usage: bool, mut render: R) -> Response {
    let item = |env: &Envelope, out: Out<R::Choice>| match out {
        Out::Choice(c) => Item::json(&env.wrap(R::OBJECT, vec![c])),
        Out::Progress(p) => Item::Comment(format!("thinkscale {}", serde_json::to_string(&p).unwrap_or_default())),
    };
    let s = async_stream::stream! {
        let mut r = Reader { cols, events, drain: R::DRAIN };
        for out in render.opening() {
            yield item(&env, out);
        }
        while let Some((job, event)) = r.next().await {
            for out in render.event(job, &event) {
                yield item(&env, out);
            }
        }
        match r.failure() {
            Some(e) => yield Item::json(&e.body()),
            None => {
                for out in render.closing(&r.cols) {
                    yield item(&env, out);
                }
                if include_usage {
                    let mut last = env.wrap::<R::Choice>(R::OBJECT, Vec::new());
                    last.usage = Some(usage(&r.cols));
                    last.timings = Some(r.cols[0].timings());
                    yield Item::json(&last);
                }
            }
        }
        r.cols.iter().for_each(Collector::log);
    };
    sse::respond(s)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
