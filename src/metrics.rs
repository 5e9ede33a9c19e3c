//! Metric names and the `/metrics` renderer.
//!
//! Per-target series are written straight from each target's compact [`TargetStats`] at scrape
//! time — no registry object per target or per probe. Each target is locked once per scrape to
//! take a snapshot; the families are then written from the snapshots. The process's own metrics
//! come from a `prometheus::Registry` passed in by the caller.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::probe::{Phases, Reason};
use crate::record::{TargetStats, DURATION_BUCKETS, LAG_BUCKETS};
use crate::runtime::Runtime;
use crate::state::Health;

/// Last probe succeeded (0/1).
pub const PROBE_SUCCESS: &str = "watchfire_probe_success";
/// Health after the fall/rise thresholds (0/1; absent while unknown).
pub const TARGET_UP: &str = "watchfire_target_up";
/// Health as an enum gauge (`state` = unknown|up|down).
pub const TARGET_STATE: &str = "watchfire_target_state";
/// Probe duration histogram (from the actual start).
pub const PROBE_DURATION: &str = "watchfire_probe_duration_seconds";
/// HDR quantiles of the latency from the actual send.
pub const PROBE_LATENCY: &str = "watchfire_probe_latency_seconds";
/// HDR quantiles of the latency from the planned start (coordinated-omission corrected).
pub const PROBE_LATENCY_PLANNED: &str = "watchfire_probe_latency_from_planned_seconds";
/// Probes by result (`success` or the failure reason).
pub const PROBES_TOTAL: &str = "watchfire_probes_total";
/// Ticks skipped because the previous probe still ran.
pub const PROBES_SKIPPED: &str = "watchfire_probes_skipped_total";
/// State transitions by destination state.
pub const TRANSITIONS: &str = "watchfire_target_transitions_total";
/// Schedule lag histogram (actual − planned start).
pub const SCHEDULE_LAG: &str = "watchfire_probe_schedule_lag_seconds";
/// Last probe's duration.
pub const LAST_DURATION: &str = "watchfire_probe_last_duration_seconds";
/// Last probe's phases.
pub const LAST_PHASE: &str = "watchfire_probe_last_phase_seconds";
/// Last probe's HTTP status (0 when none).
pub const LAST_STATUS: &str = "watchfire_probe_last_status_code";
/// Last probe's body size.
pub const LAST_BODY_BYTES: &str = "watchfire_probe_last_body_bytes";
/// When the last probe ended.
pub const LAST_TIMESTAMP: &str = "watchfire_probe_last_timestamp_seconds";
/// When the target last changed state.
pub const LAST_TRANSITION: &str = "watchfire_target_last_transition_timestamp_seconds";
/// Scheduled targets.
pub const TARGETS: &str = "watchfire_targets";
/// Probes running now.
pub const IN_FLIGHT: &str = "watchfire_probes_in_flight";
/// Whether the last config reload worked.
pub const RELOAD_OK: &str = "watchfire_config_last_reload_successful";
/// When the config was last loaded successfully.
pub const RELOAD_TIME: &str = "watchfire_config_last_reload_success_timestamp_seconds";
/// Reload attempts by result.
pub const RELOADS: &str = "watchfire_config_reloads_total";
/// Schedule lag quantiles over every probe of every target.
pub const LAG_QUANTILES: &str = "watchfire_schedule_lag_seconds";
/// Build information.
pub const BUILD_INFO: &str = "watchfire_build_info";

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
    labels: String,
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
}

fn snap(labels: String, s: &TargetStats) -> Snap {
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
    }
}

/// Escapes a label value for the text format.
pub fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn sample(out: &mut String, name: &str, labels: &str, extra: &str, v: f64) {
    out.push_str(name);
    sample_tail(out, labels, extra, v);
}

/// `{labels,extra} value\n` after a metric name already written.
fn sample_tail(out: &mut String, labels: &str, extra: &str, v: f64) {
    out.push('{');
    out.push_str(labels);
    if !extra.is_empty() {
        if !labels.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
    }
    out.push_str("} ");
    write_f64(out, v);
    out.push('\n');
}

fn histogram<const N: usize>(
    out: &mut String,
    name: &str,
    snaps: &[Snap],
    bounds: &[f64],
    get: impl Fn(&Snap) -> &crate::record::Buckets<N>,
) {
    for s in snaps {
        histogram_series(out, name, &s.labels, bounds, get(s));
    }
}

