//! POST /v1/feedback (grade a recent request), GET /v1/scaling (the accuracy-vs-compute table),
//! POST /v1/scaling/observations (what `thinkscale eval --post` sends), over `service::grading`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openai::List;
use crate::reasoning::grade::{Cell, Observation};
use crate::reasoning::labels::Labels;
use crate::service::{observe, parse_object, record_feedback, scaling_table, typed, Feedback, FeedbackError, Service};

#[derive(Deserialize)]
struct FeedbackBody {
    id: String,
    correct: Option<bool>,
    expected_answer: Option<String>,
}

pub async fn feedback(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let obj = parse_object(&body?)?;
    let f: FeedbackBody = typed(&obj)?;
    let verdict = match (f.correct, f.expected_answer) {
        (Some(c), None) => Feedback::Correct(c),
        (None, Some(e)) => Feedback::Expected(e),
        _ => return Err(ApiError::bad_request("give exactly one of 'correct' and 'expected_answer'", Some("correct"))),
    };
    match record_feedback(&state, &f.id, verdict) {
        Ok(graded) => Ok(axum::Json(graded).into_response()),
        Err(e @ FeedbackError::Unknown { .. }) => Err(ApiError::not_found(e.to_string()).with_code("request_not_found")),
        Err(e @ FeedbackError::AlreadyGraded(_)) => Err(ApiError::bad_request(e.to_string(), Some("id")).with_code("already_graded")),
    }
}

/// One cell of the accuracy-vs-compute table, with the labels it is counted under.
#[derive(Serialize)]
struct ScalingRow {
    #[serde(flatten)]
    cell: Cell,
    #[serde(flatten)]
    labels: Labels,
}

pub async fn scaling(State(state): State<Service>) -> Response {
    let rows: Vec<ScalingRow> = scaling_table(&state).into_iter().map(|(cell, labels)| ScalingRow { cell, labels }).collect();
    axum::Json(List::of(rows)).into_response()
}

#[derive(Deserialize)]
struct PostedObservation {
    #[serde(flatten)]
    labels: Labels,
    correct: bool,
    thinking_seconds: f64,
    thinking_tokens: f64,
}

#[derive(Deserialize)]
struct Posted {
    observations: Vec<PostedObservation>,
}

pub async fn post_observations(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let obj = parse_object(&body?)?;
    let p: Posted = typed(&obj)?;
    let accepted = observe(
        &state,
        p.observations.into_iter().map(|o| {
            (o.labels, Observation { correct: o.correct, thinking_seconds: o.thinking_seconds, thinking_tokens: o.thinking_tokens })
        }),
    );
    Ok(axum::Json(Accepted { accepted }).into_response())
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}
