//! `/metrics` exposition benchmark (issue 15): the size and encode time of the text and the
//! protobuf formats for the same in-memory state, at 10,000 and 100,000 targets.
//!
//! Each target has one user label (`shard`, 100 values) and 60 recorded probes spread from 2 ms
//! to 37 ms (5 % apart; every 20th a timeout), so its HDR histogram, classic buckets and native
//! histogram are those of a target probed for a while. Targets probe a closed loopback port
//! once an hour, so no probe runs during the measurement. For each size and format the body is
//! rendered `--repeat` times through `server::metrics_encoded` (what `/metrics` answers, with an
//! empty process registry); reported: body bytes, the fastest render and the median.
//!
//! ```text
//! cargo bench --bench exposition
//! cargo bench --bench exposition -- --targets 10000,100000 --repeat 5
//! ```

use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;
use tokio_util::sync::CancellationToken;
use watchfire::expo::Format;
use watchfire::probe::{Outcome, Phases, Reason};
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::state::Thresholds;

struct Args {
    targets: Vec<usize>,
    repeat: usize,
}

fn args() -> Args {
    let mut a = Args {
        targets: vec![10_000, 100_000],
        repeat: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--targets" => {
                a.targets = it
                    .next()
                    .expect("--targets N[,N...]")
                    .split(',')
                    .map(|n| n.trim().parse().expect("--targets: a number"))
                    .collect()
            }
            "--repeat" => a.repeat = it.next().and_then(|n| n.parse().ok()).expect("--repeat N"),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

fn yaml(n: usize) -> String {
    let mut y = String::from("defaults:\n  interval: 1h\ntargets:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - name: svc-{i:06}\n    url: http://127.0.0.1:9/health\n    labels: {{ shard: s{} }}\n",
            i % 100
        ));
    }
    y
}

fn outcome(us: u64, result: Result<(), Reason>) -> Outcome {
    let planned = TokioInstant::now();
    Outcome {
        planned,
        started: planned,
        finished: planned + Duration::from_micros(us),
        phases: Phases::default(),
        status: Some(200),
        body_bytes: 20,
        result,
        detail: None,
        reused_connection: false,
    }
}

fn fill(rt: &Runtime) {
    let t = Thresholds {
        down_after: 3,
        up_after: 2,
    };
    for target in rt.targets().iter() {
        let mut s = target.stats.lock().expect("stats");
        let mut us = 2000.0f64;
        for k in 0..60 {
            let r = if k % 20 == 19 {
                Err(Reason::Timeout)
            } else {
                Ok(())
            };
            s.record(&outcome(us as u64, r), t);
            us *= 1.05;
        }
    }
}

fn measure(rt: &Runtime, format: Format, repeat: usize) -> (usize, Duration, Duration) {
    let registry = prometheus::Registry::new();
    let mut times = Vec::with_capacity(repeat);
    let mut bytes = 0;
    for _ in 0..repeat {
        let t0 = Instant::now();
        let body = watchfire::server::metrics_encoded(rt, &registry, format);
        times.push(t0.elapsed());
        bytes = body.len();
    }
    times.sort();
    (bytes, times[0], times[times.len() / 2])
}

async fn case(n: usize, repeat: usize) {
    let cfg = watchfire::config::load_str("bench.yaml", &yaml(n)).expect("config");
    let cancel = CancellationToken::new();
    let opts = RuntimeOptions {
        precise_timer: false,
        ..RuntimeOptions::default()
    };
    let rt = Runtime::start(cfg, None, opts, cancel.clone())
        .await
        .expect("runtime");
    fill(&rt);
    let (tb, tmin, tmed) = measure(&rt, Format::Text, repeat);
    let (pb, pmin, pmed) = measure(&rt, Format::Protobuf, repeat);
    let mb = |b: usize| b as f64 / 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{n:>7} targets  text     {:>8.1} MB  render min {:>7.1} ms  median {:>7.1} ms",
        mb(tb),
        ms(tmin),
        ms(tmed)
    );
    println!(
        "{n:>7} targets  protobuf {:>8.1} MB  render min {:>7.1} ms  median {:>7.1} ms  \
         (size {:.2}x text, time {:.2}x text)",
        mb(pb),
        ms(pmin),
        ms(pmed),
        pb as f64 / tb as f64,
        pmin.as_secs_f64() / tmin.as_secs_f64()
    );
    cancel.cancel();
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "exposition: {} renders per format, one user label per target, 60 probes each",
        a.repeat
    );
    for n in &a.targets {
        rt.block_on(case(*n, a.repeat));
    }
}
