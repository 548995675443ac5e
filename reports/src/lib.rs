//! seedcore-reports: scoring, attestation (JCS, DSSE, Ed25519, Merkle), offline
//! verification, analytics and rendering of certification reports (SPEC 8, 9).
//!
//! Empty so far: the spine issue only reserves the crate and its place in the dependency
//! graph (`reports` reads the event log and run results, never engine internals).
