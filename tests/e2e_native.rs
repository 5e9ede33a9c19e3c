//! Native histograms with the real Prometheus (`cargo test --features e2e --test e2e_native`;
//! `.ci/run` installs it): Prometheus 2.42 run with `--enable-feature=native-histograms`
//! scrapes an in-process watchfire whose target answers after a known spread of delays.
//!
//! - what Prometheus sends as `Accept` (recorded by a second scrape job) is answered in the
//!   protobuf format;
//! - Prometheus stores the probe duration as one native series per target, and no `_bucket`
//!   series;
//! - `histogram_quantile(0.99, rate(watchfire_probe_duration_seconds[1m]))` agrees with
//!   watchfire's own HDR p99 within one schema-3 bucket: the ratio is within `2^(±1/8)`
//!   (±9 %), widened by 1 % for HDR's 2-significant-figure resolution.
//!
//! Missing programs fail the test loudly. Loopback only, ports from 127.0.0.1:0, deadlines
//! instead of sleeps, the child killed by a drop guard.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/procs.rs"]
mod procs;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use watchfire::expo::Format;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::server;

use procs::{free_port, require, Proc};

/// The target's delays: 100 answers cycle through 4 ms + k × 0.3 ms (4 ms to 33.7 ms).
fn delay(n: u64) -> Duration {
    Duration::from_micros(4_000 + (n % 100) * 300)
}

