//! A config that cannot crash watchfire or make it vanish (issue #12, findings 3 and 4): deeply
//! nested CEL refused by `check` and by a reload (no stack overflow, the old config kept), an
//! endless file refused within a bound, an empty or comment-only config refused on start and on
//! reload unless `--allow-empty-config`, and the YAML size limits reported in plain words.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, get, sample};

const BIN: &str = env!("CARGO_BIN_EXE_watchfire");

/// A module whose CEL expression nests `depth` brackets.
fn deep_cel_config(depth: usize) -> String {
    format!(
        "modules:\n  cel:\n    prober: http\n    http:\n      fail_if_body_json_not_matches_cel: '{}1{} == body'\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

const GOOD: &str = "modules:\n  http_2xx:\n    prober: http\n";

fn check(path: &Path, extra: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(BIN)
        .arg("check")
        .args(extra)
        .arg("--config")
        .arg(path)
        .output()
        .expect("watchfire check runs");
    (out, t.elapsed())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `watchfire run` on a free port, stopped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.0.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -HUP failed");
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

fn run(config: &Path, extra: &[&str]) -> (Running, SocketAddr) {
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "run",
            "--storage.memory",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watchfire starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "watchfire is running" {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watchfire logs its address");
    (Running(child), addr.parse().expect("address"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn check_refuses_30000_nested_brackets_in_cel_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    for depth in [30_000, 10_000] {
        let p = write(dir.path(), "deep.yml", &deep_cel_config(depth));
        let (out, took) = check(&p, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "an error, not a crash: {all}");
        assert!(all.contains("nests more than 32 levels"), "{all}");
        assert!(all.contains("fail_if_body_json_not_matches_cel"), "{all}");
        assert!(
            took < Duration::from_secs(10),
            "depth {depth} took {took:?}"
        );
    }
}

#[test]
fn check_of_an_endless_file_ends_with_a_clear_error() {
    let (out, took) = check(Path::new("/dev/zero"), &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("larger than 32 MiB"), "{all}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn check_refuses_an_empty_or_comment_only_config_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in [
        ("empty.yml", ""),
        ("comments.yml", "# all\n# commented out\n"),
    ] {
        let p = write(dir.path(), name, body);
        let (out, _) = check(&p, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            all.contains(name) && all.contains("the config is empty"),
            "{all}"
        );
        let (out, _) = check(&p, &["--allow-empty-config"]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // A directory names its files.
    let d = dir.path().join("conf.d");
    std::fs::create_dir(&d).unwrap();
    write(&d, "a.yaml", "# a\n");
    write(&d, "b.yaml", "");
    let (out, _) = check(&d, &[]);
    let all = text(&out);
    assert!(all.contains("a.yaml") && all.contains("b.yaml"), "{all}");
}

#[test]
fn run_refuses_an_empty_config_at_start_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "empty.yml", "# nothing yet\n");
    let out = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("the config is empty"), "{}", text(&out));
    let (_w, addr) = run(&p, &["--allow-empty-config"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, _) = rt.block_on(get(addr, "/-/healthy"));
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_deep_cel_and_an_empty_config_keeping_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "blackbox.yml", GOOD);
    let (mut w, addr) = run(&p, &[]);
    let probe = "/probe?target=127.0.0.1:1&module=http_2xx";
    for (what, bad) in [
        ("30,000 nested brackets", deep_cel_config(30_000)),
        ("an empty config", String::new()),
        (
            "a comment-only config",
            "# everything commented out\n".into(),
        ),
    ] {
        std::fs::write(&p, &bad).unwrap();
        let before = get(addr, "/metrics").await.1;
        let failures = sample(
            &before,
            "watchfire_config_reloads_total{result=\"failure\"}",
        );
        w.hup();
        eventually(Duration::from_secs(10), what, || async {
            let (_, m) = get(addr, "/metrics").await;
            let now = sample(&m, "watchfire_config_reloads_total{result=\"failure\"}");
            (now > failures && sample(&m, "watchfire_config_last_reload_successful") == Some(0.0))
                .then_some(())
        })
        .await;
        assert!(w.alive(), "watchfire is still running after {what}");
        let (status, body) = get(addr, probe).await;
        assert_eq!(
            status, 200,
            "the old module still answers after {what}: {body}"
        );
    }
}

#[test]
fn a_file_with_40000_targets_loads() {
    let mut yaml = String::from("targets:\n");
    for i in 0..40_000 {
        yaml.push_str(&format!(
            "  - name: t{i}\n    url: http://127.0.0.1:9/{i}\n    interval: 30s\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "big.yml", &yaml);
    let (out, _) = check(&p, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("40000 targets"), "{}", text(&out));
}

#[test]
fn yaml_limits_are_reported_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = String::from("memory:\n");
    for i in 0..70 {
        deep.push_str(&format!("{}k{i}:\n", "  ".repeat(i + 1)));
    }
    let flow = format!("targets: {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
    for (name, text_of_file) in [("deep.yml", deep), ("flow.yml", flow)] {
        let p = write(dir.path(), name, &text_of_file);
        let (out, _) = check(&p, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("nested more than 64 levels"), "{all}");
        for library_word in ["budget", "max_depth", "Breach", "Depth {", "recursion"] {
            assert!(!all.contains(library_word), "{library_word} in: {all}");
        }
    }
}

#[test]
fn deeply_nested_regexps_are_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let re = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let cfg = format!(
        "modules:\n  re:\n    prober: http\n    http:\n      fail_if_body_matches_regexp: ['{re}']\n"
    );
    let p = write(dir.path(), "re.yml", &cfg);
    let (out, took) = check(&p, &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("nests more than 100 levels"), "{all}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}
