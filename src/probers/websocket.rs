//! The `websocket` prober: open a `ws://` or `wss://` URL (TCP connect, TLS for `wss`, the HTTP
//! upgrade handshake with the module's headers and credentials), then the `query_response`
//! dialogue — read one message and match `expect`, send `send` (with `${1}` from that match) as
//! a text message.
//!
//! [`probe`] fills in [`Facts`] as it goes; the blackbox families are rendered from them
//! ([`View`]). blackbox's phases of `probe_websocket_duration_seconds` and the [`Phases`] they
//! feed:
//!
//! - `resolve` — the target's name lookup ([`Phases::resolve`]), present once it succeeded;
//! - `connect` — the TCP connect ([`Phases::connect`]), present once it succeeded;
//! - `processing` — the rest of opening the websocket: the TLS handshake ([`Phases::tls`]) and
//!   the upgrade request up to its answer ([`Phases::processing`]); present once a connect was
//!   tried (a failed connect's time counts here, as upstream counts it);
//! - `transfer` — the `query_response` dialogue ([`Phases::transfer`]), present when the module
//!   has one and the connection was upgraded.
//!
//! Failures: the name does not resolve `dns`; a closed port `refused`; the connect outlives the
//! deadline `connect_timeout`, another connect error `connect`; the TLS handshake fails `tls`;
//! the deadline passes after the connect `timeout`; the connection closes or resets (or the
//! server sends a close frame) before the dialogue is over `reset`; the server answers the
//! upgrade with anything but `101 Switching Protocols`, or breaks the websocket protocol,
//! `protocol` (the status code is reported); a message does not match `expect`
//! `expect_mismatch`; a target that is not a `ws://` / `wss://` URL, a TLS configuration, a
//! header or a credentials file that cannot be used `setup`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderName, HeaderValue};
use regex::bytes::Regex;
use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::http::HttpHeader;
use super::http_client::{relative_to, Auth, Authorization, BasicAuth, SecretSource};
use super::tcp::QueryResponse;
use super::{lookup, ser_secret, Ctx, IpProtocol, Log, Output, Resolved, TlsConfig, View};
use crate::diag::FieldError;
use crate::net::{self, chain, fail_from, SocketOptions};
use crate::probe::{Fail, Phases, Reason};

/// The part of Prometheus' HTTP client settings (`http_config`) a websocket probe uses.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsHttpConfig {
    /// `basic_auth`: user name and password, inline or from files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// `authorization`: a scheme (`Bearer` when empty) and credentials, inline or from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// A bearer token (Prometheus' older spelling of `authorization`), shown as `<secret>`.
    #[serde(
        skip_serializing_if = "String::is_empty",
        serialize_with = "ser_secret"
    )]
    pub bearer_token: String,
    /// A file holding the bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// TLS settings of `wss://` targets.
    pub tls_config: TlsConfig,
}

/// The values of one request header: a string, a list, or Prometheus' `values` / `secrets` /
/// `files` form (a file is read at each probe, surrounding whitespace trimmed).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum HeaderValues {
    /// `Name: value`
    One(String),
    /// `Name: [v1, v2]`
    Many(Vec<String>),
    /// `Name: {values: [...], secrets: [...], files: [...]}`
    Sources(HttpHeader),
}

/// blackbox's `websocket:` module options.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketModule {
    /// Authentication and TLS.
    pub http_config: WsHttpConfig,
    /// Extra headers of the upgrade request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderValues>,
    /// The dialogue after the upgrade.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_response: Vec<QueryResponse>,
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "super::tcp::ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// The compiled options, made by [`WebsocketModule::compile`]; not an option itself.
    #[serde(skip)]
    compiled: Option<Arc<Compiled>>,
}

impl Default for WebsocketModule {
    fn default() -> Self {
        WebsocketModule {
            http_config: WsHttpConfig::default(),
            headers: BTreeMap::new(),
            query_response: Vec::new(),
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            compiled: None,
        }
    }
}

