//! The incidents and maintenance API through the real server, and the `incident` and
//! `maintenance` subcommands against a served instance: an incident opened by a target that
//! goes down, listed, shown, updated, acknowledged, resolved (with root cause and resolution);
//! unknown ids, bad bodies, requests without intent or credentials refused.

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
use watchfire::config::load_str;
use watchfire::incident::maintenance::Calendar;
use watchfire::server::ServeOptions;
use watchfire::store::MaintenanceCalendar as _;

use common::eventually;
use served::Served;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const LIMIT: Duration = Duration::from_secs(10);

/// A target on a port nothing listens on: down at its first probe.
const CONFIG: &str = "targets:
  - name: dead
    url: http://127.0.0.1:1/
    interval: 100ms
    timeout: 50ms
    down_after: 1
    labels: { component: shop }
incidents:
  request_rate: 5
";

/// One request with a body and headers; (status, JSON or text body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
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
        .header("host", addr.to_string());
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
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

async fn served() -> (Served, CancellationToken) {
    served_with(ServeOptions::default()).await
}

async fn served_with(opts: ServeOptions) -> (Served, CancellationToken) {
    let s = Served::start(CONFIG, opts, 1).await;
    let cancel = CancellationToken::new();
    watchfire::runtime::incidents::start(s.runtime.clone(), cancel.clone())
        .await
        .expect("incidents start");
    (s, cancel)
}

/// Waits for the incident the dead target opens; its id.
async fn opened(addr: SocketAddr) -> i64 {
    eventually(LIMIT, "an incident for the dead target", || async move {
        let (s, v) = call(addr, "GET", "/api/v1/incidents?open=true", "", &[]).await;
        assert_eq!(s, 200, "{v}");
        v.as_array()?.first()?.get("id")?.as_i64()
    })
    .await
}

