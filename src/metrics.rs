//! watchfire's own series: the per-target families and the process-wide gauges.
//!
//! Per-target series are written straight from each target's compact [`TargetStats`] at scrape
//! time — no registry object per target or per probe. Each target is locked once per scrape to
//! take a snapshot; the families are then written from the snapshots through
//! [`crate::expo::Writer`], under the names of [`crate::expo::catalog`]. The process's own
//! metrics come from a `prometheus::Registry` passed in by the caller.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::expo::catalog::*;
use crate::expo::{LabelSet, Writer};
use crate::probe::{Phases, Reason};
use crate::record::{TargetStats, DURATION_BUCKETS, LAG_BUCKETS};
use crate::runtime::Runtime;
use crate::state::Health;

// blackbox::Output still escapes through this path; it goes once /probe renders through
// expo::Families.
pub use crate::expo::escape_label;

/// Quantiles exported from the HDR histograms.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.99, "0.99"),
    (0.999, "0.999"),
    (1.0, "1"),
];

/// What one scrape needs of a target, copied under its lock.
struct Snap {
    labels: LabelSet,
    health: Health,
    ok: bool,
    probes: u64,
    successes: u64,
    failures: [u64; Reason::ALL.len()],
    skipped: u64,
    up: u64,
    down: u64,
    duration: crate::record::Buckets<16>,
    lag: crate::record::Buckets<13>,
    q_send: [Option<Duration>; QUANTILES.len()],
    q_planned: [Option<Duration>; QUANTILES.len()],
    last_duration: Duration,
    last_phases: Phases,
    last_status: u16,
    last_body: u64,
    last_at: Option<SystemTime>,
    last_transition: Option<SystemTime>,
    /// The duration histogram in native form, when the format carries it.
    native: Option<crate::expo::Native>,
}

/// Schema of the exported native duration histograms: 2^(1/8), about 9 % per bucket.
pub const NATIVE_SCHEMA: i8 = 3;

