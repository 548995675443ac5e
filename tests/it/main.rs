//! The integration tests: one binary, a module per concern. Simulation tests are
//! `#[cfg(madsim)]` and run with `cargo simtest`; live tests are `#[cfg(not(madsim))]`;
//! the rest runs in both builds.

mod cli;
#[cfg(not(madsim))]
mod layout;
mod scenario;
mod support;
mod trace;

#[cfg(madsim)]
mod campaign;
#[cfg(madsim)]
mod canary;
#[cfg(madsim)]
mod certify;
#[cfg(madsim)]
mod chaos;
#[cfg(madsim)]
mod compare;
#[cfg(madsim)]
mod corpus;
#[cfg(madsim)]
mod network;
#[cfg(madsim)]
mod records;
#[cfg(madsim)]
mod regressions;
#[cfg(madsim)]
mod replay;
#[cfg(madsim)]
mod shadow;

#[cfg(not(madsim))]
mod abuse;
#[cfg(not(madsim))]
mod gateway;
#[cfg(not(madsim))]
mod live;
#[cfg(not(madsim))]
mod openai;
#[cfg(not(madsim))]
mod roles;
#[cfg(not(madsim))]
mod serve;
