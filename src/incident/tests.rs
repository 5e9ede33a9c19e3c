use std::sync::Mutex;

use super::maintenance::{Calendar, Parts, WindowSpec};
use super::manual::{self, DeclareInput, Resolution, UpdateInput};
use super::*;
use crate::store::{GroupRollup, Rollup};

/// 2026-01-01T10:00:00Z.
const T0: Millis = 1_767_261_600_000;

/// Counters a test sets by hand.
#[derive(Default)]
struct Scripted {
    failures: Mutex<HashMap<String, u64>>,
    unwritten: Mutex<HashMap<String, Unwritten>>,
}

impl Scripted {
    fn fail(&self, target: &str, n: u64) {
        self.failures.lock().unwrap().insert(target.into(), n);
    }
    fn proxy(&self, group: &str, requests: u64, failed: u64) {
        let mut u = self.unwritten.lock().unwrap();
        let generation = u.get(group).map_or(0, |x| x.generation);
        u.insert(
            group.into(),
            Unwritten {
                requests,
                failed,
                generation,
            },
        );
    }
}

impl Counters for Scripted {
    fn probe_failures(&self, target: &str) -> Option<u64> {
        self.failures.lock().unwrap().get(target).copied()
    }
    fn unwritten(&self, group: &str) -> Option<Unwritten> {
        self.unwritten.lock().unwrap().get(group).copied()
    }
}

fn down(target: &str, component: &str, at: Millis) -> TargetEvent {
    TargetEvent {
        target: target.into(),
        component: component.into(),
        down: true,
        at,
        reason: Some("connect_refused".into()),
        detail: Some("connection refused".into()),
        streak: 3,
    }
}

fn up(target: &str, component: &str, at: Millis) -> TargetEvent {
    TargetEvent {
        down: false,
        reason: None,
        detail: None,
        ..down(target, component, at)
    }
}

async fn manager(store: &Store, counters: Arc<Scripted>) -> Incidents {
    Incidents::load(store.clone(), IncidentsConfig::default(), counters)
        .await
        .expect("loads")
}

async fn all(store: &Store) -> Vec<Incident> {
    store.incidents(&IncidentQuery::default()).await.unwrap()
}

async fn timeline(store: &Store, id: i64) -> Vec<String> {
    let u = store.updates(&[id]).await.unwrap();
    u.into_iter().map(|u| u.message).collect()
}

#[test]
fn components_follow_groups_then_labels_then_names() {
    let labels: std::collections::BTreeMap<String, String> =
        [("component".to_string(), "shop".to_string())].into();
    let none = Default::default();
    assert_eq!(component_of("gw/0", &none, &["gw"]), "gw");
    assert_eq!(component_of("web", &labels, &["gw"]), "shop");
    assert_eq!(component_of("a/b", &none, &["gw"]), "a/b");
    assert_eq!(component_of("web", &none, &[]), "web");
}

#[tokio::test]
async fn two_targets_of_one_component_make_one_incident() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    m.on_transition(&down("health", "gw", T0)).await.unwrap();
    m.on_transition(&down("predict", "gw", T0 + 2_000))
        .await
        .unwrap();
    m.on_transition(&down("predict", "gw", T0 + 3_000))
        .await
        .unwrap();
    m.on_transition(&down("db", "db", T0 + 4_000))
        .await
        .unwrap();
    let v = all(&store).await;
    assert_eq!(v.len(), 2, "{v:?}");
    let gw = v.iter().find(|i| i.component == "gw").unwrap();
    assert_eq!(gw.targets, vec!["health", "predict"]);
    assert_eq!(gw.title, "gw is down");
    assert_eq!(gw.status, IncidentStatus::Investigating);
    let t = timeline(&store, gw.id).await;
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(
        t[0].starts_with("Detected: health is down (connect_refused"),
        "{t:?}"
    );
    assert!(t[1].starts_with("predict is down too"), "{t:?}");
    // One target up: still open; the other up: resolved.
    m.on_transition(&up("health", "gw", T0 + 60_000))
        .await
        .unwrap();
    assert!(store
        .incident(gw.id)
        .await
        .unwrap()
        .unwrap()
        .resolved
        .is_none());
    m.on_transition(&up("predict", "gw", T0 + 252_000))
        .await
        .unwrap();
    let gw = store.incident(gw.id).await.unwrap().unwrap();
    assert_eq!(gw.resolved, Some(T0 + 252_000));
    assert_eq!(gw.status, IncidentStatus::Resolved);
    let t = timeline(&store, gw.id).await;
    assert_eq!(t.last().unwrap(), "Recovered after 4m12s");
    // A new outage longer than `reopen_within` (5m) after resolution opens a new incident.
    m.on_transition(&down("health", "gw", T0 + 252_000 + 300_001))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 3);
}

