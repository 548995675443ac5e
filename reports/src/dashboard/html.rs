//! The page, in order: the header with what was read, the latest outcome per scenario, the
//! trends, the rates, the deviations, the campaigns (when there are any) and every bundle.
//! Every figure comes from the [`Fleet`]'s own methods (`rates`, `by_scenario`, the
//! deviations), which the command's tally line reads too.

use super::svg::{leading_number, plot, Trend, TrendPoint};
use super::{escape, percent, stamp_text, BadBundle, Campaign, Certification, Fleet, LogProblem, Stamp};
use crate::certify::parse_score;
use crate::clock;
use seedcore_sim::invariant_id::InvariantId;
use seedcore_sim::score::{Outcome, PASS_SCORE};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The measures plotted per scenario besides the score, from the invariants' observed values.
const MEASURES: [(InvariantId, &str); 4] = [
    (InvariantId::FastPathRatio, "fast-path ratio"),
    (InvariantId::FastLatencyP99, "fast p99 latency"),
    (InvariantId::DeepLatencyP99, "deep p99 latency"),
    (InvariantId::DailyBudget, "top daily spend"),
];

/// Verified certifications by scenario, each in time order.
type Groups<'a> = BTreeMap<&'a str, Vec<&'a Certification>>;

const STYLE: &str = "body { font-family: system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; } td { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
td.o-pass, td.o-conditions, td.o-fail, td.o-bad, td.o-other, td.verdict { font-weight: bold; }
td.o-pass { background: #c8e6c9; color: #1b5e20; } td.o-conditions { background: #ffe0a3; color: #7a4f00; }
td.o-fail, td.o-bad { background: #f5b5b5; color: #8e0000; } td.o-other { background: #e6e6e6; color: #555; }
td.v-warn { background: #ffe0a3; color: #7a4f00; } td.v-fail { background: #f5b5b5; color: #8e0000; }
td.v-skipped { background: #e6e6e6; color: #555; } td.rate { font-weight: bold; font-size: 1.1em; }
tr.policy td { background: #fff3d6; border-top: 2px solid #e0a100; border-bottom: 2px solid #e0a100; font-weight: bold; }
.banner { background: #fff3d6; border-left: 6px solid #e0a100; padding: 0.6em 1em; }
.counts { color: #444; } .none { color: #1b5e20; } .bad { color: #8e0000; }
.trends { display: flex; flex-wrap: wrap; gap: 0.6em; }
svg.trend { background: #fff; border: 1px solid #ddd; }
";

/// The whole page.
pub fn render(fleet: &Fleet) -> String {
    let groups = fleet.by_scenario();
    let mut out = String::with_capacity(64 << 10);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>seedcore fleet dashboard</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n"
    );
    header(&mut out, fleet, &groups);
    latest_section(&mut out, &groups);
    trends_section(&mut out, &groups);
    rates_section(&mut out, fleet);
    deviations_section(&mut out, fleet);
    campaigns_section(&mut out, &fleet.campaigns);
    all_section(&mut out, fleet);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, fleet: &Fleet, groups: &Groups<'_>) {
    let rates = fleet.rates();
    let (campaigns, logs, rejected) = (fleet.campaigns.len(), fleet.logs.len(), fleet.bad_bundles.len());
    let _ = writeln!(out, "<h1>seedcore fleet dashboard</h1>");
    let _ = writeln!(
        out,
        "<p class=\"counts\">Generated {}. Read <span id=\"n-bundles\">{}</span> bundles (<span id=\"n-verified\">{}</span> \
         verified, <span id=\"n-rejected\">{rejected}</span> rejected) of <span id=\"n-scenarios\">{}</span> scenarios; \
         campaigns: <span id=\"n-campaigns\">{campaigns}</span>; certification logs: <span \
         id=\"n-logs\">{logs}</span>.</p>",
        escape(&fleet.generated),
        rates.bundles,
        rates.verified,
        groups.len()
    );
    if !fleet.logs.is_empty() {
        let listed: Vec<String> = fleet.logs.iter().map(|l| format!("{} ({} entries)", l.dir, l.entries)).collect();
        let _ = writeln!(out, "<p class=\"counts\">Certification logs: {}.</p>", escape(&listed.join(", ")));
    }
    let _ = writeln!(
        out,
        "<p class=\"counts\">A bundle counts only if it verifies (signature, digests, event log, every invariant \
         recomputed). Times are the certification log's; a bundle no log lists shows its certificate file's time.</p>"
    );
}

fn latest_section(out: &mut String, groups: &Groups<'_>) {
    open_section(out, "latest", "Latest outcome per scenario");
    if groups.is_empty() {
        out.push_str("<p>No verified certification.</p>\n</section>\n");
        return;
    }
    table_head(out, &["scenario", "outcome", "score", "seed", "time", "key id", "certifications", "report"]);
    for (scenario, certifications) in groups {
        let latest = certifications.last().expect("a scenario is listed with its certifications");
        let _ = writeln!(
            out,
            "<tr class=\"latest\"><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(scenario),
            outcome_cell(&latest.outcome),
            escape(&latest.score),
            escape(&latest.seed),
            escape(&stamp_text(latest.stamp)),
            escape(&key_text(&latest.key_id, latest.development_key)),
            certifications.len(),
            report_link(latest.href.as_deref())
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn trends_section(out: &mut String, groups: &Groups<'_>) {
    open_section(out, "trends", "Trends");
    if groups.is_empty() {
        out.push_str("<p>No verified certification to plot.</p>\n</section>\n");
        return;
    }
    out.push_str("<p>One point per verified certification, in time order (a point's tooltip gives its time, seed and value).</p>\n");
    for (scenario, certifications) in groups {
        let _ = writeln!(out, "<h3>{}</h3>\n<div class=\"trends\">", escape(scenario));
        for trend in scenario_trends(certifications) {
            out.push_str(&plot(&trend));
        }
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");
}

/// The score's trend, then each measure's that the certifications state as a number; a
/// measure none of them states is left out.
fn scenario_trends(certifications: &[&Certification]) -> Vec<Trend> {
    let score = Trend {
        title: format!("score (PASS from {})", PASS_SCORE / 100),
        unit: "score out of 100".to_string(),
        points: certifications
            .iter()
            .filter_map(|c| Some(point(c, f64::from(parse_score(&c.score)?) / 100.0, &c.score)))
            .collect(),
    };
    let measures = MEASURES.into_iter().filter_map(|(id, title)| measure_trend(certifications, id.as_str(), title));
    std::iter::once(score).chain(measures).filter(|trend| !trend.points.is_empty()).collect()
}

/// One invariant's observed value over time, titled with its threshold (the latest's).
fn measure_trend(certifications: &[&Certification], id: &str, title: &str) -> Option<Trend> {
    let mut points = Vec::new();
    let mut latest = None;
    for certification in certifications {
        let Some(row) = certification.invariants.iter().find(|r| r.id == id) else { continue };
        let Some(value) = leading_number(&row.observed) else { continue };
        points.push(point(certification, value, &row.observed));
        latest = Some(row);
    }
    let row = latest?;
    // Short enough for the plot's width: `<= 500000000 micro-USD per day` loses its unit's tail.
    let threshold = row.threshold.replace(" micro-USD per day", " µUSD");
    Some(Trend { title: format!("{title} ({threshold})"), unit: row.unit.clone(), points })
}

fn point(certification: &Certification, value: f64, stated: &str) -> TrendPoint {
    TrendPoint {
        value,
        tip: format!("{}, seed {}: {stated}", stamp_text(certification.stamp), certification.seed),
        time: certification.stamp.map_or_else(|| "unknown time".to_string(), axis_time),
    }
}

/// A time for an axis, to the minute: `2026-12-06 11:02`.
fn axis_time(stamp: Stamp) -> String {
    let text = clock::format(stamp.unix);
    let minutes = text.get(..16).map(|minutes| minutes.replace('T', " "));
    minutes.unwrap_or(text)
}

fn rates_section(out: &mut String, fleet: &Fleet) {
    let r = fleet.rates();
    open_section(out, "rates", "Rates");
    table_head(out, &["rate", "share", "counts"]);
    let rows = [
        (
            "determinism verdict pass",
            percent(r.determinism_pass, r.verified),
            format!("{} of {} verified certifications", r.determinism_pass, r.verified),
        ),
        (
            "replay roots matching the reference",
            percent(r.replays_matching, r.replays),
            format!("{} of {} replays", r.replays_matching, r.replays),
        ),
        (
            "signature validation",
            percent(r.verified, r.bundles),
            format!("{} of {} bundles verify", r.verified, r.bundles),
        ),
    ];
    for (name, share, counts) in rows {
        let _ = writeln!(out, "<tr><th>{name}</th><td class=\"rate\">{share}</td><td>{counts}</td></tr>");
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn deviations_section(out: &mut String, fleet: &Fleet) {
    open_section(out, "deviations", "Deviations");
    if fleet.deviations() == 0 {
        out.push_str(
            "<p class=\"none\">None: no verdict of a verified certification warned or failed, no policy setting was \
             loosened, every bundle verified and every logged bundle is in place.</p>\n",
        );
    }
    let latest = fleet.latest_dirs();
    policy_rows(out, fleet, &latest);
    verdict_rows(out, fleet, &latest);
    bad_bundle_rows(out, &fleet.bad_bundles);
    log_problem_rows(out, &fleet.log_problems);
    for unreadable in &fleet.unreadable {
        let _ = writeln!(
            out,
            "<p class=\"bad\">Directory not read: {}: {}</p>",
            escape(&unreadable.path),
            escape(&unreadable.message)
        );
    }
    let skipped = fleet
        .certifications
        .iter()
        .flat_map(|c| &c.invariants)
        .filter(|r| r.verdict == "skipped" && !r.critical)
        .count();
    if skipped > 0 {
        let _ = writeln!(
            out,
            "<p class=\"counts\">Not listed: {skipped} non-critical verdicts with nothing to judge (skipped), such as \
             recovery_time in a run without faults.</p>"
        );
    }
    out.push_str("</section>\n");
}

/// Whether a certification is its scenario's latest.
fn which(certification: &Certification, latest: &BTreeSet<&str>) -> &'static str {
    if latest.contains(certification.dir.as_str()) {
        "latest"
    } else {
        "earlier"
    }
}

/// Policy settings that differ from the defaults other than by tightening, as a banner.
fn policy_rows(out: &mut String, fleet: &Fleet, latest: &BTreeSet<&str>) {
    let changes = fleet.policy_deviations();
    if changes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"banner\"><strong>Policy:</strong> {} setting(s) differ from the defaults of docs/certification.md \
         8.1 other than by tightening; those certifications were judged against them.</p>",
        changes.len()
    );
    out.push_str("<h3>Policy changes</h3>\n");
    table_head(
        out,
        &["scenario", "seed", "time", "certification", "invariant", "setting", "default", "value", "effect"],
    );
    for (c, change) in changes {
        let _ = writeln!(
            out,
            "<tr class=\"policy {}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&change.effect),
            escape(&c.scenario),
            escape(&c.seed),
            escape(&stamp_text(c.stamp)),
            which(c, latest),
            escape(&change.invariant),
            escape(&change.setting),
            escape(&change.default),
            escape(&change.value),
            escape(&change.effect)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// Every deviating verdict: the latest certifications' first, each part in time order.
fn verdict_rows(out: &mut String, fleet: &Fleet, latest: &BTreeSet<&str>) {
    let mut rows = fleet.invariant_deviations();
    if rows.is_empty() {
        return;
    }
    rows.sort_by_key(|(c, _)| !latest.contains(c.dir.as_str()));
    out.push_str("<h3>Invariant verdicts</h3>\n");
    table_head(
        out,
        &["scenario", "seed", "time", "certification", "invariant", "verdict", "observed", "threshold", "critical"],
    );
    for (c, row) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"verdict v-{}\">{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&c.scenario),
            escape(&c.seed),
            escape(&stamp_text(c.stamp)),
            which(c, latest),
            escape(&row.id),
            escape(&row.verdict),
            escape(&row.verdict),
            escape(&row.observed),
            escape(&row.threshold),
            if row.critical { "yes" } else { "no" }
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn bad_bundle_rows(out: &mut String, bad: &[BadBundle]) {
    if bad.is_empty() {
        return;
    }
    out.push_str("<h3>Bundles that do not verify</h3>\n");
    table_head(out, &["bundle", "scenario", "seed", "time", "reason", "report"]);
    for b in bad {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
            escape(&b.dir),
            escape(b.scenario.as_deref().unwrap_or("unknown")),
            escape(b.seed.as_deref().unwrap_or("?")),
            escape(&stamp_text(b.stamp)),
            escape(&b.reason),
            report_link(b.href.as_deref())
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn log_problem_rows(out: &mut String, problems: &[LogProblem]) {
    if problems.is_empty() {
        return;
    }
    out.push_str("<h3>Certification logs</h3>\n");
    table_head(out, &["log", "entry", "time", "scenario", "seed", "bundle", "problem"]);
    for p in problems {
        let (index, time, scenario, seed, bundle) = match &p.entry {
            Some(e) => (e.index.to_string(), e.time.as_str(), e.scenario.as_str(), e.seed.as_str(), e.bundle.as_str()),
            None => ("-".to_string(), "", "", "", ""),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{index}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
            escape(&p.log),
            escape(time),
            escape(scenario),
            escape(seed),
            escape(bundle),
            escape(&p.problem)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

fn campaigns_section(out: &mut String, campaigns: &[Campaign]) {
    if campaigns.is_empty() {
        return;
    }
    open_section(out, "campaigns", "Campaigns");
    for campaign in campaigns {
        campaign_part(out, campaign);
    }
    out.push_str("</section>\n");
}

/// One campaign: its seeds by outcome and its failing seeds with their repro commands.
fn campaign_part(out: &mut String, c: &Campaign) {
    let range = c.range.as_deref().map_or_else(String::new, |range| format!(", seeds {range}"));
    let summary = c
        .summary_href
        .as_deref()
        .map_or_else(String::new, |href| format!(" (<a href=\"{}\">summary.md</a>)", escape(href)));
    let _ = writeln!(
        out,
        "<h3>{}{}</h3>\n<p class=\"counts\">{}{summary}</p>",
        escape(c.scenario.as_deref().unwrap_or("campaign")),
        escape(&range),
        escape(&c.dir)
    );
    let seeds = match &c.seeds {
        Ok(seeds) => seeds,
        Err(reason) => {
            let _ = writeln!(out, "<p class=\"bad\">campaign.jsonl not read: {}</p>", escape(reason));
            return;
        }
    };
    let outcomes: Vec<String> = seeds.by_outcome.iter().map(|(outcome, n)| format!("{n} {outcome}")).collect();
    let _ = writeln!(out, "<p>{} seeds run: {}.</p>", seeds.seeds, escape(&outcomes.join(", ")));
    if seeds.failing.is_empty() {
        out.push_str("<p class=\"none\">No seed failed an invariant.</p>\n");
        return;
    }
    table_head(out, &["seed", "outcome", "failed", "critical", "reproduce"]);
    for f in &seeds.failing {
        let repro = f.repro.as_deref().map_or_else(
            || "(no campaign.json: the scenario file is unknown)".to_string(),
            |repro| format!("<code>{}</code>", escape(repro)),
        );
        let _ = writeln!(
            out,
            "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{repro}</td></tr>",
            f.seed,
            outcome_cell(&f.outcome),
            escape(&f.failed.join(", ")),
            if f.critical { "yes" } else { "no" }
        );
    }
    out.push_str("</tbody>\n</table>\n");
    let more = seeds.failing_total.saturating_sub(seeds.failing.len() as u64);
    if more > 0 {
        let _ = writeln!(out, "<p>... and {more} more failing seeds in campaign.jsonl.</p>");
    }
}

/// Every bundle, verified or not, in time order, with its report.
fn all_section(out: &mut String, fleet: &Fleet) {
    open_section(out, "all", "All certifications");
    let verified = fleet.certifications.iter().map(|c| {
        let cells = format!(
            "<td>{}</td>{}<td>{}</td><td>{}</td>",
            escape(&c.seed),
            outcome_cell(&c.outcome),
            escape(&c.score),
            escape(&key_text(&c.key_id, c.development_key))
        );
        (c.stamp, c.dir.as_str(), c.scenario.as_str(), cells, c.href.as_deref())
    });
    let rejected = fleet.bad_bundles.iter().map(|b| {
        let cells = format!(
            "<td>{}</td><td class=\"o-bad\">REJECTED</td><td>-</td><td>-</td>",
            escape(b.seed.as_deref().unwrap_or("?"))
        );
        (b.stamp, b.dir.as_str(), b.scenario.as_deref().unwrap_or("unknown"), cells, b.href.as_deref())
    });
    let mut rows: Vec<_> = verified.chain(rejected).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    table_head(out, &["time", "scenario", "seed", "outcome", "score", "key id", "bundle", "report"]);
    for (stamp, dir, scenario, cells, href) in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td>{cells}<td>{}</td><td>{}</td></tr>",
            escape(&stamp_text(stamp)),
            escape(scenario),
            escape(dir),
            report_link(href)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn open_section(out: &mut String, id: &str, title: &str) {
    let _ = writeln!(out, "<section id=\"{id}\">\n<h2>{title}</h2>");
}

fn table_head(out: &mut String, headers: &[&str]) {
    out.push_str("<table>\n<thead><tr>");
    for header in headers {
        let _ = write!(out, "<th>{header}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
}

/// An outcome as a coloured cell.
fn outcome_cell(outcome: &str) -> String {
    let class = match Outcome::parse(outcome) {
        Some(Outcome::Pass) => "o-pass",
        Some(Outcome::PassWithConditions) => "o-conditions",
        Some(Outcome::Fail) => "o-fail",
        None => "o-other",
    };
    format!("<td class=\"{class}\">{}</td>", escape(outcome))
}

/// The key id's first 16 hex digits, marked when it is the development key.
fn key_text(key_id: &str, development: bool) -> String {
    let short = key_id.get(..16).unwrap_or(key_id);
    if development {
        format!("{short} (development)")
    } else {
        short.to_string()
    }
}

fn report_link(href: Option<&str>) -> String {
    match href {
        Some(href) => format!("<a href=\"{}\">report.html</a>", escape(href)),
        None => "no report.html".to_string(),
    }
}
