//! Restart across processes: `watchfire run --storage.path DIR` killed with SIGKILL during an
//! outage (a target's; a failover group's, whose incident resolves after the restart with the
//! proxy's figures) and with a manual pin, then started again on the same directory.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use watchfire::state::Health;
use watchfire::store::{
    GroupState, IncidentQuery, Level, Millis, Store, StoreOptions, TargetState,
};

use common::{eventually, get, request, sample};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// A child process, killed (SIGKILL) on drop.
struct Proc(Child);

impl Proc {
    fn spawn(args: &[&str]) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchfire starts");
        Proc(child)
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn sim(addr: SocketAddr) -> Proc {
    Proc::spawn(&["sim", "--listen", &addr.to_string()])
}

fn run(config: &Path, listen: SocketAddr, data: &Path) -> Proc {
    Proc::spawn(&[
        "run",
        "--config",
        &config.to_string_lossy(),
        "--listen",
        &listen.to_string(),
        "--storage.path",
        &data.to_string_lossy(),
    ])
}

async fn listening(addr: SocketAddr) {
    eventually(Duration::from_secs(20), "listening", || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

/// Targets `up` in `/api/v1/targets`.
fn up_targets(api: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(api).unwrap_or_default();
    v.as_array()
        .map(|a| a.iter().filter(|t| t["state"] == "up").count())
        .unwrap_or(0)
}

/// Waits until the store in `dir` (read through a second handle on the same SQLite file, as
/// `watchfire report` reads it) holds what `done` looks for: the writer task batches its writes.
async fn stored<F>(dir: &Path, what: &str, done: F)
where
    F: Fn(&[TargetState], &[GroupState]) -> bool,
{
    let opts = StoreOptions {
        path: Some(dir.to_path_buf()),
        ..StoreOptions::default()
    };
    let store = Store::open(&opts)
        .await
        .expect("the store opens beside the process");
    let (store, done) = (&store, &done);
    eventually(Duration::from_secs(20), what, || async move {
        let targets = store.target_states().await.ok()?;
        let groups = store.group_states().await.ok()?;
        done(&targets, &groups).then_some(())
    })
    .await;
}

/// The first `/metrics` the restarted process answers on `listen`.
async fn first_scrape(listen: SocketAddr) -> String {
    eventually(Duration::from_secs(20), "the first scrape", || async move {
        match tokio::net::TcpStream::connect(listen).await {
            Ok(_) => Some(get(listen, "/metrics").await.1),
            Err(_) => None,
        }
    })
    .await
}

#[tokio::test]
async fn a_target_down_at_kill_is_down_at_the_first_scrape_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = free_addr();
    let mut sim = sim(gw);
    let config = dir.path().join("probes.yaml");
    std::fs::write(
        &config,
        format!("targets:\n  - name: gw\n    url: http://{gw}/health\n    interval: 100ms\n    timeout: 80ms\n    down_after: 2\n    up_after: 3\n"),
    )
    .unwrap();
    let listen = free_addr();
    let mut wf = run(&config, listen, &data);
    listening(listen).await;
    let up = "watchfire_target_up{target=\"gw\"}";
    eventually(Duration::from_secs(20), "gw up", || async move {
        (sample(&get(listen, "/metrics").await.1, up) == Some(1.0)).then_some(())
    })
    .await;
    sim.kill();
    eventually(Duration::from_secs(20), "gw down", || async move {
        (sample(&get(listen, "/metrics").await.1, up) == Some(0.0)).then_some(())
    })
    .await;
    stored(&data, "gw stored down", |t, _| {
        t.iter()
            .any(|s| s.target == "gw" && s.health == Health::Down)
    })
    .await;
    wf.kill();

    let _wf = run(&config, listen, &data);
    let first = first_scrape(listen).await;
    assert_eq!(
        sample(&first, up),
        Some(0.0),
        "down from the first scrape after the restart:\n{first}"
    );
}

#[tokio::test]
async fn a_manual_pin_survives_kill_and_no_hook_runs_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hook_log = dir.path().join("hook.log");
    let (a, b) = (free_addr(), free_addr());
    let (_sa, _sb) = (sim(a), sim(b));
    let config = dir.path().join("probes.yaml");
    std::fs::write(
        &config,
        format!(
            "failover:\n  - name: gw\n    instances: [http://{a}, http://{b}]\n    check: {{ path: /health, interval: 100ms, timeout: 80ms }}\n    failback: manual\n    hooks:\n      exec: {{ command: [sh, -c, \"echo ran >> {}\"] }}\n",
            hook_log.display()
        ),
    )
    .unwrap();
    let listen = free_addr();
    let mut wf = run(&config, listen, &data);
    listening(listen).await;
    let backup = format!("watchfire_failover_active{{group=\"gw\",instance=\"{b}\"}}");
    eventually(
        Duration::from_secs(20),
        "both instances up",
        || async move { (up_targets(&get(listen, "/api/v1/targets").await.1) == 2).then_some(()) },
    )
    .await;
    let (status, body) = request(listen, "POST", "/api/v1/failover/gw/switch?to=1").await;
    assert_eq!(status, 200, "{body}");
    let log = hook_log.clone();
    eventually(
        Duration::from_secs(20),
        "the hook of the manual switch",
        || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .ok()
                    .filter(|s| s.lines().count() == 1)
            }
        },
    )
    .await;
    stored(&data, "the pin stored", |_, g| {
        g.iter()
            .any(|s| s.group == "gw" && s.active == Some(1) && s.json.contains("\"pinned\":true"))
    })
    .await;
    wf.kill();

    let _wf = run(&config, listen, &data);
    let first = first_scrape(listen).await;
    assert_eq!(
        sample(&first, &backup),
        Some(1.0),
        "traffic on the pinned backup from the first scrape:\n{first}"
    );
    // Both instances up again and probed for a while: the pin holds and no hook runs.
    eventually(
        Duration::from_secs(20),
        "both instances up again",
        || async move { (up_targets(&get(listen, "/api/v1/targets").await.1) == 2).then_some(()) },
    )
    .await;
    let api = get(listen, "/api/v1/failover").await.1;
    let groups: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    assert_eq!(groups[0]["active_index"], 1, "{api}");
    assert_eq!(
        groups[0]["transitions"], 0,
        "no switch after the restart: {api}"
    );
    let runs = std::fs::read_to_string(&hook_log).unwrap_or_default();
    assert_eq!(runs.lines().count(), 1, "no hook ran on restart: {runs:?}");
}

