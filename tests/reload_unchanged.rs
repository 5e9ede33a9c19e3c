//! A reload that changes nothing keeps every running target as it is: the same target objects
//! (no prober, histogram or state rebuilt), their counters and histograms running on, for a
//! few thousand targets written inline under `targets:` and listed in a file_sd file.

mod common;
#[path = "common/runtime.rs"]
mod started;

use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use watchfire::runtime::{Runtime, Target};

/// Targets of each form: enough that a per-target rebuild or a quadratic step would show.
const N: usize = 2000;

/// Each target's probes and latency samples so far, in the running order.
fn recorded(targets: &[Arc<Target>]) -> Vec<(u64, u64)> {
    targets
        .iter()
        .map(|t| {
            let s = t.stats.lock().unwrap();
            (s.probes(), s.latency.len())
        })
        .collect()
}

/// Waits until the first target was probed twice, reloads the unchanged config twice and
/// checks that every target object, and what it recorded, is the one running before.
async fn reload_keeps_every_target(rt: &Runtime) {
    let first = rt.targets()[0].clone();
    eventually(
        Duration::from_secs(20),
        "the first target probed twice",
        || {
            let first = first.clone();
            async move { (first.stats.lock().unwrap().probes() >= 2).then_some(()) }
        },
    )
    .await;
    let before = rt.targets();
    assert_eq!(before.len(), N);
    let counted = recorded(&before);
    assert!(
        counted[0].1 >= 2,
        "the first target's histogram has its samples"
    );
    for round in 0..2 {
        rt.reload().await.expect("an unchanged reload applies");
        let after = rt.targets();
        assert_eq!(after.len(), N, "round {round}");
        let rebuilt: Vec<&str> = before
            .iter()
            .zip(after.iter())
            .filter(|(b, a)| !Arc::ptr_eq(b, a))
            .map(|(b, _)| b.spec.name.as_str())
            .collect();
        assert!(
            rebuilt.is_empty(),
            "round {round}: {} target(s) rebuilt, the first {:?}",
            rebuilt.len(),
            &rebuilt[..rebuilt.len().min(3)]
        );
        for (i, (now, then)) in recorded(&after).iter().zip(&counted).enumerate() {
            assert!(
                now.0 >= then.0 && now.1 >= then.1,
                "round {round}: target {i} lost what it recorded: {then:?} then {now:?}"
            );
        }
    }
    let st = rt.reload_status();
    assert!(st.ok && st.successes == 2 && st.failures == 0, "{st:?}");
}

/// Port 9 on loopback: refused at once, every probe a quick failure recorded like any other.
fn url(i: usize) -> String {
    format!("http://127.0.0.1:9/t{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reload_of_inline_targets_rebuilds_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("defaults:\n  interval: 1s\n  timeout: 100ms\ntargets:\n");
    for i in 0..N {
        text.push_str(&format!(
            "  - name: t{i}\n    url: {}\n    labels: {{ shard: s{} }}\n",
            url(i),
            i % 7
        ));
    }
    let path = dir.path().join("watchfire.yaml");
    std::fs::write(&path, text).unwrap();
    let (rt, cancel) = started::start(&path).await;
    reload_keeps_every_target(&rt).await;
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_reload_of_file_sd_targets_keeps_the_running_set() {
    let dir = tempfile::tempdir().unwrap();
    let urls: Vec<String> = (0..N).map(|i| format!("\"{}\"", url(i))).collect();
    let list = format!(
        "[{{\"targets\": [{}], \"labels\": {{\"shard\": \"a\"}}}}]",
        urls.join(", ")
    );
    std::fs::write(dir.path().join("a.json"), list).unwrap();
    let path = dir.path().join("watchfire.yaml");
    let section = "file_sd:\n  - files: [a.json]\n    interval: 1s\n    timeout: 100ms\n";
    std::fs::write(&path, section).unwrap();
    let (rt, cancel) = started::start(&path).await;
    let before = rt.targets();
    reload_keeps_every_target(&rt).await;
    // The file's specs are the very ones running: the running set itself is kept.
    assert!(Arc::ptr_eq(&before, &rt.targets()), "the same target set");
    cancel.cancel();
}
