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
use super::http_body::{self, body_regexps_ok, cel_ok, headers_ok, Decoder, Sink};
use super::http_conn::{
    authority, bracket, chain, connect, cookie_header, host_of, lookup, referer, strip_port,
    tunnel, Conn, NoShutdown,
};
use super::{resolve, tls_info, Ctx, Output};

/// Logs a formatted line, formatting it only when the output keeps its log (`debug=true`).
macro_rules! olog {
    ($out:expr, ($($arg:tt)*)) => {
        if $out.logging() {
            $out.log(format!($($arg)*));
        }
    };
}

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

/// What the probe reports, filled in as it goes and written once at the end.
#[derive(Debug, Default)]
struct Report {
    /// Phase sums; a phase blackbox never created stays `None` (no sample).
    phases: [Option<f64>; 5],
    status: u16,
    content_length: i64,
    body_len: u64,
    redirects: usize,
    ssl: bool,
    version: f64,
    regex_failed: bool,
    cel_failed: bool,
    last_modified: Option<i64>,
}

impl Report {
    fn add(&mut self, phase: usize, d: Duration) {
        let v = self.phases[phase].get_or_insert(0.0);
        *v += d.as_secs_f64();
    }

    fn write(&self, p: &HttpProbe, out: &mut Output) {
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
        if p.has_cel() {
            out.gauge(
                "probe_failed_due_to_cel",
                "Indicates if probe failed due to CEL expression not matching",
                if self.cel_failed { 1.0 } else { 0.0 },
            );
        }
        if let Some(t) = self.last_modified {
            out.gauge(
                "probe_http_last_modified_timestamp_seconds",
                "Returns the Last-Modified HTTP response header in unixtime",
                t as f64,
            );
        }
    }
}

