//! The command line: `run`, `check`, `probe`, `sim`, `demo`, `verify`, `impact`, and
//! blackbox_exporter's own command line for a drop-in ([`exporter`]).
//!
//! Each command returns an [`std::process::ExitCode`]; `main` only parses ([`parse`]), sets up
//! logging and the runtime, and calls [`run_invocation`].

pub mod cluster;
pub mod exporter;
pub mod incident;
pub mod notify;
pub mod report;
mod run;
pub mod storage;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::adhoc::{AdhocProbe, OneProber, DEFAULT_CONFIG};
use crate::config::{self, parse_duration, parse_size, TargetSpec};
use crate::probe::Phases;
use crate::server;
use crate::telemetry::{LogFormat, LogLevel};

/// Default listen address (blackbox_exporter's port).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9115";

/// watchfire: a synthetic-monitoring prober with honest timings, up/down state and failover.
#[derive(Debug, Parser)]
#[command(name = "watchfire", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe the configured targets on their schedules and serve /metrics.
    Run(RunArgs),
    /// Validate a config: list every error, exit non-zero if there is any.
    Check(CheckArgs),
    /// Probe one URL (or, with --module, one module target) now and print phase timings and the
    /// verdict (exit 0 on success).
    Probe(ProbeArgs),
    /// Run a simulated inference gateway with switchable faults.
    Sim(SimArgs),
    /// The whole story in under a minute: two sims, probes, a fault, detection, recovery.
    Demo(DemoArgs),
    /// Watch a service after a fix and give a PASS/FAIL verdict with the numbers.
    Verify(crate::verify::VerifyArgs),
    /// Compute an incident's impact (downtime, failed requests, error budget) from Prometheus
    /// or the store.
    Impact(report::ImpactCommand),
    /// List, show, update, resolve or declare incidents on a running watchfire.
    Incident(incident::IncidentArgs),
    /// List, add or delete maintenance windows on a running watchfire.
    Maintenance(incident::MaintenanceArgs),
    /// Send a sample message to a receiver, or list the receivers, routes and escalation.
    Notify(notify::NotifyArgs),
    /// Uptime, probes, latency, incidents and error budget over a range, from the store (the
    /// monthly SLA report).
    Report(report::ReportArgs),
}

