//! The event log (docs/harness.md 6): one canonical JSON object per line,
//! `{"data":{...},"kind":"...","node":"...","seq":n,"t_ms":n}`.
//!
//! Engine signals and the harness's own records share the line format. Every payload
//! declares its fields in sorted order and carries no floats, so serde's output is the
//! RFC 8785 canonical form (checked by the tests below), and lines parse back into the same
//! types for verification.

use seedcore_engine::probe::Signal;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

seedcore_engine::signal_set! {
    /// Records written by the harness itself (never by the engine).
    Harness {
        RunStart(RunStart) = "run_start",
        Arrival(Arrival) = "arrival",
        FaultPlan(FaultPlanRecord) = "fault_plan",
        Fault(FaultRecord) = "fault",
        FaultEnd(FaultEnd) = "fault_end",
        LedgerCycle(LedgerCycle) = "ledger_cycle",
        LedgerCheck(LedgerCheck) = "ledger_check",
        RunEnd(RunEnd) = "run_end",
    }
}

/// The first event of a run: what the run is and the limits its invariants check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStart {
    pub ceiling_micro_usd: u64,
    pub daily_budget_micro_usd: u64,
    pub duration_ms: u64,
    pub engine_version: String,
    pub fast_target_ppm: i64,
    /// Daily limit per kind.
    pub rate_limits: BTreeMap<String, u32>,
    pub scenario: String,
    pub scenario_sha256: String,
    /// The run seed, as a decimal string (u64 does not fit a JSON number exactly).
    pub seed: String,
    /// Tasks the workload will submit.
    pub tasks: u64,
}

/// A task submitted by the driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arrival {
    pub authority: seedcore_engine::Authority,
    pub domain: String,
    pub drift_ppm: i64,
    pub kind: seedcore_engine::Kind,
    pub needs_planning: bool,
    pub priority: u8,
    /// Hex cache key.
    pub signature: String,
    pub task_id: u64,
    pub tokens_in: u32,
    pub tokens_out: u32,
}

/// A fault the injector starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRecord {
    /// Scenario time the plan gives.
    pub at_ms: u64,
    /// The kind (docs/harness.md 7).
    pub fault: String,
    /// How long it lasts: 0 for an instant fault, none for one that lasts until a restart
    /// or the end of the run.
    pub for_ms: Option<u64>,
    /// Its number in the plan, from 1; the `fault_end` of the same fault has the same id.
    pub id: u64,
    /// Rate, factor, norm or latency range, as text (`rate 0.25`), or empty.
    pub magnitude: String,
    /// What it acts on: a node, `a|b` (partition), `network`, `fast`/`deep`, `state`,
    /// `ledger`.
    pub node: String,
}

/// A fault the injector ends (the harness ends every fault still on after the drain).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEnd {
    pub fault: String,
    pub id: u64,
    pub node: String,
}

/// The run's fault plan, before any fault: explicit and drawn faults, and its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlanRecord {
    /// Hex SHA-256 of the plan's canonical JSON.
    pub digest: String,
    pub faults: Vec<FaultRecord>,
    /// Drawn by swarm mode from the seed.
    pub swarm: bool,
}

/// The harness's own verification of the coordinator's ledger at the end of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerCheck {
    /// False when the coordinator was down at the end and its disk could not be read.
    pub checked: bool,
    pub cycles: u64,
    pub error: Option<String>,
    pub ok: bool,
    /// The ledger's Ed25519 public key, hex: what the cycle signatures verify against.
    pub public_key: String,
    pub receipts: u64,
    pub torn_bytes: u64,
    /// Receipts after the last signed cycle.
    pub unsigned: u64,
}

/// One signed cycle of the coordinator's ledger, as the harness verified it at the end of
/// the run (emitted before `ledger_check`): a report's signature log is built from these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerCycle {
    pub cycle: u64,
    pub first_seq: u64,
    /// Chain head after `last_seq`, hex.
    pub head: String,
    pub last_seq: u64,
    /// Hex Ed25519 signature over the engine's `cycle_message`.
    pub signature: String,
}

/// The last event of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEnd {
    pub arrivals: u64,
    pub sim_ms: u64,
    /// Arrivals the driver got no outcome for before the drain ended.
    pub unanswered: u64,
}

/// The payload of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Engine(Signal),
    Harness(Harness),
}

impl Body {
    /// The event kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Engine(signal) => signal.kind(),
            Body::Harness(record) => record.kind(),
        }
    }
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Engine(signal) => signal.serialize(serializer),
            Body::Harness(record) => record.serialize(serializer),
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub t_ms: u64,
    pub node: String,
    pub body: Body,
}

#[derive(Serialize)]
struct LineOut<'a> {
    data: &'a Body,
    kind: &'a str,
    node: &'a str,
    seq: u64,
    t_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
    kind: &'a str,
    node: String,
    seq: u64,
    t_ms: u64,
}

