//! `watchfire demo`: the whole story on a fresh clone, no config, under a minute.
//!
//! Starts a primary and a backup simulated gateway on free loopback ports, probes both every
//! 250 ms, serves `/metrics`, then breaks the primary twice (first it stops accepting
//! connections, later it hangs) and heals it, printing a timeline: each fault, each state
//! change with the time from fault to detection, and where traffic would go (the first healthy
//! instance in order, primary first).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::config::{Config, TargetSpec};
use crate::runtime::{Runtime, RuntimeOptions, TransitionEvent};
use crate::server::{self, AppState};
use crate::sim::{FaultConfig, Sim};
use crate::state::Health;

/// Probe interval of the demo's targets.
const INTERVAL: Duration = Duration::from_millis(250);
/// Probe timeout of the demo's targets.
const TIMEOUT: Duration = Duration::from_millis(200);

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
        at: Duration::from_secs(8),
        action: Action::Heal,
        text: "primary restarted",
    },
    Step {
        at: Duration::from_secs(13),
        action: Action::Hang,
        text: "primary hangs: accepts connections, never answers",
    },
    Step {
        at: Duration::from_secs(18),
        action: Action::Heal,
        text: "primary fixed",
    },
];

/// How long the story runs.
const STORY: Duration = Duration::from_secs(22);

fn target(name: &str, base: &str, path: &str, post: bool) -> anyhow::Result<TargetSpec> {
    let mut t = TargetSpec::new(name, &format!("{base}{path}")).map_err(anyhow::Error::msg)?;
    t.interval = INTERVAL;
    t.timeout = TIMEOUT;
    t.labels
        .insert("service".into(), "inference-gateway".into());
    if post {
        t.method = http::Method::POST;
        t.body = bytes::Bytes::from_static(br#"{"data": [[1, 2, 3, 4]]}"#);
        t.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    } else {
        t.expect
            .json
            .push((vec!["status".into()], serde_json::json!("healthy")));
    }
    Ok(t)
}

/// Where traffic goes: the first instance (primary first) that is up.
fn active(health: &BTreeMap<String, Health>) -> &'static str {
    if health.get("primary-health") == Some(&Health::Up) {
        "primary"
    } else if health.get("backup-health") == Some(&Health::Up) {
        "backup"
    } else {
        "none (503)"
    }
}

/// Runs the demo.
pub async fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let local = "127.0.0.1:0".parse().expect("a literal address");
    let primary = Sim::start(local, FaultConfig::default())
        .await
        .context("starting the primary sim")?;
    let backup = Sim::start(local, FaultConfig::default())
        .await
        .context("starting the backup sim")?;
    let p = format!("http://{}", primary.local_addr());
    let b = format!("http://{}", backup.local_addr());
    let config = Config {
        targets: vec![
            Arc::new(target("primary-health", &p, "/health", false)?),
            Arc::new(target("primary-predict", &p, "/predict", true)?),
            Arc::new(target("backup-health", &b, "/health", false)?),
        ],
        ..Config::default()
    };
    let cancel = CancellationToken::new();
    crate::shutdown::on_terminate(cancel.clone()).context("installing signal handlers")?;
    let runtime = Runtime::start(config, None, RuntimeOptions::default(), cancel.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let mut events = runtime.subscribe();
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", a.listen))?;
    let metrics_addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        runtime: runtime.clone(),
        registry: crate::metrics::process_registry(),
    });
    let c = cancel.clone();
    let server = tokio::spawn(server::serve(listener, state, async move {
        c.cancelled().await
    }));

    println!("watchfire demo — an inference gateway with a primary and a backup instance");
    println!("  primary  {p}   (GET /health, POST /predict)");
    println!("  backup   {b}");
    println!("  probes   every {INTERVAL:?}, timeout {TIMEOUT:?}, down after 3 failures, up after 2 successes");
    println!(
        "  metrics  http://{metrics_addr}/metrics   targets: http://{metrics_addr}/api/v1/targets"
    );
    println!();

    let start = Instant::now();
    let stamp = |t: Instant| {
        format!(
            "[{:>6.2}s]",
            t.saturating_duration_since(start).as_secs_f64()
        )
    };
    let mut health: BTreeMap<String, Health> = BTreeMap::new();
    let mut last_fault: Option<Instant> = None;
    let mut last_heal: Option<Instant> = None;
    let mut route = active(&health);
    let mut detections: Vec<(String, Duration)> = Vec::new();
    let mut steps = SCRIPT.iter().peekable();
    let end = start + STORY;
    loop {
        let next_step = steps.peek().map(|s| start + s.at);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sleep_until(end), if !a.forever => break,
            _ = async { sleep_until(next_step.unwrap_or(end)).await }, if next_step.is_some() => {
                let step = steps.next().expect("peeked");
                let now = Instant::now();
                match step.action {
                    Action::Down => { primary.go_down(); last_fault = Some(now); }
                    Action::Hang => {
                        primary.set_faults(FaultConfig { hang: true, ..FaultConfig::default() });
                        last_fault = Some(now);
                    }
                    Action::Heal => {
                        primary.heal();
                        last_heal = Some(now);
                    }
                }
                let kind = if matches!(step.action, Action::Heal) { "HEAL " } else { "FAULT" };
                println!("{} {kind}  {}", stamp(now), step.text);
            }
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let line = describe(&ev, last_fault, last_heal, &mut detections);
                    println!("{} {line}", stamp(ev.at));
                    health.insert(ev.target.clone(), ev.to);
                    let now_route = active(&health);
                    if now_route != route && ev.target.ends_with("-health") {
                        let what = if now_route == "backup" { "FAILOVER" } else if now_route == "primary" && route == "backup" { "FAILBACK" } else { "ROUTE" };
                        println!("{} {what} traffic → {now_route}", stamp(ev.at));
                        route = now_route;
                    }
                }
                Err(RecvError::Lagged(n)) => println!("(missed {n} events)"),
                Err(RecvError::Closed) => break,
            }
        }
    }

    println!();
    println!("{}", summary(&runtime, &detections));
    println!("metrics were at http://{metrics_addr}/metrics");
    cancel.cancel();
    let _ = server.await;
    runtime.drain(Duration::from_secs(2)).await;
    primary.shutdown().await;
    backup.shutdown().await;
    Ok(ExitCode::SUCCESS)
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
            let _ = write!(s, "DOWN   {:<16}", ev.target);
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
                detections.push((format!("{} down", ev.target), d));
            }
        }
        Health::Up => {
            let _ = write!(s, "UP     {:<16}", ev.target);
            match (ev.from, last_heal.filter(|h| *h <= ev.at)) {
                (Health::Down, Some(h)) => {
                    let d = ev.at - h;
                    let _ = write!(
                        s,
                        "  recovered {:.0} ms after the heal",
                        d.as_secs_f64() * 1000.0
                    );
                    detections.push((format!("{} up", ev.target), d));
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
        "  {:<16} {:>7} {:>8} {:>9} {:>9} {:>9} {:>6}",
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
            "  {:<16} {:>7} {:>7.1}% {:>9} {:>9} {:>9} {:>6}",
            t.spec.name,
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
