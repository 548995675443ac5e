//! The plots of docs/certification.md 9 as SVG text, drawn with plotters' SVG backend into a string
//! so that the same markup is written to `plots/<name>.svg` and inlined in `report.html`.
//!
//! Guarantees: text is emitted as `<text font-family=...>` elements (no font files, no
//! system fonts); a plot without data still draws its axes with a caption saying so, rather
//! than failing; output depends only on its inputs. Every threshold line carries a legend
//! label naming its value.

use std::collections::BTreeMap;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::analytics::ttft::{TtftBucket, MIN_BUCKET_TASKS};
use crate::analytics::{Analytics, DAY_MS};
use crate::model::{FaultRow, ReportData};
use seedcore_engine::memory::Tier;
use seedcore_engine::task::PerPath;
use seedcore_engine::Path;

/// The plots, by file name, with their titles; sorted by file name.
pub(super) const PLOTS: [(&str, &str); 10] = [
    ("cusum.svg", "OCPS valve: CUSUM statistic S against its threshold h"),
    ("energy.svg", "Organism energy E over time"),
    ("fast_ratio.svg", "Fast-path ratio per window against its target"),
    ("l_tot.svg", "Certified L_tot against the contraction limit 1.0"),
    ("latency_deep.svg", "Latency of completed deep-path tasks"),
    ("latency_fast.svg", "Latency of completed fast-path tasks"),
    ("memory.svg", "Memory fabric: hit rate per tier per window"),
    ("scaling.svg", "Autoscaler: replicas and targets per path, and fast-path p99 per window"),
    ("spend.svg", "Cumulative spend per simulated day against the daily budget"),
    ("ttft_vs_tokens_in.svg", "Time to first token against prompt tokens"),
];

const SIZE: (u32, u32) = (720, 360);
const FONT: &str = "sans-serif";
/// Bars of a latency histogram.
const HISTOGRAM_BINS: u64 = 40;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Every plot of [`PLOTS`] as `(file name, SVG text)`, in the same order. On failure, the
/// file name and the reason.
pub(super) fn render_all(data: &ReportData, analytics: &Analytics) -> Result<Vec<(String, String)>, (String, String)> {
    let axis = TimeAxis::new(data, analytics);
    PLOTS
        .iter()
        .map(|(file, title)| {
            let draw = |root: &Area| -> DrawResult {
                match *file {
                    "cusum.svg" => cusum(root, title, data, analytics, &axis),
                    "energy.svg" => energy(root, title, data, &axis),
                    "scaling.svg" => scaling(root, title, data, analytics, &axis),
                    "fast_ratio.svg" => fast_ratio(root, title, data, analytics, &axis),
                    "l_tot.svg" => l_tot(root, title, data, &axis),
                    "latency_deep.svg" => latency(root, title, data, &analytics.latency_deep_ms, "deep"),
                    "latency_fast.svg" => latency(root, title, data, &analytics.latency_fast_ms, "fast"),
                    "memory.svg" => memory(root, title, analytics, &axis),
                    "spend.svg" => spend(root, title, data, analytics, &axis),
                    "ttft_vs_tokens_in.svg" => ttft_vs_tokens_in(root, title, data, analytics),
                    other => Err(format!("no drawing for {other}").into()),
                }
            };
            svg(draw).map(|svg| (file.to_string(), svg)).map_err(|message| (file.to_string(), message))
        })
        .collect()
}

/// Runs `draw` on a fresh white canvas and returns the finished SVG document.
fn svg(draw: impl FnOnce(&Area) -> DrawResult) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// The time axis shared by the time series: minutes, or hours for runs over three hours.
struct TimeAxis {
    /// Milliseconds per axis unit.
    unit_ms: f64,
    /// The axis description, with its unit.
    desc: &'static str,
    /// End of the axis, in axis units (the run's duration or the last window, whichever is
    /// later).
    end: f64,
}

impl TimeAxis {
    fn new(data: &ReportData, analytics: &Analytics) -> TimeAxis {
        let windows_ms = analytics.window_ms.saturating_mul(analytics.windows.len() as u64);
        let end_ms = data.duration_ms.max(windows_ms).max(1);
        let (unit_ms, desc) = if end_ms > 3 * 3_600_000 {
            (3_600_000.0, "simulated time since start (h)")
        } else {
            (60_000.0, "simulated time since start (min)")
        };
        TimeAxis { unit_ms, desc, end: end_ms as f64 / unit_ms }
    }

    fn at(&self, ms: u64) -> f64 {
        ms as f64 / self.unit_ms
    }
}

/// A line with its legend entry.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// The fill of a fault's span.
const FAULT_FILL: RGBColor = RGBColor(255, 152, 0);

