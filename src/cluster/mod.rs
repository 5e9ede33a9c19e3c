//! Several watchfire instances as one prober, sharing PostgreSQL: membership ([`members`]) and
//! rendezvous sharding of the targets over the live members ([`shard`]); leases with fencing
//! so each decision has one voice ([`lease`], [`voice`]); locations and the k-of-n quorum
//! ([`quorum`], a pure evaluation, and [`observe`], each location's views in
//! `cluster_observations`, read back incrementally through [`board`]).
//!
//! [`Cluster::start`] registers this member and keeps a heartbeat task running; the runtime
//! asks [`Cluster::view`] which targets it owns and re-plans whenever [`Cluster::subscribe`]
//! announces a change of membership. Without `--cluster` none of this exists.
//!
//! Failure behaviour: a database that is wrong or unreachable at start refuses the start;
//! one lost later leaves the last membership in force (this member keeps probing what it
//! owned), logs every failed heartbeat at error level, counts it in
//! `watchfire_cluster_heartbeat_failures_total`, sets `watchfire_cluster_database_up` to 0,
//! and retries every third of a lease.

pub mod board;
pub mod lease;
pub mod members;
pub mod observe;
pub mod quorum;
pub mod shard;
pub mod voice;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, TargetSpec};
use crate::expo::{catalog, Writer};
use members::{Me, Member};
use shard::Shard;

/// `--cluster.replication` by default: each target probed by one member.
pub const DEFAULT_REPLICATION: usize = 1;
/// `--cluster.lease` by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The shortest `--cluster.lease`.
pub const MIN_LEASE: Duration = Duration::from_secs(1);
/// `--location` by default.
pub const DEFAULT_LOCATION: &str = "default";
/// The label every per-target series carries in cluster mode: the member that probed it
/// (not `instance`, which Prometheus sets to the scrape address).
pub const PROBER_LABEL: &str = "instance_id";

/// How long connecting to the cluster database may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster flags of `watchfire run`.
#[derive(Clone)]
pub struct ClusterOptions {
    /// `--cluster`: the PostgreSQL URL (the store's database). Secret: never printed whole.
    pub url: String,
    /// `--cluster.id`: this member's name, unique among live members.
    pub id: String,
    /// `--cluster.replication`: members that probe each target.
    pub replication: usize,
    /// `--cluster.lease`: a member whose heartbeat is older than this is no longer a member.
    pub lease: Duration,
    /// `--location`: where this member probes from.
    pub location: String,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &crate::redact::url(&self.url))
            .field("id", &self.id)
            .field("replication", &self.replication)
            .field("lease", &self.lease)
            .field("location", &self.location)
            .finish()
    }
}

impl ClusterOptions {
    /// Checks the values the flags cannot check alone.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |flag: &'static str, reason: String| Err(ClusterError::Flag { flag, reason });
        if self.replication < 1 {
            return bad("--cluster.replication", "must be at least 1".into());
        }
        if self.lease < MIN_LEASE {
            return bad(
                "--cluster.lease",
                format!("{:?} is shorter than the least lease, 1s", self.lease),
            );
        }
        if self.id.trim().is_empty() {
            return bad("--cluster.id", "must not be empty".into());
        }
        if self.location.trim().is_empty() {
            return bad("--location", "must not be empty".into());
        }
        let parsed = url::Url::parse(&self.url).map_err(|e| ClusterError::BadUrl {
            url: crate::redact::url(&self.url).into_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(ClusterError::BadUrl {
                url: crate::redact::url(&self.url).into_owned(),
                reason: format!(
                    "scheme {:?} is not postgres:// or postgresql://",
                    parsed.scheme()
                ),
            });
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ClusterError::BadUrl {
                url: crate::redact::url(&self.url).into_owned(),
                reason: "no host".into(),
            });
        }
        Ok(())
    }

    /// The URL with its password masked, for messages.
    pub fn shown_url(&self) -> String {
        crate::redact::url(&self.url).into_owned()
    }
}

