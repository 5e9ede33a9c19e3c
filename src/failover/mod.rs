//! Failover groups: which instance gets the traffic, switching on health, hooks on every switch,
//! and the failover proxy.
//!
//! Each instance's health check is an ordinary scheduled target (`GROUP/INDEX`), so it has the
//! same state machine, metrics and API as any target. A group's controller listens to those
//! targets' transitions and runs the pure [`select::decide`]; the proxy reads the active
//! instance from an atomic on every request and reports connection failures back as passive
//! evidence ([`Group::passive_failure`]), which takes the instance down at once.

pub mod hooks;
pub mod persist;
pub mod proxy;
pub mod select;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::FailoverGroup;
use crate::probe::Reason;
use crate::state::{Health, TransitionEvent};
use select::{Params, Selection, Switch, SwitchReason, View};

/// An instance's health check as a group sees it: the scheduled target that probes it. The
/// runtime's targets implement it; the group needs nothing else from them.
pub trait Instance: Send + Sync {
    /// The health its checks (and passive detection) decided.
    fn health(&self) -> Health;
    /// Takes it down at once on outside evidence (the proxy could not reach it), as if
    /// `down_after` checks had failed; the transition is announced like any other.
    fn mark_down(&self, reason: Reason, detail: String);
}

/// Who decides for a group when several watchfire instances share it (cluster mode): only the
/// member holding the group's lease moves traffic and runs hooks; the others follow the
/// decisions it publishes ([`Group::adopt`]). Without one, the group decides alone.
pub trait Voice: Send + Sync {
    /// True while this member may decide for the group.
    fn leading(&self) -> bool;
    /// Publishes the group's saved state, in order with earlier calls; `then` learns whether
    /// the cluster accepted it (a member whose lease has moved on is refused).
    fn publish(&self, state: crate::store::GroupState, then: Box<dyn FnOnce(bool) + Send>);
}

/// `active` value meaning "no instance".
const NONE: usize = usize::MAX;
/// Switches kept in the history.
const HISTORY: usize = 100;

/// One switch, as kept in the history.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchRecord {
    /// When (RFC 3339).
    pub at: String,
    /// Instance before (base URL), null for none.
    pub from: Option<String>,
    /// Instance after, null for none (503).
    pub to: Option<String>,
    /// Why.
    pub reason: &'static str,
    /// The failure or request behind it, when known.
    pub detail: Option<String>,
}

/// A switch of traffic, as announced to subscribers ([`Group::subscribe_switches`]): the
/// incident manager writes it on the group's incident.
#[derive(Debug, Clone)]
pub struct Switched {
    /// Group name.
    pub group: String,
    /// Instance now receiving traffic (base URL), none for none.
    pub to: Option<String>,
    /// Why.
    pub reason: &'static str,
    /// When.
    pub at: SystemTime,
}

struct GroupState {
    sel: Selection,
    up_since: Vec<Option<Instant>>,
    history: VecDeque<SwitchRecord>,
    transitions: u64,
    /// Changes of the active instance not yet taken for the group's rollups.
    changes: VecDeque<ActiveChange>,
}

/// A change of the instance receiving traffic, as the group's rollups take it
/// ([`Group::take_changes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveChange {
    /// When.
    pub at: Instant,
    /// The instance receiving traffic after it, none for none (the proxy answers 503).
    pub active: Option<usize>,
    /// Whether it is a switch (not the initial choice, a restore or a leader's decision
    /// taken over).
    pub switch: bool,
}

/// Changes kept for the rollups at most (the oldest go first if nobody takes them).
const CHANGES: usize = 1024;

impl GroupState {
    fn changed(&mut self, active: Option<usize>, switch: bool) {
        self.changes.push_back(ActiveChange {
            at: Instant::now(),
            active,
            switch,
        });
        while self.changes.len() > CHANGES {
            self.changes.pop_front();
        }
    }
}

