//! `/probe` and `/config`, answering like blackbox_exporter.
//!
//! `/probe?target=T&module=M&hostname=H&debug=true`:
//! 1. the module (default `http_2xx`) must be configured — otherwise 400 `Unknown module "M"`,
//!    counted in `blackbox_module_unknown_total`, and nothing is probed;
//! 2. the effective timeout is blackbox's rule: the `X-Prometheus-Scrape-Timeout-Seconds`
//!    header (120 s when absent or 0) minus `--timeout-offset` (0.5 s), or the module's
//!    `timeout` when that is shorter; a header that is not a number of seconds in 0..=86400 is
//!    a 400 naming the header (blackbox answers 500 for an unparsable one);
//! 3. a missing or empty `target` is 400 `Target parameter is missing`; a malformed one
//!    (control characters, spaces, a scheme the prober cannot use, an unparsable URL) is a 400
//!    saying why — blackbox would probe it and fail;
//! 4. `hostname` sets the HTTP `Host` header (400 when the module sets another one) or the TCP
//!    TLS server name;
//! 5. the prober runs under the deadline and `probe_success` / `probe_duration_seconds` are
//!    added; the families come out sorted by name, as Go's registry writes them.
//!
//! `debug=true` answers the probe's log, the metrics and the module's configuration (secrets
//! hidden) as text, in blackbox's layout. Every probe that ran is kept in the recent-probe
//! history ([`super::history`]: `/`, `/logs?id=`), its log included, as blackbox keeps it.
//!
//! The probe log keeps the lines at `--log.prober`'s level and above (blackbox_exporter 0.28's
//! rule, default `info`): `debug` for each step, `info` for a redirect, `error` for why the
//! probe failed (`Probe failed` among them). The same lines go to `debug=true`, the history and
//! stderr (with `module` and `target`); the lines below the level are not even formatted.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use super::config::{Module, Modules, Prober, DEFAULT_MODULE};
use super::history::{debug_text, History};
use crate::net::guard::{Guard, Session};
use crate::probe::{Fail, Outcome, Reason};
use crate::probers::{
    dns, grpc, http_facts, http_probe, icmp, plog, tcp, tcp_probe, unix, websocket, Ctx, Facts,
    Level, Line, Log, Output, View,
};

/// The header Prometheus sends with its scrape timeout.
pub const TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";
/// blackbox's timeout when the scrape states none.
pub const DEFAULT_SCRAPE_TIMEOUT_SECS: f64 = 120.0;
/// The largest scrape timeout accepted from the header (a day).
pub const MAX_SCRAPE_TIMEOUT_SECS: f64 = 86_400.0;
/// `--timeout-offset`'s default, as blackbox's.
pub const DEFAULT_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);
/// The `tracing` target of the probe log lines `/probe` writes to stderr (the logger lets every
/// level of it through: `--log.prober` has chosen them already).
pub const PROBE_LOG_TARGET: &str = "watchfire::probe_log";
/// Grace past the deadline before a prober that did not stop is abandoned.
const OVERRUN_GRACE: Duration = Duration::from_secs(1);

/// Endpoint state kept by the runtime: the timeout offset, the unknown-module counter and the
/// recent-probe history.
#[derive(Debug)]
pub struct Blackbox {
    timeout_offset_ns: AtomicU64,
    module_unknown: AtomicU64,
    guard_refusals: AtomicU64,
    late: AtomicU64,
    log_level: AtomicU8,
    history: History,
}

impl Default for Blackbox {
    fn default() -> Self {
        Blackbox {
            timeout_offset_ns: AtomicU64::new(DEFAULT_TIMEOUT_OFFSET.as_nanos() as u64),
            module_unknown: AtomicU64::new(0),
            guard_refusals: AtomicU64::new(0),
            late: AtomicU64::new(0),
            log_level: AtomicU8::new(Level::default() as u8),
            history: History::default(),
        }
    }
}

