//! PagerDuty Events API v2: `POST {url}` (default `https://events.pagerduty.com/v2/enqueue`).
//!
//! One incident is one PagerDuty alert, deduplicated on `dedup_key = watchfire-inc{ID}`:
//! `acknowledged` sends `event_action: acknowledge`, `resolved` sends `resolve` (both carry
//! only `routing_key`, `event_action` and `dedup_key`, as the API wants), and every other kind
//! sends `trigger` with the full `payload` (PagerDuty folds a repeated trigger into the open
//! alert, updating its details). A `test` message triggers an alert of its own,
//! `watchfire-test-{due}`, and nothing resolves it: the person who ran
//! `watchfire notify test` sees the page arrive end to end and resolves it in PagerDuty.
//!
//! Severity, from the facts' `severity` (case ignored), else their `impact`:
//!
//! | severity                          | impact     | PagerDuty  |
//! |-----------------------------------|------------|------------|
//! | `P0`, `P1`, `critical`            | `critical` | `critical` |
//! | `P2`, `error`, `high`, `major`    | `major`    | `error`    |
//! | `P3`, `warning`, `medium`, `minor`| `minor`    | `warning`  |
//! | `P4`, `P5`, `info`, `low`         | `none`     | `info`     |
//! | anything else                     | anything else | `error` |
//!
//! Limits kept: `summary` at most 1024 characters, `dedup_key` at most 255. Answers: `202`
//! accepted; `400` means the event or the routing key is wrong (permanent); `429` is retried
//! after `Retry-After` (or the outbox's backoff); `5xx` is retried.

use serde_json::{json, Map, Value};

use super::{post_json, rfc3339, truncate, Endpoint, SendError};
use crate::notify::config::PagerDutyConfig;
use crate::notify::{Kind, Message};

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Most characters of `payload.summary`.
pub const MAX_SUMMARY: usize = 1024;
/// Most characters of `dedup_key`.
pub const MAX_DEDUP_KEY: usize = 255;

/// Sends `m` as one event.
pub async fn send(
    http: &reqwest::Client,
    name: &str,
    c: &PagerDutyConfig,
    m: &Message,
) -> Result<(), SendError> {
    let key = c.routing_key.expose();
    let to = Endpoint {
        kind: "pagerduty",
        name,
        shown: crate::redact::url(&c.url).into_owned(),
        secrets: vec![key.as_str()],
    };
    let body = serde_json::to_vec(&event(key, m)).expect("a JSON value serializes");
    post_json(http, &to, &c.url, body, &[]).await
}

/// `trigger`, `acknowledge` or `resolve`, by the message's kind.
pub fn action(kind: Kind) -> &'static str {
    match kind {
        Kind::Acknowledged => "acknowledge",
        Kind::Resolved => "resolve",
        _ => "trigger",
    }
}

/// The alert's `dedup_key`: one per incident, or one per test message.
pub fn dedup_key(m: &Message) -> String {
    let key = if m.kind == Kind::Test || m.incident == 0 {
        format!("watchfire-test-{}", m.due)
    } else {
        format!("watchfire-inc{}", m.incident)
    };
    truncate(&key, MAX_DEDUP_KEY)
}

/// PagerDuty's severity for the facts' severity, else their impact (the table above).
pub fn severity(severity: &str, impact: &str) -> &'static str {
    match severity.to_ascii_lowercase().as_str() {
        "p0" | "p1" | "critical" => return "critical",
        "p2" | "error" | "high" | "major" => return "error",
        "p3" | "warning" | "medium" | "minor" => return "warning",
        "p4" | "p5" | "info" | "low" => return "info",
        _ => {}
    }
    match impact.to_ascii_lowercase().as_str() {
        "critical" => "critical",
        "major" => "error",
        "minor" => "warning",
        "none" => "info",
        _ => "error",
    }
}

/// The event for `m` with `routing_key`.
pub fn event(routing_key: &str, m: &Message) -> Value {
    let action = action(m.kind);
    let mut ev = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(m),
    });
    if action == "trigger" {
        let obj = ev.as_object_mut().expect("built as an object");
        obj.insert("payload".into(), payload(m));
        obj.insert("client".into(), json!("watchfire"));
        if let Some(url) = &m.facts.status_page {
            obj.insert("client_url".into(), json!(url));
        }
        let links: Vec<Value> = [
            (&m.facts.war_room, "war room"),
            (&m.facts.status_page, "status page"),
        ]
        .into_iter()
        .filter_map(|(href, text)| href.as_ref().map(|h| json!({ "href": h, "text": text })))
        .collect();
        if !links.is_empty() {
            obj.insert("links".into(), Value::Array(links));
        }
    }
    ev
}

/// A trigger's `payload`.
fn payload(m: &Message) -> Value {
    let f = &m.facts;
    let summary = if m.title.trim().is_empty() {
        format!("watchfire {}: {}", m.kind.as_str(), f.service)
    } else {
        m.title.clone()
    };
    let source = if f.service.is_empty() {
        "watchfire"
    } else {
        &f.service
    };
    let at = if f.now > 0 { f.now } else { m.due };
    let mut p = Map::new();
    p.insert("summary".into(), json!(truncate(&summary, MAX_SUMMARY)));
    p.insert("source".into(), json!(source));
    p.insert("severity".into(), json!(severity(&f.severity, &f.impact)));
    p.insert("timestamp".into(), json!(rfc3339(at)));
    p.insert("component".into(), json!(source));
    let group = f.labels.get("group").or_else(|| f.labels.get("job"));
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        p.insert("group".into(), json!(g));
    }
    if let Some(reason) = f.reason.as_ref().filter(|r| !r.is_empty()) {
        p.insert("class".into(), json!(reason));
    }
    let mut details = serde_json::to_value(f).expect("facts serialize");
    if let Some(d) = details.as_object_mut() {
        d.insert("message".into(), json!(m.text));
        d.insert("kind".into(), json!(m.kind.as_str()));
    }
    p.insert("custom_details".into(), details);
    Value::Object(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_follows_the_documented_table() {
        assert_eq!(severity("P0", ""), "critical");
        assert_eq!(severity("p1", "none"), "critical");
        assert_eq!(severity("P2", ""), "error");
        assert_eq!(severity("P3", ""), "warning");
        assert_eq!(severity("P4", ""), "info");
        assert_eq!(severity("", "critical"), "critical");
        assert_eq!(severity("sev9", "minor"), "warning");
        assert_eq!(severity("", ""), "error");
    }
}
