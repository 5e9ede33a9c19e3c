//! One probe of the `http` prober, with blackbox's semantics and metrics.
//!
//! Per hop (the first request and each redirect followed): resolve → TCP connect → TLS →
//! request → first byte, timed the way blackbox's Go trace times them and summed over hops into
//! `probe_http_duration_seconds{phase}`; the body of the final response is read through the
//! configured decompression into a counting sink (capped by `body_size_limit`) and kept only
//! when a regexp or CEL check needs it. Every network step is bounded by the probe's deadline.
//!
//! Like blackbox: the first hop connects to the address chosen by `preferred_ip_protocol` /
//! `ip_protocol_fallback` and sends the original `Host`; a relative redirect keeps both, an
//! absolute one resolves its own host; 301/302/303 turn the method into GET and drop the body;
//! at most 10 redirects are followed (`probe_http_redirects` then reads 11); with
//! `follow_redirects: false` the first redirect is the answer (and `probe_http_redirects` 1).
//! Connections are never reused (`Connection: close`) and close with `SO_LINGER` 0, so the
//! prober holds no TIME_WAIT sockets however fast it is driven.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};

use super::http::{HttpProbe, ReqBody};
use super::http_body::{self, check_body_regexps, check_cel, check_headers, Decoder, Sink};
use super::http_conn::{
    authority, bracket, connect, cookie_header, host_of, lookup_first, referer, strip_port, tunnel,
    Conn, NoShutdown,
};
use super::{lookup, tls_info, Ctx, Log, Output, Resolved, View};
use crate::net::fail_from;
use crate::probe::{Fail, Phases, Reason};

/// `User-Agent` sent when the module sets none.
pub const USER_AGENT: &str = concat!("watchfire/", env!("CARGO_PKG_VERSION"));

/// Redirects followed at most (Go's client stops at the 11th).
pub const MAX_REDIRECTS: usize = 10;

const RESOLVE: usize = 0;
const CONNECT: usize = 1;
const TLS: usize = 2;
const PROCESSING: usize = 3;
const TRANSFER: usize = 4;
const PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// What an `http` probe found, filled in as it goes; the blackbox families are rendered from it.
///
/// Phases are blackbox's and watchfire's alike, summed over the hops (the first request and
/// each redirect followed): resolve = name lookup; connect = TCP connect (a proxy's `CONNECT`
/// included); tls = TLS handshake; processing = connection ready → first response byte (the
/// request written included); transfer = first response byte → body read.
#[derive(Debug, Default)]
pub struct Facts {
    /// The first hop's name lookup (none with a proxy that resolves).
    pub resolved: Resolved,
    /// Phase sums in seconds; a phase blackbox never created stays `None` (no sample).
    pub phases: [Option<f64>; 5],
    /// The final response's status (0 without one).
    pub status: u16,
    /// Go's `resp.ContentLength` (-1 when unknown).
    pub content_length: i64,
    /// Body bytes read, after decompression.
    pub body_len: u64,
    /// Redirects seen.
    pub redirects: usize,
    /// The final request went over TLS.
    pub ssl: bool,
    /// The final response's HTTP version (0 without one).
    pub version: f64,
    /// A header or body regexp failed the probe.
    pub regex_failed: bool,
    /// `Some(failed)` when the module has a CEL check.
    pub cel_failed: Option<bool>,
    /// `Last-Modified`, in Unix seconds.
    pub last_modified: Option<i64>,
    /// The final hop's TLS handshake, and whether its chain was verified.
    pub tls: Option<(tls_info::Handshake, bool)>,
}

impl Facts {
    fn add(&mut self, phase: usize, d: Duration) {
        let v = self.phases[phase].get_or_insert(0.0);
        *v += d.as_secs_f64();
    }

