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

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{timeout_at, Instant};

use super::http::{HttpProbe, ReqBody};
use super::http_client::Proxy;
use super::http_conn::{
    authority, bracket, connect, cookie_header, host_of, lookup_first, referer, strip_port, tunnel,
    NoShutdown,
};
use super::{lookup, tls_info, Ctx, Level, Log};
use crate::net::driver::{handshake_http1, ConnFuture, Driver, Http1Options};
use crate::net::guard::Session;
use crate::net::{self, fail_from};
use crate::probe::{Fail, Reason};

/// `User-Agent` sent when the module sets none.
pub const USER_AGENT: &str = concat!("watchfire/", env!("CARGO_PKG_VERSION"));

/// Redirects followed at most (Go's client stops at the 11th).
pub const MAX_REDIRECTS: usize = 10;

use super::http_facts::{Facts, CONNECT, PROCESSING, RESOLVE, TLS, TRANSFER};

mod answer;
use answer::finish;

/// Logs a failure's detail and returns it.
fn fail(log: &mut Log, f: Fail) -> Fail {
    log.line(Level::Error, &f.detail);
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
    conn: Driver<'static>,
    /// The handshake, when the hop used TLS.
    tls: Option<tls_info::Handshake>,
    first_byte: Instant,
    /// Kept until the body is read: dropping it early may close the connection.
    _sender: Box<dyn std::any::Any + Send>,
}

/// What every hop of one probe shares, set up before the first request.
struct Plan {
    /// The target's host (without brackets): the cookie jar's host of first-address hops.
    host: String,
    /// The target's port.
    port: u16,
    /// The first hop's address, unless a proxy resolves.
    ip: Option<IpAddr>,
    /// The request body (dropped on redirects that change the method).
    body: Bytes,
    /// `Authorization` from the module's auth settings.
    auth: Option<HeaderValue>,
    /// `http_headers` values read from files.
    file_headers: http::HeaderMap,
    /// The TLS server name of hops on the first address.
    first_server_name: String,
}

async fn run(p: &HttpProbe, ctx: &Ctx, r: &mut Facts, log: &mut Log) -> Result<(), Fail> {
    let url = target_url(&ctx.target).map_err(|f| fail(log, f))?;
    let plan = prepare(p, ctx, &url, r, log).await?;
    let mut hop = Hop {
        host_header: ctx
            .hostname
            .clone()
            .or_else(|| p.host.clone())
            .unwrap_or_else(|| authority(&url)),
        url,
        method: p.method.clone(),
        with_body: true,
        on_first: true,
        referer: None,
    };
    let mut cookies: Vec<(String, String, String)> = Vec::new();
    let mut index = 0usize;
    let (answer, errored) = loop {
        plog!(
            log,
            Debug,
            "Making HTTP request url={} host={}",
            crate::redact::url(hop.url.as_str()),
            hop.host_header
        );
        let jar_host = if hop.on_first {
            plan.host.clone()
        } else {
            host_of(&hop.url)
        };
        let cookie = cookie_header(&cookies, &jar_host);
        let a = match exchange(p, ctx, &plan, &hop, cookie, index, r).await {
            Ok(a) => a,
            Err(f) => {
                let detail = format!("Error for HTTP request: {}", f.detail);
                return Err(fail(log, Fail::new(f.reason, detail)));
            }
        };
        let next = match redirect(p, &plan, &hop, &a, index, r, log)? {
            Redirect::Answer { errored } => break (a, errored),
            Redirect::Follow(next) => next,
        };
        keep_cookies(&a, &jar_host, &mut cookies);
        drop(a);
        hop = next;
        index += 1;
    };
    finish(p, ctx, r, log, &hop, answer, errored).await
}

/// The target as a URL (`http://` added when it has no scheme).
fn target_url(target: &str) -> Result<url::Url, Fail> {
    let target = if target.starts_with("http://") || target.starts_with("https://") {
        target.to_string()
    } else {
        format!("http://{target}")
    };
    match url::Url::parse(&target) {
        Ok(u) if u.host_str().is_some() => Ok(u),
        Ok(_) => Err(Fail::new(
            Reason::Setup,
            format!("Could not parse target URL: {target} has no host"),
        )),
        Err(e) => Err(Fail::new(
            Reason::Setup,
            format!("Could not parse target URL: {e}"),
        )),
    }
}

