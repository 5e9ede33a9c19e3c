//! The `tcp` prober: connect (optionally over TLS), then the `query_response` dialogue — read
//! lines until `expect` matches, `send` a line (with `${1}` from that match), `starttls`.
//!
//! Also home of what the tcp, grpc and dns probers share: the TLS metrics
//! (`TlsFacts`), `host:port` splitting, and the address metrics blackbox registers before
//! resolving (`resolve_target`).

use std::net::{IpAddr, SocketAddr};

use regex::bytes::{Captures, Regex};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::{Ctx, IpProtocol, Output, TlsConfig};

/// One `query_response` step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryResponse {
    /// Regexp a received line must match; lines are read until one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Line to send (a newline is added); `${1}`, `${name}` expand from the `expect` match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Upgrade the connection to TLS after this step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub starttls: bool,
    /// Labels of `probe_expect_info`, their values expanded from the `expect` match
    /// (upstream 0.25+; 0.23 rejects the field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<ExpectLabel>,
}

/// A `probe_expect_info` label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExpectLabel {
    /// Label name.
    pub name: String,
    /// Label value; `${1}` etc. expand from the `expect` match.
    pub value: String,
}

/// blackbox's `tcp:` module options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpModule {
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// Local address to connect from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<String>,
    /// The dialogue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_response: Vec<QueryResponse>,
    /// Connect with TLS.
    pub tls: bool,
    /// TLS settings (for `tls` and `starttls`).
    pub tls_config: TlsConfig,
}

impl Default for TcpModule {
    fn default() -> Self {
        TcpModule {
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            source_ip_address: None,
            query_response: Vec::new(),
            tls: false,
            tls_config: TlsConfig::default(),
        }
    }
}

/// Serializes an [`IpProtocol`] as blackbox writes it (`ip4` / `ip6`).
pub(crate) fn ser_ip_protocol<S: serde::Serializer>(
    p: &IpProtocol,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(match p {
        IpProtocol::Ip4 => "ip4",
        IpProtocol::Ip6 => "ip6",
    })
}

/// Checks a `source_ip_address` option.
pub(crate) fn validate_source_ip(prober: &str, src: Option<&str>) -> Result<(), String> {
    match src {
        Some(s) if s.parse::<IpAddr>().is_err() => Err(format!(
            "{prober}.source_ip_address: `{s}` is not an IP address"
        )),
        _ => Ok(()),
    }
}

/// Whether `name` is a valid Prometheus label name.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

impl TcpModule {
    /// Checks what serde cannot: regexps, label names and the source address.
    pub fn validate(&self) -> Result<(), String> {
        validate_source_ip("tcp", self.source_ip_address.as_deref())?;
        for (i, qr) in self.query_response.iter().enumerate() {
            if let Some(re) = &qr.expect {
                Regex::new(re).map_err(|e| {
                    format!("tcp.query_response[{i}].expect: invalid regexp `{re}`: {e}")
                })?;
            }
            if !qr.labels.is_empty() && qr.expect.is_none() {
                return Err(format!(
                    "tcp.query_response[{i}].labels: needs an `expect` to take values from"
                ));
            }
            for l in &qr.labels {
                if !is_label_name(&l.name) {
                    return Err(format!(
                        "tcp.query_response[{i}].labels: `{}` is not a valid label name",
                        l.name
                    ));
                }
            }
        }
        Ok(())
    }
}

