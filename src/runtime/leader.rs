//! One voice per decision in cluster mode: which leases this member competes for and what it
//! does while it holds them.
//!
//! - `failover/GROUP`, one per failover group: the holder decides for the group (switches,
//!   hooks) and publishes each decision fenced by the lease's epoch; every other member's group
//!   follows the published decision ([`follow`], polled every [`FOLLOW_EVERY`]), so its proxy
//!   sends traffic where the leader decided. On taking a lease over, a member first adopts the
//!   last published decision, then decides.
//! - `notify`, one for the incidents and the notifications: the holder runs the incident
//!   manager, the notifier and the outbox's delivery workers ([`super::incidents::start`]);
//!   losing the lease stops them. The incidents and the outbox live in the shared store, so a
//!   new holder resumes where the old one stopped: planning again makes no second message
//!   (the keys are deterministic) and rows already sent stay sent. The outbox's writes are
//!   fenced by this lease's epoch in the database ([`Leadership::fence_outbox`]): a holder
//!   whose lease was taken over cannot enqueue or mark a row.
//!
//! A reload that removes a failover group gives its lease up at once
//! ([`Leadership::keep_groups`]); one that adds a group starts competing for its lease.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cluster::lease::{Lease, LeaseDb, LeaseError};
use crate::cluster::voice::GroupVoice;
use crate::cluster::ClusterOptions;
use crate::store::{GroupState, OutboxClaim, OutboxFence, Store};

use super::Runtime;

/// How often followers read the published failover decisions.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// The lease of the incidents and notifications.
pub const NOTIFY_LEASE: &str = "notify";

/// The prefix of the failover groups' leases.
const GROUP_LEASE: &str = "failover/";

/// The lease of failover group `group`.
pub fn group_lease(group: &str) -> String {
    format!("{GROUP_LEASE}{group}")
}

/// The outbox's fence: the `notify` lease, in the epoch this member last held it.
struct NotifyFence(Arc<Lease>);

impl OutboxFence for NotifyFence {
    fn claim(&self) -> OutboxClaim {
        OutboxClaim {
            lease: self.0.name.clone(),
            holder: self.0.holder.clone(),
            epoch: self.0.epoch(),
        }
    }

    fn refused(&self, claim: &OutboxClaim, write: &'static str) {
        self.0.count_fenced();
        warn!(lease = %claim.lease, member = %claim.holder, epoch = claim.epoch, write,
              "outbox write refused by the database: the lease has moved on or run out");
    }
}

/// This member's leases.
#[derive(Debug)]
pub struct Leadership {
    db: LeaseDb,
    id: String,
    lease: Duration,
    cancel: CancellationToken,
    /// Each lease competed for and the token that stops its loop (which gives it up).
    leases: Mutex<BTreeMap<String, (Arc<Lease>, CancellationToken)>>,
    voices: Mutex<HashMap<String, std::sync::Weak<GroupVoice>>>,
}

impl Leadership {
    /// Connects to the cluster database of `opts` (refusing when it cannot be reached within
    /// `opts.lease`) and creates its tables; leases are kept until `cancel`.
    pub async fn connect(
        opts: &ClusterOptions,
        cancel: CancellationToken,
    ) -> Result<Arc<Leadership>, LeaseError> {
        let db = LeaseDb::connect(&opts.url, opts.lease.max(Duration::from_secs(1))).await?;
        Ok(Arc::new(Leadership {
            db,
            id: opts.id.clone(),
            lease: opts.lease,
            cancel,
            leases: Mutex::new(BTreeMap::new()),
            voices: Mutex::new(HashMap::new()),
        }))
    }

    /// This member's identity.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The database.
    pub fn db(&self) -> &LeaseDb {
        &self.db
    }

    /// Lease `name`, competed for from its first use on.
    pub fn lease(&self, name: &str) -> Arc<Lease> {
        let mut leases = self.leases.lock().expect("leases lock poisoned");
        leases
            .entry(name.to_string())
            .or_insert_with(|| {
                let l = Lease::new(self.db.clone(), name, &self.id, self.lease);
                let stop = self.cancel.child_token();
                tokio::spawn(l.clone().run(stop.clone()));
                (l, stop)
            })
            .0
            .clone()
    }

    /// Every lease competed for, by name.
    pub fn leases(&self) -> Vec<Arc<Lease>> {
        let leases = self.leases.lock().expect("leases lock poisoned");
        leases.values().map(|(l, _)| l.clone()).collect()
    }

