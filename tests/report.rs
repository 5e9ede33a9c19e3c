//! `watchfire report` from a store filled directly: uptime from the rollups (maintenance
//! excluded), latency quantiles from the buckets, incidents in the range, the error budget; as
//! Markdown and as JSON.

use std::collections::BTreeMap;

use watchfire::report::{compute, markdown};
use watchfire::store::{
    GroupRollup, Impact, Incident, IncidentStatus, Millis, Rollup, Store, Write, LATENCY_BOUNDS,
};

/// The report of every target in `[from, to)` at a 99.9 % objective, without the config's
/// components.
async fn whole(store: &Store, from: Millis, to: Millis) -> watchfire::report::Report {
    compute(store, from, to, 0.999, &[], &Default::default(), &[])
        .await
        .unwrap()
}

const DAY: Millis = 86_400_000;
const MIN: Millis = 60_000;
/// 2024-05-01T00:00:00Z.
const MAY: Millis = 1_714_521_600_000;

fn minute(target: &str, start: Millis, down_ms: i64, maintenance_ms: i64) -> Write {
    let mut latency = vec![0; LATENCY_BOUNDS.len() + 1];
    latency[0] = 55; // <= 5 ms
    latency[5] = 5; // <= 250 ms
    Write::Minute(Rollup {
        target: target.into(),
        start,
        probes: 60,
        failures: if down_ms > 0 { 30 } else { 0 },
        by_reason: if down_ms > 0 {
            BTreeMap::from([("refused".to_string(), 30)])
        } else {
            BTreeMap::new()
        },
        down_ms,
        maintenance_ms,
        latency,
        latency_sum: 1.0,
        component: None,
    })
}

async fn filled() -> Store {
    let store = Store::memory();
    // Two days of one target; 30 s down on day one, 10 minutes of maintenance on day two.
    for m in 0..(2 * DAY / MIN) {
        let start = MAY + m * MIN;
        let down = if m == 600 { 30_000 } else { 0 };
        let maint = if (1440 + 60..1440 + 70).contains(&m) {
            MIN
        } else {
            0
        };
        store.write(minute("gateway-health", start, down, maint));
    }
    let id = store
        .open_incident(&Incident {
            id: 0,
            component: "gateway-health".into(),
            title: "gateway-health is down".into(),
            status: IncidentStatus::Resolved,
            impact: Impact::Major,
            started: MAY + 600 * MIN,
            resolved: Some(MAY + 600 * MIN + 30_000),
            targets: vec!["gateway-health".into()],
            in_maintenance: false,
            figures: Some(r#"{"failed_probes":30}"#.into()),
            acknowledged: None,
            root_cause: None,
            resolution: None,
        })
        .await
        .unwrap();
    assert!(id > 0);
    store.flush().await;
    store
}

#[tokio::test]
async fn a_two_day_report_counts_thirty_seconds_down_and_excludes_maintenance() {
    let store = filled().await;
    let r = whole(&store, MAY, MAY + 2 * DAY).await;
    assert_eq!(r.targets.len(), 1);
    let t = &r.targets[0];
    assert_eq!(t.down_seconds, 30.0);
    assert_eq!(t.maintenance_seconds, 600.0);
    let counted = 2.0 * 86_400.0 - 600.0;
    let uptime = t.uptime.expect("uptime");
    assert!((uptime - (1.0 - 30.0 / counted)).abs() < 1e-12, "{uptime}");
    assert_eq!(t.probes, 2 * 1440 * 60);
    assert_eq!(t.failures_by_reason.get("refused"), Some(&30));
    let p50 = t.p50_seconds.expect("p50");
    assert!(p50 <= 0.005, "{p50}");
    let p99 = t.p99_seconds.expect("p99");
    assert!(p99 > 0.1 && p99 <= 0.25, "{p99}");
    let budget = 0.001 * counted;
    assert!((t.error_budget_seconds - budget).abs() < 1e-6);
    assert!((t.error_budget_consumed - 30.0 / budget).abs() < 1e-9);
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0].duration_seconds, 30.0);
    assert_eq!(r.components[0].name, "gateway-health");

    let md = markdown(&r);
    assert!(md.starts_with("# Availability report"), "{md}");
    assert!(md.contains("| gateway-health | 99.983 % |"), "{md}");
    assert!(md.contains("refused 30"), "{md}");
    assert!(md.contains("#1 gateway-health is down"), "{md}");

    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["from"], "2024-05-01T00:00:00Z");
    assert_eq!(json["targets"][0]["down_seconds"], 30.0);
    assert_eq!(json["incidents"][0]["figures"]["failed_probes"], 30);
}

