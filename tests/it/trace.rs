//! `seedcore trace inspect` and `trace convert` as a user runs them, and trace scenarios in
//! every format (docs/harness.md 5.2): the samples are written at test time, in the
//! published layouts, into temporary directories.

use std::path::Path;
use std::process::Output;

/// Runs the seedcore binary with `dir` as the current directory.
fn seedcore_in(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_seedcore"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the seedcore binary runs")
}

/// The value of the text report's line `label`.
fn value<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label).filter(|rest| rest.starts_with("  ")))
        .unwrap_or_else(|| panic!("no line {label:?} in {stdout}"))
        .trim()
}

/// Four requests over three seconds, 2023 form.
const AZURE_2023: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
    2023-11-16 18:15:46.6805900,374,44\n\
    2023-11-16 18:15:47.6805900,396,109\n\
    2023-11-16 18:15:47.9805900,879,55\n\
    2023-11-16 18:15:49.6805900,91,16\n";

/// The same four requests, 2024 form.
const AZURE_2024: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
    2024-05-10 00:00:00.680590+00:00,374,44\n\
    2024-05-10 00:00:01.680590+00:00,396,109\n\
    2024-05-10 00:00:01.980590+00:00,879,55\n\
    2024-05-10 01:00:03.680590+01:00,91,16\n";

/// Four requests over eight seconds; the third repeats the first's prompt.
const MOONCAKE: &str = concat!(
    "{\"timestamp\": 0, \"input_length\": 6955, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}\n",
    "{\"timestamp\": 2000, \"input_length\": 1000, \"output_length\": 20, \"hash_ids\": [1, 2]}\n",
    "\n",
    "{\"timestamp\": 4000, \"input_length\": 6955, \"output_length\": 40, \"hash_ids\": [46, 47, 48]}\n",
    "{\"timestamp\": 8000, \"input_length\": 300, \"output_length\": 9, \"hash_ids\": [9], \"extra\": true}\n",
);

/// Five requests over ten seconds; the second failed when recorded.
const BURSTGPT: &str = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
    5,ChatGPT,472,18,490,Conversation log\n\
    7,ChatGPT,1024,0,1024,Conversation log\n\
    9,GPT-4,100,50,150,API log\n\
    10,ChatGPT,200,30,230,Conversation log\n\
    15,ChatGPT,300,60,360,Conversation log\n";

/// Three tasks over two seconds.
fn canonical() -> String {
    format!(
        "{}\n0,0,chat,guest,0.1,3,low,false,100,20,42\n1,1000,query,facility,0.2,5,high,false,50,10,43\n\
         2,2000,chat,guest,0.1,3,low,false,100,20,42\n",
        seedcore_sim::workload::CANONICAL_HEADER.join(",")
    )
}

#[test]
fn inspect_reports_rows_and_rates_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, format, rows, rate) in [
        ("azure-2023.csv", AZURE_2023.to_string(), "azure", "4", "1.333 arrivals/s"),
        ("azure-2024.csv", AZURE_2024.to_string(), "azure", "4", "1.333 arrivals/s"),
        ("mooncake.jsonl", MOONCAKE.to_string(), "mooncake", "4", "0.500 arrivals/s"),
        ("burst.csv", BURSTGPT.to_string(), "burstgpt", "5", "0.500 arrivals/s"),
        ("tasks.csv", canonical(), "canonical", "3", "1.500 arrivals/s"),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
        let output = seedcore_in(dir.path(), &["trace", "inspect", name]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(value(&stdout, "rows"), rows, "{name}");
        assert_eq!(value(&stdout, "mean rate"), rate, "{name}");
        assert!(value(&stdout, "format").starts_with(&format!("{format} (guessed ")), "{name}: {stdout}");
    }
    let stdout = String::from_utf8(seedcore_in(dir.path(), &["trace", "inspect", "azure-2024.csv"]).stdout).unwrap();
    assert!(value(&stdout, "span").contains("starting 2024-05-10T00:00:00.680Z"), "{stdout}");
    let stdout = String::from_utf8(seedcore_in(dir.path(), &["trace", "inspect", "mooncake.jsonl"]).stdout).unwrap();
    assert!(value(&stdout, "repeats").starts_with("1 rows"), "{stdout}");
    assert!(
        stdout.contains("enrichment fills: kind, domain, drift, priority, authority, needs_planning\n"),
        "{stdout}"
    );
    let stdout = String::from_utf8(seedcore_in(dir.path(), &["trace", "inspect", "burst.csv"]).stdout).unwrap();
    assert!(value(&stdout, "failed").starts_with("1 rows"), "{stdout}");
    assert_eq!(value(&stdout, "models"), "ChatGPT 4, GPT-4 1");
    assert!(stdout.contains("needs_planning, signature\n"), "{stdout}");
}

