//! Request parsing and validation shared by the generation endpoints. Bodies are parsed to JSON
//! first (so the reasoning normaliser sees every field), then the typed fields are read with
//! `serde_path_to_error` so a wrong type names its field.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::invalid::Invalid;
use crate::backend::{Backend, SamplingParams};
use crate::config::Config;
// Each knob's range comes from the one bounds table: schemars writes it into /openapi.json and
// `validate` checks it.
use crate::reasoning::params::{Interval, PENALTY, REPEAT_PENALTY, TEMPERATURE, TOP_K, UNIT};

/// Parse a body into a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Invalid> {
    if body.is_empty() {
        return Err(Invalid::Body("Request body is empty; expected a JSON object".into()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Invalid::Body("Request body must be a JSON object".into())),
        Err(e) => Err(Invalid::Body(format!("Invalid JSON body: {e}"))),
    }
}

/// Deserialize typed fields out of the object, naming the offending field on error.
pub fn typed<T: DeserializeOwned>(obj: &Map<String, Value>) -> Result<T, Invalid> {
    let fields = serde::de::value::MapDeserializer::new(obj.iter().map(|(k, v)| (k.as_str(), v)));
    serde_path_to_error::deserialize(fields).map_err(|e: serde_path_to_error::Error<serde_json::Error>| {
        let mut path = e.path().to_string();
        let inner = e.inner().to_string();
        // A missing field is reported at its parent: name the field itself.
        if let Some(field) = inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            path = if path == "." || path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        }
        let param = (path != "." && !path.is_empty()).then_some(path.as_str());
        Invalid::field(format!("Invalid value for '{}': {}", param.unwrap_or("body"), e.inner()), param)
    })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields common to chat and text completions.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Common {
    #[schemars(range(min = TEMPERATURE.low, max = TEMPERATURE.high))]
    pub temperature: Option<f64>,
    #[schemars(range(min = UNIT.low, max = UNIT.high))]
    pub top_p: Option<f64>,
    #[schemars(range(min = TOP_K.min, max = TOP_K.max))]
    pub top_k: Option<i64>,
    #[schemars(range(min = UNIT.low, max = UNIT.high))]
    pub min_p: Option<f64>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    /// At most the per-slot context (set in /openapi.json from the server's configuration).
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i64>,
    #[schemars(range(min = 1))]
    pub max_completion_tokens: Option<i64>,
    #[schemars(range(min = PENALTY.low, max = PENALTY.high))]
    pub presence_penalty: Option<f64>,
    #[schemars(range(min = PENALTY.low, max = PENALTY.high))]
    pub frequency_penalty: Option<f64>,
    #[schemars(range(min = REPEAT_PENALTY.low, max = REPEAT_PENALTY.high))]
    pub repeat_penalty: Option<f64>,
    /// At most the server's parallel slots (set in /openapi.json).
    #[schemars(range(min = 1))]
    pub n: Option<i64>,
    pub logit_bias: Option<std::collections::HashMap<String, f64>>,
    /// llama.cpp / vLLM extension: never end on an end-of-generation token (benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// OpenAI structured output: `text`, `json_object` or `json_schema`.
    pub response_format: Option<ResponseFormat>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct JsonSchemaFormat {
    pub schema: Option<Map<String, Value>>,
}

impl ResponseFormat {
    /// The JSON schema the output must follow, if any (`json_object`: any object).
    fn schema(&self) -> Option<String> {
        match self {
            Self::Text => None,
            Self::JsonObject => Some(r#"{"type":"object"}"#.into()),
            Self::JsonSchema { json_schema } => {
                Some(json_schema.schema.as_ref().map_or_else(|| "{}".into(), |s| Value::Object(s.clone()).to_string()))
            }
        }
    }
}

fn range(v: Option<f64>, param: &str, bounds: Interval) -> Result<Option<f64>, Invalid> {
    match v {
        Some(x) if !bounds.contains(x) || x.is_nan() => {
            Err(Invalid::field(format!("'{param}' must be between {} and {}, got {x}", bounds.low, bounds.high), Some(param)))
        }
        _ => Ok(v),
    }
}

/// The validated knobs of one generation request.
#[derive(Debug)]
pub struct Validated {
    pub sampling: SamplingParams,
    /// Explicit cap on generated tokens, if the request gave one.
    pub max_tokens: Option<u32>,
    /// The field that set `max_tokens` (for errors about the cap).
    pub max_tokens_param: &'static str,
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
    /// JSON schema from `response_format`, turned into a grammar by `constrain`.
    pub json_schema: Option<String>,
}

impl Validated {
    /// Compile `response_format` into a grammar the sampler enforces on every sampled token, or
    /// hand the schema to a backend whose engine enforces it.
    pub fn constrain(&mut self, backend: &dyn Backend) -> Result<(), Invalid> {
        if let Some(schema) = &self.json_schema {
            let can = backend.capabilities();
            if !can.grammar {
                if !can.json_schema {
                    return Err(Invalid::unsupported("this backend cannot enforce 'response_format'", "response_format"));
                }
                // The engine enforces the schema itself, and refuses (a 400) what it cannot.
                self.sampling.json_schema = Some(schema.clone());
                return Ok(());
            }
            let grammar = backend.vocabulary().json_grammar(schema).map_err(|e| {
                Invalid::field(
                    format!("'response_format' holds a JSON schema llama.cpp cannot turn into a grammar ({e})"),
                    Some("response_format"),
                )
            })?;
            self.sampling.grammar = Some(grammar);
            // Were every token the grammar allows also banned (`ignore_eos` once the JSON is
            // complete, or a -100 `logit_bias`), all candidates would be -inf and the pick would
            // break the grammar. A finite penalty still loses to any allowed token.
            for (_, bias) in &mut self.sampling.logit_bias {
                *bias = bias.max(-1e9);
            }
        }
        Ok(())
    }
}

impl Common {
    /// `n_vocab`: the vocabulary's size where the backend knows it (logit-bias keys must be below
    /// it); `slot_ctx`: the most tokens one request may hold.
    // Long on purpose: one check per sampling field, in the order of the fields.
    pub fn validate(
        &self,
        cfg: &Config,
        logprobs: Option<u32>,
        n_vocab: Option<i32>,
        eog: &[i32],
        slot_ctx: u32,
    ) -> Result<Validated, Invalid> {
        let mut logit_bias = Vec::new();
        let top = n_vocab.unwrap_or(i32::MAX);
        for (k, v) in self.logit_bias.iter().flatten() {
            let id: i32 = k.parse().ok().filter(|id| (0..top).contains(id)).ok_or_else(|| {
                let range = n_vocab.map_or_else(|| "non-negative token ids".to_string(), |n| format!("token ids in 0..{n}"));
                Invalid::field(format!("'logit_bias' keys must be {range}, got {k:?}"), Some("logit_bias"))
            })?;
            if !(-100.0..=100.0).contains(v) {
                return Err(Invalid::field("'logit_bias' values must be between -100 and 100", Some("logit_bias")));
            }
            // -100 bans the token, as in OpenAI's API.
            logit_bias.push((id, if *v <= -100.0 { f32::NEG_INFINITY } else { *v as f32 }));
        }
        if self.ignore_eos {
            logit_bias.extend(eog.iter().map(|t| (*t, f32::NEG_INFINITY)));
        }
        let temperature = range(self.temperature, "temperature", TEMPERATURE)?.unwrap_or(1.0);
        let top_p = range(self.top_p, "top_p", UNIT)?.unwrap_or(1.0);
        let min_p = range(self.min_p, "min_p", UNIT)?.unwrap_or(0.0);
        let presence = range(self.presence_penalty, "presence_penalty", PENALTY)?.unwrap_or(0.0);
        let frequency = range(self.frequency_penalty, "frequency_penalty", PENALTY)?.unwrap_or(0.0);
        let repeat = range(self.repeat_penalty, "repeat_penalty", REPEAT_PENALTY)?.unwrap_or(1.0);
        if repeat == 0.0 {
            return Err(Invalid::field("'repeat_penalty' must be greater than 0", Some("repeat_penalty")));
        }
        let top_k = match self.top_k {
            Some(k) if !(TOP_K.min..=TOP_K.max).contains(&k) => {
                return Err(Invalid::field(format!("'top_k' must be between {} and {}", TOP_K.min, TOP_K.max), Some("top_k")))
            }
            Some(k) => k as i32,
            // llama-server's default: sampling from the whole 49k-token vocabulary costs a full
            // softmax per token per sequence for probability mass nobody samples.
            None => DEFAULT_TOP_K,
        };
        let n = match self.n {
            None => 1,
            Some(n) if n < 1 => return Err(Invalid::field("'n' must be at least 1", Some("n"))),
            Some(n) if n > cfg.parallel as i64 => {
                return Err(Invalid::field(format!("'n' must be at most {} (the server's parallel slots)", cfg.parallel), Some("n")))
            }
            Some(n) => n as usize,
        };
        let mut max_tokens = None;
        let mut max_tokens_param = "max_tokens";
        for (param, v) in [("max_tokens", self.max_tokens), ("max_completion_tokens", self.max_completion_tokens)] {
            if let Some(m) = v {
                if m < 1 {
                    return Err(Invalid::field(format!("'{param}' must be at least 1, got {m}"), Some(param)));
                }
                if m > slot_ctx as i64 {
                    return Err(Invalid::ContextLength {
                        message: format!("'{param}' = {m} exceeds the per-request context ({slot_ctx} tokens)"),
                        param: param.to_string(),
                    });
                }
                // max_completion_tokens is the newer name; when both are given the smaller wins.
                if max_tokens.is_none_or(|old: u32| (m as u32) < old) {
                    max_tokens = Some(m as u32);
                    max_tokens_param = param;
                }
            }
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > cfg.max_stop_sequences {
            return Err(Invalid::field(
                format!("'stop' may hold at most {} sequences, got {}", cfg.max_stop_sequences, stop.len()),
                Some("stop"),
            ));
        }
        if stop.iter().any(|s| s.len() > 1000) {
            return Err(Invalid::field("each 'stop' sequence must be at most 1000 bytes", Some("stop")));
        }
        let seed = self.seed.map_or_else(rand_seed, |s| s as u64 as u32);
        Ok(Validated {
            sampling: SamplingParams {
                temperature: temperature as f32,
                top_p: top_p as f32,
                top_k,
                min_p: min_p as f32,
                seed,
                presence_penalty: presence as f32,
                frequency_penalty: frequency as f32,
                repeat_penalty: repeat as f32,
                stop,
                logprobs,
                logit_bias,
                grammar: None,
                json_schema: None,
            },
            max_tokens,
            max_tokens_param,
            n,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
            json_schema: self.response_format.as_ref().and_then(ResponseFormat::schema),
        })
    }
}

/// `top_k` when a request gives none (0 turns it off).
pub const DEFAULT_TOP_K: i32 = 40;

fn rand_seed() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn common(v: Value) -> Result<Validated, Invalid> {
        let c: Common = typed(v.as_object().unwrap())?;
        c.validate(&Config::default(), None, Some(1000), &[2], 2048)
    }

    #[test]
    fn wrong_types_name_their_field() {
        let e = common(json!({"temperature": "hot"})).unwrap_err();
        assert_eq!(e.param(), Some("temperature"));
        let e = common(json!({"stop": [1, 2]})).unwrap_err();
        assert_eq!(e.param(), Some("stop"));
    }

    #[test]
    fn response_formats_become_schemas() {
        assert_eq!(common(json!({"response_format": {"type": "text"}})).unwrap().json_schema, None);
        assert_eq!(
            common(json!({"response_format": {"type": "json_object"}})).unwrap().json_schema.as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        let s = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let v = common(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": s}}})).unwrap();
        assert_eq!(v.json_schema.as_deref(), Some(s.to_string().as_str()));
        for bad in [json!({"type": "yaml"}), json!({"type": "json_schema"}), json!("json")] {
            let param = common(json!({"response_format": bad.clone()})).unwrap_err().param().unwrap_or_default().to_string();
            assert!(param.starts_with("response_format"), "{bad} -> {param}");
        }
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(common(json!({"temperature": 3})).unwrap_err().param(), Some("temperature"));
        assert_eq!(common(json!({"max_tokens": -1})).unwrap_err().param(), Some("max_tokens"));
        assert_eq!(common(json!({"max_tokens": 100000000})).unwrap_err().param(), Some("max_tokens"));
        assert_eq!(common(json!({"n": 99})).unwrap_err().param(), Some("n"));
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(common(json!({"stop": many})).unwrap_err().param(), Some("stop"));
    }

    #[test]
    fn logit_bias_and_ignore_eos() {
        let v = common(json!({"logit_bias": {"5": -100, "7": 2.5}, "ignore_eos": true})).unwrap();
        let mut b = v.sampling.logit_bias.clone();
        b.sort_by_key(|x| x.0);
        assert_eq!(b, vec![(2, f32::NEG_INFINITY), (5, f32::NEG_INFINITY), (7, 2.5)]);
        assert_eq!(common(json!({"logit_bias": {"abc": 1}})).unwrap_err().param(), Some("logit_bias"));
        assert_eq!(common(json!({"logit_bias": {"99999": 1}})).unwrap_err().param(), Some("logit_bias"));
        assert_eq!(common(json!({"logit_bias": {"1": 500}})).unwrap_err().param(), Some("logit_bias"));
    }

    #[test]
    fn the_smaller_token_cap_wins() {
        let v = common(json!({"max_tokens": 50, "max_completion_tokens": 20, "stop": "x"})).unwrap();
        assert_eq!(v.max_tokens, Some(20));
        assert_eq!(v.sampling.stop, vec!["x".to_string()]);
    }
}
