//! The notification outbox: each message is written here before it is sent, and marked when it
//! is delivered, retried or given up, so a restart resumes what was pending and resends nothing
//! that was delivered. Rows are written at once (awaited), not through the write queue: "written
//! before sent" must hold when the call returns.
//!
//! The store does not read the message: it keeps it as the JSON text the notifier gave.
//!
//! While the store is degraded (its backend failed, see [`Store::status`]), the outbox works on
//! the in-memory fallback like every awaited call: rows enqueued meanwhile are delivered, but
//! they are lost if watchfire stops before the backend answers again, and they are not replayed
//! into the backend when it does (the planner finds their keys missing there and enqueues them
//! again, so such a message may be sent twice).
//!
//! In cluster mode the writes are fenced by the `notify` lease ([`super::fence`]).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use super::fence::{holds, OutboxClaim};
use super::model::IncidentUpdate;
use super::{db, sql, Millis, Store, StoreError};

/// At most this many finished rows are deleted by one [`Store::outbox_prune`] call.
pub const PRUNE_MAX: usize = 10_000;

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Not delivered yet (first try or a retry pending at `next_attempt`).
    Pending,
    /// Delivered.
    Sent,
    /// Given up (a permanent error, or retries exhausted).
    Failed,
    /// Recorded, not sent (a maintenance window).
    Suppressed,
}

impl OutboxState {
    /// The state named `s`, as stored.
    pub fn parse(s: &str) -> Option<OutboxState> {
        [
            OutboxState::Pending,
            OutboxState::Sent,
            OutboxState::Failed,
            OutboxState::Suppressed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Suppressed => "suppressed",
        }
    }
}

/// A row to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    /// Unique key; a row whose key is held already is ignored.
    pub key: String,
    /// The incident (0 for none).
    pub incident: i64,
    /// The receiver's name.
    pub receiver: String,
    /// The message kind (`declared`, ...).
    pub kind: String,
    /// When it was due.
    pub due: Millis,
    /// The message, as JSON.
    pub message: String,
    /// `Pending` to send, `Suppressed` to record only.
    pub state: OutboxState,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Assigned by the store; delivery order within an incident follows it.
    pub id: i64,
    /// Unique key.
    pub key: String,
    /// The incident (0 for none).
    pub incident: i64,
    /// The receiver's name.
    pub receiver: String,
    /// The message kind.
    pub kind: String,
    /// When it was due.
    pub due: Millis,
    /// The message, as JSON.
    pub message: String,
    /// Where it stands.
    pub state: OutboxState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt may be made.
    pub next_attempt: Millis,
    /// The last failure, redacted.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created: Millis,
    /// When it was delivered.
    pub sent_at: Option<Millis>,
}

