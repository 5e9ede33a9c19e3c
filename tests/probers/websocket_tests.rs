//! The websocket prober against in-test loopback websocket servers, through `endpoint::run`
//! with modules loaded from YAML: the dialogue with `${1}` expansion, the headers and
//! credentials of the upgrade request, TLS, and each failure reason with the families blackbox
//! reports for it.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use watchfire::blackbox::config::{Module, Prober};
use watchfire::blackbox::endpoint::{self, Probed};

use super::*;

/// The upgrade requests' headers a server saw, in order.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// The module `websocket:` section `options` (indented under `websocket:`), loaded as a config
/// would.
fn ws_module(options: &str) -> Arc<Module> {
    let yaml = format!("modules:\n  m:\n    prober: websocket\n    websocket:\n{options}\n");
    let config = watchfire::config::load_str("websocket.yml", &yaml)
        .unwrap_or_else(|e| panic!("module does not load:\n{yaml}\n{e}"));
    config.modules.get("m").expect("module m").clone()
}

async fn run(options: &str, target: &str, timeout: Duration) -> Probed {
    let m = ws_module(options);
    endpoint::run(&m, target.to_string(), None, timeout, true).await
}

#[track_caller]
fn assert_reason(p: &Probed, want: Reason) -> Output {
    let out = p.families();
    let got = p.result.as_ref().err().map(|f| f.reason);
    assert_eq!(got, Some(want), "{:?}\n{}", p.result, text_of(p));
    assert_eq!(out.value("probe_success"), Some(0.0));
    out
}

fn text_of(p: &Probed) -> String {
    let mut out = p.families();
    out.set_log(p.log.lines().to_vec());
    text(&out)
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn phase(out: &Output, name: &str) -> Option<f64> {
    out.value_with("probe_websocket_duration_seconds", &[("phase", name)])
}

/// Accepts the upgrade on `stream`, keeping the request's headers in `seen`.
// The callback's error type is the library's own.
#[allow(clippy::result_large_err)]
async fn upgrade<S>(stream: S, seen: Seen) -> Option<WebSocketStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let keep = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        seen.lock().expect("lock").push(req.headers().clone());
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async(stream, keep).await.ok()
}

/// The greeting dialogue: says `Hello, watchfire`, then answers `Welcome` to
/// `Hello server, i'am watchfire` and `Go away` to anything else.
async fn greet<S>(stream: S, seen: Seen)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(mut ws) = upgrade(stream, seen).await else {
        return;
    };
    if ws.send(Message::text("Hello, watchfire")).await.is_err() {
        return;
    }
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Text(t) = m {
            let answer = if t.as_str() == "Hello server, i'am watchfire" {
                "Welcome"
            } else {
                "Go away"
            };
            let _ = ws.send(Message::text(answer)).await;
        }
    }
}

/// A websocket server running the greeting dialogue, over TLS with `cert` when given.
async fn greeter(cert: Option<&srv::Cert>) -> (srv::Server, Seen) {
    let seen = Seen::default();
    let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server.clone()));
    let kept = seen.clone();
    let server = srv::tcp_server(move |s: TcpStream| {
        let (seen, acceptor) = (kept.clone(), acceptor.clone());
        async move {
            match acceptor {
                Some(a) => {
                    if let Ok(t) = a.accept(s).await {
                        greet(t, seen).await;
                    }
                }
                None => greet(s, seen).await,
            }
        }
    })
    .await;
    (server, seen)
}

