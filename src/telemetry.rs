//! Logging: text for people, JSON for log pipelines, and blackbox_exporter's logfmt and JSON
//! lines for a drop-in (`--log.format`); `-v` or `--log.level` sets the level, except for the
//! probe log lines of `/probe`, which `--log.prober` chooses.
//!
//! Colour (ANSI escapes) only in text lines written to a terminal, never to a file or pipe, and
//! never with `NO_COLOR` set.

use std::fmt::Write as _;
use std::io::IsTerminal as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `message`, `target` and the fields).
    Json,
    /// logfmt, as blackbox_exporter writes it: `ts=… caller=… level=info msg="…" key=value`.
    Logfmt,
    /// One JSON object per line with blackbox_exporter's keys (`ts`, `caller`, `level`, `msg`).
    #[value(skip)]
    ExporterJson,
}

/// Dependencies kept at `warn` whatever the verbosity: at trace level they log whole requests
/// and frames, credentials included (tungstenite writes the upgrade request with its
/// `Authorization` header), which the redaction rule ([`crate::redact`]) cannot reach.
pub const QUIET_DEPENDENCIES: &str = "hyper=warn,rustls=warn,h2=warn,tungstenite=warn,tokio_tungstenite=warn,reqwest=warn,hyper_util=warn,tonic=warn,tower=warn";

/// The least severe level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Debugging detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// watchfire's `-v` count: 0 = info (errors only when `quiet`, for commands that print
    /// their own output), 1 = debug, 2+ = trace.
    pub fn from_verbosity(verbosity: u8, quiet: bool) -> LogLevel {
        match verbosity {
            0 if quiet => LogLevel::Error,
            0 => LogLevel::Info,
            1 => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    fn directive(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Whether text lines on stderr get colour: a terminal, and no `NO_COLOR`.
pub fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber, writing to stderr; `RUST_LOG` overrides the level.
pub fn init(format: LogFormat, level: LogLevel) {
    // The probe log lines `/probe` writes pass whatever the level: `--log.prober` chose them.
    let probe_log = crate::blackbox::endpoint::PROBE_LOG_TARGET;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},{probe_log}=trace,{QUIET_DEPENDENCIES}",
            level.directive()
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .try_init(),
        LogFormat::Logfmt => builder
            .with_ansi(false)
            .event_format(ExporterLines { json: false })
            .try_init(),
        LogFormat::ExporterJson => builder
            .with_ansi(false)
            .event_format(ExporterLines { json: true })
            .try_init(),
    };
}

/// blackbox_exporter's line shapes: `ts`, `caller` (file:line), `level`, `msg`, then the
/// event's fields, as logfmt or as one JSON object.
struct ExporterLines {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for ExporterLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let file = meta.file().unwrap_or("?");
        let file = file.rsplit('/').next().unwrap_or(file);
        let caller = format!("{file}:{}", meta.line().unwrap_or(0));
        let level = meta.level().as_str().to_ascii_lowercase();
        let mut pairs: Vec<(&str, serde_json::Value)> = vec![
            ("ts", ts.into()),
            ("caller", caller.into()),
            ("level", level.into()),
            ("msg", fields.message.unwrap_or_default().into()),
        ];
        pairs.extend(fields.rest.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let line = if self.json {
            let map: serde_json::Map<String, serde_json::Value> =
                pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::Value::Object(map).to_string()
        } else {
            logfmt(&pairs)
        };
        writeln!(w, "{line}")
    }
}

/// `key=value` pairs, values quoted when they hold a space, `=`, `"` or nothing.
fn logfmt(pairs: &[(&str, serde_json::Value)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let plain = !text.is_empty()
            && !text
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
        if plain {
            let _ = write!(out, "{k}={text}");
        } else {
            let _ = write!(out, "{k}={}", serde_json::Value::String(text));
        }
    }
    out
}

/// An event's message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_what_needs_quoting() {
        let line = logfmt(&[
            ("level", "info".into()),
            ("msg", "watchfire is running".into()),
            ("addr", "127.0.0.1:9115".into()),
            ("n", 3.into()),
            ("empty", "".into()),
            ("q", "say \"hi\"".into()),
        ]);
        assert_eq!(
            line,
            r#"level=info msg="watchfire is running" addr=127.0.0.1:9115 n=3 empty="" q="say \"hi\"""#
        );
    }
}
