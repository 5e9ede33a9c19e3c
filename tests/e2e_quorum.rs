//! Several locations with a quorum, end to end: a real PostgreSQL of the test's own, three real
//! `watchfire run --cluster URL --location a|b|c` processes, and one simulated gateway per
//! location, so that one location's path can be broken alone (per-location fault injection).
//! A webhook receiver in the test counts every incident message by its idempotency key.
//!
//! - One location's outage (its gateway path fails every request) marks that location degraded
//!   on every member and pages nothing.
//! - A real outage (every location sees the gateway fail) is down by quorum and pages once:
//!   one declaration, from the one speaking location, not one per location.
//!
//! Missing PostgreSQL fails the test loudly. Loopback only, ports from 127.0.0.1:0, deadlines
//! instead of sleeps, child processes killed by drop guards.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/procs.rs"]
mod procs;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use watchfire::sim::{FaultConfig, Sim};

use common::{eventually, get};
use procs::{free_port, Proc};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const LEASE: &str = "1500ms";
const LOCATIONS: [&str; 3] = ["a", "b", "c"];

/// Every incident message's idempotency key, in arrival order.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<String>>>);

impl Hook {
    fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn declared(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|k| k.contains(":declared@"))
            .collect()
    }
}

/// A webhook receiver answering 200 to every POST and keeping its `Idempotency-Key`.
async fn receiver() -> (SocketAddr, Hook) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hook = Hook::default();
    let h = hook.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then the body by Content-Length.
                let (head_end, len) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                if let Some(k) = head.lines().find_map(|l| {
                    let (name, v) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("idempotency-key")
                        .then(|| v.trim().to_string())
                }) {
                    h.0.lock().unwrap().push(k);
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, hook)
}

/// One location's config: the gateway's two endpoints through this location's own path.
fn config(sim: SocketAddr, hook: SocketAddr) -> String {
    format!(
        r#"
quorum:
  locations: [a, b, c]
defaults:
  interval: 200ms
  timeout: 150ms
  down_after: 2
  up_after: 2
  labels: {{ component: gateway }}
targets:
  - name: gateway-health
    url: http://{sim}/health
  - name: gateway-predict
    url: http://{sim}/predict
    method: POST
    body_json: {{ data: [[1, 2, 3, 4]] }}
notify:
  update_every: 1h
  escalation: []
  delivery: {{ backoff: 200ms, max_backoff: 1s, give_up_after: 5m, timeout: 2s }}
  receivers:
    - name: oncall
      webhook: {{ url: "http://{hook}/hook" }}
  routes:
    - receivers: [oncall]
"#
    )
}

/// `/api/v1/quorum` of the member at `addr`, when it answers.
async fn quorum(addr: SocketAddr) -> Option<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    drop(stream);
    let (status, body) = get(addr, "/api/v1/quorum").await;
    (status == 200).then(|| serde_json::from_str(&body).expect("quorum JSON"))
}

