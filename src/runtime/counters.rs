//! The runtime's live counts, as the incident manager ([`super::incidents`]) and the notifier
//! ([`super::notify`]) read them: what the store has not written yet.

use std::sync::Arc;

use crate::incident::{Counters, Unwritten};

use super::Runtime;

/// The runtime's live counts, as the incident manager (and the notifier) read them.
pub struct RuntimeCounters(pub Arc<Runtime>);

impl Counters for RuntimeCounters {
    fn probe_failures(&self, target: &str) -> Option<u64> {
        let t = self.0.target(target)?;
        let s = t.stats.lock().expect("stats lock poisoned");
        Some(s.failures.iter().sum())
    }

    fn unwritten(&self, group: &str) -> Option<Unwritten> {
        let g = self.0.failover_group(group)?;
        g.cfg.proxy.as_ref()?;
        Some(self.0.group_slices().unwritten(&g))
    }
}