/// Shades each fault's span (start to end; an instant or endless one at least a 250th of
/// the axis wide, so it shows), under the series, with one legend entry.
fn fault_spans<'a>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    faults: &[FaultRow],
    axis: &TimeAxis,
    top: f64,
) -> DrawResult {
    let least = axis.end / 250.0;
    let spans: Vec<(f64, f64)> = faults
        .iter()
        .map(|f| {
            let start = axis.at(f.t_ms);
            let end = f.end_ms.map_or(axis.end, |e| axis.at(e)).max(start + least).min(axis.end.max(start + least));
            (start, end)
        })
        .collect();
    if spans.is_empty() {
        return Ok(());
    }
    chart
        .draw_series(
            spans.into_iter().map(|(x0, x1)| Rectangle::new([(x0, 0.0), (x1, top)], FAULT_FILL.mix(0.22).filled())),
        )?
        .label("fault")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], FAULT_FILL.mix(0.4).filled()));
    Ok(())
}

/// A caption in the middle of the plotting area, for plots without data.
/// The legend box, in the same style on every plot.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

fn note(root: &Area, text: &str) -> DrawResult {
    let (width, height) = root.dim_in_pixel();
    let style = TextStyle::from((FONT, 18).into_font()).color(&RGBColor(120, 120, 120)).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    root.draw(&Text::new(text.to_string(), (width as i32 / 2, height as i32 / 2), style))?;
    Ok(())
}

/// Splits a per-window series into runs of consecutive defined values, so that a line is
/// not drawn across windows without a value.
fn segments(points: impl Iterator<Item = Option<(f64, f64)>>) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for point in points {
        match (point, runs.last_mut()) {
            (Some(point), Some(run)) => run.push(point),
            (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

/// Buckets across the time axis when thinning a long line: finer than the plot's pixels.
const THIN_BUCKETS: f64 = 2_000.0;

/// A long line (one point per charge can mean hundreds of thousands) reduced to the first
/// and last point of each run of points that fall in the same 1/[`THIN_BUCKETS`] of the
/// axis. For a monotone or step line this draws the same picture at the plot's size.
fn thin(points: Vec<(f64, f64)>, end: f64) -> Vec<(f64, f64)> {
    if points.len() <= 2 * THIN_BUCKETS as usize || end <= 0.0 {
        return points;
    }
    let bucket = |x: f64| (x / end * THIN_BUCKETS).floor() as i64;
    let mut kept: Vec<(f64, f64)> = Vec::with_capacity(2 * THIN_BUCKETS as usize + 2);
    let mut run_len = 0;
    for point in points {
        let same_bucket = kept.last().is_some_and(|last| bucket(last.0) == bucket(point.0));
        if same_bucket && run_len >= 2 {
            // Replace the run's last point: only the run's first and last are kept.
            if let Some(last) = kept.last_mut() {
                *last = point;
            }
        } else {
            run_len = if same_bucket { run_len + 1 } else { 1 };
            kept.push(point);
        }
    }
    kept
}

/// What a ratio plot shows besides its series.
struct RatioMarks<'a> {
    y_desc: &'a str,
    /// A labelled horizontal line.
    threshold: Option<(f64, String)>,
    /// Shaded spans.
    faults: &'a [FaultRow],
}

/// One named series of a plot, in runs broken where values are missing.
struct Line {
    label: String,
    color: RGBColor,
    runs: Vec<Vec<(f64, f64)>>,
}

/// Colours of the memory tiers (Mw, M2.5, Mlt) and of the paths (fast, deep).
const TIER_COLORS: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44)];
const PATH_COLORS: [RGBColor; 2] = [RGBColor(31, 119, 180), RGBColor(148, 103, 189)];

/// Per-window ratios (0 to 1) over time, with an optional labelled threshold.
fn ratio_plot(root: &Area, title: &str, axis: &TimeAxis, lines: Vec<Line>, marks: RatioMarks) -> DrawResult {
    let RatioMarks { y_desc, threshold, faults } = marks;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..axis.end, 0f64..1.05f64)?;
    chart.configure_mesh().x_desc(axis.desc).y_desc(y_desc).light_line_style(RGBColor(235, 235, 235)).draw()?;
    fault_spans(&mut chart, faults, axis, 1.05)?;
    let empty = lines.iter().all(|line| line.runs.is_empty());
    // The legend goes to the half of the plot the series mostly leaves free.
    let (sum, count) = lines
        .iter()
        .flat_map(|line| line.runs.iter().flatten())
        .fold((0.0, 0usize), |(sum, count), (_, y)| (sum + y, count + 1));
    let legend_at = if count > 0 && sum / count as f64 > 0.5 {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    for line in lines {
        for (i, run) in line.runs.into_iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run, line.color.stroke_width(2)).point_size(2))?;
            if i == 0 {
                drawn.label(line.label.clone()).legend(legend_line(line.color));
            }
        }
    }
    if let Some((value, label)) = threshold {
        chart
            .draw_series(LineSeries::new([(0.0, value), (axis.end, value)], RED.stroke_width(2)))?
            .label(label)
            .legend(legend_line(RED));
    }
    legend(&mut chart, legend_at)?;
    if empty {
        note(root, "no outcome in any window")?;
    }
    Ok(())
}