/// A running failover group.
pub struct Group {
    /// Its config.
    pub cfg: FailoverGroup,
    params: Params,
    targets: RwLock<Vec<Arc<dyn Instance>>>,
    state: Mutex<GroupState>,
    active: AtomicUsize,
    /// Hook results.
    pub hooks: Arc<hooks::Hooks>,
    /// Proxy counters.
    pub proxy: proxy::Stats,
    passive: Vec<AtomicU64>,
    cancel: CancellationToken,
    proxy_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// The runtime the group was made on: hooks run there, also when the switch was decided
    /// on a proxy thread (whose runtime ends with the proxy).
    home: Option<tokio::runtime::Handle>,
    /// Switches (not the initial choice), for subscribers.
    switches: broadcast::Sender<Switched>,
    /// Where the group's state and switches are saved, when the runtime gave it a store.
    store: std::sync::OnceLock<crate::store::Store>,
    /// Who decides, in cluster mode.
    voice: std::sync::OnceLock<Arc<dyn Voice>>,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.cfg.name)
            .finish()
    }
}

impl Group {
    /// Creates a group over its instances' check targets (in instance order).
    pub fn new(
        cfg: FailoverGroup,
        targets: Vec<Arc<dyn Instance>>,
        cancel: CancellationToken,
    ) -> Arc<Group> {
        let n = cfg.instances.len();
        let max_in_flight = cfg.proxy.as_ref().map(|p| p.max_in_flight).unwrap_or(1);
        Arc::new(Group {
            params: Params {
                hold: cfg.hold,
                min_switch_interval: cfg.min_switch_interval,
                auto_failback: cfg.auto_failback,
                window: cfg.dampening.window,
                max_hold: cfg.dampening.max_hold,
            },
            proxy: proxy::Stats::new(n, max_in_flight),
            passive: (0..n).map(|_| AtomicU64::new(0)).collect(),
            cfg,
            targets: RwLock::new(targets),
            state: Mutex::new(GroupState {
                sel: Selection::default(),
                up_since: vec![None; n],
                history: VecDeque::new(),
                transitions: 0,
                changes: VecDeque::new(),
            }),
            active: AtomicUsize::new(NONE),
            hooks: Arc::new(hooks::Hooks::default()),
            cancel,
            proxy_addr: std::sync::OnceLock::new(),
            home: tokio::runtime::Handle::try_current().ok(),
            switches: broadcast::channel(64).0,
            store: std::sync::OnceLock::new(),
            voice: std::sync::OnceLock::new(),
        })
    }

    /// Saves the group's state and switches to `store` from now on.
    pub fn set_store(&self, store: crate::store::Store) {
        let _ = self.store.set(store);
    }

    /// Decides only while `voice` says so, publishing each decision through it (cluster
    /// mode); set before the controller starts.
    pub fn set_voice(&self, voice: Arc<dyn Voice>) {
        let _ = self.voice.set(voice);
    }

    /// Whether this member decides for the group now (always, outside cluster mode).
    pub fn decides(&self) -> bool {
        self.voice.get().is_none_or(|v| v.leading())
    }

    /// Takes over a decision another member published (or the last one, on becoming leader):
    /// traffic goes where it says, with no hook run; a change of instance is kept in the
    /// history and announced like a switch. False when the state does not fit the group.
    pub fn adopt(&self, stored: &crate::store::GroupState) -> bool {
        let Some((sel, saved)) = persist::restore(stored, self.cfg.instances.len()) else {
            return false;
        };
        let mut st = self.state.lock().expect("group state lock poisoned");
        let before = st.sel.active;
        st.sel = sel;
        self.active
            .store(sel.active.unwrap_or(NONE), Ordering::Release);
        if before == sel.active {
            return true;
        }
        st.changed(sel.active, false);
        let (from, to) = (self.name_of(before), self.name_of(sel.active));
        info!(group = %self.cfg.name, from = from.as_deref().unwrap_or("none"), to = to.as_deref().unwrap_or("none"), reason = saved.reason.as_deref().unwrap_or("unknown"), "failover: following the leader's decision");
        st.transitions += 1;
        st.history.push_back(SwitchRecord {
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            from,
            to: to.clone(),
            reason: "leader",
            detail: saved.reason.map(|r| format!("decided by the leader: {r}")),
        });
        while st.history.len() > HISTORY {
            st.history.pop_front();
        }
        if let Some(from) = before {
            self.proxy.evict(from);
        }
        let _ = self.switches.send(Switched {
            group: self.cfg.name.clone(),
            to,
            reason: "leader",
            at: SystemTime::now(),
        });
        true
    }

