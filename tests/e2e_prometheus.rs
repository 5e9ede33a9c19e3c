//! The chain from probe and cgroup file to page, with the real programs (`cargo test --features
//! e2e --test e2e_prometheus`; `.ci/run` installs them): a real Prometheus loads the shipped rules
//! (a test copy with every `for:` shortened) and scrapes an in-process watchfire, which probes
//! two in-process sims and reads a cgroup v2 fixture; a real Alertmanager delivers to a webhook
//! receiver inside this test.
//!
//! - a memory fixture crossing 0.85 of its limit makes the runbook's ratio return the exact value
//!   through Prometheus' query API, and `HighMemoryUsage` fire; the memory families pass
//!   `promtool check metrics`;
//! - killing the primary sim makes Prometheus report `ServiceDown` (and `FailoverActive`)
//!   firing, and Alertmanager deliver `ServiceDown` to the webhook;
//! - every dashboard panel's PromQL parses and returns data; every variable has values;
//! - the compose stack's Prometheus and Alertmanager configs pass `promtool check config` and
//!   `amtool check-config`.
//!
//! Missing programs fail the test loudly; it never passes by skipping. Loopback only, ports from
//! 127.0.0.1:0, deadlines instead of sleeps, child processes killed by drop guards.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/procs.rs"]
mod procs;
use procs::{free_port, require, Proc};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};

/// The memory limit of the fixture container: 1 GiB.
const LIMIT: u64 = 1 << 30;

