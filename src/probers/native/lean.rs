//! The lean path of the native HTTP prober: one probe of a plain `http://` target at an IP
//! address on a fresh connection, as a state machine over a non-blocking socket that the
//! probe thread's [`super::reactor::Reactor`] steps on readiness events. No task, no hyper, no
//! buffers beyond the answer's own: the request is serialised once per target, the answer is
//! parsed with `httparse` as it arrives.
//!
//! It answers exactly as the hyper path does — the same stages, reasons, phases, body limits
//! and checks (the tests in `tests/prober.rs` run every case through both and compare) — and
//! leaves the rest to it: TLS and kept-alive connections. A host name is resolved first, as on
//! the hyper path (the system resolver, off the thread), then probed from its address.
//!
//! Per probe, in the common case: `socket`, `connect` (on loopback the handshake completes in
//! the call), `send` of the whole request, one `epoll_ctl` to register for the answer, then
//! `recv` until the answer is complete, `close` with a reset (`SO_LINGER` 0, as on the hyper
//! path: no TIME_WAIT on either side).
//!
//! A probe whose answer is read later than it arrived (the reactor's sweep, at the thread's
//! next wake-up) is *stamped* first: one `setsockopt(SO_TIMESTAMPNS)` instead of the
//! `epoll_ctl`, and its reads take the kernel's receive time of the data (`recvmsg`), so the
//! phases and the duration are when the answer arrived, not when the thread got to it.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, SystemTime};

use http::Method;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::time::Instant;

use super::check::check_body;
use super::wire::{parse_head, Head};
use super::{Exchange, HttpProber, Stage, INLINE_CHECK_MAX, PRERESERVE_MAX};
use crate::net::fail_from;
use crate::probe::{Fail, Outcome, Phases, Reason};

/// Reads of one socket per step (of the reactor's 16 KiB scratch: 1 MiB): a server that
/// streams a large body fast gets the thread in turns with the other probes, not until its
/// body ends.
const READ_BUDGET: usize = 64;

/// Bytes read from a socket per call.
const SCRATCH: usize = 16 * 1024;

/// The longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 64 * 1024;

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// The head is not complete yet.
    Head,
    /// This many body bytes are still to come.
    Length(u64),
    /// Chunked transfer coding, in the given part of a chunk.
    Chunked(Chunk),
    /// The body runs until the server closes (HTTP/1.0 style).
    UntilClose,
    /// The answer is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A probe thread's read buffers: the bytes of one read, and room for the kernel's receive
/// timestamp of a stamped one.
pub(super) struct Scratch {
    buf: Box<[u8]>,
    cmsg: Vec<u8>,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch {
            buf: vec![0; SCRATCH].into_boxed_slice(),
            cmsg: nix::cmsg_space!(nix::sys::time::TimeSpec),
        }
    }
}

/// What the reactor saw on the socket.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ready {
    /// Readable, closed by the peer, or in error: reading will tell.
    pub read: bool,
    /// Writable (or in error).
    pub write: bool,
}

/// One lean probe in flight.
pub(super) struct Conn {
    sock: Socket,
    addr: SocketAddr,
    planned: Instant,
    started: Instant,
    deadline: Instant,
    stage: Stage,
    connect_from: Instant,
    written: usize,
    t_written: Option<Instant>,
    first: Option<Instant>,
    /// When the answer's last bytes so far arrived.
    last: Option<Instant>,
    /// Reads take the kernel's receive time ([`Conn::stamp`]).
    stamped: bool,
    /// A read of this stamped socket came without the kernel's receive time (and was timed
    /// by the read).
    unstamped: std::cell::Cell<bool>,
    phases: Phases,
    status: Option<u16>,
    /// Answer bytes received and not yet consumed (a partial head, chunk line or trailer).
    buf: Vec<u8>,
    framing: Framing,
    body_bytes: u64,
    /// The body, kept when the checks need it.
    body: Option<Vec<u8>>,
    /// The last step spent its read budget ([`Conn::take_more`]).
    more: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("stage", &self.stage)
            .finish()
    }
}

/// How a finished lean probe concludes: now, or after its large body is checked off the probe
/// thread.
pub enum Conclusion {
    /// The outcome.
    Now(Outcome),
    /// The body is larger than what is checked inline: [`BodyCheck::run`] it.
    Check(BodyCheck),
}

