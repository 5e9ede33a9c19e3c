//! Locations and k-of-n quorum: from every location's view of every target
//! ([`Observation`], as [`super::observe`] keeps them in `cluster_observations`) to one verdict
//! per target and failover group, and one state per location. Pure: no I/O, no clock.
//!
//! The rules, in order:
//! 1. A row older than the lease (its writer's heartbeat, see [`super::board`]) counts for
//!    nothing; a location whose newest row is older than the lease is **stale**: all its views
//!    are unknown (neither up nor down).
//! 2. A fresh location is **degraded** when it sees more than half of the targets it has a
//!    view of down *alone* — down while most of the other fresh locations with a view of the
//!    same target see it up. Its own network is the likelier culprit: its views are left out
//!    (unknown) so its outage pages nothing.
//! 3. A target's verdict over its locations (n of them, [`QuorumConfig::effective`]) is
//!    **down** when at least k of them see it down, **up** when fewer than k could (downs plus
//!    unknowns < k), **unknown** otherwise.
//! 4. A failover group is down when every instance check is down, up when any is up, unknown
//!    otherwise.
//!
//! [`Verdicts::speaker`] names the one location that turns quorum transitions into incidents
//! and notifications, so that three locations page once, not three times.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::quorum::QuorumConfig;
use crate::state::Health;

/// One location's view of one target, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The location that probes (`--location`).
    pub location: String,
    /// The target's name.
    pub target: String,
    /// What this location sees (after its fall/rise thresholds).
    pub health: Health,
    /// Since when, in milliseconds since the Unix epoch.
    pub since_ms: i64,
    /// The reason of the last failure, when down.
    pub reason: Option<String>,
    /// The last heartbeat of the member that wrote this row, ms since the epoch.
    pub updated_ms: i64,
}

/// What a location is, as the quorum sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationHealth {
    /// Fresh and agreeing with the others: its views count.
    Ok,
    /// Fresh, but it sees most of its targets down alone: its views are left out.
    Degraded,
    /// No row newer than the lease: its views are unknown.
    Stale,
}

impl LocationHealth {
    /// Lower-case name for JSON and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            LocationHealth::Ok => "ok",
            LocationHealth::Degraded => "degraded",
            LocationHealth::Stale => "stale",
        }
    }
}

/// One location's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationState {
    /// The location's name.
    pub name: String,
    /// Ok, degraded or stale.
    pub health: LocationHealth,
    /// Targets it has an up or down view of.
    pub targets: usize,
    /// Of those, the ones it sees down.
    pub down: usize,
    /// Of those, the ones it sees down while most other locations see them up.
    pub down_alone: usize,
    /// Its newest row, ms since the epoch.
    pub updated_ms: i64,
}

/// The quorum's verdict on one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetVerdict {
    /// The target's name.
    pub target: String,
    /// Down when ≥ k locations see it down; up when fewer than k could; unknown otherwise.
    #[serde(serialize_with = "health_str")]
    pub health: Health,
    /// Locations that must see it down.
    pub k: usize,
    /// The locations that count for it (n = its length).
    pub locations: Vec<String>,
    /// Those seeing it down (views that count).
    pub down: Vec<String>,
    /// Those seeing it up.
    pub up: Vec<String>,
    /// The most common failure reason among the locations seeing it down.
    pub reason: Option<String>,
    /// The earliest `since` of the views agreeing with the verdict (ms since the epoch).
    pub since_ms: Option<i64>,
}

fn health_str<S: serde::Serializer>(h: &Health, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(h.as_str())
}

/// Every verdict of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdicts {
    /// By target name.
    pub targets: BTreeMap<String, TargetVerdict>,
    /// Failover groups by name.
    #[serde(serialize_with = "groups_str")]
    pub groups: BTreeMap<String, Health>,
    /// Every location known (configured or seen), by name.
    pub locations: BTreeMap<String, LocationState>,
}

fn groups_str<S: serde::Serializer>(g: &BTreeMap<String, Health>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut m = s.serialize_map(Some(g.len()))?;
    for (k, v) in g {
        m.serialize_entry(k, v.as_str())?;
    }
    m.end()
}

impl Verdicts {
    /// The location that speaks for the quorum (opens incidents, sends notifications): the
    /// first, by name, of the fresh locations that are not degraded. Every location computes
    /// the same answer from the same rows, so exactly one speaks once they agree.
    pub fn speaker(&self) -> Option<&str> {
        self.locations
            .values()
            .find(|l| l.health == LocationHealth::Ok)
            .map(|l| l.name.as_str())
    }

