//! `watchfire report`: uptime, probes, failures, latency, incidents and error budget over a
//! range, from the store's rollups and incidents — the monthly SLA report, without Prometheus.
//!
//! The range is read from the coarsest rollups that fit: whole UTC days from day rollups, the
//! hours at its edges from hour rollups, the minutes beyond from minute rollups. Uptime is
//! `1 − down / (range − maintenance)`: maintenance is neither up nor down.
//!
//! Each target's component is the one stored with its rollups (written by the rule incidents
//! and the status page use, [`crate::config::Config::components`]); for rows written before
//! the store kept it, the config's when `--config` is given, else the target's own name. A
//! component that is a failover group takes its down and maintenance time from the group's
//! own rollups (no instance could take traffic); for periods without them (rows written
//! before groups had rollups) it was down as long as its least-down instance. Any other
//! component is down as long as its worst member (as on the status page).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::store::{
    add_into, GroupRollup, IncidentQuery, Millis, Rollup, Store, StoreError, LATENCY_BOUNDS,
};

/// One target's or component's figures over the range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    /// Target or component name.
    pub name: String,
    /// `1 − down / (range − maintenance)`, none when the whole range was maintenance.
    pub uptime: Option<f64>,
    /// Time down outside maintenance, seconds.
    pub down_seconds: f64,
    /// Time in maintenance, seconds.
    pub maintenance_seconds: f64,
    /// Probes run.
    pub probes: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures by reason.
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Median probe duration, seconds (interpolated in its bucket), none without probes.
    pub p50_seconds: Option<f64>,
    /// 99th percentile probe duration, seconds.
    pub p99_seconds: Option<f64>,
    /// The error budget of the objective over the range (outside maintenance), seconds.
    pub error_budget_seconds: f64,
    /// Share of it used by the down time (above 1: overspent).
    pub error_budget_consumed: f64,
}

/// An incident that overlaps the range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncidentRow {
    /// Its id.
    pub id: i64,
    /// Component.
    pub component: String,
    /// Title.
    pub title: String,
    /// Status now.
    pub status: &'static str,
    /// Impact.
    pub impact: &'static str,
    /// Start (RFC 3339).
    pub started: String,
    /// Resolution (RFC 3339), none while open.
    pub resolved: Option<String>,
    /// Duration (to the end of the range while open), seconds.
    pub duration_seconds: f64,
    /// Begun inside a maintenance window.
    pub in_maintenance: bool,
    /// The figures recorded at resolution (failed probes, requests, error budget ...).
    pub figures: Option<serde_json::Value>,
}

/// The whole report (the JSON shape of `--format json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Start of the range (RFC 3339).
    pub from: String,
    /// End of the range (RFC 3339).
    pub to: String,
    /// The objective, as a ratio (0.999).
    pub slo: f64,
    /// Per component (failover groups, and targets of no group), by name.
    pub components: Vec<Figures>,
    /// Per target, by name.
    pub targets: Vec<Figures>,
    /// Incidents overlapping the range, oldest first.
    pub incidents: Vec<IncidentRow>,
}

/// Unix milliseconds as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(crate::runtime::history::system_time(ms)).to_string()
}

/// The component of a rollup's target: the one stored with it, else the config's
/// ([`crate::config::Config::components`], the same rule) when the report was given the
/// config, else the target's own name.
pub fn component<'a>(components: &'a HashMap<String, String>, r: &'a Rollup) -> &'a str {
    r.component
        .as_deref()
        .or_else(|| components.get(&r.target).map(String::as_str))
        .unwrap_or(&r.target)
}

pub use crate::store::pieces;

/// Quantile `q` of bucket counts over [`LATENCY_BOUNDS`] (and one above), interpolated inside
/// its bucket as Prometheus' `histogram_quantile` does; the last bound when it falls above it.
pub fn quantile(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let Some(&upper) = LATENCY_BOUNDS.get(i) else {
                return LATENCY_BOUNDS.last().copied();
            };
            let lower = if i == 0 { 0.0 } else { LATENCY_BOUNDS[i - 1] };
            let within = ((rank - seen as f64) / n as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        seen += n;
    }
    LATENCY_BOUNDS.last().copied()
}

