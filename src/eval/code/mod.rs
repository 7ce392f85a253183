//! `thinkscale eval code`: HumanEval-format problems (JSONL, gzipped or not) through a server's
//! chat endpoint — greedy, or `samples` chains selected by `verifier: "tests"` on the prompt's
//! docstring examples — every chain graded here by the problem's hidden `test` and
//! `check(entry_point)` in the sandbox, then a report of k = 1, 2, 4, 8 under each selection rule
//! with the unbiased pass@k as the ceiling.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::reasoning::code::{self, Suite};
use crate::sandbox::{harness, Language, Sandbox};

mod report;

#[derive(Debug, Args, Clone)]
pub struct CodeArgs {
    /// Base URL of the server (thinkscale started with --code-exec python for --samples > 1)
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// HumanEval-format JSONL (task_id, prompt, entry_point, test), `.gz` or plain
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Problems [START, END) of the file, e.g. 64..164 (the test split of docs/SCALING.md)
    #[arg(long, default_value = "0..")]
    pub range: String,
    /// Chains per problem: 1 is greedy (temperature 0); more are sampled and selected by the
    /// server's `verifier: "tests"` on the docstring examples (all kept in chains.jsonl)
    #[arg(long, default_value_t = 1)]
    pub samples: u32,
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 768)]
    pub max_tokens: u32,
    /// Requests in flight
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (chains.jsonl, report.md); a rerun resumes
    #[arg(long, default_value = "eval-code")]
    pub out: PathBuf,
    /// A greedy run's directory: its results are the baseline the McNemar test compares against
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Only rebuild the report from chains.jsonl
    #[arg(long)]
    pub report_only: bool,
    /// The report's file name in --out (another name keeps a second comparison, e.g. against
    /// another model's greedy run as --baseline, beside the first)
    #[arg(long, default_value = "report.md")]
    pub report_name: String,
    /// Grade only each program's imports, definitions and assignments, as EvalPlus (the harness
    /// behind the published Qwen2.5-Coder figures) does; by default a program runs as written
    #[arg(long)]
    pub definitions_only: bool,
    /// Grade the programs recorded in --out's chains.jsonl again (with this run's grading flags)
    /// and rewrite it, without asking the server for anything
    #[arg(long)]
    pub regrade: bool,
    /// With --regrade: check each recorded program against the prompt's docstring examples, as the
    /// server's `verifier: "tests"` reads them, and record examples passed/run (the hidden-test
    /// grade is kept) — a greedy run's verdicts, for replaying a greedy-first selection
    #[arg(long, requires = "regrade")]
    pub examples: bool,
    /// Let the server stop sampling once programs pass the examples (`adaptive: true` beside
    /// `verifier: "tests"`: each finished program is tested while the others decode, in waves).
    /// A problem without examples gets one sample: with nothing to test, more would only be voted
    /// on as text
    #[arg(long)]
    pub adaptive: bool,
    /// Choose among the samples by asserts the model writes for the function (`"tests":
    /// "generated"`, CodeT's dual agreement) instead of the docstring examples: every problem
    /// is checked, with or without examples
    #[arg(long)]
    pub generated_tests: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct Problem {
    task_id: String,
    prompt: String,
    entry_point: String,
    test: String,
}

/// One chain of one problem, graded (a line of chains.jsonl).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeChain {
    pub task_id: String,
    pub sample: usize,
    /// Passed the hidden tests.
    pub correct: bool,
    pub completion_tokens: u64,
    /// The server's verdict on the docstring examples: passed, run, behaviour group.
    pub examples_passed: usize,
    pub examples_run: usize,
    pub group: Option<usize>,
    pub confidence: f64,
    /// The server chose this chain.
    pub chosen: bool,
    pub error: Option<String>,
    /// The program graded (absent in runs recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// How the chain ended ("cancelled": an early stop cut it; absent in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<String>,
    /// Completion tokens the verifier had the model spend on the problem besides its chains (the
    /// asserts of `tests: "generated"`), recorded on the problem's first chain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub verifier_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

const INSTRUCTION: &str =
    "Complete the following Python function. Reply with the whole function, imports included, in one ```python code block.";

pub fn main(a: CodeArgs) -> anyhow::Result<()> {
    if a.regrade {
        tokio::runtime::Runtime::new()?.block_on(regrade(&a))?;
    } else if !a.report_only {
        tokio::runtime::Runtime::new()?.block_on(run(&a))?;
    }
    let text = report::report(&a)?;
    std::fs::write(a.out.join(&a.report_name), &text)?;
    print!("{text}");
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<Vec<Problem>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text)?;
    } else {
        text = String::from_utf8(raw)?;
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1)))
        .collect()
}

