//! The event loop of the lean probes ([`super::lean`]) of one probe thread: one private
//! `epoll` instance, registered with the thread's tokio reactor as a single descriptor, that
//! a lean probe's socket joins until it ends. A readiness event steps the probe it names; a
//! deadline passing ends it. A probe costs no task, no waker and no timer of its own: the
//! thread's one loop task wakes once for every batch of events and sleeps until the earliest
//! deadline of the probes in flight.
//!
//! Quiet probes ([`Reactor::submit_quiet`]) save the thread most of those wake-ups. Their
//! sockets stay out of the epoll instance at first; before the thread's scheduler sleeps it
//! [`Reactor::park`]s them: a probe whose answer is expected (from its target's last one)
//! before the scheduler wakes again is stamped ([`Conn::stamp`]) and left out, the others
//! join the epoll instance. At the wake-up, [`Reactor::sweep`] reads the answers that came in
//! meanwhile, with the kernel's receive times; a probe still waiting joins the epoll instance
//! then. On loopback or a LAN, where answers take tens of microseconds and a busy thread's
//! scheduler wakes every few hundred, the thread then wakes about once per batch of probes
//! started instead of once more per batch of answers.
//!
//! What finished probes are for is the [`LeanJob`]'s business (the runtime records them).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lean::{Conclusion, Conn, Ready, Scratch};
use super::HttpProber;
use crate::probe::{Fail, Outcome, Phases};

/// What runs lean probes through a [`Reactor`]: a target with its prober, told of each
/// outcome.
pub trait LeanJob: Send + Sync + 'static {
    /// Travels with one probe from [`Reactor::submit`] to [`LeanJob::finish`] (the runtime's
    /// in-flight token).
    type Ticket: Send + 'static;
    /// The prober; [`HttpProber::is_lean`] must be true.
    fn prober(&self) -> &HttpProber;
    /// Takes the outcome of a probe (on the reactor's thread).
    fn finish(self: Arc<Self>, outcome: Outcome, ticket: Self::Ticket);
}

/// Events taken from the epoll instance per call.
const BATCH: usize = 256;

/// The longest a quiet probe's answer waits to be read after the thread's next wake-up is due:
/// a scheduler sleeping longer first registers its quiet probes for readiness events.
const SWEEP_HORIZON: std::time::Duration = std::time::Duration::from_millis(1);

/// The lean probes of one thread. Create it, [`Reactor::run`] it on that thread's runtime and
/// [`Reactor::submit`] probes from that thread.
pub struct Reactor<J: LeanJob> {
    epoll: AsyncFd<RawEpoll>,
    inner: Mutex<Inner<J>>,
    /// Wakes the loop when a probe's deadline is earlier than the one it sleeps until.
    rearm: Notify,
    /// How far away the next wake-up may be for quiet probes to wait for it.
    horizon: std::time::Duration,
    /// A socket that asks for receive timestamps for the reactor's whole life: while one does,
    /// the kernel stamps every packet it receives, and a quiet probe's socket asking for them
    /// later still finds its answer stamped (without it, the first socket to ask switches
    /// stamping on machine-wide some time later, and the last one to close switches it off,
    /// at some cost each time). `None` when the kernel refused: quiet probes are then not
    /// kept out of the epoll instance.
    stamps: Option<socket2::Socket>,
    /// Probes whose answer a sweep read whole, so far.
    swept: std::sync::atomic::AtomicU64,
    /// A swept answer came without its receive time (a kernel that does not stamp these
    /// sockets): quiet probes are registered at once from then on, as reading them late
    /// would time them late.
    unstamped: std::sync::atomic::AtomicBool,
}

impl<J: LeanJob> std::fmt::Debug for Reactor<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").finish_non_exhaustive()
    }
}

/// `AsyncFd` wants `AsRawFd`; nix's epoll offers `AsFd`.
struct RawEpoll(Epoll);

impl AsRawFd for RawEpoll {
    fn as_raw_fd(&self) -> RawFd {
        self.0 .0.as_fd().as_raw_fd()
    }
}

struct Slot<J: LeanJob> {
    /// Bumped every time the slot is freed: an event or deadline of an earlier probe in it is
    /// recognised as stale.
    generation: u32,
    probe: Option<(Arc<J>, Conn, J::Ticket)>,
}

