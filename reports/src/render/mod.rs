//! The human side of a certification bundle (docs/certification.md 9): `plots/*.svg`, `report.md`,
//! `report.html` and `cost_report.json`, written beside the bundle's `tasks.csv`.
//!
//! Guarantees: every file is a pure function of [`ReportData`] and the bytes of `tasks.csv`
//! (no clock, no hash-ordered map, fixed number formatting), so writing a bundle twice gives
//! identical bytes, as the certificate that digests them requires. The HTML report is one
//! self-contained file: plots are inlined as SVG markup, the style sheet is inline, nothing
//! is fetched, and every text taken from the data is escaped. Markdown and HTML are rendered
//! from one document model ([`document`]), so they hold the same content.

mod cost;
mod plots;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analytics::{self, Analytics, AnalyticsError};
use crate::model::{Outcome, ReportData};
use seedcore_engine::memory::Tier;

/// Why a report file could not be written. Every variant names the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// `tasks.csv` could not be read or analysed (the error names it).
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error("{}: cannot draw the plot: {message}", path.display())]
    Plot { path: PathBuf, message: String },
    #[error("{}: cannot serialise: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// The plots' source disagrees with the event log's figures: no report is written.
    #[error("{}: {message}", path.display())]
    Disagree { path: PathBuf, message: String },
}

/// Writes plots/*.svg, report.md, report.html and cost_report.json into `dir`, which
/// already holds tasks.csv (and events.jsonl). Returns the relative paths it wrote, sorted.
pub fn write_all(dir: &Path, data: &ReportData) -> Result<Vec<String>, RenderError> {
    let analytics = analytics::analyse(&dir.join("tasks.csv"), data)?;
    analytics::agrees_with_the_event_log(&analytics, data)
        .map_err(|message| RenderError::Disagree { path: dir.join("tasks.csv"), message })?;
    let svgs = plots::render_all(data, &analytics)
        .map_err(|(file, message)| RenderError::Plot { path: dir.join("plots").join(file), message })?;

    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| RenderError::Write { path: plots_dir.clone(), source })?;
    let mut written = Vec::with_capacity(svgs.len() + 3);
    let write = |relative: &str, bytes: &[u8], written: &mut Vec<String>| -> Result<(), RenderError> {
        let path = dir.join(relative);
        std::fs::write(&path, bytes).map_err(|source| RenderError::Write { path, source })?;
        written.push(relative.to_string());
        Ok(())
    };
    for (file, svg) in &svgs {
        write(&format!("plots/{file}"), svg.as_bytes(), &mut written)?;
    }
    write("report.md", markdown(data, &analytics).as_bytes(), &mut written)?;
    write("report.html", html(data, &analytics, &svgs).as_bytes(), &mut written)?;
    let cost_report =
        cost::cost_report(data).map_err(|source| RenderError::Json { path: dir.join("cost_report.json"), source })?;
    write("cost_report.json", cost_report.as_bytes(), &mut written)?;
    written.sort();
    Ok(written)
}

/// The Markdown report alone (the HTML holds the same content).
pub fn markdown(data: &ReportData, analytics: &Analytics) -> String {
    let mut out = String::new();
    for block in document(data, analytics) {
        match block {
            Block::Title(text) => {
                let _ = writeln!(out, "# {}\n", md_escape(&text));
            }
            Block::Heading(text) => {
                let _ = writeln!(out, "## {}\n", md_escape(&text));
            }
            Block::Banner { outcome, lines } => {
                let _ = writeln!(out, "> **{}**", outcome.as_str());
                for line in lines {
                    let _ = writeln!(out, ">\n> {}", md_escape(&line));
                }
                out.push('\n');
            }
            Block::Notice(text) => {
                let _ = writeln!(out, "> **Notice:** {}\n", md_escape(&text));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{}\n", md_escape(&text));
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(out, "- {}", md_escape(&item));
                }
                out.push('\n');
            }
            Block::Table(table) => {
                let _ = writeln!(out, "| {} |", table.header.join(" | "));
                let _ = writeln!(out, "|{}", " --- |".repeat(table.header.len()));
                for row in &table.rows {
                    let cells: Vec<String> = row.cells.iter().map(|c| md_escape(c)).collect();
                    let _ = writeln!(out, "| {} |", cells.join(" | "));
                }
                out.push('\n');
            }
            Block::Plot { file, title } => {
                let _ = writeln!(out, "![{}](plots/{file})\n", md_escape(title));
            }
        }
    }
    out
}

