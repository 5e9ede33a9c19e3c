//! blackbox_exporter compatibility, hermetic: `modules:` loading (Debian's blackbox.yml, errors
//! with file/line/field), `/probe` answers and status codes, the timeout rule, `/config`
//! redaction, the HTTP module's options against an in-test HTTP(S) server, and client
//! certificates (mutual TLS) in the config and against a server that requires one.

mod blackbox_servers;
mod common;
#[path = "common/blackbox.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{enc, get, ParsedMetrics, Reply, Scenarios, Watchfire};
use watchfire::config::{load, load_str};
use watchfire::diag::ConfigError;

const DEBIAN_BLACKBOX_YML: &str = "/etc/prometheus/blackbox.yml";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

/// The errors of a config that must not load.
fn errors(name: &str, text: &str) -> Vec<ConfigError> {
    match load_str(name, text) {
        Ok(_) => panic!("{name} loaded but should have failed:\n{text}"),
        Err(e) => e.0,
    }
}

#[track_caller]
fn has_error(errs: &[ConfigError], line: u64, field: &str, fragment: &str) {
    assert!(
        errs.iter()
            .any(|e| e.line == line && e.field == field && e.message.contains(fragment)),
        "want an error at line {line}, field {field}, containing {fragment:?}; got:\n{}",
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// watchfire serving `yaml` (written to a temporary blackbox.yml).
async fn serve(yaml: &str) -> (tempfile::TempDir, Watchfire) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "blackbox.yml", yaml);
    let wf = Watchfire::start(&path).await;
    (dir, wf)
}

async fn probe_raw(wf: &Watchfire, query: &str, headers: &[(&str, &str)]) -> Reply {
    get(wf.addr, &format!("/probe?{query}"), headers).await
}

