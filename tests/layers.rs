//! The module layering of DESIGN.md, enforced: every `crate::` path a source file names must
//! belong to its own layer or one below. A new file must be placed in a layer here, or this
//! test fails naming it.
//!
//! ```text
//! app       main, cli, demo, server, verify, sim, adhoc, shutdown, telemetry, report, status
//! runtime   runtime, metrics (the target set and the series rendered from it)
//! features  config, blackbox, failover, memory, web, store, incident, notify, cluster
//! probers   probers (every probe kind)
//! net       net (resolution, sockets, TLS, error classification)
//! core      probe, state, record, schedule, expo, diag, threads, redact, limits, resources
//! ```

use std::path::{Path, PathBuf};

/// Layers, bottom first: (name, top-level modules of `src/`).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "probe",
            "state",
            "record",
            "schedule",
            "expo",
            "diag",
            "threads",
            "redact",
            "limits",
            "resources",
        ],
    ),
    ("net", &["net"]),
    ("probers", &["probers"]),
    (
        "features",
        &[
            "config", "blackbox", "failover", "memory", "web", "store", "incident", "notify",
            "cluster",
        ],
    ),
    ("runtime", &["runtime", "metrics"]),
    (
        "app",
        &[
            "main",
            "lib",
            "cli",
            "demo",
            "server",
            "verify",
            "sim",
            "adhoc",
            "shutdown",
            "telemetry",
            "report",
            "status",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`src/probers/tcp.rs` → `probers`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source text names as `crate::NAME`, outside `#[cfg(test)]` blocks
/// (tests may reach up for fixtures) and comments.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    for (n, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_its_own_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer_of(&module) else {
            unplaced.push(format!("{} (module `{module}`)", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for (line, name) in crate_paths(&text) {
            match layer_of(&name) {
                Some(l) if l > own => upward.push(format!(
                    "{}:{line}: `{module}` ({}) uses crate::{name} ({})",
                    file.strip_prefix(&src).expect("under src").display(),
                    LAYERS[own].0,
                    LAYERS[l].0
                )),
                Some(_) => {}
                None => unplaced.push(format!("crate::{name} named in {}", file.display())),
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules not placed in a layer (add them to LAYERS):\n{}",
        unplaced.join("\n")
    );
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

/// The first cycle among top-level modules (`a -> b -> a`), if any: a module graph without
/// cycles, not only without upward arrows.
fn find_cycle(
    edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).expect("read source");
        for (_, name) in crate_paths(&text) {
            if name != module {
                edges.entry(module.clone()).or_default().insert(name);
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "modules import each other in a cycle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&edges).map(|c| c.len()), Some(4));
}

#[test]
fn the_checker_sees_paths_and_skips_comments_and_tests() {
    let text = "use crate::probe::Reason;\n// crate::runtime in a comment\nfn f() { crate::net::chain(e); }\n#[cfg(test)]\nmod tests { use crate::runtime::Runtime; }\n";
    let got: Vec<String> = crate_paths(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(got, ["probe", "net"]);
}
