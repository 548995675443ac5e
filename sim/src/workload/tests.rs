//! The trace formats as read, sliced and replayed.

use super::*;
use seedcore_engine::Kind;

fn read(text: &str, file: &str, format: TraceFormat) -> Result<LoadedTrace, String> {
    read_trace(text.as_bytes(), file, format).map_err(|e| e.to_string())
}

fn foreign(trace: &LoadedTrace) -> &[TraceRow] {
    match &trace.rows {
        TraceRows::Foreign(rows) => rows,
        TraceRows::Canonical { .. } => panic!("a foreign trace"),
    }
}

fn trace_workload(rows: TraceRows, speed: f64, loops: u32) -> Workload {
    Workload::Trace {
        path: PathBuf::from("t"),
        format: TraceFormat::Canonical,
        rows,
        speed,
        loops,
        enrichment: Enrichment::default(),
    }
}

const BURSTGPT: &str = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n";
const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n";

#[test]
fn canonical_traces_loop_and_scale() {
    let header = CANONICAL_HEADER.join(",");
    let text = format!(
        "{header}\n7,0,chat,guest,0.1,3,low,false,100,20,42\n8,2000,summary,facility,0.9,10,high,true,5,6,43\n"
    );
    let workload = trace_workload(read(&text, "t.csv", TraceFormat::Canonical).unwrap().rows, 2.0, 2);
    // One loop spans (2000 + 1) / 2 rounded up = 1001 ms; the second loop follows it.
    assert_eq!(workload.span_ms(), Some(2_002));
    let tasks = workload.tasks(1, 10_000);
    let summary: Vec<(u64, u64, Kind, bool)> =
        tasks.iter().map(|t| (t.task_id, t.at_ms, t.kind, t.needs_planning)).collect();
    assert_eq!(
        summary,
        vec![
            (0, 0, Kind::Chat, false),
            (1, 1_000, Kind::Summary, true),
            (2, 1_001, Kind::Chat, false),
            (3, 2_001, Kind::Summary, true)
        ]
    );
    assert_eq!(workload.tasks(1, 1_001).len(), 2, "arrivals stop at the duration");
    assert!(workload.failed_in_trace(&tasks).is_empty());
}

#[test]
fn a_bad_row_names_file_line_and_column_in_every_format() {
    let canonical = CANONICAL_HEADER.join(",");
    for (format, text, expected) in [
        (
            TraceFormat::Azure,
            format!("{AZURE}2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.99,lots,109\n"),
            "t: line 3, column ContextTokens",
        ),
        (TraceFormat::Azure, format!("{AZURE}2023-11-16 18:15:46.68,374,-4\n"), "t: line 2, column GeneratedTokens"),
        (TraceFormat::Azure, format!("{AZURE}2023-11-16 18:15:46.68,4294967296,4\n"), "line 2, column ContextTokens"),
        (TraceFormat::Azure, format!("{AZURE}16/11/2023 18:15,1,1\n"), "t: line 2, column TIMESTAMP"),
        (
            TraceFormat::Burstgpt,
            format!("{BURSTGPT}5,ChatGPT,1,2,3,x\n6,ChatGPT,1,two,3,x\n"),
            "line 3, column Response tokens",
        ),
        (TraceFormat::Burstgpt, format!("{BURSTGPT}5,ChatGPT,1,2,three,x\n"), "t: line 2, column Total tokens"),
        (TraceFormat::Burstgpt, format!("{BURSTGPT}soon,ChatGPT,1,2,3,x\n"), "t: line 2, column Timestamp"),
        (
            TraceFormat::Burstgpt,
            format!("{BURSTGPT}5,ChatGPT,1,2,3,x\n4,ChatGPT,1,2,3,x\n"),
            "line 3, column Timestamp",
        ),
        (
            TraceFormat::Canonical,
            format!("{canonical},failed\n1,0,chat,d,0.1,5,medium,false,10,10,1,maybe\n"),
            "t: line 2, column failed",
        ),
        (
            TraceFormat::Canonical,
            format!("{canonical}\n1,0,chat,d,1.5,5,medium,false,10,10,1\n"),
            "line 2, column drift",
        ),
        (TraceFormat::Mooncake, "{\"timestamp\": 0, \"input_length\": 1}\n".into(), "t: line 1, column output_length"),
    ] {
        let error = read(&text, "t", format).unwrap_err();
        assert!(error.contains(expected), "{format:?}: {error}");
    }
    let error = read(&format!("{canonical},extra\n"), "t", TraceFormat::Canonical).unwrap_err();
    assert!(error.contains("header is"), "{error}");
    let error = read("", "t", TraceFormat::Mooncake).unwrap_err();
    assert!(error.contains("no rows"), "{error}");
}