/// What a probe needs, made once at load: the regexps, the TLS client configuration (unless a
/// file it names does not exist yet), the credentials and the headers.
#[derive(Debug)]
struct Compiled {
    expects: Vec<Option<Regex>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Auth,
    headers: Vec<(HeaderName, HeaderSource)>,
}

/// One header value: fixed, or read from a file at each probe.
#[derive(Debug)]
enum HeaderSource {
    Fixed(HeaderValue),
    File(PathBuf),
}

/// Headers the upgrade handshake writes itself; the module may not set them.
const HANDSHAKE_HEADERS: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

impl WebsocketModule {
    /// Checks what serde cannot (regexps, header names and values, the credentials' rules as
    /// Prometheus' HTTP client checks them) and keeps the compiled form, so that a probe parses
    /// nothing. `file` is the config file, which relative paths are read from. A module probed
    /// without it is compiled for that probe. A problem names its field below `websocket`.
    pub fn compile(&mut self, file: &Path) -> Result<(), FieldError> {
        let compiled = self.build(file)?;
        self.compiled = Some(Arc::new(compiled));
        Ok(())
    }

    fn build(&self, file: &Path) -> Result<Compiled, FieldError> {
        let bad = |field: String, msg: String| FieldError::new(field, msg).under("websocket");
        let mut expects = Vec::new();
        for (i, qr) in self.query_response.iter().enumerate() {
            let field = |f: &str| format!("query_response[{i}].{f}");
            if qr.starttls {
                return Err(bad(field("starttls"), "not used by websocket".into()));
            }
            if !qr.labels.is_empty() {
                return Err(bad(field("labels"), "not used by websocket".into()));
            }
            if qr.expect_bytes.is_some() {
                return Err(bad(field("expect_bytes"), "not used by websocket".into()));
            }
            let re = match &qr.expect {
                Some(re) => Some(
                    crate::limits::regex_bytes(re)
                        .map_err(|e| bad(field("expect"), format!("invalid regexp `{re}`: {e}")))?,
                ),
                None => None,
            };
            expects.push(re);
        }
        let auth = self.auth(file).map_err(|(f, m)| bad(f, m))?;
        let headers = self.header_list(file).map_err(|(f, m)| bad(f, m))?;
        let tls_cfg = &self.http_config.tls_config;
        let tls = if tls_cfg.missing_files().is_empty() {
            let cfg = tls_cfg
                .client_config(&[])
                .map_err(|e| bad(format!("http_config.{}", e.field), e.message))?;
            Some(cfg)
        } else {
            None
        };
        Ok(Compiled {
            expects,
            tls,
            auth,
            headers,
        })
    }

    /// The credentials, checked as Prometheus' HTTP client checks them; an error is its field
    /// and message.
    fn auth(&self, file: &Path) -> Result<Auth, (String, String)> {
        let c = &self.http_config;
        let given = |p: &Option<String>| p.as_deref().is_some_and(|p| !p.is_empty());
        let secret = |inline: &str, path: &Option<String>| match path {
            Some(p) if given(path) => SecretSource::File(relative_to(file, p)),
            _ => SecretSource::Inline(inline.to_string()),
        };
        // Options that exclude each other: (both given, field, which).
        let (b, a) = (c.basic_auth.as_ref(), c.authorization.as_ref());
        let bearer = !c.bearer_token.is_empty() || c.bearer_token_file.is_some();
        let pairs = [
            (
                b.is_some() as u8 + a.is_some() as u8 + bearer as u8 > 1,
                "",
                "basic_auth, authorization, bearer_token & bearer_token_file",
            ),
            (
                !c.bearer_token.is_empty() && given(&c.bearer_token_file),
                ".bearer_token_file",
                "bearer_token & bearer_token_file",
            ),
            (
                b.is_some_and(|b| !b.username.is_empty() && given(&b.username_file)),
                ".basic_auth",
                "basic_auth username & username_file",
            ),
            (
                b.is_some_and(|b| !b.password.is_empty() && given(&b.password_file)),
                ".basic_auth",
                "basic_auth password & password_file",
            ),
            (
                a.is_some_and(|a| !a.credentials.is_empty() && given(&a.credentials_file)),
                ".authorization",
                "authorization credentials & credentials_file",
            ),
        ];
        if let Some((_, field, what)) = pairs.iter().find(|p| p.0) {
            let msg = format!("at most one of {what} must be configured");
            return Err((format!("http_config{field}"), msg));
        }
        if let Some(b) = b {
            return Ok(Auth::Basic {
                user: secret(&b.username, &b.username_file),
                pass: secret(&b.password, &b.password_file),
            });
        }
        if let Some(a) = a {
            if a.kind.eq_ignore_ascii_case("basic") {
                let msg =
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead";
                return Err(("http_config.authorization.type".into(), msg.into()));
            }
            // Like upstream, an `authorization` without credentials sends no header.
            if a.credentials.is_empty() && !given(&a.credentials_file) {
                return Ok(Auth::None);
            }
            let kind = if a.kind.is_empty() { "Bearer" } else { &a.kind };
            return Ok(Auth::Scheme {
                kind: kind.to_string(),
                credentials: secret(&a.credentials, &a.credentials_file),
            });
        }
        if bearer {
            return Ok(Auth::Scheme {
                kind: "Bearer".into(),
                credentials: secret(&c.bearer_token, &c.bearer_token_file),
            });
        }
        Ok(Auth::None)
    }

