//! Each location's view of each target it probes, shared through PostgreSQL's
//! `cluster_observations` (one row per location and target, written by the member that probes
//! it), with a heartbeat per member in `cluster_observers` ([`super::board`]), and the quorum
//! computed from every location's rows ([`super::quorum`]).
//!
//! Off the probe path: one task per member looks at its targets' health every
//! [`Timing::poll`] (a read of in-memory state, no probe waits on it) and writes only the rows
//! whose view changed, with its heartbeat every [`Timing::refresh`] (lease / 3), in one
//! transaction. A row counts while its writer's heartbeat is younger than the lease, so a
//! member that stops (or loses the database) stops counting a lease later, all its rows at
//! once, without any row being rewritten. Each round reads back only the rows changed since
//! the last read and the heartbeats, and evaluates the quorum again only when a row, the set
//! of live members or the config changed. Times come from the database's clock, so clock skew
//! between hosts cannot make a location look stale.
//!
//! A member whose heartbeat had lapsed (or that never wrote one) writes all its rows again
//! with the heartbeat that renews it; a member that finds a row of a target it probes written
//! by a member no longer live writes it again.
//!
//! A database that fails keeps the last verdicts in force (no new decision is made without
//! the other locations' views), says so once in the log and in
//! `watchfire_quorum_database_up`, and everything is written again once it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection as _, PgConnection};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::board::{self, Board};
use super::quorum::{evaluate, Context, LocationState, Verdicts};
use crate::config::Config;
use crate::expo::catalog;
use crate::state::Health;

pub use board::{View, SCHEMA};

/// The longest a connection attempt or one exchange may take.
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

/// What the observer needs from the running prober (implemented by the runtime).
pub trait Source: Send + Sync + 'static {
    /// This location's views of the targets it probes, now (in-memory state only).
    fn views(&self) -> Vec<View>;
    /// A number that changes whenever [`Source::views`] may give something else; read before
    /// `views`, an unchanged number means an unchanged answer. The observer takes the views
    /// (a pass over every target) only when it moved.
    fn version(&self) -> u64;
    /// The config in force (its `quorum:` settings and failover groups).
    fn config(&self) -> Arc<Config>;
}

/// Who observes: the location and the member (`--cluster.id`) in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// `--location`.
    pub location: String,
    /// `--cluster.id`.
    pub member: String,
}

/// How often the observer looks and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A row whose writer's heartbeat is older than this counts for nothing.
    pub lease: Duration,
    /// How often local health is compared with what was written, and changes read back.
    pub poll: Duration,
    /// How often the heartbeat is renewed (lease / 3).
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
    /// The verdicts, from every location's rows (the same `Arc` until one changes).
    pub verdicts: Arc<Verdicts>,
    /// Each location's newest heartbeat, ms since the epoch, as of `at_ms`.
    pub beats: BTreeMap<String, i64>,
    /// Whether the last exchange with the database worked.
    pub database_up: bool,
    /// When the database was last read (database clock, ms since the epoch).
    pub at_ms: i64,
}

