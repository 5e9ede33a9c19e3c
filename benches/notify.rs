//! Notification benchmark (issue 14): a network partition takes 1,000 of 10,000 targets down at
//! once, in 100 components; how long until every declaration is in the outbox, what it costs in
//! rows and memory, and whether probing lags for it.
//!
//! Method (one process, two runs of the same scenario, each on a fresh runtime and a fresh
//! SQLite store in a temp dir, the production backend):
//! - an HTTP server inside the bench answers `/ok` 200 always and `/part` 200 until the
//!   partition, 500 after; `--targets − --failing` targets probe `/ok` every `--healthy-s`
//!   seconds, `--failing` targets probe `/part` every `--failing-s` seconds with
//!   `down_after: 1`, labelled into `--components` components of equal size;
//! - the runtime runs on its probe threads (precise timers, as in production) with the incident
//!   feed and, in run A only, a `notify:` section: one webhook receiver inside the bench that
//!   takes `--slow-ms` per message (a slow receiver), every incident routed to it;
//! - after `--warmup-s` seconds the partition starts. Reported: each component's time from its
//!   incident's start (the down transition) to its declaration's outbox row (`created`),
//!   median and max; each component's time from its incident first seen open to its
//!   declaration queued (the notifier's share), and the time from the last down transition to
//!   the moment every declaration was queued (the bench polls the store every 20 ms until then,
//!   in both runs, then stops reading it); outbox rows and RSS before the partition and
//!   `--after-s` seconds after it; messages delivered by then (the receiver's pace);
//! - probing lag (actual − planned start, the runtime's lag histogram over the whole run) of run
//!   A (notifier) and run B (no `notify:` section), side by side.
//!
//! ```text
//! cargo bench --bench notify                      # or bench/notify.sh
//! cargo bench --bench notify -- --targets 10000 --failing 1000 --components 100
//! ```
//!
//! The last lines are machine-readable (`RESULT key=value ...`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::state::Health;
use watchfire::store::{IncidentQuery, OutboxState, Store, StoreOptions};

struct Args {
    targets: usize,
    failing: usize,
    components: usize,
    healthy_s: u64,
    failing_s: u64,
    warmup_s: u64,
    after_s: u64,
    slow_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        targets: 10_000,
        failing: 1_000,
        components: 100,
        healthy_s: 30,
        failing_s: 2,
        warmup_s: 4,
        after_s: 6,
        slow_ms: 200,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let mut num = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{k} needs a number"))
        };
        match k.as_str() {
            "--targets" => a.targets = num() as usize,
            "--failing" => a.failing = num() as usize,
            "--components" => a.components = num().max(1) as usize,
            "--healthy-s" => a.healthy_s = num().max(1),
            "--failing-s" => a.failing_s = num().max(1),
            "--warmup-s" => a.warmup_s = num(),
            "--after-s" => a.after_s = num(),
            "--slow-ms" => a.slow_ms = num(),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    assert!(a.failing <= a.targets, "--failing exceeds --targets");
    a
}

/// The bench's HTTP server: the probed endpoints and the slow webhook receiver.
#[derive(Clone, Default)]
struct Server {
    partition: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    slow: Duration,
}

impl Server {
    async fn start(slow: Duration, cancel: CancellationToken) -> (SocketAddr, Server) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = Server {
            slow,
            ..Server::default()
        };
        let server = s.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let s = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(s.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, s)
    }

    async fn answer(
        &self,
        req: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let _ = req.into_body().collect().await;
        let status = match path.as_str() {
            "/part" if self.partition.load(Ordering::Relaxed) => 500,
            "/hook" => {
                tokio::time::sleep(self.slow).await;
                self.received.fetch_add(1, Ordering::Relaxed);
                200
            }
            _ => 200,
        };
        let mut r = http::Response::new(Full::new(Bytes::from_static(b"ok")));
        *r.status_mut() = http::StatusCode::from_u16(status).expect("a status");
        r
    }
}

