//! From flags to a ready window: targets (URLs or config names), p99 bounds (`--max-p99`, a
//! baseline file, a pre-incident window in Prometheus), the memory source, the incident impact.
//! Everything that can be wrong with the input is found here, before the window starts, and is
//! a [`VerifyError`] (exit 2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::adhoc::{AdhocProbe, OneProber, DEFAULT_CONFIG};
use crate::blackbox::config::Modules;
use crate::config::{self, Check, TargetSpec, MIN_INTERVAL};
use crate::state::Thresholds;

use super::checks::{self, Criteria, LatencyBound, MemoryCriteria, TargetTally};
use super::human::{self, dur};
use super::impact::{self, ImpactSpec};
use super::memory::{Cgroup, MemorySource};
use super::parse::parse_target;
use super::prom::{self, Prom};
use super::report::{self, ImpactReport, MemoryReport, VerifyReport, SCHEMA_VERSION};
use super::run::{self, Collected};
use super::{ImpactQueryArgs, VerifyArgs, VerifyError};

/// The default pre-incident baseline query: p99 of watchfire's own probe-duration histogram,
/// from the native histogram when Prometheus stores one (fine-grained: 2^(1/8) buckets), else
/// from the classic buckets (the `or` takes the right side only when the left is empty). With
/// `metrics.detail: standard` the classic buckets are 10/100/500 ms and 1 s, so a classic
/// baseline is an interpolation within one of them; `--baseline FILE` or native histograms give
/// a tighter one.
pub const DEFAULT_BASELINE_QUERY: &str = "histogram_quantile(0.99, sum(rate(watchfire_probe_duration_seconds{target=\"$target\"}[$range]))) or histogram_quantile(0.99, sum by (le) (rate(watchfire_probe_duration_seconds_bucket{target=\"$target\"}[$range])))";

/// Default cap on the body a verify probe reads.
const BODY_LIMIT: u64 = 1024 * 1024;

/// A window ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// For [`run::collect`].
    pub setup: PreparedSetup,
    /// One empty tally per target.
    pub tallies: Vec<TargetTally>,
    /// The incident's impact, computed before the window (`--incident-start`).
    pub impact: Option<ImpactReport>,
    /// `--incident-start`, resolved, RFC 3339.
    pub incident_start: Option<String>,
}

/// The run setup and the criteria the verdict uses.
#[derive(Debug)]
pub struct PreparedSetup {
    /// The window's setup.
    pub run: run::Setup,
    /// The checks' bounds.
    pub criteria: Criteria,
}

fn usage(msg: impl Into<String>) -> VerifyError {
    VerifyError::Usage(msg.into())
}

/// The name a `--target` URL goes by: the URL, prefixed by the method unless GET.
pub fn url_target_name(method: &str, url: &str) -> String {
    if method.eq_ignore_ascii_case("GET") {
        url.to_string()
    } else {
        format!("{} {url}", method.to_ascii_uppercase())
    }
}

