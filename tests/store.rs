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
use watchfire::store::{Level, Retention, Store, StoreError, StoreOptions, Write, FILE_NAME};

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
                known: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("newer"), "{e}");
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
