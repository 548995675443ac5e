//! A canary's bundle (docs/certification.md 8.9): both scenarios, every seed's two event logs
//! and diff, `canary.md`, and a DSSE-signed in-toto statement of its own predicate type
//! naming the verdict, the rules, every finding and every log's Merkle root.
//!
//! Guarantees: `verify` trusts nothing in the statement that it can recompute. It folds
//! every bundled event log, judges both runs of every seed by the bundled scenarios'
//! policies and the candidate's rules, recounts the diffs, re-renders `canary.md`, builds
//! the statement those give and requires it to be the signed one, byte for byte. A verdict
//! edited and signed again by a trusted key is still rejected.

use super::{BinaryRef, Canary, RunRef, ScenarioRef, SeedRun};
use crate::certify::{file_sha256, list_files};
use crate::dsse;
use crate::fold::fold_events;
use crate::keys::Keyring;
use crate::statement::{pretty, STATEMENT_TYPE};
use ed25519_dalek::SigningKey;
use seedcore_sim::invariants::evaluate;
use seedcore_sim::shadow::canary::{judge_seed, seed_effect, CanaryVerdict, Effect, Finding};
use seedcore_sim::Scenario;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// This project's canary predicate, versioned.
pub const CANARY_PREDICATE: &str = "https://seedcore.dev/attestations/canary/v1";
/// The envelope; its presence makes a directory a canary bundle.
pub const ENVELOPE: &str = "canary.dsse.json";
/// The signed statement, pretty-printed for people.
pub const STATEMENT: &str = "statement.json";
/// The report.
pub const REPORT: &str = "canary.md";
/// The scenarios' copies.
pub const BASE_FILE: &str = "base.toml";
pub const CANDIDATE_FILE: &str = "candidate.toml";
/// The largest envelope a canary writes (a statement of thousands of seeds is far below).
const MAX_ENVELOPE_BYTES: u64 = 64 << 20;
/// Whether `dir` holds a canary bundle.
pub fn is_canary(dir: &Path) -> bool {
    dir.join(ENVELOPE).is_file()
}

/// How the bundle names a scenario: its copy, digest and source path.
pub fn scenario_ref(scenario: &Scenario, file: &str) -> ScenarioRef {
    ScenarioRef {
        name: scenario.name.clone(),
        file: file.to_string(),
        sha256: scenario.sha256.clone(),
        source_path: scenario.path.display().to_string(),
    }
}

fn decimal(x: f64) -> String {
    format!("{x:.6}")
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "rule": f.rule.as_str(),
        "subject": f.subject,
        "base": f.base,
        "candidate": f.candidate,
        "limit": f.limit,
        "effect": f.effect.as_str(),
        "why": f.why,
    })
}

fn run_json(run: &RunRef) -> Value {
    json!({ "events": run.events_file, "merkle_root": hex::encode(run.root), "size": run.events })
}

fn scenario_json(s: &ScenarioRef) -> Value {
    json!({ "name": s.name, "file": s.file, "sha256": s.sha256, "source": s.source_path })
}

