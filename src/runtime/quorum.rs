//! Cluster mode's locations: the runtime as the quorum observer's [`Source`] (its targets'
//! decided health, read from memory), and the start of the observer
//! ([`crate::cluster::observe`]). The incident feed ([`super::incidents`]) turns the quorum's
//! transitions into incidents on the speaking location only, through `incident_events`: a
//! target's verdict as its own, a failover group's as the group's, so a group down at the
//! quorum opens (or joins) the group's incident and its recovery resolves it.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use crate::cluster::observe::{self, Source, Timing, View};
use crate::cluster::quorum::QuorumTransition;
use crate::config::Config;
use crate::incident::{component_of, TargetEvent};
use crate::state::Health;
use crate::store::{now_millis, Millis};

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

    fn version(&self) -> u64 {
        self.0.upgrade().map_or(0, |rt| rt.views_version())
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
    let member = rt
        .cluster()
        .map_or_else(|| location.clone(), |c| c.options().id.clone());
    observe::start(
        source,
        rt.quorum.clone(),
        url,
        conn,
        observe::Who { location, member },
        Timing::for_lease(lease),
        cancel,
    );
}

/// The incident manager's events for the quorum's transitions `ts` under `config`. A target's
/// is its own (its component as the runtime's transitions have it); a failover group's is the
/// group's, its own component, so it joins the incident its instances opened or opens it, and
/// the incident resolves once the group and every target that failed in it are up again.
/// Unknown verdicts make no event (the quorum never decides unknown).
pub(super) fn incident_events(config: &Config, ts: &[QuorumTransition]) -> Vec<TargetEvent> {
    let groups: Vec<&str> = config.failover.iter().map(|g| g.name.as_str()).collect();
    let no_labels = std::collections::BTreeMap::new();
    ts.iter()
        .filter(|t| t.to != Health::Unknown)
        .map(|t| {
            let down = t.to == Health::Down;
            let at = t.since_ms.map_or_else(now_millis, |s| s.max(0) as Millis);
            if t.group {
                return TargetEvent {
                    target: t.name.clone(),
                    component: t.name.clone(),
                    down,
                    at,
                    reason: None,
                    detail: down.then(|| "every instance is down at the quorum".to_string()),
                    streak: 0,
                };
            }
            let spec = config.targets.iter().find(|s| s.name == t.name);
            let labels = spec.map_or(&no_labels, |s| &s.labels);
            TargetEvent {
                target: t.name.clone(),
                component: component_of(&t.name, labels, &groups),
                down,
                at,
                reason: t.reason.clone(),
                detail: t.reason.clone(),
                streak: spec.map_or(0, |s| s.down_after),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::quorum::{Decided, Verdicts};
    use crate::incident::{Incidents, IncidentsConfig, NoCounters};
    use crate::store::{IncidentQuery, Store};

    const CONFIG: &str = "
targets:
  - name: api
    url: http://127.0.0.1:9/health
failover:
  - name: gw
    instances: [http://127.0.0.1:9, http://127.0.0.1:10]
    check: { path: /health, interval: 1s, timeout: 500ms }
";

    fn verdicts(gw: Health) -> Verdicts {
        let mut v = Verdicts::default();
        v.groups.insert("gw".into(), gw);
        v
    }

    #[test]
    fn a_groups_quorum_verdict_is_an_event_of_the_group_itself() {
        let config = crate::config::load_str("probes.yaml", CONFIG).expect("config loads");
        let mut decided = Decided::default();
        let down = incident_events(&config, &decided.step(&verdicts(Health::Down)));
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(
            (down[0].target.as_str(), down[0].component.as_str()),
            ("gw", "gw")
        );
        assert!(down[0].down);
        assert!(incident_events(&config, &decided.step(&verdicts(Health::Unknown))).is_empty());
        let up = incident_events(&config, &decided.step(&verdicts(Health::Up)));
        assert_eq!(up.len(), 1);
        assert!(!up[0].down && up[0].target == "gw");
    }

    #[tokio::test]
    async fn a_group_down_at_the_quorum_opens_its_incident_and_its_recovery_resolves_it() {
        let config = crate::config::load_str("probes.yaml", CONFIG).expect("config loads");
        let store = Store::memory();
        let cfg = IncidentsConfig {
            resolve_after: std::time::Duration::ZERO,
            ..IncidentsConfig::default()
        };
        let mut m = Incidents::load(store.clone(), cfg, Arc::new(NoCounters))
            .await
            .unwrap();
        let mut decided = Decided::default();
        for e in incident_events(&config, &decided.step(&verdicts(Health::Down))) {
            m.on_transition(&e).await.unwrap();
        }
        let open = store
            .incidents(&IncidentQuery {
                open_only: true,
                ..IncidentQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].component, "gw");
        assert_eq!(open[0].targets, vec!["gw".to_string()]);
        for e in incident_events(&config, &decided.step(&verdicts(Health::Up))) {
            m.on_transition(&e).await.unwrap();
        }
        let inc = store.incident(open[0].id).await.unwrap().unwrap();
        assert!(
            inc.resolved.is_some(),
            "resolved when the group is up: {inc:?}"
        );
    }
}
