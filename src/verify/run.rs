//! The window: one probe loop per target on its [`OneProber`] (the native HTTP prober or the
//! target's blackbox module), a memory reader when asked, and the collector that folds results
//! into tallies, shows progress and stops early on `--fail-fast` or an interruption.
//!
//! Each target's probes are planned on the grid `start + k × interval` and never overlap: a probe
//! still running at its successor's planned start makes that start skipped (counted), not
//! queued. At the end of the window no new probe starts; probes in flight finish (bounded by
//! their timeout) and count.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant, MissedTickBehavior};

use crate::adhoc::OneProber;
use crate::record::Hdr;

use super::checks::{
    self, CheckName, Criteria, MemorySample, MemoryTally, Sample, Stage, Status, StopReason,
    TargetTally,
};
use super::memory::MemorySource;
use super::progress::{Progress, Snapshot};

/// What the window needs besides the tallies.
#[derive(Debug)]
pub struct Setup {
    /// One prober per tally, same order.
    pub probers: Vec<Arc<OneProber>>,
    /// The checks' bounds (window, interval included).
    pub criteria: Criteria,
    /// Memory source and how often to read it.
    pub memory: Option<(MemorySource, Duration)>,
    /// Stop as soon as a check can no longer pass.
    pub fail_fast: bool,
    /// Plain progress line period (0: off).
    pub progress_every: Duration,
}

/// What the window collected.
#[derive(Debug)]
pub struct Collected {
    /// Per target.
    pub targets: Vec<TargetTally>,
    /// Memory readings, when measured.
    pub memory: Option<MemoryTally>,
    /// How far it ran and why it stopped.
    pub stage: Stage,
    /// Wall clock at the start.
    pub started_at: SystemTime,
    /// Wall clock at the end.
    pub ended_at: SystemTime,
    /// The check that made `--fail-fast` stop.
    pub decided_by: Option<CheckName>,
}

enum Msg {
    Probe(Sample),
    Memory(Duration, Result<super::memory::Reading, String>),
}

async fn probe_loop(
    index: usize,
    prober: Arc<OneProber>,
    start: Instant,
    end: Instant,
    interval: Duration,
    tx: mpsc::Sender<Msg>,
) {
    let mut planned = start;
    while planned < end {
        sleep_until(planned).await;
        let o = prober.probe(planned).await;
        let now = Instant::now();
        let mut next = planned + interval;
        let mut skipped = 0u32;
        while next < now {
            if next < end {
                skipped = skipped.saturating_add(1);
            }
            next += interval;
        }
        let sample = Sample {
            target: index,
            at: o.started.saturating_duration_since(start),
            latency: o.latency(),
            result: o.result,
            status: o.status,
            detail: o.detail,
            skipped_after: skipped,
        };
        if tx.send(Msg::Probe(sample)).await.is_err() {
            return;
        }
        planned = next;
    }
}

async fn memory_loop(
    source: MemorySource,
    start: Instant,
    end: Instant,
    every: Duration,
    tx: mpsc::Sender<Msg>,
) {
    let mut at = start;
    while at < end {
        sleep_until(at).await;
        let r = source.read().await;
        if tx
            .send(Msg::Memory(
                Instant::now().saturating_duration_since(start),
                r,
            ))
            .await
            .is_err()
        {
            return;
        }
        at += every;
        let now = Instant::now();
        while at < now {
            at += every;
        }
    }
}

fn snapshot<'a>(
    targets: &[TargetTally],
    overall: &Hdr,
    elapsed: Duration,
    window: Duration,
    checks: &'a [checks::Check],
) -> Snapshot<'a> {
    Snapshot {
        elapsed,
        window,
        probes: targets.iter().map(|t| t.probes).sum(),
        failures: targets.iter().map(TargetTally::failures).sum(),
        p50: overall.quantile(0.5),
        p99: overall.quantile(0.99),
        checks,
    }
}

/// Adds a memory reading (or its error) to the tally.
fn push_memory(m: &mut MemoryTally, at: Duration, r: Result<super::memory::Reading, String>) {
    match r {
        Ok(r) => m.samples.push(MemorySample {
            at,
            used: r.used,
            limit: r.limit,
        }),
        Err(e) => {
            m.errors += 1;
            m.last_error = Some(e);
        }
    }
}

/// The first check that has already failed for good, `elapsed` into the window (`--fail-fast`).
fn decided_fail(
    targets: &[TargetTally],
    memory: Option<&MemoryTally>,
    c: &Criteria,
    elapsed: Duration,
) -> Option<CheckName> {
    let stage = Stage {
        elapsed,
        done: false,
        stopped: None,
    };
    checks::judge(targets, memory, c, &stage)
        .into_iter()
        .find(|ch| ch.status == Status::Fail && ch.decided)
        .map(|ch| ch.name)
}

/// Runs the window and returns what it collected.
pub async fn collect(
    setup: Setup,
    mut targets: Vec<TargetTally>,
    shutdown: impl Future<Output = ()>,
) -> Collected {
    let c = setup.criteria.clone();
    let start = Instant::now();
    let started_at = SystemTime::now();
    let end = start + c.window;
    let (tx, mut rx) = mpsc::channel::<Msg>(1024);
    let mut tasks = JoinSet::new();
    for (i, p) in setup.probers.iter().enumerate() {
        tasks.spawn(probe_loop(i, p.clone(), start, end, c.interval, tx.clone()));
    }
    let mut memory = setup.memory.as_ref().map(|(src, _)| MemoryTally {
        source: src.describe(),
        ..MemoryTally::default()
    });
    if let Some((src, every)) = setup.memory {
        tasks.spawn(memory_loop(src, start, end, every, tx.clone()));
    }
    drop(tx);

    let mut progress = Progress::new(c.window, setup.progress_every, start);
    let period = progress.period().unwrap_or(Duration::from_secs(3600));
    let mut ticker = tokio::time::interval_at(start + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut overall = Hdr::default();
    let mut stopped = None;
    let mut decided_by = None;
    tokio::pin!(shutdown);
    loop {
        let got_sample = tokio::select! {
            biased;
            () = &mut shutdown => {
                stopped = Some(StopReason::Interrupted);
                break;
            }
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Probe(s)) => {
                    if s.answered() {
                        overall.record(s.latency);
                    }
                    if let Some(t) = targets.get_mut(s.target) {
                        t.push(&s);
                    }
                    true
                }
                Some(Msg::Memory(at, r)) => {
                    if let Some(m) = memory.as_mut() {
                        push_memory(m, at, r);
                    }
                    true
                }
            },
            _ = ticker.tick() => {
                let elapsed = start.elapsed();
                let stage = Stage { elapsed, done: false, stopped: None };
                let now_checks = checks::judge(&targets, memory.as_ref(), &c, &stage);
                progress.update(Instant::now(), &snapshot(&targets, &overall, elapsed, c.window, &now_checks));
                false
            }
        };
        if got_sample && setup.fail_fast {
            if let Some(name) = decided_fail(&targets, memory.as_ref(), &c, start.elapsed()) {
                stopped = Some(StopReason::FailFast);
                decided_by = Some(name);
                break;
            }
        }
    }
    tasks.abort_all();
    progress.finish();
    let elapsed = match stopped {
        Some(_) => start.elapsed().min(c.window),
        None => {
            // Every probe loop ends after its last planned start; the window itself ends at `end`.
            sleep_until(end).await;
            c.window
        }
    };
    Collected {
        targets,
        memory,
        stage: Stage {
            elapsed,
            done: true,
            stopped,
        },
        started_at,
        ended_at: SystemTime::now(),
        decided_by,
    }
}
