//! Test-time compute over one job's sequences, the same for every backend: which sample may start
//! now (waves), when a choice has enough (its stop rule), the online confidence filter's
//! calibration, and which proposed answers go to the P(True) judge. Decisions come from
//! `reasoning/`; a backend asks `next` for work, reports each finished sequence, and carries out
//! what comes back (start a sample, run a judge, cancel a stopped choice's samples).

use std::collections::VecDeque;

use super::{Adaptive, Event, FinishReason, JobSpec, SampleVerdict, SeqStats, StopRule};
use crate::reasoning::confidence::{ChainScore, OnlineFilter};
use crate::reasoning::extract::final_answer;
use crate::reasoning::vote::{verified_gives_up, verified_stop};

/// What a backend may start for a job.
#[derive(Debug, PartialEq)]
pub enum Work {
    /// Sample `index` of the job.
    Sample(usize),
    /// Judge a proposed answer of a choice.
    Judge { choice: usize, answer: String },
}

#[derive(Default)]
struct Choice {
    running: usize,
    /// Samples started (waves are counted in these).
    launched: usize,
    /// Answers of the chains that finished (not cancelled or pruned), and their confidence scores.
    answers: Vec<Option<String>>,
    weights: Vec<f64>,
    stopped: bool,
    /// `StopRule::Verified`: finished chains whose verdict has not come yet (the next wave waits
    /// for them), and the verdicts that came: (passed, behaviour key).
    awaiting: usize,
    verdicts: Vec<(bool, u64)>,
    /// Online confidence filter (`prune`): calibrated by the first wave.
    filter: Option<OnlineFilter>,
}

pub struct Groups {
    n: usize,
    group: usize,
    adaptive: Option<Adaptive>,
    judging: bool,
    score: Option<ChainScore>,
    /// Sample indices not started yet.
    pending: VecDeque<usize>,
    choices: Vec<Choice>,
    running: usize,
    finished: usize,
    judge_queue: VecDeque<(usize, String)>,
    judges_running: usize,
    judging_started: bool,
}

impl Groups {
    pub fn new(spec: &JobSpec) -> Self {
        let group = spec.group();
        let vote = spec.vote.as_ref();
        Self {
            n: spec.n,
            group,
            adaptive: vote.and_then(|v| v.adaptive),
            judging: vote.is_some_and(|v| v.judge.is_some()),
            score: vote.and_then(|v| v.confidence).map(|c| c.score),
            pending: (0..spec.n).collect(),
            choices: (0..spec.n.div_ceil(group)).map(|_| Choice::default()).collect(),
            running: 0,
            finished: 0,
            judge_queue: VecDeque::new(),
            judges_running: 0,
            judging_started: false,
        }
    }

    pub fn choice_of(&self, index: usize) -> usize {
        index / self.group
    }

    /// Sequences running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Every sample finished and every judge answered.
    pub fn done(&self) -> bool {
        self.finished >= self.n && (!self.judging || self.judging_started) && self.judge_queue.is_empty() && self.judges_running == 0
    }

    /// The work the job may start now, honouring waves and early stops (`None`: wait for a
    /// running sequence to finish). Samples an early stop skipped are reported through `emit`.
    pub fn next(&mut self, emit: &mut impl FnMut(Event)) -> Option<Work> {
        while let Some(&index) = self.pending.front() {
            let c = &mut self.choices[index / self.group];
            if c.stopped {
                // Skipped: reported so the handler's count completes.
                self.pending.pop_front();
                self.finished += 1;
                emit(Event::Finished { index, reason: FinishReason::Cancelled, stats: SeqStats::default() });
                continue;
            }
            // A new wave starts only when the previous one is over (and checked, when verdicts decide).
            if self.adaptive.is_some_and(|a| c.running + c.awaiting > 0 && a.wave_ends(c.launched)) {
                return None;
            }
            self.pending.pop_front();
            c.running += 1;
            c.launched += 1;
            self.running += 1;
            return Some(Work::Sample(index));
        }
        if self.finished < self.n || !self.judging {
            return None;
        }
        if !self.judging_started {
            self.judging_started = true;
            for (ci, c) in self.choices.iter().enumerate() {
                let mut seen: Vec<&String> = Vec::new();
                for a in c.answers.iter().flatten() {
                    if !seen.contains(&a) {
                        seen.push(a);
                        self.judge_queue.push_back((ci, a.clone()));
                    }
                }
            }
        }
        let (choice, answer) = self.judge_queue.pop_front()?;
        self.judges_running += 1;
        Some(Work::Judge { choice, answer })
    }