impl Blackbox {
    /// The recent `/probe` results (`/`, `/logs`; `--history.limit`).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Sets `--timeout-offset`.
    pub fn set_timeout_offset(&self, d: Duration) {
        self.timeout_offset_ns.store(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// `--timeout-offset`.
    pub fn timeout_offset(&self) -> Duration {
        Duration::from_nanos(self.timeout_offset_ns.load(Ordering::Relaxed))
    }

    /// Sets `--log.prober`: the least level of the probe log lines kept for `debug=true`, the
    /// history and stderr.
    pub fn set_log_level(&self, level: Level) {
        self.log_level.store(level as u8, Ordering::Relaxed);
    }

    /// `--log.prober` (default `info`).
    pub fn log_level(&self) -> Level {
        Level::from_index(self.log_level.load(Ordering::Relaxed))
    }

    /// `blackbox_module_unknown_total`.
    pub fn module_unknown_total(&self) -> u64 {
        self.module_unknown.load(Ordering::Relaxed)
    }

    /// `watchfire_probe_guard_refusals_total`: `/probe` requests the guard refused.
    pub fn guard_refusals_total(&self) -> u64 {
        self.guard_refusals.load(Ordering::Relaxed)
    }

    /// `watchfire_probe_requests_late_total`: `/probe` requests answered `503` unstarted,
    /// because their deadline passed while they waited to be served.
    pub fn late_total(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// Writes the endpoint's own series for `/metrics`.
    pub fn render_metrics(&self, w: &mut crate::expo::Writer<'_>) {
        use crate::expo::catalog::{BLACKBOX_MODULE_UNKNOWN, PROBE_GUARD_REFUSALS, PROBE_LATE};
        w.header(&BLACKBOX_MODULE_UNKNOWN);
        w.sample(&BLACKBOX_MODULE_UNKNOWN, &[], self.module_unknown_total());
        w.header(&PROBE_GUARD_REFUSALS);
        w.sample(&PROBE_GUARD_REFUSALS, &[], self.guard_refusals_total());
        w.header(&PROBE_LATE);
        w.sample(&PROBE_LATE, &[], self.late_total());
    }
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(body.into()))
        .expect("static response parts are valid")
}

/// `/probe`'s query parameters (the first value of each, as Go's `Values.Get`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params {
    /// `target`
    pub target: Option<String>,
    /// `module`
    pub module: Option<String>,
    /// `hostname`
    pub hostname: Option<String>,
    /// `debug=true`
    pub debug: bool,
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: Option<&str>) -> Params {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.as_ref() {
                "target" => &mut p.target,
                "module" => &mut p.module,
                "hostname" => &mut p.hostname,
                "debug" => {
                    if !p.debug && v == "true" {
                        p.debug = true;
                    }
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        p
    }
}

/// blackbox's effective timeout: the scrape's timeout (120 s when the header is absent or 0)
/// minus `offset`, or the module's timeout when it is set and shorter. `Err` names the header
/// when its value is not a number of seconds in 0..=86400.
pub fn effective_timeout(
    header: Option<&str>,
    module: Option<Duration>,
    offset: Duration,
) -> Result<Duration, String> {
    let scrape = match header.map(str::trim).filter(|v| !v.is_empty()) {
        None => 0.0,
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=MAX_SCRAPE_TIMEOUT_SECS).contains(&x) => x,
            _ => {
                return Err(format!(
                    "{TIMEOUT_HEADER}: `{v}` is not a number of seconds between 0 and {MAX_SCRAPE_TIMEOUT_SECS}"
                ))
            }
        },
    };
    let scrape = if scrape == 0.0 {
        DEFAULT_SCRAPE_TIMEOUT_SECS
    } else {
        scrape
    };
    let max = scrape - offset.as_secs_f64();
    let module = module.map(|d| d.as_secs_f64()).filter(|m| *m > 0.0);
    let secs = match module {
        Some(m) if m < max || max <= 0.0 => m,
        // A scrape timeout shorter than the offset leaves nothing: blackbox would then give
        // the probe no time at all; watchfire gives it the scrape's whole timeout instead.
        None if max <= 0.0 => scrape,
        _ => max,
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Checks a target before anything is probed: why it is malformed, if it is.
pub fn check_target(prober: Prober, target: &str) -> Result<(), String> {
    if let Some(c) = target.chars().find(|c| c.is_control()) {
        return Err(format!(
            "Target parameter is malformed: it contains the control character {:?}",
            c
        ));
    }
    if target.chars().any(char::is_whitespace) {
        return Err("Target parameter is malformed: it contains a space".into());
    }
    let scheme = target.split_once("://").map(|(s, _)| s).filter(|s| {
        let mut cs = s.chars();
        cs.next().is_some_and(|c| c.is_ascii_alphabetic())
            && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    match (prober, scheme) {
        (Prober::Http | Prober::Grpc, Some(s))
            if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") =>
        {
            return Err(format!(
                "Target parameter is malformed: scheme `{s}` is not supported (use http:// or https://)"
            ))
        }
        (Prober::Tcp | Prober::Dns | Prober::Icmp, Some(s)) => {
            return Err(format!(
                "Target parameter is malformed: the {} prober takes a host[:port], not a `{s}://` URL",
                prober.as_str()
            ))
        }
        (Prober::Unix, Some(s)) => {
            return Err(format!(
                "Target parameter is malformed: the unix prober takes a socket path, not a `{s}://` URL"
            ))
        }
        (Prober::Websocket, s)
            if !s.is_some_and(|s| s.eq_ignore_ascii_case("ws") || s.eq_ignore_ascii_case("wss")) =>
        {
            return Err("Target parameter is malformed: the websocket prober takes a ws:// or wss:// URL".into())
        }
        _ => {}
    }
    if prober == Prober::Unix && !target.starts_with('/') {
        return Err(
            "Target parameter is malformed: the unix prober takes an absolute socket path".into(),
        );
    }
    if matches!(prober, Prober::Http | Prober::Websocket) {
        let full = if scheme.is_some() {
            target.to_string()
        } else {
            format!("http://{target}")
        };
        match url::Url::parse(&full) {
            Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => return Err("Target parameter is malformed: the URL has no host".into()),
            Err(e) => return Err(format!("Target parameter is malformed: {e}")),
        }
    }
    Ok(())
}

/// `GET /probe`. The deadline counts from `arrived` (when the request reached the machine; now
/// when unknown): a request that waited past its deadline before it could start is answered
/// `503` at once, without probing.
pub async fn probe(
    modules: &Modules,
    state: &Blackbox,
    query: Option<&str>,
    headers: &HeaderMap,
    arrived: Option<std::time::Instant>,
) -> Response<Body> {
    let params = Params::parse(query);
    let name = params
        .module
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MODULE.to_string());
    let Some(module) = modules.get(&name) else {
        state.module_unknown.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(module = %name, "unknown module");
        return text(
            StatusCode::BAD_REQUEST,
            format!("Unknown module {}\n", go_quote(&name)),
        );
    };
    let header_value = match headers.get(TIMEOUT_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("{TIMEOUT_HEADER}: the value is not text\n"),
            )
        }
    };
    let timeout = match effective_timeout(header_value, module.timeout, state.timeout_offset()) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Some(target) = params.target.clone().filter(|t| !t.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Target parameter is missing\n");
    };
    if let Err(e) = check_target(module.prober, &target) {
        return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
    }
    let hostname = params.hostname.clone().filter(|h| !h.is_empty());
    if let (Prober::Http, Some(h)) = (module.prober, &hostname) {
        if let Some(configured) = module.http.host.as_ref().filter(|c| *c != h) {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "host header defined both in module configuration ({configured}) and with URL-parameter 'hostname' ({h})\n"
                ),
            );
        }
        if http::HeaderValue::from_str(h).is_err() {
            return text(
                StatusCode::BAD_REQUEST,
                "hostname parameter is malformed: it holds characters HTTP does not allow\n",
            );
        }
    }
    let now = Instant::now();
    let arrived = arrived.map_or(now, Instant::from_std).min(now);
    let limit = Limit {
        deadline: arrived + timeout,
        timeout,
    };
    if limit.deadline <= now {
        state.late.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(module = %name, waited = ?(now - arrived), "probe not started: its deadline passed while it waited");
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the probe's deadline ({timeout:?}) passed before it could start (it waited {:?}); retry\n",
                now - arrived
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        return r;
    }
    // The log at --log.prober's level feeds stderr, debug=true and the history alike.
    let log = Some(state.log_level());
    let probed = match modules.guard() {
        None => run_with(module, target.clone(), hostname, limit, log, None).await,
        Some(g) => guarded(state, g, module, target.clone(), hostname, limit, log).await,
    };
    to_stderr(&module.name, &target, probed.log.lines());
    let ok = probed.ok();
    let out = probed.into_output();
    let response = if params.debug {
        text(StatusCode::OK, debug_text(&out, module))
    } else {
        let mut body = String::with_capacity(2048);
        out.render(&mut body);
        metrics_response(body)
    };
    state.history.add(module.clone(), target, ok, out);
    response
}

