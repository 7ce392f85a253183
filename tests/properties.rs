//! Property tests for the pure code a request reaches: budget forcing, the stop matcher, the
//! UTF-8 buffer, answer extraction, the dialect planner and the arithmetic checker. No model.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use thinkscale::backend::controller::{StopMatcher, Utf8Buffer};
use thinkscale::reasoning::extract::{extract, final_answer, normalise, DEFAULT_CHAIN};
use thinkscale::reasoning::forcing::{Forcer, ForcingSpec, Injection, Phase};
use thinkscale::reasoning::labels::Effort;
use thinkscale::reasoning::plan;
use thinkscale::reasoning::verify::{arithmetic_score, claims, eval};

const MARKER: &str = "Final answer:";

/// Token pieces a model might write, marker fragments among them.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Fin".to_string()),
        Just("al".to_string()),
        Just(" answer:".to_string()),
        Just(MARKER.to_string()),
        Just(" ".to_string()),
        Just("é".to_string()),
        "[a-z0-9 =+]{1,4}",
    ]
}

proptest! {
    #[test]
    fn thinking_never_exceeds_its_budget(
        min in 0u32..40, max in 0u32..60, wait in 1u32..4, ext in 0u32..4,
        tokens in prop::collection::vec((piece(), prop::bool::weighted(0.08)), 0..120),
    ) {
        let spec = ForcingSpec { thinking: true, min_thinking: min.min(max), max_thinking: max, close_marker: MARKER.into(),
                                 wait_tokens: wait, max_extensions: ext, answer_cap: 1000 };
        let mut f = Forcer::new(spec);
        let mut shown_thinking = String::new();
        for (p, eog) in &tokens {
            let step = f.on_token(p, *eog);
            shown_thinking.push_str(&step.thinking);
            // The engine writes the Wait text into the chain, as the model then sees it.
            if step.inject == Some(Injection::Wait) {
                shown_thinking.push_str("\nWait,");
            }
            prop_assert!(f.thinking_tokens() <= max, "{} > {max}", f.thinking_tokens());
            if f.phase() == Phase::Done {
                break;
            }
        }
        // The marker ends thinking: the chain as the model sees it never holds it.
        prop_assert!(!shown_thinking.contains(MARKER), "{shown_thinking:?}");
    }

    #[test]
    fn without_a_marker_or_an_end_thinking_text_is_conserved(pieces in prop::collection::vec("[a-z0-9 é]{1,4}", 0..50)) {
        let max = pieces.len() as u32 + 1;
        let mut f = Forcer::new(ForcingSpec { thinking: true, min_thinking: 0, max_thinking: max, close_marker: MARKER.into(),
                                              wait_tokens: 1, max_extensions: 0, answer_cap: 10 });
        let shown: String = pieces.iter().map(|p| f.on_token(p, false).thinking).collect();
        prop_assert_eq!(shown, pieces.concat());
        prop_assert_eq!(f.thinking_tokens(), pieces.len() as u32);
    }

    #[test]
    fn the_stop_matcher_never_emits_a_stop_string(
        text in "[ab\\n]{0,60}", cuts in prop::collection::vec(0usize..60, 0..10), stops in prop::collection::vec("[ab\\n]{1,3}", 1..3),
    ) {
        let mut m = StopMatcher::new(stops.clone());
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= text.len()).collect();
        cuts.sort_unstable();
        let (mut out, mut stopped, mut from) = (String::new(), false, 0);
        for c in cuts.into_iter().chain([text.len()]) {
            let (emitted, hit) = m.push(&text[from..c]);
            out.push_str(&emitted);
            from = c;
            if hit {
                stopped = true;
                break;
            }
        }
        if !stopped {
            out.push_str(&m.flush());
        }
        for s in &stops {
            prop_assert!(!out.contains(s.as_str()), "{out:?} contains {s:?}");
        }
        prop_assert!(text.starts_with(&out));
        // Without a stop string anywhere in the text, everything comes out.
        if !stops.iter().any(|s| text.contains(s.as_str())) {
            prop_assert_eq!(out, text);
        }
    }

    #[test]
    fn the_utf8_buffer_round_trips_under_any_split(text in "\\PC{0,40}", cuts in prop::collection::vec(0usize..200, 0..12)) {
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= bytes.len()).collect();
        cuts.sort_unstable();
        let mut b = Utf8Buffer::default();
        let (mut out, mut from) = (String::new(), 0);
        for c in cuts.into_iter().chain([bytes.len()]) {
            out.push_str(&b.push(&bytes[from..c]));
            from = c;
        }
        out.push_str(&b.flush());
        prop_assert_eq!(out, text);
    }

    #[test]
    fn extraction_and_arithmetic_never_panic(text in "\\PC{0,200}", answer in "\\PC{0,20}") {
        let _ = extract(&text, &DEFAULT_CHAIN);
        let _ = final_answer(&answer, &text);
        let _ = normalise(&text);
        let _ = claims(&text);
        let _ = eval(&text);
        if let Some(s) = arithmetic_score(&text, Some(&answer)) {
            prop_assert!((0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn the_planner_never_panics_on_arbitrary_fields(fields in prop::collection::vec((field(), value()), 0..6)) {
        let req: Map<String, Value> = fields.into_iter().collect();
        let cfg = plan::Policy::default();
        for thinking_model in [false, true] {
            match plan::normalise(&req, &cfg, thinking_model) {
                Ok(p) => {
                    prop_assert!(p.min_thinking <= p.max_thinking.unwrap_or(u32::MAX));
                    prop_assert!(p.sampling.samples >= 1 && i64::from(p.sampling.samples) <= thinkscale::reasoning::params::SAMPLES.max);
                    // The `auto` label and the auto policy go together.
                    prop_assert_eq!(p.effort == Effort::Auto, p.auto);
                }
                // A refusal names a field the request sent, at its path (or the verifier an
                // aggregate needs), and quotes it.
                Err(e) => {
                    let sent = req.keys().any(|k| e.param == *k || e.param.starts_with(&format!("{k}.")));
                    prop_assert!(sent || e.param == "verifier", "{} names {}", e.message, e.param);
                    prop_assert!(e.message.contains(&format!("'{}'", e.param)) || e.param == "verifier", "{}", e.message);
                }
            }
        }
    }
}

fn field() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "reasoning_effort",
        "reasoning",
        "thinking",
        "thinking_budget_tokens",
        "reasoning_budget_tokens",
        "thinking_token_budget",
        "max_thinking_tokens",
        "min_thinking_tokens",
        "chat_template_kwargs",
        "think",
        "reasoning_format",
        "samples",
        "verifier",
        "aggregate",
        "adaptive",
        "confidence",
        "reasoning_budget_message",
        "prune",
        "keep_top",
        "warmup",
    ])
    .prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-2i64..5000).prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "low",
            "high",
            "max",
            "none",
            "enabled",
            "disabled",
            "weighted",
            "best",
            "self",
            "arithmetic",
            "x",
            "auto",
            "confidence"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "effort",
                    "max_tokens",
                    "type",
                    "budget_tokens",
                    "enable_thinking",
                    "samples",
                    "exclude",
                    "enabled",
                    "scaffold",
                    "verifier",
                    "prune",
                    "keep_top",
                ]),
                inner,
            ),
            0..4,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    })
}

