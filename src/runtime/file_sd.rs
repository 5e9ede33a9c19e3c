//! file_sd on the running prober: loads through the file cache, and the watch that reloads
//! when a file_sd file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Runtime;
use crate::config::{self, Config};
use crate::diag::{ConfigError, ConfigErrors};

/// The problem of a reload that applied but kept some file_sd files' previous targets.
pub(super) fn stale_message(stale: &[ConfigError]) -> String {
    let files: Vec<String> = stale.iter().map(|e| e.to_string()).collect();
    format!(
        "the config applied, but {} file_sd file(s) kept their previous targets: {}",
        stale.len(),
        files.join("; ")
    )
}

/// Reloads when a file_sd file of the running config changed (added, gone, written): every
/// `refresh_interval` (the shortest of the config's sections), a `stat` of each file. A config
/// without `file_sd:` is looked at again every minute, in case a reload adds one.
pub(super) async fn watch_file_sd(rt: std::sync::Weak<Runtime>, cancel: CancellationToken) {
    loop {
        let every = match rt.upgrade() {
            Some(rt) => rt.config().file_sd.iter().map(|s| s.refresh_interval).min(),
            None => return,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every.unwrap_or(Duration::from_secs(60))) => {}
        }
        let Some(rt) = rt.upgrade() else { return };
        let config = rt.config();
        if config.file_sd.is_empty() {
            continue;
        }
        let cache = rt.file_sd.clone();
        let changed = tokio::task::spawn_blocking(move || {
            let cache = cache.lock().expect("file_sd cache lock poisoned");
            config::file_sd::changed(&config.file_sd, &cache)
        })
        .await
        .unwrap_or(false);
        if changed {
            info!("a file_sd file changed; reloading");
            let _ = rt.reload().await;
        }
    }
}

/// Loads a config on the blocking pool, reading file_sd files through `cache` (see
/// [`config::load_cached`]).
pub async fn load_blocking_cached(
    path: PathBuf,
    opts: config::LoadOptions,
    cache: Arc<Mutex<config::FileSdCache>>,
) -> Result<Config, ConfigErrors> {
    let load = move || {
        let mut cache = cache.lock().expect("file_sd cache lock poisoned");
        config::load_cached(&path, opts, &mut cache)
    };
    match tokio::task::spawn_blocking(load).await {
        Ok(r) => r,
        Err(e) => Err(ConfigErrors(vec![ConfigError::in_file(
            Path::new(""),
            format!("config loader failed: {e}"),
        )])),
    }
}

/// Loads a config on the blocking pool (file IO must not stall probes).
pub async fn load_blocking(path: PathBuf) -> Result<Config, ConfigErrors> {
    load_blocking_with(path, config::LoadOptions { allow_empty: true }).await
}

/// [`load_blocking`] with options (an empty config refused unless `opts.allow_empty`).
pub async fn load_blocking_with(
    path: PathBuf,
    opts: config::LoadOptions,
) -> Result<Config, ConfigErrors> {
    match tokio::task::spawn_blocking(move || config::load_with(&path, opts)).await {
        Ok(r) => r,
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: PathBuf::new(),
            line: 0,
            column: 0,
            field: String::new(),
            message: format!("config loader failed: {e}"),
        }])),
    }
}
