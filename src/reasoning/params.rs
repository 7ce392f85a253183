//! Every bound a request field has, stated once — the sampling knobs and the reasoning-control
//! fields of every dialect. For the latter the gate's typed fields (`fields`: `Int<Samples>`
//! reads `SAMPLES`) check requests against these values, and /openapi.json writes them and the
//! table of fields below into the contract (`schema`); a test holds the table and the structs to
//! the same names.

use serde_json::{json, Map, Value};

/// An integer field's range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ints {
    pub min: i64,
    pub max: i64,
}

/// A number field's interval; an open end excludes the end itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub open_low: bool,
    pub open_high: bool,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        let above = if self.open_low { x > self.low } else { x >= self.low };
        let below = if self.open_high { x < self.high } else { x <= self.high };
        above && below
    }

    /// `[0.5, 1)`, as the error messages write it.
    pub fn describe(&self) -> String {
        let (l, r) = (if self.open_low { '(' } else { '[' }, if self.open_high { ')' } else { ']' });
        format!("{l}{}, {}{r}", self.low, self.high)
    }
}

/// A request field the gate refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub param: String,
    pub message: String,
}

pub(super) fn err(param: &str, message: impl Into<String>) -> PlanError {
    PlanError { param: param.into(), message: message.into() }
}

/// A closed interval, as the sampling knobs use.
const fn closed(low: f64, high: f64) -> Interval {
    Interval { low, high, open_low: false, open_high: false }
}

/// Sampling knobs every generation request shares (`service::request::Common` checks them and
/// writes them into /openapi.json).
pub const TEMPERATURE: Interval = closed(0.0, 2.0);
/// top_p, min_p.
pub const UNIT: Interval = closed(0.0, 1.0);
pub const TOP_K: Ints = Ints { min: 0, max: 1_000_000 };
/// presence_penalty, frequency_penalty.
pub const PENALTY: Interval = closed(-2.0, 2.0);
pub const REPEAT_PENALTY: Interval = closed(0.0, 10.0);

/// A token count (a budget, a minimum).
pub const TOKENS: Ints = Ints { min: 0, max: 1_000_000 };
/// A thinking budget where -1 means "think, without a budget" (llama.cpp's and vLLM's spelling).
pub const BUDGET: Ints = Ints { min: -1, max: TOKENS.max };
/// Chains one request may sample (they run in waves through the slots); also a first wave's size.
pub const SAMPLES: Ints = Ints { min: 1, max: 64 };
/// The stopping level of adaptive sampling.
pub const CONFIDENCE: Interval = Interval { low: 0.5, high: 1.0, open_low: false, open_high: true };
/// The share of chains kept by confidence.
pub const KEEP_TOP: Interval = Interval { low: 0.0, high: 1.0, open_low: true, open_high: false };

pub const AGGREGATES: &[&str] = &["majority", "vote", "weighted", "best", "best_of_n", "confidence"];
pub const VERIFIERS: &[&str] = &["none", "logprob", "self", "p_true", "model", "arithmetic", "tests"];
/// The `type` of a verifier given as an object.
pub const CHECKERS: &[&str] = &["regex", "json_schema", "http"];
pub const PRUNES: &[&str] = &["confidence", "none"];
pub const SCAFFOLDS: &[&str] = &["natural", "instruct"];
pub const FORMATS: &[&str] = &["none", "auto", "deepseek", "deepseek-legacy", "parsed"];

/// What a field holds.
#[derive(Clone, Copy)]
pub enum Kind {
    Int(Ints),
    Number(Interval),
    Bool,
    Text,
    Word(&'static [&'static str]),
    /// One of the server's effort levels, or "auto".
    Effort,
    /// `think`: a switch or an effort level (Ollama).
    SwitchOrEffort,
    /// A verifier's name, or a checker object (`{"type": "regex", "pattern": ...}`).
    Verifier,
    /// An object with the fields of these lists (`required`: those it must have).
    Object {
        fields: &'static [&'static [Field]],
        required: &'static [&'static str],
    },
}

#[derive(Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn f(name: &'static str, kind: Kind, doc: &'static str) -> Field {
    Field { name, kind, doc }
}