/// `watchfire run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file or directory of *.yaml files (a blackbox.yml works as it stands).
    #[arg(long, alias = "config.file", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Address to serve /metrics, /probe and the API on (`:9115` means all interfaces);
    /// repeat to serve on several.
    #[arg(long, alias = "web.listen-address", default_value = DEFAULT_LISTEN, value_parser = parse_listen,
          action = clap::ArgAction::Append)]
    pub listen: Vec<SocketAddr>,
    /// Subtracted from Prometheus' scrape timeout to get /probe's timeout: seconds (`0.5`) or a
    /// duration (`500ms`), as blackbox_exporter's flag.
    #[arg(long, default_value = "0.5", value_parser = parse_offset)]
    pub timeout_offset: Duration,
    /// How many recent /probe results `/` lists and `/logs?id=` shows (blackbox's
    /// `--history.limit`); failures that fall out are kept too, up to as many again. 0 keeps none.
    #[arg(long, alias = "history.limit", default_value_t = crate::blackbox::history::DEFAULT_HISTORY_LIMIT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=crate::blackbox::history::MAX_HISTORY_LIMIT as u64))]
    pub history_limit: usize,
    /// Most probes in flight at once, divided evenly among the probe threads (one per CPU).
    #[arg(long, default_value_t = crate::runtime::DEFAULT_MAX_CONCURRENCY)]
    pub max_concurrency: usize,
    /// Least time between two wake-ups of a probe thread's scheduler (at most 10ms): probes
    /// planned closer together than this start together, at most this late. `0s` starts each
    /// probe at its planned time, for a few µs more CPU per probe at high rates.
    #[arg(long, default_value = "400us", value_parser = parse_wake_gap)]
    pub min_wake_gap: Duration,
    /// How long before its planned start a probe may start (at most 10ms, and a 50th of its
    /// target's interval), so that the probes planned within this much after a probe thread's
    /// wake-up start at it instead of each waking the thread: fewer wake-ups, less CPU per
    /// probe at moderate rates, and less lag. Such a probe's lag is 0. `0s` starts no probe
    /// before its planned time.
    #[arg(long, default_value = "2ms", value_parser = parse_wake_lead)]
    pub wake_lead: Duration,
    /// Start with, and reload to, a config that defines nothing (no targets, modules, failover
    /// groups or memory watches); refused by default, as it is most often a mistake.
    #[arg(long)]
    pub allow_empty_config: bool,
    /// Reload the config when its content changes (checked every
    /// --config.auto-reload-interval); a config with errors keeps the running one.
    #[arg(long = "config.enable-auto-reload")]
    pub auto_reload: bool,
    /// Time between two checks for --config.enable-auto-reload: seconds (`30`, blackbox's form)
    /// or a duration (`2s`).
    #[arg(long = "config.auto-reload-interval", default_value = "30", value_parser = parse_seconds)]
    pub auto_reload_interval: Duration,
    /// Least level of the /probe log lines (blackbox_exporter's --log.prober): the lines at it
    /// and above go to stderr, to debug=true and to the history; the others are not kept.
    #[arg(
        long = "log.prober",
        value_enum,
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub log_prober: crate::probers::Level,

    // The server's own flags (TLS and auth, limits, routes, control endpoints).
    /// exporter-toolkit's web config file: TLS, basic-auth users (bcrypt), response headers, for
    /// every endpoint. Read again when it or a file it names changes.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Serve on the sockets systemd passes (socket activation: `LISTEN_PID`, `LISTEN_FDS`, fd 3
    /// onwards) instead of --web.listen-address.
    #[arg(long = "web.systemd-socket")]
    pub web_systemd_socket: bool,
    /// Open connections, at most: past it the longest idle one is closed; when all are busy the
    /// new one is answered 503.
    #[arg(long = "web.max-connections", value_name = "N",
          default_value_t = server::admission::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub web_max_connections: usize,
    /// /probe requests in flight, at most; more are answered 503 with Retry-After at once.
    #[arg(long = "web.max-probes-in-flight", value_name = "N",
          default_value_t = server::admission::DEFAULT_MAX_PROBES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub web_max_probes: usize,
    /// API, page, /-/reload and failover requests in flight, at most (503 past it).
    #[arg(long = "web.max-requests-in-flight", value_name = "N",
          default_value_t = server::admission::DEFAULT_MAX_REQUESTS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub web_max_requests: usize,
    /// /-/healthy, /-/ready and /metrics requests in flight, at most (503 past it).
    #[arg(long = "web.max-management-in-flight", value_name = "N",
          default_value_t = server::admission::DEFAULT_MAX_MANAGEMENT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub web_max_management: usize,
    /// Time a client has to send a request's headers (and finish a TLS handshake), from the
    /// connection's start or the previous answer: it also closes idle keep-alive connections.
    #[arg(long = "web.header-timeout", value_name = "DURATION", default_value = "5s",
          value_parser = parse_header_timeout)]
    pub web_header_timeout: Duration,
    /// Prefix of every endpoint (`/blackbox` serves `/blackbox/metrics`...); default: the path
    /// of --web.external-url, else `/`.
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    pub web_route_prefix: Option<String>,
    /// The URL watchfire is reached at through a reverse proxy: its path is the default route
    /// prefix, and an Origin naming it counts as watchfire's own for control requests.
    #[arg(long = "web.external-url", value_name = "URL", value_parser = parse_external_url)]
    pub web_external_url: Option<url::Url>,
    /// Turn off POST /-/reload (403); SIGHUP still reloads.
    #[arg(long = "web.disable-reload")]
    pub web_disable_reload: bool,
    /// Turn off the failover actions POST /api/v1/failover/GROUP/switch and /failback (403).
    #[arg(long = "web.disable-failover-api")]
    pub web_disable_failover_api: bool,

    // Where state and history are kept (`--storage.*`).
    #[command(flatten)]
    pub storage: storage::StorageArgs,

    // Several instances as one prober (`--cluster*`, `--location`).
    #[command(flatten)]
    pub cluster: Box<cluster::ClusterArgs>,
}

/// `--web.header-timeout`: a duration from 100ms to 10 minutes.
pub fn parse_header_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
        return Err(format!("`{s}` is outside 100ms..10m"));
    }
    Ok(d)
}

/// `--web.external-url`: an absolute http(s) URL.
pub fn parse_external_url(s: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}` is not an absolute URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "`{s}` is not an http:// or https:// URL with a host"
        ));
    }
    Ok(u)
}

/// `watchfire check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file or directory of *.yaml files.
    #[arg(long, alias = "config.file", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Accept a config that defines nothing (no targets, modules, failover groups or memory
    /// watches).
    #[arg(long)]
    pub allow_empty_config: bool,
}