const FAILED_DUE_TO_REGEX: &str = "probe_failed_due_to_regex";
const FAILED_DUE_TO_REGEX_HELP: &str = "Indicates if probe failed due to regex";
/// Longest line read (Go's `bufio.Scanner` default token limit).
const MAX_LINE: usize = 64 * 1024;

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Runs one TCP probe.
pub async fn probe(module: &TcpModule, ctx: &Ctx, out: &mut Output) -> bool {
    out.gauge(FAILED_DUE_TO_REGEX, FAILED_DUE_TO_REGEX_HELP, 0.0);
    let (host, port) = match split_host_port(&ctx.target) {
        Ok(hp) => hp,
        Err(e) => {
            out.log(format!("error splitting target address and port: {e}"));
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
    let Ok(port) = port.parse::<u16>() else {
        out.log(format!("invalid port `{port}`"));
        return false;
    };
    let addr = SocketAddr::new(ip, port);
    match tokio::time::timeout_at(ctx.deadline, run(module, &host, addr, out)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            out.log(e);
            false
        }
        Err(_) => {
            out.log("timeout: the probe's deadline passed");
            false
        }
    }
}

/// Connects and runs the dialogue; `Err` carries the log line.
async fn run(
    module: &TcpModule,
    host: &str,
    addr: SocketAddr,
    out: &mut Output,
) -> Result<(), String> {
    let stream = connect(addr, module.source_ip_address.as_deref(), out).await?;
    out.log("successfully dialed");
    let mut conn: Box<dyn Io> = if module.tls {
        out.log("starting TLS handshake");
        Box::new(tls_handshake(stream, &module.tls_config, host, out).await?)
    } else {
        Box::new(stream)
    };
    let mut reader = BufReader::new(conn);
    for (i, qr) in module.query_response.iter().enumerate() {
        out.log(format!("processing query response entry {i}"));
        let mut send = qr.send.clone().map(String::into_bytes);
        if let Some(expect) = &qr.expect {
            let re = Regex::new(expect).map_err(|e| format!("invalid regexp `{expect}`: {e}"))?;
            let mut line = Vec::new();
            let caps = loop {
                line.clear();
                match read_line(&mut reader, &mut line).await {
                    Err(e) => return Err(format!("error reading from connection: {e}")),
                    Ok(false) => {
                        out.gauge(FAILED_DUE_TO_REGEX, FAILED_DUE_TO_REGEX_HELP, 1.0);
                        return Err(format!("regexp `{expect}` did not match any line"));
                    }
                    Ok(true) => {}
                }
                out.log(format!("read line: {}", String::from_utf8_lossy(&line)));
                if let Some(c) = re.captures(&line) {
                    break c;
                }
            };
            out.log(format!("regexp `{expect}` matched"));
            out.gauge(FAILED_DUE_TO_REGEX, FAILED_DUE_TO_REGEX_HELP, 0.0);
            if let Some(s) = &send {
                send = Some(expand(&caps, s));
            }
            if !qr.labels.is_empty() {
                report_expect_info(&qr.labels, &caps, out);
            }
        }
        if let Some(s) = send.filter(|s| !s.is_empty()) {
            out.log(format!("sending line: {}", String::from_utf8_lossy(&s)));
            let w = reader.get_mut();
            let mut msg = s;
            msg.push(b'\n');
            w.write_all(&msg)
                .await
                .map_err(|e| format!("failed to send: {e}"))?;
            w.flush()
                .await
                .map_err(|e| format!("failed to send: {e}"))?;
        }
        if qr.starttls {
            // Like blackbox, anything read ahead of the upgrade is dropped.
            conn = reader.into_inner();
            out.log("starting TLS (STARTTLS)");
            let tls = tls_handshake(conn, &module.tls_config, host, out).await?;
            let tls: Box<dyn Io> = Box::new(tls);
            reader = BufReader::new(tls);
        }
    }
    Ok(())
}

/// Expands `$1`, `${1}`, `$name`, `${name}` and `$$` (Go's `Regexp.Expand` rules).
fn expand(caps: &Captures<'_>, template: &[u8]) -> Vec<u8> {
    let mut dst = Vec::new();
    caps.expand(template, &mut dst);
    dst
}

fn report_expect_info(labels: &[ExpectLabel], caps: &Captures<'_>, out: &mut Output) {
    let values: Vec<String> = labels
        .iter()
        .map(|l| String::from_utf8_lossy(&expand(caps, l.value.as_bytes())).into_owned())
        .collect();
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .zip(&values)
        .map(|(l, v)| (l.name.as_str(), v.as_str()))
        .collect();
    out.gauge_with("probe_expect_info", "Explicit content matched", &pairs, 1.0);
}

/// Reads one line like Go's `bufio.Scanner` (`\n`-terminated, a trailing `\r` dropped, the last
/// line may lack its newline). `Ok(false)` at end of stream; an error past [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(!line.is_empty());
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > MAX_LINE {
            return Err(std::io::Error::other("token too long"));
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

async fn connect(
    addr: SocketAddr,
    source: Option<&str>,
    out: &mut Output,
) -> Result<TcpStream, String> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("cannot create socket: {e}"))?;
    if let Some(src) = source {
        let ip: IpAddr = src
            .parse()
            .map_err(|_| format!("error parsing source ip address: {src}"))?;
        out.log(format!("using local address {ip}"));
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("cannot bind to {ip}: {e}"))?;
    }
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("error dialing TCP {addr}: {e}"))
}

