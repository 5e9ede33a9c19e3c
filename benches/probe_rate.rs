//! Probe-rate, CPU, schedule-lag and memory benchmark of the whole runtime.
//!
//! Run through `bench/run.sh` (which starts a local nginx and compares with wrk), or by hand:
//!
//! ```text
//! cargo bench --bench probe_rate -- --url http://127.0.0.1:8080/ --scenario rate \
//!     --targets 2000 --interval-ms 100 --duration-s 10
//! ```
//!
//! # Method
//!
//! - Builds `--targets` N [`TargetSpec`]s named `t{i}`, all probing `--url` with a fresh
//!   connection per probe (`keep_alive: false` unless `--keep-alive true`), interval
//!   `--interval-ms` I, timeout min(0.8 × I, 2 s), `down_after`/`up_after` defaults.
//! - Starts [`Runtime::start`] (probe threads with their timerfd schedulers, `--max-concurrency`,
//!   default [`DEFAULT_MAX_CONCURRENCY`], `--min-wake-gap-us`, default 200) on a multi-thread
//!   tokio runtime with `--workers` worker threads
//!   (default 2 = the cores of the reference machine; `0` lets tokio choose, which is the number
//!   of CPUs).
//! - Warm-up: `--warmup-ms`, default max(I, 1 s) + 100 ms, so that every target has started
//!   (first starts are spread over one interval) and, at I ≥ 1 s, has also finished its first
//!   probe (histograms allocated). Targets still without a probe at the end of the warm-up are
//!   reported as `unprobed`.
//! - Measurement window of `--duration-s` D seconds. Every figure below except RSS and the
//!   `lag_*` HDR quantiles is a delta over that window:
//!   - probes: delta of [`Runtime::probes_recorded`] (cross-checked against the sum over targets
//!     of `stats.probes()`), probes/s = probes / window wall time;
//!   - CPU: delta of utime+stime of the whole process from `/proc/self/stat` (clock ticks,
//!     `getconf CLK_TCK`, 100 on Linux: 10 ms resolution, negligible over a window of seconds),
//!     split user/system, and per thread name from `/proc/self/task/*/stat` (the probe threads vs
//!     the rest); CPU µs per probe = CPU delta / probes;
//!   - failures by reason and skipped ticks: deltas of the per-target counters;
//!   - window lag: from the deltas of the per-target Prometheus lag buckets
//!     ([`LAG_BUCKETS`]: 0.1, 0.25, 0.5, 1, 2.5 ms …), as `win_lag_le_1ms_pct` (exact: the
//!     share of probes with lag ≤ 1 ms; p99 ≤ 1 ms ⇔ this is ≥ 99 %) and as p50/p99 by linear
//!     interpolation inside the bucket, like Prometheus' `histogram_quantile` (an estimate
//!     bounded by the bucket edges).
//! - `lag_p50_us` / `lag_p99_us` are the runtime's own HDR quantiles ([`Runtime::lag_quantile`]),
//!   exact to 1 % but CUMULATIVE since start: they include the warm-up (the HDR cannot be reset
//!   or subtracted from outside `src`).
//! - RSS: `VmRSS` from `/proc/self/status` after the tokio runtime is built but before the specs
//!   are built, and again at the end of the window (still running); RSS per target = delta / N
//!   (specs, targets, stats with both HDR histograms, scheduler entries, and whatever the probes
//!   in flight hold). `VmHWM` is reported too, and so are the bytes of HDR counts per target
//!   (`Hdr::heap_bytes` of both histograms) and the probes in flight at the end (a prober that
//!   falls behind holds up to `max_concurrency` connections and their buffers).
//! - Context: the CPU the rest of the machine used during the window (`/proc/stat` busy time
//!   minus this process: nginx and anyone else) and the load average, since on a shared machine
//!   every figure above moves with other load.
//!
//! The last line printed is machine-readable (`RESULT key=value ...`) and parsed by
//! `bench/run.sh`.

/// The allocator the `watchfire` binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{clock_ticks_per_s, parse_stat, process_cpu};
use tokio_util::sync::CancellationToken;
use watchfire::config::{Config, TargetSpec};
use watchfire::probe::Reason;
use watchfire::record::LAG_BUCKETS;
use watchfire::runtime::{Runtime, RuntimeOptions, DEFAULT_MAX_CONCURRENCY};

