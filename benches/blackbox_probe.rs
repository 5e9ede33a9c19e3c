//! `/probe` throughput: watchfire's blackbox-compatible endpoint, for `bench/blackbox.sh`.
//!
//! Two modes:
//!
//! - `--serve ADDR --config FILE` (what `bench/blackbox.sh` runs): watchfire's server
//!   (`/probe`, `/metrics`, ...) on ADDR with FILE's modules, on the same multi-thread tokio
//!   runtime as `watchfire run` (one worker per CPU), until stdin closes or the process is
//!   killed. Prints `LISTENING ADDR PID` once bound. The script drives it with `wrk` next to the
//!   real blackbox_exporter and reads the CPU of both from `/proc/PID/stat`.
//! - no `--serve` (plain `cargo bench --bench blackbox_probe`): a self-contained measurement.
//!   An in-process HTTP target answering `200 ok` with `Connection: close`, and 32 tasks that
//!   each run the `http_2xx` module's probe (`watchfire::blackbox::endpoint::run`, exactly what
//!   `/probe` runs: a fresh connection per probe, metrics rendered) back to back for `--duration-s`
//!   seconds (default 5). Reports probes/s and the whole process's CPU µs per probe (utime+stime
//!   from `/proc/self/stat`, target server included, so an upper bound for the prober alone).

/// The allocator the `watchfire` binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::server::{self, AppState};

/// Command-line options; `--bench`, which cargo adds, is accepted and ignored.
#[derive(Debug, clap::Parser)]
#[command(name = "blackbox_probe")]
struct Opts {
    /// Serve `/probe` on this address (with `--config`) instead of measuring in-process.
    #[arg(long, requires = "config")]
    serve: Option<SocketAddr>,
    /// The blackbox.yml to serve.
    #[arg(long, requires = "serve")]
    config: Option<PathBuf>,
    /// Measurement window, s.
    #[arg(long = "duration-s", default_value_t = 5)]
    duration_s: u64,
    /// Probes in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let (u, s) = common::process_cpu();
    (u + s) as f64 / common::clock_ticks_per_s() as f64
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let rt = watchfire::threads::build_tokio(None).expect("tokio runtime");
    match (o.serve, o.config) {
        (Some(addr), Some(cfg)) => rt.block_on(serve(addr, cfg)),
        _ => rt.block_on(measure(Duration::from_secs(o.duration_s), o.concurrency)),
    }
}

async fn serve(addr: SocketAddr, config: PathBuf) {
    let cfg = watchfire::config::load(&config).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let cancel = CancellationToken::new();
    let runtime = Runtime::start(cfg, Some(config), RuntimeOptions::default(), cancel.clone())
        .await
        .expect("runtime starts");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    println!(
        "LISTENING {} {}",
        listener.local_addr().expect("address"),
        std::process::id()
    );
    let state = Arc::new(AppState {
        runtime,
        registry: prometheus::Registry::new(),
    });
    // Stop when stdin closes (the script holds it open).
    let c = cancel.clone();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        c.cancel();
    });
    let c = cancel.clone();
    server::serve(listener, state, async move { c.cancelled().await })
        .await
        .expect("serve");
}

/// A minimal target: reads a request head, answers `200 ok`, closes.
async fn target() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn measure(duration: Duration, concurrency: usize) {
    let cfg = watchfire::config::load_str(
        "bench.yml",
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n",
    )
    .expect("config");
    let module = cfg.modules.get("http_2xx").expect("module").clone();
    let url = format!("http://{}/", target().await);
    let probes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let end = t0 + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (m, u, p, f) = (
            module.clone(),
            url.clone(),
            probes.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut text = String::new();
            while Instant::now() < end {
                let probed = watchfire::blackbox::endpoint::run(
                    &m,
                    u.clone(),
                    None,
                    Duration::from_secs(5),
                    false,
                )
                .await;
                text.clear();
                probed.families().render(&mut text);
                p.fetch_add(1, Ordering::Relaxed);
                if !probed.ok() {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("probe task");
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let n = probes.load(Ordering::Relaxed);
    println!(
        "blackbox_probe: {n} probes in {wall:.2} s = {:.0} probes/s, {:.1} CPU us/probe (process, target included), {} failed",
        n as f64 / wall,
        cpu * 1e6 / n.max(1) as f64,
        failures.load(Ordering::Relaxed)
    );
    println!(
        "RESULT probes_per_s={:.0} cpu_us_per_probe={:.1} failures={}",
        n as f64 / wall,
        cpu * 1e6 / n.max(1) as f64,
        failures.load(Ordering::Relaxed)
    );
}
