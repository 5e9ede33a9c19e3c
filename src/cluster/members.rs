//! Membership in PostgreSQL: the `cluster_members` table, registering, heartbeats and the live
//! member list.
//!
//! A member is a row `(id, location, address, started, heartbeat, lease_ms, incarnation)`. It
//! is live while `heartbeat + lease > now()`, where `now()` and `heartbeat` are both the
//! database's clock: members' own clocks never decide expiry. Registering takes a row whose
//! id is free or whose lease has expired (a restart after a crash), and fails while another
//! live member holds the id. Every heartbeat renews the row only for the incarnation that
//! registered it, so a member whose id was taken over after its lease expired learns it.

use std::time::Duration;

use sqlx::{Connection as _, PgConnection, Row as _};

use super::ClusterError;

/// Creates the table when missing (owned here, not by the store's migrations).
const CREATE: &str = "CREATE TABLE IF NOT EXISTS cluster_members (
    id TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    address TEXT NOT NULL,
    started TIMESTAMPTZ NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL,
    lease_ms BIGINT NOT NULL,
    incarnation BIGINT NOT NULL
)";

/// Registers `$1` unless a live member holds it; the new incarnation, or no row.
const REGISTER: &str = "INSERT INTO cluster_members AS m
    (id, location, address, started, heartbeat, lease_ms, incarnation)
    VALUES ($1, $2, $3, now(), now(), $4, 1)
    ON CONFLICT (id) DO UPDATE SET location = EXCLUDED.location, address = EXCLUDED.address,
        started = now(), heartbeat = now(), lease_ms = EXCLUDED.lease_ms,
        incarnation = m.incarnation + 1
    WHERE m.heartbeat + m.lease_ms * interval '1 millisecond' <= now()
    RETURNING incarnation";

/// How long the holder of a live id has left (seconds), when registering fails.
const HOLDER: &str = "SELECT address,
    EXTRACT(EPOCH FROM (heartbeat + lease_ms * interval '1 millisecond' - now()))::float8
    FROM cluster_members WHERE id = $1";

/// Renews this incarnation's lease.
const HEARTBEAT: &str = "UPDATE cluster_members SET heartbeat = now(), lease_ms = $3
    WHERE id = $1 AND incarnation = $2";

/// The live members, by id.
const LIVE: &str = "SELECT id, location, address,
    EXTRACT(EPOCH FROM (now() - started))::float8,
    EXTRACT(EPOCH FROM (now() - heartbeat))::float8,
    lease_ms,
    incarnation
    FROM cluster_members
    WHERE heartbeat + lease_ms * interval '1 millisecond' > now()
    ORDER BY id";

/// Leaves at once (a clean shutdown), so the others take over without waiting for the lease.
const LEAVE: &str = "DELETE FROM cluster_members WHERE id = $1 AND incarnation = $2";

/// Rows expired for an hour are nobody's: removed when a member registers.
const SWEEP: &str = "DELETE FROM cluster_members
    WHERE heartbeat + lease_ms * interval '1 millisecond' < now() - interval '1 hour'";

/// A live member as the database last showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// `--cluster.id`.
    pub id: String,
    /// `--location`.
    pub location: String,
    /// Where it serves its API (its first listen address).
    pub address: String,
    /// Seconds since it registered (database clock).
    pub age_seconds: f64,
    /// Seconds since its last heartbeat (database clock).
    pub heartbeat_age_seconds: f64,
    /// Its lease: it stops being a member this long after its last heartbeat.
    pub lease: Duration,
    /// Registrations of this id so far (1 for the first).
    pub incarnation: i64,
}

impl Member {
    /// Time left before its lease ends without a new heartbeat.
    pub fn remaining(&self) -> Duration {
        let left = self.lease.as_secs_f64() - self.heartbeat_age_seconds;
        Duration::from_secs_f64(left.max(0.0))
    }
}

/// What registering and heartbeating need to know of this member.
#[derive(Debug, Clone)]
pub struct Me {
    /// `--cluster.id`.
    pub id: String,
    /// `--location`.
    pub location: String,
    /// Its API address.
    pub address: String,
    /// `--cluster.lease`.
    pub lease: Duration,
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}

/// Creates `cluster_members` when missing and removes rows expired for an hour.
pub async fn prepare(c: &mut PgConnection) -> Result<(), sqlx::Error> {
    // Two members starting at once would race to create the table: one at a time, under the
    // cluster's schema lock (and an error is harmless when the table exists afterwards).
    if let Err(e) = super::lease::create_locked(c, CREATE).await {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('cluster_members') IS NOT NULL")
            .fetch_one(&mut *c)
            .await?;
        if !exists {
            return Err(e);
        }
    }
    sqlx::query(SWEEP).execute(&mut *c).await?;
    Ok(())
}

