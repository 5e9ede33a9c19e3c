//! A failover group's voice in cluster mode ([`crate::failover::Voice`]): the group decides
//! only while this member holds the group's lease and has taken over the last published
//! decision, and each decision is written to the database fenced by the lease's epoch, in
//! order, before the group's hooks run.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use super::lease::Lease;
use crate::failover::Voice;
use crate::store::GroupState;

/// Decisions waiting to be written, at most (more means the database is far behind: the
/// decision is refused and the hooks do not run).
const QUEUE: usize = 64;

type Then = Box<dyn FnOnce(bool) + Send>;

/// One group's voice over its lease.
#[derive(Debug)]
pub struct GroupVoice {
    lease: Arc<Lease>,
    /// The epoch whose start has taken over the last published decision ([`GroupVoice::synced`]).
    synced: AtomicI64,
    tx: mpsc::Sender<(GroupState, Then)>,
}

impl GroupVoice {
    /// A voice over `lease`, with the task that writes its decisions in order (it ends when
    /// the voice is dropped).
    pub fn start(lease: Arc<Lease>) -> Arc<GroupVoice> {
        let (tx, mut rx) = mpsc::channel::<(GroupState, Then)>(QUEUE);
        let l = lease.clone();
        tokio::spawn(async move {
            while let Some((state, then)) = rx.recv().await {
                then(publish(&l, &state).await);
            }
        });
        Arc::new(GroupVoice {
            lease,
            synced: AtomicI64::new(0),
            tx,
        })
    }

    /// The lease.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    /// The epoch this member leads in but has not yet taken the last decision over in.
    pub fn to_sync(&self) -> Option<i64> {
        self.lease
            .leading()
            .filter(|&e| e != self.synced.load(Ordering::Acquire))
    }

    /// The last published decision has been taken over in `epoch`: the group may decide.
    pub fn synced(&self, epoch: i64) {
        self.synced.store(epoch, Ordering::Release);
    }
}

/// Writes `state` fenced by the lease's epoch; false when refused or not written.
async fn publish(lease: &Lease, state: &GroupState) -> bool {
    let Some(epoch) = lease.leading() else {
        return false;
    };
    let r = lease
        .db()
        .publish(
            &lease.name,
            &lease.holder,
            epoch,
            &state.group,
            state.active,
            &state.json,
        )
        .await;
    match r {
        Ok(true) => true,
        Ok(false) => {
            lease.count_fenced();
            warn!(group = %state.group, lease = %lease.name, epoch, "failover decision refused by the database: the lease has moved on or run out");
            false
        }
        Err(e) => {
            warn!(group = %state.group, error = %e, "failover decision not written to the cluster database");
            false
        }
    }
}

impl Voice for GroupVoice {
    fn leading(&self) -> bool {
        self.lease
            .leading()
            .is_some_and(|e| e == self.synced.load(Ordering::Acquire))
    }

    fn publish(&self, state: GroupState, then: Then) {
        if let Err(e) = self.tx.try_send((state, then)) {
            let (state, then) = match e {
                mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
            };
            warn!(group = %state.group, "failover decision not written: too many waiting");
            then(false);
        }
    }
}
