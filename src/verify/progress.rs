//! Live progress while the window runs: an indicatif bar on a terminal, a plain line every few
//! seconds otherwise (CI logs, pipes), nothing with `--progress-interval 0`.
//!
//! Both show elapsed / remaining, the running error rate, p50 / p99 and each check's standing.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use super::checks::{Check, Status};
use super::human::{dur, pct};

/// The terminal bar: progress, elapsed, remaining (the prefix), then the figures.
pub const BAR_TEMPLATE: &str =
    "verify [{bar:30}] {elapsed_precise} elapsed, {prefix} left | {wide_msg}";

/// How often the terminal bar is redrawn.
pub const BAR_REFRESH: Duration = Duration::from_millis(250);

/// The running figures shown on each update.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    /// Time since the start of the window.
    pub elapsed: Duration,
    /// The window.
    pub window: Duration,
    /// Probes completed, all targets.
    pub probes: u64,
    /// Probes failed, all targets.
    pub failures: u64,
    /// Median latency of answers so far.
    pub p50: Option<Duration>,
    /// p99 latency of answers so far.
    pub p99: Option<Duration>,
    /// The checks' current standing.
    pub checks: &'a [Check],
}

/// Where progress goes.
#[derive(Debug)]
pub enum Progress {
    /// A bar on the terminal.
    Bar(ProgressBar),
    /// A line on stderr every `every`.
    Lines {
        /// Period.
        every: Duration,
        /// When the next line is due.
        next: Instant,
    },
    /// Nothing.
    Off,
}

fn standing(c: &Check) -> &'static str {
    match (c.status, c.decided) {
        (Status::Pass, _) => "ok",
        (Status::Fail, true) => "FAILED",
        (Status::Fail, false) => "failing",
        (Status::Skip, _) => "skip",
        (Status::Pending, _) => "pending",
    }
}

/// Time left, rounded up to whole seconds (a countdown, not a measurement).
fn left(s: &Snapshot<'_>) -> String {
    let d = s.window.saturating_sub(s.elapsed);
    dur(Duration::from_secs(
        d.as_secs() + u64::from(d.subsec_nanos() > 0),
    ))
}

/// One line of figures and standings.
pub fn line(s: &Snapshot<'_>) -> String {
    let rate = if s.probes > 0 {
        pct(s.failures as f64 / s.probes as f64)
    } else {
        "-".to_string()
    };
    let q = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), dur);
    let checks: Vec<String> = s
        .checks
        .iter()
        .map(|c| format!("{} {}", c.name, standing(c)))
        .collect();
    format!(
        "{} probes, errors {} ({rate}), p50 {} p99 {} | {}",
        s.probes,
        s.failures,
        q(s.p50),
        q(s.p99),
        checks.join(", ")
    )
}

impl Progress {
    /// A bar when stderr is a terminal, lines every `every` otherwise; `every == 0` is off.
    pub fn new(window: Duration, every: Duration, now: Instant) -> Progress {
        if every.is_zero() {
            return Progress::Off;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(window.as_millis() as u64),
                ProgressDrawTarget::stderr(),
            );
            let style = ProgressStyle::with_template(BAR_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(dur(window));
            return Progress::Bar(bar);
        }
        Progress::Lines {
            every,
            next: now + every,
        }
    }

    /// How often [`Progress::update`] wants to be called.
    pub fn period(&self) -> Option<Duration> {
        match self {
            Progress::Bar(_) => Some(BAR_REFRESH),
            Progress::Lines { every, .. } => Some(*every),
            Progress::Off => None,
        }
    }

    /// Shows the figures (a line only when one is due).
    pub fn update(&mut self, now: Instant, s: &Snapshot<'_>) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(s.elapsed.min(s.window).as_millis() as u64);
                bar.set_prefix(left(s));
                bar.set_message(line(s));
            }
            Progress::Lines { every, next } => {
                if now < *next {
                    return;
                }
                while *next <= now {
                    *next += *every;
                }
                eprintln!(
                    "verify {} / {} ({} left): {}",
                    dur(s.elapsed.min(s.window)),
                    dur(s.window),
                    left(s),
                    line(s)
                );
            }
            Progress::Off => {}
        }
    }

    /// Clears the bar before the summary is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::checks::CheckName;

    #[test]
    fn the_bar_template_is_valid() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn a_line_shows_figures_and_standings() {
        let checks = [Check {
            name: CheckName::ErrorRate,
            status: Status::Fail,
            decided: true,
            figure: Some(0.5),
            limit: Some(0.01),
            unit: "ratio",
            target: None,
            summary: String::new(),
        }];
        let l = line(&Snapshot {
            elapsed: Duration::from_secs(5),
            window: Duration::from_secs(600),
            probes: 10,
            failures: 5,
            p50: Some(Duration::from_millis(2)),
            p99: None,
            checks: &checks,
        });
        assert_eq!(
            l,
            "10 probes, errors 5 (50.00%), p50 2.00ms p99 - | error_rate FAILED"
        );
    }
}
