//! The `--storage.*` flags: where watchfire keeps its state and history (a SQLite file in a
//! data directory, a PostgreSQL database, or memory) and how long rollups are kept.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::store::{Retention, StoreOptions};

/// `watchfire run`'s data directory when no `--storage.*` flag says otherwise.
pub const DEFAULT_PATH: &str = "data";

/// Where the store keeps its data.
#[derive(Clone, Args)]
pub struct StorageArgs {
    /// Data directory: state, history, incidents and rollups go in its SQLite file
    /// (watchfire.db; the directory is made 0700 when missing). Default for `watchfire run`:
    /// `data`; the blackbox_exporter drop-in keeps everything in memory unless given.
    #[arg(long = "storage.path", value_name = "DIR", conflicts_with_all = ["storage_url", "storage_memory"])]
    pub storage_path: Option<PathBuf>,
    /// PostgreSQL URL (`postgres://user:password@host:5432/db`) instead of a data directory;
    /// also read from WATCHFIRE_STORAGE_URL, which keeps the password off the command line.
    #[arg(
        long = "storage.url",
        value_name = "URL",
        env = "WATCHFIRE_STORAGE_URL",
        hide_env_values = true,
        conflicts_with = "storage_memory"
    )]
    pub storage_url: Option<String>,
    /// Keep everything in memory only (lost on exit).
    #[arg(long = "storage.memory")]
    pub storage_memory: bool,
    /// How long per-minute rollups are kept.
    #[arg(long = "storage.retention.minutes", value_name = "DURATION", default_value = "48h",
          value_parser = parse_retention)]
    pub retention_minutes: Duration,
    /// How long hourly rollups are kept.
    #[arg(long = "storage.retention.hours", value_name = "DURATION", default_value = "90d",
          value_parser = parse_retention)]
    pub retention_hours: Duration,
    /// How long daily rollups are kept (default: 5 years of 365 days).
    #[arg(long = "storage.retention.days", value_name = "DURATION", default_value = "1825d",
          value_parser = parse_retention)]
    pub retention_days: Duration,
}

impl std::fmt::Debug for StorageArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageArgs")
            .field("storage_path", &self.storage_path)
            .field(
                "storage_url",
                &self.storage_url.as_deref().map(crate::redact::url),
            )
            .field("storage_memory", &self.storage_memory)
            .field("retention_minutes", &self.retention_minutes)
            .field("retention_hours", &self.retention_hours)
            .field("retention_days", &self.retention_days)
            .finish()
    }
}

/// A retention: a duration of at least a minute (`48h`, `90d`, `5y`).
pub fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d < Duration::from_secs(60) {
        return Err(format!("`{s}` is shorter than a minute"));
    }
    Ok(d)
}

impl StorageArgs {
    /// The store these flags name; with no `--storage.*` flag, the directory `default_path`
    /// (none: memory).
    pub fn options(&self, default_path: Option<&str>) -> StoreOptions {
        let path = match (&self.storage_url, self.storage_memory) {
            (Some(_), _) | (None, true) => None,
            (None, false) => self
                .storage_path
                .clone()
                .or_else(|| default_path.map(PathBuf::from)),
        };
        StoreOptions {
            path,
            url: self.storage_url.clone(),
            retention: Retention {
                minutes: self.retention_minutes,
                hours: self.retention_hours,
                days: self.retention_days,
            },
        }
    }

    /// The same flags as command-line arguments, for the drop-in's translation into `run`'s:
    /// memory unless a path or URL was given.
    pub fn to_argv(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = Vec::new();
        match (&self.storage_path, &self.storage_url) {
            (Some(p), _) => {
                v.push("--storage.path".into());
                v.push(p.clone().into());
            }
            (None, Some(u)) => {
                v.push("--storage.url".into());
                v.push(u.into());
            }
            (None, None) => v.push("--storage.memory".into()),
        }
        for (flag, d) in [
            ("--storage.retention.minutes", self.retention_minutes),
            ("--storage.retention.hours", self.retention_hours),
            ("--storage.retention.days", self.retention_days),
        ] {
            v.push(flag.into());
            v.push(format!("{}s", d.as_secs()).into());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: StorageArgs,
    }

    fn parse(a: &[&str]) -> Result<StorageArgs, clap::Error> {
        T::try_parse_from(std::iter::once("t").chain(a.iter().copied())).map(|t| t.s)
    }

    #[test]
    fn defaults_and_choices() {
        let d = parse(&[]).unwrap();
        let o = d.options(Some(DEFAULT_PATH));
        assert_eq!(o.path, Some(PathBuf::from("data")));
        assert_eq!(o.retention, Retention::default());
        assert_eq!(d.options(None).path, None);
        let m = parse(&["--storage.memory"]).unwrap().options(Some("data"));
        assert_eq!((m.path, m.url), (None, None));
        let u = parse(&["--storage.url", "postgres://u:pw@h/db"]).unwrap();
        assert!(!format!("{u:?}").contains("pw@"), "{u:?}");
        assert_eq!(u.options(Some("data")).path, None);
        let r = parse(&["--storage.retention.minutes", "2h"]).unwrap();
        assert_eq!(r.retention_minutes, Duration::from_secs(7200));
    }

    #[test]
    fn contradictions_and_bad_durations_are_refused() {
        assert!(parse(&["--storage.path", "d", "--storage.url", "postgres://h/db"]).is_err());
        assert!(parse(&["--storage.path", "d", "--storage.memory"]).is_err());
        assert!(parse(&["--storage.retention.days", "10s"]).is_err());
        assert!(parse(&["--storage.retention.hours", "soon"]).is_err());
    }

    #[test]
    fn the_translation_keeps_the_choice() {
        let a = parse(&["--storage.path", "/var/lib/w"]).unwrap();
        let back = parse(
            &a.to_argv()
                .iter()
                .map(|s| s.to_str().unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(back.options(None).path, Some(PathBuf::from("/var/lib/w")));
        let none = parse(&[]).unwrap().to_argv();
        assert!(none.iter().any(|s| s == "--storage.memory"));
    }
}