/// An HTTP server that answers after [`delay`] of its request count.
async fn spread_target(cancel: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                _ = cancel.cancelled() => return,
            };
            let n = n.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let d = delay(n.fetch_add(1, Ordering::Relaxed));
                    async move {
                        tokio::time::sleep(d).await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A scrape target that records the `Accept` header of each scrape and answers one gauge.
async fn accept_recorder(cancel: CancellationToken) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let got = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                _ = cancel.cancelled() => return,
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let accept = req
                        .headers()
                        .get("accept")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().unwrap().push(accept);
                    async {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4")
                                .body(Full::new(Bytes::from(
                                    "# TYPE up_recorder gauge\nup_recorder 1\n",
                                )))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An instant query's result vector, or Prometheus' error.
async fn query(prom: SocketAddr, q: &str) -> Result<Vec<Value>, String> {
    let (status, body) = common::get(prom, &format!("/api/v1/query?query={}", enc(q))).await;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("{status}: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Polls `check` every 100 ms until it returns `Ok`, or panics with `what` and the log.
async fn until<T, F, Fut>(limit: Duration, what: &str, prom: &Proc, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let last = std::cell::RefCell::new(String::new());
    let got = common::poll_until(limit, || {
        let fut = check();
        let last = &last;
        async move {
            match fut.await {
                Ok(v) => Some(v),
                Err(e) => {
                    *last.borrow_mut() = e;
                    None
                }
            }
        }
    })
    .await;
    got.unwrap_or_else(|| {
        panic!(
            "timed out after {limit:?} waiting for {what}; last: {last}\n{}",
            prom.tail(),
            last = last.borrow()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_ingests_the_native_duration_histogram_and_its_p99_agrees_with_hdr() {
    require("prometheus");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let cancel = CancellationToken::new();
    let target = spread_target(cancel.clone()).await;
    let (recorder, accepts) = accept_recorder(cancel.clone()).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wf = listener.local_addr().unwrap();
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n\
             \x20 - job_name: watchfire\n    static_configs: [{{ targets: ['{wf}'] }}]\n\
             \x20 - job_name: recorder\n    static_configs: [{{ targets: ['{recorder}'] }}]\n"
        ),
    )
    .unwrap();
    let prom = Proc::spawn(
        "prometheus",
        "prometheus",
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("prom").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
            "--enable-feature=native-histograms".into(),
            "--log.level=warn".into(),
        ],
        dir,
    );
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    // Prometheus starts before watchfire probes anything: HDR's p99 counts every probe since
    // the start, and probes slowed by Prometheus' own start-up (which it never sees) would
    // stay in it.
    until(
        Duration::from_secs(30),
        "Prometheus ready",
        &prom,
        || async move {
            tokio::net::TcpStream::connect(prom_addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (status, _) = common::get(prom_addr, "/-/ready").await;
            if status == 200 {
                Ok(())
            } else {
                Err(format!("/-/ready: {status}"))
            }
        },
    )
    .await;
    let config_path = dir.join("watchfire.yaml");
    std::fs::write(
        &config_path,
        format!(
            "defaults:\n  interval: 100ms\n  timeout: 90ms\n\
             targets:\n  - name: spread\n    url: http://{target}/\n"
        ),
    )
    .unwrap();
    let config = watchfire::config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let runtime = Runtime::start(config, None, RuntimeOptions::default(), cancel.clone())
        .await
        .expect("runtime");
    let srv = common::serve(listener, &runtime, &cancel);

    // What Prometheus asks for: protobuf first, which watchfire answers in.
    let accept = until(
        Duration::from_secs(30),
        "a scrape of the recorder",
        &prom,
        || {
            let accepts = accepts.clone();
            async move {
                accepts
                    .lock()
                    .unwrap()
                    .first()
                    .cloned()
                    .ok_or_else(|| "no scrape yet".to_string())
            }
        },
    )
    .await;
    eprintln!("Prometheus sends Accept: {accept}");
    assert_eq!(
        server::negotiate::metrics_format(Some(accept.as_bytes())),
        Format::Protobuf,
        "{accept}"
    );

    // One native series for the target; no classic bucket series.
    let series = until(
        Duration::from_secs(30),
        "the native series",
        &prom,
        || async move {
            let r = query(
                prom_addr,
                "watchfire_probe_duration_seconds{target=\"spread\"}",
            )
            .await?;
            match r.as_slice() {
                [one] if one.get("histogram").is_some() => Ok(one.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(series.get("value").is_none(), "{series}");
    let buckets = query(
        prom_addr,
        "count({__name__=~\"watchfire_probe_duration_seconds_(bucket|count|sum)\"})",
    )
    .await
    .unwrap();
    assert!(buckets.is_empty(), "classic series stored: {buckets:?}");

    // p99 over the last minute against HDR's p99 (the delay cycle is stationary), once
    // Prometheus holds 10 scrapes of the native series.
    until(
        Duration::from_secs(60),
        "10 native samples",
        &prom,
        || async move {
            let r = query(
                prom_addr,
                "count_over_time(watchfire_probe_duration_seconds{target=\"spread\"}[1m])",
            )
            .await?;
            match r.as_slice() {
                [one]
                    if one["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
                        >= Some(10.0) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // HDR's p99 covers every probe since start, Prometheus' the last minute of scrapes: a load
    // spike on a shared machine can move one and not the other for a scrape or two, so the two
    // are compared again (with the last pair reported) until they agree or 30 s pass.
    let bound = 2f64.powf(1.0 / 8.0) * 1.01;
    let hdr_p99 = || {
        runtime.targets()[0]
            .stats
            .lock()
            .unwrap()
            .latency
            .quantile(0.99)
            .expect("probes recorded")
            .as_secs_f64()
    };
    let (prom_p99, hdr_p99) = until(
        Duration::from_secs(30),
        "Prometheus' p99 within one native bucket of HDR's",
        &prom,
        || async {
            let q = "histogram_quantile(0.99, rate(watchfire_probe_duration_seconds{target=\"spread\"}[1m]))";
            let r = query(prom_addr, q).await?;
            let prom_p99: f64 = match r.as_slice() {
                [one] => one["value"][1]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("{one}"))?,
                other => return Err(format!("{other:?}")),
            };
            let hdr = hdr_p99();
            let ratio = prom_p99 / hdr;
            if ratio <= bound && ratio >= 1.0 / bound {
                Ok((prom_p99, hdr))
            } else {
                Err(format!(
                    "Prometheus p99 {prom_p99}, HDR p99 {hdr}, ratio {ratio} outside 1/{bound}..{bound}"
                ))
            }
        },
    )
    .await;
    eprintln!("p99: Prometheus {prom_p99:.6} s, HDR {hdr_p99:.6} s");

    // verify's default baseline query finds the native series too (no `_bucket` stored here).
    let baseline = watchfire::verify::plan::DEFAULT_BASELINE_QUERY
        .replace("$target", "spread")
        .replace("$range", "1m");
    let r = query(prom_addr, &baseline).await.unwrap();
    let base_p99: f64 = match r.as_slice() {
        [one] => one["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap(),
        other => panic!("baseline query {baseline}: {other:?}"),
    };
    let ratio = base_p99 / prom_p99;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "baseline p99 {base_p99} against Prometheus' own p99 {prom_p99} a moment before"
    );

    cancel.cancel();
    drop(prom);
    srv.await.unwrap().unwrap();
}
