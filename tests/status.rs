//! The status page through the real server: `/status` and the incident page, Statuspage's JSON
//! documents, the Atom feed and the badges, read-only, behind the web config's users like every
//! other route; a config naming unknown targets refused.

mod common;
#[path = "common/served.rs"]
mod served;
#[path = "common/status_fixture.rs"]
mod status_fixture;

use std::time::Duration;

use served::{bcrypt_hash, send, web_source, Served};
use status_fixture::{fill, OPEN_TITLE, WINDOW, YAML};
use watchfire::server::ServeOptions;
use watchfire::store::now_millis;

const LIMIT: Duration = Duration::from_secs(10);

async fn served() -> (Served, i64) {
    let s = Served::start(YAML, ServeOptions::default(), 1).await;
    let open = fill(&s.runtime, now_millis()).await;
    (s, open)
}

async fn get_ok(s: &Served, path: &str) -> served::Answer {
    let a = send(s.addr(), "GET", path, &[], LIMIT).await.expect(path);
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a
}

fn content_type(a: &served::Answer) -> &str {
    a.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn status_page_shows_components_bars_incident_and_maintenance() {
    let (s, open) = served().await;
    let a = get_ok(&s, "/status").await;
    assert!(content_type(&a).starts_with("text/html"));
    let page = &a.body;
    assert!(page.contains("Acme status") && page.contains("Everything Acme runs"));
    // Two components and their group, 90 bars each.
    assert_eq!(page.matches("<li class=\"b ").count(), 3 * 90);
    assert!(page.contains(OPEN_TITLE) && page.contains("A bad deploy; rolling back"));
    assert!(page.contains("Maintenance in progress") && page.contains(WINDOW));
    assert!(page.contains("Database slow"), "past incident listed");
    assert!(page.contains(&format!("status/incidents/{open}")));
    assert!(!page.contains("<script"), "no script");

    let one = get_ok(&s, &format!("/status/incidents/{open}")).await;
    assert!(one.body.contains(OPEN_TITLE) && one.body.contains("Timeline"));
    let missing = send(s.addr(), "GET", "/status/incidents/99999", &[], LIMIT)
        .await
        .expect("answer");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("no incident with id 99999"));
    let bad = send(s.addr(), "GET", "/status/incidents/x", &[], LIMIT)
        .await
        .expect("answer");
    assert_eq!(bad.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn statuspage_json_documents() {
    let (s, open) = served().await;
    let j =
        |a: &served::Answer| -> serde_json::Value { serde_json::from_str(&a.body).expect("JSON") };
    let summary = j(&get_ok(&s, "/api/v2/summary.json").await);
    assert_eq!(summary["page"]["name"], "Acme status");
    let comps = summary["components"].as_array().expect("components");
    assert_eq!(comps.len(), 3);
    let db = comps.iter().find(|c| c["name"] == "Database").expect("db");
    assert_eq!(db["status"], "under_maintenance");
    assert_eq!(db["group_id"], "Backend");
    let api = comps.iter().find(|c| c["name"] == "API").expect("api");
    assert_eq!(api["status"], "partial_outage", "open major incident");
    let group = comps
        .iter()
        .find(|c| c["name"] == "Backend")
        .expect("group");
    assert_eq!(group["group"], true);
    assert_eq!(group["components"], serde_json::json!(["API", "Database"]));
    assert_eq!(summary["incidents"].as_array().map(Vec::len), Some(1));
    assert_eq!(summary["incidents"][0]["id"], open.to_string());
    assert_eq!(
        summary["incidents"][0]["incident_updates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        summary["scheduled_maintenances"][0]["status"],
        "in_progress"
    );
    assert_eq!(summary["status"]["indicator"], "major");

    let status = j(&get_ok(&s, "/api/v2/status.json").await);
    assert_eq!(status["status"]["indicator"], "major");
    assert_eq!(status["status"]["description"], "Partial System Outage");
    let all = j(&get_ok(&s, "/api/v2/incidents.json").await);
    assert_eq!(all["incidents"].as_array().map(Vec::len), Some(2));
    let open_only = j(&get_ok(&s, "/api/v2/incidents/unresolved.json").await);
    assert_eq!(open_only["incidents"].as_array().map(Vec::len), Some(1));
    let comps = j(&get_ok(&s, "/api/v2/components.json").await);
    assert_eq!(comps["components"].as_array().map(Vec::len), Some(3));
    let maint = j(&get_ok(&s, "/api/v2/scheduled-maintenances.json").await);
    assert_eq!(maint["scheduled_maintenances"][0]["name"], WINDOW);
    let active = j(&get_ok(&s, "/api/v2/scheduled-maintenances/active.json").await);
    assert_eq!(
        active["scheduled_maintenances"].as_array().map(Vec::len),
        Some(1)
    );
    let upcoming = j(&get_ok(&s, "/api/v2/scheduled-maintenances/upcoming.json").await);
    assert_eq!(
        upcoming["scheduled_maintenances"].as_array().map(Vec::len),
        Some(0)
    );
    let nope = send(s.addr(), "GET", "/api/v2/nope.json", &[], LIMIT)
        .await
        .expect("answer");
    assert_eq!(nope.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn feed_and_badges_are_well_formed_xml() {
    let (s, _) = served().await;
    let feed = get_ok(&s, "/status/feed.atom").await;
    assert!(content_type(&feed).starts_with("application/atom+xml"));
    let doc = roxmltree::Document::parse(&feed.body).expect("Atom parses");
    let entries = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("entry"))
        .count();
    assert_eq!(entries, 3, "two incidents and the window");

    for path in [
        "/badge/API/status.svg",
        "/badge/API/uptime/24h.svg",
        "/badge/API/uptime/7d.svg",
        "/badge/API/uptime/30d.svg",
        "/badge/API/uptime/90d.svg",
        "/badge/Backend/uptime/90d.svg",
        "/badge/Database/status.svg",
    ] {
        let a = get_ok(&s, path).await;
        assert!(content_type(&a).starts_with("image/svg+xml"), "{path}");
        let svg = roxmltree::Document::parse(&a.body).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(svg.root_element().tag_name().name(), "svg");
    }
    // API: 10 min down three days ago and 90 min ten days ago, over 29 whole days and today.
    let a = get_ok(&s, "/badge/API/uptime/30d.svg").await;
    assert!(a.body.contains("uptime 30d"), "{}", a.body);
    let db = get_ok(&s, "/badge/Database/status.svg").await;
    assert!(db.body.contains("under maintenance"));

    let shields: serde_json::Value =
        serde_json::from_str(&get_ok(&s, "/badge/API/shields.json").await.body).expect("JSON");
    assert_eq!(shields["schemaVersion"], 1);
    assert_eq!(shields["label"], "API");
    assert_eq!(shields["message"], "partial outage");
    assert_eq!(shields["color"], "orange");

    for path in [
        "/badge/Nope/status.svg",
        "/badge/Nope/uptime/30d.svg",
        "/badge/API/uptime/1y.svg",
        "/badge/API/other.svg",
    ] {
        let a = send(s.addr(), "GET", path, &[], LIMIT).await.expect(path);
        assert_eq!(a.status, 404, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn routes_are_read_only_and_head_has_no_body() {
    let (s, _) = served().await;
    for path in ["/status", "/api/v2/summary.json", "/badge/API/status.svg"] {
        let a = send(s.addr(), "POST", path, &[], LIMIT).await.expect(path);
        assert_eq!(a.status, 405, "{path}");
        assert_eq!(
            a.headers.get("allow").map(|v| v.as_bytes()),
            Some(&b"GET"[..])
        );
    }
    let head = send(s.addr(), "HEAD", "/status", &[], LIMIT)
        .await
        .expect("HEAD");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The exporter's landing page is unchanged.
    let landing = get_ok(&s, "/").await;
    assert!(!landing.body.contains("Acme status"));
    s.stop().await;
}

#[tokio::test]
async fn status_routes_need_the_web_configs_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web.yml");
    let yml = format!("basic_auth_users:\n  alice: {}\n", bcrypt_hash("secret"));
    std::fs::write(&web, yml).expect("write");
    let opts = ServeOptions {
        web: web_source(&web),
        ..ServeOptions::default()
    };
    let s = Served::start(YAML, opts, 1).await;
    for path in ["/status", "/api/v2/status.json", "/badge/API/status.svg"] {
        let a = send(s.addr(), "GET", path, &[], LIMIT).await.expect(path);
        assert_eq!(a.status, 401, "{path}");
    }
    // alice:secret
    let auth = [("authorization", "Basic YWxpY2U6c2VjcmV0")];
    let a = send(s.addr(), "GET", "/status", &auth, LIMIT)
        .await
        .expect("with auth");
    assert_eq!(a.status, 200);
    s.stop().await;
}

#[test]
fn status_page_naming_unknown_targets_is_refused_with_file_line_and_field() {
    let yaml = YAML.replace("targets: [db]", "targets: [dbx]");
    let e = watchfire::config::load_str("probes.yaml", &yaml).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("probes.yaml:16:17")
            && text.contains("status_page.components[1].targets[0]")
            && text.contains("no target named `dbx`"),
        "{text}"
    );
}