proptest! {
    /// The confidence policy on any numbers: the threshold lies within the calibration scores,
    /// keep-top keeps at least one and at most all (the most confident first), the consensus is a
    /// share, and a chain's lowest group never exceeds its last.
    #[test]
    fn confidence_policy_stays_in_range(
        cal in prop::collection::vec(-50.0f64..50.0, 1..20),
        keep in 0.001f64..1.0,
        tokens in prop::collection::vec(0.0f64..30.0, 1..200),
        window in 1usize..40,
        answers in prop::collection::vec((prop::option::of(0u8..4), 0.0f64..30.0), 0..20),
    ) {
        use thinkscale::reasoning::confidence::{consensus, keep_top, threshold, ChainConfidence};
        let t = threshold(&cal, keep).unwrap();
        let (lo, hi) = cal.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        prop_assert!(t >= lo - 1e-9 && t <= hi + 1e-9);
        let kept = keep_top(&cal, keep);
        let n = kept.iter().filter(|k| **k).count();
        prop_assert!(n >= 1 && n <= cal.len());
        let min_kept = cal.iter().zip(&kept).filter(|(_, k)| **k).map(|(x, _)| *x).fold(f64::INFINITY, f64::min);
        prop_assert!(cal.iter().zip(&kept).all(|(x, k)| *k || *x <= min_kept));
        let (a, w): (Vec<Option<String>>, Vec<f64>) = answers.iter().map(|(a, w)| (a.map(|x| x.to_string()), *w)).unzip();
        let share = consensus(&a, &w);
        prop_assert!((0.0..=1.0 + 1e-12).contains(&share));
        let mut c = ChainConfidence::new(window);
        for x in &tokens {
            c.push(*x);
        }
        let s = c.scores();
        prop_assert!(s.lowest <= s.tail + 1e-9 || tokens.len() < window);
        prop_assert_eq!(s.tokens, tokens.len() as u64);
    }
}
