//! Verifiers that take time — running each sample's program against tests in the sandbox, asking
//! an operator's HTTP checker — behind one async trait. They run once a sample group has finished,
//! off the decode thread, concurrently over the samples and under one timeout; a verifier that
//! fails or times out scores its candidates 0 and says why, and the request still answers.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture, Shared};
use futures::FutureExt;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{HttpChecker, HttpKind};
use crate::reasoning::chat::Message;
use crate::reasoning::code::{self, Executed, Selection, Suite};
use crate::reasoning::sampling::Check;
use crate::reasoning::schema;
use crate::sandbox::{harness, Sandbox};

use super::ballot::TestsVerdict;
use super::invalid::Invalid;
use super::pipeline::{SideTokens, Watch};
use super::Service;
use crate::backend::{Event, JobHandle, SampleVerdict};

/// One sample offered to a verifier.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub thinking: String,
    pub answer: String,
    /// The chain's confidence, or its mean log-probability: breaks ties.
    pub confidence: f64,
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

/// A verifier that takes time.
pub trait Verify: Send + Sync {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked>;
    /// One finished sample checked at once, while the others decode (`StopRule::Verified`):
    /// whether it passed every test, and its behaviour key. Verifiers that judge samples only
    /// against each other cannot, and say it fails.
    fn check_one<'a>(&'a self, _candidate: &'a Candidate) -> BoxFuture<'a, SampleCheck> {
        Box::pin(std::future::ready(SampleCheck::default()))
    }
    /// Tokens the verifier had the model generate, once for the request however many choices it
    /// checked (read after the last `verify`).
    fn side_tokens(&self) -> SideTokens {
        SideTokens::default()
    }
}

/// Checks each sample of a job as it finishes and hands the verdict to the backend
/// (`StopRule::Verified`, which waits for one on every finished sample: a sample the verifier
/// cannot check, or checks past the timeout, is reported as failing).
pub fn live(check: Option<(Arc<dyn Verify>, Duration)>, handle: JobHandle) -> Watch {
    Box::new(move |event| {
        let Event::Finished { index, reason, stats } = event else { return };
        if !reason.counted() {
            return;
        }
        let candidate = Candidate { thinking: stats.thinking.clone(), answer: stats.answer.clone(), confidence: 0.0 };
        let (check, handle, index) = (check.clone(), handle.clone(), *index);
        tokio::spawn(async move {
            let found = match &check {
                Some((v, timeout)) => tokio::time::timeout(*timeout, v.check_one(&candidate)).await.unwrap_or_default(),
                None => SampleCheck::default(),
            };
            handle.verdict(SampleVerdict { index, passed: found.passed, behaviour: found.behaviour });
        });
    })
}

/// Runs a verifier under its timeout; past it, every candidate scores 0.
pub async fn checked(v: &dyn Verify, candidates: &[Candidate], timeout: Duration) -> Checked {
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
            let examples = if tests.is_some() { Vec::new() } else { code::examples(&prompt, entry.as_deref()) };
            // The model's own top-level example calls are not what is tested: definitions only.
            let suite =
                Suite { entry_point: entry, examples, tests: tests.clone(), prelude: code::imports(&prompt), definitions_only: true };
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

/// The verifier a request's check asks for, with its timeout. `generate` starts writing the
/// tests for `tests: "generated"` (prompt, entry point), beside the samples.
pub fn build(state: &Service, input: CheckInput, generate: impl FnOnce(&str, &str) -> GeneratedTests) -> (Arc<dyn Verify>, Duration) {
    let v: Arc<dyn Verify> = match input {
        CheckInput::Generated { entry_point, prompt } => match &state.sandbox {
            Some(sb) => {
                let tests = generate(&prompt, &entry_point);
                Arc::new(Generated { sandbox: sb.clone(), entry_point, prelude: code::imports(&prompt), tests })
            }
            None => Arc::new(Unavailable("code execution is off")),
        },
        // The gate refused tests without a sandbox.
        CheckInput::Tests(suite) => match &state.sandbox {
            Some(sb) => Arc::new(Tests::new(sb.clone(), suite)),
            None => Arc::new(Unavailable("code execution is off")),
        },
        CheckInput::Regex(re) => Arc::new(Pattern(re)),
        CheckInput::JsonSchema(s) => Arc::new(Schema(s)),
        CheckInput::Http { checker, prompt, tests } => Arc::new(Http { client: state.http.clone(), checker, prompt, tests }),
    };
    (v, Duration::from_secs_f64(state.cfg.verifier_timeout.max(0.001)))
}

/// A verifier that cannot run: every candidate scores 0 with the reason.
struct Unavailable(&'static str);

impl Verify for Unavailable {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        Box::pin(std::future::ready(Checked::failed(candidates.len(), self.0)))
    }
}

/// What checking one sample found (`Verify::check_one`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleCheck {
    pub passed: bool,
    pub behaviour: u64,
}

