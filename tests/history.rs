//! State and history through the store, in-process on the memory store: a restart resumes each
//! target's stored health and each failover group's active instance and pin with no side
//! effect, and minute rollups (of targets and of failover groups) are exact under paused time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::state::Health;
use watchfire::store::model::Window;
use watchfire::store::{
    GroupState, Level, MaintenanceCalendar, Millis, Store, Subject, TargetState, Write,
};

async fn sim() -> Sim {
    Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .expect("sim starts")
}

/// A runtime of `yaml` on `store`, with tokio's timer (so it runs under paused time too).
async fn start(yaml: &str, store: &Store) -> (Arc<Runtime>, CancellationToken) {
    let cfg = config::load_str("history.yaml", yaml).expect("config");
    let cancel = CancellationToken::new();
    let opts = RuntimeOptions {
        store: store.clone(),
        precise_timer: false,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime starts");
    (rt, cancel)
}

/// A loopback address nothing listens on (every connection to it is refused).
fn closed_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn render(rt: &Runtime) -> String {
    let mut out = String::new();
    watchfire::metrics::render(rt, &mut watchfire::expo::Writer::new(&mut out));
    out
}

fn health(rt: &Runtime, name: &str) -> Health {
    rt.target(name)
        .expect("target")
        .stats
        .lock()
        .unwrap()
        .state
        .health
}

#[tokio::test]
async fn a_stored_down_target_is_down_from_the_first_render_until_up_after_successes() {
    let gw = sim().await;
    let base = format!("http://{}", gw.local_addr());
    let store = Store::memory();
    let since: Millis = 1_700_000_000_000;
    store.write(Write::TargetState(TargetState {
        target: "health".into(),
        health: Health::Down,
        successes: 0,
        failures: 3,
        since,
        reason: Some("refused".into()),
        detail: None,
    }));
    store.write(Write::TargetState(TargetState {
        target: "gone".into(),
        health: Health::Up,
        successes: 2,
        failures: 0,
        since,
        reason: None,
        detail: None,
    }));
    let yaml = format!(
        "targets:\n  - name: health\n    url: {base}/health\n    interval: 50ms\n    timeout: 40ms\n    up_after: 3\n"
    );
    store.flush().await;
    let (rt, cancel) = start(&yaml, &store).await;
    let first = render(&rt);
    assert_eq!(
        common::sample(&first, "watchfire_target_up{target=\"health\"}"),
        Some(0.0),
        "a stored-down target is down at the first render:\n{first}"
    );
    let api = watchfire::server::targets_json(&rt);
    assert_eq!(
        api[0].since.as_deref(),
        Some("2023-11-14T22:13:20.000Z"),
        "since is the stored one"
    );
    store.flush().await;
    let names: Vec<String> = store
        .target_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.target)
        .collect();
    assert!(
        !names.contains(&"gone".to_string()),
        "an unconfigured target's state is forgotten: {names:?}"
    );
    eventually(Duration::from_secs(10), "the target back up", || async {
        (health(&rt, "health") == Health::Up).then_some(())
    })
    .await;
    let target = rt.target("health").unwrap();
    let (successes, ups, downs) = {
        let s = target.stats.lock().unwrap();
        (s.successes, s.transitions_up, s.transitions_down)
    };
    assert!(successes >= 3, "up only after up_after successes");
    assert_eq!((ups, downs), (1, 0));
    store.flush().await;
    let history = store
        .transitions(Some("health"), 0, i64::MAX, 0)
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(
        (history[0].from.as_str(), history[0].to.as_str()),
        ("down", "up")
    );
    cancel.cancel();
    gw.shutdown().await;
}

#[tokio::test]
async fn a_group_restored_pinned_stays_pinned_and_runs_no_hook() {
    let (a, b) = (sim().await, sim().await);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hook-ran");
    let store = Store::memory();
    let json = r#"{"active":1,"last_switch":1700000000000,"recent":[1700000000000],"pinned":true,"reason":"manual"}"#;
    store.write(Write::GroupState(GroupState {
        group: "gw".into(),
        active: Some(1),
        json: json.into(),
        updated: 1_700_000_000_000,
    }));
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{}, http://{}]\n    check: {{ path: /health, interval: 50ms, timeout: 40ms }}\n    up_after: 2\n    failback: manual\n    hold: 100ms\n    hooks:\n      exec: {{ command: [touch, \"{}\"] }}\n",
        a.local_addr(),
        b.local_addr(),
        marker.display()
    );
    store.flush().await;
    let (rt, cancel) = start(&yaml, &store).await;
    let g = rt.failover_group("gw").expect("group");
    assert_eq!(
        g.active(),
        Some(1),
        "the pinned backup is active from the start"
    );
    eventually(Duration::from_secs(10), "both instances up", || async {
        (g.health(0) == Health::Up && g.health(1) == Health::Up).then_some(())
    })
    .await;
    // Past the hold: an auto group would have failed back by now.
    let probes = rt.target("gw/0").unwrap().stats.lock().unwrap().probes();
    eventually(
        Duration::from_secs(10),
        "more probes of the primary",
        || async {
            let n = rt.target("gw/0").unwrap().stats.lock().unwrap().probes();
            (n >= probes + 5).then_some(())
        },
    )
    .await;
    g.evaluate(None);
    assert_eq!(g.active(), Some(1), "traffic stays on the pinned backup");
    let json = g.json();
    assert_eq!(json.transitions, 0, "no switch counted");
    assert!(
        json.history.is_empty(),
        "no switch recorded: {:?}",
        json.history
    );
    let switches = store.transitions(Some("gw"), 0, i64::MAX, 0).await.unwrap();
    assert!(
        switches.iter().all(|t| t.subject != Subject::Group),
        "no switch in the store: {switches:?}"
    );
    assert!(!marker.exists(), "no hook ran on restart");
    cancel.cancel();
    a.shutdown().await;
    b.shutdown().await;
}

