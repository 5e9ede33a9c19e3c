//! `watchfire demo`: the whole story on a fresh clone, no config, under a minute.
//!
//! Starts a primary and a backup simulated gateway on free loopback ports, a failover group over
//! them with its proxy, and a client sending requests through the proxy. Probes every 250 ms,
//! serves `/metrics`, then breaks the primary twice (first it stops accepting connections,
//! later it hangs) and heals it, printing a timeline: each fault, each state change with the
//! time from fault to detection, each failover and failback with its measured time, and at the
//! end how many client requests failed (none, when it works).
//!
//! The incidents the faults open are announced as watchfire announces them to people: the
//! demo's config has a `notify:` section whose one receiver is a webhook served inside the
//! demo (the `inbox` module), with updates every few seconds, and each message it receives (the
//! declaration, the updates with the traffic moved, RESOLVED with the figures) is printed on
//! the timeline.

mod inbox;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::server::{self, AppState};
use crate::sim::{FaultConfig, Sim};
use crate::state::{Health, TransitionEvent};

/// Probe interval of the demo's targets.
const INTERVAL: Duration = Duration::from_millis(250);
/// Probe timeout of the demo's targets.
const TIMEOUT: Duration = Duration::from_millis(200);
/// Pause between two client requests through the failover proxy.
const CLIENT_PACE: Duration = Duration::from_millis(25);
/// Time between two updates of an open incident (the runbook's is 5 minutes; the demo's
/// outages last seconds).
const UPDATE_EVERY: &str = "3s";
/// The name of the demo's notification receiver.
const RECEIVER: &str = "demo-inbox";

/// What `watchfire demo` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep running after the story ends (until Ctrl-C).
    pub forever: bool,
    /// Address for the demo's /metrics (port 0: a free port).
    pub listen: SocketAddr,
}

/// One step of the script: at `at` after start, do `action`.
struct Step {
    at: Duration,
    action: Action,
    text: &'static str,
}

enum Action {
    Down,
    Hang,
    Heal,
}

const SCRIPT: &[Step] = &[
    Step {
        at: Duration::from_secs(3),
        action: Action::Down,
        text: "primary stops accepting connections (as after an OOM kill, exit 137)",
    },
    Step {
        at: Duration::from_secs(9),
        action: Action::Heal,
        text: "primary restarted",
    },
    Step {
        at: Duration::from_secs(14),
        action: Action::Hang,
        text: "primary hangs: accepts connections, never answers",
    },
    Step {
        at: Duration::from_secs(19),
        action: Action::Heal,
        text: "primary fixed",
    },
];

/// How long the story runs.
const STORY: Duration = Duration::from_secs(24);

