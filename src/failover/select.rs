//! Which instance gets the traffic: a pure function of the instances' health and the clock.
//!
//! Rules (checked by the property tests below):
//! - traffic goes to the first instance in order (primary first) that is eligible: not `Down`.
//!   `Unknown` counts as eligible — like HAProxy, an instance is assumed up until its checks or
//!   the proxy's passive detection prove otherwise, so a fresh start does not answer 503;
//! - when the active instance is no longer eligible, traffic moves at once to the first eligible
//!   one (a forced switch: holding traffic on a dead instance is never better), or to none;
//! - moving back to a better instance (failback) is voluntary: only with the `auto` policy, only
//!   once that instance has been `Up` for at least `hold`, and only when `min_switch_interval`
//!   has passed since the last switch — a flapping primary cannot bounce traffic;
//! - flap dampening: that hold doubles with each switch in the last `window` beyond the first
//!   (`hold × 2^(n−1)` for `n` switches, at most `max_hold`; [`failback_hold`]), so a primary
//!   that keeps failing and recovering gets traffic back less and less often, and once switches
//!   leave the window the hold shrinks back;
//! - with the `manual` policy traffic never moves back by itself; [`manual`] moves it.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::state::Health;

/// The knobs of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Minimum time up before failback (with no recent switches).
    pub hold: Duration,
    /// Minimum time between a switch and a voluntary one after it.
    pub min_switch_interval: Duration,
    /// `auto` failback when true.
    pub auto_failback: bool,
    /// How far back switches lengthen the hold; zero turns dampening off.
    pub window: Duration,
    /// The longest hold dampening makes.
    pub max_hold: Duration,
}

/// Switches remembered for dampening: more would not lengthen the hold (2^15 × any useful hold
/// is past any useful `max_hold`).
const RECENT: usize = 16;

/// When the last 16 switches happened (the initial choice is not a switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recent {
    at: [Option<Instant>; RECENT],
    next: usize,
}

impl Recent {
    fn push(&mut self, t: Instant) {
        self.at[self.next] = Some(t);
        self.next = (self.next + 1) % RECENT;
    }

    /// When the remembered switches happened (in no particular order).
    pub fn times(&self) -> impl Iterator<Item = Instant> + '_ {
        self.at.iter().flatten().copied()
    }

    /// The switches at `times` (the last 16 kept), as restored after a restart.
    pub fn from_times(times: impl IntoIterator<Item = Instant>) -> Recent {
        let mut v: Vec<Instant> = times.into_iter().collect();
        v.sort_unstable();
        let mut r = Recent::default();
        for t in v {
            r.push(t);
        }
        r
    }
}

/// What the selector knows of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Health from the checks (and passive detection).
    pub health: Health,
    /// Since when it has been `Up` continuously.
    pub up_since: Option<Instant>,
}

impl View {
    fn eligible(&self) -> bool {
        self.health != Health::Down
    }
}

/// The selector's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection {
    /// Index of the instance receiving traffic; `None` = every instance is down (503).
    pub active: Option<usize>,
    /// When traffic last moved.
    pub last_switch: Option<Instant>,
    /// The recent switches, for dampening.
    pub recent: Recent,
}

/// Why traffic moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The first decision.
    Initial,
    /// The active instance went down.
    ActiveDown,
    /// No instance is eligible.
    NoneUp,
    /// An instance is eligible again after none was.
    Recovered,
    /// A better instance has been up for the hold time.
    Failback,
    /// An operator asked.
    Manual,
}

impl SwitchReason {
    /// Label/JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchReason::Initial => "initial",
            SwitchReason::ActiveDown => "active_down",
            SwitchReason::NoneUp => "none_up",
            SwitchReason::Recovered => "recovered",
            SwitchReason::Failback => "failback",
            SwitchReason::Manual => "manual",
        }
    }
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A move of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// Previous active instance.
    pub from: Option<usize>,
    /// New active instance.
    pub to: Option<usize>,
    /// Why.
    pub reason: SwitchReason,
}

fn moved(
    sel: Selection,
    to: Option<usize>,
    now: Instant,
    reason: SwitchReason,
) -> (Selection, Option<Switch>) {
    let mut recent = sel.recent;
    if reason != SwitchReason::Initial {
        recent.push(now);
    }
    (
        Selection {
            active: to,
            last_switch: Some(now),
            recent,
        },
        Some(Switch {
            from: sel.active,
            to,
            reason,
        }),
    )
}

