//! `tasks.csv`: one row per task, joined from its arrival, decision and outcome events
//! and written when the outcome arrives, so only tasks in flight are held in memory.

use crate::event::{Arrival, Body, Harness};
use seedcore_engine::probe::{DecisionSignal, Signal};
use std::collections::BTreeMap;
use std::io::Write;

/// Column names of `tasks.csv`.
pub const COLUMNS: [&str; 31] = [
    "task_id",
    "at_ms",
    "kind",
    "domain",
    "drift",
    "priority",
    "authority",
    "needs_planning",
    "tokens_in_requested",
    "tokens_out_requested",
    "path",
    "reason",
    "cusum_s",
    "surprise",
    "x1_cache_miss",
    "x2_valve",
    "x3_drift",
    "x4_state_change",
    "x5_uncertainty",
    "x6_pressure",
    "max_tokens_out",
    "truncated_tokens",
    "status",
    "reject_reason",
    "error",
    "latency_ms",
    "cost_micro_usd",
    "tokens_in",
    "tokens_out",
    "cache_hit",
    "done_ms",
];

fn decimal(ppm: i64) -> String {
    format!("{:.6}", ppm as f64 / 1e6)
}

/// The join state and the CSV writer.
pub struct TaskTable<W: Write> {
    writer: csv::Writer<W>,
    /// Arrival time and arrival of tasks without an outcome yet.
    arrivals: BTreeMap<u64, (u64, Arrival)>,
    decisions: BTreeMap<u64, DecisionSignal>,
}

impl<W: Write> TaskTable<W> {
    /// A table writing to `out`; writes the header.
    pub fn new(out: W) -> csv::Result<TaskTable<W>> {
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(COLUMNS)?;
        Ok(TaskTable { writer, arrivals: BTreeMap::new(), decisions: BTreeMap::new() })
    }

    /// Folds one event in; writes a row when a task's outcome arrives.
    pub fn observe(&mut self, t_ms: u64, body: &Body) -> csv::Result<()> {
        match body {
            Body::Harness(Harness::Arrival(arrival)) => {
                self.arrivals.insert(arrival.task_id, (t_ms, arrival.clone()));
            }
            Body::Engine(Signal::Decision(decision)) => {
                self.decisions.insert(decision.task_id, decision.clone());
            }
            Body::Engine(Signal::Outcome(o)) => {
                let arrival = self.arrivals.remove(&o.task_id);
                let decision = self.decisions.remove(&o.task_id);
                let mut row: Vec<String> = Vec::with_capacity(COLUMNS.len());
                row.push(o.task_id.to_string());
                match &arrival {
                    Some((at, a)) => row.extend([
                        at.to_string(),
                        a.kind.clone(),
                        a.domain.clone(),
                        decimal(a.drift_ppm),
                        a.priority.to_string(),
                        a.authority.clone(),
                        a.needs_planning.to_string(),
                        a.tokens_in.to_string(),
                        a.tokens_out.to_string(),
                    ]),
                    None => row.extend(std::iter::repeat_n(String::new(), 9)),
                }
                match &decision {
                    Some(d) => {
                        row.extend([d.path.clone(), d.reason.clone(), decimal(d.cusum_s_ppm), decimal(d.surprise_ppm)]);
                        row.extend(d.x_ppm.iter().map(|x| decimal(*x)));
                        row.extend([d.max_tokens_out.to_string(), d.truncated_tokens.to_string()]);
                    }
                    None => row.extend(std::iter::repeat_n(String::new(), 12)),
                }
                row.extend([
                    o.status.clone(),
                    o.reason.clone().unwrap_or_default(),
                    o.error.clone().unwrap_or_default(),
                    o.latency_ms.to_string(),
                    o.cost_micro_usd.to_string(),
                    o.tokens_in.to_string(),
                    o.tokens_out.to_string(),
                    o.cache_hit.to_string(),
                    t_ms.to_string(),
                ]);
                debug_assert_eq!(row.len(), COLUMNS.len());
                self.writer.write_record(&row)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> std::io::Result<W> {
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}