/// The 2023 and 2024 forms of the Azure trace give the same offsets for the same instants.
#[test]
fn both_azure_timestamp_forms_give_the_same_offsets() {
    let old = format!("{AZURE}2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n");
    let new = format!("{AZURE}2023-11-16 18:15:46.680590+00:00,374,44\n2023-11-16 19:15:50.995169+01:00,396,109\n");
    let (old, new) = (read(&old, "t", TraceFormat::Azure).unwrap(), read(&new, "t", TraceFormat::Azure).unwrap());
    assert_eq!(foreign(&old), foreign(&new));
    assert_eq!(foreign(&old)[1].offset_ms, 4_314);
    assert_eq!(old.start_utc_ms, new.start_utc_ms);
    assert_eq!(old.start_utc_ms, Some(1_700_158_546_680));
}

#[test]
fn burstgpt_failed_rows_are_kept_and_fail_in_every_loop() {
    let text = format!(
        "{BURSTGPT}5,ChatGPT,472,18,490,Conversation log\n6.5,ChatGPT,1024,0,1024,Conversation log\n\
         8,GPT-4,100,50,150,API log\n"
    );
    let trace = read(&text, "b.csv", TraceFormat::Burstgpt).unwrap();
    let rows = foreign(&trace);
    assert_eq!(
        rows.iter().map(|r| (r.offset_ms, r.failed)).collect::<Vec<_>>(),
        [(0, false), (1_500, true), (3_000, false)]
    );
    assert_eq!(trace.start_utc_ms, None);
    let workload = trace_workload(trace.rows, 1.0, 2);
    let tasks = workload.tasks(7, u64::MAX);
    assert_eq!(tasks.len(), 6);
    assert_eq!(workload.failed_in_trace(&tasks), BTreeSet::from([1, 4]));
    assert_eq!(workload.failed_in_trace(&tasks[..2]), BTreeSet::from([1]));
    let generated = Workload::Generated {
        spec: GeneratedSpec {
            rate_per_s: 1.0,
            diurnal: 0.0,
            diurnal_period_ms: 1_000,
            tokens_in: (10.0, 20.0),
            tokens_out: (10.0, 20.0),
            bursts: vec![],
        },
        enrichment: Enrichment::default(),
    };
    assert!(generated.failed_in_trace(&tasks).is_empty());
}

/// Equal `hash_ids` give equal signatures and kinds (a repeat the cache can serve); rows
/// with a trace signature take no synthetic repeat.
#[test]
fn mooncake_repeats_are_the_same_request() {
    let text = concat!(
        "{\"timestamp\": 0, \"input_length\": 1200, \"output_length\": 52, \"hash_ids\": [46, 47, 48]}\n",
        "{\"timestamp\": 1500, \"input_length\": 700, \"output_length\": 10, \"hash_ids\": [7, 8]}\n",
        "{\"timestamp\": 2500, \"input_length\": 1200, \"output_length\": 30, \"hash_ids\": [46, 47, 48]}\n",
    );
    let workload = trace_workload(read(text, "m.jsonl", TraceFormat::Mooncake).unwrap().rows, 1.0, 1);
    for seed in [1, 7, 99] {
        let tasks = workload.tasks(seed, u64::MAX);
        assert_eq!(tasks[0].signature, blocks_signature(&[46, 47, 48]));
        assert_eq!(
            (tasks[2].signature, tasks[2].kind, &tasks[2].domain),
            (tasks[0].signature, tasks[0].kind, &tasks[0].domain)
        );
        assert_ne!(tasks[1].signature, tasks[0].signature);
        assert_eq!(tasks[2].tokens_out, 30, "the row's own output length");
    }
}

