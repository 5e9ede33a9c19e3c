//! `verify --incident ID`: the verdict posted as an update on an incident of a running
//! watchfire, through its API (`POST /api/v1/incidents/ID/updates`), so the incident's
//! timeline, its receivers and its RESOLVED message carry it.
//!
//! The message is `verify: PASS — <figures>` or `verify: FAIL — <what failed>` (the notifier
//! reads the `verify:` prefix). A PASS also moves the incident to `monitoring` unless it is
//! there or further already; a FAIL leaves the status as it is. The incident is looked up
//! before the window starts, so a wrong id or an unreachable API costs nothing.

use std::fmt::Write as _;

use crate::incident::client::{ApiClient, ApiError, DEFAULT_URL, NO_BODY};
use crate::incident::manual::{UpdateInput, MAX_TEXT};
use crate::incident::view::IncidentView;

use super::human;
use super::report::VerifyReport;
use super::VerifyError;

/// The prefix of the update's message; the notifier recognises a verdict by it.
pub const PREFIX: &str = "verify: ";

/// `verify` flags for posting the verdict on an incident.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Incident")]
pub struct IncidentArgs {
    /// Post the verdict as an update on this incident of the watchfire at --url
    /// (`verify: PASS — figures` or `verify: FAIL — what failed`; a PASS moves the incident
    /// to monitoring unless it is further). The incident is looked up before the window
    /// starts (exit 2 if it cannot be). A verdict that cannot be posted is reported; after a
    /// PASS that exits 3, after a FAIL the exit stays 1.
    #[arg(long, value_name = "ID")]
    pub incident: Option<i64>,
    /// Base URL of the running watchfire whose incident --incident names.
    #[arg(long = "url", value_name = "URL", default_value = DEFAULT_URL)]
    pub api_url: String,
    /// Basic-auth user for --url (password from the WATCHFIRE_PASSWORD environment variable).
    #[arg(long = "web.user", value_name = "USER")]
    pub user: Option<String>,
    /// The password for --web.user.
    #[arg(long, env = "WATCHFIRE_PASSWORD", hide_env_values = true, hide = true)]
    pub password: Option<String>,
}

/// Where the verdict goes: the incident, found before the window.
pub struct Poster {
    client: ApiClient,
    id: i64,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").field("id", &self.id).finish()
    }
}

impl Poster {
    /// The incident the verdict is posted on.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Posts the verdict of `r`; the incident as it is after the update.
    pub async fn post(&self, r: &VerifyReport) -> anyhow::Result<IncidentView> {
        let path = format!("/api/v1/incidents/{}", self.id);
        let (now, _): (IncidentView, _) = self
            .client
            .call(reqwest::Method::GET, &path, NO_BODY)
            .await?;
        let body = UpdateInput {
            status: status_after(r, &now.status).map(str::to_string),
            message: message(r),
            ..UpdateInput::default()
        };
        let (v, _) = self
            .client
            .call(
                reqwest::Method::POST,
                &format!("{path}/updates"),
                Some(&body),
            )
            .await?;
        Ok(v)
    }
}

/// The incident `a` names, looked up now; none without `--incident`.
pub async fn prepare(a: &IncidentArgs) -> Result<Option<Poster>, VerifyError> {
    let Some(id) = a.incident else {
        return Ok(None);
    };
    let usage = |e: ApiError| VerifyError::Usage(format!("--incident {id}: {}", chain(&e)));
    let client = ApiClient::new(&a.api_url, a.user.clone(), a.password.clone()).map_err(usage)?;
    let path = format!("/api/v1/incidents/{id}");
    let (found, _): (IncidentView, _) = client
        .call(reqwest::Method::GET, &path, NO_BODY)
        .await
        .map_err(usage)?;
    if found.status == "resolved" {
        return Err(VerifyError::Usage(format!(
            "--incident {id}: the incident is resolved already; it takes no more updates"
        )));
    }
    Ok(Some(Poster { client, id }))
}

