//! The remote backend: test-time compute over OpenAI-compatible engines (vLLM, SGLang,
//! llama-server, another thinkscale). Each job goes to one replica; its samples are concurrent
//! text completions of the prompt rendered here (so the engine's prefix cache shares it); budget
//! forcing continues a sequence with the forced text appended; P(True) is read from one token's
//! top log-probs. The same controller and sample-group logic as the embedded engine decide.

mod client;
pub mod replicas;
mod sequence;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llama_cpp_2::token::LlamaToken;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use self::client::{Client, Failure};
use self::replicas::{Lease, Replica, Replicas};
use super::controller::JobForcing;
use super::groups::{Groups, Work};
use super::{Backend, CancelHandle, Capabilities, Event, FinishReason, Grammar, JobSpec, Judge, SeqStats, SubmitError, TextError, Vocabulary};
use crate::config::Config;
use crate::reasoning::chat::Message;
use crate::reasoning::tools::Tool;

/// How long start-up waits for a replica to answer.
const CONNECT_WAIT: Duration = Duration::from_secs(600);
const PROBE_EVERY: Duration = Duration::from_secs(2);

struct Shared {
    replicas: Replicas,
    client: Client,
    /// The model name sent to the engines.
    model: String,
    slot_ctx: u32,
    meta: Value,
    vocab: Arc<RemoteVocab>,
    /// Requests running per replica (`--parallel`) and waiting beyond that (`--queue-size`)
    /// before new ones get a 429, as the embedded engine's slots and queue.
    parallel: u64,
    queue: u64,
    /// How long a stream may stay silent.
    silence: Duration,
}

#[derive(Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

impl Remote {
    /// Wait until a replica answers, and learn the model, its context and vocabulary from it.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Self> {
        let client = Client::new(cfg.backend_api_key.clone())?;
        let replicas = Replicas::new(&cfg.backends);
        let started = Instant::now();
        loop {
            let mut last = String::new();
            for i in 0..replicas.all.len() {
                let r = replicas.all[i].clone();
                match ready(&client, &r).await {
                    Ok(models) => return Self::finish(cfg, client, replicas, r, models).await,
                    Err(e) => last = format!("{}: {e}", r.url),
                }
            }
            if started.elapsed() > CONNECT_WAIT {
                anyhow::bail!("no backend replica became ready within {} s (last: {last})", CONNECT_WAIT.as_secs());
            }
            tracing::info!(waiting_for = %last, "no backend replica ready yet");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn finish(cfg: &Config, client: Client, replicas: Replicas, first: Arc<Replica>, models: Value) -> anyhow::Result<Self> {
        let entry = match &cfg.backend_model {
            Some(name) => models["data"].as_array().and_then(|d| d.iter().find(|m| m["id"] == name.as_str())).cloned().unwrap_or(Value::Null),
            None => models["data"][0].clone(),
        };
        let model = match (&cfg.backend_model, entry["id"].as_str()) {
            (Some(name), _) => name.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => anyhow::bail!("{} lists no model in /v1/models; pass --backend-model", first.url),
        };
        let meta = entry["meta"].clone();
        // thinkscale reports its slot; vLLM its max_model_len; llama-server its n_ctx in /props.
        let props = client.get(&first.url, "/props", Duration::from_secs(5)).await.unwrap_or(Value::Null);
        let slot_ctx = meta["slot_ctx"]
            .as_u64()
            .or(entry["max_model_len"].as_u64())
            .or(props["default_generation_settings"]["n_ctx"].as_u64())
            .unwrap_or(4096) as u32;
        let markers = match (&cfg.reasoning.think_open, &cfg.reasoning.think_close) {
            (Some(o), Some(c)) => Some((o.clone(), c.clone())),
            _ => meta["thinking_markers"].as_array().and_then(|m| Some((m.first()?.as_str()?.to_string(), m.get(1)?.as_str()?.to_string()))),
        };
        let eog = meta["eog_token_ids"].as_array().map(|a| a.iter().filter_map(|t| t.as_i64().map(|t| t as i32)).collect()).unwrap_or_default();
        let n_vocab = meta["n_vocab"].as_i64().map(|n| n as i32);
        let vocab = Arc::new(RemoteVocab {
            replicas: replicas.all.clone(),
            client: client.clone(),
            markers,
            eog,
            n_vocab,
            rt: tokio::runtime::Handle::current(),
        });
        let meta = json!({
            "backend": "remote", "backend_model": model, "slot_ctx": slot_ctx, "n_vocab": vocab.n_vocab,
            "thinking_markers": vocab.markers, "eog_token_ids": vocab.eog,
            "replicas": replicas.all.iter().map(|r| r.url.clone()).collect::<Vec<_>>(), "engine": meta,
        });
        let shared = Arc::new(Shared { replicas, client, model, slot_ctx, meta, vocab, parallel: cfg.parallel as u64, queue: cfg.queue_size as u64, silence: Duration::from_secs(cfg.backend_timeout.max(1)) });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        tracing::info!(model = %shared.model, slot_ctx, replicas = shared.replicas.all.len(), "remote backend ready");
        Ok(Self { shared })
    }

    pub fn model(&self) -> &str {
        &self.shared.model
    }
}

/// A replica is ready when its /health says so and it lists its models.
async fn ready(client: &Client, r: &Replica) -> Result<Value, Failure> {
    client.get(&r.url, "/health", Duration::from_secs(5)).await?;
    client.get(&r.url, "/v1/models", Duration::from_secs(5)).await
}

/// Every replica's /health, every few seconds, for as long as the backend lives: failed ones
/// come back, and one that died idle is shown down before a request finds out.
async fn probe(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(s) = shared.upgrade() else { return };
        for r in &s.replicas.all {
            match s.client.get(&r.url, "/health", Duration::from_secs(2)).await {
                Ok(_) => r.mark_up(),
                Err(Failure::Busy) => r.mark_up(),
                Err(e) => r.mark_down(&format!("health probe: {e}")),
            }
        }
        crate::metrics::metrics().engine_up.set(i64::from(s.replicas.any_up()));
    }
}

