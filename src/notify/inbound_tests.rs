//! PagerDuty's V3 webhooks: signatures, payloads and what they do to incidents, on the
//! in-memory store.

use super::*;
use crate::incident::manual::{declare, DeclareInput};
use crate::notify::config::{runbook_tiers, NotifyConfig, Route};
use crate::notify::plan::{plan, Input};

/// 2026-01-01T10:00:00Z.
const T0: Millis = 1_767_261_600_000;
const MIN: Millis = 60_000;
const SECRET: &[u8] = b"ChfxT3ce+kq0bCDpXXeFAVA9iJmTh0Cu";

/// An `incident.acknowledged` event in the shape of PagerDuty's V3 documentation (its
/// "Webhook Payload" example and its `incident` data type), for `key`.
fn payload(event_type: &str, key: &str, agent: serde_json::Value) -> Vec<u8> {
    let v = serde_json::json!({
      "event": {
        "id": "01DEN8V3XQ5K2ZJ4F6M1HVA3JQ",
        "event_type": event_type,
        "resource_type": "incident",
        "occurred_at": "2026-01-01T10:14:00.000Z",
        "agent": agent,
        "client": { "name": "PagerDuty" },
        "data": {
          "id": "Q1W2E3R",
          "type": "incident",
          "self": "https://api.pagerduty.com/incidents/Q1W2E3R",
          "html_url": "https://example.pagerduty.com/incidents/Q1W2E3R",
          "number": 17,
          "status": "acknowledged",
          "incident_key": key,
          "created_at": "2026-01-01T10:00:02Z",
          "title": "gw is down",
          "service": {
            "html_url": "https://example.pagerduty.com/services/PSVC001",
            "id": "PSVC001",
            "self": "https://api.pagerduty.com/services/PSVC001",
            "summary": "watchfire",
            "type": "service_reference"
          },
          "assignees": [],
          "escalation_policy": {
            "id": "PESC001",
            "summary": "Default",
            "type": "escalation_policy_reference"
          },
          "teams": [],
          "priority": null,
          "urgency": "high",
          "conference_bridge": null,
          "resolve_reason": null
        }
      }
    });
    serde_json::to_vec(&v).unwrap()
}

fn user(name: &str) -> serde_json::Value {
    serde_json::json!({
        "html_url": "https://example.pagerduty.com/users/PUSR001",
        "id": "PUSR001",
        "self": "https://api.pagerduty.com/users/PUSR001",
        "summary": name,
        "type": "user_reference"
    })
}

fn event(event_type: &str, key: &str) -> Event {
    parse(&payload(event_type, key, user("Dana Ops"))).expect("parses")
}

async fn declared(store: &Store) -> i64 {
    let d = DeclareInput {
        component: "gw".into(),
        title: "gw is down".into(),
        message: "Looking".into(),
        ..DeclareInput::default()
    };
    declare(store, &d, T0).await.expect("declared").id
}

#[test]
fn a_signed_body_passes_and_unsigned_or_wrongly_signed_ones_do_not() {
    let body = payload("incident.acknowledged", "watchfire-inc1", user("Dana Ops"));
    let good = sign(SECRET, &body);
    assert!(good.starts_with("v1=") && good.len() == 3 + 64, "{good}");
    assert_eq!(verify(SECRET, &body, Some(good.as_bytes())), Ok(()));
    assert_eq!(verify(SECRET, &body, None), Err(SignatureError::Missing));
    let other = sign(b"another secret", &body);
    assert_eq!(
        verify(SECRET, &body, Some(other.as_bytes())),
        Err(SignatureError::Mismatch)
    );
    // The body changed after signing.
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        verify(SECRET, &tampered, Some(good.as_bytes())),
        Err(SignatureError::Mismatch)
    );
    for bad in ["", "sha256=abc", "v0=00", "garbage"] {
        assert_eq!(
            verify(SECRET, &body, Some(bad.as_bytes())),
            Err(SignatureError::NoV1),
            "{bad:?}"
        );
    }
    for bad in ["v1=", "v1=zz", "v1=00ff", &format!("v1={}", "g".repeat(64))] {
        assert_eq!(
            verify(SECRET, &body, Some(bad.as_bytes())),
            Err(SignatureError::Mismatch),
            "{bad:?}"
        );
    }
    assert_eq!(
        verify(SECRET, &body, Some(&[0xff, 0xfe][..])),
        Err(SignatureError::NoV1)
    );
}

