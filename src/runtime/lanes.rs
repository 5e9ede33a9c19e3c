//! Which probe thread runs a target: the one whose targets offer the fewest probes per second;
//! and how a probe thread's scheduler sleeps.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::target::Target;
use super::Lane;
use crate::probers::native::Reactor;
use crate::schedule::{Sleeper, TimerFdSleeper};

/// How a probe thread's scheduler sleeps: on its precise timer, with the thread's lean probes
/// [`Reactor::park`]ed before and [`Reactor::sweep`]t after, so that the answers that come in
/// while it sleeps are read when it wakes to start the next probes, not each on a wake-up of
/// its own.
pub(super) struct LaneSleeper {
    timer: TimerFdSleeper,
    lean: Arc<Reactor<Target>>,
}

impl LaneSleeper {
    pub(super) fn new(timer: TimerFdSleeper, lean: Arc<Reactor<Target>>) -> LaneSleeper {
        LaneSleeper { timer, lean }
    }

    /// Far enough that every quiet probe joins the epoll instance.
    fn never() -> Instant {
        Instant::now() + Duration::from_secs(86_400)
    }
}

impl Sleeper for LaneSleeper {
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
        use crate::runtime::{next_limit, OVERLOAD_IN_FLIGHT as O};
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
