//! Fixtures of the failover tests: `watchfire sim` as a child process (killed, or frozen and
//! thawed, by the test; stopped on drop), free loopback addresses, and a runtime started on a
//! config whose failover group `gw` has a listening proxy.
//!
//! Use with `mod common;` and `#[path = "common/failover.rs"] mod fixture;`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::failover::Group;
use watchfire::runtime::{Runtime, RuntimeOptions};

/// A `watchfire sim --listen ADDR` child process; thawed, killed and reaped on drop.
pub struct SimProcess {
    child: Child,
    reaped: bool,
}

impl SimProcess {
    /// Starts the sim on `addr` with `extra` flags (`--slow 400ms`, ...).
    pub fn start(addr: SocketAddr, extra: &[&str]) -> SimProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_watchfire"))
            .args(["sim", "--listen", &addr.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sim process starts");
        SimProcess {
            child,
            reaped: false,
        }
    }

    /// kill -9, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// SIGSTOP, then waits (5 s at most) until every thread of the sim is stopped: it accepts
    /// and never answers from then on. A stop signal wakes one thread, which stops the others
    /// when it next runs, so on a busy machine the rest can still serve requests for a while
    /// after `kill` returns.
    pub async fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        crate::common::eventually(Duration::from_secs(5), "every sim thread stopped", || {
            let tasks = tasks.clone();
            async move { all_stopped(&tasks).then_some(()) }
        })
        .await;
    }

    /// Sends `s`.
    pub fn signal(&self, s: Signal) {
        assert!(!self.reaped, "the sim was killed");
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        kill(pid, s).expect("signal the sim");
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if !self.reaped {
            // A frozen process dies of SIGKILL too; thawed first all the same, as a stopped
            // child must not outlive a failed test.
            let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.kill();
    }
}

/// Whether every thread under `/proc/PID/task` is stopped (state `T` in its `stat`).
fn all_stopped(tasks: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return false;
    };
    dir.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            // The state follows the command name, which is in parentheses and may hold spaces.
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    })
}

/// A free loopback address (bound, read, released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Waits (10 s at most) until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    crate::common::eventually(Duration::from_secs(10), "sim listening", || async move {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

/// Starts the runtime on `yaml` with `opts`: the runtime, its failover group `gw`, the group's
/// proxy address and the token that stops it all.
pub async fn start_gw(
    yaml: &str,
    opts: RuntimeOptions,
) -> (Arc<Runtime>, Arc<Group>, SocketAddr, CancellationToken) {
    let cfg = config::load_str("failover.yaml", yaml).expect("config");
    let cancel = CancellationToken::new();
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime");
    let g = rt.failover_group("gw").expect("group");
    let addr = g.proxy_addr().expect("proxy listening");
    (rt, g, addr, cancel)
}
