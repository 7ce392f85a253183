//! Summaries of a sweep: per-question CSV, per-cell CSV/JSON with Wilson intervals, the s1 metrics,
//! and accuracy-vs-thinking plots (SVG and PNG) with one line per sample count.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;
use serde_json::json;

use super::chart::{draw, Chart, Point, Series};
use super::run::{read_records, Record};
use crate::reasoning::grade::{control, scaling, summarise, Cell, Observation};

struct CellSummary {
    budget: String,
    samples: u32,
    /// Pruning or filtering of the samples (`prune`, `top0.5`, ...); empty for a plain vote.
    variant: String,
    cell: Cell,
    mean_completion_tokens: f64,
    control: Option<f64>,
    errors: usize,
    mean_samples_used: f64,
}

impl CellSummary {
    /// The plot line and table label: the sample count, with its variant.
    fn series(&self) -> String {
        if self.variant.is_empty() {
            self.samples.to_string()
        } else {
            format!("{}+{}", self.samples, self.variant)
        }
    }
}

/// Sort key of a budget cell: a token count, or an effort level by its default budget
/// (unlimited and unknown levels last).
pub(super) fn budget_order(b: &str) -> f64 {
    b.parse::<f64>().unwrap_or_else(|_| match crate::config::ReasoningConfig::default().effort_budgets.get(b) {
        Some(&v) if v >= 0 => v as f64,
        _ => 1e9,
    })
}

