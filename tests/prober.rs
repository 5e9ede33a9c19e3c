//! The HTTP prober against real servers on loopback: the simulated gateway and small in-test
//! servers, one test per failure reason.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::Method;
use regex::Regex;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use watchfire::config::DEFAULT_TIMEOUT;
use watchfire::probe::{Outcome, Reason};
use watchfire::probers::native::{HttpCheck, HttpProber, LeanJob, Reactor};
use watchfire::sim::{FaultConfig, Sim};

const MIB: usize = 1024 * 1024;
/// Slack allowed past a probe's timeout before it must have returned.
const SLACK: Duration = Duration::from_millis(50);

/// A check and the timeout its probes run under (the prober's two inputs).
struct Spec {
    check: HttpCheck,
    timeout: Duration,
}

impl std::ops::Deref for Spec {
    type Target = HttpCheck;

    fn deref(&self) -> &HttpCheck {
        &self.check
    }
}

impl std::ops::DerefMut for Spec {
    fn deref_mut(&mut self) -> &mut HttpCheck {
        &mut self.check
    }
}

fn target(url: &str) -> Spec {
    Spec {
        check: HttpCheck::new(url).expect("valid target URL"),
        timeout: DEFAULT_TIMEOUT,
    }
}

fn new_prober(spec: Spec) -> HttpProber {
    HttpProber::new(Arc::new(spec.check), spec.timeout).expect("prober")
}

/// Probes with the prober's own (hyper) path and, when the check takes the lean path on the
/// probe threads (plain `http://` at an IP address, fresh connections), through a lean event
/// loop too, woken by the answer and then read at a scheduler's wake-up: all must end the same
/// way (result and status). Returns the hyper path's outcome, whose details the tests read.
async fn probe_with(prober: &HttpProber) -> Outcome {
    probe_both(prober).await.0
}

/// [`probe_with`], also returning how long the slower of the two paths took.
async fn probe_both(prober: &HttpProber) -> (Outcome, Duration) {
    let t0 = std::time::Instant::now();
    let hyper = prober.probe(tokio::time::Instant::now()).await;
    let mut took = t0.elapsed();
    if prober.is_lean() {
        let (leans, lean_took) = lean_probes(prober).await;
        took = took.max(lean_took);
        for lean in leans {
            assert_eq!(
                (lean.result, lean.status),
                (hyper.result, hyper.status),
                "the lean path must end as the hyper path did\nlean: {lean:#?}\nhyper: {hyper:#?}"
            );
            assert_eq!(lean.detail.is_some(), hyper.detail.is_some(), "{lean:#?}");
            if lean.result.is_ok() {
                assert_eq!(lean.body_bytes, hyper.body_bytes, "{lean:#?}");
            }
        }
    }
    (hyper, took)
}

/// A lean probe's job in a test: the prober, and where its outcome goes.
struct OneProbe {
    prober: HttpProber,
    done: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Outcome>>>,
}

impl LeanJob for OneProbe {
    type Ticket = Option<Arc<()>>;

    fn prober(&self) -> &HttpProber {
        &self.prober
    }

    fn finish(self: Arc<Self>, outcome: Outcome, _ticket: Self::Ticket) {
        if let Some(tx) = self.done.lock().expect("lock").take() {
            let _ = tx.send(outcome);
        }
    }
}

/// A lean event loop running on this runtime, the token that stops it and its task.
fn start_loop() -> (
    Arc<Reactor<OneProbe>>,
    tokio_util::sync::CancellationToken,
    JoinHandle<()>,
) {
    let reactor = Reactor::new().expect("event loop");
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(reactor.clone().run(cancel.clone()));
    (reactor, cancel, running)
}

