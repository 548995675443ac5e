//! `seedcore trace inspect FILE` and `seedcore trace convert FILE --to canonical`: what a
//! trace holds before it is replayed, and a trace in any format as the canonical CSV
//! (docs/harness.md 5.2). Both builds. The work is in `seedcore_sim::workload`.

use crate::exit::{self, usage, Failure};
use seedcore_sim::workload::{self, Enrichment, LoadedTrace, TraceFormat, TraceStats, Workload};
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMATS: [&str; 4] = ["canonical", "azure", "mooncake", "burstgpt"];

/// `seedcore trace ...`.
#[derive(clap::Subcommand)]
pub enum TraceCommand {
    /// Print what a trace holds: rows, span, arrival rates, token percentiles, repeats,
    /// failed rows, and the task fields the enrichment fills.
    Inspect(InspectArgs),
    /// Write a trace as the canonical CSV: the tasks its workload gives for a seed
    /// (`failed` column when any row failed). Replayed with `format = "canonical"`, it gives
    /// the same tasks as the original with the same seed.
    Convert(ConvertArgs),
}

/// `seedcore trace inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The trace file.
    file: PathBuf,
    /// Its format (default: guessed, `.jsonl` is mooncake, otherwise the CSV header decides).
    #[arg(long, value_parser = FORMATS)]
    format: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `seedcore trace convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The trace file.
    file: PathBuf,
    /// The format to write.
    #[arg(long, value_parser = ["canonical"])]
    to: String,
    /// The input's format (default: guessed, as `inspect` does).
    #[arg(long, value_parser = FORMATS)]
    format: Option<String>,
    /// The seed the enrichment draws from.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Enrich with this scenario's `[workload.enrich]` instead of the defaults (its slice,
    /// speed and loops are not applied).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Where to write (default: `<file stem>.canonical.csv` in the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(command: TraceCommand) -> Result<u8, Failure> {
    match command {
        TraceCommand::Inspect(args) => inspect(args),
        TraceCommand::Convert(args) => convert(args),
    }
}

/// The format given, or the one guessed and how.
fn format_of(file: &Path, given: Option<&str>) -> Result<(TraceFormat, Option<&'static str>), Failure> {
    match given.and_then(TraceFormat::parse) {
        Some(format) => Ok((format, None)),
        None => {
            let (format, how) = workload::guess_format(file).map_err(|e| usage(e.to_string()))?;
            Ok((format, Some(how)))
        }
    }
}

/// The trace and its format; a bad file is a usage error naming the file and the line.
fn load(file: &Path, given: Option<&str>) -> Result<(LoadedTrace, TraceFormat, Option<&'static str>), Failure> {
    let (format, guessed) = format_of(file, given)?;
    let trace = workload::load_trace(file, format).map_err(|e| usage(e.to_string()))?;
    Ok((trace, format, guessed))
}

fn inspect(args: InspectArgs) -> Result<u8, Failure> {
    let (trace, format, guessed) = load(&args.file, args.format.as_deref())?;
    let stats = workload::inspect(&trace, format);
    if args.json {
        let mut value = serde_json::to_value(&stats).map_err(|e| exit::runtime(e.to_string()))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("file".into(), args.file.display().to_string().into());
            object.insert("format_guessed".into(), guessed.is_some().into());
        }
        println!("{value}");
    } else {
        print!("{}", text(&args.file, &stats, guessed));
    }
    Ok(exit::PASS)
}

/// `1h 02m 03.250s`, `3.250s`, `250ms`.
fn human(ms: u64) -> String {
    let (hours, minutes, seconds, millis) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
    match (hours, minutes, seconds) {
        (0, 0, 0) => format!("{ms}ms"),
        (0, 0, _) => format!("{seconds}.{millis:03}s"),
        (0, _, _) => format!("{minutes}m {seconds:02}.{millis:03}s"),
        _ => format!("{hours}h {minutes:02}m {seconds:02}.{millis:03}s"),
    }
}

/// A peak: `12 in one second, at +3.250s (2023-...Z)`.
fn peak(p: &workload::inspect::Peak, window: &str) -> String {
    let utc = p.at_utc.as_ref().map_or_else(String::new, |t| format!(" ({t})"));
    format!("{} arrivals in one {window}, from +{}{utc}", p.arrivals, human(p.at_ms))
}

/// `p50 1020  p90 ...`.
fn spread(s: &workload::inspect::Spread) -> String {
    format!("p50 {}  p90 {}  p99 {}  max {}  mean {:.1}", s.p50, s.p90, s.p99, s.max, s.mean)
}

/// `ChatGPT 3, GPT-4 1`.
fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter().map(|(label, n)| format!("{label} {n}")).collect::<Vec<_>>().join(", ")
}

/// The text report of `inspect`: one `label  value` line per measure.
fn text(file: &Path, stats: &TraceStats, guessed: Option<&str>) -> String {
    let mut lines: Vec<(&str, String)> = vec![("file", file.display().to_string())];
    lines.push(("format", guessed.map_or(stats.format.to_string(), |how| format!("{} (guessed {how})", stats.format))));
    lines.push(("rows", stats.rows.to_string()));
    let start = stats.start_utc.as_ref().map_or_else(String::new, |t| format!(", starting {t}"));
    lines.push(("span", format!("{} first to last arrival{start}", human(stats.span_ms))));
    let rate = stats.mean_rate_per_s.map_or("n/a (the span is 0)".to_string(), |r| format!("{r:.3} arrivals/s"));
    lines.push(("mean rate", rate));
    lines.push(("peak", peak(&stats.peak_second, "second")));
    lines.push(("", peak(&stats.peak_minute, "minute")));
    lines.push(("tokens in", spread(&stats.tokens_in)));
    lines.push(("tokens out", spread(&stats.tokens_out)));
    let repeats = match stats.repeats {
        Some(n) => format!("{n} rows repeat an earlier row's signature (cache hits when close enough)"),
        None => "not in this format: the enrichment draws them with repeat_rate".to_string(),
    };
    lines.push(("repeats", repeats));
    lines.push(("failed", format!("{} rows failed when recorded (every call fails in a replay)", stats.failed)));
    if !stats.models.is_empty() {
        lines.push(("models", counts(&stats.models)));
        lines.push(("log types", counts(&stats.log_types)));
    }
    let mut out: String = lines.iter().map(|(label, value)| format!("{label:<12}{value}\n")).collect();
    match stats.enrichment_fills.as_slice() {
        [] => out.push_str("enrichment fills: nothing (the rows are complete tasks)\n"),
        fields => out.push_str(&format!("enrichment fills: {}\n", fields.join(", "))),
    }
    out
}

fn convert(args: ConvertArgs) -> Result<u8, Failure> {
    let (trace, format, _) = load(&args.file, args.format.as_deref())?;
    let enrichment = match &args.scenario {
        None => Enrichment::default(),
        Some(path) => match seedcore_sim::load(path)?.workload {
            Workload::Trace { enrichment, .. } | Workload::Generated { enrichment, .. } => enrichment,
        },
    };
    let workload =
        Workload::Trace { path: args.file.clone(), format, rows: trace.rows, speed: 1.0, loops: 1, enrichment };
    let tasks = workload.tasks(args.seed, u64::MAX);
    let failed = workload.failed_in_trace(&tasks);
    let out = args.out.clone().unwrap_or_else(|| default_out(&args.file));
    write_new(&out, args.force, |w| workload::write_canonical(w, &tasks, &failed))?;
    println!(
        "wrote {} tasks ({} failed in the trace) of {} ({}, seed {}) to {}",
        tasks.len(),
        failed.len(),
        args.file.display(),
        format.as_str(),
        args.seed,
        out.display()
    );
    Ok(exit::PASS)
}

/// `<file stem>.canonical.csv`, in the current directory.
fn default_out(file: &Path) -> PathBuf {
    let stem = file.file_stem().map_or_else(|| "trace".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from(format!("{stem}.canonical.csv"))
}

/// Writes `out` through a temporary file beside it, renamed into place once complete: an
/// error never leaves a half-written file. An existing `out` is kept unless `force`.
fn write_new(
    out: &Path,
    force: bool,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), Failure> {
    let exists = || usage(format!("{}: already exists; give --force to replace it", out.display()));
    if out.exists() && !force {
        return Err(exists());
    }
    let name = out.file_name().ok_or_else(|| usage(format!("{}: not a file name", out.display())))?;
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let placed =
        write_file(&temp, write).and_then(|()| if force { std::fs::rename(&temp, out) } else { place_new(&temp, out) });
    let _ = std::fs::remove_file(&temp);
    placed.map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => exists(),
        _ => usage(format!("{}: cannot write: {e}", out.display())),
    })
}

/// Writes a new file at `path` with `write`, synced to disk.
fn write_file(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create_new(path)?);
    write(&mut file)?;
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Puts `temp` at `out` unless `out` exists (a hard link fails on an existing file; where
/// links are not supported, a rename after a last check).
fn place_new(temp: &Path, out: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(temp, out) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if out.exists() => Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(_) => std::fs::rename(temp, out),
    }
}