    /// The threshold below which sample `index`'s chain is pruned, once its choice calibrated one.
    pub fn prune_threshold(&self, index: usize) -> Option<f64> {
        self.choices[index / self.group].filter.as_ref().and_then(OnlineFilter::threshold)
    }

    /// A sample ended. Returns the choice to stop when its rule is now satisfied: the backend
    /// cancels that choice's running samples (`running_in`), the rest are skipped by `next`.
    pub fn finished(&mut self, index: usize, reason: FinishReason, stats: &SeqStats, emit: &mut impl FnMut(Event)) -> Option<usize> {
        self.running -= 1;
        self.finished += 1;
        let ci = index / self.group;
        let c = &mut self.choices[ci];
        c.running -= 1;
        let counted = reason.counted();
        let verified = self.verified().is_some();
        let c = &mut self.choices[ci];
        if counted && verified {
            c.awaiting += 1;
        }
        if counted {
            c.answers.push(final_answer(&stats.answer, &stats.thinking));
            let weight = match (stats.confidence, self.score) {
                (Some(scores), Some(which)) => scores.get(which),
                _ => 0.0,
            };
            c.weights.push(weight);
            // The first wave's chains calibrate the online filter for the ones after it.
            if let Some((keep, wave)) = self.adaptive.and_then(|a| a.prune_keep.map(|k| (k, a.wave.min(self.group)))) {
                let filter = c.filter.get_or_insert_with(|| OnlineFilter::new(keep, wave));
                if let Some(threshold) = filter.observe(weight) {
                    emit(Event::Calibrated { choice: ci, threshold });
                }
            }
        }
        let a = self.adaptive?;
        if c.stopped || reason == FinishReason::Cancelled || !a.rule.should_stop(&c.answers, &c.weights, c.running) {
            return None;
        }
        c.stopped = true;
        emit(Event::Stopped { choice: ci });
        Some(ci)
    }

    /// The agreement and give-up `StopRule::Verified` asks for, when the job's verdicts decide
    /// its stops.
    fn verified(&self) -> Option<(usize, Option<usize>)> {
        match self.adaptive?.rule {
            StopRule::Verified { agree, give_up } => Some((agree, give_up)),
            _ => None,
        }
    }

    /// A finished sample's verdict came. Returns the choice to stop when its rule is now met (the
    /// backend cancels its running samples, as for `finished`).
    pub fn verdict(&mut self, v: SampleVerdict, emit: &mut impl FnMut(Event)) -> Option<usize> {
        let (agree, give_up) = self.verified()?;
        let ci = v.index / self.group;
        let size = self.n.saturating_sub(ci * self.group).min(self.group);
        let c = self.choices.get_mut(ci)?;
        c.awaiting = c.awaiting.saturating_sub(1);
        c.verdicts.push((v.passed, v.behaviour));
        let settled = c.running + c.awaiting == 0;
        // Giving up only matters while samples are left to start.
        let gives_up = c.launched < size && verified_gives_up(c.verdicts.len(), settled, give_up);
        if c.stopped || !(verified_stop(&c.verdicts, agree) || gives_up) {
            return None;
        }
        c.stopped = true;
        emit(Event::Stopped { choice: ci });
        Some(ci)
    }

    /// A judge answered (or was cancelled).
    pub fn judged(&mut self) {
        self.judges_running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Judge, SamplingParams, StopRule, Token, VotePlan};

