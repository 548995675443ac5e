//! The weekly attestation (docs/certification.md 8.8; seed 003, sections 2.2, 3 and 4.2): over
//! the certifications a verified log lists in a window, every bundle re-verified against
//! trusted keys, the figures (certifications by outcome, signature validation rate,
//! determinism rate, replay agreement, economic safety), the deviations with their class and
//! action, and a status: PASS, PASS WITH CONDITIONS, or FAIL (production paused).
//!
//! It is written as Markdown for people and as a signed in-toto statement for machines. The
//! Markdown is a pure function of the signed predicate, and every figure is computed by one
//! function (`figures::predicate`) from the re-verified bundles: `attest` states what it
//! returns, and `verify_attestation` calls it again on the bundles the attestation names and
//! refuses any figure that differs. As in a certificate, every number is an integer (ppm,
//! counts) and everything else a string.

use crate::statement::Subject;
use serde::{Deserialize, Serialize};

mod check;
mod classify;
mod figures;
mod render;
mod write;

pub use check::{verify_attestation, verify_attestation_with, AttestationCheck};
pub use classify::{classify, status, Finding, ECONOMIC};
pub use render::{markdown, markdown_name, percent};
pub use write::{attest, AttestError, AttestRequest, Attested};

/// The signed envelope's file name.
pub const ENVELOPE: &str = "attestation.dsse.json";
/// The pretty statement's file name.
pub const STATEMENT: &str = "attestation.json";
/// This project's weekly attestation predicate, versioned.
pub const PREDICATE_TYPE: &str = "https://seedcore.dev/attestations/weekly/v1";
/// One million: a ratio of 100 % in ppm.
pub const PPM_ONE: u64 = 1_000_000;

/// An in-toto Statement v1 with the weekly predicate. Fields are declared in sorted
/// order, the order of their canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationStatement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub predicate: WeeklyPredicate,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// One per certification of the window: its bundle as the log stores it, by the
    /// SHA-256 of its certificate envelope.
    pub subject: Vec<Subject>,
}

/// What the attestation states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyPredicate {
    pub by_outcome: ByOutcome,
    /// Why the status is not PASS, one sentence each (empty for PASS).
    pub conditions: Vec<String>,
    /// Share of the verified certifications whose `determinism` invariant passes; none
    /// when no certification verified.
    pub determinism_ppm: Option<u64>,
    pub deviations: Vec<Deviation>,
    /// Verdicts of the economic invariants (`ECONOMIC`) across the verified certifications.
    pub economic_safety: Vec<VerdictTally>,
    /// The certifications of the window, in log order.
    pub entries: Vec<EntryRow>,
    pub log: LogRef,
    pub replay_agreement: ReplayAgreement,
    /// Entries whose bundle verified and is the one the log lists, per million entries
    /// (1000000 for a window without entries).
    pub signature_validation_ppm: u64,
    /// `PASS`, `PASS WITH CONDITIONS` or `FAIL`.
    pub status: String,
    pub window: Window,
}

/// Certifications of the window by outcome, as the log lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByOutcome {
    pub fail: u64,
    pub pass: u64,
    pub pass_with_conditions: u64,
}

/// The certification log attested over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRef {
    /// The log's directory, relative to the attestation's directory when possible.
    pub path: String,
    /// RFC 6962 Merkle root over every entry of the log, hex.
    pub root: String,
    /// Entries in the log (all of them, not only the window's).
    pub size: u64,
}

/// Determinism replays across the verified certifications.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayAgreement {
    /// Replays whose Merkle root equals their run's reference root.
    pub matching: u64,
    pub replays: u64,
}

/// The window, UTC, RFC 3339 to the second: `since <= time < until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub since: String,
    pub until: String,
}

/// How often one invariant had each verdict across the verified certifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictTally {
    pub fail: u64,
    pub id: String,
    pub pass: u64,
    pub skipped: u64,
    pub warn: u64,
}

/// One certification of the window: the log's entry and what re-verifying its bundle found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRow {
    /// The bundle's directory relative to the attestation's directory (absolute when it
    /// cannot be), so that `verify` finds it from there.
    pub bundle: String,
    /// SHA-256 of the bundle's `certificate.dsse.json`, as the log lists it.
    pub envelope_sha256: String,
    /// Position in the log.
    pub index: u64,
    pub key_id: String,
    pub outcome: String,
    /// Why the bundle did not verify; none when it did.
    pub reason: Option<String>,
    pub scenario: String,
    pub score: String,
    /// Decimal.
    pub seed: String,
    /// When it was appended to the log, UTC, RFC 3339.
    pub time: String,
    /// The bundle is there, verifies against the trusted keys, is the one the log lists,
    /// and certifies what the log says.
    pub verified: bool,
}

/// A deviation of seed 003, section 3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    pub action: Action,
    pub class: Class,
    /// What was found, e.g. `cost_ceiling: fail (...)`.
    pub detail: String,
    /// The log index of the certification.
    pub entry: u64,
    pub scenario: String,
    pub seed: String,
}

/// The deviation classes of seed 003, section 3.1, and the SLO breach of a non-critical
/// invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    SignatureVerificationFailure,
    CostCeilingBreach,
    ComplianceFailure,
    DeterminismThresholdFailure,
    SloBreach,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::SignatureVerificationFailure => "signature_verification_failure",
            Class::CostCeilingBreach => "cost_ceiling_breach",
            Class::ComplianceFailure => "compliance_failure",
            Class::DeterminismThresholdFailure => "determinism_threshold_failure",
            Class::SloBreach => "slo_breach",
        }
    }

    /// The action of seed 003, 3.1 (an SLO breach is alerted on, as a determinism failure).
    pub fn action(self) -> Action {
        match self {
            Class::SignatureVerificationFailure => Action::Halt,
            Class::CostCeilingBreach => Action::Block,
            Class::ComplianceFailure => Action::Pause,
            Class::DeterminismThresholdFailure | Class::SloBreach => Action::Alert,
        }
    }

    /// The escalation SLA of seed 003, 3.1, from detection.
    pub fn sla(self) -> &'static str {
        match self {
            Class::SignatureVerificationFailure => "1 h",
            Class::CostCeilingBreach => "2 h",
            Class::ComplianceFailure => "4 h",
            Class::DeterminismThresholdFailure | Class::SloBreach => "24 h",
        }
    }
}

/// What a deviation requires (seed 003, 3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Halt,
    Block,
    Pause,
    Alert,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Halt, Action::Block, Action::Pause, Action::Alert];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Halt => "halt",
            Action::Block => "block",
            Action::Pause => "pause",
            Action::Alert => "alert",
        }
    }

    /// What it means for production, in seed 003's words.
    pub fn meaning(self) -> &'static str {
        match self {
            Action::Halt => "halt the orchestrator",
            Action::Block => "block execution",
            Action::Pause => "pause production",
            Action::Alert => "alert and investigate",
        }
    }

    /// Whether production stops: every action but an alert.
    pub fn stops_production(self) -> bool {
        self != Action::Alert
    }
}

#[cfg(test)]
mod tests;
