//! HTTP to an OpenAI-compatible engine: JSON requests, and the text-completion stream parsed into
//! tokens (from `logprobs` when the engine gives them, else one token per chunk).

use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

/// Why a call to a replica failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The replica is unreachable, failed (5xx) or broke a stream: mark it down, go elsewhere.
    #[error("{0}")]
    Replica(String),
    /// The replica is full (429): wait and ask again.
    #[error("the engine is at capacity (429)")]
    Busy,
    /// The replica refused the request itself (4xx, its message, error code and the parameter it
    /// named): no other replica would do better.
    #[error("the engine refused the request ({0}): {1}")]
    Refused(u16, String, Option<String>, Option<String>),
}

impl From<CallError> for crate::backend::JobError {
    fn from(f: CallError) -> Self {
        match f {
            CallError::Refused(.., ref param) => Self::Refused { param: param.clone(), message: f.to_string() },
            _ => Self::Failed(f.to_string()),
        }
    }
}

/// A request that got no answer, with the causes reqwest nests (refused, reset, timed out).
fn unreachable(e: reqwest::Error) -> CallError {
    let mut m = format!("unreachable: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        m.push_str(&format!(": {c}"));
        cause = c.source();
    }
    CallError::Replica(m)
}

/// One sampled token as the engine reports it.
#[derive(Debug, Clone, Default)]
pub struct Sampled {
    pub text: String,
    pub logprob: Option<f32>,
    /// Top alternatives (token text, log-prob), most likely first.
    pub top: Vec<(String, f32)>,
}

/// What one stream chunk carries.
#[derive(Debug, Default)]
pub struct Chunk {
    pub tokens: Vec<Sampled>,
    pub finish_reason: Option<String>,
    /// From the usage chunk (`stream_options.include_usage`): prompt tokens the engine's cache held.
    pub cached_tokens: Option<u64>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    key: Option<String>,
}

impl Client {
    pub fn new(key: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).tcp_nodelay(true).build()?;
        Ok(Self { http, key })
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Send a request to replica `base`, counted in `thinkscale_backend_replica_requests_total`.
    async fn send(&self, base: &str, r: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let result = self.exchange(r).await;
        drop(Counted::new(base, if result.is_ok() { "ok" } else { "error" }));
        result
    }

