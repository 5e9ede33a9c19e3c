//! The `incidents:` and `maintenance:` config sections.
//!
//! ```yaml
//! incidents:
//!   slo: 99.9              # percent of the window the service must be up (default 99.9)
//!   slo_window: 30d        # the SLO's window (default 30d)
//!   request_rate: 12.5     # requests/s assumed when no proxy counts them (default: none)
//!   reopen_within: 5m      # a component down again this soon after its incident resolved
//!                          # reopens it (default 5m; 0s: always a new incident)
//!   resolve_after: 0s      # a component must stay up this long before its incident
//!                          # resolves (default 0s: at once)
//!
//! maintenance:
//!   - name: weekly deploy
//!     components: [inference-gateway]   # targets, failover groups or components; empty: all
//!     start: 2026-03-29T02:00:00        # RFC 3339, or a local date-time read in `tz`
//!     duration: 1h                      # or `end:`
//!     every: sunday                     # day | week | N days | N weeks | monday,thursday
//!     tz: Europe/Berlin                 # IANA name (default UTC)
//! ```
//!
//! Parsed here so the incident feature stays one module: [`RawIncidents`] and
//! [`RawMaintenance`] are the serde shapes; [`check_incidents`], [`check_maintenance`] and
//! [`check_components`] turn them into checked values and report every problem with its file,
//! line and field like the rest of the config.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};

use super::maintenance::{Parts, WindowSpec};

/// The default SLO, percent.
pub const DEFAULT_SLO: f64 = 99.9;
/// The default SLO window.
pub const DEFAULT_SLO_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The default time after an incident's resolution within which its component going down
/// again reopens it.
pub const DEFAULT_REOPEN_WITHIN: Duration = Duration::from_secs(300);

/// The default time a component must stay up before its incident resolves: none, the
/// incident resolves when its targets are up (`reopen_within` already keeps a flap in one
/// incident; a hold delays every RESOLVED by its length).
pub const DEFAULT_RESOLVE_AFTER: Duration = Duration::ZERO;

/// `incidents:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidents {
    /// Percent of the window the service must be up (`99.9`).
    pub slo: Option<Spanned<f64>>,
    /// The SLO's window (`30d`).
    pub slo_window: Option<Spanned<String>>,
    /// Requests per second assumed when no failover proxy counts them.
    pub request_rate: Option<Spanned<f64>>,
    /// A component down again this soon after its incident resolved reopens it (`5m`).
    pub reopen_within: Option<Spanned<String>>,
    /// A component must stay up this long before its incident resolves (`0s`).
    pub resolve_after: Option<Spanned<String>>,
}

/// The checked `incidents:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentsConfig {
    /// Percent of `slo_window` the service must be up.
    pub slo: f64,
    /// The SLO's window.
    pub slo_window: Duration,
    /// Requests per second assumed when no failover proxy counts them.
    pub request_rate: Option<f64>,
    /// A component that goes down again within this long of its last incident's resolution
    /// reopens that incident instead of opening another (flapping makes one incident); zero
    /// turns it off.
    pub reopen_within: Duration,
    /// Every target of an incident must have stayed up this long before it resolves (resolved
    /// as of when they came up); a target down again meanwhile keeps it open, as if nothing
    /// had happened. Zero resolves at once.
    pub resolve_after: Duration,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            slo: DEFAULT_SLO,
            slo_window: DEFAULT_SLO_WINDOW,
            request_rate: None,
            reopen_within: DEFAULT_REOPEN_WITHIN,
            resolve_after: DEFAULT_RESOLVE_AFTER,
        }
    }
}

/// One entry of `maintenance:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// Title.
    pub name: Option<Spanned<String>>,
    /// Targets, failover groups or components it covers (empty: all).
    #[serde(default)]
    pub components: Vec<Spanned<String>>,
    /// First start.
    pub start: Option<Spanned<String>>,
    /// First end (or `duration`).
    pub end: Option<Spanned<String>>,
    /// Length of each occurrence (or `end`).
    pub duration: Option<Spanned<String>>,
    /// Recurrence.
    pub every: Option<Spanned<String>>,
    /// IANA time zone.
    pub tz: Option<Spanned<String>>,
}

/// A checked config window with where its names were written, for [`check_components`].
#[derive(Debug, Clone)]
pub struct Pending {
    /// File.
    file: PathBuf,
    /// Field prefix (`maintenance[0]`).
    field: String,
    /// Each component name and its position.
    names: Vec<(String, Pos)>,
}

