//! What a chat request answers with, shared by the plain and the voted paths and by
//! /v1/responses: the answer whole or as frames, the `chat.completion` object, and how thinking
//! and answer text are shown.

use axum::response::{IntoResponse, Response};

use super::openai::{AssistantMessage, ChatChoice, ChunkChoice, Completion, Delta, Finish, RequestExt, ToolCallOut};
use super::stream::{respond, Envelope, Frames};
use crate::reasoning::labels::FinishReason;
use crate::reasoning::logprobs::LogprobEntry;
use crate::reasoning::tools;
use crate::service::infer::ChatRun;
use crate::service::{AutoDecision, Collector};

/// A chat answer: whole, or as the frames of its stream (the Responses endpoint reads either).
// One per request, moved once: boxing the whole completion would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Whole(Completion<ChatChoice>),
    Stream(Frames<ChunkChoice>),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Whole(c) => axum::Json(c).into_response(),
            Answer::Stream(frames) => respond(frames),
        }
    }
}

/// A non-streamed `chat.completion`, with the grading outcome when the request carried a reference.
pub fn chat_completion(
    env: &Envelope,
    choices: Vec<ChatChoice>,
    col: &Collector,
    graded: Option<bool>,
    auto: Option<AutoDecision>,
) -> Answer {
    let mut body = env.wrap("chat.completion", choices).with_usage(std::slice::from_ref(col));
    body.thinkscale = RequestExt::some(graded, auto);
    Answer::Whole(body)
}

/// How thinking and answer text are shown, per the plan and the model's markers.
pub struct View {
    separate: bool,
    exclude: bool,
    open: String,
    close: String,
    /// Names of the tools the model may call (the answer is parsed for calls).
    pub tools: Option<Vec<String>>,
}

impl View {
    pub fn new(run: &ChatRun) -> Self {
        let (open, close) = run.native.clone().unwrap_or_default();
        Self { separate: run.plan.separate, exclude: run.plan.exclude, open, close, tools: run.tools.clone() }
    }

    /// The message and finish reason of a finished choice, with the model's tool calls parsed out.
    pub fn finished(&self, thinking: &str, answer: &str, finish: Option<FinishReason>) -> (AssistantMessage, Finish) {
        let Some(names) = &self.tools else { return (self.message(thinking, answer), Finish::from(finish)) };
        let parsed = tools::parse(answer, names);
        let mut m = self.message(thinking, &parsed.content);
        if parsed.calls.is_empty() {
            return (m, Finish::from(finish));
        }
        m.content = m.content.filter(|c| !c.is_empty());
        m.tool_calls = Some(ToolCallOut::list(tools::with_ids(parsed.calls), false));
        (m, Finish::ToolCalls)
    }

    /// The assistant message for a finished choice.
    pub fn message(&self, thinking: &str, answer: &str) -> AssistantMessage {
        let mut m = AssistantMessage { role: "assistant", ..AssistantMessage::default() };
        if !self.separate {
            m.content = Some(if thinking.is_empty() {
                answer.to_string()
            } else {
                format!("{}{thinking}{}{answer}", self.open, self.close_or_newline())
            });
            return m;
        }
        m.content = Some(answer.trim_start().to_string());
        if !self.exclude && !thinking.is_empty() {
            m.reasoning_content = Some(thinking.to_string());
            m.reasoning = Some(thinking.to_string());
        }
        m
    }

    /// Log-probabilities of the tokens `content` shows: with thinking returned apart, the
    /// answer's only, so the tokens spell the content as OpenAI's `logprobs.content` does.
    pub fn content_logprobs(&self, entries: &[LogprobEntry]) -> Vec<LogprobEntry> {
        entries.iter().filter(|e| !(self.separate && e.thinking)).cloned().collect()
    }

    fn close_or_newline(&self) -> String {
        if self.close.is_empty() {
            "\n".into()
        } else {
            self.close.clone()
        }
    }

    /// Deltas for one engine event: reasoning first, then content.
    pub fn stream_delta(&self, thinking: &str, answer: &str, answering: &mut bool) -> Vec<Delta> {
        let mut out = Vec::new();
        if !thinking.is_empty() {
            if !self.separate {
                out.push(Delta::content(thinking));
            } else if !self.exclude {
                out.push(Delta { reasoning_content: Some(thinking.into()), reasoning: Some(thinking.into()), ..Delta::default() });
            }
        }
        if !answer.is_empty() {
            let mut text = answer.to_string();
            if !*answering {
                *answering = true;
                text = text.trim_start().to_string();
                if !self.separate && !out.is_empty() {
                    text = format!("{}{text}", self.close_or_newline());
                }
            }
            if !text.is_empty() {
                out.push(Delta::content(text));
            }
        }
        out
    }
}