/// A large body whose checks run on the blocking pool before the outcome is known.
pub struct BodyCheck {
    body: Vec<u8>,
    exchange: Exchange,
    finished: Instant,
}

impl BodyCheck {
    /// Checks the body on tokio's blocking pool and concludes the probe.
    pub async fn run(self, prober: &HttpProber) -> Outcome {
        let spec = prober.spec.clone();
        let body = self.body;
        let result = tokio::task::spawn_blocking(move || check_body(&spec.expect, &body))
            .await
            .unwrap_or_else(|e| {
                Err(Fail::new(
                    Reason::BodyMismatch,
                    format!("the body check did not finish: {e}"),
                ))
            });
        prober.conclude(self.exchange, self.finished, result, false)
    }
}

impl HttpProber {
    /// Whether this prober's probes take the lean path (a plain `http://` URL on fresh
    /// connections).
    pub fn is_lean(&self) -> bool {
        self.lean.is_some()
    }

    /// The address a lean probe connects to when the host is an IP address; `None` for a name
    /// to resolve first ([`HttpProber::lean_resolve`]).
    pub(super) fn lean_address(&self) -> Option<SocketAddr> {
        self.spec
            .url
            .ip
            .map(|ip| SocketAddr::new(ip, self.spec.url.port))
    }

    /// The outcome of a lean probe that failed with `f` before any answer.
    fn unanswered(&self, planned: Instant, started: Instant, phases: Phases, f: Fail) -> Outcome {
        let exchange = Exchange {
            planned,
            started,
            phases,
            status: None,
            body_bytes: 0,
        };
        self.conclude(exchange, Instant::now(), Err(f), false)
    }

    /// Resolves the host of a lean probe planned for `planned` that starts now, as the hyper
    /// path does: its address, when the probe started and its phases so far (the resolve), or
    /// the outcome of a probe that ended there (no such name, or the timeout).
    pub(super) async fn lean_resolve(
        &self,
        planned: Instant,
    ) -> Result<(Instant, SocketAddr, Phases), Outcome> {
        let started = Instant::now();
        let mut phases = Phases::default();
        match self.resolve(started, &mut phases).await {
            Ok(addr) => Ok((started, addr, phases)),
            Err(f) => Err(self.unanswered(planned, started, phases, f)),
        }
    }

    /// Starts a lean probe planned for `planned`, started at `started`, to `addr`: creates the
    /// socket, connects, and sends the request when the connection is already up. `Err` is the
    /// outcome of a probe that ended at once (no socket, a connect refused in the call): the
    /// common result of a probe, not an error to box.
    #[allow(clippy::result_large_err)]
    pub(super) fn lean_connect(
        &self,
        planned: Instant,
        started: Instant,
        addr: SocketAddr,
        phases: Phases,
    ) -> Result<Conn, Outcome> {
        let Some(req) = &self.lean else {
            let f = Fail::new(Reason::Setup, "not a lean probe");
            return Err(self.unanswered(planned, started, phases, f));
        };
        let fail = |f: Fail| self.unanswered(planned, started, phases, f);
        let sock = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking().cloexec(),
            Some(Protocol::TCP),
        )
        .map_err(|e| fail(fail_from(Reason::Setup, "cannot create a socket", &e)))?;
        if self.nodelay {
            let _ = sock.set_tcp_nodelay(true);
        }
        let connect_from = Instant::now();
        match sock.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
            Err(e) => {
                return Err(fail(fail_from(
                    Reason::Connect,
                    &format!("connecting to {addr}"),
                    &e,
                )))
            }
        }
        let mut conn = Conn {
            sock,
            addr,
            planned,
            started,
            deadline: started + self.timeout,
            stage: Stage::Connect(addr),
            connect_from,
            written: 0,
            t_written: None,
            first: None,
            last: None,
            stamped: false,
            unstamped: std::cell::Cell::new(false),
            phases,
            status: None,
            buf: Vec::new(),
            framing: Framing::Head,
            body_bytes: 0,
            body: None,
            more: false,
        };
        // `send` ends a probe only by failing.
        if let Some(Err(f)) = conn.send(req) {
            return Err(conn.fail(self, f));
        }
        Ok(conn)
    }
}

