//! The notifier: the glue between the incidents in the store and the notification outbox.
//!
//! One task, every second and at once when woken ([`Slot::wake`]: the incident feed and the
//! incident API wake it), reads the open incidents and those resolved in the last hour with
//! their timelines, asks the planner ([`crate::notify::plan::plan`]) what is due for each,
//! drops what the outbox holds already, renders the rest per receiver from the incident's
//! facts now, enqueues it (written before it is sent) and wakes the delivery workers
//! ([`Dispatcher`]). Planning again never makes a second message: keys are deterministic and the
//! outbox ignores a key it holds, so a restart resumes where the last process stopped.
//!
//! It starts with the incident feed ([`super::incidents::start`]) and follows reloads: a config
//! with receivers starts the dispatcher, a reload reconfigures it, and a reload that removes
//! every receiver stops planning (pending rows stay in the outbox). Alertmanager receivers also
//! get every open incident's alert again every `resend` (the `resend` submodule). Nothing here
//! waits on a receiver: deliveries are the dispatcher's, on its own tasks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::config::Config;
use crate::failover::Instance as _;
use crate::incident::{figures_inputs, Figures};
use crate::notify::outbox::{Dispatcher, HttpDeliver};
use crate::notify::plan::{self, Due, Input};
use crate::notify::{outbox_key, Facts, Kind, Message, NotifyConfig};
use crate::state::Health;
use crate::store::{
    Incident, IncidentQuery, IncidentUpdate, Millis, NewOutbox, OutboxState, StoreError,
};

use super::Runtime;

pub mod facts;
mod resend;

/// How often the planner runs when nothing wakes it.
const TICK: Duration = Duration::from_secs(1);
/// The least time between two rounds: a burst of wake-ups (a partition takes a thousand
/// targets down in a second) makes a round every this long, not one per wake-up.
const MIN_GAP: Duration = Duration::from_millis(100);
/// Resolved incidents are planned for this long after their resolution (their RESOLVED
/// message, a late note).
const RECENT_MS: Millis = 3_600_000;
/// The newest incidents read to find those resolved recently (open ones are all read).
const RECENT_LIMIT: usize = 256;
/// Rows enqueued in one transaction at most.
const ENQUEUE_BATCH: usize = 512;

/// What the runtime holds of the notifier: its wake-up and the dispatcher, whose metrics
/// `/metrics` renders.
#[derive(Default)]
pub struct Slot {
    wake: Notify,
    dispatcher: Mutex<Option<Arc<Dispatcher>>>,
    inbound: crate::notify::inbound::Counters,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

impl Slot {
    /// Plans at once instead of at the next tick (an incident changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Renders the delivery metrics, once a dispatcher runs, and the PagerDuty webhook's.
    pub fn render(&self, w: &mut crate::expo::Writer<'_>) {
        if let Some(d) = self.dispatcher() {
            d.render(w);
        }
        self.inbound.render(w);
    }

    /// The PagerDuty webhook endpoint's request counters.
    pub fn inbound(&self) -> &crate::notify::inbound::Counters {
        &self.inbound
    }

    fn dispatcher(&self) -> Option<Arc<Dispatcher>> {
        self.dispatcher
            .lock()
            .expect("dispatcher lock poisoned")
            .clone()
    }

