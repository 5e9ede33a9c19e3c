//! A status page with history for the status tests: a config with two components in a group,
//! 90 days of day rollups (a minor day, a major day, a maintenance day), an open incident with
//! its timeline, a resolved one, and a maintenance window in progress.

#![allow(dead_code)]

use std::sync::Arc;

use watchfire::runtime::Runtime;
use watchfire::store::model::Window;
use watchfire::store::{
    Impact, Incident, IncidentStatus, IncidentUpdate, MaintenanceCalendar, Millis, Rollup, Write,
};

/// The config: `api` and `db` on a closed loopback port (probed once an hour), shown as the
/// components `API` and `Database` in the group `Backend`.
pub const YAML: &str = "targets:
  - name: api
    url: http://127.0.0.1:9/health
    interval: 1h
  - name: db
    url: http://127.0.0.1:9/db
    interval: 1h
status_page:
  title: Acme status
  description: Everything Acme runs
  components:
    - name: API
      description: The public API
      targets: [api]
    - name: Database
      targets: [db]
  groups:
    - name: Backend
      components: [API, Database]
";

/// The open incident's title.
pub const OPEN_TITLE: &str = "API answers with errors";
/// The maintenance window's name.
pub const WINDOW: &str = "Database upgrade";
const DAY: Millis = 86_400_000;

/// Fixed maintenance windows.
pub struct Calendar(pub Vec<Window>);

impl MaintenanceCalendar for Calendar {
    fn covered(&self, name: &str, from: Millis, to: Millis) -> i64 {
        self.0
            .iter()
            .filter(|w| w.components.is_empty() || w.components.iter().any(|c| c == name))
            .map(|w| (w.end.min(to) - w.start.max(from)).max(0))
            .sum()
    }

    fn windows(&self, from: Millis, to: Millis) -> Vec<Window> {
        self.0
            .iter()
            .filter(|w| w.start < to && w.end > from)
            .cloned()
            .collect()
    }
}

/// One day's rollup of `target`.
pub fn day(target: &str, start: Millis, down_ms: i64, maintenance_ms: i64) -> Rollup {
    Rollup {
        target: target.into(),
        start,
        probes: 5760,
        failures: (down_ms / 15_000) as u64,
        down_ms,
        maintenance_ms,
        ..Rollup::default()
    }
}

/// Fills `rt`'s store and calendar as the module doc says; returns the open incident's id.
pub async fn fill(rt: &Arc<Runtime>, now: Millis) -> i64 {
    let store = rt.store();
    let today = now - now.rem_euclid(DAY);
    for n in 0..90 {
        let start = today - n * DAY;
        let (api_down, db_maint) = match n {
            3 => (600_000, 0),
            10 => (5_400_000, 0),
            20 => (0, 7_200_000),
            _ => (0, 0),
        };
        store.write(Write::Minute(day("api", start, api_down, 0)));
        store.write(Write::Minute(day("db", start, 0, db_maint)));
    }
    let open = store
        .open_incident(&Incident {
            id: 0,
            component: "api".into(),
            title: OPEN_TITLE.into(),
            status: IncidentStatus::Identified,
            impact: Impact::Major,
            started: now - 1_800_000,
            resolved: None,
            targets: vec!["api".into()],
            in_maintenance: false,
            figures: None,
            acknowledged: None,
            root_cause: None,
            resolution: None,
        })
        .await
        .expect("open incident");
    for (at, status, message, automatic) in [
        (
            now - 1_800_000,
            IncidentStatus::Investigating,
            "api is down: connection refused",
            true,
        ),
        (
            now - 600_000,
            IncidentStatus::Identified,
            "A bad deploy; rolling back",
            false,
        ),
    ] {
        store
            .add_update(&IncidentUpdate {
                id: 0,
                incident: open,
                at,
                status,
                message: message.into(),
                automatic,
                kind: None,
            })
            .await
            .expect("update");
    }
    let resolved = store
        .open_incident(&Incident {
            id: 0,
            component: "Database".into(),
            title: "Database slow".into(),
            status: IncidentStatus::Resolved,
            impact: Impact::Minor,
            started: today - DAY + 3_600_000,
            resolved: Some(today - DAY + 5_400_000),
            targets: vec!["db".into()],
            in_maintenance: false,
            figures: Some(r#"{"duration_seconds": 1800, "failed_probes": 120}"#.into()),
            acknowledged: None,
            root_cause: None,
            resolution: None,
        })
        .await
        .expect("resolved incident");
    store
        .add_update(&IncidentUpdate {
            id: 0,
            incident: resolved,
            at: today - DAY + 5_400_000,
            status: IncidentStatus::Resolved,
            message: "Recovered".into(),
            automatic: true,
            kind: None,
        })
        .await
        .expect("update");
    rt.set_calendar(Arc::new(Calendar(vec![Window {
        name: WINDOW.into(),
        components: vec!["Database".into()],
        start: now - 600_000,
        end: now + 3_000_000,
        source: "config".into(),
    }])));
    open
}
