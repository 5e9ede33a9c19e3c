//! The http prober's failure reasons: each one it can produce, produced against an in-test
//! loopback server through `endpoint::run` (what `/probe` and scheduled targets share) and
//! asserted, with the blackbox families still rendered from the facts.

use super::*;
use watchfire::blackbox::endpoint::{self, Probed};
use watchfire::probe::Reason;
use watchfire::probers::View;

#[path = "../common/blackbox_scenarios.rs"]
#[allow(dead_code)] // the scenario server is shared with tests/blackbox.rs, which uses all of it
mod scenarios;

use scenarios::Scenarios;

/// The module `http:` section `options` (indented under `http:`), loaded as a config would.
fn http_module(options: &str) -> std::sync::Arc<watchfire::blackbox::config::Module> {
    let yaml = format!("modules:\n  m:\n    prober: http\n    http:\n{options}\n");
    let config = watchfire::config::load_str("reasons.yml", &yaml)
        .unwrap_or_else(|e| panic!("module does not load:\n{yaml}\n{e}"));
    config.modules.get("m").expect("module m").clone()
}

async fn run(options: &str, target: &str, timeout: Duration) -> Probed {
    let m = http_module(options);
    endpoint::run(&m, target.to_string(), None, timeout, true).await
}

#[track_caller]
fn assert_reason(p: &Probed, want: Reason) {
    let got = p.result.as_ref().err().map(|f| f.reason);
    assert_eq!(
        got,
        Some(want),
        "result {:?}\nlog:\n{}",
        p.result,
        p.log.lines().join("\n")
    );
    let out = p.families();
    assert_eq!(out.value("probe_success"), Some(0.0));
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A server that answers every connection with bytes that are not HTTP.
async fn garbage() -> srv::Server {
    srv::tcp_server(|mut s| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    })
    .await
}

#[tokio::test]
async fn success_has_no_reason_and_reports_facts() {
    let sc = Scenarios::start().await;
    let p = run("      {}", &format!("http://{}/body/ok", sc.addr), T).await;
    assert!(p.ok(), "{:?}", p.result);
    let out = p.families();
    assert_eq!(out.value("probe_http_status_code"), Some(200.0));
    assert_eq!(out.value("probe_success"), Some(1.0));
    assert_eq!(p.facts.status(), Some(200));
    assert!(p.facts.bytes() > 0);
}

#[tokio::test]
async fn every_http_reason_is_produced() {
    let sc = Scenarios::start().await;
    let base = format!("http://{}", sc.addr);
    let tls = format!("https://localhost:{}", sc.tls_addr.port());
    let cases: Vec<(&str, String, Reason, Duration)> = vec![
        (
            "      {}",
            format!("http://{}/", unresolvable()),
            Reason::Dns,
            T,
        ),
        (
            "      {}",
            format!("http://127.0.0.1:{}/", closed_port()),
            Reason::Refused,
            T,
        ),
        (
            "      {}",
            format!("{base}/slow"),
            Reason::Timeout,
            Duration::from_millis(300),
        ),
        ("      {}", format!("{tls}/body/ok"), Reason::Tls, T),
        ("      {}", format!("{base}/status/503"), Reason::Status, T),
        (
            "      fail_if_header_matches: [{header: X-Version, regexp: '^1\\.'}]",
            format!("{base}/headers"),
            Reason::HeaderMismatch,
            T,
        ),
        (
            "      fail_if_body_matches_regexp: [ERROR]",
            format!("{base}/body/error"),
            Reason::BodyMismatch,
            T,
        ),
        (
            "      fail_if_body_json_not_matches_cel: \"body.status == 'ok'\"",
            format!("{base}/json-bad"),
            Reason::JsonMismatch,
            T,
        ),
        (
            "      fail_if_not_ssl: true",
            format!("{base}/body/ok"),
            Reason::Policy,
            T,
        ),
        (
            "      valid_http_versions: [HTTP/2.0]",
            format!("{base}/body/ok"),
            Reason::Policy,
            T,
        ),
        (
            "      body_size_limit: 1KB",
            format!("{base}/huge"),
            Reason::BodyTooLarge,
            T,
        ),
        (
            "      body_file: /nonexistent/watchfire-body.txt",
            format!("{base}/body/ok"),
            Reason::Setup,
            T,
        ),
    ];
    for (options, target, want, timeout) in cases {
        let p = run(options, &target, timeout).await;
        let got = p.result.as_ref().err().map(|f| f.reason);
        assert_eq!(
            got,
            Some(want),
            "{target} with `{}`: {:?}\nlog:\n{}",
            options.trim(),
            p.result,
            p.log.lines().join("\n")
        );
        assert_eq!(p.families().value("probe_success"), Some(0.0));
    }
}

#[tokio::test]
async fn a_closed_connection_is_reset_and_garbage_is_protocol() {
    let closing = srv::closing().await;
    let p = run("      {}", &format!("http://{}/", closing.addr), T).await;
    assert_reason(&p, Reason::Reset);
    let g = garbage().await;
    let p = run("      {}", &format!("http://{}/", g.addr), T).await;
    assert_reason(&p, Reason::Protocol);
}

#[tokio::test]
async fn failed_checks_keep_blackbox_flags_and_the_first_reason() {
    let sc = Scenarios::start().await;
    // The status fails first; the regexp is then not evaluated, and the flag stays 0.
    let p = run(
        "      fail_if_body_matches_regexp: [ERROR]",
        &format!("http://{}/status/500", sc.addr),
        T,
    )
    .await;
    assert_reason(&p, Reason::Status);
    assert_eq!(p.families().value("probe_failed_due_to_regex"), Some(0.0));
    // A body regexp failure sets the flag.
    let p = run(
        "      fail_if_body_matches_regexp: [ERROR]",
        &format!("http://{}/body/error", sc.addr),
        T,
    )
    .await;
    assert_reason(&p, Reason::BodyMismatch);
    assert_eq!(p.families().value("probe_failed_due_to_regex"), Some(1.0));
    let detail = &p.result.as_ref().unwrap_err().detail;
    assert!(detail.contains("regexp=ERROR"), "{detail}");
}

#[tokio::test]
async fn http_headers_send_values_secrets_and_file_contents() {
    let sc = Scenarios::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("api-key.txt");
    std::fs::write(&key, "from-a-file\n").expect("write key");
    let options = format!(
        "      http_headers:\n        X-Plain: {{values: [one]}}\n        X-Secret: {{secrets: [hush]}}\n        X-API-Key: {{files: ['{}']}}",
        key.display()
    );
    let p = run(&options, &format!("http://{}/body/ok", sc.addr), T).await;
    assert!(p.ok(), "{:?}", p.result);
    let heads = sc.requests.lock().expect("requests").join("\n");
    for want in ["x-plain: one", "x-secret: hush", "x-api-key: from-a-file"] {
        assert!(
            heads.to_ascii_lowercase().contains(want),
            "{want} in:\n{heads}"
        );
    }
    // `/config` shows secrets as `<secret>`, never their value.
    let m = http_module(&options);
    let shown = m.to_yaml();
    assert!(
        shown.contains("<secret>") && !shown.contains("hush"),
        "{shown}"
    );
    // A header file that disappears fails the probe as a local problem.
    std::fs::remove_file(&key).expect("remove key");
    let p = run(&options, &format!("http://{}/body/ok", sc.addr), T).await;
    assert_reason(&p, Reason::Setup);
}