    fn phase(&self, phase: usize) -> Duration {
        Duration::try_from_secs_f64(self.phases[phase].unwrap_or(0.0)).unwrap_or_default()
    }
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        self.resolved.render(out);
        for (i, name) in PHASES.iter().enumerate() {
            if let Some(v) = self.phases[i] {
                out.gauge_with(
                    "probe_http_duration_seconds",
                    "Duration of http request by phase, summed over all redirects",
                    &[("phase", name)],
                    v,
                );
            }
        }
        out.gauge(
            "probe_http_content_length",
            "Length of http content response",
            self.content_length as f64,
        );
        out.gauge(
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            self.body_len as f64,
        );
        out.gauge(
            "probe_http_redirects",
            "The number of redirects",
            self.redirects as f64,
        );
        out.gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            if self.ssl { 1.0 } else { 0.0 },
        );
        out.gauge(
            "probe_http_status_code",
            "Response HTTP status code",
            f64::from(self.status),
        );
        out.gauge(
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            self.version,
        );
        out.gauge(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            if self.regex_failed { 1.0 } else { 0.0 },
        );
        // Upstream (0.27+) reports this only for modules with a CEL check; 0.23 has no CEL.
        if let Some(failed) = self.cel_failed {
            out.gauge(
                "probe_failed_due_to_cel",
                "Indicates if probe failed due to CEL expression not matching",
                if failed { 1.0 } else { 0.0 },
            );
        }
        if let Some(t) = self.last_modified {
            out.gauge(
                "probe_http_last_modified_timestamp_seconds",
                "Returns the Last-Modified HTTP response header in unixtime",
                t as f64,
            );
        }
        if let Some((h, verified)) = &self.tls {
            tls_info::report(h, *verified, out);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.phase(RESOLVE),
            connect: self.phase(CONNECT),
            tls: self.phase(TLS),
            processing: self.phase(PROCESSING),
            transfer: self.phase(TRANSFER),
        }
    }

    fn status(&self) -> Option<u16> {
        (self.status > 0).then_some(self.status)
    }

    fn bytes(&self) -> u64 {
        self.body_len
    }
}

/// Logs a failure's detail and returns it.
fn fail(log: &mut Log, f: Fail) -> Fail {
    log.line(&f.detail);
    f
}

/// Runs one probe of `ctx.target` with module `p`, filling in `facts`.
pub async fn probe(p: &HttpProbe, ctx: &Ctx, facts: &mut Facts, log: &mut Log) -> Result<(), Fail> {
    if p.has_cel() {
        facts.cel_failed = Some(false);
    }
    run(p, ctx, facts, log).await
}

/// One request: where it goes and what it carries.
struct Hop {
    url: url::Url,
    method: Method,
    with_body: bool,
    /// The `Host` header.
    host_header: String,
    /// Still on the first hop's address (every redirect so far was relative).
    on_first: bool,
    /// `Referer`: the previous request's URL (Go sets it on redirects, not on an
    /// https → http downgrade).
    referer: Option<HeaderValue>,
}

/// A response head and the connection it came on.
struct Answer {
    resp: http::Response<hyper::body::Incoming>,
    conn: Conn,
    /// The handshake, when the hop used TLS.
    tls: Option<tls_info::Handshake>,
    first_byte: Instant,
    /// Kept until the body is read: dropping it early may close the connection.
    _sender: Box<dyn std::any::Any + Send>,
}