/// Why the cluster cannot start or a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A flag's value is out of range.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// `--cluster` is not a PostgreSQL URL.
    #[error("--cluster {url} is not a usable PostgreSQL URL: {reason}")]
    BadUrl {
        /// The URL without its password.
        url: String,
        /// Why.
        reason: String,
    },
    /// The database did not answer, or refused the credentials.
    #[error("cannot reach the cluster database at {url}: {reason}")]
    Unreachable {
        /// The URL without its password.
        url: String,
        /// Why (passwords masked).
        reason: String,
    },
    /// A live member already holds this id.
    #[error("another live member already has --cluster.id {id:?} (address {address}, its lease ends in {lease_left:.1?} unless renewed): give this one another --cluster.id, or stop the other")]
    DuplicateId {
        /// The id.
        id: String,
        /// The other member's address.
        address: String,
        /// How long its lease still runs without a heartbeat.
        lease_left: Duration,
    },
    /// A query failed.
    #[error("cluster database: {0}")]
    Database(#[source] sqlx::Error),
}

/// Why connecting failed, for [`ClusterError::Unreachable`]: the innermost I/O error when there
/// is one (refused, timed out, ...), the database's own message otherwise; `secret` masked.
fn unreachable_reason(e: &sqlx::Error, secret: Option<&str>) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io = None;
    while let Some(c) = cause {
        if let Some(i) = c.downcast_ref::<std::io::Error>() {
            io = Some(i.to_string());
        }
        cause = c.source();
    }
    let text = match (e, io) {
        (sqlx::Error::PoolTimedOut, _) => {
            format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())
        }
        (_, Some(io)) => io,
        (e, None) => e.to_string(),
    };
    let text = crate::redact::urls_in(&text).into_owned();
    match secret.filter(|s| !s.is_empty()) {
        Some(s) => text.replace(s, crate::redact::MASK),
        None => text,
    }
}

/// Which targets this member owns: the shard over the live members and this member's place
/// in it (none when it is not a member: its id taken over, or before it registered).
#[derive(Debug, Clone)]
pub struct View {
    /// The live members.
    pub shard: Shard,
    /// This member's index in `shard`.
    pub me: Option<usize>,
    /// Whether this member's location writes the targets' history: the first, by name, of the
    /// live members' locations (each location probes every target; their rollups must not add
    /// up).
    pub history_location: bool,
}

impl View {
    /// Whether this member probes `target`.
    pub fn owns(&self, target: &str) -> bool {
        self.me.is_some_and(|me| self.shard.owns(me, target))
    }

    /// Whether this member writes `target`'s state, transitions and minute rollups to the
    /// shared store: it is the target's first owner ([`Shard::primary`]) in the history
    /// location. Exactly one live member does for each target, whatever the replication, so
    /// a second replica (or location) counts nothing twice; when the first owner leaves, the
    /// next in rendezvous order becomes first and takes over.
    pub fn writes_history(&self, target: &str) -> bool {
        self.history_location && self.me.is_some() && self.shard.primary(target) == self.me
    }
}

/// What the heartbeat task last learnt.
#[derive(Debug, Default)]
struct Seen {
    members: Vec<Member>,
    incarnation: Option<i64>,
}

