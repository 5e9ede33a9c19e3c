//! The tcp prober against in-test loopback servers.

use super::*;
use watchfire::blackbox::endpoint::{self, Probed};

// ---------------------------------------------------------------------------------------------
// tcp

#[tokio::test]
async fn tcp_connect_reports_address_metrics() {
    let server = srv::silent().await;
    let (r, out) = run_tcp(&module("{}"), &srv::target(server.addr), T).await;
    assert!(r.is_ok(), "{}", text(&out));
    assert_eq!(
        names(&out),
        [
            "probe_dns_lookup_time_seconds",
            "probe_failed_due_to_regex",
            "probe_ip_addr_hash",
            "probe_ip_protocol",
        ]
    );
    assert_eq!(out.value("probe_ip_protocol"), Some(4.0));
    assert_eq!(out.value("probe_ip_addr_hash"), Some(3_668_918_509.0));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    let p = via_endpoint("prober: tcp", &srv::target(server.addr), T).await;
    assert!(p.ok(), "{:?}", p.result);
    let families = p.families();
    assert_eq!(families.value("probe_success"), Some(1.0));
    assert_eq!(families.value("probe_ip_addr_hash"), Some(3_668_918_509.0));
}

#[tokio::test]
async fn tcp_connect_to_a_closed_port_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let target = format!("127.0.0.1:{port}");
    let (r, out) = run_tcp(&module("{}"), &target, T).await;
    assert_eq!(reason(&r), Some(Reason::Refused), "{}", text(&out));
    assert_eq!(out.value("probe_ip_protocol"), Some(4.0));
    let p = via_endpoint("prober: tcp", &target, T).await;
    assert_eq!(reason(&p.result), Some(Reason::Refused));
}

#[tokio::test]
async fn tcp_and_dns_connect_from_the_source_address() {
    let server = srv::silent().await;
    let target = srv::target(server.addr);
    let (r, out) = run_tcp(&module("source_ip_address: 127.0.0.1"), &target, T).await;
    assert!(r.is_ok(), "{}", text(&out));
    // An IPv6 source cannot reach an IPv4 target.
    let (r, _) = run_tcp(&module("source_ip_address: '::1'"), &target, T).await;
    assert_eq!(reason(&r), Some(Reason::Setup));
    let p = via_endpoint("prober: tcp\ntcp: {source_ip_address: '::1'}", &target, T).await;
    assert_eq!(reason(&p.result), Some(Reason::Setup));
    let dns_server = srv::dns().await;
    let dns_target = srv::target(dns_server.addr);
    for transport in ["udp", "tcp"] {
        let m: DnsModule = module(&format!(
            "query_name: a.test\ntransport_protocol: {transport}\nsource_ip_address: 127.0.0.1"
        ));
        let (ok, out) = run_dns(&m, &dns_target).await;
        assert!(ok.is_ok(), "{transport}\n{}", text(&out));
    }
}

#[tokio::test]
async fn tcp_target_without_port_fails_before_resolving() {
    let (r, out) = run_tcp(&module("{}"), "127.0.0.1", T).await;
    assert_eq!(reason(&r), Some(Reason::Setup));
    assert_eq!(names(&out), ["probe_failed_due_to_regex"]);
    let (r, _) = run_tcp(&module("{}"), "127.0.0.1:99999", T).await;
    assert_eq!(reason(&r), Some(Reason::Setup));
    let p = via_endpoint("prober: tcp", "127.0.0.1", T).await;
    assert_eq!(reason(&p.result), Some(Reason::Setup));
    let mut families = String::new();
    p.families().render(&mut families);
    assert!(!families.contains("probe_ip_protocol"), "{families}");
}

#[tokio::test]
async fn tcp_unresolvable_host_still_reports_address_metrics_as_zero() {
    let target = format!("{}:25", unresolvable());
    let (r, out) = run_tcp(&module("{}"), &target, T).await;
    assert_eq!(reason(&r), Some(Reason::Dns));
    let p = via_endpoint("prober: tcp", &target, T).await;
    assert_eq!(reason(&p.result), Some(Reason::Dns));
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(out.value("probe_ip_addr_hash"), Some(0.0));
    assert!(out.value("probe_dns_lookup_time_seconds").is_some());
}

