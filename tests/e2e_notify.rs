//! Incident communication end to end, with the real programs (`cargo test --features e2e --test
//! e2e_notify`; `.ci/run` installs them): the `watchfire run` binary probes a `watchfire sim`
//! process and notifies a webhook receiver inside this test and a real Alertmanager, which routes
//! to a second webhook receiver inside this test.
//!
//! - the sim fails → the declaration reaches the webhook within one probe interval of the down
//!   decision (measured and printed), and the status-page text appears in the incident's
//!   timeline (`/api/v1/incidents/ID`);
//! - updates arrive every `update_every`;
//! - watchfire is killed (SIGKILL) mid-incident and started again on the same `--storage.path`
//!   while the webhook refuses (503) for a while, then accepts: every message key arrives
//!   exactly once, in order;
//! - the sim recovers → RESOLVED arrives once, and Alertmanager's webhook gets the alert firing,
//!   then resolved with its `endsAt`; `/metrics` counts the deliveries;
//! - a reload that removes `notify:` stops planning: the next outage sends nothing.
//!
//! Missing programs fail the test loudly; it never passes by skipping. Loopback only, ports from
//! 127.0.0.1:0, deadlines instead of sleeps, child processes killed by drop guards.
#![cfg(feature = "e2e")]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// The target's probe interval: the declaration must arrive within one of the down decision.
const INTERVAL: Duration = Duration::from_secs(1);
/// `notify.update_every` in this test.
const UPDATE_EVERY: Duration = Duration::from_secs(3);

fn require(program: &str) {
    assert!(
        Path::new(program).exists(),
        "{program} is not installed: this test needs it (run .ci/run, or apt-get install prometheus-alertmanager)"
    );
}

/// A free loopback port (bound, read, released).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// A child process killed (SIGKILL) and reaped on drop; its output goes to a log file shown on
/// failure.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, program: &str, args: &[String], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc { name, child, log }
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("--- {} log ---\n{}", self.name, lines[from..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One POST a receiver accepted: when, and its JSON body.
#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    body: Value,
}

/// A webhook receiver inside the test, as docs/webhook.md asks receivers to be: keeps every
/// body it accepts once, dropping a repeat of an `Idempotency-Key` it already accepted (counted
/// in `repeats`); answers 503 while `refuse` is set (counting those).
#[derive(Clone)]
struct Hook {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    repeats: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl Hook {
    async fn start(cancel: CancellationToken) -> Hook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook");
        let hook = Hook {
            addr: listener.local_addr().expect("webhook address"),
            got: Arc::default(),
            repeats: Arc::default(),
            refuse: Arc::default(),
            refused: Arc::default(),
        };
        let h = hook.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let h = h.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let h = h.clone();
                        async move { Ok::<_, Infallible>(h.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        hook
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        if self.refuse.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let mut r = http::Response::new(Full::new(Bytes::from_static(b"busy")));
            *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            return r;
        }
        let body =
            serde_json::from_slice::<Value>(&body.unwrap_or_default()).unwrap_or(Value::Null);
        let mut got = self.got.lock().expect("webhook log");
        if let Some(k) = key.filter(|k| got.iter().any(|g| g.body["key"] == k.as_str())) {
            self.repeats.lock().expect("repeats").push(k);
            return http::Response::new(Full::new(Bytes::from_static(b"ok")));
        }
        got.push(Got {
            at: Instant::now(),
            body,
        });
        http::Response::new(Full::new(Bytes::from_static(b"ok")))
    }

    fn all(&self) -> Vec<Got> {
        self.got.lock().expect("webhook log").clone()
    }

    /// The outbox keys accepted, in arrival order.
    fn keys(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter_map(|g| g.body["key"].as_str().map(str::to_string))
            .collect()
    }

    /// When the message with `key` was accepted, if it was.
    fn arrived(&self, key: &str) -> Option<Instant> {
        self.all()
            .into_iter()
            .find(|g| g.body["key"] == key)
            .map(|g| g.at)
    }
}

/// GET `path`: the body of a 200 answer; none while nothing answers (a process starting).
async fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let r = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

/// GET `path` as JSON.
async fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&get_text(addr, path).await?).ok()
}

