//! The one chart the reports draw: accuracy (with its 95% interval) against a cost, one line per
//! series, each point labelled, and dashed reference lines (a frontier, an oracle ceiling).

use std::path::Path;

use plotters::prelude::*;

/// A measured point: cost `x`, accuracy `y` in [lo, hi], and its label on the chart.
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub lo: f64,
    pub hi: f64,
    pub label: String,
}

/// Points joined by a line in the order given.
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// A dashed line without intervals (a frontier, a ceiling).
pub struct Reference {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub size: (u32, u32),
    /// A log-scale cost axis (token counts spanning decades); linear from 0 otherwise.
    pub log_x: bool,
    /// Zoom the accuracy axis to the data (small models' curves stay readable); 0..1 otherwise.
    pub zoom_y: bool,
    pub legend: SeriesLabelPosition,
}

/// Writes the chart to `path`, PNG or SVG by its extension.
pub fn draw(path: &Path, chart: &Chart, series: &[Series], references: &[Reference]) -> anyhow::Result<()> {
    register_font();
    if path.extension().is_some_and(|e| e == "svg") {
        render(SVGBackend::new(path, chart.size).into_drawing_area(), chart, series, references)
    } else {
        render(BitMapBackend::new(path, chart.size).into_drawing_area(), chart, series, references)
    }
}

/// The report font, embedded: charts draw the same on a machine without fonts.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| ())
            .expect("embedded font parses");
    });
}

fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
    series: &[Series],
    references: &[Reference],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plotting: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let xs =
        || series.iter().flat_map(|s| s.points.iter().map(|p| p.x)).chain(references.iter().flat_map(|r| r.points.iter().map(|p| p.0)));
    let x_hi = xs().fold(1e-3, f64::max);
    let y_hi =
        if chart.zoom_y { (series.iter().flat_map(|s| &s.points).map(|p| p.hi).fold(0.0, f64::max) * 1.15).clamp(0.05, 1.0) } else { 1.0 };
    let mut builder = ChartBuilder::on(&root);
    builder.caption(chart.title, ("sans-serif", 20)).margin(16).x_label_area_size(44).y_label_area_size(56);
    if chart.log_x {
        let x_lo = xs().map(|x| x.max(1.0)).fold(f64::INFINITY, f64::min).min(x_hi) / 1.3;
        let mut c = builder.build_cartesian_2d((x_lo..x_hi * 1.3).log_scale(), 0.0..y_hi).map_err(err)?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .x_labels(8)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(RGBColor(240, 240, 240))
            .y_desc(chart.y_desc)
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        lines(&mut c, chart, series, references, |x| x.max(1.0)).map_err(err)
    } else {
        let mut c = builder.build_cartesian_2d(0.0..x_hi * 1.08, 0.0..y_hi).map_err(err)?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .y_label_formatter(&|y| format!("{:.0}%", y * 100.0))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        lines(&mut c, chart, series, references, |x| x).map_err(err)
    }?;
    root.present().map_err(err)?;
    Ok(())
}

fn lines<'a, DB: DrawingBackend + 'a, X: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    c: &mut ChartContext<'a, DB, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    chart: &Chart,
    series: &[Series],
    references: &[Reference],
    at: fn(f64) -> f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, s) in series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(s.points.iter().map(|p| (at(p.x), p.y)), colour.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
        c.draw_series(s.points.iter().map(|p| ErrorBar::new_vertical(at(p.x), p.lo, p.y, p.hi, colour.stroke_width(1), 6)))?;
        c.draw_series(s.points.iter().map(|p| Circle::new((at(p.x), p.y), 4, colour.filled())))?;
        c.draw_series(s.points.iter().map(|p| Text::new(p.label.clone(), (at(p.x), p.y + 0.015), ("sans-serif", 11))))?;
    }
    for r in references {
        c.draw_series(DashedLineSeries::new(r.points.iter().map(|&(x, y)| (at(x), y)), 6, 4, BLACK.stroke_width(2)))?
            .label(r.name.clone())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(chart.legend.clone())
        .draw()
}
