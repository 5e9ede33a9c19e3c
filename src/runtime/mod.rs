//! The live set of targets: applies a config, runs each probe when the scheduler says, records
//! the outcome, and announces state transitions.
//!
//! A reload builds the new set next to the old one: a target whose probe is unchanged
//! ([`TargetSpec::same_probe`](crate::config::TargetSpec::same_probe)) is carried over as the same object — histograms, counters, state
//! and place on the schedule intact. A config that fails to load changes nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::config::{self, Config};
use crate::failover::{self, Group};
use crate::record::{Buckets, Hdr};
use crate::schedule::{self, SchedulerHandle};
use crate::state::TransitionEvent;
use crate::store::{GroupState, MaintenanceCalendar, NoMaintenance, Store, TargetState};
use crate::threads::per_cpu_threads;

pub mod counters;
mod file_sd;
pub mod group_rollups;
mod groups;
pub mod history;
pub mod http_sd;
pub mod incidents;
mod lanes;
pub mod leader;
mod membership;
pub mod notify;
mod plan;
pub mod quorum;
mod target;
pub use file_sd::{load_blocking, load_blocking_cached, load_blocking_with};
use file_sd::{stale_message, watch_file_sd};
use groups::stored_groups;
use lanes::{claim_lane, probe_threads, release_lane, Lane};
use membership::follow_membership;
use plan::plan_targets;
pub use target::Target;

/// Default bound on probes in flight at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4096;

/// What every target shares: where probes run and who hears about transitions.
struct Shared {
    /// Where probes run: the probe threads (see [`probe_threads`]), or one lane on the caller's
    /// runtime when the precise scheduler is off (tests on paused time).
    lanes: Vec<Lane>,
    cancel: CancellationToken,
    events: broadcast::Sender<TransitionEvent>,
    /// Whether `lanes` are this runtime's own probe threads, which stop on `cancel` and drop
    /// their probes with them; on the caller's runtime each probe watches `cancel` itself.
    own_lanes: bool,
    /// Probes that failed for a reason of watchfire's own ([`Reason::Prober`]): rare, so one
    /// counter for every lane.
    local_errors: AtomicU64,
    /// Ticks skipped because the target's previous probe still ran, over every target: rare,
    /// so one counter for every lane.
    skipped: AtomicU64,
    /// The bound on probes in flight: `--max-concurrency`, or less when the open-file limit
    /// cannot hold that many ([`crate::resources::probe_bound`]).
    max_in_flight: usize,
    /// Where transitions and states are queued.
    store: Store,
    /// Wall-clock milliseconds for the store, advanced by tokio's clock.
    clock: history::Clock,
    /// Changes whenever a target's view for the quorum observer may have changed: a
    /// transition, a down target's failure reason, the set of targets. Rare, so one counter
    /// for every lane; the observer passes over every target only when it moved.
    views_version: AtomicU64,
}

/// Reload bookkeeping for `watchfire_config_last_reload_*`.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    /// Whether the last attempt worked.
    pub ok: bool,
    /// When the last successful load happened.
    pub last_success: SystemTime,
    /// The last error, when the last attempt failed.
    pub last_error: Option<String>,
    /// Reloads attempted, by result.
    pub successes: u64,
    /// Failed reloads.
    pub failures: u64,
}

/// The running prober: targets, scheduler, reload.
pub struct Runtime {
    shared: Arc<Shared>,
    targets: RwLock<Arc<Vec<Arc<Target>>>>,
    config: RwLock<Arc<Config>>,
    config_path: Option<PathBuf>,
    /// One scheduler per lane, each with the targets whose `lane` it is.
    schedulers: Vec<SchedulerHandle<Target>>,
    reload: Mutex<ReloadStatus>,
    /// Serialises reloads.
    reload_lock: tokio::sync::Mutex<()>,
    /// Failover groups.
    failover: Mutex<Vec<Arc<Group>>>,
    /// Container memory watches and their last readings.
    memory: crate::memory::Memory,
    /// `/probe`'s state: the timeout offset and the unknown-module counter.
    blackbox: crate::blackbox::endpoint::Blackbox,
    started: SystemTime,
    /// Whether a reload may apply a config that defines nothing (`--allow-empty-config`).
    allow_empty_config: AtomicBool,
    /// Where `/probe` is served and whether the web config asks for users
    /// ([`Runtime::set_exposure`]).
    exposure: Mutex<Option<(Vec<std::net::SocketAddr>, bool)>>,
    /// Where state, transitions and rollups are kept.
    store: Store,
    /// `--web.config.file` for the proxies that ask for it.
    web: Option<Arc<crate::web::WebSource>>,
    /// The maintenance windows in force ([`Runtime::set_calendar`]).
    calendar: RwLock<Arc<dyn MaintenanceCalendar>>,
    /// The stored states the first [`Runtime::apply`] resumes targets and groups from.
    restoring: Mutex<Option<Restoring>>,
    /// The notifier's wake-up and dispatcher ([`notify`]).
    notifier: notify::Slot,
    /// The file_sd files read so far, for reloads and [`watch_file_sd`], and the last good
    /// answer of each HTTP SD endpoint.
    file_sd: Arc<Mutex<config::FileSdCache>>,
    /// This member's leases, in cluster mode ([`leader`]).
    leadership: Option<Arc<leader::Leadership>>,
    /// The cluster this runtime is a member of (`--cluster`).
    cluster: Option<Arc<Cluster>>,
    /// Cluster mode's quorum across locations (empty otherwise; [`quorum::start`]).
    quorum: Arc<crate::cluster::observe::Slot>,
    /// The HTTP SD pollers ([`http_sd`]).
    http_sd: Arc<http_sd::Pollers>,
    /// This runtime, for the tasks [`Runtime::apply`] starts.
    me: std::sync::OnceLock<std::sync::Weak<Runtime>>,
    /// The failover groups' rollup slices ([`group_rollups`]).
    group_slices: group_rollups::GroupSlices,
}

