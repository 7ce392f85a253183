//! The gate for text completions: fields, prompts (text or token ids), the room each leaves.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{Backend, JobSpec, Token};
use crate::service::invalid::Invalid;
use crate::service::request::{parse_object, typed, Common, Validated};
use crate::service::Service;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<i32>),
    TokenLists(Vec<Vec<i32>>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CompletionFields {
    prompt: Prompt,
    logprobs: Option<i64>,
    #[serde(default)]
    echo: bool,
}

/// A text-completions request made into jobs, one per prompt.
pub struct PreparedCompletion {
    pub v: Validated,
    /// Each prompt as sent (empty for token ids), for `echo`.
    pub texts: Vec<String>,
    pub specs: Vec<JobSpec>,
    pub echo: bool,
    /// Log-probs wanted, with this many alternatives per token.
    pub logprobs: Option<u32>,
}

/// The gate for text completions: fields, prompts (text or token ids), the room each leaves.
pub fn prepare_completion(state: &Service, backend: &dyn Backend, id: &str, body: Bytes) -> Result<PreparedCompletion, Invalid> {
    let cfg = &state.cfg;
    let obj = parse_object(&body)?;
    let common: Common = typed(&obj)?;
    let fields: CompletionFields = typed(&obj)?;
    let top = match fields.logprobs {
        Some(k) if !(0..=20).contains(&k) => return Err(Invalid::field("'logprobs' must be between 0 and 20", Some("logprobs"))),
        k => k.map(|k| k as u32),
    };
    let vocab = backend.vocabulary();
    let slot_ctx = backend.slot_ctx();
    let mut v = common.validate(cfg, top, vocab.n_vocab(), vocab.eog(), slot_ctx)?;
    v.constrain(backend)?;
    let tokenize = |t: &str| vocab.tokenize(t, true).map_err(|e| Invalid::text(e, "prompt"));
    let (texts, prompts): (Vec<String>, Vec<Vec<Token>>) = match fields.prompt {
        Prompt::Text(t) => (vec![t.clone()], vec![tokenize(&t)?]),
        Prompt::Texts(ts) => (ts.clone(), ts.iter().map(|t| tokenize(t)).collect::<Result<_, _>>()?),
        Prompt::Tokens(ids) => (vec![String::new()], vec![ids.into_iter().map(Token).collect()]),
        Prompt::TokenLists(ls) => (vec![String::new(); ls.len()], ls.into_iter().map(|l| l.into_iter().map(Token).collect()).collect()),
    };
    if prompts.is_empty() || prompts.len() * v.n > cfg.parallel as usize * 4 {
        return Err(Invalid::field("'prompt' must hold between 1 and a few prompts", Some("prompt")));
    }
    let n_vocab = vocab.n_vocab().unwrap_or(i32::MAX);
    if prompts.iter().flatten().any(|t| t.0 < 0 || t.0 >= n_vocab) {
        return Err(Invalid::field(format!("token ids in 'prompt' must be in 0..{n_vocab}"), Some("prompt")));
    }
    if prompts.iter().any(|p| p.is_empty()) {
        return Err(Invalid::field("'prompt' must not be empty", Some("prompt")));
    }
    let mut specs = Vec::new();
    for (i, prompt) in prompts.into_iter().enumerate() {
        // Every token of the slot may be used: the prompt leaves at least one for the output.
        let room = slot_ctx as i64 - prompt.len() as i64;
        if room < 1 {
            return Err(Invalid::ContextLength {
                message: format!("Prompt {i} is {} tokens; the context holds {slot_ctx}", prompt.len()),
                param: "prompt".into(),
            });
        }
        specs.push(JobSpec {
            id: format!("{id}-{i}"),
            text: texts[i].clone(),
            prompt,
            n: v.n,
            sampling: v.sampling.clone(),
            max_tokens: v.max_tokens.unwrap_or(cfg.default_max_tokens).min(room as u32),
            forcing: None,
            want_logprob: false,
            vote: None,
        });
    }
    Ok(PreparedCompletion { v, texts, specs, echo: fields.echo, logprobs: top })
}

/// The request body's schema for /openapi.json: the shared sampling fields and the prompt.
pub fn completion_request_schema(gen: &mut schemars::SchemaGenerator) -> Value {
    json!({"allOf": [gen.subschema_for::<Common>(), gen.subschema_for::<CompletionFields>()], "required": ["prompt"]})
}
