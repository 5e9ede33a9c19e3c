//! A simulated ML inference gateway with injectable faults.
//!
//! The simulator answers `GET /health`, `POST /predict` and `GET /metrics` like a
//! small model-serving gateway would, and lets a drill break it on purpose: go down
//! (connection refused), hang, answer slowly, fail a deterministic fraction of
//! requests, report itself degraded, crash after a delay, or leak memory.
//!
//! Faults are set at start ([`FaultConfig`]), through the in-process [`Sim`] handle,
//! or over HTTP on the control endpoints, which faults never affect (except `down`
//! and a crash, which take the whole listener away):
//!
//! * `GET /-/faults` — the current faults as JSON;
//! * `POST /-/faults` — set any subset of the fields, plus `down_for` ("go down now,
//!   come back after this long");
//! * `POST /-/faults/reset` — clear every fault, free leaked memory.
//!
//! It is used by `watchfire sim`, by the in-process `watchfire demo` and by tests.

mod faults;
mod http;

use std::collections::BTreeMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use ::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use faults::FaultConfig;

/// Largest accepted request body (1 MiB); larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default cap on memory retained by the `leak_rate` fault (256 MiB).
pub const DEFAULT_LEAK_MAX: u64 = 256 * 1024 * 1024;
/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long [`Sim::shutdown`] lets in-flight requests finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Model version reported by `/predict`.
pub const MODEL_VERSION: &str = "sim-1";

const LEAK_TICK: Duration = Duration::from_millis(100);

/// Errors from starting or controlling a simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// A fault configuration is out of range.
    #[error("invalid fault configuration: {0}")]
    InvalidFaults(String),
    /// The simulator crashed (`crash_after`); only [`Sim::heal`] brings it back.
    #[error("the simulator on {0} has crashed; heal it to bring it back")]
    Crashed(SocketAddr),
    /// The simulator was shut down.
    #[error("the simulator on {0} has been shut down")]
    ShutDown(SocketAddr),
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeEnd {
    /// The shutdown future completed and the simulator shut down gracefully.
    Shutdown,
    /// A `crash_after` fault fired; a process should now exit abruptly (137).
    Crashed,
}

/// Runs a simulator on `addr` until `shutdown` completes (then shuts down
/// gracefully) or a `crash_after` fault fires, and says which.
pub async fn serve(
    addr: SocketAddr,
    faults: FaultConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeEnd, SimError> {
    let sim = Sim::start(addr, faults).await?;
    tokio::select! {
        () = shutdown => {
            sim.shutdown().await;
            Ok(ServeEnd::Shutdown)
        }
        () = sim.crashed() => Ok(ServeEnd::Crashed),
    }
}

/// Handle on a running simulator; cheap to clone.
///
/// Dropping the last handle without [`Sim::shutdown`] stops the simulator abruptly.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
    _stop_on_drop: Arc<DropGuard>,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.inner.addr)
            .field("faults", &self.faults())
            .finish()
    }
}

