//! Incident communication: the runbook's messages (declaration, updates every `update_every`,
//! escalation, acknowledgement, a person's update, RESOLVED), rendered from templates and
//! delivered to Slack, PagerDuty, Alertmanager, webhooks and commands through a persistent
//! outbox, so that nothing is lost or sent twice across retries and restarts.
//!
//! How the parts fit:
//!
//! - [`config`]: the `notify:` section as written and as checked ([`NotifyConfig`]: receivers,
//!   routes, escalation tiers, templates); [`config_check`] turns the one into the other.
//! - [`plan`]: a pure function from an incident, its timeline and the time to every message
//!   that is due for it, each with a deterministic key ([`Due`]). Planning again never makes a
//!   second message: the outbox ignores a key it holds.
//! - [`message`]: the facts a message is rendered from ([`Facts`]) and the templates that
//!   render them ([`message::Templates`], built in [`templates`]), the runbook's own text by
//!   default.
//! - [`receivers`]: each receiver kind's payload and delivery ([`receivers::send`]), with
//!   failures typed as retryable or not ([`receivers::SendError`]).
//! - [`outbox`]: per-receiver delivery workers over the store's outbox rows: retries with
//!   backoff and jitter, order per incident, metrics.
//!
//! The runtime's glue (`runtime::notify`) runs the planner over the store's incidents and
//! enqueues what it returns; it never waits on a receiver.

use serde::{Deserialize, Serialize};

use crate::store::Millis;

pub mod config;
pub mod config_check;
mod defaults;
pub mod inbound;
pub mod message;
pub mod outbox;
pub mod plan;
pub mod receivers;
pub mod templates;

pub use config::NotifyConfig;
pub use message::Facts;
pub use plan::Due;

/// What a message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The major-incident declaration.
    Declared,
    /// The periodic update (every `update_every`).
    Update,
    /// An escalation tier was reached: the executive summary, to the tier's receivers.
    Escalated,
    /// A person acknowledged the incident (escalation stops).
    Acknowledged,
    /// A person's update (status, message; a `verify --incident` verdict).
    Note,
    /// The customer status-page text, written into the incident's timeline.
    StatusPage,
    /// RESOLVED, with the figures.
    Resolved,
    /// `watchfire notify test RECEIVER`.
    Test,
}

impl Kind {
    /// Every kind, for checking every template.
    pub const ALL: [Kind; 8] = [
        Kind::Declared,
        Kind::Update,
        Kind::Escalated,
        Kind::Acknowledged,
        Kind::Note,
        Kind::StatusPage,
        Kind::Resolved,
        Kind::Test,
    ];

    /// The name used in keys, templates, metrics and the webhook schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Declared => "declared",
            Kind::Update => "update",
            Kind::Escalated => "escalated",
            Kind::Acknowledged => "acknowledged",
            Kind::Note => "note",
            Kind::StatusPage => "status_page",
            Kind::Resolved => "resolved",
            Kind::Test => "test",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One rendered message for one receiver: what the outbox stores (as JSON) and a receiver
/// sends. Rendered when it is enqueued, so a retry after a restart sends the same words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The outbox key: `{due.key}@{receiver}`; unique, the receiver-side dedup key is derived
    /// from it (or from the incident for PagerDuty, whose incident is one `dedup_key`).
    pub key: String,
    /// The receiver's name.
    pub receiver: String,
    /// What it says.
    pub kind: Kind,
    /// The incident (0 for a test message).
    pub incident: i64,
    /// When it was due.
    pub due: Millis,
    /// One line: the title or the Slack fallback text.
    pub title: String,
    /// The body, plain text with line breaks (Markdown-ish: `*bold*` is left to receivers).
    pub text: String,
    /// The facts it was rendered from, for payloads that carry fields (PagerDuty
    /// `custom_details`, Alertmanager labels and annotations, the webhook schema).
    pub facts: Facts,
}

/// The outbox key of due message `due_key` for `receiver`.
pub fn outbox_key(due_key: &str, receiver: &str) -> String {
    format!("{due_key}@{receiver}")
}
