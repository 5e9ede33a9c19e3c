use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use super::*;
use crate::notify::config::{runbook_tiers, Tier};
use crate::store::Impact;

/// 2026-01-01T10:00:00Z.
const T0: Millis = 1_767_261_600_000;
const SEC: Millis = 1_000;
const MIN: Millis = 60_000;

fn route(receivers: &[&str], wait: Millis) -> Route {
    Route {
        matchers: BTreeMap::new(),
        receivers: receivers.iter().map(|r| r.to_string()).collect(),
        wait: Duration::from_millis(wait as u64),
    }
}

fn config(routes: Vec<Route>) -> NotifyConfig {
    NotifyConfig {
        routes,
        escalation: runbook_tiers(),
        ..NotifyConfig::default()
    }
}

/// An incident's whole history; [`History::at`] is what the planner sees at a time.
#[derive(Debug, Clone)]
struct History {
    incident: Incident,
    updates: Vec<IncidentUpdate>,
    labels: BTreeMap<String, String>,
    in_maintenance: bool,
}

impl History {
    fn new() -> History {
        let incident = Incident {
            id: 7,
            component: "gw".into(),
            title: "gw is down".into(),
            status: IncidentStatus::Investigating,
            impact: Impact::Major,
            started: T0,
            resolved: None,
            targets: vec!["health".into()],
            in_maintenance: false,
            figures: None,
            acknowledged: None,
            root_cause: None,
            resolution: None,
        };
        let mut h = History {
            incident,
            updates: Vec::new(),
            labels: [("component".to_string(), "gw".to_string())].into(),
            in_maintenance: false,
        };
        h.update(T0, IncidentStatus::Investigating, true);
        h
    }

    fn update(&mut self, at: Millis, status: IncidentStatus, automatic: bool) -> i64 {
        let id = self.updates.len() as i64 + 100;
        self.updates.push(IncidentUpdate {
            id,
            incident: self.incident.id,
            at,
            status,
            message: "m".into(),
            automatic,
            kind: None,
        });
        id
    }

    fn resolve(&mut self, at: Millis) {
        self.incident.resolved = Some(at);
        self.update(at, IncidentStatus::Resolved, true);
    }

    /// The planner's input as of `now`: what had happened by then.
    fn plan(&self, config: &NotifyConfig, now: Millis) -> Vec<Due> {
        let mut inc = self.incident.clone();
        let updates: Vec<IncidentUpdate> = self
            .updates
            .iter()
            .filter(|u| u.at <= now)
            .cloned()
            .collect();
        // The incident's resolution as of `now`: the first of the resolving updates it ends
        // with (later `resolved` updates are notes on a resolved incident, as the store keeps
        // it and as `episodes` reads the timeline), unless a later update reopened it.
        inc.resolved =
            resolution(&updates).map(|at| inc.resolved.filter(|r| *r <= now).unwrap_or(at));
        inc.acknowledged = inc.acknowledged.filter(|a| *a <= now);
        let input = Input {
            incident: &inc,
            updates: &updates,
            labels: &self.labels,
            in_maintenance: self.in_maintenance,
            now,
        };
        plan(config, &input)
    }
}

/// Walks the clock from T0 to `to` in `step`s, as the glue's loop does, and returns each key
/// with the time it was first planned and the due message then.
fn walk(
    config: &NotifyConfig,
    h: &History,
    to: Millis,
    step: Millis,
) -> BTreeMap<String, (Millis, Due)> {
    let mut seen = BTreeMap::new();
    let mut now = T0;
    while now <= to {
        for d in h.plan(config, now) {
            assert!(d.at <= now, "{d:?} planned before it is due at {now}");
            seen.entry(d.key.clone()).or_insert((now, d));
        }
        now += step;
    }
    seen
}

fn keys(v: &[Due]) -> Vec<&str> {
    v.iter().map(|d| d.key.as_str()).collect()
}

