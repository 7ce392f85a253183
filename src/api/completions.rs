//! POST /v1/completions: raw prompts (a string, a list of strings, or token ids), no chat template.

use std::time::Instant;

use axum::body::Bytes;
use llama_cpp_2::token::LlamaToken;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::ApiError;
use super::generation::{Finish, submit, unix_now, usage, Collector};
use super::sse::{self, Item};
use super::types::{parse_object, typed, Common};
use super::AppState;
use crate::backend::{Event, JobSpec, LogprobEntry};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i32>),
    TokenLists(Vec<Vec<i32>>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CompletionFields {
    prompt: Prompt,
    logprobs: Option<i64>,
    #[serde(default)]
    echo: bool,
}

/// Legacy completions log-probs: parallel arrays.
fn legacy_logprobs(entries: &[LogprobEntry]) -> Value {
    let mut offset = 0usize;
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(offset);
        offset += e.token.len();
    }
    json!({
        "tokens": entries.iter().map(|e| e.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
        "top_logprobs": entries.iter().map(|e| e.top_logprobs.iter().map(|t| (t.token.clone(), json!(t.logprob))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

pub async fn completions(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let started = Instant::now();
    let backend = state.backend()?;
    let obj = parse_object(&body?)?;
    let common: Common = typed(&obj)?;
    let fields: CompletionFields = typed(&obj)?;
    let top = match fields.logprobs {
        Some(k) if !(0..=20).contains(&k) => return Err(ApiError::bad_request("'logprobs' must be between 0 and 20", Some("logprobs"))),
        k => k.map(|k| k as u32),
    };
    // Tokenizing and grammar compilation block (a remote backend asks its engine): off the workers.
    let (b, cfg) = (backend.clone(), state.cfg.clone());
    let prepared = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let vocab = b.vocabulary();
        let mut v = common.validate(&cfg, top, vocab.n_vocab(), vocab.eog(), b.slot_ctx())?;
        v.constrain(&*b)?;
        let tokenize = |t: &str| vocab.tokenize(t, true).map_err(|e| ApiError::text(e, "prompt"));
        let (texts, prompts): (Vec<String>, Vec<Vec<LlamaToken>>) = match fields.prompt {
            Prompt::Text(t) => (vec![t.clone()], vec![tokenize(&t)?]),
            Prompt::Texts(ts) => (ts.clone(), ts.iter().map(|t| tokenize(t)).collect::<Result<_, _>>()?),
            Prompt::Tokens(ids) => (vec![String::new()], vec![ids.into_iter().map(LlamaToken).collect()]),
            Prompt::TokenLists(ls) => (vec![String::new(); ls.len()], ls.into_iter().map(|l| l.into_iter().map(LlamaToken).collect()).collect()),
        };
        if prompts.is_empty() || prompts.len() * v.n > cfg.parallel as usize * 4 {
            return Err(ApiError::bad_request("'prompt' must hold between 1 and a few prompts", Some("prompt")));
        }
        let n_vocab = vocab.n_vocab().unwrap_or(i32::MAX);
        if prompts.iter().flatten().any(|t| t.0 < 0 || t.0 >= n_vocab) {
            return Err(ApiError::bad_request(format!("token ids in 'prompt' must be in 0..{n_vocab}"), Some("prompt")));
        }
        if prompts.iter().any(|p| p.is_empty()) {
            return Err(ApiError::bad_request("'prompt' must not be empty", Some("prompt")));
        }
        Ok((v, texts, prompts))
    })
    .await
    .map_err(|_| ApiError::internal("preparing the request failed"))?;
    let (v, texts, prompts) = prepared?;
    let slot_ctx = backend.slot_ctx();
    let id = format!("cmpl-{}", uuid::Uuid::new_v4());
    let mut receivers = Vec::new();
    let mut collectors = Vec::new();
    for (i, prompt) in prompts.into_iter().enumerate() {
        // Every token of the slot may be used: the prompt leaves at least one for the output.
        let room = slot_ctx as i64 - prompt.len() as i64;
        if room < 1 {
            return Err(ApiError::bad_request(
                format!("Prompt {i} is {} tokens; the context holds {}", prompt.len(), slot_ctx),
                Some("prompt"),
            )
            .with_code("context_length_exceeded"));
        }
        let spec = JobSpec {
            id: format!("{id}-{i}"),
            text: texts[i].clone(),
            prompt,
            n: v.n,
            sampling: v.sampling.clone(),
            max_tokens: v.max_tokens.unwrap_or(state.cfg.default_max_tokens).min(room as u32),
            forcing: None,
            want_logprob: false,
            vote: None,
        };
        let (rx, _cancel) = submit(&*backend, spec)?;
        receivers.push(rx);
        collectors.push(Collector::new("completions", format!("{id}-{i}"), v.n, started));
    }
    let model = state.cfg.model_id();
    let created = unix_now();
    let n = v.n;
    let echo = fields.echo;
    let want_lp = top.is_some();
    if !v.stream {
        let mut choices = Vec::new();
        for (i, (mut rx, col)) in receivers.into_iter().zip(collectors.iter_mut()).enumerate() {
            let r = col.run(&mut rx).await;
            col.log();
            r?;
            for (j, c) in col.choices.iter().enumerate() {
                let text = if echo { format!("{}{}", texts[i], c.answer) } else { c.answer.clone() };
                choices.push(json!({
                    "index": i * n + j, "text": text,
                    "logprobs": if want_lp { legacy_logprobs(&c.logprobs) } else { Value::Null },
                    "finish_reason": Finish::from(c.finish).as_str(),
                }));
            }
        }
        let body = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": super::FINGERPRINT, "choices": choices,
            "usage": usage(&collectors),
            "timings": collectors[0].timings(),
        });
        return Ok(axum::Json(body).into_response());
    }
    let include_usage = v.include_usage;
    let merged = futures::stream::select_all(
        receivers.into_iter().enumerate().map(|(i, rx)| UnboundedReceiverStream::new(rx).map(move |e| (i, e))),
    );
    let stream = async_stream::stream! {
        let chunk = |choices: Value| json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": super::FINGERPRINT, "choices": choices,
        });
        if echo {
            for (i, t) in texts.iter().enumerate() {
                for j in 0..n {
                    yield Item::Data(chunk(json!([{"index": i * n + j, "text": t, "logprobs": null, "finish_reason": null}])));
                }
            }
        }
        futures::pin_mut!(merged);
        while !collectors.iter().all(|c| c.done()) {
            let Some((i, event)) = merged.next().await else { break };
            collectors[i].absorb(&event);
            match event {
                Event::Delta { index, answer, logprobs, .. } if !answer.is_empty() || !logprobs.is_empty() => {
                    let lp = if want_lp { legacy_logprobs(&logprobs) } else { Value::Null };
                    yield Item::Data(chunk(json!([{"index": i * n + index, "text": answer, "logprobs": lp, "finish_reason": null}])));
                }
                Event::Finished { index, reason, .. } => {
                    yield Item::Data(chunk(json!([{"index": i * n + index, "text": "", "logprobs": null, "finish_reason": Finish::from(Some(reason)).as_str()}])));
                }
                Event::Error { message } => yield Item::Data(ApiError::internal(message).body()),
                _ => {}
            }
        }
        if include_usage {
            let mut last = chunk(json!([]));
            last["usage"] = usage(&collectors);
            yield Item::Data(last);
        }
        for c in &collectors {
            c.log();
        }
    };
    Ok(sse::respond(stream))
}

/// The request body's schema for /openapi.json: the shared sampling fields and the prompt.
pub(super) fn request_schema(gen: &mut schemars::SchemaGenerator) -> Value {
    json!({"allOf": [gen.subschema_for::<super::types::Common>(), gen.subschema_for::<CompletionFields>()], "required": ["prompt"]})
}
