//! Shadow and canary (docs/certification.md 8.9): the measures two runs are compared by, and
//! the rules a canary judges a candidate by. The runs, the per-task diff, the bundle and
//! the reports are in `seedcore_reports::shadow`.
//!
//! - `catalogue`: the measures' names, units and directions, known without a run.
//! - `measures`: their values, folded from a run's totals.
//! - `rules`: a scenario's `[canary]` table, resolved.
//! - `canary`: the rules applied to a seed's pair of runs.

pub mod canary;
pub mod catalogue;
pub mod measures;
pub mod rules;
