//! Offline verification of a certification bundle (docs/certification.md 8.5). It trusts nothing it
//! can recompute: the envelope's signature by a trusted key, the payload's canonical form, the
//! statement copy, every file's digest (and no file beside them), the event log's sequence, Merkle
//! root and size, the signature log, and then every invariant, the score and the outcome,
//! recomputed from `events.jsonl` and the bundled scenario's policy.

use crate::certify::{file_sha256, list_files, parse_score, CERTIFICATE, STATEMENT};
use crate::data::{report_data, Provenance};
use crate::dsse;
use crate::fold::{fold_events, EventFold};
use crate::keys::Keyring;
use crate::model::ReportData;
use crate::siglog::signature_log;
use crate::statement::{
    pretty, Predicate, Statement, LIVE_AGREEMENT, LIVE_CAPTURE, LIVE_DISAGREEMENTS, PREDICATE_TYPE, PREDICATE_TYPE_V1,
    STATEMENT_TYPE,
};
use seedcore_sim::compare::{read_capture, read_disagreements};
use seedcore_sim::invariants::{LiveAgreement, Replays};
use seedcore_sim::Scenario;
use std::path::{Component, Path};

/// Largest certificate envelope read (the statement is a few tens of kB).
const MAX_ENVELOPE_BYTES: u64 = 16 << 20;

/// Why a bundle is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bundle cannot be opened at all (exit 2).
    #[error("{path}: {message}")]
    Unreadable { path: String, message: String },
    /// The bundle was read and is rejected (exit 4).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// A bundle that verified.
#[derive(Debug)]
pub struct Verification {
    /// What was checked, in order, one line each.
    pub checks: Vec<String>,
    /// Things a reviewer should know that do not invalidate the bundle.
    pub warnings: Vec<String>,
    pub statement: Statement,
    /// The report as recomputed.
    pub data: ReportData,
}

fn reject(message: impl Into<String>) -> VerifyError {
    VerifyError::Rejected(message.into())
}

fn hex32(text: &str, what: &str) -> Result<[u8; 32], VerifyError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| reject(format!("{what} {text:?} is not a hex SHA-256 digest")))
}

/// What verification found so far: the checks passed and the warnings.
#[derive(Default)]
struct Findings {
    checks: Vec<String>,
    warnings: Vec<String>,
}

/// Verifies the bundle in `dir` against `keyring`. With `expected_scenario`, the bundle
/// must certify exactly that scenario file. Each step is a function below, in order.
pub fn verify_bundle(
    dir: &Path,
    keyring: &Keyring,
    expected_scenario: Option<&Path>,
) -> Result<Verification, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::Unreadable {
            path: dir.display().to_string(),
            message: "not a directory (give the report directory certify wrote)".into(),
        });
    }
    let mut r = Findings::default();
    let (statement, value) = signed_statement(dir, keyring, &mut r)?;
    let p = &statement.predicate;
    check_statement_copy(dir, &value, &mut r)?;
    check_files(dir, p, &mut r)?;
    let scenario = check_scenario(dir, &statement, expected_scenario, &mut r)?;
    let (fold, seed) = check_event_log(dir, p, &scenario, &mut r)?;
    check_signature_log(dir, &fold, &mut r)?;
    check_ledger(p, &fold, &mut r)?;
    let live = check_live(dir, p, &mut r)?;
    let data = recompute(p, &scenario, seed, &fold, live, &mut r)?;
    let Findings { checks, warnings } = r;
    Ok(Verification { checks, warnings, statement, data })
}

