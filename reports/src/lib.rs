//! Certification reports (docs/certification.md 8, 9): scoring, attestation (RFC 8785 canonical
//! JSON, DSSE, Ed25519 keys), the bundle a certification writes, its offline verification, and the
//! human reports (analytics with polars, plots with plotters, Markdown and HTML).
//!
//! This crate reads the event log and the run's results; it never reaches into the engine
//! (it uses the ledger's public cycle-message format to check cycle signatures).

pub mod analytics;
pub mod attest;
pub mod certify;
pub mod certlog;
pub mod clock;
pub mod dashboard;
pub mod data;
pub mod dsse;
pub mod fold;
pub mod jcs;
pub mod keys;
pub mod model;
#[cfg(madsim)]
pub mod pipeline;
pub mod render;
pub use seedcore_sim::score;
pub mod shadow;
pub mod siglog;
pub mod statement;
pub mod verify;

/// The Merkle tree of the event log (RFC 6962), shared with the observer that builds it.
pub use seedcore_sim::merkle;