    /// The extra headers, parsed; an error is its field and message.
    fn header_list(
        &self,
        file: &Path,
    ) -> Result<Vec<(HeaderName, HeaderSource)>, (String, String)> {
        let mut out = Vec::new();
        for (name, values) in &self.headers {
            let field = format!("headers.{name}");
            let key = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                (
                    field.clone(),
                    format!("`{name}` is not a valid header name"),
                )
            })?;
            if HANDSHAKE_HEADERS.contains(&key.as_str()) {
                return Err((field, "set by the websocket handshake itself".into()));
            }
            let fixed = |v: &String| {
                HeaderValue::from_str(v)
                    .map(HeaderSource::Fixed)
                    .map_err(|_| {
                        (
                            field.clone(),
                            "the value holds characters HTTP does not allow".to_string(),
                        )
                    })
            };
            match values {
                HeaderValues::One(v) => out.push((key, fixed(v)?)),
                HeaderValues::Many(vs) => {
                    for v in vs {
                        out.push((key.clone(), fixed(v)?));
                    }
                }
                HeaderValues::Sources(s) => {
                    for v in s.values.iter().chain(&s.secrets) {
                        out.push((key.clone(), fixed(v)?));
                    }
                    for f in &s.files {
                        out.push((key.clone(), HeaderSource::File(relative_to(file, f))));
                    }
                }
            }
        }
        Ok(out)
    }
}

const STATUS: &str = "probe_websocket_status_code";
const STATUS_HELP: &str = "Response HTTP status code";
const UPGRADED: &str = "probe_websocket_connection_upgraded";
const UPGRADED_HELP: &str = "Indicates if the websocket connection was successfully upgraded";
const REGEX: &str = "probe_websocket_failed_due_to_regex";
const REGEX_HELP: &str = "Indicates if probe failed due to regex";
const DURATION: &str = "probe_websocket_duration_seconds";
const DURATION_HELP: &str = "Duration of websocket request by phase";

