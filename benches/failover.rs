//! Failover benchmark (issue 4): time from a real `kill -9` of the primary to the switch, and a
//! failover proxy to put in front of a backend for throughput and latency measurements.
//!
//! Run through `bench/failover.sh` (which builds the binary, starts nginx and drives wrk), or by
//! hand:
//!
//! ```text
//! cargo build --release --bin watchfire
//! cargo bench --bench failover -- --mode detection --bin target/release/watchfire --rounds 20
//! cargo bench --bench failover -- --mode proxy --backend http://127.0.0.1:20001 \
//!     --backup http://127.0.0.1:20002          # prints `PROXY 127.0.0.1:PORT`, runs until stdin EOF
//! ```
//!
//! # Mode `detection`
//!
//! - Primary and backup are `watchfire sim` CHILD PROCESSES of this benchmark (`--bin`, the built
//!   binary), on free ports below the ephemeral range so that the primary can be restarted on its
//!   port. Their PIDs are appended to `--pid-file` (when given) so that a wrapper script can kill
//!   them if this process dies without running its destructors.
//! - One runtime ([`Runtime::start`], the probe threads; `--workers` tokio workers,
//!   default 0 = tokio's default, one per CPU, as in the `watchfire` binary) with one failover
//!   group `gw`: check `GET /health` every `--interval-ms` (200) with timeout
//!   `--timeout-ms` (150), `down_after` 3, `up_after` 2, `hold: 0s`, `min_switch_interval: 0s`
//!   (failback as soon as the restarted primary has passed `up_after` checks), and a proxy.
//! - Each round: wait until the primary is active and `Up`; wait for the primary's next check to
//!   be recorded (the check target's probe counter, polled every 1 ms) and take its start (end
//!   time minus duration, from its record) as the phase reference of the check schedule; kill at
//!   a phase `φ` in `[0, interval − 1 ms)` after it (in practice ≥ ~1 ms: the check must have
//!   ended and been seen; the phase reported is the actual one); `kill -9` the primary
//!   ([`Child::kill`] = SIGKILL); poll [`Group::active`] every 1 ms until it is the backup:
//!   kill → switch. Then restart the primary on the same port and poll until traffic is back on
//!   it: restart → failback.
//!   Phases are stratified random: round `k` of `N` (in shuffled order) uses
//!   `φ = (k + u) / N × (interval − 1 ms)` with `u` uniform in `[0, 1)`, so they cover the
//!   interval evenly.
//! - With health checks only, the first failed check after the kill comes `interval − φ` later
//!   (a killed process refuses the connection at once), and the switch on the `down_after`-th:
//!   the ideal is `interval − φ + (down_after − 1) × interval`, so kill → switch lies in
//!   `((down_after − 1) × interval, down_after × interval]` plus the prober's own delay, which is
//!   reported as `overhead` = measured − ideal (it includes the ≤ 1 ms polling granularity of
//!   the switch, and any schedule lag of the checks). When the actual phase is past an interval
//!   (the machine was busy), the ideal counts from the first check planned after the kill.
//! - Variants (`--variants`): `checks` = no client traffic through the proxy (pure health-check
//!   detection, the worst case); `passive` = one `GET /health` every `--load-every-ms` (10) ms
//!   through the proxy on a keep-alive connection: the first request after the kill finds the
//!   primary gone and takes it down at once (passive detection). Client requests that did not
//!   get a 200 are counted (`client_failed`, expected 0).
//! - Bound: `interval × down_after + 50 ms`. Reported per variant: min / p50 / p90 / max of
//!   kill → switch (nearest rank), the count within the bound, overhead p50 / max, restart →
//!   failback p50 / max.
//!
//! # Mode `proxy`
//!
//! Starts a runtime with one group `bench` over `--backend` (primary) and `--backup`, checks every
//! second, proxy on a free loopback port (`--max-in-flight`, default as in the config; the
//! proxy's threads, one per CPU, are the ones the `watchfire` binary runs), waits
//! until the primary is active, prints `PROXY ADDR` on stdout, then runs until stdin reaches EOF
//! or `--duration-s` has passed (or SIGINT/SIGTERM), and prints the proxy's request counts and
//! the process CPU time.
//!
//! The last lines printed are machine-readable (`RESULT key=value ...`), parsed by
//! `bench/failover.sh`.

/// The allocator the `watchfire` binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::failover::Group;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::state::Health;

