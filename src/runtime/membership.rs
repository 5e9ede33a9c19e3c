//! Cluster membership as the runtime sees it: re-planning when the members change, and handing
//! a target that moved to another member off through the store instead of forgetting it.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{history, Restoring, Runtime, Target};
use crate::config::{self, Config};
use crate::store::Write;

impl Runtime {
    /// The store forgets the state of targets that left the config. In a cluster, a target
    /// still in the config but now another member's is handed off instead: its state written
    /// once more, for its new owner to resume.
    pub(super) fn forget_or_hand_off(
        &self,
        removed: &[Arc<Target>],
        config: &Config,
        owned: &[Arc<config::TargetSpec>],
    ) {
        if removed.is_empty() {
            return;
        }
        let (in_config, mine): (HashSet<&str>, HashSet<&str>) = if self.cluster.is_some() {
            (
                config.targets.iter().map(|t| t.name.as_str()).collect(),
                owned.iter().map(|t| t.name.as_str()).collect(),
            )
        } else {
            Default::default()
        };
        for gone in removed {
            let name = gone.spec.name.as_str();
            if in_config.contains(name) && !mine.contains(name) {
                // Only the member that wrote its history hands it off (see `mark_history`).
                if !gone.history.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let stats = gone.stats.lock().expect("stats lock poisoned");
                self.store
                    .write(Write::TargetState(history::target_state(name, &stats)));
            } else {
                self.store.write(Write::ForgetTarget(name.to_string()));
            }
        }
    }

    /// Marks which of `targets` this member writes the history of (state, transitions,
    /// rollups): in a cluster, those it is the first owner of in the history location; alone,
    /// all of them.
    pub(super) fn mark_history(&self, targets: &[Arc<Target>]) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let view = cluster.view();
        for t in targets {
            let mine = view.writes_history(&t.spec.name);
            t.history.store(mine, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Re-plans after a change of membership: the running config applied again over the
    /// targets this member owns now. Targets it keeps are untouched; targets new to it resume
    /// their stored state (the previous owner's), so they show no unknown gap and resolve
    /// nothing falsely.
    async fn rebalance(&self) -> Result<(), String> {
        let Some(cluster) = self.cluster.clone() else {
            return Ok(());
        };
        let _guard = self.reload_lock.lock().await;
        let began = Instant::now();
        let config = self.config();
        let running: HashSet<String> = self.targets().iter().map(|t| t.spec.name.clone()).collect();
        let arriving: HashSet<String> = cluster
            .owned_specs(&config)
            .iter()
            .filter(|t| !running.contains(&t.name))
            .map(|t| t.name.clone())
            .collect();
        if !arriving.is_empty() {
            let targets = match self.store.target_states().await {
                Ok(states) => states
                    .into_iter()
                    .filter(|s| arriving.contains(&s.target))
                    .map(|s| (s.target.clone(), s))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, targets = arriving.len(), "cannot read the stored states of the targets this member now owns; they start unknown");
                    Default::default()
                }
            };
            *self.restoring.lock().expect("restoring lock poisoned") = Some(Restoring {
                targets,
                groups: Default::default(),
            });
        }
        let before = running.len();
        self.apply((*config).clone()).await?;
        let after = self.targets().len();
        cluster.rebalanced(after);
        info!(
            before,
            after,
            arriving = arriving.len(),
            took = ?began.elapsed(),
            "re-planned after a change of cluster membership"
        );
        Ok(())
    }
}

/// Re-plans `rt` on every change of membership until `cancel` (or the runtime is gone).
pub(super) async fn follow_membership(
    rt: std::sync::Weak<Runtime>,
    mut changes: tokio::sync::watch::Receiver<Arc<crate::cluster::View>>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = changes.changed() => if r.is_err() { return },
        }
        let Some(rt) = rt.upgrade() else {
            return;
        };
        if let Err(e) = rt.rebalance().await {
            warn!(error = %e, "re-planning after a change of cluster membership failed; the targets owned so far keep being probed");
        }
    }
}
