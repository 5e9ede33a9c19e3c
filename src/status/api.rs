//! The status page in Statuspage's JSON shapes (`/api/v2/summary.json`, `status.json`,
//! `components.json`, `incidents.json`, `incidents/unresolved.json`,
//! `scheduled-maintenances.json`), so clients written for Statuspage read watchfire as they
//! stand. Ids are strings as Statuspage's are: a component's is its name, an incident's its
//! number, a maintenance window's its source and start.

use serde::Serialize;

use super::model::{window_status, ComponentView, IncidentView, View};
use super::rfc3339;
use crate::store::model::Window;

/// The page's id in every object's `page_id`.
pub const PAGE_ID: &str = "watchfire";

/// `page`.
#[derive(Debug, Serialize)]
pub struct Page {
    /// Always [`PAGE_ID`].
    pub id: &'static str,
    /// The page's title.
    pub name: String,
    /// The public URL of the page (`status_page.url`), empty when not set.
    pub url: String,
    /// Times are UTC.
    pub time_zone: &'static str,
    /// When this answer was made.
    pub updated_at: String,
}

/// `status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `none`, `minor`, `major` or `critical`.
    pub indicator: &'static str,
    /// Words for people.
    pub description: &'static str,
}

/// One entry of `components`: a component, or a group of them (`group: true`).
#[derive(Debug, Serialize)]
pub struct Component {
    /// Its name.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `operational`, `degraded_performance`, `partial_outage`, `major_outage` or
    /// `under_maintenance`.
    pub status: &'static str,
    /// The first day of the history shown.
    pub created_at: String,
    /// When this answer was made.
    pub updated_at: String,
    /// 1-based order on the page.
    pub position: usize,
    /// A line under the name.
    pub description: Option<String>,
    /// Shown on the page.
    pub showcase: bool,
    /// Not tracked.
    pub start_date: Option<String>,
    /// The group it belongs to.
    pub group_id: Option<String>,
    /// Always [`PAGE_ID`].
    pub page_id: &'static str,
    /// True for a group of components.
    pub group: bool,
    /// Always false.
    pub only_show_if_degraded: bool,
    /// A group's members' ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
    /// Uptime over the days shown, percent (a watchfire addition; read in `components.json`,
    /// null in the documents that do not read the history).
    pub uptime_percent: Option<f64>,
}

/// One entry of an incident's `incident_updates`.
#[derive(Debug, Serialize)]
pub struct Update {
    /// Its number.
    pub id: String,
    /// The status it set.
    pub status: &'static str,
    /// The message.
    pub body: String,
    /// The incident's id.
    pub incident_id: String,
    /// When.
    pub created_at: String,
    /// When.
    pub updated_at: String,
    /// When.
    pub display_at: String,
    /// Not tracked per update.
    pub affected_components: Option<Vec<String>>,
    /// Always true.
    pub deliver_notifications: bool,
    /// Not used.
    pub custom_tweet: Option<String>,
    /// Not used.
    pub tweet_id: Option<String>,
    /// Written by watchfire rather than a person (a watchfire addition).
    pub automatic: bool,
}

/// An incident, or a scheduled maintenance (with `scheduled_for` and `scheduled_until`).
#[derive(Debug, Serialize)]
pub struct Incident {
    /// Its id.
    pub id: String,
    /// Title.
    pub name: String,
    /// `investigating`, `identified`, `monitoring`, `resolved`; for maintenance `scheduled`,
    /// `in_progress`, `completed`.
    pub status: &'static str,
    /// When it began.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it went to `monitoring`.
    pub monitoring_at: Option<String>,
    /// When it was resolved (a maintenance: completed).
    pub resolved_at: Option<String>,
    /// `none`, `minor`, `major`, `critical`; `maintenance` for maintenance.
    pub impact: &'static str,
    /// Its page.
    pub shortlink: String,
    /// When it began.
    pub started_at: String,
    /// Always [`PAGE_ID`].
    pub page_id: &'static str,
    /// Timeline, newest first.
    pub incident_updates: Vec<Update>,
    /// The components concerned.
    pub components: Vec<Component>,
    /// A maintenance window's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    /// A maintenance window's end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<String>,
}

/// `/api/v2/summary.json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The page.
    pub page: Page,
    /// Components and groups.
    pub components: Vec<Component>,
    /// Unresolved incidents.
    pub incidents: Vec<Incident>,
    /// Maintenance in progress or to come.
    pub scheduled_maintenances: Vec<Incident>,
    /// The page's indicator.
    pub status: Status,
}

/// `/api/v2/status.json`.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    /// The page.
    pub page: Page,
    /// The page's indicator.
    pub status: Status,
}

/// `/api/v2/components.json`.
#[derive(Debug, Serialize)]
pub struct ComponentsDoc {
    /// The page.
    pub page: Page,
    /// Components and groups.
    pub components: Vec<Component>,
}

/// `/api/v2/incidents.json` and `/api/v2/incidents/unresolved.json`.
#[derive(Debug, Serialize)]
pub struct IncidentsDoc {
    /// The page.
    pub page: Page,
    /// Incidents, newest first.
    pub incidents: Vec<Incident>,
}

/// `/api/v2/scheduled-maintenances.json`.
#[derive(Debug, Serialize)]
pub struct MaintenancesDoc {
    /// The page.
    pub page: Page,
    /// Maintenance windows, by start.
    pub scheduled_maintenances: Vec<Incident>,
}

/// `page`.
pub fn page(v: &View) -> Page {
    Page {
        id: PAGE_ID,
        name: v.page.title.clone(),
        url: v.page.url.clone().unwrap_or_default(),
        time_zone: "Etc/UTC",
        updated_at: rfc3339(v.now),
    }
}