#[tokio::test]
async fn api_lists_shows_and_updates_an_automatic_incident() {
    let (s, cancel) = served().await;
    let addr = s.addr();
    let id = opened(addr).await;
    let (st, v) = call(addr, "GET", &format!("/api/v1/incidents/{id}"), "", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(v["component"], "shop");
    assert_eq!(v["status"], "investigating");
    assert_eq!(v["targets"], json!(["dead"]));
    let first = v["updates"][0]["message"].as_str().unwrap();
    assert!(first.starts_with("Detected: dead is down"), "{first}");
    assert_eq!(v["updates"][0]["automatic"], true);

    let body = json!({"status": "identified", "message": "Port closed", "impact": "critical"});
    let path = format!("/api/v1/incidents/{id}/updates");
    let (st, v) = call(addr, "POST", &path, &body.to_string(), &[]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "identified");
    assert_eq!(v["impact"], "critical");
    assert_eq!(v["updates"][1]["message"], "Port closed");
    assert_eq!(v["updates"][1]["automatic"], false);

    // Resolved by hand: figures from the configured request rate.
    let body = json!({"status": "resolved", "message": "Closed for good"});
    let (st, v) = call(addr, "POST", &path, &body.to_string(), &[]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["figures"]["request_rate_source"], "config");
    let (_, list) = call(addr, "GET", "/api/v1/incidents?limit=1", "", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn api_refuses_unknown_ids_bad_bodies_and_requests_without_intent() {
    let (s, cancel) = served().await;
    let addr = s.addr();
    let ok = json!({"message": "hello"}).to_string();
    let (st, v) = call(addr, "GET", "/api/v1/incidents/4242", "", &[]).await;
    assert_eq!(st, 404);
    assert!(v["error"].as_str().unwrap().contains("4242"), "{v}");
    let (st, _) = call(addr, "POST", "/api/v1/incidents/4242/updates", &ok, &[]).await;
    assert_eq!(st, 404);
    let (st, v) = call(addr, "GET", "/api/v1/incidents/abc", "", &[]).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("id")));
    let (st, v) = call(addr, "GET", "/api/v1/incidents?limit=0", "", &[]).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("limit")));

    let declare = json!({"component": "shop", "title": "Checkout slow", "message": "Looking"});
    let (st, v) = call(addr, "POST", "/api/v1/incidents", &declare.to_string(), &[]).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    let path = format!("/api/v1/incidents/{id}/updates");
    let (st, v) = call(addr, "POST", &path, "{\"status\": \"identified\"}", &[]).await;
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("message"), "{v}");
    let bad = json!({"status": "fixed", "message": "x"}).to_string();
    let (st, v) = call(addr, "POST", &path, &bad, &[]).await;
    assert_eq!((st, v["field"].as_str()), (400, Some("status")));
    let (st, _) = call(addr, "POST", &path, "not json", &[]).await;
    assert_eq!(st, 400);
    let huge = json!({"message": "x".repeat(100_000)}).to_string();
    let (st, _) = call(addr, "POST", &path, &huge, &[]).await;
    assert_eq!(st, 413);

    // Without intent: refused before anything changes.
    let foreign = [("origin", "http://evil.example")];
    let (st, _) = call(addr, "POST", &path, &ok, &foreign).await;
    assert_eq!(st, 403);
    let form = [("content-type", "text/plain")];
    let (st, _) = call(addr, "POST", "/api/v1/maintenance", "", &form).await;
    assert_eq!(st, 403);
    let (st, _) = call(addr, "DELETE", "/api/v1/maintenance/1", "", &foreign).await;
    assert_eq!(st, 403);
    let (_, v) = call(addr, "GET", &format!("/api/v1/incidents/{id}"), "", &[]).await;
    assert_eq!(
        v["updates"].as_array().unwrap().len(),
        1,
        "nothing was added"
    );
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn api_maintenance_windows_are_checked_and_put_in_force() {
    let (s, cancel) = served().await;
    let addr = s.addr();
    let path = "/api/v1/maintenance";
    for (body, field) in [
        (
            json!({"name": "x", "start": "2030-01-01T00:00:00", "duration": "1h", "tz": "Nowhere/City"}),
            "tz",
        ),
        (
            json!({"name": "x", "start": "2030-01-01T02:00:00Z", "end": "2030-01-01T01:00:00Z"}),
            "end",
        ),
        (
            json!({"name": "x", "start": "2030-01-01T00:00:00Z", "duration": "1h", "every": "sometimes"}),
            "every",
        ),
        (
            json!({"name": "x", "components": ["nope"], "start": "2030-01-01T00:00:00Z", "duration": "1h"}),
            "components",
        ),
    ] {
        let (st, v) = call(addr, "POST", path, &body.to_string(), &[]).await;
        assert_eq!((st, v["field"].as_str()), (400, Some(field)), "{v}");
    }
    let good = json!({"name": "deploy", "components": ["shop"], "start": "2030-01-07T02:00:00",
        "duration": "30m", "every": "monday", "tz": "Europe/Berlin"});
    let (st, v) = call(addr, "POST", path, &good.to_string(), &[]).await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["start"], "2030-01-07T01:00:00.000Z");
    let at = 1_893_978_000_000; // 2030-01-07T01:00:00Z, a Monday
    assert_eq!(
        s.runtime.calendar().covered("dead", at, at + 60_000),
        60_000
    );
    let (_, list) = call(addr, "GET", path, "", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (st, _) = call(addr, "DELETE", &format!("{path}/{id}"), "", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(s.runtime.calendar().covered("dead", at, at + 60_000), 0);
    let (st, _) = call(addr, "DELETE", &format!("{path}/{id}"), "", &[]).await;
    assert_eq!(st, 404);
    cancel.cancel();
    s.stop().await;
}

async fn cli(args: &[&str]) -> (bool, String, String) {
    cli_with_password(args, None).await
}

/// Runs the binary with `args`, WATCHFIRE_PASSWORD set to `password` (unset when none).
async fn cli_with_password(args: &[&str], password: Option<&str>) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args);
    match password {
        Some(p) => cmd.env("WATCHFIRE_PASSWORD", p),
        None => cmd.env_remove("WATCHFIRE_PASSWORD"),
    };
    let out = tokio::time::timeout(LIMIT, cmd.output())
        .await
        .expect("the command ends in time")
        .expect("the command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_drives_incidents_and_maintenance_on_a_served_instance() {
    let (s, cancel) = served().await;
    let url = format!("http://{}", s.addr());
    let id = opened(s.addr()).await.to_string();
    let u = ["--url", url.as_str()];
    let (ok, out, err) = cli(&[&["incident"], &u[..], &["list"]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("#{id}")) && out.contains("shop is down"),
        "{out}"
    );
    let (ok, out, err) = cli(&[&["incident"], &u[..], &["show", &id]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("Detected: dead is down") && out.contains("timeline"),
        "{out}"
    );
    let upd = [
        "update",
        &id,
        "--status",
        "monitoring",
        "--message",
        "Watching",
    ];
    let (ok, out, err) = cli(&[&["incident"], &u[..], &upd[..]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("[monitoring") && out.contains("Watching"),
        "{out}"
    );
    let (ok, out, err) = cli(&[&["incident", "--json"], &u[..], &["resolve", &id]].concat()).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["status"], "resolved");
    let (ok, _, err) = cli(&[&["incident"], &u[..], &["show", "999"]].concat()).await;
    assert!(!ok && err.contains("404") && err.contains("999"), "{err}");
    let decl = [
        "declare",
        "--component",
        "shop",
        "--title",
        "Planned",
        "--message",
        "m",
    ];
    let (ok, out, err) = cli(&[&["incident"], &u[..], &decl[..]].concat()).await;
    assert!(ok && out.contains("Planned"), "{out}{err}");

    let add = [
        "add",
        "--name",
        "nightly",
        "--start",
        "2030-01-01T03:00:00",
        "--duration",
        "1h",
        "--every",
        "day",
        "--tz",
        "America/New_York",
        "--component",
        "shop",
    ];
    let (ok, out, err) = cli(&[&["maintenance"], &u[..], &add[..]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("nightly") && out.contains("America/New_York"),
        "{out}"
    );
    let (ok, out, _) = cli(&[&["maintenance", "--json"], &u[..], &["list"]].concat()).await;
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert!(ok);
    let mid = v[0]["id"].as_i64().unwrap().to_string();
    let (ok, out, _) = cli(&[&["maintenance"], &u[..], &["delete", &mid]].concat()).await;
    assert!(ok && out.contains("deleted"), "{out}");
    let bad = [
        "add",
        "--name",
        "x",
        "--start",
        "2030-01-01T03:00:00",
        "--duration",
        "1h",
        "--tz",
        "Mars/Base",
    ];
    let (ok, _, err) = cli(&[&["maintenance"], &u[..], &bad[..]].concat()).await;
    assert!(!ok && err.contains("Mars/Base"), "{err}");
    cancel.cancel();
    s.stop().await;
}

const TARGETS: &str =
    "targets:\n  - name: web\n    url: http://127.0.0.1:1/\n    labels: { component: shop }\n";

#[test]
fn config_sections_load_and_build_a_calendar() {
    let text = format!(
        "{TARGETS}incidents:\n  slo: 99.5\n  slo_window: 7d\n  request_rate: 3\n\
         maintenance:\n  - name: nightly\n    components: [shop]\n    start: 2026-03-27T03:00:00\n    \
         duration: 30m\n    every: day\n    tz: Europe/Berlin\n"
    );
    let c = load_str("m.yaml", &text).expect("loads");
    assert_eq!(c.incidents.slo, 99.5);
    assert_eq!(c.incidents.slo_window.as_secs(), 7 * 86_400);
    assert_eq!(c.incidents.request_rate, Some(3.0));
    assert_eq!(c.maintenance.len(), 1);
    let cal = Calendar::build(&c.maintenance, &[], c.components());
    // The target is covered through its component label.
    let at = "2026-03-29T01:10:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond();
    assert_eq!(cal.covered("web", at, at + 60_000), 60_000);
}

#[test]
fn bad_config_sections_name_file_line_and_field() {
    let text = format!(
        "{TARGETS}incidents:\n  slo: 100\n  slo_window: soon\n\
         maintenance:\n  - name: bad\n    components: [nope]\n    start: 2026-03-27T03:00:00\n    \
         end: 2026-03-27T02:00:00\n    tz: Nowhere/City\n    every: fortnight\n"
    );
    let errs = load_str("m.yaml", &text).expect_err("refused").0;
    let find = |f: &str| {
        errs.iter()
            .find(|e| e.field == f)
            .unwrap_or_else(|| panic!("no error on {f}: {errs:?}"))
    };
    assert_eq!(find("incidents.slo").line, 6);
    assert_eq!(find("incidents.slo_window").line, 7);
    assert_eq!(find("maintenance[0].components[0]").line, 10);
    assert!(find("maintenance[0].components[0]")
        .message
        .contains("nope"));
    assert_eq!(find("maintenance[0].tz").line, 13);
    assert_eq!(find("maintenance[0].every").line, 14);
    assert!(errs.iter().all(|e| e.file.ends_with("m.yaml")));
}

#[tokio::test]
async fn a_real_failover_is_written_on_the_groups_incident_and_recovery_resolves_it() {
    use watchfire::sim::{FaultConfig, Sim};
    let local = "127.0.0.1:0".parse().unwrap();
    let primary = Sim::start(local, FaultConfig::default())
        .await
        .expect("sim");
    let backup = Sim::start(local, FaultConfig::default())
        .await
        .expect("sim");
    let yaml = format!(
        "failover:
  - name: gw
    instances: [http://{}, http://{}]
    check: {{ path: /health, interval: 50ms, timeout: 40ms }}
    down_after: 2
    up_after: 1
    hold: 0s
",
        primary.local_addr(),
        backup.local_addr()
    );
    let s = Served::start(&yaml, ServeOptions::default(), 1).await;
    let cancel = CancellationToken::new();
    let g = s.runtime.failover_group("gw").expect("group");
    eventually(LIMIT, "the primary active", || async {
        (g.active() == Some(0)).then_some(())
    })
    .await;
    watchfire::runtime::incidents::start(s.runtime.clone(), cancel.clone())
        .await
        .expect("incidents start");
    primary.go_down();
    let addr = s.addr();
    let id = opened(addr).await;
    let moved = format!("Traffic moved to http://{}", backup.local_addr());
    let path = format!("/api/v1/incidents/{id}");
    eventually(LIMIT, "the switch on the timeline", || {
        let (path, moved) = (path.clone(), moved.clone());
        async move {
            let (_, v) = call(addr, "GET", &path, "", &[]).await;
            let t = v["updates"].as_array()?.clone();
            t.iter()
                .any(|u| u["message"].as_str().unwrap_or("").starts_with(&moved))
                .then_some(())
        }
    })
    .await;
    primary.heal();
    let v = eventually(LIMIT, "the incident resolved", || {
        let path = path.clone();
        async move {
            let (_, v) = call(addr, "GET", &path, "", &[]).await;
            (v["status"] == "resolved").then_some(v)
        }
    })
    .await;
    assert_eq!(v["component"], "gw");
    assert_eq!(v["targets"], json!(["gw/0"]));
    let last = v["updates"].as_array().unwrap().last().unwrap()["message"].clone();
    assert!(
        last.as_str().unwrap().starts_with("Recovered after"),
        "{last}"
    );
    assert!(v["figures"]["duration_seconds"].as_f64().unwrap() > 0.0);
    cancel.cancel();
    s.stop().await;
    primary.shutdown().await;
    backup.shutdown().await;
}

/// Declares an incident on `shop` through the API; its id.
async fn declared(addr: SocketAddr, title: &str) -> i64 {
    let body = json!({"component": "shop", "title": title, "message": "Looking"});
    let (st, v) = call(addr, "POST", "/api/v1/incidents", &body.to_string(), &[]).await;
    assert_eq!(st, 201, "{v}");
    v["id"].as_i64().expect("an id")
}

#[tokio::test]
async fn api_ack_is_recorded_once_and_refused_for_unknown_resolved_and_foreign_requests() {
    let (s, cancel) = served().await;
    let addr = s.addr();
    let id = declared(addr, "Checkout down").await;
    let path = format!("/api/v1/incidents/{id}/ack");
    let body = json!({"by": "alice", "message": "on it"}).to_string();
    let (st, v) = call(addr, "POST", &path, &body, &[]).await;
    assert_eq!(st, 200, "{v}");
    let first = v["acknowledged"]
        .as_str()
        .expect("acknowledged")
        .to_string();
    assert_eq!(v["updates"][1]["message"], "Acknowledged by alice: on it");
    // Twice: the same answer, nothing added; an empty body is `{}`.
    let (st, v) = call(addr, "POST", &path, "", &[]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["acknowledged"], first.as_str());
    assert_eq!(v["updates"].as_array().unwrap().len(), 2);

    let (st, v) = call(addr, "POST", "/api/v1/incidents/4242/ack", "{}", &[]).await;
    assert_eq!(st, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4242"), "{v}");
    let (st, v) = call(addr, "POST", &path, "{\"who\": \"x\"}", &[]).await;
    assert_eq!(st, 400, "unknown field: {v}");
    let (st, _) = call(addr, "GET", &path, "", &[]).await;
    assert_eq!(st, 405);

    let other = declared(addr, "Search down").await;
    let opath = format!("/api/v1/incidents/{other}/ack");
    let foreign = [("origin", "http://evil.example")];
    let (st, _) = call(addr, "POST", &opath, "{}", &foreign).await;
    assert_eq!(st, 403, "no intent, no acknowledgement");
    let (_, v) = call(addr, "GET", &format!("/api/v1/incidents/{other}"), "", &[]).await;
    assert_eq!(v["acknowledged"], Value::Null);

    let done = json!({"status": "resolved", "message": "Fixed"}).to_string();
    let upath = format!("/api/v1/incidents/{other}/updates");
    let (st, v) = call(addr, "POST", &upath, &done, &[]).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(addr, "POST", &opath, "{}", &[]).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("resolved already"),
        "{v}"
    );
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn cli_acks_and_records_root_cause_and_resolution() {
    let (s, cancel) = served().await;
    let url = format!("http://{}", s.addr());
    let id = declared(s.addr(), "Checkout down").await.to_string();
    let u = ["--url", url.as_str()];
    let ack = ["ack", &id, "--by", "alice", "--message", "looking"];
    let (ok, out, err) = cli(&[&["incident"], &u[..], &ack[..]].concat()).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("acknowledged:") && out.contains("Acknowledged by alice: looking"),
        "{out}"
    );
    let (ok, _, err) = cli(&[&["incident"], &u[..], &ack[..]].concat()).await;
    assert!(ok, "a second acknowledgement is no error: {err}");
    let (ok, _, err) = cli(&[&["incident"], &u[..], &["ack", "999"]].concat()).await;
    assert!(!ok && err.contains("404") && err.contains("999"), "{err}");

    let upd = [
        "update",
        &id,
        "--status",
        "identified",
        "--message",
        "Found it",
        "--root-cause",
        "OOM kill of the primary",
    ];
    let (ok, out, err) = cli(&[&["incident"], &u[..], &upd[..]].concat()).await;
    assert!(ok, "{err}");
    assert!(out.contains("root cause: OOM kill of the primary"), "{out}");
    let res = ["resolve", &id, "--resolution", "Memory limit raised"];
    let (ok, out, err) = cli(&[&["incident", "--json"], &u[..], &res[..]].concat()).await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["status"], "resolved");
    assert_eq!(v["root_cause"], "OOM kill of the primary");
    assert_eq!(v["resolution"], "Memory limit raised");
    let (ok, _, err) = cli(&[&["incident"], &u[..], &["ack", &id]].concat()).await;
    assert!(!ok && err.contains("resolved already"), "{err}");
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn ack_and_updates_need_credentials_like_the_other_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web.yml");
    let hash = served::bcrypt_hash("s3cret");
    std::fs::write(&web, format!("basic_auth_users:\n  ops: {hash}\n")).expect("write");
    let opts = ServeOptions {
        web: served::web_source(&web),
        ..ServeOptions::default()
    };
    let (s, cancel) = served_with(opts).await;
    let addr = s.addr();
    let url = format!("http://{addr}");
    let (st, _) = call(addr, "POST", "/api/v1/incidents/1/ack", "{}", &[]).await;
    assert_eq!(st, 401);
    let decl = [
        "incident",
        "--json",
        "--url",
        &url,
        "--web.user",
        "ops",
        "declare",
        "--component",
        "shop",
        "--title",
        "Down",
        "--message",
        "m",
    ];
    let (ok, out, err) = cli_with_password(&decl, Some("s3cret")).await;
    assert!(ok, "{err}");
    let id = serde_json::from_str::<Value>(&out).expect("JSON")["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let ack = ["incident", "--url", &url, "--web.user", "ops", "ack", &id];
    let (ok, _, err) = cli_with_password(&ack, Some("wrong")).await;
    assert!(!ok && err.contains("401"), "{err}");
    let (ok, out, err) = cli_with_password(&ack, Some("s3cret")).await;
    assert!(ok && out.contains("acknowledged:"), "{out}{err}");
    let (ok, _, err) = cli(&ack).await;
    assert!(!ok && err.contains("401"), "no password: {err}");
    cancel.cancel();
    s.stop().await;
}

#[tokio::test]
async fn verify_posts_its_verdict_on_the_incident() {
    let (s, cancel) = served().await;
    let url = format!("http://{}", s.addr());
    let id = declared(s.addr(), "Checkout down").await.to_string();
    // The served instance's own health endpoint: up, so the verdict is PASS.
    let target = format!("{url}/-/healthy");
    let verify = |incident: &str| {
        [
            "verify",
            "--target",
            &target,
            "--for",
            "1s",
            "--interval",
            "50ms",
            "--min-probes",
            "3",
            "--incident",
            incident,
            "--url",
            &url,
        ]
        .map(str::to_string)
    };
    let args = verify("999");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cli(&args).await;
    assert!(
        !ok && err.contains("--incident 999") && err.contains("404"),
        "{out}{err}"
    );
    assert!(!out.contains("PASS"), "no window ran: {out}");

    let args = verify(&id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cli(&args).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&format!("verdict posted on incident {id} (now monitoring)")),
        "{out}"
    );
    let (_, v) = call(s.addr(), "GET", &format!("/api/v1/incidents/{id}"), "", &[]).await;
    assert_eq!(v["status"], "monitoring");
    let last = v["updates"].as_array().unwrap().last().unwrap().clone();
    let msg = last["message"].as_str().unwrap();
    assert!(msg.starts_with("verify: PASS — "), "{msg}");
    assert!(msg.contains("1 target,"), "{msg}");
    assert_eq!(last["automatic"], false);
    cancel.cancel();
    s.stop().await;
}
