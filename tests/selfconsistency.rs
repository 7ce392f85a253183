//! Self-consistency on the real server: one prefill, forked samples, votes, verifiers, adaptive stop.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{json, Value};
use thinkscale::reasoning::verify::{arithmetic_score, logprob_score};

const Q: &str = "Tom has 12 apples and buys 7 more. How many apples does he have?";

fn body(extra: Value) -> Value {
    let mut b = json!({"messages": [{"role": "user", "content": Q}], "thinking_budget_tokens": 48});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn ext(v: &Value, choice: usize) -> &Value {
    &v["choices"][choice]["thinkscale"]
}

#[test]
fn samples_share_one_prefill_and_are_distinct_chains() {
    let s = Server::start(&[]);
    let before = if s.engine_is_thinkscale() { s.engine().metric("thinkscale_prompt_tokens_total") } else { 0.0 };
    if common::remote_mode() && s.engine_is_thinkscale() {
        // Over a remote engine each sample is its own request, and each forced close a new one
        // (that prefills the forced text): without thinking, the first sample goes alone and the
        // 7 after it find the prompt, all but its last token, in the engine's cache.
        let v = s.chat(&body(json!({"reasoning": {"samples": 8}, "thinking_budget_tokens": 0, "temperature": 0.9, "seed": 3})));
        let p = v["usage"]["prompt_tokens"].as_f64().unwrap();
        assert_eq!(s.engine().metric("thinkscale_prompt_tokens_total") - before, p + 7.0, "the prompt was not shared");
    }
    let v = s.chat(&body(json!({"reasoning": {"samples": 8}, "temperature": 0.9, "seed": 3})));
    let p = v["usage"]["prompt_tokens"].as_f64().unwrap();
    if !common::remote_mode() {
        assert_eq!(s.engine().metric("thinkscale_prompt_tokens_total") - before, p, "the prompt was prefilled more than once");
    }
    let x = ext(&v, 0);
    assert_eq!(x["samples_used"], 8);
    let samples = x["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 8);
    let chains: std::collections::HashSet<String> =
        samples.iter().map(|s| format!("{}|{}", s["reasoning"].as_str().unwrap(), s["content"].as_str().unwrap())).collect();
    assert_eq!(chains.len(), 8, "chains are not distinct");
    // The chosen answer is the most voted one, and usage counts every sample's tokens.
    let votes = x["votes"].as_array().unwrap();
    assert_eq!(x["answer"], votes[0]["answer"]);
    let total: u64 = samples.iter().map(|s| s["completion_tokens"].as_u64().unwrap()).sum();
    assert_eq!(v["usage"]["completion_tokens"].as_u64().unwrap(), total);
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().is_empty());
}

#[test]
fn greedy_samples_agree_and_adaptive_stops_after_the_first_wave() {
    let s = Server::start(&[]);
    let v = s.chat(&body(json!({"reasoning": {"samples": 8, "adaptive": true}, "temperature": 0})));
    let x = ext(&v, 0);
    assert_eq!(x["stopped_early"], true, "{x}");
    assert_eq!(x["samples_used"], 4, "{x}");
    let answers: Vec<&Value> =
        x["samples"].as_array().unwrap().iter().filter(|s| s["finish_reason"] != "cancelled").map(|s| &s["answer"]).collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Only the first wave ran: the four samples never launched are not listed.
    let listed = x["samples"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{x}");
    assert!(listed.iter().all(|s| s["completion_tokens"].as_u64().unwrap() > 0), "{x}");
    assert!(s.metric("thinkscale_adaptive_early_stops_total") >= 1.0);
    // Every slot is free again.
    s.wait_engine_idle();
}

#[test]
fn verifiers_score_in_unit_interval() {
    let s = Server::start(&[]);
    let mut prompt_tokens = std::collections::HashMap::new();
    for (verifier, aggregate) in [("self", "weighted"), ("logprob", "best"), ("arithmetic", "weighted"), ("self", "majority")] {
        let v = s.chat(&body(json!({"reasoning": {"samples": 4, "verifier": verifier, "aggregate": aggregate}, "temperature": 0.8})));
        prompt_tokens.insert(verifier, v["usage"]["prompt_tokens"].as_u64().unwrap());
        let x = ext(&v, 0);
        assert_eq!(x["verifier"], verifier);
        for smp in x["samples"].as_array().unwrap() {
            let score = smp["score"].as_f64().unwrap();
            // The score is what the verifier computes from this sample's own chain.
            let chain = format!("{}\n{}", smp["reasoning"].as_str().unwrap(), smp["content"].as_str().unwrap());
            match verifier {
                "arithmetic" => assert_eq!(Some(score), Some(arithmetic_score(&chain, smp["answer"].as_str()).unwrap_or(0.5)), "{smp}"),
                "logprob" => assert!((score - logprob_score(smp["mean_logprob"].as_f64().unwrap())).abs() < 1e-9, "{smp}"),
                _ => assert!((0.0..=1.0).contains(&score), "{verifier}: {score}"),
            }
        }
        if verifier == "self" {
            // Judged answers got a real probability, not the default.
            assert!(x["samples"].as_array().unwrap().iter().any(|s| s["answer"].is_string() && s["score"].as_f64().unwrap() > 0.0), "{x}");
        }
    }
    // What the self-judge read (each answer after the prompt, then its question) is in `usage`.
    assert!(prompt_tokens["self"] > prompt_tokens["logprob"] + 10, "{prompt_tokens:?}");
}

#[test]
fn n_choices_each_vote_their_own_samples() {
    let s = Server::start(&[]);
    let v = s.chat(&body(json!({"n": 2, "samples": 3, "temperature": 0.8})));
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    for c in 0..2 {
        assert_eq!(ext(&v, c)["samples"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn streaming_reports_samples_then_the_answer() {
    let s = Server::start(&[]);
    let mut b = body(json!({"samples": 3, "temperature": 0.8, "seed": 5}));
    b["stream"] = json!(true);
    let r = s.client.post(s.url("/v1/chat/completions")).json(&b).send().unwrap();
    let lines: Vec<String> = BufReader::new(r).lines().map(|l| l.unwrap()).collect();
    let progress = lines.iter().filter(|l| l.starts_with(": thinkscale") && l.contains("\"sample\"")).count();
    assert_eq!(progress, 3);
    let first_data = lines.iter().position(|l| l.starts_with("data: ")).unwrap();
    let last_comment = lines.iter().rposition(|l| l.starts_with(": thinkscale")).unwrap();
    assert!(last_comment < first_data, "progress must come before the answer chunks");
    assert_eq!(lines.iter().rev().find(|l| !l.is_empty()).unwrap(), "data: [DONE]");
}

#[test]
fn cancelling_mid_vote_frees_every_slot() {
    let s = Server::start(&[]);
    let mut b = body(json!({"samples": 8, "thinking_budget_tokens": 1000, "max_tokens": 1200, "temperature": 0.9}));
    b["stream"] = json!(true);
    let r = s.client.post(s.url("/v1/chat/completions")).json(&b).send().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.engine().metric("thinkscale_active_sequences") < 8.0 {
        assert!(Instant::now() < deadline, "samples never all ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(r);
    // An engine notices the cancel between decode steps (llama-server only when its next token's
    // write fails), and a step of 8 sequences can take seconds on a crowded 2-core machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cells = || if s.engine_is_thinkscale() { s.engine().metric("thinkscale_kv_cells_used") } else { 0.0 };
    while s.engine().metric("thinkscale_active_sequences") != 0.0 || cells() != 0.0 {
        assert!(Instant::now() < deadline, "slots not freed after cancel");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.chat(&json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))["object"], "chat.completion");
}

#[test]
fn bad_sampling_values_are_400() {
    let s = Server::start(&[]);
    for (extra, param) in [
        (json!({"samples": 0}), "samples"),
        (json!({"reasoning": {"samples": 100000}}), "reasoning.samples"),
        (json!({"reasoning": {"samples": 4, "aggregate": "median"}}), "reasoning.aggregate"),
        (json!({"samples": 4, "verifier": "oracle"}), "verifier"),
        (json!({"samples": 4, "aggregate": "best"}), "verifier"),
        (json!({"samples": 4, "confidence": 2}), "confidence"),
        (json!({"samples": 4, "verifier": "model"}), "verifier"),
    ] {
        let (st, v) = s.post("/v1/chat/completions", &body(extra.clone()));
        assert_eq!(st, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
    }
}

#[test]
fn a_second_model_can_be_the_verifier() {
    let model = common::model_path();
    let s = Server::start(&["--verifier-model", model.to_str().unwrap()]);
    let req = body(json!({"reasoning": {"samples": 3, "verifier": "model", "aggregate": "best"}, "temperature": 0.8}));
    if common::remote_mode() {
        // The second model lives in the engine's process: a server over it says so.
        let (st, v) = s.post("/v1/chat/completions", &req);
        assert_eq!((st, &v["error"]["param"]), (400, &json!("verifier")), "{v}");
        return;
    }
    let v = s.chat(&req);
    let x = ext(&v, 0);
    assert_eq!(x["verifier"], "model");
    let scores: Vec<f64> =
        x["samples"].as_array().unwrap().iter().filter(|s| s["answer"].is_string()).map(|s| s["score"].as_f64().unwrap()).collect();
    assert!(!scores.is_empty());
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s) && *s != 0.5), "{scores:?}");
}
