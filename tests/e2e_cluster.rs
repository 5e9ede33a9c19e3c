//! A cluster of real `watchfire run` processes sharing one PostgreSQL (`cargo test --features
//! e2e --test e2e_cluster`; `.ci/run` installs PostgreSQL).
//!
//! Four members probe the same targets (every 1 s, one in-process sim) with a 2 s lease:
//! - r = 1: the members split the targets with no overlap once membership settles; after a
//!   `kill -9` of one member, each of its targets is probed again by a survivor within the
//!   lease plus one interval, measured per target, and resumes its stored state (never
//!   `unknown`); the restarted member takes back exactly its old share.
//! - r = 2: after a `kill -9`, no target goes unprobed at any moment.
//! - A malformed or unreachable `--cluster` URL, and a second live member with the same id,
//!   refuse to start with a clear message and no password.
//!
//! Targets: `WATCHFIRE_E2E_CLUSTER_TARGETS` (default 400: four debug-build members, the sim
//! and PostgreSQL share this 2-vCPU machine; see the README's Cluster section).
//!
//! Missing programs fail the test loudly. Loopback only, ports from 127.0.0.1:0, deadlines
//! instead of sleeps, every child killed by a drop guard.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/procs.rs"]
mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use pg::Pg;
use procs::{free_port, Proc};
use serde_json::Value;
use watchfire::sim::{FaultConfig, Sim};

const INTERVAL: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(2);
const MEMBERS: usize = 4;

/// One test at a time: each runs four members.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn targets() -> usize {
    std::env::var("WATCHFIRE_E2E_CLUSTER_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

fn config(sim: SocketAddr, n: usize) -> String {
    let mut s = String::from(
        "defaults:\n  interval: 1s\n  timeout: 500ms\n  down_after: 2\n  up_after: 1\n\
         metrics:\n  detail: minimal\ntargets:\n",
    );
    for i in 0..n {
        let _ = writeln!(s, "  - name: t{i:05}\n    url: http://{sim}/health");
    }
    s
}

/// One member: its process and API address.
struct Member {
    id: String,
    addr: SocketAddr,
    proc: Proc,
}

fn member_args(dir: &Path, url: &str, id: &str, addr: SocketAddr, r: usize) -> Vec<String> {
    [
        "run",
        "--config",
        &dir.join("targets.yaml").display().to_string(),
        "--listen",
        &addr.to_string(),
        "--cluster",
        url,
        "--cluster.id",
        id,
        "--cluster.lease",
        "2s",
        "--cluster.replication",
        &r.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(dir: &Path, url: &str, k: usize, r: usize) -> Member {
    let id = format!("m{k}");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    const NAMES: [&str; MEMBERS] = ["m0", "m1", "m2", "m3"];
    let proc = Proc::spawn(
        NAMES[k],
        env!("CARGO_BIN_EXE_watchfire"),
        &member_args(dir, url, &id, addr, r),
        dir,
    );
    Member { id, addr, proc }
}

async fn json(addr: SocketAddr, path: &str) -> Option<Value> {
    let (status, body) = text(addr, path).await?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// GET `path` on a fresh connection: status and body, `None` when the member does not answer
/// within 5 s (it may be starting, or killed).
async fn text(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// A target as a member reports it: probes run, ticks skipped, when the last probe ended and
/// how, and the decided state.
#[derive(Debug, Clone)]
struct Seen {
    probes: u64,
    skipped: u64,
    last: Option<SystemTime>,
    result: String,
    state: String,
}

fn rfc3339(v: &Value) -> Option<SystemTime> {
    let ts: jiff::Timestamp = v.as_str()?.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ts.as_nanosecond()).ok()?))
}

async fn targets_of(m: &Member) -> Option<BTreeMap<String, Seen>> {
    let v = json(m.addr, "/api/v1/targets").await?;
    Some(
        v.as_array()?
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or_default().to_string(),
                    Seen {
                        probes: t["probes"].as_u64().unwrap_or(0),
                        skipped: t["skipped"].as_u64().unwrap_or(0),
                        last: rfc3339(&t["last_probe"]),
                        result: t["last_result"].as_str().unwrap_or("none").to_string(),
                        state: t["state"].as_str().unwrap_or_default().to_string(),
                    },
                )
            })
            .collect(),
    )
}

