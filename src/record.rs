//! Per-target recording: everything `/metrics` and `/api/v1/targets` show about a target, kept
//! compact so 100,000 targets fit in about a gigabyte.
//!
//! # Histogram sizing
//!
//! Latency quantiles come from two HDR histograms per target ([`Hdr`]): one measured from the
//! actual send and one from the planned start (the coordinated-omission-corrected view, which
//! includes any delay of the prober itself). Each records microseconds with **2 significant
//! figures** (1 % resolution: enough for p99 on an SLO), lowest discernible value 1 µs, values
//! capped at [`HDR_MAX_MICROS`] (≈ 67 s, above any sane probe timeout), **counts as `u32`**
//! (4 billion probes per bucket: 136 years at one probe a second). Only buckets that hold a
//! sample are stored, 8 bytes each: nothing before the first probe, a few hundred bytes for a
//! target whose latency stays within a few buckets, at most 20 KiB for one spread over the
//! whole range (a dense HDR array costs 1.5 to 7.5 KiB from its first sample, ~10 GB for the
//! two histograms of a million targets).
//!
//! Prometheus buckets (fixed arrays, no allocation) back `watchfire_probe_duration_seconds` and
//! `watchfire_probe_schedule_lag_seconds`.

use std::time::{Duration, SystemTime};

use crate::probe::{Outcome, Phases, Reason};
use crate::state::{self, Health, State, Thresholds, Transition};

/// Largest latency the HDR histograms track, in microseconds (larger values are clamped).
pub const HDR_MAX_MICROS: u64 = (1 << 26) - 1;
/// Significant figures of the HDR histograms.
pub const HDR_SIGFIG: u8 = 2;

/// Upper bounds (seconds) of the probe duration buckets: dense where SLOs live.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Upper bounds (seconds) of the schedule lag buckets: the budget is 1 ms.
pub const LAG_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A Prometheus histogram over fixed buckets.
#[derive(Debug, Clone)]
pub struct Buckets<const N: usize> {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    pub counts: [u64; N],
    /// Sum of observations, seconds.
    pub sum: f64,
}

impl<const N: usize> Default for Buckets<N> {
    fn default() -> Self {
        Buckets {
            counts: [0; N],
            sum: 0.0,
        }
    }
}