    /// Resumes a saved state before the controller starts: the active instance, the switch
    /// times dampening counts and a manual pin, with no switch recorded, no hook run and no
    /// transition counted. False (and a fresh choice) when the state does not fit the group.
    pub fn restore(&self, stored: &crate::store::GroupState) -> bool {
        let Some((sel, saved)) = persist::restore(stored, self.cfg.instances.len()) else {
            warn!(group = %self.cfg.name, "the stored failover state does not fit the group; choosing afresh");
            return false;
        };
        let mut st = self.state.lock().expect("group state lock poisoned");
        st.sel = sel;
        // As if the initial choice had been made: the switch count shown stays zero.
        st.transitions = 1;
        st.changed(sel.active, false);
        self.active
            .store(sel.active.unwrap_or(NONE), Ordering::Release);
        info!(group = %self.cfg.name, active = self.name_of(sel.active).as_deref().unwrap_or("none"), pinned = saved.pinned, "failover state restored");
        true
    }

    /// Takes the changes of the instance receiving traffic made before `before`, oldest first
    /// (later ones stay): what the group's rollups count down time and switches from.
    pub fn take_changes(&self, before: Instant) -> Vec<ActiveChange> {
        let mut st = self.state.lock().expect("group state lock poisoned");
        let n = st.changes.iter().take_while(|c| c.at < before).count();
        st.changes.drain(..n).collect()
    }

    /// Every switch of traffic from now on (not the initial choice).
    pub fn subscribe_switches(&self) -> broadcast::Receiver<Switched> {
        self.switches.subscribe()
    }

    /// Points the group at (possibly new) check targets after a reload.
    pub fn set_targets(&self, targets: Vec<Arc<dyn Instance>>) {
        *self.targets.write().expect("targets lock poisoned") = targets;
    }

