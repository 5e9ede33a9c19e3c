//! The grpc prober against in-test loopback servers.

use super::*;
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
