//! Reading one cgroup's memory files, v1 or v2, into a [`Sample`] — or a [`Failure`] with a
//! reason from a fixed set. Nothing is ever guessed: a file that is missing, unreadable or
//! holds something other than what the kernel writes is a failure, not a zero.
//!
//! | value | cgroup v2 | cgroup v1 |
//! | --- | --- | --- |
//! | usage | `memory.current` | `memory.usage_in_bytes` |
//! | limit | `memory.max` (`max` = none) | `memory.limit_in_bytes` (> 2^62 = none) |
//! | working set | usage − `inactive_file` of `memory.stat` | usage − `total_inactive_file` |
//! | rss / cache | `anon` / `file` | `total_rss` / `total_cache` |
//! | OOM kills | `oom_kill` of `memory.events` | `oom_kill` of `memory.oom_control` (4.13+) |
//!
//! These are cAdvisor's definitions, so its dashboards and the runbook's expressions mean the
//! same thing on watchfire's series.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Limits above this are "unlimited" (the kernel rounds its maximum; cAdvisor uses the same
/// cut-off and then reports 0).
pub const UNLIMITED_ABOVE: u64 = 1 << 62;

/// Largest memory file read (the biggest, `memory.stat`, is a few KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Which cgroup interface a directory speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The legacy per-controller hierarchy (`memory.usage_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.current`).
    V2,
}

/// One read of a container's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The directory read.
    pub dir: PathBuf,
    /// Which interface it speaks.
    pub version: Version,
    /// Usage, bytes (page cache included).
    pub usage: u64,
    /// Usage minus inactive file cache: what the OOM killer looks at.
    pub working_set: u64,
    /// The limit; `None` when unlimited.
    pub limit: Option<u64>,
    /// Anonymous memory, when `memory.stat` reports it.
    pub rss: Option<u64>,
    /// Page cache, when `memory.stat` reports it.
    pub cache: Option<u64>,
    /// OOM kills in this cgroup, when the kernel reports them.
    pub oom_kills: Option<u64>,
}

/// Why a watch could not be read: a closed set, used as a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The cgroup, process or container does not exist (any more).
    Gone,
    /// A file or directory could not be read for lack of permission.
    PermissionDenied,
    /// A file held something other than what the kernel writes there.
    Unparsable,
    /// The directory exists but has no memory accounting files.
    NoMemoryController,
    /// A Docker ID or name matched no container.
    NoMatch,
    /// A Docker ID prefix or name prefix matched several containers.
    Ambiguous,
    /// Any other I/O error.
    IoError,
}

impl Problem {
    /// Every problem, in label order.
    pub const ALL: [Problem; 7] = [
        Problem::Gone,
        Problem::PermissionDenied,
        Problem::Unparsable,
        Problem::NoMemoryController,
        Problem::NoMatch,
        Problem::Ambiguous,
        Problem::IoError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Gone => "gone",
            Problem::PermissionDenied => "permission_denied",
            Problem::Unparsable => "unparsable",
            Problem::NoMemoryController => "no_memory_controller",
            Problem::NoMatch => "no_match",
            Problem::Ambiguous => "ambiguous",
            Problem::IoError => "io_error",
        }
    }
}

/// A failed read: the reason and a human detail (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason.
    pub problem: Problem,
    /// What exactly, with the path.
    pub detail: String,
}

impl Failure {
    /// A failure with a detail.
    pub fn new(problem: Problem, detail: impl Into<String>) -> Failure {
        Failure {
            problem,
            detail: detail.into(),
        }
    }

    /// Classifies an I/O error on `path`.
    pub fn io(path: &Path, e: &std::io::Error) -> Failure {
        let problem = match e.kind() {
            ErrorKind::NotFound => Problem::Gone,
            ErrorKind::PermissionDenied => Problem::PermissionDenied,
            ErrorKind::InvalidData => Problem::Unparsable,
            _ => Problem::IoError,
        };
        Failure::new(problem, format!("{}: {e}", path.display()))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.problem.as_str())
    }
}

/// Reads a small text file (bounded).
pub fn read_small(path: &Path) -> Result<String, Failure> {
    let f = File::open(path).map_err(|e| Failure::io(path, &e))?;
    let mut s = String::new();
    f.take(MAX_FILE_BYTES)
        .read_to_string(&mut s)
        .map_err(|e| Failure::io(path, &e))?;
    Ok(s)
}