    fn set_dispatcher(&self, d: Option<Arc<Dispatcher>>) {
        *self.dispatcher.lock().expect("dispatcher lock poisoned") = d;
    }
}

/// Starts the notifier on `rt` until `cancel` (the dispatcher and the resend loops stop with
/// it).
pub fn start(rt: Arc<Runtime>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    let n = Notifier {
        rt,
        cancel,
        config: None,
        notify: Arc::new(NotifyConfig::default()),
        index: facts::Index::default(),
        live_targets: None,
        resend: None,
        held: HashMap::new(),
        watched: HashSet::new(),
        broken: HashSet::new(),
    };
    tokio::spawn(n.run())
}

struct Notifier {
    rt: Arc<Runtime>,
    cancel: CancellationToken,
    /// The config last applied (by address).
    config: Option<Arc<Config>>,
    notify: Arc<NotifyConfig>,
    /// `config`'s targets by name and by component.
    index: facts::Index,
    /// The runtime's targets by name, read once per round when a message is rendered.
    live_targets: Option<HashMap<String, Arc<super::Target>>>,
    /// Stops the resend loops of the config in force.
    resend: Option<CancellationToken>,
    /// Outbox keys known to be held, per incident planned in the last round.
    held: HashMap<i64, HashSet<String>>,
    /// Incidents open in the last round: one that left the open list is read once more so its
    /// RESOLVED is planned even when it is not among the newest.
    watched: HashSet<i64>,
    /// Templates (receiver, kind) that failed at run time, logged once each.
    broken: HashSet<(String, Kind)>,
}

impl Notifier {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let rt = self.rt.clone();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tick.tick() => {}
                _ = rt.notifier().wake.notified() => {}
            }
            self.reconfigure();
            if self.notify.receivers.is_empty() {
                continue;
            }
            let began = tokio::time::Instant::now();
            if let Err(e) = self.round().await {
                warn!(error = %e, "notifications not planned: the store failed");
            }
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = tokio::time::sleep_until(began + MIN_GAP) => {}
            }
        }
        if let Some(r) = self.resend.take() {
            r.cancel();
        }
        self.rt.notifier().set_dispatcher(None);
    }

    /// Follows the running config: starts or reconfigures the dispatcher and the resend loops.
    fn reconfigure(&mut self) {
        let config = self.rt.config();
        if self
            .config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &config))
        {
            return;
        }
        let notify = Arc::new(config.notify.clone());
        // The index (every target by name and component) serves only the planning of
        // messages: a config without receivers does not pay for it at each reload.
        self.index = if notify.receivers.is_empty() {
            facts::Index::default()
        } else {
            facts::Index::new(&config)
        };
        self.config = Some(config);
        let slot = self.rt.notifier();
        match slot.dispatcher() {
            Some(d) => d.set_config(notify.clone()),
            None if !notify.receivers.is_empty() => {
                let deliver = Arc::new(HttpDeliver::new(notify.delivery.timeout));
                let d = Dispatcher::start(
                    self.rt.store().clone(),
                    notify.clone(),
                    deliver,
                    self.cancel.child_token(),
                );
                slot.set_dispatcher(Some(Arc::new(d)));
            }
            None => {}
        }
        if let Some(r) = self.resend.take() {
            r.cancel();
        }
        let token = self.cancel.child_token();
        resend::start(self.rt.clone(), &notify, token.clone());
        self.resend = Some(token);
        self.notify = notify;
    }

    /// One planning round; returns how many rows were enqueued.
    async fn round(&mut self) -> Result<usize, StoreError> {
        let now = self.rt.clock().now();
        let incidents = self.incidents(now).await?;
        let ids: Vec<i64> = incidents.iter().map(|i| i.id).collect();
        let mut timelines: HashMap<i64, Vec<IncidentUpdate>> = HashMap::new();
        for u in self.rt.store().updates(&ids).await? {
            timelines.entry(u.incident).or_default().push(u);
        }
        self.live_targets = None;
        self.held.retain(|id, _| ids.contains(id));
        let mut rows = Vec::new();
        for inc in &incidents {
            let updates = timelines.get(&inc.id).map_or(&[][..], Vec::as_slice);
            self.plan_one(inc, updates, now, &mut rows).await?;
        }
        let mut enqueued = 0;
        for chunk in rows.chunks(ENQUEUE_BATCH) {
            enqueued += self.rt.store().outbox_enqueue(chunk, now).await?;
            for r in chunk {
                self.held
                    .entry(r.incident)
                    .or_default()
                    .insert(r.key.clone());
            }
        }
        if !rows.is_empty() {
            if let Some(d) = self.rt.notifier().dispatcher() {
                d.wake();
            }
        }
        Ok(enqueued)
    }

    /// The open incidents, those resolved within [`RECENT_MS`], and those open in the last
    /// round whatever their age.
    async fn incidents(&mut self, now: Millis) -> Result<Vec<Incident>, StoreError> {
        let store = self.rt.store();
        let open = store
            .incidents(&IncidentQuery {
                open_only: true,
                since: None,
                limit: 0,
                component: None,
            })
            .await?;
        let recent = store
            .incidents(&IncidentQuery {
                open_only: false,
                since: None,
                limit: RECENT_LIMIT,
                component: None,
            })
            .await?;
        let mut seen: HashSet<i64> = open.iter().map(|i| i.id).collect();
        let was = std::mem::replace(&mut self.watched, seen.clone());
        let mut all = open;
        for i in recent {
            if i.resolved.is_some_and(|r| r >= now - RECENT_MS) && seen.insert(i.id) {
                all.push(i);
            }
        }
        for id in was.difference(&seen.clone()) {
            if let Some(i) = store.incident(*id).await? {
                seen.insert(i.id);
                all.push(i);
            }
        }
        Ok(all)
    }

    /// Plans `inc` and renders into `rows` every message not held yet.
    async fn plan_one(
        &mut self,
        inc: &Incident,
        updates: &[IncidentUpdate],
        now: Millis,
        rows: &mut Vec<NewOutbox>,
    ) -> Result<(), StoreError> {
        let config = self.config.clone().expect("reconfigured before planning");
        let labels = facts::labels(&self.index, &self.notify.severity, inc);
        let in_maintenance = self.rt.calendar().covered(&inc.component, now, now + 1) > 0;
        let input = Input {
            incident: inc,
            updates,
            labels: &labels,
            in_maintenance,
            now,
        };
        let dues = plan::plan(&self.notify, &input);
        let new = self.unheld(inc.id, &dues).await?;
        if new.is_empty() {
            return Ok(());
        }
        let live = self.live(inc);
        let figures = self.figures(&config, inc, now).await?;
        let base = facts::base(&facts::Context {
            cfg: &self.notify,
            inc,
            updates,
            labels: &labels,
            live: &live,
            figures: &figures,
            in_maintenance,
            now,
        });
        let declared_at = dues
            .iter()
            .find(|d| d.kind == Kind::Declared)
            .map_or(inc.started, |d| d.at);
        for (due, receivers) in new {
            let f = facts::for_due(&base, due, &self.notify, declared_at, updates);
            for r in receivers {
                rows.push(self.row(due, r, &f));
            }
        }
        Ok(())
    }

    /// The messages of `dues` whose outbox keys are not held, with the receivers still owed
    /// each. The store is asked only when a key is not known held already.
    async fn unheld<'a>(
        &mut self,
        incident: i64,
        dues: &'a [Due],
    ) -> Result<Vec<(&'a Due, Vec<&'a str>)>, StoreError> {
        let wanted = |held: &HashSet<String>| -> Vec<(&'a Due, Vec<&'a str>)> {
            dues.iter()
                .map(|d| {
                    let rs = d
                        .receivers
                        .iter()
                        .map(String::as_str)
                        .filter(|r| !held.contains(&outbox_key(&d.key, r)))
                        .collect::<Vec<_>>();
                    (d, rs)
                })
                .filter(|(_, rs)| !rs.is_empty())
                .collect()
        };
        let known = self.held.entry(incident).or_default();
        if wanted(known).is_empty() {
            return Ok(Vec::new());
        }
        let stored: HashSet<String> = self
            .rt
            .store()
            .outbox_keys(incident)
            .await?
            .into_iter()
            .collect();
        let out = wanted(&stored);
        self.held.insert(incident, stored);
        Ok(out)
    }

    /// The outbox row of `due` for `receiver`, rendered from `f`.
    fn row(&mut self, due: &Due, receiver: &str, f: &Facts) -> NewOutbox {
        let (title, text) = match self.notify.templates.render(receiver, due.kind, f) {
            Ok(r) => r,
            Err(e) => {
                if self.broken.insert((receiver.to_string(), due.kind)) {
                    error!(receiver, kind = due.kind.as_str(), template = %e.name, error = %e.message,
                        "a template failed on real data; its messages use the plain built-in text");
                }
                facts::fallback(due.kind, f)
            }
        };
        let key = outbox_key(&due.key, receiver);
        let m = Message {
            key: key.clone(),
            receiver: receiver.to_string(),
            kind: due.kind,
            incident: f.id,
            due: due.at,
            title,
            text,
            facts: f.clone(),
        };
        NewOutbox {
            key,
            incident: f.id,
            receiver: receiver.to_string(),
            kind: due.kind.as_str().to_string(),
            due: due.at,
            message: serde_json::to_string(&m).expect("a message serializes"),
            state: if due.suppressed {
                OutboxState::Suppressed
            } else {
                OutboxState::Pending
            },
        }
    }

    /// The runtime's view of `inc`'s component: the share of its targets down, the first
    /// failing target's reason and detail.
    fn live(&mut self, inc: &Incident) -> facts::Live {
        let names: Vec<String> = self
            .index
            .targets_of(&inc.component)
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let by_name = self.live_targets();
        let targets: Vec<_> = names.iter().filter_map(|n| by_name.get(n)).collect();
        let down = targets
            .iter()
            .filter(|t| t.health() == Health::Down)
            .count();
        let mut live = facts::Live {
            failing_percent: if targets.is_empty() {
                0.0
            } else {
                down as f64 / targets.len() as f64 * 100.0
            },
            ..facts::Live::default()
        };
        let failing = inc
            .targets
            .iter()
            .filter_map(|n| by_name.get(n))
            .find(|t| t.health() == Health::Down);
        if let Some(t) = failing {
            let stats = t.stats.lock().expect("stats lock poisoned");
            let s = super::history::target_state(&t.spec.name, &stats);
            live.reason = s.reason;
            live.detail = s.detail;
        }
        live
    }

    /// The runtime's targets by name (read once per round).
    fn live_targets(&mut self) -> &HashMap<String, Arc<super::Target>> {
        let rt = &self.rt;
        self.live_targets.get_or_insert_with(|| {
            rt.targets()
                .iter()
                .map(|t| (t.spec.name.clone(), t.clone()))
                .collect()
        })
    }

    /// The figures of `inc` so far: the stored ones once resolved, else computed at `now` from
    /// the rollups (the proxy's answers from the group's), the live failure streaks and what
    /// the proxy answered that is not written yet.
    async fn figures(
        &mut self,
        config: &Config,
        inc: &Incident,
        now: Millis,
    ) -> Result<Figures, StoreError> {
        if let Some(f) = inc
            .figures
            .as_deref()
            .and_then(|j| serde_json::from_str::<Figures>(j).ok())
        {
            return Ok(f);
        }
        let calendar = self.rt.calendar();
        let counters = super::counters::RuntimeCounters(self.rt.clone());
        let mut inputs = figures_inputs(self.rt.store(), &*calendar, &counters, inc, now).await?;
        let by_name = self.live_targets();
        inputs.failed_probes_seen = inc
            .targets
            .iter()
            .filter_map(|n| by_name.get(n))
            .map(|t| u64::from(t.stats.lock().expect("stats lock poisoned").state.failures))
            .sum();
        Ok(Figures::compute(&inputs, &config.incidents))
    }
}
