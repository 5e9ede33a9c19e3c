//! watchfire's HTTP server: `/metrics`, `/api/v1/targets`, `/-/healthy`, `/-/ready`,
//! `/-/reload`, and blackbox_exporter's `/probe` and `/config` ([`crate::blackbox::endpoint`]),
//! `/` (the endpoints and the recent probes) and `/logs` ([`crate::blackbox::history`]).
//!
//! Every request goes through the same steps: the route prefix
//! (`--web.route-prefix`), the web config's basic-auth users ([`crate::web`]), admission by class
//! ([`admission`]), intent for state-changing requests ([`intent`]), then the route; the web
//! config's headers are added to every answer. [`serve_with`] runs the accept loops (one per
//! listener) and the connections.

pub mod activation;
pub mod admission;
pub mod arrival;
pub mod incidents;
pub mod intent;
mod listen;
pub mod negotiate;
pub mod pagerduty;
pub mod status;

pub use listen::{bind, serve_with, LISTEN_BACKLOG};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::info;

use crate::metrics;
use crate::runtime::Runtime;
use crate::web::{Authorization, WebConfig, WebSource};
use admission::{Class, Limits};

/// How long in-flight requests may take to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the handlers need.
pub struct AppState {
    /// The running prober.
    pub runtime: Arc<Runtime>,
    /// Process metrics and any other registered families.
    pub registry: prometheus::Registry,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    let body = serde_json::to_vec_pretty(v)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}\n"),
    );
    r.headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

/// The `/metrics` body, composed from each subsystem's collector: the targets and process-wide
/// series, the failover groups, the build info, container memory, the blackbox endpoint's
/// counter, then `registry` (process metrics).
pub fn metrics_body(rt: &Runtime, registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    render_metrics(rt, registry, &mut crate::expo::Writer::new(&mut out));
    out
}

/// The `/metrics` body in `format`: [`metrics_body`]'s text, or the same families as delimited
/// protobuf `MetricFamily` messages with the probe duration as a native histogram too.
pub fn metrics_encoded(
    rt: &Runtime,
    registry: &prometheus::Registry,
    format: crate::expo::Format,
) -> Vec<u8> {
    match format {
        crate::expo::Format::Text => metrics_body(rt, registry).into_bytes(),
        crate::expo::Format::Protobuf => {
            let mut enc = crate::expo::proto::Encoder::new();
            render_metrics(rt, registry, &mut crate::expo::Writer::proto(&mut enc));
            enc.into_bytes()
        }
    }
}

/// Every subsystem's collector, in the order of [`metrics_body`].
fn render_metrics(rt: &Runtime, registry: &prometheus::Registry, w: &mut crate::expo::Writer<'_>) {
    let w = &mut *w;
    metrics::render(rt, w);
    crate::failover::render(&rt.failover_groups(), w);
    metrics::render_build_info(w);
    rt.memory().render(w);
    rt.blackbox().render_metrics(w);
    rt.store().render(w);
    if let Some(c) = rt.cluster() {
        c.render(w);
    }
    rt.notifier().render(w);
    if let Some(l) = rt.leadership() {
        crate::cluster::lease::render(&l.leases(), w);
        crate::runtime::leader::render_unowned(rt, w);
    }
    rt.quorum().render(w);
    admission::render(w);
    metrics::render_registry(registry, w);
}

/// `GET /api/v1/cluster/leases`: this member, the leases it leads, and every lease as the
/// database has it; 404 outside cluster mode, 503 when the database does not answer.
async fn cluster_leases(rt: &Runtime) -> Response<Body> {
    let Some(l) = rt.leadership() else {
        return text(
            StatusCode::NOT_FOUND,
            "not in cluster mode (start with --cluster)\n",
        );
    };
    let mine: Vec<serde_json::Value> = l
        .leases()
        .iter()
        .map(|x| {
            serde_json::json!({
                "name": x.name,
                "leading": x.leading().is_some(),
                "epoch": x.epoch(),
                "lost": x.lost_total(),
            })
        })
        .collect();
    match l.db().leases().await {
        Ok(all) => json(
            StatusCode::OK,
            &serde_json::json!({ "member": l.id(), "mine": mine, "leases": all }),
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the cluster database does not answer: {e}\n"),
        ),
    }
}

