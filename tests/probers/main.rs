//! The tcp, dns, icmp, grpc and unix probers against in-test loopback servers: metric names,
//! label sets and values as blackbox_exporter reports them, every failure mode, and bad input.
//! One file per prober kind, and one for upstream's example.yml; this one holds the shared
//! helpers, the module config and bad input.

#[path = "../blackbox_servers/mod.rs"]
mod blackbox_servers;
mod dns_tests;
mod example_tests;
mod grpc_tests;
mod http_tests;
mod icmp_tests;
mod tcp_tests;
mod unix_tests;
mod websocket_tests;

use std::time::Duration;

use blackbox_servers as srv;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use watchfire::probe::{Fail, Reason};
use watchfire::probers::dns::{self, DnsModule};
use watchfire::probers::grpc::{self, GrpcModule};
use watchfire::probers::icmp::{self, IcmpModule};
use watchfire::probers::tcp::{self, TcpModule};
use watchfire::probers::{Ctx, Log, Output, View};

/// A probe context for `target` with `timeout`.
fn ctx(target: &str, timeout: Duration) -> Ctx {
    Ctx {
        target: target.to_string(),
        hostname: None,
        deadline: Instant::now() + timeout,
        timeout,
        guard: None,
    }
}

const T: Duration = Duration::from_secs(5);

/// A host name that cannot resolve and is refused by the system resolver before any query is
/// sent (a 64-byte label is longer than DNS allows), so tests stay on loopback.
fn unresolvable() -> String {
    format!("{}.invalid", "x".repeat(64))
}

/// A module from its blackbox.yml section (checked with `validate`), read as a config is.
fn module<M: DeserializeOwned>(yaml: &str) -> M {
    serde_saphyr::from_str_with_options(yaml, tcp::Payload::yaml_options())
        .unwrap_or_else(|e| panic!("module YAML `{yaml}`: {e}"))
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

/// A probe's facts rendered as its blackbox families, with its log (for the assertions).
fn rendered(facts: &impl View, log: Log) -> Output {
    let mut out = Output::new();
    facts.render(&mut out);
    out.set_log(log.into_lines());
    out
}

/// The reason of a failed probe (`None` when it succeeded).
fn reason(r: &Result<(), Fail>) -> Option<Reason> {
    r.as_ref().err().map(|f| f.reason)
}

/// Compiles `m` (as loading does) and probes `target`: the verdict and the rendered facts.
async fn run_tcp(m: &TcpModule, target: &str, timeout: Duration) -> (Result<(), Fail>, Output) {
    let mut m = m.clone();
    m.compile().expect("valid module");
    let mut facts = tcp::Facts::default();
    let mut log = Log::new();
    let r =
        watchfire::probers::tcp_probe::probe(&m, &ctx(target, timeout), &mut facts, &mut log).await;
    (r, rendered(&facts, log))
}

async fn run_dns(m: &DnsModule, target: &str) -> (Result<(), Fail>, Output) {
    run_dns_within(m, target, T).await
}

/// Probes with `m` compiled as at load; the facts rendered as the families, with the log.
async fn run_dns_within(
    m: &DnsModule,
    target: &str,
    timeout: Duration,
) -> (Result<(), Fail>, Output) {
    let mut m = m.clone();
    m.compile().expect("valid module");
    let (mut facts, mut log) = (dns::Facts::default(), Log::new());
    let result = dns::probe(&m, &ctx(target, timeout), &mut facts, &mut log).await;
    let mut out = Output::new();
    facts.render(&mut out);
    out.set_log(log.into_lines());
    (result, out)
}

async fn run_grpc(m: &GrpcModule, target: &str) -> (Result<(), Fail>, Output) {
    run_grpc_within(m, target, T).await
}

/// Probes with `m` compiled as at load; the facts rendered as the families, with the log.
async fn run_grpc_within(
    m: &GrpcModule,
    target: &str,
    timeout: Duration,
) -> (Result<(), Fail>, Output) {
    let mut m = m.clone();
    m.compile().expect("valid module");
    let (mut facts, mut log) = (grpc::Facts::default(), Log::new());
    let result = grpc::probe(&m, &ctx(target, timeout), &mut facts, &mut log).await;
    let mut out = Output::new();
    facts.render(&mut out);
    out.set_log(log.into_lines());
    (result, out)
}

/// Probes `target` with `m` within `timeout`: the verdict and the rendered facts.
async fn run_icmp(m: &IcmpModule, target: &str, timeout: Duration) -> (Result<(), Fail>, Output) {
    m.validate().expect("valid module");
    let mut facts = icmp::Facts::default();
    let mut log = Log::new();
    let r = icmp::probe(m, &ctx(target, timeout), &mut facts, &mut log).await;
    (r, rendered(&facts, log))
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
    let cases: Vec<(Result<(), watchfire::diag::FieldError>, &str)> = vec![
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
        assert_eq!(e.field, field, "`{e}` should name {field}");
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
        let (r, _) = run_tcp(&tcp_m, t, short).await;
        assert!(r.is_err(), "tcp `{t}`");
    }
    let dns_m: DnsModule = module("query_name: a.test");
    for t in dns_targets {
        let (result, _) = run_dns_within(&dns_m, t, short).await;
        assert!(result.is_err(), "dns `{t}`");
    }
    let grpc_m: GrpcModule = module("{}");
    for t in grpc_targets {
        let (result, _) = run_grpc_within(&grpc_m, t, short).await;
        assert!(result.is_err(), "grpc `{t}`");
    }
    let icmp_m: IcmpModule = module("payload_size: 65000");
    for t in icmp_targets {
        let _ = run_icmp(&icmp_m, t, short).await;
    }
}
