//! `--web.systemd-socket` (socket activation, as exporter-toolkit does it): the binary serves on
//! a listener it is passed as fd 3 with `LISTEN_PID` and `LISTEN_FDS`, and refuses to start,
//! saying why, when the environment does not pass it any.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use common::{eventually, get};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");
const BLACKBOX_YML: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n";

/// A child killed when the test ends, passed or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_metrics_on_the_socket_passed_as_fd_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("blackbox.yml");
    std::fs::write(&cfg, BLACKBOX_YML).expect("write config");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().expect("local address");
    // LISTEN_PID must be the server's own id, which is known only in the child: the shell sets
    // it to its own and `exec`s watchfire, which keeps that id (as systemd does after fork).
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@""#)
        .arg(BIN)
        .arg("--config.file")
        .arg(&cfg)
        // Ignored with the flag: the passed socket is served instead.
        .args(["--web.listen-address=127.0.0.1:1", "--web.systemd-socket"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG")
        .fd_mappings(vec![FdMapping {
            parent_fd: listener.into(),
            child_fd: 3,
        }])
        .expect("fd 3 is free in the child");
    let _child = Child(cmd.spawn().expect("watchfire starts"));
    let body = eventually(
        Duration::from_secs(20),
        "/metrics on the passed socket",
        || async {
            // Connections wait in the passed socket's backlog until watchfire accepts them.
            let (status, body) =
                tokio::time::timeout(Duration::from_secs(2), get(addr, "/metrics"))
                    .await
                    .ok()?;
            (status == 200).then_some(body)
        },
    )
    .await;
    assert!(body.contains("blackbox_module_unknown_total"), "{body}");
}

#[test]
fn without_sockets_from_the_environment_it_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("blackbox.yml");
    std::fs::write(&cfg, BLACKBOX_YML).expect("write config");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config.file")
            .arg(&cfg)
            .arg("--web.systemd-socket")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("watchfire runs");
        assert!(!out.status.success(), "started with {env:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&[]);
    assert!(e.contains("LISTEN_PID is not set"), "{e}");
    // PID 1 is never this test's child.
    let e = run(&[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    assert!(e.contains("LISTEN_PID=1 names another process"), "{e}");
}
