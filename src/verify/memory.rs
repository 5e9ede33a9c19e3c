//! Memory readings for the memory check: a cgroup directory (v2 `memory.current` /
//! `memory.max`, v1 `memory.usage_in_bytes` / `memory.limit_in_bytes`) or a Prometheus query
//! giving `usage / limit` (by default cAdvisor's `container_memory_usage_bytes /
//! container_spec_memory_limit_bytes`, the runbook's alert expression).
//!
//! One reading is two small files or one query. The cgroup side uses the container-memory
//! reader's version detection, bounded file reads and "unlimited" cut-off
//! ([`crate::memory::cgroup`]); it reads only usage and limit, because the memory check needs
//! nothing else and a bare cgroup directory (no `memory.stat`) is enough for it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::prom::Prom;
use crate::memory::cgroup::{self as cg, Version as CgroupVersion};

/// Where memory readings come from.
#[derive(Debug, Clone)]
pub enum MemorySource {
    /// A cgroup directory.
    Cgroup(Cgroup),
    /// A Prometheus instant query whose value is `usage / limit`.
    Prometheus {
        /// The server.
        prom: Prom,
        /// The query.
        query: String,
    },
}

/// A cgroup directory to read memory from.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// The directory.
    pub dir: PathBuf,
    /// Its version.
    pub version: CgroupVersion,
}

/// One reading: bytes in use and the limit (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// In use (bytes, or a ratio with `limit` 1).
    pub used: f64,
    /// Limit; `None` when unlimited.
    pub limit: Option<f64>,
}

impl Cgroup {
    /// Finds the cgroup version of `dir` by the files it holds.
    pub fn open(dir: &Path) -> Result<Cgroup, String> {
        let Some(version) = cg::version_of(dir) else {
            return Err(format!(
                "{} holds neither memory.current (cgroup v2) nor memory.usage_in_bytes (cgroup v1)",
                dir.display()
            ));
        };
        let c = Cgroup {
            dir: dir.to_path_buf(),
            version,
        };
        c.read()?;
        Ok(c)
    }

    /// Reads usage and limit now.
    pub fn read(&self) -> Result<Reading, String> {
        let (cur, max) = match self.version {
            CgroupVersion::V2 => ("memory.current", "memory.max"),
            CgroupVersion::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        };
        let used = read_number(&self.dir.join(cur))?
            .ok_or_else(|| format!("{}: `max` is not a usage", self.dir.join(cur).display()))?;
        let limit = match read_number(&self.dir.join(max)) {
            Ok(Some(l)) if self.version == CgroupVersion::V1 && l > cg::UNLIMITED_ABOVE => None,
            Ok(l) => l,
            // A cgroup without a limit file (the root) is unlimited.
            Err(_) if !self.dir.join(max).exists() => None,
            Err(e) => return Err(e),
        };
        Ok(Reading {
            used: used as f64,
            limit: limit.map(|l| l as f64),
        })
    }

    /// Describes the source (`cgroup v2 /sys/fs/cgroup/x`).
    pub fn describe(&self) -> String {
        let v = match self.version {
            CgroupVersion::V2 => "v2",
            CgroupVersion::V1 => "v1",
        };
        format!("cgroup {v} {}", self.dir.display())
    }
}

/// A number of bytes from a cgroup file; `max` is `None`.
fn read_number(path: &Path) -> Result<Option<u64>, String> {
    let text = cg::read_small(path).map_err(|f| format!("cannot read {f}"))?;
    let t = text.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| format!("{}: `{t}` is not a number of bytes", path.display()))
}

impl MemorySource {
    /// Describes the source, for the report.
    pub fn describe(&self) -> String {
        match self {
            MemorySource::Cgroup(c) => c.describe(),
            MemorySource::Prometheus { query, .. } => format!("prometheus: {query}"),
        }
    }

    /// Takes one reading.
    pub async fn read(&self) -> Result<Reading, String> {
        match self {
            MemorySource::Cgroup(c) => c.read(),
            MemorySource::Prometheus { prom, query } => prom
                .query_value(query, SystemTime::now())
                .await
                .map(|ratio| Reading {
                    used: ratio,
                    limit: Some(1.0),
                })
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).expect("write");
        }
        d
    }

    #[test]
    fn cgroup_v2_with_and_without_a_limit() {
        let d = dir(&[("memory.current", "512\n"), ("memory.max", "1024\n")]);
        let c = Cgroup::open(d.path()).expect("v2");
        assert_eq!(c.version, CgroupVersion::V2);
        assert_eq!(
            c.read(),
            Ok(Reading {
                used: 512.0,
                limit: Some(1024.0)
            })
        );
        let d = dir(&[("memory.current", "512\n"), ("memory.max", "max\n")]);
        assert_eq!(
            Cgroup::open(d.path())
                .expect("v2")
                .read()
                .expect("read")
                .limit,
            None
        );
    }

    #[test]
    fn cgroup_v1_huge_limit_means_unlimited() {
        let d = dir(&[
            ("memory.usage_in_bytes", "100"),
            ("memory.limit_in_bytes", "9223372036854771712"),
        ]);
        let c = Cgroup::open(d.path()).expect("v1");
        assert_eq!(c.version, CgroupVersion::V1);
        assert_eq!(c.read().expect("read").limit, None);
    }

    #[test]
    fn a_directory_without_memory_files_is_refused() {
        let d = dir(&[]);
        let e = Cgroup::open(d.path()).expect_err("no files");
        assert!(e.contains("memory.current"), "{e}");
    }
}
