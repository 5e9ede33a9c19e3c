//! A runtime started in-process from a config file, as `watchfire run` starts it: the first load
//! and every reload share one file_sd cache, the timer is the plain one. For the discovery tests
//! (`tests/file_sd.rs`, `tests/sd.rs`).
//!
//! Use with `#[path = "common/runtime.rs"] mod started;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use watchfire::config::{FileSdCache, LoadOptions};
use watchfire::runtime::{Runtime, RuntimeOptions};

/// A config that must name at least one target.
pub const OPTS: LoadOptions = LoadOptions { allow_empty: false };

/// Writes `text` to `dir/watchfire.yaml`; its path.
pub fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("watchfire.yaml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Loads `path` and starts the runtime on it; cancel the token to stop it.
pub async fn start(path: &Path) -> (Arc<Runtime>, CancellationToken) {
    let cache = Arc::new(Mutex::new(FileSdCache::default()));
    let cfg = watchfire::runtime::load_blocking_cached(path.to_path_buf(), OPTS, cache.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cancel = CancellationToken::new();
    let opts = RuntimeOptions {
        precise_timer: false,
        file_sd: cache,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, Some(path.to_path_buf()), opts, cancel.clone())
        .await
        .expect("runtime starts");
    (rt, cancel)
}

/// The names of the targets the runtime runs, sorted.
pub fn names(rt: &Runtime) -> Vec<String> {
    let mut v: Vec<String> = rt.targets().iter().map(|t| t.spec.name.clone()).collect();
    v.sort();
    v
}