/// How the server serves: limits, web config, routes, which control endpoints are on.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Connection and request limits.
    pub limits: Limits,
    /// `--web.config.file` (none by default).
    pub web: Arc<WebSource>,
    /// `--web.route-prefix`, normalized: empty for `/`, else `/path` without a trailing slash.
    pub route_prefix: String,
    /// `host[:port]` of `--web.external-url`: an `Origin` naming it is this server's own.
    pub external_authority: Option<String>,
    /// `POST /-/reload` answers (off: `403`; SIGHUP still reloads).
    pub reload_endpoint: bool,
    /// `POST /api/v1/failover/GROUP/switch|failback` answer (off: `403`).
    pub failover_api: bool,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            limits: Limits::default(),
            web: Arc::new(WebSource::none()),
            route_prefix: String::new(),
            external_authority: None,
            reload_endpoint: true,
            failover_api: true,
        }
    }
}

/// `--web.route-prefix` normalized (`/`, `` → empty; `x/` → `/x`); when not given, the path of
/// `--web.external-url`, as blackbox_exporter does.
pub fn route_prefix(prefix: Option<&str>, external: Option<&url::Url>) -> String {
    let raw = match prefix {
        Some(p) => p.to_string(),
        None => external.map(|u| u.path().to_string()).unwrap_or_default(),
    };
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn with_retry_after(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    r
}

/// One request through the steps of the module doc, with the web config in force now (a
/// changed user list applies to the next request, a changed certificate to the next
/// connection).
async fn dispatch(shared: &listen::Shared, req: Request<Incoming>) -> Response<Body> {
    let web = shared.opts.web.current();
    let web = web.as_ref();
    let mut resp = admit_and_route(shared, web, req).await;
    for (name, value) in web.headers() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

async fn admit_and_route(
    shared: &listen::Shared,
    web: &WebConfig,
    req: Request<Incoming>,
) -> Response<Body> {
    let opts = &shared.opts;
    let full = req.uri().path();
    let path = if opts.route_prefix.is_empty() {
        full.to_string()
    } else if full == opts.route_prefix {
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{}/", opts.route_prefix))
            .body(Full::new(Bytes::new()))
            .expect("static response parts are valid");
    } else {
        match full.strip_prefix(&opts.route_prefix) {
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => return text(StatusCode::NOT_FOUND, format!("no such endpoint: {full}\n")),
        }
    };
    match web
        .authorize(req.headers().get(header::AUTHORIZATION))
        .await
    {
        Authorization::Allowed(_) => {}
        Authorization::Denied => {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic"),
            );
            return r;
        }
        Authorization::Busy => {
            return with_retry_after(text(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many password checks in progress; retry\n",
            ))
        }
    }
    let class = Class::of(&path);
    let Some(_permit) = shared.requests.try_admit(class) else {
        return with_retry_after(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many requests in flight (limit: {}); retry\n",
                class.flag()
            ),
        ));
    };
    if req.method() == Method::POST || req.method() == Method::DELETE {
        if let Some(refused) = control_refusal(opts, &path, req.headers()) {
            return refused;
        }
    }
    route(&shared.state, &path, req).await
}

/// `403` for a state-changing request that is turned off or lacks intent ([`intent`]).
fn control_refusal(
    opts: &ServeOptions,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<Response<Body>> {
    let flag = if path == "/-/reload" {
        (!opts.reload_endpoint).then_some("--web.disable-reload")
    } else if path.starts_with("/api/v1/failover/") {
        (!opts.failover_api).then_some("--web.disable-failover-api")
    } else if incidents::owns(path) {
        None
    } else {
        return None;
    };
    if let Some(flag) = flag {
        return Some(text(
            StatusCode::FORBIDDEN,
            format!("{path} is turned off ({flag})\n"),
        ));
    }
    match intent::check(headers, opts.external_authority.as_deref()) {
        Ok(()) => None,
        Err(e) => {
            info!(path, refusal = %e, "state-changing request refused");
            Some(text(StatusCode::FORBIDDEN, format!("{e}\n")))
        }
    }
}

/// Routes one request with the default options (no prefix, no web config, no limits reached).
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    route(&state, &path, req).await
}