/// 1 and 2: the envelope, a signature by a trusted key, and a canonical in-toto statement
/// of this predicate naming its signer.
fn signed_statement(
    dir: &Path,
    keyring: &Keyring,
    r: &mut Findings,
) -> Result<(Statement, serde_json::Value), VerifyError> {
    // 1. The envelope, as certify writes it, and its signature.
    let certificate = dir.join(CERTIFICATE);
    let verified = dsse::read_signed_file(&certificate, CERTIFICATE, MAX_ENVELOPE_BYTES, keyring).map_err(reject)?;
    r.checks.push(format!(
        "signature: Ed25519 (verify_strict) by trusted key {} ({})",
        verified.keyid, verified.key_source
    ));

    // 2. The payload: canonical, an in-toto statement of this predicate.
    if !crate::jcs::is_canonical(&verified.payload) {
        return Err(reject("payload: not in RFC 8785 canonical form (or holds a non-integer number)"));
    }
    let value: serde_json::Value = serde_json::from_slice(&verified.payload).expect("canonical payloads parse");
    // The version first: an older predicate has other fields.
    if value["predicateType"] == PREDICATE_TYPE_V1 {
        return Err(reject(format!(
            "payload: a {PREDICATE_TYPE_V1} certificate, from a seedcore whose ledger key was a constant in the \
             source; its ledger signatures prove nothing, so this version does not verify it: certify the scenario again"
        )));
    }
    let statement: Statement = serde_json::from_value(value.clone())
        .map_err(|e| reject(format!("payload: not a certification statement: {e}")))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(reject(format!("payload: _type {:?} is not {STATEMENT_TYPE:?}", statement.statement_type)));
    }
    if statement.predicate_type != PREDICATE_TYPE {
        return Err(reject(format!("payload: predicateType {:?} is not {PREDICATE_TYPE:?}", statement.predicate_type)));
    }
    r.checks.push("payload: canonical JSON (RFC 8785), in-toto Statement v1, seedcore certification v2".into());
    let p = &statement.predicate;
    if p.signer.keyid != verified.keyid {
        return Err(reject(format!("payload: names signer {} but key {} signed it", p.signer.keyid, verified.keyid)));
    }
    if p.signer.development {
        r.warnings.push("signed with a development key: a local check, not a release certificate".into());
    }
    Ok((statement, value))
}

/// The pretty `statement.json` is the signed payload, byte for byte.
fn check_statement_copy(dir: &Path, value: &serde_json::Value, r: &mut Findings) -> Result<(), VerifyError> {
    let statement_copy =
        std::fs::read(dir.join(STATEMENT)).map_err(|e| reject(format!("{STATEMENT}: cannot read: {e}")))?;
    if statement_copy != pretty(value) {
        return Err(reject(format!("{STATEMENT}: differs from the signed statement")));
    }
    r.checks.push(format!("{STATEMENT}: the signed statement, byte for byte"));
    Ok(())
}

/// 3. Every file's digest, and no file beside them.
fn check_files(dir: &Path, p: &Predicate, r: &mut Findings) -> Result<(), VerifyError> {
    let listed = list_files(dir).map_err(|e| reject(format!("cannot list the bundle: {e}")))?;
    for name in &listed {
        if name != CERTIFICATE && name != STATEMENT && !p.files.contains_key(name) {
            return Err(reject(format!("{name}: a file the certificate does not cover")));
        }
    }
    for (name, expected) in &p.files {
        let path = Path::new(name);
        if !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(reject(format!("files: {name:?} is not a path inside the bundle")));
        }
        let actual = file_sha256(&dir.join(path)).map_err(|e| reject(format!("{name}: cannot read: {e}")))?;
        if &actual != expected {
            return Err(reject(format!("{name}: digest mismatch (the file was changed after signing)")));
        }
    }
    r.checks.push(format!("files: {} digests match, no uncovered file", p.files.len()));
    Ok(())
}