fn fast_ratio(root: &Area, title: &str, data: &ReportData, analytics: &Analytics, axis: &TimeAxis) -> DrawResult {
    let target = data.limits.fast_target_ppm as f64 / 1e6;
    let series = segments(
        analytics
            .windows
            .iter()
            .map(|w| w.fast_ratio.map(|ratio| (axis.at(w.start_ms) + axis.at(analytics.window_ms) / 2.0, ratio))),
    );
    let marks = RatioMarks {
        y_desc: "fast completed / (completed + failed)",
        threshold: Some((target, format!("target {target:.2}"))),
        faults: &data.faults,
    };
    let line = Line { label: "fast-path ratio per window".into(), color: BLUE, runs: series };
    ratio_plot(root, title, axis, vec![line], marks)
}

fn memory(root: &Area, title: &str, analytics: &Analytics, axis: &TimeAxis) -> DrawResult {
    let mid = |w: &crate::analytics::Window| axis.at(w.start_ms) + axis.at(analytics.window_ms) / 2.0;
    let mut lines = vec![Line {
        label: "any tier".into(),
        color: RGBColor(120, 120, 120),
        runs: segments(analytics.windows.iter().map(|w| w.cache_hit_rate.map(|rate| (mid(w), rate)))),
    }];
    for tier in Tier::ALL {
        lines.push(Line {
            label: tier.label().into(),
            color: TIER_COLORS[tier.index()],
            runs: segments(analytics.windows.iter().map(|w| w.tier_hit_rates[tier.index()].map(|rate| (mid(w), rate)))),
        });
    }
    let marks = RatioMarks { y_desc: "cache hits / fast completions", threshold: None, faults: &[] };
    ratio_plot(root, title, axis, lines, marks)
}

/// A step line through `(t_ms, value)` changes, held to `end`.
fn steps(points: impl Iterator<Item = (u64, f64)>, axis: &TimeAxis, end: f64) -> Vec<(f64, f64)> {
    let mut line: Vec<(f64, f64)> = Vec::new();
    for (t_ms, value) in points {
        if let Some(&(_, previous)) = line.last() {
            line.push((axis.at(t_ms), previous));
        }
        line.push((axis.at(t_ms), value));
    }
    if let Some(&(_, last)) = line.last() {
        line.push((end, last));
    }
    line
}

fn energy(root: &Area, title: &str, data: &ReportData, axis: &TimeAxis) -> DrawResult {
    let series = &data.organism.energy;
    let end = axis.end.max(series.last().map_or(0.0, |(t, _)| axis.at(*t)));
    let points: Vec<(f64, f64)> = series.iter().map(|(t, ppm)| (axis.at(*t), *ppm as f64 / 1e6)).collect();
    let (low, high) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), (_, y)| (l.min(*y), h.max(*y)));
    let (low, high) = if low.is_finite() { (low, high) } else { (-1.0, 1.0) };
    let pad = ((high - low) * 0.1).max(1e-3);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end.max(1e-9), (low - pad)..(high + pad))?;
    chart
        .configure_mesh()
        .x_desc(axis.desc)
        .y_desc("E = E_pair + E_reg + E_ent + E_mem")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let empty = points.is_empty();
    if !empty {
        chart
            .draw_series(LineSeries::new(thin(points, end), BLUE.stroke_width(2)))?
            .label("energy at each sweep and promotion")
            .legend(legend_line(BLUE));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    } else {
        note(root, "no energy recorded")?;
    }
    Ok(())
}