#[tokio::test]
async fn a_flapping_component_reopens_its_incident_instead_of_opening_another() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    for k in 0..3 {
        let t = T0 + k * 120_000;
        m.on_transition(&down("health", "gw", t)).await.unwrap();
        m.on_transition(&up("health", "gw", t + 60_000))
            .await
            .unwrap();
    }
    let v = all(&store).await;
    assert_eq!(v.len(), 1, "one incident: {v:?}");
    let inc = &v[0];
    assert_eq!(inc.resolved, Some(T0 + 300_000));
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(inc.figures.is_some());
    let t = timeline(&store, inc.id).await;
    assert_eq!(t.len(), 6, "{t:?}");
    assert!(
        t[2].starts_with("Down again: health is down (connect_refused")
            && t[2].ends_with("1m0s after it recovered"),
        "{t:?}"
    );
    let statuses: Vec<_> = store
        .updates(&[inc.id])
        .await
        .unwrap()
        .iter()
        .map(|u| u.status)
        .collect();
    assert_eq!(statuses[2], IncidentStatus::Investigating);
    assert_eq!(statuses[3], IncidentStatus::Resolved);
    // Reopened and down: open again until it recovers.
    m.on_transition(&down("health", "gw", T0 + 400_000))
        .await
        .unwrap();
    let inc = store.incident(inc.id).await.unwrap().unwrap();
    assert!(inc.resolved.is_none() && inc.figures.is_none(), "{inc:?}");
    assert_eq!(m.open_ids(), [inc.id]);
}

#[tokio::test]
async fn reopening_survives_a_restart_and_can_be_turned_off() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    m.on_transition(&down("health", "gw", T0)).await.unwrap();
    m.on_transition(&up("health", "gw", T0 + 60_000))
        .await
        .unwrap();
    // A new manager (a restart) still knows the incident just resolved.
    let mut m = manager(&store, Arc::default()).await;
    m.on_transition(&down("health", "gw", T0 + 90_000))
        .await
        .unwrap();
    m.on_transition(&up("health", "gw", T0 + 100_000))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 1);
    m.set_config(IncidentsConfig {
        reopen_within: std::time::Duration::ZERO,
        ..IncidentsConfig::default()
    });
    m.on_transition(&down("health", "gw", T0 + 110_000))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 2, "0s: always a new incident");
}

#[tokio::test]
async fn a_failover_switch_is_written_on_the_groups_incident() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    let sw = SwitchEvent {
        group: "gw".into(),
        to: Some("http://127.0.0.1:8001".into()),
        reason: "active_down".into(),
        at: T0 + 5_000,
    };
    m.on_switch(&sw).await.unwrap();
    assert!(all(&store).await.is_empty(), "no incident: nothing written");
    m.on_transition(&down("gw/0", "gw", T0)).await.unwrap();
    m.on_switch(&sw).await.unwrap();
    let none = SwitchEvent {
        to: None,
        reason: "none_up".into(),
        at: T0 + 9_000,
        ..sw.clone()
    };
    m.on_switch(&none).await.unwrap();
    let id = all(&store).await[0].id;
    let t = timeline(&store, id).await;
    assert_eq!(
        t[1],
        "Traffic moved to http://127.0.0.1:8001 at 10:00:05 UTC (active_down)"
    );
    assert_eq!(
        t[2],
        "No instance is up at 10:00:09 UTC: the proxy answers 503"
    );
}

