//! The quorum observer's tables on a real PostgreSQL of the test's own, with in-process
//! observers standing in for members:
//!
//! - a member's rows stop counting when its heartbeat lapses, while its location's other
//!   member keeps the location fresh;
//! - a view that does not change writes nothing (no row gets a newer transaction id), only the
//!   heartbeat moves; a change writes exactly its row;
//! - incremental reads see another member's change within a round;
//! - a transaction that took its id before a read but committed after it is still read.
//!
//! `cargo test --features e2e --test e2e_cluster_observe`. Missing PostgreSQL fails the tests
//! loudly. Loopback only, deadlines instead of sleeps.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, poll_until};
use pg::Pg;
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use watchfire::cluster::observe::{self, Slot, Snapshot, Source, Timing, View, Who};
use watchfire::config::{self, Config};
use watchfire::state::Health;

const CONFIG: &str = "targets:\n  - { name: a, url: http://127.0.0.1:1/ }\n  - { name: b, url: http://127.0.0.1:1/ }\n";

/// A stand-in for a member's runtime: its views, changed by the test.
struct Member {
    views: Mutex<Vec<View>>,
    config: Arc<Config>,
}

impl Source for Member {
    fn views(&self) -> Vec<View> {
        self.views.lock().unwrap().clone()
    }
    /// The views, hashed: it changes whenever the test changes one.
    fn version(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for v in self.views.lock().unwrap().iter() {
            (&v.target, v.health.as_str(), v.since_ms, &v.reason).hash(&mut h);
        }
        h.finish()
    }
    fn config(&self) -> Arc<Config> {
        self.config.clone()
    }
}

impl Member {
    fn set(&self, target: &str, health: Health) {
        let mut vs = self.views.lock().unwrap();
        let v = vs.iter_mut().find(|v| v.target == target).expect("a view");
        v.health = health;
        v.since_ms += 1;
    }
}

fn view(target: &str, health: Health) -> View {
    View {
        target: target.to_string(),
        health,
        since_ms: 1,
        reason: (health == Health::Down).then(|| "connect_refused".to_string()),
    }
}

/// A running observer: its views, its quorum snapshots and what stops it.
struct Running {
    member: Arc<Member>,
    slot: Arc<Slot>,
    cancel: CancellationToken,
}

impl Running {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.slot.snapshot().expect("the observer runs")
    }

    /// The locations seeing `target` down, as this member's quorum counts them.
    fn down(&self, target: &str) -> Vec<String> {
        let s = self.snapshot();
        s.verdicts
            .targets
            .get(target)
            .map(|v| v.down.clone())
            .unwrap_or_default()
    }
}

async fn observer(
    url: &str,
    location: &str,
    member: &str,
    views: Vec<View>,
    lease: Duration,
) -> Running {
    let config = Arc::new(config::load_str("w.yaml", CONFIG).expect("config"));
    let m = Arc::new(Member {
        views: Mutex::new(views),
        config,
    });
    let slot = Arc::new(Slot::default());
    let cancel = CancellationToken::new();
    let conn = observe::connect(url).await.expect("connect");
    observe::start(
        m.clone(),
        slot.clone(),
        url.to_string(),
        conn,
        Who {
            location: location.into(),
            member: member.into(),
        },
        Timing::for_lease(lease),
        cancel.clone(),
    );
    Running {
        member: m,
        slot,
        cancel,
    }
}

async fn db(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(url)
        .await
        .expect("the test connects to PostgreSQL")
}

