//! `file_sd:`: targets from Prometheus file_sd-style JSON and YAML lists — parsing, labels,
//! defaults, duplicates, malformed and half-written files, the per-file cache that makes an
//! unchanged reload keep every target as it is, and `watchfire check` on such files.

mod common;
#[path = "common/runtime.rs"]
mod started;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use started::{config_file, names as running, start, OPTS};
use watchfire::config::{self, Check, FileSdCache};
use watchfire::runtime::Runtime;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A JSON list of `n` targets on one closed port, one group, labelled `shard`.
fn json_list(n: usize, shard: &str, port: u16) -> String {
    let urls: Vec<String> = (0..n)
        .map(|i| format!("\"http://127.0.0.1:{port}/t{i}\""))
        .collect();
    format!(
        "[{{\"targets\": [{}], \"labels\": {{\"shard\": \"{shard}\"}}}}]",
        urls.join(", ")
    )
}

#[test]
fn json_and_yaml_lists_become_targets_with_labels_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    write(
        &dir.path().join("targets/a.json"),
        r#"[{"targets": ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b?x=1"],
             "labels": {"team": "web", "__meta_x": "dropped"}},
            {"targets": ["http://127.0.0.1:9/c"]}]"#,
    );
    write(
        &dir.path().join("targets/b.yaml"),
        "- targets: [\"http://127.0.0.1:9/d\"]\n  labels: { env: prod }\n",
    );
    write(&dir.path().join("targets/ignored.txt"), "not read");
    let path = config_file(
        dir.path(),
        "defaults:\n  labels: { site: eu }\n  timeout: 2s\n\
         file_sd:\n  - files: [\"targets/*.json\", \"targets/*.yaml\"]\n    interval: 120s\n    labels: { team: ops }\n",
    );
    let c = config::load_with(&path, OPTS).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http://127.0.0.1:9/a",
            "http://127.0.0.1:9/b?x=1",
            "http://127.0.0.1:9/c",
            "http://127.0.0.1:9/d"
        ]
    );
    let a = &c.targets[0];
    assert_eq!(a.interval, Duration::from_secs(120));
    assert_eq!(
        a.timeout,
        Duration::from_secs(2),
        "the file's defaults apply"
    );
    // The group's label wins over the section's; `__` labels are dropped.
    let labels =
        |i: usize| -> Vec<(String, String)> { c.targets[i].labels.clone().into_iter().collect() };
    assert_eq!(labels(0), [kv("site", "eu"), kv("team", "web")]);
    assert_eq!(labels(2), [kv("site", "eu"), kv("team", "ops")]);
    assert_eq!(
        labels(3),
        [kv("env", "prod"), kv("site", "eu"), kv("team", "ops")]
    );
    match &c.targets[1].check {
        Check::Http(h) => assert_eq!(h.url.path_and_query, "/b?x=1"),
        other => panic!("a native HTTP check, got {other:?}"),
    }
    assert_eq!(c.file_sd.len(), 1);
    assert!(c.file_sd_stale.is_empty());
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn a_module_section_probes_its_targets_with_the_module() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("tcp.json"),
        r#"[{"targets": ["127.0.0.1:22", "127.0.0.1:80"]}]"#,
    );
    let path = config_file(
        dir.path(),
        "modules:\n  tcp_connect:\n    prober: tcp\n\
         file_sd:\n  - files: [tcp.json]\n    module: tcp_connect\n",
    );
    let c = config::load_with(&path, OPTS).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.targets[1].name, "127.0.0.1:80");
    assert_eq!(c.targets[1].module(), Some("tcp_connect"));

    write(
        &dir.path().join("tcp.json"),
        r#"[{"targets": ["no port"]}]"#,
    );
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("tcp.json") && e.contains("[0].targets[0]"),
        "{e}"
    );

    let path = config_file(
        dir.path(),
        "file_sd:\n  - files: [tcp.json]\n    module: nope\n",
    );
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("file_sd[0].module") && e.contains("no module named `nope`"),
        "{e}"
    );
}