/// Routes one request for `path` (the route prefix already taken off).
async fn route(state: &Arc<AppState>, path: &str, req: Request<Incoming>) -> Response<Body> {
    if let Some(r) = status::route(state, path, &req).await {
        return r;
    }
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match path {
        "/metrics" if get => {
            let accept = req.headers().get(header::ACCEPT).map(|v| v.as_bytes());
            let format = negotiate::metrics_format(accept);
            let out = metrics_encoded(&state.runtime, &state.registry, format);
            Response::builder()
                .header(header::CONTENT_TYPE, format.content_type())
                .body(Full::new(Bytes::from(out)))
                .expect("static response parts are valid")
        }
        "/" if get => crate::blackbox::history::landing_page(state.runtime.blackbox().history()),
        "/api/v1/targets" if get => json(StatusCode::OK, &targets_json(&state.runtime)),
        "/api/v1/cluster" if get => match state.runtime.cluster() {
            Some(c) => json(StatusCode::OK, &c.json(&state.runtime.config())),
            None => text(
                StatusCode::NOT_FOUND,
                "not in a cluster: start watchfire run with --cluster URL\n",
            ),
        },
        "/probe" if get || req.method() == Method::POST => {
            let config = state.runtime.config();
            let arrived = req.extensions().get::<arrival::Arrived>().map(|a| a.0);
            crate::blackbox::endpoint::probe(
                &config.modules,
                state.runtime.blackbox(),
                req.uri().query(),
                req.headers(),
                arrived,
            )
            .await
        }
        "/config" if get => crate::blackbox::endpoint::config(&state.runtime.config().modules),
        "/logs" if get => {
            crate::blackbox::history::logs(state.runtime.blackbox().history(), req.uri().query())
        }
        "/-/healthy" if get => text(StatusCode::OK, "watchfire is healthy\n"),
        "/-/ready" if get => text(StatusCode::OK, "watchfire is ready\n"),
        "/-/reload" if req.method() == Method::POST => match state.runtime.reload().await {
            Ok(()) => text(StatusCode::OK, "config reloaded\n"),
            Err(e) => text(
                StatusCode::BAD_REQUEST,
                format!("config reload failed; the running config is unchanged:\n{e}\n"),
            ),
        },
        "/api/v1/quorum" if get => match state.runtime.quorum().snapshot() {
            Some(s) => json(StatusCode::OK, &crate::cluster::observe::quorum_json(&s)),
            None => text(
                StatusCode::NOT_FOUND,
                "not in cluster mode: no quorum across locations (run with --cluster and --location)\n",
            ),
        },
        "/api/v1/failover" if get => {
            let groups: Vec<_> = state
                .runtime
                .failover_groups()
                .iter()
                .map(|g| g.json())
                .collect();
            json(StatusCode::OK, &groups)
        }
        p if p.starts_with("/api/v1/failover/") => {
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            failover_action(state, p, req.uri().query())
        }
        "/api/v1/cluster/leases" if get => cluster_leases(&state.runtime).await,
        p if incidents::owns(p) => incidents::route(state, p, req).await,
        p if p.starts_with(pagerduty::PREFIX) => pagerduty::route(state, p, req).await,
        "/-/reload" => method_not_allowed("POST"),
        "/metrics" | "/api/v1/targets" | "/-/healthy" | "/-/ready" | "/config" | "/logs" | "/" => {
            method_not_allowed("GET")
        }
        "/probe" => method_not_allowed("GET, POST"),
        _ => text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    }
}

