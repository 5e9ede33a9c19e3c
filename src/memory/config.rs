//! The `memory:` section: which containers to watch and where their cgroup is found.
//!
//! ```yaml
//! memory:
//!   - docker: inference-gateway          # container name (exact, or a unique prefix) or ID
//!   - name: gateway-backup               # the `container` label
//!     cgroup: system.slice/gateway.service   # relative to cgroup_root, or absolute
//!   - name: sim
//!     pid: 4242                          # its cgroup is read from /proc/4242/cgroup
//!     cgroup_root: /host/sys/fs/cgroup   # where the cgroup filesystem is mounted
//! ```
//!
//! Parsed here (not in `config::raw`/`config::check`) so the memory feature stays one module:
//! [`RawWatch`] is the serde shape, [`check_section`] turns it into [`Watch`]es and reports every
//! problem with its file, line and field like the rest of the config.

use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Origin};

/// Where the cgroup filesystem is mounted unless `cgroup_root` says otherwise.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Docker's data directory unless `docker_root` says otherwise.
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
/// Where processes are listed (only tests change it).
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// One entry of `memory:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    /// The `container` label; defaults to the `docker` value when that is set.
    pub name: Option<Spanned<String>>,
    /// A cgroup directory (v1 memory controller or v2): absolute, or relative to `cgroup_root`.
    pub cgroup: Option<Spanned<String>>,
    /// A process ID; its cgroup is looked up in `/proc/PID/cgroup` on every read.
    pub pid: Option<Spanned<u32>>,
    /// A Docker container: full or abbreviated ID, or name (exact, or a unique prefix).
    pub docker: Option<Spanned<String>>,
    /// Where the cgroup filesystem is mounted (`/sys/fs/cgroup`; in a container, wherever the
    /// host's is bind-mounted).
    pub cgroup_root: Option<Spanned<String>>,
    /// Docker's data directory; names are looked up in `containers/*/config.v2.json`.
    pub docker_root: Option<Spanned<String>>,
}

/// A checked memory watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The `container` label value; unique.
    pub name: String,
    /// How the cgroup is found.
    pub source: Source,
    /// Filesystem roots used to find it.
    pub roots: Roots,
    /// Where the watch was defined.
    pub origin: Origin,
}

impl Watch {
    /// A watch built in code (tests, embedding) with the default roots.
    pub fn new(name: impl Into<String>, source: Source) -> Watch {
        Watch {
            name: name.into(),
            source,
            roots: Roots::default(),
            origin: Origin::default(),
        }
    }

    /// True when a reload may keep what was read for `self` (same label, same container).
    pub fn same_watch(&self, other: &Watch) -> bool {
        self.name == other.name && self.source == other.source && self.roots == other.roots
    }
}

/// How a watch's cgroup is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A cgroup directory: absolute, or relative to the cgroup root.
    Cgroup(PathBuf),
    /// The cgroup of a process, looked up on every read (processes move and exit).
    Pid(u32),
    /// A Docker container by ID (or unique ID prefix) or name (exact, or unique prefix).
    Docker(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Cgroup(p) => write!(f, "cgroup {}", p.display()),
            Source::Pid(p) => write!(f, "pid {p}"),
            Source::Docker(d) => write!(f, "docker {d}"),
        }
    }
}

/// The filesystem roots a watch is resolved under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// The cgroup mount (v2: the unified hierarchy; v1: the directory holding `memory/`).
    pub cgroup: PathBuf,
    /// Docker's data directory.
    pub docker: PathBuf,
    /// procfs.
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            cgroup: PathBuf::from(DEFAULT_CGROUP_ROOT),
            docker: PathBuf::from(DEFAULT_DOCKER_ROOT),
            proc: PathBuf::from(DEFAULT_PROC_ROOT),
        }
    }
}

/// Checks the `memory:` entries of the file `diag` is at, appending good watches to `out`
/// (which holds the watches of earlier files, for the duplicate check) and recording problems
/// in `diag`.
pub fn check_section(diag: &mut Diagnostics, raw: &[Spanned<RawWatch>], out: &mut Vec<Watch>) {
    for (i, w) in raw.iter().enumerate() {
        let field = format!("memory[{i}]");
        if let Some(watch) = check_watch(diag, w, &field, out) {
            out.push(watch);
        }
    }
}

