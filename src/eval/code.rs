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

use super::chart::{draw, Chart, Point, Reference, Series};
use crate::reasoning::code::{self, Executed, Suite};
use crate::reasoning::grade::{mcnemar_p, pass_at_k, wilson};
use crate::sandbox::{harness, Language, Sandbox};
use plotters::prelude::SeriesLabelPosition;

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
    let text = report(&a)?;
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

/// Problems in file order, each with its chains by sample index.
fn by_problem(chains: Vec<CodeChain>) -> Vec<Vec<CodeChain>> {
    let mut out: Vec<Vec<CodeChain>> = Vec::new();
    for c in chains {
        match out.iter_mut().find(|g| g[0].task_id == c.task_id) {
            Some(g) => g.push(c),
            None => out.push(vec![c]),
        }
    }
    for g in &mut out {
        g.sort_by_key(|c| c.sample);
    }
    out
}

/// Which chain of the first `k` a rule picks.
fn pick(rule: &str, chains: &[CodeChain], k: usize) -> Option<usize> {
    let first = &chains[..k.min(chains.len())];
    let runs: Vec<Executed> = first
        .iter()
        .map(|c| Executed {
            has_program: c.group.is_some(),
            passed: if rule == "behaviour" { 0 } else { c.examples_passed },
            behaviour: c.group.map_or_else(String::new, |g| g.to_string()),
            confidence: c.confidence,
        })
        .collect();
    match rule {
        "first" => Some(0),
        _ => code::select(&runs, 0).chosen.or(Some(0)),
    }
}

/// A cell drawn as a point of its own, not a rule's line through k: the greedy baseline, the
/// server's choice.
fn single(c: &Cell) -> bool {
    c.label.starts_with("greedy") || c.label.starts_with("server")
}

/// One cell of the report: a rule over the first k chains.
struct Cell {
    label: String,
    k: usize,
    solved: u64,
    tokens: f64,
    vs: Option<(u64, u64)>,
}

/// What the verifier spent on a problem besides its chains.
fn verifier(g: &[CodeChain]) -> u64 {
    g.iter().map(|c| c.verifier_tokens).sum()
}

