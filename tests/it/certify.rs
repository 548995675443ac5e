//! `certify` and `verify` as a user runs them: a good bundle verifies; tampering with any
//! byte of any file, with the event log's lines, or with a stated verdict (even re-signed
//! by the trusted key) is rejected with exit 4 and a message naming the cause; a failing
//! canary still gets a signed certificate that verifies; an interrupted run leaves no report
//! directory; bad keys and bundles get clear errors.

use crate::support::{seedcore, SMALL};
use base64::Engine;
use std::path::{Path, PathBuf};

struct Bundle {
    _dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Generates a key and certifies `scenario` (a file in the temp dir when given as text).
fn certify(scenario_text: &str, extra: &[&str]) -> (Bundle, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let scenario = root.join("small.toml");
    std::fs::write(&scenario, scenario_text).unwrap();
    let key = root.join("keys/test.key");
    let output = seedcore(&["keygen", arg(&key)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let out = root.join("report");
    let mut args = vec!["certify", arg(&scenario), "--key", arg(&key), "--out", arg(&out)];
    args.extend_from_slice(extra);
    let output = seedcore(&args);
    let public = root.join("keys/test.pub");
    (Bundle { _dir: dir, root, out, key, public }, output)
}

fn verify(bundle: &Path, public: &Path) -> (Option<i32>, String) {
    let output = seedcore(&["verify", arg(bundle), "--pubkey", arg(public)]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_good_bundle_verifies_and_tampering_with_any_file_is_rejected() {
    let (b, output) = certify(SMALL, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("PASS"), "{stdout}");
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("VERIFIED") && text.contains("recomputed"), "{text}");

    let all = files(&b.out);
    let names: Vec<String> =
        all.iter().map(|p| p.strip_prefix(&b.out).unwrap().to_string_lossy().into_owned()).collect();
    for expected in [
        "certificate.dsse.json",
        "statement.json",
        "events.jsonl",
        "scenario.toml",
        "tasks.csv",
        "report.md",
        "report.html",
        "cost_report.json",
        "signature_log.json",
        "plots/fast_ratio.svg",
        "plots/l_tot.svg",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    // Flip one bit at the start, the middle and the end of every file.
    for path in &all {
        let original = std::fs::read(path).unwrap();
        for at in [0, original.len() / 2, original.len() - 1] {
            let mut bytes = original.clone();
            bytes[at] ^= 0x01;
            std::fs::write(path, &bytes).unwrap();
            let (code, text) = verify(&b.out, &b.public);
            assert_eq!(code, Some(4), "{} byte {at} flipped: {text}", path.display());
            assert!(text.contains("REJECTED"), "{text}");
        }
        std::fs::write(path, &original).unwrap();
    }
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "restored: {text}");

    // A file added to the bundle is not covered by the certificate.
    std::fs::write(b.out.join("extra.txt"), "hello").unwrap();
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("extra.txt"), "{text}");
}

/// Rewrites the bundle's events.jsonl and re-signs a statement whose digests match it, so
/// that only the event log checks can catch the edit.
fn resign(b: &Bundle, edit: impl FnOnce(&mut serde_json::Value)) {
    use seedcore_reports::{dsse, jcs, keys, statement};
    let envelope: dsse::Envelope =
        serde_json::from_slice(&std::fs::read(b.out.join("certificate.dsse.json")).unwrap()).unwrap();
    let payload = base64::engine::general_purpose::STANDARD.decode(&envelope.payload).unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let files = value["predicate"]["files"].as_object().unwrap().clone();
    for name in files.keys() {
        let sha = seedcore_reports::certify::file_sha256(&b.out.join(name)).unwrap();
        value["predicate"]["files"][name] = serde_json::Value::String(sha);
    }
    edit(&mut value);
    let key = keys::read_signing_key(&b.key).unwrap();
    let payload = jcs::canonical(&value).unwrap();
    let envelope = dsse::sign(dsse::IN_TOTO, &payload, &key);
    let mut bytes = serde_json::to_vec_pretty(&envelope).unwrap();
    bytes.push(b'\n');
    std::fs::write(b.out.join("certificate.dsse.json"), bytes).unwrap();
    std::fs::write(b.out.join("statement.json"), statement::pretty(&value)).unwrap();
}

#[test]
fn event_log_edits_and_false_verdicts_are_rejected_even_when_re_signed() {
    let (b, output) = certify(SMALL, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let envelope = std::fs::read(b.out.join("certificate.dsse.json")).unwrap();
    let statement = std::fs::read(b.out.join("statement.json")).unwrap();
    let events = b.out.join("events.jsonl");
    let original = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = original.lines().collect();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "drop a line",
            lines.iter().enumerate().filter(|(i, _)| *i != 10).map(|(_, l)| format!("{l}\n")).collect(),
            "seq",
        ),
        (
            "swap two lines",
            {
                let mut l = lines.clone();
                l.swap(20, 21);
                l.iter().map(|l| format!("{l}\n")).collect()
            },
            "seq",
        ),
        ("truncate the last line", original[..original.len() - 5].to_string(), "truncated"),
    ];
    for (what, text, cause) in cases {
        std::fs::write(&events, &text).unwrap();
        // Untouched digests: the file digest catches it.
        let (code, out) = verify(&b.out, &b.public);
        assert_eq!(code, Some(4), "{what}: {out}");
        assert!(out.contains("events.jsonl"), "{what}: {out}");
        // Digests re-signed to match: the event log check itself must catch it.
        resign(&b, |_| {});
        let (code, out) = verify(&b.out, &b.public);
        assert_eq!(code, Some(4), "{what} (re-signed): {out}");
        assert!(out.contains(cause), "{what} (re-signed): expected {cause:?} in {out}");
        std::fs::write(&events, &original).unwrap();
        resign(&b, |_| {});
        assert_eq!(verify(&b.out, &b.public).0, Some(0), "{what}: restored");
    }

    // A stated result edited and re-signed with the trusted key: verify recomputes it.
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let edits: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v["predicate"]["invariants"][0]["verdict"] = "fail".into()),
            "invariant fast_path_ratio: stated fail",
        ),
        (
            Box::new(|v| v["predicate"]["outcome"] = "PASS WITH CONDITIONS".into()),
            "outcome: stated PASS WITH CONDITIONS",
        ),
        (Box::new(|v| v["predicate"]["score"] = "99.00".into()), "outcome: stated PASS (score 99.00)"),
        (
            Box::new(|v| v["predicate"]["determinism"]["replays"][0] = "00".repeat(32).into()),
            "invariant determinism: stated pass",
        ),
        (Box::new(|v| v["predicate"]["event_log"]["size"] = 7.into()), "event log:"),
        (
            Box::new(|v| v["predicate"]["ledger"]["public_key"] = "11".repeat(32).into()),
            "ledger: the statement names key 1111",
        ),
        // A certificate of the version whose ledger key was a constant.
        (
            Box::new(|v| v["predicateType"] = seedcore_reports::statement::PREDICATE_TYPE_V1.into()),
            "ledger key was a constant",
        ),
    ];
    for (edit, cause) in edits {
        resign(&b, edit);
        let (code, out) = verify(&b.out, &b.public);
        assert_eq!(code, Some(4), "{out}");
        assert!(out.contains(cause), "expected {cause:?} in {out}");
        std::fs::write(b.out.join("certificate.dsse.json"), &envelope).unwrap();
        std::fs::write(b.out.join("statement.json"), &statement).unwrap();
    }
    assert_eq!(verify(&b.out, &b.public).0, Some(0), "restored");
}

