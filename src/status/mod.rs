//! The status page and its machine-readable views: `/status` and one page per incident
//! ([`html`]), Statuspage-shaped JSON ([`api`]), an Atom feed ([`feed`]) and badges
//! ([`badge`]).
//!
//! Every view is rendered from one [`model::View`], built from the runtime's live state and a
//! fixed number of store queries per page, whatever the number of components: today's day
//! rollups of every target and of every failover group (two queries; the past 90 days come
//! from the store's cached read), two incident queries (open ones and recent ones), one query
//! for all their updates, and one call to the maintenance calendar. [`QUERIES_PER_VIEW`] says
//! how many.

pub mod api;
pub mod badge;
pub mod feed;
pub mod html;
pub mod model;

use std::collections::HashMap;

use crate::config::status_page::StatusPage;
use crate::runtime::Runtime;
use crate::store::{IncidentQuery, Level, Millis, StoreError};

pub use model::{State, View};

/// Store queries made to build a [`View`] with history: today's day rollups of the targets and
/// of the failover groups (the past days' come through the store's cached read,
/// [`crate::store::Store::completed_days`]: two more queries at most once a minute), open
/// incidents, recent incidents, their updates (the maintenance calendar is asked once more,
/// in memory). Without history ([`History::Skip`]) the rollup queries are not made.
pub const QUERIES_PER_VIEW: usize = 5;

/// The rollup queries among [`QUERIES_PER_VIEW`] (not made without history).
pub const ROLLUP_QUERIES_PER_VIEW: usize = 2;

/// Whether a view needs the 90 days of history (the page, the badges and `components.json`
/// do; the summary, status, incident and maintenance documents do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// Query the day rollups.
    Read,
    /// Leave the days empty.
    Skip,
}

/// How far ahead scheduled maintenance is listed.
pub const MAINTENANCE_AHEAD_MS: Millis = 30 * model::DAY_MS;
/// How far back completed maintenance is listed.
pub const MAINTENANCE_BEHIND_MS: Millis = 7 * model::DAY_MS;

/// The live state of the runtime's targets and failover groups.
pub fn live(rt: &Runtime) -> model::Live {
    let targets = rt
        .targets()
        .iter()
        .map(|t| {
            let health = t.stats.lock().expect("stats lock poisoned").state.health;
            (t.spec.name.clone(), health)
        })
        .collect();
    let groups = rt
        .failover_groups()
        .iter()
        .map(|g| {
            let instances = (0..g.cfg.instances.len()).map(|i| g.health(i)).collect();
            let live = model::GroupLive {
                active: g.active(),
                instances,
            };
            (g.cfg.name.clone(), live)
        })
        .collect::<HashMap<_, _>>();
    model::Live { targets, groups }
}

/// Gathers the inputs of a view at `now`: [`QUERIES_PER_VIEW`] store queries
/// ([`ROLLUP_QUERIES_PER_VIEW`] fewer without history) and one calendar call.
pub async fn inputs(
    rt: &Runtime,
    now: Millis,
    history: History,
) -> Result<model::Inputs, StoreError> {
    let page = StatusPage::effective(&rt.config());
    let store = rt.store();
    let first = model::first_day(now);
    // Whole past days come from the store's cached read; today's row is read fresh.
    let today = model::day_start(now);
    let (past, rollups, group_rollups) = match history {
        History::Read => (
            store.completed_days(first, today).await?,
            store
                .rollups(Level::Day, today, now + model::DAY_MS, None)
                .await?,
            store
                .group_rollups(Level::Day, today, now + model::DAY_MS, None)
                .await?,
        ),
        History::Skip => Default::default(),
    };
    let mut incidents = store
        .incidents(&IncidentQuery {
            open_only: true,
            ..IncidentQuery::default()
        })
        .await?;
    let since = model::day_start(now) - (model::PAST_DAYS as i64 - 1) * model::DAY_MS;
    incidents.extend(
        store
            .incidents(&IncidentQuery {
                since: Some(since),
                ..IncidentQuery::default()
            })
            .await?,
    );
    incidents.sort_by_key(|i| i.id);
    incidents.dedup_by_key(|i| i.id);
    let ids: Vec<i64> = incidents.iter().map(|i| i.id).collect();
    let updates = store.updates(&ids).await?;
    let windows = rt
        .calendar()
        .windows(now - MAINTENANCE_BEHIND_MS, now + MAINTENANCE_AHEAD_MS);
    Ok(model::Inputs {
        page,
        now,
        live: live(rt),
        past,
        rollups,
        group_rollups,
        incidents,
        updates,
        windows,
    })
}

