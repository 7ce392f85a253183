//! Verifiers that score a chain from what decoding it produced: its mean log-probability, the
//! arithmetic it shows, or the P(True) judgement the backend made of its answer (`self`, `model`:
//! the request's `JobSpec::judge` asks the engine for it as data, beside the samples).

use futures::future::BoxFuture;

use super::{Candidate, Checked, Verdict, Verifier};
use crate::reasoning::extract::final_answer;
use crate::reasoning::verify::{arithmetic_score, logprob_score};

fn scored(candidates: &[Candidate], score: impl Fn(&Candidate) -> f64) -> BoxFuture<'static, Checked> {
    let verdicts = candidates.iter().map(|c| Verdict { score: score(c), ..Verdict::default() }).collect();
    Box::pin(std::future::ready(Checked { verdicts, selection: None }))
}

/// `logprob`: the chain's mean token log-probability mapped into [0, 1].
pub struct Logprob;

impl Verifier for Logprob {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        scored(candidates, |c| logprob_score(c.mean_logprob))
    }
}

/// `arithmetic`: the share of the chain's `a op b = c` steps that hold (0.5 when it shows none).
pub struct Arithmetic;

impl Verifier for Arithmetic {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        scored(candidates, |c| {
            let answer = final_answer(&c.answer, &c.thinking);
            arithmetic_score(&format!("{}\n{}", c.thinking, c.answer), answer.as_deref()).unwrap_or(0.5)
        })
    }
}

/// `self` and `model`: the backend's P(True) of the candidate's answer (0 when it judged none).
pub struct Judged;

impl Verifier for Judged {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        scored(candidates, |c| c.judged.unwrap_or(0.0))
    }
}
