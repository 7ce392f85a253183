//! Choosing one answer among sampled chains: majority, verifier-weighted or best-of-N, and the
//! Beta stopping rule of Adaptive-Consistency.

use super::plan::Aggregate;

/// One finished chain as the vote sees it.
#[derive(Debug, Clone)]
pub struct Ballot {
    pub answer: Option<String>,
    /// Verifier score in [0, 1], when a verifier ran.
    pub score: Option<f64>,
    pub mean_logprob: f64,
    /// The chain's confidence score (`reasoning::confidence`), when it was measured.
    pub confidence: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub answer: String,
    pub votes: usize,
    /// Sum of verifier scores of the chains with this answer.
    pub weight: f64,
    pub best_score: f64,
    pub mean_logprob: f64,
    /// Sum of the chains' confidence scores (the `confidence` rule's weight).
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub answer: Option<String>,
    /// The ballot whose chain represents the chosen answer.
    pub index: usize,
    /// Answers, most supported first.
    pub table: Vec<Tally>,
}

pub fn tally(ballots: &[Ballot]) -> Vec<Tally> {
    let mut table: Vec<Tally> = Vec::new();
    let mut lp_sums: Vec<f64> = Vec::new();
    for b in ballots {
        let Some(a) = &b.answer else { continue };
        let score = b.score.unwrap_or(0.0);
        match table.iter().position(|t| &t.answer == a) {
            Some(i) => {
                let t = &mut table[i];
                t.votes += 1;
                t.weight += score;
                t.best_score = t.best_score.max(score);
                t.confidence += b.confidence.unwrap_or(0.0);
                lp_sums[i] += b.mean_logprob;
            }
            None => {
                table.push(Tally {
                    answer: a.clone(),
                    votes: 1,
                    weight: score,
                    best_score: score,
                    mean_logprob: 0.0,
                    confidence: b.confidence.unwrap_or(0.0),
                });
                lp_sums.push(b.mean_logprob);
            }
        }
    }
    for (t, s) in table.iter_mut().zip(lp_sums) {
        t.mean_logprob = s / t.votes as f64;
    }
    table
}

/// Pick the answer. Ties: higher verifier weight, then higher mean log-probability.
pub fn decide(ballots: &[Ballot], rule: Aggregate) -> Decision {
    let mut table = tally(ballots);
    let key = |t: &Tally| -> (f64, f64, f64) {
        match rule {
            Aggregate::Majority => (t.votes as f64, t.weight, t.mean_logprob),
            Aggregate::Weighted => (t.weight, t.votes as f64, t.mean_logprob),
            Aggregate::Best => (t.best_score, t.weight, t.mean_logprob),
            Aggregate::Confidence => (t.confidence, t.votes as f64, t.mean_logprob),
        }
    };
    table.sort_by(|a, b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal));
    let answer = table.first().map(|t| t.answer.clone());
    // Representative chain: the best-scored (then most confident, then most likely) ballot with
    // the chosen answer.
    let rank = |b: &Ballot| (b.score.unwrap_or(0.0), b.confidence.unwrap_or(0.0), b.mean_logprob);
    let index = ballots
        .iter()
        .enumerate()
        .filter(|(_, b)| answer.is_none() || b.answer == answer)
        .max_by(|(_, a), (_, b)| rank(a).partial_cmp(&rank(b)).unwrap_or(std::cmp::Ordering::Equal))
        .map_or(0, |(i, _)| i);
    Decision { answer, index, table }
}

/// P(the leading answer is the true majority) under a uniform prior, from the counts `a` and `b`
/// of the two leading answers: ∫_{1/2}^{1} x^a (1-x)^b dx / B(a+1, b+1).
/// For integers this is the binomial tail Σ_{j=0}^{a} C(a+b+1, j) / 2^(a+b+1).
pub fn beta_confidence(a: usize, b: usize) -> f64 {
    let n = a + b + 1;
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = 0.0;
    for j in 0..=a {
        sum += term;
        term *= (n - j) as f64 / (j + 1) as f64;
    }
    sum.min(1.0)
}

