//! Finding a watch's cgroup directory: a path (v1 or v2), a process's cgroup from
//! `/proc/PID/cgroup`, or a Docker container's scope at the usual places.
//!
//! Docker puts a container's cgroup at (cgroup v2 / v1, systemd / cgroupfs driver):
//! `system.slice/docker-ID.scope`, `docker/ID`, `memory/system.slice/docker-ID.scope`,
//! `memory/docker/ID` under the cgroup root. Names are not in the cgroup tree: they are read
//! from Docker's `containers/ID/config.v2.json` (`"Name": "/inference-gateway"`), which only
//! Docker's user (root) can read; watching by ID needs no such access.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::cgroup::{read_small, version_of, Failure, Problem};
use super::config::{Roots, Source, Watch};

/// Where Docker puts container cgroups, relative to the cgroup root: (directory, name prefix,
/// name suffix). v2 first: on a hybrid host the v1 `memory/` places are the ones with data.
const DOCKER_PLACES: [(&str, &str, &str); 4] = [
    ("system.slice", "docker-", ".scope"),
    ("docker", "", ""),
    ("memory/system.slice", "docker-", ".scope"),
    ("memory/docker", "", ""),
];

/// The cgroup directory of `w`. `cached` is the directory found last time (Docker only: a
/// name lookup is a directory scan, so it is redone only when the container's cgroup is gone).
pub fn locate(w: &Watch, cached: Option<&Path>) -> Result<PathBuf, Failure> {
    match &w.source {
        Source::Cgroup(p) => cgroup_path(&w.roots, p),
        Source::Pid(pid) => pid_cgroup(&w.roots, *pid),
        Source::Docker(r) => match cached {
            Some(dir) if dir.is_dir() => Ok(dir.to_path_buf()),
            _ => docker(&w.roots, r),
        },
    }
}

/// The first candidate that is a memory cgroup, else the first that exists, else `Gone`.
fn pick(candidates: Vec<PathBuf>, what: &str) -> Result<PathBuf, Failure> {
    if let Some(c) = candidates.iter().find(|c| version_of(c).is_some()) {
        return Ok(c.clone());
    }
    if let Some(c) = candidates.iter().find(|c| c.exists()) {
        return Ok(c.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(Failure::new(
        Problem::Gone,
        format!("{what} does not exist (looked at {})", tried.join(", ")),
    ))
}

/// A configured path: absolute as is; relative under the root (v2) or `root/memory` (v1).
fn cgroup_path(roots: &Roots, p: &Path) -> Result<PathBuf, Failure> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    pick(
        vec![roots.cgroup.join(p), roots.cgroup.join("memory").join(p)],
        &format!("cgroup `{}`", p.display()),
    )
}

/// A cgroup path from `/proc/PID/cgroup`, relative to the hierarchy's root.
fn under(root: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The memory cgroup of a process: the v1 `memory` line, else the v2 `0::` line.
fn pid_cgroup(roots: &Roots, pid: u32) -> Result<PathBuf, Failure> {
    let path = roots.proc.join(pid.to_string()).join("cgroup");
    let text = read_small(&path).map_err(|f| match f.problem {
        Problem::Gone => Failure::new(Problem::Gone, format!("process {pid} is not running")),
        _ => f,
    })?;
    let mut v1 = None;
    let mut v2 = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(rel)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Failure::new(
                Problem::Unparsable,
                format!(
                    "{}: expected `id:controllers:path`, found `{}`",
                    path.display(),
                    line.escape_default()
                ),
            ));
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(rel.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(rel.to_string());
        }
    }
    let mut candidates = Vec::new();
    if let Some(rel) = &v1 {
        candidates.push(under(&roots.cgroup.join("memory"), rel));
    }
    if let Some(rel) = &v2 {
        candidates.push(under(&roots.cgroup, rel));
        candidates.push(under(&roots.cgroup.join("unified"), rel));
    }
    if candidates.is_empty() {
        return Err(Failure::new(
            Problem::NoMemoryController,
            format!(
                "{} names neither a v1 memory cgroup nor a v2 cgroup",
                path.display()
            ),
        ));
    }
    pick(candidates, &format!("the cgroup of process {pid}"))
}

