//! What /v1/responses answers, as serde types: the response object (with what it echoes of the
//! request), its output items, its usage, and the typed stream events.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::api::openai::{ChoiceExt, Finish, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Incomplete,
    Failed,
}

impl Status {
    pub(super) fn of(finish: Option<Finish>) -> Self {
        if finish == Some(Finish::Length) {
            Self::Incomplete
        } else {
            Self::Completed
        }
    }
}

/// What a response echoes of its request, as OpenAI does: the client's own values, unchanged.
#[derive(Debug, Clone, Serialize)]
pub struct Echo {
    instructions: Value,
    max_output_tokens: Value,
    parallel_tool_calls: bool,
    previous_response_id: Option<String>,
    reasoning: ReasoningEcho,
    temperature: Value,
    top_p: Value,
    text: TextEcho,
    tool_choice: Value,
    tools: Value,
    metadata: Value,
}

#[derive(Debug, Clone, Serialize)]
struct ReasoningEcho {
    effort: Value,
    summary: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct TextEcho {
    format: Value,
}

impl Echo {
    pub fn of(req: &Map<String, Value>) -> Self {
        let get = |k: &str, default: Value| req.get(k).cloned().unwrap_or(default);
        Self {
            instructions: get("instructions", Value::Null),
            max_output_tokens: get("max_output_tokens", Value::Null),
            parallel_tool_calls: req.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true),
            previous_response_id: None,
            reasoning: ReasoningEcho {
                effort: req.get("reasoning").and_then(|r| r.get("effort")).cloned().unwrap_or(Value::Null),
                summary: None,
            },
            temperature: get("temperature", json!(1.0)),
            top_p: get("top_p", json!(1.0)),
            text: TextEcho { format: req.get("text").and_then(|t| t.get("format")).cloned().unwrap_or_else(|| json!({"type": "text"})) },
            tool_choice: get("tool_choice", json!("auto")),
            tools: get("tools", json!([])),
            metadata: get("metadata", json!({})),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: Status,
    pub error: Option<ResponseError>,
    pub incomplete_details: Option<IncompleteDetails>,
    pub model: String,
    pub output: Vec<OutputItem>,
    #[serde(flatten)]
    pub echo: Echo,
    pub usage: Option<ResponseUsage>,
    /// thinkscale's extension (a vote's ballot, `auto`'s choice), as on the chat choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinkscale: Option<ChoiceExt>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseError {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncompleteDetails {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseUsage {
    pub input_tokens: u32,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u32,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputTokensDetails {
    pub cached_tokens: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u32,
}

impl From<&Usage> for ResponseUsage {
    fn from(u: &Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: u.prompt_tokens_details.cached_tokens },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails { reasoning_tokens: u.completion_tokens_details.reasoning_tokens },
            total_tokens: u.total_tokens,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    Reasoning { id: String, summary: Vec<Value>, content: Vec<ReasoningText>, status: Status },
    Message { id: String, status: Status, role: &'static str, content: Vec<OutputText> },
    FunctionCall { id: String, call_id: String, name: String, arguments: String, status: Status },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "reasoning_text")]
pub struct ReasoningText {
    pub(super) text: String,
}

/// Annotations and log-probs are not produced: both are always empty.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename = "output_text")]
pub struct OutputText {
    text: String,
    annotations: Vec<Value>,
    logprobs: Vec<Value>,
}

impl OutputText {
    pub(super) fn new(text: &str) -> Self {
        Self { text: text.to_string(), annotations: Vec::new(), logprobs: Vec::new() }
    }
}

/// One event of a streamed response (`type` names it; `sequence_number` is added by `Numbered`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created { response: ResponseObject },
    #[serde(rename = "response.in_progress")]
    InProgress { response: ResponseObject },
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: usize, item: OutputItem },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: usize, item: OutputItem },
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta { item_id: String, output_index: usize, content_index: usize, delta: String },
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningDone { item_id: String, output_index: usize, content_index: usize, text: String },
    #[serde(rename = "response.content_part.added")]
    PartAdded { item_id: String, output_index: usize, content_index: usize, part: OutputText },
    #[serde(rename = "response.content_part.done")]
    PartDone { item_id: String, output_index: usize, content_index: usize, part: OutputText },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { item_id: String, output_index: usize, content_index: usize, delta: String, logprobs: Vec<Value> },
    #[serde(rename = "response.output_text.done")]
    TextDone { item_id: String, output_index: usize, content_index: usize, text: String, logprobs: Vec<Value> },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { item_id: String, output_index: usize, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone { item_id: String, output_index: usize, name: String, arguments: String },
    #[serde(rename = "response.completed")]
    Completed { response: ResponseObject },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: ResponseObject },
    #[serde(rename = "response.failed")]
    Failed { response: ResponseObject },
}

#[derive(Debug, Clone, Serialize)]
pub struct Numbered {
    #[serde(flatten)]
    pub event: StreamEvent,
    pub sequence_number: u64,
}