/// Checks `incidents:` of the file `diag` is at; at most one file may set it (`seen` holds
/// where the first did).
pub fn check_incidents(
    diag: &mut Diagnostics,
    raw: &Spanned<RawIncidents>,
    seen: &mut Option<(PathBuf, u64)>,
    out: &mut IncidentsConfig,
) {
    if let Some((f, l)) = seen {
        let msg = format!("incidents is already set at {}:{l}", f.display());
        diag.error(raw, "incidents", msg);
        return;
    }
    *seen = Some((diag.file().to_path_buf(), raw.referenced.line()));
    let r = &raw.value;
    if let Some(s) = &r.slo {
        if s.value > 0.0 && s.value < 100.0 {
            out.slo = s.value;
        } else {
            diag.error(
                s,
                "incidents.slo",
                "must be a percentage above 0 and below 100 (such as 99.9)",
            );
        }
    }
    if let Some(w) = &r.slo_window {
        match humantime::parse_duration(w.value.trim()) {
            Ok(d) if !d.is_zero() => out.slo_window = d,
            Ok(_) => diag.error(w, "incidents.slo_window", "must be longer than 0"),
            Err(e) => {
                let msg = format!("`{}` is not a duration (such as 30d): {e}", w.value);
                diag.error(w, "incidents.slo_window", msg)
            }
        }
    }
    if let Some(w) = &r.reopen_within {
        match humantime::parse_duration(w.value.trim()) {
            Ok(d) => out.reopen_within = d,
            Err(e) => {
                let msg = format!(
                    "`{}` is not a duration (such as 5m, or 0s for never): {e}",
                    w.value
                );
                diag.error(w, "incidents.reopen_within", msg)
            }
        }
    }
    if let Some(w) = &r.resolve_after {
        match humantime::parse_duration(w.value.trim()) {
            Ok(d) => out.resolve_after = d,
            Err(e) => {
                let msg = format!(
                    "`{}` is not a duration (such as 1m, or 0s to resolve at once): {e}",
                    w.value
                );
                diag.error(w, "incidents.resolve_after", msg)
            }
        }
    }
    if let Some(q) = &r.request_rate {
        if q.value.is_finite() && q.value >= 0.0 {
            out.request_rate = Some(q.value);
        } else {
            diag.error(
                q,
                "incidents.request_rate",
                "must be 0 or more (requests/s)",
            );
        }
    }
}

/// Checks the `maintenance:` entries of the file `diag` is at, appending good windows to
/// `out` and their names to `pending` for [`check_components`].
pub fn check_maintenance(
    diag: &mut Diagnostics,
    raw: &[Spanned<RawMaintenance>],
    out: &mut Vec<WindowSpec>,
    pending: &mut Vec<Pending>,
) {
    fn text(s: &Option<Spanned<String>>) -> Option<&str> {
        s.as_ref().map(|v| v.value.as_str())
    }
    for (i, m) in raw.iter().enumerate() {
        let field = format!("maintenance[{i}]");
        let r = &m.value;
        let parts = Parts {
            name: text(&r.name).unwrap_or(""),
            components: r.components.iter().map(|c| c.value.clone()).collect(),
            start: text(&r.start),
            end: text(&r.end),
            duration: text(&r.duration),
            every: text(&r.every),
            tz: text(&r.tz),
        };
        match WindowSpec::check(&parts, "config") {
            Ok(w) => out.push(w),
            Err(problems) => {
                for (f, msg) in problems {
                    let at = match f {
                        "name" => r.name.as_ref(),
                        "start" => r.start.as_ref(),
                        "end" => r.end.as_ref(),
                        "duration" => r.duration.as_ref(),
                        "every" => r.every.as_ref(),
                        "tz" => r.tz.as_ref(),
                        _ => None,
                    }
                    .map_or(Pos::from(m), Pos::from);
                    diag.error(at, format!("{field}.{f}"), msg);
                }
            }
        }
        pending.push(Pending {
            file: diag.file().to_path_buf(),
            field,
            names: r
                .components
                .iter()
                .map(|c| (c.value.clone(), Pos::from(c)))
                .collect(),
        });
    }
}

/// Checks, once every file is read, that each window's components name a target, a failover
/// group or a component (`known`: every target's and group's component by name,
/// [`super::components`]).
pub fn check_components(
    diag: &mut Diagnostics,
    known: &std::collections::HashMap<String, String>,
    pending: &[Pending],
) {
    let here = diag.file().to_path_buf();
    for p in pending {
        for (j, (name, at)) in p.names.iter().enumerate() {
            let ok = known.contains_key(name) || known.values().any(|c| c == name);
            if !ok {
                diag.set_file(&p.file);
                let msg = format!(
                    "unknown component `{name}`: name a target, a failover group or a \
                     `component` label"
                );
                diag.error(*at, format!("{}.components[{j}]", p.field), msg);
            }
        }
    }
    diag.set_file(here);
}
