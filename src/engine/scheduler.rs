//! The decode loop. Each step: take new jobs while slots are free, drop cancelled sequences, fork
//! prefilled prompts into new sequences, then put every live sequence's next token(s) and as much
//! pending prefill as fits into ONE batch, decode it, and sample.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::sequence::{FinishReason, Sequence};
use super::logits::{best_non_eog, logprob_entry, top_logprobs};
use super::{EngineStats, Event, Job, Judge, Model, SamplingParams, SeqStats};
use crate::reasoning::chat::Message;
use crate::metrics::metrics;
use crate::reasoning::forcing::{Forcer, ForcingSpec, Injection, Phase};
use crate::reasoning::confidence::{token_confidence, ChainConfidence, OnlineFilter};
use crate::reasoning::plan::effective_max_thinking;

pub(crate) struct LoopConfig {
    pub n_ctx: u32,
    pub parallel: u32,
    pub n_batch: u32,
    pub threads: i32,
}

/// Tokens of the texts the forcer may inject.
struct Injections {
    cutoff: Vec<LlamaToken>,
    close: Vec<LlamaToken>,
    wait: Vec<LlamaToken>,
    wait_text: String,
    /// Shown in the thinking when the budget cuts it, as llama-server does, so a client can
    /// tell a forced cut from a natural end.
    budget_message: String,
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
    /// Sample indices not launched yet.
    pending: VecDeque<usize>,
    running: usize,
    finished: usize,
    /// Per choice (self-consistency): running samples, extracted answers, stopped early.
    choices: Vec<ChoiceState>,
    /// What the anchor's stream holds after the prompt's first p-1 tokens once its only
    /// sequence has finished (that last prompt token, then the output): kept for a next turn.
    tail: Vec<LlamaToken>,
    /// A decode failed: the stream holds nothing worth keeping.
    failed: bool,
    /// Proposed answers waiting for a P(True) judge: (choice, answer).
    judge_queue: VecDeque<(usize, String)>,
    judges_running: usize,
    judging_started: bool,
    forcing: Option<(ForcingSpec, Injections)>,
}

impl ActiveJob {
    fn prompt_ready(&self) -> bool {
        self.prefilled + 1 >= self.job.spec.prompt.len()
    }
    fn done(&self) -> bool {
        let judging = self.job.spec.vote.as_ref().is_some_and(|v| v.judge.is_some());
        self.finished >= self.job.spec.n
            && (!judging || self.judging_started)
            && self.judge_queue.is_empty()
            && self.judges_running == 0
    }
    fn group(&self) -> usize {
        self.job.spec.vote.as_ref().map_or(1, |v| v.group)
    }
    fn send(&self, e: Event) {
        let _ = self.job.events.send(e);
    }
    fn abandoned(&self) -> bool {
        self.job.events.is_closed() || self.job.cancel.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct ChoiceState {
    running: usize,
    /// Samples started (waves are counted in these).
    launched: usize,
    /// Answers of the chains that finished (not cancelled or pruned), and their confidence scores.
    answers: Vec<Option<String>>,
    weights: Vec<f64>,
    stopped: bool,
    /// Online confidence filter (`prune`): calibrated by the first wave.
    filter: Option<OnlineFilter>,
}

struct Slot {
    job: u64,
    seq: Sequence,
    /// A P(True) judge (teacher-forced, one read of the logits) instead of a generating sample.
    judge: Option<(usize, String)>,
}

enum Work {
    Sample(usize),
    Judge,
}

struct Scheduler<'m> {
    model: &'m Model,
    ctx: LlamaContext<'m>,
    cfg: LoopConfig,
    /// Free slot ids, lowest first: llama.cpp splits a multi-stream batch into one pass per run of
    /// consecutive sequence ids, so the live ids are kept packed at the bottom.
    free: BTreeSet<i32>,
    /// Prompt tokens a free slot's stream still holds from its last job (as llama-server's
    /// cache_prompt): the next prompt sharing a prefix reuses them instead of prefilling.
    retained: Vec<Vec<LlamaToken>>,
    slots: Vec<Option<Slot>>,
    jobs: VecDeque<ActiveJob>,
    /// A job taken from the queue that waits for a slot.
    waiting: Option<Job>,
    verifier: Option<VerifierCtx<'m>>,
    next_key: u64,
    stats: Arc<EngineStats>,
}

/// The verifier model's own context (one sequence), used synchronously between decode steps.
struct VerifierCtx<'v> {
    model: &'v Model,
    ctx: LlamaContext<'v>,
    yes: Vec<usize>,
    no: Vec<usize>,
    n_batch: usize,
}