/// Like [`read_small`], but a missing file is `None` (for files older kernels lack).
fn read_optional(path: &Path) -> Result<Option<String>, Failure> {
    match read_small(path) {
        Ok(s) => Ok(Some(s)),
        Err(f) if f.problem == Problem::Gone => Ok(None),
        Err(f) => Err(f),
    }
}

/// Which interface `dir` speaks, if it is a memory cgroup at all.
pub fn version_of(dir: &Path) -> Option<Version> {
    if dir.join("memory.current").is_file() {
        Some(Version::V2)
    } else if dir.join("memory.usage_in_bytes").is_file() {
        Some(Version::V1)
    } else {
        None
    }
}

/// Reads the memory of the cgroup at `dir`.
pub fn read(dir: &Path) -> Result<Sample, Failure> {
    let meta = std::fs::metadata(dir).map_err(|e| Failure::io(dir, &e))?;
    if !meta.is_dir() {
        return Err(Failure::new(
            Problem::NoMemoryController,
            format!("{} is not a directory", dir.display()),
        ));
    }
    match version_of(dir) {
        Some(Version::V2) => read_v2(dir),
        Some(Version::V1) => read_v1(dir),
        None => {
            // Tell a vanished cgroup (removed between the two checks) from a wrong directory.
            if !dir.is_dir() {
                return Err(Failure::new(
                    Problem::Gone,
                    format!("{} disappeared", dir.display()),
                ));
            }
            Err(Failure::new(
                Problem::NoMemoryController,
                format!(
                    "{} has neither memory.current (v2) nor memory.usage_in_bytes (v1): not a memory cgroup",
                    dir.display()
                ),
            ))
        }
    }
}

fn read_v2(dir: &Path) -> Result<Sample, Failure> {
    let usage = number(&dir.join("memory.current"))?;
    let max_path = dir.join("memory.max");
    let max = read_small(&max_path)?;
    let limit = match max.trim() {
        "max" => None,
        t => Some(parse_u64(t).ok_or_else(|| garbage(&max_path, &max))?),
    };
    let stat = Stat::read(&dir.join("memory.stat"))?;
    let events_path = dir.join("memory.events");
    let oom_kills = match read_optional(&events_path)? {
        Some(text) => Stat::parse(&events_path, &text)?.get("oom_kill"),
        None => None,
    };
    Ok(Sample {
        dir: dir.to_path_buf(),
        version: Version::V2,
        usage,
        working_set: working_set(usage, stat.get("inactive_file")),
        limit: limit.filter(|&l| l <= UNLIMITED_ABOVE),
        rss: stat.get("anon"),
        cache: stat.get("file"),
        oom_kills,
    })
}

fn read_v1(dir: &Path) -> Result<Sample, Failure> {
    let usage = number(&dir.join("memory.usage_in_bytes"))?;
    let limit = number(&dir.join("memory.limit_in_bytes"))?;
    let stat = Stat::read(&dir.join("memory.stat"))?;
    let oom_path = dir.join("memory.oom_control");
    let oom_kills = match read_optional(&oom_path)? {
        Some(text) => Stat::parse(&oom_path, &text)?.get("oom_kill"),
        None => None,
    };
    // `total_*` include the children of the cgroup, as usage_in_bytes does.
    let pick = |k: &str| stat.get(&format!("total_{k}")).or_else(|| stat.get(k));
    Ok(Sample {
        dir: dir.to_path_buf(),
        version: Version::V1,
        usage,
        working_set: working_set(usage, pick("inactive_file")),
        limit: (limit <= UNLIMITED_ABOVE).then_some(limit),
        rss: pick("rss"),
        cache: pick("cache"),
        oom_kills,
    })
}

/// cAdvisor's working set: usage minus inactive file pages, never below zero.
fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn garbage(path: &Path, text: &str) -> Failure {
    let shown: String = text.trim().chars().take(40).collect();
    Failure::new(
        Problem::Unparsable,
        format!(
            "{}: expected a number of bytes, found `{}`",
            path.display(),
            shown.escape_default()
        ),
    )
}

fn number(path: &Path) -> Result<u64, Failure> {
    let text = read_small(path)?;
    parse_u64(&text).ok_or_else(|| garbage(path, &text))
}

/// A flat `key value` file (`memory.stat`, `memory.events`, `memory.oom_control`).
struct Stat(Vec<(String, u64)>);

