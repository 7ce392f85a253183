//! GET /v1/models, /health, /metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::openai::{List, ModelCard};
use crate::metrics::metrics;
use crate::service::{EngineFault, Readiness, Service};

pub async fn models(State(state): State<Service>) -> Response {
    let meta = state.model_meta();
    axum::Json(List::of(vec![ModelCard::new(state.cfg.model_id(), meta)])).into_response()
}

pub async fn model(State(state): State<Service>, axum::extract::Path(name): axum::extract::Path<String>) -> Result<Response, ApiError> {
    let id = state.cfg.model_id();
    if name != id {
        return Err(
            ApiError::not_found(format!("The model '{name}' does not exist; this server serves '{id}'")).with_code("model_not_found")
        );
    }
    Ok(axum::Json(ModelCard::new(id, None)).into_response())
}

/// GET /health: 200 `ok` with the backend's state, or 503 `loading` / `error` with the reason.
#[derive(Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum HealthBody<H> {
    Ok {
        model: String,
        #[serde(flatten)]
        backend: H,
    },
    Loading,
    Error {
        error: String,
    },
}

pub async fn health(State(state): State<Service>) -> Response {
    let unavailable = |body: HealthBody<()>| (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    match state.readiness() {
        Readiness::Loading => unavailable(HealthBody::Loading),
        Readiness::Failed(error) => unavailable(HealthBody::Error { error }),
        Readiness::Ready(backend) => axum::Json(HealthBody::Ok { model: state.cfg.model_id(), backend }).into_response(),
    }
}

/// Test hook: the engine thread panics at its next step.
pub async fn engine_panic(State(state): State<Service>) -> Result<Response, ApiError> {
    fail_engine(state, EngineFault::Panic)
}

/// Test hook: the engine's next decode dies of SIGSEGV.
pub async fn engine_signal(State(state): State<Service>) -> Result<Response, ApiError> {
    fail_engine(state, EngineFault::Signal)
}

fn fail_engine(state: Service, how: EngineFault) -> Result<Response, ApiError> {
    state.fail_engine_for_test(how)?;
    Ok(axum::Json(serde_json::json!({"requested": true})).into_response())
}

/// The live dashboard: one self-contained page (no CDN), compiled into the binary.
pub async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], include_str!("assets/dashboard.html")).into_response()
}

pub async fn prometheus() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics().render()).into_response()
}
