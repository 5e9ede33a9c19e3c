//! What a message is rendered from ([`Facts`]) and the templates that render it
//! ([`Templates`]): the runbook's own words by default, overridable per receiver and kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::templates::{Override, Part, Templates};
use crate::store::Millis;

/// Everything a message can say about an incident at one moment: the template context.
/// Times are both milliseconds since the epoch (for payloads) and text (for templates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Incident id (0 for a test message).
    pub id: i64,
    /// The service (component) affected.
    pub service: String,
    /// The incident's title.
    pub title: String,
    /// Severity, as routes match it (`P0` unless the component's targets have a `severity`
    /// label).
    pub severity: String,
    /// investigating, identified, monitoring or resolved.
    pub status: String,
    /// none, minor, major or critical.
    pub impact: String,
    /// The incident's labels as routes match them: `component`, `severity` and the labels of
    /// its first target.
    pub labels: BTreeMap<String, String>,
    /// When it began.
    pub started: Millis,
    /// `started`, as `YYYY-MM-DD HH:MM:SS UTC`.
    pub started_text: String,
    /// When the message was rendered.
    pub now: Millis,
    /// Time since `started`, human (`12m 30s`).
    pub elapsed: String,
    /// Targets that failed in it.
    pub targets: Vec<String>,
    /// The first failure's reason (`connection_refused`, `status_code`, ...), if known.
    pub reason: Option<String>,
    /// The first failure's detail (redacted), if known.
    pub detail: Option<String>,
    /// Share of the component's probes failing now, percent.
    pub failing_percent: f64,
    /// Failed probes so far.
    pub failed_probes: u64,
    /// Failed proxied requests so far (the failover proxy's 5xx), when there is a proxy.
    pub failed_requests: Option<u64>,
    /// Estimated failed user requests (request rate × down time), when a rate is known.
    pub estimated_failed_requests: Option<u64>,
    /// Share of users affected, percent, when known.
    pub affected_percent: Option<f64>,
    /// Error budget consumed, percent of the SLO window's budget.
    pub budget_consumed_percent: Option<f64>,
    /// What watchfire did, in order ("traffic moved to http://127.0.0.1:8001 at 15:45:03 UTC").
    pub actions: Vec<String>,
    /// The incident commander, when configured.
    pub commander: Option<String>,
    /// The war-room link, when configured.
    pub war_room: Option<String>,
    /// The status page's URL, when configured.
    pub status_page: Option<String>,
    /// When the next update is due, as text (`15:50:03 UTC`); none once resolved.
    pub next_update: Option<String>,
    /// The escalation tier reached (`tier 2: service owner + SRE lead`), for `escalated`.
    pub tier: Option<String>,
    /// Who acknowledged and when, for `acknowledged` (and later messages).
    pub acknowledged: Option<String>,
    /// The person's message, for `note` (and the last one, for updates).
    pub note: Option<String>,
    /// The root cause, when given.
    pub root_cause: Option<String>,
    /// The resolution, when given.
    pub resolution: Option<String>,
    /// When resolved.
    pub resolved: Option<Millis>,
    /// Total duration, human, once resolved.
    pub duration: Option<String>,
    /// `watchfire verify`'s verdict for the incident, when one ran (`PASS: ...`).
    pub verify: Option<String>,
    /// Whether the incident began inside a maintenance window (such messages are recorded,
    /// not sent).
    pub in_maintenance: bool,
}

/// A template failed to render.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    /// The template's name (`default/declared.text`, `oncall/update.title`, or the file).
    pub name: String,
    /// Line in the template, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}
