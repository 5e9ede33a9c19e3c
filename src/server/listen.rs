//! The accept loops (one per `--web.listen-address`) and the life of one connection: admission
//! ([`super::admission`]), the TLS handshake and the header timeout, eviction, shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::admission::{Admitted, Connections, Requests, Slot};
use super::arrival::Peeked;
use super::{AppState, ServeOptions, SHUTDOWN_GRACE};

/// The listen backlog asked for (the kernel caps it at `net.core.somaxconn`). A flood of
/// connections waits here only for the accept loop, which never waits for a permit; the usual
/// 128 would drop SYNs under a burst of a few hundred scrapes and cost each a 1 s retransmit.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`serve_with`] with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a
/// restart does not wait for old connections' TIME_WAIT).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What every connection task shares.
pub(super) struct Shared {
    pub state: Arc<AppState>,
    pub opts: ServeOptions,
    pub conns: Arc<Connections>,
    pub requests: Requests,
}

/// What a connection over the cap is told, when it is plain HTTP, before it is closed.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 40\r\nConnection: close\r\n\r\n\
watchfire: too many connections, retry\n";

/// Serves on every listener until `shutdown` resolves, then lets in-flight requests finish
/// (bounded by [`SHUTDOWN_GRACE`]).
pub async fn serve_with(
    listeners: Vec<TcpListener>,
    state: Arc<AppState>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        state,
        conns: Connections::new(opts.limits.max_connections),
        requests: Requests::new(&opts.limits),
        opts,
    });
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    for listener in listeners {
        super::arrival::enable(&listener);
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
    }
    shutdown.await;
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "connections still open after the grace period; closing");
    }
    Ok(())
}

/// Whether an accept error means this process is out of file descriptors.
fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == nix::errno::Errno::EMFILE as i32 || c == nix::errno::Errno::ENFILE as i32
    )
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if out_of_fds(&e) => {
                    // Close the longest idle connection to free a descriptor; back off briefly
                    // when none is idle rather than spin.
                    let freed = shared.conns.evict_one();
                    warn!(error = %e, freed_idle_connection = freed, "accept failed: out of file descriptors");
                    let pause = if freed { 1 } else { 20 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let Some(admitted) = shared.conns.admit() else {
            refuse(stream, &shared);
            continue;
        };
        tracker.spawn(connection(
            stream,
            peer,
            admitted,
            shared.clone(),
            cancel.clone(),
        ));
    }
}

/// Answers a connection over the cap `503` (plain HTTP only: a TLS client would not read it)
/// without waiting, and closes it.
fn refuse(stream: TcpStream, shared: &Shared) {
    debug!("connection refused: every open connection is busy");
    if !shared.opts.web.current().tls() {
        let _ = stream.try_write(OVER_CAPACITY);
    }
}

/// Waits (within the header timeout `limit`) for a connection's first bytes, a request or a
/// TLS hello, and returns when the kernel received them (`Some(None)` when that is not known):
/// the first request's deadline counts from there. `None` when nothing came in time, or the
/// connection was evicted or the server stops. While bytes may be waiting unread the
/// connection is not idle (see `Slot::unread`); a TLS handshake is a conversation, so under
/// TLS (`!plain`) it is idle until a request is in progress.
async fn first_bytes(
    stream: &TcpStream,
    peer: SocketAddr,
    slot: &Slot,
    limit: Duration,
    plain: bool,
    cancel: &CancellationToken,
) -> Option<Option<std::time::Instant>> {
    let mut peeked = super::arrival::peek(stream, limit);
    if peeked == Peeked::Nothing {
        slot.unread(false);
        tokio::select! {
            r = tokio::time::timeout(limit, stream.readable()) => {
                if !matches!(r, Ok(Ok(()))) {
                    debug!(%peer, "closed: nothing sent within the header timeout");
                    return None;
                }
            }
            _ = slot.evicted() => return None,
            _ = cancel.cancelled() => return None,
        }
        slot.unread(plain);
        peeked = super::arrival::peek(stream, limit);
    }
    if !plain {
        slot.unread(false);
    }
    Some(match peeked {
        Peeked::Bytes(at) => at,
        Peeked::Nothing => None,
    })
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let slot = admitted.slot().clone();
    let web = shared.opts.web.current();
    let limit = shared.opts.limits.header_timeout;
    let plain = !web.tls();
    let started = std::time::Instant::now();
    let Some(arrived) = first_bytes(&stream, peer, &slot, limit, plain, &cancel).await else {
        return;
    };
    let first = std::cell::Cell::new(arrived);
    // (What is left of it also bounds this connection's later requests: a client that waited
    // to send its first request keeps a shorter idle timeout.)
    let header_timeout = limit
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let io = tokio::select! {
        r = web.accept(stream, header_timeout) => match r {
            Ok(io) => io,
            Err(e) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        },
        _ = slot.evicted() => return,
        _ = cancel.cancelled() => return,
    };
    drop(web);
    let svc_slot = slot.clone();
    let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let busy = svc_slot.busy();
        let shared = shared.clone();
        let arrived = first.take().unwrap_or_else(std::time::Instant::now);
        req.extensions_mut()
            .insert(super::arrival::Arrived(arrived));
        async move {
            let resp = super::dispatch(&shared, req).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    // Once the reader has had a turn, what was waiting is read: a complete request is in
    // progress (busy), a partial one is a slow client (idle).
    let read = std::future::poll_fn(|cx| {
        let r = conn.as_mut().poll(cx);
        slot.unread(false);
        r
    });
    tokio::select! {
        r = read => {
            if let Err(e) = r {
                debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = slot.evicted() => {
            // Evicted while idle; a request that began meanwhile is let finish.
            if !slot.is_busy() {
                return;
            }
        }
        _ = cancel.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
    drop(admitted);
}
