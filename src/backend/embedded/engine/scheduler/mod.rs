//! The decode loop. Each step: drop cancelled jobs, fork prefilled prompts into new sequences
//! (`launch.rs`), take new jobs while slots are free (`admission.rs`), then put every live
//! sequence's next token(s) and as much pending prefill as fits into ONE batch, decode it, and
//! sample; a sample's controller step may end its sequence (`lifecycle.rs`).

mod admission;
mod launch;
mod lifecycle;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::batch::{pack, Take, Want};
use super::crash::{self, Activity};
use super::logits::{best_non_eog, logprob_entry, top_logprobs};
use super::sequence::Sequence;
use super::slots::Slots;
use super::verifier::VerifierModel;
use super::{EngineStats, Job, Model};
use crate::backend::controller::JobForcing;
use crate::backend::groups::Groups;
use crate::backend::{Bell, Event, Token, JUDGE_NO, JUDGE_YES};
use crate::metrics::metrics;

pub(crate) struct LoopConfig {
    pub n_ctx: u32,
    pub parallel: u32,
    pub n_batch: u32,
    pub threads: i32,
    pub cache: crate::config::CacheType,
    /// `cpu_wait = "auto"`: serial or parallel, decided off this thread, applied before each decode.
    pub governor: Option<Arc<super::threads::Governor>>,
}

struct ActiveJob {
    job: Job,
    key: u64,
    /// Sequence id that holds the prompt's cells; forks copy from it.
    anchor: i32,
    /// Whether a running sequence currently uses the anchor's id.
    anchor_busy: bool,
    /// Prompt tokens [0, prefilled) are in the cache; all but the last one are prefilled there,
    /// the last is fed to each sequence so every fork gets its own logits.
    prefilled: usize,
    prefill_started: Option<Instant>,
    /// Prompt tokens copied from another job's anchor instead of prefilled.
    cached: usize,
    /// Which samples and judges may start, and when a choice has enough.
    groups: Groups,
    /// What the anchor's stream holds after the prompt's first p-1 tokens once its only
    /// sequence has finished (that last prompt token, then the output): kept for a next turn.
    tail: Vec<Token>,
    /// A decode failed: the stream holds nothing worth keeping.
    failed: bool,
    forcing: Option<JobForcing>,
}

impl ActiveJob {
    fn prompt_ready(&self) -> bool {
        self.prefilled + 1 >= self.job.spec.prompt.len()
    }
    fn send(&self, e: Event) {
        let _ = self.job.events.send(e);
    }
    fn abandoned(&self) -> bool {
        self.job.events.is_closed() || self.job.handle.is_cancelled()
    }
}

struct Slot {
    job: u64,
    seq: Sequence,
    /// A P(True) judge (teacher-forced, one read of the logits) instead of a generating sample.
    judge: Option<Judging>,
}

/// What a judge's slot judges, and how many tokens it reads after the prompt.
struct Judging {
    choice: usize,
    answer: String,
    tokens: u32,
}

struct Scheduler<'m> {
    model: &'m Model,
    ctx: LlamaContext<'m>,
    cfg: LoopConfig,
    /// `cpu_wait = "auto"`: serial or parallel, applied before each decode.
    threads: super::threads::Decoding,
    /// Free KV streams, and the prompt tokens each still holds.
    free: Slots,
    slots: Vec<Option<Slot>>,
    jobs: VecDeque<ActiveJob>,
    /// A job taken from the queue that waits for a slot.
    waiting: Option<Job>,
    verifier: Option<VerifierModel>,
    /// Verifier judgements asked and not answered yet.
    asked: usize,
    /// Token ids of the judge's "Yes" and "No" in the serving model.
    judge_words: (Vec<usize>, Vec<usize>),
    next_key: u64,
    stats: Arc<EngineStats>,
}

