//! The grpc prober against in-test loopback servers: the families blackbox reports and the
//! reason of every failure, probed directly and through `endpoint::run` (what `/probe` and
//! scheduled module targets share).

use super::*;
use crate::dns_tests::{assert_run_reason, reason, via_run};
use crate::tcp_tests::mtls_config;

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
        let (result, out) = run_grpc(&m, &srv::target(server.addr)).await;
        assert!(result.is_ok(), "{}", text(&out));
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
    let target = format!("http://{}", server.addr);
    let (result, out) = run_grpc(&m, &target).await;
    assert_eq!(reason(&result, &out), Reason::NotServing);
    assert_eq!(out.value("probe_grpc_status_code"), Some(0.0));
    assert_eq!(health(&out, "NOT_SERVING"), Some(1.0));
    assert_eq!(health(&out, "SERVING"), Some(0.0));
    let section = format!("{{service: {}}}", srv::GRPC_NOT_SERVING);
    assert_run_reason("grpc", &section, &target, T, Reason::NotServing).await;
}

#[tokio::test]
async fn grpc_unknown_service_is_not_found() {
    let server = srv::grpc_health().await;
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module("service: no.Such"), &target).await;
    assert_eq!(reason(&result, &out), Reason::NotServing);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(5.0),
        "{}",
        text(&out)
    );
    for s in ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] {
        assert_eq!(health(&out, s), Some(0.0), "{s}");
    }
    assert_run_reason("grpc", "{service: no.Such}", &target, T, Reason::NotServing).await;
}

