//! The remote backend: test-time compute over OpenAI-compatible engines (vLLM, SGLang,
//! llama-server, another thinkscale). Each job goes to one replica; its samples are concurrent
//! text completions of the prompt rendered here (so the engine's prefix cache shares it); budget
//! forcing continues a sequence with the forced text appended; P(True) is read from one token's
//! top log-probs. The same controller and sample-group logic as the embedded engine decide.

mod client;
mod job;
pub mod replicas;
mod sequence;
mod vocab;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use self::client::{CallError, Client};
use self::job::run_job;
use self::replicas::{Replica, Replicas};
use self::vocab::RemoteVocab;
use super::{Backend, Capabilities, Event, Health, JobHandle, JobSpec, SubmitError, Unhealthy, Vocabulary};
use crate::config::Config;

/// How long start-up waits for a replica to answer.
const CONNECT_WAIT: Duration = Duration::from_secs(600);
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_WAIT: Duration = Duration::from_secs(2);

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
            let mut not_found = 0;
            for i in 0..replicas.all.len() {
                let r = replicas.all[i].clone();
                match ready(&client, &r).await {
                    Ok(models) => return Self::finish(cfg, client, replicas, r, models).await,
                    Err(e) => {
                        not_found += usize::from(matches!(e, CallError::Refused(404, ..)));
                        last = format!("{}: {e}", r.url);
                    }
                }
            }
            // A server that answers 404 to /health or /v1/models is up but is not an engine at
            // this URL: waiting will not change that.
            if not_found == replicas.all.len() {
                anyhow::bail!("every backend answers 404 for /health or /v1/models ({last}): is the URL the engine's root or its /v1 base, e.g. http://127.0.0.1:8081/v1?");
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
            Some(name) => {
                models["data"].as_array().and_then(|d| d.iter().find(|m| m["id"] == name.as_str())).cloned().unwrap_or(Value::Null)
            }
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
            _ => {
                meta["thinking_markers"].as_array().and_then(|m| Some((m.first()?.as_str()?.to_string(), m.get(1)?.as_str()?.to_string())))
            }
        };
        let mut eog: Vec<i32> =
            meta["eog_token_ids"].as_array().map(|a| a.iter().filter_map(|t| t.as_i64().map(|t| t as i32)).collect()).unwrap_or_default();
        // llama-server names its end-of-turn token in /props: its id, for `ignore_eos` to ban.
        if let (true, Some(eos)) = (eog.is_empty(), props["eos_token"].as_str()) {
            let body = json!({"content": eos, "add_special": false, "parse_special": true});
            if let Ok(v) = client.post(&first.url, "/tokenize", &body).await {
                if let Some([id]) = v["tokens"].as_array().map(Vec::as_slice) {
                    eog.extend(id.as_i64().map(|t| t as i32));
                }
            }
        }
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
        let shared = Arc::new(Shared {
            replicas,
            client,
            model,
            slot_ctx,
            meta,
            vocab,
            parallel: cfg.parallel as u64,
            queue: cfg.queue_size as u64,
            silence: Duration::from_secs(cfg.backend_timeout.max(1)),
        });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        tracing::info!(model = %shared.model, slot_ctx, replicas = shared.replicas.all.len(), "remote backend ready");
        Ok(Self { shared })
    }

    pub fn model(&self) -> &str {
        &self.shared.model
    }
}

/// A replica is ready when its /health says so and it lists its models.
async fn ready(client: &Client, r: &Replica) -> Result<Value, CallError> {
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
            match tokio::time::timeout(PROBE_WAIT, s.client.get(&r.url, "/health", PROBE_EVERY * 10)).await {
                Ok(Ok(_) | Err(CallError::Busy)) => r.mark_up(),
                // An engine busy with our streams may be slow to answer (llama-server serves HTTP
                // from a fixed pool of threads, each held by a stream): that is load, not failure.
                // A dead one refuses, and a hung one is caught by its streams' silence timeout.
                Err(_) if r.in_flight() > 0 => {}
                Err(_) => r.mark_down(&format!("health probe: no answer within {} s", PROBE_WAIT.as_secs())),
                Ok(Err(e)) => r.mark_down(&format!("health probe: {e}")),
            }
        }
        crate::metrics::metrics().engine_up.set(i64::from(s.replicas.any_up()));
    }
}

impl Backend for Remote {
    fn submit(&self, spec: JobSpec) -> Result<(mpsc::UnboundedReceiver<Event>, JobHandle), SubmitError> {
        let s = &self.shared;
        let up = s.replicas.all.iter().filter(|r| r.is_up()).count() as u64;
        let in_flight: u64 = s.replicas.all.iter().map(|r| r.in_flight()).sum();
        if up > 0 && in_flight >= up * s.parallel + s.queue {
            return Err(SubmitError::QueueFull);
        }
        let lease = self
            .shared
            .replicas
            .lease(&spec.text, &[])
            .ok_or_else(|| SubmitError::Unavailable("No backend replica is up; try again shortly".into()))?;
        let (events, rx) = mpsc::unbounded_channel();
        let cancel = JobHandle::default();
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
    fn health(&self) -> Result<Health, Unhealthy> {
        let replicas: Vec<_> = self.shared.replicas.all.iter().map(|r| r.status()).collect();
        if !self.shared.replicas.any_up() {
            return Err(Unhealthy::NoReplica(replicas.iter().map(|r| r.url.clone()).collect()));
        }
        Ok(Health::Remote { backend_model: self.shared.model.clone(), slot_ctx: self.shared.slot_ctx, replicas })
    }
}