/// A program's run against a suite, shared by whoever asks for the same program.
type SharedRun = Shared<BoxFuture<'static, Result<harness::Report, Arc<crate::sandbox::SandboxError>>>>;

/// `verifier: "tests"`: each sample's program against the suite, then `code::select`.
pub struct Tests {
    pub sandbox: Arc<Sandbox>,
    pub suite: Suite,
    /// Runs by program text: a sample checked as it finished is not run again for the selection.
    runs: std::sync::Mutex<std::collections::HashMap<String, SharedRun>>,
}

impl Tests {
    pub fn new(sandbox: Arc<Sandbox>, suite: Suite) -> Self {
        Self { sandbox, suite, runs: Default::default() }
    }

    /// The candidate's program run against the suite (None: it wrote no program).
    async fn run(&self, c: &Candidate) -> Option<Result<harness::Report, Arc<crate::sandbox::SandboxError>>> {
        let program = code::program(&c.answer).or_else(|| code::program(&c.thinking))?;
        let run = {
            let mut runs = self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            runs.entry(program.clone())
                .or_insert_with(|| {
                    let (sandbox, suite) = (self.sandbox.clone(), self.suite.clone());
                    async move { harness::run(&sandbox, &program, &suite, harness::PROBES).await.map_err(Arc::new) }.boxed().shared()
                })
                .clone()
        };
        Some(run.await)
    }
}

impl Verify for Tests {
    fn check_one<'a>(&'a self, candidate: &'a Candidate) -> BoxFuture<'a, SampleCheck> {
        Box::pin(async move {
            match self.run(candidate).await {
                Some(Ok(r)) => {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    r.behaviour.hash(&mut h);
                    SampleCheck { passed: r.cases > 0 && r.passed == r.cases, behaviour: h.finish() }
                }
                _ => SampleCheck::default(),
            }
        })
    }

    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            let runs = join_all(candidates.iter().map(|c| async move {
                match self.run(c).await {
                    None => (None, None),
                    Some(Ok(r)) => (Some(r), None),
                    Some(Err(e)) => (None, Some(e.to_string())),
                }
            }))
            .await;
            let cases = runs.iter().filter_map(|(r, _)| r.as_ref().map(|r| r.cases)).max().unwrap_or(self.suite.examples.len());
            let executed: Vec<Executed> = runs
                .iter()
                .zip(candidates)
                .map(|((r, _), c)| Executed {
                    has_program: r.is_some(),
                    passed: r.as_ref().map_or(0, |r| r.passed),
                    behaviour: r.as_ref().map_or_else(String::new, |r| r.behaviour.clone()),
                    confidence: c.confidence,
                })
                .collect();
            let selection = code::select(&executed, cases);
            let verdicts = runs
                .into_iter()
                .zip(&selection.groups)
                .map(|((r, err), group)| match r {
                    Some(r) => Verdict::of_run(r, *group),
                    None => Verdict { score: 0.0, tests: None, error: Some(err.unwrap_or_else(|| "no program in the answer".into())) },
                })
                .collect();
            Checked { verdicts, selection: Some(selection) }
        })
    }
}

/// The asserts the model writes for a function, as one greedy generation (the answer's text),
/// and what writing them cost.
pub type GeneratedTests = Shared<BoxFuture<'static, Result<(String, SideTokens), WritingTests>>>;

/// Why the model's tests were not written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WritingTests {
    #[error("writing the tests: {0:?}")]
    Refused(super::invalid::Invalid),
    #[error("writing the tests: {0:?}")]
    Failed(super::pipeline::Failure),
    #[error("writing the tests: {0}")]
    Stopped(String),
}

/// Why an HTTP checker gave no score.
#[derive(Debug, thiserror::Error)]
enum CheckerError {
    #[error("no program in the answer")]
    NoProgram,
    #[error("the checker did not answer: {0}")]
    Unreachable(reqwest::Error),
    #[error("the checker answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the checker's answer is not JSON: {0}")]
    NotJson(reqwest::Error),
    #[error("the checker's answer has no 'score' in [0, 1]")]
    NoScore,
}

/// `tests: "generated"`: every sample's program against the asserts the model wrote, chosen by
/// dual execution agreement (`code::dual_agreement`).
pub struct Generated {
    pub sandbox: Arc<Sandbox>,
    pub entry_point: String,
    /// The prompt's imports (`Suite::prelude`).
    pub prelude: String,
    tests: GeneratedTests,
}