fn figures(name: &str, r: &Rollup, range_ms: i64, slo: f64) -> Figures {
    let counted = (range_ms - r.maintenance_ms).max(0);
    let budget_ms = (1.0 - slo) * counted as f64;
    Figures {
        name: name.to_string(),
        uptime: (counted > 0).then(|| 1.0 - r.down_ms as f64 / counted as f64),
        down_seconds: r.down_ms as f64 / 1000.0,
        maintenance_seconds: r.maintenance_ms as f64 / 1000.0,
        probes: r.probes,
        failures: r.failures,
        failures_by_reason: r.by_reason.clone(),
        p50_seconds: quantile(&r.latency, 0.5),
        p99_seconds: quantile(&r.latency, 0.99),
        error_budget_seconds: budget_ms / 1000.0,
        error_budget_consumed: if budget_ms > 0.0 {
            r.down_ms as f64 / budget_ms
        } else if r.down_ms > 0 {
            f64::INFINITY
        } else {
            0.0
        },
    }
}

/// Reads the store and computes the report over `[from, to)` (rounded down to minutes);
/// `components` maps targets to their components when the config is known (else empty), for
/// rollups stored without one; `groups` names the config's failover groups.
pub async fn compute(
    store: &Store,
    from: Millis,
    to: Millis,
    slo: f64,
    only: &[String],
    components: &HashMap<String, String>,
    groups: &[String],
) -> Result<Report, StoreError> {
    let (from, to) = (from - from.rem_euclid(60_000), to - to.rem_euclid(60_000));
    let mut rows: Vec<Rollup> = Vec::new();
    let mut group_rows: Vec<GroupRollup> = Vec::new();
    for (level, a, b) in pieces(from, to) {
        rows.extend(store.rollups(level, a, b, None).await?);
        group_rows.extend(store.group_rollups(level, a, b, None).await?);
    }
    rows.retain(|r| only.is_empty() || only.contains(&r.target));
    let by_group: HashMap<(&str, Millis), &GroupRollup> = group_rows
        .iter()
        .map(|g| ((g.group.as_str(), g.start), g))
        .collect();
    let mut targets: BTreeMap<String, Rollup> = BTreeMap::new();
    // Per component and period: the figures of each member.
    let mut periods: BTreeMap<(String, Millis), Vec<&Rollup>> = BTreeMap::new();
    for r in &rows {
        add_into(targets.entry(r.target.clone()).or_default(), r);
        let c = component(components, r).to_string();
        periods.entry((c, r.start)).or_default().push(r);
    }
    let mut by_component: BTreeMap<String, Rollup> = BTreeMap::new();
    for ((c, start), rs) in &periods {
        let mut sum = Rollup::default();
        for r in rs {
            add_into(&mut sum, r);
        }
        let (down, maintenance) = match by_group.get(&(c.as_str(), *start)) {
            Some(g) => (g.down_ms, g.maintenance_ms),
            None if groups.contains(c) => (
                rs.iter().map(|r| r.down_ms).min().unwrap_or(0),
                rs.iter().map(|r| r.maintenance_ms).max().unwrap_or(0),
            ),
            None => (
                rs.iter().map(|r| r.down_ms).max().unwrap_or(0),
                rs.iter().map(|r| r.maintenance_ms).max().unwrap_or(0),
            ),
        };
        sum.down_ms = down;
        sum.maintenance_ms = maintenance;
        sum.component = None;
        add_into(by_component.entry(c.clone()).or_default(), &sum);
    }
    let range = to - from;
    let incidents = incidents(store, from, to, only, &rows, components).await?;
    Ok(Report {
        from: rfc3339(from),
        to: rfc3339(to),
        slo,
        components: by_component
            .iter()
            .map(|(n, r)| figures(n, r, range, slo))
            .collect(),
        targets: targets
            .iter()
            .map(|(n, r)| figures(n, r, range, slo))
            .collect(),
        incidents,
    })
}

async fn incidents(
    store: &Store,
    from: Millis,
    to: Millis,
    only: &[String],
    rows: &[Rollup],
    components: &HashMap<String, String>,
) -> Result<Vec<IncidentRow>, StoreError> {
    let all = store.incidents(&IncidentQuery::default()).await?;
    // The components of the targets asked for, by the rollups' rule.
    let wanted: std::collections::HashSet<&str> =
        rows.iter().map(|r| component(components, r)).collect();
    let mut out: Vec<IncidentRow> = all
        .into_iter()
        .filter(|i| i.started < to && i.resolved.is_none_or(|r| r > from))
        .filter(|i| {
            only.is_empty()
                || only.iter().any(|t| i.targets.contains(t))
                || wanted.contains(i.component.as_str())
        })
        .map(|i| IncidentRow {
            id: i.id,
            component: i.component,
            title: i.title,
            status: i.status.as_str(),
            impact: i.impact.as_str(),
            started: rfc3339(i.started),
            resolved: i.resolved.map(rfc3339),
            duration_seconds: (i.resolved.unwrap_or(to).min(to) - i.started.max(from)).max(0)
                as f64
                / 1000.0,
            in_maintenance: i.in_maintenance,
            figures: i.figures.and_then(|f| serde_json::from_str(&f).ok()),
        })
        .collect();
    out.reverse();
    Ok(out)
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{:.3} %", v * 100.0),
        None => "—".into(),
    }
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 1.0 => format!("{:.1} ms", v * 1000.0),
        Some(v) => format!("{v:.2} s"),
        None => "—".into(),
    }
}