/// The self-consistency fields, read inside `reasoning` or at the top level.
const SAMPLING: [Field; 8] = [
    f("samples", Kind::Int(SAMPLES), "Chains to sample and vote on (self-consistency)."),
    f(
        "aggregate",
        Kind::Word(AGGREGATES),
        "How the chains' answers become one: majority vote, verifier-weighted vote, the verifier's best, or confidence-weighted vote.",
    ),
    f("verifier", Kind::Verifier, "What scores each chain: a name, or a checker object {type: regex|json_schema|http, ...}."),
    f("adaptive", Kind::Bool, "Stop sampling once the vote is settled (Beta rule)."),
    f("confidence", Kind::Number(CONFIDENCE), "The stopping level of adaptive sampling."),
    f(
        "prune",
        Kind::Word(PRUNES),
        "\"confidence\": a first wave calibrates a threshold and later chains below it stop at once (DeepConf online).",
    ),
    f("keep_top", Kind::Number(KEEP_TOP), "Vote only among this share of chains, most confident first."),
    f("warmup", Kind::Int(SAMPLES), "Chains in the first wave (at most `samples`)."),
];

/// `reasoning`'s own fields (it holds the sampling fields too).
const REASONING: [Field; 7] = [
    f("effort", Kind::Effort, "Effort level: a thinking budget, and samples and a verifier where the server sets them."),
    f("max_tokens", Kind::Int(TOKENS), "Thinking budget in tokens (OpenRouter)."),
    f("exclude", Kind::Bool, "Leave the thinking out of the response."),
    f("enabled", Kind::Bool, "Turn thinking on or off."),
    f("scaffold", Kind::Word(SCAFFOLDS), "How a model without think tokens is made to think."),
    f(
        "tests",
        Kind::Text,
        "With verifier \"tests\": Python asserts each chain's program must pass, or \"generated\" (the model writes them; CodeT).",
    ),
    f("entry_point", Kind::Text, "With verifier \"tests\": the function under test."),
];

const THINKING: [Field; 2] = [
    f("type", Kind::Word(&["enabled", "disabled"]), "Turn thinking on or off."),
    f("budget_tokens", Kind::Int(TOKENS), "Thinking budget in tokens."),
];

const TEMPLATE_KWARGS: [Field; 1] = [f("enable_thinking", Kind::Bool, "Turn thinking on or off (vLLM, SGLang).")];

const METADATA: [Field; 1] =
    [f("expected_answer", Kind::Text, "The reference answer: the response is graded against it (/metrics, dashboard).")];

/// The top level's own reasoning fields (it holds the sampling fields too).
const TOP: [Field; 14] = [
    f("reasoning_effort", Kind::Effort, "Effort level (OpenAI); \"auto\" lets the server choose from measured curves."),
    f(
        "reasoning",
        Kind::Object { fields: &[&REASONING, &SAMPLING], required: &[] },
        "Reasoning settings (OpenRouter's object, with thinkscale's sampling fields).",
    ),
    f("thinking", Kind::Object { fields: &[&THINKING], required: &["type"] }, "Thinking switch and budget (Anthropic)."),
    f("thinking_budget_tokens", Kind::Int(BUDGET), "Thinking budget in tokens; -1: think without a budget."),
    f("reasoning_budget_tokens", Kind::Int(BUDGET), "Thinking budget in tokens; -1: think without a budget."),
    f("thinking_token_budget", Kind::Int(BUDGET), "Thinking budget in tokens (vLLM); -1: think without a budget."),
    f("max_thinking_tokens", Kind::Int(BUDGET), "Thinking budget in tokens; -1: think without a budget."),
    f("min_thinking_tokens", Kind::Int(TOKENS), "Keep thinking at least this long (an early close becomes the wait text)."),
    f("reasoning_budget_message", Kind::Text, "Text injected before the close marker when the budget runs out."),
    f("reasoning_format", Kind::Word(FORMATS), "\"none\": thinking stays inline in content; otherwise it goes to reasoning_content."),
    f("chat_template_kwargs", Kind::Object { fields: &[&TEMPLATE_KWARGS], required: &[] }, "Chat template switches."),
    f("think", Kind::SwitchOrEffort, "Turn thinking on or off, or name an effort level (Ollama)."),
    f("num_samples", Kind::Int(SAMPLES), "Same as samples."),
    f("metadata", Kind::Object { fields: &[&METADATA], required: &[] }, "Request metadata; expected_answer grades the response."),
];

/// Every reasoning field a chat request may carry, top level.
pub const FIELDS: &[&[Field]] = &[&TOP, &SAMPLING];

/// The fields as an OpenAPI 3.0 object schema. `efforts`: the server's effort levels.
pub fn schema(efforts: &[String]) -> Value {
    object(FIELDS, &[], efforts)
}

