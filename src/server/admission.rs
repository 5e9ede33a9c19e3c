//! Admission: which connections and requests the server takes on, so that no flood of one kind
//! starves another.
//!
//! - **Connections** are always accepted (no permit is waited for before `accept()`, so nothing
//!   is left in the kernel's backlog past its deadline). Past `--web.max-connections`, the
//!   connection that has been idle the longest (no request in progress and nothing waiting that
//!   the server has not read: stalled in its headers or a TLS handshake, or between keep-alive
//!   requests) is closed to make room; when no open connection is idle, the new one is answered
//!   `503` with `Retry-After` and closed. Slow or idle sockets therefore cannot hold the server's capacity: a fresh
//!   connection with a prompt request always gets in.
//! - **Requests** are admitted per [`Class`], each with its own in-flight limit and no queue:
//!   over the limit, the answer is an immediate `503` with `Retry-After: 1`. A flood of
//!   `/probe` cannot delay `/-/healthy` or `/metrics`, and the reverse.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// `--web.max-connections`'s default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// `--web.max-probes-in-flight`'s default.
pub const DEFAULT_MAX_PROBES: usize = 2048;
/// `--web.max-requests-in-flight`'s default (API, pages, reload, failover actions).
pub const DEFAULT_MAX_REQUESTS: usize = 128;
/// In-flight `/-/healthy`, `/-/ready` and `/metrics` requests, at most.
pub const DEFAULT_MAX_MANAGEMENT: usize = 64;
/// `--web.header-timeout`'s default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections, at most (the longest idle one is closed to make room past it).
    pub max_connections: usize,
    /// `/probe` requests in flight, at most.
    pub max_probes: usize,
    /// API, page, reload and failover requests in flight, at most.
    pub max_requests: usize,
    /// `/-/healthy`, `/-/ready` and `/metrics` requests in flight, at most.
    pub max_management: usize,
    /// Time to send a request's headers (and to finish a TLS handshake), counted from the
    /// connection's start or the end of the previous response: it also closes idle keep-alive
    /// connections.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_probes: DEFAULT_MAX_PROBES,
            max_requests: DEFAULT_MAX_REQUESTS,
            max_management: DEFAULT_MAX_MANAGEMENT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// The admission class of a request, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `/-/healthy`, `/-/ready`, `/metrics`: what liveness probes and Prometheus ask.
    Management,
    /// `/probe`.
    Probe,
    /// Everything else: the API, pages, `/-/reload`, failover actions.
    Other,
}

impl Class {
    /// The class of a request for `path` (after the route prefix).
    pub fn of(path: &str) -> Class {
        match path {
            "/-/healthy" | "/-/ready" | "/metrics" => Class::Management,
            "/probe" => Class::Probe,
            _ => Class::Other,
        }
    }

    /// The flag that sets this class's limit, for messages.
    pub fn flag(self) -> &'static str {
        match self {
            Class::Management => "(fixed) management requests",
            Class::Probe => "--web.max-probes-in-flight",
            Class::Other => "--web.max-requests-in-flight",
        }
    }
}

/// The per-class request limits.
#[derive(Debug)]
pub struct Requests {
    management: Arc<Semaphore>,
    probe: Arc<Semaphore>,
    other: Arc<Semaphore>,
}

impl Requests {
    /// Limits as `limits` sets them.
    pub fn new(limits: &Limits) -> Requests {
        Requests {
            management: Arc::new(Semaphore::new(limits.max_management.max(1))),
            probe: Arc::new(Semaphore::new(limits.max_probes.max(1))),
            other: Arc::new(Semaphore::new(limits.max_requests.max(1))),
        }
    }

    /// A place for one request of `class`, or `None` when the class is at its limit (counted in
    /// `watchfire_server_requests_rejected_total`).
    pub fn try_admit(&self, class: Class) -> Option<OwnedSemaphorePermit> {
        let s = match class {
            Class::Management => &self.management,
            Class::Probe => &self.probe,
            Class::Other => &self.other,
        };
        let permit = s.clone().try_acquire_owned().ok();
        if permit.is_none() {
            REJECTED[class as usize].fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// One open connection as the registry sees it.
#[derive(Debug)]
pub struct Slot {
    busy: AtomicUsize,
    /// Bytes may be waiting that the server has not read yet (see [`Slot::unread`]).
    unread: AtomicBool,
    evict: CancellationToken,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            busy: AtomicUsize::new(0),
            // A connection is admitted before its task first runs: whatever it sent may be
            // waiting already.
            unread: AtomicBool::new(true),
            evict: CancellationToken::new(),
        }
    }
}

impl Slot {
    /// Marks whether bytes may be waiting on the connection that its HTTP reader has not seen.
    /// Such a connection is not idle: it is not closed to make room until the reader has had
    /// its turn. Without this, a flood of new connections faster than the server gets round to
    /// each could close a prompt client's connection between its arrival and its first read,
    /// a request lost that was never slow.
    pub fn unread(&self, waiting: bool) {
        self.unread.store(waiting, Ordering::Release);
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    /// Whether a request is in progress.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }

    /// Resolves when the registry closes this connection to make room.
    pub async fn evicted(&self) {
        self.evict.cancelled().await
    }
}

/// A request in progress on a connection (see [`Slot::busy`]).
#[derive(Debug)]
pub struct BusyGuard(Arc<Slot>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first, and the cap on them.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    inner: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    slots: BTreeMap<u64, Arc<Slot>>,
}

/// A connection's place in the registry; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    id: u64,
    slot: Arc<Slot>,
    conns: Arc<Connections>,
}

impl Admitted {
    /// The connection's slot.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns
            .inner
            .lock()
            .expect("connections lock")
            .slots
            .remove(&self.id);
    }
}

