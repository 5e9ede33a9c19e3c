//! The observer's tables and the member's copy of them: `cluster_observations` (one row per
//! location and target: the view of the member that last wrote it) and `cluster_observers`
//! (one heartbeat row per location and member). A row counts while its writer's heartbeat is
//! younger than the lease.
//!
//! Reads are incremental. Every write stores its transaction's id (`xid`, a 64-bit `xid8`
//! that never wraps); a read returns the rows whose `xid` is at least the watermark, and the
//! next watermark is the oldest transaction still running when the read's snapshot was taken
//! (`pg_snapshot_xmin`). A transaction that took its id before a read but commits after it has
//! an id at or above that watermark, so the next read sees it: transactions that commit out of
//! order are never missed, at the price of re-reading the few rows written after the watermark.
//! Deleted rows are not seen by the readers; they only delete rows of targets gone from the
//! config, which every reader drops from its copy itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::{PgConnection, Row as _};

use super::quorum::Observation;
use crate::state::Health;

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

/// The observations table (kept as it was created first; [`MIGRATIONS`] adds the rest).
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS cluster_observations (
    location TEXT NOT NULL,
    target TEXT NOT NULL,
    health TEXT NOT NULL,
    reason TEXT,
    since_ms BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (location, target)
)";

/// Run after [`SCHEMA`], each under the schema lock: the writer and transaction of each row,
/// the index the incremental read uses, and the heartbeats.
pub const MIGRATIONS: &[&str] = &[
    "ALTER TABLE cluster_observations ADD COLUMN IF NOT EXISTS member TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE cluster_observations ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id()",
    "CREATE INDEX IF NOT EXISTS cluster_observations_xid ON cluster_observations (xid)",
    "CREATE TABLE IF NOT EXISTS cluster_observers (
        location TEXT NOT NULL,
        member TEXT NOT NULL,
        beat_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (location, member)
    )",
];

/// One stored row, as a reader keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The member that wrote it.
    pub member: String,
    /// Its view.
    pub health: Health,
    /// The last failure's reason, when down.
    pub reason: Option<String>,
    /// Since when, ms since the epoch.
    pub since_ms: i64,
}

/// Renews the heartbeat of `member` in `location`; how long ago the previous one was (ms),
/// `None` when there was none.
pub async fn beat(
    conn: &mut PgConnection,
    location: &str,
    member: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let q = "WITH prev AS (SELECT beat_at FROM cluster_observers WHERE location = $1 AND member = $2)
             INSERT INTO cluster_observers (location, member, beat_at) VALUES ($1, $2, clock_timestamp())
             ON CONFLICT (location, member) DO UPDATE SET beat_at = EXCLUDED.beat_at
             RETURNING (SELECT (EXTRACT(EPOCH FROM clock_timestamp() - beat_at) * 1000)::bigint
                        FROM prev) AS lapse_ms";
    let r = sqlx::query(q)
        .bind(location)
        .bind(member)
        .fetch_one(conn)
        .await?;
    r.try_get("lapse_ms")
}

