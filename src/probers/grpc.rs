//! The `grpc` prober: one `grpc.health.v1.Health/Check` call (tonic-health), plain or TLS.
//!
//! [`probe`] fills in [`Facts`] as it goes; the blackbox families are rendered from them
//! ([`View`]). blackbox's own phases of `probe_grpc_duration_seconds` and the [`Phases`] they
//! feed:
//!
//! - `resolve` — the target's name lookup ([`Phases::resolve`]);
//! - `check` — everything after it: [`Phases::connect`] is the TCP connect,
//!   [`Phases::tls`] the TLS handshake, [`Phases::processing`] from the connection being ready
//!   to the health answer (the HTTP/2 handshake and the request included). The answer is one
//!   small message that tonic hands over whole, so [`Phases::transfer`] is zero.
//!
//! Failures: the name does not resolve `dns`; a closed port `refused`; the connect outlives
//! the deadline `connect_timeout`, another connect error `connect`; the TLS handshake fails
//! `tls`; the deadline passes after the connect `timeout`; the connection closes or resets
//! before an answer `reset`; the peer does not speak gRPC (no HTTP/2, no health service:
//! `UNIMPLEMENTED`) `protocol`; the health service answers `NOT_SERVING`, `SERVICE_UNKNOWN` or
//! `UNKNOWN`, or does not know the service (`NOT_FOUND`) `not_serving`; another gRPC status
//! from the server `status`; a target that cannot be parsed, a TLS configuration or metadata
//! that cannot be used `setup`.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tonic::codegen::Service;
use tonic::metadata::{Ascii, AsciiMetadataValue, MetadataKey};
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::tcp::{ser_ip_protocol, split_host_port, TlsFacts};
use super::{lookup, Ctx, IpProtocol, Log, Output, Resolved, TlsConfig, View};
use crate::diag::FieldError;
use crate::net::{self, chain, classify, SocketOptions};
use crate::probe::{Fail, Phases, Reason};

/// A metadata value: one string or a list (gRPC metadata keys may repeat).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum MetadataValue {
    /// `key: value`
    One(String),
    /// `key: [v1, v2]`
    Many(Vec<String>),
}

impl MetadataValue {
    /// The values, in order.
    pub fn values(&self) -> &[String] {
        match self {
            MetadataValue::One(v) => std::slice::from_ref(v),
            MetadataValue::Many(v) => v,
        }
    }
}

/// blackbox's `grpc:` module options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcModule {
    /// The service name sent in the health check (empty: the server as a whole).
    pub service: String,
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// Connect with TLS.
    pub tls: bool,
    /// TLS settings.
    pub tls_config: TlsConfig,
    /// Request metadata (headers) sent with the check. Not in 0.23, which rejects the field.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, MetadataValue>,
    /// The metadata, compiled by [`GrpcModule::compile`]; not an option itself.
    #[serde(skip)]
    compiled: Loaded,
}

impl Default for GrpcModule {
    fn default() -> Self {
        GrpcModule {
            service: String::new(),
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            tls: false,
            tls_config: TlsConfig::default(),
            metadata: BTreeMap::new(),
            compiled: Loaded::default(),
        }
    }
}

/// The metadata sent with every check, parsed once.
type Metadata = Vec<(MetadataKey<Ascii>, AsciiMetadataValue)>;

type Loaded = super::Loaded<Metadata>;

impl GrpcModule {
    /// Checks what serde cannot: metadata keys and values must be valid gRPC metadata.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.build().map(|_| ())
    }

    /// Validates (as [`GrpcModule::validate`]) and keeps the parsed metadata, so that a probe
    /// parses nothing. A module probed without it is compiled for that probe.
    pub fn compile(&mut self) -> Result<(), FieldError> {
        self.compiled = super::Loaded(Some(Arc::new(self.build()?)));
        Ok(())
    }

    fn build(&self) -> Result<Metadata, FieldError> {
        let mut out = Metadata::new();
        for (k, v) in &self.metadata {
            if k.ends_with("-bin") {
                return Err(FieldError::new(
                    "grpc.metadata",
                    format!("binary metadata key `{k}` is not supported"),
                ));
            }
            let key = MetadataKey::<Ascii>::from_bytes(k.as_bytes()).map_err(|_| {
                FieldError::new(
                    "grpc.metadata",
                    format!("`{k}` is not a valid metadata key"),
                )
            })?;
            for val in v.values() {
                let val = val.parse::<AsciiMetadataValue>().map_err(|_| {
                    FieldError::new(
                        format!("grpc.metadata.{k}"),
                        format!("`{val}` is not a valid metadata value"),
                    )
                })?;
                out.push((key.clone(), val));
            }
        }
        Ok(out)
    }
}

