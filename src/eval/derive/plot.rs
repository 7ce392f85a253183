//! The derived cells' plot: accuracy against tokens per question, the frontier drawn through.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::super::report::register_font;
use super::{Derived, Rule};

pub(super) fn plot(path: &Path, cells: &[Derived], on_frontier: &[usize], png: bool) -> anyhow::Result<()> {
    register_font();
    let size = (1000, 620);
    if png {
        draw(BitMapBackend::new(path, size).into_drawing_area(), cells, on_frontier)
    } else {
        draw(SVGBackend::new(path, size).into_drawing_area(), cells, on_frontier)
    }
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, cells: &[Derived], on_frontier: &[usize]) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plotting: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let x = |c: &Derived| c.mean_tokens.max(1.0);
    let x_lo = cells.iter().map(x).fold(f64::INFINITY, f64::min) / 1.3;
    let x_hi = cells.iter().map(x).fold(1.0, f64::max) * 1.3;
    let mut chart = ChartBuilder::on(&root)
        .caption("Accuracy vs generated tokens per question (95% Wilson intervals; dashed: frontier)", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("tokens generated per question, all chains (log scale)")
        .x_labels(8)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .light_line_style(RGBColor(240, 240, 240))
        .y_desc("accuracy")
        .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let mut series: BTreeMap<(bool, usize, Rule), Vec<&Derived>> = BTreeMap::new();
    for c in cells {
        series.entry(c.series()).or_default().push(c);
    }
    for (i, ((plain, k, rule), cs)) in series.into_iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let name = format!("{}k={k} {}", if plain { "plain " } else { "" }, rule.as_str());
        // Cells arrive in budget order: the line follows the budget knob.
        chart
            .draw_series(LineSeries::new(cs.iter().map(|c| (x(c), c.accuracy)), colour.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        chart
            .draw_series(cs.iter().map(|c| ErrorBar::new_vertical(x(c), c.ci.0, c.accuracy, c.ci.1, colour.stroke_width(1), 6)))
            .map_err(err)?;
        chart.draw_series(cs.iter().map(|c| Circle::new((x(c), c.accuracy), 4, colour.filled()))).map_err(err)?;
        chart.draw_series(cs.iter().map(|c| Text::new(c.budget.clone(), (x(c), c.accuracy + 0.015), ("sans-serif", 11)))).map_err(err)?;
    }
    let front: Vec<(f64, f64)> = on_frontier.iter().map(|&i| (x(&cells[i]), cells[i].accuracy)).collect();
    chart
        .draw_series(DashedLineSeries::new(front, 6, 4, BLACK.stroke_width(2)))
        .map_err(err)?
        .label("frontier")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
