//! Secrets are never shown: a config with a tagged secret (`SECRET-TAG-N`) in every place a
//! secret can live is served by the `watchfire` binary at `-vv`; every endpoint is read, every
//! module probed with `debug=true`, a failover switch runs its webhook, a reload is rejected —
//! and no answer and no log line holds a tag.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, get, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const TAG: &str = "SECRET-TAG-";

/// A loopback HTTP server answering every request `200 {"status":"healthy"}` (targets, the
/// proxy, the webhook), counting requests whose path holds `/hook/`.
async fn answer_everything() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let hooks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hooks.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                if String::from_utf8_lossy(&buf)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .contains("/hook/")
                {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let body = "{\"status\":\"healthy\"}";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, hooks)
}

/// The config: a tagged secret in every place one can live.
fn config(dir: &Path, up: SocketAddr, closed: SocketAddr) -> String {
    let file = |name: &str, content: &str| {
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write secret file");
        p.display().to_string()
    };
    let token_file = file("token", "SECRET-TAG-12\n");
    let password_file = file("password", "SECRET-TAG-13\n");
    let credentials_file = file("credentials", "SECRET-TAG-14\n");
    let header_file = file("header", "SECRET-TAG-15\n");
    format!(
        r#"targets:
  - name: native
    url: "http://{up}/health?token=SECRET-TAG-1&X-Amz-Signature=SECRET-TAG-2&x=1"
    headers: {{ Authorization: "Bearer SECRET-TAG-3", X-Api-Key: SECRET-TAG-4 }}
    method: POST
    body: SECRET-TAG-5
    interval: 200ms
    timeout: 150ms
  - name: scheduled-module
    module: http_everything
    url: "http://{up}/m?api_key=SECRET-TAG-6"
    interval: 200ms
    timeout: 150ms
failover:
  - name: gw
    instances: ["http://{closed}", "http://{up}"]
    check: {{ path: /health, interval: 100ms, timeout: 80ms }}
    down_after: 1
    up_after: 1
    hooks:
      webhook: {{ url: "http://hook:SECRET-TAG-9@{up}/hook/SECRET-TAG-10?sig=SECRET-TAG-11", timeout: 1s, retries: 0 }}
modules:
  http_everything:
    prober: http
    timeout: 2s
    http:
      method: POST
      headers:
        Authorization: "Bearer SECRET-TAG-20"
        Cookie: "session=SECRET-TAG-21"
        X-Api-Key: SECRET-TAG-22
        Accept: application/json
      body: '{{"password": "SECRET-TAG-23"}}'
      basic_auth: {{ username: probe, password: SECRET-TAG-24 }}
      proxy_url: "http://puser:SECRET-TAG-25@{up}"
      proxy_connect_header: {{ Proxy-Authorization: [SECRET-TAG-26] }}
      http_headers:
        X-Token: {{ secrets: [SECRET-TAG-27] }}
        X-Plain: {{ values: [SECRET-TAG-28] }}
        X-From-File: {{ files: ["{header_file}"] }}
  http_bearer:
    prober: http
    timeout: 2s
    http:
      bearer_token: SECRET-TAG-29
  http_token_file:
    prober: http
    timeout: 2s
    http:
      bearer_token_file: "{token_file}"
  http_password_file:
    prober: http
    timeout: 2s
    http:
      basic_auth: {{ username: probe, password_file: "{password_file}" }}
  http_credentials:
    prober: http
    timeout: 2s
    http:
      authorization: {{ type: Token, credentials_file: "{credentials_file}" }}
  http_authorization:
    prober: http
    timeout: 2s
    http:
      authorization: {{ credentials: SECRET-TAG-30 }}
  http_oauth2:
    prober: http
    timeout: 2s
    http:
      oauth2:
        client_id: probe
        client_secret: SECRET-TAG-31
        token_url: "http://tok:SECRET-TAG-32@{up}/token?client_secret=SECRET-TAG-33"
        endpoint_params: {{ audience: SECRET-TAG-34 }}
  http_oauth2_down:
    prober: http
    timeout: 2s
    http:
      oauth2:
        client_id: probe
        client_secret: SECRET-TAG-36
        token_url: "http://tok:SECRET-TAG-37@{closed}/token?access_token=SECRET-TAG-38"
  ws:
    prober: websocket
    timeout: 2s
    websocket:
      http_config:
        bearer_token: SECRET-TAG-35
"#
    )
}

