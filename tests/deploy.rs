//! The shipped alerts, dashboards and deployment files, checked without Docker, Kubernetes or
//! Grafana: every file parses; every metric name they use is one watchfire emits; every command
//! line parses with watchfire's own CLI; every port, path, config file and service name they
//! reference exists and agrees with the code and with each other. (The e2e test
//! `tests/e2e_prometheus.rs` runs the rules and every dashboard query in a real Prometheus.)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use watchfire::cli::{Cli, Command};
use watchfire::expo::catalog;

/// Where every `runbook_url` points (the rest of the URL is a file under `docs/runbooks/`).
const RUNBOOK_PREFIX: &str = "https://github.com/watchfire/watchfire/blob/main/";

/// The alerts the issue asks for.
const REQUIRED_ALERTS: [&str; 10] = [
    "ServiceDown",
    "HighMemoryUsage",
    "CriticalMemoryUsage",
    "MemoryLeakPredicted",
    "LatencySLOBreach",
    "ErrorBudgetBurnFast",
    "ErrorBudgetBurnSlow",
    "FailoverActive",
    "WatchfireDown",
    "WatchfireFallingBehind",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Files under `dir` (recursively) whose name ends with one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if exts
                .iter()
                .any(|x| p.to_string_lossy().ends_with(&format!(".{x}")))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn rule_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("alerts"))
        .expect("alerts/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "alerts/*.yml");
    v
}

/// Every rule of every rule file.
fn rules() -> Vec<Value> {
    rule_files()
        .iter()
        .flat_map(|f| {
            let doc = yaml(f);
            let groups = doc["groups"].as_array().cloned().unwrap_or_default();
            groups
                .into_iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Parses an argv with watchfire's own CLI.
fn cli(args: &[&str]) -> Command {
    let mut argv = vec!["watchfire"];
    argv.extend(
        args.iter()
            .copied()
            .skip_while(|a| a.ends_with("/watchfire")),
    );
    Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| {
            panic!(
                "`{}` is not a valid watchfire command line: {e}",
                argv.join(" ")
            )
        })
        .command
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(s)
        .collect()
}

/// The path part of an `http://host:port/path` URL.
fn url_path(u: &str) -> &str {
    let rest = u.split_once("://").map(|x| x.1).unwrap_or(u);
    rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
}

#[test]
fn every_shipped_yaml_and_json_file_parses() {
    let root = repo();
    let mut yamls = files(&root.join("alerts"), &["yml", "yaml"]);
    yamls.extend(files(&root.join("deploy"), &["yml", "yaml"]));
    yamls.extend(files(&root.join("probes"), &["yml", "yaml"]));
    yamls.push(root.join("docker-compose.yml"));
    for f in &yamls {
        let v = yaml(f);
        assert!(
            v.is_object(),
            "{}: expected a mapping at the top",
            f.display()
        );
    }
    let jsons = files(&root.join("dashboards"), &["json"]);
    assert!(!jsons.is_empty(), "dashboards/*.json");
    for f in &jsons {
        json(f);
    }
    assert!(yamls.len() >= 15, "{yamls:?}");
}

#[test]
fn every_alert_has_severity_summary_description_and_a_shipped_runbook() {
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for want in REQUIRED_ALERTS {
        assert!(
            names.contains(want),
            "alert {want} is missing; have {names:?}"
        );
    }
    for r in rules.iter().filter(|r| r["alert"].is_string()) {
        let name = s(&r["alert"]);
        let sev = s(&r["labels"]["severity"]);
        assert!(
            ["critical", "warning"].contains(&sev),
            "{name}: severity {sev}"
        );
        for a in ["summary", "description", "runbook_url"] {
            assert!(
                !s(&r["annotations"][a]).trim().is_empty(),
                "{name}: annotation {a}"
            );
        }
        let url = s(&r["annotations"]["runbook_url"]);
        let rel = url.strip_prefix(RUNBOOK_PREFIX).unwrap_or_else(|| {
            panic!("{name}: runbook_url {url} should start with {RUNBOOK_PREFIX}")
        });
        assert!(rel.starts_with("docs/runbooks/"), "{name}: {url}");
        let page = repo().join(rel);
        assert!(
            page.is_file(),
            "{name}: runbook page {} does not exist",
            page.display()
        );
        assert!(
            read(&page).contains(name),
            "{name}: the runbook page {rel} does not mention the alert"
        );
        assert!(r["for"].is_string(), "{name}: every alert waits a `for:`");
    }
}

#[test]
fn the_runbook_s_alerts_are_verbatim() {
    let rules = rules();
    let find = |name: &str| -> Vec<&Value> {
        rules
            .iter()
            .filter(|r| r["alert"].as_str() == Some(name))
            .collect()
    };
    let expr = |r: &Value| s(&r["expr"]).trim().to_string();
    let down = find("ServiceDown");
    assert!(
        down.iter()
            .any(|r| expr(r) == r#"up{job="inference-gateway"} == 0"#),
        "the runbook's ServiceDown expression"
    );
    assert!(
        down.iter()
            .any(|r| expr(r) == "max without (instance, instance_id) (watchfire_target_up) == 0"),
        "ServiceDown from probes (over a cluster's replicas)"
    );
    let high = find("HighMemoryUsage");
    assert_eq!(
        expr(high[0]),
        "container_memory_usage_bytes / container_spec_memory_limit_bytes > 0.85"
    );
    assert_eq!(s(&high[0]["for"]), "5m");
    let crit = find("CriticalMemoryUsage");
    assert_eq!(
        expr(crit[0]),
        "container_memory_usage_bytes / container_spec_memory_limit_bytes > 0.95"
    );
    assert_eq!(s(&crit[0]["for"]), "2m");
    assert!(expr(find("MemoryLeakPredicted")[0]).contains("predict_linear("));
}

/// Every alert has promtool tests in which it fires and in which it stays silent (boundary,
/// `for` not elapsed, resolved); every test file loads existing rule files.
#[test]
fn every_alert_has_promtool_tests_that_fire_and_stay_silent() {
    let mut fired: BTreeSet<String> = BTreeSet::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    let tests = files(&repo().join("alerts/tests"), &["yml"]);
    assert!(!tests.is_empty(), "alerts/tests/*.yml");
    for f in &tests {
        let doc = yaml(f);
        for rf in strings(&doc["rule_files"]) {
            let p = f.parent().expect("a directory").join(rf);
            assert!(
                p.is_file(),
                "{}: rule file {rf} does not exist",
                f.display()
            );
        }
        for t in doc["tests"].as_array().expect("tests:") {
            for a in t["alert_rule_test"].as_array().into_iter().flatten() {
                let name = s(&a["alertname"]).to_string();
                let exp = a["exp_alerts"].as_array().map(Vec::len).unwrap_or(0);
                if exp > 0 {
                    fired.insert(name);
                } else {
                    silent.insert(name);
                }
            }
        }
    }
    for r in rules() {
        if let Some(name) = r["alert"].as_str() {
            assert!(fired.contains(name), "no promtool test where {name} fires");
            assert!(
                silent.contains(name),
                "no promtool test where {name} stays silent"
            );
        }
    }
}

/// Metric names a PromQL expression reads (label matchers, grouping lists, ranges, strings,
/// functions and keywords removed).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_str = false;
    for c in expr.chars() {
        match c {
            '"' if depth_brace == 0 => in_str = !in_str,
            _ if in_str => {}
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            c => cleaned.push(c),
        }
        if c == '}' || c == ']' {
            cleaned.push(' ');
        }
    }
    let grouping =
        regex::Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
            .expect("regex");
    let cleaned = grouping.replace_all(&cleaned, " ");
    let ident = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?").expect("regex");
    const KEYWORDS: [&str; 6] = ["and", "or", "unless", "bool", "offset", "inf"];
    ident
        .captures_iter(&cleaned)
        .filter(|c| c.get(1).is_none())
        .map(|c| c[0].to_string())
        .filter(|w| !KEYWORDS.contains(&w.to_ascii_lowercase().as_str()))
        .filter(|w| !w.starts_with('$'))
        .collect()
}

#[test]
fn promql_metric_name_extraction() {
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (target, le) (rate(watchfire_probe_duration_seconds_bucket{target=~"$target", le!="x"}[$__rate_interval]))) > 0.5 and on(job) up == 0"#,
    );
    let want: BTreeSet<String> = ["watchfire_probe_duration_seconds_bucket", "up"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

/// Names watchfire emits: the catalog's families, Prometheus' own `up`, and the shipped
/// recording rules.
fn known_metric_names() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = catalog::ALL.iter().map(|f| f.name.to_string()).collect();
    known.insert("up".into());
    for r in rules() {
        if let Some(rec) = r["record"].as_str() {
            known.insert(rec.to_string());
        }
    }
    known
}

/// Identifiers in the README that look like metric names but are not (a key of `watchfire
/// verify`'s JSON report).
const README_NOT_METRICS: [&str; 1] = ["watchfire_version"];

#[test]
fn the_readme_documents_exactly_the_catalog_s_metrics() {
    let re = regex::Regex::new(
        r"\b(?:(?:watchfire|container)_[a-z0-9_]*[a-z0-9]|blackbox_module_unknown_total)\b",
    )
    .expect("regex");
    let catalog: BTreeSet<&str> = catalog::ALL.iter().map(|f| f.name).collect();
    let readme = read(&repo().join("README.md"));
    let mut mentioned = BTreeSet::new();
    for m in re.find_iter(&readme) {
        let n = m.as_str();
        if README_NOT_METRICS.contains(&n) {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suf| n.strip_suffix(suf).filter(|b| catalog.contains(b)))
            .unwrap_or(n);
        assert!(
            catalog.contains(family),
            "README mentions {n}, which is not in the catalog"
        );
        mentioned.insert(family);
    }
    for n in &catalog {
        assert!(
            mentioned.contains(n),
            "{n} is in the catalog but not in the README"
        );
    }
}

/// A histogram or summary series name stands for its family.
fn family_known(name: &str, known: &BTreeSet<String>) -> bool {
    known.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suf| name.strip_suffix(suf).is_some_and(|b| known.contains(b)))
}

/// Every PromQL of a dashboard (panel targets) with the variable queries' metric names.
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = stack.pop() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((s(&p["title"]).to_string(), s(&t["expr"]).to_string()));
        }
        stack.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

#[test]
fn alerts_and_dashboards_use_only_metrics_watchfire_emits() {
    let known = known_metric_names();
    let mut checked = 0;
    for r in rules() {
        for n in metric_names(s(&r["expr"])) {
            assert!(
                family_known(&n, &known),
                "rule {}: metric {n} is not emitted by watchfire",
                r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?")
            );
            checked += 1;
        }
    }
    for f in files(&repo().join("dashboards"), &["json"]) {
        let d = json(&f);
        for (title, expr) in dashboard_queries(&d) {
            for n in metric_names(&expr) {
                assert!(
                    family_known(&n, &known),
                    "{} panel {title:?}: metric {n} is not emitted by watchfire",
                    f.display()
                );
                checked += 1;
            }
        }
        for v in d["templating"]["list"].as_array().expect("templating") {
            if let Some(q) = v["query"]["query"].as_str() {
                let metric = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.split(',').next())
                    .unwrap_or_else(|| panic!("variable query {q}"));
                assert!(family_known(metric.trim(), &known), "variable {q}");
            }
        }
    }
    assert!(checked > 30, "{checked}");
}

#[test]
fn the_dashboard_has_target_and_group_variables_and_every_panel() {
    let d = json(&repo().join("dashboards/watchfire.json"));
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| s(&v["name"]))
        .collect();
    for v in ["datasource", "target", "group", "container"] {
        assert!(vars.contains(&v), "variable {v}; have {vars:?}");
    }
    let queries = dashboard_queries(&d);
    let all = |title: &str| -> String {
        queries
            .iter()
            .filter(|(t, _)| t == title)
            .map(|(_, e)| e.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let must = [
        ("Up / down", vec!["watchfire_target_up"]),
        ("Success ratio", vec!["result=\"success\""]),
        (
            "Latency p50 / p90 / p99 (histogram buckets)",
            vec![
                "histogram_quantile(0.5,",
                "histogram_quantile(0.9,",
                "histogram_quantile(0.99,",
            ],
        ),
        (
            "Latency p50 / p90 / p99 (HDR, since load)",
            vec!["watchfire_probe_latency_seconds", "0.5|0.9|0.99"],
        ),
        (
            "Phase breakdown (last probe)",
            vec!["watchfire_probe_last_phase_seconds"],
        ),
        (
            "Schedule lag",
            vec![
                "watchfire_schedule_lag_seconds_bucket",
                "watchfire_ticks_skipped_total",
            ],
        ),
        (
            "Active instance",
            vec!["watchfire_failover_active", "$group"],
        ),
        (
            "Memory usage vs limit",
            vec!["container_memory_usage_bytes", "0.85 *", "0.95 *"],
        ),
    ];
    for (title, needles) in must {
        let text = all(title);
        assert!(!text.is_empty(), "panel {title:?} is missing");
        for n in needles {
            assert!(text.contains(n), "panel {title:?} should use {n}: {text}");
        }
    }
    assert!(
        queries.iter().any(|(_, e)| e.contains("$target")),
        "panels filter by $target"
    );
    for (title, e) in &queries {
        assert!(!e.trim().is_empty(), "panel {title:?} has an empty query");
    }
}

#[test]
fn the_readme_memory_example_loads() {
    let readme = read(&repo().join("README.md"));
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with("memory:"))
        .expect("README has a `memory:` example");
    let c = watchfire::config::load_str("README.md", block).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.memory.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["inference-gateway", "gateway-backup", "sim"]);
}

/// A Dockerfile's instructions with line continuations joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&repo().join("Dockerfile")).replace("\\\n", " ");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (i, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (i.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect()
}

#[test]
fn the_dockerfile_is_multi_stage_non_root_healthchecked_on_9115() {
    let ins = dockerfile();
    let froms = ins.iter().filter(|(i, _)| i == "FROM").count();
    assert!(froms >= 2, "multi-stage: {froms} FROM");
    let last_from = ins.iter().rposition(|(i, _)| i == "FROM").expect("FROM");
    let runtime = &ins[last_from..];
    let get = |name: &str| -> Vec<&str> {
        runtime
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let user = get("USER");
    let user = user.last().expect("USER in the runtime stage");
    assert!(
        !["root", "0", "0:0"].contains(user),
        "non-root: USER {user}"
    );
    assert_eq!(get("EXPOSE"), ["9115"]);
    let hc = get("HEALTHCHECK");
    let hc = hc.first().expect("HEALTHCHECK");
    for opt in [
        "--interval=10s",
        "--timeout=5s",
        "--start-period=30s",
        "--retries=3",
    ] {
        assert!(hc.contains(opt), "HEALTHCHECK {opt}: {hc}");
    }
    let cmd: Value = serde_json::from_str(hc.split_once("CMD").expect("CMD").1.trim())
        .expect("HEALTHCHECK CMD is a JSON array");
    match cli(&strings(&cmd)) {
        Command::Probe(p) => {
            assert_eq!(p.url, "http://127.0.0.1:9115/-/healthy");
            assert!(
                p.timeout.as_secs() < 5,
                "probe timeout below the check's 5s"
            );
        }
        other => panic!("HEALTHCHECK runs {other:?}"),
    }
    let entry: Value = serde_json::from_str(get("ENTRYPOINT")[0]).expect("ENTRYPOINT JSON");
    let cmd: Value = serde_json::from_str(get("CMD")[0]).expect("CMD JSON");
    let mut argv = strings(&entry);
    argv.extend(strings(&cmd));
    match cli(&argv) {
        Command::Run(r) => {
            assert_eq!(r.listen[0].to_string(), "0.0.0.0:9115");
            assert_eq!(r.config, PathBuf::from("/etc/watchfire/"));
        }
        other => panic!("the image runs {other:?}"),
    }
    assert!(watchfire::cli::DEFAULT_LISTEN.ends_with(":9115"));
    // COPY sources of the build context exist; the config the image runs loads.
    for (i, rest) in &ins {
        if i == "COPY" && !rest.starts_with("--from") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for src in &parts[..parts.len() - 1] {
                assert!(
                    repo().join(src).exists(),
                    "COPY {src}: not in the repository"
                );
            }
            if parts.last() == Some(&"/etc/watchfire/") {
                watchfire::config::load(&repo().join(parts[0]))
                    .unwrap_or_else(|e| panic!("the image's config: {e}"));
            }
        }
    }
}

/// Compose volumes of a service: (host path in the repo or absolute, container path).
fn volumes(svc: &Value) -> Vec<(String, String)> {
    svc["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut it = s(v).split(':');
            (
                it.next().expect("host").to_string(),
                it.next().expect("container").to_string(),
            )
        })
        .collect()
}

/// The repo file a container path of a service comes from.
fn host_path(svc: &Value, container_path: &str) -> PathBuf {
    for (host, ctr) in volumes(svc) {
        let ctr = ctr.trim_end_matches('/');
        if let Some(rest) = container_path.strip_prefix(ctr) {
            let host = repo().join(host.strip_prefix("./").expect("a repo path"));
            let rest = rest.trim_start_matches('/');
            return if rest.is_empty() {
                host
            } else {
                host.join(rest)
            };
        }
    }
    panic!("{container_path} is not mounted from the repository")
}

fn ports(svc: &Value) -> Vec<(u16, u16)> {
    svc["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            // `[ip:]host:container`
            let mut parts = s(p).rsplitn(3, ':');
            let c = parts.next().expect("container port");
            let h = parts.next().expect("host:container");
            (h.parse().expect("port"), c.parse().expect("port"))
        })
        .collect()
}

#[test]
fn docker_compose_is_the_runbook_s_stack_and_agrees_with_the_code() {
    let c = yaml(&repo().join("docker-compose.yml"));
    let services = c["services"].as_object().expect("services");
    for name in [
        "inference-gateway",
        "inference-gateway-backup",
        "watchfire",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }
    for (name, svc) in services {
        assert!(
            svc["restart"].as_str().is_some_and(|r| r != "no"),
            "{name}: restart policy"
        );
        assert!(
            svc["deploy"]["resources"]["limits"]["memory"].is_string(),
            "{name}: memory limit"
        );
        for (host, _) in volumes(svc) {
            if let Some(rel) = host.strip_prefix("./") {
                assert!(repo().join(rel).exists(), "{name}: volume ./{rel} missing");
            }
        }
    }
    // The gateways: watchfire sim on 8000, the runbook's health check.
    for name in ["inference-gateway", "inference-gateway-backup"] {
        let svc = &services[name];
        assert_eq!(svc["image"], "watchfire:local", "{name}");
        assert_eq!(
            s(&svc["container_name"]),
            name,
            "memory watches use the name"
        );
        match cli(&strings(&svc["command"])) {
            Command::Sim(a) => assert_eq!(a.listen.port(), 8000, "{name}"),
            other => panic!("{name} runs {other:?}"),
        }
        let hc = &svc["healthcheck"];
        assert_eq!(
            (
                s(&hc["interval"]),
                s(&hc["timeout"]),
                &hc["retries"],
                s(&hc["start_period"])
            ),
            ("10s", "5s", &Value::from(3), "30s"),
            "{name}: the runbook's health check"
        );
        let test = strings(&hc["test"]);
        assert_eq!(test[0], "CMD");
        match cli(&test[1..]) {
            Command::Probe(p) => assert_eq!(p.url, "http://127.0.0.1:8000/health"),
            other => panic!("{name} health check runs {other:?}"),
        }
    }
    // watchfire: run on 9115 with a config from the repo that loads and names the services.
    let wf = &services["watchfire"];
    let run = match cli(&strings(&wf["command"])) {
        Command::Run(r) => r,
        other => panic!("watchfire runs {other:?}"),
    };
    assert_eq!(run.listen[0].port(), 9115);
    assert!(ports(wf).contains(&(9115, 9115)));
    let config_dir = host_path(wf, run.config.to_str().expect("utf-8"));
    let config = watchfire::config::load(&config_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", config_dir.display()));
    for t in &config.targets {
        let url = &t
            .http()
            .expect("the shipped targets are native HTTP checks")
            .url;
        assert!(
            services.contains_key(&url.host) && url.port == 8000,
            "target {} probes {}: not a gateway service on 8000",
            t.name,
            url
        );
    }
    let names: BTreeSet<&str> = config.memory.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["inference-gateway", "inference-gateway-backup"]),
        "memory watches"
    );
    for w in &config.memory {
        let root = w.roots.cgroup.to_string_lossy().to_string();
        assert!(
            volumes(wf)
                .iter()
                .any(|(h, c)| h == "/sys/fs/cgroup" && *c == root),
            "{}: cgroup_root {root} is the host's /sys/fs/cgroup",
            w.name
        );
    }
    let proxy = config.failover[0].proxy.as_ref().expect("a failover proxy");
    assert!(ports(wf).contains(&(proxy.listen.port(), proxy.listen.port())));
    // Prometheus: the shipped rules, scrape targets that exist, Alertmanager.
    let prom_svc = &services["prometheus"];
    let prom = yaml(&host_path(prom_svc, "/etc/prometheus/prometheus.yml"));
    for rf in strings(&prom["rule_files"]) {
        let (dir, pattern) = rf.rsplit_once('/').expect("a path");
        assert_eq!(pattern, "*.yml");
        let host_dir = host_path(prom_svc, dir);
        let mut found: Vec<PathBuf> = std::fs::read_dir(&host_dir)
            .expect("rules directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yml"))
            .collect();
        found.sort();
        assert_eq!(
            found,
            rule_files(),
            "Prometheus loads every shipped rule file"
        );
    }
    let mut jobs = BTreeMap::new();
    for sc in prom["scrape_configs"].as_array().expect("scrape_configs") {
        for sc_static in sc["static_configs"].as_array().expect("static_configs") {
            for t in strings(&sc_static["targets"]) {
                jobs.insert(t.to_string(), s(&sc["job_name"]).to_string());
            }
        }
    }
    assert_eq!(
        jobs["watchfire:9115"], "watchfire",
        "WatchfireDown needs job=watchfire"
    );
    assert_eq!(
        jobs["inference-gateway:8000"], "inference-gateway",
        "ServiceDown needs job=inference-gateway"
    );
    for target in jobs.keys() {
        let (host, _) = target.split_once(':').expect("host:port");
        assert!(
            host == "localhost" || services.contains_key(host),
            "scrape target {target}"
        );
    }
    let am = &prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0];
    assert_eq!(s(am), "alertmanager:9093");
    assert!(ports(&services["alertmanager"]).contains(&(9093, 9093)));
    yaml(&host_path(
        &services["alertmanager"],
        "/etc/alertmanager/alertmanager.yml",
    ));
    // Grafana: the provisioned datasource is the dashboards' default; dashboards are mounted.
    let g = &services["grafana"];
    let ds = yaml(&host_path(
        g,
        "/etc/grafana/provisioning/datasources/prometheus.yml",
    ));
    assert_eq!(s(&ds["datasources"][0]["url"]), "http://prometheus:9090");
    assert!(ports(prom_svc).contains(&(9090, 9090)));
    let prov = yaml(&host_path(
        g,
        "/etc/grafana/provisioning/dashboards/watchfire.yml",
    ));
    let dash_dir = host_path(g, s(&prov["providers"][0]["options"]["path"]));
    assert_eq!(dash_dir, repo().join("dashboards"));
    let dash = json(&dash_dir.join("watchfire.json"));
    let ds_var = dash["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource variable");
    assert_eq!(ds_var["current"]["value"], ds["datasources"][0]["uid"]);
}

#[test]
fn the_systemd_unit_runs_watchfire_on_9115() {
    let unit = read(&repo().join("deploy/systemd/watchfire.service"));
    let kv: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| kv.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
    let start: Vec<&str> = get("ExecStart")
        .expect("ExecStart")
        .split_whitespace()
        .collect();
    match cli(&start) {
        Command::Run(r) => {
            assert_eq!(r.listen[0].port(), 9115);
            assert_eq!(r.config, PathBuf::from("/etc/watchfire/"));
        }
        other => panic!("ExecStart runs {other:?}"),
    }
    let pre: Vec<&str> = get("ExecStartPre")
        .expect("ExecStartPre")
        .split_whitespace()
        .collect();
    assert!(matches!(cli(&pre), Command::Check(_)));
    assert_eq!(
        get("ExecReload"),
        Some("/bin/kill -HUP $MAINPID"),
        "SIGHUP reloads"
    );
    assert_eq!(get("DynamicUser"), Some("yes"), "not root");
    assert_eq!(get("WantedBy"), Some("multi-user.target"));
}

#[test]
fn the_kubernetes_manifests_agree_with_each_other_and_the_code() {
    let dir = repo().join("deploy/kubernetes");
    let mut by_kind: BTreeMap<String, Value> = BTreeMap::new();
    // The single-instance files; the cluster's, under cluster/, are tests/deploy_cluster.rs'.
    let top = files(&dir, &["yaml"])
        .into_iter()
        .filter(|f| f.parent() == Some(&*dir));
    for f in top {
        let v = yaml(&f);
        let kind = s(&v["kind"]).to_string();
        let key = format!("{kind}/{}", v["metadata"]["name"].as_str().unwrap_or(""));
        by_kind.insert(key, v);
    }
    let kust = &by_kind["Kustomization/"];
    for r in strings(&kust["resources"]) {
        assert!(dir.join(r).is_file(), "kustomization resource {r}");
    }
    let dep = &by_kind["Deployment/watchfire"];
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let ctr = &pod["containers"][0];
    let run = match cli(&strings(&ctr["args"])) {
        Command::Run(r) => r,
        other => panic!("the Deployment runs {other:?}"),
    };
    assert_eq!(run.listen[0].port(), 9115);
    let port = ctr["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["containerPort"] == 9115)
        .expect("containerPort 9115");
    let port_name = s(&port["name"]);
    assert_eq!(s(&ctr["livenessProbe"]["httpGet"]["path"]), "/-/healthy");
    assert_eq!(s(&ctr["readinessProbe"]["httpGet"]["path"]), "/-/ready");
    assert_eq!(s(&ctr["livenessProbe"]["httpGet"]["port"]), port_name);
    // The ConfigMap is mounted where --config points, and loads.
    let mount = &ctr["volumeMounts"][0];
    assert_eq!(
        run.config.to_string_lossy().trim_end_matches('/'),
        s(&mount["mountPath"])
    );
    let vol = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let cm = &by_kind[&format!("ConfigMap/{}", s(&vol["configMap"]["name"]))];
    let data = cm["data"].as_object().expect("data");
    for (file, text) in data {
        watchfire::config::load_str(file, s(text))
            .unwrap_or_else(|e| panic!("ConfigMap {file}: {e}"));
    }
    // The Service exposes 9115 by that port name, and the scrape job keeps exactly it.
    let svc = &by_kind["Service/watchfire"];
    let sp = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == 9115)
        .expect("Service port 9115");
    assert_eq!(s(&sp["targetPort"]), port_name);
    let scrape = &by_kind["ConfigMap/prometheus-watchfire-scrape"];
    let jobs: Value = serde_saphyr::from_str(s(&scrape["data"]["watchfire-scrape.yml"]))
        .expect("the scrape config is YAML");
    let job = &jobs[0];
    assert_eq!(
        s(&job["job_name"]),
        "watchfire",
        "WatchfireDown needs job=watchfire"
    );
    let keeps: Vec<&str> = job["relabel_configs"]
        .as_array()
        .expect("relabel_configs")
        .iter()
        .filter(|r| r["action"] == "keep")
        .map(|r| s(&r["regex"]))
        .collect();
    assert_eq!(keeps, ["watchfire", port_name]);
    assert_eq!(
        s(&svc["metadata"]["name"]),
        "watchfire",
        "the scrape job keeps this Service"
    );
}

/// The HTTP paths the deployment files probe exist on a live in-process watchfire.
#[tokio::test]
async fn every_probed_path_answers_200_on_a_live_watchfire() {
    let mut paths = BTreeSet::from(["/metrics".to_string()]);
    for (i, rest) in dockerfile() {
        if i == "HEALTHCHECK" {
            let url = rest
                .split('"')
                .find(|p| p.starts_with("http://"))
                .expect("a URL");
            paths.insert(url_path(url).to_string());
        }
    }
    let c = yaml(&repo().join("docker-compose.yml"));
    let hc = strings(&c["services"]["watchfire"]["healthcheck"]["test"]);
    paths.insert(url_path(hc.last().expect("URL")).to_string());
    let dep = yaml(&repo().join("deploy/kubernetes/deployment.yaml"));
    let ctr = &dep["spec"]["template"]["spec"]["containers"][0];
    for p in ["livenessProbe", "readinessProbe"] {
        paths.insert(s(&ctr[p]["httpGet"]["path"]).to_string());
    }
    assert!(
        paths.contains("/-/healthy") && paths.contains("/-/ready"),
        "{paths:?}"
    );

    let cancel = CancellationToken::new();
    let opts = watchfire::runtime::RuntimeOptions {
        precise_timer: false,
        ..Default::default()
    };
    let rt = watchfire::runtime::Runtime::start(
        watchfire::config::Config::default(),
        None,
        opts,
        cancel.clone(),
    )
    .await
    .expect("runtime");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(watchfire::server::AppState {
        runtime: rt,
        registry: watchfire::metrics::process_registry(),
    });
    let c2 = cancel.clone();
    let srv = tokio::spawn(watchfire::server::serve(listener, state, async move {
        c2.cancelled().await
    }));
    for p in &paths {
        let (status, _) = common::get(addr, p).await;
        assert_eq!(status, 200, "GET {p}");
    }
    cancel.cancel();
    srv.await.expect("server task").expect("server");
}
