//! The store: what watchfire remembers across restarts (target and group state, transitions,
//! incidents, maintenance windows, rollups), behind one interface.
//!
//! Writes from the probe path go through [`Store::write`], which queues and never waits;
//! reads are async and never made on the probe path. Incidents and maintenance windows are
//! rare and written with an awaited call that returns the new row's id.
//!
//! Both backends, SQLite (a file, or in memory) and PostgreSQL, go through one code path:
//! sqlx's `Any` driver with the SQL written once (`sql.rs`), one schema (`schema.rs`), one
//! writer task (`writer.rs`). When the configured backend fails, the store degrades to an
//! in-memory SQLite database and says so ([`StoreStatus::healthy`], `watchfire_store_up`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

mod batch;
mod db;
mod dialect;
mod groups;
mod metrics;
pub mod model;
mod restore;
mod schema;
mod sql;
mod writer;

pub use db::FILE_NAME;
pub use sql::{decode_counts, encode_counts};

pub use model::{
    now_millis, pieces, GroupRollup, GroupState, Impact, Incident, IncidentStatus, IncidentUpdate,
    Level, Maintenance, MaintenanceCalendar, Millis, NoMaintenance, Rollup, Subject, TargetState,
    TransitionRecord, UpdateKind, Write, LATENCY_BOUNDS,
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
    /// The data directory is missing and cannot be made, or is not a directory.
    #[error("storage directory {path}: {source}")]
    Directory {
        /// The directory (or the file in it).
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory or database is read-only (or the file was moved or deleted).
    #[error("{place} is read-only (or was moved or deleted while open): watchfire cannot write its state there")]
    ReadOnly {
        /// The file or directory.
        place: String,
    },
    /// The SQLite file was deleted or moved while open.
    #[error("{place} was deleted or moved while watchfire had it open")]
    Gone {
        /// The file.
        place: String,
    },
    /// The disk is full.
    #[error("{place}: the disk is full")]
    Full {
        /// The file or directory.
        place: String,
    },
    /// The file is not a SQLite database.
    #[error("{place} is not a SQLite database; move it away or choose another --storage.path")]
    NotADatabase {
        /// The file.
        place: String,
    },
    /// The database holds tables but not watchfire's: another program's, left untouched.
    #[error("{place} holds another program's tables ({tables}) and no watchfire_schema table; watchfire leaves it untouched: choose another --storage.path or database")]
    Foreign {
        /// The file or URL (without password).
        place: String,
        /// The tables found.
        tables: String,
    },
    /// The schema is newer than this binary knows.
    #[error("{place} has watchfire schema version {found}, newer than this watchfire knows ({known}): run a newer watchfire")]
    NewerSchema {
        /// The file or URL (without password).
        place: String,
        /// The version found.
        found: i64,
        /// The newest version this binary knows.
        known: i64,
    },
    /// The PostgreSQL URL is malformed.
    #[error("--storage.url {url} is not a valid PostgreSQL URL: {reason}")]
    BadUrl {
        /// The URL without password.
        url: String,
        /// Why.
        reason: String,
    },
    /// PostgreSQL cannot be reached.
    #[error("PostgreSQL at {place} is unreachable: {reason}")]
    Unreachable {
        /// The URL without password.
        place: String,
        /// Why.
        reason: String,
    },
    /// PostgreSQL refused the login.
    #[error("PostgreSQL at {place} refused the login: check the user and password")]
    Auth {
        /// The URL without password.
        place: String,
    },
    /// PostgreSQL refused to let watchfire create or use its tables.
    #[error("PostgreSQL at {place} denied permission (watchfire needs to create and write its tables): {detail}")]
    Permission {
        /// The URL without password.
        place: String,
        /// PostgreSQL's message.
        detail: String,
    },
    /// The database refused an outbox write: this member no longer holds the lease that
    /// fences the outbox in that epoch (cluster mode, [`Store::set_outbox_fence`]).
    #[error(
        "the outbox write was refused: {holder} no longer holds lease {lease:?} in epoch {epoch}"
    )]
    Fenced {
        /// The lease (`notify`).
        lease: String,
        /// This member.
        holder: String,
        /// The epoch it wrote in.
        epoch: i64,
    },
    /// Any other failure of the backend.
    #[error("store backend {place}: {source}")]
    Backend {
        /// The file or URL (without password).
        place: String,
        /// The driver's error.
        source: sqlx::Error,
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
    /// Only those of this component.
    pub component: Option<String>,
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
    /// Writes applied (to the configured backend, or to memory while degraded).
    pub writes: u64,
    /// Batches the configured backend failed to apply.
    pub write_errors: u64,
    /// Writes queued, not yet applied.
    pub queue: usize,
    /// Why the store is degraded (without secrets), while it is.
    pub error: Option<String>,
}

