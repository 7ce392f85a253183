//! The remote backend's text side: the model's template and tokenizer, asked of a replica.

use std::sync::Arc;

use serde_json::{json, Value};

use super::client::{CallError, Client};
use super::replicas::Replica;
use crate::backend::{Grammar, GrammarError, TextError, Token, Vocabulary};
use crate::reasoning::chat::Message;
use crate::reasoning::tools::Tool;

/// The model's template and tokenizer, asked of a replica (`/apply-template`, `/tokenize`, as
/// llama-server and thinkscale serve them). Blocking calls: the pipeline runs them off the
/// async workers.
pub(super) struct RemoteVocab {
    pub(super) replicas: Vec<Arc<Replica>>,
    pub(super) client: Client,
    pub(super) markers: Option<(String, String)>,
    pub(super) eog: Vec<i32>,
    pub(super) n_vocab: Option<i32>,
    pub(super) rt: tokio::runtime::Handle,
}

impl RemoteVocab {
    /// POST to the least busy replica that is up, moving on from one that fails.
    fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let mut up: Vec<&Arc<Replica>> = self.replicas.iter().filter(|r| r.is_up()).collect();
        up.sort_by_key(|r| r.in_flight());
        let mut last = CallError::Replica("no backend replica is up".into());
        for r in up {
            match self.rt.block_on(self.client.post(&r.url, path, body)) {
                Err(CallError::Replica(m)) => {
                    r.mark_down(&m);
                    last = CallError::Replica(format!("no backend replica is up (last failure: {m})"));
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// An engine without /apply-template (vLLM, SGLang) renders through its chat tokenizer:
    /// the conversation's tokens, then their text.
    fn render_by_tokens(&self, body: &Value) -> Result<String, CallError> {
        let mut req = body.clone();
        req["add_generation_prompt"] = json!(true);
        req["add_special_tokens"] = json!(false);
        let tokens = self.post("/tokenize", &req)?;
        let text = self.post("/detokenize", &json!({"tokens": tokens["tokens"]}))?;
        text["prompt"].as_str().map(str::to_string).ok_or_else(|| CallError::Replica("the backend's /detokenize gave no prompt".into()))
    }
}

/// A message in the OpenAI request format (calls with their arguments as JSON text).
fn openai_message(m: &Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    if let Some(n) = &m.name {
        v["name"] = json!(n);
    }
    v
}

/// The engine refusing the input is the client's error; failing or being full is not.
fn text_error(f: CallError) -> TextError {
    match f {
        CallError::Refused(_, m, Some(code), _) if code == "context_length_exceeded" => TextError::TooLong(m),
        CallError::Refused(_, m, ..) => TextError::Invalid(format!("the backend refused it: {m}")),
        other => TextError::Unavailable(other.to_string()),
    }
}

impl Vocabulary for RemoteVocab {
    fn render_chat(&self, messages: &[Message], tools: &[Tool]) -> Result<String, TextError> {
        let mut body = json!({"messages": messages.iter().map(openai_message).collect::<Vec<_>>(), "reasoning_effort": "none"});
        if !tools.is_empty() {
            body["tools"] = tools.iter().map(|t| t.raw.clone()).collect();
        }
        let mut prompt = match self.post("/apply-template", &body) {
            Ok(v) => v["prompt"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| TextError::Unavailable("the backend's /apply-template gave no prompt".into()))?,
            Err(CallError::Refused(404, ..)) => self.render_by_tokens(&body).map_err(text_error)?,
            Err(e) => return Err(text_error(e)),
        };
        // A thinkscale backend closes the think block of a thinking model when thinking is off;
        // the thinking here is ours to open.
        if let Some((open, close)) = &self.markers {
            if let Some(stripped) = prompt.strip_suffix(&format!("{open}\n\n{close}\n\n")) {
                prompt = stripped.to_string();
            }
        }
        Ok(prompt)
    }
    fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<Token>, TextError> {
        // llama-server and thinkscale read `content`/`add_special`; vLLM `prompt`/`add_special_tokens`.
        let body = json!({"content": text, "add_special": add_bos, "prompt": text, "add_special_tokens": add_bos});
        let v = self.post("/tokenize", &body).map_err(text_error)?;
        let tokens = v["tokens"].as_array().ok_or_else(|| TextError::Unavailable("the backend's /tokenize gave no tokens".into()))?;
        Ok(tokens.iter().filter_map(|t| t.as_i64().or(t["id"].as_i64())).map(|t| Token(t as i32)).collect())
    }
    fn n_vocab(&self) -> Option<i32> {
        self.n_vocab
    }
    fn eog(&self) -> &[i32] {
        &self.eog
    }
    fn think_markers(&self) -> Option<(String, String)> {
        self.markers.clone()
    }
    /// The engine takes the schema itself (`Capabilities::json_schema`) and refuses what it
    /// cannot enforce: vLLM's and llama.cpp's schema support differ.
    fn json_grammar(&self, _: &str) -> Result<Grammar, GrammarError> {
        Err(GrammarError::Remote)
    }
    fn tool_grammar(&self, _: &str, _: bool) -> Result<Grammar, GrammarError> {
        Err(GrammarError::Remote)
    }
}
