//! Incidents: one per component outage, opened when a target goes down, written to by
//! watchfire (detected, another target down, traffic moved, recovered) and by people (status,
//! message, impact), resolved with the runbook's figures ([`figures`]).
//!
//! A target's component is its failover group for a group's check target
//! (`GROUP/INSTANCE-INDEX`), else its `component` label, else its name ([`component_of`]).
//! While a component's incident is open, another of its targets going down joins it. The
//! incident resolves when every target that failed in it is up again. Open incidents live in the
//! store: the manager reads them back when it starts ([`Incidents::load`]), so an incident goes
//! on across a restart, and it re-reads an incident before each change, so a change made through
//! the API ([`manual`]) is never undone.
//!
//! A component that goes down again within `incidents.reopen_within` (default 5m) of its last
//! incident's resolution reopens that incident (resolution cleared, status investigating, an
//! automatic "Down again: ..." update) instead of opening another: a flapping component makes
//! one incident with updates, not a stream of incidents.
//!
//! The manager is fed by whoever owns the events (the runtime's glue) through
//! [`Incidents::on_transition`] and [`Incidents::on_switch`]; it learns live counts through the
//! small [`Counters`] trait the app supplies.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::store::{
    Impact, Incident, IncidentQuery, IncidentStatus, IncidentUpdate, Level, MaintenanceCalendar,
    Millis, NoMaintenance, Store, StoreError, UpdateKind,
};

pub mod client;
pub mod config;
pub mod figures;
pub mod maintenance;
pub mod manual;
pub mod view;

pub use config::IncidentsConfig;
pub use figures::Figures;

/// The component of the target `name` with `labels`, given the failover groups' names.
pub fn component_of(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    groups: &[&str],
) -> String {
    component_ref(name, labels, groups).to_string()
}

/// [`component_of`] borrowed from the target's name or labels, for a look at every target
/// that should not allocate.
pub fn component_ref<'a>(
    name: &'a str,
    labels: &'a std::collections::BTreeMap<String, String>,
    groups: &[&str],
) -> &'a str {
    if let Some((g, _)) = name.split_once('/') {
        if groups.contains(&g) {
            return g;
        }
    }
    labels.get("component").map_or(name, String::as_str)
}

/// Every target's and group's component, by name (a group is its own component), from the
/// targets' names and labels and the groups' names.
pub fn components<'a>(
    targets: impl Iterator<Item = (&'a str, &'a std::collections::BTreeMap<String, String>)>,
    groups: &[&str],
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = targets
        .map(|(name, labels)| (name.to_string(), component_of(name, labels, groups)))
        .collect();
    for g in groups {
        out.insert(g.to_string(), g.to_string());
    }
    out
}

/// Live counts the app can read: a target's failed probes, a group's proxied requests not yet
/// in the store.
pub trait Counters: Send + Sync {
    /// Failed probes of `target` since this process started, if it is known.
    fn probe_failures(&self, target: &str) -> Option<u64>;
    /// The requests the failover proxy of group `group` answered that are not in the store
    /// yet; none when there is no such group or it has no proxy.
    fn unwritten(&self, group: &str) -> Option<Unwritten>;
}

/// Requests a group's proxy answered that the store does not hold yet (the app queues them in
/// slices; [`figures_inputs`] adds these to what the store holds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unwritten {
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub failed: u64,
    /// Slices queued so far: a reader that sees the same count before and after reading the
    /// store read a consistent pair.
    pub generation: u64,
}

/// No live counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCounters;

impl Counters for NoCounters {
    fn probe_failures(&self, _: &str) -> Option<u64> {
        None
    }
    fn unwritten(&self, _: &str) -> Option<Unwritten> {
        None
    }
}

/// A target's health changed.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetEvent {
    /// Target name.
    pub target: String,
    /// Its component ([`component_of`]).
    pub component: String,
    /// Down (true) or up.
    pub down: bool,
    /// When.
    pub at: Millis,
    /// The failure's reason, when down.
    pub reason: Option<String>,
    /// The failure's detail (redacted), when down.
    pub detail: Option<String>,
    /// The failures that took it down (its `down_after`), counted before the event.
    pub streak: u32,
}

