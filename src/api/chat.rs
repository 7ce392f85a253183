//! POST /v1/chat/completions: chat template rendering, reasoning plans, streaming and not.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;

use super::error::ApiError;
use super::openai::{
    AssistantMessage, ChatChoice, ChatLogprobs, ChoiceExt, ChunkChoice, Completion, Delta, Finish, RequestExt, ToolCallOut,
};
use super::stream::{respond, stream, Envelope, Frames, Out, Render};
use crate::backend::{Event, FinishReason, LogprobEntry};
use crate::reasoning::tools::{self, CallStream};
use crate::service::grading::{AutoDecision, Grade};
use crate::service::pipeline::{collect, events, submit, Collector};
use crate::service::validate::{prepare_off_thread, Prepared};
use crate::service::Service;

pub async fn chat_completions(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    Ok(answer(state, body?).await?.into_response())
}

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

/// Runs one chat request, voted or not, from its raw body.
pub async fn answer(state: Service, body: Bytes) -> Result<Answer, ApiError> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4());
    let p = prepare_off_thread(&state, &backend, &id, body).await?;
    if p.plan.sampling.samples > 1 {
        return super::vote::respond(state, backend, id, p, started).await;
    }
    let view = View::new(&p);
    let mut col = Collector::new("chat", id.clone(), p.v.n, started);
    col.effort = p.plan.thinking.then_some(p.plan.effort);
    let (rx, _cancel) = submit(&*backend, p.spec)?;
    let env = Envelope::new(id.clone(), state.cfg.model_id());
    let grade = Grade { service: state, id, plan: p.plan, expected: p.expected };
    if p.v.stream {
        let n = p.v.n;
        let render = ChatStream {
            view,
            logprobs: p.logprobs,
            answering: vec![false; n],
            calls: (0..n).map(|_| CallStream::default()).collect(),
            auto: p.auto,
            grade,
        };
        return Ok(Answer::Stream(stream(env, vec![col], events(vec![rx]), p.v.include_usage, render)));
    }
    let col = collect(vec![col], events(vec![rx]), false).await?.remove(0);
    let graded = grade.record(&col);
    let choices = col
        .choices
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let (message, finish_reason) = view.finished(&c.thinking, &c.answer, c.finish);
            let logprobs = p.logprobs.then(|| ChatLogprobs { content: view.content_logprobs(&c.logprobs) });
            ChatChoice { index, message, logprobs, finish_reason, thinkscale: None }
        })
        .collect();
    Ok(chat_completion(&env, choices, &col, graded, p.auto))
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

/// A streamed chat choice: reasoning and content deltas as they come; with tools, a call is held
/// back until it is complete and parsed.
struct ChatStream {
    view: View,
    logprobs: bool,
    answering: Vec<bool>,
    calls: Vec<CallStream>,
    auto: Option<AutoDecision>,
    grade: Grade,
}

impl Render for ChatStream {
    type Choice = ChunkChoice;
    const OBJECT: &'static str = "chat.completion.chunk";

    fn opening(&mut self) -> Vec<Out<ChunkChoice>> {
        (0..self.answering.len()).map(|i| Out::Choice(ChunkChoice::delta(i, Delta::role()))).collect()
    }

    fn event(&mut self, _job: usize, event: &Event) -> Vec<Out<ChunkChoice>> {
        let mut out = Vec::new();
        match event {
            Event::Delta { index, thinking, answer, logprobs } => {
                let index = *index;
                let answer = if self.view.tools.is_some() { self.calls[index].push(answer) } else { answer.clone() };
                let mut lp = Some(self.view.content_logprobs(logprobs)).filter(|v| self.logprobs && !v.is_empty());
                let mut deltas = self.view.stream_delta(thinking, &answer, &mut self.answering[index]);
                if deltas.is_empty() && lp.is_some() {
                    deltas.push(Delta::content(""));
                }
                // A step's tokens are reported once, with its last delta (the content).
                let last = deltas.len().saturating_sub(1);
                for (k, delta) in deltas.into_iter().enumerate() {
                    let mut c = ChunkChoice::delta(index, delta);
                    if k == last {
                        c.logprobs = lp.take().map(|content| ChatLogprobs { content });
                    }
                    out.push(Out::Choice(c));
                }
            }
            Event::Finished { index, reason, .. } => {
                let index = *index;
                let mut finish = Finish::from(Some(*reason));
                if let Some(known) = &self.view.tools {
                    let end = self.calls[index].finish(known);
                    for delta in self.view.stream_delta("", &end.content, &mut self.answering[index]) {
                        out.push(Out::Choice(ChunkChoice::delta(index, delta)));
                    }
                    if !end.calls.is_empty() {
                        finish = Finish::ToolCalls;
                        let delta = Delta { tool_calls: Some(ToolCallOut::list(tools::with_ids(end.calls), true)), ..Delta::default() };
                        out.push(Out::Choice(ChunkChoice::delta(index, delta)));
                    }
                }
                out.push(Out::Choice(ChunkChoice::finish(index, finish, ChoiceExt::some(None, self.auto.clone()))));
            }
            _ => {}
        }
        out
    }

    fn closing<'a>(&'a mut self, cols: &'a [Collector]) -> BoxFuture<'a, Vec<Out<ChunkChoice>>> {
        self.grade.record(&cols[0]);
        Box::pin(std::future::ready(Vec::new()))
    }
}

/// POST /apply-template (as llama-server names it): the prompt text a chat request is decoded
/// from, template, tools and thinking scaffold included, for checking how a model is prompted.
pub async fn apply_template(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let backend = state.backend()?;
    let p = prepare_off_thread(&state, &backend, "template", body?).await?;
    Ok(axum::Json(Template { prompt: p.prompt_text }).into_response())
}

#[derive(serde::Serialize)]
struct Template {
    prompt: String,
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
    pub fn new(p: &Prepared) -> Self {
        let (open, close) = match &p.native {
            Some((o, c)) => (o.clone(), c.clone()),
            None => (String::new(), String::new()),
        };
        let tools = p.tools.as_ref().map(|t| t.tools.iter().map(|x| x.name.clone()).collect());
        Self { separate: p.plan.separate, exclude: p.plan.exclude, open, close, tools }
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
