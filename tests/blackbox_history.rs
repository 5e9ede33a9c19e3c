//! blackbox_exporter's recent-probe history: `/` lists the last `/probe` results newest first
//! (HTML-escaped), `/logs?id=N` shows one probe's debug output, `--history.limit` bounds them.

mod common;
#[path = "common/blackbox.rs"]
mod harness;

use harness::{enc, get, Reply, Watchfire};

const YAML: &str = "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 2s\n";

/// watchfire serving [`YAML`] and a loopback listener a tcp probe connects to.
async fn setup() -> (tempfile::TempDir, Watchfire, std::net::TcpListener) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, YAML).expect("write config");
    let wf = Watchfire::start(&path).await;
    // Every line of each probe's log (`--log.prober=debug`): the history shows them.
    wf.runtime
        .blackbox()
        .set_log_level(watchfire::probers::Level::Debug);
    // Connections complete in the kernel's backlog: nobody needs to accept them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    (dir, wf, listener)
}

async fn probe(wf: &Watchfire, target: &str, extra: &str) -> Reply {
    let r = get(
        wf.addr,
        &format!("/probe?module=tcp_connect&target={}{extra}", enc(target)),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

/// The `(id, module, target cell, result cell)` of each row of `/`, in page order.
fn rows(page: &str) -> Vec<(i64, String, String, String)> {
    page.split("<tr><td>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split("</td><td>").collect();
            let id = row
                .split("logs?id=")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a logs link in {row}"));
            (
                id,
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn recent_probes_are_listed_newest_first_escaped_with_their_logs() {
    let (_d, wf, listener) = setup().await;
    let up = listener.local_addr().expect("addr").to_string();
    probe(&wf, &up, "").await;
    // Not a host:port: the probe fails, and the page must not run the markup.
    probe(&wf, "<script>alert(1)</script>", "").await;
    probe(&wf, &up, "&debug=true").await;
    // Answered 400, nothing probed: not in the history.
    let r = get(wf.addr, "/probe?module=nope&target=x", &[]).await;
    assert_eq!(r.status, 400);
    let r = get(wf.addr, "/probe?module=tcp_connect", &[]).await;
    assert_eq!(r.status, 400);

    let page = get(wf.addr, "/", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    assert!(
        page.body.contains("<a href=\"metrics\">Metrics</a>")
            && page.body.contains("<a href=\"config\">Configuration</a>")
            && page.body.contains("<h2>Recent Probes</h2>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>"), "{}", page.body);
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;".to_string();
    let ok = "Success".to_string();
    let failed = "<strong>Failure</strong>".to_string();
    let module = "tcp_connect".to_string();
    assert_eq!(
        rows(&page.body),
        [
            (2, module.clone(), up.clone(), ok.clone()),
            (1, module.clone(), escaped, failed),
            (0, module.clone(), up.clone(), ok),
        ]
    );

    // Each probe's debug output, as debug=true shows it.
    let logs = get(wf.addr, "/logs?id=1", &[]).await;
    assert_eq!(logs.status, 200);
    assert!(logs.content_type.starts_with("text/plain"), "{logs:?}");
    let b = &logs.body;
    assert!(b.starts_with("Logs for the probe:\n"), "{b}");
    assert!(
        b.contains("Beginning probe module=tcp_connect target=<script>"),
        "{b}"
    );
    assert!(b.contains("\nprobe_success 0\n"), "{b}");
    assert!(b.contains("Module configuration:\nprober: tcp\n"), "{b}");
    let logs = get(wf.addr, "/logs?id=0", &[]).await;
    assert!(logs.body.contains("\nprobe_success 1\n"), "{}", logs.body);
    // The newest probe of a target, as upstream's /logs?target= answers.
    let newest = get(wf.addr, &format!("/logs?target={}", enc(&up)), &[]).await;
    assert_eq!(newest.status, 200);
    let id2 = get(wf.addr, "/logs?id=2", &[]).await;
    assert_eq!(newest.body, id2.body);
    let missing = get(wf.addr, "/logs?id=3", &[]).await;
    assert_eq!(
        (missing.status, missing.body.trim()),
        (404, "Probe id not found")
    );
    let bad = get(wf.addr, "/logs?id=abc", &[]).await;
    assert_eq!(bad.status, 400);
    let none = get(wf.addr, "/logs", &[]).await;
    assert_eq!(none.status, 400);
    let r = reqwest::Client::new()
        .post(format!("http://{}/", wf.addr))
        .send()
        .await
        .expect("POST /");
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn history_limit_keeps_the_last_probes_and_older_failures() {
    let (_d, wf, listener) = setup().await;
    let up = listener.local_addr().expect("addr").to_string();
    wf.runtime.blackbox().history().set_limit(2);
    // A closed port: refused at once.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    probe(&wf, &down, "").await; // 0: failure
    for _ in 0..4 {
        probe(&wf, &up, "").await; // 1..=4: successes
    }
    let page = get(wf.addr, "/", &[]).await;
    let listed: Vec<(i64, String)> = rows(&page.body)
        .into_iter()
        .map(|(id, _, target, _)| (id, target))
        .collect();
    assert_eq!(
        listed,
        [(4, up.clone()), (3, up.clone()), (0, down.clone())],
        "the last 2, then the failure that fell out of them"
    );
    for gone in [1, 2] {
        assert_eq!(
            get(wf.addr, &format!("/logs?id={gone}"), &[]).await.status,
            404
        );
    }
    assert_eq!(get(wf.addr, "/logs?id=0", &[]).await.status, 200);

    wf.runtime.blackbox().history().set_limit(0);
    probe(&wf, &up, "").await;
    let page = get(wf.addr, "/", &[]).await;
    assert!(
        page.body.contains("--history.limit=0"),
        "the page says nothing new is kept:\n{}",
        page.body
    );
}

#[test]
fn history_limit_flag_takes_blackbox_spelling() {
    let limit = |args: &[&str]| common::run_args(args).map(|a| a.history_limit);
    assert_eq!(limit(&[]).expect("default"), 100);
    assert_eq!(limit(&["--history.limit=5"]).expect("blackbox's name"), 5);
    assert_eq!(
        limit(&["--history-limit", "0"]).expect("watchfire's name"),
        0
    );
    assert!(limit(&["--history.limit=100001"]).is_err(), "bounded");
    assert!(limit(&["--history.limit=-1"]).is_err());
}
