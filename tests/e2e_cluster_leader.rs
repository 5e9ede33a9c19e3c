//! One voice per decision, end to end with the real programs (`cargo test --features e2e --test
//! e2e_cluster_leader`): a PostgreSQL server of the test's own, `watchfire run` members in
//! cluster mode on it (`--cluster` and `--storage.url` the same database, lease 2 s), two
//! `watchfire sim` processes as a failover group's primary and backup, and receivers inside the
//! test for the notifications (counting `Idempotency-Key`s) and the group's webhook hook
//! (counting switches).
//!
//! - the leader is killed (SIGKILL) during an incident: another member takes the leases over,
//!   the notifications go on from it with every key arriving once (a message in flight at the
//!   kill may arrive twice with the same key; counted and printed), and the group switched
//!   once: one hook call, every member's proxy on the backup;
//! - the leader is cut off from PostgreSQL (its connections go through a TCP relay in the test,
//!   which then drops and black-holes them): it stops leading within its lease, never while
//!   another member leads, and the outage that follows is switched once, by the new leader.
//!
//! Missing programs fail the test loudly. Loopback only, ports from 127.0.0.1:0, deadlines
//! instead of sleeps, every child killed by a drop guard.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/procs.rs"]
mod procs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use procs::Proc;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
/// `--cluster.lease` of every member.
const LEASE: Duration = Duration::from_secs(2);
const GROUP: &str = "inference-gateway";
const LIMIT: Duration = Duration::from_secs(30);

/// What a receiver got: (path, Idempotency-Key or empty, body).
type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Receives the notifications (`/notify`) and the hook's switch notices (`/hook`), keeping all.
async fn receiver(cancel: CancellationToken) -> (SocketAddr, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let l = l.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let l = l.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let key = req
                                .headers()
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body = serde_json::from_slice::<Value>(&body.unwrap_or_default())
                                .unwrap_or(Value::Null);
                            l.lock().expect("log").push((path, key, body));
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, log)
}

fn keys(log: &Log) -> Vec<String> {
    let log = log.lock().expect("log");
    log.iter()
        .filter(|(p, k, _)| p == "/notify" && !k.is_empty())
        .map(|(_, k, _)| k.clone())
        .collect()
}

fn hook_calls(log: &Log) -> Vec<Value> {
    let log = log.lock().expect("log");
    log.iter()
        .filter(|(p, _, _)| p == "/hook")
        .map(|(_, _, b)| b.clone())
        .collect()
}

/// A TCP relay to PostgreSQL that the test can cut: the connections it holds are dropped and
/// new ones are accepted and never answered (a black hole, as a partition looks).
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    cut_now: CancellationToken,
}

impl Relay {
    async fn start(upstream: u16, cancel: CancellationToken) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let relay = Relay {
            addr: listener.local_addr().expect("relay address"),
            cut: Arc::default(),
            cut_now: cancel.child_token(),
        };
        let (cut, cut_now) = (relay.cut.clone(), relay.cut_now.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let mut down = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                if cut.load(Ordering::SeqCst) {
                    held.push(down);
                    continue;
                }
                let cut_now = cut_now.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = cut_now.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    }
                });
            }
        });
        relay
    }

    fn url(&self) -> String {
        format!("postgres://postgres:{}@{}/wf", pg::PASSWORD, self.addr)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cut_now.cancel();
    }
}