/// What one websocket probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The target was a usable URL and the probe began (the families are then reported).
    pub started: bool,
    /// The target's name lookup.
    pub resolved: Resolved,
    /// The TCP connect, once it succeeded.
    pub connect: Option<Duration>,
    /// From the start of the connect to the end of the upgrade handshake (or its failure),
    /// once a connect was tried.
    pub dial: Option<Duration>,
    /// The TLS handshake (zero for `ws://`).
    pub tls: Duration,
    /// The upgrade request up to its answer.
    pub handshake: Duration,
    /// The status code of the answer to the upgrade request, when one arrived.
    pub status: Option<u16>,
    /// The server switched protocols: the websocket is open.
    pub upgraded: bool,
    /// The `query_response` dialogue's duration, when the module has one and it ran.
    pub transfer: Option<Duration>,
    /// A `query_response` step failed: no match, or the connection failed or the deadline
    /// passed during it (upstream sets `probe_websocket_failed_due_to_regex` for all of these).
    pub step_failed: bool,
    /// Bytes of message payload read.
    pub bytes: u64,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        if !self.started {
            return;
        }
        out.gauge(STATUS, STATUS_HELP, f64::from(self.status.unwrap_or(0)));
        out.gauge(UPGRADED, UPGRADED_HELP, flag(self.upgraded));
        out.gauge(REGEX, REGEX_HELP, flag(self.step_failed));
        let mut phase = |name: &str, d: Duration| {
            out.gauge_with(DURATION, DURATION_HELP, &[("phase", name)], d.as_secs_f64());
        };
        if self.resolved.ip.is_some() {
            phase("resolve", self.resolved.lookup.unwrap_or_default());
        }
        if let Some(c) = self.connect {
            phase("connect", c);
        }
        if let Some(d) = self.dial {
            phase(
                "processing",
                d.saturating_sub(self.connect.unwrap_or_default()),
            );
        }
        if let Some(t) = self.transfer {
            phase("transfer", t);
        }
        self.resolved.render(out);
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.resolved.lookup.unwrap_or_default(),
            connect: self.connect.unwrap_or_default(),
            tls: self.tls,
            processing: self.handshake,
            transfer: self.transfer.unwrap_or_default(),
        }
    }

    fn status(&self) -> Option<u16> {
        self.status
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Ws = WebSocketStream<Box<dyn Io>>;

/// The parts of a `ws://` or `wss://` target.
struct Target {
    url: url::Url,
    host: String,
    port: u16,
    tls: bool,
}

/// Parses the target: a `ws://` or `wss://` URL with a host.
fn parse_target(target: &str) -> Result<Target, String> {
    let url = url::Url::parse(target).map_err(|e| format!("`{target}`: {e}"))?;
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        s => return Err(format!("scheme `{s}` is not ws or wss")),
    };
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err(format!("`{target}` has no host")),
    };
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    Ok(Target {
        url,
        host,
        port,
        tls,
    })
}

/// Runs one websocket probe, filling in `facts` as it goes.
pub async fn probe(
    module: &WebsocketModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let setup = |log: &mut Log, what: String| {
        plog!(log, Error, "{what}");
        Fail::new(Reason::Setup, what)
    };
    let target = parse_target(&ctx.target)
        .map_err(|e| setup(log, format!("could not parse target URL: {e}")))?;
    plog!(
        log,
        Debug,
        "probing websocket target={}",
        crate::redact::url(target.url.as_str())
    );
    facts.started = true;
    let built;
    let compiled = match &module.compiled {
        Some(c) => c.as_ref(),
        None => {
            built = module
                .build(Path::new(""))
                .map_err(|e| setup(log, e.to_string()))?;
            &built
        }
    };
    let tls = if target.tls {
        Some(tls_setup(module, compiled, &target.host).map_err(|e| setup(log, e))?)
    } else {
        None
    };
    let ip = lookup(
        &target.host,
        Some(target.port),
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        &mut facts.resolved,
        log,
    )
    .await?;
    let request = request(compiled, &target, ctx.deadline)
        .await
        .map_err(|e| setup(log, e))?;
    let addr = SocketAddr::new(ip, target.port);
    let dial_start = Instant::now();
    let opened = open(addr, tls, request, ctx, facts, log).await;
    facts.dial = Some(dial_start.elapsed());
    let ws = opened.inspect_err(|f| plog!(log, Error, "error dialing websocket: {}", f.detail))?;
    facts.upgraded = true;
    plog!(log, Debug, "websocket connection upgraded");
    if compiled.expects.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    let talk = dialogue(module, compiled, ws, facts, log);
    let result = tokio::time::timeout_at(ctx.deadline, talk)
        .await
        .unwrap_or_else(|_| {
            Err(Fail::new(
                Reason::Timeout,
                "timeout: the probe's deadline passed",
            ))
        });
    facts.transfer = Some(start.elapsed());
    if let Err(f) = &result {
        facts.step_failed = true;
        plog!(log, Error, "{}", f.detail);
    }
    result
}