impl Store {
    /// Enqueues `rows` in one transaction at `now` (their `created`, and the first attempt's
    /// time), ignoring any whose key is held already; returns how many were new. Durable when it
    /// returns: awaited on the active backend, not queued.
    pub async fn outbox_enqueue(
        &self,
        rows: &[NewOutbox],
        now: Millis,
    ) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let fence = self.fence();
        let claim = fence.as_ref().map(|f| &f.1);
        match on_active!(self, |c| enqueue(c, rows, now, claim))? {
            Some(n) => Ok(n),
            None => Err(Store::fence_refused(fence, "enqueue")),
        }
    }

    /// The keys held for `incident`, any state.
    pub async fn outbox_keys(&self, incident: i64) -> Result<Vec<String>, StoreError> {
        let rows = on_active!(self, |c| sqlx::query(
            "SELECT msg_key FROM notify_outbox WHERE incident = $1 ORDER BY id"
        )
        .bind(incident)
        .fetch_all(c))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| db::classify(e, &self.shared.active().place))
    }

    /// Up to `limit` pending rows of `receiver` whose `next_attempt` ≤ `now`, by id, each the
    /// oldest pending row of its incident for that receiver: a row waits while an earlier row
    /// of the same incident and receiver is pending (in retry), so that a receiver gets an
    /// incident's messages in order. Rows of incident 0 (test messages) never wait.
    pub async fn outbox_due(
        &self,
        receiver: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notify_outbox o WHERE o.receiver = $1 AND o.state = 'pending' \
             AND o.next_attempt <= $2 AND {HEAD} ORDER BY o.id LIMIT {}",
            limit.max(1)
        );
        let rows = on_active!(self, |c| sqlx::query(&sql)
            .bind(receiver)
            .bind(now)
            .fetch_all(c))?;
        rows.iter()
            .map(row_from)
            .collect::<Result<_, _>>()
            .map_err(|e| db::classify(e, &self.shared.active().place))
    }

    /// The earliest `next_attempt` among the rows [`Store::outbox_due`] would return for
    /// `receiver` at any time; none when nothing of it is pending.
    pub async fn outbox_next(&self, receiver: &str) -> Result<Option<Millis>, StoreError> {
        let sql = format!(
            "SELECT MIN(o.next_attempt) FROM notify_outbox o WHERE o.receiver = $1 \
             AND o.state = 'pending' AND {HEAD}"
        );
        let row = on_active!(self, |c| sqlx::query(&sql).bind(receiver).fetch_one(c))?;
        row.try_get::<Option<i64>, _>(0)
            .map_err(|e| db::classify(e, &self.shared.active().place))
    }

    /// Marks row `id` delivered at `at`.
    pub async fn outbox_sent(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        let q = sqlx::query(
            "UPDATE notify_outbox SET state = 'sent', sent_at = $2, attempts = attempts + 1 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(at);
        found(self.update_fenced("sent", q).await?, id)
    }

    /// Records a failed attempt of row `id`: `attempts` made, the next at `next_attempt`.
    pub async fn outbox_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt: Millis,
        error: &str,
    ) -> Result<(), StoreError> {
        let q = sqlx::query(
            "UPDATE notify_outbox SET attempts = $2, next_attempt = $3, last_error = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::from(attempts))
        .bind(next_attempt)
        .bind(error);
        found(self.update_fenced("retry", q).await?, id)
    }

    /// Gives row `id` up with `error`, counting the attempt that failed.
    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let q = sqlx::query(
            "UPDATE notify_outbox SET state = 'failed', last_error = $2, \
             attempts = attempts + 1 WHERE id = $1",
        )
        .bind(id)
        .bind(error);
        found(self.update_fenced("failed", q).await?, id)
    }

    /// Delivers row `id` into its incident's timeline: appends `update` and marks the row sent
    /// at `at`, in one transaction, so the update is written exactly once. Returns the new
    /// update's id, or none when the row was no longer pending (nothing written).
    pub async fn outbox_sent_as_update(
        &self,
        id: i64,
        update: &IncidentUpdate,
        at: Millis,
    ) -> Result<Option<i64>, StoreError> {
        let fence = self.fence();
        let claim = fence.as_ref().map(|f| &f.1);
        match on_active!(self, |c| sent_as_update(c, id, update, at, claim))? {
            Delivered::Fenced => Err(Store::fence_refused(fence, "sent")),
            Delivered::NoRow => Err(StoreError::NotFound {
                what: "outbox row",
                id,
            }),
            Delivered::NotPending => Ok(None),
            Delivered::NoIncident => Err(StoreError::NotFound {
                what: "incident",
                id: update.incident,
            }),
            Delivered::Update(u) => Ok(Some(u)),
        }
    }

    /// Rows of `incident` (0: all), oldest first, at most `limit` (0: all): the API's and the
    /// tests' view.
    pub async fn outbox_rows(
        &self,
        incident: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let filter = if incident != 0 {
            " WHERE o.incident = $1"
        } else {
            ""
        };
        let tail = if limit > 0 {
            format!(" LIMIT {limit}")
        } else {
            String::new()
        };
        let sql = format!("SELECT {COLUMNS} FROM notify_outbox o{filter} ORDER BY o.id{tail}");
        let mut q = sqlx::query(&sql);
        if incident != 0 {
            q = q.bind(incident);
        }
        let rows = on_active!(self, |c| q.fetch_all(c))?;
        rows.iter()
            .map(row_from)
            .collect::<Result<_, _>>()
            .map_err(|e| db::classify(e, &self.shared.active().place))
    }

    /// Pending rows per receiver, by receiver name (receivers with none are not listed).
    pub async fn outbox_pending(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = on_active!(self, |c| sqlx::query(
            "SELECT receiver, COUNT(*) FROM notify_outbox WHERE state = 'pending' \
             GROUP BY receiver ORDER BY receiver"
        )
        .fetch_all(c))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db::classify(e, &self.shared.active().place))
    }

    /// Deletes sent, failed and suppressed rows created before `before`, the oldest
    /// [`PRUNE_MAX`] of them at most (so one call stays bounded); returns how many.
    pub async fn outbox_prune(&self, before: Millis) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM notify_outbox WHERE id IN (SELECT id FROM notify_outbox \
             WHERE state <> 'pending' AND created < $1 ORDER BY id LIMIT {PRUNE_MAX})"
        );
        let done = on_active!(self, |c| sqlx::query(&sql).bind(before).execute(c))?;
        Ok(done.rows_affected())
    }
}

