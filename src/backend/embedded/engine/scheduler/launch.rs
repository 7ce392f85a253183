//! Launching: prefilled prompts are forked into sample sequences and P(True) judges as the
//! test-time-compute layer (`Groups`) releases them and slots allow; the verifier model's
//! judgements go to its own thread and come back as verdicts.

use super::{Judging, Scheduler, Slot};
use crate::backend::controller::Controller;
use crate::backend::embedded::engine::sequence::Sequence;
use crate::backend::embedded::engine::verifier::{Ask, Judgement};
use crate::backend::groups::Work;
use crate::backend::{Event, Judge, SamplingParams};

impl Scheduler<'_> {
    /// Fork prefilled prompts into new sequences (samples, then judges) while slots allow.
    pub(super) fn launch(&mut self) {
        for ji in 0..self.jobs.len() {
            loop {
                let job = &mut self.jobs[ji];
                let seq_id = if !job.anchor_busy {
                    job.anchor
                } else if let Some(id) = self.free.lowest_free() {
                    id
                } else {
                    // No slot to fork into, but later jobs may still start on their own anchors
                    // (every admitted job holds one: returning here left them idle).
                    break;
                };
                if !job.prompt_ready() {
                    break;
                }
                let events = &job.job.events;
                let Some(work) = job.groups.next(&mut |e| drop(events.send(e))) else { break };
                let verifier = job.job.spec.vote.as_ref().and_then(|v| v.judge.as_ref()).and_then(|j| match j {
                    Judge::Verifier { messages, question } => Some((messages, question)),
                    Judge::Fork { .. } => None,
                });
                if let (Work::Judge { choice, answer }, Some((messages, question))) = (&work, verifier) {
                    // The verifier model has its own thread and context (and renders its own
                    // template there): no slot needed.
                    let ask = Ask {
                        job: job.key,
                        choice: *choice,
                        messages: messages.clone(),
                        question: question.clone(),
                        answer: answer.clone(),
                    };
                    match &self.verifier {
                        Some(v) => {
                            v.ask(ask);
                            self.asked += 1;
                        }
                        None => {
                            job.send(Event::Judged { choice: ask.choice, answer: ask.answer, score: 0.5, tokens: 0 });
                            job.groups.judged();
                        }
                    }
                    continue;
                }
                if seq_id != self.jobs[ji].anchor {
                    // The fork copies the anchor's whole stream over what this slot retained.
                    self.take_free(seq_id);
                }
                match work {
                    Work::Sample(index) => self.start_seq(ji, seq_id, index),
                    Work::Judge { choice, answer } => self.start_judge(ji, seq_id, choice, answer),
                }
            }
        }
        // Jobs whose last samples were skipped by an early stop (or judged elsewhere) end here.
        while let Some(ji) = self.jobs.iter().position(|j| j.groups.done() && j.groups.running() == 0 && j.prompt_ready()) {
            let job = self.jobs.remove(ji).expect("index is valid");
            self.release_job(job);
        }
    }

    /// Verdicts of the verifier model; waits briefly for one when nothing else ran this step.
    pub(super) fn take_verdicts(&mut self, idle: bool) {
        let Some(v) = &self.verifier else { return };
        if self.asked == 0 {
            return;
        }
        let first = if idle { v.verdicts.recv_timeout(std::time::Duration::from_millis(20)).ok() } else { v.verdicts.try_recv().ok() };
        let verdicts: Vec<Judgement> = first.into_iter().chain(v.verdicts.try_iter()).collect();
        for Judgement { job, choice, answer, score, tokens } in verdicts {
            self.asked -= 1;
            if let Some(ji) = self.job_index(job) {
                self.jobs[ji].send(Event::Judged { choice, answer, score, tokens });
                self.jobs[ji].groups.judged();
                self.retire_if_done(ji);
            }
        }
    }

    /// Fork the prompt into `seq_id`. Slots are separate KV streams: llama.cpp copies the anchor's
    /// whole stream (the prompt is still prefilled once), then the copy is cut back to the prompt.
    pub(super) fn fork(&mut self, ji: usize, seq_id: i32) {
        let job = &mut self.jobs[ji];
        let p = job.job.spec.prompt.len();
        if seq_id == job.anchor {
            job.anchor_busy = true;
        } else if p > 1 {
            self.ctx.copy_kv_cache_seq(job.anchor, seq_id, None, None).expect("no positions given");
            let _ = self.ctx.clear_kv_cache_seq(Some(seq_id as u32), Some((p - 1) as u32), None);
        }
    }

    pub(super) fn start_judge(&mut self, ji: usize, seq_id: i32, choice: usize, answer: String) {
        self.fork(ji, seq_id);
        let job = &self.jobs[ji];
        let spec = &job.job.spec;
        let text = spec.vote.as_ref().and_then(|v| v.judge.as_ref()).and_then(|j| j.fork_text(&answer)).unwrap_or_default();
        let p = spec.prompt.len();
        // A judge reads one token's logits: the request's grammar does not apply to it.
        let sampling = SamplingParams { grammar: None, ..spec.sampling.clone() };
        let mut seq = Sequence::new(
            seq_id,
            (p - 1) as i32,
            spec.prompt[p - 1].into(),
            &sampling,
            self.model,
            Controller::new(0, None, vec![], 1, None),
        );
        let judged = self.model.tokenize(&text, false);
        let tokens = judged.len() as u32;
        seq.input.extend(judged);
        self.slots[seq_id as usize] = Some(Slot { job: job.key, seq, judge: Some(Judging { choice, answer, tokens }) });
    }

    pub(super) fn start_seq(&mut self, ji: usize, seq_id: i32, index: usize) {
        self.fork(ji, seq_id);
        let job = &self.jobs[ji];
        let spec = &job.job.spec;
        let sampling = spec.sampling_of(index);
        let window = spec.vote.as_ref().and_then(|v| v.confidence).map(|c| c.window);
        let ctl = Controller::new(index, job.forcing.as_ref(), sampling.stop.clone(), spec.max_tokens, window);
        let last = *spec.prompt.last().expect("prompts are never empty");
        let mut seq = Sequence::new(seq_id, spec.prompt.len() as i32 - 1, last.into(), &sampling, self.model, ctl);
        if spec.want_logprob && seq.logprobs.is_none() {
            seq.logprobs = Some(0);
        }
        self.slots[seq_id as usize] = Some(Slot { job: job.key, seq, judge: None });
    }
}