#[test]
fn duplicates_are_errors_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.json"), &json_list(3, "a", 9));
    write(&dir.path().join("b.json"), &json_list(1, "b", 9));
    let path = config_file(dir.path(), "file_sd:\n  - files: [\"*.json\"]\n");
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("b.json")
            && e.contains("duplicate target `http://127.0.0.1:9/t0`")
            && e.contains("also listed in")
            && e.contains("a.json"),
        "{e}"
    );

    // A name taken by a `targets:` entry.
    std::fs::remove_file(dir.path().join("b.json")).unwrap();
    let path = config_file(
        dir.path(),
        "targets:\n  - name: \"http://127.0.0.1:9/t1\"\n    url: http://127.0.0.1:9/\n\
         file_sd:\n  - files: [\"*.json\"]\n",
    );
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("a.json") && e.contains("also defined at") && e.contains("watchfire.yaml:2"),
        "{e}"
    );
}

#[test]
fn bad_sections_and_files_are_errors_naming_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("file_sd:\n  - interval: 5s\n", "file_sd[0].files: missing"),
        (
            "file_sd:\n  - files: [\"*/x.json\"]\n",
            "file_sd[0].files[0]",
        ),
        (
            "file_sd:\n  - files: [x.txt]\n",
            "end in .json, .yaml or .yml",
        ),
        ("file_sd:\n  - files: [missing.json]\n", "missing.json"),
        (
            "file_sd:\n  - files: [a.json]\n    refresh_interval: 0s\n",
            "refresh_interval",
        ),
        (
            "file_sd:\n  - files: [a.json]\n    labels: { job: x }\n",
            "reserved",
        ),
    ];
    write(&dir.path().join("a.json"), &json_list(1, "a", 9));
    for (text, want) in cases {
        let path = config_file(dir.path(), text);
        let e = config::load_with(&path, OPTS).unwrap_err().to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    // A bad URL and a reserved label in a file name the file and the entry.
    write(&dir.path().join("a.json"), r#"[{"targets": ["ftp://x/"]}]"#);
    let path = config_file(dir.path(), "file_sd:\n  - files: [a.json]\n");
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(e.contains("a.json: [0].targets[0]: `ftp://x/`"), "{e}");
    write(
        &dir.path().join("a.json"),
        r#"[{"targets": ["http://127.0.0.1/"], "labels": {"target": "x"}}]"#,
    );
    let e = config::load_with(&path, OPTS).unwrap_err().to_string();
    assert!(
        e.contains("a.json: [0].labels.target") && e.contains("reserved"),
        "{e}"
    );
    // An empty list and an empty YAML file are no targets, not errors.
    write(&dir.path().join("a.json"), "[]");
    let c = config::load_with(&path, OPTS).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.targets.is_empty());
}

#[test]
fn a_truncated_file_on_first_load_is_an_error_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let full = json_list(5, "a", 9).replace(", ", ",\n");
    write(&dir.path().join("a.json"), &full[..full.len() / 2]);
    write(
        &dir.path().join("b.yaml"),
        "- targets: [\"http://127.0.0.1:9/y\"\n",
    );
    let path = config_file(dir.path(), "file_sd:\n  - files: [a.json, b.yaml]\n");
    let errs = config::load_with(&path, OPTS).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 2, "{text}");
    let a = &errs.0[0];
    assert!(
        a.file.ends_with("a.json") && a.line == 3 && a.column > 0,
        "{text}"
    );
    assert!(a.message.contains("EOF while parsing"), "{text}");
    let b = &errs.0[1];
    assert!(b.file.ends_with("b.yaml") && b.line > 0, "{text}");
}

