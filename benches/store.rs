//! Store benchmark: write throughput through the writer, database bytes per target per day,
//! and the reads the status page and the incident API make. Bounded: about a minute per
//! backend in release mode.
//!
//! Run through `bench/store.sh` (which also starts a PostgreSQL of its own), or by hand:
//!
//! ```text
//! cargo bench --bench store                                   # SQLite file in a temp dir
//! STORE_BENCH_PG_URL=postgres://u:pw@127.0.0.1:5432/db cargo bench --bench store
//! ```
//!
//! Method
//! - Writes: `Store::write` of N minute rollups (distinct targets and minutes) and N
//!   transitions, in chunks the queue holds, then `flush`; rate = N / elapsed. Each minute
//!   also updates its hour and day rows (as in production).
//! - Size: 10,000 targets probed every 10 s (6 probes a minute, a few failures, 12 latency
//!   buckets) write SIM_MINUTES minutes each, from a midnight; the database growth (SQLite: the
//!   files, WAL included; PostgreSQL: `pg_database_size` after a CHECKPOINT, minus the size
//!   before) over the rows written (minutes, plus an hour row per started hour and a day row
//!   per target) gives bytes per row, from which bytes per target per day (1,440 minutes, 24
//!   hours, 1 day) and the steady state at the default retention (2 days of minutes, 90 days
//!   of hours, 1,825 days of days) follow.
//! - Group size: the same for 1,000 failover groups' rollups (one row per group per minute,
//!   hour and day, whatever the number of slices summed into it): bytes per group per day.
//! - Reads: 1,000 targets with 90 days of day rows; `rollups(Day, 90 days)` for all of them
//!   (one query), median of 5. 1,000 incidents with 3 updates each; a page =
//!   `incidents(limit 50)` + `updates(ids of the page)`, median of 20.

use std::time::{Duration, Instant};

use watchfire::store::{
    GroupRollup, Impact, Incident, IncidentQuery, IncidentStatus, IncidentUpdate, Level, Retention,
    Rollup, Store, StoreOptions, Subject, TransitionRecord, Write, LATENCY_BOUNDS,
};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_780_000_000_000 - 1_780_000_000_000 % DAY;

fn minute(target: usize, start: i64, i: u64) -> Rollup {
    let failures = i % 5 / 4;
    let mut latency = vec![0u64; LATENCY_BOUNDS.len() + 1];
    latency[3 + (i as usize % 3)] = 6 - failures;
    Rollup {
        target: format!("service-{target:05}.example.internal"),
        start,
        probes: 6,
        failures,
        by_reason: if failures > 0 {
            [("timeout".to_string(), failures)].into()
        } else {
            Default::default()
        },
        down_ms: 0,
        maintenance_ms: 0,
        latency,
        latency_sum: 0.04 * 6.0,
        component: None,
    }
}

async fn drain(store: &Store, writes: impl Iterator<Item = Write>) -> usize {
    let mut n = 0;
    for w in writes {
        store.write(w);
        n += 1;
        if n % 20_000 == 0 {
            store.flush().await;
        }
    }
    store.flush().await;
    assert_eq!(store.status().dropped, 0, "the bench overflowed the queue");
    n
}

async fn throughput(store: &Store) {
    let n = 100_000;
    let t = Instant::now();
    drain(
        store,
        (0..n).map(|i| Write::Minute(minute(i % 1000, T0 + (i / 1000) as i64 * 60_000, i as u64))),
    )
    .await;
    let e = t.elapsed();
    println!(
        "writes: minute rollups      {:>9.0}/s  ({n} in {e:.2?})",
        n as f64 / e.as_secs_f64()
    );
    let t = Instant::now();
    drain(
        store,
        (0..n).map(|i| {
            Write::Transition(TransitionRecord {
                at: T0 + i as i64,
                subject: Subject::Target,
                name: format!("service-{:05}", i % 1000),
                from: "up".into(),
                to: "down".into(),
                reason: Some("timeout".into()),
                detail: Some("no answer within 5s".into()),
            })
        }),
    )
    .await;
    let e = t.elapsed();
    println!(
        "writes: transitions         {:>9.0}/s  ({n} in {e:.2?})",
        n as f64 / e.as_secs_f64()
    );
}

async fn size(store: &Store, minutes: usize, measure: impl AsyncFn() -> u64) {
    let targets = 10_000;
    let before = measure().await;
    let t = Instant::now();
    let n = drain(
        store,
        (0..minutes).flat_map(|m| {
            (0..targets).map(move |i| {
                Write::Minute(minute(i, T0 + 5 * DAY + m as i64 * 60_000, (i + m) as u64))
            })
        }),
    )
    .await;
    let e = t.elapsed();
    let bytes = measure().await.saturating_sub(before);
    // Minutes start at midnight: one day row and one hour row per started hour, per target.
    let rows = n + targets * (minutes.div_ceil(60) + 1);
    let per_row = bytes as f64 / rows as f64;
    println!(
        "size: {targets} targets x {minutes} minutes = {n} minute rows ({rows} rows with hours \
         and days) in {e:.1?}: {bytes} bytes, {per_row:.0} bytes per row"
    );
    let r = Retention::default();
    let keep = |d: Duration, period: f64| d.as_secs_f64() / period;
    let per_day = per_row * (1440.0 + 24.0 + 1.0);
    let steady = per_row * (keep(r.minutes, 60.0) + keep(r.hours, 3600.0) + keep(r.days, 86_400.0));
    println!(
        "size: {per_day:.0} bytes per target per day written; at the default retention \
         {:.0} KB per target, {:.1} GB for 10,000 targets",
        steady / 1e3,
        steady * 10_000.0 / 1e9
    );
}

