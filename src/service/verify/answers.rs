//! Verifiers that read the answer's text: a regular expression, a JSON schema.

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Candidate, Checked, Verdict, Verifier};
use crate::reasoning::schema;

/// `{"type": "regex", "pattern": ...}`: 1 when the pattern is found in the trimmed answer, else 0.
pub struct Pattern(pub regex::Regex);

impl Verifier for Pattern {
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

impl Verifier for Schema {
    fn verify<'a>(&'a self, candidates: &'a [Candidate]) -> BoxFuture<'a, Checked> {
        let ok = |c: &Candidate| schema::answer_json(&c.answer).is_some_and(|v| schema::valid(&self.0, &v));
        let verdicts = candidates.iter().map(|c| Verdict { score: f64::from(u8::from(ok(c))), ..Verdict::default() }).collect();
        Box::pin(std::future::ready(Checked { verdicts, selection: None }))
    }
}