    async fn exchange(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let again = r.try_clone();
        let resp = match (r.send().await, again) {
            (Ok(resp), _) => resp,
            // A kept-alive connection the engine closed just as it was reused (llama-server's HTTP
            // library closes one after a few requests or seconds idle) fails without an answer and
            // without a refused connect or a timeout: send once more, on a fresh connection.
            (Err(e), Some(again)) if !e.is_connect() && !e.is_timeout() => again.send().await.map_err(unreachable)?,
            (Err(e), _) => return Err(unreachable(e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let error = serde_json::from_str::<Value>(&body).ok().map(|v| v["error"].clone()).unwrap_or(Value::Null);
        let message = error["message"].as_str().map(str::to_string).unwrap_or_else(|| body.chars().take(300).collect());
        Err(match status.as_u16() {
            429 => CallError::Busy,
            c @ 400..=499 => {
                let text = |k: &str| error[k].as_str().map(str::to_string);
                CallError::Refused(c, message, text("code"), text("param"))
            }
            c => CallError::Replica(format!("answered {c}: {message}")),
        })
    }

    pub async fn get(&self, base: &str, path: &str, timeout: Duration) -> Result<Value, CallError> {
        let resp = self.send(base, self.request(reqwest::Method::GET, format!("{base}{path}")).timeout(timeout)).await?;
        resp.json().await.map_err(|e| CallError::Replica(format!("unreadable answer to {path}: {e}")))
    }

    pub async fn post(&self, base: &str, path: &str, body: &Value) -> Result<Value, CallError> {
        let resp = self.send(base, self.request(reqwest::Method::POST, format!("{base}{path}")).json(body)).await?;
        resp.json().await.map_err(|e| CallError::Replica(format!("unreadable answer to {path}: {e}")))
    }

    /// POST /v1/completions with `stream: true`: the chunks as they come. Counted when the stream
    /// ends: an error when the replica cut it (it died mid-request), else ok.
    pub async fn stream(&self, base: &str, body: &Value) -> Result<impl Stream<Item = Result<Chunk, CallError>>, CallError> {
        let mut counted = Counted::new(base, "ok");
        let resp =
            self.exchange(self.request(reqwest::Method::POST, format!("{base}/v1/completions")).json(body)).await.inspect_err(|_| {
                counted.outcome = "error";
            })?;
        let mut bytes = resp.bytes_stream();
        Ok(async_stream::stream! {
            let mut counted = counted;
            let mut buf: Vec<u8> = Vec::new();
            // A stream that ends without a finish reason was cut by the engine (its engine failed).
            let mut finished = false;
            loop {
                let Some(piece) = bytes.next().await else {
                    counted.outcome = "error";
                    yield Err(CallError::Replica("the stream ended early".into()));
                    return;
                };
                let piece = match piece {
                    Ok(p) => p,
                    Err(e) => {
                        counted.outcome = "error";
                    yield Err(CallError::Replica(format!("the stream broke: {e}")));
                        return;
                    }
                };
                buf.extend_from_slice(&piece);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line);
                    let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else { continue };
                    if data == "[DONE]" {
                        if !finished {
                            counted.outcome = "error";
                    yield Err(CallError::Replica("the stream ended without a finish reason".into()));
                        }
                        return;
                    }
                    match serde_json::from_str::<Value>(data) {
                        Ok(v) if v.get("error").is_some() => {
                            counted.outcome = "error";
                    yield Err(CallError::Replica(format!("the engine failed mid-stream: {}", v["error"]["message"])));
                            return;
                        }
                        Ok(v) => {
                            let chunk = parse_chunk(&v);
                            finished |= chunk.finish_reason.is_some();
                            yield Ok(chunk);
                        }
                        Err(e) => {
                            counted.outcome = "error";
                    yield Err(CallError::Replica(format!("unreadable stream chunk: {e}")));
                            return;
                        }
                    }
                }
            }
        })
    }
}

/// One request to a replica in `thinkscale_backend_replica_requests_total`, counted when dropped
/// (a stream's outcome is known only at its end).
struct Counted {
    base: String,
    outcome: &'static str,
}

impl Counted {
    fn new(base: &str, outcome: &'static str) -> Self {
        Self { base: base.to_string(), outcome }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        crate::metrics::metrics().replica_requests.with_label_values(&[&self.base, self.outcome]).inc();
    }
}

#[derive(Deserialize, Default)]
struct Logprobs {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    token_logprobs: Vec<Option<f32>>,
    #[serde(default)]
    top_logprobs: Vec<Option<serde_json::Map<String, Value>>>,
    /// llama-server's form: the chat API's entries, one per token.
    #[serde(default)]
    content: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    token: String,
    logprob: f32,
    #[serde(default)]
    top_logprobs: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    token: String,
    logprob: f32,
}

/// A text-completion chunk: its tokens from `logprobs` when present (the legacy completions format
/// vLLM and SGLang send, or the chat API's entries llama-server sends), else its text as one token.
pub fn parse_chunk(v: &Value) -> Chunk {
    let cached_tokens = v.get("usage").filter(|u| u.is_object()).map(|u| u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0));
    let Some(choice) = v["choices"].get(0) else { return Chunk { cached_tokens, ..Default::default() } };
    let text = choice["text"].as_str().unwrap_or_default();
    let lp: Logprobs = serde_json::from_value(choice["logprobs"].clone()).unwrap_or_default();
    let tokens = if !lp.content.is_empty() {
        lp.content
            .into_iter()
            .map(|e| {
                let mut top: Vec<(String, f32)> = e.top_logprobs.into_iter().map(|a| (a.token, a.logprob)).collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                Sampled { text: e.token, logprob: Some(e.logprob), top }
            })
            .collect()
    } else if lp.tokens.is_empty() {
        if text.is_empty() {
            Vec::new()
        } else {
            vec![Sampled { text: text.to_string(), ..Default::default() }]
        }
    } else {
        lp.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut top: Vec<(String, f32)> = lp
                    .top_logprobs
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.as_f64().map(|x| (k, x as f32)))
                    .collect();
                top.sort_by(|a, b| b.1.total_cmp(&a.1));
                Sampled { text: t.clone(), logprob: lp.token_logprobs.get(i).copied().flatten(), top }
            })
            .collect()
    };
    Chunk { tokens, finish_reason: choice["finish_reason"].as_str().map(str::to_string), cached_tokens }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunks_give_tokens_from_logprobs_or_their_text() {
        let v = json!({"choices": [{"text": "Hello world", "index": 0, "finish_reason": null, "logprobs": {
            "tokens": ["Hello", " world"], "token_logprobs": [-0.1, -0.2],
            "top_logprobs": [{"Hello": -0.1, "Hi": -2.0}, {" world": -0.2}]}}]});
        let c = parse_chunk(&v);
        assert_eq!(c.tokens.len(), 2);
        assert_eq!(c.tokens[1].text, " world");
        assert_eq!(c.tokens[0].top[1], ("Hi".to_string(), -2.0));
        assert_eq!(c.tokens[0].logprob, Some(-0.1));
        // llama-server's entries.
        let v = json!({"choices": [{"text": ", the", "index": 0, "finish_reason": null, "logprobs": {"content": [
            {"id": 28, "token": ",", "logprob": -2.4, "top_logprobs": [{"token": ",", "logprob": -2.4}, {"token": "-", "logprob": -0.8}]},
            {"id": 260, "token": " the", "logprob": -2.5, "top_logprobs": []}]}}]});
        let c = parse_chunk(&v);
        assert_eq!(c.tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), [",", " the"]);
        assert_eq!((c.tokens[0].logprob, &c.tokens[0].top[0]), (Some(-2.4), &("-".to_string(), -0.8)));
        let c = parse_chunk(&json!({"choices": [{"text": "ok", "finish_reason": "stop"}]}));
        assert_eq!((c.tokens[0].text.as_str(), c.finish_reason.as_deref()), ("ok", Some("stop")));
        let c = parse_chunk(&json!({"choices": [], "usage": {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 4}}}));
        assert_eq!((c.tokens.len(), c.cached_tokens), (0, Some(4)));
    }
}
