//! `verifier: "tests"`: each sample's program run in the sandbox against the prompt's examples or
//! the client's tests (`Tests`), or against asserts the model writes (`Generated`, CodeT).

use std::sync::Arc;

use futures::future::{join_all, BoxFuture, Shared};
use futures::FutureExt;

use super::{Candidate, Checked, Verdict, Verifier};
use crate::backend::SampleVerdict;
use crate::reasoning::code::{self, Executed, Suite};
use crate::sandbox::{harness, Sandbox};
use crate::service::pipeline::SideTokens;

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

impl Verifier for Tests {
    fn check_one<'a>(&'a self, index: usize, candidate: &'a Candidate) -> BoxFuture<'a, SampleVerdict> {
        Box::pin(async move {
            match self.run(candidate).await {
                Some(Ok(r)) => {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    r.behaviour.hash(&mut h);
                    SampleVerdict { index, passed: r.cases > 0 && r.passed == r.cases, behaviour: h.finish() }
                }
                _ => SampleVerdict::failed(index),
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
    Refused(crate::service::invalid::Invalid),
    #[error("writing the tests: {0:?}")]
    Failed(crate::service::pipeline::Failure),
    #[error("writing the tests: {0}")]
    Stopped(String),
}

/// `tests: "generated"`: every sample's program against the asserts the model wrote, chosen by
/// dual execution agreement (`code::dual_agreement`).
pub struct Generated {
    sandbox: Arc<Sandbox>,
    entry_point: String,
    /// The prompt's imports (`Suite::prelude`).
    prelude: String,
    tests: GeneratedTests,
}

impl Generated {
    pub fn new(sandbox: Arc<Sandbox>, entry_point: String, prelude: String, tests: GeneratedTests) -> Self {
        Self { sandbox, entry_point, prelude, tests }
    }
}

impl Verifier for Generated {
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
            // None: no program in the answer.
            let runs = join_all(candidates.iter().map(|c| async {
                let p = code::program(&c.answer).or_else(|| code::program(&c.thinking))?;
                Some(harness::run_with(&self.sandbox, &p, &suite, 0, true).await)
            }))
            .await;
            let outcomes: Vec<Option<Vec<bool>>> =
                runs.iter().map(|r| r.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.outcomes.clone())).collect();
            let confidence: Vec<f64> = candidates.iter().map(|c| c.confidence).collect();
            let selection = code::dual_agreement(&outcomes, &confidence);
            let verdicts = runs
                .into_iter()
                .zip(&selection.groups)
                .map(|(r, group)| match r {
                    Some(Ok(r)) => Verdict::of_run(r, *group),
                    Some(Err(e)) => Verdict { error: Some(e.to_string()), ..Verdict::default() },
                    None => Verdict { error: Some("no program in the answer".into()), ..Verdict::default() },
                })
                .collect();
            Checked { verdicts, selection: Some(selection) }
        })
    }

    fn side_tokens(&self) -> SideTokens {
        self.tests.peek().and_then(|r| r.as_ref().ok()).map(|(_, spent)| *spent).unwrap_or_default()
    }
}
