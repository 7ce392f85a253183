//! POST /v1/completions: raw prompts (a string, a list of strings, or token ids), no chat template.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::openai::{Finish, TextChoice, TextLogprobs};
use super::stream::{respond, stream, Envelope, Out, Render};
use crate::backend::Event;
use crate::service::pipeline::{collect, events, submit, Collector};
use crate::service::validate::{off_thread, prepare_completion, PreparedCompletion};
use crate::service::Service;

pub async fn completions(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4());
    let (st, b, jid, body) = (state.clone(), backend.clone(), id.clone(), body?);
    let PreparedCompletion { v, texts, specs, echo, logprobs } = off_thread(move || prepare_completion(&st, &*b, &jid, body)).await?;
    let mut receivers = Vec::new();
    let mut cols = Vec::new();
    for spec in specs {
        cols.push(Collector::new("completions", spec.id.clone(), v.n, started));
        let (rx, _cancel) = submit(&*backend, spec)?;
        receivers.push(rx);
    }
    let env = Envelope::new(id, state.cfg.model_id());
    let render = TextStream { n: v.n, texts, echo, logprobs: logprobs.is_some() };
    if v.stream {
        return Ok(respond(stream(env, cols, events(receivers), v.include_usage, render)));
    }
    let cols = collect(cols, events(receivers), false).await?;
    let mut choices = Vec::new();
    for (i, col) in cols.iter().enumerate() {
        for (j, c) in col.choices.iter().enumerate() {
            let text = if render.echo { format!("{}{}", render.texts[i], c.answer) } else { c.answer.clone() };
            let logprobs = render.logprobs.then(|| TextLogprobs::new(&c.logprobs));
            choices.push(TextChoice { index: i * render.n + j, text, logprobs, finish_reason: Some(Finish::from(c.finish)) });
        }
    }
    Ok(axum::Json(env.wrap(TextStream::OBJECT, choices).with_usage(&cols)).into_response())
}

/// Streamed text choices: prompt `i`'s choice `j` is choice `i * n + j`.
struct TextStream {
    n: usize,
    texts: Vec<String>,
    echo: bool,
    logprobs: bool,
}

impl Render for TextStream {
    type Choice = TextChoice;
    const OBJECT: &'static str = "text_completion";

    fn opening(&mut self) -> Vec<Out<TextChoice>> {
        if !self.echo {
            return Vec::new();
        }
        let n = self.n;
        let mut out = Vec::new();
        for (i, text) in self.texts.iter().enumerate() {
            out.extend(
                (0..n).map(|j| Out::Choice(TextChoice { index: i * n + j, text: text.clone(), logprobs: None, finish_reason: None })),
            );
        }
        out
    }

    fn event(&mut self, job: usize, event: &Event) -> Vec<Out<TextChoice>> {
        let choice = match event {
            Event::Delta { index, answer, logprobs, .. } if !answer.is_empty() || !logprobs.is_empty() => TextChoice {
                index: job * self.n + index,
                text: answer.clone(),
                logprobs: self.logprobs.then(|| TextLogprobs::new(logprobs)),
                finish_reason: None,
            },
            Event::Finished { index, reason, .. } => TextChoice {
                index: job * self.n + index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(Finish::from(Some(*reason))),
            },
            _ => return Vec::new(),
        };
        vec![Out::Choice(choice)]
    }
}