/// The view of the page at `now`.
pub async fn view(rt: &Runtime, now: Millis, history: History) -> Result<View, StoreError> {
    let mut v = model::build(inputs(rt, now, history).await?);
    v.locations = locations(rt);
    Ok(v)
}

/// Cluster mode's locations as the quorum sees them now (none outside cluster mode).
pub fn locations(rt: &Runtime) -> Vec<model::LocationRow> {
    let Some(s) = rt.quorum().snapshot() else {
        return Vec::new();
    };
    s.verdicts
        .locations
        .values()
        .map(|l| model::LocationRow {
            name: l.name.clone(),
            state: l.health.as_str(),
            targets: l.targets,
            down: l.down,
        })
        .collect()
}

/// `t` as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The spans an uptime badge may cover, with the rollup level it is computed from and its
/// length in periods of that level.
pub const UPTIME_SPANS: [(&str, Level, i64); 4] = [
    ("24h", Level::Hour, 24),
    ("7d", Level::Hour, 168),
    ("30d", Level::Day, 30),
    ("90d", Level::Day, 90),
];

/// The uptime of the component (or group of components) `name` over `span` (one of
/// [`UPTIME_SPANS`]) up to `now`: `None` when the page has no such component, `Some(None)`
/// without data. One rollup query per target or failover group of the component (a group's
/// own rollups; its instances' when it has none, as rows written before groups had rollups).
pub async fn uptime(
    rt: &Runtime,
    name: &str,
    span: &str,
    now: Millis,
) -> Result<Option<Option<f64>>, StoreError> {
    let Some(&(_, level, n)) = UPTIME_SPANS.iter().find(|s| s.0 == span) else {
        return Ok(None);
    };
    let config = rt.config();
    let page = StatusPage::effective(&config);
    let members: Vec<&crate::config::status_page::PageComponent> =
        match page.components.iter().find(|c| c.name == name) {
            Some(c) => vec![c],
            None => match page.groups.iter().find(|g| g.name == name) {
                Some(g) => page
                    .components
                    .iter()
                    .filter(|c| g.components.contains(&c.name))
                    .collect(),
                None => return Ok(None),
            },
        };
    let from = now - now.rem_euclid(level.millis()) - (n - 1) * level.millis();
    let store = rt.store();
    let mut totals = Vec::new();
    for c in members {
        for t in &c.targets {
            let rows = store.rollups(level, from, now + 1, Some(t)).await?;
            totals.push(model::Totals::of(&rows));
        }
        for g in &c.groups {
            let rows = store.group_rollups(level, from, now + 1, Some(g)).await?;
            if !rows.is_empty() {
                totals.push(model::Totals::of_group(&rows));
                continue;
            }
            let instances = config
                .failover
                .iter()
                .find(|f| &f.name == g)
                .map(|f| f.instances.len())
                .unwrap_or(0);
            let mut each = Vec::new();
            for i in 0..instances {
                let rows = store
                    .rollups(level, from, now + 1, Some(&format!("{g}/{i}")))
                    .await?;
                each.push(model::Totals::of(&rows));
            }
            totals.push(model::Totals::least(&each));
        }
    }
    Ok(Some(model::Totals::worst(&totals).uptime(now - from)))
}