/// A listen address; blackbox_exporter's `:9115` (no host) means every interface.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|e| format!("`{s}` is not an address like 127.0.0.1:9115 or :9115 ({e})"))
}

/// `--min-wake-gap`: a duration up to 10 ms.
pub fn parse_wake_gap(s: &str) -> Result<Duration, String> {
    parse_up_to_10ms(s, "late")
}

/// `--wake-lead`: a duration up to 10 ms.
pub fn parse_wake_lead(s: &str) -> Result<Duration, String> {
    parse_up_to_10ms(s, "early")
}

/// A duration up to 10 ms by which a probe may start `off` (late, early).
fn parse_up_to_10ms(s: &str, off: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d > Duration::from_millis(10) {
        return Err(format!("`{s}` is over 10ms: probes would start that {off}"));
    }
    Ok(d)
}

/// `--timeout-offset`: seconds as a number (blackbox's form) or a duration.
pub fn parse_offset(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=3600.0).contains(&x) => Ok(Duration::from_secs_f64(x)),
        Ok(_) => Err(format!("`{s}` is outside 0..3600 seconds")),
        Err(_) => parse_duration(s),
    }
}

/// A positive interval: seconds as a number (blackbox's `--config.auto-reload-interval 30`) or
/// a duration (`500ms`).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let d = match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (0.0..=86_400.0).contains(&x) => Duration::from_secs_f64(x),
        Ok(_) => return Err(format!("`{s}` is outside 0..86400 seconds")),
        Err(_) => parse_duration(s)?,
    };
    if d.is_zero() {
        return Err(format!("`{s}` is not a positive interval"));
    }
    Ok(d)
}

/// What the command line asks for: watchfire's subcommands, or blackbox_exporter's flags.
#[derive(Debug)]
pub enum Invocation {
    /// `watchfire SUBCOMMAND ...` (boxed, as the other: both hold many flags).
    Watchfire(Box<Cli>),
    /// blackbox_exporter's command line (see [`exporter`]).
    Exporter(Box<exporter::ExporterArgs>),
}

impl Invocation {
    /// The log format and level asked for.
    pub fn logging(&self) -> (LogFormat, LogLevel) {
        match self {
            Invocation::Watchfire(cli) => {
                let quiet = matches!(cli.command, Command::Demo(_) | Command::Probe(_));
                (cli.log_format, LogLevel::from_verbosity(cli.verbose, quiet))
            }
            Invocation::Exporter(e) => e.logging(),
        }
    }
}

/// Parses the process's command line (see [`exporter::is_exporter_style`] for which syntax is
/// used); on an error, or for `--help` and `--version`, prints and exits as clap does.
pub fn parse(args: Vec<OsString>) -> Invocation {
    if exporter::is_exporter_style(&args) {
        Invocation::Exporter(Box::new(exporter::ExporterArgs::parse_from(args)))
    } else {
        Invocation::Watchfire(Box::new(Cli::parse_from(args)))
    }
}

/// Runs what the command line asked for.
pub async fn run_invocation(inv: Invocation) -> ExitCode {
    let e = match inv {
        Invocation::Watchfire(cli) => return execute(*cli).await,
        Invocation::Exporter(e) => *e,
    };
    if e.config_check {
        return check(CheckArgs {
            config: e.config_file,
            allow_empty_config: e.allow_empty_config,
        });
    }
    match e.run_args() {
        Ok(a) => run::run(a).await.unwrap_or_else(|e| {
            eprintln!("watchfire: {e:#}");
            ExitCode::from(2)
        }),
        Err(err) => {
            tracing::error!(error = %err, "cannot start");
            ExitCode::from(2)
        }
    }
}

