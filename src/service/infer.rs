//! The one entry the HTTP handlers call, as TGI's `Infer`: a raw body goes through the gate and
//! its jobs are submitted; the handler gets back a started request, read whole or one
//! `pipeline::Update` at a time for a stream. Handlers see these types, never a backend or its
//! events.

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use super::grading::{AutoDecision, Grade};
use super::invalid::Invalid;
use super::pipeline::{events, submit, Collector, Failure, Finish, Outcome, Reader, SideTokens, Update};
use super::request::Validated;
use super::validate::{off_thread, prepare_completion, prepare_off_thread, Body, PreparedCompletion};
use super::verify::{GeneratedTests, WritingTests};
use super::vote::Ballots;
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
    /// Self-consistency: the samples each choice is decided from (its progress is per sample;
    /// the decided choices come with `Update::Decided`).
    pub group: Option<usize>,
    /// The jobs' updates, ending with `Update::Decided` once the service voted and graded.
    pub reader: Reader,
}

/// How a chat request is finished once its samples are in: each choice voted from its group,
/// and the answer graded against the request's reference.
struct Finishing {
    ballot: Option<Ballots>,
    grade: Grade,
}

impl Finish for Finishing {
    fn finish(self: Box<Self>, cols: &mut [Collector]) -> BoxFuture<'_, Update> {
        Box::pin(async move {
            let col = &mut cols[0];
            let Some(ballot) = &self.ballot else {
                return Update::Decided { outcomes: Vec::new(), graded: self.grade.record(col) };
            };
            let (outcomes, graded) = ballot.decide_graded(col, &self.grade).await;
            Update::Decided { outcomes, graded }
        })
    }
}

/// A whole chat answer: the job's results, each choice voted when it sampled a group.
pub struct ChatWhole {
    pub col: Collector,
    /// One per choice when the request sampled groups; empty otherwise (read `col.choices`).
    pub outcomes: Vec<Outcome>,
    pub graded: Option<bool>,
}

/// Validates a chat body and submits its job (a sample group per choice when it votes).
pub async fn chat(state: &Service, body: Body) -> Result<ChatRun, NotStarted> {
    let started = Instant::now();
    let backend = state.backend()?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4());
    let mut p = prepare_off_thread(state, &backend, &id, body).await?;
    let group = p.plan.sampling.samples as usize;
    let n = p.v.n;
    let ballot = (group > 1).then(|| {
        let generate = |prompt: &str, entry: &str| generate_tests(state.clone(), backend.clone(), prompt, entry);
        let check = super::verify::build(state, p.plan.sampling.verifier, p.check.take(), generate);
        Ballots { n, group, plan: p.plan.sampling.clone(), score: state.cfg.reasoning.confidence_score, effort: p.plan.effort, check }
    });
    let mut col = Collector::new("chat", id.clone(), n * group, started);
    col.effort = p.plan.thinking.then_some(p.plan.effort);
    let verified = p.spec.vote.as_ref().and_then(|v| v.adaptive).is_some_and(|a| matches!(a.rule, StopRule::Verified { .. }));
    let (rx, handle) = submit(&*backend, p.spec)?;
    let grade = Grade { service: state.clone(), id: id.clone(), plan: p.plan.clone(), expected: p.expected };
    let group = ballot.as_ref().map(|b| b.group);
    let mut reader = Reader::new(vec![col], events(vec![rx]), group.is_some());
    if verified {
        reader = reader.watching(super::verify::live(ballot.as_ref().and_then(|b| b.check.clone()), handle));
    }
    let reader = reader.finishing(Box::new(Finishing { ballot, grade }));
    Ok(ChatRun {
        id,
        v: p.v,
        plan: p.plan,
        native: p.native,
        tools: p.tools.map(|t| t.tools.into_iter().map(|x| x.name).collect()),
        logprobs: p.logprobs,
        auto: p.auto,
        group,
        reader,
    })
}

impl ChatRun {
    /// Reads every update: the answer voted (when it sampled groups) and graded.
    pub async fn whole(mut self) -> Result<ChatWhole, Failure> {
        let mut decided = None;
        while let Some((_, u)) = self.reader.next().await {
            if let Update::Decided { outcomes, graded } = u {
                decided = Some((outcomes, graded));
            }
        }
        // Everything is read: this only logs the job and says whether it failed.
        let col = self.reader.collect().await?.remove(0);
        let (outcomes, graded) = decided.unwrap_or_default();
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
    Ok(prepare_off_thread(state, &backend, "template", Body::Raw(body)).await?.prompt_text)
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
    let body = body.as_object().cloned().unwrap_or_default();
    let job = tokio::spawn(async move {
        let id = format!("tests-{}", uuid::Uuid::new_v4());
        let p = prepare_off_thread(&state, &backend, &id, Body::Object(body)).await.map_err(WritingTests::Refused)?;
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