impl VerifierCtx<'_> {
    /// P(True) of one judging conversation: prefill it in chunks, read the last logits.
    fn score(&mut self, conversation: &[Message]) -> Option<f64> {
        let text = self.model.render_chat(conversation, &[]).ok()?;
        let tokens = self.model.tokenize(&text, true);
        if tokens.is_empty() || tokens.len() >= self.ctx.n_ctx() as usize {
            return None;
        }
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            batch.clear();
            let last_chunk = (c + 1) * self.n_batch >= tokens.len();
            for (k, t) in chunk.iter().enumerate() {
                batch.add(*t, (c * self.n_batch + k) as i32, &[0], last_chunk && k + 1 == chunk.len()).ok()?;
            }
            self.ctx.decode(&mut batch).ok()?;
        }
        let score = crate::reasoning::verify::p_true(self.ctx.get_logits_ith(batch.n_tokens() - 1), &self.yes, &self.no);
        self.ctx.clear_kv_cache();
        Some(score)
    }
}

pub(crate) fn run(
    model: Arc<Model>,
    verifier_model: Option<Arc<Model>>,
    cfg: LoopConfig,
    mut rx: mpsc::Receiver<Job>,
    stats: Arc<EngineStats>,
    ready: std::sync::mpsc::Sender<anyhow::Result<u32>>,
) {
    let params = Model::context_params(cfg.n_ctx, cfg.parallel, cfg.n_batch, cfg.threads);
    let ctx = match model.model.new_context(super::model::backend_ref(), params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!("creating llama.cpp context: {e}")));
            return;
        }
    };
    let n_ctx = ctx.n_ctx();
    let verifier = match verifier_model.as_deref() {
        Some(vm) => {
            let params = Model::context_params(n_ctx / cfg.parallel, 1, cfg.n_batch, cfg.threads);
            match vm.model.new_context(super::model::backend_ref(), params) {
                Ok(vctx) => Some(VerifierCtx {
                    model: vm,
                    ctx: vctx,
                    yes: vm.token_ids(&super::JUDGE_YES),
                    no: vm.token_ids(&super::JUDGE_NO),
                    n_batch: cfg.n_batch as usize,
                }),
                Err(e) => {
                    let _ = ready.send(Err(anyhow::anyhow!("creating the verifier context: {e}")));
                    return;
                }
            }
        }
        None => None,
    };
    let _ = ready.send(Ok(n_ctx));
    let parallel = cfg.parallel as i32;
    let mut s = Scheduler {
        model: &model,
        ctx,
        cfg: LoopConfig { n_ctx, ..cfg },
        free: (0..parallel).collect(),
        retained: (0..parallel).map(|_| Vec::new()).collect(),
        slots: (0..parallel).map(|_| None).collect(),
        jobs: VecDeque::new(),
        waiting: None,
        verifier,
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
        // Running jobs' waiting samples get freed slots before new jobs are admitted.
        s.launch();
        s.intake(&mut rx);
        s.step(&mut batch);
        s.publish(&rx);
        if s.stats.panic_requested.load(Ordering::Relaxed) {
            panic!("engine failure requested by the test hook");
        }
    }
    tracing::info!("engine stopped");
}

impl<'m> Scheduler<'m> {
    fn publish(&self, rx: &mpsc::Receiver<Job>) {
        let running = self.slots.iter().filter(|s| s.is_some()).count() as u64;
        let cells: usize = self.jobs.iter().map(|j| j.prefilled).sum::<usize>()
            + self.slots.iter().flatten().map(|s| (s.seq.generated as usize) + 1).sum::<usize>();
        self.stats.active_sequences.store(running, Ordering::Relaxed);
        self.stats.kv_cells_used.store(cells as u64, Ordering::Relaxed);
        let m = metrics();
        m.active_sequences.set(running as i64);
        m.kv_cells_used.set(cells as i64);
        m.queue_depth.set((rx.len() + usize::from(self.waiting.is_some())) as i64);
    }

