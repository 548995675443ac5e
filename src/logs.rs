//! Logs (SPEC 10): `tracing` events on stderr through `tracing-subscriber`, human-readable
//! by default (coloured only on a terminal) or one JSON object per line (`--log-format json`), filtered by `RUST_LOG`.

/// Installs the subscriber; `default` is the filter when `RUST_LOG` is unset or invalid.
pub fn init(format: &str, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let installed = if format == "json" { builder.json().try_init() } else { builder.try_init() };
    if let Err(error) = installed {
        eprintln!("warning: logs are off: {error}");
    }
}
