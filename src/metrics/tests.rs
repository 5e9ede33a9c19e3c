use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::config::metrics::PerTarget;
use crate::expo::catalog::TARGET_UP;
use crate::probe::{Outcome, Phases, Reason};
use crate::state::Thresholds;

const T: Thresholds = Thresholds {
    down_after: 3,
    up_after: 2,
};

fn outcome(micros: u64, result: Result<(), Reason>) -> Outcome {
    let planned = Instant::now();
    Outcome {
        planned,
        started: planned,
        finished: planned + Duration::from_micros(micros),
        phases: Phases::default(),
        status: Some(200),
        body_bytes: 10,
        result,
        detail: None,
        reused_connection: false,
    }
}

/// A target with these labels and these probes recorded (duration µs, result).
struct Fixture {
    name: String,
    labels: BTreeMap<String, String>,
    stats: Mutex<TargetStats>,
}

fn fixture(name: &str, labels: &[(&str, &str)], probes: &[(u64, Result<(), Reason>)]) -> Fixture {
    let mut s = TargetStats::default();
    for (us, r) in probes {
        s.record(&outcome(*us, *r), T);
    }
    Fixture {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stats: Mutex::new(s),
    }
}

fn healthy(name: &str, labels: &[(&str, &str)]) -> Fixture {
    let probes: Vec<_> = (0..300).map(|i| (200 + i * 37 % 5000, Ok(()))).collect();
    fixture(name, labels, &probes)
}

fn view(f: &Fixture) -> TargetView<'_> {
    TargetView {
        name: &f.name,
        labels: &f.labels,
        component: &f.name,
        stats: &f.stats,
        prober: None,
    }
}

fn render_with(targets: &[Fixture], cfg: &MetricsConfig) -> String {
    let mut out = String::new();
    let mut w = Writer::new(&mut out);
    render_targets(&mut w, targets.iter().map(view), cfg, SystemTime::now());
    out
}

