//! Upstream's example.yml (blackbox_exporter 0.28): every module of it, with the same names and
//! options (the two websocket modules aside), loads; then each one probes an in-test server of
//! its kind through `endpoint::run`.
//!
//! What had to change to stay on this machine: the files the modules name (`body_file`,
//! `ca_file`, `http_headers` files) are temporary files, and the addresses they name
//! (`proxy_url`, the OAuth2 `token_url`) point at the in-test HTTP server.
//!
//! Some modules cannot succeed against anything local, and the test asserts how they fail:
//!
//! - `tls_connect`, `imap_starttls`, `smtp_starttls` and `postgresql` verify the server with the
//!   system's roots only (no `ca_file`), which no in-test certificate chains to: [`Reason::Tls`],
//!   after the dialogue up to the handshake went as the module expects.
//! - `dns_udp_example` contradicts itself (an answer must and must not match `127.0.0.1`):
//!   [`Reason::AnswerMismatch`] whatever the server answers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use srv::Say;
use watchfire::blackbox::endpoint::{self, Probed};

/// Upstream's example.yml without its websocket modules; `@...@` are filled in by
/// [`config_text`].
const EXAMPLE: &str = r#"modules:
  http_2xx_example:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      valid_status_codes: []
      method: GET
      headers:
        Host: vhost.example.com
        Origin: example.com
      http_headers:
        Accept-Language:
          values:
            - "en-US"
      follow_redirects: true
      fail_if_ssl: false
      fail_if_not_ssl: false
      fail_if_body_matches_regexp:
        - "Could not connect to database"
      fail_if_body_not_matches_regexp:
        - "Download the latest version here"
      fail_if_header_matches:
        - header: Set-Cookie
          allow_missing: true
          regexp: '.*'
      fail_if_header_not_matches:
        - header: Access-Control-Allow-Origin
          regexp: '(\*|example\.com)'
      tls_config:
        insecure_skip_verify: false
      preferred_ip_protocol: "ip4"
      ip_protocol_fallback: false
  http_with_proxy:
    prober: http
    http:
      proxy_url: "@PROXY@"
      skip_resolve_phase_with_proxy: true
  http_with_proxy_and_headers:
    prober: http
    http:
      proxy_url: "@PROXY@"
      proxy_connect_header:
        Proxy-Authorization:
          - Bearer token
  http_post_2xx:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/json
      body: '{}'
  http_post_body_file:
    prober: http
    timeout: 5s
    http:
      method: POST
      body_file: "@BODY_FILE@"
  http_basic_auth_example:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Host: "login.example.com"
      basic_auth:
        username: "username"
        password: "mysecret"
  http_json_cel_match:
    prober: http
    timeout: 5s
    http:
      method: GET
      fail_if_body_json_not_matches_cel: "body.foo == 'bar' && body.baz.startsWith('q')"
  http_2xx_oauth_client_credentials:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2"]
      follow_redirects: true
      preferred_ip_protocol: "ip4"
      valid_status_codes:
        - 200
        - 201
      oauth2:
        client_id: "client_id"
        client_secret: "client_secret"
        token_url: "@TOKEN_URL@"
        endpoint_params:
          grant_type: "client_credentials"
  http_custom_ca_example:
    prober: http
    http:
      method: GET
      tls_config:
        ca_file: "@CA_FILE@"
  http_gzip:
    prober: http
    http:
      method: GET
      compression: gzip
  http_gzip_with_accept_encoding:
    prober: http
    http:
      method: GET
      compression: gzip
      headers:
        Accept-Encoding: gzip
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
  tcp_connect_example:
    prober: tcp
    timeout: 5s
  imap_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "OK.*STARTTLS"
        - send: ". STARTTLS"
        - expect: "OK"
        - starttls: true
        - send: ". capability"
        - expect: "CAPABILITY IMAP4rev1"
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250-AUTH"
        - send: "QUIT\r"
  irc_banner_example:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - send: "NICK prober"
        - send: "USER prober prober prober :prober"
        - expect: "PING :([^ ]+)"
          send: "PONG ${1}"
        - expect: "^:[^ ]+ 001"
  rabbitmq:
    prober: tcp
    timeout: 30s
    tcp:
      query_response:
        - send: "HELO\r"
        - send: "\r"
        - send: "\r"
        - send: "\r"
        - expect: "AMQP"
      tls: true
      tls_config:
        insecure_skip_verify: false
        ca_file: "@CA_FILE@"
  rabbitmq_insecure:
    prober: tcp
    timeout: 30s
    tcp:
      query_response:
        - send: "HELO\r"
        - send: "\r"
        - send: "\r"
        - send: "\r"
        - expect: "AMQP"
      tls: true
      tls_config:
        insecure_skip_verify: true
        ca_file: "@CA_FILE@"
  icmp_example:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: "ip4"
      source_ip_address: "127.0.0.1"
  dns_udp_example:
    prober: dns
    timeout: 5s
    dns:
      query_name: "www.prometheus.io"
      query_type: "A"
      valid_rcodes:
        - NOERROR
      validate_answer_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
        fail_if_all_match_regexp:
          - ".*127.0.0.1"
        fail_if_not_matches_regexp:
          - "www.prometheus.io.\t300\tIN\tA\t127.0.0.1"
        fail_if_none_matches_regexp:
          - "127.0.0.1"
      validate_authority_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
      validate_additional_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
  dns_soa:
    prober: dns
    dns:
      query_name: "prometheus.io"
      query_type: "SOA"
  dns_tcp_example:
    prober: dns
    dns:
      transport_protocol: "tcp"
      preferred_ip_protocol: "ip4"
      query_name: "www.prometheus.io"
  unix_socket_ping:
    prober: unix
    timeout: 5s
    unix:
      query_response:
        - send: "PING"
        - expect: "PONG"
  postgresql:
    prober: tcp
    tcp:
      query_response:
      - send: !!binary AAAACATSFi8=
      - expect_bytes: S
      - starttls: true
  http_with_header_from_files:
    prober: http
    http:
      http_headers:
        X-API-Key:
          files:
            - "@API_KEY_FILE@"