#[test]
fn inspect_json_is_one_object_with_stable_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("burst.csv"), BURSTGPT).unwrap();
    let output = seedcore_in(dir.path(), &["trace", "inspect", "burst.csv", "--format", "burstgpt", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["rows"], 5);
    assert_eq!(json["span_ms"], 10_000);
    assert_eq!(json["mean_rate_per_s"], 0.5);
    assert_eq!(json["failed"], 1);
    assert_eq!(json["format"], "burstgpt");
    assert_eq!(json["format_guessed"], false);
    assert_eq!(json["file"], "burst.csv");
    assert_eq!(json["repeats"], serde_json::Value::Null);
    assert_eq!(json["models"]["GPT-4"], 1);
    assert_eq!(json["log_types"]["Conversation log"], 4);
    assert_eq!(json["peak_second"]["arrivals"], 1);
    assert_eq!(json["tokens_in"]["max"], 1024);
    assert_eq!(json["enrichment_fills"].as_array().map(Vec::len), Some(7));
}

/// A trace scenario over `trace` (in `dir`) in `format`, with `extra` workload keys.
fn trace_scenario(dir: &Path, name: &str, trace: &str, format: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "name = \"t\"\nseed = 7\n\n[workload]\nsource = \"trace\"\ntrace = \"{trace}\"\nformat = \"{format}\"\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A converted trace replayed as canonical gives the tasks (and failed rows) of the
/// original with the same seed.
#[test]
fn a_converted_trace_replays_as_the_original() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, format) in
        [("burst.csv", BURSTGPT, "burstgpt"), ("m.jsonl", MOONCAKE, "mooncake"), ("a.csv", AZURE_2024, "azure")]
    {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = format!("{name}.canonical.csv");
        let output = seedcore_in(dir.path(), &["trace", "convert", name, "--to", "canonical", "--out", &out]);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let written = std::fs::read_to_string(dir.path().join(&out)).unwrap();
        assert_eq!(written.lines().next().unwrap().ends_with(",failed"), format == "burstgpt", "{written}");
        let original = seedcore_sim::load(&trace_scenario(dir.path(), "o.toml", name, format, "")).unwrap();
        let converted = seedcore_sim::load(&trace_scenario(dir.path(), "c.toml", &out, "canonical", "")).unwrap();
        assert_eq!(original.duration_ms, converted.duration_ms, "{name}");
        let tasks = original.workload.tasks(7, original.duration_ms);
        assert_eq!(tasks, converted.workload.tasks(7, converted.duration_ms), "{name}");
        let failed = original.workload.failed_in_trace(&tasks);
        assert_eq!(failed, converted.workload.failed_in_trace(&tasks), "{name}");
        assert_eq!(failed.len(), usize::from(format == "burstgpt"), "{name}");
    }
}

#[test]
fn convert_never_replaces_a_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("burst.csv"), BURSTGPT).unwrap();
    let convert = ["trace", "convert", "burst.csv", "--to", "canonical"];
    let output = seedcore_in(dir.path(), &convert);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let written = dir.path().join("burst.canonical.csv");
    assert!(written.exists(), "the default name, in the current directory");
    std::fs::write(&written, "keep me").unwrap();
    let output = seedcore_in(dir.path(), &convert);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "keep me");
    let mut forced = convert.to_vec();
    forced.extend(["--force", "--seed", "3"]);
    let output = seedcore_in(dir.path(), &forced);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(std::fs::read_to_string(&written).unwrap().starts_with("task_id,"));
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["burst.canonical.csv", "burst.csv"], "no temporary file is left");
}