/// Runs a `/probe` under the guard `g`: a scheduled-only module, or a unix socket the guard does
/// not allow, is refused before anything is probed; otherwise every connection the probe makes
/// is checked. A refusal is a failed probe with reason `policy`, logged and counted in
/// `watchfire_probe_guard_refusals_total`.
async fn guarded(
    state: &Blackbox,
    g: &Arc<Guard>,
    module: &Module,
    target: String,
    hostname: Option<String>,
    limit: Limit,
    log: Option<Level>,
) -> Probed {
    let session = Arc::new(Session::new(g.clone()));
    let before = if g.is_scheduled_only(&module.name) {
        Some(format!(
            "the probe guard refuses module {}: it is scheduled_only",
            module.name
        ))
    } else if module.prober == Prober::Unix {
        session.check_unix(&target).err().map(|d| d.to_string())
    } else {
        None
    };
    let probed = match before {
        Some(detail) => refused(module, &target, detail, log),
        None => {
            run_with(
                module,
                target.clone(),
                hostname,
                limit,
                log,
                Some(session.clone()),
            )
            .await
        }
    };
    if session.refused() || g.is_scheduled_only(&module.name) {
        state.guard_refusals.fetch_add(1, Ordering::Relaxed);
        let detail = probed
            .result
            .as_ref()
            .err()
            .map_or("", |f| f.detail.as_str());
        tracing::info!(
            module = %module.name,
            target = %crate::redact::url(&target),
            detail,
            "/probe refused by the probe guard"
        );
    }
    probed
}