/// `/probe` that must answer 200; its metrics.
async fn probe(wf: &Watchfire, target: &str, module: &str) -> ParsedMetrics {
    let r = probe_raw(wf, &format!("target={}&module={module}", enc(target)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    ParsedMetrics::parse(&r.body)
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn debian_blackbox_yml_loads_unchanged() {
    let path = Path::new(DEBIAN_BLACKBOX_YML);
    assert!(
        path.exists(),
        "{DEBIAN_BLACKBOX_YML} is missing: install Debian's prometheus-blackbox-exporter (.ci/run does)"
    );
    let c = load(path).unwrap_or_else(|e| panic!("Debian's blackbox.yml does not load:\n{e}"));
    for name in ["http_2xx", "http_post_2xx", "tcp_connect", "icmp"] {
        assert!(c.modules.get(name).is_some(), "module {name} missing");
    }
    let post = c.modules.get("http_post_2xx").expect("http_post_2xx");
    assert_eq!(post.http.method, http::Method::POST);
    assert!(c.targets.is_empty());
}

#[test]
fn modules_sit_beside_targets_failover_and_defaults() {
    let c = load_str(
        "mixed.yaml",
        "defaults:\n  interval: 10s\ntargets:\n  - name: api\n    url: http://127.0.0.1:1/health\n    module: strict\nmodules:\n  strict:\n    prober: http\n    timeout: 3s\n    http:\n      valid_status_codes: [200]\n      fail_if_not_ssl: false\n  ping:\n    prober: icmp\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.targets[0].module(), Some("strict"));
    let m = c.modules.get("strict").expect("module");
    assert_eq!(m.timeout, Some(Duration::from_secs(3)));
    assert_eq!(m.http.valid_status_codes, vec![200]);
    assert_eq!(c.modules.len(), 2);
}

#[test]
fn unknown_module_fields_name_file_line_and_field() {
    let errs = errors(
        "blackbox.yml",
        "modules:\n  http_2xx:\n    prober: http\n    http:\n      methd: GET\n",
    );
    has_error(
        &errs,
        5,
        "modules.http_2xx.http.methd",
        "unknown key `methd`",
    );
    let errs = errors(
        "blackbox.yml",
        "modules:\n  m:\n    prober: http\n    htp: {}\n",
    );
    has_error(&errs, 4, "modules.m.htp", "unknown key");
    let shown = errs[0].to_string();
    assert!(shown.starts_with("blackbox.yml:4:"), "{shown}");
}

#[test]
fn module_mistakes_are_config_errors_naming_the_field() {
    let errs = errors(
        "blackbox.yml",
        r#"modules:
  a:
    prober: smtp
  b:
    http: {}
  c:
    prober: http
    timeout: soon
  d:
    prober: http
    http:
      fail_if_body_matches_regexp: ["ok", "(unclosed"]
  e:
    prober: http
    http:
      fail_if_body_json_matches_cel: "body.status == "
  f:
    prober: http
    http:
      compression: zstd
  g:
    prober: http
    http:
      body: x
      body_file: /etc/hostname
  h:
    prober: http
    http:
      basic_auth: {username: u, password: p}
      bearer_token: t
  i:
    prober: http
    http:
      fail_if_header_matches: [{header: X, regexp: "["}]
  j:
    prober: http
    http:
      tls_config: {ca_file: /etc/hostname}
"#,
    );
    has_error(&errs, 3, "modules.a.prober", "unknown prober `smtp`");
    has_error(&errs, 5, "modules.b.prober", "missing");
    has_error(&errs, 8, "modules.c.timeout", "not a duration");
    has_error(
        &errs,
        12,
        "modules.d.http.fail_if_body_matches_regexp[1]",
        "invalid regular expression",
    );
    has_error(
        &errs,
        16,
        "modules.e.http.fail_if_body_json_matches_cel",
        "invalid CEL expression",
    );
    has_error(
        &errs,
        20,
        "modules.f.http.compression",
        "unsupported compression `zstd`",
    );
    has_error(
        &errs,
        25,
        "modules.g.http.body_file",
        "both are not allowed",
    );
    has_error(
        &errs,
        29,
        "modules.h.http.basic_auth",
        "at most one of basic_auth",
    );
    has_error(
        &errs,
        34,
        "modules.i.http.fail_if_header_matches[0].regexp",
        "invalid regular expression",
    );
    // A CA file that is there but holds no certificate (a missing one only fails the probes).
    has_error(
        &errs,
        38,
        "modules.j.http.tls_config.ca_file",
        "/etc/hostname",
    );
}

#[test]
fn targets_must_name_a_configured_http_module() {
    let errs = errors(
        "t.yaml",
        "targets:\n  - name: a\n    url: http://127.0.0.1:1/\n    module: nope\n  - name: b\n    url: http://127.0.0.1:1/\n    module: ping\nmodules:\n  ping:\n    prober: icmp\n",
    );
    has_error(&errs, 4, "targets[0].module", "no module named `nope`");
    has_error(&errs, 7, "targets[1].module", "icmp prober");
}

#[test]
fn a_module_defined_in_two_files_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.yml", "modules:\n  m:\n    prober: http\n");
    let b = write(dir.path(), "b.yml", "modules:\n  m:\n    prober: tcp\n");
    let errs = load(dir.path()).expect_err("duplicate module").0;
    let e = errs.iter().find(|e| e.file == b).expect("error in b.yml");
    assert_eq!(e.field, "modules.m");
    assert!(e.message.contains("already defined"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// /probe, /config, /metrics

const BASIC: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n  slow_module:\n    prober: http\n    timeout: 30s\n  vhost:\n    prober: http\n    http:\n      headers: {Host: vhost.example}\n  secret:\n    prober: http\n    http:\n      basic_auth: {username: u, password: hunter2}\n  token:\n    prober: http\n    http:\n      authorization: {type: Bearer, credentials: s3cr3t-token}\n  bearer:\n    prober: http\n    http:\n      bearer_token: another-s3cr3t\n";

#[tokio::test]
async fn missing_target_and_unknown_module_answer_like_blackbox() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    let r = probe_raw(&wf, "module=http_2xx", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Target parameter is missing\n")
    );
    let r = probe_raw(&wf, "target=&module=http_2xx", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Target parameter is missing\n")
    );
    let before = s.request_count();
    let r = probe_raw(
        &wf,
        &format!("target={}&module=nope", enc(&s.url("/"))),
        &[],
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Unknown module \"nope\"\n")
    );
    assert_eq!(
        s.request_count(),
        before,
        "an unknown module must not probe anything"
    );
    let m = ParsedMetrics::parse(&get(wf.addr, "/metrics", &[]).await.body);
    assert_eq!(m.value("blackbox_module_unknown_total"), Some(1.0));
    assert_eq!(m.families["blackbox_module_unknown_total"].kind, "counter");
}

#[tokio::test]
async fn module_defaults_to_http_2xx() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    let r = probe_raw(&wf, &format!("target={}", enc(&s.url("/status/200"))), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.content_type
    );
    let m = ParsedMetrics::parse(&r.body);
    assert_eq!(m.success(), Some(1.0));
    // Families sorted by name, as Go's registry writes them.
    let names: Vec<&String> = m.families.keys().collect();
    let order: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap_or(""))
        .collect();
    assert_eq!(order, names.iter().map(|s| s.as_str()).collect::<Vec<_>>());
}

#[tokio::test]
async fn malformed_targets_are_a_clear_400_and_probe_nothing() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    let before = s.request_count();
    for (target, why) in [
        ("invalid://", "scheme `invalid`"),
        ("ftp://127.0.0.1/", "scheme `ftp`"),
        ("http://127.0.0.1/a b", "space"),
        ("http://127.0.0.1/\u{7}", "control character"),
        ("http://", "malformed"),
        ("http://[::1/", "malformed"),
    ] {
        let r = probe_raw(&wf, &format!("target={}&module=http_2xx", enc(target)), &[]).await;
        assert_eq!(r.status, 400, "{target:?}: {}", r.body);
        assert!(r.body.contains(why), "{target:?}: {}", r.body);
    }
    assert_eq!(s.request_count(), before);
}

#[tokio::test]
async fn timeout_header_sets_the_probe_timeout_and_absurd_values_are_400() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    // The effective timeout is in the `Beginning probe` line, a debug one.
    wf.runtime
        .blackbox()
        .set_log_level(watchfire::probers::Level::Debug);
    let q = format!(
        "target={}&module=slow_module&debug=true",
        enc(&s.url("/status/200"))
    );
    let r = probe_raw(&wf, &q, &[("X-Prometheus-Scrape-Timeout-Seconds", "3")]).await;
    assert!(r.body.contains("timeout_seconds=2.5"), "{}", r.body);
    let r = probe_raw(&wf, &q, &[]).await;
    assert!(
        r.body.contains("timeout_seconds=30"),
        "module timeout: {}",
        r.body
    );
    let q2 = format!(
        "target={}&module=vhost&debug=true",
        enc(&s.url("/status/200"))
    );
    let r = probe_raw(&wf, &q2, &[]).await;
    assert!(
        r.body.contains("timeout_seconds=119.5"),
        "no timeout at all: {}",
        r.body
    );
    for bad in ["abc", "-3", "NaN", "1e400", "999999"] {
        let r = probe_raw(&wf, &q, &[("X-Prometheus-Scrape-Timeout-Seconds", bad)]).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(
            r.body.contains("X-Prometheus-Scrape-Timeout-Seconds"),
            "{}",
            r.body
        );
    }
    // The deadline holds: a 1 s scrape timeout against a 3 s server.
    let t0 = std::time::Instant::now();
    let q = format!("target={}&module=slow_module", enc(&s.url("/slow")));
    let r = probe_raw(&wf, &q, &[("X-Prometheus-Scrape-Timeout-Seconds", "1")]).await;
    let m = ParsedMetrics::parse(&r.body);
    assert_eq!(m.success(), Some(0.0));
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn hostname_sets_the_host_header_and_conflicts_are_400() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    let t = enc(&s.url("/vhost"));
    let m = ParsedMetrics::parse(
        &probe_raw(&wf, &format!("target={t}&hostname=vhost.example"), &[])
            .await
            .body,
    );
    assert_eq!(m.success(), Some(1.0));
    let r = probe_raw(
        &wf,
        &format!("target={t}&module=vhost&hostname=other.example"),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("host header defined both"), "{}", r.body);
    let m = probe(&wf, &s.url("/vhost"), "vhost").await;
    assert_eq!(m.success(), Some(1.0));
}