fn scaling(root: &Area, title: &str, data: &ReportData, analytics: &Analytics, axis: &TimeAxis) -> DrawResult {
    let (top, bottom) = root.split_vertically(SIZE.1 * 11 / 20);
    let points = &data.organism.scale_points;
    let end = axis.end.max(points.last().map_or(0.0, |p| axis.at(p.t_ms)));
    let highest = points.iter().map(|p| p.replicas.max(p.target)).max().unwrap_or(1).max(1) as f64;
    let mut chart = ChartBuilder::on(&top)
        .caption(title, (FONT, 16))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end.max(1e-9), 0f64..highest * 1.2 + 0.5)?;
    chart.configure_mesh().y_desc("workers").light_line_style(RGBColor(235, 235, 235)).draw()?;
    for path in [Path::Fast, Path::Deep] {
        let color = PATH_COLORS[path.index()];
        let of_path = || points.iter().filter(move |p| p.path == path);
        let replicas = steps(of_path().map(|p| (p.t_ms, f64::from(p.replicas))), axis, end);
        let target = steps(of_path().map(|p| (p.t_ms, f64::from(p.target))), axis, end);
        if replicas.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(replicas, color.stroke_width(2)))?
            .label(format!("{} replicas", path.as_str()))
            .legend(legend_line(color));
        chart
            .draw_series(DashedLineSeries::new(target, 6, 4, color.stroke_width(1)))?
            .label(format!("{} target", path.as_str()))
            .legend(legend_line(color));
    }
    if points.is_empty() {
        note(&top, "the autoscaler is off, or never acted")?;
    } else {
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    let p99: Vec<(f64, f64)> = analytics
        .windows
        .iter()
        .filter_map(|w| w.fast_p99_ms.map(|ms| (axis.at(w.start_ms) + axis.at(analytics.window_ms) / 2.0, ms as f64)))
        .collect();
    let slowest = p99.iter().map(|(_, y)| *y).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end.max(1e-9), 0f64..slowest * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(axis.desc)
        .y_desc("fast p99 (ms)")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    if !p99.is_empty() {
        chart
            .draw_series(LineSeries::new(p99, RED.stroke_width(2)))?
            .label("fast-path p99 per window")
            .legend(legend_line(RED));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

fn cusum(root: &Area, title: &str, data: &ReportData, analytics: &Analytics, axis: &TimeAxis) -> DrawResult {
    let h = data.limits.cusum_h;
    let series = segments(
        analytics
            .windows
            .iter()
            .map(|w| w.cusum_max.map(|s| (axis.at(w.start_ms) + axis.at(analytics.window_ms) / 2.0, s))),
    );
    let highest = series.iter().flatten().map(|(_, s)| *s).fold(h, f64::max);
    let top = if highest.is_finite() && highest > 0.0 { highest * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..axis.end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc(axis.desc)
        .y_desc("CUSUM S (max per window)")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    fault_spans(&mut chart, &data.faults, axis, top)?;
    let empty = series.is_empty();
    for (i, run) in series.into_iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(run, BLUE.stroke_width(2)).point_size(2))?;
        if i == 0 {
            drawn.label("S, max per window").legend(legend_line(BLUE));
        }
    }
    chart
        .draw_series(LineSeries::new([(0.0, h), (axis.end, h)], RED.stroke_width(2)))?
        .label(format!("threshold h = {h}"))
        .legend(legend_line(RED));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    if empty {
        note(root, "no routed task")?;
    }
    Ok(())
}

fn latency(root: &Area, title: &str, data: &ReportData, values_ms: &[u64], path: &str) -> DrawResult {
    let max_ms = values_ms.iter().copied().max();
    let bin_ms = max_ms.map_or(1, |max| (max + 1).div_ceil(HISTOGRAM_BINS).max(1));
    let mut counts = vec![0u64; HISTOGRAM_BINS as usize];
    for value in values_ms {
        if let Some(count) = usize::try_from(value / bin_ms).ok().and_then(|bin| counts.get_mut(bin)) {
            *count += 1;
        }
    }
    let x_end = (bin_ms * HISTOGRAM_BINS) as f64;
    // Integer counts on an integer axis, so that every tick is a whole number of tasks.
    let highest = counts.iter().copied().max().unwrap_or(0);
    let y_end = highest + highest / 10 + 1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_end, 0u64..y_end)?;
    chart
        .configure_mesh()
        .x_desc("latency (ms)")
        .y_desc("completed tasks")
        .x_label_formatter(&|ms| format!("{ms:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let bars = counts.iter().enumerate().filter(|(_, count)| **count > 0).map(|(bin, count)| {
        let x0 = (bin as u64 * bin_ms) as f64;
        Rectangle::new([(x0, 0), (x0 + bin_ms as f64, *count)], BLUE.mix(0.6).filled())
    });
    chart.draw_series(bars)?;
    let p99 = data.latency.iter().find(|l| l.path == path && l.completed > 0).map(|l| l.p99_ms);
    if let (Some(p99), Some(_)) = (p99, max_ms) {
        let x = (p99 as f64).min(x_end);
        chart
            .draw_series(LineSeries::new([(x, 0), (x, y_end)], RED.stroke_width(2)))?
            .label(format!("p99 = {p99} ms"))
            .legend(legend_line(RED));
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    if max_ms.is_none() {
        note(root, &format!("no completed task on the {path} path"))?;
    }
    Ok(())
}

fn spend(root: &Area, title: &str, data: &ReportData, analytics: &Analytics, axis: &TimeAxis) -> DrawResult {
    let budget_usd = data.limits.daily_budget_micro_usd as f64 / 1e6;
    let highest = analytics.spend.iter().map(|s| s.spent_micro_usd).max().unwrap_or(0) as f64 / 1e6;
    let top = budget_usd.max(highest).max(1e-6) * 1.08;
    let end = axis.end.max(analytics.spend.last().map_or(0.0, |s| axis.at(s.t_ms)));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..end, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc(axis.desc)
        .y_desc("cumulative spend that day (USD)")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // One line per day, each starting from zero at the start of its day (or of the run).
    let mut days: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current_day = None;
    for point in &analytics.spend {
        if current_day != Some(point.day) {
            current_day = Some(point.day);
            let day_start_ms = point.day.saturating_mul(DAY_MS).saturating_sub(data.epoch_utc_ms);
            days.push(vec![(axis.at(day_start_ms), 0.0)]);
        }
        if let Some(line) = days.last_mut() {
            let y = point.spent_micro_usd as f64 / 1e6;
            if let Some(&(_, previous)) = line.last() {
                line.push((axis.at(point.t_ms), previous));
            }
            line.push((axis.at(point.t_ms), y));
        }
    }
    let empty = days.is_empty();
    for (i, line) in days.into_iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(thin(line, end), BLUE.stroke_width(2)))?;
        if i == 0 {
            drawn.label("cumulative spend").legend(legend_line(BLUE));
        }
    }
    chart
        .draw_series(LineSeries::new([(0.0, budget_usd), (end, budget_usd)], RED.stroke_width(2)))?
        .label(format!("daily budget ${budget_usd:.2}"))
        .legend(legend_line(RED));
    legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
    if empty {
        note(root, "nothing was charged")?;
    }
    Ok(())
}

