//! Status page benchmark (issue 13): the time to serve `/status` for 1,000 components and
//! `/api/v2/summary.json` for 10,000, through the real server.
//!
//! For each case: a runtime with N targets (closed loopback port, probed once an hour, so the
//! probes stay out of the measurement), no `status_page:` section (one component per target),
//! a store filled with 90 days of day rollups per target (a minor day every 7th, a major day every
//! 30th), 100 incidents (10 open) with 3 updates each; the server on `127.0.0.1:0`; one
//! keep-alive client sends `--warmup` requests, then `--requests` timed ones one after another.
//! Reported: body size, median and p99 of the request time (send to last body byte), and the
//! store queries each view makes ([`watchfire::status::QUERIES_PER_VIEW`], by construction).
//!
//! ```text
//! cargo bench --bench status                      # or bench/status.sh
//! cargo bench --bench status -- --page-components 1000 --summary-components 10000 --requests 100
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::server::{self, AppState, ServeOptions};
use watchfire::store::{
    now_millis, Impact, Incident, IncidentStatus, IncidentUpdate, Millis, Rollup, Write,
};

const DAY: Millis = 86_400_000;

struct Args {
    page_components: usize,
    summary_components: usize,
    requests: usize,
    warmup: usize,
}

fn args() -> Args {
    let mut a = Args {
        page_components: 1000,
        summary_components: 10_000,
        requests: 100,
        warmup: 5,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} needs a number"))
        };
        match k.as_str() {
            "--page-components" => a.page_components = num(),
            "--summary-components" => a.summary_components = num(),
            "--requests" => a.requests = num(),
            "--warmup" => a.warmup = num(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

fn yaml(n: usize) -> String {
    let mut y = String::from("targets:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: svc-{i:05}\n    url: http://127.0.0.1:9/health\n    interval: 1h\n"
        ));
    }
    y
}

async fn fill(rt: &Runtime, n: usize, now: Millis) {
    let store = rt.store();
    let today = now - now.rem_euclid(DAY);
    for i in 0..n {
        let target = format!("svc-{i:05}");
        for d in 0..90i64 {
            let down_ms = match (i as i64 + d) % 30 {
                0 => 2_400_000,
                x if x % 7 == 0 => 120_000,
                _ => 0,
            };
            store.write(Write::Minute(Rollup {
                target: target.clone(),
                start: today - d * DAY,
                probes: 8640,
                failures: (down_ms / 10_000) as u64,
                down_ms,
                latency: vec![8000, 600, 40, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                latency_sum: 20.0,
                ..Rollup::default()
            }));
        }
    }
    for k in 0..100i64 {
        let open = k < 10;
        let started = now - k * 3 * 3_600_000 - 600_000;
        let id = store
            .open_incident(&Incident {
                id: 0,
                component: format!("svc-{:05}", (k as usize * 37) % n),
                title: format!("Outage {k}"),
                status: if open {
                    IncidentStatus::Investigating
                } else {
                    IncidentStatus::Resolved
                },
                impact: Impact::Major,
                started,
                resolved: (!open).then_some(started + 600_000),
                targets: Vec::new(),
                in_maintenance: false,
                figures: None,
                acknowledged: None,
                root_cause: None,
                resolution: None,
            })
            .await
            .expect("incident");
        for u in 0..3 {
            store
                .add_update(&IncidentUpdate {
                    id: 0,
                    incident: id,
                    at: started + u * 120_000,
                    status: IncidentStatus::Investigating,
                    message: format!("update {u}"),
                    automatic: u == 0,
                    kind: None,
                })
                .await
                .expect("update");
        }
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn case(name: &str, n: usize, path: &str, a: &Args) {
    let cfg = watchfire::config::load_str("bench.yaml", &yaml(n)).expect("config");
    let cancel = CancellationToken::new();
    let opts = RuntimeOptions {
        precise_timer: false,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime");
    fill(&rt, n, now_millis()).await;
    breakdown(name, &rt).await;
    let listener = server::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(AppState {
        runtime: rt.clone(),
        registry: prometheus::Registry::new(),
    });
    let c = cancel.clone();
    let srv = tokio::spawn(server::serve_with(
        vec![listener],
        state,
        ServeOptions::default(),
        async move { c.cancelled().await },
    ));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let mut bytes = 0;
    for _ in 0..a.warmup {
        bytes = client
            .get(&url)
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body")
            .len();
    }
    let mut times = Vec::with_capacity(a.requests);
    for _ in 0..a.requests {
        let t = Instant::now();
        let resp = client.get(&url).send().await.expect("send");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        let _ = resp.bytes().await.expect("body");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{name}: {n} components, GET {path}: {} KiB, {} requests: median {:.1} ms, p99 {:.1} ms, max {:.1} ms; store queries per view: {}",
        bytes / 1024,
        a.requests,
        quantile(&times, 0.5).as_secs_f64() * 1e3,
        quantile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().expect("requests").as_secs_f64() * 1e3,
        if path == "/status" {
            watchfire::status::QUERIES_PER_VIEW
        } else {
            watchfire::status::QUERIES_PER_VIEW - watchfire::status::ROLLUP_QUERIES_PER_VIEW
        },
    );
    cancel.cancel();
    let _ = srv.await;
}

/// Where one view's time goes, in-process: the store queries, the view model, the rendering.
async fn breakdown(name: &str, rt: &Runtime) {
    use watchfire::status::{html, model, History};
    let now = now_millis();
    let t = Instant::now();
    let history = if name == "page" {
        History::Read
    } else {
        History::Skip
    };
    let inputs = watchfire::status::inputs(rt, now, history)
        .await
        .expect("inputs");
    let queried = t.elapsed();
    let t = Instant::now();
    let v = model::build(inputs);
    let built = t.elapsed();
    let t = Instant::now();
    let body = if name == "page" {
        html::status_page(&v)
    } else {
        serde_json::to_string_pretty(&watchfire::status::api::summary(&v)).expect("json")
    };
    let rendered = t.elapsed();
    println!(
        "{name} breakdown: store {:.1} ms, view {:.1} ms, render {:.1} ms ({} KiB)",
        queried.as_secs_f64() * 1e3,
        built.as_secs_f64() * 1e3,
        rendered.as_secs_f64() * 1e3,
        body.len() / 1024
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        case("page", a.page_components, "/status", &a).await;
        case("summary", a.summary_components, "/api/v2/summary.json", &a).await;
    });
}