/// A TLS client handshake over `io` (server name: `tls_config.server_name`, else `host`),
/// reporting the TLS metrics.
async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    tls_config: &TlsConfig,
    host: &str,
    out: &mut Output,
) -> Result<tokio_rustls::client::TlsStream<S>, String> {
    let cfg = tls_config.client_config(&[])?;
    let name = server_name(tls_config, host)?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, io)
        .await
        .map_err(|e| format!("TLS handshake (client) failed: {e}"))?;
    out.log("TLS handshake (client) succeeded");
    TlsFacts::of(tls.get_ref().1).report(out, !tls_config.insecure_skip_verify, true);
    Ok(tls)
}

/// The TLS server name: `tls_config.server_name`, else the target's host.
pub(crate) fn server_name(
    tls_config: &TlsConfig,
    host: &str,
) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let name = tls_config
        .server_name
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("`{name}` is not a TLS server name: {e}"))
}

/// Splits `host:port` like Go's `net.SplitHostPort` (`[v6]:port` for IPv6 literals).
pub(crate) fn split_host_port(target: &str) -> Result<(String, String), String> {
    if let Some(rest) = target.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("address {target}: missing ']' in address"));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(format!("address {target}: missing port in address"));
        };
        if port.contains(':') {
            return Err(format!("address {target}: too many colons in address"));
        }
        return Ok((host.to_string(), port.to_string()));
    }
    match target.rsplit_once(':') {
        None => Err(format!("address {target}: missing port in address")),
        Some((host, _)) if host.contains(':') => {
            Err(format!("address {target}: too many colons in address"))
        }
        Some((host, port)) => Ok((host.to_string(), port.to_string())),
    }
}

/// Resolves like blackbox's `chooseProtocol`: `probe_ip_protocol` and `probe_ip_addr_hash` are
/// registered (as 0) before resolving, so they are reported even when resolution fails.
pub(crate) async fn resolve_target(
    host: &str,
    preferred: IpProtocol,
    fallback: bool,
    ctx: &Ctx,
    out: &mut Output,
) -> Option<IpAddr> {
    out.gauge(
        "probe_ip_protocol",
        "Specifies whether probe ip protocol is IP4 or IP6",
        0.0,
    );
    out.gauge(
        "probe_ip_addr_hash",
        "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
        0.0,
    );
    match super::resolve(host, preferred, fallback, ctx, out).await {
        Ok(ip) => Some(ip),
        Err(e) => {
            out.log(format!("error resolving address: {e}"));
            None
        }
    }
}

// ---- TLS metrics, shared by the tcp, grpc and dns probers ----

/// Go's zero `time.Time` as a Unix timestamp: what blackbox reports as the last chain expiry
/// when nothing was verified (`insecure_skip_verify`).
const GO_ZERO_TIME_UNIX: f64 = -62_135_596_800.0;

/// What the TLS metrics are computed from, taken from a connection right after its handshake.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFacts {
    /// The server's chain as presented, leaf first.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The negotiated version.
    pub version: Option<rustls::ProtocolVersion>,
}

impl TlsFacts {
    pub(crate) fn of(conn: &rustls::ClientConnection) -> TlsFacts {
        TlsFacts {
            certs: conn
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default(),
            version: conn.protocol_version(),
        }
    }

