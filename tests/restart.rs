//! Restart across processes: `watchfire run --storage.path DIR` killed with SIGKILL during an
//! outage and with a manual pin, then started again on the same directory.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use watchfire::state::Health;
use watchfire::store::{GroupState, Store, StoreOptions, TargetState};

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
