//! The outbox's delivery workers with fake receivers: exactly once under retries and across a
//! restart, in order per incident; Retry-After honoured; permanent failures and retries past
//! `give_up_after` given up and counted; a hanging receiver delays no other; the status-page
//! receiver writes the timeline once; old finished rows pruned; receivers added by a reload.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use watchfire::notify::config::{Delivery, NotifyConfig, Receiver, ReceiverKind, WebhookConfig};
use watchfire::notify::outbox::{Deliver, DeliverFuture, Dispatcher, STATUS_PAGE};
use watchfire::notify::receivers::SendError;
use watchfire::notify::{outbox_key, Facts, Kind, Message};
use watchfire::redact::Secret;
use watchfire::store::{
    Impact, Incident, IncidentStatus, Millis, NewOutbox, OutboxState, Store, StoreOptions,
};

/// How a fake receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    /// Accepts.
    Ok,
    /// Answers 503 until this instant, then accepts.
    FailUntil(Instant),
    /// Answers 429 with this Retry-After the first time, then accepts.
    RetryAfterOnce(Duration),
    /// Rejects for good.
    Permanent,
    /// Always 503.
    Down,
    /// Never answers.
    Hang,
    /// Accepts this many, then never answers.
    HangAfter(usize),
}

/// One attempt the fake saw.
#[derive(Debug, Clone)]
struct Attempt {
    receiver: String,
    key: String,
    at: Instant,
    accepted: bool,
}

/// Receivers that answer as their [`Mode`] says and remember every attempt.
struct Fake {
    modes: BTreeMap<String, Mode>,
    log: Mutex<Vec<Attempt>>,
}

impl Fake {
    fn new(modes: &[(&str, Mode)]) -> Arc<Fake> {
        Arc::new(Fake {
            modes: modes.iter().map(|(n, m)| (n.to_string(), *m)).collect(),
            log: Mutex::new(Vec::new()),
        })
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().unwrap().clone()
    }

    /// Accepted keys of `receiver`, in the order they arrived.
    fn accepted(&self, receiver: &str) -> Vec<String> {
        self.attempts()
            .into_iter()
            .filter(|a| a.accepted && a.receiver == receiver)
            .map(|a| a.key)
            .collect()
    }
}

impl Deliver for Fake {
    fn deliver<'a>(&'a self, r: &'a Receiver, m: &'a Message) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mode = self.modes[&r.name];
            let seen = |accepted| Attempt {
                receiver: r.name.clone(),
                key: m.key.clone(),
                at: Instant::now(),
                accepted,
            };
            let before = self.attempts();
            let tried = before.iter().filter(|a| a.receiver == r.name).count();
            let accepted = before
                .iter()
                .filter(|a| a.receiver == r.name && a.accepted)
                .count();
            let result = match mode {
                Mode::Ok => Ok(()),
                Mode::FailUntil(t) if Instant::now() < t => Err(retry("503 Service Unavailable")),
                Mode::FailUntil(_) => Ok(()),
                Mode::RetryAfterOnce(after) if tried == 0 => Err(SendError::Retry {
                    error: "429 Too Many Requests".into(),
                    after: Some(after),
                }),
                Mode::RetryAfterOnce(_) => Ok(()),
                Mode::Permanent => Err(SendError::Permanent {
                    error: "400 Bad Request: invalid routing key".into(),
                }),
                Mode::Down => Err(retry("connection refused")),
                Mode::Hang => std::future::pending().await,
                Mode::HangAfter(n) if accepted >= n => std::future::pending().await,
                Mode::HangAfter(_) => Ok(()),
            };
            self.log.lock().unwrap().push(seen(result.is_ok()));
            result
        })
    }
}

fn retry(error: &str) -> SendError {
    SendError::Retry {
        error: error.into(),
        after: None,
    }
}

fn receiver(name: &str) -> Receiver {
    Receiver {
        name: name.to_string(),
        kind: ReceiverKind::Webhook(WebhookConfig {
            url: Secret::new(format!("http://127.0.0.1:9/{name}")),
            secret: None,
            headers: BTreeMap::new(),
        }),
    }
}

