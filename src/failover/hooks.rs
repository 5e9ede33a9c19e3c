//! Hooks run on every switch: a command and a webhook. Both run in their own tasks, bounded by
//! timeouts, so a slow or failing hook never delays the switch itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::process::Command;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{ExecHook, WebhookHook};

/// What a switch tells its hooks.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchNotice {
    /// Group name.
    pub group: String,
    /// Instance that had the traffic (base URL), empty for none.
    pub from: String,
    /// Instance that has it now, empty for none.
    pub to: String,
    /// Why (`active_down`, `failback`, ...).
    pub reason: String,
    /// Detail of the failure that caused it, when known.
    pub detail: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Results of a hook's runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HookStats {
    /// Runs that succeeded.
    pub ok: u64,
    /// Runs that failed (non-zero exit, HTTP error after all retries).
    pub failed: u64,
    /// Runs killed at their timeout.
    pub timed_out: u64,
    /// Webhook attempts beyond the first.
    pub retries: u64,
    /// Exit code of the last command run (`None` when killed).
    pub last_exit_code: Option<i32>,
    /// Duration of the last run, seconds.
    pub last_duration_seconds: f64,
    /// The last error.
    pub last_error: Option<String>,
}

/// The exec and webhook results of one group.
#[derive(Debug, Default)]
pub struct Hooks {
    /// The command's results.
    pub exec: Mutex<HookStats>,
    /// The webhook's results.
    pub webhook: Mutex<HookStats>,
}

/// Runs the command with the notice in its environment; records the result.
pub async fn run_exec(hook: ExecHook, notice: SwitchNotice, stats: Arc<Hooks>) {
    let start = Instant::now();
    let mut cmd = Command::new(&hook.command[0]);
    cmd.args(&hook.command[1..])
        .env("WATCHFIRE_GROUP", &notice.group)
        .env("WATCHFIRE_FROM", &notice.from)
        .env("WATCHFIRE_TO", &notice.to)
        .env("WATCHFIRE_REASON", &notice.reason)
        .env("WATCHFIRE_DETAIL", &notice.detail)
        .env("WATCHFIRE_AT", &notice.at)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let result = match cmd.spawn() {
        Err(e) => Err((None, format!("cannot start `{}`: {e}", hook.command[0]))),
        Ok(mut child) => match tokio::time::timeout(hook.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(status.code()),
            Ok(Ok(status)) => Err((status.code(), format!("exited with {status}"))),
            Ok(Err(e)) => Err((None, format!("waiting for it failed: {e}"))),
            Err(_) => {
                let _ = child.kill().await;
                Err((
                    None,
                    format!("killed after its timeout of {:?}", hook.timeout),
                ))
            }
        },
    };
    let elapsed = start.elapsed();
    let mut st = stats.exec.lock().expect("hook stats lock poisoned");
    st.last_duration_seconds = elapsed.as_secs_f64();
    match result {
        Ok(code) => {
            st.ok += 1;
            st.last_exit_code = code;
            st.last_error = None;
            info!(group = %notice.group, command = ?hook.command, duration = ?elapsed, "failover exec hook succeeded");
        }
        Err((code, e)) => {
            if code.is_none() && e.starts_with("killed") {
                st.timed_out += 1;
            }
            st.failed += 1;
            st.last_exit_code = code;
            warn!(group = %notice.group, command = ?hook.command, error = %e, "failover exec hook failed");
            st.last_error = Some(e);
        }
    }
}

/// POSTs the notice as JSON, retrying with exponential backoff (0.5 s, 1 s, 2 s, ...).
pub async fn run_webhook(hook: WebhookHook, notice: SwitchNotice, stats: Arc<Hooks>) {
    let start = Instant::now();
    let client = match reqwest::Client::builder().timeout(hook.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            let mut st = stats.webhook.lock().expect("hook stats lock poisoned");
            st.failed += 1;
            st.last_error = Some(format!("cannot build the HTTP client: {e}"));
            return;
        }
    };
    let mut backoff = Duration::from_millis(500);
    let mut last_error = String::new();
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            stats
                .webhook
                .lock()
                .expect("hook stats lock poisoned")
                .retries += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        match client.post(&hook.url).json(&notice).send().await {
            Ok(r) if r.status().is_success() => {
                let mut st = stats.webhook.lock().expect("hook stats lock poisoned");
                st.ok += 1;
                st.last_error = None;
                st.last_duration_seconds = start.elapsed().as_secs_f64();
                info!(group = %notice.group, url = %hook.url, attempts = attempt + 1, "failover webhook delivered");
                return;
            }
            Ok(r) => last_error = format!("answered {}", r.status()),
            Err(e) => {
                last_error = if e.is_timeout() {
                    format!("no answer within {:?}", hook.timeout)
                } else {
                    format!("request failed: {e}")
                }
            }
        }
    }
    let mut st = stats.webhook.lock().expect("hook stats lock poisoned");
    st.failed += 1;
    st.last_duration_seconds = start.elapsed().as_secs_f64();
    warn!(group = %notice.group, url = %hook.url, attempts = hook.retries + 1, error = %last_error, "failover webhook failed");
    st.last_error = Some(last_error);
}
