//! `watchfire verify`: the runbook's "watch for 10-15 minutes" after a fix, done by a program
//! that says PASS or FAIL with the numbers; and `watchfire impact`: the incident's downtime,
//! failed requests and error budget from Prometheus.
//!
//! # Layout
//!
//! - [`parse`] — flag parsers: times (RFC 3339, `-15m`, `now`), ratios (`1%`), `--target`.
//! - [`plan`] — flags → targets, bounds, baseline, memory source, impact queries (checked before
//!   the window starts, so a usage error costs nothing).
//! - [`run`] — the window: one probe loop per target on the existing HTTP prober, the memory
//!   reader, progress and `--fail-fast`.
//! - [`tally`] — samples folded into per-target and memory figures.
//! - [`checks`] — the verdict as pure functions of the tallies.
//! - [`progress`] — indicatif bar on a terminal, plain lines otherwise.
//! - [`report`] — the JSON schema (version 1), the text summary and the Markdown RESOLVED message.
//! - [`impact`](mod@impact) — downtime, failed requests and error budget from Prometheus.
//! - [`prom`] — a small client for the Prometheus HTTP API.
//! - [`memory`] — cgroup v1/v2 and Prometheus memory readings.
//! - [`human`] — figures formatted for people.
//! - [`incident`](mod@incident) — `--incident ID`: the verdict posted on an incident of a
//!   running watchfire.
//!
//! Exit codes: 0 PASS, 1 FAIL, 2 usage or configuration error (an `Err` from [`run_verify`] /
//! [`run_impact`]; the CLI maps it to 2), 3 PASS whose verdict could not be posted on the
//! `--incident`.

pub mod checks;
pub mod human;
pub mod impact;
pub mod incident;
pub mod memory;
pub mod parse;
pub mod plan;
pub mod progress;
pub mod prom;
pub mod report;
pub mod run;
pub mod stored;
pub mod tally;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::config::parse_duration;
use crate::diag::ConfigErrors;

use self::parse::{parse_factor, parse_ratio, parse_time, TimeSpec};
use self::prom::PromError;
use self::report::{ImpactReport, VerifyReport};

