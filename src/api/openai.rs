//! What the generation endpoints answer, as serde types: completions, chunks, usage, log-probs,
//! tool calls, errors, and thinkscale's own extension objects. Handlers build these; nothing
//! assembles a response body by hand.

use schemars::JsonSchema;
use serde::Serialize;

use crate::reasoning::chat::ToolCall;
use crate::reasoning::labels::FinishReason;
use crate::reasoning::logprobs::LogprobEntry;
use crate::service::{AutoDecision, Collector, Sequences, VoteDetail};

/// `finish_reason` as OpenAI spells it: the closed set every endpoint answers with. A cancelled
/// sequence (its client gone, or a sample stopped early by the vote) is a "stop" there; the
/// engine's own reason stays in a vote's per-sample detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl From<Option<FinishReason>> for Finish {
    fn from(f: Option<FinishReason>) -> Self {
        match f {
            Some(FinishReason::Length) => Self::Length,
            _ => Self::Stop,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
    /// Sampled sequences (self-consistency samples, or `n`): requested, run and cancelled by an
    /// early stop. Absent for one sequence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequences: Option<Sequences>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PromptTokensDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u32,
}

impl Usage {
    /// OpenAI `usage` over the jobs of one response.
    pub fn of(cols: &[Collector]) -> Self {
        let prompt: usize = cols.iter().map(|c| c.prompt_tokens + c.side.prompt).sum();
        let completion: u32 = cols.iter().map(|c| c.completion_tokens() + c.side.completion).sum();
        Usage {
            prompt_tokens: prompt as u32,
            completion_tokens: completion,
            total_tokens: prompt as u32 + completion,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: cols.iter().map(|c| (c.cached_tokens + c.side.cached) as u32).sum(),
            },
            completion_tokens_details: CompletionTokensDetails { reasoning_tokens: cols.iter().map(Collector::reasoning_tokens).sum() },
            sequences: cols.iter().filter_map(Collector::sequences).reduce(|a, b| Sequences {
                requested: a.requested + b.requested,
                run: a.run + b.run,
                cancelled: a.cancelled + b.cancelled,
            }),
        }
    }
}

/// llama.cpp-style timings, with thinking split from the answer.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Timings {
    pub prompt_n: u32,
    pub prompt_ms: f64,
    pub predicted_n: u32,
    pub predicted_ms: f64,
    pub predicted_per_second: f64,
    pub thinking_n: u32,
    pub thinking_ms: f64,
    pub answer_n: u32,
    pub answer_ms: f64,
    pub ttft_ms: f64,
    pub total_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequences: Option<Sequences>,
}

impl Timings {
    pub fn of(col: &Collector) -> Self {
        let thinking_ms: f64 = col.choices.iter().map(|c| c.stats.thinking_ms).fold(0.0, f64::max);
        let answer_ms: f64 = col.choices.iter().map(|c| c.stats.answer_ms).fold(0.0, f64::max);
        let predicted = col.completion_tokens();
        let predicted_ms = col.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
        Timings {
            prompt_n: col.prompt_tokens as u32,
            prompt_ms: col.prompt_ms,
            predicted_n: predicted,
            predicted_ms,
            predicted_per_second: if predicted_ms > 0.0 { predicted as f64 * 1000.0 / predicted_ms } else { 0.0 },
            thinking_n: col.reasoning_tokens(),
            thinking_ms,
            answer_n: col.choices.iter().map(|c| c.stats.answer_tokens).sum(),
            answer_ms,
            ttft_ms: col.first_token.map_or(0.0, |t| (t - col.started).as_secs_f64() * 1000.0),
            total_ms: col.started.elapsed().as_secs_f64() * 1000.0,
            sequences: col.sequences(),
        }
    }
}

/// Chat log-probs: one entry per token of `content`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChatLogprobs {
    pub content: Vec<LogprobEntry>,
}

/// A tool call as OpenAI writes it (`index` only in stream deltas).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ToolCallOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FunctionOut {
    pub name: String,
    pub arguments: String,
}

impl ToolCallOut {
    pub fn list(calls: Vec<ToolCall>, streaming: bool) -> Vec<Self> {
        calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| Self {
                index: streaming.then_some(i),
                id: c.id,
                kind: "function",
                function: FunctionOut { name: c.name, arguments: c.arguments },
            })
            .collect()
    }
}

/// The assistant's message in a finished chat choice. `content` is null only beside tool calls.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    /// Thinking returned apart, under both names peers use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

/// One step of a streamed chat choice; every field is optional (the last delta is `{}`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallOut>>,
}

impl Delta {
    pub fn content(text: impl Into<String>) -> Self {
        Self { content: Some(text.into()), ..Self::default() }
    }
    /// The first chunk of every streamed choice.
    pub fn role() -> Self {
        Self { role: Some("assistant"), content: Some(String::new()), ..Self::default() }
    }
}

/// thinkscale's extension on a choice: the vote behind it and what `auto` chose.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChoiceExt {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub vote: Option<VoteDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoDecision>,
}

