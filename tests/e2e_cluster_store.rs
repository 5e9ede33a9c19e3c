//! The cluster's use of the shared PostgreSQL store, in-process against a real PostgreSQL of
//! the test's own:
//!
//! - members starting at the same instant on a fresh database create the schema once, under a
//!   lock, and all open;
//! - the outbox is fenced by the `notify` lease: a member whose lease was taken over (moved in
//!   SQL here) can neither enqueue nor mark rows, and each refused write is counted;
//! - a failover group removed by a reload gives its lease up at once, and one added competes;
//! - at r = 2 two members probe the same target, and its minute rollups count each probe once.
//!
//! `cargo test --features e2e --test e2e_cluster_store`. Missing PostgreSQL fails the tests
//! loudly. Loopback only, ports from 127.0.0.1:0, deadlines instead of sleeps.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::time::Duration;

use common::{eventually, poll_until};
use pg::Pg;
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use watchfire::cluster::{Cluster, ClusterOptions};
use watchfire::config;
use watchfire::runtime::leader::{group_lease, Leadership, NOTIFY_LEASE};
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};
use watchfire::store::{
    now_millis, Level, NewOutbox, OutboxState, Retention, Store, StoreError, StoreOptions,
};

async fn store(url: &str) -> Result<Store, StoreError> {
    Store::open(&StoreOptions {
        path: None,
        url: Some(url.to_string()),
        retention: Retention::default(),
    })
    .await
}

fn member(url: &str, id: &str, replication: usize, lease: Duration) -> ClusterOptions {
    ClusterOptions {
        url: url.to_string(),
        id: id.to_string(),
        replication,
        lease,
        location: "default".to_string(),
    }
}

async fn db(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("the test connects to PostgreSQL")
}

/// Lease `name` as the database has it: holder, epoch, and whether it is unexpired.
async fn lease_row(pool: &sqlx::PgPool, name: &str) -> Option<(String, i64, bool)> {
    let row =
        sqlx::query("SELECT holder, epoch, expires_at > now() FROM cluster_leases WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
            .expect("cluster_leases reads")?;
    Some((row.get(0), row.get(1), row.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_stores_opened_at_once_on_a_fresh_database_all_open_and_migrate_once() {
    let pg = Pg::start();
    pg.sql("CREATE DATABASE fresh");
    let url = pg.url("fresh");
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store(&url).await })
        })
        .collect();
    let mut opened = Vec::new();
    for s in starts {
        opened.push(s.await.expect("the opening task ends"));
    }
    for (i, s) in opened.iter().enumerate() {
        assert!(s.is_ok(), "store {i}: {:?}", s.as_ref().err());
    }
    let pool = db(&url).await;
    let row = sqlx::query("SELECT COUNT(*), MAX(version) FROM watchfire_schema")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (rows, version): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(version, rows, "one row per migration, each run once");
    assert!(version >= 2, "the schema reached its version: {version}");
    // Every store works on it.
    for s in opened.into_iter().map(Result::unwrap) {
        assert!(s.target_states().await.is_ok());
    }
}

