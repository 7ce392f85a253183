//! Thinking budgets on the real server: exact control, minimums, streaming, both model kinds.

mod common;

use std::sync::OnceLock;

use common::{assert_same_usage, joined, Server};
use serde_json::{json, Value};

fn shared() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(Server::start_shared)
}

const QUESTIONS: [&str; 6] = [
    "Tom has 12 apples and buys 7 more. How many apples does he have?",
    "What is 45 + 38?",
    "A box holds 6 eggs. How many eggs are in 4 boxes?",
    "Sara had 50 dollars and spent 18. How much is left?",
    "What is 9 times 7?",
    "A train travels 60 km per hour for 3 hours. How far does it go?",
];

fn ask(s: &Server, q: &str, extra: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": q}], "temperature": 0.7});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.chat(&body)
}

fn reasoning_tokens(v: &Value) -> u64 {
    v["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap()
}

#[test]
fn budgets_are_never_exceeded_and_there_is_always_an_answer() {
    let s = shared();
    for budget in [0u64, 16, 64, 256] {
        let results: Vec<Value> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..30)
                .map(|i| sc.spawn(move || ask(s, QUESTIONS[i % QUESTIONS.len()], json!({"thinking_budget_tokens": budget, "seed": i}))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for v in &results {
            let used = reasoning_tokens(v);
            assert!(used <= budget, "budget {budget}: used {used}: {v}");
            let msg = &v["choices"][0]["message"];
            let content = msg["content"].as_str().unwrap();
            assert!(!content.trim().is_empty(), "budget {budget}: empty answer: {v}");
            assert!(!content.contains("Final answer:"), "marker leaked: {content:?}");
            if budget == 0 {
                assert_eq!(used, 0);
                assert!(msg.get("reasoning_content").is_none());
            }
            let t = &v["timings"];
            assert_eq!(t["thinking_n"].as_u64().unwrap(), used);
            // Thinking time is reported exactly when there was thinking.
            assert_eq!(t["thinking_ms"].as_f64().unwrap() > 0.0, used > 0, "{t}");
        }
        if budget == 16 {
            // At 16 tokens the small model is nearly always cut off mid-thought.
            assert!(results.iter().filter(|v| reasoning_tokens(v) == 16).count() >= 20);
        }
    }
    let m = s.metrics();
    assert!(m.contains("thinkscale_forced_cutoffs_total{effort=\"budget\"}"));
    assert!(m.contains("thinkscale_thinking_tokens_bucket{effort=\"budget\""));
}

#[test]
fn the_natural_scaffold_thinks_with_the_models_own_answer() {
    let s = shared();
    for q in &QUESTIONS[..3] {
        let plain = ask(s, q, json!({"temperature": 0, "max_tokens": 300}));
        let thought = ask(s, q, json!({"temperature": 0, "thinking_budget_tokens": -1, "max_tokens": 420}));
        let own = plain["choices"][0]["message"]["content"].as_str().unwrap().trim();
        let msg = &thought["choices"][0]["message"];
        let chain = msg["reasoning_content"].as_str().unwrap().trim();
        // The chain is the model's own answer, token for token (the prompt is not changed), and
        // the answer after it is the model's restatement.
        if common::reproducible() {
            if plain["choices"][0]["finish_reason"] == "stop" {
                assert_eq!(chain, own, "{thought}");
            } else {
                assert!(chain.starts_with(own), "{chain:?} does not continue {own:?}");
            }
        }
        assert_eq!(thought["usage"]["prompt_tokens"], plain["usage"]["prompt_tokens"]);
        assert!(!msg["content"].as_str().unwrap().trim().is_empty(), "{thought}");
    }
}

#[test]
fn a_cut_shows_its_budget_message_and_the_scaffold_is_chosen_per_request() {
    let s = shared();
    let v = ask(s, QUESTIONS[0], json!({"temperature": 0, "thinking_budget_tokens": 8, "reasoning_budget_message": "\n[out of budget]\n"}));
    let chain = v["choices"][0]["message"]["reasoning_content"].as_str().unwrap();
    assert!(chain.ends_with("\n[out of budget]\n"), "{chain:?}");
    assert_eq!(reasoning_tokens(&v), 8);
    // The instruct scaffold adds its instruction to the prompt; the natural one leaves it alone.
    let prompt = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": QUESTIONS[0]}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (st, v) = s.post("/apply-template", &body);
        assert_eq!(st, 200, "{v}");
        v["prompt"].as_str().unwrap().to_string()
    };
    let plain = prompt(json!({}));
    assert_eq!(prompt(json!({"thinking_budget_tokens": 32})), plain);
    let instruct = prompt(json!({"thinking_budget_tokens": 32, "reasoning": {"scaffold": "instruct"}}));
    assert!(instruct.contains(&thinkscale::config::ReasoningConfig::default().scaffold_instruction), "{instruct}");
    let (st, e) =
        s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "hi"}], "reasoning": {"scaffold": "loud"}}));
    assert_eq!(st, 400);
    assert_eq!(e["error"]["param"], "reasoning.scaffold", "{e}");
}

