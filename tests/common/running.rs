//! The `watchfire` binary (or a link to it) as a child process whose stderr lines are read on a
//! thread: wait (bounded) for a log line, read the listen address it logs, keep every line seen.
//! Killed and reaped on drop, so a failing test leaves nothing running.
//!
//! Use with `#[path = "common/running.rs"] mod running;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// How long [`Running::wait_line`] waits for a line.
const LINE_WAIT: Duration = Duration::from_secs(20);

/// A running child with its stderr lines; stdout is discarded and `RUST_LOG` unset.
pub struct Running {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line read so far, in order.
    pub seen: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `program` with `args`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(program: &Path, args: &[S]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .spawn()
            .expect("watchfire starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines (20 s at most) until one contains `needle`; returns it.
    pub fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + LINE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no log line with `{needle}` in {LINE_WAIT:?}; seen:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "watchfire ended before logging `{needle}`; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The listen address from the `watchfire is running` line (logfmt or JSON).
    pub fn addr(&mut self) -> SocketAddr {
        let line = self.wait_line("watchfire is running");
        let addr = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => v["addr"].as_str().expect("addr field").to_string(),
            Err(_) => line
                .split(' ')
                .find_map(|kv| kv.strip_prefix("addr="))
                .expect("addr= in the line")
                .to_string(),
        };
        addr.parse().expect("an address")
    }
}