/// Command-line options; `--bench`, which cargo adds, is accepted and ignored.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "failover",
    override_usage = "failover --mode detection --bin PATH/TO/watchfire [OPTIONS]\n       \
                      failover --mode proxy --backend URL --backup URL [OPTIONS]"
)]
struct Opts {
    /// `detection` or `proxy`.
    #[arg(long, value_parser = ["detection", "proxy"])]
    mode: String,
    /// The watchfire binary run as the sims (detection).
    #[arg(long, default_value = "")]
    bin: String,
    /// Kills per variant (detection).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Check interval, ms.
    #[arg(long = "interval-ms", default_value = "200", value_parser = nonzero_millis)]
    interval: Duration,
    /// Check timeout, ms.
    #[arg(long = "timeout-ms", default_value = "150", value_parser = common::millis)]
    timeout: Duration,
    #[arg(long = "down-after", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    down_after: u32,
    #[arg(long = "up-after", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    up_after: u32,
    /// Variants to run: `checks` (health checks only) and/or `passive` (client traffic too).
    #[arg(long, value_delimiter = ',', default_value = "checks,passive", value_parser = ["checks", "passive"])]
    variants: Vec<String>,
    /// Client request period in the passive variant, ms.
    #[arg(long = "load-every-ms", default_value = "10", value_parser = common::millis)]
    load_every: Duration,
    /// Seed of the kill phases (0: from the clock).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// File the sims' PIDs are appended to, for the wrapper script's cleanup.
    #[arg(long = "pid-file")]
    pid_file: Option<String>,
    /// tokio worker threads of the main runtime (0 = tokio's default); the proxy runs on its
    /// own threads, one per CPU, whatever this says.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Primary instance URL (proxy).
    #[arg(long, default_value = "")]
    backend: String,
    /// Backup instance URL (proxy).
    #[arg(long, default_value = "")]
    backup: String,
    /// The proxy's in-flight bound (proxy).
    #[arg(long = "max-in-flight")]
    max_in_flight: Option<usize>,
    /// Longest run in proxy mode, s.
    #[arg(long = "duration-s", default_value = "600", value_parser = common::seconds)]
    duration: Duration,
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

fn nonzero_millis(v: &str) -> Result<Duration, String> {
    common::millis(v).and_then(|d| {
        if d.is_zero() {
            Err("must be above 0".into())
        } else {
            Ok(d)
        }
    })
}

fn parse_args() -> Opts {
    let o = <Opts as clap::Parser>::parse();
    let missing = match o.mode.as_str() {
        "detection" if o.bin.is_empty() => Some("--mode detection needs --bin"),
        "proxy" if o.backend.is_empty() || o.backup.is_empty() => {
            Some("--mode proxy needs --backend and --backup")
        }
        _ => None,
    };
    if let Some(m) = missing {
        <Opts as clap::CommandFactory>::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, m)
            .exit();
    }
    o
}

