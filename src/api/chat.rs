//! POST /v1/chat/completions and /apply-template: one chat request through `service::infer`,
//! whole or streamed. A self-consistency request (`samples` chains voted into one choice by the
//! service) carries the whole ballot in the `thinkscale` extension object; streamed, the samples'
//! progress comes first as SSE comments.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::answer::{chat_completion, Answer, View};
use super::error::ApiError;
use super::openai::{ChatChoice, ChatLogprobs, ChoiceExt, ChunkChoice, Delta, Finish, Progress, ToolCallOut};
use super::stream::{stream, Envelope, Out, Render};
use crate::reasoning::labels::FinishReason;
use crate::reasoning::tools::{self, CallStream};
use crate::service::infer::{self, ChatRun};
use crate::service::{AutoDecision, Body, Outcome, Service, Update};

pub async fn chat_completions(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    Ok(answer(state, Body::Raw(body?)).await?.into_response())
}

/// Runs one chat request, voted or not, from its body (raw, or built by another endpoint).
pub async fn answer(state: Service, body: Body) -> Result<Answer, ApiError> {
    let run = infer::chat(&state, body).await?;
    let env = Envelope::new(run.id.clone(), state.cfg.model_id());
    let view = View::new(&run);
    if let Some(group) = run.group {
        return vote(env, view, run, group).await;
    }
    if run.v.stream {
        let n = run.v.n;
        let render = ChatStream {
            view,
            logprobs: run.logprobs,
            answering: vec![false; n],
            calls: (0..n).map(|_| CallStream::default()).collect(),
            auto: run.auto,
        };
        return Ok(Answer::Stream(stream(env, run.reader, run.v.include_usage, render)));
    }
    let (logprobs, auto) = (run.logprobs, run.auto.clone());
    let whole = run.whole().await?;
    let choices = whole
        .col
        .choices
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let (message, finish_reason) = view.finished(&c.thinking, &c.answer, c.finish);
            let logprobs = logprobs.then(|| ChatLogprobs { content: view.content_logprobs(&c.logprobs) });
            ChatChoice { index, message, logprobs, finish_reason, thinkscale: None }
        })
        .collect();
    Ok(chat_completion(&env, choices, &whole.col, whole.graded, auto))
}

/// A streamed chat choice: reasoning and content deltas as they come; with tools, a call is held
/// back until it is complete and parsed.
struct ChatStream {
    view: View,
    logprobs: bool,
    answering: Vec<bool>,
    calls: Vec<CallStream>,
    auto: Option<AutoDecision>,
}

impl Render for ChatStream {
    type Choice = ChunkChoice;
    const OBJECT: &'static str = "chat.completion.chunk";

    fn opening(&mut self) -> Vec<Out<ChunkChoice>> {
        (0..self.answering.len()).map(|i| Out::Choice(ChunkChoice::delta(i, Delta::role()))).collect()
    }

    fn update(&mut self, _job: usize, update: Update) -> Vec<Out<ChunkChoice>> {
        let mut out = Vec::new();
        match update {
            Update::Text { index, thinking, answer, logprobs } => {
                let answer = if self.view.tools.is_some() { self.calls[index].push(&answer) } else { answer };
                let mut lp = Some(self.view.content_logprobs(&logprobs)).filter(|v| self.logprobs && !v.is_empty());
                let mut deltas = self.view.stream_delta(&thinking, &answer, &mut self.answering[index]);
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
            Update::Finished { index, reason, .. } => {
                let mut finish = Finish::from(Some(reason));
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
}

/// A voted request: each choice is its group's decided outcome.
async fn vote(env: Envelope, view: View, run: ChatRun, group: usize) -> Result<Answer, ApiError> {
    if run.v.stream {
        let render = VoteStream { group, view, auto: run.auto };
        return Ok(Answer::Stream(stream(env, run.reader, run.v.include_usage, render)));
    }
    let auto = run.auto.clone();
    let whole = run.whole().await?;
    let choices = whole
        .outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| ChatChoice {
            index,
            message: view.message(&o.thinking, &o.answer),
            logprobs: None,
            finish_reason: Finish::from(o.finish),
            thinkscale: ChoiceExt::some(Some(o.ext), None),
        })
        .collect();
    Ok(chat_completion(&env, choices, &whole.col, whole.graded, auto))
}

/// A streamed vote: progress as SSE comments (OpenAI clients skip them) while the samples run,
/// then each voted answer as one choice's deltas.
struct VoteStream {
    group: usize,
    view: View,
    auto: Option<AutoDecision>,
}

impl Render for VoteStream {
    type Choice = ChunkChoice;
    const OBJECT: &'static str = "chat.completion.chunk";

    fn update(&mut self, _job: usize, update: Update) -> Vec<Out<ChunkChoice>> {
        let group = self.group;
        let progress = match update {
            Update::Finished { index, reason, completion_tokens, thinking_tokens, answer }
                if reason != FinishReason::Cancelled || completion_tokens > 0 =>
            {
                Progress::Sample { choice: index / group, sample: index % group, answer, thinking_tokens, finish_reason: reason.as_str() }
            }
            Update::Stopped { choice } => Progress::Stopped { choice },
            Update::Judged { choice, answer, score } => Progress::Judged { choice, answer, score },
            Update::Decided { outcomes, .. } => return self.decided(outcomes),
            _ => return Vec::new(),
        };
        vec![Out::Progress(progress)]
    }
}

impl VoteStream {
    fn decided(&self, outcomes: Vec<Outcome>) -> Vec<Out<ChunkChoice>> {
        let mut out = Vec::new();
        for (i, o) in outcomes.into_iter().enumerate() {
            out.push(Out::Choice(ChunkChoice::delta(i, Delta::role())));
            let mut answering = false;
            for delta in self.view.stream_delta(&o.thinking, &o.answer, &mut answering) {
                out.push(Out::Choice(ChunkChoice::delta(i, delta)));
            }
            out.push(Out::Choice(ChunkChoice::finish(i, Finish::from(o.finish), ChoiceExt::some(Some(o.ext), self.auto.clone()))));
        }
        out
    }
}

/// POST /apply-template (as llama-server names it): the prompt text a chat request is decoded
/// from, template, tools and thinking scaffold included, for checking how a model is prompted.
pub async fn apply_template(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    Ok(axum::Json(Template { prompt: infer::template(&state, body?).await? }).into_response())
}

#[derive(serde::Serialize)]
struct Template {
    prompt: String,
}
