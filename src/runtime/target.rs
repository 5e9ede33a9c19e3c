//! One scheduled target: its spec, its prober, what was recorded about it, and how the scheduler
//! runs it on its lane.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{history, Shared};
use crate::config::{Check, TargetSpec};
use crate::failover;
use crate::probe::{Fail, Outcome, Reason};
use crate::probers::native::{HttpProber, LeanJob};
use crate::record::TargetStats;
use crate::schedule::Job;
use crate::state::{Health, Thresholds, Transition, TransitionEvent};
use crate::store::{Millis, TargetState, Write};

/// One scheduled target with everything recorded about it.
pub struct Target {
    /// The checked spec.
    pub spec: Arc<TargetSpec>,
    /// The native HTTP prober, for a [`Check::Http`] target.
    prober: Option<HttpProber>,
    /// The blackbox module of a [`Check::Module`] target, looked up again on every reload (a
    /// changed module keeps the target's state).
    pub(super) module: Mutex<Option<Arc<crate::blackbox::config::Module>>>,
    /// Recorded state; locked briefly by the probe that ends and by scrapes.
    pub stats: Mutex<TargetStats>,
    running: AtomicBool,
    /// Which probe thread runs this target's probes, an index into the lanes: the one with
    /// the fewest probes per second when the target was made (`claim_lane`); kept across
    /// reloads with the target, so a kept-alive connection stays on its thread.
    pub(super) lane: usize,
    shared: Arc<Shared>,
    /// Changes of decided health not yet in a minute rollup: (when, from, to). Appended under
    /// the stats lock on a transition (rare), taken by the minute flush.
    timeline: Mutex<Vec<(Millis, Health, Health)>>,
    /// When this target object was made (a reload that changes its probe makes a new one).
    pub(super) born: Millis,
    /// Whether this member writes the target's state, transitions and rollups to the store:
    /// always alone; in a cluster, only the target's first owner ([`crate::cluster::View::writes_history`]),
    /// so replicas and locations do not count it twice.
    pub(super) history: AtomicBool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.spec.name)
            .finish()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        super::release_lane(&self.shared.lanes, self.lane, self.spec.interval);
    }
}

impl Target {
    pub(super) fn new(
        spec: Arc<TargetSpec>,
        shared: Arc<Shared>,
        stored: Option<&TargetState>,
    ) -> Result<Target, String> {
        let prober = match &spec.check {
            Check::Http(h) => Some(HttpProber::new(h.clone(), spec.timeout)?),
            Check::Module { .. } => None,
        };
        let mut stats = TargetStats::default();
        if let Some(stored) = stored {
            history::restore_stats(&mut stats, stored);
        }
        // Last, once nothing can fail: `Drop` gives the rate back.
        let lane = super::claim_lane(&shared.lanes, spec.interval);
        Ok(Target {
            prober,
            module: Mutex::new(None),
            spec,
            stats: Mutex::new(stats),
            running: AtomicBool::new(false),
            lane,
            born: shared.clock.now(),
            shared,
            timeline: Mutex::new(Vec::new()),
            history: AtomicBool::new(true),
        })
    }

    /// Takes the health changes before `end` for a minute rollup (later ones stay), with the
    /// health before the first change kept (taken or not).
    pub(super) fn take_changes(&self, end: Millis) -> (Option<Health>, Vec<(Millis, Health)>) {
        let mut timeline = self.timeline.lock().expect("timeline lock poisoned");
        let first_from = timeline.first().map(|c| c.1);
        let n = timeline.iter().take_while(|c| c.0 < end).count();
        let taken = timeline.drain(..n).map(|(at, _, to)| (at, to)).collect();
        (first_from, taken)
    }

    /// Remembers a transition that happened at `at`: in the timeline (the stats lock is held),
    /// and queued to the store with the target's state (redacted detail).
    fn remember(
        &self,
        stats: &TargetStats,
        t: Transition,
        at: Instant,
        reason: Option<Reason>,
        detail: Option<&str>,
    ) {
        self.views_moved();
        let at = self.shared.clock.at(at);
        self.timeline
            .lock()
            .expect("timeline lock poisoned")
            .push((at, t.from, t.to));
        if !self.history.load(Ordering::Relaxed) {
            return;
        }
        let name = &self.spec.name;
        let store = &self.shared.store;
        store.write(Write::TargetState(history::target_state(name, stats)));
        store.write(Write::Transition(history::transition_record(
            name, at, t.from, t.to, reason, detail,
        )));
    }

