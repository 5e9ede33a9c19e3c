//! Unit tests of the cluster's membership views and options.

use super::*;

fn opts(url: &str) -> ClusterOptions {
    ClusterOptions {
        url: url.into(),
        id: "a:9115".into(),
        replication: 1,
        lease: DEFAULT_LEASE,
        location: DEFAULT_LOCATION.into(),
    }
}

#[test]
fn bad_urls_are_refused_without_their_password() {
    for url in [
        "not a url",
        "mysql://u:hunter2@db/x",
        "postgres://u:hunter2@/x",
    ] {
        let e = opts(url).validate().unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ClusterError::BadUrl { .. }), "{url}: {text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    opts("postgres://u:pw@127.0.0.1:5432/db")
        .validate()
        .unwrap();
}

#[test]
fn replication_and_lease_are_checked() {
    let mut o = opts("postgres://127.0.0.1/db");
    o.replication = 0;
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--cluster.replication"));
    let mut o = opts("postgres://127.0.0.1/db");
    o.lease = Duration::from_millis(500);
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--cluster.lease"));
    let mut o = opts("postgres://127.0.0.1/db");
    o.id = " ".into();
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--cluster.id"));
}

#[test]
fn the_debug_form_masks_the_password() {
    let text = format!("{:?}", opts("postgres://u:hunter2@db:5432/x"));
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn an_unreachable_database_refuses_the_start_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = opts(&format!("postgres://u:hunter2@127.0.0.1:{port}/x"));
    let e = Cluster::start(o, "127.0.0.1:1".into(), CancellationToken::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ClusterError::Unreachable { .. }), "{text}");
    assert!(text.contains("cannot reach the cluster database"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_view_without_this_member_owns_nothing() {
    let live: Vec<Member> = ["a", "b"]
        .iter()
        .map(|id| Member {
            id: id.to_string(),
            location: "default".into(),
            address: String::new(),
            age_seconds: 0.0,
            heartbeat_age_seconds: 0.0,
            lease: DEFAULT_LEASE,
            incarnation: 1,
        })
        .collect();
    let outside = view_of(&live, "c", "default", 1);
    assert!((0..100).all(|i| !outside.writes_history(&format!("t{i}"))));
    assert!(outside.me.is_none());
    assert!((0..100).all(|i| !outside.owns(&format!("t{i}"))));
    let a = view_of(&live, "a", "default", 1);
    let b = view_of(&live, "b", "default", 1);
    for i in 0..100 {
        let t = format!("t{i}");
        assert!(a.owns(&t) != b.owns(&t), "{t}: exactly one owner");
    }
}

fn member(id: &str, location: &str) -> Member {
    Member {
        id: id.into(),
        location: location.into(),
        address: String::new(),
        age_seconds: 0.0,
        heartbeat_age_seconds: 0.0,
        lease: DEFAULT_LEASE,
        incarnation: 1,
    }
}

#[test]
fn exactly_one_live_member_writes_each_targets_history_whatever_the_replication() {
    let live = vec![
        member("a1", "a"),
        member("a2", "a"),
        member("a3", "a"),
        member("b1", "b"),
    ];
    for r in [1, 2, 3] {
        let views: Vec<View> = live
            .iter()
            .map(|m| view_of(&live, &m.id, &m.location, r))
            .collect();
        for i in 0..300 {
            let t = format!("t{i}");
            let writers: Vec<&str> = views
                .iter()
                .zip(&live)
                .filter(|(v, _)| v.writes_history(&t))
                .map(|(_, m)| m.id.as_str())
                .collect();
            assert_eq!(writers.len(), 1, "r={r} {t}: {writers:?}");
            assert!(writers[0].starts_with('a'), "the first location writes");
            let w = views[live.iter().position(|m| m.id == writers[0]).unwrap()].clone();
            assert!(w.owns(&t), "the writer probes it");
        }
    }
    // The writer leaves: the next in rendezvous order takes over, and only it.
    let t = "t7";
    let first = live
        .iter()
        .find(|m| view_of(&live, &m.id, &m.location, 2).writes_history(t))
        .unwrap();
    let rest: Vec<Member> = live.iter().filter(|m| m.id != first.id).cloned().collect();
    let next: Vec<&Member> = rest
        .iter()
        .filter(|m| view_of(&rest, &m.id, &m.location, 2).writes_history(t))
        .collect();
    assert_eq!(next.len(), 1);
    assert!(
        view_of(&live, &next[0].id, "a", 2).owns(t),
        "it was the second replica"
    );
}

#[test]
fn a_location_without_live_members_leaves_its_targets_unowned() {
    let config = crate::config::load_str(
        "probes.yaml",
        "quorum:\n  locations: [a, b, c]\ntargets:\n  - name: x\n    url: http://127.0.0.1:9/\n  - name: y\n    url: http://127.0.0.1:9/\n    quorum: { locations: [a, b] }\n",
    )
    .expect("config loads");
    let live = vec![member("a1", "a"), member("b1", "b")];
    let got = unowned_of(&live, &config);
    let want: BTreeMap<String, usize> = [("a".into(), 0), ("b".into(), 0), ("c".into(), 1)].into();
    assert_eq!(got, want);
    let alone = unowned_of(&[member("a1", "a")], &config);
    assert_eq!(alone["b"], 2);
    assert_eq!(alone["c"], 1);
    let none = unowned_of(
        &live,
        &crate::config::load_str(
            "p.yaml",
            "targets:\n  - name: x\n    url: http://127.0.0.1:9/\n",
        )
        .unwrap(),
    );
    assert!(none.values().all(|n| *n == 0), "{none:?}");
}

#[test]
fn each_location_shares_every_target_among_its_own_members() {
    let live = vec![member("a1", "a"), member("a2", "a"), member("b1", "b")];
    let a1 = view_of(&live, "a1", "a", 1);
    let a2 = view_of(&live, "a2", "a", 1);
    let b1 = view_of(&live, "b1", "b", 1);
    for i in 0..200 {
        let t = format!("t{i}");
        assert!(a1.owns(&t) != a2.owns(&t), "{t}: one owner in location a");
        assert!(b1.owns(&t), "{t}: location b's only member probes it");
    }
}