    /// Admit queued jobs while a slot is free. Each slot has its own KV stream, sized so that the
    /// API's cap (prompt + max_tokens + slack) always fits.
    fn intake(&mut self, rx: &mut mpsc::Receiver<Job>) {
        loop {
            if self.waiting.is_none() {
                match rx.try_recv() {
                    Ok(j) => self.waiting = Some(j),
                    Err(_) => return,
                }
            }
            let job = self.waiting.take().expect("just filled");
            if job.events.is_closed() || job.cancel.load(Ordering::Relaxed) {
                continue;
            }
            if self.free.is_empty() {
                self.waiting = Some(job);
                return;
            }
            self.admit(job);
        }
    }

    fn admit(&mut self, job: Job) {
        let anchor = *self.free.first().expect("checked free slot");
        let key = self.next_key;
        self.next_key += 1;
        let prompt_len = job.spec.prompt.len() as u32;
        // Before the slot is taken: what it retains may be the best prefix.
        let cached = self.reuse_prefix(&job.spec.prompt, anchor);
        self.take_free(anchor);
        metrics().prompt_tokens.inc_by((prompt_len as usize - cached) as u64);
        metrics().prompt_cached_tokens.inc_by(cached as u64);
        let forcing = job.spec.forcing.as_ref().map(|f| {
            let tok = |s: &str| self.model.tokenize(s, false);
            let inj = Injections {
                cutoff: tok(&format!("{}{}{}", f.budget_message, f.close_text, f.answer_cue)),
                close: tok(&format!("{}{}", f.close_text, f.answer_cue)),
                wait: tok(&f.wait_text),
                wait_text: f.wait_text.clone(),
                budget_message: f.budget_message.clone(),
            };
            let max = effective_max_thinking(f.max_thinking, job.spec.max_tokens, f.answer_reserve, inj.cutoff.len() as u32);
            let spec = ForcingSpec {
                thinking: max > 0,
                min_thinking: f.min_thinking.min(max),
                max_thinking: max,
                close_marker: f.close_marker.clone(),
                wait_tokens: inj.wait.len() as u32,
                max_extensions: f.max_extensions,
                answer_cap: u32::MAX,
            };
            (spec, inj)
        });
        tracing::debug!(id = %job.spec.id, prompt_tokens = prompt_len, queued_ms = job.enqueued.elapsed().as_millis() as u64, "admitted");
        let n = job.spec.n;
        let groups = n.div_ceil(job.spec.vote.as_ref().map_or(1, |v| v.group.max(1)));
        self.jobs.push_back(ActiveJob {
            pending: (0..n).collect(),
            choices: (0..groups).map(|_| ChoiceState::default()).collect(),
            tail: Vec::new(),
            failed: false,
            judge_queue: VecDeque::new(),
            judges_running: 0,
            judging_started: false,
            job,
            key,
            anchor,
            anchor_busy: false,
            prefilled: cached,
            cached,
            prefill_started: None,
            running: 0,
            finished: 0,
            forcing,
        });
    }

    /// Prefix cache over live jobs' anchors and free slots' retained prompts: put the longest
    /// prompt prefix one of them holds into the free slot `anchor`, so only the rest is prefilled.
    /// Returns the tokens reused.
    fn reuse_prefix(&mut self, prompt: &[LlamaToken], anchor: i32) -> usize {
        let target = prompt.len() - 1;
        let live = self.jobs.iter().map(|o| (&o.job.spec.prompt[..o.prefilled.min(o.job.spec.prompt.len() - 1)], o.anchor));
        let kept = self.free.iter().map(|&id| (&self.retained[id as usize][..], id));
        // Ties go to the anchor itself (no copy).
        let best = live
            .chain(kept)
            .map(|(held, src)| (prompt[..target].iter().zip(held).take_while(|(a, b)| a == b).count(), src == anchor, src))
            .max();
        let common = match best {
            Some((common, _, src)) if common > 0 => {
                if src != anchor {
                    // Streams are copied whole (over whatever the slot retained), then cut back.
                    self.ctx.copy_kv_cache_seq(src, anchor, None, None).expect("no positions given");
                }
                common
            }
            _ => 0,
        };
        let _ = self.ctx.clear_kv_cache_seq(Some(anchor as u32), Some(common as u32), None);
        common
    }

