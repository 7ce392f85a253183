//! The one entry the HTTP handlers call, as TGI's `Infer`: a raw body goes through the gate and
//! its jobs are submitted; the handler gets back a started request, read whole or one
//! `pipeline::Update` at a time for a stream. Handlers see these types, never a backend or its
//! events.

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use serde_json::json;

use super::grading::{AutoDecision, Grade};
use super::invalid::Invalid;
use super::pipeline::{events, submit, Collector, Failure, Reader, SideTokens};
use super::request::Validated;
use super::validate::{off_thread, prepare_completion, prepare_off_thread, PreparedCompletion};
use super::verify::{GeneratedTests, WritingTests};
use super::vote::{Ballots, Outcome};
use super::Service;
use crate::backend::Backend;
use crate::backend::StopRule;
use crate::reasoning::plan::ReasoningPlan;

/// Why a request did not start: the gate refused it, or nothing could run it.
#[derive(Debug)]
pub enum NotStarted {
    Invalid(Invalid),
    Failure(Failure),
}

impl From<Invalid> for NotStarted {
    fn from(e: Invalid) -> Self {
        Self::Invalid(e)
    }
}

impl From<Failure> for NotStarted {
    fn from(e: Failure) -> Self {
        Self::Failure(e)
    }
}

/// A started chat request: what its answer is shown with, and its jobs' updates.
pub struct ChatRun {
    pub id: String,
    pub v: Validated,
    pub plan: ReasoningPlan,
    /// The model's own thinking markers, when it has them.
    pub native: Option<(String, String)>,
    /// Names of the tools the model may call (its answer is parsed for calls).
    pub tools: Option<Vec<String>>,
    pub logprobs: bool,
    pub auto: Option<AutoDecision>,
    /// Grades the answer when the request carried a reference.
    pub grade: Grade,
    /// Self-consistency: how each choice is decided from its sample group (the handler takes it
    /// to vote, whole or streamed).
    pub ballot: Option<Ballots>,
    pub reader: Reader,
}

/// A whole chat answer: the job's results, each choice voted when it sampled a group.
pub struct ChatWhole {
    pub col: Collector,
    /// One per choice when the request sampled groups; empty otherwise (read `col.choices`).
    pub outcomes: Vec<Outcome>,
    pub graded: Option<bool>,
}

/// Validates a chat body and submits its job (a sample group per choice when it votes).
pub async fn chat(state: &Service, body: Bytes) -> Result<ChatRun, NotStarted> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4());
    let mut p = prepare_off_thread(state, &backend, &id, body).await?;
    let group = p.plan.sampling.samples as usize;
    let n = p.v.n;
    let ballot = (group > 1).then(|| {
        let check = p
            .check
            .take()
            .map(|c| super::verify::build(state, c, |prompt, entry| generate_tests(state.clone(), backend.clone(), prompt, entry)));
        Ballots { n, group, plan: p.plan.sampling.clone(), score: state.cfg.reasoning.confidence_score, effort: p.plan.effort, check }
    });
    let mut col = Collector::new("chat", id.clone(), n * group, started);
    col.effort = p.plan.thinking.then_some(p.plan.effort);
    let verified = p.spec.vote.as_ref().and_then(|v| v.adaptive).is_some_and(|a| matches!(a.rule, StopRule::Verified { .. }));
    let (rx, handle) = submit(&*backend, p.spec)?;
    let grade = Grade { service: state.clone(), id: id.clone(), plan: p.plan.clone(), expected: p.expected };
    let drain = ballot.is_some();
    let mut reader = Reader::new(vec![col], events(vec![rx]), drain);
    if verified {
        reader = reader.watching(super::verify::live(ballot.as_ref().and_then(|b| b.check.clone()), handle));
    }
    Ok(ChatRun {
        id,
        v: p.v,
        plan: p.plan,
        native: p.native,
        tools: p.tools.map(|t| t.tools.into_iter().map(|x| x.name).collect()),
        logprobs: p.logprobs,
        auto: p.auto,
        grade,
        ballot,
        reader,
    })
}

