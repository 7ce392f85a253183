//! `thinkscale eval code`'s report: k = 1, 2, 4, 8 under each selection rule from the recorded
//! chains, with Wilson intervals, McNemar pairs against a baseline run, and the frontier plot.

use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use super::{read_chains, CodeArgs, CodeChain};
use crate::eval::chart::{draw, Chart, Point, Reference, Series};
use crate::reasoning::code::{self, Executed};
use crate::reasoning::grade::{mcnemar_p, pass_at_k, wilson};

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

pub(super) fn report(a: &CodeArgs) -> anyhow::Result<String> {
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
