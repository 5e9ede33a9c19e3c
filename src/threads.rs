//! Thread helpers: the binary's multi-threaded tokio runtime, how many per-CPU threads the hot
//! paths (probes, the failover proxy) run, and a thread with a single-threaded runtime of its
//! own.

use std::future::Future;

use tokio::runtime::Handle;

/// Builds the tokio runtime the `watchfire` binary (and its benchmarks) run on: multi-threaded,
/// `workers` threads (tokio's default, one per CPU, when `None`), IO and timers enabled.
pub fn build_tokio(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().thread_name("watchfire").build()
}

/// How many threads the per-CPU hot paths (probes, the failover proxy) each run: one per CPU,
/// like nginx's `worker_processes auto`, at most 16.
pub fn per_cpu_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16)
}

/// Starts an OS thread named `name` running `fut` on a single-threaded tokio runtime of its
/// own (IO and timers enabled); returns that runtime's handle. The thread ends when `fut` does.
pub fn spawn_single_threaded(
    name: String,
    fut: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || rt.block_on(fut))?;
    Ok(handle)
}
