//! The OpenAI API on the real server and the real SmolLM2 model.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{assert_error, assert_same_usage, joined, Server};
use serde_json::{json, Value};

/// One server for the tests that do not care about metrics or configuration.
fn shared() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(Server::start_shared)
}

fn greedy(content: &str, max_tokens: u32) -> Value {
    json!({"model": "x", "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": max_tokens})
}

#[test]
fn health_models_and_metrics() {
    let s = shared();
    let h: Value = s.client.get(s.url("/health")).send().unwrap().json().unwrap();
    assert_eq!(h["status"], "ok");
    let m: Value = s.client.get(s.url("/v1/models")).send().unwrap().json().unwrap();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    let text = s.metrics();
    for name in [
        "thinkscale_requests_total",
        "thinkscale_prompt_tokens_total",
        "thinkscale_generated_tokens_total",
        "thinkscale_request_duration_seconds",
        "thinkscale_time_to_first_token_seconds",
        "thinkscale_active_sequences",
        "thinkscale_queue_depth",
        "thinkscale_kv_cells_used",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
}

#[test]
fn chat_non_streaming_has_usage_and_id() {
    let v = shared().chat(&greedy("What is the capital of France?", 16));
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    let c = &v["choices"][0];
    assert_eq!(c["message"]["role"], "assistant");
    assert!(!c["message"]["content"].as_str().unwrap().is_empty());
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert!(u["completion_tokens"].as_u64().unwrap() <= 16);
    assert_eq!(u["total_tokens"].as_u64().unwrap(), u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap());
    assert!(["stop", "length"].contains(&c["finish_reason"].as_str().unwrap()));
}

#[test]
fn max_tokens_and_max_completion_tokens_cap_output() {
    let s = shared();
    for key in ["max_tokens", "max_completion_tokens"] {
        let v = s.chat(&json!({"messages": [{"role": "user", "content": "Write a long story about a dragon."}], "temperature": 0, key: 7}));
        assert_eq!(v["usage"]["completion_tokens"], 7, "{key}");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
    }
}

#[test]
fn streaming_matches_non_streaming_and_reports_usage() {
    let s = shared();
    let mut body = greedy("Name three colors.", 24);
    let whole = s.chat(&body);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &body);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text = joined(&chunks, 0, "content");
    assert_eq!(text, whole["choices"][0]["message"]["content"].as_str().unwrap());
    let finish: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0].get("finish_reason")).filter(|f| !f.is_null()).collect();
    assert_eq!(finish.len(), 1);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_same_usage(&last["usage"], &whole["usage"]);
}

