//! The cluster's deployment files, checked as files (neither Kubernetes nor Docker runs here):
//! `deploy/kubernetes/cluster/` (a 3-member StatefulSet, its PodDisruptionBudget, headless
//! and client Services, the database Secret and the config) and `deploy/compose.yaml`
//! (PostgreSQL and three members). Every manifest parses; the kinds, the replica count, the
//! budget, the probes and the resources are there; every command line parses with
//! watchfire's own CLI; every reference (Secret key, ConfigMap, mounted config, service name)
//! resolves; every config loads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _};
use serde_json::Value;
use watchfire::cli::{Cli, Command};

/// `watchfire run`'s cluster flags. They are built on another branch at the same time as these
/// files: until that merge, a command line using them is checked with them (and their values)
/// taken out, and each value is checked here; once `run` knows a flag, clap checks it.
const CLUSTER_FLAGS: [&str; 5] = [
    "--cluster",
    "--cluster.id",
    "--cluster.replication",
    "--cluster.lease",
    "--location",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(s)
        .collect()
}

/// Whether `watchfire run` has the flag `--long`.
fn run_knows(long: &str) -> bool {
    let cmd = Cli::command();
    let name = long.trim_start_matches("--");
    let run = cmd.find_subcommand("run").expect("a run subcommand");
    let known = run.get_arguments().any(|a| {
        a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
    });
    known
}

/// Parses a `watchfire run` argv with watchfire's own CLI, returning the run arguments and
/// the cluster flags' values (see [`CLUSTER_FLAGS`]).
fn run_args(args: &[&str]) -> (watchfire::cli::RunArgs, BTreeMap<String, String>) {
    let mut argv = vec!["watchfire"];
    let mut cluster = BTreeMap::new();
    let mut it = args.iter().copied();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if a.starts_with("--") => (f, Some(v)),
            _ => (a, None),
        };
        if CLUSTER_FLAGS.contains(&flag) {
            let v = inline
                .or_else(|| it.next())
                .unwrap_or_else(|| panic!("{flag} without a value"));
            assert!(
                cluster.insert(flag.to_string(), v.to_string()).is_none(),
                "{flag} twice"
            );
            if run_knows(flag) {
                argv.extend([flag, v]);
            }
        } else {
            argv.push(a);
        }
    }
    let parsed = Cli::try_parse_from(&argv).unwrap_or_else(|e| {
        panic!(
            "`{}` is not a valid watchfire command line: {e}",
            argv.join(" ")
        )
    });
    match parsed.command {
        Command::Run(r) => (r, cluster),
        other => panic!("expected `watchfire run`, got {other:?}"),
    }
}

/// Checks the cluster flags' values as `watchfire run` will read them.
fn check_cluster_flags(f: &BTreeMap<String, String>, members: u64) {
    assert!(!f["--cluster"].is_empty(), "--cluster");
    assert!(!f["--cluster.id"].is_empty(), "--cluster.id");
    let r: u64 = f["--cluster.replication"]
        .parse()
        .expect("--cluster.replication is a number");
    assert!(
        (1..members).contains(&r),
        "replication {r} of {members} members"
    );
    watchfire::config::parse_duration(&f["--cluster.lease"]).expect("--cluster.lease");
}

fn manifests() -> BTreeMap<String, (PathBuf, Value)> {
    let dir = repo().join("deploy/kubernetes/cluster");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("deploy/kubernetes/cluster") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let v = yaml(&p);
            let key = format!(
                "{}/{}",
                s(&v["kind"]),
                v["metadata"]["name"].as_str().unwrap_or("")
            );
            assert!(out.insert(key.clone(), (p, v)).is_none(), "{key} twice");
        }
    }
    out
}