fn config(names: &[&str], delivery: Delivery) -> Arc<NotifyConfig> {
    Arc::new(NotifyConfig {
        receivers: names.iter().map(|n| receiver(n)).collect(),
        delivery,
        ..NotifyConfig::default()
    })
}

/// A message row: `due_key` for `receiver`, of `incident`.
fn row(due_key: &str, kind: Kind, incident: i64, receiver: &str, due: Millis) -> NewOutbox {
    let key = outbox_key(due_key, receiver);
    let m = Message {
        key: key.clone(),
        receiver: receiver.to_string(),
        kind,
        incident,
        due,
        title: format!("{due_key} title"),
        text: format!("{due_key} text"),
        facts: Facts {
            id: incident,
            status: "investigating".into(),
            ..Facts::default()
        },
    };
    NewOutbox {
        key,
        incident,
        receiver: receiver.to_string(),
        kind: kind.as_str().to_string(),
        due,
        message: serde_json::to_string(&m).unwrap(),
        state: OutboxState::Pending,
    }
}

/// Incidents 1..=`incidents`, each with a declaration and `updates` updates, for each of
/// `receivers`, interleaved as the planner would enqueue them.
fn messages(incidents: i64, updates: usize, receivers: &[&str], due: Millis) -> Vec<NewOutbox> {
    let mut v = Vec::new();
    for n in 0..=updates {
        for i in 1..=incidents {
            for r in receivers {
                let (key, kind) = match n {
                    0 => (format!("inc{i}:declared"), Kind::Declared),
                    n => (format!("inc{i}:update:{n}"), Kind::Update),
                };
                v.push(row(&key, kind, i, r, due));
            }
        }
    }
    v
}

/// Keeps a 1 ms timer pending on the paused clock: tokio advances a paused clock to the next
/// timer whenever the runtime waits, and it waits on every store call (SQLite answers from its
/// own thread), so without this the clock would leap to the next worker's timer mid-call. (It
/// still moves a millisecond per idle turn of the runtime while SQLite works: time measured
/// here is approximate, to a few seconds.)
fn ticking() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

fn metric(d: &Dispatcher, series: &str) -> Option<f64> {
    let mut out = String::new();
    d.render(&mut watchfire::expo::Writer::new(&mut out));
    sample(&out, series)
}