const DURATION: &str = "probe_grpc_duration_seconds";
const DURATION_HELP: &str = "Duration of gRPC request by phase";
const SSL: &str = "probe_grpc_ssl";
const SSL_HELP: &str = "Indicates if SSL was used for the connection";
const STATUS: &str = "probe_grpc_status_code";
const STATUS_HELP: &str = "Response gRPC status code";
const HEALTH: &str = "probe_grpc_healthcheck_response";
const HEALTH_HELP: &str = "Response HealthCheck response";
/// `grpc.health.v1.HealthCheckResponse.ServingStatus` names.
const SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// What one gRPC health probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The target's name lookup.
    pub resolved: Resolved,
    /// Resolution started (`probe_ip_protocol` and `probe_ip_addr_hash` are then reported, as
    /// 0 until an address is found).
    pub resolving: bool,
    /// How long the check took (connect, TLS, the call), once it ended or the deadline cut it
    /// short.
    pub check: Option<Duration>,
    /// The gRPC status code as grpc-go reports it (`UNAVAILABLE` for a connection that could
    /// not be made or that does not speak HTTP/2); `None` before the check ended.
    pub code: Option<Code>,
    /// The serving status, when the health service answered.
    pub serving: Option<ServingStatus>,
    /// The TLS connection's facts, when TLS was used.
    pub(crate) tls: Option<TlsFacts>,
    /// The server's chain is verified (not `insecure_skip_verify`).
    pub verified: bool,
    /// The parts of the check.
    pub timing: Timing,
}

/// The parts of a check, each zero until reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// The TCP connect.
    pub connect: Duration,
    /// The TCP connection is up.
    pub connected: bool,
    /// The TLS handshake.
    pub tls: Duration,
    /// From the connection being ready to the health answer.
    pub call: Duration,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        let resolve = match self.resolved.ip {
            Some(_) => self.resolved.lookup.unwrap_or_default(),
            None => Duration::ZERO,
        };
        out.gauge_with(
            DURATION,
            DURATION_HELP,
            &[("phase", "resolve")],
            resolve.as_secs_f64(),
        );
        // Registered up front by blackbox, so present (as 0) without TLS too.
        out.gauge(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            0.0,
        );
        let tls = self.tls.as_ref().filter(|_| self.serving.is_some());
        out.gauge(SSL, SSL_HELP, if tls.is_some() { 1.0 } else { 0.0 });
        if let Some(tls) = tls {
            tls.report(out, self.verified, false);
        }
        let code = self.code.map_or(0, |c| c as i32);
        out.gauge(STATUS, STATUS_HELP, f64::from(code));
        if self.resolved.lookup.is_some() {
            self.resolved.render(out);
        } else if self.resolving {
            self.resolved.render_address(out);
        }
        let Some(check) = self.check else { return };
        out.gauge_with(
            DURATION,
            DURATION_HELP,
            &[("phase", "check")],
            check.as_secs_f64(),
        );
        let serving = self.serving.map(|s| s.as_str_name());
        for name in SERVING_STATUSES {
            let v = if serving == Some(name) { 1.0 } else { 0.0 };
            out.gauge_with(HEALTH, HEALTH_HELP, &[("serving_status", name)], v);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.resolved.lookup.unwrap_or_default(),
            connect: self.timing.connect,
            tls: self.timing.tls,
            processing: self.timing.call,
            transfer: Duration::ZERO,
        }
    }
}

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Runs one gRPC health probe, filling in `facts` as it goes.
pub async fn probe(
    module: &GrpcModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    facts.verified = !module.tls_config.insecure_skip_verify;
    let built;
    let metadata = match &module.compiled.0 {
        Some(m) => m.as_ref(),
        None => {
            built = module.build().map_err(|e| {
                plog!(log, Error, "{e}");
                Fail::new(Reason::Setup, e.to_string())
            })?;
            &built
        }
    };
    let (host, port) = parse_target(&ctx.target).map_err(|e| {
        plog!(log, Error, "could not parse target URL: {e}");
        Fail::new(Reason::Setup, format!("could not parse target URL: {e}"))
    })?;
    facts.resolving = true;
    let port = match port {
        Some(p) => p,
        None if module.tls => 443,
        None => 80,
    };
    let ip = lookup(
        &host,
        Some(port),
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        &mut facts.resolved,
        log,
    )
    .await?;
    let check_start = Instant::now();
    // Upstream bounds the check by the probe's deadline (0.23 called it with
    // `context.Background()` and could outlive the scrape): follow upstream, the deadline gives
    // DEADLINE_EXCEEDED. Unlike both, the resolved address is dialed (blackbox resolves, then
    // lets grpc-go resolve the name again), so `probe_ip_addr_hash` names the address probed.
    let call = check(
        module,
        metadata,
        &host,
        SocketAddr::new(ip, port),
        facts,
        log,
    );
    let result = match tokio::time::timeout_at(ctx.deadline, call).await {
        Ok(r) => r,
        Err(_) => {
            plog!(log, Error, "timeout: the probe's deadline passed");
            let reason = if facts.timing.connected {
                Reason::Timeout
            } else {
                Reason::ConnectTimeout
            };
            Err((
                Code::DeadlineExceeded,
                Fail::new(reason, "timeout: the probe's deadline passed"),
            ))
        }
    };
    facts.check = Some(check_start.elapsed());
    let (code, result) = match result {
        Ok(serving) => {
            facts.serving = Some(serving);
            (Code::Ok, verdict(serving))
        }
        Err((code, fail)) => (code, Err(fail)),
    };
    facts.code = Some(code);
    match &result {
        Ok(()) => plog!(log, Debug, "the server is SERVING"),
        Err(_) => plog!(
            log,
            Error,
            "health check failed: code {:?}, serving status {}",
            code,
            facts.serving.map_or("none", |s| s.as_str_name())
        ),
    }
    result
}