#[test]
fn slicing_keeps_a_window_rebased_to_its_start() {
    let text = format!("{BURSTGPT}100,m,1,1,2,l\n110,m,2,1,3,l\n160,m,3,0,3,l\n700,m,4,1,5,l\n");
    let trace = read(&text, "b.csv", TraceFormat::Burstgpt).unwrap();
    assert_eq!(trace.span_ms(), 600_000);
    let sliced = trace.clone().slice(10_000, Some(60_000)).unwrap();
    assert_eq!(
        foreign(&sliced).iter().map(|r| (r.offset_ms, r.tokens_in, r.failed)).collect::<Vec<_>>(),
        [(0, 2, false), (50_000, 3, true)]
    );
    let tail = trace.clone().slice(60_000, None).unwrap();
    assert_eq!(foreign(&tail).iter().map(|r| r.offset_ms).collect::<Vec<_>>(), [0, 540_000]);
    assert_eq!(trace.clone().slice(610_000, None).unwrap_err(), EmptySlice { span_ms: 600_000 });
    assert_eq!(trace.slice(61_000, Some(1_000)).unwrap_err(), EmptySlice { span_ms: 600_000 });

    let canonical = format!(
        "{},failed\n5,500,chat,d,0.1,5,medium,false,10,10,1,false\n6,1500,chat,d,0.1,5,medium,false,10,10,2,true\n",
        CANONICAL_HEADER.join(",")
    );
    let sliced = read(&canonical, "c.csv", TraceFormat::Canonical).unwrap().slice(1_000, None).unwrap();
    assert_eq!(
        sliced.rows,
        TraceRows::Canonical { tasks: vec![Task { at_ms: 0, ..canonical_row(6, 2) }], failed: vec![true] }
    );

    let azure = format!("{AZURE}2023-11-16 18:15:46.000,1,1\n2023-11-16 18:16:46.500,2,2\n");
    let sliced = read(&azure, "a.csv", TraceFormat::Azure).unwrap().slice(60_000, Some(1_000)).unwrap();
    assert_eq!(sliced.start_utc_ms, Some(1_700_158_546_000 + 60_000));
    assert_eq!(foreign(&sliced)[0].offset_ms, 500);
}

fn canonical_row(task_id: u64, signature: u64) -> Task {
    Task {
        task_id,
        at_ms: 0,
        kind: Kind::Chat,
        domain: "d".into(),
        drift: 0.1,
        priority: 5,
        authority: seedcore_engine::Authority::Medium,
        needs_planning: false,
        tokens_in: 10,
        tokens_out: 10,
        signature,
    }
}

/// A trace written as canonical reads back as the same tasks and failed rows.
#[test]
fn written_canonical_traces_read_back() {
    let text = format!("{BURSTGPT}5,ChatGPT,472,18,490,c\n6.5,ChatGPT,1024,0,1024,c\n8,GPT-4,100,50,150,a\n");
    let original = trace_workload(read(&text, "b.csv", TraceFormat::Burstgpt).unwrap().rows, 1.0, 1);
    let tasks = original.tasks(7, u64::MAX);
    let failed = original.failed_in_trace(&tasks);
    let mut written = Vec::new();
    write_canonical(&mut written, &tasks, &failed).unwrap();
    let written = String::from_utf8(written).unwrap();
    assert!(written.starts_with(&format!("{},failed\n", CANONICAL_HEADER.join(","))), "{written}");
    let replayed = trace_workload(read(&written, "c.csv", TraceFormat::Canonical).unwrap().rows, 1.0, 1);
    let again = replayed.tasks(7, u64::MAX);
    assert_eq!(again, tasks);
    assert_eq!(replayed.failed_in_trace(&again), failed);
    let mut plain = Vec::new();
    write_canonical(&mut plain, &tasks, &BTreeSet::new()).unwrap();
    assert!(String::from_utf8(plain).unwrap().starts_with(&format!("{}\n", CANONICAL_HEADER.join(","))));
}

/// The old reader and enrichment, as they were before the trace formats: the Azure hour
/// must give exactly the tasks it gave then, for every seed.
mod before {
    use crate::workload::enrich::splitmix64;
    use crate::workload::Enrichment;
    use seedcore_engine::{Authority, Kind, Task};
    use std::path::Path;

