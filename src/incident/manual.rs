//! What people do to incidents and maintenance windows (through the API and the CLI): declare
//! an incident, post an update (status, message, impact, root cause, resolution), acknowledge
//! it, resolve by hand; add a maintenance window. Each works on the store directly, so the
//! manager sees it on its next event.
//!
//! Statuses only move forward: investigating → identified → monitoring → resolved (an update
//! may keep the status and only say something). A resolved incident takes no more updates and
//! no acknowledgement.
//!
//! An acknowledgement is recorded once ([`ack`]): it stops escalation, and the timeline says
//! who acknowledged. That timeline entry is marked automatic (watchfire writes it, on the
//! person's behalf), so the notifier sends it as the `acknowledged` message only, not also as
//! a person's note.

use serde::{Deserialize, Serialize};

use super::figures::Figures;
use super::maintenance::{millis, Parts, WindowSpec};
use super::{IncidentError, IncidentsConfig};
use crate::store::{
    Impact, Incident, IncidentStatus, IncidentUpdate, Maintenance, MaintenanceCalendar, Millis,
    Store,
};

/// The longest title or message accepted, bytes.
pub const MAX_TEXT: usize = 4096;

fn rank(s: IncidentStatus) -> u8 {
    match s {
        IncidentStatus::Investigating => 0,
        IncidentStatus::Identified => 1,
        IncidentStatus::Monitoring => 2,
        IncidentStatus::Resolved => 3,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> IncidentError {
    IncidentError::Invalid {
        field,
        message: message.into(),
    }
}

fn status(s: Option<&str>) -> Result<Option<IncidentStatus>, IncidentError> {
    s.map(|s| {
        IncidentStatus::parse(s).ok_or_else(|| {
            invalid(
                "status",
                format!(
                    "unknown status `{s}`: use investigating, identified, monitoring or resolved"
                ),
            )
        })
    })
    .transpose()
}

fn impact(s: Option<&str>) -> Result<Option<Impact>, IncidentError> {
    s.map(|s| {
        Impact::parse(s).ok_or_else(|| {
            invalid(
                "impact",
                format!("unknown impact `{s}`: use none, minor, major or critical"),
            )
        })
    })
    .transpose()
}

fn text(field: &'static str, s: &str) -> Result<String, IncidentError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if t.len() > MAX_TEXT {
        return Err(invalid(field, format!("longer than {MAX_TEXT} bytes")));
    }
    Ok(t.to_string())
}

/// `s` checked as [`text`] when given.
fn optional(field: &'static str, s: Option<&str>) -> Result<Option<String>, IncidentError> {
    s.map(|s| text(field, s)).transpose()
}

/// The longest name accepted for who acknowledged, bytes.
pub const MAX_NAME: usize = 200;

/// An update posted by a person.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    /// New status (kept when absent).
    pub status: Option<String>,
    /// What people are told.
    pub message: String,
    /// New impact (kept when absent).
    pub impact: Option<String>,
    /// The root cause (kept when absent); carried by the RESOLVED message.
    #[serde(default)]
    pub root_cause: Option<String>,
    /// What fixed it (kept when absent); carried by the RESOLVED message.
    #[serde(default)]
    pub resolution: Option<String>,
}

/// An acknowledgement posted by a person.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckInput {
    /// Who acknowledges (`alice`), named on the timeline.
    #[serde(default)]
    pub by: Option<String>,
    /// What they add (`looking at the primary`).
    #[serde(default)]
    pub message: Option<String>,
}

/// An incident declared by a person.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclareInput {
    /// The component.
    pub component: String,
    /// Title.
    pub title: String,
    /// Impact (default `major`).
    pub impact: Option<String>,
    /// The first update's message.
    pub message: String,
    /// Status (default `investigating`).
    pub status: Option<String>,
}

/// What resolving by hand computes figures with.
pub struct Resolution<'a> {
    /// The SLO and fallback rate.
    pub config: &'a IncidentsConfig,
    /// The maintenance windows.
    pub calendar: &'a dyn MaintenanceCalendar,
    /// The live counts (the proxy's requests not written yet).
    pub counters: &'a dyn super::Counters,
}

/// Declares an incident at `now`; returns it.
pub async fn declare(
    store: &Store,
    input: &DeclareInput,
    now: Millis,
) -> Result<Incident, IncidentError> {
    let component = text("component", &input.component)?;
    let title = text("title", &input.title)?;
    let message = text("message", &input.message)?;
    let impact = impact(input.impact.as_deref())?.unwrap_or(Impact::Major);
    let status = status(input.status.as_deref())?.unwrap_or(IncidentStatus::Investigating);
    if status == IncidentStatus::Resolved {
        return Err(invalid(
            "status",
            "a new incident cannot be resolved already",
        ));
    }
    let inc = Incident {
        id: 0,
        component,
        title,
        status,
        impact,
        started: now,
        resolved: None,
        targets: Vec::new(),
        in_maintenance: false,
        figures: None,
        acknowledged: None,
        root_cause: None,
        resolution: None,
    };
    let id = store.open_incident(&inc).await?;
    let inc = Incident { id, ..inc };
    let u = IncidentUpdate {
        id: 0,
        incident: id,
        at: now,
        status,
        message,
        automatic: false,
        kind: None,
    };
    store.add_update(&u).await?;
    Ok(inc)
}