    fn reap_cancelled(&mut self) {
        let cancelled: Vec<u64> = self.jobs.iter().filter(|j| j.abandoned()).map(|j| j.key).collect();
        for key in cancelled {
            for id in 0..self.slots.len() {
                if self.slots[id].as_ref().is_some_and(|s| s.job == key && s.judge.is_some()) {
                    if let Some(ji) = self.job_index(key) {
                        self.end_judge(ji, id as i32);
                    }
                } else if self.slots[id].as_ref().is_some_and(|s| s.job == key) {
                    self.finish_seq(id as i32, FinishReason::Cancelled);
                }
            }
            if let Some(pos) = self.jobs.iter().position(|j| j.key == key) {
                let job = self.jobs.remove(pos).expect("position is valid");
                self.release_job(job);
            }
        }
    }

    /// Fork prefilled prompts into new sequences (samples, then judges) while slots allow.
    fn launch(&mut self) {
        for ji in 0..self.jobs.len() {
            loop {
                let job = &self.jobs[ji];
                let seq_id = if !job.anchor_busy {
                    job.anchor
                } else if let Some(&id) = self.free.first() {
                    id
                } else {
                    // No slot to fork into, but later jobs may still start on their own anchors
                    // (every admitted job holds one: returning here left them idle).
                    break;
                };
                let Some(work) = self.next_work(ji) else { break };
                if seq_id != self.jobs[ji].anchor {
                    // The fork copies the anchor's whole stream over what this slot retained.
                    self.take_free(seq_id);
                }
                match work {
                    Work::Sample(index) => self.start_seq(ji, seq_id, index),
                    Work::Judge => self.start_judge(ji, seq_id),
                }
            }
        }
        // Jobs whose last samples were skipped by an early stop end here.
        while let Some(ji) = self.jobs.iter().position(|j| j.done() && j.running == 0 && j.prompt_ready()) {
            let job = self.jobs.remove(ji).expect("index is valid");
            self.release_job(job);
        }
    }

    /// What job `ji` may start now, honouring waves and early stops.
    fn next_work(&mut self, ji: usize) -> Option<Work> {
        let job = &mut self.jobs[ji];
        if !job.prompt_ready() {
            return None;
        }
        let group = job.group();
        let wave = job.job.spec.vote.as_ref().and_then(|v| v.adaptive).map(|a| a.wave);
        while let Some(&index) = job.pending.front() {
            let c = &job.choices[index / group];
            if c.stopped {
                // Skipped by an early stop: report it so the handler's count completes.
                job.pending.pop_front();
                job.finished += 1;
                job.send(Event::Finished { index, reason: FinishReason::Cancelled, stats: SeqStats::default() });
                continue;
            }
            // A new wave starts only when the previous one is over.
            if let Some(w) = wave {
                if c.running > 0 && c.launched.is_multiple_of(w) {
                    return None;
                }
            }
            job.pending.pop_front();
            return Some(Work::Sample(index));
        }
        if job.finished >= job.job.spec.n && job.job.spec.vote.as_ref().is_some_and(|v| v.judge.is_some()) {
            if !job.judging_started {
                job.judging_started = true;
                for (ci, c) in job.choices.iter().enumerate() {
                    let mut seen: Vec<&String> = Vec::new();
                    for a in c.answers.iter().flatten() {
                        if !seen.contains(&a) {
                            seen.push(a);
                            job.judge_queue.push_back((ci, a.clone()));
                        }
                    }
                }
            }
            if !job.judge_queue.is_empty() {
                if let Some(Judge::Verifier { conversation }) = job.job.spec.vote.as_ref().and_then(|v| v.judge.as_ref()) {
                    // The verifier model has its own context: judge every answer now.
                    while let Some((choice, answer)) = job.judge_queue.pop_front() {
                        let score = self.verifier.as_mut().and_then(|v| v.score(&conversation(&answer))).unwrap_or(0.5);
                        job.send(Event::Judged { choice, answer, score });
                    }
                    return None;
                }
                return Some(Work::Judge);
            }
        }
        None
    }