/// A running container's cgroup directory: (full ID, directory).
fn docker_cgroups(roots: &Roots) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for (dir, prefix, suffix) in DOCKER_PLACES {
        let base = roots.cgroup.join(dir);
        let entries = match std::fs::read_dir(&base) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::io(&base, &e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_prefix(prefix)
                .and_then(|n| n.strip_suffix(suffix))
            else {
                continue;
            };
            if is_full_id(id) && !out.iter().any(|(x, _)| x == id) && entry.path().is_dir() {
                out.push((id.to_string(), entry.path()));
            }
        }
    }
    Ok(out)
}

fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every container Docker knows (running or not): (full ID, name without the `/`).
fn docker_names(roots: &Roots) -> Result<Vec<(String, String)>, Failure> {
    #[derive(serde::Deserialize)]
    struct ContainerConfig {
        #[serde(rename = "ID")]
        id: String,
        #[serde(rename = "Name")]
        name: String,
    }
    let base = roots.docker.join("containers");
    let entries = match std::fs::read_dir(&base) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Failure::io(&base, &e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("config.v2.json");
        // Docker's own file: one that cannot be read or parsed is skipped, not fatal — the
        // container may be being created or removed right now.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match serde_json::from_str::<ContainerConfig>(&text) {
            Ok(c) if is_full_id(&c.id) => {
                out.push((c.id, c.name.trim_start_matches('/').to_string()))
            }
            _ => {
                tracing::debug!(path = %path.display(), "skipping an unreadable Docker container config")
            }
        }
    }
    Ok(out)
}

