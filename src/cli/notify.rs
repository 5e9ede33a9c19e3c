//! `watchfire notify ...`: the `notify:` section seen from the command line.
//!
//! - `notify test RECEIVER --config PATH` renders the `test` message for that receiver from
//!   sample facts and sends it once, as the outbox would (same payload, same timeout), without
//!   writing anything to the store: the way to learn that a webhook URL, a routing key or a
//!   template works before an outage does.
//! - `notify list --config PATH` prints the receivers (their destinations redacted), the routes
//!   and the escalation tiers.
//!
//! Exit codes: 0 sent (or listed), 1 the receiver refused or could not be reached, 2 a usage
//! or configuration error (an unknown receiver, a config with errors, a template that fails).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::adhoc::DEFAULT_CONFIG;
use crate::config::{self, Config};
use crate::notify::config::{NotifyConfig, Receiver, ReceiverKind};
use crate::notify::message::Templates;
use crate::notify::receivers::{self, SendError};
use crate::notify::{outbox_key, Kind, Message};
use crate::redact;
use crate::store::now_millis;

/// The service the sample facts of `notify test` name.
pub const TEST_SERVICE: &str = "watchfire-notify-test";

/// Slack to an attempt's own bound, for the whole of `notify test`'s one delivery.
const SEND_SLACK: Duration = Duration::from_secs(5);

/// `watchfire notify`.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Config file or directory of *.yaml files with the `notify:` section.
    #[arg(long, alias = "config.file", default_value = DEFAULT_CONFIG, global = true)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: NotifyAction,
}

/// `watchfire notify` actions.
#[derive(Debug, Subcommand)]
pub enum NotifyAction {
    /// Send a sample message to one receiver now (exit 0 sent, 1 refused or unreachable, 2
    /// unknown receiver or bad config).
    Test {
        /// The receiver's name, as in `notify.receivers`.
        receiver: String,
    },
    /// Print the receivers (destinations redacted), routes and escalation tiers.
    List,
}

/// Runs `watchfire notify ...`.
pub async fn run(a: NotifyArgs) -> anyhow::Result<ExitCode> {
    let cfg = match load(&a.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match a.action {
        NotifyAction::List => {
            print!("{}", list(&cfg.notify));
            Ok(ExitCode::SUCCESS)
        }
        NotifyAction::Test { receiver } => Ok(test(&cfg.notify, &receiver).await),
    }
}

/// The config at `path`, or its errors printed as `check` prints them and exit code 2.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    // The config is read for its `notify:` section: one without targets is fine here.
    let opts = config::LoadOptions { allow_empty: true };
    config::load_with(path, opts).map_err(|errs| {
        for e in &errs.0 {
            eprintln!("{e}");
        }
        eprintln!("{} error(s) in {}", errs.0.len(), path.display());
        ExitCode::from(2)
    })
}

/// What to say when `name` is no receiver of `n`.
pub fn unknown_receiver(n: &NotifyConfig, name: &str) -> String {
    if n.receivers.is_empty() {
        return format!("no receiver `{name}`: the config has no receivers (notify.receivers)");
    }
    let names: Vec<&str> = n.receivers.iter().map(|r| r.name.as_str()).collect();
    format!("no receiver `{name}`; the config has: {}", names.join(", "))
}

/// The `test` message for `r`, rendered from sample facts at `now`.
pub fn test_message(
    n: &NotifyConfig,
    r: &Receiver,
    now: crate::store::Millis,
) -> Result<Message, crate::notify::message::TemplateError> {
    let facts = Templates::sample(TEST_SERVICE);
    let (title, text) = n.templates.render(&r.name, Kind::Test, &facts)?;
    Ok(Message {
        key: outbox_key(&format!("test:{now}"), &r.name),
        receiver: r.name.clone(),
        kind: Kind::Test,
        incident: 0,
        due: now,
        title,
        text,
        facts,
    })
}