/// Stored states read on start, by name.
#[derive(Default)]
struct Restoring {
    targets: std::collections::HashMap<String, TargetState>,
    groups: std::collections::HashMap<String, GroupState>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Options for [`Runtime::start`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Bound on probes in flight, divided evenly among the probe threads (each a share of its
    /// own, at least 1, so that starting a probe touches nothing another thread writes).
    pub max_concurrency: usize,
    /// Run probes on the probe threads with their precise timers (true in production; false
    /// runs scheduler and probes on the caller's runtime, to follow paused time in tests).
    pub precise_timer: bool,
    /// The least time between two wake-ups of a probe thread's scheduler (see
    /// [`schedule::TimerFdSleeper`]); zero wakes for every planned start.
    pub min_wake_gap: Duration,
    /// How long before its planned start a probe may start at a probe thread's wake-up, so
    /// that the probes planned that close after it share it (see [`schedule::Sleeper::lead`]);
    /// zero starts none early.
    pub wake_lead: Duration,
    /// Where state, transitions and rollups are kept ([`Store::memory`] by default).
    pub store: Store,
    /// `--web.config.file`, for the failover proxies whose group says `proxy.web_config: true`.
    pub web: Option<Arc<crate::web::WebSource>>,
    /// The file_sd files read so far ([`load_blocking_cached`]): reloads read through it.
    pub file_sd: Arc<Mutex<config::FileSdCache>>,
    /// This member's leases, in cluster mode: failover groups decide only while holding
    /// theirs and follow the published decisions otherwise.
    pub leadership: Option<Arc<leader::Leadership>>,
    /// `--cluster`: probe only the targets this member owns, and re-plan when the membership
    /// changes. `None`: every target, at no cost.
    pub cluster: Option<Arc<Cluster>>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            precise_timer: true,
            min_wake_gap: schedule::DEFAULT_MIN_WAKE_GAP,
            wake_lead: schedule::DEFAULT_WAKE_LEAD,
            store: Store::memory(),
            web: None,
            file_sd: Arc::default(),
            leadership: None,
            cluster: None,
        }
    }
}

