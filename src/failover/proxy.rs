//! The failover proxy: forwards every request to the group's active instance over pooled
//! keep-alive connections, and loses no request to a dead primary.
//!
//! - A request whose connection to an instance failed before any byte was sent (connect
//!   refused or timed out, or a pooled connection found closed) goes to the next instance that
//!   is not down — whatever its method — and the failure takes the instance down at once.
//! - A request that may have reached an instance is resent only when it can be replayed: an
//!   idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or an `Idempotency-Key` header
//!   (the client's promise that a second delivery is harmless), and a body of at most
//!   [`REPLAY_BODY_MAX`] bytes, which is then buffered before the first send; otherwise the
//!   client gets a 502.
//! - When traffic is switched away from an instance because it went down, every connection to
//!   it is closed at once: the requests waiting on it (a frozen process
//!   accepts and never answers) are resent to the new active instance right away when nothing
//!   was sent or they can be replayed, and the others get a prompt 502 instead of waiting for
//!   the proxy timeout. A voluntary switch (failback, manual) lets requests in flight finish.
//! - A connection watchfire cannot open for want of a local resource (file descriptors,
//!   ephemeral ports: [`crate::probe::Reason::Prober`]) blames no instance: 503 at once.
//! - No instance up: 503 at once with `Retry-After`. Too many requests in flight: 503.
//! - Bodies stream both ways; hop-by-hop headers are dropped; `X-Forwarded-For`, `Forwarded`,
//!   `X-Forwarded-Proto` and `X-Forwarded-Host` are added; `Host` is the client's
//!   (`host: preserve`, default) or the instance's (`host: instance`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::Group;
use crate::config::ProxyConfig;
use crate::record::{Buckets, DURATION_BUCKETS};
use crate::web::{Authorization, ServerStream, WebConfig, WebSource};

mod headers;
mod upstream;

use headers::{is_idempotent, strip_hop_by_hop};
use upstream::{Attempt, Pool, Sender, UpBody};

type DownBody = Either<Incoming, Full<Bytes>>;

/// Proxy counters of a group.
pub struct Stats {
    /// Requests by code and the duration histogram, under one lock: one lock per request.
    counters: Mutex<Counters>,
    /// Resends after a connection failed before sending.
    retries_connect: AtomicU64,
    /// Resends of idempotent requests after a failure that may have reached the instance.
    retries_replay: AtomicU64,
    /// Resends after traffic was switched away from the instance the request waited on.
    retries_switch: AtomicU64,
    /// Connections not opened for want of a local resource (answered 503).
    local_errors: AtomicU64,
    /// Requests being forwarded now (bounded by `max_in_flight`). A plain counter: the bound
    /// is only ever tried, never waited for, so a semaphore (whose release takes a lock) would
    /// be all cost.
    in_flight: AtomicUsize,
    max_in_flight: usize,
    pools: Vec<Pool>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").finish_non_exhaustive()
    }
}

impl Stats {
    pub(super) fn new(instances: usize, max_in_flight: usize) -> Stats {
        Stats {
            counters: Mutex::new(Counters::default()),
            retries_connect: AtomicU64::new(0),
            retries_replay: AtomicU64::new(0),
            retries_switch: AtomicU64::new(0),
            local_errors: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: max_in_flight.max(1),
            pools: (0..instances).map(|_| Pool::default()).collect(),
        }
    }

