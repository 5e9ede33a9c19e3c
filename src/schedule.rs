//! The scheduler: one loop for every target, planned starts on a fixed grid, no overlap.
//!
//! - Each job runs every `interval`. Its first planned start is spread across the interval by a
//!   hash of its name (deterministic: restarts keep the same phase), plus an optional random
//!   jitter, so 10,000 targets never fire at once.
//! - Planned starts follow the grid `first + k × interval`; the planned start travels with the
//!   probe so lag and the coordinated-omission-corrected latency can be measured.
//! - A tick that finds the job's previous probe still running is counted as skipped and never
//!   made up later (no bursts). A scheduler that wakes more than a whole interval late skips
//!   the missed ticks the same way.
//! - One heap, one loop: no task or timer per target. The loop waits with a [`Sleeper`]; the
//!   production [`PreciseSleeper`] (on the scheduler's own thread) wakes within tens of
//!   microseconds, where tokio's millisecond timer wheel would add up to 2 ms of lag.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Something the scheduler runs periodically.
pub trait Job: Send + Sync + 'static {
    /// Stable name: decides the phase of the first start.
    fn name(&self) -> &str;
    /// Time between planned starts.
    fn interval(&self) -> Duration;
    /// Upper bound of the random delay added to the first start.
    fn jitter(&self) -> Duration {
        Duration::ZERO
    }
    /// Marks the job as running; false when its previous run has not finished.
    fn try_begin(&self) -> bool;
    /// Counts a tick skipped because the previous run had not finished.
    fn skipped(&self, planned: Instant);
    /// Starts a run planned for `planned` (spawns; must not block). The run must end by making
    /// `try_begin` succeed again.
    fn dispatch(self: Arc<Self>, planned: Instant);
}

/// How the scheduler loop waits.
pub trait Sleeper: Send {
    /// Resolves at `deadline` (as precisely as the implementation can).
    fn sleep_until(&mut self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// tokio's timer: millisecond granularity; follows paused time in tests.
#[derive(Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    async fn sleep_until(&mut self, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
    }
}

/// Sleeps coarsely on tokio's timer, then precisely with the OS's nanosecond sleep for the last
/// couple of milliseconds. Blocks its thread for that last stretch: use it only on a thread of
/// its own (see [`spawn_thread`]).
#[derive(Debug, Default)]
pub struct PreciseSleeper;

/// How far before the deadline the coarse timer hands over to the precise sleep: tokio's timer
/// may be up to ~2 ms late (tick rounding plus the poller's millisecond timeout).
const PRECISE_MARGIN: Duration = Duration::from_micros(2500);

impl Sleeper for PreciseSleeper {
    async fn sleep_until(&mut self, deadline: Instant) {
        if let Some(coarse) = deadline.checked_sub(PRECISE_MARGIN) {
            if coarse > Instant::now() {
                tokio::time::sleep_until(coarse).await;
            }
        }
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

/// A handle to change the scheduled set.
#[derive(Debug, Clone)]
pub struct SchedulerHandle<J> {
    tx: mpsc::Sender<Vec<Arc<J>>>,
}

impl<J: Job> SchedulerHandle<J> {
    /// Replaces the scheduled set. Jobs that are the same `Arc` as before keep their place on
    /// the grid; new jobs get a fresh first start; missing jobs stop.
    pub async fn replace(&self, jobs: Vec<Arc<J>>) -> bool {
        self.tx.send(jobs).await.is_ok()
    }
}

/// Creates a scheduler loop and its handle. Drive the returned future with the sleeper of your
/// choice; it ends when `cancel` fires or every handle is dropped.
pub fn scheduler<J: Job, S: Sleeper>(
    sleeper: S,
    cancel: CancellationToken,
) -> (SchedulerHandle<J>, impl Future<Output = ()> + Send) {
    let (tx, rx) = mpsc::channel(4);
    (SchedulerHandle { tx }, run(rx, sleeper, cancel))
}

/// Runs a scheduler on a dedicated OS thread with the [`PreciseSleeper`].
pub fn spawn_thread<J: Job>(
    cancel: CancellationToken,
) -> std::io::Result<(SchedulerHandle<J>, std::thread::JoinHandle<()>)> {
    let (handle, fut) = scheduler::<J, _>(PreciseSleeper, cancel);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let join = std::thread::Builder::new()
        .name("watchfire-sched".into())
        .spawn(move || rt.block_on(fut))?;
    Ok((handle, join))
}

struct Entry<J> {
    job: Arc<J>,
    next: Instant,
}

struct State<J> {
    /// id → job; ids are never reused, so stale heap entries are recognised.
    jobs: HashMap<u64, Entry<J>>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    rng: u64,
}

impl<J: Job> State<J> {
    fn replace(&mut self, jobs: Vec<Arc<J>>, now: Instant) {
        let mut old: HashMap<*const J, (u64, Instant)> = self
            .jobs
            .drain()
            .map(|(id, e)| (Arc::as_ptr(&e.job), (id, e.next)))
            .collect();
        self.heap.clear();
        for job in jobs {
            let (id, next) = match old.remove(&Arc::as_ptr(&job)) {
                Some(kept) => kept,
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    (id, now + self.first_offset(&*job))
                }
            };
            self.heap.push(Reverse((next, id)));
            self.jobs.insert(id, Entry { job, next });
        }
    }

    fn first_offset(&mut self, job: &J) -> Duration {
        let iv = job.interval().as_nanos().max(1) as u64;
        let spread = Duration::from_nanos(fnv1a(job.name().as_bytes()) % iv);
        let jitter = job.jitter().as_nanos() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.rng = splitmix(self.rng);
            self.rng % jitter
        };
        spread + Duration::from_nanos(extra)
    }

