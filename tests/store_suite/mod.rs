//! The store test suite, run against every backend: SQLite in memory and in a file
//! (tests/store.rs) and PostgreSQL (tests/e2e_store_pg.rs). Each check takes a fresh store.

#![allow(dead_code)]

pub mod groups;

use std::collections::BTreeMap;

use watchfire::state::Health;
use watchfire::store::{
    add_into, GroupState, Impact, Incident, IncidentQuery, IncidentStatus, IncidentUpdate, Level,
    Maintenance, Millis, NewOutbox, OutboxState, Rollup, Store, StoreError, Subject, TargetState,
    TransitionRecord, Write, LATENCY_BOUNDS,
};

/// A day in 2026, UTC midnight.
pub const DAY0: Millis = 1_780_000_000_000 - 1_780_000_000_000 % 86_400_000;

pub fn target(name: &str, health: Health, since: Millis) -> TargetState {
    TargetState {
        target: name.to_string(),
        health,
        successes: 3,
        failures: if health == Health::Down { 2 } else { 0 },
        since,
        reason: (health == Health::Down).then(|| "timeout".to_string()),
        detail: (health == Health::Down).then(|| "no answer in 5s".to_string()),
    }
}

pub fn transition(name: &str, at: Millis, to: &str) -> TransitionRecord {
    TransitionRecord {
        at,
        subject: Subject::Target,
        name: name.to_string(),
        from: "up".to_string(),
        to: to.to_string(),
        reason: Some("timeout".to_string()),
        detail: None,
    }
}

pub fn incident(component: &str, started: Millis) -> Incident {
    Incident {
        id: 0,
        component: component.to_string(),
        title: format!("{component} is down"),
        status: IncidentStatus::Investigating,
        impact: Impact::Major,
        started,
        resolved: None,
        targets: vec![format!("{component}/a-0"), format!("{component}/b-1")],
        in_maintenance: false,
        figures: None,
        acknowledged: None,
        root_cause: None,
        resolution: None,
    }
}

/// A pseudo-random minute of `target` at `start` (deterministic in `seed`).
pub fn minute(target: &str, start: Millis, seed: u64) -> Rollup {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let probes = 6;
    let failures = next(4);
    let mut by_reason = BTreeMap::new();
    if failures > 0 {
        by_reason.insert("timeout".to_string(), failures);
    }
    let latency: Vec<u64> = (0..=LATENCY_BOUNDS.len()).map(|_| next(3)).collect();
    Rollup {
        target: target.to_string(),
        start,
        probes,
        failures,
        by_reason,
        down_ms: (next(60) * 1000) as i64,
        maintenance_ms: (next(2) * 30_000) as i64,
        latency,
        latency_sum: next(1000) as f64 / 8.0,
        component: Some(format!("{target}-component")),
    }
}

/// States and group states round-trip; a forgotten target's state goes.
pub async fn states(store: &Store) {
    store.write(Write::TargetState(target("web", Health::Up, DAY0)));
    store.write(Write::TargetState(target("db", Health::Down, DAY0 + 5)));
    store.write(Write::TargetState(target("old", Health::Up, DAY0)));
    store.write(Write::TargetState(target("web", Health::Down, DAY0 + 9)));
    store.write(Write::ForgetTarget("old".to_string()));
    let g = GroupState {
        group: "api".to_string(),
        active: Some(1),
        json: r#"{"pin":null}"#.to_string(),
        updated: DAY0 + 7,
    };
    store.write(Write::GroupState(g.clone()));
    store.write(Write::GroupState(GroupState {
        group: "none".to_string(),
        active: None,
        ..g.clone()
    }));
    store.flush().await;
    let t = store.target_states().await.unwrap();
    assert_eq!(
        t,
        vec![
            target("db", Health::Down, DAY0 + 5),
            target("web", Health::Down, DAY0 + 9)
        ]
    );
    let gs = store.group_states().await.unwrap();
    assert_eq!(gs.len(), 2);
    assert_eq!(gs[0], g);
    assert_eq!(gs[1].active, None);
}

