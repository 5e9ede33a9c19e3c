//! The verdict, as pure functions of the collected samples.
//!
//! Probes arrive as [`Sample`]s and are folded into one [`TargetTally`] per target
//! ([`TargetTally::push`]); memory readings into a [`MemoryTally`]. [`judge`] turns the tallies
//! into one [`Check`] per runbook criterion. No clock, no I/O: the caller says how far the window
//! has run ([`Stage`]), so the same function drives the live progress line, `--fail-fast` and the
//! final verdict, and unit tests feed it synthetic samples.
//!
//! A check that cannot be judged for lack of data fails: the verifier never says PASS on
//! evidence it does not have.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::probe::Reason;
use crate::record::Hdr;
use crate::state::{self, Health, State, Thresholds};

use super::human::{dur, pct};

/// Fewest memory readings that can show a trend.
pub const MIN_MEMORY_SAMPLES: usize = 3;

/// The quantile the latency check judges.
pub const LATENCY_QUANTILE: f64 = 0.99;

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
        if s.status.is_some() {
            self.answered += 1;
            self.latency.record(s.latency);
            if self.bound.as_ref().is_some_and(|b| s.latency > b.limit) {
                self.over_bound += 1;
            }
        }
        let (next, transition) = state::step(self.state, s.result.is_ok(), self.thresholds);
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

/// What the checks hold the samples to.
#[derive(Debug, Clone, PartialEq)]
pub struct Criteria {
    /// How long the window lasts.
    pub window: Duration,
    /// Time between planned probes of one target.
    pub interval: Duration,
    /// Highest acceptable failed / completed probes, per target.
    pub max_error_rate: f64,
    /// Most transitions to down allowed, all targets together.
    pub max_flaps: u32,
    /// Fewest completed probes per target for a verdict.
    pub min_probes: u64,
    /// Memory bounds; `None` when memory is not measured.
    pub memory: Option<MemoryCriteria>,
}

impl Criteria {
    /// Most probes one target can complete in the window.
    pub fn max_probes(&self) -> u64 {
        let i = self.interval.as_nanos().max(1);
        self.window.as_nanos().div_ceil(i) as u64
    }
}

/// Memory bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryCriteria {
    /// Highest acceptable `used / limit` (the runbook: 0.85).
    pub max_ratio: f64,
    /// Highest acceptable growth over the window, as a fraction of the limit.
    pub max_growth: f64,
}

/// Why a window ended before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `--fail-fast`: a check could no longer pass.
    FailFast,
    /// Interrupted (Ctrl-C).
    Interrupted,
}

impl StopReason {
    /// The JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::FailFast => "fail_fast",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// How far the window has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// Time since the start of the window.
    pub elapsed: Duration,
    /// True for the verdict; false while the window runs.
    pub done: bool,
    /// Set when the window ended early.
    pub stopped: Option<StopReason>,
}

/// The checks, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckName {
    /// Enough probes over the whole window to judge.
    Data,
    /// Every target answered as expected, and is not down at the end.
    Answered,
    /// Failed / completed probes within the bound.
    ErrorRate,
    /// p99 latency within the bound.
    LatencyP99,
    /// No transitions to down.
    Flaps,
    /// Memory below its bound and not trending up.
    Memory,
}

impl CheckName {
    /// Every check, in report order.
    pub const ALL: [CheckName; 6] = [
        CheckName::Data,
        CheckName::Answered,
        CheckName::ErrorRate,
        CheckName::LatencyP99,
        CheckName::Flaps,
        CheckName::Memory,
    ];

    /// The stable name (JSON, text, Markdown).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Data => "data",
            CheckName::Answered => "answered",
            CheckName::ErrorRate => "error_rate",
            CheckName::LatencyP99 => "latency_p99",
            CheckName::Flaps => "flaps",
            CheckName::Memory => "memory",
        }
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Met.
    Pass,
    /// Not met.
    Fail,
    /// Not asked for (no bound given, memory not measured).
    Skip,
    /// Not decidable yet (only while the window runs).
    Pending,
}