fn yaml(a: &Args, addr: SocketAddr, notify: bool) -> String {
    let mut y = String::from("targets:\n");
    let per = a.failing.div_ceil(a.components).max(1);
    for i in 0..a.failing {
        y.push_str(&format!(
            "  - name: part-{i:05}\n    url: http://{addr}/part\n    interval: {}s\n    timeout: 1s\n    down_after: 1\n    up_after: 1\n    labels: {{ component: comp-{:03} }}\n",
            a.failing_s,
            i / per
        ));
    }
    for i in a.failing..a.targets {
        y.push_str(&format!(
            "  - name: svc-{i:05}\n    url: http://{addr}/ok\n    interval: {}s\n    timeout: 1s\n",
            a.healthy_s
        ));
    }
    if notify {
        y.push_str(&format!(
            "notify:\n  receivers:\n    - name: slow\n      webhook: {{ url: \"http://{addr}/hook\" }}\n  routes:\n    - receivers: [slow]\n"
        ));
    }
    y
}

/// Resident memory of this process, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn open_query() -> IncidentQuery {
    IncidentQuery {
        open_only: true,
        ..IncidentQuery::default()
    }
}

/// (median, max) of sorted `v`; -1 when empty.
fn median_max(v: &[i64]) -> (i64, i64) {
    (
        v.get(v.len() / 2).copied().unwrap_or(-1),
        v.last().copied().unwrap_or(-1),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one run measured.
#[derive(Default)]
struct Run {
    lag_p50: Duration,
    lag_p99: Duration,
    lag_max: Duration,
    probes: u64,
    /// Per component: declaration queued − incident start, ms.
    queued_ms: Vec<i64>,
    /// Per component: declaration queued − incident first seen open (polled every 20 ms), ms:
    /// the notifier's own share.
    seen_ms: Vec<i64>,
    /// Down transitions seen.
    downs: usize,
    /// Last down transition → every declaration queued.
    all_queued: Option<Duration>,
    rows_before: usize,
    rows_after: usize,
    rss_before: u64,
    rss_after: u64,
    delivered: u64,
    incidents: usize,
}

async fn run(a: &Args, notify: bool) -> Run {
    let cancel = CancellationToken::new();
    let (addr, server) = Server::start(Duration::from_millis(a.slow_ms), cancel.clone()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&StoreOptions {
        path: Some(dir.path().to_path_buf()),
        url: None,
        retention: Default::default(),
    })
    .await
    .expect("store");
    let cfg = watchfire::config::load_str("bench.yaml", &yaml(a, addr, notify)).expect("config");
    let opts = RuntimeOptions {
        store: store.clone(),
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime");
    watchfire::runtime::incidents::start(rt.clone(), cancel.clone())
        .await
        .expect("incident feed");
    let mut events = rt.subscribe();
    let failing: Vec<_> = rt
        .targets()
        .iter()
        .filter(|t| t.spec.name.starts_with("part-"))
        .cloned()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(a.failing_s * 3 + a.warmup_s);
    loop {
        let up = failing
            .iter()
            .filter(|t| t.stats.lock().expect("stats").state.health == Health::Up)
            .count();
        if up == failing.len() && Instant::now() >= deadline - Duration::from_secs(a.failing_s * 3)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {up} of {} failing targets came up",
            failing.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut r = Run {
        rows_before: store.outbox_rows(0, 0).await.expect("rows").len(),
        rss_before: rss_kib(),
        ..Run::default()
    };
    while events.try_recv().is_ok() {}
    server.partition.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let end = start + Duration::from_secs(a.after_s);
    let mut last_down = start;
    let mut downs = 0;
    // Per incident: when this loop first saw it open, and its declaration queued.
    let mut seen: HashMap<i64, (Instant, Option<Instant>)> = HashMap::new();
    while Instant::now() < end {
        while let Ok(e) = events.try_recv() {
            if e.to == Health::Down {
                downs += 1;
                last_down = Instant::now();
            }
        }
        let done = seen.len() >= a.components && (!notify || r.all_queued.is_some());
        if done {
            // Measured: the bench's own store reads stop, so they do not weigh on the lag.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let open = store.incidents(&open_query()).await.expect("incidents");
        let now = Instant::now();
        for i in &open {
            seen.entry(i.id).or_insert((now, None));
        }
        if notify {
            let rows = store.outbox_rows(0, 0).await.expect("rows");
            let now = Instant::now();
            for row in rows.iter().filter(|x| x.kind == "declared") {
                if let Some(s) = seen.get_mut(&row.incident) {
                    s.1.get_or_insert(now);
                }
            }
            let declared = seen.values().filter(|s| s.1.is_some()).count();
            if r.all_queued.is_none() && downs == failing.len() && declared >= a.components {
                r.all_queued = Some(last_down.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.seen_ms = seen
        .values()
        .filter_map(
            |(open, queued)| Some(queued.as_ref()?.duration_since(*open).as_millis() as i64),
        )
        .collect();
    r.seen_ms.sort_unstable();
    r.downs = downs;
    let rows = store.outbox_rows(0, 0).await.expect("rows");
    let incidents = store.incidents(&open_query()).await.expect("incidents");
    r.incidents = incidents.len();
    for i in &incidents {
        if let Some(row) = rows
            .iter()
            .find(|x| x.incident == i.id && x.kind == "declared")
        {
            r.queued_ms.push(row.created - i.started);
        }
    }
    r.queued_ms.sort_unstable();
    r.rows_after = rows.len();
    r.delivered = rows.iter().filter(|x| x.state == OutboxState::Sent).count() as u64;
    r.rss_after = rss_kib();
    r.lag_p50 = rt.lag_quantile(0.5).unwrap_or_default();
    r.lag_p99 = rt.lag_quantile(0.99).unwrap_or_default();
    r.lag_max = rt.lag_quantile(1.0).unwrap_or_default();
    r.probes = rt.probes_recorded();
    cancel.cancel();
    rt.drain(Duration::from_secs(2)).await;
    r
}

fn main() {
    let a = args();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async {
        println!(
            "{} targets, {} going down at once in {} components; slow receiver {} ms/message",
            a.targets, a.failing, a.components, a.slow_ms
        );
        let b = run(&a, false).await;
        let with = run(&a, true).await;
        let (median, max) = median_max(&with.queued_ms);
        let (seen_median, seen_max) = median_max(&with.seen_ms);
        println!(
            "{} down transitions, {} incidents open, {} declarations queued (without the notifier: {} transitions, {} incidents open)",
            with.downs,
            with.incidents,
            with.queued_ms.len(),
            b.downs,
            b.incidents
        );
        println!("down transition → declaration queued: median {median} ms, max {max} ms");
        println!(
            "incident open (seen, 20 ms polls) → declaration queued: median {seen_median} ms, max {seen_max} ms"
        );
        println!(
            "last down transition → every declaration queued: {}",
            with.all_queued
                .map_or("not within the run".into(), |d| format!("{:.0} ms", ms(d)))
        );
        println!(
            "outbox rows: {} before, {} after {} s ({} delivered at the receiver's pace)",
            with.rows_before, with.rows_after, a.after_s, with.delivered
        );
        println!(
            "RSS: {} KiB before the partition, {} KiB {} s after ({:+} KiB)",
            with.rss_before,
            with.rss_after,
            a.after_s,
            with.rss_after as i64 - with.rss_before as i64
        );
        for (name, r) in [("without notifier", &b), ("with notifier", &with)] {
            println!(
                "lag {name:>16}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} probes",
                ms(r.lag_p50),
                ms(r.lag_p99),
                ms(r.lag_max),
                r.probes
            );
        }
        println!(
            "RESULT queued_median_ms={median} queued_max_ms={max} seen_median_ms={seen_median} seen_max_ms={seen_max} all_queued_ms={} rows_before={} rows_after={} delivered={} rss_before_kib={} rss_after_kib={} lag_p99_off_ms={:.3} lag_p99_on_ms={:.3} lag_max_off_ms={:.3} lag_max_on_ms={:.3}",
            with.all_queued.map_or(-1.0, ms),
            with.rows_before,
            with.rows_after,
            with.delivered,
            with.rss_before,
            with.rss_after,
            ms(b.lag_p99),
            ms(with.lag_p99),
            ms(b.lag_max),
            ms(with.lag_max),
        );
    });
}