"#;

/// The modules of upstream's example.yml, websocket ones aside.
const MODULES: [&str; 25] = [
    "http_2xx_example",
    "http_with_proxy",
    "http_with_proxy_and_headers",
    "http_post_2xx",
    "http_post_body_file",
    "http_basic_auth_example",
    "http_json_cel_match",
    "http_2xx_oauth_client_credentials",
    "http_custom_ca_example",
    "http_gzip",
    "http_gzip_with_accept_encoding",
    "tls_connect",
    "tcp_connect_example",
    "imap_starttls",
    "smtp_starttls",
    "irc_banner_example",
    "rabbitmq",
    "rabbitmq_insecure",
    "icmp_example",
    "dns_udp_example",
    "dns_soa",
    "dns_tcp_example",
    "unix_socket_ping",
    "postgresql",
    "http_with_header_from_files",
];

/// The temporary files the modules name.
struct Files {
    body: tempfile::NamedTempFile,
    api_key: tempfile::NamedTempFile,
}

/// A temporary file holding `text`.
fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temporary file");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write temporary file");
    f
}

/// [`EXAMPLE`] with its files and addresses filled in.
fn config_text(files: &Files, cert: &srv::Cert, site: &srv::Server) -> String {
    EXAMPLE
        .replace("@PROXY@", &format!("http://{}", site.addr))
        .replace("@TOKEN_URL@", &format!("http://{}/token", site.addr))
        .replace("@BODY_FILE@", &files.body.path().display().to_string())
        .replace(
            "@API_KEY_FILE@",
            &files.api_key.path().display().to_string(),
        )
        .replace("@CA_FILE@", &cert.ca_file.path().display().to_string())
}

/// What a module's probe must come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Success.
    Ok,
    /// Failure with this reason (see the file's doc for why).
    Fails(Reason),
}

/// The in-test servers of every kind the example's modules probe.
struct Servers {
    site: srv::Server,
    https: srv::Server,
    tls_banner: srv::Server,
    silent: srv::Server,
    imap: srv::Server,
    smtp: srv::Server,
    irc: srv::Server,
    amqp: srv::Server,
    postgres: srv::Server,
    dns: srv::Server,
    unix: srv::UnixServer,
}

