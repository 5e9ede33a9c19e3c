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

use std::fmt;
use std::time::Duration;

use crate::probe::Reason;
use crate::state::Health;

use super::human::{dur, pct};
pub use super::tally::{
    DownPeriod, LastProbe, LatencyBound, MemorySample, MemoryTally, Sample, TargetTally,
    MIN_MEMORY_SAMPLES,
};

/// The quantile the latency check judges.
pub const LATENCY_QUANTILE: f64 = 0.99;

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
    // The first target with the highest rate (ties keep the given order).
    let mut worst: Option<&TargetTally> = None;
    for t in targets.iter().filter(|t| t.probes > 0) {
        if worst.is_none_or(|w| t.error_rate() > w.error_rate()) {
            worst = Some(t);
        }
    }
    let Some(w) = worst else {
        if !stage.done {
            return ch.with(Status::Pending, "no probe completed yet".into());
        }
        return ch.fail(true, "no probe completed: no error rate to judge".into());
    };
    let rate = w.error_rate().unwrap_or(0.0);
    ch.figure = Some(rate);
    ch.target = Some(w.name.clone());
    let figure = |t: &TargetTally| {
        let breakdown = if t.failures() > 0 {
            format!(": {}", t.failure_words())
        } else {
            String::new()
        };
        format!(
            "{} {} ({} of {} probes failed{breakdown})",
            t.name,
            pct(t.error_rate().unwrap_or(0.0)),
            t.failures(),
            t.probes
        )
    };
    // Failures already beyond what the whole window could absorb: no later success helps.
    let allowed = c.max_error_rate * c.max_probes() as f64;
    let lost = targets.iter().any(|t| t.failures() as f64 > allowed);
    if rate > c.max_error_rate || lost {
        let summary = format!("{} > max {}", figure(w), pct(c.max_error_rate));
        return ch.fail(lost || stage.done, summary);
    }
    let all: Vec<String> = targets
        .iter()
        .filter(|t| t.probes > 0)
        .map(figure)
        .collect();
    ch.summary = format!("{} ≤ max {}", all.join("; "), pct(c.max_error_rate));
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
    if let Some(few) = bounded.iter().find(|t| t.answered < c.min_probes) {
        if stage.done {
            return ch.fail(
                true,
                format!(
                    "{}: {} answers, too few to judge a p99 (need ≥ {})",
                    few.name, few.answered, c.min_probes
                ),
            );
        }
    }
    let all: Vec<String> = bounded
        .iter()
        .filter_map(|t| {
            let b = t.bound.as_ref()?;
            let p = t.latency.quantile(LATENCY_QUANTILE)?;
            Some(format!(
                "{} p99 {} ({} answers) ≤ {} ({})",
                t.name,
                dur(p),
                t.answered,
                dur(b.limit),
                b.source
            ))
        })
        .collect();
    ch.summary = all.join("; ");
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
mod tests;