    /// Runs every job due at `now`; returns how many were dispatched.
    fn fire_due(&mut self, now: Instant) -> usize {
        let mut fired = 0;
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.jobs.get_mut(&id) else {
                continue;
            };
            if entry.next != at {
                continue;
            }
            let job = entry.job.clone();
            if job.try_begin() {
                job.clone().dispatch(at);
                fired += 1;
            } else {
                job.skipped(at);
            }
            let iv = job.interval().max(Duration::from_micros(1));
            let mut next = at + iv;
            // Woke more than a whole interval late: the missed ticks are skipped, not burst.
            while next + iv <= now {
                job.skipped(next);
                next += iv;
            }
            entry.next = next;
            self.heap.push(Reverse((next, id)));
        }
        fired
    }
}

async fn run<J: Job, S: Sleeper>(
    mut rx: mpsc::Receiver<Vec<Arc<J>>>,
    mut sleeper: S,
    cancel: CancellationToken,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9);
    let mut st: State<J> = State {
        jobs: HashMap::new(),
        heap: BinaryHeap::new(),
        next_id: 0,
        rng: seed,
    };
    loop {
        let next = st.heap.peek().map(|r| r.0 .0);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(jobs) => st.replace(jobs, Instant::now()),
                None => break,
            },
            _ = async {
                match next {
                    Some(t) => sleeper.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                st.fire_due(Instant::now());
            }
        }
    }
}