/// A failover group moved its traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchEvent {
    /// Group name.
    pub group: String,
    /// The instance now receiving traffic (base URL), none for none.
    pub to: Option<String>,
    /// Why (`active_down`, `failback`, `manual`, ...).
    pub reason: String,
    /// When.
    pub at: Millis,
}

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// No incident with that id.
    #[error("no incident with id {0}")]
    NotFound(i64),
    /// A bad value.
    #[error("{field}: {message}")]
    Invalid {
        /// The field or parameter.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// What the manager keeps of an open incident beyond the store's row.
#[derive(Debug, Clone, Default)]
struct Live {
    /// Targets down now.
    down: BTreeSet<String>,
    /// Each failed target's failure counter when it went down, less its streak.
    failures_at: HashMap<String, u64>,
    /// Since when every target is up again, while `resolve_after` holds the resolution.
    up_since: Option<Millis>,
}

/// How many of the newest incidents [`Incidents::load`] reads for ones to reopen.
const RECENT_LOADED: usize = 500;

/// How far before an outage's first minute the request rate is reckoned.
const RATE_WINDOW_MS: Millis = 5 * 60_000;
/// The least watched time a rate is computed over.
const RATE_MIN_MS: Millis = 10_000;
/// Reads of the store and the unwritten requests tried for a consistent pair.
const CONSISTENT_TRIES: usize = 3;

/// The incident manager.
pub struct Incidents {
    store: Store,
    config: IncidentsConfig,
    calendar: Arc<dyn MaintenanceCalendar>,
    counters: Arc<dyn Counters>,
    live: HashMap<i64, Live>,
    /// Per component, its last resolved incident's id (a candidate for reopening).
    recent: HashMap<String, i64>,
}

impl std::fmt::Debug for Incidents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incidents")
            .field("open", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Incidents {
    /// A manager over `store` that continues the incidents left open there (each of their
    /// targets counted down until it is seen up).
    pub async fn load(
        store: Store,
        config: IncidentsConfig,
        counters: Arc<dyn Counters>,
    ) -> Result<Incidents, StoreError> {
        let open = store
            .incidents(&IncidentQuery {
                open_only: true,
                ..IncidentQuery::default()
            })
            .await?;
        // Incidents resolved lately, newest first: each component's may be reopened.
        let mut recent = HashMap::new();
        let latest = IncidentQuery {
            limit: RECENT_LOADED,
            ..IncidentQuery::default()
        };
        for i in store.incidents(&latest).await? {
            if i.resolved.is_some() {
                recent.entry(i.component.clone()).or_insert(i.id);
            }
        }
        let live = open
            .into_iter()
            .map(|i| {
                let l = Live {
                    down: i.targets.iter().cloned().collect(),
                    failures_at: i.targets.iter().map(|t| (t.clone(), 0)).collect(),
                    ..Live::default()
                };
                (i.id, l)
            })
            .collect();
        Ok(Incidents {
            store,
            config,
            calendar: Arc::new(NoMaintenance),
            counters,
            live,
            recent,
        })
    }

    /// Uses `config` from now on (after a reload).
    pub fn set_config(&mut self, config: IncidentsConfig) {
        self.config = config;
    }

    /// Uses `calendar` from now on.
    pub fn set_calendar(&mut self, calendar: Arc<dyn MaintenanceCalendar>) {
        self.calendar = calendar;
    }

    /// The ids of the incidents it holds open.
    pub fn open_ids(&self) -> Vec<i64> {
        let mut v: Vec<i64> = self.live.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The open incident of `component`, from the store.
    async fn open_of(&self, component: &str) -> Result<Option<Incident>, StoreError> {
        let open = self
            .store
            .incidents(&IncidentQuery {
                open_only: true,
                component: Some(component.to_string()),
                ..IncidentQuery::default()
            })
            .await?;
        Ok(open.into_iter().next())
    }

    /// Feeds a target's change of health.
    pub async fn on_transition(&mut self, e: &TargetEvent) -> Result<(), StoreError> {
        if e.down {
            self.on_down(e).await
        } else {
            self.on_up(&e.target, e.at).await
        }
    }

    async fn on_down(&mut self, e: &TargetEvent) -> Result<(), StoreError> {
        let failures = self
            .counters
            .probe_failures(&e.target)
            .map(|n| n.saturating_sub(u64::from(e.streak)));
        let what = match (&e.reason, &e.detail) {
            (Some(r), Some(d)) => format!("{r}: {d}"),
            (Some(r), None) => r.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "failed".to_string(),
        };
        if let Some(mut inc) = self.open_of(&e.component).await? {
            let live = self.live.entry(inc.id).or_default();
            live.down.insert(e.target.clone());
            // Down again within the hold: the incident goes on as if it had not come up.
            live.up_since = None;
            if inc.targets.contains(&e.target) {
                return Ok(());
            }
            live.failures_at
                .insert(e.target.clone(), failures.unwrap_or(0));
            inc.targets.push(e.target.clone());
            self.store.save_incident(&inc).await?;
            let msg = format!("{} is down too ({what})", e.target);
            self.auto_update(&inc, e.at, UpdateKind::AlsoDown, msg)
                .await?;
            return Ok(());
        }
        if let Some(inc) = self.reopenable(&e.component, e.at).await? {
            return self.reopen(inc, e, failures.unwrap_or(0), &what).await;
        }
        let in_maintenance = self.calendar.covered(&e.target, e.at, e.at + 1) > 0
            || self.calendar.covered(&e.component, e.at, e.at + 1) > 0;
        let inc = Incident {
            id: 0,
            component: e.component.clone(),
            title: format!("{} is down", e.component),
            status: IncidentStatus::Investigating,
            impact: Impact::Major,
            started: e.at,
            resolved: None,
            targets: vec![e.target.clone()],
            in_maintenance,
            figures: None,
            acknowledged: None,
            root_cause: None,
            resolution: None,
        };
        let id = self.store.open_incident(&inc).await?;
        let inc = Incident { id, ..inc };
        let live = Live {
            down: [e.target.clone()].into(),
            failures_at: [(e.target.clone(), failures.unwrap_or(0))].into(),
            up_since: None,
        };
        self.live.insert(id, live);
        let mut msg = format!("Detected: {} is down ({what})", e.target);
        if in_maintenance {
            msg.push_str("; inside a maintenance window");
        }
        self.auto_update(&inc, e.at, UpdateKind::Detected, msg)
            .await?;
        tracing::warn!(incident = id, component = %e.component, target = %e.target, "incident opened");
        Ok(())
    }

    async fn on_up(&mut self, target: &str, at: Millis) -> Result<(), StoreError> {
        let ids: Vec<i64> = self
            .live
            .iter()
            .filter(|(_, l)| l.down.contains(target))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let live = self.live.get_mut(&id).expect("listed above");
            live.down.remove(target);
            if !live.down.is_empty() {
                continue;
            }
            if !self.config.resolve_after.is_zero() {
                live.up_since.get_or_insert(at);
                continue;
            }
            let live = self.live.remove(&id).expect("listed above");
            let Some(inc) = self.store.incident(id).await? else {
                continue;
            };
            if inc.resolved.is_some() {
                // Resolved by hand: the recovery adds nothing.
                self.recent.insert(inc.component.clone(), inc.id);
                continue;
            }
            self.resolve(inc, &live, at).await?;
        }
        Ok(())
    }

    /// Resolves the incidents whose targets have all stayed up for `resolve_after` by `now`,
    /// as of when they came up (called on the feed's tick).
    pub async fn settle(&mut self, now: Millis) -> Result<(), StoreError> {
        let hold = Millis::try_from(self.config.resolve_after.as_millis()).unwrap_or(Millis::MAX);
        let due: Vec<(i64, Millis)> = self
            .live
            .iter()
            .filter_map(|(id, l)| l.up_since.map(|t| (*id, t)))
            .filter(|(_, t)| now.saturating_sub(*t) >= hold)
            .collect();
        for (id, at) in due {
            let live = self.live.remove(&id).expect("listed above");
            let Some(inc) = self.store.incident(id).await? else {
                continue;
            };
            if inc.resolved.is_some() {
                self.recent.insert(inc.component.clone(), inc.id);
                continue;
            }
            self.resolve(inc, &live, at).await?;
        }
        Ok(())
    }

    /// The resolved incident of `component` that its going down at `at` reopens: its last,
    /// if that resolved (and still is) at most `reopen_within` before `at`.
    async fn reopenable(
        &self,
        component: &str,
        at: Millis,
    ) -> Result<Option<Incident>, StoreError> {
        let within = Millis::try_from(self.config.reopen_within.as_millis()).unwrap_or(Millis::MAX);
        let Some(id) = self.recent.get(component).filter(|_| within > 0) else {
            return Ok(None);
        };
        let inc = self.store.incident(*id).await?;
        Ok(inc.filter(|i| i.resolved.is_some_and(|r| r <= at && at - r <= within)))
    }

    /// Reopens `inc`, resolved lately, because its component's `e.target` is down again.
    async fn reopen(
        &mut self,
        mut inc: Incident,
        e: &TargetEvent,
        failures: u64,
        what: &str,
    ) -> Result<(), StoreError> {
        let after = figures::human(e.at - inc.resolved.unwrap_or(e.at));
        inc.resolved = None;
        inc.status = IncidentStatus::Investigating;
        inc.figures = None;
        if !inc.targets.contains(&e.target) {
            inc.targets.push(e.target.clone());
        }
        self.store.save_incident(&inc).await?;
        self.recent.remove(&inc.component);
        let live = Live {
            down: [e.target.clone()].into(),
            failures_at: [(e.target.clone(), failures)].into(),
            up_since: None,
        };
        self.live.insert(inc.id, live);
        let msg = format!(
            "Down again: {} is down ({what}), {after} after it recovered",
            e.target
        );
        self.auto_update(&inc, e.at, UpdateKind::DownAgain, msg)
            .await?;
        tracing::warn!(incident = inc.id, component = %inc.component, target = %e.target, "incident reopened");
        Ok(())
    }

    /// Stops waiting for targets that are no longer configured (`watched` says which names
    /// still are: targets and failover groups): each leaves the open incidents it was down in,
    /// with an automatic update saying so, and an incident left with no target down resolves
    /// at `at`, saying its targets were removed rather than that they recovered. Without this,
    /// an incident whose target was taken out of the config would stay open for ever.
    pub async fn forget_removed(
        &mut self,
        watched: &(dyn Fn(&str) -> bool + Sync),
        at: Millis,
    ) -> Result<(), StoreError> {
        let mut ids: Vec<i64> = self
            .live
            .iter()
            .filter(|(_, l)| l.down.iter().any(|t| !watched(t)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let live = self.live.get_mut(&id).expect("listed above");
            let gone: Vec<String> = live.down.iter().filter(|t| !watched(t)).cloned().collect();
            for t in &gone {
                live.down.remove(t);
            }
            let still_down = !live.down.is_empty();
            let Some(inc) = self.store.incident(id).await? else {
                self.live.remove(&id);
                continue;
            };
            let msg = format!(
                "{} removed from the configuration: no longer watched",
                gone.join(", ")
            );
            self.update(&inc, at, None, msg).await?;
            if still_down {
                continue;
            }
            let live = self.live.remove(&id).expect("listed above");
            if inc.resolved.is_some() {
                continue;
            }
            let msg = format!(
                "Closed after {}: its targets were removed from the configuration before they recovered",
                figures::human(at - inc.started)
            );
            self.resolve_with(inc, &live, at, msg).await?;
        }
        Ok(())
    }

    /// Resolves `inc` at `at` with its figures and the automatic "recovered" update.
    async fn resolve(&mut self, inc: Incident, live: &Live, at: Millis) -> Result<(), StoreError> {
        let msg = format!("Recovered after {}", figures::human(at - inc.started));
        self.resolve_with(inc, live, at, msg).await
    }

    /// Resolves `inc` at `at` with its figures and `message` as the resolving update.
    async fn resolve_with(
        &mut self,
        mut inc: Incident,
        live: &Live,
        at: Millis,
        message: String,
    ) -> Result<(), StoreError> {
        let mut inputs =
            figures_inputs(&self.store, &*self.calendar, &*self.counters, &inc, at).await?;
        inputs.failed_probes_seen = inc
            .targets
            .iter()
            .filter_map(|t| {
                let now = self.counters.probe_failures(t)?;
                Some(now.saturating_sub(*live.failures_at.get(t)?))
            })
            .sum();
        let f = Figures::compute(&inputs, &self.config);
        inc.status = IncidentStatus::Resolved;
        inc.resolved = Some(at);
        inc.figures = Some(f.to_json());
        self.store.save_incident(&inc).await?;
        self.recent.insert(inc.component.clone(), inc.id);
        self.auto_update(&inc, at, UpdateKind::Recovered, message)
            .await?;
        tracing::info!(incident = inc.id, component = %inc.component, "incident resolved");
        Ok(())
    }

    /// Feeds a failover switch: an update on the group's open incident, if any.
    pub async fn on_switch(&mut self, e: &SwitchEvent) -> Result<(), StoreError> {
        let Some(inc) = self.open_of(&e.group).await? else {
            return Ok(());
        };
        let when = clock(e.at);
        let (kind, msg) = match &e.to {
            Some(to) => (
                UpdateKind::TrafficMoved,
                format!("Traffic moved to {to} at {when} ({})", e.reason),
            ),
            None => (
                UpdateKind::NoneUp,
                format!("No instance is up at {when}: the proxy answers 503"),
            ),
        };
        self.auto_update(&inc, e.at, kind, msg).await
    }

    async fn auto_update(
        &self,
        inc: &Incident,
        at: Millis,
        kind: UpdateKind,
        message: String,
    ) -> Result<(), StoreError> {
        self.update(inc, at, Some(kind), message).await
    }

    /// An automatic update on `inc`'s timeline (`kind` `None`: one no message is built from).
    async fn update(
        &self,
        inc: &Incident,
        at: Millis,
        kind: Option<UpdateKind>,
        message: String,
    ) -> Result<(), StoreError> {
        let u = IncidentUpdate {
            id: 0,
            incident: inc.id,
            at,
            status: inc.status,
            message,
            automatic: true,
            kind,
        };
        self.store.add_update(&u).await.map(drop)
    }
}

/// `HH:MM:SS` (UTC) of `at`.
pub fn clock(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The figures' inputs the store, the calendar and the live counts give for `inc` resolved
/// (or looked at) at `at`: failed probes from the targets' minute rollups; when the component
/// is a failover group with a proxy, the requests it answered from the group's rollups (from
/// the minute the incident started) plus those not written yet, and the request rate over the
/// minutes before the incident's first minute. All from the store, so an incident that spans
/// a restart keeps its numbers.
pub async fn figures_inputs(
    store: &Store,
    calendar: &dyn MaintenanceCalendar,
    counters: &dyn Counters,
    inc: &Incident,
    at: Millis,
) -> Result<figures::Inputs, StoreError> {
    let from = inc.started - inc.started.rem_euclid(Level::Minute.millis());
    let mut rolled = 0;
    for t in &inc.targets {
        rolled += store
            .rollups(Level::Minute, from, at, Some(t))
            .await?
            .iter()
            .map(|r| r.failures)
            .sum::<u64>();
    }
    let proxied = proxied(store, counters, &inc.component, from, at).await?;
    let proxy_rate = match proxied {
        Some(_) => rate_before(store, &inc.component, from).await?,
        None => None,
    };
    Ok(figures::Inputs {
        duration_ms: at - inc.started,
        maintenance_ms: calendar.covered(&inc.component, inc.started, at),
        failed_probes_rollups: rolled,
        proxied,
        proxy_rate,
        ..figures::Inputs::default()
    })
}

/// The requests group `group`'s proxy answered from `from` (a minute's start) to `at`, and
/// those answered 5xx: the group's rollups plus what is not written yet; none when `group` is
/// not a group with a proxy.
async fn proxied(
    store: &Store,
    counters: &dyn Counters,
    group: &str,
    from: Millis,
    at: Millis,
) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(mut live) = counters.unwritten(group) else {
        return Ok(None);
    };
    let minute = Level::Minute.millis();
    let to = at - at.rem_euclid(minute) + minute;
    let mut sum = (0, 0);
    for _ in 0..CONSISTENT_TRIES {
        // What was queued before `live` was read is in the store once flushed.
        store.flush().await;
        sum = (0, 0);
        for (level, a, b) in crate::store::pieces(from, to) {
            for r in store.group_rollups(level, a, b, Some(group)).await? {
                sum.0 += r.requests;
                sum.1 += r.failed_requests;
            }
        }
        let again = counters.unwritten(group).unwrap_or(live);
        if again.generation == live.generation {
            break;
        }
        // A slice was queued meanwhile: read both again.
        live = again;
    }
    Ok(Some((sum.0 + live.requests, sum.1 + live.failed)))
}

/// Requests/s of group `group`'s proxy over the minutes (at most [`RATE_WINDOW_MS`]) before
/// `first`, the outage's first minute; none with less than [`RATE_MIN_MS`] watched.
async fn rate_before(store: &Store, group: &str, first: Millis) -> Result<Option<f64>, StoreError> {
    let rows = store
        .group_rollups(Level::Minute, first - RATE_WINDOW_MS, first, Some(group))
        .await?;
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let watched: i64 = rows.iter().map(|r| r.observed_ms).sum();
    Ok((watched >= RATE_MIN_MS).then(|| requests as f64 * 1000.0 / watched as f64))
}

#[cfg(test)]
mod tests;
