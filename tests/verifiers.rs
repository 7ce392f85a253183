//! Verifiers that execute or call out, on the real server: `verifier: "tests"` runs each sample's
//! program in the sandbox (Qwen2.5-Coder-0.5B writes the programs), hostile client tests are
//! contained, regex and operator-configured HTTP checkers score, and a checker that fails or
//! hangs scores 0 while the request still answers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use common::Server;
use serde_json::{json, Value};
use thinkscale::reasoning::schema;

const ADD: &str = "Complete this function and reply with it in one ```python block.\n\n```python\ndef add(a, b):\n    \"\"\"Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    \"\"\"\n```";

fn qwen() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/qwen2.5-coder-0.5b-instruct.gguf");
    assert!(p.exists(), "run models/fetch.sh qwen0.5");
    p.display().to_string()
}

fn coder(extra: &[&str]) -> Server {
    let model = qwen();
    let mut flags = vec!["--model", model.as_str(), "--code-exec", "python"];
    flags.extend(extra);
    Server::start(&flags)
}

fn code_request(reasoning: Value) -> Value {
    json!({"messages": [{"role": "user", "content": ADD}], "max_tokens": 120, "temperature": 0.7, "seed": 5, "reasoning": reasoning})
}

fn samples(v: &Value) -> &Vec<Value> {
    v["choices"][0]["thinkscale"]["samples"].as_array().unwrap()
}

#[test]
fn tests_verifier_runs_programs_against_the_docstring_and_client_tests() {
    let s = coder(&[]);
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 3, "verifier": "tests"})));
    let samples_prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let ext = &v["choices"][0]["thinkscale"];
    assert_eq!(ext["verifier"], "tests");
    for smp in samples(&v) {
        let t = &smp["tests"];
        assert_eq!(t["run"], 2, "both docstring examples ran: {smp}");
        assert!(t["passed"].as_u64().unwrap() <= 2);
        assert!(smp["score"].as_f64().unwrap() >= 0.0 && smp["score"].as_f64().unwrap() <= 1.0);
    }
    // The 0.5B coder adds two numbers: some sample passes both examples and is the one chosen.
    let chosen = ext["chosen_sample"].as_u64().unwrap() as usize;
    assert_eq!(samples(&v)[chosen]["tests"]["passed"], 2, "{ext}");
    assert!(ext["why"].as_str().unwrap().contains("passed 2/2"), "{ext}");
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().contains("def add"));

    // Client tests replace the docstring: an assert that no correct add passes fails everywhere.
    let v = s.chat(&code_request(
        json!({"enabled": false, "samples": 2, "verifier": "tests", "tests": "assert add(1, 1) == 2\nassert add(2, 2) == 5"}),
    ));
    for smp in samples(&v) {
        assert_eq!(smp["tests"]["run"], 2, "{smp}");
        assert!(smp["tests"]["passed"].as_u64().unwrap() <= 1, "{smp}");
    }
    // Model-written tests (CodeT): the model writes asserts for add, every program runs them, and
    // the largest set agreeing on the most tests wins.
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 3, "verifier": "tests", "tests": "generated"})));
    let ext = &v["choices"][0]["thinkscale"];
    let run = samples(&v).iter().filter_map(|smp| smp["tests"]["run"].as_u64()).max().unwrap_or(0);
    assert!(run >= 2, "the model wrote asserts and they ran: {ext}");
    assert!(ext["why"].as_str().unwrap().contains("dual execution agreement"), "{ext}");
    // Writing the tests is billed: its prompt (this one, plus the ask for asserts) and its answer.
    let sampled: u64 = samples(&v).iter().map(|smp| smp["completion_tokens"].as_u64().unwrap()).sum();
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 2 * samples_prompt, "{}", v["usage"]);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > sampled, "{} {sampled}", v["usage"]);
    // A function the prompt does not define cannot get tests written for it.
    let (st, e) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Sort a list."}], "reasoning": {"samples": 2, "verifier": "tests", "tests": "generated"}}),
    );
    assert_eq!((st, e["error"]["param"].as_str()), (400, Some("reasoning.entry_point")), "{e}");
    // Streamed, the vote waits for the verifier and the last chunk carries its verdicts.
    let mut body = code_request(json!({"enabled": false, "samples": 2, "verifier": "tests"}));
    body["stream"] = json!(true);
    let chunks = s.stream("/v1/chat/completions", &body);
    let last = chunks.iter().rev().find(|c| c["choices"][0]["finish_reason"].is_string()).unwrap();
    assert_eq!(last["choices"][0]["thinkscale"]["samples"][0]["tests"]["run"], 2, "{last}");
}