/// The targets to probe (native HTTP checks and module targets), the names of those taken from a
/// config (for Prometheus queries), and the config's modules (which module targets probe with).
pub fn target_specs(
    a: &VerifyArgs,
) -> Result<(Vec<TargetSpec>, Vec<String>, Modules), VerifyError> {
    let mut specs = Vec::new();
    let mut modules = Modules::default();
    for t in &a.targets {
        let parsed = parse_target(t).map_err(|e| usage(format!("--target {e}")))?;
        let body = parsed.body.or_else(|| a.json_body.clone());
        let method = parsed
            .method
            .or_else(|| a.method.clone())
            .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_string());
        let probe = AdhocProbe {
            url: parsed.url.clone(),
            method: method.clone(),
            headers: a.headers.clone(),
            body: None,
            json: body,
            timeout: a.timeout,
            expect_status: a.expect_status.clone(),
            expect_json: Vec::new(),
            expect_body: None,
            max_latency: None,
            insecure: a.insecure,
            ca_file: None,
            body_limit: BODY_LIMIT,
        };
        let mut spec = probe
            .target_spec()
            .map_err(|e| usage(format!("--target: {e}")))?;
        spec.name = url_target_name(&method, spec.target_text());
        spec.interval = a.interval;
        specs.push(spec);
    }
    let mut config_names = Vec::new();
    if a.config.is_some() || !a.names.is_empty() {
        let path = a.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
        let cfg = config::load(&path).map_err(|errors| VerifyError::Config {
            path: path.clone(),
            errors,
        })?;
        let chosen: Vec<Arc<TargetSpec>> = if a.names.is_empty() {
            cfg.targets.clone()
        } else {
            let mut v = Vec::new();
            for n in &a.names {
                match cfg.targets.iter().find(|t| &t.name == n) {
                    Some(t) => v.push(t.clone()),
                    None => {
                        let known: Vec<&str> =
                            cfg.targets.iter().map(|t| t.name.as_str()).collect();
                        return Err(usage(format!(
                            "--name {n}: no such target in {} (it has: {})",
                            path.display(),
                            known.join(", ")
                        )));
                    }
                }
            }
            v
        };
        if chosen.is_empty() {
            return Err(usage(format!("{} has no targets", path.display())));
        }
        modules = cfg.modules.clone();
        for t in chosen {
            let mut spec = (*t).clone();
            spec.interval = a.interval;
            spec.jitter = Duration::ZERO;
            config_names.push(spec.name.clone());
            specs.push(spec);
        }
    }
    if specs.is_empty() {
        return Err(usage(
            "nothing to verify: give --target URL (repeatable) or --name NAME (from --config, default probes/)",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for s in &specs {
        if !seen.insert(s.name.clone()) {
            return Err(usage(format!("target `{}` is given twice", s.name)));
        }
    }
    Ok((specs, config_names, modules))
}

/// How a target's probe is described beside its target in the report: the HTTP method of a
/// native check, `module:NAME` for a module target.
fn probe_word(spec: &TargetSpec) -> String {
    match &spec.check {
        Check::Http(h) => h.method.as_str().to_string(),
        Check::Module { module, .. } => format!("module:{module}"),
    }
}

/// Reads each target's p99 from an earlier verify report.
pub fn baseline_file(
    path: &std::path::Path,
    names: &[String],
) -> Result<HashMap<String, f64>, VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Io {
        what: "--baseline",
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |message: String| VerifyError::Baseline {
        path: path.to_path_buf(),
        message,
    };
    let doc: VerifyReport = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "not a verify report written by `watchfire verify --json` ({e})"
        ))
    })?;
    if doc.schema_version != SCHEMA_VERSION {
        return Err(bad(format!(
            "schema_version {} is not {SCHEMA_VERSION}, the one this watchfire reads",
            doc.schema_version
        )));
    }
    if !doc.passed() {
        eprintln!(
            "watchfire: warning: the baseline {} comes from a FAIL run",
            path.display()
        );
    }
    let mut out = HashMap::new();
    for n in names {
        let t = doc.targets.iter().find(|t| &t.name == n).ok_or_else(|| {
            let have: Vec<&str> = doc.targets.iter().map(|t| t.name.as_str()).collect();
            bad(format!("no target `{n}` (it has: {})", have.join(", ")))
        })?;
        let p99 = t
            .p99_seconds
            .ok_or_else(|| bad(format!("target `{n}` has no p99 (it never answered)")))?;
        out.insert(n.clone(), p99);
    }
    Ok(out)
}

/// The bound from a baseline p99: × factor, but at least + slack.
pub fn baseline_bound(p99: f64, factor: f64, slack: Duration, origin: &str) -> LatencyBound {
    let base = Duration::from_secs_f64(p99.max(0.0));
    let limit = base.mul_f64(factor).max(base + slack);
    let floor = if slack.is_zero() {
        String::new()
    } else {
        format!(", at least +{}", dur(slack))
    };
    LatencyBound {
        limit,
        source: format!("baseline {} × {factor}{floor}, from {origin}", dur(base)),
    }
}

