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
    /// Switches of the group in the dampening window, this one included.
    pub switches_in_window: u32,
    /// The hold before the next failback, seconds (lengthened by dampening).
    pub hold_seconds: f64,
}

/// How one run of a hook ended. Each run ends in exactly one of these, and is counted under
/// exactly one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// The command exited 0, or the webhook was answered 2xx.
    Succeeded {
        /// The command's exit code (`None` for a webhook).
        exit_code: Option<i32>,
    },
    /// The command could not start or exited non-zero, or the webhook failed after all its
    /// retries.
    Failed {
        /// The command's exit code, when it exited.
        exit_code: Option<i32>,
        /// What went wrong.
        error: String,
    },
    /// The command was killed at its timeout.
    TimedOut {
        /// The timeout it overran.
        timeout: Duration,
    },
}

impl HookOutcome {
    /// The exit code of the command's run, when it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            HookOutcome::Succeeded { exit_code } | HookOutcome::Failed { exit_code, .. } => {
                *exit_code
            }
            HookOutcome::TimedOut { .. } => None,
        }
    }

    /// What went wrong, for people; `None` on success.
    pub fn error(&self) -> Option<String> {
        match self {
            HookOutcome::Succeeded { .. } => None,
            HookOutcome::Failed { error, .. } => Some(error.clone()),
            HookOutcome::TimedOut { timeout } => {
                Some(format!("killed after its timeout of {timeout:?}"))
            }
        }
    }
}

/// Results of a hook's runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HookStats {
    /// Runs that succeeded.
    pub ok: u64,
    /// Runs that failed (could not start, non-zero exit, HTTP error after all retries); runs
    /// killed at their timeout are counted under `timed_out` only.
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

impl HookStats {
    /// Counts one run that took `elapsed` under its one result.
    pub fn record(&mut self, outcome: &HookOutcome, elapsed: Duration) {
        match outcome {
            HookOutcome::Succeeded { .. } => self.ok += 1,
            HookOutcome::Failed { .. } => self.failed += 1,
            HookOutcome::TimedOut { .. } => self.timed_out += 1,
        }
        self.last_exit_code = outcome.exit_code();
        self.last_duration_seconds = elapsed.as_secs_f64();
        self.last_error = outcome.error();
    }
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
        .env(
            "WATCHFIRE_SWITCHES_IN_WINDOW",
            notice.switches_in_window.to_string(),
        )
        .env("WATCHFIRE_HOLD_SECONDS", notice.hold_seconds.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let outcome = match cmd.spawn() {
        Err(e) => HookOutcome::Failed {
            exit_code: None,
            error: format!("cannot start `{}`: {e}", hook.command[0]),
        },
        Ok(mut child) => match tokio::time::timeout(hook.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => HookOutcome::Succeeded {
                exit_code: status.code(),
            },
            Ok(Ok(status)) => HookOutcome::Failed {
                exit_code: status.code(),
                error: format!("exited with {status}"),
            },
            Ok(Err(e)) => HookOutcome::Failed {
                exit_code: None,
                error: format!("waiting for it failed: {e}"),
            },
            Err(_) => {
                let _ = child.kill().await;
                HookOutcome::TimedOut {
                    timeout: hook.timeout,
                }
            }
        },
    };
    let elapsed = start.elapsed();
    match outcome.error() {
        None => {
            info!(group = %notice.group, command = ?hook.command, duration = ?elapsed, "failover exec hook succeeded")
        }
        Some(e) => {
            warn!(group = %notice.group, command = ?hook.command, error = %e, "failover exec hook failed")
        }
    }
    stats
        .exec
        .lock()
        .expect("hook stats lock poisoned")
        .record(&outcome, elapsed);
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
        match client.post(hook.url.expose()).json(&notice).send().await {
            Ok(r) if r.status().is_success() => {
                let outcome = HookOutcome::Succeeded { exit_code: None };
                let mut st = stats.webhook.lock().expect("hook stats lock poisoned");
                st.record(&outcome, start.elapsed());
                info!(group = %notice.group, url = %crate::redact::origin(hook.url.expose()), attempts = attempt + 1, "failover webhook delivered");
                return;
            }
            Ok(r) => last_error = format!("answered {}", r.status()),
            Err(e) => {
                last_error = if e.is_timeout() {
                    format!("no answer within {:?}", hook.timeout)
                } else {
                    format!("request failed: {}", e.without_url())
                }
            }
        }
    }
    warn!(group = %notice.group, url = %crate::redact::origin(hook.url.expose()), attempts = hook.retries + 1, error = %last_error, "failover webhook failed");
    let outcome = HookOutcome::Failed {
        exit_code: None,
        error: last_error,
    };
    stats
        .webhook
        .lock()
        .expect("hook stats lock poisoned")
        .record(&outcome, start.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_run_is_counted_once_under_timed_out() {
        let mut st = HookStats::default();
        let outcome = HookOutcome::TimedOut {
            timeout: Duration::from_millis(300),
        };
        st.record(&outcome, Duration::from_millis(310));
        assert_eq!((st.ok, st.failed, st.timed_out), (0, 0, 1));
        assert_eq!(st.last_exit_code, None);
        assert_eq!(
            st.last_error.as_deref(),
            Some("killed after its timeout of 300ms")
        );
    }

    #[test]
    fn a_success_clears_the_last_error() {
        let mut st = HookStats::default();
        let failed = HookOutcome::Failed {
            exit_code: Some(3),
            error: "exited with exit status: 3".into(),
        };
        st.record(&failed, Duration::from_millis(5));
        assert_eq!((st.failed, st.last_exit_code), (1, Some(3)));
        st.record(
            &HookOutcome::Succeeded { exit_code: Some(0) },
            Duration::ZERO,
        );
        assert_eq!((st.ok, st.failed, st.timed_out), (1, 1, 0));
        assert_eq!((st.last_exit_code, st.last_error), (Some(0), None));
    }
}
