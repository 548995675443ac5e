//! Shadow and canary as a user runs them (docs/certification.md 8.9): two engine versions
//! on the same seed and arrivals, every difference caused by the change; a canary judged
//! by explicit rules, signed, and recomputed by `verify`. Each command runs in a temporary
//! working directory, so the default `out/` paths are the ones a user gets.

use crate::support::SMALL;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Desk {
    dir: tempfile::TempDir,
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

impl Desk {
    fn new() -> Desk {
        Desk { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path(relative);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The Azure hour's scenario, its trace named by absolute path so the copy runs here.
    fn azure(&self, name: &str, extra: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let source = std::fs::read_to_string(dir.join("azure-conv.toml")).unwrap();
        let trace = dir.join("traces/azure-llm-conv-2023-11-16-1h.csv");
        let source = source
            .replace("\"traces/azure-llm-conv-2023-11-16-1h.csv\"", &format!("{:?}", trace.display().to_string()));
        assert!(source.contains(&trace.display().to_string()), "the trace line was rewritten");
        self.write(name, &format!("{source}\n{extra}"))
    }

    fn expect(&self, code: i32, args: &[&str]) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the seedcore binary runs");
        let all = text(&output);
        assert_eq!(output.status.code(), Some(code), "seedcore {}:\n{all}", args.join(" "));
        all
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Azure hour against an identical copy: not one task differs, the event logs are the
/// same bytes; against `tau_deep = 0.45`, the changed decisions are listed and explained.
#[test]
fn shadow_of_the_azure_hour_finds_nothing_in_a_copy_and_every_change_of_tau_deep() {
    let desk = Desk::new();
    desk.azure("base.toml", "");
    desk.azure("copy.toml", "");
    desk.azure("tau.toml", "[engine.router]\ntau_deep = 0.45\n");
    let out = desk.expect(0, &["shadow", "base.toml", "copy.toml"]);
    assert!(out.contains("19366 tasks, 0 differ (0 decided differently)"), "{out}");
    let dir = desk.path("out/shadow/azure-conv-vs-azure-conv-7");
    assert_eq!(read(&dir.join("diff.csv")).lines().count(), 1, "the header only");
    assert_eq!(read(&dir.join("base/events.jsonl")), read(&dir.join("candidate/events.jsonl")));
    let md = read(&dir.join("shadow.md"));
    assert!(md.contains("0 tasks differ"), "{md}");

    let out = desk.expect(0, &["shadow", "base.toml", "tau.toml", "--out", "tau"]);
    let dir = desk.path("tau");
    let diff = read(&dir.join("diff.csv"));
    let rows: Vec<&str> = diff.lines().skip(1).collect();
    assert!(!rows.is_empty(), "{out}");
    // A lower tau_deep escalates more: some fast decisions become deep, for surprise.
    assert!(rows.iter().any(|r| r.contains(",fast,deep,fast,surprise,")), "{diff}");
    assert!(out.contains("fast -> deep") || out.contains("fast ->"), "{out}");
    assert!(out.contains("first divergence: task "), "{out}");
    let md = read(&dir.join("shadow.md"));
    for section in ["## Decisions", "## First divergence", "## Measures", "## Invariants"] {
        assert!(md.contains(section), "{section}: {md}");
    }
    let html = read(&dir.join("shadow.html"));
    assert_eq!(html.matches("<svg").count(), 3, "both fast-ratio curves, both spend curves, the differences");
}

/// Two scenarios of different arrivals are not a shadow: a usage error naming what differs,
/// and nothing written.
#[test]
fn different_arrivals_are_a_usage_error_naming_the_key() {
    let desk = Desk::new();
    desk.write("a.toml", SMALL);
    desk.write("b.toml", &SMALL.replace("rate_per_s = 5.0", "rate_per_s = 6.0"));
    let out = desk.expect(2, &["shadow", "a.toml", "b.toml"]);
    assert!(out.contains("workload.rate_per_s") && out.contains("arrivals"), "{out}");
    assert!(!desk.path("out").exists(), "nothing is written");
}

/// Another build as the candidate (`--candidate-bin`: here this very binary) reads back
/// the same event log as the run in this process.
#[test]
fn a_candidate_run_by_another_build_is_read_back() {
    let desk = Desk::new();
    desk.write("a.toml", SMALL);
    let out = desk
        .expect(0, &["shadow", "a.toml", "a.toml", "--candidate-bin", env!("CARGO_BIN_EXE_seedcore"), "--out", "s"]);
    assert!(out.contains("600 tasks, 0 differ") || out.contains(" 0 differ (0 decided"), "{out}");
    let dir = desk.path("s");
    assert_eq!(read(&dir.join("base/events.jsonl")), read(&dir.join("candidate/events.jsonl")));
    let bad = desk.expect(3, &["shadow", "a.toml", "a.toml", "--candidate-bin", "/bin/false", "--out", "t"]);
    assert!(bad.contains("--candidate-bin /bin/false"), "{bad}");
}

/// A live capture shadowed: the base replays the live decisions, the candidate shows
/// what it would have decided on the same traffic.
#[test]
fn a_live_capture_is_shadowed() {
    let desk = Desk::new();
    let base = "name = \"live\"\nduration = \"1s\"\n[workload]\nsource = \"generated\"\nrate_per_s = 1.0\n";
    desk.write("live.toml", base);
    desk.write("tau.toml", &format!("{base}[engine.router]\ntau_deep = 0.3\n"));
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-capture-azure.csv");
    let out =
        desk.expect(0, &["shadow", "live.toml", "tau.toml", "--capture", capture.to_str().unwrap(), "--out", "c"]);
    assert!(out.contains("capture ") && out.contains("of 2000 tasks as the live engine did"), "{out}");
    let rows = read(&desk.path("c/diff.csv")).lines().count() - 1;
    assert!(rows > 0, "a much lower tau_deep changes decisions: {out}");
}

/// The canary rules: an identical candidate is PROMOTE; one whose deep path costs twice as
/// much is ROLLBACK naming the measure, with the command that shows the seed that tipped it.
/// `verify` accepts both bundles, and rejects a verdict edited and signed again.
#[test]
fn a_canary_promotes_a_copy_rolls_back_doubled_deep_prices_and_verify_recomputes_it() {
    let desk = Desk::new();
    desk.expect(0, &["keygen", "k.key"]);
    desk.write("base.toml", SMALL);
    desk.write("same.toml", SMALL);
    desk.write("pricey.toml", &format!("{SMALL}\n[engine.prices]\ndeep_in = 20000\ndeep_out = 60000\n"));

    let out = desk.expect(0, &["canary", "base.toml", "same.toml", "--seeds", "1..3", "--jobs", "2", "--key", "k.key"]);
    assert!(out.contains("PROMOTE "), "{out}");
    let promote = desk.path("out/canary/small-vs-small-1..3");
    assert!(read(&promote.join("canary.md")).contains("**Verdict: PROMOTE**"));
    let verified = desk.expect(0, &["verify", promote.to_str().unwrap(), "--pubkey", "k.pub"]);
    assert!(verified.contains("VERIFIED") && verified.contains("canary PROMOTE"), "{verified}");

    let out =
        desk.expect(1, &["canary", "base.toml", "pricey.toml", "--seeds", "1..3", "--key", "k.key", "--out", "pricey"]);
    assert!(out.contains("ROLLBACK ") && out.contains("spend_micro_usd"), "{out}");
    assert!(out.contains("reproduce seed 1: cargo sim shadow base.toml pricey.toml --seed 1"), "{out}");
    let dir = desk.path("pricey");
    let statement = json(&dir.join("statement.json"));
    assert_eq!(statement["predicateType"], "https://seedcore.dev/attestations/canary/v1");
    assert_eq!(statement["predicate"]["verdict"], "ROLLBACK");
    let seeds = statement["predicate"]["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 3);
    assert!(seeds.iter().all(|s| s["base"]["merkle_root"].as_str().unwrap().len() == 64));
    desk.expect(0, &["verify", "pricey", "--pubkey", "k.pub"]);

    // The verdict edited to PROMOTE and signed again with the trusted key.
    let mut edited = statement.clone();
    edited["predicate"]["verdict"] = "PROMOTE".into();
    let key = seedcore_reports::keys::read_signing_key(&desk.path("k.key")).unwrap();
    let payload = seedcore_reports::jcs::canonical(&edited).unwrap();
    let envelope = seedcore_reports::dsse::sign(seedcore_reports::dsse::IN_TOTO, &payload, &key);
    let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap();
    bytes.push(b'\n');
    std::fs::write(dir.join("canary.dsse.json"), bytes).unwrap();
    std::fs::write(dir.join("statement.json"), seedcore_reports::statement::pretty(&edited)).unwrap();
    let rejected = desk.expect(4, &["verify", "pricey", "--pubkey", "k.pub"]);
    assert!(rejected.contains("REJECTED") && rejected.contains("verdict"), "{rejected}");

    // A bundled event log edited: its digest no longer matches.
    let log = promote.join("runs/2/candidate/events.jsonl");
    let mut lines = read(&log);
    let last = lines.lines().last().unwrap().to_owned();
    lines.push_str(&last);
    lines.push('\n');
    std::fs::write(&log, lines).unwrap();
    let rejected = desk.expect(4, &["verify", promote.to_str().unwrap(), "--pubkey", "k.pub"]);
    assert!(rejected.contains("runs/2/candidate/events.jsonl"), "{rejected}");
}

/// A `[canary]` table names its measures; an unknown one is a usage error naming the key.
#[test]
fn the_canary_table_sets_measures_and_refuses_unknown_ones() {
    let desk = Desk::new();
    desk.write("base.toml", SMALL);
    desk.write("bad.toml", &format!("{SMALL}\n[canary.measure.speed]\ntolerance = 0.1\n"));
    let out = desk.expect(2, &["canary", "base.toml", "bad.toml", "--seeds", "1"]);
    assert!(out.contains("canary.measure.speed") && out.contains("unknown measure"), "{out}");
    // Only the fast path's p99 judged, with no tolerance at all: a faster fast path still
    // promotes; the spend measure is not judged.
    desk.write(
        "strict.toml",
        &format!(
            "{SMALL}\n[engine.prices]\ndeep_in = 20000\n[canary.measure.fast_p99_ms]\ntolerance = 0.0\nwarn = 0.0\n"
        ),
    );
    let out = desk.expect(0, &["canary", "base.toml", "strict.toml", "--seeds", "1"]);
    assert!(out.contains("PROMOTE ") && !out.contains("spend_micro_usd"), "{out}");
}
