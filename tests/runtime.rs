//! The running prober in-process: reload, /metrics content, the API, transitions, isolation of
//! a hanging target, shutdown.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, get, request, sample};
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::state::Health;

async fn sim() -> Sim {
    Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .expect("sim starts")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
}

fn config_text(base: &str, extra: &str) -> String {
    format!(
        "defaults:\n  interval: 50ms\n  timeout: 40ms\n  labels: {{ team: sre }}\ntargets:\n  - name: health\n    url: {base}/health\n    expect: {{ json: {{ status: healthy }} }}\n{extra}"
    )
}

struct Running {
    runtime: Arc<Runtime>,
    addr: SocketAddr,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(path: &Path) -> Running {
    let cfg = config::load(path).expect("config loads");
    let cancel = CancellationToken::new();
    let runtime = Runtime::start(
        cfg,
        Some(path.to_path_buf()),
        RuntimeOptions::default(),
        cancel.clone(),
    )
    .await
    .expect("runtime starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = common::serve(listener, &runtime, &cancel);
    Running {
        runtime,
        addr,
        cancel,
        server,
    }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server ends cleanly");
        assert!(
            self.runtime.drain(Duration::from_secs(2)).await,
            "probes drained"
        );
    }

    fn probes(&self, name: &str) -> u64 {
        self.runtime
            .target(name)
            .map(|t| t.stats.lock().unwrap().probes())
            .unwrap_or(0)
    }

    fn health(&self, name: &str) -> Health {
        self.runtime
            .target(name)
            .expect("target")
            .stats
            .lock()
            .unwrap()
            .state
            .health
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_targets_state_and_refuses_a_bad_config() {
    let gw = sim().await;
    let base = format!("http://{}", gw.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probes.yaml");
    let predict = "  - name: predict\n    url: BASE/predict\n    method: POST\n    body_json: { data: [[1, 2]] }\n";
    write(&path, &config_text(&base, &predict.replace("BASE", &base)));
    let r = start(&path).await;

    eventually(Duration::from_secs(5), "health probed 5 times", || async {
        (r.probes("health") >= 5).then_some(())
    })
    .await;
    let kept = r.runtime.target("health").unwrap();
    let before = r.probes("health");

    // health unchanged, predict changed (other path), extra added.
    let changed = format!(
        "  - name: predict\n    url: {base}/predict?v=2\n    method: POST\n    body_json: {{ data: [[1, 2]] }}\n  - name: extra\n    url: {base}/health\n"
    );
    write(&path, &config_text(&base, &changed));
    r.runtime.reload().await.expect("good reload");
    let after = r.runtime.target("health").unwrap();
    assert!(
        Arc::ptr_eq(&kept, &after),
        "unchanged target is carried over"
    );
    assert!(r.probes("health") >= before, "its counters were not reset");
    assert!(r.runtime.target("extra").is_some());
    assert_eq!(r.runtime.targets().len(), 3);
    assert!(
        r.probes("predict") < before + 5,
        "changed target starts fresh"
    );

    // A bad config: refused, the old one keeps running, the gauge says so.
    write(&path, "targets:\n  - name: health\n    url: not a url\n");
    let err = r.runtime.reload().await.expect_err("bad config is refused");
    assert!(err.contains("probes.yaml:3"), "{err}");
    assert!(err.contains("targets[0].url"), "{err}");
    assert_eq!(r.runtime.targets().len(), 3, "old config still running");
    let n = r.probes("health");
    eventually(Duration::from_secs(5), "health still probed", || async {
        (r.probes("health") > n + 2).then_some(())
    })
    .await;
    let (_, metrics) = get(r.addr, "/metrics").await;
    assert_eq!(
        sample(&metrics, "watchfire_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "watchfire_config_reloads_total{result=\"failure\"}"
        ),
        Some(1.0)
    );

    // The HTTP reload endpoint: POST only; a bad config is a 400 naming the problem.
    let (code, _) = get(r.addr, "/-/reload").await;
    assert_eq!(code, 405);
    let (code, body) = request(r.addr, "POST", "/-/reload").await;
    assert_eq!(code, 400);
    assert!(body.contains("targets[0].url"), "{body}");
    write(&path, &config_text(&base, ""));
    let (code, _) = request(r.addr, "POST", "/-/reload").await;
    assert_eq!(code, 200);
    assert!(Arc::ptr_eq(&kept, &r.runtime.target("health").unwrap()));
    let (_, metrics) = get(r.addr, "/metrics").await;
    assert_eq!(
        sample(&metrics, "watchfire_config_last_reload_successful"),
        Some(1.0)
    );
    r.stop().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_api_describe_every_target() {
    let gw = sim().await;
    let base = format!("http://{}", gw.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(
        &path,
        // `full`: every per-target family (the default, standard, is counted in src/metrics).
        &config_text(
            &base,
            &format!("  - name: broken\n    url: {base}/nope\nmetrics:\n  detail: full\n"),
        ),
    );
    let r = start(&path).await;
    eventually(Duration::from_secs(5), "both decided", || async {
        (r.health("health") == Health::Up && r.health("broken") == Health::Down).then_some(())
    })
    .await;
    let (code, m) = get(r.addr, "/metrics").await;
    assert_eq!(code, 200);
    let h = "{target=\"health\",team=\"sre\"}";
    let b = "{target=\"broken\",team=\"sre\"}";
    assert_eq!(sample(&m, &format!("watchfire_target_up{h}")), Some(1.0));
    assert_eq!(sample(&m, &format!("watchfire_target_up{b}")), Some(0.0));
    assert_eq!(
        sample(&m, &format!("watchfire_probe_success{b}")),
        Some(0.0)
    );
    assert!(
        sample(
            &m,
            "watchfire_probes_total{target=\"broken\",team=\"sre\",result=\"status\"}"
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        sample(
            &m,
            "watchfire_target_transitions_total{target=\"broken\",team=\"sre\",to=\"down\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "watchfire_probe_last_status_code{target=\"broken\",team=\"sre\"}"
        ),
        Some(404.0)
    );
    let p99 = sample(
        &m,
        "watchfire_probe_latency_seconds{target=\"health\",team=\"sre\",quantile=\"0.99\"}",
    )
    .expect("p99");
    assert!(p99 > 0.0 && p99 < 0.04, "{p99}");
    let planned = sample(&m, "watchfire_probe_latency_from_planned_seconds{target=\"health\",team=\"sre\",quantile=\"0.99\"}").expect("planned p99");
    assert!(
        planned >= p99,
        "planned view {planned} includes the lag on top of {p99}"
    );
    let count = sample(&m, &format!("watchfire_probe_duration_seconds_count{h}")).unwrap();
    let inf = sample(
        &m,
        "watchfire_probe_duration_seconds_bucket{target=\"health\",team=\"sre\",le=\"+Inf\"}",
    )
    .unwrap();
    assert_eq!(count, inf);
    assert!(
        sample(
            &m,
            "watchfire_probe_schedule_lag_seconds_count{target=\"health\",team=\"sre\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert!(m.contains(
        "watchfire_probe_last_phase_seconds{target=\"health\",team=\"sre\",phase=\"connect\"}"
    ));
    assert_eq!(sample(&m, "watchfire_targets"), Some(2.0));
    assert!(m.contains("# TYPE watchfire_probe_duration_seconds histogram"));
    assert!(
        sample(&m, "watchfire_schedule_lag_seconds_count{thread=\"0\"}").unwrap() >= 2.0,
        "watchfire's own lag, per probe thread"
    );
    assert_eq!(sample(&m, "watchfire_ticks_skipped_total"), Some(0.0));
    assert!(
        m.contains("process_resident_memory_bytes"),
        "process metrics are served"
    );

    let (code, api) = get(r.addr, "/api/v1/targets").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    let broken = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "broken")
        .expect("broken listed");
    assert_eq!(broken["state"], "down");
    assert_eq!(broken["last_result"], "status");
    assert_eq!(broken["last_status"], 404);
    assert_eq!(broken["labels"]["team"], "sre");
    assert!(broken["last_transition"].is_string());
    let health = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "health")
        .unwrap();
    assert!(health["p99_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(health["last_success"], true);
    // What leaves /metrics below `full` stays here at every level.
    assert_eq!(health["metrics_detail"], "full");
    let (p99, planned) = (
        health["latency"]["p99"].as_f64().unwrap(),
        health["latency_from_planned"]["p99"].as_f64().unwrap(),
    );
    assert!(p99 > 0.0 && planned >= p99, "{p99} {planned}");
    assert!(health["latency"]["max"].as_f64().unwrap() >= p99);
    assert!(health["schedule_lag"]["count"].as_u64().unwrap() >= 2);
    assert!(health["schedule_lag"]["p99"].as_f64().unwrap() >= 0.0);
    assert!(health["last_phases"]["connect"].as_f64().unwrap() > 0.0);
    assert_eq!(broken["transitions_down"], 1);

    assert_eq!(get(r.addr, "/-/healthy").await.0, 200);
    assert_eq!(get(r.addr, "/-/ready").await.0, 200);
    assert_eq!(get(r.addr, "/nope").await.0, 404);
    assert_eq!(request(r.addr, "POST", "/metrics").await.0, 405);
    r.stop().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_is_announced_down_and_back_up() {
    let gw = sim().await;
    let base = format!("http://{}", gw.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(&path, &config_text(&base, ""));
    let r = start(&path).await;
    let mut events = r.runtime.subscribe();
    eventually(Duration::from_secs(5), "up", || async {
        (r.health("health") == Health::Up).then_some(())
    })
    .await;
    gw.go_down();
    let down = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = events.recv().await.expect("event");
            if ev.to == Health::Down {
                return ev;
            }
        }
    })
    .await
    .expect("down event within 5 s");
    assert_eq!(down.target, "health");
    assert_eq!(down.reason.map(|r| r.as_str()), Some("refused"));
    gw.come_up().expect("sim comes back");
    let up = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = events.recv().await.expect("event");
            if ev.to == Health::Up {
                return ev;
            }
        }
    })
    .await
    .expect("up event within 5 s");
    assert_eq!(up.from, Health::Down);
    r.stop().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_target_costs_its_own_timeout_and_nothing_else() {
    let fast = sim().await;
    let hung = Sim::start(
        "127.0.0.1:0".parse().unwrap(),
        FaultConfig {
            hang: true,
            ..FaultConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(
        &path,
        &format!(
            "targets:\n  - name: fast\n    url: http://{}/health\n    interval: 100ms\n    timeout: 90ms\n  - name: hung\n    url: http://{}/health\n    interval: 200ms\n    timeout: 150ms\n",
            fast.local_addr(),
            hung.local_addr()
        ),
    );
    let r = start(&path).await;
    eventually(Duration::from_secs(10), "fast probed 30 times", || async {
        (r.probes("fast") >= 30).then_some(())
    })
    .await;
    let fast_t = r.runtime.target("fast").unwrap();
    let hung_t = r.runtime.target("hung").unwrap();
    {
        let f = fast_t.stats.lock().unwrap();
        assert_eq!(
            f.successes,
            f.probes(),
            "every fast probe succeeded; failures by reason {:?}",
            f.failures
        );
        assert_eq!(f.skipped, 0, "fast never skipped a tick");
        // Schedule lag stayed under 50 ms for every fast probe (a stall behind the hung target
        // would be its 150 ms timeout; the margin absorbs a loaded 2-core CI machine).
        let late: u64 = f.lag.counts[9..].iter().sum();
        assert_eq!(late, 0, "lag buckets {:?}", f.lag.counts);
        let h = hung_t.stats.lock().unwrap();
        assert!(h.failures[watchfire::probe::Reason::Timeout.index()] >= 3);
        let longest = h.latency.quantile(1.0).unwrap();
        assert!(
            longest < Duration::from_millis(150 + 30),
            "a hung probe ends at its timeout: {longest:?}"
        );
    }
    r.stop().await;
    fast.shutdown().await;
    hung.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_module_target_goes_up_then_down_refused_when_the_listener_closes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    write(
        &path,
        &format!(
            "modules:\n  tcp_connect:\n    prober: tcp\ntargets:\n  - name: db\n    module: tcp_connect\n    target: 127.0.0.1:{port}\n    interval: 50ms\n    timeout: 40ms\n    down_after: 2\n    up_after: 1\n"
        ),
    );
    let r = start(&path).await;
    eventually(Duration::from_secs(5), "db up", || async {
        (r.health("db") == Health::Up).then_some(())
    })
    .await;
    let (code, body) = get(r.addr, "/api/v1/targets").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let db = v
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "db"))
        .unwrap_or_else(|| panic!("db in {body}"));
    assert_eq!(db["module"], "tcp_connect");
    assert_eq!(db["prober"], "tcp");
    assert_eq!(db["target"], format!("127.0.0.1:{port}"));
    assert_eq!(db["state"], "up");

    // The listener closes: nothing listens on the port any more.
    accepting.abort();
    let _ = accepting.await;
    eventually(Duration::from_secs(5), "db down", || async {
        (r.health("db") == Health::Down).then_some(())
    })
    .await;
    let (_, m) = get(r.addr, "/metrics").await;
    let refused = sample(
        &m,
        "watchfire_probes_total{target=\"db\",result=\"refused\"}",
    );
    assert!(
        refused.is_some_and(|n| n >= 2.0),
        "refused probes: {refused:?}\n{m}"
    );
    assert_eq!(sample(&m, "watchfire_target_up{target=\"db\"}"), Some(0.0));
    let (_, body) = get(r.addr, "/api/v1/targets").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let db = v
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "db"))
        .expect("db");
    assert_eq!(db["state"], "down");
    assert_eq!(db["last_result"], "refused");
    r.stop().await;
}
