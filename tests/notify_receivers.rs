//! The notification receivers against in-test servers on 127.0.0.1:0: a Slack-shaped and a
//! PagerDuty-shaped receiver that reject a payload breaking the public documentation (Block Kit
//! blocks and limits; Events API v2 fields), a webhook whose signature is checked with an
//! HMAC-SHA256 computed here from SHA-256 alone, Alertmanager's alert list, and every way a
//! delivery fails (429 with Retry-After, 500, 400, a refused port, a server that never
//! answers), each typed as retry or permanent, no error text holding a secret. The exec
//! receiver: exit 0 with the JSON and environment, exit 1, a timeout that kills the command's
//! process group, a missing program.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use watchfire::notify::config::{
    AlertmanagerConfig, ExecConfig, PagerDutyConfig, Receiver, ReceiverKind, SlackConfig,
    WebhookConfig,
};
use watchfire::notify::receivers::{self, SendError};
use watchfire::notify::{Facts, Kind, Message};
use watchfire::redact::Secret;

/// A request as a test server got it.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a test server answers: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// A test HTTP server: keeps every request, answers with `answer(request)`; stopped on drop.
struct Server {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    cancel: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Server {
    async fn start(answer: impl Fn(&Got) -> Answer + Send + Sync + 'static) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let cancel = CancellationToken::new();
        let (store, stop, answer) = (got.clone(), cancel.clone(), Arc::new(answer));
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let (store, answer) = (store.clone(), answer.clone());
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (store, answer) = (store.clone(), answer.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes());
                            let g = Got {
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body: body.unwrap_or_default(),
                            };
                            let (status, headers, text) = answer(&g);
                            store.lock().expect("requests").push(g);
                            let mut resp = http::Response::builder().status(status);
                            for (n, v) in headers {
                                resp = resp.header(n, v);
                            }
                            Ok::<_, Infallible>(resp.body(Full::new(Bytes::from(text))).unwrap())
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
                );
            }
        });
        Server { addr, got, cancel }
    }

    fn requests(&self) -> Vec<Got> {
        self.got.lock().expect("requests").clone()
    }
}

fn message(kind: Kind, title: &str, text: &str) -> Message {
    let mut facts = Facts {
        id: 42,
        service: "inference-gateway".into(),
        title: "inference-gateway is down".into(),
        severity: "P0".into(),
        status: "investigating".into(),
        impact: "critical".into(),
        started: 1_764_600_000_000,
        started_text: "2025-12-01 14:40:00 UTC".into(),
        now: 1_764_600_300_000,
        elapsed: "5m 0s".into(),
        targets: vec!["gateway-health".into()],
        reason: Some("connection_refused".into()),
        failing_percent: 100.0,
        failed_probes: 60,
        war_room: Some("https://meet.example/war-room".into()),
        status_page: Some("https://status.example".into()),
        ..Facts::default()
    };
    facts
        .labels
        .insert("component".into(), "inference-gateway".into());
    facts.labels.insert("team".into(), "ml".into());
    if kind == Kind::Resolved {
        facts.status = "resolved".into();
        facts.resolved = Some(1_764_600_900_000);
    }
    Message {
        key: format!("inc42:{}@rcv", kind.as_str()),
        receiver: "rcv".into(),
        kind,
        incident: 42,
        due: 1_764_600_300_000,
        title: title.into(),
        text: text.into(),
        facts,
    }
}

fn http() -> reqwest::Client {
    receivers::client(Duration::from_secs(5))
}

fn receiver(kind: ReceiverKind) -> Receiver {
    Receiver {
        name: "rcv".into(),
        kind,
    }
}

fn slack_at(url: String) -> Receiver {
    receiver(ReceiverKind::Slack(SlackConfig {
        url: Secret::new(url),
    }))
}

fn webhook_at(url: String, secret: Option<&str>) -> Receiver {
    let mut headers = BTreeMap::new();
    headers.insert(
        "X-Tenant-Token".to_string(),
        Secret::new("tenant-s3cr3t".into()),
    );
    receiver(ReceiverKind::Webhook(WebhookConfig {
        url: Secret::new(url),
        secret: secret.map(|s| Secret::new(s.to_string())),
        headers,
    }))
}

