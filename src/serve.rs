//! `seedcore serve` (docs/live.md 4.11, 10): every engine role in one process on loopback, behind
//! the HTTP gateway; or, with `--role R --peers ...`, one role per process (docs/engine.md 2.3).
//! Live build only.
//!
//! Nothing takes work from outside loopback unauthenticated: an engine port off loopback
//! needs `--tls-dir` (mutual TLS between roles), a gateway off loopback `--tokens`.
//!
//! Shutdown (SIGTERM, Ctrl-C or `--seconds`): the gateway stops taking work (503), the
//! requests in progress finish, the coordinator drains what is still in flight, signs the
//! ledger's last cycle and syncs it, and the capture is flushed. Then the process exits 0.

use crate::exit;
use std::path::PathBuf;

/// `seedcore serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Engine settings file: the `[topology]`, `[engine.*]` and `[backend.*]` tables of a
    /// scenario, and nothing else (docs/harness.md 5.1); the defaults otherwise.
    #[arg(long, conflicts_with = "scenario")]
    config: Option<PathBuf>,
    /// Scenario whose engine settings to use (its other tables are ignored).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Address the HTTP gateway binds (0.0.0.0 in a container; off loopback it needs
    /// --tokens).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Bearer tokens the gateway requires (`seedcore token create --tokens FILE ...`): 401
    /// without a valid one, 403 without the endpoint's scope. Without it the gateway binds
    /// loopback only.
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Who may read /metrics when --tokens is given: `open` (anyone, as /healthz and
    /// /readyz) or `read` (a token with the read scope).
    #[arg(long, default_value = "open", value_parser = ["open", "read"])]
    metrics_scope: String,
    /// Mutual TLS between roles: the directory `seedcore certs DIR` writes (ca.pem,
    /// <role>.pem, <role>.key). Without it, engine ports bind loopback only.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
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
    /// Write every task the gateway answers to this CSV (docs/harness.md 5.2's canonical columns
    /// and the decision), for `seedcore compare`. Never overwrites a file.
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
    /// Run one role in this process (docs/engine.md 2.3): gateway, coordinator, state, fast-N or
    /// deep-N, the others at `--peers`; `all` (default) runs every role here on loopback.
    #[arg(long, default_value = "all")]
    role: String,
    /// With `--role`: where every engine role listens, NAME=HOST:PORT, comma-separated or
    /// repeated: coordinator, state, fast-1..fast-N, deep-1..deep-M (their counts are the
    /// topology). Every process of a deployment gets the same list and `--config`.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// The workers' model backend: `simulated` (no model needed) or `openai`, an
    /// OpenAI-compatible HTTP endpoint (vLLM, Ollama, llama.cpp; docs/engine.md 4.8).
    #[arg(long, default_value = "simulated", value_parser = ["simulated", "openai"])]
    backend: String,
    /// With `--backend openai`: the endpoint's base URL, up to the API version
    /// (`/chat/completions` is added). Plain HTTP: the OpenAI client has no TLS.
    #[arg(long, default_value = "http://127.0.0.1:8000/v1")]
    openai_url: String,
    /// With `--backend openai`: the model the workers ask for.
    #[arg(long)]
    openai_model: Option<String>,
    /// With `--backend openai`: the deep path's model (default: `--openai-model`).
    #[arg(long)]
    openai_deep_model: Option<String>,
    /// With `--backend openai`: the environment variable holding the API key, sent as a
    /// bearer token (unset: no key is sent, as local servers expect).
    #[arg(long, default_value = "OPENAI_API_KEY")]
    openai_api_key_env: String,
}

#[cfg(madsim)]
pub fn run(_: ServeArgs) -> Result<u8, exit::Failure> {
    Err(exit::usage("serve runs live; use the live build: cargo run --release -- serve"))
}

#[cfg(not(madsim))]
pub fn run(args: ServeArgs) -> Result<u8, exit::Failure> {
    live::serve(args).map(|()| exit::PASS)
}