    /// Takes an in-flight slot; `None` when all `max_in_flight` are taken.
    fn enter(&self) -> Option<InFlight<'_>> {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(InFlight(&self.in_flight))
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().expect("proxy stats lock poisoned")
    }

    /// Counts a request the proxy answered itself or that ended without a response head.
    fn count(&self, instance: Option<usize>, code: u16) {
        *self
            .counters()
            .requests
            .entry((instance, code))
            .or_insert(0) += 1;
    }

    /// Counts a response head from `instance` that took `secs` since the request came.
    fn answered(&self, instance: usize, code: u16, secs: f64) {
        let mut c = self.counters();
        *c.requests.entry((Some(instance), code)).or_insert(0) += 1;
        c.duration.observe(&DURATION_BUCKETS, secs);
    }

    /// Requests answered by `instance` (None: by the proxy itself) with `code`.
    pub fn requests(&self, instance: Option<usize>, code: u16) -> u64 {
        self.counters()
            .requests
            .get(&(instance, code))
            .copied()
            .unwrap_or(0)
    }

    /// Every request answered so far and those of them answered 5xx (by an instance or by the
    /// proxy itself): what an incident's figures count.
    pub fn totals(&self) -> (u64, u64) {
        let c = self.counters();
        c.requests
            .iter()
            .fold((0, 0), |(all, failed), ((_, code), n)| {
                (all + n, failed + if *code >= 500 { *n } else { 0 })
            })
    }

    /// Requests being forwarded now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests resent to another instance (connection failures, idempotent replays).
    pub fn retries(&self) -> (u64, u64) {
        (
            self.retries_connect.load(Ordering::Relaxed),
            self.retries_replay.load(Ordering::Relaxed),
        )
    }

    /// Requests resent to the new active instance after traffic was switched away from the
    /// (down) instance they waited on.
    pub fn switch_retries(&self) -> u64 {
        self.retries_switch.load(Ordering::Relaxed)
    }

    /// Closes every connection to instance `i` (traffic was switched away from it because it
    /// went down): the requests waiting on it end at once, and are resent to the new active
    /// instance when nothing of them was sent or they can be replayed, else answered 502.
    pub(super) fn evict(&self, i: usize) {
        if let Some(p) = self.pools.get(i) {
            p.evict();
        }
    }
}

/// One request's in-flight slot, given back on drop.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Counters {
    /// Requests by (instance index or none, status code).
    requests: BTreeMap<(Option<usize>, u16), u64>,
    /// Time to the response head.
    duration: Buckets<16>,
}

/// What one client connection's requests share: the group, the proxy's settings, the client's
/// address already formatted for the forwarding headers, and the upstream connection this
/// client connection last used. HTTP/1.1 requests on one connection come one after another, so
/// that upstream connection is free again (its response streamed) when the next request comes:
/// no pool lock and no task to hand it back per request. When the client connection ends, the
/// upstream connection goes back to the group's pool.
struct ConnCtx {
    group: Arc<Group>,
    cfg: Arc<ProxyConfig>,
    /// `X-Forwarded-For` value when the request brings none: the client's IP.
    client_ip: HeaderValue,
    /// `for=...` of `Forwarded` (IPv6 quoted and bracketed).
    forwarded_for: String,
    /// `Forwarded` for the last `Host` seen on this connection (usually the only one).
    forwarded_cache: Mutex<Option<(HeaderValue, HeaderValue)>>,
    /// The upstream connection of the last request: (instance, sender).
    sticky: Mutex<Option<(usize, Sender)>>,
    /// The web config this connection was accepted under (`proxy.web_config`).
    web: Option<Arc<WebConfig>>,
}

impl ConnCtx {
    fn new(group: Arc<Group>, cfg: Arc<ProxyConfig>, peer: SocketAddr) -> ConnCtx {
        let ip = peer.ip().to_string();
        let forwarded_for = if peer.is_ipv6() {
            format!("for=\"[{ip}]\"")
        } else {
            format!("for={ip}")
        };
        ConnCtx {
            group,
            cfg,
            client_ip: HeaderValue::from_str(&ip).expect("an IP address is a valid header value"),
            forwarded_for,
            forwarded_cache: Mutex::new(None),
            sticky: Mutex::new(None),
            web: None,
        }
    }

    /// `Forwarded: for=...;proto=http[;host="..."]` for a request with this `Host`.
    fn forwarded(&self, host: Option<&HeaderValue>) -> Option<HeaderValue> {
        let Some(host) = host else {
            let v = format!("{};proto=http", self.forwarded_for);
            return HeaderValue::from_str(&v).ok();
        };
        let mut cache = self
            .forwarded_cache
            .lock()
            .expect("forwarded cache poisoned");
        if let Some((h, v)) = cache.as_ref() {
            if h == host {
                return Some(v.clone());
            }
        }
        let h = host.to_str().ok()?;
        let v = HeaderValue::from_str(&format!("{};proto=http;host=\"{h}\"", self.forwarded_for))
            .ok()?;
        *cache = Some((host.clone(), v.clone()));
        Some(v)
    }