/// Command-line options; `--bench`, which cargo adds, is accepted and ignored.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "probe_rate")]
struct Opts {
    /// The URL every target probes.
    #[arg(long)]
    url: String,
    /// Scenario name, echoed in the report.
    #[arg(long, default_value = "custom")]
    scenario: String,
    /// Number of targets.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    targets: u64,
    /// Interval of every target, ms.
    #[arg(long = "interval-ms", default_value = "1000", value_parser = common::millis)]
    interval: Duration,
    /// Measurement window, s.
    #[arg(long = "duration-s", default_value = "10", value_parser = common::seconds)]
    duration: Duration,
    /// Warm-up, ms (default: max(interval, 1 s) + 100 ms).
    #[arg(long = "warmup-ms", value_parser = common::millis)]
    warmup: Option<Duration>,
    /// tokio worker threads (0 = tokio's default).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Bound on probes in flight.
    #[arg(long = "max-concurrency", default_value_t = DEFAULT_MAX_CONCURRENCY)]
    max_concurrency: usize,
    /// Least time between two wake-ups of a probe thread's scheduler, µs.
    #[arg(long = "min-wake-gap-us", default_value_t = watchfire::schedule::DEFAULT_MIN_WAKE_GAP.as_micros() as u64)]
    min_wake_gap_us: u64,
    /// Keep one connection per target.
    #[arg(long = "keep-alive", default_value_t = false, action = clap::ArgAction::Set)]
    keep_alive: bool,
    #[arg(long = "bench", hide = true)]
    _bench: bool,
}

/// utime+stime in clock ticks per thread name (threads of the same name summed).
fn thread_cpu() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, u, s)) = parse_stat(&text) {
            *out.entry(comm).or_insert(0) += u + s;
        }
    }
    out
}

/// Busy clock ticks of the whole machine (every CPU), from the first line of `/proc/stat`.
fn machine_busy() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    total.saturating_sub(idle)
}

/// The 1-minute load average.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`), as bytes.
fn status_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Counters summed over every target, plus process-wide figures, at one moment.
#[derive(Debug, Clone, Default)]
struct Snap {
    successes: u64,
    failures: [u64; Reason::ALL.len()],
    skipped: u64,
    lag: [u64; LAG_BUCKETS.len() + 1],
    unprobed: usize,
    hdr_bytes: usize,
    in_flight: u64,
    recorded: u64,
    utime: u64,
    stime: u64,
    threads: BTreeMap<String, u64>,
    machine_busy: u64,
    loadavg: f64,
    at: Option<std::time::Instant>,
}

impl Snap {
    fn take(rt: &Runtime) -> Snap {
        let mut s = Snap::default();
        for t in rt.targets().iter() {
            let st = t.stats.lock().expect("stats lock poisoned");
            s.successes += st.successes;
            for (a, b) in s.failures.iter_mut().zip(st.failures.iter()) {
                *a += b;
            }
            s.skipped += st.skipped;
            for (a, b) in s.lag.iter_mut().zip(st.lag.counts.iter()) {
                *a += b;
            }
            if st.probes() == 0 {
                s.unprobed += 1;
            }
            s.hdr_bytes += st.latency.heap_bytes() + st.latency_planned.heap_bytes();
        }
        s.in_flight = rt.in_flight();
        s.recorded = rt.probes_recorded();
        (s.utime, s.stime) = process_cpu();
        s.threads = thread_cpu();
        s.machine_busy = machine_busy();
        s.loadavg = loadavg();
        s.at = Some(std::time::Instant::now());
        s
    }

    fn probes(&self) -> u64 {
        self.successes + self.failures.iter().sum::<u64>()
    }
}

