//! Delivery workers over the store's outbox: one per receiver, so a slow or dead receiver
//! delays only itself.
//!
//! Each worker loops: it reads up to [`BATCH`] rows of its receiver that are due
//! ([`Store::outbox_due`]: by id, each the oldest pending row of its incident, so that an
//! incident's messages arrive in order), delivers them one by one, and records the outcome:
//!
//! - delivered: [`Store::outbox_sent`], counted in `watchfire_notify_sent_total` and
//!   `watchfire_notify_delivery_seconds` (due → delivered);
//! - [`SendError::Retry`]: [`Store::outbox_retry`] with the next attempt after
//!   `backoff × 2^(attempts − 1)`, ±20 % jitter, at most `max_backoff`, or after the receiver's
//!   Retry-After when that is longer; counted in `watchfire_notify_retries_total`, one WARN line;
//! - [`SendError::Permanent`], or a retryable failure once `give_up_after` has passed since the
//!   row was enqueued: [`Store::outbox_failed`], counted in `watchfire_notify_failed_total`, one
//!   ERROR line.
//!
//! Then it sleeps until its earliest next attempt ([`Store::outbox_next`]), a [`Dispatcher::wake`]
//! (after an enqueue) or a minute, whichever comes first. Every attempt is bounded by the
//! delivery timeout (plus a second), so a receiver that hangs holds up only its own worker.
//!
//! A row is marked sent only after the receiver took it, so a crash in between sends it again
//! after a restart (at least once; receivers that support it deduplicate by the message key).
//! The built-in receiver [`STATUS_PAGE`] is delivered here: its text becomes an automatic
//! update of the incident's timeline, written in the same transaction that marks the row sent
//! (exactly once).
//!
//! Times are the dispatcher's clock ([`Clock`]): the wall clock, but never behind the time
//! elapsed on tokio's clock since start, so that tests on a paused clock see retries come due.

mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

pub use metrics::DELIVERY_BOUNDS;

use super::config::{Delivery, NotifyConfig, Receiver};
use super::receivers::{self, SendError};
use super::Message;
use crate::store::{
    now_millis, IncidentStatus, IncidentUpdate, Millis, OutboxRow, Store, StoreError,
};

/// The built-in receiver that writes the status-page text into the incident's timeline.
pub const STATUS_PAGE: &str = "status-page";

/// At most this many rows are read per worker per round.
pub const BATCH: usize = 64;

/// The longest a worker sleeps without looking at the outbox (a safety net: rows enqueued
/// without a [`Dispatcher::wake`] are still picked up).
pub const IDLE_MAX: Duration = Duration::from_secs(60);

/// The shortest delay before a retry, whatever the config says.
pub const RETRY_MIN: Duration = Duration::from_millis(100);

/// Added to the delivery timeout to bound one attempt (a receiver's own timeout fires first).
const ATTEMPT_GRACE: Duration = Duration::from_secs(1);

/// How often the queue gauges are read from the store when nothing is delivered.
const QUEUE_EVERY: Duration = Duration::from_secs(15);

/// How often finished rows older than `delivery.keep` are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// When the first prune runs after start.
const PRUNE_FIRST: Duration = Duration::from_secs(60);

/// At most this many prune calls (each of up to [`crate::store::OUTBOX_PRUNE_MAX`] rows) per
/// run.
const PRUNE_ROUNDS: usize = 10;

/// The first and the longest wait after the store failed to answer a worker.
const STORE_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// The future [`Deliver::deliver`] returns.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Sends one message to one receiver: the HTTP receivers in production
/// ([`HttpDeliver`]), a fake in tests.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers `m` to `r`; the error says whether trying again may help.
    fn deliver<'a>(&'a self, r: &'a Receiver, m: &'a Message) -> DeliverFuture<'a>;
}

/// [`Deliver`] through [`receivers::send`], with one shared HTTP client.
#[derive(Debug, Clone)]
pub struct HttpDeliver {
    http: reqwest::Client,
}

