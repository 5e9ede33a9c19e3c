//! The unix prober against in-test servers on unix sockets (plain and TLS), each probe through
//! `endpoint::run` with its module loaded from a blackbox.yml: the verdict, its reason and the
//! families blackbox_exporter 0.28 reports for unix.

use super::tcp_tests::via_endpoint;
use super::*;
use watchfire::blackbox::config::Prober;
use watchfire::blackbox::endpoint::{check_target, Probed};

/// The PING / PONG module of upstream's example.
const PING: &str = "prober: unix
unix:
  query_response:
    - send: PING
    - expect: PONG";

/// The rendered families and log of a probe, for failure messages.
fn shown(p: &Probed) -> String {
    let mut s = String::new();
    p.families().render(&mut s);
    format!("{:?}\n{s}--- log:\n{}", p.result, p.log.lines().join("\n"))
}

/// The family names a probe reports, sorted.
fn family_names(p: &Probed) -> Vec<String> {
    let out = p.families();
    let mut n: Vec<String> = out.names().into_iter().map(String::from).collect();
    n.sort_unstable();
    n
}

/// Asserts that the probe failed with `want` before the connection was up: then, as upstream,
/// only `probe_success` and `probe_duration_seconds` are reported.
#[track_caller]
fn assert_failed_before_dialing(p: &Probed, want: Reason) {
    assert_eq!(reason(&p.result), Some(want), "{}", shown(p));
    assert_eq!(
        family_names(p),
        ["probe_duration_seconds", "probe_success"],
        "{}",
        shown(p)
    );
}

#[tokio::test]
async fn unix_query_response_succeeds() {
    let server = srv::unix_ping(None).await;
    let p = via_endpoint(PING, &server.target(), T).await;
    assert!(p.ok(), "{}", shown(&p));
    let out = p.families();
    assert_eq!(out.value("probe_success"), Some(1.0));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    assert_eq!(out.value("probe_failed_due_to_bytes"), Some(0.0));
    assert_eq!(
        family_names(&p),
        [
            "probe_duration_seconds",
            "probe_failed_due_to_bytes",
            "probe_failed_due_to_regex",
            "probe_success"
        ]
    );
    assert!(p.facts.phases().connect > Duration::ZERO, "{}", shown(&p));
}