/// GET `path` and parse the JSON answer.
async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = common::get(addr, path).await;
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, v)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An instant query: Ok(result vector) or Err(Prometheus' error, e.g. a parse error).
async fn query(prom: SocketAddr, q: &str) -> Result<Vec<Value>, String> {
    let (status, v) = get_json(prom, &format!("/api/v1/query?query={}", enc(q))).await;
    if status != 200 || v["status"] != "success" {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The value of a one-element instant-query result.
fn value_of(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// Names of the alerts Prometheus reports firing.
async fn firing(prom: SocketAddr) -> Vec<String> {
    let (_, v) = get_json(prom, "/api/v1/alerts").await;
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect()
}

/// A tiny webhook receiver: every POSTed JSON body is kept.
async fn webhook(cancel: CancellationToken) -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let addr = listener.local_addr().expect("webhook address");
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            };
            let store = store.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            if let Ok(v) =
                                serde_json::from_slice::<Value>(&body.unwrap_or_default())
                            {
                                store.lock().expect("webhook store").push(v);
                            }
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

/// Polls `check` until it returns `Some`, or panics with `what` and the processes' logs.
async fn until<T, F, Fut>(limit: Duration, what: &str, procs: &[&Proc], mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = procs.iter().map(|p| p.tail()).collect();
            panic!(
                "timed out after {limit:?} waiting for {what}; last: {last}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a cgroup v2 memory directory.
fn cgroup_v2(dir: &Path, current: u64) {
    std::fs::create_dir_all(dir).expect("fixture dir");
    let write = |name: &str, text: String| {
        // Write-and-rename so the reader never sees a half-written file.
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("fixture file");
        std::fs::rename(&tmp, dir.join(name)).expect("fixture rename");
    };
    write("memory.current", format!("{current}\n"));
    write("memory.max", format!("{LIMIT}\n"));
    write(
        "memory.stat",
        format!(
            "anon {}\nfile 1048576\ninactive_file 1048576\n",
            current / 2
        ),
    );
    write(
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n".into(),
    );
}

/// The shipped rules with every `for:` shortened to 1s and groups evaluated every second (the
/// shipped files stay as they are).
fn fast_rules(into: &Path) -> usize {
    std::fs::create_dir_all(into).expect("rules dir");
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts");
    let mut n = 0;
    for e in std::fs::read_dir(&alerts).expect("alerts/") {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("rule file");
        let mut doc: Value = serde_saphyr::from_str(&text).expect("rule YAML");
        for g in doc["groups"].as_array_mut().expect("groups") {
            g["interval"] = Value::from("1s");
            for r in g["rules"].as_array_mut().expect("rules") {
                if r.get("for").is_some() {
                    r["for"] = Value::from("1s");
                }
                n += 1;
            }
        }
        // JSON is YAML: Prometheus reads it as a rule file.
        std::fs::write(
            into.join(p.file_name().expect("name")),
            serde_json::to_string_pretty(&doc).expect("JSON"),
        )
        .expect("write the test rules");
    }
    n
}

/// watchfire's memory families, as scraped, pass `promtool check metrics` without a complaint.
async fn lint_memory_families(wf: SocketAddr) {
    use std::io::Write as _;
    let (_, text) = common::get(wf, "/metrics").await;
    let family = |l: &str| {
        let name = l
            .strip_prefix("# HELP ")
            .or_else(|| l.strip_prefix("# TYPE "))
            .unwrap_or(l);
        name.starts_with("container_") || name.starts_with("watchfire_memory_")
    };
    let memory: String = text
        .lines()
        .filter(|l| family(l))
        .map(|l| format!("{l}\n"))
        .collect();
    for name in watchfire::memory::METRIC_NAMES {
        assert!(
            memory.contains(&format!("# TYPE {name} ")),
            "{name} in:\n{memory}"
        );
    }
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
        .expect("stdin")
        .write_all(memory.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics complained:\n{said}\n--- memory families ---\n{memory}"
    );
}

/// (panel title, PromQL) and (metric, label) of a variable's `label_values`.
type Queries = (Vec<(String, String)>, Vec<(String, String)>);

/// Every panel query of the shipped dashboards, with Grafana's variables filled in.
fn dashboard_queries() -> Queries {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut panels = Vec::new();
    let mut variables = Vec::new();
    for e in std::fs::read_dir(&dir).expect("dashboards/") {
        let p = e.expect("entry").path();
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("dashboard")).expect("JSON");
        let mut stack: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
        while let Some(panel) = stack.pop() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", "10s")
                    .replace("$__interval", "2s")
                    .replace("$target", ".*")
                    .replace("$group", ".*")
                    .replace("$container", ".*");
                panels.push((panel["title"].as_str().unwrap_or("?").to_string(), expr));
            }
            stack.extend(panel["panels"].as_array().into_iter().flatten());
        }
        for v in d["templating"]["list"].as_array().expect("variables") {
            if let Some(q) = v["query"]["query"].as_str() {
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .expect("label_values(metric, label)");
                let (metric, label) = inner.split_once(',').expect("metric, label");
                variables.push((metric.trim().to_string(), label.trim().to_string()));
            }
        }
    }
    assert!(panels.len() > 15, "{panels:?}");
    (panels, variables)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_service_down_alertmanager_delivers_and_every_panel_has_data() {
    for p in ["prometheus", "promtool", "prometheus-alertmanager"] {
        require(p);
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let cancel = CancellationToken::new();

    // The gateway, its backup, and the gateway container's memory (50% of its limit).
    let gw = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .expect("sim");
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .expect("backup sim");
    let cgroup = dir.join("cgroup/inference-gateway");
    cgroup_v2(&cgroup, LIMIT / 2);

    // watchfire, in-process, at `metrics: { detail: full }`: the dashboard's HDR and last-phase
    // panels need it (the rest work at the default level; tests/e2e_fleet.rs scrapes that).
    let (g, b) = (gw.local_addr(), backup.local_addr());
    let proxy_port = free_port();
    let config_path = dir.join("watchfire.yaml");
    std::fs::write(
        &config_path,
        format!(
            "defaults:\n  interval: 200ms\n  timeout: 150ms\n  down_after: 2\n  up_after: 1\n  labels: {{ service: inference-gateway }}\n\
             targets:\n  - name: gateway-health\n    url: http://{g}/health\n    expect: {{ status: [200], json: {{ status: healthy }} }}\n\
             \x20 - name: gateway-predict\n    url: http://{g}/predict\n    method: POST\n    body_json: {{ data: [[1, 2, 3, 4]] }}\n\
             failover:\n  - name: inference-gateway\n    instances: [http://{g}, http://{b}]\n    check: {{ path: /health, interval: 200ms, timeout: 150ms }}\n    down_after: 2\n    up_after: 1\n    proxy: {{ listen: 127.0.0.1:{proxy_port} }}\n\
             memory:\n  - name: inference-gateway\n    cgroup: {}\n\
             metrics:\n  detail: full\n",
            cgroup.display()
        ),
    )
    .expect("watchfire config");
    let config = watchfire::config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::start(
        config,
        Some(config_path.clone()),
        RuntimeOptions::default(),
        cancel.clone(),
    )
    .await
    .expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind watchfire");
    let wf = listener.local_addr().expect("watchfire address");
    let srv = common::serve(listener, &runtime, &cancel);

    // The webhook receiver and Alertmanager.
    let (hook, delivered) = webhook(cancel.clone()).await;
    let am_port = free_port();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: test\n    webhook_configs:\n      - url: http://{hook}/hook\n        send_resolved: true\n"
        ),
    )
    .expect("alertmanager config");
    let am = Proc::spawn(
        "alertmanager",
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", dir.join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
            "--log.level=warn".into(),
        ],
        dir,
    );

    // Prometheus with the shipped rules (fast copy), scraping watchfire and both gateways.
    let rules = fast_rules(&dir.join("rules"));
    assert!(rules >= 15, "{rules} rules");
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files: ['{rules}/*.yml']\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{ targets: ['127.0.0.1:{am_port}'] }}]\n\
             scrape_configs:\n\
             \x20 - job_name: watchfire\n    static_configs: [{{ targets: ['{wf}'] }}]\n\
             \x20 - job_name: inference-gateway\n    static_configs: [{{ targets: ['{g}'] }}]\n\
             \x20 - job_name: inference-gateway-backup\n    static_configs: [{{ targets: ['{b}'] }}]\n",
            rules = dir.join("rules").display()
        ),
    )
    .expect("prometheus config");
    let prom = Proc::spawn(
        "prometheus",
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--log.level=warn".into(),
        ],
        dir,
    );
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let am_addr: SocketAddr = format!("127.0.0.1:{am_port}").parse().unwrap();
    let procs = [&prom, &am];
    let ready = |addr: SocketAddr| async move {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => match common::get(addr, "/-/ready").await {
                (200, _) => Ok(()),
                (s, b) => Err(format!("{s} {b}")),
            },
            Err(e) => Err(e.to_string()),
        }
    };
    until(
        Duration::from_secs(30),
        "Alertmanager ready",
        &procs,
        || ready(am_addr),
    )
    .await;
    until(Duration::from_secs(30), "Prometheus ready", &procs, || {
        ready(prom_addr)
    })
    .await;
    let (_, loaded) = get_json(prom_addr, "/api/v1/rules").await;
    // Every group the shipped files declare (`  - name: ...` under `groups:`), no more, no less.
    let mut shipped: Vec<String> = Vec::new();
    for entry in std::fs::read_dir("alerts").expect("alerts/") {
        let path = entry.expect("alerts/ entry").path();
        if path.extension().is_some_and(|e| e == "yml") {
            let text = std::fs::read_to_string(&path).expect("rule file");
            shipped.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("  - name: "))
                    .map(|n| n.trim().to_string()),
            );
        }
    }
    shipped.sort();
    let mut groups: Vec<String> = loaded["data"]["groups"]
        .as_array()
        .map(|gs| {
            gs.iter()
                .filter_map(|g| g["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    groups.sort();
    assert!(shipped.len() >= 3, "shipped rule groups: {shipped:?}");
    assert_eq!(
        groups, shipped,
        "Prometheus loaded the shipped rule groups: {loaded}"
    );

    // Scraped and healthy.
    until(
        Duration::from_secs(30),
        "the gateway up in Prometheus",
        &procs,
        || async {
            let up = query(prom_addr, r#"watchfire_target_up{target="gateway-health"}"#).await?;
            let scrape = query(prom_addr, r#"up{job="watchfire"} == 1"#).await?;
            match (value_of(&up), scrape.len()) {
                (Some(1.0), 1) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Memory: the runbook's ratio through the query API, before and after crossing 0.85.
    let ratio = "container_memory_usage_bytes / container_spec_memory_limit_bytes";
    until(
        Duration::from_secs(20),
        "the ratio at 0.5",
        &procs,
        || async {
            let r = query(prom_addr, ratio).await?;
            match value_of(&r) {
                Some(0.5) => Ok(()),
                other => Err(format!("{other:?} {r:?}")),
            }
        },
    )
    .await;
    assert!(!firing(prom_addr)
        .await
        .contains(&"HighMemoryUsage".to_string()));
    // 900 MiB of 1 GiB: exactly 0.87890625.
    cgroup_v2(&cgroup, 900 << 20);
    until(
        Duration::from_secs(20),
        "the ratio at 0.87890625",
        &procs,
        || async {
            let r = query(prom_addr, ratio).await?;
            let labels = r.first().map(|x| x["metric"].clone()).unwrap_or_default();
            match value_of(&r) {
                Some(v) if v == 0.87890625 && labels["container"] == "inference-gateway" => Ok(()),
                other => Err(format!("{other:?} {r:?}")),
            }
        },
    )
    .await;
    lint_memory_families(wf).await;
    let high_expr = "container_memory_usage_bytes / container_spec_memory_limit_bytes > 0.85";
    let r = query(prom_addr, high_expr)
        .await
        .expect("the alert's expression");
    assert_eq!(value_of(&r), Some(0.87890625), "{r:?}");
    until(
        Duration::from_secs(20),
        "HighMemoryUsage firing",
        &procs,
        || async {
            let f = firing(prom_addr).await;
            if f.iter().any(|a| a == "HighMemoryUsage") {
                Ok(())
            } else {
                Err(format!("{f:?}"))
            }
        },
    )
    .await;
    let f = firing(prom_addr).await;
    assert!(!f.contains(&"CriticalMemoryUsage".to_string()), "{f:?}");
    assert!(
        !f.contains(&"ServiceDown".to_string()),
        "nothing is down yet: {f:?}"
    );

    // The outage: the primary stops accepting connections.
    gw.go_down();
    until(
        Duration::from_secs(30),
        "ServiceDown firing in Prometheus",
        &procs,
        || async {
            let f = firing(prom_addr).await;
            if f.iter().any(|a| a == "ServiceDown") {
                Ok(())
            } else {
                Err(format!("{f:?}"))
            }
        },
    )
    .await;
    until(
        Duration::from_secs(30),
        "Alertmanager delivering ServiceDown",
        &procs,
        || async {
            let got = delivered.lock().expect("webhook store").clone();
            let hit = got.iter().any(|n| {
                n["status"] == "firing"
                    && n["alerts"].as_array().into_iter().flatten().any(|a| {
                        a["labels"]["alertname"] == "ServiceDown" && a["status"] == "firing"
                    })
            });
            if hit {
                Ok(())
            } else {
                Err(format!("{} notifications so far: {got:?}", got.len()))
            }
        },
    )
    .await;
    until(
        Duration::from_secs(30),
        "FailoverActive firing",
        &procs,
        || async {
            let f = firing(prom_addr).await;
            if f.iter().any(|a| a == "FailoverActive") {
                Ok(())
            } else {
                Err(format!("{f:?}"))
            }
        },
    )
    .await;

    // Every dashboard query parses and returns data; every variable has values.
    let (panels, variables) = dashboard_queries();
    for (title, expr) in &panels {
        if let Err(e) = query(prom_addr, expr).await {
            if e.contains("bad_data") {
                panic!("panel {title:?}: `{expr}` does not parse: {e}");
            }
        }
    }
    until(
        Duration::from_secs(30),
        "data for every dashboard panel",
        &procs,
        || async {
            let mut empty = Vec::new();
            for (title, expr) in &panels {
                match query(prom_addr, expr).await {
                    Ok(r) if !r.is_empty() => {}
                    Ok(_) => empty.push(format!("{title}: {expr}")),
                    Err(e) => empty.push(format!("{title}: {expr}: {e}")),
                }
            }
            for (metric, label) in &variables {
                let path = format!("/api/v1/label/{label}/values?match[]={}", enc(metric));
                let (_, v) = get_json(prom_addr, &path).await;
                if v["data"].as_array().is_none_or(|a| a.is_empty()) {
                    empty.push(format!("variable {label} of {metric}: {v}"));
                }
            }
            if empty.is_empty() {
                Ok(())
            } else {
                Err(format!("no data:\n{}", empty.join("\n")))
            }
        },
    )
    .await;

    cancel.cancel();
    srv.await.expect("server task").expect("server");
    drop(prom);
    drop(am);
    gw.shutdown().await;
    backup.shutdown().await;
}

/// The compose stack's Prometheus and Alertmanager configs pass their own checkers
/// (`promtool check config`, `amtool check-config`), with the rules loaded from the repository.
#[test]
fn shipped_prometheus_and_alertmanager_configs_pass_their_checkers() {
    for p in ["promtool", "amtool"] {
        require(p);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(repo.join("deploy/compose/prometheus.yml"))
        .expect("prometheus.yml");
    assert!(
        text.contains("/etc/prometheus/alerts/"),
        "the rules' mount point"
    );
    // The compose file mounts ./alerts at /etc/prometheus/alerts.
    let local = text.replace(
        "/etc/prometheus/alerts/",
        &format!("{}/", repo.join("alerts").display()),
    );
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, local).expect("write");
    let checks: [(&str, Vec<String>); 2] = [
        (
            "promtool",
            vec![
                "check".into(),
                "config".into(),
                config.display().to_string(),
            ],
        ),
        (
            "amtool",
            vec![
                "check-config".into(),
                repo.join("deploy/compose/alertmanager.yml")
                    .display()
                    .to_string(),
            ],
        ),
    ];
    for (program, args) in checks {
        let out = Command::new(program).args(&args).output().expect(program);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{program} {args:?} failed:\n{said}");
        if program == "promtool" {
            assert!(
                said.matches("SUCCESS").count() >= 4,
                "config and every rule file: {said}"
            );
        }
    }
}