/// The statement of a canary over the bundle's `files`, signed by `keyid`.
pub fn statement(canary: &Canary, files: &BTreeMap<String, String>, keyid: &str) -> Value {
    let mut subject = vec![
        json!({ "name": BASE_FILE, "digest": { "sha256": canary.base.sha256 } }),
        json!({ "name": CANDIDATE_FILE, "digest": { "sha256": canary.candidate.sha256 } }),
    ];
    let mut predicate = json!({
        "verdict": canary.verdict.as_str(),
        "base": scenario_json(&canary.base),
        "candidate": scenario_json(&canary.candidate),
        "rules": {
            "rollback_criteria": seedcore_sim::shadow::rules::ROLLBACK_CRITERIA,
            "measures": canary.rules.measures.iter().map(|m| json!({
                "measure": m.measure,
                "better": m.better.as_str(),
                "tolerance": decimal(m.tolerance),
                "warn": decimal(m.warn),
            })).collect::<Vec<_>>(),
        },
        "seeds": canary.seeds.iter().map(|s| json!({
            "seed": s.seed.to_string(),
            "effect": s.effect.as_str(),
            "differing_tasks": s.differing,
            "differing_decisions": s.decisions_differing,
            "repro": s.repro,
            "base": run_json(&s.base),
            "candidate": run_json(&s.candidate),
            "findings": s.findings.iter().map(finding_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "files": files,
        "signer": { "keyid": keyid },
    });
    if let Some(bin) = &canary.binary {
        subject.push(json!({ "name": "candidate-bin", "digest": { "sha256": bin.sha256 } }));
        predicate["candidate_bin"] = json!({ "path": bin.path, "sha256": bin.sha256 });
    }
    json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": CANARY_PREDICATE,
        "predicate": predicate,
    })
}

fn io(path: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", path.display())
}

/// Writes the scenarios, `canary.md`, the statement and its envelope into `dir`, which
/// already holds the runs.
pub fn write(
    dir: &Path,
    canary: &Canary,
    base: &Scenario,
    candidate: &Scenario,
    key: &SigningKey,
) -> Result<(), String> {
    for (name, scenario) in [(BASE_FILE, base), (CANDIDATE_FILE, candidate)] {
        let path = dir.join(name);
        std::fs::write(&path, scenario.source.as_bytes()).map_err(|e| io(&path, e))?;
    }
    let report = dir.join(REPORT);
    std::fs::write(&report, super::render::canary_markdown(canary)).map_err(|e| io(&report, e))?;
    let mut files = BTreeMap::new();
    for name in list_files(dir).map_err(|e| io(dir, e))? {
        let path = dir.join(&name);
        files.insert(name, file_sha256(&path).map_err(|e| io(&path, e))?);
    }
    let value = statement(canary, &files, &crate::keys::key_id(&key.verifying_key()));
    let payload = crate::jcs::canonical(&value).map_err(|e| format!("statement: {e}"))?;
    let envelope = dsse::sign(dsse::IN_TOTO, &payload, key);
    let mut envelope_bytes = serde_json::to_vec_pretty(&envelope).expect("an envelope always serialises");
    envelope_bytes.push(b'\n');
    let statement_path = dir.join(STATEMENT);
    std::fs::write(&statement_path, pretty(&value)).map_err(|e| io(&statement_path, e))?;
    let envelope_path = dir.join(ENVELOPE);
    std::fs::write(&envelope_path, envelope_bytes).map_err(|e| io(&envelope_path, e))
}

/// A canary bundle that verified.
#[derive(Debug)]
pub struct CanaryVerified {
    /// The canary as recomputed from the bundle.
    pub canary: Canary,
    pub keyid: String,
    pub key_source: String,
    /// What was checked, one line each.
    pub checks: Vec<String>,
}

fn reject(message: impl Into<String>) -> crate::verify::VerifyError {
    crate::verify::VerifyError::Rejected(message.into())
}

/// Recounts a seed's `diff.csv`: differing tasks, and those decided differently.
fn recount(path: &Path) -> Result<(u64, u64), String> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| io(path, e))?;
    let header = reader.headers().map_err(|e| io(path, e))?.clone();
    if header.iter().collect::<Vec<_>>() != super::diff::HEADER {
        return Err(format!("{}: not a diff.csv (header {:?})", path.display(), header));
    }
    let (mut tasks, mut decisions) = (0, 0);
    for record in reader.records() {
        let record = record.map_err(|e| io(path, e))?;
        tasks += 1;
        decisions += u64::from(record.get(3) != record.get(4));
    }
    Ok((tasks, decisions))
}

/// Folds one bundled event log and judges it.
fn refold(
    dir: &Path,
    stated: &Value,
    seed: u64,
    name: &str,
    policy: &seedcore_sim::scenario::Policy,
) -> Result<RunRef, String> {
    let file = stated["events"].as_str().ok_or("no events file named")?.to_string();
    let path = inside(dir, &file).ok_or_else(|| format!("{file}: not a path inside the bundle"))?;
    let fold = fold_events(&path, policy.window).map_err(|e| e.to_string())?;
    let start = fold.stats.run_start.as_ref().ok_or_else(|| format!("{file}: no run_start event"))?;
    if start.seed != seed.to_string() || start.scenario != name {
        return Err(format!(
            "{file}: run_start is scenario {:?} seed {}, the statement says {name:?} seed {seed}",
            start.scenario, start.seed
        ));
    }
    let results = evaluate(&fold.stats, policy, None);
    Ok(RunRef { events_file: file, root: fold.root, events: fold.size, stats: fold.stats, results })
}