impl HttpDeliver {
    /// A client whose requests are bounded by `timeout` (`delivery.timeout`).
    pub fn new(timeout: Duration) -> HttpDeliver {
        HttpDeliver {
            http: receivers::client(timeout),
        }
    }
}

impl Deliver for HttpDeliver {
    fn deliver<'a>(&'a self, r: &'a Receiver, m: &'a Message) -> DeliverFuture<'a> {
        Box::pin(receivers::send(&self.http, r, m))
    }
}

/// The dispatcher's time: the wall clock, never behind the time elapsed on tokio's clock
/// since it was made (so a paused test clock moves it, and a wall clock stepped back does not
/// hold deliveries).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Millis,
    mono: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            wall: now_millis(),
            mono: Instant::now(),
        }
    }

    /// Milliseconds since the epoch.
    pub fn now(&self) -> Millis {
        let elapsed = self.mono.elapsed().as_millis() as Millis;
        now_millis().max(self.wall + elapsed)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The delay before attempt `attempts + 1` after a retryable failure: `backoff ×
/// 2^(attempts − 1)` with ±20 % jitter, at most `max_backoff`, at least [`RETRY_MIN`]; the
/// receiver's Retry-After (`after`) instead when it is longer (at most `give_up_after`).
pub fn retry_delay(d: &Delivery, attempts: u32, after: Option<Duration>) -> Duration {
    let doubling = 1u32 << attempts.saturating_sub(1).min(20);
    let base = d.backoff.saturating_mul(doubling);
    let r = std::collections::hash_map::RandomState::new().hash_one((attempts, Instant::now()));
    let factor = 0.8 + 0.4 * (r as f64 / u64::MAX as f64);
    let jittered = base.mul_f64(factor).min(d.max_backoff);
    let asked = after.unwrap_or_default().min(d.give_up_after);
    jittered.max(asked).max(RETRY_MIN)
}

/// A worker's handle: how to wake and stop it.
struct Worker {
    wake: Arc<Notify>,
    cancel: CancellationToken,
}

/// What the workers share.
struct Inner {
    store: Store,
    deliver: Arc<dyn Deliver>,
    config: RwLock<Arc<NotifyConfig>>,
    metrics: metrics::Metrics,
    clock: Clock,
    /// When the queue gauges were last read.
    queue_read: Mutex<Option<Instant>>,
}

/// The delivery workers: one per configured receiver plus [`STATUS_PAGE`], and one task that
/// refreshes the queue gauges and prunes old rows. Stopped by the cancellation token given to
/// [`Dispatcher::start`], by [`Dispatcher::stop`], or when dropped.
pub struct Dispatcher {
    inner: Arc<Inner>,
    workers: Mutex<BTreeMap<String, Worker>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .workers
            .lock()
            .expect("workers lock poisoned")
            .keys()
            .cloned()
            .collect();
        f.debug_struct("Dispatcher")
            .field("workers", &names)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts the workers for `config`'s receivers (and [`STATUS_PAGE`]) over `store`'s outbox,
    /// delivering through `deliver`, until `cancel` is cancelled. Must be called within a tokio
    /// runtime.
    pub fn start(
        store: Store,
        config: Arc<NotifyConfig>,
        deliver: Arc<dyn Deliver>,
        cancel: CancellationToken,
    ) -> Dispatcher {
        let d = Dispatcher {
            inner: Arc::new(Inner {
                store,
                deliver,
                config: RwLock::new(config.clone()),
                metrics: metrics::Metrics::default(),
                clock: Clock::new(),
                queue_read: Mutex::new(None),
            }),
            workers: Mutex::new(BTreeMap::new()),
            cancel: cancel.child_token(),
            tasks: TaskTracker::new(),
        };
        d.tasks
            .spawn(housekeeping(d.inner.clone(), d.cancel.clone()));
        d.set_config(config);
        d
    }

    /// Puts `config` in force: workers start for new receivers and stop for removed ones
    /// (their pending rows stay pending); changed settings apply from the next attempt.
    pub fn set_config(&self, config: Arc<NotifyConfig>) {
        *self.inner.config.write().expect("config lock poisoned") = config.clone();
        let mut want: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
        want.push(STATUS_PAGE);
        let mut workers = self.workers.lock().expect("workers lock poisoned");
        workers.retain(|name, w| {
            let keep = want.contains(&name.as_str());
            if !keep {
                w.cancel.cancel();
            }
            keep
        });
        for name in want {
            self.inner.metrics.ensure(name);
            if workers.contains_key(name) || self.cancel.is_cancelled() {
                continue;
            }
            let w = Worker {
                wake: Arc::new(Notify::new()),
                cancel: self.cancel.child_token(),
            };
            self.tasks.spawn(work(
                self.inner.clone(),
                name.to_string(),
                w.wake.clone(),
                w.cancel.clone(),
            ));
            workers.insert(name.to_string(), w);
        }
        drop(workers);
        self.wake();
    }

    /// Wakes every worker to look at the outbox now (call it after an enqueue).
    pub fn wake(&self) {
        for w in self.workers.lock().expect("workers lock poisoned").values() {
            w.wake.notify_one();
        }
    }

    /// Writes the `watchfire_notify_*` families for `/metrics`.
    pub fn render(&self, w: &mut crate::expo::Writer<'_>) {
        self.inner.metrics.render(w);
    }

    /// Messages of `kind` delivered to `receiver` since start.
    pub fn sent(&self, receiver: &str, kind: &str) -> u64 {
        self.inner.metrics.sent_count(receiver, kind)
    }

    /// The dispatcher's time (see [`Clock`]).
    pub fn now(&self) -> Millis {
        self.inner.clock.now()
    }

    /// Deletes the sent, failed and suppressed rows older than `delivery.keep` now (the
    /// dispatcher also does every hour), a bounded number; returns how many went.
    pub async fn prune(&self) -> Result<u64, StoreError> {
        self.inner.prune().await
    }

    /// Stops every worker and waits for them: a delivery under way is abandoned (its row stays
    /// pending and is sent again later).
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Sleeps `d`, or less when cancelled; false when cancelled.
async fn pause(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The queue gauges every [`QUEUE_EVERY`], old rows pruned every [`PRUNE_EVERY`].
async fn housekeeping(inner: Arc<Inner>, cancel: CancellationToken) {
    let mut next_prune = Instant::now() + PRUNE_FIRST;
    loop {
        inner.refresh_queue(true).await;
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            if let Err(e) = inner.prune().await {
                warn!(error = %e, "could not prune the notification outbox");
            }
        }
        if !pause(QUEUE_EVERY, &cancel).await {
            return;
        }
    }
}

/// One receiver's worker (see the module docs).
async fn work(inner: Arc<Inner>, name: String, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut store_wait = STORE_RETRY.0;
    while !cancel.is_cancelled() {
        match inner.round(&name, &cancel).await {
            Ok(0) => {}
            Ok(_) => {
                store_wait = STORE_RETRY.0;
                continue;
            }
            Err(e) => {
                warn!(receiver = %name, error = %e, "the notification outbox cannot be read or written; trying again");
                if !pause(store_wait, &cancel).await {
                    return;
                }
                store_wait = (store_wait * 2).min(STORE_RETRY.1);
                continue;
            }
        }
        store_wait = STORE_RETRY.0;
        let sleep = match inner.store.outbox_next(&name).await {
            Ok(Some(at)) => {
                Duration::from_millis((at - inner.clock.now()).max(0) as u64).min(IDLE_MAX)
            }
            Ok(None) => IDLE_MAX,
            Err(_) => STORE_RETRY.0,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// How one attempt ended, as recorded.
enum Outcome {
    Sent,
    Retry(String, Option<Duration>),
    Failed(String),
    /// Not attempted (stopping, or the receiver left the config): the row stays as it was.
    Skipped,
}

impl Inner {
    fn config(&self) -> Arc<NotifyConfig> {
        self.config.read().expect("config lock poisoned").clone()
    }

    /// Delivers what is due for `name` now; how many rows were looked at.
    async fn round(&self, name: &str, cancel: &CancellationToken) -> Result<usize, StoreError> {
        let rows = self.store.outbox_due(name, self.clock.now(), BATCH).await?;
        let n = rows.len();
        for row in rows {
            if cancel.is_cancelled() {
                break;
            }
            self.attempt(name, row, cancel).await?;
        }
        if n > 0 {
            self.refresh_queue(false).await;
        }
        Ok(n)
    }

    /// One attempt at `row`, its outcome recorded in the store, the metrics and the log.
    async fn attempt(
        &self,
        name: &str,
        row: OutboxRow,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let config = self.config();
        let outcome = match serde_json::from_str::<Message>(&row.message) {
            Err(e) => Outcome::Failed(format!("the stored message is not valid: {e}")),
            Ok(m) if name == STATUS_PAGE => self.to_timeline(&row, &m).await?,
            Ok(m) => match config.receiver(name) {
                None => Outcome::Skipped,
                Some(r) => self.send(r, &m, &config.delivery, cancel).await,
            },
        };
        let now = self.clock.now();
        let attempt = row.attempts + 1;
        match outcome {
            Outcome::Skipped => {}
            Outcome::Sent => {
                if name != STATUS_PAGE {
                    self.store.outbox_sent(row.id, now).await?;
                }
                let secs = (now - row.due) as f64 / 1000.0;
                self.metrics.sent(name, &row.kind, secs);
                debug!(receiver = name, kind = %row.kind, incident = row.incident, attempt, "notification delivered");
            }
            Outcome::Retry(error, after) => {
                let give_up = config.delivery.give_up_after.as_millis() as Millis;
                if now - row.created >= give_up {
                    let error = format!(
                        "not delivered within {} (delivery.give_up_after): {error}",
                        humantime::format_duration(config.delivery.give_up_after)
                    );
                    return self.give_up(name, &row, attempt, &error).await;
                }
                let delay = retry_delay(&config.delivery, attempt, after);
                let next = now + delay.as_millis() as Millis;
                self.store
                    .outbox_retry(row.id, attempt, next, &error)
                    .await?;
                self.metrics.retried(name);
                warn!(
                    receiver = name,
                    kind = %row.kind,
                    incident = row.incident,
                    attempt,
                    retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)),
                    error = %error,
                    "notification not delivered; will retry"
                );
            }
            Outcome::Failed(error) => return self.give_up(name, &row, attempt, &error).await,
        }
        Ok(())
    }

    /// Sends `m` to `r`, bounded by the delivery timeout (plus a grace) and by `cancel`.
    async fn send(
        &self,
        r: &Receiver,
        m: &Message,
        d: &Delivery,
        cancel: &CancellationToken,
    ) -> Outcome {
        let limit = d.timeout + ATTEMPT_GRACE;
        let sent = tokio::select! {
            _ = cancel.cancelled() => return Outcome::Skipped,
            r = tokio::time::timeout(limit, self.deliver.deliver(r, m)) => r,
        };
        match sent {
            Ok(Ok(())) => Outcome::Sent,
            Ok(Err(SendError::Retry { error, after })) => Outcome::Retry(clean(&error), after),
            Ok(Err(SendError::Permanent { error })) => Outcome::Failed(clean(&error)),
            Err(_) => Outcome::Retry(
                format!(
                    "no answer within {} (delivery.timeout)",
                    humantime::format_duration(d.timeout)
                ),
                None,
            ),
        }
    }

    /// Delivers a status-page message: its text appended to the incident's timeline and the
    /// row marked sent, in one transaction.
    async fn to_timeline(&self, row: &OutboxRow, m: &Message) -> Result<Outcome, StoreError> {
        let status = match IncidentStatus::parse(&m.facts.status) {
            Some(s) => s,
            None => match self.store.incident(m.incident).await? {
                Some(i) => i.status,
                None => return Ok(Outcome::Failed(format!("no incident {}", m.incident))),
            },
        };
        let update = IncidentUpdate {
            id: 0,
            incident: m.incident,
            at: self.clock.now(),
            status,
            message: m.text.clone(),
            automatic: true,
            kind: None,
        };
        match self
            .store
            .outbox_sent_as_update(row.id, &update, update.at)
            .await
        {
            Ok(_) => Ok(Outcome::Sent),
            Err(StoreError::NotFound {
                what: "incident", ..
            }) => Ok(Outcome::Failed(format!("no incident {}", m.incident))),
            Err(e) => Err(e),
        }
    }

    /// Marks `row` failed with `error`, counted and logged.
    async fn give_up(
        &self,
        name: &str,
        row: &OutboxRow,
        attempt: u32,
        error: &str,
    ) -> Result<(), StoreError> {
        self.store.outbox_failed(row.id, error).await?;
        self.metrics.failed(name);
        error!(
            receiver = name,
            kind = %row.kind,
            incident = row.incident,
            attempt,
            key = %row.key,
            error = %error,
            "notification given up"
        );
        Ok(())
    }

    /// Reads the pending rows per receiver into the queue gauges; unless `force`, at most
    /// once a second.
    async fn refresh_queue(&self, force: bool) {
        {
            let mut last = self.queue_read.lock().expect("queue lock poisoned");
            if !force && last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.store.outbox_pending().await {
            Ok(p) => self.metrics.set_queue(&p),
            Err(e) => debug!(error = %e, "could not count the pending notifications"),
        }
    }

    async fn prune(&self) -> Result<u64, StoreError> {
        let keep = self.config().delivery.keep.as_millis() as Millis;
        let before = self.clock.now().saturating_sub(keep);
        let mut total = 0;
        for _ in 0..PRUNE_ROUNDS {
            let n = self.store.outbox_prune(before).await?;
            total += n;
            if n < crate::store::OUTBOX_PRUNE_MAX as u64 {
                break;
            }
        }
        Ok(total)
    }
}

/// An error's text with any URL in it redacted (the receivers redact already; this is the
/// last line of defence before a log line and the store).
fn clean(error: &str) -> String {
    crate::redact::urls_in(error).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            give_up_after: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            keep: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn retries_double_with_jitter_up_to_the_cap() {
        let d = delivery();
        for (attempts, base) in [(1u32, 1.0f64), (2, 2.0), (3, 4.0), (6, 32.0)] {
            for _ in 0..50 {
                let s = retry_delay(&d, attempts, None).as_secs_f64();
                assert!(
                    s >= base * 0.8 - 1e-9 && s <= base * 1.2 + 1e-9,
                    "{attempts}: {s}"
                );
            }
        }
        for attempts in [7, 8, 30, u32::MAX] {
            assert!(retry_delay(&d, attempts, None) <= d.max_backoff);
            assert!(retry_delay(&d, attempts, None) >= Duration::from_secs(48));
        }
    }

    #[test]
    fn retry_after_wins_when_longer_but_not_past_give_up() {
        let d = delivery();
        let s = |a| retry_delay(&d, 1, Some(Duration::from_secs(a)));
        assert_eq!(s(90), Duration::from_secs(90));
        assert!(s(0) < Duration::from_secs(2));
        assert_eq!(s(86_400), d.give_up_after);
        let zero = Delivery {
            backoff: Duration::ZERO,
            ..delivery()
        };
        assert_eq!(retry_delay(&zero, 1, None), RETRY_MIN);
    }

    #[test]
    fn the_clock_follows_paused_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let c = Clock::new();
            let a = c.now();
            tokio::time::advance(Duration::from_secs(120)).await;
            // `a` may already be a few real milliseconds past the clock's start (a loaded
            // machine), when the wall clock is ahead of the paused one: hence the slack. The
            // wall clock itself moved by far less than 119 s.
            let moved = c.now() - a;
            assert!(moved >= 119_000, "moved {moved} ms");
        });
    }
}