/// Transitions by name and range, oldest first, the newest `limit`.
pub async fn transitions(store: &Store) {
    for i in 0..10 {
        store.write(Write::Transition(transition("a", DAY0 + i, "down")));
        store.write(Write::Transition(TransitionRecord {
            subject: Subject::Group,
            ..transition("g", DAY0 + i, "1")
        }));
    }
    store.flush().await;
    let all = store.transitions(None, DAY0, DAY0 + 100, 0).await.unwrap();
    assert_eq!(all.len(), 20);
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
    let a = store
        .transitions(Some("a"), DAY0 + 2, DAY0 + 8, 0)
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|t| t.at - DAY0).collect::<Vec<_>>(),
        [2, 3, 4, 5, 6, 7]
    );
    assert_eq!(a[0], transition("a", DAY0 + 2, "down"));
    let last = store
        .transitions(Some("g"), DAY0, DAY0 + 100, 3)
        .await
        .unwrap();
    assert_eq!(
        last.iter().map(|t| t.at - DAY0).collect::<Vec<_>>(),
        [7, 8, 9]
    );
    assert_eq!(last[0].subject, Subject::Group);
}

/// Incidents, their updates, queries and the not-found errors.
pub async fn incidents(store: &Store) {
    let a = store.open_incident(&incident("api", DAY0)).await.unwrap();
    let b = store
        .open_incident(&incident("db", DAY0 + 10))
        .await
        .unwrap();
    assert_ne!(a, b);
    let mut ia = store.incident(a).await.unwrap().expect("incident a");
    assert_eq!(
        ia,
        Incident {
            id: a,
            ..incident("api", DAY0)
        }
    );
    ia.status = IncidentStatus::Resolved;
    ia.resolved = Some(DAY0 + 5);
    ia.figures = Some(r#"{"down_s":5}"#.to_string());
    ia.in_maintenance = true;
    store.save_incident(&ia).await.unwrap();
    assert_eq!(store.incident(a).await.unwrap(), Some(ia.clone()));
    assert_eq!(store.incident(a + b + 100).await.unwrap(), None);

    let all = store.incidents(&IncidentQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [b, a]);
    let open = store
        .incidents(&IncidentQuery {
            open_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.iter().map(|i| i.id).collect::<Vec<_>>(), [b]);
    let since = store
        .incidents(&IncidentQuery {
            since: Some(DAY0 + 1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
    let one = store
        .incidents(&IncidentQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(one[0].id, b);
    let of = |component: &str, open_only| IncidentQuery {
        open_only,
        since: Some(DAY0),
        component: Some(component.to_string()),
        ..Default::default()
    };
    let ids = |v: Vec<Incident>| v.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(store.incidents(&of("db", true)).await.unwrap()), [b]);
    assert_eq!(ids(store.incidents(&of("api", false)).await.unwrap()), [a]);
    assert!(store.incidents(&of("api", true)).await.unwrap().is_empty());
    assert!(store
        .incidents(&of("nope", false))
        .await
        .unwrap()
        .is_empty());

    let update = |incident, at, automatic| IncidentUpdate {
        id: 0,
        incident,
        at,
        status: IncidentStatus::Identified,
        message: "found it".to_string(),
        automatic,
        kind: None,
    };
    let u1 = store.add_update(&update(a, DAY0 + 2, true)).await.unwrap();
    let u2 = store
        .add_update(&update(b, DAY0 + 11, false))
        .await
        .unwrap();
    let u3 = store.add_update(&update(a, DAY0 + 1, false)).await.unwrap();
    let ups = store.updates(&[a, b]).await.unwrap();
    assert_eq!(ups.iter().map(|u| u.id).collect::<Vec<_>>(), [u3, u1, u2]);
    assert_eq!(
        ups[1],
        IncidentUpdate {
            id: u1,
            ..update(a, DAY0 + 2, true)
        }
    );
    assert_eq!(store.updates(&[b]).await.unwrap().len(), 1);
    assert!(store.updates(&[]).await.unwrap().is_empty());

    let missing = a + b + 100;
    let e = store
        .add_update(&update(missing, DAY0, false))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::NotFound { what: "incident", id } if id == missing),
        "{e}"
    );
    let e = store
        .save_incident(&Incident { id: missing, ..ia })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
}

/// Maintenance windows are added, listed and deleted.
pub async fn maintenance(store: &Store) {
    let m = Maintenance {
        id: 0,
        name: "db upgrade".to_string(),
        components: vec!["db".to_string()],
        start: DAY0,
        end: DAY0 + 3_600_000,
        every: Some("weekly".to_string()),
        tz: "Europe/Paris".to_string(),
    };
    let a = store.add_maintenance(&m).await.unwrap();
    let b = store
        .add_maintenance(&Maintenance {
            components: vec![],
            every: None,
            ..m.clone()
        })
        .await
        .unwrap();
    let all = store.maintenances().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], Maintenance { id: a, ..m });
    assert!(all[1].components.is_empty() && all[1].every.is_none());
    store.delete_maintenance(a).await.unwrap();
    assert_eq!(store.maintenances().await.unwrap()[0].id, b);
    let e = store.delete_maintenance(a).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "maintenance window",
                ..
            }
        ),
        "{e}"
    );
}

