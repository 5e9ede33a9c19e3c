//! Incident impact from Prometheus: downtime from an up/down series (`up{job=...}` or
//! `watchfire_target_up{target=...}`), the request rate just before each outage, failed requests
//! (rate × downtime, as the runbook computes them) and the error budget consumed for an SLO.
//!
//! The arithmetic ([`timeline`], [`budget`]) is pure; [`compute`] does the queries.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::human;
use super::prom::{self, Prom, PromError};
use super::report::{ImpactReport, OutageReport};
use super::VerifyError;

/// Most points Prometheus returns per series for one range query.
pub const MAX_POINTS: f64 = 11_000.0;

/// What to compute, with every query filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactSpec {
    /// Query that is 1 when up and 0 when down (several series: the lowest counts).
    pub up_query: String,
    /// Query giving requests per second, evaluated just before each outage.
    pub rate_query: Option<String>,
    /// Start of the range.
    pub from: SystemTime,
    /// End of the range.
    pub to: SystemTime,
    /// Resolution of the up series.
    pub step: Duration,
    /// The SLO as a ratio (0.999).
    pub slo: f64,
    /// The SLO's window (30 days).
    pub slo_window: Duration,
}

/// One outage found in the up series, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// First point seen down.
    pub start: f64,
    /// First point seen up again (or the end of the range).
    pub end: f64,
    /// Still down at the end of the range.
    pub ongoing: bool,
}

/// The up series read as outages.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The outages, in order.
    pub outages: Vec<Span>,
    /// Total time down.
    pub downtime: f64,
    /// Time in the range with no point at all.
    pub no_data: f64,
}

/// Reads `(unix seconds, value)` points taken every `step` as outages: a point below 0.5 means
/// down from its time until the next point. A gap in the points is no data, not downtime.
pub fn timeline(points: &[(f64, f64)], from: f64, to: f64, step: f64) -> Timeline {
    let mut outages = Vec::new();
    let mut cur: Option<Span> = None;
    let mut downtime = 0.0;
    let mut covered = 0.0;
    let tolerance = step * 0.01;
    for (i, &(t, v)) in points.iter().enumerate() {
        if !v.is_finite() {
            if let Some(o) = cur.take() {
                outages.push(o);
            }
            continue;
        }
        let slot_end = (t + step).min(to);
        let len = (slot_end - t).max(0.0);
        covered += len;
        let next = points.get(i + 1).map(|p| p.0);
        let contiguous = next.is_some_and(|n| (n - t - step).abs() <= tolerance);
        if v < 0.5 {
            downtime += len;
            let o = cur.get_or_insert(Span {
                start: t,
                end: slot_end,
                ongoing: false,
            });
            o.end = slot_end;
            if !contiguous {
                o.ongoing = next.is_none() && t + step > to - tolerance;
                outages.push(*o);
                cur = None;
            }
        } else if let Some(o) = cur.take() {
            outages.push(o);
        }
    }
    if let Some(o) = cur {
        outages.push(o);
    }
    Timeline {
        outages,
        downtime,
        no_data: ((to - from) - covered).max(0.0),
    }
}

/// The error budget of `slo` over `window` (seconds) and the share of it `downtime` used.
pub fn budget(slo: f64, window: Duration, downtime: f64) -> (f64, f64) {
    let budget = (1.0 - slo) * window.as_secs_f64();
    let consumed = if budget > 0.0 {
        downtime / budget
    } else {
        f64::INFINITY
    };
    (budget, consumed)
}

/// The lowest value per timestamp across series (down when any series is down).
fn merge(series: &[prom::RangeSeries]) -> Vec<(f64, f64)> {
    let mut by_t: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for s in series {
        for &(t, v) in &s.points {
            let key = (t * 1000.0).round() as i64;
            let e = by_t.entry(key).or_insert((t, v));
            if v < e.1 || e.1.is_nan() {
                e.1 = v;
            }
        }
    }
    by_t.into_values().collect()
}

/// Checks a range: not in the future, start before end. A range ending in the future is cut at
/// `now`.
pub fn check_range(
    from: SystemTime,
    to: SystemTime,
    now: SystemTime,
) -> Result<(SystemTime, SystemTime), VerifyError> {
    if from >= now {
        return Err(VerifyError::Usage(format!(
            "the time range starts in the future ({}; it is now {}): impact is computed from what already happened",
            human::time(from),
            human::time(now)
        )));
    }
    let to = to.min(now);
    if from >= to {
        return Err(VerifyError::Usage(format!(
            "the time range is empty: it starts at {} and ends at {}",
            human::time(from),
            human::time(to)
        )));
    }
    Ok((from, to))
}

