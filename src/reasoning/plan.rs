//! Normalising every reasoning-control dialect (OpenAI, OpenRouter, Anthropic, llama.cpp, vLLM,
//! Ollama, optillm) into one `ReasoningPlan`. Explicit token budgets beat effort levels; two
//! sources that disagree are a 400 naming the later field. Self-consistency is part of the plan
//! (`SamplingPlan`): how many chains, how they are voted on, verified, stopped early and filtered
//! by confidence (`reasoning.samples`, `aggregate`, `verifier`, `adaptive`, `confidence`, `prune`,
//! `keep_top`, `warmup`, nested or top level).

use serde_json::{Map, Value};

use super::chat::Message;
use super::labels::Effort;
use super::params::{err, read, Checker, Fields, PlanError, Reasoning, Sampling, Text, Think, VerifierField, CHECKERS, VERIFIERS};

/// The internal plan every request dialect is turned into.
#[derive(Debug, Clone, PartialEq)]
pub struct ReasoningPlan {
    /// Think before answering.
    pub thinking: bool,
    pub min_thinking: u32,
    /// `None`: until the model closes its thinking (within the token cap).
    pub max_thinking: Option<u32>,
    pub budget_message: Option<String>,
    /// Drop the thinking text from the response (`reasoning.exclude`).
    pub exclude: bool,
    /// Where thinking goes: `true` = `reasoning_content`, `false` = inline in `content`.
    pub separate: bool,
    /// Metrics label: an effort level, `budget` (explicit tokens) or `default`.
    pub effort: Effort,
    /// How a model without think tokens is made to think (`reasoning.scaffold`).
    pub scaffold: Scaffold,
    pub sampling: SamplingPlan,
    /// `reasoning_effort: "auto"`: the server picks the budget and samples from measured curves
    /// (the API applies `reasoning::auto`'s choice before the job is built).
    pub auto: bool,
}

/// The server's defaults a request's plan starts from: plain values the configuration builds
/// (`ReasoningConfig::policy`), so this layer knows nothing of configuration files or flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Thinking budget when a request names none: -1 unlimited (within max tokens), 0 off.
    pub budget: i64,
    /// `auto`/`deepseek`: thinking in `reasoning_content`; `none`: thinking left inline.
    pub format: String,
    /// Effort level -> thinking-token budget.
    pub effort_budgets: std::collections::BTreeMap<String, i64>,
    /// Effort level -> samples; levels not listed use 1.
    pub effort_samples: std::collections::BTreeMap<String, u32>,
    /// Effort level -> verifier name; levels not listed use none.
    pub effort_verifier: std::collections::BTreeMap<String, String>,
    pub scaffold: Scaffold,
    /// Stopping level of adaptive sampling when a request names none.
    pub confidence: f64,
}

impl Default for Policy {
    fn default() -> Self {
        let levels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self {
            budget: -1,
            format: "auto".into(),
            effort_budgets: [("none", 0), ("minimal", 64), ("low", 256), ("medium", 768), ("high", 1536), ("xhigh", 3072), ("max", -1)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            effort_samples: [("high", 8), ("xhigh", 8), ("max", 8)].into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            effort_verifier: levels(&[("high", "arithmetic"), ("xhigh", "arithmetic"), ("max", "arithmetic")]),
            scaffold: Scaffold::default(),
            confidence: 0.95,
        }
    }
}

/// How the server makes an instruct model (no think tokens) think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scaffold {
    /// The prompt is left as sent: the model's own step-by-step answer is the chain, and the
    /// server appends the close marker and answer cue when it ends (or when the budget cuts it).
    /// Costs no accuracy against the model's plain answer once the budget covers its length.
    #[default]
    Natural,
    /// An instruction joins the system prompt asking the model to think and then write the
    /// close marker itself.
    Instruct,
}

impl Scaffold {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "natural" => Some(Self::Natural),
            "instruct" => Some(Self::Instruct),
            _ => None,
        }
    }
}

/// One value from several request fields that must agree.
struct Agreed<T> {
    what: &'static str,
    value: Option<(T, String)>,
}

impl<T: PartialEq + std::fmt::Debug + Clone> Agreed<T> {
    fn new(what: &'static str) -> Self {
        Self { what, value: None }
    }
    fn set(&mut self, v: T, param: &str) -> Result<(), PlanError> {
        match &self.value {
            Some((old, p)) if *old != v => {
                Err(err(param, format!("'{param}' ({v:?}) contradicts '{p}' ({old:?}): give one {}", self.what)))
            }
            Some(_) => Ok(()),
            None => {
                self.value = Some((v, param.to_string()));
                Ok(())
            }
        }
    }
    fn get(&self) -> Option<(T, String)> {
        self.value.clone()
    }
}

