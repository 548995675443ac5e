//! Trend plots as small hand-written inline SVG: one measure of one scenario, a point per
//! verified certification in time order, the y axis from the lowest to the highest value (a
//! little padded) and the first and last times under the x axis. Each point carries its
//! time, seed and stated value as a tooltip (`<title>`), so the plot needs no script.

use super::escape;
use std::fmt::Write as _;

const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 190.0;
/// The plot area inside the picture.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 326.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 140.0;

/// One measure over time.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    pub title: String,
    /// The y axis's label.
    pub unit: String,
    /// In time order; at least one.
    pub points: Vec<TrendPoint>,
}

/// One certification's value.
#[derive(Clone, Debug, PartialEq)]
pub struct TrendPoint {
    pub value: f64,
    /// When, which seed, and the value as the certificate states it.
    pub tip: String,
    /// The time for the x axis, e.g. `2026-12-06 11:02`.
    pub time: String,
}

/// The number a stated value starts with: `87` of `87 ms`, `0.9412` of `0.9412`; `None`
/// when it does not start with one (`summary 93/100`).
pub fn leading_number(text: &str) -> Option<f64> {
    let text = text.trim_start();
    let (mut end, mut digits, mut dot) = (0, false, false);
    for (at, c) in text.char_indices() {
        match c {
            '-' | '+' if at == 0 => {}
            '0'..='9' => digits = true,
            '.' if !dot => dot = true,
            _ => break,
        }
        end = at + c.len_utf8();
    }
    if !digits {
        return None;
    }
    text[..end].parse::<f64>().ok().filter(|value| value.is_finite())
}

/// A value as an axis label: short, with `k` and `M` for large ones.
fn label(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The y range: the values' own, padded so no point sits on the frame; a flat series gets
/// a small band around its value.
fn range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let pad = if high > low { (high - low) * 0.08 } else { (high.abs() * 0.05).max(0.01) };
    (low - pad, high + pad)
}

/// The plot of `trend` as an `<svg>` element.
pub fn plot(trend: &Trend) -> String {
    assert!(!trend.points.is_empty(), "a trend is plotted only with points");
    let values: Vec<f64> = trend.points.iter().map(|p| p.value).collect();
    let (low, high) = range(&values);
    let count = trend.points.len();
    let x = |i: usize| {
        if count == 1 {
            LEFT + (RIGHT - LEFT) / 2.0
        } else {
            LEFT + (RIGHT - LEFT) * i as f64 / (count - 1) as f64
        }
    };
    let y = |value: f64| BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP);
    let mut svg = String::with_capacity(4096);
    frame(&mut svg, trend, low, high);
    if count > 1 {
        let points: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1.5\"/>",
            points.join(" ")
        );
    }
    for (i, point) in trend.points.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f5fa8\"><title>{}</title></circle>",
            x(i),
            y(point.value),
            escape(&point.tip)
        );
    }
    let first = trend.points.first().map_or("", |p| p.time.as_str());
    let last = trend.points.last().map_or("", |p| p.time.as_str());
    let _ = writeln!(svg, "<text x=\"{LEFT}\" y=\"{:.0}\" font-size=\"10\">{}</text>", BOTTOM + 14.0, escape(first));
    if count > 1 {
        let _ = writeln!(
            svg,
            "<text x=\"{RIGHT}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            BOTTOM + 14.0,
            escape(last)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The opening tag, title, axes, grid lines with their values, and the axes' labels.
fn frame(svg: &mut String, trend: &Trend, low: f64, high: f64) {
    let _ = writeln!(
        svg,
        "<svg class=\"trend\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" \
         aria-label=\"{}\">",
        escape(&trend.title)
    );
    let _ =
        writeln!(svg, "<text x=\"8\" y=\"18\" font-size=\"12\" font-weight=\"bold\">{}</text>", escape(&trend.title));
    for value in [low, low + (high - low) / 2.0, high] {
        let at = BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{RIGHT}\" y2=\"{at:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            at + 3.5,
            label(value)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{BOTTOM}\" stroke=\"#555\"/>\
         <line x1=\"{LEFT}\" y1=\"{BOTTOM}\" x2=\"{RIGHT}\" y2=\"{BOTTOM}\" stroke=\"#555\"/>"
    );
    let middle = TOP + (BOTTOM - TOP) / 2.0;
    let _ = writeln!(
        svg,
        "<text x=\"12\" y=\"{middle:.0}\" font-size=\"10\" text-anchor=\"middle\" \
         transform=\"rotate(-90 12 {middle:.0})\">{}</text>",
        escape(&trend.unit)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">time order: {} certification{}</text>",
        LEFT + (RIGHT - LEFT) / 2.0,
        BOTTOM + 32.0,
        trend.points.len(),
        if trend.points.len() == 1 { "" } else { "s" }
    );
}