#[test]
fn declaration_within_one_tick_updates_every_update_every_and_each_tier_at_its_time() {
    let c = config(vec![route(&["oncall", "am"], 0)]);
    let seen = walk(&c, &History::new(), T0 + 31 * MIN, SEC);
    let first = |k: &str| {
        seen.get(k)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("{k}: {seen:?}"))
    };
    assert_eq!(first("inc7:declared"), T0);
    assert_eq!(seen["inc7:declared"].1.receivers, ["oncall", "am"]);
    assert_eq!(first("inc7:status_page"), T0);
    assert_eq!(seen["inc7:status_page"].1.receivers, ["status-page"]);
    for n in 1..=6 {
        assert_eq!(
            first(&format!("inc7:update:{n}")),
            T0 + n * 5 * MIN,
            "update {n}"
        );
    }
    for (i, m) in [(0, 5), (1, 15), (2, 30)] {
        let (t, d) = &seen[&format!("inc7:escalated:{i}")];
        assert_eq!(*t, T0 + m * MIN, "tier {i}");
        assert_eq!(d.tier, Some(i as usize));
        assert_eq!(d.receivers, ["oncall", "am"]);
    }
    assert_eq!(seen.len(), 2 + 6 + 3, "{:?}", seen.keys());
    assert!(seen.values().all(|(_, d)| !d.suppressed));
}

#[test]
fn resolved_is_planned_once_and_stops_updates_and_escalation() {
    let c = config(vec![route(&["oncall"], 0)]);
    let mut h = History::new();
    h.resolve(T0 + 12 * MIN + 30 * SEC);
    let seen = walk(&c, &h, T0 + 40 * MIN, SEC);
    let resolved: Vec<_> = seen.keys().filter(|k| k.contains("resolved")).collect();
    assert_eq!(resolved, ["inc7:resolved"]);
    assert_eq!(seen["inc7:resolved"].0, T0 + 12 * MIN + 30 * SEC);
    assert!(seen.contains_key("inc7:update:2") && !seen.contains_key("inc7:update:3"));
    assert!(seen.contains_key("inc7:escalated:0") && !seen.contains_key("inc7:escalated:1"));
    // After the resolution, every plan holds RESOLVED and no update.
    let late = h.plan(&c, T0 + 50 * MIN);
    assert!(
        late.iter().all(|d| d.kind != Kind::Update),
        "{:?}",
        keys(&late)
    );
    assert_eq!(late.iter().filter(|d| d.kind == Kind::Resolved).count(), 1);
}

#[test]
fn acknowledgement_stops_escalation_and_is_announced_once() {
    let mut c = config(vec![route(&["oncall"], 0)]);
    c.escalation[0].receivers = vec!["owner".into()];
    let mut h = History::new();
    h.incident.acknowledged = Some(T0 + 7 * MIN);
    let seen = walk(&c, &h, T0 + 40 * MIN, SEC);
    assert!(seen.contains_key("inc7:escalated:0"));
    assert!(!seen.contains_key("inc7:escalated:1") && !seen.contains_key("inc7:escalated:2"));
    let (t, d) = &seen["inc7:acknowledged"];
    assert_eq!(*t, T0 + 7 * MIN);
    // The owner was escalated to: they hear of the acknowledgement too.
    assert_eq!(d.receivers, ["oncall", "owner"]);
}

#[test]
fn maintenance_suppresses_every_message() {
    let c = config(vec![route(&["oncall"], 0)]);
    let mut h = History::new();
    h.in_maintenance = true;
    let seen = walk(&c, &h, T0 + 10 * MIN, 10 * SEC);
    assert!(!seen.is_empty());
    assert!(seen.values().all(|(_, d)| d.suppressed), "{seen:?}");
    let mut h = History::new();
    h.incident.in_maintenance = true;
    assert!(h.plan(&c, T0).iter().all(|d| d.suppressed));
}

#[test]
fn an_incident_resolved_before_the_wait_plans_nothing() {
    let c = config(vec![route(&["oncall"], 2 * MIN)]);
    let mut h = History::new();
    h.resolve(T0 + 90 * SEC);
    let seen = walk(&c, &h, T0 + 30 * MIN, SEC);
    assert!(seen.is_empty(), "{seen:?}");
    // Still open after the wait: declared then.
    let seen = walk(&c, &History::new(), T0 + 3 * MIN, SEC);
    assert_eq!(seen["inc7:declared"].0, T0 + 2 * MIN);
}

