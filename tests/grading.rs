//! Grading, /v1/feedback, /v1/scaling, graded metrics and the eval harness end to end.

mod common;

use std::process::Command;

use common::Server;
use serde_json::{json, Value};

fn ask(s: &Server, q: &str, extra: Value) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": q}], "temperature": 0, "thinking_budget_tokens": 24});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    s.chat(&body)
}

#[test]
fn requests_are_graded_inline_and_by_feedback() {
    let s = Server::start(&[]);
    // Inline: a reference answer that cannot match and one that matches whatever was extracted.
    let v = ask(&s, "What is 2 + 5?", json!({"metadata": {"expected_answer": "not-a-number"}}));
    assert_eq!(v["thinkscale"]["graded"]["correct"], false);
    // Later: by id, with the expected answer or a verdict.
    let a = ask(&s, "What is 3 + 4?", json!({}));
    let id = a["id"].as_str().unwrap();
    let (st, fb) = s.post("/v1/feedback", &json!({"id": id, "correct": true}));
    assert_eq!(st, 200, "{fb}");
    assert_eq!(fb["correct"], true);
    let (st, fb) = s.post("/v1/feedback", &json!({"id": id, "correct": false}));
    assert_eq!(st, 400);
    assert_eq!(fb["error"]["code"], "already_graded");
    let (st, _) = s.post("/v1/feedback", &json!({"id": "chatcmpl-nope", "correct": true}));
    assert_eq!(st, 404);
    let (st, _) = s.post("/v1/feedback", &json!({"id": id}));
    assert_eq!(st, 400);
    let b = ask(&s, "What is 1 + 1?", json!({"samples": 2}));
    let (st, fb) = s.post("/v1/feedback", &json!({"id": b["id"], "expected_answer": "#### 2"}));
    assert_eq!(st, 200, "{fb}");
    assert_eq!(fb["labels"]["samples"], "2");

    let table: Value = s.client.get(s.url("/v1/scaling")).send().unwrap().json().unwrap();
    let rows = table["data"].as_array().unwrap();
    let graded: u64 = rows.iter().map(|r| r["graded"].as_u64().unwrap()).sum();
    assert_eq!(graded, 3);
    for r in rows {
        let (lo, acc, hi) = (r["ci_low"].as_f64().unwrap(), r["accuracy"].as_f64().unwrap(), r["ci_high"].as_f64().unwrap());
        assert!(lo <= acc && acc <= hi);
        assert_eq!(r["budget"], "64");
    }
    let m = s.metrics();
    assert!(m.contains(r#"thinkscale_graded_requests_total{budget="64",effort="budget",outcome="incorrect",samples="1"} 1"#), "{m}");
    assert!(m.contains(r#"thinkscale_graded_requests_total{budget="64",effort="budget",outcome="correct",samples="1"} 1"#));
    // Posted observations join the table; unknown labels are refused.
    let (st, _) = s.post("/v1/scaling/observations", &json!({"observations": [{"effort": "low", "budget": "256", "samples": "4", "correct": true, "thinking_seconds": 1.5, "thinking_tokens": 300}]}));
    assert_eq!(st, 200);
    let (st, _) = s.post("/v1/scaling/observations", &json!({"observations": [{"effort": "x", "budget": "256", "samples": "4", "correct": true, "thinking_seconds": 1.5, "thinking_tokens": 300}]}));
    assert_eq!(st, 400);
}

#[test]
fn eval_harness_sweeps_a_grid_and_writes_plots() {
    let s = Server::start(&[]);
    let out = std::env::temp_dir().join(format!("thinkscale-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bin = env!("CARGO_BIN_EXE_thinkscale");
    let data = out.with_extension("jsonl");
    let gen = Command::new(bin).args(["eval", "gen", "--count", "4", "--seed", "3", "--out", data.to_str().unwrap()]).status().unwrap();
    assert!(gen.success());
    let run = |limit: &str| {
        Command::new(bin)
            .args([
                "eval",
                "run",
                "--url",
                &s.base,
                "--data",
                data.to_str().unwrap(),
                "--budgets",
                "0,16",
                "--samples",
                "1,2",
                "--limit",
                limit,
                "--concurrency",
                "4",
                "--answer-tokens",
                "8",
                "--post",
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    let first = run("2");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    // Resuming with more questions only runs the new ones.
    let second = run("4");
    assert!(second.status.success());
    let lines = std::fs::read_to_string(out.join("results.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 4 * 2 * 2);
    for f in [
        "results.csv",
        "summary.csv",
        "summary.json",
        "accuracy_vs_seconds.svg",
        "accuracy_vs_seconds.png",
        "accuracy_vs_tokens.svg",
        "accuracy_vs_tokens.png",
    ] {
        assert!(out.join(f).metadata().unwrap().len() > 100, "{f}");
    }
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["cells"].as_array().unwrap().len(), 4);
    assert_eq!(summary["s1"]["control"], 1.0);
    assert!(std::fs::read_to_string(out.join("accuracy_vs_tokens.svg")).unwrap().contains("samples 2"));
    // --post fed the server's table.
    let table: Value = s.client.get(s.url("/v1/scaling")).send().unwrap().json().unwrap();
    let graded: u64 = table["data"].as_array().unwrap().iter().map(|r| r["graded"].as_u64().unwrap()).sum();
    assert_eq!(graded, 16);
}
