//! Helpers shared by the integration tests: a tiny HTTP client and polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

/// One request on a fresh connection; returns status and body text.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// GET `path`.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path).await
}

/// How often [`poll_until`] and [`eventually`] ask again.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `check` every [`POLL_EVERY`] until it returns `Some`; `None` once `limit` has passed.
/// The one deadline loop of the tests: wait with this (or [`eventually`]), never with a sleep.
pub async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls `check` as [`poll_until`] does, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(limit, check).await {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// The value of the first sample line starting with `series` (name and labels as rendered).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Parses `watchfire run ARGS` as the binary would; the `run` subcommand's options, or clap's
/// error.
pub fn run_args(args: &[&str]) -> Result<watchfire::cli::RunArgs, clap::Error> {
    use clap::Parser as _;
    let argv = ["watchfire", "run"].iter().chain(args);
    match watchfire::cli::Cli::try_parse_from(argv)?.command {
        watchfire::cli::Command::Run(a) => Ok(a),
        _ => unreachable!("parsed as `run`"),
    }
}

/// Serves `runtime`'s API on `listener` with the process metrics, as `watchfire run` does,
/// until `cancel`; the server's task.
pub fn serve(
    listener: tokio::net::TcpListener,
    runtime: &std::sync::Arc<watchfire::runtime::Runtime>,
    cancel: &tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let state = std::sync::Arc::new(watchfire::server::AppState {
        runtime: runtime.clone(),
        registry: watchfire::metrics::process_registry(),
    });
    let c = cancel.clone();
    tokio::spawn(watchfire::server::serve(listener, state, async move {
        c.cancelled().await
    }))
}