#[tokio::test]
async fn figures_at_resolution_are_exact_for_a_scripted_outage() {
    let store = Store::memory();
    let c = Arc::new(Scripted::default());
    let mut m = manager(&store, c.clone()).await;
    // The group's rollups: 1200 requests in the two minutes before the outage's = 10/s (7
    // failed, not counted); 550 answered from its first minute on, 55 of them 5xx.
    let slices = [
        (T0 - 120_000, 600, 0),
        (T0 - 60_000, 600, 7),
        (T0, 200, 20),
        (T0 + 60_000, 150, 15),
        (T0 + 120_000, 100, 10),
        (T0 + 180_000, 100, 10),
    ];
    for (start, requests, failed_requests) in slices {
        store.write(crate::store::Write::GroupMinute(GroupRollup {
            group: "gw".into(),
            start,
            observed_ms: 60_000,
            requests,
            failed_requests,
            ..GroupRollup::default()
        }));
    }
    // Down after 3 failures.
    c.fail("gw/0", 3);
    m.on_transition(&down("gw/0", "gw", T0)).await.unwrap();
    // The minute rollups hold 80 failures over the incident; 60 more before it don't count.
    for (start, failures) in [(T0 - 120_000, 60), (T0, 30), (T0 + 60_000, 50)] {
        store.write(crate::store::Write::Minute(Rollup {
            target: "gw/0".into(),
            start,
            probes: failures,
            failures,
            ..Rollup::default()
        }));
    }
    store.flush().await;
    // 4m12s later: 84 failures seen since it went down (3 before); 50 requests (5 failed) not
    // written yet: 600 proxied, 60 failed.
    c.fail("gw/0", 87);
    c.proxy("gw", 50, 5);
    m.on_transition(&up("gw/0", "gw", T0 + 252_000))
        .await
        .unwrap();
    let inc = &all(&store).await[0];
    let f: Figures = serde_json::from_str(inc.figures.as_deref().unwrap()).unwrap();
    assert_eq!(f.duration_seconds, 252.0);
    assert_eq!(f.downtime_seconds, 252.0);
    assert_eq!(f.maintenance_seconds, 0.0);
    assert_eq!(f.failed_probes_rollups, 80);
    assert_eq!(f.failed_probes_seen, 87);
    assert_eq!(f.failed_probes, 87);
    assert_eq!(f.proxied_requests, Some(600));
    assert_eq!(f.failed_proxied_requests, Some(60));
    assert_eq!(f.request_rate, Some(10.0));
    assert_eq!(f.request_rate_source.as_deref(), Some("proxy"));
    assert_eq!(f.estimated_failed_requests, Some(2520.0));
    assert_eq!(f.slo_percent, 99.9);
    assert_eq!(f.slo_window_seconds, 2_592_000.0);
    assert!((f.error_budget_seconds - 2592.0).abs() < 1e-6);
    assert!((f.error_budget_consumed_percent - 252.0 / 2592.0 * 100.0).abs() < 1e-9);
}

fn calendar_over(start: &str, duration: &str, component: &str) -> Arc<Calendar> {
    let p = Parts {
        name: "deploy",
        components: vec![component.into()],
        start: Some(start),
        duration: Some(duration),
        ..Parts::default()
    };
    let w = WindowSpec::check(&p, "config").unwrap();
    Arc::new(Calendar::new(
        vec![w],
        [("gw/0".into(), "gw".into())].into(),
    ))
}

#[tokio::test]
async fn an_outage_starting_in_maintenance_is_marked_and_excluded_from_the_budget() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    m.set_config(IncidentsConfig {
        request_rate: Some(2.0),
        ..IncidentsConfig::default()
    });
    // The window covers 10:00–10:01; the outage runs 10:00:30–10:02:30.
    m.set_calendar(calendar_over("2026-01-01T10:00:00Z", "1m", "gw"));
    m.on_transition(&down("gw/0", "gw", T0 + 30_000))
        .await
        .unwrap();
    m.on_transition(&down("other", "other", T0 + 30_000))
        .await
        .unwrap();
    m.on_transition(&up("gw/0", "gw", T0 + 150_000))
        .await
        .unwrap();
    let v = all(&store).await;
    let gw = v.iter().find(|i| i.component == "gw").unwrap();
    let other = v.iter().find(|i| i.component == "other").unwrap();
    assert!(gw.in_maintenance);
    assert!(!other.in_maintenance);
    assert!(timeline(&store, gw.id).await[0].ends_with("inside a maintenance window"));
    let f: Figures = serde_json::from_str(gw.figures.as_deref().unwrap()).unwrap();
    assert_eq!(f.duration_seconds, 120.0);
    assert_eq!(f.maintenance_seconds, 30.0);
    assert_eq!(f.downtime_seconds, 90.0);
    assert_eq!(f.request_rate_source.as_deref(), Some("config"));
    assert_eq!(f.estimated_failed_requests, Some(240.0));
}

fn how(cfg: &IncidentsConfig) -> Resolution<'_> {
    Resolution {
        config: cfg,
        calendar: &NoMaintenance,
        counters: &NoCounters,
    }
}

fn says(status: Option<&str>, message: &str) -> UpdateInput {
    UpdateInput {
        status: status.map(str::to_string),
        message: message.into(),
        ..UpdateInput::default()
    }
}