struct Inner<J: LeanJob> {
    slots: Vec<Slot<J>>,
    free: Vec<u32>,
    /// (deadline, slot, generation), earliest first; entries of ended probes are dropped
    /// lazily.
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Quiet probes not in the epoll instance: (slot, generation, when their answer is
    /// expected).
    quiet: Vec<(u32, u32, Instant)>,
    /// The deadline the loop sleeps until, if any: never later than the earliest deadline of
    /// a probe in flight, and left where it is when probes end (moving it costs a timer
    /// update and a pass of the loop; a probe ends far sooner than its timeout, so the loop
    /// wakes for it about once per timeout, not once per probe).
    armed: Option<Instant>,
    scratch: Scratch,
    /// The loop has ended: probes submitted now are dropped.
    closed: bool,
}

/// Closes the reactor when its loop ends, however it ends.
struct Close<J: LeanJob>(Arc<Reactor<J>>);

impl<J: LeanJob> Drop for Close<J> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A probe that ended, to conclude outside the lock.
type Ended<J> = (
    Arc<J>,
    Conn,
    <J as LeanJob>::Ticket,
    Result<(), crate::probe::Fail>,
);

impl<J: LeanJob> Reactor<J> {
    /// Creates the reactor on the runtime of the current context (call it inside, or with the
    /// handle entered of, the runtime that will run it).
    pub fn new() -> io::Result<Arc<Reactor<J>>> {
        Reactor::with_sweep_horizon(SWEEP_HORIZON)
    }

