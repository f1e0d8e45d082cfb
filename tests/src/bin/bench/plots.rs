//! The SVG plots of docs/PERFORMANCE.md, drawn from this run's figures.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::broker::Level;
use crate::spawn::SizePoint;

/// A named series of (x, y) points and its colour.
pub struct Series {
    pub name: String,
    pub colour: RGBColor,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

fn series(
    name: impl Into<String>,
    colour: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
) -> Series {
    Series {
        name: name.into(),
        colour,
        dashed,
        points,
    }
}

/// A line chart with points, x from 0, y from 0 or (`log_y`) on a
/// logarithmic scale: brokered and direct calls differ by more than 10×.
fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    log_y: bool,
    legend: SeriesLabelPosition,
    all: &[Series],
) -> anyhow::Result<()> {
    let values = || all.iter().flat_map(|s| s.points.iter());
    let x_max = values().map(|p| p.0).fold(0.0_f64, f64::max) * 1.05;
    let y_max = values().map(|p| p.1).fold(0.0_f64, f64::max);
    let y_min = values().map(|p| p.1).fold(f64::MAX, f64::min);
    let root = SVGBackend::new(path, (860, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if log_y {
        let y = (y_min.max(1e-6) / 1.5..y_max.max(1e-6) * 1.5).log_scale();
        let chart = builder.build_cartesian_2d(0.0..x_max.max(1e-9), y)?;
        draw(chart, x_desc, y_desc, legend, all)?;
    } else {
        let chart =
            builder.build_cartesian_2d(0.0..x_max.max(1e-9), 0.0..(y_max * 1.15).max(1e-9))?;
        draw(chart, x_desc, y_desc, legend, all)?;
    }
    root.present()?;
    Ok(())
}

fn draw<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    x_desc: &str,
    y_desc: &str,
    legend: SeriesLabelPosition,
    all: &[Series],
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .draw()?;
    for s in all {
        let colour = s.colour;
        let style = ShapeStyle::from(&colour).stroke_width(2);
        if s.dashed {
            chart.draw_series(DashedLineSeries::new(s.points.clone(), 6, 4, style))?;
        } else {
            chart.draw_series(LineSeries::new(s.points.clone(), style))?;
        }
        chart
            .draw_series(PointSeries::of_element(
                s.points.clone(),
                4,
                ShapeStyle::from(&colour).filled(),
                &|c, size, st| Circle::new(c, size, st),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

const READ: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const WRITE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const DIRECT_READ: RGBColor = RGBColor(0x7f, 0xb8, 0xe0);
const DIRECT_WRITE: RGBColor = RGBColor(0xf0, 0x9a, 0x9a);

pub fn concurrency(dir: &Path, reads: &[Level], writes: &[Level]) -> anyhow::Result<()> {
    let pts = |levels: &[Level], f: fn(&Level) -> f64| -> Vec<(f64, f64)> {
        levels.iter().map(|l| (l.runs as f64, f(l))).collect()
    };
    line_chart(
        &dir.join("latency-vs-concurrency.svg"),
        "Call latency against concurrent runs (median solid, p99 dashed; log scale)",
        "concurrent runs (brokered) or clients (direct)",
        "latency (ms)",
        true,
        SeriesLabelPosition::LowerRight,
        &[
            series(
                "brokered read, median",
                READ,
                false,
                pts(reads, |l| l.brokered.median),
            ),
            series(
                "brokered read, p99",
                READ,
                true,
                pts(reads, |l| l.brokered.p99),
            ),
            series(
                "brokered write, median",
                WRITE,
                false,
                pts(writes, |l| l.brokered.median),
            ),
            series(
                "brokered write, p99",
                WRITE,
                true,
                pts(writes, |l| l.brokered.p99),
            ),
            series(
                "direct read, median",
                DIRECT_READ,
                false,
                pts(reads, |l| l.direct.median),
            ),
            series(
                "direct write, median",
                DIRECT_WRITE,
                false,
                pts(writes, |l| l.direct.median),
            ),
        ],
    )?;
    line_chart(
        &dir.join("throughput-vs-concurrency.svg"),
        "Throughput against concurrent runs (log scale)",
        "concurrent runs (brokered) or clients (direct)",
        "calls per second",
        true,
        SeriesLabelPosition::MiddleRight,
        &[
            series(
                "brokered reads",
                READ,
                false,
                pts(reads, |l| l.brokered_rate),
            ),
            series(
                "brokered writes",
                WRITE,
                false,
                pts(writes, |l| l.brokered_rate),
            ),
            series(
                "direct reads",
                DIRECT_READ,
                true,
                pts(reads, |l| l.direct_rate),
            ),
            series(
                "direct writes",
                DIRECT_WRITE,
                true,
                pts(writes, |l| l.direct_rate),
            ),
        ],
    )
}

pub fn start_vs_size(dir: &Path, points: &[SizePoint]) -> anyhow::Result<()> {
    let mib = |p: &SizePoint| p.bytes as f64 / (1 << 20) as f64;
    line_chart(
        &dir.join("start-vs-size.svg"),
        "Run start (spawn → first byte on fd 3, medians) against executable size",
        "executable size (MiB)",
        "start time (ms)",
        false,
        SeriesLabelPosition::UpperLeft,
        &[
            series(
                "Linux sandbox (measure + seal + spawn)",
                READ,
                false,
                points.iter().map(|p| (mib(p), p.sandbox_ms)).collect(),
            ),
            series(
                "plain fork/exec",
                DIRECT_READ,
                true,
                points.iter().map(|p| (mib(p), p.plain_ms)).collect(),
            ),
        ],
    )
}
