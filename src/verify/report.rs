//! What `watchfire verify` and `watchfire impact` hand back: the JSON document (`--json FILE`,
//! schema below), the text summary on stdout and the Markdown RESOLVED message (`--report`).
//!
//! # JSON schema, version 1
//!
//! Stable: fields are only ever added within a version; a removal or a change of meaning bumps
//! `schema_version`. Times are RFC 3339 UTC strings, durations are seconds (numbers), ratios are
//! fractions (`0.01` = 1 %). Every field is always present; "optional" ones are `null` when not
//! measured. Each struct below documents its fields; the README has the same list.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::checks::{Check, DownPeriod, Status, TargetTally};
use super::human::{self, pct};

/// The JSON schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The verify report (`--json FILE`). Also what `--baseline FILE` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Always `1` for this layout.
    pub schema_version: u32,
    /// The watchfire version that wrote it.
    pub watchfire_version: String,
    /// `"PASS"` or `"FAIL"`.
    pub verdict: String,
    /// When the window started.
    pub started_at: String,
    /// When the verdict was given.
    pub ended_at: String,
    /// The window asked for (`--for`), seconds.
    pub window_seconds: f64,
    /// How long it actually ran, seconds (less than the window when stopped early).
    pub elapsed_seconds: f64,
    /// Time between probes of one target (`--interval`), seconds.
    pub interval_seconds: f64,
    /// `null`, `"fail_fast"` (a check could no longer pass) or `"interrupted"` (Ctrl-C).
    pub stopped_early: Option<String>,
    /// With `fail_fast`: the check that could no longer pass; `null` otherwise.
    pub stopped_by: Option<String>,
    /// Names of the failed checks, in check order (empty on PASS).
    pub failed_checks: Vec<String>,
    /// Every check, in order: `data`, `answered`, `error_rate`, `latency_p99`, `flaps`,
    /// `memory`.
    pub checks: Vec<CheckReport>,
    /// Per target figures, in the order given.
    pub targets: Vec<TargetReport>,
    /// Downtime of all targets together, seconds (sum of each target's).
    pub downtime_seconds: f64,
    /// Memory figures; `null` when memory was not measured.
    pub memory: Option<MemoryReport>,
    /// Incident impact (`--incident-start`); `null` otherwise.
    pub impact: Option<ImpactReport>,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// `data`, `answered`, `error_rate`, `latency_p99`, `flaps` or `memory`.
    pub name: String,
    /// `pass`, `fail` or `skip` (not asked for: no latency bound, memory not measured).
    pub status: String,
    /// The measured figure (for per-target checks, the worst target's), in `unit`; `null` when
    /// there is none.
    pub figure: Option<f64>,
    /// The bound the figure is held to, in `unit`; `null` when there is none.
    pub limit: Option<f64>,
    /// `probes` (data: fewest per target), `targets` (answered: answering targets),
    /// `ratio` (error_rate, memory), `seconds` (latency_p99), `transitions` (flaps).
    pub unit: String,
    /// The target the figure belongs to, when it is one target's.
    pub target: Option<String>,
    /// One line for people, with the figures.
    pub summary: String,
}

/// One target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// Config name, or the URL (`POST URL` for other methods) for `--target`.
    pub name: String,
    /// URL probed.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Probes completed.
    pub probes: u64,
    /// Probes that succeeded.
    pub successes: u64,
    /// Probes that failed.
    pub failures: u64,
    /// Failed / completed; `null` with no probe.
    pub error_rate: Option<f64>,
    /// Failed probes by reason (the `result` label values: `refused`, `status`, `timeout`...).
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Planned probes skipped because the previous one was still running.
    pub skipped: u64,
    /// Probes that got an HTTP answer (the latency figures are theirs).
    pub answered: u64,
    /// Median latency, seconds; `null` with no answer.
    pub p50_seconds: Option<f64>,
    /// 90th percentile, seconds.
    pub p90_seconds: Option<f64>,
    /// 99th percentile, seconds.
    pub p99_seconds: Option<f64>,
    /// Slowest answer, seconds.
    pub max_seconds: Option<f64>,
    /// The p99 bound, seconds; `null` when none was given.
    pub p99_limit_seconds: Option<f64>,
    /// Where the bound came from (`--max-p99`, `baseline 1.2ms × 1.5 (file)`); `null` if none.
    pub p99_limit_source: Option<String>,
    /// Transitions to down (fall threshold reached).
    pub down_transitions: u32,
    /// Transitions to up (rise threshold reached).
    pub up_transitions: u32,
    /// Time down, seconds.
    pub downtime_seconds: f64,
    /// Each period down, as offsets from `started_at`.
    pub down_periods: Vec<DownPeriodReport>,
    /// The last probe; `null` when none completed.
    pub last: Option<LastReport>,
}