/// 4. The scenario: bundled, named by the statement, and the expected one if given.
fn check_scenario(
    dir: &Path,
    statement: &Statement,
    expected_scenario: Option<&Path>,
    r: &mut Findings,
) -> Result<Scenario, VerifyError> {
    let p = &statement.predicate;
    let scenario_path = dir.join(&p.scenario.file);
    if p.files.get(&p.scenario.file) != Some(&p.scenario.sha256)
        || !statement.subject.iter().any(|s| s.digest.get("sha256") == Some(&p.scenario.sha256))
    {
        return Err(reject("scenario: its digest is not the statement's subject"));
    }
    let scenario = seedcore_sim::load(&scenario_path).map_err(|e| reject(format!("scenario: {e}")))?;
    if scenario.name != p.scenario.name {
        return Err(reject(format!("scenario: named {:?}, the statement says {:?}", scenario.name, p.scenario.name)));
    }
    if let Some(expected) = expected_scenario {
        let source = std::fs::read(expected).map_err(|e| VerifyError::Unreadable {
            path: expected.display().to_string(),
            message: format!("cannot read the expected scenario: {e}"),
        })?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&source));
        if digest != p.scenario.sha256 {
            return Err(reject(format!(
                "scenario: this bundle certifies {:?} (sha256 {}), not {} (sha256 {})",
                p.scenario.name,
                &p.scenario.sha256[..16.min(p.scenario.sha256.len())],
                expected.display(),
                &digest[..16]
            )));
        }
        r.checks.push(format!("scenario: the bundle certifies {}", expected.display()));
    }
    r.checks.push(format!("scenario: {} (sha256 {})", scenario.name, p.scenario.sha256));
    Ok(scenario)
}

/// 5. The event log: sequence, canonical lines, Merkle root and size, and its run_start.
fn check_event_log(
    dir: &Path,
    p: &Predicate,
    scenario: &Scenario,
    r: &mut Findings,
) -> Result<(EventFold, u64), VerifyError> {
    let events = dir.join(&p.event_log.file);
    let fold = fold_events(&events, scenario.policy.window).map_err(|e| reject(format!("event log: {e}")))?;
    if fold.size != p.event_log.size {
        return Err(reject(format!("event log: {} events, the statement says {}", fold.size, p.event_log.size)));
    }
    if hex::encode(fold.root) != p.event_log.merkle_root {
        return Err(reject(format!(
            "event log: Merkle root {} differs from the stated {}",
            hex::encode(fold.root),
            p.event_log.merkle_root
        )));
    }
    r.checks.push(format!(
        "event log: {} events, seq 0..{} without gap, Merkle root {}",
        fold.size, fold.size, p.event_log.merkle_root
    ));
    let seed: u64 = p.seed.parse().map_err(|_| reject(format!("seed: {:?} is not a u64", p.seed)))?;
    let start = fold.stats.run_start.as_ref().ok_or_else(|| reject("event log: no run_start event"))?;
    if start.seed != p.seed || start.scenario != scenario.name || start.scenario_sha256 != p.scenario.sha256 {
        return Err(reject(format!(
            "event log: run_start is scenario {:?} seed {} ({}), the statement says {:?} seed {}",
            start.scenario, start.seed, start.scenario_sha256, p.scenario.name, p.seed
        )));
    }
    Ok((fold, seed))
}

/// 6. The signature log, regenerated.
fn check_signature_log(dir: &Path, fold: &EventFold, r: &mut Findings) -> Result<(), VerifyError> {
    let (log, failed) = signature_log(fold);
    let on_disk = std::fs::read(dir.join("signature_log.json"))
        .map_err(|e| reject(format!("signature_log.json: cannot read: {e}")))?;
    if on_disk != log {
        return Err(reject("signature_log.json: differs from the cycles in the event log"));
    }
    r.checks.push(format!(
        "signature log: {} ledger cycles, {} failed to verify",
        fold.stats.ledger_cycles.len(),
        failed
    ));
    Ok(())
}