/// `/api/v1/quorum`: this member's location, whether the database answers, every location's
/// state and every verdict.
pub fn quorum_json(s: &Snapshot) -> serde_json::Value {
    let locations: Vec<LocationState> = s
        .verdicts
        .locations
        .values()
        .map(|l| LocationState {
            updated_ms: s.beats.get(&l.name).copied().unwrap_or(l.updated_ms),
            ..l.clone()
        })
        .collect();
    serde_json::json!({
        "location": s.location,
        "database_up": s.database_up,
        "at_ms": s.at_ms,
        "speaker": s.verdicts.speaker(),
        "locations": locations,
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

/// Connects to the cluster database and makes the tables: the check `run` makes before it
/// starts in cluster mode (an unreachable or wrong URL refuses to start).
pub async fn connect(url: &str) -> Result<PgConnection, ObserveError> {
    let place = crate::redact::url(url).into_owned();
    let conn = tokio::time::timeout(DB_TIMEOUT, PgConnection::connect(url))
        .await
        .map_err(|_| ObserveError::Timeout)?
        .map_err(|source| ObserveError::Connect { place, source })?;
    let mut conn = conn;
    timed(super::lease::create_locked(&mut conn, SCHEMA)).await?;
    for m in board::MIGRATIONS {
        timed(super::lease::create_locked(&mut conn, m)).await?;
    }
    Ok(conn)
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, ObserveError> {
    Ok(tokio::time::timeout(DB_TIMEOUT, f)
        .await
        .map_err(|_| ObserveError::Timeout)??)
}

/// Starts the observer of `who` on `source`, writing to `url` (connected as `conn`),
/// until `cancel`; its snapshots go into `slot`.
pub fn start(
    source: Arc<dyn Source>,
    slot: Arc<Slot>,
    url: String,
    conn: PgConnection,
    who: Who,
    timing: Timing,
    cancel: CancellationToken,
) {
    let first = Arc::new(Snapshot {
        location: who.location.clone(),
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
        who,
        timing,
        written: BTreeMap::new(),
        seen: None,
        failing: false,
        synced: false,
        board: Board::default(),
        last_beat: None,
        last_sweep: None,
        evaluated: None,
        verdicts: Arc::default(),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(timing.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let snap = match o.round().await {
                Ok(s) => {
                    if o.failing {
                        info!(location = %o.who.location, "the cluster database answers again");
                        o.failing = false;
                    }
                    s
                }
                Err(e) => {
                    if !o.failing {
                        warn!(location = %o.who.location, error = %e, "quorum: cannot exchange observations; the last verdicts stay in force");
                        o.failing = true;
                    }
                    o.conn = None;
                    o.written.clear();
                    o.seen = None;
                    o.synced = false;
                    o.last_beat = None;
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
    who: Who,
    timing: Timing,
    /// What this member last wrote, by target.
    written: BTreeMap<String, View>,
    /// The source's version whose views are all in `written` (`None`: take them again).
    seen: Option<u64>,
    /// The last round failed (logged once per streak).
    failing: bool,
    /// This location's rows of targets gone from the config were deleted since connecting.
    synced: bool,
    /// Every member's rows and heartbeats, as last read.
    board: Board,
    /// When the heartbeat was last renewed.
    last_beat: Option<tokio::time::Instant>,
    /// When the rows of members that never came back were last swept ([`board::sweep`]).
    last_sweep: Option<tokio::time::Instant>,
    /// The config of the last evaluation.
    evaluated: Option<Arc<Config>>,
    /// The last evaluation.
    verdicts: Arc<Verdicts>,
}

impl Observer {
    fn lease_ms(&self) -> i64 {
        self.timing.lease.as_millis() as i64
    }

    /// One round: forget the targets no longer probed, write what changed (and the
    /// heartbeat when due), read what others changed, evaluate when anything did.
    async fn round(&mut self) -> Result<Snapshot, ObserveError> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.url).await?);
        }
        self.sweep().await?;
        // The views only when they may differ from what was written: at 100,000 targets
        // taking them is a pass over every target, and most rounds nothing changed.
        let version = self.source.version();
        let config = self.source.config();
        let mut views = (self.seen != Some(version)).then(|| self.source.views());
        if let Some(views) = &views {
            self.forget(views, &config).await?;
        }
        self.write(&mut views).await?;
        if views.is_some() {
            self.seen = Some(version);
        }
        let lease_ms = self.lease_ms();
        let conn = self.conn.as_mut().expect("connected above");
        let changes = timed(self.board.read(conn, lease_ms)).await?;
        if changes.live {
            let views = views.get_or_insert_with(|| self.source.views());
            self.take_over(views);
        }
        let config_changed = !self
            .evaluated
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &config));
        if changes.rows || changes.live || config_changed {
            self.evaluate(&config);
        }
        Ok(Snapshot {
            location: self.who.location.clone(),
            verdicts: self.verdicts.clone(),
            beats: self.board.newest_beats(),
            database_up: true,
            at_ms: self.board.now_ms(),
        })
    }

    /// Once at start and then hourly: removes the heartbeats and rows members that never came
    /// back left behind ([`board::sweep`]).
    async fn sweep(&mut self) -> Result<(), ObserveError> {
        const EVERY: Duration = Duration::from_secs(board::FORGOTTEN_AFTER_SECS as u64);
        if self.last_sweep.is_some_and(|t| t.elapsed() < EVERY) {
            return Ok(());
        }
        let conn = self.conn.as_mut().expect("connected");
        let (beats, rows) = timed(board::sweep(conn)).await?;
        if beats + rows > 0 {
            info!(
                heartbeats = beats,
                observations = rows,
                "quorum: removed what members gone for an hour left behind"
            );
        }
        self.last_sweep = Some(tokio::time::Instant::now());
        Ok(())
    }

    /// Deletes this location's rows of targets gone from the config (all of them once after
    /// connecting, since the member may have been away) and forgets the targets it no longer
    /// probes. A target that moved to another member of this location keeps its row, which
    /// the new owner overwrites.
    async fn forget(&mut self, views: &[View], config: &Config) -> Result<(), ObserveError> {
        let conn = self.conn.as_mut().expect("connected");
        let location = self.who.location.as_str();
        let names: BTreeSet<&str> = views.iter().map(|v| v.target.as_str()).collect();
        let configured: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        let known: BTreeSet<&str> = configured.iter().copied().collect();
        if !self.synced {
            timed(board::delete(conn, location, &configured, true)).await?;
            self.synced = true;
        }
        let moved: Vec<String> = self
            .written
            .keys()
            .filter(|t| !names.contains(t.as_str()))
            .cloned()
            .collect();
        let gone: Vec<&str> = moved
            .iter()
            .map(String::as_str)
            .filter(|t| !known.contains(t))
            .collect();
        if !gone.is_empty() {
            timed(board::delete(conn, location, &gone, false)).await?;
        }
        for m in &moved {
            self.written.remove(m);
        }
        Ok(())
    }

    /// Writes the views that changed since last written, with the heartbeat when due, in one
    /// transaction; all of them when the heartbeat had lapsed (taking the views then if
    /// `views` is `None`, which otherwise means nothing changed).
    async fn write(&mut self, views: &mut Option<Vec<View>>) -> Result<(), ObserveError> {
        let due = self
            .last_beat
            .is_none_or(|t| t.elapsed() >= self.timing.refresh);
        let changed = |w: &BTreeMap<String, View>, v: &View| w.get(&v.target) != Some(v);
        let any_changed = views
            .as_ref()
            .is_some_and(|vs| vs.iter().any(|v| changed(&self.written, v)));
        if !due && !any_changed {
            return Ok(());
        }
        let lease_ms = self.lease_ms();
        let conn = self.conn.as_mut().expect("connected");
        let (location, member) = (self.who.location.as_str(), self.who.member.as_str());
        let written = &mut self.written;
        let source = &self.source;
        let work = async {
            let mut tx = conn.begin().await?;
            let mut n = 0u64;
            if due {
                let lapse = board::beat(&mut tx, location, member).await?;
                if lapse.is_none_or(|l| l > lease_ms) {
                    // Every view is written again: take them if this round had not.
                    written.clear();
                    if views.is_none() {
                        *views = Some(source.views());
                    }
                }
                n += 1;
            }
            let views = views.as_deref().unwrap_or_default();
            let mut rows: Vec<&View> = views.iter().filter(|v| changed(written, v)).collect();
            if !rows.is_empty() {
                board::write(&mut tx, location, member, &mut rows).await?;
                n += rows.len() as u64;
            }
            tx.commit().await?;
            for v in rows {
                written.insert(v.target.clone(), v.clone());
            }
            Ok(n)
        };
        let n = timed(work).await?;
        self.slot.count_written(n);
        if due {
            self.last_beat = Some(tokio::time::Instant::now());
        }
        Ok(())
    }

    /// After the set of live members changed: the targets this member probes whose row was
    /// written by a member no longer live are written again next round (which takes the views
    /// again for it).
    fn take_over(&mut self, views: &[View]) {
        let live = self.board.live(self.lease_ms());
        let location = self.who.location.as_str();
        for v in views {
            let Some(w) = self.board.writer(location, &v.target) else {
                continue;
            };
            if w != self.who.member && !live.contains(&(location.to_string(), w.to_string())) {
                self.written.remove(&v.target);
                self.seen = None;
            }
        }
    }

    /// Evaluates the quorum over the rows of the targets in `config`.
    fn evaluate(&mut self, config: &Arc<Config>) {
        let targets: BTreeSet<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        self.board.retain(&targets);
        let groups: Vec<(String, Vec<String>)> = config
            .failover
            .iter()
            .map(|g| {
                let checks = g.instances.iter().map(|i| i.target.clone()).collect();
                (g.name.clone(), checks)
            })
            .collect();
        let verdicts = evaluate(
            &self.board.observations(),
            Context {
                quorum: &config.quorum,
                groups: &groups,
                now_ms: self.board.now_ms(),
                lease_ms: self.lease_ms(),
            },
        );
        self.verdicts = Arc::new(verdicts);
        self.evaluated = Some(config.clone());
    }
}
