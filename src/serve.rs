//! `seedcore serve` (SPEC 4.11, 10): every engine role in one process on loopback, behind
//! the HTTP gateway; live build only.
//!
//! Shutdown (SIGTERM, Ctrl-C or `--seconds`): the gateway stops taking work (503), the
//! requests in progress finish, the coordinator drains what is still in flight, signs the
//! ledger's last cycle and syncs it, and the capture is flushed. Then the process exits 0.

use crate::exit;
use std::path::PathBuf;

/// `seedcore serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Scenario whose engine settings to use; the defaults otherwise.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Address the HTTP gateway binds (0.0.0.0 in a container).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port of the HTTP gateway (0: any free port; the URL is printed).
    #[arg(long, default_value_t = 7400)]
    port: u16,
    /// First port of the engine's roles on loopback: coordinator, state (+1), fast workers
    /// (+10...), deep workers (+40...). 0: any free ports.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=65_480))]
    rpc_port: u16,
    /// Directory of the ledger.
    #[arg(long, default_value = "seedcore-data/ledger")]
    data_dir: String,
    /// The ledger's signing key (PKCS#8 PEM, made by `keygen`). Without it, a key kept
    /// beside the ledger (`<data-dir>.key`) is used, created on first start with a warning.
    #[arg(long)]
    ledger_key: Option<PathBuf>,
    /// When the ledger is synced to disk: after every signed `cycle` (default), or after
    /// every `receipt` (slower; guards the last receipts against a power loss too).
    #[arg(long, default_value = "cycle", value_parser = ["cycle", "receipt"])]
    fsync: String,
    /// A rate limit, NAME=N requests per minute or NAME=off (repeatable). Names: tasks,
    /// route, status, state, energy, tier25_store, tier25_retrieve, validate.
    #[arg(long = "rate-limit", value_name = "NAME=N")]
    rate_limits: Vec<String>,
    /// Write every task the gateway answers to this CSV (SPEC 5.2's canonical columns and
    /// the decision), for `seedcore compare`. Never overwrites a file.
    #[arg(long)]
    capture: Option<PathBuf>,
    /// The capture's size bound; rows past it are dropped and counted.
    #[arg(long, default_value_t = 1 << 30)]
    capture_max_bytes: u64,
    /// The longest a captured row waits before it is flushed to disk, ms.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    capture_flush_ms: u64,
    /// How long shutdown waits for tasks in flight, seconds.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Stop after this many seconds, as on SIGTERM (default: run until SIGTERM or Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

#[cfg(madsim)]
pub fn run(_: ServeArgs) -> u8 {
    eprintln!("error: serve runs live; use the live build: cargo run --release -- serve");
    exit::USAGE
}

#[cfg(not(madsim))]
pub fn run(args: ServeArgs) -> u8 {
    exit::report(live::serve(args).map(|()| exit::PASS))
}

#[cfg(not(madsim))]
mod live {
    use super::ServeArgs;
    use crate::exit;
    use seedcore_engine::gateway::capture::CaptureConfig;
    use seedcore_engine::gateway::limits::Limits;
    use seedcore_engine::gateway::{Gateway, GatewayConfig};
    use seedcore_engine::probe::LogProbe;
    use seedcore_engine::serve::start_all_in_one;
    use seedcore_engine::EngineConfig;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::exit::{usage, Failure};