impl Backend for Remote {
    fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, CancelHandle), SubmitError> {
        let s = &self.shared;
        let up = s.replicas.all.iter().filter(|r| r.is_up()).count() as u64;
        let in_flight: u64 = s.replicas.all.iter().map(|r| r.status().in_flight).sum();
        if up > 0 && in_flight >= up * s.parallel + s.queue {
            return Err(SubmitError::QueueFull);
        }
        let lease = self
            .shared
            .replicas
            .lease(&spec.text, &[])
            .ok_or_else(|| SubmitError::Unavailable("No backend replica is up; try again shortly".into()))?;
        let (events, rx) = mpsc::unbounded_channel();
        let cancel = CancelHandle::default();
        tokio::spawn(run_job(self.shared.clone(), spec, events, cancel.clone(), lease));
        Ok((rx, cancel))
    }
    fn vocabulary(&self) -> Arc<dyn Vocabulary> {
        self.shared.vocab.clone()
    }
    fn slot_ctx(&self) -> u32 {
        self.shared.slot_ctx
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { grammar: false, json_schema: true, verifier_model: false }
    }
    fn meta(&self) -> Value {
        self.shared.meta.clone()
    }
    fn health(&self) -> Result<Value, String> {
        let replicas: Vec<_> = self.shared.replicas.all.iter().map(|r| r.status()).collect();
        if !self.shared.replicas.any_up() {
            return Err(format!("no backend replica is up ({})", replicas.iter().map(|r| r.url.as_str()).collect::<Vec<_>>().join(", ")));
        }
        Ok(json!({"backend": "remote", "backend_model": self.shared.model, "slot_ctx": self.shared.slot_ctx, "replicas": replicas}))
    }
}