/// POSTs `json` to the sim's fault control.
async fn faults(sim: SocketAddr, json: &str) {
    let url = format!("http://{sim}/-/faults");
    let r = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .await
        .expect("the sim's fault control answers");
    assert!(r.status().is_success(), "POST {url} {json}: {}", r.status());
}

fn config(sim: SocketAddr, hook: SocketAddr, am: SocketAddr) -> String {
    format!(
        r#"targets:
  - name: gateway-health
    url: http://{sim}/health
    interval: 1s
    timeout: 500ms
    down_after: 2
    up_after: 1
    labels: {{ component: inference-gateway }}
    expect:
      status: [200]

notify:
  update_every: 3s
  escalation: []
  delivery: {{ backoff: 200ms, max_backoff: 1s, give_up_after: 5m, timeout: 2s }}
  receivers:
    - name: oncall
      webhook: {{ url: "http://{hook}/hook" }}
    - name: am
      alertmanager: {{ url: "http://{am}", resend: 2s }}
  routes:
    - receivers: [oncall, am]
"#
    )
}

fn alertmanager_config(hook: SocketAddr) -> String {
    format!(
        r#"route:
  receiver: test
  group_by: [incident]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test
    webhook_configs:
      - url: http://{hook}/am
        send_resolved: true
"#
    )
}

