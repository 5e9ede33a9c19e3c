//! `file_sd:`: targets listed in Prometheus file_sd-style files, JSON or YAML, each a list of
//! groups `[{"targets": ["http://…", …], "labels": {"k": "v"}}]`.
//!
//! Every listed string is one target, named by what it probes (the URL as normalised, or a
//! module's target as written), probed with the section's settings (and the `defaults:` of the
//! file declaring the section), labelled with the section's labels and then the group's; or,
//! with a `template:`, made from the group's labels ([`super::sd`], [`super::sd_template`]).
//!
//! Reading is cached per file ([`FileSdCache`]): a file whose size, modification time and inode
//! are unchanged, read by an unchanged section, hands back the very same target specs; and the
//! check that no name is listed twice across files is skipped when every file's list and the
//! names taken outside file_sd are the ones it last found unique. So a reload that changes
//! nothing costs one `stat` per file and a pointer comparison per target.
//! A file that fails to read or parse on a reload (half-written, malformed) keeps the targets
//! it had, and the problem is reported ([`super::Config::file_sd_stale`]); on the first read
//! it is an error like any other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_saphyr::Spanned;

use crate::diag::{ConfigError, Diagnostics, Pos};

use super::fields::Defaults;
use super::sd::{Group, SdSection};
use super::{Config, TargetSpec};

pub use super::raw::RawFileSd;
pub use super::sd::MAX_TARGET_LEN;

/// Largest file_sd file read: about five million targets of the usual length.
pub const MAX_FILE_SD_BYTES: u64 = 256 << 20;
/// Default time between two looks at a section's files for a change.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// Shortest `refresh_interval` accepted.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// One checked `file_sd:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSd {
    /// The file patterns, resolved against the declaring file's directory.
    pub patterns: Vec<PathBuf>,
    /// Time between two looks at the files for a change.
    pub refresh_interval: Duration,
    /// What every listed target shares, and how a group becomes targets.
    section: SdSection,
    /// Where the section is written: file, position, dotted field.
    at: (PathBuf, Pos, String),
}

/// Checks one `file_sd:` entry of the file being checked.
pub(super) fn check_section(
    diag: &mut Diagnostics,
    d: &Defaults,
    s: &Spanned<RawFileSd>,
    field: &str,
) -> Option<FileSd> {
    let before = diag.count();
    let r = &s.value;
    if r.files.is_empty() {
        diag.error(
            s,
            format!("{field}.files"),
            "missing: list the files of targets",
        );
    }
    let mut patterns = Vec::new();
    for (i, f) in r.files.iter().enumerate() {
        let p = super::fields::resolve_relative(diag.file(), Path::new(&f.value));
        match check_pattern(&p) {
            Ok(()) => patterns.push(p),
            Err(m) => diag.error(f, format!("{field}.files[{i}]"), m),
        }
    }
    let limits = (DEFAULT_REFRESH_INTERVAL, MIN_REFRESH_INTERVAL);
    let refresh = super::sd::refresh_interval(diag, &r.refresh_interval, field, limits);
    let section = SdSection::check(diag, d, r.common(), s, field);
    if diag.count() > before {
        return None;
    }
    let at = (diag.file().to_path_buf(), Pos::from(s), field.to_string());
    Some(FileSd {
        patterns,
        refresh_interval: refresh,
        section: section?,
        at,
    })
}

/// A pattern may hold `*` and `?` in its last path element only (as Prometheus's).
fn check_pattern(p: &Path) -> Result<(), String> {
    let dir = p.parent().map(|d| d.to_string_lossy().into_owned());
    if dir.is_some_and(|d| d.contains(['*', '?', '['])) {
        return Err(format!(
            "`{}`: `*` and `?` may only be used in the file name, not in a directory",
            p.display()
        ));
    }
    match p.extension().and_then(|e| e.to_str()) {
        Some("json" | "yaml" | "yml") => Ok(()),
        _ => Err(format!(
            "`{}`: file_sd files end in .json, .yaml or .yml",
            p.display()
        )),
    }
}

/// Whether `name` matches `pattern` (`*` any run of characters, `?` one character).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The files a pattern stands for, in name order. A pattern without a wildcard stands for its
/// file, which must exist; one with a wildcard may match nothing.
fn expand_pattern(p: &Path) -> Result<Vec<PathBuf>, String> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return Ok(vec![p.to_path_buf()]);
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let n = e.file_name();
        if glob_match(name.as_bytes(), n.as_encoded_bytes()) && e.path().is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// What identifies a file's content without reading it: a file replaced (renamed over) or
/// written again changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: (u64, u64),
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: (m.dev(), m.ino()),
    })
}

/// One file's last good reading.
#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    /// The section it was read for (its settings make the specs).
    section: SdSection,
    targets: Arc<[Arc<TargetSpec>]>,
}

