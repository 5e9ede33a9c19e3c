//! Maintenance windows: when they are (one-off or recurring, reckoned in an IANA time zone),
//! what they cover, and the [`Calendar`] that answers [`MaintenanceCalendar`]'s questions over
//! the config's windows and the API's together.
//!
//! A window starts at `start` and lasts `end − start` (or `duration`) of absolute time. A
//! recurring window starts again at the same wall-clock time of the time zone on every day the
//! recurrence names, so a 02:00 window stays at 02:00 across a DST change; a start that falls in
//! a DST gap moves forward by the gap, one that falls in a repeated hour takes the first.
//!
//! The recurrence grammar (`every`), case-insensitive:
//! - `day`, `week`: every day, every 7 days;
//! - `N days`, `N weeks` (`N` from 1 to 366): every N days or weeks from the start's date;
//! - a comma-separated list of weekdays (`monday,thursday`, or `mon,thu`): on those weekdays,
//!   from the start's date on.

use std::collections::HashMap;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use crate::store::model::Window;
use crate::store::{Maintenance, MaintenanceCalendar, Millis};

/// The time zone of a window that names none.
pub const DEFAULT_TZ: &str = "UTC";

/// Occurrences looked at per window per question, at most: a bound on a question over a very
/// long range (about 270 years of daily windows).
const MAX_STEPS: usize = 100_000;

const DAY_MS: i64 = 86_400_000;

/// How a window recurs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Every {
    /// Every N days from the start's date.
    Days(u32),
    /// On these weekdays (index 0 = Monday).
    Weekdays([bool; 7]),
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `monday,thursday`: the weekdays set in `days`.
pub fn weekday_list(days: &[bool; 7]) -> String {
    WEEKDAYS
        .iter()
        .zip(days)
        .filter(|(_, on)| **on)
        .map(|(d, _)| *d)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a recurrence (see the module doc for the grammar).
pub fn parse_every(text: &str) -> Result<Every, String> {
    let s = text.trim().to_ascii_lowercase();
    let bad = || {
        format!(
            "unknown recurrence `{text}`: use `day`, `week`, `N days`, `N weeks` or weekdays \
             such as `monday,thursday`"
        )
    };
    match s.as_str() {
        "day" | "daily" => return Ok(Every::Days(1)),
        "week" | "weekly" => return Ok(Every::Days(7)),
        _ => {}
    }
    if let Some((n, unit)) = s
        .split_once(char::is_whitespace)
        .filter(|_| !s.contains(','))
    {
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if !(1..=366).contains(&n) {
            return Err(format!(
                "recurrence `{text}`: the count must be from 1 to 366"
            ));
        }
        return match unit.trim() {
            "day" | "days" => Ok(Every::Days(n)),
            "week" | "weeks" => Ok(Every::Days(n * 7)),
            _ => Err(bad()),
        };
    }
    let mut days = [false; 7];
    for part in s.split(',') {
        let p = part.trim();
        let i = WEEKDAYS
            .iter()
            .position(|w| p.len() >= 3 && w.starts_with(p))
            .ok_or_else(bad)?;
        days[i] = true;
    }
    Ok(Every::Weekdays(days))
}

/// The time zone named `name` (IANA, such as `Europe/Berlin`; `UTC`).
pub fn parse_tz(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name.trim()).map_err(|_| {
        format!("unknown time zone `{name}`: use an IANA name such as `Europe/Berlin` or `UTC`")
    })
}

/// A start or end: RFC 3339 with an offset (`2026-03-29T01:30:00Z`, `...+02:00`), or a local
/// date-time (`2026-03-29T01:30:00`, `2026-03-29 01:30`) read in `tz`.
pub fn parse_time(text: &str, tz: &TimeZone) -> Result<Zoned, String> {
    let t = text.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts.to_zoned(tz.clone()));
    }
    let dt: DateTime = t.parse().map_err(|_| {
        format!(
            "`{text}` is not a time: use RFC 3339 (`2026-03-29T01:30:00Z`) or a local \
             date-time (`2026-03-29T01:30:00`) with `tz`"
        )
    })?;
    dt.to_zoned(tz.clone())
        .map_err(|e| format!("`{text}` is not a time in the time zone: {e}"))
}