fn outbox_row(key: &str) -> NewOutbox {
    NewOutbox {
        key: key.to_string(),
        incident: 0,
        receiver: "hook".to_string(),
        kind: "test".to_string(),
        due: 0,
        message: "{}".to_string(),
        state: OutboxState::Pending,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_notify_lease_was_taken_over_cannot_write_or_mark_outbox_rows() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let s = store(&url).await.expect("store opens");
    let cancel = CancellationToken::new();
    let opts = member(&url, "m1", 1, Duration::from_secs(3));
    let l = Leadership::connect(&opts, cancel.clone())
        .await
        .expect("leases connect");
    l.fence_outbox(&s);
    let lease = l.lease(NOTIFY_LEASE);
    eventually(Duration::from_secs(10), "m1 to hold notify", || async {
        lease.leading()
    })
    .await;
    let now = now_millis();
    let added = s
        .outbox_enqueue(&[outbox_row("k1"), outbox_row("k2")], now)
        .await
        .expect("the holder enqueues");
    assert_eq!(added, 2);
    let rows = s.outbox_rows(0, 0).await.unwrap();
    s.outbox_sent(rows[0].id, now)
        .await
        .expect("the holder marks");

    // Another member takes the lease over (as the database would after m1's lease ran out).
    pg.sql(
        "UPDATE cluster_leases SET holder = 'm2', epoch = epoch + 1, \
         expires_at = now() + interval '1 hour' WHERE name = 'notify'",
    );
    let fenced = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Fenced { lease, holder, .. }) => {
            assert_eq!(
                (lease.as_str(), holder.as_str()),
                ("notify", "m1"),
                "{what}"
            );
        }
        other => panic!("{what}: a stale holder's write must be refused, got {other:?}"),
    };
    fenced(
        s.outbox_enqueue(&[outbox_row("k3")], now).await.map(drop),
        "enqueue",
    );
    fenced(s.outbox_sent(rows[1].id, now).await, "sent");
    fenced(s.outbox_retry(rows[1].id, 1, now, "e").await, "retry");
    fenced(s.outbox_failed(rows[1].id, "e").await, "failed");
    assert_eq!(lease.fenced_total(), 4, "every refused write counted");

    let after = s.outbox_rows(0, 0).await.unwrap();
    let seen: Vec<(&str, OutboxState, u32)> = after
        .iter()
        .map(|r| (r.key.as_str(), r.state, r.attempts))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("k1", OutboxState::Sent, 1),
            ("k2", OutboxState::Pending, 0)
        ],
        "nothing written after the takeover"
    );

    // An expired lease, even in this member's name and epoch, refuses too (the lease's loop
    // stopped first, so that it does not take the expired lease again).
    cancel.cancel();
    pg.sql(&format!(
        "UPDATE cluster_leases SET holder = 'm1', epoch = {}, expires_at = now() \
         - interval '1 second' WHERE name = 'notify'",
        lease.epoch()
    ));
    assert!(matches!(
        s.outbox_enqueue(&[outbox_row("k4")], now).await,
        Err(StoreError::Fenced { .. })
    ));
}