/// How many writes the queue holds before [`Store::write`] drops them.
pub const QUEUE_CAPACITY: usize = 65_536;

/// Upper bounds (seconds) of the `watchfire_store_batch_seconds` buckets.
pub const BATCH_BOUNDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The writer's counters.
#[derive(Default)]
struct Stats {
    /// Calls made on the active backend through a handle (reads, awaited writes).
    calls: AtomicU64,
    writes: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
    /// Batch durations: a count per [`BATCH_BOUNDS`] bucket plus one, and their sum.
    batches: Mutex<([u64; BATCH_BOUNDS.len() + 1], f64)>,
}

impl Stats {
    fn observe(&self, took: Duration, writes: u64) {
        self.writes.fetch_add(writes, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let i = BATCH_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BATCH_BOUNDS.len());
        let mut h = self.batches.lock().expect("store stats lock poisoned");
        h.0[i] += 1;
        h.1 += secs;
    }
}

/// What the handles and the writer share.
struct Shared {
    /// The configured backend.
    primary: db::Backend,
    /// The in-memory database written while the configured one fails.
    fallback: db::Backend,
    degraded: AtomicBool,
    last_error: Mutex<Option<String>>,
    stats: Stats,
    retention: Retention,
    /// The last [`Store::completed_days`] read: its range, when it was read, the rows.
    days: Mutex<Option<DaysRead>>,
    /// Open incidents, windows and greatest ids, for seeding memory and replaying from it.
    known: Mutex<restore::Known>,
    /// Held (shared) by the awaited incident and window writes, and (exclusive) by the
    /// recovery while it copies memory back and switches: no such write lands in memory
    /// after it was read.
    switch: tokio::sync::RwLock<()>,
    /// The lease fencing the outbox's writes, in cluster mode ([`Store::set_outbox_fence`]).
    outbox_fence: Mutex<Option<Arc<dyn fence::OutboxFence>>>,
}

/// A cached read of whole days' rollups.
struct DaysRead {
    from: Millis,
    to: Millis,
    at: std::time::Instant,
    rows: Days,
}

/// Whole days' rollups of every target and failover group (shared: the store caches them).
#[derive(Debug, Clone, Default)]
pub struct Days {
    /// The targets' day rows, by target then start.
    pub targets: Arc<Vec<Rollup>>,
    /// The failover groups' day rows, by group then start.
    pub groups: Arc<Vec<GroupRollup>>,
}

/// How long a read of completed days is reused: a day's row still grows when a minute of it
/// arrives late (a flush at midnight), so it is read again after this.
pub const COMPLETED_DAYS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Shared {
    /// The backend reads and awaited writes go to: the configured one, or memory while
    /// degraded.
    fn active(&self) -> &db::Backend {
        if self.degraded.load(Ordering::Acquire) {
            &self.fallback
        } else {
            &self.primary
        }
    }
}

/// A handle on the store; clones share it. The writer stops when the last handle is gone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<writer::Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.shared.primary.place.backend())
            .finish_non_exhaustive()
    }
}

/// Runs a statement on the active backend, its error named by where it ran.
macro_rules! on_active {
    ($self:ident, |$c:ident| $body:expr) => {{
        $self
            .shared
            .stats
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let b = $self.shared.active();
        let mut guard = b.conn().await?;
        let $c = &mut *guard;
        $body.await.map_err(|e| db::classify(e, &b.place))
    }};
}

impl Store {
    /// A store that keeps everything in an in-memory SQLite database (lost on exit).
    pub fn memory() -> Store {
        Store::start(db::Place::Memory, Retention::default())
    }

