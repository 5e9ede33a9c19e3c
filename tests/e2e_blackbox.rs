//! Differential tests of the HTTP prober: the real blackbox_exporter (Debian's 0.23) and
//! watchfire's `/probe` on one blackbox.yml, against the same in-test HTTP(S) server, scenario by
//! scenario. Per scenario: equal `probe_success`, equal metric names and label names, equal
//! HELP/TYPE, and equal values of every deterministic metric (status code, redirects, content
//! lengths, ssl, version, regex flag, IP, Last-Modified, certificate metrics).
//!
//! `cargo test --features e2e --test e2e_blackbox`; `.ci/run` installs the exporter. A missing
//! exporter fails the tests: they never pass by skipping.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/blackbox.rs"]
mod harness;

use harness::{
    assert_equivalent, enc, set_aside_upstream_additions, Pair, ParsedMetrics, Scenarios,
};

/// Metrics whose values do not depend on timing.
const VALUES: &[&str] = &[
    "probe_http_status_code",
    "probe_http_redirects",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_http_ssl",
    "probe_http_version",
    "probe_failed_due_to_regex",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
    "probe_http_last_modified_timestamp_seconds",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_tls_version_info",
];

fn modules(s: &Scenarios) -> String {
    let ca = s.cert_path.display();
    format!(
        r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
  accept_404:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [404]
  accept_302:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [302]
  no_follow:
    prober: http
    timeout: 5s
    http:
      follow_redirects: false
  no_follow_old:
    prober: http
    timeout: 5s
    http:
      no_follow_redirects: true
  post:
    prober: http
    timeout: 5s
    http:
      method: POST
      body: ping
      headers:
        X-Probe: "yes"
  body_ok:
    prober: http
    timeout: 5s
    http:
      fail_if_body_not_matches_regexp: ["healthy"]
  body_err:
    prober: http
    timeout: 5s
    http:
      fail_if_body_matches_regexp: ["ERROR", "panic"]
  header_need:
    prober: http
    timeout: 5s
    http:
      fail_if_header_not_matches:
        - header: X-Version
          regexp: '^1\.'
  header_fail:
    prober: http
    timeout: 5s
    http:
      fail_if_header_matches:
        - header: x-multi
          regexp: '^b$'
  header_missing:
    prober: http
    timeout: 5s
    http:
      fail_if_header_not_matches:
        - header: X-Absent
          regexp: '.*'
  header_missing_ok:
    prober: http
    timeout: 5s
    http:
      fail_if_header_not_matches:
        - header: X-Absent
          regexp: '.*'
          allow_missing: true
  gzip:
    prober: http
    timeout: 5s
    http:
      compression: gzip
  deflate:
    prober: http
    timeout: 5s
    http:
      compression: deflate
  http11_only:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1"]
  http10_ok:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.0", "HTTP/1.1"]
  tls_insecure:
    prober: http
    timeout: 5s
    http:
      tls_config:
        insecure_skip_verify: true
  tls_ca:
    prober: http
    timeout: 5s
    http:
      tls_config:
        ca_file: {ca}
  tls_ca_name:
    prober: http
    timeout: 5s
    http:
      tls_config:
        ca_file: {ca}
        server_name: localhost
  h2_only:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/2.0"]
      tls_config:
        ca_file: {ca}
  h2_off:
    prober: http
    timeout: 5s
    http:
      enable_http2: false
      tls_config:
        ca_file: {ca}
  fail_if_ssl:
    prober: http
    timeout: 5s
    http:
      fail_if_ssl: true
      tls_config:
        insecure_skip_verify: true
  fail_if_not_ssl:
    prober: http
    timeout: 5s
    http:
      fail_if_not_ssl: true
  slow:
    prober: http
    timeout: 1s
  limit:
    prober: http
    timeout: 5s
    http:
      body_size_limit: 1MB
  basic:
    prober: http
    timeout: 5s
    http:
      basic_auth:
        username: u
        password: p
  bearer:
    prober: http
    timeout: 5s
    http:
      bearer_token: tok
  vhost:
    prober: http
    timeout: 5s
    http:
      headers:
        Host: vhost.example
  ip4:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"#
    )
}

async fn setup() -> (Scenarios, Pair) {
    let s = Scenarios::start().await;
    let pair = Pair::start(&modules(&s)).await;
    (s, pair)
}