/// Each member's target names, once every member answers.
async fn shares(ms: &[&Member]) -> Option<Vec<BTreeSet<String>>> {
    let mut out = Vec::new();
    for m in ms {
        out.push(targets_of(m).await?.into_keys().collect());
    }
    Some(out)
}

/// Whether every member sees `n` live members.
async fn all_see(ms: &[&Member], n: usize) -> bool {
    for m in ms {
        match json(m.addr, "/api/v1/cluster").await {
            Some(v) if v["members"].as_array().map(Vec::len) == Some(n) => {}
            _ => return false,
        }
    }
    true
}

/// Whether `shares` split `n` targets with each owned by exactly `r` of them.
fn split(shares: &[BTreeSet<String>], n: usize, r: usize) -> bool {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for s in shares {
        for t in s {
            *count.entry(t).or_default() += 1;
        }
    }
    count.len() == n && count.values().all(|c| *c == r)
}

async fn start_cluster(dir: &Path, url: &str, r: usize) -> Vec<Member> {
    // The first member alone, so the store's schema is made once.
    let first = spawn(dir, url, 0, r);
    let limit = Duration::from_secs(60);
    answers(&first).await;
    let mut ms = vec![first];
    for k in 1..MEMBERS {
        ms.push(spawn(dir, url, k, r));
    }
    let refs: Vec<&Member> = ms.iter().collect();
    let ok = common::poll_until(limit, || async {
        all_see(&refs, MEMBERS).await.then_some(())
    })
    .await;
    assert!(ok.is_some(), "four members: {}", tails(&ms));
    ms
}

/// Waits for `m` to answer `/api/v1/cluster`; panics with its log after a minute.
async fn answers(m: &Member) {
    let up = common::poll_until(Duration::from_secs(60), || async {
        json(m.addr, "/api/v1/cluster").await.map(|_| ())
    })
    .await;
    assert!(up.is_some(), "{} never answered: {}", m.id, m.proc.tail());
}

/// What the members report, summed: targets by state and last result, probes, skipped ticks.
async fn census(ms: &[Member]) -> String {
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut probes, mut skipped) = (0, 0);
    for m in ms {
        let Some(seen) = targets_of(m).await else {
            return format!("{} does not answer", m.id);
        };
        for s in seen.values() {
            *by.entry((s.state.clone(), s.result.clone())).or_default() += 1;
            probes += s.probes;
            skipped += s.skipped;
        }
    }
    format!("targets by (state, last result) {by:?}; {probes} probes, {skipped} ticks skipped")
}

fn tails(ms: &[Member]) -> String {
    ms.iter()
        .map(|m| m.proc.tail())
        .collect::<Vec<_>>()
        .join("\n")
}

fn setup() -> (tempfile::TempDir, Pg, String) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let pg = Pg::start();
    pg.sql("CREATE DATABASE cluster");
    let url = pg.url("cluster");
    (tmp, pg, url)
}

