//! blackbox_exporter's command line, for a drop-in: `watchfire` with the exporter's flags and
//! no subcommand, or the binary invoked as `blackbox_exporter` or
//! `prometheus-blackbox-exporter` (a symlink or a copy), behaves as the exporter 0.28 does.
//!
//! Every flag of the exporter is accepted with kingpin's syntax (`--flag=value` or
//! `--flag value`; a boolean as `--flag` or `--no-flag`). The flags are translated into
//! `watchfire run`'s own ([`RunArgs`]) by name, so a `run` flag spelled as the exporter's (a long
//! name or an alias) is picked up here with no further code.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory as _, Parser};

use super::storage::StorageArgs;
use super::{parse_offset, parse_seconds, RunArgs};
use crate::telemetry::{LogFormat, LogLevel};

/// Names the binary answers to as blackbox_exporter.
pub const EXPORTER_NAMES: &[&str] = &["blackbox_exporter", "prometheus-blackbox-exporter"];

/// blackbox_exporter 0.28's flags, parsed as kingpin parses them.
#[derive(Debug, Parser)]
#[command(
    name = "watchfire",
    version,
    about = "watchfire, answering as blackbox_exporter: the exporter's flags and endpoints \
             (`watchfire help` lists watchfire's own commands)."
)]
pub struct ExporterArgs {
    /// Blackbox exporter configuration file (a watchfire config or directory works too).
    #[arg(
        long = "config.file",
        default_value = "blackbox.yml",
        value_name = "FILE"
    )]
    pub config_file: PathBuf,
    /// Validate the config file and exit (as `watchfire check`).
    #[arg(long = "config.check", overrides_with = "no_config_check")]
    pub config_check: bool,
    #[arg(long = "no-config.check", hide = true, overrides_with = "config_check")]
    no_config_check: bool,
    /// Reload the config when its content changes, checked every --config.auto-reload-interval;
    /// a config with errors keeps the running one, as a failed SIGHUP reload does.
    #[arg(long = "config.enable-auto-reload", overrides_with = "no_auto_reload")]
    pub auto_reload: bool,
    #[arg(
        long = "no-config.enable-auto-reload",
        hide = true,
        overrides_with = "auto_reload"
    )]
    no_auto_reload: bool,
    /// Time between two checks of the config for changes: seconds (`30`) or a duration.
    #[arg(long = "config.auto-reload-interval", default_value = "30", value_parser = parse_seconds)]
    pub auto_reload_interval: Duration,
    /// Address to listen on (repeatable; `:9115` means every interface).
    #[arg(long = "web.listen-address", default_value = ":9115", action = clap::ArgAction::Append)]
    pub listen: Vec<String>,
    /// exporter-toolkit web config file (TLS, basic auth, response headers).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Use systemd socket activation listeners instead of port listeners (Linux).
    #[arg(long = "web.systemd-socket", overrides_with = "no_systemd_socket")]
    pub systemd_socket: bool,
    #[arg(
        long = "no-web.systemd-socket",
        hide = true,
        overrides_with = "systemd_socket"
    )]
    no_systemd_socket: bool,
    /// The URL under which the exporter is reachable externally (its path prefixes the routes).
    #[arg(long = "web.external-url", value_name = "URL")]
    pub external_url: Option<String>,
    /// Prefix for the internal routes (defaults to the path of --web.external-url).
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub route_prefix: Option<String>,
    /// Offset to subtract from the scrape timeout, in seconds.
    #[arg(long = "timeout-offset", default_value = "0.5", value_parser = parse_offset)]
    pub timeout_offset: Duration,
    /// The most recent probes kept in the history.
    #[arg(long = "history.limit", default_value_t = crate::blackbox::history::DEFAULT_HISTORY_LIMIT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=crate::blackbox::history::MAX_HISTORY_LIMIT as u64))]
    pub history_limit: usize,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: ExporterLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: ExporterFormat,
    /// Log level for probe request logs: the lines at it and above go to stderr, to
    /// `debug=true` and to the history.
    #[arg(long = "log.prober", value_enum, default_value = "info")]
    pub log_prober: crate::probers::Level,
    /// Accept a config that defines nothing (watchfire's own flag; refused by default).
    #[arg(long)]
    pub allow_empty_config: bool,
    /// watchfire's own `--storage.*` flags (the drop-in keeps everything in memory unless
    /// `--storage.path` or `--storage.url` is given).
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// `--log.level` (promslog's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExporterLevel {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExporterFormat {
    /// `ts=… caller=… level=… msg=…`.
    Logfmt,
    /// One JSON object per line with the same keys.
    Json,
}

