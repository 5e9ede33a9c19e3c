//! The schema, written once for both backends: integers for times, TEXT for JSON, a BLOB for
//! the latency buckets. Only the id column and the blob type differ, filled in per backend.
//! Migrations are numbered; the version reached is kept in `watchfire_schema`.

use super::dialect::Kind;

/// The table whose presence marks a database as watchfire's.
pub const SCHEMA_TABLE: &str = "watchfire_schema";

/// The newest schema version this binary knows.
pub const VERSION: i64 = 4;

/// Migration 1: every table and index.
const V1: &str = r#"
CREATE TABLE target_state (
    target TEXT PRIMARY KEY,
    health TEXT NOT NULL,
    successes BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    since BIGINT NOT NULL,
    reason TEXT,
    detail TEXT
);
CREATE TABLE group_state (
    grp TEXT PRIMARY KEY,
    active BIGINT,
    json TEXT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE TABLE transitions (
    id {ID},
    at BIGINT NOT NULL,
    subject TEXT NOT NULL,
    name TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT,
    detail TEXT
);
CREATE INDEX transitions_name_at ON transitions (name, at);
CREATE INDEX transitions_at ON transitions (at);
CREATE TABLE incidents (
    id {ID},
    component TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    impact TEXT NOT NULL,
    started BIGINT NOT NULL,
    resolved BIGINT,
    targets TEXT NOT NULL,
    in_maintenance BIGINT NOT NULL,
    figures TEXT
);
CREATE INDEX incidents_started ON incidents (started);
CREATE INDEX incidents_resolved ON incidents (resolved);
CREATE TABLE incident_updates (
    id {ID},
    incident BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at BIGINT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    automatic BIGINT NOT NULL
);
CREATE INDEX incident_updates_incident ON incident_updates (incident, at);
CREATE TABLE maintenance (
    id {ID},
    name TEXT NOT NULL,
    components TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    every TEXT,
    tz TEXT NOT NULL
);
CREATE TABLE rollups (
    level BIGINT NOT NULL,
    target TEXT NOT NULL,
    start BIGINT NOT NULL,
    probes BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    by_reason TEXT,
    down_ms BIGINT NOT NULL,
    maintenance_ms BIGINT NOT NULL,
    latency {BLOB} NOT NULL,
    latency_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (level, target, start)
);
CREATE INDEX rollups_level_start ON rollups (level, start);
"#;

/// Migration 2: incident acknowledgement, root cause and resolution; the notification outbox.
const V2: &str = r#"
ALTER TABLE incidents ADD COLUMN acknowledged BIGINT;
ALTER TABLE incidents ADD COLUMN root_cause TEXT;
ALTER TABLE incidents ADD COLUMN resolution TEXT;
CREATE TABLE notify_outbox (
    id {ID},
    msg_key TEXT NOT NULL UNIQUE,
    incident BIGINT NOT NULL,
    receiver TEXT NOT NULL,
    kind TEXT NOT NULL,
    due BIGINT NOT NULL,
    message TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    last_error TEXT,
    created BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX notify_outbox_receiver_state ON notify_outbox (receiver, state, next_attempt);
CREATE INDEX notify_outbox_incident ON notify_outbox (incident);
CREATE INDEX notify_outbox_created ON notify_outbox (created)
"#;

/// Migration 3: the failover groups' rollups; each target rollup's component; the kind of an
/// incident's automatic updates (those written before it given theirs by their words, the
/// only time the words are read).
const V3: &str = r#"
CREATE TABLE group_rollups (
    level BIGINT NOT NULL,
    grp TEXT NOT NULL,
    start BIGINT NOT NULL,
    observed_ms BIGINT NOT NULL,
    down_ms BIGINT NOT NULL,
    maintenance_ms BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    failed_requests BIGINT NOT NULL,
    switches BIGINT NOT NULL,
    PRIMARY KEY (level, grp, start)
);
CREATE INDEX group_rollups_level_start ON group_rollups (level, start);
ALTER TABLE rollups ADD COLUMN component TEXT;
ALTER TABLE incident_updates ADD COLUMN kind TEXT;
UPDATE incident_updates SET kind = 'detected' WHERE automatic = 1 AND message LIKE 'Detected: %';
UPDATE incident_updates SET kind = 'also_down' WHERE automatic = 1 AND message LIKE '% is down too (%';
UPDATE incident_updates SET kind = 'down_again' WHERE automatic = 1 AND message LIKE 'Down again: %';
UPDATE incident_updates SET kind = 'traffic_moved' WHERE automatic = 1 AND message LIKE 'Traffic moved %';
UPDATE incident_updates SET kind = 'none_up' WHERE automatic = 1 AND message LIKE 'No instance is up %';
UPDATE incident_updates SET kind = 'recovered' WHERE automatic = 1 AND message LIKE 'Recovered after %';
UPDATE incident_updates SET kind = 'acknowledged' WHERE automatic = 1 AND message LIKE 'Acknowledged%'
"#;

/// Migration 4: the rollups' period indexes end with the target (the group), so that the
/// writer's lookup of one row by level, target and start fetches that one row whichever index
/// the database takes. With `(level, start)` alone, PostgreSQL took it for a period newer than
/// its statistics (estimated as small as the primary key's one row, and cheaper) and fetched
/// every row of that period written so far to find one: the minute flush writes a period's
/// rows one after another, so the work grew with the square of the targets (~650,000 rows
/// fetched a second per member at 20,000 targets).
const V4: &str = r#"
DROP INDEX rollups_level_start;
CREATE INDEX rollups_level_start_target ON rollups (level, start, target);
DROP INDEX group_rollups_level_start;
CREATE INDEX group_rollups_level_start_grp ON group_rollups (level, start, grp)
"#;

/// Every migration, in order; migration `i` brings the schema to version `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The statements of migration `i` for backend `kind`.
pub fn migration(kind: Kind, i: usize) -> Vec<String> {
    let (id, blob) = match kind {
        Kind::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"),
        Kind::Postgres => ("BIGSERIAL PRIMARY KEY", "BYTEA"),
    };
    MIGRATIONS[i]
        .replace("{ID}", id)
        .replace("{BLOB}", blob)
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// How many migrations there are (the newest version).
pub fn count() -> usize {
    MIGRATIONS.len()
}

/// The statement that lists the tables of the database (one TEXT column). The cluster's own
/// tables (`cluster_*`, made by `crate::cluster` in the same database) are watchfire's too,
/// not another program's.
pub fn list_tables(kind: Kind) -> &'static str {
    match kind {
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        }
        Kind::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name NOT LIKE 'cluster\\_%'"
        }
    }
}