impl Status {
    /// Lower-case name (JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Pending => "pending",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its standing.
    pub status: Status,
    /// True for a failure no later sample can undo (what `--fail-fast` stops on).
    pub decided: bool,
    /// The measured figure (the worst target's), in `unit`.
    pub figure: Option<f64>,
    /// The bound it is held to, in `unit`.
    pub limit: Option<f64>,
    /// Unit of `figure` and `limit`: `probes`, `targets`, `ratio`, `seconds`, `transitions`.
    pub unit: &'static str,
    /// The target the figure belongs to, when it is one target's.
    pub target: Option<String>,
    /// One line for people, with the figures.
    pub summary: String,
}

impl Check {
    fn new(name: CheckName, unit: &'static str) -> Check {
        Check {
            name,
            status: Status::Pass,
            decided: false,
            figure: None,
            limit: None,
            unit,
            target: None,
            summary: String::new(),
        }
    }

    fn fail(mut self, decided: bool, summary: String) -> Check {
        self.status = Status::Fail;
        self.decided = decided;
        self.summary = summary;
        self
    }

    fn with(mut self, status: Status, summary: String) -> Check {
        self.status = status;
        self.summary = summary;
        self
    }
}

/// The whole verdict: PASS only when the window ran to its end and no check failed.
pub fn passed(checks: &[Check], stage: &Stage) -> bool {
    stage.done
        && stage.stopped.is_none()
        && checks
            .iter()
            .all(|c| matches!(c.status, Status::Pass | Status::Skip))
}

/// Judges every check. While the window runs (`stage.done == false`) a check that could still
/// go either way is `Pending` or shows its current standing with `decided == false`.
pub fn judge(
    targets: &[TargetTally],
    memory: Option<&MemoryTally>,
    c: &Criteria,
    stage: &Stage,
) -> Vec<Check> {
    vec![
        check_data(targets, c, stage),
        check_answered(targets, stage),
        check_error_rate(targets, c, stage),
        check_latency(targets, c, stage),
        check_flaps(targets, c, stage),
        check_memory(memory, c, stage),
    ]
}

fn check_data(targets: &[TargetTally], c: &Criteria, stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::Data, "probes");
    ch.limit = Some(c.min_probes as f64);
    let fewest = targets.iter().min_by_key(|t| t.probes);
    ch.figure = Some(fewest.map_or(0, |t| t.probes) as f64);
    ch.target = fewest.map(|t| t.name.clone());
    let total: u64 = targets.iter().map(|t| t.probes).sum();
    if targets.is_empty() {
        return ch.fail(true, "no targets to probe".into());
    }
    if !stage.done {
        return ch.with(
            Status::Pending,
            format!("{total} probes in {}", dur(stage.elapsed)),
        );
    }
    if let Some(why) = stage.stopped {
        let how = match why {
            StopReason::FailFast => "--fail-fast",
            StopReason::Interrupted => "interrupted",
        };
        return ch.fail(
            true,
            format!(
                "the window was cut short ({how}) after {} of {}: not enough to judge",
                dur(stage.elapsed),
                dur(c.window)
            ),
        );
    }
    let short: Vec<String> = targets
        .iter()
        .filter(|t| t.probes < c.min_probes)
        .map(|t| format!("{}: {} probes", t.name, t.probes))
        .collect();
    if !short.is_empty() {
        return ch.fail(
            true,
            format!(
                "not enough probes to judge (need ≥ {} per target): {}",
                c.min_probes,
                short.join("; ")
            ),
        );
    }
    ch.summary = format!(
        "{total} probes over {} ({} target{}, ≥ {} each)",
        dur(c.window),
        targets.len(),
        if targets.len() == 1 { "" } else { "s" },
        c.min_probes
    );
    ch
}

