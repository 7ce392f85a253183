//! POST /v1/chat/completions: chat template rendering, reasoning plans, streaming and not.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::ApiError;
use super::pipeline::{Finish, chat_chunk, chat_completion, submit, unix_now, usage_chunk, Collector};
use super::sse::{self, Item};
use super::validate::{prepare_off_thread, Prepared};
use super::AppState;
use crate::backend::{Event, FinishReason, LogprobEntry};
use crate::reasoning::chat::ToolCall;
use crate::reasoning::plan::ReasoningPlan;
use crate::reasoning::tools::{self, CallStream};

pub async fn chat_completions(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4());
    let p = prepare_off_thread(&state, &backend, &id, body?).await?;
    if p.plan.sampling.samples > 1 {
        return super::vote::respond(state, backend, id, p, started).await;
    }
    let view = View::new(&p);
    let mut col = Collector::new("chat", id.clone(), p.v.n, started);
    col.effort = p.plan.thinking.then_some(p.plan.effort);
    let (mut rx, _cancel) = submit(&*backend, p.spec)?;
    let model = state.cfg.model_id();
    let created = unix_now();
    if !p.v.stream {
        let result = col.run(&mut rx).await;
        col.log();
        result?;
        let graded = record(&state, &id, &p.plan, &col, p.expected.as_deref());
        let choices: Vec<Value> = col
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (message, finish) = view.finished(&c.thinking, &c.answer, c.finish);
                json!({
                    "index": i,
                    "message": message,
                    "logprobs": if p.logprobs { json!({"content": view.content_logprobs(&c.logprobs)}) } else { Value::Null },
                    "finish_reason": finish.as_str(),
                })
            })
            .collect();
        return Ok(chat_completion(&id, created, &model, choices, &col, graded, p.auto.as_ref()));
    }
    let include_usage = p.v.include_usage;
    let auto = p.auto.clone();
    let n = p.v.n;
    let logprobs = p.logprobs;
    let (plan, expected) = (p.plan.clone(), p.expected.clone());
    let stream = async_stream::stream! {
        let chunk = |choices: Value| chat_chunk(&id, created, &model, choices);
        for i in 0..n {
            yield Item::Data(chunk(json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])));
        }
        let mut answering = vec![false; n];
        // With tools, a call is held back until it is complete and parsed.
        let mut calls: Vec<CallStream> = (0..n).map(|_| CallStream::default()).collect();
        while !col.done() {
            let Some(event) = rx.recv().await else { break };
            col.absorb(&event);
            match event {
                Event::Delta { index, thinking, answer, logprobs: lp } => {
                    let answer = if view.tools.is_some() { calls[index].push(&answer) } else { answer };
                    let mut lp = Some(view.content_logprobs(&lp)).filter(|v| logprobs && !v.is_empty());
                    let mut deltas = view.stream_delta(&thinking, &answer, &mut answering[index]);
                    if deltas.is_empty() && lp.is_some() {
                        deltas.push(json!({"content": ""}));
                    }
                    // A step's tokens are reported once, with its last delta (the content).
                    let last = deltas.len().saturating_sub(1);
                    for (k, delta) in deltas.into_iter().enumerate() {
                        let lp = if k == last { lp.take().map_or(Value::Null, |v| json!({"content": v})) } else { Value::Null };
                        yield Item::Data(chunk(json!([{"index": index, "delta": delta, "logprobs": lp, "finish_reason": null}])));
                    }
                }
                Event::Finished { index, reason, .. } => {
                    let mut finish = Finish::from(Some(reason));
                    if let Some(known) = &view.tools {
                        let end = calls[index].finish(known);
                        for delta in view.stream_delta("", &end.content, &mut answering[index]) {
                            yield Item::Data(chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}])));
                        }
                        if !end.calls.is_empty() {
                            finish = Finish::ToolCalls;
                            let delta = json!({"tool_calls": calls_json(&tools::with_ids(end.calls), true)});
                            yield Item::Data(chunk(json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}])));
                        }
                    }
                    let mut last = json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish.as_str()}]);
                    if let Some(a) = &auto {
                        last[0]["thinkscale"] = json!({"auto": a});
                    }
                    yield Item::Data(chunk(last));
                }
                Event::Error { message } => {
                    yield Item::Data(ApiError::internal(message).body());
                }
                _ => {}
            }
        }
        if include_usage {
            yield Item::Data(usage_chunk(chunk(json!([])), &col));
        }
        col.log();
        if col.error.is_none() {
            record(&state, &id, &plan, &col, expected.as_deref());
        }
    };
    Ok(sse::respond(stream))
}