#[test]
fn stop_strings_cut_the_answer() {
    let s = shared();
    let base = s.chat(&greedy("Count from 1 to 10, separated by commas.", 40));
    let text = base["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    // Stop on a piece of the greedy answer: the output must end just before it.
    let cut = text.char_indices().nth(text.chars().count() / 2).unwrap().0;
    let stop: String = text[cut..].chars().take(3).collect();
    let mut body = greedy("Count from 1 to 10, separated by commas.", 40);
    body["stop"] = json!([stop.clone(), "never-appears"]);
    let v = s.chat(&body);
    let got = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(!got.contains(&stop), "{got:?} contains {stop:?}");
    assert!(text.starts_with(got), "{got:?} is not a prefix of {text:?}");
    body["stop"] = json!(stop);
    body["stream"] = json!(true);
    assert_eq!(joined(&s.stream("/v1/chat/completions", &body), 0, "content"), got);
}

#[test]
fn n_choices_are_independent_samples() {
    let s = shared();
    let v = s.chat(
        &json!({"messages": [{"role": "user", "content": "Tell me a word."}], "n": 4, "temperature": 1.2, "seed": 7, "max_tokens": 12}),
    );
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    let texts: std::collections::HashSet<&str> = choices.iter().map(|c| c["message"]["content"].as_str().unwrap()).collect();
    assert!(texts.len() >= 2, "{texts:?}");
    assert_eq!(choices.iter().map(|c| c["index"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    // The same seed reproduces the same choices.
    let again = s.chat(
        &json!({"messages": [{"role": "user", "content": "Tell me a word."}], "n": 4, "temperature": 1.2, "seed": 7, "max_tokens": 12}),
    );
    assert_eq!(v["choices"], again["choices"]);
}

#[test]
fn n_forks_one_prefill() {
    let s = Server::start(&[]);
    let before = if s.engine_is_thinkscale() { s.engine().metric("thinkscale_prompt_tokens_total") } else { 0.0 };
    let v = s.chat(&json!({"messages": [{"role": "user", "content": "Say something."}], "n": 8, "max_tokens": 5}));
    let p = v["usage"]["prompt_tokens"].as_f64().unwrap();
    // Over a remote engine the choices are 8 requests: the first alone until the engine has the
    // prompt, then 7 that find it in the engine's prefix cache (each feeds only its last token).
    let forks = if common::remote_mode() { 7.0 } else { 0.0 };
    if s.engine_is_thinkscale() {
        assert_eq!(s.engine().metric("thinkscale_prompt_tokens_total") - before, p + forks);
    }
    assert_eq!(v["choices"].as_array().unwrap().len(), 8);
}

/// A JSON integer as a schema's "integer" takes it: `-0` too, which serde_json reads as a float.
fn integral(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x.fract() == 0.0)
}

#[test]
fn response_format_constrains_the_output_to_the_schema() {
    // Over a remote engine the schema goes to the engine as `response_format`, on the requests
    // that continue a sequence into its answer.
    let s = shared();
    let schema = json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
                        "required": ["name", "age"], "additionalProperties": false});
    let format = json!({"type": "json_schema", "json_schema": {"name": "cat", "schema": schema, "strict": true}});
    for seed in 0..3 {
        let mut body = greedy("Describe a cat.", 120);
        body["temperature"] = json!(1.0);
        body["seed"] = json!(seed);
        body["response_format"] = format.clone();
        let v = s.chat(&body);
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        let cat: Value = serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        let keys: std::collections::BTreeSet<&str> = cat.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["age", "name"].into(), "{cat}");
        assert!(integral(&cat["age"]) && cat["name"].as_str().unwrap().chars().count() <= 20, "{cat}");
    }
    // With thinking the grammar covers only the answer: the chain of thought stays free text.
    for seed in 0..3 {
        let mut body = greedy("How old is a typical cat? Answer with its name and age.", 200);
        body["temperature"] = json!(0.8);
        body["seed"] = json!(seed);
        body["thinking_budget_tokens"] = json!(32);
        body["response_format"] = format.clone();
        let v = s.chat(&body);
        let m = &v["choices"][0]["message"];
        assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"].as_u64().unwrap() > 0, "{v}");
        assert!(!m["reasoning_content"].as_str().unwrap().trim().is_empty(), "{v}");
        let cat: Value = serde_json::from_str(m["content"].as_str().unwrap().trim()).unwrap_or_else(|e| panic!("{e}: {v}"));
        assert!(integral(&cat["age"]), "{v}");
    }
    // Bans cannot outlast the grammar (llama.cpp aborts when no allowed token is left): with
    // every token banned and ignore_eos, the grammar still picks a digit and then the end.
    let models: Value = s.client.get(s.url("/v1/models")).send().unwrap().json().unwrap();
    let n_vocab = models["data"][0]["meta"]["n_vocab"].as_u64().unwrap();
    let ban: serde_json::Map<String, Value> = (0..n_vocab).map(|t| (t.to_string(), json!(-100))).collect();
    for temperature in [0.0, 1.0] {
        let mut body = greedy("A digit.", 20);
        body["temperature"] = json!(temperature);
        body["ignore_eos"] = json!(true);
        body["logit_bias"] = Value::Object(ban.clone());
        body["response_format"] =
            json!({"type": "json_schema", "json_schema": {"name": "d", "schema": {"type": "integer", "minimum": 0, "maximum": 9}}});
        let v = s.chat(&body);
        let d: i64 = v["choices"][0]["message"]["content"].as_str().unwrap().trim().parse().unwrap();
        assert!((0..=9).contains(&d), "{v}");
    }
    // json_object: the first character is an object's, streamed the same way.
    let mut body = greedy("Give me a JSON list of colors.", 30);
    body["response_format"] = json!({"type": "json_object"});
    body["stream"] = json!(true);
    let text = joined(&s.stream("/v1/chat/completions", &body), 0, "content");
    assert!(text.trim_start().starts_with('{'), "{text:?}");
}

