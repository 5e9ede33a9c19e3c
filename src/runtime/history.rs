//! What the runtime remembers through the store: each target's state after every transition
//! (and once a minute), its transitions, and its per-minute rollups; and the stored state it
//! resumes from on start.
//!
//! # Rollups cost the probe path nothing
//!
//! A minute's figures are the difference between two snapshots of the counters every probe
//! already updates under its target's stats lock ([`TargetStats`]): probes by result, failures
//! by reason, and the probe-duration buckets, whose bounds include every bound of
//! [`LATENCY_BOUNDS`] (so the rollup's buckets are sums of them, exactly). The flush task takes
//! those snapshots at each minute boundary; the probe path does no extra work at all. Only a
//! transition (rare) appends to the target's health timeline.
//!
//! # Precision of down time
//!
//! A target's down time in a minute comes from its timeline: the instant its decided health
//! changed, which is the end of the probe that decided it (or the instant the failover proxy
//! ejected it). So down time is exact with respect to the decisions; relative to the outage
//! itself it lags by the detection delay (`down_after` probes going down, `up_after` coming
//! back), i.e. it is exact to one probe interval for each threshold probe. Times are reckoned
//! on the runtime's [`Clock`], a wall-clock reading taken at start advanced by the monotonic
//! clock, so a step of the system clock while running does not bend a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::Config;
use crate::probe::Reason;
use crate::record::{TargetStats, DURATION_BUCKETS};
use crate::state::{Health, State};
use crate::store::{
    now_millis, MaintenanceCalendar, Millis, Rollup, Store, TargetState, TransitionRecord, Write,
    LATENCY_BOUNDS,
};

use super::{Runtime, Target};

/// Length of a minute rollup.
pub const MINUTE: Millis = 60_000;
/// How often the failover groups' figures are queued to the store
/// ([`super::group_rollups`]): a divisor of a minute.
pub const SLICE: Millis = 5_000;

/// Wall-clock milliseconds from the monotonic clock: a wall reading taken once, advanced by
/// tokio's clock (so tests on paused time see minutes pass).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin_ms: Millis,
    origin: Instant,
}

impl Clock {
    /// A clock reading `origin_ms` now.
    pub fn starting_at(origin_ms: Millis) -> Clock {
        Clock {
            origin_ms,
            origin: Instant::now(),
        }
    }

    /// A clock reading the system's wall clock now.
    pub fn system() -> Clock {
        Clock::starting_at(now_millis())
    }

    /// Unix milliseconds at `t`.
    pub fn at(&self, t: Instant) -> Millis {
        if t >= self.origin {
            self.origin_ms + t.duration_since(self.origin).as_millis() as Millis
        } else {
            self.origin_ms - self.origin.duration_since(t).as_millis() as Millis
        }
    }

    /// Unix milliseconds now.
    pub fn now(&self) -> Millis {
        self.at(Instant::now())
    }

    /// The monotonic instant at Unix time `ms` (the origin when `ms` is before it by more
    /// than the monotonic clock reaches back).
    pub fn instant(&self, ms: Millis) -> Instant {
        let d = Duration::from_millis((ms - self.origin_ms).unsigned_abs());
        if ms >= self.origin_ms {
            self.origin + d
        } else {
            self.origin.checked_sub(d).unwrap_or(self.origin)
        }
    }
}