/// Resolves the target (unless a proxy does), reads the body and header files, gets the auth
/// header: everything the hops share.
async fn prepare(
    p: &HttpProbe,
    ctx: &Ctx,
    url: &url::Url,
    r: &mut Facts,
    log: &mut Log,
) -> Result<Plan, Fail> {
    let host = host_of(url);
    let port = url.port_or_known_default().unwrap_or(80);
    let ip = if p.proxies.skip_resolve {
        None
    } else {
        plog!(
            log,
            Debug,
            "Resolving target address (ip_protocol {:?}, fallback {})",
            p.ip_protocol,
            p.ip_protocol_fallback
        );
        let res = lookup(
            &host,
            Some(port),
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
        ReqBody::File(f) => match crate::limits::read_capped_async(
            f,
            crate::limits::MAX_BODY_FILE_BYTES,
            "body_file",
        )
        .await
        {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                let detail = format!("Error creating request: {e}");
                return Err(fail(log, Fail::new(Reason::Setup, detail)));
            }
        },
    };
    let file_headers = read_header_files(p).await.map_err(|f| fail(log, f))?;
    for phase in [CONNECT, TLS, PROCESSING, TRANSFER] {
        r.phases[phase].get_or_insert(0.0);
    }
    let auth = p.auth.header(ctx.deadline).await.map_err(|e| {
        let detail = format!("Error for HTTP request: {e}");
        fail(log, Fail::new(Reason::Setup, detail))
    })?;
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
    Ok(Plan {
        host,
        port,
        ip,
        body,
        auth,
        file_headers,
        first_server_name,
    })
}

/// What a hop's answer leads to.
enum Redirect {
    /// It is the final answer (`errored`: a redirect not followed, whose body is not read).
    Answer { errored: bool },
    /// Follow it with this hop.
    Follow(Hop),
}

/// Go's client's redirect rules for the answer `a` to `hop` (the `index`-th request).
fn redirect(
    p: &HttpProbe,
    plan: &Plan,
    hop: &Hop,
    a: &Answer,
    index: usize,
    r: &mut Facts,
    log: &mut Log,
) -> Result<Redirect, Fail> {
    let status = a.resp.status().as_u16();
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return Ok(Redirect::Answer { errored: false });
    }
    let Some(loc) = a
        .resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    else {
        // Go answers a 3xx without Location as it is.
        return Ok(Redirect::Answer { errored: false });
    };
    // Go cannot replay a body it read from a file, so it does not follow 307/308 then.
    if matches!(status, 307 | 308) && matches!(p.body, ReqBody::File(_)) && !plan.body.is_empty() {
        return Ok(Redirect::Answer { errored: false });
    }
    plog!(
        log,
        Info,
        "Received redirect location={}",
        crate::redact::url(loc)
    );
    let next = hop.url.join(loc).map_err(|e| {
        let detail =
            format!("Error for HTTP request: failed to parse Location header {loc:?}: {e}");
        fail(log, Fail::new(Reason::Protocol, detail))
    })?;
    r.redirects = index + 1;
    if r.redirects > MAX_REDIRECTS || !p.follow_redirects {
        log.line(Level::Info, "Not following redirect");
        return Ok(Redirect::Answer { errored: true });
    }
    let relative = url::Url::parse(loc).is_err();
    let keep_method = matches!(status, 307 | 308);
    Ok(Redirect::Follow(Hop {
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
    }))
}

/// Keeps the cookies a redirect sets, for the jar's host.
fn keep_cookies(a: &Answer, jar_host: &str, cookies: &mut Vec<(String, String, String)>) {
    for sc in a.resp.headers().get_all(header::SET_COOKIE) {
        if let Some((k, v)) = sc
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .and_then(|kv| kv.split_once('='))
        {
            cookies.retain(|(h, n, _)| !(h == jar_host && n == k.trim()));
            cookies.push((jar_host.to_string(), k.trim().into(), v.trim().into()));
        }
    }
}