async fn run(p: &HttpProbe, ctx: &Ctx, r: &mut Facts, log: &mut Log) -> Result<(), Fail> {
    let target = if ctx.target.starts_with("http://") || ctx.target.starts_with("https://") {
        ctx.target.clone()
    } else {
        format!("http://{}", ctx.target)
    };
    let url = match url::Url::parse(&target) {
        Ok(u) if u.host_str().is_some() => u,
        Ok(_) => {
            let detail = format!("Could not parse target URL: {target} has no host");
            return Err(fail(log, Fail::new(Reason::Setup, detail)));
        }
        Err(e) => {
            let detail = format!("Could not parse target URL: {e}");
            return Err(fail(log, Fail::new(Reason::Setup, detail)));
        }
    };
    let host = host_of(&url);
    let port = url.port_or_known_default().unwrap_or(80);
    let ip = if p.proxies.skip_resolve {
        None
    } else {
        plog!(
            log,
            "Resolving target address (ip_protocol {:?}, fallback {})",
            p.ip_protocol,
            p.ip_protocol_fallback
        );
        let res = lookup(
            &host,
            p.ip_protocol,
            p.ip_protocol_fallback,
            ctx,
            &mut r.resolved,
            log,
        )
        .await;
        r.add(RESOLVE, r.resolved.lookup.unwrap_or_default());
        Some(res?)
    };
    let body = match &p.body {
        ReqBody::Empty => Bytes::new(),
        ReqBody::Inline(b) => b.clone(),
        ReqBody::File(f) => match tokio::fs::read(f).await {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                let detail = format!("Error creating request: cannot read {}: {e}", f.display());
                return Err(fail(log, Fail::new(Reason::Setup, detail)));
            }
        },
    };
    let file_headers = read_header_files(p).await.map_err(|f| fail(log, f))?;
    for phase in [CONNECT, TLS, PROCESSING, TRANSFER] {
        r.phases[phase].get_or_insert(0.0);
    }
    let auth = match p.auth.header(ctx.deadline).await {
        Ok(a) => a,
        Err(e) => {
            let detail = format!("Error for HTTP request: {e}");
            return Err(fail(log, Fail::new(Reason::Setup, detail)));
        }
    };
    let host_header = ctx
        .hostname
        .clone()
        .or_else(|| p.host.clone())
        .unwrap_or_else(|| authority(&url));
    // The TLS server name of hops on the first address: tls_config.server_name, else the Host
    // header set by the module or `hostname`, else the target's host.
    let first_server_name = p
        .tls_server_name
        .clone()
        .or_else(|| {
            ctx.hostname
                .clone()
                .or_else(|| p.host.clone())
                .map(|h| strip_port(&h))
        })
        .unwrap_or_else(|| host.clone());
    let mut hop = Hop {
        url,
        method: p.method.clone(),
        with_body: true,
        host_header,
        on_first: true,
        referer: None,
    };
    let mut cookies: Vec<(String, String, String)> = Vec::new();
    let mut index = 0usize;
    let (answer, errored) = loop {
        let server_name = if hop.on_first {
            first_server_name.clone()
        } else {
            host_of(&hop.url)
        };
        let first_ip = if hop.on_first { ip } else { None };
        let req_body = if hop.with_body {
            body.clone()
        } else {
            Bytes::new()
        };
        plog!(
            log,
            "Making HTTP request url={} host={}",
            hop.url,
            hop.host_header
        );
        let jar_host = if hop.on_first {
            host.clone()
        } else {
            host_of(&hop.url)
        };
        let cookie = cookie_header(&cookies, &jar_host);
        let sent = exchange(
            p,
            ctx,
            &hop,
            first_ip,
            port,
            &server_name,
            req_body,
            auth.as_ref(),
            &file_headers,
            cookie,
            index,
            r,
        )
        .await;
        let a = match sent {
            Ok(a) => a,
            Err(f) => {
                let detail = format!("Error for HTTP request: {}", f.detail);
                return Err(fail(log, Fail::new(f.reason, detail)));
            }
        };
        let status = a.resp.status().as_u16();
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            break (a, false);
        }
        let Some(loc) = a
            .resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
        else {
            // Go answers a 3xx without Location as it is.
            break (a, false);
        };
        // Go cannot replay a body it read from a file, so it does not follow 307/308 then.
        if matches!(status, 307 | 308) && matches!(p.body, ReqBody::File(_)) && !body.is_empty() {
            break (a, false);
        }
        plog!(log, "Received redirect location={loc}");
        let next = match hop.url.join(&loc) {
            Ok(u) => u,
            Err(e) => {
                let detail =
                    format!("Error for HTTP request: failed to parse Location header {loc:?}: {e}");
                return Err(fail(log, Fail::new(Reason::Protocol, detail)));
            }
        };
        r.redirects = index + 1;
        if r.redirects > MAX_REDIRECTS || !p.follow_redirects {
            log.line("Not following redirect");
            break (a, true);
        }
        for sc in a.resp.headers().get_all(header::SET_COOKIE) {
            if let Some((k, v)) = sc
                .to_str()
                .ok()
                .and_then(|s| s.split(';').next())
                .and_then(|kv| kv.split_once('='))
            {
                cookies.retain(|(h, n, _)| !(h == &jar_host && n == k.trim()));
                cookies.push((jar_host.clone(), k.trim().into(), v.trim().into()));
            }
        }
        drop(a);
        let relative = url::Url::parse(&loc).is_err();
        let keep_method = matches!(status, 307 | 308);
        hop = Hop {
            host_header: if relative {
                hop.host_header.clone()
            } else {
                authority(&next)
            },
            on_first: hop.on_first && relative,
            method: if keep_method || hop.method == Method::GET || hop.method == Method::HEAD {
                hop.method.clone()
            } else {
                Method::GET
            },
            with_body: hop.with_body && keep_method,
            referer: referer(&hop.url, &next),
            url: next,
        };
        index += 1;
    };
    finish(p, ctx, r, log, &hop, answer, errored).await
}

