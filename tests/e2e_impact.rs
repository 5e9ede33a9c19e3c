//! `watchfire impact` (and `verify`'s Prometheus paths) against a real Prometheus loaded with
//! known data: an OpenMetrics fixture backfilled by `promtool tsdb create-blocks-from
//! openmetrics`, so downtime, failed requests and error budget are exact.
//!
//! Needs `promtool` and `prometheus` (`apt-get install prometheus`); a missing program fails the
//! test loudly — these tests never pass by skipping. Loopback only.
#![cfg(feature = "e2e")]

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser as _;
use watchfire::cli::{Cli, Command as Sub};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::verify::report::ImpactReport;

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const STEP: u64 = 15;

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: the e2e tests need it (run .ci/run, or apt-get install prometheus)"
    );
}

/// Start of the fixture: three hours ago, on a whole minute (inside the default retention, and
/// old enough that nothing of it is in the future).
fn t0() -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    (now - 3 * 3600) / 60 * 60
}

fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .to_string()
}

/// One hour of data every 15 s from `t0`:
/// - `up{job="inference-gateway"}` 0 from +20m to +25m (20 points: 300 s down), else 1;
/// - `watchfire_target_up{target="gateway-health"}` 0 from +20m to +24m (240 s);
/// - `http_requests_total{job="inference-gateway"}` +150 every 15 s (10 req/s), absent while
///   `up` is 0 (the scrape failed);
/// - `watchfire_probe_duration_seconds` for gateway-health, every answer in (2.5 ms, 5 ms]:
///   p99 = 2.5 ms + 0.99 × 2.5 ms = 4.975 ms;
/// - cAdvisor memory for container `gateway`: 500 MiB of a 1000 MiB limit.
fn fixture(t0: u64) -> String {
    let points: Vec<u64> = (0..=240).map(|i| t0 + i * STEP).collect();
    let up_down = |t: u64| (t0 + 1200..t0 + 1500).contains(&t);
    let target_down = |t: u64| (t0 + 1200..t0 + 1440).contains(&t);
    let mut s = String::new();
    let job = r#"job="inference-gateway",instance="gw:8000""#;
    s.push_str("# TYPE up gauge\n");
    for &t in &points {
        let _ = writeln!(s, "up{{{job}}} {} {t}", u8::from(!up_down(t)));
    }
    s.push_str("# TYPE watchfire_target_up gauge\n");
    for &t in &points {
        let _ = writeln!(
            s,
            "watchfire_target_up{{target=\"gateway-health\"}} {} {t}",
            u8::from(!target_down(t))
        );
    }
    s.push_str("# TYPE http_requests counter\n");
    for (i, &t) in points.iter().enumerate() {
        if !up_down(t) {
            let _ = writeln!(
                s,
                "http_requests_total{{{job},code=\"200\"}} {} {t}",
                100_000 + 150 * i as u64
            );
        }
    }
    s.push_str("# TYPE watchfire_probe_duration_seconds histogram\n");
    for (i, &t) in points.iter().enumerate() {
        let n = 1_000 + 15 * i as u64;
        let l = r#"target="gateway-health""#;
        let _ = writeln!(
            s,
            "watchfire_probe_duration_seconds_bucket{{{l},le=\"0.0025\"}} 0 {t}"
        );
        let _ = writeln!(
            s,
            "watchfire_probe_duration_seconds_bucket{{{l},le=\"0.005\"}} {n} {t}"
        );
        let _ = writeln!(
            s,
            "watchfire_probe_duration_seconds_bucket{{{l},le=\"+Inf\"}} {n} {t}"
        );
        let _ = writeln!(
            s,
            "watchfire_probe_duration_seconds_sum{{{l}}} {} {t}",
            n as f64 * 0.004
        );
        let _ = writeln!(s, "watchfire_probe_duration_seconds_count{{{l}}} {n} {t}");
    }
    s.push_str("# TYPE container_memory_usage_bytes gauge\n");
    for &t in &points {
        let _ = writeln!(
            s,
            "container_memory_usage_bytes{{container=\"gateway\"}} 524288000 {t}"
        );
    }
    s.push_str("# TYPE container_spec_memory_limit_bytes gauge\n");
    for &t in &points {
        let _ = writeln!(
            s,
            "container_spec_memory_limit_bytes{{container=\"gateway\"}} 1048576000 {t}"
        );
    }
    s.push_str("# EOF\n");
    s
}