const SMTP_STARTTLS: &str = r#"
query_response:
  - expect: "^220 ([^ ]+) ESMTP"
    send: "EHLO ${1}"
    labels:
      - {name: banner_host, value: "${1}"}
  - expect: "^250 STARTTLS"
    send: STARTTLS
  - expect: "^220"
    starttls: true
  - expect: "^250 tls-ok"
"#;

#[tokio::test]
async fn tcp_query_response_expands_captures_and_upgrades_with_starttls() {
    let cert = srv::self_signed(&[]);
    let server = srv::smtp(&cert).await;
    let mut m: TcpModule = module(SMTP_STARTTLS);
    m.tls_config.ca_file = Some(cert.ca_file.path().display().to_string());
    m.tls_config.server_name = Some("localhost".into());
    let (r, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(r.is_ok(), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    assert_eq!(
        sample(&out, "probe_expect_info", "banner_host=\"mx.test\""),
        Some(1.0),
        "{}",
        text(&out)
    );
    assert_eq!(
        sample(&out, "probe_tls_version_info", "version=\"TLS 1.3\""),
        Some(1.0)
    );
    let expiry = out.value("probe_ssl_earliest_cert_expiry").expect("expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(expiry > now, "the certificate is valid: {expiry} vs {now}");
    // Verified against ca_file: the last chain's expiry is the certificate's.
    assert_eq!(
        out.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        Some(expiry)
    );
    assert!(names(&out).contains(&"probe_ssl_last_chain_info"));
}

#[tokio::test]
async fn tcp_starttls_with_an_untrusted_certificate_fails() {
    let cert = srv::self_signed(&[]);
    let server = srv::smtp(&cert).await;
    let m: TcpModule = module(SMTP_STARTTLS);
    let (r, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert_eq!(reason(&r), Some(Reason::Tls), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    assert!(out.value("probe_ssl_earliest_cert_expiry").is_none());
    let yaml = format!("prober: tcp\ntcp:\n{}", indent(SMTP_STARTTLS, 2));
    let p = via_endpoint(&yaml, &srv::target(server.addr), T).await;
    assert_eq!(reason(&p.result), Some(Reason::Tls));
}

#[tokio::test]
async fn tcp_expect_that_never_matches_sets_failed_due_to_regex() {
    let cert = srv::self_signed(&[]);
    let server = srv::smtp(&cert).await;
    // The server closes after its 500: the regexp never matched, end of stream.
    let m: TcpModule =
        module("query_response: [{expect: '^220'}, {send: 'HELO x'}, {expect: '^250'}]");
    let (r, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert_eq!(reason(&r), Some(Reason::ExpectMismatch), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(1.0));
    let p = via_endpoint(
        "prober: tcp\ntcp: {query_response: [{expect: '^220'}, {send: 'HELO x'}, {expect: '^250'}]}",
        &srv::target(server.addr),
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::ExpectMismatch));
}

#[tokio::test]
async fn tcp_silent_server_fails_at_the_deadline_without_a_regex_verdict() {
    let server = srv::silent().await;
    let m: TcpModule = module("query_response: [{expect: '^220'}]");
    let started = std::time::Instant::now();
    let (r, out) = run_tcp(&m, &srv::target(server.addr), Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert_eq!(reason(&r), Some(Reason::Timeout), "{}", text(&out));
    assert!(
        took < Duration::from_secs(2),
        "bounded by the deadline: {took:?}"
    );
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    let p = via_endpoint(
        "prober: tcp\ntcp: {query_response: [{expect: '^220'}]}",
        &srv::target(server.addr),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Timeout));
}

#[tokio::test]
async fn tcp_tls_reports_the_certificate_like_blackbox() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let m: TcpModule = module(
        "tls: true\ntls_config: {insecure_skip_verify: true}\nquery_response: [{expect: '^220 tls banner'}]",
    );
    let (r, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(r.is_ok(), "{}", text(&out));
    assert_eq!(
        names(&out),
        [
            "probe_dns_lookup_time_seconds",
            "probe_failed_due_to_regex",
            "probe_ip_addr_hash",
            "probe_ip_protocol",
            "probe_ssl_earliest_cert_expiry",
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            "probe_ssl_last_chain_info",
            "probe_tls_cipher_info",
            "probe_tls_version_info",
        ]
    );
    // Nothing verified: Go's zero time.
    assert_eq!(
        out.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        Some(-62_135_596_800.0)
    );
    let rendered = text(&out);
    assert!(
        rendered.contains("subject=\"CN=rcgen self signed cert\"")
            && rendered.contains("subjectalternative=\"localhost\""),
        "{rendered}"
    );
    // One TLS emitter for every kind: the http prober's label set, serial number included.
    let info = rendered
        .lines()
        .find(|l| l.starts_with("probe_ssl_last_chain_info{"))
        .expect("probe_ssl_last_chain_info");
    let labels: Vec<&str> = info
        .split(['{', ','])
        .filter_map(|p| p.split_once('=').map(|(k, _)| k))
        .collect();
    assert_eq!(
        labels,
        [
            "fingerprint_sha256",
            "subject",
            "issuer",
            "subjectalternative",
            "serialnumber"
        ],
        "{info}"
    );
}

#[tokio::test]
async fn tcp_tls_with_an_untrusted_certificate_fails() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let (r, out) = run_tcp(&module("tls: true"), &srv::target(server.addr), T).await;
    assert_eq!(reason(&r), Some(Reason::Tls), "{}", text(&out));
    let p = via_endpoint(
        "prober: tcp\ntcp: {tls: true}",
        &srv::target(server.addr),
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Tls));
}

/// The `tls_config` of a module trusting `cert` (server name `localhost`), presenting
/// `identity` (`(cert_file, key_file)`) when given.
pub(crate) fn mtls_config(
    cert: &srv::Cert,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> String {
    let mut t = format!(
        "{{ca_file: '{}', server_name: localhost",
        cert.ca_file.path().display()
    );
    if let Some((c, k)) = identity {
        t.push_str(&format!(
            ", cert_file: '{}', key_file: '{}'",
            c.display(),
            k.display()
        ));
    }
    t.push('}');
    t
}

#[tokio::test]
async fn tcp_tls_and_starttls_present_the_client_certificate_a_server_requires() {
    let pki = srv::client_pki();
    let ours = Some((pki.cert_file.as_path(), pki.key_file.as_path()));
    let stranger = Some((
        pki.stranger_cert_file.as_path(),
        pki.stranger_key_file.as_path(),
    ));
    let cert = srv::self_signed_requiring_client(&[], &pki);
    let banner = srv::tls_banner(&cert).await;
    let smtp = srv::smtp(&cert).await;
    for (identity, want) in [(ours, true), (None, false), (stranger, false)] {
        // TLS from the first byte. With TLS 1.3 the client's handshake completes before the
        // server checks the certificate: the banner read is what fails without one.
        let m: TcpModule = module(&format!(
            "tls: true\ntls_config: {}\nquery_response: [{{expect: '^220 tls banner'}}]",
            mtls_config(&cert, identity)
        ));
        let (r, out) = run_tcp(&m, &srv::target(banner.addr), T).await;
        assert_eq!(
            r.is_ok(),
            want,
            "tls, identity {identity:?}\n{}",
            text(&out)
        );
        if !want {
            assert_eq!(reason(&r), Some(Reason::Tls), "{}", text(&out));
        }
        // STARTTLS.
        let mut m: TcpModule = module(SMTP_STARTTLS);
        m.tls_config = module(&mtls_config(&cert, identity));
        let (r, out) = run_tcp(&m, &srv::target(smtp.addr), T).await;
        assert_eq!(
            r.is_ok(),
            want,
            "starttls, identity {identity:?}\n{}",
            text(&out)
        );
        if !want {
            assert_eq!(reason(&r), Some(Reason::Tls), "{}", text(&out));
        }
    }
}

#[tokio::test]
async fn tcp_client_certificate_files_that_cannot_be_read_fail_the_probe_naming_them() {
    let pki = srv::client_pki();
    let cert = srv::self_signed_requiring_client(&[], &pki);
    let server = srv::tls_banner(&cert).await;
    let missing = pki.dir.path().join("gone.pem");
    let (cert_file, key_file) = (pki.cert_file.as_path(), pki.key_file.as_path());
    for (c, k, field, file) in [
        (
            missing.as_path(),
            key_file,
            "tls_config.cert_file",
            "gone.pem",
        ),
        (
            cert_file,
            missing.as_path(),
            "tls_config.key_file",
            "gone.pem",
        ),
        // A certificate is not a key.
        (cert_file, cert_file, "tls_config.key_file", "client.pem"),
    ] {
        let m: TcpModule = module(&format!(
            "tls: true\ntls_config: {}",
            mtls_config(&cert, Some((c, k)))
        ));
        let (r, out) = run_tcp(&m, &srv::target(server.addr), T).await;
        let log = text(&out);
        assert_eq!(reason(&r), Some(Reason::Setup), "{log}");
        assert!(
            log.contains(&format!("{field}: ")) && log.contains(file),
            "the log names {field} and {file}:\n{log}"
        );
    }
}

#[tokio::test]
async fn tcp_client_certificate_file_missing_fails_setup_through_the_endpoint() {
    let pki = srv::client_pki();
    let cert = srv::self_signed_requiring_client(&[], &pki);
    let server = srv::tls_banner(&cert).await;
    let missing = pki.dir.path().join("gone.pem");
    let yaml = format!(
        "prober: tcp\ntcp:\n  tls: true\n  tls_config: {}",
        mtls_config(&cert, Some((missing.as_path(), pki.key_file.as_path())))
    );
    let p = via_endpoint(&yaml, &srv::target(server.addr), T).await;
    assert_eq!(reason(&p.result), Some(Reason::Setup), "{:?}", p.result);
}

/// `text` with every line indented by `n` spaces.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

/// Loads `options` (a module's `prober:` and options) as module `m` of a blackbox.yml and runs
/// it against `target` through `endpoint::run`, the path `/probe` and scheduled targets share.
pub(crate) async fn via_endpoint(options: &str, target: &str, timeout: Duration) -> Probed {
    let text = format!("modules:\n  m:\n{}", indent(options, 4));
    let c = watchfire::config::load_str("blackbox.yml", &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let m = c.modules.get("m").expect("module m");
    endpoint::run(m, target.to_string(), None, timeout, true).await
}

#[tokio::test]
async fn tcp_connect_that_gets_no_answer_is_a_connect_timeout() {
    let (addr, _listener, _held) = srv::unanswering();
    let short = Duration::from_millis(300);
    let (r, out) = run_tcp(&module("{}"), &srv::target(addr), short).await;
    assert_eq!(reason(&r), Some(Reason::ConnectTimeout), "{}", text(&out));
    let p = via_endpoint("prober: tcp", &srv::target(addr), short).await;
    assert_eq!(reason(&p.result), Some(Reason::ConnectTimeout));
}

#[tokio::test]
async fn tcp_connection_reset_during_the_dialogue_is_reset() {
    let server = srv::resetting().await;
    let qr = "query_response: [{expect: '^220'}, {send: 'x'}, {expect: '^250'}]";
    let (r, out) = run_tcp(&module(qr), &srv::target(server.addr), T).await;
    assert_eq!(reason(&r), Some(Reason::Reset), "{}", text(&out));
    let p = via_endpoint(
        &format!("prober: tcp\ntcp: {{{qr}}}"),
        &srv::target(server.addr),
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Reset));
}

#[tokio::test]
async fn tcp_line_longer_than_a_go_scanner_takes_is_a_protocol_failure() {
    let server = srv::sends(vec![b'x'; 70_000]).await;
    let qr = "query_response: [{expect: '^220'}]";
    let (r, out) = run_tcp(&module(qr), &srv::target(server.addr), T).await;
    assert_eq!(reason(&r), Some(Reason::Protocol), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    let p = via_endpoint(
        &format!("prober: tcp\ntcp: {{{qr}}}"),
        &srv::target(server.addr),
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Protocol));
}

/// An SSLRequest-like exchange: 8 bytes sent as `!!binary` (plus the newline every `send`
/// ends with), one byte expected back.
const SSL_REQUEST: &str =
    "query_response:\n  - send: !!binary AAAACFBJTkc=\n  - expect_bytes: EXPECTED\n";

#[tokio::test]
async fn tcp_expect_bytes_matches_exactly_and_reports_failed_due_to_bytes() {
    let server = srv::answers_after(9, b"S").await;
    let target = srv::target(server.addr);
    let (r, out) = run_tcp(&module(&SSL_REQUEST.replace("EXPECTED", "S")), &target, T).await;
    assert!(r.is_ok(), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_bytes"), Some(0.0));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    let (r, out) = run_tcp(&module(&SSL_REQUEST.replace("EXPECTED", "N")), &target, T).await;
    assert_eq!(reason(&r), Some(Reason::ExpectMismatch), "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_bytes"), Some(1.0));
    let yaml = format!(
        "prober: tcp\ntcp:\n{}",
        indent(&SSL_REQUEST.replace("EXPECTED", "N"), 2)
    );
    let p = via_endpoint(&yaml, &target, T).await;
    assert_eq!(reason(&p.result), Some(Reason::ExpectMismatch));
    // Without `expect_bytes` the family is absent, as in blackbox 0.23.
    let (_, out) = run_tcp(&module("{}"), &target, T).await;
    assert_eq!(out.value("probe_failed_due_to_bytes"), None);
}

#[tokio::test]
async fn tcp_hostname_names_the_tls_server_when_the_module_does_not() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let mut m: TcpModule = module("tls: true\nquery_response: [{expect: '^220 tls banner'}]");
    m.tls_config.ca_file = Some(cert.ca_file.path().display().to_string());
    m.compile().expect("valid");
    for (hostname, want) in [("localhost", None), ("other.test", Some(Reason::Tls))] {
        let mut c = ctx(&srv::target(server.addr), T);
        c.hostname = Some(hostname.to_string());
        let mut facts = tcp::Facts::default();
        let r = watchfire::probers::tcp_probe::probe(&m, &c, &mut facts, &mut Log::off()).await;
        assert_eq!(reason(&r), want, "{hostname}");
    }
}

#[tokio::test]
async fn tcp_phases_follow_the_one_definition() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let yaml = "prober: tcp\ntcp:\n  tls: true\n  tls_config: {insecure_skip_verify: true}\n  \
                query_response: [{expect: '^220 tls banner'}]";
    let p = via_endpoint(yaml, &srv::target(server.addr), T).await;
    assert!(p.ok(), "{:?}", p.result);
    let phases = p.facts.phases();
    assert!(phases.connect > Duration::ZERO, "{phases:?}");
    assert!(phases.tls > Duration::ZERO, "{phases:?}");
    assert!(phases.processing > Duration::ZERO, "{phases:?}");
    assert!(phases.connect + phases.tls + phases.processing <= p.duration);
}

/// The limited broadcast address: the kernel refuses a TCP connect to it at once (no packet
/// leaves this host).
#[tokio::test]
async fn tcp_connect_the_kernel_refuses_to_route_is_connect() {
    let (r, out) = run_tcp(&module("{}"), "255.255.255.255:1", T).await;
    assert_eq!(reason(&r), Some(Reason::Connect), "{}", text(&out));
    let p = via_endpoint("prober: tcp", "255.255.255.255:1", T).await;
    assert_eq!(reason(&p.result), Some(Reason::Connect));
}