fn demo_config(p: &str, b: &str, hook: &str) -> anyhow::Result<Config> {
    let yaml = format!(
        "targets:
  - name: primary-predict
    url: {p}/predict
    method: POST
    body_json: {{ data: [[1, 2, 3, 4]] }}
    interval: 250ms
    timeout: 200ms
    labels: {{ service: inference-gateway, component: inference-gateway }}
failover:
  - name: inference-gateway
    instances: [{p}, {b}]
    check: {{ path: /health, interval: 250ms, timeout: 200ms, expect: {{ json: {{ status: healthy }} }} }}
    down_after: 3
    up_after: 2
    hold: 2s
    min_switch_interval: 1s
    proxy: {{ listen: \"127.0.0.1:0\" }}
notify:
  update_every: {UPDATE_EVERY}
  receivers:
    - name: {RECEIVER}
      webhook: {{ url: \"{hook}\" }}
  routes:
    - receivers: [{RECEIVER}]
"
    );
    crate::config::load_str("demo", &yaml).map_err(|e| anyhow::anyhow!("the demo config: {e}"))
}

/// Friendly names for the timeline.
fn role(target: &str) -> &str {
    match target {
        "inference-gateway/0" => "primary /health",
        "inference-gateway/1" => "backup /health",
        "primary-predict" => "primary /predict",
        other => other,
    }
}

/// What the demo's client saw: requests answered with a success, the others, and why the
/// first few of those failed (when, which request, the status or the error).
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    failed: u64,
    first_failures: Vec<String>,
}

impl Tally {
    /// Failures kept with their reason; the rest are only counted.
    const KEPT: usize = 5;

    fn fail(&mut self, at: Duration, what: &str, why: String) {
        self.failed += 1;
        if self.first_failures.len() < Self::KEPT {
            self.first_failures
                .push(format!("{} {what}: {why}", stamp(at)));
        }
    }
}

/// A moment of the story as the timeline prints it: `[  3.01s]`.
fn stamp(since_start: Duration) -> String {
    format!("[{:>6.2}s]", since_start.as_secs_f64())
}

/// Client traffic through the failover proxy, GET /health and POST /predict in turn, on one
/// kept-alive connection (a new one after an error), until `stop`; `start` is the story's.
async fn clients(proxy: std::net::SocketAddr, start: Instant, stop: CancellationToken) -> Tally {
    use http_body_util::{BodyExt, Full};
    let mut tally = Tally::default();
    let mut sender = None;
    let mut i = 0u64;
    while !stop.is_cancelled() {
        let post = i % 2 == 1;
        let what = if post { "POST /predict" } else { "GET /health" };
        i += 1;
        if sender.is_none() {
            match connect_proxy(proxy).await {
                Ok(tx) => sender = Some(tx),
                Err(e) => tally.fail(start.elapsed(), what, e),
            }
        }
        let req = http::Request::builder()
            .method(if post { "POST" } else { "GET" })
            .uri(if post { "/predict" } else { "/health" })
            .header("host", "inference-gateway")
            .header("content-type", "application/json")
            // An inference request may be delivered twice: the proxy may resend it to the backup
            // when the primary freezes with it in flight.
            .header("idempotency-key", i.to_string())
            .body(Full::new(bytes::Bytes::from_static(if post {
                br#"{"data": [[1, 2, 3, 4]]}"#
            } else {
                b""
            })))
            .expect("a valid request");
        if let Some(tx) = sender.as_mut() {
            let answer =
                match tx.send_request(req).await {
                    Ok(r) if !r.status().is_success() => Err(format!("answered {}", r.status())),
                    Ok(r) => r.into_body().collect().await.map(|_| ()).map_err(|e| {
                        format!("the answer's body broke off: {}", crate::net::chain(&e))
                    }),
                    Err(e) => {
                        sender = None;
                        Err(crate::net::chain(&e))
                    }
                };
            match answer {
                Ok(()) => tally.ok += 1,
                Err(why) => tally.fail(start.elapsed(), what, why),
            }
        }
        tokio::time::sleep(CLIENT_PACE).await;
    }
    tally
}

/// A kept-alive HTTP/1.1 connection to the proxy.
async fn connect_proxy(
    proxy: std::net::SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>, String> {
    let s = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("connecting to the proxy: {e}"))?;
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .map_err(|e| format!("handshake with the proxy: {e}"))?;
    tokio::spawn(conn);
    Ok(tx)
}

/// The story as it runs: the script's faults and heals, and as they come, the traffic moving
/// between instances, the targets' transitions and the messages the demo's receiver got.
struct Story<'a> {
    start: Instant,
    /// Keep going after the script (until interrupted).
    forever: bool,
    primary: &'a Sim,
    group: &'a crate::failover::Group,
}

impl Story<'_> {
    /// Plays the script and prints the timeline until its end (or `cancel`); returns what was
    /// detected and how long after its fault or heal.
    async fn tell(
        &self,
        cancel: &CancellationToken,
        inbox: &mut inbox::Inbox,
        events: &mut tokio::sync::broadcast::Receiver<TransitionEvent>,
    ) -> Vec<(String, Duration)> {
        let stamp = |t: Instant| stamp(t.saturating_duration_since(self.start));
        let mut last_fault: Option<Instant> = None;
        let mut last_heal: Option<Instant> = None;
        let mut active = self.group.active();
        let mut detections = Vec::new();
        let mut steps = SCRIPT.iter().peekable();
        let end = self.start + STORY;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            let next_step = steps.peek().map(|s| self.start + s.at);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = sleep_until(end), if !self.forever => break,
                _ = async { sleep_until(next_step.unwrap_or(end)).await }, if next_step.is_some() => {
                    let step = steps.next().expect("peeked");
                    let now = Instant::now();
                    let kind = act(step, self.primary);
                    match step.action {
                        Action::Down | Action::Hang => last_fault = Some(now),
                        Action::Heal => last_heal = Some(now),
                    }
                    println!("{} {kind}  {}", stamp(now), step.text);
                }
                _ = tick.tick() => {
                    let now_active = self.group.active();
                    if now_active != active {
                        let now = Instant::now();
                        let (what, since) = traffic_moved(now_active, active, last_fault, last_heal, now);
                        match since {
                            Some((label, d)) => {
                                println!("{} {what}  ({:.0} ms {label})", stamp(now), d.as_secs_f64() * 1000.0);
                                detections.push((what.split_whitespace().next().unwrap_or(what).to_lowercase(), d));
                            }
                            None => println!("{} {what}", stamp(now)),
                        }
                        active = now_active;
                    }
                }
                Some(n) = inbox.notes.recv() => {
                    println!("{} NOTIFY {:<12} {}", stamp(Instant::now()), n.kind, n.title);
                    if !n.detail.is_empty() {
                        println!("{:>10}        {:<12} {}", "", "", n.detail);
                    }
                }
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        let line = describe(&ev, last_fault, last_heal, &mut detections);
                        println!("{} {line}", stamp(ev.at));
                    }
                    Err(RecvError::Lagged(n)) => println!("(missed {n} events)"),
                    Err(RecvError::Closed) => break,
                }
            }
        }
        detections
    }
}