/// Sends the test message to `name`; prints the outcome and gives the exit code.
async fn test(n: &NotifyConfig, name: &str) -> ExitCode {
    let Some(r) = n.receiver(name) else {
        eprintln!("watchfire: {}", unknown_receiver(n, name));
        return ExitCode::from(2);
    };
    let m = match test_message(n, r, now_millis()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("watchfire: {e}");
            return ExitCode::from(2);
        }
    };
    let http = receivers::client(n.delivery.timeout);
    let bound = attempt_bound(n, r);
    let start = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(bound, receivers::send(&http, r, &m)).await;
    let ms = start.elapsed().as_millis();
    let kind = r.kind.as_str();
    match outcome {
        Ok(Ok(())) => {
            println!("sent to {name} ({kind}) in {ms} ms");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            let what = match &e {
                SendError::Retry { .. } => "failed (the outbox would retry)",
                SendError::Permanent { .. } => "refused (the outbox would give up)",
            };
            let e = e.to_string();
            eprintln!(
                "{what}: {name} ({kind}) after {ms} ms: {}",
                redact::urls_in(&e)
            );
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("failed: {name} ({kind}) gave no answer within {bound:?}");
            ExitCode::from(1)
        }
    }
}

/// The longest `notify test` waits for one delivery: the attempt's own bound (the delivery
/// timeout, or an exec receiver's) and some slack.
fn attempt_bound(n: &NotifyConfig, r: &Receiver) -> Duration {
    let own = match &r.kind {
        ReceiverKind::Exec(e) => e.timeout.max(n.delivery.timeout),
        _ => n.delivery.timeout,
    };
    own + SEND_SLACK
}

/// Where `r` sends, as it may be shown: secret URLs as their origin, keys and header values
/// never.
pub fn destination(r: &Receiver) -> String {
    match &r.kind {
        ReceiverKind::Slack(s) => redact::origin(s.url.expose()),
        ReceiverKind::PagerDuty(p) => {
            format!("{} (routing key {})", redact::url(&p.url), redact::MASK)
        }
        ReceiverKind::Alertmanager(a) => format!(
            "{}/api/v2/alerts (resent every {})",
            redact::url(a.url.trim_end_matches('/')),
            humantime::format_duration(a.resend)
        ),
        ReceiverKind::Webhook(w) => {
            let mut s = redact::origin(w.url.expose());
            if w.secret.is_some() {
                s.push_str(" (signed)");
            }
            if !w.headers.is_empty() {
                let names: Vec<&str> = w.headers.keys().map(String::as_str).collect();
                let _ = write!(s, " (headers {})", names.join(", "));
            }
            s
        }
        ReceiverKind::Exec(e) => {
            let program = e.argv.first().map_or("", String::as_str);
            let mut s = format!(
                "{program} with {} argument(s), bounded by {}",
                e.argv.len().saturating_sub(1),
                humantime::format_duration(e.timeout)
            );
            if !e.env.is_empty() {
                let names: Vec<&str> = e.env.keys().map(String::as_str).collect();
                let _ = write!(s, " (env {})", names.join(", "));
            }
            s
        }
    }
}