/// Posts `input` on incident `id` at `now`; resolving computes the figures with `how`.
pub async fn update(
    store: &Store,
    id: i64,
    input: &UpdateInput,
    now: Millis,
    how: &Resolution<'_>,
) -> Result<Incident, IncidentError> {
    let message = text("message", &input.message)?;
    let new_status = status(input.status.as_deref())?;
    let new_impact = impact(input.impact.as_deref())?;
    let root_cause = optional("root_cause", input.root_cause.as_deref())?;
    let resolution = optional("resolution", input.resolution.as_deref())?;
    let mut inc = store
        .incident(id)
        .await?
        .ok_or(IncidentError::NotFound(id))?;
    if inc.status == IncidentStatus::Resolved {
        return Err(invalid(
            "status",
            format!("incident {id} is resolved already"),
        ));
    }
    if let Some(s) = new_status {
        if rank(s) < rank(inc.status) {
            return Err(invalid(
                "status",
                format!(
                    "cannot go back from {} to {} (order: investigating, identified, \
                     monitoring, resolved)",
                    inc.status.as_str(),
                    s.as_str()
                ),
            ));
        }
        inc.status = s;
    }
    if let Some(i) = new_impact {
        inc.impact = i;
    }
    if root_cause.is_some() {
        inc.root_cause = root_cause;
    }
    if resolution.is_some() {
        inc.resolution = resolution;
    }
    if inc.status == IncidentStatus::Resolved {
        let inputs = super::figures_inputs(store, how.calendar, how.counters, &inc, now).await?;
        inc.resolved = Some(now);
        inc.figures = Some(Figures::compute(&inputs, how.config).to_json());
    }
    store.save_incident(&inc).await?;
    let u = IncidentUpdate {
        id: 0,
        incident: id,
        at: now,
        status: inc.status,
        message,
        automatic: false,
        kind: None,
    };
    store.add_update(&u).await?;
    Ok(inc)
}

/// Acknowledges incident `id` at `now` for `by`, adding `message` to the timeline entry;
/// returns the incident. Acknowledging an acknowledged incident changes nothing and answers
/// it as it is (the first acknowledgement's time stands); an unknown id is
/// [`IncidentError::NotFound`], a resolved incident [`IncidentError::Invalid`].
pub async fn ack(
    store: &Store,
    id: i64,
    now: Millis,
    by: Option<&str>,
    message: Option<&str>,
) -> Result<Incident, IncidentError> {
    let by = optional("by", by)?;
    if by.as_ref().is_some_and(|b| b.len() > MAX_NAME) {
        return Err(invalid("by", format!("longer than {MAX_NAME} bytes")));
    }
    let message = optional("message", message)?;
    let mut inc = store
        .incident(id)
        .await?
        .ok_or(IncidentError::NotFound(id))?;
    if inc.status == IncidentStatus::Resolved {
        return Err(invalid(
            "id",
            format!("incident {id} is resolved already: there is nothing to acknowledge"),
        ));
    }
    if inc.acknowledged.is_some() {
        return Ok(inc);
    }
    inc.acknowledged = Some(now);
    store.save_incident(&inc).await?;
    let u = IncidentUpdate {
        id: 0,
        incident: id,
        at: now,
        status: inc.status,
        message: ack_text(by.as_deref(), message.as_deref()),
        automatic: true,
        kind: Some(crate::store::UpdateKind::Acknowledged),
    };
    store.add_update(&u).await?;
    Ok(inc)
}

/// The timeline's words for an acknowledgement: `Acknowledged by alice: looking`.
pub fn ack_text(by: Option<&str>, message: Option<&str>) -> String {
    let mut s = String::from("Acknowledged");
    if let Some(b) = by {
        s.push_str(" by ");
        s.push_str(b);
    }
    if let Some(m) = message {
        s.push_str(": ");
        s.push_str(m);
    }
    s
}

/// A maintenance window posted through the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceInput {
    /// Title.
    pub name: String,
    /// Targets, groups or components (empty: all).
    #[serde(default)]
    pub components: Vec<String>,
    /// Start: RFC 3339, or a local date-time read in `tz`.
    pub start: String,
    /// End (or `duration`).
    pub end: Option<String>,
    /// Length (humantime), or `end`.
    pub duration: Option<String>,
    /// Recurrence.
    pub every: Option<String>,
    /// IANA time zone (default UTC).
    pub tz: Option<String>,
}

/// Checks `input` (its components against `known`, when given) into the stored form.
pub fn check_maintenance(
    input: &MaintenanceInput,
    known: Option<&std::collections::HashMap<String, String>>,
) -> Result<Maintenance, Vec<(&'static str, String)>> {
    let parts = Parts {
        name: &input.name,
        components: input.components.clone(),
        start: Some(&input.start),
        end: input.end.as_deref(),
        duration: input.duration.as_deref(),
        every: input.every.as_deref(),
        tz: input.tz.as_deref(),
    };
    let mut problems = Vec::new();
    if let Some(known) = known {
        for c in &input.components {
            if !known.contains_key(c) && !known.values().any(|v| v == c) {
                problems.push((
                    "components",
                    format!("unknown component `{c}`: name a target, a failover group or a `component` label"),
                ));
            }
        }
    }
    let spec = WindowSpec::check(&parts, "api").map_err(|mut p| {
        p.append(&mut problems.clone());
        p
    })?;
    if !problems.is_empty() {
        return Err(problems);
    }
    let start = millis(&spec.start);
    Ok(Maintenance {
        id: 0,
        name: spec.name,
        components: spec.components,
        start,
        end: start + spec.length,
        every: input.every.as_ref().map(|e| e.trim().to_string()),
        tz: spec
            .start
            .time_zone()
            .iana_name()
            .unwrap_or("UTC")
            .to_string(),
    })
}

#[cfg(test)]
#[path = "manual_tests.rs"]
mod tests;
