//! The native HTTP prober (a target's `url:` without `module:`), on hyper's connection-level
//! client so every phase can be timed. What it probes is an [`HttpCheck`] (in `check`, with the
//! URL and the response checks); the timing marks on its connection are in `timed`.
//!
//! Per probe: resolve (skipped for IP literals) → TCP connect → TLS (rustls) → request →
//! first byte → body (read up to the cap) → checks. One deadline bounds the whole probe; each
//! stage knows which reason a timeout in it means (`connect_timeout` before the connection is
//! up, `timeout` after).
//!
//! Fresh connections (the default) are closed with `SO_LINGER` 0 after the answer, so the
//! prober never holds sockets in TIME_WAIT: at thousands of probes per second TIME_WAIT would
//! otherwise exhaust the ephemeral port range (28k ports, 60 s each ≈ 470 connections/s per
//! destination). The request also says `Connection: close`, so a well-behaved server closes
//! first and no RST is needed at all. With `keep_alive: true` one connection is kept per target
//! and reused while the server keeps it open.

mod check;
mod lean;
mod reactor;
mod wire;

pub use check::{Expect, HttpCheck, ProbeUrl, DEFAULT_BODY_LIMIT};
pub use lean::{BodyCheck, Conclusion};
pub use reactor::{LeanJob, Reactor};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::net::driver::{handshake_http1, Driver, Http1Options};
use crate::net::{self, fail_from, SocketOptions};
use crate::probe::{Fail, Outcome, Phases, Reason};

use crate::net::timed::{Marks, TimedIo};
use check::check_body;

/// What a probe's exchange found, for its outcome: when it was planned and started, its
/// phases, and its answer's status and body size.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    planned: Instant,
    started: Instant,
    phases: Phases,
    status: Option<u16>,
    body_bytes: u64,
}

/// `User-Agent` sent when the target sets none.
pub const USER_AGENT_VALUE: &str = concat!("watchfire/", env!("CARGO_PKG_VERSION"));

type Sender = http1::SendRequest<Full<Bytes>>;

/// Probes one [`HttpCheck`]. Cheap to share; holds the kept-alive connection when asked to.
pub struct HttpProber {
    spec: Arc<HttpCheck>,
    /// Bound on one whole probe.
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    uri: Uri,
    /// Whether connections need `TCP_NODELAY`. A fresh connection sends its one request in one
    /// write; when that fits in one segment, Nagle's algorithm has nothing to hold back and the
    /// option would only cost a syscall per probe. Kept-alive connections and large requests
    /// (whose last partial segment could wait for a delayed ACK) get it.
    nodelay: bool,
    /// Every request's headers, built once.
    headers: HeaderMap,
    kept: Mutex<Option<(Sender, Arc<Marks>)>>,
    /// The whole request, serialised once, when the probes take the lean path ([`lean`]): a
    /// plain `http://` URL, on fresh connections.
    lean: Option<Box<[u8]>>,
    /// How long the last lean probe took to get its whole answer, in nanoseconds; `u64::MAX`
    /// before the first answer and after a probe that got none. The reactor reads an answer
    /// expected before the thread's next wake-up then, instead of waking for it.
    answer_ns: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for HttpProber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProber")
            .field("url", &self.spec.url.full)
            .finish()
    }
}

impl HttpProber {
    /// Prepares a prober for `spec`, each probe bounded by `timeout` (builds its TLS config
    /// once).
    pub fn new(spec: Arc<HttpCheck>, timeout: Duration) -> Result<HttpProber, String> {
        let tls = if spec.url.tls {
            Some(crate::net::tls::client_config(&spec.tls).map_err(|e| e.message)?)
        } else {
            None
        };
        let uri: Uri = spec
            .url
            .path_and_query
            .parse()
            .map_err(|e| format!("bad request path `{}`: {e}", spec.url.path_and_query))?;
        let request_bytes = spec.body.len()
            + spec.url.path_and_query.len()
            + spec
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        let headers = request_headers(&spec);
        let lean = (!spec.url.tls && !spec.keep_alive).then(|| {
            wire::request_bytes(&spec.method, &spec.url.path_and_query, &headers, &spec.body)
                .into_boxed_slice()
        });
        Ok(HttpProber {
            nodelay: spec.keep_alive || request_bytes > 1024,
            headers,
            lean,
            spec,
            timeout,
            tls,
            uri,
            kept: Mutex::new(None),
            answer_ns: std::sync::atomic::AtomicU64::new(u64::MAX),
        })
    }

