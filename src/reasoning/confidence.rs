//! A chain's confidence from its own token log-probabilities, as in DeepConf (Fu et al., 2025,
//! "Deep Think with Confidence"): token confidence is the negated mean log-probability of the top-k
//! candidates (high when the distribution is peaked), group confidence is its mean over a sliding
//! window, and a chain is scored by its lowest window, its last window, or its mean. The online
//! filter calibrates a threshold on a first wave of chains and stops later chains whose group
//! confidence falls below it; the vote can keep only the most confident chains and weight by
//! confidence. Pure: the engine feeds the numbers, the policy lives here.

use std::collections::VecDeque;

/// Token confidence: −(1/k) Σ log p over the k most likely tokens' log-probabilities.
pub fn token_confidence(top_logprobs: impl IntoIterator<Item = f32>) -> f64 {
    let (sum, n) = top_logprobs.into_iter().fold((0.0, 0usize), |(s, n), l| (s + l as f64, n + 1));
    if n == 0 {
        0.0
    } else {
        -sum / n as f64
    }
}

/// Scores of one chain.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ChainScores {
    /// Mean token confidence over the whole chain.
    pub mean: f64,
    /// Lowest group confidence (window mean); a chain shorter than the window has one group.
    pub lowest: f64,
    /// Group confidence of the last window.
    pub tail: f64,
    pub tokens: u64,
}

/// Which chain score keeps, weights and prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainScore {
    /// DeepConf's lowest group confidence: one bad stretch marks the chain.
    #[default]
    Lowest,
    Tail,
    Mean,
}

impl ChainScores {
    pub fn get(&self, which: ChainScore) -> f64 {
        match which {
            ChainScore::Lowest => self.lowest,
            ChainScore::Tail => self.tail,
            ChainScore::Mean => self.mean,
        }
    }
}

/// Running confidence of one chain, fed one sampled token at a time.
#[derive(Debug, Clone)]
pub struct ChainConfidence {
    window: usize,
    recent: VecDeque<f64>,
    recent_sum: f64,
    total: f64,
    tokens: u64,
    lowest: Option<f64>,
}

impl ChainConfidence {
    pub fn new(window: usize) -> Self {
        Self { window: window.max(1), recent: VecDeque::new(), recent_sum: 0.0, total: 0.0, tokens: 0, lowest: None }
    }

    pub fn push(&mut self, confidence: f64) {
        self.recent.push_back(confidence);
        self.recent_sum += confidence;
        if self.recent.len() > self.window {
            self.recent_sum -= self.recent.pop_front().unwrap_or(0.0);
        }
        self.total += confidence;
        self.tokens += 1;
        if let Some(g) = self.group() {
            self.lowest = Some(self.lowest.map_or(g, |l| l.min(g)));
        }
    }

    /// Group confidence of the last full window; `None` until the chain has `window` tokens.
    pub fn group(&self) -> Option<f64> {
        (self.recent.len() == self.window).then(|| self.recent_sum / self.window as f64)
    }

    pub fn scores(&self) -> ChainScores {
        if self.tokens == 0 {
            return ChainScores::default();
        }
        let partial = self.recent_sum / self.recent.len() as f64;
        ChainScores { mean: self.total / self.tokens as f64, lowest: self.lowest.unwrap_or(partial), tail: partial, tokens: self.tokens }
    }

    /// The online filter's test: a full window below the threshold.
    pub fn below(&self, threshold: f64) -> bool {
        self.group().is_some_and(|g| g < threshold)
    }
}

/// The online threshold: the (1 − keep_top) quantile of the calibration chains' scores, so that
/// about `keep_top` of chains like them would survive (DeepConf-low keeps 10%, -high 90%).
/// Linear interpolation between order statistics.
pub fn threshold(calibration: &[f64], keep_top: f64) -> Option<f64> {
    let mut v: Vec<f64> = calibration.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = (1.0 - keep_top).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (q.floor() as usize, q.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (q - lo as f64))
}

/// The online filter of one choice: the first `warmup` finished chains' scores calibrate the
/// threshold that later chains must stay above.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineFilter {
    keep_top: f64,
    warmup: usize,
    calibration: Vec<f64>,
    threshold: Option<f64>,
}

impl OnlineFilter {
    pub fn new(keep_top: f64, warmup: usize) -> Self {
        Self { keep_top, warmup: warmup.max(1), calibration: Vec::new(), threshold: None }
    }

    /// A finished chain's score; returns the threshold when this chain completes the calibration.
    pub fn observe(&mut self, score: f64) -> Option<f64> {
        if self.threshold.is_some() {
            return None;
        }
        self.calibration.push(score);
        if self.calibration.len() < self.warmup {
            return None;
        }
        self.threshold = threshold(&self.calibration, self.keep_top);
        self.threshold
    }

