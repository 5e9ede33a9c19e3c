//! `watchfire notify test|list` as a user runs them: a config with errors, an unknown receiver,
//! the list with its secrets redacted, a sample message delivered to a webhook receiver served
//! by the test, and a receiver that refuses.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const LIMIT: Duration = Duration::from_secs(20);

/// Runs the binary with `args`: (exit code, stdout, stderr).
async fn watchfire(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(LIMIT, tokio::process::Command::new(BIN).args(args).output())
        .await
        .expect("the command ends in time")
        .expect("the command runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config file holding `yaml`, in a directory that lives as long as the returned guard.
fn config(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("watchfire.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let p = path.to_str().expect("a UTF-8 path").to_string();
    (dir, p)
}

/// A webhook receiver on a free loopback port: every request's body goes to the channel, and
/// each is answered `200`. Stops when the runtime of the test ends.
async fn webhook_receiver() -> (SocketAddr, mpsc::Receiver<(String, Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let tx = tx.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let path = req.uri().path().to_string();
                    let body = req.into_body().collect().await?.to_bytes();
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let _ = tx.send((path, v)).await;
                    Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(s), svc));
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn a_config_with_errors_is_reported_like_check_and_exits_2() {
    let (_dir, path) = config("targets:\n  - name: web\n    url: [not, a, url\n");
    let (code, _, err) = watchfire(&["notify", "list", "--config", &path]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("watchfire.yaml") && err.contains("error(s)"),
        "{err}"
    );
    let (code, _, err) = watchfire(&["notify", "test", "oncall", "--config", &path]).await;
    assert_eq!(code, 2, "{err}");
    let missing = "/nonexistent/watchfire.yaml";
    let (code, _, err) = watchfire(&["notify", "test", "oncall", "--config", missing]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(missing), "{err}");
}

#[tokio::test]
async fn usage_errors_name_what_is_missing() {
    let (code, _, err) = watchfire(&["notify", "test"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("<RECEIVER>"), "{err}");
    let (code, _, err) = watchfire(&["notify"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("test") && err.contains("list"), "{err}");
}

/// Two receivers of the shape, one with a secret in its URL and one signed.
const RECEIVERS: &str = "notify:
  update_every: 5m
  receivers:
    - name: oncall
      webhook: { url: \"http://127.0.0.1:1/hook?token=tok-url-secret\", secret: tok-hmac-secret }
    - name: chat
      slack: { url: \"https://hooks.slack.com/services/T0/B0/tok-slack-secret\" }
  routes:
    - receivers: [oncall, chat]
";

#[tokio::test]
async fn list_shows_receivers_and_routes_with_secrets_redacted() {
    let (_dir, path) = config(RECEIVERS);
    let (code, out, err) = watchfire(&["notify", "list", "--config", &path]).await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("secret-") && !out.contains("tok-"), "{out}");
    assert!(out.contains("oncall") && out.contains("webhook"), "{out}");
    assert!(out.contains("https://hooks.slack.com/<secret>"), "{out}");
    assert!(out.contains("every incident → oncall, chat"), "{out}");
}

#[tokio::test]
async fn an_unknown_receiver_lists_the_configured_ones() {
    let (_dir, path) = config(RECEIVERS);
    let (code, _, err) = watchfire(&["notify", "test", "pager", "--config", &path]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no receiver `pager`; the config has: oncall, chat"),
        "{err}"
    );
    let (_dir2, bad) = config(
        "notify:\n  receivers:\n    - name: x\n      webhok: { url: \"http://127.0.0.1:1/\" }\n",
    );
    let (code, _, err) = watchfire(&["notify", "list", "--config", &bad]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("webhok") && err.contains(":4"),
        "file and line: {err}"
    );
}

#[tokio::test]
async fn test_sends_one_sample_message_to_a_webhook_receiver() {
    let (addr, mut rx) = webhook_receiver().await;
    let yaml = format!(
        "notify:\n  receivers:\n    - name: oncall\n      webhook: {{ url: \"http://{addr}/hook\" }}\n"
    );
    let (_dir, path) = config(&yaml);
    let (code, out, err) = watchfire(&["notify", "test", "oncall", "--config", &path]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("sent to oncall (webhook) in ") && out.trim_end().ends_with(" ms"),
        "{out}"
    );
    let (path, body) = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("the message arrives in time")
        .expect("a message");
    assert_eq!(path, "/hook");
    assert_eq!(body["version"], "1", "{body}");
    assert_eq!(body["kind"], "test", "{body}");
    assert!(rx.try_recv().is_err(), "sent once");
}

#[tokio::test]
async fn test_reports_a_refused_receiver_without_its_secret_and_exits_1() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let (_dir, path) = config(RECEIVERS);
    let (code, out, err) = watchfire(&["notify", "test", "oncall", "--config", &path]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("oncall (webhook)"), "{err}");
    assert!(
        !err.contains("tok-url-secret"),
        "the URL's token leaked: {err}"
    );
}