/// What discovery found so far, kept between loads: the file_sd files read (see the module's
/// documentation) and the last good answer of each HTTP SD endpoint.
#[derive(Debug, Default)]
pub struct FileSdCache {
    files: HashMap<PathBuf, Cached>,
    /// The last good answer of each `http_sd:` endpoint (written by the runtime's pollers).
    pub http: super::http_sd::HttpSdCache,
    /// Each config file's `targets:` as last checked, with the text they were read from.
    pub inline: super::inline::InlineCache,
    /// The inputs of the last check of names across files that found no duplicate: a load
    /// with the same inputs skips it (it is a hash insert per target).
    unique: Option<UniqueNames>,
    /// Files read and parsed so far (a file given back from the cache is not counted).
    parsed: u64,
    /// Checks of names across files made so far.
    name_checks: u64,
}

/// What the check of names across files looked at when it found every name unique.
#[derive(Debug)]
struct UniqueNames {
    /// Each file's targets, in the order read (the cache's own `Arc`s).
    lists: Vec<Arc<[Arc<TargetSpec>]>>,
    /// The names taken outside file_sd (`targets:`, failover checks), sorted.
    others: Vec<String>,
}

impl UniqueNames {
    /// Whether `lists` and `others` (sorted) are what was checked: a pointer comparison per
    /// file and a string comparison per name taken outside file_sd.
    fn matches(&self, lists: &[(PathBuf, Arc<[Arc<TargetSpec>]>)], others: &[&str]) -> bool {
        self.lists.len() == lists.len()
            && self
                .lists
                .iter()
                .zip(lists)
                .all(|(a, (_, b))| Arc::ptr_eq(a, b))
            && self.others.len() == others.len()
            && self.others.iter().zip(others).all(|(a, b)| a == b)
    }
}

impl FileSdCache {
    /// Files read so far.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Files read and parsed so far: a file whose size, modification time and inode did not
    /// change since its last good reading is given back from the cache, and not counted.
    pub fn files_parsed(&self) -> u64 {
        self.parsed
    }

    /// Checks of target names across file_sd files made so far: a load whose files and other
    /// names are the ones last found unique skips it, and is not counted.
    pub fn name_checks(&self) -> u64 {
        self.name_checks
    }