    /// This connection's upstream connection to instance `i`, when it has one that is free.
    async fn take_sticky(&self, i: usize) -> Option<Sender> {
        let (j, mut s) = self.sticky.lock().expect("sticky lock poisoned").take()?;
        if j != i {
            // Traffic moved to another instance: the old connection goes back to its pool.
            self.group.proxy.pools[j].put_if_ready(s);
            return None;
        }
        if s.is_ready() {
            return Some(s);
        }
        if s.is_closed() {
            return None;
        }
        // The previous response's end is still on its way through the connection's task (a
        // connection that closes instead says so at once).
        match tokio::time::timeout(self.cfg.connect_timeout, s.ready()).await {
            Ok(Ok(())) => Some(s),
            _ => None,
        }
    }

    fn keep(&self, i: usize, s: Sender) {
        let old = self
            .sticky
            .lock()
            .expect("sticky lock poisoned")
            .replace((i, s));
        if let Some((j, s)) = old {
            self.group.proxy.pools[j].put_if_ready(s);
        }
    }
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        if let Some((i, s)) = self.sticky.get_mut().ok().and_then(|s| s.take()) {
            self.group.proxy.pools[i].put_if_ready(s);
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<DownBody> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Either::Right(Full::new(Bytes::from(format!("{text}\n")))))
        .expect("static response parts are valid")
}

/// A `503` of the proxy's own, counted under no instance, with `Retry-After: secs` (at least 1).
fn unavailable(stats: &Stats, text: &str, secs: u64) -> Response<DownBody> {
    stats.count(None, 503);
    let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, text);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The header by which a client allows a second delivery (parsed once, not per request).
static IDEMPOTENCY_KEY: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// The largest request body buffered so that its request can be replayed.
pub const REPLAY_BODY_MAX: u64 = 64 * 1024;

/// A request that may be sent again: its head, and its body when it has one.
struct Replay {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    /// Whether the request may be sent twice: an idempotent method, or an `Idempotency-Key`.
    fn allowed(parts: &http::request::Parts) -> bool {
        is_idempotent(&parts.method) || parts.headers.contains_key(&IDEMPOTENCY_KEY)
    }