/// Maintenance for one target over `[from, to)`.
struct Maintenance(&'static str, Millis, Millis);

impl MaintenanceCalendar for Maintenance {
    fn covered(&self, name: &str, from: Millis, to: Millis) -> i64 {
        if name != self.0 {
            return 0;
        }
        (to.min(self.2) - from.max(self.1)).max(0)
    }

    fn windows(&self, _: Millis, _: Millis) -> Vec<Window> {
        Vec::new()
    }
}

/// A target that refuses every probe goes down at its third failure; the minute it went down
/// in counts down time from that instant to the minute's end, to the millisecond, and a whole
/// minute later counts 60 s, less the part inside a maintenance window (:10 to :40).
#[tokio::test(start_paused = true)]
async fn minute_rollups_count_down_time_to_the_millisecond_under_paused_time() {
    let addr = closed_port();
    let yaml = format!(
        "targets:\n  - name: dead\n    url: http://{addr}/health\n    interval: 1s\n    timeout: 500ms\n    down_after: 3\n"
    );
    let store = Store::memory();
    let (rt, cancel) = start(&yaml, &store).await;
    let clock = rt.clock();
    // Down at the third failure, less than 3 s after the start; the minute it falls in is the
    // first one checked (the start's own minute may end before it: the test starts at whatever
    // second of the wall clock's minute it starts).
    tokio::time::sleep_until(clock.instant(clock.now() + 4_000)).await;
    store.flush().await;
    let down_at = store
        .transitions(Some("dead"), 0, i64::MAX, 0)
        .await
        .unwrap()
        .iter()
        .find(|t| t.to == "down")
        .map(|t| t.at)
        .expect("went down");
    let first_end = down_at - down_at.rem_euclid(60_000) + 60_000;
    let second = (first_end, first_end + 60_000);
    // Set before the window opens (at most 4 s of the second minute have passed).
    rt.set_calendar(Arc::new(Maintenance(
        "dead",
        second.0 + 10_000,
        second.0 + 40_000,
    )));
    let deadline = clock.instant(second.1 + 1_000);
    tokio::time::sleep_until(deadline).await;
    store.flush().await;
    let rollups = store
        .rollups(Level::Minute, 0, i64::MAX, Some("dead"))
        .await
        .unwrap();
    let first = rollups
        .iter()
        .find(|r| r.start == first_end - 60_000)
        .expect("the first minute");
    assert_eq!(first.down_ms, first_end - down_at, "{first:?}");
    let whole = rollups
        .iter()
        .find(|r| r.start == second.0)
        .expect("the second minute");
    assert_eq!(whole.down_ms, 30_000, "{whole:?}");
    assert_eq!(whole.maintenance_ms, 30_000, "{whole:?}");
    assert!(
        (59..=61).contains(&whole.probes),
        "one probe a second: {whole:?}"
    );
    assert_eq!(whole.failures, whole.probes);
    assert_eq!(
        whole.latency.iter().sum::<u64>(),
        whole.probes,
        "every probe in a bucket"
    );
    cancel.cancel();
}

/// A failover group whose only instance refuses every check has no instance to send traffic
/// to from the instant its check target goes down: the group's own minute rollups count that
/// time to the millisecond, a whole minute later 60 s less a maintenance window (:10 to :40)
/// covering the group, and the switch to none once.
#[tokio::test(start_paused = true)]
async fn group_rollups_count_no_instance_up_to_the_millisecond_under_paused_time() {
    let addr = closed_port();
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{addr}]\n    check: {{ path: /health, interval: 1s, timeout: 500ms }}\n    down_after: 3\n"
    );
    let store = Store::memory();
    let (rt, cancel) = start(&yaml, &store).await;
    let clock = rt.clock();
    // The instance goes down a few seconds after the start, in this minute or the next; the
    // minute after those is down whole.
    let whole_start = clock.now() - clock.now().rem_euclid(60_000) + 120_000;
    rt.set_calendar(Arc::new(Maintenance(
        "gw",
        whole_start + 10_000,
        whole_start + 40_000,
    )));
    tokio::time::sleep_until(clock.instant(whole_start + 61_000)).await;
    store.flush().await;
    let down_at = store
        .transitions(Some("gw/0"), 0, i64::MAX, 0)
        .await
        .unwrap()
        .iter()
        .find(|t| t.to == "down")
        .map(|t| t.at)
        .expect("went down");
    let rows = store
        .group_rollups(Level::Minute, 0, i64::MAX, Some("gw"))
        .await
        .unwrap();
    let went = down_at - down_at.rem_euclid(60_000);
    let first = rows
        .iter()
        .find(|r| r.start == went)
        .expect("the minute it went down in");
    assert_eq!(first.down_ms, went + 60_000 - down_at, "{first:?}");
    assert_eq!(first.switches, 1, "to none: {first:?}");
    let whole = rows
        .iter()
        .find(|r| r.start == whole_start)
        .expect("the whole minute");
    assert_eq!(whole.observed_ms, 60_000, "{whole:?}");
    assert_eq!(whole.down_ms, 30_000, "{whole:?}");
    assert_eq!(whole.maintenance_ms, 30_000, "{whole:?}");
    assert_eq!((whole.switches, whole.requests), (0, 0), "{whole:?}");
    let hour = store
        .group_rollups(Level::Hour, 0, i64::MAX, Some("gw"))
        .await
        .unwrap();
    let down: i64 = rows.iter().map(|r| r.down_ms).sum();
    assert_eq!(
        hour.iter().map(|r| r.down_ms).sum::<i64>(),
        down,
        "{hour:?}"
    );
    cancel.cancel();
}
