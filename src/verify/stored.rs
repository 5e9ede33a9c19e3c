//! Incident impact from the store, for `watchfire impact` without `--prometheus`: downtime from
//! the targets' stored transitions (down while any of them is down, as the Prometheus path's
//! `min` reads several series), failed probes from the minute rollups, failed requests as the
//! runbook computes them (request rate before × downtime, the rate given with
//! `--request-rate`) and the error budget consumed.

use std::time::{Duration, SystemTime};

use super::human;
use super::impact::budget;
use super::report::{ImpactReport, OutageReport};
use super::VerifyError;
use crate::store::{Level, Millis, Store, Subject};

/// What to compute from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpec {
    /// The targets whose health counts (empty: every target with a transition).
    pub targets: Vec<String>,
    /// Start of the range.
    pub from: Millis,
    /// End of the range.
    pub to: Millis,
    /// Requests per second before the outage, when known.
    pub request_rate: Option<f64>,
    /// The SLO as a ratio.
    pub slo: f64,
    /// The SLO's window.
    pub slo_window: Duration,
}

fn store_error(e: crate::store::StoreError) -> VerifyError {
    VerifyError::Usage(format!("cannot read the store: {e}"))
}

/// The spans in `[from, to)` during which `name` was down, from its transitions.
async fn down_spans(
    store: &Store,
    name: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<(Millis, Millis)>, VerifyError> {
    let before = store
        .transitions(Some(name), 0, from, 1)
        .await
        .map_err(store_error)?;
    let mut down_since = before
        .iter()
        .rfind(|t| t.subject == Subject::Target)
        .filter(|t| t.to == "down")
        .map(|_| from);
    let mut out = Vec::new();
    let inside = store
        .transitions(Some(name), from, to, 0)
        .await
        .map_err(store_error)?;
    for t in inside.iter().filter(|t| t.subject == Subject::Target) {
        match (down_since, t.to == "down") {
            (None, true) => down_since = Some(t.at),
            (Some(s), false) => {
                out.push((s, t.at));
                down_since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = down_since {
        out.push((s, to));
    }
    Ok(out)
}

/// Merges overlapping spans (down while any target is down).
pub fn union(mut spans: Vec<(Millis, Millis)>) -> Vec<(Millis, Millis)> {
    spans.sort_unstable();
    let mut out: Vec<(Millis, Millis)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn time(ms: Millis) -> String {
    human::time(crate::runtime::history::system_time(ms))
}

/// Computes the impact over the range from the store.
pub async fn compute(store: &Store, spec: &StoredSpec) -> Result<ImpactReport, VerifyError> {
    let mut names = spec.targets.clone();
    if names.is_empty() {
        let all = store
            .transitions(None, 0, spec.to, 0)
            .await
            .map_err(store_error)?;
        names = all
            .into_iter()
            .filter(|t| t.subject == Subject::Target)
            .map(|t| t.name)
            .collect();
        names.sort();
        names.dedup();
    }
    let mut spans = Vec::new();
    for n in &names {
        spans.extend(down_spans(store, n, spec.from, spec.to).await?);
    }
    let spans = union(spans);
    let mut failed_probes = 0u64;
    for n in &names {
        let rows = store
            .rollups(Level::Minute, spec.from, spec.to, Some(n))
            .await
            .map_err(store_error)?;
        failed_probes += rows.iter().map(|r| r.failures).sum::<u64>();
    }
    let outages: Vec<OutageReport> = spans
        .iter()
        .map(|&(a, b)| {
            let d = (b - a) as f64 / 1000.0;
            OutageReport {
                start: time(a),
                end: time(b),
                ongoing: b >= spec.to,
                duration_seconds: d,
                request_rate_before: spec.request_rate,
                failed_requests: spec.request_rate.map(|r| r * d),
            }
        })
        .collect();
    let downtime: f64 = outages.iter().map(|o| o.duration_seconds).sum();
    let (budget_s, consumed) = budget(spec.slo, spec.slo_window, downtime);
    let at = |ms: Millis| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    Ok(ImpactReport {
        from: human::time(at(spec.from)),
        to: human::time(at(spec.to)),
        step_seconds: 0.0,
        up_query: format!("store: transitions of {}", names.join(", ")),
        rate_query: spec.request_rate.map(|r| format!("--request-rate {r}")),
        downtime_seconds: downtime,
        no_data_seconds: 0.0,
        request_rate_before: spec.request_rate.filter(|_| !outages.is_empty()),
        failed_requests: spec.request_rate.map(|r| r * downtime),
        failed_probes: Some(failed_probes),
        outages,
        slo: spec.slo,
        slo_window_seconds: spec.slo_window.as_secs_f64(),
        error_budget_seconds: budget_s,
        error_budget_consumed_seconds: downtime,
        error_budget_consumed_ratio: consumed,
        error_budget_remaining_seconds: budget_s - downtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{TransitionRecord, Write};

    fn tr(name: &str, at: Millis, from: &str, to: &str) -> Write {
        Write::Transition(TransitionRecord {
            at,
            subject: Subject::Target,
            name: name.into(),
            from: from.into(),
            to: to.into(),
            reason: None,
            detail: None,
        })
    }

    #[tokio::test]
    async fn five_minutes_down_at_ten_requests_a_second_is_three_thousand_failed() {
        let store = Store::memory();
        store.write(tr("gw", 1_000_000, "up", "down"));
        store.write(tr("gw", 1_300_000, "down", "up"));
        store.write(tr("other", 1_100_000, "up", "down"));
        store.flush().await;
        let spec = StoredSpec {
            targets: vec!["gw".into()],
            from: 900_000,
            to: 2_000_000,
            request_rate: Some(10.0),
            slo: 0.999,
            slo_window: Duration::from_secs(30 * 86_400),
        };
        let r = compute(&store, &spec).await.unwrap();
        assert_eq!(r.downtime_seconds, 300.0);
        assert_eq!(r.failed_requests, Some(3000.0));
        assert_eq!(r.outages.len(), 1);
        assert!((r.error_budget_consumed_ratio - 300.0 / 2592.0).abs() < 1e-12);
    }

    #[test]
    fn overlapping_outages_count_once() {
        assert_eq!(
            union(vec![(5, 9), (0, 6), (12, 13)]),
            vec![(0, 9), (12, 13)]
        );
    }
}