/// Runs the queries and computes the impact.
pub async fn compute(prom: &Prom, spec: &ImpactSpec) -> Result<ImpactReport, VerifyError> {
    let range = spec
        .to
        .duration_since(spec.from)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let mut step = spec.step.as_secs_f64().max(0.001);
    if range / step > MAX_POINTS {
        step = (range / MAX_POINTS).ceil();
    }
    let step_d = Duration::from_secs_f64(step);
    let series = prom
        .query_range(&spec.up_query, spec.from, spec.to, step_d)
        .await?;
    let points = merge(&series);
    if points.iter().all(|p| !p.1.is_finite()) {
        return Err(PromError::NoData {
            query: spec.up_query.clone(),
            when: format!(
                "between {} and {}",
                human::time(spec.from),
                human::time(spec.to)
            ),
        }
        .into());
    }
    let (from, to) = (prom::unix(spec.from), prom::unix(spec.to));
    let tl = timeline(&points, from, to, step);
    let mut outages = Vec::with_capacity(tl.outages.len());
    let mut failed_total: Option<f64> = None;
    for o in &tl.outages {
        let duration = o.end - o.start;
        let rate = match &spec.rate_query {
            Some(q) => {
                // The last moment seen up: one step before the first point seen down.
                let before =
                    SystemTime::UNIX_EPOCH + Duration::from_secs_f64((o.start - step).max(0.0));
                Some(prom.query_value(q, before).await?)
            }
            None => None,
        };
        let failed = rate.map(|r| r * duration);
        if let Some(f) = failed {
            *failed_total.get_or_insert(0.0) += f;
        }
        outages.push(OutageReport {
            start: human::epoch(o.start),
            end: human::epoch(o.end),
            ongoing: o.ongoing,
            duration_seconds: duration,
            request_rate_before: rate,
            failed_requests: failed,
        });
    }
    let (budget_s, consumed) = budget(spec.slo, spec.slo_window, tl.downtime);
    Ok(ImpactReport {
        from: human::time(spec.from),
        to: human::time(spec.to),
        step_seconds: step,
        up_query: spec.up_query.clone(),
        rate_query: spec.rate_query.clone(),
        downtime_seconds: tl.downtime,
        no_data_seconds: tl.no_data,
        request_rate_before: outages.first().and_then(|o| o.request_rate_before),
        failed_requests: if spec.rate_query.is_some() {
            Some(failed_total.unwrap_or(0.0))
        } else {
            None
        },
        failed_probes: None,
        outages,
        slo: spec.slo,
        slo_window_seconds: spec.slo_window.as_secs_f64(),
        error_budget_seconds: budget_s,
        error_budget_consumed_seconds: tl.downtime,
        error_budget_consumed_ratio: consumed,
        error_budget_remaining_seconds: budget_s - tl.downtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(from: f64, step: f64, values: &[f64]) -> Vec<(f64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (from + i as f64 * step, v))
            .collect()
    }

    #[test]
    fn a_five_minute_outage_at_fifteen_second_steps() {
        // 10 points up, 20 down, 11 up: 600 s of range, 300 s down.
        let mut v = vec![1.0; 10];
        v.extend(vec![0.0; 20]);
        v.extend(vec![1.0; 11]);
        let p = points(1000.0, 15.0, &v);
        let tl = timeline(&p, 1000.0, 1600.0, 15.0);
        assert_eq!(tl.downtime, 300.0);
        assert_eq!(tl.no_data, 0.0);
        assert_eq!(
            tl.outages,
            vec![Span {
                start: 1150.0,
                end: 1450.0,
                ongoing: false
            }]
        );
    }

    #[test]
    fn an_outage_still_open_at_the_end_is_ongoing() {
        let p = points(0.0, 10.0, &[1.0, 1.0, 0.0, 0.0, 0.0]);
        let tl = timeline(&p, 0.0, 40.0, 10.0);
        assert_eq!(tl.downtime, 20.0);
        assert!(tl.outages[0].ongoing);
    }

    #[test]
    fn gaps_are_no_data_not_downtime() {
        let p = vec![(0.0, 1.0), (10.0, 0.0), (40.0, 0.0), (50.0, 1.0)];
        let tl = timeline(&p, 0.0, 60.0, 10.0);
        assert_eq!(tl.downtime, 20.0);
        assert_eq!(tl.no_data, 20.0);
        assert_eq!(tl.outages.len(), 2);
    }

    #[test]
    fn error_budget_of_three_nines_over_thirty_days() {
        let (b, used) = budget(0.999, Duration::from_secs(30 * 86_400), 300.0);
        assert!((b - 2592.0).abs() < 1e-6);
        assert!((used - 300.0 / 2592.0).abs() < 1e-12);
    }

    #[test]
    fn ranges_in_the_future_are_refused() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert!(check_range(now + hour, now + hour * 2, now).is_err());
        assert!(check_range(now - hour, now - hour * 2, now).is_err());
        let (_, to) = check_range(now - hour, now + hour, now).expect("cut at now");
        assert_eq!(to, now);
    }
}
