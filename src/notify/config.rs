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
//!
//! Every key with its default is in `docs/notify.md`. The serde shapes ([`RawNotify`] and the
//! `Raw*` types under it) hold secrets in [`Secret`] from the moment they are read; the
//! checks that turn them into a [`NotifyConfig`] live in [`super::config_check`], which imports
//! this file (never the other way round).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::redact::Secret;

use super::message::Templates;
use super::Kind;

/// The default time between updates.
pub const DEFAULT_UPDATE_EVERY: Duration = Duration::from_secs(300);

/// The receiver that writes `status_page` messages into the incident's timeline; built in,
/// so no configured receiver may take its name.
pub const STATUS_PAGE_RECEIVER: &str = "status-page";

/// The default Events API v2 endpoint.
pub const DEFAULT_PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The default time between two posts of a firing incident's alert to Alertmanager.
pub const DEFAULT_RESEND: Duration = Duration::from_secs(60);

/// The default bound on one `exec` run.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// The runbook's escalation tiers, used when `notify:` has no `escalation` key: service
/// owner and SRE lead after 5 minutes, engineering manager and platform lead after 15,
/// executives after 30; each to the incident's routes' receivers. (The first 5 minutes are
/// the on-call's, who get the declaration.)
pub fn runbook_tiers() -> Vec<Tier> {
    [
        (5, "service owner + SRE lead"),
        (15, "engineering manager + platform lead"),
        (30, "executives"),
    ]
    .into_iter()
    .map(|(m, who)| Tier {
        after: Duration::from_secs(m * 60),
        who: who.to_string(),
        receivers: Vec::new(),
    })
    .collect()
}

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

/// `pagerduty: { routing_key, url, webhook_secret | webhook_secret_file }`.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// The integration's routing key.
    pub routing_key: Secret<String>,
    /// The Events API v2 endpoint (default `https://events.pagerduty.com/v2/enqueue`).
    pub url: String,
    /// The signing secret of PagerDuty's V3 webhook subscription: when set,
    /// `POST /api/v1/notify/pagerduty/{NAME}` takes PagerDuty's acknowledgements
    /// ([`crate::notify::inbound`]); unset, that endpoint answers `404`.
    pub webhook_secret: Option<Secret<String>>,
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
pub struct RawNotify {
    /// Time between updates (`5m`).
    pub update_every: Option<Spanned<String>>,
    /// Severity when targets carry no `severity` label (`P0`).
    pub severity: Option<Spanned<String>>,
    /// The incident commander named in declarations.
    pub commander: Option<Spanned<String>>,
    /// The war-room link.
    pub war_room: Option<Spanned<String>>,
    /// The status page's public URL.
    pub status_page: Option<Spanned<String>>,
    /// Retries and pruning.
    pub delivery: Option<Spanned<RawDelivery>>,
    /// Escalation tiers (absent: the runbook's; empty: none).
    pub escalation: Option<Vec<Spanned<RawTier>>>,
    /// Overrides for every receiver, per kind.
    pub templates: Option<Spanned<RawTemplates>>,
    /// Receivers.
    #[serde(default)]
    pub receivers: Vec<Spanned<RawReceiver>>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

/// `notify.delivery` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    /// First retry delay.
    pub backoff: Option<Spanned<String>>,
    /// Longest delay between attempts.
    pub max_backoff: Option<Spanned<String>>,
    /// When a message is given up.
    pub give_up_after: Option<Spanned<String>>,
    /// Bound on one attempt.
    pub timeout: Option<Spanned<String>>,
    /// How long sent and failed rows are kept.
    pub keep: Option<Spanned<String>>,
}

/// One entry of `notify.escalation` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    /// Elapsed time that reaches it.
    pub after: Option<Spanned<String>>,
    /// Who is told.
    pub who: Option<Spanned<String>>,
    /// Receivers (empty: the routes').
    #[serde(default)]
    pub receivers: Vec<Spanned<String>>,
}

