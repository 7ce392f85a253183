//! POST /v1/feedback (grade a recent request), GET /v1/scaling (the accuracy-vs-compute table),
//! POST /v1/scaling/observations (what `thinkscale eval --post` sends), over `service::grading`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::openai::List;
use crate::reasoning::grade::{grade, summarise, Cell, Observation};
use crate::reasoning::labels::Labels;
use crate::service::request::{parse_object, typed};
use crate::service::Service;

#[derive(Deserialize)]
struct Feedback {
    id: String,
    correct: Option<bool>,
    expected_answer: Option<String>,
}

pub async fn feedback(State(state): State<Service>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let obj = parse_object(&body?)?;
    let f: Feedback = typed(&obj)?;
    if f.correct.is_some() == f.expected_answer.is_some() {
        return Err(ApiError::bad_request("give exactly one of 'correct' and 'expected_answer'", Some("correct")));
    }
    let mut h = state.history();
    let Some(s) = h.by_id.get(&f.id).cloned() else {
        return Err(ApiError::not_found(format!("no recent request with id '{}' (the server keeps the last {})", f.id, h.cap))
            .with_code("request_not_found"));
    };
    if s.graded.is_some() {
        return Err(ApiError::bad_request(format!("request '{}' is already graded", f.id), Some("id")).with_code("already_graded"));
    }
    let (extracted, ok) = match (&f.correct, &f.expected_answer) {
        (Some(c), _) => (None, *c),
        (None, Some(exp)) => grade(&s.answer, &s.thinking, exp),
        _ => unreachable!("checked above"),
    };
    h.observe(&s.labels, Observation { correct: ok, thinking_seconds: s.thinking_seconds, thinking_tokens: s.thinking_tokens });
    if let Some(entry) = h.by_id.get_mut(&f.id) {
        entry.graded = Some(ok);
    }
    Ok(axum::Json(Graded { id: f.id, correct: ok, extracted_answer: extracted, labels: s.labels }).into_response())
}

#[derive(Serialize)]
struct Graded {
    id: String,
    correct: bool,
    extracted_answer: Option<String>,
    labels: Labels,
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
    let h = state.history();
    let mut rows: Vec<ScalingRow> = h.cells.iter().map(|(l, obs)| ScalingRow { cell: summarise(obs), labels: l.clone() }).collect();
    // Cheapest first; ties by sample count.
    rows.sort_by(|a, b| {
        a.cell.mean_thinking_tokens.total_cmp(&b.cell.mean_thinking_tokens).then_with(|| a.labels.samples.cmp(&b.labels.samples))
    });
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
    let mut h = state.history();
    for o in p.observations.iter() {
        h.observe(&o.labels, Observation { correct: o.correct, thinking_seconds: o.thinking_seconds, thinking_tokens: o.thinking_tokens });
    }
    Ok(axum::Json(Accepted { accepted: p.observations.len() }).into_response())
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}