/// Writes one labelled series of a histogram family (`_bucket` lines, `_sum`, `_count`).
pub fn histogram_series<const N: usize>(
    out: &mut String,
    name: &str,
    labels: &str,
    bounds: &[f64],
    b: &crate::record::Buckets<N>,
) {
    let mut cum = 0u64;
    let mut le = String::with_capacity(16);
    for (i, c) in b.counts.iter().enumerate() {
        cum += c;
        le.clear();
        le.push_str("le=\"");
        match bounds.get(i) {
            Some(v) => {
                let _ = write!(le, "{v}");
            }
            None => le.push_str("+Inf"),
        }
        le.push('"');
        out.push_str(name);
        out.push_str("_bucket");
        sample_tail(out, labels, &le, cum as f64);
    }
    out.push_str(name);
    out.push_str("_sum");
    sample_tail(out, labels, "", b.sum);
    out.push_str(name);
    out.push_str("_count");
    sample_tail(out, labels, "", cum as f64);
}

fn quantiles(out: &mut String, name: &str, snaps: &[Snap], planned: bool) {
    let sum = format!("{name}_sum");
    let count = format!("{name}_count");
    for s in snaps {
        let qs = if planned { &s.q_planned } else { &s.q_send };
        if qs[0].is_none() {
            continue;
        }
        for (i, (_, label)) in QUANTILES.iter().enumerate() {
            let v = qs[i].map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
            sample(out, name, &s.labels, &format!("quantile=\"{label}\""), v);
        }
        // _sum/_count from the duration histogram (same probes) keep the summary well-formed.
        let total = if planned {
            s.duration.sum + s.lag.sum
        } else {
            s.duration.sum
        };
        sample(out, &sum, &s.labels, "", total);
        sample(out, &count, &s.labels, "", s.duration.count() as f64);
    }
}

