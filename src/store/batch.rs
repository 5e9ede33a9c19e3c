//! One batch of queued writes applied in one transaction: states upserted, transitions
//! appended, target minutes and group slices summed into their minute, hour and day rows, and,
//! at recovery, what was made while degraded (`restore.rs`).

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::Connection;

use super::model::{Level, Millis, Rollup, Write};
use super::{groups, restore, sql};

type R<T> = Result<T, sqlx::Error>;

/// Applies `batch` in one transaction: states upserted, transitions appended, minutes and
/// group slices added into their minute, hour and day rows; then `replay`, when given.
pub async fn apply(
    conn: &mut AnyConnection,
    batch: &[Write],
    replay: Option<&restore::Restore>,
) -> R<()> {
    let mut tx = conn.begin().await?;
    let mut sums: BTreeMap<(i64, String, Millis), Rollup> = BTreeMap::new();
    let mut group_sums = BTreeMap::new();
    for w in batch {
        match w {
            Write::TargetState(t) => sql::upsert_target(&mut tx, t).await?,
            Write::GroupState(g) => sql::upsert_group(&mut tx, g).await?,
            Write::Transition(t) => sql::insert_transition(&mut tx, t).await?,
            Write::ForgetTarget(name) => {
                sqlx::query("DELETE FROM target_state WHERE target = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
            Write::Minute(m) => {
                for level in [Level::Minute, Level::Hour, Level::Day] {
                    let start = m.start - m.start.rem_euclid(level.millis());
                    let r = sums
                        .entry((level.code(), m.target.clone(), start))
                        .or_insert_with(|| Rollup {
                            target: m.target.clone(),
                            start,
                            ..Rollup::default()
                        });
                    super::add_into(r, m);
                }
            }
            Write::GroupMinute(g) => groups::sum_into(&mut group_sums, g),
        }
    }
    for ((level, _, _), r) in &sums {
        sql::add_rollup(&mut tx, *level, r).await?;
    }
    for ((level, _, _), r) in &group_sums {
        groups::add(&mut tx, *level, r).await?;
    }
    if let Some(r) = replay {
        restore::restore(&mut tx, r).await?;
    }
    tx.commit().await
}