impl<const N: usize> Buckets<N> {
    /// Records one observation against the bounds (`bounds.len() == N - 1`).
    pub fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.iter().position(|&b| v <= b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One latency distribution, bucketed exactly as an HDR histogram of [`HDR_SIGFIG`] significant
/// figures over whole microseconds (hdrhistogram's layout: 256 sub-buckets of 1 µs below 256 µs,
/// then 128 per doubling), its quantiles the ones hdrhistogram's `value_at_quantile` gives.
///
/// Only the buckets that hold a sample are stored, as (index, count) pairs in index order: a
/// dense HDR array spans every bucket from zero to the largest value seen (1.5 to 7.5 KiB,
/// twice per target), while a target's samples fall in a few dozen buckets. Nothing is
/// allocated before the first sample. Recording is a binary search over the stored buckets.
#[derive(Debug, Clone, Default)]
pub struct Hdr {
    /// (bucket index, count), in index order; no count is zero.
    buckets: Vec<(u16, u32)>,
    /// Samples recorded.
    total: u64,
}

/// Sub-buckets in the top half of each bucket (`sub_bucket_half_count` of hdrhistogram): 128
/// for 2 significant figures.
const HDR_HALF_MAGNITUDE: u32 = 7;
const HDR_HALF: u64 = 1 << HDR_HALF_MAGNITUDE;

/// The bucket holding `us` (≥ 1, ≤ [`HDR_MAX_MICROS`]) and its index (`index_for`).
fn hdr_index(us: u64) -> u16 {
    // hdrhistogram: leading_zero_count_base = 64 - unit magnitude (0) - 7 - 1; mask 255.
    let bucket = 56 - (us | (2 * HDR_HALF - 1)).leading_zeros();
    let sub = us >> bucket;
    (((u64::from(bucket) + 1) << HDR_HALF_MAGNITUDE) + sub - HDR_HALF) as u16
}

/// The highest value (µs) counted in bucket `index` (`highest_equivalent(value_for(index))`).
fn hdr_highest(index: u16) -> u64 {
    let index = u64::from(index);
    let (bucket, sub) = match (index >> HDR_HALF_MAGNITUDE).checked_sub(1) {
        Some(b) => (b, (index & (HDR_HALF - 1)) + HDR_HALF),
        None => (0, index & (HDR_HALF - 1)),
    };
    ((sub + 1) << bucket) - 1
}

/// The lowest value (µs) counted in bucket `index`.
fn hdr_lowest(index: u16) -> u64 {
    let index = u64::from(index);
    match (index >> HDR_HALF_MAGNITUDE).checked_sub(1) {
        Some(b) => ((index & (HDR_HALF - 1)) + HDR_HALF) << b,
        None => index & (HDR_HALF - 1),
    }
}

impl Hdr {
    /// Records a duration (clamped to the tracked range).
    pub fn record(&mut self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, HDR_MAX_MICROS);
        self.add_count(hdr_index(us), 1);
    }

    fn add_count(&mut self, index: u16, n: u32) {
        match self.buckets.binary_search_by_key(&index, |b| b.0) {
            Ok(i) => self.buckets[i].1 = self.buckets[i].1.saturating_add(n),
            Err(i) => self.buckets.insert(i, (index, n)),
        }
        self.total += u64::from(n);
    }

    /// The value at quantile `q` (0..=1), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let q = q.min(1.0);
        // As hdrhistogram: the first bucket whose running count reaches ceil(q × total).
        let want = ((q * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        let (index, _) = self
            .buckets
            .iter()
            .find(|(_, c)| {
                seen += u64::from(*c);
                seen >= want
            })
            .or(self.buckets.last())?;
        let us = if q == 0.0 {
            hdr_lowest(*index)
        } else {
            hdr_highest(*index)
        };
        Some(Duration::from_micros(us))
    }

    /// Adds every count of `other` (to merge per-thread histograms when read).
    pub fn merge(&mut self, other: &Hdr) {
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            self.total = other.total;
            return;
        }
        for &(index, n) in &other.buckets {
            self.add_count(index, n);
        }
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The recorded durations as a native histogram of `schema` (see [`crate::expo::Native`]),
    /// with `sum` (seconds) taken from the caller's exact sum. Its count is the HDR count (the
    /// probes recorded, as the classic duration histogram counts them).
    ///
    /// Each recorded HDR bucket (values that are equal at 2 significant figures, after the
    /// duration was truncated to whole microseconds) goes whole to the native bucket holding
    /// its highest equivalent value — the value HDR's own quantiles report — so
    /// `histogram_quantile` on the native histogram and HDR's quantile name the same native
    /// bucket. When a native boundary falls inside an HDR bucket, the observations below the
    /// boundary are counted one native bucket up: a value misplaced by at most one HDR bucket
    /// width plus the truncation (1 µs below 256 µs, then under 0.8 % of the value), against a
    /// native bucket width of 9 % at schema 3. The zero bucket (`2^-128` s) stays empty: HDR
    /// records at least 1 µs.
    pub fn to_native(&self, schema: i8, sum: f64) -> crate::expo::Native {
        let mut b =
            crate::expo::NativeBuilder::new(schema, crate::expo::native::DEFAULT_ZERO_THRESHOLD);
        for &(index, n) in &self.buckets {
            b.push(hdr_highest(index) as f64 * 1e-6, n.into());
        }
        b.finish(sum)
    }

    /// Bytes of heap the counts use (for the memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<(u16, u32)>()
    }
}

/// The last probe, as shown by the last-probe gauges and the API.
#[derive(Debug, Clone, Default)]
pub struct Last {
    /// Wall-clock end time.
    pub at: Option<SystemTime>,
    /// Success.
    pub ok: bool,
    /// Failure reason.
    pub reason: Option<Reason>,
    /// Human detail of the failure.
    pub detail: Option<String>,
    /// Status code (0 when none).
    pub status: u16,
    /// Duration from the actual start.
    pub duration: Duration,
    /// Phases.
    pub phases: Phases,
    /// Body bytes.
    pub body_bytes: u64,
}

/// Everything recorded about one target.
#[derive(Debug, Default)]
pub struct TargetStats {
    /// Latency from the actual send.
    pub latency: Hdr,
    /// Latency from the planned start (coordinated-omission corrected).
    pub latency_planned: Hdr,
    /// Prometheus histogram of the probe duration.
    pub duration: Buckets<16>,
    /// Prometheus histogram of the schedule lag.
    pub lag: Buckets<13>,
    /// Successful probes.
    pub successes: u64,
    /// Failed probes by reason (indexed by [`Reason::index`]).
    pub failures: [u64; Reason::ALL.len()],
    /// Ticks skipped because the previous probe still ran.
    pub skipped: u64,
    /// The up/down state machine.
    pub state: State,
    /// Transitions to up and to down.
    pub transitions_up: u64,
    /// Transitions to down.
    pub transitions_down: u64,
    /// When the last transition happened (wall clock).
    pub last_transition: Option<SystemTime>,
    /// The last probe.
    pub last: Last,
    /// When the last failed probe ended (wall clock): `/metrics` keeps a failing target's own
    /// series for a while after it.
    pub last_failure: Option<SystemTime>,
}

impl TargetStats {
    /// Records one outcome; returns the state transition it caused, if any.
    pub fn record(&mut self, o: &Outcome, thresholds: Thresholds) -> Option<Transition> {
        let latency = o.latency();
        self.latency.record(latency);
        self.latency_planned.record(o.latency_from_planned());
        self.duration
            .observe(&DURATION_BUCKETS, latency.as_secs_f64());
        self.lag
            .observe(&LAG_BUCKETS, o.schedule_lag().as_secs_f64());
        match o.result {
            Ok(()) => self.successes += 1,
            Err(r) => self.failures[r.index()] += 1,
        }
        let now = SystemTime::now();
        self.last = Last {
            at: Some(now),
            ok: o.ok(),
            reason: o.result.err(),
            detail: o.detail.clone(),
            status: o.status.unwrap_or(0),
            duration: latency,
            phases: o.phases,
            body_bytes: o.body_bytes,
        };
        if !o.ok() {
            self.last_failure = Some(now);
        }
        let stepped = state::observe(self.state, o.result, thresholds);
        self.apply(stepped, now)
    }