/// Wall-clock `SystemTime` of Unix milliseconds.
pub fn system_time(ms: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// Unix milliseconds of a `SystemTime`.
pub fn millis_of(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The stored state of a target as its stats show it now.
pub fn target_state(name: &str, s: &TargetStats) -> TargetState {
    let down = s.state.health == Health::Down;
    TargetState {
        target: name.to_string(),
        health: s.state.health,
        successes: s.state.successes,
        failures: s.state.failures,
        since: s.last_transition.map(millis_of).unwrap_or(0),
        reason: down
            .then(|| s.last.reason.map(|r| r.as_str().to_string()))
            .flatten(),
        detail: down
            .then(|| s.last.detail.as_deref().map(redacted))
            .flatten(),
    }
}

/// A failure's detail as stored: URL passwords and secret query values removed.
pub fn redacted(detail: &str) -> String {
    crate::redact::urls_in(detail).into_owned()
}

/// Resumes a target's stored state: health, consecutive counts, since. Counters stay at zero.
pub fn restore_stats(s: &mut TargetStats, stored: &TargetState) {
    s.state = State {
        health: stored.health,
        successes: stored.successes,
        failures: stored.failures,
    };
    s.last_transition = (stored.since > 0).then(|| system_time(stored.since));
}

/// A transition of a target, as the history keeps it.
pub fn transition_record(
    name: &str,
    at: Millis,
    from: Health,
    to: Health,
    reason: Option<Reason>,
    detail: Option<&str>,
) -> TransitionRecord {
    TransitionRecord {
        at,
        subject: crate::store::Subject::Target,
        name: name.to_string(),
        from: from.as_str().to_string(),
        to: to.as_str().to_string(),
        reason: reason.map(|r| r.as_str().to_string()),
        detail: detail.map(redacted),
    }
}

/// The counters a minute rollup is the difference of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Successful probes.
    pub successes: u64,
    /// Failed probes by [`Reason::index`].
    pub failures: [u64; Reason::ALL.len()],
    /// Probe-duration buckets (over [`DURATION_BUCKETS`] and +Inf).
    pub duration: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of probe durations, seconds.
    pub duration_sum: f64,
}

impl Counters {
    /// The counters of `s` now.
    pub fn of(s: &TargetStats) -> Counters {
        Counters {
            successes: s.successes,
            failures: s.failures,
            duration: s.duration.counts,
            duration_sum: s.duration.sum,
        }
    }
}

/// Where each duration bucket falls among the rollup's buckets: every bound of
/// [`LATENCY_BOUNDS`] is a bound of [`DURATION_BUCKETS`], so each duration bucket lies inside
/// one rollup bucket.
fn rollup_bucket(duration_bucket: usize) -> usize {
    match DURATION_BUCKETS.get(duration_bucket) {
        Some(&b) => LATENCY_BOUNDS
            .iter()
            .position(|&l| b <= l)
            .unwrap_or(LATENCY_BOUNDS.len()),
        None => LATENCY_BOUNDS.len(),
    }
}

/// The probes, failures and latency of `[before, after]` into `r`.
pub fn add_counters(r: &mut Rollup, before: &Counters, after: &Counters) {
    let failures: u64 = (0..Reason::ALL.len())
        .map(|i| after.failures[i].saturating_sub(before.failures[i]))
        .sum();
    let successes = after.successes.saturating_sub(before.successes);
    r.probes += successes + failures;
    r.failures += failures;
    for (i, reason) in Reason::ALL.iter().enumerate() {
        let n = after.failures[i].saturating_sub(before.failures[i]);
        if n > 0 {
            *r.by_reason.entry(reason.as_str().to_string()).or_default() += n;
        }
    }
    r.latency.resize(LATENCY_BOUNDS.len() + 1, 0);
    for i in 0..after.duration.len() {
        r.latency[rollup_bucket(i)] += after.duration[i].saturating_sub(before.duration[i]);
    }
    r.latency_sum += (after.duration_sum - before.duration_sum).max(0.0);
}

/// The down time of `[from, to)` from the health at `from` and the changes after it (sorted by
/// time; those outside the range are clamped into it): the intervals the target was down.
pub fn down_intervals(
    at_start: Health,
    changes: &[(Millis, Health)],
    from: Millis,
    to: Millis,
) -> Vec<(Millis, Millis)> {
    let mut out = Vec::new();
    let (mut health, mut cursor) = (at_start, from);
    for &(at, next) in changes {
        let at = at.clamp(from, to);
        if health == Health::Down && at > cursor {
            out.push((cursor, at));
        }
        if health == Health::Down || next == Health::Down {
            cursor = at;
        }
        health = next;
    }
    if health == Health::Down && to > cursor {
        out.push((cursor, to));
    }
    out
}

/// Milliseconds of `[from, to)` in maintenance for a target or its component (the larger).
fn covered(cal: &dyn MaintenanceCalendar, names: [&str; 2], from: Millis, to: Millis) -> i64 {
    let a = cal.covered(names[0], from, to);
    if names[1] == names[0] {
        a
    } else {
        a.max(cal.covered(names[1], from, to))
    }
}

/// The down and maintenance time of `[from, to)`, given the down intervals in it.
pub fn down_and_maintenance(
    cal: &dyn MaintenanceCalendar,
    names: [&str; 2],
    down: &[(Millis, Millis)],
    from: Millis,
    to: Millis,
) -> (i64, i64) {
    let maintenance = covered(cal, names, from, to);
    let down_ms = down
        .iter()
        .map(|&(a, b)| (b - a) - covered(cal, names, a, b))
        .sum::<i64>()
        .max(0);
    (down_ms, maintenance)
}

/// [`Counters`] as the flush task keeps them between two minutes, for every target: the
/// failures by reason only when there are some (most targets have none): 152 bytes a target
/// instead of 312.
#[derive(Debug, Clone, Default)]
struct Kept {
    successes: u64,
    failures: Option<Box<[u64; Reason::ALL.len()]>>,
    duration: [u64; DURATION_BUCKETS.len() + 1],
    duration_sum: f64,
}

impl Kept {
    fn of(c: &Counters) -> Kept {
        Kept {
            successes: c.successes,
            failures: c
                .failures
                .iter()
                .any(|&n| n > 0)
                .then(|| Box::new(c.failures)),
            duration: c.duration,
            duration_sum: c.duration_sum,
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            successes: self.successes,
            failures: self.failures.as_deref().copied().unwrap_or_default(),
            duration: self.duration,
            duration_sum: self.duration_sum,
        }
    }
}

/// What the flush task remembers of a target between two minutes.
#[derive(Debug, Clone)]
struct Seen {
    counters: Kept,
    /// Decided health at the start of the minute being accumulated.
    health: Health,
    /// Where the minute being accumulated starts for this target (later than the minute's
    /// start when the target, or the process, started inside it).
    from: Millis,
}

/// The per-minute flush: at every minute boundary (on the runtime's [`Clock`]) it queues one
/// rollup per target that was probed or down in the minute and every target's state.
///
/// What it remembers is a list in the order of the target set it last saw: while the set is
/// the same (no reload, or reloads that changed nothing), a target's entry is found by its
/// place, with no map and no allocation per target; a new set is matched to the last by the
/// target objects' addresses (a reload that replaced a target restarts its counters from zero).
pub(super) struct Flusher {
    /// The target set of the last flush, which keeps its targets (and their addresses) alive.
    targets: Arc<Vec<Arc<Target>>>,
    /// What was seen of each of `targets`, in its order.
    seen: Vec<Seen>,
}

impl Flusher {
    pub(super) fn new() -> Flusher {
        Flusher {
            targets: Arc::default(),
            seen: Vec::new(),
        }
    }

    /// What the last flush saw of each of `targets`, in its order (none for a target it did
    /// not see), when the target set is not the one it saw.
    fn follow(&self, targets: &[Arc<Target>]) -> Vec<Option<Seen>> {
        let at: HashMap<*const Target, usize> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| (Arc::as_ptr(t), i))
            .collect();
        targets
            .iter()
            .map(|t| self.seen.get(*at.get(&Arc::as_ptr(t))?).cloned())
            .collect()
    }

    /// Closes the minute `[end - MINUTE, end)`.
    pub(super) fn flush(&mut self, rt: &Runtime, end: Millis) {
        let targets = rt.targets();
        let config = rt.config();
        let groups: Vec<&str> = config.failover.iter().map(|g| g.name.as_str()).collect();
        let calendar = rt.calendar();
        let store = rt.store();
        let close = |t: &Target, prev: Option<&Seen>| {
            close_minute(t, prev, end, &groups, calendar.as_ref(), store)
        };
        if Arc::ptr_eq(&self.targets, &targets) && self.seen.len() == targets.len() {
            for (t, seen) in targets.iter().zip(self.seen.iter_mut()) {
                *seen = close(t, Some(seen));
            }
            return;
        }
        let before = self.follow(&targets);
        // The last set's entries are dropped before the new ones are made.
        self.seen = Vec::new();
        let next = targets
            .iter()
            .zip(before)
            .map(|(t, prev)| close(t, prev.as_ref()))
            .collect();
        self.seen = next;
        self.targets = targets;
    }
}

