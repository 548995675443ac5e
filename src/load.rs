//! `seedcore load` (docs/live.md 10): sends a trace to a live gateway at its recorded pace (or
//! `--speed X`, or a constant `--rate R`), bounded in requests and time, and prints a
//! summary like k6's: throughput, latency percentiles (hdrhistogram), status codes, and how
//! far the schedule slipped. `--threshold` turns a summary figure into a pass or fail.
//!
//! Latency is measured from the moment a request is sent; the schedule lag (sent later
//! than due, because `--concurrency` requests were outstanding) is reported beside it, so
//! coordinated omission is visible rather than hidden.

use std::path::PathBuf;

/// `seedcore load`.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// The trace to send (any format of `trace inspect`, guessed the same way),
    /// enriched with the default rules. Or give --scenario instead.
    trace: Option<PathBuf>,
    /// Send this scenario's workload (its trace and enrichment, or its generator).
    #[arg(long, conflicts_with = "trace", required_unless_present = "trace")]
    scenario: Option<PathBuf>,
    /// The gateway, e.g. http://127.0.0.1:7400 (as `serve` prints it).
    #[arg(long)]
    url: String,
    /// Seed of the enrichment (kind, drift, priority and signature per row).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Time compression of the recorded pace: 60 sends an hour in a minute.
    #[arg(long, default_value_t = 1.0, conflicts_with = "rate")]
    speed: f64,
    /// Send at this constant rate (requests per second) instead of the recorded pace.
    #[arg(long)]
    rate: Option<f64>,
    /// Which endpoint gets the tasks: `tasks` (POST /v1/tasks: run them) or `route`
    /// (POST /ocps/route: routing decisions only).
    #[arg(long, default_value = "tasks", value_parser = ["tasks", "route"])]
    endpoint: String,
    /// Stop after this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Stop sending after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    max_seconds: u64,
    /// Requests outstanding at most; a request due while this many are out waits (and the
    /// lag is reported).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    concurrency: u32,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Send the trace's task ids (the gateway's idempotency keys). Without it the gateway
    /// assigns ids, so a trace can be sent twice.
    #[arg(long)]
    with_ids: bool,
    /// A pass/fail rule on the summary, e.g. 'p99<200ms', 'p95<=1s', 'rps>=100',
    /// 'errors<1%' (non-2xx and transport errors). Repeatable; exit 1 on a breach.
    #[arg(long = "threshold", value_name = "RULE")]
    thresholds: Vec<String>,
    /// Allow a gateway that is not on loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Also write one CSV line per request to this file: task_id (the gateway's), HTTP
    /// status (or `timeout`, `error`) and outcome status.
    #[arg(long)]
    results: Option<PathBuf>,
    /// The environment variable holding the bearer token to send (`serve --tokens`; a
    /// token with the submit scope). Unset or empty: no token is sent. Never printed.
    #[arg(long, default_value = "SEEDCORE_TOKEN")]
    token_env: String,
}

/// `--threshold` rules; live only, like the load they judge (and in the unit tests of both builds).
#[cfg(any(not(madsim), test))]
mod thresholds {
    /// A parsed `--threshold`.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Threshold {
        pub text: String,
        pub metric: Metric,
        pub op: Op,
        pub value: f64,
    }

    /// What a threshold measures.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub enum Metric {
        /// A latency quantile (0.5 for `med`), or `min`/`max`/`avg`, in ms.
        Quantile(f64),
        Min,
        Max,
        Avg,
        /// Requests per second.
        Rps,
        /// Share of requests that were not 2xx (or not answered), in [0, 1].
        Errors,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Op {
        Lt,
        Le,
        Gt,
        Ge,
    }

    impl Op {
        pub fn holds(self, left: f64, right: f64) -> bool {
            match self {
                Op::Lt => left < right,
                Op::Le => left <= right,
                Op::Gt => left > right,
                Op::Ge => left >= right,
            }
        }
    }

    fn duration_ms(text: &str) -> Option<f64> {
        let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = text.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1000.0)
        } else {
            (text, 1.0)
        };
        number.trim().parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).map(|x| x * scale)
    }

    /// Parses `METRIC OP VALUE`, e.g. `p99<200ms`.
    pub fn parse_threshold(text: &str) -> Result<Threshold, String> {
        let bad = |why: &str| format!("--threshold {text:?}: {why}");
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let at = compact.find(['<', '>']).ok_or_else(|| bad("expected METRIC<VALUE or METRIC>VALUE"))?;
        let (name, rest) = compact.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let metric = match name {
            "min" => Metric::Min,
            "max" => Metric::Max,
            "avg" => Metric::Avg,
            "med" => Metric::Quantile(0.5),
            "rps" => Metric::Rps,
            "errors" => Metric::Errors,
            p if p.starts_with('p') => {
                let q: f64 = p[1..].parse().map_err(|_| bad("a percentile is p50, p90, p99, p99.9, ..."))?;
                if !(0.0..=100.0).contains(&q) {
                    return Err(bad("a percentile is between p0 and p100"));
                }
                Metric::Quantile(q / 100.0)
            }
            _ => return Err(bad("metrics are min, max, avg, med, pNN, rps, errors")),
        };
        let value = match metric {
            Metric::Rps => value.parse::<f64>().ok().filter(|x| x.is_finite()),
            Metric::Errors => match value.strip_suffix('%') {
                Some(p) => p.parse::<f64>().ok().map(|p| p / 100.0),
                None => value.parse::<f64>().ok(),
            },
            _ => duration_ms(value),
        }
        .ok_or_else(|| bad("the value is not a number (durations take ms, s or us; errors take %)"))?;
        Ok(Threshold { text: text.to_string(), metric, op, value })
    }
}

