//! Self-consistency in a request: how many chains, how they are voted on, verified, stopped
//! early and filtered by confidence (`reasoning.samples`, `aggregate`, `verifier`, `adaptive`,
//! `confidence`, `prune`, `keep_top`, `warmup`, nested or top level).

use serde_json::{Map, Value};

use super::params::{boolean, err, int, number, string, PlanError, AGGREGATES, CHECKERS, CONFIDENCE, KEEP_TOP, PRUNES, SAMPLES, VERIFIERS};
use super::plan::Policy;

/// Self-consistency: how many chains to sample and how to choose among them.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingPlan {
    pub samples: u32,
    pub aggregate: Aggregate,
    pub verifier: Verifier,
    pub adaptive: bool,
    /// Stopping level: of the Beta rule, or of the confidence-weighted consensus when pruning.
    pub confidence: f64,
    /// `reasoning.prune: "confidence"`: the first wave calibrates a threshold, later chains below
    /// it stop at once, and sampling ends at confidence-weighted consensus (DeepConf online).
    pub prune: bool,
    /// `reasoning.keep_top`: vote only among this share of chains, most confident first; with
    /// `prune`, the share of first-wave chains the online threshold would keep instead.
    pub keep_top: Option<f64>,
    /// `reasoning.warmup`: chains in the first wave (the online filter's calibration, or the
    /// adaptive rule's first look); the server's `prune_warmup` / `wave_size` when absent.
    pub warmup: Option<u32>,
    /// What a verifier that checks answers against something needs: tests, a pattern, a checker.
    pub check: Option<Check>,
}

/// The data of the verifiers that run a check rather than read the chains' own numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// `verifier: "tests"`: each sample's program runs against `tests` (client-sent Python
    /// asserts), or without them against the examples in the prompt's docstrings.
    /// `tests: "generated"`: the model writes asserts too, and samples are chosen by dual
    /// execution agreement (CodeT).
    Tests { tests: Option<String>, generated: bool, entry_point: Option<String> },
    /// `{"type": "regex", "pattern": ...}`: 1 when the pattern is found in the trimmed answer
    /// (anchor it with `^...$` to match the whole answer), else 0.
    Regex(String),
    /// `{"type": "json_schema", "schema": {...}}`: 1 when the answer's JSON satisfies the schema.
    JsonSchema(Value),
    /// `{"type": "http", "name": ...}`: a checker the operator configured (`[verifiers.NAME]`);
    /// a SandboxFusion checker runs each program with `reasoning.tests` appended.
    Http { name: String, tests: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Majority,
    Weighted,
    Best,
    /// Votes weighted by each chain's confidence (no verifier needed).
    Confidence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verifier {
    None,
    Logprob,
    SelfJudge,
    Model,
    Arithmetic,
    Tests,
    Regex,
    JsonSchema,
    Http,
}

impl Verifier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Logprob => "logprob",
            Self::SelfJudge => "self",
            Self::Model => "model",
            Self::Arithmetic => "arithmetic",
            Self::Tests => "tests",
            Self::Regex => "regex",
            Self::JsonSchema => "json_schema",
            Self::Http => "http",
        }
    }
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Majority => "majority",
            Self::Weighted => "weighted",
            Self::Best => "best",
            Self::Confidence => "confidence",
        }
    }
}
/// The request field that names a sample count, if any.
pub(super) fn sampling_given(req: &Map<String, Value>) -> Option<String> {
    let nested = req.get("reasoning").and_then(Value::as_object).and_then(|o| o.get("samples")).filter(|v| !v.is_null());
    if nested.is_some() {
        return Some("reasoning.samples".into());
    }
    ["samples", "num_samples"].iter().find(|k| req.get(**k).is_some_and(|v| !v.is_null())).map(|k| k.to_string())
}

