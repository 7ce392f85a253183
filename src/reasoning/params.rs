//! Every request field's bound, stated once — the sampling knobs and the reasoning-control fields
//! of every dialect — and the typed structs the gate reads the reasoning fields into. Each
//! field's type checks its own value (kind, and the bounds below: `Int<Samples>` reads `SAMPLES`)
//! while serde reads it, so the plan is built from typed values and a refused value names its
//! path (`reasoning.samples`). Each object level is read on its own (`read`), which keeps the path
//! exact where serde's `flatten` would lose it. Fields that several dialects spell differently
//! stay separate fields: the plan lets agreeing spellings through and names the later one when
//! they disagree. /openapi.json writes the bounds and the table of fields into the contract
//! (`schema`); a test holds the table and the structs to the same names.

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use super::plan::Aggregate;
use super::plan::Scaffold;

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

// The typed fields.

/// One object level of the request read into `T`; `prefix` is the level's path (`"reasoning."`).
pub fn read<T: DeserializeOwned>(obj: &Map<String, Value>, prefix: &str) -> Result<T, PlanError> {
    // Read in place: the request's other fields (its messages) are skipped, never copied.
    let fields = serde::de::value::MapDeserializer::new(obj.iter().map(|(k, v)| (k.as_str(), v)));
    serde_path_to_error::deserialize(fields).map_err(|e: serde_path_to_error::Error<serde_json::Error>| {
        let path = format!("{prefix}{}", e.path());
        let path = path.trim_end_matches('.');
        err(path, format!("'{path}' {}", e.inner()))
    })
}

/// An integer range, as a type (`Int<Samples>`).
pub trait IntRange {
    const RANGE: Ints;
}

/// A number interval, as a type (`Num<KeepTop>`).
pub trait NumRange {
    const RANGE: Interval;
}

/// A token count (a budget, a minimum).
pub struct Tokens;
/// A thinking budget where -1 means "think, without a budget".
pub struct Budget;
/// Chains one request may sample; also a first wave's size.
pub struct Samples;
pub struct Confidence;
pub struct KeepTop;

impl IntRange for Tokens {
    const RANGE: Ints = TOKENS;
}
impl IntRange for Budget {
    const RANGE: Ints = BUDGET;
}
impl IntRange for Samples {
    const RANGE: Ints = SAMPLES;
}
impl NumRange for Confidence {
    const RANGE: Interval = CONFIDENCE;
}
impl NumRange for KeepTop {
    const RANGE: Interval = KEEP_TOP;
}

/// An integer within `R`; a whole float (`16.0`) counts, as JSON writers send them.
pub struct Int<R>(pub i64, PhantomData<R>);

impl<'de, R: IntRange> Deserialize<'de> for Int<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let n = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 1e15).map(|f| f as i64))
            .ok_or_else(|| D::Error::custom("must be an integer"))?;
        if n < R::RANGE.min {
            return Err(D::Error::custom(format!("must be at least {}", R::RANGE.min)));
        }
        if n > R::RANGE.max {
            return Err(D::Error::custom(format!("must be at most {}", R::RANGE.max)));
        }
        Ok(Self(n, PhantomData))
    }
}

/// A number within `R`.
pub struct Num<R>(pub f64, PhantomData<R>);

impl<'de, R: NumRange> Deserialize<'de> for Num<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = Value::deserialize(d)?.as_f64().ok_or_else(|| D::Error::custom("must be a number"))?;
        if !R::RANGE.contains(x) {
            return Err(D::Error::custom(format!("must be in {}", R::RANGE.describe())));
        }
        Ok(Self(x, PhantomData))
    }
}

/// Deserialize through a JSON value with one message for every wrong kind.
fn kind<'de, D: Deserializer<'de>, T>(d: D, take: impl FnOnce(Value) -> Option<T>, what: &str) -> Result<T, D::Error> {
    take(Value::deserialize(d)?).ok_or_else(|| D::Error::custom(format!("must be {what}")))
}

pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        kind(d, |v| v.as_bool().map(Self), "a boolean")
    }
}

pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        kind(d, |v| if let Value::String(s) = v { Some(Self(s)) } else { None }, "a string")
    }
}

/// A nested object, read with `read` at its own path.
pub struct Obj(pub Map<String, Value>);

impl<'de> Deserialize<'de> for Obj {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        kind(d, |v| if let Value::Object(o) = v { Some(Self(o)) } else { None }, "an object")
    }
}

/// A closed set of words a field takes.
pub trait Words: Sized {
    const WORDS: &'static [&'static str];
    fn parse(s: &str) -> Option<Self>;
}

pub struct Word<T>(pub T);

