//! The store's statements, written once for both backends (`$n` placeholders, which SQLite
//! accepts too), and the rows they read turned back into [`super::model`] values.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;

use super::model::*;
use super::IncidentQuery;
use crate::state::Health;

type R<T> = Result<T, sqlx::Error>;

pub(super) async fn upsert_target(c: &mut AnyConnection, t: &TargetState) -> R<()> {
    sqlx::query(
        "INSERT INTO target_state (target, health, successes, failures, since, reason, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (target) DO UPDATE SET \
         health = excluded.health, successes = excluded.successes, \
         failures = excluded.failures, since = excluded.since, reason = excluded.reason, \
         detail = excluded.detail",
    )
    .bind(&t.target)
    .bind(t.health.as_str())
    .bind(i64::from(t.successes))
    .bind(i64::from(t.failures))
    .bind(t.since)
    .bind(t.reason.as_deref())
    .bind(t.detail.as_deref())
    .execute(c)
    .await?;
    Ok(())
}

pub(super) async fn upsert_group(c: &mut AnyConnection, g: &GroupState) -> R<()> {
    sqlx::query(
        "INSERT INTO group_state (grp, active, json, updated) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (grp) DO UPDATE SET active = excluded.active, json = excluded.json, \
         updated = excluded.updated",
    )
    .bind(&g.group)
    .bind(g.active.map(i64::from))
    .bind(&g.json)
    .bind(g.updated)
    .execute(c)
    .await?;
    Ok(())
}

pub(super) async fn insert_transition(c: &mut AnyConnection, t: &TransitionRecord) -> R<()> {
    sqlx::query(
        "INSERT INTO transitions (at, subject, name, from_state, to_state, reason, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(t.at)
    .bind(t.subject.as_str())
    .bind(&t.name)
    .bind(&t.from)
    .bind(&t.to)
    .bind(t.reason.as_deref())
    .bind(t.detail.as_deref())
    .execute(c)
    .await?;
    Ok(())
}

const ROLLUP_COLUMNS: &str =
    "target, start, probes, failures, by_reason, down_ms, maintenance_ms, latency, latency_sum, \
     component";

/// Adds `r` into the stored row of `level` for its target and start (read, add, write: the
/// single writer makes that safe).
pub(super) async fn add_rollup(c: &mut AnyConnection, level: i64, r: &Rollup) -> R<()> {
    let old = sqlx::query(&format!(
        "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE level = $1 AND target = $2 AND start = $3"
    ))
    .bind(level)
    .bind(&r.target)
    .bind(r.start)
    .fetch_optional(&mut *c)
    .await?;
    let mut sum = match old {
        Some(row) => rollup_from(&row)?,
        None => Rollup {
            target: r.target.clone(),
            start: r.start,
            ..Rollup::default()
        },
    };
    super::add_into(&mut sum, r);
    let by_reason = if sum.by_reason.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&sum.by_reason).expect("a map of counts serializes"))
    };
    sqlx::query(&format!(
        "INSERT INTO rollups (level, {ROLLUP_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (level, target, start) DO UPDATE SET probes = excluded.probes, \
         failures = excluded.failures, by_reason = excluded.by_reason, \
         down_ms = excluded.down_ms, maintenance_ms = excluded.maintenance_ms, \
         latency = excluded.latency, latency_sum = excluded.latency_sum, \
         component = excluded.component"
    ))
    .bind(level)
    .bind(&sum.target)
    .bind(sum.start)
    .bind(sum.probes as i64)
    .bind(sum.failures as i64)
    .bind(by_reason)
    .bind(sum.down_ms)
    .bind(sum.maintenance_ms)
    .bind(encode_counts(&sum.latency))
    .bind(sum.latency_sum)
    .bind(sum.component.as_deref())
    .execute(c)
    .await?;
    Ok(())
}

/// A level as stored.
pub fn level_code(l: Level) -> i64 {
    l.code()
}

/// Bucket counts as unsigned LEB128 varints (a dozen bytes for a typical minute).
pub fn encode_counts(v: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for &n in v {
        let mut n = n;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    out
}

/// The counts [`encode_counts`] wrote.
pub fn decode_counts(b: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut n, mut shift) = (0u64, 0u32);
    for &byte in b {
        n |= u64::from(byte & 0x7f) << shift.min(63);
        shift += 7;
        if byte & 0x80 == 0 {
            out.push(n);
            n = 0;
            shift = 0;
        }
    }
    out
}