fn check_watch(
    diag: &mut Diagnostics,
    w: &Spanned<RawWatch>,
    field: &str,
    earlier: &[Watch],
) -> Option<Watch> {
    let before = diag.count();
    let source = source(diag, w, field);
    let name = watch_name(diag, w, field, earlier);
    let roots = roots(diag, &w.value, field);
    if diag.count() > before {
        return None;
    }
    Some(Watch {
        name: name?,
        source: source?,
        roots,
        origin: Origin {
            file: diag.file().to_path_buf(),
            line: w.referenced.line(),
        },
    })
}

/// Where the watch's cgroup is found: exactly one of `cgroup`, `pid` or `docker`.
fn source(diag: &mut Diagnostics, w: &Spanned<RawWatch>, field: &str) -> Option<Source> {
    let r = &w.value;
    if r.cgroup.is_none() && r.pid.is_none() && r.docker.is_none() {
        diag.error(
            w,
            format!("{field}.cgroup"),
            "missing: say where the container is with one of `cgroup`, `pid` or `docker`",
        );
    }
    let source = if let Some(c) = &r.cgroup {
        let p = c.value.trim();
        if p.is_empty() {
            diag.error(c, format!("{field}.cgroup"), "must not be empty");
        }
        Some(Source::Cgroup(PathBuf::from(p)))
    } else {
        None
    };
    let source = match (&r.pid, source) {
        (Some(p), Some(_)) => {
            diag.error(
                p,
                format!("{field}.pid"),
                "set only one of `cgroup`, `pid` or `docker`",
            );
            None
        }
        (Some(p), None) if p.value == 0 => {
            diag.error(
                p,
                format!("{field}.pid"),
                "must be a process ID (1 or more)",
            );
            None
        }
        (Some(p), None) => Some(Source::Pid(p.value)),
        (None, s) => s,
    };
    match (&r.docker, source) {
        (Some(d), Some(_)) => {
            diag.error(
                d,
                format!("{field}.docker"),
                "set only one of `cgroup`, `pid` or `docker`",
            );
            None
        }
        (Some(d), None) => {
            let v = d.value.trim().trim_start_matches('/');
            if valid_docker_ref(v) {
                Some(Source::Docker(v.to_string()))
            } else {
                diag.error(
                    d,
                    format!("{field}.docker"),
                    format!(
                        "`{}` is not a Docker container ID or name (letters, digits, `_`, `.`, `-`)",
                        d.value
                    ),
                );
                None
            }
        }
        (None, s) => s,
    }
}

/// The `container` label: `name`, else the `docker` value; unique across the config.
fn watch_name(
    diag: &mut Diagnostics,
    w: &Spanned<RawWatch>,
    field: &str,
    earlier: &[Watch],
) -> Option<String> {
    let r = &w.value;
    let name = match (&r.name, &r.docker) {
        (Some(n), _) if valid_name(&n.value) => Some(n.value.clone()),
        (Some(n), _) => {
            diag.error(
                n,
                format!("{field}.name"),
                format!(
                    "`{}` is not a usable name: use letters, digits, `-`, `_`, `.`, `/`, `:` (1–128 characters)",
                    n.value
                ),
            );
            None
        }
        (None, Some(d)) => Some(d.value.trim().trim_start_matches('/').to_string()),
        (None, None) if r.cgroup.is_some() || r.pid.is_some() => {
            diag.error(
                w,
                format!("{field}.name"),
                "missing: a `cgroup` or `pid` watch needs a `name` (the `container` label)",
            );
            None
        }
        (None, None) => None,
    };
    if let Some(n) = &name {
        if let Some(first) = earlier.iter().find(|x| &x.name == n) {
            let at = r
                .name
                .as_ref()
                .map(|s| s.referenced)
                .unwrap_or(w.referenced);
            diag.error(
                at,
                format!("{field}.name"),
                format!(
                    "duplicate name `{n}` (first defined at {}:{})",
                    first.origin.file.display(),
                    first.origin.line
                ),
            );
        }
    }
    name
}

/// The filesystem roots, defaults unless `cgroup_root` / `docker_root` are set.
fn roots(diag: &mut Diagnostics, r: &RawWatch, field: &str) -> Roots {
    let mut roots = Roots::default();
    if let Some(c) = &r.cgroup_root {
        match absolute(&c.value) {
            Some(p) => roots.cgroup = p,
            None => diag.error(
                c,
                format!("{field}.cgroup_root"),
                format!("`{}` must be an absolute path", c.value),
            ),
        }
    }
    if let Some(d) = &r.docker_root {
        match absolute(&d.value) {
            Some(p) => roots.docker = p,
            None => diag.error(
                d,
                format!("{field}.docker_root"),
                format!("`{}` must be an absolute path", d.value),
            ),
        }
    }
    roots
}

