//! The writer: one task on its own thread that takes the queued writes in batches (one
//! transaction each), keeps hours and days summed as minutes arrive, prunes old rollups, and
//! degrades to an in-memory database when the configured backend fails, retrying it with
//! backoff and replaying what was written meanwhile when it answers again: states,
//! transitions, rollups, and the incidents, timelines and maintenance windows made or changed
//! meanwhile (`restore.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use super::db::{classify, Backend};
use super::model::{now_millis, GroupState, Level, Millis, TargetState, Write};
use super::restore::{self, Restore};
use super::{sql, Shared, StoreError};

/// At most this many writes in one transaction.
pub const BATCH_MAX: usize = 500;
/// A batch is applied at most this long after its first write arrived.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);
/// How often old rollups are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// At most this many periods of each level are pruned in one run.
const PRUNE_PERIODS: usize = 240;
/// The first and the longest wait between attempts to reach a failed backend again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What the queue carries.
pub enum Msg {
    /// A write.
    Write(Write),
    /// Answered once every message before it has been applied.
    Flush(oneshot::Sender<()>),
    /// Prune now (answered when done).
    Prune(oneshot::Sender<()>),
}

struct Writer {
    shared: Arc<Shared>,
    /// The current state of every target and group, so that a fresh in-memory database can
    /// be given them when the backend fails, and the backend again when it is back.
    targets: BTreeMap<String, TargetState>,
    groups: BTreeMap<String, GroupState>,
    /// Targets forgotten while degraded (forgotten in the backend on recovery).
    forgotten: BTreeSet<String>,
    /// While degraded: when to try the backend again, and the wait after that.
    retry: Option<(Instant, Duration)>,
    next_prune: Instant,
}