#[test]
fn adaptive_tests_stop_once_a_program_passes_and_the_usage_says_what_ran() {
    let s = coder(&[]);
    let adaptive = |tests: Option<&str>| {
        let mut r = json!({"enabled": false, "samples": 8, "verifier": "tests", "adaptive": true});
        if let Some(t) = tests {
            r["tests"] = json!(t);
        }
        code_request(r)
    };
    // The 0.5B coder adds two numbers: the first waves (its greedy answer, then 2 samples) have a
    // program passing both examples, the choice stops there and the rest never run.
    let v = s.chat(&adaptive(None));
    let ext = &v["choices"][0]["thinkscale"];
    assert_eq!(ext["stopped_early"], true, "{ext}");
    let chosen = ext["chosen_sample"].as_u64().unwrap() as usize;
    assert_eq!(samples(&v)[chosen]["tests"]["passed"], 2, "{ext}");
    let seqs = &v["usage"]["sequences"];
    assert_eq!(seqs["requested"], 8, "{}", v["usage"]);
    assert!(seqs["run"].as_u64().unwrap() <= 2 && seqs["cancelled"].as_u64().unwrap() >= 6, "{}", v["usage"]);
    assert_eq!(v["timings"]["sequences"], *seqs, "{}", v["timings"]);
    let sampled: u64 = samples(&v).iter().map(|smp| smp["completion_tokens"].as_u64().unwrap()).sum();
    assert_eq!(v["usage"]["completion_tokens"].as_u64().unwrap(), sampled, "only the chains that ran are billed");
    // The first sample is the model's greedy answer, decoded alone first: another seed gives the
    // same one, and a second sample only ran if it failed.
    let mut reseeded = adaptive(None);
    reseeded["seed"] = json!(977);
    let w = s.chat(&reseeded);
    assert_eq!(samples(&w)[0]["content"], samples(&v)[0]["content"], "the first sample is not greedy");
    if samples(&v)[0]["tests"]["passed"] == 2 {
        assert_eq!(v["usage"]["sequences"]["run"], 1, "{}", v["usage"]);
    }
    // Tests no correct add passes: no wave settles it, the waves move on as their verdicts come
    // until reasoning.tests_give_up (7) programs failed: the greedy answer and three waves of two;
    // the eighth sample never starts.
    let v = s.chat(&adaptive(Some("assert add(2, 2) == 5")));
    let ext = &v["choices"][0]["thinkscale"];
    assert_eq!(ext["stopped_early"], true, "{ext}");
    assert_eq!(v["usage"]["sequences"], json!({"requested": 8, "run": 7, "cancelled": 1}), "{}", v["usage"]);
    assert_eq!(samples(&v).iter().filter(|smp| smp["tests"]["passed"] == 0).count(), 7, "{ext}");
    // Streamed: the stop shows in the progress, and the last chunk's usage counts the cancelled.
    let mut body = adaptive(None);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = s.stream("/v1/chat/completions", &body);
    let usage = chunks.iter().rev().find_map(|c| c.get("usage").filter(|u| !u.is_null())).unwrap();
    assert!(usage["sequences"]["cancelled"].as_u64().unwrap() >= 6, "{usage}");
}