/// The views of instances with `health` at `now`. `up_since` (one slot per instance) keeps the
/// start of each instance's current run of `Up` and is updated here.
pub fn observe(health: &[Health], up_since: &mut [Option<Instant>], now: Instant) -> Vec<View> {
    health
        .iter()
        .zip(up_since.iter_mut())
        .map(|(&health, since)| {
            *since = if health == Health::Up {
                since.or(Some(now))
            } else {
                None
            };
            View {
                health,
                up_since: *since,
            }
        })
        .collect()
}

/// One decision: the selection after looking at `views` at `now`.
pub fn decide(
    sel: Selection,
    views: &[View],
    now: Instant,
    p: &Params,
) -> (Selection, Option<Switch>) {
    let first = views.iter().position(View::eligible);
    match sel.active {
        None => match first {
            Some(f) => {
                let reason = if sel.last_switch.is_none() {
                    SwitchReason::Initial
                } else {
                    SwitchReason::Recovered
                };
                moved(sel, Some(f), now, reason)
            }
            None => (sel, None),
        },
        Some(a) if views.get(a).is_none_or(|v| !v.eligible()) => match first {
            Some(f) => moved(sel, Some(f), now, SwitchReason::ActiveDown),
            None => moved(sel, None, now, SwitchReason::NoneUp),
        },
        Some(a) => match first {
            Some(f) if f < a && p.auto_failback && failback_ready(sel, views[f], now, p) => {
                moved(sel, Some(f), now, SwitchReason::Failback)
            }
            _ => (sel, None),
        },
    }
}

