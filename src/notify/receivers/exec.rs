//! The exec receiver: runs `argv` (no shell) once per message, with the webhook's schema-1 JSON
//! on its standard input and, in its environment, `WATCHFIRE_KIND`, `WATCHFIRE_INCIDENT`,
//! `WATCHFIRE_KEY` (the outbox key: the same on every retry), `WATCHFIRE_TITLE` and the
//! configured `env` (whose values are secrets: never logged or quoted).
//!
//! The command runs in a process group of its own. It must exit within `timeout`, or the whole
//! group (the command and whatever it started) is killed. Exit 0 is delivered. Any other exit,
//! `75` (`EX_TEMPFAIL`) included, and death by a signal or the timeout, is retried with the
//! outbox's backoff until it gives up; a program that is not there or not executable is
//! permanent. At most 4 KiB of standard output and of standard error are kept and quoted in
//! the error.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::{quote, webhook, SendError, QUOTE_LIMIT};
use crate::notify::config::ExecConfig;
use crate::notify::Message;

/// How long output still in the pipes is read after the command exits (a process it left
/// behind may hold them open).
const DRAIN: Duration = Duration::from_millis(500);

/// Runs `c` for `m`. `name` is the receiver's, for errors.
pub async fn run(name: &str, c: &ExecConfig, m: &Message) -> Result<(), SendError> {
    let Some(program) = c.argv.first() else {
        return Err(SendError::Permanent {
            error: format!("exec receiver {name}: argv is empty"),
        });
    };
    let says = |what: String| format!("exec receiver {name} (`{program}`): {what}");
    let secrets: Vec<&str> = c.env.values().map(|v| v.expose().as_str()).collect();
    let mut cmd = Command::new(program);
    cmd.args(&c.argv[1..])
        .env("WATCHFIRE_KIND", m.kind.as_str())
        .env("WATCHFIRE_INCIDENT", m.incident.to_string())
        .env("WATCHFIRE_KEY", &m.key)
        .env("WATCHFIRE_TITLE", &m.title)
        .envs(c.env.iter().map(|(k, v)| (k, v.expose())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| spawn_error(&says, &e))?;
    let input = webhook::body(m, crate::store::now_millis());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let feed = async move {
        // A command that does not read its input closes the pipe: not an error here.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let deadline = tokio::time::Instant::now() + c.timeout;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let waited = {
        let collect = async {
            tokio::join!(
                feed,
                read_bounded(&mut stdout, &mut out),
                read_bounded(&mut stderr, &mut err)
            );
        };
        tokio::pin!(collect);
        let mut io_done = false;
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = &mut collect, if !io_done => io_done = true,
                }
            }
        })
        .await;
        if waited.is_err() {
            kill_group(&mut child).await;
        }
        if !io_done {
            // Output still in the pipes, for a bounded moment.
            let _ = tokio::time::timeout(DRAIN.min(c.timeout), &mut collect).await;
        }
        waited
    };
    let status = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(SendError::Retry {
                error: says(format!("waiting for it failed: {e}")),
                after: None,
            })
        }
        Err(_) => {
            return Err(SendError::Retry {
                error: says(format!(
                    "killed after its timeout of {:?}{}",
                    c.timeout,
                    output(&out, &err, &secrets)
                )),
                after: None,
            });
        }
    };
    if status.success() {
        return Ok(());
    }
    Err(SendError::Retry {
        error: says(format!(
            "{}{}",
            exit_text(status),
            output(&out, &err, &secrets)
        )),
        after: None,
    })
}

/// Kills the command's process group, then reaps the command.
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

/// A spawn failure, typed: a program that is not there or may not be run is permanent;
/// anything else (out of processes, memory, file descriptors) may pass.
fn spawn_error(says: &impl Fn(String) -> String, e: &std::io::Error) -> SendError {
    use std::io::ErrorKind::{NotFound, PermissionDenied};
    match e.kind() {
        NotFound => SendError::Permanent {
            error: says("the program is not there".into()),
        },
        PermissionDenied => SendError::Permanent {
            error: says("the program may not be run (permission denied)".into()),
        },
        _ => SendError::Retry {
            error: says(format!("cannot start it: {e}")),
            after: None,
        },
    }
}

/// How the command ended, for people.
fn exit_text(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(75), _) => "exited with 75 (EX_TEMPFAIL)".to_string(),
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The kept output, quoted: `; stdout: "..."; stderr: "..."` for whichever is not empty.
fn output(out: &[u8], err: &[u8], secrets: &[&str]) -> String {
    let mut s = String::new();
    for (name, bytes) in [("stdout", out), ("stderr", err)] {
        let q = quote(bytes, secrets);
        if !q.is_empty() {
            s.push_str(&format!("; {name}{q}"));
        }
    }
    s
}

/// Reads `r` to its end, keeping the first [`QUOTE_LIMIT`] bytes in `keep` (the rest is read
/// and dropped, so the command never blocks on a full pipe).
async fn read_bounded(r: &mut (impl AsyncRead + Unpin), keep: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = QUOTE_LIMIT.saturating_sub(keep.len());
                keep.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
