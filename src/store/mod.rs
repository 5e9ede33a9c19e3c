//! The store: what watchfire remembers across restarts (target and group state, transitions,
//! incidents, maintenance windows, rollups), behind one interface.
//!
//! Writes from the probe path go through [`Store::write`], which queues and never waits;
//! reads are async and never made on the probe path. Incidents and maintenance windows are
//! rare and written with an awaited call that returns the new row's id.
//!
//! This first form keeps everything in memory; the SQLite and PostgreSQL backends replace
//! its insides behind the same methods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub mod model;

pub use model::{
    now_millis, GroupState, Impact, Incident, IncidentStatus, IncidentUpdate, Level, Maintenance,
    MaintenanceCalendar, Millis, NoMaintenance, Rollup, Subject, TargetState, TransitionRecord,
    Write, LATENCY_BOUNDS,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such incident, maintenance window, ...
    #[error("no {what} with id {id}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its id.
        id: i64,
    },
}

/// How long each rollup level is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Minute rollups (default 48 hours).
    pub minutes: std::time::Duration,
    /// Hour rollups (default 90 days).
    pub hours: std::time::Duration,
    /// Day rollups (default 5 years).
    pub days: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            minutes: std::time::Duration::from_secs(2 * DAY),
            hours: std::time::Duration::from_secs(90 * DAY),
            days: std::time::Duration::from_secs(5 * 365 * DAY),
        }
    }
}

/// Where the store keeps its data: a directory (SQLite), a PostgreSQL URL, or neither
/// (memory).
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// The data directory (the SQLite file is made inside).
    pub path: Option<std::path::PathBuf>,
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`).
    pub url: Option<String>,
    /// How long rollups are kept.
    pub retention: Retention,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    /// Only those not resolved.
    pub open_only: bool,
    /// Only those started at or after this time.
    pub since: Option<Millis>,
    /// At most this many, newest first (0: no limit).
    pub limit: usize,
}

/// What the store is and whether it works, for metrics and `/-/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// `memory`, `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Whether writes are reaching the configured backend (false: degraded to memory).
    pub healthy: bool,
    /// Writes dropped because the queue was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Inner {
    targets: BTreeMap<String, TargetState>,
    groups: BTreeMap<String, GroupState>,
    transitions: Vec<TransitionRecord>,
    incidents: Vec<Incident>,
    updates: Vec<IncidentUpdate>,
    maintenance: Vec<Maintenance>,
    minutes: Vec<Rollup>,
    next_id: i64,
}