type VerifyResult<T> = Result<T, crate::verify::VerifyError>;

/// `seedcore verify DIR` of a canary bundle.
pub fn verify(dir: &Path, keyring: &Keyring) -> VerifyResult<CanaryVerified> {
    let mut checks = Vec::new();
    let (verified, stated) = signed_statement(dir, keyring, &mut checks)?;
    let p = &stated["predicate"];
    let files = check_files(dir, p, &mut checks)?;
    let canary = recompute(dir, p, &files)?;
    checks.push(format!(
        "runs: {} seeds, {} event logs folded, Merkle roots recomputed, every invariant judged again",
        canary.seeds.len(),
        2 * canary.seeds.len()
    ));
    if p["verdict"] != canary.verdict.as_str() {
        return Err(reject(format!(
            "verdict: the statement says {}, the bundled event logs and rules give {}",
            p["verdict"],
            canary.verdict.as_str()
        )));
    }
    let report = std::fs::read(dir.join(REPORT)).map_err(|e| reject(format!("{REPORT}: {e}")))?;
    if report != super::render::canary_markdown(&canary).into_bytes() {
        return Err(reject(format!("{REPORT}: differs from the report the bundled logs give")));
    }
    let recomputed = statement(&canary, &files, &verified.keyid);
    if recomputed != stated {
        let field = first_difference(&stated, &recomputed, "");
        return Err(reject(format!("statement: {field} differs from what the bundled logs and rules give")));
    }
    checks.push(format!("verdict: {} recomputed from the logs and the rules, as stated", canary.verdict.as_str()));
    Ok(CanaryVerified { canary, keyid: verified.keyid, key_source: verified.key_source, checks })
}

/// The envelope signed by a trusted key, its canonical canary statement naming its signer,
/// and `statement.json` its copy.
fn signed_statement(dir: &Path, keyring: &Keyring, checks: &mut Vec<String>) -> VerifyResult<(dsse::Verified, Value)> {
    let verified =
        dsse::read_signed_file(&dir.join(ENVELOPE), ENVELOPE, MAX_ENVELOPE_BYTES, keyring).map_err(reject)?;
    checks.push(format!(
        "signature: Ed25519 (verify_strict) by trusted key {} ({})",
        verified.keyid, verified.key_source
    ));
    if !crate::jcs::is_canonical(&verified.payload) {
        return Err(reject("payload: not in RFC 8785 canonical form"));
    }
    let stated: Value = serde_json::from_slice(&verified.payload).map_err(|e| reject(format!("payload: {e}")))?;
    if stated["predicateType"] != CANARY_PREDICATE || stated["_type"] != STATEMENT_TYPE {
        return Err(reject(format!("payload: not an in-toto statement of {CANARY_PREDICATE}")));
    }
    let signer = &stated["predicate"]["signer"]["keyid"];
    if signer != verified.keyid.as_str() {
        return Err(reject(format!("payload: names signer {signer} but key {} signed it", verified.keyid)));
    }
    let copy = std::fs::read(dir.join(STATEMENT)).map_err(|e| reject(format!("{STATEMENT}: cannot read: {e}")))?;
    if copy != pretty(&stated) {
        return Err(reject(format!("{STATEMENT}: differs from the signed statement")));
    }
    Ok((verified, stated))
}

