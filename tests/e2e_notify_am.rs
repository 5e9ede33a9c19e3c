//! The Alertmanager receiver against the real Alertmanager (`cargo test --features e2e --test
//! e2e_notify_am`; `.ci/run` installs `prometheus-alertmanager`): an incident's declaration,
//! posted through `receivers::send`, reaches a webhook receiver inside this test through
//! Alertmanager's own routing with status `firing`; the re-post the runtime makes every
//! `resend` (`post_alerts`) keeps it active; the `resolved` message arrives with status
//! `resolved` and `endsAt` equal to the incident's resolution time.
//!
//! A missing program fails the test loudly; it never passes by skipping. Loopback only, ports
//! from 127.0.0.1:0, deadlines instead of sleeps, Alertmanager killed by a drop guard.
#![cfg(feature = "e2e")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use watchfire::notify::config::{AlertmanagerConfig, Receiver, ReceiverKind};
use watchfire::notify::receivers::{self, alertmanager};
use watchfire::notify::{Facts, Kind, Message};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Alertmanager, killed (and reaped) on drop; its output goes to a log shown on failure.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(program: &str, args: &[String], dir: &Path) -> Proc {
        let log = dir.join("alertmanager.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc { child, log }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("--- alertmanager log ---\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A webhook receiver for Alertmanager's notifications: every POSTed JSON body is kept.
async fn webhook(cancel: CancellationToken) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let addr = listener.local_addr().expect("webhook address");
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let store = store.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        if let Ok(v) = serde_json::from_slice::<Value>(&body.unwrap_or_default()) {
                            store.lock().expect("webhook store").push(v);
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    (addr, got)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn message(kind: Kind, incident: i64, started: i64, resolved: Option<i64>) -> Message {
    let facts = Facts {
        id: incident,
        service: "inference-gateway".into(),
        title: "inference-gateway is down".into(),
        severity: "P0".into(),
        status: if resolved.is_some() {
            "resolved"
        } else {
            "investigating"
        }
        .into(),
        impact: "critical".into(),
        started,
        now: resolved.unwrap_or(started),
        resolved,
        ..Facts::default()
    };
    Message {
        key: format!("inc{incident}:{}@am", kind.as_str()),
        receiver: "am".into(),
        kind,
        incident,
        due: started,
        title: format!("{}: inference-gateway", kind.as_str()),
        text: "health checks refused".into(),
        facts,
    }
}

/// The notifications so far whose first alert is incident `id`'s, with `status`.
fn delivered(got: &Mutex<Vec<Value>>, id: &str, status: &str) -> Option<Value> {
    got.lock()
        .expect("webhook store")
        .iter()
        .find(|n| n["status"] == status && n["alerts"][0]["labels"]["incident"] == id)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_routes_the_incident_firing_then_resolved_with_its_end_time() {
    assert!(
        Path::new(ALERTMANAGER).exists(),
        "{ALERTMANAGER} is not installed: this test needs it (run .ci/run, or apt-get install prometheus-alertmanager)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cancel = CancellationToken::new();
    let (hook, got) = webhook(cancel.clone()).await;
    std::fs::write(
        dir.path().join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, incident]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: test\n    webhook_configs:\n      - url: http://{hook}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alertmanager config");
    let port = free_port();
    let am = Proc::spawn(
        ALERTMANAGER,
        &[
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
        dir.path(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ready = common::poll_until(Duration::from_secs(30), || async move {
        tokio::net::TcpStream::connect(addr).await.ok()?;
        (common::get(addr, "/-/ready").await.0 == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "Alertmanager not ready\n{}", am.tail());

    let cfg = AlertmanagerConfig {
        url: format!("http://127.0.0.1:{port}"),
        resend: Duration::from_secs(60),
    };
    let receiver = Receiver {
        name: "am".into(),
        kind: ReceiverKind::Alertmanager(cfg.clone()),
    };
    let http = receivers::client(Duration::from_secs(5));
    let now = watchfire::store::now_millis();
    let (id, started) = (7001, now - 120_000);

    let declared = message(Kind::Declared, id, started, None);
    receivers::send(&http, &receiver, &declared)
        .await
        .unwrap_or_else(|e| panic!("Alertmanager refused the alert: {e}\n{}", am.tail()));
    let firing = common::poll_until(Duration::from_secs(30), || async {
        delivered(&got, "7001", "firing")
    })
    .await
    .unwrap_or_else(|| panic!("no firing notification\n{}", am.tail()));
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "WatchfireIncident");
    assert_eq!(alert["labels"]["component"], "inference-gateway");
    assert_eq!(alert["labels"]["severity"], "P0");
    assert_eq!(
        alert["annotations"]["summary"],
        "declared: inference-gateway"
    );
    let starts: jiff::Timestamp = alert["startsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(starts.as_millisecond(), started);

    // The runtime's re-post keeps the alert active, with endsAt four resends ahead.
    let update = message(Kind::Update, id, started, None);
    alertmanager::post_alerts(&http, &cfg, &[alertmanager::alert_of(&update, cfg.resend)])
        .await
        .expect("re-posted");
    let (status, body) = common::get(addr, "/api/v2/alerts?filter=incident%3D%227001%22").await;
    assert_eq!(status, 200, "{body}");
    let active: Value = serde_json::from_str(&body).expect("alerts JSON");
    assert_eq!(active[0]["status"]["state"], "active", "{active}");
    let ends: jiff::Timestamp = active[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends.as_millisecond() > now + 200_000, "{active}");

    let resolved_at = watchfire::store::now_millis();
    let resolved = message(Kind::Resolved, id, started, Some(resolved_at));
    receivers::send(&http, &receiver, &resolved)
        .await
        .expect("resolve accepted");
    let done = common::poll_until(Duration::from_secs(30), || async {
        delivered(&got, "7001", "resolved")
    })
    .await
    .unwrap_or_else(|| panic!("no resolved notification\n{}", am.tail()));
    let alert = &done["alerts"][0];
    assert_eq!(alert["status"], "resolved");
    let ends: jiff::Timestamp = alert["endsAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ends.as_millisecond(),
        resolved_at,
        "endsAt is the resolution time"
    );

    cancel.cancel();
    drop(am);
}