/// Errors that stop verify or impact before a verdict: all are usage or configuration errors
/// (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A flag or a combination of flags that cannot work.
    #[error("{0}")]
    Usage(String),
    /// The probe config did not load.
    #[error("config {path}:\n{errors}")]
    Config {
        /// The config path.
        path: PathBuf,
        /// Every problem.
        errors: ConfigErrors,
    },
    /// Prometheus could not answer.
    #[error(transparent)]
    Prometheus(#[from] PromError),
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the file is (`--baseline`, `--json`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The baseline file is unusable.
    #[error("--baseline {}: {message}", path.display())]
    Baseline {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The memory source is unusable.
    #[error("memory: {0}")]
    Memory(String),
}

/// Settings shared by `verify --incident-start` and `impact`: which series say up/down, how to
/// get the request rate, the SLO.
#[derive(Debug, Clone, clap::Args)]
pub struct ImpactQueryArgs {
    /// Prometheus job of the service: downtime from `min(up{job="JOB"})`, request rate from
    /// `--request-metric{job="JOB"}`.
    #[arg(long)]
    pub job: Option<String>,
    /// Query that is 1 when up and 0 when down (overrides the one built from --job / targets).
    #[arg(long, value_name = "PROMQL")]
    pub up_query: Option<String>,
    /// The service's request counter, for the request rate with --job.
    #[arg(long, default_value = "http_requests_total", value_name = "METRIC")]
    pub request_metric: String,
    /// Query giving requests per second (overrides the one built from --job); `$window` and
    /// `$job` are filled in.
    #[arg(long, value_name = "PROMQL")]
    pub rate_query: Option<String>,
    /// Window of `rate()` for the request rate before the outage.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DURATION")]
    pub rate_window: Duration,
    /// The SLO the error budget belongs to (`99.9%`).
    #[arg(long, default_value = "99.9%", value_parser = parse_ratio)]
    pub slo: f64,
    /// The SLO's window.
    #[arg(long, default_value = "30d", value_parser = parse_duration, value_name = "DURATION")]
    pub slo_window: Duration,
    /// Resolution of the up/down series (at most 11,000 points are asked for).
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub step: Duration,
}

/// `watchfire verify` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Target to probe (repeatable): `URL`, `METHOD URL` or `METHOD URL JSON`, e.g.
    /// `'POST http://127.0.0.1:8000/predict {"data": [[1,2,3,4]]}'`.
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// Method of --target URLs that do not name one (default GET, POST with --json-body).
    #[arg(short = 'X', long)]
    pub method: Option<String>,
    /// JSON body of --target URLs that do not carry one (sets Content-Type).
    #[arg(long, value_name = "JSON")]
    pub json_body: Option<String>,
    /// Request header `Name: value` for --target URLs (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Accepted status of --target URLs: code, class (2xx) or range; repeatable. Default 2xx.
    #[arg(long = "expect-status")]
    pub expect_status: Vec<String>,
    /// Bound on each probe of a --target URL (config targets keep theirs).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Accept any TLS certificate (--target URLs).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Probe config (file or directory) to take targets from; default `probes/` with --name.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Target of the config to probe, by name (repeatable); none: every target of --config.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// How long to watch.
    #[arg(long = "for", default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub window: Duration,
    /// Time between probes of each target.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    pub interval: Duration,
    /// Highest acceptable error rate per target (failed / completed probes).
    #[arg(long, default_value = "1%", value_parser = parse_ratio, value_name = "RATIO")]
    pub max_error_rate: f64,
    /// Highest acceptable p99 latency of answers.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub max_p99: Option<Duration>,
    /// Most transitions to down (flaps) allowed in the window.
    #[arg(long, default_value_t = 0)]
    pub max_flaps: u32,
    /// Fewest completed probes per target for a verdict (fewer: FAIL, not enough data).
    #[arg(long, default_value_t = 10)]
    pub min_probes: u64,
    /// Stop as soon as a check can no longer pass in the window.
    #[arg(long)]
    pub fail_fast: bool,
    /// Without a terminal: a progress line on stderr this often (0: none).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub progress_interval: Duration,
    /// Write the JSON report (schema_version 1) here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the Markdown RESOLVED message here.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,
    /// Incident title for the Markdown report.
    #[arg(long, default_value = "ServiceDown: inference-gateway")]
    pub title: String,
    /// Latency baseline.
    #[command(flatten)]
    pub base: Box<BaselineArgs>,
    /// Memory check.
    #[command(flatten)]
    pub mem: Box<MemoryArgs>,
    /// Prometheus and incident impact.
    #[command(flatten)]
    pub prom: Box<PromArgs>,
    /// The incident the verdict is posted on.
    #[command(flatten)]
    pub incident: Box<incident::IncidentArgs>,
}

/// `verify` flags for the latency baseline: an earlier report, or a pre-incident window in
/// Prometheus.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Latency baseline")]
pub struct BaselineArgs {
    /// A report written by an earlier `verify --json`: each target's p99 is held to its
    /// baseline p99 × --baseline-factor.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Allowed p99 growth over the baseline.
    #[arg(long, default_value = "1.5", value_parser = parse_factor)]
    pub baseline_factor: f64,
    /// Floor of the allowed p99 growth over the baseline (sub-millisecond baselines would
    /// otherwise fail on scheduling noise).
    #[arg(long, default_value = "5ms", value_parser = parse_duration, value_name = "DURATION")]
    pub baseline_slack: Duration,
    /// Start of a pre-incident window to take each target's p99 baseline from (Prometheus).
    #[arg(long, value_parser = parse_time, value_name = "TIME", allow_hyphen_values = true)]
    pub baseline_from: Option<TimeSpec>,
    /// End of the baseline window (default: --incident-start).
    #[arg(long, value_parser = parse_time, value_name = "TIME", allow_hyphen_values = true)]
    pub baseline_to: Option<TimeSpec>,
    /// The baseline query; `$target` and `$range` are filled in.
    #[arg(long, value_name = "PROMQL", default_value = plan::DEFAULT_BASELINE_QUERY)]
    pub baseline_query: String,
}

/// `verify` flags for the memory check.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Memory")]
pub struct MemoryArgs {
    /// Read memory from this cgroup directory (v2 memory.current/memory.max, or v1).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["memory_container", "memory_query"])]
    pub memory_cgroup: Option<PathBuf>,
    /// Read memory through Prometheus for this container (cAdvisor's
    /// container_memory_usage_bytes / container_spec_memory_limit_bytes).
    #[arg(long, value_name = "NAME", conflicts_with = "memory_query")]
    pub memory_container: Option<String>,
    /// Read memory through Prometheus with this query (its value is usage / limit).
    #[arg(long, value_name = "PROMQL")]
    pub memory_query: Option<String>,
    /// Highest acceptable memory use as a share of the limit.
    #[arg(long, default_value = "85%", value_parser = parse_ratio, value_name = "RATIO")]
    pub max_memory: f64,
    /// Highest acceptable memory growth over the window, as a share of the limit.
    #[arg(long, default_value = "5%", value_parser = parse_ratio, value_name = "RATIO")]
    pub max_memory_growth: f64,
    /// Time between memory readings.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub memory_interval: Duration,
}

/// `verify` flags for Prometheus and the incident's impact.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Prometheus and impact")]
pub struct PromArgs {
    /// Prometheus base URL (baseline window, memory, impact).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// When the incident started: adds its impact (downtime, failed requests, error budget up
    /// to now) from Prometheus to the reports.
    #[arg(long, value_parser = parse_time, value_name = "TIME", allow_hyphen_values = true)]
    pub incident_start: Option<TimeSpec>,
    /// Impact settings.
    #[command(flatten)]
    pub impact: ImpactQueryArgs,
}

/// `watchfire impact` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ImpactArgs {
    /// Prometheus base URL; without it the impact is computed from the store
    /// (`--storage.path` / `--storage.url`, read by the command line).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Requests per second before the outage, for the failed requests when computing from the
    /// store (there is no request counter there).
    #[arg(long, value_name = "RATE", conflicts_with = "prometheus")]
    pub request_rate: Option<f64>,
    /// Start of the range (RFC 3339, `-1h`, `now-90m`, Unix seconds).
    #[arg(long, value_parser = parse_time, value_name = "TIME", allow_hyphen_values = true)]
    pub from: TimeSpec,
    /// End of the range.
    #[arg(long, value_parser = parse_time, value_name = "TIME", default_value = "now", allow_hyphen_values = true)]
    pub to: TimeSpec,
    /// watchfire target whose `watchfire_target_up` says up/down (repeatable; without --job).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Write the impact as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Settings.
    #[command(flatten)]
    pub query: ImpactQueryArgs,
}