#[test]
fn after_a_restart_gap_only_the_newest_update_is_planned() {
    let c = config(vec![route(&["oncall"], 0)]);
    let h = History::new();
    let v = h.plan(&c, T0 + 17 * MIN);
    let updates: Vec<_> = v.iter().filter(|d| d.kind == Kind::Update).collect();
    assert_eq!(updates.len(), 1, "{:?}", keys(&v));
    assert_eq!(updates[0].key, "inc7:update:3");
    assert_eq!(updates[0].at, T0 + 15 * MIN);
    // Planned oldest first.
    assert!(v.windows(2).all(|w| w[0].at <= w[1].at), "{:?}", keys(&v));
}

#[test]
fn routes_with_different_waits_declare_each_to_receivers_not_told_yet() {
    let mut narrow = route(&["pd", "chat"], 0);
    narrow.matchers.insert("component".into(), "gw".into());
    let c = config(vec![route(&["chat", "am"], MIN), narrow, route(&["x"], 0)]);
    let mut h = History::new();
    h.labels.insert("component".into(), "other".into());
    // Only the routes without `match` take this one.
    let v = h.plan(&c, T0 + 2 * MIN);
    let declared: Vec<_> = v.iter().filter(|d| d.kind == Kind::Declared).collect();
    assert_eq!(keys(&v)[..2], ["inc7:declared:r2", "inc7:status_page"]);
    assert_eq!(declared[1].key, "inc7:declared:r0");
    assert_eq!(declared[1].receivers, ["chat", "am"]);
    let h = History::new();
    let v = h.plan(&c, T0 + 2 * MIN);
    let declared: BTreeMap<_, _> = v
        .iter()
        .filter(|d| d.kind == Kind::Declared)
        .map(|d| (d.key.as_str(), (d.at, d.receivers.clone())))
        .collect();
    assert_eq!(
        declared["inc7:declared:r1"],
        (T0, vec!["pd".into(), "chat".into()])
    );
    assert_eq!(declared["inc7:declared:r2"], (T0, vec!["x".into()]));
    assert_eq!(declared["inc7:declared:r0"], (T0 + MIN, vec!["am".into()]));
}

#[test]
fn no_matching_route_plans_nothing() {
    let mut r = route(&["pd"], 0);
    r.matchers.insert("severity".into(), "P1".into());
    let c = config(vec![r]);
    assert!(History::new().plan(&c, T0 + 40 * MIN).is_empty());
    assert!(History::new()
        .plan(&NotifyConfig::default(), T0 + 40 * MIN)
        .is_empty());
}

#[test]
fn a_persons_updates_are_notes_but_a_hand_declaration_and_a_resolving_update_are_not() {
    let c = config(vec![route(&["oncall"], 0)]);
    let mut h = History::new();
    let n = h.update(T0 + 2 * MIN, IncidentStatus::Identified, false);
    h.update(T0 + 3 * MIN, IncidentStatus::Resolved, false);
    h.incident.resolved = Some(T0 + 3 * MIN);
    let v = h.plan(&c, T0 + 4 * MIN);
    let notes: Vec<_> = v.iter().filter(|d| d.kind == Kind::Note).collect();
    assert_eq!(notes.len(), 1, "{:?}", keys(&v));
    assert_eq!(notes[0].key, format!("inc7:note:{n}"));
    assert_eq!(notes[0].note, Some(n));
    // Declared by hand: the first update is the declaration.
    let mut h = History::new();
    h.updates[0].automatic = false;
    assert!(h.plan(&c, T0 + MIN).iter().all(|d| d.kind != Kind::Note));
}

#[test]
fn a_flapping_incident_sends_resolved_reopened_and_resolved_again() {
    let c = config(vec![route(&["oncall"], 0)]);
    let mut h = History::new();
    h.update(T0 + 2 * MIN, IncidentStatus::Resolved, true);
    h.update(T0 + 3 * MIN, IncidentStatus::Investigating, true);
    h.resolve(T0 + 4 * MIN);
    let seen = walk(&c, &h, T0 + 6 * MIN, SEC);
    let at = |k: &str| seen[k].0;
    assert_eq!(at("inc7:resolved"), T0 + 2 * MIN);
    assert_eq!(at("inc7:reopened:1"), T0 + 3 * MIN);
    assert_eq!(seen["inc7:reopened:1"].1.kind, Kind::Update);
    assert_eq!(at("inc7:resolved:1"), T0 + 4 * MIN);
    assert_eq!(seen["inc7:declared"].0, T0);
}