/// Switches in the dampening window that ends at `at`: those less than `window` before it (and
/// any after it).
pub fn switches_in_window(sel: &Selection, at: Instant, p: &Params) -> u32 {
    if p.window.is_zero() {
        return 0;
    }
    let n = sel
        .recent
        .times()
        .filter(|&t| at.saturating_duration_since(t) < p.window)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The hold before a failback when `n` switches are in the window: `hold × 2^(n−1)`, at most
/// `max_hold` (and never less than `hold`).
pub fn hold_for(n: u32, p: &Params) -> Duration {
    let doublings = n.saturating_sub(1).min(31);
    let held = p.hold.saturating_mul(1u32 << doublings);
    held.min(p.max_hold.max(p.hold))
}

/// The hold before a failback at `now` ([`hold_for`] the switches in the window).
pub fn failback_hold(sel: &Selection, now: Instant, p: &Params) -> Duration {
    hold_for(switches_in_window(sel, now, p), p)
}

/// The first instant, from `up_since` on, at which an instance up since then has been up for
/// the hold in force at that instant. The hold only shrinks as switches leave the window, so
/// within each stretch between two such departures it is fixed: the answer is the first stretch
/// whose hold is over before the stretch ends.
fn held_at(sel: &Selection, up_since: Instant, p: &Params) -> Instant {
    let mut edges: Vec<Instant> = sel
        .recent
        .times()
        .map(|t| t + p.window)
        .filter(|&e| e > up_since && !p.window.is_zero())
        .collect();
    edges.sort_unstable();
    let mut from = up_since;
    for edge in edges {
        let t = up_since + failback_hold(sel, from, p);
        if t.max(from) < edge {
            return t.max(from);
        }
        from = edge;
    }
    (up_since + failback_hold(sel, from, p)).max(from)
}

fn failback_ready(sel: Selection, v: View, now: Instant, p: &Params) -> bool {
    let hold = failback_hold(&sel, now, p);
    let held = v.health == Health::Up
        && v.up_since
            .is_some_and(|t| now.saturating_duration_since(t) >= hold);
    let spaced = sel
        .last_switch
        .is_none_or(|t| now.saturating_duration_since(t) >= p.min_switch_interval);
    held && spaced
}

/// The next instant at which [`decide`] could change its answer with no change of health:
/// when a pending failback's hold or spacing runs out.
pub fn next_deadline(sel: Selection, views: &[View], p: &Params) -> Option<Instant> {
    let a = sel.active?;
    if !p.auto_failback {
        return None;
    }
    let f = views.iter().position(View::eligible)?;
    if f >= a || views[f].health != Health::Up {
        return None;
    }
    let held_at = held_at(&sel, views[f].up_since?, p);
    let spaced_at = sel
        .last_switch
        .map(|t| t + p.min_switch_interval)
        .unwrap_or(held_at);
    Some(held_at.max(spaced_at))
}

/// An operator's move to `to` (an instance index). Refused when that instance is down.
pub fn manual(
    sel: Selection,
    to: usize,
    views: &[View],
    now: Instant,
) -> Result<(Selection, Option<Switch>), String> {
    let Some(v) = views.get(to) else {
        return Err(format!("no instance {to} (the group has {})", views.len()));
    };
    if !v.eligible() {
        return Err(format!("instance {to} is down: traffic cannot move there"));
    }
    if sel.active == Some(to) {
        return Ok((sel, None));
    }
    Ok(moved(sel, Some(to), now, SwitchReason::Manual))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: Params = Params {
        hold: Duration::from_secs(2),
        min_switch_interval: Duration::from_secs(1),
        auto_failback: true,
        window: Duration::ZERO,
        max_hold: Duration::from_secs(2),
    };

    fn up(since: Instant) -> View {
        View {
            health: Health::Up,
            up_since: Some(since),
        }
    }

    fn down() -> View {
        View {
            health: Health::Down,
            up_since: None,
        }
    }

    #[test]
    fn primary_down_moves_traffic_to_the_backup_at_once() {
        let t0 = Instant::now();
        let sel = Selection {
            active: Some(0),
            last_switch: Some(t0),
            ..Selection::default()
        };
        let (sel, sw) = decide(sel, &[down(), up(t0)], t0, &P);
        assert_eq!(sel.active, Some(1));
        assert_eq!(sw.unwrap().reason, SwitchReason::ActiveDown);
    }

    #[test]
    fn failback_waits_for_the_hold_time() {
        let t0 = Instant::now();
        let sel = Selection {
            active: Some(1),
            last_switch: Some(t0),
            ..Selection::default()
        };
        let views = [up(t0 + Duration::from_secs(10)), up(t0)];
        let early = t0 + Duration::from_secs(11);
        assert_eq!(decide(sel, &views, early, &P).0.active, Some(1));
        assert_eq!(
            next_deadline(sel, &views, &P),
            Some(t0 + Duration::from_secs(12))
        );
        let later = t0 + Duration::from_secs(12);
        let (s, sw) = decide(sel, &views, later, &P);
        assert_eq!(s.active, Some(0));
        assert_eq!(sw.unwrap().reason, SwitchReason::Failback);
    }

    #[test]
    fn manual_policy_never_fails_back_by_itself() {
        let t0 = Instant::now();
        let p = Params {
            auto_failback: false,
            ..P
        };
        let sel = Selection {
            active: Some(1),
            last_switch: Some(t0),
            ..Selection::default()
        };
        let views = [up(t0), up(t0)];
        assert_eq!(
            decide(sel, &views, t0 + Duration::from_secs(3600), &p)
                .0
                .active,
            Some(1)
        );
        let (s, sw) = manual(sel, 0, &views, t0).unwrap();
        assert_eq!(
            (s.active, sw.unwrap().reason),
            (Some(0), SwitchReason::Manual)
        );
        assert!(manual(sel, 0, &[down(), up(t0)], t0).is_err());
    }

    #[test]
    fn all_down_means_no_active_instance_and_recovery_restores_one() {
        let t0 = Instant::now();
        let sel = Selection {
            active: Some(0),
            last_switch: Some(t0),
            ..Selection::default()
        };
        let (s, sw) = decide(sel, &[down(), down()], t0, &P);
        assert_eq!((s.active, sw.unwrap().reason), (None, SwitchReason::NoneUp));
        let (s, sw) = decide(s, &[down(), up(t0)], t0, &P);
        assert_eq!(
            (s.active, sw.unwrap().reason),
            (Some(1), SwitchReason::Recovered)
        );
    }

    const DAMPED: Params = Params {
        hold: Duration::from_secs(1),
        min_switch_interval: Duration::ZERO,
        auto_failback: true,
        window: Duration::from_secs(60),
        max_hold: Duration::from_secs(8),
    };

    #[test]
    fn each_switch_in_the_window_doubles_the_hold_up_to_max_hold() {
        let t0 = Instant::now();
        let mut sel = Selection::default();
        let p = DAMPED;
        assert_eq!(failback_hold(&sel, t0, &p), Duration::from_secs(1));
        let holds: Vec<u64> = (0..6u64)
            .map(|k| {
                sel.recent.push(t0 + Duration::from_secs(k));
                failback_hold(&sel, t0 + Duration::from_secs(k), &p).as_secs()
            })
            .collect();
        assert_eq!(holds, [1, 2, 4, 8, 8, 8]);
        // Once they have all left the window, the hold is back to `hold`.
        assert_eq!(
            failback_hold(&sel, t0 + Duration::from_secs(66), &p),
            Duration::from_secs(1)
        );
        let off = Params {
            window: Duration::ZERO,
            ..p
        };
        assert_eq!(
            failback_hold(&sel, t0 + Duration::from_secs(5), &off),
            Duration::from_secs(1)
        );
    }

    /// Switches of a primary that fails for 500 ms every 3 s, checked every 10 ms, over 18 s.
    fn flapping_switches(p: &Params) -> usize {
        let t0 = Instant::now();
        let mut sel = Selection::default();
        let mut since = [None, None];
        let mut switches = 0;
        for ms in (0..18_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            let primary = if ms % 3000 >= 2500 {
                Health::Down
            } else {
                Health::Up
            };
            let views = observe(&[primary, Health::Up], &mut since, now);
            let (next, sw) = decide(sel, &views, now, p);
            switches += usize::from(sw.is_some_and(|s| s.reason != SwitchReason::Initial));
            sel = next;
        }
        switches
    }

    #[test]
    fn a_slowly_flapping_primary_is_dampened() {
        let undamped = Params {
            window: Duration::ZERO,
            ..DAMPED
        };
        // Down at 2.5 s, 5.5 s, ... 17.5 s (6 failovers), back 1 s later each time but the last.
        assert_eq!(flapping_switches(&undamped), 11);
        let damped = flapping_switches(&DAMPED);
        assert!(damped <= 4, "{damped} switches");
    }

    fn health() -> impl Strategy<Value = Health> {
        prop_oneof![Just(Health::Unknown), Just(Health::Up), Just(Health::Down)]
    }

    proptest! {
        /// Whatever happens, traffic never sits on a down instance, and sits nowhere only when
        /// every instance is down.
        #[test]
        fn traffic_is_on_an_eligible_instance_or_nowhere_only_when_all_are_down(
            steps in prop::collection::vec((prop::collection::vec(health(), 3), 0u64..3000), 1..60)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut sel = Selection::default();
            let mut since: [Option<Instant>; 3] = [None; 3];
            for (hs, dt) in steps {
                now += Duration::from_millis(dt);
                let views = observe(&hs, &mut since, now);
                sel = decide(sel, &views, now, &P).0;
                match sel.active {
                    Some(a) => prop_assert!(views[a].health != Health::Down),
                    None => prop_assert!(views.iter().all(|v| v.health == Health::Down)),
                }
            }
        }

        /// A failback only happens to an instance up for the hold time, at least
        /// `min_switch_interval` after the previous switch.
        #[test]
        fn failbacks_respect_hold_and_spacing(
            steps in prop::collection::vec((prop::collection::vec(health(), 2), 0u64..1500), 1..80)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut sel = Selection::default();
            let mut since: [Option<Instant>; 2] = [None; 2];
            for (hs, dt) in steps {
                now += Duration::from_millis(dt);
                let views = observe(&hs, &mut since, now);
                let before = sel;
                let (next, sw) = decide(sel, &views, now, &P);
                if let Some(sw) = sw {
                    if sw.reason == SwitchReason::Failback {
                        let to = sw.to.unwrap();
                        prop_assert!(now - views[to].up_since.unwrap() >= P.hold);
                        prop_assert!(now - before.last_switch.unwrap() >= P.min_switch_interval);
                    }
                }
                sel = next;
            }
        }

        /// `next_deadline` names the very instant a pending failback becomes due, whatever
        /// the recent switches (health unchanged meanwhile).
        #[test]
        fn the_next_deadline_is_when_the_failback_happens(
            ago in prop::collection::vec(0u64..120_000, 0..10), up_ms in 0u64..60_000
        ) {
            let t0 = Instant::now();
            let base = t0 + Duration::from_secs(200);
            let mut sel = Selection { active: Some(1), last_switch: None, ..Selection::default() };
            let mut times: Vec<Instant> = ago.iter().map(|&a| base - Duration::from_millis(a)).collect();
            times.sort_unstable();
            for t in times { sel.recent.push(t); }
            sel.last_switch = sel.recent.times().max();
            let views = [up(base - Duration::from_millis(up_ms)), up(t0)];
            let due = next_deadline(sel, &views, &DAMPED).expect("a failback is pending");
            let at = due.max(base);
            prop_assert_eq!(decide(sel, &views, at, &DAMPED).0.active, Some(0));
            if due > base {
                let before = due - Duration::from_millis(1);
                prop_assert_eq!(decide(sel, &views, before, &DAMPED).0.active, Some(1));
            }
        }

        /// A primary flapping faster than the hold time never gets traffic back.
        #[test]
        fn a_flapping_primary_never_gets_traffic_back(period_ms in 50u64..1900) {
            let t0 = Instant::now();
            let mut sel = Selection { active: Some(0), last_switch: Some(t0), ..Selection::default() };
            let backup = up(t0);
            let mut switches = 0;
            for k in 0..200u64 {
                let now = t0 + Duration::from_millis(k * period_ms);
                let primary = if k % 2 == 0 { down() } else { up(now) };
                let (s, sw) = decide(sel, &[primary, backup], now, &P);
                switches += usize::from(sw.is_some());
                sel = s;
            }
            prop_assert_eq!(switches, 1, "only the first failover");
            prop_assert_eq!(sel.active, Some(1));
        }
    }
}