/// A websocket server that upgrades and then never sends.
async fn mute() -> srv::Server {
    srv::tcp_server(|s| async move {
        if let Some(mut ws) = upgrade(s, Seen::default()).await {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await
}

/// An HTTP server answering every request with `200 OK` instead of upgrading.
async fn plain_http() -> srv::Server {
    srv::tcp_server(|mut s| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let _ = s.write_all(answer).await;
    })
    .await
}

const DIALOGUE: &str = "      query_response:\n        - expect: '^Hello,\\s(.+)'\n          send: \"Hello server, i'am ${1}\"\n        - expect: ^Welcome";

#[tokio::test]
async fn the_dialogue_succeeds_with_capture_expansion() {
    let (s, _) = greeter(None).await;
    let p = run(DIALOGUE, &format!("ws://{}/chat", s.addr), T).await;
    assert!(p.ok(), "{:?}\n{}", p.result, text_of(&p));
    let out = p.families();
    assert_eq!(out.value("probe_success"), Some(1.0));
    assert_eq!(out.value("probe_websocket_status_code"), Some(101.0));
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(1.0));
    assert_eq!(out.value("probe_websocket_failed_due_to_regex"), Some(0.0));
    for name in ["resolve", "connect", "processing", "transfer"] {
        assert!(phase(&out, name).is_some(), "phase {name}\n{}", text_of(&p));
    }
    assert_eq!(out.value("probe_ip_protocol"), Some(4.0));
    assert_eq!(p.facts.status(), Some(101));
    assert_eq!(
        p.facts.bytes(),
        ("Hello, watchfire".len() + "Welcome".len()) as u64
    );
    // Without a dialogue, the open websocket is the success; no transfer phase.
    let p = run("      {}", &format!("ws://{}/", s.addr), T).await;
    assert!(p.ok(), "{:?}", p.result);
    assert_eq!(phase(&p.families(), "transfer"), None);
}

#[tokio::test]
async fn the_upgrade_request_carries_headers_and_credentials() {
    let (s, seen) = greeter(None).await;
    let target = format!("ws://{}/", s.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "from-file\n").expect("write token");
    let cases = [
        (
            "      http_config:\n        basic_auth: {username: user, password: password}\n      headers:\n        X-Some-Header: my_header".to_string(),
            "Basic dXNlcjpwYXNzd29yZA==",
        ),
        (
            "      http_config:\n        authorization: {credentials: secret_token}".to_string(),
            "Bearer secret_token",
        ),
        (
            "      http_config:\n        authorization: {type: Token, credentials: abc}".to_string(),
            "Token abc",
        ),
        (
            format!("      http_config:\n        bearer_token_file: '{}'", token.display()),
            "Bearer from-file",
        ),
    ];
    for (i, (options, want)) in cases.iter().enumerate() {
        let p = run(options, &target, T).await;
        assert!(p.ok(), "{options}: {:?}", p.result);
        let headers = seen.lock().expect("lock")[i].clone();
        assert_eq!(headers["authorization"], want, "{options}");
        if i == 0 {
            assert_eq!(headers["x-some-header"], "my_header");
        }
    }
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let p = run("      {}", &format!("ws://127.0.0.1:{}/", closed_port()), T).await;
    let out = assert_reason(&p, Reason::Refused);
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(0.0));
    assert_eq!(out.value("probe_websocket_status_code"), Some(0.0));
    assert_eq!(phase(&out, "connect"), None);
    assert!(phase(&out, "processing").is_some(), "{}", text_of(&p));
}

#[tokio::test]
async fn wss_verifies_the_certificate_unless_told_not_to() {
    let cert = srv::self_signed(&[]);
    let (s, _) = greeter(Some(&cert)).await;
    let target = format!("wss://localhost:{}/", s.addr.port());
    let p = run("      preferred_ip_protocol: ip4", &target, T).await;
    let out = assert_reason(&p, Reason::Tls);
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(0.0));
    let skip = "      preferred_ip_protocol: ip4\n      http_config:\n        tls_config: {insecure_skip_verify: true}";
    let p = run(&format!("{skip}\n{DIALOGUE}"), &target, T).await;
    assert!(p.ok(), "{:?}\n{}", p.result, text_of(&p));
    assert!(p.facts.phases().tls > Duration::ZERO);
    let trusted = format!(
        "      preferred_ip_protocol: ip4\n      http_config:\n        tls_config: {{ca_file: '{}'}}",
        cert.ca_file.path().display()
    );
    let p = run(&trusted, &target, T).await;
    assert!(p.ok(), "{:?}\n{}", p.result, text_of(&p));
}

#[tokio::test]
async fn plain_http_instead_of_an_upgrade_is_protocol_with_its_status() {
    let s = plain_http().await;
    let p = run(DIALOGUE, &format!("ws://{}/", s.addr), T).await;
    let out = assert_reason(&p, Reason::Protocol);
    assert_eq!(out.value("probe_websocket_status_code"), Some(200.0));
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(0.0));
    assert_eq!(out.value("probe_websocket_failed_due_to_regex"), Some(0.0));
    assert_eq!(phase(&out, "transfer"), None);
    assert_eq!(p.facts.status(), Some(200));
}

#[tokio::test]
async fn a_message_that_does_not_match_is_expect_mismatch() {
    let (s, _) = greeter(None).await;
    let options = "      query_response:\n        - expect: ^Goodbye";
    let p = run(options, &format!("ws://{}/", s.addr), T).await;
    let out = assert_reason(&p, Reason::ExpectMismatch);
    assert_eq!(out.value("probe_websocket_failed_due_to_regex"), Some(1.0));
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(1.0));
    assert_eq!(out.value("probe_websocket_status_code"), Some(101.0));
    assert!(phase(&out, "transfer").is_some());
    // The server answers a wrong greeting with `Go away`.
    let options = "      query_response:\n        - expect: '^Hello'\n          send: hi\n        - expect: ^Welcome";
    let p = run(options, &format!("ws://{}/", s.addr), T).await;
    assert_reason(&p, Reason::ExpectMismatch);
}