/// Step 7, the ledger bound to the outcomes: the key is the one the seed gives, and every
/// signed cycle head is the head of the chain rebuilt from the outcome events. A chain
/// mismatch is only a warning here: it is also a failed `ledger_integrity`, which step 8
/// compares with the statement, and an honest certificate may state that failure.
fn check_ledger(p: &Predicate, fold: &EventFold, r: &mut Findings) -> Result<(), VerifyError> {
    let derived = fold.stats.ledger_public_key();
    if p.ledger.public_key != derived {
        return Err(reject(format!(
            "ledger: the statement names key {}, but seed {} gives {derived}",
            p.ledger.public_key, p.seed
        )));
    }
    match fold.stats.chain_bound() {
        Ok(()) => r.checks.push(format!(
            "ledger: {} receipts rebuilt from the outcome events; all {} signed cycle heads equal the rebuilt \
             chain, signed by the seed's key {}…",
            fold.stats.chain.receipts(),
            fold.stats.ledger_cycles.len(),
            &derived[..16.min(derived.len())]
        )),
        Err(problem) => r.warnings.push(format!("ledger: {problem}")),
    }
    Ok(())
}

/// Step 8, the live half of determinism, when the certificate has one: the bundled
/// capture holds the stated number of tasks, `agreement.json` states the same figures, and
/// the disagreements listed are exactly the stated number, each a captured task with its
/// live decision and another replayed one.
/// Which tasks the simulator decides alike needs a simulation: `reproduce` re-runs it.
fn check_live(dir: &Path, p: &Predicate, r: &mut Findings) -> Result<Option<LiveAgreement>, VerifyError> {
    let Some(live) = &p.determinism.live else {
        if p.files.keys().any(|f| f.starts_with("live/")) {
            r.warnings.push("live/: the bundle holds live files, and the statement claims no live half".into());
        }
        return Ok(None);
    };
    if live.capture != LIVE_CAPTURE || live.disagreements != LIVE_DISAGREEMENTS {
        return Err(reject(format!(
            "determinism.live: names {} and {}, a bundle keeps them at {LIVE_CAPTURE} and {LIVE_DISAGREEMENTS}",
            live.capture, live.disagreements
        )));
    }
    for file in [LIVE_CAPTURE, LIVE_DISAGREEMENTS, LIVE_AGREEMENT] {
        if !p.files.contains_key(file) {
            return Err(reject(format!("{file}: the live half names it, and the bundle does not hold it")));
        }
    }
    let captured = read_capture(&dir.join(LIVE_CAPTURE)).map_err(|e| reject(format!("{LIVE_CAPTURE}: {e}")))?;
    if captured.len() as u64 != live.tasks {
        return Err(reject(format!(
            "{LIVE_CAPTURE}: holds {} tasks, the statement says {}",
            captured.len(),
            live.tasks
        )));
    }
    if live.agreed > live.tasks {
        return Err(reject(format!("determinism.live: {} of {} tasks agree", live.agreed, live.tasks)));
    }
    let decisions: std::collections::BTreeMap<u64, &str> =
        captured.iter().map(|c| (c.task.task_id, c.decision.as_str())).collect();
    let listed =
        read_disagreements(&dir.join(LIVE_DISAGREEMENTS)).map_err(|e| reject(format!("{LIVE_DISAGREEMENTS}: {e}")))?;
    let mut seen = std::collections::BTreeSet::new();
    for d in &listed {
        match decisions.get(&d.task_id) {
            None => return Err(reject(format!("{LIVE_DISAGREEMENTS}: task {} is not in the capture", d.task_id))),
            Some(decision) if *decision != d.live => {
                return Err(reject(format!(
                    "{LIVE_DISAGREEMENTS}: task {} was decided {decision:?} live, the list says {:?}",
                    d.task_id, d.live
                )))
            }
            Some(_) if d.replayed == d.live => {
                return Err(reject(format!("{LIVE_DISAGREEMENTS}: task {} is listed but agrees", d.task_id)))
            }
            Some(_) if !seen.insert(d.task_id) => {
                return Err(reject(format!("{LIVE_DISAGREEMENTS}: task {} is listed twice", d.task_id)))
            }
            Some(_) => {}
        }
    }
    if listed.len() as u64 != live.tasks - live.agreed {
        return Err(reject(format!(
            "{LIVE_DISAGREEMENTS}: lists {} disagreements, the statement's {} of {} agreeing leave {}",
            listed.len(),
            live.agreed,
            live.tasks,
            live.tasks - live.agreed
        )));
    }
    let text = std::fs::read(dir.join(LIVE_AGREEMENT)).map_err(|e| reject(format!("{LIVE_AGREEMENT}: {e}")))?;
    let figures: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| reject(format!("{LIVE_AGREEMENT}: not JSON: {e}")))?;
    if figures["tasks"].as_u64() != Some(live.tasks) || figures["agreed"].as_u64() != Some(live.agreed) {
        return Err(reject(format!(
            "{LIVE_AGREEMENT}: says {} of {} agree, the statement {} of {}",
            figures["agreed"], figures["tasks"], live.agreed, live.tasks
        )));
    }
    r.checks.push(format!(
        "live half: {LIVE_CAPTURE} holds {} tasks; the {} disagreements listed are captured tasks with their live \
         decisions (reproduce re-runs the comparison)",
        live.tasks,
        listed.len()
    ));
    Ok(Some(LiveAgreement { tasks: live.tasks, agreed: live.agreed }))
}

