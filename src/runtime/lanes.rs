//! The probe threads ("lanes"): how they start, what each keeps to itself, how many probes each
//! lets run at once as it gets busy, which one runs a target (the one whose targets offer the
//! fewest probes per second), and how a probe thread's scheduler sleeps.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::target::Target;
use super::Shared;
use crate::probers::native::Reactor;
use crate::record::{Buckets, Hdr, LAG_BUCKETS};
use crate::schedule::{SchedulerHandle, Sleeper, TimerFdSleeper};
use crate::threads::spawn_single_threaded;

/// Starts `n` probe threads, each running a single-threaded tokio runtime until `cancel`, and
/// returns their handles. Each thread schedules and runs the probes of its own share of the
/// targets: a probe is planned, started and run to its end on one thread (no work stealing, no
/// wake-ups across threads, its connection state in one CPU's cache), like nginx's workers. On
/// the shared multi-threaded runtime the same probes cost more CPU each.
pub(super) fn probe_threads(n: usize, cancel: CancellationToken) -> std::io::Result<Vec<Handle>> {
    (0..n.max(1))
        .map(|k| {
            spawn_single_threaded(
                format!("watchfire-probe-{k}"),
                cancel.clone().cancelled_owned(),
            )
        })
        .collect()
}

/// Starts, on each of `shared`'s own probe threads, its lean event loop, its scheduler
/// (waking on a timerfd with wake-ups closer than `min_wake_gap` coalesced, starting the
/// probes planned within `wake_lead` after a wake-up at it, and reading the loop's quiet
/// probes at each wake-up: [`LaneSleeper`]) and its load watch ([`watch_load`]);
/// returns the schedulers' handles in lane order. A due probe is spawned onto the thread its
/// scheduler runs on.
pub(super) fn start_schedulers(
    shared: &Arc<Shared>,
    min_wake_gap: Duration,
    wake_lead: Duration,
) -> Result<Vec<SchedulerHandle<Target>>, String> {
    let cancel = &shared.cancel;
    shared
        .lanes
        .iter()
        .enumerate()
        .map(|(k, lane)| {
            let (sleeper, reactor) = {
                let _on_lane = lane.handle.enter();
                (
                    TimerFdSleeper::new(min_wake_gap),
                    Reactor::with_sweep_horizon(wake_lead),
                )
            };
            let sleeper =
                sleeper.map_err(|e| format!("cannot create a probe thread's timer: {e}"))?;
            let reactor =
                reactor.map_err(|e| format!("cannot create a probe thread's event loop: {e}"))?;
            lane.handle.spawn(reactor.clone().run(cancel.clone()));
            let _ = lane.lean.set(reactor.clone());
            let sleeper = LaneSleeper::new(sleeper, reactor, wake_lead);
            let (h, fut) = crate::schedule::scheduler::<Target, _>(sleeper, cancel.clone());
            lane.handle.spawn(fut);
            lane.handle.spawn(watch_load(shared.clone(), k));
            Ok(h)
        })
        .collect()
}

/// One probe thread and what only its probes touch, so that a probe writes no memory another
/// probe thread writes too (aligned to its own cache lines: no false sharing between lanes).
#[repr(align(128))]
pub(super) struct Lane {
    pub(super) handle: Handle,
    /// This lane's share of `--max-concurrency`: `limit` never exceeds it.
    pub(super) bound: usize,
    /// This lane's probes in flight, for [`Runtime::drain`].
    pub(super) tracker: TaskTracker,
    /// Schedule lag of every probe on this lane (merged over lanes when read): is the prober
    /// keeping up?
    pub(super) lag: Mutex<LaneLag>,
    /// Probes dispatched on this lane and not yet finished (spawned ones included): its
    /// probes in flight.
    pub(super) active: AtomicUsize,
    /// How many probes may be active before new ones wait in the schedule ([`Job::admit`];
    /// see [`watch_load`]): `bound` while the thread has time to spare, [`OVERLOAD_IN_FLIGHT`]
    /// while it is overloaded. This is the only bound on probes in flight.
    pub(super) limit: AtomicUsize,
    /// The probe rate of the targets on this lane, in probes per 1,000 s (see [`claim_lane`]).
    pub(super) rate: AtomicU64,
    /// The event loop of this thread's lean HTTP probes (plain `http://` on fresh connections):
    /// on the runtime's own probe threads only.
    pub(super) lean: std::sync::OnceLock<Arc<Reactor<Target>>>,
}

impl Lane {
    pub(super) fn new(handle: Handle, bound: usize) -> Lane {
        Lane {
            handle,
            bound,
            tracker: TaskTracker::new(),
            lag: Mutex::new(LaneLag::default()),
            active: AtomicUsize::new(0),
            limit: AtomicUsize::new(bound),
            rate: AtomicU64::new(0),
            lean: std::sync::OnceLock::new(),
        }
    }
}

/// One lane's schedule lag: HDR for quantiles, fixed buckets for its `/metrics` histogram.
#[derive(Debug, Default)]
pub(crate) struct LaneLag {
    pub(super) hdr: Hdr,
    pub(super) buckets: Buckets<13>,
}