/// `notify list`'s text: receivers, routes, escalation tiers and cadence.
pub fn list(n: &NotifyConfig) -> String {
    let mut s = String::new();
    let dur = |d: Duration| humantime::format_duration(d).to_string();
    let _ = writeln!(s, "receivers: {}", n.receivers.len());
    for r in &n.receivers {
        let _ = writeln!(
            s,
            "  {:<20} {:<13} {}",
            r.name,
            r.kind.as_str(),
            destination(r)
        );
    }
    let _ = writeln!(s, "routes: {}", n.routes.len());
    for (i, r) in n.routes.iter().enumerate() {
        let matchers = if r.matchers.is_empty() {
            "every incident".to_string()
        } else {
            let m: Vec<String> = r.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            m.join(", ")
        };
        let _ = write!(s, "  {}. {matchers} → {}", i + 1, r.receivers.join(", "));
        if !r.wait.is_zero() {
            let _ = write!(s, " (declared after {})", dur(r.wait));
        }
        s.push('\n');
    }
    let _ = writeln!(s, "escalation: {} tier(s)", n.escalation.len());
    for (i, t) in n.escalation.iter().enumerate() {
        let to = if t.receivers.is_empty() {
            "the route's receivers".to_string()
        } else {
            t.receivers.join(", ")
        };
        let _ = writeln!(
            s,
            "  tier {}: after {:<8} {} → {to}",
            i + 1,
            dur(t.after),
            t.who
        );
    }
    let _ = writeln!(
        s,
        "updates every {}; delivery: timeout {}, backoff {} up to {}, given up after {}",
        dur(n.update_every),
        dur(n.delivery.timeout),
        dur(n.delivery.backoff),
        dur(n.delivery.max_backoff),
        dur(n.delivery.give_up_after)
    );
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::notify::config::{
        AlertmanagerConfig, ExecConfig, PagerDutyConfig, Route, SlackConfig, Tier, WebhookConfig,
    };
    use crate::redact::Secret;

    fn receiver(name: &str, kind: ReceiverKind) -> Receiver {
        Receiver {
            name: name.into(),
            kind,
        }
    }

    fn config() -> NotifyConfig {
        let secret = |s: &str| Secret::new(s.to_string());
        let headers = BTreeMap::from([("Authorization".to_string(), secret("Bearer tok-hdr"))]);
        let env = BTreeMap::from([("TOKEN".to_string(), secret("tok-env"))]);
        NotifyConfig {
            receivers: vec![
                receiver(
                    "slack",
                    ReceiverKind::Slack(SlackConfig {
                        url: secret("https://hooks.slack.com/services/T0/B0/tok-slack"),
                    }),
                ),
                receiver(
                    "pd",
                    ReceiverKind::PagerDuty(PagerDutyConfig {
                        routing_key: secret("tok-pd"),
                        url: "https://events.pagerduty.com/v2/enqueue".into(),
                        webhook_secret: None,
                    }),
                ),
                receiver(
                    "am",
                    ReceiverKind::Alertmanager(AlertmanagerConfig {
                        url: "http://user:tok-am@127.0.0.1:9093/".into(),
                        resend: Duration::from_secs(60),
                    }),
                ),
                receiver(
                    "hook",
                    ReceiverKind::Webhook(WebhookConfig {
                        url: secret("http://127.0.0.1:9000/hook?token=tok-url"),
                        secret: Some(secret("tok-hmac")),
                        headers,
                    }),
                ),
                receiver(
                    "page",
                    ReceiverKind::Exec(ExecConfig {
                        argv: vec!["/usr/bin/page".into(), "--key=tok-argv".into()],
                        env,
                        timeout: Duration::from_secs(10),
                    }),
                ),
            ],
            routes: vec![Route {
                matchers: BTreeMap::from([("severity".to_string(), "P0".to_string())]),
                receivers: vec!["slack".into(), "pd".into()],
                wait: Duration::from_secs(30),
            }],
            escalation: vec![Tier {
                after: Duration::from_secs(300),
                who: "service owner + SRE lead".into(),
                receivers: vec![],
            }],
            ..NotifyConfig::default()
        }
    }

    #[test]
    fn list_names_every_receiver_and_shows_no_secret() {
        let out = list(&config());
        assert!(!out.contains("tok-"), "a secret leaked:\n{out}");
        for want in [
            "slack                slack         https://hooks.slack.com/<secret>",
            "pd                   pagerduty     https://events.pagerduty.com/v2/enqueue (routing key <secret>)",
            "http://user:<secret>@127.0.0.1:9093/api/v2/alerts (resent every 1m)",
            "http://127.0.0.1:9000/<secret> (signed) (headers Authorization)",
            "/usr/bin/page with 1 argument(s), bounded by 10s (env TOKEN)",
            "1. severity=P0 → slack, pd (declared after 30s)",
            "tier 1: after 5m       service owner + SRE lead → the route's receivers",
            "updates every 5m",
        ] {
            assert!(out.contains(want), "missing {want:?} in:\n{out}");
        }
    }

    #[test]
    fn an_unknown_receiver_lists_the_configured_names() {
        let msg = unknown_receiver(&config(), "oncall");
        assert_eq!(
            msg,
            "no receiver `oncall`; the config has: slack, pd, am, hook, page"
        );
        let none = unknown_receiver(&NotifyConfig::default(), "oncall");
        assert!(none.contains("has no receivers"), "{none}");
    }
}