/// What Slack's Block Kit documentation requires of an incoming webhook's payload, as a list
/// of problems (empty: acceptable).
fn block_kit_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if v["text"].as_str().is_none_or(str::is_empty) {
        p.push("no fallback `text`".to_string());
    }
    let Some(blocks) = v["blocks"].as_array() else {
        return vec!["no `blocks` array".into()];
    };
    if blocks.is_empty() || blocks.len() > 50 {
        p.push(format!("{} blocks (1 to 50)", blocks.len()));
    }
    let text_len = |t: &Value| t["text"].as_str().map_or(0, |s| s.chars().count());
    for (i, b) in blocks.iter().enumerate() {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text" || !(1..=150).contains(&text_len(&b["text"])) {
                    p.push(format!(
                        "block {i}: header text must be plain_text, 1-150 chars"
                    ));
                }
            }
            Some("section") => {
                let fields = b["fields"].as_array();
                if b.get("text").is_none() && fields.is_none() {
                    p.push(format!("block {i}: section without text or fields"));
                }
                if let Some(t) = b.get("text") {
                    if !["mrkdwn", "plain_text"].contains(&t["type"].as_str().unwrap_or(""))
                        || !(1..=3000).contains(&text_len(t))
                    {
                        p.push(format!("block {i}: section text type or length"));
                    }
                }
                if let Some(f) = fields {
                    if f.is_empty() || f.len() > 10 {
                        p.push(format!("block {i}: {} fields (1 to 10)", f.len()));
                    }
                    if f.iter().any(|x| !(1..=2000).contains(&text_len(x))) {
                        p.push(format!("block {i}: a field outside 1-2000 chars"));
                    }
                }
            }
            Some("context") => {
                let n = b["elements"].as_array().map_or(0, Vec::len);
                if !(1..=10).contains(&n) {
                    p.push(format!("block {i}: context with {n} elements (1 to 10)"));
                }
            }
            other => p.push(format!("block {i}: unexpected type {other:?}")),
        }
    }
    p
}

/// A Slack-shaped webhook: `200 ok` for a payload within Block Kit's rules, else
/// `400 invalid_blocks`.
async fn slack_server() -> Server {
    Server::start(|g| {
        let v: Value = serde_json::from_slice(&g.body).unwrap_or(Value::Null);
        let problems = block_kit_problems(&v);
        if problems.is_empty() {
            (200, vec![], "ok".into())
        } else {
            (400, vec![], format!("invalid_blocks: {problems:?}"))
        }
    })
    .await
}

/// What the Events API v2 documentation requires of an event, as a list of problems.
fn events_v2_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if v["routing_key"].as_str().is_none_or(str::is_empty) {
        p.push("no routing_key".to_string());
    }
    let dedup = v["dedup_key"].as_str().unwrap_or("");
    if dedup.is_empty() || dedup.chars().count() > 255 {
        p.push("dedup_key missing or over 255 chars".into());
    }
    match v["event_action"].as_str() {
        Some("trigger") => {
            let pl = &v["payload"];
            let summary = pl["summary"].as_str().unwrap_or("");
            if summary.is_empty() || summary.chars().count() > 1024 {
                p.push("payload.summary missing or over 1024 chars".into());
            }
            if pl["source"].as_str().is_none_or(str::is_empty) {
                p.push("payload.source missing".into());
            }
            let sev = pl["severity"].as_str().unwrap_or("");
            if !["critical", "error", "warning", "info"].contains(&sev) {
                p.push(format!("payload.severity {sev:?}"));
            }
            if let Some(ts) = pl["timestamp"].as_str() {
                if ts.parse::<jiff::Timestamp>().is_err() {
                    p.push(format!("payload.timestamp {ts:?} is not RFC 3339"));
                }
            }
        }
        Some("acknowledge") | Some("resolve") => {
            if v.get("payload").is_some() {
                p.push("a payload on acknowledge/resolve".into());
            }
        }
        other => p.push(format!("event_action {other:?}")),
    }
    p
}

