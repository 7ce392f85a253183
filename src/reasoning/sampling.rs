//! Self-consistency in a request: how many chains, how they are voted on, verified, stopped
//! early and filtered by confidence (`reasoning.samples`, `aggregate`, `verifier`, `adaptive`,
//! `confidence`, `prune`, `keep_top`, `warmup`, nested or top level).

use serde_json::{Map, Value};

use super::params::{err, read, Checker, Fields, PlanError, Reasoning, Sampling, Text, VerifierField, CHECKERS, VERIFIERS};
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
pub(super) fn sampling_given(f: &Fields) -> Option<&'static str> {
    if f.nested_sampling.as_ref().is_some_and(|n| n.samples.is_some()) {
        Some("reasoning.samples")
    } else if f.sampling.samples.is_some() {
        Some("samples")
    } else {
        f.top.num_samples.is_some().then_some("num_samples")
    }
}

/// One sampling field, `reasoning`'s before the top level's, with its path.
fn pick<'a, T>(f: &'a Fields, key: &str, field: impl Fn(&'a Sampling) -> Option<&'a T>) -> Option<(&'a T, String)> {
    f.nested_sampling
        .as_ref()
        .and_then(&field)
        .map(|v| (v, format!("reasoning.{key}")))
        .or_else(|| field(&f.sampling).map(|v| (v, key.to_string())))
}

/// `reasoning: {samples, aggregate, verifier, adaptive, confidence, prune, keep_top, warmup}`, or
/// the same names at the top level (`num_samples` too).
pub(super) fn sampling_plan(f: &Fields, cfg: &Policy, effort: Option<String>) -> Result<SamplingPlan, PlanError> {
    let nested = f.reasoning.as_ref();
    let effort_samples = effort.as_ref().and_then(|e| cfg.effort_samples.get(e)).copied().unwrap_or(1);
    let samples = pick(f, "samples", |s| s.samples.as_ref())
        .map(|(n, _)| n.0)
        .or(f.top.num_samples.as_ref().map(|n| n.0))
        .map_or(effort_samples, |n| n as u32);
    let verifier_default = effort.as_ref().and_then(|e| cfg.effort_verifier.get(e)).cloned().unwrap_or_else(|| "none".into());
    let (verifier, check) = match pick(f, "verifier", |s| s.verifier.as_ref()) {
        Some((VerifierField::Checker(o), p)) => checked_verifier(o, &p, nested)?,
        Some((VerifierField::Name(v), p)) => with_tests(parse_verifier(v, &p)?, nested)?,
        None => with_tests(parse_verifier(&verifier_default, "verifier")?, nested)?,
    };
    if !matches!(check, Some(Check::Tests { .. } | Check::Http { .. })) && nested.is_some_and(|r| r.tests.is_some()) {
        return Err(err("reasoning.tests", "'reasoning.tests' needs 'verifier': 'tests' (or an http checker)"));
    }
    let aggregate = match pick(f, "aggregate", |s| s.aggregate.as_ref()) {
        Some((a, _)) => a.0,
        None if verifier != Verifier::None => Aggregate::Weighted,
        None => Aggregate::Majority,
    };
    if matches!(aggregate, Aggregate::Weighted | Aggregate::Best) && verifier == Verifier::None {
        return Err(err("verifier", format!("aggregate '{}' needs a verifier", aggregate.as_str())));
    }
    let warmup = match pick(f, "warmup", |s| s.warmup.as_ref()) {
        Some((w, p)) if w.0 > samples as i64 => return Err(err(&p, format!("'{p}' ({}) exceeds the samples ({samples})", w.0))),
        w => w.map(|(w, _)| w.0 as u32),
    };
    Ok(SamplingPlan {
        samples,
        aggregate,
        verifier,
        adaptive: pick(f, "adaptive", |s| s.adaptive.as_ref()).is_some_and(|(a, _)| a.0),
        confidence: pick(f, "confidence", |s| s.confidence.as_ref()).map_or(cfg.confidence, |(c, _)| c.0),
        prune: pick(f, "prune", |s| s.prune.as_ref()).is_some_and(|(p, _)| p.0 .0),
        keep_top: pick(f, "keep_top", |s| s.keep_top.as_ref()).map(|(k, _)| k.0),
        warmup,
        check,
    })
}

fn with_tests(v: Verifier, nested: Option<&Reasoning>) -> Result<(Verifier, Option<Check>), PlanError> {
    Ok((v, if v == Verifier::Tests { Some(tests_check(nested)?) } else { None }))
}

/// `reasoning.tests` (Python source with asserts; absent: the prompt's docstring examples) and
/// `reasoning.entry_point`.
fn tests_check(nested: Option<&Reasoning>) -> Result<Check, PlanError> {
    let tests = nested.and_then(|r| r.tests.as_ref()).map(|t| t.0.clone());
    let generated = tests.as_deref() == Some("generated");
    let entry_point = nested.and_then(|r| r.entry_point.as_ref()).map(|e| e.0.clone());
    if entry_point.as_deref().is_some_and(|e| e.is_empty() || !e.chars().all(|c| c.is_alphanumeric() || c == '_')) {
        return Err(err("reasoning.entry_point", "'reasoning.entry_point' must be a function name"));
    }
    Ok(Check::Tests { tests: tests.filter(|_| !generated), generated, entry_point })
}

/// A verifier given as an object: `{"type": "regex", "pattern": ...}`, `{"type": "http", "name":
/// ...}`, or `{"type": "tests"}` (its tests in `reasoning.tests`).
fn checked_verifier(o: &Map<String, Value>, p: &str, nested: Option<&Reasoning>) -> Result<(Verifier, Option<Check>), PlanError> {
    let c: Checker = read(o, &format!("{p}."))?;
    let required = |v: Option<Text>, k: &str| v.map(|t| t.0).ok_or_else(|| err(&format!("{p}.{k}"), format!("'{p}.{k}' is required")));
    match required(c.kind, "type")?.as_str() {
        "regex" => {
            let pattern = required(c.pattern, "pattern")?;
            regex::Regex::new(&pattern)
                .map_err(|e| err(&format!("{p}.pattern"), format!("'{p}.pattern' is not a valid regular expression: {e}")))?;
            Ok((Verifier::Regex, Some(Check::Regex(pattern))))
        }
        "json_schema" => {
            let schema = c.schema.ok_or_else(|| err(&format!("{p}.schema"), format!("'{p}.schema' is required")))?;
            super::schema::compile(&schema).map_err(|e| err(&format!("{p}.schema"), format!("'{p}.schema': {e}")))?;
            Ok((Verifier::JsonSchema, Some(Check::JsonSchema(schema))))
        }
        "http" => {
            let tests = nested.and_then(|r| r.tests.as_ref()).map(|t| t.0.clone());
            Ok((Verifier::Http, Some(Check::Http { name: required(c.name, "name")?, tests })))
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