#[tokio::test]
async fn a_range_with_edges_reads_the_edge_minutes_and_nothing_outside() {
    let store = filled().await;
    // 10:00 to 10:05 on day one: the minute at 10:00 held the outage.
    let from = MAY + 600 * MIN;
    let r = whole(&store, from, from + 5 * MIN).await;
    let t = &r.targets[0];
    assert_eq!((t.probes, t.down_seconds), (300, 30.0));
    let uptime = t.uptime.expect("uptime");
    assert!((uptime - 0.9).abs() < 1e-12, "{uptime}");
    assert!(t.error_budget_consumed > 1.0, "overspent in five minutes");
    let none = whole(&store, MAY - DAY, MAY).await;
    assert!(none.targets.is_empty() && none.incidents.is_empty());
}

#[tokio::test]
async fn with_the_config_targets_are_grouped_into_their_components_as_incidents_group_them() {
    let store = filled().await;
    let components = [(
        "gateway-health".to_string(),
        "inference-gateway".to_string(),
    )]
    .into_iter()
    .collect();
    let r = compute(&store, MAY, MAY + 2 * DAY, 0.999, &[], &components, &[])
        .await
        .unwrap();
    assert_eq!(r.components.len(), 1);
    assert_eq!(r.components[0].name, "inference-gateway");
    assert_eq!(r.components[0].down_seconds, 30.0);
    assert_eq!(r.targets[0].name, "gateway-health");
}

#[tokio::test]
async fn a_failover_group_is_down_as_its_own_rollups_say_and_components_come_from_the_rows() {
    let store = Store::memory();
    // Two instances, each down 20 minutes of the hour but at different times: traffic always
    // had an instance... except for the 5 minutes the group's own rollups say none could
    // take it. A third target stored with the component `shop`, another without one.
    for m in 0..60 {
        let start = MAY + m * MIN;
        let a = if m < 20 { MIN } else { 0 };
        let b = if (15..35).contains(&m) { MIN } else { 0 };
        for (t, down) in [("gw/0", a), ("gw/1", b)] {
            let Write::Minute(mut r) = minute(t, start, down, 0) else {
                unreachable!()
            };
            r.component = Some("gw".into());
            store.write(Write::Minute(r));
        }
        let Write::Minute(mut r) = minute("web", start, if m == 3 { 6_000 } else { 0 }, 0) else {
            unreachable!()
        };
        r.component = Some("shop".into());
        store.write(Write::Minute(r));
        store.write(minute("loose/0", start, 0, 0));
        store.write(Write::GroupMinute(GroupRollup {
            group: "gw".into(),
            start,
            observed_ms: MIN,
            down_ms: if (15..20).contains(&m) { MIN } else { 0 },
            requests: 100,
            failed_requests: if (15..20).contains(&m) { 100 } else { 0 },
            ..GroupRollup::default()
        }));
    }
    store.flush().await;
    let r = whole(&store, MAY, MAY + 60 * MIN).await;
    let names: Vec<&str> = r.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gw", "loose/0", "shop"], "no name guessing");
    let gw = &r.components[0];
    assert_eq!(gw.down_seconds, 300.0, "the group's own down time");
    assert_eq!(gw.probes, 2 * 60 * 60);
    assert_eq!(r.components[2].down_seconds, 6.0);
}
