//! Named leases in PostgreSQL with fencing: one voice per decision across the members of a
//! cluster.
//!
//! A lease is a row of `cluster_leases` (name, holder, epoch, expires_at). A member acquires or
//! renews it with one atomic statement ([`LeaseDb::acquire`]): the row is taken when it has
//! expired (by the database's clock) or when this member holds it in the epoch it last saw.
//! The epoch, the fencing token, grows on every change of holder (and when a holder comes back
//! after its lease ran out), so a write made in the name of an old epoch can be refused by the
//! database ([`LeaseDb::publish`] writes a failover decision only while the writer's epoch is
//! the lease's current one and unexpired).
//!
//! The holder counts itself leader only until *the local monotonic time at which its last
//! successful renew was sent + lease − margin* ([`Validity`]). The database sets the expiry at
//! its own clock when the statement runs, which is after it was sent, so a member cut off from
//! the database stops acting before anyone else can take the lease over. It renews every
//! lease/3, each attempt bounded so that a hanging database cannot keep it believing it leads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The tables this module owns (created at start, never by the store's migrations).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS cluster_leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        renewed_at TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS cluster_decisions (
        grp TEXT PRIMARY KEY,
        epoch BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        holder TEXT NOT NULL,
        active INTEGER,
        state TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL)",
];

/// The advisory lock the cluster's tables are created under (any constant of the cluster's
/// own): members starting at the same instant would race on `CREATE TABLE IF NOT EXISTS`.
pub(crate) const SCHEMA_LOCK: i64 = 0x7761_7463_685f_6c65;

/// Runs `create` (a `CREATE TABLE IF NOT EXISTS`) on `c` in a transaction holding
/// [`SCHEMA_LOCK`].
pub(crate) async fn create_locked(
    c: &mut sqlx::PgConnection,
    create: &str,
) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut tx = c.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(create).execute(&mut *tx).await?;
    tx.commit().await
}

/// Takes or renews a lease: `$1` name, `$2` holder, `$3` lease in seconds, `$4` the epoch the
/// holder last held (0 for none). Returns the epoch held, or no row when another member holds
/// an unexpired lease.
const ACQUIRE: &str =
    "INSERT INTO cluster_leases AS l (name, holder, epoch, expires_at, renewed_at)
    VALUES ($1, $2, 1, now() + make_interval(secs => $3), now())
    ON CONFLICT (name) DO UPDATE SET
        holder = EXCLUDED.holder,
        epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.epoch = $4 AND l.expires_at > now()
                     THEN l.epoch ELSE l.epoch + 1 END,
        expires_at = EXCLUDED.expires_at,
        renewed_at = EXCLUDED.renewed_at
    WHERE l.expires_at <= now() OR (l.holder = EXCLUDED.holder AND l.epoch = $4)
    RETURNING l.epoch";

/// Gives a lease up at once (on shutdown) when this member still holds it in `$3`.
const RELEASE: &str = "UPDATE cluster_leases SET expires_at = now()
    WHERE name = $1 AND holder = $2 AND epoch = $3";

/// Writes a group's decision, fenced: only while `$3` holds lease `$2` in epoch `$4`, unexpired,
/// and never over a decision of a later epoch.
const PUBLISH: &str =
    "INSERT INTO cluster_decisions AS d (grp, epoch, seq, holder, active, state, at)
    SELECT $1, l.epoch, 1, l.holder, $5, $6, now() FROM cluster_leases l
    WHERE l.name = $2 AND l.holder = $3 AND l.epoch = $4 AND l.expires_at > now()
    ON CONFLICT (grp) DO UPDATE SET
        epoch = EXCLUDED.epoch, seq = d.seq + 1, holder = EXCLUDED.holder,
        active = EXCLUDED.active, state = EXCLUDED.state, at = EXCLUDED.at
    WHERE d.epoch <= EXCLUDED.epoch";