/// A period down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownPeriodReport {
    /// Seconds after `started_at` of the first failure of the streak that took it down.
    pub start_offset_seconds: f64,
    /// Seconds after `started_at` of the first success of the streak that brought it back;
    /// `null` when still down at the end.
    pub end_offset_seconds: Option<f64>,
}

/// The last probe of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastReport {
    /// `success` or the failure reason.
    pub result: String,
    /// HTTP status; `null` when no answer arrived.
    pub status: Option<u16>,
    /// Human detail of a failure; `null` on success.
    pub detail: Option<String>,
}

/// Memory figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// `cgroup v2 PATH`, `cgroup v1 PATH` or `prometheus: QUERY`.
    pub source: String,
    /// Readings taken.
    pub samples: u64,
    /// Readings that failed.
    pub errors: u64,
    /// Last reading of memory in use (bytes for a cgroup; the ratio for Prometheus).
    pub last_used: Option<f64>,
    /// The limit (bytes for a cgroup, `1` for Prometheus); `null` when unlimited.
    pub limit: Option<f64>,
    /// Last `used / limit`; `null` without a limit.
    pub last_ratio: Option<f64>,
    /// Highest `used / limit`; `null` without a limit.
    pub max_ratio: Option<f64>,
    /// Growth over the window by a least-squares line, as a fraction of the limit (of the mean
    /// use when unlimited); `null` with fewer than 3 readings.
    pub growth_ratio: Option<f64>,
}

/// Incident impact (`watchfire impact --json`, and `impact` inside the verify report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// Start of the range.
    pub from: String,
    /// End of the range.
    pub to: String,
    /// Resolution of the up series, seconds.
    pub step_seconds: f64,
    /// The up/down query (1 up, 0 down).
    pub up_query: String,
    /// The request-rate query; `null` when none (then no failed requests).
    pub rate_query: Option<String>,
    /// Time down in the range, seconds.
    pub downtime_seconds: f64,
    /// Time in the range with no up/down data, seconds (not counted as down).
    pub no_data_seconds: f64,
    /// Each outage.
    pub outages: Vec<OutageReport>,
    /// Requests per second just before the first outage; `null` without a rate query or
    /// outage.
    pub request_rate_before: Option<f64>,
    /// Requests that failed: Σ rate before each outage × its duration; `null` without a rate
    /// query.
    pub failed_requests: Option<f64>,
    /// Probes that failed in the range (from the store's rollups; absent with Prometheus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_probes: Option<u64>,
    /// The SLO as a ratio (`0.999`).
    pub slo: f64,
    /// The SLO's window, seconds.
    pub slo_window_seconds: f64,
    /// Error budget: (1 − slo) × window, seconds.
    pub error_budget_seconds: f64,
    /// Budget used by this downtime, seconds.
    pub error_budget_consumed_seconds: f64,
    /// consumed / budget (`0.1157` = 11.57 % of the budget).
    pub error_budget_consumed_ratio: f64,
    /// budget − consumed, seconds (negative when overspent).
    pub error_budget_remaining_seconds: f64,
}

/// One outage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutageReport {
    /// First point seen down.
    pub start: String,
    /// First point seen up again, or the end of the range.
    pub end: String,
    /// Still down at the end of the range.
    pub ongoing: bool,
    /// end − start, seconds.
    pub duration_seconds: f64,
    /// Requests per second just before it; `null` without a rate query.
    pub request_rate_before: Option<f64>,
    /// rate × duration; `null` without a rate query.
    pub failed_requests: Option<f64>,
}

