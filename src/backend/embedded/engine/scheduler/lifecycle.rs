//! Ending: sequences and judges leave their slots, a choice whose stop rule is met has its other
//! samples cancelled, and a finished job's anchor keeps its prompt (and a lone answer) in the KV
//! cache for the next request that starts the same way.

use llama_cpp_2::token::LlamaToken;

use super::{ActiveJob, Judging, Scheduler};
use crate::backend::{Event, FinishReason, JobError, Token};

impl Scheduler<'_> {
    /// Take a judge out of its slot and free the slot; returns what it judged.
    pub(super) fn end_judge(&mut self, ji: usize, id: i32) -> Judging {
        let slot = self.slots[id as usize].take().expect("judge slot");
        self.jobs[ji].groups.judged();
        self.release_slot(ji, id, Vec::new());
        slot.judge.expect("judge slot")
    }

    pub(super) fn retire_if_done(&mut self, ji: usize) {
        if self.jobs[ji].groups.done() {
            let job = self.jobs.remove(ji).expect("index is valid");
            self.release_job(job);
        }
    }

    /// Free a finished sequence's cells; the anchor keeps the prompt while the job may still fork,
    /// and the whole output when the job forks nothing (`fed`: what the sequence wrote there).
    pub(super) fn release_slot(&mut self, ji: usize, id: i32, fed: Vec<LlamaToken>) {
        let job = &mut self.jobs[ji];
        if id == job.anchor {
            job.anchor_busy = false;
            if job.job.spec.n == 1 && job.job.spec.vote.is_none() {
                job.tail = fed.into_iter().map(Token::from).collect();
            }
            let keep = (job.job.spec.prompt.len() - 1 + job.tail.len()) as u32;
            let _ = self.ctx.clear_kv_cache_seq(Some(id as u32), Some(keep), None);
        } else {
            let _ = self.ctx.clear_kv_cache_seq(Some(id as u32), None, None);
            self.free.release(id, Vec::new());
        }
    }

    /// End a sequence, report it, and free its cells (the anchor keeps the prompt while the job
    /// may still fork). A choice whose stop rule is now satisfied has its other samples cancelled.
    pub(super) fn finish_seq(&mut self, id: i32, reason: FinishReason) {
        let Some(slot) = self.slots[id as usize].take() else { return };
        let mut seq = slot.seq;
        let Some(ji) = self.job_index(slot.job) else { return };
        let stats = seq.ctl.stats();
        let index = seq.ctl.index;
        let job = &mut self.jobs[ji];
        let events = &job.job.events;
        let stop = job.groups.finished(index, reason, &stats, &mut |e| drop(events.send(e)));
        job.send(Event::Finished { index, reason, stats });
        self.release_slot(ji, id, std::mem::take(&mut seq.fed));
        if let Some(choice) = stop {
            self.cancel_choice(ji, choice);
        }
    }

    /// A choice whose stop rule is met: its running samples end as cancelled, freeing their slots.
    fn cancel_choice(&mut self, ji: usize, choice: usize) {
        let key = self.jobs[ji].key;
        let hit: Vec<i32> = (0..self.slots.len() as i32)
            .filter(|&i| {
                self.slots[i as usize]
                    .as_ref()
                    .is_some_and(|s| s.job == key && s.judge.is_none() && self.jobs[ji].groups.choice_of(s.seq.ctl.index) == choice)
            })
            .collect();
        for i in hit {
            self.finish_seq(i, FinishReason::Cancelled);
        }
    }

    /// Verdicts the handlers handed in on finished samples (`StopRule::Verified`): a choice they
    /// settle stops now, its running samples cancelled. True when any came.
    pub(super) fn take_checks(&mut self) -> bool {
        let mut any = false;
        for ji in 0..self.jobs.len() {
            for v in self.jobs[ji].job.handle.take_verdicts() {
                any = true;
                let job = &mut self.jobs[ji];
                let events = &job.job.events;
                if let Some(choice) = job.groups.verdict(v, &mut |e| drop(events.send(e))) {
                    self.cancel_choice(ji, choice);
                }
            }
        }
        any
    }

    /// A free slot goes to a job: what its stream held is now the job's to overwrite or keep.
    pub(super) fn take_free(&mut self, id: i32) {
        self.free.take(id);
    }

    /// The anchor's slot becomes free and keeps the prefilled prompt, and the output of a job
    /// that forked nothing, for later prompts that start the same way (a chat's next turn).
    pub(super) fn release_job(&mut self, job: ActiveJob) {
        let prompt = &job.job.spec.prompt;
        let mut kept = Vec::new();
        if !job.failed {
            kept.extend_from_slice(&prompt[..job.prefilled.min(prompt.len() - 1)]);
            kept.extend_from_slice(&job.tail);
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(job.anchor as u32), Some(kept.len() as u32), None);
        if !job.anchor_busy {
            self.free.release(job.anchor, kept);
        }
    }

    pub(super) fn fail_job(&mut self, key: u64, message: String) {
        let Some(ji) = self.job_index(key) else { return };
        let job = &mut self.jobs[ji];
        job.failed = true;
        job.send(Event::Error(JobError::Failed(message)));
        job.job.handle.cancel();
        self.reap_cancelled();
    }
}
