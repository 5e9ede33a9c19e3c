//! The `notify:` config section.
//!
//! ```yaml
//! notify:
//!   update_every: 5m
//!   receivers:
//!     - name: oncall
//!       webhook: { url: "http://127.0.0.1:9000/hook" }
//!     - name: am
//!       alertmanager: { url: "http://127.0.0.1:9093" }
//!   routes:
//!     - receivers: [oncall, am]      # no match: every incident; match on labels narrows it
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::Diagnostics;
use crate::redact::Secret;

use super::message::Templates;

/// The default time between updates.
pub const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(300);

/// The checked `notify:` section.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Time between updates.
    pub update_every: Duration,
    /// Receivers, by name, in file order.
    pub receivers: Vec<Receiver>,
    /// Routes, in file order: an incident goes to every route that matches it.
    pub routes: Vec<Route>,
    /// Escalation tiers, by elapsed time (the runbook's by default).
    pub escalation: Vec<Tier>,
    /// The incident commander named in declarations.
    pub commander: Option<String>,
    /// The war-room link named in declarations.
    pub war_room: Option<String>,
    /// The status page's public URL, named in messages.
    pub status_page: Option<String>,
    /// Severity when the component's targets carry no `severity` label.
    pub severity: String,
    /// The templates in force (defaults plus overrides).
    pub templates: Templates,
    /// Delivery: retries, backoff and when a message is given up.
    pub delivery: Delivery,
}

impl Default for NotifyConfig {
    /// No receivers: nothing is sent.
    fn default() -> Self {
        NotifyConfig {
            update_every: DEFAULT_UPDATE_EVERY,
            receivers: Vec::new(),
            routes: Vec::new(),
            escalation: Vec::new(),
            commander: None,
            war_room: None,
            status_page: None,
            severity: "P0".into(),
            templates: Templates::default(),
            delivery: Delivery::default(),
        }
    }
}

impl NotifyConfig {
    /// The receiver named `name`.
    pub fn receiver(&self, name: &str) -> Option<&Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// First retry delay; doubled per attempt, with ±20 % jitter.
    pub backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// A message not delivered within this long of its first attempt is marked failed.
    pub give_up_after: Duration,
    /// Bound on one attempt (connect to answer).
    pub timeout: Duration,
    /// Sent and failed outbox rows older than this are pruned.
    pub keep: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            keep: Duration::from_secs(7 * 86_400),
        }
    }
}

/// One receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// Its name (routes and metrics use it).
    pub name: String,
    /// Where and how messages go.
    pub kind: ReceiverKind,
}

/// A receiver's kind and settings.
#[derive(Debug, Clone)]
pub enum ReceiverKind {
    /// A Slack incoming webhook.
    Slack(SlackConfig),
    /// PagerDuty Events API v2.
    PagerDuty(PagerDutyConfig),
    /// Alertmanager's `/api/v2/alerts`.
    Alertmanager(AlertmanagerConfig),
    /// JSON to a URL.
    Webhook(WebhookConfig),
    /// A command run per message.
    Exec(ExecConfig),
}

impl ReceiverKind {
    /// `slack`, `pagerduty`, `alertmanager`, `webhook` or `exec`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiverKind::Slack(_) => "slack",
            ReceiverKind::PagerDuty(_) => "pagerduty",
            ReceiverKind::Alertmanager(_) => "alertmanager",
            ReceiverKind::Webhook(_) => "webhook",
            ReceiverKind::Exec(_) => "exec",
        }
    }
}

/// `slack: { url }`.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The incoming-webhook URL (a secret: it is the credential).
    pub url: Secret<String>,
}

/// `pagerduty: { routing_key, url }`.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// The integration's routing key.
    pub routing_key: Secret<String>,
    /// The Events API v2 endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    pub url: String,
}

/// `alertmanager: { url, resend }`.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL; alerts go to `{url}/api/v2/alerts`.
    pub url: String,
    /// How often a firing incident's alert is sent again (default 1m).
    pub resend: Duration,
}

/// `webhook: { url, secret, headers }`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where the JSON goes (a secret: it may hold a token).
    pub url: Secret<String>,
    /// When set, `X-Watchfire-Signature: sha256=HEX` is the HMAC-SHA256 of the body.
    pub secret: Option<Secret<String>>,
    /// Extra headers (values are secrets).
    pub headers: BTreeMap<String, Secret<String>>,
}

/// `exec: { argv, env, timeout }`.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Program and arguments (no shell).
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, Secret<String>>,
    /// Bound on one run (default 10s).
    pub timeout: Duration,
}

/// One route: incidents whose labels match go to its receivers.
#[derive(Debug, Clone)]
pub struct Route {
    /// Label equalities that must all hold (empty: every incident).
    pub matchers: BTreeMap<String, String>,
    /// Receiver names.
    pub receivers: Vec<String>,
    /// The declaration waits this long after the incident began (an incident resolved before
    /// then sends nothing); default 0 (the runbook declares a P0 at once).
    pub wait: Duration,
}

/// An escalation tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Reached this long after the incident began, unless acknowledged.
    pub after: Duration,
    /// Who is told (`service owner + SRE lead`).
    pub who: String,
    /// Receivers it goes to (empty: the incident's routes' receivers).
    pub receivers: Vec<String>,
}

/// `notify:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {}

/// Checks `raw` into `out`, reporting every problem with its file, line and field; `at` is
/// where a `notify:` section was set already (file, line): a second one is an error.
pub fn check_section(
    diag: &mut Diagnostics,
    raw: &Spanned<RawNotify>,
    at: &mut Option<(PathBuf, u64)>,
    out: &mut NotifyConfig,
) {
    let _ = (diag, raw, at, out);
    todo!("notify-core")
}
