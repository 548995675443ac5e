//! The page rendered from a hand-built fleet (what each section shows, escaped, with no
//! external URL), the trend values read from stated observations, and the scan and
//! verification over real directories in a temporary directory.

use super::svg::leading_number;
use super::*;
use crate::certify::file_sha256;
use crate::keys::Keyring;
use seedcore_sim::campaign::{CampaignInfo, SeedLine, SeedRange};

const T1: i64 = 1_796_554_923; // 2026-12-06T11:02:03Z
const T2: i64 = T1 + 3_600;

fn row(id: &str, verdict: &str, observed: &str, critical: bool) -> InvariantRow {
    InvariantRow {
        id: id.into(),
        critical,
        verdict: verdict.into(),
        observed: observed.into(),
        threshold: "<= limit".into(),
        value: String::new(),
        rule: "<=".into(),
        limit: String::new(),
        unit: "unit".into(),
        weight: "1".into(),
        detail: String::new(),
    }
}

/// A PASS of `azure-conv` at `T1` with every plotted measure, one replay matching.
fn certification(scenario: &str, seed: &str, unix: i64) -> Certification {
    Certification {
        dir: format!("out/{scenario}-{seed}"),
        href: Some(format!("../out/{scenario}-{seed}/report.html")),
        stamp: Some(Stamp { unix, logged: true }),
        scenario: scenario.into(),
        seed: seed.into(),
        outcome: "PASS".into(),
        score: "100.00".into(),
        key_id: "f64808fc7d32b4405569935f345c98e76aadb465ac5c2af88deff84a2314b7c9".into(),
        development_key: true,
        invariants: vec![
            row("fast_path_ratio", "pass", "0.9652", true),
            row("determinism", "pass", "1/1 replays", true),
            row("daily_budget", "pass", "27102949 micro-USD", true),
            row("fast_latency_p99", "pass", "194 ms", false),
            row("deep_latency_p99", "pass", "19215 ms", false),
            row("recovery_time", "skipped", "no fault", false),
        ],
        replays: 1,
        replays_matching: 1,
        policy_changes: Vec::new(),
    }
}

/// Two scenarios (`azure-conv` twice, the later with conditions and a loosened policy;
/// `chaos-swarm` once, failing), a bundle that does not verify, a campaign with a failing
/// seed, and a log entry whose bundle is gone.
fn fleet() -> Fleet {
    let first = certification("azure-conv", "7", T1);
    let mut later = certification("azure-conv", "8", T2);
    later.outcome = "PASS WITH CONDITIONS".into();
    later.score = "87.50".into();
    later.invariants[3] = row("fast_latency_p99", "warn", "212 ms", false);
    later.policy_changes = vec![PolicyChange {
        invariant: "fast_path_ratio".into(),
        setting: "threshold".into(),
        default: "0.90".into(),
        value: "0.80".into(),
        effect: "loosened".into(),
    }];
    let mut chaos = certification("chaos-swarm", "3", T1);
    chaos.outcome = "FAIL".into();
    chaos.score = "40.00".into();
    chaos.invariants =
        vec![row("fast_path_ratio", "fail", "0.7120", true), row("determinism", "fail", "2/3 replays", true)];
    (chaos.replays, chaos.replays_matching) = (3, 2);
    let bad = BadBundle {
        dir: "out/<evil>&1".into(),
        href: None,
        stamp: Some(Stamp { unix: T2, logged: false }),
        scenario: Some("azure-conv".into()),
        seed: Some("9".into()),
        reason: "rejected: events.jsonl: digest <mismatch> & more".into(),
    };
    Fleet {
        generated: "2026-12-06T12:00:00Z".into(),
        certifications: vec![first, chaos, later],
        bad_bundles: vec![bad],
        campaigns: vec![campaign()],
        logs: vec![LogSummary { dir: "out/log".into(), entries: 4 }],
        log_problems: vec![LogProblem {
            log: "out/log".into(),
            entry: Some(entry(3, "../gone", "ab")),
            problem: "listed in the log, bundle missing".into(),
        }],
        unreadable: Vec::new(),
    }
}

fn campaign() -> Campaign {
    Campaign {
        dir: "out/campaign".into(),
        scenario: Some("chaos-swarm".into()),
        range: Some("40..42".into()),
        summary_href: Some("../out/campaign/summary.md".into()),
        seeds: Ok(CampaignSeeds {
            seeds: 3,
            by_outcome: BTreeMap::from([("FAIL".to_string(), 1), ("PASS".to_string(), 2)]),
            failing: vec![FailingSeed {
                seed: 42,
                outcome: "FAIL".into(),
                failed: vec!["fast_path_ratio".into()],
                critical: true,
                repro: Some("cargo sim replay scenarios/chaos-swarm.toml --seed 42".into()),
            }],
            failing_total: 1,
        }),
    }
}

