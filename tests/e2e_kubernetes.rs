//! The Prometheus configs for Kubernetes, checked by the real `promtool check config`
//! (Prometheus accepts `kubernetes_sd_configs` without a cluster to talk to): the one
//! `docs/kubernetes.md` documents (Services and Ingresses discovered by Prometheus, probed
//! through watchfire's `/probe`) and the scrape job `deploy/kubernetes/` ships.
//!
//! Debian's Prometheus (the one `.ci/run` installs) is built without the Kubernetes discovery
//! and refuses the `kubernetes_sd_configs` key. With such a promtool, each job's
//! `kubernetes_sd_configs` is checked here (its roles and keys, as Prometheus' documentation
//! lists them) and replaced by a `static_configs` entry, and promtool checks the rest: the
//! jobs, the relabel rules (their regexes, actions and labels) and the global settings.

#![cfg(feature = "e2e")]

#[path = "common/procs.rs"]
mod procs;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The first ```yaml block of `md` holding `needle`.
fn yaml_block(md: &str, needle: &str) -> String {
    let mut rest = md;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed block");
        if body[..end].contains(needle) {
            return body[..end].to_string();
        }
        rest = &body[end + 3..];
    }
    panic!("no ```yaml block with {needle}");
}

/// `promtool check config` on `text`: (success, output).
fn promtool(dir: &Path, text: &str) -> (bool, String) {
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, text).expect("write");
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&path)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains("SUCCESS"), text)
}

/// The keys of one `kubernetes_sd_configs` entry Prometheus knows, and its roles.
const K8S_KEYS: [&str; 11] = [
    "role",
    "api_server",
    "kubeconfig_file",
    "namespaces",
    "selectors",
    "attach_metadata",
    "basic_auth",
    "authorization",
    "oauth2",
    "tls_config",
    "follow_redirects",
];
const K8S_ROLES: [&str; 6] = [
    "node",
    "service",
    "pod",
    "endpoints",
    "endpointslice",
    "ingress",
];

/// Checks the config in `yaml` with promtool: as it is when promtool knows the Kubernetes
/// discovery, else with each job's `kubernetes_sd_configs` checked here and replaced (see the
/// module's documentation).
fn check_config(yaml: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out) = promtool(dir.path(), yaml);
    if ok {
        return;
    }
    assert!(
        out.contains("field kubernetes_sd_configs not found"),
        "promtool check config: {out}"
    );
    let mut v: Value = serde_saphyr::from_str(yaml).expect("YAML");
    for job in v["scrape_configs"].as_array_mut().expect("scrape_configs") {
        let job = job.as_object_mut().expect("a job");
        let Some(sds) = job.remove("kubernetes_sd_configs") else {
            continue;
        };
        for sd in sds.as_array().expect("a list") {
            let sd = sd.as_object().expect("a mapping");
            for k in sd.keys() {
                assert!(K8S_KEYS.contains(&k.as_str()), "kubernetes_sd_configs: {k}");
            }
            let role = sd["role"].as_str().expect("a role");
            assert!(K8S_ROLES.contains(&role), "role {role}");
        }
        let placeholder = serde_json::json!([{"targets": ["placeholder.invalid:80"]}]);
        job.insert("static_configs".into(), placeholder);
    }
    let json = serde_json::to_string_pretty(&v).expect("JSON");
    let (ok, out) = promtool(dir.path(), &json);
    assert!(ok, "promtool check config: {out}\n{json}");
}

#[test]
fn the_documented_kubernetes_probe_config_is_a_valid_prometheus_config() {
    procs::require("promtool");
    let md = std::fs::read_to_string(repo().join("docs/kubernetes.md")).expect("the doc");
    let block = yaml_block(&md, "scrape_configs:");
    check_config(&block);

    // Every probe job scrapes watchfire's /probe with the discovered address as `target`.
    let v: Value = serde_saphyr::from_str(&block).expect("YAML");
    let jobs = v["scrape_configs"].as_array().expect("scrape_configs");
    let probes: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["metrics_path"] == "/probe")
        .collect();
    assert_eq!(probes.len(), 2, "services and ingresses");
    for j in probes {
        let name = j["job_name"].as_str().expect("job_name");
        assert!(j["kubernetes_sd_configs"].is_array(), "{name}");
        let rules = j["relabel_configs"].as_array().expect("relabel_configs");
        let sets = |label: &str| rules.iter().any(|r| r["target_label"] == label);
        assert!(sets("__param_target") && sets("instance"), "{name}");
        let last = rules.last().expect("rules");
        assert_eq!(last["target_label"], "__address__", "{name}");
        assert!(
            last["replacement"]
                .as_str()
                .is_some_and(|a| a.starts_with("watchfire.") && a.ends_with(":9115")),
            "{name}"
        );
    }
}

#[test]
fn the_shipped_watchfire_scrape_job_is_a_valid_prometheus_config() {
    procs::require("promtool");
    let cm =
        std::fs::read_to_string(repo().join("deploy/kubernetes/prometheus-scrape-config.yaml"))
            .expect("the scrape ConfigMap");
    let cm: Value = serde_saphyr::from_str(&cm).expect("YAML");
    let jobs = cm["data"]["watchfire-scrape.yml"]
        .as_str()
        .expect("the job list");
    let indented: String = jobs.lines().map(|l| format!("  {l}\n")).collect();
    check_config(&format!("scrape_configs:\n{indented}"));
}