#[test]
fn the_cache_keeps_unchanged_files_and_the_last_good_reading_of_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.json"), &json_list(100, "a", 9));
    write(&dir.path().join("b.json"), &json_list(10, "b", 10));
    let path = config_file(dir.path(), "file_sd:\n  - files: [\"*.json\"]\n");
    let mut cache = FileSdCache::default();
    let first = config::load_cached(&path, OPTS, &mut cache).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first.targets.len(), cache.len()), (110, 2));
    assert!(!config::file_sd::changed(&first.file_sd, &cache));

    // Unchanged: the very same specs.
    let again = config::load_cached(&path, OPTS, &mut cache).unwrap();
    assert_eq!(again.targets.len(), 110);
    assert!(first
        .targets
        .iter()
        .zip(&again.targets)
        .all(|(a, b)| Arc::ptr_eq(a, b)));

    // a.json half-written, b.json changed: a keeps its targets (reported), b's change applies.
    let full = json_list(100, "a", 9);
    write(&dir.path().join("a.json"), &full[..full.len() - 40]);
    write(&dir.path().join("b.json"), &json_list(11, "b", 10));
    assert!(config::file_sd::changed(&again.file_sd, &cache));
    let third = config::load_cached(&path, OPTS, &mut cache).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third.targets.len(), 111);
    assert!(again.targets[..100]
        .iter()
        .zip(&third.targets)
        .all(|(a, b)| Arc::ptr_eq(a, b)));
    assert_eq!(third.file_sd_stale.len(), 1);
    let e = &third.file_sd_stale[0];
    assert!(
        e.file.ends_with("a.json") && e.line == 1 && e.column > 0,
        "{e}"
    );

    // Fixed: read again (same values, new specs); a gone file drops its targets.
    write(&dir.path().join("a.json"), &full);
    std::fs::remove_file(dir.path().join("b.json")).unwrap();
    let fourth = config::load_cached(&path, OPTS, &mut cache).unwrap();
    assert_eq!((fourth.targets.len(), cache.len()), (100, 1));
    assert!(fourth.file_sd_stale.is_empty());
    assert!(!config::file_sd::changed(&fourth.file_sd, &cache));
}

#[test]
fn a_changed_section_reads_its_files_again() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.json"), &json_list(3, "a", 9));
    let path = config_file(
        dir.path(),
        "file_sd:\n  - files: [a.json]\n    interval: 60s\n",
    );
    let mut cache = FileSdCache::default();
    let first = config::load_cached(&path, OPTS, &mut cache).unwrap();
    config_file(
        dir.path(),
        "file_sd:\n  - files: [a.json]\n    interval: 30s\n",
    );
    let second = config::load_cached(&path, OPTS, &mut cache).unwrap();
    assert_eq!(first.targets[0].interval, Duration::from_secs(60));
    assert_eq!(second.targets[0].interval, Duration::from_secs(30));
}

fn probes(rt: &Runtime, name: &str) -> u64 {
    rt.target(name).unwrap().stats.lock().unwrap().probes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_keep_unchanged_targets_and_touch_only_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback: connection refused at once, every probe a quick failure.
    write(&dir.path().join("a.json"), &json_list(200, "a", 9));
    let path = config_file(
        dir.path(),
        "file_sd:\n  - files: [a.json]\n    interval: 20ms\n    timeout: 10ms\n",
    );
    let (rt, cancel) = start(&path).await;
    let first = "http://127.0.0.1:9/t0";
    eventually(Duration::from_secs(10), "t0 probed twice", || async {
        (probes(&rt, first) >= 2).then_some(())
    })
    .await;
    let before = rt.targets();
    let counted = probes(&rt, first);

    // Nothing changed: the running set itself is kept, counters run on.
    rt.reload().await.expect("unchanged reload");
    let after = rt.targets();
    assert!(Arc::ptr_eq(&before, &after), "the same target set");
    assert!(probes(&rt, first) >= counted, "counters not reset");
    assert!(rt.reload_status().ok);

    // One target of 200 changed (t7 now on another port): only it is new.
    let text = json_list(200, "a", 9).replace("127.0.0.1:9/t7\"", "127.0.0.1:19/t7\"");
    write(&dir.path().join("a.json"), &text);
    rt.reload().await.expect("reload with one change");
    let next = rt.targets();
    assert_eq!(next.len(), 200);
    let mut fresh = Vec::new();
    for t in next.iter() {
        match before.iter().find(|o| o.spec.name == t.spec.name) {
            Some(o) => assert!(Arc::ptr_eq(o, t), "{} kept", t.spec.name),
            None => fresh.push(t.spec.name.clone()),
        }
    }
    assert_eq!(fresh, ["http://127.0.0.1:19/t7"]);
    assert!(rt.target("http://127.0.0.1:9/t7").is_none());

    // Half-written: the reload keeps every target, fails, and says which file and where.
    let kept = rt.targets();
    write(&dir.path().join("a.json"), &text[..text.len() / 2]);
    let e = rt
        .reload()
        .await
        .expect_err("a broken file fails the reload");
    assert!(
        e.contains("a.json:1:") && e.contains("kept their previous targets"),
        "{e}"
    );
    let now = rt.targets();
    assert_eq!(now.len(), 200);
    assert!(
        kept.iter().zip(now.iter()).all(|(a, b)| Arc::ptr_eq(a, b)),
        "every target kept"
    );
    let st = rt.reload_status();
    assert!(!st.ok && st.failures == 1, "{st:?}");
    cancel.cancel();
}

