//! The up/down state machine with fall/rise thresholds, as a pure function.
//!
//! Invariants (checked by the property tests below):
//! - the state is `Unknown` until the first decision; the first decision is `Up` after
//!   `up_after` consecutive successes or `Down` after `down_after` consecutive failures;
//! - from `Up`, only `down_after` consecutive failures lead to `Down`; from `Down`, only
//!   `up_after` consecutive successes lead to `Up`;
//! - a transition is reported exactly when the state changes, with the streak that caused it;
//! - a failure that is watchfire's own ([`Reason::is_local`]: out of file descriptors, ports,
//!   buffers or memory) changes nothing ([`observe`]): it breaks no streak and counts toward
//!   neither up nor down.

use std::fmt;

use tokio::time::Instant;

use crate::probe::Reason;

/// A target's health as decided by the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not enough probes yet to decide.
    Unknown,
    /// Serving.
    Up,
    /// Not serving.
    Down,
}

impl Health {
    /// Lower-case name, used as a label value and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds; both at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures before `Down`.
    pub down_after: u32,
    /// Consecutive successes before `Up`.
    pub up_after: u32,
}

/// The machine's state: the decided health and the current streak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// Decided health.
    pub health: Health,
    /// Consecutive successes (0 after a failure).
    pub successes: u32,
    /// Consecutive failures (0 after a success).
    pub failures: u32,
}

impl Default for State {
    fn default() -> Self {
        State {
            health: Health::Unknown,
            successes: 0,
            failures: 0,
        }
    }
}

/// A change of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// The length of the streak that decided it.
    pub streak: u32,
}

/// A change of a target's health, as announced to subscribers (demo, failover): a
/// [`Transition`] with the target's name, when it happened and the failure behind it.
#[derive(Debug, Clone)]
pub struct TransitionEvent {
    /// Target name.
    pub target: String,
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// When the deciding probe ended.
    pub at: Instant,
    /// The last failure's reason (when going down).
    pub reason: Option<Reason>,
    /// The last failure's detail.
    pub detail: Option<String>,
}

/// One step: the state after a probe that succeeded (`ok`) or failed.
pub fn step(state: State, ok: bool, t: Thresholds) -> (State, Option<Transition>) {
    let down_after = t.down_after.max(1);
    let up_after = t.up_after.max(1);
    let mut next = state;
    if ok {
        next.successes = state.successes.saturating_add(1);
        next.failures = 0;
        if state.health != Health::Up && next.successes >= up_after {
            next.health = Health::Up;
        }
    } else {
        next.failures = state.failures.saturating_add(1);
        next.successes = 0;
        if state.health != Health::Down && next.failures >= down_after {
            next.health = Health::Down;
        }
    }
    let transition = (next.health != state.health).then_some(Transition {
        from: state.health,
        to: next.health,
        streak: if ok { next.successes } else { next.failures },
    });
    (next, transition)
}

/// One step for a probe's `result`: [`step`] for a success or a failure of the target; the
/// state unchanged for a failure that is watchfire's own ([`Reason::is_local`]), which says
/// nothing about the target.
pub fn observe(
    state: State,
    result: Result<(), Reason>,
    t: Thresholds,
) -> (State, Option<Transition>) {
    match result {
        Err(r) if r.is_local() => (state, None),
        r => step(state, r.is_ok(), t),
    }
}