/// The columns [`row_from`] reads, of the table aliased `o`.
const COLUMNS: &str = "o.id, o.msg_key, o.incident, o.receiver, o.kind, o.due, o.message, \
     o.state, o.attempts, o.next_attempt, o.last_error, o.created, o.sent_at";

/// Row `o` is the oldest pending row of its incident for its receiver (or of incident 0).
const HEAD: &str = "(o.incident = 0 OR NOT EXISTS (SELECT 1 FROM notify_outbox p \
     WHERE p.incident = o.incident AND p.receiver = o.receiver AND p.state = 'pending' \
     AND p.id < o.id))";

fn row_from(row: &AnyRow) -> Result<OutboxRow, sqlx::Error> {
    let state: String = row.try_get(7)?;
    Ok(OutboxRow {
        id: row.try_get(0)?,
        key: row.try_get(1)?,
        incident: row.try_get(2)?,
        receiver: row.try_get(3)?,
        kind: row.try_get(4)?,
        due: row.try_get(5)?,
        message: row.try_get(6)?,
        state: OutboxState::parse(&state).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown outbox state {state:?} in the store").into())
        })?,
        attempts: row.try_get::<i64, _>(8)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt: row.try_get(9)?,
        last_error: row.try_get(10)?,
        created: row.try_get(11)?,
        sent_at: row.try_get(12)?,
    })
}

/// `Ok` when an update touched a row, else the row is not found.
fn found(rows: u64, id: i64) -> Result<(), StoreError> {
    (rows > 0).then_some(()).ok_or(StoreError::NotFound {
        what: "outbox row",
        id,
    })
}

/// Inserts `rows` in one transaction, skipping held keys; how many were new, or none when the
/// fence refused them.
async fn enqueue(
    c: &mut AnyConnection,
    rows: &[NewOutbox],
    now: Millis,
    claim: Option<&OutboxClaim>,
) -> Result<Option<usize>, sqlx::Error> {
    let mut tx = c.begin().await?;
    if !holds(&mut tx, claim).await? {
        return Ok(None);
    }
    let mut added = 0;
    for r in rows {
        let done = sqlx::query(
            "INSERT INTO notify_outbox (msg_key, incident, receiver, kind, due, message, state, \
             attempts, next_attempt, created) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8) \
             ON CONFLICT (msg_key) DO NOTHING",
        )
        .bind(&r.key)
        .bind(r.incident)
        .bind(&r.receiver)
        .bind(&r.kind)
        .bind(r.due)
        .bind(&r.message)
        .bind(r.state.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        added += done.rows_affected() as usize;
    }
    tx.commit().await?;
    Ok(Some(added))
}

/// What [`sent_as_update`] found.
enum Delivered {
    Fenced,
    NoRow,
    NotPending,
    NoIncident,
    Update(i64),
}

async fn sent_as_update(
    c: &mut AnyConnection,
    id: i64,
    update: &IncidentUpdate,
    at: Millis,
    claim: Option<&OutboxClaim>,
) -> Result<Delivered, sqlx::Error> {
    let mut tx = c.begin().await?;
    if !holds(&mut tx, claim).await? {
        return Ok(Delivered::Fenced);
    }
    let state = sqlx::query("SELECT state FROM notify_outbox WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(state) = state else {
        return Ok(Delivered::NoRow);
    };
    if state.try_get::<String, _>(0)? != OutboxState::Pending.as_str() {
        return Ok(Delivered::NotPending);
    }
    let Some(u) = sql::add_update(&mut tx, update).await? else {
        return Ok(Delivered::NoIncident);
    };
    sqlx::query(
        "UPDATE notify_outbox SET state = 'sent', sent_at = $2, attempts = attempts + 1 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Delivered::Update(u))
}
