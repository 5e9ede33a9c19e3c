//! Incidents and maintenance windows as the API shows them (and the CLI reads them back): times
//! in RFC 3339, figures as a JSON object, the timeline inline.

use serde::{Deserialize, Serialize};

use super::figures::human;
use crate::store::{Incident, IncidentUpdate, Maintenance, Millis};

/// RFC 3339 (UTC, milliseconds) of `at`.
pub fn rfc3339(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateView {
    /// Id.
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Status it set.
    pub status: String,
    /// Message.
    pub message: String,
    /// Written by watchfire.
    pub automatic: bool,
    /// What a watchfire entry records (`detected`, `also_down`, `down_again`,
    /// `traffic_moved`, `none_up`, `recovered`, `acknowledged`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    /// Id.
    pub id: i64,
    /// Component.
    pub component: String,
    /// Title.
    pub title: String,
    /// `investigating`, `identified`, `monitoring` or `resolved`.
    pub status: String,
    /// `none`, `minor`, `major` or `critical`.
    pub impact: String,
    /// When it began (RFC 3339).
    pub started: String,
    /// When it was resolved.
    pub resolved: Option<String>,
    /// Targets that failed in it.
    pub targets: Vec<String>,
    /// Began inside a maintenance window.
    pub in_maintenance: bool,
    /// The figures at resolution ([`super::figures`]).
    pub figures: Option<serde_json::Value>,
    /// When a person acknowledged it (RFC 3339); null until then.
    #[serde(default)]
    pub acknowledged: Option<String>,
    /// The root cause, when someone gave it.
    #[serde(default)]
    pub root_cause: Option<String>,
    /// What fixed it, when someone said.
    #[serde(default)]
    pub resolution: Option<String>,
    /// The timeline, oldest first.
    pub updates: Vec<UpdateView>,
}

impl IncidentView {
    /// The view of `i` with those of `updates` that belong to it.
    pub fn new(i: &Incident, updates: &[IncidentUpdate]) -> IncidentView {
        IncidentView {
            id: i.id,
            component: i.component.clone(),
            title: i.title.clone(),
            status: i.status.as_str().to_string(),
            impact: i.impact.as_str().to_string(),
            started: rfc3339(i.started),
            resolved: i.resolved.map(rfc3339),
            targets: i.targets.clone(),
            in_maintenance: i.in_maintenance,
            figures: i
                .figures
                .as_deref()
                .and_then(|f| serde_json::from_str(f).ok()),
            acknowledged: i.acknowledged.map(rfc3339),
            root_cause: i.root_cause.clone(),
            resolution: i.resolution.clone(),
            updates: updates
                .iter()
                .filter(|u| u.incident == i.id)
                .map(|u| UpdateView {
                    id: u.id,
                    at: rfc3339(u.at),
                    status: u.status.as_str().to_string(),
                    message: u.message.clone(),
                    automatic: u.automatic,
                    kind: u.kind.map(|k| k.as_str().to_string()),
                })
                .collect(),
        }
    }

    /// The incident and its timeline for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "#{} {} [{}, impact {}]\n  component: {}\n  started:   {}\n",
            self.id, self.title, self.status, self.impact, self.component, self.started
        );
        if let Some(r) = &self.resolved {
            out.push_str(&format!("  resolved:  {r}\n"));
        }
        if !self.targets.is_empty() {
            out.push_str(&format!("  targets:   {}\n", self.targets.join(", ")));
        }
        if let Some(a) = &self.acknowledged {
            out.push_str(&format!("  acknowledged: {a}\n"));
        }
        if self.in_maintenance {
            out.push_str("  began inside a maintenance window\n");
        }
        if let Some(c) = &self.root_cause {
            out.push_str(&format!("  root cause: {c}\n"));
        }
        if let Some(r) = &self.resolution {
            out.push_str(&format!("  resolution: {r}\n"));
        }
        if let Some(f) = &self.figures {
            out.push_str(&render_figures(f));
        }
        out.push_str("  timeline:\n");
        for u in &self.updates {
            let who = if u.automatic { "watchfire" } else { "person" };
            out.push_str(&format!(
                "    {}  {:<13} {:<9} {}\n",
                u.at, u.status, who, u.message
            ));
        }
        out
    }

    /// One line for a list.
    pub fn line(&self) -> String {
        format!(
            "#{:<5} {:<13} {:<8} {:<24} {}  {}",
            self.id, self.status, self.impact, self.component, self.started, self.title
        )
    }
}