    /// The engine configuration: the scenario's or the defaults, the ledger's key and
    /// directory, and the live time line (Unix ms, so budget days are UTC days).
    fn engine_config(args: &ServeArgs) -> Result<EngineConfig, Failure> {
        let mut config = match &args.scenario {
            Some(path) => {
                let scenario = seedcore_sim::load(path).map_err(|e| usage(e.to_string()))?;
                scenario.engine_config(scenario.seed)
            }
            None => EngineConfig::default(),
        };
        let key = match &args.ledger_key {
            Some(path) => seedcore_reports::keys::read_signing_key(path).map_err(|e| usage(e.to_string()))?,
            None => {
                let path = PathBuf::from(format!("{}.key", args.data_dir.trim_end_matches('/')));
                let (key, created) =
                    seedcore_reports::keys::development_key(&path).map_err(|e| usage(e.to_string()))?;
                let made = if created { "created" } else { "using" };
                tracing::warn!(
                    "no --ledger-key; {made} the ledger key {} kept beside the ledger. A deployment signs \
                     with its own key: seedcore keygen keys/ledger.key",
                    path.display()
                );
                key
            }
        };
        config.ledger.key_seed = Some(key.to_bytes());
        config.ledger.dir = args.data_dir.clone();
        config.ledger.fsync_every_receipt = args.fsync == "receipt";
        config.epoch_utc_ms = 0;
        Ok(config)
    }

    fn gateway_config(args: &ServeArgs) -> Result<GatewayConfig, Failure> {
        let mut limits = Limits::default();
        for setting in &args.rate_limits {
            limits.set(setting).map_err(usage)?;
        }
        let capture = args.capture.as_ref().map(|path| CaptureConfig {
            path: path.clone(),
            max_bytes: args.capture_max_bytes,
            flush: Duration::from_millis(args.capture_flush_ms),
        });
        Ok(GatewayConfig { limits, capture })
    }

    /// Resolves on SIGTERM, Ctrl-C or after `seconds`.
    async fn stop_signal(seconds: Option<u64>) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let timer = async {
            match seconds {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
            () = terminate => tracing::info!("SIGTERM: shutting down"),
            () = timer => tracing::info!("--seconds elapsed: shutting down"),
        }
    }

    pub fn serve(args: ServeArgs) -> Result<(), Failure> {
        let config = Arc::new(engine_config(&args)?);
        let gateway_config = gateway_config(&args)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| (exit::RUNTIME, format!("cannot start the runtime: {e}")))?;
        runtime.block_on(async move {
            let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let http = SocketAddr::new(args.host, args.port);
            // Bind the public port first: a port in use fails before anything starts.
            let listener = tokio::net::TcpListener::bind(http)
                .await
                .map_err(|e| (exit::RUNTIME, format!("cannot listen on {http}: {e}")))?;
            let url = listener.local_addr().map_err(|e| (exit::RUNTIME, e.to_string()))?;
            let engine = start_all_in_one(config.clone(), loopback, args.rpc_port, Arc::new(LogProbe))
                .await
                .map_err(|e| (exit::RUNTIME, e.to_string()))?;
            let gateway = Gateway::new(config.clone(), engine.addresses.clone(), gateway_config)
                .await
                .map_err(|e| usage(e.to_string()))?;
            gateway.set_ready();
            tracing::info!(
                coordinator = %engine.addresses.coordinator,
                state = %engine.addresses.state,
                fast = ?engine.addresses.fast,
                deep = ?engine.addresses.deep,
                "engine roles up"
            );
            println!("seedcore listening on http://{url}");
            let draining = gateway.clone();
            let shutdown = async move {
                stop_signal(args.seconds).await;
                draining.start_draining();
            };
            seedcore_engine::gateway::serve(gateway.clone(), listener, shutdown)
                .await
                .map_err(|e| (exit::RUNTIME, format!("the gateway failed: {e}")))?;
            let drained = engine.coordinator.shutdown(Duration::from_secs(args.drain_timeout)).await;
            if let Some((rows, dropped)) = gateway.close_capture() {
                tracing::info!(rows, dropped, "capture flushed");
            }
            if drained.abandoned > 0 {
                tracing::warn!(abandoned = drained.abandoned, "tasks still in flight at the end of the drain");
            }
            println!(
                "seedcore stopped: {} receipts in the ledger{}",
                drained.receipts,
                if drained.signed { ", the last cycle signed and synced" } else { "; the last cycle is NOT signed" }
            );
            Ok(())
        })
    }
}