#[cfg(any(not(madsim), test))]
pub use thresholds::{parse_threshold, Metric};

#[cfg(madsim)]
pub fn run(_: LoadArgs) -> Result<u8, crate::exit::Failure> {
    Err(crate::exit::usage("load runs live; use the live build: cargo run --release -- load ..."))
}

#[cfg(not(madsim))]
pub fn run(args: LoadArgs) -> Result<u8, crate::exit::Failure> {
    live::load(args)
}

#[cfg(not(madsim))]
mod live {
    use super::thresholds::Threshold;
    use super::{parse_threshold, LoadArgs, Metric};
    use crate::exit;
    use hdrhistogram::Histogram;
    use seedcore_engine::Task;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::time::Instant;

    use crate::exit::{usage, Failure};

    /// The tasks to send: the scenario's workload, or the trace with default enrichment.
    fn tasks(args: &LoadArgs) -> Result<Vec<Task>, Failure> {
        let scenario = match (&args.scenario, &args.trace) {
            (Some(path), _) => seedcore_sim::load(path).map_err(|e| usage(e.to_string()))?,
            (None, Some(trace)) => {
                let (format, _) = seedcore_sim::workload::guess_format(trace).map_err(|e| usage(e.to_string()))?;
                let format = format.as_str();
                let absolute = std::path::absolute(trace).map_err(|e| usage(format!("{}: {e}", trace.display())))?;
                let source = format!(
                    "name = \"load\"\nseed = {}\n[workload]\nsource = \"trace\"\ntrace = {}\nformat = \"{format}\"\n",
                    args.seed,
                    toml_string(&absolute.display().to_string()),
                );
                seedcore_sim::scenario::from_source(&source, Path::new("(load)"), Path::new("."))
                    .map_err(|e| usage(e.to_string()))?
            }
            (None, None) => return Err(usage("give a trace or --scenario")),
        };
        Ok(scenario.workload.tasks(args.seed, scenario.duration_ms))
    }

    fn toml_string(text: &str) -> String {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }

