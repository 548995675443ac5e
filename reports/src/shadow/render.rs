//! `shadow.md`, `shadow.html` and `canary.md` (docs/certification.md 8.9).
//!
//! Guarantees: every output is a pure function of its argument (no clock, no hash-ordered
//! map, fixed number formatting). `canary.md` reads only what `seedcore verify` recomputes
//! from a bundle (no output directory, no time), so a verifier re-renders it and compares
//! bytes. `shadow.html` is one self-contained page: an inline style sheet, three inline SVG
//! charts, no script, no font, and no link but the relative ones to the shadow's own files;
//! every text taken from the data is escaped. The Markdown and the HTML of a shadow are
//! rendered from one document model, so they hold the same content (the Markdown points to
//! the HTML for the charts).

use super::diff::{Diff, Divergence, Parted, TaskRow, TASK_EVENTS};
use super::{fast_ratio_curve, side_by_side, spend_curve, Canary, Curve, SeedRun, Shadow, Side};
use crate::render::escape;
use seedcore_sim::invariant_id::InvariantId;
use seedcore_sim::invariants::{InvariantResult, MINUTE_MS};
use seedcore_sim::shadow::canary::{change_text, CanaryVerdict, Effect, Finding};
use seedcore_sim::shadow::measures::{Better, Value};
use std::fmt::Write as _;

/// One field of a task's row, as text.
type RowField = fn(&TaskRow) -> String;

/// The most minutes listed in "Where decisions differ in time"; the rest are counted (every
/// differing task is in `diff.csv` anyway).
pub const MINUTES_LISTED: usize = 60;