/// Why the lease database failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The URL is not a PostgreSQL URL.
    #[error("--cluster must be a postgres:// or postgresql:// URL (got {0})")]
    NotPostgres(String),
    /// A statement failed (the database refused it or the connection broke).
    #[error("cluster database: {what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement did not finish in time.
    #[error("cluster database: {what}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// The bound.
        after: Duration,
    },
}

/// The local validity clock of one lease: pure, driven by the instants it is given.
///
/// Invariant: `until`, when set, is `sent + lease − margin` of the last successful renew, so it
/// is always earlier than the expiry the database wrote (which counts from a later instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    lease: Duration,
    margin: Duration,
    /// Until when this member leads, and in which epoch.
    until: Option<(Instant, i64)>,
    /// The epoch last held (kept after it ran out: a renew must name it).
    last_epoch: i64,
}

impl Validity {
    /// A clock for a lease of `lease`, with a safety margin of a fifth of it (at least 1 ms).
    pub fn new(lease: Duration) -> Validity {
        Validity {
            lease,
            margin: (lease / 5).max(Duration::from_millis(1)),
            until: None,
            last_epoch: 0,
        }
    }

    /// The database renewed the lease in `epoch` on a statement sent at `sent`.
    pub fn renewed(&mut self, sent: Instant, epoch: i64) {
        let until = sent + self.lease.saturating_sub(self.margin);
        // A late answer to an older attempt never moves the end back.
        let until = match self.until {
            Some((u, e)) if e == epoch && u > until => u,
            _ => until,
        };
        self.until = Some((until, epoch));
        self.last_epoch = epoch;
    }

    /// Another member holds the lease: this one does not lead.
    pub fn refused(&mut self) {
        self.until = None;
    }

    /// The epoch this member leads in at `now`, if it does.
    pub fn leading(&self, now: Instant) -> Option<i64> {
        self.until.filter(|(u, _)| now < *u).map(|(_, e)| e)
    }

    /// When leadership ends unless renewed.
    pub fn until(&self) -> Option<Instant> {
        self.until.map(|(u, _)| u)
    }

    /// The epoch last held (0 for none): what a renew names.
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// How often to renew: a third of the lease.
    pub fn renew_every(&self) -> Duration {
        (self.lease / 3).max(Duration::from_millis(1))
    }
}

/// A lease as the database has it, for `/api/v1/cluster/leases`.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseRow {
    /// Lease name.
    pub name: String,
    /// Member holding (or last holding) it.
    pub holder: String,
    /// Its epoch.
    pub epoch: i64,
    /// Seconds until it expires (negative: expired), by the database's clock.
    pub expires_in_seconds: f64,
}

/// A failover group's decision as the leader published it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Group name.
    pub group: String,
    /// Epoch of the lease it was written under.
    pub epoch: i64,
    /// Decisions written for the group so far.
    pub seq: i64,
    /// Who wrote it.
    pub holder: String,
    /// The active instance.
    pub active: Option<u32>,
    /// The group's saved state (JSON, as the store keeps it).
    pub state: String,
}

/// The connection pool to the cluster database.
#[derive(Debug, Clone)]
pub struct LeaseDb {
    pool: PgPool,
    /// Bound on every statement.
    timeout: Duration,
}

