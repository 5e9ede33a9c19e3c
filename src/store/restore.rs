//! What lets incidents, their timelines and maintenance windows made while the store is
//! degraded reach the configured backend when it answers again.
//!
//! - [`Known`]: the open incidents, the maintenance windows and the greatest ids, kept as
//!   they are written. When the backend fails, the in-memory database is seeded with them
//!   ([`seed`]): an incident opened before the failure can still be updated and resolved, and
//!   ids assigned in memory continue above the backend's (they are the incidents' names in
//!   messages and URLs, so they are kept, not renumbered).
//! - [`Restore`]: what memory holds of them at recovery, written back with the same ids in the
//!   transaction that replays states, transitions and rollups ([`restore`]); windows deleted
//!   meanwhile are deleted there too. On PostgreSQL the id sequences are moved past them.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::AnyConnection;

use super::model::{Incident, IncidentUpdate, Maintenance};
use super::sql::{bind_incident, json_list};
use super::IncidentQuery;

type R<T> = Result<T, sqlx::Error>;

/// The tables whose ids are kept, in the order of [`Known::ids`].
const TABLES: [&str; 3] = ["incidents", "incident_updates", "maintenance"];

/// What the store knows of incidents and maintenance windows, whichever backend is active.
#[derive(Debug, Default)]
pub struct Known {
    /// Open incidents, by id.
    pub open: BTreeMap<i64, Incident>,
    /// Maintenance windows made through the API, by id.
    pub maintenance: BTreeMap<i64, Maintenance>,
    /// Windows deleted while degraded (deleted in the backend at recovery).
    pub deleted: BTreeSet<i64>,
    /// The greatest id seen of incidents, updates and maintenance windows.
    pub ids: [i64; 3],
}

impl Known {
    /// `inc` was opened or saved.
    pub fn incident(&mut self, inc: &Incident) {
        self.ids[0] = self.ids[0].max(inc.id);
        if inc.resolved.is_none() {
            self.open.insert(inc.id, inc.clone());
        } else {
            self.open.remove(&inc.id);
        }
    }

    /// An update got `id`.
    pub fn update(&mut self, id: i64) {
        self.ids[1] = self.ids[1].max(id);
    }

    /// `m` was added.
    pub fn add_maintenance(&mut self, m: &Maintenance) {
        self.ids[2] = self.ids[2].max(m.id);
        self.maintenance.insert(m.id, m.clone());
    }

    /// Window `id` was deleted (`degraded`: to be deleted in the backend at recovery).
    pub fn delete_maintenance(&mut self, id: i64, degraded: bool) {
        self.maintenance.remove(&id);
        if degraded {
            self.deleted.insert(id);
        }
    }
}

/// Reads what [`Known`] starts from: the open incidents, the windows, the greatest ids.
pub async fn load(c: &mut AnyConnection) -> R<Known> {
    let q = IncidentQuery {
        open_only: true,
        ..IncidentQuery::default()
    };
    let mut k = Known::default();
    for i in super::sql::incidents(&mut *c, &q).await? {
        k.incident(&i);
    }
    for m in super::sql::maintenances(&mut *c).await? {
        k.add_maintenance(&m);
    }
    for (i, table) in TABLES.iter().enumerate() {
        let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {table}"))
            .fetch_one(&mut *c)
            .await?;
        k.ids[i] = k.ids[i].max(max.unwrap_or(0));
    }
    Ok(k)
}

/// Incidents (with their updates) and windows to write back with their ids.
#[derive(Debug, Default)]
pub struct Restore {
    /// Incidents in memory (opened, or opened before and changed, while degraded).
    pub incidents: Vec<Incident>,
    /// Their updates in memory (all written while degraded).
    pub updates: Vec<IncidentUpdate>,
    /// Windows in memory.
    pub maintenance: Vec<Maintenance>,
    /// Windows deleted while degraded.
    pub deleted: Vec<i64>,
}

