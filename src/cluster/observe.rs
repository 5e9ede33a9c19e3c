//! Each location's view of each target it probes, shared through PostgreSQL's
//! `cluster_observations` (location, target, health, reason, since, updated), and the quorum
//! computed from every location's rows ([`super::quorum`]).
//!
//! Off the probe path: one task per member looks at its targets' health every
//! [`Timing::poll`] (a read of in-memory state, no probe waits on it), writes only the rows
//! that changed (one multi-row upsert), and every [`Timing::refresh`] (lease / 3) bumps the
//! `updated` time of all its rows in one `UPDATE`. Times of `updated` come from the database's
//! clock, as does "now" when the rows are read back, so clock skew between hosts cannot make a
//! location look stale. A location whose rows are older than the lease counts as unknown.
//!
//! A database that fails keeps the last verdicts in force (no new decision is made without
//! the other locations' views), says so once in the log and in
//! `watchfire_quorum_database_up`, and everything is written again once it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection as _, PgConnection, Row as _};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::quorum::{evaluate, Context, Observation, Verdicts};
use crate::config::Config;
use crate::expo::catalog;
use crate::state::Health;

/// The table of observations; created by the first member that starts.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cluster_observations (
    location TEXT NOT NULL,
    target TEXT NOT NULL,
    health TEXT NOT NULL,
    reason TEXT,
    since_ms BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (location, target)
)";

/// The longest a connection attempt or one statement may take.
pub const DB_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an exchange with the database failed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The connection could not be made within [`DB_TIMEOUT`] or at all.
    #[error("cannot connect to the cluster database {place}: {source}")]
    Connect {
        /// The database, password hidden.
        place: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("cluster_observations: {0}")]
    Query(#[from] sqlx::Error),
    /// No answer within [`DB_TIMEOUT`].
    #[error("the cluster database gave no answer within {}s", DB_TIMEOUT.as_secs())]
    Timeout,
}

/// One location's view of one of its targets, as the runtime knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The target's name.
    pub target: String,
    /// Up, down or unknown (after the fall/rise thresholds).
    pub health: Health,
    /// Since when, ms since the epoch.
    pub since_ms: i64,
    /// The last failure's reason, when down.
    pub reason: Option<String>,
}

/// What the observer needs from the running prober (implemented by the runtime).
pub trait Source: Send + Sync + 'static {
    /// This location's views of the targets it probes, now (in-memory state only).
    fn views(&self) -> Vec<View>;
    /// The config in force (its `quorum:` settings and failover groups).
    fn config(&self) -> Arc<Config>;
}

/// How often the observer looks and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A location whose rows are older than this is unknown.
    pub lease: Duration,
    /// How often local health is compared with what was written, and rows read back.
    pub poll: Duration,
    /// How often every row's `updated_at` is bumped (lease / 3).
    pub refresh: Duration,
}

impl Timing {
    /// The timing for `lease`: refresh every lease / 3, poll at least every second.
    pub fn for_lease(lease: Duration) -> Timing {
        let refresh = lease / 3;
        Timing {
            lease,
            poll: refresh.min(Duration::from_secs(1)),
            refresh,
        }
    }
}

/// The latest evaluation, as the member's metrics, API and status page show it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// This member's location.
    pub location: String,
    /// The verdicts, from every location's rows.
    pub verdicts: Verdicts,
    /// Whether the last exchange with the database worked.
    pub database_up: bool,
    /// When the verdicts were computed (database clock, ms since the epoch).
    pub at_ms: i64,
}

/// `/api/v1/quorum`: this member's location, whether the database answers, every location's
/// state and every verdict.
pub fn quorum_json(s: &Snapshot) -> serde_json::Value {
    serde_json::json!({
        "location": s.location,
        "database_up": s.database_up,
        "at_ms": s.at_ms,
        "speaker": s.verdicts.speaker(),
        "locations": s.verdicts.locations.values().collect::<Vec<_>>(),
        "targets": s.verdicts.targets.values().collect::<Vec<_>>(),
        "groups": s.verdicts.groups.iter().map(|(g, h)| (g.clone(), h.as_str())).collect::<BTreeMap<_, _>>(),
    })
}

/// Where a member's quorum state lives: empty outside cluster mode.
#[derive(Debug, Default)]
pub struct Slot {
    inner: Mutex<Option<watch::Receiver<Arc<Snapshot>>>>,
    rows_written: std::sync::atomic::AtomicU64,
}

