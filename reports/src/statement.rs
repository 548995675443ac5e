//! The certificate's payload (docs/certification.md 8.4): an in-toto Statement v1 whose subjects
//! are the engine build and the scenario, and whose predicate holds the results. Every number is an
//! integer (ppm, micro-USD, ms, counts); scores, thresholds and observations are decimal strings;
//! there is no timestamp, so the same binary, scenario, seed and key give the same bytes.

use crate::model::{InvariantRow, ReportData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// How the binary was built, as `EngineRef` states it: defined with the report's model, which
// reads it too, and named here as well, where the certificate's readers have always found it.
pub use crate::model::Toolchain;
// A policy setting that differs from the defaults: defined with the report's model.
pub use crate::model::PolicyChange;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// This project's predicate, versioned. v2 added the ledger (its key derived from the seed,
/// bound to the outcomes) and the build's toolchain.
pub const PREDICATE_TYPE: &str = "https://seedcore.dev/attestations/certification/v2";
/// The predicate before v2: its ledger key was a constant in the source, so its cycle
/// signatures prove nothing, and this version does not verify it.
pub const PREDICATE_TYPE_V1: &str = "https://seedcore.dev/attestations/certification/v1";

/// An in-toto Statement v1 with the certification predicate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Predicate,
}

/// A subject by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// The results of a certification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// `PASS`, `PASS WITH CONDITIONS` or `FAIL`.
    pub outcome: String,
    /// Out of 100, two decimals, e.g. `"97.50"`.
    pub score: String,
    pub critical_failures: Vec<String>,
    pub invariants: Vec<InvariantRow>,
    /// The run seed, decimal (a u64 does not fit a JSON number exactly).
    pub seed: String,
    pub scenario: ScenarioRef,
    pub engine: EngineRef,
    pub event_log: EventLogRef,
    pub ledger: LedgerRef,
    /// SHA-256 of every other file of the bundle, by path relative to it.
    pub files: BTreeMap<String, String>,
    pub determinism: DeterminismRef,
    pub run: RunFigures,
    pub signer: SignerRef,
    /// Regressions against a baseline certificate (empty without one).
    pub regressions: Vec<String>,
    /// The baseline compared with, if any.
    pub baseline: Option<BaselineRef>,
    /// Every policy setting that differs from docs/certification.md 8.1's defaults. Absent
    /// when there is none (the bytes of such a statement are as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_changes: Vec<PolicyChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioRef {
    pub name: String,
    pub description: String,
    /// The bundle's copy.
    pub file: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineRef {
    pub version: String,
    /// SHA-256 of the executable that ran the simulation.
    pub build_sha256: String,
    /// Which build ran: `simulation` (madsim).
    pub build: String,
    /// What a reviewer needs to rebuild the binary.
    pub toolchain: Toolchain,
}

/// The ledger of the run: the key its cycles are signed with, stated so that a reviewer
/// can check it is the one the seed gives, and what was committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerRef {
    /// The Ed25519 public key of the ledger, hex.
    pub public_key: String,
    /// How the simulator derives the key from the seed.
    pub key_derivation: String,
    pub receipts: u64,
    pub cycles: u64,
}