    /// The address the proxy listens on (useful with port 0).
    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.proxy_addr.get().copied()
    }

    pub(crate) fn set_proxy_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.proxy_addr.set(addr);
    }

    /// The token the controller and the proxy stop on.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the controller and the proxy.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// The instance receiving traffic now.
    pub fn active(&self) -> Option<usize> {
        match self.active.load(Ordering::Acquire) {
            NONE => None,
            i => Some(i),
        }
    }

    /// Health of instance `i` from its checks (and passive detection).
    pub fn health(&self, i: usize) -> Health {
        let targets = self.targets.read().expect("targets lock poisoned");
        targets.get(i).map(|t| t.health()).unwrap_or(Health::Down)
    }

    /// Where a request should go, skipping the instances in `tried` (a bit per index): the active
    /// instance, else the first instance in order that is not down.
    pub fn pick(&self, tried: u64) -> Option<usize> {
        let n = self.cfg.instances.len().min(64);
        if let Some(a) = self.active() {
            if a < n && tried & (1 << a) == 0 {
                return Some(a);
            }
        }
        (0..n).find(|&i| tried & (1 << i) == 0 && self.health(i) != Health::Down)
    }

    /// The proxy could not reach instance `i`: that is evidence enough to take it down now,
    /// without waiting for `down_after` failed checks.
    pub fn passive_failure(&self, i: usize, reason: Reason, detail: String) {
        if let Some(c) = self.passive.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let target = self
            .targets
            .read()
            .expect("targets lock poisoned")
            .get(i)
            .cloned();
        if let Some(t) = target {
            t.mark_down(reason, detail.clone());
        }
        self.evaluate(Some(detail));
    }

    fn views(&self, st: &mut GroupState, now: Instant) -> Vec<View> {
        let health: Vec<Health> = (0..self.cfg.instances.len())
            .map(|i| self.health(i))
            .collect();
        select::observe(&health, &mut st.up_since, now)
    }

    /// Looks at the instances' health now and moves traffic if the rules say so.
    pub fn evaluate(&self, detail: Option<String>) -> Option<Switch> {
        if !self.decides() {
            return None;
        }
        let now = Instant::now();
        let mut st = self.state.lock().expect("group state lock poisoned");
        let views = self.views(&mut st, now);
        let (sel, sw) = select::decide(st.sel, &views, now, &self.params);
        st.sel = sel;
        if let Some(sw) = sw {
            self.apply(&mut st, sw, detail);
        }
        sw
    }

    /// An operator moves traffic to instance `to`.
    pub fn manual_switch(&self, to: usize) -> Result<Option<Switch>, String> {
        if !self.decides() {
            return Err(format!(
                "this member does not lead failover group {} now: ask the member holding lease failover/{} (GET /api/v1/cluster/leases)",
                self.cfg.name, self.cfg.name
            ));
        }
        let now = Instant::now();
        let mut st = self.state.lock().expect("group state lock poisoned");
        let views = self.views(&mut st, now);
        let (sel, sw) = select::manual(st.sel, to, &views, now)?;
        st.sel = sel;
        if let Some(sw) = sw {
            self.apply(&mut st, sw, Some("requested over the API".into()));
        }
        Ok(sw)
    }

    fn name_of(&self, i: Option<usize>) -> Option<String> {
        i.and_then(|i| self.cfg.instances.get(i))
            .map(|x| x.base.clone())
    }

    fn apply(&self, st: &mut GroupState, sw: Switch, detail: Option<String>) {
        self.active.store(sw.to.unwrap_or(NONE), Ordering::Release);
        st.transitions += 1;
        st.changed(sw.to, sw.reason != SwitchReason::Initial);
        let from = self.name_of(sw.from);
        let to = self.name_of(sw.to);
        let at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        match sw.to {
            Some(_) => {
                info!(group = %self.cfg.name, from = from.as_deref().unwrap_or("none"), to = to.as_deref().unwrap_or("none"), reason = %sw.reason, "failover: traffic moved")
            }
            None => {
                warn!(group = %self.cfg.name, from = from.as_deref().unwrap_or("none"), reason = %sw.reason, "failover: no instance is up; answering 503")
            }
        }
        st.history.push_back(SwitchRecord {
            at: at.clone(),
            from: from.clone(),
            to: to.clone(),
            reason: sw.reason.as_str(),
            detail: detail.clone(),
        });
        while st.history.len() > HISTORY {
            st.history.pop_front();
        }
        if let Some(store) = self.store.get() {
            let name = &self.cfg.name;
            store.write(crate::store::Write::GroupState(persist::save(
                name,
                &st.sel,
                Some(sw.reason),
            )));
            if sw.reason != SwitchReason::Initial {
                let rec = persist::transition(
                    name,
                    &sw,
                    from.as_deref(),
                    to.as_deref(),
                    detail.as_deref(),
                );
                store.write(crate::store::Write::Transition(rec));
            }
        }
        if let (Some(from), SwitchReason::ActiveDown | SwitchReason::NoneUp) = (sw.from, sw.reason)
        {
            // Requests waiting on the instance that went down end now, not at the proxy
            // timeout (a frozen process accepts and never answers).
            self.proxy.evict(from);
        }
        let voice = self.voice.get();
        if sw.reason == SwitchReason::Initial {
            if let Some(v) = voice {
                let state = persist::save(&self.cfg.name, &st.sel, Some(sw.reason));
                v.publish(state, Box::new(|_| {}));
            }
            return;
        }
        let _ = self.switches.send(Switched {
            group: self.cfg.name.clone(),
            to: to.clone(),
            reason: sw.reason.as_str(),
            at: SystemTime::now(),
        });
        let now = Instant::now();
        let notice = hooks::SwitchNotice {
            switches_in_window: select::switches_in_window(&st.sel, now, &self.params),
            hold_seconds: select::failback_hold(&st.sel, now, &self.params).as_secs_f64(),
            group: self.cfg.name.clone(),
            from: from.unwrap_or_default(),
            to: to.unwrap_or_default(),
            reason: sw.reason.as_str().into(),
            detail: detail.unwrap_or_default(),
            at,
        };
        // Hooks run in their own tasks: the switch above is already in effect. In cluster
        // mode they run once the decision is published, and not at all when it is refused.
        let run = self.hook_runner(notice);
        match voice {
            None => run(),
            Some(v) => {
                let group = self.cfg.name.clone();
                let state = persist::save(&group, &st.sel, Some(sw.reason));
                v.publish(
                    state,
                    Box::new(move |accepted| {
                        if accepted {
                            run();
                        } else {
                            warn!(group = %group, "failover decision refused by the cluster (this member no longer leads the group); hooks not run");
                        }
                    }),
                );
            }
        }
    }

    /// Starts the group's hooks for `notice`, when called.
    fn hook_runner(&self, notice: hooks::SwitchNotice) -> impl FnOnce() + Send + 'static {
        let (exec, webhook) = (self.cfg.hooks.exec.clone(), self.cfg.hooks.webhook.clone());
        let (stats, home) = (self.hooks.clone(), self.home.clone());
        move || {
            let spawn = |fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| {
                match &home {
                    Some(h) => drop(h.spawn(fut)),
                    None => drop(tokio::spawn(fut)),
                }
            };
            if let Some(h) = exec {
                spawn(Box::pin(hooks::run_exec(h, notice.clone(), stats.clone())));
            }
            if let Some(h) = webhook {
                spawn(Box::pin(hooks::run_webhook(h, notice, stats)));
            }
        }
    }

    fn dampening_state(&self, st: &GroupState) -> DampeningJson {
        let now = Instant::now();
        DampeningJson {
            window_seconds: self.params.window.as_secs_f64(),
            max_hold_seconds: self.params.max_hold.as_secs_f64(),
            switches_in_window: select::switches_in_window(&st.sel, now, &self.params),
            failback_hold_seconds: select::failback_hold(&st.sel, now, &self.params).as_secs_f64(),
        }
    }

    /// The flap dampening state now.
    pub fn dampening(&self) -> DampeningJson {
        let st = self.state.lock().expect("group state lock poisoned");
        self.dampening_state(&st)
    }

    fn watches(&self, target: &str) -> bool {
        self.cfg.instances.iter().any(|i| i.target == target)
    }

    /// Runs the controller until the group is stopped.
    pub async fn control(self: Arc<Self>, mut events: broadcast::Receiver<TransitionEvent>) {
        self.evaluate(None);
        loop {
            let deadline = {
                let now = Instant::now();
                let mut st = self.state.lock().expect("group state lock poisoned");
                let views = self.views(&mut st, now);
                select::next_deadline(st.sel, &views, &self.params)
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(ev) if self.watches(&ev.target) => {
                        let detail = ev.detail.clone().map(|d| format!("{}: {d}", ev.target)).or(Some(format!("{} is {}", ev.target, ev.to)));
                        self.evaluate(detail);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => { self.evaluate(None); }
                    Err(RecvError::Closed) => break,
                },
                _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                    self.evaluate(None);
                }
            }
        }
    }

    /// The JSON state of the group.
    pub fn json(&self) -> GroupJson {
        let st = self.state.lock().expect("group state lock poisoned");
        let targets = self.targets.read().expect("targets lock poisoned");
        GroupJson {
            name: self.cfg.name.clone(),
            policy: if self.cfg.auto_failback {
                "auto"
            } else {
                "manual"
            },
            active: self.name_of(self.active()),
            active_index: self.active(),
            hold_seconds: self.cfg.hold.as_secs_f64(),
            min_switch_interval_seconds: self.cfg.min_switch_interval.as_secs_f64(),
            dampening: self.dampening_state(&st),
            proxy: self.proxy_addr().map(|a| a.to_string()),
            transitions: st.transitions.saturating_sub(1),
            instances: self
                .cfg
                .instances
                .iter()
                .enumerate()
                .map(|(i, inst)| InstanceJson {
                    index: i,
                    url: crate::redact::url(&inst.base).into_owned(),
                    check_target: inst.target.clone(),
                    state: targets
                        .get(i)
                        .map(|t| t.health().as_str())
                        .unwrap_or("unknown"),
                    active: self.active() == Some(i),
                    passive_failures: self.passive[i].load(Ordering::Relaxed),
                })
                .collect(),
            history: st.history.iter().cloned().collect(),
            hooks: HooksJson {
                exec: self.cfg.hooks.exec.as_ref().map(|_| {
                    self.hooks
                        .exec
                        .lock()
                        .expect("hook stats lock poisoned")
                        .clone()
                }),
                webhook: self.cfg.hooks.webhook.as_ref().map(|_| {
                    self.hooks
                        .webhook
                        .lock()
                        .expect("hook stats lock poisoned")
                        .clone()
                }),
            },
        }
    }
}