impl Sim {
    /// Binds `addr` (port 0 allowed) and starts serving on the current tokio runtime.
    pub async fn start(addr: SocketAddr, faults: FaultConfig) -> Result<Sim, SimError> {
        faults.validate()?;
        let listener = bind(addr)?;
        let local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let hard = CancellationToken::new();
        let inner = Arc::new(Inner {
            addr: local,
            rt: Handle::current(),
            faults: watch::Sender::new(FaultConfig {
                down: false,
                crash_after: None,
                ..faults.clone()
            }),
            error_acc: Mutex::new(0.0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            leak: Mutex::new(Vec::new()),
            leaked: AtomicU64::new(0),
            serving: Mutex::new(Serving::default()),
            crashed: watch::Sender::new(false),
            crash_timer: Mutex::new(None),
            down_timer: Mutex::new(None),
            graceful: hard.child_token(),
            hard: hard.clone(),
            tracker: TaskTracker::new(),
            conn_limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        });
        inner.open(listener)?;
        inner.tracker.spawn(leak_loop(Arc::clone(&inner)));
        info!(addr = %local, ?faults, "sim listening");
        inner.set_faults(faults);
        Ok(Sim {
            inner,
            _stop_on_drop: Arc::new(hard.drop_guard()),
        })
    }

    /// The real bound address (stable across down/up).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Replaces every fault; same effect as `POST /-/faults` with all fields.
    pub fn set_faults(&self, f: FaultConfig) {
        self.inner.set_faults(f);
    }

    /// The current faults.
    pub fn faults(&self) -> FaultConfig {
        self.inner.faults.borrow().clone()
    }

    /// Closes the listener and every connection: clients get connection refused.
    pub fn go_down(&self) {
        self.inner.go_down(None);
    }

    /// Goes down now and comes back up after `d`.
    pub fn go_down_for(&self, d: Duration) {
        self.inner.go_down(Some(d));
    }

    /// Re-binds the same address and serves again (no-op when already up).
    pub fn come_up(&self) -> Result<(), SimError> {
        self.inner.come_up()
    }

    /// Clears every fault, frees leaked memory and comes back up if down or crashed.
    pub fn heal(&self) {
        self.inner.heal();
    }

    /// Total `/health` and `/predict` requests answered (any status).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `/health` and `/predict` requests being handled right now (hung, slowed, ...).
    pub fn in_flight(&self) -> u64 {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a `crash_after` fault has fired (and no heal since).
    pub fn is_crashed(&self) -> bool {
        *self.inner.crashed.borrow()
    }

    /// Graceful stop: closes the listener, lets in-flight requests finish (at most
    /// [`SHUTDOWN_GRACE`]), closes idle connections, then returns.
    pub async fn shutdown(self) {
        let inner = &self.inner;
        info!(addr = %inner.addr, "sim shutting down");
        inner.graceful.cancel();
        // Close only the listening socket: connections finish their in-flight
        // request (they saw `graceful`) and are dropped by `hard` after the grace.
        if let Some(generation) = lock(&inner.serving).current.take() {
            drop(lock(&generation.listener).take());
        }
        inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, inner.tracker.wait())
            .await
            .is_err()
        {
            warn!(addr = %inner.addr, grace = ?SHUTDOWN_GRACE, "in-flight requests did not finish; dropping them");
            inner.hard.cancel();
            inner.tracker.wait().await;
        }
        inner.hard.cancel();
        inner.free_leak();
        info!(addr = %inner.addr, "sim stopped");
    }

    /// Resolves when a `crash_after` fault fires (at once if it already has).
    pub async fn crashed(&self) {
        let mut rx = self.inner.crashed.subscribe();
        // The sender lives in `inner`, which `self` keeps alive, so this cannot fail.
        let _ = rx.wait_for(|crashed| *crashed).await;
    }
}

/// One bound listener and the connections it accepted.
struct Generation {
    listener: Arc<Mutex<Option<TcpListener>>>,
    token: CancellationToken,
}

impl Generation {
    /// Closes the listening socket now (so connects are refused at once) and
    /// drops the connections.
    fn close(self) {
        drop(lock(&self.listener).take());
        self.token.cancel();
    }
}

#[derive(Default)]
struct Serving {
    current: Option<Generation>,
    crashed: bool,
}

/// What a connection task does after its connection ends.
#[derive(Clone, Copy)]
enum AfterConn {
    GoDown(Option<Duration>),
}

type AfterSlot = Arc<Mutex<Option<AfterConn>>>;

struct Inner {
    addr: SocketAddr,
    rt: Handle,
    faults: watch::Sender<FaultConfig>,
    error_acc: Mutex<f64>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    counts: Mutex<BTreeMap<(&'static str, u16), u64>>,
    leak: Mutex<Vec<Box<[u8]>>>,
    leaked: AtomicU64,
    serving: Mutex<Serving>,
    crashed: watch::Sender<bool>,
    crash_timer: Mutex<Option<CancellationToken>>,
    down_timer: Mutex<Option<CancellationToken>>,
    /// Cancelled when a graceful shutdown starts.
    graceful: CancellationToken,
    /// Cancelled to drop everything at once (parent of `graceful` and generations).
    hard: CancellationToken,
    tracker: TaskTracker,
    conn_limit: Arc<Semaphore>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Binds a listening socket with `SO_REUSEADDR`, so the address can be re-bound
/// after going down even with connections in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, SimError> {
    let err = |source| SimError::Bind { addr, source };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

impl Inner {
    /// Starts serving on `listener` as a new generation.
    fn open(self: &Arc<Self>, listener: std::net::TcpListener) -> Result<(), SimError> {
        let listener = {
            let _rt = self.rt.enter();
            TcpListener::from_std(listener).map_err(|source| SimError::Bind {
                addr: self.addr,
                source,
            })?
        };
        let generation = Generation {
            listener: Arc::new(Mutex::new(Some(listener))),
            token: self.hard.child_token(),
        };
        let task = accept_loop(
            Arc::clone(self),
            Arc::clone(&generation.listener),
            generation.token.clone(),
        );
        lock(&self.serving).current = Some(generation);
        self.tracker.spawn_on(task, &self.rt);
        Ok(())
    }

    fn go_down(self: &Arc<Self>, back_after: Option<Duration>) {
        cancel_timer(&self.down_timer);
        let generation = lock(&self.serving).current.take();
        if let Some(generation) = generation {
            generation.close();
        }
        self.faults.send_modify(|f| f.down = true);
        warn!(addr = %self.addr, ?back_after, "sim down: listener closed");
        if let Some(d) = back_after {
            let token = self.graceful.child_token();
            *lock(&self.down_timer) = Some(token.clone());
            let inner = Arc::clone(self);
            self.tracker.spawn_on(
                async move {
                    tokio::select! {
                        () = tokio::time::sleep(d) => {
                            if let Err(e) = inner.come_up() {
                                error!(addr = %inner.addr, error = %e, "sim could not come back up");
                            }
                        }
                        () = token.cancelled() => {}
                    }
                },
                &self.rt,
            );
        }
    }

    fn come_up(self: &Arc<Self>) -> Result<(), SimError> {
        cancel_timer(&self.down_timer);
        if self.graceful.is_cancelled() {
            return Err(SimError::ShutDown(self.addr));
        }
        {
            let serving = lock(&self.serving);
            if serving.crashed {
                return Err(SimError::Crashed(self.addr));
            }
            if serving.current.is_some() {
                return Ok(());
            }
        }
        self.open(bind(self.addr)?)?;
        self.faults.send_modify(|f| f.down = false);
        info!(addr = %self.addr, "sim up again");
        Ok(())
    }

    fn crash(&self) {
        cancel_timer(&self.down_timer);
        let generation = {
            let mut serving = lock(&self.serving);
            serving.crashed = true;
            serving.current.take()
        };
        if let Some(generation) = generation {
            generation.close();
        }
        self.faults.send_modify(|f| f.down = true);
        self.crashed.send_replace(true);
        error!(addr = %self.addr, "sim crashed (crash_after fault)");
    }

    fn heal(self: &Arc<Self>) {
        cancel_timer(&self.crash_timer);
        cancel_timer(&self.down_timer);
        let down = self.faults.borrow().down;
        self.faults.send_replace(FaultConfig {
            down,
            ..FaultConfig::default()
        });
        *lock(&self.error_acc) = 0.0;
        self.free_leak();
        lock(&self.serving).crashed = false;
        self.crashed.send_replace(false);
        match self.come_up() {
            Ok(()) | Err(SimError::ShutDown(_)) => {}
            Err(e) => error!(addr = %self.addr, error = %e, "sim could not come back up"),
        }
        info!(addr = %self.addr, "sim healed: all faults cleared");
    }

    /// Replaces every fault, (re)arming the crash timer when `crash_after` changes
    /// and going down/up when `down` changes.
    fn set_faults(self: &Arc<Self>, mut f: FaultConfig) {
        if let Err(e) = f.validate() {
            warn!(addr = %self.addr, error = %e, "clamping error_rate");
            f.error_rate = if f.error_rate.is_nan() {
                0.0
            } else {
                f.error_rate.clamp(0.0, 1.0)
            };
        }
        let old = self.faults.borrow().clone();
        if f.error_rate != old.error_rate {
            *lock(&self.error_acc) = 0.0;
        }
        if f.crash_after != old.crash_after {
            self.arm_crash(f.crash_after);
        }
        let want_down = f.down;
        self.faults.send_replace(FaultConfig {
            down: old.down,
            ..f.clone()
        });
        info!(addr = %self.addr, faults = ?f, "faults set");
        if want_down && !old.down {
            self.go_down(None);
        } else if !want_down && old.down {
            if let Err(e) = self.come_up() {
                warn!(addr = %self.addr, error = %e, "cannot clear the down fault");
            }
        }
    }

    fn arm_crash(self: &Arc<Self>, after: Option<Duration>) {
        cancel_timer(&self.crash_timer);
        let Some(d) = after else { return };
        let token = self.graceful.child_token();
        *lock(&self.crash_timer) = Some(token.clone());
        let inner = Arc::clone(self);
        self.tracker.spawn_on(
            async move {
                tokio::select! {
                    () = tokio::time::sleep(d) => inner.crash(),
                    () = token.cancelled() => {}
                }
            },
            &self.rt,
        );
    }

    /// Adds `error_rate` to the accumulator; true when this request must fail.
    fn roll_error(&self) -> bool {
        let rate = self.faults.borrow().error_rate;
        if rate <= 0.0 {
            return false;
        }
        let mut acc = lock(&self.error_acc);
        *acc += rate;
        if *acc >= 1.0 - 1e-9 {
            *acc -= 1.0;
            true
        } else {
            false
        }
    }

    fn record(&self, path: &'static str, code: StatusCode) {
        if matches!(path, "/health" | "/predict") {
            self.requests.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.counts).entry((path, code.as_u16())).or_insert(0) += 1;
    }

    /// Retains `bytes` more (up to `leak_max`), unless the leak fault was cleared
    /// meanwhile: the faults are read under the leak lock, which `free_leak` takes
    /// after clearing them, so a reset always wins.
    fn grow_leak(&self, bytes: u64) {
        let mut chunks = lock(&self.leak);
        let (rate, max) = {
            let f = self.faults.borrow();
            (f.leak_rate, f.leak_max)
        };
        let bytes = if rate == 0 { 0 } else { bytes };
        let mut held = self.leaked.load(Ordering::Relaxed);
        while held > max {
            let Some(chunk) = chunks.pop() else { break };
            held -= chunk.len() as u64;
        }
        let add = usize::try_from(bytes.min(max.saturating_sub(held))).unwrap_or(0);
        if add > 0 {
            // A non-zero fill writes every page, so resident memory really grows.
            chunks.push(vec![0xA5_u8; add].into_boxed_slice());
            held += add as u64;
        }
        self.leaked.store(held, Ordering::Relaxed);
    }

    fn free_leak(&self) {
        let mut chunks = lock(&self.leak);
        *chunks = Vec::new();
        self.leaked.store(0, Ordering::Relaxed);
    }
}

fn cancel_timer(slot: &Mutex<Option<CancellationToken>>) {
    if let Some(token) = lock(slot).take() {
        token.cancel();
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: Arc<Mutex<Option<TcpListener>>>,
    token: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            () = token.cancelled() => break,
            () = inner.graceful.cancelled() => break,
            p = Arc::clone(&inner.conn_limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = poll_fn(|cx| match lock(&listener).as_ref() {
            Some(l) => l.poll_accept(cx).map(Some),
            None => Poll::Ready(None),
        });
        let accepted = tokio::select! {
            () = token.cancelled() => break,
            () = inner.graceful.cancelled() => break,
            a = accepted => a,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                let conn = serve_conn(Arc::clone(&inner), stream, peer, token.clone(), permit);
                inner.tracker.spawn(conn);
            }
            Some(Err(e)) => {
                warn!(addr = %inner.addr, error = %e, "accept failed");
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!(addr = %inner.addr, "accept loop ended");
}

async fn serve_conn(
    inner: Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    token: CancellationToken,
    _permit: OwnedSemaphorePermit,
) {
    let after: AfterSlot = Arc::new(Mutex::new(None));
    let svc = {
        let inner = Arc::clone(&inner);
        let after = Arc::clone(&after);
        hyper::service::service_fn(move |req| {
            let inner = Arc::clone(&inner);
            let after = Arc::clone(&after);
            async move { http::handle(&inner, req, &after).await }
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        () = token.cancelled() => None,
        () = inner.graceful.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => Some(r),
                () = token.cancelled() => None,
            }
        }
    };
    match ended {
        None => debug!(%peer, "connection dropped"),
        Some(Err(e)) => debug!(%peer, error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
    }
    let next = *lock(&after);
    if let Some(AfterConn::GoDown(back_after)) = next {
        inner.go_down(back_after);
    }
}

async fn leak_loop(inner: Arc<Inner>) {
    let mut rx = inner.faults.subscribe();
    let mut last = Instant::now();
    let mut carry = 0.0_f64;
    loop {
        let rate = rx.borrow_and_update().leak_rate;
        if rate == 0 {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                () = inner.graceful.cancelled() => return,
            }
            last = Instant::now();
            carry = 0.0;
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(LEAK_TICK) => {}
            r = rx.changed() => {
                if r.is_err() {
                    return;
                }
                // Faults changed: re-read the rate; time already owed still counts.
                continue;
            }
            () = inner.graceful.cancelled() => return,
        }
        let now = Instant::now();
        let owed = rate as f64 * now.duration_since(last).as_secs_f64() + carry;
        last = now;
        let whole = owed.floor();
        carry = owed - whole;
        inner.grow_leak(whole as u64);
    }
}