#[tokio::test]
async fn debug_output_has_log_metrics_and_redacted_module() {
    let s = Scenarios::start().await;
    let (_d, wf) = serve(BASIC).await;
    wf.runtime
        .blackbox()
        .set_log_level(watchfire::probers::Level::Debug);
    let r = probe_raw(
        &wf,
        &format!("target={}&module=secret&debug=true", enc(&s.url("/auth"))),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let b = &r.body;
    let (log, rest) = b
        .split_once("\n\n\n\nMetrics that would have been returned:\n")
        .expect(b);
    let (metrics, module) = rest.split_once("\n\n\n\nModule configuration:\n").expect(b);
    assert!(log.starts_with("Logs for the probe:\n"), "{b}");
    assert!(log.contains("Beginning probe"), "{log}");
    // The scenario wants password `p`: the configured one is refused.
    assert!(
        log.contains("Received HTTP response status_code=401"),
        "{log}"
    );
    assert_eq!(ParsedMetrics::parse(metrics).success(), Some(0.0));
    assert!(module.contains("password: <secret>"), "{module}");
    assert!(!b.contains("hunter2"), "the password leaked:\n{b}");
}

#[tokio::test]
async fn config_endpoint_shows_modules_with_secrets_hidden() {
    let (_d, wf) = serve(BASIC).await;
    let r = get(wf.addr, "/config", &[]).await;
    assert_eq!(r.status, 200);
    for secret in ["hunter2", "s3cr3t-token", "another-s3cr3t"] {
        assert!(!r.body.contains(secret), "{secret} leaked:\n{}", r.body);
    }
    let v: serde_json::Value = serde_saphyr::from_str(&r.body).expect("/config is YAML");
    let m = &v["modules"];
    assert_eq!(m["secret"]["http"]["basic_auth"]["password"], "<secret>");
    assert_eq!(m["secret"]["http"]["basic_auth"]["username"], "u");
    assert_eq!(
        m["token"]["http"]["authorization"]["credentials"],
        "<secret>"
    );
    assert_eq!(m["bearer"]["http"]["bearer_token"], "<secret>");
    assert_eq!(m["http_2xx"]["timeout"], "5s");
    assert_eq!(m["http_2xx"]["http"]["follow_redirects"], true);
    let r = get(wf.addr, "/-/reload", &[]).await;
    assert_eq!(r.status, 405, "/-/reload is POST-only");
}

#[tokio::test]
async fn scheduled_targets_run_their_module_and_show_it() {
    let s = Scenarios::start().await;
    let yaml = format!(
        "targets:\n  - name: vhost\n    url: {}\n    interval: 100ms\n    timeout: 80ms\n    module: vhost\n  - name: plain\n    url: {}\n    interval: 100ms\n    timeout: 80ms\nmodules:\n  vhost:\n    prober: http\n    http:\n      headers: {{Host: vhost.example}}\n",
        s.url("/vhost"),
        s.url("/vhost")
    );
    let (_d, wf) = serve(&yaml).await;
    // The last /api/v1/targets answer, shown when the deadline passes.
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    let done = common::poll_until(Duration::from_secs(10), || async {
        let r = get(wf.addr, "/api/v1/targets", &[]).await;
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let t = |n: &str| {
            v.as_array()
                .expect("array")
                .iter()
                .find(|t| t["name"] == n)
                .cloned()
                .expect("target")
        };
        let (vh, plain) = (t("vhost"), t("plain"));
        assert_eq!(vh["module"], "vhost");
        assert!(plain["module"].is_null());
        let done = vh["last_success"] == true && plain["last_status"] == 421;
        if done {
            // The module's Host header made the difference.
            assert_eq!(vh["last_status"], 200);
        }
        *last.lock().unwrap() = v;
        done.then_some(())
    })
    .await;
    assert!(done.is_some(), "targets: {:#}", last.lock().unwrap());
}

// ---------------------------------------------------------------------------------------------
// HTTP options

fn http_modules(s: &Scenarios) -> String {
    format!(
        r#"modules:
  http_2xx: {{prober: http, timeout: 5s}}
  no_follow: {{prober: http, http: {{follow_redirects: false}}}}
  no_follow_old: {{prober: http, http: {{no_follow_redirects: true}}}}
  post: {{prober: http, http: {{method: POST, body: ping, headers: {{X-Probe: "yes"}}}}}}
  body_file: {{prober: http, http: {{method: POST, body_file: {body}, headers: {{X-Probe: "yes"}}}}}}
  gzip: {{prober: http, http: {{compression: gzip}}}}
  deflate: {{prober: http, http: {{compression: deflate}}}}
  regex: {{prober: http, http: {{fail_if_body_not_matches_regexp: [healthy], fail_if_body_matches_regexp: [ERROR]}}}}
  headers: {{prober: http, http: {{fail_if_header_not_matches: [{{header: X-Version, regexp: '^1\.2'}}], fail_if_header_matches: [{{header: Server, regexp: nginx}}]}}}}
  cel_ok: {{prober: http, http: {{fail_if_body_json_not_matches_cel: "body.status == 'ok' && body.version >= 3 && body.checks.all(c, c.ok)"}}}}
  cel_bad: {{prober: http, http: {{fail_if_body_json_matches_cel: "body.version > 2"}}}}
  http11: {{prober: http, http: {{valid_http_versions: [HTTP/1.1]}}}}
  tls_insecure: {{prober: http, http: {{tls_config: {{insecure_skip_verify: true}}}}}}
  tls_ca: {{prober: http, http: {{tls_config: {{ca_file: {ca}}}}}}}
  tls_min13: {{prober: http, http: {{tls_config: {{ca_file: {ca}, min_version: TLS13}}}}}}
  fail_if_ssl: {{prober: http, http: {{fail_if_ssl: true, tls_config: {{insecure_skip_verify: true}}}}}}
  fail_if_not_ssl: {{prober: http, http: {{fail_if_not_ssl: true}}}}
  limit: {{prober: http, http: {{body_size_limit: 64KB}}}}
  basic: {{prober: http, http: {{basic_auth: {{username: u, password_file: {pass}}}}}}}
  bearer_file: {{prober: http, http: {{bearer_token_file: {token}}}}}
"#,
        ca = s.cert_path.display(),
        body = s.cert_path.with_file_name("body.txt").display(),
        pass = s.cert_path.with_file_name("pass.txt").display(),
        token = s.cert_path.with_file_name("token.txt").display(),
    )
}

async fn http_setup() -> (Scenarios, tempfile::TempDir, Watchfire) {
    let s = Scenarios::start().await;
    let dir = s.cert_path.parent().expect("dir").to_path_buf();
    std::fs::write(dir.join("body.txt"), "ping").expect("body file");
    std::fs::write(dir.join("pass.txt"), "p\n").expect("password file");
    std::fs::write(dir.join("token.txt"), "tok").expect("token file");
    let (d, wf) = serve(&http_modules(&s)).await;
    (s, d, wf)
}

#[tokio::test]
async fn redirects_are_counted_and_loops_stop_at_ten() {
    let (s, _d, wf) = http_setup().await;
    let m = probe(&wf, &s.url("/redirect/4"), "http_2xx").await;
    assert_eq!(m.success(), Some(1.0));
    assert_eq!(m.value("probe_http_redirects"), Some(4.0));
    let m = probe(&wf, &s.url("/loop"), "http_2xx").await;
    assert_eq!(m.success(), Some(0.0));
    assert_eq!(m.value("probe_http_redirects"), Some(11.0));
    assert_eq!(m.value("probe_http_status_code"), Some(302.0));
    for module in ["no_follow", "no_follow_old"] {
        let m = probe(&wf, &s.url("/redirect/3"), module).await;
        assert_eq!(m.value("probe_http_redirects"), Some(1.0), "{module}");
        assert_eq!(m.value("probe_http_status_code"), Some(302.0), "{module}");
    }
    let m = probe(&wf, &s.url("/redirect-abs/2"), "http_2xx").await;
    assert_eq!(m.success(), Some(1.0));
    // 303 turns POST into GET; the cookie set on a redirect comes back.
    let m = probe(&wf, &s.url("/see-other"), "post").await;
    assert_eq!(m.value("probe_http_uncompressed_body_length"), Some(3.0));
    let m = probe(&wf, &s.url("/cookie-set"), "http_2xx").await;
    assert_eq!(m.value("probe_http_status_code"), Some(200.0));
    let heads = s.requests.lock().expect("requests").join("\n");
    assert!(heads.contains("Referer: http://"), "{heads}");
}

#[tokio::test]
async fn compressed_bodies_are_decoded_and_counted() {
    let (s, _d, wf) = http_setup().await;
    let plain = (harness::COMPRESSED_TEXT.len() * 100) as f64;
    for (path, module) in [("/gzip", "gzip"), ("/deflate", "deflate")] {
        let m = probe(&wf, &s.url(path), module).await;
        assert_eq!(m.success(), Some(1.0), "{path}");
        assert_eq!(m.value("probe_http_uncompressed_body_length"), Some(plain));
        assert!(m.value("probe_http_content_length").unwrap() < plain);
    }
    let m = probe(&wf, &s.url("/body/ok"), "gzip").await;
    assert_eq!(m.success(), Some(0.0), "a plain body is not gzip");
    // blackbox's gzip reader swallowed the small body while looking for a header.
    assert_eq!(m.value("probe_http_uncompressed_body_length"), Some(0.0));
}

#[tokio::test]
async fn body_and_header_regexps_set_the_regex_flag() {
    let (s, _d, wf) = http_setup().await;
    let m = probe(&wf, &s.url("/body/ok"), "regex").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_regex")),
        (Some(1.0), Some(0.0))
    );
    let m = probe(&wf, &s.url("/body/error"), "regex").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_regex")),
        (Some(0.0), Some(1.0))
    );
    let m = probe(&wf, &s.url("/headers"), "headers").await;
    assert_eq!(m.success(), Some(1.0));
    let m = probe(&wf, &s.url("/body/ok"), "headers").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_regex")),
        (Some(0.0), Some(1.0))
    );
}