fn check_answered(targets: &[TargetTally], stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::Answered, "targets");
    ch.limit = Some(targets.len() as f64);
    let mut bad = Vec::new();
    let mut first_bad = None;
    for t in targets {
        let problem = match &t.last {
            None => Some("no probe completed".to_string()),
            Some(_) if !t.ever_answered() => Some(format!(
                "never answered as expected ({} probes: {}{})",
                t.probes,
                t.failure_words(),
                last_detail(t)
            )),
            Some(last) if t.state.health == Health::Down => Some(format!(
                "down at the end ({} failures in a row, last: {}{}{})",
                t.state.failures,
                last.result.err().map_or("success", Reason::as_str),
                last.status
                    .map(|s| format!(", status {s}"))
                    .unwrap_or_default(),
                last.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )),
            Some(_) => None,
        };
        if let Some(p) = problem {
            first_bad.get_or_insert_with(|| t.name.clone());
            bad.push(format!("{}: {p}", t.name));
        }
    }
    ch.figure = Some((targets.len() - bad.len()) as f64);
    ch.target = first_bad;
    if bad.is_empty() {
        let statuses: Vec<String> = targets
            .iter()
            .map(|t| {
                let s = t.last.as_ref().and_then(|l| l.status);
                format!(
                    "{} {}",
                    t.name,
                    s.map_or_else(|| "ok".into(), |s| s.to_string())
                )
            })
            .collect();
        ch.summary = format!(
            "every target answered as expected ({})",
            statuses.join(", ")
        );
        return ch;
    }
    let summary = bad.join("; ");
    if !stage.done && targets.iter().all(|t| t.last.is_none()) {
        return ch.with(Status::Pending, "waiting for the first answers".into());
    }
    ch.fail(false, summary)
}

fn last_detail(t: &TargetTally) -> String {
    match t.last.as_ref().and_then(|l| l.detail.as_deref()) {
        Some(d) => format!("; last: {d}"),
        None => String::new(),
    }
}

fn check_error_rate(targets: &[TargetTally], c: &Criteria, stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::ErrorRate, "ratio");
    ch.limit = Some(c.max_error_rate);
    let worst = targets.iter().filter(|t| t.probes > 0).max_by(|a, b| {
        let (ra, rb) = (a.error_rate().unwrap_or(0.0), b.error_rate().unwrap_or(0.0));
        ra.total_cmp(&rb)
    });
    let Some(w) = worst else {
        if !stage.done {
            return ch.with(Status::Pending, "no probe completed yet".into());
        }
        return ch.fail(true, "no probe completed: no error rate to judge".into());
    };
    let rate = w.error_rate().unwrap_or(0.0);
    ch.figure = Some(rate);
    ch.target = Some(w.name.clone());
    let breakdown = if w.failures() > 0 {
        format!(": {}", w.failure_words())
    } else {
        String::new()
    };
    let figure = format!(
        "{} {} ({} of {} probes failed{breakdown})",
        w.name,
        pct(rate),
        w.failures(),
        w.probes
    );
    // Failures already beyond what the whole window could absorb: no later success helps.
    let allowed = c.max_error_rate * c.max_probes() as f64;
    let lost = targets.iter().find(|t| t.failures() as f64 > allowed);
    if rate > c.max_error_rate || lost.is_some() {
        let summary = format!("{figure} > max {}", pct(c.max_error_rate));
        return ch.fail(lost.is_some() || stage.done, summary);
    }
    ch.summary = if targets.len() > 1 {
        format!("worst {figure} ≤ max {}", pct(c.max_error_rate))
    } else {
        format!("{figure} ≤ max {}", pct(c.max_error_rate))
    };
    ch
}

