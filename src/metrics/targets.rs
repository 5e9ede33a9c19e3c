//! The per-target families: a snapshot of each exported target, taken under its lock with only
//! what its detail level writes, then each family written over every snapshot.

use std::time::{Duration, SystemTime};

use crate::config::metrics::Detail;
use crate::expo::catalog::*;
use crate::expo::{LabelSet, Native, Writer};
use crate::probe::{Phases, Reason};
use crate::record::{Buckets, TargetStats, DURATION_BUCKETS, LAG_BUCKETS};
use crate::state::Health;

use super::{unix, TargetView, NATIVE_SCHEMA};

/// Quantiles exported from the HDR histograms (at `full`; the JSON API has them at any level).
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.99, "0.99"),
    (0.999, "0.999"),
    (1.0, "1"),
];

/// Upper bounds (seconds) of the duration histogram at `standard`: a subset of
/// [`DURATION_BUCKETS`], so its counts are sums of the full ones. 0.5 and a bound above it keep
/// `histogram_quantile(0.99, ...) > 0.5` (the latency SLO rule) exact at its threshold; 0.01 and
/// 0.1 split fast, ordinary and slow answers.
pub const STANDARD_BUCKETS: [f64; 4] = [0.01, 0.1, 0.5, 1.0];

/// The counts of [`DURATION_BUCKETS`] (non-cumulative, `+Inf` last) summed into those of
/// [`STANDARD_BUCKETS`].
pub fn coarse(fine: &[u64; 16]) -> [u64; 5] {
    let mut out = [0u64; 5];
    for (i, c) in fine.iter().enumerate() {
        let j = match DURATION_BUCKETS.get(i) {
            Some(b) => STANDARD_BUCKETS
                .iter()
                .position(|s| b <= s)
                .unwrap_or(STANDARD_BUCKETS.len()),
            None => STANDARD_BUCKETS.len(),
        };
        out[j] += c;
    }
    out
}

/// What one scrape needs of a target, copied under its lock.
pub(super) struct Snap {
    labels: LabelSet,
    detail: Detail,
    health: Health,
    ok: bool,
    probes: u64,
    successes: u64,
    failures: [u64; Reason::ALL.len()],
    duration: Buckets<16>,
    /// The duration histogram in native form, when the format carries it.
    native: Option<Native>,
    /// What only `full` writes.
    full: Option<Box<Full>>,
}

/// The families of `full` beyond `standard`.
struct Full {
    skipped: u64,
    up: u64,
    down: u64,
    lag: Buckets<13>,
    q_send: [Option<Duration>; QUANTILES.len()],
    q_planned: [Option<Duration>; QUANTILES.len()],
    last_duration: Duration,
    last_phases: Phases,
    last_status: u16,
    last_body: u64,
    last_at: Option<SystemTime>,
    last_transition: Option<SystemTime>,
}

/// True when a target is down or failing: it is down, its last probe failed, or a probe of it
/// failed within `hold` of `now`.
pub(super) fn failing(s: &TargetStats, hold: Duration, now: SystemTime) -> bool {
    s.state.health == Health::Down
        || (s.last.at.is_some() && !s.last.ok)
        || s.last_failure
            .is_some_and(|t| now.duration_since(t).map(|age| age <= hold).unwrap_or(true))
}

/// The label set of a target: `target`, its configured labels and, in a cluster, the member
/// that probes it ([`crate::cluster::PROBER_LABEL`], unless the target's own labels already
/// set that name), escaped once per scrape.
pub(super) fn target_labels(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    prober: Option<&str>,
) -> LabelSet {
    let mut set = LabelSet::with_capacity(64);
    set.push("target", name);
    for (k, v) in labels {
        set.push(k, v);
    }
    if let Some(p) = prober {
        if !labels.contains_key(crate::cluster::PROBER_LABEL) {
            set.push(crate::cluster::PROBER_LABEL, p);
        }
    }
    set
}