/// The flap dampening state of a group in `/api/v1/failover`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DampeningJson {
    /// How far back switches count.
    pub window_seconds: f64,
    /// The longest hold dampening makes.
    pub max_hold_seconds: f64,
    /// Switches in the window now.
    pub switches_in_window: u32,
    /// The hold a failback needs now: `hold × 2^(switches − 1)`, at most `max_hold`.
    pub failback_hold_seconds: f64,
}

/// `/api/v1/failover` entry.
#[derive(Debug, Serialize)]
pub struct GroupJson {
    /// Group name.
    pub name: String,
    /// `auto` or `manual`.
    pub policy: &'static str,
    /// Base URL of the instance receiving traffic (null: none, the proxy answers 503).
    pub active: Option<String>,
    /// Its index.
    pub active_index: Option<usize>,
    /// Hold before failback.
    pub hold_seconds: f64,
    /// Minimum time between voluntary switches.
    pub min_switch_interval_seconds: f64,
    /// Flap dampening.
    pub dampening: DampeningJson,
    /// Proxy listen address.
    pub proxy: Option<String>,
    /// Switches since start (not counting the initial choice).
    pub transitions: u64,
    /// Instances in order.
    pub instances: Vec<InstanceJson>,
    /// Recent switches, oldest first (at most 100).
    pub history: Vec<SwitchRecord>,
    /// Hook results.
    pub hooks: HooksJson,
}

