//! Self-consistency responses (samples > 1).

use std::time::Instant;

use axum::response::Response;

use super::chat::Prepared;
use super::error::ApiError;
use super::AppState;
use crate::engine::Engine;

pub async fn respond(_state: AppState, _engine: Engine, _id: String, _p: Prepared, _started: Instant) -> Result<Response, ApiError> {
    Err(ApiError::bad_request("samples > 1 is not available yet", Some("samples")))
}
