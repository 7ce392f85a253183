//! Self-consistency over a sample group: each choice decided from its samples (the gate's
//! `validate::vote_plan` set how they run), with the whole ballot kept for the response's
//! `thinkscale` object.

use super::pipeline::{Collector, Outcome, SampleDetail, VoteDetail, VoteRow};
use crate::backend::FinishReason;
use crate::metrics::metrics;
use crate::reasoning::code::Selection;
use crate::reasoning::confidence::{keep_top, ChainScore};
use crate::reasoning::extract::final_answer;
use crate::reasoning::labels::Effort;
use crate::reasoning::plan::SamplingPlan;
use crate::reasoning::vote::{decide, Ballot, Tally};

use tracing::Instrument;

use super::verify::{checked, Candidate, Checked, Verdict, Verifier};
use std::sync::Arc;
use std::time::Duration;

/// The samples of a choice that vote: finished ones, and with `keep_top` (without prune) only the
/// most confident share of them (with prune it set the online threshold instead, and every
/// surviving chain votes, as in DeepConf online). Returns (finished, voting).
fn voters(col: &Collector, choice: usize, group: usize, plan: &SamplingPlan, score: ChainScore) -> (Vec<usize>, Vec<usize>) {
    let range = choice * group..(choice + 1) * group;
    let finished: Vec<usize> =
        range.filter(|&i| matches!(col.choices[i].finish, Some(FinishReason::Stop | FinishReason::Length))).collect();
    let kept = match plan.keep_top {
        Some(eta) if !plan.prune => {
            let scores: Vec<f64> = finished.iter().map(|&i| confidence(col, i, score).unwrap_or(0.0)).collect();
            finished.iter().zip(keep_top(&scores, eta)).filter(|(_, k)| *k).map(|(i, _)| *i).collect()
        }
        _ => finished.clone(),
    };
    (finished, kept)
}

fn confidence(col: &Collector, i: usize, score: ChainScore) -> Option<f64> {
    col.choices[i].stats.confidence.map(|c| c.get(score))
}

/// A checking verifier's verdicts on a choice's voters (in `voters` order).
struct ChoiceCheck<'a> {
    voters: &'a [usize],
    checked: &'a Checked,
}

impl ChoiceCheck<'_> {
    fn verdict(&self, i: usize) -> Option<&Verdict> {
        self.voters.iter().position(|&v| v == i).and_then(|k| self.checked.verdicts.get(k))
    }
}

// Long on purpose: the vote of one choice in its order (voters, verifier scores, tally, the
// chosen sample, the ballot shown), each step reading the previous ones.
fn decide_choice(
    col: &Collector,
    choice: usize,
    group: usize,
    plan: &SamplingPlan,
    score: ChainScore,
    check: Option<ChoiceCheck>,
    answers: &[Option<String>],
) -> Outcome {
    let range = choice * group..(choice + 1) * group;
    let mut ballots = Vec::new();
    let mut samples = Vec::new();
    let mut members = Vec::new();
    let mut pruned = 0;
    let (finished, kept) = voters(col, choice, group, plan, score);
    let confidence = |i: usize| confidence(col, i, score);
    for i in range {
        let c = &col.choices[i];
        // An adaptive stop cancels the samples not yet launched: they never ran, so they are not listed.
        if c.finish == Some(FinishReason::Cancelled) && c.stats.completion_tokens == 0 {
            continue;
        }
        let voted = kept.contains(&i);
        pruned += usize::from(c.finish == Some(FinishReason::Pruned));
        if let Some(conf) = confidence(i) {
            let fate = match c.finish {
                Some(FinishReason::Pruned) => "pruned",
                _ if voted => "voted",
                _ if finished.contains(&i) => "dropped",
                _ => "cancelled",
            };
            metrics().chain_confidence.with_label_values(&[fate]).observe(conf);
        }
        let answer = answers[i].clone();
        let verdict = check.as_ref().and_then(|c| c.verdict(i));
        let score = verdict.map(|v| v.score);
        samples.push(SampleDetail {
            index: i - choice * group,
            answer: answer.clone(),
            thinking_tokens: c.stats.thinking_tokens,
            completion_tokens: c.stats.completion_tokens,
            mean_logprob: c.stats.mean_logprob,
            score,
            finish_reason: c.finish.map(FinishReason::as_str),
            confidence: c.stats.confidence,
            voted,
            tests: verdict.and_then(|v| v.tests.clone()),
            verifier_error: verdict.and_then(|v| v.error.clone()),
            reasoning: c.stats.thinking.clone(),
            content: c.stats.answer.clone(),
        });
        if voted {
            ballots.push(Ballot { answer, score, mean_logprob: c.stats.mean_logprob, confidence: confidence(i) });
            members.push(i);
        }
    }
    let mut d = decide(&ballots, plan.aggregate);
    // A verifier that chooses by itself (tests: most cases passed, then the largest behaviour
    // group) overrides the vote; the table then lists behaviour groups.
    let selection = check.as_ref().and_then(|c| c.checked.selection.as_ref().map(|s| (c, s)));
    let mut why = None;
    if let Some((c, sel)) = selection {
        if let Some(k) = sel.chosen {
            let chosen = c.voters[k];
            d.index = members.iter().position(|&m| m == chosen).unwrap_or(d.index);
            // A program's answer is what it does: name its group, as the table's rows do.
            d.answer = sel.groups[k].map(|g| format!("behaviour group {g}"));
            d.table = behaviour_table(c, sel, &ballots);
            why = Some(sel.reason.clone());
        }
    }
    let rep = members.get(d.index).map(|&i| &col.choices[i]);
    let stopped_early = col.stopped.contains(&choice);
    let ext = VoteDetail {
        answer: d.answer,
        samples_requested: group,
        samples_used: samples.len(),
        samples_voted: members.len(),
        stopped_early,
        aggregate: plan.aggregate.as_str(),
        verifier: plan.verifier.as_str(),
        adaptive: plan.adaptive,
        prune: if plan.prune { "confidence" } else { "none" },
        keep_top: plan.keep_top,
        prune_threshold: col.calibrated.iter().find(|(c, _)| *c == choice).map(|(_, t)| *t),
        pruned,
        votes: d
            .table
            .iter()
            .map(|t| VoteRow {
                answer: t.answer.clone(),
                votes: t.votes,
                weight: t.weight,
                confidence: t.confidence,
                mean_logprob: t.mean_logprob,
            })
            .collect(),
        chosen_sample: members.get(d.index).map(|&i| i - choice * group),
        why,
        samples,
    };
    Outcome {
        thinking: rep.map(|c| c.thinking.clone()).unwrap_or_default(),
        answer: rep.map(|c| c.answer.clone()).unwrap_or_default(),
        finish: rep.and_then(|c| c.finish),
        stopped_early,
        used: ext.samples_used,
        ext,
    }
}

