//! POST /v1/responses: the OpenAI Responses API over the chat pipeline. The request is mapped onto
//! a chat request (`request.rs`) and answered by the chat endpoint's core; its typed answer, whole
//! or frame by frame, becomes Responses objects and events (`output.rs`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::answer::Answer;
use super::chat;
use super::error::ApiError;
use super::sse::{self, Item};
use super::stream::unix_now;
use crate::service::{parse_object, Body, Service};
use output::{Builder, Streamer};
use request::responses_param;
/// The Responses body mapped to a chat body (public for the request fuzz target).
pub use request::to_chat;

mod objects;
mod output;
mod request;

pub async fn responses(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let req = parse_object(&body?)?;
    let chat = to_chat(&req)?;
    // The chat request goes through the gate like any other, as the object it was mapped to;
    // errors name the Responses fields.
    let answer = chat::answer(state.clone(), Body::Object(chat)).await.map_err(|e| e.rename_param(responses_param))?;
    let b = Builder::new(uuid::Uuid::new_v4().simple().to_string(), unix_now(), state.cfg.model_id(), &req);
    let mut frames = match answer {
        Answer::Whole(chat) => return Ok(axum::Json(b.completed(&chat)).into_response()),
        Answer::Stream(frames) => frames,
    };
    let mut s = Streamer::new(b);
    let events = async_stream::stream! {
        for e in s.start() {
            yield Item::json(&e);
        }
        while let Some(frame) = frames.next().await {
            for e in s.frame(frame) {
                yield Item::json(&e);
            }
        }
        for e in s.finish() {
            yield Item::json(&e);
        }
    };
    Ok(sse::respond(events))
}
