//! The glue between the runtime and the incident manager: one task that feeds the manager the
//! runtime's transitions and the failover groups' switches, and keeps the maintenance calendar in force up to date (at start,
//! after each reload, and when [`refresh_calendar`] is called after an API change). It starts
//! the notifier ([`super::notify`]) beside it and wakes it after each event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::cluster::observe::Snapshot;
use crate::cluster::quorum::Decided;
use crate::config::Config;
use crate::failover::{Group, Instance as _, Switched};
use crate::incident::maintenance::Calendar;
use crate::incident::{component_of, Counters, Incidents, SwitchEvent, TargetEvent};
use crate::state::{Health, TransitionEvent};
use crate::store::{now_millis, Millis, StoreError};

use super::counters::RuntimeCounters;
use super::Runtime;

/// How often the proxies are sampled and a reload is looked for.
const TICK: Duration = Duration::from_secs(5);

/// Builds the maintenance calendar from the config in force and the store's API windows, and
/// puts it in force ([`Runtime::set_calendar`]).
pub async fn refresh_calendar(rt: &Runtime) -> Result<Arc<Calendar>, StoreError> {
    let api = rt.store().maintenances().await?;
    let config = rt.config();
    // Components only matter to windows: a fleet without any does not pay for a map of every
    // target at each reload.
    let components = if config.maintenance.is_empty() && api.is_empty() {
        Default::default()
    } else {
        config.components()
    };
    let cal = Arc::new(Calendar::build(&config.maintenance, &api, components));
    rt.set_calendar(cal.clone());
    Ok(cal)
}

fn target_event(rt: &Runtime, e: &TransitionEvent) -> Option<TargetEvent> {
    let down = match e.to {
        Health::Down => true,
        Health::Up => false,
        Health::Unknown => return None,
    };
    let config = rt.config();
    let groups: Vec<&str> = config.failover.iter().map(|g| g.name.as_str()).collect();
    let spec = config.targets.iter().find(|t| t.name == e.target);
    let no_labels = std::collections::BTreeMap::new();
    let labels = spec.map_or(&no_labels, |s| &s.labels);
    Some(TargetEvent {
        target: e.target.clone(),
        component: component_of(&e.target, labels, &groups),
        down,
        // The runtime's clock, as the transition's store record has it.
        at: rt.clock().at(e.at),
        reason: e.reason.map(|r| r.as_str().to_string()),
        detail: e.detail.clone(),
        streak: spec.map_or(0, |s| s.down_after),
    })
}

fn switch_event(s: &Switched) -> SwitchEvent {
    let at =
        s.at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
    SwitchEvent {
        group: s.group.clone(),
        to: s.to.clone(),
        reason: s.reason.to_string(),
        at,
    }
}

/// Forwards each group's switches into `tx` (one task per group, ending with the group);
/// `known` holds the groups already forwarded, by address.
fn forward_switches(rt: &Runtime, known: &mut Vec<Arc<Group>>, tx: &mpsc::Sender<Switched>) {
    known.retain(|g| !g.cancel_token().is_cancelled());
    for g in rt.failover_groups() {
        if known.iter().any(|k| Arc::ptr_eq(k, &g)) {
            continue;
        }
        let mut rx = g.subscribe_switches();
        let (tx, cancel) = (tx.clone(), g.cancel_token());
        tokio::spawn(async move {
            loop {
                let s = tokio::select! {
                    _ = cancel.cancelled() => return,
                    s = rx.recv() => s,
                };
                match s {
                    Ok(s) => {
                        if tx.send(s).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => warn!(missed = n, "incident feed missed switches"),
                    Err(RecvError::Closed) => return,
                }
            }
        });
        known.push(g);
    }
}

/// Starts the incident manager on `rt`'s store and the task that feeds it, until `cancel`.
/// Open incidents are continued; a target of one that is up now resolves its part at once.
pub async fn start(rt: Arc<Runtime>, cancel: CancellationToken) -> Result<(), StoreError> {
    let counters: Arc<dyn Counters> = Arc::new(RuntimeCounters(rt.clone()));
    let cal = refresh_calendar(&rt).await?;
    let mut m =
        Incidents::load(rt.store().clone(), rt.config().incidents.clone(), counters).await?;
    m.set_calendar(cal);
    let mut events = rt.subscribe();
    // Targets of continued incidents that are up now (their state restored, or up at once).
    let up: Vec<String> = rt
        .targets()
        .iter()
        .filter(|t| t.health() == Health::Up)
        .map(|t| t.spec.name.clone())
        .collect();
    // Incidents whose targets were taken out of the config while watchfire was stopped.
    forget_removed(&rt, &mut m, &rt.config()).await?;
    for t in up {
        let e = TargetEvent {
            target: t,
            component: String::new(),
            down: false,
            at: now_millis(),
            reason: None,
            detail: None,
            streak: 0,
        };
        m.on_transition(&e).await?;
    }
    super::notify::start(rt.clone(), cancel.clone());
    tokio::spawn(async move { feed(rt, m, &mut events, cancel).await });
    Ok(())
}

async fn feed(
    rt: Arc<Runtime>,
    mut m: Incidents,
    events: &mut tokio::sync::broadcast::Receiver<TransitionEvent>,
    cancel: CancellationToken,
) {
    let (tx, mut switches) = mpsc::channel(64);
    // Cluster mode with locations: the quorum's transitions open and resolve incidents, on the
    // speaking location only; this location's own transitions do not.
    let mut quorum = rt.quorum().subscribe();
    let mut decided = Decided::default();
    let mut groups = Vec::new();
    forward_switches(&rt, &mut groups, &tx);
    let mut config = rt.config();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(snap) = next_snapshot(&mut quorum) => {
                quorum_events(&rt, &mut m, &mut decided, &snap).await
            }
            e = events.recv() => match e {
                Ok(_) if quorum.is_some() => Ok(()),
                Ok(e) => match target_event(&rt, &e) {
                    Some(te) => m.on_transition(&te).await,
                    None => Ok(()),
                },
                Err(RecvError::Lagged(n)) => {
                    warn!(missed = n, "incident feed missed transitions");
                    Ok(())
                }
                Err(RecvError::Closed) => return,
            },
            Some(s) = switches.recv() => m.on_switch(&switch_event(&s)).await,
            _ = tick.tick() => {
                let now = rt.config();
                if !Arc::ptr_eq(&now, &config) {
                    config = now;
                    m.set_config(config.incidents.clone());
                    if let Err(e) = forget_removed(&rt, &mut m, &config).await {
                        warn!(error = %e, "incidents of removed targets not closed: the store failed");
                    }
                    match refresh_calendar(&rt).await {
                        Ok(cal) => m.set_calendar(cal),
                        Err(e) => warn!(error = %e, "maintenance calendar not refreshed"),
                    }
                    forward_switches(&rt, &mut groups, &tx);
                }
                m.set_calendar(rt.calendar());
                m.settle(now_millis()).await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "incident not recorded: the store failed");
        }
        rt.wake_notifier();
    }
}