#[test]
fn check_validates_file_sd_files() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("a.json"), &json_list(4, "a", 9));
    let path = config_file(dir.path(), "file_sd:\n  - files: [a.json]\n");
    let bin = env!("CARGO_BIN_EXE_watchfire");
    let out = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("OK (4 targets"), "{stdout}");

    write(
        &dir.path().join("a.json"),
        "[{\"targets\": [\"http://x/\",\n",
    );
    let out = std::process::Command::new(bin)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("a.json:2:") && stdout.contains("EOF while parsing"),
        "{stdout}"
    );
}

/// Replaces `path` atomically: the new content written beside it, then renamed over it.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("json.tmp");
    write(&tmp, text);
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_running(rt: &Runtime, want: &[String]) {
    let what = format!("the running targets to be {want:?}");
    eventually(Duration::from_secs(10), &what, || async {
        (running(rt) == want).then_some(())
    })
    .await;
}

fn urls(ids: &[usize], port: u16) -> Vec<String> {
    let mut v: Vec<String> = ids
        .iter()
        .map(|i| format!("http://127.0.0.1:{port}/t{i}"))
        .collect();
    v.sort();
    v
}

fn list(ids: &[usize], port: u16) -> String {
    let quoted: Vec<String> = urls(ids, port).iter().map(|u| format!("\"{u}\"")).collect();
    format!("[{{\"targets\": [{}]}}]", quoted.join(", "))
}

/// The watch (no reload asked): targets added, changed and removed by renaming a new file
/// over the old one, and by writing the file in place in two steps (truncated and half
/// written, then complete) — the half-written state keeps the running targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_applies_atomic_and_half_written_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.json");
    write(&file, &list(&[0, 1, 2], 9));
    let path = config_file(
        dir.path(),
        "file_sd:\n  - files: [a.json]\n    refresh_interval: 1s\n    interval: 1s\n",
    );
    let (rt, cancel) = start(&path).await;
    assert_eq!(running(&rt), urls(&[0, 1, 2], 9));

    // Added (t3), by rename.
    replace_atomically(&file, &list(&[0, 1, 2, 3], 9));
    wait_running(&rt, &urls(&[0, 1, 2, 3], 9)).await;
    let t0 = rt.target("http://127.0.0.1:9/t0").unwrap();

    // Changed (every target on another port) and removed (t3), by rename.
    replace_atomically(&file, &list(&[0, 1, 2], 19));
    wait_running(&rt, &urls(&[0, 1, 2], 19)).await;
    // Then back to port 9, t0 a new object (its probe changed twice).
    replace_atomically(&file, &list(&[0, 1, 2], 9));
    wait_running(&rt, &urls(&[0, 1, 2], 9)).await;
    assert!(!Arc::ptr_eq(
        &t0,
        &rt.target("http://127.0.0.1:9/t0").unwrap()
    ));

    // Half-written in place: truncated, then a partial write. The reload fails and every
    // running target stays; completing the file applies it.
    let kept = rt.targets();
    let failures = rt.reload_status().failures;
    let full = list(&[0, 1, 4], 9);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        f.sync_all().unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the half-written file seen",
        || async { (rt.reload_status().failures > failures).then_some(()) },
    )
    .await;
    let st = rt.reload_status();
    assert!(!st.ok, "{st:?}");
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("a.json:1:"),
        "{st:?}"
    );
    let now = rt.targets();
    assert!(
        kept.len() == now.len() && kept.iter().zip(now.iter()).all(|(a, b)| Arc::ptr_eq(a, b)),
        "every running target kept"
    );
    write(&file, &full);
    wait_running(&rt, &urls(&[0, 1, 4], 9)).await;
    assert!(rt.reload_status().ok);
    cancel.cancel();
}