/// The vote table of a verifier that chose by behaviour: one row per behaviour group of voters.
fn behaviour_table(c: &ChoiceCheck, sel: &Selection, ballots: &[Ballot]) -> Vec<Tally> {
    let mut rows: Vec<Tally> = Vec::new();
    for (k, g) in sel.groups.iter().enumerate() {
        let name = g.map_or_else(|| "no program".to_string(), |g| format!("behaviour group {g}"));
        let score = c.checked.verdicts.get(k).map_or(0.0, |v| v.score);
        let (conf, lp) = ballots.get(k).map_or((0.0, 0.0), |b| (b.confidence.unwrap_or(0.0), b.mean_logprob));
        match rows.iter_mut().find(|r| r.answer == name) {
            Some(r) => {
                r.votes += 1;
                r.weight += score;
                r.best_score = r.best_score.max(score);
                r.confidence += conf;
                r.mean_logprob += lp;
            }
            None => rows.push(Tally { answer: name, votes: 1, weight: score, best_score: score, confidence: conf, mean_logprob: lp }),
        }
    }
    for r in &mut rows {
        r.mean_logprob /= r.votes as f64;
    }
    rows.sort_by(|a, b| b.votes.cmp(&a.votes).then(b.weight.total_cmp(&a.weight)));
    rows
}

/// How a response's choices are decided from their sample groups.
pub struct Ballots {
    pub n: usize,
    pub group: usize,
    pub plan: SamplingPlan,
    pub score: ChainScore,
    pub effort: Effort,
    /// The request's verifier (`verify::build`), run over each group's voters once it finished.
    pub check: Option<(Arc<dyn Verifier>, Duration)>,
}

impl Ballots {
    /// `decide`, then the first choice's answer graded when the request carried a reference.
    pub async fn decide_graded(&self, col: &mut Collector, grade: &super::grading::Grade) -> (Vec<Outcome>, Option<bool>) {
        let outcomes = self.decide(col).await;
        let graded = grade.record_vote(&col.choices[..self.group], &outcomes[0].answer, &outcomes[0].thinking);
        (outcomes, graded)
    }

    /// The outcome of each choice; what the verifier spent generating is added to `col.side`.
    pub async fn decide(&self, col: &mut Collector) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(self.n);
        // Each sample's final answer, extracted once for the judged lookup and the ballot.
        let answers: Vec<Option<String>> = col.choices.iter().map(|c| final_answer(&c.stats.answer, &c.stats.thinking)).collect();
        for c in 0..self.n {
            let (_, voting) = voters(col, c, self.group, &self.plan, self.score);
            let checked = match &self.check {
                Some((v, timeout)) => {
                    let candidates: Vec<Candidate> = voting
                        .iter()
                        .map(|&i| {
                            let s = &col.choices[i].stats;
                            let answer = &answers[i];
                            Candidate {
                                thinking: s.thinking.clone(),
                                answer: s.answer.clone(),
                                confidence: confidence(col, i, self.score).unwrap_or(s.mean_logprob),
                                mean_logprob: s.mean_logprob,
                                judged: col.judged.iter().find(|(ch, a, _)| *ch == c && Some(a) == answer.as_ref()).map(|j| j.2),
                            }
                        })
                        .collect();
                    let span = col.trace.verify(self.plan.verifier.as_str(), c);
                    Some(checked(&**v, &candidates, *timeout).instrument(span).await)
                }
                None => None,
            };
            let check = checked.as_ref().map(|checked| ChoiceCheck { voters: &voting, checked });
            outcomes.push(decide_choice(col, c, self.group, &self.plan, self.score, check, &answers));
        }
        if let Some((v, _)) = &self.check {
            col.side += v.side_tokens();
        }
        for o in &outcomes {
            metrics().samples_used.with_label_values(&[self.effort.as_str()]).observe(o.used as f64);
            if o.stopped_early {
                metrics().early_stops.inc();
            }
        }
        outcomes
    }
}
