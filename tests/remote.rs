//! The remote backend's replica logic, against real thinkscale processes holding the test model:
//! requests spread over replicas, a replica killed mid-request is marked down and the request
//! finishes on the other, a replica that comes back is probed up, and with none up the server
//! answers 503. Nothing is mocked.

mod common;

use std::time::{Duration, Instant};

use common::{assert_error, Server};
use serde_json::{json, Value};

fn replicas(outer: &Server) -> Vec<Value> {
    let h: Value = outer.client.get(outer.url("/health")).send().unwrap().json().unwrap();
    h["replicas"].as_array().cloned().unwrap_or_default()
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ask(s: &Server, content: &str, max_tokens: u32) -> Value {
    s.chat(&json!({"messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0}))
}

#[test]
fn requests_spread_over_replicas_and_survive_a_killed_one() {
    let a = Server::replica(&["--parallel", "2"]);
    let mut b = Server::replica(&["--parallel", "2"]);
    let outer = Server::launch(&["--backend", &a.base, "--backend", &b.base], &[]);
    // New prompts take turns; a repeated prompt goes back to the replica that holds its prefix.
    ask(&outer, "Name a colour.", 4);
    ask(&outer, "Name a fruit.", 4);
    ask(&outer, "Name a colour.", 4);
    let served: Vec<u64> = replicas(&outer).iter().map(|r| r["served"].as_u64().unwrap()).collect();
    assert_eq!(served, vec![2, 1], "{:?}", replicas(&outer));

    // A long request; kill the replica it runs on once its first tokens arrived (a fixed wait let
    // a fast machine finish the whole request before the kill).
    let body = json!({"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "max_tokens": 400,
                      "temperature": 0.7, "seed": 1, "stream": true, "ignore_eos": true});
    let url = outer.url("/v1/chat/completions");
    let client = outer.client.clone();
    let (first_tokens, arrived) = std::sync::mpsc::channel();
    let streaming = std::thread::spawn(move || {
        let r = client.post(url).json(&body).send().unwrap();
        let status = r.status().as_u16();
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(r)) {
            let line = line.unwrap();
            let chunk: Option<Value> = line.strip_prefix("data: ").and_then(|d| serde_json::from_str(d).ok());
            if chunk.is_some_and(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty())) {
                let _ = first_tokens.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        (status, text)
    });
    arrived.recv_timeout(Duration::from_secs(60)).expect("no tokens streamed");
    let busy = replicas(&outer).iter().position(|r| r["in_flight"] == 1).expect("no replica holds the request");
    // The front counts the sequence it drives, as the embedded engine counts its slots.
    assert!(outer.metrics().contains("thinkscale_active_sequences 1"), "{}", outer.metrics());
    let killed = if busy == 0 { a.base.clone() } else { b.base.clone() };
    if busy == 0 {
        drop(a);
    } else {
        let _ = b.child.kill();
        let _ = b.child.wait();
    }
    let (status, text) = streaming.join().unwrap();
    assert_eq!(status, 200);
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(!text.contains("\"error\""), "the request failed instead of moving: {text}");
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content = common::joined(&chunks, 0, "content");
    assert!(!content.is_empty());
    assert_eq!(chunks.iter().filter_map(|c| c["choices"][0]["finish_reason"].as_str()).next_back(), Some("length"));
    assert!(outer.metrics().contains("thinkscale_active_sequences 0"), "{}", outer.metrics());

    // The dead replica is shown down, in /health and /metrics; requests go to the other.
    let down = replicas(&outer).into_iter().find(|r| r["url"] == killed.as_str()).unwrap();
    assert_eq!(down["up"], false, "{down}");
    assert!(down["last_error"].is_string());
    let metrics = outer.metrics();
    assert!(metrics.contains(&format!("thinkscale_backend_replica_up{{replica=\"{killed}\"}} 0")), "{metrics}");
    assert!(metrics.contains(&format!("thinkscale_backend_replica_requests_total{{outcome=\"error\",replica=\"{killed}\"}}")), "{metrics}");
    ask(&outer, "Name an animal.", 4);
    let h: Value = outer.client.get(outer.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["status"], "ok");

    // The replica comes back on its address: the probe marks it up again.
    let port: u16 = killed.rsplit(':').next().unwrap().parse().unwrap();
    let back = Server::replica_on(port, &["--parallel", "2"]);
    wait_for("the replica to be probed up", || replicas(&outer).iter().all(|r| r["up"] == true));
    drop(back);
}

#[test]
fn with_every_replica_down_requests_get_503_and_health_says_why() {
    let mut a = Server::replica(&[]);
    let outer = Server::launch(&["--backend", &a.base], &[]);
    ask(&outer, "Hi", 2);
    let _ = a.child.kill();
    let _ = a.child.wait();
    // The first request may be the one that finds out; after that, nothing is up.
    let _ = outer.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}));
    wait_for("the replica to be marked down", || replicas(&outer).is_empty() || replicas(&outer).iter().all(|r| r["up"] == false));
    let (status, v) = outer.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}));
    assert_eq!(status, 503, "{v}");
    assert_error(&v);
    let r = outer.client.get(outer.url("/health")).send().unwrap();
    assert_eq!(r.status(), 503);
    let h: Value = r.json().unwrap();
    assert!(h["error"].as_str().unwrap().contains("no backend replica is up"), "{h}");
}

