//! The server under abuse and the control endpoints' intent (issue findings 1 and 2): slow
//! sockets and idle keep-alives past the connection cap do not starve `/-/healthy` and
//! `/metrics`; a flood of `/probe` to a hanging target is answered by each probe's deadline or
//! with a prompt 503 while `/metrics` keeps answering; cross-origin and form POSTs to reload
//! and failover are refused and change nothing; routes under a prefix on several listeners.
//! Counts are bounded (hundreds of sockets, not thousands) so the file runs in seconds; the
//! cap is lowered to match, so every test still pushes past it.

mod common;
#[path = "common/served.rs"]
mod served;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use served::{send, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use watchfire::server::admission::Limits;
use watchfire::server::ServeOptions;

/// The tests that load the machine (hundreds of sockets, a probe flood) take turns: run side by
/// side on two cores they would measure each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MODULES: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n";

fn opts(limits: Limits) -> ServeOptions {
    ServeOptions {
        limits,
        ..ServeOptions::default()
    }
}

/// Keeps `n` sockets open that send half a request header and stall; a socket the server
/// closes is opened again after half a second, as a slowloris client does. Returns how many
/// connections were made in all.
/// The sockets run on `on`: a runtime of their own, as an attacker is a process of its own.
fn slowloris(
    on: &tokio::runtime::Handle,
    addr: std::net::SocketAddr,
    n: usize,
    stop: CancellationToken,
) -> (Arc<AtomicUsize>, Vec<tokio::task::JoinHandle<()>>) {
    let made = Arc::new(AtomicUsize::new(0));
    let tasks = (0..n)
        .map(|_| {
            let made = made.clone();
            let stop = stop.clone();
            on.spawn(async move {
                while !stop.is_cancelled() {
                    if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                        made.fetch_add(1, Ordering::Relaxed);
                        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
                        let mut buf = [0u8; 256];
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = s.read(&mut buf) => {}
                        }
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            })
        })
        .collect();
    (made, tasks)
}

/// `/-/healthy` and `/metrics`, 20 rounds 50 ms apart, each answered 200 within a second
/// while `n` slow sockets are kept open against a server with `limits`.
async fn answers_under_slowloris(limits: Limits, n: usize) {
    let _turn = HEAVY.lock().await;
    let srv = Served::start(MODULES, opts(limits), 1).await;
    let stop = CancellationToken::new();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the slow clients' runtime");
    let (made, tasks) = slowloris(clients.handle(), srv.addr(), n, stop.clone());
    eventually(Duration::from_secs(10), "the slow sockets open", || {
        let made = made.clone();
        async move { (made.load(Ordering::Relaxed) >= n).then_some(()) }
    })
    .await;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for round in 0..20 {
        tick.tick().await;
        for path in ["/-/healthy", "/metrics"] {
            let a = send(srv.addr(), "GET", path, &[], Duration::from_secs(1))
                .await
                .unwrap_or_else(|e| panic!("{n} slow sockets, round {round}: {path}: {e}"));
            assert_eq!(a.status, 200, "round {round}: {path}: {}", a.body);
        }
    }
    stop.cancel();
    for t in tasks {
        t.await.expect("slow socket task");
    }
    clients.shutdown_background();
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_within_a_second_under_1500_slow_sockets() {
    // The default limits: the old server's 1,024 permits taken before accept() starved here.
    answers_under_slowloris(Limits::default(), 1500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_under_slow_sockets_past_the_connection_cap() {
    let limits = Limits {
        max_connections: 200,
        ..Limits::default()
    };
    answers_under_slowloris(limits, 600).await;
}

#[tokio::test]
async fn a_stalled_header_is_closed_after_the_header_timeout() {
    let limits = Limits {
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = Served::start(MODULES, opts(limits), 1).await;
    let mut s = tokio::net::TcpStream::connect(srv.addr()).await.unwrap();
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "the server closed the stalled connection");
    assert!(started.elapsed() < Duration::from_secs(2));
    srv.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_past_the_cap_do_not_block_scrapes() {
    let _turn = HEAVY.lock().await;
    let limits = Limits {
        max_connections: 64,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let srv = Served::start(MODULES, opts(limits), 1).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        let stream = tokio::net::TcpStream::connect(srv.addr()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::get("/-/healthy")
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let _ = sender.send_request(req).await;
        idle.push((sender, conn));
    }
    for i in 0..10 {
        let a = send(srv.addr(), "GET", "/metrics", &[], Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("scrape {i}: {e}"));
        assert_eq!(a.status, 200);
    }
    let closed = idle.iter().filter(|(_, c)| c.is_finished()).count();
    assert!(
        closed >= 36,
        "the longest idle connections made room ({closed} closed)"
    );
    let m = send(srv.addr(), "GET", "/metrics", &[], Duration::from_secs(1))
        .await
        .expect("/metrics");
    let counted = common::sample(
        &m.body,
        "watchfire_server_connections_closed_total{reason=\"idle\"}",
    )
    .expect("the closed-connection counter");
    assert!(
        counted >= closed as f64,
        "{counted} counted, {closed} closed"
    );
    drop(idle);
    srv.stop().await;
}

/// A target that accepts connections and never answers.
async fn hanging_target() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = watchfire::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_to_a_hanging_target_end_by_their_deadline_or_get_a_prompt_503() {
    let _turn = HEAVY.lock().await;
    // Bounded for a debug build sharing two cores with its own client: the full 1,500 run in
    // release is bench/abuse.sh's.
    const PROBES: usize = 150;
    const ADMITTED: usize = 100;
    let limits = Limits {
        max_probes: ADMITTED,
        ..Limits::default()
    };
    let srv = Served::start(MODULES, opts(limits), 1).await;
    let (target, hang) = hanging_target().await;
    let path = format!("/probe?module=http_2xx&target=http://{target}/");
    // Prometheus' scrape timeout 1.5 s − the 0.5 s offset: each probe's deadline is 1 s.
    let deadline = Duration::from_secs(1);
    // The bound is the deadline + 100 ms. The answers all fall due at the same instant
    // and are rendered one after another; an unoptimized build renders each several times
    // slower, so a debug test run gets 250 ms (bench/abuse.sh measures the release build).
    let margin = Duration::from_millis(if cfg!(debug_assertions) { 250 } else { 100 });
    let addr = srv.addr();
    // One probe first: the process loads the system's CA roots once, on the first probe, and
    // that one-time cost is not what this test measures.
    let warm = [("X-Prometheus-Scrape-Timeout-Seconds", "0.6")];
    let a = send(addr, "GET", &path, &warm, Duration::from_secs(5)).await;
    assert_eq!(a.expect("the warm-up probe").status, 200);
    let probes: Vec<_> = (0..PROBES)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                let hdr = [("X-Prometheus-Scrape-Timeout-Seconds", "1.5")];
                let a = send(addr, "GET", &path, &hdr, Duration::from_secs(5)).await;
                (a, start.elapsed())
            })
        })
        .collect();
    for i in 0..3 {
        let a = send(addr, "GET", "/metrics", &[], Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("/metrics {i} during the flood: {e}"));
        assert_eq!(a.status, 200);
    }
    let (mut answered, mut refused) = (0, 0);
    for p in probes {
        let (a, took) = p.await.expect("probe task");
        let a = a.unwrap_or_else(|e| panic!("a probe got no answer: {e}"));
        match a.status {
            200 => {
                answered += 1;
                assert!(a.body.contains("probe_success 0"), "{}", a.body);
                assert!(
                    took <= deadline + margin,
                    "answered after its deadline: {took:?}"
                );
            }
            503 => {
                refused += 1;
                assert_eq!(a.headers["retry-after"], "1");
                assert!(took < Duration::from_millis(500), "a slow 503: {took:?}");
            }
            s => panic!("unexpected status {s}: {}", a.body),
        }
    }
    assert_eq!(answered + refused, PROBES);
    assert!(answered >= ADMITTED / 2, "only {answered} admitted");
    assert!(refused >= PROBES - ADMITTED, "only {refused} refused");
    // Every prompt 503 is counted (process-wide: other tests of this binary may add to it).
    let m = send(addr, "GET", "/metrics", &[], Duration::from_secs(1))
        .await
        .expect("/metrics after the flood");
    let counted = common::sample(
        &m.body,
        "watchfire_server_requests_rejected_total{class=\"probe\"}",
    )
    .expect("the rejection counter");
    assert!(
        counted >= refused as f64,
        "{counted} counted, {refused} refused"
    );
    hang.abort();
    srv.stop().await;
}

fn group_yaml(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!(
        "{MODULES}failover:\n  - name: gw\n    instances: [http://{a}, http://{b}]\n    check: {{ path: /health, interval: 100ms, timeout: 80ms }}\n    up_after: 1\n"
    )
}

async fn sim() -> watchfire::sim::Sim {
    watchfire::sim::Sim::start(
        "127.0.0.1:0".parse().unwrap(),
        watchfire::sim::FaultConfig::default(),
    )
    .await
    .expect("sim starts")
}

#[tokio::test]
async fn cross_origin_and_form_posts_to_control_endpoints_are_refused_and_change_nothing() {
    let (a, b) = (sim().await, sim().await);
    let srv = Served::start(
        &group_yaml(a.local_addr(), b.local_addr()),
        ServeOptions::default(),
        1,
    )
    .await;
    let g = srv.runtime.failover_group("gw").expect("group");
    eventually(Duration::from_secs(5), "the primary chosen", || async {
        (g.json().active_index == Some(0)).then_some(())
    })
    .await;
    let before = g.json().transitions;
    let t = Duration::from_secs(5);
    let switch = "/api/v1/failover/gw/switch?to=1";
    let own = format!("http://{}", srv.addr());
    let refused: [&[(&str, &str)]; 4] = [
        &[("origin", "http://evil.example")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("content-type", "application/x-www-form-urlencoded")],
    ];
    for headers in refused {
        for path in [switch, "/-/reload"] {
            let r = send(srv.addr(), "POST", path, headers, t).await.unwrap();
            assert_eq!(r.status, 403, "{path} {headers:?}: {}", r.body);
        }
    }
    assert_eq!(g.json().active_index, Some(0), "nothing switched");
    assert_eq!(g.json().transitions, before);
    // curl -X POST (no Origin, no body) and a same-origin request are accepted.
    let r = send(srv.addr(), "POST", "/-/reload", &[], t).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let same = [("origin", own.as_str()), ("sec-fetch-site", "same-origin")];
    eventually(t, "a same-origin switch to the backup", || async {
        let r = send(srv.addr(), "POST", switch, &same, t).await.ok()?;
        (r.status == 200 && g.json().active_index == Some(1)).then_some(())
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn control_endpoints_can_be_turned_off() {
    let (a, b) = (sim().await, sim().await);
    let srv = Served::start(
        &group_yaml(a.local_addr(), b.local_addr()),
        ServeOptions {
            reload_endpoint: false,
            failover_api: false,
            ..ServeOptions::default()
        },
        1,
    )
    .await;
    let t = Duration::from_secs(5);
    let r = send(srv.addr(), "POST", "/-/reload", &[], t).await.unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--web.disable-reload"), "{}", r.body);
    let r = send(srv.addr(), "POST", "/api/v1/failover/gw/failback", &[], t)
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("--web.disable-failover-api"), "{}", r.body);
    let r = send(srv.addr(), "GET", "/api/v1/failover", &[], t)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "reading stays on");
    srv.stop().await;
}

#[tokio::test]
async fn every_endpoint_is_under_the_route_prefix_on_every_listener() {
    let srv = Served::start(
        MODULES,
        ServeOptions {
            route_prefix: watchfire::server::route_prefix(Some("/wf/"), None),
            ..ServeOptions::default()
        },
        2,
    )
    .await;
    let t = Duration::from_secs(5);
    for addr in srv.addrs.clone() {
        let r = send(addr, "GET", "/wf/-/healthy", &[], t).await.unwrap();
        assert_eq!(r.status, 200);
        let r = send(addr, "GET", "/wf/metrics", &[], t).await.unwrap();
        assert_eq!(r.status, 200);
        let r = send(addr, "GET", "/-/healthy", &[], t).await.unwrap();
        assert_eq!(r.status, 404);
        let r = send(addr, "GET", "/wf", &[], t).await.unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.headers["location"], "/wf/");
        let r = send(addr, "GET", "/wf/", &[], t).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.contains("href=\"metrics\""), "relative links");
    }
    let external = url::Url::parse("https://mon.example/blackbox/").unwrap();
    assert_eq!(
        watchfire::server::route_prefix(None, Some(&external)),
        "/blackbox"
    );
    srv.stop().await;
}

#[test]
fn the_server_flags_parse_with_their_defaults() {
    let a = common::run_args(&[]).expect("defaults");
    assert_eq!(a.web_max_connections, 4096);
    assert_eq!(a.web_max_probes, 2048);
    assert_eq!(a.web_header_timeout, Duration::from_secs(5));
    assert!(a.web_config_file.is_none());
    let a = common::run_args(&[
        "--web.listen-address=127.0.0.1:9115",
        "--web.listen-address=[::1]:9115",
        "--web.route-prefix=/bb",
        "--web.external-url=https://mon.example/bb/",
        "--web.max-connections=100",
        "--web.header-timeout=2s",
        "--web.disable-reload",
    ])
    .expect("flags parse");
    assert_eq!(a.listen.len(), 2);
    assert_eq!(a.web_route_prefix.as_deref(), Some("/bb"));
    assert!(a.web_disable_reload && !a.web_disable_failover_api);
    assert!(common::run_args(&["--web.header-timeout=1ms"]).is_err());
    assert!(common::run_args(&["--web.external-url=mon.example"]).is_err());
}

/// Writes a `/probe` request on a plain blocking socket (so it reaches the kernel at once,
/// whatever the test's runtime is doing) and returns the socket and when it was written.
fn write_probe(
    addr: std::net::SocketAddr,
    path: &str,
    scrape_timeout: &str,
) -> (std::net::TcpStream, std::time::Instant) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: watchfire\r\nX-Prometheus-Scrape-Timeout-Seconds: {scrape_timeout}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write the request");
    (s, std::time::Instant::now())
}