impl Restore {
    /// Rows it writes or deletes.
    pub fn len(&self) -> usize {
        self.incidents.len() + self.updates.len() + self.maintenance.len() + self.deleted.len()
    }

    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads, from the in-memory database, everything [`Restore`] writes back.
pub async fn read(c: &mut AnyConnection, deleted: &BTreeSet<i64>) -> R<Restore> {
    let incidents = super::sql::incidents(&mut *c, &IncidentQuery::default()).await?;
    let ids: Vec<i64> = incidents.iter().map(|i| i.id).collect();
    let mut updates = Vec::new();
    // A bounded number of binds per query.
    for chunk in ids.chunks(500) {
        updates.extend(super::sql::updates(&mut *c, chunk).await?);
    }
    Ok(Restore {
        incidents,
        updates,
        maintenance: super::sql::maintenances(&mut *c).await?,
        deleted: deleted.iter().copied().collect(),
    })
}

/// Writes `r` on `c` (inside the caller's transaction), ids kept.
pub async fn restore(c: &mut AnyConnection, r: &Restore) -> R<()> {
    for i in &r.incidents {
        bind_incident(
            sqlx::query(
                "INSERT INTO incidents (component, title, status, impact, started, resolved, \
                 targets, in_maintenance, figures, acknowledged, root_cause, resolution, id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (id) DO UPDATE SET component = excluded.component, \
                 title = excluded.title, status = excluded.status, impact = excluded.impact, \
                 started = excluded.started, resolved = excluded.resolved, \
                 targets = excluded.targets, in_maintenance = excluded.in_maintenance, \
                 figures = excluded.figures, acknowledged = excluded.acknowledged, \
                 root_cause = excluded.root_cause, resolution = excluded.resolution",
            ),
            i,
        )
        .bind(i.id)
        .execute(&mut *c)
        .await?;
    }
    for u in &r.updates {
        sqlx::query(
            "INSERT INTO incident_updates (id, incident, at, status, message, automatic, kind) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(u.id)
        .bind(u.incident)
        .bind(u.at)
        .bind(u.status.as_str())
        .bind(&u.message)
        .bind(i64::from(u.automatic))
        .bind(u.kind.map(super::model::UpdateKind::as_str))
        .execute(&mut *c)
        .await?;
    }
    for m in &r.maintenance {
        sqlx::query(
            "INSERT INTO maintenance (id, name, components, start_at, end_at, every, tz) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
             name = excluded.name, components = excluded.components, \
             start_at = excluded.start_at, end_at = excluded.end_at, every = excluded.every, \
             tz = excluded.tz",
        )
        .bind(m.id)
        .bind(&m.name)
        .bind(json_list(&m.components))
        .bind(m.start)
        .bind(m.end)
        .bind(m.every.as_deref())
        .bind(&m.tz)
        .execute(&mut *c)
        .await?;
    }
    for id in &r.deleted {
        sqlx::query("DELETE FROM maintenance WHERE id = $1")
            .bind(*id)
            .execute(&mut *c)
            .await?;
    }
    if c.backend_name().eq_ignore_ascii_case("postgresql") && !r.is_empty() {
        // Rows inserted with their ids leave the sequences behind: move them past.
        for table in TABLES {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
            ))
            .execute(&mut *c)
            .await?;
        }
    }
    Ok(())
}

/// Gives a fresh in-memory (SQLite) database `k`'s open incidents and windows, with their
/// ids, and makes the ids it assigns start above `k.ids`.
pub async fn seed(c: &mut AnyConnection, k: &Known) -> R<()> {
    let r = Restore {
        incidents: k.open.values().cloned().collect(),
        maintenance: k.maintenance.values().cloned().collect(),
        ..Restore::default()
    };
    restore(&mut *c, &r).await?;
    for (table, id) in TABLES.iter().zip(k.ids) {
        sqlx::query("DELETE FROM sqlite_sequence WHERE name = $1")
            .bind(*table)
            .execute(&mut *c)
            .await?;
        let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {table}"))
            .fetch_one(&mut *c)
            .await?;
        sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ($1, $2)")
            .bind(*table)
            .bind(id.max(max.unwrap_or(0)))
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}
