//! The runtime's failover groups: applying a config's groups (kept, new with their proxies,
//! gone, and in cluster mode their leases) and reading their stored states.

use std::sync::Arc;

use tracing::{info, warn};

use super::{Runtime, Target};
use crate::config::Config;
use crate::failover::{self, Group};
use crate::store::{GroupState, Store};

impl Runtime {
    pub(super) fn apply_failover(
        &self,
        config: &Config,
        targets: &[Arc<Target>],
        mut listeners: Vec<(String, Vec<std::net::TcpListener>)>,
        stored: &std::collections::HashMap<String, GroupState>,
    ) -> Result<(), String> {
        let by_name: std::collections::HashMap<&str, &Arc<Target>> = if config.failover.is_empty() {
            Default::default()
        } else {
            targets.iter().map(|t| (t.spec.name.as_str(), t)).collect()
        };
        let find = |g: &crate::config::FailoverGroup| -> Vec<Arc<dyn failover::Instance>> {
            g.instances
                .iter()
                .filter_map(|i| by_name.get(i.target.as_str()).copied())
                .map(|t| t.clone() as Arc<dyn failover::Instance>)
                .collect()
        };
        let mut groups = self.failover.lock().expect("failover lock poisoned");
        let mut old: Vec<Arc<Group>> = std::mem::take(&mut *groups);
        let mut next = Vec::new();
        for g in &config.failover {
            if let Some(pos) = old.iter().position(|o| o.cfg == *g) {
                let kept = old.remove(pos);
                kept.set_targets(find(g));
                next.push(kept);
                continue;
            }
            let group = Group::new(g.clone(), find(g), self.shared.cancel.child_token());
            group.set_store(self.store.clone());
            if let Some(l) = &self.leadership {
                group.set_voice(l.voice(&g.name));
            }
            if let Some(state) = stored.get(&g.name) {
                group.restore(state);
            }
            tokio::spawn(group.clone().control(self.subscribe()));
            if let Some(p) = &g.proxy {
                let pos = listeners
                    .iter()
                    .position(|(n, _)| *n == g.name)
                    .expect("a listener was bound for every new proxy");
                let (_, bound) = listeners.swap_remove(pos);
                let addr = bound
                    .first()
                    .and_then(|l| l.local_addr().ok())
                    .unwrap_or(p.listen);
                let threads = bound.len();
                let web = self.web.clone().filter(|_| p.web_config);
                failover::proxy::start(bound, group.clone(), p.clone(), web, group.cancel_token())
                    .map_err(|e| {
                        group.stop();
                        format!("failover group {}: proxy threads: {e}", g.name)
                    })?;
                group.set_proxy_addr(addr);
                info!(group = %g.name, listen = %addr, threads, "failover proxy listening");
            }
            next.push(group);
        }
        for gone in old {
            gone.stop();
        }
        *groups = next;
        // A group the reload removed stops holding its lease; a new one competes (its voice).
        if let Some(l) = &self.leadership {
            l.keep_groups(config.failover.iter().map(|g| g.name.as_str()));
        }
        Ok(())
    }
}

/// The stored states of the failover groups in `config`, by name (others are left: the store
/// has no way to forget a group, and a group that comes back resumes).
pub(super) async fn stored_groups(
    store: &Store,
    config: &Config,
) -> std::collections::HashMap<String, GroupState> {
    match store.group_states().await {
        Ok(v) => v
            .into_iter()
            .filter(|g| config.failover.iter().any(|f| f.name == g.group))
            .map(|g| (g.group.clone(), g))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read the stored failover group states; every group chooses afresh");
            Default::default()
        }
    }
}