#[tokio::test]
async fn manual_updates_move_the_status_forward_only() {
    let store = Store::memory();
    let cfg = IncidentsConfig::default();
    let d = DeclareInput {
        component: "gw".into(),
        title: "Slow predictions".into(),
        impact: Some("minor".into()),
        message: "Looking into it".into(),
        status: None,
    };
    let inc = manual::declare(&store, &d, T0).await.unwrap();
    assert_eq!(inc.impact, Impact::Minor);
    let id = inc.id;
    let up = |s, m| says(s, m);
    manual::update(
        &store,
        id,
        &up(Some("identified"), "Memory leak"),
        T0 + 1,
        &how(&cfg),
    )
    .await
    .unwrap();
    let mut u = up(None, "Still leaking");
    u.impact = Some("critical".into());
    let inc = manual::update(&store, id, &u, T0 + 2, &how(&cfg))
        .await
        .unwrap();
    assert_eq!(
        (inc.status, inc.impact),
        (IncidentStatus::Identified, Impact::Critical)
    );
    manual::update(
        &store,
        id,
        &up(Some("monitoring"), "Fix deployed"),
        T0 + 3,
        &how(&cfg),
    )
    .await
    .unwrap();
    let back = manual::update(&store, id, &up(Some("identified"), "x"), T0 + 4, &how(&cfg)).await;
    assert!(
        matches!(
            back,
            Err(IncidentError::Invalid {
                field: "status",
                ..
            })
        ),
        "{back:?}"
    );
    for (bad, field) in [
        (up(Some("fixed"), "x"), "status"),
        (up(None, "  "), "message"),
        (
            UpdateInput {
                impact: Some("huge".into()),
                ..up(None, "x")
            },
            "impact",
        ),
    ] {
        let r = manual::update(&store, id, &bad, T0 + 4, &how(&cfg)).await;
        assert!(
            matches!(r, Err(IncidentError::Invalid { field: f, .. }) if f == field),
            "{r:?}"
        );
    }
    let inc = manual::update(
        &store,
        id,
        &up(Some("resolved"), "All good"),
        T0 + 60_000,
        &how(&cfg),
    )
    .await
    .unwrap();
    assert_eq!(inc.resolved, Some(T0 + 60_000));
    let f: Figures = serde_json::from_str(inc.figures.as_deref().unwrap()).unwrap();
    assert_eq!(f.duration_seconds, 60.0);
    let after = manual::update(&store, id, &up(None, "late"), T0 + 61_000, &how(&cfg)).await;
    assert!(matches!(after, Err(IncidentError::Invalid { .. })));
    let missing = manual::update(&store, 999, &up(None, "x"), T0, &how(&cfg)).await;
    assert!(matches!(missing, Err(IncidentError::NotFound(999))));
    let t = timeline(&store, id).await;
    assert_eq!(
        t,
        [
            "Looking into it",
            "Memory leak",
            "Still leaking",
            "Fix deployed",
            "All good"
        ]
    );
}

#[tokio::test]
async fn a_recovery_after_a_manual_resolution_adds_nothing() {
    let store = Store::memory();
    let cfg = IncidentsConfig::default();
    let mut m = manager(&store, Arc::default()).await;
    m.on_transition(&down("web", "web", T0)).await.unwrap();
    let id = all(&store).await[0].id;
    manual::update(
        &store,
        id,
        &says(Some("resolved"), "Done"),
        T0 + 10_000,
        &how(&cfg),
    )
    .await
    .unwrap();
    m.on_transition(&up("web", "web", T0 + 20_000))
        .await
        .unwrap();
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.resolved, Some(T0 + 10_000));
    assert_eq!(timeline(&store, id).await.len(), 2);
    assert!(m.open_ids().is_empty());
}

#[tokio::test]
async fn an_open_incident_continues_across_a_restart() {
    let store = Store::memory();
    let mut first = manager(&store, Arc::default()).await;
    first.on_transition(&down("gw/0", "gw", T0)).await.unwrap();
    drop(first);
    // A second manager on the same store: the restored target is down again.
    let mut second = manager(&store, Arc::default()).await;
    assert_eq!(second.open_ids().len(), 1);
    second
        .on_transition(&down("gw/0", "gw", T0 + 5_000))
        .await
        .unwrap();
    assert_eq!(all(&store).await.len(), 1, "no second incident");
    second
        .on_transition(&up("gw/0", "gw", T0 + 90_000))
        .await
        .unwrap();
    let v = all(&store).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].resolved, Some(T0 + 90_000));
    let t = timeline(&store, v[0].id).await;
    assert_eq!(
        t,
        [
            "Detected: gw/0 is down (connect_refused: connection refused)",
            "Recovered after 1m30s"
        ]
    );
}