/// A bad row is exit 2 naming the file, the line and the column (or key), and nothing is
/// written.
#[test]
fn a_bad_row_exits_2_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = MOONCAKE.replace("\"input_length\": 1000", "\"input_length\": -3");
    std::fs::write(dir.path().join("bad.jsonl"), bad).unwrap();
    let output = seedcore_in(dir.path(), &["trace", "inspect", "bad.jsonl"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.jsonl: line 2, column input_length"), "{stderr}");

    std::fs::write(dir.path().join("bad.csv"), BURSTGPT.replace("9,GPT-4,100,50", "9,GPT-4,100,fifty")).unwrap();
    let output = seedcore_in(dir.path(), &["trace", "convert", "bad.csv", "--to", "canonical", "--out", "x.csv"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.csv: line 4, column Response tokens"), "{stderr}");
    assert!(!dir.path().join("x.csv").exists());

    std::fs::write(dir.path().join("odd.csv"), "time,tokens\n1,2\n").unwrap();
    let output = seedcore_in(dir.path(), &["trace", "inspect", "odd.csv"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot tell the format"));
}

/// `start` and `for` slice a trace before `speed`; an empty slice and an unknown format are
/// errors naming their key.
#[test]
fn scenarios_slice_traces_and_name_every_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("burst.csv"), BURSTGPT).unwrap();
    let sliced =
        trace_scenario(dir.path(), "s.toml", "burst.csv", "burstgpt", "start = \"2s\"\nfor = \"5s\"\nspeed = 2.0\n");
    let scenario = seedcore_sim::load(&sliced).unwrap();
    let tasks = scenario.workload.tasks(7, scenario.duration_ms);
    // Rows at 2 s, 4 s and 5 s of the trace; re-based to 0, 2000, 3000 ms; then twice as fast.
    assert_eq!(tasks.iter().map(|t| t.at_ms).collect::<Vec<_>>(), [0, 1_000, 1_500]);
    assert_eq!(scenario.workload.failed_in_trace(&tasks).into_iter().collect::<Vec<_>>(), [0]);

    let empty = trace_scenario(dir.path(), "e.toml", "burst.csv", "burstgpt", "start = \"1h\"\n");
    let error = seedcore_sim::load(&empty).unwrap_err().to_string();
    assert!(error.contains("e.toml:8: workload.start") && error.contains("spans 10000 ms"), "{error}");
    let gap = trace_scenario(dir.path(), "g.toml", "burst.csv", "burstgpt", "start = \"6s\"\nfor = \"1s\"\n");
    let error = seedcore_sim::load(&gap).unwrap_err().to_string();
    assert!(error.contains("g.toml:9: workload.for"), "{error}");
    let unknown = trace_scenario(dir.path(), "u.toml", "burst.csv", "sharegpt", "");
    let error = seedcore_sim::load(&unknown).unwrap_err().to_string();
    assert!(error.contains("workload.format") && error.contains("canonical, azure, mooncake, burstgpt"), "{error}");
}

/// A mooncake trace replays under the simulator: every row is a task with an outcome.
#[cfg(madsim)]
#[test]
fn a_mooncake_scenario_replays() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.jsonl"), MOONCAKE).unwrap();
    trace_scenario(dir.path(), "s.toml", "m.jsonl", "mooncake", "");
    let output = seedcore_in(dir.path(), &["replay", "s.toml", "--replays", "1", "--out", "run"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 1)), "the run completes: {stderr}");
    let tasks = std::fs::read_to_string(dir.path().join("run").join("tasks.csv")).unwrap();
    assert_eq!(tasks.lines().count(), 1 + 4, "{tasks}");
    assert!(!tasks.contains(",lost,"), "{tasks}");
}

/// A BurstGPT row that failed when recorded fails in the replay, and only that one.
#[cfg(madsim)]
#[test]
fn a_burstgpt_failed_row_fails_in_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("burst.csv"), BURSTGPT).unwrap();
    // Backends without errors of their own: the trace's failure is the only one.
    let quiet = "\n[backend.fast]\nerror_rate = 0.0\n\n[backend.deep]\nerror_rate = 0.0\n";
    trace_scenario(dir.path(), "s.toml", "burst.csv", "burstgpt", quiet);
    let output = seedcore_in(dir.path(), &["replay", "s.toml", "--replays", "1", "--out", "run"]);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&output.stderr));
    let tasks = std::fs::read_to_string(dir.path().join("run").join("tasks.csv")).unwrap();
    let mut lines = tasks.lines();
    let status = lines.next().unwrap().split(',').position(|c| c == "status").unwrap();
    let failed: Vec<&str> =
        lines.filter(|l| l.split(',').nth(status) == Some("failed")).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(failed, ["1"], "{tasks}");
}