/// A PagerDuty-shaped endpoint: `202` for a valid event with the expected key, `400`
/// otherwise (echoing the key it got, as an unhelpful server might).
async fn pagerduty_server(key: &'static str) -> Server {
    Server::start(move |g| {
        let v: Value = serde_json::from_slice(&g.body).unwrap_or(Value::Null);
        let mut problems = events_v2_problems(&v);
        if v["routing_key"] != key {
            problems.push(format!("invalid routing key {}", v["routing_key"]));
        }
        if problems.is_empty() {
            let ok = json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]});
            (202, vec![], ok.to_string())
        } else {
            let bad = json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems});
            (400, vec![], bad.to_string())
        }
    })
    .await
}

fn permanent(r: Result<(), SendError>) -> String {
    match r {
        Err(SendError::Permanent { error }) => error,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn retry(r: Result<(), SendError>) -> (String, Option<Duration>) {
    match r {
        Err(SendError::Retry { error, after }) => (error, after),
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[tokio::test]
async fn slack_gets_block_kit_within_its_limits_with_a_text_fallback() {
    let srv = slack_server().await;
    let url = format!("http://{}/services/T000/B000/slack-s3cr3t", srv.addr);
    let r = slack_at(url);
    // A long title, a body of many long lines, characters mrkdwn escapes.
    let title = format!("P0 <!channel> & {}", "x".repeat(300));
    let body: String = (0..120)
        .map(|i| format!("line {i}: {}\n", "y".repeat(90)))
        .collect();
    let m = message(Kind::Declared, &title, &body);
    receivers::send(&http(), &r, &m)
        .await
        .expect("a Block Kit payload the Slack-shaped receiver accepts");
    let got = srv.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/services/T000/B000/slack-s3cr3t");
    let v = got[0].json();
    assert_eq!(v["text"], title.as_str(), "the fallback is the title");
    let blocks = v["blocks"].as_array().unwrap();
    let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "header");
    assert_eq!(*types.last().unwrap(), "context");
    let sections: Vec<&Value> = blocks
        .iter()
        .filter(|b| b["type"] == "section" && b.get("text").is_some())
        .collect();
    assert!(sections.len() >= 4, "a 11 kB body takes several sections");
    let joined: String = sections
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(joined.lines().count(), 120, "no line lost across sections");
    let fields = blocks
        .iter()
        .find_map(|b| b["fields"].as_array())
        .expect("a fields section");
    let names: Vec<&str> = fields
        .iter()
        .map(|f| f["text"].as_str().unwrap().lines().next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "*Service*",
            "*Severity*",
            "*Status*",
            "*Started*",
            "*Elapsed*",
            "*Failing*"
        ]
    );
    let context = blocks.last().unwrap()["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(context.contains("incident #42") && context.contains("sent by watchfire"));
}

#[tokio::test]
async fn slack_429_is_retried_after_its_retry_after_and_hides_the_url() {
    let srv = Server::start(|_| {
        (
            429,
            vec![("retry-after", "7".into())],
            "rate_limited".into(),
        )
    })
    .await;
    let r = slack_at(format!(
        "http://{}/services/T000/B000/slack-s3cr3t",
        srv.addr
    ));
    let (error, after) =
        retry(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert_eq!(after, Some(Duration::from_secs(7)));
    assert!(
        error.contains("429") && error.contains("rate_limited"),
        "{error}"
    );
    assert!(
        error.contains("slack") && error.contains("<secret>"),
        "{error}"
    );
    assert!(!error.contains("slack-s3cr3t"), "{error}");
}

#[tokio::test]
async fn pagerduty_triggers_acknowledges_and_resolves_one_alert_per_incident() {
    const KEY: &str = "R0UT1NGK3YR0UT1NGK3YR0UT1NGK3Y00";
    let srv = pagerduty_server(KEY).await;
    let r = receiver(ReceiverKind::PagerDuty(PagerDutyConfig {
        routing_key: Secret::new(KEY.into()),
        url: format!("http://{}/v2/enqueue", srv.addr),
        webhook_secret: None,
    }));
    let long = "z".repeat(2000);
    for kind in [
        Kind::Declared,
        Kind::Update,
        Kind::Acknowledged,
        Kind::Resolved,
    ] {
        receivers::send(&http(), &r, &message(kind, &long, "body"))
            .await
            .unwrap_or_else(|e| panic!("{kind:?} rejected: {e}"));
    }
    receivers::send(&http(), &r, &message(Kind::Test, "test", "body"))
        .await
        .expect("a test event");
    let events: Vec<Value> = srv.requests().iter().map(Got::json).collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["trigger", "trigger", "acknowledge", "resolve", "trigger"]
    );
    for e in &events[..4] {
        assert_eq!(e["dedup_key"], "watchfire-inc42");
    }
    assert!(events[4]["dedup_key"]
        .as_str()
        .unwrap()
        .starts_with("watchfire-test-"));
    let p = &events[0]["payload"];
    assert_eq!(p["summary"].as_str().unwrap().chars().count(), 1024);
    assert_eq!(p["source"], "inference-gateway");
    assert_eq!(p["severity"], "critical");
    assert_eq!(p["class"], "connection_refused");
    assert_eq!(p["custom_details"]["failed_probes"], 60);
    assert_eq!(
        events[0]["links"][0]["href"],
        "https://meet.example/war-room"
    );
    assert!(events[2].get("payload").is_none() && events[3].get("payload").is_none());
}

#[tokio::test]
async fn a_rejected_routing_key_is_permanent_and_never_quoted() {
    const GOOD: &str = "g00dk3yg00dk3yg00dk3yg00dk3yg00d";
    const WRONG: &str = "wr0ngk3ywr0ngk3ywr0ngk3ywr0ngk3y";
    let srv = pagerduty_server(GOOD).await;
    let r = receiver(ReceiverKind::PagerDuty(PagerDutyConfig {
        routing_key: Secret::new(WRONG.into()),
        url: format!("http://{}/v2/enqueue", srv.addr),
        webhook_secret: None,
    }));
    let error = permanent(receivers::send(&http(), &r, &message(Kind::Declared, "t", "b")).await);
    assert!(
        error.contains("400") && error.contains("invalid routing key"),
        "{error}"
    );
    assert!(!error.contains(WRONG), "the key is masked: {error}");
    assert!(error.contains("<secret>"), "{error}");
}

/// HMAC-SHA256 (RFC 2104) from SHA-256 alone: the independent check of the signature.
fn hmac_sha256(key: &[u8], data: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(data)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_webhook_is_schema_1_idempotent_and_signed_over_its_exact_bytes() {
    let srv = Server::start(|_| (204, vec![], String::new())).await;
    let r = webhook_at(
        format!("http://{}/hook?token=url-s3cr3t", srv.addr),
        Some("sign-s3cr3t"),
    );
    let m = message(Kind::Resolved, "RESOLVED: inference-gateway", "It is back.");
    receivers::send(&http(), &r, &m).await.expect("delivered");
    let got = &srv.requests()[0];
    let h = |n: &str| got.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    let expected = format!("sha256={}", hmac_sha256(b"sign-s3cr3t", &got.body));
    assert_eq!(h("x-watchfire-signature"), Some(expected));
    assert_eq!(h("idempotency-key").as_deref(), Some(m.key.as_str()));
    assert_eq!(h("x-tenant-token").as_deref(), Some("tenant-s3cr3t"));
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    let v = got.json();
    assert_eq!(v["version"], "1");
    assert_eq!(v["key"], m.key.as_str());
    assert_eq!(v["kind"], "resolved");
    assert_eq!(v["incident"]["id"], 42);
    assert_eq!(v["incident"]["service"], "inference-gateway");
    assert_eq!(v["incident"]["resolved"], "2025-12-01T14:55:00.000Z");
    assert_eq!(v["message"]["title"], "RESOLVED: inference-gateway");
    assert_eq!(v["facts"]["failed_probes"], 60);
    let sent: jiff::Timestamp = v["sent_at"].as_str().unwrap().parse().expect("RFC 3339");
    let ts: i64 = h("x-watchfire-timestamp").unwrap().parse().unwrap();
    assert_eq!(
        sent.as_second(),
        ts,
        "the timestamp header is the signed sent_at"
    );
}

#[tokio::test]
async fn webhook_answers_are_typed_500_retry_400_permanent_and_secrets_stay_hidden() {
    let srv = Server::start(|g| match g.path.as_str() {
        "/fail" => (500, vec![], "boom tenant-s3cr3t".into()),
        "/later" => (
            503,
            vec![("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT".into())],
            String::new(),
        ),
        _ => (400, vec![], "no such hook".into()),
    })
    .await;
    let m = message(Kind::Declared, "t", "b");
    let fail = webhook_at(
        format!("http://{}/fail?token=url-s3cr3t", srv.addr),
        Some("sign-s3cr3t"),
    );
    let (error, after) = retry(receivers::send(&http(), &fail, &m).await);
    assert!(error.contains("500") && error.contains("boom"), "{error}");
    assert_eq!(after, None);
    let later = webhook_at(format!("http://{}/later", srv.addr), None);
    let (_, after) = retry(receivers::send(&http(), &later, &m).await);
    assert_eq!(
        after,
        Some(Duration::ZERO),
        "an HTTP-date in the past: at once"
    );
    let bad = webhook_at(format!("http://{}/bad?token=url-s3cr3t", srv.addr), None);
    let perm = permanent(receivers::send(&http(), &bad, &m).await);
    assert!(
        perm.contains("400") && perm.contains("no such hook"),
        "{perm}"
    );
    for e in [&error, &perm] {
        for secret in ["url-s3cr3t", "sign-s3cr3t", "tenant-s3cr3t"] {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
    }
}

#[tokio::test]
async fn a_refused_port_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let r = webhook_at(
        format!("http://127.0.0.1:{port}/hook?token=url-s3cr3t"),
        None,
    );
    let (error, _) = retry(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains("url-s3cr3t"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_retried_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    // Accepts, reads nothing, answers nothing; holds the connections until the test ends.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => if let Ok((s, _)) = r { held.push(s) },
            }
        }
    });
    let r = slack_at(format!("http://{addr}/services/T/B/slack-s3cr3t"));
    let start = std::time::Instant::now();
    let client = receivers::client(Duration::from_millis(300));
    let (error, _) = retry(receivers::send(&client, &r, &message(Kind::Update, "t", "b")).await);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(error.contains("no answer within"), "{error}");
    assert!(!error.contains("slack-s3cr3t"), "{error}");
    cancel.cancel();
    holder.await.unwrap();
}

#[tokio::test]
async fn alertmanager_gets_the_alert_list_and_a_400_is_permanent() {
    let srv = Server::start(|g| {
        let ok = g.path == "/api/v2/alerts"
            && serde_json::from_slice::<Value>(&g.body)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|a| a.iter().all(|x| x["labels"]["alertname"].is_string()));
        if ok {
            (200, vec![], String::new())
        } else {
            (
                400,
                vec![],
                "{\"code\":400,\"message\":\"bad alerts\"}".into(),
            )
        }
    })
    .await;
    let am = |url: String| {
        receiver(ReceiverKind::Alertmanager(AlertmanagerConfig {
            url,
            resend: Duration::from_secs(60),
        }))
    };
    let r = am(format!("http://{}/", srv.addr));
    receivers::send(&http(), &r, &message(Kind::Declared, "P0: down", "body"))
        .await
        .expect("accepted");
    let v = srv.requests()[0].json();
    let alert = &v[0];
    assert_eq!(alert["labels"]["alertname"], "WatchfireIncident");
    assert_eq!(alert["labels"]["incident"], "42");
    assert_eq!(alert["labels"]["team"], "ml");
    assert_eq!(alert["annotations"]["summary"], "P0: down");
    assert_eq!(alert["startsAt"], "2025-12-01T14:40:00.000Z");
    assert_eq!(alert["generatorURL"], "https://status.example");
    let wrong = am(format!("http://{}/prefix", srv.addr));
    let error = permanent(receivers::send(&http(), &wrong, &message(Kind::Update, "t", "b")).await);
    assert!(
        error.contains("400") && error.contains("bad alerts"),
        "{error}"
    );
}

fn exec_with(argv: &[&str], timeout: Duration) -> Receiver {
    let mut env = BTreeMap::new();
    env.insert("HOOK_TOKEN".to_string(), Secret::new("env-s3cr3t".into()));
    receiver(ReceiverKind::Exec(ExecConfig {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env,
        timeout,
    }))
}

#[tokio::test]
async fn exec_exit_0_gets_the_json_on_stdin_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let script = format!(
        "cat > {0}.json; printf '%s|%s|%s|%s|%s' \"$WATCHFIRE_KIND\" \"$WATCHFIRE_INCIDENT\" \"$WATCHFIRE_KEY\" \"$WATCHFIRE_TITLE\" \"$HOOK_TOKEN\" > {0}.env",
        out.display()
    );
    let r = exec_with(&["sh", "-c", &script], Duration::from_secs(10));
    let m = message(Kind::Declared, "P0: down", "body");
    receivers::send(&http(), &r, &m).await.expect("exit 0");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .expect("the webhook JSON on stdin");
    assert_eq!(json["version"], "1");
    assert_eq!(json["key"], m.key.as_str());
    let env = std::fs::read_to_string(out.with_extension("env")).unwrap();
    assert_eq!(env, format!("declared|42|{}|P0: down|env-s3cr3t", m.key));
}