impl Conn {
    /// The socket, to register with the reactor.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// When the probe times out.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// When the probe started.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    /// Asks the kernel to stamp what this socket receives with its arrival time, for an
    /// answer that will be read after it arrived; false when it cannot (the reads would then
    /// time the answer late, so it must be read as soon as it arrives).
    pub(super) fn stamp(&mut self) -> bool {
        use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
        if !self.stamped {
            self.stamped = setsockopt(&self.sock, ReceiveTimestampns, &true).is_ok();
        }
        self.stamped
    }

    /// Whether a read of this stamped socket came without the kernel's receive time: this
    /// kernel does not stamp what this socket receives.
    pub(super) fn unstamped(&self) -> bool {
        self.unstamped.get()
    }

    /// Whether the whole request is sent (the connection then waits only to read).
    pub(super) fn sent(&self, prober: &HttpProber) -> bool {
        prober.lean.as_ref().is_none_or(|r| self.written >= r.len())
    }

    /// Steps the probe on a readiness event; `Some` once it has ended, with the result of the
    /// exchange (before the status and body checks).
    pub(super) fn step(
        &mut self,
        prober: &HttpProber,
        ready: Ready,
        scratch: &mut Scratch,
    ) -> Option<Result<(), Fail>> {
        let req = prober.lean.as_deref().unwrap_or_default();
        if self.written < req.len() {
            if !(ready.write || ready.read) {
                return None;
            }
            if let Some(end) = self.send(req) {
                return Some(end);
            }
            if self.written < req.len() {
                return None;
            }
        }
        if !ready.read {
            return None;
        }
        self.receive(prober, scratch)
    }

    /// Sends what is left of the request; `Some` when the probe ended.
    fn send(&mut self, req: &[u8]) -> Option<Result<(), Fail>> {
        let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL.bits();
        while self.written < req.len() {
            match self.sock.send_with_flags(&req[self.written..], flags) {
                Ok(n) => {
                    if matches!(self.stage, Stage::Connect(_)) {
                        self.phases.connect = self.connect_from.elapsed();
                        self.stage = Stage::Answer;
                    }
                    self.written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Some(Err(match self.stage {
                        Stage::Connect(addr) => {
                            fail_from(Reason::Connect, &format!("connecting to {addr}"), &e)
                        }
                        _ => fail_from(Reason::Reset, "sending the request", &e),
                    }))
                }
            }
        }
        self.t_written = Some(Instant::now());
        None
    }