/// Appends the canonical line of an event (without newline) to `out`.
pub fn write_line(out: &mut Vec<u8>, seq: u64, t_ms: u64, node: &str, body: &Body) {
    let line = LineOut { data: body, kind: body.kind(), node, seq, t_ms };
    serde_json::to_writer(out, &line).expect("events always serialise");
}

/// A line that is not an event.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EventError {
    pub message: String,
}

impl Event {
    /// The canonical line of this event.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_line(&mut out, self.seq, self.t_ms, &self.node, &self.body);
        out
    }

    /// Parses a line; the line must be exactly the canonical form of the event it holds.
    pub fn parse(line: &str) -> Result<Event, EventError> {
        let error = |message: String| EventError { message };
        let raw: LineIn<'_> = serde_json::from_str(line).map_err(|e| error(format!("not an event line: {e}")))?;
        let body = match Signal::parse(raw.kind, raw.data.get()) {
            Ok(Some(signal)) => Body::Engine(signal),
            Ok(None) => match Harness::parse(raw.kind, raw.data.get()) {
                Ok(Some(record)) => Body::Harness(record),
                Ok(None) => return Err(error(format!("unknown event kind {:?}", raw.kind))),
                Err(e) => return Err(error(format!("bad {} payload: {e}", raw.kind))),
            },
            Err(e) => return Err(error(format!("bad {} payload: {e}", raw.kind))),
        };
        let event = Event { seq: raw.seq, t_ms: raw.t_ms, node: raw.node, body };
        if event.to_line() != line.as_bytes() {
            return Err(error("line is not in canonical form".into()));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seedcore_engine::probe::*;

    /// One body of every event kind, in a fixed order: the engine's signals, then the
    /// harness's records.
    fn samples() -> Vec<Body> {
        let mut all = task_signal_samples();
        all.extend(organism_signal_samples());
        all.extend(harness_samples());
        all
    }

    /// A node start, and a task's decision, outcome and alert.
    fn task_signal_samples() -> Vec<Body> {
        vec![
            Body::Engine(Signal::Node(NodeSignal { event: NodeEvent::Started, role: Role::Fast })),
            Body::Engine(Signal::Decision(DecisionSignal {
                cusum_s_ppm: 2_500_001,
                degraded: false,
                forecast_tokens: 812,
                max_tokens_out: 333,
                path: seedcore_engine::Path::Deep,
                reason: seedcore_engine::router::Reason::Breach,
                router_fast_ppm: 912_000,
                surprise_ppm: 612_345,
                task_id: 17,
                truncated_tokens: 0,
                x_ppm: [1, 2, 3, 4, 5, 6],
            })),
            Body::Engine(Signal::Outcome(OutcomeSignal {
                arrived_ms: 1_000,
                attempts: 2,
                cache_age_ms: Some(120),
                cache_hit: true,
                cache_tier: Some(seedcore_engine::memory::Tier::M25),
                cost_micro_usd: 812,
                day: 19_677,
                error: None,
                kind: seedcore_engine::Kind::Chat,
                latency_ms: 91,
                ledger_seq: Some(16),
                overrun_clamped: false,
                path: Some(seedcore_engine::Path::Fast),
                reason: None,
                status: seedcore_engine::task::Status::Completed,
                task_id: 17,
                tokens_in: 374,
                tokens_out: 44,
                truncated: false,
                ttft_ms: Some(91),
                worker: Some("fast-1".into()),
            })),
            Body::Engine(Signal::Alert(AlertSignal {
                limit: 100,
                name: "rate_limit_80".into(),
                subject: "summary day 1".into(),
                value: 80,
            })),
        ]
    }

    /// The organism's, memory's, autoscaler's and ledger's signals.
    fn organism_signal_samples() -> Vec<Body> {
        vec![
            Body::Engine(Signal::LTot(LTotSignal {
                a_inf_ppm: 1,
                cause: OrganismCause::Init,
                l_tot_ppm: 2,
                w2_bound_ppm: 3,
                w2_estimate_ppm: 4,
            })),
            Body::Engine(Signal::Mask(MaskSignal { edges_masked: 1, l_tot_ppm: 2, rows: 3, w_scale_ppm: 4 })),
            Body::Engine(Signal::Contraction(ContractionSignal {
                bound_ppm: 700_000,
                ok: true,
                ratio_ppm: 10,
                sweep: 3,
            })),
            Body::Engine(Signal::Flashbulb(FlashbulbSignal { cause: FlashbulbCause::Breach, held: 3, task_id: 9 })),
            Body::Engine(Signal::Energy(EnergySignal {
                cause: OrganismCause::Sample,
                ent_ppm: -716_700,
                gradient_norm_ppm: 12_000_000,
                mem_ppm: 50_000,
                pair_ppm: -798_269_000,
                reg_ppm: 1_998_400,
                total_ppm: -796_937_300,
                updates: 128,
            })),
            Body::Engine(Signal::PromotionRefused(PromotionRefusedSignal {
                cause: OrganismCause::Promotion,
                delta_e_ppm: 1_234,
                energy_ppm: -5_000_000,
            })),
            Body::Engine(Signal::Scale(ScaleSignal {
                demand_ppm: 2_409_883,
                event: ScaleEvent::Starting,
                path: seedcore_engine::Path::Fast,
                replicas: 3,
                target: 4,
                worker: Some("fast-4".into()),
            })),
            Body::Engine(Signal::Ledger(LedgerSignal {
                error: Some("segment 0 line 3: \"quoted\"\n".into()),
                event: LedgerEvent::Halt,
                head: None,
                receipts: 0,
                spent_micro_usd: None,
            })),
        ]
    }

    /// One record of every harness kind.
    fn harness_samples() -> Vec<Body> {
        vec![
            Body::Harness(Harness::RunStart(RunStart {
                ceiling_micro_usd: 50_000,
                daily_budget_micro_usd: 500_000_000,
                duration_ms: 3_600_000,
                engine_version: "0.1.0".into(),
                fast_target_ppm: 900_000,
                rate_limits: [("summary".to_string(), 100)].into_iter().collect(),
                scenario: "azure-conv".into(),
                scenario_sha256: "ab".repeat(32),
                seed: u64::MAX.to_string(),
                tasks: 19_366,
            })),
            Body::Harness(Harness::Arrival(Arrival {
                authority: seedcore_engine::Authority::Low,
                domain: "guest".into(),
                drift_ppm: 120_000,
                kind: seedcore_engine::Kind::Summary,
                needs_planning: true,
                priority: 10,
                signature: format!("{:016x}", u64::MAX),
                task_id: 1,
                tokens_in: 1,
                tokens_out: 2,
            })),
            Body::Harness(Harness::FaultPlan(FaultPlanRecord { digest: "ab".repeat(32), faults: vec![], swarm: true })),
            Body::Harness(Harness::Fault(FaultRecord {
                at_ms: 5,
                fault: "backend_errors".into(),
                for_ms: Some(1_000),
                id: 1,
                magnitude: "rate 0.5".into(),
                node: "fast".into(),
            })),
            Body::Harness(Harness::FaultEnd(FaultEnd { fault: "backend_errors".into(), id: 1, node: "fast".into() })),
            Body::Harness(Harness::LedgerCycle(LedgerCycle {
                cycle: 0,
                first_seq: 0,
                head: "ab".repeat(32),
                last_seq: 1,
                signature: "cd".repeat(64),
            })),
            Body::Harness(Harness::LedgerCheck(LedgerCheck {
                checked: true,
                cycles: 1,
                error: None,
                ok: true,
                public_key: "ef".repeat(32),
                receipts: 2,
                torn_bytes: 0,
                unsigned: 0,
            })),
            Body::Harness(Harness::RunEnd(RunEnd { arrivals: 1, unanswered: 0, sim_ms: 5 })),
        ]
    }

    #[test]
    fn every_kind_is_jcs_canonical_and_parses_back() {
        for (seq, body) in samples().into_iter().enumerate() {
            let event = Event { seq: seq as u64, t_ms: 1_000, node: "coordinator".into(), body };
            let line = event.to_line();
            let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(serde_json_canonicalizer::to_vec(&value).unwrap(), line, "{}", String::from_utf8_lossy(&line));
            assert_eq!(Event::parse(std::str::from_utf8(&line).unwrap()).unwrap(), event);
        }
    }

    /// An outcome written before `ttft_ms` existed (a failed one now, or any then) has no
    /// such key: it still reads back in canonical form, so older event logs verify.
    #[test]
    fn an_outcome_without_time_to_first_token_is_canonical() {
        let outcome = samples()
            .into_iter()
            .find_map(|b| match b {
                Body::Engine(Signal::Outcome(o)) => Some(o),
                _ => None,
            })
            .expect("an outcome sample");
        let with =
            Event { seq: 0, t_ms: 5, node: "coordinator".into(), body: Body::Engine(Signal::Outcome(outcome.clone())) };
        let without = OutcomeSignal { ttft_ms: None, ..outcome };
        let without =
            Event { seq: 0, t_ms: 5, node: "coordinator".into(), body: Body::Engine(Signal::Outcome(without)) };
        let (with, without) =
            (String::from_utf8(with.to_line()).unwrap(), String::from_utf8(without.to_line()).unwrap());
        assert!(with.contains("\"ttft_ms\":91,") && !without.contains("ttft_ms"), "{with}\n{without}");
        assert_eq!(Event::parse(&without).unwrap().to_line(), without.as_bytes());
    }

    #[test]
    fn non_canonical_and_unknown_lines_are_rejected() {
        let good = Event { seq: 0, t_ms: 0, node: "driver".into(), body: samples().pop().unwrap() }.to_line();
        let good = String::from_utf8(good).unwrap();
        assert!(Event::parse(&good.replace(",\"seq\"", ", \"seq\"")).is_err());
        assert!(Event::parse(&good.replace("run_end", "run_stop")).is_err());
        assert!(Event::parse(&good.replace("\"t_ms\":0", "\"t_ms\":0,\"x\":1")).is_err());
    }
}