fn absolute(s: &str) -> Option<PathBuf> {
    let p = PathBuf::from(s.trim());
    p.is_absolute().then_some(p)
}

/// A `container` label value: what `targets[].name` accepts.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}

/// Docker IDs are hex; names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_docker_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> (Vec<Watch>, Vec<crate::diag::ConfigError>) {
        #[derive(Deserialize)]
        struct File {
            memory: Vec<Spanned<RawWatch>>,
        }
        let f: File = serde_saphyr::from_str(yaml).expect("test YAML parses");
        let (mut out, mut diag) = (Vec::new(), Diagnostics::new("m.yaml"));
        check_section(&mut diag, &f.memory, &mut out);
        (out, diag.into_errors())
    }

    #[test]
    fn docker_watch_takes_its_name_from_the_container() {
        let (w, e) = check("memory:\n  - docker: /inference-gateway\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(w[0].name, "inference-gateway");
        assert_eq!(w[0].source, Source::Docker("inference-gateway".into()));
        assert_eq!(w[0].roots, Roots::default());
        assert_eq!(w[0].origin.line, 2);
    }

    #[test]
    fn cgroup_and_pid_watches_need_a_name() {
        let (w, e) = check("memory:\n  - cgroup: system.slice/x.scope\n  - pid: 7\n");
        assert!(w.is_empty());
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].line, e[0].field.as_str()), (2, "memory[0].name"));
        assert_eq!((e[1].line, e[1].field.as_str()), (3, "memory[1].name"));
    }

    #[test]
    fn exactly_one_source_is_required() {
        let (_, e) = check("memory:\n  - name: a\n  - name: b\n    pid: 3\n    docker: x\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!((e[0].line, e[0].field.as_str()), (2, "memory[0].cgroup"));
        assert!(e[0].message.contains("one of `cgroup`, `pid` or `docker`"));
        assert_eq!((e[1].line, e[1].field.as_str()), (5, "memory[1].docker"));
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let (_, e) = check(
            "memory:\n  - name: a\n    pid: 0\n  - name: b\n    docker: 'no spaces'\n  - name: c\n    cgroup: /x\n    cgroup_root: relative\n  - name: 'd e'\n    pid: 4\n",
        );
        let got: Vec<_> = e.iter().map(|x| (x.line, x.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, "memory[0].pid"),
                (5, "memory[1].docker"),
                (8, "memory[2].cgroup_root"),
                (9, "memory[3].name"),
            ]
        );
    }

    #[test]
    fn duplicate_names_point_at_the_first() {
        let (w, e) = check("memory:\n  - docker: gw\n  - name: gw\n    pid: 9\n");
        assert_eq!(w.len(), 1);
        assert_eq!((e[0].line, e[0].field.as_str()), (3, "memory[1].name"));
        assert!(e[0].message.contains("m.yaml:2"), "{}", e[0].message);
    }

    #[test]
    fn the_config_loader_reports_memory_errors_with_file_line_and_field() {
        let e =
            crate::config::load_str("f.yaml", "memory:\n  - name: a\n    pid: 1\n    bogus: 2\n")
                .unwrap_err()
                .0;
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (4, "memory[0].bogus"),
            "{e:?}"
        );
        assert!(e[0].to_string().starts_with("f.yaml:4:"), "{}", e[0]);
        let e = crate::config::load_str("f.yaml", "memory:\n  - name: a\n    pid: -3\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (3, "memory[0].pid"),
            "{e:?}"
        );
        let e = crate::config::load_str("f.yaml", "targets: []\nmemory:\n  - name: a\n")
            .unwrap_err()
            .0;
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (3, "memory[0].cgroup"),
            "{e:?}"
        );
        let c = crate::config::load_str("f.yaml", "memory:\n  - docker: gw\n").unwrap();
        assert_eq!(c.memory[0].name, "gw");
    }

    #[test]
    fn roots_are_taken_when_absolute() {
        let (w, e) = check(
            "memory:\n  - name: s\n    pid: 42\n    cgroup_root: /host/cgroup\n    docker_root: /d\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(w[0].source, Source::Pid(42));
        assert_eq!(w[0].roots.cgroup, PathBuf::from("/host/cgroup"));
        assert_eq!(w[0].roots.docker, PathBuf::from("/d"));
    }
}