#[test]
fn an_untrusted_key_and_bad_inputs_get_clear_errors() {
    let (b, output) = certify(SMALL, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let other = b.root.join("keys/other.key");
    assert_eq!(seedcore(&["keygen", arg(&other)]).status.code(), Some(0));
    let (code, text) = verify(&b.out, &b.root.join("keys/other.pub"));
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("key not trusted"), "{text}");

    // Keys: missing, or of the wrong kind.
    let (code, text) = verify(&b.out, &b.root.join("keys/missing.pub"));
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("missing.pub"), "{text}");
    let (code, text) = verify(&b.out, &b.key);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("is a private key"), "{text}");
    let scenario = b.root.join("small.toml");
    let output = seedcore(&["certify", arg(&scenario), "--key", arg(&b.public), "--out", arg(&b.root.join("x"))]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is a public key"));
    assert!(!b.root.join("x").exists());

    // Bundles: not there, truncated certificate, another scenario.
    let (code, text) = verify(&b.root.join("nowhere"), &b.public);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("nowhere"), "{text}");
    let certificate = b.out.join("certificate.dsse.json");
    let original = std::fs::read(&certificate).unwrap();
    std::fs::write(&certificate, &original[..original.len() / 2]).unwrap();
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("certificate.dsse.json: not a DSSE envelope"), "{text}");
    std::fs::write(&certificate, &original).unwrap();
    let steady = crate::support::scenario_path("steady.toml");
    let output = seedcore(&["verify", arg(&b.out), "--pubkey", arg(&b.public), "--scenario", arg(&steady)]);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(text.contains("this bundle certifies \"small\""), "{text}");
    let output = seedcore(&[
        "certify",
        arg(&steady),
        "--key",
        arg(&b.key),
        "--baseline",
        arg(&b.out),
        "--out",
        arg(&b.root.join("y")),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("it certifies scenario small with SHA-256"));
}