/// Build the plan from the request body. `thinking_model`: the model has native think tokens.
pub fn normalise(req: &Map<String, Value>, cfg: &Policy, thinking_model: bool) -> Result<ReasoningPlan, PlanError> {
    plan(&Fields::read(req)?, cfg, thinking_model)
}

/// The plan from the typed fields: one pass over every dialect in precedence order.
fn plan(f: &Fields, cfg: &Policy, thinking_model: bool) -> Result<ReasoningPlan, PlanError> {
    let mut budget = Agreed::<i64>::new("thinking budget");
    let mut effort = Agreed::<String>::new("effort level");
    let mut switch = Agreed::<bool>::new("thinking on/off setting");
    let set_effort = |e: &str, param: &str, effort: &mut Agreed<String>| -> Result<(), PlanError> {
        if !cfg.effort_budgets.contains_key(e) && e != Effort::Auto.as_str() {
            let known: Vec<&String> = cfg.effort_budgets.keys().collect();
            return Err(err(param, format!("'{param}': unknown effort '{e}'; expected one of {known:?} or \"auto\"")));
        }
        effort.set(e.to_string(), param)
    };

    if let Some(e) = &f.top.reasoning_effort {
        set_effort(&e.0, "reasoning_effort", &mut effort)?;
    }
    if let Some(r) = &f.reasoning {
        if let Some(e) = &r.effort {
            set_effort(&e.0, "reasoning.effort", &mut effort)?;
        }
        if let Some(m) = &r.max_tokens {
            budget.set(m.0, "reasoning.max_tokens")?;
        }
        if let Some(x) = &r.enabled {
            switch.set(x.0, "reasoning.enabled")?;
        }
    }
    if let Some(t) = &f.thinking {
        match t.kind.as_ref().map(|k| k.0.as_str()) {
            Some("enabled") => switch.set(true, "thinking.type")?,
            Some("disabled") => switch.set(false, "thinking.type")?,
            _ => return Err(err("thinking.type", "'thinking.type' must be \"enabled\" or \"disabled\"")),
        }
        if let Some(b) = &t.budget_tokens {
            budget.set(b.0, "thinking.budget_tokens")?;
        }
    }
    for (key, v) in f.top.budgets() {
        match v {
            Some(n) if n.0 == -1 => switch.set(true, key)?,
            Some(n) => budget.set(n.0, key)?,
            None => {}
        }
    }
    if let Some(e) = f.template.as_ref().and_then(|t| t.enable_thinking.as_ref()) {
        switch.set(e.0, "chat_template_kwargs.enable_thinking")?;
    }
    match &f.top.think {
        Some(Think::Switch(b)) => switch.set(*b, "think")?,
        Some(Think::Level(s)) => set_effort(s, "think", &mut effort)?,
        None => {}
    }
    let min_thinking = f.top.min_thinking_tokens.as_ref().map_or(0, |m| m.0);

    // "auto" chooses budget and samples itself: naming either as well is a contradiction.
    let auto = effort.get().filter(|(e, _)| e == Effort::Auto.as_str());
    if let Some((_, ap)) = &auto {
        if let Some((_, bp)) = budget.get() {
            return Err(err(&bp, format!("'{bp}' contradicts '{ap}' = auto, which chooses the thinking budget")));
        }
        if let Some((false, sp)) = switch.get() {
            return Err(err(ap, format!("'{ap}' = auto contradicts '{sp}' turning thinking off")));
        }
    }
    // Resolve: explicit budget > effort level > on/off switch > server default. Until the auto
    // policy decides, an auto request thinks without a budget.
    let effort_budget = effort.get().filter(|_| auto.is_none()).map(|(e, p)| (cfg.effort_budgets[&e], e, p));
    let resolved: i64 = match (budget.get(), &effort_budget) {
        (Some((b, _)), _) => b,
        (None, Some((b, _, _))) => *b,
        (None, None) if auto.is_some() => -1,
        (None, None) => match switch.get() {
            Some((false, _)) => 0,
            Some((true, _)) => {
                if cfg.budget == 0 {
                    -1
                } else {
                    cfg.budget
                }
            }
            None => cfg.budget,
        },
    };
    if let Some((on, sp)) = switch.get() {
        if !on {
            if let Some((b, p)) = budget.get().filter(|(b, _)| *b > 0) {
                return Err(err(&p, format!("'{p}' = {b} contradicts '{sp}' turning thinking off")));
            }
            if let Some((_, e, p)) = effort_budget.as_ref().filter(|(b, _, _)| *b != 0) {
                return Err(err(p, format!("'{p}' = {e} contradicts '{sp}' turning thinking off")));
            }
        } else if resolved == 0 {
            let p = budget.get().map(|(_, p)| p).or(effort_budget.as_ref().map(|(_, _, p)| p.clone())).unwrap_or(sp.clone());
            return Err(err(&p, format!("'{p}' gives no thinking budget but '{sp}' turns thinking on")));
        }
    }

    let requested = budget.get().is_some() || effort.get().is_some() || switch.get().is_some() || min_thinking > 0;
    let thinking = resolved != 0 && (requested || thinking_model || cfg.budget > 0);
    let max_thinking = (resolved >= 0).then_some(resolved as u32);
    if let Some(max) = max_thinking.filter(|_| thinking) {
        if min_thinking > max as i64 {
            return Err(err("min_thinking_tokens", format!("'min_thinking_tokens' ({min_thinking}) exceeds the thinking budget ({max})")));
        }
    }
    if min_thinking > 0 && !thinking {
        return Err(err("min_thinking_tokens", "'min_thinking_tokens' needs thinking turned on"));
    }
    let label = match (budget.get(), effort.get()) {
        (Some(_), _) => Effort::Budget,
        (None, Some((e, _))) => Effort::of_level(&e),
        (None, None) if !thinking => Effort::None,
        _ => Effort::Default,
    };
    let sampling = sampling_plan(f, cfg, effort.get().map(|(e, _)| e))?;
    if let (Some((_, ap)), Some(sp)) = (&auto, sampling_given(f)) {
        return Err(err(sp, format!("'{sp}' contradicts '{ap}' = auto, which chooses the samples")));
    }
    let reasoning = f.reasoning.as_ref();
    Ok(ReasoningPlan {
        thinking,
        min_thinking: if thinking { min_thinking as u32 } else { 0 },
        max_thinking: if thinking { max_thinking } else { Some(0) },
        budget_message: f.top.reasoning_budget_message.as_ref().map(|m| m.0.clone()),
        exclude: reasoning.and_then(|r| r.exclude.as_ref()).is_some_and(|x| x.0),
        separate: f.top.reasoning_format.as_ref().map_or(cfg.format != "none", |s| s.0 .0),
        effort: label,
        scaffold: reasoning.and_then(|r| r.scaffold.as_ref()).map_or(cfg.scaffold, |s| s.0),
        sampling,
        auto: auto.is_some(),
    })
}

