//! One batch of queued writes applied in one transaction: states upserted, transitions
//! appended, target minutes and group slices summed into their minute, hour and day rows, and,
//! at recovery, what was made while degraded (`restore.rs`).
//!
//! Rows are locked in one order whatever the queue's: target states by target, group states by
//! group, rollups by level, target and start. In a cluster two members write the same targets'
//! rows during a hand-off (the old owner's last writes and the new owner's first); in queue
//! order their transactions could lock them in opposite orders and PostgreSQL would abort one
//! (`deadlock detected`). A transaction aborted as a deadlock or serialization failure anyway
//! (SQLSTATE 40P01, 40001) committed nothing and is run again, up to [`ATTEMPTS`] times.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::Connection;

use super::model::{Level, Millis, Rollup, Write};
use super::{groups, restore, sql};

type R<T> = Result<T, sqlx::Error>;

/// How many times a batch aborted as a deadlock or serialization failure is tried.
pub const ATTEMPTS: u32 = 3;

/// Applies `batch` in one transaction: states upserted, transitions appended, minutes and
/// group slices added into their minute, hour and day rows; then `replay`, when given. Run
/// again when PostgreSQL aborted it as a deadlock or serialization failure.
pub async fn apply(
    conn: &mut AnyConnection,
    batch: &[Write],
    replay: Option<&restore::Restore>,
) -> R<()> {
    let mut attempt = 1;
    loop {
        match apply_once(conn, batch, replay).await {
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::warn!(error = %e, attempt, "store batch aborted by the database; running it again");
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Whether `e` (or an error it wraps) is PostgreSQL's deadlock (40P01) or serialization
/// failure (40001): the transaction was rolled back whole, so running it again is safe.
pub fn retryable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let code = c
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|d| d.code());
        if code.is_some_and(|c| c == "40P01" || c == "40001") {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn apply_once(
    conn: &mut AnyConnection,
    batch: &[Write],
    replay: Option<&restore::Restore>,
) -> R<()> {
    let mut tx = conn.begin().await?;
    let mut sums: BTreeMap<(i64, String, Millis), Rollup> = BTreeMap::new();
    let mut group_sums = BTreeMap::new();
    // The last state (or forgetting) of each target and group, applied in key order below.
    let mut targets = BTreeMap::new();
    let mut group_states = BTreeMap::new();
    for w in batch {
        match w {
            Write::TargetState(t) => {
                targets.insert(t.target.as_str(), Some(t));
            }
            Write::GroupState(g) => {
                group_states.insert(g.group.as_str(), g);
            }
            Write::Transition(t) => sql::insert_transition(&mut tx, t).await?,
            Write::ForgetTarget(name) => {
                targets.insert(name.as_str(), None);
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
    for (name, state) in targets {
        match state {
            Some(t) => sql::upsert_target(&mut tx, t).await?,
            None => {
                sqlx::query("DELETE FROM target_state WHERE target = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    for g in group_states.values() {
        sql::upsert_group(&mut tx, g).await?;
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::retryable;

    /// A database error with a SQLSTATE, as the driver returns one.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a message that names no code")
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            "a message that names no code"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    /// An error that wraps another, as the store's own errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("the batch failed")]
    struct Wrapped(#[source] sqlx::Error);

    #[test]
    fn deadlocks_and_serialization_failures_are_retried_by_their_code_only() {
        let db = |c| sqlx::Error::Database(Box::new(Coded(c)));
        assert!(retryable(&db("40P01")));
        assert!(retryable(&db("40001")));
        assert!(retryable(&Wrapped(db("40P01"))), "found through source()");
        assert!(
            !retryable(&db("23505")),
            "a unique violation is not retried"
        );
        assert!(!retryable(&sqlx::Error::PoolTimedOut));
    }
}