impl Verify for Generated {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            let asserts = match self.tests.clone().await {
                Ok((text, _)) => code::asserts(&text),
                Err(e) => return Checked::failed(candidates.len(), &e.to_string()),
            };
            if asserts.is_empty() {
                return Checked::failed(candidates.len(), "the model wrote no assert statements");
            }
            let suite = Suite {
                entry_point: Some(self.entry_point.clone()),
                tests: Some(asserts),
                prelude: self.prelude.clone(),
                definitions_only: true,
                ..Suite::default()
            };
            let runs = join_all(candidates.iter().map(|c| async {
                match code::program(&c.answer).or_else(|| code::program(&c.thinking)) {
                    None => Err("no program in the answer".to_string()),
                    Some(p) => harness::run_with(&self.sandbox, &p, &suite, 0, true).await.map_err(|e| e.to_string()),
                }
            }))
            .await;
            let outcomes: Vec<Option<Vec<bool>>> = runs.iter().map(|r| r.as_ref().ok().map(|r| r.outcomes.clone())).collect();
            let confidence: Vec<f64> = candidates.iter().map(|c| c.confidence).collect();
            let selection = code::dual_agreement(&outcomes, &confidence);
            let verdicts = runs
                .into_iter()
                .zip(&selection.groups)
                .map(|(r, group)| match r {
                    Ok(r) => Verdict::of_run(r, *group),
                    Err(e) => Verdict { error: Some(e.to_string()), ..Verdict::default() },
                })
                .collect();
            Checked { verdicts, selection: Some(selection) }
        })
    }

    fn side_tokens(&self) -> SideTokens {
        self.tests.peek().and_then(|r| r.as_ref().ok()).map(|(_, spent)| *spent).unwrap_or_default()
    }
}

/// `{"type": "regex", "pattern": ...}`: 1 when the pattern is found in the trimmed answer, else 0.
pub struct Pattern(pub regex::Regex);

impl Verify for Pattern {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        let verdicts = candidates
            .iter()
            .map(|c| Verdict { score: f64::from(u8::from(self.0.is_match(c.answer.trim()))), ..Verdict::default() })
            .collect();
        Box::pin(std::future::ready(Checked { verdicts, selection: None }))
    }
}

/// `{"type": "json_schema", "schema": ...}`: 1 when the answer (or its last fenced block) is JSON
/// that satisfies the schema, else 0.
pub struct Schema(pub Value);

impl Verify for Schema {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        let ok = |c: &Candidate| schema::answer_json(&c.answer).is_some_and(|v| schema::valid(&self.0, &v));
        let verdicts = candidates.iter().map(|c| Verdict { score: f64::from(u8::from(ok(c))), ..Verdict::default() }).collect();
        Box::pin(std::future::ready(Checked { verdicts, selection: None }))
    }
}

/// An operator-configured HTTP checker, asked once per candidate, concurrently.
pub struct Http {
    pub client: reqwest::Client,
    pub checker: HttpChecker,
    /// The user's last message: what the answer answers.
    pub prompt: String,
    /// SandboxFusion: tests appended to each program.
    pub tests: Option<String>,
}

impl Http {
    async fn one(&self, c: &Candidate) -> Result<f64, CheckerError> {
        let body = match self.checker.kind {
            HttpKind::Score => json!({"prompt": self.prompt, "answer": c.answer, "reasoning": c.thinking}),
            HttpKind::SandboxFusion => {
                let program = code::program(&c.answer).ok_or(CheckerError::NoProgram)?;
                let code = match &self.tests {
                    Some(t) => format!("{program}\n\n{t}\n"),
                    None => program,
                };
                json!({"code": code, "language": "python"})
            }
        };
        let r = self.client.post(&self.checker.url).json(&body).send().await.map_err(CheckerError::Unreachable)?;
        if !r.status().is_success() {
            return Err(CheckerError::Status(r.status()));
        }
        let v: Value = r.json().await.map_err(CheckerError::NotJson)?;
        match self.checker.kind {
            HttpKind::Score => v.get("score").and_then(Value::as_f64).filter(|s| (0.0..=1.0).contains(s)).ok_or(CheckerError::NoScore),
            // SandboxFusion's /run_code: {"status": "Success", "run_result": {"return_code": 0, ...}}
            HttpKind::SandboxFusion => {
                let ok = v.get("status").and_then(Value::as_str) == Some("Success")
                    && v.pointer("/run_result/return_code").and_then(Value::as_i64) == Some(0);
                Ok(f64::from(u8::from(ok)))
            }
        }
    }
}

impl Verify for Http {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        Box::pin(async move {
            let verdicts = join_all(candidates.iter().map(|c| async move {
                match self.one(c).await {
                    Ok(score) => Verdict { score, ..Verdict::default() },
                    Err(e) => Verdict { error: Some(e.to_string()), ..Verdict::default() },
                }
            }))
            .await;
            Checked { verdicts, selection: None }
        })
    }
}