/// Waits until `r` has read the database at least `rounds` polls after now.
async fn rounds(r: &Running, rounds: i64, poll: Duration) {
    let start = r.snapshot().at_ms;
    let want = start + rounds * poll.as_millis() as i64;
    eventually(Duration::from_secs(30), "observer rounds", || async {
        (r.snapshot().at_ms >= want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_rows_stop_counting_when_its_heartbeat_lapses() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let lease = Duration::from_secs(3);
    // Location x: x1 probes a (down), x2 probes b (up); location y probes both.
    let x1 = observer(&url, "x", "x1", vec![view("a", Health::Down)], lease).await;
    let x2 = observer(&url, "x", "x2", vec![view("b", Health::Up)], lease).await;
    let y = observer(
        &url,
        "y",
        "y1",
        vec![view("a", Health::Down), view("b", Health::Up)],
        lease,
    )
    .await;
    eventually(Duration::from_secs(10), "x and y see a down", || async {
        (y.down("a") == ["x", "y"]).then_some(())
    })
    .await;
    x1.cancel.cancel();
    let stopped = Instant::now();
    eventually(
        lease + Duration::from_secs(5),
        "x1's row of a stops counting",
        || async { (y.down("a") == ["y"]).then_some(()) },
    )
    .await;
    let took = stopped.elapsed();
    let s = y.snapshot();
    let x = &s.verdicts.locations["x"];
    assert_eq!(x.health.as_str(), "ok", "x2 keeps location x fresh: {x:?}");
    // The last heartbeat came at most a refresh (lease / 3) before the stop.
    assert!(
        took + lease / 3 + Duration::from_millis(200) >= lease,
        "x1's row stopped counting {took:?} after x1 stopped, before its lease {lease:?} could end"
    );
    assert!(
        took <= lease + Duration::from_secs(3),
        "x1's row counted {took:?} after x1 stopped (lease {lease:?})"
    );
    // Its row is still there: nothing rewrote or deleted it, it just stopped counting.
    let pool = db(&url).await;
    let writer: String = sqlx::query_scalar(
        "SELECT member FROM cluster_observations WHERE location = 'x' AND target = 'a'",
    )
    .fetch_one(&pool)
    .await
    .expect("x1's row");
    assert_eq!(writer, "x1");
    for r in [x2, y] {
        r.cancel.cancel();
    }
}

/// Rows of `cluster_observations` written by transactions after `xid`.
async fn written_after(pool: &sqlx::PgPool, xid: &str) -> Vec<String> {
    sqlx::query(
        "SELECT location || '/' || target FROM cluster_observations \
         WHERE xid > $1::text::xid8 ORDER BY 1",
    )
    .bind(xid)
    .fetch_all(pool)
    .await
    .expect("rows")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect()
}

async fn now_xid(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(pool)
        .await
        .expect("xid")
}

async fn beat_ms(pool: &sqlx::PgPool, member: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM beat_at) * 1000)::bigint FROM cluster_observers WHERE member = $1",
    )
    .bind(member)
    .fetch_one(pool)
    .await
    .expect("a heartbeat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_verdict_writes_nothing_but_the_heartbeat() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let pool = db(&url).await;
    let lease = Duration::from_secs(3);
    let poll = Timing::for_lease(lease).poll;
    let m = observer(
        &url,
        "x",
        "x1",
        vec![view("a", Health::Up), view("b", Health::Up)],
        lease,
    )
    .await;
    eventually(Duration::from_secs(10), "both rows", || async {
        let s = m.snapshot();
        (s.verdicts.targets.len() == 2).then_some(())
    })
    .await;
    let before = now_xid(&pool).await;
    let beat = beat_ms(&pool, "x1").await;
    // Past a heartbeat (lease / 3) and three polls.
    rounds(&m, 4, poll).await;
    assert_eq!(
        written_after(&pool, &before).await,
        Vec::<String>::new(),
        "unchanged views were written again"
    );
    assert!(
        beat_ms(&pool, "x1").await > beat,
        "the heartbeat is renewed"
    );
    // A change writes exactly its own row.
    let before = now_xid(&pool).await;
    m.member.set("b", Health::Down);
    eventually(Duration::from_secs(10), "b's change written", || async {
        (!written_after(&pool, &before).await.is_empty()).then_some(())
    })
    .await;
    rounds(&m, 2, poll).await;
    assert_eq!(written_after(&pool, &before).await, ["x/b"]);
    m.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_reads_see_another_members_change_within_a_round() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    let lease = Duration::from_secs(3);
    let poll = Timing::for_lease(lease).poll;
    let views = || vec![view("a", Health::Up), view("b", Health::Up)];
    let x = observer(&url, "x", "x1", views(), lease).await;
    let y = observer(&url, "y", "y1", views(), lease).await;
    eventually(Duration::from_secs(10), "y sees both locations", || async {
        let s = y.snapshot();
        let a = s.verdicts.targets.get("a")?;
        (a.up.len() == 2).then_some(())
    })
    .await;
    for (target, health) in [("a", Health::Down), ("a", Health::Up), ("b", Health::Down)] {
        x.member.set(target, health);
        let changed = Instant::now();
        eventually(Duration::from_secs(10), "y sees x's change", || async {
            let s = y.snapshot();
            let v = s.verdicts.targets.get(target)?;
            let seen = if health == Health::Down {
                v.down.contains(&"x".to_string())
            } else {
                v.up.contains(&"x".to_string())
            };
            seen.then_some(())
        })
        .await;
        // x writes at its next poll, y reads at its next one.
        let took = changed.elapsed();
        assert!(
            took <= 2 * poll + Duration::from_millis(500),
            "y saw x's change of {target} to {health:?} after {took:?} (poll {poll:?})"
        );
    }
    x.cancel.cancel();
    y.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_commits_after_a_later_one_is_still_read() {
    use sqlx::Connection as _;
    let pg = Pg::start();
    let url = pg.url("postgres");
    let lease = Duration::from_secs(10);
    let poll = Timing::for_lease(lease).poll;
    let y = observer(
        &url,
        "y",
        "y1",
        vec![view("a", Health::Up), view("b", Health::Up)],
        lease,
    )
    .await;
    eventually(Duration::from_secs(10), "y's own rows", || async {
        (y.snapshot().verdicts.targets.len() == 2).then_some(())
    })
    .await;
    let pool = db(&url).await;
    sqlx::query("INSERT INTO cluster_observers (location, member, beat_at) VALUES ('z', 'z1', clock_timestamp())")
        .execute(&pool)
        .await
        .expect("z's heartbeat");
    let insert =
        "INSERT INTO cluster_observations (location, target, health, reason, since_ms, member, xid)
                  VALUES ('z', $1, $2, NULL, 1, 'z1', pg_current_xact_id())";
    // The early transaction takes its id first and stays open...
    let mut early = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut tx = early.begin().await.expect("begin");
    sqlx::query(insert)
        .bind("a")
        .bind("down")
        .execute(&mut *tx)
        .await
        .expect("the early write");
    // ... while a later one commits and is read.
    sqlx::query(insert)
        .bind("b")
        .bind("up")
        .execute(&pool)
        .await
        .expect("the later write");
    eventually(
        Duration::from_secs(10),
        "y reads the later write",
        || async {
            let s = y.snapshot();
            let b = s.verdicts.targets.get("b")?;
            b.up.contains(&"z".to_string()).then_some(())
        },
    )
    .await;
    rounds(&y, 2, poll).await;
    assert!(
        !y.down("a").contains(&"z".to_string()),
        "an uncommitted row was read"
    );
    tx.commit().await.expect("commit");
    let committed = Instant::now();
    let seen = poll_until(Duration::from_secs(10), || async {
        y.down("a").contains(&"z".to_string()).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the row committed out of order was never read"
    );
    assert!(committed.elapsed() <= 2 * poll + Duration::from_millis(500));
    y.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_members_gone_for_an_hour_left_behind_is_swept() {
    let pg = Pg::start();
    let url = pg.url("postgres");
    // The tables, then what three members left: `gone` two hours ago (its location has no
    // other member), `late` ten minutes ago in location y (within the hour: kept).
    drop(observe::connect(&url).await.expect("the tables"));
    let pool = db(&url).await;
    for (location, member, ago) in [("gone", "g1", "2 hours"), ("y", "late", "10 minutes")] {
        sqlx::query(&format!(
            "INSERT INTO cluster_observers (location, member, beat_at)
             VALUES ($1, $2, now() - interval '{ago}')"
        ))
        .bind(location)
        .bind(member)
        .execute(&pool)
        .await
        .expect("a heartbeat row");
        sqlx::query(
            "INSERT INTO cluster_observations (location, target, health, since_ms, member)
             VALUES ($1, 'a', 'down', 1, $2)",
        )
        .bind(location)
        .bind(member)
        .execute(&pool)
        .await
        .expect("an observation row");
    }
    let lease = Duration::from_secs(3);
    let x = observer(&url, "x", "x1", vec![view("a", Health::Up)], lease).await;
    let left = |pool: sqlx::PgPool| async move {
        let beats: Vec<String> =
            sqlx::query_scalar("SELECT member FROM cluster_observers ORDER BY member")
                .fetch_all(&pool)
                .await
                .expect("heartbeats");
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT location FROM cluster_observations ORDER BY location")
                .fetch_all(&pool)
                .await
                .expect("observations");
        (beats, rows)
    };
    let swept = poll_until(Duration::from_secs(10), || {
        let pool = pool.clone();
        async move { (left(pool).await.0 == ["late", "x1"]).then_some(()) }
    })
    .await;
    let (beats, rows) = left(pool.clone()).await;
    assert!(
        swept.is_some(),
        "not swept: heartbeats {beats:?}, rows of {rows:?}"
    );
    // x1 beat and wrote its row in the round that swept first.
    assert_eq!(
        rows,
        ["x", "y"],
        "gone's row is deleted, x's written, y's kept"
    );
    x.cancel.cancel();
}