#[test]
fn logprobs_are_reported() {
    let s = shared();
    let mut body = greedy("Hi", 5);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let v = s.chat(&body);
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len() as u64, v["usage"]["completion_tokens"].as_u64().unwrap().min(5));
    for e in content {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(top[0]["token"], e["token"]);
    }
}

#[test]
fn text_completions_stream_and_not() {
    let s = shared();
    let body = json!({"prompt": "The sky is", "max_tokens": 8, "temperature": 0});
    let (status, v) = s.post("/v1/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty());
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let chunks = s.stream("/v1/completions", &sbody);
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(streamed, text);
    let (status, v) = s.post("/v1/completions", &json!({"prompt": ["One", "Two"], "max_tokens": 3, "temperature": 0}));
    assert_eq!(status, 200);
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
}

#[test]
fn utf8_survives_streaming() {
    let s = shared();
    // The grammar makes the model write this exact string, so multi-byte characters (the emoji
    // is four bytes, split over byte tokens) must cross the stream whole.
    let want = "«café crème» 🙂 日本語";
    let mut body = greedy("Repeat: «café crème» 🙂 日本語", 60);
    body["stream"] = json!(true);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string", "enum": [want]}}});
    let chunks = s.stream("/v1/chat/completions", &body);
    let text = joined(&chunks, 0, "content");
    assert_eq!(serde_json::from_str::<String>(&text).unwrap(), want, "{text:?}");
    assert!(!text.contains('\u{fffd}'), "{text:?}");
}

#[test]
fn concurrent_greedy_requests_match_sequential_ones() {
    let s = Server::start(&[]);
    let prompts: Vec<String> = (0..8).map(|i| format!("What is {} plus {}?", i + 2, i * 3 + 1)).collect();
    let sequential: Vec<Value> = prompts.iter().map(|p| s.chat(&greedy(p, 24))["choices"][0]["message"]["content"].clone()).collect();
    let concurrent: Vec<Value> = std::thread::scope(|sc| {
        let handles: Vec<_> =
            prompts.iter().map(|p| sc.spawn(|| s.chat(&greedy(p, 24))["choices"][0]["message"]["content"].clone())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, concurrent);
}

#[test]
fn simultaneous_requests_all_decode_at_once() {
    // Eight requests for eight slots: none may wait for another to finish (a scheduler bug once
    // left admitted jobs idle while the first one ran).
    let s = Server::start(&[]);
    let body = json!({"messages": [{"role": "user", "content": "Write a story."}], "max_tokens": 64, "temperature": 0, "ignore_eos": true});
    let peak = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8).map(|_| sc.spawn(|| s.chat(&body))).collect();
        let mut peak: f64 = 0.0;
        while !handles.iter().all(|h| h.is_finished()) {
            peak = peak.max(s.engine().metric("thinkscale_active_sequences"));
            std::thread::sleep(Duration::from_millis(10));
        }
        for h in handles {
            assert_eq!(h.join().unwrap()["usage"]["completion_tokens"], 64);
        }
        peak
    });
    assert_eq!(peak, 8.0);
}

#[test]
fn disconnect_mid_stream_frees_the_slot() {
    let s = Server::start(&[]);
    let body =
        json!({"messages": [{"role": "user", "content": "Write a very long essay about the sea."}], "max_tokens": 2000, "stream": true});
    let r = s.client.post(s.url("/v1/chat/completions")).json(&body).send().unwrap();
    let mut lines = BufReader::new(r).lines();
    for _ in 0..6 {
        lines.next().unwrap().unwrap();
    }
    assert_eq!(s.engine().metric("thinkscale_active_sequences"), 1.0);
    drop(lines);
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.engine().metric("thinkscale_active_sequences") != 0.0 {
        assert!(Instant::now() < deadline, "slot not freed after disconnect");
        std::thread::sleep(Duration::from_millis(20));
    }
    if s.engine_is_thinkscale() {
        assert_eq!(s.engine().metric("thinkscale_kv_cells_used"), 0.0);
    }
    // And the server still answers.
    shared_like(&s);
}

fn shared_like(s: &Server) {
    let v = s.chat(&greedy("Hello", 4));
    assert_eq!(v["object"], "chat.completion");
}

