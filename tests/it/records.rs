//! Certification records as a reviewer relies on them (docs/certification.md 8.6 to 8.8):
//! nothing overwrites a certificate, every certification is in a tamper-evident log, a
//! baseline is verified and can gate, a loosened policy is stated and a frozen one refuses
//! it, and the dashboard and the weekly attestation are built from the log and its bundles.
//! Each command runs in a temporary directory as its working directory, so the default
//! `out/` paths are the ones a user gets.

use crate::support::SMALL;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A working directory with two keys and the small scenario.
struct Desk {
    dir: tempfile::TempDir,
}

impl Desk {
    fn new() -> Desk {
        let desk = Desk { dir: tempfile::tempdir().unwrap() };
        desk.write("small.toml", SMALL);
        for key in ["k1", "k2"] {
            let output = desk.run(&["keygen", key]);
            assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        }
        desk
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write(&self, relative: &str, contents: &str) {
        std::fs::write(self.path(relative), contents).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("the seedcore binary runs")
    }

    /// Runs and requires an exit code; returns stdout and stderr.
    fn expect(&self, code: i32, args: &[&str]) -> String {
        let output = self.run(args);
        let all = text(&output);
        assert_eq!(output.status.code(), Some(code), "seedcore {}:\n{all}", args.join(" "));
        all
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const BOTH_KEYS: [&str; 4] = ["--pubkey", "k1.pub", "--pubkey", "k2.pub"];

#[test]
fn nothing_overwrites_a_certificate_and_the_log_lists_and_checks_every_one() {
    let desk = Desk::new();
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    // replay writes elsewhere; certify again with another key goes beside the first.
    desk.expect(0, &["replay", "small.toml"]);
    assert!(desk.path("out/replay/small-3/events.jsonl").is_file());
    let again = desk.expect(0, &["certify", "small.toml", "--key", "k2.key"]);
    assert!(again.contains("out/small-3 holds another certificate") && again.contains("out/small-3-2"), "{again}");
    desk.expect(0, &["verify", "out/small-3", "--pubkey", "k1.pub"]);
    desk.expect(0, &["verify", "out/small-3-2", "--pubkey", "k2.pub"]);

    // An explicit directory holding a certificate is refused, for certify and replay alike.
    let refused = desk.expect(2, &["certify", "small.toml", "--key", "k1.key", "--out", "out/small-3"]);
    assert!(refused.contains("holds another certificate") && refused.contains("--force"), "{refused}");
    let refused = desk.expect(2, &["replay", "small.toml", "--out", "out/small-3"]);
    assert!(refused.contains("holds a certification bundle"), "{refused}");
    desk.expect(0, &["verify", "out/small-3", "--pubkey", "k1.pub"]);

    let list = desk.expect(0, &["log", "list", "out/log"]);
    assert!(list.contains("out/small-3\n") && list.contains("out/small-3-2\n") && list.contains("2 entries"), "{list}");
    let first_checkpoint = read(&desk.path("out/log/checkpoints.jsonl")).lines().next().unwrap().to_string();
    desk.write("checkpoint-1.json", &first_checkpoint);
    let verified =
        desk.expect(0, &[&["log", "verify", "out/log", "--since", "checkpoint-1.json"][..], &BOTH_KEYS].concat());
    assert!(verified.contains("consistency") && verified.contains("VERIFIED out/log: 2 certifications"), "{verified}");
    // Each checkpoint is signed by the key that certified: one key alone does not do.
    desk.expect(4, &["log", "verify", "out/log", "--pubkey", "k1.pub"]);

    // A bundle moved away is named.
    std::fs::rename(desk.path("out/small-3-2"), desk.path("moved")).unwrap();
    let missing = desk.expect(4, &[&["log", "verify", "out/log"][..], &BOTH_KEYS].concat());
    assert!(missing.contains("entry 1 (small seed 3") && missing.contains("missing"), "{missing}");
    std::fs::rename(desk.path("moved"), desk.path("out/small-3-2")).unwrap();
    desk.expect(0, &[&["log", "verify", "out/log"][..], &BOTH_KEYS].concat());
}

#[test]
fn an_edited_or_rewritten_log_is_rejected_and_takes_no_append() {
    let desk = Desk::new();
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    desk.write("checkpoint-1.json", read(&desk.path("out/log/checkpoints.jsonl")).trim());
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    let entries = desk.path("out/log/entries.jsonl");
    let original = read(&entries);

    // An entry's outcome changed: the tree no longer gives the signed root.
    desk.write("out/log/entries.jsonl", &original.replacen("\"PASS\"", "\"FAIL\"", 1));
    let edited = desk.expect(4, &["log", "verify", "out/log", "--pubkey", "k1.pub"]);
    assert!(edited.contains("entries.jsonl:1") && edited.contains("altered"), "{edited}");
    // A certification into an altered log is refused before it runs.
    let refused = desk.expect(4, &["certify", "small.toml", "--key", "k1.key"]);
    assert!(refused.contains("does not verify, so nothing is appended"), "{refused}");
    assert!(!desk.path("out/small-3-3").exists(), "refused before the run");

    // The log rewritten from scratch, its checkpoints re-signed: the older checkpoint shows it.
    std::fs::remove_dir_all(desk.path("out")).unwrap();
    desk.write("other.toml", &SMALL.replace("rate_per_s = 5.0", "rate_per_s = 6.0"));
    desk.expect(0, &["certify", "other.toml", "--key", "k1.key"]);
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    desk.expect(0, &["log", "verify", "out/log", "--pubkey", "k1.pub"]);
    let rewritten = desk.expect(4, &["log", "verify", "out/log", "--pubkey", "k1.pub", "--since", "checkpoint-1.json"]);
    assert!(rewritten.contains("not an extension of this checkpoint"), "{rewritten}");
}

#[test]
fn concurrent_certifies_append_to_one_log_in_turn() {
    let desk = Desk::new();
    // Two into directories of their own, two into the same default directory: one of those
    // takes out/small-3, the other out/small-3-2, and neither removes the other's work.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let out = if i < 2 { vec!["--out".to_string(), format!("out/c{i}")] } else { Vec::new() };
            std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
                .args(["certify", "small.toml", "--key", "k1.key"])
                .args(&out)
                .current_dir(desk.dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
    let verified = desk.expect(0, &["log", "verify", "out/log", "--pubkey", "k1.pub"]);
    assert!(verified.contains("VERIFIED out/log: 4 certifications"), "{verified}");
    for dir in ["out/c0", "out/c1", "out/small-3", "out/small-3-2"] {
        desk.expect(0, &["verify", dir, "--pubkey", "k1.pub"]);
    }
}

#[test]
fn a_loosened_policy_is_stated_shown_and_refused_when_frozen() {
    let desk = Desk::new();
    desk.write("loose.toml", &format!("{SMALL}\n[policy.fast_path_ratio]\nthreshold = 0.5\n"));
    desk.expect(0, &["certify", "loose.toml", "--key", "k1.key", "--out", "out/loose"]);
    let statement = read(&desk.path("out/loose/statement.json"));
    assert!(
        statement.contains("\"policy_changes\"")
            && statement.contains("\"effect\": \"loosened\"")
            && statement.contains("\"value\": \"0.5\""),
        "{statement}"
    );
    let html = read(&desk.path("out/loose/report.html"));
    assert!(html.contains("fast_path_ratio threshold 0.5 (default 0.9): loosened"), "the report shows it");
    desk.expect(0, &["verify", "out/loose", "--pubkey", "k1.pub"]);
    // A default policy states nothing: its certificate bytes are as before.
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key", "--out", "out/default"]);
    assert!(!read(&desk.path("out/default/statement.json")).contains("policy_changes"));

    desk.write("frozen.toml", "[policy]\n");
    let refused = desk
        .expect(2, &["certify", "loose.toml", "--key", "k1.key", "--out", "out/x", "--frozen-policy", "frozen.toml"]);
    assert!(refused.contains("policy.fast_path_ratio.threshold = 0.5 (loosened against the frozen 0.9)"), "{refused}");
    assert!(!desk.path("out/x").exists());
    desk.write("strict.toml", &format!("{SMALL}\n[policy.fast_latency_p99]\nthreshold = 190\n"));
    desk.expect(0, &["certify", "strict.toml", "--key", "k1.key", "--out", "out/y", "--frozen-policy", "frozen.toml"]);
    desk.write("bad-frozen.toml", "[policy]\nfast_path_ratio = { threshold = 2.0 }\n");
    let bad = desk.expect(
        2,
        &["certify", "small.toml", "--key", "k1.key", "--out", "out/z", "--frozen-policy", "bad-frozen.toml"],
    );
    assert!(bad.contains("bad-frozen.toml") && bad.contains("policy.fast_path_ratio.threshold"), "{bad}");
}

#[test]
fn a_baseline_is_verified_and_a_regression_can_fail_the_command() {
    let desk = Desk::new();
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key", "--out", "out/base"]);
    desk.expect(
        0,
        &[
            "certify",
            "small.toml",
            "--key",
            "k1.key",
            "--out",
            "out/same",
            "--baseline",
            "out/base",
            "--fail-on-regression",
        ],
    );

    // Signed by a key that is not trusted, or tampered with: rejected before any run.
    let untrusted =
        desk.expect(4, &["certify", "small.toml", "--key", "k2.key", "--out", "out/a", "--baseline", "out/base"]);
    assert!(untrusted.contains("the baseline does not verify"), "{untrusted}");
    desk.expect(
        0,
        &["certify", "small.toml", "--key", "k2.key", "--out", "out/b", "--baseline", "out/base", "--pubkey", "k1.pub"],
    );
    let report = desk.path("out/base/report.md");
    std::fs::write(&report, read(&report).replace("PASS", "FAIL")).unwrap();
    let tampered =
        desk.expect(4, &["certify", "small.toml", "--key", "k1.key", "--out", "out/c", "--baseline", "out/base"]);
    assert!(tampered.contains("report.md"), "{tampered}");
    assert!(!desk.path("out/c").exists());

    // Another scenario: refused with what differs, or compared when allowed.
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key", "--out", "out/base2"]);
    desk.write("slow.toml", &format!("{SMALL}\n[policy.fast_latency_p99]\nthreshold = 1\nwarn = 0\n"));
    let changed =
        desk.expect(2, &["certify", "slow.toml", "--key", "k1.key", "--out", "out/d", "--baseline", "out/base2"]);
    assert!(changed.contains("+ line 12: threshold = 1"), "{changed}");
    let allowed =
        &["certify", "slow.toml", "--key", "k1.key", "--baseline", "out/base2", "--baseline-allow-changed-scenario"];
    let compared = desk.expect(0, &[&allowed[..], &["--out", "out/e"]].concat());
    assert!(compared.contains("regression against the baseline: fast_latency_p99: pass -> fail"), "{compared}");
    let gated = desk.expect(1, &[&allowed[..], &["--out", "out/f", "--fail-on-regression"]].concat());
    assert!(gated.contains("--fail-on-regression"), "{gated}");
}

#[test]
fn the_dashboard_and_the_weekly_attestation_are_built_from_the_log_and_its_bundles() {
    let desk = Desk::new();
    desk.write(
        "loose.toml",
        &format!("{SMALL}\n[policy.fast_path_ratio]\nthreshold = 0.5\n").replace("\"small\"", "\"loose\""),
    );
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    // The log's times are to the second: the second certification is logged a second later.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    desk.expect(0, &["certify", "small.toml", "--key", "k1.key"]);
    desk.expect(0, &["certify", "loose.toml", "--key", "k1.key"]);
    desk.expect(0, &["campaign", "small.toml", "--seeds", "1..3", "--out", "out/campaign"]);

    let site = desk.expect(0, &["dashboard", "out", "--out", "site", "--pubkey", "k1.pub"]);
    assert!(site.contains("index.html"), "{site}");
    let html = read(&desk.path("site/index.html"));
    assert_eq!(html.matches("<tr class=\"latest\"").count(), 2, "one row per scenario");
    assert!(html.contains("<svg") && html.contains("loosened") && html.contains("campaign"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained");
    // Both certifications of small have the same certificate bytes; each bundle still gets
    // its own entry's time, so the latest is the second.
    let row = html.split("<tr class=\"latest\"><td>small</td>").nth(1).and_then(|r| r.split("</tr>").next());
    assert!(row.is_some_and(|r| r.contains("../out/small-3-2/report.html")), "{row:?}");

    // The loosened policy is a compliance deviation: the week FAILs (exit 1), signed all the same.
    let attested =
        desk.expect(1, &["attest", "--log", "out/log", "--since", "2000-01-01", "--key", "k1.key", "--out", "week"]);
    assert!(attested.contains("FAIL"), "{attested}");
    let markdown: Vec<PathBuf> = std::fs::read_dir(desk.path("week"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("attestation-"))
        .collect();
    assert_eq!(markdown.len(), 1, "attestation-YYYY-MM-DD.md");
    let text = read(&markdown[0]);
    assert!(text.contains("compliance_failure") && text.contains("pause"), "{text}");
    let verified = desk.expect(0, &["verify", "week", "--pubkey", "k1.pub"]);
    assert!(verified.contains("VERIFIED"), "{verified}");
    std::fs::write(&markdown[0], text.replacen("| PASS | 3 |", "| PASS | 2 |", 1)).unwrap();
    desk.expect(4, &["verify", "week", "--pubkey", "k1.pub"]);
    // An attestation over a window with a bundle that no longer verifies halts production.
    std::fs::write(&markdown[0], &text).unwrap();
    desk.expect(0, &["verify", "week", "--pubkey", "k1.pub"]);
    let report = desk.path("out/small-3/report.md");
    std::fs::write(&report, read(&report) + "edited").unwrap();
    desk.expect(4, &["verify", "week", "--pubkey", "k1.pub"]);
}