/// A checked maintenance window, from the config or from the API.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSpec {
    /// Title.
    pub name: String,
    /// Targets, failover groups or components it covers (empty: all).
    pub components: Vec<String>,
    /// The first start, in the window's time zone.
    pub start: Zoned,
    /// Each occurrence's length, ms (more than 0).
    pub length: i64,
    /// The recurrence, none for a one-off window.
    pub every: Option<Every>,
    /// `config` or `api:ID`.
    pub source: String,
}

/// The parts of a window as written (config or API body), before checking.
#[derive(Debug, Clone, Default)]
pub struct Parts<'a> {
    /// Title.
    pub name: &'a str,
    /// Covered names.
    pub components: Vec<String>,
    /// Start text.
    pub start: Option<&'a str>,
    /// End text.
    pub end: Option<&'a str>,
    /// Duration text (humantime).
    pub duration: Option<&'a str>,
    /// Recurrence text.
    pub every: Option<&'a str>,
    /// Time zone name.
    pub tz: Option<&'a str>,
}

/// One problem with a window: the field it is about and what is wrong.
pub type Problem = (&'static str, String);

impl WindowSpec {
    /// Checks `p` into a window; every problem found, each naming its field.
    pub fn check(p: &Parts<'_>, source: &str) -> Result<WindowSpec, Vec<Problem>> {
        let mut problems = Vec::new();
        if p.name.trim().is_empty() {
            problems.push(("name", "missing: give the window a name".to_string()));
        }
        let tz = match parse_tz(p.tz.unwrap_or(DEFAULT_TZ)) {
            Ok(tz) => Some(tz),
            Err(e) => {
                problems.push(("tz", e));
                None
            }
        };
        let every = match p.every.map(parse_every).transpose() {
            Ok(e) => e,
            Err(e) => {
                problems.push(("every", e));
                None
            }
        };
        let start = match (p.start, &tz) {
            (None, _) => {
                problems.push(("start", "missing: say when the window starts".into()));
                None
            }
            (Some(s), Some(tz)) => parse_time(s, tz)
                .map_err(|e| problems.push(("start", e)))
                .ok(),
            (Some(_), None) => None,
        };
        let length = match (p.end, p.duration) {
            (Some(_), Some(_)) => {
                problems.push(("duration", "set only one of `end` or `duration`".into()));
                None
            }
            (None, None) => {
                problems.push(("end", "missing: give `end` or `duration`".into()));
                None
            }
            (None, Some(d)) => match humantime::parse_duration(d.trim()) {
                Ok(d) if !d.is_zero() => Some(("duration", d.as_millis() as i64)),
                Ok(_) => {
                    problems.push(("duration", "must be longer than 0".into()));
                    None
                }
                Err(e) => {
                    problems.push(("duration", format!("`{d}` is not a duration: {e}")));
                    None
                }
            },
            (Some(e), None) => match (&tz, &start) {
                (Some(tz), Some(s)) => match parse_time(e, tz) {
                    Ok(end) => Some(("end", millis(&end) - millis(s))),
                    Err(e) => {
                        problems.push(("end", e));
                        None
                    }
                },
                _ => None,
            },
        };
        if let Some((field, l)) = length {
            if l <= 0 {
                problems.push((field, "the window must end after it starts".into()));
            } else if let Some(Every::Days(n)) = &every {
                if l > i64::from(*n) * DAY_MS {
                    let msg = "the window is longer than its recurrence period".to_string();
                    problems.push((field, msg));
                }
            }
        }
        match (start, length, problems.is_empty()) {
            (Some(start), Some((_, length)), true) => Ok(WindowSpec {
                name: p.name.trim().to_string(),
                components: p.components.clone(),
                start,
                length,
                every,
                source: source.to_string(),
            }),
            _ => Err(problems),
        }
    }

    /// A window made through the API, as stored.
    pub fn from_stored(m: &Maintenance) -> Result<WindowSpec, String> {
        let tz = parse_tz(&m.tz)?;
        let start = Timestamp::from_millisecond(m.start)
            .map_err(|e| e.to_string())?
            .to_zoned(tz);
        let every = m.every.as_deref().map(parse_every).transpose()?;
        Ok(WindowSpec {
            name: m.name.clone(),
            components: m.components.clone(),
            start,
            length: (m.end - m.start).max(1),
            every,
            source: format!("api:{}", m.id),
        })
    }

    /// Whether it covers `name` (whose component is `component`).
    pub fn covers(&self, name: &str, component: &str) -> bool {
        self.components.is_empty() || self.components.iter().any(|c| c == name || c == component)
    }

    /// Every occurrence `[start, end)` that overlaps `[from, to)`, by start.
    pub fn occurrences(&self, from: Millis, to: Millis) -> Vec<(Millis, Millis)> {
        let first = millis(&self.start);
        let mut out = Vec::new();
        let mut push = |s: Millis| {
            if s < to && s + self.length > from && s >= first {
                out.push((s, s + self.length));
            }
        };
        match &self.every {
            None => push(first),
            Some(Every::Days(n)) => {
                let step = i64::from(*n) * DAY_MS;
                // Whole periods before `from`, less one for DST shifts.
                let k0 = ((from - self.length - first) / step - 1).max(0);
                for k in k0..k0 + MAX_STEPS as i64 {
                    let Some(s) = self.on_day(k * i64::from(*n)) else {
                        break;
                    };
                    if s >= to {
                        break;
                    }
                    push(s);
                }
            }
            Some(Every::Weekdays(days)) => {
                let d0 = ((from - self.length - first) / DAY_MS - 1).max(0);
                for k in d0..d0 + MAX_STEPS as i64 {
                    let Some(date) = self.date_after(k) else {
                        break;
                    };
                    let Some(s) = self.on_day(k) else { break };
                    if s >= to {
                        break;
                    }
                    if days[date.weekday().to_monday_zero_offset() as usize] {
                        push(s);
                    }
                }
            }
        }
        out
    }

    fn date_after(&self, days: i64) -> Option<Date> {
        self.start.date().checked_add(Span::new().days(days)).ok()
    }

    /// The start on the day `days` after the first start's date, at its wall-clock time.
    fn on_day(&self, days: i64) -> Option<Millis> {
        let date = self.date_after(days)?;
        let time: Time = self.start.time();
        date.to_datetime(time)
            .to_zoned(self.start.time_zone().clone())
            .ok()
            .map(|z| millis(&z))
    }
}

/// A zoned time's Unix milliseconds.
pub fn millis(z: &Zoned) -> Millis {
    z.timestamp().as_millisecond()
}

/// The maintenance windows in force: the config's and the API's, with each target's component
/// so a window naming a group or a component covers its targets.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    windows: Vec<WindowSpec>,
    /// Target name → component.
    components: HashMap<String, String>,
}