/// What the minutes `ms` sum to at `level`, by target then start (the in-memory semantics).
pub fn expected(ms: &[Rollup], level: Level) -> Vec<Rollup> {
    let mut acc: BTreeMap<(String, Millis), Rollup> = BTreeMap::new();
    for m in ms {
        let start = m.start - m.start.rem_euclid(level.millis());
        let r = acc
            .entry((m.target.clone(), start))
            .or_insert_with(|| Rollup {
                target: m.target.clone(),
                start,
                ..Rollup::default()
            });
        add_into(r, m);
    }
    acc.into_values().collect()
}

/// Minutes over two days, written out of order and some twice, sum exactly into minutes,
/// hours and days.
pub async fn downsampling(store: &Store) {
    let mut ms = Vec::new();
    for i in 0..(26 * 60) / 7 {
        let start = DAY0 + 22 * 3_600_000 + i * 7 * 60_000;
        for t in ["a", "b"] {
            ms.push(minute(t, start, (i as u64) * 2 + (t == "b") as u64));
        }
    }
    // A duplicate minute is added into the same row.
    ms.push(minute("a", DAY0 + 22 * 3_600_000, 999));
    for m in ms.iter().rev() {
        store.write(Write::Minute(m.clone()));
    }
    store.flush().await;
    let range = (DAY0 - 86_400_000, DAY0 + 3 * 86_400_000);
    for level in [Level::Minute, Level::Hour, Level::Day] {
        let got = store.rollups(level, range.0, range.1, None).await.unwrap();
        assert_eq!(got, expected(&ms, level), "level {level:?}");
    }
    let day_b = store
        .rollups(Level::Day, DAY0 + 86_400_000, range.1, Some("b"))
        .await
        .unwrap();
    assert_eq!(day_b.len(), 1);
    assert_eq!(day_b[0].start, DAY0 + 86_400_000);
    let hours = store
        .rollups(
            Level::Hour,
            DAY0 + 23 * 3_600_000,
            DAY0 + 24 * 3_600_000,
            Some("a"),
        )
        .await
        .unwrap();
    assert_eq!(hours.len(), 1);
}