    fn spec(n: usize, group: usize, adaptive: Option<Adaptive>, judge: bool) -> JobSpec {
        let judge = judge.then(|| Judge::Fork { before: String::new(), after: String::new() });
        JobSpec {
            id: "t".into(),
            text: "q".into(),
            prompt: vec![Token(1)],
            n,
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                top_k: 40,
                min_p: 0.0,
                seed: 0,
                presence_penalty: 0.0,
                frequency_penalty: 0.0,
                repeat_penalty: 1.0,
                stop: vec![],
                logprobs: None,
                logit_bias: vec![],
                grammar: None,
                json_schema: None,
            },
            max_tokens: 8,
            forcing: None,
            want_logprob: false,
            vote: Some(VotePlan { group, adaptive, judge, confidence: None }),
        }
    }

    fn answer(a: &str) -> SeqStats {
        SeqStats { answer: format!("The answer is {a}."), ..Default::default() }
    }

    #[test]
    fn waves_wait_and_a_unanimous_wave_skips_the_rest() {
        let adaptive = Adaptive { wave: 2, greedy_first: false, rule: StopRule::Unanimous { wave: 2 }, prune_keep: None };
        let mut g = Groups::new(&spec(4, 4, Some(adaptive), false));
        let mut events = Vec::new();
        let mut emit = |e: Event| events.push(e);
        assert_eq!(g.next(&mut emit), Some(Work::Sample(0)));
        assert_eq!(g.next(&mut emit), Some(Work::Sample(1)));
        // The second wave waits for the first.
        assert_eq!(g.next(&mut emit), None);
        assert_eq!(g.finished(0, FinishReason::Stop, &answer("7"), &mut emit), None);
        assert_eq!(g.next(&mut emit), None);
        assert_eq!(g.finished(1, FinishReason::Stop, &answer("7"), &mut emit), Some(0));
        // Samples 2 and 3 are skipped, reported as cancelled.
        assert_eq!(g.next(&mut emit), None);
        assert!(g.done());
        let skipped = events.iter().filter(|e| matches!(e, Event::Finished { reason: FinishReason::Cancelled, .. })).count();
        assert_eq!(skipped, 2);
        assert!(events.iter().any(|e| matches!(e, Event::Stopped { choice: 0 })));
    }

    #[test]
    fn verdicts_gate_the_next_wave_and_a_passing_program_stops_the_choice() {
        let adaptive = Adaptive { wave: 2, greedy_first: false, rule: StopRule::Verified { agree: 1, give_up: None }, prune_keep: None };
        let mut g = Groups::new(&spec(6, 6, Some(adaptive), false));
        let mut events = Vec::new();
        let mut emit = |e: Event| events.push(e);
        let v = |index, passed| SampleVerdict { index, passed, behaviour: 9 };
        assert_eq!(g.next(&mut emit), Some(Work::Sample(0)));
        assert_eq!(g.next(&mut emit), Some(Work::Sample(1)));
        assert_eq!(g.finished(0, FinishReason::Stop, &answer("a"), &mut emit), None);
        assert_eq!(g.finished(1, FinishReason::Stop, &answer("b"), &mut emit), None);
        // Both finished, but their programs are not checked yet: the next wave waits.
        assert_eq!(g.next(&mut emit), None);
        assert_eq!(g.verdict(v(0, false), &mut emit), None);
        assert_eq!(g.next(&mut emit), None);
        assert_eq!(g.verdict(v(1, false), &mut emit), None);
        assert_eq!(g.next(&mut emit), Some(Work::Sample(2)));
        assert_eq!(g.next(&mut emit), Some(Work::Sample(3)));
        // Sample 2 passes while 3 still decodes: the choice stops (the backend cancels 3).
        assert_eq!(g.finished(2, FinishReason::Stop, &answer("c"), &mut emit), None);
        assert_eq!(g.verdict(v(2, true), &mut emit), Some(0));
        assert_eq!(g.finished(3, FinishReason::Cancelled, &SeqStats::default(), &mut emit), None);
        // 4 and 5 never start.
        assert_eq!(g.next(&mut emit), None);
        assert!(g.done());
        let skipped = events.iter().filter(|e| matches!(e, Event::Finished { reason: FinishReason::Cancelled, .. })).count();
        assert_eq!(skipped, 2);
    }

    #[test]
    fn a_choice_gives_up_once_enough_programs_failed() {
        // 8 samples, the greedy one first, waves of 2, giving up after 5 failed programs.
        let rule = StopRule::Verified { agree: 1, give_up: Some(5) };
        let adaptive = Adaptive { wave: 2, greedy_first: true, rule, prune_keep: None };
        let mut g = Groups::new(&spec(8, 8, Some(adaptive), false));
        let mut events = Vec::new();
        let mut emit = |e: Event| events.push(e);
        let v = |index, passed| SampleVerdict { index, passed, behaviour: 9 };
        let fail = |g: &mut Groups, wave: &[usize], emit: &mut dyn FnMut(Event)| {
            let mut emit = |e: Event| emit(e);
            for &i in wave {
                assert_eq!(g.next(&mut emit), Some(Work::Sample(i)));
            }
            assert_eq!(g.next(&mut emit), None);
            let mut stopped = None;
            for &i in wave {
                assert_eq!(g.finished(i, FinishReason::Stop, &answer("x"), &mut emit), None);
                stopped = stopped.or(g.verdict(v(i, false), &mut emit));
            }
            stopped
        };
        assert_eq!(fail(&mut g, &[0], &mut emit), None);
        assert_eq!(fail(&mut g, &[1, 2], &mut emit), None);
        // The fifth failure settles the second wave: samples 5, 6 and 7 never start.
        assert_eq!(fail(&mut g, &[3, 4], &mut emit), Some(0));
        assert_eq!(g.next(&mut emit), None);
        assert!(g.done());
        let skipped = events.iter().filter(|e| matches!(e, Event::Finished { reason: FinishReason::Cancelled, .. })).count();
        assert_eq!(skipped, 3);
        // A choice whose samples all ran has nothing to give up: its last verdict stops nothing.
        let rule = StopRule::Verified { agree: 1, give_up: Some(2) };
        let adaptive = Adaptive { wave: 2, greedy_first: false, rule, prune_keep: None };
        let mut g = Groups::new(&spec(2, 2, Some(adaptive), false));
        assert_eq!(fail(&mut g, &[0, 1], &mut |_| {}), None);
        assert!(g.done());
    }

    #[test]
    fn a_greedy_first_sample_is_a_wave_of_its_own() {
        let adaptive = Adaptive { wave: 2, greedy_first: true, rule: StopRule::Verified { agree: 1, give_up: None }, prune_keep: None };
        let s = spec(10, 5, Some(adaptive), false);
        // Each choice's first sample decodes greedily, with its own seed like the rest.
        assert_eq!((s.sampling_of(0).temperature, s.sampling_of(5).temperature), (0.0, 0.0));
        assert_eq!((s.sampling_of(1).temperature, s.sampling_of(1).seed), (1.0, 1));
        let mut g = Groups::new(&s);
        let mut emit = |_: Event| {};
        let v = |index, passed| SampleVerdict { index, passed, behaviour: 9 };
        assert_eq!(g.next(&mut emit), Some(Work::Sample(0)));
        // Choice 0's greedy sample is alone in its wave.
        assert_eq!(g.next(&mut emit), None);
        g.finished(0, FinishReason::Stop, &answer("a"), &mut emit);
        assert_eq!(g.verdict(v(0, false), &mut emit), None);
        // Then waves of two.
        assert_eq!(g.next(&mut emit), Some(Work::Sample(1)));
        assert_eq!(g.next(&mut emit), Some(Work::Sample(2)));
        assert_eq!(g.next(&mut emit), None);
        // A greedy program that passes ends its choice before any sample is drawn.
        let mut g = Groups::new(&s);
        assert_eq!(g.next(&mut emit), Some(Work::Sample(0)));
        g.finished(0, FinishReason::Stop, &answer("a"), &mut emit);
        assert_eq!(g.verdict(v(0, true), &mut emit), Some(0));
    }

    #[test]
    fn judges_take_each_distinct_answer_once_after_all_samples() {
        let mut g = Groups::new(&spec(3, 3, None, true));
        let mut emit = |_: Event| {};
        for i in 0..3 {
            assert_eq!(g.next(&mut emit), Some(Work::Sample(i)));
        }
        assert_eq!(g.next(&mut emit), None);
        for (i, a) in ["4", "5", "4"].iter().enumerate() {
            g.finished(i, FinishReason::Stop, &answer(a), &mut emit);
        }
        assert!(!g.done());
        assert_eq!(g.next(&mut emit), Some(Work::Judge { choice: 0, answer: "4".into() }));
        assert_eq!(g.next(&mut emit), Some(Work::Judge { choice: 0, answer: "5".into() }));
        assert_eq!(g.next(&mut emit), None);
        g.judged();
        assert!(!g.done());
        g.judged();
        assert!(g.done());
    }

    #[test]
    fn cancelled_and_pruned_chains_do_not_vote() {
        let adaptive = Adaptive { wave: 1, greedy_first: false, rule: StopRule::Beta(0.95), prune_keep: None };
        let mut g = Groups::new(&spec(2, 2, Some(adaptive), false));
        let mut emit = |_: Event| {};
        assert_eq!(g.next(&mut emit), Some(Work::Sample(0)));
        assert_eq!(g.finished(0, FinishReason::Pruned, &answer("1"), &mut emit), None);
        assert_eq!(g.next(&mut emit), Some(Work::Sample(1)));
        assert_eq!(g.finished(1, FinishReason::Cancelled, &answer("1"), &mut emit), None);
        assert!(g.done());
        assert!(g.choices[0].answers.is_empty());
    }
}
