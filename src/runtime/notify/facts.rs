//! What a message says about an incident now ([`Facts`]), from the incident, its timeline, the
//! config, the runtime's live state and the figures so far. Pure: the notifier gathers the
//! inputs, these functions only assemble them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{Config, TargetSpec};
use crate::incident::figures::human;
use crate::incident::{clock, Figures};
use crate::notify::plan::Due;
use crate::notify::{Facts, Kind, NotifyConfig};
use crate::store::{Incident, IncidentUpdate, Millis, UpdateKind};

/// The runtime's view of an incident's component now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Share of the component's targets that are down now, percent.
    pub failing_percent: f64,
    /// The first failing target's reason, if one is down now.
    pub reason: Option<String>,
    /// Its detail (redacted).
    pub detail: Option<String>,
}

/// The words before the failure in the entry that opens an incident (`incident::Incidents`
/// writes it with [`UpdateKind::Detected`]): left out of the detail shown.
const DETECTED: &str = "Detected: ";
/// The prefix of a `watchfire verify --incident` verdict: posted through the incidents API by
/// another process, like a person's update, so it has no kind of its own.
const VERIFY: &str = "verify:";

/// The running config's targets by name and by component, built once per config.
#[derive(Debug, Default)]
pub struct Index {
    specs: HashMap<String, Arc<TargetSpec>>,
    components: HashMap<String, Vec<Arc<TargetSpec>>>,
}

impl Index {
    /// The index of `config`'s targets.
    pub fn new(config: &Config) -> Index {
        let component = config.components();
        let mut index = Index::default();
        for t in &config.targets {
            index.specs.insert(t.name.clone(), t.clone());
            if let Some(c) = component.get(&t.name) {
                index
                    .components
                    .entry(c.clone())
                    .or_default()
                    .push(t.clone());
            }
        }
        index
    }

    /// The targets of `component`, in config order.
    pub fn targets_of(&self, component: &str) -> &[Arc<TargetSpec>] {
        self.components.get(component).map_or(&[], Vec::as_slice)
    }

    /// The target named `name`.
    pub fn spec(&self, name: &str) -> Option<&Arc<TargetSpec>> {
        self.specs.get(name)
    }
}