impl VerifyReport {
    /// True on PASS.
    pub fn passed(&self) -> bool {
        self.verdict == "PASS"
    }

    /// A check by name.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl From<&Check> for CheckReport {
    fn from(c: &Check) -> Self {
        CheckReport {
            name: c.name.as_str().to_string(),
            status: c.status.as_str().to_string(),
            figure: c.figure.filter(|f| f.is_finite()),
            limit: c.limit.filter(|f| f.is_finite()),
            unit: c.unit.to_string(),
            target: c.target.clone(),
            summary: c.summary.clone(),
        }
    }
}

fn q(t: &TargetTally, quantile: f64) -> Option<f64> {
    t.latency.quantile(quantile).map(|d| d.as_secs_f64())
}

/// The report of one target at the end of a window of `elapsed`.
pub fn target_report(t: &TargetTally, elapsed: std::time::Duration) -> TargetReport {
    TargetReport {
        name: t.name.clone(),
        url: t.url.clone(),
        method: t.method.clone(),
        probes: t.probes,
        successes: t.successes,
        failures: t.failures(),
        error_rate: t.error_rate(),
        failures_by_reason: t.failures_map(),
        skipped: t.skipped,
        answered: t.answered,
        p50_seconds: q(t, 0.5),
        p90_seconds: q(t, 0.9),
        p99_seconds: q(t, 0.99),
        max_seconds: q(t, 1.0),
        p99_limit_seconds: t.bound.as_ref().map(|b| b.limit.as_secs_f64()),
        p99_limit_source: t.bound.as_ref().map(|b| b.source.clone()),
        down_transitions: t.down_transitions,
        up_transitions: t.up_transitions,
        downtime_seconds: t.downtime(elapsed).as_secs_f64(),
        down_periods: t
            .down_periods
            .iter()
            .map(|p: &DownPeriod| DownPeriodReport {
                start_offset_seconds: p.start.as_secs_f64(),
                end_offset_seconds: p.end.map(|e| e.as_secs_f64()),
            })
            .collect(),
        last: t.last.as_ref().map(|l| LastReport {
            result: match l.result {
                Ok(()) => "success".to_string(),
                Err(r) => r.as_str().to_string(),
            },
            status: l.status,
            detail: l.detail.clone(),
        }),
    }
}

fn opt_secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".to_string(), human::secs)
}

fn status_word(s: &str) -> &'static str {
    match s {
        "pass" => "PASS",
        "fail" => "FAIL",
        "skip" => "skip",
        _ => "?",
    }
}

/// The text summary printed on stdout.
pub fn text(r: &VerifyReport) -> String {
    let mut s = String::new();
    let probes: u64 = r.targets.iter().map(|t| t.probes).sum();
    let _ = writeln!(
        s,
        "watchfire verify: {} — {} of {} window, {} target{}, {} probes",
        r.verdict,
        human::secs(r.elapsed_seconds),
        human::secs(r.window_seconds),
        r.targets.len(),
        if r.targets.len() == 1 { "" } else { "s" },
        probes
    );
    if let Some(why) = &r.stopped_early {
        match &r.stopped_by {
            Some(check) => {
                let _ = writeln!(s, "stopped early: {why} ({check} can no longer pass)");
            }
            None => {
                let _ = writeln!(s, "stopped early: {why}");
            }
        }
    }
    let _ = writeln!(s);
    for c in &r.checks {
        let _ = writeln!(
            s,
            "  {:<4}  {:<11}  {}",
            status_word(&c.status),
            c.name,
            c.summary
        );
    }
    let _ = writeln!(s);
    for t in &r.targets {
        let _ = writeln!(
            s,
            "  {}  {} {}: {} probes, {} failed ({}), p50 {} p99 {} max {}, downtime {}",
            t.name,
            t.method,
            t.url,
            t.probes,
            t.failures,
            t.error_rate.map_or_else(|| "-".into(), pct),
            opt_secs(t.p50_seconds),
            opt_secs(t.p99_seconds),
            opt_secs(t.max_seconds),
            human::secs(t.downtime_seconds)
        );
        for p in &t.down_periods {
            let _ = writeln!(
                s,
                "      down from +{} to {}",
                human::secs(p.start_offset_seconds),
                p.end_offset_seconds
                    .map_or_else(|| "the end".to_string(), |e| format!("+{}", human::secs(e)))
            );
        }
    }
    let _ = writeln!(s, "  downtime: {}", human::secs(r.downtime_seconds));
    if let Some(i) = &r.impact {
        let _ = writeln!(s);
        s.push_str(&impact_text(i));
    }
    if !r.failed_checks.is_empty() {
        let _ = writeln!(s, "\nfailed: {}", r.failed_checks.join(", "));
    }
    s
}

