//! Differential tests of the tcp, dns, grpc and icmp probers: the real blackbox_exporter and
//! watchfire read one blackbox.yml and probe the same loopback servers; per scenario they must
//! agree on `probe_success`, on metric and label names, HELP/TYPE, and on every deterministic
//! value (RR counts, gRPC status, regex flag, ssl, TLS facts, ip protocol).
#![cfg(feature = "e2e")]

mod blackbox_servers;
mod common;
#[path = "common/blackbox.rs"]
mod harness;

use blackbox_servers as srv;
use harness::{assert_equivalent, set_aside_upstream_additions, Pair, ParsedMetrics};

/// Probes `target` with `module` on both; asserts equivalence and returns both answers.
async fn same(
    pair: &Pair,
    what: &str,
    target: &str,
    module: &str,
    values: &[&str],
    ignore_names: &[&str],
) -> (ParsedMetrics, ParsedMetrics) {
    let (bb, mut wf) = pair.probe(target, module).await;
    set_aside_upstream_additions(&mut wf);
    if std::env::var("E2E_DUMP").is_ok() {
        eprintln!(
            "=== {what}\n--- exporter:\n{}\n--- watchfire:\n{}",
            bb.text, wf.text
        );
    }
    if std::env::var("E2E_DEBUG").is_ok() && bb.success() != wf.success() {
        let q = format!(
            "/probe?target={}&module={}&debug=true",
            harness::enc(target),
            module
        );
        let (b, w) = pair.get_both(&q, &[]).await;
        eprintln!(
            "=== {what}: exporter debug:\n{}\n=== watchfire debug:\n{}",
            b.body, w.body
        );
    }
    assert_equivalent(what, &bb, &wf, values, ignore_names);
    (bb, wf)
}

/// Values both must agree on for every prober.
const ADDRESS: [&str; 3] = ["probe_success", "probe_ip_protocol", "probe_ip_addr_hash"];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    ADDRESS.iter().chain(extra).copied().collect()
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// tcp

const TCP_YAML: &str = r#"
modules:
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        insecure_skip_verify: true
      query_response:
        - expect: "^220 ([^ ]+) ESMTP"
          send: "EHLO ${1}"
        - expect: "^250 STARTTLS"
          send: STARTTLS
        - expect: "^220"
          starttls: true
        - expect: "^250 tls-ok"
  smtp_wrong_expect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220"
        - send: "HELO x"
        - expect: "^250"
  smtp_untrusted:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 ([^ ]+) ESMTP"
          send: "EHLO ${1}"
        - expect: "^250 STARTTLS"
          send: STARTTLS
        - expect: "^220"
          starttls: true
  tls_banner:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        insecure_skip_verify: true
      query_response:
        - expect: "^220 tls banner"
  tls_untrusted:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
"#;

/// TLS facts both must agree on (a fixed certificate: all deterministic).
const TLS_VALUES: [&str; 4] = [
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_tls_version_info",
];