    /// The gateway's base URL, checked: http, and loopback unless `--allow-remote`.
    fn base_url(args: &LoadArgs) -> Result<reqwest::Url, Failure> {
        let url = reqwest::Url::parse(&args.url).map_err(|e| usage(format!("--url {:?}: {e}", args.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(usage(format!("--url {:?}: expected http://HOST:PORT", args.url)));
        }
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback && !args.allow_remote {
            return Err(usage(format!(
                "--url {:?} is not on loopback; load sends real traffic, so a remote gateway needs --allow-remote",
                args.url
            )));
        }
        Ok(url)
    }

    fn body(task: &Task, with_id: bool) -> Vec<u8> {
        let mut value = json!({
            "kind": task.kind.as_str(), "domain": task.domain, "drift": task.drift,
            "priority": task.priority, "authority": task.authority.as_str(),
            "needs_planning": task.needs_planning, "tokens_in": task.tokens_in,
            "tokens_out": task.tokens_out, "signature": task.signature,
        });
        if with_id {
            value["task_id"] = json!(task.task_id);
        }
        serde_json::to_vec(&value).expect("a task serialises")
    }

    /// What the run measured.
    struct Tally {
        latency_us: Histogram<u64>,
        lag_us: Histogram<u64>,
        statuses: BTreeMap<String, u64>,
        outcomes: BTreeMap<String, u64>,
        sent: u64,
        failed: u64,
        /// Per request with `--results`: the task id answered, the status, the outcome.
        results: Vec<(Option<u64>, String, Option<String>)>,
    }

    impl Tally {
        fn new() -> Tally {
            Tally {
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                lag_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                statuses: BTreeMap::new(),
                outcomes: BTreeMap::new(),
                sent: 0,
                failed: 0,
                results: Vec::new(),
            }
        }
    }

    fn micros(d: Duration) -> u64 {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
    }

    pub fn load(args: LoadArgs) -> Result<u8, Failure> {
        let thresholds: Vec<Threshold> =
            args.thresholds.iter().map(|t| parse_threshold(t)).collect::<Result<_, _>>().map_err(usage)?;
        if !(args.speed.is_finite() && args.speed > 0.0) {
            return Err(usage("--speed must be a positive number"));
        }
        if let Some(rate) = args.rate.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(usage(format!("--rate {rate} must be a positive number of requests per second")));
        }
        let base = base_url(&args)?;
        let path = if args.endpoint == "route" { "/ocps/route" } else { "/v1/tasks" };
        let target = base.join(path).map_err(|e| usage(e.to_string()))?;
        let mut tasks = tasks(&args)?;
        if let Some(max) = args.max_requests {
            tasks.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        }
        if tasks.is_empty() {
            return Err(usage("the workload has no tasks to send"));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| exit::runtime(format!("cannot start the runtime: {e}")))?;
        let summary = runtime.block_on(send(&args, target.clone(), tasks))?;
        let breaches = print_summary(&args, &target, &summary, &thresholds);
        if let Some(path) = &args.summary_json {
            let text = serde_json::to_string_pretty(&summary.json(&thresholds)).expect("a summary serialises");
            std::fs::write(path, text + "\n")
                .map_err(|e| exit::runtime(format!("cannot write {}: {e}", path.display())))?;
        }
        if let Some(path) = &args.results {
            let mut text = String::from("task_id,status,outcome\n");
            for (task_id, status, outcome) in &summary.tally.results {
                let id = task_id.map(|id| id.to_string()).unwrap_or_default();
                text.push_str(&format!("{id},{status},{}\n", outcome.as_deref().unwrap_or("")));
            }
            std::fs::write(path, text).map_err(|e| exit::runtime(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(if breaches > 0 { exit::INVARIANT_FAILED } else { exit::PASS })
    }

    struct Summary {
        tally: Tally,
        wall: Duration,
        /// From the start to the last request sent: the rate offered, without the tail of
        /// answers still coming (deep tasks take seconds).
        sending: Duration,
        stopped_by: &'static str,
    }

    /// The `Authorization` header for the bearer token in the environment variable `name`
    /// (none when it is unset or empty), marked sensitive so it is never printed.
    fn authorization(name: &str) -> Result<Option<reqwest::header::HeaderValue>, Failure> {
        let Some(token) = std::env::var(name).ok().filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| usage(format!("${name}: not a token (it has characters a header cannot carry)")))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// What one request's answer is tallied with.
    struct Record {
        /// Keep the request's line for `--results`.
        keep: bool,
        /// Read the outcome from the body (not for `/ocps/route`).
        outcomes: bool,
        /// How late the request was sent.
        lag: Duration,
        tally: Arc<Mutex<Tally>>,
    }

    /// Sends one request, waits for its answer and tallies it; the permit is held until the
    /// answer is in.
    async fn answer(
        request: reqwest::RequestBuilder,
        permit: tokio::sync::OwnedSemaphorePermit,
        record: Record,
        progress: indicatif::ProgressBar,
    ) {
        let sent = Instant::now();
        let (status, outcome, task_id) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16().to_string();
                let body = response.bytes().await.ok().filter(|_| record.outcomes);
                let value = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                let outcome = value.as_ref().and_then(|v| v["outcome"]["status"].as_str().map(str::to_string));
                (status, outcome, value.and_then(|v| v["task_id"].as_u64()))
            }
            Err(e) if e.is_timeout() => ("timeout".to_string(), None, None),
            Err(_) => ("error".to_string(), None, None),
        };
        let elapsed = sent.elapsed();
        drop(permit);
        let mut t = record.tally.lock().unwrap_or_else(|p| p.into_inner());
        t.sent += 1;
        if !status.starts_with('2') {
            t.failed += 1;
        }
        let _ = t.latency_us.record(micros(elapsed));
        let _ = t.lag_us.record(micros(record.lag));
        if record.keep {
            t.results.push((task_id, status.clone(), outcome.clone()));
        }
        *t.statuses.entry(status).or_default() += 1;
        if let Some(outcome) = outcome {
            *t.outcomes.entry(outcome).or_default() += 1;
        }
        progress.inc(1);
    }

    async fn send(args: &LoadArgs, target: reqwest::Url, tasks: Vec<Task>) -> Result<Summary, Failure> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout))
            .pool_max_idle_per_host(args.concurrency as usize)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| exit::runtime(format!("cannot build the HTTP client: {e}")))?;
        let tally = Arc::new(Mutex::new(Tally::new()));
        let authorization = authorization(&args.token_env)?;
        let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
        let progress = crate::progress::bar(tasks.len() as u64, "requests");
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.max_seconds);
        let first_ms = tasks[0].at_ms;
        let mut stopped_by = "the end of the workload";
        let mut last_sent = Duration::ZERO;
        let mut running = tokio::task::JoinSet::new();
        // A routing answer has no outcome: its body is read, not parsed (the client shares
        // the cores with the server in a benchmark).
        let outcomes = args.endpoint != "route";
        for (i, task) in tasks.into_iter().enumerate() {
            let offset = match args.rate {
                Some(rate) => Duration::from_secs_f64(i as f64 / rate),
                None => Duration::from_secs_f64((task.at_ms - first_ms) as f64 / 1000.0 / args.speed),
            };
            let due = started + offset;
            if due >= deadline {
                stopped_by = "--max-seconds";
                break;
            }
            tokio::time::sleep_until(due).await;
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = tokio::time::sleep_until(deadline) => { stopped_by = "--max-seconds"; break; }
            };
            let lag = due.elapsed();
            last_sent = started.elapsed();
            let mut request =
                client.post(target.clone()).header("content-type", "application/json").body(body(&task, args.with_ids));
            if let Some(authorization) = &authorization {
                request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
            }
            let record = Record { keep: args.results.is_some(), outcomes, lag, tally: tally.clone() };
            running.spawn(answer(request, permit, record, progress.clone()));
            // Reap finished requests as we go, so the set stays small.
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
        progress.finish_and_clear();
        let wall = started.elapsed();
        let tally = Arc::try_unwrap(tally)
            .map_err(|_| exit::runtime("requests still running".to_string()))?
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        Ok(Summary { tally, wall, sending: last_sent, stopped_by })
    }

    impl Summary {
        fn rps(&self) -> f64 {
            self.tally.sent as f64 / self.wall.as_secs_f64().max(1e-9)
        }

        /// Requests over the time it took to send them.
        fn sent_rps(&self) -> f64 {
            self.tally.sent as f64 / self.sending.as_secs_f64().max(1e-3)
        }

        fn error_rate(&self) -> f64 {
            self.tally.failed as f64 / (self.tally.sent.max(1)) as f64
        }

        fn ms(&self, metric: Metric) -> f64 {
            let h = &self.tally.latency_us;
            let us = match metric {
                Metric::Quantile(q) => h.value_at_quantile(q) as f64,
                Metric::Min => h.min() as f64,
                Metric::Max => h.max() as f64,
                Metric::Avg => h.mean(),
                Metric::Rps => return self.rps(),
                Metric::Errors => return self.error_rate(),
            };
            us / 1000.0
        }

        fn observed(&self, metric: Metric) -> f64 {
            self.ms(metric)
        }

        fn json(&self, thresholds: &[Threshold]) -> serde_json::Value {
            let latency: serde_json::Map<String, serde_json::Value> = [
                ("min", Metric::Min),
                ("avg", Metric::Avg),
                ("med", Metric::Quantile(0.5)),
                ("p90", Metric::Quantile(0.9)),
                ("p95", Metric::Quantile(0.95)),
                ("p99", Metric::Quantile(0.99)),
                ("p99.9", Metric::Quantile(0.999)),
                ("max", Metric::Max),
            ]
            .into_iter()
            .map(|(name, m)| (name.to_string(), json!(self.ms(m))))
            .collect();
            json!({
                "requests": self.tally.sent,
                "wall_seconds": self.wall.as_secs_f64(),
                "rps": self.rps(),
                "sending_seconds": self.sending.as_secs_f64(),
                "sent_rps": self.sent_rps(),
                "error_rate": self.error_rate(),
                "latency_ms": latency,
                "schedule_lag_ms": {"p99": self.tally.lag_us.value_at_quantile(0.99) as f64 / 1000.0,
                                    "max": self.tally.lag_us.max() as f64 / 1000.0},
                "statuses": self.tally.statuses,
                "outcomes": self.tally.outcomes,
                "stopped_by": self.stopped_by,
                "thresholds": thresholds.iter().map(|t| json!({
                    "rule": t.text, "observed": self.observed(t.metric),
                    "passed": t.op.holds(self.observed(t.metric), t.value),
                })).collect::<Vec<_>>(),
            })
        }
    }

    /// Prints the summary; returns the number of breached thresholds.
    fn print_summary(args: &LoadArgs, target: &reqwest::Url, s: &Summary, thresholds: &[Threshold]) -> usize {
        let t = &s.tally;
        let pace = match args.rate {
            Some(rate) => format!("constant {rate}/s"),
            None => format!("recorded pace x{}", args.speed),
        };
        println!("seedcore load: {target} ({pace}, up to {} outstanding)", args.concurrency);
        println!("  stopped by ............: {}", s.stopped_by);
        println!("  requests ..............: {}  {:.1}/s over {:.2} s", t.sent, s.rps(), s.wall.as_secs_f64());
        println!(
            "  sent ..................: {:.1}/s over {:.2} s (the answers' tail excluded)",
            s.sent_rps(),
            s.sending.as_secs_f64()
        );
        println!(
            "  latency ...............: avg={:.2}ms min={:.2}ms med={:.2}ms p90={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms",
            s.ms(Metric::Avg),
            s.ms(Metric::Min),
            s.ms(Metric::Quantile(0.5)),
            s.ms(Metric::Quantile(0.9)),
            s.ms(Metric::Quantile(0.95)),
            s.ms(Metric::Quantile(0.99)),
            s.ms(Metric::Max)
        );
        println!(
            "  schedule lag ..........: p99={:.2}ms max={:.2}ms",
            t.lag_us.value_at_quantile(0.99) as f64 / 1000.0,
            t.lag_us.max() as f64 / 1000.0
        );
        let statuses: Vec<String> = t.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("  status codes ..........: {}", statuses.join(", "));
        if !t.outcomes.is_empty() {
            let outcomes: Vec<String> = t.outcomes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("  outcomes ..............: {}", outcomes.join(", "));
        }
        println!("  errors ................: {:.2}% (not 2xx, or no answer)", 100.0 * s.error_rate());
        if let Some(limited) = t.statuses.get("429") {
            println!(
                "  note ..................: the gateway rate-limited {limited} requests (429, docs/live.md 4.11's limits); \
                 to replay a trace faster, start it with: serve --rate-limit {}=off",
                args.endpoint
            );
        }
        let mut breaches = 0;
        for threshold in thresholds {
            let observed = s.observed(threshold.metric);
            let held = threshold.op.holds(observed, threshold.value);
            breaches += usize::from(!held);
            let unit = match threshold.metric {
                Metric::Rps => "/s",
                Metric::Errors => "",
                _ => "ms",
            };
            println!(
                "  threshold {:<13}: {} (observed {observed:.3}{unit})",
                threshold.text,
                if held { "ok" } else { "BREACHED" }
            );
        }
        breaches
    }
}

#[cfg(test)]
mod tests {
    use super::thresholds::Op;
    use super::*;

    #[test]
    fn thresholds_parse_with_units_and_refuse_nonsense() {
        let t = parse_threshold("p99<200ms").unwrap();
        assert_eq!((t.metric, t.op, t.value), (Metric::Quantile(0.99), Op::Lt, 200.0));
        assert_eq!(parse_threshold("p95 <= 1.5s").unwrap().value, 1500.0);
        assert_eq!(parse_threshold("med<800us").unwrap().value, 0.8);
        assert_eq!(parse_threshold("rps>=20000").unwrap().metric, Metric::Rps);
        assert_eq!(parse_threshold("errors<1%").unwrap().value, 0.01);
        match parse_threshold("p99.9<5ms").unwrap().metric {
            Metric::Quantile(q) => assert!((q - 0.999).abs() < 1e-12, "{q}"),
            other => panic!("p99.9 parsed as {other:?}"),
        }
        for bad in ["p99", "p101<1ms", "lat<1ms", "p99<fast", "errors<x%"] {
            assert!(parse_threshold(bad).is_err(), "{bad} parsed");
        }
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0) && Op::Ge.holds(2.0, 2.0));
    }
}
