//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each build uses part of the helpers")]

use std::path::PathBuf;

/// A small generated scenario: two minutes at 5 tasks per second.
pub const SMALL: &str = r#"
name = "small"
description = "Two minutes of generated traffic"
duration = "2m"
seed = 3

[workload]
source = "generated"
rate_per_s = 5.0
"#;

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

/// The certification log of a test process's certifies that name none: in the temporary
/// directory, never the repository's `out/log` (the tests run in the repository).
pub fn test_log() -> PathBuf {
    std::env::temp_dir().join(format!("seedcore-test-log-{}", std::process::id()))
}

/// Runs the seedcore binary of this build (a `certify` without `--log` logs to `test_log`).
pub fn seedcore(args: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if args.first().is_some_and(|a| a == "certify") && !args.iter().any(|a| a == "--log") {
        args.extend(["--log".to_string(), test_log().display().to_string()]);
    }
    std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .args(&args)
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

#[cfg(not(madsim))]
pub use deployment::*;

/// A deployment of one role per process on loopback (`serve --role R --peers ...`).
#[cfg(not(madsim))]
mod deployment {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// A scenario of quick backends without errors, so a deployment test takes seconds.
    pub const QUICK_BACKENDS: &str = r#"
name = "quick-backends"
duration = "1m"
[workload]
source = "generated"
rate_per_s = 1.0
[backend.fast]
ttft_base_ms = 5.0
tpot_ms = 0.0
noise_p99 = 4.0
error_rate = 0.0
[backend.deep]
ttft_base_ms = 100.0
tpot_ms = 0.0
noise_p99 = 3.0
error_rate = 0.0
"#;

    /// A role's process, killed on drop.
    pub struct Proc {
        pub child: Child,
        /// What it printed first: `seedcore ROLE listening on ...`.
        pub first_line: String,
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Proc {
        /// Sends a signal (`TERM`, `STOP`, `CONT`, `KILL`) to the process.
        pub fn signal(&self, name: &str) {
            let sent = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
            assert!(sent.is_ok_and(|s| s.success()), "kill -{name}");
        }

        /// The gateway's URL, from its first line.
        pub fn url(&self) -> String {
            self.first_line.trim().strip_prefix("seedcore listening on ").expect("a gateway's first line").to_string()
        }
    }

    /// Starts `serve --role ROLE --peers PEERS EXTRA...`, its stderr to `stderr`, and waits
    /// for its first line.
    pub fn start_role(role: &str, peers: &str, extra: &[&str], stderr: Stdio) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_seedcore"))
            .args(["serve", "--role", role, "--peers", peers])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("serve starts");
        let mut first_line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut first_line).unwrap();
        assert!(first_line.contains("listening on"), "{role}: {first_line:?}");
        Proc { child, first_line }
    }

    /// Ports free on loopback now.
    pub fn free_ports(n: usize) -> Vec<u16> {
        let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
    }

    /// Polls `/readyz` until it gives `want`, for at most `seconds`; returns the last body.
    pub async fn readyz_until(client: &reqwest::Client, url: &str, want: u16, seconds: u64) -> serde_json::Value {
        for _ in 0..seconds * 10 {
            if let Ok(response) = client.get(format!("{url}/readyz")).send().await {
                if response.status().as_u16() == want {
                    return response.json().await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/readyz never answered {want} in {seconds} s");
    }
}
