//! The seedcore simulation harness (docs/harness.md 5, 6): scenarios and workloads, the simulated
//! world, the driver, the observer and its event log, the Merkle digest, and invariant
//! evaluation.
//!
//! Everything here compiles in both builds; only the world (`world`, `run::replay`) needs
//! the simulator (`--cfg madsim`). The harness drives the engine through its public node
//! functions and its client, and learns what happened only from the engine's signals.

pub mod campaign;
pub mod chain;
pub mod compare;
pub mod event;
pub mod invariant_id;
pub mod invariants;
pub mod merkle;
pub mod money;
pub mod observer;
pub mod policy;
pub mod run;
pub mod scenario;
pub mod score;
pub mod shadow;
pub mod shrink;
pub mod tasks;
pub mod workload;
#[cfg(madsim)]
pub mod world;

pub use scenario::{load, load_with_swarm, Scenario, ScenarioError};
