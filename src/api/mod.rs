//! HTTP layer: routes, auth, body limits, request metrics. Handlers never touch llama.cpp.

mod admin;
pub mod answer;
pub mod chat;
mod completions;
pub mod error;
mod grading;
pub mod openai;
mod openapi;
pub mod responses;
mod sse;
mod stream;
mod tokenize;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::metrics::metrics;
use crate::service::Service;
use error::ApiError;

pub const FINGERPRINT: &str = concat!("thinkscale-", env!("CARGO_PKG_VERSION"));

pub fn router(state: Service) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/responses", post(responses::responses))
        .route("/apply-template", post(chat::apply_template))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/v1/models", get(admin::models))
        .route("/v1/models/{model}", get(admin::model))
        .route("/v1/feedback", post(grading::feedback))
        .route("/v1/scaling", get(grading::scaling))
        .route("/v1/scaling/observations", post(grading::post_observations))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let hooks = Router::new()
        .route("/debug/engine-panic", post(admin::engine_panic))
        .route("/debug/engine-signal", post(admin::engine_signal))
        .route("/debug/handler-panic", post(handler_panic));
    Router::new()
        .merge(v1)
        .merge(if state.cfg.test_hooks { hooks } else { Router::new() })
        .route("/health", get(admin::health))
        .route("/openapi.json", get(openapi::openapi))
        .route("/metrics", get(admin::prometheus))
        .route("/dashboard", get(admin::dashboard))
        .route_layer(middleware::from_fn(count_requests))
        .fallback(|| async { ApiError::not_found("No such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        // A handler that panics answers an OpenAI 500 (the message stays in the log, not the
        // response); the connection and the server carry on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| ApiError::internal("internal error").into_response()))
        .layer(tower::util::option_layer(cors(&state.cfg.cors_origins)))
        .with_state(state)
}

/// Test hook: a handler that panics (the catch-panic layer answers for it).
async fn handler_panic() -> Response {
    panic!("handler failure requested by the test hook")
}

/// CORS for the configured origins (outermost, so a preflight needs no API key); none: no layer.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at start-up (Config::validate).
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn auth(State(state): State<Service>, req: Request, next: Next) -> Response {
    if let Some(key) = state.cfg.api_key.as_deref().filter(|k| !k.is_empty()) {
        let given =
            req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if given != Some(key) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn count_requests(req: Request, next: Next) -> Response {
    let endpoint = req.extensions().get::<MatchedPath>().map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    metrics().requests.with_label_values(&[&endpoint, resp.status().as_str()]).inc();
    resp
}
