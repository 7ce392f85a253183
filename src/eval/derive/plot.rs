//! The derived cells' plot: accuracy against tokens per question, the frontier drawn through.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use super::super::chart::{draw, Chart, Point, Reference, Series};
use super::{Derived, Rule};

pub(super) fn plot(path: &Path, cells: &[Derived], on_frontier: &[usize]) -> anyhow::Result<()> {
    let x = |c: &Derived| c.mean_tokens.max(1.0);
    let mut by: BTreeMap<(bool, usize, Rule), Vec<&Derived>> = BTreeMap::new();
    for c in cells {
        by.entry(c.series()).or_default().push(c);
    }
    // Cells arrive in budget order: each line follows the budget knob.
    let series: Vec<Series> = by
        .into_iter()
        .map(|((plain, k, rule), cs)| Series {
            name: format!("{}k={k} {}", if plain { "plain " } else { "" }, rule.as_str()),
            points: cs.iter().map(|c| Point { x: x(c), y: c.accuracy, lo: c.ci.0, hi: c.ci.1, label: c.budget.clone() }).collect(),
        })
        .collect();
    let frontier = Reference { name: "frontier".into(), points: on_frontier.iter().map(|&i| (x(&cells[i]), cells[i].accuracy)).collect() };
    let chart = Chart {
        title: "Accuracy vs generated tokens per question (95% Wilson intervals; dashed: frontier)",
        x_desc: "tokens generated per question, all chains (log scale)",
        y_desc: "accuracy",
        size: (1000, 620),
        log_x: true,
        zoom_y: false,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(path, &chart, &series, &[frontier])
}