/// A server that reads the request and never answers.
async fn hanging_server() -> TestServer {
    serve(|mut s| async move {
        read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await
}

impl OneProbe {
    /// A job with nowhere to send its outcome yet ([`OneProbe::arm`]).
    fn of(prober: &HttpProber) -> Arc<OneProbe> {
        Arc::new(OneProbe {
            prober: HttpProber::new(prober.check().clone(), prober.timeout()).expect("prober"),
            done: std::sync::Mutex::new(None),
        })
    }

    /// Where the next probe's outcome will go.
    fn arm(&self) -> tokio::sync::oneshot::Receiver<Outcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.done.lock().expect("lock") = Some(tx);
        rx
    }
}

/// Probes through a lean event loop of its own on this runtime: one read when its answer
/// wakes the loop; then, when it got an answer, a quiet one run as a probe thread's scheduler
/// runs it ([`scheduler_wakes`]), its answer expected as soon as the first one's. Also returns
/// how long the first one took to return.
async fn lean_probes(prober: &HttpProber) -> (Vec<Outcome>, Duration) {
    let job = OneProbe::of(prober);
    let (reactor, cancel, running) = start_loop();
    let t0 = std::time::Instant::now();
    let woken = loud_probe(&reactor, &job).await;
    let took = t0.elapsed();
    let mut outcomes = vec![woken];
    if outcomes[0].status.is_some() {
        let answered_in = outcomes[0].finished - outcomes[0].started;
        let mut rx = job.arm();
        reactor.submit_quiet(job, tokio::time::Instant::now(), None);
        outcomes.push(scheduler_wakes(&reactor, &mut rx, answered_in).await);
    }
    cancel.cancel();
    running.await.expect("the event loop stops");
    (outcomes, took)
}

/// One probe of `job` submitted loud (read when its answer wakes the loop); an answer gives
/// the target the answer time its quiet probes then expect.
async fn loud_probe(reactor: &Arc<Reactor<OneProbe>>, job: &Arc<OneProbe>) -> Outcome {
    let rx = job.arm();
    reactor.submit(job.clone(), tokio::time::Instant::now(), None);
    rx.await.expect("the lean probe ends")
}

/// Runs the wake-ups of a probe thread's scheduler (park, sleep 300 µs, sweep) until the
/// outcome arrives, the first one late enough for an answer that takes as long as
/// `answered_in` to be kept for the sweep.
async fn scheduler_wakes(
    reactor: &Reactor<OneProbe>,
    rx: &mut tokio::sync::oneshot::Receiver<Outcome>,
    answered_in: Duration,
) -> Outcome {
    let gap = Duration::from_micros(300);
    tokio::time::sleep(2 * answered_in).await;
    loop {
        let wake = tokio::time::Instant::now() + gap;
        reactor.park(wake);
        tokio::select! {
            o = &mut *rx => return o.expect("the quiet probe ends"),
            _ = tokio::time::sleep_until(wake) => reactor.sweep(),
        }
    }
}

async fn probe(spec: Spec) -> Outcome {
    let prober = new_prober(spec);
    probe_with(&prober).await
}

/// Probes and also measures the wall time of the call.
async fn timed_probe(spec: Spec) -> (Outcome, Duration) {
    let prober = new_prober(spec);
    probe_both(&prober).await
}

async fn sim(faults: FaultConfig) -> Sim {
    Sim::start("127.0.0.1:0".parse().expect("address"), faults)
        .await
        .expect("sim starts")
}

fn sim_url(sim: &Sim, path: &str) -> String {
    format!("http://{}{path}", sim.local_addr())
}

#[track_caller]
fn assert_reason(o: &Outcome, want: Reason) {
    assert_eq!(o.result, Err(want), "outcome: {o:#?}");
    assert!(o.detail.is_some(), "a failure carries a detail: {o:#?}");
}

/// A raw TCP server on loopback; each connection goes to `handler`. Dropping it stops the
/// accept loop and every connection task.
struct TestServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve<F, Fut>(handler: F) -> TestServer
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                a = listener.accept() => match a {
                    Ok((stream, _)) => {
                        conns.spawn(handler(stream));
                    }
                    Err(_) => return,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    TestServer { addr, task }
}

/// Reads a request head (up to the blank line) or until EOF.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

/// Reads until the peer closes (or errors).
async fn drain<S: AsyncRead + Unpin>(s: &mut S) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
    }
}

/// Writes `body_len` bytes in 64 KiB pieces, ignoring errors (the prober may hang up).
async fn write_zeros<S: AsyncWrite + Unpin>(s: &mut S, body_len: usize, chunked: bool) {
    let piece = vec![b'x'; 64 * 1024];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(piece.len());
        let r = if chunked {
            let mut framed = format!("{n:x}\r\n").into_bytes();
            framed.extend_from_slice(&piece[..n]);
            framed.extend_from_slice(b"\r\n");
            s.write_all(&framed).await
        } else {
            s.write_all(&piece[..n]).await
        };
        if r.is_err() {
            return;
        }
        left -= n;
    }
    if chunked {
        let _ = s.write_all(b"0\r\n\r\n").await;
    }
}

// ---------------------------------------------------------------------------------------------
// Success

