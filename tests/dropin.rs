//! watchfire as a drop-in for blackbox_exporter (issue #12, finding 8): the exporter's command
//! line with no subcommand and under the exporter's names, every 0.28 flag accepted, its log
//! formats, no colour codes off a terminal, automatic reload, and a 1 MB response header.

mod common;
#[path = "common/running.rs"]
mod running;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{eventually, get};
use running::{Running, BIN};

/// A blackbox.yml with one module.
const BLACKBOX_YML: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_flags_without_a_subcommand_run_and_log_logfmt_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "blackbox.yml", BLACKBOX_YML);
    let cfg = cfg.to_str().unwrap();
    let mut w = Running::start(
        Path::new(BIN),
        &["--config.file", cfg, "--web.listen-address=127.0.0.1:0"],
    );
    let addr = w.addr();
    let (status, body) = get(addr, "/probe?target=127.0.0.1:1&module=http_2xx").await;
    assert_eq!(status, 200);
    assert!(body.contains("probe_success 0"), "{body}");
    let (status, _) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in &w.seen {
        assert!(line.starts_with("ts="), "a logfmt line: {line}");
        assert!(
            line.contains(" level=info ") && line.contains(" msg="),
            "{line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "no ANSI escape off a terminal: {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_exporters_names_the_binary_is_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "blackbox.yml", BLACKBOX_YML);
    for name in ["blackbox_exporter", "prometheus-blackbox-exporter"] {
        let link = dir.path().join(name);
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        let mut w = Running::start(
            &link,
            &[
                "--config.file",
                cfg.to_str().unwrap(),
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format=json",
            ],
        );
        let addr = w.addr();
        let line = w.seen.last().unwrap().clone();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info", "{line}");
        assert!(v["ts"].is_string() && v["caller"].is_string(), "{line}");
        let (status, body) = get(addr, "/-/healthy").await;
        assert_eq!(status, 200, "{name}: {body}");
        // With no flags at all, the binary under this name still parses as the exporter.
        let out = Command::new(&link).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--config.file") && help.contains("--log.format"),
            "{help}"
        );
    }
}

#[test]
fn every_exporter_flag_is_accepted_in_kingpins_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "blackbox.yml", BLACKBOX_YML);
    let web = write(dir.path(), "web.yml", "{}\n");
    let cfg = format!("--config.file={}", cfg.display());
    let web = web.to_str().unwrap();
    let out = Command::new(BIN)
        .args([
            cfg.as_str(),
            "--config.check",
            "--config.enable-auto-reload",
            "--no-config.enable-auto-reload",
            "--config.auto-reload-interval",
            "30",
            "--web.listen-address=127.0.0.1:0",
            "--web.listen-address",
            "[::1]:0",
            "--web.config.file",
            web,
            "--no-web.systemd-socket",
            "--web.external-url=http://example.com/bb/",
            "--web.route-prefix",
            "/bb",
            "--timeout-offset=0.25",
            "--history.limit",
            "50",
            "--log.level=debug",
            "--log.format",
            "logfmt",
            "--log.prober=warn",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{err}");
    assert!(
        stdout.contains("OK (0 targets, 0 failover groups, 1 modules"),
        "{stdout}"
    );
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(version.status.success());
    let bad = Command::new(BIN)
        .args(["--config.file", "x.yml", "--log.level", "loud"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--log.level"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchfire_run_text_logs_carry_no_colour_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "b.yml", BLACKBOX_YML);
    let mut w = Running::start(
        Path::new(BIN),
        &[
            "run",
            "--storage.memory",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let line = w.wait_line("watchfire is running");
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(w.seen.iter().all(|l| !l.contains('\u{1b}')), "{:?}", w.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reload_applies_a_changed_config_and_keeps_the_old_one_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "blackbox.yml", BLACKBOX_YML);
    let mut w = Running::start(
        Path::new(BIN),
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--web.listen-address=127.0.0.1:0",
            "--config.enable-auto-reload",
            "--config.auto-reload-interval=100ms",
        ],
    );
    let addr = w.addr();
    let two = format!("{BLACKBOX_YML}  tcp_connect:\n    prober: tcp\n");
    std::fs::write(&cfg, two).unwrap();
    eventually(
        Duration::from_secs(10),
        "the new module after the change",
        || async {
            let (status, _) = get(addr, "/probe?target=127.0.0.1:1&module=tcp_connect").await;
            (status == 200).then_some(())
        },
    )
    .await;
    std::fs::write(&cfg, "modules: [not, a, map]\n").unwrap();
    eventually(Duration::from_secs(10), "a failed reload", || async {
        let (_, m) = get(addr, "/metrics").await;
        (common::sample(&m, "watchfire_config_last_reload_successful") == Some(0.0)).then_some(())
    })
    .await;
    let (status, _) = get(addr, "/probe?target=127.0.0.1:1&module=tcp_connect").await;
    assert_eq!(status, 200, "the running config stays after a bad change");
}

/// A one-shot HTTP server whose answer carries a response header of `size` bytes.
async fn big_header_server(size: usize) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    "a".repeat(size)
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_response_header_passes_both_probers() {
    let addr = big_header_server(1 << 20).await;
    let url = format!("http://{addr}/");
    let native = tokio::process::Command::new(BIN)
        .args(["probe", &url, "--timeout", "10s"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&native.stdout);
    assert!(native.status.success(), "native prober: {text}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "blackbox.yml", BLACKBOX_YML);
    let module = tokio::process::Command::new(BIN)
        .args(["probe", "--module", "http_2xx", "--config"])
        .arg(&cfg)
        .arg(&url)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&module.stdout);
    assert!(module.status.success(), "blackbox http prober: {text}");
}