/// Runs the demo.
pub async fn run(a: Options) -> anyhow::Result<ExitCode> {
    let local = "127.0.0.1:0".parse().expect("a literal address");
    let primary = Sim::start(local, FaultConfig::default())
        .await
        .context("starting the primary sim")?;
    let backup = Sim::start(local, FaultConfig::default())
        .await
        .context("starting the backup sim")?;
    let p = format!("http://{}", primary.local_addr());
    let b = format!("http://{}", backup.local_addr());
    let cancel = CancellationToken::new();
    let mut inbox = inbox::Inbox::start(cancel.child_token())
        .await
        .context("starting the demo's notification receiver")?;
    let config = demo_config(&p, &b, &inbox.url())?;
    crate::shutdown::on_terminate(cancel.clone()).context("installing signal handlers")?;
    let runtime = Runtime::start(config, None, RuntimeOptions::default(), cancel.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let group = runtime
        .failover_group("inference-gateway")
        .context("the demo's failover group")?;
    let proxy = group.proxy_addr().context("the demo's failover proxy")?;
    let mut events = runtime.subscribe();
    if let Err(e) = crate::runtime::incidents::start(runtime.clone(), cancel.child_token()).await {
        println!("(incidents are not recorded: {e})");
    }
    let (metrics_addr, server) = serve_metrics(a.listen, runtime.clone(), cancel.clone()).await?;
    banner(&p, &b, proxy, metrics_addr, &inbox.url());

    let start = Instant::now();
    let stop_clients = cancel.child_token();
    let load = tokio::spawn(clients(proxy, start, stop_clients.clone()));
    let story = Story {
        start,
        forever: a.forever,
        primary: &primary,
        group: &group,
    };
    let detections = story.tell(&cancel, &mut inbox, &mut events).await;
    // The client stops first, between two requests: the proxy's shutdown would otherwise close
    // its kept-alive connection under a request about to be sent, and count that as a failure.
    stop_clients.cancel();
    let tally = load.await.unwrap_or_default();
    let incidents = recorded_incidents(&runtime).await;
    let notified = inbox.received.load(Ordering::Relaxed);
    cancel.cancel();
    print_ending(&runtime, &incidents, metrics_addr, &detections, &tally);
    println!("messages received by the demo's webhook receiver ({RECEIVER}): {notified}");
    let _ = server.await;
    stop(&runtime, primary, backup).await;
    Ok(ExitCode::SUCCESS)
}

/// What the demo leaves: the incidents it recorded with their timelines, where the status page
/// and the API were, the detection summary and the client's requests, with why the first
/// failures failed.
fn print_ending(
    runtime: &Runtime,
    incidents: &str,
    metrics_addr: std::net::SocketAddr,
    detections: &[(String, Duration)],
    sent: &Tally,
) {
    println!();
    print!("{incidents}");
    println!("status page: http://{metrics_addr}/status   incidents: http://{metrics_addr}/api/v1/incidents");
    println!();
    println!("{}", summary(runtime, detections));
    println!(
        "client requests through the failover proxy: {} ok, {} failed",
        sent.ok, sent.failed
    );
    for f in &sent.first_failures {
        println!("  {f}");
    }
    println!("metrics were at http://{metrics_addr}/metrics");
}

/// The incidents the story left, oldest first, with their timelines, as `watchfire incident
/// show` prints them; waits (bounded) for the last recovery to be recorded.
async fn recorded_incidents(rt: &Runtime) -> String {
    let store = rt.store();
    let all = crate::store::IncidentQuery::default();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut found = Vec::new();
    while Instant::now() < deadline {
        found = store.incidents(&all).await.unwrap_or_default();
        if found.iter().all(|i| i.resolved.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found.reverse();
    let ids: Vec<i64> = found.iter().map(|i| i.id).collect();
    let updates = store.updates(&ids).await.unwrap_or_default();
    let mut out = format!("incidents recorded: {}\n", found.len());
    for i in &found {
        out.push_str(&crate::incident::view::IncidentView::new(i, &updates).render());
    }
    out
}

/// Lets the runtime's probes end, then stops both gateways.
async fn stop(runtime: &Runtime, primary: Sim, backup: Sim) {
    runtime.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
}

/// Serves the demo's `/metrics` and API on `listen` until `cancel`; returns the address and the
/// server's task.
async fn serve_metrics(
    listen: SocketAddr,
    runtime: Arc<Runtime>,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--listen)"))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        runtime,
        registry: crate::metrics::process_registry(),
    });
    let server = tokio::spawn(server::serve(listener, state, async move {
        cancel.cancelled().await
    }));
    Ok((addr, server))
}