fn watchfire(dir: &Path, listen: SocketAddr) -> Proc {
    let args: Vec<String> = [
        "run",
        "--config",
        "watchfire.yml",
        "--web.listen-address",
        &listen.to_string(),
        "--storage.path",
        "data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::spawn("watchfire", BIN, &args, dir)
}

/// Waits for `what`, or panics naming it with the processes' logs.
async fn until<T, F, Fut>(limit: Duration, what: &str, procs: &[&Proc], check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match common::poll_until(limit, check).await {
        Some(v) => v,
        None => {
            let logs: Vec<String> = procs.iter().map(|p| p.tail()).collect();
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
    }
}

/// The id and start of the open incident of `inference-gateway`.
async fn open_incident(api: SocketAddr) -> Option<i64> {
    let v = get_json(api, "/api/v1/incidents?open=true").await?;
    let list = v.as_array().or_else(|| v["incidents"].as_array())?.clone();
    list.iter()
        .find(|i| i["component"] == "inference-gateway")
        .and_then(|i| i["id"].as_i64())
}

/// Alerts of the Alertmanager webhook, flattened: (status, endsAt) of each alert posted.
fn am_alerts(hook: &Hook) -> Vec<(String, String)> {
    hook.all()
        .iter()
        .flat_map(|g| g.body["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["status"].as_str().unwrap_or_default().to_string(),
                a["endsAt"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_declared_updated_survives_a_restart_and_resolves_once_everywhere() {
    require(ALERTMANAGER);
    let dir = tempfile::tempdir().expect("temp dir");
    let cancel = CancellationToken::new();
    let oncall = Hook::start(cancel.clone()).await;
    let am_hook = Hook::start(cancel.clone()).await;

    let sim_addr = free_addr();
    let sim_args = vec!["sim".into(), "--listen".into(), sim_addr.to_string()];
    let sim = Proc::spawn("sim", BIN, &sim_args, dir.path());

    let am_addr = free_addr();
    std::fs::write(dir.path().join("am.yml"), alertmanager_config(am_hook.addr))
        .expect("am config");
    let am_args: Vec<String> = vec![
        "--config.file=am.yml".into(),
        "--storage.path=am-data".into(),
        format!("--web.listen-address={am_addr}"),
        "--cluster.listen-address=".into(),
    ];
    let am = Proc::spawn("alertmanager", ALERTMANAGER, &am_args, dir.path());

    std::fs::write(
        dir.path().join("watchfire.yml"),
        config(sim_addr, oncall.addr, am_addr),
    )
    .expect("watchfire config");
    let api = free_addr();
    let mut wf = watchfire(dir.path(), api);
    let limit = Duration::from_secs(15);
    until(limit, "alertmanager ready", &[&am], || async {
        get_json(am_addr, "/api/v2/status").await.map(drop)
    })
    .await;
    until(limit, "the target up", &[&wf, &sim], || async {
        let m = get_text(api, "/metrics").await?;
        m.lines()
            .any(|l| {
                l.starts_with("watchfire_target_up{")
                    && l.contains("target=\"gateway-health\"")
                    && l.ends_with(" 1")
            })
            .then_some(())
    })
    .await;

    // Down: every /health answers 500.
    faults(sim_addr, r#"{"error_rate": 1.0}"#).await;
    let id = until(limit, "an open incident", &[&wf], || open_incident(api)).await;
    let declared = format!("inc{id}:declared@oncall");
    let arrived = until(limit, "the declaration at the webhook", &[&wf], || async {
        oncall.arrived(&declared)
    })
    .await;
    let incident = get_json(api, &format!("/api/v1/incidents/{id}"))
        .await
        .expect("the incident");
    let started = humantime::parse_rfc3339(incident["started"].as_str().expect("started"))
        .expect("started is RFC 3339");
    let lag = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap_or_default()
        .saturating_sub(arrived.elapsed());
    println!("declaration arrived {lag:?} after the down decision (probe interval {INTERVAL:?})");
    assert!(
        lag <= INTERVAL,
        "declaration {lag:?} after the down decision"
    );

    // The status-page text lands in the incident's timeline (automatic, beside "Detected").
    until(
        limit,
        "the status-page text in the timeline",
        &[&wf],
        || async {
            let v = get_json(api, &format!("/api/v1/incidents/{id}")).await?;
            let ups = v["updates"].as_array()?.clone();
            ups.iter()
                .any(|u| {
                    u["automatic"] == true
                        && !u["message"].as_str().unwrap_or("").starts_with("Detected:")
                })
                .then_some(())
        },
    )
    .await;

    // Updates on cadence.
    let u1 = format!("inc{id}:update:1@oncall");
    let u2 = format!("inc{id}:update:2@oncall");
    let t1 = until(limit, "update 1", &[&wf], || async { oncall.arrived(&u1) }).await;
    let t2 = until(limit, "update 2", &[&wf], || async { oncall.arrived(&u2) }).await;
    let gap = t2.duration_since(t1);
    println!("updates 1 → 2: {gap:?} (update_every {UPDATE_EVERY:?})");
    assert!(
        gap + Duration::from_millis(900) >= UPDATE_EVERY
            && gap <= UPDATE_EVERY + Duration::from_millis(900),
        "updates {gap:?} apart, not every {UPDATE_EVERY:?}"
    );

    // Kill -9 mid-incident; the webhook refuses while watchfire comes back on the same store.
    // The message accepted last before the kill may not be marked sent in the store yet (the
    // window between the receiver's answer and the outbox's UPDATE): it is the only one that
    // may come again, and the receiver drops it by its Idempotency-Key.
    let in_flight = oncall.keys().last().cloned();
    wf.kill();
    oncall.refuse.store(true, Ordering::SeqCst);
    let wf = watchfire(dir.path(), api);
    until(
        limit,
        "refused deliveries after the restart",
        &[&wf],
        || async { (oncall.refused.load(Ordering::SeqCst) >= 3).then_some(()) },
    )
    .await;
    oncall.refuse.store(false, Ordering::SeqCst);

    // Up again: RESOLVED, once.
    faults(sim_addr, r#"{"error_rate": 0.0}"#).await;
    let resolved = format!("inc{id}:resolved@oncall");
    until(
        Duration::from_secs(20),
        "RESOLVED at the webhook",
        &[&wf, &sim],
        || async { oncall.arrived(&resolved) },
    )
    .await;
    until(
        limit,
        "the alert firing then resolved at Alertmanager's webhook",
        &[&wf, &am],
        || async {
            let alerts = am_alerts(&am_hook);
            let firing = alerts.iter().position(|(s, _)| s == "firing")?;
            let resolved = alerts.iter().skip(firing).find(|(s, _)| s == "resolved")?;
            Some(resolved.1.clone())
        },
    )
    .await;
    let ends = am_alerts(&am_hook)
        .into_iter()
        .find(|(s, _)| s == "resolved")
        .map(|(_, e)| e)
        .expect("a resolved alert");
    assert!(
        humantime::parse_rfc3339(&ends).is_ok() && !ends.starts_with("0001"),
        "resolved alert carries endsAt: {ends}"
    );

    // Exactly once after deduplication, in order; a repeat only of the one in flight at the kill.
    let repeats = oncall.repeats.lock().expect("repeats").clone();
    assert!(
        repeats.len() <= 1 && repeats.iter().all(|k| Some(k) == in_flight.as_ref()),
        "repeats {repeats:?}; only {in_flight:?} (in flight at the kill) may come twice"
    );
    let keys = oncall.keys();
    for k in &keys {
        assert_eq!(
            keys.iter().filter(|x| *x == k).count(),
            1,
            "{k} arrived more than once: {keys:?}"
        );
    }
    let pos = |k: &str| keys.iter().position(|x| x == k);
    let d = pos(&declared).expect("declared");
    let r = pos(&resolved).expect("resolved");
    assert_eq!(d, 0, "the declaration comes first: {keys:?}");
    assert_eq!(r, keys.len() - 1, "RESOLVED comes last: {keys:?}");
    let updates: Vec<u64> = keys
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&format!("inc{id}:update:"))?
                .strip_suffix("@oncall")?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        updates.windows(2).all(|w| w[0] < w[1]),
        "updates in order: {keys:?}"
    );
    println!(
        "keys at the webhook: {keys:?}; repeats dropped by Idempotency-Key: {repeats:?}; \
         refused while restarting: {}",
        oncall.refused.load(Ordering::SeqCst)
    );

    // The dispatcher's families are in /metrics.
    let m = get_text(api, "/metrics").await.expect("/metrics");
    assert!(
        m.lines()
            .any(|l| l.starts_with("watchfire_notify_sent_total{")
                && l.contains("receiver=\"oncall\"")
                && l.contains("kind=\"resolved\"")
                && l.ends_with(" 1")),
        "watchfire_notify_sent_total of RESOLVED at oncall is 1 in /metrics"
    );

    // A reload that removes `notify:` stops planning: the next outage is declared nowhere.
    let plain = config(sim_addr, oncall.addr, am_addr);
    let plain = &plain[..plain.find("\nnotify:").expect("a notify section")];
    std::fs::write(dir.path().join("watchfire.yml"), plain).expect("watchfire config");
    let r = reqwest::Client::new()
        .post(format!("http://{api}/-/reload"))
        .send()
        .await
        .expect("reload answers");
    assert!(r.status().is_success(), "reload: {}", r.status());
    let before = oncall.keys().len();
    faults(sim_addr, r#"{"error_rate": 1.0}"#).await;
    // Within `incidents.reopen_within` of its resolution, the same incident opens again.
    until(limit, "the incident open again", &[&wf], || {
        open_incident(api)
    })
    .await;
    let sent = common::poll_until(2 * UPDATE_EVERY, || async {
        oncall.keys().get(before..).and_then(|k| k.first().cloned())
    })
    .await;
    assert_eq!(sent, None, "nothing is planned once notify: is gone");
    drop((wf, sim, am));
    cancel.cancel();
}