    /// The request as it will be sent, with its replay when it has one. Only a request that
    /// may be resent needs a copy of its head (copying the header map of every request cost
    /// ~4 % of the proxy's CPU); one with a body declared no larger than [`REPLAY_BODY_MAX`]
    /// is read whole first (within `timeout`), the others stream and are not replayed.
    async fn prepare(
        parts: http::request::Parts,
        body: Incoming,
        timeout: Duration,
    ) -> Result<(Request<UpBody>, Option<Replay>), String> {
        if !Replay::allowed(&parts) {
            return Ok((Request::from_parts(parts, Either::Left(body)), None));
        }
        let bytes = if body.is_end_stream() {
            Bytes::new()
        } else if body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= REPLAY_BODY_MAX)
        {
            match tokio::time::timeout(timeout, body.collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => return Err(format!("reading the request body: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the request body did not arrive within {timeout:?}"
                    ))
                }
            }
        } else {
            return Ok((Request::from_parts(parts, Either::Left(body)), None));
        };
        let replay = Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body: bytes.clone(),
        };
        let req = Request::from_parts(parts, Either::Right(Full::new(bytes)));
        Ok((req, Some(replay)))
    }

    fn request(&self) -> Request<UpBody> {
        let mut r = Request::new(Either::Right(Full::new(self.body.clone())));
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

/// One request's way through the instances.
struct Delivery {
    method: Method,
    replay: Option<Replay>,
    client_host: Option<HeaderValue>,
    start: Instant,
    /// Instances tried (a bit per index).
    tried: u64,
    last_error: Option<String>,
    /// Sent again after a failure that may have reached an instance.
    replayed: bool,
}

/// Forwards one request.
async fn forward(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Response<DownBody> {
    let stats = &ctx.group.proxy;
    let Some(_slot) = stats.enter() else {
        return unavailable(stats, "failover proxy: too many requests in flight", 1);
    };
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    let client_host = parts.headers.get(header::HOST).cloned();
    headers::rewrite_request(&ctx, &mut parts, client_host.as_ref());
    let method = parts.method.clone();
    let (req, replay) = match Replay::prepare(parts, body, ctx.cfg.timeout).await {
        Ok(x) => x,
        Err(detail) => {
            stats.count(None, 400);
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("failover proxy: {detail}"),
            );
        }
    };
    let d = Delivery {
        method,
        replay,
        client_host,
        start,
        tried: 0,
        last_error: None,
        replayed: false,
    };
    deliver(&ctx, req, d).await
}

/// Sends `req` to the active instance, and on to the next ones while that is safe: a request
/// nothing of which was sent goes anywhere; one that may have been sent only when it can be
/// replayed ([`Replay`]).
async fn deliver(ctx: &ConnCtx, mut req: Request<UpBody>, mut d: Delivery) -> Response<DownBody> {
    let (group, cfg) = (&ctx.group, &ctx.cfg);
    let stats = &group.proxy;
    loop {
        let Some(i) = group.pick(d.tried) else {
            return exhausted(ctx, &d);
        };
        d.tried |= 1 << i;
        let inst = &group.cfg.instances[i];
        let host = if cfg.preserve_host {
            d.client_host.clone()
        } else {
            HeaderValue::from_str(&inst.authority).ok()
        };
        if let Some(h) = host {
            req.headers_mut().insert(header::HOST, h);
        }
        let why = match upstream::attempt(ctx, i, req).await {
            Attempt::Answered(resp) => {
                stats.answered(i, resp.status().as_u16(), d.start.elapsed().as_secs_f64());
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(parts, Either::Left(body));
            }
            Attempt::NotSent(_, f) if f.reason.is_local() => {
                // watchfire's own shortage (file descriptors, ports): no instance is to blame,
                // and another would fare no better. Logged at the 1st, 2nd, 4th... time.
                let n = stats.local_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(group = %group.cfg.name, instance = %inst.authority, reason = f.reason.as_str(), local_errors = n, detail = %f.detail, "failover proxy: cannot open a connection (short of a local resource)");
                }
                let text = format!("failover proxy: cannot open a connection: {}", f.detail);
                return unavailable(stats, &text, 1);
            }
            Attempt::NotSent(r, f) => {
                debug!(group = %group.cfg.name, instance = %inst.authority, detail = %f.detail, "not delivered; trying the next instance");
                group.passive_failure(i, f.reason, f.detail.clone());
                stats.retries_connect.fetch_add(1, Ordering::Relaxed);
                d.last_error = Some(f.detail);
                req = r;
                continue;
            }
            Attempt::Evicted(Some(r)) => {
                // Not sent, and the instance is no longer active: the next one, whatever the
                // method.
                stats.retries_switch.fetch_add(1, Ordering::Relaxed);
                req = r;
                continue;
            }
            Attempt::TimedOut => {
                stats.count(Some(i), 504);
                let text = format!(
                    "failover proxy: {} did not answer within {:?}",
                    inst.authority, cfg.timeout
                );
                return plain(StatusCode::GATEWAY_TIMEOUT, &text);
            }
            Attempt::MaybeSent(detail) => MaybeReached::Failed(detail),
            Attempt::Evicted(None) => MaybeReached::Evicted,
        };
        let Some(replay) = &d.replay else {
            return not_resent(stats, i, &inst.authority, &d.method, why);
        };
        let counter = match why {
            MaybeReached::Failed(detail) => {
                d.last_error = Some(detail);
                &stats.retries_replay
            }
            MaybeReached::Evicted => &stats.retries_switch,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        d.replayed = true;
        req = replay.request();
    }
}

/// Why a request that may have reached an instance did not get its answer there.
enum MaybeReached {
    /// The connection failed mid-request.
    Failed(String),
    /// Traffic was switched away from the instance (it went down) while the request waited.
    Evicted,
}

/// The prompt `502` of a request that may have reached instance `i` and cannot be sent again.
fn not_resent(
    stats: &Stats,
    i: usize,
    authority: &str,
    method: &Method,
    why: MaybeReached,
) -> Response<DownBody> {
    stats.count(Some(i), 502);
    let text = match why {
        MaybeReached::Failed(detail) => format!(
            "failover proxy: the instance failed mid-request and {method} requests are not resent: {detail}"
        ),
        MaybeReached::Evicted => format!(
            "failover proxy: traffic moved away from {authority} (it is down) while this request waited for its answer, and {method} requests are not resent"
        ),
    };
    plain(StatusCode::BAD_GATEWAY, &text)
}

/// The answer when no instance is left to try: `503` when nothing was sent anywhere (as when
/// none is up), `502` for a request that was sent again and failed again.
fn exhausted(ctx: &ConnCtx, d: &Delivery) -> Response<DownBody> {
    let stats = &ctx.group.proxy;
    if d.replayed {
        stats.count(None, 502);
        let e = d.last_error.as_deref().unwrap_or_default();
        return plain(
            StatusCode::BAD_GATEWAY,
            &format!("failover proxy: no instance could take the request ({e})"),
        );
    }
    let text = match &d.last_error {
        Some(e) => format!("failover proxy: no instance is reachable ({e})"),
        None => "failover proxy: no instance is up".to_string(),
    };
    unavailable(stats, &text, ctx.cfg.retry_after.as_secs())
}

/// Binds `n` listeners on `addr` (at least one), all with `SO_REUSEPORT`, so that the kernel
/// spreads new connections over the proxy's threads. The first decides the port (`addr` may
/// say port 0); only its failure is an error, with the address: a port held by another program
/// fails here. `SO_REUSEPORT` also lets a reload start a new proxy before the old one has let go
/// of the port.
pub fn bind(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_one(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..n.max(1) {
        match bind_one(actual) {
            Ok(l) => all.push(l),
            Err(e) => {
                debug!(listen = %actual, error = %e, "extra proxy listener not bound; fewer proxy threads");
                break;
            }
        }
    }
    Ok(all)
}

fn bind_one(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Starts the proxy: one OS thread per listener, each with its own single-threaded tokio
/// runtime that accepts on its listener and runs those client connections and the upstream
/// connections they open. A request and its upstream exchange stay on one thread: no task is
/// woken across threads and nothing is stolen between workers, which on the shared runtime was
/// a third of the proxy's CPU per request. The threads end when `cancel` fires (after
/// [`serve`]'s grace period for open connections).
pub fn start(
    listeners: Vec<std::net::TcpListener>,
    group: Arc<Group>,
    cfg: ProxyConfig,
    web: Option<Arc<WebSource>>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    for (k, listener) in listeners.into_iter().enumerate() {
        let (group, cfg, cancel) = (group.clone(), cfg.clone(), cancel.clone());
        let web = web.clone();
        crate::threads::spawn_single_threaded(format!("watchfire-proxy-{k}"), async move {
            match TcpListener::from_std(listener) {
                Ok(l) => serve(l, group, cfg, web, cancel).await,
                Err(e) => warn!(error = %e, "proxy listener cannot be registered"),
            }
        })?;
    }
    Ok(())
}

/// Serves the proxy until the group is stopped. With `web` (the group's `proxy.web_config`),
/// every connection gets the web config's TLS handshake and every request its basic-auth check
/// (401 without the right credentials, which are then not passed on to the instance).
pub async fn serve(
    listener: TcpListener,
    group: Arc<Group>,
    cfg: ProxyConfig,
    web: Option<Arc<WebSource>>,
    cancel: CancellationToken,
) {
    let cfg = Arc::new(cfg);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut ctx = ConnCtx::new(group.clone(), cfg.clone(), peer);
        let cancel = cancel.clone();
        let web = web.as_ref().map(|w| w.current());
        tracker.spawn(async move {
            let stream = match &web {
                None => ServerStream::Plain(stream),
                Some(w) => match w.accept(stream, HEADER_READ_TIMEOUT).await {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(error = %e, "proxy TLS handshake failed");
                        return;
                    }
                },
            };
            ctx.web = web;
            let ctx = Arc::new(ctx);
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(admit(ctx, req).await) }
            });
            let conn = server::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

/// Time a client has to finish the TLS handshake, then to send each request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The web config's basic-auth check before [`forward`]: `401` with `WWW-Authenticate` for
/// missing or wrong credentials, `503` when every check is busy; the `Authorization` the proxy
/// consumed is not passed on.
async fn admit(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<DownBody> {
    let Some(web) = ctx.web.as_ref().filter(|w| !w.users().is_empty()) else {
        return forward(ctx, req).await;
    };
    let refuse = |status: StatusCode, challenge: bool| {
        let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(match status {
            StatusCode::UNAUTHORIZED => b"Unauthorized\n",
            _ => b"busy, retry\n",
        }))));
        *r.status_mut() = status;
        if challenge {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        r
    };
    match web
        .authorize(req.headers().get(header::AUTHORIZATION))
        .await
    {
        Authorization::Allowed(_) => {
            req.headers_mut().remove(header::AUTHORIZATION);
            forward(ctx, req).await
        }
        Authorization::Denied => refuse(StatusCode::UNAUTHORIZED, true),
        Authorization::Busy => refuse(StatusCode::SERVICE_UNAVAILABLE, false),
    }
}

/// Renders the proxy families of the groups that have a proxy; nothing when none has.
pub fn render(groups: &[Arc<Group>], w: &mut crate::expo::Writer<'_>) {
    use crate::expo::catalog::{
        PROXY_IN_FLIGHT, PROXY_REQUESTS, PROXY_REQUEST_DURATION, PROXY_RETRIES,
    };
    let with_proxy: Vec<&Arc<Group>> = groups.iter().filter(|g| g.cfg.proxy.is_some()).collect();
    if with_proxy.is_empty() {
        return;
    }
    w.header(&PROXY_REQUESTS);
    for g in &with_proxy {
        for ((i, code), n) in g.proxy.counters().requests.iter() {
            let inst = i
                .map(|i| g.cfg.instances[i].authority.as_str())
                .unwrap_or("none");
            let code = code.to_string();
            let labels = [
                ("group", g.cfg.name.as_str()),
                ("instance", inst),
                ("code", &code),
            ];
            w.sample(&PROXY_REQUESTS, &labels, *n);
        }
    }
    w.header(&PROXY_RETRIES);
    for g in &with_proxy {
        let (c, r) = g.proxy.retries();
        let s = g.proxy.switch_retries();
        for (reason, n) in [("connect", c), ("replay", r), ("switch", s)] {
            w.sample(
                &PROXY_RETRIES,
                &[("group", &g.cfg.name), ("reason", reason)],
                n,
            );
        }
    }
    w.header(&PROXY_IN_FLIGHT);
    for g in &with_proxy {
        let busy = g
            .proxy
            .in_flight
            .load(Ordering::Relaxed)
            .min(g.proxy.max_in_flight);
        w.sample(&PROXY_IN_FLIGHT, &[("group", &g.cfg.name)], busy);
    }
    w.header(&PROXY_REQUEST_DURATION);
    for g in &with_proxy {
        let b = g.proxy.counters().duration.clone();
        let labels = crate::expo::LabelSet::of(&[("group", &g.cfg.name)]);
        w.histogram(
            &PROXY_REQUEST_DURATION,
            &labels,
            &DURATION_BUCKETS,
            &b.counts,
            b.sum,
        );
    }
}

#[cfg(test)]
mod tests;