/// The impact queries from the flags; `targets` are watchfire target names.
pub fn impact_spec(
    q: &ImpactQueryArgs,
    targets: &[String],
    from: SystemTime,
    to: SystemTime,
) -> Result<ImpactSpec, VerifyError> {
    if !(q.slo > 0.0 && q.slo < 1.0) {
        return Err(usage(format!(
            "--slo {}: an SLO is between 0% and 100%, exclusive",
            human::pct(q.slo)
        )));
    }
    if q.step.is_zero() || q.rate_window.is_zero() || q.slo_window.is_zero() {
        return Err(usage(
            "--step, --rate-window and --slo-window must be above zero",
        ));
    }
    let job = q.job.clone().unwrap_or_default();
    let window = format!("{}s", q.rate_window.as_secs().max(1));
    let vars = [("job", job.as_str()), ("window", window.as_str())];
    let up_query = if let Some(u) = &q.up_query {
        prom::fill(u, &vars)
    } else if let Some(j) = &q.job {
        format!("min(up{{job{}}})", prom::matcher(std::slice::from_ref(j)))
    } else if !targets.is_empty() {
        format!(
            "min(watchfire_target_up{{target{}}})",
            prom::matcher(targets)
        )
    } else {
        return Err(usage(
            "impact needs the up/down series: give --job JOB (up{job=...}), a watchfire target \
             (--target NAME for impact, --name NAME for verify) or --up-query",
        ));
    };
    let rate_query = if let Some(r) = &q.rate_query {
        Some(prom::fill(r, &vars))
    } else {
        q.job.as_ref().map(|j| {
            format!(
                "sum(rate({}{{job{}}}[{window}]))",
                q.request_metric,
                prom::matcher(std::slice::from_ref(j))
            )
        })
    };
    Ok(ImpactSpec {
        up_query,
        rate_query,
        from,
        to,
        step: q.step,
        slo: q.slo,
        slo_window: q.slo_window,
    })
}

/// The Prometheus memory query: `--memory-query`, or cAdvisor's ratio for `--memory-container`.
fn prom_memory_query(a: &VerifyArgs) -> Option<String> {
    if let Some(q) = &a.mem.memory_query {
        return Some(q.clone());
    }
    a.mem.memory_container.as_ref().map(|c| {
        let m = prom::matcher(std::slice::from_ref(c));
        format!(
            "max(container_memory_usage_bytes{{container{m}}} / container_spec_memory_limit_bytes{{container{m}}})"
        )
    })
}

fn need_prom<'a>(prom: Option<&'a Prom>, flag: &str) -> Result<&'a Prom, VerifyError> {
    prom.ok_or_else(|| usage(format!("{flag} needs --prometheus URL")))
}