#[tokio::test]
async fn cel_checks_run_over_the_json_body() {
    let (s, _d, wf) = http_setup().await;
    let m = probe(&wf, &s.url("/json"), "cel_ok").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_cel")),
        (Some(1.0), Some(0.0))
    );
    let m = probe(&wf, &s.url("/json"), "cel_bad").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_cel")),
        (Some(0.0), Some(1.0))
    );
    let m = probe(&wf, &s.url("/json-bad"), "cel_ok").await;
    assert_eq!(
        (m.success(), m.value("probe_failed_due_to_cel")),
        (Some(0.0), Some(1.0))
    );
    // Only modules with a CEL check report the flag (upstream).
    let m = probe(&wf, &s.url("/json"), "http_2xx").await;
    assert!(!m.families.contains_key("probe_failed_due_to_cel"));
}

#[tokio::test]
async fn http10_answers_report_version_1() {
    let (s, _d, wf) = http_setup().await;
    let m = probe(&wf, &s.url("/http10"), "http_2xx").await;
    assert_eq!(m.success(), Some(1.0));
    assert_eq!(m.value("probe_http_version"), Some(1.0));
    assert_eq!(m.value("probe_http_content_length"), Some(-1.0));
    assert_eq!(m.value("probe_http_uncompressed_body_length"), Some(13.0));
    let m = probe(&wf, &s.url("/http10"), "http11").await;
    assert_eq!(m.success(), Some(0.0));
    let m = probe(&wf, &s.url("/status/200"), "http11").await;
    assert_eq!(
        (m.success(), m.value("probe_http_version")),
        (Some(1.0), Some(1.1))
    );
}

