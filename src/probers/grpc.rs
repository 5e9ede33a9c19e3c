//! The `grpc` prober: one `grpc.health.v1.Health/Check` call (tonic-health), plain or TLS.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::codegen::Service;
use tonic::metadata::{Ascii, AsciiMetadataValue, MetadataKey};
use tonic::transport::Endpoint;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::tcp::{resolve_target, ser_ip_protocol, server_name, split_host_port, TlsFacts};
use super::{Ctx, IpProtocol, Output, TlsConfig};

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
        }
    }
}

impl GrpcModule {
    /// Checks what serde cannot: metadata keys and values must be valid gRPC metadata.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in &self.metadata {
            if k.ends_with("-bin") {
                return Err(format!(
                    "grpc.metadata: binary metadata key `{k}` is not supported"
                ));
            }
            tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(k.as_bytes())
                .map_err(|_| format!("grpc.metadata: `{k}` is not a valid metadata key"))?;
            for val in v.values() {
                tonic::metadata::MetadataValue::try_from(val.as_str()).map_err(|_| {
                    format!("grpc.metadata.{k}: `{val}` is not a valid metadata value")
                })?;
            }
        }
        Ok(())
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

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The outcome of the check.
struct Checked {
    /// The gRPC status code (0 when the server answered).
    code: Code,
    /// The serving status, when the server answered.
    serving: Option<&'static str>,
    /// TLS facts of the connection, when TLS was used and the server answered.
    tls: Option<TlsFacts>,
}

/// Runs one gRPC health probe.
pub async fn probe(module: &GrpcModule, ctx: &Ctx, out: &mut Output) -> bool {
    out.gauge_with(DURATION, DURATION_HELP, &[("phase", "resolve")], 0.0);
    out.gauge(SSL, SSL_HELP, 0.0);
    out.gauge(STATUS, STATUS_HELP, 0.0);
    // Registered up front by blackbox, so present (as 0) without TLS too.
    out.gauge(
        "probe_ssl_earliest_cert_expiry",
        "Returns last SSL chain expiry in unixtime",
        0.0,
    );
    let (host, port) = match parse_target(&ctx.target) {
        Ok(hp) => hp,
        Err(e) => {
            out.log(format!("could not parse target URL: {e}"));
            return false;
        }
    };
    let Some(ip) = resolve_target(
        &host,
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        out,
    )
    .await
    else {
        return false;
    };
    let lookup = out.value("probe_dns_lookup_time_seconds").unwrap_or(0.0);
    out.gauge_with(DURATION, DURATION_HELP, &[("phase", "resolve")], lookup);
    let port = match port {
        Some(p) => p,
        None if module.tls => 443,
        None => 80,
    };
    let check_start = Instant::now();
    // Upstream bounds the check by the probe's deadline (0.23 called it with
    // `context.Background()` and could outlive the scrape): follow upstream, the deadline gives
    // DEADLINE_EXCEEDED. Unlike both, the resolved address is dialed (blackbox resolves, then
    // lets grpc-go resolve the name again), so `probe_ip_addr_hash` names the address probed.
    let checked = match tokio::time::timeout_at(
        ctx.deadline,
        check(module, &host, SocketAddr::new(ip, port), out),
    )
    .await
    {
        Ok(c) => c,
        Err(_) => {
            out.log("timeout: the probe's deadline passed");
            Checked {
                code: Code::DeadlineExceeded,
                serving: None,
                tls: None,
            }
        }
    };
    out.gauge_with(
        DURATION,
        DURATION_HELP,
        &[("phase", "check")],
        check_start.elapsed().as_secs_f64(),
    );
    for name in SERVING_STATUSES {
        out.gauge_with(HEALTH, HEALTH_HELP, &[("serving_status", name)], 0.0);
    }
    if let Some(name) = checked.serving {
        out.gauge_with(HEALTH, HEALTH_HELP, &[("serving_status", name)], 1.0);
    }
    if checked.serving.is_some() {
        if let Some(facts) = &checked.tls {
            out.gauge(SSL, SSL_HELP, 1.0);
            facts.report(out, !module.tls_config.insecure_skip_verify, false);
        }
    }
    out.gauge(STATUS, STATUS_HELP, f64::from(checked.code as i32));
    let ok = checked.code == Code::Ok && checked.serving == Some("SERVING");
    if ok {
        out.log("the server is SERVING");
    } else {
        out.log(format!(
            "health check failed: code {:?}, serving status {}",
            checked.code,
            checked.serving.unwrap_or("none")
        ));
    }
    ok
}