/// POST /apply-template (as llama-server names it): the prompt text a chat request is decoded
/// from, template, tools and thinking scaffold included, for checking how a model is prompted.
pub async fn apply_template(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let backend = state.backend()?;
    let p = prepare_off_thread(&state, &backend, "template", body?).await?;
    Ok(axum::Json(json!({"prompt": p.prompt_text})).into_response())
}

/// Keep the first choice for /v1/feedback and grade it when a reference came with the request.
fn record(state: &AppState, id: &str, plan: &ReasoningPlan, col: &Collector, expected: Option<&str>) -> Option<bool> {
    let c = &col.choices[0];
    super::grading::record_request(state, id, plan, &c.answer, &c.thinking, c.stats.thinking_ms / 1000.0, c.stats.thinking_tokens as f64, expected)
}

/// Calls as OpenAI writes them (`index` only in stream deltas).
pub fn calls_json(calls: &[ToolCall], streaming: bool) -> Value {
    let list = calls.iter().enumerate().map(|(i, c)| {
        let mut v = json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}});
        if streaming {
            v["index"] = json!(i);
        }
        v
    });
    Value::Array(list.collect())
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
    pub fn finished(&self, thinking: &str, answer: &str, finish: Option<FinishReason>) -> (Value, Finish) {
        let Some(names) = &self.tools else { return (self.message(thinking, answer), Finish::from(finish)) };
        let parsed = tools::parse(answer, names);
        let mut m = self.message(thinking, &parsed.content);
        if parsed.calls.is_empty() {
            return (m, Finish::from(finish));
        }
        if m["content"] == "" {
            m["content"] = Value::Null;
        }
        m["tool_calls"] = calls_json(&tools::with_ids(parsed.calls), false);
        (m, Finish::ToolCalls)
    }

    /// The assistant message for a finished choice.
    pub fn message(&self, thinking: &str, answer: &str) -> Value {
        if !self.separate {
            let content = if thinking.is_empty() { answer.to_string() } else { format!("{}{thinking}{}{answer}", self.open, self.close_or_newline()) };
            return json!({"role": "assistant", "content": content});
        }
        let mut m = json!({"role": "assistant", "content": answer.trim_start()});
        if !self.exclude && !thinking.is_empty() {
            m["reasoning_content"] = json!(thinking);
            m["reasoning"] = json!(thinking);
        }
        m
    }

    /// Log-probabilities of the tokens `content` shows: with thinking returned apart, the
    /// answer's only, so the tokens spell the content as OpenAI's `logprobs.content` does.
    pub fn content_logprobs(&self, entries: &[LogprobEntry]) -> Vec<LogprobEntry> {
        entries.iter().filter(|e| !(self.separate && e.thinking)).cloned().collect()
    }

    fn close_or_newline(&self) -> String {
        if self.close.is_empty() { "\n".into() } else { self.close.clone() }
    }

    /// Deltas for one engine event: reasoning first, then content.
    pub fn stream_delta(&self, thinking: &str, answer: &str, answering: &mut bool) -> Vec<Value> {
        let mut out = Vec::new();
        if !thinking.is_empty() {
            if !self.separate {
                out.push(json!({"content": thinking}));
            } else if !self.exclude {
                out.push(json!({"reasoning_content": thinking, "reasoning": thinking}));
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
                out.push(json!({"content": text}));
            }
        }
        out
    }
}