/// `watchfire probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to probe (http:// or https://); with --module, the module's target in its
    /// prober's syntax (`host:port` for tcp and grpc, a host for icmp and dns, a URL for http).
    pub url: String,
    /// Probe with this module of the config's `modules:` (any prober kind) instead of the native
    /// HTTP prober; the request and the checks are the module's.
    #[arg(long, conflicts_with_all = ["method", "headers", "body", "json", "expect_status",
        "expect_json", "expect_body", "max_latency", "insecure", "ca_file", "body_limit"])]
    pub module: Option<String>,
    /// The config whose `modules:` --module names (default probes/).
    #[arg(long, alias = "config.file", requires = "module")]
    pub config: Option<PathBuf>,
    /// HTTP method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Request header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Raw request body.
    #[arg(long, conflicts_with = "json")]
    pub body: Option<String>,
    /// JSON request body (sets Content-Type: application/json).
    #[arg(long)]
    pub json: Option<String>,
    /// Bound on the whole probe.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Accepted status: code, class (2xx) or range (200-299); repeatable. Default 2xx.
    #[arg(long = "expect-status")]
    pub expect_status: Vec<String>,
    /// Expected JSON field `path=value` (value parsed as JSON, else a string); repeatable.
    #[arg(long = "expect-json")]
    pub expect_json: Vec<String>,
    /// Regular expression the body must match.
    #[arg(long = "expect-body")]
    pub expect_body: Option<String>,
    /// Slowest acceptable answer.
    #[arg(long, value_parser = parse_duration)]
    pub max_latency: Option<Duration>,
    /// Accept any TLS certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Trust this CA (PEM) instead of the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Cap on the body read (`1MiB`, `65536`).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub body_limit: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

impl ProbeArgs {
    /// The probe these flags describe.
    pub fn adhoc(&self) -> AdhocProbe {
        AdhocProbe {
            url: self.url.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            json: self.json.clone(),
            timeout: self.timeout,
            expect_status: self.expect_status.clone(),
            expect_json: self.expect_json.clone(),
            expect_body: self.expect_body.clone(),
            max_latency: self.max_latency,
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            body_limit: self.body_limit,
        }
    }
}

/// Output format of `probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// curl -w style lines.
    Text,
    /// One JSON object.
    Json,
}

/// `watchfire sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Start down (connection refused) and come back after this long (`30s`).
    #[arg(long)]
    pub down_for: Option<String>,
    /// Accept but never answer /health and /predict.
    #[arg(long)]
    pub hang: bool,
    /// Added latency on /health and /predict (`250ms`).
    #[arg(long, value_parser = parse_duration)]
    pub slow: Option<Duration>,
    /// Fraction of /health and /predict answered 500 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// /health answers `{"status":"degraded"}`.
    #[arg(long)]
    pub unhealthy: bool,
    /// Exit with code 137 (as an OOM kill would) after this long.
    #[arg(long, value_parser = parse_duration)]
    pub crash_after: Option<Duration>,
    /// Memory growth per second (`1MiB`).
    #[arg(long, value_parser = parse_size)]
    pub leak_rate: Option<u64>,
    /// Cap on the leaked memory.
    #[arg(long, value_parser = parse_size)]
    pub leak_max: Option<u64>,
}

/// `watchfire demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep running after the story ends (Ctrl-C to stop).
    #[arg(long)]
    pub forever: bool,
    /// Address for the demo's /metrics (default: a free loopback port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

impl DemoArgs {
    /// The demo these flags ask for.
    pub fn options(&self) -> crate::demo::Options {
        crate::demo::Options {
            forever: self.forever,
            listen: self.listen,
        }
    }
}

/// Runs the parsed command.
pub async fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(a) => run::run(a).await,
        Command::Check(a) => Ok(check(a)),
        Command::Probe(a) => probe(a).await,
        Command::Sim(a) => sim(a).await,
        Command::Demo(a) => crate::demo::run(a.options()).await,
        Command::Verify(a) => crate::verify::run_verify(a).await,
        Command::Impact(a) => report::run_impact(a).await,
        Command::Incident(a) => incident::run_incident(a).await,
        Command::Maintenance(a) => incident::run_maintenance(a).await,
        Command::Notify(a) => notify::run(a).await,
        Command::Report(a) => report::run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("watchfire: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check(a: CheckArgs) -> ExitCode {
    let load = config::LoadOptions {
        allow_empty: a.allow_empty_config,
    };
    match config::load_with(&a.config, load) {
        Ok(c) => {
            println!(
                "{}: OK ({} targets, {} failover groups, {} modules, {} files)",
                a.config.display(),
                c.targets.len(),
                c.failover.len(),
                c.modules.len(),
                c.sources.len()
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                println!("{e}");
            }
            println!("{} error(s)", errs.0.len());
            ExitCode::from(1)
        }
    }
}