impl Stat {
    fn read(path: &Path) -> Result<Stat, Failure> {
        let text = read_small(path)?;
        Stat::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Stat, Failure> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad_line(path, i, line));
            };
            let Some(v) = parse_u64(v) else {
                return Err(bad_line(path, i, line));
            };
            out.push((k.to_string(), v));
        }
        Ok(Stat(out))
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == key).map(|&(_, v)| v)
    }
}

fn bad_line(path: &Path, i: usize, line: &str) -> Failure {
    let shown: String = line.chars().take(60).collect();
    Failure::new(
        Problem::Unparsable,
        format!(
            "{} line {}: expected `key number`, found `{}`",
            path.display(),
            i + 1,
            shown.escape_default()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (n, t) in files {
            fs::write(dir.join(n), t).unwrap();
        }
    }

    #[test]
    fn v2_reads_usage_limit_working_set_and_oom_kills() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            &[
                ("memory.current", "900\n"),
                ("memory.max", "1000\n"),
                ("memory.stat", "anon 500\nfile 400\ninactive_file 150\n"),
                ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ],
        );
        let s = read(t.path()).unwrap();
        assert_eq!(s.version, Version::V2);
        assert_eq!(
            (s.usage, s.working_set, s.limit, s.rss, s.cache, s.oom_kills),
            (900, 750, Some(1000), Some(500), Some(400), Some(1))
        );
    }

    #[test]
    fn v2_max_is_unlimited_and_missing_events_is_no_counter() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            &[
                ("memory.current", "10"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 1\n"),
            ],
        );
        let s = read(t.path()).unwrap();
        assert_eq!((s.limit, s.oom_kills, s.working_set), (None, None, 10));
    }

    #[test]
    fn v1_reads_hierarchical_totals_and_treats_huge_limits_as_unlimited() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            &[
                ("memory.usage_in_bytes", "4263936\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\ninactive_file 3\ntotal_cache 929792\ntotal_rss 1708032\ntotal_inactive_file 827392\n",
                ),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ],
        );
        let s = read(t.path()).unwrap();
        assert_eq!(s.version, Version::V1);
        assert_eq!(s.limit, None);
        assert_eq!(s.working_set, 4263936 - 827392);
        assert_eq!(
            (s.rss, s.cache, s.oom_kills),
            (Some(1708032), Some(929792), Some(2))
        );
    }

    #[test]
    fn v1_old_kernel_without_oom_kill_line_has_no_counter() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            &[
                ("memory.usage_in_bytes", "100"),
                ("memory.limit_in_bytes", "200"),
                ("memory.stat", "rss 5\n"),
                ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n"),
            ],
        );
        let s = read(t.path()).unwrap();
        assert_eq!((s.limit, s.oom_kills, s.rss), (Some(200), None, Some(5)));
    }

    #[test]
    fn garbage_is_unparsable_never_a_value() {
        let t = tempfile::tempdir().unwrap();
        write(
            t.path(),
            &[
                ("memory.current", "lots\n"),
                ("memory.max", "max"),
                ("memory.stat", ""),
            ],
        );
        let f = read(t.path()).unwrap_err();
        assert_eq!(f.problem, Problem::Unparsable);
        assert!(
            f.detail.contains("memory.current") && f.detail.contains("lots"),
            "{f}"
        );

        write(t.path(), &[("memory.current", "5"), ("memory.max", "-1")]);
        assert_eq!(read(t.path()).unwrap_err().problem, Problem::Unparsable);

        write(
            t.path(),
            &[("memory.max", "max"), ("memory.stat", "anon 1 2\n")],
        );
        let f = read(t.path()).unwrap_err();
        assert_eq!(f.problem, Problem::Unparsable);
        assert!(f.detail.contains("memory.stat line 1"), "{f}");
    }

    #[test]
    fn missing_dir_is_gone_and_plain_dir_has_no_memory_controller() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            read(&t.path().join("nope")).unwrap_err().problem,
            Problem::Gone
        );
        assert_eq!(
            read(t.path()).unwrap_err().problem,
            Problem::NoMemoryController
        );
        let file = t.path().join("f");
        fs::write(&file, "").unwrap();
        assert_eq!(
            read(&file).unwrap_err().problem,
            Problem::NoMemoryController
        );
    }

    #[test]
    fn a_required_file_missing_mid_read_is_gone() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), &[("memory.current", "5")]);
        assert_eq!(read(t.path()).unwrap_err().problem, Problem::Gone);
    }
}
