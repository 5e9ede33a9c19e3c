//! The store on SQLite: the shared suite in memory and in a file, then what only a file has
//! (reopening, permissions, refusing a file that is not watchfire's, degrading when the file
//! goes away and recovering).

mod common;
mod store_suite;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::eventually;
use store_suite::*;
use watchfire::state::Health;
use watchfire::store::{
    Level, Retention, Store, StoreError, StoreOptions, UpdateKind, Write, FILE_NAME,
};

fn file_opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        path: Some(dir.to_path_buf()),
        url: None,
        retention: Retention::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_in_memory() {
    all(|| async { Store::memory() }).await;
    let s = Store::memory();
    assert_eq!(s.status().backend, "memory");
    assert_eq!(
        metric(&s, "watchfire_store_up{backend=\"memory\"}"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_in_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    all(|| async {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Store::open(&file_opts(&tmp.path().join(format!("d{i}"))))
            .await
            .unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_keeps_its_data_across_reopening_and_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/data");
    {
        let s = Store::open(&file_opts(&dir)).await.unwrap();
        assert_eq!(s.status().backend, "sqlite");
        s.write(Write::TargetState(target("web", Health::Down, DAY0)));
        s.write(Write::Minute(minute("web", DAY0, 1)));
        s.open_incident(&incident("web", DAY0)).await.unwrap();
        s.flush().await;
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
    let s = Store::open(&file_opts(&dir)).await.unwrap();
    assert_eq!(
        s.target_states().await.unwrap(),
        vec![target("web", Health::Down, DAY0)]
    );
    let days = s.rollups(Level::Day, DAY0, DAY0 + 1, None).await.unwrap();
    assert_eq!(days, expected(&[minute("web", DAY0, 1)], Level::Day));
    assert_eq!(s.incidents(&Default::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_directory_that_cannot_be_made_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    for dir in [file.clone(), file.join("sub")] {
        let e = Store::open(&file_opts(&dir)).await.unwrap_err();
        assert!(matches!(e, StoreError::Directory { .. }), "{e:?}");
        assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(FILE_NAME);
    let junk =
        b"this is not a database, it is a text file that is long enough to be read\n".repeat(100);
    std::fs::write(&db, &junk).unwrap();
    let e = Store::open(&file_opts(tmp.path())).await.unwrap_err();
    assert!(matches!(e, StoreError::NotADatabase { .. }), "{e:?}");
    assert!(e.to_string().contains(&*db.to_string_lossy()), "{e}");
    assert_eq!(std::fs::read(&db).unwrap(), junk);
}

#[tokio::test]
async fn another_programs_database_is_refused_untouched() {
    use sqlx::Connection;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join(FILE_NAME);
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let before = std::fs::read(&db).unwrap();
    let e = Store::open(&file_opts(tmp.path())).await.unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("invoices") && msg.contains(&*db.to_string_lossy()),
        "{msg}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file was changed");
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    use sqlx::Connection;
    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(&file_opts(tmp.path())).await.unwrap());
    let url = format!("sqlite://{}", tmp.path().join(FILE_NAME).display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO watchfire_schema (version) VALUES (99)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let e = Store::open(&file_opts(tmp.path())).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NewerSchema {
                found: 99,
                known: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("newer"), "{e}");
}

/// Schema version 1 as watchfire wrote it before migration 2 (SQLite), with an incident.
const SCHEMA_V1: &str = r#"
CREATE TABLE watchfire_schema (version BIGINT NOT NULL);
INSERT INTO watchfire_schema (version) VALUES (1);
CREATE TABLE target_state (target TEXT PRIMARY KEY, health TEXT NOT NULL,
    successes BIGINT NOT NULL, failures BIGINT NOT NULL, since BIGINT NOT NULL, reason TEXT,
    detail TEXT);
CREATE TABLE group_state (grp TEXT PRIMARY KEY, active BIGINT, json TEXT NOT NULL,
    updated BIGINT NOT NULL);
CREATE TABLE transitions (id INTEGER PRIMARY KEY AUTOINCREMENT, at BIGINT NOT NULL,
    subject TEXT NOT NULL, name TEXT NOT NULL, from_state TEXT NOT NULL,
    to_state TEXT NOT NULL, reason TEXT, detail TEXT);
CREATE INDEX transitions_name_at ON transitions (name, at);
CREATE INDEX transitions_at ON transitions (at);
CREATE TABLE incidents (id INTEGER PRIMARY KEY AUTOINCREMENT, component TEXT NOT NULL,
    title TEXT NOT NULL, status TEXT NOT NULL, impact TEXT NOT NULL, started BIGINT NOT NULL,
    resolved BIGINT, targets TEXT NOT NULL, in_maintenance BIGINT NOT NULL, figures TEXT);
CREATE INDEX incidents_started ON incidents (started);
CREATE INDEX incidents_resolved ON incidents (resolved);
CREATE TABLE incident_updates (id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE, at BIGINT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL, automatic BIGINT NOT NULL);
CREATE INDEX incident_updates_incident ON incident_updates (incident, at);
CREATE TABLE maintenance (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
    components TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL, every TEXT,
    tz TEXT NOT NULL);
CREATE TABLE rollups (level BIGINT NOT NULL, target TEXT NOT NULL, start BIGINT NOT NULL,
    probes BIGINT NOT NULL, failures BIGINT NOT NULL, by_reason TEXT, down_ms BIGINT NOT NULL,
    maintenance_ms BIGINT NOT NULL, latency BLOB NOT NULL, latency_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (level, target, start));
CREATE INDEX rollups_level_start ON rollups (level, start);
INSERT INTO incidents (component, title, status, impact, started, resolved, targets,
    in_maintenance, figures) VALUES ('api', 'api is down', 'resolved', 'major', 1000, 2000,
    '["api/a-0"]', 0, NULL);
INSERT INTO incident_updates (incident, at, status, message, automatic) VALUES
    (1, 1000, 'investigating', 'Detected: api/a-0 is down (refused)', 1),
    (1, 1100, 'investigating', 'Traffic moved to http://b at 00:00:01 UTC (active_down)', 1),
    (1, 1200, 'identified', 'Detected: a person wrote this', 0),
    (1, 2000, 'resolved', 'Recovered after 1s', 1)
"#;

/// A database written by schema 1 (before the outbox) is migrated at open: its incidents keep
/// their fields and gain the new ones (empty), the outbox works, and watchfire's timeline
/// entries get their kinds (a person's none, whatever its words).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_to_the_outbox() {
    use sqlx::{Connection, Executor};
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", tmp.path().join(FILE_NAME).display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    c.execute(SCHEMA_V1).await.unwrap();
    c.close().await.unwrap();

    let s = Store::open(&file_opts(tmp.path())).await.unwrap();
    let old = s.incidents(&Default::default()).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(
        (old[0].component.as_str(), old[0].resolved),
        ("api", Some(2000))
    );
    assert_eq!(
        (old[0].acknowledged, &old[0].root_cause, &old[0].resolution),
        (None, &None, &None)
    );
    let mut acked = old[0].clone();
    acked.acknowledged = Some(1500);
    acked.root_cause = Some("OOM kill (exit 137)".into());
    s.save_incident(&acked).await.unwrap();
    assert_eq!(s.incident(acked.id).await.unwrap(), Some(acked.clone()));
    let row = outbox_row(
        &format!("inc{}:resolved@oncall", acked.id),
        acked.id,
        "oncall",
        2000,
    );
    assert_eq!(s.outbox_enqueue(&[row], 2000).await.unwrap(), 1);
    assert_eq!(s.outbox_keys(acked.id).await.unwrap().len(), 1);
    let kinds: Vec<Option<UpdateKind>> = s
        .updates(&[acked.id])
        .await
        .unwrap()
        .iter()
        .map(|u| u.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            Some(UpdateKind::Detected),
            Some(UpdateKind::TrafficMoved),
            None,
            Some(UpdateKind::Recovered)
        ]
    );
    drop(s);

    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM watchfire_schema ORDER BY version")
            .fetch_all(&mut c)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2, 3, 4]);
    c.close().await.unwrap();
}

/// The data directory disappears (and a file takes its place, so that it cannot be made
/// again): writes never wait, the store says it is degraded, reads answer with the known
/// states and what came since; once the path is free the store makes a new file, writes
/// there again and replays what it kept in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_degrades_to_memory_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = Store::open(&file_opts(&dir)).await.unwrap();
    s.write(Write::TargetState(target("web", Health::Up, DAY0)));
    s.flush().await;
    assert!(s.status().healthy);

    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    s.write(Write::TargetState(target("db", Health::Down, DAY0 + 1)));
    s.write(Write::Transition(transition("db", DAY0 + 1, "down")));
    s.flush().await;
    eventually(
        Duration::from_secs(10),
        "the store to say it is degraded",
        || async { (!s.status().healthy).then_some(()) },
    )
    .await;
    let st = s.status();
    assert!(st.write_errors >= 1, "{st:?}");
    assert!(st.error.is_some(), "{st:?}");
    assert_eq!(
        metric(&s, "watchfire_store_up{backend=\"sqlite\"}"),
        Some(0.0)
    );
    let names: Vec<String> = s
        .target_states()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.target)
        .collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(
        s.transitions(None, DAY0, DAY0 + 2, 0).await.unwrap().len(),
        1
    );
    // The outbox works on the in-memory fallback meanwhile.
    let row = outbox_row("inc1:declared@oncall", 1, "oncall", DAY0);
    assert_eq!(s.outbox_enqueue(&[row], DAY0).await.unwrap(), 1);
    let due = s.outbox_due("oncall", DAY0, 8).await.unwrap();
    assert_eq!(keys(&due), ["inc1:declared@oncall"]);
    s.outbox_sent(due[0].id, DAY0 + 1).await.unwrap();
    assert!(s.outbox_pending().await.unwrap().is_empty());

    // Writes never wait, even while degraded: what the queue cannot hold is counted dropped.
    let started = Instant::now();
    for i in 0..100_000 {
        s.write(Write::Transition(transition("db", DAY0 + 10 + i, "up")));
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    s.flush().await;
    let st = s.status();
    let kept = s
        .transitions(None, DAY0 + 10, DAY0 + 200_000, 0)
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(kept + st.dropped, 100_000, "{st:?}");

    std::fs::remove_file(&dir).unwrap();
    eventually(Duration::from_secs(30), "the store to recover", || async {
        s.status().healthy.then_some(())
    })
    .await;
    assert_eq!(
        metric(&s, "watchfire_store_up{backend=\"sqlite\"}"),
        Some(1.0)
    );
    drop(s);
    let again = Store::open(&file_opts(&dir)).await.unwrap();
    assert_eq!(again.target_states().await.unwrap().len(), 2);
    let replayed = again
        .transitions(None, DAY0, DAY0 + 200_000, 0)
        .await
        .unwrap();
    assert_eq!(replayed.len() as u64, kept + 1);
}

/// Incidents and maintenance windows made or changed while the database is away (its
/// directory moved, a file in the way) reach it when it is back, with their ids, and stay
/// there across a reopening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_and_windows_made_while_degraded_are_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let away = tmp.path().join("away");
    let s = Store::open(&file_opts(&dir)).await.unwrap();
    let mut a = before_degrading(&s).await;
    s.write(Write::TargetState(target("web", Health::Up, DAY0)));
    s.flush().await;

    std::fs::rename(&dir, &away).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    s.write(Write::TargetState(target("web", Health::Down, DAY0 + 1)));
    s.flush().await;
    eventually(Duration::from_secs(10), "the store to degrade", || async {
        (!s.status().healthy).then_some(())
    })
    .await;
    while_degraded(&s, &mut a).await;
    groups::while_degraded(&s);
    s.flush().await;

    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&away, &dir).unwrap();
    eventually(Duration::from_secs(30), "the store to recover", || async {
        s.status().healthy.then_some(())
    })
    .await;
    after_recovery(&s, &a).await;
    groups::after_recovery(&s).await;
    drop(s);
    let again = Store::open(&file_opts(&dir)).await.unwrap();
    let new = again.incident(a.new_incident).await.unwrap().unwrap();
    assert_eq!(new.component, "web");
    let open = again.incident(a.open).await.unwrap().unwrap();
    assert_eq!(open.root_cause.as_deref(), Some("disk full"));
    assert_eq!(
        again.maintenances().await.unwrap().len(),
        3,
        "kept, new, next"
    );
}