/// Each target's p99 bound: `--max-p99`, a baseline (file or Prometheus), the stricter wins.
async fn latency_bounds(
    a: &VerifyArgs,
    names: &[String],
    prom: Option<&Prom>,
    incident_start: Option<SystemTime>,
    now: SystemTime,
) -> Result<Vec<Option<LatencyBound>>, VerifyError> {
    let mut bounds: Vec<Option<LatencyBound>> = names
        .iter()
        .map(|_| {
            a.max_p99.map(|limit| LatencyBound {
                limit,
                source: "--max-p99".into(),
            })
        })
        .collect();
    let mut baselines: Option<(HashMap<String, f64>, String)> = None;
    if let Some(path) = &a.base.baseline {
        baselines = Some((baseline_file(path, names)?, path.display().to_string()));
    }
    if let Some(from) = a.base.baseline_from {
        if baselines.is_some() {
            return Err(usage("give --baseline FILE or --baseline-from, not both"));
        }
        let p = need_prom(prom, "--baseline-from")?;
        let from = from.resolve(now);
        let to = match (a.base.baseline_to, incident_start) {
            (Some(t), _) => t.resolve(now),
            (None, Some(t)) => t,
            (None, None) => {
                return Err(usage(
                    "--baseline-from needs an end: --baseline-to TIME or --incident-start TIME",
                ))
            }
        };
        let (from, to) = impact::check_range(from, to, now)?;
        let range = format!(
            "{}s",
            to.duration_since(from)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                .max(1)
        );
        let mut got = HashMap::new();
        for n in names {
            let q = prom::fill(&a.base.baseline_query, &[("target", n), ("range", &range)]);
            got.insert(n.clone(), p.query_value(&q, to).await?);
        }
        baselines = Some((
            got,
            format!("Prometheus {} → {}", human::time(from), human::time(to)),
        ));
    } else if a.base.baseline_to.is_some() {
        return Err(usage("--baseline-to needs --baseline-from"));
    }
    if let Some((map, origin)) = &baselines {
        for (n, b) in names.iter().zip(bounds.iter_mut()) {
            if let Some(&p99) = map.get(n) {
                let from_base =
                    baseline_bound(p99, a.base.baseline_factor, a.base.baseline_slack, origin);
                if b.as_ref().is_none_or(|m| from_base.limit < m.limit) {
                    *b = Some(from_base);
                }
            }
        }
    }
    Ok(bounds)
}

/// The memory source, read once to prove it works.
async fn memory_source(
    a: &VerifyArgs,
    prom: Option<&Prom>,
    now: SystemTime,
) -> Result<Option<MemorySource>, VerifyError> {
    Ok(if let Some(dir) = &a.mem.memory_cgroup {
        Some(MemorySource::Cgroup(
            Cgroup::open(dir).map_err(VerifyError::Memory)?,
        ))
    } else if let Some(query) = prom_memory_query(a) {
        let p = need_prom(prom, "--memory-container / --memory-query")?;
        p.query_value(&query, now).await?;
        Some(MemorySource::Prometheus {
            prom: p.clone(),
            query,
        })
    } else {
        None
    })
}

/// The output paths, interval and window checked, and the window's criteria (without memory).
fn window_criteria(a: &VerifyArgs) -> Result<Criteria, VerifyError> {
    // Found now rather than after a ten-minute window.
    for (flag, path) in [("--json", &a.json), ("--report", &a.report)] {
        if let Some(p) = path {
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return Err(usage(format!(
                    "{flag} {}: the directory {} does not exist",
                    p.display(),
                    dir.display()
                )));
            }
        }
    }
    if a.interval < MIN_INTERVAL {
        return Err(usage(format!(
            "--interval {} is below the minimum of {}",
            dur(a.interval),
            dur(MIN_INTERVAL)
        )));
    }
    if a.window < a.interval {
        return Err(usage(format!(
            "--for {} is shorter than --interval {}",
            dur(a.window),
            dur(a.interval)
        )));
    }
    let criteria = Criteria {
        window: a.window,
        interval: a.interval,
        max_error_rate: a.max_error_rate,
        max_flaps: a.max_flaps,
        min_probes: a.min_probes,
        memory: None,
    };
    if criteria.max_probes() < a.min_probes {
        return Err(usage(format!(
            "--for {} at --interval {} allows at most {} probes per target, fewer than the {} a \
             verdict needs (--min-probes): lengthen --for or shorten --interval",
            dur(a.window),
            dur(a.interval),
            criteria.max_probes(),
            a.min_probes
        )));
    }
    Ok(criteria)
}

