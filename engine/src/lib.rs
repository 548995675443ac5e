//! The seedcore engine: a coordination engine for AI task traffic (docs/engine.md 3, 4).
//!
//! Tasks arrive at the coordinator; the OCPS valve and the surprise router send each down
//! the fast or the deep path; the cost governor enforces the ceilings; workers run the
//! model backend; the state node keeps the organism, whose certified Lipschitz bound stays
//! below 1, and the working cache; every outcome goes to a hash-chained, signed ledger.
//!
//! The engine is written against madsim's APIs only, so the same code runs live (real
//! tokio, TCP, files, clocks) and under the deterministic simulator (`--cfg madsim`).
//! It knows nothing of the simulator, the chaos crate or reports; what it wants to tell an
//! observer goes through the `Probe` it is given.

pub mod backend;
pub mod client;
pub mod conditions;
pub mod config;
pub mod deadline;
#[cfg(not(madsim))]
pub mod gateway;
pub mod governor;
#[cfg(not(madsim))]
pub mod grpc;
pub mod ledger;
pub mod memory;
pub mod node;
#[cfg(not(madsim))]
pub mod openai;
pub mod organism;
pub mod peers;
pub mod probe;
pub mod router;
pub mod rpc;
pub mod serve;
pub mod task;
#[cfg(not(madsim))]
pub mod tls;
pub mod tokens;
pub mod valve;

pub use config::EngineConfig;
pub use task::{Authority, Kind, Outcome, Path, RejectReason, Task};