#[test]
fn a_cap_too_small_to_think_is_refused_not_ignored() {
    let s = shared();
    for (field, value) in [("max_tokens", 32), ("max_completion_tokens", 20)] {
        let mut body = json!({"messages": [{"role": "user", "content": QUESTIONS[0]}], "thinking_budget_tokens": 64});
        body[field] = json!(value);
        let (st, e) = s.post("/v1/chat/completions", &body);
        assert_eq!(st, 400, "{e}");
        assert_eq!(e["error"]["param"], field, "{e}");
    }
    // Room for a little thinking: it happens, within the cap.
    let v = ask(s, QUESTIONS[0], json!({"thinking_budget_tokens": 64, "max_tokens": 64}));
    assert!(reasoning_tokens(&v) > 0 && v["usage"]["completion_tokens"].as_u64().unwrap() <= 64, "{v}");
}

#[test]
fn min_thinking_forces_at_least_the_minimum() {
    let s = shared();
    for (i, q) in QUESTIONS.iter().enumerate().take(6) {
        let v = ask(s, q, json!({"min_thinking_tokens": 120, "max_thinking_tokens": 200, "seed": i}));
        let used = reasoning_tokens(&v);
        assert!((120..=200).contains(&used), "used {used}: {v}");
        assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().trim().is_empty());
    }
    assert!(s.metric("thinkscale_wait_extensions_total{effort=\"budget\"}") >= 1.0);
}

#[test]
fn max_completion_tokens_caps_thinking_and_answer_together() {
    let s = shared();
    for (i, q) in QUESTIONS.iter().enumerate().take(5) {
        let v = ask(s, q, json!({"reasoning_effort": "medium", "max_completion_tokens": 80, "seed": i}));
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 80, "{v}");
        assert!(reasoning_tokens(&v) < 80);
        assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().trim().is_empty(), "{v}");
    }
}

#[test]
fn streaming_and_non_streaming_agree() {
    let s = shared();
    let body =
        json!({"messages": [{"role": "user", "content": QUESTIONS[1]}], "temperature": 0, "reasoning_effort": "minimal", "logprobs": true});
    let whole = s.chat(&body);
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    sbody["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &sbody);
    let msg = &whole["choices"][0]["message"];
    if common::reproducible() {
        assert_eq!(joined(&chunks, 0, "reasoning_content"), msg["reasoning_content"].as_str().unwrap());
        assert_eq!(joined(&chunks, 0, "content"), msg["content"].as_str().unwrap());
        assert_same_usage(&chunks.last().unwrap()["usage"], &whole["usage"]);
    }
    // Reasoning deltas all come before the first content delta.
    let kinds: Vec<bool> = chunks
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| {
            let d = &c["delta"];
            if d["reasoning_content"].is_string() {
                Some(true)
            } else if d["content"].as_str().is_some_and(|t| !t.is_empty()) {
                Some(false)
            } else {
                None
            }
        })
        .collect();
    let first_answer = kinds.iter().position(|k| !k).unwrap();
    assert!(kinds[first_answer..].iter().all(|k| !k));
    // logprobs.content spells the content (the answer), not the thinking, streamed or not.
    let spelled = |entries: Vec<Value>| entries.iter().map(|e| e["token"].as_str().unwrap().to_string()).collect::<String>();
    let whole_lp = spelled(whole["choices"][0]["logprobs"]["content"].as_array().unwrap().clone());
    assert_eq!(whole_lp.trim_start(), msg["content"].as_str().unwrap());
    let streamed_lp = spelled(
        chunks
            .iter()
            .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
            .flat_map(|c| c["logprobs"]["content"].as_array().cloned().unwrap_or_default())
            .collect(),
    );
    assert_eq!(streamed_lp.trim_start(), joined(&chunks, 0, "content"));
}

