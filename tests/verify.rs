//! `watchfire verify` against the in-process simulated gateway, with short windows: each runbook
//! failure gives FAIL naming its check and figure, a healthy gateway gives PASS, and bad input
//! gives exit 2 with a message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser as _;
use serde::Deserialize;
use tokio::time::Instant;
use watchfire::cli::{Cli, Command};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::verify::report::VerifyReport;
use watchfire::verify::{self, VerifyArgs, VerifyError};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// Verify flags: `line` split on spaces, then `extra` values as they are (they may hold spaces).
fn args(line: &str, extra: &[&str]) -> VerifyArgs {
    let mut v: Vec<&str> = line.split_whitespace().collect();
    v.extend_from_slice(extra);
    args_list(&v)
}

fn args_list(list: &[&str]) -> VerifyArgs {
    let argv = ["watchfire", "verify"]
        .into_iter()
        .chain(list.iter().copied());
    match Cli::try_parse_from(argv)
        .expect("verify flags parse")
        .command
    {
        Command::Verify(a) => a,
        other => panic!("not verify: {other:?}"),
    }
}

async fn sim(faults: FaultConfig) -> Sim {
    Sim::start("127.0.0.1:0".parse().expect("addr"), faults)
        .await
        .expect("sim starts")
}

fn url(sim: &Sim, path: &str) -> String {
    format!("http://{}{path}", sim.local_addr())
}

fn predict(sim: &Sim) -> String {
    format!("POST {} {{\"data\": [[1, 2, 3, 4]]}}", url(sim, "/predict"))
}

async fn verify(a: VerifyArgs) -> VerifyReport {
    verify::verify(a, std::future::pending())
        .await
        .expect("verify runs to a verdict")
}