/// Templates per kind as written (`notify.templates`, `notify.receivers[N].templates`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplates {
    /// The major-incident declaration.
    pub declared: Option<Spanned<RawTemplate>>,
    /// The periodic update.
    pub update: Option<Spanned<RawTemplate>>,
    /// The executive summary at an escalation tier.
    pub escalated: Option<Spanned<RawTemplate>>,
    /// The acknowledgement.
    pub acknowledged: Option<Spanned<RawTemplate>>,
    /// A person's update.
    pub note: Option<Spanned<RawTemplate>>,
    /// The status-page text.
    pub status_page: Option<Spanned<RawTemplate>>,
    /// RESOLVED.
    pub resolved: Option<Spanned<RawTemplate>>,
    /// The test message.
    pub test: Option<Spanned<RawTemplate>>,
}

impl RawTemplates {
    /// Each kind's entry, when written.
    pub fn entries(&self) -> impl Iterator<Item = (Kind, &Spanned<RawTemplate>)> {
        [
            (Kind::Declared, &self.declared),
            (Kind::Update, &self.update),
            (Kind::Escalated, &self.escalated),
            (Kind::Acknowledged, &self.acknowledged),
            (Kind::Note, &self.note),
            (Kind::StatusPage, &self.status_page),
            (Kind::Resolved, &self.resolved),
            (Kind::Test, &self.test),
        ]
        .into_iter()
        .filter_map(|(k, t)| t.as_ref().map(|t| (k, t)))
    }
}

/// One kind's templates as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// The title (one line).
    pub title: Option<Spanned<String>>,
    /// The body.
    pub text: Option<Spanned<String>>,
}

/// One entry of `notify.receivers` as written: a name and exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// Its name.
    pub name: Option<Spanned<String>>,
    /// A Slack incoming webhook.
    pub slack: Option<Spanned<RawSlack>>,
    /// PagerDuty Events API v2.
    pub pagerduty: Option<Spanned<RawPagerDuty>>,
    /// Alertmanager.
    pub alertmanager: Option<Spanned<RawAlertmanager>>,
    /// A JSON webhook.
    pub webhook: Option<Spanned<RawWebhook>>,
    /// A command.
    pub exec: Option<Spanned<RawExec>>,
    /// Overrides for this receiver, per kind.
    pub templates: Option<Spanned<RawTemplates>>,
}

/// `slack:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlack {
    /// The incoming-webhook URL.
    pub url: Option<Spanned<Secret<String>>>,
}

/// `pagerduty:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    /// The integration's routing key.
    pub routing_key: Option<Spanned<Secret<String>>>,
    /// The Events API v2 endpoint.
    pub url: Option<Spanned<String>>,
    /// The V3 webhook subscription's signing secret.
    pub webhook_secret: Option<Spanned<Secret<String>>>,
    /// A file holding it (relative to the config file's directory).
    pub webhook_secret_file: Option<Spanned<String>>,
}

/// `alertmanager:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    /// Alertmanager's base URL.
    pub url: Option<Spanned<String>>,
    /// How often a firing alert is sent again.
    pub resend: Option<Spanned<String>>,
}

/// `webhook:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Where the JSON goes.
    pub url: Option<Spanned<Secret<String>>>,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: Option<Spanned<Secret<String>>>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<Secret<String>>>,
}

/// `exec:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    /// Program and arguments.
    #[serde(default)]
    pub argv: Vec<Spanned<String>>,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<Secret<String>>>,
    /// Bound on one run.
    pub timeout: Option<Spanned<String>>,
}

/// One entry of `notify.routes` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Label equalities (absent: every incident).
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, Spanned<String>>,
    /// Receiver names.
    #[serde(default)]
    pub receivers: Vec<Spanned<String>>,
    /// How long the declaration waits.
    pub wait: Option<Spanned<String>>,
}
