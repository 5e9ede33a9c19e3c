//! Integration tests for the simulated inference gateway (`watchfire::sim`).

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::eventually;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use watchfire::sim::{serve, FaultConfig, ServeEnd, Sim, SimError};

const PATIENCE: Duration = Duration::from_secs(10);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

async fn start(faults: FaultConfig) -> Sim {
    Sim::start(any_port(), faults).await.expect("sim starts")
}

/// One keep-alive HTTP/1.1 client connection.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: JoinHandle<Result<(), hyper::Error>>,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        Ok(Conn {
            sender,
            driver: tokio::spawn(conn),
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<Reply, hyper::Error> {
        self.sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "sim.test");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
            .expect("valid request");
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply {
            status,
            headers,
            body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
        })
    }

    /// Waits for the server to close this connection (the client keeps it open).
    async fn closed_by_server(self) {
        let Conn { sender, driver } = self;
        let ended = timeout(PATIENCE, driver).await;
        assert!(ended.is_ok(), "server did not close the connection");
        drop(sender);
    }
}

/// One request on a fresh connection.
async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    timeout(PATIENCE, async {
        let mut conn = Conn::open(addr).await.expect("connect");
        conn.send(method, path, body).await.expect("response")
    })
    .await
    .expect("answered in time")
}