/// One instance in `/api/v1/failover`.
#[derive(Debug, Serialize)]
pub struct InstanceJson {
    /// Index (0 = primary).
    pub index: usize,
    /// Base URL.
    pub url: String,
    /// Name of its check target.
    pub check_target: String,
    /// `unknown`, `up`, `down`.
    pub state: &'static str,
    /// Receiving traffic.
    pub active: bool,
    /// Times the proxy could not reach it.
    pub passive_failures: u64,
}

/// Hook results in `/api/v1/failover`.
#[derive(Debug, Serialize)]
pub struct HooksJson {
    /// The exec hook, when configured.
    pub exec: Option<hooks::HookStats>,
    /// The webhook, when configured.
    pub webhook: Option<hooks::HookStats>,
}

/// Renders the failover families (and the proxy's, [`proxy::render`]); nothing without groups.
pub fn render(groups: &[Arc<Group>], w: &mut crate::expo::Writer<'_>) {
    use crate::expo::catalog::*;
    if groups.is_empty() {
        return;
    }
    w.header(&FAILOVER_ACTIVE);
    for g in groups {
        let a = g.active();
        for (i, inst) in g.cfg.instances.iter().enumerate() {
            let labels = [
                ("group", g.cfg.name.as_str()),
                ("instance", &inst.authority),
            ];
            w.sample(&FAILOVER_ACTIVE, &labels, a == Some(i));
        }
    }
    w.header(&FAILOVER_AVAILABLE);
    for g in groups {
        let available = g.active().is_some();
        w.sample(&FAILOVER_AVAILABLE, &[("group", &g.cfg.name)], available);
    }
    w.header(&FAILOVER_PRIMARY_ACTIVE);
    for g in groups {
        let primary = g.active() == Some(0);
        w.sample(&FAILOVER_PRIMARY_ACTIVE, &[("group", &g.cfg.name)], primary);
    }
    w.header(&FAILOVER_TRANSITIONS);
    for g in groups {
        let n = g
            .state
            .lock()
            .expect("group state lock poisoned")
            .transitions
            .saturating_sub(1);
        w.sample(&FAILOVER_TRANSITIONS, &[("group", &g.cfg.name)], n);
    }
    w.header(&FAILOVER_SWITCHES_IN_WINDOW);
    for g in groups {
        let n = g.dampening().switches_in_window;
        w.sample(&FAILOVER_SWITCHES_IN_WINDOW, &[("group", &g.cfg.name)], n);
    }
    w.header(&FAILOVER_FAILBACK_HOLD);
    for g in groups {
        let hold = g.dampening().failback_hold_seconds;
        w.sample(&FAILOVER_FAILBACK_HOLD, &[("group", &g.cfg.name)], hold);
    }
    w.header(&FAILOVER_PASSIVE_FAILURES);
    for g in groups {
        for (i, inst) in g.cfg.instances.iter().enumerate() {
            let labels = [
                ("group", g.cfg.name.as_str()),
                ("instance", &inst.authority),
            ];
            let n = g.passive[i].load(Ordering::Relaxed);
            w.sample(&FAILOVER_PASSIVE_FAILURES, &labels, n);
        }
    }
    w.header(&FAILOVER_HOOK_RUNS);
    for g in groups {
        for (hook, stats, on) in configured_hooks(g) {
            if !on {
                continue;
            }
            let s = stats.lock().expect("hook stats lock poisoned");
            for (result, n) in [
                ("success", s.ok),
                ("failure", s.failed),
                ("timeout", s.timed_out),
            ] {
                let labels = [
                    ("group", g.cfg.name.as_str()),
                    ("hook", hook),
                    ("result", result),
                ];
                w.sample(&FAILOVER_HOOK_RUNS, &labels, n);
            }
        }
    }
    w.header(&FAILOVER_HOOK_LAST_DURATION);
    for g in groups {
        for (hook, stats, on) in configured_hooks(g) {
            if on {
                let s = stats.lock().expect("hook stats lock poisoned");
                let labels = [("group", g.cfg.name.as_str()), ("hook", hook)];
                w.sample(
                    &FAILOVER_HOOK_LAST_DURATION,
                    &labels,
                    s.last_duration_seconds,
                );
            }
        }
    }
    proxy::render(groups, w);
}

/// Each hook of a group: its name, its results and whether it is configured.
fn configured_hooks(g: &Group) -> [(&'static str, &Mutex<hooks::HookStats>, bool); 2] {
    [
        ("exec", &g.hooks.exec, g.cfg.hooks.exec.is_some()),
        ("webhook", &g.hooks.webhook, g.cfg.hooks.webhook.is_some()),
    ]
}
