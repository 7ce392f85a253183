//! The sweep: every (budget, samples) cell over every problem, resumable, with a progress bar.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::derive::{chains_of, message_reasoning, ChainRecord};
use super::gen::{generate, Problem};
use super::RunArgs;
use crate::reasoning::grade::grade;
use crate::reasoning::labels::{BudgetBucket, Effort, SamplesBucket};

/// One graded request of the sweep (a line of results.jsonl).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub cell: String,
    /// How samples were pruned or filtered (`prune`, `top0.5`, ...), empty for a plain vote.
    #[serde(default)]
    pub variant: String,
    /// Thinking budget in tokens, or an effort level.
    pub budget: String,
    pub samples: u32,
    pub id: String,
    pub level: u32,
    pub correct: bool,
    pub extracted: Option<String>,
    pub expected: String,
    /// Thinking tokens across all samples (the compute spent).
    pub thinking_tokens: f64,
    /// Thinking wall time (samples run in parallel): the server's `timings.thinking_ms`, or the
    /// whole latency for servers that do not split it.
    pub thinking_seconds: f64,
    pub completion_tokens: f64,
    pub latency_seconds: f64,
    pub samples_used: u32,
    /// Every sample's thinking stayed within the budget (s1 Control); None without a token budget.
    pub within_budget: Option<bool>,
    pub error: Option<String>,
}

impl Record {
    /// A record for this cell and problem with nothing measured yet.
    fn empty(budget: &str, samples: u32, variant: &str, p: &Problem) -> Self {
        Record {
            cell: cell_id(budget, samples, variant),
            variant: variant.to_string(),
            budget: budget.to_string(),
            samples,
            id: p.id.clone(),
            level: p.level,
            correct: false,
            extracted: None,
            expected: p.answer.rsplit("####").next().unwrap_or("").trim().to_string(),
            thinking_tokens: 0.0,
            thinking_seconds: 0.0,
            completion_tokens: 0.0,
            latency_seconds: 0.0,
            samples_used: 0,
            within_budget: None,
            error: None,
        }
    }
}

pub fn cell_id(budget: &str, samples: u32, variant: &str) -> String {
    if variant.is_empty() {
        format!("b{budget}-s{samples}")
    } else {
        format!("b{budget}-s{samples}-{variant}")
    }
}

/// The cell variant a run's pruning flags make for a cell of `samples` chains.
fn variant(a: &RunArgs, samples: u32) -> String {
    let mut v = Vec::new();
    if samples > 1 && a.prune {
        v.push("prune".to_string());
    }
    if let (true, Some(k)) = (samples > 1, a.keep_top) {
        v.push(format!("top{k}"));
    }
    if samples > 1 && a.aggregate == "confidence" {
        v.push("conf".to_string());
    }
    if let (true, Some(w)) = (samples > 1, a.warmup) {
        v.push(format!("w{w}"));
    }
    // Two passes over the same grid with different voting land in cells of their own.
    if samples > 1 && a.verifier != "none" {
        v.push(a.verifier.clone());
    }
    if samples > 1 && a.adaptive {
        v.push("adaptive".to_string());
    }
    v.join("+")
}

fn load_problems(a: &RunArgs) -> anyhow::Result<Vec<Problem>> {
    let mut problems = match &a.data {
        None if a.source == Some(super::Source::Gsm8k) => super::gsm8k::load(a.split)?,
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                let mut p: Problem = serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))?;
                if p.id.is_empty() {
                    p.id = format!("q{i:05}");
                }
                Ok(p)
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => generate(a.gen, &a.levels, a.seed),
    };
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    Ok(problems)
}

fn request_body(a: &RunArgs, budget: &str, samples: u32, p: &Problem, seed: u64) -> Value {
    let mut body = json!({
        "model": a.model,
        "messages": [{"role": "user", "content": p.question}],
        "temperature": a.temperature,
        "seed": seed,
    });
    if let Some(k) = a.top_k {
        body["top_k"] = json!(k);
    }
    match (budget, budget.parse::<u32>()) {
        (_, Ok(b)) => {
            body["thinking_budget_tokens"] = json!(b);
            // Room for the injected close (when there is thinking) and a short answer.
            body["max_tokens"] = json!(if b == 0 { a.answer_tokens } else { b + 32 + a.answer_tokens });
        }
        ("unlimited", _) => {
            body["thinking_budget_tokens"] = json!(-1);
            body["max_tokens"] = json!(a.max_tokens);
        }
        ("plain", _) => body["max_tokens"] = json!(a.max_tokens),
        // auto may choose an unlimited budget: the same cap as `unlimited`.
        (b, _) if b == Effort::Auto.as_str() => {
            body["reasoning_effort"] = json!(budget);
            body["max_tokens"] = json!(a.max_tokens);
        }
        _ => body["reasoning_effort"] = json!(budget),
    }
    if let Some(m) = &a.budget_message {
        body["reasoning_budget_message"] = json!(m);
    }
    let mut reasoning = serde_json::Map::new();
    // "auto" chooses the samples itself: naming them would contradict it.
    if samples > 1 && budget != Effort::Auto.as_str() {
        reasoning.extend([
            ("samples".into(), json!(samples)),
            ("aggregate".into(), json!(a.aggregate)),
            ("verifier".into(), json!(a.verifier)),
            ("adaptive".into(), json!(a.adaptive)),
        ]);
        if a.prune {
            reasoning.insert("prune".into(), json!("confidence"));
        }
        if let Some(k) = a.keep_top {
            reasoning.insert("keep_top".into(), json!(k));
        }
        if let Some(w) = a.warmup {
            reasoning.insert("warmup".into(), json!(w.min(samples)));
        }
    }
    if let Some(s) = &a.scaffold {
        reasoning.insert("scaffold".into(), json!(s));
    }
    if !reasoning.is_empty() {
        body["reasoning"] = Value::Object(reasoning);
    }
    body
}