fn entry(index: u64, bundle: &str, envelope_sha256: &str) -> Entry {
    Entry {
        index,
        time: clock::format(T1),
        scenario: "azure-conv".into(),
        scenario_sha256: "cd".repeat(32),
        seed: "7".into(),
        outcome: "PASS".into(),
        score: "100.00".into(),
        key_id: "ef".repeat(32),
        envelope_sha256: envelope_sha256.into(),
        bundle: bundle.into(),
        build_sha256: "01".repeat(32),
    }
}

#[test]
fn the_page_shows_every_section_of_a_fleet() {
    let html = render(&fleet());
    // One latest row per scenario: azure-conv's later certification, chaos-swarm's only one.
    assert_eq!(html.matches("<tr class=\"latest\">").count(), 2);
    assert!(html.contains(
        "<tr class=\"latest\"><td>azure-conv</td><td class=\"o-conditions\">PASS WITH CONDITIONS</td><td>87.50</td>"
    ));
    assert!(html.contains("<tr class=\"latest\"><td>chaos-swarm</td><td class=\"o-fail\">FAIL</td>"));
    assert!(html.contains("<td>f64808fc7d32b440 (development)</td><td>2</td>"));
    assert!(html.contains("<a href=\"../out/azure-conv-8/report.html\">report.html</a>"));
    // A plot per trend: azure-conv's score and four measures, chaos-swarm's score and ratio.
    assert_eq!(html.matches("<svg").count(), 7);
    assert_eq!(html.matches("<svg class=\"trend\"").count(), 7);
    // The rates with their counts.
    assert!(html.contains("<td class=\"rate\">66.7 %</td><td>2 of 3 verified certifications</td>"));
    assert!(html.contains("<td class=\"rate\">80.0 %</td><td>4 of 5 replays</td>"));
    assert!(html.contains("<td class=\"rate\">75.0 %</td><td>3 of 4 bundles verify</td>"));
    for section in ["Latest outcome per scenario", "Trends", "Rates", "Deviations", "Campaigns", "All certifications"] {
        assert!(html.contains(&format!("<h2>{section}</h2>")), "no {section} section");
    }
}

#[test]
fn the_page_lists_deviations_escaped_and_links_nothing_outside() {
    let html = render(&fleet());
    // Deviations: the warning, the critical failures, the loosened policy as a banner row,
    // the bad bundle with its reason, the missing bundle; not the non-critical skip.
    assert!(html.contains("<td>fast_latency_p99</td><td class=\"verdict v-warn\">warn</td><td>212 ms</td>"));
    assert!(html.contains("<td>determinism</td><td class=\"verdict v-fail\">fail</td><td>2/3 replays</td>"));
    assert!(!html.contains("<td>recovery_time</td>"));
    assert!(html.contains("Not listed: 2 non-critical verdicts"));
    assert!(html.contains("<tr class=\"policy loosened\"><td>azure-conv</td><td>8</td>"));
    assert!(html.contains("<p class=\"banner\"><strong>Policy:</strong> 1 setting(s)"));
    assert!(html.contains("listed in the log, bundle missing"));
    // Three verdicts, one policy change, one bad bundle, one log entry.
    assert_eq!(fleet().deviations(), 3 + 1 + 1 + 1);
    // Text from files is escaped.
    assert!(html.contains("out/&lt;evil&gt;&amp;1"));
    assert!(html.contains("digest &lt;mismatch&gt; &amp; more"));
    assert!(!html.contains("<evil>") && !html.contains("<mismatch>"));
    assert!(html.contains(&format!("{} (file time, not in a log)", clock::format(T2))));
    // The campaign's failing seed with its repro command.
    assert!(html.contains("<code>cargo sim replay scenarios/chaos-swarm.toml --seed 42</code>"));
    assert!(html.contains("<p>3 seeds run: 1 FAIL, 2 PASS.</p>"));
    // Nothing outside the page and the bundles.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("src=") && !html.contains("<script"));
    let tally = fleet().tally();
    assert!(tally.starts_with("4 bundles (3 verified, 1 rejected) of 2 scenarios, 1 campaigns (3 seeds)"), "{tally}");
}