/// Outside evidence (the failover proxy could not reach the target) takes it down at once, as
/// if `down_after` probes had failed; it comes back after `up_after` successes as usual.
pub fn eject(state: State, t: Thresholds) -> (State, Option<Transition>) {
    let next = State {
        health: Health::Down,
        successes: 0,
        failures: state.failures.max(t.down_after.max(1)),
    };
    let transition = (state.health != Health::Down).then_some(Transition {
        from: state.health,
        to: Health::Down,
        streak: next.failures,
    });
    (next, transition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Thresholds = Thresholds {
        down_after: 3,
        up_after: 2,
    };

    fn run(outcomes: &[bool], t: Thresholds) -> (State, Vec<Transition>) {
        let mut s = State::default();
        let mut trs = Vec::new();
        for &ok in outcomes {
            let (n, tr) = step(s, ok, t);
            s = n;
            trs.extend(tr);
        }
        (s, trs)
    }

    #[test]
    fn unknown_until_first_decision() {
        assert_eq!(run(&[true], T).0.health, Health::Unknown);
        assert_eq!(run(&[false, false], T).0.health, Health::Unknown);
    }

    #[test]
    fn down_after_three_consecutive_failures() {
        let (s, trs) = run(&[true, true, false, false, false], T);
        assert_eq!(s.health, Health::Down);
        assert_eq!(trs.len(), 2);
        assert_eq!(
            trs[1],
            Transition {
                from: Health::Up,
                to: Health::Down,
                streak: 3
            }
        );
    }

    #[test]
    fn an_interrupted_failure_streak_keeps_up() {
        let (s, trs) = run(&[true, true, false, false, true, false, false], T);
        assert_eq!(s.health, Health::Up);
        assert_eq!(trs.len(), 1);
    }

    #[test]
    fn up_after_two_consecutive_successes_from_down() {
        let (s, trs) = run(&[false, false, false, true, true], T);
        assert_eq!(s.health, Health::Up);
        assert_eq!(trs.last().expect("two transitions").to, Health::Up);
    }

    #[test]
    fn eject_takes_an_up_target_down_and_up_after_successes_bring_it_back() {
        let (up, _) = run(&[true, true], T);
        let (down, tr) = eject(up, T);
        assert_eq!(down.health, Health::Down);
        assert_eq!(tr.map(|t| (t.from, t.to)), Some((Health::Up, Health::Down)));
        assert_eq!(eject(down, T).1, None, "already down: no second transition");
        let (once, _) = step(down, true, T);
        assert_eq!(once.health, Health::Down);
        assert_eq!(step(once, true, T).0.health, Health::Up);
    }

    #[test]
    fn local_failures_change_nothing() {
        let (up, _) = run(&[true, true], T);
        let mut s = up;
        for _ in 0..10 {
            let (n, tr) = observe(s, Err(Reason::Prober), T);
            assert_eq!((n, tr), (s, None));
            s = n;
        }
        // Two target failures, a local one in between, a third: the streak is not broken.
        let (s, _) = observe(s, Err(Reason::Refused), T);
        let (s, _) = observe(s, Err(Reason::Refused), T);
        let (s, _) = observe(s, Err(Reason::Prober), T);
        let (s, tr) = observe(s, Err(Reason::Refused), T);
        assert_eq!(s.health, Health::Down);
        assert_eq!(tr.map(|t| t.streak), Some(3));
        assert_eq!(observe(up, Ok(()), T), step(up, true, T));
    }

    fn thresholds() -> impl Strategy<Value = Thresholds> {
        (1u32..6, 1u32..6).prop_map(|(d, u)| Thresholds {
            down_after: d,
            up_after: u,
        })
    }

    proptest! {
        /// The decided health always equals what the last decisive streak says.
        #[test]
        fn health_matches_the_last_decisive_streak(t in thresholds(), outs in prop::collection::vec(any::<bool>(), 0..200)) {
            let (s, _) = run(&outs, t);
            // Reference: scan for the last point where a streak reached its threshold.
            let mut expected = Health::Unknown;
            let (mut ok_run, mut bad_run) = (0u32, 0u32);
            for &ok in &outs {
                if ok { ok_run += 1; bad_run = 0; } else { bad_run += 1; ok_run = 0; }
                if ok_run >= t.up_after { expected = Health::Up; }
                if bad_run >= t.down_after { expected = Health::Down; }
            }
            prop_assert_eq!(s.health, expected);
        }

        /// Transitions alternate, never repeat a state, and each is caused by a streak exactly at
        /// its threshold.
        #[test]
        fn transitions_alternate_and_fire_at_the_threshold(t in thresholds(), outs in prop::collection::vec(any::<bool>(), 0..200)) {
            let (_, trs) = run(&outs, t);
            for w in trs.windows(2) {
                prop_assert_eq!(w[0].to, w[1].from);
                prop_assert_ne!(w[1].from, w[1].to);
            }
            for tr in &trs {
                prop_assert_ne!(tr.to, Health::Unknown);
                let need = if tr.to == Health::Up { t.up_after } else { t.down_after };
                prop_assert_eq!(tr.streak, need);
            }
        }

        /// However many local failures come between them, the health follows the target's own
        /// results alone.
        #[test]
        fn local_failures_are_invisible(t in thresholds(), outs in prop::collection::vec(0u8..3, 0..200)) {
            let mut with = State::default();
            let mut without = State::default();
            for o in outs {
                let result = match o { 0 => Ok(()), 1 => Err(Reason::Refused), _ => Err(Reason::Prober) };
                with = observe(with, result, t).0;
                if o != 2 {
                    without = step(without, o == 0, t).0;
                }
            }
            prop_assert_eq!(with, without);
        }

        /// Fewer than `down_after` failures in a row can never take an up target down.
        #[test]
        fn short_failure_bursts_never_take_an_up_target_down(t in thresholds(), bursts in prop::collection::vec(0u32..6, 1..40)) {
            let mut outs = vec![true; t.up_after as usize];
            for b in bursts {
                let b = b.min(t.down_after - 1);
                outs.extend(std::iter::repeat_n(false, b as usize));
                outs.push(true);
            }
            let (s, trs) = run(&outs, t);
            prop_assert_eq!(s.health, Health::Up);
            prop_assert_eq!(trs.len(), 1);
        }
    }
}