/// Rollups past their level's retention (defaults: minutes 48 h, hours 90 days, days 5 years)
/// are pruned; newer ones stay.
pub async fn retention(store: &Store) {
    let now = watchfire::store::now_millis();
    let old = now - 3 * 86_400_000;
    let ancient = now - 6 * 365 * 86_400_000;
    store.write(Write::Minute(minute("r", old - old % 60_000, 1)));
    store.write(Write::Minute(minute("r", ancient - ancient % 60_000, 2)));
    store.write(Write::Minute(minute("r", now - now % 60_000, 3)));
    store.flush().await;
    store.prune().await;
    let all = (Millis::MIN, Millis::MAX);
    let count = |level| async move {
        store
            .rollups(level, all.0, all.1, Some("r"))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(
        count(Level::Minute).await,
        1,
        "only the current minute stays"
    );
    assert_eq!(count(Level::Hour).await, 2, "the hour 3 days ago stays");
    assert_eq!(count(Level::Day).await, 2, "the day 6 years ago goes");
}

/// Many tasks writing at once lose nothing.
pub async fn concurrent(store: &Store) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                let name = format!("w{w}");
                s.write(Write::Transition(transition(&name, DAY0 + i, "down")));
                s.write(Write::Minute(minute(&name, DAY0 + i * 60_000, i as u64)));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.flush().await;
    let all = store.transitions(None, DAY0, DAY0 + 1000, 0).await.unwrap();
    assert_eq!(all.len(), 8 * 250);
    let minutes = store
        .rollups(Level::Minute, DAY0, DAY0 + 86_400_000, None)
        .await
        .unwrap();
    assert_eq!(minutes.len(), 8 * 250);
    let days = store
        .rollups(Level::Day, DAY0, DAY0 + 86_400_000, None)
        .await
        .unwrap();
    assert_eq!(days.len(), 8);
    assert!(days.iter().all(|d| d.probes == 250 * 6));
    let st = store.status();
    assert!(st.healthy);
    assert_eq!(st.dropped, 0);
}