/// 9. Every invariant, the score, the outcome and the run figures, recomputed.
fn recompute(
    p: &Predicate,
    scenario: &Scenario,
    seed: u64,
    fold: &EventFold,
    live: Option<LiveAgreement>,
    r: &mut Findings,
) -> Result<ReportData, VerifyError> {
    let replays = Replays {
        reference: hex32(&p.determinism.reference, "determinism reference")?,
        replays: p.determinism.replays.iter().map(|r| hex32(r, "replay digest")).collect::<Result<_, _>>()?,
        live,
    };
    if replays.reference != fold.root {
        return Err(reject("determinism: the reference digest is not the event log's root"));
    }
    let provenance = Provenance {
        build_sha256: p.engine.build_sha256.clone(),
        toolchain: p.engine.toolchain.clone(),
        key_id: p.signer.keyid.clone(),
        development_key: p.signer.development,
        regressions: p.regressions.clone(),
    };
    let (data, _) = report_data(scenario, seed, fold, &replays, provenance);
    for (recomputed, stated) in data.invariants.iter().zip(&p.invariants) {
        if recomputed != stated {
            return Err(reject(format!(
                "invariant {}: stated {} ({}), recomputed {} ({}: {})",
                stated.id, stated.verdict, stated.observed, recomputed.verdict, recomputed.observed, recomputed.detail
            )));
        }
    }
    if data.invariants.len() != p.invariants.len() {
        return Err(reject(format!("invariants: {} stated, {} recomputed", p.invariants.len(), data.invariants.len())));
    }
    r.checks
        .push(format!("invariants: all {} recomputed from the events equal the stated ones", data.invariants.len()));
    if parse_score(&p.score) != Some(data.score.0) || p.outcome != data.outcome.as_str() {
        return Err(reject(format!(
            "outcome: stated {} (score {}), recomputed {} (score {})",
            p.outcome,
            p.score,
            data.outcome.as_str(),
            data.score
        )));
    }
    if p.policy_changes != data.policy_changes {
        return Err(reject(format!(
            "policy: the statement lists {} change(s) from the defaults, the bundled scenario makes {}",
            p.policy_changes.len(),
            data.policy_changes.len()
        )));
    }
    if p.critical_failures != data.critical_failures {
        return Err(reject("outcome: the stated critical failures differ from the recomputed ones"));
    }
    let figures = (data.arrivals, data.lost, data.total_cost_micro_usd, data.duration_ms, data.epoch_utc_ms);
    let stated = (p.run.arrivals, p.run.lost, p.run.total_cost_micro_usd, p.run.duration_ms, p.run.epoch_utc_ms);
    if figures != stated {
        return Err(reject("run: the stated figures differ from the recomputed ones"));
    }
    r.checks.push(format!("outcome: {} with score {}, as stated", p.outcome, p.score));
    Ok(data)
}