impl Runtime {
    /// Starts probing `config`. `config_path` is what reloads read again.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
        opts: RuntimeOptions,
        cancel: CancellationToken,
    ) -> Result<Arc<Runtime>, String> {
        let (events, _) = broadcast::channel(1024);
        let own_lanes = opts.precise_timer;
        let lanes = if own_lanes {
            probe_threads(per_cpu_threads(), cancel.clone())
                .map_err(|e| format!("cannot start the probe threads: {e}"))?
        } else {
            vec![Handle::current()]
        };
        let max_in_flight = crate::resources::probe_bound(opts.max_concurrency);
        // The bound is divided evenly among the lanes, at least one probe each.
        let bound = (max_in_flight / lanes.len()).max(1);
        let shared = Arc::new(Shared {
            lanes: lanes.into_iter().map(|h| Lane::new(h, bound)).collect(),
            cancel: cancel.clone(),
            events,
            own_lanes,
            local_errors: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            max_in_flight,
            store: opts.store.clone(),
            clock: history::Clock::system(),
            views_version: AtomicU64::new(0),
        });
        let schedulers = if own_lanes {
            lanes::start_schedulers(&shared, opts.min_wake_gap, opts.wake_lead)?
        } else {
            let (h, fut) = schedule::scheduler::<Target, _>(schedule::TokioSleeper, cancel.clone());
            tokio::spawn(fut);
            vec![h]
        };
        let rt = Arc::new(Runtime {
            shared,
            targets: RwLock::new(Arc::new(Vec::new())),
            config: RwLock::new(Arc::new(Config::default())),
            config_path,
            schedulers,
            reload: Mutex::new(ReloadStatus {
                ok: true,
                last_success: SystemTime::now(),
                last_error: None,
                successes: 0,
                failures: 0,
            }),
            reload_lock: tokio::sync::Mutex::new(()),
            failover: Mutex::new(Vec::new()),
            memory: crate::memory::Memory::new(cancel.clone()),
            blackbox: crate::blackbox::endpoint::Blackbox::default(),
            started: SystemTime::now(),
            allow_empty_config: AtomicBool::new(false),
            exposure: Mutex::new(None),
            store: opts.store.clone(),
            web: opts.web.clone(),
            calendar: RwLock::new(Arc::new(NoMaintenance)),
            restoring: Mutex::new(None),
            notifier: notify::Slot::default(),
            file_sd: opts.file_sd.clone(),
            leadership: opts.leadership.clone(),
            cluster: opts.cluster.clone(),
            quorum: Arc::default(),
            http_sd: Arc::default(),
            me: std::sync::OnceLock::new(),
            group_slices: Default::default(),
        });
        let _ = rt.me.set(Arc::downgrade(&rt));
        let restoring = Restoring {
            targets: history::stored_targets(&opts.store, &config).await,
            groups: stored_groups(&opts.store, &config).await,
        };
        *rt.restoring.lock().expect("restoring lock poisoned") = Some(restoring);
        // Subscribed before the first plan: a change of membership meanwhile re-plans.
        let membership = rt.cluster.as_ref().map(|c| c.subscribe());
        rt.apply(config).await?;
        if let Some(changes) = membership {
            tokio::spawn(follow_membership(
                Arc::downgrade(&rt),
                changes,
                cancel.clone(),
            ));
        }
        tokio::spawn(watch_file_sd(Arc::downgrade(&rt), cancel.clone()));
        tokio::spawn(http_sd::reload_on_change(
            Arc::downgrade(&rt),
            cancel.clone(),
        ));
        tokio::spawn(history::flush_every_minute(
            Arc::downgrade(&rt),
            rt.shared.clock,
            cancel.clone(),
        ));
        Ok(rt)
    }

    /// Replaces the running config, carrying unchanged targets and failover groups over.
    /// Proxy listeners of new groups are bound first: if one cannot be, nothing changes.
    pub async fn apply(&self, mut config: Config) -> Result<(), String> {
        let old_groups = self.failover_groups();
        let mut listeners = Vec::new();
        for g in &config.failover {
            if old_groups.iter().any(|o| o.cfg == *g) {
                continue;
            }
            if let Some(p) = &g.proxy {
                if p.web_config && self.web.is_none() {
                    return Err(format!(
                        "failover group {}: proxy.web_config is true but no --web.config.file was given",
                        g.name
                    ));
                }
                let l = failover::proxy::bind(p.listen, per_cpu_threads()).map_err(|e| {
                    format!(
                        "failover group {}: the proxy cannot listen on {}: {e}",
                        g.name, p.listen
                    )
                })?;
                listeners.push((g.name.clone(), l));
            }
        }
        let restoring = self
            .restoring
            .lock()
            .expect("restoring lock poisoned")
            .take()
            .unwrap_or_default();
        let old = self.targets();
        let owned = self.cluster.as_ref().map(|c| c.owned_specs(&config));
        let specs = owned.as_deref().unwrap_or(&config.targets);
        let plan = plan_targets(&old, specs, self.shared.lanes.len(), |spec| {
            let stored = restoring.targets.get(&spec.name);
            Target::new(spec.clone(), self.shared.clone(), stored)
                .map(Arc::new)
                .map_err(|e| format!("target {}: {e}", spec.name))
        })?;
        let (kept, added, removed) = (plan.kept, plan.added, plan.removed.len());
        self.forget_or_hand_off(&plan.removed, &config, specs);
        let next = plan.next;
        self.mark_history(&next);
        if owned.is_none() {
            plan::share_specs(&mut config.targets, &next);
        }
        for t in next.iter() {
            if let Some(n) = t.spec.module() {
                *t.module.lock().expect("module lock poisoned") = config.modules.get(n).cloned();
            }
        }
        *self.targets.write().expect("targets lock poisoned") = next.clone();
        self.shared.views_version.fetch_add(1, Ordering::Release);
        // A lane none of whose targets came or went keeps its schedule as it is: an unchanged
        // reload sends nothing to the probe threads.
        for (lane, scheduler) in self.schedulers.iter().enumerate() {
            if !plan.lanes_changed.get(lane).copied().unwrap_or(true) {
                continue;
            }
            let mine = next.iter().filter(|t| t.lane == lane).cloned().collect();
            if !scheduler.replace(mine).await {
                return Err("the scheduler has stopped".into());
            }
        }
        self.apply_failover(&config, &next, listeners, &restoring.groups)?;
        self.memory.apply(&config.memory);
        let http_sd = config.http_sd.clone();
        *self.config.write().expect("config lock poisoned") = Arc::new(config);
        if let Some(c) = &self.cluster {
            c.set_owned(next.len());
        }
        // After the config is in force: a poller finds its section there.
        let me = self.me.get().cloned().unwrap_or_default();
        self.http_sd.reconcile(me, &http_sd, &self.shared.cancel);
        info!(targets = next.len(), kept, added, removed, "config applied");
        Ok(())
    }

    /// The cluster this runtime is a member of (`--cluster`).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// `/probe`'s state (timeout offset, unknown-module counter).
    pub fn blackbox(&self) -> &crate::blackbox::endpoint::Blackbox {
        &self.blackbox
    }

    /// Container memory watches (rendered into `/metrics`).
    pub fn memory(&self) -> &crate::memory::Memory {
        &self.memory
    }

    /// This member's leases, in cluster mode.
    pub fn leadership(&self) -> Option<&Arc<leader::Leadership>> {
        self.leadership.as_ref()
    }

    /// The running failover groups.
    pub fn failover_groups(&self) -> Vec<Arc<Group>> {
        self.failover
            .lock()
            .expect("failover lock poisoned")
            .clone()
    }

    /// A failover group by name.
    pub fn failover_group(&self, name: &str) -> Option<Arc<Group>> {
        self.failover_groups()
            .into_iter()
            .find(|g| g.cfg.name == name)
    }

    /// Reads the config path again and applies it; on failure the running config stays.
    pub async fn reload(&self) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let Some(path) = self.config_path.clone() else {
            return Err("no config file to reload (started without --config)".into());
        };
        let opts = config::LoadOptions {
            allow_empty: self.allow_empty_config.load(Ordering::Relaxed),
        };
        let result = match load_blocking_cached(path.clone(), opts, self.file_sd.clone()).await {
            Ok(mut cfg) => {
                let stale = std::mem::take(&mut cfg.file_sd_stale);
                match self.apply(cfg).await {
                    Ok(()) if stale.is_empty() => Ok(()),
                    Ok(()) => Err(stale_message(&stale)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        let mut st = self.reload.lock().expect("reload lock poisoned");
        match &result {
            Ok(()) => {
                st.ok = true;
                st.last_success = SystemTime::now();
                st.last_error = None;
                st.successes += 1;
                info!(path = %path.display(), "config reloaded");
                self.warn_exposure();
            }
            Err(e) => {
                st.ok = false;
                st.last_error = Some(e.clone());
                st.failures += 1;
                warn!(path = %path.display(), error = %e, "config reload failed; keeping the running config");
            }
        }
        result
    }

    /// Where `/probe` is served (`listen`) and whether the web config asks for users
    /// (`has_auth`): watchfire warns now, and after each successful reload, while `/probe`
    /// answers beyond loopback with neither users nor a `probe_guard`.
    pub fn set_exposure(&self, listen: Vec<std::net::SocketAddr>, has_auth: bool) {
        *self.exposure.lock().expect("exposure lock poisoned") = Some((listen, has_auth));
        self.warn_exposure();
    }

    fn warn_exposure(&self) {
        let exposure = self.exposure.lock().expect("exposure lock poisoned");
        let Some((listen, has_auth)) = exposure.as_ref() else {
            return;
        };
        let config = self.config();
        let guard = config.modules.guard().map(|g| &**g);
        if let Some(w) = crate::net::guard::probe_exposure_warning(listen, *has_auth, guard) {
            warn!("{w}");
        }
    }

    /// Lets reloads apply a config that defines nothing (`--allow-empty-config`); refused by
    /// default, the running config staying.
    pub fn set_allow_empty_config(&self, allow: bool) {
        self.allow_empty_config.store(allow, Ordering::Relaxed);
    }

    /// A number that changes whenever a target's up/down view (health, since when, a down
    /// target's failure reason) or the set of targets may have changed; equal numbers read
    /// before two passes over [`Runtime::targets`] mean they saw the same views.
    pub fn views_version(&self) -> u64 {
        self.shared.views_version.load(Ordering::Acquire)
    }

    /// The current targets (a snapshot).
    pub fn targets(&self) -> Arc<Vec<Arc<Target>>> {
        self.targets.read().expect("targets lock poisoned").clone()
    }

    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().expect("config lock poisoned").clone()
    }

    /// Reload bookkeeping.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reload.lock().expect("reload lock poisoned").clone()
    }

    /// Subscribes to state transitions.
    pub fn subscribe(&self) -> broadcast::Receiver<TransitionEvent> {
        self.shared.events.subscribe()
    }

    /// Probes in flight now.
    pub fn in_flight(&self) -> u64 {
        self.shared
            .lanes
            .iter()
            .map(|lane| lane.active.load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// Probes that failed for a reason of watchfire's own ([`crate::probe::Reason::Prober`]) so far.
    pub fn local_errors(&self) -> u64 {
        self.shared.local_errors.load(Ordering::Relaxed)
    }

    /// The bound on probes in flight (`--max-concurrency`, capped by the open-file limit).
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight
    }

    /// Every lane's lag histogram, merged.
    fn lag_merged(&self) -> Hdr {
        let mut all = Hdr::default();
        for lane in &self.shared.lanes {
            all.merge(&lane.lag.lock().expect("lag lock poisoned").hdr);
        }
        all
    }

    /// Each probe thread's schedule lag over [`LAG_BUCKETS`](crate::record::LAG_BUCKETS), in lane order.
    pub fn lane_lag_buckets(&self) -> Vec<Buckets<13>> {
        self.shared
            .lanes
            .iter()
            .map(|lane| lane.lag.lock().expect("lag lock poisoned").buckets.clone())
            .collect()
    }

    /// Scheduled ticks skipped because the target's previous probe still ran, over every
    /// target since start.
    pub fn ticks_skipped(&self) -> u64 {
        self.shared.skipped.load(Ordering::Relaxed)
    }

    /// Quantile `q` of the schedule lag over every probe so far (`None` before the first).
    pub fn lag_quantile(&self, q: f64) -> Option<Duration> {
        self.lag_merged().quantile(q)
    }

    /// Probes recorded so far, over every target (from the lag histogram).
    pub fn probes_recorded(&self) -> u64 {
        self.shared
            .lanes
            .iter()
            .map(|lane| lane.lag.lock().expect("lag lock poisoned").hdr.len())
            .sum()
    }

    /// When this runtime started.
    pub fn started(&self) -> SystemTime {
        self.started
    }

    /// Where state, transitions and rollups are kept.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock the store's times are reckoned on (wall clock at start, advanced by tokio's).
    pub fn clock(&self) -> history::Clock {
        self.shared.clock
    }

    /// The failover groups' rollup slices.
    pub fn group_slices(&self) -> &group_rollups::GroupSlices {
        &self.group_slices
    }

    /// The maintenance windows in force.
    pub fn calendar(&self) -> Arc<dyn MaintenanceCalendar> {
        self.calendar
            .read()
            .expect("calendar lock poisoned")
            .clone()
    }

    /// Replaces the maintenance windows in force (after a reload or an API change).
    pub fn set_calendar(&self, calendar: Arc<dyn MaintenanceCalendar>) {
        *self.calendar.write().expect("calendar lock poisoned") = calendar;
    }

    /// Cluster mode's quorum across locations: empty outside cluster mode.
    pub fn quorum(&self) -> &crate::cluster::observe::Slot {
        &self.quorum
    }

    /// Each HTTP SD endpoint's refreshes so far, by its URL as shown.
    pub fn sd_status(&self) -> Vec<(String, http_sd::SdStatus)> {
        self.http_sd.status()
    }

    /// The notifier's wake-up and delivery metrics.
    pub fn notifier(&self) -> &notify::Slot {
        &self.notifier
    }

    /// Plans notifications at once (an incident changed) instead of at the next tick.
    pub fn wake_notifier(&self) {
        self.notifier.wake();
    }

    /// Finds a target by name.
    pub fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.targets().iter().find(|t| t.spec.name == name).cloned()
    }

    /// Waits (bounded by `grace`) for in-flight probes after cancellation; false if some were
    /// still running when the grace period ended.
    pub async fn drain(&self, grace: Duration) -> bool {
        for lane in &self.shared.lanes {
            lane.tracker.close();
        }
        let all = async {
            for lane in &self.shared.lanes {
                lane.tracker.wait().await;
            }
        };
        tokio::time::timeout(grace, all).await.is_ok()
    }
}