/// An outbox row to enqueue: `key` for `receiver`, of `incident`, due at `due`.
pub fn outbox_row(key: &str, incident: i64, receiver: &str, due: Millis) -> NewOutbox {
    NewOutbox {
        key: key.to_string(),
        incident,
        receiver: receiver.to_string(),
        kind: "update".to_string(),
        due,
        message: format!(r#"{{"key":"{key}"}}"#),
        state: OutboxState::Pending,
    }
}

/// The keys of `rows`, in order.
pub fn keys(rows: &[watchfire::store::OutboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.key.as_str()).collect()
}

/// The outbox: enqueue deduplicated by key (one transaction), due rows by id and in order
/// per incident, retry / sent / failed transitions, pending counts, bounded prune.
pub async fn outbox(store: &Store) {
    let now = DAY0 + 1_000;
    let first = [
        outbox_row("inc1:declared@a", 1, "a", DAY0),
        outbox_row("inc2:declared@a", 2, "a", DAY0),
        outbox_row("inc1:declared@b", 1, "b", DAY0),
        outbox_row("inc1:update:1@a", 1, "a", DAY0 + 10),
        NewOutbox {
            state: OutboxState::Suppressed,
            ..outbox_row("inc3:declared@a", 3, "a", DAY0)
        },
    ];
    assert_eq!(store.outbox_enqueue(&first, now).await.unwrap(), 5);
    // Planning again: the held keys are ignored, the new one goes in.
    let again = [
        outbox_row("inc1:declared@a", 1, "a", DAY0),
        outbox_row("inc2:update:1@a", 2, "a", DAY0 + 10),
    ];
    assert_eq!(store.outbox_enqueue(&again, now).await.unwrap(), 1);
    assert_eq!(store.outbox_enqueue(&[], now).await.unwrap(), 0);
    assert_eq!(
        store.outbox_keys(1).await.unwrap(),
        ["inc1:declared@a", "inc1:declared@b", "inc1:update:1@a"]
    );
    let all = store.outbox_rows(0, 0).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let r = &all[0];
    assert_eq!(
        (r.state, r.attempts, r.next_attempt, r.created, r.sent_at),
        (OutboxState::Pending, 0, now, now, None)
    );
    assert_eq!(r.message, r#"{"key":"inc1:declared@a"}"#);
    assert_eq!(all[4].state, OutboxState::Suppressed);
    assert_eq!(keys(&store.outbox_rows(1, 2).await.unwrap()).len(), 2);

    // Due: by id, one head per incident, nothing before its next attempt.
    assert!(store.outbox_due("a", now - 1, 64).await.unwrap().is_empty());
    let due = store.outbox_due("a", now, 64).await.unwrap();
    assert_eq!(keys(&due), ["inc1:declared@a", "inc2:declared@a"]);
    assert_eq!(keys(&store.outbox_due("a", now, 1).await.unwrap()).len(), 1);
    assert_eq!(store.outbox_next("a").await.unwrap(), Some(now));
    assert_eq!(store.outbox_next("nobody").await.unwrap(), None);

    // inc1's declaration fails and waits: inc1's update waits behind it, inc2 goes on.
    store
        .outbox_retry(due[0].id, 1, now + 5_000, "503 from the receiver")
        .await
        .unwrap();
    store.outbox_sent(due[1].id, now + 1).await.unwrap();
    let later = store.outbox_due("a", now + 1, 64).await.unwrap();
    assert_eq!(keys(&later), ["inc2:update:1@a"]);
    assert_eq!(store.outbox_next("a").await.unwrap(), Some(now));
    store.outbox_sent(later[0].id, now + 2).await.unwrap();
    assert_eq!(store.outbox_next("a").await.unwrap(), Some(now + 5_000));
    let retried = store.outbox_due("a", now + 5_000, 64).await.unwrap();
    assert_eq!(keys(&retried), ["inc1:declared@a"]);
    assert_eq!(retried[0].attempts, 1);
    assert_eq!(
        retried[0].last_error.as_deref(),
        Some("503 from the receiver")
    );
    store.outbox_failed(retried[0].id, "gave up").await.unwrap();
    assert_eq!(
        keys(&store.outbox_due("a", now + 5_000, 64).await.unwrap()),
        ["inc1:update:1@a"]
    );
    let rows = store.outbox_rows(2, 0).await.unwrap();
    assert!(rows.iter().all(|r| r.state == OutboxState::Sent));
    assert_eq!(rows[0].sent_at, Some(now + 1));
    assert_eq!(rows[0].attempts, 1);
    let failed = &store.outbox_rows(1, 1).await.unwrap()[0];
    assert_eq!(
        (failed.state, failed.attempts, failed.last_error.as_deref()),
        (OutboxState::Failed, 2, Some("gave up"))
    );
    assert_eq!(
        store.outbox_pending().await.unwrap(),
        [("a".to_string(), 1), ("b".to_string(), 1)]
    );
    let e = store.outbox_sent(9_999_999, now).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "outbox row",
                id: 9_999_999
            }
        ),
        "{e}"
    );

    // Prune: finished rows created before the cut go, pending ones and newer ones stay.
    let newer = [NewOutbox {
        state: OutboxState::Suppressed,
        ..outbox_row("inc9:declared@a", 9, "a", now)
    }];
    assert_eq!(store.outbox_enqueue(&newer, now + 10_000).await.unwrap(), 1);
    assert_eq!(store.outbox_prune(now + 1).await.unwrap(), 4);
    assert_eq!(
        keys(&store.outbox_rows(0, 0).await.unwrap()),
        ["inc1:declared@b", "inc1:update:1@a", "inc9:declared@a"]
    );
    assert_eq!(store.outbox_prune(now + 1).await.unwrap(), 0);
}