#[tokio::test(flavor = "multi_thread")]
async fn tcp_scenarios_match_the_exporter() {
    let pair = Pair::start(TCP_YAML).await;
    let cert = srv::self_signed(&[]);
    let silent = srv::silent().await;
    let smtp = srv::smtp(&cert).await;
    let tls = srv::tls_banner(&cert).await;
    let regex = with(&["probe_failed_due_to_regex"]);

    same(
        &pair,
        "tcp connect",
        &srv::target(silent.addr),
        "tcp_connect",
        &regex,
        &[],
    )
    .await;
    same(
        &pair,
        "tcp closed port",
        &format!("127.0.0.1:{}", closed_port()),
        "tcp_connect",
        &regex,
        &[],
    )
    .await;
    same(
        &pair,
        "tcp target without port",
        "127.0.0.1",
        "tcp_connect",
        &regex,
        &[],
    )
    .await;
    // A 64-byte label: both resolvers refuse it before sending any query (stays on loopback).
    let unresolvable = format!("{}.invalid:25", "x".repeat(64));
    same(
        &pair,
        "tcp unresolvable host",
        &unresolvable,
        "tcp_connect",
        &regex,
        &[],
    )
    .await;
    let mut tls_regex = regex.clone();
    tls_regex.extend(TLS_VALUES);
    let (bb, _) = same(
        &pair,
        "tcp STARTTLS dialogue",
        &srv::target(smtp.addr),
        "smtp_starttls",
        &tls_regex,
        &[],
    )
    .await;
    assert_eq!(
        bb.success(),
        Some(1.0),
        "the exporter completes the dialogue"
    );
    let (bb, _) = same(
        &pair,
        "tcp expect never matches",
        &srv::target(smtp.addr),
        "smtp_wrong_expect",
        &regex,
        &[],
    )
    .await;
    assert_eq!(bb.value("probe_failed_due_to_regex"), Some(1.0));
    same(
        &pair,
        "tcp STARTTLS untrusted",
        &srv::target(smtp.addr),
        "smtp_untrusted",
        &regex,
        &[],
    )
    .await;
    same(
        &pair,
        "tcp tls",
        &srv::target(tls.addr),
        "tls_banner",
        &tls_regex,
        &[],
    )
    .await;
    same(
        &pair,
        "tcp tls untrusted",
        &srv::target(tls.addr),
        "tls_untrusted",
        &regex,
        &[],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// dns

const DNS_YAML: &str = r#"
modules:
  dns_a:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: a.test
      query_type: A
  dns_any_tcp:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: tcp
      query_name: a.test
  dns_soa:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: test
      query_type: SOA
  dns_nxdomain:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: missing.test
      query_type: A
  dns_nxdomain_ok:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: missing.test
      query_type: A
      valid_rcodes: [NOERROR, NXDOMAIN]
  dns_servfail:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: fail.test
      query_type: A
  dns_validators_pass:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: a.test
      query_type: A
      validate_answer_rrs:
        fail_if_matches_regexp: ["198\\.51\\.100"]
        fail_if_not_matches_regexp: ["^a\\.test\\.\t300\tIN\tA\t192\\.0\\.2\\."]
        fail_if_all_match_regexp: ["192\\.0\\.2\\."]
        fail_if_none_matches_regexp: ["192\\.0\\.2\\.2$"]
      validate_authority_rrs:
        fail_if_not_matches_regexp: ["IN\tNS\tns1\\.test\\.$"]
      validate_additional_rrs:
        fail_if_none_matches_regexp: ["ns1\\.test\\..*192\\.0\\.2\\.53"]
  dns_validator_fails:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: a.test
      query_type: A
      validate_answer_rrs:
        # Fails unless every RR matches (blackbox's semantics, whatever the name says).
        fail_if_all_match_regexp: ["192\\.0\\.2\\.1$"]
  dns_txt_mx:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: txt.test
      query_type: TXT
      validate_answer_rrs:
        fail_if_not_matches_regexp: ["^txt\\.test\\.\t300\tIN\tTXT\t\"hello world\"$"]
  dns_over_tls:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: tcp
      dns_over_tls: true
      tls_config:
        insecure_skip_verify: true
      query_name: a.test
      query_type: A
  dns_over_tls_untrusted:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      transport_protocol: tcp
      dns_over_tls: true
      query_name: a.test
      query_type: A
  dns_no_server:
    prober: dns
    timeout: 2s
    dns:
      preferred_ip_protocol: ip4
      query_name: a.test
"#;

const DNS_VALUES: [&str; 4] = [
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_query_succeeded",
];

#[tokio::test(flavor = "multi_thread")]
async fn dns_scenarios_match_the_exporter() {
    let pair = Pair::start(DNS_YAML).await;
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    let values = with(&DNS_VALUES);
    for (what, module, success) in [
        ("dns udp A", "dns_a", 1.0),
        ("dns tcp ANY", "dns_any_tcp", 1.0),
        ("dns SOA", "dns_soa", 1.0),
        ("dns NXDOMAIN", "dns_nxdomain", 0.0),
        ("dns NXDOMAIN accepted", "dns_nxdomain_ok", 1.0),
        ("dns SERVFAIL", "dns_servfail", 0.0),
        ("dns validators pass", "dns_validators_pass", 1.0),
        ("dns validator fails", "dns_validator_fails", 0.0),
        ("dns TXT text form", "dns_txt_mx", 1.0),
    ] {
        let mut v = values.clone();
        v.push("probe_dns_serial");
        let (bb, _) = same(&pair, what, &target, module, &v, &[]).await;
        assert_eq!(
            bb.success(),
            Some(success),
            "{what}: the exporter's verdict"
        );
    }
    let cert = srv::self_signed(&[]);
    let dot = srv::dns_over_tls(&cert).await;
    let dot_target = srv::target(dot.addr);
    for (what, module, success) in [
        ("dns over TLS", "dns_over_tls", 1.0),
        ("dns over TLS untrusted", "dns_over_tls_untrusted", 0.0),
    ] {
        let (bb, _) = same(&pair, what, &dot_target, module, &values, &[]).await;
        assert_eq!(
            bb.success(),
            Some(success),
            "{what}: the exporter's verdict"
        );
    }
    // Nothing listens: ICMP port unreachable, or the deadline.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    same(
        &pair,
        "dns no server",
        &format!("127.0.0.1:{dead}"),
        "dns_no_server",
        &values,
        &[],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// grpc

// `preferred_ip_protocol: ip4`: the targets are IPv4 literals; 0.23 without a `grpc:` section
// resolves for IPv6 only and fails there.
const GRPC_YAML: &str = r#"
modules:
  grpc:
    prober: grpc
    timeout: 5s
    grpc:
      preferred_ip_protocol: ip4
  grpc_ok_service:
    prober: grpc
    timeout: 5s
    grpc:
      preferred_ip_protocol: ip4
      service: ok.Service
  grpc_down_service:
    prober: grpc
    timeout: 5s
    grpc:
      preferred_ip_protocol: ip4
      service: down.Service
  grpc_unknown_service:
    prober: grpc
    timeout: 5s
    grpc:
      preferred_ip_protocol: ip4
      service: no.Such
  grpc_tls:
    prober: grpc
    timeout: 5s
    grpc:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        insecure_skip_verify: true
"#;

const GRPC_VALUES: [&str; 3] = [
    "probe_grpc_status_code",
    "probe_grpc_ssl",
    "probe_grpc_healthcheck_response",
];

#[tokio::test(flavor = "multi_thread")]
async fn grpc_scenarios_match_the_exporter() {
    let pair = Pair::start(GRPC_YAML).await;
    let cert = srv::self_signed(&[b"h2"]);
    let plain = srv::grpc_health().await;
    let tls = srv::grpc_health_tls(&cert).await;
    let bare = srv::grpc_without_health().await;
    let closing = srv::closing().await;
    let values = with(&GRPC_VALUES);
    let mut tls_values = values.clone();
    tls_values.extend([
        "probe_ssl_earliest_cert_expiry",
        "probe_ssl_last_chain_info",
        "probe_tls_version_info",
    ]);
    let plain_t = srv::target(plain.addr);
    let tls_t = srv::target(tls.addr);
    for (what, target, module, code) in [
        ("grpc SERVING (server)", &plain_t, "grpc", 0.0),
        ("grpc SERVING (service)", &plain_t, "grpc_ok_service", 0.0),
        ("grpc NOT_SERVING", &plain_t, "grpc_down_service", 0.0),
        (
            "grpc unknown service",
            &plain_t,
            "grpc_unknown_service",
            5.0,
        ),
        (
            "grpc no health service",
            &srv::target(bare.addr),
            "grpc",
            12.0,
        ),
        (
            "grpc not a gRPC server",
            &srv::target(closing.addr),
            "grpc",
            14.0,
        ),
        ("grpc plaintext to TLS", &tls_t, "grpc", 14.0),
        ("grpc TLS to plaintext", &plain_t, "grpc_tls", 14.0),
        ("grpc TLS", &tls_t, "grpc_tls", 0.0),
        (
            "grpc closed port",
            &format!("127.0.0.1:{}", closed_port()),
            "grpc",
            14.0,
        ),
    ] {
        let (bb, _) = same(&pair, what, target, module, &tls_values, &[]).await;
        assert_eq!(
            bb.value("probe_grpc_status_code"),
            Some(code),
            "{what}: the exporter's status code"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// icmp

const ICMP_YAML: &str = r#"
modules:
  icmp4:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
  icmp6:
    prober: icmp
    timeout: 5s
  icmp4_options:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
      payload_size: 512
      dont_fragment: true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn icmp_scenarios_match_the_exporter() {
    let pair = Pair::start(ICMP_YAML).await;
    // On an unprivileged datagram socket watchfire cannot see the reply's TTL (see
    // src/blackbox/icmp.rs); on a raw one it reports it, and then it must agree.
    let (bb, wf) = pair.probe("127.0.0.1", "icmp4").await;
    assert_eq!(
        bb.success(),
        Some(1.0),
        "ICMP must be permitted here:\n{}",
        bb.text
    );
    let hop_limit_seen = wf.value("probe_icmp_reply_hop_limit").is_some();
    let (values, ignore) = if hop_limit_seen {
        (with(&["probe_icmp_reply_hop_limit"]), vec![])
    } else {
        (with(&[]), vec!["probe_icmp_reply_hop_limit"])
    };
    assert_equivalent("icmp 127.0.0.1", &bb, &wf, &values, &ignore);
    same(
        &pair,
        "icmp 127.0.0.1 with options",
        "127.0.0.1",
        "icmp4_options",
        &with(&["probe_icmp_reply_hop_limit"]),
        &[],
    )
    .await;
    // IPv6: blackbox reads the reply's hop limit from an IPV6_HOPLIMIT control message, which
    // watchfire cannot read without `unsafe` (see src/blackbox/icmp.rs); the metric is absent.
    same(
        &pair,
        "icmp ::1",
        "::1",
        "icmp6",
        &with(&[]),
        &["probe_icmp_reply_hop_limit"],
    )
    .await;
}