/// The median of column `name` over the fast path's completed, uncached tasks of a run's
/// `tasks.csv`.
#[cfg(madsim)]
fn fast_median(tasks: &str, name: &str) -> u64 {
    let mut lines = tasks.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |column: &str| header.iter().position(|c| *c == column).unwrap();
    let (path, status, cache_hit, value) = (at("path"), at("status"), at("cache_hit"), at(name));
    let mut values: Vec<u64> = lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|r| r[path] == "fast" && r[status] == "completed" && r[cache_hit] == "false")
        .map(|r| r[value].parse().unwrap())
        .collect();
    assert!(values.len() > 100, "{} fast completions", values.len());
    values.sort_unstable();
    values[values.len() / 2]
}

/// The same arrivals with long prompts (a Mooncake trace, 20,000 tokens each) and with the
/// Azure hour's median prompt (1,020 tokens): the simulated backend's latency and time to
/// first token follow the prompt.
#[cfg(madsim)]
#[test]
fn a_long_context_trace_answers_later_than_azure_sized_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut mooncake, mut azure) = (String::new(), String::from("TIMESTAMP,ContextTokens,GeneratedTokens\n"));
    for i in 0..300u64 {
        let ms = i * 200;
        let blocks: Vec<String> = (0..40).map(|b| (i * 40 + b).to_string()).collect();
        mooncake.push_str(&format!(
            "{{\"timestamp\": {ms}, \"input_length\": 20000, \"output_length\": 129, \"hash_ids\": [{}]}}\n",
            blocks.join(", ")
        ));
        azure.push_str(&format!(
            "2023-11-16 18:{:02}:{:02}.{:03}0000,1020,129\n",
            15 + ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        ));
    }
    std::fs::write(dir.path().join("long.jsonl"), mooncake).unwrap();
    std::fs::write(dir.path().join("short.csv"), azure).unwrap();
    let mut medians = Vec::new();
    for (trace, format) in [("long.jsonl", "mooncake"), ("short.csv", "azure")] {
        let scenario = format!("{format}.toml");
        trace_scenario(dir.path(), &scenario, trace, format, "");
        let out = format!("run-{format}");
        let output = seedcore_in(dir.path(), &["replay", &scenario, "--replays", "1", "--out", &out]);
        assert!(matches!(output.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&output.stderr));
        let tasks = std::fs::read_to_string(dir.path().join(&out).join("tasks.csv")).unwrap();
        medians.push((fast_median(&tasks, "latency_ms"), fast_median(&tasks, "ttft_ms")));
    }
    let [(long_p50, long_ttft), (short_p50, short_ttft)] = medians[..] else { unreachable!() };
    assert!(long_p50 > 2 * short_p50, "fast p50: {long_p50} ms with long prompts, {short_p50} ms with short ones");
    assert!(long_ttft > 3 * short_ttft, "TTFT p50: {long_ttft} ms against {short_ttft} ms");
}