/// A loopback address nothing listens on (bound, then released).
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Runs the binary with the words of `line`.
async fn binary(line: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(line.split_whitespace())
        .output()
        .await
        .expect("watchfire runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/verify")
        .join(rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_gateway_passes() {
    let gw = sim(FaultConfig::default()).await;
    let r = verify(args(
        &format!(
            "--target {} --for 2s --interval 50ms --max-p99 500ms",
            url(&gw, "/health")
        ),
        &["--target", &predict(&gw)],
    ))
    .await;
    assert!(r.passed(), "{}", verify::report::text(&r));
    assert!(r.failed_checks.is_empty());
    assert_eq!(r.targets.len(), 2);
    for t in &r.targets {
        assert!(t.probes >= 20, "{}: {} probes", t.name, t.probes);
        assert_eq!(t.failures, 0);
        assert_eq!(t.last.as_ref().and_then(|l| l.status), Some(200));
    }
    assert_eq!(r.targets[1].method, "POST");
    assert_eq!(
        r.check("latency_p99").map(|c| c.status.as_str()),
        Some("pass")
    );
    assert_eq!(r.check("memory").map(|c| c.status.as_str()), Some("skip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exits_0_on_pass_and_1_on_fail() {
    let gw = sim(FaultConfig::default()).await;
    let window = "--for 2s --interval 50ms --progress-interval 0s";
    let pass = format!("verify --target {} {window}", url(&gw, "/health"));
    let (code, stdout, stderr) = binary(&pass).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("watchfire verify: PASS"), "{stdout}");

    let fail = format!("verify --target http://{}/health {window}", dead_addr());
    let (code, stdout, _) = binary(&fail).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("watchfire verify: FAIL"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_percent_errors_fail_naming_the_error_rate_check_and_its_figure() {
    let gw = sim(FaultConfig {
        error_rate: 0.02,
        ..FaultConfig::default()
    })
    .await;
    let r = verify(args(
        &format!(
            "--target {} --for 5s --interval 50ms --max-error-rate 1%",
            url(&gw, "/health")
        ),
        &[],
    ))
    .await;
    let text = verify::report::text(&r);
    assert!(!r.passed(), "{text}");
    assert_eq!(r.failed_checks, vec!["error_rate"], "{text}");
    let c = r.check("error_rate").expect("error_rate check");
    let figure = c.figure.expect("a figure");
    let t = &r.targets[0];
    assert_eq!(figure, t.failures as f64 / t.probes as f64);
    // The sim fails exactly 2 of every 100: 2 failures in 100 probes (1 if a tick was skipped).
    assert!((0.01..=0.021).contains(&figure), "{figure}");
    assert_eq!(c.limit, Some(0.01));
    assert_eq!(t.failures_by_reason.get("status"), Some(&t.failures));
    let shown = format!("{:.2}%", figure * 100.0);
    assert!(text.contains("FAIL  error_rate"), "{text}");
    assert!(c.summary.contains(&shown), "{} lacks {shown}", c.summary);
    assert!(c.summary.contains("> max 1.00%"), "{}", c.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_spike_fails_on_p99() {
    let gw = sim(FaultConfig::default()).await;
    let spike = gw.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        spike.set_faults(FaultConfig {
            slow: Duration::from_millis(200),
            ..FaultConfig::default()
        });
        tokio::time::sleep(Duration::from_millis(1000)).await;
        spike.set_faults(FaultConfig::default());
    });
    let r = verify(args(
        &format!(
            "--target {} --for 3s --interval 50ms --max-p99 100ms",
            url(&gw, "/health")
        ),
        &[],
    ))
    .await;
    let text = verify::report::text(&r);
    assert_eq!(r.failed_checks, vec!["latency_p99"], "{text}");
    let c = r.check("latency_p99").expect("latency check");
    assert!(c.figure.expect("p99") >= 0.2, "{c:?}");
    assert_eq!(c.limit, Some(0.1));
    assert!(c.summary.contains("> 100ms (--max-p99)"), "{}", c.summary);
    // Slow probes skip the ticks they overrun instead of piling up.
    assert!(r.targets[0].skipped > 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_fails_on_flaps() {
    let gw = sim(FaultConfig::default()).await;
    let flap = gw.clone();
    let toggler = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(400)).await;
            flap.go_down();
            tokio::time::sleep(Duration::from_millis(400)).await;
            flap.come_up().expect("sim comes back");
        }
    });
    let r = verify(args(
        &format!("--target {} --for 3s --interval 50ms", url(&gw, "/health")),
        &[],
    ))
    .await;
    toggler.abort();
    let text = verify::report::text(&r);
    assert!(!r.passed(), "{text}");
    let c = r.check("flaps").expect("flaps check");
    assert_eq!(c.status, "fail", "{text}");
    assert!(c.figure.expect("count") >= 2.0, "{c:?}");
    assert!(r.targets[0].down_transitions >= 2);
    assert!(r.targets[0].up_transitions >= 2);
    assert!(r.failed_checks.contains(&"flaps".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_half_way_fails_with_the_downtime() {
    let gw = sim(FaultConfig::default()).await;
    let kill = gw.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        kill.go_down();
    });
    let r = verify(args(
        &format!("--target {} --for 3s --interval 50ms", url(&gw, "/health")),
        &[],
    ))
    .await;
    let text = verify::report::text(&r);
    assert!(!r.passed(), "{text}");
    for check in ["answered", "error_rate", "flaps"] {
        assert!(
            r.failed_checks.contains(&check.to_string()),
            "{check}: {text}"
        );
    }
    let t = &r.targets[0];
    assert!(
        (1.2..=1.8).contains(&t.downtime_seconds),
        "downtime {} s",
        t.downtime_seconds
    );
    assert_eq!(r.downtime_seconds, t.downtime_seconds);
    assert_eq!(t.down_periods.len(), 1);
    assert_eq!(t.down_periods[0].end_offset_seconds, None);
    assert_eq!(t.last.as_ref().map(|l| l.result.as_str()), Some("refused"));
    assert!(text.contains("downtime 1."), "{text}");
    let answered = r.check("answered").expect("answered");
    assert!(
        answered.summary.contains("down at the end"),
        "{}",
        answered.summary
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_ends_well_before_the_window() {
    let gw = sim(FaultConfig {
        error_rate: 0.5,
        ..FaultConfig::default()
    })
    .await;
    let started = Instant::now();
    let r = verify(args(
        &format!(
            "--target {} --for 30s --interval 50ms --fail-fast",
            url(&gw, "/health")
        ),
        &[],
    ))
    .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!r.passed());
    assert_eq!(r.stopped_early.as_deref(), Some("fail_fast"));
    assert_eq!(r.stopped_by.as_deref(), Some("error_rate"));
    assert!(r.elapsed_seconds < 5.0, "{}", r.elapsed_seconds);
    assert_eq!(r.window_seconds, 30.0);
    // Cut short means not enough data: the data check says so too.
    assert_eq!(r.check("data").map(|c| c.status.as_str()), Some("fail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_window_fails_at_once() {
    let gw = sim(FaultConfig::default()).await;
    let started = Instant::now();
    let interrupt = tokio::time::sleep(Duration::from_millis(500));
    let a = args(
        &format!("--target {} --for 30s --interval 50ms", url(&gw, "/health")),
        &[],
    );
    let r = verify::verify(a, interrupt).await.expect("a verdict");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!r.passed());
    assert_eq!(r.stopped_early.as_deref(), Some("interrupted"));
    let data = r.check("data").expect("data check");
    assert_eq!(data.status, "fail");
    assert!(data.summary.contains("interrupted"), "{}", data.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_file_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("baseline.json");
    let base_s = base.to_str().expect("utf-8 path");
    let gw = sim(FaultConfig::default()).await;
    let health = url(&gw, "/health");
    let window = ["--for", "1s", "--interval", "50ms", "--min-probes", "5"];
    let mut first = vec!["--target", health.as_str(), "--json", base_s];
    first.extend(window);
    let r1 = verify(args_list(&first)).await;
    assert!(r1.passed(), "{}", verify::report::text(&r1));
    let p99 = r1.targets[0].p99_seconds.expect("a baseline p99");

    // Same service, same speed: PASS against its own baseline (the slack absorbs a loaded
    // machine's scheduling noise on a sub-millisecond loopback p99).
    let mut again = vec![
        "--target",
        health.as_str(),
        "--baseline",
        base_s,
        "--baseline-slack",
        "50ms",
    ];
    again.extend(window);
    let r2 = verify(args_list(&again)).await;
    assert!(r2.passed(), "{}", verify::report::text(&r2));
    let limit = r2.targets[0].p99_limit_seconds.expect("a bound");
    let expected = (p99 * 1.5).max(p99 + 0.05);
    assert!((limit - expected).abs() < 1e-6, "{limit} vs {expected}");
    assert!(r2.targets[0]
        .p99_limit_source
        .as_deref()
        .is_some_and(|s| s.contains("baseline")));

    // 100 ms slower than a loopback baseline: FAIL on p99 with the baseline's bound.
    gw.set_faults(FaultConfig {
        slow: Duration::from_millis(100),
        ..FaultConfig::default()
    });
    let r3 = verify(args_list(&again)).await;
    assert_eq!(
        r3.failed_checks,
        vec!["latency_p99"],
        "{}",
        verify::report::text(&r3)
    );
    let c = r3.check("latency_p99").expect("latency");
    assert_eq!(c.limit, Some(limit));
    assert!(c.summary.contains("baseline"), "{}", c.summary);

    // A baseline without this target is a usage error.
    let other = url(&gw, "/other");
    let mut wrong = vec!["--target", other.as_str(), "--baseline", base_s];
    wrong.extend(window);
    let e = verify::verify(args_list(&wrong), std::future::pending())
        .await
        .expect_err("no baseline for /other");
    assert!(matches!(e, VerifyError::Baseline { .. }), "{e}");
    assert!(e.to_string().contains("no target"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answered_fails_not_passes() {
    let dead = format!("http://{}/health", dead_addr());
    let r = verify(args(
        &format!("--target {} --for 1s --interval 50ms", dead),
        &[],
    ))
    .await;
    assert!(!r.passed());
    let a = r.check("answered").expect("answered");
    assert_eq!(a.status, "fail");
    assert!(a.summary.contains("never answered"), "{}", a.summary);
    assert!(a.summary.contains("refused"), "{}", a.summary);
    assert_eq!(r.targets[0].p99_seconds, None);
    assert_eq!(r.targets[0].error_rate, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_targets_are_verified_by_name() {
    let gw = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = format!("http://{}", gw.local_addr());
    let yaml = format!(
        "targets:\n  - name: gateway-health\n    url: {base}/health\n    expect: {{ json: {{ status: healthy }} }}\n  - name: gateway-predict\n    url: {base}/predict\n    method: POST\n    body_json: {{ data: [[1, 2, 3, 4]] }}\n"
    );
    std::fs::write(dir.path().join("gw.yaml"), yaml).expect("write config");
    let cfg = dir.path().to_str().expect("utf-8");
    let r = verify(args(&format!("--config {} --name gateway-health --name gateway-predict --for 1s --interval 50ms --min-probes 5", cfg), &[]))
    .await;
    assert!(r.passed(), "{}", verify::report::text(&r));
    let names: Vec<&str> = r.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["gateway-health", "gateway-predict"]);

    // The health expectation is the config's: a degraded gateway fails it.
    gw.set_faults(FaultConfig {
        unhealthy: true,
        ..FaultConfig::default()
    });
    let r = verify(args(
        &format!(
            "--config {} --name gateway-health --for 1s --interval 50ms",
            cfg
        ),
        &[],
    ))
    .await;
    assert!(!r.passed());
    assert_eq!(
        r.targets[0].failures_by_reason.get("json_mismatch"),
        Some(&r.targets[0].probes)
    );

    let e = verify::verify(
        args(
            &format!("--config {} --name nope --for 1s --interval 50ms", cfg),
            &[],
        ),
        std::future::pending(),
    )
    .await
    .expect_err("unknown name");
    assert!(e.to_string().contains("gateway-health"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_target_from_the_config_is_verified_like_a_url() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepting = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "modules:\n  tcp_connect:\n    prober: tcp\ntargets:\n  - name: db\n    module: tcp_connect\n    target: {addr}\n"
    );
    std::fs::write(dir.path().join("db.yaml"), yaml).expect("write config");
    let cfg = dir.path().to_str().expect("utf-8");
    let line = format!("--config {cfg} --name db --for 1s --interval 50ms --min-probes 5");
    let r = verify(args(&line, &[])).await;
    assert!(r.passed(), "{}", verify::report::text(&r));
    let db = &r.targets[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.url, addr.to_string());
    assert_eq!(db.method, "module:tcp_connect");
    assert!(db.probes >= 5 && db.successes == db.probes, "{db:#?}");
    assert!(
        db.p99_seconds.is_some(),
        "connects count as answers: {db:#?}"
    );

    // Nothing listens any more: every probe fails and the verdict is FAIL.
    accepting.abort();
    let _ = accepting.await;
    let r = verify(args(&line, &[])).await;
    assert!(!r.passed(), "{}", verify::report::text(&r));
    assert_eq!(r.targets[0].successes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_from_a_cgroup_is_checked() {
    let gw = sim(FaultConfig::default()).await;
    let health = url(&gw, "/health");
    let run = |dir: PathBuf| {
        let health = health.clone();
        async move {
            let dir = dir.to_str().expect("utf-8").to_string();
            verify(args(&format!("--target {} --for 1s --interval 50ms --memory-cgroup {} --memory-interval 100ms --min-probes 5", health, dir), &[]))
            .await
        }
    };
    let ok = run(fixture("cgroup-v2-normal")).await;
    assert!(ok.passed(), "{}", verify::report::text(&ok));
    let m = ok.memory.as_ref().expect("memory figures");
    assert_eq!(m.max_ratio, Some(0.5));
    assert!(m.samples >= 3, "{m:?}");
    assert!(m.source.starts_with("cgroup v2"), "{}", m.source);

    let high = run(fixture("cgroup-v1-high")).await;
    assert_eq!(
        high.failed_checks,
        vec!["memory"],
        "{}",
        verify::report::text(&high)
    );
    let c = high.check("memory").expect("memory check");
    assert_eq!(c.figure, Some(0.9));
    assert_eq!(c.limit, Some(0.85));
}

/// The JSON report's documented schema, version 1: every field, no others. A change here is a
/// change to a published format.
mod schema {
    // Every field is declared to pin the schema; not every one is asserted on.
    #![allow(dead_code)]

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Report {
        pub schema_version: u32,
        pub watchfire_version: String,
        pub verdict: String,
        pub started_at: String,
        pub ended_at: String,
        pub window_seconds: f64,
        pub elapsed_seconds: f64,
        pub interval_seconds: f64,
        pub stopped_early: Option<String>,
        pub stopped_by: Option<String>,
        pub failed_checks: Vec<String>,
        pub checks: Vec<Check>,
        pub targets: Vec<Target>,
        pub downtime_seconds: f64,
        pub memory: Option<serde_json::Value>,
        pub impact: Option<serde_json::Value>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Check {
        pub name: String,
        pub status: String,
        pub figure: Option<f64>,
        pub limit: Option<f64>,
        pub unit: String,
        pub target: Option<String>,
        pub summary: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Target {
        pub name: String,
        pub url: String,
        pub method: String,
        pub probes: u64,
        pub successes: u64,
        pub failures: u64,
        pub error_rate: Option<f64>,
        pub failures_by_reason: BTreeMap<String, u64>,
        pub skipped: u64,
        pub answered: u64,
        pub p50_seconds: Option<f64>,
        pub p90_seconds: Option<f64>,
        pub p99_seconds: Option<f64>,
        pub max_seconds: Option<f64>,
        pub p99_limit_seconds: Option<f64>,
        pub p99_limit_source: Option<String>,
        pub down_transitions: u32,
        pub up_transitions: u32,
        pub downtime_seconds: f64,
        pub down_periods: Vec<DownPeriod>,
        pub last: Option<Last>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DownPeriod {
        pub start_offset_seconds: f64,
        pub end_offset_seconds: Option<f64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Last {
        pub result: String,
        pub status: Option<u16>,
        pub detail: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Memory {
        pub source: String,
        pub samples: u64,
        pub errors: u64,
        pub last_used: Option<f64>,
        pub limit: Option<f64>,
        pub last_ratio: Option<f64>,
        pub max_ratio: Option<f64>,
        pub growth_ratio: Option<f64>,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_follows_the_documented_schema() {
    let gw = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("verify.json");
    let cgroup = fixture("cgroup-v2-normal");
    verify(args(&format!("--target {} --for 1s --interval 50ms --memory-cgroup {} --memory-interval 200ms --min-probes 5 --json {}", url(&gw, "/health"), cgroup.to_str().expect("utf-8"), json.to_str().expect("utf-8")), &[]))
    .await;
    let text = std::fs::read_to_string(&json).expect("--json written");
    let doc: schema::Report = serde_json::from_str(&text).expect("schema v1, no unknown fields");
    assert_eq!(doc.schema_version, 1);
    assert_eq!(doc.verdict, "PASS");
    assert!(
        humantime::parse_rfc3339(&doc.started_at).is_ok(),
        "{}",
        doc.started_at
    );
    assert!(
        humantime::parse_rfc3339(&doc.ended_at).is_ok(),
        "{}",
        doc.ended_at
    );
    assert!(!doc.watchfire_version.is_empty());
    assert_eq!((doc.window_seconds, doc.interval_seconds), (1.0, 0.05));
    assert_eq!(doc.elapsed_seconds, 1.0);
    assert_eq!((doc.stopped_early, doc.stopped_by), (None, None));
    assert!(doc.failed_checks.is_empty());
    let names: Vec<&str> = doc.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "data",
            "answered",
            "error_rate",
            "latency_p99",
            "flaps",
            "memory"
        ]
    );
    for c in &doc.checks {
        assert!(
            ["pass", "fail", "skip"].contains(&c.status.as_str()),
            "{c:?}"
        );
        assert!(!c.summary.is_empty() && !c.unit.is_empty(), "{c:?}");
    }
    let t = &doc.targets[0];
    assert_eq!(
        (t.method.as_str(), t.successes, t.failures),
        ("GET", t.probes, 0)
    );
    assert!(t.url.ends_with("/health") && t.name == t.url);
    assert!(t.p50_seconds.is_some() && t.p90_seconds.is_some() && t.max_seconds.is_some());
    assert!(t.answered == t.probes && t.down_periods.is_empty());
    assert_eq!(
        t.last.as_ref().map(|l| (l.result.as_str(), l.status)),
        Some(("success", Some(200)))
    );
    assert_eq!(doc.downtime_seconds, 0.0);
    let memory: schema::Memory =
        serde_json::from_value(doc.memory.expect("memory measured")).expect("memory schema");
    assert_eq!(
        (memory.limit, memory.last_used),
        (
            Some(1024.0 * 1024.0 * 1024.0),
            Some(512.0 * 1024.0 * 1024.0)
        )
    );
    assert!(doc.impact.is_none());
    // The library's own type reads it back (what --baseline does).
    let back: VerifyReport = serde_json::from_str(&text).expect("reads back");
    assert!(back.passed());
}

/// Replaces what changes from run to run: times, measured durations, ports, the version, and
/// probe counts (a loaded machine may skip a planned probe).
fn normalise(md: &str) -> String {
    let rules = [
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<TIME>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
        (r"watchfire \d+\.\d+\.\d+\S*", "watchfire <VERSION>"),
        (
            r"\b\d+(\.\d+)?(µs|ms|h|m|s)(\d+(\.\d+)?(ms|m|s))*\b",
            "<DUR>",
        ),
        (r"\d+(\.\d+)?µs", "<DUR>"),
        (r"\b\d+ (probes|answers)\b", "<N> $1"),
        (r"(of|\|) \d+ ", "$1 <N> "),
    ];
    let mut out = md.to_string();
    for (re, with) in rules {
        out = regex::Regex::new(re)
            .expect("valid pattern")
            .replace_all(&out, with)
            .into_owned();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_report_matches_the_snapshot() {
    let gw = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let md = dir.path().join("report.md");
    let r = verify(args(
        &format!(
            "--target {} --for 2s --interval 100ms --max-p99 250ms --report {}",
            url(&gw, "/health"),
            md.to_str().expect("utf-8")
        ),
        &[
            "--target",
            &predict(&gw),
            "--title",
            "ServiceDown: inference-gateway",
        ],
    ))
    .await;
    assert!(r.passed(), "{}", verify::report::text(&r));
    let got = normalise(&std::fs::read_to_string(&md).expect("--report written"));
    let snapshot = fixture("report.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &got).expect("write snapshot");
    }
    let want = std::fs::read_to_string(&snapshot).expect("snapshot exists");
    assert_eq!(
        got, want,
        "the Markdown report changed; if on purpose, rerun with UPDATE_SNAPSHOTS=1 and review the diff"
    );
}

#[tokio::test]
async fn unparseable_duration_exits_2_with_a_message() {
    let (code, _, stderr) = binary("verify --target http://127.0.0.1:9/ --for 3x").await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--for"), "{stderr}");
    assert!(stderr.contains("`3x` is not a duration"), "{stderr}");
    let line = "impact --prometheus http://127.0.0.1:9 --job gw --from yesterday";
    let (code, _, stderr) = binary(line).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`yesterday` is not a time"), "{stderr}");
}

#[tokio::test]
async fn unreachable_prometheus_exits_2_with_a_clear_message() {
    let prom = format!("http://{}", dead_addr());
    let (code, stdout, stderr) = binary(&format!(
        "verify --target http://127.0.0.1:9/health --for 1s --interval 50ms --prometheus {prom} \
         --baseline-from -1h --baseline-to -30m"
    ))
    .await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    let says = format!("cannot reach Prometheus at {prom} (--prometheus)");
    assert!(stderr.contains(&says), "{stderr}");
    assert!(stdout.is_empty(), "no window ran: {stdout}");
    let (code, _, stderr) =
        binary(&format!("impact --prometheus {prom} --job gw --from -1h")).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot reach Prometheus"), "{stderr}");
}

#[tokio::test]
async fn bad_input_is_a_usage_error() {
    let prom = format!("http://{}", dead_addr());
    let t = "verify --target http://127.0.0.1:9/";
    let cases = [
        (
            format!("impact --prometheus {prom} --job gw --from +1h"),
            "starts in the future",
        ),
        (
            format!("impact --prometheus {prom} --from -1h"),
            "needs the up/down series",
        ),
        ("verify --for 1s".to_string(), "nothing to verify"),
        (
            format!("{t} --for 100ms --interval 50ms"),
            "fewer than the 10 a verdict needs",
        ),
        (
            format!("{t} --incident-start -1h"),
            "--incident-start needs --prometheus",
        ),
        (
            "verify --target ftp://127.0.0.1/".to_string(),
            "scheme `ftp`",
        ),
        (
            format!("{t} --json /nonexistent-dir/v.json"),
            "the directory /nonexistent-dir does not exist",
        ),
        (
            format!("{t} --max-error-rate 5"),
            "write a percentage as `5%`",
        ),
    ];
    for (line, says) in cases {
        let (code, _, stderr) = binary(&line).await;
        assert_eq!(code, 2, "{line}: {stderr}");
        assert!(
            stderr.contains(says),
            "{line}: expected `{says}` in: {stderr}"
        );
    }
}