#[tokio::test]
async fn grpc_server_without_health_service_is_unimplemented() {
    let server = srv::grpc_without_health().await;
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module("{}"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Protocol);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(12.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{}", &target, T, Reason::Protocol).await;
}

#[tokio::test]
async fn grpc_listener_that_closes_is_unavailable_and_reset() {
    let server = srv::closing().await;
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module("{}"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Reset);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{}", &target, T, Reason::Reset).await;
}

#[tokio::test]
async fn grpc_non_grpc_listener_is_unavailable_and_protocol() {
    let server = srv::http1_bad_request().await;
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module("{}"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Protocol, "{}", text(&out));
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{}", &target, T, Reason::Protocol).await;
}

#[tokio::test]
async fn grpc_closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let target = format!("127.0.0.1:{port}");
    let (result, out) = run_grpc(&module("{}"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Refused);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert!(sample(&out, "probe_grpc_duration_seconds", "phase=\"check\"").is_some());
    assert_run_reason("grpc", "{}", &target, T, Reason::Refused).await;
}

#[tokio::test]
async fn grpc_silent_server_hits_the_deadline() {
    let server = srv::silent().await;
    let target = srv::target(server.addr);
    let short = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let (result, out) = run_grpc_within(&module("{}"), &target, short).await;
    assert_eq!(reason(&result, &out), Reason::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(4.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{}", &target, short, Reason::Timeout).await;
}

#[tokio::test]
async fn grpc_connect_that_gets_no_answer_is_connect_timeout() {
    let server = srv::full_backlog().await;
    let target = srv::target(server.addr);
    let short = Duration::from_millis(300);
    let (result, out) = run_grpc_within(&module("{}"), &target, short).await;
    assert_eq!(reason(&result, &out), Reason::ConnectTimeout);
    assert_eq!(out.value("probe_grpc_status_code"), Some(4.0));
    assert_run_reason("grpc", "{}", &target, short, Reason::ConnectTimeout).await;
}

#[tokio::test]
async fn grpc_unresolvable_target_is_dns() {
    let target = format!("{}:443", unresolvable());
    let (result, out) = run_grpc(&module("{}"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Dns);
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(out.value("probe_grpc_status_code"), Some(0.0));
    assert_run_reason("grpc", "{}", &target, T, Reason::Dns).await;
}

/// What the probe cannot start: a target that cannot be parsed, a CA file that is missing.
#[tokio::test]
async fn grpc_local_problems_are_setup() {
    let (result, out) = run_grpc(&module("{}"), "127.0.0.1:99999").await;
    assert_eq!(reason(&result, &out), Reason::Setup);
    assert_eq!(
        names(&out),
        [
            "probe_grpc_duration_seconds",
            "probe_grpc_ssl",
            "probe_grpc_status_code",
            "probe_ssl_earliest_cert_expiry",
        ]
    );
    assert_run_reason("grpc", "{}", "127.0.0.1:99999", T, Reason::Setup).await;
    let server = srv::grpc_health().await;
    let section = "{tls: true, tls_config: {ca_file: /nonexistent/ca.pem}}";
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module(section), &target).await;
    assert_eq!(reason(&result, &out), Reason::Setup);
    assert_run_reason("grpc", section, &target, T, Reason::Setup).await;
}

#[tokio::test]
async fn grpc_tls_reports_ssl_and_the_certificate() {
    let cert = srv::self_signed(&[b"h2"]);
    let server = srv::grpc_health_tls(&cert).await;
    let section = format!(
        "{{tls: true, tls_config: {{ca_file: '{}', server_name: localhost}}}}",
        cert.ca_file.path().display()
    );
    let (result, out) = run_grpc(&module(&section), &srv::target(server.addr)).await;
    assert!(result.is_ok(), "{}", text(&out));
    assert_eq!(out.value("probe_grpc_ssl"), Some(1.0));
    assert!(out.value("probe_ssl_earliest_cert_expiry").unwrap_or(0.0) > 0.0);
    let n = names(&out);
    assert!(n.contains(&"probe_tls_version_info") && n.contains(&"probe_ssl_last_chain_info"));
    assert!(!n.contains(&"probe_ssl_last_chain_expiry_timestamp_seconds"));
    // Through endpoint::run: each phase under its one definition.
    let probed = via_run("grpc", &section, &srv::target(server.addr), T).await;
    assert!(probed.ok(), "{:?}", probed.log.lines());
    let phases = probed.facts.phases();
    assert!(phases.connect > Duration::ZERO && phases.tls > Duration::ZERO);
    assert!(phases.processing > Duration::ZERO, "{phases:?}");
    let check = probed
        .families()
        .value_with("probe_grpc_duration_seconds", &[("phase", "check")])
        .expect("check phase");
    let parts = phases.connect + phases.tls + phases.processing;
    assert!(parts.as_secs_f64() <= check + 1e-6, "{phases:?} vs {check}");
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
        let (result, out) = run_grpc(&m, &srv::target(server.addr)).await;
        assert_eq!(
            result.is_ok(),
            want,
            "identity {identity:?}\n{}",
            text(&out)
        );
        if want {
            assert_eq!(out.value("probe_grpc_ssl"), Some(1.0));
        } else {
            // TLS 1.3: the server's refusal arrives after the client's handshake is done, so
            // the first read fails with the server's alert.
            let r = reason(&result, &out);
            assert!(
                matches!(r, Reason::Tls | Reason::Reset),
                "{r}\n{}",
                text(&out)
            );
        }
    }
}

#[tokio::test]
async fn grpc_tls_mismatch_is_unavailable_both_ways() {
    let cert = srv::self_signed(&[b"h2"]);
    let tls_server = srv::grpc_health_tls(&cert).await;
    let plain_server = srv::grpc_health().await;
    // Plaintext client, TLS server.
    let target = srv::target(tls_server.addr);
    let (result, out) = run_grpc(&module("{}"), &target).await;
    // The TLS server answers the HTTP/2 preface with an alert and closes: the client sees the
    // connection closed (or, when it reads the alert first, bytes that are not HTTP/2).
    let plain_to_tls = |r: Reason| matches!(r, Reason::Reset | Reason::Protocol);
    let r = reason(&result, &out);
    assert!(plain_to_tls(r), "{r}\n{}", text(&out));
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    let probed = via_run("grpc", "{}", &target, T).await;
    let r = probed.result.as_ref().map_err(|f| f.reason).unwrap_err();
    assert!(plain_to_tls(r), "{r}");
    // TLS client, plaintext server.
    let section = "{tls: true, tls_config: {insecure_skip_verify: true}}";
    let plain_target = srv::target(plain_server.addr);
    let (result, out) = run_grpc(&module(section), &plain_target).await;
    assert_eq!(reason(&result, &out), Reason::Tls);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert_eq!(out.value("probe_grpc_ssl"), Some(0.0));
    assert_run_reason("grpc", section, &plain_target, T, Reason::Tls).await;
    // TLS with an untrusted certificate.
    let (result, out) = run_grpc(&module("tls: true"), &target).await;
    assert_eq!(reason(&result, &out), Reason::Tls);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(14.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{tls: true}", &target, T, Reason::Tls).await;
}

#[tokio::test]
async fn grpc_metadata_is_sent_with_the_check() {
    let server = srv::grpc_health_with_token().await;
    let target = srv::target(server.addr);
    let (result, out) = run_grpc(&module("{}"), &target).await;
    // UNAUTHENTICATED from the server: a gRPC status other than the health service's.
    assert_eq!(reason(&result, &out), Reason::Status);
    assert_eq!(
        out.value("probe_grpc_status_code"),
        Some(16.0),
        "{}",
        text(&out)
    );
    assert_run_reason("grpc", "{}", &target, T, Reason::Status).await;
    let section = format!(
        "{{metadata: {{{}: [{}]}}}}",
        srv::GRPC_TOKEN.0,
        srv::GRPC_TOKEN.1
    );
    let (result, out) = run_grpc(&module(&section), &target).await;
    assert!(result.is_ok(), "{}", text(&out));
    let probed = via_run("grpc", &section, &target, T).await;
    assert!(probed.ok(), "{:?}", probed.log.lines());
}
