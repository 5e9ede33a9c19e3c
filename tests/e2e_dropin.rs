//! Debian's systemd unit for blackbox_exporter runs watchfire with only the binary path changed
//! (issue #12, finding 8).
//!
//! The test reads the unit Debian ships (`/lib/systemd/system/prometheus-blackbox-exporter.service`)
//! and its environment file (`/etc/default/prometheus-blackbox-exporter`, where
//! `ARGS="--config.file /etc/prometheus/blackbox.yml"`), puts watchfire's path in place of the
//! exporter's in `ExecStart`, and runs that command line as systemd would: the environment file
//! loaded, `$ARGS` split into words (here by `sh -c`). One thing is added: Debian's ARGS sets no
//! listen address, so the exporter's default `:9115` (every interface) would apply; a test binds
//! loopback only, on a free port, so `--web.listen-address=127.0.0.1:0` is appended. Then /probe,
//! /metrics and /config must answer, the config loaded must be /etc/prometheus/blackbox.yml, and
//! the unit's `ExecReload` (SIGHUP) must reload it.
//!
//! Needs Debian's `prometheus-blackbox-exporter` package (for the unit, the defaults file and
//! /etc/prometheus/blackbox.yml); when it is missing the test fails loudly, never skips.
#![cfg(feature = "e2e")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{eventually, get, sample};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const UNIT: &str = "/lib/systemd/system/prometheus-blackbox-exporter.service";
const DEFAULTS: &str = "/etc/default/prometheus-blackbox-exporter";
const CONFIG: &str = "/etc/prometheus/blackbox.yml";

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e}: the e2e tests need Debian's package (apt-get install prometheus-blackbox-exporter)")
    })
}

/// The value of `Key=` in the unit's `[Service]` section.
fn unit_key(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{UNIT} has no {key}="))
        .trim()
        .to_string()
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for a stderr line containing `needle`.
fn wait_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no log line with `{needle}`: {e}"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debians_unit_runs_watchfire_with_only_the_binary_changed() {
    let unit = read(UNIT);
    read(DEFAULTS);
    read(CONFIG);
    assert_eq!(unit_key(&unit, "EnvironmentFile"), DEFAULTS);
    let exec = unit_key(&unit, "ExecStart");
    let (binary, args) = exec.split_once(' ').expect("ExecStart has arguments");
    assert_eq!(binary, "/usr/bin/prometheus-blackbox-exporter");
    assert!(args.contains("ARGS"), "ExecStart passes $ARGS: {exec}");
    let defaults = read(DEFAULTS);
    assert!(
        !defaults.contains("web.listen-address"),
        "Debian's ARGS sets no listen address; this test adds a loopback one"
    );
    // As systemd: the environment file's variables, then the command with $ARGS split in words.
    let script =
        format!("set -a; . {DEFAULTS}; set +a; exec {BIN} {args} --web.listen-address=127.0.0.1:0");
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let stderr = child.stderr.take().expect("stderr piped");
    let child = Guard(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let running = wait_line(&lines, "watchfire is running");
    assert!(
        running.starts_with("ts="),
        "logfmt, as the exporter logs: {running}"
    );
    assert!(running.contains(&format!("config={CONFIG}")), "{running}");
    let addr: SocketAddr = running
        .split(' ')
        .find_map(|kv| kv.strip_prefix("addr="))
        .expect("addr= in the line")
        .parse()
        .expect("an address");

    let (status, body) = get(addr, "/probe?target=127.0.0.1:1&module=tcp_connect").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("probe_success 0"), "{body}");
    let (status, _) = get(addr, "/probe?target=127.0.0.1:1&module=nope").await;
    assert_eq!(status, 400, "an unknown module, as the exporter answers");
    let (status, config) = get(addr, "/config").await;
    assert_eq!(status, 200);
    for module in ["http_post_2xx", "pop3s_banner", "irc_banner", "icmp_ttl5"] {
        assert!(config.contains(module), "/config shows {CONFIG}'s {module}");
    }
    let (status, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let reloads = "watchfire_config_reloads_total{result=\"success\"}";
    let before = sample(&metrics, reloads).unwrap_or(0.0);

    // ExecReload=/bin/kill -HUP $MAINPID (sh exec'd watchfire: same PID).
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    eventually(
        Duration::from_secs(10),
        "a successful reload on SIGHUP",
        || async {
            let (_, m) = get(addr, "/metrics").await;
            (sample(&m, reloads).unwrap_or(0.0) > before).then_some(())
        },
    )
    .await;
}