impl LeaseDb {
    /// Connects to `url` within `timeout` and creates the tables. Fails (with the URL's
    /// password hidden) when the database cannot be reached: cluster mode does not start
    /// without it.
    pub async fn connect(url: &str, timeout: Duration) -> Result<LeaseDb, LeaseError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(LeaseError::NotPostgres(
                crate::redact::url(url).into_owned(),
            ));
        }
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(timeout)
            .connect_lazy(url)
            .map_err(|source| LeaseError::Query {
                what: "parsing the URL",
                source,
            })?;
        let db = LeaseDb { pool, timeout };
        // One connection first, so a refusal says why (the pool would only say it timed out).
        use sqlx::Connection as _;
        let first = db
            .bounded("connecting", sqlx::PgConnection::connect(url))
            .await?;
        drop(first);
        // Members starting together would race on CREATE TABLE IF NOT EXISTS (PostgreSQL can
        // fail one of them on its catalog): one at a time, under a transaction's advisory lock.
        db.bounded("creating the cluster tables", async {
            let mut tx = db.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SCHEMA_LOCK)
                .execute(&mut *tx)
                .await?;
            for stmt in SCHEMA {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
        .await?;
        Ok(db)
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, LeaseError> {
        self.bounded_by(self.timeout, what, fut).await
    }

    async fn bounded_by<T>(
        &self,
        after: Duration,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, LeaseError> {
        match tokio::time::timeout(after, fut).await {
            Ok(r) => r.map_err(|source| LeaseError::Query { what, source }),
            Err(_) => Err(LeaseError::Timeout { what, after }),
        }
    }

    /// Takes or renews lease `name` for `holder` (one atomic statement, see the module docs),
    /// within `within`: the epoch held, or none when another member holds it.
    pub async fn acquire(
        &self,
        name: &str,
        holder: &str,
        lease: Duration,
        last_epoch: i64,
        within: Duration,
    ) -> Result<Option<i64>, LeaseError> {
        let q = sqlx::query(ACQUIRE)
            .bind(name)
            .bind(holder)
            .bind(lease.as_secs_f64())
            .bind(last_epoch);
        let row = self
            .bounded_by(within, "renewing a lease", q.fetch_optional(&self.pool))
            .await?;
        row.map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(|source| LeaseError::Query {
                what: "reading a lease's epoch",
                source,
            })
    }

    /// Gives lease `name` up when `holder` still holds it in `epoch`.
    pub async fn release(&self, name: &str, holder: &str, epoch: i64) -> Result<(), LeaseError> {
        let q = sqlx::query(RELEASE).bind(name).bind(holder).bind(epoch);
        self.bounded("releasing a lease", q.execute(&self.pool))
            .await
            .map(drop)
    }

    /// Every lease, by name.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, LeaseError> {
        let q = sqlx::query(
            "SELECT name, holder, epoch,
                    EXTRACT(EPOCH FROM (expires_at - now()))::float8 AS left
             FROM cluster_leases ORDER BY name",
        );
        let rows = self
            .bounded("reading the leases", q.fetch_all(&self.pool))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LeaseRow {
                    name: r.try_get(0)?,
                    holder: r.try_get(1)?,
                    epoch: r.try_get(2)?,
                    expires_in_seconds: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| LeaseError::Query {
                what: "reading the leases",
                source,
            })
    }

    /// Writes `group`'s decision in the name of `holder` holding `lease` in `epoch`; false
    /// when the database refused it (the lease has moved on or expired).
    pub async fn publish(
        &self,
        lease: &str,
        holder: &str,
        epoch: i64,
        group: &str,
        active: Option<u32>,
        state: &str,
    ) -> Result<bool, LeaseError> {
        let q = sqlx::query(PUBLISH)
            .bind(group)
            .bind(lease)
            .bind(holder)
            .bind(epoch)
            .bind(active.map(|a| a as i32))
            .bind(state);
        let done = self
            .bounded("writing a failover decision", q.execute(&self.pool))
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every group's latest decision.
    pub async fn decisions(&self) -> Result<Vec<Decision>, LeaseError> {
        let q = sqlx::query("SELECT grp, epoch, seq, holder, active, state FROM cluster_decisions");
        let rows = self
            .bounded("reading the failover decisions", q.fetch_all(&self.pool))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Decision {
                    group: r.try_get(0)?,
                    epoch: r.try_get(1)?,
                    seq: r.try_get(2)?,
                    holder: r.try_get(3)?,
                    active: r.try_get::<Option<i32>, _>(4)?.map(|a| a.max(0) as u32),
                    state: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| LeaseError::Query {
                what: "reading the failover decisions",
                source,
            })
    }
}

/// One named lease this member competes for, kept by [`Lease::run`].
#[derive(Debug)]
pub struct Lease {
    /// Lease name (`notify`, `failover/GROUP`).
    pub name: String,
    /// This member's identity.
    pub holder: String,
    db: LeaseDb,
    validity: Mutex<Validity>,
    /// The epoch this member leads in, none while it does not (changes only, from the loop).
    term: watch::Sender<Option<i64>>,
    lost: AtomicU64,
    fenced: AtomicU64,
}

impl Lease {
    /// A lease `name` of duration `lease` for `holder` over `db` (not yet tried).
    pub fn new(db: LeaseDb, name: &str, holder: &str, lease: Duration) -> Arc<Lease> {
        Arc::new(Lease {
            name: name.to_string(),
            holder: holder.to_string(),
            db,
            validity: Mutex::new(Validity::new(lease)),
            term: watch::channel(None).0,
            lost: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
        })
    }

    fn validity(&self) -> Validity {
        *self.validity.lock().expect("validity lock poisoned")
    }

    /// The epoch this member leads in now (by its local validity clock), if it does.
    pub fn leading(&self) -> Option<i64> {
        self.validity().leading(Instant::now())
    }

    /// The epoch last held (0 for none).
    pub fn epoch(&self) -> i64 {
        self.validity().last_epoch()
    }

    /// Times this member stopped leading.
    pub fn lost_total(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// The database refused a write made in this lease's name (its epoch had moved on or run
    /// out): counted in `watchfire_cluster_fenced_writes_total`, logged by the caller.
    pub fn count_fenced(&self) {
        self.fenced.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the database refused in this lease's name.
    pub fn fenced_total(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
    }

    /// Changes of leadership: `Some(epoch)` when this member starts leading, `None` when it
    /// stops (at the end of its validity at the latest).
    pub fn subscribe(&self) -> watch::Receiver<Option<i64>> {
        self.term.subscribe()
    }

    /// The database this lease lives in.
    pub fn db(&self) -> &LeaseDb {
        &self.db
    }

    /// Publishes the state the local clock gives now; counts and logs a loss.
    fn announce(&self, now: Instant) {
        let next = self.validity().leading(now);
        let prev = *self.term.borrow();
        if prev == next {
            return;
        }
        match (prev, next) {
            (Some(_), None) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                warn!(lease = %self.name, member = %self.holder, "lease lost: no longer deciding for it");
            }
            (_, Some(e)) => {
                info!(lease = %self.name, member = %self.holder, epoch = e, "lease acquired: deciding for it")
            }
            (None, None) => {}
        }
        self.term.send_replace(next);
    }

    /// Acquires and renews the lease every lease/3 until `cancel`, then gives it up.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut failing = false;
        loop {
            let v = self.validity();
            let sent = Instant::now();
            // A renew may take at most what is left of the validity (and a third of the lease).
            let within = match v.until() {
                Some(u) if u > sent => (u - sent).min(v.renew_every()),
                _ => v.renew_every(),
            };
            let lease = v.lease;
            let attempt = self
                .db
                .acquire(&self.name, &self.holder, lease, v.last_epoch(), within);
            let r = tokio::select! {
                _ = cancel.cancelled() => break,
                r = attempt => r,
            };
            match r {
                Ok(Some(epoch)) => {
                    self.validity
                        .lock()
                        .expect("validity lock poisoned")
                        .renewed(sent, epoch);
                    if failing {
                        info!(lease = %self.name, "the cluster database answers again");
                    }
                    failing = false;
                }
                Ok(None) => {
                    self.validity
                        .lock()
                        .expect("validity lock poisoned")
                        .refused();
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        warn!(lease = %self.name, error = %e, "cannot renew the lease; leading only until it runs out");
                    }
                    failing = true;
                }
            }
            self.announce(Instant::now());
            let v = self.validity();
            let next = sent + v.renew_every();
            let wake = v.until().map_or(next, |u| u.min(next));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.announce(Instant::now());
        }
        if let Some(epoch) = self.leading() {
            self.validity
                .lock()
                .expect("validity lock poisoned")
                .refused();
            self.term.send_replace(None);
            if let Err(e) = self.db.release(&self.name, &self.holder, epoch).await {
                warn!(lease = %self.name, error = %e, "lease not released; it runs out by itself");
            }
        }
    }
}

/// Renders `watchfire_cluster_leader`, `watchfire_cluster_lease_epoch`,
/// `watchfire_cluster_lease_lost_total` and `watchfire_cluster_fenced_writes_total` for
/// `leases` (nothing without any).
pub fn render(leases: &[Arc<Lease>], w: &mut crate::expo::Writer<'_>) {
    use crate::expo::catalog::{
        CLUSTER_FENCED_WRITES, CLUSTER_LEADER, CLUSTER_LEASE_EPOCH, CLUSTER_LEASE_LOST,
    };
    if leases.is_empty() {
        return;
    }
    w.header(&CLUSTER_LEADER);
    for l in leases {
        w.sample(
            &CLUSTER_LEADER,
            &[("lease", &l.name)],
            l.leading().is_some(),
        );
    }
    w.header(&CLUSTER_LEASE_EPOCH);
    for l in leases {
        w.sample(
            &CLUSTER_LEASE_EPOCH,
            &[("lease", &l.name)],
            l.epoch() as f64,
        );
    }
    w.header(&CLUSTER_LEASE_LOST);
    for l in leases {
        w.sample(&CLUSTER_LEASE_LOST, &[("lease", &l.name)], l.lost_total());
    }
    w.header(&CLUSTER_FENCED_WRITES);
    for l in leases {
        w.sample(
            &CLUSTER_FENCED_WRITES,
            &[("lease", &l.name)],
            l.fenced_total(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    #[test]
    fn a_renew_leads_until_sent_plus_lease_minus_the_margin() {
        let t0 = Instant::now();
        let mut v = Validity::new(LEASE);
        assert_eq!(v.leading(t0), None, "nothing held yet");
        v.renewed(t0, 3);
        assert_eq!(v.leading(t0), Some(3));
        assert_eq!(v.leading(t0 + Duration::from_millis(7_999)), Some(3));
        assert_eq!(v.leading(t0 + Duration::from_secs(8)), None, "2 s margin");
        assert_eq!(v.until(), Some(t0 + Duration::from_secs(8)));
        assert_eq!(v.renew_every(), LEASE / 3);
    }

    #[test]
    fn a_member_cut_off_stops_before_the_database_lets_another_take_over() {
        // The database expires the lease `LEASE` after it ran the statement, which is no
        // earlier than when it was sent: local validity must end strictly before that.
        let sent = Instant::now();
        let mut v = Validity::new(LEASE);
        v.renewed(sent, 1);
        let db_ran = sent + Duration::from_millis(50);
        let takeover = db_ran + LEASE;
        let end = v.until().expect("leading");
        assert!(end < takeover);
        assert_eq!(v.leading(takeover), None);
    }

    #[test]
    fn a_late_answer_never_shortens_and_a_refusal_ends_at_once() {
        let t0 = Instant::now();
        let mut v = Validity::new(LEASE);
        v.renewed(t0 + Duration::from_secs(3), 2);
        v.renewed(t0, 2);
        assert_eq!(v.until(), Some(t0 + Duration::from_secs(11)));
        v.refused();
        assert_eq!(v.leading(t0), None);
        assert_eq!(v.last_epoch(), 2, "a renew names the epoch last held");
    }

    #[test]
    fn a_new_epoch_starts_its_own_validity() {
        let t0 = Instant::now();
        let mut v = Validity::new(LEASE);
        v.renewed(t0 + Duration::from_secs(5), 1);
        v.renewed(t0, 2);
        assert_eq!(v.leading(t0 + Duration::from_secs(9)), None);
        assert_eq!(v.leading(t0), Some(2));
    }

    #[tokio::test]
    async fn a_url_that_is_not_postgres_is_refused_with_its_password_hidden() {
        let e = LeaseDb::connect("mysql://u:hunter2@db/x", Duration::from_secs(1))
            .await
            .expect_err("not postgres");
        assert!(matches!(e, LeaseError::NotPostgres(_)));
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