/// Sends `n` GETs of `/health` through the failover proxy at `proxy`; returns how many were
/// answered 5xx.
async fn through(proxy: SocketAddr, n: usize) -> u64 {
    let mut failed = 0;
    for _ in 0..n {
        if get(proxy, "/health").await.0 >= 500 {
            failed += 1;
        }
    }
    failed
}

/// The store in `dir`, opened beside the process (as `watchfire report` opens it).
async fn beside(dir: &Path) -> Store {
    let opts = StoreOptions {
        path: Some(dir.to_path_buf()),
        ..StoreOptions::default()
    };
    Store::open(&opts)
        .await
        .expect("the store opens beside the process")
}

/// The group's requests and 5xx in the store's minute rollups.
async fn stored_requests(store: &Store, group: &str) -> (u64, u64) {
    let rows = store
        .group_rollups(Level::Minute, 0, Millis::MAX, Some(group))
        .await
        .unwrap_or_default();
    rows.iter()
        .fold((0, 0), |a, r| (a.0 + r.requests, a.1 + r.failed_requests))
}

#[tokio::test]
async fn an_incident_across_a_kill_resolves_with_the_proxys_figures_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let a = free_addr();
    let mut instance = sim(a);
    listening(a).await;
    let (proxy, listen) = (free_addr(), free_addr());
    let config = dir.path().join("probes.yaml");
    std::fs::write(
        &config,
        format!(
            "failover:\n  - name: gw\n    instances: [http://{a}]\n    check: {{ path: /health, interval: 100ms, timeout: 80ms }}\n    down_after: 2\n    up_after: 2\n    proxy: {{ listen: \"{proxy}\" }}\n"
        ),
    )
    .unwrap();
    let mut wf = run(&config, listen, &data);
    listening(listen).await;
    listening(proxy).await;
    let store = beside(&data).await;
    // Traffic while healthy, until a whole minute before the current one was watched for at
    // least 10 s: the rate before the outage is reckoned over such minutes.
    let store_ref = &store;
    eventually(
        Duration::from_secs(100),
        "a watched minute before the outage",
        || async move {
            assert_eq!(through(proxy, 5).await, 0, "healthy");
            let now = watchfire::store::now_millis();
            let rows = store_ref
                .group_rollups(Level::Minute, 0, now - now % 60_000, Some("gw"))
                .await
                .ok()?;
            rows.iter()
                .any(|r| r.observed_ms >= 10_000 && r.requests > 0)
                .then_some(())
        },
    )
    .await;
    // The outage: every request through the proxy fails.
    instance.kill();
    let open = eventually(Duration::from_secs(20), "the incident", || async move {
        let open = store_ref
            .incidents(&IncidentQuery {
                open_only: true,
                ..IncidentQuery::default()
            })
            .await
            .ok()?;
        open.into_iter().find(|i| i.component == "gw")
    })
    .await;
    let before_kill = through(proxy, 20).await;
    assert!(before_kill >= 20, "answered 5xx: {before_kill}");
    // Killed once the store holds them (written in slices of a few seconds).
    eventually(Duration::from_secs(20), "the 5xx stored", || async move {
        (stored_requests(store_ref, "gw").await.1 >= before_kill).then_some(())
    })
    .await;
    wf.kill();

    let _wf = run(&config, listen, &data);
    listening(listen).await;
    listening(proxy).await;
    let after_restart = through(proxy, 15).await;
    assert_eq!(after_restart, 15, "no instance up after the restart either");
    let _instance = sim(a);
    listening(a).await;
    let id = open.id;
    let resolved = eventually(Duration::from_secs(30), "the resolution", || async move {
        let i = store_ref.incident(id).await.ok()??;
        i.resolved.is_some().then_some(i)
    })
    .await;
    let f: serde_json::Value =
        serde_json::from_str(resolved.figures.as_deref().expect("figures")).expect("JSON");
    assert_eq!(
        f["failed_proxied_requests"],
        before_kill + after_restart,
        "failed requests before the kill and after the restart: {f}"
    );
    let proxied = f["proxied_requests"].as_u64().expect("proxied requests");
    assert!(proxied >= before_kill + after_restart, "{f}");
    assert_eq!(f["request_rate_source"], "proxy", "{f}");
    let rate = f["request_rate"].as_f64().expect("rate");
    assert!(rate > 0.0, "{f}");
    let duration = f["duration_seconds"].as_f64().expect("duration");
    let estimated = f["estimated_failed_requests"].as_f64().expect("estimate");
    assert!((estimated - rate * duration).abs() < 1e-6, "{f}");
}