/// The HTML report: the same content as [`markdown`], one self-contained page with every
/// plot of `svgs` (file name, SVG text) inlined.
pub fn html(data: &ReportData, analytics: &Analytics, svgs: &[(String, String)]) -> String {
    let mut out = String::new();
    let title = format!("seedcore certification: {}, seed {}", data.scenario, data.seed);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title)
    );
    for block in document(data, analytics) {
        match block {
            Block::Title(text) => {
                let _ = writeln!(out, "<h1>{}</h1>", escape(&text));
            }
            Block::Heading(text) => {
                let _ = writeln!(out, "<h2>{}</h2>", escape(&text));
            }
            Block::Banner { outcome, lines } => {
                let class = match outcome {
                    Outcome::Pass => "pass",
                    Outcome::PassWithConditions => "conditions",
                    Outcome::Fail => "fail",
                };
                let _ = writeln!(out, "<div class=\"banner {class}\">\n<p class=\"outcome\">{}</p>", outcome.as_str());
                for line in lines {
                    let _ = writeln!(out, "<p>{}</p>", escape(&line));
                }
                out.push_str("</div>\n");
            }
            Block::Notice(text) => {
                let _ = writeln!(out, "<p class=\"notice\"><strong>Notice:</strong> {}</p>", escape(&text));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "<p>{}</p>", escape(&text));
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(out, "<li>{}</li>", escape(&item));
                }
                out.push_str("</ul>\n");
            }
            Block::Table(table) => html_table(&mut out, &table),
            Block::Plot { file, title } => {
                let _ = writeln!(out, "<figure>\n<figcaption>{} (plots/{file})</figcaption>", escape(title));
                match svgs.iter().find(|(name, _)| name == file) {
                    Some((_, svg)) => out.push_str(svg_element(svg)),
                    None => out.push_str("<p>(plot not rendered)</p>\n"),
                }
                out.push_str("</figure>\n");
            }
        }
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// A table as HTML: the header row, then each row with its class, verdict cells coloured
/// by their word.
fn html_table(out: &mut String, table: &Table) {
    out.push_str("<table>\n<thead><tr>");
    for head in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(head));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        match row.class {
            Some(class) => {
                let _ = write!(out, "<tr class=\"{class}\">");
            }
            None => out.push_str("<tr>"),
        }
        for (i, cell) in row.cells.iter().enumerate() {
            match verdict_class(table.verdicts, i, cell) {
                Some(class) => {
                    let _ = write!(out, "<td class=\"verdict {class}\">{}</td>", escape(cell));
                }
                None => {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The class of a verdict cell: a fixed name per verdict word, never the data itself.
fn verdict_class(column: Option<usize>, i: usize, cell: &str) -> Option<&'static str> {
    if column != Some(i) {
        return None;
    }
    match cell {
        "pass" => Some("v-pass"),
        "warn" => Some("v-warn"),
        "fail" => Some("v-fail"),
        "skipped" => Some("v-skipped"),
        _ => None,
    }
}

/// The inline style sheet of the HTML report.
const STYLE: &str = "body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; } td { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; } td:first-child { white-space: nowrap; }
tr.fail td { background: #fbe3e3; } tr.warn td { background: #fff3d6; } tr.skipped td { color: #777; }
td.verdict { font-weight: bold; text-transform: uppercase; letter-spacing: 0.03em; text-align: center; }
td.v-pass { background: #c8e6c9; color: #1b5e20; } td.v-warn { background: #ffe0a3; color: #7a4f00; }
td.v-fail { background: #f5b5b5; color: #8e0000; } td.v-skipped { background: #e6e6e6; color: #555; }
.banner { padding: 0.8em 1.2em; border-radius: 6px; margin: 1em 0; border: 2px solid; }
.banner p { margin: 0.3em 0; } .banner .outcome { font-size: 1.5em; font-weight: bold; }
.banner.pass { background: #e3f6e5; border-color: #2e7d32; } .banner.pass .outcome { color: #1b5e20; }
.banner.conditions { background: #fff3d6; border-color: #e0a100; } .banner.conditions .outcome { color: #8a5a00; }
.banner.fail { background: #fbe3e3; border-color: #c62828; } .banner.fail .outcome { color: #b71c1c; }
.notice { background: #fff3d6; border-left: 6px solid #e0a100; padding: 0.6em 1em; }
figure { margin: 1em 0; } figcaption { font-weight: bold; margin-bottom: 0.3em; }
svg { max-width: 100%; height: auto; background: #fff; border: 1px solid #ddd; }
";

/// An SVG document as an element to inline: whatever precedes the root element (an XML
/// declaration, if any) is dropped.
fn svg_element(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |start| &svg[start..])
}

/// One block of the report, rendered alike to Markdown and HTML. All text is plain: each
/// renderer escapes it for its own syntax.
enum Block {
    Title(String),
    Heading(String),
    /// The outcome, coloured in HTML, with its explanation lines.
    Banner {
        outcome: Outcome,
        lines: Vec<String>,
    },
    Notice(String),
    Para(String),
    List(Vec<String>),
    Table(Table),
    Plot {
        file: &'static str,
        title: &'static str,
    },
}

struct Table {
    header: Vec<&'static str>,
    rows: Vec<Row>,
    /// The column whose cells are verdicts (`pass`, `warn`, `fail`, `skipped`): the HTML
    /// colours each by its word, and keeps the word.
    verdicts: Option<usize>,
}

struct Row {
    /// A fixed class name (never data) for HTML highlighting.
    class: Option<&'static str>,
    cells: Vec<String>,
}

impl Table {
    fn new(header: &[&'static str]) -> Table {
        Table { header: header.to_vec(), rows: Vec::new(), verdicts: None }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(Row { class: None, cells });
    }
}

/// The report's content, in reading order.
fn document(data: &ReportData, analytics: &Analytics) -> Vec<Block> {
    let mut doc = Vec::new();
    doc.push(Block::Title(format!("seedcore certification: {}, seed {}", data.scenario, data.seed)));
    if !data.description.is_empty() {
        doc.push(Block::Para(data.description.clone()));
    }

    let mut banner = vec![format!("Score {} / 100.", data.score)];
    if data.critical_failures.is_empty() {
        banner.push("Every critical invariant passed.".to_string());
    } else {
        banner.push(format!(
            "Critical invariants not passed (failed, or nothing to judge): {}.",
            data.critical_failures.join(", ")
        ));
    }
    doc.push(Block::Banner { outcome: data.outcome, lines: banner });
    let weakened: Vec<String> = data.policy_changes.iter().filter(|c| c.weakens()).map(|c| c.sentence()).collect();
    if !weakened.is_empty() {
        doc.push(Block::Notice(format!(
            "this certification ran under a policy loosened or reweighted against the defaults of docs/certification.md              8.1, and its outcome is judged by it: {}.",
            weakened.join("; ")
        )));
    }
    if data.development_key {
        doc.push(Block::Notice(format!(
            "this report was signed with the development key (key id {}). Anyone can sign with that key: the \
             signature shows integrity only, not who certified the run, and is not for a reviewer's trust.",
            data.key_id
        )));
    }

    doc.push(Block::List(vec![
        format!("Scenario: {} (SHA-256 {})", data.scenario, data.scenario_sha256),
        format!("Seed: {}", data.seed),
        format!("Engine: {} (build SHA-256 {})", data.engine_version, data.build_sha256),
        format!("Simulated start: {}", utc_timestamp(data.epoch_utc_ms)),
        format!("Simulated duration of arrivals: {} ({} ms)", clock(data.duration_ms), data.duration_ms),
        format!(
            "Arrivals: {}; lost: {}; analysis windows of {} ({} windows)",
            data.arrivals,
            data.lost,
            clock(analytics.window_ms),
            analytics.windows.len()
        ),
    ]));

    invariants(&mut doc, data);
    latency(&mut doc, data, analytics);
    organism(&mut doc, data);
    cost(&mut doc, data, analytics);
    traffic(&mut doc, data);
    determinism(&mut doc, data);
    faults(&mut doc, data);
    regressions(&mut doc, data);
    signature(&mut doc, data);

    doc.push(Block::Heading("Plots".into()));
    for (file, title) in plots::PLOTS {
        doc.push(Block::Plot { file, title });
    }
    doc
}

fn invariants(doc: &mut Vec<Block>, data: &ReportData) {
    doc.push(Block::Heading("Invariants".into()));
    let mut table = Table::new(&["id", "critical", "verdict", "observed", "unit", "threshold", "weight", "detail"]);
    table.verdicts = Some(2);
    for inv in &data.invariants {
        let class = match inv.verdict.as_str() {
            "fail" => Some("fail"),
            "warn" => Some("warn"),
            "skipped" => Some("skipped"),
            _ => None,
        };
        table.rows.push(Row {
            class,
            cells: vec![
                inv.id.clone(),
                yes_no(inv.critical).into(),
                inv.verdict.clone(),
                inv.observed.clone(),
                inv.unit.clone(),
                inv.threshold.clone(),
                inv.weight.clone(),
                inv.detail.clone(),
            ],
        });
    }
    if table.rows.is_empty() {
        doc.push(Block::Para("No invariant was evaluated.".into()));
    } else {
        doc.push(Block::Table(table));
    }
}

/// Latency, time to first token (TTFT) and time per output token (TPOT) percentiles per
/// path: `-` where the event log records none.
fn latency(doc: &mut Vec<Block>, data: &ReportData, analytics: &Analytics) {
    doc.push(Block::Heading("Latency per path".into()));
    let mut table = Table::new(&[
        "path",
        "completed",
        "failed",
        "p50 (ms)",
        "p95 (ms)",
        "p99 (ms)",
        "max (ms)",
        "TTFT p50 (ms)",
        "TTFT p99 (ms)",
        "TPOT p50 (ms)",
        "TPOT p99 (ms)",
    ]);
    let whole_ms = |value: Option<u64>| value.map_or_else(|| "-".to_string(), |ms| ms.to_string());
    let us_as_ms = |value: Option<u64>| value.map_or_else(|| "-".to_string(), ms_of_us);
    for path in &data.latency {
        table.row(vec![
            path.path.clone(),
            path.completed.to_string(),
            path.failed.to_string(),
            path.p50_ms.to_string(),
            path.p95_ms.to_string(),
            path.p99_ms.to_string(),
            path.max_ms.to_string(),
            whole_ms(path.ttft_p50_ms),
            whole_ms(path.ttft_p99_ms),
            us_as_ms(path.tpot_p50_us),
            us_as_ms(path.tpot_p99_us),
        ]);
    }
    if table.rows.is_empty() {
        doc.push(Block::Para("No latency was recorded.".into()));
    } else {
        doc.push(Block::Table(table));
    }
    doc.push(Block::Para(format!(
        "Completed tasks in tasks.csv: {} on the fast path, {} on the deep path. TTFT is the time from the \
         coordinator receiving a task to its answer's first token (a cached answer comes whole: its TTFT is its \
         latency); TPOT is the time per output token after the first, over completed uncached tasks with two \
         output tokens or more; - where the event log records none. TTFT against prompt size is in \
         plots/ttft_vs_tokens_in.svg.",
        analytics.latency_fast_ms.len(),
        analytics.latency_deep_ms.len()
    )));
}

/// The run's spend against its limits: the totals, then per day and per task kind.
fn cost(doc: &mut Vec<Block>, data: &ReportData, analytics: &Analytics) {
    let limits = &data.limits;
    doc.push(Block::Heading("Cost and budget".into()));
    doc.push(Block::List(vec![
        format!("Total charged: {}", usd(data.total_cost_micro_usd)),
        format!("Per-task ceiling: {}", usd(limits.ceiling_micro_usd)),
        format!("Daily budget: {}", usd(limits.daily_budget_micro_usd)),
        format!(
            "Daily rate limits: {}",
            if limits.rate_limits.is_empty() {
                "none".to_string()
            } else {
                limits.rate_limits.iter().map(|(kind, limit)| format!("{kind} {limit}")).collect::<Vec<_>>().join(", ")
            }
        ),
    ]));
    cost_per_day(doc, data);
    cost_per_kind(doc, data, analytics);
}

/// The event log's money figures per simulated UTC day.
fn cost_per_day(doc: &mut Vec<Block>, data: &ReportData) {
    let limits = &data.limits;
    let mut per_day = Table::new(&[
        "day (UTC)",
        "charged",
        "budget used",
        "outcomes",
        "admitted",
        "completed",
        "mean cost",
        "min cost",
        "max cost",
        "ceiling breaches",
    ]);
    for (day, d) in &data.days {
        per_day.row(vec![
            cost::date(*day),
            usd(d.spend_micro_usd),
            percent(d.spend_micro_usd, limits.daily_budget_micro_usd),
            d.outcomes().to_string(),
            d.admitted().to_string(),
            d.completed.to_string(),
            d.completed_cost_mean().map_or("-".into(), usd_f64),
            d.completed_cost_min.map_or("-".into(), usd),
            d.completed_cost_max.map_or("-".into(), usd),
            d.ceiling_breaches.to_string(),
        ]);
    }
    doc.push(Block::Para(
        "Per simulated UTC day, by the day each task was admitted in (mean, min and max over completed tasks). \
         These are the event log's figures, the ones the budget and rate-limit invariants judge."
            .into(),
    ));
    doc.push(Block::Table(per_day));
}

/// The tasks and costs per task kind from tasks.csv, with each kind's daily limit and the
/// most tasks of that kind admitted in a day.
fn cost_per_kind(doc: &mut Vec<Block>, data: &ReportData, analytics: &Analytics) {
    let limits = &data.limits;
    let mut per_kind = Table::new(&[
        "kind",
        "tasks",
        "completed",
        "rejected",
        "total cost",
        "mean cost",
        "max cost",
        "daily limit",
        "peak admitted / day",
    ]);
    for (kind, stats) in &analytics.kinds {
        let peak = data.days.values().filter_map(|d| d.admitted_per_kind.get(kind)).max().copied().unwrap_or(0);
        let limit = limits.rate_limits.get(kind);
        per_kind.row(vec![
            kind.clone(),
            stats.tasks.to_string(),
            stats.completed.to_string(),
            stats.rejected.to_string(),
            usd(stats.cost_micro_usd),
            stats.cost_micro_usd_mean.map_or("-".into(), usd_f64),
            stats.cost_micro_usd_max.map_or("-".into(), usd),
            limit.map_or("none".into(), u32::to_string),
            match limit {
                Some(limit) => format!("{peak} ({})", percent(peak, u64::from(*limit))),
                None => peak.to_string(),
            },
        ]);
    }
    doc.push(Block::Para("Per task kind (mean and max over completed tasks):".into()));
    doc.push(Block::Table(per_kind));
}

/// The memory fabric's tiers, the organism's energy and the autoscaler.
fn organism(doc: &mut Vec<Block>, data: &ReportData) {
    memory_fabric(doc, data);
    energy(doc, data);
    autoscaler(doc, data);
}

/// Hits and the oldest entry served per tier, and the flashbulb events kept.
fn memory_fabric(doc: &mut Vec<Block>, data: &ReportData) {
    let o = &data.organism;
    doc.push(Block::Heading("Memory fabric".into()));
    let mut table = Table::new(&["tier", "hits", "hit rate (of fast completions)", "oldest served"]);
    for tier in Tier::ALL {
        let hits = o.tier_hits[tier.index()];
        let rate =
            if o.fast_completed == 0 { "-".into() } else { format!("{:.4}", hits as f64 / o.fast_completed as f64) };
        let age = if hits == 0 { "-".into() } else { format!("{} ms", o.tier_max_age_ms[tier.index()]) };
        table.row(vec![tier.label().into(), hits.to_string(), rate, age]);
    }
    doc.push(Block::Table(table));
    doc.push(Block::Para(format!(
        "Mfb (flashbulb) keeps {} high-salience events (valve breaches), never evicted within the run.",
        o.flashbulbs
    )));
}

/// The energy's first and last samples by term, and its range over the run.
fn energy(doc: &mut Vec<Block>, data: &ReportData) {
    let o = &data.organism;
    doc.push(Block::Heading("Energy".into()));
    match (&o.energy_first, &o.energy_last) {
        (Some(first), Some(last)) => {
            let e = |ppm: i64| format!("{:.6}", ppm as f64 / 1e6);
            let mut table = Table::new(&["sample", "updates", "E", "E_pair", "E_reg", "E_ent", "E_mem", "||dE/dH||"]);
            for (name, s) in [("first", first), ("last", last)] {
                table.row(vec![
                    name.into(),
                    s.updates.to_string(),
                    e(s.total_ppm),
                    e(s.pair_ppm),
                    e(s.reg_ppm),
                    e(s.ent_ppm),
                    e(s.mem_ppm),
                    e(s.gradient_norm_ppm),
                ]);
            }
            doc.push(Block::Table(table));
            doc.push(Block::Para(format!(
                "{} samples, E between {} and {}; {} promotions refused for raising E (delta E > 0).",
                o.energy.len(),
                o.energy_min_ppm.map_or("-".into(), e),
                o.energy_max_ppm.map_or("-".into(), e),
                o.promotions_refused
            )));
        }
        _ => doc.push(Block::Para("No energy was recorded.".into())),
    }
}

/// The autoscaler's activity per path, or that it recorded nothing.
fn autoscaler(doc: &mut Vec<Block>, data: &ReportData) {
    let o = &data.organism;
    doc.push(Block::Heading("Autoscaler".into()));
    if o.scale.iter().all(|(_, s)| s.events == 0) {
        doc.push(Block::Para("The autoscaler recorded nothing (off in this scenario).".into()));
    } else {
        let mut table = Table::new(&[
            "path",
            "target changes",
            "highest target",
            "fewest replicas",
            "most replicas",
            "started",
            "stopped",
        ]);
        for (path, s) in o.scale.iter() {
            table.row(vec![
                path.as_str().to_string(),
                s.targets.to_string(),
                s.max_target.to_string(),
                s.min_replicas.map_or("-".into(), |m| m.to_string()),
                s.max_replicas.to_string(),
                s.started.to_string(),
                s.stopped.to_string(),
            ]);
        }
        doc.push(Block::Table(table));
        doc.push(Block::Para(
            "Replicas over time against the target, with the fast path's p99 latency per window, are in \
             plots/scaling.svg."
                .into(),
        ));
    }
}

fn traffic(doc: &mut Vec<Block>, data: &ReportData) {
    let counts = |doc: &mut Vec<Block>, title: &str, map: &std::collections::BTreeMap<String, u64>, none: &str| {
        doc.push(Block::Heading(title.to_string()));
        if map.is_empty() {
            doc.push(Block::Para(none.to_string()));
        } else {
            let mut table = Table::new(&["reason", "tasks"]);
            for (reason, count) in map {
                table.row(vec![reason.clone(), count.to_string()]);
            }
            doc.push(Block::Table(table));
        }
    };
    counts(doc, "Rejections by reason", &data.rejections, "No task was rejected.");
    counts(doc, "Routing decisions by reason", &data.decisions, "No routing decision was recorded.");
    doc.push(Block::Heading("Alerts".into()));
    if data.alerts.is_empty() {
        doc.push(Block::Para("No alert was raised.".into()));
    } else {
        let mut table = Table::new(&["alert", "times raised"]);
        for (alert, count) in &data.alerts {
            table.row(vec![alert.clone(), count.to_string()]);
        }
        doc.push(Block::Table(table));
    }
}

fn determinism(doc: &mut Vec<Block>, data: &ReportData) {
    let det = &data.determinism;
    doc.push(Block::Heading("Determinism replays".into()));
    doc.push(Block::Para(format!(
        "{} of {} replays reproduce the reference event-log root {}.",
        det.matching(),
        det.replays.len(),
        det.reference
    )));
    if !det.replays.is_empty() {
        let mut table = Table::new(&["replay", "root", "matches the reference"]);
        for (i, root) in det.replays.iter().enumerate() {
            table.row(vec![(i + 1).to_string(), root.clone(), yes_no(*root == det.reference).into()]);
        }
        doc.push(Block::Table(table));
    }
    if let Some(live) = det.live {
        doc.push(Block::Heading("Live versus simulated".into()));
        doc.push(Block::Para(format!(
            "A capture of the live gateway ({} tasks, {}) replayed in the simulator with the scenario's engine \
             settings: {} decisions (path, or rejection and reason) equal the live ones ({:.2} %), {} differ; \
             they are listed in {}.",
            live.tasks,
            crate::statement::LIVE_CAPTURE,
            live.agreed,
            100.0 * live.agreed as f64 / live.tasks.max(1) as f64,
            live.tasks - live.agreed,
            crate::statement::LIVE_DISAGREEMENTS
        )));
    }
}

fn faults(doc: &mut Vec<Block>, data: &ReportData) {
    doc.push(Block::Heading("Faults and recovery".into()));
    if data.faults.is_empty() {
        doc.push(Block::Para("No fault was injected.".into()));
    } else {
        let mut table = Table::new(&["#", "start", "end", "fault", "target", "magnitude", "recovered after"]);
        for fault in &data.faults {
            let recovered = match (fault.end_ms, fault.recovery_ms) {
                (None, _) => "-".to_string(),
                (Some(_), Some(ms)) => format!("{ms} ms"),
                (Some(_), None) => "not recovered".to_string(),
            };
            table.row(vec![
                fault.id.to_string(),
                clock(fault.t_ms),
                fault.end_ms.map_or_else(|| "never".to_string(), clock),
                fault.fault.clone(),
                fault.node.clone(),
                fault.magnitude.clone(),
                recovered,
            ]);
        }
        doc.push(Block::Table(table));
    }
    doc.push(Block::Para(match data.recovery_ms {
        Some(ms) => format!(
            "Recovery: queues drained and the fast-path ratio back above its target {} ({ms} ms) after the last fault ended.",
            clock(ms)
        ),
        None if data.faults.is_empty() => "Recovery: not measured (no fault).".to_string(),
        None => "Recovery: NOT RECOVERED after the last fault ended (a liveness failure).".to_string(),
    }));
}

/// The regressions against the baseline certificate, if any.
fn regressions(doc: &mut Vec<Block>, data: &ReportData) {
    doc.push(Block::Heading("Regressions against the baseline".into()));
    if data.regressions.is_empty() {
        doc.push(Block::Para("No regression reported.".into()));
    } else {
        doc.push(Block::List(data.regressions.clone()));
    }
}

/// The event log's size and root, and the key that signed the certificate.
fn signature(doc: &mut Vec<Block>, data: &ReportData) {
    doc.push(Block::Heading("Event log and signature".into()));
    doc.push(Block::List(vec![
        format!("Events in the log: {}", data.events),
        format!("Merkle root (RFC 6962): {}", data.merkle_root),
        format!("Signing key id: {}", data.key_id),
        format!(
            "Signing key: {}",
            if data.development_key { "the development key (not for a reviewer's trust)" } else { "a release key" }
        ),
    ]));
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// Microseconds as milliseconds with two decimals, rounded half up, e.g. `12.35` for
/// 12,345 µs.
fn ms_of_us(us: u64) -> String {
    let hundredths = us.saturating_add(5) / 10;
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Micro-USD as dollars with all six decimals, e.g. `$0.050000`.
fn usd(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

/// A mean in micro-USD as dollars, rounded to the micro-dollar.
fn usd_f64(micro: f64) -> String {
    format!("${:.6}", micro / 1e6)
}

/// `part / whole` as a percentage with two decimals; `-` for an empty whole.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    format!("{:.2} %", part as f64 * 100.0 / whole as f64)
}

/// Simulated time since the run started as `H:MM:SS.mmm`.
fn clock(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    format!("{h}:{:02}:{:02}.{:03}", rest / 60_000, rest % 60_000 / 1_000, rest % 1_000)
}

/// Ms since 1970-01-01 UTC as RFC 3339 with milliseconds.
fn utc_timestamp(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| format!("{ms} ms since 1970-01-01"), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Text for HTML element content or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Plain text for Markdown: punctuation that Markdown would read as syntax is escaped with a
/// backslash, and line breaks become spaces (a table cell or paragraph stays one line).
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::tests::{report_data, sample_csv, DAY_1, DAY_2};
    use crate::model::{FaultRow, InvariantRow, PathLatency};
    use seedcore_sim::money::DayMoney;

    /// The synthetic run of the analytics tests, with every table of the report filled.
    fn data() -> ReportData {
        ReportData {
            invariants: invariant_rows(),
            latency: path_latency(),
            arrivals: 10,
            lost: 1,
            rejections: BTreeMap::from([("halted".to_string(), 1)]),
            decisions: BTreeMap::from([("fast".to_string(), 5), ("planning".to_string(), 3)]),
            alerts: BTreeMap::from([("cost_near_ceiling".to_string(), 2)]),
            total_cost_micro_usd: 139_000,
            days: money_days(),
            determinism: Determinism {
                reference: "aa".repeat(32),
                replays: vec!["aa".repeat(32), "aa".repeat(32), "bb".repeat(32)],
                live: None,
            },
            faults: vec![FaultRow {
                t_ms: 30_000,
                end_ms: Some(40_000),
                id: 1,
                fault: "crash".into(),
                node: "deep-1".into(),
                magnitude: String::new(),
                recovery_ms: Some(2_500),
            }],
            recovery_ms: Some(4_000),
            l_tot: vec![(0, 400_000), (30_000, 650_000), (90_000, 500_000)],
            organism: crate::model::OrganismReport::default(),
            events: 123,
            regressions: vec!["score fell from 95.00 to 82.50".into()],
            ..report_data()
        }
    }

    /// Invariant rows of every verdict but `fail`, with text to escape in their detail.
    fn invariant_rows() -> Vec<InvariantRow> {
        let invariant = |id: &str, critical: bool, verdict: &str| InvariantRow {
            id: id.into(),
            critical,
            verdict: verdict.into(),
            observed: "0.6".into(),
            threshold: ">= 0.90".into(),
            value: "0.600000".into(),
            rule: ">=".into(),
            limit: "0.900000".into(),
            unit: "ratio".into(),
            weight: "1.0".into(),
            detail: "worst window | <b>not bold</b>".into(),
        };
        vec![
            invariant("fast_path_ratio", true, "pass"),
            invariant("cost_ceiling", true, "pass"),
            invariant("fast_latency_p99", false, "warn"),
            invariant("recovery_time", false, "skipped"),
        ]
    }

    /// Latency of both paths; time to first token and per output token on the fast path only.
    fn path_latency() -> Vec<PathLatency> {
        let path = |path: &str, p99_ms, ttft: Option<(u64, u64)>, tpot_us: Option<(u64, u64)>| PathLatency {
            path: path.into(),
            completed: 3,
            failed: 1,
            p50_ms: 50,
            p95_ms: 90,
            p99_ms,
            max_ms: p99_ms + 1,
            ttft_p50_ms: ttft.map(|t| t.0),
            ttft_p99_ms: ttft.map(|t| t.1),
            tpot_p50_us: tpot_us.map(|t| t.0),
            tpot_p99_us: tpot_us.map(|t| t.1),
        };
        vec![path("fast", 290, Some((40, 120)), Some((1_245, 3_504))), path("deep", 4_900, None, None)]
    }

    /// The event log's figures for sample_csv's two days.
    fn money_days() -> BTreeMap<u64, DayMoney> {
        BTreeMap::from([
            (
                DAY_1,
                DayMoney {
                    spend_micro_usd: 33_000,
                    completed: 4,
                    failed: 1,
                    rejected: 1,
                    admitted_per_kind: BTreeMap::from([("chat".into(), 3), ("query".into(), 2)]),
                    completed_cost_sum: 33_000,
                    completed_cost_min: Some(0),
                    completed_cost_max: Some(30_000),
                    ..DayMoney::default()
                },
            ),
            (
                DAY_2,
                DayMoney {
                    spend_micro_usd: 106_000,
                    completed: 2,
                    failed: 1,
                    admitted_per_kind: BTreeMap::from([("chat".into(), 1), ("summary".into(), 2)]),
                    completed_cost_sum: 106_000,
                    completed_cost_min: Some(46_000),
                    completed_cost_max: Some(60_000),
                    ceiling_breaches: 1,
                    near_ceiling: 2,
                    budget_breaches: 1,
                    ..DayMoney::default()
                },
            ),
        ])
    }

    use crate::model::Determinism;
    use std::collections::BTreeMap;

    fn bundle(csv: &str) -> tempfile::TempDir {
        let dir = tempfile::TempDir::new().expect("temp dir");
        std::fs::write(dir.path().join("tasks.csv"), csv).expect("temp dir is writable");
        dir
    }

    fn read(dir: &tempfile::TempDir, file: &str) -> String {
        std::fs::read_to_string(dir.path().join(file)).expect("written by write_all")
    }

    const EXPECTED_FILES: [&str; 13] = [
        "cost_report.json",
        "plots/cusum.svg",
        "plots/energy.svg",
        "plots/fast_ratio.svg",
        "plots/l_tot.svg",
        "plots/latency_deep.svg",
        "plots/latency_fast.svg",
        "plots/memory.svg",
        "plots/scaling.svg",
        "plots/spend.svg",
        "plots/ttft_vs_tokens_in.svg",
        "report.html",
        "report.md",
    ];

    #[test]
    fn write_all_writes_every_plot_with_its_threshold_label() {
        let dir = bundle(&sample_csv());
        let written = write_all(dir.path(), &data()).expect("report renders");
        assert_eq!(written, EXPECTED_FILES);
        for (file, label) in [
            ("plots/fast_ratio.svg", "target 0.90"),
            ("plots/cusum.svg", "threshold h = 5"),
            ("plots/spend.svg", "daily budget $0.10"),
            ("plots/l_tot.svg", "limit L_tot = 1.0"),
            ("plots/latency_fast.svg", "p99 = 290 ms"),
            ("plots/latency_deep.svg", "p99 = 4900 ms"),
            ("plots/memory.svg", "cache hits / fast completions"),
            ("plots/ttft_vs_tokens_in.svg", "ttft_p99 threshold 800 ms"),
        ] {
            let svg = read(&dir, file);
            assert!(svg.starts_with("<svg"), "{file}: {}", &svg[..svg.len().min(80)]);
            assert!(svg.trim_end().ends_with("</svg>"), "{file}");
            assert!(svg.contains(label), "{file} lacks `{label}`");
            assert!(svg.contains("font-family"), "{file}: text is SVG text");
            if file.contains("latency") {
                assert!(svg.contains("latency (ms)"), "{file}: latency axis in ms");
            } else if file.contains("ttft") {
                assert!(svg.contains("prompt tokens"), "{file}: prompt-size axis");
            } else {
                assert!(svg.contains("simulated time since start (min)"), "{file}: time axis in minutes");
            }
        }
        // The sample is an older tasks.csv, without `ttft_ms`.
        assert!(read(&dir, "plots/ttft_vs_tokens_in.svg").contains("no time-to-first-token data in this run"));
    }

    /// A current tasks.csv (with `ttft_ms`): the TTFT plot inlined in report.html has a point
    /// per bucket and percentile, and the latency table shows TTFT and TPOT, `-` where the
    /// event log records none.
    #[test]
    fn time_to_first_token_is_tabled_and_plotted() {
        use crate::analytics::ttft::tests::{completed, csv};
        let mut tasks = completed("fast", 100, 5, |i| 40 + i);
        tasks.extend(completed("deep", 3_000, 5, |i| 2_900 + 100 * i));
        let dir = bundle(&csv(&tasks));
        write_all(dir.path(), &ReportData { latency: path_latency(), ..report_data() }).expect("renders");
        let html = read(&dir, "report.html");
        let figure = html
            .split("(plots/ttft_vs_tokens_in.svg)</figcaption>")
            .nth(1)
            .and_then(|rest| rest.split("</figure>").next())
            .expect("the TTFT figure");
        assert_eq!(figure.matches("<circle").count(), 4, "fast and deep: a median and a p99 point each");
        assert!(figure.contains("ttft_p99 threshold 800 ms") && !figure.contains("no time-to-first-token data"));
        assert!(
            html.contains("<th>TTFT p50 (ms)</th><th>TTFT p99 (ms)</th><th>TPOT p50 (ms)</th><th>TPOT p99 (ms)</th>")
        );
        let md = read(&dir, "report.md");
        assert!(md.contains("| fast | 3 | 1 | 50 | 90 | 290 | 291 | 40 | 120 | 1.25 | 3.50 |"), "{md}");
        assert!(md.contains("| deep | 3 | 1 | 50 | 90 | 4900 | 4901 | - | - | - | - |"), "{md}");
    }

    #[test]
    fn html_is_self_contained_with_every_invariant_and_plot() {
        let dir = bundle(&sample_csv());
        let data = data();
        write_all(dir.path(), &data).expect("report renders");
        let html = read(&dir, "report.html");
        for inv in &data.invariants {
            assert!(html.contains(&format!("><td>{}</td><td>", inv.id)), "no table row for {}", inv.id);
        }
        assert!(html.contains("<tr class=\"warn\"><td>fast_latency_p99</td>"));
        // Verdict cells carry their colour and keep their word.
        for word in ["pass", "warn", "skipped"] {
            assert!(html.contains(&format!("<td class=\"verdict v-{word}\">{word}</td>")), "{word}");
        }
        assert_eq!(html.matches("<svg").count(), plots::PLOTS.len(), "every plot inline");
        let references = html.matches("http://").count() + html.matches("https://").count();
        let xmlns = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
        assert_eq!(references, xmlns, "no network reference besides the SVG namespace");
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
        assert!(html.contains("<p class=\"outcome\">PASS WITH CONDITIONS</p>"));
        assert!(html.contains("class=\"banner conditions\""));
        assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;"), "data text is escaped");
        assert!(html.contains("two minutes across midnight &lt;UTC&gt;"));
        assert!(!html.contains("development key"), "a release key gets no notice");
        assert!(html.contains("2 of 3 replays reproduce"));
        assert!(html.contains("<td>crash</td><td>deep-1</td>"));
        assert!(html.contains("score fell from 95.00 to 82.50"));
        assert!(html.contains(&"ee".repeat(32)), "Merkle root");
    }

    #[test]
    fn markdown_holds_the_report_and_links_the_plots() {
        let dir = bundle(&sample_csv());
        let data = data();
        write_all(dir.path(), &data).expect("report renders");
        let md = read(&dir, "report.md");
        assert!(md.starts_with("# seedcore certification: synthetic, seed 42\n"));
        assert!(md.contains("> **PASS WITH CONDITIONS**"));
        for inv in &data.invariants {
            assert!(md.contains(&format!("| {} |", md_escape(&inv.id))), "no row for {}", inv.id);
        }
        assert!(md.contains("worst window \\| \\<b\\>"), "pipes and tags escaped in cells");
        for (file, _) in plots::PLOTS {
            assert!(md.contains(&format!("(plots/{file})")), "no link to {file}");
        }
        assert_eq!(md, markdown(&data, &analytics::analyse(&dir.path().join("tasks.csv"), &data).expect("analyses")));
    }

    #[test]
    fn failing_run_with_development_key_says_so() {
        let dir = bundle(&sample_csv());
        let data = ReportData {
            outcome: Outcome::Fail,
            critical_failures: vec!["fast_path_ratio".into(), "cost_ceiling".into()],
            development_key: true,
            ..data()
        };
        write_all(dir.path(), &data).expect("report renders");
        let html = read(&dir, "report.html");
        assert!(html.contains("class=\"banner fail\""));
        assert!(html
            .contains("Critical invariants not passed (failed, or nothing to judge): fast_path_ratio, cost_ceiling."));
        assert!(html
            .contains("<p class=\"notice\"><strong>Notice:</strong> this report was signed with the development key"));
        let md = read(&dir, "report.md");
        assert!(md.contains("> **Notice:** this report was signed with the development key"));
    }

    #[test]
    fn cost_report_has_one_entry_per_day() {
        let dir = bundle(&sample_csv());
        write_all(dir.path(), &data()).expect("report renders");
        let text = read(&dir, "cost_report.json");
        assert!(text.ends_with("}\n"));
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(json["scenario"], "synthetic");
        assert_eq!(json["seed"], "42");
        let days = json["days"].as_array().expect("days");
        assert_eq!(days.len(), 2);
        assert_eq!(days[0]["report_date"], "2025-11-24");
        assert_eq!(days[1]["report_date"], "2025-11-25");

        let first = &days[0];
        assert_eq!(first["daily_summary"]["total_cycles"], 5);
        assert_eq!(first["daily_summary"]["total_summaries_generated"], 4);
        assert_eq!(first["daily_summary"]["total_cost_usd"], 0.033);
        assert_eq!(first["daily_summary"]["average_cost_per_summary_usd"], 0.00825);
        assert_eq!(first["daily_summary"]["max_cost_per_summary_usd"], 0.03);
        assert_eq!(first["daily_summary"]["min_cost_per_summary_usd"], 0.0);
        assert_eq!(first["adr012_compliance"]["per_summary_ceiling_usd"], 0.05);
        assert_eq!(first["adr012_compliance"]["daily_budget_cap_usd"], 0.1);
        assert_eq!(first["adr012_compliance"]["daily_rate_limit"], 2);
        assert_eq!(first["adr012_compliance"]["daily_rate_limit_kind"], "summary");
        assert_eq!(first["adr012_compliance"]["rate_limits_per_kind"]["summary"]["admitted"], 0);
        assert_eq!(first["adr012_compliance"]["compliance_status"], "PASS");
        assert_eq!(first["budget_utilization"]["daily_budget_used_pct"], 33.0);
        assert_eq!(first["budget_utilization"]["budget_headroom_usd"], 0.067);
        assert_eq!(first["cost_trajectory"]["trend"], "stable");
        assert_eq!(first["alerts"].as_array().map(Vec::len), Some(0));

        let second = &days[1];
        let compliance = &second["adr012_compliance"];
        assert_eq!(compliance["rate_limits_per_kind"]["summary"]["admitted"], 2);
        assert_eq!(compliance["rate_limits_per_kind"]["summary"]["used_pct"], 100.0);
        assert_eq!((&compliance["ceiling_breaches"], &compliance["budget_breaches"]), (&1.into(), &1.into()));
        assert_eq!(compliance["rate_limit_breaches"], 0);
        assert_eq!(compliance["compliance_status"], "FAIL");
        assert_eq!(second["budget_utilization"]["daily_budget_used_pct"], 106.0);
        assert_eq!(second["budget_utilization"]["daily_rate_used_pct"], 100.0);
        assert_eq!(second["cost_trajectory"]["7day_average_cost_usd"], 0.0695);
        assert_eq!(second["cost_trajectory"]["trend"], "increasing");
        let triggers: Vec<&str> =
            second["alerts"].as_array().expect("alerts").iter().filter_map(|a| a["trigger"].as_str()).collect();
        assert_eq!(
            triggers,
            [
                "cost_approaching_ceiling",
                "daily_budget_80pct",
                "rate_limit_80pct",
                "cost_ceiling_breach",
                "budget_cap_breach"
            ]
        );
    }

    #[test]
    fn writing_twice_gives_identical_bytes() {
        let data = data();
        let first = bundle(&sample_csv());
        let second = bundle(&sample_csv());
        let files = write_all(first.path(), &data).expect("first render");
        assert_eq!(write_all(second.path(), &data).expect("second render"), files);
        let before: Vec<Vec<u8>> =
            files.iter().map(|f| std::fs::read(first.path().join(f)).expect("written")).collect();
        write_all(first.path(), &data).expect("render again in place");
        for (file, bytes) in files.iter().zip(before) {
            assert_eq!(std::fs::read(second.path().join(file)).expect("written"), bytes, "{file} differs");
            assert_eq!(std::fs::read(first.path().join(file)).expect("written"), bytes, "{file} changed");
        }
    }

    #[test]
    fn path_without_completed_task_draws_axes_with_a_caption() {
        let csv: String =
            sample_csv().lines().filter(|line| !line.contains(",deep,")).map(|l| format!("{l}\n")).collect();
        let dir = bundle(&csv);
        // The event log's figures without the deep charges (30000 on day 1, 46000 on day 2).
        let mut data = ReportData { l_tot: vec![], total_cost_micro_usd: 63_000, ..data() };
        data.days.get_mut(&DAY_1).expect("day 1").spend_micro_usd = 3_000;
        data.days.get_mut(&DAY_2).expect("day 2").spend_micro_usd = 60_000;
        write_all(dir.path(), &data).expect("renders without deep completions");
        let svg = read(&dir, "plots/latency_deep.svg");
        assert!(svg.starts_with("<svg") && svg.contains("no completed task on the deep path"));
        assert!(read(&dir, "plots/l_tot.svg").contains("no L_tot recorded"));
    }

    /// Canary of the one-truth check: a tasks.csv whose charges differ from the event log's
    /// is refused, naming the file and the day, and no report is written.
    #[test]
    fn a_tasks_csv_that_disagrees_with_the_event_log_is_refused() {
        let csv: String =
            sample_csv().lines().filter(|line| !line.starts_with("6,")).map(|l| format!("{l}\n")).collect();
        let dir = bundle(&csv);
        let mut data = data();
        data.total_cost_micro_usd -= 46_000;
        let error = write_all(dir.path(), &data).expect_err("day 2 lost a 46000 charge").to_string();
        assert!(error.contains("tasks.csv") && error.contains(&format!("day {DAY_2}")), "{error}");
        assert!(!dir.path().join("report.html").exists());
        data.total_cost_micro_usd += 1;
        let error = write_all(dir.path(), &data).expect_err("the totals differ").to_string();
        assert!(error.contains("charges total"), "{error}");
    }

    #[test]
    fn empty_csv_still_renders() {
        let dir = bundle(&format!("{}\n", crate::analytics::tests::HEADER));
        let written = write_all(dir.path(), &report_data()).expect("an empty run renders");
        assert_eq!(written, EXPECTED_FILES);
        let json: serde_json::Value = serde_json::from_str(&read(&dir, "cost_report.json")).expect("valid JSON");
        assert_eq!(json["days"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let message = write_all(dir.path(), &data()).expect_err("no tasks.csv").to_string();
        assert!(message.starts_with(&dir.path().join("tasks.csv").display().to_string()), "{message}");
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(usd(50_000), "$0.050000");
        assert_eq!(usd(500_000_000), "$500.000000");
        assert_eq!(clock(3_723_456), "1:02:03.456");
        assert_eq!(cost::date(DAY_1), "2025-11-24");
        assert_eq!(percent(1, 3), "33.33 %");
        assert_eq!(percent(1, 0), "-");
        assert_eq!(ms_of_us(12_345), "12.35");
        assert_eq!(ms_of_us(1_004), "1.00");
        assert_eq!(ms_of_us(999), "1.00");
        assert_eq!(ms_of_us(0), "0.00");
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
        assert_eq!(md_escape("a_b|c\nd"), "a\\_b\\|c d");
    }
}