/// Asserts each key of `all` for `receiver` arrived exactly once and each incident's in the
/// order they were enqueued.
fn exactly_once_in_order(accepted: &[String], all: &[NewOutbox], receiver: &str) {
    let want: Vec<&NewOutbox> = all.iter().filter(|r| r.receiver == receiver).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for k in accepted {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    for r in &want {
        assert_eq!(
            counts.get(r.key.as_str()),
            Some(&1),
            "{}: {accepted:?}",
            r.key
        );
    }
    assert_eq!(accepted.len(), want.len(), "{accepted:?}");
    for inc in want.iter().map(|r| r.incident) {
        let got: Vec<&String> = accepted
            .iter()
            .filter(|k| k.starts_with(&format!("inc{inc}:")))
            .collect();
        let order: Vec<&String> = want
            .iter()
            .filter(|r| r.incident == inc)
            .map(|r| &r.key)
            .collect();
        assert_eq!(got, order, "incident {inc} out of order at {receiver}");
    }
}

/// A receiver that answers 503 for the first 2 minutes, then accepts: every message arrives
/// exactly once, in order per incident; another receiver is served at once meanwhile.
#[tokio::test(start_paused = true)]
async fn a_receiver_down_for_two_minutes_gets_every_message_once_in_order() {
    let ticker = ticking();
    let store = Store::memory();
    let start = Instant::now();
    let fake = Fake::new(&[
        ("flaky", Mode::FailUntil(start + Duration::from_secs(120))),
        ("steady", Mode::Ok),
    ]);
    let d = Dispatcher::start(
        store.clone(),
        config(&["flaky", "steady"], Delivery::default()),
        fake.clone(),
        CancellationToken::new(),
    );
    let all = messages(3, 3, &["flaky", "steady"], d.now());
    assert_eq!(store.outbox_enqueue(&all, d.now()).await.unwrap(), 24);
    d.wake();
    eventually(
        Duration::from_secs(3600),
        "every message delivered",
        || async {
            let pending = store.outbox_pending().await.unwrap();
            (fake.accepted("flaky").len() == 12 && pending.is_empty()).then_some(())
        },
    )
    .await;
    // Workers go round again: nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(300)).await;
    exactly_once_in_order(&fake.accepted("flaky"), &all, "flaky");
    exactly_once_in_order(&fake.accepted("steady"), &all, "steady");
    let attempts = fake.attempts();
    let first_ok = attempts
        .iter()
        .filter(|a| a.receiver == "flaky" && a.accepted)
        .map(|a| a.at)
        .min()
        .unwrap();
    assert!(first_ok >= start + Duration::from_secs(120));
    assert!(
        attempts
            .iter()
            .filter(|a| a.receiver == "steady")
            .all(|a| a.accepted && a.at < start + Duration::from_secs(120)),
        "steady is served while flaky is down"
    );
    let rows = store.outbox_rows(0, 0).await.unwrap();
    assert!(rows
        .iter()
        .all(|r| r.state == OutboxState::Sent && r.sent_at.is_some()));
    assert_eq!(d.sent("flaky", "update"), 9);
    assert_eq!(d.sent("flaky", "declared"), 3);
    let retries = metric(&d, "watchfire_notify_retries_total{receiver=\"flaky\"}").unwrap();
    assert!(retries >= 3.0, "{retries}");
    assert_eq!(
        metric(&d, "watchfire_notify_retries_total{receiver=\"steady\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&d, "watchfire_notify_failed_total{receiver=\"flaky\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &d,
            "watchfire_notify_delivery_seconds_count{receiver=\"flaky\"}"
        ),
        Some(12.0)
    );
    assert_eq!(
        metric(
            &d,
            "watchfire_notify_delivery_seconds_bucket{receiver=\"flaky\",le=\"60\"}"
        ),
        Some(0.0),
        "none of flaky's was delivered within a minute of being due"
    );
    d.stop().await;
    ticker.abort();
}

/// watchfire stops mid-delivery (one message under way) and starts again on the same file:
/// what was pending resumes, what was delivered is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_pending_messages_and_resends_none_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        path: Some(tmp.path().to_path_buf()),
        ..StoreOptions::default()
    };
    let all = messages(2, 3, &["oncall"], watchfire::store::now_millis());
    let first = Fake::new(&[("oncall", Mode::HangAfter(3))]);
    {
        let store = Store::open(&opts).await.unwrap();
        let d = Dispatcher::start(
            store.clone(),
            config(&["oncall"], Delivery::default()),
            first.clone(),
            CancellationToken::new(),
        );
        assert_eq!(store.outbox_enqueue(&all, d.now()).await.unwrap(), 8);
        d.wake();
        eventually(
            Duration::from_secs(20),
            "3 delivered, rows marked",
            || async {
                let sent = store
                    .outbox_rows(0, 0)
                    .await
                    .unwrap()
                    .iter()
                    .filter(|r| r.state == OutboxState::Sent)
                    .count();
                (first.accepted("oncall").len() == 3 && sent == 3).then_some(())
            },
        )
        .await;
        // The fourth is under way (hanging) when watchfire stops.
        drop(d);
    }
    let store = Store::open(&opts).await.unwrap();
    assert_eq!(
        store.outbox_pending().await.unwrap(),
        [("oncall".to_string(), 5)]
    );
    let second = Fake::new(&[("oncall", Mode::Ok)]);
    let d = Dispatcher::start(
        store.clone(),
        config(&["oncall"], Delivery::default()),
        second.clone(),
        CancellationToken::new(),
    );
    eventually(Duration::from_secs(20), "the rest delivered", || async {
        store
            .outbox_pending()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let before = first.accepted("oncall");
    let after = second.accepted("oncall");
    assert_eq!(after.len(), 5, "{after:?}");
    assert!(
        after.iter().all(|k| !before.contains(k)),
        "{before:?} {after:?}"
    );
    let mut both = before.clone();
    both.extend(after);
    exactly_once_in_order(&both, &all, "oncall");
    d.stop().await;
}

/// A 429 with Retry-After: 90s is tried again after 90 s, not after the 1 s backoff.
#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let ticker = ticking();
    let store = Store::memory();
    let fake = Fake::new(&[("pd", Mode::RetryAfterOnce(Duration::from_secs(90)))]);
    let d = Dispatcher::start(
        store.clone(),
        config(&["pd"], Delivery::default()),
        fake.clone(),
        CancellationToken::new(),
    );
    let rows = messages(1, 0, &["pd"], d.now());
    store.outbox_enqueue(&rows, d.now()).await.unwrap();
    d.wake();
    eventually(Duration::from_secs(600), "the retry accepted", || async {
        (fake.accepted("pd").len() == 1).then_some(())
    })
    .await;
    let a = fake.attempts();
    assert_eq!(a.len(), 2);
    let gap = a[1].at - a[0].at;
    assert!(
        gap >= Duration::from_secs(90) && gap < Duration::from_secs(180),
        "{gap:?}"
    );
    let r = &store.outbox_rows(0, 0).await.unwrap()[0];
    assert_eq!((r.state, r.attempts), (OutboxState::Sent, 2));
    assert_eq!(r.last_error.as_deref(), Some("429 Too Many Requests"));
    d.stop().await;
    ticker.abort();
}

/// A permanent failure is given up at once (one attempt), counted, and does not hold up the
/// incident's later messages.
#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_given_up_at_once_and_counted() {
    let ticker = ticking();
    let store = Store::memory();
    let fake = Fake::new(&[("pd", Mode::Permanent)]);
    let d = Dispatcher::start(
        store.clone(),
        config(&["pd"], Delivery::default()),
        fake.clone(),
        CancellationToken::new(),
    );
    let rows = messages(1, 1, &["pd"], d.now());
    store.outbox_enqueue(&rows, d.now()).await.unwrap();
    d.wake();
    eventually(Duration::from_secs(60), "both given up", || async {
        let rows = store.outbox_rows(0, 0).await.unwrap();
        rows.iter()
            .all(|r| r.state == OutboxState::Failed)
            .then_some(rows)
    })
    .await;
    assert_eq!(fake.attempts().len(), 2, "one attempt each");
    let r = &store.outbox_rows(0, 0).await.unwrap()[0];
    assert_eq!(r.attempts, 1);
    assert!(r
        .last_error
        .as_deref()
        .unwrap()
        .contains("invalid routing key"));
    assert_eq!(
        metric(&d, "watchfire_notify_failed_total{receiver=\"pd\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric(&d, "watchfire_notify_retries_total{receiver=\"pd\"}"),
        Some(0.0)
    );
    d.stop().await;
    ticker.abort();
}

/// A receiver that stays down: its message is retried with backoff until `give_up_after`
/// has passed since it was enqueued, then given up.
#[tokio::test(start_paused = true)]
async fn retries_stop_at_give_up_after() {
    let ticker = ticking();
    let store = Store::memory();
    let fake = Fake::new(&[("dead", Mode::Down)]);
    let delivery = Delivery {
        give_up_after: Duration::from_secs(300),
        max_backoff: Duration::from_secs(30),
        ..Delivery::default()
    };
    let d = Dispatcher::start(
        store.clone(),
        config(&["dead"], delivery),
        fake.clone(),
        CancellationToken::new(),
    );
    let start = Instant::now();
    let rows = messages(1, 0, &["dead"], d.now());
    store.outbox_enqueue(&rows, d.now()).await.unwrap();
    d.wake();
    let r = eventually(Duration::from_secs(3600), "given up", || async {
        let r = store.outbox_rows(0, 0).await.unwrap().remove(0);
        (r.state == OutboxState::Failed).then_some(r)
    })
    .await;
    let attempts = fake.attempts();
    let last = attempts.last().unwrap().at;
    assert!(
        last >= start + Duration::from_secs(300),
        "{:?}",
        last - start
    );
    assert!(
        last < start + Duration::from_secs(600),
        "{:?}",
        last - start
    );
    // 1 + 2 + 4 + 8 + 16 s, then every 30 s (±20 %): about 14 attempts in 5 minutes (fewer
    // when the paused clock ran ahead during store calls), never more than the backoff allows.
    assert!((4..=20).contains(&attempts.len()), "{}", attempts.len());
    assert_eq!(r.attempts as usize, attempts.len());
    let error = r.last_error.unwrap();
    assert!(
        error.contains("give_up_after") && error.contains("connection refused"),
        "{error}"
    );
    let retries = metric(&d, "watchfire_notify_retries_total{receiver=\"dead\"}").unwrap();
    assert_eq!(retries as usize, attempts.len() - 1);
    assert_eq!(
        metric(&d, "watchfire_notify_failed_total{receiver=\"dead\"}"),
        Some(1.0)
    );
    d.stop().await;
    ticker.abort();
}

/// A receiver that never answers holds up only its own worker: another receiver gets all its
/// messages meanwhile, and the hung attempt ends at the delivery timeout as a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_delays_no_other() {
    let store = Store::memory();
    let fake = Fake::new(&[("hung", Mode::Hang), ("fast", Mode::Ok)]);
    let delivery = Delivery {
        timeout: Duration::from_secs(2),
        ..Delivery::default()
    };
    let d = Dispatcher::start(
        store.clone(),
        config(&["hung", "fast"], delivery),
        fake.clone(),
        CancellationToken::new(),
    );
    let rows = messages(5, 1, &["hung", "fast"], d.now());
    let started = std::time::Instant::now();
    store.outbox_enqueue(&rows, d.now()).await.unwrap();
    d.wake();
    eventually(Duration::from_secs(10), "fast's messages", || async {
        (fake.accepted("fast").len() == 10).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        fake.attempts().iter().all(|a| a.receiver == "fast"),
        "no attempt of hung has ended yet"
    );
    eventually(
        Duration::from_secs(10),
        "hung's attempt timed out",
        || async {
            let r = metric(&d, "watchfire_notify_retries_total{receiver=\"hung\"}")?;
            (r >= 1.0).then_some(())
        },
    )
    .await;
    let rows = store.outbox_rows(0, 0).await.unwrap();
    let hung = rows
        .iter()
        .find(|r| r.receiver == "hung" && r.attempts > 0)
        .unwrap();
    assert!(
        hung.last_error
            .as_deref()
            .unwrap()
            .contains("no answer within 2s"),
        "{:?}",
        hung.last_error
    );
    d.stop().await;
}

fn incident(started: Millis) -> Incident {
    Incident {
        id: 0,
        component: "inference-gateway".into(),
        title: "inference-gateway is down".into(),
        status: IncidentStatus::Identified,
        impact: Impact::Critical,
        started,
        resolved: None,
        targets: vec!["gateway-health".into()],
        in_maintenance: false,
        figures: None,
        acknowledged: None,
        root_cause: None,
        resolution: None,
    }
}

/// The built-in `status-page` receiver writes the text into the incident's timeline once,
/// even when planned again; no receiver is called for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_receiver_writes_the_timeline_once() {
    let store = Store::memory();
    let fake = Fake::new(&[]);
    let d = Dispatcher::start(
        store.clone(),
        config(&[], Delivery::default()),
        fake.clone(),
        CancellationToken::new(),
    );
    let id = store.open_incident(&incident(d.now())).await.unwrap();
    let key = format!("inc{id}:status_page");
    let r = row(&key, Kind::StatusPage, id, STATUS_PAGE, d.now());
    assert_eq!(
        store
            .outbox_enqueue(std::slice::from_ref(&r), d.now())
            .await
            .unwrap(),
        1
    );
    d.wake();
    let ups = eventually(Duration::from_secs(10), "the timeline update", || async {
        let u = store.updates(&[id]).await.unwrap();
        (!u.is_empty()).then_some(u)
    })
    .await;
    assert_eq!(store.outbox_enqueue(&[r], d.now()).await.unwrap(), 0);
    d.wake();
    eventually(Duration::from_secs(10), "the row sent", || async {
        let rows = store.outbox_rows(id, 0).await.unwrap();
        (rows[0].state == OutboxState::Sent).then_some(())
    })
    .await;
    assert_eq!(store.updates(&[id]).await.unwrap(), ups);
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0].message, format!("{key} text"));
    assert!(ups[0].automatic);
    assert_eq!(ups[0].status, IncidentStatus::Investigating);
    assert!(fake.attempts().is_empty());
    assert_eq!(d.sent(STATUS_PAGE, "status_page"), 1);

    // A status-page message for an incident that does not exist is given up, not retried.
    let orphan = row(
        "inc999:status_page",
        Kind::StatusPage,
        999,
        STATUS_PAGE,
        d.now(),
    );
    store.outbox_enqueue(&[orphan], d.now()).await.unwrap();
    d.wake();
    eventually(Duration::from_secs(10), "the orphan given up", || async {
        let rows = store.outbox_rows(999, 0).await.unwrap();
        (rows[0].state == OutboxState::Failed).then_some(())
    })
    .await;
    d.stop().await;
}