pub(super) fn snap(t: &TargetView, s: &TargetStats, detail: Detail, native: bool) -> Snap {
    let full = (detail == Detail::Full).then(|| {
        let mut q_send = [None; QUANTILES.len()];
        let mut q_planned = [None; QUANTILES.len()];
        for (i, (q, _)) in QUANTILES.iter().enumerate() {
            q_send[i] = s.latency.quantile(*q);
            q_planned[i] = s.latency_planned.quantile(*q);
        }
        Box::new(Full {
            skipped: s.skipped,
            up: s.transitions_up,
            down: s.transitions_down,
            lag: s.lag.clone(),
            q_send,
            q_planned,
            last_duration: s.last.duration,
            last_phases: s.last.phases,
            last_status: s.last.status,
            last_body: s.last.body_bytes,
            last_at: s.last.at,
            last_transition: s.last_transition,
        })
    });
    let histogram = detail >= Detail::Standard;
    Snap {
        labels: target_labels(t.name, t.labels, t.prober),
        detail,
        health: s.state.health,
        ok: s.last.ok,
        probes: s.probes(),
        successes: s.successes,
        failures: s.failures,
        duration: if histogram {
            s.duration.clone()
        } else {
            Buckets::default()
        },
        native: (native && histogram).then(|| s.latency.to_native(NATIVE_SCHEMA, s.duration.sum)),
        full,
    }
}

/// Writes every per-target family, each over the snapshots whose level includes it.
pub(super) fn render(w: &mut Writer, snaps: &[Snap]) {
    let at = |d: Detail| snaps.iter().filter(move |s| s.detail >= d);
    let full = || {
        snaps
            .iter()
            .filter_map(|s| s.full.as_deref().map(|f| (s, f)))
    };
    if full().next().is_some() {
        w.header(&PROBE_SUCCESS);
        for (s, _) in full().filter(|(s, _)| s.probes > 0) {
            w.sample_in(&PROBE_SUCCESS, &s.labels, &[], s.ok);
        }
    }
    if !snaps.is_empty() {
        w.header(&TARGET_UP);
        for s in snaps {
            match s.health {
                Health::Up => w.sample_in(&TARGET_UP, &s.labels, &[], true),
                Health::Down => w.sample_in(&TARGET_UP, &s.labels, &[], false),
                Health::Unknown => {}
            }
        }
    }
    if full().next().is_some() {
        w.header(&TARGET_STATE);
        for (s, _) in full() {
            for h in [Health::Unknown, Health::Up, Health::Down] {
                let state = [("state", h.as_str())];
                w.sample_in(&TARGET_STATE, &s.labels, &state, s.health == h);
            }
        }
    }
    if !snaps.is_empty() {
        w.header(&PROBES_TOTAL);
        for s in snaps {
            probes_by_result(w, &PROBES_TOTAL, &s.labels, s.successes, &s.failures);
        }
    }
    if full().next().is_some() {
        w.header(&PROBES_SKIPPED);
        for (s, f) in full() {
            w.sample_in(&PROBES_SKIPPED, &s.labels, &[], f.skipped);
        }
        w.header(&TRANSITIONS);
        for (s, f) in full() {
            w.sample_in(&TRANSITIONS, &s.labels, &[("to", "up")], f.up);
            w.sample_in(&TRANSITIONS, &s.labels, &[("to", "down")], f.down);
        }
    }
    if at(Detail::Standard).next().is_some() {
        w.header(&PROBE_DURATION);
        for s in at(Detail::Standard) {
            duration(w, s);
        }
    }
    if full().next().is_some() {
        render_full(w, snaps);
    }
}