/// A probe refused before it started: failed with reason `policy`.
fn refused(module: &Module, target: &str, detail: String, log: Option<Level>) -> Probed {
    let mut lines = log.map_or_else(Log::off, Log::at);
    plog!(
        lines,
        Debug,
        "Beginning probe module={} target={} probe={}",
        module.name,
        crate::redact::url(target),
        module.prober.as_str()
    );
    plog!(lines, Error, "Probe failed reason=policy detail={detail}");
    Probed {
        result: Err(Fail::new(Reason::Policy, detail)),
        facts: facts_for(module.prober),
        log: lines,
        duration: Duration::ZERO,
    }
}

/// Writes a `/probe`'s log lines to stderr at their own level, with `module` and `target`
/// (credentials hidden), as blackbox_exporter's probe logger does. `--log.level` does not
/// filter them: the log already holds only the lines at `--log.prober`'s level.
fn to_stderr(module: &str, target: &str, lines: &[Line]) {
    if lines.is_empty() {
        return;
    }
    let target = crate::redact::url(target);
    for l in lines {
        let msg = l.msg.as_str();
        match l.level {
            Level::Debug => {
                tracing::debug!(target: PROBE_LOG_TARGET, module, target = %target, "{msg}")
            }
            Level::Info => {
                tracing::info!(target: PROBE_LOG_TARGET, module, target = %target, "{msg}")
            }
            Level::Warn => {
                tracing::warn!(target: PROBE_LOG_TARGET, module, target = %target, "{msg}")
            }
            Level::Error => {
                tracing::error!(target: PROBE_LOG_TARGET, module, target = %target, "{msg}")
            }
        }
    }
}

