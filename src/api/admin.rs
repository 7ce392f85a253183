//! GET /v1/models, /health, /metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::openai::{ModelCard, ModelList};
use crate::metrics::metrics;
use crate::service::Service;

pub async fn models(State(state): State<Service>) -> Response {
    let meta = state.backend.get().map(|b| b.meta());
    axum::Json(ModelList { object: "list", data: vec![ModelCard::new(state.cfg.model_id(), meta)] }).into_response()
}

pub async fn model(State(state): State<Service>, axum::extract::Path(name): axum::extract::Path<String>) -> Result<Response, ApiError> {
    let id = state.cfg.model_id();
    if name != id {
        return Err(ApiError::not_found(format!("The model '{name}' does not exist; this server serves '{id}'")).with_code("model_not_found"));
    }
    Ok(axum::Json(ModelCard::new(id, None)).into_response())
}

pub async fn health(State(state): State<Service>) -> Response {
    if let Some(reason) = state.engine_failure.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "error", "error": reason}))).into_response();
    }
    match state.backend.get().map(|b| b.health()) {
        None => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "loading"}))).into_response(),
        Some(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "error", "error": reason}))).into_response(),
        Some(Ok(detail)) => {
            let mut body = json!({"status": "ok", "model": state.cfg.model_id()});
            if let (Some(b), serde_json::Value::Object(d)) = (body.as_object_mut(), detail) {
                b.extend(d);
            }
            axum::Json(body).into_response()
        }
    }
}

/// Test hook: the engine thread panics at its next step.
pub async fn engine_panic(State(state): State<Service>) -> Result<Response, ApiError> {
    state.backend()?.fail_for_test();
    Ok(axum::Json(json!({"requested": true})).into_response())
}

/// The live dashboard: one self-contained page (no CDN), compiled into the binary.
pub async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("assets/dashboard.html")).into_response()
}

pub async fn prometheus() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics().render()).into_response()
}
