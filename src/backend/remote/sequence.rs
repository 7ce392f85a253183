//! One sequence on a remote engine: stream a text completion, run each token through the shared
//! controller, and when it forces text (the close at the budget, "Wait", the answer cue) or rolls
//! tokens back, stop that stream and continue from the prompt plus everything fed so far. The
//! continuation is plain text, so a sequence whose replica fails resumes on another one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::client::CallError;
use super::job::JobCtx;
use crate::backend::controller::Controller;
use crate::backend::{FinishReason, JobError, LogprobEntry, SeqStats, TopLogprob};

/// Waits for a full replica (429) before the request fails.
pub const BUSY_RETRIES: u32 = 100;

/// Counts a sequence in `thinkscale_active_sequences` while it runs: the embedded engine sets that
/// gauge from its slots; here each sequence is a task, whichever replica it is on.
struct Active;

impl Active {
    fn new() -> Self {
        crate::metrics::metrics().active_sequences.inc();
        Self
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        crate::metrics::metrics().active_sequences.dec();
    }
}

// Long on purpose: one streaming state machine (the controller, the text fed, pending log-probs,
// the probe) whose early returns and restarts all read the same locals; the request body and the
// log-prob entries are built apart.
pub async fn run(job: &JobCtx, index: usize, stop: &AtomicBool) -> Result<(FinishReason, SeqStats), JobError> {
    let _active = Active::new();
    let spec = &job.spec;
    let confidence = spec.vote.as_ref().and_then(|v| v.confidence);
    let mut ctl = Controller::new(index, job.forcing.as_ref(), spec.sampling.stop.clone(), spec.max_tokens, confidence.map(|c| c.window));
    let choice = index / spec.group();
    // Log-probs are asked for only when something reads them; without them a chunk is a token.
    let report = spec.sampling.logprobs;
    let want = [report, confidence.map(|c| c.top_k as u32), spec.want_logprob.then_some(0)].into_iter().flatten().max();
    // Text fed after the prompt, one piece per token (to roll tokens back).
    let mut fed: Vec<String> = Vec::new();
    let mut pending: Vec<LogprobEntry> = Vec::new();
    let mut busy = 0;
    let mut round = 0u32;
    // Thinking was closed and the model ended at once: the next request asks for one token that
    // does not end generation (the embedded engine takes the most likely such token). Once only.
    let mut answer_probe = Probe::Unused;
    let schema: Option<Value> = spec.sampling.json_schema.as_deref().and_then(|s| serde_json::from_str(s).ok());
    loop {
        if stop.load(Ordering::Relaxed) || job.abandoned() {
            return Ok((FinishReason::Cancelled, ctl.stats()));
        }
        let remaining = spec.max_tokens.saturating_sub(ctl.generated);
        let probing = answer_probe == Probe::Next;
        // Structured output covers the answer only: a request that starts there carries the
        // schema for the engine to enforce; one that starts in thinking ends at the close.
        let constrained = schema.is_some() && ctl.answering();
        let asked = if probing { 1 } else { remaining };
        // The first sample's first request reports how much of the prompt the engine had cached.
        let want_usage = index == 0 && round == 0;
        let ask = Ask { index, round, asked, want, probing, constrained, want_usage };
        let body = request_body(job, &ask, &fed.concat(), schema.as_ref());
        if probing {
            answer_probe = Probe::Used;
        }
        round += 1;
        let replica = job.replica();
        let mut chunks = match job.shared.client.stream(&replica.url, &body).await {
            Ok(s) => Box::pin(s),
            Err(CallError::Replica(m)) => {
                job.relocate(&replica, &m).map_err(|e| JobError::Failed(e.to_string()))?;
                continue;
            }
            Err(CallError::Busy) if busy < BUSY_RETRIES => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            // Everything else in the request passed our gate: a schema the engine refuses is
            // what it refused, when it does not name the field itself.
            Err(e) => {
                return Err(match e.into() {
                    JobError::Refused { message, param: None } if constrained && schema.is_some() => {
                        JobError::Refused { message, param: Some("response_format".into()) }
                    }
                    other => other,
                })
            }
        };
        let mut got = 0usize;
        // Why this request's stream was left: the sequence ended, or it continues in a new request.
        let outcome = 'stream: loop {
            let next = match tokio::time::timeout(job.shared.silence, chunks.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(CallError::Replica(format!("no data for {} s", job.shared.silence.as_secs())))),
            };
            let chunk = match next {
                Some(Ok(c)) => c,
                Some(Err(CallError::Replica(m))) => {
                    job.relocate(&replica, &m).map_err(|e| JobError::Failed(e.to_string()))?;
                    break 'stream None;
                }
                Some(Err(e)) => return Err(e.into()),
                // Ended without a finish reason: what came is kept, and a request with nothing
                // in it ends the sequence below.
                None => break 'stream Some(()),
            };
            if stop.load(Ordering::Relaxed) || job.abandoned() {
                return Ok((FinishReason::Cancelled, ctl.stats()));
            }
            if let Some(cached) = chunk.cached_tokens {
                job.report_cached(cached);
            }
            let eog = chunk.finish_reason.as_deref() == Some("stop");
            let mut tokens: Vec<(Option<super::client::Sampled>, bool)> = chunk.tokens.into_iter().map(|t| (Some(t), false)).collect();
            if eog {
                tokens.push((None, true));
            }
            for (token, eog) in tokens {
                if eog && ctl.must_answer() && answer_probe == Probe::Unused {
                    answer_probe = Probe::Next;
                    break 'stream Some(());
                }
                got += 1;
                if token.is_some() {
                    crate::metrics::metrics().generated_tokens.inc();
                }
                job.mark_prefilled();
                let thinking = ctl.thinking();
                let text = token.as_ref().map_or("", |t| t.text.as_str()).to_string();
                if let Some(t) = &token {
                    ctl.observe(t.logprob, t.top.iter().take(confidence.map_or(0, |c| c.top_k)).map(|x| x.1));
                    if let (Some(k), Some(lp)) = (report, t.logprob) {
                        pending.push(entry(t, lp, k, thinking));
                    }
                }
                let step = ctl.on_token(text.as_bytes(), eog, job.forcing.as_ref(), job.prune_threshold(choice));
                if !step.thinking.is_empty() || !step.answer.is_empty() || step.finish.is_some() {
                    let logprobs = std::mem::take(&mut pending);
                    if !step.thinking.is_empty() || !step.answer.is_empty() || !logprobs.is_empty() {
                        job.send(crate::backend::Event::Delta { index, thinking: step.thinking, answer: step.answer, logprobs });
                    }
                }
                fed.truncate(fed.len() - step.rollback.min(fed.len()));
                if step.feed_sampled {
                    fed.push(text);
                }
                if let Some(reason) = step.finish {
                    if want_usage && (chunk.finish_reason.is_some() || got as u32 >= remaining.max(1)) {
                        // The engine ended too (or ends now, at the length it was given).
                        read_usage(&mut chunks, job).await;
                    }
                    return Ok((reason, ctl.stats()));
                }
                if let (Some(inj), Some(f)) = (step.inject, job.forcing.as_ref()) {
                    let forced = f.forced(inj);
                    fed.push(forced.text.clone());
                    // One piece per forced token, so later rollbacks count right.
                    fed.extend(std::iter::repeat_n(String::new(), forced.tokens.len().saturating_sub(1)));
                    break 'stream Some(());
                }
                if step.rollback > 0 || (schema.is_some() && !constrained && ctl.answering()) {
                    break 'stream Some(());
                }
            }
            if chunk.finish_reason.as_deref() == Some("length") && !probing {
                // Every request asks for all the tokens left: the engine counted them out (some
                // tokens may not have come as chunks of their own).
                let step = ctl.end_at_cap();
                let logprobs = std::mem::take(&mut pending);
                if !step.answer.is_empty() || !logprobs.is_empty() {
                    job.send(crate::backend::Event::Delta { index, thinking: String::new(), answer: step.answer, logprobs });
                }
                if want_usage {
                    read_usage(&mut chunks, job).await;
                }
                return Ok((FinishReason::Length, ctl.stats()));
            }
            if chunk.finish_reason.is_some() {
                break 'stream Some(());
            }
        };
        if outcome.is_some() && got == 0 && answer_probe != Probe::Next {
            // The engine ended at once with nothing to add (its own length limit): done.
            return Ok((FinishReason::Length, ctl.stats()));
        }
    }
}

