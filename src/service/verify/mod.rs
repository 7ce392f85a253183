//! Every verifier behind one async trait, `Verifier`, and one registry (`build`) from the
//! request's name to its implementation: chain scores (`scores.rs`: logprob, arithmetic, and the
//! P(True) judgements `self` and `model` the backend made as the request's data asked), programs run
//! in the sandbox (`tests.rs`), answer checks (`answers.rs`: regex, JSON schema) and operator HTTP
//! checkers (`http.rs`). A group's verifier runs once the group has finished, off the decode
//! thread, under one timeout; a verifier that fails or times out scores its candidates 0 and says
//! why, and the request still answers. The vote sees only scores, reasons and a selection.

mod answers;
mod http;
mod scores;
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::reasoning::chat::Message;
use crate::reasoning::code::{self, Selection, Suite};
use crate::reasoning::plan::{Check, Verifier as Name};

use super::invalid::Invalid;
use super::pipeline::{SideTokens, TestsVerdict, Watch};
use super::Service;
use crate::backend::{Event, JobHandle, SampleVerdict};
use crate::sandbox::harness;

pub use tests::{GeneratedTests, WritingTests};

/// One sample offered to a verifier.
#[derive(Debug, Clone, Default)]
pub struct Candidate {
    pub thinking: String,
    pub answer: String,
    /// The chain's confidence, or its mean log-probability: breaks ties.
    pub confidence: f64,
    pub mean_logprob: f64,
    /// The backend's P(True) of this answer, when the request asked it to judge (`self`, `model`).
    pub judged: Option<f64>,
}

/// A verifier's word on one candidate.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub score: f64,
    /// `verifier: "tests"`: cases run and passed, and the sample's behaviour group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestsVerdict>,
    /// Why this candidate could not be checked (it then scores 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Verdict {
    /// A program's run against a suite: the share of cases passed, and its group.
    fn of_run(r: harness::Report, group: Option<usize>) -> Self {
        let score = if r.cases == 0 { 0.0 } else { r.passed as f64 / r.cases as f64 };
        Self { score, tests: Some(TestsVerdict { run: r.cases, passed: r.passed, group }), error: r.error }
    }
}

/// A verifier's verdicts on a group, and the choice it makes when it chooses by itself.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub verdicts: Vec<Verdict>,
    pub selection: Option<Selection>,
}

impl Checked {
    fn failed(n: usize, why: &str) -> Self {
        Self { verdicts: (0..n).map(|_| Verdict { error: Some(why.to_string()), ..Verdict::default() }).collect(), selection: None }
    }
}

/// A verifier: scores for a finished group's candidates, and the choice it makes when it chooses
/// by itself.
pub trait Verifier: Send + Sync {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked>;
    /// Sample `index`, finished, checked at once while the others decode (`StopRule::Verified`):
    /// whether it passed every test, and its behaviour key. Verifiers that judge samples only
    /// against each other cannot, and say it fails.
    fn check_one<'a>(&'a self, index: usize, _candidate: &'a Candidate) -> BoxFuture<'a, SampleVerdict> {
        Box::pin(std::future::ready(SampleVerdict::failed(index)))
    }
    /// Tokens the verifier had the model generate, once for the request however many choices it
    /// checked (read after the last `verify`).
    fn side_tokens(&self) -> SideTokens {
        SideTokens::default()
    }
}

/// Checks each sample of a job as it finishes and hands the verdict to the backend
/// (`StopRule::Verified`, which waits for one on every finished sample: a sample the verifier
/// cannot check, or checks past the timeout, is reported as failing). Once the request is
/// dropped (read to its end, or its client gone) the job is cancelled and no new check starts.
pub fn live(check: Option<(Arc<dyn Verifier>, Duration)>, handle: JobHandle) -> Watch {
    let guard = CancelOnDrop(handle);
    Box::new(move |event| {
        let Event::Finished { index, reason, stats } = event else { return };
        if !reason.counted() {
            return;
        }
        let candidate = Candidate { thinking: stats.thinking.clone(), answer: stats.answer.clone(), ..Candidate::default() };
        let (check, handle, index) = (check.clone(), guard.0.clone(), *index);
        tokio::spawn(async move {
            if handle.is_cancelled() {
                return;
            }
            let found = match &check {
                Some((v, timeout)) => {
                    tokio::time::timeout(*timeout, v.check_one(index, &candidate)).await.unwrap_or(SampleVerdict::failed(index))
                }
                None => SampleVerdict::failed(index),
            };
            handle.verdict(found);
        });
    })
}

