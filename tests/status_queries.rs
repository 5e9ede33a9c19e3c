//! The status page's cost does not grow with its components: every view makes the same number
//! of store calls ([`watchfire::status::QUERIES_PER_VIEW`]) for 3 components as for 400, and a
//! failover group's bars come from the group's own rollups.

use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::status::{self, History, QUERIES_PER_VIEW, ROLLUP_QUERIES_PER_VIEW};
use watchfire::store::{now_millis, GroupRollup, Millis, Rollup, Write};

const DAY: Millis = 86_400_000;

/// `n` targets and one failover group of two instances, all on a closed loopback port and
/// probed once an hour (out of the way).
fn yaml(n: usize) -> String {
    let mut y = String::from("targets:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: svc-{i:04}\n    url: http://127.0.0.1:9/health\n    interval: 1h\n"
        ));
    }
    y.push_str(
        "failover:\n  - name: gw\n    instances: [http://127.0.0.1:9, http://127.0.0.1:10]\n    \
         check: { path: /health, interval: 1h, timeout: 1s }\n",
    );
    y
}

async fn runtime(n: usize, cancel: &CancellationToken) -> std::sync::Arc<Runtime> {
    let cfg = watchfire::config::load_str("queries.yaml", &yaml(n)).expect("config");
    let opts = RuntimeOptions {
        precise_timer: false,
        ..RuntimeOptions::default()
    };
    Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime")
}

/// 90 days of rows for every target, each instance and the group: the instances were each
/// down an hour yesterday at different times, the group (no instance up) 10 minutes.
async fn fill(rt: &Runtime, n: usize, now: Millis) {
    let store = rt.store();
    let today = now - now.rem_euclid(DAY);
    let mut names: Vec<String> = (0..n).map(|i| format!("svc-{i:04}")).collect();
    names.extend(["gw/0".to_string(), "gw/1".to_string()]);
    for d in 0..90 {
        let start = today - d * DAY;
        for t in &names {
            let down_ms = if d == 1 && t.starts_with("gw/") {
                3_600_000
            } else {
                0
            };
            store.write(Write::Minute(Rollup {
                target: t.clone(),
                start,
                probes: 24,
                down_ms,
                ..Rollup::default()
            }));
        }
        store.write(Write::GroupMinute(GroupRollup {
            group: "gw".into(),
            start,
            observed_ms: DAY,
            down_ms: if d == 1 { 600_000 } else { 0 },
            ..GroupRollup::default()
        }));
    }
    store.flush().await;
}

/// Store calls one view makes (the cached past days read beforehand).
async fn calls(rt: &Runtime, history: History) -> u64 {
    let now = now_millis();
    status::view(rt, now, history).await.expect("warm view");
    let before = rt.store().calls();
    let v = status::view(rt, now, history).await.expect("view");
    let made = rt.store().calls() - before;
    if history == History::Read {
        let gw = v.find("gw").expect("the group's component");
        assert_eq!(gw.days[88].down_ms, 600_000, "from the group's rollups");
        assert_eq!(gw.days[88].probes, 48, "probes of both instances");
    }
    made
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_makes_the_same_store_calls_for_3_components_as_for_400() {
    let cancel = CancellationToken::new();
    let mut seen = Vec::new();
    for n in [3, 400] {
        let rt = runtime(n, &cancel).await;
        fill(&rt, n, now_millis()).await;
        let page = calls(&rt, History::Read).await;
        let summary = calls(&rt, History::Skip).await;
        seen.push((n, page, summary));
    }
    cancel.cancel();
    let expect_page = QUERIES_PER_VIEW as u64;
    let expect_summary = (QUERIES_PER_VIEW - ROLLUP_QUERIES_PER_VIEW) as u64;
    for (n, page, summary) in seen {
        assert_eq!(page, expect_page, "{n} components: the page");
        assert_eq!(summary, expect_summary, "{n} components: the summary");
    }
}
