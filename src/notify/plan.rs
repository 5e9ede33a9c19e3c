//! The planner: from an incident, its timeline and the time, every message due for it, each
//! with a deterministic key, so planning again (every tick, after a restart) finds the same
//! keys and the outbox ignores those it holds.
//!
//! Keys: `inc{ID}:declared`, `inc{ID}:update:{N}` (N-th update, at declared + N ×
//! `update_every`), `inc{ID}:escalated:{TIER}`, `inc{ID}:acknowledged`,
//! `inc{ID}:note:{UPDATE_ID}`, `inc{ID}:status_page`, `inc{ID}:resolved`.
//!
//! The rules, for the routes whose `match` the incident's labels satisfy (a route without
//! `match` takes every incident); nothing is planned when no route matches:
//!
//! - **declared**: each route declares at `started + route.wait`. When every matching route
//!   has the same `wait`, there is one declaration, `inc{ID}:declared`, to all their
//!   receivers. Otherwise each route has its own, `inc{ID}:declared:r{ROUTE_INDEX}` (the
//!   route's index in `notify.routes`), to those of its receivers that no route declaring
//!   earlier (or at the same time with a lower index) already told. A route whose wait had not
//!   passed when the incident resolved never declares, and an incident no route declared plans
//!   nothing at all, not even `resolved`. "Declared" below is the first declaration's time;
//!   "the routes' receivers at T" are those of the routes declared by T.
//! - **status_page**: once, with the first declaration, to the built-in receiver
//!   `status-page` only.
//! - **update:{N}**: at declared + N × `update_every` while the incident is open, to the
//!   routes' receivers at that time. Only the newest N due is planned: after a gap (a
//!   restart) the missed updates before it are not sent; once resolved, no update is planned.
//! - **escalated:{TIER}**: TIER is the tier's index in `notify.escalation` (0 is the first
//!   tier), at `started + tier.after` (not before the declaration), unless the incident was
//!   acknowledged at or before that time or resolved; to the tier's receivers, or the routes'
//!   when it lists none.
//! - **acknowledged**: once, when the incident has been acknowledged, at the acknowledgement
//!   (not before the declaration).
//! - **note:{UPDATE_ID}**: each update a person wrote (not automatic), except the first
//!   update of the timeline when a person wrote it (an incident declared by hand: that update
//!   is the declaration) and updates that resolve (RESOLVED says it).
//! - **resolved**: once per resolution, at the resolution; the first is `inc{ID}:resolved`.
//!   A component that fails again soon after resolving reopens its incident (flapping): the
//!   reopening is an update, `inc{ID}:reopened:{N}` (N = 1 for the first reopening), and the
//!   N-th resolution after it is `inc{ID}:resolved:{N}`. Resolutions and reopenings are read
//!   from the timeline's statuses (an update that is not `resolved` after one that is reopens).
//!
//! `acknowledged`, `note` and `resolved` go to the routes' receivers and to every tier's
//! receivers that were escalated to by then. Every due message is `suppressed` (recorded, not
//! sent) while the incident began in, or its component is in, a maintenance window.

use std::time::Duration;

use super::config::{NotifyConfig, Route, STATUS_PAGE_RECEIVER};
use super::Kind;
use crate::store::{Incident, IncidentStatus, IncidentUpdate, Millis};

/// One message due, before it is rendered per receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The key (see the module docs).
    pub key: String,
    /// What it says.
    pub kind: Kind,
    /// When it was due.
    pub at: Millis,
    /// Who gets it.
    pub receivers: Vec<String>,
    /// The escalation tier's index, for `escalated`.
    pub tier: Option<usize>,
    /// The person's update, for `note`.
    pub note: Option<i64>,
    /// Recorded, not sent (a maintenance window covers the incident).
    pub suppressed: bool,
}

/// What the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The incident.
    pub incident: &'a Incident,
    /// Its timeline, oldest first.
    pub updates: &'a [IncidentUpdate],
    /// Its labels as routes match them (`component`, `severity`, its first target's labels).
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Whether a maintenance window covers its component now.
    pub in_maintenance: bool,
    /// Now.
    pub now: Millis,
}