/// Probes every `(scenario, target, module)` on both and asserts they agree.
async fn check_all(
    pair: &Pair,
    cases: &[(&str, String, &str)],
) -> Vec<(ParsedMetrics, ParsedMetrics)> {
    let mut all = Vec::new();
    for (what, target, module) in cases {
        let (bb, mut wf) = pair.probe(target, module).await;
        set_aside_upstream_additions(&mut wf);
        assert_equivalent(what, &bb, &wf, VALUES, &[]);
        all.push((bb, wf));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_agree() {
    let (s, pair) = setup().await;
    let r = check_all(
        &pair,
        &[
            ("200", s.url("/status/200"), "http_2xx"),
            ("204", s.url("/status/204"), "http_2xx"),
            ("404 fails", s.url("/status/404"), "http_2xx"),
            ("404 accepted", s.url("/status/404"), "accept_404"),
            ("201 not accepted", s.url("/status/201"), "accept_404"),
            ("500", s.url("/status/500"), "http_2xx"),
            ("no scheme", format!("{}/status/200", s.addr), "http_2xx"),
            ("ip4 only", s.url("/status/200"), "ip4"),
            ("refused", "http://127.0.0.1:1/".to_string(), "http_2xx"),
        ],
    )
    .await;
    assert_eq!(r[0].1.success(), Some(1.0));
    assert_eq!(r[2].1.success(), Some(0.0));
    assert_eq!(r[3].1.success(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_and_loops_agree() {
    let (s, pair) = setup().await;
    let r = check_all(
        &pair,
        &[
            ("three relative", s.url("/redirect/3"), "http_2xx"),
            ("absolute", s.url("/redirect-abs/2"), "http_2xx"),
            ("loop", s.url("/loop"), "http_2xx"),
            ("loop, 302 accepted", s.url("/loop"), "accept_302"),
            ("not followed", s.url("/redirect/2"), "no_follow"),
            (
                "not followed (old name)",
                s.url("/redirect/2"),
                "no_follow_old",
            ),
            ("303 turns POST into GET", s.url("/see-other"), "post"),
            (
                "cookie kept across a redirect",
                s.url("/cookie-set"),
                "http_2xx",
            ),
            ("3xx without Location", s.url("/no-location"), "http_2xx"),
        ],
    )
    .await;
    assert_eq!(r[0].1.value("probe_http_redirects"), Some(3.0));
    assert_eq!(r[2].1.value("probe_http_redirects"), Some(11.0));
    assert_eq!(r[4].1.value("probe_http_redirects"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_and_header_regexps_agree() {
    let (s, pair) = setup().await;
    let r = check_all(
        &pair,
        &[
            ("body matches", s.url("/body/ok"), "body_ok"),
            ("body does not match", s.url("/body/error"), "body_ok"),
            (
                "body matches a fail regexp",
                s.url("/body/error"),
                "body_err",
            ),
            ("body clean", s.url("/body/ok"), "body_err"),
            ("header matches", s.url("/headers"), "header_need"),
            ("header absent", s.url("/body/ok"), "header_need"),
            (
                "one of two values matches",
                s.url("/headers"),
                "header_fail",
            ),
            (
                "required header missing",
                s.url("/headers"),
                "header_missing",
            ),
            ("missing allowed", s.url("/headers"), "header_missing_ok"),
            ("regexp after a bad status", s.url("/status/500"), "body_ok"),
        ],
    )
    .await;
    assert_eq!(r[1].1.value("probe_failed_due_to_regex"), Some(1.0));
    assert_eq!(r[0].1.value("probe_failed_due_to_regex"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_protocol_versions_and_sizes_agree() {
    let (s, pair) = setup().await;
    let r = check_all(
        &pair,
        &[
            ("gzip decoded", s.url("/gzip"), "gzip"),
            ("gzip not decoded", s.url("/gzip"), "http_2xx"),
            ("gzip expected, plain sent", s.url("/body/ok"), "gzip"),
            ("deflate decoded", s.url("/deflate"), "deflate"),
            ("HTTP/1.0", s.url("/http10"), "http_2xx"),
            ("HTTP/1.0 refused", s.url("/http10"), "http11_only"),
            ("HTTP/1.0 allowed", s.url("/http10"), "http10_ok"),
            ("chunked", s.url("/chunked"), "http_2xx"),
            ("huge body", s.url("/huge"), "http_2xx"),
            ("huge body over the limit", s.url("/huge"), "limit"),
            ("Last-Modified", s.url("/last-modified"), "http_2xx"),
        ],
    )
    .await;
    assert_eq!(
        r[0].1.value("probe_http_uncompressed_body_length"),
        Some((harness::COMPRESSED_TEXT.len() * 100) as f64)
    );
    assert_eq!(r[4].1.value("probe_http_version"), Some(1.0));
    assert_eq!(
        r[9].1.value("probe_http_uncompressed_body_length"),
        Some(1048576.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_tls_agrees() {
    let (s, pair) = setup().await;
    let r = check_all(
        &pair,
        &[
            ("insecure", s.tls_url("/status/200"), "tls_insecure"),
            ("unknown CA", s.tls_url("/status/200"), "http_2xx"),
            ("trusted by ca_file", s.tls_url("/status/200"), "tls_ca"),
            ("server_name", s.tls_url("/status/200"), "tls_ca_name"),
            ("fail_if_ssl", s.tls_url("/status/200"), "fail_if_ssl"),
            ("fail_if_not_ssl", s.url("/status/200"), "fail_if_not_ssl"),
            (
                "fail_if_not_ssl over TLS",
                s.tls_url("/status/200"),
                "fail_if_not_ssl",
            ),
            ("TLS redirects", s.tls_url("/redirect/2"), "tls_insecure"),
            ("HTTP/2 by ALPN", s.h2_url("/"), "tls_ca"),
            ("HTTP/2 required", s.h2_url("/"), "h2_only"),
            ("HTTP/2 disabled", s.h2_url("/"), "h2_off"),
        ],
    )
    .await;
    assert_eq!(r[0].1.success(), Some(1.0));
    assert_eq!(r[0].1.value("probe_http_ssl"), Some(1.0));
    assert_eq!(r[1].1.success(), Some(0.0));
    assert_eq!(r[2].1.success(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_auth_and_hosts_agree() {
    let (s, pair) = setup().await;
    check_all(
        &pair,
        &[
            ("POST with body and header", s.url("/need-post"), "post"),
            ("GET where POST is wanted", s.url("/need-post"), "http_2xx"),
            ("basic auth", s.url("/auth"), "basic"),
            ("bearer token", s.url("/auth"), "bearer"),
            ("no credentials", s.url("/auth"), "http_2xx"),
            ("Host header from the module", s.url("/vhost"), "vhost"),
            ("default Host", s.url("/vhost"), "http_2xx"),
        ],
    )
    .await;
    let q = format!(
        "target={}&module=http_2xx&hostname=vhost.example",
        enc(&s.url("/vhost"))
    );
    let (bb, wf) = pair.probe_params(&q, &[]).await;
    assert_equivalent("hostname parameter", &bb, &wf, VALUES, &[]);
    assert_eq!(wf.success(), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_targets_time_out_alike() {
    let (s, pair) = setup().await;
    let started = std::time::Instant::now();
    let (bb, wf) = pair.probe(&s.url("/slow"), "slow").await;
    assert_equivalent("slow", &bb, &wf, VALUES, &[]);
    assert_eq!(wf.success(), Some(0.0));
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    // The scrape's own timeout rules when it is shorter than the module's.
    let q = format!("target={}&module=http_2xx", enc(&s.url("/slow")));
    let (bb, wf) = pair
        .probe_params(&q, &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")])
        .await;
    assert_equivalent("slow, scrape timeout 1.5 s", &bb, &wf, VALUES, &[]);
    let d = wf.value("probe_duration_seconds").expect("duration");
    assert!((0.9..1.5).contains(&d), "probe took {d} s, want about 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_answers_agree() {
    let (s, pair) = setup().await;
    for (what, q) in [
        ("missing target", "module=http_2xx".to_string()),
        ("empty target", "target=&module=http_2xx".to_string()),
        (
            "unknown module",
            format!("target={}&module=nope", enc(&s.url("/"))),
        ),
    ] {
        let (bb, wf) = pair.get_both(&format!("/probe?{q}"), &[]).await;
        assert_eq!(bb.status, wf.status, "{what}: status");
        assert_eq!(bb.body, wf.body, "{what}: message");
    }
    // Defaults to http_2xx.
    let (bb, wf) = pair
        .probe_params(&format!("target={}", enc(&s.url("/status/200"))), &[])
        .await;
    assert_equivalent("default module", &bb, &wf, VALUES, &[]);
    // The unknown module was counted on both.
    let (bbm, wfm) = pair.get_both("/metrics", &[]).await;
    let bbm = ParsedMetrics::parse(&bbm.body);
    let wfm = ParsedMetrics::parse(&wfm.body);
    assert_eq!(bbm.value("blackbox_module_unknown_total"), Some(1.0));
    assert_eq!(wfm.value("blackbox_module_unknown_total"), Some(1.0));
    assert_eq!(
        bbm.families["blackbox_module_unknown_total"].help,
        wfm.families["blackbox_module_unknown_total"].help
    );
}