/// Checks the flags, loads what they point at, asks Prometheus what is needed up front.
pub async fn prepare(a: &VerifyArgs, now: SystemTime) -> Result<Prepared, VerifyError> {
    let (specs, config_names, modules) = target_specs(a)?;
    let criteria = window_criteria(a)?;
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let prom = a.prom.prometheus.as_deref().map(Prom::new).transpose()?;

    let incident_start = a.prom.incident_start.map(|t| t.resolve(now));
    let bounds = latency_bounds(a, &names, prom.as_ref(), incident_start, now).await?;
    let memory = memory_source(a, prom.as_ref(), now).await?;
    let criteria = Criteria {
        memory: memory.as_ref().map(|_| MemoryCriteria {
            max_ratio: a.mem.max_memory,
            max_growth: a.mem.max_memory_growth,
        }),
        ..criteria
    };
    if a.mem.memory_interval < MIN_INTERVAL && memory.is_some() {
        return Err(usage("--memory-interval is below 10ms"));
    }

    let impact = match incident_start {
        Some(start) => {
            let p = need_prom(prom.as_ref(), "--incident-start")?;
            let (from, to) = impact::check_range(start, now, now)?;
            let spec = impact_spec(&a.prom.impact, &config_names, from, to)?;
            Some(impact::compute(p, &spec).await?)
        }
        None => None,
    };

    let mut probers = Vec::with_capacity(specs.len());
    let mut tallies = Vec::with_capacity(specs.len());
    for (spec, bound) in specs.into_iter().zip(bounds) {
        let thresholds = Thresholds {
            down_after: spec.down_after,
            up_after: spec.up_after,
        };
        tallies.push(TargetTally::new(
            spec.name.clone(),
            spec.target_text(),
            probe_word(&spec),
            thresholds,
            bound,
        ));
        let prober = OneProber::new(&spec, &modules)
            .map_err(|e| usage(format!("target `{}`: {e}", spec.name)))?;
        probers.push(Arc::new(prober));
    }
    Ok(Prepared {
        setup: PreparedSetup {
            run: run::Setup {
                probers,
                criteria: criteria.clone(),
                memory: memory.map(|m| (m, a.mem.memory_interval)),
                fail_fast: a.fail_fast,
                progress_every: a.progress_interval,
            },
            criteria,
        },
        tallies,
        impact,
        incident_start: incident_start.map(human::time),
    })
}

/// The final verdict and its report.
pub fn report(c: &Criteria, col: Collected, impact: Option<ImpactReport>) -> VerifyReport {
    let checks = checks::judge(&col.targets, col.memory.as_ref(), c, &col.stage);
    let pass = checks::passed(&checks, &col.stage);
    let elapsed = col.stage.elapsed;
    let targets: Vec<_> = col
        .targets
        .iter()
        .map(|t| report::target_report(t, elapsed))
        .collect();
    let memory = col.memory.as_ref().map(|m| {
        let last = m.samples.last();
        MemoryReport {
            source: m.source.clone(),
            samples: m.samples.len() as u64,
            errors: m.errors,
            last_used: last.map(|s| s.used),
            limit: last.and_then(|s| s.limit),
            last_ratio: last.and_then(|s| s.ratio()),
            max_ratio: m.max_ratio(),
            growth_ratio: m.growth(),
        }
    });
    VerifyReport {
        schema_version: SCHEMA_VERSION,
        watchfire_version: env!("CARGO_PKG_VERSION").to_string(),
        verdict: if pass { "PASS" } else { "FAIL" }.to_string(),
        started_at: human::time(col.started_at),
        ended_at: human::time(col.ended_at),
        window_seconds: c.window.as_secs_f64(),
        elapsed_seconds: elapsed.as_secs_f64(),
        interval_seconds: c.interval.as_secs_f64(),
        stopped_early: col.stage.stopped.map(|s| s.as_str().to_string()),
        stopped_by: col.decided_by.map(|c| c.as_str().to_string()),
        failed_checks: checks
            .iter()
            .filter(|c| report::is_failed(c))
            .map(|c| c.name.as_str().to_string())
            .collect(),
        checks: checks.iter().map(report::CheckReport::from).collect(),
        downtime_seconds: targets.iter().map(|t| t.downtime_seconds).sum(),
        targets,
        memory,
        impact,
    }
}
