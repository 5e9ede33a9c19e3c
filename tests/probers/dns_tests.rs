//! The dns prober against in-test loopback servers: the families blackbox reports and the
//! reason of every failure, probed directly and through `endpoint::run` (what `/probe` and
//! scheduled module targets share).

use super::*;
use watchfire::blackbox::endpoint::{self, Probed};

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

/// The reason of a failed probe (panics, showing the families and log, when it succeeded).
pub(super) fn reason(result: &Result<(), Fail>, out: &Output) -> Reason {
    match result {
        Ok(()) => panic!("the probe succeeded\n{}", text(out)),
        Err(f) => f.reason,
    }
}

/// Runs module `m` (`prober` with its section `section`, a YAML flow mapping) through
/// `endpoint::run`, loaded from a blackbox.yml as watchfire loads one.
pub(super) async fn via_run(
    prober: &str,
    section: &str,
    target: &str,
    timeout: Duration,
) -> Probed {
    let yaml = format!("modules:\n  m:\n    prober: {prober}\n    {prober}: {section}\n");
    let config = watchfire::config::load_str("blackbox.yml", &yaml)
        .unwrap_or_else(|e| panic!("{yaml}\n{e}"));
    let module = config.modules.get("m").expect("module m");
    endpoint::run(module, target.to_string(), None, timeout, true).await
}

/// Asserts the reason `endpoint::run` gives, and that the families come from the facts.
pub(super) async fn assert_run_reason(
    prober: &str,
    section: &str,
    target: &str,
    timeout: Duration,
    want: Reason,
) {
    let probed = via_run(prober, section, target, timeout).await;
    let out = probed.families();
    let log = probed.log.lines().join("\n");
    let got = probed.result.as_ref().map_err(|f| f.reason);
    assert_eq!(got, Err(want), "{prober}: {section} @ {target}\n{log}");
    assert_eq!(out.value("probe_success"), Some(0.0));
    assert!(
        out.names()
            .iter()
            .any(|n| n.starts_with(&format!("probe_{prober}_"))),
        "{:?}",
        out.names()
    );
}

#[tokio::test]
async fn dns_udp_query_counts_records_per_section() {
    let server = srv::dns().await;
    let (result, out) = run_dns(
        &module("query_name: a.test\nquery_type: A"),
        &srv::target(server.addr),
    )
    .await;
    assert!(result.is_ok(), "{}", text(&out));
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
async fn dns_success_through_run_has_phases_under_one_definition() {
    let server = srv::dns().await;
    let probed = via_run(
        "dns",
        "{query_name: a.test, query_type: A, transport_protocol: tcp}",
        &srv::target(server.addr),
        T,
    )
    .await;
    assert!(probed.ok(), "{:?}", probed.log.lines());
    let phases = probed.facts.phases();
    let out = probed.families();
    assert_eq!(out.value("probe_success"), Some(1.0));
    let request = out
        .value_with("probe_dns_duration_seconds", &[("phase", "request")])
        .expect("request phase");
    let answered = phases.processing + phases.transfer;
    assert!(
        (answered.as_secs_f64() - request).abs() < 1e-6,
        "{phases:?} vs {request}"
    );
    assert!(phases.connect > Duration::ZERO, "{phases:?}");
    assert_eq!(phases.tls, Duration::ZERO);
}

#[tokio::test]
async fn dns_tcp_transport_and_default_any_query() {
    let server = srv::dns().await;
    let (result, out) = run_dns(
        &module("query_name: a.test\ntransport_protocol: tcp"),
        &srv::target(server.addr),
    )
    .await;
    assert!(result.is_ok(), "{}", text(&out));
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
    let (result, out) = run_dns(&m, &srv::target(server.addr)).await;
    assert!(result.is_ok(), "{}", text(&out));
    assert_eq!(out.value("probe_dns_answer_rrs"), Some(2.0));
    // Untrusted: the handshake fails, the query never happens.
    let section = "{query_name: a.test, transport_protocol: tcp, dns_over_tls: true}";
    let m: DnsModule = module(section);
    let (result, out) = run_dns(&m, &srv::target(server.addr)).await;
    assert_eq!(reason(&result, &out), Reason::Tls);
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
    assert_run_reason("dns", section, &srv::target(server.addr), T, Reason::Tls).await;
}

#[tokio::test]
async fn dns_soa_query_reports_the_serial() {
    let server = srv::dns().await;
    let (result, out) = run_dns(
        &module("query_name: test\nquery_type: SOA"),
        &srv::target(server.addr),
    )
    .await;
    assert!(result.is_ok(), "{}", text(&out));
    assert_eq!(
        out.value("probe_dns_serial"),
        Some(f64::from(srv::DNS_SERIAL))
    );
}

#[tokio::test]
async fn dns_nxdomain_fails_unless_it_is_a_valid_rcode() {
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    let section = "{query_name: missing.test, query_type: A}";
    let (result, out) = run_dns(&module(section), &target).await;
    assert_eq!(reason(&result, &out), Reason::Rcode);
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(1.0));
    assert_eq!(out.value("probe_dns_authority_rrs"), Some(1.0));
    assert_run_reason("dns", section, &target, T, Reason::Rcode).await;
    let (result, out) = run_dns(
        &module("query_name: missing.test\nquery_type: A\nvalid_rcodes: [NOERROR, NXDOMAIN]"),
        &target,
    )
    .await;
    assert!(result.is_ok(), "{}", text(&out));
}

