//! The `/probe` flood client of `bench/flood.sh`: N concurrent `/probe` requests, each on its
//! own connection, to a server that probes a target that never answers, and `/metrics` asked on
//! fresh connections all through. Each answer is timed from the moment its request was written
//! to the moment the first bytes of its answer (the status line) arrived, on a runtime that does
//! nothing else and parses nothing but the status code; the client's own lag (how late a 1 ms
//! sleep wakes) is reported beside, so that a late client is not taken for a late server.
//!
//! ```text
//! flood --addr 127.0.0.1:9115 --target http://127.0.0.1:PORT/ --probes 1500 --deadline-s 5
//! ```
//!
//! Prints one JSON object: how many answers were 200, 503 or none, the quantiles of (answer
//! time − deadline) in ms for the 200s, how many came later than deadline + 100 ms, the slowest
//! 503, and the `/metrics` scrapes (200 within 1 s) during the flood.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Barrier;

/// Command-line options; `--bench`, which cargo adds, is accepted and ignored.
#[derive(Debug, clap::Parser)]
#[command(name = "flood")]
struct Opts {
    /// The server (`watchfire` or blackbox_exporter).
    #[arg(long)]
    addr: SocketAddr,
    /// The `target` of every `/probe` (a server that accepts and never answers).
    #[arg(long)]
    target: String,
    /// Concurrent `/probe` requests.
    #[arg(long, default_value_t = 1500)]
    probes: usize,
    /// The probe deadline: the scrape-timeout header says this + 0.5 s (the default offset).
    #[arg(long, default_value_t = 5.0)]
    deadline_s: f64,
    /// `/metrics` scrapes during the flood, spread over the deadline.
    #[arg(long, default_value_t = 20)]
    scrapes: usize,
    #[arg(long, hide = true)]
    bench: bool,
}

/// What one request got: its status (0: no answer or an error) and how long the head took.
#[derive(Debug, Clone, Copy)]
struct Answer {
    status: u16,
    took: Duration,
}

/// One GET on a fresh connection, timed from when the request is written to when the first
/// bytes of the answer (its status line) arrive; the rest is then read to the end. Raw bytes, no
/// HTTP library: parsing costs the client nothing, so the time is the server's. Bounded by
/// `limit`.
async fn get(addr: SocketAddr, path: &str, headers: &str, limit: Duration) -> Answer {
    let mut sent = Instant::now();
    let once = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let _ = stream.set_nodelay(true);
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        sent = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        let n = stream.read(&mut buf).await.ok()?;
        let head = Instant::now();
        // `HTTP/1.1 200 ...`: the status is the 3 digits after the first space.
        let status = std::str::from_utf8(&buf[..n.min(64)])
            .ok()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        while stream.read(&mut buf).await.ok()? > 0 {}
        Some(Answer {
            status,
            took: head - sent,
        })
    };
    match tokio::time::timeout(limit, once).await {
        Ok(Some(a)) => a,
        _ => Answer {
            status: 0,
            took: sent.elapsed(),
        },
    }
}

/// How late this client's own runtime runs: a task that asks for 1 ms sleeps until `stop`,
/// keeping the worst overshoot (a late client would make the server look late).
async fn own_lag(stop: tokio_util::sync::CancellationToken) -> Duration {
    let mut worst = Duration::ZERO;
    while !stop.is_cancelled() {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    worst
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

fn ms(x: Option<f64>) -> serde_json::Value {
    x.map_or(serde_json::Value::Null, |v| {
        serde_json::json!((v * 1000.0 * 10.0).round() / 10.0)
    })
}

async fn flood(o: Opts) -> serde_json::Value {
    let deadline = Duration::from_secs_f64(o.deadline_s);
    let enc: String = url::form_urlencoded::byte_serialize(o.target.as_bytes()).collect();
    let path = Arc::new(format!("/probe?module=http_2xx&target={enc}"));
    let header = Arc::new(format!(
        "X-Prometheus-Scrape-Timeout-Seconds: {}\r\n",
        o.deadline_s + 0.5
    ));
    let stop = tokio_util::sync::CancellationToken::new();
    let lag = tokio::spawn(own_lag(stop.clone()));
    // Every probe task starts at once.
    let barrier = Arc::new(Barrier::new(o.probes + 1));
    let mut probes = Vec::with_capacity(o.probes);
    for _ in 0..o.probes {
        let (b, p, h, addr) = (barrier.clone(), path.clone(), header.clone(), o.addr);
        probes.push(tokio::spawn(async move {
            b.wait().await;
            get(addr, &p, &h, deadline + Duration::from_secs(60)).await
        }));
    }
    barrier.wait().await;
    let every = deadline.mul_f64(1.0 / o.scrapes.max(1) as f64);
    let mut scrapes = Vec::new();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..o.scrapes {
        let t = Instant::now();
        let a = get(o.addr, "/metrics", "", Duration::from_secs(1)).await;
        scrapes.push((a.status == 200, t.elapsed()));
        tokio::time::sleep(every.saturating_sub(t.elapsed())).await;
    }
    let mut answers = Vec::with_capacity(o.probes);
    for p in probes {
        answers.push(p.await.expect("a probe task"));
    }
    stop.cancel();
    let lag = lag.await.expect("the lag task");
    let mut out = report(&o, deadline, &answers, &scrapes);
    out["client_own_lag_ms_max"] = ms(Some(lag.as_secs_f64()));
    out
}

fn report(
    o: &Opts,
    deadline: Duration,
    answers: &[Answer],
    scrapes: &[(bool, Duration)],
) -> serde_json::Value {
    let d = deadline.as_secs_f64();
    let mut over: Vec<f64> = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.took.as_secs_f64() - d)
        .collect();
    over.sort_by(f64::total_cmp);
    let refused: Vec<f64> = answers
        .iter()
        .filter(|a| a.status == 503)
        .map(|a| a.took.as_secs_f64())
        .collect();
    let none = answers
        .iter()
        .filter(|a| a.status != 200 && a.status != 503)
        .count();
    let scrape_max = scrapes
        .iter()
        .map(|s| s.1.as_secs_f64())
        .fold(0.0, f64::max);
    serde_json::json!({
        "probes": o.probes,
        "deadline_s": d,
        "answered_200": over.len(),
        "answered_503": refused.len(),
        "slowest_503_ms": ms(refused.iter().copied().reduce(f64::max)),
        "no_answer_or_other": none,
        "over_deadline_ms_min": ms(over.first().copied()),
        "over_deadline_ms_p50": ms(quantile(&over, 0.5)),
        "over_deadline_ms_p99": ms(quantile(&over, 0.99)),
        "over_deadline_ms_max": ms(over.last().copied()),
        "late_over_deadline_plus_100ms": over.iter().filter(|x| **x > 0.1).count(),
        "metrics_ok": scrapes.iter().filter(|s| s.0).count(),
        "metrics_asked": scrapes.len(),
        "metrics_slowest_ms": ms(Some(scrape_max)),
    })
}

fn main() {
    let o = <Opts as clap::Parser>::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let out = rt.block_on(flood(o));
    println!("{out}");
}
