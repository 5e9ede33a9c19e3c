//! PagerDuty's V3 webhooks through the real server: `POST /api/v1/notify/pagerduty/RECEIVER`
//! acknowledges the incident a down target opened when the request is signed with the
//! receiver's `webhook_secret`, and refuses (and counts) everything else.

mod common;
#[path = "common/served.rs"]
mod served;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use watchfire::notify::inbound::sign;
use watchfire::server::ServeOptions;

use common::eventually;
use served::Served;

const LIMIT: Duration = Duration::from_secs(10);
const SECRET: &str = "pd-wh-s3cr3t-0123456789";
const PATH: &str = "/api/v1/notify/pagerduty/pd";

/// A target on a port nothing listens on (down at its first probe); `pd` takes PagerDuty's
/// webhooks, `quiet` has no webhook secret. Nothing is delivered: the notifier is not started.
fn config() -> String {
    format!(
        "targets:
  - name: dead
    url: http://127.0.0.1:1/
    interval: 100ms
    timeout: 50ms
    down_after: 1
    labels: {{ component: shop }}
notify:
  receivers:
    - name: pd
      pagerduty: {{ routing_key: rk-0123, url: 'http://127.0.0.1:1/v2/enqueue', webhook_secret: '{SECRET}' }}
    - name: quiet
      pagerduty: {{ routing_key: rk-4567, url: 'http://127.0.0.1:1/v2/enqueue' }}
  routes:
    - receivers: [pd]
"
    )
}

/// One request; (status, JSON or text body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = tokio::time::timeout(LIMIT, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// An event in the shape of PagerDuty's V3 documentation.
fn event(event_type: &str, key: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event": {
            "id": "01DEN8V3XQ5K2ZJ4F6M1HVA3JQ",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-01-01T10:14:00.000Z",
            "agent": {"id": "PUSR001", "type": "user_reference", "summary": "Dana Ops",
                      "html_url": "https://example.pagerduty.com/users/PUSR001"},
            "client": {"name": "PagerDuty"},
            "data": {"id": "Q1W2E3R", "type": "incident", "number": 17,
                     "status": "acknowledged", "incident_key": key, "title": "shop is down",
                     "html_url": "https://example.pagerduty.com/incidents/Q1W2E3R"}
        }
    }))
    .unwrap()
}

async fn post_signed(addr: SocketAddr, body: Vec<u8>) -> (u16, Value) {
    let sig = sign(SECRET.as_bytes(), &body);
    let header = format!("{},{sig}", sign(b"old", &body));
    call(
        addr,
        "POST",
        PATH,
        body,
        &[("x-pagerduty-signature", &header)],
    )
    .await
}

async fn metrics(addr: SocketAddr) -> String {
    match call(addr, "GET", "/metrics", Vec::new(), &[]).await {
        (200, Value::String(s)) => s,
        other => panic!("/metrics: {other:?}"),
    }
}

async fn served() -> (Served, CancellationToken, i64) {
    let s = Served::start(&config(), ServeOptions::default(), 1).await;
    let cancel = CancellationToken::new();
    watchfire::runtime::incidents::start(s.runtime.clone(), cancel.clone())
        .await
        .expect("incidents start");
    let addr = s.addr();
    let id = eventually(LIMIT, "an incident for the dead target", || async move {
        let (st, v) = call(addr, "GET", "/api/v1/incidents?open=true", Vec::new(), &[]).await;
        assert_eq!(st, 200, "{v}");
        v.as_array()?.first()?.get("id")?.as_i64()
    })
    .await;
    (s, cancel, id)
}