/// The model's template and tokenizer, asked of a replica (`/apply-template`, `/tokenize`, as
/// llama-server and thinkscale serve them). Blocking calls: the pipeline runs them off the
/// async workers.
struct RemoteVocab {
    replicas: Vec<Arc<Replica>>,
    client: Client,
    markers: Option<(String, String)>,
    eog: Vec<i32>,
    n_vocab: Option<i32>,
    rt: tokio::runtime::Handle,
}

impl RemoteVocab {
    /// POST to the least busy replica that is up, moving on from one that fails.
    fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let mut up: Vec<&Arc<Replica>> = self.replicas.iter().filter(|r| r.is_up()).collect();
        up.sort_by_key(|r| r.status().in_flight);
        let mut last = Failure::Replica("no backend replica is up".into());
        for r in up {
            match self.rt.block_on(self.client.post(&r.url, path, body)) {
                Err(Failure::Replica(m)) => {
                    r.mark_down(&m);
                    last = Failure::Replica(format!("no backend replica is up (last failure: {m})"));
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// An engine without /apply-template (vLLM, SGLang) renders through its chat tokenizer:
    /// the conversation's tokens, then their text.
    fn render_by_tokens(&self, body: &Value) -> Result<String, Failure> {
        let mut req = body.clone();
        req["add_generation_prompt"] = json!(true);
        req["add_special_tokens"] = json!(false);
        let tokens = self.post("/tokenize", &req)?;
        let text = self.post("/detokenize", &json!({"tokens": tokens["tokens"]}))?;
        text["prompt"].as_str().map(str::to_string).ok_or_else(|| Failure::Replica("the backend's /detokenize gave no prompt".into()))
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
fn text_error(f: Failure) -> TextError {
    match f {
        Failure::Refused(_, m, Some(code)) if code == "context_length_exceeded" => TextError::TooLong(m),
        Failure::Refused(_, m, _) => TextError::Invalid(format!("the backend refused it: {m}")),
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
            Ok(v) => v["prompt"].as_str().map(str::to_string).ok_or_else(|| TextError::Unavailable("the backend's /apply-template gave no prompt".into()))?,
            Err(Failure::Refused(404, ..)) => self.render_by_tokens(&body).map_err(text_error)?,
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
    fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<LlamaToken>, TextError> {
        // llama-server and thinkscale read `content`/`add_special`; vLLM `prompt`/`add_special_tokens`.
        let body = json!({"content": text, "add_special": add_bos, "prompt": text, "add_special_tokens": add_bos});
        let v = self.post("/tokenize", &body).map_err(text_error)?;
        let tokens = v["tokens"].as_array().ok_or_else(|| TextError::Unavailable("the backend's /tokenize gave no tokens".into()))?;
        Ok(tokens.iter().filter_map(|t| t.as_i64().or(t["id"].as_i64())).map(|t| LlamaToken(t as i32)).collect())
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
    /// llama.cpp's grammar for the schema (no vocabulary needed): the gate checks with it that
    /// the engine is handed a schema it can enforce, as the embedded engine would.
    fn json_grammar(&self, schema: &str) -> Result<Grammar, String> {
        let gbnf = llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| e.to_string())?;
        Ok(Grammar { gbnf, root: "root" })
    }
    fn tool_grammar(&self, _: &str, _: bool) -> Result<Grammar, String> {
        Err("the remote backend takes no grammar".into())
    }
}

/// One job on the remote backend, shared by its sequence tasks.
struct JobCtx {
    shared: Arc<Shared>,
    spec: Arc<JobSpec>,
    forcing: Option<JobForcing>,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancelHandle,
    /// The replica the job runs on (it moves when that one fails).
    lease: Mutex<Lease>,
    /// The online filter's threshold per choice, once calibrated.
    thresholds: Mutex<Vec<Option<f64>>>,
    prefilled: AtomicBool,
    /// Wakes the job when its first token came (the engine holds the prompt: more samples may go).
    first_token: tokio::sync::Notify,
    /// Milliseconds to the job's first token (the engine's prefill, as seen from here).
    prompt_ms: Mutex<f64>,
    started: Instant,
}

impl JobCtx {
    fn send(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn abandoned(&self) -> bool {
        self.events.is_closed() || self.cancel.is_cancelled()
    }

    fn replica(&self) -> Arc<Replica> {
        self.lease.lock().map(|l| l.replica.clone()).unwrap_or_else(|p| p.into_inner().replica.clone())
    }

    /// The replica failed this job: mark it down and move the job to another one, if any.
    fn relocate(&self, failed: &Replica, why: &str) -> Result<(), String> {
        failed.mark_down(why);
        let mut lease = self.lease.lock().map_err(|_| "lease poisoned".to_string())?;
        if lease.replica.url != failed.url {
            return Ok(()); // another sequence moved the job already
        }
        match self.shared.replicas.lease(&self.spec.text, std::slice::from_ref(&failed.url)) {
            Some(next) => {
                tracing::warn!(id = %self.spec.id, from = %failed.url, to = %next.replica.url, "moving a request to another replica");
                *lease = next;
                Ok(())
            }
            None => Err(format!("no backend replica is up (last failure: {why})")),
        }
    }

    fn prune_threshold(&self, choice: usize) -> Option<f64> {
        self.thresholds.lock().ok().and_then(|t| t.get(choice).copied().flatten())
    }

    /// The first token of the job: the engine has the prompt.
    fn mark_prefilled(&self) {
        if !self.prefilled.swap(true, Ordering::Relaxed) {
            let prompt_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut ms) = self.prompt_ms.lock() {
                *ms = prompt_ms;
            }
            self.send(Event::Prefilled { prompt_tokens: self.spec.prompt.len(), cached_tokens: 0, prompt_ms });
            self.first_token.notify_one();
        }
    }

    /// The engine's usage said how much of the prompt its cache held (first sample's first request).
    fn report_cached(&self, cached_tokens: u64) {
        let prompt_ms = self.prompt_ms.lock().map(|m| *m).unwrap_or(0.0);
        self.send(Event::Prefilled { prompt_tokens: self.spec.prompt.len(), cached_tokens: cached_tokens as usize, prompt_ms });
    }
}

enum Done {
    Sample { index: usize, result: Result<(FinishReason, SeqStats), String> },
    Judged { choice: usize, answer: String, score: Result<f64, String> },
}

async fn run_job(shared: Arc<Shared>, spec: JobSpec, events: mpsc::UnboundedSender<Event>, cancel: CancelHandle, lease: Lease) {
    let spec = Arc::new(spec);
    let forcing = match &spec.forcing {
        Some(f) => {
            let (vocab, f, max) = (shared.vocab.clone(), f.clone(), spec.max_tokens);
            let made = tokio::task::spawn_blocking(move || JobForcing::new(&f, max, |t| vocab.tokenize(t, false)).map_err(|e| e.to_string()));
            match made.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(jf) => Some(jf),
                Err(e) => {
                    let _ = events.send(Event::Error { message: format!("tokenizing the forced texts: {e}") });
                    return;
                }
            }
        }
        None => None,
    };
    let mut groups = Groups::new(&spec);
    let choices = spec.n.div_ceil(spec.group());
    let job = Arc::new(JobCtx {
        shared,
        spec: spec.clone(),
        forcing,
        events,
        cancel,
        lease: Mutex::new(lease),
        thresholds: Mutex::new(vec![None; choices]),
        prefilled: AtomicBool::new(false),
        first_token: tokio::sync::Notify::new(),
        prompt_ms: Mutex::new(0.0),
        started: Instant::now(),
    });
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    // Stop flags of the running samples, by index.
    let mut running: Vec<(usize, Arc<AtomicBool>)> = Vec::new();
    let mut failed = false;
    let mut emit = |e: Event| {
        if let Event::Calibrated { choice, threshold } = &e {
            if let Ok(mut t) = job.thresholds.lock() {
                t[*choice] = Some(*threshold);
            }
        }
        job.send(e)
    };
    loop {
        while !failed && !job.abandoned() {
            // The first sample goes alone until the engine has the prompt: the others then find
            // it in the engine's prefix cache instead of each prefilling it.
            if !running.is_empty() && !job.prefilled.load(Ordering::Relaxed) {
                break;
            }
            let Some(work) = groups.next(&mut emit) else { break };
            let (job, tx) = (job.clone(), done_tx.clone());
            match work {
                Work::Sample(index) => {
                    let stop = Arc::new(AtomicBool::new(false));
                    running.push((index, stop.clone()));
                    tokio::spawn(async move {
                        let result = sequence::run(&job, index, &stop).await;
                        let _ = tx.send(Done::Sample { index, result });
                    });
                }
                Work::Judge { choice, answer } => {
                    tokio::spawn(async move {
                        let score = judge(&job, &answer).await;
                        let _ = tx.send(Done::Judged { choice, answer, score });
                    });
                }
            }
        }
        if groups.done() || ((failed || job.abandoned()) && running.is_empty()) {
            break;
        }
        let done = tokio::select! {
            done = done_rx.recv() => done,
            _ = job.first_token.notified(), if !job.prefilled.load(Ordering::Relaxed) => continue,
        };
        let Some(done) = done else { break };
        match done {
            Done::Sample { index, result } => {
                running.retain(|(i, _)| *i != index);
                let (reason, stats) = match result {
                    Ok(r) => r,
                    Err(message) => {
                        if !failed {
                            failed = true;
                            emit(Event::Error { message });
                            for (_, stop) in &running {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        (FinishReason::Cancelled, SeqStats::default())
                    }
                };
                let stop = groups.finished(index, reason, &stats, &mut emit);
                emit(Event::Finished { index, reason, stats });
                if let Some(choice) = stop {
                    for (i, flag) in &running {
                        if groups.choice_of(*i) == choice {
                            flag.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            Done::Judged { choice, answer, score } => {
                groups.judged();
                match score {
                    Ok(score) => emit(Event::Judged { choice, answer, score }),
                    Err(message) if !failed => {
                        failed = true;
                        emit(Event::Error { message });
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// P(True) of a proposed answer: the judging text after the prompt, one token, its top log-probs.
async fn judge(job: &Arc<JobCtx>, answer: &str) -> Result<f64, String> {
    let spec = job.spec.clone();
    let answer = answer.to_string();
    // The suffix may render the judging conversation with the backend's template (blocking).
    let suffix = tokio::task::spawn_blocking(move || match spec.vote.as_ref().and_then(|v| v.judge.as_ref()) {
        Some(Judge::Fork { suffix }) => Ok(suffix(&answer)),
        _ => Err("the remote backend judges with the serving model only".to_string()),
    })
    .await
    .map_err(|e| e.to_string())??;
    let body = json!({
        "model": job.shared.model, "prompt": format!("{}{suffix}", job.spec.text), "max_tokens": 1,
        "temperature": 0.0, "logprobs": 20, "stream": false,
    });
    for _ in 0..sequence::BUSY_RETRIES {
        let replica = job.replica();
        match job.shared.client.post(&replica.url, "/v1/completions", &body).await {
            Ok(v) => {
                let top: Vec<(String, f32)> = v["choices"][0]["logprobs"]["top_logprobs"][0]
                    .as_object()
                    .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x as f32))).collect())
                    .unwrap_or_default();
                return Ok(crate::reasoning::verify::p_true_from_top(&top, &super::JUDGE_YES, &super::JUDGE_NO));
            }
            Err(Failure::Replica(m)) => job.relocate(&replica, &m)?,
            Err(Failure::Busy) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(Failure::Busy.to_string())
}