impl LaneLag {
    /// Records the lag of one probe.
    pub(crate) fn record(&mut self, lag: Duration) {
        self.hdr.record(lag);
        self.buckets.observe(&LAG_BUCKETS, lag.as_secs_f64());
    }
}

/// Probes a probe thread keeps in flight while it is overloaded. Beyond a few dozen
/// connections per thread, more concurrency only adds kernel and prober state that no longer
/// fits the caches: at 29k probes/s offered on 2 cores, a bound of 32 per thread gave 45 µs of
/// CPU per probe and 28k probes/s, against 51–52 µs and 27k/s unbounded.
pub(super) const OVERLOAD_IN_FLIGHT: usize = 32;

/// How often a probe thread measures how busy it is.
const LOAD_WINDOW: Duration = Duration::from_millis(10);

/// Share of [`LOAD_WINDOW`] a probe thread spent on a CPU above which it counts as overloaded,
/// and below which it has time to spare.
const OVERLOAD_ON: f64 = 0.95;
const OVERLOAD_OFF: f64 = 0.80;

/// The limit on a lane's active probes after a window in which its thread ran on a CPU for
/// `share` of the time: [`OVERLOAD_IN_FLIGHT`] when overloaded; grown back by as much per
/// window, up to `bound`, when it has time to spare; unchanged in between.
fn next_limit(limit: usize, bound: usize, share: f64) -> usize {
    if share > OVERLOAD_ON {
        OVERLOAD_IN_FLIGHT.min(bound)
    } else if share < OVERLOAD_OFF && limit < bound {
        (limit + OVERLOAD_IN_FLIGHT).min(bound)
    } else {
        limit
    }
}

