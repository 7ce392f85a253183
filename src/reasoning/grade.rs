//! Grading answers and summarising what test-time compute buys: Wilson intervals and the s1
//! metrics (Control, Scaling, Performance).

use super::extract::{final_answer, normalise};

/// Is the chain's answer the expected one? The reference may be a bare answer or a GSM8K
/// solution ending in `#### N`.
pub fn grade(answer_text: &str, thinking: &str, expected: &str) -> (Option<String>, bool) {
    let got = final_answer(answer_text, thinking);
    let want = expected.rsplit("####").next().map(normalise).unwrap_or_default();
    let ok = got.as_deref() == Some(want.as_str()) && !want.is_empty();
    (got, ok)
}

/// Wilson score interval (95%) for `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = k as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// One graded observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub correct: bool,
    pub thinking_seconds: f64,
    pub thinking_tokens: f64,
}

/// A cell of the accuracy-vs-compute table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cell {
    pub graded: u64,
    pub correct: u64,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub mean_thinking_seconds: f64,
    pub p90_thinking_seconds: f64,
    pub mean_thinking_tokens: f64,
}

pub fn summarise(obs: &[Observation]) -> Cell {
    let n = obs.len() as u64;
    let k = obs.iter().filter(|o| o.correct).count() as u64;
    let (ci_low, ci_high) = wilson(k, n);
    let mean = |f: fn(&Observation) -> f64| if n == 0 { 0.0 } else { obs.iter().map(f).sum::<f64>() / n as f64 };
    let mut secs: Vec<f64> = obs.iter().map(|o| o.thinking_seconds).collect();
    secs.sort_by(f64::total_cmp);
    let p90 = if secs.is_empty() { 0.0 } else { secs[((secs.len() as f64 * 0.9).ceil() as usize).clamp(1, secs.len()) - 1] };
    Cell {
        graded: n,
        correct: k,
        accuracy: if n == 0 { 0.0 } else { k as f64 / n as f64 },
        ci_low,
        ci_high,
        mean_thinking_seconds: mean(|o| o.thinking_seconds),
        p90_thinking_seconds: p90,
        mean_thinking_tokens: mean(|o| o.thinking_tokens),
    }
}

/// The compute-optimal frontier: indices of the points (cost, accuracy) that no cheaper-or-equal
/// point matches in accuracy, in increasing cost. The best accuracy reachable at each cost.
pub fn frontier(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    // Cheapest first; at equal cost the more accurate point first, so it alone is kept.
    order.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(points[b].1.total_cmp(&points[a].1)));
    let mut best = f64::NEG_INFINITY;
    let mut keep = Vec::new();
    for i in order {
        if points[i].1 > best {
            best = points[i].1;
            keep.push(i);
        }
    }
    keep
}

/// Unbiased pass@k from `n` samples of which `c` are correct (Chen et al., 2021):
/// 1 - C(n-c, k) / C(n, k), computed as a running product.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if n < k || n - c < k {
        return if c > 0 { 1.0 } else { 0.0 };
    }
    1.0 - ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>()
}

/// Exact two-sided McNemar test for two settings graded on the same questions: `b` questions
/// only the first got right, `c` only the second. The p-value that they are equally accurate.
pub fn mcnemar_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min(b, c)) for X ~ Binomial(n, 1/2), doubled; terms built in log space.
    let k = b.min(c);
    let mut log_term = -(n as f64) * std::f64::consts::LN_2; // C(n, 0) / 2^n
    let mut tail = 0.0;
    for j in 0..=k {
        tail += log_term.exp();
        log_term += ((n - j) as f64).ln() - ((j + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

/// s1's Control: share of requests whose thinking stayed within [min, max].
pub fn control(within: &[bool]) -> f64 {
    if within.is_empty() {
        0.0
    } else {
        within.iter().filter(|w| **w).count() as f64 / within.len() as f64
    }
}

/// s1's Scaling: mean slope of accuracy over all pairs of budgets, per unit of compute
/// (points: (compute, accuracy), compute strictly increasing in the pair).
pub fn scaling(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::new();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
            if hi.0 > lo.0 {
                slopes.push((hi.1 - lo.1) / (hi.0 - lo.0));
            }
        }
    }
    if slopes.is_empty() {
        0.0
    } else {
        slopes.iter().sum::<f64>() / slopes.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_against_gsm8k_references() {
        assert!(grade("The answer is 72.", "", "48/2 = 24\n#### 72").1);
        assert!(grade("72.00", "", "72").1);
        assert!(!grade("71", "", "#### 72").1);
        assert!(grade("", "so 12 + 7 = 19", "19").1);
        assert!(!grade("anything", "", "").1);
    }

    #[test]
    fn pass_at_k_matches_its_definition() {
        assert_eq!(pass_at_k(8, 0, 1), 0.0);
        assert_eq!(pass_at_k(8, 8, 4), 1.0);
        assert!((pass_at_k(8, 2, 1) - 0.25).abs() < 1e-12);
        // 1 - C(6,4)/C(8,4) = 1 - 15/70
        assert!((pass_at_k(8, 2, 4) - (1.0 - 15.0 / 70.0)).abs() < 1e-12);
        assert_eq!(pass_at_k(8, 5, 4), 1.0);
    }

    #[test]
    fn wilson_matches_known_values() {
        let (lo, hi) = wilson(8, 10);
        assert!((lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0, 20);
        assert_eq!(lo, 0.0);
    }

    #[test]
    fn summary_and_s1_metrics() {
        let obs: Vec<Observation> =
            (0..10).map(|i| Observation { correct: i < 3, thinking_seconds: i as f64, thinking_tokens: 10.0 }).collect();
        let c = summarise(&obs);
        assert_eq!((c.graded, c.correct), (10, 3));
        assert_eq!(c.p90_thinking_seconds, 8.0);
        assert_eq!(c.mean_thinking_tokens, 10.0);
        assert_eq!(control(&[true, true, false, true]), 0.75);
        // Pairs: (0,.1)-(1,.3): .2 ; (0,.1)-(2,.3): .1 ; (1,.3)-(2,.3): 0 -> mean .1
        assert!((scaling(&[(0.0, 0.1), (1.0, 0.3), (2.0, 0.3)]) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn frontier_keeps_only_points_that_buy_accuracy() {
        // (cost, accuracy): the 30-cost point is beaten by the cheaper 20; 40 ties 20's cost.
        let pts = [(10.0, 0.2), (30.0, 0.3), (20.0, 0.5), (20.0, 0.4), (50.0, 0.7), (60.0, 0.7)];
        assert_eq!(frontier(&pts), vec![0, 2, 4]);
        assert!(frontier(&[]).is_empty());
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        assert_eq!(mcnemar_p(0, 0), 1.0);
        assert_eq!(mcnemar_p(3, 3), 1.0);
        // 0 vs 6 discordant: 2 * 0.5^6.
        assert!((mcnemar_p(0, 6) - 2.0 / 64.0).abs() < 1e-12);
        // 2 vs 10: 2 * (1 + 12 + 66) / 4096.
        assert!((mcnemar_p(10, 2) - 2.0 * 79.0 / 4096.0).abs() < 1e-12);
        assert!(mcnemar_p(400, 300) < 0.001);
    }
}