#[tokio::test]
async fn dns_servfail_fails() {
    let server = srv::dns().await;
    let (result, out) = run_dns(
        &module("query_name: fail.test\nquery_type: A"),
        &srv::target(server.addr),
    )
    .await;
    assert_eq!(reason(&result, &out), Reason::Rcode);
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
        let (result, out) = run_dns(&m, &target).await;
        assert_eq!(result.is_ok(), want, "{validator}\n{}", text(&out));
        if !want {
            assert_eq!(reason(&result, &out), Reason::AnswerMismatch, "{validator}");
        }
    }
    // Authority and additional sections have their own validators.
    let m: DnsModule = module(
        "query_name: a.test\nquery_type: A\nvalidate_authority_rrs: {fail_if_not_matches_regexp: ['IN\\tNS\\tns1\\.test\\.$']}\n\
         validate_additional_rrs: {fail_if_none_matches_regexp: ['ns1\\.test\\..*192\\.0\\.2\\.53']}",
    );
    let (result, out) = run_dns(&m, &target).await;
    assert!(result.is_ok(), "{}", text(&out));
    // No RRs but a match required: fail.
    let section =
        "{query_name: nothing.test, query_type: A, validate_answer_rrs: {fail_if_none_matches_regexp: ['.']}}";
    let (result, out) = run_dns(&module(section), &target).await;
    assert_eq!(reason(&result, &out), Reason::AnswerMismatch);
    assert_run_reason("dns", section, &target, T, Reason::AnswerMismatch).await;
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
        let (result, out) = run_dns(&m, &target).await;
        assert!(result.is_ok(), "{q} {t}\n{}", text(&out));
    }
}

#[tokio::test]
async fn dns_without_a_server_fails_with_zero_counts() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    };
    let m: DnsModule = module("query_name: a.test");
    let (result, out) =
        run_dns_within(&m, &format!("127.0.0.1:{port}"), Duration::from_millis(500)).await;
    // Linux reports the ICMP port unreachable to the connected UDP socket.
    assert_eq!(reason(&result, &out), Reason::Refused);
    assert_eq!(names(&out), dns_names_for_success());
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
}

/// A closed TCP port.
#[tokio::test]
async fn dns_tcp_closed_port_is_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let target = format!("127.0.0.1:{port}");
    let section = "{query_name: a.test, transport_protocol: tcp}";
    let (result, out) = run_dns(&module(section), &target).await;
    assert_eq!(reason(&result, &out), Reason::Refused);
    assert_eq!(names(&out), dns_names_for_success());
    assert_run_reason("dns", section, &target, T, Reason::Refused).await;
    assert_run_reason("dns", "{query_name: a.test}", &target, T, Reason::Refused).await;
}

