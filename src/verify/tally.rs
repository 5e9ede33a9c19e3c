//! Per-target and memory tallies: samples folded, as they arrive, into the figures the checks
//! judge. Pure data, no clock: a [`Sample`] carries its own time offset.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::probe::Reason;
use crate::record::Hdr;
use crate::state::{self, Health, State, Thresholds};

/// Fewest memory readings that can show a trend.
pub const MIN_MEMORY_SAMPLES: usize = 3;

/// One probe's result, as the verifier keeps it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Index of the target in the tally list.
    pub target: usize,
    /// When the probe started, measured from the start of the window.
    pub at: Duration,
    /// How long it took (from the actual send).
    pub latency: Duration,
    /// `Ok(())` or why it failed.
    pub result: Result<(), Reason>,
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Human detail of a failure.
    pub detail: Option<String>,
    /// Planned starts skipped after this probe because it was still running.
    pub skipped_after: u32,
}

impl Sample {
    /// True when the target answered: an HTTP status arrived, or (probers without one: tcp,
    /// icmp, dns...) the probe succeeded. Only answers count towards latency.
    pub fn answered(&self) -> bool {
        self.status.is_some() || self.result.is_ok()
    }
}

/// The p99 bound a target is held to, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBound {
    /// The bound.
    pub limit: Duration,
    /// Where it came from, for the report (`--max-p99`, `baseline 1.2ms × 1.5`).
    pub source: String,
}

/// The last probe of a target.
#[derive(Debug, Clone)]
pub struct LastProbe {
    /// `Ok(())` or why it failed.
    pub result: Result<(), Reason>,
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Human detail of a failure.
    pub detail: Option<String>,
}

/// A period a target was down: from the first failure of the streak that took it down to the
/// first success of the streak that brought it back (`None`: still down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownPeriod {
    /// Start, from the start of the window.
    pub start: Duration,
    /// End, from the start of the window; `None` while still down.
    pub end: Option<Duration>,
}

/// Everything the verdict needs to know about one target, folded from its samples.
#[derive(Debug, Clone)]
pub struct TargetTally {
    /// Target name (config name, or the URL for `--target`).
    pub name: String,
    /// URL probed.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Fall/rise thresholds of the up/down state machine.
    pub thresholds: Thresholds,
    /// The p99 bound, when one was given.
    pub bound: Option<LatencyBound>,
    /// Probes completed.
    pub probes: u64,
    /// Probes that succeeded.
    pub successes: u64,
    /// Failed probes by reason (indexed by [`Reason::index`]).
    pub failures_by_reason: [u64; Reason::ALL.len()],
    /// Planned starts skipped because the previous probe still ran.
    pub skipped: u64,
    /// Probes that got an HTTP answer (their latencies are in `latency`).
    pub answered: u64,
    /// Latency of answered probes.
    pub latency: Hdr,
    /// Answered probes slower than `bound` (lets `--fail-fast` see a lost p99 early).
    pub over_bound: u64,
    /// Up/down state.
    pub state: State,
    /// Transitions to down (from up, or from unknown when it never answered).
    pub down_transitions: u32,
    /// Transitions to up.
    pub up_transitions: u32,
    /// Periods down, in order.
    pub down_periods: Vec<DownPeriod>,
    /// The last probe.
    pub last: Option<LastProbe>,
    fail_streak_start: Option<Duration>,
    ok_streak_start: Option<Duration>,
}

impl TargetTally {
    /// An empty tally.
    pub fn new(
        name: impl Into<String>,
        url: impl Into<String>,
        method: impl Into<String>,
        thresholds: Thresholds,
        bound: Option<LatencyBound>,
    ) -> TargetTally {
        TargetTally {
            name: name.into(),
            url: url.into(),
            method: method.into(),
            thresholds,
            bound,
            probes: 0,
            successes: 0,
            failures_by_reason: [0; Reason::ALL.len()],
            skipped: 0,
            answered: 0,
            latency: Hdr::default(),
            over_bound: 0,
            state: State::default(),
            down_transitions: 0,
            up_transitions: 0,
            down_periods: Vec::new(),
            last: None,
            fail_streak_start: None,
            ok_streak_start: None,
        }
    }

