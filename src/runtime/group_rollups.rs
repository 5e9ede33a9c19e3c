//! The failover groups' rollups: every [`SLICE`] on the runtime's clock (a divisor of a minute,
//! so no slice straddles one) each group's figures since the last slice are queued to the
//! store, which adds them into the group's minute, hour and day rows:
//!
//! - down time: no instance could take traffic (the active instance was none), from the
//!   group's own changes of active instance ([`Group::take_changes`]), exact to the instant of
//!   each decision; outside maintenance;
//! - maintenance time: inside a window covering the group;
//! - requests the group's failover proxy answered and those answered 5xx: the difference of
//!   the proxy's counters between two slices;
//! - switches of traffic (the initial choice and a restore are not switches);
//! - the time watched (`observed_ms`): what a request rate is reckoned over.
//!
//! Slices rather than whole minutes: a process killed with SIGKILL loses at most the slice in
//! progress, and the incident figures read the rest from the store
//! ([`crate::incident::figures_inputs`]) plus what [`GroupSlices::unwritten`] says is not
//! queued yet.
//!
//! In cluster mode every member's proxy counts its own requests; the time figures (observed,
//! down, maintenance, switches) are written only by the member that decides for the group, so
//! that a shared store holds them once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::failover::Group;
use crate::incident::Unwritten;
use crate::state::Health;
use crate::store::{GroupRollup, Millis, Write};

pub use super::history::SLICE;
use super::history::{down_and_maintenance, down_intervals, MINUTE};
use super::Runtime;

/// What the slicer remembers of a group between two slices.
struct Seen {
    /// The group object (a reload that replaced it restarts its counters from zero).
    group: Arc<Group>,
    /// The proxy's (all, 5xx) answers when the last slice was taken.
    totals: (u64, u64),
    /// Whether an instance took traffic at the end of the last slice.
    health: Health,
    /// The end of the last slice.
    from: Millis,
}

#[derive(Default)]
struct Inner {
    seen: HashMap<String, Seen>,
    /// Slices queued so far (a reader that saw the same count before and after reading the
    /// store read a consistent pair).
    generation: u64,
}

/// The groups' slices, and what they have not queued yet.
#[derive(Default)]
pub struct GroupSlices {
    inner: Mutex<Inner>,
}

/// Up while an instance takes traffic, down while none does.
fn availability(active: Option<usize>) -> Health {
    if active.is_some() {
        Health::Up
    } else {
        Health::Down
    }
}

impl GroupSlices {
    /// Queues each group's slice `[last end, end)`.
    pub(super) fn flush(&self, rt: &Runtime, end: Millis) {
        let groups = rt.failover_groups();
        let calendar = rt.calendar();
        let clock = rt.clock();
        let store = rt.store();
        let minute = (end - 1) - (end - 1).rem_euclid(MINUTE);
        let mut inner = self.inner.lock().expect("group slices lock poisoned");
        let mut next = HashMap::with_capacity(groups.len());
        for g in groups {
            let name = g.cfg.name.as_str();
            let totals = g.proxy.totals();
            let taken = g.take_changes(clock.instant(end));
            let changes: Vec<(Millis, Health)> = taken
                .iter()
                .map(|c| (clock.at(c.at), availability(c.active)))
                .collect();
            let prev = inner
                .seen
                .remove(name)
                .filter(|p| Arc::ptr_eq(&p.group, &g));
            let (before, health, from) = match prev {
                Some(p) => (p.totals, p.health, p.from),
                // New: watched from its first decision (or from now, when it has made none).
                None => (
                    (0, 0),
                    Health::Unknown,
                    changes.first().map_or(end, |c| c.0),
                ),
            };
            let from = from.clamp(minute, end);
            let mut r = GroupRollup {
                group: name.to_string(),
                start: minute,
                requests: totals.0.saturating_sub(before.0),
                failed_requests: totals.1.saturating_sub(before.1),
                ..GroupRollup::default()
            };
            if g.decides() {
                let down = down_intervals(health, &changes, from, end);
                let (down_ms, maintenance_ms) =
                    down_and_maintenance(calendar.as_ref(), [name, name], &down, from, end);
                r.observed_ms = end - from;
                r.down_ms = down_ms;
                r.maintenance_ms = maintenance_ms;
                r.switches = taken.iter().filter(|c| c.switch).count() as u64;
            }
            if r != (GroupRollup {
                group: r.group.clone(),
                start: r.start,
                ..GroupRollup::default()
            }) {
                store.write(Write::GroupMinute(r));
            }
            let health = changes.last().map_or(health, |c| c.1);
            next.insert(
                name.to_string(),
                Seen {
                    group: g,
                    totals,
                    health,
                    from: end,
                },
            );
        }
        inner.seen = next;
        inner.generation += 1;
    }

    /// The requests `group`'s proxy answered since the last slice, when the slicer has seen it
    /// (none before its first slice: then everything it answered is unwritten, from zero).
    pub fn unwritten(&self, group: &Group) -> Unwritten {
        let totals = group.proxy.totals();
        let inner = self.inner.lock().expect("group slices lock poisoned");
        let before = inner
            .seen
            .get(&group.cfg.name)
            .filter(|p| std::ptr::eq(Arc::as_ptr(&p.group), group))
            .map_or((0, 0), |p| p.totals);
        Unwritten {
            requests: totals.0.saturating_sub(before.0),
            failed: totals.1.saturating_sub(before.1),
            generation: inner.generation,
        }
    }
}