/// Runs one probe of `ctx.target` with module `p`, writing the metrics into `out`.
pub async fn probe(p: &HttpProbe, ctx: &Ctx, out: &mut Output) -> bool {
    let mut r = Report::default();
    let ok = run(p, ctx, out, &mut r).await;
    r.write(p, out);
    ok
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

async fn run(p: &HttpProbe, ctx: &Ctx, out: &mut Output, r: &mut Report) -> bool {
    let target = if ctx.target.starts_with("http://") || ctx.target.starts_with("https://") {
        ctx.target.clone()
    } else {
        format!("http://{}", ctx.target)
    };
    let url = match url::Url::parse(&target) {
        Ok(u) if u.host_str().is_some() => u,
        Ok(_) => {
            olog!(out, ("Could not parse target URL: {target} has no host"));
            return false;
        }
        Err(e) => {
            olog!(out, ("Could not parse target URL: {e}"));
            return false;
        }
    };
    let host = host_of(&url);
    let port = url.port_or_known_default().unwrap_or(80);
    let ip = if p.proxies.skip_resolve {
        None
    } else {
        olog!(
            out,
            (
                "Resolving target address (ip_protocol {:?}, fallback {})",
                p.ip_protocol,
                p.ip_protocol_fallback
            )
        );
        let res = resolve(&host, p.ip_protocol, p.ip_protocol_fallback, ctx, out).await;
        r.add(
            RESOLVE,
            Duration::from_secs_f64(out.value("probe_dns_lookup_time_seconds").unwrap_or(0.0)),
        );
        match res {
            Ok(ip) => Some(ip),
            Err(e) => {
                olog!(out, ("Error resolving address: {e}"));
                return false;
            }
        }
    };
    let body = match &p.body {
        ReqBody::Empty => Bytes::new(),
        ReqBody::Inline(b) => b.clone(),
        ReqBody::File(f) => match tokio::fs::read(f).await {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                olog!(
                    out,
                    ("Error creating request: cannot read {}: {e}", f.display())
                );
                return false;
            }
        },
    };
    for phase in [CONNECT, TLS, PROCESSING, TRANSFER] {
        r.phases[phase].get_or_insert(0.0);
    }
    let auth = match p.auth.header(ctx.deadline).await {
        Ok(a) => a,
        Err(e) => {
            olog!(out, ("Error for HTTP request: {e}"));
            return false;
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
        olog!(
            out,
            (
                "Making HTTP request url={} host={}",
                hop.url,
                hop.host_header
            )
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
            cookie,
            index,
            r,
        )
        .await;
        let a = match sent {
            Ok(a) => a,
            Err(e) => {
                olog!(out, ("Error for HTTP request: {e}"));
                return false;
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
        olog!(out, ("Received redirect location={loc}"));
        let next = match hop.url.join(&loc) {
            Ok(u) => u,
            Err(e) => {
                olog!(
                    out,
                    ("Error for HTTP request: failed to parse Location header {loc:?}: {e}")
                );
                return false;
            }
        };
        r.redirects = index + 1;
        if r.redirects > MAX_REDIRECTS || !p.follow_redirects {
            out.log("Not following redirect");
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
    finish(p, ctx, out, r, &hop, answer, errored).await
}

/// The final response: status, header checks, body (decompressed, counted, checked), version,
/// TLS.
async fn finish(
    p: &HttpProbe,
    ctx: &Ctx,
    out: &mut Output,
    r: &mut Report,
    hop: &Hop,
    answer: Answer,
    errored: bool,
) -> bool {
    let Answer {
        resp,
        mut conn,
        tls,
        first_byte,
        _sender,
    } = answer;
    let status = resp.status().as_u16();
    olog!(out, ("Received HTTP response status_code={status}"));
    r.status = status;
    r.content_length = http_body::content_length(&hop.method, status, resp.headers());
    let mut success = if p.accept_any_response {
        true
    } else if p.valid_status_codes.is_empty() {
        let ok = (200..300).contains(&status);
        if !ok {
            olog!(
                out,
                ("Invalid HTTP response status code, wanted 2xx status_code={status}")
            );
        }
        ok
    } else {
        let ok = p.valid_status_codes.contains(&i64::from(status));
        if !ok {
            olog!(out, (
                "Invalid HTTP response status code status_code={status} valid_status_codes={:?}",
                p.valid_status_codes
            ));
        }
        ok
    };
    if success && (!p.header_fail.is_empty() || !p.header_need.is_empty()) {
        success = headers_ok(p, resp.headers(), out);
        r.regex_failed = !success;
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
        let mut sink = Sink {
            limit: p.body_size_limit,
            keep: success && p.needs_body(),
            ..Sink::default()
        };
        let mut decoder = Decoder::new(p.compression, &mut sink);
        let mut body = resp.into_body();
        let read = async {
            loop {
                match conn.drive(body.frame()).await {
                    Err(e) => return Err(e),
                    Ok(None) => return decoder.finish().map_err(|e| e.to_string()),
                    Ok(Some(Err(e))) => return Err(format!("reading the body: {e}")),
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            decoder.write(&data).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
        };
        let read_err = match timeout_at(ctx.deadline, read).await {
            Err(_) => Some("context deadline exceeded".to_string()),
            Ok(Err(e)) => Some(e),
            Ok(Ok(())) => None,
        };
        let init_failed = decoder.init_failed;
        drop(decoder);
        if init_failed {
            out.log("Failed to get decompressor for HTTP response body");
            success = false;
        }
        // Go reads the body for the regexps (then CEL) first, so a read error fails those
        // checks and sets their flag before it fails the probe itself.
        if success && (!p.body_fail.is_empty() || !p.body_need.is_empty()) {
            success = read_err.is_none() && body_regexps_ok(p, &sink.buf, out);
            r.regex_failed = !success;
        }
        if success && p.has_cel() {
            success = read_err.is_none() && cel_ok(p, &sink.buf, out);
            r.cel_failed = !success;
        }
        if let Some(e) = &read_err {
            olog!(out, ("Failed to read HTTP response body: {e}"));
            success = false;
        }
        r.body_len = sink.count;
    }
    r.add(TRANSFER, first_byte.elapsed());
    r.last_modified = last_modified;
    r.version = version;
    if !p.valid_http_versions.is_empty() && !p.valid_http_versions.iter().any(|v| v == proto) {
        olog!(out, ("Invalid HTTP version number version={proto}"));
        success = false;
    }
    if let Some(h) = tls {
        r.ssl = true;
        tls_info::report(&h, !p.tls_insecure, out);
        if p.fail_if_ssl {
            out.log("Final request was over SSL");
            success = false;
        }
    } else if p.fail_if_not_ssl && success {
        out.log("Final request was not over SSL");
        success = false;
    }
    success
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
    cookie: Option<HeaderValue>,
    index: usize,
    r: &mut Report,
) -> Result<Answer, String> {
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
        (Some(px), _) => lookup(&px.host, px.port, deadline).await?,
        (None, Some(ip)) => SocketAddr::new(ip, first_port),
        (None, None) => lookup(&host, port, deadline).await?,
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
    .map_err(|e| format!("bad request URI: {e}"))?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = hop.method.clone();
    *req.uri_mut() = uri;
    {
        let h = req.headers_mut();
        h.insert(
            header::HOST,
            HeaderValue::from_str(&hop.host_header)
                .map_err(|_| format!("`{}` is not a valid Host header", hop.host_header))?,
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
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| format!("`{server_name}` is not a TLS server name: {e}"))?;
        let t_tls = Instant::now();
        let config = match &p.tls {
            Ok(c) => c.clone(),
            // A CA file or client certificate missing at load: try again, it may be there now.
            Err((_, source)) => source.client_config(super::http::alpn(p.enable_http2))?,
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        let stream = match timeout_at(deadline, connector.connect(name, tcp)).await {
            Err(_) => return Err("TLS handshake: context deadline exceeded".into()),
            Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
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
            return Err(format!(
                "TLS handshake: {} is outside tls_config's min_version/max_version",
                tls_info::tls_version_name(version)
            ));
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
    r: &mut Report,
) -> Result<Answer, String>
where
    F: std::future::Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>>,
    S: Send + 'static,
{
    let mut conn = Conn { fut: Some(conn) };
    let resp = match timeout_at(deadline, conn.drive(response)).await {
        Err(_) => return Err("context deadline exceeded".into()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(e))) => return Err(chain(&e)),
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
    r: &mut Report,
) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hs = http1::Builder::new()
        .title_case_headers(true)
        .max_buf_size(256 * 1024)
        .handshake::<_, Full<Bytes>>(TokioIo::new(NoShutdown(io)));
    let (mut sender, conn) = match timeout_at(deadline, hs).await {
        Err(_) => return Err("context deadline exceeded".into()),
        Ok(Err(e)) => return Err(format!("HTTP handshake: {e}")),
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
    r: &mut Report,
) -> Result<Answer, String>
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
        .map_err(|e| format!("bad request URI: {e}"))?;
    *req.version_mut() = http::Version::HTTP_2;
    let hs = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(NoShutdown(io)));
    let (mut sender, conn) = match timeout_at(deadline, hs).await {
        Err(_) => return Err("context deadline exceeded".into()),
        Ok(Err(e)) => return Err(format!("HTTP/2 handshake: {e}")),
        Ok(Ok(x)) => x,
    };
    let response = sender.send_request(req);
    await_head(Box::pin(conn), response, sender, deadline, t_gotconn, r).await
}
