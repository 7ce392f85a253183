//! Admission: queued jobs take a free slot as their anchor, reusing the longest prompt prefix
//! a slot or a live job holds; abandoned jobs are reaped.

use tokio::sync::mpsc;

use super::{ActiveJob, Scheduler};
use crate::backend::embedded::engine::Job;
use crate::backend::groups::Groups;
use crate::backend::{FinishReason, Token};
use crate::metrics::metrics;

impl Scheduler<'_> {
    /// Admit queued jobs while a slot is free. Each slot has its own KV stream, sized so that the
    /// API's cap (prompt + max_tokens + slack) always fits.
    pub(super) fn intake(&mut self, rx: &mut mpsc::Receiver<Job>) {
        loop {
            if self.waiting.is_none() {
                match rx.try_recv() {
                    Ok(j) => self.waiting = Some(j),
                    Err(_) => return,
                }
            }
            let job = self.waiting.take().expect("just filled");
            if job.events.is_closed() || job.handle.is_cancelled() {
                continue;
            }
            if self.free.lowest_free().is_none() {
                self.waiting = Some(job);
                return;
            }
            self.admit(job);
        }
    }

    pub(super) fn admit(&mut self, job: Job) {
        let Some(anchor) = self.free.lowest_free() else { return };
        let key = self.next_key;
        self.next_key += 1;
        let prompt_len = job.spec.prompt.len() as u32;
        // Before the slot is taken: what it retains may be the best prefix.
        let cached = self.reuse_prefix(&job.spec.prompt, anchor);
        self.take_free(anchor);
        metrics().prompt_tokens.inc_by((prompt_len as usize - cached) as u64);
        metrics().prompt_cached_tokens.inc_by(cached as u64);
        let forcing = job.spec.forcing.clone();
        tracing::debug!(id = %job.spec.id, prompt_tokens = prompt_len, queued_ms = job.enqueued.elapsed().as_millis() as u64, "admitted");
        self.jobs.push_back(ActiveJob {
            groups: Groups::new(&job.spec),
            tail: Vec::new(),
            failed: false,
            job,
            key,
            anchor,
            anchor_busy: false,
            prefilled: cached,
            cached,
            prefill_started: None,
            forcing,
        });
    }

    /// Prefix cache over live jobs' anchors and free slots' retained prompts: put the longest
    /// prompt prefix one of them holds into the free slot `anchor`, so only the rest is prefilled.
    /// Returns the tokens reused.
    pub(super) fn reuse_prefix(&mut self, prompt: &[Token], anchor: i32) -> usize {
        let live = self.jobs.iter().map(|o| (&o.job.spec.prompt[..o.prefilled.min(o.job.spec.prompt.len() - 1)], o.anchor));
        let common = match self.free.best_prefix(prompt, anchor, live) {
            Some((common, src)) => {
                if src != anchor {
                    // Streams are copied whole (over whatever the slot retained), then cut back.
                    self.ctx.copy_kv_cache_seq(src, anchor, None, None).expect("no positions given");
                }
                common
            }
            None => 0,
        };
        let _ = self.ctx.clear_kv_cache_seq(Some(anchor as u32), Some(common as u32), None);
        common
    }

    pub(super) fn reap_cancelled(&mut self) {
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
}