#[test]
fn dialects_are_accepted_and_contradictions_rejected() {
    let s = shared();
    for extra in [
        json!({"reasoning_effort": "minimal"}),
        json!({"reasoning": {"effort": "minimal", "exclude": true}}),
        json!({"thinking": {"type": "enabled", "budget_tokens": 32}}),
        json!({"thinking_token_budget": 32}),
        json!({"chat_template_kwargs": {"enable_thinking": true}, "max_tokens": 120}),
        json!({"think": "low", "max_tokens": 120}),
    ] {
        let v = ask(s, QUESTIONS[0], extra.clone());
        assert!(reasoning_tokens(&v) > 0, "{extra}: {v}");
        let excluded = extra["reasoning"]["exclude"] == true;
        assert_eq!(v["choices"][0]["message"].get("reasoning_content").is_none(), excluded, "{extra}");
    }
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "think": false, "thinking_budget_tokens": 50}),
    );
    assert_eq!(st, 400);
    assert_eq!(v["error"]["param"], "thinking_budget_tokens");
}

#[test]
fn thinking_model_path_with_configured_markers() {
    let dir = std::env::temp_dir().join(format!("thinkscale-markers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("think.toml");
    std::fs::write(&cfg, "[reasoning]\nthink_open = \"<think>\"\nthink_close = \"</think>\"\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let models: Value = s.client.get(s.url("/v1/models")).send().unwrap().json().unwrap();
    assert_eq!(models["data"][0]["meta"]["thinking_markers"], json!(["<think>", "</think>"]));
    // Counts and cuts on the markers.
    for budget in [8u64, 40] {
        for (i, q) in QUESTIONS.iter().enumerate().take(4) {
            let v = ask(&s, q, json!({"thinking_budget_tokens": budget, "seed": i}));
            let used = reasoning_tokens(&v);
            assert!(used <= budget && used > 0, "{v}");
            let content = v["choices"][0]["message"]["content"].as_str().unwrap();
            // The close the server injects at the cut never reaches the content (SmolLM2 never
            // writes one itself; it may write "<think>" in an answer, which is its own text).
            assert!(!content.contains("</think>"), "{content:?}");
            assert!(!content.trim().is_empty());
        }
    }
    // Extends: SmolLM2 never writes </think>, so every end-of-generation below the minimum is a Wait.
    let v = ask(&s, QUESTIONS[2], json!({"min_thinking_tokens": 60, "max_thinking_tokens": 100, "max_tokens": 220}));
    assert!(reasoning_tokens(&v) >= 60, "{v}");
    // A plain request on a thinking model thinks (unlimited budget within max_tokens).
    let v = ask(&s, QUESTIONS[1], json!({"max_tokens": 100}));
    assert!(reasoning_tokens(&v) > 0);
    // Thinking off: an empty think block, then the answer.
    let v = ask(&s, QUESTIONS[1], json!({"think": false, "max_tokens": 30}));
    assert_eq!(reasoning_tokens(&v), 0);
    assert!(!v["choices"][0]["message"]["content"].as_str().unwrap().contains("</think>"));
}