fn l_tot(root: &Area, title: &str, data: &ReportData, axis: &TimeAxis) -> DrawResult {
    let end = axis.end.max(data.l_tot.last().map_or(0.0, |(t, _)| axis.at(*t)));
    let steps = steps(data.l_tot.iter().map(|(t_ms, ppm)| (*t_ms, *ppm as f64 / 1e6)), axis, end);
    let highest = steps.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let lowest = steps.iter().map(|(_, v)| *v).fold(0.0, f64::min);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..end, lowest..highest * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(axis.desc)
        .y_desc("L_tot (Lipschitz bound)")
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let empty = steps.is_empty();
    if !empty {
        chart
            .draw_series(LineSeries::new(thin(steps, end), BLUE.stroke_width(2)))?
            .label("certified L_tot")
            .legend(legend_line(BLUE));
    }
    chart
        .draw_series(LineSeries::new([(0.0, 1.0), (end, 1.0)], RED.stroke_width(2)))?
        .label("limit L_tot = 1.0")
        .legend(legend_line(RED));
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    if empty {
        note(root, "no L_tot recorded")?;
    }
    Ok(())
}

/// Share of the plotting area the TTFT plot's legend box takes, across and up (five entries
/// of 13-pixel text, the threshold's the longest).
const TTFT_LEGEND_BOX: (f64, f64) = (0.38, 0.45);

/// One path's series of the TTFT plot, in runs broken where a bucket is left out: the median
/// and the 99th percentile of each bucket, at the bucket's middle.
struct TtftSeries {
    path: Path,
    median: Vec<Vec<(f64, f64)>>,
    p99: Vec<Vec<(f64, f64)>>,
}