#[tokio::test]
async fn self_signed_tls_needs_trust_or_insecure_skip_verify() {
    let (s, _d, wf) = http_setup().await;
    let t = s.tls_url("/status/200");
    let m = probe(&wf, &t, "http_2xx").await;
    assert_eq!(m.success(), Some(0.0), "an unknown CA fails");
    assert!(!m.families.contains_key("probe_ssl_earliest_cert_expiry"));
    let m = probe(&wf, &t, "tls_insecure").await;
    assert_eq!(
        (m.success(), m.value("probe_http_ssl")),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(
        m.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        Some(-62_135_596_800.0),
        "no verified chain: Go's zero time"
    );
    let m = probe(&wf, &t, "tls_ca").await;
    assert_eq!(m.success(), Some(1.0));
    let expiry = m.value("probe_ssl_earliest_cert_expiry").expect("expiry");
    assert_eq!(
        m.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
        Some(expiry)
    );
    let info = &m.labels_of("probe_ssl_last_chain_info")[0];
    assert_eq!(info["subjectalternative"], "localhost");
    assert_eq!(info["subject"], "CN=rcgen self signed cert");
    assert_eq!(info["fingerprint_sha256"].len(), 64);
    assert_eq!(
        m.value_with("probe_tls_version_info", &[("version", "TLS 1.3")]),
        Some(1.0)
    );
    let m = probe(&wf, &t, "tls_min13").await;
    assert_eq!(m.success(), Some(1.0));
    let m = probe(&wf, &t, "fail_if_ssl").await;
    assert_eq!(m.success(), Some(0.0));
    let m = probe(&wf, &s.url("/status/200"), "fail_if_not_ssl").await;
    assert_eq!(m.success(), Some(0.0));
    let m = probe(&wf, &t, "fail_if_not_ssl").await;
    assert_eq!(
        m.success(),
        Some(0.0),
        "an unverified certificate still fails"
    );
}

#[tokio::test]
async fn body_size_limit_fails_big_bodies_after_exactly_the_limit() {
    let (s, _d, wf) = http_setup().await;
    let m = probe(&wf, &s.url("/huge"), "limit").await;
    assert_eq!(m.success(), Some(0.0));
    assert_eq!(
        m.value("probe_http_uncompressed_body_length"),
        Some(65536.0)
    );
    assert_eq!(
        m.value("probe_http_content_length"),
        Some(harness::HUGE_LEN as f64)
    );
    let m = probe(&wf, &s.url("/huge"), "http_2xx").await;
    assert_eq!(m.success(), Some(1.0));
    assert_eq!(
        m.value("probe_http_uncompressed_body_length"),
        Some(harness::HUGE_LEN as f64)
    );
    let m = probe(&wf, &s.url("/body/ok"), "limit").await;
    assert_eq!(m.success(), Some(1.0));
}

#[tokio::test]
async fn requests_carry_method_body_headers_and_credentials() {
    let (s, _d, wf) = http_setup().await;
    for module in ["post", "body_file"] {
        let m = probe(&wf, &s.url("/need-post"), module).await;
        assert_eq!(m.success(), Some(1.0), "{module}");
    }
    let m = probe(&wf, &s.url("/need-post"), "http_2xx").await;
    assert_eq!(m.value("probe_http_status_code"), Some(400.0));
    for module in ["basic", "bearer_file"] {
        let m = probe(&wf, &s.url("/auth"), module).await;
        assert_eq!(m.success(), Some(1.0), "{module}");
    }
    let m = probe(&wf, &s.url("/last-modified"), "http_2xx").await;
    assert_eq!(
        m.value("probe_http_last_modified_timestamp_seconds"),
        Some(1_445_412_480.0)
    );
}

#[tokio::test]
async fn failed_connections_report_zeroes_and_every_phase() {
    let (_s, _d, wf) = http_setup().await;
    let m = probe(&wf, "http://127.0.0.1:1/", "http_2xx").await;
    assert_eq!(m.success(), Some(0.0));
    assert_eq!(m.value("probe_http_status_code"), Some(0.0));
    assert_eq!(m.value("probe_ip_protocol"), Some(4.0));
    assert_eq!(m.labels_of("probe_http_duration_seconds").len(), 5);
    let m = probe(&wf, "http://no-such-host.invalid/", "http_2xx").await;
    assert_eq!(m.success(), Some(0.0));
    assert_eq!(m.value("probe_ip_protocol"), Some(0.0));
    assert_eq!(
        m.labels_of("probe_http_duration_seconds"),
        vec![[("phase".to_string(), "resolve".to_string())]
            .into_iter()
            .collect()],
        "only the resolve phase, as blackbox"
    );
}

#[tokio::test]
async fn oauth2_proxies_and_accept_any_response_work() {
    let s = Scenarios::start().await;
    let yaml = format!(
        r#"modules:
  oauth:
    prober: http
    http:
      oauth2:
        client_id: client
        client_secret: secret
        token_url: {token}
        scopes: [read]
  oauth_wrong:
    prober: http
    http:
      oauth2:
        client_id: client
        client_secret: wrong
        token_url: {token}
  proxied:
    prober: http
    http:
      proxy_url: {proxy}
      skip_resolve_phase_with_proxy: true
  proxied_no_proxy:
    prober: http
    http:
      proxy_url: http://127.0.0.1:1
      no_proxy: example.com
  any:
    prober: http
    http:
      accept_any_response: true
      fail_if_body_not_matches_regexp: [scenario]
"#,
        token = s.url("/token"),
        proxy = s.url(""),
    );
    let (_d, wf) = serve(&yaml).await;
    let m = probe(&wf, &s.url("/auth"), "oauth").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
    // The token is reused: one token request for two probes.
    let m = probe(&wf, &s.url("/auth"), "oauth").await;
    assert_eq!(m.success(), Some(1.0));
    let tokens = s
        .requests
        .lock()
        .expect("requests")
        .iter()
        .filter(|r| r.starts_with("POST /token"))
        .count();
    assert_eq!(tokens, 1);
    let m = probe(&wf, &s.url("/auth"), "oauth_wrong").await;
    assert_eq!(
        (m.success(), m.value("probe_http_status_code")),
        (Some(0.0), Some(0.0))
    );
    // Through the proxy, a host that does not resolve is fine: the proxy resolves it.
    let m = probe(&wf, "http://no-such-host.invalid/status/200", "proxied").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
    // Loopback is never proxied once no_proxy is set (Go's rule): the dead proxy is not used.
    let m = probe(&wf, &s.url("/status/200"), "proxied_no_proxy").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
    let m = probe(&wf, &s.url("/no-such-path"), "any").await;
    assert_eq!(
        (m.success(), m.value("probe_http_status_code")),
        (Some(1.0), Some(404.0))
    );
}

#[tokio::test]
async fn files_missing_at_load_fail_the_probes_not_the_config() {
    let s = Scenarios::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("later-body.txt");
    let ca = dir.path().join("later-ca.pem");
    let yaml = format!(
        "modules:\n  post_file:\n    prober: http\n    http:\n      method: POST\n      body_file: {}\n      headers: {{X-Probe: \"yes\"}}\n  later_ca:\n    prober: http\n    http:\n      tls_config: {{ca_file: {}}}\n",
        body.display(),
        ca.display()
    );
    let (_d, wf) = serve(&yaml).await;
    let m = probe(&wf, &s.url("/need-post"), "post_file").await;
    assert_eq!(m.success(), Some(0.0));
    let m = probe(&wf, &s.tls_url("/status/200"), "later_ca").await;
    assert_eq!(m.success(), Some(0.0));
    // The files appear: the same modules now work.
    std::fs::write(&body, "ping").expect("body");
    std::fs::copy(&s.cert_path, &ca).expect("ca");
    let m = probe(&wf, &s.url("/need-post"), "post_file").await;
    assert_eq!(m.success(), Some(1.0));
    let m = probe(&wf, &s.tls_url("/status/200"), "later_ca").await;
    assert_eq!(m.success(), Some(1.0));
}

#[test]
fn exporter_flags_are_accepted_by_run() {
    let a = common::run_args(&[
        "--config.file=/etc/prometheus/blackbox.yml",
        "--web.listen-address=:9115",
        "--timeout-offset=0.25",
    ])
    .expect("blackbox_exporter's flags parse");
    assert_eq!(a.config, PathBuf::from("/etc/prometheus/blackbox.yml"));
    assert_eq!(a.listen, vec!["0.0.0.0:9115".parse().unwrap()]);
    assert_eq!(a.timeout_offset, Duration::from_millis(250));
    let a = common::run_args(&["--timeout-offset", "1s"]).expect("a duration works too");
    assert_eq!(a.timeout_offset, Duration::from_secs(1));
}

#[tokio::test]
async fn http2_is_negotiated_over_tls_unless_disabled() {
    let s = Scenarios::start().await;
    let yaml = format!(
        "modules:\n  h2:\n    prober: http\n    http:\n      valid_http_versions: [HTTP/2.0]\n      tls_config: {{ca_file: {ca}}}\n  h1:\n    prober: http\n    http:\n      enable_http2: false\n      tls_config: {{ca_file: {ca}}}\n",
        ca = s.cert_path.display()
    );
    let (_d, wf) = serve(&yaml).await;
    let m = probe(&wf, &s.h2_url("/"), "h2").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
    assert_eq!(m.value("probe_http_version"), Some(2.0));
    assert_eq!(m.value("probe_http_uncompressed_body_length"), Some(17.0));
    let m = probe(&wf, &s.h2_url("/"), "h1").await;
    assert_eq!(
        (m.success(), m.value("probe_http_version")),
        (Some(1.0), Some(1.1))
    );
}

#[tokio::test]
async fn reload_brings_new_modules_to_probe() {
    let s = Scenarios::start().await;
    let (dir, wf) = serve("modules:\n  a:\n    prober: http\n").await;
    let q = format!("target={}&module=b", enc(&s.url("/status/200")));
    assert_eq!(probe_raw(&wf, &q, &[]).await.status, 400);
    write(
        dir.path(),
        "blackbox.yml",
        "modules:\n  a:\n    prober: http\n  b:\n    prober: http\n    http:\n      valid_status_codes: [200]\n",
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/-/reload", wf.addr))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 200);
    let r = probe_raw(&wf, &q, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ParsedMetrics::parse(&r.body).success(), Some(1.0));
    // A broken file is refused and the running modules stay.
    write(
        dir.path(),
        "blackbox.yml",
        "modules:\n  b:\n    prober: nope\n",
    );
    let r = reqwest::Client::new()
        .post(format!("http://{}/-/reload", wf.addr))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(probe_raw(&wf, &q, &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Client certificates (mutual TLS)

#[tokio::test]
async fn http_presents_the_client_certificate_named_relative_to_the_config() {
    let pki = blackbox_servers::client_pki();
    let cert = blackbox_servers::self_signed_requiring_client(&[], &pki);
    let server = blackbox_servers::https_ok(&cert).await;
    let ca = cert.ca_file.path().display();
    // The config sits beside the PEM files and names them relatively.
    let yaml = format!(
        "modules:\n  mtls:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{ca}', server_name: localhost, cert_file: client.pem, key_file: client-key.pem}}\n  \
         stranger:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{ca}', server_name: localhost, cert_file: stranger.pem, key_file: stranger-key.pem}}\n  \
         anonymous:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{ca}', server_name: localhost}}\n"
    );
    let config = write(pki.dir.path(), "blackbox.yml", &yaml);
    let wf = Watchfire::start(&config).await;
    let target = format!("https://127.0.0.1:{}/", server.addr.port());
    let m = probe(&wf, &target, "mtls").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
    assert_eq!(m.value("probe_http_status_code"), Some(200.0));
    assert_eq!(m.value("probe_http_ssl"), Some(1.0));
    for refused in ["stranger", "anonymous"] {
        let m = probe(&wf, &target, refused).await;
        assert_eq!(m.success(), Some(0.0), "{refused}: {}", m.text);
    }
    // /config shows the paths as written, never the key itself (blackbox shows key_file too).
    let r = get(wf.addr, "/config", &[]).await;
    let v: serde_json::Value = serde_saphyr::from_str(&r.body).expect("/config is YAML");
    let tls = &v["modules"]["mtls"]["http"]["tls_config"];
    assert_eq!(tls["cert_file"], "client.pem");
    assert_eq!(tls["key_file"], "client-key.pem");
    assert!(!r.body.contains("PRIVATE KEY"), "{}", r.body);
}

#[test]
fn client_certificate_mistakes_are_config_errors_naming_field_and_file() {
    let pki = blackbox_servers::client_pki();
    let (c, k) = (pki.cert_file.display(), pki.key_file.display());
    let garbage = write(pki.dir.path(), "garbage.pem", "not PEM at all\n");
    let g = garbage.display();
    let errs = errors(
        "blackbox.yml",
        &format!(
            "modules:
  half:
    prober: http
    http:
      tls_config: {{cert_file: '{c}'}}
  tcp_half:
    prober: tcp
    tcp:
      tls_config: {{key_file: '{k}'}}
  swapped:
    prober: http
    http:
      tls_config: {{cert_file: '{k}', key_file: '{c}'}}
  grpc_no_key:
    prober: grpc
    grpc:
      tls: true
      tls_config: {{cert_file: '{c}', key_file: '{g}'}}
  oauth:
    prober: http
    http:
      oauth2: {{client_id: a, client_secret: b, token_url: 'http://127.0.0.1:1/t', tls_config: {{cert_file: '{c}'}}}}
"
        ),
    );
    let has = |field: &str, fragments: &[&str]| {
        assert!(
            errs.iter()
                .any(|e| e.field == field && fragments.iter().all(|f| e.message.contains(f))),
            "want an error at {field} containing {fragments:?}; got:\n{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    };
    has(
        "modules.half.http.tls_config.key_file",
        &["missing", "client.pem"],
    );
    has(
        "modules.tcp_half.tcp.tls_config.cert_file",
        &["missing", "client-key.pem"],
    );
    has(
        "modules.swapped.http.tls_config.cert_file",
        &["client-key.pem", "swapped"],
    );
    has(
        "modules.grpc_no_key.grpc.tls_config.key_file",
        &["garbage.pem", "no private key"],
    );
    has(
        "modules.oauth.http.oauth2",
        &["tls_config.key_file", "missing"],
    );
    assert_eq!(errs.len(), 5, "{errs:?}");
}

#[tokio::test]
async fn client_certificate_files_missing_at_load_fail_the_probes_until_they_appear() {
    let pki = blackbox_servers::client_pki();
    let cert = blackbox_servers::self_signed_requiring_client(&[], &pki);
    let server = blackbox_servers::https_ok(&cert).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "modules:\n  later:\n    prober: http\n    http:\n      tls_config: {{ca_file: '{}', server_name: localhost, cert_file: later.pem, key_file: later-key.pem}}\n",
        cert.ca_file.path().display()
    );
    let config = write(dir.path(), "blackbox.yml", &yaml);
    let wf = Watchfire::start(&config).await;
    let target = format!("https://127.0.0.1:{}/", server.addr.port());
    let r = probe_raw(
        &wf,
        &format!("target={}&module=later&debug=true", enc(&target)),
        &[],
    )
    .await;
    assert!(
        r.body.contains("tls_config.cert_file") && r.body.contains("later.pem"),
        "the probe's log names the field and the file:\n{}",
        r.body
    );
    assert!(r.body.contains("probe_success 0"), "{}", r.body);
    std::fs::copy(&pki.cert_file, dir.path().join("later.pem")).expect("cert");
    std::fs::copy(&pki.key_file, dir.path().join("later-key.pem")).expect("key");
    let m = probe(&wf, &target, "later").await;
    assert_eq!(m.success(), Some(1.0), "{}", m.text);
}