impl Connections {
    /// A registry of at most `max` connections.
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            inner: Mutex::new(Open::default()),
        })
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("connections lock").slots.len()
    }

    /// True when none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes on a new connection, closing the longest idle one when the cap is reached;
    /// `None` when every open connection is busy with a request.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut open = self.inner.lock().expect("connections lock");
        if open.slots.len() >= self.max && !evict_oldest_idle(&mut open) {
            OVER_CAPACITY.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = open.next;
        open.next += 1;
        let slot = Arc::new(Slot::default());
        open.slots.insert(id, slot.clone());
        Some(Admitted {
            id,
            slot,
            conns: self.clone(),
        })
    }

    /// Closes the longest idle connection (to free a file descriptor); false when none is idle.
    pub fn evict_one(&self) -> bool {
        evict_oldest_idle(&mut self.inner.lock().expect("connections lock"))
    }
}

/// Requests answered 503 by class (indexed by `Class as usize`), process-wide.
static REJECTED: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
/// New connections closed at the cap because every open one was busy.
static OVER_CAPACITY: AtomicU64 = AtomicU64::new(0);
/// Idle connections closed to make room for a new one (or a file descriptor).
static EVICTED_IDLE: AtomicU64 = AtomicU64::new(0);

/// Writes `watchfire_server_requests_rejected_total{class}` and
/// `watchfire_server_connections_closed_total{reason}` (process-wide: every server of the
/// process).
pub fn render(w: &mut crate::expo::Writer<'_>) {
    use crate::expo::catalog::{SERVER_CONNECTIONS_CLOSED, SERVER_REJECTED};
    w.header(&SERVER_REJECTED);
    for (class, name) in [
        (Class::Management, "management"),
        (Class::Probe, "probe"),
        (Class::Other, "other"),
    ] {
        let n = REJECTED[class as usize].load(Ordering::Relaxed);
        w.sample(&SERVER_REJECTED, &[("class", name)], n);
    }
    w.header(&SERVER_CONNECTIONS_CLOSED);
    for (reason, n) in [("idle", &EVICTED_IDLE), ("over_capacity", &OVER_CAPACITY)] {
        w.sample(
            &SERVER_CONNECTIONS_CLOSED,
            &[("reason", reason)],
            n.load(Ordering::Relaxed),
        );
    }
}

/// Closes and forgets the oldest connection with no request in progress and nothing unread.
fn evict_oldest_idle(open: &mut Open) -> bool {
    let victim = open
        .slots
        .iter()
        .find(|(_, s)| s.busy.load(Ordering::Acquire) == 0 && !s.unread.load(Ordering::Acquire))
        .map(|(id, _)| *id);
    match victim.and_then(|id| open.slots.remove(&id)) {
        Some(slot) => {
            slot.evict.cancel();
            EVICTED_IDLE.fetch_add(1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let conns = Connections::new(2);
        let a = conns.admit().expect("first");
        let b = conns.admit().expect("second");
        // Neither has been read yet: neither is idle.
        assert!(conns.admit().is_none(), "unread connections are kept");
        a.slot().unread(false);
        b.slot().unread(false);
        let _busy = a.slot().busy();
        let c = conns.admit().expect("third, by closing the idle second");
        assert!(b.slot().evict.is_cancelled());
        assert!(!a.slot().evict.is_cancelled());
        assert_eq!(conns.len(), 2);
        c.slot().unread(false);
        let _busy_c = c.slot().busy();
        assert!(conns.admit().is_none(), "every open connection is busy");
        drop(c);
        assert!(conns.admit().is_some());
    }

    #[test]
    fn classes_have_their_own_limits() {
        let limits = Limits {
            max_probes: 1,
            max_management: 1,
            ..Limits::default()
        };
        let r = Requests::new(&limits);
        let p = r.try_admit(Class::Probe).expect("one probe");
        assert!(r.try_admit(Class::Probe).is_none());
        assert!(r.try_admit(Class::Management).is_some());
        drop(p);
        assert!(r.try_admit(Class::Probe).is_some());
        assert_eq!(Class::of("/metrics"), Class::Management);
        assert_eq!(Class::of("/api/v1/targets"), Class::Other);
    }
}