/// Every message due for `input` at `input.now` under `config`, oldest first.
pub fn plan(config: &NotifyConfig, input: &Input<'_>) -> Vec<Due> {
    let inc = input.incident;
    let now = input.now;
    let resolved = inc.resolved.filter(|r| *r <= now);
    let matching: Vec<(usize, &Route)> = config
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.matchers
                .iter()
                .all(|(k, v)| input.labels.get(k) == Some(v))
        })
        .collect();
    let declared: Vec<Declared> = matching
        .iter()
        .map(|(i, r)| Declared {
            index: *i,
            route: r,
            at: inc.started.saturating_add(ms(r.wait)),
        })
        .filter(|d| d.at <= now && resolved.is_none_or(|r| d.at <= r))
        .collect();
    let Some(first) = declared.iter().map(|d| d.at).min() else {
        return Vec::new();
    };
    let p = Planner {
        config,
        input,
        declared,
        first,
        resolved,
        suppressed: inc.in_maintenance || input.in_maintenance,
        key: format!("inc{}", inc.id),
    };
    let mut out = p.declarations(matching.iter().all(|(_, r)| r.wait == matching[0].1.wait));
    out.push(p.due(
        Kind::StatusPage,
        "status_page".into(),
        first,
        vec![STATUS_PAGE_RECEIVER.into()],
    ));
    out.extend(p.update());
    let escalated = p.escalations();
    if let Some(ack) = inc.acknowledged.filter(|a| *a <= now) {
        let at = ack.max(first);
        out.push(p.due(
            Kind::Acknowledged,
            "acknowledged".into(),
            at,
            p.told(at, &escalated),
        ));
    }
    out.extend(p.notes(&escalated));
    out.extend(p.resolutions(&escalated));
    out.extend(escalated);
    out.sort_by(|a, b| (a.at, rank(a.kind), &a.key).cmp(&(b.at, rank(b.kind), &b.key)));
    out
}

/// The escalation tier at `index` of `config`, as messages name it (`tier 2: service owner +
/// SRE lead`): tier 1 is the on-call, who get the declaration, so the first configured tier
/// is tier 2.
pub fn tier_text(config: &NotifyConfig, index: usize) -> Option<String> {
    let t = config.escalation.get(index)?;
    Some(format!("tier {}: {}", index + 2, t.who))
}

/// A matching route and when it declares.
struct Declared<'a> {
    index: usize,
    route: &'a Route,
    at: Millis,
}

struct Planner<'a> {
    config: &'a NotifyConfig,
    input: &'a Input<'a>,
    /// The routes declared by now, in config order.
    declared: Vec<Declared<'a>>,
    /// The first declaration.
    first: Millis,
    /// The resolution, if it is at or before now.
    resolved: Option<Millis>,
    suppressed: bool,
    /// `inc{ID}`.
    key: String,
}