fn check_latency(targets: &[TargetTally], c: &Criteria, stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::LatencyP99, "seconds");
    let bounded: Vec<&TargetTally> = targets.iter().filter(|t| t.bound.is_some()).collect();
    if bounded.is_empty() {
        let figures: Vec<String> = targets
            .iter()
            .filter_map(|t| {
                t.latency
                    .quantile(LATENCY_QUANTILE)
                    .map(|p| format!("{} {}", t.name, dur(p)))
            })
            .collect();
        ch.figure = targets
            .iter()
            .filter_map(|t| t.latency.quantile(LATENCY_QUANTILE))
            .max()
            .map(|d| d.as_secs_f64());
        return ch.with(
            Status::Skip,
            format!(
                "no bound given (--max-p99 or --baseline); p99 {}",
                if figures.is_empty() {
                    "not measured".to_string()
                } else {
                    figures.join(", ")
                }
            ),
        );
    }
    // The worst target: the highest p99 relative to its bound; no answers counts as worst.
    let mut worst: Option<(&TargetTally, Option<Duration>, f64)> = None;
    for t in &bounded {
        let limit = t.bound.as_ref().map_or(Duration::MAX, |b| b.limit);
        let p99 = t.latency.quantile(LATENCY_QUANTILE);
        let ratio = match p99 {
            Some(p) => p.as_secs_f64() / limit.as_secs_f64().max(1e-9),
            None => f64::INFINITY,
        };
        if worst.as_ref().is_none_or(|w| ratio > w.2) {
            worst = Some((t, p99, ratio));
        }
    }
    let Some((w, p99, _)) = worst else {
        return ch;
    };
    let bound = w.bound.clone().unwrap_or(LatencyBound {
        limit: Duration::MAX,
        source: String::new(),
    });
    ch.limit = Some(bound.limit.as_secs_f64());
    ch.target = Some(w.name.clone());
    let Some(p99) = p99 else {
        if !stage.done {
            return ch.with(Status::Pending, format!("{}: no answer yet", w.name));
        }
        return ch.fail(true, format!("{}: no answer to measure a p99 from", w.name));
    };
    ch.figure = Some(p99.as_secs_f64());
    let text = format!("{} p99 {} ({} answers)", w.name, dur(p99), w.answered);
    // More than 1 % of the window's possible probes already over the bound: p99 stays over.
    let allowed = (1.0 - LATENCY_QUANTILE) * c.max_probes() as f64 + 1.0;
    let lost = bounded.iter().any(|t| t.over_bound as f64 > allowed);
    if p99 > bound.limit || lost {
        return ch.fail(
            lost || stage.done,
            format!("{text} > {} ({})", dur(bound.limit), bound.source),
        );
    }
    if stage.done && w.answered < c.min_probes {
        return ch.fail(
            true,
            format!(
                "{text}: too few answers to judge a p99 (need ≥ {})",
                c.min_probes
            ),
        );
    }
    ch.summary = format!("{text} ≤ {} ({})", dur(bound.limit), bound.source);
    ch
}

fn check_flaps(targets: &[TargetTally], c: &Criteria, stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::Flaps, "transitions");
    ch.limit = Some(f64::from(c.max_flaps));
    let total: u32 = targets.iter().map(|t| t.down_transitions).sum();
    ch.figure = Some(f64::from(total));
    let flapping: Vec<String> = targets
        .iter()
        .filter(|t| t.down_transitions > 0)
        .map(|t| {
            format!(
                "{} ×{}, down {}",
                t.name,
                t.down_transitions,
                dur(t.downtime(stage.elapsed))
            )
        })
        .collect();
    ch.target = targets
        .iter()
        .filter(|t| t.down_transitions > 0)
        .max_by_key(|t| t.down_transitions)
        .map(|t| t.name.clone());
    let plural = if total == 1 { "" } else { "s" };
    if total > c.max_flaps {
        return ch.fail(
            true,
            format!(
                "{total} down transition{plural} ({}) > max {}",
                flapping.join("; "),
                c.max_flaps
            ),
        );
    }
    ch.summary = if total == 0 {
        "no down transitions".to_string()
    } else {
        format!(
            "{total} down transition{plural} ({}) ≤ max {}",
            flapping.join("; "),
            c.max_flaps
        )
    };
    ch
}