/// The values of `http_headers` that come from files, read now (as blackbox reads them for
/// each request); a file that cannot be read, or whose content is not a header value, is
/// [`Reason::Setup`].
async fn read_header_files(p: &HttpProbe) -> Result<http::HeaderMap, Fail> {
    let mut out = http::HeaderMap::new();
    for (name, files) in &p.header_files {
        for f in files {
            let text = crate::limits::read_capped_string_async(
                f,
                crate::limits::MAX_SECRET_FILE_BYTES,
                "header file",
            )
            .await
            .map_err(|e| {
                let detail = format!("Error creating request: {e}");
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
async fn exchange(
    p: &HttpProbe,
    ctx: &Ctx,
    plan: &Plan,
    hop: &Hop,
    cookie: Option<HeaderValue>,
    index: usize,
    r: &mut Facts,
) -> Result<Answer, Fail> {
    let deadline = ctx.deadline;
    let tls = hop.url.scheme() == "https";
    let guard = ctx.guard.as_deref();
    let (tcp, via_proxy, t_dns, t_connected) =
        open(p, plan, hop, index, (deadline, guard), r).await?;
    let req = request(p, plan, hop, via_proxy, cookie, index)?;
    if !tls {
        let t_gotconn = Instant::now();
        r.add(CONNECT, t_gotconn - t_dns);
        return send(tcp, req, deadline, t_gotconn, r).await;
    }
    let server_name = if hop.on_first {
        plan.first_server_name.clone()
    } else {
        host_of(&hop.url)
    };
    // The first hop's name is already chosen (tls_config.server_name, the Host header, or the
    // target's host); the one rule then applies to it as to every prober's.
    let name = crate::net::tls::server_name(None, &server_name)
        .map_err(|detail| Fail::new(Reason::Tls, detail))?;
    let t_tls = Instant::now();
    let config = match &p.tls {
        Ok(c) => c.clone(),
        // A CA file or client certificate missing at load: try again, it may be there now.
        Err((_, source)) => source
            .client_config(super::http::alpn(p.enable_http2))
            .map_err(|e| Fail::new(Reason::Setup, e.to_string()))?,
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
    if p.tls_min.is_some_and(|m| v < u16::from(m)) || p.tls_max.is_some_and(|m| v > u16::from(m)) {
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
}

/// The hop's TCP connection: to its proxy or its address (the first hop's resolved one), through
/// a proxy's `CONNECT` tunnel for https. Also whether a proxy is used, and when the lookup and
/// the connect ended. Under a `/probe` guard every address connected to is checked: the hop's,
/// or the proxy's and (resolved here) the target's behind it.
async fn open<'p>(
    p: &'p HttpProbe,
    plan: &Plan,
    hop: &Hop,
    index: usize,
    (deadline, guard): (Instant, Option<&Session>),
    r: &mut Facts,
) -> Result<(tokio::net::TcpStream, Option<&'p Proxy>, Instant, Instant), Fail> {
    let tls = hop.url.scheme() == "https";
    let host = host_of(&hop.url);
    let port = hop.url.port_or_known_default().unwrap_or(80);
    let first_ip = if hop.on_first { plan.ip } else { None };
    let t_start = Instant::now();
    // Go picks the proxy by the request URL, whose host is the resolved address on the first
    // hop's address.
    let proxy_host = first_ip.map_or_else(|| host.clone(), |ip| ip.to_string());
    let via_proxy = p.proxies.for_target(hop.url.scheme(), &proxy_host, port);
    let addr = match (via_proxy, first_ip) {
        (Some(px), ip) => {
            if let (Some(g), None) = (guard, ip) {
                behind_proxy(&host, port, deadline, g).await?;
            }
            lookup_first(&px.host, px.port, deadline, guard).await?
        }
        (None, Some(ip)) => SocketAddr::new(ip, plan.port),
        (None, None) => lookup_first(&host, port, deadline, guard).await?,
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
    Ok((tcp, via_proxy, t_dns, t_connected))
}

/// Checks a target the proxy will connect to, resolved here: a name this host cannot resolve
/// is refused, since the guard cannot tell where the proxy would take it.
async fn behind_proxy(host: &str, port: u16, deadline: Instant, g: &Session) -> Result<(), Fail> {
    match net::resolve(host, Some(port), &net::Policy::SYSTEM, deadline, Some(g)).await {
        Ok(_) => Ok(()),
        Err(net::ResolveError::Denied(d)) => Err(Fail::new(Reason::Policy, d.to_string())),
        Err(e) => Err(Fail::new(
            Reason::Policy,
            format!("the probe guard cannot check {host} behind the proxy: {e}"),
        )),
    }
}

/// The hop's request: URI (absolute-form through a plain-HTTP proxy), the module's headers
/// (credentials dropped once a redirect leaves the first address, as Go does), auth, cookies,
/// `Referer`, `Connection: close`.
fn request(
    p: &HttpProbe,
    plan: &Plan,
    hop: &Hop,
    via_proxy: Option<&Proxy>,
    cookie: Option<HeaderValue>,
    index: usize,
) -> Result<Request<Full<Bytes>>, Fail> {
    let tls = hop.url.scheme() == "https";
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
    let body = if hop.with_body {
        plan.body.clone()
    } else {
        Bytes::new()
    };
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = hop.method.clone();
    *req.uri_mut() = uri;
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
    for (k, v) in &plan.file_headers {
        h.append(k, v.clone());
    }
    if !h.contains_key(header::USER_AGENT) {
        h.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    }
    if let Some(a) = &plan.auth {
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
    Ok(req)
}

/// Drives the connection until the response head arrives (HTTP/1.1 and HTTP/2 alike).
async fn await_head<F, S>(
    conn: ConnFuture<'static>,
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
    let mut conn = Driver::new(conn);
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

/// blackbox's HTTP/1.1 client: Title-Case header names as Go writes them, and response heads up
/// to Go's limit ([`super::http_client::MAX_RESPONSE_HEAD_BYTES`]).
const HTTP1: Http1Options = Http1Options {
    max_buf_size: super::http_client::MAX_RESPONSE_HEAD_BYTES + 64 * 1024,
    max_header_size: super::http_client::MAX_RESPONSE_HEAD_BYTES,
    title_case_headers: true,
};

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
    let hs = handshake_http1(NoShutdown(io), HTTP1);
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
        .max_header_list_size(super::http_client::MAX_RESPONSE_HEAD_BYTES as u32)
        .handshake::<_, Full<Bytes>>(TokioIo::new(NoShutdown(io)));
    let (mut sender, conn) = match timeout_at(deadline, hs).await {
        Err(_) => return Err(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(e)) => return Err(fail_from(Reason::Protocol, "HTTP/2 handshake", &e)),
        Ok(Ok(x)) => x,
    };
    let response = sender.send_request(req);
    await_head(Box::pin(conn), response, sender, deadline, t_gotconn, r).await
}