/// Time to first token against prompt tokens, both axes log-scaled: per path, the median
/// (solid line, open points) and the 99th percentile (dashed line, filled points) of each
/// power-of-two bucket of `tokens_in` with enough completed uncached tasks, against the
/// policy's `ttft_p99` threshold. Without a `ttft_ms` column in tasks.csv, or without a
/// bucket, it draws the axes and the threshold with a note.
fn ttft_vs_tokens_in(root: &Area, title: &str, data: &ReportData, analytics: &Analytics) -> DrawResult {
    let threshold = data.limits.ttft_p99_threshold_ms;
    let none = PerPath::default();
    let buckets = analytics.ttft_by_tokens_in.as_ref().unwrap_or(&none);
    let (x, y) = ttft_ranges(buckets, threshold);
    let series = ttft_series(buckets);
    let x_axis = (x.0..x.1).log_scale().with_key_points(thinned(log_ticks(x, 2.0, &[1.0])));
    let y_ticks = match log_ticks(y, 10.0, &[1.0, 2.0, 5.0]) {
        ticks if ticks.len() > MAX_TICKS => log_ticks(y, 10.0, &[1.0]),
        ticks => ticks,
    };
    let y_light: Vec<f64> = log_ticks(y, 10.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let y_axis = (y.0..y.1).log_scale().with_key_points(thinned(y_ticks)).with_light_points(y_light);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(x_axis, y_axis)?;
    chart
        .configure_mesh()
        .x_desc("prompt tokens (tokens_in, in buckets of powers of two)")
        .y_desc("time to first token (ms)")
        .x_label_formatter(&|tokens| format!("{tokens:.0}"))
        .y_label_formatter(&|ms| format!("{ms:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let corner = {
        let runs: Vec<&[(f64, f64)]> =
            series.iter().flat_map(|s| s.median.iter().chain(&s.p99)).map(Vec::as_slice).collect();
        free_corner(&runs, x, y)
    };
    draw_ttft_series(&mut chart, series)?;
    let line = on_log_axis(threshold);
    chart
        .draw_series(LineSeries::new([(x.0, line), (x.1, line)], RED.stroke_width(2)))?
        .label(format!("ttft_p99 threshold {threshold} ms"))
        .legend(legend_line(RED));
    legend(&mut chart, corner)?;
    match &analytics.ttft_by_tokens_in {
        None => note(root, "no time-to-first-token data in this run")?,
        Some(buckets) if buckets.values().all(Vec::is_empty) => {
            note(root, &format!("no prompt-size bucket of {MIN_BUCKET_TASKS} or more completed uncached tasks"))?
        }
        Some(_) => {}
    }
    Ok(())
}

/// Milliseconds as drawn on a log-scaled axis: from 1 ms (a log scale has no 0) to 10^12.
fn on_log_axis(ms: f64) -> f64 {
    if ms.is_nan() {
        1.0
    } else {
        ms.clamp(1.0, 1e12)
    }
}

/// `2^log2` (the exponent at most 63).
fn pow2(log2: u64) -> f64 {
    2f64.powi(log2.min(63) as i32)
}

/// Labelled ticks an axis of the TTFT plot shows at most.
const MAX_TICKS: usize = 12;

/// A log-scaled axis with ticks of its own ([`log_ticks`]).
type LogAxis = WithKeyPoints<LogCoord<f64>>;

/// The ticks of a log-scaled axis over `range` (both ends positive): each of `steps` times
/// each integer power of `base` (above 1), those inside the range, ascending (at most 256).
fn log_ticks(range: (f64, f64), base: f64, steps: &[f64]) -> Vec<f64> {
    let mut ticks = Vec::new();
    let usable = base > 1.0 && range.0 > 0.0 && range.0.is_finite() && range.1.is_finite();
    if !usable {
        return ticks;
    }
    let mut power = base.powi(range.0.log(base).floor() as i32);
    while power <= range.1 && ticks.len() < 256 {
        ticks.extend(steps.iter().map(|step| step * power).filter(|tick| (range.0..=range.1).contains(tick)));
        power *= base;
    }
    ticks
}

/// Every other tick, or every third..., until at most [`MAX_TICKS`] are left.
fn thinned(ticks: Vec<f64>) -> Vec<f64> {
    let step = ticks.len().div_ceil(MAX_TICKS).max(1);
    ticks.into_iter().step_by(step).collect()
}

/// The TTFT plot's log-scaled ranges, `(x, y)`. Prompt tokens: from a little below the
/// smallest bucket's first size to a little above the largest bucket's last, at least two
/// octaves (16 to 4,096 tokens without buckets). Milliseconds: from below the lowest value to
/// above the highest value and the threshold, from 1 ms and at least two decades. So each
/// axis holds two powers (of 2, of 10) or more: two labelled ticks at least.
fn ttft_ranges(buckets: &PerPath<Vec<TtftBucket>>, threshold_ms: f64) -> ((f64, f64), (f64, f64)) {
    let all = || buckets.values().flatten();
    let first = all().map(|b| b.log2).min().unwrap_or(4).min(60);
    let last = all().map(|b| b.log2).max().unwrap_or(11).clamp(first + 1, 61);
    let x = (pow2(first) / 1.25, pow2(last + 1) * 1.25);
    let threshold = on_log_axis(threshold_ms);
    let (lowest, highest) = all()
        .flat_map(|b| [b.p50_ms, b.p99_ms])
        .map(|ms| on_log_axis(ms as f64))
        .fold((threshold, threshold), |(low, high), ms| (low.min(ms), high.max(ms)));
    let top = highest * 1.6;
    let bottom = (lowest / 1.6).min(top / 120.0).max(1.0);
    (x, (bottom, top.max(bottom * 120.0)))
}

/// Each path's median and 99th-percentile runs, fast first; a run breaks where a bucket
/// between the path's first and last is left out.
fn ttft_series(buckets: &PerPath<Vec<TtftBucket>>) -> Vec<TtftSeries> {
    buckets
        .iter()
        .map(|(path, buckets)| {
            let by_log2: BTreeMap<u64, &TtftBucket> = buckets.iter().map(|b| (b.log2, b)).collect();
            let first = by_log2.keys().next().copied().unwrap_or(0);
            let last = by_log2.keys().next_back().copied().unwrap_or(0);
            let runs = |value: fn(&TtftBucket) -> u64| {
                segments((first..=last).map(|log2| {
                    let middle = pow2(log2) * std::f64::consts::SQRT_2;
                    by_log2.get(&log2).map(|&b| (middle, on_log_axis(value(b) as f64)))
                }))
            };
            TtftSeries { path, median: runs(|b| b.p50_ms), p99: runs(|b| b.p99_ms) }
        })
        .collect()
}

/// Draws each path's median (solid, open points) and 99th percentile (dashed, filled
/// points) in the path's colour, each with one legend entry.
fn draw_ttft_series<'a>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<LogAxis, LogAxis>>,
    series: Vec<TtftSeries>,
) -> DrawResult {
    for TtftSeries { path, median, p99 } in series {
        let color = PATH_COLORS[path.index()];
        for (i, run) in median.into_iter().enumerate() {
            let drawn = chart.draw_series(LineSeries::new(run, color.stroke_width(2)).point_size(3))?;
            if i == 0 {
                drawn.label(format!("{} median", path.as_str())).legend(legend_line(color));
            }
        }
        for (i, run) in p99.into_iter().enumerate() {
            chart.draw_series(run.iter().map(|&point| Circle::new(point, 3, color.filled())))?;
            let drawn = chart.draw_series(DashedLineSeries::new(run, 6, 4, color.stroke_width(2)))?;
            if i == 0 {
                drawn.label(format!("{} p99", path.as_str())).legend(move |(x, y)| {
                    DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, color.stroke_width(2))
                });
            }
        }
    }
    Ok(())
}

