//! The scheduler's tests: spread, grid, skips, admission, the timerfd sleeper and the lead.

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
    /// While set, `admit` says no.
    closed: AtomicBool,
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
            closed: AtomicBool::new(false),
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
    fn admit(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }
    fn dispatch(self: Arc<Self>, planned: Instant) {
        self.starts.lock().unwrap().push((planned, Instant::now()));
        tokio::spawn(async move {
            tokio::time::sleep(self.work).await;
            self.running.store(false, Ordering::Release);
        });
    }
}

/// A scheduler on tokio's timer, spawned; the future stops it and waits for its end.
fn start() -> (SchedulerHandle<TestJob>, impl Future<Output = ()>) {
    let cancel = CancellationToken::new();
    let (h, fut) = scheduler::<TestJob, _>(TokioSleeper, cancel.clone());
    let task = tokio::spawn(fut);
    let stop = async move {
        cancel.cancel();
        task.await.unwrap();
    };
    (h, stop)
}

/// Real time: the timerfd sleeper never wakes before its deadline, and not much after.
#[tokio::test(flavor = "current_thread")]
async fn timerfd_sleeper_wakes_at_the_deadline() {
    let mut s = TimerFdSleeper::new(Duration::ZERO).unwrap();
    for micros in [300u64, 1_000, 5_000] {
        let deadline = Instant::now() + Duration::from_micros(micros);
        s.sleep_until(deadline).await;
        let late = Instant::now() - deadline;
        // Never early (`late` would have saturated to zero, so check the clock instead).
        assert!(Instant::now() >= deadline);
        // A loaded 2-core machine can hold a thread up for milliseconds; 50 ms is a hang.
        assert!(late < Duration::from_millis(50), "woke {late:?} late");
    }
    // A deadline already past returns at once.
    let t0 = Instant::now();
    s.sleep_until(t0 - Duration::from_millis(1)).await;
    assert!(t0.elapsed() < Duration::from_millis(50));
}

/// An abandoned sleep's timer, firing later, does not end the next, longer sleep early.
#[tokio::test(flavor = "current_thread")]
async fn timerfd_sleeper_ignores_an_abandoned_timer() {
    let mut s = TimerFdSleeper::new(Duration::ZERO).unwrap();
    let short = Instant::now() + Duration::from_millis(1);
    // Poll the short sleep once (arms the timer), then drop it.
    let _ = tokio::time::timeout(Duration::ZERO, s.sleep_until(short)).await;
    // Wait past the abandoned deadline so its expiry is pending in the reactor.
    tokio::time::sleep_until(short + Duration::from_millis(2)).await;
    let long = Instant::now() + Duration::from_millis(20);
    s.sleep_until(long).await;
    assert!(Instant::now() >= long);
}

/// Wake-ups closer than `min_gap` are stretched to it; further apart, they are not delayed.
#[tokio::test(flavor = "current_thread")]
async fn timerfd_sleeper_coalesces_close_wake_ups() {
    // Long enough that a delay of a whole gap stands out from a loaded machine's noise.
    let gap = Duration::from_millis(200);
    let mut s = TimerFdSleeper::new(gap).unwrap();
    s.sleep_until(Instant::now() + Duration::from_micros(100))
        .await;
    let first = Instant::now();
    // Due 100 µs after the first wake-up: held until the gap has passed.
    s.sleep_until(first + Duration::from_micros(100)).await;
    let second = Instant::now();
    assert!(
        second - first >= gap,
        "woke {:?} after the first",
        second - first
    );
    // Due well after the gap: woken at its own deadline, not a gap after it.
    let third_due = second + gap + Duration::from_millis(20);
    s.sleep_until(third_due).await;
    let late = Instant::now() - third_due;
    assert!(Instant::now() >= third_due);
    assert!(late < gap * 3 / 4, "woke {late:?} after its deadline");
}