fn range(spec: &str, len: usize) -> anyhow::Result<std::ops::Range<usize>> {
    let (s, e) = spec.split_once("..").context("--range is START..END")?;
    let start = if s.is_empty() { 0 } else { s.parse()? };
    let end = if e.is_empty() { len } else { e.parse::<usize>()?.min(len) };
    anyhow::ensure!(start <= end, "--range {spec} is empty");
    Ok(start..end)
}

async fn run(a: &CodeArgs) -> anyhow::Result<()> {
    let data = a.data.as_ref().context("--data FILE (HumanEval.jsonl.gz) is needed")?;
    let all = load(data)?;
    let problems: Vec<Problem> = all[range(&a.range, all.len())?].to_vec();
    std::fs::create_dir_all(&a.out)?;
    let path = a.out.join("chains.jsonl");
    let done: HashSet<String> = read_chains(&path).unwrap_or_default().into_iter().map(|c| c.task_id).collect();
    let todo: Vec<Problem> = problems.into_iter().filter(|p| !done.contains(&p.task_id)).collect();
    // Hidden tests are the problem's own code, run like any other: in the sandbox.
    let sandbox = Arc::new(Sandbox::new(Language::Python, Default::default()).await?);
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3600)).build()?;
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} problems, {msg} [{elapsed} < {eta}]")?);
    let file = std::sync::Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&path)?);
    let solved = std::sync::atomic::AtomicUsize::new(0);
    let mut jobs = futures::stream::iter(todo.iter().map(|p| solve(a, &client, &sandbox, p))).buffer_unordered(a.concurrency.max(1));
    let mut n = 0;
    while let Some(chains) = jobs.next().await {
        // A problem that failed is left out of chains.jsonl: a rerun tries it again.
        let chains = match chains {
            Ok(c) => c,
            Err(e) => {
                bar.println(format!("skipped: {e:#}"));
                bar.inc(1);
                continue;
            }
        };
        n += 1;
        let won = chains.iter().find(|c| c.chosen).is_some_and(|c| c.correct);
        solved.fetch_add(usize::from(won), std::sync::atomic::Ordering::Relaxed);
        let mut f = file.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for c in &chains {
            writeln!(f, "{}", serde_json::to_string(c)?)?;
        }
        bar.set_message(format!("{} of {n} solved this run", solved.load(std::sync::atomic::Ordering::Relaxed)));
        bar.inc(1);
    }
    bar.finish();
    Ok(())
}

async fn solve(a: &CodeArgs, client: &reqwest::Client, sb: &Sandbox, p: &Problem) -> anyhow::Result<Vec<CodeChain>> {
    let content = format!("{INSTRUCTION}\n\n```python\n{}\n```", p.prompt.trim_end());
    let mut body = json!({
        "messages": [{"role": "user", "content": content}],
        "max_tokens": a.max_tokens,
        "seed": a.seed,
    });
    if a.samples > 1 {
        body["temperature"] = json!(a.temperature);
        body["reasoning"] =
            json!({"enabled": false, "samples": a.samples, "verifier": "tests", "entry_point": p.entry_point, "adaptive": a.adaptive});
        if a.generated_tests {
            body["reasoning"]["tests"] = json!("generated");
        }
    } else {
        body["temperature"] = json!(0.0);
        body["reasoning"] = json!({"enabled": false});
    }
    let url = format!("{}/v1/chat/completions", a.url.trim_end_matches('/').trim_end_matches("/v1"));
    let mut r = client.post(&url).json(&body).send().await?;
    if r.status() == reqwest::StatusCode::BAD_REQUEST && a.samples > 1 {
        // No docstring examples to run: the samples go unchecked and are voted on as text (with
        // --adaptive, one sample is decoded and stands).
        body["reasoning"] = json!({"enabled": false, "samples": if a.adaptive { 1 } else { a.samples }});
        r = client.post(&url).json(&body).send().await?;
    }
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "{}: {status} {v}", p.task_id);
    let choice = &v["choices"][0];
    // One chain: the answer itself; several: every sample the server kept in its ballot.
    let samples: Vec<Value> = match choice.pointer("/thinkscale/samples").and_then(Value::as_array) {
        Some(s) => s.clone(),
        None => vec![json!({"index": 0, "content": choice["message"]["content"], "completion_tokens": v["usage"]["completion_tokens"]})],
    };
    let chosen = choice.pointer("/thinkscale/chosen_sample").and_then(Value::as_u64).unwrap_or(0) as usize;
    // `usage` counts the chains and what the verifier generated: the rest is the verifier's.
    let chains: u64 = samples.iter().map(|s| s["completion_tokens"].as_u64().unwrap_or(0)).sum();
    let mut verifier_tokens = v["usage"]["completion_tokens"].as_u64().unwrap_or(0).saturating_sub(chains);
    let mut out = Vec::new();
    for s in &samples {
        let program = code::program(s["content"].as_str().unwrap_or(""));
        let (correct, error) = grade(a, sb, p, program.as_deref()).await?;
        let index = s["index"].as_u64().unwrap_or(0) as usize;
        out.push(CodeChain {
            task_id: p.task_id.clone(),
            sample: index,
            correct,
            completion_tokens: s["completion_tokens"].as_u64().unwrap_or(0),
            examples_passed: s.pointer("/tests/passed").and_then(Value::as_u64).unwrap_or(0) as usize,
            examples_run: s.pointer("/tests/run").and_then(Value::as_u64).unwrap_or(0) as usize,
            group: s.pointer("/tests/group").and_then(Value::as_u64).map(|g| g as usize),
            confidence: s["mean_logprob"].as_f64().unwrap_or(0.0),
            chosen: index == chosen,
            error,
            program,
            finish: s["finish_reason"].as_str().map(str::to_string),
            verifier_tokens: std::mem::take(&mut verifier_tokens),
        });
    }
    Ok(out)
}