    /// Fork the prompt into `seq_id`. Slots are separate KV streams: llama.cpp copies the anchor's
    /// whole stream (the prompt is still prefilled once), then the copy is cut back to the prompt.
    fn fork(&mut self, ji: usize, seq_id: i32) {
        let job = &mut self.jobs[ji];
        let p = job.job.spec.prompt.len();
        if seq_id == job.anchor {
            job.anchor_busy = true;
        } else if p > 1 {
            self.ctx.copy_kv_cache_seq(job.anchor, seq_id, None, None).expect("no positions given");
            let _ = self.ctx.clear_kv_cache_seq(Some(seq_id as u32), Some((p - 1) as u32), None);
        }
    }

    fn start_judge(&mut self, ji: usize, seq_id: i32) {
        self.fork(ji, seq_id);
        let job = &mut self.jobs[ji];
        let (choice, answer) = job.judge_queue.pop_front().expect("checked non-empty");
        job.judges_running += 1;
        let spec = &job.job.spec;
        let Some(Judge::Fork { suffix, .. }) = spec.vote.as_ref().and_then(|v| v.judge.as_ref()) else { unreachable!("fork judges only") };
        let p = spec.prompt.len();
        // A judge reads one token's logits: the request's grammar does not apply to it.
        let sampling = SamplingParams { grammar: None, ..spec.sampling.clone() };
        let mut seq = Sequence::new(0, seq_id, (p - 1) as i32, spec.prompt[p - 1], &sampling, self.model, Forcer::new(ForcingSpec::answer_only(1)), 1);
        seq.input.extend(self.model.tokenize(&suffix(&answer), false));
        self.slots[seq_id as usize] = Some(Slot { job: job.key, seq, judge: Some((choice, answer)) });
    }

    fn start_seq(&mut self, ji: usize, seq_id: i32, index: usize) {
        self.fork(ji, seq_id);
        let job = &mut self.jobs[ji];
        let p = job.job.spec.prompt.len();
        job.running += 1;
        let group = job.group();
        job.choices[index / group].running += 1;
        job.choices[index / group].launched += 1;
        let spec = &job.job.spec;
        let mut sampling = spec.sampling.clone();
        sampling.seed = sampling.seed.wrapping_add(index as u32);
        let forcer = match &job.forcing {
            Some((f, _)) => {
                // The close marker ends thinking once; a model that writes it again in the answer
                // has started over, so the answer stops there.
                if f.thinking {
                    sampling.stop.push(f.close_marker.clone());
                }
                Forcer::new(f.clone())
            }
            None => Forcer::new(ForcingSpec::answer_only(u32::MAX)),
        };
        let last = *spec.prompt.last().expect("prompts are never empty");
        let mut seq = Sequence::new(index, seq_id, (p - 1) as i32, last, &sampling, self.model, forcer, spec.max_tokens);
        if spec.want_logprob && seq.logprobs.is_none() {
            seq.logprobs = Some(0);
        }
        if let Some(c) = spec.vote.as_ref().and_then(|v| v.confidence) {
            seq.confidence = Some(ChainConfidence::new(c.window));
        }
        self.slots[seq_id as usize] = Some(Slot { job: job.key, seq, judge: None });
    }

    fn job_index(&self, key: u64) -> Option<usize> {
        self.jobs.iter().position(|j| j.key == key)
    }