async fn probe(a: ProbeArgs) -> anyhow::Result<ExitCode> {
    let (spec, modules) = match &a.module {
        None => (
            a.adhoc().target_spec()?,
            crate::blackbox::config::Modules::default(),
        ),
        Some(m) => {
            let path = a.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
            let cfg = run::runtime_load(&path).await.map_err(|errs| {
                anyhow::anyhow!("{errs}\nthe config {} has errors", path.display())
            })?;
            let spec = crate::adhoc::module_target(&cfg.modules, m, &a.url, a.timeout)?;
            (spec, cfg.modules)
        }
    };
    let prober = OneProber::new(&spec, &modules).map_err(anyhow::Error::msg)?;
    let o = prober.probe(tokio::time::Instant::now()).await;
    match a.format {
        OutputFormat::Text => print_text(&spec, &o),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&json(&spec, &o))?),
    }
    Ok(if o.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `probe`'s text output: what was probed, the phases (like `curl -w`), the verdict.
fn print_text(spec: &TargetSpec, o: &crate::probe::Outcome) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match spec.module() {
        None => println!("url:          {}", spec.target_text()),
        Some(m) => {
            println!("module:       {m}");
            println!("target:       {}", spec.target_text());
        }
    }
    for (name, d) in Phases::NAMES.iter().zip(o.phases.as_array()) {
        println!("{:<13} {:>9.3} ms", format!("{name}:"), ms(d));
    }
    println!("{:<13} {:>9.3} ms", "total:", ms(o.latency()));
    match o.status {
        Some(s) => println!("status:       {s}"),
        None => println!("status:       -"),
    }
    println!("body bytes:   {}", o.body_bytes);
    match &o.result {
        Ok(()) => println!("result:       success"),
        Err(r) => println!(
            "result:       FAILED ({r}): {}",
            o.detail.as_deref().unwrap_or("")
        ),
    }
}

/// `probe --format json`: one object; `url` for a native check, `module` and `target` for a
/// module target.
fn json(spec: &TargetSpec, o: &crate::probe::Outcome) -> serde_json::Value {
    let phases: serde_json::Map<String, serde_json::Value> = Phases::NAMES
        .iter()
        .zip(o.phases.as_array())
        .map(|(n, d)| (n.to_string(), serde_json::json!(d.as_secs_f64())))
        .collect();
    let mut v = serde_json::json!({
        "success": o.ok(),
        "result": o.result.err().map(|r| r.as_str()).unwrap_or("success"),
        "detail": o.detail,
        "status": o.status,
        "body_bytes": o.body_bytes,
        "duration_seconds": o.latency().as_secs_f64(),
        "phases_seconds": phases,
    });
    match spec.module() {
        None => v["url"] = spec.target_text().into(),
        Some(m) => {
            v["module"] = m.into();
            v["target"] = spec.target_text().into();
        }
    }
    v
}

async fn sim(a: SimArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&a.error_rate) {
        anyhow::bail!("--error-rate {} is outside 0..1", a.error_rate);
    }
    let mut faults = crate::sim::FaultConfig {
        hang: a.hang,
        slow: a.slow.unwrap_or(Duration::ZERO),
        error_rate: a.error_rate,
        unhealthy: a.unhealthy,
        crash_after: a.crash_after,
        leak_rate: a.leak_rate.unwrap_or(0),
        ..crate::sim::FaultConfig::default()
    };
    if let Some(m) = a.leak_max {
        faults.leak_max = m;
    }
    let down_for = match &a.down_for {
        Some(d) => Some(parse_duration(d).map_err(|e| anyhow::anyhow!("--down-for: {e}"))?),
        None => None,
    };
    let sim = crate::sim::Sim::start(a.listen, faults)
        .await
        .with_context(|| format!("starting the sim on {} (--listen)", a.listen))?;
    info!(addr = %sim.local_addr(), "sim gateway listening");
    if let Some(d) = down_for {
        sim.go_down();
        let s = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if let Err(e) = s.come_up() {
                tracing::error!(error = %e, "sim cannot come back up");
            }
        });
    }
    let cancel = CancellationToken::new();
    crate::shutdown::on_terminate(cancel.clone()).context("installing signal handlers")?;
    tokio::select! {
        _ = cancel.cancelled() => {
            sim.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        _ = sim.crashed() => {
            tracing::error!("sim crashed (simulated OOM kill), exiting with 137");
            Ok(ExitCode::from(137))
        }
    }
}