/// Pruning removes sent, failed and suppressed rows older than `delivery.keep`, and nothing
/// pending or newer; rows of a receiver not configured stay pending until a reload adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_only_old_finished_rows_and_a_reload_starts_new_workers() {
    let store = Store::memory();
    let fake = Fake::new(&[("a", Mode::Ok), ("late", Mode::Ok)]);
    let delivery = Delivery {
        keep: Duration::from_secs(3600),
        ..Delivery::default()
    };
    let d = Dispatcher::start(
        store.clone(),
        config(&["a"], delivery.clone()),
        fake.clone(),
        CancellationToken::new(),
    );
    let old = d.now() - 2 * 3_600_000;
    let mut rows = messages(3, 0, &["gone"], old);
    rows[2].state = OutboxState::Suppressed;
    rows.extend(messages(1, 0, &["late"], old));
    store.outbox_enqueue(&rows, old).await.unwrap();
    let all = store.outbox_rows(0, 0).await.unwrap();
    store.outbox_sent(all[0].id, old + 1).await.unwrap();
    store.outbox_failed(all[1].id, "rejected").await.unwrap();
    let new = messages(1, 0, &["a"], d.now());
    store.outbox_enqueue(&new, d.now()).await.unwrap();
    d.wake();
    eventually(Duration::from_secs(10), "a's message", || async {
        (fake.accepted("a").len() == 1).then_some(())
    })
    .await;
    assert_eq!(d.prune().await.unwrap(), 3);
    let left = store.outbox_rows(0, 0).await.unwrap();
    let keys: Vec<&str> = left.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["inc1:declared@late", "inc1:declared@a"]);
    assert_eq!(d.prune().await.unwrap(), 0);
    assert!(fake.accepted("late").is_empty());

    d.set_config(config(&["a", "late"], delivery));
    eventually(Duration::from_secs(10), "late's message", || async {
        (fake.accepted("late").len() == 1).then_some(())
    })
    .await;
    assert!(format!("{d:?}").contains("late"));
    d.stop().await;
}

/// Figures, not a check (`cargo test --test notify_outbox -- --ignored --nocapture`): a
/// network partition's 1,000 declarations for 2 receivers enqueued in one call on a SQLite
/// file, then delivered to receivers that answer at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures; run by hand"]
async fn partition_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions {
        path: Some(tmp.path().to_path_buf()),
        ..StoreOptions::default()
    })
    .await
    .unwrap();
    let fake = Fake::new(&[("a", Mode::Ok), ("b", Mode::Ok)]);
    let d = Dispatcher::start(
        store.clone(),
        config(&["a", "b"], Delivery::default()),
        fake.clone(),
        CancellationToken::new(),
    );
    let rows = messages(1000, 0, &["a", "b"], d.now());
    let t = std::time::Instant::now();
    assert_eq!(store.outbox_enqueue(&rows, d.now()).await.unwrap(), 2000);
    let queued = t.elapsed();
    d.wake();
    eventually(Duration::from_secs(600), "all delivered", || async {
        store
            .outbox_pending()
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let delivered = t.elapsed();
    println!(
        "enqueue 2000 rows: {queued:?}; all delivered after {delivered:?} ({:.0} rows/s)",
        2000.0 / delivered.as_secs_f64()
    );
    d.stop().await;
}