    /// Stops competing for the lease of every failover group not in `groups` (a reload removed
    /// it): its loop ends and gives the lease up at once when held, so another member's group
    /// of that name (after its own reload) need not wait for it to run out.
    pub fn keep_groups<'a>(&self, groups: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<String> = groups.into_iter().map(group_lease).collect();
        let mut leases = self.leases.lock().expect("leases lock poisoned");
        let gone: Vec<String> = leases
            .keys()
            .filter(|n| n.starts_with(GROUP_LEASE) && !keep.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, stop)) = leases.remove(&name) {
                stop.cancel();
                info!(lease = %name, "failover group removed: its lease is given up");
            }
            let group = &name[GROUP_LEASE.len()..];
            self.voices
                .lock()
                .expect("voices lock poisoned")
                .remove(group);
        }
    }

    /// Fences `store`'s outbox writes by the `notify` lease (the store must be the cluster's
    /// database, where the leases are).
    pub fn fence_outbox(&self, store: &Store) {
        let fence = NotifyFence(self.lease(NOTIFY_LEASE));
        store.set_outbox_fence(Some(Arc::new(fence)));
    }

    /// Lease `name`, when it is competed for.
    pub fn find(&self, name: &str) -> Option<Arc<Lease>> {
        let leases = self.leases.lock().expect("leases lock poisoned");
        leases.get(name).map(|(l, _)| l.clone())
    }

    /// The voice of failover group `group` (one per running group object).
    pub fn voice(&self, group: &str) -> Arc<GroupVoice> {
        let v = GroupVoice::start(self.lease(&group_lease(group)));
        let mut voices = self.voices.lock().expect("voices lock poisoned");
        voices.insert(group.to_string(), Arc::downgrade(&v));
        v
    }

    fn voice_of(&self, group: &str) -> Option<Arc<GroupVoice>> {
        let voices = self.voices.lock().expect("voices lock poisoned");
        voices.get(group).and_then(|w| w.upgrade())
    }
}

/// Renders `watchfire_cluster_unowned_targets` (by location) while this member holds the
/// `notify` lease: one member speaks for the whole cluster, so an alert sees one series per
/// location whichever member holds it.
pub fn render_unowned(rt: &Runtime, w: &mut crate::expo::Writer<'_>) {
    use crate::expo::catalog::CLUSTER_UNOWNED_TARGETS;
    let (Some(l), Some(c)) = (rt.leadership(), rt.cluster()) else {
        return;
    };
    if l.find(NOTIFY_LEASE).and_then(|n| n.leading()).is_none() {
        return;
    }
    let unowned = c.unowned(&rt.config());
    if unowned.is_empty() {
        return;
    }
    w.header(&CLUSTER_UNOWNED_TARGETS);
    for (location, n) in &unowned {
        w.sample(&CLUSTER_UNOWNED_TARGETS, &[("location", location)], *n);
    }
}

/// The failover groups follow the published decisions: a group whose lease this member does
/// not hold adopts each new decision; one whose lease it has just taken adopts the last
/// decision, then decides. Until `cancel`.
pub async fn follow(rt: Arc<Runtime>, l: Arc<Leadership>, cancel: CancellationToken) {
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    let mut failing = false;
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let groups = rt.failover_groups();
        if groups.is_empty() {
            continue;
        }
        let decisions = match l.db().decisions().await {
            Ok(d) => {
                failing = false;
                d
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot read the failover decisions; traffic stays where it is");
                }
                failing = true;
                continue;
            }
        };
        for g in groups {
            let name = &g.cfg.name;
            let Some(voice) = l.voice_of(name) else {
                continue;
            };
            let last = decisions.iter().find(|d| d.group == *name);
            let state = last.map(|d| GroupState {
                group: d.group.clone(),
                active: d.active,
                json: d.state.clone(),
                updated: 0,
            });
            if let Some(epoch) = voice.to_sync() {
                if let Some(s) = &state {
                    g.adopt(s);
                }
                voice.synced(epoch);
                g.evaluate(None);
            } else if voice.lease().leading().is_none() {
                let (Some(d), Some(s)) = (last, &state) else {
                    continue;
                };
                if seen.get(name) != Some(&(d.epoch, d.seq)) && g.adopt(s) {
                    seen.insert(name.clone(), (d.epoch, d.seq));
                }
            }
        }
    }
}

/// Runs the incident manager and the notifier while this member holds the `notify` lease, and
/// stops them when it loses it. Until `cancel`.
pub async fn incidents_while_leading(
    rt: Arc<Runtime>,
    l: Arc<Leadership>,
    cancel: CancellationToken,
) {
    let lease = l.lease(NOTIFY_LEASE);
    let mut term = lease.subscribe();
    let mut running: Option<CancellationToken> = None;
    loop {
        let leading = term.borrow_and_update().is_some();
        match (leading, &running) {
            (true, None) => {
                let child = cancel.child_token();
                match super::incidents::start(rt.clone(), child.clone()).await {
                    Ok(()) => running = Some(child),
                    Err(e) => {
                        warn!(error = %e, "leading the notifications, but the incidents cannot be read; trying again");
                        child.cancel();
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                }
            }
            (false, Some(c)) => {
                c.cancel();
                running = None;
            }
            _ => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = term.changed() => if r.is_err() { return },
        }
    }
}