    /// Build one batch: every live sequence's next token(s), then as much pending prefill as fits.
    /// Mixing them is safe for determinism: with a Q8_0 cache, llama.cpp's flash attention takes
    /// the same per-row kernel whatever the batch holds, and matrix products are per element.
    fn step(&mut self, batch: &mut LlamaBatch) {
        batch.clear();
        let cap = self.cfg.n_batch as usize;
        // Tokens go in by increasing sequence id (see `free`): decode inputs of live sequences and
        // prompt chunks of jobs still prefilling (whose anchor id no sequence is using).
        let mut order: Vec<(i32, Option<usize>)> = (0..self.slots.len() as i32).filter(|id| self.slots[*id as usize].is_some()).map(|id| (id, None)).collect();
        for (ji, job) in self.jobs.iter().enumerate() {
            if job.prefilled + 1 < job.job.spec.prompt.len() {
                order.push((job.anchor, Some(ji)));
            }
        }
        order.sort_unstable();
        // llama.cpp gives every sequence of a multi-stream pass the same token count, so forced
        // text is fed one token per step while other sequences decode (one pass per step instead
        // of one per extra token), and all at once when the sequence decodes alone.
        let feeding = self.slots.iter().flatten().filter(|s| !s.seq.input.is_empty()).count();
        // (seq id, batch index of its logits)
        let mut outputs: Vec<(i32, i32)> = Vec::new();
        let mut prefilling = Vec::new();
        for (id, prefill) in order {
            let room = cap - batch.n_tokens() as usize;
            match prefill {
                None => {
                    let Some(slot) = self.slots[id as usize].as_mut() else { continue };
                    let seq = &mut slot.seq;
                    let take = if feeding > 1 { 1 } else { seq.input.len() };
                    if seq.input.is_empty() || take > room {
                        continue;
                    }
                    let complete = take == seq.input.len();
                    for (k, t) in seq.input.drain(..take).enumerate() {
                        batch.add(t, seq.pos, &[seq.seq_id], complete && k + 1 == take).expect("batch has room");
                        seq.pos += 1;
                        seq.fed.push(t);
                    }
                    if complete {
                        outputs.push((id, batch.n_tokens() - 1));
                    }
                }
                Some(ji) => {
                    let job = &mut self.jobs[ji];
                    let target = job.job.spec.prompt.len() - 1;
                    if room == 0 {
                        continue;
                    }
                    job.prefill_started.get_or_insert_with(Instant::now);
                    let end = (job.prefilled + room).min(target);
                    for (pos, t) in job.job.spec.prompt[job.prefilled..end].iter().enumerate() {
                        batch.add(*t, (job.prefilled + pos) as i32, &[job.anchor], false).expect("batch has room");
                    }
                    prefilling.push((job.key, end));
                }
            }
        }
        if batch.n_tokens() == 0 {
            // Only prompts of one token are waiting: they need no prefill.
            self.mark_prefilled(&prefilling);
            return;
        }
        if let Err(e) = self.ctx.decode(batch) {
            tracing::error!(error = %e, "decode failed; failing the sequences in this batch");
            let keys: Vec<u64> = outputs
                .iter()
                .filter_map(|(id, _)| self.slots[*id as usize].as_ref().map(|s| s.job))
                .chain(prefilling.iter().map(|(k, _)| *k))
                .collect();
            for key in keys {
                self.fail_job(key, format!("decode failed: {e}"));
            }
            return;
        }
        metrics().decode_steps.inc();
        self.mark_prefilled(&prefilling);
        for (id, idx) in outputs {
            self.sample(id, idx);
        }
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
        seq.sampled += 1;
        seq.first_token_at.get_or_insert_with(Instant::now);
        let mut eog = self.model.is_eog(token);
        if eog && seq.forcer.thinking_tokens() > 0 && seq.forcer.phase() == Phase::Answer && seq.answer_text.trim().is_empty() {
            // Thinking was closed (maybe by force): the model must still answer, so take the most
            // likely token that does not end generation.
            token = best_non_eog(self.model, self.ctx.get_logits_ith(idx));
            eog = false;
        }
        let job = &self.jobs[ji];
        if let (Some(tracker), Some(spec)) = (seq.confidence.as_mut(), job.job.spec.vote.as_ref().and_then(|v| v.confidence)) {
            let (_, top) = top_logprobs(self.ctx.get_logits_ith(idx), spec.top_k);
            tracker.push(token_confidence(top.into_iter().map(|t| t.1)));
        }
        let choice = seq.index / job.group();
        let prune_below = job.choices[choice].filter.as_ref().and_then(OnlineFilter::threshold);
        let thinking_token = seq.forcer.phase() == Phase::Thinking;
        let lp = seq.logprobs.map(|top| logprob_entry(self.model, self.ctx.get_logits_ith(idx), token, top, thinking_token));
        if let Some(e) = &lp {
            seq.sum_logprob += e.logprob as f64;
        }
        let bytes = if eog { Vec::new() } else { self.model.piece(token) };
        let delta = seq.on_token(&bytes, eog);
        seq.generated += u32::from(delta.feed_sampled);

        let mut thinking = delta.thinking;
        let mut finish = delta.finish;
        if delta.rollback > 0 {
            let from = seq.pos - delta.rollback as i32;
            let _ = self.ctx.clear_kv_cache_seq(Some(seq.seq_id as u32), Some(from as u32), None);
            seq.pos = from;
            seq.generated -= delta.rollback as u32;
            seq.fed.truncate(seq.fed.len() - delta.rollback as usize);
        }
        if delta.feed_sampled {
            seq.input.push(token);
        }
        if let (Some(inj), Some((_, tokens))) = (delta.inject, self.jobs[ji].forcing.as_ref()) {
            let forced = match inj {
                Injection::Cutoff => &tokens.cutoff,
                Injection::Close => &tokens.close,
                Injection::Wait => &tokens.wait,
            };
            let shown = match inj {
                Injection::Wait => tokens.wait_text.as_str(),
                Injection::Cutoff => tokens.budget_message.as_str(),
                Injection::Close => "",
            };
            thinking.push_str(shown);
            seq.thinking_text.push_str(shown);
            seq.input.extend_from_slice(forced);
            seq.generated += forced.len() as u32;
        }
        let mut answer = delta.answer;
        if finish.is_none() && seq.generated >= seq.max_tokens {
            answer.push_str(&seq.flush());
            finish = Some(FinishReason::Length);
        }
        if finish.is_none() && prune_below.is_some_and(|t| seq.confidence.as_ref().is_some_and(|c| c.below(t))) {
            finish = Some(FinishReason::Pruned);
        }
        let logprobs = match lp {
            Some(e) if seq.logprobs.is_some() && self.jobs[ji].job.spec.sampling.logprobs.is_some() && !eog => {
                seq.pending_logprobs.push(e);
                if answer.is_empty() && thinking.is_empty() && finish.is_none() {
                    Vec::new()
                } else {
                    std::mem::take(&mut seq.pending_logprobs)
                }
            }
            _ => Vec::new(),
        };
        if !thinking.is_empty() || !answer.is_empty() || !logprobs.is_empty() {
            let index = seq.index;
            self.jobs[ji].send(Event::Delta { index, thinking, answer, logprobs });
        }
        if let Some(reason) = finish {
            self.finish_seq(id, reason);
            self.retire_if_done(ji);
        }
    }