/// The upgrade request: the target URL with the module's headers and credentials (files read
/// now).
async fn request(
    compiled: &Compiled,
    target: &Target,
    deadline: Instant,
) -> Result<Request, String> {
    let mut req = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("cannot make the upgrade request: {e}"))?;
    let headers = req.headers_mut();
    for (name, source) in &compiled.headers {
        let value = match source {
            HeaderSource::Fixed(v) => v.clone(),
            HeaderSource::File(p) => {
                let text = crate::limits::read_capped_string_async(
                    p,
                    crate::limits::MAX_SECRET_FILE_BYTES,
                    "header file",
                )
                .await
                .map_err(|e| e.to_string())?;
                HeaderValue::from_str(text.trim()).map_err(|_| {
                    format!(
                        "header file {} holds characters HTTP does not allow",
                        p.display()
                    )
                })?
            }
        };
        if name == http::header::HOST {
            headers.insert(name.clone(), value);
        } else {
            headers.append(name.clone(), value);
        }
    }
    if let Some(v) = compiled.auth.header(deadline).await? {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    Ok(req)
}

/// The TLS client configuration (made at load, or now when a file it names was missing then)
/// and the server name: `tls_config.server_name`, else the target's host.
fn tls_setup(
    module: &WebsocketModule,
    compiled: &Compiled,
    host: &str,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    let tls_config = &module.http_config.tls_config;
    let cfg = match &compiled.tls {
        Some(cfg) => cfg.clone(),
        None => tls_config
            .client_config(&[])
            .map_err(|e| format!("error creating TLS config: {e}"))?,
    };
    let name = tls_config
        .server_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(host);
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("`{name}` is not a TLS server name: {e}"))?;
    Ok((cfg, name))
}

/// Connects to `addr`, does the TLS handshake when `tls` is given and the upgrade handshake,
/// each bounded by the probe's deadline and timed into `facts`.
async fn open(
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    request: Request,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<Ws, Fail> {
    let start = Instant::now();
    let context = || format!("cannot connect to {addr}");
    let connecting = net::connect(addr, SocketOptions::default(), context);
    let stream = match tokio::time::timeout_at(ctx.deadline, connecting).await {
        Err(_) => {
            return Err(Fail::new(
                Reason::ConnectTimeout,
                format!("connecting to {addr} timed out"),
            ))
        }
        Ok(r) => r?,
    };
    facts.connect = Some(start.elapsed());
    plog!(log, Debug, "connected to {addr}");
    let _ = stream.set_nodelay(true);
    let io: Box<dyn Io> = match tls {
        Some((cfg, name)) => {
            let start = Instant::now();
            let handshake = tokio_rustls::TlsConnector::from(cfg).connect(name, stream);
            let t = match tokio::time::timeout_at(ctx.deadline, handshake).await {
                Err(_) => return Err(Fail::new(Reason::Timeout, "the TLS handshake timed out")),
                Ok(Err(e)) => {
                    return Err(Fail::new(
                        Reason::Tls,
                        format!("TLS handshake failed: {}", chain(&e)),
                    ))
                }
                Ok(Ok(t)) => t,
            };
            facts.tls = start.elapsed();
            plog!(log, Debug, "TLS handshake done");
            Box::new(t)
        }
        None => Box::new(stream),
    };
    let start = Instant::now();
    let upgrade = tokio_tungstenite::client_async(request, io);
    let result = tokio::time::timeout_at(ctx.deadline, upgrade).await;
    facts.handshake = start.elapsed();
    match result {
        Err(_) => Err(Fail::new(
            Reason::Timeout,
            "the upgrade handshake timed out",
        )),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            facts.status = Some(resp.status().as_u16());
            Err(Fail::new(
                Reason::Protocol,
                format!(
                    "the server answered the upgrade with {} instead of 101",
                    resp.status()
                ),
            ))
        }
        Ok(Err(e)) => Err(ws_fail("upgrade handshake failed", &e)),
        Ok(Ok((ws, resp))) => {
            facts.status = Some(resp.status().as_u16());
            Ok(ws)
        }
    }
}