/// The corner of the plotting area where a legend box of [`TTFT_LEGEND_BOX`] hides the
/// fewest points of `runs` and middles of their segments, on the log-scaled ranges `x` and
/// `y`; ties go to the first of upper left, upper right, lower right and lower left.
fn free_corner(runs: &[&[(f64, f64)]], x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let share = |value: f64, (low, high): (f64, f64)| (value.ln() - low.ln()) / (high.ln() - low.ln());
    let mut marks: Vec<(f64, f64)> = Vec::new();
    for run in runs {
        let scaled: Vec<(f64, f64)> = run.iter().map(|&(px, py)| (share(px, x), share(py, y))).collect();
        marks.extend(scaled.windows(2).map(|pair| ((pair[0].0 + pair[1].0) / 2.0, (pair[0].1 + pair[1].1) / 2.0)));
        marks.extend(scaled);
    }
    let (width, height) = TTFT_LEGEND_BOX;
    let corners = [
        (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - height),
        (SeriesLabelPosition::UpperRight, 1.0 - width, 1.0 - height),
        (SeriesLabelPosition::LowerRight, 1.0 - width, 0.0),
        (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
    ];
    let hidden = |left: f64, bottom: f64| {
        marks
            .iter()
            .filter(|(mx, my)| (left..=left + width).contains(mx) && (bottom..=bottom + height).contains(my))
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|(_, left, bottom)| hidden(*left, *bottom))
        .map_or(SeriesLabelPosition::UpperLeft, |(corner, _, _)| corner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_break_at_missing_values() {
        let points = [Some((0.0, 1.0)), Some((1.0, 0.5)), None, None, Some((4.0, 0.2)), None];
        assert_eq!(segments(points.into_iter()), vec![vec![(0.0, 1.0), (1.0, 0.5)], vec![(4.0, 0.2)]]);
        assert!(segments([None, None].into_iter()).is_empty());
    }

    #[test]
    fn thin_keeps_first_and_last_point_per_bucket() {
        let points: Vec<(f64, f64)> = (0..100_000).map(|i| (f64::from(i) / 1_000.0, f64::from(i))).collect();
        let thinned = thin(points.clone(), 100.0);
        assert!(thinned.len() <= 2 * THIN_BUCKETS as usize, "{}", thinned.len());
        assert_eq!(thinned.first(), points.first());
        assert_eq!(thinned.last(), points.last());
        assert!(thinned.windows(2).all(|pair| pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1));
        let short = vec![(0.0, 1.0), (0.0, 2.0)];
        assert_eq!(thin(short.clone(), 1.0), short);
    }

    #[test]
    fn plots_are_sorted_by_file_name() {
        assert!(PLOTS.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    /// Analytics with nothing but the time to first token against prompt size.
    fn ttft_analytics(ttft_by_tokens_in: Option<PerPath<Vec<TtftBucket>>>) -> Analytics {
        Analytics {
            window_ms: 1_000,
            windows: Vec::new(),
            spend: Vec::new(),
            latency_fast_ms: Vec::new(),
            latency_deep_ms: Vec::new(),
            kinds: BTreeMap::new(),
            ttft_by_tokens_in,
        }
    }

    fn ttft_svg(ttft_by_tokens_in: Option<PerPath<Vec<TtftBucket>>>) -> String {
        let data = crate::analytics::tests::report_data();
        svg(|root| ttft_vs_tokens_in(root, "TTFT", &data, &ttft_analytics(ttft_by_tokens_in))).expect("draws")
    }

    fn bucket(log2: u64, p50_ms: u64, p99_ms: u64) -> TtftBucket {
        TtftBucket { log2, tasks: 5, p50_ms, p99_ms }
    }

    /// Fast buckets of 64, 128 and 512 tokens (the one of 256 left out), deep ones of 1,024
    /// and 2,048: one open point per median and one filled point per p99, in each path's
    /// colour, the threshold line with its label, a legend entry per series, and no note.
    #[test]
    fn ttft_plot_draws_both_paths_against_the_threshold() {
        let buckets = PerPath {
            fast: vec![bucket(6, 50, 120), bucket(7, 80, 300), bucket(9, 200, 900)],
            deep: vec![bucket(10, 2_900, 4_100), bucket(11, 3_200, 6_000)],
        };
        let svg = ttft_svg(Some(buckets));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("ttft_p99 threshold 800 ms"), "the threshold is labelled");
        for label in ["fast median", "fast p99", "deep median", "deep p99", "time to first token (ms)"] {
            assert!(svg.contains(label), "no `{label}`");
        }
        assert_eq!(svg.matches("<circle").count(), 10, "a point per bucket per percentile");
        assert_eq!(svg.matches("fill=\"#1F77B4\"").count(), 3, "the fast p99 points");
        assert_eq!(svg.matches("fill=\"#9467BD\"").count(), 2, "the deep p99 points");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "every coordinate is finite");
        assert!(!svg.contains("no time-to-first-token data") && !svg.contains("no prompt-size bucket"));
    }

    /// A tasks.csv without `ttft_ms` (a run before it was recorded), or without a bucket of
    /// enough tasks, still draws the axes and the threshold, with a note saying so.
    #[test]
    fn ttft_plot_without_data_says_so() {
        let svg = ttft_svg(None);
        assert!(svg.contains("no time-to-first-token data in this run"), "{svg}");
        assert!(svg.contains("ttft_p99 threshold 800 ms"));
        assert_eq!(svg.matches("<circle").count(), 0);
        let svg = ttft_svg(Some(PerPath::default()));
        assert!(svg.contains("no prompt-size bucket of 5 or more completed uncached tasks"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    /// Both axes span at least two powers (two labelled ticks), the y axis from 1 ms and
    /// around the threshold and every value; without buckets, 16 to 4,096 tokens.
    #[test]
    fn ttft_ranges_hold_every_value_and_two_powers() {
        let buckets = PerPath { fast: vec![bucket(6, 0, 300)], deep: vec![bucket(6, 3_000, 5_000)] };
        let ((x0, x1), (y0, y1)) = ttft_ranges(&buckets, 800.0);
        assert!(x0 < 64.0 && x1 > 128.0 && x1 / x0 >= 4.0, "{x0}..{x1}");
        assert!((1.0..300.0).contains(&y0) && y1 > 5_000.0 && y1 / y0 >= 100.0, "{y0}..{y1}");
        let ((x0, x1), (y0, y1)) = ttft_ranges(&PerPath::default(), 800.0);
        assert_eq!((x0, x1), (16.0 / 1.25, 4_096.0 * 1.25));
        assert!(y0 < 800.0 && y1 > 800.0 && y1 / y0 >= 100.0, "{y0}..{y1}");
        let (_, (y0, y1)) = ttft_ranges(&PerPath::default(), 0.0);
        assert!(y0 >= 1.0 && y1 / y0 >= 100.0, "a threshold of 0 ms is drawn at 1 ms");
    }

    /// Ticks at 1, 2 and 5 times the powers of ten inside the range, at the powers of two;
    /// thinned to at most twelve.
    #[test]
    fn log_ticks_are_powers_and_their_steps_inside_the_range() {
        assert_eq!(log_ticks((31.25, 9_600.0), 10.0, &[1.0, 2.0, 5.0]), [50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3]);
        let octaves = log_ticks((16.0 / 1.25, 4_096.0 * 1.25), 2.0, &[1.0]);
        assert_eq!(octaves, [16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1_024.0, 2_048.0, 4_096.0]);
        assert_eq!(log_ticks((1.0, 10.0), 10.0, &[1.0]), [1.0, 10.0], "both ends count");
        assert!(log_ticks((0.0, 10.0), 10.0, &[1.0]).is_empty() && log_ticks((1.0, 10.0), 1.0, &[1.0]).is_empty());
        let many: Vec<f64> = (0..24).map(f64::from).collect();
        assert_eq!(thinned(many).len(), 12);
        assert_eq!(thinned(octaves.clone()), octaves);
    }

    /// A run broken at a left-out bucket, and the legend in the corner the points leave free.
    #[test]
    fn ttft_series_break_at_gaps_and_the_legend_avoids_the_points() {
        let buckets = PerPath { fast: vec![bucket(4, 10, 20), bucket(5, 10, 20), bucket(7, 10, 20)], deep: vec![] };
        let series = ttft_series(&buckets);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].median.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(series[1].median.is_empty() && series[1].p99.is_empty());
        let (x, y) = ((1.0, 1_000.0), (1.0, 1_000.0));
        assert_eq!(free_corner(&[], x, y), SeriesLabelPosition::UpperLeft);
        let upper_left: &[(f64, f64)] = &[(2.0, 900.0), (3.0, 800.0)];
        assert_eq!(free_corner(&[upper_left], x, y), SeriesLabelPosition::UpperRight);
        let top: &[(f64, f64)] = &[(2.0, 900.0), (900.0, 900.0)];
        assert_eq!(free_corner(&[top], x, y), SeriesLabelPosition::LowerRight);
    }
}
