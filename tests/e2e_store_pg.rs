//! The store on a real PostgreSQL: the shared suite, the refused inputs (malformed URL,
//! nothing listening, wrong password, no permission to create tables) and degrading when the
//! server stops, then recovering when it is back.
//!
//! `cargo test --features e2e --test e2e_store_pg`; each test runs its own server with
//! `initdb` and `pg_ctl` (Debian's `postgresql` package, under /usr/lib/postgresql/*/bin) in a
//! temporary directory on a free loopback port, as the `postgres` user when run as root. A
//! missing PostgreSQL fails the tests: they never pass by skipping.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;
mod store_suite;

use std::time::Duration;

use common::eventually;
use pg::{Pg, PASSWORD};
use store_suite::*;
use watchfire::state::Health;
use watchfire::store::{Retention, Store, StoreError, StoreOptions, Write};

/// Opens a store on database `db` of `pg`.
async fn store_on(pg: &Pg, db: &str) -> Result<Store, StoreError> {
    Store::open(&url_opts(&pg.url(db))).await
}

fn url_opts(url: &str) -> StoreOptions {
    StoreOptions {
        path: None,
        url: Some(url.to_string()),
        retention: Retention::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_on_postgres() {
    let pg = Pg::start();
    // One database per check of the suite.
    for i in 0..11 {
        pg.sql(&format!("CREATE DATABASE t{i}"));
    }
    let n = std::sync::atomic::AtomicUsize::new(0);
    all(|| async {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        store_on(&pg, &format!("t{i}")).await.unwrap()
    })
    .await;
    let s = store_on(&pg, "t0").await.unwrap();
    assert_eq!(s.status().backend, "postgres");
    assert!(format!("{s:?}").contains("postgres"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_inputs_say_what_and_where_without_the_password() {
    let pg = Pg::start();
    let no_secret = |e: &StoreError| {
        let m = e.to_string();
        assert!(!m.contains(PASSWORD) && !m.contains("limited-pw"), "{m}");
        m
    };
    for bad in [
        "postgres://",
        "mysql://u:p@127.0.0.1/db",
        "postgres//nohost",
    ] {
        let e = Store::open(&url_opts(bad)).await.unwrap_err();
        assert!(matches!(e, StoreError::BadUrl { .. }), "{bad}: {e:?}");
        no_secret(&e);
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Store::open(&url_opts(&format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{closed}/postgres"
    )))
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e:?}");
    assert!(no_secret(&e).contains(&closed.to_string()));

    let wrong = format!(
        "postgres://postgres:wrong-pw@127.0.0.1:{}/postgres",
        pg.port
    );
    let e = Store::open(&url_opts(&wrong)).await.unwrap_err();
    assert!(matches!(e, StoreError::Auth { .. }), "{e:?}");
    assert!(!e.to_string().contains("wrong-pw"), "{e}");

    pg.sql("CREATE DATABASE other");
    let limited = format!(
        "postgres://limited:limited-pw@127.0.0.1:{}/postgres",
        pg.port
    );
    let e = Store::open(&url_opts(&limited)).await.unwrap_err();
    assert!(matches!(e, StoreError::Permission { .. }), "{e:?}");
    no_secret(&e);

    pg.sql("CREATE DATABASE foreign_db");
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&pg.url("foreign_db"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE invoices (id BIGINT)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    }
    let e = store_on(&pg, "foreign_db").await.unwrap_err();
    assert!(matches!(e, StoreError::Foreign { .. }), "{e:?}");
    assert!(no_secret(&e).contains("invoices"));
}

/// PostgreSQL stops mid-run: writes never wait, the store says it is degraded and answers
/// from memory; PostgreSQL starts again: the store writes there again, with what came
/// meanwhile replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_degrades_to_memory_and_recovers() {
    let pg = Pg::start();
    let s = store_on(&pg, "postgres").await.unwrap();
    s.write(Write::TargetState(target("web", Health::Up, DAY0)));
    s.write(Write::Minute(minute("web", DAY0, 1)));
    s.flush().await;
    assert!(s.status().healthy);

    pg.down();
    let started = std::time::Instant::now();
    for i in 0..1000 {
        s.write(Write::Transition(transition("web", DAY0 + i, "down")));
    }
    s.write(Write::TargetState(target("web", Health::Down, DAY0 + 1)));
    s.write(Write::Minute(minute("web", DAY0 + 60_000, 2)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    s.flush().await;
    eventually(
        Duration::from_secs(20),
        "the store to say it is degraded",
        || async { (!s.status().healthy).then_some(()) },
    )
    .await;
    assert_eq!(
        metric(&s, "watchfire_store_up{backend=\"postgres\"}"),
        Some(0.0)
    );
    assert!(!s.status().error.unwrap_or_default().contains(PASSWORD));
    assert_eq!(
        s.target_states().await.unwrap(),
        vec![target("web", Health::Down, DAY0 + 1)]
    );
    assert_eq!(
        s.transitions(None, DAY0, DAY0 + 1000, 0)
            .await
            .unwrap()
            .len(),
        1000
    );

    pg.up();
    eventually(Duration::from_secs(90), "the store to recover", || async {
        s.status().healthy.then_some(())
    })
    .await;
    assert_eq!(
        metric(&s, "watchfire_store_up{backend=\"postgres\"}"),
        Some(1.0)
    );
    assert_eq!(
        s.transitions(None, DAY0, DAY0 + 1000, 0)
            .await
            .unwrap()
            .len(),
        1000
    );
    let hour = s
        .rollups(watchfire::store::Level::Hour, DAY0, DAY0 + 1, Some("web"))
        .await
        .unwrap();
    let both = [minute("web", DAY0, 1), minute("web", DAY0 + 60_000, 2)];
    assert_eq!(hour, expected(&both, watchfire::store::Level::Hour));
    assert_eq!(s.target_states().await.unwrap()[0].health, Health::Down);
}

/// PostgreSQL stops while incidents and maintenance windows are made and changed: they are in
/// PostgreSQL, with their ids, once it is back, and its sequences continue past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_and_windows_made_while_degraded_are_replayed_into_postgres() {
    let pg = Pg::start();
    let s = store_on(&pg, "postgres").await.unwrap();
    let mut a = before_degrading(&s).await;
    pg.down();
    s.write(Write::TargetState(target("web", Health::Down, DAY0 + 1)));
    s.flush().await;
    eventually(
        Duration::from_secs(20),
        "the store to say it is degraded",
        || async { (!s.status().healthy).then_some(()) },
    )
    .await;
    while_degraded(&s, &mut a).await;
    groups::while_degraded(&s);
    s.flush().await;
    pg.up();
    eventually(Duration::from_secs(90), "the store to recover", || async {
        s.status().healthy.then_some(())
    })
    .await;
    after_recovery(&s, &a).await;
    groups::after_recovery(&s).await;
}