fn parse(v: &Value, budget: &str, samples: u32, variant: &str, p: &Problem, latency: f64) -> Record {
    let msg = &v["choices"][0]["message"];
    let content = msg["content"].as_str().unwrap_or("");
    let reasoning = message_reasoning(msg);
    let (extracted, correct) = grade(content, reasoning, &p.answer);
    let usage = &v["usage"];
    let thinking_tokens = usage["completion_tokens_details"]["reasoning_tokens"].as_f64().unwrap_or(0.0);
    let ext = &v["choices"][0]["thinkscale"];
    let samples_used = ext["samples_used"].as_u64().map_or(1, |n| n as u32);
    let within_budget = budget.parse::<f64>().ok().map(|b| match ext["samples"].as_array() {
        Some(s) => s.iter().all(|x| x["thinking_tokens"].as_f64().unwrap_or(0.0) <= b),
        None => thinking_tokens <= b * samples_used as f64,
    });
    Record {
        correct,
        extracted,
        thinking_tokens,
        thinking_seconds: v["timings"]["thinking_ms"].as_f64().map_or(latency, |ms| ms / 1000.0),
        completion_tokens: usage["completion_tokens"].as_f64().unwrap_or(0.0),
        latency_seconds: latency,
        samples_used,
        within_budget,
        ..Record::empty(budget, samples, variant, p)
    }
}

pub fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    // A run killed mid-write may leave a partial last line: skip what does not parse.
    Ok(std::fs::read_to_string(path)?.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out)?;
    let problems = load_problems(&a)?;
    let results_path = a.out.join("results.jsonl");
    let done: HashSet<(String, String)> =
        read_records(&results_path)?.into_iter().filter(|r| r.error.is_none()).map(|r| (r.cell, r.id)).collect();
    // Question by question, every cell of a question before the next question: a run stopped
    // early still compares every cell on the same questions.
    let mut tasks = Vec::new();
    for (qi, p) in problems.iter().enumerate() {
        for samples in &a.samples {
            for budget in &a.budgets {
                if !done.contains(&(cell_id(budget, *samples, &variant(&a, *samples)), p.id.clone())) {
                    tasks.push((budget.clone(), *samples, qi));
                }
            }
        }
    }
    let total = a.samples.len() * a.budgets.len() * problems.len();
    let bar = ProgressBar::new(total as u64).with_position((total - tasks.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}")?.progress_chars("=> "),
    );
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(900)).build()?;
    let file = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&results_path)?));
    let chains_file = match a.record {
        true => Some(Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(a.out.join("chains.jsonl"))?))),
        false => None,
    };
    let url = format!("{}/v1/chat/completions", a.url.trim_end_matches('/'));
    let correct = Arc::new(Mutex::new((0u64, 0u64)));
    let a = Arc::new(a);
    let problems = Arc::new(problems);
    futures::stream::iter(tasks)
        .map(|(budget, samples, qi)| {
            let (client, url, a, problems, file, bar, correct) =
                (client.clone(), url.clone(), a.clone(), problems.clone(), file.clone(), bar.clone(), correct.clone());
            let chains_file = chains_file.clone();
            async move {
                let p = &problems[qi];
                let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(qi as u64);
                let body = request_body(&a, &budget, samples, p, seed);
                let variant = variant(&a, samples);
                let t0 = Instant::now();
                let mut req = client.post(&url).json(&body);
                if let Some(k) = &a.api_key {
                    req = req.bearer_auth(k);
                }
                let (record, chains) = match req.send().await {
                    Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                        Ok(v) => (parse(&v, &budget, samples, &variant, p, t0.elapsed().as_secs_f64()), a.record.then(|| chains_of(&v))),
                        Err(e) => (failed(&budget, samples, &variant, p, e.to_string()), None),
                    },
                    Ok(r) => {
                        let status = r.status();
                        (failed(&budget, samples, &variant, p, format!("{status}: {}", r.text().await.unwrap_or_default())), None)
                    }
                    Err(e) => (failed(&budget, samples, &variant, p, e.to_string()), None),
                };
                if let (Some(chains), Some(chains_file)) = (chains, &chains_file) {
                    let kept =
                        ChainRecord { budget: budget.clone(), id: p.id.clone(), level: p.level, expected: record.expected.clone(), chains };
                    let line = serde_json::to_string(&kept).expect("serialisable") + "\n";
                    chains_file.lock().expect("chains lock").write_all(line.as_bytes()).expect("writing chains");
                }
                if a.post && record.error.is_none() {
                    post_observation(&client, &a, &record).await;
                }
                let line = serde_json::to_string(&record).expect("serialisable") + "\n";
                file.lock().expect("results lock").write_all(line.as_bytes()).expect("writing results");
                let mut c = correct.lock().expect("counter lock");
                c.0 += u64::from(record.correct);
                c.1 += 1;
                bar.set_message(format!("acc {:.1}%", 100.0 * c.0 as f64 / c.1 as f64));
                bar.inc(1);
            }
        })
        .buffer_unordered(a.concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    bar.finish();
    Ok(())
}