fn refused(r: io::Result<TcpStream>) -> bool {
    matches!(r, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

/// Polls until connecting to `addr` is refused (or fails the test at the deadline).
async fn wait_refused(addr: SocketAddr) {
    eventually(
        PATIENCE,
        &format!("{addr} to refuse connections"),
        || async { refused(TcpStream::connect(addr).await).then_some(()) },
    )
    .await;
}

/// Polls until `/health` on `addr` answers 200 (or fails the test at the deadline).
async fn wait_serving(addr: SocketAddr) {
    eventually(PATIENCE, &format!("{addr} serving again"), || async {
        let mut conn = Conn::open(addr).await.ok()?;
        let r = timeout(PATIENCE, conn.send("GET", "/health", None))
            .await
            .ok()?
            .ok()?;
        (r.status == StatusCode::OK).then_some(())
    })
    .await;
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

async fn leaked_bytes(addr: SocketAddr) -> f64 {
    let text = call(addr, "GET", "/metrics", None).await.body;
    metric(&text, "sim_memory_leaked_bytes").expect("sim_memory_leaked_bytes exported")
}

#[tokio::test]
async fn health_answers_healthy() {
    let sim = start(FaultConfig::default()).await;
    let r = call(sim.local_addr(), "GET", "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json(), json!({"status": "healthy"}));
    assert_eq!(sim.requests(), 1);
}

#[tokio::test]
async fn predict_returns_one_prediction_per_row() {
    let sim = start(FaultConfig::default()).await;
    let body = r#"{"data": [[1.0, 2.0, 3.0], [0.5], [-1, 1]]}"#;
    let r = call(sim.local_addr(), "POST", "/predict", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["model_version"], "sim-1");
    let predictions = v["predictions"].as_array().expect("predictions array");
    assert_eq!(predictions.len(), 3);
    let got: Vec<f64> = predictions.iter().filter_map(Value::as_f64).collect();
    assert_eq!(got, vec![6.0, 0.5, 0.0]);
}

#[tokio::test]
async fn malformed_predict_is_400_naming_the_problem() {
    let sim = start(FaultConfig::default()).await;
    let cases = [
        ("{not json", "invalid JSON"),
        (r#"{"rows": [[1]]}"#, "missing field `data`"),
        (r#"{"data": 7}"#, "`data`"),
        (r#"{"data": []}"#, "`data`"),
        (r#"{"data": [[1], 2]}"#, "data[1]"),
        (r#"{"data": [[1, "x"]]}"#, "data[0][1]"),
    ];
    for (body, needle) in cases {
        let r = call(sim.local_addr(), "POST", "/predict", Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let msg = r.json()["error"]
            .as_str()
            .expect("error message")
            .to_owned();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should mention {needle:?}"
        );
    }
}

#[tokio::test]
async fn oversized_predict_body_is_413() {
    let sim = start(FaultConfig::default()).await;
    let big = format!(r#"{{"data": [[{}1]]}}"#, "1,".repeat(600 * 1024));
    let r = call(sim.local_addr(), "POST", "/predict", Some(&big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405() {
    let sim = start(FaultConfig::default()).await;
    let addr = sim.local_addr();
    assert_eq!(
        call(addr, "GET", "/nope", None).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(addr, "POST", "/health", Some("{}")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "GET");
    let r = call(addr, "GET", "/predict", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = call(addr, "DELETE", "/-/faults", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_refuses_connections_and_come_up_serves_again_on_same_port() {
    let sim = start(FaultConfig::default()).await;
    let addr = sim.local_addr();
    let mut idle = Conn::open(addr).await.expect("connect");
    let r = idle.send("GET", "/health", None).await.expect("response");
    assert_eq!(r.status, StatusCode::OK);

    sim.go_down();
    assert!(sim.faults().down);
    assert!(
        refused(TcpStream::connect(addr).await),
        "connect while down"
    );
    idle.closed_by_server().await;

    sim.come_up().expect("comes back up");
    assert_eq!(sim.local_addr(), addr);
    assert!(!sim.faults().down);
    let r = call(addr, "GET", "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);

    // Down and up again, through set_faults this time.
    sim.set_faults(FaultConfig {
        down: true,
        ..FaultConfig::default()
    });
    assert!(refused(TcpStream::connect(addr).await));
    sim.set_faults(FaultConfig::default());
    assert_eq!(
        call(addr, "GET", "/health", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn down_for_over_http_answers_then_goes_down_and_comes_back() {
    let sim = start(FaultConfig::default()).await;
    let addr = sim.local_addr();
    let r = call(addr, "POST", "/-/faults", Some(r#"{"down_for": "300ms"}"#)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["down"], true);
    wait_refused(addr).await;
    wait_serving(addr).await;
    assert!(!sim.faults().down);
}

#[tokio::test]
async fn hang_never_answers_until_cleared() {
    let sim = start(FaultConfig {
        hang: true,
        ..FaultConfig::default()
    })
    .await;
    let mut conn = Conn::open(sim.local_addr()).await.expect("connect");
    let pending = conn.send("GET", "/health", None);
    tokio::pin!(pending);
    let early = timeout(Duration::from_millis(300), &mut pending).await;
    assert!(early.is_err(), "hung request was answered: {early:?}");

    // Control endpoints are unaffected by the fault.
    let r = call(sim.local_addr(), "GET", "/-/faults", None).await;
    assert_eq!(r.json()["hang"], true);

    sim.set_faults(FaultConfig::default());
    let r = timeout(PATIENCE, pending)
        .await
        .expect("answered once cleared")
        .expect("response");
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn slow_adds_the_configured_latency() {
    let slow = Duration::from_millis(250);
    let sim = start(FaultConfig {
        slow,
        ..FaultConfig::default()
    })
    .await;
    let mut conn = Conn::open(sim.local_addr()).await.expect("connect");
    for (method, path, body) in [
        ("GET", "/health", None),
        ("POST", "/predict", Some(r#"{"data": [[1]]}"#)),
    ] {
        let started = Instant::now();
        let r = conn.send(method, path, body).await.expect("response");
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            started.elapsed() >= slow,
            "{path} took {:?}",
            started.elapsed()
        );
    }
    // The control endpoint is not slowed.
    let started = Instant::now();
    conn.send("GET", "/-/faults", None).await.expect("response");
    assert!(started.elapsed() < slow);
}

#[tokio::test]
async fn error_rate_quarter_gives_exactly_25_of_100_as_500() {
    let sim = start(FaultConfig {
        error_rate: 0.25,
        ..FaultConfig::default()
    })
    .await;
    let mut conn = Conn::open(sim.local_addr()).await.expect("connect");
    let mut failures = 0;
    for _ in 0..100 {
        let r = conn.send("GET", "/health", None).await.expect("response");
        match r.status {
            StatusCode::OK => {}
            StatusCode::INTERNAL_SERVER_ERROR => {
                assert_eq!(r.json(), json!({"error": "simulated failure"}));
                failures += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(failures, 25);
    assert_eq!(sim.requests(), 100);

    // 0.02 is not exact in binary; the accumulator still gives exactly 2 in 100.
    sim.set_faults(FaultConfig {
        error_rate: 0.02,
        ..FaultConfig::default()
    });
    let mut failures = 0;
    for _ in 0..100 {
        let r = conn.send("GET", "/health", None).await.expect("response");
        failures += usize::from(r.status == StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn unhealthy_says_degraded() {
    let sim = start(FaultConfig {
        unhealthy: true,
        ..FaultConfig::default()
    })
    .await;
    let r = call(sim.local_addr(), "GET", "/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "degraded"}));
}

#[tokio::test]
async fn crash_after_resolves_crashed_and_refuses_connections() {
    let sim = start(FaultConfig {
        crash_after: Some(Duration::from_millis(100)),
        ..FaultConfig::default()
    })
    .await;
    let addr = sim.local_addr();
    let mut idle = Conn::open(addr).await.expect("connect");
    idle.send("GET", "/health", None).await.expect("response");

    timeout(PATIENCE, sim.crashed()).await.expect("crash fired");
    assert!(sim.is_crashed());
    assert!(refused(TcpStream::connect(addr).await));
    idle.closed_by_server().await;
    assert!(matches!(sim.come_up(), Err(SimError::Crashed(a)) if a == addr));

    sim.heal();
    assert!(!sim.is_crashed());
    assert_eq!(sim.faults(), FaultConfig::default());
    assert_eq!(
        call(addr, "GET", "/health", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn serve_reports_crashed_when_crash_after_fires() {
    let faults = FaultConfig {
        crash_after: Some(Duration::from_millis(50)),
        ..FaultConfig::default()
    };
    let end = timeout(PATIENCE, serve(any_port(), faults, std::future::pending()))
        .await
        .expect("serve ended");
    assert_eq!(end.expect("served"), ServeEnd::Crashed);

    let end = serve(any_port(), FaultConfig::default(), async {}).await;
    assert_eq!(end.expect("served"), ServeEnd::Shutdown);
}

#[tokio::test]
async fn faults_settable_over_http_and_invalid_fault_json_is_400() {
    let sim = start(FaultConfig::default()).await;
    let addr = sim.local_addr();
    let r = call(
        addr,
        "POST",
        "/-/faults",
        Some(r#"{"slow": "10ms", "error_rate": 0.5, "unhealthy": true}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let expected = FaultConfig {
        slow: Duration::from_millis(10),
        error_rate: 0.5,
        unhealthy: true,
        ..FaultConfig::default()
    };
    assert_eq!(sim.faults(), expected);
    let shown: FaultConfig =
        serde_json::from_str(&call(addr, "GET", "/-/faults", None).await.body).expect("faults");
    assert_eq!(shown, expected);

    // A subset leaves the other fields alone.
    call(addr, "POST", "/-/faults", Some(r#"{"unhealthy": false}"#)).await;
    assert_eq!(sim.faults().error_rate, 0.5);
    assert!(!sim.faults().unhealthy);

    let bad = [
        ("{oops", "invalid JSON"),
        ("[1]", "object"),
        (r#"{"error_rate": "lots"}"#, "error_rate"),
        (r#"{"error_rate": 1.5}"#, "error_rate"),
        (r#"{"slow": "soon"}"#, "slow"),
        (r#"{"slow": 250}"#, "slow"),
        (r#"{"hang": "yes"}"#, "hang"),
        (r#"{"leak_rate": -1}"#, "leak_rate"),
        (r#"{"bogus": 1}"#, "bogus"),
    ];
    for (body, needle) in bad {
        let r = call(addr, "POST", "/-/faults", Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let msg = r.json()["error"]
            .as_str()
            .expect("error message")
            .to_owned();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should mention {needle:?}"
        );
    }
    assert_eq!(
        sim.faults().error_rate,
        0.5,
        "rejected bodies change nothing"
    );

    let r = call(addr, "POST", "/-/faults/reset", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sim.faults(), FaultConfig::default());
}

#[tokio::test]
async fn metrics_counts_requests_in_valid_exposition_format() {
    let sim = start(FaultConfig {
        unhealthy: true,
        ..FaultConfig::default()
    })
    .await;
    let addr = sim.local_addr();
    for _ in 0..3 {
        call(addr, "GET", "/health", None).await;
    }
    call(addr, "POST", "/predict", Some("nope")).await;
    call(addr, "GET", "/elsewhere", None).await;

    let r = call(addr, "GET", "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    let text = r.body;
    let count = |series: &str| metric(&text, series);
    assert_eq!(
        count(r#"sim_requests_total{path="/health",code="200"}"#),
        Some(3.0)
    );
    assert_eq!(
        count(r#"sim_requests_total{path="/predict",code="400"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"sim_requests_total{path="other",code="404"}"#),
        Some(1.0)
    );
    assert_eq!(count(r#"sim_fault_active{fault="unhealthy"}"#), Some(1.0));
    assert_eq!(count(r#"sim_fault_active{fault="hang"}"#), Some(0.0));
    assert_eq!(count("sim_memory_leaked_bytes"), Some(0.0));
    assert_eq!(count("sim_up"), Some(1.0));
    assert_eq!(sim.requests(), 4);

    // Exposition format: every sample's family has HELP and TYPE first,
    // counters end in `_total`, every value parses.
    let mut helped = Vec::new();
    let mut typed: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().expect("name").to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name").to_owned();
            let kind = parts.next().expect("type").to_owned();
            assert!(helped.contains(&name), "TYPE before HELP for {name}");
            if kind == "counter" {
                assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                );
            }
            typed.push((name, kind));
        } else {
            let name = line.split(['{', ' ']).next().expect("sample name");
            assert!(
                typed.iter().any(|(t, _)| t == name),
                "sample {name} without TYPE"
            );
            let value = line.rsplit(' ').next().expect("value");
            value.parse::<f64>().expect("numeric sample value");
        }
    }
}

#[tokio::test]
async fn leak_grows_memory_leaked_bytes_and_reset_frees_it() {
    let cap = 4 * 1024 * 1024;
    let sim = start(FaultConfig {
        leak_rate: 64 * 1024 * 1024,
        leak_max: cap,
        ..FaultConfig::default()
    })
    .await;
    let addr = sim.local_addr();
    eventually(PATIENCE, "the leak to reach its cap", || async {
        (leaked_bytes(addr).await >= cap as f64).then_some(())
    })
    .await;
    assert_eq!(leaked_bytes(addr).await, cap as f64, "bounded by leak_max");

    let r = call(addr, "POST", "/-/faults/reset", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(leaked_bytes(addr).await, 0.0);
}

#[tokio::test]
async fn shutdown_completes_with_idle_keep_alive_connection_open() {
    let sim = start(FaultConfig::default()).await;
    let addr = sim.local_addr();
    let mut idle = Conn::open(addr).await.expect("connect");
    idle.send("GET", "/health", None).await.expect("response");
    let _never_used = TcpStream::connect(addr).await.expect("connect");

    let started = Instant::now();
    timeout(PATIENCE, sim.shutdown())
        .await
        .expect("shutdown finished");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "idle connections held shutdown for {:?}",
        started.elapsed()
    );
    idle.closed_by_server().await;
    assert!(refused(TcpStream::connect(addr).await));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let sim = start(FaultConfig {
        slow: Duration::from_millis(300),
        ..FaultConfig::default()
    })
    .await;
    let mut conn = Conn::open(sim.local_addr()).await.expect("connect");
    let in_flight = tokio::spawn(async move { conn.send("GET", "/health", None).await });
    wait_in_flight(&sim).await;
    sim.shutdown().await;
    let r = in_flight.await.expect("task").expect("answered");
    assert_eq!(r.status, StatusCode::OK);
}

/// Polls until the server is handling a `/health` or `/predict` request.
async fn wait_in_flight(sim: &Sim) {
    eventually(PATIENCE, "the request to reach the server", || async {
        (sim.in_flight() > 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn shutdown_abandons_hung_requests_promptly() {
    let sim = start(FaultConfig {
        hang: true,
        ..FaultConfig::default()
    })
    .await;
    let mut conn = Conn::open(sim.local_addr()).await.expect("connect");
    let hung = tokio::spawn(async move { conn.send("GET", "/health", None).await });
    wait_in_flight(&sim).await;
    let started = Instant::now();
    sim.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(2));
    let outcome = timeout(PATIENCE, hung)
        .await
        .expect("client woke")
        .expect("task");
    assert!(
        outcome.is_err(),
        "hung request must not be answered: {outcome:?}"
    );
}

#[tokio::test]
async fn start_names_the_address_when_bind_fails() {
    let sim = start(FaultConfig::default()).await;
    let taken = sim.local_addr();
    let err = Sim::start(taken, FaultConfig::default())
        .await
        .expect_err("port in use");
    assert!(err.to_string().contains(&taken.to_string()), "{err}");

    let err = Sim::start(
        any_port(),
        FaultConfig {
            error_rate: 2.0,
            ..FaultConfig::default()
        },
    )
    .await
    .expect_err("invalid faults");
    assert!(err.to_string().contains("error_rate"), "{err}");
}

#[test]
fn fault_config_serde_uses_humantime_strings() {
    let f = FaultConfig {
        slow: Duration::from_millis(250),
        crash_after: Some(Duration::from_secs(5)),
        ..FaultConfig::default()
    };
    let v = serde_json::to_value(&f).expect("serializes");
    assert_eq!(v["slow"], "250ms");
    assert_eq!(v["crash_after"], "5s");
    assert_eq!(v["leak_max"], 256 * 1024 * 1024);
    let back: FaultConfig = serde_json::from_value(v).expect("round trip");
    assert_eq!(back, f);
    let partial: FaultConfig = serde_json::from_str(r#"{"hang": true}"#).expect("partial");
    assert_eq!(
        partial,
        FaultConfig {
            hang: true,
            ..FaultConfig::default()
        }
    );
    assert!(serde_json::from_str::<FaultConfig>(r#"{"slow": 5}"#).is_err());
}