#[test]
fn full_queue_answers_429_with_retry_after() {
    let s = Server::start(&["--parallel", "1", "--queue-size", "1"]);
    let long = json!({"messages": [{"role": "user", "content": "Write a long story."}], "max_tokens": 300, "temperature": 0});
    let statuses: Vec<(u16, Option<String>, Value)> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                sc.spawn(|| {
                    let r = s.client.post(s.url("/v1/chat/completions")).json(&long).send().unwrap();
                    let st = r.status().as_u16();
                    let ra = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                    (st, ra, r.json::<Value>().unwrap())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let rejected: Vec<_> = statuses.iter().filter(|(st, _, _)| *st == 429).collect();
    assert!(!rejected.is_empty(), "{:?}", statuses.iter().map(|s| s.0).collect::<Vec<_>>());
    assert!(statuses.iter().any(|(st, _, _)| *st == 200));
    assert!(statuses.iter().all(|(st, _, _)| *st == 200 || *st == 429));
    for (_, ra, body) in rejected {
        assert!(ra.is_some());
        assert_error(body);
        assert_eq!(body["error"]["code"], "queue_full");
    }
}

#[test]
fn api_key_is_required_when_set() {
    let s = Server::start(&["--api-key", "sekret"]);
    let (status, v) = s.post("/v1/chat/completions", &greedy("hi", 2));
    assert_eq!(status, 401);
    assert_error(&v);
    let r = s.client.get(s.url("/v1/models")).bearer_auth("wrong").send().unwrap();
    assert_eq!(r.status(), 401);
    let r = s.client.post(s.url("/v1/chat/completions")).bearer_auth("sekret").json(&greedy("hi", 2)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.client.get(s.url("/health")).send().unwrap().status(), 200);
}

#[test]
fn bad_inputs_get_openai_errors_and_the_server_keeps_serving() {
    let s = shared();
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(Value, &str, u16)> = vec![
        (json!({"messages": []}), "messages", 400),
        (json!({}), "messages", 400),
        (json!({"messages": "hello"}), "messages", 400),
        (json!({"messages": [{"role": "wizard", "content": "hi"}]}), "messages[0].role", 400),
        (json!({"messages": [{"role": "user", "content": 5}]}), "messages[0].content", 400),
        (json!({"messages": [{"role": "user", "content": ""}]}), "messages", 400),
        (json!({"messages": msgs, "max_tokens": -5}), "max_tokens", 400),
        (json!({"messages": msgs, "max_tokens": 0}), "max_tokens", 400),
        (json!({"messages": msgs, "max_tokens": 999999999}), "max_tokens", 400),
        (json!({"messages": msgs, "max_tokens": "ten"}), "max_tokens", 400),
        (json!({"messages": msgs, "n": 100}), "n", 400),
        (json!({"messages": msgs, "n": 0}), "n", 400),
        (json!({"messages": msgs, "temperature": 9}), "temperature", 400),
        (json!({"messages": msgs, "temperature": -1}), "temperature", 400),
        (json!({"messages": msgs, "top_p": 2}), "top_p", 400),
        (json!({"messages": msgs, "stop": (0..500).map(|i| i.to_string()).collect::<Vec<_>>()}), "stop", 400),
        (json!({"messages": msgs, "stop": 5}), "stop", 400),
        (json!({"messages": msgs, "top_logprobs": 50, "logprobs": true}), "top_logprobs", 400),
        (json!({"messages": msgs, "stream": "yes"}), "stream", 400),
        (json!({"messages": msgs, "response_format": {"type": "xml"}}), "response_format.type", 400),
        (json!({"messages": msgs, "tools": [{"type": "retrieval", "function": {"name": "f"}}]}), "tools[0].type", 400),
        (json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "two words"}}]}), "tools[0].function.name", 400),
        (
            json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
            "tools[0].function.parameters",
            400,
        ),
        (json!({"messages": msgs, "tools": "f"}), "tools", 400),
        (json!({"messages": msgs, "tool_choice": "required"}), "tool_choice", 400),
        (
            json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
            400,
        ),
        (
            json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": 5}}]}]}),
            "messages[1].tool_calls[0].function.arguments",
            400,
        ),
        (
            json!({"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frog"}}}}),
            "response_format",
            400,
        ),
    ];
    for (body, param, status) in cases {
        let (st, v) = s.post("/v1/chat/completions", &body);
        assert_eq!(st, status, "{body} -> {v}");
        assert_error(&v);
        assert_eq!(v["error"]["param"], param, "{body} -> {v}");
    }
    for raw in [
        b"{not json".to_vec(),
        b"[1,2]".to_vec(),
        vec![0xff, 0xfe, b'{'],
        Vec::new(),
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\"}]}".to_vec(),
    ] {
        let (st, v) = s.post_raw("/v1/chat/completions", raw.clone());
        assert_eq!(st, 400, "{:?} -> {v}", String::from_utf8_lossy(&raw));
        assert_error(&v);
    }
    let huge = format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}", "a".repeat(3 * 1024 * 1024));
    let (st, v) = s.post_raw("/v1/chat/completions", huge.into_bytes());
    assert_eq!(st, 413);
    assert_error(&v);
    let long = "word ".repeat(3000);
    let (st, v) = s.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": long}]}));
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    let (st, v) = s.post("/v1/completions", &json!({"prompt": [1, -4]}));
    assert_eq!(st, 400, "{v}");
    let r = s.client.get(s.url("/v1/nope")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_error(&r.json().unwrap());
    let r = s.client.get(s.url("/v1/chat/completions")).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_error(&r.json().unwrap());
    // After all of that, a normal request still works.
    let v = s.chat(&greedy("Hello", 4));
    assert_eq!(v["object"], "chat.completion");
}