/// A running cluster member: the heartbeat task's results and the counters it keeps.
pub struct Cluster {
    opts: ClusterOptions,
    me: Me,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    seen: Mutex<Seen>,
    view: watch::Sender<Arc<View>>,
    heartbeat_failures: AtomicU64,
    rebalances: AtomicU64,
    database_up: AtomicBool,
    owned: AtomicUsize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects, registers this member (refused while a live member holds its id) and starts
    /// the heartbeat task, which runs until `cancel`. `address` is where this member serves
    /// its API, shown to the others.
    pub async fn start(
        opts: ClusterOptions,
        address: String,
        cancel: CancellationToken,
    ) -> Result<Arc<Cluster>, ClusterError> {
        opts.validate()?;
        let secret = url::Url::parse(&opts.url)
            .ok()
            .and_then(|u| u.password().map(str::to_string));
        let mut conn = members::connect(&opts.url, CONNECT_TIMEOUT)
            .await
            .map_err(|e| ClusterError::Unreachable {
                url: opts.shown_url(),
                reason: unreachable_reason(&e, secret.as_deref()),
            })?;
        members::prepare(&mut conn)
            .await
            .map_err(ClusterError::Database)?;
        let me = Me {
            id: opts.id.clone(),
            location: opts.location.clone(),
            address,
            lease: opts.lease,
        };
        let incarnation = members::register(&mut conn, &me).await?;
        let live = members::live(&mut conn)
            .await
            .map_err(ClusterError::Database)?;
        let view = view_of(&live, &me.id, &me.location, opts.replication);
        info!(id = %me.id, location = %me.location, incarnation, members = live.len(),
              replication = opts.replication, lease = ?opts.lease, database = %opts.shown_url(),
              "joined the cluster");
        let (tx, _) = watch::channel(Arc::new(view));
        let cluster = Arc::new(Cluster {
            opts,
            me,
            conn: tokio::sync::Mutex::new(Some(conn)),
            seen: Mutex::new(Seen {
                members: live,
                incarnation: Some(incarnation),
            }),
            view: tx,
            heartbeat_failures: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            database_up: AtomicBool::new(true),
            owned: AtomicUsize::new(0),
        });
        tokio::spawn(cluster.clone().heartbeats(cancel));
        Ok(cluster)
    }

    /// The flags this member runs with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// Which targets this member owns now.
    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Announces every change of membership (a new [`View`]).
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    /// The targets of `config` this member probes: those it owns, and every failover
    /// instance's target (each member runs the group's proxy, so each needs its health).
    pub fn owned_specs(&self, config: &Config) -> Vec<Arc<TargetSpec>> {
        let view = self.view();
        let shared = unsharded(config);
        config
            .targets
            .iter()
            .filter(|t| shared.contains(t.name.as_str()) || view.owns(&t.name))
            .cloned()
            .collect()
    }

