//! Logging: `tracing` with human-readable lines on a terminal and JSON lines otherwise (one
//! object per line, for log shippers, with the current span and the span list on each line:
//! the worker opens a `message` span per queue message and a `job` span per job inside it).
//! `RUST_LOG`/`MEDIAFLOW_LOG` filter it.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, text when it is.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Install the global subscriber (once; later calls are ignored): the engine's info lines
/// (`quiet`: only its warnings and the plugins' own lines), more with `verbose`; `MEDIAFLOW_LOG`
/// or `RUST_LOG` replace that filter.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let default = match (verbose, quiet) {
        // The engine's warnings and the plugins' own log lines only (`plugin run`, `test`).
        (0, true) => "warn,mediaflow::plugin::guest=info".to_string(),
        (0, false) => "warn,mediaflow=info".to_string(),
        (1, _) => "warn,mediaflow=debug".to_string(),
        _ => "warn,mediaflow=trace".to_string(),
    };
    let filter = std::env::var("MEDIAFLOW_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}