/// The verdict on a serving status the health service answered.
fn verdict(serving: ServingStatus) -> Result<(), Fail> {
    match serving {
        ServingStatus::Serving => Ok(()),
        other => Err(Fail::new(
            Reason::NotServing,
            format!("the health service answered {}", other.as_str_name()),
        )),
    }
}

/// A check that ended without an answer: the gRPC code grpc-go reports, and why.
type Failed = (Code, Fail);

/// Connects (TCP, then TLS when configured) and calls `Health/Check`. A connection that cannot
/// be made, or that does not speak HTTP/2, is `UNAVAILABLE`, as grpc-go reports it.
async fn check(
    module: &GrpcModule,
    metadata: &Metadata,
    host: &str,
    addr: SocketAddr,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<ServingStatus, Failed> {
    let mut unavailable = |f: Fail| {
        plog!(log, Error, "{}", f.detail);
        (Code::Unavailable, f)
    };
    let start = Instant::now();
    let opts = SocketOptions {
        nodelay: true,
        ..SocketOptions::default()
    };
    let stream = net::connect(addr, opts, || format!("cannot connect to {addr}"))
        .await
        .map_err(&mut unavailable)?;
    facts.timing.connect = start.elapsed();
    facts.timing.connected = true;
    let io: Box<dyn Io> = if module.tls {
        let start = Instant::now();
        let cfg = module.tls_config.client_config(&[b"h2"]).map_err(|e| {
            unavailable(Fail::new(Reason::Setup, format!("TLS configuration: {e}")))
        })?;
        let name = net::tls::server_name(module.tls_config.server_name.as_deref(), host)
            .map_err(|e| unavailable(Fail::new(Reason::Setup, e)))?;
        let t = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await
            .map_err(|e| {
                unavailable(Fail::new(
                    Reason::Tls,
                    format!("TLS handshake failed: {}", chain(&e)),
                ))
            })?;
        facts.timing.tls = start.elapsed();
        facts.tls = Some(TlsFacts::of(t.get_ref().1));
        Box::new(t)
    } else {
        Box::new(stream)
    };
    let start = Instant::now();
    let authority = match addr.port() {
        p if host.contains(':') => format!("[{host}]:{p}"),
        p => format!("{host}:{p}"),
    };
    let endpoint = Endpoint::from_shared(format!("http://{authority}")).map_err(|e| {
        unavailable(Fail::new(
            Reason::Setup,
            format!("invalid authority `{authority}`: {e}"),
        ))
    })?;
    let channel = endpoint
        .connect_with_connector(OneConnection(Arc::new(Mutex::new(Some(io)))))
        .await
        .map_err(|e| {
            unavailable(Fail::new(
                classify(&e).unwrap_or(Reason::Protocol),
                format!("cannot establish HTTP/2: {}", chain(&e)),
            ))
        })?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: module.service.clone(),
    });
    for (key, val) in metadata {
        request.metadata_mut().append(key.clone(), val.clone());
    }
    plog!(
        log,
        Debug,
        "calling grpc.health.v1.Health/Check for service `{}`",
        module.service
    );
    let answer = HealthClient::new(channel).check(request).await;
    facts.timing.call = start.elapsed();
    match answer {
        Ok(resp) => {
            Ok(ServingStatus::try_from(resp.get_ref().status).unwrap_or(ServingStatus::Unknown))
        }
        Err(status) => {
            plog!(log, Error, "Check failed: {status}");
            Err(failed_call(&status))
        }
    }
}