/// What one request of a sequence asks the engine for.
struct Ask {
    index: usize,
    round: u32,
    /// Tokens to generate.
    asked: u32,
    /// Log-prob alternatives per token, when anything reads them.
    want: Option<u32>,
    /// One token that does not end generation (`Probe`).
    probing: bool,
    /// The answer starts here and the request carries the schema.
    constrained: bool,
    want_usage: bool,
}

/// The completion request: the prompt plus what was fed so far, the probe's bias against ending,
/// the stop strings of a plain answer, the schema, and usage on the first request.
fn request_body(job: &JobCtx, a: &Ask, fed: &str, schema: Option<&Value>) -> Value {
    let spec = &job.spec;
    let mut body = request(job, a.index, a.round, fed, a.asked, a.want);
    if a.probing {
        let mut bias = body["logit_bias"].as_object().cloned().unwrap_or_default();
        for t in &job.shared.vocab.eog {
            bias.insert(t.to_string(), json!(-100));
        }
        body["logit_bias"] = Value::Object(bias);
        // vLLM and SGLang read this; engines that report no end-of-generation ids need it.
        body["min_tokens"] = json!(1);
    }
    // A plain answer's stop strings go to the engine too, so it ends there (and reports its
    // usage) instead of generating on until the stream is dropped. While thinking they do
    // not apply, and the close marker is the controller's to find.
    if job.forcing.is_none() && !spec.sampling.stop.is_empty() {
        body["stop"] = json!(spec.sampling.stop);
    }
    if let (true, Some(schema)) = (a.constrained, schema) {
        // vLLM and SGLang read `response_format` on completions; llama-server `json_schema`.
        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}});
        body["json_schema"] = schema.clone();
    }
    if a.want_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// A streamed token as a log-prob entry, with `k` alternatives.
