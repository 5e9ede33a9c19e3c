//! `/metrics` at fleet sizes (issue 15): the per-target families and aggregates rendered for
//! 10,000 and 100,000 in-memory targets at each detail level and with `aggregate_by`.
//!
//! Each target has one user label (`team`, 100 values) and a few hundred probes recorded
//! (healthy: every probe succeeds, durations spread over 0.2–5 ms), so every family a healthy
//! target has is written. For each case the text exposition is rendered `--renders` times into a
//! fresh `String` through [`watchfire::metrics::render_targets`] (what `/metrics` runs for the
//! targets; the process-wide families add a few dozen lines); reported: series (sample lines),
//! bytes, and the median render time.
//!
//! ```text
//! cargo bench --bench metrics
//! cargo bench --bench metrics -- --targets 10000,100000 --probes 300 --renders 5
//! ```

/// The allocator the `watchfire` binary uses (src/main.rs), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use watchfire::config::metrics::{Detail, MetricsConfig, PerTarget};
use watchfire::expo::Writer;
use watchfire::metrics::{render_targets, TargetView};
use watchfire::probe::{Outcome, Phases};
use watchfire::record::TargetStats;
use watchfire::state::Thresholds;

/// Distinct values of the `team` label.
const TEAMS: usize = 100;

struct Args {
    targets: Vec<usize>,
    probes: usize,
    renders: usize,
}

fn args() -> Args {
    let mut a = Args {
        targets: vec![10_000, 100_000],
        probes: 300,
        renders: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--targets" => {
                a.targets = value()
                    .split(',')
                    .map(|n| n.parse().expect("--targets N,N"))
                    .collect()
            }
            "--probes" => a.probes = value().parse().expect("--probes N"),
            "--renders" => a.renders = value().parse().expect("--renders N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

struct Target {
    name: String,
    labels: BTreeMap<String, String>,
    stats: Mutex<TargetStats>,
}

fn fleet(n: usize, probes: usize) -> Vec<Target> {
    let thresholds = Thresholds {
        down_after: 3,
        up_after: 2,
    };
    let planned = tokio::time::Instant::now();
    (0..n)
        .map(|i| {
            let mut s = TargetStats::default();
            for p in 0..probes {
                let us = 200 + ((i * 7919 + p * 104_729) % 4800) as u64;
                let o = Outcome {
                    planned,
                    started: planned + Duration::from_micros(30),
                    finished: planned + Duration::from_micros(30 + us),
                    phases: Phases::default(),
                    status: Some(200),
                    body_bytes: 2,
                    result: Ok(()),
                    detail: None,
                    reused_connection: false,
                };
                s.record(&o, thresholds);
            }
            Target {
                name: format!("target-{i:06}"),
                labels: [("team".to_string(), format!("team-{:03}", i % TEAMS))].into(),
                stats: Mutex::new(s),
            }
        })
        .collect()
}

fn render(fleet: &[Target], cfg: &MetricsConfig) -> String {
    let mut out = String::new();
    let views = fleet.iter().map(|t| TargetView {
        name: &t.name,
        labels: &t.labels,
        component: &t.name,
        stats: &t.stats,
        prober: None,
    });
    render_targets(&mut Writer::new(&mut out), views, cfg, SystemTime::now());
    out
}

fn main() {
    let a = args();
    let cases: Vec<(&str, MetricsConfig)> = vec![
        ("minimal", level(Detail::Minimal)),
        ("standard (default)", level(Detail::Standard)),
        ("full", level(Detail::Full)),
        (
            "aggregate_by [team], per_target failing",
            MetricsConfig {
                aggregate_by: vec!["team".into()],
                per_target: PerTarget::Failing,
                ..MetricsConfig::default()
            },
        ),
    ];
    println!(
        "| targets | metrics | series | series/target | MB | render median (of {}) |",
        a.renders
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: |");
    for &n in &a.targets {
        let t0 = Instant::now();
        let f = fleet(n, a.probes);
        eprintln!(
            "{n} targets, {} probes each, built in {:?}",
            a.probes,
            t0.elapsed()
        );
        for (name, cfg) in &cases {
            let mut times = Vec::with_capacity(a.renders);
            let mut text = String::new();
            for _ in 0..a.renders {
                let t = Instant::now();
                text = render(&f, cfg);
                times.push(t.elapsed());
            }
            times.sort();
            let series = text.lines().filter(|l| !l.starts_with('#')).count();
            println!(
                "| {n} | {name} | {series} | {:.2} | {:.1} | {:.3} s |",
                series as f64 / n as f64,
                text.len() as f64 / 1e6,
                times[times.len() / 2].as_secs_f64()
            );
        }
    }
}

fn level(detail: Detail) -> MetricsConfig {
    MetricsConfig {
        detail,
        ..MetricsConfig::default()
    }
}