#[test]
fn hostile_client_tests_are_contained_and_the_server_keeps_answering() {
    let s = coder(&[]);
    // The control: with the honest assert alone, a sample passes (the model wrote `add`).
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": "tests", "tests": "assert add(1, 2) == 3"})));
    assert!(samples(&v).iter().any(|smp| smp["score"] == 1.0), "{v}");
    // Each suite ends in an honest assert, so a sample scores above 0 exactly when the hostile part
    // before it got through: what would let it is named beside it.
    let tmp = std::env::temp_dir();
    let secret = tmp.join(format!("thinkscale-secret-{}", uuid::Uuid::new_v4()));
    std::fs::write(&secret, "SECRET").unwrap();
    let planted = tmp.join(format!("thinkscale-planted-{}", uuid::Uuid::new_v4()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hostile = [
        (
            "no process limit",
            "import os, time\nfor _ in range(64):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)".to_string(),
        ),
        ("no CPU or wall-clock limit", "n = 0\nwhile n < 10**9:\n    n += 1".into()),
        ("no wall-clock limit", "import time\ntime.sleep(120)".into()),
        ("no memory limit", "x = bytearray(2 * 1024**3)".into()),
        ("no output cap", "import sys\nfor _ in range(512):\n    sys.stdout.write('x' * 2**20)".into()),
        ("the host's files visible", format!("data = open('{}').read()", secret.display())),
        ("the host's files writable", format!("open('{}', 'w').write('x')", planted.display())),
        ("the host's network reachable", format!("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")),
    ];
    for (guard, hostile) in hostile {
        let tests = format!("{hostile}\nassert add(1, 2) == 3");
        let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": "tests", "tests": tests})));
        for smp in samples(&v) {
            // A failed candidate: what the tests tried was refused or killed, so nothing passes.
            assert_eq!(smp["score"], 0.0, "{guard}? {hostile}: {smp}");
        }
        let health = s.client.get(s.url("/health")).send().unwrap();
        assert_eq!(health.status(), 200, "{hostile}");
    }
    std::fs::remove_file(&secret).unwrap();
    assert!(!planted.exists(), "a client's test wrote to the host");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "a client's test reached the host's loopback");
    // These do nothing harmful where they run, so an honest assert after them may pass: killing
    // the parent reaches only the sandbox's own init, and a left-behind child dies with the run.
    let marker = format!("thinkscale-left-{}", std::process::id());
    let spawn = format!("import subprocess\nsubprocess.Popen(['/bin/sh', '-c', 'exec -a {marker} sleep 1000'], start_new_session=True)\nassert add(1, 2) == 3");
    for tests in ["import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nassert add(1, 2) == 3", spawn.as_str()] {
        let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": "tests", "tests": tests})));
        assert_eq!(samples(&v).len(), 2, "{tests}");
        assert_eq!(s.client.get(s.url("/health")).send().unwrap().status(), 200, "{tests}");
    }
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(&marker), "a process the tests started outlived the run");
}

#[test]
fn checks_need_their_flag_and_valid_settings() {
    let s = Server::start(&[]);
    let (st, v) = s.post("/v1/chat/completions", &code_request(json!({"samples": 2, "verifier": "tests"})));
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("--code-exec python"), "{v}");
    for (reasoning, param) in [
        (json!({"samples": 2, "verifier": {"type": "regex", "pattern": "("}}), "reasoning.verifier.pattern"),
        (json!({"samples": 2, "verifier": {"type": "regex"}}), "reasoning.verifier.pattern"),
        (json!({"samples": 2, "verifier": {"type": "shell"}}), "reasoning.verifier.type"),
        (json!({"samples": 2, "verifier": {"type": "json_schema"}}), "reasoning.verifier.schema"),
        (
            json!({"samples": 2, "verifier": {"type": "json_schema", "schema": {"type": "string", "format": "email"}}}),
            "reasoning.verifier.schema",
        ),
        (json!({"samples": 2, "verifier": {"type": "http", "name": "nope"}}), "reasoning.verifier.name"),
        (json!({"samples": 2, "verifier": "none", "tests": "assert True"}), "reasoning.tests"),
        (json!({"samples": 2, "verifier": "tests", "entry_point": "os.system"}), "reasoning.entry_point"),
        (json!({"samples": 2, "verifier": "tests", "tests": 7}), "reasoning.tests"),
    ] {
        let (st, v) = s.post("/v1/chat/completions", &code_request(reasoning.clone()));
        assert_eq!(st, 400, "{reasoning}: {v}");
        assert_eq!(v["error"]["param"], param, "{reasoning}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    // With the sandbox, a prompt without examples and no tests has nothing to run.
    let s = coder(&[]);
    let (st, v) = s.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Write a sorting function."}], "reasoning": {"samples": 2, "verifier": "tests"}}),
    );
    assert_eq!((st, v["error"]["param"].as_str()), (400, Some("reasoning.tests")), "{v}");
}