    /// The runtime re-planned after a change of membership; it now probes `owned` targets.
    pub fn rebalanced(&self, owned: usize) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.owned.store(owned, Ordering::Relaxed);
    }

    /// The runtime applied a config; it probes `owned` targets.
    pub fn set_owned(&self, owned: usize) {
        self.owned.store(owned, Ordering::Relaxed);
    }

    /// Leaves the cluster at once (a clean shutdown): the others take this member's targets
    /// without waiting for its lease to end. Bounded by a second.
    pub async fn leave(&self) {
        let incarnation = self.seen.lock().expect("seen lock poisoned").incarnation;
        let Some(incarnation) = incarnation else {
            return;
        };
        let work = async {
            let mut conn = self.conn.lock().await;
            if let Some(c) = conn.as_mut() {
                members::leave(c, &self.me, incarnation).await
            } else {
                Ok(())
            }
        };
        match tokio::time::timeout(Duration::from_secs(1), work).await {
            Ok(Ok(())) => info!(id = %self.me.id, "left the cluster"),
            Ok(Err(e)) => {
                warn!(error = %e, "could not leave the cluster; the others wait for the lease to end")
            }
            Err(_) => {
                warn!("could not leave the cluster within 1s; the others wait for the lease to end")
            }
        }
    }

    /// Renews the lease and reads the membership every [`members::next_check`] until `cancel`.
    async fn heartbeats(self: Arc<Self>, cancel: CancellationToken) {
        let mut next = self.opts.lease / 3;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(next) => {}
            }
            next = match self.beat().await {
                Ok(live) => {
                    if !self.database_up.swap(true, Ordering::Relaxed) {
                        info!(id = %self.me.id, "the cluster database answers again");
                    }
                    members::next_check(self.opts.lease, &live, &self.me.id)
                }
                Err(e) => {
                    self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
                    self.database_up.store(false, Ordering::Relaxed);
                    error!(id = %self.me.id, error = %e, database = %self.opts.shown_url(),
                           "cluster heartbeat failed: keeping the last membership and probing the targets owned so far; retrying");
                    *self.conn.lock().await = None;
                    self.opts.lease / 3
                }
            };
        }
    }

    /// One heartbeat: (re)connect, renew or register again, read the live members, publish a
    /// new view when the membership changed.
    async fn beat(&self) -> Result<Vec<Member>, ClusterError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let limit = (self.opts.lease / 3).max(Duration::from_millis(500));
            let c = members::connect(&self.opts.url, limit)
                .await
                .map_err(ClusterError::Database)?;
            *guard = Some(c);
        }
        let c = guard.as_mut().expect("connected above");
        let incarnation = self.seen.lock().expect("seen lock poisoned").incarnation;
        let renewed = match incarnation {
            Some(i) => members::heartbeat(c, &self.me, i)
                .await
                .map_err(ClusterError::Database)?,
            None => false,
        };
        if !renewed {
            match members::register(c, &self.me).await {
                Ok(i) => {
                    warn!(id = %self.me.id, incarnation = i, "registered again (the lease had ended or the row was gone)");
                    self.seen.lock().expect("seen lock poisoned").incarnation = Some(i);
                }
                Err(e @ ClusterError::DuplicateId { .. }) => {
                    error!(error = %e, "this member is no longer in the cluster: another took its id; it probes nothing until the id is free");
                    self.seen.lock().expect("seen lock poisoned").incarnation = None;
                }
                Err(e) => return Err(e),
            }
        }
        let live = members::live(c).await.map_err(ClusterError::Database)?;
        drop(guard);
        let changed = {
            let mut seen = self.seen.lock().expect("seen lock poisoned");
            let changed = !members::same_members(&seen.members, &live);
            seen.members = live.clone();
            changed
        };
        if changed {
            let view = view_of(&live, &self.me.id, &self.me.location, self.opts.replication);
            info!(members = ?view.shard.ids(), member = view.me.is_some(), "cluster membership changed");
            self.view.send_replace(Arc::new(view));
        }
        Ok(live)
    }

    /// Writes the `watchfire_cluster_*` families.
    pub fn render(&self, w: &mut Writer<'_>) {
        let members = self.seen.lock().expect("seen lock poisoned").members.len();
        w.header(&catalog::CLUSTER_MEMBERS);
        w.sample(&catalog::CLUSTER_MEMBERS, &[], members);
        w.header(&catalog::CLUSTER_OWNED_TARGETS);
        w.sample(
            &catalog::CLUSTER_OWNED_TARGETS,
            &[],
            self.owned.load(Ordering::Relaxed),
        );
        w.header(&catalog::CLUSTER_HEARTBEAT_FAILURES);
        w.sample(
            &catalog::CLUSTER_HEARTBEAT_FAILURES,
            &[],
            self.heartbeat_failures.load(Ordering::Relaxed),
        );
        w.header(&catalog::CLUSTER_REBALANCES);
        w.sample(
            &catalog::CLUSTER_REBALANCES,
            &[],
            self.rebalances.load(Ordering::Relaxed),
        );
        w.header(&catalog::CLUSTER_DATABASE_UP);
        w.sample(
            &catalog::CLUSTER_DATABASE_UP,
            &[],
            self.database_up.load(Ordering::Relaxed),
        );
    }

    /// Targets of `config` that no live member of a location probes, by location, as this
    /// member last read the membership ([`unowned_of`]).
    pub fn unowned(&self, config: &Config) -> BTreeMap<String, usize> {
        let seen = self.seen.lock().expect("seen lock poisoned");
        unowned_of(&seen.members, config)
    }

    /// `/api/v1/cluster`: this member, the live members with their leases and the targets of
    /// `config` each owns.
    pub fn json(&self, config: &Config) -> ClusterJson {
        let view = self.view();
        let shared = unsharded(config);
        let sharded = config
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .filter(|n| !shared.contains(n));
        let counts = view.shard.counts(sharded);
        let seen = self.seen.lock().expect("seen lock poisoned");
        let members = seen
            .members
            .iter()
            .map(|m| MemberJson {
                id: m.id.clone(),
                location: m.location.clone(),
                address: m.address.clone(),
                up_seconds: m.age_seconds,
                heartbeat_age_seconds: m.heartbeat_age_seconds,
                lease_seconds: m.lease.as_secs_f64(),
                lease_left_seconds: m.remaining().as_secs_f64(),
                incarnation: m.incarnation,
                owned_targets: view.shard.index_of(&m.id).map_or(0, |i| counts[i]),
            })
            .collect();
        ClusterJson {
            id: self.me.id.clone(),
            location: self.me.location.clone(),
            member: view.me.is_some(),
            incarnation: seen.incarnation,
            replication: self.opts.replication,
            lease_seconds: self.opts.lease.as_secs_f64(),
            database_up: self.database_up.load(Ordering::Relaxed),
            targets: config.targets.len(),
            unsharded_targets: shared.len(),
            owned_targets: self.owned.load(Ordering::Relaxed),
            members,
        }
    }
}

