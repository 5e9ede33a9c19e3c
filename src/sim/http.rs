//! The HTTP side of the simulator: routing, the workload endpoints with their
//! faults, the control endpoints and `/metrics`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::debug;

use super::faults::parse_patch;
use super::{lock, AfterConn, AfterSlot, Inner, MAX_BODY_BYTES, MODEL_VERSION};
use crate::expo::{Family, Type, Writer};

const JSON: &str = "application/json";

/// A request abandoned without an answer (hung when the server shut down).
#[derive(Debug, thiserror::Error)]
#[error("request abandoned: the simulator is shutting down")]
pub(super) struct Abandoned;

type Resp = Response<Full<Bytes>>;

/// Counts a workload request in flight until dropped (answered or abandoned).
struct InFlight(Arc<Inner>);

impl InFlight {
    fn enter(inner: &Arc<Inner>) -> InFlight {
        inner.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(inner))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json_resp<T: Serialize>(status: StatusCode, body: &T) -> Resp {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(status, JSON, bytes),
        Err(e) => error_resp(StatusCode::INTERNAL_SERVER_ERROR, &format!("encoding: {e}")),
    }
}

fn error_resp(status: StatusCode, msg: &str) -> Resp {
    json_resp(status, &json!({ "error": msg }))
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error_resp(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

fn path_label(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/predict" => "/predict",
        "/metrics" => "/metrics",
        "/-/faults" => "/-/faults",
        "/-/faults/reset" => "/-/faults/reset",
        _ => "other",
    }
}

pub(super) async fn handle(
    inner: &Arc<Inner>,
    req: Request<Incoming>,
    after: &AfterSlot,
) -> Result<Resp, Abandoned> {
    let path = path_label(req.uri().path());
    let _busy = matches!(path, "/health" | "/predict").then(|| InFlight::enter(inner));
    let resp = route(inner, path, req, after).await?;
    debug!(path, status = resp.status().as_u16(), "answered");
    inner.record(path, resp.status());
    Ok(resp)
}

async fn route(
    inner: &Arc<Inner>,
    path: &'static str,
    req: Request<Incoming>,
    after: &AfterSlot,
) -> Result<Resp, Abandoned> {
    let method = req.method().clone();
    Ok(match path {
        "/health" if method == Method::GET => {
            if let Some(resp) = workload_faults(inner).await? {
                return Ok(resp);
            }
            let status = if inner.faults.borrow().unhealthy {
                "degraded"
            } else {
                "healthy"
            };
            json_resp(StatusCode::OK, &json!({ "status": status }))
        }
        "/predict" if method == Method::POST => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(resp) => return Ok(resp),
            };
            if let Some(resp) = workload_faults(inner).await? {
                return Ok(resp);
            }
            match predict(&body) {
                Ok(predictions) => json_resp(
                    StatusCode::OK,
                    &json!({ "predictions": predictions, "model_version": MODEL_VERSION }),
                ),
                Err(msg) => error_resp(StatusCode::BAD_REQUEST, &msg),
            }
        }
        "/metrics" if method == Method::GET => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            render_metrics(inner),
        ),
        "/-/faults" if method == Method::GET => json_resp(StatusCode::OK, &*inner.faults.borrow()),
        "/-/faults" if method == Method::POST => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(resp) => return Ok(resp),
            };
            let current = inner.faults.borrow().clone();
            match parse_patch(&current, &body) {
                Err(msg) => error_resp(StatusCode::BAD_REQUEST, &msg),
                Ok((new, go_down)) => {
                    inner.set_faults(new);
                    let mut shown = inner.faults.borrow().clone();
                    let Some(back_after) = go_down else {
                        return Ok(json_resp(StatusCode::OK, &shown));
                    };
                    // Answer first, then go down once this connection has closed.
                    *lock(after) = Some(AfterConn::GoDown(back_after));
                    shown.down = true;
                    let mut resp = json_resp(StatusCode::OK, &shown);
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                    resp
                }
            }
        }
        "/-/faults/reset" if method == Method::POST => {
            inner.heal();
            json_resp(StatusCode::OK, &*inner.faults.borrow())
        }
        "/health" | "/metrics" => method_not_allowed("GET"),
        "/predict" | "/-/faults/reset" => method_not_allowed("POST"),
        "/-/faults" => method_not_allowed("GET, POST"),
        _ => error_resp(StatusCode::NOT_FOUND, "not found"),
    })
}

