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

/// The CPU time (user and system) the calling thread has used so far, from the kernel's
/// scheduler accounting (`CLOCK_THREAD_CPUTIME_ID`): time spent waiting for a CPU, parked or
/// runnable, is not counted. `None` where the clock cannot be read.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .ok()
        .map(std::time::Duration::from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Work on the thread counts; waiting does not.
    #[test]
    fn thread_cpu_time_counts_work_not_waiting() {
        let t0 = thread_cpu_time().expect("the thread CPU clock");
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let t1 = thread_cpu_time().expect("the thread CPU clock");
        // A busy 2-vCPU machine may take the CPU away for part of the 30 ms, never all of it.
        assert!(
            t1 - t0 > Duration::from_millis(3),
            "spun 30 ms, counted {:?}",
            t1 - t0
        );
        assert!(t1 - t0 <= spin.elapsed() + Duration::from_millis(1));
        // Blocked for 50 ms on a channel nobody sends on: (almost) no CPU time.
        let (_tx, rx) = std::sync::mpsc::channel::<()>();
        let _ = rx.recv_timeout(Duration::from_millis(50));
        let t2 = thread_cpu_time().expect("the thread CPU clock");
        assert!(
            t2 - t1 < Duration::from_millis(10),
            "waited, counted {:?}",
            t2 - t1
        );
    }
}