fn config(primary: SocketAddr, backup: SocketAddr, rx: SocketAddr) -> String {
    format!(
        r#"failover:
  - name: {GROUP}
    instances: [http://{primary}, http://{backup}]
    check: {{ path: /health, interval: 250ms, timeout: 200ms }}
    down_after: 2
    up_after: 1
    failback: manual
    proxy: {{ listen: "127.0.0.1:0" }}
    hooks:
      webhook: {{ url: "http://{rx}/hook" }}

notify:
  update_every: 2s
  escalation: []
  delivery: {{ backoff: 200ms, max_backoff: 1s, give_up_after: 5m, timeout: 2s }}
  receivers:
    - name: oncall
      webhook: {{ url: "http://{rx}/notify" }}
  routes:
    - receivers: [oncall]
"#
    )
}

fn member(dir: &Path, name: &'static str, db: &str) -> (Proc, SocketAddr) {
    let listen: SocketAddr = format!("127.0.0.1:{}", procs::free_port())
        .parse()
        .expect("address");
    let args: Vec<String> = [
        "run",
        "--config",
        "watchfire.yml",
        "--web.listen-address",
        &listen.to_string(),
        "--storage.url",
        db,
        "--cluster",
        db,
        "--cluster.id",
        name,
        "--cluster.lease",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    (Proc::spawn(name, BIN, &args, dir), listen)
}

fn sim(dir: &Path, name: &'static str) -> (Proc, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", procs::free_port())
        .parse()
        .expect("address");
    let args = vec!["sim".into(), "--listen".into(), addr.to_string()];
    (Proc::spawn(name, BIN, &args, dir), addr)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("client")
}

async fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let r = client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// The value of `watchfire_cluster_leader{lease=LEASE}` on a member, none while it does not
/// answer.
async fn leads(addr: SocketAddr, lease: &str) -> Option<bool> {
    let r = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?;
    let text = r.text().await.ok()?;
    let prefix = format!("watchfire_cluster_leader{{lease=\"{lease}\"}} ");
    let line = text.lines().find(|l| l.starts_with(&prefix))?;
    Some(line.ends_with(" 1"))
}

/// The group's active instance index on a member.
async fn active(addr: SocketAddr) -> Option<Option<u64>> {
    let v = get_json(addr, "/api/v1/failover").await?;
    Some(v.as_array()?.first()?["active_index"].as_u64())
}

async fn faults(sim: SocketAddr, json: &str) {
    let url = format!("http://{sim}/-/faults");
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .await
        .expect("the sim's fault control answers");
    assert!(r.status().is_success(), "POST {url} {json}: {}", r.status());
}

async fn until<T, F, Fut>(what: &str, procs: &[&Proc], check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match common::poll_until(LIMIT, check).await {
        Some(v) => v,
        None => {
            let logs: Vec<String> = procs.iter().map(|p| p.tail()).collect();
            panic!(
                "timed out after {LIMIT:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
    }
}

fn database() -> pg::Pg {
    let pg = pg::Pg::start();
    pg.sql("CREATE DATABASE wf");
    pg
}

const FAILOVER_LEASE: &str = "failover/inference-gateway";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_incident_notifications_go_on_once_and_the_group_switches_once() {
    let pg = database();
    let db = pg.url("wf");
    let dir = tempfile::tempdir().expect("temp dir");
    let cancel = CancellationToken::new();
    let (rx, log) = receiver(cancel.clone()).await;
    let (sim_a, a) = sim(dir.path(), "sim-a");
    let (sim_b, b) = sim(dir.path(), "sim-b");
    std::fs::write(dir.path().join("watchfire.yml"), config(a, b, rx)).expect("config");

    // m1 starts first and takes both leases; m2 and m3 follow.
    let (m1, api1) = member(dir.path(), "m1", &db);
    until("m1 to lead", &[&m1], || async {
        let both = leads(api1, "notify").await? && leads(api1, FAILOVER_LEASE).await?;
        both.then_some(())
    })
    .await;
    let (m2, api2) = member(dir.path(), "m2", &db);
    until("m2 to run", &[&m2], || leads(api2, "notify")).await;
    let (m3, api3) = member(dir.path(), "m3", &db);
    until("m3 to run", &[&m3], || leads(api3, "notify")).await;
    let all = [&m1, &m2, &m3, &sim_a, &sim_b];
    for api in [api1, api2, api3] {
        until("every member on the primary", &all, || async {
            (active(api).await? == Some(0)).then_some(())
        })
        .await;
    }

    // The primary fails: one switch, one incident, its declaration and updates from m1.
    faults(a, r#"{"error_rate": 1.0}"#).await;
    until("the declaration", &all, || async {
        keys(&log)
            .iter()
            .any(|k| k.contains(":declared@"))
            .then_some(())
    })
    .await;
    until("an update from m1", &all, || async {
        keys(&log)
            .iter()
            .any(|k| k.contains(":update:"))
            .then_some(())
    })
    .await;
    for api in [api1, api2, api3] {
        until("every member on the backup", &all, || async {
            (active(api).await? == Some(1)).then_some(())
        })
        .await;
    }
    let before_kill = keys(&log).len();

    // kill -9 the leader: m2 or m3 takes both leases over within the lease (plus a renew).
    let killed = Instant::now();
    drop(m1); // SIGKILL: no shutdown path runs
    let (next, api_next) = until("a new leader", &[&m2, &m3], || async {
        for (name, api) in [("m2", api2), ("m3", api3)] {
            if leads(api, "notify").await? {
                return Some((name, api));
            }
        }
        None
    })
    .await;
    let takeover = killed.elapsed();
    println!("{next} took the notify lease over {takeover:?} after the kill (lease {LEASE:?})");
    assert!(
        takeover <= LEASE + LEASE / 3 + Duration::from_secs(1),
        "takeover took {takeover:?}"
    );
    until("the failover lease taken over", &[&m2, &m3], || async {
        let mut n = 0;
        for api in [api2, api3] {
            n += u32::from(leads(api, FAILOVER_LEASE).await?);
        }
        (n == 1).then_some(())
    })
    .await;

    // Updates go on from the new leader, then the primary recovers and RESOLVED arrives.
    until("an update from the new leader", &[&m2, &m3], || async {
        (keys(&log).len() > before_kill + 1).then_some(())
    })
    .await;
    faults(a, r#"{"error_rate": 0.0}"#).await;
    until("RESOLVED", &[&m2, &m3], || async {
        keys(&log)
            .iter()
            .any(|k| k.contains(":resolved@"))
            .then_some(())
    })
    .await;

    let got = keys(&log);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for k in &got {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    println!(
        "{} messages, {} distinct keys, repeated: {twice:?}",
        got.len(),
        counts.len()
    );
    assert!(
        twice.len() <= 1 && twice.iter().all(|(_, &n)| n == 2),
        "only the message in flight at the kill may repeat (same key): {twice:?}\nall: {got:?}"
    );
    // Updates are numbered: none is missing between the first and the last.
    let updates: Vec<u64> = counts
        .keys()
        .filter_map(|k| k.split(":update:").nth(1)?.split('@').next()?.parse().ok())
        .collect();
    if let (Some(lo), Some(hi)) = (updates.iter().min(), updates.iter().max()) {
        for n in *lo..=*hi {
            assert!(updates.contains(&n), "update {n} lost: {got:?}");
        }
    }
    let hooks = hook_calls(&log);
    assert_eq!(hooks.len(), 1, "one switch, one hook call: {hooks:?}");
    assert_eq!(hooks[0]["reason"], "active_down");
    for api in [api2, api3] {
        assert_eq!(
            active(api).await,
            Some(Some(1)),
            "manual failback: still on the backup"
        );
    }
    assert_eq!(
        hook_calls(&log).len(),
        1,
        "the new leader did not switch again"
    );
    // The leases as the new leader shows them: it holds `notify`, in a later epoch than m1's.
    let v = get_json(api_next, "/api/v1/cluster/leases")
        .await
        .expect("/api/v1/cluster/leases");
    assert_eq!(v["member"], next);
    let notify = v["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .find(|l| l["name"] == "notify")
        .expect("the notify lease")
        .clone();
    assert_eq!(notify["holder"], next, "{v}");
    assert!(notify["epoch"].as_i64() >= Some(2), "a new epoch: {v}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_postgres_stops_within_its_lease_and_traffic_switches_once() {
    let pg = database();
    let db = pg.url("wf");
    let dir = tempfile::tempdir().expect("temp dir");
    let cancel = CancellationToken::new();
    let relay = Relay::start(pg.port, cancel.clone()).await;
    let (rx, log) = receiver(cancel.clone()).await;
    let (sim_a, a) = sim(dir.path(), "sim-a");
    let (sim_b, b) = sim(dir.path(), "sim-b");
    std::fs::write(dir.path().join("watchfire.yml"), config(a, b, rx)).expect("config");

    // m1 reaches the database through the relay, m2 directly.
    let (m1, api1) = member(dir.path(), "m1", &relay.url());
    until("m1 to lead", &[&m1], || async {
        let both = leads(api1, "notify").await? && leads(api1, FAILOVER_LEASE).await?;
        both.then_some(())
    })
    .await;
    let (m2, api2) = member(dir.path(), "m2", &db);
    let all = [&m1, &m2, &sim_a, &sim_b];
    for api in [api1, api2] {
        until("both members on the primary", &all, || async {
            (active(api).await? == Some(0)).then_some(())
        })
        .await;
    }
    assert_eq!(leads(api2, FAILOVER_LEASE).await, Some(false));

    // Cut m1 off. It must stop leading within its lease, and never while m2 leads.
    relay.cut();
    let cut = Instant::now();
    let stopped = Arc::new(Mutex::new(None));
    let m2_started = until("m2 to take over", &all, || {
        let stopped = stopped.clone();
        async move {
            let (one, two) = (
                leads(api1, FAILOVER_LEASE).await?,
                leads(api2, FAILOVER_LEASE).await?,
            );
            assert!(
                !(one && two),
                "two leaders at once, {:?} after the cut",
                cut.elapsed()
            );
            let mut stopped = stopped.lock().expect("stopped");
            if !one && stopped.is_none() {
                *stopped = Some(cut.elapsed());
            }
            two.then(|| cut.elapsed())
        }
    })
    .await;
    let m1_stopped = stopped
        .lock()
        .expect("stopped")
        .expect("m1 stopped before m2 started");
    println!("cut off: m1 stopped leading {m1_stopped:?} after the cut, m2 led from {m2_started:?} (lease {LEASE:?})");
    assert!(m1_stopped <= LEASE, "m1 led {m1_stopped:?} after the cut");
    assert!(m1_stopped <= m2_started);
    until("m1 to give up notify too", &all, || async {
        (!leads(api1, "notify").await?).then_some(())
    })
    .await;

    // The primary fails: the new leader switches, once; m1, cut off, does not switch by itself.
    faults(a, r#"{"error_rate": 1.0}"#).await;
    until("m2 on the backup", &all, || async {
        (active(api2).await? == Some(1)).then_some(())
    })
    .await;
    until("the hook", &all, || async {
        (!hook_calls(&log).is_empty()).then_some(())
    })
    .await;
    // Give m1 time to act wrongly: several of its check intervals past its down decision.
    let grace = Instant::now() + Duration::from_secs(2);
    common::poll_until(Duration::from_secs(3), || async {
        (Instant::now() >= grace).then_some(())
    })
    .await;
    assert_eq!(
        active(api1).await,
        Some(Some(0)),
        "m1 cannot read the decision and does not switch by itself"
    );
    let hooks = hook_calls(&log);
    assert_eq!(hooks.len(), 1, "one switch, by the leader: {hooks:?}");
    cancel.cancel();
}