fn render_figures(f: &serde_json::Value) -> String {
    let num = |k: &str| f.get(k).and_then(|v| v.as_f64());
    let mut out = String::from("  figures:\n");
    if let Some(d) = num("duration_seconds") {
        out.push_str(&format!(
            "    duration {} (downtime outside maintenance {})\n",
            human((d * 1000.0) as i64),
            human((num("downtime_seconds").unwrap_or(d) * 1000.0) as i64)
        ));
    }
    if let Some(p) = num("failed_probes") {
        out.push_str(&format!("    failed probes {p}\n"));
    }
    if let (Some(a), Some(b)) = (num("failed_proxied_requests"), num("proxied_requests")) {
        out.push_str(&format!("    failed proxied requests {a} of {b}\n"));
    }
    if let (Some(e), Some(r)) = (num("estimated_failed_requests"), num("request_rate")) {
        out.push_str(&format!(
            "    estimated failed user requests {e:.0} ({r:.2} req/s × duration)\n"
        ));
    }
    if let (Some(c), Some(s)) = (num("error_budget_consumed_percent"), num("slo_percent")) {
        out.push_str(&format!("    error budget consumed {c:.2}% (SLO {s}%)\n"));
    }
    out
}

/// One maintenance window as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceView {
    /// Id, for API-made windows (null for config ones).
    pub id: Option<i64>,
    /// Title.
    pub name: String,
    /// Covered names (empty: all).
    pub components: Vec<String>,
    /// First start (RFC 3339).
    pub start: String,
    /// First end.
    pub end: String,
    /// Recurrence.
    pub every: Option<String>,
    /// Time zone.
    pub tz: String,
    /// `config` or `api`.
    pub source: String,
    /// The next occurrence that has not ended: (start, end), RFC 3339.
    pub next: Option<(String, String)>,
}

impl MaintenanceView {
    /// The view of a window made through the API.
    pub fn stored(m: &Maintenance, next: Option<(Millis, Millis)>) -> MaintenanceView {
        MaintenanceView {
            id: Some(m.id),
            name: m.name.clone(),
            components: m.components.clone(),
            start: rfc3339(m.start),
            end: rfc3339(m.end),
            every: m.every.clone(),
            tz: m.tz.clone(),
            source: "api".into(),
            next: next.map(|(s, e)| (rfc3339(s), rfc3339(e))),
        }
    }

    /// The view of a window from the config.
    pub fn config(w: &super::maintenance::WindowSpec, now: Millis) -> MaintenanceView {
        let start = super::maintenance::millis(&w.start);
        let every = w.every.as_ref().map(|e| match e {
            super::maintenance::Every::Days(n) => format!("{n} days"),
            super::maintenance::Every::Weekdays(d) => super::maintenance::weekday_list(d),
        });
        MaintenanceView {
            id: None,
            name: w.name.clone(),
            components: w.components.clone(),
            start: rfc3339(start),
            end: rfc3339(start + w.length),
            every,
            tz: w.start.time_zone().iana_name().unwrap_or("UTC").to_string(),
            source: "config".into(),
            next: next(w, now).map(|(s, e)| (rfc3339(s), rfc3339(e))),
        }
    }

    /// One line for a list.
    pub fn line(&self) -> String {
        let id = self.id.map_or("config".to_string(), |i| format!("#{i}"));
        let every = self.every.as_deref().unwrap_or("once");
        let next = self
            .next
            .as_ref()
            .map_or("none".to_string(), |(s, e)| format!("{s} – {e}"));
        let comps = if self.components.is_empty() {
            "all".to_string()
        } else {
            self.components.join(",")
        };
        format!(
            "{id:<7} {:<24} {comps:<24} every {every:<16} {} next {next}",
            self.name, self.tz
        )
    }
}

/// The first occurrence of `w` that has not ended at `now` (looking a year ahead).
pub fn next(w: &super::maintenance::WindowSpec, now: Millis) -> Option<(Millis, Millis)> {
    w.occurrences(now, now + 366 * 86_400_000)
        .into_iter()
        .next()
}