/// Queues the rollup of `[end - MINUTE, end)` of target `t` (when it was probed or down) and
/// its state, given what the last flush saw of it; returns what this one saw.
fn close_minute(
    t: &Target,
    prev: Option<&Seen>,
    end: Millis,
    groups: &[&str],
    calendar: &dyn MaintenanceCalendar,
    store: &Store,
) -> Seen {
    let start = end - MINUTE;
    let (counters, stored, (first_from, changes)) = {
        let s = t.stats.lock().expect("stats lock poisoned");
        let changes = t.take_changes(end);
        (Counters::of(&s), target_state(&t.spec.name, &s), changes)
    };
    let (before, health, from) = match prev {
        Some(p) => (p.counters.counters(), p.health, p.from.max(start)),
        None => {
            let at_start = first_from.unwrap_or(stored.health);
            (Counters::default(), at_start, t.born.max(start))
        }
    };
    let down = down_intervals(health, &changes, from, end);
    let name = t.spec.name.as_str();
    // The shared rule (`incident::component_of`), borrowed: no map of every target.
    let component = crate::incident::component_ref(name, &t.spec.labels, groups);
    let (down_ms, maintenance_ms) =
        down_and_maintenance(calendar, [name, component], &down, start, end);
    // In a cluster, only the target's first owner writes (replicas would add up).
    if t.history.load(std::sync::atomic::Ordering::Relaxed) {
        let probed = counters.successes > before.successes
            || (counters.failures.iter().zip(&before.failures)).any(|(now, then)| now > then);
        if probed || !down.is_empty() {
            let mut r = Rollup {
                target: name.to_string(),
                start,
                down_ms,
                maintenance_ms,
                // Stored only when it is not the target itself (what most rows would repeat).
                component: (component != name).then(|| component.to_string()),
                ..Rollup::default()
            };
            add_counters(&mut r, &before, &counters);
            store.write(Write::Minute(r));
        }
        store.write(Write::TargetState(stored));
    }
    Seen {
        counters: Kept::of(&counters),
        health: changes.last().map(|c| c.1).unwrap_or(health),
        from: end,
    }
}

