//! Alertmanager: alerts posted to `{url}/api/v2/alerts` as Prometheus posts them, so the
//! user's existing routing, grouping, silences and inhibition apply to watchfire's incidents.
//!
//! An incident is one alert, `alertname="WatchfireIncident"`, identified by its labels:
//! `incident="<ID>"`, `component`, `severity` and the incident's own labels (names made valid
//! Prometheus label names; empty values left out, as Prometheus treats them as absent). Its
//! annotations are `summary` (the message's title), `description` (its text) and
//! `runbook_url` when the incident's targets carry a `runbook_url` label. `startsAt` is the
//! incident's start; while it is open, `endsAt` is now + 4 × `resend`, as Prometheus sets it,
//! so the alert resolves by itself if watchfire stops re-posting it; the `resolved` message
//! sets `endsAt` to the resolution time, which resolves it at once. `generatorURL` is the
//! status page when one is configured.
//!
//! A `test` message is an alert of its own (`incident="test-{due}"`) that resolves by itself
//! after 4 × `resend`.
//!
//! Every message kind updates the same alert (its annotations carry the latest words), and
//! the runtime re-posts each open incident's alert every `resend` with [`post_alerts`] and
//! [`alert_of`]. Alertmanager answers `200`; `400` (an alert it cannot accept) is permanent;
//! `5xx` is retried.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{post_json, rfc3339, Endpoint, SendError};
use crate::notify::config::AlertmanagerConfig;
use crate::notify::{Kind, Message};
use crate::store::Millis;

/// The `alertname` of every incident's alert.
pub const ALERTNAME: &str = "WatchfireIncident";

/// How many `resend` periods ahead a firing alert's `endsAt` is set (Prometheus' factor).
pub const ENDS_AT_RESENDS: u32 = 4;

/// One alert as `/api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Identify the alert.
    pub labels: BTreeMap<String, String>,
    /// Describe it (`summary`, `description`, `runbook_url`).
    pub annotations: BTreeMap<String, String>,
    /// The incident's start (RFC 3339).
    pub starts_at: String,
    /// When it stops firing (RFC 3339): ahead while open, the resolution time once resolved.
    pub ends_at: String,
    /// The status page, when configured.
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub generator_url: String,
}

/// The alert `m` speaks for, as of now.
pub fn alert_of(m: &Message, resend: Duration) -> Alert {
    alert_at(m, resend, crate::store::now_millis())
}

/// The alert `m` speaks for, as of `now` (milliseconds since the epoch).
pub fn alert_at(m: &Message, resend: Duration, now: Millis) -> Alert {
    let f = &m.facts;
    let mut labels = BTreeMap::new();
    let mut runbook = None;
    for (name, value) in &f.labels {
        if name == "runbook_url" {
            runbook = Some(value.clone());
        } else if let Some(name) = label_name(name) {
            labels.insert(name, value.clone());
        }
    }
    let incident = if m.kind == Kind::Test {
        format!("test-{}", m.due)
    } else {
        m.incident.to_string()
    };
    labels.insert("alertname".into(), ALERTNAME.into());
    labels.insert("incident".into(), incident);
    labels.insert("component".into(), f.service.clone());
    labels.insert("severity".into(), f.severity.clone());
    labels.retain(|_, v| !v.is_empty());

    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), m.title.clone());
    annotations.insert("description".to_string(), m.text.clone());
    if let Some(url) = runbook.filter(|u| !u.is_empty()) {
        annotations.insert("runbook_url".to_string(), url);
    }
    annotations.retain(|_, v| !v.is_empty());

    let started = if f.started > 0 { f.started } else { m.due };
    let ends = if m.kind == Kind::Resolved {
        f.resolved.unwrap_or(now)
    } else {
        let ahead = resend.saturating_mul(ENDS_AT_RESENDS).as_millis();
        now.saturating_add(Millis::try_from(ahead).unwrap_or(Millis::MAX))
    };
    Alert {
        labels,
        annotations,
        starts_at: rfc3339(started),
        // Alertmanager rejects an alert that ends before it starts.
        ends_at: rfc3339(ends.max(started)),
        generator_url: f.status_page.clone().unwrap_or_default(),
    }
}

