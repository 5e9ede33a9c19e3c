//! watchfire's own series: the per-target families, the fleet aggregates and the process-wide
//! families.
//!
//! Per-target series are written straight from each target's compact [`TargetStats`] at scrape
//! time — no registry object per target or per probe. Each target is locked once per scrape to
//! take a snapshot of what its detail level ([`Detail`]) exports, and to add it to its
//! aggregate when `metrics.aggregate_by` is set; the families are then written from the
//! snapshots through [`crate::expo::Writer`], under the names of [`crate::expo::catalog`]. The
//! process's own metrics come from a `prometheus::Registry` passed in by the caller.
//!
//! # Detail levels (`metrics.detail`, per target `targets[i].metrics.detail`)
//!
//! - `minimal`: `watchfire_target_up` and `watchfire_probes_total` (success, and each failure
//!   reason that happened).
//! - `standard` (default): minimal and the duration histogram over [`STANDARD_BUCKETS`]: 9
//!   series for a healthy target (so 10,000 healthy targets stay under 100,000 samples a scrape
//!   with the process-wide families).
//! - `full`: every per-target family (`watchfire_probe_success` among them), the duration
//!   histogram over the full [`DURATION_BUCKETS`].

mod aggregate;
mod targets;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::metrics::{Detail, MetricsConfig};
use crate::expo::catalog::*;
use crate::expo::Writer;
use crate::record::{TargetStats, DURATION_BUCKETS, LAG_BUCKETS};
use crate::runtime::Runtime;

// blackbox::Output still escapes through this path; it goes once /probe renders through
// expo::Families.
pub use crate::expo::escape_label;
pub use targets::{coarse, QUANTILES, STANDARD_BUCKETS};

/// Schema of the exported native duration histograms: 2^(1/8), about 9 % per bucket.
pub const NATIVE_SCHEMA: i8 = 3;

/// One target as the renderer sees it: its name, labels, component and recorded state.
#[derive(Debug, Clone, Copy)]
pub struct TargetView<'a> {
    /// The `target` label.
    pub name: &'a str,
    /// The target's own labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its component ([`crate::incident::component_of`]), for `aggregate_by: [component]`.
    pub component: &'a str,
    /// What was recorded about it.
    pub stats: &'a Mutex<TargetStats>,
    /// In a cluster, the id of the member that probes it: the label
    /// [`crate::cluster::PROBER_LABEL`], so Prometheus tells replicas apart. `None` outside a
    /// cluster (no label).
    pub prober: Option<&'a str>,
}

/// Renders the per-target families, the aggregates and watchfire's process-wide families (not
/// the build info: see [`render_build_info`]).
pub fn render(rt: &Runtime, w: &mut Writer<'_>) {
    let config = rt.config();
    let all = rt.targets();
    let groups: Vec<&str> = config.failover.iter().map(|g| g.name.as_str()).collect();
    let components: Vec<String> = if config.metrics.aggregate_by.iter().any(|l| l == "component") {
        all.iter()
            .map(|t| crate::incident::component_of(&t.spec.name, &t.spec.labels, &groups))
            .collect()
    } else {
        Vec::new()
    };
    let prober = rt.cluster().map(|c| c.options().id.as_str());
    let views = all.iter().enumerate().map(|(i, t)| TargetView {
        prober,
        name: &t.spec.name,
        labels: &t.spec.labels,
        component: components.get(i).map(String::as_str).unwrap_or(""),
        stats: &t.stats,
    });
    render_targets(w, views, &config.metrics, SystemTime::now());
    render_process(w, rt, all.len());
}