/// Adaptive-Consistency stopping: enough agreement among the answers so far.
pub fn should_stop(answers: &[Option<String>], confidence: f64) -> bool {
    let ballots: Vec<Ballot> =
        answers.iter().map(|a| Ballot { answer: a.clone(), score: None, mean_logprob: 0.0, confidence: None }).collect();
    let mut counts: Vec<usize> = tally(&ballots).iter().map(|t| t.votes).collect();
    counts.sort_unstable_by(|x, y| y.cmp(x));
    match counts.as_slice() {
        [] => false,
        [a] => beta_confidence(*a, 0) >= confidence,
        [a, b, ..] => beta_confidence(*a, *b) >= confidence,
    }
}

/// When a choice's sampling ends early. Checked after every finished chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopRule {
    /// Adaptive-Consistency: the Beta rule reaches this level.
    Beta(f64),
    /// DeepConf online: once the first `warmup` chains are in, the confidence-weighted share of
    /// the leading answer reaches `level`.
    Consensus { level: f64, warmup: usize },
    /// `reasoning_effort: "auto"`: the first `wave` chains all agree (otherwise the search widens).
    Unanimous { wave: usize },
    /// A checking verifier's verdicts decide (`verified_stop`), not the answers: each finished
    /// chain's program is tested while the others decode. With `give_up`, no wave starts once
    /// that many programs were checked and none ended the choice (`verified_gives_up`).
    Verified { agree: usize, give_up: Option<usize> },
}

impl StopRule {
    /// `answers` of the finished chains so far and their confidence `weights` (same order);
    /// `running`: chains of the choice still decoding.
    pub fn should_stop(&self, answers: &[Option<String>], weights: &[f64], running: usize) -> bool {
        match *self {
            Self::Beta(level) => should_stop(answers, level),
            Self::Consensus { level, warmup } => answers.len() >= warmup && super::confidence::consensus(answers, weights) >= level,
            Self::Unanimous { wave } => {
                running == 0 && answers.len() >= wave && answers[0].is_some() && answers.iter().all(|a| a == &answers[0])
            }
            Self::Verified { .. } => false,
        }
    }
}

/// `StopRule::Verified`: `agree` programs that passed every test and behave alike. `verdicts`:
/// (passed, behaviour key) of each checked chain.
pub fn verified_stop(verdicts: &[(bool, u64)], agree: usize) -> bool {
    verdicts.iter().filter(|(p, _)| *p).any(|(_, key)| verdicts.iter().filter(|(p, k)| *p && k == key).count() >= agree.max(1))
}