#[test]
fn the_same_run_gives_the_same_certificate_bytes_and_a_baseline_is_compared() {
    let (b, output) = certify(SMALL, &[]);
    assert_eq!(output.status.code(), Some(0));
    let again = b.root.join("again");
    let scenario = b.root.join("small.toml");
    let output =
        seedcore(&["certify", arg(&scenario), "--key", arg(&b.key), "--out", arg(&again), "--baseline", arg(&b.out)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    // With a baseline the statement records it, so compare the files the run wrote.
    for name in ["events.jsonl", "tasks.csv", "report.md", "cost_report.json", "signature_log.json", "plots/l_tot.svg"]
    {
        assert_eq!(std::fs::read(b.out.join(name)).unwrap(), std::fs::read(again.join(name)).unwrap(), "{name}");
    }
    let statement = std::fs::read_to_string(again.join("statement.json")).unwrap();
    assert!(statement.contains("\"baseline\": {"), "{statement}");
    assert_eq!(verify(&again, &b.public).0, Some(0));
    let third = b.root.join("third");
    let output = seedcore(&["certify", arg(&scenario), "--key", arg(&b.key), "--out", arg(&third)]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        std::fs::read(b.out.join("certificate.dsse.json")).unwrap(),
        std::fs::read(third.join("certificate.dsse.json")).unwrap(),
        "same binary, scenario, seed and key: same certificate"
    );
}

/// Every canary fails its invariant: exit 1, yet a signed certificate that verifies, says
/// FAIL and names exactly that invariant.
#[test]
fn failing_canaries_get_certificates_that_verify() {
    let critical = seedcore_sim::invariant_id::InvariantId::ALL.into_iter().filter(|id| id.critical());
    for invariant in critical.map(|id| id.as_str()) {
        let file = format!("canary-{}.toml", invariant.replace('_', "-"));
        let text = std::fs::read_to_string(crate::support::scenario_path(&file)).unwrap();
        let (b, output) = certify(&text, &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{file}: {stdout}");
        assert!(stdout.contains(&format!("critical invariant(s) not passed: {invariant}\n")), "{file}: {stdout}");
        // replay judges by the same rule, so it exits as certify did.
        let replayed = b.root.join("replay");
        let scenario = crate::support::scenario_path(&file);
        let output = seedcore(&["replay", arg(&scenario), "--out", arg(&replayed)]);
        let replay_out = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{file}: replay exits as certify: {replay_out}");
        assert!(replay_out.contains(&format!("critical invariant(s) {invariant} did not pass")), "{replay_out}");
        let (code, text) = verify(&b.out, &b.public);
        assert_eq!(code, Some(0), "{file}: {text}");
        assert!(text.contains("VERIFIED") && text.contains(": FAIL"), "{file}: {text}");
        let statement = std::fs::read_to_string(b.out.join("statement.json")).unwrap();
        assert!(statement.contains(&format!("\"critical_failures\": [\n      \"{invariant}\"\n    ]")), "{file}");
    }
}

/// Killed mid-run, certify leaves no report directory behind (only a hidden staging
/// directory, which the next run into the same place removes).
#[test]
fn an_interrupted_run_leaves_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports/steady-1");
    let key = dir.path().join("k.key");
    assert_eq!(seedcore(&["keygen", arg(&key)]).status.code(), Some(0));
    let long = crate::support::scenario_path("steady.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .args(["certify", arg(&long), "--key", arg(&key), "--out", arg(&out), "--log", arg(&dir.path().join("log"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run has started writing, then kill it.
    let parent = dir.path().join("reports");
    for _ in 0..200 {
        let started = std::fs::read_dir(&parent).map(|mut d| d.next().is_some()).unwrap_or(false);
        if started {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run must still be going when it is killed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "an interrupted run left a report directory");
}

/// Certification needs the determinism replays: a single run is a usage error for certify
/// (replay is the command for one run), and nothing is written.
#[test]
fn certify_refuses_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let steady = crate::support::scenario_path("steady.toml");
    let output = seedcore(&["certify", arg(&steady), "--replays", "1", "--out", arg(&out)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--replays asks for 1"));
    assert!(!out.exists());
}

/// What a forger does with the ledger's signed cycles.
#[derive(Clone, Copy, PartialEq)]
enum Cycles {
    /// Leaves them as the engine signed them.
    Untouched,
    /// Points them at the rebuilt chain and signs them with the forger's own key.
    OwnKey,
    /// Points them at the rebuilt chain and signs them with the key the seed gives (its
    /// derivation is public): nothing in the bundle contradicts itself any more.
    SeedKey,
}

/// Rewrites history in a bundle as a forger holding the signing key would (ISSUE 8): one
/// outcome's latency plus 1 ms, the Merkle root, the determinism row and every digest
/// recomputed, and the statement re-signed.
fn rewrite_history(b: &Bundle, cycles: Cycles) {
    use seedcore_engine::ledger::{cycle_message, Receipt, GENESIS};
    use seedcore_engine::probe::Signal;
    use seedcore_sim::event::{Body, Event, Harness};

    let events_path = b.out.join("events.jsonl");
    let text = std::fs::read_to_string(&events_path).unwrap();
    let mut events: Vec<Event> = text.lines().map(|l| Event::parse(l).unwrap()).collect();
    // The fastest completed task: one more millisecond moves no percentile.
    let victim = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.body {
            Body::Engine(Signal::Outcome(o)) if o.status == seedcore_engine::task::Status::Completed => {
                Some((o.latency_ms, i))
            }
            _ => None,
        })
        .min()
        .map(|(_, i)| i)
        .expect("a completed task to edit");
    let Body::Engine(Signal::Outcome(outcome)) = &mut events[victim].body else { unreachable!() };
    outcome.latency_ms += 1;

    let seed: u64 = events
        .iter()
        .find_map(|e| match &e.body {
            Body::Harness(Harness::RunStart(s)) => s.seed.parse().ok(),
            _ => None,
        })
        .unwrap();
    if cycles != Cycles::Untouched {
        let mut receipts: Vec<(u64, Receipt)> = events
            .iter()
            .filter_map(|e| match &e.body {
                Body::Engine(Signal::Outcome(o)) => o.ledger_seq.map(|s| (s, Receipt::of_outcome(o))),
                _ => None,
            })
            .collect();
        receipts.sort_by_key(|(s, _)| *s);
        let mut heads = Vec::new();
        let mut prev = GENESIS.to_string();
        for (seq, mut r) in receipts {
            r.seq = seq;
            r.prev_hash = prev;
            heads.push(r.hash());
            prev = hex::encode(r.hash());
        }
        let key = match cycles {
            Cycles::SeedKey => {
                ed25519_dalek::SigningKey::from_bytes(&seedcore_engine::config::simulation_key_seed(seed))
            }
            _ => seedcore_reports::keys::read_signing_key(&b.key).unwrap(),
        };
        for e in &mut events {
            if let Body::Harness(Harness::LedgerCycle(c)) = &mut e.body {
                let head = heads[c.last_seq as usize];
                c.head = hex::encode(head);
                let message = cycle_message(c.cycle, c.first_seq, c.last_seq, &head);
                c.signature = hex::encode(ed25519_dalek::Signer::sign(&key, &message).to_bytes());
            }
        }
    }
    let mut bytes = Vec::new();
    for e in &events {
        bytes.extend(e.to_line());
        bytes.push(b'\n');
    }
    std::fs::write(&events_path, bytes).unwrap();
    let fold = seedcore_reports::fold::fold_events(&events_path, 1_000).unwrap();
    std::fs::write(b.out.join("signature_log.json"), seedcore_reports::siglog::signature_log(&fold).0).unwrap();
    let root = hex::encode(fold.root);
    resign(b, |v| {
        v["predicate"]["event_log"]["merkle_root"] = root.clone().into();
        v["predicate"]["determinism"]["reference"] = root.clone().into();
        for replay in v["predicate"]["determinism"]["replays"].as_array_mut().unwrap() {
            *replay = root.clone().into();
        }
        for row in v["predicate"]["invariants"].as_array_mut().unwrap() {
            if row["id"] == "determinism" {
                row["detail"] = format!("reference root {}", &root[..16]).into();
            }
        }
    });
}

/// The forged bundle of ISSUE 8. Re-signed but with the engine's cycles left as they were,
/// `verify` rejects it on its own: the signed heads are not the chain the edited outcomes
/// give. With the cycles forged too, only a re-run can tell, and `reproduce` (`verify
/// --rerun`) rejects it with exit 4.
#[test]
fn a_rewritten_and_re_signed_history_is_rejected() {
    let (b, output) = certify(SMALL, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let pristine = tempfile::tempdir().unwrap();
    for name in ["events.jsonl", "signature_log.json", "certificate.dsse.json", "statement.json"] {
        std::fs::copy(b.out.join(name), pristine.path().join(name)).unwrap();
    }
    let reproduce = |b: &Bundle| {
        let output = seedcore(&["reproduce", arg(&b.out), "--pubkey", arg(&b.public)]);
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.code(), text)
    };
    let (code, text) = reproduce(&b);
    assert_eq!(code, Some(0), "the genuine bundle reproduces: {text}");
    assert!(text.contains("REPRODUCED") && text.contains("this binary is the certified one"), "{text}");

    let restore = || {
        for name in ["events.jsonl", "signature_log.json", "certificate.dsse.json", "statement.json"] {
            std::fs::copy(pristine.path().join(name), b.out.join(name)).unwrap();
        }
    };
    rewrite_history(&b, Cycles::Untouched);
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("invariant ledger_integrity: stated pass"), "{text}");
    assert!(text.contains(" signs head ") && text.contains("the outcome events give"), "{text}");

    restore();
    rewrite_history(&b, Cycles::OwnKey);
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("does not verify under the run's ledger key"), "{text}");

    restore();
    rewrite_history(&b, Cycles::SeedKey);
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "a consistent forgery passes the offline checks: {text}");
    let (code, text) = reproduce(&b);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("REJECTED") && text.contains("the re-run gives Merkle root"), "{text}");
    let output = seedcore(&["verify", arg(&b.out), "--pubkey", arg(&b.public), "--rerun"]);
    assert_eq!(output.status.code(), Some(4), "verify --rerun is reproduce");
}