fn decode_err(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?} in the store").into())
}

fn rollup_from(row: &AnyRow) -> R<Rollup> {
    let by_reason: Option<String> = row.try_get(4)?;
    let by_reason = match by_reason {
        Some(s) => serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(e.into()))?,
        None => BTreeMap::new(),
    };
    Ok(Rollup {
        target: row.try_get(0)?,
        start: row.try_get(1)?,
        probes: row.try_get::<i64, _>(2)? as u64,
        failures: row.try_get::<i64, _>(3)? as u64,
        by_reason,
        down_ms: row.try_get(5)?,
        maintenance_ms: row.try_get(6)?,
        latency: decode_counts(&row.try_get::<Vec<u8>, _>(7)?),
        latency_sum: row.try_get(8)?,
        component: row.try_get(9)?,
    })
}

/// Rollups of `level` starting in `[from, to)`, of `target` only when given, by target then
/// start.
pub async fn rollups(
    c: &mut AnyConnection,
    level: Level,
    from: Millis,
    to: Millis,
    target: Option<&str>,
) -> R<Vec<Rollup>> {
    let filter = if target.is_some() {
        " AND target = $4"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE level = $1 AND start >= $2 AND start < $3\
         {filter} ORDER BY target, start"
    );
    let mut q = sqlx::query(&sql)
        .bind(level_code(level))
        .bind(from)
        .bind(to);
    if let Some(t) = target {
        q = q.bind(t);
    }
    q.fetch_all(c).await?.iter().map(rollup_from).collect()
}

/// Every target state, by name.
pub async fn target_states(c: &mut AnyConnection) -> R<Vec<TargetState>> {
    let rows = sqlx::query(
        "SELECT target, health, successes, failures, since, reason, detail FROM target_state \
         ORDER BY target",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|row| {
            let health: String = row.try_get(1)?;
            Ok(TargetState {
                target: row.try_get(0)?,
                health: match health.as_str() {
                    "up" => Health::Up,
                    "down" => Health::Down,
                    "unknown" => Health::Unknown,
                    other => return Err(decode_err("health", other)),
                },
                successes: row.try_get::<i64, _>(2)? as u32,
                failures: row.try_get::<i64, _>(3)? as u32,
                since: row.try_get(4)?,
                reason: row.try_get(5)?,
                detail: row.try_get(6)?,
            })
        })
        .collect()
}

/// Every group state, by name.
pub async fn group_states(c: &mut AnyConnection) -> R<Vec<GroupState>> {
    let rows = sqlx::query("SELECT grp, active, json, updated FROM group_state ORDER BY grp")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(GroupState {
                group: row.try_get(0)?,
                active: row.try_get::<Option<i64>, _>(1)?.map(|a| a as u32),
                json: row.try_get(2)?,
                updated: row.try_get(3)?,
            })
        })
        .collect()
}

/// Transitions in `[from, to)`, of `name` only when given, oldest first, the newest `limit`
/// (0: all).
pub async fn transitions(
    c: &mut AnyConnection,
    name: Option<&str>,
    from: Millis,
    to: Millis,
    limit: usize,
) -> R<Vec<TransitionRecord>> {
    let filter = if name.is_some() { " AND name = $3" } else { "" };
    let tail = if limit > 0 {
        format!(" ORDER BY at DESC, id DESC LIMIT {limit}")
    } else {
        " ORDER BY at, id".to_string()
    };
    let sql = format!(
        "SELECT at, subject, name, from_state, to_state, reason, detail FROM transitions \
         WHERE at >= $1 AND at < $2{filter}{tail}"
    );
    let mut q = sqlx::query(&sql).bind(from).bind(to);
    if let Some(n) = name {
        q = q.bind(n);
    }
    let mut v = q
        .fetch_all(c)
        .await?
        .iter()
        .map(|row| {
            let subject: String = row.try_get(1)?;
            Ok(TransitionRecord {
                at: row.try_get(0)?,
                subject: match subject.as_str() {
                    "target" => Subject::Target,
                    "group" => Subject::Group,
                    other => return Err(decode_err("subject", other)),
                },
                name: row.try_get(2)?,
                from: row.try_get(3)?,
                to: row.try_get(4)?,
                reason: row.try_get(5)?,
                detail: row.try_get(6)?,
            })
        })
        .collect::<R<Vec<_>>>()?;
    if limit > 0 {
        v.reverse();
    }
    Ok(v)
}

