//! Every dialect's reasoning fields as typed structs, read by serde. Each field's type checks its
//! own value (kind and bounds, from `params`) while it is read, so the plan is built from typed
//! values and a refused value names its path (`reasoning.samples`). Each object level is read on
//! its own (`read`), which keeps the path exact where serde's `flatten` would lose it. Fields that
//! several dialects spell differently stay separate fields: the plan lets agreeing spellings
//! through and names the later one when they disagree.

use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::params::{err, Interval, Ints, PlanError, AGGREGATES, CONFIDENCE, FORMATS, KEEP_TOP, PRUNES, SAMPLES, SCAFFOLDS, TOKENS};
use super::plan::Scaffold;
use super::sampling::Aggregate;

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
    const RANGE: Ints = super::params::BUDGET;
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
    use crate::reasoning::params::{Field, Kind, FIELDS};
    use serde::de::{self, Visitor};

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
