//! Logs (docs/live.md 10): `tracing` events on stderr through `tracing-subscriber`, human-readable
//! by default (coloured only on a terminal) or one JSON object per line (`--log-format json`), filtered by `RUST_LOG`.

/// Installs the subscriber; `default` is the filter when `RUST_LOG` is unset or invalid.
///
/// madsim opens a span for every simulated node and task. They give log lines their node
/// context, and recording them cost about a tenth of a simulated run (the registry's
/// bookkeeping of spans no line prints). So they are recorded only when `RUST_LOG` asks
/// for logs; with the default filter the simulator's spans are off, its events are not.
pub fn init(format: &str, default: &str) {
    use tracing_subscriber::{filter, prelude::*, EnvFilter};
    let asked = EnvFilter::try_from_default_env().ok();
    let keep_simulator_spans = asked.is_some();
    let filter = asked.unwrap_or_else(|| EnvFilter::new(default));
    let spans =
        filter::filter_fn(move |meta| keep_simulator_spans || !(meta.is_span() && meta.target().starts_with("madsim")));
    // The level filter's most verbose level caps this one too, so `tracing`'s global
    // level is it: a span or event below it (h2's and hyper's trace spans on every
    // request, tonic's) costs a level comparison, not the registry's span bookkeeping. A
    // filter without that hint made every trace span of the live transport a registry
    // entry: a third of the gateway's CPU on /ocps/route.
    let spans = match filter.max_level_hint() {
        Some(level) => spans.with_max_level_hint(level),
        None => spans,
    };
    // Colours only on a terminal: a log file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry();
    let installed = if format == "json" {
        registry.with(layer.json().with_filter(filter).with_filter(spans)).try_init()
    } else {
        registry.with(layer.with_filter(filter).with_filter(spans)).try_init()
    };
    if let Err(error) = installed {
        eprintln!("warning: logs are off: {error}");
    }
}
