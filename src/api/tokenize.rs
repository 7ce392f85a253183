//! POST /tokenize, as llama-server serves it (`content`, `add_special`; vLLM's `prompt` and
//! `add_special_tokens` are read too): the token ids of a text. A thinkscale over this server
//! counts prompts with it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::service::infer;
use crate::service::{parse_object, typed, Service};

#[derive(Deserialize)]
struct TokenizeRequest {
    content: Option<String>,
    prompt: Option<String>,
    add_special: Option<bool>,
    add_special_tokens: Option<bool>,
}

#[derive(Serialize)]
struct TokenizeResponse {
    tokens: Vec<i32>,
}

pub async fn tokenize(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let req: TokenizeRequest = typed(&parse_object(&body?)?)?;
    let text = req.content.or(req.prompt).ok_or_else(|| ApiError::bad_request("'content' is required", Some("content")))?;
    let add = req.add_special.or(req.add_special_tokens).unwrap_or(false);
    let tokens = infer::tokenize(&state, text, add).await?;
    Ok(axum::Json(TokenizeResponse { tokens }).into_response())
}