/// Every stated file's digest, and no file beside them.
fn check_files(dir: &Path, p: &Value, checks: &mut Vec<String>) -> VerifyResult<BTreeMap<String, String>> {
    let files: BTreeMap<String, String> =
        serde_json::from_value(p["files"].clone()).map_err(|e| reject(format!("payload: files: {e}")))?;
    let listed = list_files(dir).map_err(|e| reject(format!("cannot list the bundle: {e}")))?;
    for name in &listed {
        if name != ENVELOPE && name != STATEMENT && !files.contains_key(name) {
            return Err(reject(format!("{name}: a file the statement does not cover")));
        }
    }
    for (name, expected) in &files {
        let path = inside(dir, name).ok_or_else(|| reject(format!("{name}: not a path inside the bundle")))?;
        let digest = file_sha256(&path).map_err(|e| reject(format!("{name}: {e}")))?;
        if &digest != expected {
            return Err(reject(format!("{name}: sha256 {digest} differs from the stated {expected}")));
        }
    }
    checks.push(format!("files: {} digests match, no uncovered file", files.len()));
    Ok(files)
}

/// The canary the bundle gives: the bundled scenarios' policies and the candidate's rules,
/// every seed's logs folded and judged, its diff recounted. What cannot be recomputed (the
/// source paths in repro commands, the candidate build) is the statement's.
fn recompute(dir: &Path, p: &Value, files: &BTreeMap<String, String>) -> VerifyResult<Canary> {
    let judgement = |file: &str| {
        seedcore_sim::scenario::load_judgement(&dir.join(file)).map_err(|e| reject(format!("{file}: {e}")))
    };
    let (base_name, base_policy, _) = judgement(BASE_FILE)?;
    let (candidate_name, candidate_policy, rules) = judgement(CANDIDATE_FILE)?;
    let stated_ref = |side: &str, file: &str, name: String| -> VerifyResult<ScenarioRef> {
        Ok(ScenarioRef {
            name,
            file: file.to_string(),
            sha256: files.get(file).cloned().ok_or_else(|| reject(format!("{file}: not in the bundle")))?,
            source_path: p[side]["source"].as_str().unwrap_or_default().to_string(),
        })
    };
    let base = stated_ref("base", BASE_FILE, base_name.clone())?;
    let candidate = stated_ref("candidate", CANDIDATE_FILE, candidate_name.clone())?;
    let binary = match &p["candidate_bin"] {
        Value::Null => None,
        bin => Some(BinaryRef {
            path: bin["path"].as_str().unwrap_or_default().to_string(),
            sha256: bin["sha256"].as_str().unwrap_or_default().to_string(),
        }),
    };
    let stated_seeds = p["seeds"].as_array().ok_or_else(|| reject("payload: no seeds"))?;
    let mut seeds = Vec::new();
    for s in stated_seeds {
        let seed: u64 =
            s["seed"].as_str().and_then(|t| t.parse().ok()).ok_or_else(|| reject("payload: a seed is not a u64"))?;
        let at = |e: String| reject(format!("seed {seed}: {e}"));
        let b = refold(dir, &s["base"], seed, &base_name, &base_policy).map_err(at)?;
        let c = refold(dir, &s["candidate"], seed, &candidate_name, &candidate_policy).map_err(at)?;
        let diff =
            inside(dir, &format!("runs/{seed}/diff.csv")).ok_or_else(|| reject(format!("seed {seed}: no diff")))?;
        let (differing, decisions_differing) = recount(&diff).map_err(at)?;
        let findings = judge_seed(&rules, (&b.stats, &b.results), (&c.stats, &c.results));
        seeds.push(SeedRun {
            seed,
            effect: seed_effect(&findings),
            findings,
            differing,
            decisions_differing,
            repro: s["repro"].as_str().unwrap_or_default().to_string(),
            base: b,
            candidate: c,
        });
    }
    let worst = seeds.iter().map(|s| s.effect).max().unwrap_or(Effect::Promote);
    Ok(Canary { verdict: CanaryVerdict::of(worst), base, candidate, binary, rules, seeds })
}

/// The path of the first value that differs between two JSON documents.
fn first_difference(a: &Value, b: &Value, at: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                if x.get(k) != y.get(k) {
                    return first_difference(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{at}.{k}"),
                    );
                }
            }
            at.to_string()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return first_difference(p, q, &format!("{at}[{i}]"));
                }
            }
            at.to_string()
        }
        _ => at.trim_start_matches('.').to_string(),
    }
}

/// `name` below `dir`, when it is a relative path with no `..` (a statement names only
/// files inside its bundle).
fn inside(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(name);
    let plain = path.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && !name.is_empty()).then(|| dir.join(path))
}