/// What the demo is made of, printed before the story starts.
fn banner(p: &str, b: &str, proxy: SocketAddr, metrics_addr: SocketAddr, hook: &str) {
    println!("watchfire demo — an inference gateway with a primary and a backup instance");
    println!("  primary  {p}   (GET /health, POST /predict)");
    println!("  backup   {b}");
    println!("  probes   every {INTERVAL:?}, timeout {TIMEOUT:?}, down after 3 failures, up after 2 successes");
    println!("  proxy    http://{proxy}  (failover; a client sends a request through it every {CLIENT_PACE:?})");
    println!("  metrics  http://{metrics_addr}/metrics   failover: http://{metrics_addr}/api/v1/failover");
    println!(
        "  status   http://{metrics_addr}/status   (add --forever to keep it up after the story)"
    );
    println!(
        "  notify   {hook}  (a webhook receiver inside the demo; updates every {UPDATE_EVERY})"
    );
    println!();
}

/// Plays one step of the script on the primary; returns how the timeline labels it.
fn act(step: &Step, primary: &Sim) -> &'static str {
    match step.action {
        Action::Down => primary.go_down(),
        Action::Hang => primary.set_faults(FaultConfig {
            hang: true,
            ..FaultConfig::default()
        }),
        Action::Heal => primary.heal(),
    }
    match step.action {
        Action::Heal => "HEAL ",
        Action::Down | Action::Hang => "FAULT",
    }
}