/// Renders the per-target families and the aggregates of `targets` as `cfg` says, `now` being
/// the wall-clock time failing targets are judged at.
pub fn render_targets<'a>(
    w: &mut Writer<'_>,
    targets: impl Iterator<Item = TargetView<'a>>,
    cfg: &MetricsConfig,
    now: SystemTime,
) {
    let native = w.wants_native();
    let mut agg = aggregate::Aggregates::new(cfg, native);
    let mut snaps = Vec::new();
    for t in targets {
        let stats = t.stats.lock().expect("stats lock poisoned");
        agg.add(&t, &stats);
        let detail = cfg.detail_of(t.name);
        if !cfg.failing_only() || targets::failing(&stats, cfg.failing_hold, now) {
            snaps.push(targets::snap(&t, &stats, detail, native));
        }
    }
    w.reserve(snaps.len() * 600);
    targets::render(w, &snaps);
    agg.render(w);
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Targets, probes in flight, reloads, and the schedule lag and skipped ticks over all probes.
fn render_process(w: &mut Writer, rt: &Runtime, targets: usize) {
    let reload = rt.reload_status();
    w.header(&TARGETS);
    w.sample(&TARGETS, &[], targets);
    w.header(&IN_FLIGHT);
    w.sample(&IN_FLIGHT, &[], rt.in_flight());
    w.header(&MAX_IN_FLIGHT);
    w.sample(&MAX_IN_FLIGHT, &[], rt.max_in_flight());
    w.header(&LOCAL_ERRORS);
    w.sample(&LOCAL_ERRORS, &[], rt.local_errors());
    w.header(&RELOAD_OK);
    w.sample(&RELOAD_OK, &[], reload.ok);
    w.header(&RELOAD_TIME);
    w.sample(&RELOAD_TIME, &[], unix(reload.last_success));
    w.header(&RELOADS);
    w.sample(&RELOADS, &[("result", "success")], reload.successes);
    w.sample(&RELOADS, &[("result", "failure")], reload.failures);
    render_sd(w, rt);
    w.header(&TICKS_SKIPPED);
    w.sample(&TICKS_SKIPPED, &[], rt.ticks_skipped());
    w.header(&LAG);
    for (i, b) in rt.lane_lag_buckets().iter().enumerate() {
        let set = crate::expo::LabelSet::of(&[("thread", &i.to_string())]);
        w.histogram(&LAG, &set, &LAG_BUCKETS, &b.counts, b.sum);
    }
}

/// The HTTP SD endpoints' targets, failures (every reason, so a first failure is an
/// increase) and last good answer.
fn render_sd(w: &mut Writer, rt: &Runtime) {
    let status = rt.sd_status();
    if status.is_empty() {
        return;
    }
    w.header(&SD_TARGETS);
    for (url, s) in &status {
        w.sample(&SD_TARGETS, &[("sd", "http"), ("url", url)], s.targets);
    }
    w.header(&SD_REFRESH_FAILURES);
    for (url, s) in &status {
        for r in crate::runtime::http_sd::FailReason::ALL {
            let n = s.failures.get(&r).copied().unwrap_or(0);
            let labels = [("sd", "http"), ("url", url), ("reason", r.as_str())];
            w.sample(&SD_REFRESH_FAILURES, &labels, n);
        }
    }
    w.header(&SD_LAST_SUCCESS);
    for (url, s) in &status {
        let t = s.last_success.map(unix).unwrap_or(0.0);
        w.sample(&SD_LAST_SUCCESS, &[("sd", "http"), ("url", url)], t);
    }
}

/// Renders `watchfire_build_info`.
pub fn render_build_info(w: &mut Writer<'_>) {
    w.header(&BUILD_INFO);
    w.sample(&BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1u8);
}

/// Writes the registry's families (process metrics and any others) through `w`, in whichever
/// format it writes: counters, gauges and untyped samples as they are, summaries and histograms
/// (buckets made non-cumulative, `+Inf` from the count) through the writer's own calls.
pub fn render_registry(registry: &prometheus::Registry, w: &mut crate::expo::Writer<'_>) {
    use crate::expo::Type;
    use prometheus::proto::MetricType;
    let families = registry.gather();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for mf in &families {
        let kind = match mf.get_field_type() {
            MetricType::COUNTER => Type::Counter,
            MetricType::GAUGE => Type::Gauge,
            MetricType::SUMMARY => Type::Summary,
            MetricType::HISTOGRAM => Type::Histogram,
            MetricType::UNTYPED => Type::Untyped,
        };
        let name = mf.name();
        w.header_parts(name, mf.help(), kind);
        for m in mf.get_metric() {
            pairs.clear();
            pairs.extend(m.get_label().iter().map(|l| (l.name(), l.value())));
            match kind {
                Type::Counter => w.sample_parts(name, &pairs, m.get_counter().get_value()),
                Type::Gauge => w.sample_parts(name, &pairs, m.get_gauge().get_value()),
                Type::Untyped => w.sample_parts(name, &pairs, untyped_value(m)),
                Type::Summary => {
                    let s = m.get_summary();
                    let qs: Vec<(f64, f64)> = s
                        .get_quantile()
                        .iter()
                        .map(|q| (q.quantile(), q.value()))
                        .collect();
                    let set = crate::expo::LabelSet::of(&pairs);
                    w.summary_parts(name, &set, &qs, s.sample_sum(), s.sample_count());
                }
                Type::Histogram => {
                    let h = m.get_histogram();
                    let mut bounds = Vec::new();
                    let mut counts = Vec::new();
                    let mut prev = 0u64;
                    for b in h.get_bucket() {
                        if b.upper_bound().is_infinite() {
                            break;
                        }
                        bounds.push(b.upper_bound());
                        counts.push(b.cumulative_count().saturating_sub(prev));
                        prev = b.cumulative_count();
                    }
                    counts.push(h.get_sample_count().saturating_sub(prev));
                    let set = crate::expo::LabelSet::of(&pairs);
                    w.histogram_parts(name, &set, &bounds, &counts, h.get_sample_sum());
                }
            }
        }
    }
}

/// The value of an untyped sample (the registry's model marks untyped as protobuf-specific, and
/// this is the protobuf-shaped walk of it).
#[allow(deprecated)]
fn untyped_value(m: &prometheus::proto::Metric) -> f64 {
    m.get_untyped().get_value()
}

/// A registry with the process collector (CPU, memory, file descriptors) registered.
pub fn process_registry() -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    #[cfg(target_os = "linux")]
    {
        let pc = prometheus::process_collector::ProcessCollector::for_self();
        let _ = registry.register(Box::new(pc));
    }
    registry
}

/// The bounds the duration histogram is written with at `detail`.
pub fn duration_bounds(detail: Detail) -> &'static [f64] {
    match detail {
        Detail::Full => &DURATION_BUCKETS,
        Detail::Minimal | Detail::Standard => &STANDARD_BUCKETS,
    }
}

/// Quantile `q` of a histogram over `bounds` (non-cumulative `counts`, `+Inf` last), linear
/// within the bucket it falls in, as Prometheus's `histogram_quantile` estimates it (the highest
/// finite bound when it falls in `+Inf`); `None` when empty.
pub fn bucket_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 && (below + c) as f64 >= rank {
            let Some(&hi) = bounds.get(i) else {
                return bounds.last().copied();
            };
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            return Some(lo + (hi - lo) * (rank - below as f64) / c as f64);
        }
        below += c;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests;