/// The first failure of a probe's checks, kept while the later checks still record their facts
/// (blackbox reports every family whatever failed first).
#[derive(Default)]
struct Verdict(Option<Fail>);

impl Verdict {
    fn ok(&self) -> bool {
        self.0.is_none()
    }

    /// Records `r`'s failure unless an earlier one is kept; returns whether `r` passed.
    fn check(&mut self, r: Result<(), Fail>) -> bool {
        match r {
            Ok(()) => true,
            Err(f) => {
                self.0.get_or_insert(f);
                false
            }
        }
    }

    /// Records a failure for `reason`, logging `detail`.
    fn fail(&mut self, log: &mut Log, reason: Reason, detail: String) {
        log.line(&detail);
        self.0.get_or_insert(Fail::new(reason, detail));
    }

    fn into_result(self) -> Result<(), Fail> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The status check: `accept_any_response`, `valid_status_codes`, or any 2xx.
fn check_status(p: &HttpProbe, status: u16) -> Result<(), Fail> {
    let detail = if p.accept_any_response {
        return Ok(());
    } else if p.valid_status_codes.is_empty() {
        if (200..300).contains(&status) {
            return Ok(());
        }
        format!("Invalid HTTP response status code, wanted 2xx status_code={status}")
    } else {
        if p.valid_status_codes.contains(&i64::from(status)) {
            return Ok(());
        }
        format!(
            "Invalid HTTP response status code status_code={status} valid_status_codes={:?}",
            p.valid_status_codes
        )
    };
    Err(Fail::new(Reason::Status, detail))
}

/// The final response: status, header checks, body (decompressed, counted, checked), version,
/// TLS.
async fn finish(
    p: &HttpProbe,
    ctx: &Ctx,
    r: &mut Facts,
    log: &mut Log,
    hop: &Hop,
    answer: Answer,
    errored: bool,
) -> Result<(), Fail> {
    let Answer {
        resp,
        mut conn,
        tls,
        first_byte,
        _sender,
    } = answer;
    let status = resp.status().as_u16();
    plog!(log, "Received HTTP response status_code={status}");
    r.status = status;
    r.content_length = http_body::content_length(&hop.method, status, resp.headers());
    let mut verdict = Verdict::default();
    if let Err(f) = check_status(p, status) {
        verdict.fail(log, f.reason, f.detail);
    }
    if verdict.ok() && (!p.header_fail.is_empty() || !p.header_need.is_empty()) {
        r.regex_failed = !verdict.check(check_headers(p, resp.headers(), log));
    }
    let (version, proto) = match resp.version() {
        http::Version::HTTP_09 => (0.9, "HTTP/0.9"),
        http::Version::HTTP_10 => (1.0, "HTTP/1.0"),
        http::Version::HTTP_2 => (2.0, "HTTP/2.0"),
        http::Version::HTTP_3 => (3.0, "HTTP/3.0"),
        _ => (1.1, "HTTP/1.1"),
    };
    let last_modified = resp
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_body::parse_http_date);
    if !errored {
        let keep = verdict.ok() && p.needs_body();
        read_body(p, ctx, r, log, resp, &mut conn, keep, &mut verdict).await;
    }
    r.add(TRANSFER, first_byte.elapsed());
    r.last_modified = last_modified;
    r.version = version;
    if !p.valid_http_versions.is_empty() && !p.valid_http_versions.iter().any(|v| v == proto) {
        let detail = format!("Invalid HTTP version number version={proto}");
        verdict.fail(log, Reason::Policy, detail);
    }
    if let Some(h) = tls {
        r.ssl = true;
        r.tls = Some((h, !p.tls_insecure));
        if p.fail_if_ssl {
            verdict.fail(log, Reason::Policy, "Final request was over SSL".into());
        }
    } else if p.fail_if_not_ssl && verdict.ok() {
        verdict.fail(log, Reason::Policy, "Final request was not over SSL".into());
    }
    verdict.into_result()
}