/// A program against the problem's hidden tests: passed, and why not.
async fn grade(a: &CodeArgs, sb: &Sandbox, p: &Problem, program: Option<&str>) -> anyhow::Result<(bool, Option<String>)> {
    let Some(program) = program else { return Ok((false, Some("no program".into()))) };
    // The prompt's imports (typing, math) are part of the function the model completes.
    let suite = Suite {
        entry_point: Some(p.entry_point.clone()),
        tests: Some(format!("{}\n", p.test)),
        prelude: code::imports(&p.prompt),
        definitions_only: a.definitions_only,
        ..Suite::default()
    };
    let r = harness::run(sb, program, &suite, 0).await?;
    Ok((r.loaded && r.cases > 0 && r.passed == r.cases, r.error))
}

/// A program against the prompt's docstring examples, as the server's verifier runs them:
/// examples passed and run (0 and 0 when the parser finds none).
async fn examples(sb: &Sandbox, p: &Problem, program: Option<&str>) -> anyhow::Result<(usize, usize)> {
    let suite = Suite::for_prompt(&p.prompt, Some(p.entry_point.clone()), None);
    if suite.is_empty() {
        return Ok((0, 0));
    }
    let run = suite.examples.len();
    let Some(program) = program else { return Ok((0, run)) };
    let r = harness::run(sb, program, &suite, 0).await?;
    Ok((if r.loaded { r.passed } else { 0 }, run))
}

/// `--regrade`: every recorded chain's program graded again (after a change of grading such as
/// `--definitions-only`), chains.jsonl rewritten; the generations are not repeated.
async fn regrade(a: &CodeArgs) -> anyhow::Result<()> {
    let data = a.data.as_ref().context("--data FILE (HumanEval.jsonl.gz) is needed")?;
    let problems = load(data)?;
    let path = a.out.join("chains.jsonl");
    let mut chains = read_chains(&path)?;
    let sandbox = Sandbox::new(Language::Python, Default::default()).await?;
    let bar = ProgressBar::new(chains.len() as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} chains regraded [{elapsed} < {eta}]")?);
    for c in &mut chains {
        let p = problems.iter().find(|p| p.task_id == c.task_id).with_context(|| format!("{} is not in --data", c.task_id))?;
        anyhow::ensure!(
            c.program.is_some() || c.error.as_deref() == Some("no program"),
            "{}: no program text recorded (a run from before it was kept)",
            c.task_id
        );
        if a.examples {
            (c.examples_passed, c.examples_run) = examples(&sandbox, p, c.program.as_deref()).await?;
        } else {
            (c.correct, c.error) = grade(a, &sandbox, p, c.program.as_deref()).await?;
        }
        bar.inc(1);
    }
    bar.finish();
    let text: String = chains.iter().map(|c| serde_json::to_string(c).map(|l| l + "\n")).collect::<Result<_, _>>()?;
    std::fs::write(&path, text)?;
    Ok(())
}

pub fn read_chains(path: &Path) -> anyhow::Result<Vec<CodeChain>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}