pub(crate) fn run(
    model: Arc<Model>,
    verifier_model: Option<Arc<Model>>,
    cfg: LoopConfig,
    mut rx: mpsc::Receiver<Job>,
    bell: Arc<Bell>,
    stats: Arc<EngineStats>,
    ready: std::sync::mpsc::Sender<anyhow::Result<u32>>,
) {
    let params = Model::context_params(cfg.n_ctx, cfg.parallel, cfg.n_batch, cfg.threads, cfg.cache);
    let mut ctx = match model.model.new_context(super::model::backend_ref(), params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("creating llama.cpp context: {e}")));
            return;
        }
    };
    if let Err(e) = warm_up(&model, &mut ctx, cfg.n_batch) {
        let _ = ready.send(Err(e.context("warm-up decode failed: this build's llama.cpp kernels cannot run here")));
        return;
    }
    let n_ctx = ctx.n_ctx();
    let verifier = match verifier_model {
        Some(vm) => match VerifierModel::start(vm, n_ctx / cfg.parallel, cfg.n_batch, cfg.threads, cfg.cache, cfg.governor.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
        None => None,
    };
    let _ = ready.send(Ok(n_ctx));
    let parallel = cfg.parallel as i32;
    let threads = super::threads::Decoding::new(cfg.governor.clone());
    let mut s = Scheduler {
        model: &model,
        ctx,
        cfg: LoopConfig { n_ctx, ..cfg },
        threads,
        free: Slots::new(parallel),
        slots: (0..parallel).map(|_| None).collect(),
        jobs: VecDeque::new(),
        waiting: None,
        verifier,
        asked: 0,
        judge_words: (model.token_ids(&JUDGE_YES), model.token_ids(&JUDGE_NO)),
        next_key: 0,
        stats,
    };
    let mut batch = LlamaBatch::new(s.cfg.n_batch as usize, parallel);
    loop {
        if s.jobs.is_empty() && s.waiting.is_none() {
            match rx.blocking_recv() {
                Some(job) => s.waiting = Some(job),
                None => break,
            }
        }
        s.reap_cancelled();
        let checked = s.take_checks();
        // Running jobs' waiting samples get freed slots before new jobs are admitted.
        s.launch();
        s.intake(&mut rx);
        let decoded = s.step(&mut batch);
        s.take_verdicts(!decoded);
        if !decoded && !checked && s.asked == 0 && s.waiting.is_none() {
            // Only jobs waiting for their samples' verdicts (the sandbox runs the next wave's
            // precondition): wait for a verdict, a cancel or a new job to ring. The timeout only
            // bounds how late a client that left unseen is noticed.
            bell.wait(std::time::Duration::from_millis(50));
        }
        s.publish(&rx);
        if s.stats.panic_requested.load(Ordering::Relaxed) {
            panic!("engine failure requested by the test hook");
        }
    }
    tracing::info!("engine stopped");
}

/// Before the server reports ready, one short prefill and one single-token decode through the
/// context the loop uses (llama-server warms up the same way): kernels that cannot run on this CPU
/// fail here, at start, with a log line, never on a user's first request. The cache is left empty.
fn warm_up(model: &Model, ctx: &mut LlamaContext, n_batch: u32) -> anyhow::Result<()> {
    let mut tokens = model.tokenize("Hello! What is 17 + 25?", true);
    tokens.truncate(n_batch as usize);
    anyhow::ensure!(tokens.len() >= 2, "the model tokenized the warm-up text to {} tokens", tokens.len());
    let (prompt, last) = tokens.split_at(tokens.len() - 1);
    let mut batch = LlamaBatch::new(n_batch as usize, 1);
    for (pos, t) in prompt.iter().enumerate() {
        batch.add(*t, pos as i32, &[0], false)?;
    }
    // Several tokens at once take the matrix-matrix kernels; one token, the matrix-vector ones.
    crash::running(Activity::WarmUp, prompt.len(), 1);
    ctx.decode(&mut batch)?;
    batch.clear();
    batch.add(last[0], prompt.len() as i32, &[0], true)?;
    ctx.decode(&mut batch)?;
    crash::idle();
    anyhow::ensure!(ctx.get_logits_ith(0).iter().all(|x| x.is_finite()), "the warm-up decode gave non-finite logits");
    ctx.clear_kv_cache();
    Ok(())
}