#[tokio::test]
async fn a_signed_acknowledgement_acknowledges_the_incident_by_the_pagerduty_user() {
    let (s, cancel, id) = served().await;
    let addr = s.addr();
    let (st, v) = post_signed(
        addr,
        event("incident.acknowledged", &format!("watchfire-inc{id}")),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"result": "acknowledged", "incident": id}));
    let (st, v) = call(
        addr,
        "GET",
        &format!("/api/v1/incidents/{id}"),
        Vec::new(),
        &[],
    )
    .await;
    assert_eq!(st, 200);
    assert!(v["acknowledged"].is_string(), "{v}");
    let messages: Vec<&str> = v["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["message"].as_str())
        .collect();
    assert!(
        messages.contains(&"Acknowledged by PagerDuty (Dana Ops)"),
        "{messages:?}"
    );
    // Another event, and another service's incident: 204, nothing done.
    let (st, _) = post_signed(
        addr,
        event("incident.priority_updated", &format!("watchfire-inc{id}")),
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = post_signed(
        addr,
        event("incident.acknowledged", "d3640fbd41094207a1c11e58e46b1662"),
    )
    .await;
    assert_eq!(st, 204);
    let m = metrics(addr).await;
    for line in [
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"acknowledged\"} 1",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"ignored\"} 2",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in /metrics");
    }
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_oversized_requests_are_refused_and_counted() {
    let (s, cancel, id) = served().await;
    let addr = s.addr();
    let body = event("incident.acknowledged", &format!("watchfire-inc{id}"));
    let (st, v) = call(addr, "POST", PATH, body.clone(), &[]).await;
    assert_eq!(st, 401, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no X-PagerDuty-Signature"),
        "{v}"
    );
    let wrong = sign(b"not the secret", &body);
    let (st, v) = call(
        addr,
        "POST",
        PATH,
        body.clone(),
        &[("x-pagerduty-signature", &wrong)],
    )
    .await;
    assert_eq!(st, 401, "{v}");
    // Signed over another body.
    let other = sign(SECRET.as_bytes(), b"{}");
    let (st, _) = call(
        addr,
        "POST",
        PATH,
        body.clone(),
        &[("x-pagerduty-signature", &other)],
    )
    .await;
    assert_eq!(st, 401);
    let big = vec![b' '; watchfire::notify::inbound::MAX_BODY + 1];
    let (st, _) = post_signed(addr, big).await;
    assert_eq!(st, 413);
    let (st, v) = post_signed(addr, b"{\"not\": \"pagerduty\"}".to_vec()).await;
    assert_eq!(st, 400, "{v}");
    // Nothing was acknowledged.
    let (_, v) = call(
        addr,
        "GET",
        &format!("/api/v1/incidents/{id}"),
        Vec::new(),
        &[],
    )
    .await;
    assert!(v["acknowledged"].is_null(), "{v}");
    // No secret configured, another kind, no such receiver: there is no endpoint.
    for path in [
        "/api/v1/notify/pagerduty/quiet",
        "/api/v1/notify/pagerduty/nobody",
        "/api/v1/notify/pagerduty/",
    ] {
        let sig = sign(SECRET.as_bytes(), &body);
        let (st, v) = call(
            addr,
            "POST",
            path,
            body.clone(),
            &[("x-pagerduty-signature", &sig)],
        )
        .await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    let (st, _) = call(addr, "GET", PATH, Vec::new(), &[]).await;
    assert_eq!(st, 405);
    let m = metrics(addr).await;
    for line in [
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"unsigned\"} 1",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"bad_signature\"} 2",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"too_large\"} 1",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"bad_request\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in /metrics");
    }
    assert!(!m.contains(SECRET));
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn unknown_and_resolved_incidents_answer_404_and_409() {
    let (s, cancel, id) = served().await;
    let addr = s.addr();
    let (st, v) = post_signed(addr, event("incident.acknowledged", "watchfire-inc987654")).await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("987654"), "{v}");
    let body = json!({"status": "resolved", "message": "Fixed by hand"}).to_string();
    let path = format!("/api/v1/incidents/{id}/updates");
    let (st, v) = call(addr, "POST", &path, body.into_bytes(), &[]).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post_signed(
        addr,
        event("incident.acknowledged", &format!("watchfire-inc{id}")),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("resolved"), "{v}");
    let m = metrics(addr).await;
    for line in [
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"unknown_incident\"} 1",
        "watchfire_notify_inbound_total{receiver=\"pd\",result=\"resolved_incident\"} 1",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in /metrics");
    }
    cancel.cancel();
    s.stop().await;
}

#[test]
fn webhook_secret_file_is_read_and_bad_ones_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pd.secret"), format!("{SECRET}\n")).unwrap();
    let with = |pd: &str| {
        let yaml = format!(
            "targets:\n  - name: a\n    url: http://127.0.0.1:1/\nnotify:\n  receivers:\n    - name: pd\n      pagerduty: {{ routing_key: rk, {pd} }}\n  routes:\n    - receivers: [pd]\n"
        );
        let path = dir.path().join("watchfire.yaml");
        std::fs::write(&path, yaml).unwrap();
        watchfire::config::load(&path)
    };
    let cfg = with("webhook_secret_file: pd.secret").expect("loads");
    let r = cfg.notify.receiver("pd").unwrap();
    match &r.kind {
        watchfire::notify::config::ReceiverKind::PagerDuty(c) => {
            assert_eq!(c.webhook_secret.as_ref().unwrap().expose(), SECRET);
            assert!(!format!("{c:?}").contains(SECRET));
        }
        other => panic!("{other:?}"),
    }
    for (pd, want) in [
        ("webhook_secret_file: missing.secret", "missing.secret"),
        ("webhook_secret: ''", "must not be empty"),
        (
            "webhook_secret: x, webhook_secret_file: pd.secret",
            "not both",
        ),
    ] {
        let e = with(pd).expect_err(pd).to_string();
        assert!(
            e.contains("notify.receivers[0].pagerduty.webhook_secret"),
            "{e}"
        );
        assert!(e.contains(want), "{pd}: {e}");
        assert!(e.contains("watchfire.yaml:7"), "{pd}: {e}");
    }
}
