//! The tcp, dns, icmp and grpc probers against in-test loopback servers: metric names, label
//! sets and values as blackbox_exporter reports them, every failure mode, and bad input.

mod blackbox_servers;

use std::time::Duration;

use blackbox_servers as srv;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use watchfire::probers::dns::{self, DnsModule};
use watchfire::probers::grpc::{self, GrpcModule};
use watchfire::probers::icmp::{self, IcmpModule};
use watchfire::probers::tcp::{self, TcpModule};
use watchfire::probers::{Ctx, Output};

/// A probe context for `target` with `timeout`.
fn ctx(target: &str, timeout: Duration) -> Ctx {
    Ctx {
        target: target.to_string(),
        hostname: None,
        deadline: Instant::now() + timeout,
        timeout,
    }
}

const T: Duration = Duration::from_secs(5);

/// A host name that cannot resolve and is refused by the system resolver before any query is
/// sent (a 64-byte label is longer than DNS allows), so tests stay on loopback.
fn unresolvable() -> String {
    format!("{}.invalid", "x".repeat(64))
}

/// A module from its blackbox.yml section (checked with `validate`).
fn module<M: DeserializeOwned>(yaml: &str) -> M {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("module YAML `{yaml}`: {e}"))
}

/// The rendered metrics, for failure messages.
fn text(out: &Output) -> String {
    let mut s = String::new();
    out.render(&mut s);
    s.push_str("--- log:\n");
    for l in out.log_lines() {
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn names(out: &Output) -> Vec<&str> {
    let mut n = out.names();
    n.sort_unstable();
    n
}

/// The value of the sample of `name` with exactly `labels`, from the rendered text.
fn sample(out: &Output, name: &str, labels: &str) -> Option<f64> {
    let mut s = String::new();
    out.render(&mut s);
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    s.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a number"))
}

async fn run_tcp(m: &TcpModule, target: &str, timeout: Duration) -> (bool, Output) {
    m.validate().expect("valid module");
    let mut out = Output::new();
    let ok = tcp::probe(m, &ctx(target, timeout), &mut out).await;
    (ok, out)
}

async fn run_dns(m: &DnsModule, target: &str) -> (bool, Output) {
    m.validate().expect("valid module");
    let mut out = Output::new();
    let ok = dns::probe(m, &ctx(target, T), &mut out).await;
    (ok, out)
}

async fn run_grpc(m: &GrpcModule, target: &str) -> (bool, Output) {
    m.validate().expect("valid module");
    let mut out = Output::new();
    let ok = grpc::probe(m, &ctx(target, T), &mut out).await;
    (ok, out)
}

async fn run_icmp(m: &IcmpModule, target: &str) -> (bool, Output) {
    m.validate().expect("valid module");
    let mut out = Output::new();
    let ok = icmp::probe(m, &ctx(target, T), &mut out).await;
    (ok, out)
}

// ---------------------------------------------------------------------------------------------
// config

#[test]
fn modules_take_blackbox_field_names_and_defaults() {
    let t: TcpModule = module("{}");
    assert!(t.ip_protocol_fallback);
    assert_eq!(t.preferred_ip_protocol, watchfire::probers::IpProtocol::Ip6);
    let d: DnsModule = module("query_name: example.com");
    assert_eq!(
        (d.query_type.as_str(), d.query_class.as_str()),
        ("ANY", "IN")
    );
    assert!(d.recursion_desired);
    assert_eq!(d.valid_rcodes, ["NOERROR"]);
    assert_eq!(d.transport_protocol, dns::Transport::Udp);
    let i: IcmpModule = module("payload_size: 64");
    assert_eq!((i.ttl, i.payload_size, i.dont_fragment), (64, 64, false));
    let g: GrpcModule =
        module("service: x\ntls: true\ntls_config: {insecure_skip_verify: true}\nmetadata: {a: b, c: [d, e]}");
    assert_eq!(g.metadata["c"].values(), ["d", "e"]);
    assert!(g.tls && g.tls_config.insecure_skip_verify);
    let full: DnsModule = module(
        "query_name: a.test\nquery_type: AAAA\nquery_class: CH\ntransport_protocol: tcp\n\
         preferred_ip_protocol: ip4\nip_protocol_fallback: false\nsource_ip_address: 127.0.0.1\n\
         recursion_desired: false\nvalid_rcodes: [NOERROR, NXDOMAIN]\n\
         validate_answer_rrs: {fail_if_matches_regexp: [x], fail_if_not_matches_regexp: [y], \
         fail_if_all_match_regexp: [z], fail_if_none_matches_regexp: [w]}\n\
         validate_authority_rrs: {}\nvalidate_additional_rrs: {}\n\
         dns_over_tls: true\ntls_config: {server_name: dns.test}",
    );
    full.validate().expect("a complete dns module is valid");
    let full_tcp: TcpModule = module(
        "preferred_ip_protocol: ip4\nip_protocol_fallback: false\nsource_ip_address: 127.0.0.1\n\
         tls: true\ntls_config: {insecure_skip_verify: true}\nquery_response:\n\
         - {expect: '^220 (.*)', send: 'EHLO ${1}', labels: [{name: host, value: '${1}'}]}\n\
         - {starttls: true}",
    );
    full_tcp.validate().expect("a complete tcp module is valid");
    let full_icmp: IcmpModule = module(
        "preferred_ip_protocol: ip4\nip_protocol_fallback: false\nsource_ip_address: 127.0.0.1\n\
         payload_size: 100\ndont_fragment: true\nttl: 10",
    );
    full_icmp
        .validate()
        .expect("a complete icmp module is valid");
}

#[test]
fn unknown_fields_and_bad_values_are_rejected_naming_the_field() {
    assert!(serde_saphyr::from_str::<TcpModule>("no_such_field: 1").is_err());
    assert!(
        serde_saphyr::from_str::<DnsModule>("query_name: x\ntransport_protocol: sctp").is_err()
    );
    assert!(serde_saphyr::from_str::<IcmpModule>("ttl: x").is_err());
    assert!(serde_saphyr::from_str::<GrpcModule>("services: x").is_err());
    assert!(serde_saphyr::from_str::<TcpModule>("query_response: [{expect: x, sned: y}]").is_err());
    let cases: Vec<(Result<(), String>, &str)> = vec![
        (module::<DnsModule>("{}").validate(), "dns.query_name"),
        (
            module::<DnsModule>("query_name: x\nquery_type: BOGUS").validate(),
            "dns.query_type",
        ),
        (
            module::<DnsModule>("query_name: x\nquery_type: a").validate(),
            "dns.query_type",
        ),
        (
            module::<DnsModule>("query_name: x\nquery_class: XX").validate(),
            "dns.query_class",
        ),
        (
            module::<DnsModule>("query_name: x\nvalid_rcodes: [NOPE]").validate(),
            "dns.valid_rcodes",
        ),
        (
            module::<DnsModule>(
                "query_name: x\nvalidate_additional_rrs: {fail_if_matches_regexp: ['(']}",
            )
            .validate(),
            "dns.validate_additional_rrs.fail_if_matches_regexp",
        ),
        (
            module::<DnsModule>("query_name: x\ndns_over_tls: true").validate(),
            "dns.dns_over_tls",
        ),
        (
            module::<TcpModule>("query_response: [{expect: '[a-'}]").validate(),
            "tcp.query_response[0].expect",
        ),
        (
            module::<TcpModule>("query_response: [{expect: a, labels: [{name: '1x', value: v}]}]")
                .validate(),
            "tcp.query_response[0].labels",
        ),
        (
            module::<TcpModule>("source_ip_address: localhost").validate(),
            "tcp.source_ip_address",
        ),
        (module::<IcmpModule>("ttl: 300").validate(), "icmp.ttl"),
        (module::<IcmpModule>("ttl: -1").validate(), "icmp.ttl"),
        (
            module::<GrpcModule>("metadata: {'bad key': v}").validate(),
            "grpc.metadata",
        ),
    ];
    for (result, field) in cases {
        let e = result.expect_err(field);
        assert!(e.starts_with(field), "`{e}` should name {field}");
    }
}

#[test]
fn modules_serialize_for_the_config_page() {
    let g: GrpcModule = module("service: x\nmetadata: {a: b}");
    let yaml = serde_json::to_string(&g).expect("serializes");
    assert!(yaml.contains("\"preferred_ip_protocol\":\"ip6\""), "{yaml}");
    let back: GrpcModule = serde_json::from_str(&yaml).expect("round trip");
    assert_eq!(back, g);
    let d: DnsModule = module("query_name: x");
    let back: DnsModule =
        serde_json::from_str(&serde_json::to_string(&d).expect("serializes")).expect("round trip");
    assert_eq!(back, d);
}

// ---------------------------------------------------------------------------------------------
// tcp

#[tokio::test]
async fn tcp_connect_reports_address_metrics() {
    let server = srv::silent().await;
    let (ok, out) = run_tcp(&module("{}"), &srv::target(server.addr), T).await;
    assert!(ok, "{}", text(&out));
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
}

#[tokio::test]
async fn tcp_connect_to_a_closed_port_fails() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (ok, out) = run_tcp(&module("{}"), &format!("127.0.0.1:{port}"), T).await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_ip_protocol"), Some(4.0));
}

#[tokio::test]
async fn tcp_and_dns_connect_from_the_source_address() {
    let server = srv::silent().await;
    let target = srv::target(server.addr);
    let (ok, out) = run_tcp(&module("source_ip_address: 127.0.0.1"), &target, T).await;
    assert!(ok, "{}", text(&out));
    // An IPv6 source cannot reach an IPv4 target.
    let (ok, _) = run_tcp(&module("source_ip_address: '::1'"), &target, T).await;
    assert!(!ok);
    let dns_server = srv::dns().await;
    let dns_target = srv::target(dns_server.addr);
    for transport in ["udp", "tcp"] {
        let m: DnsModule = module(&format!(
            "query_name: a.test\ntransport_protocol: {transport}\nsource_ip_address: 127.0.0.1"
        ));
        let (ok, out) = run_dns(&m, &dns_target).await;
        assert!(ok, "{transport}\n{}", text(&out));
    }
}

#[tokio::test]
async fn tcp_target_without_port_fails_before_resolving() {
    let (ok, out) = run_tcp(&module("{}"), "127.0.0.1", T).await;
    assert!(!ok);
    assert_eq!(names(&out), ["probe_failed_due_to_regex"]);
}

#[tokio::test]
async fn tcp_unresolvable_host_still_reports_address_metrics_as_zero() {
    let (ok, out) = run_tcp(&module("{}"), &format!("{}:25", unresolvable()), T).await;
    assert!(!ok);
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
    let (ok, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(ok, "{}", text(&out));
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
    let (ok, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
    assert!(out.value("probe_ssl_earliest_cert_expiry").is_none());
}

#[tokio::test]
async fn tcp_expect_that_never_matches_sets_failed_due_to_regex() {
    let cert = srv::self_signed(&[]);
    let server = srv::smtp(&cert).await;
    // The server closes after its 500: the regexp never matched, end of stream.
    let m: TcpModule =
        module("query_response: [{expect: '^220'}, {send: 'HELO x'}, {expect: '^250'}]");
    let (ok, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(1.0));
}

#[tokio::test]
async fn tcp_silent_server_fails_at_the_deadline_without_a_regex_verdict() {
    let server = srv::silent().await;
    let m: TcpModule = module("query_response: [{expect: '^220'}]");
    let started = std::time::Instant::now();
    let (ok, out) = run_tcp(&m, &srv::target(server.addr), Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(!ok);
    assert!(
        took < Duration::from_secs(2),
        "bounded by the deadline: {took:?}"
    );
    assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
}

#[tokio::test]
async fn tcp_tls_reports_the_certificate_like_blackbox() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let m: TcpModule = module(
        "tls: true\ntls_config: {insecure_skip_verify: true}\nquery_response: [{expect: '^220 tls banner'}]",
    );
    let (ok, out) = run_tcp(&m, &srv::target(server.addr), T).await;
    assert!(ok, "{}", text(&out));
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
}

#[tokio::test]
async fn tcp_tls_with_an_untrusted_certificate_fails() {
    let cert = srv::self_signed(&[]);
    let server = srv::tls_banner(&cert).await;
    let (ok, out) = run_tcp(&module("tls: true"), &srv::target(server.addr), T).await;
    assert!(!ok, "{}", text(&out));
}

/// The `tls_config` of a module trusting `cert` (server name `localhost`), presenting
/// `identity` (`(cert_file, key_file)`) when given.
fn mtls_config(cert: &srv::Cert, identity: Option<(&std::path::Path, &std::path::Path)>) -> String {
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
        let (ok, out) = run_tcp(&m, &srv::target(banner.addr), T).await;
        assert_eq!(ok, want, "tls, identity {identity:?}\n{}", text(&out));
        // STARTTLS.
        let mut m: TcpModule = module(SMTP_STARTTLS);
        m.tls_config = module(&mtls_config(&cert, identity));
        let (ok, out) = run_tcp(&m, &srv::target(smtp.addr), T).await;
        assert_eq!(ok, want, "starttls, identity {identity:?}\n{}", text(&out));
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
        let (ok, out) = run_tcp(&m, &srv::target(server.addr), T).await;
        let log = text(&out);
        assert!(!ok, "{log}");
        assert!(
            log.contains(&format!("{field}: ")) && log.contains(file),
            "the log names {field} and {file}:\n{log}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// dns

fn dns_names_for_success() -> Vec<&'static str> {
    vec![
        "probe_dns_additional_rrs",
        "probe_dns_answer_rrs",
        "probe_dns_authority_rrs",
        "probe_dns_duration_seconds",
        "probe_dns_lookup_time_seconds",
        "probe_dns_query_succeeded",
        "probe_ip_addr_hash",
        "probe_ip_protocol",
    ]
}

#[tokio::test]
async fn dns_udp_query_counts_records_per_section() {
    let server = srv::dns().await;
    let (ok, out) = run_dns(
        &module("query_name: a.test\nquery_type: A"),
        &srv::target(server.addr),
    )
    .await;
    assert!(ok, "{}", text(&out));
    assert_eq!(names(&out), dns_names_for_success());
    assert_eq!(out.value("probe_dns_answer_rrs"), Some(2.0));
    assert_eq!(out.value("probe_dns_authority_rrs"), Some(1.0));
    assert_eq!(out.value("probe_dns_additional_rrs"), Some(1.0));
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(1.0));
    for phase in ["resolve", "connect", "request"] {
        assert!(
            sample(
                &out,
                "probe_dns_duration_seconds",
                &format!("phase=\"{phase}\"")
            )
            .is_some(),
            "phase {phase}"
        );
    }
}

#[tokio::test]
async fn dns_tcp_transport_and_default_any_query() {
    let server = srv::dns().await;
    let (ok, out) = run_dns(
        &module("query_name: a.test\ntransport_protocol: tcp"),
        &srv::target(server.addr),
    )
    .await;
    assert!(ok, "{}", text(&out));
    assert_eq!(out.value("probe_dns_answer_rrs"), Some(2.0));
}

#[tokio::test]
async fn dns_over_tls_queries_over_a_verified_tls_connection() {
    let cert = srv::self_signed(&[]);
    let server = srv::dns_over_tls(&cert).await;
    let m: DnsModule = module(&format!(
        "query_name: a.test\nquery_type: A\ntransport_protocol: tcp\ndns_over_tls: true\n\
         tls_config: {{ca_file: '{}', server_name: localhost}}",
        cert.ca_file.path().display()
    ));
    let (ok, out) = run_dns(&m, &srv::target(server.addr)).await;
    assert!(ok, "{}", text(&out));
    assert_eq!(out.value("probe_dns_answer_rrs"), Some(2.0));
    // Untrusted: the handshake fails, the query never happens.
    let m: DnsModule = module("query_name: a.test\ntransport_protocol: tcp\ndns_over_tls: true");
    let (ok, out) = run_dns(&m, &srv::target(server.addr)).await;
    assert!(!ok);
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
}

#[tokio::test]
async fn dns_soa_query_reports_the_serial() {
    let server = srv::dns().await;
    let (ok, out) = run_dns(
        &module("query_name: test\nquery_type: SOA"),
        &srv::target(server.addr),
    )
    .await;
    assert!(ok, "{}", text(&out));
    assert_eq!(
        out.value("probe_dns_serial"),
        Some(f64::from(srv::DNS_SERIAL))
    );
}

#[tokio::test]
async fn dns_nxdomain_fails_unless_it_is_a_valid_rcode() {
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    let (ok, out) = run_dns(&module("query_name: missing.test\nquery_type: A"), &target).await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(1.0));
    assert_eq!(out.value("probe_dns_authority_rrs"), Some(1.0));
    let (ok, out) = run_dns(
        &module("query_name: missing.test\nquery_type: A\nvalid_rcodes: [NOERROR, NXDOMAIN]"),
        &target,
    )
    .await;
    assert!(ok, "{}", text(&out));
}

#[tokio::test]
async fn dns_servfail_fails() {
    let server = srv::dns().await;
    let (ok, out) = run_dns(
        &module("query_name: fail.test\nquery_type: A"),
        &srv::target(server.addr),
    )
    .await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_dns_answer_rrs"), Some(0.0));
}

#[tokio::test]
async fn dns_validators_follow_blackbox_semantics() {
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    let cases = [
        // Each RR is matched as `name\tttl\tclass\ttype\trdata`.
        (
            "fail_if_matches_regexp: ['IN\\tA\\t192\\.0\\.2\\.2$']",
            false,
        ),
        ("fail_if_matches_regexp: ['198\\.51\\.100']", true),
        (
            "fail_if_not_matches_regexp: ['^a\\.test\\.\\t300\\tIN\\tA\\t192\\.0\\.2\\.']",
            true,
        ),
        ("fail_if_not_matches_regexp: ['192\\.0\\.2\\.1$']", false),
        // blackbox's actual semantics: fails unless every RR matches.
        ("fail_if_all_match_regexp: ['192\\.0\\.2\\.']", true),
        ("fail_if_all_match_regexp: ['192\\.0\\.2\\.1$']", false),
        ("fail_if_none_matches_regexp: ['192\\.0\\.2\\.2$']", true),
        ("fail_if_none_matches_regexp: ['10\\.']", false),
    ];
    for (validator, want) in cases {
        let m: DnsModule = module(&format!(
            "query_name: a.test\nquery_type: A\nvalidate_answer_rrs: {{{validator}}}"
        ));
        let (ok, out) = run_dns(&m, &target).await;
        assert_eq!(ok, want, "{validator}\n{}", text(&out));
    }
    // Authority and additional sections have their own validators.
    let m: DnsModule = module(
        "query_name: a.test\nquery_type: A\nvalidate_authority_rrs: {fail_if_not_matches_regexp: ['IN\\tNS\\tns1\\.test\\.$']}\n\
         validate_additional_rrs: {fail_if_none_matches_regexp: ['ns1\\.test\\..*192\\.0\\.2\\.53']}",
    );
    let (ok, out) = run_dns(&m, &target).await;
    assert!(ok, "{}", text(&out));
    // No RRs but a match required: fail.
    let m: DnsModule = module(
        "query_name: nothing.test\nquery_type: A\nvalidate_answer_rrs: {fail_if_none_matches_regexp: ['.']}",
    );
    assert!(!run_dns(&m, &target).await.0);
}

#[tokio::test]
async fn dns_rr_text_matches_miekg_presentation_format() {
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    for (q, t, re) in [
        ("a.test", "AAAA", "^a\\.test\\.\\t300\\tIN\\tAAAA\\t2001:db8::1$"),
        ("mx.test", "MX", "^mx\\.test\\.\\t300\\tIN\\tMX\\t10 mail\\.test\\.$"),
        ("txt.test", "TXT", "^txt\\.test\\.\\t300\\tIN\\tTXT\\t\"hello world\"$"),
        (
            "test",
            "SOA",
            "^test\\.\\t300\\tIN\\tSOA\\tns1\\.test\\. hostmaster\\.test\\. 2024010101 7200 3600 1209600 300$",
        ),
    ] {
        let m: DnsModule = module(&format!(
            "query_name: {q}\nquery_type: {t}\nvalidate_answer_rrs: {{fail_if_not_matches_regexp: ['{re}']}}"
        ));
        let (ok, out) = run_dns(&m, &target).await;
        assert!(ok, "{q} {t}\n{}", text(&out));
    }
}

#[tokio::test]
async fn dns_without_a_server_fails_with_zero_counts() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let m: DnsModule = module("query_name: a.test");
    let mut out = Output::new();
    let ok = dns::probe(
        &m,
        &ctx(&format!("127.0.0.1:{port}"), Duration::from_millis(500)),
        &mut out,
    )
    .await;
    assert!(!ok);
    assert_eq!(names(&out), dns_names_for_success());
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// grpc

fn health(out: &Output, status: &str) -> Option<f64> {
    sample(
        out,
        "probe_grpc_healthcheck_response",
        &format!("serving_status=\"{status}\""),
    )
}

#[tokio::test]
async fn grpc_serving_service_succeeds() {
    let server = srv::grpc_health().await;
    for service in ["", srv::GRPC_SERVING] {
        let m: GrpcModule = module(&format!("service: '{service}'\npreferred_ip_protocol: ip4"));
        let (ok, out) = run_grpc(&m, &srv::target(server.addr)).await;
        assert!(ok, "{}", text(&out));
        assert_eq!(out.value("probe_grpc_status_code"), Some(0.0));
        assert_eq!(out.value("probe_grpc_ssl"), Some(0.0));
        assert_eq!(health(&out, "SERVING"), Some(1.0));
        for other in ["UNKNOWN", "NOT_SERVING", "SERVICE_UNKNOWN"] {
            assert_eq!(health(&out, other), Some(0.0), "{other}");
        }
        assert_eq!(
            names(&out),
            [
                "probe_dns_lookup_time_seconds",
                "probe_grpc_duration_seconds",
                "probe_grpc_healthcheck_response",
                "probe_grpc_ssl",
                "probe_grpc_status_code",
                "probe_ip_addr_hash",
                "probe_ip_protocol",
                "probe_ssl_earliest_cert_expiry",
            ]
        );
    }
}

#[tokio::test]
async fn grpc_not_serving_service_fails_with_status_ok() {
    let server = srv::grpc_health().await;
    let m: GrpcModule = module(&format!("service: {}", srv::GRPC_NOT_SERVING));
    let (ok, out) = run_grpc(&m, &format!("http://{}", server.addr)).await;
    assert!(!ok, "{}", text(&out));
    assert_eq!(out.value("probe_grpc_status_code"), Some(0.0));
    assert_eq!(health(&out, "NOT_SERVING"), Some(1.0));
    assert_eq!(health(&out, "SERVING"), Some(0.0));
}

#[tokio::test]
async fn grpc_unknown_service_is_not_found() {
    let server = srv::grpc_health().await;
    let (ok, out) = run_grpc(&module("service: no.Such"), &srv::target(server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(5.0),
        "{}",
        text(&out)
    );
    for s in ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] {
        assert_eq!(health(&out, s), Some(0.0), "{s}");
    }
}

#[tokio::test]
async fn grpc_server_without_health_service_is_unimplemented() {
    let server = srv::grpc_without_health().await;
    let (ok, out) = run_grpc(&module("{}"), &srv::target(server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(12.0),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn grpc_non_grpc_listener_is_unavailable() {
    let server = srv::closing().await;
    let (ok, out) = run_grpc(&module("{}"), &srv::target(server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn grpc_closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (ok, out) = run_grpc(&module("{}"), &format!("127.0.0.1:{port}")).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert!(sample(&out, "probe_grpc_duration_seconds", "phase=\"check\"").is_some());
}

#[tokio::test]
async fn grpc_silent_server_hits_the_deadline() {
    let server = srv::silent().await;
    let m: GrpcModule = module("{}");
    m.validate().expect("valid");
    let mut out = Output::new();
    let started = std::time::Instant::now();
    let ok = grpc::probe(
        &m,
        &ctx(&srv::target(server.addr), Duration::from_millis(300)),
        &mut out,
    )
    .await;
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(4.0),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn grpc_tls_reports_ssl_and_the_certificate() {
    let cert = srv::self_signed(&[b"h2"]);
    let server = srv::grpc_health_tls(&cert).await;
    let m: GrpcModule = module(&format!(
        "tls: true\ntls_config: {{ca_file: '{}', server_name: localhost}}",
        cert.ca_file.path().display()
    ));
    let (ok, out) = run_grpc(&m, &srv::target(server.addr)).await;
    assert!(ok, "{}", text(&out));
    assert_eq!(out.value("probe_grpc_ssl"), Some(1.0));
    assert!(out.value("probe_ssl_earliest_cert_expiry").unwrap_or(0.0) > 0.0);
    let n = names(&out);
    assert!(n.contains(&"probe_tls_version_info") && n.contains(&"probe_ssl_last_chain_info"));
    assert!(!n.contains(&"probe_ssl_last_chain_expiry_timestamp_seconds"));
}

#[tokio::test]
async fn grpc_tls_presents_the_client_certificate_a_server_requires() {
    let pki = srv::client_pki();
    let cert = srv::self_signed_requiring_client(&[b"h2"], &pki);
    let server = srv::grpc_health_tls(&cert).await;
    let ours = Some((pki.cert_file.as_path(), pki.key_file.as_path()));
    for (identity, want) in [(ours, true), (None, false)] {
        let m: GrpcModule = module(&format!(
            "tls: true\ntls_config: {}",
            mtls_config(&cert, identity)
        ));
        let (ok, out) = run_grpc(&m, &srv::target(server.addr)).await;
        assert_eq!(ok, want, "identity {identity:?}\n{}", text(&out));
        if want {
            assert_eq!(out.value("probe_grpc_ssl"), Some(1.0));
        }
    }
}

#[tokio::test]
async fn grpc_tls_mismatch_is_unavailable_both_ways() {
    let cert = srv::self_signed(&[b"h2"]);
    let tls_server = srv::grpc_health_tls(&cert).await;
    let plain_server = srv::grpc_health().await;
    // Plaintext client, TLS server.
    let (ok, out) = run_grpc(&module("{}"), &srv::target(tls_server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    // TLS client, plaintext server.
    let m: GrpcModule = module("tls: true\ntls_config: {insecure_skip_verify: true}");
    let (ok, out) = run_grpc(&m, &srv::target(plain_server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert_eq!(out.value("probe_grpc_ssl"), Some(0.0));
    // TLS with an untrusted certificate.
    let (ok, out) = run_grpc(&module("tls: true"), &srv::target(tls_server.addr)).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn grpc_metadata_is_sent_with_the_check() {
    let server = srv::grpc_health_with_token().await;
    let target = srv::target(server.addr);
    let (ok, out) = run_grpc(&module("{}"), &target).await;
    assert!(!ok);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(16.0),
        "{}",
        text(&out)
    );
    let m: GrpcModule = module(&format!(
        "metadata: {{{}: [{}]}}",
        srv::GRPC_TOKEN.0,
        srv::GRPC_TOKEN.1
    ));
    let (ok, out) = run_grpc(&m, &target).await;
    assert!(ok, "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// icmp

/// Fails loudly, with the reason, when this machine permits no ICMP socket at all.
fn require_icmp(out: &Output) {
    if let Some(l) = out
        .log_lines()
        .iter()
        .find(|l| l.contains("error listening to socket"))
    {
        panic!(
            "ICMP sockets are not permitted here, so the ICMP prober cannot be tested: {l}\n\
             (allow unprivileged ICMP with `sysctl net.ipv4.ping_group_range='0 2147483647'`, \
             or run with CAP_NET_RAW)"
        );
    }
}

#[tokio::test]
async fn icmp_echo_to_ipv4_loopback() {
    let (ok, out) = run_icmp(&module("preferred_ip_protocol: ip4"), "127.0.0.1").await;
    require_icmp(&out);
    assert!(ok, "{}", text(&out));
    assert_eq!(out.value("probe_ip_protocol"), Some(4.0));
    for phase in ["resolve", "setup", "rtt"] {
        assert!(sample(
            &out,
            "probe_icmp_duration_seconds",
            &format!("phase=\"{phase}\"")
        )
        .is_some());
    }
    // On every socket type, as blackbox: the TTL loopback replies leave with.
    assert_eq!(
        out.value("probe_icmp_reply_hop_limit"),
        Some(sysctl("/proc/sys/net/ipv4/ip_default_ttl")),
        "{}",
        text(&out)
    );
}

/// A number from /proc/sys.
fn sysctl(path: &str) -> f64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn icmp_echo_to_ipv6_loopback_reports_the_reply_hop_limit() {
    // ttl sets the request's hop limit, not the reply's: the reply leaves ::1 with lo's.
    for yaml in ["{}", "ttl: 5"] {
        let (ok, out) = run_icmp(&module(yaml), "::1").await;
        require_icmp(&out);
        assert!(ok, "{}", text(&out));
        assert_eq!(out.value("probe_ip_protocol"), Some(6.0));
        assert_eq!(
            out.value("probe_icmp_reply_hop_limit"),
            Some(sysctl("/proc/sys/net/ipv6/conf/lo/hop_limit")),
            "{yaml}\n{}",
            text(&out)
        );
    }
}

#[tokio::test]
async fn icmp_options_payload_ttl_and_dont_fragment() {
    for yaml in [
        "payload_size: 1200\nttl: 5\npreferred_ip_protocol: ip4",
        "payload_size: 3\npreferred_ip_protocol: ip4",
        "dont_fragment: true\nttl: 9\npreferred_ip_protocol: ip4",
        "payload_size: 1200\nttl: 5",
    ] {
        let target = if yaml.contains("ip4") {
            "127.0.0.1"
        } else {
            "::1"
        };
        let (ok, out) = run_icmp(&module(yaml), target).await;
        require_icmp(&out);
        assert!(ok, "{yaml}\n{}", text(&out));
    }
}

#[tokio::test]
async fn icmp_to_an_unresolvable_host_fails() {
    let (ok, out) = run_icmp(&module("{}"), &unresolvable()).await;
    assert!(!ok);
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(
        sample(&out, "probe_icmp_duration_seconds", "phase=\"rtt\""),
        Some(0.0)
    );
}

// ---------------------------------------------------------------------------------------------
// bad input

/// Malformed targets fail without a panic. Every host here is an IP literal or is refused before
/// resolution, so nothing leaves loopback (the dns and icmp probers take the target as a host).
#[tokio::test]
async fn malformed_targets_fail_cleanly_for_every_prober() {
    let long = "x".repeat(5000);
    let tcp_targets = [
        "",
        "[",
        "[::1",
        "]:1",
        "a:b:c",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        "127.0.0.1:http",
        "[::1]:0",
        "[::1]",
        long.as_str(),
    ];
    let dns_targets = [
        "127.0.0.1:99999",
        "127.0.0.1:-1",
        "127.0.0.1:",
        "[::1]:0",
        "[::1",
        "::1",
    ];
    let grpc_targets = [
        "",
        "http://",
        "https://",
        "invalid://",
        "https://[::1",
        "127.0.0.1:99999",
        "host with spaces:80",
        "ctl\u{0}\u{7}:80",
        "http://127.0.0.1:-1/x",
        long.as_str(),
        "http://u@127.0.0.1:1/p?q#f",
    ];
    let icmp_targets = ["[::1", "[::1]", "::1", "127.0.0.1"];
    let short = Duration::from_millis(300);
    let tcp_m: TcpModule = module("{}");
    for t in tcp_targets {
        let mut out = Output::new();
        let ok = tcp::probe(&tcp_m, &ctx(t, short), &mut out).await;
        assert!(!ok, "tcp `{t}`");
    }
    let dns_m: DnsModule = module("query_name: a.test");
    for t in dns_targets {
        let mut out = Output::new();
        let ok = dns::probe(&dns_m, &ctx(t, short), &mut out).await;
        assert!(!ok, "dns `{t}`");
    }
    let grpc_m: GrpcModule = module("{}");
    for t in grpc_targets {
        let mut out = Output::new();
        let ok = grpc::probe(&grpc_m, &ctx(t, short), &mut out).await;
        assert!(!ok, "grpc `{t}`");
    }
    let icmp_m: IcmpModule = module("payload_size: 65000");
    for t in icmp_targets {
        let mut out = Output::new();
        let _ = icmp::probe(&icmp_m, &ctx(t, short), &mut out).await;
    }
}