/// Reads the final response's body through the decompression into a counting sink (kept when
/// `keep`), then runs the body regexps and CEL checks as Go does: a read error fails those
/// checks (and sets their flag) before it fails the probe itself.
#[allow(clippy::too_many_arguments)]
async fn read_body(
    p: &HttpProbe,
    ctx: &Ctx,
    r: &mut Facts,
    log: &mut Log,
    resp: http::Response<hyper::body::Incoming>,
    conn: &mut Conn,
    keep: bool,
    verdict: &mut Verdict,
) {
    let mut sink = Sink {
        limit: p.body_size_limit,
        keep,
        ..Sink::default()
    };
    let mut decoder = Decoder::new(p.compression, &mut sink);
    let mut body = resp.into_body();
    let read = async {
        loop {
            match conn.drive(body.frame()).await {
                Err(e) => return Err(fail_from(Reason::Reset, "connection", &e)),
                Ok(None) => {
                    return decoder
                        .finish()
                        .map_err(|e| Fail::new(Reason::Protocol, e.to_string()))
                }
                Ok(Some(Err(e))) => return Err(fail_from(Reason::Reset, "reading the body", &e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        decoder
                            .write(&data)
                            .map_err(|e| Fail::new(Reason::Protocol, e.to_string()))?;
                    }
                }
            }
        }
    };
    let read_err = match timeout_at(ctx.deadline, read).await {
        Err(_) => Some(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(f)) => Some(f),
        Ok(Ok(())) => None,
    };
    let init_failed = decoder.init_failed;
    drop(decoder);
    let read_err = read_err.map(|f| {
        if sink.too_large {
            Fail::new(Reason::BodyTooLarge, f.detail)
        } else {
            f
        }
    });
    if init_failed {
        let detail = "Failed to get decompressor for HTTP response body".to_string();
        verdict.fail(log, Reason::Protocol, detail);
    }
    let read_failed = || {
        let f = read_err.clone().expect("called only after a read error");
        Err(Fail::new(
            f.reason,
            format!("Failed to read HTTP response body: {}", f.detail),
        ))
    };
    if verdict.ok() && (!p.body_fail.is_empty() || !p.body_need.is_empty()) {
        let checked = match &read_err {
            Some(_) => read_failed(),
            None => check_body_regexps(p, &sink.buf, log),
        };
        r.regex_failed = !verdict.check(checked);
    }
    if verdict.ok() && p.has_cel() {
        let checked = match &read_err {
            Some(_) => read_failed(),
            None => check_cel(p, &sink.buf, log),
        };
        r.cel_failed = Some(!verdict.check(checked));
    }
    if let Some(f) = &read_err {
        let detail = format!("Failed to read HTTP response body: {}", f.detail);
        verdict.fail(log, f.reason, detail);
    }
    r.body_len = sink.count;
}

/// The values of `http_headers` that come from files, read now (as blackbox reads them for
/// each request); a file that cannot be read, or whose content is not a header value, is
/// [`Reason::Setup`].
async fn read_header_files(p: &HttpProbe) -> Result<http::HeaderMap, Fail> {
    let mut out = http::HeaderMap::new();
    for (name, files) in &p.header_files {
        for f in files {
            let text = tokio::fs::read_to_string(f).await.map_err(|e| {
                let detail = format!("Error creating request: cannot read {}: {e}", f.display());
                Fail::new(Reason::Setup, detail)
            })?;
            let mut value = HeaderValue::from_str(text.trim_end_matches(['\r', '\n']))
                .map_err(|_| {
                    let detail = format!(
                        "Error creating request: {} holds characters HTTP does not allow in header {name}",
                        f.display()
                    );
                    Fail::new(Reason::Setup, detail)
                })?;
            value.set_sensitive(true);
            out.append(name.clone(), value);
        }
    }
    Ok(out)
}

