//! Tests of the quorum's pure evaluation.

use super::*;
use crate::config::quorum::QuorumSpec;
use proptest::prelude::*;

const NOW: i64 = 1_000_000;
const LEASE: i64 = 10_000;

fn obs(location: &str, target: &str, health: Health, updated_ms: i64) -> Observation {
    Observation {
        location: location.into(),
        target: target.into(),
        health,
        since_ms: 1_000,
        reason: (health == Health::Down).then(|| "connect_refused".to_string()),
        updated_ms,
    }
}

/// Every location in `locs` sees every target in `targets` as `health`, fresh.
fn all(locs: &[&str], targets: &[&str], health: Health) -> Vec<Observation> {
    let mut out = Vec::new();
    for l in locs {
        for t in targets {
            out.push(obs(l, t, health, NOW));
        }
    }
    out
}

fn eval(o: &[Observation], q: &QuorumConfig) -> Verdicts {
    let groups = vec![(
        "gw".to_string(),
        vec!["gw/0".to_string(), "gw/1".to_string()],
    )];
    evaluate(
        o,
        Context {
            quorum: q,
            groups: &groups,
            now_ms: NOW,
            lease_ms: LEASE,
        },
    )
}

const T: &[&str] = &["health", "predict", "gw/0", "gw/1"];

#[test]
fn one_locations_outage_marks_it_degraded_and_pages_nothing() {
    let mut o = all(&["a", "b"], T, Health::Up);
    o.extend(all(&["c"], T, Health::Down));
    let v = eval(&o, &QuorumConfig::default());
    assert!(v.degraded("c"));
    assert_eq!(v.locations["c"].down_alone, 4);
    for t in T {
        assert_eq!(v.targets[*t].health, Health::Up, "{t}");
        assert_eq!(v.targets[*t].k, 2);
        assert!(v.targets[*t].down.is_empty(), "c's views are left out");
    }
    assert_eq!(v.groups["gw"], Health::Up);
    assert_eq!(v.speaker(), Some("a"));
}

#[test]
fn a_real_outage_seen_everywhere_is_down_and_nobody_is_degraded() {
    let mut o = all(&["a", "b", "c"], &["predict", "gw/1"], Health::Up);
    o.extend(all(&["a", "b", "c"], &["health", "gw/0"], Health::Down));
    let v = eval(&o, &QuorumConfig::default());
    assert_eq!(v.targets["health"].health, Health::Down);
    assert_eq!(v.targets["health"].down, vec!["a", "b", "c"]);
    assert_eq!(
        v.targets["health"].reason.as_deref(),
        Some("connect_refused")
    );
    assert_eq!(v.targets["predict"].health, Health::Up);
    assert!(v.locations.values().all(|l| l.health == LocationHealth::Ok));
    assert_eq!(v.groups["gw"], Health::Up, "one instance is still up");
}

#[test]
fn k_of_n_down_is_down_and_one_less_is_up() {
    let mut o = all(&["a", "b", "c"], &["predict"], Health::Up);
    o.push(obs("a", "health", Health::Down, NOW));
    o.push(obs("b", "health", Health::Up, NOW));
    o.push(obs("c", "health", Health::Up, NOW));
    let v = eval(&o, &QuorumConfig::default());
    assert_eq!(v.targets["health"].health, Health::Up, "1 of 3 < k = 2");
    assert!(
        !v.degraded("a"),
        "a sees half its targets down alone, not most"
    );
    o[4].health = Health::Down;
    let v = eval(&o, &QuorumConfig::default());
    assert_eq!(v.targets["health"].health, Health::Down, "2 of 3 = k");
}

#[test]
fn a_stale_location_counts_as_unknown_neither_up_nor_down() {
    let mut o = all(&["a", "b"], &["health"], Health::Up);
    o.push(obs("c", "health", Health::Down, NOW - LEASE - 1));
    let v = eval(&o, &QuorumConfig::default());
    assert_eq!(v.locations["c"].health, LocationHealth::Stale);
    assert_eq!(
        v.targets["health"].health,
        Health::Up,
        "0 down + 1 unknown < 2"
    );
    // a sees its only target down alone (b sees it up): a is degraded and left out too, so
    // two of three views are unknown and k = 2 could still be met: nothing is decided.
    o[0].health = Health::Down;
    let v = eval(&o, &QuorumConfig::default());
    assert!(v.degraded("a"));
    assert_eq!(v.targets["health"].health, Health::Unknown);
    assert_eq!(v.speaker(), Some("b"));
}

#[test]
fn a_configured_location_that_never_wrote_is_stale_and_counts_in_n() {
    let mut q = QuorumConfig::default();
    q.global.locations = Some(vec!["a".into(), "b".into(), "c".into()]);
    let o = all(&["a"], &["health"], Health::Down);
    let v = eval(&o, &q);
    assert_eq!(v.locations["b"].health, LocationHealth::Stale);
    assert_eq!(v.targets["health"].locations.len(), 3);
    assert_eq!(
        v.targets["health"].health,
        Health::Unknown,
        "1 down, 2 unknown, k = 2"
    );
}