    /// Notes how long a lean probe took to get its answer (`Duration::MAX`: it got none).
    fn answered_in(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.answer_ns
            .store(ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long the last lean probe took to get its answer, if it got one.
    fn answer_time(&self) -> Option<Duration> {
        match self.answer_ns.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The check this prober probes.
    pub fn check(&self) -> &Arc<HttpCheck> {
        &self.spec
    }

    /// The bound on one whole probe.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one probe now; `planned` is when the scheduler meant it to start.
    pub async fn probe(&self, planned: Instant) -> Outcome {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut phases = Phases::default();
        let mut status = None;
        let mut body_bytes = 0;
        let mut reused = false;
        let mut stage = Stage::Resolve;
        // One timer for the whole probe (not one per stage): the stage it ends in says which
        // reason a timeout means.
        let run = self.run(
            started,
            &mut stage,
            &mut phases,
            &mut status,
            &mut body_bytes,
            &mut reused,
        );
        let result = match timeout_at(deadline, run).await {
            Ok(r) => r,
            Err(_) => Err(stage.timed_out(&self.spec.url.host)),
        };
        let exchange = Exchange {
            planned,
            started,
            phases,
            status,
            body_bytes,
        };
        self.conclude(exchange, Instant::now(), result, reused)
    }

    /// The outcome of a probe whose exchange ended at `finished` with `result`: a successful
    /// one slower than `max_latency` fails as too slow.
    fn conclude(
        &self,
        exchange: Exchange,
        finished: Instant,
        result: Result<(), Fail>,
        reused: bool,
    ) -> Outcome {
        let Exchange {
            planned,
            started,
            phases,
            status,
            body_bytes,
        } = exchange;
        let (result, detail) = match result {
            Ok(()) => match self.spec.expect.max_latency {
                Some(max) if finished - started > max => (
                    Err(Reason::TooSlow),
                    Some(format!(
                        "answered in {:?}, slower than max_latency {:?}",
                        finished - started,
                        max
                    )),
                ),
                _ => (Ok(()), None),
            },
            Err(f) => (Err(f.reason), Some(f.detail)),
        };
        Outcome {
            planned,
            started,
            finished,
            phases,
            status,
            body_bytes,
            result,
            detail,
            reused_connection: reused,
        }
    }

    async fn run(
        &self,
        started: Instant,
        stage: &mut Stage,
        phases: &mut Phases,
        status: &mut Option<u16>,
        body_bytes: &mut u64,
        reused: &mut bool,
    ) -> Result<(), Fail> {
        if self.spec.keep_alive {
            let kept = self.take_kept();
            if let Some((sender, marks)) = kept {
                *reused = true;
                let t0 = Instant::now();
                match self
                    .exchange(
                        sender,
                        Driver::detached(),
                        &marks,
                        t0,
                        stage,
                        phases,
                        status,
                        body_bytes,
                    )
                    .await
                {
                    Err(f) if f.reason == Reason::Reset && status.is_none() => {
                        // The server closed the idle connection: not the target's fault. Retry
                        // once on a fresh connection, within the same deadline.
                        *reused = false;
                        *phases = Phases::default();
                    }
                    other => return other,
                }
            }
        }
        let addr = self.resolve(started, phases).await?;
        *stage = Stage::Connect(addr);
        let t_conn = Instant::now();
        let tcp = connect(addr, self.nodelay).await?;
        let t_connected = Instant::now();
        phases.connect = t_connected - t_conn;
        let marks = Arc::new(Marks::new());
        if let Some(cfg) = &self.tls {
            let name = crate::net::tls::server_name(
                self.spec.tls.server_name.as_deref(),
                &self.spec.url.host,
            )
            .map_err(|m| Fail::new(Reason::Tls, m))?;
            let connector = tokio_rustls::TlsConnector::from(cfg.clone());
            *stage = Stage::Tls;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| fail_from(Reason::Tls, "TLS handshake", &e))?;
            phases.tls = t_connected.elapsed();
            let io = TimedIo {
                inner: tls,
                marks: marks.clone(),
                skip_shutdown: !self.spec.keep_alive,
            };
            self.handshake_and_exchange(io, &marks, stage, phases, status, body_bytes)
                .await
        } else {
            let io = TimedIo {
                inner: tcp,
                marks: marks.clone(),
                skip_shutdown: !self.spec.keep_alive,
            };
            self.handshake_and_exchange(io, &marks, stage, phases, status, body_bytes)
                .await
        }
    }

    fn take_kept(&self) -> Option<(Sender, Arc<Marks>)> {
        let mut guard = self.kept.lock().expect("kept-connection lock poisoned");
        match guard.take() {
            Some((s, m)) if !s.is_closed() => Some((s, m)),
            _ => None,
        }
    }

    async fn resolve(&self, started: Instant, phases: &mut Phases) -> Result<SocketAddr, Fail> {
        let url = &self.spec.url;
        if let Some(ip) = url.ip {
            return Ok(SocketAddr::new(ip, url.port));
        }
        // Prefer IPv4 when both exist: loopback and most internal services answer there.
        let policy = net::Policy::prefer(net::Family::V4);
        let deadline = started + self.timeout;
        let ip = net::resolve(&url.host, Some(url.port), &policy, deadline, None)
            .await
            .map_err(|e| Fail::new(Reason::Dns, e.to_string()))?;
        phases.resolve = started.elapsed();
        Ok(SocketAddr::new(ip, url.port))
    }

    async fn handshake_and_exchange<T>(
        &self,
        io: TimedIo<T>,
        marks: &Arc<Marks>,
        stage: &mut Stage,
        phases: &mut Phases,
        status: &mut Option<u16>,
        body_bytes: &mut u64,
    ) -> Result<(), Fail>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let hs = handshake_http1(io, HTTP1);
        *stage = Stage::Handshake;
        let (sender, conn) = hs
            .await
            .map_err(|e| fail_from(Reason::Protocol, "HTTP handshake", &e))?;
        if self.spec.keep_alive {
            // The connection outlives this probe: it needs its own task.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let t0 = Instant::now();
            let conn = Driver::detached();
            self.exchange(sender, conn, marks, t0, stage, phases, status, body_bytes)
                .await
        } else {
            // Drive the connection in this task: no spawn per probe, and the socket closes the
            // moment the probe returns.
            let t0 = Instant::now();
            let conn = Driver::new(Box::pin(conn));
            self.exchange(sender, conn, marks, t0, stage, phases, status, body_bytes)
                .await
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        mut sender: Sender,
        mut conn: Driver<'_>,
        marks: &Arc<Marks>,
        t_send: Instant,
        stage: &mut Stage,
        phases: &mut Phases,
        status: &mut Option<u16>,
        body_bytes: &mut u64,
    ) -> Result<(), Fail> {
        marks.reset();
        let req = self.request();
        *stage = Stage::Answer;
        let resp = conn
            .drive(sender.send_request(req))
            .await
            .map_err(|e| fail_from(Reason::Protocol, "connection", &e))?
            .map_err(|e| fail_from(Reason::Protocol, "request", &e))?;
        let t_head = Instant::now();
        let first = marks.first_read().unwrap_or(t_head);
        let written = marks.written().unwrap_or(t_send);
        phases.processing = first.saturating_duration_since(written);
        *status = Some(resp.status().as_u16());
        *stage = Stage::Body;
        let buf = self.read_body(&mut conn, resp, body_bytes).await?;
        phases.transfer = first.elapsed();
        if self.spec.keep_alive && !sender.is_closed() {
            let mut guard = self.kept.lock().expect("kept-connection lock poisoned");
            *guard = Some((sender, marks.clone()));
        }
        let code = status.unwrap_or(0);
        if !self.spec.expect.status_ok(code) {
            return Err(Fail::new(
                Reason::Status,
                format!("status {code} is not an accepted one"),
            ));
        }
        match buf {
            Some(buf) => self.check_kept(buf).await,
            None => Ok(()),
        }
    }

    /// Reads the body while driving the connection, counting `body_bytes` against the body
    /// limit; the bytes are kept (`Some`) only when the checks need them.
    async fn read_body(
        &self,
        conn: &mut Driver<'_>,
        resp: http::Response<Incoming>,
        body_bytes: &mut u64,
    ) -> Result<Option<Vec<u8>>, Fail> {
        let declared = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit = self.spec.body_limit as u64;
        if declared.is_some_and(|n| n > limit) {
            return Err(Fail::new(
                Reason::BodyTooLarge,
                format!(
                    "Content-Length {} exceeds the body limit of {limit} bytes",
                    declared.unwrap_or(0)
                ),
            ));
        }
        let keep = self.spec.expect.needs_body();
        let mut buf = Vec::new();
        if keep {
            // What the server declares, up to 1 MiB: a large configured limit must not let a
            // server's header make the prober reserve gigabytes before any of them arrive.
            buf.reserve(declared.unwrap_or(0).min(limit).min(PRERESERVE_MAX) as usize);
        }
        let mut body: Incoming = resp.into_body();
        loop {
            let frame = conn
                .drive(body.frame())
                .await
                .map_err(|e| fail_from(Reason::Reset, "connection", &e))?;
            match frame {
                None => break,
                Some(Err(e)) => return Err(fail_from(Reason::Reset, "reading the body", &e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        *body_bytes += data.len() as u64;
                        if *body_bytes > limit {
                            return Err(Fail::new(
                                Reason::BodyTooLarge,
                                format!("body exceeds the limit of {limit} bytes"),
                            ));
                        }
                        if keep {
                            buf.extend_from_slice(&data);
                        }
                    }
                }
            }
        }
        Ok(keep.then_some(buf))
    }

    /// Checks the kept body: small ones inline, large ones on the blocking pool.
    async fn check_kept(&self, buf: Vec<u8>) -> Result<(), Fail> {
        if buf.len() <= INLINE_CHECK_MAX {
            return check_body(&self.spec.expect, &buf);
        }
        // A regex or JSON parse over up to `body_limit` bytes can take milliseconds, and the
        // probe thread runs other targets' probes meanwhile: large bodies are checked on
        // tokio's blocking pool. The probe's timeout still bounds the wait.
        let spec = self.spec.clone();
        tokio::task::spawn_blocking(move || check_body(&spec.expect, &buf))
            .await
            .unwrap_or_else(|e| {
                Err(Fail::new(
                    Reason::BodyMismatch,
                    format!("the body check did not finish: {e}"),
                ))
            })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.spec.body.clone()));
        *req.method_mut() = self.spec.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The headers every request of `spec` carries: the configured ones, then `Host`, `User-Agent`
/// and (fresh connections) `Connection: close` unless configured.
fn request_headers(spec: &HttpCheck) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(spec.headers.len() + 3);
    for (k, v) in &spec.headers {
        h.append(k, v.clone());
    }
    if !h.contains_key(HOST) {
        if let Ok(v) = HeaderValue::from_str(&spec.url.authority) {
            h.insert(HOST, v);
        }
    }
    if !h.contains_key(USER_AGENT) {
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    }
    if !spec.keep_alive && !h.contains_key(CONNECTION) {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    h
}

/// Where a probe is; on timeout it decides the reason and the message.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Resolve,
    Connect(SocketAddr),
    Tls,
    Handshake,
    Answer,
    Body,
}

impl Stage {
    fn timed_out(self, host: &str) -> Fail {
        match self {
            Stage::Resolve => Fail::new(Reason::Dns, format!("resolving {host} timed out")),
            Stage::Connect(addr) => Fail::new(
                Reason::ConnectTimeout,
                format!("connecting to {addr} timed out"),
            ),
            Stage::Tls => Fail::new(Reason::Timeout, "TLS handshake timed out"),
            Stage::Handshake => Fail::new(Reason::Timeout, "HTTP handshake timed out"),
            Stage::Answer => Fail::new(Reason::Timeout, "no answer before the timeout"),
            Stage::Body => Fail::new(Reason::Timeout, "body not read before the timeout"),
        }
    }
}

/// Connects with `SO_LINGER` 0 (no TIME_WAIT on our side), and `TCP_NODELAY` when asked (see
/// [`HttpProber::nodelay`]).
async fn connect(addr: SocketAddr, nodelay: bool) -> Result<TcpStream, Fail> {
    let opts = SocketOptions {
        linger_zero: true,
        nodelay,
        ..SocketOptions::default()
    };
    net::connect(addr, opts, || format!("connecting to {addr}")).await
}

/// Bodies up to this size are checked on the probe's own thread (a JSON parse of 32 KiB takes
/// ~0.1 ms); larger ones on the blocking pool.
/// The native prober's HTTP/1.1 client: header names as written, response heads up to the
/// blackbox prober's limit ([`crate::probers::http_client::MAX_RESPONSE_HEAD_BYTES`]).
const HTTP1: Http1Options = Http1Options {
    max_buf_size: crate::probers::http_client::MAX_RESPONSE_HEAD_BYTES + 64 * 1024,
    max_header_size: crate::probers::http_client::MAX_RESPONSE_HEAD_BYTES,
    title_case_headers: false,
};

const INLINE_CHECK_MAX: usize = 32 * 1024;

/// The most body buffer reserved from a declared `Content-Length` before the bytes arrive.
const PRERESERVE_MAX: u64 = 1024 * 1024;
