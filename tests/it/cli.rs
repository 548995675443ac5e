//! The command line as a user runs it: exit codes (docs/certification.md 8.3) and messages.

use crate::support::seedcore;

#[test]
fn unknown_flag_is_a_usage_error() {
    let output = seedcore(&["replay", "scenarios/steady.toml", "--sede", "3"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--sede"));
}

/// The roles of `serve` take ports up to 55 above `--rpc-port`: a base whose roles would pass
/// 65535 is a usage error, not an overflow.
#[test]
fn a_serve_port_whose_roles_overflow_is_a_usage_error() {
    let output = seedcore(&["serve", "--rpc-port", "65481"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("65481"), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `serve --config FILE` reads the engine's tables with the engine's own code: a bad value
/// is exit 2 naming the file, the line and the key, and a scenario's other tables are
/// unknown keys there. Checked before anything binds.
#[cfg(not(madsim))]
#[test]
fn a_bad_engine_settings_file_is_a_usage_error_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("engine.toml");
    std::fs::write(&bad, "[topology]\nfast = 2\n\n[engine.router]\ntau_deep = -0.5\n").unwrap();
    let output = seedcore(&["serve", "--config", bad.to_str().unwrap(), "--port", "0", "--seconds", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("engine.toml:5: engine.router.tau_deep"), "{stderr}");
    let output = seedcore(&["serve", "--config", "scenarios/steady.toml", "--port", "0", "--seconds", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("scenarios/steady.toml") && stderr.contains("unknown field `name`"), "{stderr}");
}

/// `--rerun` needs the simulator: the live build says so, with exit 2.
#[cfg(not(madsim))]
#[test]
fn rerun_in_the_live_build_is_a_usage_error() {
    let output = seedcore(&["reproduce", "out/none", "--pubkey", "keys/none.pub"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cargo sim verify"));
}

#[cfg(madsim)]
#[test]
fn missing_scenario_exits_2_naming_it() {
    let output = seedcore(&["replay", "scenarios/nope.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("scenarios/nope.toml"));
}

#[cfg(madsim)]
#[test]
fn unwritable_out_exits_2_and_writes_nothing() {
    let output = seedcore(&["replay", "scenarios/canary-determinism.toml", "--out", "/proc/seedcore/out"]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/proc/seedcore"));
}

/// A failing canary exits 1 and prints the seed and the command that reproduces it; the
/// output directory holds complete files and no staging leftovers.
#[cfg(madsim)]
#[test]
fn failure_prints_a_repro_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let output =
        seedcore(&["replay", "scenarios/canary-determinism.toml", "--seed", "5", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL: critical invariant(s) determinism did not pass with seed 5"), "{stdout}");
    assert!(stdout.contains("reproduce: cargo sim replay scenarios/canary-determinism.toml --seed 5"), "{stdout}");
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, vec!["run".to_string()]);
    assert!(out.join("events.jsonl").exists() && out.join("tasks.csv").exists());
}

#[cfg(not(madsim))]
#[test]
fn replay_in_the_live_build_points_to_the_simulation_build() {
    let output = seedcore(&["replay", "scenarios/steady.toml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cargo sim replay"));
}

#[cfg(madsim)]
#[test]
fn out_that_is_a_file_exits_2_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, "keep me").unwrap();
    let output = seedcore(&["replay", "scenarios/canary-determinism.toml", "--out", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

/// `keygen` and `verify` run in both builds; verify without a trusted key, or of a path
/// that is not a report, is a usage error.
#[test]
fn keygen_writes_a_pair_and_verify_needs_a_key_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("release");
    let output = seedcore(&["keygen", key.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("key id"));
    assert!(dir.path().join("release.key").exists() && dir.path().join("release.pub").exists());
    let again = seedcore(&["keygen", dir.path().join("release.key").to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let output = seedcore(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no trusted key"));
    let public = dir.path().join("release.pub");
    let output =
        seedcore(&["verify", dir.path().join("nothing").to_str().unwrap(), "--pubkey", public.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
    // A directory without a certificate is a rejected bundle.
    let output = seedcore(&["verify", dir.path().to_str().unwrap(), "--pubkey", public.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&output.stderr).contains("certificate.dsse.json"));
}

/// Fault times that cannot run are usage errors naming the field, before anything runs.
#[cfg(madsim)]
#[test]
fn a_fault_that_lasts_no_time_exits_2_naming_the_field() {
    let (_dir, path) = crate::support::write_scenario(
        "name = \"t\"\nduration = \"1m\"\n[workload]\nsource = \"generated\"\n\
         [[chaos.fault]]\nat = \"10s\"\nkind = \"crash\"\nnode = \"fast-1\"\nfor = \"0ms\"\n",
    );
    for command in ["replay", "certify", "shrink"] {
        let output = seedcore(&[command, path.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("scenario.toml:9: chaos.fault[1].for"), "{command}: {stderr}");
    }
}

/// A trace with no rows is a usage error (exit 2), not a run whose every invariant fails.
#[cfg(madsim)]
#[test]
fn an_empty_trace_exits_2() {
    let (dir, _) = crate::support::write_scenario("");
    std::fs::write(dir.path().join("trace.csv"), "TIMESTAMP,ContextTokens,GeneratedTokens\n").unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "name = \"t\"\n[workload]\nsource = \"trace\"\ntrace = \"trace.csv\"\nformat = \"azure\"\n")
        .unwrap();
    let output = seedcore(&["replay", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no rows"));
}