    /// Folds one sample in.
    pub fn push(&mut self, s: &Sample) {
        self.probes += 1;
        self.skipped += u64::from(s.skipped_after);
        match s.result {
            Ok(()) => {
                self.successes += 1;
                self.fail_streak_start = None;
                self.ok_streak_start.get_or_insert(s.at);
            }
            Err(r) => {
                self.failures_by_reason[r.index()] += 1;
                self.ok_streak_start = None;
                self.fail_streak_start.get_or_insert(s.at);
            }
        }
        if s.answered() {
            self.answered += 1;
            self.latency.record(s.latency);
            if self.bound.as_ref().is_some_and(|b| s.latency > b.limit) {
                self.over_bound += 1;
            }
        }
        // A probe watchfire itself could not run (reason `prober`) says nothing about the service.
        let (next, transition) = state::observe(self.state, s.result, self.thresholds);
        self.state = next;
        if let Some(t) = transition {
            match t.to {
                Health::Down => {
                    self.down_transitions += 1;
                    self.down_periods.push(DownPeriod {
                        start: self.fail_streak_start.unwrap_or(s.at),
                        end: None,
                    });
                }
                Health::Up => {
                    self.up_transitions += 1;
                    if let Some(p) = self.down_periods.last_mut() {
                        if p.end.is_none() {
                            p.end = Some(self.ok_streak_start.unwrap_or(s.at));
                        }
                    }
                }
                Health::Unknown => {}
            }
        }
        self.last = Some(LastProbe {
            result: s.result,
            status: s.status,
            detail: s.detail.clone(),
        });
    }

    /// Failed probes.
    pub fn failures(&self) -> u64 {
        self.probes - self.successes
    }

    /// Failed / completed probes, `None` before the first probe.
    pub fn error_rate(&self) -> Option<f64> {
        (self.probes > 0).then(|| self.failures() as f64 / self.probes as f64)
    }

    /// Time spent down, counting an open period up to `elapsed`.
    pub fn downtime(&self, elapsed: Duration) -> Duration {
        self.down_periods
            .iter()
            .map(|p| p.end.unwrap_or(elapsed).saturating_sub(p.start))
            .sum()
    }

    /// True when the target ever answered as expected.
    pub fn ever_answered(&self) -> bool {
        self.successes > 0
    }

    /// Failures by reason, most frequent first, as `reason ×n` words.
    pub fn failure_words(&self) -> String {
        let mut v: Vec<(Reason, u64)> = Reason::ALL
            .iter()
            .map(|&r| (r, self.failures_by_reason[r.index()]))
            .filter(|&(_, n)| n > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.iter()
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Failures by reason as a map (reason label → count), zero counts left out.
    pub fn failures_map(&self) -> BTreeMap<String, u64> {
        Reason::ALL
            .iter()
            .filter(|r| self.failures_by_reason[r.index()] > 0)
            .map(|r| (r.as_str().to_string(), self.failures_by_reason[r.index()]))
            .collect()
    }
}

/// One memory reading: `used` against `limit` (the same unit; a ratio from Prometheus is
/// `used` = ratio, `limit` = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemorySample {
    /// When, from the start of the window.
    pub at: Duration,
    /// Memory in use.
    pub used: f64,
    /// The limit; `None` when unlimited.
    pub limit: Option<f64>,
}

impl MemorySample {
    /// `used / limit`, when there is a limit.
    pub fn ratio(&self) -> Option<f64> {
        self.limit.filter(|l| *l > 0.0).map(|l| self.used / l)
    }
}

/// Memory readings of the window.
#[derive(Debug, Clone, Default)]
pub struct MemoryTally {
    /// Where the readings come from (`cgroup v2 /sys/fs/cgroup/x`, `prometheus: QUERY`).
    pub source: String,
    /// The readings, in order.
    pub samples: Vec<MemorySample>,
    /// Readings that failed.
    pub errors: u64,
    /// The last failed reading's message.
    pub last_error: Option<String>,
}

impl MemoryTally {
    /// Highest `used / limit` seen.
    pub fn max_ratio(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter_map(MemorySample::ratio)
            .fold(None, |m, r| Some(m.map_or(r, |m: f64| m.max(r))))
    }

    /// Growth over the readings' span, by a least-squares line: as a fraction of the limit when
    /// there is one, else of the mean use. `None` with fewer than [`MIN_MEMORY_SAMPLES`].
    pub fn growth(&self) -> Option<f64> {
        if self.samples.len() < MIN_MEMORY_SAMPLES {
            return None;
        }
        let n = self.samples.len() as f64;
        let xs: Vec<f64> = self.samples.iter().map(|s| s.at.as_secs_f64()).collect();
        let ys: Vec<f64> = self.samples.iter().map(|s| s.used).collect();
        let mx = xs.iter().sum::<f64>() / n;
        let my = ys.iter().sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        if sxx <= 0.0 {
            return Some(0.0);
        }
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let slope = sxy / sxx;
        let span = xs.last().copied().unwrap_or(0.0) - xs.first().copied().unwrap_or(0.0);
        let scale = self
            .samples
            .last()
            .and_then(|s| s.limit)
            .filter(|l| *l > 0.0)
            .unwrap_or(my);
        if scale <= 0.0 {
            return Some(0.0);
        }
        Some(slope * span / scale)
    }
}
