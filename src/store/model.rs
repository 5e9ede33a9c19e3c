//! What the store keeps, as plain data: no I/O here. Every time is a Unix time in milliseconds
//! ([`Millis`]), so both backends store it as a 64-bit integer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::Health;

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// The current Unix time in milliseconds.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A scheduled target's decided state, as restored after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetState {
    /// Target name.
    pub target: String,
    /// Decided health.
    pub health: Health,
    /// Consecutive successes.
    pub successes: u32,
    /// Consecutive failures.
    pub failures: u32,
    /// When the health last changed.
    pub since: Millis,
    /// The last failure's reason (`Reason::as_str`), when down.
    pub reason: Option<String>,
    /// The last failure's detail (already redacted), when down.
    pub detail: Option<String>,
}

/// A failover group's state, as restored after a restart: the active instance and whatever
/// else the group needs (pins, dampening) as the group's own JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Group name.
    pub group: String,
    /// Index of the instance receiving traffic, none for none.
    pub active: Option<u32>,
    /// The group's own state (selection, pin, dampening), opaque to the store.
    pub json: String,
    /// When it was written.
    pub updated: Millis,
}

/// What a transition is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// A scheduled target's health.
    Target,
    /// A failover group's active instance.
    Group,
}

impl Subject {
    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Target => "target",
            Subject::Group => "group",
        }
    }
}

/// One change of a target's health or of a group's active instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionRecord {
    /// When.
    pub at: Millis,
    /// Of a target or a group.
    pub subject: Subject,
    /// The target's or group's name.
    pub name: String,
    /// State before (`up`, `down`, `unknown`; for a group, the instance or `none`).
    pub from: String,
    /// State after.
    pub to: String,
    /// Why (a `Reason`, or a switch reason).
    pub reason: Option<String>,
    /// The failure or request behind it (already redacted).
    pub detail: Option<String>,
}

/// An incident's status, as Statuspage names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    /// Detected, cause unknown.
    Investigating,
    /// Cause known.
    Identified,
    /// Fixed, being watched.
    Monitoring,
    /// Over.
    Resolved,
}

impl IncidentStatus {
    /// Lower-case name, as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// The status named `s`, if any.
    pub fn parse(s: &str) -> Option<IncidentStatus> {
        [
            IncidentStatus::Investigating,
            IncidentStatus::Identified,
            IncidentStatus::Monitoring,
            IncidentStatus::Resolved,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// An incident's impact, as Statuspage names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impact {
    /// No user-visible impact.
    None,
    /// Degraded.
    Minor,
    /// Partly unavailable.
    Major,
    /// Unavailable.
    Critical,
}

impl Impact {
    /// Lower-case name, as stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Impact::None => "none",
            Impact::Minor => "minor",
            Impact::Major => "major",
            Impact::Critical => "critical",
        }
    }

    /// The impact named `s`, if any.
    pub fn parse(s: &str) -> Option<Impact> {
        [Impact::None, Impact::Minor, Impact::Major, Impact::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// An incident: one component's outage, with its timeline kept as [`IncidentUpdate`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Assigned by the store when opened.
    pub id: i64,
    /// The component (status-page component, target or failover group).
    pub component: String,
    /// Short title.
    pub title: String,
    /// Current status.
    pub status: IncidentStatus,
    /// Current impact.
    pub impact: Impact,
    /// When it began.
    pub started: Millis,
    /// When it was resolved.
    pub resolved: Option<Millis>,
    /// The targets that failed in it.
    pub targets: Vec<String>,
    /// Whether it began inside a maintenance window.
    pub in_maintenance: bool,
    /// The figures computed at resolution (duration, failed probes, ...), as JSON.
    pub figures: Option<String>,
    /// When a person acknowledged it (escalation stops), if they did.
    #[serde(default)]
    pub acknowledged: Option<Millis>,
    /// The root cause, when someone gave it.
    #[serde(default)]
    pub root_cause: Option<String>,
    /// What fixed it, when someone said.
    #[serde(default)]
    pub resolution: Option<String>,
}

/// What an automatic timeline entry records, stored with it (`incident_updates.kind`) so that
/// readers go by it, never by the entry's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// The incident opened: `Detected: TARGET is down (...)`.
    Detected,
    /// Another target of the component went down: `TARGET is down too (...)`.
    AlsoDown,
    /// The component went down again soon after its resolution: `Down again: ...`.
    DownAgain,
    /// The failover proxy moved the traffic: `Traffic moved to ...`.
    TrafficMoved,
    /// No instance could take the traffic: `No instance is up ...`.
    NoneUp,
    /// Every target is up again: `Recovered after ...`.
    Recovered,
    /// Someone acknowledged the incident: `Acknowledged by ...`.
    Acknowledged,
}

impl UpdateKind {
    /// Every kind.
    pub const ALL: [UpdateKind; 7] = [
        UpdateKind::Detected,
        UpdateKind::AlsoDown,
        UpdateKind::DownAgain,
        UpdateKind::TrafficMoved,
        UpdateKind::NoneUp,
        UpdateKind::Recovered,
        UpdateKind::Acknowledged,
    ];