impl Calendar {
    /// A calendar over `windows`, with `components` mapping target names to their components.
    pub fn new(windows: Vec<WindowSpec>, components: HashMap<String, String>) -> Calendar {
        Calendar {
            windows,
            components,
        }
    }

    /// A calendar over the config's windows and the stored API windows (one that no longer
    /// reads, say a time zone gone from the system, is left out with a warning); `components`
    /// maps target names to their components.
    pub fn build(
        config: &[WindowSpec],
        api: &[Maintenance],
        components: HashMap<String, String>,
    ) -> Calendar {
        let mut windows = config.to_vec();
        for m in api {
            match WindowSpec::from_stored(m) {
                Ok(w) => windows.push(w),
                Err(e) => {
                    tracing::warn!(id = m.id, error = %e, "maintenance window left out")
                }
            }
        }
        Calendar::new(windows, components)
    }

    /// The windows it holds.
    pub fn specs(&self) -> &[WindowSpec] {
        &self.windows
    }
}

impl MaintenanceCalendar for Calendar {
    fn covered(&self, name: &str, from: Millis, to: Millis) -> i64 {
        if to <= from {
            return 0;
        }
        let component = self.components.get(name).map_or(name, String::as_str);
        let mut spans: Vec<(Millis, Millis)> = self
            .windows
            .iter()
            .filter(|w| w.covers(name, component))
            .flat_map(|w| w.occurrences(from, to))
            .map(|(s, e)| (s.max(from), e.min(to)))
            .collect();
        spans.sort_unstable();
        let mut total = 0;
        let mut reach = from;
        for (s, e) in spans {
            let s = s.max(reach);
            if e > s {
                total += e - s;
                reach = e;
            }
        }
        total
    }

    fn windows(&self, from: Millis, to: Millis) -> Vec<Window> {
        let mut out: Vec<Window> = self
            .windows
            .iter()
            .flat_map(|w| {
                w.occurrences(from, to).into_iter().map(|(s, e)| Window {
                    name: w.name.clone(),
                    components: w.components.clone(),
                    start: s,
                    end: e,
                    source: w.source.clone(),
                })
            })
            .collect();
        out.sort_by_key(|w| w.start);
        out
    }
}

#[cfg(test)]
#[path = "maintenance_tests.rs"]
mod tests;