impl<'m> Scheduler<'m> {
    fn publish(&self, rx: &mpsc::Receiver<Job>) {
        let running = self.slots.iter().filter(|s| s.is_some()).count() as u64;
        let cells: usize = self.jobs.iter().map(|j| j.prefilled).sum::<usize>()
            + self.slots.iter().flatten().map(|s| (s.seq.ctl.generated as usize) + 1).sum::<usize>();
        self.stats.active_sequences.store(running, Ordering::Relaxed);
        self.stats.kv_cells_used.store(cells as u64, Ordering::Relaxed);
        let m = metrics();
        m.active_sequences.set(running as i64);
        m.kv_cells_used.set(cells as i64);
        m.queue_depth.set((rx.len() + usize::from(self.waiting.is_some())) as i64);
    }

    fn job_index(&self, key: u64) -> Option<usize> {
        self.jobs.iter().position(|j| j.key == key)
    }

    /// Build one batch: every live sequence's next token(s), then as much pending prefill as fits.
    /// Mixing them is safe for determinism: with a Q8_0 cache, llama.cpp's flash attention takes
    /// the same per-row kernel whatever the batch holds, and matrix products are per element.
    /// Returns whether anything was decoded.
    fn step(&mut self, batch: &mut LlamaBatch) -> bool {
        batch.clear();
        let live = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, s)| s.as_ref().map(|s| Want::Decode { id: id as i32, pending: s.seq.input.len() }));
        let prefills = self.jobs.iter().enumerate().filter(|(_, j)| !j.prompt_ready()).map(|(ji, j)| Want::Prefill {
            anchor: j.anchor,
            job: ji,
            remaining: j.job.spec.prompt.len() - 1 - j.prefilled,
        });
        let plan = pack(live.chain(prefills).collect(), self.cfg.n_batch as usize);
        // (seq id, batch index of its logits)
        let mut outputs: Vec<(i32, i32)> = Vec::new();
        let mut prefilling = Vec::new();
        for take in plan {
            match take {
                Take::Decode { id, tokens, logits } => {
                    let Some(slot) = self.slots[id as usize].as_mut() else { continue };
                    let seq = &mut slot.seq;
                    for (k, t) in seq.input.drain(..tokens).enumerate() {
                        batch.add(t, seq.pos, &[seq.seq_id], logits && k + 1 == tokens).expect("packed within the batch");
                        seq.pos += 1;
                        seq.fed.push(t);
                    }
                    if logits {
                        outputs.push((id, batch.n_tokens() - 1));
                    }
                }
                Take::Prefill { job: ji, tokens } => {
                    let job = &mut self.jobs[ji];
                    if job.prefill_started.is_none() {
                        job.prefill_started = Some(Instant::now());
                        job.send(Event::Admitted);
                    }
                    let end = job.prefilled + tokens;
                    for (pos, t) in job.job.spec.prompt[job.prefilled..end].iter().enumerate() {
                        batch.add((*t).into(), (job.prefilled + pos) as i32, &[job.anchor], false).expect("packed within the batch");
                    }
                    prefilling.push((job.key, end));
                }
            }
        }
        if batch.n_tokens() == 0 {
            // Only prompts of one token are waiting: they need no prefill.
            self.mark_prefilled(&prefilling);
            return false;
        }
        self.threads.apply();
        crash::running(Activity::Decode, batch.n_tokens() as usize, outputs.len() + prefilling.len());
        if self.stats.signal_requested.load(Ordering::Relaxed) {
            crash::fault_for_test();
        }
        let decoded = self.ctx.decode(batch);
        crash::idle();
        if let Err(e) = decoded {
            tracing::error!(error = %e, "decode failed; failing the sequences in this batch");
            let keys: Vec<u64> = outputs
                .iter()
                .filter_map(|(id, _)| self.slots[*id as usize].as_ref().map(|s| s.job))
                .chain(prefilling.iter().map(|(k, _)| *k))
                .collect();
            for key in keys {
                self.fail_job(key, format!("decode failed: {e}"));
            }
            return true;
        }
        metrics().decode_steps.inc();
        self.mark_prefilled(&prefilling);
        for (id, idx) in outputs {
            self.sample(id, idx);
        }
        true
    }

    fn mark_prefilled(&mut self, done: &[(u64, usize)]) {
        for (key, end) in done {
            if let Some(ji) = self.job_index(*key) {
                let job = &mut self.jobs[ji];
                job.prefilled = *end;
                if job.prompt_ready() {
                    let ms = job.prefill_started.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
                    job.send(Event::Prefilled { prompt_tokens: job.job.spec.prompt.len(), cached_tokens: job.cached, prompt_ms: ms });
                }
            }
        }
        // Jobs whose prompt is a single token are ready without a prefill.
        for job in self.jobs.iter_mut() {
            if job.prefill_started.is_none() && job.prompt_ready() {
                job.prefill_started = Some(Instant::now());
                job.send(Event::Admitted);
                job.send(Event::Prefilled { prompt_tokens: job.job.spec.prompt.len(), cached_tokens: job.cached, prompt_ms: 0.0 });
            }
        }
    }

    fn sample(&mut self, id: i32, idx: i32) {
        let Some(key) = self.slots[id as usize].as_ref().map(|s| s.job) else { return };
        let Some(ji) = self.job_index(key) else { return };
        if self.slots[id as usize].as_ref().is_some_and(|s| s.judge.is_some()) {
            self.finish_judge(ji, id, idx);
            return;
        }
        let seq = &mut self.slots[id as usize].as_mut().expect("checked above").seq;
        let mut token = seq.sample(&self.ctx, idx);
        metrics().generated_tokens.inc();
        let mut eog = self.model.is_eog(token);
        if eog && seq.ctl.must_answer() {
            // Thinking was closed (maybe by force): the model must still answer, so take the most
            // likely token that does not end generation.
            token = best_non_eog(self.model, self.ctx.get_logits_ith(idx));
            eog = false;
        }
        let job = &self.jobs[ji];
        let logits = self.ctx.get_logits_ith(idx);
        let lp = seq.logprobs.map(|top| logprob_entry(self.model, logits, token, top, seq.ctl.thinking()));
        let confidence = job.job.spec.vote.as_ref().and_then(|v| v.confidence);
        let top = confidence.map(|c| top_logprobs(logits, c.top_k).1).unwrap_or_default();
        seq.ctl.observe(lp.as_ref().map(|e| e.logprob), top.into_iter().map(|t| t.1));
        let bytes = if eog { Vec::new() } else { self.model.piece(token) };
        let step = seq.ctl.on_token(&bytes, eog, job.forcing.as_ref(), job.groups.prune_threshold(seq.ctl.index));
        // Carry the controller's decisions out in the cache and the next batch.
        if step.rollback > 0 {
            let from = seq.pos - step.rollback as i32;
            let _ = self.ctx.clear_kv_cache_seq(Some(seq.seq_id as u32), Some(from as u32), None);
            seq.pos = from;
            seq.fed.truncate(seq.fed.len() - step.rollback);
        }
        if step.feed_sampled {
            seq.input.push(token);
        }
        if let (Some(inj), Some(f)) = (step.inject, job.forcing.as_ref()) {
            seq.input.extend(f.forced(inj).tokens.iter().map(|&t| LlamaToken::from(t)));
        }
        let logprobs = match lp {
            Some(e) if job.job.spec.sampling.logprobs.is_some() && !eog => {
                seq.pending_logprobs.push(e);
                if step.answer.is_empty() && step.thinking.is_empty() && step.finish.is_none() {
                    Vec::new()
                } else {
                    std::mem::take(&mut seq.pending_logprobs)
                }
            }
            _ => Vec::new(),
        };
        if !step.thinking.is_empty() || !step.answer.is_empty() || !logprobs.is_empty() {
            job.send(Event::Delta { index: seq.ctl.index, thinking: step.thinking, answer: step.answer, logprobs });
        }
        if let Some(reason) = step.finish {
            self.finish_seq(id, reason);
            self.retire_if_done(ji);
        }
    }

    fn finish_judge(&mut self, ji: usize, id: i32, idx: i32) {
        let score = crate::reasoning::verify::p_true(self.ctx.get_logits_ith(idx), &self.judge_words.0, &self.judge_words.1);
        let Judging { choice, answer, tokens } = self.end_judge(ji, id);
        self.jobs[ji].send(Event::Judged { choice, answer, score, tokens });
        self.retire_if_done(ji);
    }
}
