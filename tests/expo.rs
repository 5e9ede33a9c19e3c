//! Every `/metrics` writer escapes label values: a value holding `"`, `\` and a newline comes out
//! as `\"`, `\\` and `\n`, whoever wrote it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use watchfire::config::{self, FailoverGroup, Hooks, Instance, ProxyConfig};
use watchfire::expo::catalog;
use watchfire::memory::{Failure, Problem};
use watchfire::runtime::{Runtime, RuntimeOptions};

/// A value that needs every escape.
const NASTY: &str = "a\"b\\c\nd";
/// [`NASTY`] escaped.
const ESCAPED: &str = "a\\\"b\\\\c\\nd";

/// Every line of `text` that starts with `name{` (or `name ` when unlabelled).
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .collect()
}

#[tokio::test]
async fn target_label_values_are_escaped_on_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watchfire.yaml");
    std::fs::write(
        &path,
        "targets:\n  - name: t\n    url: http://127.0.0.1:9/\n    interval: 1h\n    labels: { note: \"a\\\"b\\\\c\\nd\" }\nmetrics:\n  detail: full\n",
    )
    .unwrap();
    let cfg = config::load(&path).expect("config loads");
    let cancel = CancellationToken::new();
    let rt = Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
        .await
        .expect("runtime starts");
    let body = watchfire::server::metrics_body(&rt, &prometheus::Registry::new());
    // Whatever a probe may have done meanwhile, every per-target series carries the labels (at
    // `detail: full`, so that every per-target family is there).
    let labels = format!("{{target=\"t\",note=\"{ESCAPED}\"");
    for f in [
        catalog::TARGET_STATE,
        catalog::PROBES_TOTAL,
        catalog::PROBES_SKIPPED,
    ] {
        let lines = series(&body, f.name);
        assert!(!lines.is_empty(), "{}\n{body}", f.name);
        for l in lines {
            assert!(l.starts_with(&format!("{}{labels}", f.name)), "{l}");
        }
    }
    let bucket = format!(
        "{}_bucket{labels},le=\"+Inf\"}} ",
        catalog::PROBE_DURATION.name
    );
    assert!(
        body.lines().any(|l| l.starts_with(&bucket)),
        "{bucket}\n{body}"
    );
    cancel.cancel();
}

fn group(name: &str, authority: &str) -> FailoverGroup {
    FailoverGroup {
        name: name.to_string(),
        instances: vec![Instance {
            base: format!("http://{authority}"),
            authority: authority.to_string(),
            host: "127.0.0.1".to_string(),
            port: 9,
            target: format!("{name}/0"),
        }],
        auto_failback: true,
        hold: Duration::ZERO,
        min_switch_interval: Duration::ZERO,
        dampening: watchfire::config::Dampening {
            window: Duration::ZERO,
            max_hold: Duration::ZERO,
        },
        proxy: Some(ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_in_flight: 1,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            preserve_host: false,
            retry_after: Duration::from_secs(1),
            web_config: false,
        }),
        hooks: Hooks::default(),
    }
}

#[test]
fn failover_and_proxy_label_values_are_escaped() {
    let g =
        watchfire::failover::Group::new(group(NASTY, NASTY), Vec::new(), CancellationToken::new());
    let mut out = String::new();
    watchfire::failover::render(
        &[Arc::clone(&g)],
        &mut watchfire::expo::Writer::new(&mut out),
    );
    let want = format!(
        "{}{{group=\"{ESCAPED}\",instance=\"{ESCAPED}\"}} 0",
        catalog::FAILOVER_ACTIVE.name
    );
    assert!(out.lines().any(|l| l == want), "{want}\n{out}");
    for f in [
        catalog::FAILOVER_AVAILABLE,
        catalog::FAILOVER_PRIMARY_ACTIVE,
        catalog::FAILOVER_TRANSITIONS,
        catalog::FAILOVER_PASSIVE_FAILURES,
        catalog::PROXY_RETRIES,
        catalog::PROXY_IN_FLIGHT,
    ] {
        let lines = series(&out, f.name);
        assert!(!lines.is_empty(), "{}\n{out}", f.name);
        for l in lines {
            assert!(
                l.starts_with(&format!("{}{{group=\"{ESCAPED}\"", f.name)),
                "{l}"
            );
        }
    }
    let bucket = format!(
        "{}_bucket{{group=\"{ESCAPED}\",le=\"+Inf\"}} 0",
        catalog::PROXY_REQUEST_DURATION.name
    );
    assert!(out.lines().any(|l| l == bucket), "{bucket}\n{out}");
}

#[test]
fn memory_container_names_are_escaped() {
    let gone = Failure {
        problem: Problem::Gone,
        detail: "no such cgroup".to_string(),
    };
    let mut out = String::new();
    watchfire::memory::render(
        &[(NASTY.to_string(), Some(Err(gone)))],
        &mut watchfire::expo::Writer::new(&mut out),
    );
    let want = format!(
        "{}{{container=\"{ESCAPED}\"}} 0",
        catalog::MEMORY_WATCH_UP.name
    );
    assert!(out.lines().any(|l| l == want), "{want}\n{out}");
    let want = format!(
        "{}{{container=\"{ESCAPED}\",status=\"gone\"}} 1",
        catalog::MEMORY_WATCH_STATUS.name
    );
    assert!(out.lines().any(|l| l == want), "{want}\n{out}");
}

#[test]
fn families_escape_label_values() {
    let mut f = watchfire::expo::Families::new();
    f.set(
        "probe_x",
        "X",
        watchfire::expo::Type::Gauge,
        &[("v", NASTY)],
        1.0,
    );
    let mut out = String::new();
    f.render(&mut out);
    assert!(
        out.ends_with(&format!("probe_x{{v=\"{ESCAPED}\"}} 1\n")),
        "{out}"
    );
}