    fn finish_judge(&mut self, ji: usize, id: i32, idx: i32) {
        let Some(Judge::Fork { yes, no, .. }) = self.jobs[ji].job.spec.vote.as_ref().and_then(|v| v.judge.as_ref()) else { unreachable!("fork judges only") };
        let score = crate::reasoning::verify::p_true(self.ctx.get_logits_ith(idx), yes, no);
        let (choice, answer) = self.end_judge(ji, id);
        self.jobs[ji].send(Event::Judged { choice, answer, score });
        self.retire_if_done(ji);
    }

    /// Take a judge out of its slot and free the slot; returns what it judged.
    fn end_judge(&mut self, ji: usize, id: i32) -> (usize, String) {
        let slot = self.slots[id as usize].take().expect("judge slot");
        self.jobs[ji].judges_running -= 1;
        self.release_slot(ji, id, Vec::new());
        slot.judge.expect("judge slot")
    }

    fn retire_if_done(&mut self, ji: usize) {
        if self.jobs[ji].done() {
            let job = self.jobs.remove(ji).expect("index is valid");
            self.release_job(job);
        }
    }

    /// Free a finished sequence's cells; the anchor keeps the prompt while the job may still fork,
    /// and the whole output when the job forks nothing (`fed`: what the sequence wrote there).
    fn release_slot(&mut self, ji: usize, id: i32, fed: Vec<LlamaToken>) {
        let job = &mut self.jobs[ji];
        if id == job.anchor {
            job.anchor_busy = false;
            if job.job.spec.n == 1 && job.job.spec.vote.is_none() {
                job.tail = fed;
            }
            let keep = (job.job.spec.prompt.len() - 1 + job.tail.len()) as u32;
            let _ = self.ctx.clear_kv_cache_seq(Some(id as u32), Some(keep), None);
        } else {
            let _ = self.ctx.clear_kv_cache_seq(Some(id as u32), None, None);
            self.free.insert(id);
        }
    }

