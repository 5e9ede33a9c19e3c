//! The `/probe` flood client of `bench/flood.sh`: N concurrent `/probe` requests, each on its
//! own connection, to a server that probes a target that never answers, and `/metrics` asked on
//! fresh connections all through. Each answer is timed from the moment its request was handed
//! to the connection to the moment its response head arrived (hyper resolves the response future
//! then), on a runtime that does nothing else, so the figures are the server's, not a busy
//! client's.
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

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
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

/// One GET on a fresh connection, timed from when the request is handed to the connection to
/// when the response head arrives; the body is then read to the end. Bounded by `limit`.
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, String)], limit: Duration) -> Answer {
    let start = Instant::now();
    let mut sent = start;
    let once = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let mut req = http::Request::get(path)
            .header("host", addr.to_string())
            .header("connection", "close");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Empty::<Bytes>::new()).ok()?;
        sent = Instant::now();
        let resp = sender.send_request(req).await.ok()?;
        let head = Instant::now();
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
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
    let header = vec![(
        "x-prometheus-scrape-timeout-seconds",
        format!("{}", o.deadline_s + 0.5),
    )];
    let header = Arc::new(header);
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
        let a = get(o.addr, "/metrics", &[], Duration::from_secs(1)).await;
        scrapes.push((a.status == 200, t.elapsed()));
        tokio::time::sleep(every.saturating_sub(t.elapsed())).await;
    }
    let mut answers = Vec::with_capacity(o.probes);
    for p in probes {
        answers.push(p.await.expect("a probe task"));
    }
    report(&o, deadline, &answers, &scrapes)
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