impl ChoiceExt {
    /// None when there is nothing to say, so the choice carries no `thinkscale` key.
    pub fn some(vote: Option<VoteDetail>, auto: Option<AutoDecision>) -> Option<Self> {
        (vote.is_some() || auto.is_some()).then_some(Self { vote, auto })
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChatChoice {
    pub index: usize,
    pub message: AssistantMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Finish,
    /// thinkscale's extension (a vote's ballot, `auto`'s choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub thinkscale: Option<ChoiceExt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: usize,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<Finish>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinkscale: Option<ChoiceExt>,
}

impl ChunkChoice {
    pub fn delta(index: usize, delta: Delta) -> Self {
        Self { index, delta, logprobs: None, finish_reason: None, thinkscale: None }
    }
    pub fn finish(index: usize, finish: Finish, thinkscale: Option<ChoiceExt>) -> Self {
        Self { index, delta: Delta::default(), logprobs: None, finish_reason: Some(finish), thinkscale }
    }
}

/// Legacy completions log-probs: parallel arrays.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<serde_json::Map<String, serde_json::Value>>,
    pub text_offset: Vec<usize>,
}

impl TextLogprobs {
    pub fn new(entries: &[LogprobEntry]) -> Self {
        let mut offset = 0usize;
        let mut text_offset = Vec::new();
        for e in entries {
            text_offset.push(offset);
            offset += e.token.len();
        }
        Self {
            tokens: entries.iter().map(|e| e.token.clone()).collect(),
            token_logprobs: entries.iter().map(|e| e.logprob).collect(),
            top_logprobs: entries.iter().map(|e| e.top_logprobs.iter().map(|t| (t.token.clone(), t.logprob.into())).collect()).collect(),
            text_offset,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TextChoice {
    pub index: usize,
    pub text: String,
    pub logprobs: Option<TextLogprobs>,
    pub finish_reason: Option<Finish>,
}

/// The envelope every completion object and chunk shares: `object` tells which
/// (`chat.completion`, `chat.completion.chunk`, `text_completion`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Completion<C> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
    pub choices: Vec<C>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// thinkscale's extension (the grading outcome, `auto`'s choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub thinkscale: Option<RequestExt>,
}

impl<C> Completion<C> {
    /// Usage over the response's jobs, and the first job's timings (a whole response, or the
    /// last chunk of a stream with `include_usage`).
    pub fn with_usage(mut self, cols: &[Collector]) -> Self {
        self.usage = Some(Usage::of(cols));
        self.timings = cols.first().map(Timings::of);
        self
    }
}

/// thinkscale's extension on a whole chat completion: the grading outcome when the request
/// carried a reference, and the setting `reasoning_effort: "auto"` chose.
#[derive(Debug, Clone, Serialize)]
pub struct RequestExt {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graded: Option<GradedOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto: Option<AutoDecision>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GradedOut {
    pub correct: bool,
}

impl RequestExt {
    pub fn some(graded: Option<bool>, auto: Option<AutoDecision>) -> Option<Self> {
        (graded.is_some() || auto.is_some()).then(|| Self { graded: graded.map(|correct| GradedOut { correct }), auto })
    }
}

/// `{"object": "list", "data": [...]}`: GET /v1/models, GET /v1/scaling.
#[derive(Debug, Clone, Serialize)]
pub struct List<T> {
    pub object: &'static str,
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn of(data: Vec<T>) -> Self {
        Self { object: "list", data }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    /// What the backend reports of the model (llama-server's `meta`: vocabulary, context, size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

impl ModelCard {
    pub fn new(id: String, meta: Option<serde_json::Value>) -> Self {
        Self { id, object: "model", created: super::stream::unix_now(), owned_by: "thinkscale", meta }
    }
}

/// Progress of a streamed vote, sent as SSE comments (`: thinkscale {...}`) that OpenAI clients skip.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    Sample { choice: usize, sample: usize, answer: Option<String>, thinking_tokens: u32, finish_reason: &'static str },
    Stopped { choice: usize },
    Judged { choice: usize, answer: String, score: f64 },
}

/// `{"error": {...}}`, the body of every error response and of an error inside a stream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody<'a> {
    pub error: ErrorObject<'a>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ErrorObject<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finish_reasons_as_openai_spells_them() {
        let s = |f: Finish| serde_json::to_value(f).unwrap();
        assert_eq!(s(Finish::from(Some(FinishReason::Length))), json!("length"));
        // A sample the vote stopped, or a request whose client left, ended: "stop", not "cancelled".
        assert_eq!(s(Finish::from(Some(FinishReason::Cancelled))), json!("stop"));
        assert_eq!(s(Finish::from(None)), json!("stop"));
        assert_eq!(s(Finish::ToolCalls), json!("tool_calls"));
    }

    #[test]
    fn deltas_carry_only_what_they_say() {
        assert_eq!(serde_json::to_value(Delta::default()).unwrap(), json!({}));
        assert_eq!(serde_json::to_value(Delta::role()).unwrap(), json!({"role": "assistant", "content": ""}));
        let c = ChunkChoice::finish(2, Finish::Stop, ChoiceExt::some(None, None));
        assert_eq!(serde_json::to_value(c).unwrap(), json!({"index": 2, "delta": {}, "logprobs": null, "finish_reason": "stop"}));
    }

    #[test]
    fn stream_calls_are_indexed_and_message_calls_are_not() {
        let call = || vec![ToolCall { id: "call_1".into(), name: "f".into(), arguments: "{}".into() }];
        let streamed = serde_json::to_value(ToolCallOut::list(call(), true)).unwrap();
        assert_eq!(streamed, json!([{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]));
        assert!(serde_json::to_value(ToolCallOut::list(call(), false)).unwrap()[0].get("index").is_none());
    }

    #[test]
    fn legacy_logprobs_offsets_follow_the_token_text() {
        let e =
            |t: &str| LogprobEntry { token: t.into(), logprob: -0.5, bytes: t.as_bytes().to_vec(), top_logprobs: vec![], thinking: false };
        let lp = TextLogprobs::new(&[e("Hel"), e("lo"), e("!")]);
        assert_eq!(lp.text_offset, vec![0, 3, 5]);
        assert_eq!(lp.tokens, vec!["Hel", "lo", "!"]);
    }
}