/// The incident's labels as routes match them: its first target's labels, then `component`,
/// then `severity` (a `severity` label of the first of the component's targets that has one,
/// else `default_severity`, the `notify.severity`).
pub fn labels(index: &Index, default_severity: &str, inc: &Incident) -> BTreeMap<String, String> {
    let mut out = inc
        .targets
        .first()
        .and_then(|t| index.spec(t))
        .map(|s| s.labels.clone())
        .unwrap_or_default();
    let severity = index
        .targets_of(&inc.component)
        .iter()
        .find_map(|t| t.labels.get("severity").cloned())
        .unwrap_or_else(|| default_severity.to_string());
    out.insert("component".into(), inc.component.clone());
    out.insert("severity".into(), severity);
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` of `at`.
pub fn date_time(at: Millis) -> String {
    jiff::Timestamp::from_millisecond(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// What the facts of one incident are assembled from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The `notify:` section in force.
    pub cfg: &'a NotifyConfig,
    /// The incident.
    pub inc: &'a Incident,
    /// Its timeline, oldest first.
    pub updates: &'a [IncidentUpdate],
    /// Its labels ([`labels`]).
    pub labels: &'a BTreeMap<String, String>,
    /// The runtime's view of its component.
    pub live: &'a Live,
    /// The figures so far (the stored ones once resolved).
    pub figures: &'a Figures,
    /// Whether a maintenance window covers its component now.
    pub in_maintenance: bool,
    /// Now.
    pub now: Millis,
}

/// The facts every message about an incident at `c.now` shares; [`for_due`] adds what one
/// message alone says.
pub fn base(c: &Context<'_>) -> Facts {
    let Context {
        cfg,
        inc,
        updates,
        labels,
        live,
        figures,
        in_maintenance,
        now,
    } = *c;
    let end = inc.resolved.unwrap_or(now);
    let detail = live.detail.clone().or_else(|| {
        updates
            .iter()
            .find(|u| u.kind == Some(UpdateKind::Detected))
            .map(|u| {
                let m = u.message.as_str();
                m.strip_prefix(DETECTED).unwrap_or(m).to_string()
            })
    });
    let affected = match (figures.proxied_requests, figures.failed_proxied_requests) {
        (Some(all), Some(failed)) if all > 0 => Some(failed as f64 / all as f64 * 100.0),
        _ => None,
    };
    Facts {
        id: inc.id,
        service: inc.component.clone(),
        title: inc.title.clone(),
        severity: labels.get("severity").cloned().unwrap_or_default(),
        status: inc.status.as_str().into(),
        impact: inc.impact.as_str().into(),
        labels: labels.clone(),
        started: inc.started,
        started_text: date_time(inc.started),
        now,
        elapsed: human(end - inc.started),
        targets: inc.targets.clone(),
        reason: live.reason.clone(),
        detail,
        failing_percent: if inc.resolved.is_some() {
            0.0
        } else {
            live.failing_percent
        },
        failed_probes: figures.failed_probes,
        failed_requests: figures.failed_proxied_requests,
        estimated_failed_requests: figures
            .estimated_failed_requests
            .map(|n| n.round().max(0.0) as u64),
        affected_percent: affected,
        budget_consumed_percent: Some(figures.error_budget_consumed_percent),
        actions: updates
            .iter()
            .filter(|u| matches!(u.kind, Some(UpdateKind::TrafficMoved | UpdateKind::NoneUp)))
            .map(|u| u.message.clone())
            .collect(),
        commander: cfg.commander.clone(),
        war_room: cfg.war_room.clone(),
        status_page: cfg.status_page.clone(),
        next_update: None,
        tier: None,
        acknowledged: inc.acknowledged.map(|at| acknowledged(updates, at)),
        note: updates
            .iter()
            .rev()
            .find(|u| !u.automatic)
            .map(|u| u.message.clone()),
        root_cause: inc.root_cause.clone(),
        resolution: inc.resolution.clone(),
        resolved: inc.resolved,
        duration: inc.resolved.map(|r| human(r - inc.started)),
        verify: updates
            .iter()
            .rev()
            .find(|u| u.message.starts_with(VERIFY))
            .map(|u| u.message[VERIFY.len()..].trim().to_string()),
        in_maintenance: inc.in_maintenance || in_maintenance,
    }
}

/// "Acknowledged by X at 15:47:00 UTC": the acknowledgement's update, when there is one.
fn acknowledged(updates: &[IncidentUpdate], at: Millis) -> String {
    match updates
        .iter()
        .rev()
        .find(|u| u.kind == Some(UpdateKind::Acknowledged))
    {
        Some(u) => format!("{} at {}", u.message.trim_end_matches('.'), clock(at)),
        None => format!("Acknowledged at {}", clock(at)),
    }
}

/// The facts of message `due`: `base` with the tier, the person's note and the next update.
/// `declared_at` is when the declaration was due (updates follow it every `update_every`).
pub fn for_due(
    base: &Facts,
    due: &Due,
    cfg: &NotifyConfig,
    declared_at: Millis,
    updates: &[IncidentUpdate],
) -> Facts {
    let mut f = base.clone();
    if let Some(t) = due.tier {
        f.tier = cfg
            .escalation
            .get(t)
            .map(|tier| format!("tier {}: {}", t + 1, tier.who));
    }
    if let Some(id) = due.note {
        if let Some(u) = updates.iter().find(|u| u.id == id) {
            f.note = Some(u.message.clone());
        }
    }
    if f.resolved.is_none() && due.kind != Kind::Resolved {
        f.next_update = Some(clock(next_update(
            declared_at,
            cfg.update_every.as_millis() as Millis,
            base.now,
        )));
    }
    f
}

/// The first update time after `now`: `declared_at + (N + 1) × every` for the N-th update due
/// by `now`.
pub fn next_update(declared_at: Millis, every: Millis, now: Millis) -> Millis {
    if every <= 0 {
        return declared_at;
    }
    let n = (now - declared_at).max(0) / every;
    declared_at + (n + 1) * every
}

/// A message's text when its template failed at run time: every figure, no formatting.
pub fn fallback(kind: Kind, f: &Facts) -> (String, String) {
    let title = format!(
        "[{}] {} incident #{}: {}",
        f.severity,
        f.service,
        f.id,
        kind.as_str()
    );
    let mut text = format!(
        "{}\nStatus: {}. Impact: {}. Started {}; elapsed {}.\n{:.0} % of probes failing; {} failed probes so far.",
        f.title, f.status, f.impact, f.started_text, f.elapsed, f.failing_percent, f.failed_probes
    );
    for a in &f.actions {
        text.push_str(&format!("\n{a}"));
    }
    if let Some(n) = &f.note {
        text.push_str(&format!("\nNote: {n}"));
    }
    if let Some(d) = &f.duration {
        text.push_str(&format!("\nResolved after {d}."));
    }
    if let Some(n) = &f.next_update {
        text.push_str(&format!("\nNext update by {n}."));
    }
    (title, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::figures::Inputs;
    use crate::incident::IncidentsConfig;
    use crate::notify::config::Tier;
    use crate::store::{Impact, IncidentStatus};

    const T0: Millis = 1_700_000_000_000;

    fn incident() -> Incident {
        Incident {
            id: 7,
            component: "inference-gateway".into(),
            title: "inference-gateway is down".into(),
            status: IncidentStatus::Investigating,
            impact: Impact::Major,
            started: T0,
            resolved: None,
            targets: vec!["gateway-health".into()],
            in_maintenance: false,
            figures: None,
            acknowledged: None,
            root_cause: None,
            resolution: None,
        }
    }

    /// An entry of the timeline: watchfire's when it has a kind, a person's otherwise.
    fn update(id: i64, at: Millis, message: &str, kind: Option<UpdateKind>) -> IncidentUpdate {
        let automatic = kind.is_some();
        IncidentUpdate {
            id,
            incident: 7,
            at,
            status: IncidentStatus::Investigating,
            message: message.into(),
            automatic,
            kind,
        }
    }

    fn due(kind: Kind, tier: Option<usize>, note: Option<i64>) -> Due {
        Due {
            key: format!("inc7:{}", kind.as_str()),
            kind,
            at: T0,
            receivers: vec!["oncall".into()],
            tier,
            note,
            suppressed: false,
        }
    }

    fn figures(duration_ms: i64) -> Figures {
        let inputs = Inputs {
            duration_ms,
            failed_probes_rollups: 12,
            failed_probes_seen: 3,
            proxied: Some((200, 50)),
            ..Inputs::default()
        };
        Figures::compute(&inputs, &IncidentsConfig::default())
    }

    fn facts_of(inc: &Incident, updates: &[IncidentUpdate], live: &Live, now: Millis) -> Facts {
        let labels = BTreeMap::from([
            ("component".to_string(), inc.component.clone()),
            ("severity".to_string(), "P0".to_string()),
        ]);
        let cfg = NotifyConfig {
            commander: Some("Jane Doe".into()),
            ..NotifyConfig::default()
        };
        base(&Context {
            cfg: &cfg,
            inc,
            updates,
            labels: &labels,
            live,
            figures: &figures(now - inc.started),
            in_maintenance: false,
            now,
        })
    }

    #[test]
    fn an_open_incident_says_what_failed_what_was_done_and_the_figures_so_far() {
        let updates = [
            update(
                1,
                T0,
                "Detected: gateway-health is down (connection_refused)",
                Some(UpdateKind::Detected),
            ),
            update(
                2,
                T0 + 3_000,
                "Traffic moved to http://127.0.0.1:8001 at 15:45:03 UTC (active_down)",
                Some(UpdateKind::TrafficMoved),
            ),
            update(
                3,
                T0 + 4_000,
                "gateway-predict is down too (status_code)",
                Some(UpdateKind::AlsoDown),
            ),
        ];
        let live = Live {
            failing_percent: 50.0,
            reason: Some("connection_refused".into()),
            detail: Some("connect: refused".into()),
        };
        let f = facts_of(&incident(), &updates, &live, T0 + 150_000);
        assert_eq!(f.id, 7);
        assert_eq!(f.service, "inference-gateway");
        assert_eq!(f.severity, "P0");
        assert_eq!(f.status, "investigating");
        assert_eq!(f.impact, "major");
        assert_eq!(f.elapsed, "2m30s");
        assert_eq!(f.started_text, "2023-11-14 22:13:20 UTC");
        assert_eq!(f.failing_percent, 50.0);
        assert_eq!(f.reason.as_deref(), Some("connection_refused"));
        assert_eq!(f.detail.as_deref(), Some("connect: refused"));
        assert_eq!(
            f.actions.len(),
            1,
            "only failover moves are actions: {:?}",
            f.actions
        );
        assert!(f.actions[0].starts_with("Traffic moved to http://127.0.0.1:8001"));
        assert_eq!(f.failed_probes, 12);
        assert_eq!(f.failed_requests, Some(50));
        assert_eq!(f.affected_percent, Some(25.0));
        assert_eq!(f.commander.as_deref(), Some("Jane Doe"));
        assert_eq!(f.note, None, "no person wrote yet");
        assert_eq!(f.resolved, None);
        assert_eq!(f.duration, None);
    }

    #[test]
    fn the_detail_falls_back_to_the_detected_update_when_nothing_is_down_now() {
        let updates = [update(
            1,
            T0,
            "Detected: gateway-health is down (timeout)",
            Some(UpdateKind::Detected),
        )];
        let f = facts_of(&incident(), &updates, &Live::default(), T0 + 1_000);
        assert_eq!(
            f.detail.as_deref(),
            Some("gateway-health is down (timeout)")
        );
        assert_eq!(f.reason, None);
    }

    #[test]
    fn a_resolved_incident_carries_duration_root_cause_and_the_verify_verdict() {
        let mut inc = incident();
        inc.status = IncidentStatus::Resolved;
        inc.resolved = Some(T0 + 754_000);
        inc.root_cause = Some("memory leak".into());
        inc.resolution = Some("rolled back".into());
        inc.acknowledged = Some(T0 + 60_000);
        let updates = [
            update(
                1,
                T0,
                "Detected: gateway-health is down (timeout)",
                Some(UpdateKind::Detected),
            ),
            update(
                2,
                T0 + 60_000,
                "Acknowledged by jane.",
                Some(UpdateKind::Acknowledged),
            ),
            update(3, T0 + 700_000, "verify: PASS — health 200 for 10m", None),
        ];
        let live = Live {
            failing_percent: 100.0,
            ..Live::default()
        };
        let f = facts_of(&inc, &updates, &live, T0 + 900_000);
        assert_eq!(f.duration.as_deref(), Some("12m34s"));
        assert_eq!(f.elapsed, "12m34s", "elapsed stops at the resolution");
        assert_eq!(f.failing_percent, 0.0);
        assert_eq!(f.root_cause.as_deref(), Some("memory leak"));
        assert_eq!(f.resolution.as_deref(), Some("rolled back"));
        assert_eq!(f.verify.as_deref(), Some("PASS — health 200 for 10m"));
        assert_eq!(
            f.acknowledged.as_deref(),
            Some("Acknowledged by jane at 22:14:20 UTC")
        );
        assert_eq!(f.note.as_deref(), Some("verify: PASS — health 200 for 10m"));
        let r = for_due(
            &f,
            &due(Kind::Resolved, None, None),
            &NotifyConfig::default(),
            T0,
            &updates,
        );
        assert_eq!(r.next_update, None, "nothing follows RESOLVED");
    }

    #[test]
    fn a_message_names_its_tier_its_note_and_the_next_update() {
        let cfg = NotifyConfig {
            update_every: std::time::Duration::from_secs(300),
            escalation: vec![Tier {
                after: std::time::Duration::from_secs(300),
                who: "service owner + SRE lead".into(),
                receivers: Vec::new(),
            }],
            ..NotifyConfig::default()
        };
        let updates = [
            update(1, T0, "Detected: x", Some(UpdateKind::Detected)),
            update(9, T0 + 200_000, "Rolling back the deploy", None),
        ];
        let f = facts_of(&incident(), &updates, &Live::default(), T0 + 310_000);
        let e = for_due(&f, &due(Kind::Escalated, Some(0), None), &cfg, T0, &updates);
        assert_eq!(e.tier.as_deref(), Some("tier 1: service owner + SRE lead"));
        assert_eq!(
            e.next_update.as_deref(),
            Some("22:23:20 UTC"),
            "declared + 2 × 5m"
        );
        let n = for_due(&f, &due(Kind::Note, None, Some(9)), &cfg, T0, &updates);
        assert_eq!(n.note.as_deref(), Some("Rolling back the deploy"));
    }

    #[test]
    fn labels_are_the_first_targets_with_component_and_the_components_severity() {
        let yaml = "targets:\n  - name: gateway-health\n    url: http://127.0.0.1:9/health\n    labels: { component: inference-gateway, team: ml }\n  - name: gateway-predict\n    url: http://127.0.0.1:9/predict\n    labels: { component: inference-gateway, severity: P1 }\n  - name: other\n    url: http://127.0.0.1:9/\n";
        let config = crate::config::load_str("t.yaml", yaml).expect("config");
        let index = Index::new(&config);
        let l = labels(&index, "P0", &incident());
        assert_eq!(l.get("team").map(String::as_str), Some("ml"));
        assert_eq!(
            l.get("component").map(String::as_str),
            Some("inference-gateway")
        );
        assert_eq!(l.get("severity").map(String::as_str), Some("P1"));
        let mut other = incident();
        other.component = "other".into();
        other.targets = vec!["other".into()];
        let l = labels(&index, "P0", &other);
        assert_eq!(
            l.get("severity").map(String::as_str),
            Some("P0"),
            "notify.severity by default"
        );
    }

    #[test]
    fn the_next_update_follows_the_declaration_every_update_every() {
        assert_eq!(next_update(1000, 300, 1000), 1300);
        assert_eq!(next_update(1000, 300, 1299), 1300);
        assert_eq!(next_update(1000, 300, 1300), 1600);
        assert_eq!(next_update(1000, 300, 500), 1300, "before the declaration");
    }

    #[test]
    fn the_fallback_text_carries_every_figure_without_a_template() {
        let f = facts_of(
            &incident(),
            &[],
            &Live {
                failing_percent: 50.0,
                ..Live::default()
            },
            T0 + 60_000,
        );
        let (title, text) = fallback(Kind::Declared, &f);
        assert_eq!(title, "[P0] inference-gateway incident #7: declared");
        assert!(
            text.contains("50 % of probes failing; 12 failed probes so far."),
            "{text}"
        );
    }
}