#[tokio::test]
async fn healthy_health_succeeds_with_status_phases_and_json_check() {
    let sim = sim(FaultConfig::default()).await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.json = vec![(vec!["status".into()], json!("healthy"))];
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(o.status, Some(200));
    assert!(o.phases.connect > Duration::ZERO, "{o:#?}");
    assert!(o.phases.processing > Duration::ZERO, "{o:#?}");
    assert_eq!(
        o.phases.resolve,
        Duration::ZERO,
        "an IP literal needs no DNS"
    );
    assert_eq!(o.phases.tls, Duration::ZERO);
    assert!(o.body_bytes > 0);
    assert!(!o.reused_connection);
    assert!(o.detail.is_none());
    assert!(o.latency() >= o.phases.connect + o.phases.processing);
    assert_eq!(
        sim.requests(),
        3,
        "one request on each path (hyper, lean woken, lean quiet)"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn post_predict_with_a_json_body_succeeds() {
    let sim = sim(FaultConfig::default()).await;
    let mut spec = target(&sim_url(&sim, "/predict"));
    spec.method = Method::POST;
    spec.body = Bytes::from_static(br#"{"data": [[1, 2, 3], [4, 5]]}"#);
    spec.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    spec.expect.json = vec![
        (vec!["predictions".into(), "0".into()], json!(6)),
        (vec!["predictions".into(), "1".into()], json!(9)),
        (vec!["model_version".into()], json!("sim-1")),
    ];
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(o.status, Some(200));

    // The same endpoint with GET is a 405: the method really was sent.
    let get = target(&sim_url(&sim, "/predict"));
    let o = probe(get).await;
    assert_reason(&o, Reason::Status);
    assert_eq!(o.status, Some(405));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Connection failures

#[tokio::test]
async fn refused_when_nothing_listens() {
    let sim = sim(FaultConfig::default()).await;
    let url = sim_url(&sim, "/health");
    sim.go_down();
    let o = probe(target(&url)).await;
    assert_reason(&o, Reason::Refused);
    assert_eq!(o.status, None);

    // A port bound, then released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let o = probe(target(&format!("http://127.0.0.1:{port}/"))).await;
    assert_reason(&o, Reason::Refused);
    sim.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_when_the_accept_queue_is_full() {
    // A listener with backlog 0 that never accepts: once its accept queue holds one
    // connection, Linux drops further SYNs, so a connect hangs — on loopback, no other host.
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..32 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filler connect failed: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(
        full,
        "the accept queue never filled: cannot make a connect hang on this kernel"
    );
    let mut spec = target(&format!("http://{addr}/"));
    spec.timeout = Duration::from_millis(300);
    let (o, took) = timed_probe(spec).await;
    assert_reason(&o, Reason::ConnectTimeout);
    assert_eq!(o.phases.connect, Duration::ZERO, "never connected");
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took <= Duration::from_millis(300) + SLACK, "{took:?}");
    drop(fillers);
    drop(listener);
}

#[tokio::test]
async fn dns_failure_is_dns() {
    // `.invalid` never resolves (RFC 2606). The 70-character label is longer than DNS allows
    // (63), so the resolver rejects the name locally and no query leaves the machine.
    let host = format!("{}.invalid", "a".repeat(70));
    let mut spec = target(&format!("http://{host}/health"));
    spec.timeout = Duration::from_secs(2);
    let o = probe(spec).await;
    assert_reason(&o, Reason::Dns);
    assert_eq!(o.phases.connect, Duration::ZERO);
    assert!(
        o.detail.as_deref().is_some_and(|d| d.contains(&host)),
        "{o:#?}"
    );
}

/// A host name is resolved, then probed at its address, on both paths: the resolve is a phase
/// of its own, inside the probe's time.
#[tokio::test]
async fn a_host_name_is_resolved_then_probed_on_both_paths() {
    let fast = sim(FaultConfig::default()).await;
    let url = format!("http://localhost:{}/health", fast.local_addr().port());
    let prober = new_prober(target(&url));
    assert!(prober.is_lean(), "a plain http:// name takes the lean path");
    let hyper = probe_with(&prober).await;
    assert_eq!(hyper.result, Ok(()), "{hyper:#?}");
    let (leans, _) = lean_probes(&prober).await;
    assert_eq!(leans.len(), 2, "woken and quiet");
    for o in leans {
        assert_eq!(o.result, Ok(()), "{o:#?}");
        assert!(o.phases.resolve > Duration::ZERO, "resolved: {o:#?}");
        assert!(o.phases.connect > Duration::ZERO, "{o:#?}");
        assert!(o.phases.resolve <= o.finished - o.started, "{o:#?}");
    }
    fast.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Slow and hung answers

#[tokio::test]
async fn hang_times_out_within_the_timeout() {
    let sim = sim(FaultConfig {
        hang: true,
        ..FaultConfig::default()
    })
    .await;
    let timeout = Duration::from_millis(300);
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.timeout = timeout;
    let (o, took) = timed_probe(spec).await;
    assert_reason(&o, Reason::Timeout);
    assert_eq!(o.status, None);
    assert!(o.phases.connect > Duration::ZERO, "it did connect: {o:#?}");
    assert!(took >= timeout, "returned before the timeout: {took:?}");
    assert!(took <= timeout + SLACK, "returned late: {took:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_answer_over_max_latency_is_too_slow() {
    let sim = sim(FaultConfig {
        slow: Duration::from_millis(200),
        ..FaultConfig::default()
    })
    .await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.max_latency = Some(Duration::from_millis(50));
    let o = probe(spec).await;
    assert_reason(&o, Reason::TooSlow);
    assert_eq!(o.status, Some(200), "the answer itself was fine");
    assert!(o.latency() >= Duration::from_millis(200), "{o:#?}");
    assert!(o.phases.processing >= Duration::from_millis(200), "{o:#?}");

    // The same answer within a generous max_latency passes.
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.max_latency = Some(Duration::from_secs(2));
    assert_eq!(probe(spec).await.result, Ok(()));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Wrong answers

#[tokio::test]
async fn error_500_fails_with_status() {
    let sim = sim(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    })
    .await;
    let o = probe(target(&sim_url(&sim, "/health"))).await;
    assert_reason(&o, Reason::Status);
    assert_eq!(o.status, Some(500));
    assert!(o.detail.as_deref().is_some_and(|d| d.contains("500")));

    // Accepting 5xx turns it into a success.
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.status = vec![(500, 599)];
    assert_eq!(probe(spec).await.result, Ok(()));
    sim.shutdown().await;
}

#[tokio::test]
async fn degraded_json_field_is_json_mismatch_naming_the_field() {
    let sim = sim(FaultConfig {
        unhealthy: true,
        ..FaultConfig::default()
    })
    .await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.json = vec![(vec!["status".into()], json!("healthy"))];
    let o = probe(spec).await;
    assert_reason(&o, Reason::JsonMismatch);
    assert_eq!(o.status, Some(200));
    let detail = o.detail.unwrap_or_default();
    assert!(detail.contains("`status`"), "{detail}");
    assert!(detail.contains("degraded"), "{detail}");

    // A missing field is named too.
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.json = vec![(vec!["model".into(), "name".into()], json!("x"))];
    let o = probe(spec).await;
    assert_reason(&o, Reason::JsonMismatch);
    assert!(
        o.detail
            .as_deref()
            .is_some_and(|d| d.contains("`model.name`")),
        "{o:#?}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn body_regex_mismatch_is_body_mismatch() {
    let sim = sim(FaultConfig::default()).await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.body = Some(Regex::new(r#""status"\s*:\s*"down""#).expect("regex"));
    let o = probe(spec).await;
    assert_reason(&o, Reason::BodyMismatch);
    assert_eq!(o.status, Some(200));

    let mut spec = target(&sim_url(&sim, "/health"));
    spec.expect.body = Some(Regex::new(r#""status"\s*:\s*"healthy""#).expect("regex"));
    assert_eq!(probe(spec).await.result, Ok(()));
    sim.shutdown().await;
}

/// A JSON body of about `size` bytes with `"status": status` at its end.
fn padded_json(size: usize, status: &str) -> String {
    format!(
        "{{\"pad\":\"{}\",\"status\":\"{status}\"}}",
        "x".repeat(size)
    )
}

/// An 8 MiB body written at once is more than a lean probe reads in one step (1 MiB): the
/// probe reads on in later steps, and ends as the hyper path does, its JSON checked whole.
#[tokio::test]
async fn a_body_larger_than_one_steps_reads_is_read_whole() {
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let body = padded_json(8 * MIB, "healthy");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await;
    let mut spec = target(&server.url("/big"));
    spec.body_limit = 16 * MIB;
    spec.expect.json = vec![(vec!["status".into()], json!("healthy"))];
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert!(o.body_bytes >= 8 * MIB as u64, "{o:#?}");
}

#[tokio::test]
async fn large_bodies_are_checked_too() {
    // 300 KiB: over the size checked on the probe's own thread, so checked on the blocking pool.
    let server = serve(|mut s| async move {
        let head = read_head(&mut s).await;
        let status = if head.starts_with(b"GET /down") {
            "down"
        } else {
            "healthy"
        };
        let body = padded_json(300 * 1024, status);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
    })
    .await;
    let json_spec = |path: &str| {
        let mut spec = capped(&server.url(path));
        spec.expect.json = vec![(vec!["status".into()], json!("healthy"))];
        spec
    };
    let o = probe(json_spec("/up")).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert!(o.body_bytes > 300 * 1024, "{o:#?}");
    let o = probe(json_spec("/down")).await;
    assert_reason(&o, Reason::JsonMismatch);
    assert!(
        o.detail.as_deref().is_some_and(|d| d.contains("down")),
        "{o:#?}"
    );

    let regex_spec = |path: &str| {
        let mut spec = capped(&server.url(path));
        spec.expect.body = Some(Regex::new(r#""status":"healthy"\}$"#).expect("regex"));
        spec
    };
    assert_eq!(probe(regex_spec("/up")).await.result, Ok(()));
    assert_reason(&probe(regex_spec("/down")).await, Reason::BodyMismatch);
}

#[tokio::test]
async fn a_huge_declared_length_under_a_huge_limit_is_not_reserved_up_front() {
    // 32 GiB declared, 10 bytes sent: the prober must not try to allocate the declared size.
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 34359738368\r\n\r\n0123456789";
        let _ = s.write_all(head.as_bytes()).await;
    })
    .await;
    let mut spec = capped(&server.url("/huge"));
    spec.body_limit = 64 << 30;
    spec.expect.body = Some(Regex::new("never").expect("regex"));
    let o = probe(spec).await;
    assert!(o.result.is_err(), "a body cut short is a failure: {o:#?}");
    assert_eq!(o.body_bytes, 10, "{o:#?}");
}

// ---------------------------------------------------------------------------------------------
// Bodies over the cap

fn capped(url: &str) -> Spec {
    let mut spec = target(url);
    spec.body_limit = MIB;
    spec.timeout = Duration::from_secs(5);
    spec
}

#[tokio::test]
async fn body_over_the_cap_with_content_length_is_body_too_large() {
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 * MIB);
        if s.write_all(head.as_bytes()).await.is_ok() {
            write_zeros(&mut s, 2 * MIB, false).await;
        }
    })
    .await;
    let o = probe(capped(&server.url("/big"))).await;
    assert_reason(&o, Reason::BodyTooLarge);
    assert_eq!(o.status, Some(200));
    assert!(
        o.detail
            .as_deref()
            .is_some_and(|d| d.contains("Content-Length")),
        "refused from the declared length: {o:#?}"
    );
    assert!(o.body_bytes <= MIB as u64, "{o:#?}");
}

#[tokio::test]
async fn body_over_the_cap_chunked_without_length_is_body_too_large() {
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_ok() {
            write_zeros(&mut s, 2 * MIB, true).await;
        }
    })
    .await;
    let o = probe(capped(&server.url("/big"))).await;
    assert_reason(&o, Reason::BodyTooLarge);
    assert_eq!(o.status, Some(200));
    assert!(o.body_bytes > MIB as u64, "counted past the cap: {o:#?}");
    assert!(o.body_bytes < 2 * MIB as u64, "stopped early: {o:#?}");

    // Under the cap the same server is fine.
    let mut spec = capped(&server.url("/big"));
    spec.body_limit = 4 * MIB;
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(o.body_bytes, 2 * MIB as u64);
}

/// One lean loop with probes of several timeouts in flight at once, half of them to a target
/// that never answers: each ends by its own deadline (the loop sleeps until the earliest one
/// and moves on to the next), the others succeed meanwhile.
#[tokio::test]
async fn one_lean_loop_ends_each_probe_in_flight_by_its_own_deadline() {
    let hung = hanging_server().await;
    let fast = sim(FaultConfig::default()).await;
    let (reactor, cancel, running) = start_loop();
    let mut waiting = Vec::new();
    for i in 0..40u64 {
        let timeout = Duration::from_millis(60 + 40 * (i % 4));
        let url = if i % 2 == 0 {
            hung.url("/hang")
        } else {
            sim_url(&fast, "/health")
        };
        let mut spec = target(&url);
        spec.timeout = timeout;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Arc::new(OneProbe {
            prober: new_prober(spec),
            done: std::sync::Mutex::new(Some(tx)),
        });
        reactor.submit(job, tokio::time::Instant::now(), None);
        waiting.push((i, timeout, rx));
    }
    for (i, timeout, rx) in waiting {
        let o = rx.await.expect("every probe ends");
        let took = o.finished - o.started;
        if i % 2 == 0 {
            assert_reason(&o, Reason::Timeout);
            assert!(
                took >= timeout,
                "probe {i} ended before its timeout: {took:?}"
            );
            assert!(
                took < timeout + SLACK,
                "probe {i} ended late: {took:?} (timeout {timeout:?})"
            );
        } else {
            assert_eq!(o.result, Ok(()), "probe {i}: {o:#?}");
        }
    }
    assert_eq!(reactor.in_flight(), 0);
    cancel.cancel();
    running.await.expect("the event loop stops");
}

/// A quiet probe whose answer is read long after it arrived (its thread's scheduler woke late)
/// is timed by the kernel's receive time of the answer, not by the read: its duration and
/// phases are the exchange's, and the read cost no wake-up of its own.
#[tokio::test]
async fn a_quiet_probe_read_late_is_timed_by_the_answers_arrival() {
    let fast = sim(FaultConfig::default()).await;
    let job = OneProbe::of(&new_prober(target(&sim_url(&fast, "/health"))));
    let (reactor, cancel, running) = start_loop();
    let first = loud_probe(&reactor, &job).await;
    assert_eq!(first.result, Ok(()));
    let answered_in = first.finished - first.started;
    assert_eq!(
        reactor.swept(),
        0,
        "a probe submitted loud is read on its wake-up"
    );

    let mut rx = job.arm();
    reactor.submit_quiet(job, tokio::time::Instant::now(), None);
    // Once the answer is expected, the scheduler means to wake within the horizon, then wakes
    // 200 ms late.
    tokio::time::sleep(2 * answered_in).await;
    reactor.park(tokio::time::Instant::now() + Duration::from_micros(900));
    let late = Duration::from_millis(200);
    tokio::time::sleep(late).await;
    assert!(rx.try_recv().is_err(), "the answer waits for the sweep");
    reactor.sweep();
    let o = rx.await.expect("the sweep ends the probe");
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(reactor.swept(), 1, "the sweep read the answer");
    let took = o.finished - o.started;
    assert!(
        took < late / 2,
        "timed by the read ({took:?}), not by the answer's arrival"
    );
    assert!(o.phases.processing + o.phases.connect <= took, "{o:#?}");
    cancel.cancel();
    running.await.expect("the event loop stops");
}

/// A quiet probe that the scheduler will not wake for soon enough, or not after its answer is
/// expected, is read when its answer arrives, like any other.
#[tokio::test]
async fn a_quiet_probe_the_scheduler_will_not_wake_for_is_read_on_arrival() {
    let fast = sim(FaultConfig::default()).await;
    let job = OneProbe::of(&new_prober(target(&sim_url(&fast, "/health"))));
    let (reactor, cancel, running) = start_loop();
    assert_eq!(loud_probe(&reactor, &job).await.result, Ok(()));
    let rx = job.arm();
    reactor.submit_quiet(job.clone(), tokio::time::Instant::now(), None);
    // The next wake-up is a second away: the probe joins the epoll instance at once.
    reactor.park(tokio::time::Instant::now() + Duration::from_secs(1));
    let o = tokio::time::timeout(Duration::from_millis(500), rx)
        .await
        .expect("read on arrival, not at the wake-up")
        .expect("ends");
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(reactor.swept(), 0);
    // A wake-up that comes before the answer is expected: the probe joins the epoll instance
    // at once too.
    let mut rx = job.arm();
    reactor.submit_quiet(job, tokio::time::Instant::now(), None);
    reactor.park(tokio::time::Instant::now());
    let o = tokio::time::timeout(Duration::from_millis(500), &mut rx)
        .await
        .expect("read on arrival")
        .expect("ends");
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(reactor.swept(), 0, "read on arrival, not by a sweep");
    assert_eq!(reactor.in_flight(), 0);
    cancel.cancel();
    running.await.expect("the event loop stops");
}

/// A lean loop that stops (its probe thread's runtime stops on shutdown and drops it) lets go
/// of the probes in flight and of every probe submitted after: nothing waits for them.
#[tokio::test]
async fn a_stopped_lean_loop_lets_go_of_its_probes() {
    let server = hanging_server().await;
    let job = || {
        Arc::new(OneProbe {
            prober: new_prober(target(&server.url("/hang"))),
            done: std::sync::Mutex::new(None),
        })
    };
    let (reactor, _cancel, running) = start_loop();
    let ticket = Arc::new(());
    reactor.submit(job(), tokio::time::Instant::now(), Some(ticket.clone()));
    assert_eq!(reactor.in_flight(), 1);
    assert_eq!(Arc::strong_count(&ticket), 2, "the probe holds its ticket");
    // Dropped without being run to its end, as a stopping runtime drops its tasks.
    running.abort();
    let _ = running.await;
    assert_eq!(reactor.in_flight(), 0);
    assert_eq!(
        Arc::strong_count(&ticket),
        1,
        "the probe in flight was let go"
    );
    reactor.submit(job(), tokio::time::Instant::now(), Some(ticket.clone()));
    assert_eq!(Arc::strong_count(&ticket), 1, "a later probe is not kept");
    assert_eq!(reactor.in_flight(), 0);
}

/// Answers sent a byte at a time, with an interim `100 Continue`, chunk extensions and
/// trailers, end the same way on both paths: every parser state is crossed at a read boundary.
#[tokio::test]
async fn answers_trickled_a_byte_at_a_time_parse_on_both_paths() {
    let answers: [(&'static str, Result<(), Reason>, Option<u16>); 6] = [
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4;ext=1\r\n{\"st\r\n10\r\natus\":\"healthy\"}\r\n0\r\nX-Trailer: y\r\n\r\n",
            Ok(()),
            Some(200),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"status\":\"healthy\"}",
            Ok(()),
            Some(200),
        ),
        (
            "HTTP/1.0 200 OK\r\n\r\n{\"status\":\"healthy\"}",
            Ok(()),
            Some(200),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n{\"status\":\"degraded\"}",
            Err(Reason::JsonMismatch),
            Some(200),
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            Err(Reason::Protocol),
            Some(200),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{\"status\"",
            Err(Reason::Reset),
            Some(200),
        ),
    ];
    for (answer, want, status) in answers {
        let server = serve(move |mut s| async move {
            read_head(&mut s).await;
            for b in answer.as_bytes() {
                if s.write_all(std::slice::from_ref(b)).await.is_err() {
                    return;
                }
                let _ = s.flush().await;
                tokio::task::yield_now().await;
            }
        })
        .await;
        let mut spec = target(&server.url("/health"));
        spec.expect.json = vec![(vec!["status".to_string()], json!("healthy"))];
        let o = probe(spec).await;
        assert_eq!((o.result, o.status), (want, status), "{answer:?}: {o:#?}");
    }
}

#[tokio::test]
async fn body_over_the_cap_delimited_by_close_is_body_too_large() {
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_ok() {
            write_zeros(&mut s, 2 * MIB, false).await;
        }
    })
    .await;
    let o = probe(capped(&server.url("/big"))).await;
    assert_reason(&o, Reason::BodyTooLarge);
}

#[tokio::test]
async fn endless_trickled_body_ends_by_the_timeout() {
    let server = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tick.tick().await;
            if s.write_all(b"10\r\n0123456789abcdef\r\n").await.is_err() {
                return;
            }
        }
    })
    .await;
    let timeout = Duration::from_millis(300);
    let mut spec = capped(&server.url("/stream"));
    spec.timeout = timeout;
    let (o, took) = timed_probe(spec).await;
    assert!(
        matches!(o.result, Err(Reason::Timeout) | Err(Reason::BodyTooLarge)),
        "{o:#?}"
    );
    assert_eq!(o.status, Some(200));
    assert!(o.body_bytes > 0, "some of the body was read: {o:#?}");
    assert!(took <= timeout + SLACK, "returned late: {took:?}");

    // A fast endless body hits the cap first.
    let fast = serve(|mut s| async move {
        read_head(&mut s).await;
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_ok() {
            write_zeros(&mut s, usize::MAX, true).await;
        }
    })
    .await;
    let mut spec = capped(&fast.url("/stream"));
    spec.timeout = Duration::from_secs(5);
    let (o, took) = timed_probe(spec).await;
    assert_reason(&o, Reason::BodyTooLarge);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

// ---------------------------------------------------------------------------------------------
// TLS

struct TlsFixture {
    server: TestServer,
    cert_pem: String,
}

/// An HTTPS server on 127.0.0.1 with a self-signed certificate for `localhost` and 127.0.0.1.
async fn tls_server() -> TlsFixture {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let server = serve(move |s| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(s).await else {
                return;
            };
            read_head(&mut tls).await;
            let resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            if tls.write_all(resp.as_bytes()).await.is_ok() {
                let _ = tls.shutdown().await;
            }
        }
    })
    .await;
    TlsFixture {
        server,
        cert_pem: ck.cert.pem(),
    }
}

impl TlsFixture {
    fn https(&self) -> String {
        format!("https://{}/", self.server.addr)
    }
}

#[tokio::test]
async fn self_signed_certificate_fails_default_verification_with_tls() {
    let fx = tls_server().await;
    let o = probe(target(&fx.https())).await;
    assert_reason(&o, Reason::Tls);
    assert_eq!(o.status, None);
    assert!(o.phases.connect > Duration::ZERO, "TCP was up: {o:#?}");
    assert!(
        o.detail
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains("certificate")),
        "{o:#?}"
    );
}

/// The same untrusted certificate, met by a scheduled target of an http module: the reason is
/// `tls` (not `connect`), through the runtime's state machine like a native target's.
#[tokio::test]
async fn a_scheduled_http_module_target_with_an_untrusted_certificate_fails_with_tls() {
    use watchfire::runtime::{Runtime, RuntimeOptions};
    use watchfire::state::Health;
    let fx = tls_server().await;
    let cfg = watchfire::config::load_str(
        "tls.yaml",
        &format!(
            "modules:\n  http_2xx:\n    prober: http\ntargets:\n  - name: secure\n    module: http_2xx\n    url: {}\n    interval: 50ms\n    timeout: 40ms\n    down_after: 1\n",
            fx.https()
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = RuntimeOptions {
        precise_timer: false,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime starts");
    let t = rt.target("secure").expect("the target");
    let last = common::eventually(Duration::from_secs(5), "the target down", || async {
        let s = t.stats.lock().expect("stats");
        (s.state.health == Health::Down).then(|| s.last.clone())
    })
    .await;
    assert_eq!(last.reason, Some(Reason::Tls), "{last:#?}");
    cancel.cancel();
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let fx = tls_server().await;
    let mut spec = target(&fx.https());
    spec.tls.insecure_skip_verify = true;
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert_eq!(o.status, Some(200));
    assert!(o.phases.tls > Duration::ZERO, "{o:#?}");
    assert!(o.phases.connect > Duration::ZERO, "{o:#?}");
    assert_eq!(o.body_bytes, 2);
}

#[tokio::test]
async fn ca_file_trusts_a_self_signed_certificate() {
    let fx = tls_server().await;
    let dir = tempfile::TempDir::new().expect("temp dir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &fx.cert_pem).expect("write CA file");

    let mut spec = target(&fx.https());
    spec.tls.ca_file = Some(ca.clone());
    spec.expect.body = Some(Regex::new("^ok$").expect("regex"));
    let o = probe(spec).await;
    assert_eq!(o.result, Ok(()), "{o:#?}");
    assert!(o.phases.tls > Duration::ZERO);

    // The certificate is trusted but not for another name.
    let mut spec = target(&fx.https());
    spec.tls.ca_file = Some(ca.clone());
    spec.tls.server_name = Some("other.example".into());
    assert_reason(&probe(spec).await, Reason::Tls);

    // And for `localhost` when it is the name checked.
    let mut spec = target(&fx.https());
    spec.tls.ca_file = Some(ca);
    spec.tls.server_name = Some("localhost".into());
    assert_eq!(probe(spec).await.result, Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Not HTTP, and connections that end early

#[tokio::test]
async fn garbage_instead_of_http_is_protocol() {
    let ssh = serve(|mut s| async move {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").await;
        drain(&mut s).await;
    })
    .await;
    let o = probe(target(&ssh.url("/"))).await;
    assert_reason(&o, Reason::Protocol);
    assert_eq!(o.status, None);

    // Binary noise after reading the request.
    let noise = serve(|mut s| async move {
        read_head(&mut s).await;
        let bytes: Vec<u8> = (0..512u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = s.write_all(&bytes).await;
        drain(&mut s).await;
    })
    .await;
    let o = probe(target(&noise.url("/"))).await;
    assert_reason(&o, Reason::Protocol);

    // A status line that is not HTTP/1.x.
    let bad_status = serve(|mut s| async move {
        read_head(&mut s).await;
        let _ = s.write_all(b"HTTP/1.1 abc Nope\r\n\r\n").await;
        drain(&mut s).await;
    })
    .await;
    assert_reason(&probe(target(&bad_status.url("/"))).await, Reason::Protocol);
}

#[tokio::test]
async fn connection_closed_or_reset_before_an_answer_is_reset() {
    // Closed right after accept, before the request is read.
    let closer = serve(|s| async move { drop(s) }).await;
    for _ in 0..20 {
        let o = probe(target(&closer.url("/"))).await;
        assert_reason(&o, Reason::Reset);
        assert_eq!(o.status, None);
    }

    // Reset (SO_LINGER 0) after reading the request.
    let resetter = serve(|mut s| async move {
        read_head(&mut s).await;
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await;
    for _ in 0..5 {
        assert_reason(&probe(target(&resetter.url("/"))).await, Reason::Reset);
    }

    // Closed half-way through the head, and half-way through the body.
    let half_head = serve(|mut s| async move {
        read_head(&mut s).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
    })
    .await;
    assert_reason(&probe(target(&half_head.url("/"))).await, Reason::Reset);
    let half_body = serve(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            .await;
    })
    .await;
    let o = probe(target(&half_body.url("/"))).await;
    assert_reason(&o, Reason::Reset);
    assert_eq!(o.status, Some(200), "the head had arrived");
}

// ---------------------------------------------------------------------------------------------
// Keep-alive

#[tokio::test]
async fn keep_alive_reuses_the_connection_and_survives_a_restart() {
    let sim = sim(FaultConfig::default()).await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.keep_alive = true;
    spec.timeout = Duration::from_secs(2);
    let prober = new_prober(spec);

    let first = probe_with(&prober).await;
    assert_eq!(first.result, Ok(()), "{first:#?}");
    assert!(!first.reused_connection);
    assert!(first.phases.connect > Duration::ZERO);

    let second = probe_with(&prober).await;
    assert_eq!(second.result, Ok(()), "{second:#?}");
    assert!(second.reused_connection, "{second:#?}");
    assert_eq!(second.phases.connect, Duration::ZERO, "{second:#?}");
    assert!(second.phases.processing > Duration::ZERO, "{second:#?}");

    // Restart: the kept connection is dead; the probe retries on a fresh one.
    sim.go_down();
    sim.come_up().expect("sim comes back");
    let third = probe_with(&prober).await;
    assert_eq!(third.result, Ok(()), "{third:#?}");
    assert!(!third.reused_connection, "{third:#?}");
    assert!(third.phases.connect > Duration::ZERO, "{third:#?}");

    let fourth = probe_with(&prober).await;
    assert_eq!(fourth.result, Ok(()), "{fourth:#?}");
    assert!(fourth.reused_connection, "kept again: {fourth:#?}");

    // While down, the stale connection does not hide the outage.
    sim.go_down();
    let down = probe_with(&prober).await;
    assert_reason(&down, Reason::Refused);
    sim.come_up().expect("sim comes back");
    let back = probe_with(&prober).await;
    assert_eq!(back.result, Ok(()), "{back:#?}");
    assert_eq!(sim.requests(), 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn keep_alive_connection_is_not_reused_after_a_timeout() {
    let sim = sim(FaultConfig::default()).await;
    let mut spec = target(&sim_url(&sim, "/health"));
    spec.keep_alive = true;
    spec.timeout = Duration::from_millis(300);
    let prober = new_prober(spec);
    assert_eq!(probe_with(&prober).await.result, Ok(()));

    sim.set_faults(FaultConfig {
        hang: true,
        ..FaultConfig::default()
    });
    let (hung, took) = {
        let t0 = std::time::Instant::now();
        let o = probe_with(&prober).await;
        (o, t0.elapsed())
    };
    assert_reason(&hung, Reason::Timeout);
    assert!(hung.reused_connection, "{hung:#?}");
    assert!(took <= Duration::from_millis(300) + SLACK, "{took:?}");

    // The hung request may now be answered on the old connection; that answer must not be
    // taken for the next probe's: the next probe uses a new connection.
    sim.set_faults(FaultConfig::default());
    let next = probe_with(&prober).await;
    assert_eq!(next.result, Ok(()), "{next:#?}");
    assert!(!next.reused_connection, "{next:#?}");
    assert!(next.phases.connect > Duration::ZERO);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Sockets

/// Sockets in `/proc/net/tcp{,6}` as (local port, remote port, state).
fn tcp_sockets() -> Vec<(u16, u16, u8)> {
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 {
                continue;
            }
            if let (Some(l), Some(r), Ok(st)) = (
                port(cols[1]),
                port(cols[2]),
                u8::from_str_radix(cols[3], 16),
            ) {
                out.push((l, r, st));
            }
        }
    }
    out
}

const TCP_TIME_WAIT: u8 = 0x06;

/// Client-side sockets in TIME_WAIT towards local port `port`, as (local port, remote port).
fn time_wait_to(port: u16) -> Vec<(u16, u16)> {
    tcp_sockets()
        .into_iter()
        .filter(|&(l, r, st)| st == TCP_TIME_WAIT && r == port && l != port)
        .map(|(l, r, _)| (l, r))
        .collect()
}
const TCP_LISTEN: u8 = 0x0A;

#[tokio::test]
async fn fresh_connections_leave_no_time_wait_on_the_prober_side() {
    let sim = sim(FaultConfig::default()).await;
    let sim_port = sim.local_addr().port();
    assert!(
        tcp_sockets()
            .iter()
            .any(|&(l, _, st)| l == sim_port && st == TCP_LISTEN),
        "the sim's listener is visible in /proc/net/tcp"
    );
    let prober = new_prober(target(&sim_url(&sim, "/health")));
    // Sockets of earlier tests whose server had the same port number may still sit in
    // TIME_WAIT (60 s): only sockets that appear during these probes count.
    let before = time_wait_to(sim_port);
    for i in 0..200 {
        let o = probe_with(&prober).await;
        assert_eq!(o.result, Ok(()), "probe {i}: {o:#?}");
        assert!(!o.reused_connection);
    }
    assert!(prober.is_lean());
    assert_eq!(
        sim.requests(),
        600,
        "200 probes on each path (hyper, lean woken, lean quiet)"
    );
    let ours: Vec<_> = time_wait_to(sim_port)
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    assert!(
        ours.is_empty(),
        "{} prober-side sockets in TIME_WAIT: {ours:?}",
        ours.len()
    );
    sim.shutdown().await;

    // A server that ignores `Connection: close` and never hangs up first: the prober closes
    // first, and still leaves nothing in TIME_WAIT.
    let stubborn = serve(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await;
        drain(&mut s).await;
    })
    .await;
    let port = stubborn.addr.port();
    let prober = new_prober(target(&stubborn.url("/")));
    let before = time_wait_to(port);
    for i in 0..50 {
        let o = probe_with(&prober).await;
        assert_eq!(o.result, Ok(()), "probe {i}: {o:#?}");
    }
    let ours: Vec<_> = time_wait_to(port)
        .into_iter()
        .filter(|s| !before.contains(s))
        .collect();
    assert!(
        ours.is_empty(),
        "{} prober-side sockets in TIME_WAIT: {ours:?}",
        ours.len()
    );
}