/// The code and reason of a failed call. A status made on this side from a broken connection
/// (no grpc-status from the server) is `UNAVAILABLE` for grpc-go, its reason what broke.
fn failed_call(status: &tonic::Status) -> Failed {
    let detail = format!("Check failed: {}", chain(status));
    if status.source().is_some() && status.code() != Code::DeadlineExceeded {
        let reason = classify(status).unwrap_or(Reason::Protocol);
        return (Code::Unavailable, Fail::new(reason, detail));
    }
    let reason = match status.code() {
        Code::Unimplemented => Reason::Protocol,
        Code::NotFound => Reason::NotServing,
        Code::DeadlineExceeded => Reason::Timeout,
        _ => Reason::Status,
    };
    (status.code(), Fail::new(reason, detail))
}

/// Hands tonic the connection made beforehand, once.
#[derive(Clone)]
struct OneConnection(Arc<Mutex<Option<Box<dyn Io>>>>);

impl Service<http::Uri> for OneConnection {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let io = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        std::future::ready(
            io.map(TokioIo::new)
                .ok_or_else(|| std::io::Error::other("the probe's connection is gone")),
        )
    }
}

/// Host and port of a grpc target, as blackbox reads it: `http://` is added when there is no
/// scheme, the authority is split at its port (none: `None`).
fn parse_target(target: &str) -> Result<(String, Option<u16>), String> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    if rest.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("invalid character in `{target}`"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.is_empty() {
        return Err(format!("no host in `{target}`"));
    }
    match split_host_port(authority) {
        Ok((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("invalid port `{port}` in `{target}`"))?;
            Ok((host, Some(port)))
        }
        Err(_) => Ok((authority.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_like_blackbox() {
        assert_eq!(
            parse_target("127.0.0.1:9090").unwrap(),
            ("127.0.0.1".into(), Some(9090))
        );
        assert_eq!(
            parse_target("https://[::1]:443/x").unwrap(),
            ("::1".into(), Some(443))
        );
        assert_eq!(parse_target("http://host").unwrap(), ("host".into(), None));
        assert_eq!(
            parse_target("http://u:p@host:1?q").unwrap(),
            ("host".into(), Some(1))
        );
        for bad in ["", "http://", "a b:1", "h:99999", "h:x", "ctl\u{1}:1"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_target_never_panics(s in "\\PC{0,40}") {
            let _ = parse_target(&s);
        }
    }

    #[test]
    fn metadata_accepts_one_value_or_a_list() {
        let m: GrpcModule =
            serde_json::from_str(r#"{"metadata": {"a": "b", "c": ["d", "e"]}}"#).expect("parses");
        assert_eq!(m.metadata["a"].values(), ["b"]);
        assert_eq!(m.metadata["c"].values(), ["d", "e"]);
        assert!(m.validate().is_ok());
    }
}
