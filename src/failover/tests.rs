//! Unit tests of a group over instances that are not the runtime's targets: the group needs
//! nothing from an instance beyond the [`Instance`] trait.

use std::sync::atomic::AtomicU32;

use super::*;

/// An instance whose health the test sets.
struct Fake {
    health: Mutex<Health>,
    marked_down: AtomicU32,
}

impl Fake {
    fn new(health: Health) -> Arc<Fake> {
        Arc::new(Fake {
            health: Mutex::new(health),
            marked_down: AtomicU32::new(0),
        })
    }
}

impl Instance for Fake {
    fn health(&self) -> Health {
        *self.health.lock().unwrap()
    }

    fn mark_down(&self, _reason: Reason, _detail: String) {
        self.marked_down.fetch_add(1, Ordering::Relaxed);
        *self.health.lock().unwrap() = Health::Down;
    }
}

fn group_config() -> FailoverGroup {
    let yaml = "failover:\n  - name: gw\n    instances: [http://127.0.0.1:1, http://127.0.0.1:2]\n";
    crate::config::load_str("test", yaml)
        .expect("a valid failover group")
        .failover[0]
        .clone()
}

#[tokio::test]
async fn a_passive_failure_marks_the_instance_down_and_moves_traffic() {
    let (primary, backup) = (Fake::new(Health::Up), Fake::new(Health::Up));
    let instances: Vec<Arc<dyn Instance>> = vec![primary.clone(), backup.clone()];
    let g = Group::new(group_config(), instances, CancellationToken::new());
    g.evaluate(None);
    assert_eq!(g.active(), Some(0));
    g.passive_failure(0, Reason::Refused, "connection refused".into());
    assert_eq!(primary.marked_down.load(Ordering::Relaxed), 1);
    assert_eq!(backup.marked_down.load(Ordering::Relaxed), 0);
    assert_eq!(g.health(0), Health::Down);
    assert_eq!(g.active(), Some(1));
    let json = g.json();
    assert_eq!(json.instances[0].state, "down");
    assert_eq!(json.instances[0].passive_failures, 1);
    assert_eq!(json.history.last().map(|h| h.reason), Some("active_down"));
}

#[test]
fn an_instance_past_the_known_ones_is_down() {
    let g = Group::new(
        group_config(),
        vec![Fake::new(Health::Up) as Arc<dyn Instance>],
        CancellationToken::new(),
    );
    assert_eq!(g.health(0), Health::Up);
    assert_eq!(g.health(1), Health::Down);
}

/// A voice the test sets: whether this member leads, and whether the cluster accepts what it
/// publishes; it keeps what was published.
#[derive(Default)]
struct FakeVoice {
    leading: std::sync::atomic::AtomicBool,
    accept: std::sync::atomic::AtomicBool,
    published: Mutex<Vec<crate::store::GroupState>>,
}

impl Voice for FakeVoice {
    fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn publish(&self, state: crate::store::GroupState, then: Box<dyn FnOnce(bool) + Send>) {
        self.published.lock().unwrap().push(state);
        then(self.accept.load(Ordering::SeqCst));
    }
}

fn voiced(voice: Arc<FakeVoice>) -> (Arc<Group>, Arc<Fake>) {
    let primary = Fake::new(Health::Up);
    let instances: Vec<Arc<dyn Instance>> = vec![primary.clone(), Fake::new(Health::Up)];
    let g = Group::new(group_config(), instances, CancellationToken::new());
    g.set_voice(voice);
    (g, primary)
}

#[tokio::test]
async fn a_follower_neither_decides_nor_switches_on_its_own_evidence() {
    let voice = Arc::new(FakeVoice::default());
    let (g, primary) = voiced(voice.clone());
    assert_eq!(g.evaluate(None), None);
    assert_eq!(g.active(), None, "no initial choice of its own");
    g.passive_failure(0, Reason::Refused, "connection refused".into());
    assert_eq!(primary.marked_down.load(Ordering::Relaxed), 1);
    assert_eq!(g.active(), None, "the leader moves traffic, not a follower");
    assert!(
        g.manual_switch(1).is_err(),
        "an operator is sent to the leader"
    );
    assert!(voice.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_follower_adopts_the_published_decision_and_announces_it() {
    let (follower, _) = voiced(Arc::new(FakeVoice::default()));
    let mut switches = follower.subscribe_switches();
    let mut state = persist::save("gw", &Selection::default(), None);
    state.active = Some(1);
    state.json = serde_json::json!({"active": 1, "last_switch": null, "recent": [], "pinned": false, "reason": "active_down"}).to_string();
    assert!(follower.adopt(&state));
    assert_eq!(follower.active(), Some(1));
    let s = switches.try_recv().expect("the change is announced");
    assert_eq!(s.reason, "leader");
    assert_eq!(
        follower.json().history.last().map(|h| h.reason),
        Some("leader")
    );
    assert!(follower.adopt(&state), "the same decision again");
    assert!(switches.try_recv().is_err(), "and no second announcement");
}

#[tokio::test]
async fn a_leader_publishes_each_decision_in_order_and_stops_deciding_when_it_no_longer_leads() {
    let voice = Arc::new(FakeVoice {
        leading: true.into(),
        accept: true.into(),
        ..FakeVoice::default()
    });
    let (g, _) = voiced(voice.clone());
    g.evaluate(None);
    assert_eq!(g.active(), Some(0));
    g.passive_failure(0, Reason::Refused, "connection refused".into());
    assert_eq!(g.active(), Some(1));
    let published = voice.published.lock().unwrap().clone();
    let actives: Vec<Option<u32>> = published.iter().map(|p| p.active).collect();
    assert_eq!(
        actives,
        vec![Some(0), Some(1)],
        "the initial choice, then the switch"
    );
    // A member whose lease ran out stops deciding.
    voice.leading.store(false, Ordering::SeqCst);
    assert_eq!(g.evaluate(None), None);
}
