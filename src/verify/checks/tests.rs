//! Unit tests of the verdict: synthetic samples in, checks out.

use super::*;
use crate::state::Thresholds;

const T: Thresholds = Thresholds {
    down_after: 3,
    up_after: 2,
};

fn criteria() -> Criteria {
    Criteria {
        window: Duration::from_secs(10),
        interval: Duration::from_millis(100),
        max_error_rate: 0.01,
        max_flaps: 0,
        min_probes: 10,
        memory: None,
    }
}

fn done(elapsed_ms: u64) -> Stage {
    Stage {
        elapsed: Duration::from_millis(elapsed_ms),
        done: true,
        stopped: None,
    }
}

fn running(elapsed_ms: u64) -> Stage {
    Stage {
        done: false,
        ..done(elapsed_ms)
    }
}

fn sample(i: u64, latency_ms: u64, result: Result<(), Reason>) -> Sample {
    Sample {
        target: 0,
        at: Duration::from_millis(i * 100),
        latency: Duration::from_millis(latency_ms),
        result,
        status: match result {
            Err(Reason::Refused) | Err(Reason::Timeout) => None,
            Err(_) => Some(500),
            Ok(()) => Some(200),
        },
        detail: result.err().map(|r| format!("{r} detail")),
        skipped_after: 0,
    }
}

/// A tally of `n` probes; `fail(i)` says which fail and how.
fn tally(
    n: u64,
    bound: Option<Duration>,
    fail: impl Fn(u64) -> Option<Reason>,
    latency: impl Fn(u64) -> u64,
) -> TargetTally {
    let mut t = TargetTally::new(
        "gw",
        "http://127.0.0.1/health",
        "GET",
        T,
        bound.map(|limit| LatencyBound {
            limit,
            source: "--max-p99".into(),
        }),
    );
    for i in 0..n {
        let r = match fail(i) {
            Some(r) => Err(r),
            None => Ok(()),
        };
        t.push(&sample(i, latency(i), r));
    }
    t
}

fn by_name(checks: &[Check], n: CheckName) -> &Check {
    checks.iter().find(|c| c.name == n).expect("every check")
}

#[test]
fn a_healthy_window_passes_every_check() {
    let t = tally(100, Some(Duration::from_millis(50)), |_| None, |_| 2);
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    assert!(passed(&checks, &done(10_000)), "{checks:#?}");
    assert_eq!(by_name(&checks, CheckName::Memory).status, Status::Skip);
}

#[test]
fn two_percent_errors_fail_the_error_rate_check_with_its_figure() {
    let t = tally(
        100,
        None,
        |i| (i % 50 == 49).then_some(Reason::Status),
        |_| 2,
    );
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    let c = by_name(&checks, CheckName::ErrorRate);
    assert_eq!(c.status, Status::Fail);
    assert_eq!(c.figure, Some(0.02));
    assert!(c.summary.contains("2.00%"), "{}", c.summary);
    assert!(c.summary.contains("status ×2"), "{}", c.summary);
    // Two isolated failures never take the target down.
    assert_eq!(by_name(&checks, CheckName::Flaps).status, Status::Pass);
}

#[test]
fn error_rate_is_decided_once_the_window_cannot_absorb_the_failures() {
    // 100 possible probes at 1 %: the second failure can never be diluted below 1 %.
    let t = tally(5, None, |i| (i < 2).then_some(Reason::Status), |_| 2);
    let c = &judge(&[t], None, &criteria(), &running(500))[2];
    assert_eq!((c.status, c.decided), (Status::Fail, true));
    let t = tally(5, None, |i| (i == 0).then_some(Reason::Status), |_| 2);
    let c = &judge(&[t], None, &criteria(), &running(500))[2];
    assert_eq!((c.status, c.decided), (Status::Fail, false));
}

#[test]
fn a_latency_spike_fails_p99_and_is_decided_early() {
    let t = tally(
        100,
        Some(Duration::from_millis(50)),
        |_| None,
        |i| if (40..45).contains(&i) { 200 } else { 2 },
    );
    let checks = judge(std::slice::from_ref(&t), None, &criteria(), &done(10_000));
    let c = by_name(&checks, CheckName::LatencyP99);
    assert_eq!(c.status, Status::Fail);
    assert!(c.figure.expect("figure") >= 0.19, "{c:?}");
    assert_eq!(c.limit, Some(0.05));
    let live = judge(&[t], None, &criteria(), &running(5_000));
    assert!(by_name(&live, CheckName::LatencyP99).decided);
}

#[test]
fn a_target_that_never_answered_fails_and_reports_why() {
    let t = tally(30, None, |_| Some(Reason::Refused), |_| 0);
    let checks = judge(&[t], None, &criteria(), &done(3_000));
    assert!(!passed(&checks, &done(3_000)));
    let a = by_name(&checks, CheckName::Answered);
    assert_eq!(a.status, Status::Fail);
    assert!(a.summary.contains("never answered"), "{}", a.summary);
    assert!(a.summary.contains("refused ×30"), "{}", a.summary);
}

#[test]
fn no_samples_is_never_a_pass() {
    let t = tally(0, Some(Duration::from_millis(5)), |_| None, |_| 0);
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    assert!(!passed(&checks, &done(10_000)));
    for n in [
        CheckName::Data,
        CheckName::Answered,
        CheckName::ErrorRate,
        CheckName::LatencyP99,
    ] {
        assert_eq!(by_name(&checks, n).status, Status::Fail, "{n}");
    }
    let none = judge(&[], None, &criteria(), &done(1));
    assert_eq!(by_name(&none, CheckName::Data).status, Status::Fail);
    assert!(!passed(&none, &done(1)));
}