/// `text` with ANSI colour sequences removed.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The tags found in `text`, each with the line it is on.
fn tags_in(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(TAG))
        .map(|l| l.chars().take(400).collect())
        .collect()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tagged_secrets_appear_in_no_answer_and_no_log_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (up, hooks) = answer_everything().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let path = dir.path().join("watchfire.yaml");
    std::fs::write(&path, config(dir.path(), up, closed)).expect("write config");
    let log_path = dir.path().join("watchfire.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(BIN)
        .args([
            "-vv",
            "run",
            "--storage.memory",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start watchfire");
    let _server = Server(child);
    let read_log = || plain(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let started = common::poll_until(Duration::from_secs(20), || {
        let text = read_log();
        async move {
            let line = text.lines().find(|l| l.contains("watchfire is running"))?;
            let a = line.split("addr=").nth(1)?.split_whitespace().next()?;
            a.trim_matches('"').parse::<SocketAddr>().ok()
        }
    })
    .await;
    let addr = started.unwrap_or_else(|| panic!("watchfire did not start:\n{}", read_log()));

    let mut answers: Vec<(String, String)> = Vec::new();
    let target = format!("http://{up}/p?token=SECRET-TAG-40&user=x");
    for module in [
        "http_everything",
        "http_bearer",
        "http_token_file",
        "http_password_file",
        "http_credentials",
        "http_authorization",
        "http_oauth2",
        "http_oauth2_down",
    ] {
        let q = format!(
            "/probe?debug=true&module={module}&target={}",
            url_encode(&target)
        );
        let (status, body) = get(addr, &q).await;
        assert_eq!(status, 200, "{module}: {body}");
        answers.push((q, body));
    }
    let ws = format!("ws://u:SECRET-TAG-41@{up}/?access_token=SECRET-TAG-42");
    let q = format!("/probe?debug=true&module=ws&target={}", url_encode(&ws));
    answers.push((q.clone(), get(addr, &q).await.1));
    // Probes without debug, kept in the history.
    let q = format!(
        "/probe?module=http_everything&target={}",
        url_encode(&target)
    );
    answers.push((q.clone(), get(addr, &q).await.1));

    // The failover group switches away from its dead primary and runs its webhook.
    eventually(Duration::from_secs(20), "the failover webhook", || {
        let n = hooks.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n > 0).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(10), "the webhook's log line", || {
        let done = read_log().contains("failover webhook delivered");
        async move { done.then_some(()) }
    })
    .await;

    // A rejected reload that quotes URLs with credentials.
    let bad = std::fs::read_to_string(&path)
        .expect("config")
        .replace(
            "targets:\n",
            "targets:\n  - name: bad\n    url: \"ftp://u:SECRET-TAG-50@h/?token=SECRET-TAG-51\"\n",
        )
        + "  http_bad:\n    prober: http\n    http:\n      proxy_url: \"socks9://u:SECRET-TAG-52@h:1080/?key=SECRET-TAG-53\"\n";
    std::fs::write(&path, bad).expect("write bad config");
    let (status, body) = request(addr, "POST", "/-/reload").await;
    assert_eq!(status, 400, "the reload must be rejected: {body}");
    answers.push(("/-/reload".into(), body));

    for p in [
        "/config",
        "/",
        "/api/v1/targets",
        "/api/v1/failover",
        "/metrics",
    ] {
        answers.push((p.into(), get(addr, p).await.1));
    }
    for id in 1..=10 {
        let p = format!("/logs?id={id}");
        answers.push((p.clone(), get(addr, &p).await.1));
    }
    let p = format!("/logs?target={}", url_encode(&target));
    answers.push((p.clone(), get(addr, &p).await.1));

    let mut found = Vec::new();
    for (what, body) in &answers {
        for line in tags_in(body) {
            found.push(format!("{what}: {line}"));
        }
    }
    let log_text = read_log();
    for line in tags_in(&log_text) {
        found.push(format!("log: {line}"));
    }
    assert!(
        found.is_empty(),
        "{} tagged secrets shown:\n{}",
        found.len(),
        found.join("\n")
    );
    // The places were really exercised: the hidden values are marked, not missing.
    let config_page = &answers
        .iter()
        .find(|(w, _)| w == "/config")
        .expect("/config")
        .1;
    assert!(config_page.contains("<secret>"), "{config_page}");
    assert!(log_text.contains("config reload failed"), "{log_text}");
    if std::env::var_os("SHOW_ANSWERS").is_some() {
        for (w, b) in &answers {
            println!("==== {w}\n{b}");
        }
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
