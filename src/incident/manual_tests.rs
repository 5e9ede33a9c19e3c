//! Acknowledgement, root cause and resolution on the in-memory store.

use super::*;
use crate::store::NoMaintenance;

/// 2026-01-01T10:00:00Z.
const T0: Millis = 1_767_261_600_000;

async fn declared(store: &Store) -> i64 {
    let d = DeclareInput {
        component: "gw".into(),
        title: "Predictions failing".into(),
        message: "Looking".into(),
        ..DeclareInput::default()
    };
    declare(store, &d, T0).await.expect("declared").id
}

#[tokio::test]
async fn ack_is_recorded_once_and_named_on_the_timeline() {
    let store = Store::memory();
    let id = declared(&store).await;
    let inc = ack(&store, id, T0 + 1_000, Some(" alice "), Some("on it"))
        .await
        .expect("acknowledged");
    assert_eq!(inc.acknowledged, Some(T0 + 1_000));
    let again = ack(&store, id, T0 + 2_000, Some("bob"), None)
        .await
        .expect("a second acknowledgement is no error");
    assert_eq!(again.acknowledged, Some(T0 + 1_000), "the first one stands");
    let updates = store.updates(&[id]).await.unwrap();
    assert_eq!(updates.len(), 2, "one entry for the acknowledgement");
    assert_eq!(updates[1].message, "Acknowledged by alice: on it");
    assert!(updates[1].automatic);
    let stored = store.incident(id).await.unwrap().unwrap();
    assert_eq!(stored.acknowledged, Some(T0 + 1_000));
}

#[tokio::test]
async fn ack_refuses_unknown_resolved_and_bad_input() {
    let store = Store::memory();
    let r = ack(&store, 4242, T0, None, None).await;
    assert!(matches!(r, Err(IncidentError::NotFound(4242))), "{r:?}");
    let id = declared(&store).await;
    let long = "x".repeat(MAX_NAME + 1);
    let r = ack(&store, id, T0, Some(&long), None).await;
    assert!(
        matches!(r, Err(IncidentError::Invalid { field: "by", .. })),
        "{r:?}"
    );
    let r = ack(&store, id, T0, None, Some("  ")).await;
    assert!(
        matches!(
            r,
            Err(IncidentError::Invalid {
                field: "message",
                ..
            })
        ),
        "{r:?}"
    );
    let cfg = IncidentsConfig::default();
    let how = Resolution {
        config: &cfg,
        calendar: &NoMaintenance,
        counters: &crate::incident::NoCounters,
    };
    let done = UpdateInput {
        status: Some("resolved".into()),
        message: "Fixed".into(),
        ..UpdateInput::default()
    };
    update(&store, id, &done, T0 + 5_000, &how).await.unwrap();
    match ack(&store, id, T0 + 6_000, None, None).await {
        Err(IncidentError::Invalid { message, .. }) => {
            assert!(message.contains("resolved already"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn root_cause_and_resolution_are_stored_and_kept() {
    let store = Store::memory();
    let id = declared(&store).await;
    let cfg = IncidentsConfig::default();
    let how = Resolution {
        config: &cfg,
        calendar: &NoMaintenance,
        counters: &crate::incident::NoCounters,
    };
    let u = UpdateInput {
        status: Some("identified".into()),
        message: "Found it".into(),
        root_cause: Some("OOM kill of the primary".into()),
        ..UpdateInput::default()
    };
    update(&store, id, &u, T0 + 1, &how).await.unwrap();
    let u = UpdateInput {
        status: Some("resolved".into()),
        message: "Fixed".into(),
        resolution: Some("Memory limit raised to 4 GiB".into()),
        ..UpdateInput::default()
    };
    let inc = update(&store, id, &u, T0 + 2, &how).await.unwrap();
    assert_eq!(inc.root_cause.as_deref(), Some("OOM kill of the primary"));
    assert_eq!(
        inc.resolution.as_deref(),
        Some("Memory limit raised to 4 GiB")
    );
    let stored = store.incident(id).await.unwrap().unwrap();
    assert_eq!(
        stored.root_cause, inc.root_cause,
        "kept when not given again"
    );
    assert_eq!(stored.resolution, inc.resolution);
    let view = super::super::view::IncidentView::new(&stored, &[]);
    assert!(
        view.render().contains("root cause: OOM kill"),
        "{}",
        view.render()
    );

    let id2 = declared(&store).await;
    let bad = UpdateInput {
        message: "x".into(),
        root_cause: Some("y".repeat(MAX_TEXT + 1)),
        ..UpdateInput::default()
    };
    let r = update(&store, id2, &bad, T0 + 3, &how).await;
    assert!(
        matches!(
            r,
            Err(IncidentError::Invalid {
                field: "root_cause",
                ..
            })
        ),
        "{r:?}"
    );
}
