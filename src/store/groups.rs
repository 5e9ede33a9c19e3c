//! The failover groups' rollups (`group_rollups`, schema version 3): slices of a minute added
//! into their minute, hour and day rows, read back by level and range, pruned like the
//! targets' rollups.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::model::{GroupRollup, Level, Millis};

type R<T> = Result<T, sqlx::Error>;

const COLUMNS: &str =
    "grp, start, observed_ms, down_ms, maintenance_ms, requests, failed_requests, switches";

/// Sums `slice` into the pending rows of every level (one row per level, group and period).
pub fn sum_into(sums: &mut BTreeMap<(i64, String, Millis), GroupRollup>, slice: &GroupRollup) {
    for level in [Level::Minute, Level::Hour, Level::Day] {
        let start = slice.start - slice.start.rem_euclid(level.millis());
        sums.entry((level.code(), slice.group.clone(), start))
            .or_insert_with(|| GroupRollup {
                group: slice.group.clone(),
                start,
                ..GroupRollup::default()
            })
            .add(slice);
    }
}

fn from_row(row: &AnyRow) -> R<GroupRollup> {
    let n = |i: usize| -> R<i64> { row.try_get::<i64, _>(i) };
    Ok(GroupRollup {
        group: row.try_get(0)?,
        start: n(1)?,
        observed_ms: n(2)?,
        down_ms: n(3)?,
        maintenance_ms: n(4)?,
        requests: n(5)?.max(0) as u64,
        failed_requests: n(6)?.max(0) as u64,
        switches: n(7)?.max(0) as u64,
    })
}

/// Adds `r` into the stored row of `level` for its group and start (read, add, write: the
/// single writer makes that safe).
pub async fn add(c: &mut AnyConnection, level: i64, r: &GroupRollup) -> R<()> {
    let old = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM group_rollups WHERE level = $1 AND grp = $2 AND start = $3"
    ))
    .bind(level)
    .bind(&r.group)
    .bind(r.start)
    .fetch_optional(&mut *c)
    .await?;
    let mut sum = match old {
        Some(row) => from_row(&row)?,
        None => GroupRollup {
            group: r.group.clone(),
            start: r.start,
            ..GroupRollup::default()
        },
    };
    sum.add(r);
    sqlx::query(&format!(
        "INSERT INTO group_rollups (level, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (level, grp, start) DO UPDATE SET observed_ms = excluded.observed_ms, \
         down_ms = excluded.down_ms, maintenance_ms = excluded.maintenance_ms, \
         requests = excluded.requests, failed_requests = excluded.failed_requests, \
         switches = excluded.switches"
    ))
    .bind(level)
    .bind(&sum.group)
    .bind(sum.start)
    .bind(sum.observed_ms)
    .bind(sum.down_ms)
    .bind(sum.maintenance_ms)
    .bind(sum.requests as i64)
    .bind(sum.failed_requests as i64)
    .bind(sum.switches as i64)
    .execute(c)
    .await?;
    Ok(())
}

/// Group rollups of `level` starting in `[from, to)`, of `group` only when given, by group
/// then start.
pub async fn read(
    c: &mut AnyConnection,
    level: Level,
    from: Millis,
    to: Millis,
    group: Option<&str>,
) -> R<Vec<GroupRollup>> {
    let filter = if group.is_some() { " AND grp = $4" } else { "" };
    let sql = format!(
        "SELECT {COLUMNS} FROM group_rollups WHERE level = $1 AND start >= $2 AND start < $3\
         {filter} ORDER BY grp, start"
    );
    let mut q = sqlx::query(&sql).bind(level.code()).bind(from).bind(to);
    if let Some(g) = group {
        q = q.bind(g);
    }
    q.fetch_all(c).await?.iter().map(from_row).collect()
}

/// Deletes the group rollups of `level` that start before `before`; returns how many went.
pub async fn prune(c: &mut AnyConnection, level: Level, before: Millis) -> R<u64> {
    let done = sqlx::query("DELETE FROM group_rollups WHERE level = $1 AND start < $2")
        .bind(level.code())
        .bind(before)
        .execute(c)
        .await?;
    Ok(done.rows_affected())
}
