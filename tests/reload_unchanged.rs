//! A reload that changes nothing keeps every running target as it is: the same target objects
//! (no prober, histogram or state rebuilt), their counters and histograms running on, for a
//! few thousand targets written inline under `targets:` and listed in a file_sd file; and it
//! reads nothing it read before: a config file whose text is the same is read past its
//! `targets:`, an unchanged file_sd file is neither parsed nor checked for names again.

mod common;
#[path = "common/runtime.rs"]
mod started;

use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use watchfire::config::{self, FileSdCache};
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

/// `n` targets written inline, every one on a closed port.
fn inline_config(n: usize, first_url: &str) -> String {
    let mut text = String::from("defaults:\n  interval: 1s\n  timeout: 100ms\ntargets:\n");
    for i in 0..n {
        let u = if i == 0 {
            first_url.to_string()
        } else {
            url(i)
        };
        text.push_str(&format!("  - name: t{i}\n    url: {u}\n"));
    }
    text
}

fn same_specs(a: &watchfire::config::Config, b: &watchfire::config::Config) -> usize {
    a.targets
        .iter()
        .zip(&b.targets)
        .filter(|(a, b)| Arc::ptr_eq(a, b))
        .count()
}

#[test]
fn a_config_file_whose_text_did_not_change_is_not_read_past_its_targets_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = started::config_file(dir.path(), &inline_config(50, &url(0)));
    let mut cache = FileSdCache::default();
    let first = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!(
        (first.targets.len(), cache.inline.targets_parsed()),
        (50, 1)
    );

    // The same text: the targets are not read, and the very same specs come back.
    let again = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!(cache.inline.targets_parsed(), 1, "not read again");
    assert_eq!(same_specs(&first, &again), 50);

    // One target changed: the file is read again, and the change is there.
    started::config_file(dir.path(), &inline_config(50, "http://127.0.0.1:10/x"));
    let changed = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!(cache.inline.targets_parsed(), 2, "read again");
    assert_eq!(changed.targets[0].target_text(), "http://127.0.0.1:10/x");
    assert_eq!(changed.targets[1].target_text(), url(1));
}

#[test]
fn a_file_read_past_its_targets_still_finds_a_duplicate_in_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, inline_config(5, &url(0))).unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(
        &b,
        "targets:\n  - { name: other, url: \"http://127.0.0.1:9/o\" }\n",
    )
    .unwrap();
    let mut cache = FileSdCache::default();
    config::load_cached(dir.path(), started::OPTS, &mut cache).unwrap();
    assert_eq!(cache.inline.targets_parsed(), 2);

    // b.yaml now names a target of a.yaml, which is not read again.
    std::fs::write(
        &b,
        "targets:\n  - { name: t3, url: \"http://127.0.0.1:9/o\" }\n",
    )
    .unwrap();
    let e = config::load_cached(dir.path(), started::OPTS, &mut cache).unwrap_err();
    assert_eq!(cache.inline.targets_parsed(), 3, "only b.yaml read again");
    let e = e.to_string();
    assert!(
        e.contains("duplicate name `t3`") && e.contains("a.yaml"),
        "{e}"
    );
}

#[test]
fn a_file_whose_targets_have_a_problem_is_read_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let text = "targets:\n  - { name: ok, url: \"http://127.0.0.1:9/\" }\n  - { name: bad, url: \"ftp://x\" }\n";
    let path = started::config_file(dir.path(), text);
    let mut cache = FileSdCache::default();
    for round in 1..=2 {
        let e = config::load_cached(&path, started::OPTS, &mut cache).unwrap_err();
        assert!(e.to_string().contains("targets[1]"), "{e}");
        assert_eq!(cache.inline.targets_parsed(), round);
    }
}

#[test]
fn an_unchanged_file_sd_file_is_neither_parsed_nor_checked_for_names_again() {
    let dir = tempfile::tempdir().unwrap();
    let list = |ids: std::ops::Range<usize>| {
        let urls: Vec<String> = ids.map(|i| format!("\"{}\"", url(i))).collect();
        format!("[{{\"targets\": [{}]}}]", urls.join(", "))
    };
    std::fs::write(dir.path().join("a.json"), list(0..100)).unwrap();
    std::fs::write(dir.path().join("b.json"), list(100..200)).unwrap();
    let path = started::config_file(dir.path(), "file_sd:\n  - files: [\"*.json\"]\n");
    let mut cache = FileSdCache::default();
    let first = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!((cache.files_parsed(), cache.name_checks()), (2, 1));

    for _ in 0..2 {
        let again = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
        assert_eq!((cache.files_parsed(), cache.name_checks()), (2, 1));
        assert_eq!(same_specs(&first, &again), 200);
    }

    // b.json now lists a target of a.json: read again, names checked again, an error.
    std::fs::write(dir.path().join("b.json"), list(99..200)).unwrap();
    let e = config::load_cached(&path, started::OPTS, &mut cache).unwrap_err();
    assert_eq!((cache.files_parsed(), cache.name_checks()), (3, 2));
    assert!(e.to_string().contains("duplicate target"), "{e}");

    // Fixed, then half-written: b.json keeps its last good list (reported), a.json is not
    // read, and the names (the same lists) are not checked again.
    let full = list(100..201);
    std::fs::write(dir.path().join("b.json"), &full).unwrap();
    config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!((cache.files_parsed(), cache.name_checks()), (4, 3));
    std::fs::write(dir.path().join("b.json"), &full[..full.len() / 2]).unwrap();
    let kept = config::load_cached(&path, started::OPTS, &mut cache).unwrap();
    assert_eq!((cache.files_parsed(), cache.name_checks()), (5, 3));
    assert_eq!(
        kept.file_sd_stale.len(),
        1,
        "the half-written file is reported"
    );
    assert_eq!(
        kept.targets.len(),
        201,
        "a.json's 100 and b.json's last good 101"
    );
}