/// Connects (TCP, then TLS when configured) and calls `Health/Check`. A connection that cannot
/// be made, or that does not speak HTTP/2, is `UNAVAILABLE`, as grpc-go reports it.
async fn check(module: &GrpcModule, host: &str, addr: SocketAddr, out: &mut Output) -> Checked {
    let unavailable = |out: &mut Output, e: String| {
        out.log(e);
        Checked {
            code: Code::Unavailable,
            serving: None,
            tls: None,
        }
    };
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return unavailable(out, format!("cannot connect to {addr}: {e}")),
    };
    let _ = stream.set_nodelay(true);
    let (io, tls): (Box<dyn Io>, Option<TlsFacts>) = if module.tls {
        let cfg = match module.tls_config.client_config(&[b"h2"]) {
            Ok(c) => c,
            Err(e) => return unavailable(out, format!("TLS configuration: {e}")),
        };
        let name = match server_name(&module.tls_config, host) {
            Ok(n) => n,
            Err(e) => return unavailable(out, e),
        };
        match tokio_rustls::TlsConnector::from(cfg)
            .connect(name, stream)
            .await
        {
            Ok(t) => {
                let facts = TlsFacts::of(t.get_ref().1);
                (Box::new(t), Some(facts))
            }
            Err(e) => return unavailable(out, format!("TLS handshake failed: {e}")),
        }
    } else {
        (Box::new(stream), None)
    };
    let authority = match addr.port() {
        p if host.contains(':') => format!("[{host}]:{p}"),
        p => format!("{host}:{p}"),
    };
    let endpoint = match Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e,
        Err(e) => return unavailable(out, format!("invalid authority `{authority}`: {e}")),
    };
    let channel = match endpoint
        .connect_with_connector(OneConnection(Arc::new(Mutex::new(Some(io)))))
        .await
    {
        Ok(c) => c,
        Err(e) => return unavailable(out, format!("cannot establish HTTP/2: {}", error_chain(&e))),
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: module.service.clone(),
    });
    for (k, v) in &module.metadata {
        let Ok(key) = MetadataKey::<Ascii>::from_bytes(k.as_bytes()) else {
            return unavailable(out, format!("invalid metadata key `{k}`"));
        };
        for val in v.values() {
            let Ok(val) = val.parse::<AsciiMetadataValue>() else {
                return unavailable(out, format!("invalid metadata value for `{k}`"));
            };
            request.metadata_mut().append(key.clone(), val);
        }
    }
    out.log(format!(
        "calling grpc.health.v1.Health/Check for service `{}`",
        module.service
    ));
    match HealthClient::new(channel).check(request).await {
        Ok(resp) => {
            let status =
                ServingStatus::try_from(resp.get_ref().status).unwrap_or(ServingStatus::Unknown);
            Checked {
                code: Code::Ok,
                serving: Some(status.as_str_name()),
                tls,
            }
        }
        Err(status) => {
            out.log(format!("Check failed: {status}"));
            // A status made on this side from a broken connection (no grpc-status from the
            // server) is UNAVAILABLE for grpc-go.
            let local = status.source().is_some() && status.code() != Code::DeadlineExceeded;
            Checked {
                code: if local {
                    Code::Unavailable
                } else {
                    status.code()
                },
                serving: None,
                tls: None,
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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