    /// Takes the target down at once on outside evidence ([`state::eject`]).
    pub fn eject(&mut self, thresholds: Thresholds) -> Option<Transition> {
        let ejected = state::eject(self.state, thresholds);
        self.apply(ejected, SystemTime::now())
    }

    fn apply(
        &mut self,
        (next, transition): (State, Option<Transition>),
        now: SystemTime,
    ) -> Option<Transition> {
        self.state = next;
        if let Some(t) = transition {
            match t.to {
                Health::Up => self.transitions_up += 1,
                Health::Down => self.transitions_down += 1,
                Health::Unknown => {}
            }
            self.last_transition = Some(now);
        }
        transition
    }

    /// Total probes run.
    pub fn probes(&self) -> u64 {
        self.successes + self.failures.iter().sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn outcome(ms: u64, lag_ms: u64, result: Result<(), Reason>) -> Outcome {
        let planned = Instant::now();
        let started = planned + Duration::from_millis(lag_ms);
        Outcome {
            planned,
            started,
            finished: started + Duration::from_millis(ms),
            phases: Phases::default(),
            status: Some(200),
            body_bytes: 0,
            result,
            detail: None,
            reused_connection: false,
        }
    }

    const T: Thresholds = Thresholds {
        down_after: 3,
        up_after: 2,
    };

    #[test]
    fn planned_view_includes_the_prober_delay() {
        let mut s = TargetStats::default();
        for _ in 0..100 {
            s.record(&outcome(10, 0, Ok(())), T);
        }
        s.record(&outcome(10, 500, Ok(())), T);
        let p100 = s.latency.quantile(1.0).expect("samples");
        let p100_planned = s.latency_planned.quantile(1.0).expect("samples");
        assert!(p100 < Duration::from_millis(11), "{p100:?}");
        assert!(
            p100_planned >= Duration::from_millis(505),
            "{p100_planned:?}"
        );
    }

    #[test]
    fn counts_by_result_and_transitions() {
        let mut s = TargetStats::default();
        for _ in 0..2 {
            s.record(&outcome(1, 0, Ok(())), T);
        }
        for _ in 0..3 {
            s.record(&outcome(1, 0, Err(Reason::Refused)), T);
        }
        assert_eq!(s.successes, 2);
        assert_eq!(s.failures[Reason::Refused.index()], 3);
        assert_eq!((s.transitions_up, s.transitions_down), (1, 1));
        assert_eq!(s.state.health, Health::Down);
        assert_eq!(s.duration.count(), 5);
    }

    #[test]
    fn buckets_put_values_on_their_upper_bound() {
        let mut b = Buckets::<16>::default();
        b.observe(&DURATION_BUCKETS, 0.001);
        b.observe(&DURATION_BUCKETS, 100.0);
        assert_eq!(b.counts[1], 1);
        assert_eq!(b.counts[15], 1);
    }

    #[test]
    fn merged_hdrs_answer_as_one_histogram_of_both() {
        let (mut a, mut b) = (Hdr::default(), Hdr::default());
        for _ in 0..99 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_secs(2));
        let mut all = Hdr::default();
        all.merge(&a);
        all.merge(&b);
        assert_eq!(all.len(), 100);
        let p99 = all.quantile(0.99).unwrap();
        assert!(p99 < Duration::from_micros(102), "p99 {p99:?}");
        let max = all.quantile(1.0).unwrap();
        assert!(max >= Duration::from_millis(1980), "max {max:?}");
    }

    /// hdrhistogram as it was used before: 2 significant figures, auto-resized, u32 counts.
    fn reference(values: &[u64]) -> hdrhistogram::Histogram<u32> {
        let mut h = hdrhistogram::Histogram::new(HDR_SIGFIG).unwrap();
        h.auto(true);
        for &v in values {
            h.record(v.clamp(1, HDR_MAX_MICROS)).unwrap();
        }
        h
    }