/// Renders the per-target families and watchfire's own gauges.
pub fn render(rt: &Runtime, out: &mut String) {
    let targets = rt.targets();
    let mut snaps = Vec::with_capacity(targets.len());
    for t in targets.iter() {
        let mut labels = String::with_capacity(64);
        labels.push_str("target=\"");
        escape_label(&t.spec.name, &mut labels);
        labels.push('"');
        for (k, v) in &t.spec.labels {
            labels.push(',');
            labels.push_str(k);
            labels.push_str("=\"");
            escape_label(v, &mut labels);
            labels.push('"');
        }
        let stats = t.stats.lock().expect("stats lock poisoned");
        snaps.push(snap(labels, &stats));
    }
    out.reserve(snaps.len() * 3000);

    header(
        out,
        PROBE_SUCCESS,
        "gauge",
        "Whether the last probe succeeded (1) or failed (0).",
    );
    for s in snaps.iter().filter(|s| s.probes > 0) {
        sample(
            out,
            PROBE_SUCCESS,
            &s.labels,
            "",
            if s.ok { 1.0 } else { 0.0 },
        );
    }
    header(out, TARGET_UP, "gauge", "Target health after the down_after/up_after thresholds: 1 up, 0 down; absent until decided.");
    for s in &snaps {
        match s.health {
            Health::Up => sample(out, TARGET_UP, &s.labels, "", 1.0),
            Health::Down => sample(out, TARGET_UP, &s.labels, "", 0.0),
            Health::Unknown => {}
        }
    }
    header(
        out,
        TARGET_STATE,
        "gauge",
        "Target health as an enum: 1 for the current state.",
    );
    for s in &snaps {
        for h in [Health::Unknown, Health::Up, Health::Down] {
            let v = if s.health == h { 1.0 } else { 0.0 };
            sample(
                out,
                TARGET_STATE,
                &s.labels,
                &format!("state=\"{}\"", h.as_str()),
                v,
            );
        }
    }
    header(
        out,
        PROBES_TOTAL,
        "counter",
        "Probes run, by result: success or the failure reason.",
    );
    for s in &snaps {
        sample(
            out,
            PROBES_TOTAL,
            &s.labels,
            "result=\"success\"",
            s.successes as f64,
        );
        for r in Reason::ALL {
            let n = s.failures[r.index()];
            if n > 0 {
                sample(
                    out,
                    PROBES_TOTAL,
                    &s.labels,
                    &format!("result=\"{}\"", r.as_str()),
                    n as f64,
                );
            }
        }
    }
    header(
        out,
        PROBES_SKIPPED,
        "counter",
        "Scheduled ticks skipped because the previous probe of the target was still running.",
    );
    for s in &snaps {
        sample(out, PROBES_SKIPPED, &s.labels, "", s.skipped as f64);
    }
    header(
        out,
        TRANSITIONS,
        "counter",
        "Changes of target health, by the state changed to.",
    );
    for s in &snaps {
        sample(out, TRANSITIONS, &s.labels, "to=\"up\"", s.up as f64);
        sample(out, TRANSITIONS, &s.labels, "to=\"down\"", s.down as f64);
    }
    header(
        out,
        PROBE_DURATION,
        "histogram",
        "Probe duration measured from the actual start, seconds.",
    );
    histogram(out, PROBE_DURATION, &snaps, &DURATION_BUCKETS, |s| {
        &s.duration
    });
    header(
        out,
        SCHEDULE_LAG,
        "histogram",
        "Actual start minus planned start of each probe, seconds.",
    );
    histogram(out, SCHEDULE_LAG, &snaps, &LAG_BUCKETS, |s| &s.lag);
    header(out, PROBE_LATENCY, "summary", "Probe latency quantiles from the actual send (HDR histogram, 2 significant figures, since the target was loaded).");
    quantiles(out, PROBE_LATENCY, &snaps, false);
    header(out, PROBE_LATENCY_PLANNED, "summary", "Probe latency quantiles from the planned start: corrected for coordinated omission, includes the prober's own delay.");
    quantiles(out, PROBE_LATENCY_PLANNED, &snaps, true);
    header(
        out,
        LAST_DURATION,
        "gauge",
        "Duration of the last probe, seconds.",
    );
    for s in snaps.iter().filter(|s| s.probes > 0) {
        sample(
            out,
            LAST_DURATION,
            &s.labels,
            "",
            s.last_duration.as_secs_f64(),
        );
    }
    header(
        out,
        LAST_PHASE,
        "gauge",
        "Phases of the last probe, seconds.",
    );
    for s in snaps.iter().filter(|s| s.probes > 0) {
        for (name, d) in Phases::NAMES.iter().zip(s.last_phases.as_array()) {
            sample(
                out,
                LAST_PHASE,
                &s.labels,
                &format!("phase=\"{name}\""),
                d.as_secs_f64(),
            );
        }
    }
    header(
        out,
        LAST_STATUS,
        "gauge",
        "HTTP status of the last probe (0 when no answer).",
    );
    for s in snaps.iter().filter(|s| s.probes > 0) {
        sample(out, LAST_STATUS, &s.labels, "", f64::from(s.last_status));
    }
    header(
        out,
        LAST_BODY_BYTES,
        "gauge",
        "Body bytes read by the last probe.",
    );
    for s in snaps.iter().filter(|s| s.probes > 0) {
        sample(out, LAST_BODY_BYTES, &s.labels, "", s.last_body as f64);
    }
    header(
        out,
        LAST_TIMESTAMP,
        "gauge",
        "When the last probe ended, seconds since the epoch.",
    );
    for s in &snaps {
        if let Some(t) = s.last_at {
            sample(out, LAST_TIMESTAMP, &s.labels, "", unix(t));
        }
    }
    header(
        out,
        LAST_TRANSITION,
        "gauge",
        "When the target last changed health, seconds since the epoch.",
    );
    for s in &snaps {
        if let Some(t) = s.last_transition {
            sample(out, LAST_TRANSITION, &s.labels, "", unix(t));
        }
    }

    let reload = rt.reload_status();
    header(out, TARGETS, "gauge", "Targets scheduled.");
    let _ = writeln!(out, "{TARGETS} {}", snaps.len());
    header(out, IN_FLIGHT, "gauge", "Probes running now.");
    let _ = writeln!(out, "{IN_FLIGHT} {}", rt.in_flight());
    header(
        out,
        RELOAD_OK,
        "gauge",
        "Whether the last configuration reload attempt was successful.",
    );
    let _ = writeln!(out, "{RELOAD_OK} {}", u8::from(reload.ok));
    header(
        out,
        RELOAD_TIME,
        "gauge",
        "Timestamp of the last successful configuration load.",
    );
    out.push_str(RELOAD_TIME);
    out.push(' ');
    write_f64(out, unix(reload.last_success));
    out.push('\n');
    header(
        out,
        RELOADS,
        "counter",
        "Configuration reload attempts by result.",
    );
    let _ = writeln!(out, "{RELOADS}{{result=\"success\"}} {}", reload.successes);
    let _ = writeln!(out, "{RELOADS}{{result=\"failure\"}} {}", reload.failures);
    header(out, LAG_QUANTILES, "summary", "Schedule lag (actual minus planned start) over every probe of every target since start (HDR).");
    if rt.probes_recorded() > 0 {
        for (q, label) in QUANTILES {
            let v = rt
                .lag_quantile(q)
                .map(|d| d.as_secs_f64())
                .unwrap_or(f64::NAN);
            out.push_str(LAG_QUANTILES);
            let _ = write!(out, "{{quantile=\"{label}\"}} ");
            write_f64(out, v);
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{LAG_QUANTILES}_count {}", rt.probes_recorded());
    crate::failover::render(&rt.failover_groups(), out);
    header(out, BUILD_INFO, "gauge", "Build information.");
    let _ = writeln!(
        out,
        "{BUILD_INFO}{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// Appends the registry's families (process metrics and any others) in the text format.
pub fn render_registry(registry: &prometheus::Registry, out: &mut String) {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .is_ok()
    {
        out.push_str(&String::from_utf8_lossy(&buf));
    }
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
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn floats_render_in_exposition_form() {
        let mut s = String::new();
        write_f64(&mut s, f64::INFINITY);
        s.push(' ');
        write_f64(&mut s, 0.0005);
        assert_eq!(s, "+Inf 0.0005");
    }
}