/// Cancels its job when dropped: a request's reader owns it through its watch.
struct CancelOnDrop(JobHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs a verifier under its timeout; past it, every candidate scores 0.
pub async fn checked(v: &dyn Verifier, candidates: &[Candidate], timeout: Duration) -> Checked {
    match tokio::time::timeout(timeout, v.verify(candidates)).await {
        Ok(c) => c,
        Err(_) => Checked::failed(candidates.len(), &format!("the verifier took over {} s", timeout.as_secs_f64())),
    }
}

/// The gate's part for checking verifiers (`validate::prepare` calls it): a check's needs met —
/// the sandbox for tests and something to test with, a configured checker for a name — and the
/// verifier's inputs built.
pub fn inputs(state: &Service, check: &Option<Check>, messages: &[Message]) -> Result<Option<CheckInput>, Invalid> {
    let Some(check) = check else { return Ok(None) };
    let prompt = messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default();
    Ok(Some(match check {
        Check::Tests { tests, generated, entry_point } => {
            if state.sandbox.is_none() {
                return Err(Invalid::unsupported("verifier 'tests' runs model-written code, which this server does not do unless started with --code-exec python (config key code_exec)", "reasoning.verifier"));
            }
            let entry = entry_point.clone().or_else(|| code::entry_point(&prompt));
            if *generated {
                let Some(entry) = entry else {
                    return Err(Invalid::field(
                        "'tests': 'generated' needs the function to test: a `def` in the prompt or 'reasoning.entry_point'",
                        Some("reasoning.entry_point"),
                    ));
                };
                return Ok(Some(CheckInput::Generated { entry_point: entry, prompt }));
            }
            let suite = Suite::for_prompt(&prompt, entry, tests.clone());
            if suite.is_empty() {
                return Err(Invalid::field("verifier 'tests' found no examples in the prompt (`>>> call` then its value, or `f(x) == y`); send them as 'reasoning.tests'", Some("reasoning.tests")));
            }
            CheckInput::Tests(suite)
        }
        Check::Regex(p) => {
            CheckInput::Regex(regex::Regex::new(p).map_err(|e| Invalid::field(e.to_string(), Some("reasoning.verifier.pattern")))?)
        }
        Check::JsonSchema(s) => CheckInput::JsonSchema(s.clone()),
        Check::Http { name, tests } => {
            let Some(checker) = state.cfg.verifiers.get(name) else {
                let known: Vec<&str> = state.cfg.verifiers.keys().map(String::as_str).collect();
                return Err(Invalid::field(
                    format!(
                        "no verifier named '{name}' is configured here (known: {})",
                        if known.is_empty() { "none".into() } else { known.join(", ") }
                    ),
                    Some("reasoning.verifier.name"),
                ));
            };
            CheckInput::Http { checker: checker.clone(), prompt, tests: tests.clone() }
        }
    }))
}

/// What a checking verifier runs with, prepared at the gate.
pub enum CheckInput {
    Tests(Suite),
    /// The model writes the tests for this function (CodeT).
    Generated {
        entry_point: String,
        prompt: String,
    },
    Regex(regex::Regex),
    JsonSchema(serde_json::Value),
    Http {
        checker: crate::config::HttpChecker,
        prompt: String,
        tests: Option<String>,
    },
}

/// The registry: the verifier a request names, with its timeout (None: `none`). Checking
/// verifiers run with what the gate prepared (`input`); `generate` starts writing the tests for
/// `tests: "generated"` (prompt, entry point), beside the samples.
pub fn build(
    state: &Service,
    name: Name,
    input: Option<CheckInput>,
    generate: impl FnOnce(&str, &str) -> GeneratedTests,
) -> Option<(Arc<dyn Verifier>, Duration)> {
    let off = || -> Arc<dyn Verifier> { Arc::new(Unavailable("code execution is off")) };
    let v: Arc<dyn Verifier> = match (name, input) {
        (Name::None, _) => return None,
        (Name::Logprob, _) => Arc::new(scores::Logprob),
        (Name::Arithmetic, _) => Arc::new(scores::Arithmetic),
        (Name::SelfJudge | Name::Model, _) => Arc::new(scores::Judged),
        (_, Some(CheckInput::Generated { entry_point, prompt })) => match &state.sandbox {
            Some(sb) => {
                let tests = generate(&prompt, &entry_point);
                Arc::new(tests::Generated::new(sb.clone(), entry_point, code::imports(&prompt), tests))
            }
            None => off(),
        },
        // The gate refused tests without a sandbox.
        (_, Some(CheckInput::Tests(suite))) => match &state.sandbox {
            Some(sb) => Arc::new(tests::Tests::new(sb.clone(), suite)),
            None => off(),
        },
        (_, Some(CheckInput::Regex(re))) => Arc::new(answers::Pattern(re)),
        (_, Some(CheckInput::JsonSchema(s))) => Arc::new(answers::Schema(s)),
        (_, Some(CheckInput::Http { checker, prompt, tests })) => {
            Arc::new(http::Http { client: state.http.clone(), checker, prompt, tests })
        }
        // The gate prepares an input for every checking verifier.
        (Name::Tests | Name::Regex | Name::JsonSchema | Name::Http, None) => Arc::new(Unavailable("the verifier's input is missing")),
    };
    Some((v, Duration::from_secs_f64(state.cfg.verifier_timeout.max(0.001))))
}

/// A verifier that cannot run: every candidate scores 0 with the reason.
struct Unavailable(&'static str);

impl Verifier for Unavailable {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        Box::pin(std::future::ready(Checked::failed(candidates.len(), self.0)))
    }
}