    /// Tells the quorum observer that this target's view changed (see
    /// [`super::Runtime::views_version`]).
    fn views_moved(&self) {
        self.shared.views_version.fetch_add(1, Ordering::Release);
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            down_after: self.spec.down_after,
            up_after: self.spec.up_after,
        }
    }

    /// Runs one probe planned for `planned`, records it, announces a transition.
    pub async fn probe_and_record(&self, planned: Instant) -> Outcome {
        let outcome = match &self.prober {
            Some(p) => p.probe(planned).await,
            // A module target: what it probes is the module's target.
            None => {
                let module = self.module();
                match module {
                    // Boxed: a module probe's state (any prober: HTTP/2, gRPC, DNS...) is far
                    // larger than the plain HTTP probe's, and inline it would size every
                    // probe's future.
                    Some(m) => {
                        Box::pin(crate::blackbox::endpoint::scheduled(
                            &m,
                            self.spec.target_text(),
                            self.spec.timeout,
                            planned,
                        ))
                        .await
                    }
                    None => not_probed(planned, "the module is not configured"),
                }
            }
        };
        self.record(&outcome);
        outcome
    }

    /// The blackbox module a module target is probed with (as of the last reload).
    pub fn module(&self) -> Option<Arc<crate::blackbox::config::Module>> {
        self.module.lock().expect("module lock poisoned").clone()
    }

    /// Takes the target down at once on outside evidence (the failover proxy could not reach
    /// it), as if `down_after` probes had failed; it comes back up after `up_after` successful
    /// probes as usual.
    pub fn mark_down(&self, reason: Reason, detail: String) {
        let now = Instant::now();
        let ejected = {
            let mut stats = self.stats.lock().expect("stats lock poisoned");
            let t = stats.eject(self.thresholds());
            if let Some(t) = t {
                self.remember(&stats, t, now, Some(reason), Some(&detail));
            }
            t
        };
        let Some(t) = ejected else { return };
        let from = t.from;
        warn!(target = %self.spec.name, from = %from, reason = reason.as_str(), detail = %detail, "target is down (passive detection)");
        let _ = self.shared.events.send(TransitionEvent {
            target: self.spec.name.clone(),
            from,
            to: Health::Down,
            at: now,
            reason: Some(reason),
            detail: Some(detail),
        });
    }

    fn record(&self, outcome: &Outcome) {
        self.shared.lanes[self.lane]
            .lag
            .lock()
            .expect("lag lock poisoned")
            .record(outcome.schedule_lag());
        let transition = {
            let mut stats = self.stats.lock().expect("stats lock poisoned");
            let reason_before = stats.last.reason;
            let t = stats.record(outcome, self.thresholds());
            // A transition tells the observer in `remember`; a down target's new reason here.
            if t.is_none()
                && stats.state.health == Health::Down
                && stats.last.reason != reason_before
            {
                self.views_moved();
            }
            if let Some(t) = t {
                let reason = outcome.result.err();
                self.remember(
                    &stats,
                    t,
                    outcome.finished,
                    reason,
                    outcome.detail.as_deref(),
                );
            }
            t
        };
        if let Some(t) = transition {
            let reason = outcome.result.err();
            match t.to {
                Health::Down => warn!(
                    target = %self.spec.name,
                    from = %t.from,
                    failures = t.streak,
                    reason = reason.map(Reason::as_str).unwrap_or(""),
                    detail = outcome.detail.as_deref().unwrap_or(""),
                    "target is down"
                ),
                _ => info!(
                    target = %self.spec.name,
                    from = %t.from,
                    successes = t.streak,
                    "target is up"
                ),
            }
            let _ = self.shared.events.send(TransitionEvent {
                target: self.spec.name.clone(),
                from: t.from,
                to: t.to,
                at: outcome.finished,
                reason,
                detail: outcome.detail.clone(),
            });
        } else if outcome.result == Err(Reason::Prober) {
            let n = self.shared.local_errors.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at the 1st, 2nd, 4th, 8th... of the process: a shortage fails many probes
            // at once, and one line per probe would add to it.
            if n.is_power_of_two() {
                warn!(target = %self.spec.name, reason = Reason::Prober.as_str(), local_errors = n, detail = outcome.detail.as_deref().unwrap_or(""), "watchfire could not run a probe (short of a local resource); the target's health is unchanged");
            }
        } else if let Err(r) = outcome.result {
            debug!(target = %self.spec.name, reason = r.as_str(), detail = outcome.detail.as_deref().unwrap_or(""), "probe failed");
        }
    }
}