    /// Reads what has arrived; `Some` when the probe ended.
    fn receive(&mut self, prober: &HttpProber, scratch: &mut Scratch) -> Option<Result<(), Fail>> {
        for _ in 0..READ_BUDGET {
            match self.read(scratch) {
                Ok((0, _)) => return Some(self.on_close()),
                Ok((n, at)) => {
                    self.first.get_or_insert(at);
                    self.last = Some(at);
                    self.buf.extend_from_slice(&scratch.buf[..n]);
                    match self.consume(prober) {
                        Ok(true) => return Some(Ok(())),
                        Ok(false) => {}
                        Err(f) => return Some(Err(f)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let what = match self.stage {
                        Stage::Body => "reading the body",
                        _ => "reading the answer",
                    };
                    return Some(Err(fail_from(Reason::Reset, what, &e)));
                }
            }
        }
        self.more = true;
        None
    }

    /// Reads once into the scratch buffer: the bytes read, and when they arrived — the kernel's
    /// receive time of the last of them on a stamped socket, now on another.
    fn read(&self, scratch: &mut Scratch) -> io::Result<(usize, Instant)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        if !self.stamped {
            let n = (&self.sock).read(&mut scratch.buf)?;
            return Ok((n, Instant::now()));
        }
        let mut iov = [io::IoSliceMut::new(&mut scratch.buf)];
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut scratch.cmsg),
            MsgFlags::empty(),
        )?;
        let stamp = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                _ => None,
            })
        });
        let now = Instant::now();
        if stamp.is_none() {
            self.unstamped.set(true);
        }
        let at = stamp.map_or(now, |ts| {
            let since_epoch = |d: SystemTime| d.duration_since(SystemTime::UNIX_EPOCH).ok();
            let arrived = Duration::new(ts.tv_sec().max(0) as u64, ts.tv_nsec() as u32);
            let age = since_epoch(SystemTime::now())
                .map_or(Duration::ZERO, |real| real.saturating_sub(arrived));
            // The answer came after the request went out and before now, whatever the wall
            // clock did in between.
            let at = now.checked_sub(age).unwrap_or(now);
            self.t_written.map_or(at, |w| at.max(w))
        });
        Ok((msg.bytes, at))
    }

    /// Whether the last step stopped reading with bytes left to read (its read budget spent):
    /// the reactor must ask for a new event, as an edge-triggered socket gives none for bytes
    /// already there. Reset by the call.
    pub(super) fn take_more(&mut self) -> bool {
        std::mem::take(&mut self.more)
    }

    /// The server closed its side: the end of an answer delimited by the close, or an answer
    /// cut short.
    fn on_close(&mut self) -> Result<(), Fail> {
        match self.framing {
            Framing::UntilClose | Framing::Done => {
                self.framing = Framing::Done;
                Ok(())
            }
            Framing::Head if self.buf.is_empty() => Err(Fail::new(
                Reason::Reset,
                "request: connection closed before an answer",
            )),
            Framing::Head => Err(Fail::new(
                Reason::Reset,
                "request: connection closed in the middle of the answer's head",
            )),
            Framing::Length(_) | Framing::Chunked(_) => Err(Fail::new(
                Reason::Reset,
                "reading the body: connection closed before the body was complete",
            )),
        }
    }

    /// Consumes the buffered bytes: the head, then the body. `Ok(true)` once the answer is
    /// complete.
    fn consume(&mut self, prober: &HttpProber) -> Result<bool, Fail> {
        let mut pos = 0;
        let done = loop {
            let avail = &self.buf[pos..];
            match self.framing {
                Framing::Done => break true,
                Framing::Head => match parse_head(avail)? {
                    Some(head) => {
                        pos += head.used;
                        self.on_head(prober, head)?;
                    }
                    None => break false,
                },
                Framing::Length(left) => {
                    let take = (avail.len() as u64).min(left) as usize;
                    let (start, end) = (pos, pos + take);
                    pos = end;
                    self.count(prober, start, end)?;
                    let left = left - take as u64;
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                    if left > 0 {
                        break false;
                    }
                }
                Framing::UntilClose => {
                    let (start, end) = (pos, self.buf.len());
                    pos = end;
                    self.count(prober, start, end)?;
                    break false;
                }
                Framing::Chunked(part) => match self.chunk(prober, part, pos)? {
                    Some(next) => pos = next,
                    None => break false,
                },
            }
        };
        self.buf.drain(..pos.min(self.buf.len()));
        Ok(done)
    }

    /// Takes a complete head: the status, the phases so far and how the body ends (an
    /// interim 1xx answer is skipped: the head of the final one follows).
    fn on_head(&mut self, prober: &HttpProber, head: Head) -> Result<(), Fail> {
        let code = head.code;
        if (100..200).contains(&code) && code != 101 {
            return Ok(());
        }
        self.status = Some(code);
        let first = self.first.unwrap_or_else(Instant::now);
        let written = self.t_written.unwrap_or(first);
        self.phases.processing = first.saturating_duration_since(written);
        self.stage = Stage::Body;
        let bodiless =
            prober.spec.method == Method::HEAD || code < 200 || code == 204 || code == 304;
        let limit = prober.spec.body_limit as u64;
        self.framing = if bodiless {
            Framing::Done
        } else if head.chunked {
            Framing::Chunked(Chunk::Size)
        } else if let Some(n) = head.length {
            if n > limit {
                return Err(Fail::new(
                    Reason::BodyTooLarge,
                    format!("Content-Length {n} exceeds the body limit of {limit} bytes"),
                ));
            }
            if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            }
        } else {
            Framing::UntilClose
        };
        if prober.spec.expect.needs_body() {
            let reserve = head.length.unwrap_or(0).min(limit).min(PRERESERVE_MAX) as usize;
            self.body = Some(Vec::with_capacity(reserve));
        }
        Ok(())
    }

    /// Steps the chunked decoder from `pos`: `Some(new pos)` after a step, `None` while more
    /// is needed.
    fn chunk(
        &mut self,
        prober: &HttpProber,
        part: Chunk,
        pos: usize,
    ) -> Result<Option<usize>, Fail> {
        let avail = &self.buf[pos..];
        let bad = |what: &str| Fail::new(Reason::Protocol, format!("reading the body: {what}"));
        match part {
            Chunk::Size => match httparse::parse_chunk_size(avail) {
                Ok(httparse::Status::Complete((used, size))) => {
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                    Ok(Some(pos + used))
                }
                Ok(httparse::Status::Partial) if avail.len() > MAX_CHUNK_LINE => {
                    Err(bad("a chunk-size line is too long"))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => Err(bad("invalid chunk size")),
            },
            Chunk::Data(left) => {
                if avail.is_empty() {
                    return Ok(None);
                }
                let take = (avail.len() as u64).min(left) as usize;
                self.count(prober, pos, pos + take)?;
                let left = left - take as u64;
                self.framing = Framing::Chunked(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                Ok(Some(pos + take))
            }
            Chunk::DataEnd => {
                if avail.len() < 2 {
                    return Ok(None);
                }
                if &avail[..2] != b"\r\n" {
                    return Err(bad("a chunk does not end with CRLF"));
                }
                self.framing = Framing::Chunked(Chunk::Size);
                Ok(Some(pos + 2))
            }
            Chunk::Trailers => {
                let end = if avail.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    avail
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|p| p + 4)
                };
                match end {
                    Some(n) => {
                        self.framing = Framing::Done;
                        Ok(Some(pos + n))
                    }
                    None if avail.len() > MAX_TRAILERS => Err(bad("the trailers are too long")),
                    None => Ok(None),
                }
            }
        }
    }

    /// Counts the body bytes `buf[start..end]` against the limit, keeping them when needed.
    fn count(&mut self, prober: &HttpProber, start: usize, end: usize) -> Result<(), Fail> {
        self.body_bytes += (end - start) as u64;
        let limit = prober.spec.body_limit as u64;
        if self.body_bytes > limit {
            return Err(Fail::new(
                Reason::BodyTooLarge,
                format!("body exceeds the limit of {limit} bytes"),
            ));
        }
        if let Some(body) = &mut self.body {
            body.extend_from_slice(&self.buf[start..end]);
        }
        Ok(())
    }

    /// The failure of a probe whose deadline passed, by the stage it was in.
    pub(super) fn timed_out(&self, prober: &HttpProber) -> Fail {
        self.stage.timed_out(&prober.spec.url.host)
    }

    /// Concludes an ended probe: the status and body checks (inline, or [`Conclusion::Check`]
    /// for a large body), then `max_latency`. Closes the connection.
    pub(super) fn finish(mut self, prober: &HttpProber, end: Result<(), Fail>) -> Conclusion {
        // An answer ends when its last bytes arrived (on a stamped socket, maybe well before
        // this call); a probe that failed, when it is concluded.
        let finished = match (&end, self.last) {
            (Ok(()), Some(last)) => last,
            _ => Instant::now(),
        };
        if end.is_ok() {
            if let Some(first) = self.first {
                self.phases.transfer = finished.saturating_duration_since(first);
            }
            prober.answered_in(finished.saturating_duration_since(self.started));
        } else {
            prober.answered_in(Duration::MAX);
        }
        let body = self.body.take();
        let exchange = self.exchange();
        self.close();
        let result = end.and_then(|()| {
            let code = exchange.status.unwrap_or(0);
            if prober.spec.expect.status_ok(code) {
                Ok(())
            } else {
                Err(Fail::new(
                    Reason::Status,
                    format!("status {code} is not an accepted one"),
                ))
            }
        });
        let result = match (result, body) {
            (Ok(()), Some(body)) if body.len() > INLINE_CHECK_MAX => {
                return Conclusion::Check(BodyCheck {
                    body,
                    exchange,
                    finished,
                })
            }
            (Ok(()), Some(body)) => check_body(&prober.spec.expect, &body),
            (r, _) => r,
        };
        Conclusion::Now(prober.conclude(exchange, finished, result, false))
    }

    /// Ends a probe that failed with `f` (no body to check): closes and concludes it.
    fn fail(self, prober: &HttpProber, f: Fail) -> Outcome {
        let exchange = self.exchange();
        self.close();
        prober.conclude(exchange, Instant::now(), Err(f), false)
    }

    /// What the exchange found so far.
    fn exchange(&self) -> Exchange {
        Exchange {
            planned: self.planned,
            started: self.started,
            phases: self.phases,
            status: self.status,
            body_bytes: self.body_bytes,
        }
    }

    /// Closes the socket with a reset (`SO_LINGER` 0), as the hyper path does: neither side
    /// keeps a TIME_WAIT, and on loopback the reset costs the kernel less than a FIN exchange
    /// (the server's side of which runs in the prober's context too).
    fn close(self) {
        let _ = self.sock.set_linger(Some(Duration::ZERO));
    }
}