#[test]
fn the_kubernetes_cluster_is_three_members_with_a_budget_probes_and_the_cluster_flags() {
    let m = manifests();
    let kinds: BTreeSet<&str> = m.keys().map(|k| k.split('/').next().unwrap()).collect();
    let want: BTreeSet<&str> = [
        "ConfigMap",
        "Kustomization",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "StatefulSet",
    ]
    .into();
    assert_eq!(kinds, want);
    // The kustomization lists every other file.
    let (_, kust) = &m["Kustomization/"];
    let listed: BTreeSet<&str> = strings(&kust["resources"]).into_iter().collect();
    let files: BTreeSet<String> = m
        .values()
        .filter(|(_, v)| v["kind"] != "Kustomization")
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, files.iter().map(String::as_str).collect());

    let (_, sts) = &m["StatefulSet/watchfire"];
    assert_eq!(sts["spec"]["replicas"], 3);
    let selector = &sts["spec"]["selector"]["matchLabels"];
    let pod = &sts["spec"]["template"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "the pods match the selector"
        );
    }
    // The budget: at most one member down by choice, over the same pods.
    let (_, pdb) = &m["PodDisruptionBudget/watchfire"];
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    // Services: the headless one the StatefulSet names, and the client one.
    let (_, headless) = &m[&format!("Service/{}", s(&sts["spec"]["serviceName"]))];
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let (_, client) = &m["Service/watchfire"];
    assert!(
        client["spec"]["clusterIP"].is_null(),
        "the client Service has a cluster IP"
    );
    for svc in [headless, client] {
        assert_eq!(&svc["spec"]["selector"], selector);
    }

    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let ctr = &spec["containers"][0];
    let port_names: BTreeMap<&str, u64> = ctr["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (s(&p["name"]), p["containerPort"].as_u64().expect("port")))
        .collect();
    for svc in [headless, client] {
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            let target = s(&p["targetPort"]);
            assert!(port_names.contains_key(target), "Service port {target}");
        }
    }
    assert_eq!(s(&ctr["livenessProbe"]["httpGet"]["path"]), "/-/healthy");
    assert_eq!(s(&ctr["readinessProbe"]["httpGet"]["path"]), "/-/ready");
    for p in ["livenessProbe", "readinessProbe"] {
        assert_eq!(port_names[s(&ctr[p]["httpGet"]["port"])], 9115, "{p}");
    }
    for r in ["requests", "limits"] {
        assert!(
            ctr["resources"][r]["memory"].is_string(),
            "resources.{r}.memory"
        );
    }
    assert!(ctr["resources"]["requests"]["cpu"].is_string());

    // The command line: watchfire run, listening on 9115, the cluster flags from the pod's
    // environment: the database URL from the Secret, the member's id from its pod name.
    let (run, cluster) = run_args(&strings(&ctr["args"]));
    assert_eq!(run.listen[0].port(), 9115);
    check_cluster_flags(&cluster, 3);
    assert_eq!(cluster["--cluster"], "$(DATABASE_URL)");
    assert_eq!(cluster["--cluster.id"], "$(POD_NAME)");
    let env: BTreeMap<&str, &Value> = ctr["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (s(&e["name"]), &e["valueFrom"]))
        .collect();
    assert_eq!(
        s(&env["POD_NAME"]["fieldRef"]["fieldPath"]),
        "metadata.name"
    );
    let (_, secret) = &m["Secret/watchfire-database"];
    for var in ["DATABASE_URL", "WATCHFIRE_STORAGE_URL"] {
        let r = &env[var]["secretKeyRef"];
        assert_eq!(s(&r["name"]), "watchfire-database", "{var}");
        let url = s(&secret["stringData"][s(&r["key"])]);
        assert!(url.starts_with("postgres://"), "{var}: {url}");
    }
    // The config: mounted where --config points, and it loads.
    let mount = &ctr["volumeMounts"][0];
    assert_eq!(
        run.config.to_string_lossy().trim_end_matches('/'),
        s(&mount["mountPath"])
    );
    let vol = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    let (_, cm) = &m[&format!("ConfigMap/{}", s(&vol["configMap"]["name"]))];
    for (file, text) in cm["data"].as_object().expect("data") {
        watchfire::config::load_str(file, s(text))
            .unwrap_or_else(|e| panic!("ConfigMap {file}: {e}"));
    }
}

#[test]
fn the_compose_cluster_is_postgres_and_three_members() {
    let path = repo().join("deploy/compose.yaml");
    let c = yaml(&path);
    let services = c["services"].as_object().expect("services");
    let pg = &services["postgres"];
    assert!(s(&pg["image"]).starts_with("postgres:"));
    assert!(
        pg["healthcheck"]["test"].is_array(),
        "postgres health check"
    );
    let user = s(&pg["environment"]["POSTGRES_USER"]);
    let db = s(&pg["environment"]["POSTGRES_DB"]);
    let mut ids = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let mut members = 0;
    for (name, svc) in services {
        let cmd = if svc["command"].is_array() {
            strings(&svc["command"])
        } else {
            Vec::new()
        };
        if cmd.first() != Some(&"run") {
            continue;
        }
        members += 1;
        let (run, cluster) = run_args(&cmd);
        check_cluster_flags(&cluster, 3);
        assert!(
            ids.insert(cluster["--cluster.id"].clone()),
            "{name}: a unique id"
        );
        // Membership and the store in the same database, on the postgres service.
        let url = url::Url::parse(&cluster["--cluster"]).expect("--cluster is a URL");
        assert_eq!(
            (url.scheme(), url.host_str(), url.username(), url.path()),
            (
                "postgres",
                Some("postgres"),
                user,
                format!("/{db}").as_str()
            ),
            "{name}"
        );
        assert_eq!(
            s(&svc["environment"]["WATCHFIRE_STORAGE_URL"]),
            cluster["--cluster"],
            "{name}: the store is the cluster's database"
        );
        assert_eq!(
            s(&svc["depends_on"]["postgres"]["condition"]),
            "service_healthy",
            "{name}"
        );
        assert!(svc["restart"].is_string() && svc["healthcheck"]["test"].is_array());
        assert_eq!(run.listen[0].port(), 9115, "{name}");
        for p in strings(&svc["ports"]) {
            assert!(p.starts_with("127.0.0.1:"), "{name}: {p} on loopback");
            assert!(
                host_ports.insert(p.split(':').nth(1).unwrap().to_string()),
                "{p}"
            );
        }
        // The config directory mounted at --config (paths relative to deploy/) loads.
        let vol = strings(&svc["volumes"])
            .into_iter()
            .find(|v| {
                v.split(':').nth(1) == Some(run.config.to_string_lossy().trim_end_matches('/'))
            })
            .unwrap_or_else(|| panic!("{name}: nothing mounted at --config"));
        let host = repo().join("deploy").join(vol.split(':').next().unwrap());
        watchfire::config::load(&host).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert_eq!(members, 3);
    // The probed services exist.
    for name in ["inference-gateway", "inference-gateway-backup"] {
        assert!(services.contains_key(name), "{name}");
    }
}