/// FNV-1a, 64 bit: a stable spread of names over the interval.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;

    /// A job whose run takes `work` of (virtual) time and logs every planned/actual start.
    struct TestJob {
        name: String,
        interval: Duration,
        work: Duration,
        running: AtomicBool,
        skipped: AtomicU64,
        starts: Mutex<Vec<(Instant, Instant)>>,
    }

    impl TestJob {
        fn new(name: &str, interval_ms: u64, work_ms: u64) -> Arc<TestJob> {
            Arc::new(TestJob {
                name: name.into(),
                interval: Duration::from_millis(interval_ms),
                work: Duration::from_millis(work_ms),
                running: AtomicBool::new(false),
                skipped: AtomicU64::new(0),
                starts: Mutex::new(Vec::new()),
            })
        }
    }

    impl Job for TestJob {
        fn name(&self) -> &str {
            &self.name
        }
        fn interval(&self) -> Duration {
            self.interval
        }
        fn try_begin(&self) -> bool {
            !self.running.swap(true, Ordering::AcqRel)
        }
        fn skipped(&self, _planned: Instant) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        fn dispatch(self: Arc<Self>, planned: Instant) {
            self.starts.lock().unwrap().push((planned, Instant::now()));
            tokio::spawn(async move {
                tokio::time::sleep(self.work).await;
                self.running.store(false, Ordering::Release);
            });
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_starts_spread_across_the_interval() {
        let cancel = CancellationToken::new();
        let (h, fut) = scheduler::<TestJob, _>(TokioSleeper, cancel.clone());
        let task = tokio::spawn(fut);
        let jobs: Vec<_> = (0..1000)
            .map(|i| TestJob::new(&format!("t{i}"), 1000, 1))
            .collect();
        let t0 = Instant::now();
        h.replace(jobs.clone()).await;
        tokio::time::sleep(Duration::from_millis(1001)).await;
        cancel.cancel();
        task.await.unwrap();
        // Every job started once in the first interval; count starts per 100 ms slice.
        let mut slices = [0u32; 10];
        for j in &jobs {
            let starts = j.starts.lock().unwrap();
            assert_eq!(starts.len(), 1, "{} started {} times", j.name, starts.len());
            let off = starts[0].0 - t0;
            slices[(off.as_millis() as usize / 100).min(9)] += 1;
        }
        // 1000 jobs over 10 slices: each slice near 100, none empty, none a pile-up.
        for (i, n) in slices.iter().enumerate() {
            assert!(
                (50..=150).contains(n),
                "slice {i} got {n} starts: {slices:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spread_is_deterministic_from_the_name() {
        let mut a: State<TestJob> = State {
            jobs: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            rng: 1,
        };
        let mut b: State<TestJob> = State {
            jobs: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            rng: 2,
        };
        let j = TestJob::new("gateway-health", 5000, 1);
        assert_eq!(a.first_offset(&j), b.first_offset(&j));
        assert!(a.first_offset(&j) < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_never_overlaps_itself_and_missed_ticks_are_not_burst() {
        let cancel = CancellationToken::new();
        let (h, fut) = scheduler::<TestJob, _>(TokioSleeper, cancel.clone());
        let task = tokio::spawn(fut);
        // Runs take 250 ms against a 100 ms interval: 2 of every 3 ticks find it running.
        let job = TestJob::new("slow", 100, 250);
        h.replace(vec![job.clone()]).await;
        tokio::time::sleep(Duration::from_millis(3000)).await;
        cancel.cancel();
        task.await.unwrap();
        let starts = job.starts.lock().unwrap().clone();
        for w in starts.windows(2) {
            assert!(
                w[1].1 - w[0].1 >= Duration::from_millis(250),
                "overlap: {:?}",
                w
            );
            assert_eq!(
                (w[1].0 - w[0].0).as_millis() % 100,
                0,
                "planned starts stay on the grid"
            );
        }
        let skipped = job.skipped.load(Ordering::Relaxed);
        let total = starts.len() as u64 + skipped;
        assert!(
            (29..=31).contains(&total),
            "ticks {total} = {} runs + {skipped} skipped",
            starts.len()
        );
        assert!(
            skipped >= 2 * starts.len() as u64 - 2,
            "{skipped} skipped for {} runs",
            starts.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn replacing_keeps_unchanged_jobs_on_their_grid() {
        let cancel = CancellationToken::new();
        let (h, fut) = scheduler::<TestJob, _>(TokioSleeper, cancel.clone());
        let task = tokio::spawn(fut);
        let keep = TestJob::new("keep", 100, 1);
        h.replace(vec![keep.clone()]).await;
        tokio::time::sleep(Duration::from_millis(550)).await;
        let added = TestJob::new("added", 100, 1);
        h.replace(vec![keep.clone(), added.clone()]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
        task.await.unwrap();
        let starts = keep.starts.lock().unwrap().clone();
        for w in starts.windows(2) {
            assert_eq!(w[1].0 - w[0].0, Duration::from_millis(100));
        }
        assert!(starts.len() >= 10, "{}", starts.len());
        assert!(!added.starts.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn actual_start_matches_planned_start_under_paused_time() {
        let cancel = CancellationToken::new();
        let (h, fut) = scheduler::<TestJob, _>(TokioSleeper, cancel.clone());
        let task = tokio::spawn(fut);
        let jobs: Vec<_> = (0..50)
            .map(|i| TestJob::new(&format!("j{i}"), 200, 1))
            .collect();
        h.replace(jobs.clone()).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        cancel.cancel();
        task.await.unwrap();
        for j in &jobs {
            for (planned, actual) in j.starts.lock().unwrap().iter() {
                assert!(
                    *actual - *planned < Duration::from_millis(2),
                    "lag {:?}",
                    *actual - *planned
                );
            }
        }
    }
}
