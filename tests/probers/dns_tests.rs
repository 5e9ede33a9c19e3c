//! The dns prober against in-test loopback servers.

use super::*;

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