const INCIDENT_COLUMNS: &str =
    "id, component, title, status, impact, started, resolved, targets, in_maintenance, figures, \
     acknowledged, root_cause, resolution";

fn incident_from(row: &AnyRow) -> R<Incident> {
    let status: String = row.try_get(3)?;
    let impact: String = row.try_get(4)?;
    let targets: String = row.try_get(7)?;
    Ok(Incident {
        id: row.try_get(0)?,
        component: row.try_get(1)?,
        title: row.try_get(2)?,
        status: IncidentStatus::parse(&status).ok_or_else(|| decode_err("status", &status))?,
        impact: Impact::parse(&impact).ok_or_else(|| decode_err("impact", &impact))?,
        started: row.try_get(5)?,
        resolved: row.try_get(6)?,
        targets: serde_json::from_str(&targets).map_err(|e| sqlx::Error::Decode(e.into()))?,
        in_maintenance: row.try_get::<i64, _>(8)? != 0,
        figures: row.try_get(9)?,
        acknowledged: row.try_get(10)?,
        root_cause: row.try_get(11)?,
        resolution: row.try_get(12)?,
    })
}

pub(super) fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("a list of strings serializes")
}

/// Binds `i`'s columns, id aside, as `$1`..`$12` in the order of the `incidents` table.
pub(super) fn bind_incident<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    i: &'q Incident,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&i.component)
        .bind(&i.title)
        .bind(i.status.as_str())
        .bind(i.impact.as_str())
        .bind(i.started)
        .bind(i.resolved)
        .bind(json_list(&i.targets))
        .bind(i64::from(i.in_maintenance))
        .bind(i.figures.as_deref())
        .bind(i.acknowledged)
        .bind(i.root_cause.as_deref())
        .bind(i.resolution.as_deref())
}

