//! The conditions the engine runs in that are not the engine's own: how the model backend
//! of each path behaves and whether the ledger's disk accepts writes.
//!
//! Live they stay at their defaults (nothing degraded). Under the simulator the chaos injector
//! changes them while a fault lasts (`backend_errors`, `backend_slow`, `token_inflation`,
//! `ledger_io_error`, docs/harness.md 7): they model the world outside the engine, the way madsim's
//! `NetSim` models the network. The engine only reads them, at the place where the real world would
//! act: the simulated backend's draw and the ledger's write.

use crate::task::Path;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// How the model backend of one path is degraded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackendWeather {
    /// Error probability added on top of the configured one (the larger wins).
    pub error_rate: f64,
    /// Latency multiplier (1: as configured).
    pub slowdown: f64,
    /// Output-token multiplier on top of the configured inflation (1: none).
    pub token_inflation: f64,
}

impl Default for BackendWeather {
    fn default() -> Self {
        BackendWeather { error_rate: 0.0, slowdown: 1.0, token_inflation: 1.0 }
    }
}

/// The degradable surroundings of one engine, shared by its nodes.
#[derive(Debug, Default)]
pub struct Conditions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    backend: [BackendWeather; 2],
    disk_failing: bool,
    failed_in_trace: BTreeSet<u64>,
}

impl Conditions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("the conditions lock is never poisoned")
    }

    /// The backend weather of a path now.
    pub fn backend(&self, path: Path) -> BackendWeather {
        self.lock().backend[path.index()]
    }

    /// Sets the backend weather of a path.
    pub fn set_backend(&self, path: Path, weather: BackendWeather) {
        self.lock().backend[path.index()] = weather;
    }

    /// Whether writes to the ledger's disk fail now.
    pub fn disk_failing(&self) -> bool {
        self.lock().disk_failing
    }

    /// Whether the recorded backend failed task `task_id` (a trace row such as BurstGPT's
    /// with `Response tokens` 0): every call of it fails, as it did when it was recorded.
    pub fn failed_in_trace(&self, task_id: u64) -> bool {
        self.lock().failed_in_trace.contains(&task_id)
    }

    /// The tasks whose calls fail because the trace records them as failed.
    pub fn set_failed_in_trace(&self, task_ids: BTreeSet<u64>) {
        self.lock().failed_in_trace = task_ids;
    }

    /// Makes ledger writes fail (or succeed again).
    pub fn set_disk_failing(&self, failing: bool) {
        self.lock().disk_failing = failing;
    }
}
