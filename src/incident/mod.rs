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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::store::{
    Impact, Incident, IncidentQuery, IncidentStatus, IncidentUpdate, Level, MaintenanceCalendar,
    Millis, NoMaintenance, Store, StoreError,
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
    if let Some((g, _)) = name.split_once('/') {
        if groups.contains(&g) {
            return g.to_string();
        }
    }
    labels
        .get("component")
        .cloned()
        .unwrap_or_else(|| name.to_string())
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

/// Live counts the app can read: a target's failed probes, a group's proxied requests.
pub trait Counters: Send + Sync {
    /// Failed probes of `target` since this process started, if it is known.
    fn probe_failures(&self, target: &str) -> Option<u64>;
    /// Requests the proxy of group `group` answered since this process started: (all, 5xx);
    /// none when there is no such group or it has no proxy.
    fn proxied(&self, group: &str) -> Option<(u64, u64)>;
}

/// No live counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCounters;

impl Counters for NoCounters {
    fn probe_failures(&self, _: &str) -> Option<u64> {
        None
    }
    fn proxied(&self, _: &str) -> Option<(u64, u64)> {
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
    /// The proxy's (all, 5xx) when the incident opened.
    proxied_at: Option<(u64, u64)>,
    /// Requests/s the proxy measured before the outage.
    rate: Option<f64>,
    /// Since when every target is up again, while `resolve_after` holds the resolution.
    up_since: Option<Millis>,
}

/// How many of the newest incidents [`Incidents::load`] reads for ones to reopen.
const RECENT_LOADED: usize = 500;

/// How long proxy samples are kept for the rate before an outage.
const RATE_WINDOW_MS: Millis = 5 * 60_000;
/// The shortest sampled span a rate is computed over.
const RATE_MIN_MS: Millis = 10_000;

/// The incident manager.
pub struct Incidents {
    store: Store,
    config: IncidentsConfig,
    calendar: Arc<dyn MaintenanceCalendar>,
    counters: Arc<dyn Counters>,
    live: HashMap<i64, Live>,
    /// Per group: (when, proxied requests) samples, oldest first.
    samples: HashMap<String, VecDeque<(Millis, u64)>>,
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
            samples: HashMap::new(),
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

    /// Samples the proxies of `groups` at `now`, for the request rate before an outage.
    pub fn sample(&mut self, groups: &[String], now: Millis) {
        for g in groups {
            let Some((all, _)) = self.counters.proxied(g) else {
                continue;
            };
            let q = self.samples.entry(g.clone()).or_default();
            q.push_back((now, all));
            while q.front().is_some_and(|(t, _)| now - t > RATE_WINDOW_MS) {
                q.pop_front();
            }
        }
        self.samples.retain(|g, _| groups.contains(g));
    }

    /// Requests/s of `group`'s proxy over the samples before `at`.
    fn rate_before(&self, group: &str, at: Millis) -> Option<f64> {
        let q = self.samples.get(group)?;
        let (t0, n0) = *q.iter().find(|(t, _)| *t <= at)?;
        let (t1, n1) = *q.iter().rev().find(|(t, _)| *t <= at)?;
        (t1 - t0 >= RATE_MIN_MS).then(|| n1.saturating_sub(n0) as f64 * 1000.0 / (t1 - t0) as f64)
    }

    /// The open incident of `component`, from the store.
    async fn open_of(&self, component: &str) -> Result<Option<Incident>, StoreError> {
        let open = self
            .store
            .incidents(&IncidentQuery {
                open_only: true,
                ..IncidentQuery::default()
            })
            .await?;
        Ok(open.into_iter().find(|i| i.component == component))
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
            self.auto_update(&inc, e.at, msg).await?;
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
            proxied_at: self.counters.proxied(&e.component),
            rate: self.rate_before(&e.component, e.at),
            up_since: None,
        };
        self.live.insert(id, live);
        let mut msg = format!("Detected: {} is down ({what})", e.target);
        if in_maintenance {
            msg.push_str("; inside a maintenance window");
        }
        self.auto_update(&inc, e.at, msg).await?;
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
            proxied_at: self.counters.proxied(&inc.component),
            rate: self.rate_before(&inc.component, e.at),
            up_since: None,
        };
        self.live.insert(inc.id, live);
        let msg = format!(
            "Down again: {} is down ({what}), {after} after it recovered",
            e.target
        );
        self.auto_update(&inc, e.at, msg).await?;
        tracing::warn!(incident = inc.id, component = %inc.component, target = %e.target, "incident reopened");
        Ok(())
    }

    /// Resolves `inc` at `at` with its figures and the automatic "recovered" update.
    async fn resolve(
        &mut self,
        mut inc: Incident,
        live: &Live,
        at: Millis,
    ) -> Result<(), StoreError> {
        let mut inputs = figures_inputs(&self.store, &*self.calendar, &inc, at).await?;
        inputs.failed_probes_seen = inc
            .targets
            .iter()
            .filter_map(|t| {
                let now = self.counters.probe_failures(t)?;
                Some(now.saturating_sub(*live.failures_at.get(t)?))
            })
            .sum();
        inputs.proxied = match (live.proxied_at, self.counters.proxied(&inc.component)) {
            (Some((a0, f0)), Some((a1, f1))) => {
                Some((a1.saturating_sub(a0), f1.saturating_sub(f0)))
            }
            _ => None,
        };
        inputs.proxy_rate = live.rate;
        let f = Figures::compute(&inputs, &self.config);
        inc.status = IncidentStatus::Resolved;
        inc.resolved = Some(at);
        inc.figures = Some(f.to_json());
        self.store.save_incident(&inc).await?;
        self.recent.insert(inc.component.clone(), inc.id);
        let msg = format!("Recovered after {}", figures::human(at - inc.started));
        self.auto_update(&inc, at, msg).await?;
        tracing::info!(incident = inc.id, component = %inc.component, "incident resolved");
        Ok(())
    }

    /// Feeds a failover switch: an update on the group's open incident, if any.
    pub async fn on_switch(&mut self, e: &SwitchEvent) -> Result<(), StoreError> {
        let Some(inc) = self.open_of(&e.group).await? else {
            return Ok(());
        };
        let when = clock(e.at);
        let msg = match &e.to {
            Some(to) => format!("Traffic moved to {to} at {when} ({})", e.reason),
            None => format!("No instance is up at {when}: the proxy answers 503"),
        };
        self.auto_update(&inc, e.at, msg).await
    }

    async fn auto_update(
        &self,
        inc: &Incident,
        at: Millis,
        message: String,
    ) -> Result<(), StoreError> {
        let u = IncidentUpdate {
            id: 0,
            incident: inc.id,
            at,
            status: inc.status,
            message,
            automatic: true,
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

/// The figures' inputs the store and the calendar give for `inc` resolved at `at`.
pub async fn figures_inputs(
    store: &Store,
    calendar: &dyn MaintenanceCalendar,
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
    Ok(figures::Inputs {
        duration_ms: at - inc.started,
        maintenance_ms: calendar.covered(&inc.component, inc.started, at),
        failed_probes_rollups: rolled,
        ..figures::Inputs::default()
    })
}

#[cfg(test)]
mod tests;