    /// Whether `location` is degraded.
    pub fn degraded(&self, location: &str) -> bool {
        self.locations
            .get(location)
            .is_some_and(|l| l.health == LocationHealth::Degraded)
    }
}

/// Inputs of [`evaluate`] besides the observations.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The config's quorum settings.
    pub quorum: &'a QuorumConfig,
    /// Failover groups: name → instance check targets.
    pub groups: &'a [(String, Vec<String>)],
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// A location's rows older than this (ms) make it stale.
    pub lease_ms: i64,
}

/// The verdicts from every location's observations.
pub fn evaluate(obs: &[Observation], cx: Context<'_>) -> Verdicts {
    // Location → its newest row.
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for o in obs {
        let e = newest.entry(o.location.as_str()).or_insert(i64::MIN);
        *e = (*e).max(o.updated_ms);
    }
    let fresh = |l: &str| {
        newest
            .get(l)
            .is_some_and(|u| cx.now_ms.saturating_sub(*u) <= cx.lease_ms)
    };
    // Target → location → view, fresh rows of fresh locations only, up or down only.
    let mut views: BTreeMap<&str, BTreeMap<&str, &Observation>> = BTreeMap::new();
    let live = |o: &&Observation| cx.now_ms.saturating_sub(o.updated_ms) <= cx.lease_ms;
    for o in obs.iter().filter(|o| fresh(&o.location)).filter(live) {
        if matches!(o.health, Health::Up | Health::Down) {
            views.entry(&o.target).or_default().insert(&o.location, o);
        }
    }
    let locations = location_states(&views, &newest, cx, &fresh);
    let known: Vec<String> = locations.keys().cloned().collect();
    let counts = |l: &str| {
        locations
            .get(l)
            .is_some_and(|s| s.health == LocationHealth::Ok)
    };
    let mut targets = BTreeMap::new();
    let names: BTreeSet<&str> = obs.iter().map(|o| o.target.as_str()).collect();
    for t in names {
        let eff = cx.quorum.effective(t, &known);
        let empty = BTreeMap::new();
        let seen = views.get(t).unwrap_or(&empty);
        let mut v = TargetVerdict {
            target: t.to_string(),
            health: Health::Unknown,
            k: eff.k,
            locations: eff.locations.to_vec(),
            down: Vec::new(),
            up: Vec::new(),
            reason: None,
            since_ms: None,
        };
        for l in eff.locations.iter() {
            match seen.get(l.as_str()) {
                Some(o) if counts(l) && o.health == Health::Down => v.down.push(l.clone()),
                Some(o) if counts(l) && o.health == Health::Up => v.up.push(l.clone()),
                _ => {}
            }
        }
        let n = eff.locations.len();
        let unknown = n - v.down.len() - v.up.len();
        v.health = if n > 0 && v.down.len() >= eff.k {
            Health::Down
        } else if n > 0 && v.down.len() + unknown < eff.k {
            Health::Up
        } else {
            Health::Unknown
        };
        let agreeing = match v.health {
            Health::Down => &v.down,
            Health::Up => &v.up,
            Health::Unknown => &v.down,
        };
        v.since_ms = agreeing.iter().map(|l| seen[l.as_str()].since_ms).min();
        v.reason = common_reason(
            v.down
                .iter()
                .filter_map(|l| seen[l.as_str()].reason.as_deref()),
        );
        targets.insert(t.to_string(), v);
    }
    let groups = cx
        .groups
        .iter()
        .map(|(g, checks)| (g.clone(), group_health(checks, &targets)))
        .collect();
    Verdicts {
        targets,
        groups,
        locations,
    }
}