/// Runs the `query_response` steps: for a step with `expect`, read one message and match it;
/// then send `send` (expanded from the match) as a text message.
async fn dialogue(
    module: &WebsocketModule,
    compiled: &Compiled,
    mut ws: Ws,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    for (i, (qr, expect)) in module
        .query_response
        .iter()
        .zip(&compiled.expects)
        .enumerate()
    {
        let mut send = qr.send.clone().map(|p| p.0).unwrap_or_default();
        if let Some(re) = expect {
            let message = read_message(&mut ws).await?;
            facts.bytes += message.len() as u64;
            let Some(caps) = re.captures(&message) else {
                return Err(Fail::new(
                    Reason::ExpectMismatch,
                    format!(
                        "query_response[{i}]: regexp `{}` did not match message `{}`",
                        re.as_str(),
                        excerpt(&message)
                    ),
                ));
            };
            plog!(
                log,
                Debug,
                "regexp `{}` matched message `{}`",
                re.as_str(),
                excerpt(&message)
            );
            let mut expanded = Vec::new();
            caps.expand(&send, &mut expanded);
            send = expanded;
        }
        if !send.is_empty() {
            let text = String::from_utf8_lossy(&send).into_owned();
            plog!(log, Debug, "sending message `{text}`");
            ws.send(Message::text(text))
                .await
                .map_err(|e| ws_fail("error sending message", &e))?;
        }
    }
    Ok(())
}

/// The next data message's payload (control frames skipped).
async fn read_message(ws: &mut Ws) -> Result<Vec<u8>, Fail> {
    loop {
        match ws.next().await {
            None => {
                return Err(Fail::new(
                    Reason::Reset,
                    "the connection closed before a message arrived",
                ))
            }
            Some(Err(e)) => return Err(ws_fail("error reading message", &e)),
            Some(Ok(Message::Text(t))) => return Ok(t.as_bytes().to_vec()),
            Some(Ok(Message::Binary(b))) => return Ok(b.to_vec()),
            Some(Ok(Message::Close(c))) => {
                let why = c
                    .map(|c| format!(" ({} {})", c.code, c.reason))
                    .unwrap_or_default();
                return Err(Fail::new(
                    Reason::Reset,
                    format!("the server closed the websocket{why}"),
                ));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        }
    }
}

/// A message as shown in the log and a failure's detail: its first 200 characters.
fn excerpt(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// A failure from a websocket error met while doing `context`, by the error's kind.
fn ws_fail(context: &str, e: &tungstenite::Error) -> Fail {
    use tungstenite::error::ProtocolError;
    use tungstenite::Error as E;
    let reason = match e {
        E::Io(_) => return fail_from(Reason::Reset, context, e),
        E::ConnectionClosed | E::AlreadyClosed => Reason::Reset,
        E::Protocol(
            ProtocolError::HandshakeIncomplete | ProtocolError::ResetWithoutClosingHandshake,
        ) => Reason::Reset,
        E::Tls(_) => Reason::Tls,
        E::Url(_) | E::HttpFormat(_) => Reason::Setup,
        _ => Reason::Protocol,
    };
    Fail::new(reason, format!("{context}: {}", chain(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_ws_urls_with_a_host() {
        let t = parse_target("wss://[::1]/chat").expect("valid");
        assert_eq!((t.host.as_str(), t.port, t.tls), ("::1", 443, true));
        let t = parse_target("ws://example.com:8080").expect("valid");
        assert_eq!(
            (t.host.as_str(), t.port, t.tls),
            ("example.com", 8080, false)
        );
        assert!(parse_target("http://example.com").is_err());
        assert!(parse_target("example.com:80").is_err());
    }
}