fn check_memory(memory: Option<&MemoryTally>, c: &Criteria, stage: &Stage) -> Check {
    let mut ch = Check::new(CheckName::Memory, "ratio");
    let (Some(m), Some(mc)) = (memory, c.memory) else {
        return ch.with(
            Status::Skip,
            "not measured (--memory-cgroup, --memory-container or --memory-query)".into(),
        );
    };
    ch.limit = Some(mc.max_ratio);
    let max = m.max_ratio();
    ch.figure = max;
    let growth = m.growth();
    let last_ratio = m.samples.last().and_then(MemorySample::ratio);
    let mut text = match (max, last_ratio) {
        (Some(max), Some(last)) => format!(
            "max {} of the limit (last {}), {} readings",
            pct(max),
            pct(last),
            m.samples.len()
        ),
        _ => format!("{} readings, no limit set", m.samples.len()),
    };
    if let Some(g) = growth {
        text.push_str(&format!(", trend {:+.2}% over the window", g * 100.0));
    }
    if let Some(max) = max {
        if max >= mc.max_ratio {
            return ch.fail(true, format!("{text}: ≥ max {}", pct(mc.max_ratio)));
        }
    }
    if m.samples.len() < MIN_MEMORY_SAMPLES {
        if !stage.done {
            return ch.with(Status::Pending, text);
        }
        let err = m
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        return ch.fail(
            true,
            format!(
                "not enough memory readings to judge ({} of ≥ {MIN_MEMORY_SAMPLES}){err}",
                m.samples.len()
            ),
        );
    }
    if let Some(g) = growth {
        if g > mc.max_growth {
            return ch.fail(
                stage.done,
                format!("{text}: trending up (> {:+.2}%)", mc.max_growth * 100.0),
            );
        }
    }
    ch.summary = text;
    ch
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        down_after: 3,
        up_after: 2,
    };

    fn criteria() -> Criteria {
        Criteria {
            window: Duration::from_secs(10),
            interval: Duration::from_millis(100),
            max_error_rate: 0.01,
            max_flaps: 0,
            min_probes: 10,
            memory: None,
        }
    }

    fn done(elapsed_ms: u64) -> Stage {
        Stage {
            elapsed: Duration::from_millis(elapsed_ms),
            done: true,
            stopped: None,
        }
    }

    fn running(elapsed_ms: u64) -> Stage {
        Stage {
            done: false,
            ..done(elapsed_ms)
        }
    }

    fn sample(i: u64, latency_ms: u64, result: Result<(), Reason>) -> Sample {
        Sample {
            target: 0,
            at: Duration::from_millis(i * 100),
            latency: Duration::from_millis(latency_ms),
            result,
            status: match result {
                Err(Reason::Refused) | Err(Reason::Timeout) => None,
                Err(_) => Some(500),
                Ok(()) => Some(200),
            },
            detail: result.err().map(|r| format!("{r} detail")),
            skipped_after: 0,
        }
    }

    /// A tally of `n` probes; `fail(i)` says which fail and how.
    fn tally(
        n: u64,
        bound: Option<Duration>,
        fail: impl Fn(u64) -> Option<Reason>,
        latency: impl Fn(u64) -> u64,
    ) -> TargetTally {
        let mut t = TargetTally::new(
            "gw",
            "http://127.0.0.1/health",
            "GET",
            T,
            bound.map(|limit| LatencyBound {
                limit,
                source: "--max-p99".into(),
            }),
        );
        for i in 0..n {
            let r = match fail(i) {
                Some(r) => Err(r),
                None => Ok(()),
            };
            t.push(&sample(i, latency(i), r));
        }
        t
    }

    fn by_name(checks: &[Check], n: CheckName) -> &Check {
        checks.iter().find(|c| c.name == n).expect("every check")
    }

    #[test]
    fn a_healthy_window_passes_every_check() {
        let t = tally(100, Some(Duration::from_millis(50)), |_| None, |_| 2);
        let checks = judge(&[t], None, &criteria(), &done(10_000));
        assert!(passed(&checks, &done(10_000)), "{checks:#?}");
        assert_eq!(by_name(&checks, CheckName::Memory).status, Status::Skip);
    }

    #[test]
    fn two_percent_errors_fail_the_error_rate_check_with_its_figure() {
        let t = tally(
            100,
            None,
            |i| (i % 50 == 49).then_some(Reason::Status),
            |_| 2,
        );
        let checks = judge(&[t], None, &criteria(), &done(10_000));
        let c = by_name(&checks, CheckName::ErrorRate);
        assert_eq!(c.status, Status::Fail);
        assert_eq!(c.figure, Some(0.02));
        assert!(c.summary.contains("2.00%"), "{}", c.summary);
        assert!(c.summary.contains("status ×2"), "{}", c.summary);
        // Two isolated failures never take the target down.
        assert_eq!(by_name(&checks, CheckName::Flaps).status, Status::Pass);
    }

    #[test]
    fn error_rate_is_decided_once_the_window_cannot_absorb_the_failures() {
        // 100 possible probes at 1 %: the second failure can never be diluted below 1 %.
        let t = tally(5, None, |i| (i < 2).then_some(Reason::Status), |_| 2);
        let c = &judge(&[t], None, &criteria(), &running(500))[2];
        assert_eq!((c.status, c.decided), (Status::Fail, true));
        let t = tally(5, None, |i| (i == 0).then_some(Reason::Status), |_| 2);
        let c = &judge(&[t], None, &criteria(), &running(500))[2];
        assert_eq!((c.status, c.decided), (Status::Fail, false));
    }

    #[test]
    fn a_latency_spike_fails_p99_and_is_decided_early() {
        let t = tally(
            100,
            Some(Duration::from_millis(50)),
            |_| None,
            |i| if (40..45).contains(&i) { 200 } else { 2 },
        );
        let checks = judge(&[t.clone()], None, &criteria(), &done(10_000));
        let c = by_name(&checks, CheckName::LatencyP99);
        assert_eq!(c.status, Status::Fail);
        assert!(c.figure.expect("figure") >= 0.19, "{c:?}");
        assert_eq!(c.limit, Some(0.05));
        let live = judge(&[t], None, &criteria(), &running(5_000));
        assert!(by_name(&live, CheckName::LatencyP99).decided);
    }

    #[test]
    fn a_target_that_never_answered_fails_and_reports_why() {
        let t = tally(30, None, |_| Some(Reason::Refused), |_| 0);
        let checks = judge(&[t], None, &criteria(), &done(3_000));
        assert!(!passed(&checks, &done(3_000)));
        let a = by_name(&checks, CheckName::Answered);
        assert_eq!(a.status, Status::Fail);
        assert!(a.summary.contains("never answered"), "{}", a.summary);
        assert!(a.summary.contains("refused ×30"), "{}", a.summary);
    }

    #[test]
    fn no_samples_is_never_a_pass() {
        let t = tally(0, Some(Duration::from_millis(5)), |_| None, |_| 0);
        let checks = judge(&[t], None, &criteria(), &done(10_000));
        assert!(!passed(&checks, &done(10_000)));
        for n in [
            CheckName::Data,
            CheckName::Answered,
            CheckName::ErrorRate,
            CheckName::LatencyP99,
        ] {
            assert_eq!(by_name(&checks, n).status, Status::Fail, "{n}");
        }
        let none = judge(&[], None, &criteria(), &done(1));
        assert_eq!(by_name(&none, CheckName::Data).status, Status::Fail);
        assert!(!passed(&none, &done(1)));
    }

    #[test]
    fn too_few_probes_fail_the_data_check() {
        let t = tally(4, None, |_| None, |_| 1);
        let checks = judge(&[t], None, &criteria(), &done(10_000));
        let d = by_name(&checks, CheckName::Data);
        assert_eq!(d.status, Status::Fail);
        assert!(d.summary.contains("gw: 4 probes"), "{}", d.summary);
    }

    #[test]
    fn going_down_half_way_counts_one_flap_and_the_downtime() {
        // 50 successes, then refused from 5.0 s to the end of a 10 s window.
        let t = tally(100, None, |i| (i >= 50).then_some(Reason::Refused), |_| 1);
        assert_eq!(t.down_transitions, 1);
        assert_eq!(t.down_periods[0].start, Duration::from_secs(5));
        assert_eq!(t.downtime(Duration::from_secs(10)), Duration::from_secs(5));
        let checks = judge(&[t], None, &criteria(), &done(10_000));
        let f = by_name(&checks, CheckName::Flaps);
        assert_eq!((f.status, f.figure), (Status::Fail, Some(1.0)));
        assert!(f.summary.contains("down 5s"), "{}", f.summary);
    }

    #[test]
    fn a_recovered_outage_ends_at_the_first_success() {
        // Down from probe 10 (1.0 s) to probe 20 (2.0 s); up confirmed at probe 21.
        let t = tally(
            40,
            None,
            |i| (10..20).contains(&i).then_some(Reason::Refused),
            |_| 1,
        );
        assert_eq!((t.down_transitions, t.up_transitions), (1, 2));
        assert_eq!(
            t.down_periods,
            vec![DownPeriod {
                start: Duration::from_secs(1),
                end: Some(Duration::from_secs(2))
            }]
        );
    }

    #[test]
    fn interruption_and_fail_fast_never_pass() {
        let t = tally(100, None, |_| None, |_| 1);
        let stage = Stage {
            stopped: Some(StopReason::Interrupted),
            ..done(4_000)
        };
        let checks = judge(&[t], None, &criteria(), &stage);
        assert!(!passed(&checks, &stage));
        assert!(by_name(&checks, CheckName::Data)
            .summary
            .contains("interrupted"));
    }

    fn mem(points: &[(u64, f64)], limit: Option<f64>) -> MemoryTally {
        MemoryTally {
            source: "test".into(),
            samples: points
                .iter()
                .map(|&(s, used)| MemorySample {
                    at: Duration::from_secs(s),
                    used,
                    limit,
                })
                .collect(),
            ..MemoryTally::default()
        }
    }

    fn memory_check(m: &MemoryTally, stage: &Stage) -> Check {
        let c = Criteria {
            memory: Some(MemoryCriteria {
                max_ratio: 0.85,
                max_growth: 0.05,
            }),
            ..criteria()
        };
        check_memory(Some(m), &c, stage)
    }

    #[test]
    fn memory_below_the_limit_and_flat_passes() {
        let m = mem(&[(0, 50.0), (1, 51.0), (2, 50.0), (3, 50.5)], Some(100.0));
        let c = memory_check(&m, &done(3_000));
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert_eq!(c.figure, Some(0.51));
    }

    #[test]
    fn memory_above_85_percent_fails_at_once() {
        let m = mem(&[(0, 90.0)], Some(100.0));
        let c = memory_check(&m, &running(1_000));
        assert_eq!((c.status, c.decided), (Status::Fail, true));
    }

    #[test]
    fn memory_trending_up_fails_even_below_the_limit() {
        // 10 % of the limit more every second for 4 s: +40 % over the window.
        let m = mem(
            &[(0, 10.0), (1, 20.0), (2, 30.0), (3, 40.0), (4, 50.0)],
            Some(100.0),
        );
        assert!((m.growth().expect("enough") - 0.4).abs() < 1e-9);
        let c = memory_check(&m, &done(4_000));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("trending up"), "{}", c.summary);
    }

    #[test]
    fn unlimited_memory_is_judged_on_its_trend_only() {
        let m = mem(&[(0, 100.0), (1, 100.0), (2, 100.0)], None);
        let c = memory_check(&m, &done(2_000));
        assert_eq!(c.status, Status::Pass, "{c:?}");
        assert!(c.summary.contains("no limit"), "{}", c.summary);
    }

    #[test]
    fn too_few_memory_readings_fail() {
        let m = mem(&[(0, 10.0)], Some(100.0));
        let c = memory_check(&m, &done(2_000));
        assert_eq!(c.status, Status::Fail);
        assert!(c.summary.contains("not enough"), "{}", c.summary);
    }

    #[test]
    fn max_probes_rounds_up() {
        let c = Criteria {
            window: Duration::from_millis(1050),
            ..criteria()
        };
        assert_eq!(c.max_probes(), 11);
    }
}