impl ChatRun {
    /// Reads every update, votes each sample group by `ballot`, and grades the answer.
    pub async fn whole(self, ballot: Option<&Ballots>) -> Result<ChatWhole, Failure> {
        let mut col = self.reader.collect().await?.remove(0);
        let Some(ballot) = ballot else {
            let graded = self.grade.record(&col);
            return Ok(ChatWhole { col, outcomes: Vec::new(), graded });
        };
        let (outcomes, graded) = ballot.decide_graded(&mut col, &self.grade).await;
        Ok(ChatWhole { col, outcomes, graded })
    }
}

/// A started text completion: one job per prompt.
pub struct TextRun {
    pub id: String,
    pub prepared: PreparedCompletion,
    pub reader: Reader,
}

/// Validates a text-completion body and submits one job per prompt.
pub async fn completions(state: &Service, body: Bytes) -> Result<TextRun, NotStarted> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("cmpl-{}", uuid::Uuid::new_v4());
    let (st, b, jid) = (state.clone(), backend.clone(), id.clone());
    let mut prepared = off_thread(move || prepare_completion(&st, &*b, &jid, body)).await?;
    let mut receivers = Vec::new();
    let mut cols = Vec::new();
    for spec in std::mem::take(&mut prepared.specs) {
        cols.push(Collector::new("completions", spec.id.clone(), prepared.v.n, started));
        let (rx, _cancel) = submit(&*backend, spec)?;
        receivers.push(rx);
    }
    Ok(TextRun { id, prepared, reader: Reader::new(cols, events(receivers), false) })
}

/// The prompt text a chat body is decoded from (template, tools and scaffold included).
pub async fn template(state: &Service, body: Bytes) -> Result<String, NotStarted> {
    let backend = state.backend()?;
    Ok(prepare_off_thread(state, &backend, "template", body).await?.prompt_text)
}

/// A text's token ids, as the model's vocabulary reads it.
pub async fn tokenize(state: &Service, text: String, add_special: bool) -> Result<Vec<i32>, NotStarted> {
    let backend = state.backend()?;
    let tokens = tokio::task::spawn_blocking(move || backend.vocabulary().tokenize(&text, add_special))
        .await
        .map_err(|_| Invalid::Internal)?
        .map_err(|e| Invalid::text(e, "content"))?;
    Ok(tokens.into_iter().map(|t| t.0).collect())
}

fn generate_tests(state: Service, backend: Arc<dyn Backend>, prompt: &str, entry: &str) -> GeneratedTests {
    let ask = format!(
        "{prompt}\n\nDo not implement `{entry}`. Write 8 different test cases for it as Python assert statements, one per line, in one ```python block."
    );
    let body =
        json!({"messages": [{"role": "user", "content": ask}], "temperature": 0, "max_tokens": 384, "reasoning": {"enabled": false}});
    let job = tokio::spawn(async move {
        let id = format!("tests-{}", uuid::Uuid::new_v4());
        let p = prepare_off_thread(&state, &backend, &id, body.to_string().into()).await.map_err(WritingTests::Refused)?;
        let (rx, _cancel) = submit(&*backend, p.spec).map_err(WritingTests::Failed)?;
        let cols = Reader::new(vec![Collector::new("chat", id, 1, Instant::now())], events(vec![rx]), false)
            .collect()
            .await
            .map_err(WritingTests::Failed)?;
        let Some(col) = cols.into_iter().next() else { return Ok(Default::default()) };
        let spent = SideTokens { prompt: col.prompt_tokens, cached: col.cached_tokens, completion: col.completion_tokens() };
        Ok((col.choices.into_iter().next().map(|c| c.answer).unwrap_or_default(), spent))
    });
    async move { job.await.unwrap_or_else(|e| Err(WritingTests::Stopped(e.to_string()))) }.boxed().shared()
}