fn location_health(q: &serde_json::Value, name: &str) -> Option<String> {
    q["locations"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
        .map(|l| l["health"].as_str().unwrap_or_default().to_string())
}

fn target_health(q: &serde_json::Value, name: &str) -> Option<String> {
    q["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == name)
        .map(|t| t["health"].as_str().unwrap_or_default().to_string())
}

/// Waits until every member's quorum satisfies `check`.
async fn on_every_member(
    members: &[SocketAddr],
    procs: &[Proc],
    limit: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let check = &check;
    let found = common::poll_until(limit, || async move {
        for m in members {
            let q = quorum(*m).await?;
            if !check(&q) {
                return None;
            }
        }
        Some(())
    })
    .await;
    if found.is_none() {
        let tails: Vec<String> = procs.iter().map(Proc::tail).collect();
        let mut views = Vec::new();
        for m in members {
            views.push(format!("{m}: {:?}", quorum(*m).await));
        }
        panic!(
            "timed out after {limit:?} waiting for {what}\n{}\n{}",
            views.join("\n"),
            tails.join("\n")
        );
    }
}

/// Waits until the quorum of `member` was computed at least `rounds` leases after now (the
/// database's clock): a deadline on the cluster's own progress, not a sleep.
async fn leases_pass(member: SocketAddr, rounds: i64) {
    let lease_ms = 1500;
    let start = quorum(member).await.expect("quorum")["at_ms"]
        .as_i64()
        .expect("at_ms");
    eventually(Duration::from_secs(30), "leases to pass", || async move {
        let at = quorum(member).await?["at_ms"].as_i64()?;
        (at >= start + rounds * lease_ms).then_some(())
    })
    .await;
}

fn failing(on: bool) -> FaultConfig {
    FaultConfig {
        error_rate: if on { 1.0 } else { 0.0 },
        ..FaultConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_locations_outage_pages_nothing_and_a_real_outage_pages_once() {
    let pg = pg::Pg::start();
    pg.sql("CREATE DATABASE quorum");
    let url = pg.url("quorum");
    let (hook_addr, hook) = receiver().await;
    let mut sims = Vec::new();
    for _ in LOCATIONS {
        let s = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
            .await
            .expect("sim starts");
        sims.push(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut members = Vec::new();
    let mut procs = Vec::new();
    for (i, loc) in LOCATIONS.iter().enumerate() {
        let d = dir.path().join(loc);
        std::fs::create_dir(&d).unwrap();
        let cfg = d.join("watchfire.yml");
        std::fs::write(&cfg, config(sims[i].local_addr(), hook_addr)).unwrap();
        let port = free_port();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let id = format!("member-{loc}");
        let args: Vec<String> = [
            "run",
            "--config",
            &cfg.display().to_string(),
            "--web.listen-address",
            &listen.to_string(),
            "--storage.memory",
            "--cluster",
            &url,
            "--cluster.id",
            &id,
            "--cluster.lease",
            LEASE,
            "--location",
            loc,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let name: &'static str = ["member-a", "member-b", "member-c"][i];
        procs.push(Proc::spawn(name, BIN, &args, &d));
        members.push(listen);
    }
    let all_up = |q: &serde_json::Value| {
        LOCATIONS
            .iter()
            .all(|l| location_health(q, l).as_deref() == Some("ok"))
            && ["gateway-health", "gateway-predict"]
                .iter()
                .all(|t| target_health(q, t).as_deref() == Some("up"))
    };
    let limit = Duration::from_secs(30);
    on_every_member(
        &members,
        &procs,
        limit,
        "three ok locations, targets up",
        all_up,
    )
    .await;
    assert!(
        hook.keys().is_empty(),
        "nothing paged at start: {:?}",
        hook.keys()
    );

    // Location c's own path fails: c sees both targets down, a and b see them up.
    sims[2].set_faults(failing(true));
    on_every_member(&members, &procs, limit, "c degraded, targets up", |q| {
        location_health(q, "c").as_deref() == Some("degraded")
            && target_health(q, "gateway-health").as_deref() == Some("up")
            && q["speaker"] == "a"
    })
    .await;
    let (_, c_metrics) = get(members[2], "/metrics").await;
    assert_eq!(
        common::sample(
            &c_metrics,
            // In cluster mode every per-target series names its prober.
            r#"watchfire_target_up{target="gateway-health",component="gateway",instance_id="member-c"}"#
        ),
        Some(0.0),
        "c itself sees the target down:\n{c_metrics}"
    );
    assert_eq!(
        common::sample(&c_metrics, r#"watchfire_location_degraded{location="c"}"#),
        Some(1.0)
    );
    let (status, page) = get(members[0], "/status").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<td>c</td><td>Degraded: its views are left out</td>"),
        "the status page shows c degraded:\n{page}"
    );
    leases_pass(members[0], 3).await;
    assert!(
        hook.keys().is_empty(),
        "one location's outage paged: {:?}",
        hook.keys()
    );

    // c's path heals.
    sims[2].set_faults(failing(false));
    on_every_member(&members, &procs, limit, "c ok again", all_up).await;

    // A real outage: every location sees the gateway fail.
    for s in &sims {
        s.set_faults(failing(true));
    }
    on_every_member(&members, &procs, limit, "targets down by quorum", |q| {
        ["gateway-health", "gateway-predict"]
            .iter()
            .all(|t| target_health(q, t).as_deref() == Some("down"))
            && LOCATIONS
                .iter()
                .all(|l| location_health(q, l).as_deref() == Some("ok"))
    })
    .await;
    let h = hook.clone();
    eventually(limit, "the declaration", || {
        let h = h.clone();
        async move { (!h.declared().is_empty()).then_some(()) }
    })
    .await;
    leases_pass(members[0], 3).await;
    let (_, a_metrics) = get(members[0], "/metrics").await;
    assert_eq!(
        common::sample(
            &a_metrics,
            r#"watchfire_quorum_up{target="gateway-health"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        hook.declared().len(),
        1,
        "a real outage pages once: {:?}",
        hook.keys()
    );
    assert!(hook.declared()[0].ends_with("@oncall"), "{:?}", hook.keys());
    for s in &sims {
        s.set_faults(failing(false));
    }
    on_every_member(&members, &procs, limit, "recovered", all_up).await;
    drop(procs);
}
