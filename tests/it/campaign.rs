//! Campaigns, shards and the shrinker through the command line, as a user runs them.

use crate::support::{seedcore, write_scenario};
use seedcore_sim::campaign::{read_lines, SeedLine};
use std::path::Path;

/// Two minutes of steady load with a swarm of faults per seed.
const SWARM: &str = r#"
name = "small-swarm"
duration = "2m"
seed = 1

[topology]
fast = 2
deep = 1

[workload]
source = "generated"
rate_per_s = 8.0

[chaos.swarm]
max_faults = 4
max_for = "20s"
"#;

fn campaign(scenario: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let output = campaign_seeds(scenario, out, "1..6", extra);
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn lines(dir: &Path) -> Vec<SeedLine> {
    read_lines(&dir.join("campaign.jsonl")).unwrap().iter().map(SeedLine::without_wall_time).collect()
}

/// The same seeds give the same roots whatever the job count or the shard split.
#[test]
fn jobs_and_shards_give_the_same_lines() {
    let (dir, scenario) = write_scenario(SWARM);
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    let output = campaign(&scenario, &one, &["--jobs", "1"]);
    campaign(&scenario, &two, &["--jobs", "2"]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    campaign(&scenario, &a, &["--jobs", "2", "--shard", "1/2"]);
    campaign(&scenario, &b, &["--jobs", "1", "--shard", "2/2"]);
    let merged = dir.path().join("merged");
    let summary = dir.path().join("step-summary.md");
    let merge = std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .args(["campaign", "merge", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()])
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .unwrap();
    assert_eq!(merge.status.code(), output.status.code(), "{}", String::from_utf8_lossy(&merge.stderr));

    let reference = lines(&one);
    assert_eq!(reference.iter().map(|l| l.seed).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
    assert_eq!(lines(&two), reference);
    assert_eq!(lines(&merged), reference);
    assert_eq!(lines(&a).iter().map(|l| l.seed).collect::<Vec<_>>(), vec![1, 3, 5]);
    // Different seeds draw different plans.
    let plans: std::collections::BTreeSet<_> = reference.iter().map(|l| l.fault_plan.clone()).collect();
    assert!(plans.len() >= 5, "{plans:?}");
    let text = std::fs::read_to_string(merged.join("summary.md")).unwrap();
    assert!(text.contains("| invariant | critical | failing seeds | first failing seed |"), "{text}");
    assert_eq!(std::fs::read_to_string(&summary).unwrap().trim(), text.trim(), "the job summary gets the same table");
}

#[test]
fn merge_refuses_a_missing_shard() {
    let (dir, scenario) = write_scenario(SWARM);
    let a = dir.path().join("a");
    campaign(&scenario, &a, &["--jobs", "2", "--shard", "1/2"]);
    let merged = dir.path().join("merged");
    let output = seedcore(&["campaign", "merge", a.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("3 seed(s) of 1..6 missing"));
}

#[test]
fn bad_campaign_arguments_are_usage_errors() {
    for (args, needle) in [
        (vec!["campaign", "scenarios/steady.toml", "--seeds", "9..1", "--out", "x"], "after the last"),
        (vec!["campaign", "scenarios/steady.toml", "--seeds", "1..9", "--shard", "3/2", "--out", "x"], "1 <= i <= n"),
        (vec!["campaign", "scenarios/steady.toml", "--seeds", "1..9"], "--out"),
    ] {
        let output = seedcore(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(needle), "{args:?}");
    }
}

/// Two fast workers down at once is the planted failure (every fast dispatch fails, the
/// fast-path ratio falls below target); twenty other faults, none on a fast worker, are
/// harmless alone and together. The shrinker must find exactly the pair.
const PLANTED: &str = r#"
name = "planted"
duration = "2m"
seed = 4

[topology]
fast = 2
deep = 1

[workload]
source = "generated"
rate_per_s = 10.0

[[chaos.fault]]
at = "40s"
kind = "crash"
node = "fast-1"
for = "40s"

[[chaos.fault]]
at = "45s"
kind = "crash"
node = "fast-2"
for = "35s"
"#;

const HARMLESS: [&str; 20] = [
    "at = \"5s\"\nkind = \"latency\"\nlatency_ms = [5, 20]\nfor = \"10s\"",
    "at = \"8s\"\nkind = \"backend_slow\"\npath = \"deep\"\nfactor = 1.5\nfor = \"20s\"",
    "at = \"10s\"\nkind = \"bad_promotion\"\nnorm = 3.0",
    "at = \"12s\"\nkind = \"pause\"\nnode = \"deep-1\"\nfor = \"1s\"",
    "at = \"15s\"\nkind = \"restart\"\nnode = \"state\"",
    "at = \"18s\"\nkind = \"packet_loss\"\nrate = 0.01\nfor = \"3s\"",
    "at = \"20s\"\nkind = \"ledger_io_error\"\nfor = \"1s\"",
    "at = \"25s\"\nkind = \"token_inflation\"\npath = \"deep\"\nfactor = 1.2\nfor = \"10s\"",
    "at = \"28s\"\nkind = \"partition\"\nnode = \"state\"\npeer = \"deep-1\"\nfor = \"2s\"",
    "at = \"30s\"\nkind = \"backend_errors\"\npath = \"deep\"\nrate = 0.1\nfor = \"5s\"",
    "at = \"35s\"\nkind = \"isolate\"\nnode = \"deep-1\"\nfor = \"1s\"",
    "at = \"50s\"\nkind = \"latency\"\nlatency_ms = [2, 8]\nfor = \"5s\"",
    "at = \"55s\"\nkind = \"bad_promotion\"\nnorm = 2.0",
    "at = \"60s\"\nkind = \"pause\"\nnode = \"state\"\nfor = \"200ms\"",
    "at = \"65s\"\nkind = \"backend_slow\"\npath = \"deep\"\nfactor = 2.0\nfor = \"5s\"",
    "at = \"70s\"\nkind = \"restart\"\nnode = \"deep-1\"",
    "at = \"85s\"\nkind = \"packet_loss\"\nrate = 0.005\nfor = \"5s\"",
    "at = \"90s\"\nkind = \"ledger_io_error\"\nfor = \"500ms\"",
    "at = \"95s\"\nkind = \"token_inflation\"\npath = \"deep\"\nfactor = 1.1\nfor = \"5s\"",
    "at = \"100s\"\nkind = \"partition\"\nnode = \"coordinator\"\npeer = \"deep-1\"\nfor = \"1s\"",
];

fn planted_scenario(with_pair: bool) -> String {
    let mut text =
        if with_pair { PLANTED.to_string() } else { PLANTED.split("[[chaos.fault]]").next().unwrap().into() };
    for fault in HARMLESS {
        text.push_str("\n[[chaos.fault]]\n");
        text.push_str(fault);
        text.push('\n');
    }
    text
}

/// The shrinker's budget for 22 faults: ddmin needs about 2 * 2 * log2(22) tests for a
/// pair, the later stages a bisection per duration, start and magnitude.
const SHRINK_RUNS: u32 = 120;

#[test]
fn the_shrinker_finds_exactly_the_planted_pair() {
    // The harmless faults alone pass.
    let (dir, harmless) = write_scenario(&planted_scenario(false));
    let replayed = dir.path().join("harmless");
    let output =
        seedcore(&["replay", harmless.to_str().unwrap(), "--replays", "1", "--out", replayed.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));

    let scenario = dir.path().join("planted.toml");
    std::fs::write(&scenario, planted_scenario(true)).unwrap();
    let out = dir.path().join("shrunk");
    let output = seedcore(&["shrink", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let runs: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shrunk in ").and_then(|r| r.split(' ').next()).map(|n| n.parse().unwrap()))
        .expect("the number of runs is printed");
    assert!(runs <= SHRINK_RUNS, "{runs} runs");
    assert!(stdout.contains("22 fault(s) before, 2 after"), "{stdout}");

    let shrunk = seedcore_sim::load(&out.join("shrunk.toml")).unwrap();
    let mut nodes: Vec<String> =
        shrunk.faults.faults().iter().map(|f| format!("{} {}", f.kind.name(), f.kind.target())).collect();
    nodes.sort();
    assert_eq!(nodes, ["crash fast-1", "crash fast-2"]);
    assert!(shrunk.swarm.is_none());
    // The written command reproduces the failure.
    let repro = stdout.lines().find_map(|l| l.strip_prefix("reproduce: cargo sim ")).expect("a repro line");
    // Into the test's directory: tests write nothing into the checkout.
    let reproduced = dir.path().join("reproduced");
    let mut args: Vec<&str> = repro.split(' ').collect();
    args.extend(["--out", reproduced.to_str().unwrap()]);
    let output = seedcore(&args);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
}

/// `campaign --shrink` shrinks the first failing seed into the campaign's directory.
#[test]
fn a_campaign_shrinks_its_first_failing_seed() {
    let (dir, scenario) = write_scenario(&planted_scenario(true));
    let out = dir.path().join("campaign");
    let output = campaign_seeds(&scenario, &out, "6..7", &["--jobs", "2", "--shrink"]);
    assert_eq!(output.status.code(), Some(1), "both seeds fail fast_path_ratio");
    let shrunk = seedcore_sim::load(&out.join("shrink-6").join("shrunk.toml")).unwrap();
    assert_eq!(shrunk.faults.faults().len(), 2);
    assert_eq!(shrunk.seed, 6);
}

fn campaign_seeds(scenario: &Path, out: &Path, seeds: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["campaign", scenario.to_str().unwrap(), "--seeds", seeds, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    seedcore(&args)
}