    /// The name stored and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Detected => "detected",
            UpdateKind::AlsoDown => "also_down",
            UpdateKind::DownAgain => "down_again",
            UpdateKind::TrafficMoved => "traffic_moved",
            UpdateKind::NoneUp => "none_up",
            UpdateKind::Recovered => "recovered",
            UpdateKind::Acknowledged => "acknowledged",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<UpdateKind> {
        UpdateKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentUpdate {
    /// Assigned by the store.
    pub id: i64,
    /// The incident it belongs to.
    pub incident: i64,
    /// When.
    pub at: Millis,
    /// Status set by this update.
    pub status: IncidentStatus,
    /// What people are told.
    pub message: String,
    /// Written by watchfire (detected, failed over, recovered), not by a person.
    pub automatic: bool,
    /// What it records, for the entries watchfire reads back (none for the others: a
    /// person's, a message delivered to the status page, ...).
    #[serde(default)]
    pub kind: Option<UpdateKind>,
}

/// A maintenance window made through the API (config-defined windows live in the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Maintenance {
    /// Assigned by the store.
    pub id: i64,
    /// Title.
    pub name: String,
    /// Components it covers (empty: all).
    pub components: Vec<String>,
    /// First start.
    pub start: Millis,
    /// First end.
    pub end: Millis,
    /// Recurrence, as written (the maintenance module reads it), none for one-off.
    pub every: Option<String>,
    /// IANA time zone the recurrence is reckoned in.
    pub tz: String,
}

/// A rollup level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One row per target per minute.
    Minute,
    /// Per hour (downsampled from minutes).
    Hour,
    /// Per UTC day (downsampled from hours).
    Day,
}

impl Level {
    /// The period's length in milliseconds.
    pub fn millis(self) -> Millis {
        match self {
            Level::Minute => 60_000,
            Level::Hour => 3_600_000,
            Level::Day => 86_400_000,
        }
    }

    /// The level's code in the `level` columns.
    pub fn code(self) -> i64 {
        match self {
            Level::Minute => 1,
            Level::Hour => 2,
            Level::Day => 3,
        }
    }

    /// Lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Minute => "minute",
            Level::Hour => "hour",
            Level::Day => "day",
        }
    }
}

/// The pieces of `[from, to)` (minute-aligned) each read from one level, in time order: whole
/// UTC days, then the whole hours at the edges, then the minutes beyond.
pub fn pieces(from: Millis, to: Millis) -> Vec<(Level, Millis, Millis)> {
    let mut out = Vec::new();
    split(
        from,
        to,
        &[Level::Day, Level::Hour, Level::Minute],
        &mut out,
    );
    out.sort_by_key(|p| p.1);
    out
}

fn split(from: Millis, to: Millis, levels: &[Level], out: &mut Vec<(Level, Millis, Millis)>) {
    if from >= to {
        return;
    }
    let Some((&level, finer)) = levels.split_first() else {
        return;
    };
    let len = level.millis();
    let a = from + (len - from.rem_euclid(len)) % len;
    let b = to - to.rem_euclid(len);
    if a >= b {
        split(from, to, finer, out);
        return;
    }
    out.push((level, a, b));
    split(from, a, finer, out);
    split(b, to, finer, out);
}