/// GET on loopback with a plain socket; the status code, if any answer came.
fn status(addr: &str, path: &str) -> Option<u16> {
    let mut c = TcpStream::connect(addr).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    c.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// A Prometheus on a free loopback port over the backfilled fixture; killed on drop (panics
/// included).
struct Prometheus {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_prometheus(t0: u64) -> Prometheus {
    require("promtool");
    require("prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let om = dir.path().join("fixture.om");
    std::fs::write(&om, fixture(t0)).expect("write fixture");
    let data = dir.path().join("data");
    run_ok(
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&data),
        "promtool tsdb create-blocks-from openmetrics",
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("write config");
    // A free port: bind 127.0.0.1:0, read it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("prometheus.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("prometheus starts");
    let p = Prometheus {
        child,
        url: format!("http://{addr}"),
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&addr, "/-/ready") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 60 s:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn impact(argv: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("impact")
        .args(argv)
        .output()
        .expect("watchfire runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() < 1e-9 * b.abs().max(1.0),
        "{what}: {a} != {b}"
    );
}

#[test]
fn impact_figures_are_exact_against_a_backfilled_prometheus() {
    let t0 = t0();
    let prom = start_prometheus(t0);
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("impact.json");
    let (from, to) = (rfc3339(t0 + 600), rfc3339(t0 + 2400));
    let (code, stdout, stderr) = impact(&[
        "--prometheus",
        &prom.url,
        "--job",
        "inference-gateway",
        "--from",
        &from,
        "--to",
        &to,
        "--slo",
        "99.9%",
        "--slo-window",
        "30d",
        "--json",
        json.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}\n{}", prom.log());
    let r: ImpactReport =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("--json written"))
            .expect("impact JSON");
    assert_eq!(r.up_query, r#"min(up{job="inference-gateway"})"#);
    assert_eq!(r.step_seconds, 15.0);
    close(r.downtime_seconds, 300.0, "downtime");
    close(r.no_data_seconds, 0.0, "no data");
    assert_eq!(r.outages.len(), 1, "{r:?}");
    let o = &r.outages[0];
    assert_eq!(
        (o.start.as_str(), o.end.as_str()),
        (rfc3339(t0 + 1200).as_str(), rfc3339(t0 + 1500).as_str())
    );
    assert!(!o.ongoing);
    close(
        r.request_rate_before.expect("rate"),
        10.0,
        "request rate before",
    );
    close(
        r.failed_requests.expect("failed"),
        3000.0,
        "failed requests",
    );
    // 99.9 % over 30 days: 43m12s of budget; 5 minutes of it is 11.574 %.
    close(r.error_budget_seconds, 2592.0, "budget");
    close(r.error_budget_consumed_seconds, 300.0, "consumed");
    close(
        r.error_budget_consumed_ratio,
        300.0 / 2592.0,
        "consumed ratio",
    );
    close(r.error_budget_remaining_seconds, 2292.0, "remaining");
    assert!(
        stdout.contains("downtime:         5m in 1 outage"),
        "{stdout}"
    );
    assert!(stdout.contains("failed requests:  3,000"), "{stdout}");
    assert!(stdout.contains("11.57% consumed of 43m12s"), "{stdout}");

    // The prober's own series, with the request rate given as a query.
    let json2 = dir.path().join("impact2.json");
    let (code, stdout, stderr) = impact(&[
        "--prometheus",
        &prom.url,
        "--target",
        "gateway-health",
        "--rate-query",
        r#"sum(rate(http_requests_total{job="inference-gateway"}[$window]))"#,
        "--from",
        &from,
        "--to",
        &to,
        "--json",
        json2.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let r: ImpactReport =
        serde_json::from_str(&std::fs::read_to_string(&json2).expect("written")).expect("JSON");
    assert_eq!(
        r.up_query,
        r#"min(watchfire_target_up{target="gateway-health"})"#
    );
    close(
        r.downtime_seconds,
        240.0,
        "downtime from watchfire_target_up",
    );
    close(
        r.failed_requests.expect("failed"),
        2400.0,
        "failed requests",
    );

    // A query with no data, and a range with nothing in it: a clear message, exit 2.
    let (code, _, stderr) = impact(&[
        "--prometheus",
        &prom.url,
        "--job",
        "no-such-job",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(r#"`min(up{job="no-such-job"})` returned no data"#),
        "{stderr}"
    );
    let long_ago = (rfc3339(t0 - 86_400), rfc3339(t0 - 80_000));
    let (code, _, stderr) = impact(&[
        "--prometheus",
        &prom.url,
        "--job",
        "inference-gateway",
        "--from",
        &long_ago.0,
        "--to",
        &long_ago.1,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("returned no data between"), "{stderr}");
    // PromQL Prometheus refuses.
    let (code, _, stderr) = impact(&[
        "--prometheus",
        &prom.url,
        "--up-query",
        "up{",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Prometheus rejected `up{`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_takes_baseline_memory_and_impact_from_prometheus() {
    let t0 = t0();
    let prom = tokio::task::spawn_blocking(move || start_prometheus(t0))
        .await
        .expect("prometheus starts");
    let gw = Sim::start(
        "127.0.0.1:0".parse().expect("addr"),
        FaultConfig {
            slow: Duration::from_millis(30),
            ..FaultConfig::default()
        },
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "targets:\n  - name: gateway-health\n    url: http://{}/health\n",
            gw.local_addr()
        ),
    )
    .expect("config");
    let json = dir.path().join("verify.json");
    let md = dir.path().join("report.md");
    let (base_from, base_to, incident) = (rfc3339(t0 + 300), rfc3339(t0 + 900), rfc3339(t0 + 1200));
    let memory_query = r#"max(last_over_time(container_memory_usage_bytes{container="gateway"}[1d]) / last_over_time(container_spec_memory_limit_bytes{container="gateway"}[1d]))"#;
    let argv = [
        "watchfire",
        "verify",
        "--config",
        dir.path().to_str().expect("utf-8"),
        "--name",
        "gateway-health",
        "--for",
        "2s",
        "--interval",
        "50ms",
        "--min-probes",
        "5",
        "--prometheus",
        &prom.url,
        "--baseline-from",
        &base_from,
        "--baseline-to",
        &base_to,
        "--baseline-factor",
        "2",
        "--baseline-slack",
        "0s",
        "--memory-query",
        memory_query,
        "--memory-interval",
        "200ms",
        "--incident-start",
        &incident,
        "--job",
        "inference-gateway",
        "--json",
        json.to_str().expect("utf-8"),
        "--report",
        md.to_str().expect("utf-8"),
    ];
    let args = match Cli::try_parse_from(argv).expect("flags parse").command {
        Sub::Verify(a) => a,
        other => panic!("not verify: {other:?}"),
    };
    let r = watchfire::verify::verify(args, std::future::pending())
        .await
        .expect("verify runs");
    // 30 ms answers against a 4.975 ms × 2 baseline: FAIL on p99, and only on p99.
    assert_eq!(
        r.failed_checks,
        vec!["latency_p99"],
        "{}",
        watchfire::verify::report::text(&r)
    );
    let c = r.check("latency_p99").expect("latency");
    close(
        c.limit.expect("bound"),
        0.00995,
        "p99 bound from the Prometheus baseline",
    );
    assert!(c.summary.contains("from Prometheus"), "{}", c.summary);
    let m = r.memory.as_ref().expect("memory through Prometheus");
    assert_eq!(m.max_ratio, Some(0.5));
    assert_eq!(r.check("memory").map(|c| c.status.as_str()), Some("pass"));
    let i = r.impact.as_ref().expect("impact");
    close(i.downtime_seconds, 300.0, "downtime");
    close(
        i.failed_requests.expect("failed"),
        3000.0,
        "failed requests",
    );
    close(i.error_budget_consumed_ratio, 300.0 / 2592.0, "budget");
    let report = std::fs::read_to_string(&md).expect("report written");
    assert!(
        report.contains(&format!("({incident} → {}, fix verified", r.started_at)),
        "{report}"
    );
    assert!(report.contains("| Downtime | 5m in 1 outage"), "{report}");
    assert!(
        report.contains("| Failed requests | ≈ 3,000 (10 req/s before the outage × downtime) |"),
        "{report}"
    );
    assert!(
        report.contains("| Error budget | 11.57% of 43m12s consumed (SLO 99.90% over 30d) |"),
        "{report}"
    );
    assert!(Path::new(&json).exists());
}