/// Posts `alerts` to `c`'s Alertmanager in one request. `name` is the receiver's, for errors.
pub async fn post(
    http: &reqwest::Client,
    name: &str,
    c: &AlertmanagerConfig,
    alerts: &[Alert],
) -> Result<(), SendError> {
    let url = format!("{}/api/v2/alerts", c.url.trim_end_matches('/'));
    let to = Endpoint {
        kind: "alertmanager",
        name,
        shown: crate::redact::url(&url).into_owned(),
        secrets: Vec::new(),
    };
    let body = serde_json::to_vec(alerts).expect("alerts serialize");
    post_json(http, &to, &url, body, &[]).await
}

/// Posts `alerts` to `c`'s Alertmanager in one request: what the runtime calls every `resend`
/// for the open incidents.
pub async fn post_alerts(
    http: &reqwest::Client,
    c: &AlertmanagerConfig,
    alerts: &[Alert],
) -> Result<(), SendError> {
    post(http, "resend", c, alerts).await
}

/// `name` as a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, other characters made
/// `_`); `None` for an empty name or one reserved for internal use (`__` first).
fn label_name(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with("__") {
        return None;
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Facts;

    fn message(kind: Kind) -> Message {
        let mut facts = Facts {
            id: 7,
            service: "inference-gateway".into(),
            severity: "P0".into(),
            started: 1_000_000,
            resolved: Some(1_600_000),
            ..Facts::default()
        };
        facts.labels.insert("team".into(), "ml".into());
        facts
            .labels
            .insert("app.kubernetes.io/name".into(), "gw".into());
        facts.labels.insert("empty".into(), String::new());
        facts
            .labels
            .insert("runbook_url".into(), "https://runbooks/gw".into());
        Message {
            key: format!("inc7:{}@am", kind.as_str()),
            receiver: "am".into(),
            kind,
            incident: 7,
            due: 1_000_000,
            title: "P0: inference-gateway down".into(),
            text: "body".into(),
            facts,
        }
    }

    #[test]
    fn a_firing_alert_ends_four_resends_ahead() {
        let a = alert_at(&message(Kind::Update), Duration::from_secs(60), 2_000_000);
        assert_eq!(a.labels["alertname"], ALERTNAME);
        assert_eq!(a.labels["incident"], "7");
        assert_eq!(a.labels["component"], "inference-gateway");
        assert_eq!(a.labels["severity"], "P0");
        assert_eq!(a.labels["team"], "ml");
        assert_eq!(a.labels["app_kubernetes_io_name"], "gw");
        assert!(!a.labels.contains_key("empty"));
        assert!(!a.labels.contains_key("runbook_url"));
        assert_eq!(a.annotations["runbook_url"], "https://runbooks/gw");
        assert_eq!(a.starts_at, rfc3339(1_000_000));
        assert_eq!(a.ends_at, rfc3339(2_000_000 + 240_000));
        let v = serde_json::to_value(&a).unwrap();
        assert!(v.get("startsAt").is_some() && v.get("endsAt").is_some());
        assert!(v.get("generatorURL").is_none());
    }

    #[test]
    fn a_resolved_alert_ends_at_the_resolution() {
        let a = alert_at(&message(Kind::Resolved), Duration::from_secs(60), 9_000_000);
        assert_eq!(a.ends_at, rfc3339(1_600_000));
    }

    #[test]
    fn label_names_are_made_valid() {
        assert_eq!(label_name("9lives").as_deref(), Some("_9lives"));
        assert_eq!(label_name("__meta"), None);
        assert_eq!(label_name(""), None);
    }
}