impl Slot {
    /// The latest snapshot, when the observer runs.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let g = self.inner.lock().expect("quorum slot lock poisoned");
        g.as_ref().map(|rx| rx.borrow().clone())
    }

    /// A receiver of every new snapshot, when the observer runs.
    pub fn subscribe(&self) -> Option<watch::Receiver<Arc<Snapshot>>> {
        self.inner
            .lock()
            .expect("quorum slot lock poisoned")
            .clone()
    }

    /// The quorum's series (nothing outside cluster mode).
    pub fn render(&self, w: &mut crate::expo::Writer<'_>) {
        let Some(s) = self.snapshot() else { return };
        let v = &s.verdicts;
        w.header(&catalog::QUORUM_UP);
        for t in v.targets.values() {
            let up = match t.health {
                Health::Up => 1u64,
                Health::Down => 0,
                Health::Unknown => continue,
            };
            w.sample(&catalog::QUORUM_UP, &[("target", &t.target)], up);
        }
        w.header(&catalog::QUORUM_DOWN_LOCATIONS);
        for t in v.targets.values() {
            let n = t.down.len() as u64;
            w.sample(&catalog::QUORUM_DOWN_LOCATIONS, &[("target", &t.target)], n);
        }
        w.header(&catalog::LOCATION_DEGRADED);
        for l in v.locations.values() {
            let d = u64::from(l.health == super::quorum::LocationHealth::Degraded);
            w.sample(&catalog::LOCATION_DEGRADED, &[("location", &l.name)], d);
        }
        w.header(&catalog::LOCATION_STALE);
        for l in v.locations.values() {
            let d = u64::from(l.health == super::quorum::LocationHealth::Stale);
            w.sample(&catalog::LOCATION_STALE, &[("location", &l.name)], d);
        }
        w.header(&catalog::QUORUM_DATABASE_UP);
        w.sample(&catalog::QUORUM_DATABASE_UP, &[], u64::from(s.database_up));
        w.header(&catalog::QUORUM_ROWS_WRITTEN);
        let n = self.rows_written.load(std::sync::atomic::Ordering::Relaxed);
        w.sample(&catalog::QUORUM_ROWS_WRITTEN, &[], n);
    }

    fn count_written(&self, n: u64) {
        self.rows_written
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Connects to the cluster database and makes the table: the check `run` makes before it
/// starts in cluster mode (an unreachable or wrong URL refuses to start).
pub async fn connect(url: &str) -> Result<PgConnection, ObserveError> {
    let place = crate::redact::url(url).into_owned();
    let conn = tokio::time::timeout(DB_TIMEOUT, PgConnection::connect(url))
        .await
        .map_err(|_| ObserveError::Timeout)?
        .map_err(|source| ObserveError::Connect { place, source })?;
    let mut conn = conn;
    timed(super::lease::create_locked(&mut conn, SCHEMA)).await?;
    Ok(conn)
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ObserveError> {
    Ok(tokio::time::timeout(DB_TIMEOUT, f)
        .await
        .map_err(|_| ObserveError::Timeout)??)
}

/// Starts the observer of `location` on `source`, writing to `url` (connected as `conn`),
/// until `cancel`; its snapshots go into `slot`.
pub fn start(
    source: Arc<dyn Source>,
    slot: Arc<Slot>,
    url: String,
    conn: PgConnection,
    location: String,
    timing: Timing,
    cancel: CancellationToken,
) {
    let first = Arc::new(Snapshot {
        location: location.clone(),
        database_up: true,
        ..Snapshot::default()
    });
    let (tx, rx) = watch::channel(first);
    *slot.inner.lock().expect("quorum slot lock poisoned") = Some(rx);
    let mut o = Observer {
        source,
        slot,
        url,
        conn: Some(conn),
        location,
        timing,
        written: BTreeMap::new(),
        failing: false,
        synced: false,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(timing.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let refresh = last_refresh.elapsed() >= timing.refresh;
            if refresh {
                last_refresh = tokio::time::Instant::now();
            }
            let snap = match o.round(refresh).await {
                Ok(s) => {
                    if o.failing {
                        info!(location = %o.location, "the cluster database answers again");
                        o.failing = false;
                    }
                    s
                }
                Err(e) => {
                    if !o.failing {
                        warn!(location = %o.location, error = %e, "quorum: cannot exchange observations; the last verdicts stay in force");
                        o.failing = true;
                    }
                    o.conn = None;
                    o.written.clear();
                    o.synced = false;
                    let mut s = (**tx.borrow()).clone();
                    s.database_up = false;
                    s
                }
            };
            let _ = tx.send(Arc::new(snap));
        }
    });
}

struct Observer {
    source: Arc<dyn Source>,
    slot: Arc<Slot>,
    url: String,
    conn: Option<PgConnection>,
    location: String,
    timing: Timing,
    /// What this location last wrote, by target.
    written: BTreeMap<String, View>,
    /// The last round failed (logged once per streak).
    failing: bool,
    /// This location's rows of targets it no longer probes were deleted since connecting.
    synced: bool,
}

impl Observer {
    /// One round: write what changed (everything after a failure), bump `updated_at` on
    /// `refresh`, read every location's rows and evaluate.
    async fn round(&mut self, refresh: bool) -> Result<Snapshot, ObserveError> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.url).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let views = self.source.views();
        let config = self.source.config();
        let names: BTreeSet<&str> = views.iter().map(|v| v.target.as_str()).collect();
        // Every member of a location writes the rows of the targets it owns, so a row is only
        // deleted when its target has left the config: a target that moved to another member
        // of this location keeps its row, which the new owner overwrites.
        let configured: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        let known: BTreeSet<&str> = configured.iter().copied().collect();
        let moved: Vec<String> = self
            .written
            .keys()
            .filter(|t| !names.contains(t.as_str()))
            .cloned()
            .collect();
        let gone: Vec<&String> = moved
            .iter()
            .filter(|t| !known.contains(t.as_str()))
            .collect();
        if !self.synced {
            // Rows of targets dropped from the config while this member was away.
            let q =
                "DELETE FROM cluster_observations WHERE location = $1 AND NOT (target = ANY($2))";
            timed(
                sqlx::query(q)
                    .bind(&self.location)
                    .bind(&configured)
                    .execute(&mut *conn),
            )
            .await?;
            self.synced = true;
        }
        if !gone.is_empty() {
            let q = "DELETE FROM cluster_observations WHERE location = $1 AND target = ANY($2)";
            timed(
                sqlx::query(q)
                    .bind(&self.location)
                    .bind(&gone)
                    .execute(&mut *conn),
            )
            .await?;
        }
        for m in &moved {
            self.written.remove(m);
        }
        let changed: Vec<&View> = views
            .iter()
            .filter(|v| self.written.get(&v.target) != Some(*v))
            .collect();
        if !changed.is_empty() {
            write_rows(conn, &self.location, &changed).await?;
            self.slot.count_written(changed.len() as u64);
            for v in changed {
                self.written.insert(v.target.clone(), v.clone());
            }
        }
        if refresh && !self.written.is_empty() {
            // Only this member's rows: another member's rows go stale when it stops, and their
            // targets count as unknown until their new owner writes them.
            let mine: Vec<&str> = self.written.keys().map(String::as_str).collect();
            let q = "UPDATE cluster_observations SET updated_at = clock_timestamp() \
                     WHERE location = $1 AND target = ANY($2)";
            let r = timed(
                sqlx::query(q)
                    .bind(&self.location)
                    .bind(&mine)
                    .execute(&mut *conn),
            )
            .await?;
            self.slot.count_written(r.rows_affected());
        }
        let (rows, now_ms) = read_rows(conn).await?;
        let groups: Vec<(String, Vec<String>)> = config
            .failover
            .iter()
            .map(|g| {
                let checks = g.instances.iter().map(|i| i.target.clone()).collect();
                (g.name.clone(), checks)
            })
            .collect();
        let verdicts = evaluate(
            &rows,
            Context {
                quorum: &config.quorum,
                groups: &groups,
                now_ms,
                lease_ms: self.timing.lease.as_millis() as i64,
            },
        );
        Ok(Snapshot {
            location: self.location.clone(),
            verdicts,
            database_up: true,
            at_ms: now_ms,
        })
    }
}