/// The targets every member probes whatever the shard says: the failover groups' instances.
pub fn unsharded(config: &Config) -> HashSet<&str> {
    config
        .failover
        .iter()
        .flat_map(|g| g.instances.iter().map(|i| i.target.as_str()))
        .collect()
}

/// Targets of `config` that no live member of a location probes, by location. A target's
/// locations are its quorum's (`quorum.locations`, globally or its own, else every location a
/// live member is in); a location with a live member probes every target (its members shard
/// them), so a target is unowned there only when the location has no live member. Every
/// location known (configured or live) is listed, with 0 when it owns everything.
pub fn unowned_of(live: &[Member], config: &Config) -> BTreeMap<String, usize> {
    let present: BTreeSet<&str> = live.iter().map(|m| m.location.as_str()).collect();
    let mut known: BTreeSet<String> = present.iter().map(|l| l.to_string()).collect();
    known.extend(config.quorum.global.locations.iter().flatten().cloned());
    known.extend(
        config
            .quorum
            .targets
            .values()
            .flat_map(|q| q.locations.iter().flatten().cloned()),
    );
    let seen: Vec<String> = present.iter().map(|l| l.to_string()).collect();
    let mut out: BTreeMap<String, usize> = known.into_iter().map(|l| (l, 0)).collect();
    for t in &config.targets {
        for l in config.quorum.effective(&t.name, &seen).locations.iter() {
            if !present.contains(l.as_str()) {
                *out.entry(l.clone()).or_default() += 1;
            }
        }
    }
    out
}

/// The shard over the live members of this member's location: each location probes every
/// target (its own view, for the quorum), and its members share that work among themselves.
fn view_of(live: &[Member], me: &str, location: &str, replication: usize) -> View {
    let ids: Vec<&str> = live
        .iter()
        .filter(|m| m.location == location)
        .map(|m| m.id.as_str())
        .collect();
    let shard = Shard::new(&ids, replication);
    let me = shard.index_of(me);
    let first = live.iter().map(|m| m.location.as_str()).min();
    View {
        shard,
        me,
        history_location: first.is_none_or(|f| f == location),
    }
}

/// `/api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterJson {
    /// This member's `--cluster.id`.
    pub id: String,
    /// This member's `--location`.
    pub location: String,
    /// Whether this member is in the live membership (false: it probes only unsharded targets).
    pub member: bool,
    /// This member's registration count for its id.
    pub incarnation: Option<i64>,
    /// `--cluster.replication`.
    pub replication: usize,
    /// `--cluster.lease`, seconds.
    pub lease_seconds: f64,
    /// Whether the last heartbeat reached the database.
    pub database_up: bool,
    /// Targets in the config.
    pub targets: usize,
    /// Targets every member probes (failover instances).
    pub unsharded_targets: usize,
    /// Targets this member probes now.
    pub owned_targets: usize,
    /// The live members, by id.
    pub members: Vec<MemberJson>,
}

/// One live member in `/api/v1/cluster`.
#[derive(Debug, Serialize)]
pub struct MemberJson {
    /// `--cluster.id`.
    pub id: String,
    /// `--location`.
    pub location: String,
    /// Its API address.
    pub address: String,
    /// Seconds since it registered.
    pub up_seconds: f64,
    /// Seconds since its last heartbeat (database clock).
    pub heartbeat_age_seconds: f64,
    /// Its lease, seconds.
    pub lease_seconds: f64,
    /// Seconds before its lease ends without another heartbeat.
    pub lease_left_seconds: f64,
    /// Its registration count for its id.
    pub incarnation: i64,
    /// Sharded targets it owns.
    pub owned_targets: usize,
}

#[cfg(test)]
mod tests;