/// Upserts `rows` of `location`, written by `member`, in key order (two members writing
/// overlapping rows lock them in the same order).
pub async fn write(
    conn: &mut PgConnection,
    location: &str,
    member: &str,
    rows: &mut [&View],
) -> Result<(), sqlx::Error> {
    rows.sort_by(|a, b| a.target.cmp(&b.target));
    let targets: Vec<&str> = rows.iter().map(|v| v.target.as_str()).collect();
    let health: Vec<&str> = rows.iter().map(|v| v.health.as_str()).collect();
    let reasons: Vec<Option<&str>> = rows.iter().map(|v| v.reason.as_deref()).collect();
    let since: Vec<i64> = rows.iter().map(|v| v.since_ms).collect();
    let q = "INSERT INTO cluster_observations
               (location, target, health, reason, since_ms, updated_at, member, xid)
             SELECT $1, t, h, r, s, clock_timestamp(), $6, pg_current_xact_id()
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(t, h, r, s)
             ORDER BY t
             ON CONFLICT (location, target) DO UPDATE SET health = EXCLUDED.health,
               reason = EXCLUDED.reason, since_ms = EXCLUDED.since_ms,
               updated_at = EXCLUDED.updated_at, member = EXCLUDED.member, xid = EXCLUDED.xid";
    sqlx::query(q)
        .bind(location)
        .bind(&targets)
        .bind(&health)
        .bind(&reasons)
        .bind(&since)
        .bind(member)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the rows of `location` whose target is in `gone` (or, with `keep`, every row of
/// `location` whose target is not in `keep`).
pub async fn delete(
    conn: &mut PgConnection,
    location: &str,
    targets: &[&str],
    keep: bool,
) -> Result<u64, sqlx::Error> {
    let q = if keep {
        "DELETE FROM cluster_observations WHERE location = $1 AND NOT (target = ANY($2))"
    } else {
        "DELETE FROM cluster_observations WHERE location = $1 AND target = ANY($2)"
    };
    let r = sqlx::query(q)
        .bind(location)
        .bind(targets)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// How long a member's heartbeat row outlives its last heartbeat before [`sweep`] removes it:
/// far past any lease, so only members that never came back lose theirs.
pub const FORGOTTEN_AFTER_SECS: i64 = 3600;

/// Removes what members that never came back left behind: heartbeat rows older than
/// [`FORGOTTEN_AFTER_SECS`], then the observations of locations left with no heartbeat row at
/// all (no member of theirs for that long). A location with a member still beating keeps its
/// rows, whoever wrote them: its members write again the rows of targets they took over.
/// Returns (heartbeat rows, observation rows) deleted.
pub async fn sweep(conn: &mut PgConnection) -> Result<(u64, u64), sqlx::Error> {
    let beats = sqlx::query(
        "DELETE FROM cluster_observers
         WHERE beat_at < clock_timestamp() - make_interval(secs => $1)",
    )
    .bind(FORGOTTEN_AFTER_SECS as f64)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let rows = sqlx::query(
        "DELETE FROM cluster_observations o
         WHERE NOT EXISTS (SELECT 1 FROM cluster_observers b WHERE b.location = o.location)",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok((beats, rows))
}

/// A member's copy of both tables, kept up to date by [`Board::read`].
#[derive(Debug, Default)]
pub struct Board {
    /// Rows with a transaction id at or above this are read next.
    watermark: u64,
    /// Location → target → row.
    rows: HashMap<String, HashMap<String, Row>>,
    /// Location → member → its last heartbeat, ms since the epoch (database clock).
    beats: BTreeMap<String, BTreeMap<String, i64>>,
    /// The database's now at the last read, ms since the epoch.
    now_ms: i64,
    /// Rows read in all (the overlap included), for the counters.
    pub rows_read: u64,
}

/// What changed in one [`Board::read`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// A row differs from the copy.
    pub rows: bool,
    /// The set of members with a live heartbeat differs.
    pub live: bool,
}

impl Board {
    /// Reads the rows changed since the last read and every heartbeat; `lease_ms` decides
    /// which heartbeats are live.
    pub async fn read(
        &mut self,
        conn: &mut PgConnection,
        lease_ms: i64,
    ) -> Result<Changes, sqlx::Error> {
        let before = self.live(lease_ms);
        let rows = self.read_rows(conn).await?;
        let q = "SELECT location, member,
                        (EXTRACT(EPOCH FROM beat_at) * 1000)::bigint AS beat_ms,
                        (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint AS now_ms
                 FROM cluster_observers";
        let beats = sqlx::query(q).fetch_all(&mut *conn).await?;
        let mut now_ms = None;
        self.beats.clear();
        for r in beats {
            now_ms = Some(r.try_get("now_ms")?);
            let of = self.beats.entry(r.try_get("location")?).or_default();
            of.insert(r.try_get("member")?, r.try_get("beat_ms")?);
        }
        self.now_ms = match now_ms {
            Some(n) => n,
            None => {
                sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint")
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        Ok(Changes {
            rows,
            live: self.live(lease_ms) != before,
        })
    }

    /// The incremental read of `cluster_observations`; whether a row differed from the copy.
    async fn read_rows(&mut self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        // One statement, so the watermark comes from the snapshot the rows were read in.
        let q = "WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin)
                 SELECT s.xmin, o.location, o.target, o.member, o.health, o.reason, o.since_ms
                 FROM s LEFT JOIN cluster_observations o ON o.xid >= $1::text::xid8";
        let rows = sqlx::query(q)
            .bind(self.watermark.to_string())
            .fetch_all(conn)
            .await?;
        let mut changed = false;
        for r in rows {
            let xmin: String = r.try_get("xmin")?;
            self.watermark = xmin.parse().unwrap_or(self.watermark);
            let Some(location) = r.try_get::<Option<String>, _>("location")? else {
                continue;
            };
            self.rows_read += 1;
            let health: String = r.try_get("health")?;
            let row = Row {
                member: r.try_get("member")?,
                health: match health.as_str() {
                    "up" => Health::Up,
                    "down" => Health::Down,
                    _ => Health::Unknown,
                },
                reason: r.try_get("reason")?,
                since_ms: r.try_get("since_ms")?,
            };
            let target: String = r.try_get("target")?;
            let of = self.rows.entry(location).or_default();
            if of.get(&target) != Some(&row) {
                of.insert(target, row);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The database's now at the last read.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// The members whose heartbeat is younger than `lease_ms`, as (location, member).
    pub fn live(&self, lease_ms: i64) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (l, of) in &self.beats {
            for (m, b) in of {
                if self.now_ms.saturating_sub(*b) <= lease_ms {
                    out.insert((l.clone(), m.clone()));
                }
            }
        }
        out
    }

    /// Each location's newest heartbeat.
    pub fn newest_beats(&self) -> BTreeMap<String, i64> {
        let newest = |of: &BTreeMap<String, i64>| of.values().copied().max().unwrap_or(0);
        self.beats
            .iter()
            .map(|(l, of)| (l.clone(), newest(of)))
            .collect()
    }

    /// The member that wrote the row of `target` in `location`, if any.
    pub fn writer(&self, location: &str, target: &str) -> Option<&str> {
        let row = self.rows.get(location)?.get(target)?;
        Some(row.member.as_str())
    }

    /// Drops every row whose target is not in `targets` (gone from the config).
    pub fn retain(&mut self, targets: &BTreeSet<&str>) {
        for of in self.rows.values_mut() {
            of.retain(|t, _| targets.contains(t.as_str()));
        }
    }

    /// Every row as an [`Observation`] for the quorum, its `updated_ms` its writer's last
    /// heartbeat (0 without one: the row counts for nothing).
    pub fn observations(&self) -> Vec<Observation> {
        let mut out = Vec::with_capacity(self.rows.values().map(HashMap::len).sum());
        for (location, of) in &self.rows {
            let beats = self.beats.get(location);
            for (target, row) in of {
                let beat = beats.and_then(|b| b.get(&row.member)).copied();
                out.push(Observation {
                    location: location.clone(),
                    target: target.clone(),
                    health: row.health,
                    since_ms: row.since_ms,
                    reason: row.reason.clone(),
                    updated_ms: beat.unwrap_or(0),
                });
            }
        }
        out
    }
}