/// One upsert of `rows` (`updated_at` from the database's clock).
async fn write_rows(
    conn: &mut PgConnection,
    location: &str,
    rows: &[&View],
) -> Result<(), ObserveError> {
    let targets: Vec<&str> = rows.iter().map(|v| v.target.as_str()).collect();
    let health: Vec<&str> = rows.iter().map(|v| v.health.as_str()).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|v| v.reason.as_deref()).collect();
    let since: Vec<i64> = rows.iter().map(|v| v.since_ms).collect();
    let q = "INSERT INTO cluster_observations (location, target, health, reason, since_ms, updated_at)
             SELECT $1, t, h, r, s, clock_timestamp()
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(t, h, r, s)
             ON CONFLICT (location, target) DO UPDATE SET health = EXCLUDED.health,
               reason = EXCLUDED.reason, since_ms = EXCLUDED.since_ms, updated_at = EXCLUDED.updated_at";
    let query = sqlx::query(q)
        .bind(location)
        .bind(&targets)
        .bind(&health)
        .bind(&reasons)
        .bind(&since);
    timed(query.execute(conn)).await?;
    Ok(())
}

/// Every location's rows, and the database's now (ms since the epoch).
async fn read_rows(conn: &mut PgConnection) -> Result<(Vec<Observation>, i64), ObserveError> {
    let q = "SELECT location, target, health, reason, since_ms,
                    (EXTRACT(EPOCH FROM updated_at) * 1000)::bigint AS updated_ms,
                    (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint AS now_ms
             FROM cluster_observations";
    let rows = timed(sqlx::query(q).fetch_all(conn)).await?;
    let mut now_ms = crate::store::now_millis();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        now_ms = r.try_get("now_ms")?;
        let health: String = r.try_get("health")?;
        out.push(Observation {
            location: r.try_get("location")?,
            target: r.try_get("target")?,
            health: match health.as_str() {
                "up" => Health::Up,
                "down" => Health::Down,
                _ => Health::Unknown,
            },
            since_ms: r.try_get("since_ms")?,
            reason: r.try_get("reason")?,
            updated_ms: r.try_get("updated_ms")?,
        });
    }
    Ok((out, now_ms))
}
