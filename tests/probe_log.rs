//! `--log.prober` (blackbox_exporter 0.28's rule): the probe log keeps the lines at the flag's
//! level and above, and those same lines are what `/probe?debug=true` shows and what the
//! binary writes to stderr; `Probe failed` is an error, a redirect is info, each step is debug.

mod common;
#[path = "common/blackbox.rs"]
mod harness;
#[path = "common/running.rs"]
mod running;

use harness::{enc, get, Scenarios, Watchfire};
use running::{Running, BIN};
use watchfire::probers::Level;

/// `http_2xx`, and `want_204`, which a redirect to a 200 fails.
const YAML: &str = "modules:
  http_2xx:
    prober: http
    timeout: 5s
  want_204:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [204]
";

/// The log part of a `debug=true` answer, one entry per line.
fn log_of(body: &str) -> Vec<String> {
    let (log, _) = body
        .split_once("\n\n\n\nMetrics that would have been returned:\n")
        .unwrap_or_else(|| panic!("no metrics part in {body}"));
    let log = log
        .strip_prefix("Logs for the probe:")
        .unwrap_or_else(|| panic!("no log header in {body}"));
    log.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The levels of the lines, in order, and each line's message.
fn levels(lines: &[String]) -> Vec<(&str, &str)> {
    lines
        .iter()
        .map(|l| {
            let rest = l
                .split_once(" level=")
                .unwrap_or_else(|| panic!("no level in {l:?}"))
                .1;
            rest.split_once(' ').unwrap_or((rest, ""))
        })
        .collect()
}

#[tokio::test]
async fn each_level_shows_exactly_its_lines_in_debug_output() {
    let s = Scenarios::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, YAML).expect("write config");
    let wf = Watchfire::start(&path).await;
    assert_eq!(
        wf.runtime.blackbox().log_level(),
        Level::Info,
        "the default"
    );
    // One redirect, then a 200 where a 204 is wanted: debug, info and error lines in one probe.
    let target = enc(&s.url("/redirect-abs/1")).to_string();
    let mut seen = Vec::new();
    for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
        wf.runtime.blackbox().set_log_level(level);
        let r = get(
            wf.addr,
            &format!("/probe?module=want_204&debug=true&target={target}"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let lines = log_of(&r.body);
        let got = levels(&lines);
        for (l, msg) in &got {
            let at: Level = match *l {
                "debug" => Level::Debug,
                "info" => Level::Info,
                "warn" => Level::Warn,
                "error" => Level::Error,
                other => panic!("unknown level {other} in {msg}"),
            };
            assert!(at >= level, "{l} line under --log.prober={level}: {msg}");
        }
        seen.push(
            got.iter()
                .map(|(l, m)| format!("{l} {}", m.split(' ').next().unwrap_or("")))
                .collect::<Vec<_>>(),
        );
        let has = |lvl: &str, what: &str| got.iter().any(|(l, m)| *l == lvl && m.contains(what));
        assert_eq!(
            has("debug", "Beginning probe"),
            level == Level::Debug,
            "{lines:?}"
        );
        assert_eq!(
            has("debug", "Making HTTP request"),
            level == Level::Debug,
            "{lines:?}"
        );
        assert_eq!(
            has("info", "Received redirect"),
            level <= Level::Info,
            "{lines:?}"
        );
        assert!(
            has("error", "Invalid HTTP response status code"),
            "{lines:?}"
        );
        assert!(has("error", "Probe failed"), "{lines:?}");
    }
    // At error exactly the two error lines are left.
    assert_eq!(seen[3].len(), 2, "{:?}", seen[3]);
    // warn shows what error shows (no line of the HTTP prober is a warning).
    assert_eq!(seen[2], seen[3]);
    assert!(
        seen[0].len() > seen[1].len() && seen[1].len() > seen[2].len(),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_successful_probe_at_info_keeps_no_line() {
    let s = Scenarios::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, YAML).expect("write config");
    let wf = Watchfire::start(&path).await;
    let target = enc(&s.url("/body/ok")).to_string();
    let r = get(
        wf.addr,
        &format!("/probe?module=http_2xx&debug=true&target={target}"),
        &[],
    )
    .await;
    assert!(r.body.contains("\nprobe_success 1\n"), "{}", r.body);
    assert_eq!(log_of(&r.body), Vec::<String>::new(), "{}", r.body);
}

/// The binary as the exporter with `--log.prober LEVEL`, its stderr lines read on a thread.
fn exporter(config: &std::path::Path, prober_level: &str) -> Running {
    let config = config.to_str().expect("a UTF-8 path");
    Running::start(
        std::path::Path::new(BIN),
        &[
            "--config.file",
            config,
            "--web.listen-address=127.0.0.1:0",
            "--log.prober",
            prober_level,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_has_the_probe_lines_of_the_level() {
    let s = Scenarios::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blackbox.yml");
    std::fs::write(&path, YAML).expect("write config");
    let target = enc(&s.url("/redirect-abs/1")).to_string();
    let mut found = Vec::new();
    for level in ["debug", "info"] {
        let mut w = exporter(&path, level);
        let addr = w.addr();
        let r = get(
            addr,
            &format!("/probe?module=want_204&target={target}"),
            &[],
        )
        .await;
        assert!(r.body.contains("probe_success 0"), "{}", r.body);
        // "Probe failed" is the probe's last line: every line of the probe is out by then.
        let failed = w.wait_line("msg=\"Probe failed");
        assert!(failed.contains(" level=error "), "{failed}");
        assert!(failed.contains("module=want_204"), "{failed}");
        assert!(failed.contains("target=http://127.0.0.1:"), "{failed}");
        let probe_lines: Vec<String> = w
            .seen
            .iter()
            .filter(|l| l.contains("module=want_204"))
            .cloned()
            .collect();
        found.push(probe_lines);
    }
    let has = |lines: &[String], lvl: &str, what: &str| {
        lines
            .iter()
            .any(|l| l.contains(&format!("level={lvl} ")) && l.contains(what))
    };
    let (debug, info) = (&found[0], &found[1]);
    assert!(has(debug, "debug", "Beginning probe"), "{debug:#?}");
    assert!(has(debug, "info", "Received redirect"), "{debug:#?}");
    assert!(!has(info, "debug", ""), "no debug line at info: {info:#?}");
    assert!(has(info, "info", "Received redirect"), "{info:#?}");
    assert!(
        has(info, "error", "Invalid HTTP response status code"),
        "{info:#?}"
    );
}