/// `POST /api/v1/failover/GROUP/switch?to=INDEX` and `POST /api/v1/failover/GROUP/failback`.
fn failover_action(state: &AppState, path: &str, query: Option<&str>) -> Response<Body> {
    let rest = &path["/api/v1/failover/".len()..];
    let Some((name, action)) = rest.split_once('/') else {
        return text(
            StatusCode::NOT_FOUND,
            "use /api/v1/failover/GROUP/switch?to=INDEX or /api/v1/failover/GROUP/failback\n",
        );
    };
    let Some(group) = state.runtime.failover_group(name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no failover group named `{name}`\n"),
        );
    };
    let to = match action {
        "failback" => 0,
        "switch" => {
            let to = query
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("to="))
                .map(|v| v.parse::<usize>());
            match to {
                Some(Ok(i)) => i,
                Some(Err(_)) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "parameter `to` must be an instance index (0 = primary)\n",
                    )
                }
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "missing parameter `to` (an instance index, 0 = primary)\n",
                    )
                }
            }
        }
        other => {
            return text(
                StatusCode::NOT_FOUND,
                format!("unknown action `{other}`: use switch or failback\n"),
            )
        }
    };
    match group.manual_switch(to) {
        Ok(_) => json(StatusCode::OK, &group.json()),
        Err(e) => text(StatusCode::CONFLICT, format!("{e}\n")),
    }
}

/// One target in `/api/v1/targets`.
#[derive(Debug, Serialize)]
pub struct TargetJson {
    /// Name.
    pub name: String,
    /// What is probed: the URL, or a module target's target (`host:port` for tcp...).
    pub url: String,
    /// The same as `url`, under the name that fits every prober kind.
    pub target: String,
    /// User labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `unknown`, `up` or `down`.
    pub state: &'static str,
    /// Whether the last probe succeeded (null before the first).
    pub last_success: Option<bool>,
    /// `success` or the failure reason of the last probe.
    pub last_result: Option<&'static str>,
    /// Human detail of the last failure.
    pub last_error: Option<String>,
    /// Last HTTP status.
    pub last_status: Option<u16>,
    /// When the last probe ended (RFC 3339).
    pub last_probe: Option<String>,
    /// Last probe's duration, seconds.
    pub last_duration_seconds: Option<f64>,
    /// Latency quantiles from the send, seconds.
    pub p50_seconds: Option<f64>,
    /// 90th percentile.
    pub p90_seconds: Option<f64>,
    /// 99th percentile.
    pub p99_seconds: Option<f64>,
    /// 99th percentile measured from the planned start.
    pub p99_from_planned_seconds: Option<f64>,
    /// Probes run.
    pub probes: u64,
    /// Successful probes.
    pub successes: u64,
    /// Skipped ticks.
    pub skipped: u64,
    /// When the state last changed (RFC 3339).
    pub last_transition: Option<String>,
    /// Since when the target has had its state (RFC 3339; kept across restarts by the store).
    pub since: Option<String>,
    /// Interval, humantime.
    pub interval: String,
    /// Timeout, humantime.
    pub timeout: String,
    /// The blackbox module that probes the target (`module:`); null for the native HTTP prober.
    pub module: Option<String>,
    /// The module's prober kind (`http`, `tcp`, `dns`, `icmp`, `grpc`); null without a module.
    pub prober: Option<&'static str>,
    /// The target's `/metrics` detail level (`minimal`, `standard`, `full`): what this API has
    /// beyond it is here at every level.
    pub metrics_detail: &'static str,
    /// HDR latency quantiles from the actual send, seconds (null before the first probe).
    pub latency: Option<QuantilesJson>,
    /// The same from the planned start (coordinated-omission corrected).
    pub latency_from_planned: Option<QuantilesJson>,
    /// The target's schedule lag quantiles, seconds, estimated from its lag histogram (buckets
    /// 100 µs … 1 s, linear within a bucket as `histogram_quantile` does).
    pub schedule_lag: Option<LagJson>,
    /// The last probe's phases, seconds (null before the first probe).
    pub last_phases: Option<std::collections::BTreeMap<&'static str, f64>>,
    /// Body bytes read by the last probe.
    pub last_body_bytes: Option<u64>,
    /// Changes of health to up.
    pub transitions_up: u64,
    /// Changes of health to down.
    pub transitions_down: u64,
}

