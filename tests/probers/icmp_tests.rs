//! The icmp prober against in-test loopback servers.

use super::tcp_tests::via_endpoint;
use super::*;

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
    let (r, out) = run_icmp(&module("preferred_ip_protocol: ip4"), "127.0.0.1", T).await;
    require_icmp(&out);
    assert!(r.is_ok(), "{}", text(&out));
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
        let (r, out) = run_icmp(&module(yaml), "::1", T).await;
        require_icmp(&out);
        assert!(r.is_ok(), "{}", text(&out));
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
        let (r, out) = run_icmp(&module(yaml), target, T).await;
        require_icmp(&out);
        assert!(r.is_ok(), "{yaml}\n{}", text(&out));
    }
}

#[tokio::test]
async fn icmp_to_an_unresolvable_host_fails() {
    let (r, out) = run_icmp(&module("{}"), &unresolvable(), T).await;
    assert_eq!(reason(&r), Some(Reason::Dns));
    let p = via_endpoint("prober: icmp", &unresolvable(), T).await;
    assert_eq!(reason(&p.result), Some(Reason::Dns));
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(
        sample(&out, "probe_icmp_duration_seconds", "phase=\"rtt\""),
        Some(0.0)
    );
}

#[tokio::test]
async fn icmp_through_the_endpoint_succeeds_with_blackbox_families() {
    let p = via_endpoint(
        "prober: icmp\nicmp: {preferred_ip_protocol: ip4}",
        "127.0.0.1",
        T,
    )
    .await;
    assert!(p.ok(), "{:?}", p.log.lines());
    let families = p.families();
    assert_eq!(families.value("probe_success"), Some(1.0));
    assert_eq!(families.value("probe_ip_protocol"), Some(4.0));
    let rtt = families
        .value_with("probe_icmp_duration_seconds", &[("phase", "rtt")])
        .expect("rtt");
    // The one phase definition: the round trip is `processing`.
    assert_eq!(p.facts.phases().processing.as_secs_f64(), rtt);
}

/// 0.0.0.0 reaches this host, whose reply comes from another address: it is never the reply
/// to the request, so none arrives before the deadline.
#[tokio::test]
async fn icmp_without_a_reply_before_the_deadline_is_a_timeout() {
    let short = Duration::from_millis(300);
    let m: IcmpModule = module("preferred_ip_protocol: ip4");
    let (r, out) = run_icmp(&m, "0.0.0.0", short).await;
    require_icmp(&out);
    assert_eq!(reason(&r), Some(Reason::Timeout), "{}", text(&out));
    assert_eq!(
        sample(&out, "probe_icmp_duration_seconds", "phase=\"rtt\""),
        Some(0.0)
    );
    let p = via_endpoint(
        "prober: icmp\nicmp: {preferred_ip_protocol: ip4}",
        "0.0.0.0",
        short,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Timeout));
}

/// A socket that cannot be set up (here: bound to an address this host does not have; the
/// same reason as a raw or datagram ICMP socket not permitted) is a local problem.
#[tokio::test]
async fn icmp_socket_that_cannot_be_set_up_is_setup() {
    let yaml = "source_ip_address: 192.0.2.1\npreferred_ip_protocol: ip4";
    let (r, out) = run_icmp(&module(yaml), "127.0.0.1", T).await;
    assert_eq!(reason(&r), Some(Reason::Setup), "{}", text(&out));
    let p = via_endpoint(
        "prober: icmp\nicmp: {source_ip_address: 192.0.2.1, preferred_ip_protocol: ip4}",
        "127.0.0.1",
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Setup));
}

/// The limited broadcast address: the kernel refuses to send an echo request there from a
/// socket not allowed to broadcast (nothing leaves this host).
#[tokio::test]
async fn icmp_request_that_cannot_be_sent_is_connect() {
    let m: IcmpModule = module("preferred_ip_protocol: ip4");
    let (r, out) = run_icmp(&m, "255.255.255.255", T).await;
    require_icmp(&out);
    assert_eq!(reason(&r), Some(Reason::Connect), "{}", text(&out));
    let p = via_endpoint(
        "prober: icmp\nicmp: {preferred_ip_protocol: ip4}",
        "255.255.255.255",
        T,
    )
    .await;
    assert_eq!(reason(&p.result), Some(Reason::Connect));
}
