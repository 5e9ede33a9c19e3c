//! The failover groups' rollups in the shared store suite: slices summed into minutes, hours
//! and days; read by group and range; pruned past retention; replayed after degradation.

use std::collections::BTreeMap;

use watchfire::store::{GroupRollup, Level, Millis, Store, Write};

use super::DAY0;

/// A slice of `group` at `start` with figures from `seed`.
pub fn slice(group: &str, start: Millis, seed: u64) -> GroupRollup {
    GroupRollup {
        group: group.to_string(),
        start: start - start.rem_euclid(60_000),
        observed_ms: 5_000,
        down_ms: (seed % 3) as i64 * 1_000,
        maintenance_ms: (seed % 2) as i64 * 500,
        requests: 40 + seed % 17,
        failed_requests: seed % 5,
        switches: seed % 2,
    }
}

/// What the slices `ss` sum to at `level`, by group then start.
pub fn expected(ss: &[GroupRollup], level: Level) -> Vec<GroupRollup> {
    let mut acc: BTreeMap<(String, Millis), GroupRollup> = BTreeMap::new();
    for s in ss {
        let start = s.start - s.start.rem_euclid(level.millis());
        acc.entry((s.group.clone(), start))
            .or_insert_with(|| GroupRollup {
                group: s.group.clone(),
                start,
                ..GroupRollup::default()
            })
            .add(s);
    }
    acc.into_values().collect()
}

/// Slices over two days (twelve a minute for some minutes, out of order) sum exactly into
/// minutes, hours and days; a group and a range filter what is read; the targets' rollups are
/// untouched.
pub async fn group_rollups(store: &Store) {
    let mut ss = Vec::new();
    for i in 0..(26 * 60) / 11 {
        let start = DAY0 + 22 * 3_600_000 + i * 11 * 60_000;
        for (k, g) in ["gw", "api"].iter().enumerate() {
            for j in 0..(1 + i as u64 % 12) {
                ss.push(slice(
                    g,
                    start + j as i64 * 5_000,
                    i as u64 * 3 + k as u64 + j,
                ));
            }
        }
    }
    for s in ss.iter().rev() {
        store.write(Write::GroupMinute(s.clone()));
    }
    store.flush().await;
    let range = (DAY0 - 86_400_000, DAY0 + 3 * 86_400_000);
    for level in [Level::Minute, Level::Hour, Level::Day] {
        let got = store
            .group_rollups(level, range.0, range.1, None)
            .await
            .unwrap();
        assert_eq!(got, expected(&ss, level), "level {level:?}");
    }
    let day = store
        .group_rollups(Level::Day, DAY0 + 86_400_000, range.1, Some("gw"))
        .await
        .unwrap();
    assert_eq!(day.len(), 1);
    assert_eq!(day[0].group, "gw");
    assert!(store
        .rollups(Level::Minute, range.0, range.1, None)
        .await
        .unwrap()
        .is_empty());
}

/// Group rollups past their level's retention are pruned like the targets'.
pub async fn group_retention(store: &Store) {
    let now = watchfire::store::now_millis();
    let old = now - 3 * 86_400_000;
    let ancient = now - 6 * 365 * 86_400_000;
    for (t, seed) in [(old, 1), (ancient, 2), (now, 3)] {
        store.write(Write::GroupMinute(slice("r", t, seed)));
    }
    store.flush().await;
    store.prune().await;
    let all = (Millis::MIN, Millis::MAX);
    let count = |level| async move {
        store
            .group_rollups(level, all.0, all.1, Some("r"))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(count(Level::Minute).await, 1, "only the current minute");
    assert_eq!(count(Level::Hour).await, 2, "the hour 3 days ago stays");
    assert_eq!(count(Level::Day).await, 2, "the day 6 years ago goes");
}

/// A slice written while degraded: call [`after_recovery`] once the backend is back.
pub fn while_degraded(store: &Store) {
    assert!(!store.status().healthy, "call while degraded");
    store.write(Write::GroupMinute(slice("gw", DAY0 + 60_000, 7)));
}

/// The slice written while degraded reached the backend, with its hour and day.
pub async fn after_recovery(store: &Store) {
    assert!(store.status().healthy, "call after recovery");
    for level in [Level::Minute, Level::Hour, Level::Day] {
        let got = store
            .group_rollups(level, DAY0, DAY0 + 86_400_000, Some("gw"))
            .await
            .unwrap();
        let want = expected(&[slice("gw", DAY0 + 60_000, 7)], level);
        assert_eq!(got, want, "level {level:?}");
    }
}