/// Resolves a Docker ID or name to the container's cgroup directory.
///
/// An exact name wins; otherwise the reference must be a prefix of exactly one container's ID
/// or name. A container Docker knows but whose cgroup is missing is stopped: `Gone`.
fn docker(roots: &Roots, r: &str) -> Result<PathBuf, Failure> {
    let running = docker_cgroups(roots)?;
    let names = docker_names(roots);
    let hex = r.bytes().all(|b| b.is_ascii_hexdigit());
    // (ID, name when known)
    let mut matches: Vec<(String, Option<String>)> = Vec::new();
    let exact = names
        .as_ref()
        .ok()
        .and_then(|ns| ns.iter().find(|(_, n)| n == r).cloned());
    if let Some((id, name)) = exact {
        matches.push((id, Some(name)));
    } else {
        if hex {
            for (id, _) in &running {
                if id.starts_with(r) {
                    matches.push((id.clone(), None));
                }
            }
            if let Ok(ns) = &names {
                for (id, _) in ns.iter().filter(|(id, _)| id.starts_with(r)) {
                    if !matches.iter().any(|(m, _)| m == id) {
                        matches.push((id.clone(), None));
                    }
                }
            }
        }
        if let Ok(ns) = &names {
            for (id, name) in ns.iter().filter(|(_, n)| n.starts_with(r)) {
                match matches.iter_mut().find(|(m, _)| m == id) {
                    Some(m) => m.1 = Some(name.clone()),
                    None => matches.push((id.clone(), Some(name.clone()))),
                }
            }
        }
        // Name the ID matches too, for the messages.
        if let Ok(ns) = &names {
            for m in matches.iter_mut().filter(|m| m.1.is_none()) {
                m.1 = ns.iter().find(|(id, _)| *id == m.0).map(|(_, n)| n.clone());
            }
        }
    }
    match matches.as_slice() {
        [] => match names {
            Err(f) if f.problem == Problem::PermissionDenied => Err(Failure::new(
                Problem::PermissionDenied,
                format!(
                    "no running container's ID starts with `{r}`, and Docker's names cannot be read: {} — run as Docker's user (root) with it mounted read-only, or watch by container ID",
                    f.detail
                ),
            )),
            _ => Err(Failure::new(
                Problem::NoMatch,
                format!(
                    "no Docker container ID or name matches `{r}` (looked under {} and {})",
                    roots.cgroup.display(),
                    roots.docker.join("containers").display()
                ),
            )),
        },
        [(id, name)] => match running.iter().find(|(x, _)| x == id) {
            Some((_, dir)) => Ok(dir.clone()),
            None => Err(Failure::new(
                Problem::Gone,
                format!(
                    "Docker container {} ({}) has no cgroup: it is not running",
                    name.as_deref().unwrap_or("?"),
                    &id[..12]
                ),
            )),
        },
        many => {
            let listed: Vec<String> = many
                .iter()
                .map(|(id, n)| format!("{} ({})", n.as_deref().unwrap_or("?"), &id[..12]))
                .collect();
            Err(Failure::new(
                Problem::Ambiguous,
                format!(
                    "`{r}` matches {} Docker containers: {}; write more of the name or ID",
                    many.len(),
                    listed.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const ID_GW: &str = "3f2a9c0b1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
    const ID_BACKUP: &str = "3f2b000000000000000000000000000000000000000000000000000000000001";
    const ID_STOPPED: &str = "aaaa000000000000000000000000000000000000000000000000000000000002";

    fn mem_v2(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("memory.current"), "1").unwrap();
    }

    fn mem_v1(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("memory.usage_in_bytes"), "1").unwrap();
    }

    fn docker_config(root: &Path, id: &str, name: &str) {
        let d = root.join("containers").join(id);
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("config.v2.json"),
            format!("{{\"ID\":\"{id}\",\"Name\":\"/{name}\",\"State\":{{\"Running\":true}}}}"),
        )
        .unwrap();
    }

    fn roots(t: &Path) -> Roots {
        Roots {
            cgroup: t.join("cgroup"),
            docker: t.join("docker"),
            proc: t.join("proc"),
        }
    }

    fn watch(t: &Path, source: Source) -> Watch {
        Watch {
            roots: roots(t),
            ..Watch::new("w", source)
        }
    }

    #[test]
    fn relative_cgroup_paths_resolve_under_v2_then_v1() {
        let t = tempfile::tempdir().unwrap();
        let v1 = t.path().join("cgroup/memory/app.slice");
        mem_v1(&v1);
        let w = watch(t.path(), Source::Cgroup("app.slice".into()));
        assert_eq!(locate(&w, None).unwrap(), v1);
        let v2 = t.path().join("cgroup/app.slice");
        mem_v2(&v2);
        assert_eq!(locate(&w, None).unwrap(), v2);
        let missing = watch(t.path(), Source::Cgroup("nope.slice".into()));
        let f = locate(&missing, None).unwrap_err();
        assert_eq!(f.problem, Problem::Gone);
        assert!(f.detail.contains("nope.slice"), "{f}");
    }

    #[test]
    fn pid_finds_the_v1_memory_line_or_the_v2_line() {
        let t = tempfile::tempdir().unwrap();
        let proc = t.path().join("proc/42");
        fs::create_dir_all(&proc).unwrap();
        fs::write(
            proc.join("cgroup"),
            "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n",
        )
        .unwrap();
        let dir = t.path().join("cgroup/memory/process_api/abc");
        mem_v1(&dir);
        let w = watch(t.path(), Source::Pid(42));
        assert_eq!(locate(&w, None).unwrap(), dir);

        fs::write(proc.join("cgroup"), "0::/system.slice/gw.service\n").unwrap();
        let dir = t.path().join("cgroup/system.slice/gw.service");
        mem_v2(&dir);
        assert_eq!(locate(&w, None).unwrap(), dir);
    }

    #[test]
    fn exited_pid_is_gone_and_garbage_is_unparsable() {
        let t = tempfile::tempdir().unwrap();
        let f = locate(&watch(t.path(), Source::Pid(7)), None).unwrap_err();
        assert_eq!(f.problem, Problem::Gone);
        assert!(f.detail.contains("process 7 is not running"), "{f}");
        let proc = t.path().join("proc/8");
        fs::create_dir_all(&proc).unwrap();
        fs::write(proc.join("cgroup"), "nonsense\n").unwrap();
        let f = locate(&watch(t.path(), Source::Pid(8)), None).unwrap_err();
        assert_eq!(f.problem, Problem::Unparsable);
    }

    /// Two running containers (v2 systemd and v1 cgroupfs places) and a stopped one.
    fn docker_host(t: &Path) {
        let r = roots(t);
        mem_v2(&r.cgroup.join(format!("system.slice/docker-{ID_GW}.scope")));
        mem_v1(&r.cgroup.join(format!("memory/docker/{ID_BACKUP}")));
        // Not containers: ignored.
        mem_v2(&r.cgroup.join("system.slice/docker.service"));
        docker_config(&r.docker, ID_GW, "inference-gateway");
        docker_config(&r.docker, ID_BACKUP, "inference-gateway-backup");
        docker_config(&r.docker, ID_STOPPED, "batch-job");
    }

    fn docker_locate(t: &Path, r: &str) -> Result<PathBuf, Failure> {
        locate(&watch(t, Source::Docker(r.into())), None)
    }

    #[test]
    fn docker_exact_name_wins_over_a_longer_name_with_the_same_prefix() {
        let t = tempfile::tempdir().unwrap();
        docker_host(t.path());
        let dir = docker_locate(t.path(), "inference-gateway").unwrap();
        assert!(dir.ends_with(format!("docker-{ID_GW}.scope")), "{dir:?}");
        let dir = docker_locate(t.path(), "inference-gateway-b").unwrap();
        assert!(
            dir.ends_with(format!("memory/docker/{ID_BACKUP}")),
            "{dir:?}"
        );
    }

    #[test]
    fn docker_id_prefixes_resolve_when_unique() {
        let t = tempfile::tempdir().unwrap();
        docker_host(t.path());
        let dir = docker_locate(t.path(), &ID_GW[..12]).unwrap();
        assert!(dir.ends_with(format!("docker-{ID_GW}.scope")));
        let f = docker_locate(t.path(), "3f2").unwrap_err();
        assert_eq!(f.problem, Problem::Ambiguous);
        assert!(
            f.detail.contains("inference-gateway (3f2a9c0b1d4e)")
                && f.detail.contains("inference-gateway-backup (3f2b00000000)"),
            "{f}"
        );
    }

    #[test]
    fn docker_ambiguous_name_prefix_no_match_and_stopped() {
        let t = tempfile::tempdir().unwrap();
        docker_host(t.path());
        let f = docker_locate(t.path(), "inference").unwrap_err();
        assert_eq!(f.problem, Problem::Ambiguous);
        let f = docker_locate(t.path(), "nginx").unwrap_err();
        assert_eq!(f.problem, Problem::NoMatch);
        assert!(f.detail.contains("`nginx`"), "{f}");
        let f = docker_locate(t.path(), "batch").unwrap_err();
        assert_eq!(f.problem, Problem::Gone);
        assert!(f.detail.contains("not running"), "{f}");
    }

    #[test]
    fn docker_by_id_works_without_docker_s_data_directory() {
        let t = tempfile::tempdir().unwrap();
        docker_host(t.path());
        fs::remove_dir_all(t.path().join("docker")).unwrap();
        assert!(docker_locate(t.path(), ID_BACKUP).is_ok());
        assert_eq!(
            docker_locate(t.path(), "inference-gateway")
                .unwrap_err()
                .problem,
            Problem::NoMatch
        );
    }

    #[test]
    fn docker_cache_is_used_while_it_exists_and_dropped_when_gone() {
        let t = tempfile::tempdir().unwrap();
        docker_host(t.path());
        let w = watch(t.path(), Source::Docker("inference-gateway".into()));
        let first = locate(&w, None).unwrap();
        // The container is recreated under a new ID: the cached directory vanishes.
        fs::remove_dir_all(&first).unwrap();
        let new_id = "bbbb000000000000000000000000000000000000000000000000000000000003";
        fs::remove_dir_all(t.path().join("docker/containers").join(ID_GW)).unwrap();
        docker_config(&t.path().join("docker"), new_id, "inference-gateway");
        let again = t
            .path()
            .join(format!("cgroup/system.slice/docker-{new_id}.scope"));
        mem_v2(&again);
        assert_eq!(locate(&w, Some(&first)).unwrap(), again);
        assert_eq!(locate(&w, Some(&again)).unwrap(), again);
    }

    #[test]
    fn io_errors_are_classified_by_kind() {
        let p = Path::new("/x");
        let e = std::io::Error::from(ErrorKind::PermissionDenied);
        assert_eq!(Failure::io(p, &e).problem, Problem::PermissionDenied);
        let e = std::io::Error::from(ErrorKind::NotFound);
        assert_eq!(Failure::io(p, &e).problem, Problem::Gone);
        let e = std::io::Error::from(ErrorKind::InvalidData);
        assert_eq!(Failure::io(p, &e).problem, Problem::Unparsable);
        let e = std::io::Error::other("boom");
        assert_eq!(Failure::io(p, &e).problem, Problem::IoError);
    }
}
