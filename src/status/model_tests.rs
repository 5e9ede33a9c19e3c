//! Tests of the view model and of what is rendered from it (HTML, JSON, Atom).

use super::*;
use crate::config::status_page::{PageComponent, PageGroup};
use crate::store::IncidentStatus;

/// Noon, 2026-11-30 UTC.
const NOW: Millis = 1_764_504_000_000;

fn comp(name: &str, targets: &[&str], groups: &[&str]) -> PageComponent {
    PageComponent {
        name: name.into(),
        description: None,
        targets: targets.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

fn rollup(target: &str, start: Millis, down_ms: i64, maintenance_ms: i64) -> Rollup {
    Rollup {
        target: target.into(),
        start,
        probes: 8640,
        failures: (down_ms / 10_000) as u64,
        down_ms,
        maintenance_ms,
        ..Rollup::default()
    }
}

fn inputs(components: Vec<PageComponent>) -> Inputs {
    Inputs {
        page: StatusPage {
            title: "Acme".into(),
            components,
            ..StatusPage::default()
        },
        now: NOW,
        ..Inputs::default()
    }
}

/// Sets failover group `name`'s live state: its active instance and each instance's health.
fn group(i: &mut Inputs, name: &str, active: Option<usize>, instances: &[Health]) {
    let live = GroupLive {
        active,
        instances: instances.to_vec(),
    };
    i.live.groups.insert(name.into(), live);
}

fn incident(id: i64, component: &str, open: bool, impact: Impact) -> Incident {
    Incident {
        id,
        component: component.into(),
        title: format!("Outage {id}"),
        status: if open {
            IncidentStatus::Investigating
        } else {
            IncidentStatus::Resolved
        },
        impact,
        started: NOW - 3_600_000,
        resolved: (!open).then_some(NOW - 1_800_000),
        targets: Vec::new(),
        in_maintenance: false,
        figures: None,
        acknowledged: None,
        root_cause: None,
        resolution: None,
    }
}

#[test]
fn day_bounds_and_ninety_days() {
    assert_eq!(day_start(NOW), NOW - 43_200_000);
    assert_eq!(first_day(NOW), day_start(NOW) - 89 * DAY_MS);
    let v = build(inputs(vec![comp("api", &["api"], &[])]));
    assert_eq!(v.components[0].days.len(), DAYS);
    assert_eq!(v.components[0].days[89].period_ms, 43_200_000);
    assert_eq!(v.components[0].uptime, None, "no data, no uptime");
}

#[test]
fn uptime_is_exact_for_scripted_rollups() {
    let mut i = inputs(vec![comp("api", &["api"], &[])]);
    let today = day_start(NOW);
    i.rollups = vec![
        rollup("api", today - 2 * DAY_MS, 0, 0),
        rollup("api", today - DAY_MS, 864_000, 0),
        rollup("api", today, 60_000, 0),
        // Another target's rows do not count.
        rollup("db", today, 40_000_000, 0),
    ];
    let v = build(i);
    let c = &v.components[0];
    let period = 2 * DAY_MS + 43_200_000;
    let want = 1.0 - 924_000.0 / period as f64;
    assert_eq!(c.uptime, Some(want));
    assert_eq!(c.days[88].bar(), Bar::Minor);
    assert_eq!(c.days[87].bar(), Bar::Operational);
    assert_eq!(c.days[0].bar(), Bar::NoData);
    assert_eq!(c.days[88].uptime(), Some(1.0 - 864_000.0 / DAY_MS as f64));
}

#[test]
fn maintenance_is_excluded_from_uptime() {
    let mut i = inputs(vec![comp("api", &["api"], &[])]);
    let today = day_start(NOW);
    i.rollups = vec![
        rollup("api", today - 2 * DAY_MS, 0, 7_200_000),
        rollup("api", today - DAY_MS, 360_000, 43_200_000),
    ];
    let v = build(i);
    let c = &v.components[0];
    assert_eq!(c.days[87].bar(), Bar::Maintenance);
    assert_eq!(c.days[88].bar(), Bar::Minor);
    assert_eq!(c.days[88].uptime(), Some(1.0 - 360_000.0 / 43_200_000.0));
    // Today has no row: only the two days count.
    let counted = (DAY_MS - 7_200_000) + (DAY_MS - 43_200_000);
    assert_eq!(c.uptime, Some(1.0 - 360_000.0 / counted as f64));
    assert_eq!(
        Totals {
            data: true,
            down_ms: 360_000,
            maintenance_ms: 3_600_000
        }
        .uptime(7_200_000),
        Some(0.9)
    );
}

#[test]
fn major_bar_from_thirty_minutes_down() {
    let d = Day {
        data: true,
        down_ms: MAJOR_DOWN_MS,
        period_ms: DAY_MS,
        ..Day::default()
    };
    assert_eq!(d.bar(), Bar::Major);
}

#[test]
fn component_state_from_its_members() {
    let mut i = inputs(vec![
        comp("both-down", &["a", "b"], &[]),
        comp("one-down", &["a", "c"], &[]),
        comp("up", &["c"], &[]),
        comp("on-backup", &[], &["gw"]),
        comp("none-active", &[], &["gw2"]),
        comp("fresh", &["new"], &[]),
    ]);
    for (t, h) in [
        ("a", Health::Down),
        ("b", Health::Down),
        ("c", Health::Up),
        ("new", Health::Unknown),
    ] {
        i.live.targets.insert(t.into(), h);
    }
    group(&mut i, "gw", Some(1), &[Health::Down, Health::Up]);
    group(&mut i, "gw2", None, &[Health::Down, Health::Down]);
    let v = build(i);
    let got: Vec<&str> = v.components.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(
        got,
        [
            "major_outage",
            "partial_outage",
            "operational",
            "degraded_performance",
            "major_outage",
            "operational"
        ]
    );
    assert_eq!(v.components[5].state, State::Unknown);
    assert_eq!(v.indicator().indicator, "critical");
}

#[test]
fn maintenance_in_progress_and_open_incident_impact() {
    let mut i = inputs(vec![
        comp("api", &["api"], &[]),
        comp("db", &["db"], &[]),
        comp("web", &["web"], &[]),
    ]);
    for t in ["api", "db", "web"] {
        i.live.targets.insert(t.into(), Health::Up);
    }
    i.live.targets.insert("db".into(), Health::Down);
    i.windows = vec![Window {
        name: "DB upgrade".into(),
        components: vec!["db".into()],
        start: NOW - 60_000,
        end: NOW + 60_000,
        source: "config".into(),
    }];
    i.incidents = vec![incident(1, "web", true, Impact::Minor)];
    let v = build(i);
    assert_eq!(v.components[1].state, State::Maintenance);
    assert_eq!(v.components[2].state, State::Degraded);
    assert_eq!(v.components[0].state, State::Operational);
    assert_eq!(v.indicator().indicator, "minor");
    assert_eq!(v.scheduled_windows().count(), 1);
    assert_eq!(window_status(&v.windows[0], NOW), "in_progress");
}

#[test]
fn groups_are_the_worst_of_their_members() {
    let mut i = inputs(vec![comp("a", &["a"], &[]), comp("b", &["b"], &[])]);
    i.page.groups = vec![PageGroup {
        name: "All".into(),
        description: None,
        components: vec!["a".into(), "b".into()],
    }];
    i.live.targets.insert("a".into(), Health::Up);
    i.live.targets.insert("b".into(), Health::Down);
    let today = day_start(NOW);
    i.rollups = vec![
        rollup("a", today - DAY_MS, 60_000, 0),
        rollup("b", today - DAY_MS, 120_000, 0),
    ];
    let v = build(i);
    let g = &v.groups[0];
    assert_eq!(g.state, State::Major);
    assert_eq!(g.members, [0, 1]);
    assert_eq!(g.days[88].down_ms, 120_000);
    assert_eq!(g.days[88].probes, 2 * 8640);
    assert_eq!(v.components[0].group, Some(0));
    assert_eq!(v.find("All").map(|c| c.state), Some(State::Major));
}

#[test]
fn failover_group_history_falls_back_to_its_least_down_instance() {
    let mut i = inputs(vec![comp("gw", &[], &["gw"])]);
    group(&mut i, "gw", Some(0), &[Health::Up, Health::Up]);
    let y = day_start(NOW) - DAY_MS;
    i.rollups = vec![rollup("gw/0", y, 600_000, 0), rollup("gw/1", y, 60_000, 0)];
    let v = build(i);
    assert_eq!(v.components[0].days[88].down_ms, 60_000);
    assert_eq!(v.components[0].state, State::Operational);
}

#[test]
fn failover_group_history_comes_from_its_own_rollups_when_it_has_them() {
    let mut i = inputs(vec![comp("gw", &[], &["gw"])]);
    group(&mut i, "gw", Some(0), &[Health::Up, Health::Up]);
    let y = day_start(NOW) - DAY_MS;
    // Both instances were down an hour, at different times; no instance could take traffic
    // for 5 minutes of it (the group's own row).
    i.rollups = vec![
        rollup("gw/0", y, 3_600_000, 0),
        rollup("gw/1", y, 3_600_000, 0),
    ];
    i.group_rollups = vec![crate::store::GroupRollup {
        group: "gw".into(),
        start: y,
        observed_ms: DAY_MS,
        down_ms: 300_000,
        ..Default::default()
    }];
    let v = build(i);
    let day = v.components[0].days[88];
    assert_eq!(day.down_ms, 300_000);
    assert_eq!(day.probes, 2 * 8640, "probes of both instances");
    assert_eq!(day.bar(), Bar::Minor);
}

#[test]
fn incidents_attach_by_component_target_or_group() {
    let mut i = inputs(vec![
        comp("API", &["api"], &[]),
        comp("Gateway", &[], &["gw"]),
        comp("Other", &["other"], &[]),
    ]);
    group(&mut i, "gw", Some(0), &[Health::Up, Health::Up]);
    let mut by_target = incident(3, "something", false, Impact::Major);
    by_target.targets = vec!["gw/1".into()];
    i.incidents = vec![
        incident(1, "API", true, Impact::Major),
        incident(2, "api", false, Impact::Minor),
        by_target,
    ];
    i.updates = vec![IncidentUpdate {
        id: 10,
        incident: 1,
        at: NOW - 3_000_000,
        status: IncidentStatus::Investigating,
        message: "Detected".into(),
        automatic: true,
        kind: None,
    }];
    let v = build(i);
    let ids = |c: usize| -> Vec<i64> {
        v.components[c]
            .incidents
            .iter()
            .map(|&n| v.incidents[n].incident.id)
            .collect()
    };
    assert_eq!(ids(0), [2, 1]);
    assert_eq!(ids(1), [3]);
    assert!(ids(2).is_empty());
    assert_eq!(v.components[0].state, State::Partial, "open major incident");
    let one = v
        .incidents
        .iter()
        .find(|i| i.incident.id == 1)
        .expect("kept");
    assert_eq!(one.updates.len(), 1);
    assert_eq!(v.active_incidents().count(), 1);
}

fn hostile_view() -> View {
    let evil = "<script>alert(1)</script>";
    let mut i = inputs(vec![comp(evil, &["api"], &[])]);
    i.page.title = "Acme & \"Co\"".into();
    i.live.targets.insert("api".into(), Health::Down);
    let mut inc = incident(7, evil, true, Impact::Critical);
    inc.title = "\"><img src=x onerror=alert(2)>".into();
    inc.figures = Some(r#"{"duration_seconds": 60, "note": "<b>x</b>"}"#.into());
    i.incidents = vec![inc];
    i.updates = vec![IncidentUpdate {
        id: 8,
        incident: 7,
        at: NOW - 60_000,
        status: IncidentStatus::Identified,
        message: "</li><script>bad()</script>".into(),
        automatic: false,
        kind: None,
    }];
    i.windows = vec![Window {
        name: "<i>maint</i>".into(),
        components: Vec::new(),
        start: NOW + 3_600_000,
        end: NOW + 7_200_000,
        source: "api:1".into(),
    }];
    build(i)
}

#[test]
fn html_escapes_hostile_names_and_has_ninety_bars() {
    let v = hostile_view();
    let page = super::super::html::status_page(&v);
    assert!(!page.contains("<script>"), "unescaped script");
    assert!(!page.contains("<img"), "unescaped img");
    assert!(!page.contains("<i>maint"), "unescaped window name");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("Acme &amp; &quot;Co&quot;") || page.contains("Acme &amp; \"Co\""));
    assert_eq!(page.matches("<li class=\"b ").count(), DAYS);
    assert!(page.contains("Scheduled maintenance"));
    let one = super::super::html::incident_page(&v, &v.incidents[0]);
    assert!(!one.contains("<script>") && !one.contains("<b>x"));
    assert!(one.contains("duration seconds"));
}

#[test]
fn summary_json_has_statuspage_fields_and_types() {
    let v = hostile_view();
    let s = serde_json::to_value(super::super::api::summary(&v)).expect("json");
    for k in ["id", "name", "url", "time_zone", "updated_at"] {
        assert!(s["page"][k].is_string(), "page.{k}");
    }
    assert_eq!(s["status"]["indicator"], "critical");
    assert!(s["status"]["description"].is_string());
    let c = &s["components"][0];
    for k in [
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "page_id",
    ] {
        assert!(c[k].is_string(), "component.{k}");
    }
    assert!(c["position"].is_u64() && c["group"].is_boolean() && c["showcase"].is_boolean());
    assert!(c["group_id"].is_null());
    assert_eq!(c["status"], "major_outage");
    let inc = &s["incidents"][0];
    for k in [
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "impact",
        "shortlink",
    ] {
        assert!(inc[k].is_string(), "incident.{k}");
    }
    assert!(inc["resolved_at"].is_null());
    let u = &inc["incident_updates"][0];
    assert_eq!(u["status"], "identified");
    assert!(u["body"].is_string() && u["display_at"].is_string());
    assert_eq!(inc["components"][0]["name"], "<script>alert(1)</script>");
    let m = &s["scheduled_maintenances"][0];
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["impact"], "maintenance");
    assert!(m["scheduled_for"].is_string() && m["scheduled_until"].is_string());
}

#[test]
fn atom_feed_is_well_formed() {
    let v = hostile_view();
    let xml = super::super::feed::atom(&v);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed Atom");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "feed");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2005/Atom")
    );
    for k in ["id", "title", "updated", "author"] {
        assert!(root.children().any(|n| n.has_tag_name(k)), "feed {k}");
    }
    let entries: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("entry"))
        .collect();
    assert_eq!(entries.len(), 2, "one incident, one window");
    let title = entries[0]
        .children()
        .find(|n| n.has_tag_name("title"))
        .and_then(|n| n.text());
    assert_eq!(title, Some("\"><img src=x onerror=alert(2)>"));
    for e in &entries {
        for k in ["id", "title", "updated", "link", "content"] {
            assert!(e.children().any(|n| n.has_tag_name(k)), "entry {k}");
        }
    }
}

#[test]
fn cluster_locations_get_a_section_of_their_own_and_none_without_the_cluster() {
    let mut v = hostile_view();
    let page = super::super::html::status_page(&v);
    assert!(
        !page.contains("id=\"locations\""),
        "no section outside cluster mode"
    );
    v.locations = vec![
        super::LocationRow {
            name: "eu".into(),
            state: "ok",
            targets: 2,
            down: 0,
        },
        super::LocationRow {
            name: "<b>us</b>".into(),
            state: "degraded",
            targets: 2,
            down: 2,
        },
    ];
    let page = super::super::html::status_page(&v);
    assert!(page.contains("id=\"locations\""));
    assert!(page.contains("class=\"location degraded\""));
    assert!(page.contains("Degraded: its views are left out"));
    assert!(page.contains("2 of 2"));
    assert!(page.contains("&lt;b&gt;us&lt;/b&gt;") && !page.contains("<b>us"));
}