#[test]
fn trend_values_are_the_leading_numbers_of_the_observations() {
    assert_eq!(leading_number("87 ms"), Some(87.0));
    assert_eq!(leading_number("0.9412"), Some(0.9412));
    assert_eq!(leading_number("27102949 micro-USD"), Some(27_102_949.0));
    assert_eq!(leading_number("  -2.5 per day"), Some(-2.5));
    assert_eq!(leading_number("1.5.2"), Some(1.5));
    assert_eq!(leading_number("summary 93/100 on day 19677"), None);
    assert_eq!(leading_number("no fault"), None);
    assert_eq!(leading_number("-"), None);
    assert_eq!(leading_number(""), None);
}

/// Writes `text` at `path`, creating its directory.
fn put(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a file in a directory")).expect("create the directory");
    std::fs::write(path, text).expect("write the file");
}

/// A tree with a bundle (not a real one), a hidden one and one too deep, a campaign with a
/// failing seed and a log naming the bundle and a missing one.
fn tree(root: &Path) {
    put(&root.join("out/a/certificate.dsse.json"), "{}\n");
    put(&root.join("out/a/report.html"), "<p>report</p>\n");
    put(&root.join("out/.hidden/b/certificate.dsse.json"), "{}\n");
    put(&root.join("1/2/3/4/5/6/7/certificate.dsse.json"), "{}\n");
    let info = CampaignInfo {
        scenario: "scenarios/x.toml".into(),
        scenario_name: "x".into(),
        scenario_sha256: "ab".repeat(32),
        seeds: SeedRange { first: 1, last: 2 },
        shard: None,
        swarm: false,
    };
    put(&root.join("camp/campaign.json"), &serde_json::to_string(&info).expect("serialises"));
    let line = |seed: u64, failed: &[&str], outcome: &str| SeedLine {
        failed: failed.iter().map(|s| s.to_string()).collect(),
        fault_plan: "00".into(),
        faults: 0,
        outcome: outcome.into(),
        root: "11".into(),
        score: "10000".into(),
        seed,
        wall_ms: 5,
    };
    let lines = [line(1, &[], "PASS"), line(2, &["fast_path_ratio"], "FAIL")];
    let text: Vec<String> = lines.iter().map(|l| serde_json::to_string(l).expect("serialises")).collect();
    put(&root.join("camp/campaign.jsonl"), &(text.join("\n") + "\n"));
    let sha = file_sha256(&root.join("out/a/certificate.dsse.json")).expect("hash the certificate");
    let entries = [entry(0, "../out/a", &sha), entry(1, "../gone", "ab")];
    let text: Vec<String> = entries.iter().map(|e| serde_json::to_string(e).expect("serialises")).collect();
    put(&root.join("log/entries.jsonl"), &(text.join("\n") + "\n"));
}

#[test]
fn the_scan_finds_bundles_campaigns_and_logs_and_the_site_lists_them() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = dir.path();
    tree(root);
    let scan = scan(&[root.to_path_buf()]).expect("the directory scans");
    // The hidden bundle and the one seven levels down are not read.
    assert_eq!(scan.bundles, [root.join("out/a")]);
    assert_eq!(scan.campaigns, [root.join("camp")]);
    assert_eq!(scan.logs.len(), 1);

    let site = root.join("site");
    create_site(&site).expect("the site directory");
    let mut verified = 0;
    let fleet = verify_all(&scan, &Keyring::default(), &site, || verified += 1);
    assert_eq!(verified, 1);
    // Not a DSSE envelope: listed with its reason, stamped with its log entry's time.
    assert!(fleet.certifications.is_empty());
    let bad = &fleet.bad_bundles[0];
    assert!(bad.reason.contains("not a DSSE envelope"), "{}", bad.reason);
    assert_eq!(bad.stamp, Some(Stamp { unix: T1, logged: true }));
    assert_eq!(bad.href.as_deref(), Some("../out/a/report.html"));
    let seeds = fleet.campaigns[0].seeds.as_ref().expect("the campaign reads");
    assert_eq!((seeds.seeds, seeds.failing_total), (2, 1));
    assert_eq!(seeds.failing[0].repro.as_deref(), Some("cargo sim replay scenarios/x.toml --seed 2"));
    assert_eq!(fleet.log_problems.len(), 1);
    assert_eq!(fleet.log_problems[0].problem, "listed in the log, bundle missing");

    let index = write_site(&fleet, &site).expect("the page is written");
    assert_eq!(index, site.join(INDEX));
    let html = std::fs::read_to_string(index).expect("read the page");
    assert!(html.contains("<h2>Deviations</h2>") && html.contains("not a DSSE envelope"));
    assert!(!site.join("index.html.partial").exists());
}

#[test]
fn the_scan_refuses_a_missing_directory_and_reports_an_empty_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    assert!(scan(&[dir.path().join("nothing")]).is_err());
    let empty = scan(&[dir.path().to_path_buf()]).expect("an empty directory scans");
    assert!(empty.is_empty());
}