/// A checker on loopback: answers each request by `reply` (None: never answers).
fn checker(reply: Option<&'static str>) -> (String, std::sync::mpsc::Receiver<Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/check", l.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
                match reply {
                    Some(text) => {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                            text.len()
                        );
                    }
                    None => std::thread::sleep(std::time::Duration::from_secs(120)),
                }
            });
        }
    });
    (url, rx)
}

#[test]
fn regex_json_schema_and_http_checkers_score_and_a_hung_checker_scores_zero() {
    let (good, asked) = checker(Some(r#"{"score": 0.75}"#));
    let (hung, _) = checker(None);
    let (fusion, ran) = checker(Some(r#"{"status": "Success", "run_result": {"return_code": 0}}"#));
    let dir = std::env::temp_dir().join(format!("thinkscale-verifiers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!("verifier_timeout = 3.0\n[verifiers.good]\nurl = \"{good}\"\n[verifiers.hung]\nurl = \"{hung}\"\n[verifiers.fusion]\nurl = \"{fusion}\"\nkind = \"sandbox_fusion\"\n"),
    )
    .unwrap();
    let s = coder(&["--config", cfg.to_str().unwrap()]);
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": {"type": "http", "name": "good"}})));
    for smp in samples(&v) {
        assert_eq!(smp["score"], 0.75, "{smp}");
    }
    let sent = asked.recv().unwrap();
    assert!(sent["prompt"].as_str().unwrap().contains("def add") && sent["answer"].is_string(), "{sent}");

    let started = std::time::Instant::now();
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": {"type": "http", "name": "hung"}})));
    assert!(started.elapsed().as_secs() < 60);
    for smp in samples(&v) {
        assert_eq!(smp["score"], 0.0, "{smp}");
        assert!(smp["verifier_error"].as_str().unwrap().contains("took over"), "{smp}");
    }

    let v = s.chat(&code_request(
        json!({"enabled": false, "samples": 2, "verifier": {"type": "http", "name": "fusion"}, "tests": "assert add(2, 2) == 4"}),
    ));
    let sent = ran.recv().unwrap();
    assert_eq!(sent["language"], "python");
    assert!(sent["code"].as_str().unwrap().ends_with("assert add(2, 2) == 4\n"), "{sent}");
    assert!(samples(&v).iter().any(|smp| smp["score"] == 1.0), "{v}");

    // Regex: 1 for an answer that matches, 0 for one that does not.
    let v = s.chat(&code_request(json!({"enabled": false, "samples": 2, "verifier": {"type": "regex", "pattern": "(?s).*def add.*"}})));
    for smp in samples(&v) {
        let matches = smp["content"].as_str().unwrap().contains("def add");
        assert_eq!(smp["score"], if matches { 1.0 } else { 0.0 }, "{smp}");
    }
    // JSON schema: 1 exactly for the answers whose JSON satisfies it.
    let schema = json!({"type": "object", "required": ["sum"], "properties": {"sum": {"type": "integer"}}});
    let v = s.chat(&json!({
        "messages": [{"role": "user", "content": "Reply with only a JSON object whose key \"sum\" holds 2 + 3."}],
        "max_tokens": 40, "temperature": 0.9, "seed": 2,
        "reasoning": {"enabled": false, "samples": 3, "verifier": {"type": "json_schema", "schema": schema}}
    }));
    for smp in samples(&v) {
        let fits = schema::answer_json(smp["content"].as_str().unwrap()).is_some_and(|j| schema::valid(&schema, &j));
        assert_eq!(smp["score"], if fits { 1.0 } else { 0.0 }, "{smp}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