/// Bytes per failover group per day: 1,000 groups write `minutes` minutes each (one slice a
/// minute: the stored rows are the same however many slices are summed into them).
async fn group_size(store: &Store, minutes: usize, measure: impl AsyncFn() -> u64) {
    let groups = 1_000;
    let before = measure().await;
    let n = drain(
        store,
        (0..minutes).flat_map(|m| {
            (0..groups).map(move |i| {
                Write::GroupMinute(GroupRollup {
                    group: format!("group-{i:04}.example.internal"),
                    start: T0 + 5 * DAY + m as i64 * 60_000,
                    observed_ms: 60_000,
                    down_ms: if (i + m) % 50 == 0 { 5_000 } else { 0 },
                    maintenance_ms: 0,
                    requests: 600 + (i + m) as u64 % 100,
                    failed_requests: (i + m) as u64 % 3,
                    switches: u64::from((i + m) % 200 == 0),
                })
            })
        }),
    )
    .await;
    let bytes = measure().await.saturating_sub(before);
    let rows = n + groups * (minutes.div_ceil(60) + 1);
    let per_row = bytes as f64 / rows as f64;
    let per_day = per_row * (1440.0 + 24.0 + 1.0);
    println!(
        "size: {groups} groups x {minutes} minutes ({rows} rows with hours and days): {bytes} \
         bytes, {per_row:.0} bytes per row, {per_day:.0} bytes per group per day written"
    );
}

async fn reads(store: &Store) {
    drain(
        store,
        (0..90)
            .flat_map(|d| (0..1000).map(move |i| Write::Minute(minute(i, T0 - d * DAY, i as u64)))),
    )
    .await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let v = store
            .rollups(Level::Day, T0 - 90 * DAY, T0 + DAY, None)
            .await
            .unwrap();
        times.push(t.elapsed());
        assert!(v.len() >= 90_000, "{}", v.len());
    }
    times.sort();
    println!(
        "reads: rollups(Day, 90 days) of 1,000 targets: median {:.1?} (of 5)",
        times[2]
    );

    let mut ids = Vec::new();
    for i in 0..1000 {
        let id = store
            .open_incident(&Incident {
                id: 0,
                component: format!("c{}", i % 40),
                title: "down".into(),
                status: IncidentStatus::Resolved,
                impact: Impact::Major,
                started: T0 + i * 60_000,
                resolved: Some(T0 + i * 60_000 + 30_000),
                targets: vec!["a".into(), "b".into()],
                in_maintenance: false,
                figures: Some(r#"{"down_s":30}"#.into()),
                acknowledged: None,
                root_cause: None,
                resolution: None,
            })
            .await
            .unwrap();
        for k in 0..3 {
            store
                .add_update(&IncidentUpdate {
                    id: 0,
                    incident: id,
                    at: T0 + i * 60_000 + k * 10_000,
                    status: IncidentStatus::Investigating,
                    message: "looking".into(),
                    automatic: true,
                    kind: None,
                })
                .await
                .unwrap();
        }
        ids.push(id);
    }
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let page = store
            .incidents(&IncidentQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap();
        let ids: Vec<i64> = page.iter().map(|i| i.id).collect();
        let ups = store.updates(&ids).await.unwrap();
        times.push(t.elapsed());
        assert_eq!(ups.len(), 150);
    }
    times.sort();
    println!(
        "reads: incidents page (50 incidents + their 150 updates): median {:.2?} (of 20)",
        times[10]
    );
}

fn main() {
    let minutes: usize = std::env::var("SIM_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if let Ok(url) = std::env::var("STORE_BENCH_PG_URL") {
            println!("== PostgreSQL");
            let opts = StoreOptions {
                url: Some(url.clone()),
                ..Default::default()
            };
            let store = Store::open(&opts).await.expect("PostgreSQL opens");
            throughput(&store).await;
            let measure = async || {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                sqlx::query("CHECKPOINT").execute(&mut c).await.ok();
                let r = sqlx::query("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
                r.get::<i64, _>(0) as u64
            };
            size(&store, minutes, measure).await;
            group_size(&store, minutes, measure).await;
            reads(&store).await;
        } else {
            println!("== SQLite file");
            let dir = tempfile::tempdir().unwrap();
            let opts = StoreOptions {
                path: Some(dir.path().to_path_buf()),
                ..Default::default()
            };
            let store = Store::open(&opts).await.expect("SQLite opens");
            throughput(&store).await;
            drop(store);
            // A store of its own for the size, so that its file holds only the simulation.
            let sim = tempfile::tempdir().unwrap();
            let store = Store::open(&StoreOptions {
                path: Some(sim.path().to_path_buf()),
                ..Default::default()
            })
            .await
            .unwrap();
            let sim_dir = sim.path().to_path_buf();
            let sim_measure = async || {
                std::fs::read_dir(&sim_dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>()
            };
            size(&store, minutes, sim_measure).await;
            drop(store);
            println!(
                "size: after closing (WAL checkpointed): {} bytes",
                sim_measure().await
            );
            let groups = tempfile::tempdir().unwrap();
            let store = Store::open(&StoreOptions {
                path: Some(groups.path().to_path_buf()),
                ..Default::default()
            })
            .await
            .unwrap();
            let groups_dir = groups.path().to_path_buf();
            let groups_measure = async || {
                std::fs::read_dir(&groups_dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum::<u64>()
            };
            group_size(&store, minutes, groups_measure).await;
            drop(store);
            let store = Store::open(&opts).await.unwrap();
            reads(&store).await;
        }
    });
}