/// A flag of the exporter that `watchfire run` does not take (yet): accepted, and refused at
/// start with this message rather than silently ignored.
#[derive(Debug, thiserror::Error)]
#[error("{flag}: {why}")]
pub struct Unsupported {
    /// The flag as written.
    pub flag: String,
    /// Why it cannot be honoured.
    pub why: String,
}

impl Unsupported {
    fn new(flag: &str, why: impl Into<String>) -> Unsupported {
        Unsupported {
            flag: flag.to_string(),
            why: why.into(),
        }
    }
}

/// Whether this command line is the exporter's: the binary's name is one of
/// [`EXPORTER_NAMES`], or the first argument after watchfire's global flags is one of the
/// exporter's flags (`--config.file`, `--no-config.check`, ...).
pub fn is_exporter_style(args: &[OsString]) -> bool {
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(OsStr::to_str)
        .unwrap_or_default();
    if EXPORTER_NAMES.contains(&name) {
        return true;
    }
    let cmd = ExporterArgs::command();
    let known = |flag: &str| {
        let flag = flag.strip_prefix("no-").unwrap_or(flag);
        cmd.get_arguments().any(|a| a.get_long() == Some(flag)) && flag != "allow-empty-config"
    };
    let mut rest = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = rest.next() {
        match a {
            "-v" | "-vv" | "-vvv" | "--verbose" => continue,
            "--log-format" => {
                rest.next();
                continue;
            }
            a if a.starts_with("--log-format=") => continue,
            a => {
                return a
                    .strip_prefix("--")
                    .map(|f| known(f.split('=').next().unwrap_or(f)))
                    .unwrap_or(false)
            }
        }
    }
    false
}

/// `watchfire run`'s flags alone, to parse a translated command line into [`RunArgs`].
#[derive(Debug, Parser)]
#[command(name = "watchfire run")]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

impl ExporterArgs {
    /// The log format and level these flags ask for.
    pub fn logging(&self) -> (LogFormat, LogLevel) {
        let format = match self.log_format {
            ExporterFormat::Logfmt => LogFormat::Logfmt,
            ExporterFormat::Json => LogFormat::ExporterJson,
        };
        let level = match self.log_level {
            ExporterLevel::Debug => LogLevel::Debug,
            ExporterLevel::Info => LogLevel::Info,
            ExporterLevel::Warn => LogLevel::Warn,
            ExporterLevel::Error => LogLevel::Error,
        };
        (format, level)
    }