impl Planner<'_> {
    fn due(&self, kind: Kind, key: String, at: Millis, receivers: Vec<String>) -> Due {
        Due {
            key: format!("{}:{key}", self.key),
            kind,
            at,
            receivers,
            tier: None,
            note: None,
            suppressed: self.suppressed,
        }
    }

    /// The receivers of the routes declared at or before `at`, in config order.
    fn routes_at(&self, at: Millis) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self.declared.iter().filter(|d| d.at <= at) {
            push_new(&mut out, &d.route.receivers);
        }
        out
    }

    /// The routes' receivers at `at` and those of the tiers escalated to by then.
    fn told(&self, at: Millis, escalated: &[Due]) -> Vec<String> {
        let mut out = self.routes_at(at);
        for e in escalated.iter().filter(|e| e.at <= at) {
            push_new(&mut out, &e.receivers);
        }
        out
    }

    fn declarations(&self, shared: bool) -> Vec<Due> {
        if shared {
            let at = self.first;
            return vec![self.due(Kind::Declared, "declared".into(), at, self.routes_at(at))];
        }
        let mut order: Vec<&Declared> = self.declared.iter().collect();
        order.sort_by_key(|d| (d.at, d.index));
        let mut told: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for d in order {
            let new: Vec<String> = d
                .route
                .receivers
                .iter()
                .filter(|r| !told.contains(r))
                .cloned()
                .collect();
            push_new(&mut told, &new);
            if !new.is_empty() {
                out.push(self.due(Kind::Declared, format!("declared:r{}", d.index), d.at, new));
            }
        }
        out
    }

    /// The newest update due, while open.
    fn update(&self) -> Option<Due> {
        let every = ms(self.config.update_every).max(1);
        if self.resolved.is_some() {
            return None;
        }
        let n = (self.input.now - self.first) / every;
        let at = self.first + n * every;
        // After a reopening, an update is due only past it: the reopening is the update then
        // (one due in the resolved gap would repeat it at the same moment).
        let (_, reopens) = episodes(self.input.updates, self.input.now);
        if reopens.last().is_some_and(|r| at <= *r) {
            return None;
        }
        (n >= 1).then(|| self.due(Kind::Update, format!("update:{n}"), at, self.routes_at(at)))
    }

    fn escalations(&self) -> Vec<Due> {
        let inc = self.input.incident;
        let ack = inc.acknowledged.filter(|a| *a <= self.input.now);
        let mut out = Vec::new();
        for (i, t) in self.config.escalation.iter().enumerate() {
            let at = inc.started.saturating_add(ms(t.after)).max(self.first);
            let stopped = ack.is_some_and(|a| a <= at) || self.resolved.is_some_and(|r| r <= at);
            if at > self.input.now || stopped {
                continue;
            }
            let receivers = if t.receivers.is_empty() {
                self.routes_at(at)
            } else {
                t.receivers.clone()
            };
            let mut d = self.due(Kind::Escalated, format!("escalated:{i}"), at, receivers);
            d.tier = Some(i);
            out.push(d);
        }
        out
    }

    fn notes(&self, escalated: &[Due]) -> Vec<Due> {
        let updates = self.input.updates;
        let by_hand = updates.first().is_some_and(|u| !u.automatic);
        updates
            .iter()
            .skip(usize::from(by_hand))
            .filter(|u| !u.automatic && u.status != IncidentStatus::Resolved)
            .filter(|u| u.at <= self.input.now)
            .map(|u| {
                let at = u.at.max(self.first);
                let mut d = self.due(
                    Kind::Note,
                    format!("note:{}", u.id),
                    at,
                    self.told(at, escalated),
                );
                d.note = Some(u.id);
                d
            })
            .collect()
    }

    /// RESOLVED per resolution and an update per reopening (see the module docs).
    fn resolutions(&self, escalated: &[Due]) -> Vec<Due> {
        let (ends, reopens) = episodes(self.input.updates, self.input.now);
        let mut out = Vec::new();
        let resolved_key = |j: usize| match j {
            0 => "resolved".to_string(),
            j => format!("resolved:{j}"),
        };
        for (j, at) in ends.iter().copied().chain(self.resolved).enumerate() {
            if at >= self.first {
                out.push(self.due(
                    Kind::Resolved,
                    resolved_key(j),
                    at,
                    self.told(at, escalated),
                ));
            }
        }
        for (j, at) in reopens.into_iter().enumerate() {
            if at >= self.first {
                let key = format!("reopened:{}", j + 1);
                out.push(self.due(Kind::Update, key, at, self.routes_at(at)));
            }
        }
        out
    }
}

/// From a timeline, the resolutions that were followed by a reopening, and the reopenings'
/// times (as many), up to `now`.
fn episodes(updates: &[IncidentUpdate], now: Millis) -> (Vec<Millis>, Vec<Millis>) {
    let (mut ends, mut reopens) = (Vec::new(), Vec::new());
    let mut end = None;
    for u in updates.iter().filter(|u| u.at <= now) {
        match (u.status == IncidentStatus::Resolved, end) {
            (true, None) => end = Some(u.at),
            (false, Some(e)) => {
                ends.push(e);
                reopens.push(u.at);
                end = None;
            }
            _ => {}
        }
    }
    (ends, reopens)
}

/// Appends each of `names` that `out` does not hold.
fn push_new(out: &mut Vec<String>, names: &[String]) {
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
}

/// Sort order of kinds due at the same time.
fn rank(k: Kind) -> u8 {
    match k {
        Kind::Declared => 0,
        Kind::StatusPage => 1,
        Kind::Escalated => 2,
        Kind::Acknowledged => 3,
        Kind::Note => 4,
        Kind::Update => 5,
        Kind::Resolved => 6,
        Kind::Test => 7,
    }
}

/// `d` in milliseconds (saturating).
fn ms(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