#[test]
fn a_reopening_is_the_update_then_and_updates_resume_past_it() {
    let mut c = config(vec![route(&["oncall"], 0)]);
    c.update_every = std::time::Duration::from_secs(60);
    let mut h = History::new();
    h.update(T0 + 150 * SEC, IncidentStatus::Resolved, true);
    h.update(T0 + 270 * SEC, IncidentStatus::Investigating, true);
    let at_reopen = h.plan(&c, T0 + 270 * SEC);
    let updates: Vec<&str> = at_reopen
        .iter()
        .filter(|d| d.kind == Kind::Update)
        .map(|d| d.key.as_str())
        .collect();
    assert_eq!(updates, ["inc7:reopened:1"], "{at_reopen:?}");
    let seen = walk(&c, &h, T0 + 6 * MIN, SEC);
    assert!(
        !seen.contains_key("inc7:update:4"),
        "due in the gap: {seen:?}"
    );
    assert_eq!(seen["inc7:update:5"].0, T0 + 5 * MIN);
}

#[test]
fn tiers_are_named_from_two() {
    let c = config(Vec::new());
    assert_eq!(
        tier_text(&c, 0).as_deref(),
        Some("tier 2: service owner + SRE lead")
    );
    assert_eq!(tier_text(&c, 2).as_deref(), Some("tier 4: executives"));
    assert_eq!(tier_text(&c, 3), None);
}

/// A random history: an incident with a few updates (some by hand, some resolving or
/// reopening), maybe acknowledged, under routes with random waits.
/// When a timeline that ends resolved was resolved: the first of the resolving updates it ends
/// with; `None` when it does not end resolved.
fn resolution(updates: &[IncidentUpdate]) -> Option<Millis> {
    updates
        .iter()
        .rev()
        .take_while(|u| u.status == IncidentStatus::Resolved)
        .last()
        .map(|u| u.at)
}

fn history() -> impl Strategy<Value = (NotifyConfig, History)> {
    let events = proptest::collection::vec((1..3_600i64, 0..4u8), 0..8);
    (
        events,
        proptest::option::of(1..3_600i64),
        0..3i64,
        0..3i64,
        any::<bool>(),
    )
        .prop_map(|(events, ack, w0, w1, maint)| {
            let mut c = config(vec![
                route(&["a", "b"], w0 * MIN),
                route(&["b", "c"], w1 * MIN),
            ]);
            c.escalation.push(Tier {
                after: Duration::from_secs(45 * 60),
                who: "board".into(),
                receivers: vec!["d".into()],
            });
            let mut h = History::new();
            h.in_maintenance = maint;
            h.incident.acknowledged = ack.map(|a| T0 + a * SEC);
            let mut t = T0;
            for (dt, what) in events {
                t += dt * SEC;
                let status = if what == 0 {
                    IncidentStatus::Resolved
                } else {
                    IncidentStatus::Investigating
                };
                h.update(t, status, what >= 2);
            }
            h.incident.resolved = resolution(&h.updates);
            (c, h)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn planning_later_keeps_every_key_but_superseded_updates((c, h) in history(), a in 0..20_000i64, b in 0..20_000i64) {
        let (t1, t2) = (T0 + a.min(b) * SEC, T0 + a.max(b) * SEC);
        let p1 = h.plan(&c, t1);
        let p2 = h.plan(&c, t2);
        for p in [&p1, &p2] {
            let unique: HashSet<&str> = p.iter().map(|d| d.key.as_str()).collect();
            prop_assert_eq!(unique.len(), p.len(), "duplicate keys: {:?}", keys(p));
        }
        let later: HashSet<&str> = p2.iter().map(|d| d.key.as_str()).collect();
        for d in &p1 {
            let superseded = d.key.contains(":update:");
            prop_assert!(superseded || later.contains(d.key.as_str()), "{} planned at {} but not at {}", d.key, t1, t2);
            prop_assert!(d.at <= t1);
        }
    }
}