/// The outcome of a probe that could not start (a checked config never gets here: every module
/// target's module exists).
fn not_probed(planned: Instant, why: &str) -> Outcome {
    let now = Instant::now();
    let f = Fail::new(Reason::Setup, why);
    Outcome {
        planned,
        started: now,
        finished: now,
        phases: Default::default(),
        status: None,
        body_bytes: 0,
        result: Err(f.reason),
        detail: Some(f.detail),
        reused_connection: false,
    }
}

impl LeanJob for Target {
    /// Keeps the probe counted in its lane's in-flight tracker until it ends.
    type Ticket = tokio_util::task::task_tracker::TaskTrackerToken;

    fn prober(&self) -> &HttpProber {
        self.prober
            .as_ref()
            .expect("only targets with a native prober are submitted")
    }

    fn finish(self: Arc<Self>, outcome: Outcome, _ticket: Self::Ticket) {
        self.record(&outcome);
        self.shared.lanes[self.lane]
            .active
            .fetch_sub(1, Ordering::Relaxed);
        self.running.store(false, Ordering::Release);
    }
}

impl failover::Instance for Target {
    fn health(&self) -> Health {
        self.stats.lock().expect("stats lock poisoned").state.health
    }

    fn mark_down(&self, reason: Reason, detail: String) {
        Target::mark_down(self, reason, detail);
    }
}

impl super::plan::Planned for Target {
    fn spec(&self) -> &Arc<TargetSpec> {
        &self.spec
    }

    fn lane(&self) -> usize {
        self.lane
    }
}

impl Job for Target {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn interval(&self) -> Duration {
        self.spec.interval
    }

    fn jitter(&self) -> Duration {
        self.spec.jitter
    }

    fn try_begin(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    fn skipped(&self, _planned: Instant) {
        self.shared.skipped.fetch_add(1, Ordering::Relaxed);
        let mut stats = self.stats.lock().expect("stats lock poisoned");
        stats.skipped += 1;
    }

    fn admit(&self) -> bool {
        let lane = &self.shared.lanes[self.lane];
        lane.active.load(Ordering::Relaxed) < lane.limit.load(Ordering::Relaxed)
    }

    fn dispatch(self: Arc<Self>, planned: Instant) {
        if self.shared.cancel.is_cancelled() {
            self.running.store(false, Ordering::Release);
            return;
        }
        let lane = &self.shared.lanes[self.lane];
        let tracked = lane.tracker.token();
        lane.active.fetch_add(1, Ordering::Relaxed);
        if let (Some(reactor), Some(p)) = (lane.lean.get(), &self.prober) {
            if p.is_lean() {
                // No task: the thread's lean loop steps the probe and calls `finish`; its
                // answer may wait for the scheduler's next wake-up (`LaneSleeper`).
                return reactor.submit_quiet(self.clone(), planned, tracked);
            }
        }
        // The probe's state (hyper's connection, buffers, the select below) is several
        // kilobytes: it lives in one box allocated when the task first runs, so the task itself
        // stays small. tokio copies a task's future when it is spawned and again when it
        // completes; with the probe's state inline those copies were ~5 % of the CPU per probe.
        let fut = async move {
            let _tracked = tracked;
            let run = Box::pin(async {
                if self.shared.own_lanes {
                    self.probe_and_record(planned).await;
                } else {
                    tokio::select! {
                        biased;
                        _ = self.shared.cancel.cancelled() => {}
                        _ = self.probe_and_record(planned) => {}
                    }
                }
            });
            run.await;
            self.shared.lanes[self.lane]
                .active
                .fetch_sub(1, Ordering::Relaxed);
            self.running.store(false, Ordering::Release);
        };
        // The scheduler that calls this runs on the target's own lane: a local spawn.
        tokio::spawn(fut);
    }
}