/// Runs the writer until every [`super::Store`] handle is gone.
pub async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Msg>) {
    let mut w = Writer {
        shared,
        targets: BTreeMap::new(),
        groups: BTreeMap::new(),
        forgotten: BTreeSet::new(),
        retry: None,
        next_prune: Instant::now() + Duration::from_secs(60),
    };
    w.load().await;
    loop {
        let wake = match w.retry {
            Some((at, _)) => at.min(w.next_prune),
            None => w.next_prune,
        };
        let first = tokio::select! {
            m = rx.recv() => m,
            _ = tokio::time::sleep_until(wake.into()) => {
                w.timers(false).await;
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut batch = Vec::new();
        let mut replies = Vec::new();
        let mut prune = false;
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Write(x) => batch.push(x),
                Msg::Flush(tx) => replies.push(tx),
                Msg::Prune(tx) => {
                    prune = true;
                    replies.push(tx);
                }
            }
            if batch.len() >= BATCH_MAX || !replies.is_empty() {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten();
        }
        if !batch.is_empty() {
            w.apply(batch).await;
        }
        w.timers(prune).await;
        for r in replies {
            let _ = r.send(());
        }
    }
}

impl Writer {
    /// Loads the stored target and group states (a fresh memory database gets them on
    /// failure).
    async fn load(&mut self) {
        let b = &self.shared.primary;
        let Ok(mut c) = b.conn().await else { return };
        if let Ok(v) = sql::target_states(&mut c).await {
            self.targets = v.into_iter().map(|t| (t.target.clone(), t)).collect();
        }
        if let Ok(v) = sql::group_states(&mut c).await {
            self.groups = v.into_iter().map(|g| (g.group.clone(), g)).collect();
        }
        match restore::load(&mut c).await {
            Ok(k) => *self.shared.known.lock().expect("store known lock poisoned") = k,
            Err(e) => {
                let e = classify(e, &b.place);
                warn!(error = %e, "could not read the open incidents and maintenance windows");
            }
        }
    }

    fn remember(&mut self, batch: &[Write]) {
        let degraded = self.retry.is_some();
        for w in batch {
            match w {
                Write::TargetState(t) => {
                    self.targets.insert(t.target.clone(), t.clone());
                }
                Write::GroupState(g) => {
                    self.groups.insert(g.group.clone(), g.clone());
                }
                Write::ForgetTarget(name) => {
                    self.targets.remove(name);
                    if degraded {
                        self.forgotten.insert(name.clone());
                    }
                }
                Write::Transition(_) | Write::Minute(_) | Write::GroupMinute(_) => {}
            }
        }
    }

    async fn apply(&mut self, batch: Vec<Write>) {
        self.remember(&batch);
        let n = batch.len() as u64;
        if self.retry.is_none() {
            let started = Instant::now();
            match write(&self.shared.primary, &batch).await {
                Ok(()) => {
                    self.shared.stats.observe(started.elapsed(), n);
                    return;
                }
                Err(e) => self.degrade(e).await,
            }
        }
        let started = Instant::now();
        match write(&self.shared.fallback, &batch).await {
            Ok(()) => self.shared.stats.observe(started.elapsed(), n),
            Err(e) => {
                self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                error!(error = %e, "the in-memory store failed too; {n} writes lost");
            }
        }
    }

    /// Switches to a fresh in-memory database given the known states.
    async fn degrade(&mut self, e: StoreError) {
        let s = &self.shared;
        s.stats.errors.fetch_add(1, Ordering::Relaxed);
        error!(
            backend = s.primary.place.backend(),
            error = %e,
            "the store's backend failed: writing to memory until it answers again"
        );
        *s.last_error.lock().expect("store error lock poisoned") = Some(e.to_string());
        s.primary.reset().await;
        s.fallback.reset().await;
        let seed = self.states();
        if let Err(e) = write(&s.fallback, &seed).await {
            error!(error = %e, "could not give the in-memory store the known states");
        }
        if let Err(e) = self.seed_incidents().await {
            error!(error = %e, "could not give the in-memory store the open incidents");
        }
        s.degraded.store(true, Ordering::Release);
        self.retry = Some((Instant::now() + RETRY_FIRST, RETRY_FIRST));
    }

    /// Gives memory the open incidents and windows, ids continuing above the backend's.
    async fn seed_incidents(&self) -> Result<(), StoreError> {
        let b = &self.shared.fallback;
        let mut c = b.conn().await?;
        let _held = self.shared.switch.write().await;
        let known = std::mem::take(&mut *self.shared.known.lock().expect("known lock poisoned"));
        let done = restore::seed(&mut c, &known).await;
        *self.shared.known.lock().expect("known lock poisoned") = known;
        done.map_err(|e| classify(e, &b.place))
    }

    fn states(&self) -> Vec<Write> {
        let mut v: Vec<Write> = self
            .targets
            .values()
            .cloned()
            .map(Write::TargetState)
            .collect();
        v.extend(self.groups.values().cloned().map(Write::GroupState));
        v
    }

    async fn timers(&mut self, prune_now: bool) {
        if let Some((at, _)) = self.retry {
            if Instant::now() >= at {
                self.recover().await;
            }
        }
        if prune_now || Instant::now() >= self.next_prune {
            self.next_prune = Instant::now() + PRUNE_EVERY;
            if self.retry.is_none() {
                self.prune().await;
            }
        }
    }

    /// Tries the backend again; when it answers, replays what was written to memory meanwhile
    /// (states, forgotten targets, transitions, minutes with their hours and days).
    async fn recover(&mut self) {
        let s = self.shared.clone();
        // No incident or window write lands in memory between this read and the switch.
        let _held = s.switch.write().await;
        let replay = match self.replay().await {
            Ok(v) => v,
            Err(e) => {
                error!(error = %e, "could not read the in-memory store to replay it");
                Vec::new()
            }
        };
        let incidents = match self.replay_incidents().await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "could not read the in-memory incidents to replay them");
                Restore::default()
            }
        };
        match write_restoring(&s.primary, &replay, Some(&incidents)).await {
            Ok(()) => {
                s.known.lock().expect("known lock poisoned").deleted.clear();
                s.degraded.store(false, Ordering::Release);
                *s.last_error.lock().expect("store error lock poisoned") = None;
                warn!(
                    backend = s.primary.place.backend(),
                    replayed = replay.len() + incidents.len(),
                    "the store's backend answers again: writing to it again"
                );
                s.fallback.reset().await;
                self.forgotten.clear();
                self.retry = None;
            }
            Err(e) => {
                s.primary.reset().await;
                let (_, wait) = self.retry.unwrap_or((Instant::now(), RETRY_FIRST));
                let wait = (wait * 2).min(RETRY_MAX);
                *s.last_error.lock().expect("store error lock poisoned") = Some(e.to_string());
                self.retry = Some((Instant::now() + wait, wait));
            }
        }
    }

    /// The incidents, updates and windows in memory, and the windows deleted meanwhile.
    async fn replay_incidents(&self) -> Result<Restore, StoreError> {
        let b = &self.shared.fallback;
        let mut c = b.conn().await?;
        let deleted = self
            .shared
            .known
            .lock()
            .expect("known lock poisoned")
            .deleted
            .clone();
        restore::read(&mut c, &deleted)
            .await
            .map_err(|e| classify(e, &b.place))
    }

    async fn replay(&self) -> Result<Vec<Write>, StoreError> {
        let b = &self.shared.fallback;
        let mut c = b.conn().await?;
        let err = |e| classify(e, &b.place);
        let mut v: Vec<Write> = self
            .forgotten
            .iter()
            .cloned()
            .map(Write::ForgetTarget)
            .collect();
        v.extend(self.states());
        let all = (Millis::MIN, Millis::MAX);
        for t in sql::transitions(&mut c, None, all.0, all.1, 0)
            .await
            .map_err(err)?
        {
            v.push(Write::Transition(t));
        }
        for r in sql::rollups(&mut c, Level::Minute, all.0, all.1, None)
            .await
            .map_err(err)?
        {
            v.push(Write::Minute(r));
        }
        for r in super::groups::read(&mut c, Level::Minute, all.0, all.1, None)
            .await
            .map_err(err)?
        {
            v.push(Write::GroupMinute(r));
        }
        Ok(v)
    }

    async fn prune(&mut self) {
        let s = &self.shared;
        let now = now_millis();
        let r = s.retention;
        for (level, keep) in [
            (Level::Minute, r.minutes),
            (Level::Hour, r.hours),
            (Level::Day, r.days),
        ] {
            let before = now.saturating_sub(keep.as_millis() as Millis);
            let done = match s.primary.conn().await {
                Ok(mut c) => {
                    let done = match sql::prune(&mut c, level, before, PRUNE_PERIODS).await {
                        Ok(_) => super::groups::prune(&mut c, level, before).await,
                        Err(e) => Err(e),
                    };
                    done.map_err(|e| classify(e, &s.primary.place))
                }
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                warn!(error = %e, level = level.as_str(), "could not prune old rollups");
            }
        }
    }
}

/// Applies `batch` to `b` in one transaction.
async fn write(b: &Backend, batch: &[Write]) -> Result<(), StoreError> {
    write_restoring(b, batch, None).await
}

/// Applies `batch`, and `restore` when given, to `b` in one transaction.
async fn write_restoring(
    b: &Backend,
    batch: &[Write],
    restore: Option<&Restore>,
) -> Result<(), StoreError> {
    let mut c = b.conn().await?;
    b.check_file()?;
    super::batch::apply(&mut c, batch, restore)
        .await
        .map_err(|e| classify(e, &b.place))
}
