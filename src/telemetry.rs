//! Logging: text for people, JSON for log pipelines; `-v` raises the level.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Dependencies kept at `warn` whatever the verbosity: at trace level they log whole requests
/// and frames, credentials included (tungstenite writes the upgrade request with its
/// `Authorization` header), which the redaction rule ([`crate::redact`]) cannot reach.
pub const QUIET_DEPENDENCIES: &str = "hyper=warn,rustls=warn,h2=warn,tungstenite=warn,tokio_tungstenite=warn,reqwest=warn,hyper_util=warn,tonic=warn,tower=warn";

/// Installs the global subscriber. `verbosity` 0 = info (errors only when `quiet`, for commands
/// that print their own output), 1 = debug, 2+ = trace; `RUST_LOG` overrides it.
pub fn init(format: LogFormat, verbosity: u8, quiet: bool) {
    let level = match verbosity {
        0 if quiet => "error",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        // Dependencies that trace whole requests (headers with credentials) stay at warn.
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{QUIET_DEPENDENCIES}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
