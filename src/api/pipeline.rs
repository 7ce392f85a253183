//! The request pipeline chat, text completions and voted responses share: submitting a job to the
//! backend, folding its events into per-choice results, usage and timings (one usage builder for
//! all of them), and the one log line per request.

use std::time::Instant;

use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::error::ApiError;
use super::grading::AutoDecision;
use crate::backend::{Backend, CancelHandle, Event, FinishReason, JobSpec, LogprobEntry, SeqStats, SubmitError};
use crate::metrics::metrics;

pub fn submit(backend: &dyn Backend, spec: JobSpec) -> Result<(UnboundedReceiver<Event>, CancelHandle), ApiError> {
    backend.submit(spec).map_err(|e| match e {
        SubmitError::QueueFull => ApiError::too_many_requests(1),
        SubmitError::ShuttingDown => ApiError::unavailable("The server is shutting down"),
        SubmitError::Unavailable(why) => ApiError::unavailable(why),
    })
}

#[derive(Debug, Default, Clone)]
pub struct ChoiceResult {
    pub thinking: String,
    pub answer: String,
    pub logprobs: Vec<LogprobEntry>,
    pub finish: Option<FinishReason>,
    pub stats: SeqStats,
}

/// Per-request accumulation of engine events.
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

    /// Read events until every choice finished.
    pub async fn run(&mut self, rx: &mut UnboundedReceiver<Event>) -> Result<(), ApiError> {
        while !self.done() {
            match rx.recv().await {
                Some(e) => self.absorb(&e),
                None => return Err(ApiError::internal("the engine dropped the request")),
            }
        }
        match &self.error {
            Some(m) => Err(ApiError::internal(m.clone())),
            None => Ok(()),
        }
    }

    pub fn completion_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.completion_tokens).sum()
    }

    pub fn reasoning_tokens(&self) -> u32 {
        self.choices.iter().map(|c| c.stats.thinking_tokens).sum()
    }

    pub fn usage(&self) -> Value {
        usage(std::slice::from_ref(self))
    }

    /// llama.cpp-style timings, with thinking split from the answer.
    pub fn timings(&self) -> Value {
        let total_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let thinking_ms: f64 = self.choices.iter().map(|c| c.stats.thinking_ms).fold(0.0, f64::max);
        let answer_ms: f64 = self.choices.iter().map(|c| c.stats.answer_ms).fold(0.0, f64::max);
        let predicted: u32 = self.completion_tokens();
        let predicted_ms = self.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        json!({
            "prompt_n": self.prompt_tokens,
            "prompt_ms": self.prompt_ms,
            "predicted_n": predicted,
            "predicted_ms": predicted_ms,
            "predicted_per_second": if predicted_ms > 0.0 { predicted as f64 * 1000.0 / predicted_ms } else { 0.0 },
            "thinking_n": self.reasoning_tokens(),
            "thinking_ms": thinking_ms,
            "answer_n": self.choices.iter().map(|c| c.stats.answer_tokens).sum::<u32>(),
            "answer_ms": answer_ms,
            "ttft_ms": self.first_token.map_or(0.0, |t| (t - self.started).as_secs_f64() * 1000.0),
            "total_ms": total_ms,
        })
    }

    /// The one structured log line per request, plus the latency histogram.
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

/// `finish_reason` as OpenAI spells it: the closed set every endpoint answers with. A cancelled
/// sequence (its client gone, or a sample stopped early by the vote) is a "stop" there; the
/// engine's own reason stays in a vote's per-sample detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolCalls => "tool_calls",
        }
    }
}

impl From<Option<FinishReason>> for Finish {
    fn from(f: Option<FinishReason>) -> Self {
        match f {
            Some(FinishReason::Length) => Self::Length,
            _ => Self::Stop,
        }
    }
}

/// One `chat.completion.chunk` of a streamed chat response.
pub fn chat_chunk(id: &str, created: u64, model: &str, choices: Value) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "system_fingerprint": super::FINGERPRINT, "choices": choices,
    })
}

/// A non-streamed `chat.completion`, with the grading outcome when the request carried a reference.
/// `auto`: the setting `reasoning_effort: "auto"` chose, and why.
pub fn chat_completion(id: &str, created: u64, model: &str, choices: Vec<Value>, col: &Collector, graded: Option<bool>, auto: Option<&AutoDecision>) -> Response {
    let mut body = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": super::FINGERPRINT, "choices": choices,
        "usage": col.usage(), "timings": col.timings(),
    });
    if let Some(ok) = graded {
        body["thinkscale"]["graded"] = json!({"correct": ok});
    }
    if let Some(a) = auto {
        body["thinkscale"]["auto"] = json!(a);
    }
    axum::Json(body).into_response()
}

/// OpenAI `usage` over the collectors of one response (completions runs one per prompt).
pub fn usage(cols: &[Collector]) -> Value {
    let prompt: usize = cols.iter().map(|c| c.prompt_tokens).sum();
    let completion: u32 = cols.iter().map(Collector::completion_tokens).sum();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt as u32 + completion,
        "prompt_tokens_details": {"cached_tokens": cols.iter().map(|c| c.cached_tokens).sum::<usize>()},
        "completion_tokens_details": {"reasoning_tokens": cols.iter().map(Collector::reasoning_tokens).sum::<u32>()},
    })
}

/// The closing chunk of a stream with `stream_options.include_usage`.
pub fn usage_chunk(mut chunk: Value, col: &Collector) -> Value {
    chunk["usage"] = col.usage();
    chunk["timings"] = col.timings();
    chunk
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_as_openai_spells_them() {
        assert_eq!(Finish::from(Some(FinishReason::Length)).as_str(), "length");
        // A sample the vote stopped, or a request whose client left, ended: "stop", not "cancelled".
        assert_eq!(Finish::from(Some(FinishReason::Cancelled)).as_str(), "stop");
        assert_eq!(Finish::from(None).as_str(), "stop");
        assert_eq!(Finish::ToolCalls.as_str(), "tool_calls");
    }
}