/// One request on a fresh connection, up to the response head.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    p: &HttpProbe,
    ctx: &Ctx,
    hop: &Hop,
    first_ip: Option<IpAddr>,
    first_port: u16,
    server_name: &str,
    body: Bytes,
    auth: Option<&HeaderValue>,
    file_headers: &http::HeaderMap,
    cookie: Option<HeaderValue>,
    index: usize,
    r: &mut Facts,
) -> Result<Answer, Fail> {
    let deadline = ctx.deadline;
    let tls = hop.url.scheme() == "https";
    let host = host_of(&hop.url);
    let port = hop.url.port_or_known_default().unwrap_or(80);
    let t_start = Instant::now();
    // Go picks the proxy by the request URL, whose host is the resolved address on the first
    // hop's address.
    let proxy_host = first_ip.map_or_else(|| host.clone(), |ip| ip.to_string());
    let via_proxy = p.proxies.for_target(hop.url.scheme(), &proxy_host, port);
    let addr = match (via_proxy, first_ip) {
        (Some(px), _) => lookup_first(&px.host, px.port, deadline).await?,
        (None, Some(ip)) => SocketAddr::new(ip, first_port),
        (None, None) => lookup_first(&host, port, deadline).await?,
    };
    let t_dns = Instant::now();
    if index > 0 {
        r.add(RESOLVE, t_dns - t_start);
    }
    let mut tcp = connect(addr, deadline).await?;
    let t_connected = Instant::now();
    if let (Some(px), true) = (via_proxy, tls) {
        tunnel(
            &mut tcp,
            &format!("{}:{port}", bracket(&host)),
            px.auth.as_ref(),
            &p.proxies.connect_headers,
            deadline,
        )
        .await?;
    }
    let uri: Uri = if via_proxy.is_some() && !tls {
        hop.url.as_str().parse()
    } else {
        let mut pq = hop.url.path().to_string();
        if let Some(q) = hop.url.query() {
            pq.push('?');
            pq.push_str(q);
        }
        pq.parse()
    }
    .map_err(|e| Fail::new(Reason::Setup, format!("bad request URI: {e}")))?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = hop.method.clone();
    *req.uri_mut() = uri;
    {
        let h = req.headers_mut();
        h.insert(
            header::HOST,
            HeaderValue::from_str(&hop.host_header).map_err(|_| {
                let detail = format!("`{}` is not a valid Host header", hop.host_header);
                Fail::new(Reason::Setup, detail)
            })?,
        );
        for (k, v) in &p.headers {
            // Go drops credentials when a redirect leaves the original host.
            let sensitive = matches!(
                k.as_str(),
                "authorization" | "www-authenticate" | "cookie" | "cookie2"
            );
            if sensitive && !hop.on_first && index > 0 {
                continue;
            }
            h.insert(k, v.clone());
        }
        for (k, v) in file_headers {
            h.append(k, v.clone());
        }
        if !h.contains_key(header::USER_AGENT) {
            h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        }
        if let Some(a) = auth {
            if !h.contains_key(header::AUTHORIZATION) {
                h.insert(header::AUTHORIZATION, a.clone());
            }
        }
        if let Some(c) = cookie {
            h.insert(header::COOKIE, c);
        }
        if let Some(r) = &hop.referer {
            h.insert(header::REFERER, r.clone());
        }
        if let (Some(px), false) = (via_proxy, tls) {
            if let Some(a) = &px.auth {
                h.insert(header::PROXY_AUTHORIZATION, a.clone());
            }
        }
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if tls {
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| {
                let detail = format!("`{server_name}` is not a TLS server name: {e}");
                Fail::new(Reason::Tls, detail)
            })?;
        let t_tls = Instant::now();
        let config = match &p.tls {
            Ok(c) => c.clone(),
            // A CA file or client certificate missing at load: try again, it may be there now.
            Err((_, source)) => source
                .client_config(super::http::alpn(p.enable_http2))
                .map_err(|e| Fail::new(Reason::Setup, e))?,
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = match timeout_at(deadline, connector.connect(name, tcp)).await {
            Err(_) => {
                let detail = "TLS handshake: context deadline exceeded";
                return Err(Fail::new(Reason::Timeout, detail));
            }
            Ok(Err(e)) => return Err(fail_from(Reason::Tls, "TLS handshake", &e)),
            Ok(Ok(s)) => s,
        };
        let t_gotconn = Instant::now();
        r.add(CONNECT, t_connected - t_dns);
        r.add(TLS, t_gotconn - t_tls);
        let handshake = tls_info::Handshake::of(stream.get_ref().1);
        let version = handshake.version;
        let v = version.map(u16::from).unwrap_or(0);
        if p.tls_min.is_some_and(|m| v < u16::from(m))
            || p.tls_max.is_some_and(|m| v > u16::from(m))
        {
            let detail = format!(
                "TLS handshake: {} is outside tls_config's min_version/max_version",
                tls_info::tls_version_name(version)
            );
            return Err(Fail::new(Reason::Policy, detail));
        }
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let mut a = if h2 {
            send_h2(stream, req, deadline, t_gotconn, r).await?
        } else {
            send(stream, req, deadline, t_gotconn, r).await?
        };
        a.tls = Some(handshake);
        Ok(a)
    } else {
        let t_gotconn = Instant::now();
        r.add(CONNECT, t_gotconn - t_dns);
        send(tcp, req, deadline, t_gotconn, r).await
    }
}

/// Drives the connection until the response head arrives (HTTP/1.1 and HTTP/2 alike).
async fn await_head<F, S>(
    conn: super::http_conn::ConnFuture,
    response: F,
    sender: S,
    deadline: Instant,
    t_gotconn: Instant,
    r: &mut Facts,
) -> Result<Answer, Fail>
where
    F: std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>>,
    S: Send + 'static,
{
    let mut conn = Conn { fut: Some(conn) };
    let resp = match timeout_at(deadline, conn.drive(response)).await {
        Err(_) => return Err(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(e)) => return Err(fail_from(Reason::Reset, "connection", &e)),
        Ok(Ok(Err(e))) => return Err(fail_from(Reason::Protocol, "request", &e)),
        Ok(Ok(Ok(resp))) => resp,
    };
    let first_byte = Instant::now();
    r.add(PROCESSING, first_byte - t_gotconn);
    Ok(Answer {
        resp,
        conn,
        tls: None,
        first_byte,
        _sender: Box::new(sender),
    })
}

/// HTTP/1.1 handshake on `io`, the request, the response head.
async fn send<S>(
    io: S,
    req: Request<Full<Bytes>>,
    deadline: Instant,
    t_gotconn: Instant,
    r: &mut Facts,
) -> Result<Answer, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hs = http1::Builder::new()
        .title_case_headers(true)
        .max_buf_size(256 * 1024)
        .handshake::<_, Full<Bytes>>(TokioIo::new(NoShutdown(io)));
    let (mut sender, conn) = match timeout_at(deadline, hs).await {
        Err(_) => return Err(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(e)) => return Err(fail_from(Reason::Protocol, "HTTP handshake", &e)),
        Ok(Ok(x)) => x,
    };
    let response = sender.send_request(req);
    await_head(Box::pin(conn), response, sender, deadline, t_gotconn, r).await
}

/// HTTP/2 (negotiated by ALPN over TLS): the same request with `:authority` from the `Host`
/// header and no connection-specific headers.
async fn send_h2<S>(
    io: S,
    mut req: Request<Full<Bytes>>,
    deadline: Instant,
    t_gotconn: Instant,
    r: &mut Facts,
) -> Result<Answer, Fail>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authority = req
        .headers_mut()
        .remove(header::HOST)
        .and_then(|h| h.to_str().ok().map(str::to_string))
        .unwrap_or_default();
    req.headers_mut().remove(header::CONNECTION);
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    *req.uri_mut() = format!("https://{authority}{pq}")
        .parse()
        .map_err(|e| Fail::new(Reason::Setup, format!("bad request URI: {e}")))?;
    *req.version_mut() = http::Version::HTTP_2;
    let hs = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(NoShutdown(io)));
    let (mut sender, conn) = match timeout_at(deadline, hs).await {
        Err(_) => return Err(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(e)) => return Err(fail_from(Reason::Protocol, "HTTP/2 handshake", &e)),
        Ok(Ok(x)) => x,
    };
    let response = sender.send_request(req);
    await_head(Box::pin(conn), response, sender, deadline, t_gotconn, r).await
}
