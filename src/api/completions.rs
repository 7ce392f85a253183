//! POST /v1/completions: raw prompts (a string, a list of strings, or token ids), no chat template.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::error::ApiError;
use super::pipeline::{Finish, submit, unix_now, usage, Collector};
use super::sse::{self, Item};
use super::validate::{off_thread, prepare_completion, PreparedCompletion};
use super::AppState;
use crate::backend::{Event, LogprobEntry};

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
    let id = format!("cmpl-{}", uuid::Uuid::new_v4());
    let (st, b, jid, body) = (state.clone(), backend.clone(), id.clone(), body?);
    let PreparedCompletion { v, texts, specs, echo, logprobs: top } = off_thread(move || prepare_completion(&st, &*b, &jid, body)).await?;
    let mut receivers = Vec::new();
    let mut collectors = Vec::new();
    for spec in specs {
        collectors.push(Collector::new("completions", spec.id.clone(), v.n, started));
        let (rx, _cancel) = submit(&*backend, spec)?;
        receivers.push(rx);
    }
    let model = state.cfg.model_id();
    let created = unix_now();
    let n = v.n;
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

