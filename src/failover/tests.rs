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