    proptest::proptest! {
        #[test]
        fn hdr_answers_as_hdrhistogram_does(
            values in proptest::collection::vec(
                // Microseconds over the whole range, most of them small, as latencies are.
                proptest::prop_oneof![0u64..2_000, 0u64..100_000, 0u64..(HDR_MAX_MICROS + 1_000)],
                1..300,
            )
        ) {
            let reference = reference(&values);
            let mut h = Hdr::default();
            for &v in &values {
                h.record(Duration::from_micros(v));
            }
            proptest::prop_assert_eq!(h.len(), reference.len());
            for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = Duration::from_micros(reference.value_at_quantile(q));
                proptest::prop_assert_eq!(h.quantile(q), Some(want), "q = {}", q);
            }
            let recorded: Vec<(u64, u64)> = reference
                .iter_recorded()
                .map(|v| (reference.highest_equivalent(v.value_iterated_to()), v.count_at_value().into()))
                .collect();
            let mine: Vec<(u64, u64)> =
                h.buckets.iter().map(|&(i, n)| (hdr_highest(i), n.into())).collect();
            proptest::prop_assert_eq!(mine, recorded);
        }
    }

    #[test]
    fn an_unprobed_target_holds_no_histogram_memory() {
        let s = TargetStats::default();
        assert_eq!(s.latency.heap_bytes() + s.latency_planned.heap_bytes(), 0);
    }

    #[test]
    fn hdr_grows_only_as_far_as_needed() {
        let mut h = Hdr::default();
        for us in [80u64, 150, 400] {
            h.record(Duration::from_micros(us));
        }
        assert!(h.heap_bytes() <= 2048, "{}", h.heap_bytes());
        h.record(Duration::from_secs(120));
        assert_eq!(
            h.quantile(1.0).map(|d| d.as_micros() as u64 / 1_000_000),
            Some(HDR_MAX_MICROS / 1_000_000)
        );
    }

    #[test]
    fn the_native_histogram_counts_what_hdr_recorded() {
        let mut h = Hdr::default();
        let mut sum = 0.0;
        // 1 µs to 2 s in steps of 7 %: values near every kind of boundary.
        let mut us = 1.0f64;
        let mut n = 0u64;
        while us < 2e6 {
            let d = Duration::from_micros(us as u64);
            for _ in 0..3 {
                h.record(d);
                sum += d.as_secs_f64();
                n += 1;
            }
            us *= 1.07;
        }
        let native = h.to_native(3, sum);
        assert_eq!(native.schema, 3);
        assert_eq!(native.count, h.len());
        assert_eq!(native.count, n);
        assert_eq!(native.sum, sum);
        assert_eq!(native.zero_count, 0);
        let in_buckets: u64 = native.buckets.iter().map(|(_, c)| c).sum();
        assert_eq!(in_buckets, n);
        assert!(native.buckets.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(native.buckets.iter().all(|(_, c)| *c > 0));
        // Each native bucket's count is that of the HDR buckets whose highest equivalent value
        // it holds; and HDR's p99 lies in the native bucket where the p99 rank falls.
        let mut want = std::collections::BTreeMap::new();
        for &(index, count) in &h.buckets {
            let hi = hdr_highest(index) as f64 * 1e-6;
            *want.entry(crate::expo::bucket_index(hi, 3)).or_insert(0u64) += u64::from(count);
        }
        assert_eq!(native.buckets, want.into_iter().collect::<Vec<_>>());
        let p99 = h.quantile(0.99).unwrap().as_secs_f64();
        let rank = (0.99 * n as f64).ceil() as u64;
        let mut seen = 0;
        let (i, _) = native
            .buckets
            .iter()
            .find(|(_, c)| {
                seen += c;
                seen >= rank
            })
            .copied()
            .unwrap();
        let (lo, hi) = (
            crate::expo::bucket_upper(i - 1, 3),
            crate::expo::bucket_upper(i, 3),
        );
        assert!(
            lo < p99 && p99 <= hi,
            "p99 {p99} outside bucket {i} ({lo}, {hi}]"
        );
    }

    #[test]
    fn an_empty_hdr_is_an_empty_native_histogram() {
        let n = Hdr::default().to_native(3, 0.0);
        assert_eq!((n.count, n.zero_count, n.buckets.len()), (0, 0, 0));
        assert!(n.zero_threshold > 0.0);
    }

    #[test]
    fn one_value_lands_in_its_bucket() {
        let mut h = Hdr::default();
        // 1 ms: (2^-10, 2^(-79/8)] is bucket -79 of schema 3.
        h.record(Duration::from_millis(1));
        h.record(Duration::from_millis(1));
        let n = h.to_native(3, 0.002);
        assert_eq!(n.buckets, vec![(-79, 2)]);
        assert_eq!(n.count, 2);
    }
}