    fn unit(seed: u64, row: u64, stream: u64) -> f64 {
        let bits = splitmix64(seed ^ splitmix64(row.wrapping_mul(64).wrapping_add(stream)));
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick_kind(e: &Enrichment, u: f64) -> Kind {
        let total: f64 = e.mix.iter().sum();
        let mut acc = 0.0;
        for kind in Kind::ALL {
            acc += e.mix[kind.index()] / total;
            if u < acc {
                return kind;
            }
        }
        *Kind::ALL.iter().rev().find(|k| e.mix[k.index()] > 0.0).unwrap()
    }

    /// The old `Enrichment::task`, verbatim but for its receiver.
    fn task(e: &Enrichment, seed: u64, row: u64, at_ms: u64, tokens: (u32, u32), history: &mut Vec<Task>) -> Task {
        let draw = |stream| unit(seed, row, stream);
        let episode: f64 =
            e.drift_episodes.iter().filter(|(from, to, _)| (*from..*to).contains(&at_ms)).map(|x| x.2).sum();
        let context = (f64::from(tokens.0) + 1.0).ln() / 8192f64.ln();
        let drift = (e.drift_base + e.drift_context * context + e.drift_noise * (2.0 * draw(1) - 1.0) + episode)
            .clamp(0.0, 1.0);
        let authority = match draw(3) {
            u if u < e.low_authority_rate => Authority::Low,
            u if u < e.low_authority_rate + 0.5 * (1.0 - e.low_authority_rate) => Authority::Medium,
            _ => Authority::High,
        };
        let mut task = Task {
            task_id: row,
            at_ms,
            kind: pick_kind(e, draw(0)),
            domain: e.domains[(draw(5) * e.domains.len() as f64) as usize % e.domains.len()].clone(),
            drift,
            priority: (draw(4) * 11.0) as u8 % 11,
            authority,
            needs_planning: draw(2) < e.planning_rate,
            tokens_in: tokens.0,
            tokens_out: tokens.1,
            signature: splitmix64(seed ^ splitmix64(row ^ 0x5167_6e61_7475_7265)),
        };
        if draw(6) < e.repeat_rate && !history.is_empty() {
            let back = (draw(7) * history.len() as f64) as usize % history.len();
            let earlier = &history[history.len() - 1 - back];
            task.kind = earlier.kind;
            task.signature = earlier.signature;
            task.domain = earlier.domain.clone();
            task.tokens_in = earlier.tokens_in;
            task.tokens_out = earlier.tokens_out;
        }
        if history.len() == 8 {
            history.remove(0);
        }
        history.push(task.clone());
        task
    }

    /// The old reader (chrono's `%Y-%m-%d %H:%M:%S%.f`, offsets from microseconds) and the
    /// old loop of `Workload::tasks` for one pass at speed 1.
    pub fn tasks(path: &Path, e: &Enrichment, seed: u64, duration_ms: u64) -> Vec<Task> {
        let bytes = std::fs::read(path).unwrap();
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(bytes.as_slice());
        let mut rows: Vec<(i64, u32, u32)> = Vec::new();
        for record in reader.records() {
            let record = record.unwrap();
            let stamp = chrono::NaiveDateTime::parse_from_str(&record[0], "%Y-%m-%d %H:%M:%S%.f").unwrap();
            rows.push((stamp.and_utc().timestamp_micros(), record[1].parse().unwrap(), record[2].parse().unwrap()));
        }
        let first = rows[0].0;
        let mut history = Vec::new();
        let mut tasks = Vec::new();
        for (row, (micros, tin, tout)) in rows.iter().enumerate() {
            let at_ms = ((micros - first) / 1000) as u64;
            let t = task(e, seed, row as u64, at_ms, (*tin, *tout), &mut history);
            if t.at_ms >= duration_ms {
                break;
            }
            tasks.push(t);
        }
        tasks
    }
}

/// The Azure conversation hour, as `scenarios/azure-conv.toml` replays it, gives exactly
/// the tasks of the reader and enrichment before the trace formats, for several seeds.
#[test]
fn the_azure_hour_replays_as_before() {
    let scenario_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/azure-conv.toml");
    let scenario = crate::scenario::load(&scenario_path).unwrap();
    let Workload::Trace { path, enrichment, .. } = &scenario.workload else { panic!("a trace workload") };
    assert_eq!(scenario.engine.epoch_utc_ms, 1_700_158_546_680, "the UTC start is the first row's");
    for seed in [7, 1, 12_345] {
        let now = scenario.workload.tasks(seed, scenario.duration_ms);
        let then = before::tasks(path, enrichment, seed, scenario.duration_ms);
        assert_eq!(now.len(), 19_366);
        assert!(
            now == then,
            "seed {seed}: the first difference is at task {:?}",
            now.iter().zip(&then).position(|(a, b)| a != b)
        );
    }
}
