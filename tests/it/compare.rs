//! `seedcore compare`: a real capture of the live gateway (the first 2,000 answers of the
//! Azure hour sent with `seedcore load --speed 60` to `serve --capture`, with the default
//! engine settings) replays with its decisions; a capture whose decisions were changed
//! fails and names exactly the changed tasks; a damaged capture is a usage error naming
//! the file, line and column.

use crate::support::seedcore;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-capture-azure.csv")
}

fn compare(capture: &Path, out: &Path) -> std::process::Output {
    seedcore(&["compare", capture.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn agreement(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("agreement.json")).unwrap()).unwrap()
}

#[test]
fn a_live_capture_replays_with_its_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let output = compare(&fixture(), &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let result = agreement(&out);
    assert_eq!(result["tasks"], 2000);
    assert!(result["agreement"].as_f64().unwrap() >= 0.95, "{result}");
    assert!(result["matrix"]["deep"]["deep"].as_u64().unwrap() > 0, "the capture has deep decisions: {result}");
    assert!(stdout.contains("of 2000 agree"), "{stdout}");
}

#[test]
fn changed_decisions_fail_the_comparison_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap();
    // Every 10th fast row claims the deep path: 10 % of the tasks, well past the 5 % allowed.
    let mut changed = BTreeSet::new();
    let mut lines: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 && i % 10 == 0 && line.contains(",completed,fast,") {
            changed.insert(line.split(',').next().unwrap().parse::<u64>().unwrap());
            lines.push(line.replace(",completed,fast,", ",completed,deep,"));
        } else {
            lines.push(line.to_string());
        }
    }
    let forged = dir.path().join("changed.csv");
    std::fs::write(&forged, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("cmp");
    let output = compare(&forged, &out);
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL"));
    let listed: BTreeSet<u64> = std::fs::read_to_string(out.join("disagreements.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(changed.len() >= 150, "{} rows changed", changed.len());
    assert!(listed.is_superset(&changed), "every changed task is listed");
    // The unchanged fixture agrees on at least 95 %, so few others can be listed.
    assert!(listed.len() - changed.len() <= 100, "{} listed, {} changed", listed.len(), changed.len());
}

#[test]
fn a_damaged_capture_is_a_usage_error_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let mut lines: Vec<&str> = text.lines().take(5).collect();
    lines[3] = "3,100,chat,x,0.1,5,medium,false,10,10,7,completed,sideways,fast,3,10";
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let output = compare(&bad, &dir.path().join("cmp"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.csv") && stderr.contains("line 4") && stderr.contains("status"), "{stderr}");
    assert!(!dir.path().join("cmp").exists(), "nothing is written for a bad capture");

    let trace = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traces/azure-llm-conv-2023-11-16-1h.csv");
    let output = compare(&trace, &dir.path().join("cmp"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a capture"), "{stderr}");
}

/// Damaged captures of every kind either replay (exit 0 or 1) or are a usage error naming
/// the file (exit 2): never a crash (3, or a signal) and never a half-written result.
#[test]
fn no_damaged_capture_crashes_compare() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture()).unwrap();
    let lines: Vec<&str> = text.lines().take(40).collect();
    let row = |i: usize| lines[i].split(',').map(str::to_string).collect::<Vec<_>>();
    let with_field = |i: usize, field: usize, value: &str| {
        let mut fields = row(i);
        fields[field] = value.to_string();
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[i] = fields.join(",");
        out.join("\n").into_bytes()
    };
    let joined = |out: Vec<&str>| out.join("\n").into_bytes();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("header only", joined(lines[..1].to_vec())),
        ("a row twice", joined([&lines[..], &lines[5..6]].concat())),
        ("truncated row", {
            let mut t = joined(lines.clone());
            t.truncate(t.len() - 30);
            t
        }),
        ("not utf-8", {
            let mut t = joined(lines.clone());
            t.splice(200..200, [0xff, 0xfe]);
            t
        }),
        ("an extra column", joined(lines.iter().copied().chain(["1,2,3"]).collect())),
    ];
    for (name, field, value) in [
        ("at_ms far ahead", 1, "18446744073709551615"),
        ("at_ms at 0", 1, "0"),
        ("task_id at the maximum", 0, "18446744073709551615"),
        ("drift out of range", 4, "7.5"),
        ("drift NaN", 4, "NaN"),
        ("tokens huge", 9, "4294967295"),
        ("valve_seq not a number", 14, "x"),
        ("valve_seq at the maximum", 14, "18446744073709551615"),
        ("latency negative", 15, "-3"),
        ("unknown kind", 2, "poem"),
        ("a path without a status", 11, ""),
    ] {
        cases.push((name, with_field(7, field, value)));
    }
    for (name, bytes) in cases {
        let path = dir.path().join("damaged.csv");
        std::fs::write(&path, &bytes).unwrap();
        let out = dir.path().join(format!("cmp-{}", name.replace(' ', "-")));
        let output = compare(&path, &out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.code() {
            Some(0 | 1) => assert!(out.join("agreement.json").exists(), "{name}: a replay writes its results"),
            Some(2) => {
                assert!(stderr.contains("damaged.csv"), "{name}: the error names the file: {stderr}");
                assert!(!out.exists(), "{name}: nothing is written for a bad capture");
            }
            other => panic!("{name}: exit {other:?}: {stderr}"),
        }
    }
}
