//! `reasoning_effort: "auto"`: choose a request's setting from measured accuracy against thinking
//! tokens — the cheapest setting whose accuracy is within a margin of the best one (compute-optimal
//! scaling, Snell et al. 2024, with the server's own curves instead of a difficulty classifier).
//! When the chosen setting samples several chains and a better one samples more, the request
//! widens to the better one's samples if its first wave disagrees.

use serde::Serialize;

/// A setting's thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// No thinking asked for: the model's own answer.
    Plain,
    Tokens(u32),
    /// Thinking until the model ends it.
    Unlimited,
}

impl Budget {
    /// A harness budget (`128`, `unlimited`, `plain`) or a scaling-table bucket (`0`, `64`, ...,
    /// `unlimited`); effort names and the open-ended `more` bucket are not settings.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "plain" => Some(Self::Plain),
            "unlimited" => Some(Self::Unlimited),
            _ => s.parse().ok().map(Self::Tokens),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Self::Plain => "plain".into(),
            Self::Unlimited => "unlimited".into(),
            Self::Tokens(n) => n.to_string(),
        }
    }
}

/// Written as its label: `plain`, `unlimited` or the token count.
impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub budget: Budget,
    pub samples: u32,
}

/// What was measured for one setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measured {
    pub setting: Setting,
    pub graded: u64,
    pub correct: u64,
    pub mean_thinking_tokens: f64,
}

impl Measured {
    pub fn accuracy(&self) -> f64 {
        if self.graded == 0 {
            0.0
        } else {
            self.correct as f64 / self.graded as f64
        }
    }
}

/// The policy's decision for one request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub setting: Setting,
    /// Samples to widen to when the first wave (`setting.samples` chains) disagrees.
    pub widen_to: u32,
    pub accuracy: f64,
    pub mean_thinking_tokens: f64,
    pub best: Measured,
    /// Repeated in the decision that carries this choice.
    #[serde(skip)]
    pub reason: String,
}

/// The cheapest (by mean thinking tokens) setting with at least `min_graded` graded requests
/// whose accuracy is within `margin` of the best such setting's. `None` without any.
pub fn choose(cells: &[Measured], margin: f64, min_graded: u64) -> Option<Choice> {
    let trusted: Vec<&Measured> = cells.iter().filter(|c| c.graded >= min_graded.max(1)).collect();
    // The best: most accurate, the cheaper among equals.
    let best = trusted
        .iter()
        .copied()
        .min_by(|a, b| b.accuracy().total_cmp(&a.accuracy()).then(a.mean_thinking_tokens.total_cmp(&b.mean_thinking_tokens)))?;
    let pick = trusted
        .iter()
        .copied()
        .filter(|c| c.accuracy() >= best.accuracy() - margin - 1e-12)
        .min_by(|a, b| a.mean_thinking_tokens.total_cmp(&b.mean_thinking_tokens).then(b.accuracy().total_cmp(&a.accuracy())))?;
    let widen = pick.setting.samples >= 2 && best.setting.samples > pick.setting.samples && pick.setting.budget == best.setting.budget;
    let widen_to = if widen { best.setting.samples } else { pick.setting.samples };
    let describe = |m: &Measured| {
        format!(
            "budget {} x {} sample(s): {:.1}% of {} graded at {:.0} thinking tokens",
            m.setting.budget.label(),
            m.setting.samples,
            100.0 * m.accuracy(),
            m.graded,
            m.mean_thinking_tokens
        )
    };
    let mut reason = if pick == best {
        format!("the most accurate measured setting ({}) is also the cheapest within {:.1} points of it", describe(best), 100.0 * margin)
    } else {
        format!("cheapest setting within {:.1} points of the best ({}): {}", 100.0 * margin, describe(best), describe(pick))
    };
    if widen {
        reason.push_str(&format!("; widens to {widen_to} samples if the first {} disagree", pick.setting.samples));
    }
    Some(Choice {
        setting: pick.setting,
        widen_to,
        accuracy: pick.accuracy(),
        mean_thinking_tokens: pick.mean_thinking_tokens,
        best: best.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(budget: Budget, samples: u32, graded: u64, correct: u64, tokens: f64) -> Measured {
        Measured { setting: Setting { budget, samples }, graded, correct, mean_thinking_tokens: tokens }
    }

    #[test]
    fn cheapest_within_the_margin_of_the_best() {
        let cells = [
            m(Budget::Unlimited, 1, 100, 63, 127.0),
            m(Budget::Unlimited, 2, 100, 76, 260.0),
            m(Budget::Unlimited, 4, 100, 78, 535.0),
            m(Budget::Unlimited, 8, 100, 78, 1071.0),
            m(Budget::Tokens(128), 1, 100, 52, 94.0),
        ];
        let c = choose(&cells, 0.03, 20).unwrap();
        assert_eq!(c.setting, Setting { budget: Budget::Unlimited, samples: 2 });
        assert_eq!(c.best.setting.samples, 4, "ties go to the cheaper setting");
        assert_eq!(c.widen_to, 4);
        assert!(c.reason.contains("widens to 4"), "{}", c.reason);
        // No margin: the best itself, nothing to widen to.
        let c = choose(&cells, 0.0, 20).unwrap();
        assert_eq!((c.setting.samples, c.widen_to), (4, 4));
        // A wide margin reaches one chain, which cannot disagree with itself.
        let c = choose(&cells, 0.2, 20).unwrap();
        assert_eq!((c.setting.samples, c.widen_to), (1, 1));
    }

    #[test]
    fn thinly_measured_settings_are_not_trusted() {
        let cells = [m(Budget::Plain, 1, 5, 5, 0.0), m(Budget::Unlimited, 4, 30, 20, 500.0)];
        let c = choose(&cells, 0.05, 20).unwrap();
        assert_eq!(c.setting.budget, Budget::Unlimited);
        assert_eq!(choose(&cells, 0.05, 31), None);
        assert_eq!(choose(&[], 0.05, 1), None);
    }

    #[test]
    fn budgets_parse_from_harness_and_table_labels() {
        assert_eq!(Budget::parse("plain"), Some(Budget::Plain));
        assert_eq!(Budget::parse("unlimited"), Some(Budget::Unlimited));
        assert_eq!(Budget::parse("128"), Some(Budget::Tokens(128)));
        assert_eq!(Budget::parse("high"), None);
        assert_eq!(Budget::parse("more"), None);
    }
}
