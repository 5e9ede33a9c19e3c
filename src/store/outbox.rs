//! The notification outbox: each message is written here before it is sent, and marked when it
//! is delivered, retried or given up, so a restart resumes what was pending and resends nothing
//! that was delivered. Rows are written at once (awaited), not through the write queue: "written
//! before sent" must hold when the call returns.
//!
//! The store does not read the message: it keeps it as the JSON text the notifier gave.

use serde::{Deserialize, Serialize};

use super::{Millis, Store, StoreError};

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
    /// Enqueues `rows` in one transaction at `now`, ignoring any whose key is held already;
    /// returns how many were new. Durable when it returns.
    pub async fn outbox_enqueue(
        &self,
        rows: &[NewOutbox],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let _ = (rows, now);
        todo!("outbox")
    }

    /// The keys held for `incident`, any state.
    pub async fn outbox_keys(&self, incident: i64) -> Result<Vec<String>, StoreError> {
        let _ = incident;
        todo!("outbox")
    }

    /// Up to `limit` pending rows of `receiver` whose `next_attempt` ≤ `now`, by id.
    pub async fn outbox_due(
        &self,
        receiver: &str,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let _ = (receiver, now, limit);
        todo!("outbox")
    }

    /// Marks row `id` delivered at `at`.
    pub async fn outbox_sent(&self, id: i64, at: Millis) -> Result<(), StoreError> {
        let _ = (id, at);
        todo!("outbox")
    }

    /// Records a failed attempt of row `id`: `attempts` made, the next at `next_attempt`.
    pub async fn outbox_retry(
        &self,
        id: i64,
        attempts: u32,
        next_attempt: Millis,
        error: &str,
    ) -> Result<(), StoreError> {
        let _ = (id, attempts, next_attempt, error);
        todo!("outbox")
    }

    /// Gives row `id` up with `error`.
    pub async fn outbox_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let _ = (id, error);
        todo!("outbox")
    }

    /// Rows of `incident` (0: all), oldest first, at most `limit` (0: all): the API's and the
    /// tests' view.
    pub async fn outbox_rows(
        &self,
        incident: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let _ = (incident, limit);
        todo!("outbox")
    }

    /// Pending rows per receiver.
    pub async fn outbox_pending(&self) -> Result<Vec<(String, u64)>, StoreError> {
        todo!("outbox")
    }

    /// Deletes sent, failed and suppressed rows created before `before`; returns how many.
    pub async fn outbox_prune(&self, before: Millis) -> Result<u64, StoreError> {
        let _ = before;
        todo!("outbox")
    }
}