/// Upper bounds (seconds) of the rollups' latency buckets; the last bucket is everything
/// above the last bound.
pub const LATENCY_BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One target's figures over one period.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Rollup {
    /// Target name.
    pub target: String,
    /// Start of the period (aligned to its level).
    pub start: Millis,
    /// Probes that ended in it.
    pub probes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures by reason (`Reason::as_str`).
    pub by_reason: BTreeMap<String, u64>,
    /// Time the target was down, outside maintenance.
    pub down_ms: i64,
    /// Time inside a maintenance window.
    pub maintenance_ms: i64,
    /// Probe durations: counts per [`LATENCY_BOUNDS`] bucket plus one above the last.
    pub latency: Vec<u64>,
    /// Sum of probe durations, seconds.
    pub latency_sum: f64,
    /// The target's component when the minute was written (the config's rule,
    /// `Config::components`), when it is not the target itself; none also in rows written
    /// before schema version 3.
    #[serde(default)]
    pub component: Option<String>,
}

/// One failover group's figures over one period, from the group's own state (not its
/// instances'): written in slices of a few seconds, summed into minutes, hours and days.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupRollup {
    /// Group name.
    pub group: String,
    /// Start of the period (aligned to its level).
    pub start: Millis,
    /// The part of the period a process watched the group (less than the period when a
    /// process started or stopped inside it): what a request rate is reckoned over.
    pub observed_ms: i64,
    /// Time no instance could take traffic (the proxy answered 503), outside maintenance.
    pub down_ms: i64,
    /// Time inside a maintenance window covering the group.
    pub maintenance_ms: i64,
    /// Requests the group's failover proxy answered.
    pub requests: u64,
    /// Of which answered 5xx (by an instance or by the proxy itself).
    pub failed_requests: u64,
    /// Switches of traffic (the initial choice not counted).
    pub switches: u64,
}

impl GroupRollup {
    /// Adds `o`'s figures into these (downsampling, or a slice into its minute).
    pub fn add(&mut self, o: &GroupRollup) {
        self.observed_ms += o.observed_ms;
        self.down_ms += o.down_ms;
        self.maintenance_ms += o.maintenance_ms;
        self.requests += o.requests;
        self.failed_requests += o.failed_requests;
        self.switches += o.switches;
    }
}

/// A write, queued to the writer task: never waited on by the probe path.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A target's state after a transition (or periodically).
    TargetState(TargetState),
    /// A group's state after a switch or a pin.
    GroupState(GroupState),
    /// A transition, appended to the history.
    Transition(TransitionRecord),
    /// A finished minute of one target.
    Minute(Rollup),
    /// A slice of a minute of one failover group (added into its minute, hour and day).
    GroupMinute(GroupRollup),
    /// A target no longer configured: its state is forgotten (its history is kept).
    ForgetTarget(String),
}

/// Which times are inside a maintenance window, for a target or component: the maintenance
/// windows (config and API) implement it; rollups, incidents and the status page ask it.
pub trait MaintenanceCalendar: Send + Sync {
    /// Milliseconds of `[from, to)` inside a maintenance window covering `name` (a target, a
    /// failover group or a component).
    fn covered(&self, name: &str, from: Millis, to: Millis) -> i64;

    /// Every window (each occurrence of a recurring one) that overlaps `[from, to)`, by start.
    fn windows(&self, from: Millis, to: Millis) -> Vec<Window>;
}

/// One occurrence of a maintenance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Title.
    pub name: String,
    /// Components, targets or groups it covers (empty: all).
    pub components: Vec<String>,
    /// Start.
    pub start: Millis,
    /// End.
    pub end: Millis,
    /// Where it was defined: `config` or `api` (with the API id).
    pub source: String,
}

/// No maintenance windows at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMaintenance;

impl MaintenanceCalendar for NoMaintenance {
    fn covered(&self, _: &str, _: Millis, _: Millis) -> i64 {
        0
    }

    fn windows(&self, _: Millis, _: Millis) -> Vec<Window> {
        Vec::new()
    }
}
