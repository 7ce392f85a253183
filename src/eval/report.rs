//! Summaries of a sweep: per-question CSV, per-cell CSV/JSON with Wilson intervals, the s1 metrics,
//! and accuracy-vs-thinking plots (SVG and PNG) with one line per sample count.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde_json::json;

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
        plot(&dir.join(format!("{stem}.svg")), &cells, label, x_of, false)?;
        plot(&dir.join(format!("{stem}.png")), &cells, label, x_of, true)?;
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

pub(super) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| ())
            .expect("embedded font parses");
    });
}

fn plot(path: &Path, cells: &[CellSummary], x_label: &str, x_of: fn(&Cell) -> f64, png: bool) -> anyhow::Result<()> {
    register_font();
    let size = (900, 560);
    if png {
        draw(BitMapBackend::new(path, size).into_drawing_area(), cells, x_label, x_of)
    } else {
        draw(SVGBackend::new(path, size).into_drawing_area(), cells, x_label, x_of)
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    cells: &[CellSummary],
    x_label: &str,
    x_of: fn(&Cell) -> f64,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plotting: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let x_max = cells.iter().map(|c| x_of(&c.cell)).fold(0.0, f64::max).max(1e-3) * 1.08;
    // Zoom the accuracy axis to the data (with headroom) so small models' curves stay readable.
    let y_max = (cells.iter().map(|c| c.cell.ci_high).fold(0.0, f64::max) * 1.15).clamp(0.05, 1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption("Accuracy vs thinking (95% Wilson intervals)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("accuracy")
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let mut by_series: BTreeMap<(u32, String), Vec<&CellSummary>> = BTreeMap::new();
    for c in cells {
        by_series.entry((c.samples, c.series())).or_default().push(c);
    }
    for (i, ((_, series), mut cs)) in by_series.into_iter().enumerate() {
        cs.sort_by(|a, b| x_of(&a.cell).total_cmp(&x_of(&b.cell)));
        let colour = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(cs.iter().map(|c| (x_of(&c.cell), c.cell.accuracy)), colour.stroke_width(2)))
            .map_err(err)?
            .label(format!("samples {series}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart
            .draw_series(
                cs.iter().map(|c| {
                    ErrorBar::new_vertical(x_of(&c.cell), c.cell.ci_low, c.cell.accuracy, c.cell.ci_high, colour.stroke_width(1), 8)
                }),
            )
            .map_err(err)?;
        chart.draw_series(cs.iter().map(|c| Circle::new((x_of(&c.cell), c.cell.accuracy), 4, colour.filled()))).map_err(err)?;
        chart
            .draw_series(cs.iter().map(|c| Text::new(c.budget.clone(), (x_of(&c.cell), c.cell.accuracy), ("sans-serif", 12))))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