/// `e` and its sources, as `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The status a verdict sets on an incident whose status is `now`: `monitoring` after a PASS
/// while still investigating or identified; none otherwise.
pub fn status_after(r: &VerifyReport, now: &str) -> Option<&'static str> {
    (r.passed() && matches!(now, "investigating" | "identified")).then_some("monitoring")
}

/// The update's message: `verify: PASS — figures` or `verify: FAIL — what failed`, within the
/// API's bound on a message.
pub fn message(r: &VerifyReport) -> String {
    let probes: u64 = r.targets.iter().map(|t| t.probes).sum();
    let n = r.targets.len();
    let mut s = format!("{PREFIX}{} — ", r.verdict);
    let shown: Vec<_> = r
        .checks
        .iter()
        .filter(|c| match r.passed() {
            true => c.status == "pass",
            false => c.status == "fail",
        })
        .collect();
    for (i, c) in shown.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        let _ = write!(s, "{sep}{}: {}", c.name, c.summary);
    }
    if shown.is_empty() {
        s.push_str(if r.passed() {
            "every check passed"
        } else {
            "no check passed"
        });
    }
    let _ = write!(
        s,
        " ({n} target{}, {probes} probes over {}",
        if n == 1 { "" } else { "s" },
        human::secs(r.elapsed_seconds)
    );
    if let Some(why) = &r.stopped_early {
        let _ = write!(s, ", stopped early: {why}");
    }
    s.push(')');
    truncate(s)
}

/// `s` cut to the API's bound on a message, at a character boundary, marked with `…`.
fn truncate(mut s: String) -> String {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::report::CheckReport;

    fn check(name: &str, status: &str, summary: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            status: status.into(),
            figure: None,
            limit: None,
            unit: "ratio".into(),
            target: None,
            summary: summary.into(),
        }
    }

    fn report(verdict: &str, checks: Vec<CheckReport>) -> VerifyReport {
        VerifyReport {
            schema_version: 1,
            watchfire_version: "test".into(),
            verdict: verdict.into(),
            started_at: String::new(),
            ended_at: String::new(),
            window_seconds: 600.0,
            elapsed_seconds: 600.0,
            interval_seconds: 1.0,
            stopped_early: None,
            stopped_by: None,
            failed_checks: Vec::new(),
            checks,
            targets: Vec::new(),
            downtime_seconds: 0.0,
            memory: None,
            impact: None,
        }
    }

    #[test]
    fn a_pass_names_the_figures_of_the_passed_checks() {
        let r = report(
            "PASS",
            vec![
                check("error_rate", "pass", "0.00% (limit 1.00%)"),
                check("latency_p99", "skip", "no bound"),
                check("flaps", "pass", "0 (limit 0)"),
            ],
        );
        assert_eq!(
            message(&r),
            "verify: PASS — error_rate: 0.00% (limit 1.00%); flaps: 0 (limit 0) \
             (0 targets, 0 probes over 10m)"
        );
        assert_eq!(status_after(&r, "identified"), Some("monitoring"));
        assert_eq!(status_after(&r, "monitoring"), None);
    }

    #[test]
    fn a_fail_names_what_failed_and_keeps_the_status() {
        let mut r = report(
            "FAIL",
            vec![
                check("error_rate", "fail", "4.20% (limit 1.00%) on primary"),
                check("flaps", "pass", "0"),
            ],
        );
        r.stopped_early = Some("fail_fast".into());
        let m = message(&r);
        assert!(
            m.starts_with("verify: FAIL — error_rate: 4.20% (limit 1.00%) on primary ("),
            "{m}"
        );
        assert!(m.ends_with("stopped early: fail_fast)"), "{m}");
        assert_eq!(status_after(&r, "investigating"), None);
    }

    #[test]
    fn a_long_message_is_cut_to_the_apis_bound() {
        let long = "é".repeat(MAX_TEXT);
        let r = report("FAIL", vec![check("data", "fail", &long)]);
        let m = message(&r);
        assert!(m.len() <= MAX_TEXT && m.ends_with('…'), "{}", m.len());
    }
}