#[tokio::test]
async fn exec_exit_1_is_retried_with_its_output_quoted_and_secrets_masked() {
    let r = exec_with(
        &[
            "sh",
            "-c",
            "echo \"token $HOOK_TOKEN rejected\" >&2; echo partial; exit 1",
        ],
        Duration::from_secs(10),
    );
    let (error, _) = retry(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(error.contains("exited with 1"), "{error}");
    assert!(error.contains("stdout: \"partial\""), "{error}");
    assert!(error.contains("token <secret> rejected"), "{error}");
    assert!(!error.contains("env-s3cr3t"), "{error}");
    let r = exec_with(&["sh", "-c", "exit 75"], Duration::from_secs(10));
    let (error, _) = retry(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(error.contains("EX_TEMPFAIL"), "{error}");
}

/// Whether process `pid` is gone (or a zombie awaiting its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn exec_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let r = exec_with(&["sh", "-c", &script], Duration::from_millis(500));
    let start = std::time::Instant::now();
    let (error, _) = retry(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(error.contains("killed after its timeout"), "{error}");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    common::eventually(
        Duration::from_secs(5),
        "the background sleep killed",
        || {
            let pid = pid.clone();
            async move { gone(&pid).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn exec_of_a_missing_program_is_permanent() {
    let r = exec_with(&["/nonexistent/watchfire-hook"], Duration::from_secs(5));
    let error = permanent(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(error.contains("not there"), "{error}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let r = exec_with(&[file.to_str().unwrap()], Duration::from_secs(5));
    let error = permanent(receivers::send(&http(), &r, &message(Kind::Update, "t", "b")).await);
    assert!(error.contains("permission denied"), "{error}");
}

#[test]
fn the_shape_checks_reject_what_the_documentation_forbids() {
    let field = json!({ "type": "mrkdwn", "text": "f" });
    let bad_slack = json!({
        "blocks": [
            { "type": "header", "text": { "type": "mrkdwn", "text": "h".repeat(151) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": "s".repeat(3001) } },
            { "type": "section", "fields": vec![field; 11] },
            { "type": "context", "elements": [] },
            { "type": "attachment" },
        ]
    });
    assert_eq!(
        block_kit_problems(&bad_slack).len(),
        6,
        "{:?}",
        block_kit_problems(&bad_slack)
    );
    let good = receivers::slack::payload(&message(Kind::Update, "t", "b"));
    assert_eq!(block_kit_problems(&good), Vec::<String>::new());

    let bad_trigger = json!({
        "routing_key": "k", "event_action": "trigger", "dedup_key": "d".repeat(256),
        "payload": { "summary": "s".repeat(1025), "severity": "fatal", "timestamp": "yesterday" },
    });
    assert_eq!(
        events_v2_problems(&bad_trigger).len(),
        5,
        "{:?}",
        events_v2_problems(&bad_trigger)
    );
    let bad_resolve = json!({
        "routing_key": "k", "event_action": "resolve", "dedup_key": "d",
        "payload": { "summary": "s", "source": "x", "severity": "info" },
    });
    assert_eq!(events_v2_problems(&bad_resolve).len(), 1);
    let good = receivers::pagerduty::event("k", &message(Kind::Declared, "t", "b"));
    assert_eq!(events_v2_problems(&good), Vec::<String>::new());
}
