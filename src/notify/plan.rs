//! The planner: from an incident, its timeline and the time, every message due for it, each
//! with a deterministic key, so planning again (every tick, after a restart) finds the same
//! keys and the outbox ignores those it holds.
//!
//! Keys: `inc{ID}:declared`, `inc{ID}:update:{N}` (N-th update, at declared + N ×
//! `update_every`), `inc{ID}:escalated:{TIER}`, `inc{ID}:acknowledged`,
//! `inc{ID}:note:{UPDATE_ID}`, `inc{ID}:status_page`, `inc{ID}:resolved`.

use super::config::NotifyConfig;
use super::Kind;
use crate::store::{Incident, IncidentUpdate, Millis};

/// One message due, before it is rendered per receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    /// The key (see the module docs).
    pub key: String,
    /// What it says.
    pub kind: Kind,
    /// When it was due.
    pub at: Millis,
    /// Who gets it.
    pub receivers: Vec<String>,
    /// The escalation tier's index, for `escalated`.
    pub tier: Option<usize>,
    /// The person's update, for `note`.
    pub note: Option<i64>,
    /// Recorded, not sent (a maintenance window covers the incident).
    pub suppressed: bool,
}

/// What the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The incident.
    pub incident: &'a Incident,
    /// Its timeline, oldest first.
    pub updates: &'a [IncidentUpdate],
    /// Its labels as routes match them (`component`, `severity`, its first target's labels).
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// Whether a maintenance window covers its component now.
    pub in_maintenance: bool,
    /// Now.
    pub now: Millis,
}

/// Every message due for `input` at `input.now` under `config`.
pub fn plan(config: &NotifyConfig, input: &Input<'_>) -> Vec<Due> {
    let _ = (config, input);
    todo!("notify-core")
}