/// `StopRule::Verified`'s give-up: `checked` programs are in, none still decoding or awaiting its
/// verdict (`settled`), and they reached `give_up` without ending the choice: the choice is the
/// best of those, and the remaining samples never start.
pub fn verified_gives_up(checked: usize, settled: bool, give_up: Option<usize>) -> bool {
    settled && give_up.is_some_and(|g| checked >= g.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(answer: &str, score: f64, lp: f64) -> Ballot {
        Ballot { answer: (!answer.is_empty()).then(|| answer.to_string()), score: Some(score), mean_logprob: lp, confidence: None }
    }

    #[test]
    fn beta_rule_matches_hand_computed_values() {
        // a=2,b=0: ∫_{.5}^1 3x² dx = 1 - 1/8
        assert!((beta_confidence(2, 0) - 0.875).abs() < 1e-12);
        assert!((beta_confidence(3, 0) - 0.9375).abs() < 1e-12);
        assert!((beta_confidence(4, 0) - 0.96875).abs() < 1e-12);
        // a=b: symmetric, exactly one half.
        assert!((beta_confidence(3, 3) - 0.5).abs() < 1e-12);
        // a=3,b=1: n=5, (1+5+10+10)/32
        assert!((beta_confidence(3, 1) - 26.0 / 32.0).abs() < 1e-12);
        // a=0,b=0: uniform prior, one half.
        assert!((beta_confidence(0, 0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn verified_stop_needs_enough_passing_programs_that_behave_alike() {
        assert!(!verified_stop(&[], 1));
        assert!(!verified_stop(&[(false, 1), (false, 1)], 1));
        assert!(verified_stop(&[(false, 1), (true, 2)], 1));
        // Two passing programs that differ elsewhere do not agree.
        assert!(!verified_stop(&[(true, 1), (true, 2), (false, 1)], 2));
        assert!(verified_stop(&[(true, 1), (true, 2), (true, 1)], 2));
        assert!(!StopRule::Verified { agree: 1, give_up: None }.should_stop(&[Some("1".into())], &[0.0], 0));
    }

    #[test]
    fn stopping_needs_four_unanimous_votes_at_95() {
        let s = |v: &[&str]| v.iter().map(|x| Some(x.to_string())).collect::<Vec<_>>();
        assert!(!should_stop(&s(&["1", "1", "1"]), 0.95));
        assert!(should_stop(&s(&["1", "1", "1", "1"]), 0.95));
        assert!(!should_stop(&s(&["1", "1", "1", "1", "2"]), 0.95));
        assert!(!should_stop(&[None, None], 0.95));
    }

    #[test]
    fn majority_weighted_and_best() {
        let ballots = [b("7", 0.1, -1.0), b("7", 0.2, -1.0), b("9", 0.9, -0.5), b("", 1.0, 0.0)];
        let m = decide(&ballots, Aggregate::Majority);
        assert_eq!(m.answer.as_deref(), Some("7"));
        assert_eq!(m.index, 1);
        assert_eq!(m.table[0].votes, 2);
        let w = decide(&ballots, Aggregate::Weighted);
        assert_eq!(w.answer.as_deref(), Some("9"));
        let best = decide(&ballots, Aggregate::Best);
        assert_eq!(best.answer.as_deref(), Some("9"));
        assert_eq!(best.index, 2);
    }

    #[test]
    fn ties_break_by_score_then_logprob() {
        let by_score = [b("1", 0.2, -1.0), b("2", 0.8, -2.0)];
        assert_eq!(decide(&by_score, Aggregate::Majority).answer.as_deref(), Some("2"));
        let by_lp = [b("1", 0.0, -1.0), b("2", 0.0, -0.1)];
        assert_eq!(decide(&by_lp, Aggregate::Majority).answer.as_deref(), Some("2"));
    }

    #[test]
    fn stop_rules() {
        let s = |v: &[&str]| v.iter().map(|x| (!x.is_empty()).then(|| x.to_string())).collect::<Vec<_>>();
        let beta = StopRule::Beta(0.95);
        assert!(beta.should_stop(&s(&["1", "1", "1", "1"]), &[0.0; 4], 0));
        let cons = StopRule::Consensus { level: 0.9, warmup: 3 };
        assert!(!cons.should_stop(&s(&["1", "1"]), &[5.0, 5.0], 2), "warm-up not in yet");
        assert!(cons.should_stop(&s(&["1", "1", "2"]), &[9.0, 9.0, 1.0], 0), "18 of 19");
        assert!(!cons.should_stop(&s(&["1", "1", "2"]), &[5.0, 5.0, 5.0], 0));
        let un = StopRule::Unanimous { wave: 2 };
        assert!(!un.should_stop(&s(&["1"]), &[0.0], 1));
        assert!(!un.should_stop(&s(&["1", "1"]), &[0.0; 2], 1), "a chain of the wave still runs");
        assert!(un.should_stop(&s(&["1", "1"]), &[0.0; 2], 0));
        assert!(!un.should_stop(&s(&["1", "2"]), &[0.0; 2], 0));
        assert!(!un.should_stop(&s(&["", ""]), &[0.0; 2], 0));
    }

    #[test]
    fn confidence_weighs_each_chain() {
        let c = |answer: &str, conf: f64| Ballot { answer: Some(answer.into()), score: None, mean_logprob: -1.0, confidence: Some(conf) };
        let ballots = [c("7", 2.0), c("7", 3.0), c("9", 9.0), c("9", 1.0), c("9", 1.0)];
        assert_eq!(decide(&ballots, Aggregate::Majority).answer.as_deref(), Some("9"));
        let d = decide(&[c("7", 2.0), c("7", 3.0), c("9", 4.0)], Aggregate::Confidence);
        assert_eq!((d.answer.as_deref(), d.index), (Some("7"), 1));
        assert_eq!(d.table[0].confidence, 5.0);
    }

    #[test]
    fn no_answers_at_all() {
        let d = decide(&[b("", 0.3, -1.0), b("", 0.1, -0.2)], Aggregate::Majority);
        assert_eq!(d.answer, None);
        assert_eq!(d.index, 0);
    }
}