/// Quantiles of an HDR histogram, seconds.
#[derive(Debug, Serialize)]
pub struct QuantilesJson {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl QuantilesJson {
    fn of(h: &crate::record::Hdr) -> Option<QuantilesJson> {
        let q = |q: f64| h.quantile(q).map(|d| d.as_secs_f64());
        Some(QuantilesJson {
            p50: q(0.5)?,
            p90: q(0.9)?,
            p99: q(0.99)?,
            p999: q(0.999)?,
            max: q(1.0)?,
        })
    }
}

/// A target's schedule lag, estimated from its histogram.
#[derive(Debug, Serialize)]
pub struct LagJson {
    /// Median, seconds.
    pub p50: f64,
    /// 90th percentile, seconds.
    pub p90: f64,
    /// 99th percentile, seconds.
    pub p99: f64,
    /// Probes counted.
    pub count: u64,
    /// Sum of the lags, seconds.
    pub sum_seconds: f64,
}

impl LagJson {
    fn of(b: &crate::record::Buckets<13>) -> Option<LagJson> {
        let bounds = &crate::record::LAG_BUCKETS;
        let q = |q| metrics::bucket_quantile(bounds, &b.counts, q);
        Some(LagJson {
            p50: q(0.5)?,
            p90: q(0.9)?,
            p99: q(0.99)?,
            count: b.count(),
            sum_seconds: b.sum,
        })
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The JSON state of every target.
pub fn targets_json(rt: &Runtime) -> Vec<TargetJson> {
    let config = rt.config();
    rt.targets()
        .iter()
        .map(|t| {
            let s = t.stats.lock().expect("stats lock poisoned");
            let probed = s.last.at.is_some();
            let q = |h: &crate::record::Hdr, q: f64| h.quantile(q).map(|d| d.as_secs_f64());
            TargetJson {
                name: t.spec.name.clone(),
                url: crate::redact::url(t.spec.target_text()).into_owned(),
                target: crate::redact::url(t.spec.target_text()).into_owned(),
                labels: t.spec.labels.clone(),
                state: s.state.health.as_str(),
                last_success: probed.then_some(s.last.ok),
                last_result: probed.then(|| s.last.reason.map(|r| r.as_str()).unwrap_or("success")),
                last_error: s.last.detail.clone(),
                last_status: (s.last.status != 0).then_some(s.last.status),
                last_probe: s.last.at.map(rfc3339),
                last_duration_seconds: probed.then(|| s.last.duration.as_secs_f64()),
                p50_seconds: q(&s.latency, 0.5),
                p90_seconds: q(&s.latency, 0.9),
                p99_seconds: q(&s.latency, 0.99),
                p99_from_planned_seconds: q(&s.latency_planned, 0.99),
                probes: s.probes(),
                successes: s.successes,
                skipped: s.skipped,
                last_transition: s.last_transition.map(rfc3339),
                since: s.last_transition.map(rfc3339),
                interval: humantime::format_duration(t.spec.interval).to_string(),
                timeout: humantime::format_duration(t.spec.timeout).to_string(),
                module: t.spec.module().map(str::to_string),
                prober: t.module().map(|m| m.prober.as_str()),
                metrics_detail: config.metrics.detail_of(&t.spec.name).as_str(),
                latency: QuantilesJson::of(&s.latency),
                latency_from_planned: QuantilesJson::of(&s.latency_planned),
                schedule_lag: LagJson::of(&s.lag),
                last_phases: probed.then(|| {
                    let phases = s.last.phases.as_array();
                    let secs = phases.iter().map(|d| d.as_secs_f64());
                    crate::probe::Phases::NAMES.into_iter().zip(secs).collect()
                }),
                last_body_bytes: probed.then_some(s.last.body_bytes),
                transitions_up: s.transitions_up,
                transitions_down: s.transitions_down,
            }
        })
        .collect()
}

/// Serves `listener` with the default [`ServeOptions`] until `shutdown` resolves, then lets
/// in-flight requests finish (bounded).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(vec![listener], state, ServeOptions::default(), shutdown).await
}