    /// Opens the store `opts` names: PostgreSQL when `url` is given, else the SQLite file in
    /// directory `path` (made when missing), else memory. Fails with an error naming what and
    /// where when the backend cannot be used; the schema is created or migrated here.
    pub async fn open(opts: &StoreOptions) -> Result<Store, StoreError> {
        let place = match (&opts.url, &opts.path) {
            (Some(u), _) => db::Place::Url(u.clone()),
            (None, Some(p)) => db::Place::Dir(p.clone()),
            (None, None) => db::Place::Memory,
        };
        let store = Store::start(place, opts.retention);
        drop(store.shared.primary.conn().await?);
        Ok(store)
    }

    fn start(place: db::Place, retention: Retention) -> Store {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            primary: db::Backend::new(place),
            fallback: db::Backend::new(db::Place::Memory),
            degraded: AtomicBool::new(false),
            last_error: Mutex::new(None),
            stats: Stats::default(),
            retention,
            days: Mutex::new(None),
            known: Mutex::new(restore::Known::default()),
            switch: tokio::sync::RwLock::new(()),
            outbox_fence: Mutex::new(None),
        });
        let for_writer = shared.clone();
        std::thread::Builder::new()
            .name("watchfire-store".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the store writer's runtime starts");
                rt.block_on(writer::run(for_writer, rx));
            })
            .expect("the store writer's thread starts");
        Store { tx, shared }
    }

    /// Queues a write; never waits. When the queue is full the write is dropped and counted
    /// (`watchfire_store_dropped_writes_total`).
    pub fn write(&self, w: Write) {
        if self.tx.try_send(writer::Msg::Write(w)).is_err() {
            self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every write queued before the call has been applied.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(writer::Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Prunes rollups older than their level's retention now (the writer also does every ten
    /// minutes), a bounded number of periods per level, and waits until done.
    pub async fn prune(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(writer::Msg::Prune(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// How many calls handles have made on the backend so far (reads and awaited writes; the
    /// queued writes are the writer's): what "a fixed number of queries per page" is checked
    /// with. A read served from a cache ([`Store::completed_days`]) makes none.
    pub fn calls(&self) -> u64 {
        self.shared.stats.calls.load(Ordering::Relaxed)
    }

    /// What the store is and whether it works.
    pub fn status(&self) -> StoreStatus {
        let s = &self.shared;
        StoreStatus {
            backend: s.primary.place.backend(),
            healthy: !s.degraded.load(Ordering::Acquire),
            dropped: s.stats.dropped.load(Ordering::Relaxed),
            writes: s.stats.writes.load(Ordering::Relaxed),
            write_errors: s.stats.errors.load(Ordering::Relaxed),
            queue: self.tx.max_capacity() - self.tx.capacity(),
            error: s
                .last_error
                .lock()
                .expect("store error lock poisoned")
                .clone(),
        }
    }

    /// Writes the store's metric families (`watchfire_store_*`) for `/metrics`.
    pub fn render(&self, w: &mut crate::expo::Writer<'_>) {
        let h = *self
            .shared
            .stats
            .batches
            .lock()
            .expect("store stats lock poisoned");
        metrics::render(&self.status(), &h.0, h.1, w);
    }

    /// Every stored target state.
    pub async fn target_states(&self) -> Result<Vec<TargetState>, StoreError> {
        on_active!(self, |c| sql::target_states(c))
    }

    /// Every stored group state.
    pub async fn group_states(&self) -> Result<Vec<GroupState>, StoreError> {
        on_active!(self, |c| sql::group_states(c))
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
        on_active!(self, |c| sql::transitions(c, name, from, to, limit))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, restore::Known> {
        self.shared.known.lock().expect("store known lock poisoned")
    }

    /// Opens an incident (its `id` is ignored) and returns the id assigned.
    pub async fn open_incident(&self, incident: &Incident) -> Result<i64, StoreError> {
        let _held = self.shared.switch.read().await;
        let id = on_active!(self, |c| sql::open_incident(c, incident))?;
        self.known().incident(&Incident {
            id,
            ..incident.clone()
        });
        Ok(id)
    }

    /// Replaces an incident's fields (status, impact, resolved, targets, figures, ...).
    pub async fn save_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let _held = self.shared.switch.read().await;
        let found = on_active!(self, |c| sql::save_incident(c, incident))?;
        found.then_some(()).ok_or(StoreError::NotFound {
            what: "incident",
            id: incident.id,
        })?;
        self.known().incident(incident);
        Ok(())
    }

    /// Appends an update to an incident's timeline (its `id` is ignored) and returns its id.
    pub async fn add_update(&self, update: &IncidentUpdate) -> Result<i64, StoreError> {
        let _held = self.shared.switch.read().await;
        let id = on_active!(self, |c| sql::add_update(c, update))?.ok_or(StoreError::NotFound {
            what: "incident",
            id: update.incident,
        })?;
        self.known().update(id);
        Ok(id)
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        on_active!(self, |c| sql::incidents(c, q))
    }

    /// One incident.
    pub async fn incident(&self, id: i64) -> Result<Option<Incident>, StoreError> {
        on_active!(self, |c| sql::incident(c, id))
    }

    /// The updates of the given incidents (one query for a whole page), oldest first.
    pub async fn updates(&self, incidents: &[i64]) -> Result<Vec<IncidentUpdate>, StoreError> {
        on_active!(self, |c| sql::updates(c, incidents))
    }

    /// Adds a maintenance window (its `id` is ignored) and returns its id.
    pub async fn add_maintenance(&self, m: &Maintenance) -> Result<i64, StoreError> {
        let _held = self.shared.switch.read().await;
        let id = on_active!(self, |c| sql::add_maintenance(c, m))?;
        self.known()
            .add_maintenance(&Maintenance { id, ..m.clone() });
        Ok(id)
    }

    /// Deletes a maintenance window.
    pub async fn delete_maintenance(&self, id: i64) -> Result<(), StoreError> {
        let _held = self.shared.switch.read().await;
        let found = on_active!(self, |c| sql::delete_maintenance(c, id))?;
        found.then_some(()).ok_or(StoreError::NotFound {
            what: "maintenance window",
            id,
        })?;
        let degraded = self.shared.degraded.load(Ordering::Acquire);
        self.known().delete_maintenance(id, degraded);
        Ok(())
    }

    /// Every maintenance window made through the API.
    pub async fn maintenances(&self) -> Result<Vec<Maintenance>, StoreError> {
        on_active!(self, |c| sql::maintenances(c))
    }

    /// Rollups of `level` whose period starts in `[from, to)`, of `target` only when given,
    /// ordered by target then start. Hours and days are kept summed as minutes are written.
    pub async fn rollups(
        &self,
        level: Level,
        from: Millis,
        to: Millis,
        target: Option<&str>,
    ) -> Result<Vec<Rollup>, StoreError> {
        on_active!(self, |c| sql::rollups(c, level, from, to, target))
    }

    /// Failover group rollups of `level` whose period starts in `[from, to)`, of `group` only
    /// when given, ordered by group then start.
    pub async fn group_rollups(
        &self,
        level: Level,
        from: Millis,
        to: Millis,
        group: Option<&str>,
    ) -> Result<Vec<GroupRollup>, StoreError> {
        on_active!(self, |c| groups::read(c, level, from, to, group))
    }

    /// Day rollups of every target and every failover group for the days in `[from, to)`
    /// (whole, past days), read at most once per [`COMPLETED_DAYS_TTL`] for the same range:
    /// the status page asks for 90 days of everything on every view, and those rows hardly
    /// change.
    pub async fn completed_days(&self, from: Millis, to: Millis) -> Result<Days, StoreError> {
        let fresh =
            |d: &DaysRead| d.from == from && d.to == to && d.at.elapsed() < COMPLETED_DAYS_TTL;
        if let Some(d) = self.shared.days.lock().expect("days lock").as_ref() {
            if fresh(d) {
                return Ok(d.rows.clone());
            }
        }
        let rows = Days {
            targets: Arc::new(self.rollups(Level::Day, from, to, None).await?),
            groups: Arc::new(self.group_rollups(Level::Day, from, to, None).await?),
        };
        *self.shared.days.lock().expect("days lock") = Some(DaysRead {
            from,
            to,
            at: std::time::Instant::now(),
            rows: rows.clone(),
        });
        Ok(rows)
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
    if m.component.is_some() {
        r.component.clone_from(&m.component);
    }
}

mod fence;
mod outbox;
pub use fence::{OutboxClaim, OutboxFence};
pub use outbox::{NewOutbox, OutboxRow, OutboxState, PRUNE_MAX as OUTBOX_PRUNE_MAX};