/// Queues every target's state and the rollups of each minute as it ends, and the failover
/// groups' slices ([`super::group_rollups`]), until `cancel`.
pub(super) async fn flush_every_minute(
    rt: std::sync::Weak<Runtime>,
    clock: Clock,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut flusher = Flusher::new();
    let slice = SLICE;
    // The start of the minute in progress: it is closed when a slice ends at or past its end.
    let now = clock.now();
    let mut open_minute = now - now.rem_euclid(MINUTE);
    loop {
        let now = clock.now();
        let end = now - now.rem_euclid(slice) + slice;
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(clock.instant(end)) => {}
        }
        let Some(rt) = rt.upgrade() else { break };
        let boundary = end - end.rem_euclid(MINUTE);
        let closes = boundary > open_minute;
        if closes && boundary < end {
            // Woken late past a minute's end: the groups' slice ends with that minute.
            rt.group_slices().flush(&rt, boundary);
        }
        rt.group_slices().flush(&rt, end);
        if closes {
            flusher.flush(&rt, boundary);
            open_minute = boundary;
        }
    }
    // On the way out, the groups' slice in progress (the next process counts its own
    // requests from zero) and every target's state (not a partial minute: the next process
    // may write that minute whole).
    if let Some(rt) = rt.upgrade() {
        rt.group_slices().flush(&rt, clock.now());
        for t in rt.targets().iter() {
            if !t.history.load(std::sync::atomic::Ordering::Relaxed) {
                continue;
            }
            let s = t.stats.lock().expect("stats lock poisoned");
            rt.store()
                .write(Write::TargetState(target_state(&t.spec.name, &s)));
        }
    }
}