#[cfg(not(madsim))]
mod live {
    use super::ServeArgs;
    use crate::exit;
    use seedcore_engine::config::OpenAiConfig;
    use seedcore_engine::gateway::auth::Tokens;
    use seedcore_engine::gateway::capture::CaptureConfig;
    use seedcore_engine::gateway::limits::Limits;
    use seedcore_engine::gateway::{Gateway, GatewayConfig};
    use seedcore_engine::peers::Security;
    use seedcore_engine::probe::LogProbe;
    use seedcore_engine::rpc::Addresses;
    use seedcore_engine::serve::{bind_address, parse_peers, start_all_in_one, start_role, Role};
    use seedcore_engine::tls::Tls;
    use seedcore_engine::EngineConfig;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::exit::{usage, Failure};

    /// The engine configuration: the settings file's, the scenario's or the defaults; the
    /// ledger's key and directory, and the live time line (Unix ms, so budget days are UTC days).
    fn engine_config(args: &ServeArgs, signs: bool) -> Result<EngineConfig, Failure> {
        let mut config = match (&args.config, &args.scenario) {
            (Some(path), _) => EngineConfig::load(path).map_err(|e| usage(e.to_string()))?,
            (None, Some(path)) => {
                let scenario = seedcore_sim::load(path).map_err(|e| usage(e.to_string()))?;
                scenario.engine_config(scenario.seed)
            }
            (None, None) => EngineConfig::default(),
        };
        // Flags are checked before a ledger key is created.
        let openai = openai(args)?;
        let key = match &args.ledger_key {
            // Only the coordinator writes the ledger: no key for another role.
            _ if !signs => return Ok(EngineConfig { openai, epoch_utc_ms: 0, ..config }),
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
        config.openai = openai;
        Ok(config)
    }

    /// `--backend openai` and its settings; the key from the environment, never a flag.
    fn openai(args: &ServeArgs) -> Result<Option<OpenAiConfig>, Failure> {
        let given = args.openai_model.is_some() || args.openai_deep_model.is_some();
        if args.backend != "openai" {
            if given {
                return Err(usage("--openai-model and --openai-deep-model need --backend openai"));
            }
            return Ok(None);
        }
        let Some(model) = args.openai_model.clone() else {
            return Err(usage("--backend openai needs --openai-model NAME (the model the endpoint serves)"));
        };
        let url = args.openai_url.trim_end_matches('/');
        if !url.starts_with("http://") {
            return Err(usage(format!(
                "--openai-url {url}: give an http:// URL (the OpenAI client has no TLS; put a TLS-terminating proxy on \
                 loopback in front of an https endpoint)"
            )));
        }
        let api_key = std::env::var(&args.openai_api_key_env).ok().filter(|k| !k.is_empty());
        if api_key.is_none() {
            tracing::warn!("{} is not set: no API key is sent to {url}", args.openai_api_key_env);
        }
        Ok(Some(OpenAiConfig {
            base_url: url.to_string(),
            deep_model: args.openai_deep_model.clone().unwrap_or_else(|| model.clone()),
            fast_model: model,
            api_key,
        }))
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
        let tokens = match &args.tokens {
            Some(path) => {
                let tokens = Tokens::read(path).map_err(|e| usage(format!("--tokens {e}")))?;
                if tokens.is_empty() {
                    return Err(usage(format!(
                        "--tokens {}: no token in it; add one with seedcore token create --tokens {} --name NAME --scope submit",
                        path.display(),
                        path.display()
                    )));
                }
                tracing::info!(tokens = tokens.len(), "the gateway requires bearer tokens");
                Some(tokens)
            }
            None if !args.host.is_loopback() => {
                return Err(usage(format!(
                    "--host {}: a gateway off loopback takes work only with authentication; give --tokens FILE \
                     (seedcore token create --tokens FILE --name NAME --scope submit)",
                    args.host
                )))
            }
            None => {
                tracing::warn!(
                    "no --tokens: the gateway takes any caller, so it listens on loopback only ({})",
                    args.host
                );
                None
            }
        };
        Ok(GatewayConfig { limits, capture, tokens, metrics_need_read: args.metrics_scope == "read" })
    }

    /// The TLS of `role` from `--tls-dir`, or none.
    fn security(args: &ServeArgs, role: &str) -> Result<Security, Failure> {
        match &args.tls_dir {
            Some(dir) => {
                Tls::load(dir, role).map(|tls| Some(Arc::new(tls))).map_err(|e| usage(format!("--tls-dir {e}")))
            }
            None => Ok(None),
        }
    }

    /// Without `--tls-dir`, every engine address must be loopback: an engine port off
    /// loopback without mutual TLS would take work from anyone who reaches it.
    fn loopback_without_tls(args: &ServeArgs, addresses: &Addresses) -> Result<(), Failure> {
        if args.tls_dir.is_some() {
            return Ok(());
        }
        let all = [&addresses.coordinator, &addresses.state].into_iter().chain(&addresses.fast).chain(&addresses.deep);
        for peer in all {
            let bind = bind_address(peer);
            if !peer.is_loopback() || !bind.ip().is_loopback() {
                return Err(usage(format!(
                    "--peers names {peer}, which is not loopback: engine ports off loopback need mutual TLS; give \
                     --tls-dir DIR (seedcore certs DIR writes it)"
                )));
            }
        }
        tracing::warn!("no --tls-dir: plaintext between roles, on loopback only");
        Ok(())
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

    /// What this process runs: every role (the default), the gateway alone, or one
    /// engine role, the others being processes of their own at `--peers`.
    enum Running {
        All,
        Gateway(Addresses),
        Role(Role, Addresses),
    }

    fn running(args: &ServeArgs) -> Result<Running, Failure> {
        let peers = if args.peers.is_empty() { None } else { Some(parse_peers(&args.peers).map_err(usage)?) };
        let running = match (args.role.as_str(), peers) {
            ("all", None) => Running::All,
            ("all", Some(_)) => {
                return Err(usage(
                    "--peers goes with --role ROLE (one role per process); without --role, every role runs here",
                ))
            }
            (role, None) => {
                return Err(usage(format!(
                "--role {role} needs --peers coordinator=HOST:PORT,state=HOST:PORT,fast-1=HOST:PORT,deep-1=HOST:PORT"
            )))
            }
            ("gateway", Some(addresses)) => Running::Gateway(addresses),
            (name, Some(addresses)) => {
                let role = Role::parse(name).ok_or_else(|| {
                    usage(format!("--role {name}: expected all, gateway, coordinator, state, fast-N or deep-N"))
                })?;
                if let Role::Worker(path, n) = role {
                    if n > addresses.workers(path).len() {
                        return Err(usage(format!("--role {name}: --peers names no {name}")));
                    }
                }
                Running::Role(role, addresses)
            }
        };
        if matches!(running, Running::Role(..))
            && (args.capture.is_some() || !args.rate_limits.is_empty() || args.tokens.is_some())
        {
            return Err(usage("--capture, --rate-limit and --tokens are the gateway's: give them to --role gateway"));
        }
        Ok(running)
    }

    pub fn serve(args: ServeArgs) -> Result<(), Failure> {
        let running = running(&args)?;
        if let Running::Gateway(addresses) | Running::Role(_, addresses) = &running {
            loopback_without_tls(&args, addresses)?;
        }
        // The gateway's flags are checked before anything starts; an engine role has none.
        let gateway_config = match running {
            Running::Role(..) => None,
            Running::All | Running::Gateway(_) => Some(gateway_config(&args)?),
        };
        // TLS material too: (the engine ports', the gateway's calls').
        let (engine_security, gateway_security) = match &running {
            Running::All => (security(&args, "coordinator")?, security(&args, "gateway")?),
            Running::Gateway(_) => (None, security(&args, "gateway")?),
            Running::Role(role, _) => (security(&args, &role.name())?, None),
        };
        let signs = matches!(running, Running::All | Running::Role(Role::Coordinator, _));
        let mut config = engine_config(&args, signs)?;
        if let Running::Gateway(addresses) | Running::Role(_, addresses) = &running {
            config.topology.fast = addresses.fast.len() as u32;
            config.topology.deep = addresses.deep.len() as u32;
        }
        let config = Arc::new(config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| exit::runtime(format!("cannot start the runtime: {e}")))?;
        runtime.block_on(async move {
            match (running, gateway_config) {
                (Running::All, Some(gateway_config)) => {
                    all_in_one(&args, config, gateway_config, (&engine_security, &gateway_security)).await
                }
                (Running::Gateway(addresses), Some(gateway_config)) => {
                    let listener = listen(&args).await?;
                    let gateway = Gateway::new(config, addresses, gateway_config, &gateway_security)
                        .await
                        .map_err(|e| exit::runtime(e.to_string()))?;
                    // `/readyz` asks every role whether it is up.
                    gateway.set_ready();
                    run_gateway(&gateway, listener, args.seconds).await
                }
                (Running::Role(role, addresses), _) => one_role(&args, config, role, addresses, &engine_security).await,
                (Running::All | Running::Gateway(_), None) => Err(exit::runtime("no gateway settings")),
            }
        })
    }

    /// Binds the gateway's port (first: a port in use fails before anything starts).
    async fn listen(args: &ServeArgs) -> Result<tokio::net::TcpListener, Failure> {
        let http = SocketAddr::new(args.host, args.port);
        tokio::net::TcpListener::bind(http).await.map_err(|e| exit::runtime(format!("cannot listen on {http}: {e}")))
    }

    /// Serves HTTP until the stop signal, then drains the requests in progress and closes
    /// the capture.
    async fn run_gateway(
        gateway: &Arc<Gateway>,
        listener: tokio::net::TcpListener,
        seconds: Option<u64>,
    ) -> Result<(), Failure> {
        let url = listener.local_addr().map_err(|e| exit::runtime(e.to_string()))?;
        println!("seedcore listening on http://{url}");
        let draining = gateway.clone();
        let shutdown = async move {
            stop_signal(seconds).await;
            draining.start_draining();
        };
        seedcore_engine::gateway::serve(gateway.clone(), listener, shutdown)
            .await
            .map_err(|e| exit::runtime(format!("the gateway failed: {e}")))?;
        if let Some((rows, dropped)) = gateway.close_capture() {
            tracing::info!(rows, dropped, "capture flushed");
        }
        Ok(())
    }

    fn print_drained(drained: &seedcore_engine::node::Drained) {
        if drained.abandoned > 0 {
            tracing::warn!(abandoned = drained.abandoned, "tasks still in flight at the end of the drain");
        }
        println!(
            "seedcore stopped: {} receipts in the ledger{}",
            drained.receipts,
            if drained.signed { ", the last cycle signed and synced" } else { "; the last cycle is NOT signed" }
        );
    }

    async fn all_in_one(
        args: &ServeArgs,
        config: Arc<EngineConfig>,
        gateway_config: GatewayConfig,
        (engine_security, gateway_security): (&Security, &Security),
    ) -> Result<(), Failure> {
        // One process: every engine port on loopback, with the coordinator's certificate
        // when --tls-dir is given; the gateway calls with its own.
        if engine_security.is_none() {
            tracing::info!("engine ports on loopback, plaintext (no --tls-dir)");
        }
        let listener = listen(args).await?;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let engine = start_all_in_one(config.clone(), loopback, args.rpc_port, Arc::new(LogProbe), engine_security)
            .await
            .map_err(|e| exit::runtime(e.to_string()))?;
        let gateway = Gateway::new(config, engine.addresses.clone(), gateway_config, gateway_security)
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
        run_gateway(&gateway, listener, args.seconds).await?;
        print_drained(&engine.coordinator.shutdown(Duration::from_secs(args.drain_timeout)).await);
        Ok(())
    }

    /// One engine role in this process until the stop signal; the coordinator drains and
    /// signs its last cycle.
    async fn one_role(
        args: &ServeArgs,
        config: Arc<EngineConfig>,
        role: Role,
        addresses: Addresses,
        security: &Security,
    ) -> Result<(), Failure> {
        let addr = bind_address(role.address(&addresses));
        let coordinator = start_role(config, role, addresses, addr, Arc::new(LogProbe), security)
            .await
            .map_err(|e| exit::runtime(e.to_string()))?;
        let tls = if security.is_some() { "mutual TLS" } else { "plaintext, loopback only" };
        println!("seedcore {} listening on {addr} ({tls})", role.name());
        stop_signal(args.seconds).await;
        match coordinator {
            Some(coordinator) => print_drained(&coordinator.shutdown(Duration::from_secs(args.drain_timeout)).await),
            None => println!("seedcore {} stopped", role.name()),
        }
        Ok(())
    }
}
