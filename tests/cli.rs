//! The binary as a user runs it: `run` with SIGHUP reload and SIGTERM shutdown, `probe`, `demo`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, get};
use watchfire::sim::{FaultConfig, Sim};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// Kills the child if a test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Starts `watchfire run` on a free port; returns the child and its address (read from the log).
fn run(config: &std::path::Path) -> (Guard, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "run",
            "--storage.memory",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watchfire starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "watchfire is running" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("watchfire logs its address");
    (Guard(child), addr.parse().expect("address"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_stops_cleanly() {
    let gw = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    let one = format!("targets:\n  - name: a\n    url: http://{}/health\n    interval: 100ms\n    timeout: 50ms\n", gw.local_addr());
    std::fs::write(&path, &one).unwrap();
    let (mut child, addr) = run(&path);
    eventually(Duration::from_secs(5), "target a probed", || async {
        let (_, m) = get(addr, "/metrics").await;
        common::sample(
            &m,
            "watchfire_probes_total{target=\"a\",result=\"success\"}",
        )
        .filter(|v| *v >= 1.0)
    })
    .await;
    std::fs::write(
        &path,
        format!(
            "{one}  - name: b\n    url: http://{}/health\n",
            gw.local_addr()
        ),
    )
    .unwrap();
    signal(&child.0, "-HUP");
    eventually(Duration::from_secs(5), "target b after SIGHUP", || async {
        let (_, api) = get(addr, "/api/v1/targets").await;
        api.contains("\"name\": \"b\"").then_some(())
    })
    .await;
    signal(&child.0, "-TERM");
    let status = eventually(
        Duration::from_secs(10),
        "watchfire to stop after SIGTERM",
        || {
            let exited = child.0.try_wait().unwrap();
            async move { exited }
        },
    )
    .await;
    assert!(status.success(), "exit status {status:?}");
    gw.shutdown().await;
}

#[test]
fn run_with_a_bad_config_exits_non_zero_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "targets:\n  - name: x\n    url: http://127.0.0.1:1/\n    timeout: 5s\n    interval: 1s\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:4") && err.contains("targets[0].timeout"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_phases_and_exits_by_verdict() {
    let gw = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let url = format!("http://{}/health", gw.local_addr());
    let ok = tokio::process::Command::new(BIN)
        .args([
            "probe",
            &url,
            "--expect-json",
            "status=healthy",
            "--format",
            "json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON output");
    assert_eq!(v["status"], 200);
    assert!(v["phases_seconds"]["connect"].as_f64().unwrap() > 0.0);
    let bad = tokio::process::Command::new(BIN)
        .args(["probe", &url, "--expect-json", "status=gone"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("json_mismatch") && text.contains("processing:"),
        "{text}"
    );
    let usage = tokio::process::Command::new(BIN)
        .args(["probe", "ftp://x/"])
        .output()
        .await
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("ftp"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_a_tcp_module_prints_the_verdict_and_exits_by_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("m.yaml");
    std::fs::write(&cfg, "modules:\n  tcp_connect:\n    prober: tcp\n").unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let target = addr.to_string();
    let run = |format: &'static str| {
        let (cfg, target) = (cfg.clone(), target.clone());
        async move {
            let args = [
                "probe",
                "--module",
                "tcp_connect",
                &target,
                "--config",
                &cfg,
            ];
            tokio::process::Command::new(BIN)
                .args(args)
                .args(["--format", format])
                .output()
                .await
                .unwrap()
        }
    };
    let ok = run("json").await;
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(v["result"], "success");
    assert_eq!(v["module"], "tcp_connect");
    assert_eq!(v["target"], target.as_str());
    assert!(v["phases_seconds"]["connect"].is_number(), "{v}");

    accepting.abort();
    let _ = accepting.await;
    let refused = run("text").await;
    assert_eq!(refused.status.code(), Some(1));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(
        text.contains("module:       tcp_connect") && text.contains("FAILED (refused)"),
        "{text}"
    );

    // A module the config does not have is a usage error naming it.
    let usage = tokio::process::Command::new(BIN)
        .args(["probe", "--module", "nope", &target, "--config", &cfg])
        .output()
        .await
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--module nope"));
}

#[test]
fn demo_runs_to_completion_and_shows_detection() {
    let out = Command::new(BIN).arg("demo").output().expect("demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "FAULT",
        "DOWN   primary /health",
        "detected",
        "FAILOVER traffic → backup",
        "FAILBACK traffic → primary",
        "recovered",
        "summary",
        "detection times",
        // The messages the demo's in-process webhook receiver got, on the timeline.
        "NOTIFY declared",
        "NOTIFY update",
        "NOTIFY resolved",
    ] {
        assert!(
            text.contains(needle),
            "demo output lacks `{needle}`:\n{text}"
        );
    }
    assert!(
        text.contains("client requests through the failover proxy:")
            && text.contains(" ok, 0 failed"),
        "clients saw failures:\n{text}"
    );
    // Detection with 250 ms interval and down_after 3 lands within ~1 s of the fault.
    for line in text.lines().filter(|l| l.contains("detected")) {
        let ms: f64 = line
            .split("detected ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .expect("a figure");
        assert!(ms < 1500.0, "slow detection: {line}");
    }
}

#[test]
fn wake_lead_defaults_to_2ms_and_refuses_more_than_10ms() {
    let lead = |args: &[&str]| common::run_args(args).map(|a| a.wake_lead);
    assert_eq!(lead(&[]).unwrap(), Duration::from_millis(2));
    assert_eq!(lead(&["--wake-lead", "0s"]).unwrap(), Duration::ZERO);
    assert_eq!(
        lead(&["--wake-lead=500us"]).unwrap(),
        Duration::from_micros(500)
    );
    for (value, says) in [("11ms", "over 10ms"), ("early", "not a duration")] {
        let err = lead(&["--wake-lead", value]).unwrap_err().to_string();
        assert!(err.contains("--wake-lead") && err.contains(says), "{err}");
    }
}

#[test]
fn min_wake_gap_defaults_to_400us_and_refuses_more_than_10ms() {
    let gap = |args: &[&str]| common::run_args(args).map(|a| a.min_wake_gap);
    assert_eq!(gap(&[]).unwrap(), Duration::from_micros(400));
    assert_eq!(gap(&["--min-wake-gap", "0s"]).unwrap(), Duration::ZERO);
    assert_eq!(
        gap(&["--min-wake-gap=1ms"]).unwrap(),
        Duration::from_millis(1)
    );
    for (value, says) in [("20ms", "over 10ms"), ("soon", "not a duration")] {
        let err = gap(&["--min-wake-gap", value]).unwrap_err().to_string();
        assert!(
            err.contains("--min-wake-gap") && err.contains(says),
            "{err}"
        );
    }
}