/// Quantile `q` from non-cumulative bucket counts over `bounds` (last count = +Inf), by linear
/// interpolation inside the bucket (Prometheus' `histogram_quantile`), in seconds.
fn bucket_quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut cum = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        let before = cum;
        cum += c;
        if cum as f64 >= rank && c > 0 {
            let Some(&hi) = bounds.get(i) else {
                // +Inf bucket: the best bound is the largest finite one.
                return bounds.last().copied();
            };
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            return Some(lo + (hi - lo) * ((rank - before as f64) / c as f64));
        }
    }
    bounds.last().copied()
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let ticks = clock_ticks_per_s();
    let tokio_rt = watchfire::threads::build_tokio((o.workers > 0).then_some(o.workers))
        .expect("tokio runtime");
    let rss_before = status_bytes("VmRSS");

    let timeout = o.interval.mul_f64(0.8).min(Duration::from_secs(2));
    let mut targets = Vec::with_capacity(o.targets as usize);
    for i in 0..o.targets {
        let mut spec = TargetSpec::new(format!("t{i}"), &o.url).unwrap_or_else(|e| {
            eprintln!("bad --url {}: {e}", o.url);
            std::process::exit(2);
        });
        spec.interval = o.interval;
        spec.timeout = timeout;
        if let Some(h) = spec.http_mut() {
            h.keep_alive = o.keep_alive;
        }
        targets.push(Arc::new(spec));
    }
    let warmup = o
        .warmup
        .unwrap_or_else(|| o.interval.max(Duration::from_secs(1)) + Duration::from_millis(100));
    let offered = o.targets as f64 / o.interval.as_secs_f64();
    eprintln!(
        "scenario {}: {} targets every {:?} (offered {:.0}/s), timeout {:?}, workers {}, \
         max_concurrency {}, min_wake_gap {} µs, keep_alive {}, warm-up {:?}, window {:?}",
        o.scenario,
        o.targets,
        o.interval,
        offered,
        timeout,
        if o.workers == 0 {
            "tokio default".to_string()
        } else {
            o.workers.to_string()
        },
        o.max_concurrency,
        o.min_wake_gap_us,
        o.keep_alive,
        warmup,
        o.duration
    );

    let cancel = CancellationToken::new();
    let opts = RuntimeOptions {
        max_concurrency: o.max_concurrency,
        precise_timer: true,
        min_wake_gap: Duration::from_micros(o.min_wake_gap_us),
        ..RuntimeOptions::default()
    };
    let (s0, s1, rss_end, hwm_end, lag50, lag99, drained) = tokio_rt.block_on(async {
        let config = Config {
            targets,
            ..Default::default()
        };
        let rt = Runtime::start(config, None, opts, cancel.clone())
            .await
            .expect("runtime starts");
        tokio::time::sleep(warmup).await;
        let s0 = Snap::take(&rt);
        tokio::time::sleep(o.duration).await;
        let s1 = Snap::take(&rt);
        let rss_end = status_bytes("VmRSS");
        let hwm_end = status_bytes("VmHWM");
        let lag50 = rt.lag_quantile(0.5).unwrap_or_default();
        let lag99 = rt.lag_quantile(0.99).unwrap_or_default();
        cancel.cancel();
        let drained = rt.drain(Duration::from_secs(3)).await;
        (s0, s1, rss_end, hwm_end, lag50, lag99, drained)
    });
    tokio_rt.shutdown_timeout(Duration::from_secs(1));

    let wall = s1
        .at
        .zip(s0.at)
        .map(|(b, a)| b - a)
        .unwrap_or(o.duration)
        .as_secs_f64();
    let probes = s1.recorded - s0.recorded;
    let probes_by_target = s1.probes() - s0.probes();
    let per_s = probes as f64 / wall;
    let tick_us = 1e6 / ticks as f64;
    let user_us = (s1.utime - s0.utime) as f64 * tick_us;
    let sys_us = (s1.stime - s0.stime) as f64 * tick_us;
    let per_probe = |us: f64| if probes == 0 { 0.0 } else { us / probes as f64 };
    let cpu_us_per_probe = per_probe(user_us + sys_us);
    let cores = (user_us + sys_us) / 1e6 / wall;
    let machine_cores = (s1.machine_busy - s0.machine_busy) as f64 * tick_us / 1e6 / wall;
    let other_cores = (machine_cores - cores).max(0.0);

    let failures: Vec<(Reason, u64)> = Reason::ALL
        .iter()
        .map(|&r| (r, s1.failures[r.index()] - s0.failures[r.index()]))
        .filter(|&(_, n)| n > 0)
        .collect();
    let failed: u64 = failures.iter().map(|(_, n)| n).sum();
    let failures_text = if failures.is_empty() {
        "none".to_string()
    } else {
        failures
            .iter()
            .map(|(r, n)| format!("{r}:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let skipped = s1.skipped - s0.skipped;

    let lag_counts: Vec<u64> = s1
        .lag
        .iter()
        .zip(s0.lag.iter())
        .map(|(b, a)| b - a)
        .collect();
    let lag_total: u64 = lag_counts.iter().sum();
    let le_1ms: u64 = LAG_BUCKETS
        .iter()
        .zip(lag_counts.iter())
        .filter(|(&b, _)| b <= 0.001)
        .map(|(_, &c)| c)
        .sum();
    let le_1ms_pct = if lag_total == 0 {
        0.0
    } else {
        100.0 * le_1ms as f64 / lag_total as f64
    };
    let wq = |q| bucket_quantile(&LAG_BUCKETS, &lag_counts, q).unwrap_or(0.0) * 1e6;
    let rss_per_target = rss_end.saturating_sub(rss_before) as f64 / o.targets as f64;
    let hdr_per_target = s1.hdr_bytes as f64 / o.targets as f64;

    let mut thread_lines = Vec::new();
    for (name, &end) in &s1.threads {
        let start = s0.threads.get(name).copied().unwrap_or(0);
        let us = end.saturating_sub(start) as f64 * tick_us;
        if us > 0.0 {
            thread_lines.push(format!("{name}={:.1}", per_probe(us)));
        }
    }

    eprintln!(
        "window {wall:.2} s: {probes} probes ({probes_by_target} by target counters), \
         {per_s:.0}/s of {offered:.0}/s offered, {skipped} ticks skipped, {} targets unprobed \
         after warm-up",
        s0.unprobed
    );
    eprintln!(
        "CPU {:.2} cores: {cpu_us_per_probe:.1} µs/probe (user {:.1}, system {:.1}); \
         per thread µs/probe: {}; the rest of the machine (nginx, other users) used \
         {other_cores:.2} cores; load average {:.2} → {:.2}",
        cores,
        per_probe(user_us),
        per_probe(sys_us),
        thread_lines.join(" "),
        s0.loadavg,
        s1.loadavg
    );
    eprintln!(
        "lag (HDR, cumulative incl. warm-up): p50 {} µs, p99 {} µs; window (buckets): p50 ≈ \
         {:.0} µs, p99 ≈ {:.0} µs, {le_1ms_pct:.2} % ≤ 1 ms",
        lag50.as_micros(),
        lag99.as_micros(),
        wq(0.5),
        wq(0.99)
    );
    eprintln!(
        "RSS {} KiB before, {} KiB at end (peak {} KiB): {rss_per_target:.0} B/target; \
         HDR counts {hdr_per_target:.0} B/target (both histograms); {} probes in flight at the \
         end; failures in window: {failures_text}; drained {drained}",
        rss_before / 1024,
        rss_end / 1024,
        hwm_end / 1024,
        s1.in_flight
    );
    println!(
        "RESULT scenario={} targets={} interval_ms={} workers={} max_concurrency={} \
         min_wake_gap_us={} keep_alive={} window_s={wall:.2} offered_per_s={offered:.0} probes={probes} \
         probes_per_s={per_s:.0} skipped={skipped} unprobed_after_warmup={} cpu_cores={cores:.2} \
         other_cores={other_cores:.2} loadavg={:.2} \
         cpu_us_per_probe={cpu_us_per_probe:.1} cpu_user_us_per_probe={:.1} \
         cpu_sys_us_per_probe={:.1} lag_p50_us={} lag_p99_us={} win_lag_p50_us={:.0} \
         win_lag_p99_us={:.0} win_lag_le_1ms_pct={le_1ms_pct:.2} rss_before_bytes={rss_before} \
         rss_end_bytes={rss_end} rss_peak_bytes={hwm_end} rss_per_target_bytes={rss_per_target:.0} \
         hdr_bytes_per_target={hdr_per_target:.0} in_flight_end={} failures={failed} \
         failure_reasons={failures_text}",
        o.scenario,
        o.targets,
        o.interval.as_millis(),
        o.workers,
        o.max_concurrency,
        o.min_wake_gap_us,
        o.keep_alive,
        s0.unprobed,
        s1.loadavg,
        per_probe(user_us),
        per_probe(sys_us),
        lag50.as_micros(),
        lag99.as_micros(),
        wq(0.5),
        wq(0.99),
        s1.in_flight,
    );
}