    /// Reports `probe_ssl_earliest_cert_expiry`, `probe_ssl_last_chain_info`,
    /// `probe_tls_version_info` and, when `last_chain_expiry` (the tcp and http probers; not
    /// grpc), `probe_ssl_last_chain_expiry_timestamp_seconds`. `verified`: the chain was
    /// verified (otherwise blackbox has no verified chain and reports Go's zero time for it).
    pub(crate) fn report(&self, out: &mut Output, verified: bool, last_chain_expiry: bool) {
        let parsed: Vec<_> = self
            .certs
            .iter()
            .filter_map(|c| {
                x509_parser::parse_x509_certificate(c.as_ref())
                    .ok()
                    .map(|(_, p)| p)
            })
            .collect();
        let earliest = parsed
            .iter()
            .map(|c| c.validity().not_after.timestamp())
            .min();
        out.gauge(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            earliest.map(|t| t as f64).unwrap_or(GO_ZERO_TIME_UNIX),
        );
        if last_chain_expiry {
            out.gauge(
                "probe_ssl_last_chain_expiry_timestamp_seconds",
                "Returns last SSL chain expiry in timestamp",
                match (verified, earliest) {
                    (true, Some(t)) => t as f64,
                    _ => GO_ZERO_TIME_UNIX,
                },
            );
        }
        if let (Some(leaf_der), Some(leaf)) = (self.certs.first(), parsed.first()) {
            use sha2::Digest as _;
            let fingerprint = hex(&sha2::Sha256::digest(leaf_der.as_ref()));
            let subject = super::tls_info::go_name(leaf.subject());
            let issuer = super::tls_info::go_name(leaf.issuer());
            let sans = leaf
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|ext| {
                    ext.value
                        .general_names
                        .iter()
                        .filter_map(|g| match g {
                            x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            out.gauge_with(
                "probe_ssl_last_chain_info",
                "Contains SSL leaf certificate information",
                &[
                    ("fingerprint_sha256", &fingerprint),
                    ("subject", &subject),
                    ("issuer", &issuer),
                    ("subjectalternative", &sans),
                ],
                1.0,
            );
        }
        let version = super::tls_info::tls_version_name(self.version);
        out.gauge_with(
            "probe_tls_version_info",
            "Returns the TLS version used or NaN when unknown",
            &[("version", version)],
            1.0,
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_host_port_follows_go() {
        assert_eq!(
            split_host_port("a:1").unwrap(),
            ("a".to_string(), "1".to_string())
        );
        assert_eq!(
            split_host_port("[::1]:53").unwrap(),
            ("::1".to_string(), "53".to_string())
        );
        assert!(split_host_port("a").is_err());
        assert!(split_host_port("::1:53").is_err());
        assert!(split_host_port("[::1]").is_err());
        assert!(split_host_port("").is_err());
    }

    #[tokio::test]
    async fn read_line_splits_like_a_go_scanner() {
        let data: &[u8] = b"one\r\ntwo\n\nthree\r";
        let mut r = BufReader::new(data);
        let mut l = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut r, &mut l).await.unwrap() {
            lines.push(String::from_utf8(l.clone()).unwrap());
            l.clear();
        }
        assert_eq!(lines, ["one", "two", "", "three"]);
    }

    #[tokio::test]
    async fn read_line_rejects_overlong_lines() {
        let data = vec![b'x'; MAX_LINE + 10];
        let mut r = BufReader::new(&data[..]);
        let mut l = Vec::new();
        assert!(read_line(&mut r, &mut l).await.is_err());
    }

    #[test]
    fn expand_uses_go_template_rules() {
        let re = Regex::new(r"^220 (?P<host>\S+) (.*)$").unwrap();
        let caps = re.captures(b"220 mx.example ESMTP ready").unwrap();
        assert_eq!(expand(&caps, b"EHLO ${1}"), b"EHLO mx.example");
        assert_eq!(expand(&caps, b"$host/$2/$$"), b"mx.example/ESMTP ready/$");
    }

    proptest::proptest! {
        #[test]
        fn split_host_port_never_panics(s in "\\PC{0,40}") {
            let _ = split_host_port(&s);
        }
    }

    #[test]
    fn validate_names_the_field() {
        let m = TcpModule {
            query_response: vec![QueryResponse {
                expect: Some("(".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = m.validate().unwrap_err();
        assert!(e.starts_with("tcp.query_response[0].expect"), "{e}");
        let m = TcpModule {
            source_ip_address: Some("nope".into()),
            ..Default::default()
        };
        assert!(m.validate().unwrap_err().contains("source_ip_address"));
    }
}