/// `reasoning: {samples, aggregate, verifier, adaptive, confidence, prune, keep_top, warmup}` with
/// top-level aliases `samples`/`num_samples` and the other names.
pub(super) fn sampling_plan(req: &Map<String, Value>, cfg: &Policy, effort: Option<String>) -> Result<SamplingPlan, PlanError> {
    let nested = req.get("reasoning").and_then(Value::as_object);
    let pick = |key: &str, aliases: &[&str]| -> Option<(Value, String)> {
        nested
            .and_then(|o| o.get(key).filter(|v| !v.is_null()).map(|v| (v.clone(), format!("reasoning.{key}"))))
            .or_else(|| aliases.iter().find_map(|a| req.get(*a).filter(|v| !v.is_null()).map(|v| (v.clone(), a.to_string()))))
    };
    let effort_samples = effort.as_ref().and_then(|e| cfg.effort_samples.get(e)).copied().unwrap_or(1);
    let samples = match pick("samples", &["samples", "num_samples"]) {
        Some((v, p)) => int(&v, &p, SAMPLES)? as u32,
        None => effort_samples,
    };
    let verifier_default = effort.as_ref().and_then(|e| cfg.effort_verifier.get(e)).cloned().unwrap_or_else(|| "none".into());
    let (verifier, check) = match pick("verifier", &["verifier"]) {
        Some((Value::Object(o), p)) => checked_verifier(&o, &p, nested)?,
        Some((v, p)) => with_tests(parse_verifier(string(&v, &p)?, &p)?, nested)?,
        None => with_tests(parse_verifier(&verifier_default, "verifier")?, nested)?,
    };
    if !matches!(check, Some(Check::Tests { .. } | Check::Http { .. }))
        && nested.is_some_and(|o| o.get("tests").is_some_and(|t| !t.is_null()))
    {
        return Err(err("reasoning.tests", "'reasoning.tests' needs 'verifier': 'tests' (or an http checker)"));
    }
    let aggregate = match pick("aggregate", &["aggregate"]) {
        Some((v, p)) => match string(&v, &p)? {
            "majority" | "vote" => Aggregate::Majority,
            "weighted" => Aggregate::Weighted,
            "best" | "best_of_n" => Aggregate::Best,
            "confidence" => Aggregate::Confidence,
            other => return Err(err(&p, format!("unknown aggregate '{other}'; expected one of {AGGREGATES:?}"))),
        },
        None if verifier != Verifier::None => Aggregate::Weighted,
        None => Aggregate::Majority,
    };
    if matches!(aggregate, Aggregate::Weighted | Aggregate::Best) && verifier == Verifier::None {
        return Err(err("verifier", format!("aggregate '{}' needs a verifier", aggregate.as_str())));
    }
    let adaptive = match pick("adaptive", &["adaptive"]) {
        Some((v, p)) => boolean(&v, &p)?,
        None => false,
    };
    let confidence = match pick("confidence", &["confidence"]) {
        Some((v, p)) => number(&v, &p, CONFIDENCE)?,
        None => cfg.confidence,
    };
    let prune = match pick("prune", &["prune"]) {
        Some((v, p)) => match string(&v, &p)? {
            "confidence" => true,
            "none" => false,
            other => return Err(err(&p, format!("unknown prune '{other}'; expected one of {PRUNES:?}"))),
        },
        None => false,
    };
    let keep_top = match pick("keep_top", &["keep_top"]) {
        Some((v, p)) => Some(number(&v, &p, KEEP_TOP)?),
        None => None,
    };
    let warmup = match pick("warmup", &["warmup"]) {
        Some((v, p)) => {
            let w = int(&v, &p, SAMPLES)?;
            if w > samples as i64 {
                return Err(err(&p, format!("'{p}' ({w}) exceeds the samples ({samples})")));
            }
            Some(w as u32)
        }
        None => None,
    };
    Ok(SamplingPlan { samples, aggregate, verifier, adaptive, confidence, prune, keep_top, warmup, check })
}

fn with_tests(v: Verifier, nested: Option<&Map<String, Value>>) -> Result<(Verifier, Option<Check>), PlanError> {
    Ok((v, if v == Verifier::Tests { Some(tests_check(nested)?) } else { None }))
}

/// `reasoning.tests` (Python source with asserts; absent: the prompt's docstring examples) and
/// `reasoning.entry_point`.
fn tests_check(nested: Option<&Map<String, Value>>) -> Result<Check, PlanError> {
    let field = |k: &str| -> Result<Option<String>, PlanError> {
        match nested.and_then(|o| o.get(k)).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => Ok(Some(string(v, &format!("reasoning.{k}"))?.to_string())),
        }
    };
    let mut tests = field("tests")?;
    let generated = tests.as_deref() == Some("generated");
    if generated {
        tests = None;
    }
    let entry_point = field("entry_point")?;
    if entry_point.as_deref().is_some_and(|e| e.is_empty() || !e.chars().all(|c| c.is_alphanumeric() || c == '_')) {
        return Err(err("reasoning.entry_point", "'reasoning.entry_point' must be a function name"));
    }
    Ok(Check::Tests { tests, generated, entry_point })
}

/// A verifier given as an object: `{"type": "regex", "pattern": ...}`, `{"type": "http", "name":
/// ...}`, or `{"type": "tests"}` (its tests in `reasoning.tests`).
fn checked_verifier(o: &Map<String, Value>, p: &str, nested: Option<&Map<String, Value>>) -> Result<(Verifier, Option<Check>), PlanError> {
    let text = |k: &str| -> Result<String, PlanError> {
        let v = o.get(k).ok_or_else(|| err(&format!("{p}.{k}"), format!("'{p}.{k}' is required")))?;
        Ok(string(v, &format!("{p}.{k}"))?.to_string())
    };
    match text("type")?.as_str() {
        "regex" => {
            let pattern = text("pattern")?;
            regex::Regex::new(&pattern)
                .map_err(|e| err(&format!("{p}.pattern"), format!("'{p}.pattern' is not a valid regular expression: {e}")))?;
            Ok((Verifier::Regex, Some(Check::Regex(pattern))))
        }
        "json_schema" => {
            let schema = o.get("schema").ok_or_else(|| err(&format!("{p}.schema"), format!("'{p}.schema' is required")))?;
            super::schema::compile(schema).map_err(|e| err(&format!("{p}.schema"), format!("'{p}.schema': {e}")))?;
            Ok((Verifier::JsonSchema, Some(Check::JsonSchema(schema.clone()))))
        }
        "http" => {
            let tests = match nested.and_then(|n| n.get("tests")).filter(|v| !v.is_null()) {
                Some(t) => Some(string(t, "reasoning.tests")?.to_string()),
                None => None,
            };
            Ok((Verifier::Http, Some(Check::Http { name: text("name")?, tests })))
        }
        "tests" => Err(err(p, format!("send 'verifier': 'tests' with the tests in 'reasoning.tests', not as '{p}'"))),
        other => Err(err(&format!("{p}.type"), format!("unknown verifier type '{other}'; expected one of {CHECKERS:?}"))),
    }
}

pub fn parse_verifier(s: &str, param: &str) -> Result<Verifier, PlanError> {
    Ok(match s {
        "none" => Verifier::None,
        "logprob" => Verifier::Logprob,
        "self" | "p_true" => Verifier::SelfJudge,
        "model" => Verifier::Model,
        "arithmetic" => Verifier::Arithmetic,
        "tests" => Verifier::Tests,
        other => {
            return Err(err(
                param,
                format!("unknown verifier '{other}'; expected one of {VERIFIERS:?} (or an object whose type is one of {CHECKERS:?})"),
            ))
        }
    })
}