impl<'de, T: Words> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Text(s) = Text::deserialize(d)?;
        T::parse(&s).map(Word).ok_or_else(|| D::Error::custom(format!("must be one of {:?}, not '{s}'", T::WORDS)))
    }
}

impl Words for Aggregate {
    const WORDS: &'static [&'static str] = AGGREGATES;
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "majority" | "vote" => Self::Majority,
            "weighted" => Self::Weighted,
            "best" | "best_of_n" => Self::Best,
            "confidence" => Self::Confidence,
            _ => return None,
        })
    }
}

impl Words for Scaffold {
    const WORDS: &'static [&'static str] = SCAFFOLDS;
    fn parse(s: &str) -> Option<Self> {
        Scaffold::parse(s)
    }
}

/// `prune`: whether low-confidence chains are cut ("confidence") or not ("none").
pub struct Prune(pub bool);

impl Words for Prune {
    const WORDS: &'static [&'static str] = PRUNES;
    fn parse(s: &str) -> Option<Self> {
        match s {
            "confidence" => Some(Self(true)),
            "none" => Some(Self(false)),
            _ => None,
        }
    }
}

/// `reasoning_format`: whether thinking goes to `reasoning_content` (every value but "none").
pub struct Separate(pub bool);

impl Words for Separate {
    const WORDS: &'static [&'static str] = FORMATS;
    fn parse(s: &str) -> Option<Self> {
        FORMATS.contains(&s).then_some(Self(s != "none"))
    }
}

/// Ollama's `think`: a switch or an effort level.
pub enum Think {
    Switch(bool),
    Level(String),
}

impl<'de> Deserialize<'de> for Think {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let take = |v| match v {
            Value::Bool(b) => Some(Self::Switch(b)),
            Value::String(s) => Some(Self::Level(s)),
            _ => None,
        };
        kind(d, take, "a boolean or an effort level")
    }
}

/// `verifier`: a name, or a checker object (read with `Checker` at its own path).
pub enum VerifierField {
    Name(String),
    Checker(Map<String, Value>),
}

impl<'de> Deserialize<'de> for VerifierField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let take = |v| match v {
            Value::String(s) => Some(Self::Name(s)),
            Value::Object(o) => Some(Self::Checker(o)),
            _ => None,
        };
        kind(d, take, "a verifier's name or a checker object")
    }
}

/// The top level's own reasoning fields (OpenAI, llama.cpp, vLLM, Ollama, optillm, Anthropic's
/// and OpenRouter's objects).
#[derive(Deserialize)]
pub struct Top {
    pub reasoning_effort: Option<Text>,
    pub reasoning: Option<Obj>,
    pub thinking: Option<Obj>,
    pub thinking_budget_tokens: Option<Int<Budget>>,
    pub reasoning_budget_tokens: Option<Int<Budget>>,
    pub thinking_token_budget: Option<Int<Budget>>,
    pub max_thinking_tokens: Option<Int<Budget>>,
    pub chat_template_kwargs: Option<Obj>,
    pub think: Option<Think>,
    pub min_thinking_tokens: Option<Int<Tokens>>,
    pub reasoning_budget_message: Option<Text>,
    pub reasoning_format: Option<Word<Separate>>,
    pub num_samples: Option<Int<Samples>>,
}

impl Top {
    /// The budget spellings in the order the plan reads them (a disagreement names the later).
    pub fn budgets(&self) -> [(&'static str, &Option<Int<Budget>>); 4] {
        [
            ("thinking_budget_tokens", &self.thinking_budget_tokens),
            ("reasoning_budget_tokens", &self.reasoning_budget_tokens),
            ("thinking_token_budget", &self.thinking_token_budget),
            ("max_thinking_tokens", &self.max_thinking_tokens),
        ]
    }
}

/// `reasoning`'s own fields (OpenRouter's, and the tests a code verifier runs).
#[derive(Deserialize)]
pub struct Reasoning {
    pub effort: Option<Text>,
    pub max_tokens: Option<Int<Tokens>>,
    pub exclude: Option<Flag>,
    pub enabled: Option<Flag>,
    pub scaffold: Option<Word<Scaffold>>,
    pub tests: Option<Text>,
    pub entry_point: Option<Text>,
}

/// Anthropic's `thinking`.
#[derive(Deserialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: Option<Text>,
    pub budget_tokens: Option<Int<Tokens>>,
}

/// vLLM's and SGLang's `chat_template_kwargs` (other keys are the template's).
#[derive(Deserialize)]
pub struct TemplateKwargs {
    pub enable_thinking: Option<Flag>,
}

/// The self-consistency fields, read at the top level and inside `reasoning` (which wins).
#[derive(Deserialize)]
pub struct Sampling {
    pub samples: Option<Int<Samples>>,
    pub aggregate: Option<Word<Aggregate>>,
    pub verifier: Option<VerifierField>,
    pub adaptive: Option<Flag>,
    pub confidence: Option<Num<Confidence>>,
    pub prune: Option<Word<Prune>>,
    pub keep_top: Option<Num<KeepTop>>,
    pub warmup: Option<Int<Samples>>,
}

