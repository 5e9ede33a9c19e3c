//! End-to-end tests with real external programs (`cargo test --features e2e`; `.ci/run` installs
//! them). A missing program fails the test loudly: these tests never pass by skipping.
#![cfg(feature = "e2e")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, get};
use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{program} is not installed: the e2e tests need it (run .ci/run, or apt-get install prometheus)");
}

/// A live `/metrics` scrape, with healthy, failing and never-decided targets, passes
/// `promtool check metrics` with no lint complaint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_pass_promtool_check_metrics() {
    require("promtool");
    let gw = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let base = format!("http://{}", gw.local_addr());
    let yaml = format!(
        "defaults:\n  interval: 50ms\n  timeout: 40ms\ntargets:\n  - name: health\n    url: {base}/health\n    labels: {{ env: \"prod \\\"eu\\\"\" }}\n    expect: {{ json: {{ status: healthy }} }}\n  - name: predict\n    url: {base}/predict\n    method: POST\n    body_json: {{ data: [[1, 2, 3, 4]] }}\n  - name: missing\n    url: {base}/missing\n  - name: refused\n    url: http://127.0.0.1:1/\n  - name: later\n    url: {base}/health\n    interval: 1h\n    timeout: 1s\n"
    );
    let cfg = watchfire::config::load_str("e2e.yaml", &yaml).expect("config");
    let cancel = CancellationToken::new();
    let runtime = Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = common::serve(listener, &runtime, &cancel);
    let metrics = eventually(
        Duration::from_secs(10),
        "every fast target decided",
        || async {
            let (_, m) = get(addr, "/metrics").await;
            let decided = ["health", "predict", "missing", "refused"]
                .iter()
                .all(|t| m.contains(&format!("watchfire_target_up{{target=\"{t}\"")));
            decided.then_some(m)
        },
    )
    .await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}\n--- scrape ---\n{metrics}"
    );
    cancel.cancel();
    srv.await.unwrap().unwrap();
    gw.shutdown().await;
}