/// How a simulated run's ledger key derives from its seed (see
/// `seedcore_engine::config::simulation_key_seed`).
pub const LEDGER_KEY_DERIVATION: &str =
    "ed25519 seed = SHA-256(\"seedcore/ledger-key/simulation/v1\\n\" || seed as 8 bytes big-endian)";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogRef {
    pub file: String,
    /// RFC 6962 Merkle root over the lines (without their newlines), hex.
    pub merkle_root: String,
    /// Number of lines (leaves).
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeterminismRef {
    /// Root of the run whose events are in the bundle.
    pub reference: String,
    /// Roots of the replays of the same seed.
    pub replays: Vec<String>,
    pub matching: u64,
    /// The live half: a capture of the live gateway replayed in the simulator. Absent
    /// when the certification had no capture (the bytes of such a statement are as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveRef>,
}

/// Where the bundle keeps a live capture and its comparison.
pub const LIVE_CAPTURE: &str = "live/capture.csv";
/// The comparison's disagreements (what `compare` writes).
pub const LIVE_DISAGREEMENTS: &str = "live/disagreements.csv";
/// The comparison's figures (what `compare` writes), held equal to the statement's.
pub const LIVE_AGREEMENT: &str = "live/agreement.json";

/// The live half of `determinism`: the bundled capture, the tasks it holds, and how many
/// of them the simulator decided as the live engine did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRef {
    /// The capture, as `serve --capture` wrote it.
    pub capture: String,
    /// The tasks decided differently, one row each.
    pub disagreements: String,
    pub tasks: u64,
    pub agreed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFigures {
    pub arrivals: u64,
    pub lost: u64,
    pub duration_ms: u64,
    pub epoch_utc_ms: u64,
    pub total_cost_micro_usd: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerRef {
    pub keyid: String,
    /// Signed with the development key: a local check, not a release certificate.
    pub development: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRef {
    pub merkle_root: String,
    pub outcome: String,
    pub score: String,
    pub scenario_sha256: String,
    pub seed: String,
}

/// The statement of a certification: `data` as recomputed from the bundle, `files` the
/// digests of every other file in it, `baseline` the certificate compared with.
pub fn statement(data: &ReportData, files: BTreeMap<String, String>, baseline: Option<BaselineRef>) -> Statement {
    let digest = |sha: &str| BTreeMap::from([("sha256".to_string(), sha.to_string())]);
    Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: vec![
            Subject { name: format!("seedcore@{}", data.engine_version), digest: digest(&data.build_sha256) },
            Subject { name: format!("scenario:{}", data.scenario), digest: digest(&data.scenario_sha256) },
        ],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            outcome: data.outcome.as_str().into(),
            score: data.score.to_string(),
            critical_failures: data.critical_failures.clone(),
            invariants: data.invariants.clone(),
            seed: data.seed.to_string(),
            scenario: ScenarioRef {
                name: data.scenario.clone(),
                description: data.description.clone(),
                file: "scenario.toml".into(),
                sha256: data.scenario_sha256.clone(),
            },
            engine: EngineRef {
                version: data.engine_version.clone(),
                build_sha256: data.build_sha256.clone(),
                build: "simulation".into(),
                toolchain: data.toolchain.clone(),
            },
            event_log: EventLogRef {
                file: "events.jsonl".into(),
                merkle_root: data.merkle_root.clone(),
                size: data.events,
            },
            ledger: LedgerRef {
                public_key: data.ledger_public_key.clone(),
                key_derivation: LEDGER_KEY_DERIVATION.into(),
                receipts: data.ledger_receipts,
                cycles: data.ledger_cycles,
            },
            files,
            determinism: DeterminismRef {
                reference: data.determinism.reference.clone(),
                replays: data.determinism.replays.clone(),
                matching: data.determinism.matching() as u64,
                live: data.determinism.live.map(|live| LiveRef {
                    capture: LIVE_CAPTURE.into(),
                    disagreements: LIVE_DISAGREEMENTS.into(),
                    tasks: live.tasks,
                    agreed: live.agreed,
                }),
            },
            run: RunFigures {
                arrivals: data.arrivals,
                lost: data.lost,
                duration_ms: data.duration_ms,
                epoch_utc_ms: data.epoch_utc_ms,
                total_cost_micro_usd: data.total_cost_micro_usd,
            },
            signer: SignerRef { keyid: data.key_id.clone(), development: data.development_key },
            regressions: data.regressions.clone(),
            baseline,
            policy_changes: data.policy_changes.clone(),
        },
    }
}

/// `statement.json`: the statement pretty-printed for people, with a final newline. It is
/// a pure function of the signed payload, so a verifier regenerates it byte for byte.
pub fn pretty(payload: &serde_json::Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(payload).expect("a serde_json::Value always serialises");
    bytes.push(b'\n');
    bytes
}
