//! One job on the remote backend: its sample group driven by the shared group state machine,
//! one task per sequence, judges, and the replica the job runs on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;

use super::client::CallError;
use super::replicas::{Lease, Replica};
use super::{sequence, Shared};
use crate::backend::controller::JobForcing;
use crate::backend::groups::{Groups, Work};
use crate::backend::{Event, FinishReason, JobError, JobHandle, JobSpec, SeqStats, JUDGE_NO, JUDGE_YES};
use crate::metrics::metrics;

/// One job on the remote backend, shared by its sequence tasks.
pub(super) struct JobCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) spec: Arc<JobSpec>,
    pub(super) forcing: Option<JobForcing>,
    pub(super) events: mpsc::UnboundedSender<Event>,
    pub(super) handle: JobHandle,
    /// The replica the job runs on (it moves when that one fails).
    pub(super) lease: Mutex<Lease>,
    /// The online filter's threshold per choice, once calibrated.
    pub(super) thresholds: Mutex<Vec<Option<f64>>>,
    pub(super) prefilled: AtomicBool,
    /// Wakes the job when its first token came (the engine holds the prompt: more samples may go).
    pub(super) first_token: tokio::sync::Notify,
    /// Milliseconds to the job's first token (the engine's prefill, as seen from here).
    pub(super) prompt_ms: Mutex<f64>,
    pub(super) started: Instant,
}

impl JobCtx {
    pub(super) fn send(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub(super) fn abandoned(&self) -> bool {
        self.events.is_closed() || self.handle.is_cancelled()
    }

    pub(super) fn replica(&self) -> Arc<Replica> {
        self.lease.lock().map(|l| l.replica.clone()).unwrap_or_else(|p| p.into_inner().replica.clone())
    }

    /// The replica failed this job: mark it down and move the job to another one, if any.
    /// Err: none is up.
    pub(super) fn relocate(&self, failed: &Replica, why: &str) -> Result<(), NoReplica> {
        failed.mark_down(why);
        let mut lease = self.lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if lease.replica.url != failed.url {
            return Ok(()); // another sequence moved the job already
        }
        match self.shared.replicas.lease(&self.spec.text, std::slice::from_ref(&failed.url)) {
            Some(next) => {
                tracing::warn!(id = %self.spec.id, from = %failed.url, to = %next.replica.url, "moving a request to another replica");
                *lease = next;
                Ok(())
            }
            None => Err(NoReplica(why.to_string())),
        }
    }

    pub(super) fn prune_threshold(&self, choice: usize) -> Option<f64> {
        self.thresholds.lock().ok().and_then(|t| t.get(choice).copied().flatten())
    }

    /// The first token of the job: the engine has the prompt.
    pub(super) fn mark_prefilled(&self) {
        if !self.prefilled.swap(true, Ordering::Relaxed) {
            let prompt_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            if let Ok(mut ms) = self.prompt_ms.lock() {
                *ms = prompt_ms;
            }
            self.send(Event::Prefilled { prompt_tokens: self.spec.prompt.len(), cached_tokens: 0, prompt_ms });
            self.first_token.notify_one();
        }
    }

    /// The engine's usage said how much of the prompt its cache held (asked of the first
    /// sample's first request only: every later one continues a prompt the engine has).
    pub(super) fn report_cached(&self, cached_tokens: u64) {
        let prompt = self.spec.prompt.len() as u64;
        let cached = cached_tokens.min(prompt);
        // What the engine prefilled for this request, as the embedded engine counts its own.
        metrics().prompt_tokens.inc_by(prompt - cached);
        metrics().prompt_cached_tokens.inc_by(cached);
        let prompt_ms = self.prompt_ms.lock().map(|m| *m).unwrap_or(0.0);
        self.send(Event::Prefilled { prompt_tokens: prompt as usize, cached_tokens: cached as usize, prompt_ms });
    }
}

enum Done {
    Sample { index: usize, result: Result<(FinishReason, SeqStats), JobError> },
    Judged { choice: usize, answer: String, score: Result<(f64, u32), JobError> },
}

/// Every replica is down: the job has nowhere to go (with the failure that took the last one).
#[derive(Debug, thiserror::Error)]
#[error("no backend replica is up (last failure: {0})")]
pub(super) struct NoReplica(String);

// Long on purpose: the job's one event loop (waves of samples, early stops, judging, failover)
// over state its branches share.
pub(super) async fn run_job(shared: Arc<Shared>, spec: JobSpec, events: mpsc::UnboundedSender<Event>, handle: JobHandle, lease: Lease) {
    let spec = Arc::new(spec);
    let forcing = spec.forcing.clone();
    // The engine's own queue is out of sight: from here the prompt is on its way to it.
    let _ = events.send(Event::Admitted);
    let mut groups = Groups::new(&spec);
    let choices = spec.n.div_ceil(spec.group());
    let job = Arc::new(JobCtx {
        shared,
        spec: spec.clone(),
        forcing,
        events,
        handle,
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
            _ = job.handle.arrived() => {
                // Verdicts on finished samples (`StopRule::Verified`): a settled choice stops.
                for v in job.handle.take_verdicts() {
                    if let Some(choice) = groups.verdict(v, &mut emit) {
                        for (i, flag) in &running {
                            if groups.choice_of(*i) == choice {
                                flag.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
                continue;
            }
        };
        let Some(done) = done else { break };
        match done {
            Done::Sample { index, result } => {
                running.retain(|(i, _)| *i != index);
                let (reason, stats) = match result {
                    Ok(r) => r,
                    Err(e) => {
                        if !failed {
                            failed = true;
                            emit(Event::Error(e));
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
                    Ok((score, tokens)) => emit(Event::Judged { choice, answer, score, tokens }),
                    Err(e) if !failed => {
                        failed = true;
                        emit(Event::Error(e));
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// P(True) of a proposed answer: the judging text after the prompt, one token, its top log-probs;
/// and the prompt tokens the engine counted beyond the request's own.
async fn judge(job: &Arc<JobCtx>, answer: &str) -> Result<(f64, u32), JobError> {
    let suffix = job
        .spec
        .vote
        .as_ref()
        .and_then(|v| v.judge.as_ref())
        .and_then(|j| j.fork_text(answer))
        .ok_or_else(|| JobError::Failed("the remote backend judges with the serving model only".into()))?;
    let body = json!({
        "model": job.shared.model, "prompt": format!("{}{suffix}", job.spec.text), "max_tokens": 1,
        "temperature": 0.0, "logprobs": 20, "stream": false,
    });
    for _ in 0..sequence::BUSY_RETRIES {
        let replica = job.replica();
        match job.shared.client.post(&replica.url, "/v1/completions", &body).await {
            Ok(v) => {
                // A whole answer's choice reads as a stream chunk does, in either log-prob format.
                let top = super::client::parse_chunk(&v).tokens.into_iter().next().map(|t| t.top).unwrap_or_default();
                let read = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0).saturating_sub(job.spec.prompt.len() as u64);
                return Ok((crate::reasoning::verify::p_true_from_top(&top, &JUDGE_YES, &JUDGE_NO), read as u32));
            }
            Err(CallError::Replica(m)) => job.relocate(&replica, &m).map_err(|e| JobError::Failed(e.to_string()))?,
            Err(CallError::Busy) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CallError::Busy.into())
}