fn snap(labels: LabelSet, s: &TargetStats, native: bool) -> Snap {
    let mut q_send = [None; QUANTILES.len()];
    let mut q_planned = [None; QUANTILES.len()];
    for (i, (q, _)) in QUANTILES.iter().enumerate() {
        q_send[i] = s.latency.quantile(*q);
        q_planned[i] = s.latency_planned.quantile(*q);
    }
    Snap {
        labels,
        health: s.state.health,
        ok: s.last.ok,
        probes: s.probes(),
        successes: s.successes,
        failures: s.failures,
        skipped: s.skipped,
        up: s.transitions_up,
        down: s.transitions_down,
        duration: s.duration.clone(),
        lag: s.lag.clone(),
        q_send,
        q_planned,
        last_duration: s.last.duration,
        last_phases: s.last.phases,
        last_status: s.last.status,
        last_body: s.last.body_bytes,
        last_at: s.last.at,
        last_transition: s.last_transition,
        native: native.then(|| s.latency.to_native(NATIVE_SCHEMA, s.duration.sum)),
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The label set of a target: `target` and its configured labels, escaped once per scrape.
fn target_labels(name: &str, labels: &std::collections::BTreeMap<String, String>) -> LabelSet {
    let mut set = LabelSet::with_capacity(64);
    set.push("target", name);
    for (k, v) in labels {
        set.push(k, v);
    }
    set
}

/// Renders the per-target families and watchfire's process-wide gauges (not the build info:
/// see [`render_build_info`]).
pub fn render(rt: &Runtime, w: &mut crate::expo::Writer<'_>) {
    let targets = rt.targets();
    let mut snaps = Vec::with_capacity(targets.len());
    for t in targets.iter() {
        let labels = target_labels(&t.spec.name, &t.spec.labels);
        let stats = t.stats.lock().expect("stats lock poisoned");
        snaps.push(snap(labels, &stats, w.wants_native()));
    }
    w.reserve(snaps.len() * 3000);
    render_health(w, &snaps);
    render_distributions(w, &snaps);
    render_last(w, &snaps);
    render_process(w, rt, snaps.len());
}

/// Success, health, state, probe and transition counters.
fn render_health(w: &mut Writer, snaps: &[Snap]) {
    w.header(&PROBE_SUCCESS);
    for s in snaps.iter().filter(|s| s.probes > 0) {
        w.sample_in(&PROBE_SUCCESS, &s.labels, &[], s.ok);
    }
    w.header(&TARGET_UP);
    for s in snaps {
        match s.health {
            Health::Up => w.sample_in(&TARGET_UP, &s.labels, &[], true),
            Health::Down => w.sample_in(&TARGET_UP, &s.labels, &[], false),
            Health::Unknown => {}
        }
    }
    w.header(&TARGET_STATE);
    for s in snaps {
        for h in [Health::Unknown, Health::Up, Health::Down] {
            let state = [("state", h.as_str())];
            w.sample_in(&TARGET_STATE, &s.labels, &state, s.health == h);
        }
    }
    w.header(&PROBES_TOTAL);
    for s in snaps {
        w.sample_in(
            &PROBES_TOTAL,
            &s.labels,
            &[("result", "success")],
            s.successes,
        );
        for r in Reason::ALL {
            let n = s.failures[r.index()];
            if n > 0 {
                w.sample_in(&PROBES_TOTAL, &s.labels, &[("result", r.as_str())], n);
            }
        }
    }
    w.header(&PROBES_SKIPPED);
    for s in snaps {
        w.sample_in(&PROBES_SKIPPED, &s.labels, &[], s.skipped);
    }
    w.header(&TRANSITIONS);
    for s in snaps {
        w.sample_in(&TRANSITIONS, &s.labels, &[("to", "up")], s.up);
        w.sample_in(&TRANSITIONS, &s.labels, &[("to", "down")], s.down);
    }
}

/// The duration and lag histograms and the two latency summaries.
fn render_distributions(w: &mut Writer, snaps: &[Snap]) {
    w.header(&PROBE_DURATION);
    for s in snaps {
        let b = &s.duration;
        w.native_histogram(
            &PROBE_DURATION,
            &s.labels,
            &DURATION_BUCKETS,
            &b.counts,
            b.sum,
            s.native.as_ref(),
        );
    }
    w.header(&SCHEDULE_LAG);
    for s in snaps {
        w.histogram(
            &SCHEDULE_LAG,
            &s.labels,
            &LAG_BUCKETS,
            &s.lag.counts,
            s.lag.sum,
        );
    }
    w.header(&PROBE_LATENCY);
    quantiles(w, snaps, false);
    w.header(&PROBE_LATENCY_PLANNED);
    quantiles(w, snaps, true);
}

fn quantiles(w: &mut Writer, snaps: &[Snap], planned: bool) {
    let f = if planned {
        &PROBE_LATENCY_PLANNED
    } else {
        &PROBE_LATENCY
    };
    for s in snaps {
        let qs = if planned { &s.q_planned } else { &s.q_send };
        if qs[0].is_none() {
            continue;
        }
        for (i, (_, label)) in QUANTILES.iter().enumerate() {
            let v = qs[i].map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
            w.sample_in(f, &s.labels, &[("quantile", label)], v);
        }
        // _sum/_count from the duration histogram (same probes) keep the summary well-formed.
        let total = if planned {
            s.duration.sum + s.lag.sum
        } else {
            s.duration.sum
        };
        w.sum(f, &s.labels, total);
        w.count(f, &s.labels, s.duration.count());
    }
}

/// The last probe's gauges and the timestamps.
fn render_last(w: &mut Writer, snaps: &[Snap]) {
    w.header(&LAST_DURATION);
    for s in snaps.iter().filter(|s| s.probes > 0) {
        w.sample_in(
            &LAST_DURATION,
            &s.labels,
            &[],
            s.last_duration.as_secs_f64(),
        );
    }
    w.header(&LAST_PHASE);
    for s in snaps.iter().filter(|s| s.probes > 0) {
        for (name, d) in Phases::NAMES.iter().zip(s.last_phases.as_array()) {
            w.sample_in(&LAST_PHASE, &s.labels, &[("phase", name)], d.as_secs_f64());
        }
    }
    w.header(&LAST_STATUS);
    for s in snaps.iter().filter(|s| s.probes > 0) {
        w.sample_in(&LAST_STATUS, &s.labels, &[], s.last_status);
    }
    w.header(&LAST_BODY_BYTES);
    for s in snaps.iter().filter(|s| s.probes > 0) {
        w.sample_in(&LAST_BODY_BYTES, &s.labels, &[], s.last_body);
    }
    w.header(&LAST_TIMESTAMP);
    for s in snaps {
        if let Some(t) = s.last_at {
            w.sample_in(&LAST_TIMESTAMP, &s.labels, &[], unix(t));
        }
    }
    w.header(&LAST_TRANSITION);
    for s in snaps {
        if let Some(t) = s.last_transition {
            w.sample_in(&LAST_TRANSITION, &s.labels, &[], unix(t));
        }
    }
}

/// Targets, probes in flight, reloads and the schedule lag over all probes.
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
    w.header(&LAG_QUANTILES);
    let all = LabelSet::new();
    if rt.probes_recorded() > 0 {
        for (q, label) in QUANTILES {
            let v = rt
                .lag_quantile(q)
                .map(|d| d.as_secs_f64())
                .unwrap_or(f64::NAN);
            w.sample(&LAG_QUANTILES, &[("quantile", label)], v);
        }
    }
    w.count(&LAG_QUANTILES, &all, rt.probes_recorded());
}

/// Renders `watchfire_build_info`.
pub fn render_build_info(w: &mut crate::expo::Writer<'_>) {
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
                    let set = LabelSet::of(&pairs);
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
                    let set = LabelSet::of(&pairs);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_label_values_are_escaped() {
        let labels = [("env".to_string(), "x\\y\nz".to_string())].into();
        let set = target_labels("a\"b", &labels);
        let mut out = String::new();
        Writer::new(&mut out).sample_in(&TARGET_UP, &set, &[], true);
        assert_eq!(
            out,
            "watchfire_target_up{target=\"a\\\"b\",env=\"x\\\\y\\nz\"} 1\n"
        );
    }
}