/// Runs a verify window and gives the report (already printed and written to `--json` /
/// `--report`). `shutdown` ends the window early (the verdict is then FAIL).
pub async fn verify(
    args: VerifyArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<VerifyReport, VerifyError> {
    let now = SystemTime::now();
    let prepared = plan::prepare(&args, now).await?;
    let plan::Prepared {
        setup,
        tallies,
        impact,
        incident_start,
    } = prepared;
    let collected = run::collect(setup.run, tallies, shutdown).await;
    let report = plan::report(&setup.criteria, collected, impact);
    print!("{}", report::text(&report));
    if let Some(path) = &args.json {
        write(path, "--json", &json_text(&report)?)?;
    }
    if let Some(path) = &args.report {
        let md = report::markdown(
            &report,
            &report::MarkdownOptions {
                title: args.title.clone(),
                incident_start,
            },
        );
        write(path, "--report", &md)?;
    }
    Ok(report)
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String, VerifyError> {
    serde_json::to_string_pretty(v)
        .map(|mut s| {
            s.push('\n');
            s
        })
        .map_err(|e| VerifyError::Usage(format!("cannot encode the report: {e}")))
}

fn write(path: &std::path::Path, what: &'static str, text: &str) -> Result<(), VerifyError> {
    std::fs::write(path, text).map_err(|source| VerifyError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Computes an incident's impact and gives it (already printed and written to `--json`), from
/// Prometheus or, without `--prometheus`, from the store `store` names.
pub async fn impact(
    args: ImpactArgs,
    store: crate::store::StoreOptions,
) -> Result<ImpactReport, VerifyError> {
    let now = SystemTime::now();
    let (from, to) = impact::check_range(args.from.resolve(now), args.to.resolve(now), now)?;
    if args.to.resolve(now) > now {
        eprintln!("watchfire: --to is in the future; the range ends now");
    }
    let report = match &args.prometheus {
        Some(url) => {
            let spec = plan::impact_spec(&args.query, &args.targets, from, to)?;
            let prom = prom::Prom::new(url)?;
            impact::compute(&prom, &spec).await?
        }
        None => {
            let store = crate::store::Store::open(&store)
                .await
                .map_err(|e| VerifyError::Usage(format!("cannot open the store: {e}")))?;
            let ms = crate::runtime::history::millis_of;
            let spec = stored::StoredSpec {
                targets: args.targets.clone(),
                from: ms(from),
                to: ms(to),
                request_rate: args.request_rate,
                slo: args.query.slo,
                slo_window: args.query.slo_window,
            };
            stored::compute(&store, &spec).await?
        }
    };
    print!("{}", report::impact_text(&report));
    if let Some(path) = &args.json {
        write(path, "--json", &json_text(&report)?)?;
    }
    Ok(report)
}

/// Runs `watchfire verify`: exit 0 on PASS, 1 on FAIL, 3 on a PASS that could not be posted
/// on `--incident`; an `Err` is a usage error (exit 2).
pub async fn run_verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let poster = incident::prepare(&a.incident).await?;
    let report = verify(a, interrupted).await?;
    let mut code = if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if let Some(p) = poster {
        match p.post(&report).await {
            Ok(v) => println!("verdict posted on incident {} (now {})", p.id(), v.status),
            Err(e) => {
                eprintln!(
                    "watchfire: the verdict was not posted on incident {}: {e:#}",
                    p.id()
                );
                if report.passed() {
                    code = ExitCode::from(3);
                }
            }
        }
    }
    Ok(code)
}

/// Runs `watchfire impact`: exit 0 with the figures; an `Err` is a usage error (exit 2).
pub async fn run_impact(
    a: ImpactArgs,
    store: crate::store::StoreOptions,
) -> anyhow::Result<ExitCode> {
    impact(a, store).await?;
    Ok(ExitCode::SUCCESS)
}