fn duration(s: f64) -> String {
    let s = s.round() as u64;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s:02}s"),
        _ => format!("{h}h {m:02}m {s:02}s"),
    }
}

fn table(out: &mut String, rows: &[Figures]) {
    out.push_str("| Name | Uptime | Down | Maintenance | Probes | Failed | p50 | p99 | Error budget used |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for f in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} % |\n",
            md_escape(&f.name),
            pct(f.uptime),
            duration(f.down_seconds),
            duration(f.maintenance_seconds),
            f.probes,
            f.failures,
            secs(f.p50_seconds),
            secs(f.p99_seconds),
            f.error_budget_consumed * 100.0
        ));
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The report as Markdown, for people.
pub fn markdown(r: &Report) -> String {
    let mut out = format!(
        "# Availability report\n\n{} to {} · objective {:.3} %\n\n## Components\n\n",
        r.from,
        r.to,
        r.slo * 100.0
    );
    if r.components.is_empty() {
        out.push_str("No rollups in the store for this range.\n");
    } else {
        table(&mut out, &r.components);
    }
    out.push_str("\n## Targets\n\n");
    table(&mut out, &r.targets);
    let failing: Vec<&Figures> = r.targets.iter().filter(|f| f.failures > 0).collect();
    if !failing.is_empty() {
        out.push_str("\n### Failed probes by reason\n\n");
        for f in failing {
            let reasons: Vec<String> = f
                .failures_by_reason
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            out.push_str(&format!(
                "- {}: {}\n",
                md_escape(&f.name),
                reasons.join(", ")
            ));
        }
    }
    out.push_str("\n## Incidents\n\n");
    if r.incidents.is_empty() {
        out.push_str("None in this range.\n");
    }
    for i in &r.incidents {
        out.push_str(&format!(
            "- **#{} {}** ({}, {} impact{}) — {} from {} to {} ({})\n",
            i.id,
            md_escape(&i.title),
            md_escape(&i.component),
            i.impact,
            if i.in_maintenance {
                ", in maintenance"
            } else {
                ""
            },
            i.status,
            i.started,
            i.resolved.as_deref().unwrap_or("now (open)"),
            duration(i.duration_seconds)
        ));
        if let Some(serde_json::Value::Object(f)) = &i.figures {
            let parts: Vec<String> = f.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push_str(&format!("  - {}\n", md_escape(&parts.join(", "))));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Level;

    const DAY: Millis = 86_400_000;
    const HOUR: Millis = 3_600_000;
    const MIN: Millis = 60_000;

    #[test]
    fn a_range_is_read_in_days_then_hours_then_minutes() {
        let from = DAY - HOUR - 5 * MIN;
        let to = 3 * DAY + 2 * HOUR + 3 * MIN;
        let p = pieces(from, to);
        assert_eq!(
            p,
            vec![
                (Level::Minute, from, DAY - HOUR),
                (Level::Hour, DAY - HOUR, DAY),
                (Level::Day, DAY, 3 * DAY),
                (Level::Hour, 3 * DAY, 3 * DAY + 2 * HOUR),
                (Level::Minute, 3 * DAY + 2 * HOUR, to),
            ]
        );
        let covered: Millis = p.iter().map(|x| x.2 - x.1).sum();
        assert_eq!(covered, to - from);
        assert_eq!(pieces(MIN, 5 * MIN), vec![(Level::Minute, MIN, 5 * MIN)]);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut b = vec![0u64; LATENCY_BOUNDS.len() + 1];
        b[0] = 50; // <= 5 ms
        b[1] = 50; // <= 10 ms
        assert_eq!(quantile(&b, 0.5), Some(0.005));
        let p99 = quantile(&b, 0.99).unwrap();
        assert!((p99 - 0.0099).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[0; 12], 0.5), None);
    }
}