/// The timeline's words for traffic moving from `before` to `now_active`, and, for a failover
/// or failback, the time since the fault or heal that caused it.
fn traffic_moved(
    now_active: Option<usize>,
    before: Option<usize>,
    last_fault: Option<Instant>,
    last_heal: Option<Instant>,
    now: Instant,
) -> (&'static str, Option<(&'static str, Duration)>) {
    match now_active {
        // The group's first choice, before anything failed: not a failback.
        Some(0) if before.is_none() && last_fault.is_none() => ("ACTIVE traffic → primary", None),
        Some(0) => (
            "FAILBACK traffic → primary",
            last_heal.map(|h| ("after the heal", now - h)),
        ),
        Some(_) => (
            "FAILOVER traffic → backup",
            last_fault.map(|f| ("after the fault", now - f)),
        ),
        None => ("NO INSTANCE UP: the proxy answers 503", None),
    }
}

fn describe(
    ev: &TransitionEvent,
    last_fault: Option<Instant>,
    last_heal: Option<Instant>,
    detections: &mut Vec<(String, Duration)>,
) -> String {
    let mut s = String::new();
    match ev.to {
        Health::Down => {
            let _ = write!(s, "DOWN   {:<17}", role(&ev.target));
            if let Some(r) = ev.reason {
                let _ = write!(s, " reason={r}");
            }
            if let Some(f) = last_fault.filter(|f| *f <= ev.at) {
                let d = ev.at - f;
                let _ = write!(
                    s,
                    "  detected {:.0} ms after the fault",
                    d.as_secs_f64() * 1000.0
                );
                detections.push((format!("{} down", role(&ev.target)), d));
            }
        }
        Health::Up => {
            let _ = write!(s, "UP     {:<17}", role(&ev.target));
            match (ev.from, last_heal.filter(|h| *h <= ev.at)) {
                (Health::Down, Some(h)) => {
                    let d = ev.at - h;
                    let _ = write!(
                        s,
                        "  recovered {:.0} ms after the heal",
                        d.as_secs_f64() * 1000.0
                    );
                    detections.push((format!("{} up", role(&ev.target)), d));
                }
                _ => s.push_str("  (first decision)"),
            }
        }
        Health::Unknown => {
            let _ = write!(s, "?      {}", ev.target);
        }
    }
    s
}

fn summary(rt: &Runtime, detections: &[(String, Duration)]) -> String {
    let mut s = String::from("summary\n");
    let _ = writeln!(
        s,
        "  {:<17} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6}",
        "target", "probes", "success", "p50", "p99", "p99*", "flips"
    );
    for t in rt.targets().iter() {
        let st = t.stats.lock().expect("stats lock poisoned");
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.2}ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into())
        };
        let probes = st.probes();
        let ratio = if probes == 0 {
            0.0
        } else {
            st.successes as f64 * 100.0 / probes as f64
        };
        let _ = writeln!(
            s,
            "  {:<17} {:>7} {:>7.1}% {:>9} {:>9} {:>9} {:>6}",
            role(&t.spec.name),
            probes,
            ratio,
            ms(st.latency.quantile(0.5)),
            ms(st.latency.quantile(0.99)),
            ms(st.latency_planned.quantile(0.99)),
            st.transitions_up + st.transitions_down
        );
    }
    s.push_str(
        "  (p99* is measured from the planned start: it includes any delay of the prober itself)\n",
    );
    if !detections.is_empty() {
        s.push_str("detection times\n");
        for (what, d) in detections {
            let _ = writeln!(s, "  {what:<26} {:>7.0} ms", d.as_secs_f64() * 1000.0);
        }
    }
    let lag = rt.lag_quantile(0.99).map(|d| d.as_secs_f64() * 1e6);
    if let Some(us) = lag {
        let _ = writeln!(s, "schedule lag p99 over all probes: {us:.0} µs");
    }
    s
}