fn object(fields: &[&[Field]], required: &[&str], efforts: &[String]) -> Value {
    let props: Map<String, Value> = fields.iter().copied().flatten().map(|f| (f.name.to_string(), field(f, efforts))).collect();
    let mut o = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn field(f: &Field, efforts: &[String]) -> Value {
    let levels = || {
        let mut all: Vec<&str> = efforts.iter().map(String::as_str).collect();
        all.push("auto");
        all
    };
    let mut s = match &f.kind {
        Kind::Int(r) => json!({"type": "integer", "minimum": r.min, "maximum": r.max}),
        Kind::Number(i) => json!({"type": "number", "minimum": i.low, "maximum": i.high,
                                  "exclusiveMinimum": i.open_low, "exclusiveMaximum": i.open_high}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Text => json!({"type": "string"}),
        Kind::Word(words) => json!({"type": "string", "enum": words}),
        Kind::Effort => json!({"type": "string", "enum": levels()}),
        Kind::SwitchOrEffort => json!({"oneOf": [{"type": "boolean"}, {"type": "string", "enum": levels()}]}),
        Kind::Verifier => json!({"oneOf": [
            {"type": "string", "enum": VERIFIERS},
            {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "enum": CHECKERS},
                "pattern": {"type": "string", "description": "regex: found in the trimmed answer"},
                "schema": {"type": "object", "description": "json_schema: the answer's JSON must satisfy it"},
                "name": {"type": "string", "description": "http: a checker the operator configured"}}}]}),
        Kind::Object { fields, required } => object(fields, required, efforts),
    };
    s["description"] = json!(f.doc);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_respect_open_ends() {
        assert!(CONFIDENCE.contains(0.5) && !CONFIDENCE.contains(1.0));
        assert!(!KEEP_TOP.contains(0.0) && KEEP_TOP.contains(1.0));
        assert_eq!((CONFIDENCE.describe(), KEEP_TOP.describe()), ("[0.5, 1)".to_string(), "(0, 1]".to_string()));
    }

    /// Every word the contract lists is one the gate takes (no list names a word it refuses).
    #[test]
    fn every_listed_word_is_accepted() {
        use crate::reasoning::plan::{normalise, Policy};
        let ok = |body: Value| normalise(body.as_object().unwrap(), &Policy::default(), false).map(|_| ()).map_err(|e| e.message);
        for w in VERIFIERS {
            ok(json!({"samples": 2, "verifier": w})).unwrap();
        }
        for w in AGGREGATES.iter().filter(|w| !["weighted", "best", "best_of_n"].contains(w)) {
            ok(json!({"samples": 2, "aggregate": w})).unwrap();
        }
        for w in ["weighted", "best", "best_of_n"] {
            ok(json!({"samples": 2, "aggregate": w, "verifier": "logprob"})).unwrap();
        }
        for w in PRUNES {
            ok(json!({"samples": 2, "prune": w})).unwrap();
        }
        for w in SCAFFOLDS {
            ok(json!({"reasoning": {"scaffold": w}})).unwrap();
        }
        for w in FORMATS {
            ok(json!({"reasoning_format": w})).unwrap();
        }
        for (t, extra) in [("regex", json!({"pattern": "x"})), ("json_schema", json!({"schema": {}})), ("http", json!({"name": "n"}))] {
            let mut v = extra;
            v["type"] = json!(t);
            assert!(CHECKERS.contains(&t));
            ok(json!({"samples": 2, "verifier": v})).unwrap();
        }
        assert_eq!(CHECKERS.len(), 3);
    }

    #[test]
    fn the_schema_names_every_field_with_its_bounds() {
        let s = schema(&["low".into(), "high".into()]);
        let p = &s["properties"];
        assert_eq!(p["samples"]["maximum"], SAMPLES.max);
        assert_eq!(p["reasoning"]["properties"]["samples"]["maximum"], SAMPLES.max);
        assert_eq!(p["thinking_budget_tokens"]["minimum"], -1);
        assert_eq!(p["reasoning_effort"]["enum"], json!(["low", "high", "auto"]));
        assert_eq!(p["thinking"]["required"], json!(["type"]));
        assert_eq!(p["reasoning"]["properties"]["confidence"]["exclusiveMaximum"], true);
        for f in FIELDS.iter().copied().flatten() {
            assert!(!f.doc.is_empty() && p[f.name].is_object(), "{}", f.name);
        }
    }
}