// Long on purpose: builds one report top to bottom (cells, tables, plots).
pub fn report(dir: &Path) -> anyhow::Result<()> {
    let records = read_records(&dir.join("results.jsonl"))?;
    anyhow::ensure!(!records.is_empty(), "no results in {}", dir.display());
    // Latest record per (cell, question): a resumed run may have retried failures.
    let mut latest: BTreeMap<(String, String), &Record> = BTreeMap::new();
    for r in &records {
        latest.insert((r.cell.clone(), r.id.clone()), r);
    }
    let mut by_cell: BTreeMap<(u32, String, u64, String), Vec<&Record>> = BTreeMap::new();
    for r in latest.values() {
        by_cell.entry((r.samples, r.variant.clone(), budget_order(&r.budget).to_bits(), r.budget.clone())).or_default().push(r);
    }
    let mut cells = Vec::new();
    for ((samples, variant, _, budget), rs) in &by_cell {
        let ok: Vec<&&Record> = rs.iter().filter(|r| r.error.is_none()).collect();
        let obs: Vec<Observation> = ok
            .iter()
            .map(|r| Observation { correct: r.correct, thinking_seconds: r.thinking_seconds, thinking_tokens: r.thinking_tokens })
            .collect();
        let within: Vec<bool> = ok.iter().filter_map(|r| r.within_budget).collect();
        let mean = |f: fn(&Record) -> f64| if ok.is_empty() { 0.0 } else { ok.iter().map(|r| f(r)).sum::<f64>() / ok.len() as f64 };
        cells.push(CellSummary {
            budget: budget.clone(),
            samples: *samples,
            variant: variant.clone(),
            cell: summarise(&obs),
            mean_completion_tokens: mean(|r| r.completion_tokens),
            control: (!within.is_empty()).then(|| control(&within)),
            errors: rs.len() - ok.len(),
            mean_samples_used: mean(|r| r.samples_used as f64),
        });
    }

    // s1 metrics over the whole run.
    let all_within: Vec<bool> = latest.values().filter(|r| r.error.is_none()).filter_map(|r| r.within_budget).collect();
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for c in &cells {
        lines.entry(c.series()).or_default().push((c.cell.mean_thinking_tokens / 1000.0, c.cell.accuracy));
    }
    let scaling_per_line: BTreeMap<String, f64> = lines.iter().map(|(s, pts)| (s.clone(), scaling(pts))).collect();
    let performance = cells.iter().map(|c| c.cell.accuracy).fold(0.0, f64::max);
    let s1 = json!({
        "control": (!all_within.is_empty()).then(|| control(&all_within)),
        "scaling_per_1k_thinking_tokens": scaling_per_line,
        "performance": performance,
    });

    // Per-question CSV.
    let mut w = csv::Writer::from_path(dir.join("results.csv"))?;
    w.write_record([
        "cell",
        "budget",
        "samples",
        "id",
        "level",
        "correct",
        "extracted",
        "expected",
        "thinking_tokens",
        "thinking_seconds",
        "completion_tokens",
        "latency_seconds",
        "samples_used",
        "within_budget",
        "error",
    ])?;
    for r in latest.values() {
        w.write_record([
            r.cell.clone(),
            r.budget.clone(),
            r.samples.to_string(),
            r.id.clone(),
            r.level.to_string(),
            r.correct.to_string(),
            r.extracted.clone().unwrap_or_default(),
            r.expected.clone(),
            r.thinking_tokens.to_string(),
            format!("{:.4}", r.thinking_seconds),
            r.completion_tokens.to_string(),
            format!("{:.4}", r.latency_seconds),
            r.samples_used.to_string(),
            r.within_budget.map(|b| b.to_string()).unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        ])?;
    }
    w.flush()?;

    // Per-cell CSV and JSON.
    let mut w = csv::Writer::from_path(dir.join("summary.csv"))?;
    w.write_record([
        "budget",
        "samples",
        "variant",
        "graded",
        "correct",
        "accuracy",
        "ci_low",
        "ci_high",
        "mean_thinking_seconds",
        "p90_thinking_seconds",
        "mean_thinking_tokens",
        "mean_completion_tokens",
        "mean_samples_used",
        "control",
        "errors",
    ])?;
    let mut rows = Vec::new();
    for c in &cells {
        let x = &c.cell;
        w.write_record([
            c.budget.clone(),
            c.samples.to_string(),
            c.variant.clone(),
            x.graded.to_string(),
            x.correct.to_string(),
            format!("{:.4}", x.accuracy),
            format!("{:.4}", x.ci_low),
            format!("{:.4}", x.ci_high),
            format!("{:.3}", x.mean_thinking_seconds),
            format!("{:.3}", x.p90_thinking_seconds),
            format!("{:.1}", x.mean_thinking_tokens),
            format!("{:.1}", c.mean_completion_tokens),
            format!("{:.2}", c.mean_samples_used),
            c.control.map(|v| format!("{v:.4}")).unwrap_or_default(),
            c.errors.to_string(),
        ])?;
        let mut v = serde_json::to_value(x)?;
        v["budget"] = json!(c.budget);
        v["samples"] = json!(c.samples);
        v["variant"] = json!(c.variant);
        v["mean_completion_tokens"] = json!(c.mean_completion_tokens);
        v["control"] = json!(c.control);
        v["mean_samples_used"] = json!(c.mean_samples_used);
        v["errors"] = json!(c.errors);
        rows.push(v);
    }
    w.flush()?;
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&json!({"cells": rows, "s1": s1}))?)?;

    for (stem, label, x_of) in [
        ("accuracy_vs_seconds", "mean thinking seconds per request", (|c: &Cell| c.mean_thinking_seconds) as fn(&Cell) -> f64),
        ("accuracy_vs_tokens", "mean thinking tokens per request (all samples)", |c: &Cell| c.mean_thinking_tokens),
    ] {
        plot(&dir.join(format!("{stem}.svg")), &cells, label, x_of)?;
        plot(&dir.join(format!("{stem}.png")), &cells, label, x_of)?;
    }

    println!(
        "{:>9} {:>14} {:>6} {:>8} {:>15} {:>9} {:>10} {:>10} {:>8}",
        "budget", "samples", "graded", "accuracy", "95% CI", "think s", "think tok", "completion", "control"
    );
    for c in &cells {
        let x = &c.cell;
        println!(
            "{:>9} {:>14} {:>6} {:>7.1}% {:>6.1}%–{:>5.1}% {:>9.2} {:>10.1} {:>10.1} {:>8}",
            c.budget,
            c.series(),
            x.graded,
            100.0 * x.accuracy,
            100.0 * x.ci_low,
            100.0 * x.ci_high,
            x.mean_thinking_seconds,
            x.mean_thinking_tokens,
            c.mean_completion_tokens,
            c.control.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into())
        );
    }
    println!("s1 metrics: {s1}");
    println!("wrote {}/{{results,summary}}.csv, summary.json, accuracy_vs_{{seconds,tokens}}.{{svg,png}}", dir.display());
    Ok(())
}

fn plot(path: &Path, cells: &[CellSummary], x_label: &str, x_of: fn(&Cell) -> f64) -> anyhow::Result<()> {
    let mut by: BTreeMap<(u32, String), Vec<&CellSummary>> = BTreeMap::new();
    for c in cells {
        by.entry((c.samples, c.series())).or_default().push(c);
    }
    let series: Vec<Series> = by
        .into_iter()
        .map(|((_, name), mut cs)| {
            cs.sort_by(|a, b| x_of(&a.cell).total_cmp(&x_of(&b.cell)));
            let points = cs
                .iter()
                .map(|c| Point { x: x_of(&c.cell), y: c.cell.accuracy, lo: c.cell.ci_low, hi: c.cell.ci_high, label: c.budget.clone() })
                .collect();
            Series { name: format!("samples {name}"), points }
        })
        .collect();
    let chart = Chart {
        title: "Accuracy vs thinking (95% Wilson intervals)",
        x_desc: x_label,
        y_desc: "accuracy",
        size: (900, 560),
        log_x: false,
        zoom_y: true,
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(path, &chart, &series, &[])
}