/// `shadow.md`: both runs, the decisions they differ on, the first divergence with its
/// events, every measure and invariant side by side, and when the differences happen.
pub fn shadow_markdown(shadow: &Shadow) -> String {
    let mut out = String::new();
    for block in document(shadow) {
        match block {
            Block::Title(text) => {
                let _ = writeln!(out, "# {}\n", md_escape(&text));
            }
            Block::Summary(text) => {
                let _ = writeln!(out, "**{}**\n", md_escape(&text));
            }
            Block::Heading(text) => {
                let _ = writeln!(out, "## {}\n", md_escape(&text));
            }
            Block::Subheading(text) => {
                let _ = writeln!(out, "### {}\n", md_escape(&text));
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
            Block::Table(table) => md_table(&mut out, &table.header, &table.rows),
            Block::Code(lines) => fenced(&mut out, "json", &lines),
            Block::Plot { note, .. } => {
                let _ = writeln!(out, "*{}*\n", md_escape(&note));
            }
            Block::Files(files) => {
                for (file, what) in files {
                    let _ = writeln!(out, "- [{file}]({file}): {}", md_escape(&what));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// `shadow.html`: the content of [`shadow_markdown`] as one self-contained page, with the
/// fast-path ratio and the spend of both runs and the differing tasks per minute drawn as
/// inline SVG.
pub fn shadow_html(shadow: &Shadow) -> String {
    let mut out = String::with_capacity(64 << 10);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&title(shadow))
    );
    for block in document(shadow) {
        match block {
            Block::Title(text) => {
                let _ = writeln!(out, "<h1>{}</h1>", escape(&text));
            }
            Block::Summary(text) => {
                let _ = writeln!(out, "<p class=\"summary\">{}</p>", escape(&text));
            }
            Block::Heading(text) => {
                let _ = writeln!(out, "<h2>{}</h2>", escape(&text));
            }
            Block::Subheading(text) => {
                let _ = writeln!(out, "<h3>{}</h3>", escape(&text));
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
            Block::Code(lines) => {
                let escaped: Vec<String> = lines.iter().map(|line| escape(line)).collect();
                let _ = writeln!(out, "<pre>{}</pre>", escaped.join("\n"));
            }
            Block::Plot { chart, .. } => {
                out.push_str("<figure>\n");
                out.push_str(&match chart {
                    Chart::FastRatio => fast_ratio_chart(shadow),
                    Chart::Spend => spend_chart(shadow),
                    Chart::Differences => differences_chart(&shadow.diff),
                });
                out.push_str("</figure>\n");
            }
            Block::Files(files) => {
                out.push_str("<ul class=\"files\">\n");
                for (file, what) in files {
                    let _ = writeln!(out, "<li><a href=\"{file}\">{file}</a>: {}</li>", escape(&what));
                }
                out.push_str("</ul>\n");
            }
        }
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// `canary.md`: the verdict, the findings that tipped it with the command that shows each
/// tipping seed in full, the rules, and every seed's findings.
pub fn canary_markdown(canary: &Canary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Canary: {} against {}\n", md_escape(&canary.candidate.name), md_escape(&canary.base.name));
    let _ = writeln!(out, "**Verdict: {}**\n", canary.verdict.as_str());
    let mut facts = vec![
        format!(
            "Base: {} ({}, SHA-256 {}, read from {})",
            canary.base.name, canary.base.file, canary.base.sha256, canary.base.source_path
        ),
        format!(
            "Candidate: {} ({}, SHA-256 {}, read from {})",
            canary.candidate.name, canary.candidate.file, canary.candidate.sha256, canary.candidate.source_path
        ),
    ];
    facts.push(match &canary.binary {
        Some(bin) => format!("Candidate build: {} (SHA-256 {})", bin.path, bin.sha256),
        None => "Candidate build: the one that ran the base".to_string(),
    });
    let seeds: Vec<u64> = canary.seeds.iter().map(|s| s.seed).collect();
    facts.push(format!("Seeds: {} ({})", seed_ranges(&seeds), plural(seeds.len() as u64, "seed")));
    for fact in facts {
        let _ = writeln!(out, "- {}", md_escape(&fact));
    }
    out.push('\n');

    canary_why(&mut out, canary);
    canary_rules(&mut out, canary);
    let _ = writeln!(out, "## Seeds\n");
    for seed in &canary.seeds {
        canary_seed(&mut out, seed);
    }
    out
}

fn canary_why(out: &mut String, canary: &Canary) {
    let _ = writeln!(out, "## Why\n");
    let tipping = canary.tipping();
    if canary.verdict == CanaryVerdict::Promote || tipping.is_empty() {
        let _ = writeln!(out, "Every rule holds on every seed.\n");
        return;
    }
    let (effect, meaning) = match canary.verdict {
        CanaryVerdict::Rollback => ("rollback", "a rule that rolls back is broken"),
        _ => {
            ("condition", "no rule that rolls back is broken, but a warning level is passed or an invariant made worse")
        }
    };
    let _ = writeln!(
        out,
        "{}\n",
        md_escape(&format!(
            "{} of {} tipped the verdict (effect {effect}: {meaning}):",
            tipping.len(),
            plural(canary.seeds.len() as u64, "seed")
        ))
    );
    for seed in tipping {
        // The findings that tipped it first, then the conditions it adds.
        for wanted in [Effect::Rollback, Effect::Condition] {
            for finding in seed.findings.iter().filter(|f| f.effect == wanted) {
                let _ = writeln!(out, "- {}", md_escape(&finding_line(seed.seed, finding)));
            }
        }
        let _ = writeln!(out, "\nSeed {} in full:\n", seed.seed);
        fenced(out, "sh", std::slice::from_ref(&seed.repro));
    }
}

/// `seed 7: measure spend_micro_usd: spend_micro_usd 100 -> 210 (+110.0 %) (rollback; limit: ...)`.
fn finding_line(seed: u64, finding: &Finding) -> String {
    format!(
        "seed {seed}: {} {}: {} ({}; limit: {})",
        finding.rule.as_str(),
        finding.subject,
        finding.why,
        finding.effect.as_str(),
        finding.limit
    )
}

fn canary_rules(out: &mut String, canary: &Canary) {
    let _ = writeln!(out, "## Rules\n");
    let criteria = seedcore_sim::shadow::rules::ROLLBACK_CRITERIA;
    let (listed, last) = criteria.split_at(criteria.len().saturating_sub(1));
    let _ = writeln!(
        out,
        "{}\n",
        md_escape(&format!(
            "Every candidate run is held to seed 000's rollback criteria: {} and {} (L_tot at or above 1.0); a \
             candidate run that breaks one rolls back. An invariant whose verdict the candidate makes worse than \
             the base's is a condition, or a rollback when it is critical and fails; an invariant that fails in \
             both runs is a condition (not caused by the change, not cleared by it). Each measure below compares \
             the candidate with the base on the same seed, in the direction in which it is better:",
            listed.join(", "),
            last.join("")
        ))
    );
    if canary.rules.measures.is_empty() {
        let _ = writeln!(out, "No measure is judged.\n");
        return;
    }
    let rows: Vec<Row> = canary
        .rules
        .measures
        .iter()
        .map(|rule| Row {
            class: None,
            cells: vec![
                rule.measure.clone(),
                rule.better.as_str().to_string(),
                format!("{:.1} % worse", 100.0 * rule.tolerance),
                format!("{:.1} % worse", 100.0 * rule.warn),
            ],
        })
        .collect();
    md_table(out, &["measure", "better", "rollback beyond (tolerance)", "condition beyond (warn)"], &rows);
}

fn canary_seed(out: &mut String, seed: &SeedRun) {
    let _ = writeln!(out, "### Seed {}\n", seed.seed);
    let line = format!(
        "Effect {}; differing tasks: {}, decided differently: {}; Merkle roots: base {} ({} events), candidate {} \
         ({} events).",
        seed.effect.as_str(),
        seed.differing,
        seed.decisions_differing,
        short_root(&seed.base.root),
        seed.base.events,
        short_root(&seed.candidate.root),
        seed.candidate.events
    );
    let _ = writeln!(out, "{}\n", md_escape(&line));
    let _ = writeln!(out, "Shown in full by {}\n", code_span(&seed.repro));
    if seed.findings.is_empty() {
        let _ = writeln!(out, "No rule applies.\n");
        return;
    }
    let rows: Vec<Row> = seed
        .findings
        .iter()
        .map(|f| Row {
            class: None,
            cells: vec![
                f.rule.as_str().to_string(),
                f.subject.clone(),
                f.base.clone(),
                f.candidate.clone(),
                f.limit.clone(),
                f.effect.as_str().to_string(),
            ],
        })
        .collect();
    md_table(out, &["rule", "subject", "base", "candidate", "limit", "effect"], &rows);
}

/// The first 16 hex digits of a Merkle root: enough to tell runs apart by eye (the
/// statement holds the whole root).
fn short_root(root: &[u8; 32]) -> String {
    hex::encode(&root[..8])
}

/// Seeds as ranges, in the `--seeds` syntax: `1..3, 7`.
fn seed_ranges(seeds: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &seed in seeds {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(seed) => *end = seed,
            _ => runs.push((seed, seed)),
        }
    }
    let parts: Vec<String> =
        runs.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}..{b}") }).collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// The shadow's document.

/// One block of the shadow report, rendered alike to Markdown and HTML. All text is plain:
/// each renderer escapes it for its own syntax.
enum Block {
    Title(String),
    /// The one-line result, read first.
    Summary(String),
    Heading(String),
    Subheading(String),
    Para(String),
    List(Vec<String>),
    Table(Table),
    /// Event-log lines, shown verbatim.
    Code(Vec<String>),
    /// A chart: inline SVG in HTML; in Markdown, `note`, which says where to see it.
    Plot {
        chart: Chart,
        note: String,
    },
    /// The shadow's files (relative to the report) and what each holds.
    Files(Vec<(&'static str, String)>),
}

#[derive(Clone, Copy)]
enum Chart {
    FastRatio,
    Spend,
    Differences,
}

struct Table {
    /// A fixed class name for the HTML table.
    class: &'static str,
    header: Vec<&'static str>,
    rows: Vec<Row>,
}

struct Row {
    /// A fixed class name (never data) for HTML highlighting.
    class: Option<&'static str>,
    cells: Vec<String>,
}

impl Table {
    fn new(class: &'static str, header: &[&'static str]) -> Table {
        Table { class, header: header.to_vec(), rows: Vec::new() }
    }

    fn row(&mut self, class: Option<&'static str>, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(Row { class, cells });
    }
}

fn title(shadow: &Shadow) -> String {
    format!("Shadow: {} vs {}", shadow.base.label(), shadow.candidate.label())
}

/// The shadow report's content, in reading order.
fn document(shadow: &Shadow) -> Vec<Block> {
    let mut doc = vec![Block::Title(title(shadow)), Block::Summary(summary(&shadow.diff))];
    doc.extend(fields_line(&shadow.diff).map(Block::Para));
    doc.push(Block::List(facts(shadow)));
    decisions(&mut doc, &shadow.diff);
    first_divergence(&mut doc, &shadow.diff, (&shadow.base, &shadow.candidate));
    measures(&mut doc, shadow);
    doc.push(Block::Heading("Over time".into()));
    doc.push(Block::Plot {
        chart: Chart::FastRatio,
        note: format!(
            "Chart in shadow.html: the fast-path ratio of both runs per minute of simulated time, with the \
             rollback level {:.2} and the target {:.2}.",
            rollback_level(),
            target_level()
        ),
    });
    doc.push(Block::Plot {
        chart: Chart::Spend,
        note: "Chart in shadow.html: the cumulative spend of both runs, USD, per minute of simulated time.".into(),
    });
    invariants(&mut doc, shadow);
    in_time(&mut doc, &shadow.diff);
    files(&mut doc, shadow);
    doc
}

fn summary(diff: &Diff) -> String {
    if diff.differing == 0 {
        return format!(
            "{}; 0 tasks differ: the candidate decides every task as the base does, with the same reason, \
             status, cost, latency and cache hit.",
            plural(diff.tasks, "task")
        );
    }
    format!(
        "{}, {} differ ({}), {} decided differently ({}).",
        plural(diff.tasks, "task"),
        diff.differing,
        percent(diff.differing, diff.tasks),
        diff.decisions_differing,
        percent(diff.decisions_differing, diff.tasks)
    )
}

/// Which fields differ, and on how many tasks: a changed decision moves the simulated
/// backend's draws of later tasks, so latencies differ well beyond the tasks decided
/// differently.
fn fields_line(diff: &Diff) -> Option<String> {
    (!diff.by_field.is_empty()).then(|| {
        let parts: Vec<String> = diff.by_field.iter().map(|(field, n)| format!("{field} on {n}")).collect();
        format!(
            "Fields that differ: {}. A task decided differently changes what the tasks after it meet (the caches, the \
             queues, the simulated backend's draws), so many more latencies than decisions differ.",
            parts.join(", ")
        )
    })
}

fn facts(shadow: &Shadow) -> Vec<String> {
    let side =
        |s: &Side| format!("{}: {}, scenario file {}", capitalised(s.role), s.label(), s.scenario_file.display());
    let log = |s: &Side| {
        format!("{} event log: {} events, Merkle root {}", capitalised(s.role), s.events, hex::encode(s.root))
    };
    let mut facts = vec![format!("Seed: {}", shadow.seed), side(&shadow.base), side(&shadow.candidate)];
    facts.push(log(&shadow.base));
    facts.push(log(&shadow.candidate));
    if let Some(capture) = &shadow.capture {
        facts.push(format!(
            "Live capture: {}, {}; the base's replay decided {} of them as the live engine did ({}).",
            capture.file.display(),
            plural(capture.tasks, "task"),
            capture.base_agreed,
            percent(capture.base_agreed, capture.tasks)
        ));
    }
    facts
}

fn decisions(doc: &mut Vec<Block>, diff: &Diff) {
    doc.push(Block::Heading("Decisions".into()));
    if diff.pairs.is_empty() {
        doc.push(Block::Para("No task in either run.".into()));
        return;
    }
    doc.push(Block::Para(
        "Tasks by their decision in each run (none: a task the run does not have); the pairs that differ first.".into(),
    ));
    let mut pairs: Vec<(&(String, String), &u64)> = diff.pairs.iter().collect();
    // Differing pairs first, each group by count, most first; the map's order breaks ties,
    // so the table is the same for the same diff.
    pairs.sort_by_key(|((base, candidate), count)| (base == candidate, std::cmp::Reverse(**count)));
    let mut table = Table::new("pairs", &["base decision", "candidate decision", "tasks"]);
    for ((base, candidate), count) in pairs {
        let class = (base != candidate).then_some("changed");
        table.row(class, vec![base.clone(), candidate.clone(), count.to_string()]);
    }
    doc.push(Block::Table(table));
}

fn decision_of(row: Option<&TaskRow>) -> String {
    row.map_or_else(|| "none".to_string(), |r| r.decision.clone())
}

fn first_divergence(doc: &mut Vec<Block>, diff: &Diff, sides: (&Side, &Side)) {
    doc.push(Block::Heading("First divergence".into()));
    match &diff.first {
        None if diff.differing == 0 => doc.push(Block::Para("No decision differs.".into())),
        None => doc.push(Block::Para(format!(
            "No decision differs: every differing task ({}) differs in reason, status, cost, latency or cache \
             hit only (diff.csv).",
            plural(diff.differing, "task")
        ))),
        Some(first) => divergence(doc, first, sides),
    }
    doc.push(Block::Subheading("Where the event logs part".into()));
    match &diff.parted {
        None => doc.push(Block::Para("The event logs are identical byte for byte.".into())),
        Some(parted) => parting(doc, parted),
    }
}

fn divergence(doc: &mut Vec<Block>, first: &Divergence, (base, candidate): (&Side, &Side)) {
    let (b, c) = (first.base.as_ref(), first.candidate.as_ref());
    let at_ms = b.or(c).map_or(0, |r| r.at_ms);
    doc.push(Block::Para(format!(
        "Task {} arrived at {at_ms} ms of simulated time (minute {}) and is the first decided differently: {} in \
         the base, {} in the candidate.",
        first.task_id,
        at_ms / MINUTE_MS,
        decision_of(b),
        decision_of(c)
    )));
    let mut table = Table::new("divergence", &["field", "base", "candidate"]);
    let absent = || "-".to_string();
    let fields: [(&str, RowField); 7] = [
        ("decision", |r| r.decision.clone()),
        ("path", |r| r.path.clone()),
        ("reason", |r| r.reason.clone()),
        ("status", |r| r.status.clone()),
        ("cost (micro-USD)", |r| r.cost_micro_usd.to_string()),
        ("latency (ms)", |r| r.latency_ms.to_string()),
        ("cache hit", |r| yes_no(r.cache_hit).to_string()),
    ];
    for (name, field) in fields {
        let (bv, cv) = (b.map_or_else(absent, field), c.map_or_else(absent, field));
        let class = (bv != cv).then_some("changed");
        table.row(class, vec![name.to_string(), bv, cv]);
    }
    doc.push(Block::Table(table));
    for (side, events) in [(base, &first.base_events), (candidate, &first.candidate_events)] {
        doc.push(Block::Subheading(format!("Its events in the {} run", side.role)));
        if events.is_empty() {
            doc.push(Block::Para(format!("No event of task {} in the {}'s log.", first.task_id, side.role)));
            continue;
        }
        if events.len() >= TASK_EVENTS {
            // The diff keeps at most `TASK_EVENTS` lines of a task; retries can make more.
            doc.push(Block::Para(format!("At most {TASK_EVENTS} events are shown; the log may hold more.")));
        }
        doc.push(Block::Code(events.clone()));
    }
}

fn parting(doc: &mut Vec<Block>, parted: &Parted) {
    let line = parted.line;
    doc.push(Block::Para(format!(
        "The logs are the same up to line {} and part at line {line}.",
        line.saturating_sub(1)
    )));
    if !parted.before.is_empty() {
        doc.push(Block::Para(format!("The {} identical lines before it:", parted.before.len())));
        doc.push(Block::Code(parted.before.clone()));
    }
    for (role, text) in [("base", &parted.base), ("candidate", &parted.candidate)] {
        match text {
            Some(text) => {
                doc.push(Block::Para(format!("Line {line} of the {role}'s log:")));
                doc.push(Block::Code(vec![text.clone()]));
            }
            None => doc.push(Block::Para(format!("Line {line} of the {role}'s log: (log ended)"))),
        }
    }
}

fn measures(doc: &mut Vec<Block>, shadow: &Shadow) {
    doc.push(Block::Heading("Measures".into()));
    doc.push(Block::Para(
        "Every measure of both runs, folded from their event logs; the change is the candidate's against the base's."
            .into(),
    ));
    let mut table = Table::new("measures", &["measure", "unit", "better", "base", "candidate", "change"]);
    for (b, c) in side_by_side(&shadow.base.stats, &shadow.candidate.stats) {
        let change = change_text(b.value, c.value);
        let class = direction(&b, &c);
        table.row(
            class,
            vec![
                b.name.clone(),
                b.unit.to_string(),
                b.better.as_str().to_string(),
                or_dash(b.text()),
                or_dash(c.text()),
                or_dash(change),
            ],
        );
    }
    doc.push(Block::Table(table));
}

/// `better` or `worse` when the candidate's value moved in that direction; `None` when equal
/// or not measured in both runs.
fn direction(base: &Value, candidate: &Value) -> Option<&'static str> {
    let (Some(b), Some(c)) = (base.value, candidate.value) else {
        return (base.value.is_some() != candidate.value.is_some()).then_some("changed");
    };
    if b == c {
        return None;
    }
    let improved = match base.better {
        Better::Higher => c > b,
        Better::Lower => c < b,
    };
    Some(if improved { "better" } else { "worse" })
}

fn invariants(doc: &mut Vec<Block>, shadow: &Shadow) {
    doc.push(Block::Heading("Invariants".into()));
    let find = |results: &[InvariantResult], id: InvariantId| results.iter().find(|r| r.id == id).cloned();
    let mut table = Table::new("invariants", &["invariant", "base", "candidate", "changed"]);
    let mut changed_count = 0u64;
    for id in InvariantId::ALL {
        let (b, c) = (find(&shadow.base.results, id), find(&shadow.candidate.results, id));
        if b.is_none() && c.is_none() {
            continue;
        }
        let changed = b.as_ref().map(|r| r.verdict) != c.as_ref().map(|r| r.verdict);
        changed_count += u64::from(changed);
        table.row(
            changed.then_some("changed"),
            vec![
                id.as_str().to_string(),
                verdict_cell(b.as_ref()),
                verdict_cell(c.as_ref()),
                if changed { "changed" } else { "" }.to_string(),
            ],
        );
    }
    if table.rows.is_empty() {
        doc.push(Block::Para("No invariant was judged.".into()));
        return;
    }
    doc.push(Block::Para(format!(
        "Each run judged by its own scenario's policy (determinism is skipped: a shadow runs each side once); {} \
         its verdict.",
        match changed_count {
            0 => "no invariant changes".to_string(),
            1 => "1 invariant changes".to_string(),
            n => format!("{n} invariants change"),
        }
    )));
    doc.push(Block::Table(table));
}

fn verdict_cell(result: Option<&InvariantResult>) -> String {
    match result {
        None => "-".to_string(),
        Some(r) if r.observed.is_empty() => r.verdict.as_str().to_string(),
        Some(r) => format!("{} ({})", r.verdict.as_str(), r.observed),
    }
}

fn in_time(doc: &mut Vec<Block>, diff: &Diff) {
    doc.push(Block::Heading("Where decisions differ in time".into()));
    doc.push(Block::Plot {
        chart: Chart::Differences,
        note: "Chart in shadow.html: the differing tasks per minute of arrival, those decided differently apart."
            .into(),
    });
    if diff.by_minute.is_empty() {
        doc.push(Block::Para("No task differs.".into()));
        return;
    }
    let mut table = Table::new("minutes", &["minute", "differing", "decisions differing"]);
    for (minute, (differing, decisions)) in diff.by_minute.iter().take(MINUTES_LISTED) {
        let class = (*decisions > 0).then_some("changed");
        table.row(class, vec![minute.to_string(), differing.to_string(), decisions.to_string()]);
    }
    doc.push(Block::Table(table));
    let more = diff.by_minute.len().saturating_sub(MINUTES_LISTED);
    if more > 0 {
        doc.push(Block::Para(format!(
            "... {more} more {} (every differing task is in diff.csv).",
            if more == 1 { "minute" } else { "minutes" }
        )));
    }
}

fn files(doc: &mut Vec<Block>, shadow: &Shadow) {
    doc.push(Block::Heading("Files".into()));
    doc.push(Block::Files(vec![
        ("diff.csv", "every differing task with both runs' fields, by arrival".to_string()),
        ("base/events.jsonl", format!("the base's event log ({} events)", shadow.base.events)),
        ("candidate/events.jsonl", format!("the candidate's event log ({} events)", shadow.candidate.events)),
        ("base/tasks.csv", "the base's tasks, one row each".to_string()),
        ("candidate/tasks.csv", "the candidate's tasks, one row each".to_string()),
    ]));
}

// ---------------------------------------------------------------------------------------
// Markdown and HTML helpers.

fn md_table(out: &mut String, header: &[&str], rows: &[Row]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
    for row in rows {
        let cells: Vec<String> = row.cells.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

fn html_table(out: &mut String, table: &Table) {
    let _ = write!(out, "<table class=\"{}\">\n<thead><tr>", table.class);
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
        for cell in &row.cells {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Lines in a fenced code block whose fence is longer than any run of backticks in them,
/// so no line can close it.
fn fenced(out: &mut String, lang: &str, lines: &[String]) {
    let longest = lines.iter().map(|l| longest_run(l, '`')).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}{lang}");
    for line in lines {
        let _ = writeln!(out, "{}", line.replace(['\r', '\n'], " "));
    }
    let _ = writeln!(out, "{fence}\n");
}

/// Text as an inline code span, delimited by more backticks than it holds.
fn code_span(text: &str) -> String {
    let text = text.replace(['\r', '\n'], " ");
    let delimiter = "`".repeat(longest_run(&text, '`') + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') { " " } else { "" };
    format!("{delimiter}{pad}{text}{pad}{delimiter}")
}

fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for ch in text.chars() {
        run = if ch == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

/// Plain text for Markdown: what Markdown reads as syntax is escaped with a backslash, line
/// breaks become spaces. `_` is left alone between two word characters (GFM reads no
/// emphasis inside a word, and `spend_micro_usd` stays readable in the raw file); `#` and
/// `>` only matter at the start of a block, and `->` stays readable in the middle.
fn md_escape(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let word = |i: Option<usize>| i.and_then(|i| chars.get(i)).is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let escaped = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '|' => true,
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            '#' | '>' => i == 0,
            _ => false,
        };
        match c {
            '\r' | '\n' => out.push(' '),
            _ if escaped => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `part / whole` as a percentage with two decimals; `-` for an empty whole.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    format!("{:.2} %", part as f64 * 100.0 / whole as f64)
}

fn or_dash(text: String) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        text
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// The inline style sheet of `shadow.html`.
const STYLE: &str = "body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; } td { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; } td:first-child { white-space: nowrap; }
tr.changed td { background: #fff3d6; } tr.worse td { background: #fbe3e3; } tr.better td { background: #e3f6e5; }
.summary { font-size: 1.15em; font-weight: bold; padding: 0.8em 1.2em; border-left: 6px solid #1f5fa8; background: #eef3fa; }
pre { background: #f3f3f3; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; }
svg.plot { max-width: 100%; height: auto; background: #fff; border: 1px solid #ddd; }
";

// ---------------------------------------------------------------------------------------
// Charts: hand-written SVG, every coordinate from a finite value over a non-zero span.

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 290.0;
/// The plot area inside the picture (the band above it holds the title and the legend).
const LEFT: f64 = 64.0;
const RIGHT: f64 = 700.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 236.0;
const BASE_COLOUR: &str = "#1f5fa8";
const CANDIDATE_COLOUR: &str = "#d9730d";
const DECISION_COLOUR: &str = "#b71c1c";
const OTHER_COLOUR: &str = "#f4b6b0";
const ROLLBACK_COLOUR: &str = "#c62828";
const TARGET_COLOUR: &str = "#2e7d32";
/// The longest run label a legend shows (a `--candidate-bin` path can be long).
const LEGEND_CHARS: usize = 48;

/// Seed 000's rollback level of the fast-path ratio, as docs/certification.md 8.1 sets it.
/// A scenario may set another; the chart shows the default the criteria are known by.
fn rollback_level() -> f64 {
    InvariantId::RollbackFastPath.defaults().threshold
}

/// The fast-path ratio's target, as docs/certification.md 8.1 sets it.
fn target_level() -> f64 {
    InvariantId::FastPathRatio.defaults().threshold
}

/// Value ranges mapped onto the plot area. A span that is empty (or not finite) counts as 1,
/// so no division is by zero and every coordinate is a number.
struct Axes {
    x_lo: f64,
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
}

fn span(lo: f64, hi: f64) -> f64 {
    let span = hi - lo;
    if span.is_finite() && span > 0.0 {
        span
    } else {
        1.0
    }
}

impl Axes {
    fn x(&self, value: f64) -> f64 {
        LEFT + (value - self.x_lo) / span(self.x_lo, self.x_hi) * (RIGHT - LEFT)
    }

    /// A value out of range is drawn at the frame, not outside it.
    fn y(&self, value: f64) -> f64 {
        let value = value.clamp(self.y_lo, self.y_lo + span(self.y_lo, self.y_hi));
        BOTTOM - (value - self.y_lo) / span(self.y_lo, self.y_hi) * (BOTTOM - TOP)
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving at most about `count` steps over
/// `span`; 1 for an empty span.
fn nice_step(span: f64, count: f64) -> f64 {
    if !span.is_finite() || span <= 0.0 || count <= 0.0 {
        return 1.0;
    }
    let raw = span / count;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let step = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    step * magnitude
}

/// The multiples of `step` from `lo` to `hi` (at most a dozen).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !step.is_finite() || step <= 0.0 || !lo.is_finite() || !hi.is_finite() {
        return Vec::new();
    }
    let first = (lo / step).ceil() * step;
    (0..12).map(|k| first + k as f64 * step).take_while(|v| *v <= hi + step * 1e-9).collect()
}

/// Decimals that show a tick step of 1, 2 or 5 times a power of ten exactly.
fn decimals(step: f64) -> usize {
    if !step.is_finite() || step <= 0.0 || step >= 1.0 {
        return 0;
    }
    (-(step.log10() + 1e-9).floor()).clamp(0.0, 6.0) as usize
}

fn truncated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// A legend entry: a line (a run's curve) or a box (a kind of bar) in its colour, then its label.
enum Key<'a> {
    Line(&'a str, String),
    Box(&'a str, String),
}

/// The opening tag, the title (as `<title>` and as text), the legend, the frame and the
/// axes' labels.
fn open(svg: &mut String, id: &str, title: &str, keys: &[Key<'_>], y_label: &str) {
    let _ = writeln!(
        svg,
        "<svg class=\"plot\" id=\"{id}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-labelledby=\"{id}-title\">\n<title id=\"{id}-title\">{}</title>",
        escape(title)
    );
    let _ = writeln!(svg, "<text x=\"8\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>", escape(title));
    let mut x = LEFT;
    for key in keys {
        let (colour, label) = match key {
            Key::Line(colour, label) | Key::Box(colour, label) => (*colour, truncated(label, LEGEND_CHARS)),
        };
        match key {
            Key::Line(..) => {
                let _ = writeln!(
                    svg,
                    "<line x1=\"{x:.1}\" y1=\"36\" x2=\"{:.1}\" y2=\"36\" stroke=\"{colour}\" stroke-width=\"2.5\"/>",
                    x + 18.0
                );
            }
            Key::Box(..) => {
                let _ = writeln!(svg, "<rect x=\"{x:.1}\" y=\"30\" width=\"18\" height=\"12\" fill=\"{colour}\"/>");
            }
        }
        let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"40\" font-size=\"11\">{}</text>", x + 23.0, escape(&label));
        // Wide enough for the label at 11 px (about 6.2 px a character) and a gap.
        x += 23.0 + 6.2 * label.chars().count() as f64 + 18.0;
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{BOTTOM}\" stroke=\"#555\"/>\
         <line x1=\"{LEFT}\" y1=\"{BOTTOM}\" x2=\"{RIGHT}\" y2=\"{BOTTOM}\" stroke=\"#555\"/>"
    );
    let middle = TOP + (BOTTOM - TOP) / 2.0;
    let _ = writeln!(
        svg,
        "<text x=\"14\" y=\"{middle:.0}\" font-size=\"11\" text-anchor=\"middle\" \
         transform=\"rotate(-90 14 {middle:.0})\">{}</text>",
        escape(y_label)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\">minute of simulated time</text>",
        LEFT + (RIGHT - LEFT) / 2.0,
        BOTTOM + 34.0
    );
}

/// Horizontal grid lines with their values at the left.
fn y_ticks(svg: &mut String, axes: &Axes, values: &[f64], decimals: usize) {
    for &value in values {
        let at = axes.y(value);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{RIGHT}\" y2=\"{at:.1}\" stroke=\"#e3e3e3\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{value:.decimals$}</text>",
            LEFT - 5.0,
            at + 3.5
        );
    }
}

/// A tick under the x axis at `x` labelled with a minute.
fn x_tick(svg: &mut String, x: f64, minute: f64) {
    let _ = writeln!(
        svg,
        "<line x1=\"{x:.1}\" y1=\"{BOTTOM}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#555\"/>\
         <text x=\"{x:.1}\" y=\"{:.0}\" font-size=\"10\" text-anchor=\"middle\">{minute:.0}</text>",
        BOTTOM + 4.0,
        BOTTOM + 16.0
    );
}

/// The minute ticks of a line chart over `axes`'s x range.
fn minute_ticks(svg: &mut String, axes: &Axes) {
    let step = nice_step(axes.x_hi - axes.x_lo, 6.0).max(1.0);
    for minute in ticks(axes.x_lo, axes.x_hi, step) {
        x_tick(svg, axes.x(minute), minute);
    }
}

/// Text in the middle of the plot area, for a chart with nothing to draw.
fn nothing(svg: &mut String, text: &str) {
    let _ = writeln!(
        svg,
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"13\" fill=\"#777\" text-anchor=\"middle\">{}</text>",
        LEFT + (RIGHT - LEFT) / 2.0,
        TOP + (BOTTOM - TOP) / 2.0,
        escape(text)
    );
}

/// The first and last minute of any curve; a single minute gets a span of one.
fn minute_range(curves: &[&Curve]) -> Option<(f64, f64)> {
    let minutes = curves.iter().flat_map(|c| c.iter().map(|(m, _)| *m));
    let (lo, hi) = minutes.fold(None, |range: Option<(u64, u64)>, m| match range {
        None => Some((m, m)),
        Some((lo, hi)) => Some((lo.min(m), hi.max(m))),
    })?;
    let hi = if hi > lo { hi as f64 } else { lo as f64 + 1.0 };
    Some((lo as f64, hi))
}

/// One run's curve: a line through its points, or a dot when it has one.
fn series(svg: &mut String, axes: &Axes, curve: &Curve, colour: &str, name: &str) {
    let points: Vec<(u64, f64)> = curve.iter().filter(|(_, v)| v.is_finite()).copied().collect();
    match points.as_slice() {
        [] => {}
        [(minute, value)] => {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\"><title>{}: minute {minute}, \
                 {value:.4}</title></circle>",
                axes.x(*minute as f64),
                axes.y(*value),
                escape(name)
            );
        }
        _ => {
            let coordinates: Vec<String> =
                points.iter().map(|(m, v)| format!("{:.1},{:.1}", axes.x(*m as f64), axes.y(*v))).collect();
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\"><title>{}</title>\
                 </polyline>",
                coordinates.join(" "),
                escape(name)
            );
        }
    }
}

fn run_keys(shadow: &Shadow) -> [Key<'static>; 2] {
    [
        Key::Line(BASE_COLOUR, format!("base: {}", shadow.base.label())),
        Key::Line(CANDIDATE_COLOUR, format!("candidate: {}", shadow.candidate.label())),
    ]
}

/// Both runs' fast-path ratio per minute, with the rollback and target levels dashed.
fn fast_ratio_chart(shadow: &Shadow) -> String {
    let (base, candidate) = (fast_ratio_curve(&shadow.base.stats), fast_ratio_curve(&shadow.candidate.stats));
    let range = minute_range(&[&base, &candidate]);
    let (x_lo, x_hi) = range.unwrap_or((0.0, 1.0));
    let axes = Axes { x_lo, x_hi, y_lo: 0.0, y_hi: 1.0 };
    let mut svg = String::with_capacity(16 << 10);
    open(&mut svg, "fast-ratio", "Fast-path ratio per minute", &run_keys(shadow), "fast-path ratio");
    y_ticks(&mut svg, &axes, &[0.0, 0.25, 0.5, 0.75, 1.0], 2);
    // The target's label above its line, the rollback level's below: they are 0.05 apart.
    for (level, colour, label, dy) in [
        (rollback_level(), ROLLBACK_COLOUR, format!("rollback {:.2}", rollback_level()), 12.0),
        (target_level(), TARGET_COLOUR, format!("target {:.2}", target_level()), -4.0),
    ] {
        let at = axes.y(level);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{at:.1}\" x2=\"{RIGHT}\" y2=\"{at:.1}\" stroke=\"{colour}\" \
             stroke-dasharray=\"6 4\"/>\
             <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\" text-anchor=\"end\">{label}</text>",
            RIGHT - 4.0,
            at + dy
        );
    }
    match range {
        None => nothing(&mut svg, "no minute with a completed or failed task"),
        Some(_) => {
            minute_ticks(&mut svg, &axes);
            series(&mut svg, &axes, &base, BASE_COLOUR, &format!("base: {}", shadow.base.label()));
            series(&mut svg, &axes, &candidate, CANDIDATE_COLOUR, &format!("candidate: {}", shadow.candidate.label()));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Both runs' cumulative spend, USD, per minute.
fn spend_chart(shadow: &Shadow) -> String {
    let (base, candidate) = (spend_curve(&shadow.base.stats), spend_curve(&shadow.candidate.stats));
    let range = minute_range(&[&base, &candidate]);
    let (x_lo, x_hi) = range.unwrap_or((0.0, 1.0));
    let top = base.iter().chain(&candidate).map(|(_, v)| *v).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let step = nice_step(if top > 0.0 { top } else { 1.0 }, 4.0);
    let y_hi = if top > 0.0 { (top / step).ceil() * step } else { 1.0 };
    let axes = Axes { x_lo, x_hi, y_lo: 0.0, y_hi };
    let mut svg = String::with_capacity(16 << 10);
    open(&mut svg, "spend", "Cumulative spend", &run_keys(shadow), "USD, cumulative");
    y_ticks(&mut svg, &axes, &ticks(0.0, y_hi, step), decimals(step));
    match range {
        None => nothing(&mut svg, "no outcome recorded"),
        Some(_) => {
            minute_ticks(&mut svg, &axes);
            series(&mut svg, &axes, &base, BASE_COLOUR, &format!("base: {}", shadow.base.label()));
            series(&mut svg, &axes, &candidate, CANDIDATE_COLOUR, &format!("candidate: {}", shadow.candidate.label()));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A bar per minute of arrival with a differing task: those decided differently in a strong
/// colour at the bottom, the other differing tasks in a light one on top.
fn differences_chart(diff: &Diff) -> String {
    let keys = [
        Key::Box(DECISION_COLOUR, "decided differently".to_string()),
        Key::Box(OTHER_COLOUR, "other field differs".to_string()),
    ];
    let mut svg = String::with_capacity(16 << 10);
    open(&mut svg, "differences", "Differing tasks per minute of arrival", &keys, "tasks");
    let (Some(first), Some(last)) = (diff.by_minute.keys().next(), diff.by_minute.keys().next_back()) else {
        nothing(&mut svg, "no task differs");
        svg.push_str("</svg>\n");
        return svg;
    };
    let (first, last) = (*first, *last);
    // One slot per minute from the first to the last: gaps show as gaps.
    let slots = (last - first).saturating_add(1) as f64;
    let slot = (RIGHT - LEFT) / slots;
    let top = diff.by_minute.values().map(|(differing, _)| *differing).max().unwrap_or(0).max(1) as f64;
    let step = nice_step(top, 4.0).max(1.0).round();
    let axes = Axes { x_lo: 0.0, x_hi: 1.0, y_lo: 0.0, y_hi: (top / step).ceil() * step };
    y_ticks(&mut svg, &axes, &ticks(0.0, axes.y_hi, step), 0);
    let minute_step = nice_step((last - first) as f64, 6.0).max(1.0);
    for minute in ticks(first as f64, last as f64, minute_step) {
        x_tick(&mut svg, LEFT + (minute - first as f64 + 0.5) * slot, minute);
    }
    for (minute, (differing, decisions)) in &diff.by_minute {
        let x = LEFT + (minute - first) as f64 * slot + slot * 0.1;
        let width = slot * 0.8;
        let decisions = (*decisions).min(*differing);
        let tip = format!("minute {minute}: {differing} differing, {decisions} decided differently");
        for (from, to, colour) in [(0, decisions, DECISION_COLOUR), (decisions, *differing, OTHER_COLOUR)] {
            if to <= from {
                continue;
            }
            let (y_top, y_bottom) = (axes.y(to as f64), axes.y(from as f64));
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y_top:.2}\" width=\"{width:.2}\" height=\"{:.2}\" fill=\"{colour}\">\
                 <title>{tip}</title></rect>",
                y_bottom - y_top
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shadow::{CaptureInfo, RunRef, ScenarioRef};
    use seedcore_sim::invariants::{Measure, Minute, Stats, Verdict};
    use seedcore_sim::shadow::canary::{CanaryRules, Rule};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    /// Totals with one `Minute` per (minute, fast, completed, cost).
    fn stats(minutes: &[(u64, u64, u64, u64)]) -> Stats {
        let mut stats = Stats::new(10);
        for &(minute, fast, completed, cost) in minutes {
            stats.minutes.insert(minute, Minute { fast, completed, cost_micro_usd: cost, ..Minute::default() });
            stats.completed.fast += fast;
            stats.completed.deep += completed - fast;
            stats.total_cost_micro_usd += cost;
        }
        stats
    }

    fn invariant(id: InvariantId, verdict: Verdict, observed: &str) -> InvariantResult {
        InvariantResult {
            id,
            critical: id.critical(),
            verdict,
            observed: observed.to_string(),
            threshold: ">= 0.90".to_string(),
            detail: String::new(),
            measure: Measure::default(),
        }
    }

    fn side(role: &'static str, scenario: &str, stats: Stats, results: Vec<InvariantResult>) -> Side {
        Side {
            role,
            scenario: scenario.to_string(),
            scenario_file: PathBuf::from(format!("{scenario}.toml")),
            binary: None,
            root: [0xab; 32],
            events: 120,
            stats,
            results,
        }
    }

    fn row(at_ms: u64, decision: &str, reason: &str, cost: u64) -> TaskRow {
        TaskRow {
            at_ms,
            decision: decision.to_string(),
            path: decision.to_string(),
            reason: reason.to_string(),
            status: "completed".to_string(),
            cost_micro_usd: cost,
            latency_ms: 80,
            cache_hit: false,
        }
    }

    fn pair(base: &str, candidate: &str) -> (String, String) {
        (base.to_string(), candidate.to_string())
    }

    /// Three minutes; the candidate escalates more and spends more.
    fn shadow() -> Shadow {
        let base = side(
            "base",
            "azure",
            stats(&[(0, 9, 10, 1_000), (1, 10, 10, 1_200), (2, 9, 10, 900)]),
            vec![
                invariant(InvariantId::FastPathRatio, Verdict::Pass, "0.933333"),
                invariant(InvariantId::RollbackFastPath, Verdict::Pass, "0 min below 0.85"),
            ],
        );
        let candidate = side(
            "candidate",
            "tau",
            stats(&[(0, 7, 10, 5_000), (1, 8, 10, 5_200), (2, 9, 10, 900)]),
            vec![
                invariant(InvariantId::FastPathRatio, Verdict::Fail, "0.800000"),
                invariant(InvariantId::RollbackFastPath, Verdict::Pass, "0 min below 0.85"),
            ],
        );
        let diff = Diff {
            tasks: 30,
            differing: 6,
            decisions_differing: 5,
            pairs: BTreeMap::from([
                (pair("deep", "deep"), 1),
                (pair("fast", "deep"), 4),
                (pair("fast", "fast"), 24),
                (pair("fast", "none"), 1),
            ]),
            by_field: BTreeMap::from([("latency_ms", 6), ("path", 4)]),
            by_minute: BTreeMap::from([(0, (3, 3)), (1, (3, 2))]),
            first: Some(Divergence {
                task_id: 3,
                base: Some(row(1_500, "fast", "fast", 5)),
                candidate: Some(row(1_500, "deep", "surprise", 900)),
                base_events: vec![r#"{"data":{"prompt":"<b>hi</b>","task_id":3},"kind":"arrival"}"#.to_string()],
                candidate_events: vec![
                    r#"{"data":{"prompt":"<b>hi</b>","task_id":3},"kind":"arrival"}"#.to_string(),
                    r#"{"data":{"path":"deep","task_id":3},"kind":"decision"}"#.to_string(),
                ],
            }),
            parted: Some(Parted {
                line: 4,
                before: vec!["{\"seq\":1}".to_string(), "{\"seq\":2}".to_string()],
                base: Some("{\"seq\":3,\"kind\":\"decision\"}".to_string()),
                candidate: None,
            }),
        };
        Shadow {
            seed: 7,
            base,
            candidate,
            diff,
            capture: Some(CaptureInfo { file: PathBuf::from("live.csv"), tasks: 30, base_agreed: 29 }),
            dir: PathBuf::from("/somewhere/out/shadow"),
        }
    }

    fn empty_shadow() -> Shadow {
        Shadow {
            seed: 1,
            base: side("base", "a", Stats::new(10), Vec::new()),
            candidate: side("candidate", "b", Stats::new(10), Vec::new()),
            diff: Diff::default(),
            capture: None,
            dir: PathBuf::from("out"),
        }
    }

    /// The markup of the `<svg>` element with `id`.
    fn svg<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(&format!("<svg class=\"plot\" id=\"{id}\"")).unwrap_or_else(|| panic!("no svg {id}"));
        let end = html[start..].find("</svg>").map_or(html.len(), |e| start + e);
        &html[start..end]
    }

    fn no_bad_numbers(html: &str) {
        assert!(!html.contains("NaN"), "NaN in the output");
        let infinite = html.contains("inf\"") || html.contains("=\"inf") || html.contains(",inf");
        assert!(!infinite, "infinity in the output");
    }

    #[test]
    fn shadow_markdown_has_every_section_in_order() {
        let md = shadow_markdown(&shadow());
        assert!(md.starts_with("# Shadow: azure vs tau\n"), "{md}");
        assert!(md.contains("**30 tasks, 6 differ (20.00 %), 5 decided differently (16.67 %).**"), "{md}");
        assert!(md.contains("the base's replay decided 29 of them as the live engine did (96.67 %)"), "{md}");
        let mut at = 0;
        for section in [
            "## Decisions",
            "## First divergence",
            "### Where the event logs part",
            "## Measures",
            "## Over time",
            "## Invariants",
            "## Where decisions differ in time",
            "## Files",
        ] {
            let found = md[at..].find(section).unwrap_or_else(|| panic!("{section} missing or out of order:\n{md}"));
            at += found;
        }
        // Differing pairs first, most first; then the agreeing ones.
        let rows = ["| fast | deep | 4 |", "| fast | none | 1 |", "| fast | fast | 24 |", "| deep | deep | 1 |"];
        let order: Vec<usize> =
            rows.iter().map(|row| md.find(row).unwrap_or_else(|| panic!("{row} missing:\n{md}"))).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{md}");
        assert!(md.contains("Task 3 arrived at 1500 ms of simulated time (minute 0)"), "{md}");
        assert!(md.contains("| reason | fast | surprise |"), "{md}");
        let events = shadow().diff.first.map(|f| f.candidate_events).unwrap_or_default();
        assert!(md.contains(&format!("```json\n{}\n{}\n```", events[0], events[1])), "{md}");
        assert!(md.contains("Line 4 of the candidate's log: (log ended)"), "{md}");
        assert!(md.contains("The 2 identical lines before it:"), "{md}");
        assert!(md.contains("| spend_micro_usd | micro-USD | lower | 3100 | 11100 | +258.1 % |"), "{md}");
        assert!(md.contains("| fast_path_ratio | pass (0.933333) | fail (0.800000) | changed |"), "{md}");
        assert!(md.contains("| rollback_fast_path | pass (0 min below 0.85) | pass (0 min below 0.85) |  |"), "{md}");
        assert!(md.contains("| 1 | 3 | 2 |"), "{md}");
        let files =
            ["diff.csv", "base/events.jsonl", "candidate/events.jsonl", "base/tasks.csv", "candidate/tasks.csv"];
        for file in files {
            assert!(md.contains(&format!("[{file}]({file})")), "{file}: {md}");
        }
        assert!(!md.contains("/somewhere"), "the output directory is not part of the report");
    }

    #[test]
    fn shadow_html_has_the_three_charts_and_escapes_the_events() {
        let html = shadow_html(&shadow());
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        for id in ["fast-ratio", "spend", "differences"] {
            let chart = svg(&html, id);
            assert!(chart.contains("role=\"img\"") && chart.contains("<title"), "{id}: {chart}");
        }
        no_bad_numbers(&html);
        assert!(!html.contains("http"), "no URL at all");
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("src="));
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;") && !html.contains("<b>hi</b>"), "event text is escaped");
        assert!(html.contains("<p class=\"summary\">30 tasks, 6 differ"), "{html}");
        for class in ["measures", "pairs", "invariants"] {
            assert!(html.contains(&format!("<table class=\"{class}\">")), "{class}");
        }
        assert!(html.contains("<tr class=\"changed\"><td>fast</td><td>deep</td><td>4</td></tr>"));
        assert!(html.contains("<tr class=\"worse\"><td>spend_micro_usd</td>"), "more spend is worse");
        assert!(html.contains("<a href=\"diff.csv\">diff.csv</a>"));

        let ratio = svg(&html, "fast-ratio");
        assert_eq!(ratio.matches("<polyline").count(), 2, "both runs: {ratio}");
        assert!(ratio.contains(BASE_COLOUR) && ratio.contains(CANDIDATE_COLOUR));
        assert!(ratio.contains("base: azure") && ratio.contains("candidate: tau"), "legend: {ratio}");
        assert!(ratio.contains("rollback 0.85") && ratio.contains("target 0.90"), "{ratio}");
        assert_eq!(ratio.matches("stroke-dasharray").count(), 2, "{ratio}");
        assert_eq!(svg(&html, "spend").matches("<polyline").count(), 2);
        let differences = svg(&html, "differences");
        // Minute 0: 3 decided differently; minute 1: 2 decided differently and 1 other.
        assert_eq!(differences.matches(&format!("fill=\"{DECISION_COLOUR}\"><title>")).count(), 2, "{differences}");
        assert_eq!(differences.matches(&format!("fill=\"{OTHER_COLOUR}\"><title>")).count(), 1, "{differences}");
        assert!(!differences.contains("no task differs"));
    }

    #[test]
    fn an_empty_shadow_renders_without_nan_and_says_nothing_differs() {
        let shadow = empty_shadow();
        let md = shadow_markdown(&shadow);
        assert!(md.contains("0 tasks differ: the candidate decides every task as the base does"), "{md}");
        assert!(md.contains("No decision differs.") && md.contains("identical byte for byte"), "{md}");
        assert!(md.contains("No task in either run.") && md.contains("No invariant was judged."), "{md}");
        assert!(!md.contains("NaN"));
        let html = shadow_html(&shadow);
        assert_eq!(html.matches("<svg").count(), 3);
        no_bad_numbers(&html);
        assert!(svg(&html, "differences").contains("no task differs"));
        assert!(svg(&html, "fast-ratio").contains("no minute with a completed or failed task"));
        assert!(!html.contains("<polyline") && !html.contains("<circle"), "nothing to draw");
    }

    #[test]
    fn a_single_minute_is_drawn_as_a_dot_without_nan() {
        let mut shadow = empty_shadow();
        shadow.base.stats = stats(&[(5, 1, 1, 10)]);
        shadow.candidate.stats = stats(&[(5, 0, 1, 0)]);
        shadow.diff = Diff {
            tasks: 1,
            differing: 1,
            decisions_differing: 0,
            pairs: BTreeMap::from([(pair("fast", "fast"), 1)]),
            by_minute: BTreeMap::from([(5, (1, 0))]),
            ..Diff::default()
        };
        let html = shadow_html(&shadow);
        no_bad_numbers(&html);
        assert_eq!(svg(&html, "fast-ratio").matches("<circle").count(), 2);
        assert_eq!(svg(&html, "spend").matches("<circle").count(), 2);
        assert_eq!(svg(&html, "differences").matches("<rect").count(), 2 + 1, "the legend's two and one bar");
        let md = shadow_markdown(&shadow);
        assert!(md.contains("No decision differs: every differing task (1 task) differs in reason"), "{md}");
    }

    #[test]
    fn the_minutes_table_stops_at_sixty_rows() {
        let mut shadow = empty_shadow();
        shadow.diff.by_minute = (0..70).map(|m| (m, (1, 1))).collect();
        let md = shadow_markdown(&shadow);
        assert!(md.contains("| 59 | 1 | 1 |") && !md.contains("| 60 | 1 | 1 |"), "{md}");
        assert!(md.contains("... 10 more minutes"), "{md}");
        no_bad_numbers(&shadow_html(&shadow));
    }

    fn run(root: u8) -> RunRef {
        RunRef { events_file: String::new(), root: [root; 32], events: 600, stats: Stats::new(10), results: Vec::new() }
    }

    fn finding(subject: &str, effect: Effect, why: &str) -> Finding {
        Finding {
            rule: Rule::Measure,
            subject: subject.to_string(),
            base: "100".to_string(),
            candidate: "210".to_string(),
            limit: "lower better; rollback beyond 10.0 % worse, condition beyond 5.0 %".to_string(),
            effect,
            why: why.to_string(),
        }
    }

    fn seed(seed: u64, effect: Effect, findings: Vec<Finding>) -> SeedRun {
        SeedRun {
            seed,
            base: run(0x12),
            candidate: run(0x34),
            differing: 12,
            decisions_differing: 3,
            findings,
            effect,
            repro: format!("cargo sim shadow base.toml pricey.toml --seed {seed}"),
        }
    }

    fn canary(verdict: CanaryVerdict, seeds: Vec<SeedRun>) -> Canary {
        let scenario = |name: &str, file: &str| ScenarioRef {
            name: name.to_string(),
            file: file.to_string(),
            sha256: "ff".repeat(32),
            source_path: format!("{name}.toml"),
        };
        Canary {
            verdict,
            base: scenario("small", "base.toml"),
            candidate: scenario("pricey", "candidate.toml"),
            binary: None,
            rules: CanaryRules::default(),
            seeds,
        }
    }

    fn section<'a>(md: &'a str, heading: &str, next: &str) -> &'a str {
        let start = md.find(heading).unwrap_or_else(|| panic!("no {heading}:\n{md}"));
        let end = md[start..].find(next).map_or(md.len(), |e| start + e);
        &md[start..end]
    }

    #[test]
    fn a_rollback_names_the_tipping_seed_its_finding_and_its_repro() {
        let rollback = finding("spend_micro_usd", Effect::Rollback, "spend_micro_usd 100 -> 210 (+110.0 %)");
        let condition = finding("fast_p99_ms", Effect::Condition, "fast_p99_ms 100 -> 107 (+7.0 %)");
        let calm = finding("spend_micro_usd", Effect::Promote, "spend_micro_usd 100 -> 101 (+1.0 %)");
        let canary = canary(
            CanaryVerdict::Rollback,
            vec![
                seed(7, Effect::Rollback, vec![condition, rollback]),
                seed(8, Effect::Promote, vec![calm]),
                seed(9, Effect::Promote, Vec::new()),
            ],
        );
        let md = canary_markdown(&canary);
        assert!(md.starts_with("# Canary: pricey against small\n\n**Verdict: ROLLBACK**\n"), "{md}");
        assert!(md.contains("- Seeds: 7..9 (3 seeds)"), "{md}");
        let why = section(&md, "## Why", "## Rules");
        let rollback_line = "- seed 7: measure spend_micro_usd: spend_micro_usd 100 -> 210 (+110.0 %) (rollback; \
                             limit: lower better; rollback beyond 10.0 % worse, condition beyond 5.0 %)";
        let at_rollback = why.find(rollback_line).unwrap_or_else(|| panic!("{why}"));
        let at_condition = why.find("- seed 7: measure fast_p99_ms:").unwrap_or_else(|| panic!("{why}"));
        assert!(at_rollback < at_condition, "rollback findings first: {why}");
        assert!(why.contains("```sh\ncargo sim shadow base.toml pricey.toml --seed 7\n```"), "{why}");
        assert!(!why.contains("--seed 8") && !why.contains("seed 8:"), "seed 8 did not tip it: {why}");
        let rules = section(&md, "## Rules", "## Seeds");
        let criteria = "rollback_fast_path, rollback_freshness, rollback_safety and lipschitz_bound";
        assert!(rules.contains(criteria), "{rules}");
        assert!(rules.contains("| spend_micro_usd | lower | 10.0 % worse | 5.0 % worse |"), "{rules}");
        let seeds = section(&md, "## Seeds", "\u{0}");
        assert!(seeds.contains("### Seed 8"), "{seeds}");
        assert!(seeds.contains("base 1212121212121212 (600 events), candidate 3434343434343434"), "{seeds}");
        assert!(!seeds.contains("12121212121212121"), "16 hex digits only: {seeds}");
        assert!(seeds.contains("| measure | spend_micro_usd | 100 | 210 | lower better; rollback beyond"), "{seeds}");
        assert!(seeds.contains("No rule applies."), "seed 9 has no finding: {seeds}");
        assert!(seeds.contains("`cargo sim shadow base.toml pricey.toml --seed 8`"), "{seeds}");
    }

    #[test]
    fn a_promotion_says_every_rule_holds() {
        let calm = finding("spend_micro_usd", Effect::Promote, "spend_micro_usd 100 -> 100 (0.0 %)");
        let mut canary = canary(CanaryVerdict::Promote, vec![seed(1, Effect::Promote, vec![calm])]);
        canary.binary = Some(crate::shadow::BinaryRef { path: "old/seedcore".into(), sha256: "aa".repeat(32) });
        let md = canary_markdown(&canary);
        assert!(md.contains("**Verdict: PROMOTE**\n"), "{md}");
        let why = section(&md, "## Why", "## Rules");
        assert!(why.contains("Every rule holds on every seed.") && !why.contains("```"), "{why}");
        assert!(md.contains(&format!("- Candidate build: old/seedcore (SHA-256 {})", "aa".repeat(32))), "{md}");
    }

    #[test]
    fn conditions_list_the_conditions_of_the_tipping_seed() {
        let condition = finding("fast_p99_ms", Effect::Condition, "fast_p99_ms 100 -> 107 (+7.0 %)");
        let canary = canary(
            CanaryVerdict::PromoteWithConditions,
            vec![seed(2, Effect::Promote, Vec::new()), seed(3, Effect::Condition, vec![condition])],
        );
        let md = canary_markdown(&canary);
        assert!(md.contains("**Verdict: PROMOTE WITH CONDITIONS**"), "{md}");
        let why = section(&md, "## Why", "## Rules");
        assert!(why.contains("1 of 2 seeds tipped the verdict (effect condition"), "{why}");
        assert!(why.contains("- seed 3: measure fast_p99_ms:") && why.contains("--seed 3\n```"), "{why}");
        assert!(!why.contains("--seed 2"), "{why}");
    }

    #[test]
    fn helpers() {
        assert_eq!(md_escape("spend_micro_usd 100 -> 210 | _x_ <b>"), "spend_micro_usd 100 -> 210 \\| \\_x\\_ \\<b>");
        assert_eq!(md_escape("# not a heading"), "\\# not a heading");
        assert_eq!(seed_ranges(&[1, 2, 3, 7, 9, 10]), "1..3, 7, 9..10");
        assert_eq!(seed_ranges(&[]), "none");
        assert_eq!(code_span("a `b`"), "`` a `b` ``");
        assert_eq!(nice_step(0.0, 4.0), 1.0);
        assert_eq!(nice_step(100.0, 4.0), 50.0);
        assert_eq!(ticks(0.0, 1.0, 0.25).len(), 5);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(decimals(0.5), 1);
        assert_eq!(decimals(2.0), 0);
        let mut out = String::new();
        fenced(&mut out, "json", &["a ``` b".to_string()]);
        assert!(out.starts_with("````json\n") && out.ends_with("````\n\n"), "{out}");
    }
}