fn entry(t: &super::client::Sampled, logprob: f32, k: u32, thinking: bool) -> LogprobEntry {
    LogprobEntry {
        token: t.text.clone(),
        logprob,
        bytes: t.text.as_bytes().to_vec(),
        top_logprobs: t
            .top
            .iter()
            .take(k as usize)
            .map(|(s, l)| TopLogprob { token: s.clone(), logprob: *l, bytes: s.as_bytes().to_vec() })
            .collect(),
        thinking,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Unused,
    Next,
    Used,
}

/// The usage chunk that follows an engine's last one: how much of the prompt its cache held.
async fn read_usage<S: futures::Stream<Item = Result<super::client::Chunk, CallError>> + Unpin>(chunks: &mut S, job: &JobCtx) {
    while let Some(Ok(c)) = chunks.next().await {
        if let Some(cached) = c.cached_tokens {
            job.report_cached(cached);
            return;
        }
    }
}

/// The text-completion request for the next stretch of a sequence.
fn request(job: &JobCtx, index: usize, round: u32, continuation: &str, max_tokens: u32, logprobs: Option<u32>) -> Value {
    let spec = &job.spec;
    let s = &spec.sampling_of(index);
    // A prompt given as token ids (text completions) is sent as ids; it is never continued.
    let prompt = if spec.text.is_empty() {
        json!(spec.prompt.iter().map(|t| t.0).collect::<Vec<_>>())
    } else {
        json!(format!("{}{continuation}", spec.text))
    };
    // Each continuation a fresh seed (each sample has its own already).
    let seed = s.seed.wrapping_add(round.wrapping_mul(7919));
    let mut body = json!({
        "model": job.shared.model, "prompt": prompt, "max_tokens": max_tokens.max(1), "stream": true,
        "temperature": s.temperature, "top_p": s.top_p, "seed": seed,
    });
    let mut extra = Map::new();
    if s.top_k > 0 {
        extra.insert("top_k".into(), json!(s.top_k));
    }
    if s.min_p > 0.0 {
        extra.insert("min_p".into(), json!(s.min_p));
    }
    if s.presence_penalty != 0.0 {
        extra.insert("presence_penalty".into(), json!(s.presence_penalty));
    }
    if s.frequency_penalty != 0.0 {
        extra.insert("frequency_penalty".into(), json!(s.frequency_penalty));
    }
    if s.repeat_penalty != 1.0 {
        extra.insert("repeat_penalty".into(), json!(s.repeat_penalty));
    }
    if !s.logit_bias.is_empty() {
        let bias: Map<String, Value> = s.logit_bias.iter().map(|(t, b)| (t.to_string(), json!(b.max(-100.0)))).collect();
        extra.insert("logit_bias".into(), Value::Object(bias));
    }
    if let Some(k) = logprobs {
        extra.insert("logprobs".into(), json!(k.max(1)));
    }
    if let Some(b) = body.as_object_mut() {
        b.extend(extra);
    }
    body
}