    /// A reactor whose quiet probes wait for a wake-up up to `horizon` away (at least 1 ms,
    /// that of [`Reactor::new`]): for a scheduler whose wake-ups are that far apart (a probe
    /// thread whose probes start up to that much ahead of their planned start, and so wake it
    /// at most once per that much).
    pub fn with_sweep_horizon(horizon: std::time::Duration) -> io::Result<Arc<Reactor<J>>> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        // `with_interest` is deprecated because an `AsRawFd` may hand out a descriptor it does
        // not own; `RawEpoll` owns its descriptor for the `AsyncFd`'s whole life.
        #[allow(deprecated)]
        let epoll = AsyncFd::with_interest(RawEpoll(epoll), tokio::io::Interest::READABLE)?;
        Ok(Arc::new(Reactor {
            epoll,
            inner: Mutex::new(Inner {
                slots: Vec::new(),
                free: Vec::new(),
                deadlines: BinaryHeap::new(),
                quiet: Vec::new(),
                armed: None,
                scratch: Scratch::new(),
                closed: false,
            }),
            rearm: Notify::new(),
            horizon: horizon.max(SWEEP_HORIZON),
            stamps: stamping_switch(),
            swept: std::sync::atomic::AtomicU64::new(0),
            unstamped: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Ends the loop for good: drops the probes in flight (their sockets and tickets) and every
    /// probe submitted later.
    fn close(&self) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.closed = true;
        inner.deadlines.clear();
        inner.quiet.clear();
        let dropped: Vec<_> = inner
            .slots
            .iter_mut()
            .filter_map(|s| s.probe.take())
            .collect();
        drop(inner);
        drop(dropped);
    }

    /// Probes in flight.
    pub fn in_flight(&self) -> usize {
        let inner = self.lock();
        if inner.closed {
            0
        } else {
            inner.slots.len() - inner.free.len()
        }
    }

    /// Probes so far whose whole answer a [`Reactor::sweep`] read: answers that cost the
    /// thread no wake-up of their own.
    pub fn swept(&self) -> u64 {
        self.swept.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<J>> {
        self.inner.lock().expect("reactor lock poisoned")
    }

    /// Starts a probe of `job` planned for `planned`: connects and sends at once (after
    /// resolving its host, when that is a name); the outcome goes to [`LeanJob::finish`] when
    /// it ends (at once when it cannot start).
    pub fn submit(self: &Arc<Self>, job: Arc<J>, planned: Instant, ticket: J::Ticket) {
        self.start(job, planned, ticket, false);
    }

    /// [`Reactor::submit`] for the thread's scheduler, which [`Reactor::park`]s before it
    /// sleeps and [`Reactor::sweep`]s when it wakes: a probe whose target answered before is
    /// kept out of the epoll instance until then.
    pub fn submit_quiet(self: &Arc<Self>, job: Arc<J>, planned: Instant, ticket: J::Ticket) {
        self.start(job, planned, ticket, true);
    }

    /// Starts a probe; one whose host is a name is resolved first, in a task of its own (the
    /// system resolver runs off the thread), and then joins the loop.
    fn start(self: &Arc<Self>, job: Arc<J>, planned: Instant, ticket: J::Ticket, quiet: bool) {
        if let Some(addr) = job.prober().lean_address() {
            let conn = job
                .prober()
                .lean_connect(planned, Instant::now(), addr, Phases::default());
            return self.enter(job, conn, ticket, quiet);
        }
        let reactor = self.clone();
        tokio::spawn(async move {
            let conn = match job.prober().lean_resolve(planned).await {
                Ok((started, addr, phases)) => {
                    job.prober().lean_connect(planned, started, addr, phases)
                }
                Err(outcome) => Err(outcome),
            };
            // No scheduler parks a probe that joins between its wake-ups.
            reactor.enter(job, conn, ticket, false);
        });
    }

    /// Takes a probe that has started (or ended at once) into the loop.
    fn enter(&self, job: Arc<J>, conn: Result<Conn, Outcome>, ticket: J::Ticket, quiet: bool) {
        let conn = match conn {
            Ok(conn) => conn,
            Err(outcome) => return job.finish(outcome, ticket),
        };
        let sent = conn.sent(job.prober());
        // Quiet only when the request is out and the answer has a time to expect: as long as
        // the target's last one took. Expecting it early costs a read that finds nothing (the
        // probe then joins the epoll instance); expecting it late costs a wake-up, ten times
        // as dear.
        let stamping = self.stamps.is_some() && !self.unstamped.load(Relaxed);
        let expect = match job.prober().answer_time() {
            Some(t) if quiet && sent && stamping => Some(conn.started() + t),
            _ => None,
        };
        let deadline = conn.deadline();
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        let k = match inner.free.pop() {
            Some(k) => k,
            None => {
                inner.slots.push(Slot {
                    generation: 0,
                    probe: None,
                });
                (inner.slots.len() - 1) as u32
            }
        };
        let generation = inner.slots[k as usize].generation;
        match expect {
            Some(at) => inner.quiet.push((k, generation, at)),
            None => {
                if let Err(f) = self.register(&conn, k, generation, !sent) {
                    inner.free.push(k);
                    drop(inner);
                    return conclude(job, conn, ticket, Err(f));
                }
            }
        }
        inner.slots[k as usize].probe = Some((job, conn, ticket));
        inner.deadlines.push(Reverse((deadline, k, generation)));
        if inner.armed.is_none_or(|a| deadline < a) {
            inner.armed = Some(deadline);
            drop(inner);
            self.rearm.notify_one();
        }
    }

    /// Adds a probe's socket to the epoll instance, for reading (and writing, when `write`).
    fn register(&self, conn: &Conn, k: u32, generation: u32, write: bool) -> Result<(), Fail> {
        let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        if write {
            flags |= EpollFlags::EPOLLOUT;
        }
        let data = (u64::from(generation) << 32) | u64::from(k);
        self.epoll
            .get_ref()
            .0
            .add(conn.fd(), EpollEvent::new(flags, data))
            .map_err(|e| {
                crate::net::fail_from(
                    crate::probe::Reason::Setup,
                    "cannot register a socket",
                    &io::Error::from(e),
                )
            })
    }

    /// Before the thread's scheduler sleeps until `wake`: the quiet probes whose answer is
    /// expected by then (and `wake` at most the sweep horizon away: 1 ms unless set longer)
    /// are stamped and wait for [`Reactor::sweep`]; the others join the epoll instance, to be
    /// read when they answer.
    pub fn park(&self, wake: Instant) {
        let near = wake <= Instant::now() + self.horizon;
        let mut ended: Vec<Ended<J>> = Vec::new();
        {
            let mut inner = self.lock();
            let Inner {
                quiet, slots, free, ..
            } = &mut *inner;
            quiet.retain(|&(k, generation, expect)| {
                let Some(slot) = slot_of(slots, k, generation) else {
                    return false;
                };
                let Some((_, conn, _)) = slot.probe.as_mut() else {
                    return false;
                };
                if near && expect <= wake && conn.stamp() {
                    return true;
                }
                if let Err(f) = self.register(conn, k, generation, false) {
                    if let Some((job, conn, ticket)) = take(slot, free, k) {
                        ended.push((job, conn, ticket, Err(f)));
                    }
                }
                false
            });
        }
        conclude_all(ended);
    }

    /// Reads the answers of the quiet probes expected by now (at the scheduler's wake-up, and
    /// whenever the loop is awake anyway); a probe whose answer is not complete joins the
    /// epoll instance.
    pub fn sweep(&self) {
        let mut ended: Vec<Ended<J>> = Vec::new();
        {
            let mut inner = self.lock();
            if inner.quiet.is_empty() {
                return;
            }
            let now = Instant::now();
            let Inner {
                quiet,
                slots,
                free,
                scratch,
                ..
            } = &mut *inner;
            quiet.retain(|&(k, generation, expect)| {
                let Some(slot) = slot_of(slots, k, generation) else {
                    return false;
                };
                if expect > now {
                    return true;
                }
                let Some((job, conn, _)) = slot.probe.as_mut() else {
                    return false;
                };
                let read = Ready {
                    read: true,
                    write: false,
                };
                let step = conn.step(job.prober(), read, scratch);
                if conn.unstamped() {
                    self.unstamped.store(true, Relaxed);
                }
                let end = match step {
                    None => {
                        // Not all there yet (an edge-triggered socket added with bytes waiting
                        // reports them at once).
                        let _ = conn.take_more();
                        match self.register(conn, k, generation, false) {
                            Ok(()) => return false,
                            Err(f) => Err(f),
                        }
                    }
                    Some(end) => end,
                };
                if let Some((job, conn, ticket)) = take(slot, free, k) {
                    ended.push((job, conn, ticket, end));
                }
                false
            });
        }
        self.swept
            .fetch_add(ended.len() as u64, std::sync::atomic::Ordering::Relaxed);
        conclude_all(ended);
    }

    /// Runs the loop until `cancel` fires; the probes still in flight then are dropped
    /// (their sockets closed, their tickets dropped, [`LeanJob::finish`] not called), and so is
    /// every probe submitted after.
    pub fn run(
        self: Arc<Self>,
        cancel: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send {
        // Made before the future first runs: also when the runtime drops the future unpolled
        // or half-way (a probe thread's runtime stops on the same cancel), the probes' tickets
        // must not outlive it.
        let close = Close(self.clone());
        async move {
            let _close = close;
            self.run_loop(cancel).await;
        }
    }

    async fn run_loop(&self, cancel: CancellationToken) {
        let mut events = vec![EpollEvent::empty(); BATCH];
        let far = || Instant::now() + std::time::Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut sleeping_until = None;
        // Made once, not on every pass: the loop wakes about once per probe.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let rearmed = self.rearm.notified();
        tokio::pin!(rearmed);
        loop {
            let armed = self.lock().armed;
            if armed != sleeping_until {
                sleep.as_mut().reset(armed.unwrap_or_else(far));
                sleeping_until = armed;
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                ready = self.epoll.readable() => match ready {
                    Ok(mut guard) => {
                        if self.drain_events(&mut events) {
                            guard.clear_ready();
                        }
                        self.sweep();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the lean probe loop cannot wait for events");
                        break;
                    }
                },
                _ = &mut sleep, if armed.is_some() => {
                    self.sweep();
                    self.expire();
                }
                _ = &mut rearmed => rearmed.set(self.rearm.notified()),
            }
        }
    }

    /// Takes one batch of events and steps their probes; true when the batch was the last
    /// (fewer events than asked for).
    fn drain_events(&self, events: &mut [EpollEvent]) -> bool {
        let n = match self.epoll.get_ref().0.wait(events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => return false,
            Err(_) => return true,
        };
        let mut ended: Vec<Ended<J>> = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            for ev in &events[..n] {
                let (k, generation) = ((ev.data() & 0xffff_ffff) as u32, (ev.data() >> 32) as u32);
                let Some(slot) = slot_of(&mut inner.slots, k, generation) else {
                    continue;
                };
                let Some((job, conn, _)) = slot.probe.as_mut() else {
                    continue;
                };
                let flags = ev.events();
                let ready = Ready {
                    read: flags.intersects(
                        EpollFlags::EPOLLIN
                            | EpollFlags::EPOLLRDHUP
                            | EpollFlags::EPOLLHUP
                            | EpollFlags::EPOLLERR,
                    ),
                    write: flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR),
                };
                let prober = job.prober();
                match conn.step(prober, ready, &mut inner.scratch) {
                    Some(end) => {
                        if let Some((job, conn, ticket)) = take(slot, &mut inner.free, k) {
                            ended.push((job, conn, ticket, end));
                        }
                    }
                    None if conn.take_more() => {
                        // Re-arming an edge-triggered socket with bytes waiting queues a new
                        // event: the probe reads on in a later batch, after the others.
                        let flags =
                            EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
                        let mut again = EpollEvent::new(flags, ev.data());
                        let _ = self.epoll.get_ref().0.modify(conn.fd(), &mut again);
                    }
                    None => {}
                }
            }
        }
        conclude_all(ended);
        n < events.len()
    }

    /// Ends the probes whose deadline has passed.
    fn expire(&self) {
        let now = Instant::now();
        let mut ended: Vec<Ended<J>> = Vec::new();
        {
            let mut inner = self.lock();
            let inner = &mut *inner;
            while let Some(&Reverse((deadline, k, generation))) = inner.deadlines.peek() {
                if deadline > now {
                    break;
                }
                inner.deadlines.pop();
                let Some(slot) = slot_of(&mut inner.slots, k, generation) else {
                    continue;
                };
                if let Some((job, conn, ticket)) = take(slot, &mut inner.free, k) {
                    let f = conn.timed_out(job.prober());
                    ended.push((job, conn, ticket, Err(f)));
                }
            }
            inner.rearm_to_live();
        }
        conclude_all(ended);
    }
}

impl<J: LeanJob> Inner<J> {
    /// Drops the deadlines of ended probes from the top of the heap and arms the loop for the
    /// earliest one left (after the armed deadline passed).
    fn rearm_to_live(&mut self) {
        while let Some(&Reverse((_, k, generation))) = self.deadlines.peek() {
            if slot_of(&mut self.slots, k, generation).is_some() {
                break;
            }
            self.deadlines.pop();
        }
        self.armed = self.deadlines.peek().map(|r| r.0 .0);
    }
}

/// The socket that keeps the kernel's receive timestamps switched on (see `Reactor::stamps`),
/// once it has seen them on: a datagram it sends itself on loopback comes back stamped. The
/// kernel switches stamping on a moment after the first socket asks (deferred work), so it
/// tries for up to [`STAMP_TRIES`] ms; `None` when stamping never came on (quiet probes are then
/// never kept out of the epoll instance).
fn stamping_switch() -> Option<socket2::Socket> {
    use nix::sys::socket::{recvmsg, setsockopt, sockopt::ReceiveTimestampns};
    use nix::sys::socket::{ControlMessageOwned, MsgFlags};
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM.nonblocking().cloexec(),
        None,
    )
    .ok()?;
    setsockopt(&sock, ReceiveTimestampns, &true).ok()?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    sock.bind(&loopback.into()).ok()?;
    let me = sock.local_addr().ok()?;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut byte = [0u8; 1];
    for _ in 0..STAMP_TRIES {
        sock.send_to(b"t", &me).ok()?;
        // Loopback delivers within the send; a datagram not there yet is read on a later try.
        while let Ok(msg) = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut [io::IoSliceMut::new(&mut byte)],
            Some(&mut cmsg),
            MsgFlags::empty(),
        ) {
            let stamped = msg.cmsgs().ok().is_some_and(|mut c| {
                c.any(|m| matches!(m, ControlMessageOwned::ScmTimestampns(_)))
            });
            if stamped {
                return Some(sock);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    None
}

/// How many times, a millisecond apart, [`stamping_switch`] looks for stamping to come on.
const STAMP_TRIES: usize = 50;

/// Slot `k` while it holds the probe of `generation`: an event, deadline or quiet entry of a
/// probe that has ended names a slot freed (and its generation bumped) since.
fn slot_of<J: LeanJob>(slots: &mut [Slot<J>], k: u32, generation: u32) -> Option<&mut Slot<J>> {
    slots
        .get_mut(k as usize)
        .filter(|s| s.generation == generation && s.probe.is_some())
}

/// Frees slot `k`, returning its probe.
fn take<J: LeanJob>(
    slot: &mut Slot<J>,
    free: &mut Vec<u32>,
    k: u32,
) -> Option<(Arc<J>, Conn, J::Ticket)> {
    let probe = slot.probe.take()?;
    slot.generation = slot.generation.wrapping_add(1);
    free.push(k);
    Some(probe)
}

/// Concludes the probes that ended (outside the lock: their jobs record the outcomes).
fn conclude_all<J: LeanJob>(ended: Vec<Ended<J>>) {
    for (job, conn, ticket, end) in ended {
        conclude(job, conn, ticket, end);
    }
}

/// Concludes an ended probe and hands the outcome to its job (after its body check, for a
/// large body).
fn conclude<J: LeanJob>(
    job: Arc<J>,
    conn: Conn,
    ticket: J::Ticket,
    end: Result<(), crate::probe::Fail>,
) {
    match conn.finish(job.prober(), end) {
        Conclusion::Now(outcome) => job.finish(outcome, ticket),
        Conclusion::Check(check) => {
            tokio::spawn(async move {
                let outcome = check.run(job.prober()).await;
                job.finish(outcome, ticket);
            });
        }
    }
}
