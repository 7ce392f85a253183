//! POST /v1/completions: raw prompts (a string, a list of strings, or token ids), no chat template.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::openai::{Finish, TextChoice, TextLogprobs};
use super::stream::{respond, stream, Envelope, Out, Render};
use crate::service::infer;
use crate::service::{Service, Update};

pub async fn completions(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let run = infer::completions(&state, body?).await?;
    let p = run.prepared;
    let env = Envelope::new(run.id, state.cfg.model_id());
    let render = TextStream { n: p.v.n, texts: p.texts, echo: p.echo, logprobs: p.logprobs.is_some() };
    if p.v.stream {
        return Ok(respond(stream(env, run.reader, p.v.include_usage, render)));
    }
    let cols = run.reader.collect().await?;
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

    fn update(&mut self, job: usize, update: Update) -> Vec<Out<TextChoice>> {
        let choice = match update {
            Update::Text { index, answer, logprobs, .. } if !answer.is_empty() || !logprobs.is_empty() => TextChoice {
                index: job * self.n + index,
                logprobs: self.logprobs.then(|| TextLogprobs::new(&logprobs)),
                text: answer,
                finish_reason: None,
            },
            Update::Finished { index, reason, .. } => TextChoice {
                index: job * self.n + index,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(Finish::from(Some(reason))),
            },
            _ => return Vec::new(),
        };
        vec![Out::Choice(choice)]
    }
}