fn metrics_response(body: String) -> Response<Body> {
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

/// What one probe of a module found: the typed verdict, the kind's facts (the blackbox families
/// are rendered from them), the debug log and how long it took.
#[derive(Debug)]
pub struct Probed {
    /// `Ok(())` or why it failed.
    pub result: Result<(), Fail>,
    /// The kind's facts.
    pub facts: Facts,
    /// The debug log (empty unless asked for).
    pub log: Log,
    /// From the start of the probe to its end.
    pub duration: Duration,
}

impl Probed {
    /// True when the probe succeeded.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }

    /// The blackbox families: the kind's, `probe_success` and `probe_duration_seconds`, sorted
    /// by name as Go's registry writes them.
    pub fn families(&self) -> Output {
        let mut out = Output::new();
        self.facts.render(&mut out);
        out.gauge(
            "probe_success",
            "Displays whether or not the probe was a success",
            if self.ok() { 1.0 } else { 0.0 },
        );
        out.gauge(
            "probe_duration_seconds",
            "Returns how long the probe took to complete in seconds",
            self.duration.as_secs_f64(),
        );
        out.sort();
        out
    }

    /// The families and the log together (the history and `debug=true` show both).
    pub fn into_output(self) -> Output {
        let mut out = self.families();
        out.set_log(self.log.into_lines());
        out
    }
}

/// Runs `module` against `target` within `timeout`; the probe's log (every line) is kept when
/// `log` is true.
/// What `/probe` and scheduled targets with a `module:` run alike.
pub async fn run(
    module: &Module,
    target: String,
    hostname: Option<String>,
    timeout: Duration,
    log: bool,
) -> Probed {
    let log = log.then_some(Level::Debug);
    let limit = Limit {
        deadline: Instant::now() + timeout,
        timeout,
    };
    run_with(module, target, hostname, limit, log, None).await
}

/// A probe's time limit: its timeout, and the instant it ends (the timeout counted from when
/// the request arrived, for `/probe`; from the start, for a scheduled probe).
#[derive(Debug, Clone, Copy)]
struct Limit {
    deadline: Instant,
    timeout: Duration,
}

/// [`run`] with its log at `log`'s level (`None`: no log), every connection checked by `guard`
/// when there is one.
async fn run_with(
    module: &Module,
    target: String,
    hostname: Option<String>,
    limit: Limit,
    log: Option<Level>,
    guard: Option<Arc<Session>>,
) -> Probed {
    let start = Instant::now();
    let Limit { deadline, timeout } = limit;
    let ctx = Ctx {
        target,
        hostname,
        deadline,
        timeout,
        guard,
    };
    let mut log = log.map_or_else(Log::off, Log::at);
    plog!(
        log,
        Debug,
        "Beginning probe module={} target={} probe={} timeout_seconds={}",
        module.name,
        crate::redact::url(&ctx.target),
        module.prober.as_str(),
        timeout.as_secs_f64()
    );
    let mut facts = facts_for(module.prober);
    let probe = async {
        match &mut facts {
            Facts::Http(f) => http_probe::probe(&module.http, &ctx, f, &mut log).await,
            Facts::Tcp(f) => tcp_probe::probe(&module.tcp, &ctx, f, &mut log).await,
            Facts::Dns(f) => dns::probe(&module.dns, &ctx, f, &mut log).await,
            Facts::Icmp(f) => icmp::probe(&module.icmp, &ctx, f, &mut log).await,
            Facts::Grpc(f) => grpc::probe(&module.grpc, &ctx, f, &mut log).await,
            Facts::Unix(f) => unix::probe(&module.unix, &ctx, f, &mut log).await,
            Facts::Websocket(f) => websocket::probe(&module.websocket, &ctx, f, &mut log).await,
        }
    };
    let result = tokio::time::timeout_at(deadline + OVERRUN_GRACE, probe)
        .await
        .unwrap_or_else(|_| {
            Err(Fail::new(
                Reason::Timeout,
                format!("the probe overran its timeout of {timeout:?}"),
            ))
        });
    let duration = start.elapsed();
    match &result {
        Ok(()) => plog!(
            log,
            Debug,
            "Probe succeeded duration_seconds={}",
            duration.as_secs_f64()
        ),
        Err(f) => plog!(
            log,
            Error,
            "Probe failed duration_seconds={} reason={} detail={}",
            duration.as_secs_f64(),
            f.reason,
            f.detail
        ),
    }
    Probed {
        result,
        facts,
        log,
        duration,
    }
}

/// The empty facts of `prober`'s kind, filled in as the probe goes (so that a probe cut short by
/// the deadline still reports what it found).
fn facts_for(prober: Prober) -> Facts {
    match prober {
        Prober::Http => Facts::Http(http_facts::Facts::default()),
        Prober::Tcp => Facts::Tcp(tcp::Facts::default()),
        Prober::Dns => Facts::Dns(dns::Facts::default()),
        Prober::Icmp => Facts::Icmp(icmp::Facts::default()),
        Prober::Grpc => Facts::Grpc(grpc::Facts::default()),
        Prober::Unix => Facts::Unix(unix::Facts::default()),
        Prober::Websocket => Facts::Websocket(websocket::Facts::default()),
    }
}

/// A scheduled target's probe when it names a `module:`: the module's probe of `target`, within
/// the target's `timeout` (or the module's, when shorter), as an [`Outcome`] for watchfire's own
/// series.
pub async fn scheduled(
    module: &Module,
    target: &str,
    timeout: Duration,
    planned: Instant,
) -> Outcome {
    let started = Instant::now();
    let timeout = module.timeout.map_or(timeout, |m| m.min(timeout));
    let probed = run(module, target.to_string(), None, timeout, false).await;
    let finished = Instant::now();
    let (result, detail) = match probed.result {
        Ok(()) => (Ok(()), None),
        Err(f) => (Err(f.reason), Some(f.detail)),
    };
    Outcome {
        planned,
        started,
        finished,
        phases: probed.facts.phases(),
        status: probed.facts.status(),
        body_bytes: probed.facts.bytes(),
        result,
        detail,
        reused_connection: false,
    }
}

/// `GET /config`: the modules as YAML, secrets hidden.
pub fn config(modules: &Modules) -> Response<Body> {
    text(StatusCode::OK, modules.to_yaml())
}

/// Go's `%q` for the names in messages.
fn go_quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: Duration = DEFAULT_TIMEOUT_OFFSET;

    #[test]
    fn timeout_is_blackbox_rule() {
        let s = |x: f64| Duration::from_secs_f64(x);
        assert_eq!(effective_timeout(None, None, HALF), Ok(s(119.5)));
        assert_eq!(effective_timeout(Some("10"), None, HALF), Ok(s(9.5)));
        assert_eq!(
            effective_timeout(Some("10"), Some(s(5.0)), HALF),
            Ok(s(5.0))
        );
        assert_eq!(effective_timeout(Some("3"), Some(s(5.0)), HALF), Ok(s(2.5)));
        assert_eq!(effective_timeout(None, Some(s(5.0)), HALF), Ok(s(5.0)));
        assert_eq!(effective_timeout(Some("0"), None, HALF), Ok(s(119.5)));
        assert_eq!(
            effective_timeout(Some("0.3"), Some(s(2.0)), HALF),
            Ok(s(2.0))
        );
        assert_eq!(effective_timeout(Some("0.3"), None, HALF), Ok(s(0.3)));
        for bad in ["abc", "-1", "NaN", "inf", "1e300", "86401"] {
            let e = effective_timeout(Some(bad), None, HALF).unwrap_err();
            assert!(e.contains(TIMEOUT_HEADER), "{e}");
        }
    }

    #[test]
    fn params_take_the_first_value() {
        let p = Params::parse(Some("target=a%20b&module=m&target=c&debug=true&hostname=h"));
        assert_eq!(p.target.as_deref(), Some("a b"));
        assert_eq!(p.module.as_deref(), Some("m"));
        assert_eq!(p.hostname.as_deref(), Some("h"));
        assert!(p.debug);
        assert_eq!(Params::parse(None), Params::default());
    }

    #[test]
    fn malformed_targets_are_named() {
        assert!(check_target(Prober::Http, "http://example.com/x").is_ok());
        assert!(check_target(Prober::Http, "example.com:8080").is_ok());
        assert!(check_target(Prober::Tcp, "example.com:25").is_ok());
        assert!(check_target(Prober::Tcp, "[::1]:25").is_ok());
        for (p, t, why) in [
            (Prober::Http, "invalid://", "scheme `invalid`"),
            (Prober::Http, "http://a b/", "space"),
            (Prober::Http, "http://a\nb/", "control"),
            (Prober::Http, "http://", "malformed"),
            (Prober::Tcp, "http://x:1", "host[:port]"),
        ] {
            let e = check_target(p, t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