#[test]
fn a_targets_own_locations_and_k_decide_it() {
    let mut q = QuorumConfig::default();
    q.targets.insert(
        "health".into(),
        QuorumSpec {
            k: Some(1),
            locations: Some(vec!["a".into(), "b".into()]),
        },
    );
    let mut o = all(&["a", "b", "c"], &["predict", "other"], Health::Up);
    o.push(obs("a", "health", Health::Up, NOW));
    o.push(obs("b", "health", Health::Down, NOW));
    // c is not one of health's locations: its view is not counted.
    o.push(obs("c", "health", Health::Up, NOW));
    let v = eval(&o, &q);
    assert_eq!(v.targets["health"].health, Health::Down);
    assert_eq!(v.targets["health"].k, 1);
    assert_eq!(v.targets["predict"].k, 2);
}

#[test]
fn a_group_is_down_only_when_every_instance_is() {
    let mut o = all(&["a", "b", "c"], &["gw/0", "gw/1"], Health::Down);
    o.extend(all(&["a", "b", "c"], &["health", "predict"], Health::Up));
    assert_eq!(
        eval(&o, &QuorumConfig::default()).groups["gw"],
        Health::Down
    );
}

#[test]
fn down_unknown_down_is_one_transition() {
    let q = QuorumConfig::default();
    let mut d = Decided::default();
    let up = eval(&all(&["a", "b", "c"], &["health"], Health::Up), &q);
    let t = d.step(&up);
    assert_eq!(t.len(), 1);
    assert_eq!((t[0].from, t[0].to), (Health::Unknown, Health::Up));
    let down = eval(&all(&["a", "b", "c"], &["health"], Health::Down), &q);
    let t = d.step(&down);
    assert_eq!((t[0].from, t[0].to), (Health::Up, Health::Down));
    let mut o = all(&["a"], &["health"], Health::Down);
    o.extend(all(&["b", "c"], &["health"], Health::Unknown));
    let unknown = eval(&o, &q);
    assert_eq!(unknown.targets["health"].health, Health::Unknown);
    assert!(d.step(&unknown).is_empty());
    assert!(d.step(&down).is_empty(), "still the same decision");
    assert_eq!(d.target("health"), Health::Down);
    assert_eq!(d.step(&up)[0].to, Health::Up);
}

#[test]
fn the_speaker_is_the_first_location_that_is_neither_stale_nor_degraded() {
    let mut o = all(&["b", "c"], T, Health::Up);
    o.extend(all(&["a"], T, Health::Down));
    let v = eval(&o, &QuorumConfig::default());
    assert!(v.degraded("a"));
    assert_eq!(v.speaker(), Some("b"));
    assert_eq!(eval(&[], &QuorumConfig::default()).speaker(), None);
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![Just(Health::Up), Just(Health::Down), Just(Health::Unknown)]
}

proptest! {
    /// With 3 to 7 locations and the default k, one location alone, whatever it sees, never
    /// makes a target down that every other location sees up.
    #[test]
    fn one_location_alone_never_makes_a_target_down(
        n in 3usize..=7,
        views in proptest::collection::vec(health(), 1..12),
    ) {
        let locs: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let mut o = Vec::new();
        for (i, h) in views.iter().enumerate() {
            let t = format!("t{i}");
            o.push(obs(&locs[0], &t, *h, NOW));
            for l in &locs[1..] {
                o.push(obs(l, &t, Health::Up, NOW));
            }
        }
        let v = eval(&o, &QuorumConfig::default());
        for tv in v.targets.values() {
            prop_assert_eq!(tv.health, Health::Up);
        }
    }

    /// When every location agrees, the verdict is what they see and nobody is degraded.
    #[test]
    fn agreeing_locations_decide_and_none_is_degraded(
        n in 1usize..=7,
        views in proptest::collection::vec(prop_oneof![Just(Health::Up), Just(Health::Down)], 1..12),
    ) {
        let locs: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let mut o = Vec::new();
        for (i, h) in views.iter().enumerate() {
            for l in &locs {
                o.push(obs(l, &format!("t{i}"), *h, NOW));
            }
        }
        let v = eval(&o, &QuorumConfig::default());
        for (i, h) in views.iter().enumerate() {
            prop_assert_eq!(v.targets[&format!("t{i}")].health, *h);
        }
        prop_assert!(v.locations.values().all(|l| l.health == LocationHealth::Ok));
    }

    /// Down is monotone: turning one more location's view from up to down never turns a down
    /// verdict up.
    #[test]
    fn more_locations_seeing_down_never_undo_a_down_verdict(
        n in 2usize..=7,
        downs in 0usize..=7,
    ) {
        let locs: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
        let verdict = |d: usize| {
            // Two targets everyone sees up keep the locations from looking degraded.
            let mut o = Vec::new();
            for (i, l) in locs.iter().enumerate() {
                let h = if i < d { Health::Down } else { Health::Up };
                o.push(obs(l, "t", h, NOW));
                o.push(obs(l, "u", Health::Up, NOW));
                o.push(obs(l, "w", Health::Up, NOW));
            }
            eval(&o, &QuorumConfig::default()).targets["t"].health
        };
        let d = downs.min(n);
        if verdict(d) == Health::Down && d < n {
            prop_assert_eq!(verdict(d + 1), Health::Down);
        }
        prop_assert_eq!(verdict(d) == Health::Down, d >= crate::config::quorum::default_k(n));
    }
}