fn report(a: &CodeArgs) -> anyhow::Result<String> {
    let problems = by_problem(read_chains(&a.out.join("chains.jsonl"))?);
    let n = problems.len() as u64;
    let baseline: Option<Vec<CodeChain>> = match &a.baseline {
        Some(dir) => Some(by_problem(read_chains(&dir.join("chains.jsonl"))?).into_iter().map(|mut g| g.remove(0)).collect()),
        None => None,
    };
    let base_of = |id: &str| baseline.as_ref().and_then(|b| b.iter().find(|c| c.task_id == id));
    // Rules over the first k chains read a fixed-k run; an adaptive run's chains stop where its
    // verdicts did (and its first chain may be one an early stop cut), so it has none.
    let max_k = if a.adaptive { 0 } else { problems.iter().map(Vec::len).min().unwrap_or(0) };
    let mut cells = Vec::new();
    if baseline.is_some() {
        let on_these: Vec<&CodeChain> = problems.iter().filter_map(|g| base_of(&g[0].task_id)).collect();
        let tokens = on_these.iter().map(|c| c.completion_tokens as f64).sum::<f64>() / n.max(1) as f64;
        cells.push(Cell {
            label: "greedy (baseline run)".into(),
            k: 1,
            solved: on_these.iter().filter(|c| c.correct).count() as u64,
            tokens,
            vs: None,
        });
    }
    for k in [1, 2, 4, 8, 16].into_iter().filter(|&k| k <= max_k) {
        let rules: &[&str] = if k == 1 { &["first"] } else { &["behaviour", "examples"] };
        for rule in rules {
            let (mut solved, mut tokens, mut b, mut c) = (0u64, 0u64, 0u64, 0u64);
            for g in &problems {
                let ok = pick(rule, g, k).is_some_and(|i| g[i].correct);
                solved += u64::from(ok);
                // A rule over several chains reads their verdicts, and so what the verifier spent.
                tokens += g[..k].iter().map(|c| c.completion_tokens).sum::<u64>() + if k > 1 { verifier(g) } else { 0 };
                if let Some(base) = base_of(&g[0].task_id) {
                    b += u64::from(base.correct && !ok);
                    c += u64::from(!base.correct && ok);
                }
            }
            let vs = baseline.is_some().then_some((b, c));
            cells.push(Cell { label: rule.to_string(), k, solved, tokens: tokens as f64 / n.max(1) as f64, vs });
        }
    }
    // The server's own choice over every chain it ran (all of them, or fewer with --adaptive).
    let (mut solved, mut tokens, mut b, mut c) = (0u64, 0u64, 0u64, 0u64);
    for g in &problems {
        let ok = g.iter().any(|c| c.chosen && c.correct);
        solved += u64::from(ok);
        tokens += g.iter().map(|c| c.completion_tokens).sum::<u64>() + verifier(g);
        if let Some(base) = base_of(&g[0].task_id) {
            b += u64::from(base.correct && !ok);
            c += u64::from(!base.correct && ok);
        }
    }
    let label = match (a.adaptive, a.generated_tests) {
        (true, _) => "server's choice, adaptive",
        (false, true) => "server's choice, generated tests (CodeT)",
        (false, false) => "server's choice",
    };
    let vs = baseline.is_some().then_some((b, c));
    cells.push(Cell { label: label.into(), k: a.samples as usize, solved, tokens: tokens as f64 / n.max(1) as f64, vs });
    let chains: usize = problems.iter().map(Vec::len).sum();
    let cut = problems.iter().flatten().filter(|c| c.finish.as_deref() == Some("cancelled")).count();
    let mut md = format!("# {} ({} problems, range {}, {} chains each)\n\n", a.out.display(), n, a.range, a.samples);
    md.push_str(&format!(
        "Chains decoded per problem: {:.2} on average ({chains} in all, {cut} of them cut by an early stop){}.\n\n",
        chains as f64 / n.max(1) as f64,
        if a.adaptive { "; `adaptive: true`: each wave's programs are tested before the next starts" } else { "" }
    ));
    md.push_str(if a.definitions_only {
        "Graded on each program's imports, definitions and assignments only (`--definitions-only`, as EvalPlus).\n\n"
    } else {
        "Graded on each program as written, top-level statements included.\n\n"
    });
    if a.generated_tests {
        md.push_str(
            "`tests: \"generated\"`: each chain's examples passed/run count the asserts the model wrote for the problem, not the docstring examples; the rules below read them in their place, and every rule over several chains counts the asserts' tokens.\n\n",
        );
    }
    if let Some(dir) = &a.baseline {
        md.push_str(&format!("Baseline (the greedy row, and McNemar's pairs): {}.\n\n", dir.display()));
    }
    md.push_str("| k | rule | pass@1 | 95% Wilson | completion tokens / problem | vs baseline (b/c, exact McNemar p) |\n|---|---|---|---|---|---|\n");
    for c in &cells {
        let (lo, hi) = wilson(c.solved, n);
        let vs = c.vs.map_or_else(String::new, |(b, cc)| format!("{b}/{cc}, p = {:.3}", mcnemar_p(b, cc)));
        md.push_str(&format!(
            "| {} | {} | {:.1}% ({}/{n}) | {:.1}–{:.1} | {:.0} | {vs} |\n",
            c.k,
            c.label,
            100.0 * c.solved as f64 / n.max(1) as f64,
            c.solved,
            100.0 * lo,
            100.0 * hi,
            c.tokens
        ));
    }
    let ceilings: Vec<(usize, f64)> = [1, 2, 4, 8, 16]
        .into_iter()
        .filter(|&k| k <= max_k)
        .map(|k| {
            let sum: f64 =
                problems.iter().map(|g| pass_at_k(g.len() as u64, g.iter().filter(|c| c.correct).count() as u64, k as u64)).sum();
            (k, sum / n.max(1) as f64)
        })
        .collect();
    for (k, p) in &ceilings {
        md.push_str(&format!("| {k} | pass@{k} (oracle ceiling, unbiased over {max_k}) | {:.1}% | | | |\n", 100.0 * p));
    }
    // report.md's plot is frontier.png; another report's is named after it.
    let plot_name = match a.report_name.trim_end_matches(".md") {
        "report" => "frontier.png".to_string(),
        stem => format!("{stem}.png"),
    };
    md.push_str(&format!(
        "\nRules: `first` = the first sampled chain alone; `behaviour` = the largest group of chains with equal outputs on the docstring examples and probe inputs (no checking); `examples` = among chains passing the most docstring examples, the largest behaviour group (the server's `verifier: \"tests\"`). Tokens count every chain a rule reads; the server's choice reads every chain it decoded. Plot: {plot_name}.\n"
    ));
    if n > 0 {
        plot(&a.out.join(&plot_name), &cells, &ceilings, n)?;
    }
    Ok(md)
}

/// Accuracy against completion tokens per problem: a line per rule through k = 1, 2, 4, 8, and
/// the pass@k ceiling at the tokens its k chains cost.
fn plot(path: &Path, cells: &[Cell], ceilings: &[(usize, f64)], n: u64) -> anyhow::Result<()> {
    let point = |c: &Cell| {
        let (lo, hi) = wilson(c.solved, n);
        Point { x: c.tokens, y: c.solved as f64 / n as f64, lo, hi, label: format!("k={}", c.k) }
    };
    let first = cells.iter().find(|c| c.label == "first");
    let mut series: Vec<Series> = Vec::new();
    for c in cells {
        match series.iter_mut().find(|s| s.name == c.label) {
            Some(s) => s.points.push(point(c)),
            // A rule's line starts at the one-chain cell.
            None => series.push(Series {
                name: c.label.clone(),
                points: first.into_iter().filter(|_| c.label != "first" && !single(c)).chain([c]).map(point).collect(),
            }),
        }
    }
    // The ceiling at the cost of the rules that read k chains.
    let cost = |k: usize| cells.iter().find(|c| c.k == k && !single(c)).map(|c| c.tokens);
    let ceiling = Reference {
        name: "pass@k (oracle ceiling)".into(),
        points: ceilings.iter().filter_map(|&(k, p)| cost(k).map(|t| (t, p))).collect(),
    };
    let chart = Chart {
        title: "pass@1 vs completion tokens per problem (95% Wilson intervals)",
        x_desc: "completion tokens per problem, every chain read (log scale)",
        y_desc: "pass@1",
        size: (1000, 620),
        log_x: true,
        zoom_y: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(path, &chart, &series, &[ceiling])
}