const IMAP: &[Say] = &[
    Say::Send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
    Say::Line,
    Say::Send(b". OK begin TLS\r\n"),
    Say::Tls,
    Say::Line,
    Say::Send(b"* CAPABILITY IMAP4rev1\r\n"),
];
const SMTP: &[Say] = &[
    Say::Send(b"220 mx.test ESMTP ready\r\n"),
    Say::Line,
    Say::Send(b"250-mx.test\r\n250-STARTTLS\r\n250 OK\r\n"),
    Say::Line,
    Say::Send(b"220 go ahead\r\n"),
    Say::Tls,
    Say::Line,
    Say::Send(b"250-mx.test\r\n250-AUTH PLAIN\r\n250 OK\r\n"),
    Say::Line,
];
const IRC: &[Say] = &[
    Say::Line,
    Say::Line,
    Say::Send(b"PING :irc.test\r\n"),
    Say::Line,
    Say::Send(b":irc.test 001 prober :Welcome\r\n"),
];
const AMQP: &[Say] = &[
    Say::Tls,
    Say::Line,
    Say::Line,
    Say::Line,
    Say::Line,
    Say::Send(b"AMQP\x00\x00\x09\x01\r\n"),
];
/// The SSLRequest (8 bytes and the newline of every `send`), `S`, then TLS.
const POSTGRES: &[Say] = &[Say::Bytes(9), Say::Send(b"S"), Say::Tls];
const TLS_BANNER: &[Say] = &[Say::Tls, Say::Send(b"hello\r\n")];

/// The target and the expected outcome of each module.
fn plan(s: &Servers) -> BTreeMap<&'static str, (String, Want)> {
    use Want::{Fails, Ok};
    let site = |path: &str| format!("http://{}{path}", s.site.addr);
    let tcp = |server: &srv::Server| srv::target(server.addr);
    let dns = srv::target(s.dns.addr);
    BTreeMap::from([
        ("http_2xx_example", (site("/"), Ok)),
        ("http_with_proxy", ("http://proxied.test/".into(), Ok)),
        ("http_with_proxy_and_headers", (site("/"), Ok)),
        ("http_post_2xx", (site("/"), Ok)),
        ("http_post_body_file", (site("/"), Ok)),
        ("http_basic_auth_example", (site("/"), Ok)),
        ("http_json_cel_match", (site("/json"), Ok)),
        ("http_2xx_oauth_client_credentials", (site("/"), Ok)),
        (
            "http_custom_ca_example",
            (format!("https://{}/", s.https.addr), Ok),
        ),
        ("http_gzip", (site("/gzip"), Ok)),
        ("http_gzip_with_accept_encoding", (site("/gzip"), Ok)),
        ("tls_connect", (tcp(&s.tls_banner), Fails(Reason::Tls))),
        ("tcp_connect_example", (tcp(&s.silent), Ok)),
        ("imap_starttls", (tcp(&s.imap), Fails(Reason::Tls))),
        ("smtp_starttls", (tcp(&s.smtp), Fails(Reason::Tls))),
        ("irc_banner_example", (tcp(&s.irc), Ok)),
        ("rabbitmq", (tcp(&s.amqp), Ok)),
        ("rabbitmq_insecure", (tcp(&s.amqp), Ok)),
        ("icmp_example", ("127.0.0.1".into(), Ok)),
        (
            "dns_udp_example",
            (dns.clone(), Fails(Reason::AnswerMismatch)),
        ),
        ("dns_soa", (dns.clone(), Ok)),
        ("dns_tcp_example", (dns, Ok)),
        ("unix_socket_ping", (s.unix.target(), Ok)),
        ("postgresql", (tcp(&s.postgres), Fails(Reason::Tls))),
        ("http_with_header_from_files", (site("/"), Ok)),
    ])
}

/// A probe's verdict, families and log, for failure messages.
fn shown(p: &Probed) -> String {
    let mut s = String::new();
    p.families().render(&mut s);
    format!("{:?}\n{s}--- log:\n{}", p.result, p.log.lines().join("\n"))
}

