//! Confidence-aware sampling and `reasoning_effort: "auto"` on the real server: the online filter,
//! the offline keep-top vote, and the auto policy from a harness table and from graded history.

mod common;

use common::Server;
use serde_json::{json, Value};
use thinkscale::reasoning::confidence::threshold;

const Q: &str = "Tom has 12 apples and buys 7 more. How many apples does he have?";

fn body(extra: Value) -> Value {
    let mut b = json!({"messages": [{"role": "user", "content": Q}], "thinking_budget_tokens": 48, "max_tokens": 120});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn ext(v: &Value) -> &Value {
    &v["choices"][0]["thinkscale"]
}

fn lowest(sample: &Value) -> f64 {
    sample["confidence"]["lowest"].as_f64().unwrap_or_else(|| panic!("no confidence: {sample}"))
}

/// The `fate` series of the chain-confidence histogram.
fn fate_count(s: &Server, fate: &str) -> f64 {
    s.metric(&format!("thinkscale_chain_confidence_count{{fate=\"{fate}\"}}"))
}

#[test]
fn online_pruning_calibrates_on_the_first_wave_and_stops_chains_below_it() {
    let s = Server::start(&[]);
    let v = s.chat(&body(json!({"reasoning": {"samples": 8, "prune": "confidence", "warmup": 4}, "temperature": 0.9, "seed": 5})));
    let x = ext(&v);
    let samples = x["samples"].as_array().unwrap();
    // The threshold is the 90% quantile (keep_top 0.1 by default) of the first wave's scores.
    let first: Vec<f64> = samples.iter().filter(|s| s["index"].as_u64().unwrap() < 4).map(lowest).collect();
    assert_eq!(first.len(), 4, "{x}");
    let t = x["prune_threshold"].as_f64().unwrap();
    assert!((t - threshold(&first, 0.1).unwrap()).abs() < 1e-9, "{t} vs {first:?}");
    let pruned: Vec<&Value> = samples.iter().filter(|s| s["finish_reason"] == "pruned").collect();
    assert!(!pruned.is_empty(), "no later chain fell below {t}: {x}");
    assert_eq!(x["pruned"], pruned.len());
    for p in &pruned {
        // Stopped at its first full window below the threshold, and left out of the vote.
        assert!(p["index"].as_u64().unwrap() >= 4 && lowest(p) < t && p["voted"] == false, "{p}");
        assert!(p["completion_tokens"].as_u64().unwrap() >= 32, "{p}");
    }
    let votes: u64 = x["votes"].as_array().unwrap().iter().map(|t| t["votes"].as_u64().unwrap()).sum();
    let answered = samples.iter().filter(|s| s["voted"] == true && !s["answer"].is_null()).count() as u64;
    assert_eq!(votes, answered, "{x}");
    // Usage counts the pruned chains' tokens: they were spent.
    let spent: u64 = samples.iter().map(|s| s["completion_tokens"].as_u64().unwrap()).sum();
    assert_eq!(v["usage"]["completion_tokens"].as_u64().unwrap(), spent);
    assert_eq!(fate_count(&s, "pruned"), pruned.len() as f64);
}

#[test]
fn online_pruning_stops_at_consensus_after_the_first_wave() {
    let s = Server::start(&[]);
    // Greedy chains all agree: full confidence-weighted consensus once the first wave (the
    // server's prune_warmup, 2) is in.
    let v = s.chat(&body(json!({"reasoning": {"samples": 8, "prune": "confidence"}, "temperature": 0})));
    let x = ext(&v);
    assert_eq!((x["stopped_early"].clone(), x["samples_used"].clone(), x["pruned"].clone()), (json!(true), json!(2), json!(0)), "{x}");
    assert!(x["prune_threshold"].is_number(), "{x}");
    s.wait_engine_idle();
}

#[test]
fn keep_top_votes_among_the_most_confident_chains_weighted_by_confidence() {
    let s = Server::start(&[]);
    let v = s.chat(&body(json!({"reasoning": {"samples": 6, "keep_top": 0.5, "aggregate": "confidence"}, "temperature": 0.9, "seed": 11})));
    let x = ext(&v);
    let samples = x["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 6);
    let mut scores: Vec<f64> = samples.iter().map(lowest).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let voted: Vec<&Value> = samples.iter().filter(|s| s["voted"] == true).collect();
    assert_eq!((voted.len(), x["samples_voted"].clone()), (3, json!(3)), "{x}");
    assert!(voted.iter().all(|s| lowest(s) >= scores[2]), "{x}");
    // The winner has the largest confidence sum among the voted chains.
    let mut sums: Vec<(String, f64)> = Vec::new();
    for s in voted.iter().filter(|s| !s["answer"].is_null()) {
        let a = s["answer"].as_str().unwrap().to_string();
        match sums.iter_mut().find(|(x, _)| *x == a) {
            Some(e) => e.1 += lowest(s),
            None => sums.push((a, lowest(s))),
        }
    }
    let best = sums.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(x["answer"], json!(best.0), "{sums:?} {x}");
    assert_eq!(fate_count(&s, "dropped"), 3.0);
}

#[test]
fn auto_chooses_from_a_harness_table_at_start_up() {
    let s = Server::start(&["--auto-table", "docs/runs/qwen-sweep"]);
    let v = s.chat(&body(json!({"reasoning_effort": "auto", "thinking_budget_tokens": null, "temperature": 0})));
    let auto = &v["thinkscale"]["auto"];
    // docs/SCALING.md's Qwen sweep: four chains by majority (78%) is the best measured setting,
    // and nothing cheaper comes within 3 points of it.
    assert_eq!(auto["source"], "table", "{auto}");
    assert_eq!(auto["choice"]["setting"], json!({"budget": "unlimited", "samples": 4}), "{auto}");
    assert!(auto["reason"].as_str().unwrap().contains("78.0%"), "{auto}");
    assert_eq!(ext(&v)["samples_requested"], 4, "{v}");
}

/// Post `n` graded observations of one setting (`k` of them correct).
fn observe(s: &Server, effort: &str, budget: &str, samples: &str, n: usize, k: usize, tokens: f64) {
    let obs: Vec<Value> = (0..n)
        .map(|i| json!({"effort": effort, "budget": budget, "samples": samples, "correct": i < k, "thinking_seconds": 1.0, "thinking_tokens": tokens}))
        .collect();
    let (status, v) = s.post("/v1/scaling/observations", &json!({"observations": obs}));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn auto_learns_from_graded_history_and_widens_only_when_the_first_wave_disagrees() {
    let s = Server::start(&[]);
    let ask = |temperature: f64| {
        s.chat(&body(json!({"reasoning_effort": "auto", "thinking_budget_tokens": null, "temperature": temperature, "seed": 2})))
    };
    let v = ask(0.0);
    assert!(v["thinkscale"]["auto"]["choice"].is_null(), "{v}");
    assert!(v["thinkscale"]["auto"]["reason"].as_str().unwrap().contains("no setting"), "{v}");
    // Two chains score within 3 points of four at half the tokens: auto runs two, and runs the
    // other two only if the first two disagree.
    observe(&s, "default", "unlimited", "2", 40, 39, 200.0);
    observe(&s, "default", "unlimited", "4", 40, 40, 400.0);
    let v = ask(0.0);
    let auto = &v["thinkscale"]["auto"];
    assert_eq!(
        (auto["source"].clone(), auto["choice"]["setting"]["samples"].clone(), auto["choice"]["widen_to"].clone()),
        (json!("history"), json!(2), json!(4)),
        "{auto}"
    );
    let x = ext(&v);
    // Greedy chains agree: the search does not widen.
    assert_eq!((x["samples_used"].clone(), x["stopped_early"].clone()), (json!(2), json!(true)), "{x}");
    // A cheaper setting measured as accurate wins, and its budget is applied.
    observe(&s, "budget", "64", "1", 40, 40, 50.0);
    let v = ask(0.0);
    assert_eq!(v["thinkscale"]["auto"]["choice"]["setting"], json!({"budget": "64", "samples": 1}), "{v}");
    assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap() <= 64, "{v}");
    assert!(v["choices"][0]["thinkscale"].is_null(), "one sample: not a vote");
}

#[test]
fn confidence_fields_are_validated() {
    let s = Server::start_shared();
    for (extra, param) in [
        (json!({"reasoning": {"samples": 4, "prune": "entropy"}}), "reasoning.prune"),
        (json!({"reasoning": {"samples": 4, "keep_top": 0}}), "reasoning.keep_top"),
        (json!({"reasoning": {"samples": 4, "keep_top": "half"}}), "reasoning.keep_top"),
        (json!({"reasoning_effort": "auto"}), "thinking_budget_tokens"),
        (json!({"reasoning_effort": "auto", "thinking_budget_tokens": null, "samples": 4}), "samples"),
    ] {
        let (status, v) = s.post("/v1/chat/completions", &body(extra.clone()));
        assert_eq!(status, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}
