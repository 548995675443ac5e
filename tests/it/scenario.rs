//! Bad scenario and trace input: a clear error naming file, line and key or column.

use crate::support::write_scenario;

fn load_error(text: &str) -> String {
    let (_dir, path) = write_scenario(text);
    seedcore_sim::load(&path).expect_err("the scenario is invalid").to_string()
}

const MINIMAL: &str = "name = \"t\"\nduration = \"1m\"\n[workload]\nsource = \"generated\"\n";

#[test]
fn bundled_scenarios_load() {
    for entry in std::fs::read_dir(crate::support::scenario_path("")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            seedcore_sim::load(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn unknown_key_names_line_and_key() {
    let error = load_error(&format!("{MINIMAL}[engine.valve]\nh = 2.0\nthreshold = 3\n"));
    assert!(error.contains("scenario.toml"), "{error}");
    assert!(error.contains("line 7"), "{error}");
    assert!(error.contains("unknown field `threshold`"), "{error}");
}

#[test]
fn wrong_type_names_line() {
    let error = load_error(&format!("{MINIMAL}[engine.valve]\nh = \"high\"\n"));
    assert!(error.contains("line 6") && error.contains("h"), "{error}");
}

#[test]
fn out_of_range_value_names_line_and_key() {
    let error = load_error(&format!("{MINIMAL}[engine.router]\nfast_target = 1.5\n"));
    assert!(error.contains("scenario.toml:6: engine.router.fast_target"), "{error}");
}

#[test]
fn l_max_must_exceed_one_minus_eta() {
    let error = load_error(&format!("{MINIMAL}[engine.organism]\neta = 0.5\nl_max = 0.4\n"));
    assert!(error.contains("engine.organism.l_max"), "{error}");
}

#[test]
fn unknown_fault_node_is_named() {
    let error = load_error(&format!("{MINIMAL}[[chaos.fault]]\nat = \"1s\"\nkind = \"crash\"\nnode = \"fast-9\"\n"));
    assert!(error.contains("fast-9") && error.contains("chaos.fault"), "{error}");
}

#[test]
fn missing_file_is_named() {
    let error = seedcore_sim::load(std::path::Path::new("no/such/scenario.toml")).unwrap_err().to_string();
    assert!(error.contains("no/such/scenario.toml"), "{error}");
}

#[test]
fn bad_trace_row_names_row_and_column() {
    let (dir, _) = write_scenario("");
    std::fs::write(
        dir.path().join("trace.csv"),
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.00,12,-3\n",
    )
    .unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "name = \"t\"\n[workload]\nsource = \"trace\"\ntrace = \"trace.csv\"\nformat = \"azure\"\n")
        .unwrap();
    let error = seedcore_sim::load(&path).unwrap_err().to_string();
    assert!(error.contains("trace.csv: line 3, column GeneratedTokens"), "{error}");
}

#[test]
fn malformed_toml_names_the_line() {
    let error = load_error("name = \"t\"\nduration = \"1m\n[workload]\n");
    assert!(error.contains("scenario.toml") && error.contains("line 2"), "{error}");
}

fn fault_error(fault: &str) -> String {
    load_error(&format!(
        "{MINIMAL}[[chaos.fault]]\nat = \"1s\"\nkind = \"crash\"\nnode = \"fast-1\"\n[[chaos.fault]]\n{fault}"
    ))
}

#[test]
fn a_fault_that_must_last_cannot_last_no_time() {
    let error = fault_error("at = \"2s\"\nkind = \"crash\"\nnode = \"fast-2\"\nfor = \"0ms\"\n");
    assert!(error.contains("scenario.toml:13: chaos.fault[2].for") && error.contains("at least 1ms"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"pause\"\nnode = \"fast-2\"\nfor = 0\n");
    assert!(error.contains("chaos.fault[2].for"), "{error}");
}

#[test]
fn faults_at_or_after_the_end_or_overflowing_are_refused() {
    let error = fault_error("at = \"1m\"\nkind = \"restart\"\nnode = \"fast-2\"\n");
    assert!(error.contains("scenario.toml:10: chaos.fault[2].at") && error.contains("at or after the end"), "{error}");
    let error = fault_error("at = \"50s\"\nkind = \"isolate\"\nnode = \"fast-2\"\nfor = \"11s\"\n");
    assert!(error.contains("chaos.fault[2].for") && error.contains("must end by the end of the run"), "{error}");
    let error = fault_error("at = \"50s\"\nkind = \"ledger_io_error\"\nfor = 9223372036854775807\n");
    assert!(error.contains("chaos.fault[2].for") && error.contains("must end by the end of the run"), "{error}");
}

#[test]
fn fault_fields_are_checked_against_their_kind() {
    let error = fault_error("at = \"2s\"\nkind = \"pause\"\nnode = \"fast-2\"\nfor = \"1s\"\nrate = 0.5\n");
    assert!(error.contains("chaos.fault[2].rate") && error.contains("does not apply to pause"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"backend_errors\"\npath = \"fast\"\nfor = \"1s\"\n");
    assert!(error.contains("chaos.fault[2].rate") && error.contains("backend_errors needs `rate`"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"backend_slow\"\npath = \"medium\"\nfactor = 2.0\nfor = \"1s\"\n");
    assert!(error.contains("chaos.fault[2].path"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"packet_loss\"\nrate = 1.5\nfor = \"1s\"\n");
    assert!(error.contains("chaos.fault[2].rate") && error.contains("not in [0, 1]"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"partition\"\nnode = \"fast-2\"\npeer = \"fast-2\"\nfor = \"1s\"\n");
    assert!(error.contains("chaos.fault[2].peer"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"meteor\"\n");
    assert!(error.contains("chaos.fault[2].kind") && error.contains("kinds are crash, restart, pause"), "{error}");
    let error = fault_error("at = \"2s\"\nkind = \"torn_write\"\nnode = \"state\"\n");
    assert!(error.contains("coordinator only"), "{error}");
}

#[test]
fn swarm_bounds_are_checked() {
    let error = load_error(&format!("{MINIMAL}[chaos.swarm]\nkinds = [\"crash\", \"flood\"]\n"));
    assert!(error.contains("chaos.swarm.kinds") && error.contains("flood"), "{error}");
    let error = load_error(&format!("{MINIMAL}[chaos.swarm]\nkinds = []\n"));
    assert!(error.contains("chaos.swarm.kinds") && error.contains("at least one kind"), "{error}");
    let error = load_error(&format!("{MINIMAL}[chaos.swarm]\nmax_faults = 0\n"));
    assert!(error.contains("chaos.swarm.max_faults"), "{error}");
}

/// A scenario over `trace.csv` written beside it; returns the load error.
fn trace_error(format: &str, trace: &str) -> String {
    let (dir, _) = write_scenario("");
    std::fs::write(dir.path().join("trace.csv"), trace).unwrap();
    let path = dir.path().join("s.toml");
    let scenario =
        format!("name = \"t\"\n[workload]\nsource = \"trace\"\ntrace = \"trace.csv\"\nformat = \"{format}\"\n");
    std::fs::write(&path, scenario).unwrap();
    seedcore_sim::load(&path).unwrap_err().to_string()
}

const AZURE_HEADER: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
const CANONICAL_HEADER: &str =
    "task_id,at_ms,kind,domain,drift,priority,authority,needs_planning,tokens_in,tokens_out,signature\n";

#[test]
fn a_trace_that_goes_back_in_time_names_the_row() {
    let error = trace_error(
        "azure",
        &format!(
            "{AZURE_HEADER}2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.00,12,3\n1970-01-01 00:00:00.00,1,1\n"
        ),
    );
    assert!(error.contains("trace.csv: line 4, column TIMESTAMP") && error.contains("goes back in time"), "{error}");
    let error = trace_error(
        "canonical",
        &format!(
            "{CANONICAL_HEADER}1,500,chat,d,0.1,5,medium,false,10,10,1\n2,400,chat,d,0.1,5,medium,false,10,10,2\n"
        ),
    );
    assert!(error.contains("line 3, column at_ms") && error.contains("goes back in time"), "{error}");
}

#[test]
fn a_trace_spanning_decades_is_refused() {
    let error =
        trace_error("azure", &format!("{AZURE_HEADER}1970-01-01 00:00:00.00,1,1\n2023-11-16 18:15:46.68,374,44\n"));
    assert!(error.contains("line 3, column TIMESTAMP") && error.contains("spans at most 366 days"), "{error}");
}

#[test]
fn a_trace_with_a_header_and_no_rows_is_a_usage_error() {
    for (format, header) in [("azure", AZURE_HEADER), ("canonical", CANONICAL_HEADER)] {
        let error = trace_error(format, header);
        assert!(error.contains("trace.csv") && error.contains("no rows"), "{format}: {error}");
    }
}

/// Sizes, rates and durations that would exhaust memory or never end are usage errors
/// naming the key, before anything is allocated or run.
#[test]
fn sizes_rates_and_durations_have_upper_bounds() {
    for (text, key) in [
        ("[engine.organism]\ndim = 1000000000\n", "engine.organism.dim"),
        ("[engine.organism]\nagents = 100000000\n", "engine.organism.agents"),
        ("[engine.router]\nwindow = 1000000000000\n", "engine.router.window"),
        ("[engine.memory]\nmw_capacity = 1000000000000\n", "engine.memory.mw_capacity"),
        ("[policy]\nwindow = 1000000000000\n", "policy.window"),
    ] {
        let error = load_error(&format!("{MINIMAL}{text}"));
        assert!(error.contains(key) && error.contains("must be in"), "{key}: {error}");
    }
    let error = load_error("name = \"t\"\nduration = \"1m\"\n[workload]\nsource = \"generated\"\nrate_per_s = 1e12\n");
    assert!(error.contains("workload.rate_per_s") && error.contains("at most 20000000"), "{error}");
    let error = load_error("name = \"t\"\nduration = \"60d\"\n[workload]\nsource = \"generated\"\n");
    assert!(error.contains("duration") && error.contains("30 days"), "{error}");
    let error = load_error(&format!("{MINIMAL}[engine.dispatch]\ncomplete_batch = \"1m\"\n"));
    assert!(
        error.contains("scenario.toml:6: engine.dispatch.complete_batch") && error.contains("at most 10000 ms"),
        "{error}"
    );
}