/// A handle on the store; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// A store that keeps everything in memory (lost on exit).
    pub fn memory() -> Store {
        Store {
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// Opens the store `opts` names (in this first form: always memory).
    pub async fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        let _ = opts;
        Ok(Store::memory())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock poisoned")
    }

    /// Queues a write; never waits.
    pub fn write(&self, w: Write) {
        let mut s = self.lock();
        match w {
            Write::TargetState(t) => {
                s.targets.insert(t.target.clone(), t);
            }
            Write::GroupState(g) => {
                s.groups.insert(g.group.clone(), g);
            }
            Write::Transition(t) => s.transitions.push(t),
            Write::Minute(r) => s.minutes.push(r),
            Write::ForgetTarget(name) => {
                s.targets.remove(&name);
            }
        }
    }

    /// Waits until every write queued before the call has been applied.
    pub async fn flush(&self) {}

    /// What the store is and whether it works.
    pub fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: "memory",
            healthy: true,
            dropped: 0,
        }
    }

    /// Every stored target state.
    pub async fn target_states(&self) -> Result<Vec<TargetState>, StoreError> {
        Ok(self.lock().targets.values().cloned().collect())
    }

    /// Every stored group state.
    pub async fn group_states(&self) -> Result<Vec<GroupState>, StoreError> {
        Ok(self.lock().groups.values().cloned().collect())
    }

    /// Transitions in `[from, to)`, of `name` only when given, oldest first, at most `limit`
    /// (the newest ones; 0: no limit).
    pub async fn transitions(
        &self,
        name: Option<&str>,
        from: Millis,
        to: Millis,
        limit: usize,
    ) -> Result<Vec<TransitionRecord>, StoreError> {
        let s = self.lock();
        let mut v: Vec<_> = s
            .transitions
            .iter()
            .filter(|t| t.at >= from && t.at < to && name.is_none_or(|n| t.name == n))
            .cloned()
            .collect();
        if limit > 0 && v.len() > limit {
            v.drain(..v.len() - limit);
        }
        Ok(v)
    }

    /// Opens an incident (its `id` is ignored) and returns the id assigned.
    pub async fn open_incident(&self, incident: &Incident) -> Result<i64, StoreError> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.incidents.push(Incident {
            id,
            ..incident.clone()
        });
        Ok(id)
    }

    /// Replaces an incident's fields (status, impact, resolved, targets, figures, ...).
    pub async fn save_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let mut s = self.lock();
        let slot =
            s.incidents
                .iter_mut()
                .find(|i| i.id == incident.id)
                .ok_or(StoreError::NotFound {
                    what: "incident",
                    id: incident.id,
                })?;
        *slot = incident.clone();
        Ok(())
    }

    /// Appends an update to an incident's timeline (its `id` is ignored) and returns its id.
    pub async fn add_update(&self, update: &IncidentUpdate) -> Result<i64, StoreError> {
        let mut s = self.lock();
        if !s.incidents.iter().any(|i| i.id == update.incident) {
            return Err(StoreError::NotFound {
                what: "incident",
                id: update.incident,
            });
        }
        s.next_id += 1;
        let id = s.next_id;
        s.updates.push(IncidentUpdate {
            id,
            ..update.clone()
        });
        Ok(id)
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let s = self.lock();
        let mut v: Vec<_> = s
            .incidents
            .iter()
            .filter(|i| !q.open_only || i.resolved.is_none())
            .filter(|i| q.since.is_none_or(|t| i.started >= t))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.started.cmp(&a.started).then(b.id.cmp(&a.id)));
        if q.limit > 0 {
            v.truncate(q.limit);
        }
        Ok(v)
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        Ok(self.lock().incidents.iter().find(|i| i.id == id).cloned())
    }

    /// The updates of the given incidents (one query for a whole page), oldest first.
    pub async fn updates(&self, incidents: &[i64]) -> Result<Vec<IncidentUpdate>, StoreError> {
        let s = self.lock();
        let mut v: Vec<_> = s
            .updates
            .iter()
            .filter(|u| incidents.contains(&u.incident))
            .cloned()
            .collect();
        v.sort_by_key(|u| (u.at, u.id));
        Ok(v)
    }

    /// Adds a maintenance window (its `id` is ignored) and returns its id.
    pub async fn add_maintenance(&self, m: &Maintenance) -> Result<i64, StoreError> {
        let mut s = self.lock();
        s.next_id += 1;
        let id = s.next_id;
        s.maintenance.push(Maintenance { id, ..m.clone() });
        Ok(id)
    }

    /// Deletes a maintenance window.
    pub async fn delete_maintenance(&self, id: i64) -> Result<(), StoreError> {
        let mut s = self.lock();
        let before = s.maintenance.len();
        s.maintenance.retain(|m| m.id != id);
        if s.maintenance.len() == before {
            return Err(StoreError::NotFound {
                what: "maintenance window",
                id,
            });
        }
        Ok(())
    }

    /// Every maintenance window made through the API.
    pub async fn maintenances(&self) -> Result<Vec<Maintenance>, StoreError> {
        Ok(self.lock().maintenance.clone())
    }

    /// Rollups of `level` whose period starts in `[from, to)`, of `target` only when given,
    /// ordered by target then start. Hours and days are summed from the minutes here; the
    /// real backends keep them downsampled.
    pub async fn rollups(
        &self,
        level: Level,
        from: Millis,
        to: Millis,
        target: Option<&str>,
    ) -> Result<Vec<Rollup>, StoreError> {
        let s = self.lock();
        let mut acc: HashMap<(String, Millis), Rollup> = HashMap::new();
        for m in s
            .minutes
            .iter()
            .filter(|m| target.is_none_or(|t| m.target == t))
        {
            let start = m.start - m.start.rem_euclid(level.millis());
            if start < from || start >= to {
                continue;
            }
            let r = acc
                .entry((m.target.clone(), start))
                .or_insert_with(|| Rollup {
                    target: m.target.clone(),
                    start,
                    ..Rollup::default()
                });
            add_into(r, m);
        }
        let mut v: Vec<_> = acc.into_values().collect();
        v.sort_by(|a, b| a.target.cmp(&b.target).then(a.start.cmp(&b.start)));
        Ok(v)
    }
}

/// Adds `m`'s figures into `r` (downsampling).
pub fn add_into(r: &mut Rollup, m: &Rollup) {
    r.probes += m.probes;
    r.failures += m.failures;
    for (k, v) in &m.by_reason {
        *r.by_reason.entry(k.clone()).or_default() += v;
    }
    r.down_ms += m.down_ms;
    r.maintenance_ms += m.maintenance_ms;
    if r.latency.len() < m.latency.len() {
        r.latency.resize(m.latency.len(), 0);
    }
    for (a, b) in r.latency.iter_mut().zip(&m.latency) {
        *a += b;
    }
    r.latency_sum += m.latency_sum;
}