/// Adjusts `lane`'s limit on active probes to how busy its thread is, every [`LOAD_WINDOW`]
/// ([`next_limit`]), so a backlog built up while overloaded is let through gradually, not at
/// once. Busy is the CPU time the thread itself used in the window (user and system: probes,
/// the scheduler and their syscalls), read with `CLOCK_THREAD_CPUTIME_ID` on the thread: not
/// tokio's busy time, which is wall-clock time between two parks of the thread, so it counts
/// the time the thread waited for a CPU held by the target or a neighbour and is credited in
/// lumps at each park. On this 2-vCPU machine shared with nginx and builds, tokio's busy share
/// passed 95 % in 27–39 of every 100 windows of a thread that used 25 % of a CPU, and throttled
/// it to 32 probes in flight. CPU is the signal, not lag or probes in flight: probes waiting
/// on slow or hanging targets keep no thread busy, so they never lower the limit.
async fn watch_load(shared: Arc<Shared>, lane: usize) {
    let Some(mut last_cpu) = crate::threads::thread_cpu_time() else {
        warn!("cannot read the probe thread's CPU time: its in-flight limit stays at its bound");
        return;
    };
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(LOAD_WINDOW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lane = &shared.lanes[lane];
    loop {
        tick.tick().await;
        let Some(cpu) = crate::threads::thread_cpu_time() else {
            continue;
        };
        let now = Instant::now();
        let window = now.saturating_duration_since(last).as_secs_f64();
        if window > 0.0 {
            let share = cpu.saturating_sub(last_cpu).as_secs_f64() / window;
            let limit = lane.limit.load(Ordering::Relaxed);
            lane.limit
                .store(next_limit(limit, lane.bound, share), Ordering::Relaxed);
        }
        last_cpu = cpu;
        last = now;
    }
}

/// How a probe thread's scheduler sleeps: on its precise timer, with the thread's lean probes
/// [`Reactor::park`]ed before and [`Reactor::sweep`]t after, so that the answers that come in
/// while it sleeps are read when it wakes to start the next probes, not each on a wake-up of
/// its own.
pub(super) struct LaneSleeper {
    timer: TimerFdSleeper,
    lean: Arc<Reactor<Target>>,
    /// How long before its planned start a probe may start at a wake-up ([`Sleeper::lead`]).
    lead: Duration,
}

impl LaneSleeper {
    pub(super) fn new(
        timer: TimerFdSleeper,
        lean: Arc<Reactor<Target>>,
        lead: Duration,
    ) -> LaneSleeper {
        LaneSleeper { timer, lean, lead }
    }

    /// Far enough that every quiet probe joins the epoll instance.
    fn never() -> Instant {
        Instant::now() + Duration::from_secs(86_400)
    }
}

impl Sleeper for LaneSleeper {
    fn lead(&self) -> Duration {
        self.lead
    }

    async fn sleep_until(&mut self, deadline: Instant) {
        self.lean.park(self.timer.wake_at(deadline));
        self.timer.sleep_until(deadline).await;
        self.lean.sweep();
    }

    async fn idle(&mut self) {
        self.lean.park(Self::never());
        std::future::pending::<()>().await;
    }
}

impl Drop for LaneSleeper {
    /// A scheduler that ends leaves no quiet probe waiting for its next wake-up.
    fn drop(&mut self) {
        self.lean.park(Self::never());
    }
}

/// A target's probe rate in probes per 1,000 s (at least 1): the unit of `Lane::rate`.
fn rate_of(interval: Duration) -> u64 {
    (1_000_000_000_000 / interval.as_nanos().max(1)).clamp(1, u64::MAX.into()) as u64
}

/// The index of the smallest rate (the first of equals).
fn lightest(rates: impl Iterator<Item = u64>) -> usize {
    rates
        .enumerate()
        .min_by_key(|&(_, r)| r)
        .map_or(0, |(k, _)| k)
}

/// Puts a new target probed every `interval` on the lane whose targets offer the fewest
/// probes per second, and counts its rate there; returns the lane's index. The target gives
/// its rate back when it is dropped ([`release_lane`]). The probe threads' offered rates thus
/// stay within one target's rate of each other, whatever the
/// names (a hash of the name put 900 of `t0`…`t999` on one of two threads) or the intervals.
/// A target kept over a reload keeps its lane (and its connections on that thread).
pub(super) fn claim_lane(lanes: &[Lane], interval: Duration) -> usize {
    let k = lightest(lanes.iter().map(|l| l.rate.load(Ordering::Relaxed)));
    if let Some(lane) = lanes.get(k) {
        lane.rate.fetch_add(rate_of(interval), Ordering::Relaxed);
    }
    k
}

/// Gives back what [`claim_lane`] counted for a target probed every `interval`.
pub(super) fn release_lane(lanes: &[Lane], lane: usize, interval: Duration) {
    if let Some(l) = lanes.get(lane) {
        let r = rate_of(interval);
        let _ = l
            .rate
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(r))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::runtime::Handle;

    #[test]
    fn the_lightest_lane_is_the_first_of_the_least_loaded() {
        assert_eq!(lightest([5, 3, 3, 9].into_iter()), 1);
        assert_eq!(lightest([0, 0].into_iter()), 0);
        assert_eq!(lightest(std::iter::empty()), 0);
        assert_eq!(rate_of(Duration::from_millis(100)), 10_000);
        assert_eq!(rate_of(Duration::from_secs(3600)), 1);
        assert_eq!(rate_of(Duration::ZERO), 1_000_000_000_000);
    }

    /// Targets are spread over the lanes by the probes per second they offer, whatever their
    /// names and intervals, and a dropped target gives its share back.
    #[tokio::test]
    async fn targets_are_spread_evenly_over_the_lanes_by_rate() {
        let lanes: Vec<Lane> = (0..2).map(|_| Lane::new(Handle::current(), 8)).collect();
        // Names whose FNV-1a upper bits put 900 of 1,000 on one lane.
        let mut on = [0usize; 2];
        let mut claimed = Vec::new();
        for _ in 0..1000 {
            let k = claim_lane(&lanes, Duration::from_millis(100));
            on[k] += 1;
            claimed.push(k);
        }
        assert_eq!(on, [500, 500]);
        // One fast target weighs as much as ten ten-times slower ones.
        let fast = claim_lane(&lanes, Duration::from_millis(10));
        let mut slow = [0usize; 2];
        for _ in 0..10 {
            slow[claim_lane(&lanes, Duration::from_millis(100))] += 1;
        }
        assert_eq!(slow[fast], 0, "{slow:?}");
        assert_eq!(slow[1 - fast], 10, "{slow:?}");
        let rates: Vec<u64> = lanes
            .iter()
            .map(|l| l.rate.load(Ordering::Relaxed))
            .collect();
        assert_eq!(rates, [5_100_000, 5_100_000]);
        // Removing lane 0's 100 ms targets sends the next ones there.
        for (i, k) in claimed.iter().enumerate() {
            if *k == 0 && i % 2 == 0 {
                release_lane(&lanes, 0, Duration::from_millis(100));
            }
        }
        assert_eq!(claim_lane(&lanes, Duration::from_secs(1)), 0);
        // Giving back more than was counted saturates at zero; a lane that does not exist is
        // ignored.
        release_lane(&lanes, 1, Duration::from_nanos(1));
        release_lane(&lanes, 7, Duration::from_millis(1));
        assert_eq!(lanes[1].rate.load(Ordering::Relaxed), 0);
    }

    /// Overloaded, the limit drops to a few dozen; with time to spare it grows back step by step
    /// to the bound; in between it holds (no oscillation between two windows).
    #[test]
    fn the_in_flight_limit_follows_the_thread_cpu_share() {
        use super::{next_limit, OVERLOAD_IN_FLIGHT as O};
        assert_eq!(next_limit(2048, 2048, 0.99), O);
        assert_eq!(next_limit(2048, 2048, 0.50), 2048);
        assert_eq!(next_limit(O, 2048, 0.90), O, "between the thresholds: held");
        assert_eq!(next_limit(O, 2048, 0.50), 2 * O);
        let mut limit = O;
        let mut windows = 0;
        while limit < 2048 {
            limit = next_limit(limit, 2048, 0.30);
            windows += 1;
        }
        assert_eq!(limit, 2048);
        assert_eq!(windows, 2048 / O - 1);
        // A bound below the overload limit is never exceeded.
        assert_eq!(next_limit(4, 4, 1.0), 4);
        assert_eq!(next_limit(4, 4, 0.0), 4);
    }
}