/// A verifier given as an object.
#[derive(Deserialize)]
pub struct Checker {
    #[serde(rename = "type")]
    pub kind: Option<Text>,
    pub pattern: Option<Text>,
    pub schema: Option<Value>,
    pub name: Option<Text>,
}

/// Every level of a request's reasoning fields, read.
pub struct Fields {
    pub top: Top,
    pub reasoning: Option<Reasoning>,
    pub thinking: Option<Thinking>,
    pub template: Option<TemplateKwargs>,
    pub sampling: Sampling,
    pub nested_sampling: Option<Sampling>,
}

impl Fields {
    pub fn read(req: &Map<String, Value>) -> Result<Self, PlanError> {
        fn level<T: DeserializeOwned>(o: &Option<Obj>, prefix: &str) -> Result<Option<T>, PlanError> {
            o.as_ref().map(|o| read(&o.0, prefix)).transpose()
        }
        let top: Top = read(req, "")?;
        Ok(Self {
            reasoning: level(&top.reasoning, "reasoning.")?,
            thinking: level(&top.thinking, "thinking.")?,
            template: level(&top.chat_template_kwargs, "chat_template_kwargs.")?,
            sampling: read(req, "")?,
            nested_sampling: level(&top.reasoning, "reasoning.")?,
            top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Visitor};

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

    /// The field names a derived `Deserialize` struct reads (serde hands them to the deserializer).
    fn names<T: DeserializeOwned>() -> Vec<&'static str> {
        struct Grab<'a>(&'a mut Vec<&'static str>);
        impl<'de> Deserializer<'de> for Grab<'_> {
            type Error = de::value::Error;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("only structs"))
            }
            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _: &'static str,
                fields: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Self::Error> {
                self.0.extend_from_slice(fields);
                Err(de::Error::custom("names taken"))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
                unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
            }
        }
        let mut out = Vec::new();
        let _ = T::deserialize(Grab(&mut out));
        out.sort_unstable();
        out
    }

    fn listed(fields: &[&[Field]]) -> Vec<&'static str> {
        let mut out: Vec<&str> = fields.iter().copied().flatten().map(|f| f.name).collect();
        out.sort_unstable();
        out
    }

    /// The contract's table (/openapi.json) and the structs the gate reads name the same fields.
    #[test]
    fn the_structs_read_exactly_the_fields_the_contract_lists() {
        let object = |name: &str| match FIELDS.iter().copied().flatten().find(|f| f.name == name).map(|f| f.kind) {
            Some(Kind::Object { fields, .. }) => fields,
            _ => panic!("{name} is not an object in the table"),
        };
        // `metadata` is the grader's (service::grading), not the plan's.
        let mut top = [names::<Top>(), names::<Sampling>(), vec!["metadata"]].concat();
        top.sort_unstable();
        assert_eq!(top, listed(FIELDS));
        let mut nested = [names::<Reasoning>(), names::<Sampling>()].concat();
        nested.sort_unstable();
        assert_eq!(nested, listed(object("reasoning")));
        assert_eq!(names::<Thinking>(), listed(object("thinking")));
        assert_eq!(names::<TemplateKwargs>(), listed(object("chat_template_kwargs")));
    }

    #[test]
    fn values_are_checked_while_read_and_name_their_path() {
        let refused = |v: Value| Fields::read(v.as_object().unwrap()).err().map(|e| (e.param, e.message));
        assert_eq!(
            refused(serde_json::json!({"reasoning": {"samples": 65}})),
            Some(("reasoning.samples".into(), "'reasoning.samples' must be at most 64".into()))
        );
        assert_eq!(
            refused(serde_json::json!({"thinking": {"budget_tokens": "x"}})),
            Some(("thinking.budget_tokens".into(), "'thinking.budget_tokens' must be an integer".into()))
        );
        assert_eq!(refused(serde_json::json!({"reasoning": 3})).map(|e| e.0), Some("reasoning".into()));
        assert_eq!(refused(serde_json::json!({"prune": "some"})).map(|e| e.0), Some("prune".into()));
        // Whole floats are integers; nulls are absent; other keys are someone else's.
        let f = Fields::read(serde_json::json!({"samples": 16.0, "think": null, "chat_template_kwargs": {"x": 1}}).as_object().unwrap())
            .unwrap();
        assert_eq!(f.sampling.samples.map(|s| s.0), Some(16));
        assert!(f.top.think.is_none() && f.template.is_some_and(|t| t.enable_thinking.is_none()));
    }
}