/// A status-page row delivered into its incident's timeline: the update and the row's state
/// in one transaction, never twice.
pub async fn outbox_into_the_timeline(store: &Store) {
    let id = store.open_incident(&incident("api", DAY0)).await.unwrap();
    let key = format!("inc{id}:status_page@status-page");
    let row = outbox_row(&key, id, "status-page", DAY0);
    store.outbox_enqueue(&[row], DAY0).await.unwrap();
    let due = store.outbox_due("status-page", DAY0, 8).await.unwrap();
    let update = IncidentUpdate {
        id: 0,
        incident: id,
        at: DAY0 + 5,
        status: IncidentStatus::Investigating,
        message: "We are investigating.".to_string(),
        automatic: true,
        kind: None,
    };
    let u = store
        .outbox_sent_as_update(due[0].id, &update, DAY0 + 5)
        .await
        .unwrap();
    assert!(u.is_some());
    let again = store
        .outbox_sent_as_update(due[0].id, &update, DAY0 + 6)
        .await
        .unwrap();
    assert_eq!(again, None, "a row already sent writes nothing");
    let ups = store.updates(&[id]).await.unwrap();
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].message, "We are investigating.");
    assert!(ups[0].automatic);
    let r = &store.outbox_rows(id, 0).await.unwrap()[0];
    assert_eq!((r.state, r.sent_at), (OutboxState::Sent, Some(DAY0 + 5)));

    let orphan = outbox_row(
        "inc999999:status_page@status-page",
        999_999,
        "status-page",
        DAY0,
    );
    store.outbox_enqueue(&[orphan], DAY0).await.unwrap();
    let due = store.outbox_due("status-page", DAY0, 8).await.unwrap();
    let e = store
        .outbox_sent_as_update(
            due[0].id,
            &IncidentUpdate {
                incident: 999_999,
                ..update
            },
            DAY0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::NotFound {
                what: "incident",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        store.outbox_pending().await.unwrap()[0].1,
        1,
        "still pending"
    );
}

/// Runs every check, each on a fresh store from `fresh`.
pub async fn all<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Store>,
{
    states(&fresh().await).await;
    transitions(&fresh().await).await;
    incidents(&fresh().await).await;
    maintenance(&fresh().await).await;
    downsampling(&fresh().await).await;
    retention(&fresh().await).await;
    concurrent(&fresh().await).await;
    outbox(&fresh().await).await;
    outbox_into_the_timeline(&fresh().await).await;
    groups::group_rollups(&fresh().await).await;
    groups::group_retention(&fresh().await).await;
}

