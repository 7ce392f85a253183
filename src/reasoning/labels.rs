//! The labels a request is counted under — its effort, its thinking budget's bucket, its sample
//! count's bucket — each a closed set, so metric cardinality stays bounded and the planner, the
//! metrics, the scaling table and `/v1/scaling/observations` agree on one list.

/// One closed set of label values: the variants, their text, `ALL`, parsing and serde, all
/// from one list.
macro_rules! label_set {
    ($(#[$m:meta])* $name:ident($what:literal) { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $v),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$v),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$v => $s),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    let all: Vec<&str> = Self::ALL.iter().map(|x| x.as_str()).collect();
                    serde::de::Error::custom(format!("unknown {} '{s}'; expected one of {all:?}", $what))
                })
            }
        }
    };
}

label_set! {
    /// The effort label of a plan: a level a request may name, then `auto`, `custom` (a
    /// configured level outside the standard ones), `budget` (explicit tokens) and `default`
    /// (thinking on, no budget named).
    Effort("effort label") {
        None = "none",
        Minimal = "minimal",
        Low = "low",
        Medium = "medium",
        High = "high",
        Xhigh = "xhigh",
        Max = "max",
        /// The server chooses the setting (`reasoning_effort: "auto"`).
        Auto = "auto",
        Custom = "custom",
        Budget = "budget",
        Default = "default",
    }
}

impl Effort {
    /// The label of an effort a request named: a standard level or `auto` as itself, any other
    /// configured level as `custom`.
    pub fn of_level(e: &str) -> Self {
        match Self::parse(e) {
            Some(l) if l <= Self::Auto => l,
            _ => Self::Custom,
        }
    }
}

label_set! {
    /// A thinking budget's bucket.
    BudgetBucket("budget bucket") {
        Zero = "0",
        UpTo64 = "64",
        UpTo256 = "256",
        UpTo1024 = "1024",
        UpTo4096 = "4096",
        More = "more",
        Unlimited = "unlimited",
    }
}

impl BudgetBucket {
    pub fn of(max_thinking: Option<u32>) -> Self {
        match max_thinking {
            None => Self::Unlimited,
            Some(0) => Self::Zero,
            Some(b) if b <= 64 => Self::UpTo64,
            Some(b) if b <= 256 => Self::UpTo256,
            Some(b) if b <= 1024 => Self::UpTo1024,
            Some(b) if b <= 4096 => Self::UpTo4096,
            Some(_) => Self::More,
        }
    }
}

label_set! {
    /// A sample count's bucket.
    SamplesBucket("samples bucket") {
        One = "1",
        Two = "2",
        Four = "4",
        Eight = "8",
        Sixteen = "16",
        More = "more",
    }
}

impl SamplesBucket {
    pub fn of(samples: u32) -> Self {
        match samples {
            0 | 1 => Self::One,
            2 => Self::Two,
            3 | 4 => Self::Four,
            5..=8 => Self::Eight,
            9..=16 => Self::Sixteen,
            _ => Self::More,
        }
    }

    /// The count a bucket stands for as a setting (`more` is open-ended: none).
    pub fn samples(self) -> Option<u32> {
        self.as_str().parse().ok()
    }
}

/// Labels a request is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Labels {
    pub effort: Effort,
    pub budget: BudgetBucket,
    pub samples: SamplesBucket,
}

impl Labels {
    pub fn as_array(&self) -> [&'static str; 3] {
        [self.effort.as_str(), self.budget.as_str(), self.samples.as_str()]
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    Cancelled,
    /// Stopped by the online confidence filter: excluded from the vote.
    Pruned,
}

impl FinishReason {
    /// A chain that ran to its own end (or its length): its answer counts in a vote, and a
    /// checking verifier checks it.
    pub fn counted(self) -> bool {
        matches!(self, Self::Stop | Self::Length)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
            Self::Pruned => "pruned",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_budgets_and_samples() {
        assert_eq!(BudgetBucket::of(Some(0)).as_str(), "0");
        assert_eq!(BudgetBucket::of(Some(16)).as_str(), "64");
        assert_eq!(BudgetBucket::of(Some(1024)).as_str(), "1024");
        assert_eq!(BudgetBucket::of(Some(99999)).as_str(), "more");
        assert_eq!(BudgetBucket::of(None).as_str(), "unlimited");
        assert_eq!(SamplesBucket::of(3).as_str(), "4");
        assert_eq!(SamplesBucket::of(3).samples(), Some(4));
        assert_eq!(SamplesBucket::More.samples(), None);
    }

    #[test]
    fn effort_levels_are_themselves_and_others_are_custom() {
        assert_eq!(Effort::of_level("low"), Effort::Low);
        assert_eq!(Effort::of_level("auto"), Effort::Auto);
        assert_eq!(Effort::of_level("turbo"), Effort::Custom);
        // Labels that are not levels a request names are not taken as levels.
        assert_eq!(Effort::of_level("budget"), Effort::Custom);
    }

    #[test]
    fn labels_read_and_write_as_their_text_and_nothing_else() {
        let l = Labels { effort: Effort::Xhigh, budget: BudgetBucket::UpTo256, samples: SamplesBucket::Eight };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v, serde_json::json!({"effort": "xhigh", "budget": "256", "samples": "8"}));
        assert_eq!(serde_json::from_value::<Labels>(v).unwrap(), l);
        for (k, bad) in [("effort", "ultra"), ("budget", "100"), ("samples", "3")] {
            let mut v = serde_json::to_value(&l).unwrap();
            v[k] = serde_json::json!(bad);
            let e = serde_json::from_value::<Labels>(v).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
        for b in BudgetBucket::ALL {
            assert_eq!(BudgetBucket::parse(b.as_str()), Some(*b));
        }
    }
}
