//! An operator-configured HTTP checker (`[verifiers.NAME]`): a scoring service, or SandboxFusion.

use futures::future::{join_all, BoxFuture};
use serde_json::{json, Value};

use super::{Candidate, Checked, Verdict, Verifier};
use crate::config::{HttpChecker, HttpKind};
use crate::reasoning::code;

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

impl Verifier for Http {
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