/// `status`.
pub fn status(v: &View) -> Status {
    let i = v.indicator();
    Status {
        indicator: i.indicator,
        description: i.description,
    }
}

/// The component at 1-based `position` among the components then the groups.
fn component(v: &View, c: &ComponentView, position: usize) -> Component {
    let is_group = position > v.components.len();
    Component {
        id: c.name.clone(),
        name: c.name.clone(),
        status: c.state.as_str(),
        created_at: rfc3339(super::model::first_day(v.now)),
        updated_at: rfc3339(v.now),
        position,
        description: c.description.clone(),
        showcase: true,
        start_date: None,
        group_id: c.group.map(|g| v.groups[g].name.clone()),
        page_id: PAGE_ID,
        group: is_group,
        only_show_if_degraded: false,
        components: is_group.then(|| {
            c.members
                .iter()
                .map(|&m| v.components[m].name.clone())
                .collect()
        }),
        uptime_percent: c.uptime.map(|u| (u * 1e5).round() / 1e3),
    }
}

/// Every component, then every group.
pub fn components(v: &View) -> Vec<Component> {
    v.components
        .iter()
        .chain(&v.groups)
        .enumerate()
        .map(|(i, c)| component(v, c, i + 1))
        .collect()
}

fn shortlink(v: &View, path: &str) -> String {
    format!("{}{path}", v.page.url.as_deref().unwrap_or(""))
}

/// One incident in Statuspage's shape.
pub fn incident(v: &View, i: &IncidentView) -> Incident {
    let inc = &i.incident;
    let id = inc.id.to_string();
    let updated = i.updates.first().map(|u| u.at).unwrap_or(inc.started);
    let monitoring = i
        .updates
        .iter()
        .rev()
        .find(|u| u.status == crate::store::IncidentStatus::Monitoring)
        .map(|u| rfc3339(u.at));
    let components = v
        .components
        .iter()
        .enumerate()
        .filter(|(_, c)| i.components.contains(&c.name))
        .map(|(n, c)| component(v, c, n + 1))
        .collect();
    Incident {
        shortlink: shortlink(v, &format!("/status/incidents/{id}")),
        incident_updates: i
            .updates
            .iter()
            .map(|u| {
                let at = rfc3339(u.at);
                Update {
                    id: u.id.to_string(),
                    status: u.status.as_str(),
                    body: u.message.clone(),
                    incident_id: id.clone(),
                    created_at: at.clone(),
                    updated_at: at.clone(),
                    display_at: at,
                    affected_components: None,
                    deliver_notifications: true,
                    custom_tweet: None,
                    tweet_id: None,
                    automatic: u.automatic,
                }
            })
            .collect(),
        id,
        name: inc.title.clone(),
        status: inc.status.as_str(),
        created_at: rfc3339(inc.started),
        updated_at: rfc3339(updated),
        monitoring_at: monitoring,
        resolved_at: inc.resolved.map(rfc3339),
        impact: inc.impact.as_str(),
        started_at: rfc3339(inc.started),
        page_id: PAGE_ID,
        components,
        scheduled_for: None,
        scheduled_until: None,
    }
}

/// A maintenance window's id: where it was defined and its start.
pub fn window_id(w: &Window) -> String {
    format!("{}-{}", w.source, w.start)
}

/// One maintenance window in Statuspage's shape.
pub fn maintenance(v: &View, w: &Window) -> Incident {
    let status = window_status(w, v.now);
    let components = v
        .components
        .iter()
        .enumerate()
        .filter(|(_, c)| w.components.is_empty() || w.components.contains(&c.name))
        .map(|(n, c)| component(v, c, n + 1))
        .collect();
    Incident {
        id: window_id(w),
        name: w.name.clone(),
        status,
        created_at: rfc3339(w.start),
        updated_at: rfc3339(v.now.min(w.end).max(w.start)),
        monitoring_at: None,
        resolved_at: (status == "completed").then(|| rfc3339(w.end)),
        impact: "maintenance",
        shortlink: shortlink(v, "/status"),
        started_at: rfc3339(w.start),
        page_id: PAGE_ID,
        incident_updates: Vec::new(),
        components,
        scheduled_for: Some(rfc3339(w.start)),
        scheduled_until: Some(rfc3339(w.end)),
    }
}

/// `/api/v2/summary.json`.
pub fn summary(v: &View) -> Summary {
    Summary {
        page: page(v),
        components: components(v),
        incidents: v.active_incidents().map(|i| incident(v, i)).collect(),
        scheduled_maintenances: v.scheduled_windows().map(|w| maintenance(v, w)).collect(),
        status: status(v),
    }
}

/// `/api/v2/incidents.json` (`unresolved`: only open ones).
pub fn incidents(v: &View, unresolved: bool) -> IncidentsDoc {
    IncidentsDoc {
        page: page(v),
        incidents: v
            .incidents
            .iter()
            .filter(|i| !unresolved || i.incident.resolved.is_none())
            .map(|i| incident(v, i))
            .collect(),
    }
}

/// `/api/v2/scheduled-maintenances.json`: every window around now, or only those of `status`
/// (`scheduled` for `upcoming.json`, `in_progress` for `active.json`).
pub fn maintenances(v: &View, status: Option<&str>) -> MaintenancesDoc {
    MaintenancesDoc {
        page: page(v),
        scheduled_maintenances: v
            .windows
            .iter()
            .filter(|w| status.is_none_or(|s| window_status(w, v.now) == s))
            .map(|w| maintenance(v, w))
            .collect(),
    }
}