async fn sim_and_config(dir: &Path, n: usize) -> Sim {
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .expect("sim");
    std::fs::write(dir.join("targets.yaml"), config(sim.local_addr(), n)).expect("config");
    sim
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_members_targets_move_within_a_lease_and_come_back_on_restart() {
    let _one = SERIAL.lock().await;
    let n = targets();
    let (tmp, _pg, url) = setup();
    let dir = tmp.path();
    let _sim = sim_and_config(dir, n).await;
    let mut ms = start_cluster(dir, &url, 1).await;

    // Settled: each target on exactly one member, and all of them up.
    let refs: Vec<&Member> = ms.iter().collect();
    let before = common::poll_until(Duration::from_secs(30), || async {
        let s = shares(&refs).await?;
        split(&s, n, 1).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("the members never split the targets: {}", tails(&ms)));
    let sizes: Vec<usize> = before.iter().map(BTreeSet::len).collect();
    println!("{n} targets over {MEMBERS} members: {sizes:?}");
    for s in &sizes {
        assert!(*s > n / MEMBERS / 2 && *s < n * 2 / MEMBERS, "{sizes:?}");
    }
    let all_up = common::poll_until(Duration::from_secs(30), || async {
        let mut up = 0;
        for m in &ms {
            up += targets_of(m)
                .await?
                .values()
                .filter(|t| t.state == "up")
                .count();
        }
        (up == n).then_some(())
    })
    .await;
    if all_up.is_none() {
        panic!(
            "not every target up after 30 s: {}\n{}",
            census(&ms).await,
            tails(&ms)
        );
    }

    // kill -9 the second member (Proc's drop sends SIGKILL and reaps it).
    let victim = ms.remove(1);
    let victim_id = victim.id.clone();
    let theirs = before[1].clone();
    let killed = SystemTime::now();
    drop(victim);
    let delays: std::cell::RefCell<BTreeMap<String, Duration>> = Default::default();
    let limit = LEASE + INTERVAL + Duration::from_secs(10);
    let done = common::poll_until(limit, || {
        let (ms, theirs, delays) = (&ms, &theirs, &delays);
        async move {
            for m in ms {
                let seen = targets_of(m).await?;
                let mut delays = delays.borrow_mut();
                for t in theirs {
                    let Some(s) = seen.get(t) else { continue };
                    if delays.contains_key(t) || s.probes == 0 {
                        continue;
                    }
                    assert_ne!(
                        s.state, "unknown",
                        "{t} on {}: its stored state was not resumed",
                        m.id
                    );
                    let last = s.last.expect("a probed target has a last probe");
                    // The new owner's first probe: its ticks (probed or skipped) ran at its
                    // interval since.
                    let first = last - INTERVAL * (s.probes + s.skipped - 1) as u32;
                    delays.insert(t.clone(), first.duration_since(killed).unwrap_or_default());
                }
            }
            (delays.borrow().len() == theirs.len()).then_some(())
        }
    })
    .await;
    let delays = delays.into_inner();
    assert!(
        done.is_some(),
        "{} of {} targets of {victim_id} were not probed again within {limit:?}: {}",
        theirs.len() - delays.len(),
        theirs.len(),
        tails(&ms)
    );
    let mut d: Vec<Duration> = delays.values().copied().collect();
    d.sort();
    let (p50, p99, max) = (quantile(&d, 0.5), quantile(&d, 0.99), *d.last().unwrap());
    println!(
        "kill -9 {victim_id}: {} targets probed again after p50 {p50:?}, p99 {p99:?}, max {max:?} (lease {LEASE:?} + interval {INTERVAL:?})",
        d.len()
    );
    assert!(
        max <= LEASE + INTERVAL,
        "slowest take-over {max:?}: {}",
        tails(&ms)
    );

    // The survivors split every target between them.
    let refs: Vec<&Member> = ms.iter().collect();
    common::eventually(
        Duration::from_secs(10),
        "three members splitting the targets",
        || async {
            let s = shares(&refs).await?;
            split(&s, n, 1).then_some(())
        },
    )
    .await;

    // Restart it under the same id: once every member sees four, the overlap ends within an
    // interval, and every member's share is what it was.
    ms.insert(1, spawn(dir, &url, 1, 1));
    let refs: Vec<&Member> = ms.iter().collect();
    common::eventually(Duration::from_secs(60), "four members again", || async {
        all_see(&refs, MEMBERS).await.then_some(())
    })
    .await;
    let settled = tokio::time::Instant::now();
    let after = common::poll_until(Duration::from_secs(10), || async {
        let s = shares(&refs).await?;
        split(&s, n, 1).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("no clean split after the restart: {}", tails(&ms)));
    let overlap = settled.elapsed();
    println!("after the restart: no target on two members {overlap:?} after membership settled");
    assert!(
        overlap <= INTERVAL,
        "targets on two members for {overlap:?}"
    );
    assert_eq!(after, before, "each member owns exactly its old share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_a_killed_member_leaves_no_target_unprobed() {
    let _one = SERIAL.lock().await;
    let n = targets();
    let (tmp, _pg, url) = setup();
    let dir = tmp.path();
    let _sim = sim_and_config(dir, n).await;
    let mut ms = start_cluster(dir, &url, 2).await;
    let refs: Vec<&Member> = ms.iter().collect();
    common::poll_until(Duration::from_secs(30), || async {
        let s = shares(&refs).await?;
        split(&s, n, 2).then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the members never split the targets twice over: {}",
            tails(&ms)
        )
    });
    // Every target probed by its two owners for a few intervals first.
    common::eventually(Duration::from_secs(30), "every target probed", || async {
        let mut probed = BTreeSet::new();
        for m in &ms {
            for (t, s) in targets_of(m).await? {
                if s.probes >= 2 {
                    probed.insert(t);
                }
            }
        }
        (probed.len() == n).then_some(())
    })
    .await;

    let victim = ms.remove(2);
    drop(victim);
    let killed = tokio::time::Instant::now();
    // Until well past the lease: at every look (each survivor's `/metrics`), the last time any
    // survivor's probe count of each target grew is recent.
    let mut counts: BTreeMap<(usize, String), f64> = BTreeMap::new();
    let mut grew: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    let (mut worst, mut looks, mut slowest_look) = (Duration::ZERO, 0, Duration::ZERO);
    while killed.elapsed() < LEASE + INTERVAL * 4 {
        let look = tokio::time::Instant::now();
        for (k, m) in ms.iter().enumerate() {
            let (_, text) = text(m.addr, "/metrics")
                .await
                .unwrap_or_else(|| panic!("{} answers: {}", m.id, tails(&ms)));
            for (t, c) in probe_counts(&text) {
                let before = counts.insert((k, t.clone()), c);
                if before.is_none_or(|b| c > b) {
                    grew.insert(t, look);
                }
            }
        }
        slowest_look = slowest_look.max(look.elapsed());
        if looks > 0 {
            assert_eq!(grew.len(), n, "every target is on a survivor");
            for at in grew.values() {
                worst = worst.max(look.duration_since(*at));
            }
        }
        looks += 1;
        tokio::time::sleep(common::POLL_EVERY * 10).await;
    }
    println!(
        "r=2, kill -9: {looks} looks (slowest {slowest_look:?}); the longest a target went without a new probe on any survivor: {worst:?}"
    );
    // Probed every interval: a target whose count did not grow for two intervals missed one.
    assert!(
        worst <= INTERVAL * 2 + slowest_look,
        "a target went {worst:?} without a probe"
    );
}

/// `watchfire_probes_total` per target (every result summed) from a `/metrics` text.
fn probe_counts(metrics: &str) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("watchfire_probes_total{") else {
            continue;
        };
        let Some(t) = rest
            .split("target=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(t.to_string()).or_default() += v;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cluster_urls_and_duplicate_ids_refuse_to_start() {
    let _one = SERIAL.lock().await;
    let (tmp, _pg, url) = setup();
    let dir = tmp.path();
    let _sim = sim_and_config(dir, 10).await;
    let run = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_watchfire"))
            .args(args)
            .current_dir(dir)
            .output()
            .expect("watchfire runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
    let closed = format!("postgres://u:hunter2@127.0.0.1:{}/x", free_port());
    for (bad, says) in [
        (closed.as_str(), "cannot reach the cluster database"),
        (
            "mysql://u:hunter2@127.0.0.1/x",
            "is not a usable PostgreSQL URL",
        ),
    ] {
        let (code, err) = run(member_args(dir, bad, "x", addr(), 1));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    let first = spawn(dir, &url, 0, 1);
    answers(&first).await;
    let (code, err) = run(member_args(dir, &url, "m0", addr(), 1));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("another live member already has --cluster.id \"m0\""),
        "{err}"
    );
    assert!(!err.contains(pg::PASSWORD), "{err}");
    // The cluster metrics and API of the live one.
    let (_, metrics) = text(first.addr, "/metrics")
        .await
        .unwrap_or_else(|| panic!("/metrics: {}", first.proc.tail()));
    assert_eq!(
        common::sample(&metrics, "watchfire_cluster_members"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        common::sample(&metrics, "watchfire_cluster_database_up"),
        Some(1.0)
    );
    assert_eq!(
        common::sample(&metrics, "watchfire_cluster_owned_targets"),
        Some(10.0)
    );
    assert!(metrics.contains("instance_id=\"m0\""), "{metrics}");
    let v = json(first.addr, "/api/v1/cluster")
        .await
        .expect("cluster JSON");
    assert_eq!(v["id"], "m0");
    assert_eq!(v["members"][0]["owned_targets"], 10);
}