/// Closes what open incidents wait for of targets and groups `config` no longer has. Not while
/// an HTTP SD endpoint has yet to answer: its targets are missing from `config` then, not
/// removed (the reload its first answer makes comes back here).
async fn forget_removed(
    rt: &Runtime,
    m: &mut Incidents,
    config: &Config,
) -> Result<(), StoreError> {
    // Most reloads find no incident open: no set of every target's name then.
    if m.open_ids().is_empty() {
        return Ok(());
    }
    if !config.http_sd.is_empty() {
        let found = rt.sd_status();
        let answered = found.iter().filter(|(_, s)| s.last_success.is_some());
        if found.len() < config.http_sd.len() || answered.count() < found.len() {
            return Ok(());
        }
    }
    let watched: HashSet<&str> = config
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .chain(config.failover.iter().map(|g| g.name.as_str()))
        .collect();
    m.forget_removed(&|name| watched.contains(name), now_millis())
        .await
}

/// The next quorum snapshot; never ready outside cluster mode (or once the observer ended).
async fn next_snapshot(
    rx: &mut Option<tokio::sync::watch::Receiver<Arc<Snapshot>>>,
) -> Option<Arc<Snapshot>> {
    let Some(r) = rx.as_mut() else {
        return std::future::pending().await;
    };
    if r.changed().await.is_err() {
        *rx = None;
        return std::future::pending().await;
    }
    Some(r.borrow_and_update().clone())
}

/// Feeds the quorum's target and group transitions to the incident manager when this member
/// speaks for the quorum: with leases, this manager runs only on the holder of the notification
/// lease, which speaks; without, the location [`crate::cluster::quorum::Verdicts::speaker`]
/// names. Every location keeps the decisions, so a location that starts speaking does not repeat
/// an earlier one. A snapshot made while the database failed decides nothing.
async fn quorum_events(
    rt: &Runtime,
    m: &mut Incidents,
    decided: &mut Decided,
    snap: &Snapshot,
) -> Result<(), StoreError> {
    if !snap.database_up {
        return Ok(());
    }
    let speaks =
        rt.leadership().is_some() || snap.verdicts.speaker() == Some(snap.location.as_str());
    let transitions = decided.step_shared(&snap.verdicts);
    if !speaks {
        return Ok(());
    }
    for e in super::quorum::incident_events(&rt.config(), &transitions) {
        // Down at the quorum is news; up is every target's first decision too (100,000 lines
        // at the start of a 100,000-target cluster), so it is a debug line.
        if e.down {
            tracing::info!(target = %e.target, location = %snap.location, "quorum transition: down");
        } else {
            tracing::debug!(target = %e.target, location = %snap.location, "quorum transition: up");
        }
        m.on_transition(&e).await?;
    }
    Ok(())
}