#[tokio::test]
async fn dns_no_answer_before_the_deadline_is_timeout() {
    let server = srv::udp_silent().await;
    let target = srv::target(server.addr);
    let short = Duration::from_millis(300);
    let (result, out) = run_dns_within(&module("query_name: a.test"), &target, short).await;
    assert_eq!(reason(&result, &out), Reason::Timeout);
    // The exchange is reported although the deadline cut it short.
    let connect = out
        .value_with("probe_dns_duration_seconds", &[("phase", "connect")])
        .expect("connect phase");
    assert!(connect >= 0.2, "{}", text(&out));
    assert_run_reason(
        "dns",
        "{query_name: a.test}",
        &target,
        short,
        Reason::Timeout,
    )
    .await;
    // Over TCP: the server accepts and never answers.
    let server = srv::silent().await;
    let target = srv::target(server.addr);
    let section = "{query_name: a.test, transport_protocol: tcp}";
    assert_run_reason("dns", section, &target, short, Reason::Timeout).await;
}

#[tokio::test]
async fn dns_tcp_connect_that_gets_no_answer_is_connect_timeout() {
    let server = srv::full_backlog().await;
    let target = srv::target(server.addr);
    let short = Duration::from_millis(300);
    let section = "{query_name: a.test, transport_protocol: tcp}";
    let (result, out) = run_dns_within(&module(section), &target, short).await;
    assert_eq!(reason(&result, &out), Reason::ConnectTimeout);
    assert_run_reason("dns", section, &target, short, Reason::ConnectTimeout).await;
}

#[tokio::test]
async fn dns_connection_closed_before_the_answer_is_reset() {
    let server = srv::closing().await;
    let target = srv::target(server.addr);
    let section = "{query_name: a.test, transport_protocol: tcp}";
    let (result, out) = run_dns(&module(section), &target).await;
    assert_eq!(reason(&result, &out), Reason::Reset);
    assert_run_reason("dns", section, &target, T, Reason::Reset).await;
}

#[tokio::test]
async fn dns_answer_that_is_not_dns_is_protocol() {
    let server = srv::dns_garbage().await;
    let target = srv::target(server.addr);
    let (result, out) = run_dns(&module("query_name: a.test"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Protocol);
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
    assert_run_reason("dns", "{query_name: a.test}", &target, T, Reason::Protocol).await;
}

#[tokio::test]
async fn dns_unresolvable_target_is_dns() {
    let target = format!("{}:53", unresolvable());
    let (result, out) = run_dns(&module("query_name: a.test"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Dns);
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
    assert_run_reason("dns", "{query_name: a.test}", &target, T, Reason::Dns).await;
}

/// What the probe cannot start: a port that is not one, a source address not on this host
/// (binding it fails before anything is sent).
#[tokio::test]
async fn dns_local_problems_are_setup() {
    let (result, out) = run_dns(&module("query_name: a.test"), "127.0.0.1:99999").await;
    assert_eq!(reason(&result, &out), Reason::Setup);
    let server = srv::dns().await;
    let target = srv::target(server.addr);
    for section in [
        "{query_name: a.test, source_ip_address: 192.0.2.1}",
        "{query_name: a.test, source_ip_address: 192.0.2.1, transport_protocol: tcp}",
    ] {
        let (result, out) = run_dns(&module(section), &target).await;
        assert_eq!(reason(&result, &out), Reason::Setup, "{section}");
        assert_run_reason("dns", section, &target, T, Reason::Setup).await;
    }
}

#[tokio::test]
async fn dns_module_not_compiled_at_load_is_compiled_for_the_probe() {
    let server = srv::dns().await;
    let m: DnsModule = module("query_name: a.test\nquery_type: A");
    let (mut facts, mut log) = (dns::Facts::default(), Log::off());
    let result = dns::probe(&m, &ctx(&srv::target(server.addr), T), &mut facts, &mut log).await;
    assert_eq!(result, Ok(()));
    assert!(log.lines().is_empty(), "a log that is off keeps nothing");
}
