//! Fencing of the notification outbox by a lease, in cluster mode
//! ([`Store::set_outbox_fence`]).
//!
//! The outbox shares the cluster's PostgreSQL database with `cluster_leases`. Each outbox write
//! (enqueue; marking a row sent, retried or failed) runs in one transaction that first locks the
//! lease's row (`FOR SHARE`, so a takeover by another member waits for the write to end) and
//! goes on only while that row names this member, the epoch it claims, and an expiry after the
//! database's `now()`. A stale holder's write is refused ([`StoreError::Fenced`]) and reported
//! to [`OutboxFence::refused`], which counts and logs it.

use std::sync::Arc;

use sqlx::any::AnyArguments;
use sqlx::{Any, AnyConnection, Connection};

use super::{db, Store, StoreError};

/// What an outbox write claims in cluster mode: `holder` holds `lease` in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxClaim {
    /// The lease (`notify`).
    pub lease: String,
    /// This member's id.
    pub holder: String,
    /// The epoch it holds the lease in, as it last knew (0: never held; always refused).
    pub epoch: i64,
}

/// The lease that fences the outbox's writes in cluster mode (see the module's docs).
pub trait OutboxFence: Send + Sync {
    /// What the next write claims.
    fn claim(&self) -> OutboxClaim;
    /// The database refused `write` (`enqueue`, `sent`, ...) made under `claim`: count it and
    /// say so.
    fn refused(&self, claim: &OutboxClaim, write: &'static str);
}

/// Locks the lease's row for the transaction when it still names the claim, unexpired by the
/// database's clock.
const HOLDS: &str = "SELECT 1 FROM cluster_leases WHERE name = $1 AND holder = $2 \
     AND epoch = $3 AND expires_at > now() FOR SHARE";

impl Store {
    /// Fences the outbox's writes by `fence` (none: unfenced, the default). Only writes to a
    /// PostgreSQL backend are fenced: the in-memory fallback of a degraded store has no leases.
    pub fn set_outbox_fence(&self, fence: Option<Arc<dyn OutboxFence>>) {
        *self
            .shared
            .outbox_fence
            .lock()
            .expect("outbox fence lock poisoned") = fence;
    }

    /// The fence and its claim for a write now, when writes are fenced.
    pub(super) fn fence(&self) -> Option<(Arc<dyn OutboxFence>, OutboxClaim)> {
        if self.shared.active().place.kind() != db::Kind::Postgres {
            return None;
        }
        let fence = self
            .shared
            .outbox_fence
            .lock()
            .expect("outbox fence lock poisoned")
            .clone()?;
        let claim = fence.claim();
        Some((fence, claim))
    }

    /// `write` was refused under `fence`: reported, and the error.
    pub(super) fn fence_refused(
        fence: Option<(Arc<dyn OutboxFence>, OutboxClaim)>,
        write: &'static str,
    ) -> StoreError {
        let (fence, claim) = fence.expect("only a fenced write is refused");
        fence.refused(&claim, write);
        StoreError::Fenced {
            lease: claim.lease,
            holder: claim.holder,
            epoch: claim.epoch,
        }
    }

    /// Runs `q` (an update of one row) fenced; the rows it changed.
    pub(super) async fn update_fenced<'q>(
        &self,
        write: &'static str,
        q: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<u64, StoreError> {
        let fence = self.fence();
        let claim = fence.as_ref().map(|f| &f.1);
        match on_active!(self, |c| execute_fenced(c, claim, q))? {
            Some(n) => Ok(n),
            None => Err(Store::fence_refused(fence, write)),
        }
    }
}

/// Whether the transaction `c` is in holds `claim` (none: unfenced), the lease's row locked
/// until it ends.
pub(super) async fn holds(
    c: &mut AnyConnection,
    claim: Option<&OutboxClaim>,
) -> Result<bool, sqlx::Error> {
    let Some(claim) = claim else {
        return Ok(true);
    };
    let row = sqlx::query(HOLDS)
        .bind(&claim.lease)
        .bind(&claim.holder)
        .bind(claim.epoch)
        .fetch_optional(c)
        .await?;
    Ok(row.is_some())
}

/// Runs `q` in one transaction with the fence's check when `claim` is given (alone
/// otherwise): the rows changed, or none when refused.
async fn execute_fenced<'q>(
    c: &mut AnyConnection,
    claim: Option<&OutboxClaim>,
    q: sqlx::query::Query<'q, Any, AnyArguments<'q>>,
) -> Result<Option<u64>, sqlx::Error> {
    if claim.is_none() {
        return Ok(Some(q.execute(c).await?.rows_affected()));
    }
    let mut tx = c.begin().await?;
    if !holds(&mut tx, claim).await? {
        return Ok(None);
    }
    let done = q.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(done.rows_affected()))
}