/// Reads a whole `Connection: close` answer from a blocking socket, in a blocking task.
async fn read_all(s: std::net::TcpStream) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the answer");
        out
    })
    .await
    .expect("reader")
}

// The server runs on this test's single thread: blocking that thread is a server too busy to
// get to a request that has already arrived, as under a burst of scrapes.
#[tokio::test(flavor = "current_thread")]
async fn a_probe_deadline_counts_from_when_the_request_arrived() {
    let _turn = HEAVY.lock().await;
    let srv = Served::start(MODULES, opts(Limits::default()), 1).await;
    let (target, hang) = hanging_target().await;
    let path = format!("/probe?module=http_2xx&target=http://{target}/");
    // The warm-up probe loads the system's CA roots, once per process.
    let a = send(
        srv.addr(),
        "GET",
        &path,
        &[("X-Prometheus-Scrape-Timeout-Seconds", "0.6")],
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(a.expect("the warm-up probe").status, 200);

    // A 1 s deadline (1.5 s − the 0.5 s offset); the server gets to the request 400 ms late.
    let (s, sent) = write_probe(srv.addr(), &path, "1.5");
    std::thread::sleep(Duration::from_millis(400));
    let answer = read_all(s).await;
    let took = sent.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("probe_success 0"), "{answer}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1300),
        "answered {took:?} after it was sent: the deadline should count from its arrival (1 s), not from when the server read it (1.4 s)"
    );

    // Late past its whole deadline (0.3 s): a prompt 503, nothing probed, counted.
    let (s, sent) = write_probe(srv.addr(), &path, "0.8");
    std::thread::sleep(Duration::from_millis(500));
    let answer = read_all(s).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("passed before it could start"), "{answer}");
    assert!(
        sent.elapsed() < Duration::from_millis(800),
        "{:?}",
        sent.elapsed()
    );
    let m = send(srv.addr(), "GET", "/metrics", &[], Duration::from_secs(1))
        .await
        .expect("/metrics");
    assert_eq!(
        common::sample(&m.body, "watchfire_probe_requests_late_total"),
        Some(1.0),
        "the late request is counted"
    );
    hang.abort();
    srv.stop().await;
}
