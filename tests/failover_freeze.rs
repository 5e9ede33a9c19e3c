//! Failover under a frozen primary and under slow flapping: requests waiting on a primary that
//! was stopped (SIGSTOP: it accepts and never answers) end right after the switch — idempotent
//! ones on the backup, the others with a prompt 502 — and a primary that keeps failing and
//! recovering is dampened (each switch lengthens the hold before the next failback).

mod common;
#[path = "common/failover.rs"]
mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use fixture::{free_addr, start_gw, wait_listening, SimProcess};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchfire::failover::Group;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::state::Health;

async fn start(yaml: &str) -> (Arc<Runtime>, Arc<Group>, SocketAddr, CancellationToken) {
    start_gw(yaml, RuntimeOptions::default()).await
}

/// One request on a fresh connection to the proxy: status, and how long it took.
/// One request through the proxy on a fresh connection: its status and how long it took. With
/// `key`, it carries an `Idempotency-Key` (the client allows a second delivery).
async fn timed(
    proxy: SocketAddr,
    method: &str,
    body: &'static str,
    key: Option<&'static str>,
) -> (u16, Duration) {
    let t = Instant::now();
    let s = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect to proxy");
    let (mut tx, conn) = http1::handshake(TokioIo::new(s)).await.expect("handshake");
    tokio::spawn(conn);
    let path = if method == "GET" {
        "/health"
    } else {
        "/predict"
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gateway.test")
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let req = req
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    let resp = tx.send_request(req).await.expect("answered");
    let code = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (code, t.elapsed())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_inside_a_frozen_primary_end_right_after_the_switch() {
    let (pa, ba) = (free_addr(), free_addr());
    let primary = SimProcess::start(pa, &[]);
    let _backup = SimProcess::start(ba, &[]);
    wait_listening(pa).await;
    wait_listening(ba).await;
    // Checks every 100 ms, down after 3: the switch comes ~0.3-0.4 s after the freeze. The proxy
    // timeout stays at its 30 s default: nothing here may wait for it.
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{pa}, http://{ba}]\n    check: {{ path: /health, interval: 100ms, timeout: 80ms }}\n    down_after: 3\n    up_after: 2\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n"
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    eventually(Duration::from_secs(5), "primary up and active", || async {
        (g.health(0) == Health::Up && g.active() == Some(0)).then_some(())
    })
    .await;
    // Load across the freeze: 4 clients sending GETs one after another, for 1.5 s after it.
    let frozen_at = Instant::now();
    primary.freeze().await;
    let posts: Vec<_> = (0..2)
        .map(|_| tokio::spawn(timed(proxy, "POST", r#"{"data": [[1, 2, 3, 4]]}"#, None)))
        .collect();
    let keyed = tokio::spawn(timed(
        proxy,
        "POST",
        r#"{"data": [[1, 2, 3, 4]]}"#,
        Some("demo-1"),
    ));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while frozen_at.elapsed() < Duration::from_millis(1500) {
                    seen.push(timed(proxy, "GET", "", None).await);
                }
                seen
            })
        })
        .collect();
    let switched_at = common::poll_until(Duration::from_secs(10), || async {
        (g.active() == Some(1)).then(Instant::now)
    })
    .await
    .expect("traffic moves to the backup");
    let switch_time = switched_at - frozen_at;
    let mut gets = Vec::new();
    for c in clients {
        gets.extend(c.await.expect("client task"));
    }
    let bound = switch_time + Duration::from_millis(300);
    assert!(gets.iter().all(|(code, _)| *code == 200), "{gets:?}");
    let mut lat: Vec<Duration> = gets.iter().map(|(_, d)| *d).collect();
    lat.sort_unstable();
    let max = *lat.last().expect("some requests");
    println!(
        "frozen primary: switch {:.0} ms after SIGSTOP; {} GETs, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; replayed after the switch: {}",
        switch_time.as_secs_f64() * 1e3,
        lat.len(),
        quantile(&lat, 0.5).as_secs_f64() * 1e3,
        quantile(&lat, 0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        g.proxy.switch_retries(),
    );
    assert!(
        max <= bound,
        "an idempotent request costs at most the switch time ({switch_time:?}) + 300 ms: {max:?}"
    );
    assert!(
        g.proxy.switch_retries() >= 4,
        "the GETs in flight were resent"
    );
    for p in posts {
        let (code, took) = p.await.expect("post task");
        assert_eq!(
            code, 502,
            "a POST that may have reached the primary is not resent"
        );
        assert!(
            took <= bound,
            "a prompt 502, not the 30 s timeout: {took:?}"
        );
    }
    let (code, took) = keyed.await.expect("keyed post task");
    assert_eq!(
        code, 200,
        "a POST with an Idempotency-Key is replayed on the backup"
    );
    assert!(took <= bound, "replayed at the switch: {took:?}");
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}

/// Switches while the primary fails for 150 ms every 600 ms, 6 times, with dampening as `extra`
/// says; requests through the proxy meanwhile that did not get a 200.
async fn flapping(extra: &str) -> (u64, u64) {
    let primary = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{}, http://{}]\n    check: {{ path: /health, interval: 25ms, timeout: 20ms }}\n    down_after: 2\n    up_after: 1\n    hold: 150ms\n    min_switch_interval: 0s\n{extra}    proxy: {{ listen: \"127.0.0.1:0\" }}\n",
        primary.local_addr(),
        backup.local_addr()
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    eventually(Duration::from_secs(5), "primary up", || async {
        (g.health(0) == Health::Up && g.active() == Some(0)).then_some(())
    })
    .await;
    let t0 = Instant::now();
    let mut failed = 0;
    for cycle in 0..6u32 {
        let down_at = t0 + Duration::from_millis(600) * cycle + Duration::from_millis(450);
        let up_at = down_at + Duration::from_millis(150);
        for (at, down) in [(down_at, true), (up_at, false)] {
            // Requests through the proxy until the next change of the primary (paced: the
            // proxy's answer is the wait).
            while Instant::now() < at {
                if timed(proxy, "GET", "", None).await.0 != 200 {
                    failed += 1;
                }
            }
            if down {
                primary.go_down();
            } else {
                primary.come_up().expect("come up");
            }
        }
    }
    let switches = g.json().transitions;
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
    (switches, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowly_flapping_primary_is_dampened() {
    let (undamped, failed_undamped) = flapping("    dampening: { window: 0s }\n").await;
    let (damped, failed_damped) = flapping("    dampening: { window: 1m, max_hold: 10s }\n").await;
    println!(
        "primary failing 150 ms every 600 ms, 6 times: {undamped} switches without dampening, {damped} with it; failed requests {failed_undamped} / {failed_damped}"
    );
    assert!(
        undamped >= 8,
        "without dampening it follows every flap: {undamped}"
    );
    assert!(damped <= 4, "dampened: {damped} switches");
    assert_eq!(failed_damped, 0, "no client error while the primary flaps");
}