#[tokio::test(start_paused = true)]
async fn first_starts_spread_across_the_interval() {
    let (h, stop) = start();
    let jobs: Vec<_> = (0..1000)
        .map(|i| TestJob::new(&format!("t{i}"), 1000, 1))
        .collect();
    let t0 = Instant::now();
    h.replace(jobs.clone()).await;
    tokio::time::sleep(Duration::from_millis(1001)).await;
    stop.await;
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
    let mut a: State<TestJob> = State::new(1);
    let mut b: State<TestJob> = State::new(2);
    let j = TestJob::new("gateway-health", 5000, 1);
    assert_eq!(a.first_offset(&j), b.first_offset(&j));
    assert!(a.first_offset(&j) < Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_probe_never_overlaps_itself_and_missed_ticks_are_not_burst() {
    let (h, stop) = start();
    // Runs take 250 ms against a 100 ms interval: 2 of every 3 ticks find it running.
    let job = TestJob::new("slow", 100, 250);
    h.replace(vec![job.clone()]).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.await;
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
async fn a_job_not_admitted_starts_later_on_its_grid_and_skips_what_it_missed() {
    let (h, stop) = start();
    let job = TestJob::new("gated", 100, 1);
    job.closed.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    h.replace(vec![job.clone()]).await;
    // Closed for 350 ms: nothing starts, whatever its phase.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(job.starts.lock().unwrap().is_empty());
    job.closed.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.await;
    let starts = job.starts.lock().unwrap().clone();
    // The first start, once admitted, is within a retry of the opening, for the latest tick
    // planned before it (less than an interval earlier): late, never early.
    let (planned, actual) = starts[0];
    assert!(planned < t0 + Duration::from_millis(350), "{starts:?}");
    assert!(planned + Duration::from_millis(100) > t0 + Duration::from_millis(350));
    assert!(actual >= t0 + Duration::from_millis(350), "{starts:?}");
    assert!(actual - (t0 + Duration::from_millis(350)) <= Duration::from_millis(2));
    // Ticks missed by more than an interval were skipped, not burst: the next starts keep
    // the 100 ms grid and there is one run per tick after the opening.
    for w in starts.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Duration::from_millis(100), "{starts:?}");
    }
    assert!((4..=5).contains(&starts.len()), "{starts:?}");
    assert!(job.skipped.load(Ordering::Relaxed) >= 2);
}

#[tokio::test(start_paused = true)]
async fn replacing_keeps_unchanged_jobs_on_their_grid() {
    let (h, stop) = start();
    let keep = TestJob::new("keep", 100, 1);
    h.replace(vec![keep.clone()]).await;
    tokio::time::sleep(Duration::from_millis(550)).await;
    let added = TestJob::new("added", 100, 1);
    h.replace(vec![keep.clone(), added.clone()]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.await;
    let starts = keep.starts.lock().unwrap().clone();
    for w in starts.windows(2) {
        assert_eq!(w[1].0 - w[0].0, Duration::from_millis(100));
    }
    assert!(starts.len() >= 10, "{}", starts.len());
    assert!(!added.starts.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn actual_start_matches_planned_start_under_paused_time() {
    let (h, stop) = start();
    let jobs: Vec<_> = (0..50)
        .map(|i| TestJob::new(&format!("j{i}"), 200, 1))
        .collect();
    h.replace(jobs.clone()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.await;
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

/// tokio's timer with a lead: follows paused time.
struct LeadSleeper(Duration);

impl Sleeper for LeadSleeper {
    async fn sleep_until(&mut self, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
    }
    fn lead(&self) -> Duration {
        self.0
    }
}

/// A schedule holding `jobs` planned at the given instants, as `replace` would leave it.
fn planned(jobs: &[(&Arc<TestJob>, Instant)]) -> State<TestJob> {
    let mut st = State::new(1);
    for (id, (job, at)) in (0u64..).zip(jobs) {
        st.heap.push(Reverse((*at, id)));
        st.jobs.insert(
            id,
            Entry {
                job: Arc::clone(job),
                next: *at,
            },
        );
        st.next_id = id + 1;
    }
    st
}

#[tokio::test(start_paused = true)]
async fn jobs_planned_within_the_lead_start_at_the_wake_up_on_their_own_grid() {
    let now = Instant::now();
    let ms = Duration::from_millis;
    let (due, soon, later) = (
        TestJob::new("due", 100, 1),
        TestJob::new("soon", 100, 1),
        TestJob::new("later", 100, 1),
    );
    let mut st = planned(&[
        (&due, now - Duration::from_micros(100)),
        (&soon, now + Duration::from_micros(700)),
        (&later, now + Duration::from_micros(1200)),
    ]);
    assert!(!st.fire_due(now, ms(1)));
    // Each started now, under its own planned start; the one past the lead did not start.
    assert_eq!(
        due.starts.lock().unwrap().clone(),
        vec![(now - Duration::from_micros(100), now)]
    );
    assert_eq!(
        soon.starts.lock().unwrap().clone(),
        vec![(now + Duration::from_micros(700), now)]
    );
    assert!(later.starts.lock().unwrap().is_empty());
    // Their next starts stay on their grid: a whole interval after the planned start.
    let next: Vec<Instant> = st.heap.iter().map(|r| r.0 .0).collect();
    assert!(next.contains(&(now + Duration::from_micros(100_700))));
    assert!(next.contains(&(now + Duration::from_micros(99_900))));
    assert!(next.contains(&(now + Duration::from_micros(1200))));
    // Without a lead, only what is due starts.
    let quiet = TestJob::new("quiet", 100, 1);
    let mut st = planned(&[(&quiet, now + Duration::from_micros(10))]);
    assert!(!st.fire_due(now, Duration::ZERO));
    assert!(quiet.starts.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_job_still_running_or_not_admitted_is_not_started_early_nor_skipped() {
    let now = Instant::now();
    let ms = Duration::from_millis;
    let (busy, after) = (TestJob::new("busy", 100, 1), TestJob::new("after", 100, 1));
    busy.running.store(true, Ordering::Relaxed);
    let mut st = planned(&[
        (&busy, now + ms(0) + Duration::from_micros(300)),
        (&after, now + Duration::from_micros(600)),
    ]);
    // Not deferred (nothing due was left behind), nothing skipped, nothing started: the
    // busy job keeps its planned start, and the one after it waits for its own.
    assert!(!st.fire_due(now, ms(1)));
    assert_eq!(busy.skipped.load(Ordering::Relaxed), 0);
    assert!(busy.starts.lock().unwrap().is_empty());
    assert!(after.starts.lock().unwrap().is_empty());
    assert_eq!(
        st.heap.peek().map(|r| r.0 .0),
        Some(now + Duration::from_micros(300))
    );
    // Still running when it is due: skipped then, as without a lead.
    assert!(!st.fire_due(now + Duration::from_micros(300), Duration::ZERO));
    assert_eq!(busy.skipped.load(Ordering::Relaxed), 1);
    // Not admitted while early: left for its planned start, not deferred.
    let closed = TestJob::new("closed", 100, 1);
    closed.closed.store(true, Ordering::Relaxed);
    let mut st = planned(&[(&closed, now + Duration::from_micros(500))]);
    assert!(!st.fire_due(now, ms(1)));
    assert!(closed.starts.lock().unwrap().is_empty());
    assert!(!closed.running.load(Ordering::Relaxed));
}

/// Through the scheduler loop: with a lead, no job starts more than the lead early, none
/// late, every start stays on its job's grid, and fewer wake-ups start them.
#[tokio::test(start_paused = true)]
async fn a_lead_starts_jobs_at_most_that_early_and_keeps_their_grid() {
    let lead = Duration::from_millis(2);
    let cancel = CancellationToken::new();
    let (h, fut) = scheduler::<TestJob, _>(LeadSleeper(lead), cancel.clone());
    let task = tokio::spawn(fut);
    let jobs: Vec<_> = (0..200)
        .map(|i| TestJob::new(&format!("j{i}"), 100, 1))
        .collect();
    h.replace(jobs.clone()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cancel.cancel();
    task.await.unwrap();
    let mut wake_ups = std::collections::BTreeSet::new();
    let mut early = 0;
    for j in &jobs {
        let starts = j.starts.lock().unwrap().clone();
        assert!(
            starts.len() >= 9,
            "{} started {} times",
            j.name,
            starts.len()
        );
        for w in starts.windows(2) {
            assert_eq!(w[1].0 - w[0].0, Duration::from_millis(100), "{}", j.name);
        }
        for (planned, actual) in starts {
            assert!(
                actual + lead >= planned,
                "{} started {:?} early",
                j.name,
                planned - actual
            );
            assert!(
                actual <= planned + Duration::from_millis(2),
                "{} late",
                j.name
            );
            early += usize::from(actual < planned);
            wake_ups.insert(actual);
        }
    }
    // 200 jobs spread over 100 ms, so ~1 per 0.5 ms (~2,000 wake-ups in 1 s without a
    // lead): a 2 ms lead gathers about 5 into each wake-up, most of them early.
    assert!(wake_ups.len() <= 500, "{} wake-ups", wake_ups.len());
    assert!(early > 1000, "{early} early starts");
}

#[test]
fn the_lead_is_at_most_a_fiftieth_of_the_interval() {
    let ms = Duration::from_millis;
    assert_eq!(lead_for(ms(2), ms(100)), ms(2));
    assert_eq!(lead_for(ms(2), ms(10)), Duration::from_micros(200));
    assert_eq!(lead_for(ms(2), Duration::ZERO), Duration::ZERO);
    let (short, long) = (TestJob::new("short", 10, 1), TestJob::new("long", 1000, 1));
    let now = Instant::now();
    let mut st = planned(&[
        (&short, now + Duration::from_micros(500)),
        (&long, now + Duration::from_micros(600)),
    ]);
    // The 10 ms job may start 200 µs early, not 500: it stays, and so does the one after it.
    assert!(!st.fire_due(now, ms(2)));
    assert!(short.starts.lock().unwrap().is_empty());
    assert!(long.starts.lock().unwrap().is_empty());
    assert!(!short.running.load(Ordering::Relaxed));
}