/// Thinking tokens allowed once the close text and `reserve` answer tokens are kept out of the
/// request's total cap, so the injected close and an answer always fit.
pub fn effective_max_thinking(budget: Option<u32>, max_tokens: u32, reserve: u32, close_len: u32) -> u32 {
    let room = max_tokens.saturating_sub(reserve.saturating_add(close_len));
    budget.map_or(room, |b| b.min(room))
}

/// Messages for a model without think tokens: the scaffold instruction joins the system prompt.
pub fn scaffold(messages: &mut Vec<Message>, instruction: &str) {
    match messages.first_mut() {
        Some(m) if m.role == "system" => {
            m.content.push_str("\n\n");
            m.content.push_str(instruction);
        }
        _ => messages.insert(0, Message::new("system", instruction)),
    }
}

// Self-consistency.
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
fn sampling_given(f: &Fields) -> Option<&'static str> {
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
fn sampling_plan(f: &Fields, cfg: &Policy, effort: Option<String>) -> Result<SamplingPlan, PlanError> {
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
        other => Err(err(&format!("{p}.type"), format!("'{p}.type': unknown verifier type '{other}'; expected one of {CHECKERS:?}"))),
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
                format!(
                    "'{param}': unknown verifier '{other}'; expected one of {VERIFIERS:?} (or an object whose type is one of {CHECKERS:?})"
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(v: Value) -> Result<ReasoningPlan, PlanError> {
        normalise(v.as_object().unwrap(), &Policy::default(), false)
    }
    fn budget(v: Value) -> Option<u32> {
        let p = plan(v).unwrap();
        assert!(p.thinking || p.max_thinking == Some(0));
        p.max_thinking
    }
    fn param(v: Value) -> String {
        plan(v).unwrap_err().param
    }

    #[test]
    fn every_dialect_sets_the_budget() {
        assert_eq!(budget(json!({"reasoning_effort": "low"})), Some(256));
        assert_eq!(budget(json!({"reasoning": {"effort": "minimal"}})), Some(64));
        assert_eq!(budget(json!({"reasoning": {"max_tokens": 100}})), Some(100));
        assert_eq!(budget(json!({"thinking": {"type": "enabled", "budget_tokens": 77}})), Some(77));
        assert_eq!(budget(json!({"thinking_budget_tokens": 16})), Some(16));
        assert_eq!(budget(json!({"reasoning_budget_tokens": 16})), Some(16));
        assert_eq!(budget(json!({"thinking_token_budget": 33})), Some(33));
        assert_eq!(budget(json!({"max_thinking_tokens": 40})), Some(40));
        assert_eq!(budget(json!({"think": "high"})), Some(1536));
        // The OpenAI SDK's two newest levels: a large budget, and no budget at all.
        assert_eq!(budget(json!({"reasoning_effort": "xhigh"})), Some(3072));
        assert_eq!(budget(json!({"reasoning_effort": "max"})), None);
        assert_eq!(plan(json!({"reasoning_effort": "max"})).unwrap().sampling.samples, 8);
        assert_eq!(budget(json!({"think": true})), None);
        assert_eq!(budget(json!({"chat_template_kwargs": {"enable_thinking": true}})), None);
        assert_eq!(budget(json!({"thinking_budget_tokens": -1})), None);
    }

    #[test]
    fn switches_turn_thinking_off() {
        for v in [
            json!({"think": false}),
            json!({"thinking": {"type": "disabled"}}),
            json!({"chat_template_kwargs": {"enable_thinking": false}}),
            json!({"reasoning_effort": "none"}),
            json!({"thinking_budget_tokens": 0}),
        ] {
            let p = plan(v.clone()).unwrap();
            assert!(!p.thinking, "{v}");
        }
    }

    #[test]
    fn plain_requests_do_not_think_on_models_without_think_tokens() {
        let p = plan(json!({})).unwrap();
        assert!(!p.thinking);
        assert_eq!(p.effort, Effort::None);
        let t = normalise(json!({}).as_object().unwrap(), &Policy::default(), true).unwrap();
        assert!(t.thinking);
        assert_eq!(t.max_thinking, None);
    }

    #[test]
    fn explicit_budget_beats_effort() {
        let p = plan(json!({"reasoning_effort": "high", "thinking_budget_tokens": 10})).unwrap();
        assert_eq!(p.max_thinking, Some(10));
        assert_eq!(p.effort, Effort::Budget);
    }

    #[test]
    fn min_max_and_message() {
        let p = plan(json!({"min_thinking_tokens": 20, "max_thinking_tokens": 50, "reasoning_budget_message": "stop"})).unwrap();
        assert_eq!((p.min_thinking, p.max_thinking), (20, Some(50)));
        assert_eq!(p.budget_message.as_deref(), Some("stop"));
        let p = plan(json!({"reasoning": {"max_tokens": 9, "exclude": true}})).unwrap();
        assert!(p.exclude);
    }

    #[test]
    fn contradictions_name_the_field() {
        assert_eq!(param(json!({"thinking_budget_tokens": 10, "thinking_token_budget": 20})), "thinking_token_budget");
        assert_eq!(param(json!({"reasoning_effort": "low", "reasoning": {"effort": "high"}})), "reasoning.effort");
        assert_eq!(param(json!({"think": false, "thinking_budget_tokens": 100})), "thinking_budget_tokens");
        assert_eq!(param(json!({"chat_template_kwargs": {"enable_thinking": false}, "reasoning_effort": "high"})), "reasoning_effort");
        assert_eq!(param(json!({"think": true, "thinking": {"type": "disabled"}})), "think");
        assert_eq!(param(json!({"thinking": {"type": "enabled", "budget_tokens": 0}})), "thinking.budget_tokens");
        assert_eq!(param(json!({"min_thinking_tokens": 100, "max_thinking_tokens": 50})), "min_thinking_tokens");
        assert_eq!(param(json!({"min_thinking_tokens": 10, "think": false})), "min_thinking_tokens");
    }

    #[test]
    fn bad_values_name_the_field() {
        assert_eq!(param(json!({"reasoning_effort": "extreme"})), "reasoning_effort");
        assert_eq!(param(json!({"reasoning_effort": "auto", "thinking_budget_tokens": 64})), "thinking_budget_tokens");
        assert_eq!(param(json!({"reasoning_effort": "auto", "reasoning": {"samples": 4}})), "reasoning.samples");
        assert_eq!(param(json!({"reasoning_effort": "auto", "think": false})), "reasoning_effort");
        assert_eq!(param(json!({"reasoning": {"prune": "yes"}})), "reasoning.prune");
        assert_eq!(param(json!({"reasoning": {"keep_top": 0}})), "reasoning.keep_top");
        assert_eq!(param(json!({"keep_top": 1.5})), "keep_top");
        assert_eq!(param(json!({"reasoning": {"samples": 4, "warmup": 5}})), "reasoning.warmup");
        assert_eq!(param(json!({"reasoning": {"samples": 4, "warmup": 0}})), "reasoning.warmup");
        assert_eq!(param(json!({"reasoning_effort": 3})), "reasoning_effort");
        assert_eq!(param(json!({"thinking_budget_tokens": -5})), "thinking_budget_tokens");
        assert_eq!(param(json!({"thinking_budget_tokens": "many"})), "thinking_budget_tokens");
        assert_eq!(param(json!({"reasoning": "high"})), "reasoning");
        assert_eq!(param(json!({"thinking": {"type": "maybe"}})), "thinking.type");
        assert_eq!(param(json!({"think": 3})), "think");
        assert_eq!(param(json!({"reasoning_format": "xml"})), "reasoning_format");
    }

    #[test]
    fn sampling_dialects_and_errors() {
        let p = plan(json!({"reasoning": {"samples": 8, "verifier": "arithmetic", "adaptive": true}})).unwrap();
        assert_eq!(p.sampling.samples, 8);
        assert_eq!(p.sampling.aggregate, Aggregate::Weighted);
        assert!(p.sampling.adaptive);
        let p = plan(json!({"samples": 4, "aggregate": "majority"})).unwrap();
        assert_eq!((p.sampling.samples, p.sampling.aggregate), (4, Aggregate::Majority));
        let p = plan(json!({"reasoning_effort": "high"})).unwrap();
        assert_eq!((p.sampling.samples, p.sampling.verifier), (8, Verifier::Arithmetic));
        assert_eq!(param(json!({"samples": 0})), "samples");
        assert_eq!(param(json!({"reasoning": {"samples": 1000}})), "reasoning.samples");
        assert_eq!(param(json!({"aggregate": "median"})), "aggregate");
        assert_eq!(param(json!({"aggregate": "best"})), "verifier");
        assert_eq!(param(json!({"verifier": "oracle"})), "verifier");
        assert_eq!(param(json!({"confidence": 1.5})), "confidence");
        // Confidence needs no verifier; prune and keep_top are read nested or top-level.
        let p = plan(json!({"reasoning": {"samples": 8, "aggregate": "confidence", "prune": "confidence", "keep_top": 0.5}})).unwrap();
        assert_eq!((p.sampling.aggregate, p.sampling.prune, p.sampling.keep_top), (Aggregate::Confidence, true, Some(0.5)));
        let p = plan(json!({"samples": 4, "prune": "none", "keep_top": 1, "warmup": 2})).unwrap();
        assert_eq!((p.sampling.prune, p.sampling.keep_top, p.sampling.warmup), (false, Some(1.0), Some(2)));
    }

    #[test]
    fn auto_effort_leaves_the_setting_to_the_policy() {
        let p = plan(json!({"reasoning_effort": "auto"})).unwrap();
        assert!(p.auto && p.thinking);
        assert_eq!((p.effort, p.max_thinking, p.sampling.samples), (Effort::Auto, None, 1));
        assert!(!plan(json!({"reasoning_effort": "low"})).unwrap().auto);
    }

    #[test]
    fn effective_max_leaves_room_for_close_and_answer() {
        assert_eq!(effective_max_thinking(Some(256), 100, 32, 10), 58);
        assert_eq!(effective_max_thinking(Some(16), 1000, 32, 10), 16);
        assert_eq!(effective_max_thinking(None, 1000, 32, 10), 958);
        assert_eq!(effective_max_thinking(Some(16), 20, 32, 10), 0);
    }

    #[test]
    fn scaffold_joins_the_system_prompt() {
        let mut m = vec![Message::new("user", "hi")];
        scaffold(&mut m, "think");
        assert_eq!(m[0], Message::new("system", "think"));
        let mut m = vec![Message::new("system", "be brief")];
        scaffold(&mut m, "think");
        assert_eq!(m[0].content, "be brief\n\nthink");
    }
}