/// The text lines of an impact report (stdout of `watchfire impact`, and inside verify's).
pub fn impact_text(r: &ImpactReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("impact from {} to {}\n", r.from, r.to));
    s.push_str(&format!("  up series:        {}\n", r.up_query));
    s.push_str(&format!(
        "  downtime:         {} in {} outage{}",
        human::secs(r.downtime_seconds),
        r.outages.len(),
        if r.outages.len() == 1 { "" } else { "s" }
    ));
    if r.no_data_seconds > 0.0 {
        s.push_str(&format!(
            " ({} with no data)",
            human::secs(r.no_data_seconds)
        ));
    }
    s.push('\n');
    for o in &r.outages {
        s.push_str(&format!(
            "    {} → {}{}  {}",
            o.start,
            o.end,
            if o.ongoing { " (still down)" } else { "" },
            human::secs(o.duration_seconds)
        ));
        if let (Some(rate), Some(f)) = (o.request_rate_before, o.failed_requests) {
            s.push_str(&format!(
                "  {} req/s before → {} failed requests",
                human::count(rate),
                human::count(f)
            ));
        }
        s.push('\n');
    }
    match (&r.rate_query, r.failed_requests) {
        (Some(q), Some(f)) => {
            s.push_str(&format!("  request rate:     {q}\n"));
            if let Some(rate) = r.request_rate_before {
                s.push_str(&format!(
                    "  before outage:    {} req/s\n",
                    human::count(rate)
                ));
            }
            s.push_str(&format!(
                "  failed requests:  {} (rate × downtime)\n",
                human::count(f)
            ));
        }
        _ => s.push_str(
            "  failed requests:  not computed (give --job or --rate-query; from the store, --request-rate)\n",
        ),
    }
    if let Some(n) = r.failed_probes {
        s.push_str(&format!("  failed probes:    {n}\n"));
    }
    s.push_str(&format!(
        "  error budget:     {} consumed of {} ({} over {}), {} left\n",
        human::pct(r.error_budget_consumed_ratio),
        human::secs(r.error_budget_seconds),
        human::pct(r.slo),
        human::secs(r.slo_window_seconds),
        if r.error_budget_remaining_seconds >= 0.0 {
            human::secs(r.error_budget_remaining_seconds)
        } else {
            format!(
                "overspent by {}",
                human::secs(-r.error_budget_remaining_seconds)
            )
        }
    ));
    s
}

/// Options of the Markdown report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkdownOptions {
    /// The incident's title (`--title`).
    pub title: String,
    /// When the incident started (`--incident-start`), RFC 3339.
    pub incident_start: Option<String>,
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The runbook's RESOLVED message, filled in (`--report FILE.md`).
pub fn markdown(r: &VerifyReport, o: &MarkdownOptions) -> String {
    let mut s = String::new();
    let passed = r.passed();
    if passed {
        let _ = writeln!(s, "## RESOLVED: {}", o.title);
    } else {
        let _ = writeln!(s, "## NOT RESOLVED: {} (verification failed)", o.title);
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "**Status:** {} — `watchfire verify` watched {} target{} for {} ({} → {}): **{}**{}",
        if passed { "RESOLVED" } else { "still failing" },
        r.targets.len(),
        if r.targets.len() == 1 { "" } else { "s" },
        human::secs(r.elapsed_seconds),
        r.started_at,
        r.ended_at,
        r.verdict,
        if r.failed_checks.is_empty() {
            String::new()
        } else {
            format!(" (failed: {})", r.failed_checks.join(", "))
        }
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| | |");
    let _ = writeln!(s, "| --- | --- |");
    md_incident(&mut s, r, o);
    md_checks(&mut s, r);
    md_targets(&mut s, r);
    if let Some(m) = &r.memory {
        let _ = writeln!(s);
        let _ = writeln!(s, "### Memory");
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} readings from {}: max {} of the limit, trend {}.",
            m.samples,
            md_escape(&m.source),
            m.max_ratio.map_or_else(|| "- (no limit)".into(), pct),
            m.growth_ratio
                .map_or_else(|| "-".into(), |g| format!("{:+.2}%", g * 100.0))
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "_Generated by watchfire {} (`watchfire verify`)._",
        r.watchfire_version
    );
    s
}