#[tokio::test]
async fn unix_binary_send_and_expect_bytes() {
    // An SSLRequest (not UTF-8) and its one-byte answer.
    let server = srv::unix_server(|mut s| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut got = [0u8; 9];
        if s.read_exact(&mut got).await.is_ok() && got == *b"\0\0\0\x08\x04\xd2\x16\x2f\n" {
            let _ = s.write_all(b"N").await;
        }
        let mut sink = [0u8; 64];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let options = "prober: unix
unix:
  query_response:
    - send: !!binary AAAACATSFi8=
    - expect_bytes: N";
    let p = via_endpoint(options, &server.target(), T).await;
    assert!(p.ok(), "{}", shown(&p));
    assert_eq!(p.families().value("probe_failed_due_to_bytes"), Some(0.0));
}

#[tokio::test]
async fn unix_tls_with_a_trusted_certificate_succeeds() {
    let cert = srv::self_signed(&[]);
    let server = srv::unix_ping(Some(&cert)).await;
    let options = format!(
        "{PING}\n  tls: true\n  tls_config:\n    server_name: localhost\n    ca_file: {}",
        cert.ca_file.path().display()
    );
    let p = via_endpoint(&options, &server.target(), T).await;
    assert!(p.ok(), "{}", shown(&p));
    let out = p.families();
    assert!(out.value("probe_ssl_earliest_cert_expiry").unwrap_or(0.0) > 0.0);
    assert!(
        out.value("probe_ssl_last_chain_expiry_timestamp_seconds")
            .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(
        out.value_with("probe_tls_version_info", &[("version", "TLS 1.3")]),
        Some(1.0),
        "{}",
        shown(&p)
    );
    assert!(out.names().contains(&"probe_ssl_last_chain_info"));
    assert!(p.facts.phases().tls > Duration::ZERO);
}

#[tokio::test]
async fn unix_tls_with_an_untrusted_certificate_is_tls() {
    let cert = srv::self_signed(&[]);
    let server = srv::unix_ping(Some(&cert)).await;
    let options = format!("{PING}\n  tls: true\n  tls_config:\n    server_name: localhost");
    let p = via_endpoint(&options, &server.target(), T).await;
    assert_failed_before_dialing(&p, Reason::Tls);
}

#[tokio::test]
async fn unix_tls_with_insecure_skip_verify_succeeds_without_a_server_name() {
    let cert = srv::self_signed(&[]);
    let server = srv::unix_ping(Some(&cert)).await;
    let options = format!("{PING}\n  tls: true\n  tls_config:\n    insecure_skip_verify: true");
    let p = via_endpoint(&options, &server.target(), T).await;
    assert!(p.ok(), "{}", shown(&p));
    // Nothing was verified: the last chain's expiry is Go's zero time, as blackbox reports it.
    let out = p.families();
    assert!(
        out.value("probe_ssl_last_chain_expiry_timestamp_seconds")
            .unwrap_or(0.0)
            < 0.0
    );
}

#[tokio::test]
async fn unix_tls_that_cannot_verify_a_path_is_setup() {
    let cert = srv::self_signed(&[]);
    let server = srv::unix_ping(Some(&cert)).await;
    let options = format!("{PING}\n  tls: true");
    let p = via_endpoint(&options, &server.target(), T).await;
    assert_failed_before_dialing(&p, Reason::Setup);
    let f = p.result.as_ref().unwrap_err();
    assert!(f.detail.contains("server_name"), "{}", f.detail);
}

#[tokio::test]
async fn unix_path_that_does_not_exist_is_connect() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("nothing-here.sock");
    let target = path.to_string_lossy().into_owned();
    let p = via_endpoint(PING, &target, T).await;
    assert_failed_before_dialing(&p, Reason::Connect);
    let f = p.result.as_ref().unwrap_err();
    assert!(f.detail.contains(&target), "{}", f.detail);
}

#[tokio::test]
async fn unix_socket_nobody_listens_on_is_refused() {
    let (_dir, target) = srv::stale_unix_socket();
    let p = via_endpoint(PING, &target, T).await;
    assert_failed_before_dialing(&p, Reason::Refused);
}

#[tokio::test]
async fn unix_expect_that_no_line_matches_is_expect_mismatch() {
    // Reads the PING (so that closing sends no reset), answers something else and closes.
    let server = srv::unix_server(|s| async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut r = tokio::io::BufReader::new(s);
        let mut line = String::new();
        let _ = r.read_line(&mut line).await;
        let _ = r.get_mut().write_all(b"hello\nnot the answer\n").await;
        let _ = r.get_mut().shutdown().await;
    })
    .await;
    let p = via_endpoint(PING, &server.target(), T).await;
    assert_eq!(
        reason(&p.result),
        Some(Reason::ExpectMismatch),
        "{}",
        shown(&p)
    );
    let out = p.families();
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(1.0));
    assert_eq!(out.value("probe_failed_due_to_bytes"), Some(0.0));
}

#[tokio::test]
async fn unix_server_that_never_answers_is_a_timeout() {
    let server = srv::unix_server(|mut s| async move {
        use tokio::io::AsyncReadExt;
        let mut sink = [0u8; 64];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let short = Duration::from_millis(300);
    let p = via_endpoint(PING, &server.target(), short).await;
    assert_eq!(reason(&p.result), Some(Reason::Timeout), "{}", shown(&p));
    assert_eq!(p.families().value("probe_failed_due_to_regex"), Some(0.0));
}

#[tokio::test]
async fn unix_relative_target_is_setup() {
    let p = via_endpoint(PING, "relative.sock", T).await;
    assert_failed_before_dialing(&p, Reason::Setup);
}

#[test]
fn unix_targets_are_absolute_paths() {
    assert!(check_target(Prober::Unix, "/run/app.sock").is_ok());
    for bad in ["run/app.sock", "unix:///run/app.sock", "127.0.0.1:80", ""] {
        assert!(check_target(Prober::Unix, bad).is_err(), "{bad}");
    }
}

#[test]
fn unix_module_problems_are_config_errors() {
    for (options, field) in [
        (
            "query_response: [{expect: '('}]",
            "unix.query_response[0].expect",
        ),
        ("query_response: [{sned: x}]", "sned"),
        ("tls_config: {cert_file: /a.pem}", "key_file"),
    ] {
        let text = format!("modules:\n  m:\n    prober: unix\n    unix:\n      {options}\n");
        let e = watchfire::config::load_str("blackbox.yml", &text)
            .err()
            .unwrap_or_else(|| panic!("`{options}` loads"));
        assert!(e.to_string().contains(field), "{options}: {e}");
    }
}