    /// The same run as `watchfire run` flags: each exporter flag is passed on under its own
    /// name when `run` takes that name (as a long name or an alias), else under `run`'s
    /// equivalent; a flag `run` cannot honour is [`Unsupported`].
    pub fn run_args(&self) -> Result<RunArgs, Unsupported> {
        let run = RunOnly::command();
        let takes = |name: &str| {
            run.get_arguments().find(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            })
        };
        let mut argv: Vec<OsString> = vec!["watchfire run".into()];
        let mut put = |flag: &str, value: OsString| {
            argv.push(format!("--{flag}").into());
            argv.push(value);
        };
        put("config", self.config_file.clone().into());
        let listen_many = takes("web.listen-address")
            .is_some_and(|a| matches!(a.get_action(), clap::ArgAction::Append));
        if self.listen.len() > 1 && !listen_many {
            return Err(Unsupported::new(
                "--web.listen-address",
                "given more than once: this build listens on one address",
            ));
        }
        for l in &self.listen {
            put("listen", l.into());
        }
        put(
            "timeout-offset",
            self.timeout_offset.as_secs_f64().to_string().into(),
        );
        put("history-limit", self.history_limit.to_string().into());
        put("log.prober", self.log_prober.as_str().into());
        put(
            "config.auto-reload-interval",
            format!("{}ms", self.auto_reload_interval.as_millis()).into(),
        );
        let passed: [(&'static str, Option<OsString>, &'static str); 3] = [
            ("web.config.file", self.web_config_file.clone().map(Into::into),
             "TLS and authentication are not served by this build; refusing to start without them"),
            ("web.external-url", self.external_url.clone().map(Into::into),
             "serving under an external URL is not supported by this build"),
            ("web.route-prefix", self.route_prefix.clone().map(Into::into),
             "a route prefix is not supported by this build"),
        ];
        for (flag, value, why) in passed {
            match (value, takes(flag)) {
                (Some(v), Some(_)) => put(flag, v),
                (Some(_), None) => return Err(Unsupported::new(&format!("--{flag}"), why)),
                (None, _) => {}
            }
        }
        if self.auto_reload {
            argv.push("--config.enable-auto-reload".into());
        }
        if self.systemd_socket {
            argv.push("--web.systemd-socket".into());
        }
        if self.allow_empty_config {
            argv.push("--allow-empty-config".into());
        }
        argv.extend(self.storage.to_argv());
        RunOnly::try_parse_from(argv)
            .map(|r| r.run)
            .map_err(|e| Unsupported::new("command line", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_exporter_style_is_told_by_name_or_by_its_first_flag() {
        assert!(is_exporter_style(&args(&[
            "/usr/bin/prometheus-blackbox-exporter"
        ])));
        assert!(is_exporter_style(&args(&["/x/blackbox_exporter", "run"])));
        assert!(is_exporter_style(&args(&[
            "watchfire",
            "--config.file",
            "b.yml"
        ])));
        assert!(is_exporter_style(&args(&[
            "watchfire",
            "--no-config.check"
        ])));
        assert!(is_exporter_style(&args(&[
            "watchfire",
            "-v",
            "--web.listen-address=:1"
        ])));
        assert!(!is_exporter_style(&args(&[
            "watchfire",
            "run",
            "--config.file",
            "b"
        ])));
        assert!(!is_exporter_style(&args(&[
            "watchfire",
            "--log-format",
            "json",
            "run"
        ])));
        assert!(!is_exporter_style(&args(&["watchfire"])));
        assert!(!is_exporter_style(&args(&["watchfire", "--help"])));
    }

    #[test]
    fn kingpin_syntax_and_negated_booleans_parse() {
        let a = ExporterArgs::try_parse_from([
            "blackbox_exporter",
            "--config.file=/etc/b.yml",
            "--config.check",
            "--no-config.check",
            "--web.listen-address",
            "127.0.0.1:1",
            "--timeout-offset=0.25",
            "--log.level",
            "warn",
            "--log.format=json",
        ])
        .unwrap();
        assert_eq!(a.config_file, PathBuf::from("/etc/b.yml"));
        assert!(!a.config_check, "the later --no-config.check wins");
        assert_eq!(a.listen, vec!["127.0.0.1:1"]);
        assert_eq!(a.timeout_offset, Duration::from_millis(250));
        assert_eq!(a.logging(), (LogFormat::ExporterJson, LogLevel::Warn));
        let run = a.run_args().unwrap();
        assert_eq!(run.config, PathBuf::from("/etc/b.yml"));
        assert_eq!(run.listen, vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(run.timeout_offset, Duration::from_millis(250));
        assert_eq!(run.log_prober, crate::probers::Level::Info);
        let a = ExporterArgs::try_parse_from(["blackbox_exporter", "--log.prober=debug"]).unwrap();
        assert_eq!(
            a.run_args().unwrap().log_prober,
            crate::probers::Level::Debug
        );
    }

    #[test]
    fn defaults_are_the_exporters() {
        let a = ExporterArgs::try_parse_from(["blackbox_exporter"]).unwrap();
        assert_eq!(a.config_file, PathBuf::from("blackbox.yml"));
        assert_eq!(a.listen, vec![":9115"]);
        assert_eq!(a.history_limit, 100);
        assert_eq!(a.auto_reload_interval, Duration::from_secs(30));
        assert_eq!(a.logging(), (LogFormat::Logfmt, LogLevel::Info));
        let run = a.run_args().unwrap();
        assert_eq!(run.listen, vec!["0.0.0.0:9115".parse().unwrap()]);
        assert!(!run.auto_reload && !run.allow_empty_config);
    }
}