#[tokio::test]
async fn removing_targets_from_the_config_closes_what_waited_for_them() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::default()).await;
    m.on_transition(&down("health", "gw", T0)).await.unwrap();
    m.on_transition(&down("predict", "gw", T0 + 1_000))
        .await
        .unwrap();
    m.on_transition(&down("db", "db", T0 + 2_000))
        .await
        .unwrap();
    // Nothing removed: nothing happens.
    m.forget_removed(&|_| true, T0 + 10_000).await.unwrap();
    assert!(all(&store).await.iter().all(|i| i.resolved.is_none()));
    // `predict` removed: gw waits for `health` alone; db is untouched.
    m.forget_removed(&|t| t != "predict", T0 + 20_000)
        .await
        .unwrap();
    let v = all(&store).await;
    let gw = v.iter().find(|i| i.component == "gw").unwrap();
    assert!(gw.resolved.is_none(), "{gw:?}");
    assert_eq!(
        timeline(&store, gw.id).await.last().unwrap(),
        "predict removed from the configuration: no longer watched"
    );
    m.on_transition(&up("health", "gw", T0 + 60_000))
        .await
        .unwrap();
    let gw = store.incident(gw.id).await.unwrap().unwrap();
    assert_eq!(
        gw.resolved,
        Some(T0 + 60_000),
        "health's recovery resolves it"
    );
    // db removed while down, then a restart: the new manager closes it at once.
    drop(m);
    let mut m = manager(&store, Arc::default()).await;
    m.forget_removed(&|t| t != "db", T0 + 300_000)
        .await
        .unwrap();
    let db = all(&store)
        .await
        .into_iter()
        .find(|i| i.component == "db")
        .unwrap();
    assert_eq!(db.resolved, Some(T0 + 300_000));
    assert_eq!(db.status, IncidentStatus::Resolved);
    assert!(db.figures.is_some(), "closed with its figures");
    assert_eq!(
        timeline(&store, db.id).await[1..],
        [
            "db removed from the configuration: no longer watched",
            "Closed after 4m58s: its targets were removed from the configuration before they recovered"
        ]
    );
    assert!(m.open_ids().is_empty());
}

#[test]
fn durations_for_people() {
    assert_eq!(figures::human(252_000), "4m12s");
    assert_eq!(figures::human(3_723_000), "1h2m3s");
    assert_eq!(figures::human(5_000), "5s");
    assert_eq!(figures::human(850), "850ms");
}

#[tokio::test]
async fn resolve_after_holds_the_resolution_and_a_flap_inside_it_changes_nothing() {
    let store = Store::memory();
    let mut m = manager(&store, Arc::new(Scripted::default())).await;
    m.set_config(IncidentsConfig {
        resolve_after: std::time::Duration::from_secs(60),
        ..IncidentsConfig::default()
    });
    m.on_transition(&down("health", "gw", T0)).await.unwrap();
    m.on_transition(&up("health", "gw", T0 + 10_000))
        .await
        .unwrap();
    m.settle(T0 + 60_000).await.unwrap();
    let inc = all(&store).await.remove(0);
    assert_eq!(inc.resolved, None, "up for 50 s of the 60 s hold");
    // Down again inside the hold: the same incident goes on, nothing resolved or reopened.
    m.on_transition(&down("health", "gw", T0 + 65_000))
        .await
        .unwrap();
    m.on_transition(&up("health", "gw", T0 + 80_000))
        .await
        .unwrap();
    m.settle(T0 + 130_000).await.unwrap();
    let v = all(&store).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].resolved, None, "the hold restarted at 80 s");
    m.settle(T0 + 140_000).await.unwrap();
    let inc = all(&store).await.remove(0);
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(inc.resolved, Some(T0 + 80_000), "as of when it came up");
    let said = timeline(&store, inc.id).await;
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[1].starts_with("Recovered after 1m20s"), "{said:?}");
    assert!(
        !said.iter().any(|s| s.starts_with("Down again")),
        "{said:?}"
    );
    // Without a hold (the default) the recovery resolves at once, as before.
    m.set_config(IncidentsConfig::default());
    m.on_transition(&down("db", "db", T0 + 600_000))
        .await
        .unwrap();
    m.on_transition(&up("db", "db", T0 + 610_000))
        .await
        .unwrap();
    let v = all(&store).await;
    assert!(v.iter().all(|i| i.resolved.is_some()), "{v:?}");
}