#[tokio::test]
async fn a_server_that_never_sends_times_out() {
    let s = mute().await;
    let short = Duration::from_millis(300);
    let p = run(DIALOGUE, &format!("ws://{}/", s.addr), short).await;
    let out = assert_reason(&p, Reason::Timeout);
    assert_eq!(out.value("probe_websocket_connection_upgraded"), Some(1.0));
    assert!(phase(&out, "transfer").is_some());
}

#[tokio::test]
async fn an_unresolvable_host_is_dns() {
    let p = run("      {}", &format!("ws://{}/", unresolvable()), T).await;
    let out = assert_reason(&p, Reason::Dns);
    assert_eq!(phase(&out, "resolve"), None);
    assert_eq!(out.value("probe_ip_protocol"), Some(0.0));
}

#[test]
fn targets_must_be_ws_urls() {
    for ok in [
        "ws://example.com/x",
        "wss://[::1]:8443",
        "WSS://example.com",
    ] {
        assert!(
            endpoint::check_target(Prober::Websocket, ok).is_ok(),
            "{ok}"
        );
    }
    for bad in ["http://example.com", "example.com:80", "ws://", "tcp://x:1"] {
        assert!(
            endpoint::check_target(Prober::Websocket, bad).is_err(),
            "{bad}"
        );
    }
}

/// blackbox_exporter's two example websocket modules load as written, their secrets hidden on
/// the config page.
#[test]
fn upstream_example_modules_load() {
    let yaml = r#"
modules:
  websocket_example_basic_auth:
    prober: websocket
    websocket:
      http_config:
        basic_auth:
          username: "user"
          password: "password"
        tls_config:
          insecure_skip_verify: true
      headers:
        X-Some-Header: "my_header"
      query_response:
        - expect: ^Hello,\s(.+)"
          send: "Hello server, i'am ${1}"
        - expect: ^Welcome
  websocket_example_bearer_token:
    prober: websocket
    websocket:
      http_config:
        authorization:
          credentials: "secret_token"
        tls_config:
          insecure_skip_verify: true
      headers:
        X-Some-Header: "my_header"
      query_response:
        - expect: ^Hello,\s(.+)"
          send: "Hello server, i'am ${1}"
        - expect: ^Welcome
"#;
    let config = watchfire::config::load_str("blackbox.yml", yaml)
        .unwrap_or_else(|e| panic!("upstream's example modules load: {e}"));
    for name in [
        "websocket_example_basic_auth",
        "websocket_example_bearer_token",
    ] {
        let m = config.modules.get(name).expect(name);
        assert_eq!(m.prober, Prober::Websocket);
        assert_eq!(m.websocket.query_response.len(), 2);
    }
    let shown = config.modules.to_yaml();
    assert!(shown.contains("<secret>"), "{shown}");
    assert!(
        !shown.contains("secret_token") && !shown.contains("password: password"),
        "{shown}"
    );
}

/// Problems the websocket options can have are load errors that name their field.
#[test]
fn bad_websocket_options_are_load_errors_naming_the_field() {
    let cases = [
        (
            "query_response: [{expect: '[a-'}]",
            "websocket.query_response[0].expect",
        ),
        (
            "query_response: [{starttls: true}]",
            "websocket.query_response[0].starttls",
        ),
        ("headers: {Upgrade: x}", "websocket.headers.Upgrade"),
        (
            "http_config: {basic_auth: {username: u}, bearer_token: t}",
            "websocket.http_config",
        ),
        (
            "http_config: {authorization: {type: Basic, credentials: c}}",
            "websocket.http_config.authorization.type",
        ),
        ("http_config: {oauth2: {client_id: x}}", "oauth2"),
        ("bogus: 1", "bogus"),
    ];
    for (options, field) in cases {
        let yaml = format!("modules:\n  m:\n    prober: websocket\n    websocket: {{{options}}}\n");
        let e = watchfire::config::load_str("websocket.yml", &yaml)
            .err()
            .unwrap_or_else(|| panic!("`{options}` should not load"))
            .to_string();
        assert!(e.contains(field), "`{options}`: {e}");
    }
}