fn failed(budget: &str, samples: u32, variant: &str, p: &Problem, error: String) -> Record {
    Record { error: Some(error), ..Record::empty(budget, samples, variant, p) }
}

/// The (effort, budget bucket) labels the server gives a request for this harness budget (see
/// reasoning::plan::normalise), so a harness run and live traffic land in the same cells of the
/// scaling table.
pub(super) fn server_labels(budget: &str) -> (Effort, BudgetBucket) {
    match (budget, budget.parse::<u32>()) {
        (_, Ok(b)) => (Effort::Budget, BudgetBucket::of(Some(b))),
        ("unlimited", _) => (Effort::Default, BudgetBucket::of(None)),
        ("plain", _) => (Effort::None, BudgetBucket::of(Some(0))),
        (level, _) => {
            let tokens = crate::config::ReasoningConfig::default().effort_budgets.get(level).copied().unwrap_or(-1);
            (Effort::of_level(level), BudgetBucket::of(u32::try_from(tokens).ok()))
        }
    }
}

async fn post_observation(client: &reqwest::Client, a: &RunArgs, r: &Record) {
    let (effort, budget) = server_labels(&r.budget);
    let obs = json!({"observations": [{"effort": effort, "budget": budget, "samples": SamplesBucket::of(r.samples),
        "correct": r.correct, "thinking_seconds": r.thinking_seconds, "thinking_tokens": r.thinking_tokens}]});
    let mut req = client.post(format!("{}/v1/scaling/observations", a.url.trim_end_matches('/'))).json(&obs);
    if let Some(k) = &a.api_key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => eprintln!("posting the observation for {} was refused: {}", r.id, resp.status()),
        Err(e) => eprintln!("posting the observation for {} failed: {e}", r.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(flags: &[&str]) -> RunArgs {
        Cli::parse_from(std::iter::once("eval").chain(flags.iter().copied())).run
    }

    fn problem() -> Problem {
        Problem { id: "q".into(), question: "What is 2 + 2?".into(), answer: "2 + 2 = 4\n#### 4".into(), level: 1 }
    }

    #[test]
    fn budgets_map_onto_the_requests_a_server_understands() {
        let a = args(&["--max-tokens", "900", "--answer-tokens", "20", "--scaffold", "instruct"]);
        let b = request_body(&a, "128", 1, &problem(), 1);
        assert_eq!((b["thinking_budget_tokens"].clone(), b["max_tokens"].clone()), (json!(128), json!(128 + 32 + 20)));
        assert_eq!(b["reasoning"], json!({"scaffold": "instruct"}));
        let b = request_body(&a, "unlimited", 8, &problem(), 1);
        assert_eq!((b["thinking_budget_tokens"].clone(), b["max_tokens"].clone()), (json!(-1), json!(900)));
        assert_eq!(b["reasoning"]["samples"], 8);
        assert_eq!(b["reasoning"]["scaffold"], "instruct");
        // The plain answer asks for no thinking at all.
        let b = request_body(&args(&[]), "plain", 1, &problem(), 1);
        assert_eq!(b["max_tokens"], 1024);
        for absent in ["thinking_budget_tokens", "reasoning_effort", "reasoning"] {
            assert!(b.get(absent).is_none(), "{absent}: {b}");
        }
        assert_eq!(request_body(&args(&[]), "low", 1, &problem(), 1)["reasoning_effort"], "low");
        // Confidence pruning is its own cell; auto names no samples.
        let a = args(&["--prune", "--keep-top", "0.5"]);
        let b = request_body(&a, "unlimited", 8, &problem(), 1);
        assert_eq!((b["reasoning"]["prune"].clone(), b["reasoning"]["keep_top"].clone()), (json!("confidence"), json!(0.5)));
        assert_eq!(cell_id("unlimited", 8, &variant(&a, 8)), "bunlimited-s8-prune+top0.5");
        assert_eq!(variant(&a, 1), "");
        let b = request_body(&a, "auto", 8, &problem(), 1);
        assert_eq!(b["reasoning_effort"], "auto");
        assert!(b["reasoning"].get("samples").is_none(), "{b}");
    }
}