#[tokio::test]
async fn every_module_of_the_upstream_example_loads_and_probes() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let cert = srv::self_signed(&[b"http/1.1"]);
    let servers = Servers {
        site: srv::http_site(seen.clone()).await,
        https: srv::https_ok(&cert).await,
        tls_banner: srv::scripted(TLS_BANNER, Some(&cert)).await,
        silent: srv::silent().await,
        imap: srv::scripted(IMAP, Some(&cert)).await,
        smtp: srv::scripted(SMTP, Some(&cert)).await,
        irc: srv::scripted(IRC, None).await,
        amqp: srv::scripted(AMQP, Some(&cert)).await,
        postgres: srv::scripted(POSTGRES, Some(&cert)).await,
        dns: srv::dns().await,
        unix: srv::unix_ping(None).await,
    };
    let files = Files {
        body: file_with("posted from a file"),
        api_key: file_with("k3y"),
    };
    let text = config_text(&files, &cert, &servers.site);
    let config = watchfire::config::load_str("blackbox.yml", &text)
        .unwrap_or_else(|e| panic!("upstream's example does not load:\n{e}"));
    let mut loaded: Vec<&str> = config.modules.iter().map(|m| m.name.as_str()).collect();
    loaded.sort_unstable();
    let mut want: Vec<&str> = MODULES.to_vec();
    want.sort_unstable();
    assert_eq!(loaded, want);

    let plan = plan(&servers);
    assert_eq!(plan.len(), MODULES.len());
    let mut wrong = Vec::new();
    for (name, (target, want)) in &plan {
        let m = config.modules.get(name).expect("module in the config");
        let p = endpoint::run(m, target.clone(), None, T, true).await;
        let got = match &p.result {
            Result::Ok(()) => Want::Ok,
            Err(f) => Want::Fails(f.reason),
        };
        if got != *want {
            wrong.push(format!(
                "{name} against {target}: want {want:?}\n{}",
                shown(&p)
            ));
        }
        check_families(name, &p);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    check_requests(&seen.lock().expect("requests"));
}

/// Checks that each module that fails got as far as the local servers let it: the dialogue
/// before STARTTLS went as the module expects.
fn check_families(name: &str, p: &Probed) {
    let out = p.families();
    let value = |family: &str| out.value(family);
    let logged = |what: &str| p.log.lines().iter().any(|l| l.contains(what));
    match name {
        "imap_starttls" | "smtp_starttls" => {
            assert_eq!(
                value("probe_failed_due_to_regex"),
                Some(0.0),
                "{}",
                shown(p)
            );
            assert!(logged("starting TLS (STARTTLS)"), "{}", shown(p));
        }
        "postgresql" => {
            assert_eq!(
                value("probe_failed_due_to_bytes"),
                Some(0.0),
                "{}",
                shown(p)
            );
            assert!(logged("bytes matched"), "{}", shown(p));
            assert!(logged("starting TLS (STARTTLS)"), "{}", shown(p));
        }
        "unix_socket_ping" => {
            assert_eq!(
                value("probe_failed_due_to_regex"),
                Some(0.0),
                "{}",
                shown(p)
            );
            assert_eq!(
                value("probe_failed_due_to_bytes"),
                Some(0.0),
                "{}",
                shown(p)
            );
        }
        _ => {}
    }
}

/// What the http modules sent: their methods, headers, bodies and credentials.
fn check_requests(seen: &[srv::SeenRequest]) {
    let has = |pred: &dyn Fn(&srv::SeenRequest) -> bool, what: &str| {
        assert!(seen.iter().any(pred), "no request {what} among:\n{seen:#?}");
    };
    let header =
        |r: &srv::SeenRequest, want: &str| r.headers.iter().any(|h| h.eq_ignore_ascii_case(want));
    has(
        &|r| header(r, "host: vhost.example.com"),
        "for vhost.example.com",
    );
    has(
        &|r| r.line.starts_with("POST") && r.body == b"{}",
        "posting {}",
    );
    has(
        &|r| r.line.starts_with("POST") && r.body == b"posted from a file",
        "posting the body file",
    );
    has(
        &|r| header(r, "authorization: Basic dXNlcm5hbWU6bXlzZWNyZXQ="),
        "with basic auth",
    );
    has(
        &|r| header(r, "authorization: Bearer t0ken"),
        "with the OAuth2 token",
    );
    has(
        &|r| header(r, "x-api-key: k3y"),
        "with the API key from its file",
    );
    has(
        &|r| r.line.starts_with("GET http://proxied.test/"),
        "through the proxy",
    );
}