/// The value of the metric line starting with `series` in the store's rendered families.
pub fn metric(store: &Store, series: &str) -> Option<f64> {
    let mut out = String::new();
    store.render(&mut watchfire::expo::Writer::new(&mut out));
    out.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Incidents and maintenance windows around a degradation (the phases below, with the
/// backend failing between the first two and back before the last).
#[derive(Debug, Default)]
pub struct AcrossDegradation {
    /// Opened before; acknowledged, updated and resolved while degraded.
    pub open: i64,
    /// Resolved before; untouched.
    pub resolved: i64,
    /// Window made before, kept.
    pub kept_window: i64,
    /// Window made before, deleted while degraded.
    pub deleted_window: i64,
    /// Opened while degraded, with an update.
    pub new_incident: i64,
    /// Made while degraded.
    pub new_window: i64,
}

fn window(name: &str) -> Maintenance {
    Maintenance {
        id: 0,
        name: name.to_string(),
        components: vec!["db".to_string()],
        start: DAY0,
        end: DAY0 + 3_600_000,
        every: None,
        tz: "UTC".to_string(),
    }
}

fn note(incident: i64, at: Millis, status: IncidentStatus, message: &str) -> IncidentUpdate {
    IncidentUpdate {
        id: 0,
        incident,
        at,
        status,
        message: message.to_string(),
        automatic: false,
        kind: None,
    }
}

/// Before the backend fails: an open incident with an update, a resolved one, two windows.
pub async fn before_degrading(store: &Store) -> AcrossDegradation {
    let open = store.open_incident(&incident("api", DAY0)).await.unwrap();
    store
        .add_update(&note(open, DAY0, IncidentStatus::Investigating, "Detected"))
        .await
        .unwrap();
    let resolved = store
        .open_incident(&Incident {
            status: IncidentStatus::Resolved,
            resolved: Some(DAY0 + 1_000),
            ..incident("db", DAY0)
        })
        .await
        .unwrap();
    AcrossDegradation {
        open,
        resolved,
        kept_window: store.add_maintenance(&window("kept")).await.unwrap(),
        deleted_window: store.add_maintenance(&window("deleted")).await.unwrap(),
        ..AcrossDegradation::default()
    }
}

/// While degraded (the store says so): the open incident is acknowledged, updated and
/// resolved, another is opened with an update, a window is added and one deleted; ids made
/// now are above every id the backend had.
pub async fn while_degraded(store: &Store, a: &mut AcrossDegradation) {
    assert!(!store.status().healthy, "call while degraded");
    let mut inc = store
        .incident(a.open)
        .await
        .unwrap()
        .expect("seeded into memory");
    inc.acknowledged = Some(DAY0 + 2_000);
    inc.root_cause = Some("disk full".to_string());
    store.save_incident(&inc).await.unwrap();
    let u = note(a.open, DAY0 + 3_000, IncidentStatus::Resolved, "Fixed");
    store.add_update(&u).await.unwrap();
    inc.status = IncidentStatus::Resolved;
    inc.resolved = Some(DAY0 + 3_000);
    store.save_incident(&inc).await.unwrap();
    a.new_incident = store
        .open_incident(&incident("web", DAY0 + 4_000))
        .await
        .unwrap();
    assert!(a.new_incident > a.resolved, "ids continue: {a:?}");
    let u = note(
        a.new_incident,
        DAY0 + 4_000,
        IncidentStatus::Investigating,
        "Web down",
    );
    store.add_update(&u).await.unwrap();
    a.new_window = store.add_maintenance(&window("new")).await.unwrap();
    assert!(a.new_window > a.deleted_window, "ids continue: {a:?}");
    store.delete_maintenance(a.deleted_window).await.unwrap();
    let names: Vec<String> = store
        .maintenances()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["kept", "new"]);
}

/// After recovery (the store says it is healthy): the backend holds every change made while
/// degraded, with the same ids, and the next ids are past them.
pub async fn after_recovery(store: &Store, a: &AcrossDegradation) {
    assert!(store.status().healthy, "call after recovery");
    let open = store.incident(a.open).await.unwrap().unwrap();
    assert_eq!(open.status, IncidentStatus::Resolved);
    assert_eq!(open.resolved, Some(DAY0 + 3_000));
    assert_eq!(open.acknowledged, Some(DAY0 + 2_000));
    assert_eq!(open.root_cause.as_deref(), Some("disk full"));
    let resolved = store.incident(a.resolved).await.unwrap().unwrap();
    assert_eq!(resolved.resolved, Some(DAY0 + 1_000));
    let new = store.incident(a.new_incident).await.unwrap().unwrap();
    assert_eq!(new.component, "web");
    assert_eq!(new.resolved, None);
    let updates = store.updates(&[a.open, a.new_incident]).await.unwrap();
    let said: Vec<(i64, &str)> = updates
        .iter()
        .map(|u| (u.incident, u.message.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (a.open, "Detected"),
            (a.open, "Fixed"),
            (a.new_incident, "Web down")
        ]
    );
    let windows: Vec<(i64, String)> = store
        .maintenances()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.name))
        .collect();
    assert_eq!(
        windows,
        [(a.kept_window, "kept".into()), (a.new_window, "new".into())]
    );
    // The backend's ids continue past the replayed rows.
    let next = store
        .open_incident(&incident("next", DAY0 + 5_000))
        .await
        .unwrap();
    assert!(next > a.new_incident, "{next} after {a:?}");
    let u = note(next, DAY0 + 5_000, IncidentStatus::Investigating, "Next");
    let next_update = store.add_update(&u).await.unwrap();
    assert!(next_update > updates.iter().map(|u| u.id).max().unwrap());
    let next_window = store.add_maintenance(&window("next")).await.unwrap();
    assert!(next_window > a.new_window);
}
