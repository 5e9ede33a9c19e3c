//! The runbook's numbers for a resolved incident ("Calculate Impact"), stored as the
//! incident's `figures` JSON.
//!
//! - `duration_seconds`: resolved − started.
//! - `maintenance_seconds`: the part of it inside a maintenance window covering the component.
//! - `downtime_seconds`: duration − maintenance: what counts against the SLO.
//! - `failed_probes`: the larger of `failed_probes_rollups` (failures in the store's minute
//!   rollups of the incident's targets, from the minute the incident started to its end) and
//!   `failed_probes_seen` (failures this process counted between each target going down and
//!   the resolution, the streak that took it down included). The rollups span restarts; the
//!   live count covers the last minute the rollups have not written yet.
//! - `proxied_requests`, `failed_proxied_requests`: requests the component's failover proxy
//!   answered while the incident was open, and those answered 5xx (by an instance or by the
//!   proxy itself): from the group's rollups in the store, from the minute the incident started
//!   to its end, plus those the runtime has not written yet — so an incident that spans a
//!   restart (even a SIGKILL: at most the last few seconds' slice is lost) keeps them. Null
//!   when the component is not a group with a proxy.
//! - `request_rate`: requests/s before the outage: the group's rollups over the five minutes
//!   before the incident's first minute, requests ÷ time watched (`request_rate_source:
//!   "proxy"`, at least 10 s watched), else `incidents.request_rate` (`"config"`), else null.
//! - `estimated_failed_requests`: `request_rate × duration_seconds`, as the runbook computes
//!   it (users fail during maintenance too); null without a rate.
//! - `slo_percent`, `slo_window_seconds`, `error_budget_seconds` = window × (1 − slo/100), and
//!   `error_budget_consumed_percent` = downtime ÷ error budget × 100.

use serde::{Deserialize, Serialize};

use super::config::IncidentsConfig;

/// Figures of a resolved incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Resolved − started, seconds.
    pub duration_seconds: f64,
    /// Of which inside maintenance.
    pub maintenance_seconds: f64,
    /// Duration outside maintenance.
    pub downtime_seconds: f64,
    /// The larger of the two counts below.
    pub failed_probes: u64,
    /// Failures in the minute rollups over the incident.
    pub failed_probes_rollups: u64,
    /// Failures this process counted.
    pub failed_probes_seen: u64,
    /// Requests the failover proxy answered during the incident.
    pub proxied_requests: Option<u64>,
    /// Of which 5xx.
    pub failed_proxied_requests: Option<u64>,
    /// Requests/s before the outage.
    pub request_rate: Option<f64>,
    /// `proxy` or `config`.
    pub request_rate_source: Option<String>,
    /// Rate × duration.
    pub estimated_failed_requests: Option<f64>,
    /// The SLO, percent.
    pub slo_percent: f64,
    /// Its window, seconds.
    pub slo_window_seconds: f64,
    /// Window × (1 − slo).
    pub error_budget_seconds: f64,
    /// Downtime ÷ budget, percent.
    pub error_budget_consumed_percent: f64,
}

/// What the figures are computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Resolved − started, ms.
    pub duration_ms: i64,
    /// Of which inside maintenance, ms.
    pub maintenance_ms: i64,
    /// Failures in the rollups.
    pub failed_probes_rollups: u64,
    /// Failures counted live.
    pub failed_probes_seen: u64,
    /// Proxy answers during the incident: (all, 5xx).
    pub proxied: Option<(u64, u64)>,
    /// Requests/s measured by the proxy before the outage.
    pub proxy_rate: Option<f64>,
}

impl Figures {
    /// The figures from `i` under `cfg`.
    pub fn compute(i: &Inputs, cfg: &IncidentsConfig) -> Figures {
        let duration = i.duration_ms.max(0) as f64 / 1000.0;
        let maintenance = i.maintenance_ms.clamp(0, i.duration_ms.max(0)) as f64 / 1000.0;
        let downtime = duration - maintenance;
        let (rate, source) = match (i.proxy_rate, cfg.request_rate) {
            (Some(r), _) => (Some(r), Some("proxy")),
            (None, Some(r)) => (Some(r), Some("config")),
            (None, None) => (None, None),
        };
        let window = cfg.slo_window.as_secs_f64();
        let budget = window * (1.0 - cfg.slo / 100.0);
        Figures {
            duration_seconds: duration,
            maintenance_seconds: maintenance,
            downtime_seconds: downtime,
            failed_probes: i.failed_probes_rollups.max(i.failed_probes_seen),
            failed_probes_rollups: i.failed_probes_rollups,
            failed_probes_seen: i.failed_probes_seen,
            proxied_requests: i.proxied.map(|p| p.0),
            failed_proxied_requests: i.proxied.map(|p| p.1),
            request_rate: rate,
            request_rate_source: source.map(str::to_string),
            estimated_failed_requests: rate.map(|r| r * duration),
            slo_percent: cfg.slo,
            slo_window_seconds: window,
            error_budget_seconds: budget,
            error_budget_consumed_percent: if budget > 0.0 {
                downtime / budget * 100.0
            } else {
                0.0
            },
        }
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("figures serialize")
    }
}

/// `4m12s`, `1h2m3s`, `850ms`: a duration for people.
pub fn human(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}