    /// End a sequence, report it, and free its cells (the anchor keeps the prompt while the job
    /// may still fork).
    fn finish_seq(&mut self, id: i32, reason: FinishReason) {
        let Some(slot) = self.slots[id as usize].take() else { return };
        let mut seq = slot.seq;
        let Some(ji) = self.job_index(slot.job) else { return };
        let now = Instant::now();
        let first = seq.first_token_at.unwrap_or(now);
        let think_end = seq.thinking_ended_at.unwrap_or(if seq.forcer.thinking_tokens() > 0 { now } else { first });
        let stats = SeqStats {
            completion_tokens: seq.generated,
            thinking_tokens: seq.forcer.thinking_tokens(),
            answer_tokens: seq.generated.saturating_sub(seq.forcer.thinking_tokens()),
            extensions: seq.forcer.extensions(),
            cut_off: seq.forcer.cut_off(),
            mean_logprob: seq.mean_logprob(),
            thinking_ms: (think_end - first).as_secs_f64() * 1000.0,
            answer_ms: (now - think_end).as_secs_f64() * 1000.0,
            thinking: std::mem::take(&mut seq.thinking_text),
            answer: std::mem::take(&mut seq.answer_text),
            confidence: seq.confidence.as_ref().map(|c| c.scores()),
        };
        let job = &mut self.jobs[ji];
        job.running -= 1;
        job.finished += 1;
        let choice = seq.index / job.group();
        job.choices[choice].running -= 1;
        let adaptive = job.job.spec.vote.as_ref().and_then(|v| v.adaptive);
        let counted = !matches!(reason, FinishReason::Cancelled | FinishReason::Pruned);
        if let (true, Some(vote)) = (counted, job.job.spec.vote.as_ref()) {
            let answer = crate::reasoning::extract::final_answer(&stats.answer, &stats.thinking);
            let weight = match (stats.confidence, vote.confidence) {
                (Some(scores), Some(spec)) => scores.get(spec.score),
                _ => 0.0,
            };
            let c = &mut job.choices[choice];
            c.answers.push(answer);
            c.weights.push(weight);
            // The first wave's chains calibrate the online filter for the ones after it.
            if let Some((keep, wave)) = adaptive.and_then(|a| a.prune_keep.map(|k| (k, a.wave.min(vote.group)))) {
                let filter = c.filter.get_or_insert_with(|| OnlineFilter::new(keep, wave));
                if let Some(threshold) = filter.observe(weight) {
                    job.send(Event::Calibrated { choice, threshold });
                }
            }
        }
        job.send(Event::Finished { index: seq.index, reason, stats });
        self.release_slot(ji, id, std::mem::take(&mut seq.fed));
        if let Some(a) = adaptive {
            let c = &self.jobs[ji].choices[choice];
            if !c.stopped && reason != FinishReason::Cancelled && a.rule.should_stop(&c.answers, &c.weights, c.running) {
                self.stop_choice(ji, choice);
            }
        }
    }

    /// The Beta rule is satisfied: cancel the choice's running samples (freeing their slots);
    /// the ones not launched are skipped by `next_work`.
    fn stop_choice(&mut self, ji: usize, choice: usize) {
        let job = &mut self.jobs[ji];
        job.choices[choice].stopped = true;
        job.send(Event::Stopped { choice });
        let (key, group) = (job.key, job.group());
        for id in 0..self.slots.len() {
            let hit = self.slots[id].as_ref().is_some_and(|s| s.job == key && s.judge.is_none() && s.seq.index / group == choice);
            if hit {
                self.finish_seq(id as i32, FinishReason::Cancelled);
            }
        }
    }


    /// A free slot goes to a job: what its stream held is now the job's to overwrite or keep.
    fn take_free(&mut self, id: i32) {
        self.free.remove(&id);
        self.retained[id as usize].clear();
    }

    /// The anchor's slot becomes free and keeps the prefilled prompt, and the output of a job
    /// that forked nothing, for later prompts that start the same way (a chat's next turn).
    fn release_job(&mut self, job: ActiveJob) {
        let prompt = &job.job.spec.prompt;
        let mut kept = Vec::new();
        if !job.failed {
            kept.extend_from_slice(&prompt[..job.prefilled.min(prompt.len() - 1)]);
            kept.extend_from_slice(&job.tail);
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(job.anchor as u32), Some(kept.len() as u32), None);
        if !job.anchor_busy {
            self.free.insert(job.anchor);
            self.retained[job.anchor as usize] = kept;
        }
    }

    fn fail_job(&mut self, key: u64, message: String) {
        let Some(ji) = self.job_index(key) else { return };
        let job = &mut self.jobs[ji];
        job.failed = true;
        job.send(Event::Error { message });
        job.job.cancel.store(true, Ordering::Relaxed);
        self.reap_cancelled();
    }
}
