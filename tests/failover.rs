//! Failover end to end: real sim processes killed under load, failback with hold time, a flapping
//! primary, all instances down, hooks, bad backends, bad configs.

mod common;
#[path = "common/failover.rs"]
mod fixture;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use fixture::{free_addr, start_gw, wait_listening, SimProcess};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::failover::Group;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};

fn group_yaml(primary: &str, backup: &str, extra: &str) -> String {
    format!(
        "failover:\n  - name: gw\n    instances: [{primary}, {backup}]\n    check: {{ path: /health, interval: 200ms, timeout: 150ms }}\n    down_after: 3\n    up_after: 2\n    hold: 1s\n    min_switch_interval: 500ms\n    proxy: {{ listen: \"127.0.0.1:0\", retry_after: 7s }}\n{extra}"
    )
}

async fn start(yaml: &str) -> (Arc<Runtime>, Arc<Group>, SocketAddr, CancellationToken) {
    start_gw(yaml, RuntimeOptions::default()).await
}

/// A keep-alive client to the proxy.
struct Client(http1::SendRequest<Full<Bytes>>);

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to proxy");
        let (tx, conn) = http1::handshake(TokioIo::new(s)).await.expect("handshake");
        tokio::spawn(conn);
        Client(tx)
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &'static str,
    ) -> Result<(u16, String), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.test")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request");
        self.0.ready().await.map_err(|e| e.to_string())?;
        let resp = self.0.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            code,
            format!("{retry_after}|{}", String::from_utf8_lossy(&body)),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_under_load_fails_no_request_and_fails_back_after_the_hold() {
    let (pa, ba) = (free_addr(), free_addr());
    let mut primary = SimProcess::start(pa, &[]);
    let _backup = SimProcess::start(ba, &[]);
    wait_listening(pa).await;
    wait_listening(ba).await;
    let (rt, g, proxy, cancel) = start(&group_yaml(
        &format!("http://{pa}"),
        &format!("http://{ba}"),
        "",
    ))
    .await;
    eventually(Duration::from_secs(5), "primary up", || async {
        (g.health(0) == watchfire::state::Health::Up).then_some(())
    })
    .await;

    // Bounded load: 4 keep-alive clients alternating GET /health and POST /predict, paced,
    // until told to stop (at most 20,000 requests in all).
    let gate = Arc::new(RwLock::new(()));
    let stop = CancellationToken::new();
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for c in 0..4 {
        let (gate, stop, ok, failed) = (gate.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let mut client = Client::connect(proxy).await;
            let mut errors = Vec::new();
            for i in 0..5000u32 {
                if stop.is_cancelled() {
                    break;
                }
                let r = {
                    let _in_flight = gate.read().await;
                    if (i + c) % 2 == 0 {
                        client.send("GET", "/health", "").await
                    } else {
                        client
                            .send("POST", "/predict", r#"{"data": [[1, 2, 3, 4]]}"#)
                            .await
                    }
                };
                match r {
                    Ok((200, _)) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{other:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            errors
        }));
    }
    eventually(Duration::from_secs(5), "load flowing", || async {
        (ok.load(Ordering::Relaxed) > 200).then_some(())
    })
    .await;

    // The kill lands between requests: a request already inside a process that dies cannot be
    // saved unless it is idempotent (tested below); every request after the kill must be.
    let killed_at = {
        let _all = gate.write().await;
        primary.kill();
        Instant::now()
    };
    let switched = eventually(Duration::from_secs(5), "traffic on the backup", || async {
        (g.active() == Some(1)).then(Instant::now)
    })
    .await;
    let ok_at_kill = ok.load(Ordering::Relaxed);
    eventually(
        Duration::from_secs(5),
        "backup serving the load",
        || async { (ok.load(Ordering::Relaxed) > ok_at_kill + 300).then_some(()) },
    )
    .await;
    println!("kill → switch: {:?}", switched - killed_at);
    assert!(
        switched - killed_at < Duration::from_millis(200 * 3 + 150 + 200),
        "switch took {:?}",
        switched - killed_at
    );
    assert!(
        g.proxy.requests(Some(1), 200) > 300,
        "the backup took the traffic"
    );

    // The primary comes back: traffic returns only after up_after successes and the 1 s hold.
    let restarted_at = Instant::now();
    let _primary = SimProcess::start(pa, &[]);
    let failback = eventually(Duration::from_secs(10), "failback", || async {
        (g.active() == Some(0)).then(Instant::now)
    })
    .await;
    println!("restart → failback: {:?}", failback - restarted_at);
    assert!(
        failback - restarted_at >= Duration::from_secs(1),
        "failback came before the hold time: {:?}",
        failback - restarted_at
    );
    let json = g.json();
    let reasons: Vec<&str> = json.history.iter().map(|h| h.reason).collect();
    assert_eq!(
        reasons,
        ["initial", "active_down", "failback"],
        "{:#?}",
        json.history
    );
    assert!(json.history[1].detail.is_some(), "the switch says why");
    let before = g.proxy.requests(Some(0), 200);
    eventually(Duration::from_secs(5), "primary serving again", || async {
        (g.proxy.requests(Some(0), 200) > before + 100).then_some(())
    })
    .await;

    stop.cancel();
    for l in load {
        let errors = l.await.expect("load task");
        assert!(errors.is_empty(), "client requests failed: {errors:?}");
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 1000);
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_inside_a_dying_primary_is_replayed_only_when_idempotent() {
    let (pa, ba) = (free_addr(), free_addr());
    // Every answer of the primary takes 400 ms; its checks (1 s timeout) still pass.
    let mut primary = SimProcess::start(pa, &["--slow", "400ms"]);
    let _backup = SimProcess::start(ba, &[]);
    wait_listening(pa).await;
    wait_listening(ba).await;
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{pa}, http://{ba}]\n    check: {{ path: /health, interval: 2s, timeout: 1s }}\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n"
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    let mut get = Client::connect(proxy).await;
    let mut post = Client::connect(proxy).await;
    let get_req = tokio::spawn(async move { get.send("GET", "/health", "").await });
    let post_req =
        tokio::spawn(async move { post.send("POST", "/predict", r#"{"data": [[1]]}"#).await });
    // Both are inside the primary (it holds them 400 ms); kill it.
    eventually(
        Duration::from_secs(5),
        "both requests in flight",
        || async { (g.proxy.in_flight() == 2).then_some(()) },
    )
    .await;
    primary.kill();
    let (code, _) = get_req.await.unwrap().expect("GET answered");
    assert_eq!(code, 200, "an idempotent GET is replayed on the backup");
    let (code, body) = post_req.await.unwrap().expect("POST answered");
    assert_eq!(
        code, 502,
        "a POST that may have reached the primary is not resent: {body}"
    );
    assert_eq!(g.proxy.retries().1, 1, "one replay");
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_primary_switches_no_more_than_the_minimum_interval_allows() {
    let primary = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let yaml = group_yaml(
        &format!("http://{}", primary.local_addr()),
        &format!("http://{}", backup.local_addr()),
        "",
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    eventually(Duration::from_secs(5), "primary up", || async {
        (g.health(0) == watchfire::state::Health::Up).then_some(())
    })
    .await;
    // Flap every 200 ms for 4 s, with a request through the proxy every 20 ms (passive detection
    // sees every down phase).
    let mut client = Client::connect(proxy).await;
    let start_t = Instant::now();
    let mut down = false;
    let mut next_flip = start_t;
    let mut failures = 0;
    while start_t.elapsed() < Duration::from_secs(4) {
        if Instant::now() >= next_flip {
            if down {
                primary.come_up().expect("come up");
            } else {
                primary.go_down();
            }
            down = !down;
            next_flip += Duration::from_millis(200);
        }
        match client.send("GET", "/health", "").await {
            Ok((200, _)) => {}
            _ => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let switches = g.json().transitions;
    // Forced switches follow real failures; failbacks need the 1 s hold and 500 ms spacing.
    let allowed = 1 + 2 * (4_000 / 500);
    println!(
        "flapping for 4 s: {switches} switches (allowed {allowed}), {failures} failed requests"
    );
    assert!(switches <= allowed, "{switches} switches");
    assert!(
        switches <= 3,
        "a primary never up for the hold time gets no failback: {switches}"
    );
    assert_eq!(failures, 0, "no client error while the primary flaps");
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_instances_down_answers_503_with_retry_after_at_once() {
    let primary = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let yaml = group_yaml(
        &format!("http://{}", primary.local_addr()),
        &format!("http://{}", backup.local_addr()),
        "",
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    primary.go_down();
    backup.go_down();
    eventually(Duration::from_secs(5), "both instances down", || async {
        let down = watchfire::state::Health::Down;
        (g.health(0) == down && g.health(1) == down && g.active().is_none()).then_some(())
    })
    .await;
    let mut client = Client::connect(proxy).await;
    let t = std::time::Instant::now();
    let (code, body) = client.send("POST", "/predict", "{}").await.expect("answer");
    let took = t.elapsed();
    assert_eq!(code, 503);
    assert!(
        body.starts_with("7|"),
        "Retry-After: 7 (configured): {body}"
    );
    assert!(took < Duration::from_millis(50), "503 took {took:?}");
    let m = watchfire::server::metrics_body(&rt, &prometheus::Registry::new());
    assert_eq!(
        common::sample(&m, "watchfire_failover_available{group=\"gw\"}"),
        Some(0.0)
    );
    assert!(
        common::sample(
            &m,
            "watchfire_proxy_requests_total{group=\"gw\",instance=\"none\",code=\"503\"}"
        )
        .unwrap()
            >= 1.0
    );
    backup.come_up().unwrap();
    eventually(Duration::from_secs(5), "backup takes traffic", || async {
        (g.active() == Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        client.send("GET", "/health", "").await.expect("answer").0,
        200
    );
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
}

/// A webhook receiver that fails its first `fail_first` requests.
async fn webhook(fail_first: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let n = h.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = s.read(&mut buf).await;
                let status = if n < fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_is_killed_and_the_webhook_retried_without_delaying_the_switch() {
    let primary = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let (hook_addr, hits) = webhook(2).await;
    let extra = format!(
        "    hooks:\n      exec: {{ command: [sleep, \"30\"], timeout: 300ms }}\n      webhook: {{ url: \"http://{hook_addr}/switch\", timeout: 1s, retries: 3 }}\n"
    );
    let yaml = group_yaml(
        &format!("http://{}", primary.local_addr()),
        &format!("http://{}", backup.local_addr()),
        &extra,
    );
    let (rt, g, _proxy, cancel) = start(&yaml).await;
    eventually(Duration::from_secs(5), "primary up", || async {
        (g.health(0) == watchfire::state::Health::Up).then_some(())
    })
    .await;
    let t = Instant::now();
    primary.go_down();
    eventually(Duration::from_secs(5), "switch", || async {
        (g.active() == Some(1)).then_some(())
    })
    .await;
    let switch_took = t.elapsed();
    assert!(
        switch_took < Duration::from_millis(1000),
        "the switch is not held up by hooks: {switch_took:?}"
    );
    eventually(
        Duration::from_secs(5),
        "exec hook killed at its timeout",
        || async {
            let s = g.hooks.exec.lock().unwrap().clone();
            (s.timed_out == 1).then_some(s)
        },
    )
    .await;
    let exec = g.hooks.exec.lock().unwrap().clone();
    assert_eq!(
        (exec.ok, exec.failed, exec.timed_out),
        (0, 0, 1),
        "a timed-out hook is counted once, as timed out: {exec:?}"
    );
    assert!(
        exec.last_duration_seconds >= 0.3 && exec.last_duration_seconds < 2.0,
        "{exec:?}"
    );
    let web = eventually(Duration::from_secs(10), "webhook delivered", || async {
        let s = g.hooks.webhook.lock().unwrap().clone();
        (s.ok == 1).then_some(s)
    })
    .await;
    assert_eq!(web.retries, 2, "{web:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_or_resetting_backend_costs_that_request_a_502_and_nothing_else() {
    // An instance that accepts, reads the request, and answers garbage.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.0\r\n\x00\x01garbage").await;
            });
        }
    });
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    // Checks are slow (2 s) so the garbage instance stays active for this test.
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{bad}, http://{}]\n    check: {{ path: /health, interval: 2s, timeout: 1s }}\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n",
        backup.local_addr()
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    let mut c = Client::connect(proxy).await;
    let (code, body) = c.send("POST", "/predict", "{}").await.expect("answer");
    assert_eq!(code, 502, "{body}");
    // The proxy keeps serving: a GET is replayed on the backup.
    let mut c2 = Client::connect(proxy).await;
    assert_eq!(c2.send("GET", "/health", "").await.expect("answer").0, 200);
    assert!(g.proxy.requests(Some(0), 502) >= 1);
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    backup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_added_and_host_is_preserved() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                if head.starts_with("GET /echo") {
                    let _ = tx.send(head).await;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{echo}]\n    check: {{ path: /health, interval: 1s, timeout: 500ms }}\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n"
    );
    let (rt, _g, proxy, cancel) = start(&yaml).await;
    let mut c = Client::connect(proxy).await;
    assert_eq!(c.send("GET", "/echo?x=1", "").await.expect("answer").0, 200);
    let head = rx.recv().await.expect("request seen").to_ascii_lowercase();
    assert!(head.starts_with("get /echo?x=1 http/1.1"), "{head}");
    assert!(head.contains("host: gateway.test"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(
        head.contains("forwarded: for=127.0.0.1;proto=http;host=\"gateway.test\""),
        "{head}"
    );
    assert!(head.contains("x-forwarded-host: gateway.test"), "{head}");
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_failover_configs_are_refused_with_their_place() {
    let dup =
        "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000, http://127.0.0.1:8000/]\n";
    let e = config::load_str("f.yaml", dup).expect_err("duplicate instance");
    assert!(
        e.0.iter().any(|e| e.field == "failover[0].instances[1]"
            && e.line == 3
            && e.message.contains("duplicate")),
        "{e}"
    );
    let none = "failover:\n  - name: gw\n    instances: []\n";
    let e = config::load_str("f.yaml", none).expect_err("no instances");
    assert!(
        e.0.iter().any(|e| e.field == "failover[0].instances"),
        "{e}"
    );
    let hook = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000]\n    hooks:\n      exec: { command: [/nonexistent/restart-backup.sh] }\n";
    let e = config::load_str("f.yaml", hook).expect_err("unreachable hook");
    assert!(
        e.0.iter()
            .any(|e| e.field == "failover[0].hooks.exec.command"
                && e.line == 5
                && e.message.contains("/nonexistent/restart-backup.sh")),
        "{e}"
    );
    // Dampening: a max_hold below hold, an unknown key, a bad duration; each named with its place.
    let damp = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000]\n    hold: 10s\n    dampening: { window: 5m, max_hold: 5s }\n";
    let e = config::load_str("f.yaml", damp).expect_err("max_hold below hold");
    assert!(
        e.0.iter()
            .any(|e| e.field == "failover[0].dampening.max_hold" && e.line == 5),
        "{e}"
    );
    let damp = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000]\n    dampening: { windw: 5m }\n";
    let e = config::load_str("f.yaml", damp).expect_err("unknown key");
    assert!(e.to_string().contains("windw"), "{e}");
    let damp = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000]\n    dampening: { window: soon }\n";
    let e = config::load_str("f.yaml", damp).expect_err("bad duration");
    assert!(
        e.0.iter()
            .any(|e| e.field == "failover[0].dampening.window"),
        "{e}"
    );
    let ok = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:8000]\n    hold: 2s\n";
    let g = &config::load_str("f.yaml", ok).expect("defaults").failover[0];
    assert_eq!(
        (g.dampening.window, g.dampening.max_hold),
        (Duration::from_secs(300), Duration::from_secs(300)),
        "dampening is on by default"
    );
    // A proxy port in use: a clear error naming group and address, nothing started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let yaml = format!("failover:\n  - name: gw\n    instances: [http://127.0.0.1:9]\n    proxy: {{ listen: \"{addr}\" }}\n");
    let cfg = config::load_str("f.yaml", &yaml).unwrap();
    let err = Runtime::start(
        cfg,
        None,
        RuntimeOptions::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("port in use");
    assert!(
        err.contains("gw") && err.contains(&addr.to_string()),
        "{err}"
    );
}

/// An HTTP/1.1 keep-alive backend that counts the connections that carried proxied requests
/// (any path but the health checks' `/health`) and those requests.
async fn counting_backend() -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (conns, reqs) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, r) = (conns.clone(), reqs.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (c, r) = (c.clone(), r.clone());
            let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    if req.uri().path() != "/health" {
                        r.fetch_add(1, Ordering::Relaxed);
                        if !counted.swap(true, Ordering::Relaxed) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, conns, reqs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_reuses_one_upstream_connection_and_follows_a_switch() {
    let (a, a_conns, a_reqs) = counting_backend().await;
    let (b, b_conns, b_reqs) = counting_backend().await;
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{a}, http://{b}]\n    check: {{ path: /health, interval: 100ms, timeout: 80ms }}\n    failback: manual\n    min_switch_interval: 0s\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n"
    );
    let (rt, g, proxy, cancel) = start(&yaml).await;
    eventually(Duration::from_secs(5), "both instances up", || {
        let g = g.clone();
        async move {
            (g.health(0) == watchfire::state::Health::Up
                && g.health(1) == watchfire::state::Health::Up)
                .then_some(())
        }
    })
    .await;

    // One client connection, 20 requests: one upstream connection carries them all.
    let mut c = Client::connect(proxy).await;
    for _ in 0..20 {
        assert_eq!(c.send("GET", "/x", "").await.expect("answer").0, 200);
    }
    let a_before = a_reqs.load(Ordering::Relaxed);
    assert_eq!(a_before, 20, "{a_before} requests reached the primary");
    assert_eq!(
        a_conns.load(Ordering::Relaxed),
        1,
        "one upstream connection"
    );

    // The client goes away: its upstream connection goes back to the pool for the next one.
    drop(c);
    let mut c = Client::connect(proxy).await;
    for _ in 0..5 {
        assert_eq!(c.send("GET", "/x", "").await.expect("answer").0, 200);
    }
    assert!(
        a_conns.load(Ordering::Relaxed) <= 2,
        "the pooled connection is reused (one new one at most, if it was not back yet)"
    );

    // Traffic moves: the same client connection's next requests go to the backup.
    g.manual_switch(1).expect("switch to the backup");
    for _ in 0..5 {
        assert_eq!(c.send("GET", "/x", "").await.expect("answer").0, 200);
    }
    assert_eq!(b_reqs.load(Ordering::Relaxed), 5);
    assert_eq!(b_conns.load(Ordering::Relaxed), 1);
    assert_eq!(
        a_reqs.load(Ordering::Relaxed),
        25,
        "nothing more on the primary"
    );
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
}