/// Inserts `i` (its id ignored) and returns the new id.
pub async fn open_incident(c: &mut AnyConnection, i: &Incident) -> R<i64> {
    bind_incident(
        sqlx::query(
            "INSERT INTO incidents (component, title, status, impact, started, resolved, \
             targets, in_maintenance, figures, acknowledged, root_cause, resolution) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        ),
        i,
    )
    .fetch_one(c)
    .await?
    .try_get(0)
}

/// Replaces incident `i.id`'s fields; false when there is no such incident.
pub async fn save_incident(c: &mut AnyConnection, i: &Incident) -> R<bool> {
    let done = bind_incident(
        sqlx::query(
            "UPDATE incidents SET component = $1, title = $2, status = $3, impact = $4, \
             started = $5, resolved = $6, targets = $7, in_maintenance = $8, figures = $9, \
             acknowledged = $10, root_cause = $11, resolution = $12 WHERE id = $13",
        ),
        i,
    )
    .bind(i.id)
    .execute(c)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Incident `id`, if any.
pub async fn incident(c: &mut AnyConnection, id: i64) -> R<Option<Incident>> {
    sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(c)
    .await?
    .as_ref()
    .map(incident_from)
    .transpose()
}

/// Incidents matching `q`, newest first.
pub async fn incidents(c: &mut AnyConnection, q: &IncidentQuery) -> R<Vec<Incident>> {
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE 1 = 1");
    if q.open_only {
        sql.push_str(" AND resolved IS NULL");
    }
    let mut params = 0;
    if q.since.is_some() {
        params += 1;
        sql.push_str(&format!(" AND started >= ${params}"));
    }
    if q.component.is_some() {
        params += 1;
        sql.push_str(&format!(" AND component = ${params}"));
    }
    sql.push_str(" ORDER BY started DESC, id DESC");
    if q.limit > 0 {
        sql.push_str(&format!(" LIMIT {}", q.limit));
    }
    let mut query = sqlx::query(&sql);
    if let Some(t) = q.since {
        query = query.bind(t);
    }
    if let Some(c) = &q.component {
        query = query.bind(c.as_str());
    }
    query
        .fetch_all(c)
        .await?
        .iter()
        .map(incident_from)
        .collect()
}

/// Appends `u` (its id ignored) to its incident's timeline; none when there is no such
/// incident.
pub async fn add_update(c: &mut AnyConnection, u: &IncidentUpdate) -> R<Option<i64>> {
    let exists = sqlx::query("SELECT id FROM incidents WHERE id = $1")
        .bind(u.incident)
        .fetch_optional(&mut *c)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let row = sqlx::query(
        "INSERT INTO incident_updates (incident, at, status, message, automatic, kind) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(u.incident)
    .bind(u.at)
    .bind(u.status.as_str())
    .bind(&u.message)
    .bind(i64::from(u.automatic))
    .bind(u.kind.map(UpdateKind::as_str))
    .fetch_one(c)
    .await?;
    Ok(Some(row.try_get(0)?))
}

/// The updates of `ids`, oldest first, in one query.
pub async fn updates(c: &mut AnyConnection, ids: &[i64]) -> R<Vec<IncidentUpdate>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT id, incident, at, status, message, automatic, kind FROM incident_updates \
         WHERE incident IN ({}) ORDER BY at, id",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    q.fetch_all(c)
        .await?
        .iter()
        .map(|row| {
            let status: String = row.try_get(3)?;
            let kind: Option<String> = row.try_get(6)?;
            Ok(IncidentUpdate {
                id: row.try_get(0)?,
                incident: row.try_get(1)?,
                at: row.try_get(2)?,
                status: IncidentStatus::parse(&status)
                    .ok_or_else(|| decode_err("status", &status))?,
                message: row.try_get(4)?,
                automatic: row.try_get::<i64, _>(5)? != 0,
                kind: match kind {
                    Some(k) => Some(UpdateKind::parse(&k).ok_or_else(|| decode_err("kind", &k))?),
                    None => None,
                },
            })
        })
        .collect()
}

/// Inserts a maintenance window (its id ignored) and returns the new id.
pub async fn add_maintenance(c: &mut AnyConnection, m: &Maintenance) -> R<i64> {
    sqlx::query(
        "INSERT INTO maintenance (name, components, start_at, end_at, every, tz) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&m.name)
    .bind(json_list(&m.components))
    .bind(m.start)
    .bind(m.end)
    .bind(m.every.as_deref())
    .bind(&m.tz)
    .fetch_one(c)
    .await?
    .try_get(0)
}

/// Deletes maintenance window `id`; false when there was none.
pub async fn delete_maintenance(c: &mut AnyConnection, id: i64) -> R<bool> {
    let done = sqlx::query("DELETE FROM maintenance WHERE id = $1")
        .bind(id)
        .execute(c)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every maintenance window, by id.
pub async fn maintenances(c: &mut AnyConnection) -> R<Vec<Maintenance>> {
    let rows = sqlx::query(
        "SELECT id, name, components, start_at, end_at, every, tz FROM maintenance ORDER BY id",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|row| {
            let components: String = row.try_get(2)?;
            Ok(Maintenance {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                components: serde_json::from_str(&components)
                    .map_err(|e| sqlx::Error::Decode(e.into()))?,
                start: row.try_get(3)?,
                end: row.try_get(4)?,
                every: row.try_get(5)?,
                tz: row.try_get(6)?,
            })
        })
        .collect()
}

/// Deletes the rollups of `level` that start before `before`, at most the `periods` oldest
/// periods of them (so that one run stays bounded); returns how many rows went.
pub async fn prune(c: &mut AnyConnection, level: Level, before: Millis, periods: usize) -> R<u64> {
    let cut = sqlx::query(&format!(
        "SELECT DISTINCT start FROM rollups WHERE level = $1 AND start < $2 ORDER BY start \
         LIMIT 1 OFFSET {periods}"
    ))
    .bind(level_code(level))
    .bind(before)
    .fetch_optional(&mut *c)
    .await?;
    let before = match cut {
        Some(row) => row.try_get::<i64, _>(0)?,
        None => before,
    };
    let done = sqlx::query("DELETE FROM rollups WHERE level = $1 AND start < $2")
        .bind(level_code(level))
        .bind(before)
        .execute(c)
        .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_round_trip_compactly() {
        for v in [
            vec![],
            vec![0, 1, 127, 128, 300, 0, 0, 0, 0, 0, 0, 1],
            vec![u64::MAX, 1 << 35],
        ] {
            assert_eq!(decode_counts(&encode_counts(&v)), v);
        }
        assert_eq!(
            encode_counts(&[0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).len(),
            12
        );
    }
}