#[test]
fn during_a_rotation_any_of_the_signatures_may_match() {
    let body = payload("incident.acknowledged", "watchfire-inc1", user("Dana Ops"));
    let old = sign(b"the old secret", &body);
    let new = sign(SECRET, &body);
    // PagerDuty sends one signature per secret, comma-separated, on one line.
    for header in [format!("{old},{new}"), format!("{new}, {old}")] {
        assert_eq!(verify(SECRET, &body, Some(header.as_bytes())), Ok(()));
    }
    // Upper-case hex is hex too.
    let upper = format!("v1={}", new[3..].to_ascii_uppercase());
    assert_eq!(verify(SECRET, &body, Some(upper.as_bytes())), Ok(()));
    let header = format!("{old},{old}");
    assert_eq!(
        verify(SECRET, &body, Some(header.as_bytes())),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn the_documented_payload_gives_the_event_type_agent_and_incident_key() {
    let ev = event("incident.acknowledged", "watchfire-inc42");
    assert_eq!(ev.event_type, "incident.acknowledged");
    assert_eq!(ev.id, "01DEN8V3XQ5K2ZJ4F6M1HVA3JQ");
    assert_eq!(ev.agent.as_deref(), Some("Dana Ops"));
    assert_eq!(ev.incident_key.as_deref(), Some("watchfire-inc42"));
    assert_eq!(
        ev.html_url.as_deref(),
        Some("https://example.pagerduty.com/incidents/Q1W2E3R")
    );
    // Automation: `agent` is null, or a reference that is not a user.
    let ev = parse(&payload(
        "incident.acknowledged",
        "k",
        serde_json::Value::Null,
    ))
    .unwrap();
    assert_eq!(ev.agent, None);
    let service = serde_json::json!({"id": "PSVC001", "type": "service_reference", "summary": "x"});
    let ev = parse(&payload("incident.acknowledged", "k", service)).unwrap();
    assert_eq!(ev.agent, None);
    // Not the V3 shape.
    for bad in [&b"{}"[..], b"not json", b"{\"event\": {\"id\": \"x\"}}"] {
        assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn only_watchfire_keys_name_an_incident() {
    assert_eq!(incident_of("watchfire-inc42"), Some(42));
    for other in [
        "watchfire-inc",
        "watchfire-inc0",
        "watchfire-inc-1",
        "watchfire-inc4x",
        "watchfire-test-1767261600000",
        "d3640fbd41094207a1c11e58e46b1662",
        "watchfire-inc99999999999999999999999",
    ] {
        assert_eq!(incident_of(other), None, "{other}");
    }
    assert_eq!(actor(Some("Dana Ops")), "PagerDuty (Dana Ops)");
    assert_eq!(actor(None), "PagerDuty");
    let long = actor(Some(&"é".repeat(500)));
    assert!(long.len() <= MAX_NAME, "{}", long.len());
}

#[tokio::test]
async fn an_acknowledgement_acknowledges_the_incident_once_by_the_pagerduty_user() {
    let store = Store::memory();
    let id = declared(&store).await;
    let ev = event("incident.acknowledged", &format!("watchfire-inc{id}"));
    let o = apply(&store, &ev, T0 + 3 * MIN).await.expect("applied");
    assert_eq!(
        o,
        Outcome::Acknowledged {
            incident: id,
            already: false
        }
    );
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.acknowledged, Some(T0 + 3 * MIN));
    let updates = store.updates(&[id]).await.unwrap();
    assert_eq!(
        updates.last().unwrap().message,
        "Acknowledged by PagerDuty (Dana Ops)"
    );
    // PagerDuty retries a delivery it thinks failed: the second one changes nothing.
    let o = apply(&store, &ev, T0 + 4 * MIN).await.expect("applied");
    assert_eq!(
        o,
        Outcome::Acknowledged {
            incident: id,
            already: true
        }
    );
    assert_eq!(store.updates(&[id]).await.unwrap().len(), updates.len());
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_eq!(inc.acknowledged, Some(T0 + 3 * MIN), "the first one stands");
}

#[tokio::test]
async fn unknown_and_resolved_incidents_are_typed_errors_and_others_are_ignored() {
    let store = Store::memory();
    let r = apply(
        &store,
        &event("incident.acknowledged", "watchfire-inc4242"),
        T0,
    )
    .await;
    assert!(
        matches!(r, Err(InboundError::UnknownIncident { id: 4242, .. })),
        "{r:?}"
    );
    let id = declared(&store).await;
    let mut inc = store.incident(id).await.unwrap().unwrap();
    inc.status = IncidentStatus::Resolved;
    inc.resolved = Some(T0 + MIN);
    store.save_incident(&inc).await.unwrap();
    let key = format!("watchfire-inc{id}");
    let r = apply(&store, &event("incident.acknowledged", &key), T0 + 2 * MIN).await;
    assert!(
        matches!(r, Err(InboundError::Resolved(i)) if i == id),
        "{r:?}"
    );
    assert_eq!(r.unwrap_err().label(), "resolved_incident");
    assert_eq!(
        store.incident(id).await.unwrap().unwrap().acknowledged,
        None
    );
    // PagerDuty echoing watchfire's own resolve: nothing to write.
    let r = apply(&store, &event("incident.resolved", &key), T0 + 2 * MIN).await;
    assert!(matches!(r, Ok(Outcome::Ignored(_))), "{r:?}");
    // Another service's incident, an event watchfire does not act on, no key.
    for ev in [
        event("incident.acknowledged", "d3640fbd41094207a1c11e58e46b1662"),
        event("incident.priority_updated", &key),
        event("incident.annotated", &key),
    ] {
        let r = apply(&store, &ev, T0).await;
        assert!(matches!(r, Ok(Outcome::Ignored(_))), "{ev:?}: {r:?}");
    }
    let mut ev = event("incident.acknowledged", &key);
    ev.incident_key = None;
    assert!(matches!(
        apply(&store, &ev, T0).await,
        Ok(Outcome::Ignored(_))
    ));
}

#[tokio::test]
async fn a_resolve_in_pagerduty_is_written_on_the_timeline_and_resolves_nothing() {
    let store = Store::memory();
    let id = declared(&store).await;
    let ev = event("incident.resolved", &format!("watchfire-inc{id}"));
    let o = apply(&store, &ev, T0 + 5 * MIN).await.expect("applied");
    assert_eq!(o, Outcome::Recorded { incident: id });
    let inc = store.incident(id).await.unwrap().unwrap();
    assert_ne!(inc.status, IncidentStatus::Resolved);
    assert_eq!(inc.resolved, None);
    assert_eq!(inc.acknowledged, None);
    let updates = store.updates(&[id]).await.unwrap();
    let last = updates.last().unwrap();
    assert!(
        last.message
            .starts_with("Resolved in PagerDuty by PagerDuty (Dana Ops)"),
        "{}",
        last.message
    );
    assert!(
        last.automatic,
        "recorded, not a person's note sent to receivers"
    );
    assert_eq!(last.status, inc.status);
    // A retried delivery writes it once.
    apply(&store, &ev, T0 + 6 * MIN).await.expect("applied");
    assert_eq!(store.updates(&[id]).await.unwrap().len(), updates.len());
}

/// The planner's keys at `now` for the stored incident `id`, routed to `oncall` with the
/// runbook's tiers, each to its own receiver.
async fn planned(store: &Store, id: i64, now: Millis) -> Vec<String> {
    let mut config = NotifyConfig {
        routes: vec![Route {
            matchers: Default::default(),
            receivers: vec!["oncall".into()],
            wait: std::time::Duration::ZERO,
        }],
        escalation: runbook_tiers(),
        ..NotifyConfig::default()
    };
    for (i, t) in config.escalation.iter_mut().enumerate() {
        t.receivers = vec![format!("tier{i}")];
    }
    let inc = store.incident(id).await.unwrap().unwrap();
    let updates = store.updates(&[id]).await.unwrap();
    let labels = [("component".to_string(), "gw".to_string())].into();
    let input = Input {
        incident: &inc,
        updates: &updates,
        labels: &labels,
        in_maintenance: false,
        now,
    };
    plan(&config, &input).into_iter().map(|d| d.key).collect()
}

#[tokio::test]
async fn an_acknowledgement_in_pagerduty_stops_the_escalation_tier_that_was_due() {
    // Two incidents that start together; PagerDuty acknowledges one at 14 minutes, just
    // before the 15-minute tier (engineering manager + platform lead).
    let store = Store::memory();
    let acked = declared(&store).await;
    let left = declared(&store).await;
    let key = |id: i64| format!("inc{id}:escalated:1");
    let at14 = planned(&store, acked, T0 + 14 * MIN).await;
    assert!(!at14.contains(&key(acked)), "{at14:?}");
    let ev = event("incident.acknowledged", &format!("watchfire-inc{acked}"));
    apply(&store, &ev, T0 + 14 * MIN).await.expect("applied");
    for now in [T0 + 15 * MIN, T0 + 20 * MIN, T0 + 40 * MIN] {
        let keys = planned(&store, acked, now).await;
        assert!(
            keys.contains(&format!("inc{acked}:escalated:0")),
            "{keys:?}"
        );
        assert!(!keys.contains(&key(acked)), "{keys:?}");
        assert!(
            !keys.contains(&format!("inc{acked}:escalated:2")),
            "{keys:?}"
        );
        assert!(
            keys.contains(&format!("inc{acked}:acknowledged")),
            "{keys:?}"
        );
        // The one nobody acknowledged escalates on time.
        let keys = planned(&store, left, now).await;
        assert!(keys.contains(&key(left)), "{keys:?}");
    }
}

#[test]
fn counters_render_per_receiver_and_result() {
    let c = Counters::default();
    c.count("pd", "acknowledged");
    c.count("pd", "bad_signature");
    c.count("pd", "bad_signature");
    assert_eq!(c.get("pd", "bad_signature"), 2);
    assert_eq!(c.get("pd", "unsigned"), 0);
    let mut s = String::new();
    c.render(&mut Writer::new(&mut s));
    for line in [
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"acknowledged\"} 1",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"bad_signature\"} 2",
    ] {
        assert!(s.lines().any(|l| l == line), "{line} not in\n{s}");
    }
}