/// Registers `me`: its incarnation, or [`ClusterError::DuplicateId`] while a live member holds
/// the id.
pub async fn register(c: &mut PgConnection, me: &Me) -> Result<i64, ClusterError> {
    let row = sqlx::query(REGISTER)
        .bind(&me.id)
        .bind(&me.location)
        .bind(&me.address)
        .bind(lease_ms(me.lease))
        .fetch_optional(&mut *c)
        .await
        .map_err(ClusterError::Database)?;
    if let Some(row) = row {
        return row.try_get(0).map_err(ClusterError::Database);
    }
    let holder = sqlx::query(HOLDER)
        .bind(&me.id)
        .fetch_optional(&mut *c)
        .await
        .map_err(ClusterError::Database)?;
    let (address, left): (String, f64) = match holder {
        Some(r) => (
            r.try_get(0).map_err(ClusterError::Database)?,
            r.try_get(1).map_err(ClusterError::Database)?,
        ),
        None => (String::new(), 0.0),
    };
    Err(ClusterError::DuplicateId {
        id: me.id.clone(),
        address,
        lease_left: Duration::from_secs_f64(left.max(0.0)),
    })
}

/// Renews the lease of `incarnation`: false when the row is no longer this incarnation's (the
/// id was taken over after the lease expired, or the row was removed).
pub async fn heartbeat(
    c: &mut PgConnection,
    me: &Me,
    incarnation: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(HEARTBEAT)
        .bind(&me.id)
        .bind(incarnation)
        .bind(lease_ms(me.lease))
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The live members, sorted by id.
pub async fn live(c: &mut PgConnection) -> Result<Vec<Member>, sqlx::Error> {
    let rows = sqlx::query(LIVE).fetch_all(&mut *c).await?;
    rows.iter()
        .map(|r| {
            let lease: i64 = r.try_get(5)?;
            Ok(Member {
                id: r.try_get(0)?,
                location: r.try_get(1)?,
                address: r.try_get(2)?,
                age_seconds: r.try_get(3)?,
                heartbeat_age_seconds: r.try_get(4)?,
                lease: Duration::from_millis(u64::try_from(lease).unwrap_or(0)),
                incarnation: r.try_get(6)?,
            })
        })
        .collect()
}

/// Removes this incarnation's row (a clean shutdown).
pub async fn leave(c: &mut PgConnection, me: &Me, incarnation: i64) -> Result<(), sqlx::Error> {
    sqlx::query(LEAVE)
        .bind(&me.id)
        .bind(incarnation)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Connects within `limit`; closes nothing on failure.
pub async fn connect(url: &str, limit: Duration) -> Result<PgConnection, sqlx::Error> {
    match tokio::time::timeout(limit, PgConnection::connect(url)).await {
        Ok(r) => r,
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// When to look at the membership next: a third of the lease (heartbeats renew in time), or
/// just after the earliest lease of another member would end, so a dead member's targets are
/// taken over as soon as its lease has expired, not up to a third of a lease later.
pub fn next_check(lease: Duration, others: &[Member], me: &str) -> Duration {
    const AFTER_EXPIRY: Duration = Duration::from_millis(25);
    const LEAST: Duration = Duration::from_millis(50);
    let renew = lease / 3;
    others
        .iter()
        .filter(|m| m.id != me)
        .map(|m| m.remaining() + AFTER_EXPIRY)
        .min()
        .map_or(renew, |e| e.min(renew))
        .max(LEAST)
}

/// Whether two member lists name the same members (ages and heartbeats aside): a change of
/// membership, which re-plans ownership.
pub fn same_members(a: &[Member], b: &[Member]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, lease_ms: u64, age: f64) -> Member {
        Member {
            id: id.into(),
            location: "default".into(),
            address: "127.0.0.1:1".into(),
            age_seconds: 10.0,
            heartbeat_age_seconds: age,
            lease: Duration::from_millis(lease_ms),
            incarnation: 1,
        }
    }

    #[test]
    fn the_next_check_is_a_third_of_the_lease_when_no_lease_ends_sooner() {
        let lease = Duration::from_secs(9);
        assert_eq!(next_check(lease, &[], "me"), Duration::from_secs(3));
        let others = [m("me", 9_000, 8.9), m("b", 9_000, 0.5)];
        assert_eq!(next_check(lease, &others, "me"), Duration::from_secs(3));
    }

    #[test]
    fn the_next_check_follows_the_earliest_end_of_another_lease() {
        let lease = Duration::from_secs(9);
        let others = [m("a", 2_000, 1.5), m("b", 9_000, 0.5)];
        let next = next_check(lease, &others, "me");
        assert!(
            next >= Duration::from_millis(520) && next <= Duration::from_millis(530),
            "{next:?}"
        );
        // An already expired lease (not yet swept by the query) is looked at again soon, not
        // in a busy loop.
        let gone = [m("a", 1_000, 5.0)];
        assert_eq!(next_check(lease, &gone, "me"), Duration::from_millis(50));
    }

    #[test]
    fn membership_changes_are_changes_of_ids_only() {
        let a = [m("a", 1_000, 0.1), m("b", 1_000, 0.2)];
        let b = [m("a", 1_000, 0.9), m("b", 2_000, 0.0)];
        assert!(same_members(&a, &b));
        assert!(!same_members(&a, &b[..1]));
        assert!(!same_members(&a, &[m("a", 1_000, 0.1), m("c", 1_000, 0.2)]));
    }

    #[test]
    fn remaining_never_goes_below_zero() {
        assert_eq!(m("a", 1_000, 3.0).remaining(), Duration::ZERO);
        assert_eq!(m("a", 3_000, 1.0).remaining(), Duration::from_secs(2));
    }
}