/// The incident rows of the Markdown summary table: its duration and its impact.
fn md_incident(s: &mut String, r: &VerifyReport, o: &MarkdownOptions) {
    match &o.incident_start {
        Some(start) => {
            // The incident lasted until the fix, i.e. until verification started.
            let length = humantime::parse_rfc3339(start)
                .ok()
                .zip(humantime::parse_rfc3339(&r.started_at).ok())
                .and_then(|(a, b)| b.duration_since(a).ok())
                .map_or_else(String::new, |d| format!("{} ", human::dur(d)));
            let _ = writeln!(
                s,
                "| Duration | {length}({start} → {}, fix verified from then on) |",
                r.started_at
            );
        }
        None => {
            let _ = writeln!(s, "| Duration | not given (`--incident-start`) |");
        }
    }
    match &r.impact {
        Some(i) => {
            let _ = writeln!(
                s,
                "| Downtime | {} in {} outage{} (from `{}`) |",
                human::secs(i.downtime_seconds),
                i.outages.len(),
                if i.outages.len() == 1 { "" } else { "s" },
                md_escape(&i.up_query)
            );
            let failed = match (i.failed_requests, i.request_rate_before) {
                (Some(f), Some(rate)) => format!(
                    "≈ {} ({} req/s before the outage × downtime)",
                    human::count(f),
                    human::count(rate)
                ),
                (Some(f), None) => human::count(f),
                _ => "not computed (no request-rate query)".to_string(),
            };
            let _ = writeln!(s, "| Failed requests | {failed} |");
            let _ = writeln!(
                s,
                "| Error budget | {} of {} consumed (SLO {} over {}) |",
                pct(i.error_budget_consumed_ratio),
                human::secs(i.error_budget_seconds),
                pct(i.slo),
                human::secs(i.slo_window_seconds)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| Downtime during verification | {} |",
                human::secs(r.downtime_seconds)
            );
        }
    }
}

/// The Markdown table of the checks.
fn md_checks(s: &mut String, r: &VerifyReport) {
    let _ = writeln!(s);
    let _ = writeln!(s, "### Verification");
    let _ = writeln!(s);
    let _ = writeln!(s, "| Check | Result | Figures |");
    let _ = writeln!(s, "| --- | --- | --- |");
    for c in &r.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            c.name,
            status_word(&c.status),
            md_escape(&c.summary)
        );
    }
}

/// The Markdown latency and error-rate tables, a row per target.
fn md_targets(s: &mut String, r: &VerifyReport) {
    let _ = writeln!(s);
    let _ = writeln!(s, "### Latency");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| Target | Answers | p50 | p90 | p99 | max | p99 bound |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    for t in &r.targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md_escape(&t.name),
            t.answered,
            opt_secs(t.p50_seconds),
            opt_secs(t.p90_seconds),
            opt_secs(t.p99_seconds),
            opt_secs(t.max_seconds),
            t.p99_limit_seconds
                .map_or_else(|| "-".to_string(), human::secs)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "### Error rate");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| Target | Probes | Failed | Error rate | Failures | Downtime |"
    );
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for t in &r.targets {
        let reasons = if t.failures_by_reason.is_empty() {
            "-".to_string()
        } else {
            t.failures_by_reason
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            md_escape(&t.name),
            t.probes,
            t.failures,
            t.error_rate.map_or_else(|| "-".into(), pct),
            reasons,
            human::secs(t.downtime_seconds)
        );
    }
}

/// Whether a check status counts as failed in the report.
pub fn is_failed(c: &Check) -> bool {
    c.status == Status::Fail
}