#[test]
fn too_few_probes_fail_the_data_check() {
    let t = tally(4, None, |_| None, |_| 1);
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    let d = by_name(&checks, CheckName::Data);
    assert_eq!(d.status, Status::Fail);
    assert!(d.summary.contains("gw: 4 probes"), "{}", d.summary);
}

#[test]
fn going_down_half_way_counts_one_flap_and_the_downtime() {
    // 50 successes, then refused from 5.0 s to the end of a 10 s window.
    let t = tally(100, None, |i| (i >= 50).then_some(Reason::Refused), |_| 1);
    assert_eq!(t.down_transitions, 1);
    assert_eq!(t.down_periods[0].start, Duration::from_secs(5));
    assert_eq!(t.downtime(Duration::from_secs(10)), Duration::from_secs(5));
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    let a = by_name(&checks, CheckName::Answered);
    assert_eq!(a.status, Status::Fail);
    assert!(
        a.summary
            .contains("down at the end (50 failures in a row, last: refused"),
        "{}",
        a.summary
    );
    let f = by_name(&checks, CheckName::Flaps);
    assert_eq!((f.status, f.figure), (Status::Fail, Some(1.0)));
    assert!(f.summary.contains("down 5s"), "{}", f.summary);
}

#[test]
fn a_recovered_outage_ends_at_the_first_success() {
    // Down from probe 10 (1.0 s) to probe 20 (2.0 s); up confirmed at probe 21.
    let t = tally(
        40,
        None,
        |i| (10..20).contains(&i).then_some(Reason::Refused),
        |_| 1,
    );
    assert_eq!((t.down_transitions, t.up_transitions), (1, 2));
    assert_eq!(
        t.down_periods,
        vec![DownPeriod {
            start: Duration::from_secs(1),
            end: Some(Duration::from_secs(2))
        }]
    );
}

#[test]
fn interruption_and_fail_fast_never_pass() {
    let t = tally(100, None, |_| None, |_| 1);
    let stage = Stage {
        stopped: Some(StopReason::Interrupted),
        ..done(4_000)
    };
    let checks = judge(&[t], None, &criteria(), &stage);
    assert!(!passed(&checks, &stage));
    assert!(by_name(&checks, CheckName::Data)
        .summary
        .contains("interrupted"));
}

fn mem(points: &[(u64, f64)], limit: Option<f64>) -> MemoryTally {
    MemoryTally {
        source: "test".into(),
        samples: points
            .iter()
            .map(|&(s, used)| MemorySample {
                at: Duration::from_secs(s),
                used,
                limit,
            })
            .collect(),
        ..MemoryTally::default()
    }
}

fn memory_check(m: &MemoryTally, stage: &Stage) -> Check {
    let c = Criteria {
        memory: Some(MemoryCriteria {
            max_ratio: 0.85,
            max_growth: 0.05,
        }),
        ..criteria()
    };
    check_memory(Some(m), &c, stage)
}

#[test]
fn memory_below_the_limit_and_flat_passes() {
    let m = mem(&[(0, 50.0), (1, 51.0), (2, 50.0), (3, 50.5)], Some(100.0));
    let c = memory_check(&m, &done(3_000));
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert_eq!(c.figure, Some(0.51));
}

#[test]
fn memory_above_85_percent_fails_at_once() {
    let m = mem(&[(0, 90.0)], Some(100.0));
    let c = memory_check(&m, &running(1_000));
    assert_eq!((c.status, c.decided), (Status::Fail, true));
}

#[test]
fn memory_trending_up_fails_even_below_the_limit() {
    // 10 % of the limit more every second for 4 s: +40 % over the window.
    let m = mem(
        &[(0, 10.0), (1, 20.0), (2, 30.0), (3, 40.0), (4, 50.0)],
        Some(100.0),
    );
    assert!((m.growth().expect("enough") - 0.4).abs() < 1e-9);
    let c = memory_check(&m, &done(4_000));
    assert_eq!(c.status, Status::Fail);
    assert!(c.summary.contains("trending up"), "{}", c.summary);
}

#[test]
fn unlimited_memory_is_judged_on_its_trend_only() {
    let m = mem(&[(0, 100.0), (1, 100.0), (2, 100.0)], None);
    let c = memory_check(&m, &done(2_000));
    assert_eq!(c.status, Status::Pass, "{c:?}");
    assert!(c.summary.contains("no limit"), "{}", c.summary);
}

#[test]
fn too_few_memory_readings_fail() {
    let m = mem(&[(0, 10.0)], Some(100.0));
    let c = memory_check(&m, &done(2_000));
    assert_eq!(c.status, Status::Fail);
    assert!(c.summary.contains("not enough"), "{}", c.summary);
}

#[test]
fn max_probes_rounds_up() {
    let c = Criteria {
        window: Duration::from_millis(1050),
        ..criteria()
    };
    assert_eq!(c.max_probes(), 11);
}

#[test]
fn one_failed_last_probe_is_not_down_and_still_answers() {
    let t = tally(100, None, |i| (i == 99).then_some(Reason::Status), |_| 1);
    let checks = judge(&[t], None, &criteria(), &done(10_000));
    assert_eq!(by_name(&checks, CheckName::Answered).status, Status::Pass);
}

#[test]
fn a_flap_is_decided_at_once_for_fail_fast() {
    let t = tally(5, None, |i| (i < 3).then_some(Reason::Refused), |_| 1);
    let live = judge(&[t], None, &criteria(), &running(500));
    let f = by_name(&live, CheckName::Flaps);
    assert_eq!((f.status, f.decided), (Status::Fail, true));
    // While running, data is pending and answered can still recover.
    assert_eq!(by_name(&live, CheckName::Data).status, Status::Pending);
    assert!(!by_name(&live, CheckName::Answered).decided);
}
