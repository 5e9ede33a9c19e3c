//! The proxy's side towards the instances: a pool of kept-alive connections per instance, the
//! connection setup (through [`crate::net::connect`]), one attempt at sending a request, and
//! eviction — when traffic is switched away from an instance because it went down, every
//! connection to it is closed at once, so that the requests waiting on it (a frozen process
//! accepts and never answers) end now instead of at the proxy timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

use super::ConnCtx;
use crate::config::Instance;
use crate::net::{self, Policy, ResolveError, SocketOptions};
use crate::probe::{Fail, Reason};

/// A request body towards an instance: the client's, streamed, or none (a request sent again).
/// A request body: the client's, streamed, or a buffered copy (empty, or kept for a replay).
pub(super) type UpBody = Either<Incoming, Full<Bytes>>;
pub(super) type Sender = client::SendRequest<UpBody>;

/// Idle connections kept per instance.
const MAX_IDLE: usize = 64;

/// One instance's upstream connections: the idle ones, and the eviction generation that closes
/// them all.
pub(super) struct Pool {
    idle: Mutex<Vec<Sender>>,
    /// Evictions so far; read by each request before and after it is sent (an atomic load).
    generation: AtomicU64,
    /// The same count, watched by each connection's task: a change closes the connection.
    evictions: watch::Sender<u64>,
}

impl Default for Pool {
    fn default() -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            evictions: watch::Sender::new(0),
        }
    }
}

impl Pool {
    pub(super) fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        while let Some(s) = idle.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    pub(super) fn put_if_ready(&self, s: Sender) {
        if !s.is_ready() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(s);
        }
    }

    /// The eviction generation now.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Closes every connection to this instance, idle or busy: requests waiting on one of them
    /// end at once (and are resent elsewhere when that is safe).
    pub(super) fn evict(&self) {
        self.idle.lock().expect("pool lock poisoned").clear();
        let g = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.evictions.send_replace(g);
    }
}

/// How one attempt at an instance ended.
pub(super) enum Attempt {
    Answered(Response<Incoming>),
    /// Nothing was sent: the request comes back to go elsewhere, with why.
    NotSent(Request<UpBody>, Fail),
    /// It may have reached the instance.
    MaybeSent(String),
    /// No response head within the proxy timeout.
    TimedOut,
    /// Traffic was switched away from the instance (it went down) while the request was on
    /// its way: the request comes back when it had not been sent yet.
    Evicted(Option<Request<UpBody>>),
}

/// Where `inst` is ([`net::resolve`]: an IP literal as it is, a name by the system's address
/// selection).
async fn address(inst: &Instance, deadline: Instant) -> Result<SocketAddr, Fail> {
    match net::resolve(&inst.host, Some(inst.port), &Policy::SYSTEM, deadline, None).await {
        Ok(ip) => Ok(SocketAddr::new(ip, inst.port)),
        Err(ResolveError::TimedOut { .. }) => Err(timed_out(inst)),
        Err(e) => Err(net::fail_from(Reason::Dns, "resolving", &e)),
    }
}

/// Opens a connection to `inst` within `connect_timeout` and starts its task, which ends with
/// the connection or when the instance is evicted from `pool`.
pub(super) async fn connect(
    inst: &Instance,
    pool: &Pool,
    connect_timeout: std::time::Duration,
) -> Result<Sender, Fail> {
    // Subscribed before the connection exists: an eviction from now on closes it.
    let mut evicted = pool.evictions.subscribe();
    let deadline = Instant::now() + connect_timeout;
    let opts = SocketOptions {
        nodelay: true,
        ..SocketOptions::default()
    };
    let addr = address(inst, deadline).await?;
    let context = || format!("connecting to {}", inst.authority);
    let stream = timeout_at(deadline, net::connect(addr, opts, context))
        .await
        .map_err(|_| timed_out(inst))??;
    let (sender, conn) = client::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            net::fail_from(
                Reason::Protocol,
                &format!("handshake with {}", inst.authority),
                &e,
            )
        })?;
    tokio::spawn(async move {
        tokio::select! {
            _ = conn => {}
            // The group's pool is gone (an `Err`): the branch is disabled, the connection lives.
            Ok(()) = evicted.changed() => {}
        }
    });
    Ok(sender)
}

fn timed_out(inst: &Instance) -> Fail {
    Fail::new(
        Reason::ConnectTimeout,
        format!("connecting to {} timed out", inst.authority),
    )
}

/// Sends `req` to instance `i`: on this client connection's kept connection, a pooled one or a
/// new one.
pub(super) async fn attempt(ctx: &ConnCtx, i: usize, mut req: Request<UpBody>) -> Attempt {
    let (group, cfg) = (&ctx.group, &*ctx.cfg);
    let inst = &group.cfg.instances[i];
    let pool = &group.proxy.pools[i];
    let generation = pool.generation();
    let mut sticky = ctx.take_sticky(i).await;
    loop {
        let (mut sender, fresh) = match sticky.take().or_else(|| pool.take()) {
            Some(s) => (s, false),
            None => match connect(inst, pool, cfg.connect_timeout).await {
                Ok(s) => (s, true),
                Err(f) => return Attempt::NotSent(req, f),
            },
        };
        // Evicted while this request waited for a connection: nothing sent, go elsewhere. From
        // here on an eviction closes the connection under the request (its task watches).
        if pool.generation() != generation {
            return Attempt::Evicted(Some(req));
        }
        match timeout(cfg.timeout, sender.try_send_request(req)).await {
            Err(_) => return Attempt::TimedOut,
            Ok(Ok(resp)) => {
                // Free again once this response (its body included) has streamed through,
                // which is before this client connection's next request.
                ctx.keep(i, sender);
                return Attempt::Answered(resp);
            }
            Ok(Err(mut e)) => {
                let message = e.take_message();
                if pool.generation() != generation {
                    return Attempt::Evicted(message);
                }
                match message {
                    // A kept connection that had closed: not the instance's fault, try another.
                    Some(r) if !fresh => req = r,
                    Some(r) => {
                        let what = inst.authority.as_str();
                        let f = net::fail_from(Reason::Reset, what, &e.into_error());
                        return Attempt::NotSent(r, f);
                    }
                    None => {
                        let e = e.into_error();
                        return Attempt::MaybeSent(format!(
                            "{}: {}",
                            inst.authority,
                            net::chain(&e)
                        ));
                    }
                }
            }
        }
    }
}