/// Every location's state: configured ones (stale when silent) and every one seen.
fn location_states(
    views: &BTreeMap<&str, BTreeMap<&str, &Observation>>,
    newest: &BTreeMap<&str, i64>,
    cx: Context<'_>,
    fresh: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, LocationState> {
    let mut names: BTreeSet<&str> = newest.keys().copied().collect();
    if let Some(ls) = &cx.quorum.global.locations {
        names.extend(ls.iter().map(String::as_str));
    }
    let mut out = BTreeMap::new();
    for l in names {
        let mut s = LocationState {
            name: l.to_string(),
            health: LocationHealth::Stale,
            targets: 0,
            down: 0,
            down_alone: 0,
            updated_ms: newest.get(l).copied().unwrap_or(0),
        };
        if fresh(l) {
            for seen in views.values() {
                let Some(mine) = seen.get(l) else { continue };
                s.targets += 1;
                if mine.health != Health::Down {
                    continue;
                }
                s.down += 1;
                let others = seen.iter().filter(|(o, _)| **o != l);
                let (up, down) = others.fold((0, 0), |(u, d), (_, o)| match o.health {
                    Health::Up => (u + 1, d),
                    _ => (u, d + 1),
                });
                if up > down {
                    s.down_alone += 1;
                }
            }
            s.health = if s.down_alone * 2 > s.targets {
                LocationHealth::Degraded
            } else {
                LocationHealth::Ok
            };
        }
        out.insert(l.to_string(), s);
    }
    out
}

/// A group is down when every instance check is down, up when one is up.
fn group_health(checks: &[String], targets: &BTreeMap<String, TargetVerdict>) -> Health {
    let hs: Vec<Health> = checks
        .iter()
        .map(|c| targets.get(c).map_or(Health::Unknown, |v| v.health))
        .collect();
    if hs.contains(&Health::Up) {
        Health::Up
    } else if !hs.is_empty() && hs.iter().all(|h| *h == Health::Down) {
        Health::Down
    } else {
        Health::Unknown
    }
}

/// The most frequent reason (the first by name on a tie).
fn common_reason<'a>(reasons: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *count.entry(r).or_default() += 1;
    }
    let best = count.values().copied().max()?;
    count
        .into_iter()
        .find(|(_, c)| *c == best)
        .map(|(r, _)| r.to_string())
}

/// A change of a target's or group's quorum verdict between two evaluations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumTransition {
    /// Target (or group) name.
    pub name: String,
    /// True for a failover group.
    pub group: bool,
    /// The verdict before.
    pub from: Health,
    /// The verdict now.
    pub to: Health,
    /// The reason of a down verdict.
    pub reason: Option<String>,
    /// Since when (ms since the epoch), from the agreeing views.
    pub since_ms: Option<i64>,
}

/// The last decided (up or down) verdict of every target and group: what a new evaluation is
/// compared with. Unknown never replaces a decision (it is an absence of news), so a verdict
/// that goes down → unknown → down is one transition, not two.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    targets: BTreeMap<String, Health>,
    groups: BTreeMap<String, Health>,
    /// The evaluation last stepped through [`Decided::step_shared`].
    last: Option<std::sync::Arc<Verdicts>>,
}

impl Decided {
    /// [`Decided::step`], or nothing at all when `now` is the very evaluation stepped last
    /// (the observer hands the same `Arc` on until something changes).
    pub fn step_shared(&mut self, now: &std::sync::Arc<Verdicts>) -> Vec<QuorumTransition> {
        if self
            .last
            .as_ref()
            .is_some_and(|l| std::sync::Arc::ptr_eq(l, now))
        {
            return Vec::new();
        }
        self.last = Some(now.clone());
        self.step(now)
    }

    /// The transitions from the last decisions to `now`, recording them. Targets and groups
    /// gone from `now` are forgotten without a transition.
    pub fn step(&mut self, now: &Verdicts) -> Vec<QuorumTransition> {
        let mut out = Vec::new();
        self.targets.retain(|t, _| now.targets.contains_key(t));
        self.groups.retain(|g, _| now.groups.contains_key(g));
        for (name, v) in &now.targets {
            if let Some(from) = decide(&mut self.targets, name, v.health) {
                out.push(QuorumTransition {
                    name: name.clone(),
                    group: false,
                    from,
                    to: v.health,
                    reason: v.reason.clone(),
                    since_ms: v.since_ms,
                });
            }
        }
        for (name, h) in &now.groups {
            if let Some(from) = decide(&mut self.groups, name, *h) {
                out.push(QuorumTransition {
                    name: name.clone(),
                    group: true,
                    from,
                    to: *h,
                    reason: None,
                    since_ms: None,
                });
            }
        }
        out
    }

    /// The last decided verdict of `target` (unknown before the first).
    pub fn target(&self, target: &str) -> Health {
        self.targets.get(target).copied().unwrap_or(Health::Unknown)
    }
}

/// Records `h` for `name` when it is a new decision; the previous one, if so.
fn decide(map: &mut BTreeMap<String, Health>, name: &str, h: Health) -> Option<Health> {
    if h == Health::Unknown {
        return None;
    }
    let from = map.get(name).copied().unwrap_or(Health::Unknown);
    if from == h {
        return None;
    }
    map.insert(name.to_string(), h);
    Some(from)
}

#[cfg(test)]
#[path = "quorum_tests.rs"]
mod tests;