#[test]
fn a_missing_or_broken_model_stops_the_server_with_a_message() {
    let run = |model: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_thinkscale"))
            .args(["serve", "--model", model, "--port", "0"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run("models/nope.gguf");
    assert_eq!(code, Some(1));
    assert!(err.contains("models/fetch.sh"), "{err}");
    // Not a GGUF: the server exits instead of answering 503 as if still loading.
    let (code, err) = run("README.md");
    assert_eq!(code, Some(1));
    assert!(err.contains("model failed to load"), "{err}");
}

#[test]
fn a_failed_engine_is_reported_then_the_server_exits_non_zero() {
    let mut s = Server::start(&["--test-hooks"]);
    if !s.engine_is_thinkscale() {
        // The failure is injected into thinkscale's engine; a dead llama-server is tests/remote.rs's.
        return;
    }
    // A handler that panics answers an OpenAI 500, and the server goes on serving.
    let (st, v) = s.post("/debug/handler-panic", &json!({}));
    assert_eq!(st, 500, "{v}");
    assert_error(&v);
    assert!(!v["error"]["message"].as_str().unwrap().contains("test hook"), "internals leaked: {v}");
    assert!(s.chat(&greedy("Hello", 4))["choices"][0]["message"]["content"].is_string());
    assert_eq!(s.metric("thinkscale_engine_up"), 1.0);
    // A request decoding when the engine fails gets a clear error, not a hang.
    let (client, url) = (s.client.clone(), s.url("/v1/chat/completions"));
    let inflight = std::thread::spawn(move || {
        let r = client
            .post(url)
            .json(&json!({"messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 1500, "ignore_eos": true}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.engine().metric("thinkscale_active_sequences") < 1.0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.engine().post("/debug/engine-panic", &json!({})).0, 200);
    let (status, v) = inflight.join().unwrap();
    assert_eq!(status, 500, "{v}");
    assert_error(&v);
    // By the time the request hears of it, /health says so (remote mode: the engine under this
    // server failed, which it reports as "no backend replica is up").
    let says = if common::remote_mode() { "no backend replica is up" } else { "engine failed" };
    let r = s.client.get(s.url("/health")).send().unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains(says), "{v}");
    // Then the engine's process stops with an error, for an orchestrator to restart it; a
    // server over it stays up, answering 503 until the engine is back.
    match &mut s.inner {
        Some(engine) => {
            assert_ne!(engine.exit_code(Duration::from_secs(30)), 0);
            let (st, v) = s.post("/v1/chat/completions", &greedy("Hello", 4));
            assert_eq!(st, 503, "{v}");
            assert_error(&v);
        }
        None => assert_ne!(s.exit_code(Duration::from_secs(30)), 0),
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut s = Server::start(&[]);
    let client = s.client.clone();
    let url = s.url("/v1/chat/completions");
    let inflight = std::thread::spawn(move || {
        let r = client
            .post(url)
            .json(&json!({"messages": [{"role": "user", "content": "Tell a story."}], "max_tokens": 64, "temperature": 0}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap())
    });
    // An idle keep-alive connection (as a dashboard tab or a scraper holds) must not keep the
    // server alive once the in-flight work is done.
    let mut idle = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.engine().metric("thinkscale_active_sequences") < 1.0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(s.terminate(), 0);
    drop(idle);
    let (status, v) = inflight.join().unwrap();
    assert_eq!(status, 200);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn prompts_longer_than_a_batch_are_prefilled_in_chunks() {
    let s = shared();
    let long = "one two three four five six seven eight nine ten ".repeat(130);
    let v = s.chat(&json!({"messages": [{"role": "user", "content": long}], "max_tokens": 4, "temperature": 0, "ignore_eos": true}));
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 1024, "{}", v["usage"]);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn a_finished_request_leaves_its_prompt_cached() {
    let s = Server::start(&[]);
    let ask = |content: &str| s.chat(&json!({"messages": [{"role": "user", "content": content}], "max_tokens": 12, "temperature": 0}));
    let cached = |v: &Value| v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    let first = ask("Name three colours of the rainbow.");
    assert_eq!(cached(&first), 0);
    let counted = |name| if s.engine_is_thinkscale() { s.engine().metric(name) } else { 0.0 };
    let before = counted("thinkscale_prompt_tokens_total");
    let cached_before = counted("thinkscale_prompt_cached_tokens_total");
    let again = ask("Name three colours of the rainbow.");
    let p = again["usage"]["prompt_tokens"].as_u64().unwrap();
    // Everything but the last prompt token, which is fed to the sequence for its logits.
    assert_eq!(cached(&again), p - 1, "{}", again["usage"]);
    if s.engine_is_thinkscale() {
        assert_eq!(counted("thinkscale_prompt_tokens_total") - before, 1.0);
        assert_eq!(counted("thinkscale_prompt_cached_tokens_total") - cached_before, (p - 1) as f64);
    }
    if common::reproducible() {
        assert_eq!(again["choices"][0]["message"]["content"], first["choices"][0]["message"]["content"]);
    }
    // A different question shares only the template's opening tokens.
    let other = ask("Why is the sky blue?");
    let q = other["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached(&other) > 0 && cached(&other) < q - 1, "{}", other["usage"]);
    if common::reproducible() {
        let fresh = Server::start(&[]);
        let v = fresh.chat(&json!({"messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 12, "temperature": 0}));
        assert_eq!(other["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"]);
    }
}

#[test]
fn the_whole_slot_is_usable_and_completions_report_cached_tokens() {
    // 16384 cells / 8 slots: 2048 tokens per request. A prompt of 2040 leaves room for 8.
    let s = Server::start(&[]);
    let prompt = |n: usize| json!((0..n).map(|i| 300 + (i % 50) as i64).collect::<Vec<_>>());
    let (st, v) = s.post("/v1/completions", &json!({"prompt": prompt(2040), "max_tokens": 4, "temperature": 0}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 4, "{v}");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "{v}");
    // Asked for more than fits, the output runs to the end of the slot, not 64 tokens short.
    let (st, v) = s.post("/v1/completions", &json!({"prompt": prompt(2040), "max_tokens": 100, "temperature": 0, "ignore_eos": true}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 8, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // The second time the prompt is (all but its last token) cached, and usage says so.
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 2039, "{v}");
    assert!(v["usage"]["completion_tokens_details"]["reasoning_tokens"].is_u64(), "{v}");
    let (st, v) = s.post("/v1/completions", &json!({"prompt": prompt(2048), "max_tokens": 1}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

#[test]
fn a_chat_turn_reuses_the_previous_answer() {
    let s = Server::start(&[]);
    let first_turn = json!([{"role": "user", "content": "Write a haiku about rain."}]);
    let first = s.chat(&json!({"messages": first_turn, "max_tokens": 24, "temperature": 0}));
    let used = first["usage"]["prompt_tokens"].as_u64().unwrap() + first["usage"]["completion_tokens"].as_u64().unwrap();
    let mut messages = first_turn.as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": first["choices"][0]["message"]["content"]}));
    messages.push(json!({"role": "user", "content": "Tell me more."}));
    let body = json!({"messages": messages, "max_tokens": 16, "temperature": 0});
    let second = s.chat(&body);
    // The first turn's prompt and answer come from the cache, all but the token where they meet
    // the template's end-of-turn marker.
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached + 1 >= used, "{} of {used}", second["usage"]);
    if common::reproducible() {
        let fresh = Server::start(&[]);
        assert_eq!(second["choices"][0]["message"]["content"], fresh.chat(&body)["choices"][0]["message"]["content"]);
    }
}

#[test]
fn a_live_request_shares_its_prompt_prefix() {
    let s = Server::start(&[]);
    let prompt = "Describe the water cycle in detail, step by step, for a school report.";
    let body = |n: u32| json!({"messages": [{"role": "user", "content": prompt}], "max_tokens": n, "temperature": 0});
    std::thread::scope(|sc| {
        let long = sc.spawn(|| s.chat(&body(300)));
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.engine().metric("thinkscale_active_sequences") < 1.0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        let counted = || if s.engine_is_thinkscale() { s.engine().metric("thinkscale_prompt_tokens_total") } else { 0.0 };
        let before = counted();
        let short = s.chat(&body(8));
        let p = short["usage"]["prompt_tokens"].as_u64().unwrap();
        let cached = short["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
        if !s.engine_is_thinkscale() {
            // llama-server copies a live slot's prompt into another only when it starts that slot
            // from it; whatever it reused, it says so.
            assert!(cached < p, "{}", short["usage"]);
            return;
        }
        assert_eq!(cached, p - 1, "{}", short["usage"]);
        assert_eq!(counted() - before, (p - cached) as f64);
        // Same tokens as the long request's first eight: the copied cache is exact.
        let long = long.join().unwrap();
        let a = short["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(long["choices"][0]["message"]["content"].as_str().unwrap().starts_with(a));
    });
}

/// A stand-in OTLP/HTTP collector: every body POSTed to it, answered 200.
fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                sink.lock().unwrap().extend_from_slice(&body);
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn one_request_s_spans_reach_an_otlp_collector() {
    let (url, got) = collector();
    let mut s = Server::start(&["--otlp-endpoint", &url]);
    let v = s.chat(&json!({"messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 60,
                           "thinking_budget_tokens": 16}));
    let id = v["id"].as_str().unwrap().to_string();
    // A clean exit flushes the spans still batched.
    assert_eq!(s.terminate(), 0);
    let body = got.lock().unwrap().clone();
    let has = |t: &str| body.windows(t.len()).any(|w| w == t.as_bytes());
    // The protobuf holds names and attribute values as plain UTF-8.
    for t in ["thinkscale", id.as_str(), "job", "queue", "prefill", "thinking", "answer"] {
        assert!(has(t), "{t:?} not exported ({} bytes reached the collector)", body.len());
    }
}

#[test]
fn one_request_s_spans_are_in_the_log() {
    let log = std::env::temp_dir().join(format!("thinkscale-spans-{}.log", std::process::id()));
    let s = Server::logging("warn,spans=info", &log, &[]);
    let verifier = json!({"type": "regex", "pattern": "\\d"});
    let v = s.chat(&json!({"messages": [{"role": "user", "content": "What is 2 + 3?"}], "max_tokens": 120,
                           "thinking_budget_tokens": 16, "samples": 2, "verifier": verifier}));
    let id = v["id"].as_str().unwrap().to_string();
    drop(s);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let ours: Vec<&str> = text.lines().filter(|l| l.contains(&id)).collect();
    // Each phase's span closes under the request's `job` span, verify included.
    for span in ["}:queue:", "}:prefill{prompt_tokens=", "}:thinking{sequence=0", "}:answer{sequence=1", "}:verify{verifier=\"regex\""] {
        assert!(ours.iter().any(|l| l.contains(span)), "no {span} span for {id} in:\n{text}");
    }
    assert!(ours.iter().any(|l| l.contains("sequences=2}: spans: close")), "the job span did not close:\n{text}");
}
