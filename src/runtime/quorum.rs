//! Cluster mode's locations: the runtime as the quorum observer's [`Source`] (its targets'
//! decided health, read from memory), and the start of the observer
//! ([`crate::cluster::observe`]). The incident feed ([`super::incidents`]) turns the quorum's
//! transitions into incidents on the speaking location only.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::cluster::observe::{self, Source, Timing, View};
use crate::config::Config;
use crate::state::Health;

use super::Runtime;

/// The runtime, seen by the observer; weak, so the observer never keeps it alive.
struct Views(Weak<Runtime>);

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Source for Views {
    fn views(&self) -> Vec<View> {
        let Some(rt) = self.0.upgrade() else {
            return Vec::new();
        };
        let started = millis(rt.started());
        rt.targets()
            .iter()
            .map(|t| {
                let s = t.stats.lock().expect("stats lock poisoned");
                let health = s.state.health;
                View {
                    target: t.spec.name.clone(),
                    health,
                    since_ms: s.last_transition.map_or(started, millis),
                    reason: (health == Health::Down)
                        .then(|| s.last.reason.map(|r| r.as_str().to_string()))
                        .flatten(),
                }
            })
            .collect()
    }

    fn config(&self) -> Arc<Config> {
        self.0
            .upgrade()
            .map_or_else(|| Arc::new(Config::default()), |rt| rt.config())
    }
}

/// Starts writing `location`'s views to the cluster database (`conn`, connected to `url`)
/// and computing the quorum, until `cancel`. Call it before the incident feed starts, so the
/// feed runs in quorum mode.
pub fn start(
    rt: &Arc<Runtime>,
    url: String,
    conn: sqlx::PgConnection,
    location: String,
    lease: Duration,
    cancel: CancellationToken,
) {
    let source: Arc<dyn Source> = Arc::new(Views(Arc::downgrade(rt)));
    observe::start(
        source,
        rt.quorum.clone(),
        url,
        conn,
        location,
        Timing::for_lease(lease),
        cancel,
    );
}