/// Sample lines naming `target="NAME"`.
fn series_of(text: &str, name: &str) -> Vec<String> {
    let needle = format!("target=\"{name}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

fn cfg(detail: Detail) -> MetricsConfig {
    MetricsConfig {
        detail,
        ..MetricsConfig::default()
    }
}

/// The value of the sample line starting with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .map(|l| l[prefix.len() + 1..].parse().expect("a number"))
}

#[test]
fn target_label_values_are_escaped() {
    let labels = [("env".to_string(), "x\\y\nz".to_string())].into();
    let set = targets::target_labels("a\"b", &labels, None);
    let mut out = String::new();
    Writer::new(&mut out).sample_in(&TARGET_UP, &set, &[], true);
    assert_eq!(
        out,
        "watchfire_target_up{target=\"a\\\"b\",env=\"x\\\\y\\nz\"} 1\n"
    );
}

#[test]
fn in_a_cluster_every_per_target_series_names_its_prober() {
    let t = [healthy("web", &[("team", "a")])];
    let mut out = String::new();
    let views = t.iter().map(|f| TargetView {
        prober: Some("member-1"),
        ..view(f)
    });
    render_targets(
        &mut Writer::new(&mut out),
        views,
        &cfg(Detail::Full),
        SystemTime::now(),
    );
    let series = series_of(&out, "web");
    assert!(series.len() > 9, "{series:#?}");
    for s in &series {
        assert!(s.contains("instance_id=\"member-1\""), "{s}");
    }
    // A target that sets the label itself keeps its own value, once.
    let own = [healthy("db", &[("instance_id", "mine")])];
    let views = own.iter().map(|f| TargetView {
        prober: Some("member-1"),
        ..view(f)
    });
    let mut out = String::new();
    render_targets(
        &mut Writer::new(&mut out),
        views,
        &cfg(Detail::Minimal),
        SystemTime::now(),
    );
    for s in series_of(&out, "db") {
        assert_eq!(s.matches("instance_id=").count(), 1, "{s}");
        assert!(s.contains("instance_id=\"mine\""), "{s}");
    }
}

#[test]
fn a_healthy_target_at_standard_has_nine_series() {
    let t = [healthy("web", &[("team", "a")])];
    let text = render_with(&t, &MetricsConfig::default());
    let series = series_of(&text, "web");
    assert_eq!(series.len(), 9, "{series:#?}");
    for family in [
        "watchfire_target_up{",
        "watchfire_probes_total{",
        "watchfire_probe_duration_seconds_bucket{",
        "watchfire_probe_duration_seconds_sum{",
        "watchfire_probe_duration_seconds_count{",
    ] {
        assert!(series.iter().any(|s| s.starts_with(family)), "{family}");
    }
    let les: Vec<&str> = series
        .iter()
        .filter_map(|s| s.split("le=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(les, ["0.01", "0.1", "0.5", "1", "+Inf"]);
    let p = "watchfire_probe_duration_seconds_count{target=\"web\",team=\"a\"}";
    assert_eq!(value(&text, p), Some(300.0));
}

#[test]
fn a_failing_target_at_standard_adds_one_series_per_failure_reason() {
    let mut probes: Vec<_> = (0..10).map(|_| (500, Ok(()))).collect();
    probes.push((500, Err(Reason::Timeout)));
    probes.push((500, Err(Reason::Refused)));
    let t = [fixture("web", &[], &probes)];
    let text = render_with(&t, &MetricsConfig::default());
    assert_eq!(series_of(&text, "web").len(), 11);
    let p = "watchfire_probes_total{target=\"web\",result=\"timeout\"}";
    assert_eq!(value(&text, p), Some(1.0));
}

#[test]
fn minimal_is_up_and_probes_by_result() {
    let t = [healthy("web", &[])];
    let text = render_with(&t, &cfg(Detail::Minimal));
    let series = series_of(&text, "web");
    assert_eq!(
        series,
        [
            "watchfire_target_up{target=\"web\"} 1",
            "watchfire_probes_total{target=\"web\",result=\"success\"} 300"
        ]
    );
}

#[test]
fn full_has_every_per_target_family_and_the_full_buckets() {
    let t = [healthy("web", &[])];
    let text = render_with(&t, &cfg(Detail::Full));
    let series = series_of(&text, "web");
    for family in [
        "watchfire_probe_success{",
        "watchfire_target_state{",
        "watchfire_probes_skipped_total{",
        "watchfire_target_transitions_total{",
        "watchfire_probe_schedule_lag_seconds_bucket{",
        "watchfire_probe_latency_seconds{",
        "watchfire_probe_latency_from_planned_seconds{",
        "watchfire_probe_last_duration_seconds{",
        "watchfire_probe_last_phase_seconds{",
        "watchfire_probe_last_status_code{",
        "watchfire_probe_last_body_bytes{",
        "watchfire_probe_last_timestamp_seconds{",
        "watchfire_target_last_transition_timestamp_seconds{",
    ] {
        assert!(series.iter().any(|s| s.starts_with(family)), "{family}");
    }
    let buckets = series
        .iter()
        .filter(|s| s.starts_with("watchfire_probe_duration_seconds_bucket{"))
        .count();
    assert_eq!(buckets, DURATION_BUCKETS.len() + 1);
    // up 1, success 1, state 3, probes 1, skipped 1, transitions 2, duration 18, lag 15, two
    // summaries 7 each, last duration 1, phases 5, status 1, body 1, two timestamps.
    assert_eq!(series.len(), 66);
}

#[test]
fn a_target_override_changes_only_that_target() {
    let t = [healthy("a", &[]), healthy("b", &[])];
    let mut c = MetricsConfig::default();
    c.overrides.insert("b".into(), Detail::Full);
    let text = render_with(&t, &c);
    assert_eq!(series_of(&text, "a").len(), 9);
    assert_eq!(series_of(&text, "b").len(), 66);
    let mut c = cfg(Detail::Full);
    c.overrides.insert("a".into(), Detail::Minimal);
    let text = render_with(&t, &c);
    assert_eq!(series_of(&text, "a").len(), 2);
    assert_eq!(series_of(&text, "b").len(), 66);
}

#[test]
fn coarse_buckets_sum_the_full_ones() {
    let mut fine = [0u64; 16];
    for (i, c) in fine.iter_mut().enumerate() {
        *c = 1 << i;
    }
    let c = coarse(&fine);
    // ≤0.01: buckets 0..=4; ≤0.1: 5..=7; ≤0.5: 8..=9; ≤1: 10; +Inf: 11..=15.
    assert_eq!(c, [0x1f, 0xe0, 0x300, 0x400, 0xf800]);
    assert_eq!(c.iter().sum::<u64>(), fine.iter().sum::<u64>());
    for b in STANDARD_BUCKETS {
        assert!(DURATION_BUCKETS.contains(&b), "{b} is a full bound");
    }
}

fn aggregating(labels: &[&str], per_target: PerTarget) -> MetricsConfig {
    MetricsConfig {
        aggregate_by: labels.iter().map(|l| l.to_string()).collect(),
        per_target,
        ..MetricsConfig::default()
    }
}

#[test]
fn failing_only_keeps_down_and_recently_failed_targets() {
    let ok = healthy("ok", &[("team", "a")]);
    let down = fixture("down", &[("team", "a")], &[(1, Err(Reason::Refused)); 5]);
    let mut probes: Vec<_> = (0..3).map(|_| (900, Err(Reason::Status))).collect();
    probes.extend((0..5).map(|_| (900, Ok(()))));
    let recovered = fixture("recovered", &[("team", "b")], &probes);
    let t = [ok, down, recovered];
    let c = aggregating(&["team"], PerTarget::Failing);
    let text = render_with(&t, &c);
    assert!(
        series_of(&text, "ok").is_empty(),
        "healthy: aggregated only"
    );
    assert!(text.contains("watchfire_target_up{target=\"down\",team=\"a\"} 0\n"));
    assert!(
        !series_of(&text, "recovered").is_empty(),
        "failed within the hold"
    );
    // Past the hold, a recovered target is aggregated only.
    let later = SystemTime::now() + c.failing_hold + Duration::from_secs(1);
    let mut out = String::new();
    render_targets(&mut Writer::new(&mut out), t.iter().map(view), &c, later);
    assert!(series_of(&out, "recovered").is_empty());
    assert!(!series_of(&out, "down").is_empty(), "down stays");
    // per_target: all keeps everyone.
    let text = render_with(&t, &aggregating(&["team"], PerTarget::All));
    assert_eq!(series_of(&text, "ok").len(), 9);
}

#[test]
fn aggregates_count_targets_by_health_per_label_set() {
    let t = [
        healthy("a1", &[("team", "a")]),
        healthy("a2", &[("team", "a")]),
        fixture("a3", &[("team", "a")], &[(1, Err(Reason::Refused)); 5]),
        fixture("b1", &[("team", "b")], &[(1, Ok(()))]),
        healthy("none", &[]),
    ];
    let text = render_with(&t, &aggregating(&["team"], PerTarget::Failing));
    let v = |labels: &str| value(&text, &format!("watchfire_aggregate_targets{{{labels}}}"));
    assert_eq!(v("team=\"a\",state=\"up\""), Some(2.0));
    assert_eq!(v("team=\"a\",state=\"down\""), Some(1.0));
    assert_eq!(v("team=\"b\",state=\"unknown\""), Some(1.0));
    assert_eq!(v("team=\"\",state=\"up\""), Some(1.0));
    let p = "watchfire_aggregate_probes_total{team=\"a\",result=\"refused\"}";
    assert_eq!(value(&text, p), Some(5.0));
    let p = "watchfire_aggregate_probe_duration_seconds_count{team=\"a\"}";
    assert_eq!(value(&text, p), Some(605.0));
}

/// Sums of the per-target sample values of `family` by the value of `label` and `extra`.
fn sums_by(text: &str, family: &str, label: &str, extra: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
    {
        let get = |k: &str| -> String {
            if k.is_empty() {
                return String::new();
            }
            l.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let v: f64 = l.rsplit(' ').next().expect("value").parse().expect("num");
        *out.entry((get(label), get(extra))).or_insert(0.0) += v;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn aggregate_sums_equal_the_per_target_sums_at_full(
        targets in prop::collection::vec(
            (0u8..4, prop::collection::vec((1u64..3_000_000, 0u8..4), 0..40)),
            1..12,
        )
    ) {
        let reasons = [None, Some(Reason::Refused), Some(Reason::Timeout), Some(Reason::Status)];
        let fixtures: Vec<Fixture> = targets
            .iter()
            .enumerate()
            .map(|(i, (team, probes))| {
                let probes: Vec<_> = probes
                    .iter()
                    .map(|(us, r)| (*us, reasons[*r as usize].map_or(Ok(()), Err)))
                    .collect();
                let team = format!("t{team}");
                fixture(&format!("x{i}"), &[("team", team.as_str())], &probes)
            })
            .collect();
        let mut c = aggregating(&["team"], PerTarget::All);
        c.detail = Detail::Full;
        let text = render_with(&fixtures, &c);
        for (per, agg, extra) in [
            ("watchfire_probes_total", "watchfire_aggregate_probes_total", "result"),
            (
                "watchfire_probe_duration_seconds_bucket",
                "watchfire_aggregate_probe_duration_seconds_bucket",
                "le",
            ),
            (
                "watchfire_probe_duration_seconds_count",
                "watchfire_aggregate_probe_duration_seconds_count",
                "",
            ),
        ] {
            let a = sums_by(&text, per, "team", extra);
            let b = sums_by(&text, agg, "team", extra);
            prop_assert_eq!(a, b, "{}", per);
        }
        let a = sums_by(&text, "watchfire_probe_duration_seconds_sum", "team", "");
        let b = sums_by(&text, "watchfire_aggregate_probe_duration_seconds_sum", "team", "");
        prop_assert_eq!(a.len(), b.len());
        for (k, v) in &a {
            prop_assert!((v - b[k]).abs() < 1e-6 * v.max(1.0), "{:?}: {} vs {}", k, v, b[k]);
        }
        let up = sums_by(&text, "watchfire_target_state", "team", "state");
        let agg = sums_by(&text, "watchfire_aggregate_targets", "team", "state");
        for ((team, state), n) in &agg {
            let per = up.get(&(team.clone(), state.clone())).copied().unwrap_or(0.0);
            prop_assert_eq!(per, *n, "{} {}", team, state);
        }
    }
}

#[test]
fn bucket_quantiles_interpolate_as_prometheus_does() {
    let bounds = [0.1, 0.5, 1.0];
    assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
    // 99 in (0.1, 0.5], 1 in (0.5, 1]: p99 is 0.5, the median halfway through the bucket.
    assert_eq!(bucket_quantile(&bounds, &[0, 99, 1, 0], 0.99), Some(0.5));
    let p50 = bucket_quantile(&bounds, &[0, 100, 0, 0], 0.5).unwrap();
    assert!((p50 - 0.3).abs() < 1e-12, "{p50}");
    // In +Inf: the highest finite bound.
    assert_eq!(bucket_quantile(&bounds, &[0, 0, 0, 5], 0.5), Some(1.0));
}