/// The scenario `serve` ran with to record `live-capture-serve.csv` (its engine settings,
/// the defaults, and its seed, which gives the organism's); its own workload is what the
/// certified runs replay.
fn serve_scenario() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/serve.toml")).unwrap()
}

fn live_capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live-capture-serve.csv")
}

fn statement_of(b: &Bundle) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(b.out.join("statement.json")).unwrap()).unwrap()
}

fn determinism_row(statement: &serde_json::Value) -> serde_json::Value {
    let rows = statement["predicate"]["invariants"].as_array().unwrap();
    rows.iter().find(|r| r["id"] == "determinism").unwrap().clone()
}

/// The capture with every `nth` fast decision (after the header) changed to deep; returns
/// its path and how many rows changed.
fn changed_capture(dir: &Path, nth: usize) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(live_capture()).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i > 0 && i % nth == 0 && line.contains(",completed,fast,") {
                changed += 1;
                line.replace(",completed,fast,", ",completed,deep,")
            } else {
                line.to_string()
            }
        })
        .collect();
    let path = dir.join(format!("capture-every-{nth}.csv"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, changed)
}

#[test]
fn a_live_capture_is_the_live_half_of_determinism_bundled_verified_and_reproduced() {
    let (b, output) = certify(&serve_scenario(), &["--capture", arg(&live_capture())]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let statement = statement_of(&b);
    let live = &statement["predicate"]["determinism"]["live"];
    assert_eq!(live["tasks"], 2000, "{live}");
    let agreed = live["agreed"].as_u64().unwrap();
    assert!(agreed >= 1900, "the capture of the live engine agrees on {agreed} of 2000");
    let row = determinism_row(&statement);
    assert_eq!(row["verdict"], "pass", "{row}");
    assert!(row["observed"].as_str().unwrap().contains(&format!("live {agreed}/2000 decisions")), "{row}");
    assert!(stdout.contains(&format!("live {agreed}/2000")), "the summary shows the live half: {stdout}");
    assert_eq!(std::fs::read(b.out.join("live/capture.csv")).unwrap(), std::fs::read(live_capture()).unwrap());
    for file in ["live/capture.csv", "live/disagreements.csv", "live/agreement.json", "live/tasks.csv"] {
        assert!(statement["predicate"]["files"][file].is_string(), "{file} is covered by the certificate");
    }
    let html = std::fs::read_to_string(b.out.join("report.html")).unwrap();
    assert!(html.contains("Live versus simulated"), "the report shows the live half");

    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("live half: live/capture.csv holds 2000 tasks"), "{text}");
    let output = seedcore(&["reproduce", arg(&b.out), "--pubkey", arg(&b.public)]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("live half:") && text.contains("as certified") && text.contains("REPRODUCED"), "{text}");

    // Without a capture the statement has no live half, and its bytes are as before.
    let (plain, output) = certify(&serve_scenario(), &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(statement_of(&plain)["predicate"]["determinism"].get("live").is_none());
    assert!(!plain.out.join("live").exists());
}

#[test]
fn live_decisions_the_simulator_does_not_make_fail_determinism() {
    let dir = tempfile::tempdir().unwrap();
    // Every 10th fast decision claims the deep path: 10 % of the tasks, past the 5 % allowed.
    let (capture, changed) = changed_capture(dir.path(), 10);
    assert!(changed >= 150, "{changed} rows changed");
    let (b, output) = certify(&serve_scenario(), &["--capture", arg(&capture)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("critical invariant(s) not passed: determinism"), "{stdout}");
    let row = determinism_row(&statement_of(&b));
    assert_eq!(row["verdict"], "fail", "{row}");
    assert!(row["unit"].as_str().unwrap().contains("live"), "the live half is the binding measure: {row}");
    // An honest FAIL still verifies.
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "{text}");
    // A bad capture is a usage error naming the file, before anything runs.
    let bad = dir.path().join("not-a-capture.csv");
    std::fs::write(&bad, "task_id,at_ms\n1,2\n").unwrap();
    let (b, output) = certify(&serve_scenario(), &["--capture", arg(&bad)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not-a-capture.csv"), "{stderr}");
    assert!(!b.out.exists(), "no report for a bad capture");
}

#[test]
fn a_forged_live_half_is_rejected_by_verify_or_by_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    // 1 % of the decisions changed: the live half passes with some disagreements listed.
    let (capture, _) = changed_capture(dir.path(), 100);
    let (b, output) = certify(&serve_scenario(), &["--capture", arg(&capture)]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stdout));
    let live = statement_of(&b)["predicate"]["determinism"]["live"].clone();
    let (tasks, agreed) = (live["tasks"].as_u64().unwrap(), live["agreed"].as_u64().unwrap());
    assert!(agreed < tasks, "{live}");

    // A better agreement stated, re-signed, the list left as it is: verify counts the list.
    resign(&b, |v| v["predicate"]["determinism"]["live"]["agreed"] = (agreed + 1).into());
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("live/disagreements.csv: lists"), "{text}");

    // A consistent forgery: one disagreement dropped from the list, the count and the
    // determinism row raised to match, every digest recomputed and re-signed. Only
    // re-running the comparison can tell.
    let list = b.out.join("live/disagreements.csv");
    let text = std::fs::read_to_string(&list).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&list, lines.join("\n") + "\n").unwrap();
    let figures = b.out.join("live/agreement.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&figures).unwrap()).unwrap();
    json["agreed"] = (agreed + 1).into();
    std::fs::write(&figures, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let share = |agreed: u64| format!("{:.2}", 100.0 * agreed as f64 / tasks as f64);
    let ppm = |agreed: u64| {
        let ppm = agreed * 1_000_000 / tasks;
        format!("{}.{:06}", ppm / 1_000_000, ppm % 1_000_000)
    };
    resign(&b, |v| {
        v["predicate"]["determinism"]["live"]["agreed"] = (agreed + 1).into();
        let rows = v["predicate"]["invariants"].as_array_mut().unwrap();
        let row = rows.iter_mut().find(|r| r["id"] == "determinism").unwrap();
        let edit = |field: &str, from: String, to: String| {
            let text = row[field].as_str().unwrap().replace(&from, &to);
            (field.to_string(), text)
        };
        let edits = [
            edit("observed", format!("live {agreed}/"), format!("live {}/", agreed + 1)),
            edit(
                "detail",
                format!("{} % of {tasks} tasks decided alike, {} disagreements", share(agreed), tasks - agreed),
                format!("{} % of {tasks} tasks decided alike, {} disagreements", share(agreed + 1), tasks - agreed - 1),
            ),
            edit("value", ppm(agreed), ppm(agreed + 1)),
        ];
        for (field, text) in edits {
            row[field.as_str()] = text.into();
        }
    });
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(0), "the forgery is consistent: {text}");
    let output = seedcore(&["reproduce", arg(&b.out), "--pubkey", arg(&b.public)]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("the live half re-run gives"), "{text}");

    // The figures file taken out of the bundle and the certificate: the live half needs it.
    resign(&b, |v| {
        v["predicate"]["files"].as_object_mut().unwrap().remove("live/agreement.json");
    });
    std::fs::remove_file(&figures).unwrap();
    let (code, text) = verify(&b.out, &b.public);
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("live/agreement.json: the live half names it"), "{text}");
}