/// The stored states of the targets in `config`, by name; the states of targets no longer
/// configured are forgotten.
pub(super) async fn stored_targets(store: &Store, config: &Config) -> HashMap<String, TargetState> {
    let states = match store.target_states().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the stored target states; every target starts unknown");
            return HashMap::new();
        }
    };
    let mut out = HashMap::new();
    let names: std::collections::HashSet<&str> =
        config.targets.iter().map(|t| t.name.as_str()).collect();
    for s in states {
        if names.contains(s.target.as_str()) {
            out.insert(s.target.clone(), s);
        } else {
            store.write(Write::ForgetTarget(s.target));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NoMaintenance;

    #[test]
    fn every_rollup_bound_is_a_duration_bound() {
        for b in LATENCY_BOUNDS {
            assert!(DURATION_BUCKETS.contains(&b), "{b}");
        }
        assert_eq!(rollup_bucket(0), 0);
        assert_eq!(rollup_bucket(3), 0);
        assert_eq!(rollup_bucket(4), 1);
        assert_eq!(rollup_bucket(13), 10);
        assert_eq!(rollup_bucket(14), 11);
        assert_eq!(rollup_bucket(15), 11);
    }

    #[test]
    fn down_from_ten_to_forty_seconds_is_thirty_seconds() {
        let changes = [(10_000, Health::Down), (40_000, Health::Up)];
        let down = down_intervals(Health::Up, &changes, 0, MINUTE);
        assert_eq!(down, vec![(10_000, 40_000)]);
        let (d, m) = down_and_maintenance(&NoMaintenance, ["t", "t"], &down, 0, MINUTE);
        assert_eq!((d, m), (30_000, 0));
    }

    #[test]
    fn down_at_the_start_or_until_the_end_counts_to_the_edges() {
        let changes = [(20_000, Health::Up), (50_000, Health::Down)];
        let down = down_intervals(Health::Down, &changes, 0, MINUTE);
        assert_eq!(down, vec![(0, 20_000), (50_000, MINUTE)]);
        assert_eq!(down_intervals(Health::Unknown, &[], 0, MINUTE), vec![]);
    }

    struct Window(Millis, Millis);

    impl MaintenanceCalendar for Window {
        fn covered(&self, name: &str, from: Millis, to: Millis) -> i64 {
            if name != "comp" {
                return 0;
            }
            (to.min(self.1) - from.max(self.0)).max(0)
        }

        fn windows(&self, _: Millis, _: Millis) -> Vec<crate::store::model::Window> {
            Vec::new()
        }
    }

    #[test]
    fn down_time_inside_the_components_maintenance_is_not_down() {
        let down = [(10_000, 40_000)];
        let cal = Window(30_000, 45_000);
        let (d, m) = down_and_maintenance(&cal, ["t", "comp"], &down, 0, MINUTE);
        assert_eq!((d, m), (20_000, 15_000));
    }

    #[test]
    fn counters_become_probes_failures_and_buckets() {
        let mut s = TargetStats {
            successes: 5,
            ..TargetStats::default()
        };
        s.failures[Reason::Refused.index()] = 2;
        s.duration.counts[0] = 4; // <= 0.5 ms
        s.duration.counts[14] = 3; // <= 30 s: above the last rollup bound
        s.duration.sum = 0.75;
        let mut r = Rollup::default();
        add_counters(&mut r, &Counters::default(), &Counters::of(&s));
        assert_eq!((r.probes, r.failures), (7, 2));
        assert_eq!(r.by_reason.get("refused"), Some(&2));
        assert_eq!(r.latency.len(), LATENCY_BOUNDS.len() + 1);
        assert_eq!((r.latency[0], r.latency[11]), (4, 3));
        assert!((r.latency_sum - 0.75).abs() < 1e-9);
    }
}