/// xorshift64*: enough randomness for kill phases, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// A free loopback port below the ephemeral range: no client socket can take it while the
/// primary is down between its kill and its restart.
fn free_port(rng: &mut Rng, taken: &[u16]) -> SocketAddr {
    for _ in 0..1000 {
        let port = 20_000 + rng.below(10_000) as u16;
        if taken.contains(&port) {
            continue;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    eprintln!("no free port found in 20000-29999");
    std::process::exit(1);
}

/// A `watchfire sim` child process, killed (SIGKILL) and reaped on drop.
struct Sim {
    child: Option<Child>,
}

impl Sim {
    fn start(bin: &str, addr: SocketAddr, pid_file: Option<&str>) -> Sim {
        let child = Command::new(bin)
            .args(["sim", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("cannot start `{bin} sim`: {e}");
                std::process::exit(1);
            });
        if let Some(f) = pid_file {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
            {
                let _ = writeln!(file, "{}", child.id());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if Instant::now() > deadline {
                eprintln!("sim on {addr} did not start listening within 10 s");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Sim { child: Some(child) }
    }

    /// SIGKILL, without waiting: the caller reaps it later with [`Sim::reap`].
    fn kill(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
        }
    }

    fn reap(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.reap();
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Polls `f` every 1 ms until it is true; the instant it was seen true, or None after `limit`.
fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    watchfire::threads::build_tokio((workers > 0).then_some(workers)).expect("tokio runtime")
}

/// Sets `stop` on SIGINT or SIGTERM, so that the child processes are killed by their guards.
fn stop_on_signal(rt: &tokio::runtime::Runtime, stop: Arc<AtomicBool>) {
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("signal: stopping");
        stop.store(true, Ordering::SeqCst);
    });
}

/// The client load of the `passive` variant: one `GET /health` every `every` on a keep-alive
/// connection (reconnecting after an error), until `stop`.
async fn client_load(
    proxy: SocketAddr,
    every: Duration,
    stop: CancellationToken,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let mut sender: Option<http1::SendRequest<Empty<Bytes>>> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = match tokio::net::TcpStream::connect(proxy).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    match http1::handshake(TokioIo::new(s)).await {
                        Ok((tx, conn)) => {
                            tokio::spawn(conn);
                            Some(tx)
                        }
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
        }
        let Some(tx) = sender.as_mut() else {
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let req = http::Request::builder()
            .uri("/health")
            .header("host", "gateway.bench")
            .body(Empty::new())
            .expect("request");
        let r = async {
            tx.ready().await?;
            let resp = tx.send_request(req).await?;
            let code = resp.status().as_u16();
            resp.into_body().collect().await?;
            Ok::<u16, hyper::Error>(code)
        };
        match tokio::time::timeout(Duration::from_secs(2), r).await {
            Ok(Ok(200)) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(code)) => {
                eprintln!("  client: {code} through the proxy");
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                eprintln!("  client: {e}");
                failed.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
            Err(_) => {
                eprintln!("  client: no answer within 2 s");
                failed.fetch_add(1, Ordering::Relaxed);
                sender = None;
            }
        }
    }
}

/// One round's figures.
struct Round {
    phase: Duration,
    switch: Duration,
    /// Health checks only: when the `down_after`-th failed check should switch.
    ideal: Option<Duration>,
    failback: Duration,
}

fn detection(o: &Opts) {
    let seed = if o.seed == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    } else {
        o.seed
    };
    let mut rng = Rng::new(seed);
    let tokio_rt = tokio_runtime(o.workers);
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(&tokio_rt, stop.clone());

    let pa = free_port(&mut rng, &[]);
    let ba = free_port(&mut rng, &[pa.port()]);
    let pid_file = o.pid_file.as_deref();
    let mut primary = Sim::start(&o.bin, pa, pid_file);
    let _backup = Sim::start(&o.bin, ba, pid_file);
    let yaml = format!(
        "failover:\n  - name: gw\n    instances: [http://{pa}, http://{ba}]\n    check: {{ path: /health, interval: {}ms, timeout: {}ms }}\n    down_after: {}\n    up_after: {}\n    hold: 0s\n    min_switch_interval: 0s\n    proxy: {{ listen: \"127.0.0.1:0\" }}\n",
        o.interval.as_millis(),
        o.timeout.as_millis(),
        o.down_after,
        o.up_after,
    );
    let cfg = config::load_str("failover-bench.yaml", &yaml).unwrap_or_else(|e| {
        eprintln!("bad config:\n{e}\n{yaml}");
        std::process::exit(2);
    });
    let cancel = CancellationToken::new();
    let rt = tokio_rt.block_on(async {
        Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
            .await
            .expect("runtime starts")
    });
    let g: Arc<Group> = rt.failover_group("gw").expect("group gw");
    let proxy = g.proxy_addr().expect("proxy listening");
    let check = rt.target("gw/0").expect("check target of the primary");
    let bound = o.interval * o.down_after + Duration::from_millis(50);
    eprintln!(
        "detection: primary sim {pa}, backup sim {ba}, proxy {proxy}; check every {:?} (timeout {:?}), \
         down_after {}, up_after {}, hold 0s, min_switch_interval 0s; bound {:?}; {} rounds per variant; seed {seed}",
        o.interval, o.timeout, o.down_after, o.up_after, bound, o.rounds
    );

    let mut results = Vec::new();
    'variants: for variant in &o.variants {
        let passive = variant == "passive";
        let load_stop = CancellationToken::new();
        let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        if passive {
            tokio_rt.spawn(client_load(
                proxy,
                o.load_every,
                load_stop.clone(),
                ok.clone(),
                failed.clone(),
            ));
        }
        eprintln!(
            "variant {variant}: {}",
            if passive {
                format!("one GET /health every {:?} through the proxy", o.load_every)
            } else {
                "no client traffic (health checks only)".into()
            }
        );
        // Stratified random phases, shuffled.
        let n = o.rounds as usize;
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut rounds = Vec::new();
        let mut missed = 0usize;
        for (r, &k) in order.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break 'variants;
            }
            let ready = poll_until(Duration::from_secs(10), || {
                g.active() == Some(0) && g.health(0) == Health::Up
            });
            if ready.is_none() {
                eprintln!("round {r}: the primary is not active and up after 10 s; stopping");
                break 'variants;
            }
            // The phase reference: the start of the primary's next check, from its record
            // (end time and duration) as soon as it is seen (polled every 1 ms).
            let probes = || check.stats.lock().expect("stats lock poisoned").probes();
            let before = probes();
            if poll_until(o.interval * 3, || probes() != before).is_none() {
                eprintln!("round {r}: no check of the primary within 3 intervals; stopping");
                break 'variants;
            }
            let check_start = {
                let st = check.stats.lock().expect("stats lock poisoned");
                let since_end = st
                    .last
                    .at
                    .and_then(|at| std::time::SystemTime::now().duration_since(at).ok())
                    .unwrap_or_default();
                let now = Instant::now();
                now.checked_sub(since_end + st.last.duration).unwrap_or(now)
            };
            // Up to 1 ms before the next check starts: a kill at the very moment a check
            // starts could race its connect.
            let span = o.interval.saturating_sub(Duration::from_millis(1));
            let phase = span.mul_f64((k as f64 + rng.unit()) / n as f64);
            if let Some(d) = (check_start + phase).checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            let killed = Instant::now();
            // The actual phase (later than planned when the plan was already in the past).
            let phase = killed - check_start;
            primary.kill();
            let switched = poll_until(Duration::from_secs(10), || g.active() == Some(1));
            primary.reap();
            let Some(switched) = switched else {
                eprintln!("round {r}: no switch within 10 s of the kill");
                missed += 1;
                continue;
            };
            let switch = switched - killed;
            // Ideal: the first check planned after the kill fails at once (refused), then
            // down_after − 1 more, one interval apart.
            let ideal = (!passive).then(|| {
                let checks_before = phase.as_nanos() / o.interval.as_nanos() + 1;
                let next = check_start + o.interval * checks_before as u32;
                (next - killed) + o.interval * (o.down_after - 1)
            });
            let restarted = Instant::now();
            primary = Sim::start(&o.bin, pa, pid_file);
            let Some(back) = poll_until(Duration::from_secs(10), || g.active() == Some(0)) else {
                eprintln!("round {r}: no failback within 10 s of the restart; stopping");
                break 'variants;
            };
            let failback = back - restarted;
            let vs_ideal = ideal
                .map(|i| {
                    format!(
                        "  (ideal {:6.1}, overhead {:+5.1})",
                        ms(i),
                        ms(switch) - ms(i)
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "  round {:2}: phase {:6.1} ms  kill→switch {:6.1} ms{vs_ideal}  restart→failback {:6.1} ms{}",
                r + 1,
                ms(phase),
                ms(switch),
                ms(failback),
                if switch <= bound { "" } else { "  OVER BOUND" }
            );
            rounds.push(Round {
                phase,
                switch,
                ideal,
                failback,
            });
        }
        load_stop.cancel();
        results.push((variant.clone(), rounds, missed, ok, failed));
    }

    for (variant, rounds, missed, ok, failed) in &results {
        let mut sw: Vec<f64> = rounds.iter().map(|r| ms(r.switch)).collect();
        sw.sort_by(f64::total_cmp);
        let mut over: Vec<f64> = rounds
            .iter()
            .filter_map(|r| Some(ms(r.switch) - ms(r.ideal?)))
            .collect();
        over.sort_by(f64::total_cmp);
        // Overhead over the ideal only means something with health checks alone.
        let overhead = |q: f64| {
            if over.is_empty() {
                "na".to_string()
            } else {
                format!("{:.1}", quantile(&over, q))
            }
        };
        let mut fb: Vec<f64> = rounds.iter().map(|r| ms(r.failback)).collect();
        fb.sort_by(f64::total_cmp);
        let mut ph: Vec<f64> = rounds.iter().map(|r| ms(r.phase)).collect();
        ph.sort_by(f64::total_cmp);
        let within = rounds.iter().filter(|r| r.switch <= bound).count();
        println!(
            "RESULT scenario=detection variant={variant} rounds={} missed={missed} interval_ms={} down_after={} up_after={} bound_ms={:.0} \
             min_ms={:.1} p50_ms={:.1} p90_ms={:.1} max_ms={:.1} within={within} overhead_p50_ms={} overhead_max_ms={} \
             phase_min_ms={:.1} phase_max_ms={:.1} failback_p50_ms={:.1} failback_max_ms={:.1} client_ok={} client_failed={}",
            rounds.len(),
            o.interval.as_millis(),
            o.down_after,
            o.up_after,
            ms(bound),
            quantile(&sw, 0.0),
            quantile(&sw, 0.5),
            quantile(&sw, 0.9),
            quantile(&sw, 1.0),
            overhead(0.5),
            overhead(1.0),
            quantile(&ph, 0.0),
            quantile(&ph, 1.0),
            quantile(&fb, 0.5),
            quantile(&fb, 1.0),
            ok.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        );
    }
    cancel.cancel();
    tokio_rt.block_on(async {
        rt.drain(Duration::from_secs(2)).await;
    });
    drop(primary);
    tokio_rt.shutdown_timeout(Duration::from_secs(1));
    if stop.load(Ordering::SeqCst) {
        std::process::exit(130);
    }
}

/// (utime + stime) of this process, in clock ticks.
fn process_ticks() -> u64 {
    let (u, s) = common::process_cpu();
    u + s
}

fn proxy(o: &Opts) {
    let tokio_rt = tokio_runtime(o.workers);
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(&tokio_rt, stop.clone());
    let mif = o
        .max_in_flight
        .map(|m| format!(", max_in_flight: {m}"))
        .unwrap_or_default();
    let yaml = format!(
        "failover:\n  - name: bench\n    instances: [{}, {}]\n    check: {{ path: /, interval: 1s, timeout: 500ms }}\n    proxy: {{ listen: \"127.0.0.1:0\"{mif} }}\n",
        o.backend, o.backup
    );
    let cfg = config::load_str("failover-bench.yaml", &yaml).unwrap_or_else(|e| {
        eprintln!("bad config:\n{e}\n{yaml}");
        std::process::exit(2);
    });
    let cancel = CancellationToken::new();
    let rt = tokio_rt.block_on(async {
        Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone())
            .await
            .expect("runtime starts")
    });
    let g = rt.failover_group("bench").expect("group bench");
    let addr = g.proxy_addr().expect("proxy listening");
    if poll_until(Duration::from_secs(10), || {
        g.active() == Some(0) && g.health(0) == Health::Up
    })
    .is_none()
    {
        eprintln!("the backend {} is not up after 10 s", o.backend);
        std::process::exit(1);
    }
    let ticks0 = process_ticks();
    let t0 = Instant::now();
    println!("PROXY {addr}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "proxy mode: {addr} → {} (backup {}), workers {}, max_in_flight {}; until stdin EOF or {:?}",
        o.backend,
        o.backup,
        if o.workers == 0 {
            "tokio default".to_string()
        } else {
            o.workers.to_string()
        },
        o.max_in_flight
            .map(|m| m.to_string())
            .unwrap_or_else(|| "default".into()),
        o.duration
    );
    let eof = Arc::new(AtomicBool::new(false));
    {
        let eof = eof.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
                line.clear();
            }
            eof.store(true, Ordering::SeqCst);
        });
    }
    let deadline = t0 + o.duration;
    while !eof.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let ticks = process_ticks() - ticks0;
    let ok = g.proxy.requests(Some(0), 200);
    let backup_ok = g.proxy.requests(Some(1), 200);
    let (retries_connect, retries_replay) = g.proxy.retries();
    let rejected = g.proxy.requests(None, 503) + g.proxy.requests(None, 502);
    let errors = g.proxy.requests(Some(0), 502) + g.proxy.requests(Some(0), 504);
    println!(
        "RESULT scenario=proxy requests_primary_200={ok} requests_backup_200={backup_ok} proxy_503_502={rejected} \
         instance_502_504={errors} retries_connect={retries_connect} retries_replay={retries_replay} cpu_ticks={ticks} seconds={:.1}",
        t0.elapsed().as_secs_f64()
    );
    cancel.cancel();
    tokio_rt.block_on(async {
        rt.drain(Duration::from_secs(2)).await;
    });
    tokio_rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    let o = parse_args();
    match o.mode.as_str() {
        "proxy" => proxy(&o),
        _ => detection(&o),
    }
}
