//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each build uses part of the helpers")]

use std::path::PathBuf;

/// Path of a bundled scenario.
pub fn scenario_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

/// Loads a bundled scenario.
pub fn scenario(name: &str) -> seedcore_sim::Scenario {
    seedcore_sim::load(&scenario_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Writes a scenario file into a fresh temporary directory.
pub fn write_scenario(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, text).expect("write scenario");
    (dir, path)
}

/// Loads a scenario given as text (its directory lives as long as the returned guard).
pub fn inline_scenario(text: &str) -> (tempfile::TempDir, seedcore_sim::Scenario) {
    let (dir, path) = write_scenario(text);
    let scenario = seedcore_sim::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (dir, scenario)
}

/// Runs the seedcore binary of this build.
pub fn seedcore(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the seedcore binary runs")
}

#[cfg(madsim)]
pub use sim::*;

#[cfg(madsim)]
mod sim {
    use seedcore_sim::event::Event;
    use seedcore_sim::run::RunReport;
    use seedcore_sim::Scenario;

    /// Replays a scenario into a temporary directory; returns the report and the events.
    pub fn replay(scenario: &Scenario, seed: u64, replays: u32) -> (RunReport, Vec<Event>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = seedcore_sim::run::replay(scenario, seed, replays, Some(dir.path())).expect("the run completes");
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("events.jsonl is written");
        let events = text.lines().map(|line| Event::parse(line).expect("every line is a canonical event")).collect();
        (report, events)
    }

    /// Ids of the invariants that failed.
    pub fn failed(report: &RunReport) -> Vec<&'static str> {
        report
            .results
            .iter()
            .filter(|r| r.verdict == seedcore_sim::invariants::Verdict::Fail)
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Ids of the critical invariants that failed.
    pub fn critical_failed(report: &RunReport) -> Vec<&'static str> {
        seedcore_sim::score::critical_failures(&report.results)
    }
}