/// `success` always, each failure reason once it happened.
pub(super) fn probes_by_result(
    w: &mut Writer,
    f: &crate::expo::Family,
    set: &LabelSet,
    successes: u64,
    failures: &[u64; Reason::ALL.len()],
) {
    w.sample_in(f, set, &[("result", "success")], successes);
    for r in Reason::ALL {
        let n = failures[r.index()];
        if n > 0 {
            w.sample_in(f, set, &[("result", r.as_str())], n);
        }
    }
}

/// The duration histogram of one target over the bounds of its level.
fn duration(w: &mut Writer, s: &Snap) {
    let b = &s.duration;
    let native = s.native.as_ref();
    if s.detail == Detail::Full {
        let (bounds, counts) = (&DURATION_BUCKETS, &b.counts);
        w.native_histogram(&PROBE_DURATION, &s.labels, bounds, counts, b.sum, native);
    } else {
        let counts = coarse(&b.counts);
        let bounds = &STANDARD_BUCKETS;
        w.native_histogram(&PROBE_DURATION, &s.labels, bounds, &counts, b.sum, native);
    }
}

/// The families only `full` writes: the lag histogram, the two latency summaries, the last
/// probe's gauges and the timestamps.
fn render_full(w: &mut Writer, snaps: &[Snap]) {
    let full = || {
        snaps
            .iter()
            .filter_map(|s| s.full.as_deref().map(|f| (s, f)))
    };
    w.header(&SCHEDULE_LAG);
    for (s, f) in full() {
        w.histogram(
            &SCHEDULE_LAG,
            &s.labels,
            &LAG_BUCKETS,
            &f.lag.counts,
            f.lag.sum,
        );
    }
    w.header(&PROBE_LATENCY);
    for (s, f) in full() {
        quantiles(w, &PROBE_LATENCY, s, &f.q_send, s.duration.sum);
    }
    w.header(&PROBE_LATENCY_PLANNED);
    for (s, f) in full() {
        let sum = s.duration.sum + f.lag.sum;
        quantiles(w, &PROBE_LATENCY_PLANNED, s, &f.q_planned, sum);
    }
    let probed = || full().filter(|(s, _)| s.probes > 0);
    w.header(&LAST_DURATION);
    for (s, f) in probed() {
        let v = f.last_duration.as_secs_f64();
        w.sample_in(&LAST_DURATION, &s.labels, &[], v);
    }
    w.header(&LAST_PHASE);
    for (s, f) in probed() {
        for (name, d) in Phases::NAMES.iter().zip(f.last_phases.as_array()) {
            w.sample_in(&LAST_PHASE, &s.labels, &[("phase", name)], d.as_secs_f64());
        }
    }
    w.header(&LAST_STATUS);
    for (s, f) in probed() {
        w.sample_in(&LAST_STATUS, &s.labels, &[], f.last_status);
    }
    w.header(&LAST_BODY_BYTES);
    for (s, f) in probed() {
        w.sample_in(&LAST_BODY_BYTES, &s.labels, &[], f.last_body);
    }
    w.header(&LAST_TIMESTAMP);
    for (s, f) in full() {
        if let Some(t) = f.last_at {
            w.sample_in(&LAST_TIMESTAMP, &s.labels, &[], unix(t));
        }
    }
    w.header(&LAST_TRANSITION);
    for (s, f) in full() {
        if let Some(t) = f.last_transition {
            w.sample_in(&LAST_TRANSITION, &s.labels, &[], unix(t));
        }
    }
}

fn quantiles(
    w: &mut Writer,
    f: &crate::expo::Family,
    s: &Snap,
    qs: &[Option<Duration>; QUANTILES.len()],
    sum: f64,
) {
    if qs[0].is_none() {
        return;
    }
    for (i, (_, label)) in QUANTILES.iter().enumerate() {
        let v = qs[i].map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
        w.sample_in(f, &s.labels, &[("quantile", label)], v);
    }
    // _sum/_count from the duration histogram (same probes) keep the summary well-formed.
    w.sum(f, &s.labels, sum);
    w.count(f, &s.labels, s.duration.count());
}