/// Applies `hang`, `slow` and `error_rate`; `Some` is the answer to send instead.
async fn workload_faults(inner: &Inner) -> Result<Option<Resp>, Abandoned> {
    if inner.faults.borrow().hang {
        debug!(addr = %inner.addr, "hanging request");
        let mut rx = inner.faults.subscribe();
        tokio::select! {
            _ = rx.wait_for(|f| !f.hang) => {}
            () = inner.graceful.cancelled() => return Err(Abandoned),
        }
    }
    let slow = inner.faults.borrow().slow;
    if !slow.is_zero() {
        tokio::time::sleep(slow).await;
    }
    if inner.roll_error() {
        return Ok(Some(error_resp(
            StatusCode::INTERNAL_SERVER_ERROR,
            "simulated failure",
        )));
    }
    Ok(None)
}

/// Reads a body of at most [`MAX_BODY_BYTES`]; `Err` is the answer to send.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    let too_large = || {
        let mut resp = error_resp(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body larger than {MAX_BODY_BYTES} bytes"),
        );
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        resp
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(error_resp(
            StatusCode::BAD_REQUEST,
            &format!("cannot read request body: {e}"),
        )),
    }
}

/// One prediction per row of `{"data": [[f64...], ...]}`: the row's sum.
fn predict(body: &[u8]) -> Result<Vec<f64>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("body must be a JSON object with a `data` field".to_owned());
    };
    let data = obj
        .remove("data")
        .ok_or_else(|| "missing field `data`".to_owned())?;
    let Value::Array(rows) = data else {
        return Err("field `data` must be an array of rows (arrays of numbers)".to_owned());
    };
    if rows.is_empty() {
        return Err("field `data` must contain at least one row".to_owned());
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let Value::Array(cells) = row else {
                return Err(format!("`data[{i}]` must be an array of numbers"));
            };
            cells.iter().enumerate().try_fold(0.0, |sum, (j, cell)| {
                cell.as_f64()
                    .map(|x| sum + x)
                    .ok_or_else(|| format!("`data[{i}][{j}]` must be a number, got {cell}"))
            })
        })
        .collect()
}

/// `sim_up`.
const UP: Family = Family {
    name: "sim_up",
    kind: Type::Gauge,
    help: "Whether the simulated gateway is serving.",
};
/// `sim_requests_total{path,code}`.
const REQUESTS: Family = Family {
    name: "sim_requests_total",
    kind: Type::Counter,
    help: "Requests answered, by path and status code.",
};
/// `sim_fault_active{fault}`.
const FAULT_ACTIVE: Family = Family {
    name: "sim_fault_active",
    kind: Type::Gauge,
    help: "Whether a fault is active (1) or not (0).",
};
/// `sim_memory_leaked_bytes`.
const LEAKED: Family = Family {
    name: "sim_memory_leaked_bytes",
    kind: Type::Gauge,
    help: "Memory retained by the leak fault.",
};

/// The Prometheus text exposition of `/metrics`.
fn render_metrics(inner: &Inner) -> String {
    let f = inner.faults.borrow().clone();
    let mut out = String::with_capacity(2048);
    let mut w = Writer::new(&mut out);
    w.header(&UP);
    w.sample(&UP, &[], 1u8);
    w.header(&REQUESTS);
    for ((path, code), n) in lock(&inner.counts).iter() {
        let code = code.to_string();
        w.sample(&REQUESTS, &[("path", *path), ("code", &code)], *n);
    }
    w.header(&FAULT_ACTIVE);
    let active = [
        ("down", f.down),
        ("hang", f.hang),
        ("slow", !f.slow.is_zero()),
        ("error_rate", f.error_rate > 0.0),
        ("unhealthy", f.unhealthy),
        ("crash_after", f.crash_after.is_some()),
        ("leak_rate", f.leak_rate > 0),
    ];
    for (fault, on) in active {
        w.sample(&FAULT_ACTIVE, &[("fault", fault)], on);
    }
    w.header(&LEAKED);
    w.sample(&LEAKED, &[], inner.leaked.load(Ordering::Relaxed));
    out
}