    /// True when no file was read yet.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Whether the files of `sections` differ from what `cache` last read: a file added, gone, or
/// with another stamp. Costs a directory listing per pattern and a `stat` per file.
pub fn changed(sections: &[FileSd], cache: &FileSdCache) -> bool {
    let mut seen = 0;
    for s in sections {
        for p in &s.patterns {
            let Ok(files) = expand_pattern(p) else {
                return true;
            };
            for f in files {
                match (cache.files.get(&f), stamp(&f)) {
                    (Some(c), Ok(st)) if c.stamp == st => seen += 1,
                    _ => return true,
                }
            }
        }
    }
    seen != cache.files.len()
}

/// Resolves every section's module, then reads its files (through `cache`) into
/// `config.targets`. `names` holds the names already taken (by `targets:` and failover
/// checks), with where; a file_sd target taking one is an error naming both files.
pub(super) fn expand(
    diag: &mut Diagnostics,
    config: &mut Config,
    sections: Vec<FileSd>,
    names: &HashMap<String, (PathBuf, u64)>,
    written: &dyn Fn(&str) -> bool,
    cache: &mut FileSdCache,
) {
    let mut read: Vec<(PathBuf, Arc<[Arc<TargetSpec>]>)> = Vec::new();
    let mut live = std::collections::HashSet::new();
    for mut s in sections {
        let (file, pos, field) = s.at.clone();
        diag.set_file(&file);
        if !s
            .section
            .resolve(diag, &config.modules, written, (pos, &field))
        {
            continue;
        }
        for (i, p) in s.patterns.iter().enumerate() {
            let files = match expand_pattern(p) {
                Ok(f) => f,
                Err(m) => {
                    diag.error(pos, format!("{field}.files[{i}]"), m);
                    continue;
                }
            };
            for f in files {
                if !live.insert(f.clone()) {
                    continue;
                }
                if let Some(targets) = read_cached(diag, config, &s, &f, cache) {
                    read.push((f, targets));
                }
            }
        }
    }
    cache.files.retain(|f, _| live.contains(f));
    check_unique(diag, &read, names, cache);
    let n: usize = read.iter().map(|(_, t)| t.len()).sum();
    config.targets.reserve(n);
    for (_, targets) in read {
        config.targets.extend(targets.iter().cloned());
    }
}

/// Finds names listed twice across file_sd files, or taken by a target of `names`; skipped
/// when the files' target lists (the same `Arc`s) and `names` are the ones last found unique.
fn check_unique(
    diag: &mut Diagnostics,
    read: &[(PathBuf, Arc<[Arc<TargetSpec>]>)],
    names: &HashMap<String, (PathBuf, u64)>,
    cache: &mut FileSdCache,
) {
    let mut others: Vec<&str> = names.keys().map(String::as_str).collect();
    others.sort_unstable();
    if cache
        .unique
        .as_ref()
        .is_some_and(|u| u.matches(read, &others))
    {
        return;
    }
    cache.name_checks += 1;
    let errors = diag.count();
    let mut taken: HashMap<&str, &Path> = HashMap::new();
    for (f, targets) in read {
        diag.set_file(f);
        for t in targets.iter() {
            if let Some((other, line)) = names.get(&t.name) {
                let msg = format!(
                    "duplicate target `{}`: also defined at {}:{line}",
                    t.name,
                    other.display()
                );
                diag.error(Pos::default(), "targets", msg);
            } else if let Some(other) = taken.insert(&t.name, f) {
                let msg = format!(
                    "duplicate target `{}`: also listed in {}",
                    t.name,
                    other.display()
                );
                diag.error(Pos::default(), "targets", msg);
            }
        }
    }
    cache.unique = (diag.count() == errors).then(|| UniqueNames {
        lists: read.iter().map(|(_, t)| t.clone()).collect(),
        others: others.iter().map(|n| n.to_string()).collect(),
    });
}

/// One file's targets: the cached ones when the file and the section are unchanged, else read
/// anew; a file that fails keeps its previous targets when it had some (the problem goes to
/// `config.file_sd_stale`), and is an error otherwise.
fn read_cached(
    diag: &mut Diagnostics,
    config: &mut Config,
    s: &FileSd,
    f: &Path,
    cache: &mut FileSdCache,
) -> Option<Arc<[Arc<TargetSpec>]>> {
    let st = stamp(f);
    if let (Some(c), Ok(st)) = (cache.files.get(f), &st) {
        if c.stamp == *st && c.section == s.section {
            return Some(c.targets.clone());
        }
    }
    let result = st
        .map_err(|e| ConfigError::in_file(f, format!("cannot read the file_sd file: {e}")))
        .and_then(|st| {
            cache.parsed += 1;
            read_file(f, s, &config.modules).map(|t| (st, t))
        });
    match result {
        Ok((stamp, targets)) => {
            // A file written again mostly lists the targets it listed: those keep their specs.
            let targets: Arc<[Arc<TargetSpec>]> = match cache.files.get(f) {
                Some(c) => super::sd::reuse_equal(&c.targets, targets).into(),
                None => targets.into(),
            };
            let entry = Cached {
                stamp,
                section: s.section.clone(),
                targets: targets.clone(),
            };
            cache.files.insert(f.to_path_buf(), entry);
            Some(targets)
        }
        Err(e) => match cache.files.get(f) {
            Some(c) => {
                config.file_sd_stale.push(e);
                Some(c.targets.clone())
            }
            None => {
                diag.set_file(f);
                diag.error(Pos::new(e.line, e.column), e.field, e.message);
                diag.set_file(&s.at.0);
                None
            }
        },
    }
}

/// Reads and checks one file into target specs.
fn read_file(
    f: &Path,
    s: &FileSd,
    modules: &crate::blackbox::config::Modules,
) -> Result<Vec<Arc<TargetSpec>>, ConfigError> {
    let bytes = crate::limits::read_capped(f, MAX_FILE_SD_BYTES, "file_sd file")
        .map_err(|e| ConfigError::in_file(f, e.to_string()))?;
    let groups = parse(f, &bytes)?;
    s.section
        .targets(modules, groups, f)
        .map_err(|e| ConfigError {
            file: f.to_path_buf(),
            line: 0,
            column: 0,
            field: e.field,
            message: e.message,
        })
}

/// The file's groups: JSON for `.json`, YAML otherwise; a syntax error (a half-written file)
/// names its line and column.
fn parse(f: &Path, bytes: &[u8]) -> Result<Vec<Group>, ConfigError> {
    let at = |line: u64, column: u64, message: String| ConfigError {
        file: f.to_path_buf(),
        line,
        column,
        field: String::new(),
        message,
    };
    if f.extension().is_some_and(|e| e == "json") {
        return super::sd::parse_json(bytes).map_err(|e| {
            let msg = format!(
                "not a file_sd list ({e}); write [{{\"targets\": [...], \"labels\": {{...}}}}]"
            );
            at(e.line() as u64, e.column() as u64, msg)
        });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ConfigError::in_file(f, "the file is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    // A byte cap is the limit of a file_sd file, not a count of values.
    budget.max_nodes = usize::MAX / 4;
    budget.max_events = usize::MAX / 4;
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let p = e.location().map(Pos::from).unwrap_or_default();
        at(p.line, p.column, format!("not a file_sd list: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_as_the_shell_does() {
        assert!(glob_match(b"*.json", b"a.json"));
        assert!(glob_match(b"t-?.json", b"t-1.json"));
        assert!(!glob_match(b"t-?.json", b"t-10.json"));
        assert!(glob_match(b"*-*.yaml", b"a-b-c.yaml"));
        assert!(!glob_match(b"*.json", b"a.yaml"));
        assert!(glob_match(b"*", b""));
    }
}
