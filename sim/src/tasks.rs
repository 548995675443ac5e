//! `tasks.csv`: one row per task, joined from its arrival, decision and outcome events
//! and written when the outcome arrives, so only tasks in flight are held in memory.

use crate::event::{Arrival, Body, Harness};
use seedcore_engine::probe::{DecisionSignal, Signal};
use seedcore_engine::task::tpot_ms;
use std::collections::BTreeMap;
use std::io::Write;

/// Column names of `tasks.csv`.
pub const COLUMNS: [&str; 36] = [
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
    "ttft_ms",
    "tpot_ms",
    "cost_micro_usd",
    "tokens_in",
    "tokens_out",
    "cache_hit",
    "cache_tier",
    "cache_age_ms",
    "done_ms",
    "day",
];

/// A ppm value as a decimal with six places, exactly (no float rounding).
fn decimal(ppm: i64) -> String {
    Decimal::default().format(ppm).to_string()
}

/// `decimal` into a buffer of its own: no allocation per field of `tasks.csv`.
#[derive(Default)]
struct Decimal {
    buffer: [u8; 28],
}

impl Decimal {
    fn format(&mut self, ppm: i64) -> &str {
        let magnitude = ppm.unsigned_abs();
        let mut whole = itoa::Buffer::new();
        let whole = whole.format(magnitude / 1_000_000).as_bytes();
        let mut at = 0;
        if ppm < 0 {
            self.buffer[0] = b'-';
            at = 1;
        }
        self.buffer[at..at + whole.len()].copy_from_slice(whole);
        at += whole.len();
        self.buffer[at] = b'.';
        let mut fraction = magnitude % 1_000_000;
        for place in (1..=6).rev() {
            self.buffer[at + place] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        std::str::from_utf8(&self.buffer[..at + 7]).expect("digits, a sign and a point are ASCII")
    }
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
                let w = &mut self.writer;
                let mut n = itoa::Buffer::new();
                let mut d6 = Decimal::default();
                w.write_field(n.format(o.task_id))?;
                match &arrival {
                    Some((at, a)) => {
                        w.write_field(n.format(*at))?;
                        w.write_field(a.kind.as_str())?;
                        w.write_field(&a.domain)?;
                        w.write_field(d6.format(a.drift_ppm))?;
                        w.write_field(n.format(a.priority))?;
                        w.write_field(a.authority.as_str())?;
                        w.write_field(if a.needs_planning { "true" } else { "false" })?;
                        w.write_field(n.format(a.tokens_in))?;
                        w.write_field(n.format(a.tokens_out))?;
                    }
                    None => (0..9).try_for_each(|_| w.write_field(""))?,
                }
                match &decision {
                    Some(d) => {
                        w.write_field(d.path.as_str())?;
                        w.write_field(d.reason.as_str())?;
                        w.write_field(d6.format(d.cusum_s_ppm))?;
                        w.write_field(d6.format(d.surprise_ppm))?;
                        d.x_ppm.iter().try_for_each(|x| w.write_field(d6.format(*x)))?;
                        w.write_field(n.format(d.max_tokens_out))?;
                        w.write_field(n.format(d.truncated_tokens))?;
                    }
                    None => (0..12).try_for_each(|_| w.write_field(""))?,
                }
                w.write_field(o.status.as_str())?;
                w.write_field(o.reason.map_or("", |r| r.as_str()))?;
                w.write_field(o.error.as_deref().unwrap_or_default())?;
                w.write_field(n.format(o.latency_ms))?;
                match o.ttft_ms {
                    Some(ttft) => w.write_field(n.format(ttft))?,
                    None => w.write_field("")?,
                }
                match o.ttft_ms.and_then(|ttft| tpot_ms(o.latency_ms, ttft, o.tokens_out, o.cache_hit)) {
                    Some(tpot) => w.write_field(format!("{tpot:.3}"))?,
                    None => w.write_field("")?,
                }
                w.write_field(n.format(o.cost_micro_usd))?;
                w.write_field(n.format(o.tokens_in))?;
                w.write_field(n.format(o.tokens_out))?;
                w.write_field(if o.cache_hit { "true" } else { "false" })?;
                w.write_field(o.cache_tier.map_or("", |t| t.as_str()))?;
                match o.cache_age_ms {
                    Some(age) => w.write_field(n.format(age))?,
                    None => w.write_field("")?,
                }
                w.write_field(n.format(t_ms))?;
                w.write_field(n.format(o.day))?;
                w.write_record(None::<&[u8]>)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes a row for every task that arrived and never got an outcome (status `lost`),
    /// then flushes and returns the writer: the table has one row per task.
    pub fn finish(mut self) -> std::io::Result<W> {
        let lost = std::mem::take(&mut self.arrivals);
        let mut n = itoa::Buffer::new();
        for (task_id, (at, a)) in lost {
            let w = &mut self.writer;
            let mut row: Vec<String> = vec![
                n.format(task_id).to_string(),
                n.format(at).to_string(),
                a.kind.as_str().to_string(),
                a.domain,
                decimal(a.drift_ppm),
                n.format(a.priority).to_string(),
                a.authority.as_str().to_string(),
                a.needs_planning.to_string(),
                n.format(a.tokens_in).to_string(),
                n.format(a.tokens_out).to_string(),
            ];
            row.resize(22, String::new());
            row.push("lost".into());
            row.resize(COLUMNS.len(), String::new());
            w.write_record(&row).map_err(std::io::Error::other)?;
        }
        self.writer.into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Arrival, Harness};
    use seedcore_engine::probe::OutcomeSignal;

    #[test]
    fn a_row_joins_arrival_decision_and_outcome() {
        let mut table = TaskTable::new(Vec::new()).unwrap();
        let arrival = Arrival {
            authority: seedcore_engine::Authority::Low,
            domain: "guest".into(),
            drift_ppm: 120_000,
            kind: seedcore_engine::Kind::Chat,
            needs_planning: false,
            priority: 3,
            signature: "00".into(),
            task_id: 9,
            tokens_in: 10,
            tokens_out: 20,
        };
        table.observe(5, &Body::Harness(Harness::Arrival(arrival))).unwrap();
        let outcome = OutcomeSignal {
            arrived_ms: 5,
            attempts: 0,
            cache_age_ms: None,
            cache_hit: false,
            cache_tier: None,
            cost_micro_usd: 0,
            day: 1,
            error: None,
            kind: seedcore_engine::Kind::Chat,
            latency_ms: 2,
            ledger_seq: Some(0),
            overrun_clamped: false,
            path: None,
            reason: Some(seedcore_engine::task::RejectReason::Halted),
            status: seedcore_engine::task::Status::Rejected,
            task_id: 9,
            tokens_in: 0,
            tokens_out: 0,
            truncated: false,
            ttft_ms: None,
            worker: None,
        };
        table.observe(7, &Body::Engine(Signal::Outcome(outcome))).unwrap();
        let text = String::from_utf8(table.finish().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert_eq!(
            lines[1],
            "9,5,chat,guest,0.120000,3,low,false,10,20,,,,,,,,,,,,,rejected,halted,,2,,,0,0,0,false,,,7,1"
        );
        assert_eq!(decimal(-1_500_000), "-1.500000");
    }

    #[test]
    fn decimals_are_the_formatted_ones() {
        let mut d6 = Decimal::default();
        for ppm in [0, 1, -1, 999_999, -999_999, 1_000_000, 120_000, -1_500_000, i64::MAX, i64::MIN, 42_000_007] {
            let sign = if ppm < 0 { "-" } else { "" };
            let m = ppm.unsigned_abs();
            assert_eq!(d6.format(ppm), format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000), "{ppm}");
        }
    }

    #[test]
    fn a_task_without_outcome_gets_a_lost_row() {
        let mut table = TaskTable::new(Vec::new()).unwrap();
        let arrival = Arrival {
            authority: seedcore_engine::Authority::High,
            domain: "guest".into(),
            drift_ppm: 0,
            kind: seedcore_engine::Kind::Query,
            needs_planning: true,
            priority: 1,
            signature: "00".into(),
            task_id: 4,
            tokens_in: 1,
            tokens_out: 2,
        };
        table.observe(3, &Body::Harness(Harness::Arrival(arrival))).unwrap();
        let text = String::from_utf8(table.finish().unwrap()).unwrap();
        assert_eq!(text.lines().nth(1), Some("4,3,query,guest,0.000000,1,high,true,1,2,,,,,,,,,,,,,lost,,,,,,,,,,,,,"));
    }
}