    pub fn threshold(&self) -> Option<f64> {
        self.threshold
    }
}

/// Which chains the offline filter keeps: the `keep_top` share with the highest scores (at least
/// one; ties at the cut all kept).
pub fn keep_top(scores: &[f64], keep_top: f64) -> Vec<bool> {
    if scores.is_empty() {
        return Vec::new();
    }
    let k = ((scores.len() as f64 * keep_top).ceil() as usize).clamp(1, scores.len());
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[k - 1];
    scores.iter().map(|s| *s >= cut).collect()
}

/// Confidence-weighted consensus: the leading answer's share of the total weight of chains that
/// gave an answer (0 when none did).
pub fn consensus(answers: &[Option<String>], weights: &[f64]) -> f64 {
    let mut table: Vec<(&str, f64)> = Vec::new();
    let mut total = 0.0;
    for (a, w) in answers.iter().zip(weights) {
        let Some(a) = a else { continue };
        let w = w.max(0.0);
        total += w;
        match table.iter_mut().find(|(x, _)| *x == a.as_str()) {
            Some(e) => e.1 += w,
            None => table.push((a, w)),
        }
    }
    let top = table.iter().map(|e| e.1).fold(0.0, f64::max);
    if total > 0.0 {
        top / total
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_confidence_is_high_for_a_peaked_distribution() {
        let peaked = [-0.01f32, -9.0, -10.0, -11.0];
        let flat = [-1.3f32, -1.4, -1.4, -1.5];
        assert!(token_confidence(peaked) > token_confidence(flat));
        assert!((token_confidence([-2.0, -4.0]) - 3.0).abs() < 1e-12);
        assert_eq!(token_confidence(Vec::new()), 0.0);
    }

    #[test]
    fn groups_slide_and_the_lowest_is_kept() {
        let mut c = ChainConfidence::new(3);
        for x in [9.0, 9.0] {
            c.push(x);
        }
        assert_eq!(c.group(), None);
        // A short chain is one partial group.
        assert_eq!(c.scores().lowest, 9.0);
        for x in [3.0, 9.0, 9.0, 9.0] {
            c.push(x);
        }
        let s = c.scores();
        assert_eq!(s.lowest, 7.0);
        assert_eq!(s.tail, 9.0);
        assert_eq!(s.mean, 48.0 / 6.0);
        assert_eq!(s.tokens, 6);
        assert!(c.below(9.5) && !c.below(9.0));
    }

    #[test]
    fn threshold_is_the_quantile_that_keeps_the_top_share() {
        let cal = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(threshold(&cal, 1.0), Some(1.0));
        assert_eq!(threshold(&cal, 0.0), Some(5.0));
        assert_eq!(threshold(&cal, 0.5), Some(3.0));
        assert!((threshold(&cal, 0.9).unwrap() - 1.4).abs() < 1e-12);
        assert_eq!(threshold(&[], 0.5), None);
        assert_eq!(threshold(&[f64::NAN, 2.0], 0.1), Some(2.0));
    }

    #[test]
    fn the_online_filter_calibrates_once_on_its_warm_up() {
        let mut f = OnlineFilter::new(0.5, 3);
        assert_eq!((f.observe(1.0), f.observe(5.0), f.threshold()), (None, None, None));
        assert_eq!(f.observe(3.0), Some(3.0));
        // Later chains do not move it.
        assert_eq!((f.observe(100.0), f.threshold()), (None, Some(3.0)));
    }

    #[test]
    fn keep_top_keeps_the_most_confident_share() {
        assert_eq!(keep_top(&[5.0, 1.0, 3.0, 4.0], 0.5), [true, false, false, true]);
        assert_eq!(keep_top(&[5.0, 1.0], 0.01), [true, false]);
        assert_eq!(keep_top(&[2.0, 2.0, 1.0], 0.3), [true, true, false]);
        assert_eq!(keep_top(&[1.0, 2.0], 1.0), [true, true]);
    }

    #[test]
    fn consensus_weights_answers_by_confidence() {
        let a = |v: &[&str]| v.iter().map(|x| (!x.is_empty()).then(|| x.to_string())).collect::<Vec<_>>();
        assert_eq!(consensus(&a(&["1", "1", "1"]), &[1.0, 2.0, 3.0]), 1.0);
        assert!((consensus(&a(&["1", "2"]), &[3.0, 1.0]) - 0.75).abs() < 1e-12);
        // Chains without an answer do not count.
        assert_eq!(consensus(&a(&["1", ""]), &[1.0, 5.0]), 1.0);
        assert_eq!(consensus(&a(&["", ""]), &[1.0, 1.0]), 0.0);
    }
}