#[test]
fn what_a_remote_engine_cannot_do_is_a_clear_400_and_a_schema_goes_to_the_engine() {
    let a = Server::replica(&[]);
    let outer = Server::launch(&["--backend", &a.base], &[]);
    let msgs = json!([{"role": "user", "content": "Give me JSON."}]);
    // A forced tool call needs a grammar compiled here against the vocabulary: not over an engine.
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]);
    let (status, v) = outer.post("/v1/chat/completions", &json!({"messages": msgs, "tools": tools, "tool_choice": "required"}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "tool_choice");
    // A JSON schema is the engine's to enforce: it gets it as `response_format`.
    let prefilled = outer.metric("thinkscale_prompt_tokens_total");
    let v = outer.chat(&json!({"messages": msgs, "response_format": {"type": "json_object"}, "max_tokens": 40, "temperature": 0}));
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.trim_start().starts_with('{'), "{v}");
    // The prompt tokens the engine prefilled are counted here too, from the engine's usage.
    let u = &v["usage"];
    let uncached = u["prompt_tokens"].as_f64().unwrap() - u["prompt_tokens_details"]["cached_tokens"].as_f64().unwrap();
    assert!(uncached > 0.0, "{v}");
    assert_eq!(outer.metric("thinkscale_prompt_tokens_total") - prefilled, uncached);
    // One the engine cannot enforce is its to refuse (the engines' schema support differs): the
    // client gets a 400 with the engine's reason.
    let bad = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}});
    let (status, v) = outer.post("/v1/chat/completions", &json!({"messages": msgs, "response_format": bad, "max_tokens": 5}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["param"], "response_format", "{v}");
    let (status, v) = outer.post("/v1/chat/completions", &json!({"messages": msgs, "samples": 2, "verifier": "model"}));
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "verifier");
    // The model is the engine's unless an alias is given, and /v1/models says where it runs.
    let models: Value = outer.client.get(outer.url("/v1/models")).send().unwrap().json().unwrap();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(models["data"][0]["meta"]["backend"], "remote");
}

#[test]
fn adaptive_tests_stop_over_a_remote_engine_too() {
    // The front runs the programs (its sandbox) and stops the replica's samples: the same rule as
    // the embedded engine, driven from the front's job loop.
    let a = Server::replica(&["--parallel", "4"]);
    let outer = Server::launch(&["--backend", &a.base, "--code-exec", "python"], &[]);
    let ask = |tests: &str| {
        outer.chat(&json!({
            "messages": [{"role": "user", "content": "Write a Python function add(a, b) that returns a + b, in one ```python block."}],
            "max_tokens": 80, "temperature": 0.7, "seed": 3,
            "reasoning": {"enabled": false, "samples": 6, "verifier": "tests", "adaptive": true, "entry_point": "add", "tests": tests}
        }))
    };
    // Any program that defines add passes: the first wave settles the choice.
    let v = ask("assert callable(add)");
    let seqs = &v["usage"]["sequences"];
    assert_eq!(v["choices"][0]["thinkscale"]["stopped_early"], true, "{v}");
    assert!(seqs["run"].as_u64().unwrap() <= 2 && seqs["cancelled"].as_u64().unwrap() >= 4, "{seqs}");
    // None passes: every wave runs, nothing waits forever for a verdict.
    let v = ask("assert False");
    assert_eq!(v["usage"]["sequences"], json!({"requested": 6, "run": 6, "cancelled": 0}), "{v}");
}