fn group_config(name: &str, sims: &[Sim]) -> config::Config {
    let (a, b) = (sims[0].local_addr(), sims[1].local_addr());
    config::load_str(
        "probes.yaml",
        &format!(
            "failover:\n  - name: {name}\n    instances: [http://{a}, http://{b}]\n    \
             check: {{ path: /health, interval: 500ms, timeout: 200ms }}\n"
        ),
    )
    .expect("config loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_by_a_reload_gives_its_lease_up_and_a_group_added_competes() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let mut sims = Vec::new();
    for _ in 0..2 {
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
            .await
            .unwrap();
        sims.push(sim);
    }
    let cancel = CancellationToken::new();
    // A long lease: a lease given up is seen expired at once, one merely left to lapse is not.
    let lease = Duration::from_secs(30);
    let l = Leadership::connect(&member(&url, "m1", 1, lease), cancel.clone())
        .await
        .unwrap();
    let opts = RuntimeOptions {
        leadership: Some(l.clone()),
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(group_config("alpha", &sims), None, opts, cancel.clone())
        .await
        .expect("runtime starts");
    let pool = db(&url).await;
    let held = |name: String| {
        let pool = pool.clone();
        async move {
            lease_row(&pool, &name)
                .await
                .filter(|(h, _, live)| h == "m1" && *live)
        }
    };
    eventually(Duration::from_secs(10), "m1 to hold failover/alpha", || {
        held(group_lease("alpha"))
    })
    .await;

    rt.apply(group_config("beta", &sims))
        .await
        .expect("the reload applies");
    eventually(Duration::from_secs(5), "failover/alpha given up", || {
        let pool = pool.clone();
        async move {
            lease_row(&pool, &group_lease("alpha"))
                .await
                .filter(|(_, _, live)| !live)
        }
    })
    .await;
    eventually(Duration::from_secs(10), "m1 to hold failover/beta", || {
        held(group_lease("beta"))
    })
    .await;
    let names: Vec<String> = l.leases().iter().map(|x| x.name.clone()).collect();
    assert_eq!(
        names,
        vec![group_lease("beta")],
        "alpha's lease is no longer kept"
    );
    // And it stays given up: no renewal comes after.
    let renewed = poll_until(Duration::from_secs(2), || async {
        held(group_lease("alpha")).await
    })
    .await;
    assert!(renewed.is_none(), "failover/alpha renewed after the reload");
    cancel.cancel();
}

/// A config of one target probed every 200 ms.
fn one_target(sim: std::net::SocketAddr) -> config::Config {
    config::load_str(
        "probes.yaml",
        &format!(
            "targets:\n  - name: health\n    url: http://{sim}/health\n    interval: 200ms\n    \
             timeout: 150ms\n"
        ),
    )
    .expect("config loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_count_each_probe_once_in_the_rollups() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    // Both members probe for 25 s at least before the minute ends: start early in a minute.
    eventually(
        Duration::from_secs(40),
        "a minute with 25 s left",
        || async { (now_millis().rem_euclid(60_000) < 35_000).then_some(()) },
    )
    .await;
    let cancel = CancellationToken::new();
    let mut members = Vec::new();
    for id in ["m1", "m2"] {
        let c = Cluster::start(
            member(&url, id, 2, Duration::from_secs(3)),
            format!("127.0.0.1:{id}"),
            cancel.clone(),
        )
        .await
        .expect("joins");
        let s = store(&url).await.unwrap();
        let opts = RuntimeOptions {
            store: s.clone(),
            cluster: Some(c.clone()),
            ..RuntimeOptions::default()
        };
        let rt = Runtime::start(one_target(sim.local_addr()), None, opts, cancel.clone())
            .await
            .expect("runtime starts");
        members.push((c, s, rt));
    }
    eventually(
        Duration::from_secs(10),
        "both members to see both",
        || async {
            members
                .iter()
                .all(|(c, _, rt)| c.view().shard.ids().len() == 2 && rt.targets().len() == 1)
                .then_some(())
        },
    )
    .await;
    let settled = now_millis();
    assert!(
        settled.rem_euclid(60_000) < 50_000,
        "the members settled before the minute's end"
    );
    let end = settled - settled.rem_euclid(60_000) + 60_000;
    let reader = members[0].1.clone();
    let rows = eventually(
        Duration::from_secs(75),
        "the minute's rollup in the store",
        || {
            let reader = reader.clone();
            async move {
                let rows = reader
                    .rollups(Level::Minute, 0, end, Some("health"))
                    .await
                    .ok()?;
                (!rows.is_empty() && rows.iter().any(|r| r.start == end - 60_000)).then_some(rows)
            }
        },
    )
    .await;
    let stored: u64 = rows.iter().map(|r| r.probes).sum();
    let probed: Vec<u64> = members
        .iter()
        .map(|(_, _, rt)| {
            let t = rt.target("health").expect("each member probes it (r = 2)");
            let s = t.stats.lock().unwrap();
            s.probes()
        })
        .collect();
    let most = *probed.iter().max().unwrap();
    assert!(
        probed.iter().all(|p| *p >= 100),
        "both replicas probed: {probed:?}"
    );
    assert!(
        stored > 0 && stored <= most,
        "the rollups hold {stored} probes, more than either replica made ({probed:?}): counted twice"
    );
    for r in &rows {
        assert!(r.down_ms <= 60_000, "{r:?}");
    }
    cancel.cancel();
}

/// A stand-in for a member's runtime: the targets it owns (all up) and the config.
struct Owned {
    views: std::sync::Mutex<Vec<&'static str>>,
    config: std::sync::Arc<watchfire::config::Config>,
}

impl watchfire::cluster::observe::Source for Owned {
    fn views(&self) -> Vec<watchfire::cluster::observe::View> {
        self.views
            .lock()
            .unwrap()
            .iter()
            .map(|t| watchfire::cluster::observe::View {
                target: t.to_string(),
                health: watchfire::state::Health::Up,
                since_ms: 1,
                reason: None,
            })
            .collect()
    }
    /// The owned names, hashed: it changes whenever the test changes them.
    fn version(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.views.lock().unwrap().hash(&mut h);
        h.finish()
    }
    fn config(&self) -> std::sync::Arc<watchfire::config::Config> {
        self.config.clone()
    }
}

/// This location's rows in `cluster_observations`, by target.
async fn observed(pool: &sqlx::PgPool, location: &str) -> Vec<String> {
    sqlx::query("SELECT target FROM cluster_observations WHERE location = $1 ORDER BY target")
        .bind(location)
        .fetch_all(pool)
        .await
        .map(|rows| rows.iter().map(|r| r.get::<String, _>(0)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_of_one_location_keep_each_others_observations() {
    use watchfire::cluster::observe;
    let pg = Pg::start();
    let url = pg.url("postgres");
    let pool = db(&url).await;
    let yaml = "targets:\n  - { name: a, url: http://127.0.0.1:1/ }\n  - { name: b, url: http://127.0.0.1:1/ }\n  - { name: c, url: http://127.0.0.1:1/ }\n  - { name: d, url: http://127.0.0.1:1/ }\n";
    let config = std::sync::Arc::new(config::load_str("w.yaml", yaml).expect("config"));
    let cancel = CancellationToken::new();
    let timing = observe::Timing::for_lease(Duration::from_secs(3));
    let mut sources = Vec::new();
    for (member, owned) in [("m1", vec!["a", "b"]), ("m2", vec!["c", "d"])] {
        let source = std::sync::Arc::new(Owned {
            views: std::sync::Mutex::new(owned),
            config: config.clone(),
        });
        let mut conn = observe::connect(&url).await.expect("connect");
        sqlx::query(observe::SCHEMA)
            .execute(&mut conn)
            .await
            .expect("the table");
        observe::start(
            source.clone(),
            std::sync::Arc::new(observe::Slot::default()),
            url.clone(),
            conn,
            observe::Who {
                location: "eu".into(),
                member: member.into(),
            },
            timing,
            cancel.clone(),
        );
        sources.push(source);
    }
    // Both members write their own targets' rows; neither deletes the other's.
    eventually(
        Duration::from_secs(10),
        "all four rows of location eu",
        || async { (observed(&pool, "eu").await == ["a", "b", "c", "d"]).then_some(()) },
    )
    .await;
    // c moves to the first member: the second stops writing it but leaves the row to its new
    // owner, so the location never loses its view of c.
    sources[1].views.lock().unwrap().retain(|t| *t != "c");
    sources[0].views.lock().unwrap().push("c");
    let stable = poll_until(Duration::from_secs(3), || async {
        (observed(&pool, "eu").await != ["a", "b", "c", "d"]).then_some(())
    })
    .await;
    assert!(
        stable.is_none(),
        "a row was lost: {:?}",
        observed(&pool, "eu").await
    );
    cancel.cancel();
}

/// `n` target states named `t000`...: what a member writes for the targets it takes over.
fn states(n: usize, round: u32, reverse: bool) -> Vec<watchfire::store::TargetState> {
    let mut v: Vec<_> = (0..n)
        .map(|i| watchfire::store::TargetState {
            target: format!("t{i:03}"),
            health: watchfire::state::Health::Up,
            successes: round,
            failures: 0,
            since: 1,
            reason: None,
            detail: None,
        })
        .collect();
    if reverse {
        v.reverse();
    }
    v
}

/// A hand-off: the old and the new owner of the same targets write their states at once, in
/// opposite orders (each in its own queue order). Each batch is one transaction upserting rows
/// of `target_state`; written in queue order, the two take row locks in opposite orders and
/// PostgreSQL aborts one with `deadlock detected`, which sent that member's store to memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_writing_the_same_targets_in_opposite_orders_neither_deadlocks_nor_degrades() {
    use watchfire::store::Write;
    let pg = Pg::start();
    let url = pg.url("postgres");
    let old = store(&url).await.expect("old owner's store");
    let new = store(&url).await.expect("new owner's store");
    for round in 0..10u32 {
        for t in states(300, round, false) {
            old.write(Write::TargetState(t));
        }
        for t in states(300, round, true) {
            new.write(Write::TargetState(t));
        }
        tokio::join!(old.flush(), new.flush());
        for (who, s) in [("old", &old), ("new", &new)] {
            let st = s.status();
            assert!(
                st.healthy && st.write_errors == 0,
                "round {round}: the {who} owner's store failed: {st:?}"
            );
        }
    }
    let rows = new.target_states().await.expect("states");
    assert_eq!(rows.len(), 300);
    assert!(rows.iter().all(|r| r.successes == 9), "the last round wins");
}
