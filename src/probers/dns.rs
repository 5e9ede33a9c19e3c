//! The `dns` prober: one query (udp or tcp, optionally DNS over TLS) built with hickory-proto,
//! then the rcode check and the answer/authority/additional validators.
//!
//! [`probe`] fills in [`Facts`] as it goes; the blackbox families are rendered from them
//! ([`View`]). blackbox's own phases of `probe_dns_duration_seconds` and the [`Phases`] they
//! feed:
//!
//! - `resolve` — the target's name lookup ([`Phases::resolve`]);
//! - `connect` — the exchange outside miekg/dns's rtt: socket setup, the TCP connect and the
//!   TLS handshake of DNS over TLS ([`Phases::connect`] is the socket setup and connect alone,
//!   [`Phases::tls`] the handshake);
//! - `request` — miekg/dns's rtt, from the query's first byte written to the answer read:
//!   [`Phases::processing`] up to the answer's first byte (the first datagram, or the TCP
//!   length prefix), [`Phases::transfer`] from there to the end of the answer.
//!
//! Failures: the name does not resolve `dns`; the server refuses (a closed TCP port, or an ICMP
//! port unreachable for UDP) `refused`; the TCP connect outlives the deadline
//! `connect_timeout`, another connect error `connect`; the DNS over TLS handshake fails `tls`;
//! no answer before the deadline `timeout`; the connection closes or resets before the answer
//! `reset`; the answer is not a DNS message `protocol`; its rcode is not one of `valid_rcodes`
//! `rcode`; a `validate_*_rrs` rule fails `answer_mismatch`; a target whose port is not a
//! number, a query that cannot be built, a source address that cannot be bound `setup`.

mod rr;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::time::Instant;

pub(crate) use self::rr::rr_string;
pub use self::rr::RrValidator;
use self::rr::Rules;
use super::tcp::{ser_ip_protocol, split_host_port, validate_source_ip};
use super::{lookup, Ctx, IpProtocol, Log, Output, Resolved, TlsConfig, View};
use crate::diag::FieldError;
use crate::net::{self, chain, fail_from, SocketOptions};
use crate::probe::{Fail, Phases, Reason};

/// `transport_protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (default).
    #[default]
    Udp,
    /// TCP.
    Tcp,
}

/// blackbox's `dns:` module options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsModule {
    /// The name queried (required).
    pub query_name: String,
    /// Record type (default `ANY`).
    pub query_type: String,
    /// Class (default `IN`).
    pub query_class: String,
    /// `udp` (default) or `tcp`.
    pub transport_protocol: Transport,
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// Local address to send from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<String>,
    /// The RD bit (default true).
    pub recursion_desired: bool,
    /// Accepted rcodes (default `[NOERROR]`).
    pub valid_rcodes: Vec<String>,
    /// Checks on the answer section.
    pub validate_answer_rrs: RrValidator,
    /// Checks on the authority section.
    pub validate_authority_rrs: RrValidator,
    /// Checks on the additional section.
    pub validate_additional_rrs: RrValidator,
    /// DNS over TLS (needs `transport_protocol: tcp`; default port 853).
    pub dns_over_tls: bool,
    /// TLS settings for `dns_over_tls`.
    pub tls_config: TlsConfig,
    /// The options above, compiled by [`DnsModule::compile`]; not an option itself.
    #[serde(skip)]
    compiled: Loaded,
}

impl Default for DnsModule {
    fn default() -> Self {
        DnsModule {
            query_name: String::new(),
            query_type: "ANY".into(),
            query_class: "IN".into(),
            transport_protocol: Transport::Udp,
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            source_ip_address: None,
            recursion_desired: true,
            valid_rcodes: vec!["NOERROR".into()],
            validate_answer_rrs: RrValidator::default(),
            validate_authority_rrs: RrValidator::default(),
            validate_additional_rrs: RrValidator::default(),
            dns_over_tls: false,
            tls_config: TlsConfig::default(),
            compiled: Loaded::default(),
        }
    }
}

/// What a probe uses of the options, parsed and compiled once.
#[derive(Debug)]
struct Compiled {
    qtype: RecordType,
    qclass: DNSClass,
    /// The query name as an FQDN, or why it is not one (a probe-time failure, as in blackbox).
    name: Result<Name, String>,
    valid_rcodes: Vec<u16>,
    source: Option<IpAddr>,
    answer: Rules,
    authority: Rules,
    additional: Rules,
}

type Loaded = super::Loaded<Compiled>;

impl DnsModule {
    /// Checks what serde cannot: the required name, type/class/rcode names, regexps. Each error
    /// starts with the field (`dns.query_type: ...`).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_name()?;
        self.build().map(|_| ())
    }

    /// Validates (as [`DnsModule::validate`]) and keeps the compiled form (types, rcodes,
    /// regexps), so that a probe parses and compiles nothing. A module probed without it is
    /// compiled for that probe.
    pub fn compile(&mut self) -> Result<(), FieldError> {
        self.check_name()?;
        self.compiled = super::Loaded(Some(Arc::new(self.build()?)));
        Ok(())
    }

    fn check_name(&self) -> Result<(), FieldError> {
        if self.query_name.is_empty() {
            return Err(FieldError::new(
                "dns.query_name",
                "query name must be set for DNS module",
            ));
        }
        Ok(())
    }

    fn build(&self) -> Result<Compiled, FieldError> {
        validate_source_ip("dns", self.source_ip_address.as_deref())?;
        let qtype =
            parse_type(&self.query_type).map_err(|e| FieldError::new("dns.query_type", e))?;
        let qclass =
            parse_class(&self.query_class).map_err(|e| FieldError::new("dns.query_class", e))?;
        let mut valid_rcodes = Vec::with_capacity(self.valid_rcodes.len());
        for rc in &self.valid_rcodes {
            match rcode_value(rc) {
                Some(v) => valid_rcodes.push(v),
                None => {
                    return Err(FieldError::new(
                        "dns.valid_rcodes",
                        format!("`{rc}` is not a DNS rcode"),
                    ))
                }
            }
        }
        if self.dns_over_tls && self.transport_protocol != Transport::Tcp {
            return Err(FieldError::new(
                "dns.dns_over_tls",
                "needs transport_protocol: tcp",
            ));
        }
        let source = match &self.source_ip_address {
            Some(s) => Some(s.parse().map_err(|_| {
                FieldError::new(
                    "dns.source_ip_address",
                    format!("`{s}` is not an IP address"),
                )
            })?),
            None => None,
        };
        let name = Name::from_utf8(&self.query_name)
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .map_err(|e| format!("invalid query name `{}`: {e}", self.query_name));
        Ok(Compiled {
            qtype,
            qclass,
            name,
            valid_rcodes,
            source,
            answer: self.validate_answer_rrs.compile("validate_answer_rrs")?,
            authority: self
                .validate_authority_rrs
                .compile("validate_authority_rrs")?,
            additional: self
                .validate_additional_rrs
                .compile("validate_additional_rrs")?,
        })
    }
}

/// rcode names as miekg/dns spells them (`BADVERS` and `BADSIG` share 16).
const RCODES: [(&str, u16); 21] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
    ("BADSIG", 16),
    ("BADVERS", 16),
    ("BADKEY", 17),
    ("BADTIME", 18),
    ("BADMODE", 19),
    ("BADNAME", 20),
    ("BADALG", 21),
    ("BADTRUNC", 22),
    ("BADCOOKIE", 23),
    ("NOTIMPL", 4),
];

fn rcode_value(name: &str) -> Option<u16> {
    RCODES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn rcode_name(code: u16) -> String {
    RCODES
        .iter()
        .find(|(_, v)| *v == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| code.to_string())
}

/// `query_type` as miekg/dns accepts it: upper-case mnemonics only.
fn parse_type(s: &str) -> Result<RecordType, String> {
    if s.is_empty() || s.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(format!("query type '{s}' is not valid"));
    }
    match RecordType::from_str(s) {
        Ok(RecordType::Unknown(_)) | Err(_) => Err(format!("query type '{s}' is not valid")),
        Ok(t) => Ok(t),
    }
}

/// `query_class` as miekg/dns accepts it.
fn parse_class(s: &str) -> Result<DNSClass, String> {
    match s {
        "IN" => Ok(DNSClass::IN),
        "CH" => Ok(DNSClass::CH),
        "HS" => Ok(DNSClass::HS),
        "NONE" => Ok(DNSClass::NONE),
        "ANY" => Ok(DNSClass::ANY),
        _ => Err(format!("query class '{s}' is not valid")),
    }
}

const DURATION: &str = "probe_dns_duration_seconds";
const DURATION_HELP: &str = "Duration of DNS request by phase";
const SECTIONS: [(&str, &str); 3] = [
    (
        "probe_dns_answer_rrs",
        "Returns number of entries in the answer resource record list",
    ),
    (
        "probe_dns_authority_rrs",
        "Returns number of entries in the authority resource record list",
    ),
    (
        "probe_dns_additional_rrs",
        "Returns number of entries in the additional resource record list",
    ),
];

/// What one DNS probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The target's name lookup.
    pub resolved: Resolved,
    /// Resolution started (`probe_ip_protocol` and `probe_ip_addr_hash` are then reported, as
    /// 0 until an address is found).
    pub resolving: bool,
    /// The whole exchange: socket setup, connect, TLS handshake, query and answer (also when
    /// it failed or the deadline cut it short).
    pub exchange: Duration,
    /// The parts of the exchange.
    pub timing: Timing,
    /// The answer, when one arrived.
    pub answer: Option<Answer>,
}

/// The parts of a DNS exchange, each zero until reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Socket setup and connect (the TCP handshake for `tcp`).
    pub connect: Duration,
    /// The connection is up (always for udp once its socket is connected).
    pub connected: bool,
    /// The DNS over TLS handshake.
    pub tls: Duration,
    /// From the query's first byte written to the answer's first byte.
    pub first_byte: Duration,
    /// From the query's first byte written to the answer read (miekg/dns's rtt).
    pub rtt: Duration,
}

/// What the answer held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answer {
    /// RRs in the answer section.
    pub answer_rrs: usize,
    /// RRs in the authority section.
    pub authority_rrs: usize,
    /// RRs in the additional section, the EDNS OPT record included (as miekg/dns counts it).
    pub additional_rrs: usize,
    /// The rcode.
    pub rcode: u16,
    /// For a `SOA` query, the serial of the last SOA in the answer (0 without one).
    pub serial: Option<u32>,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        let resolve = match self.resolved.ip {
            Some(_) => self.resolved.lookup.unwrap_or_default(),
            None => Duration::ZERO,
        };
        let connect = self.exchange.saturating_sub(self.timing.rtt);
        for (phase, d) in [
            ("resolve", resolve),
            ("connect", connect),
            ("request", self.timing.rtt),
        ] {
            out.gauge_with(
                DURATION,
                DURATION_HELP,
                &[("phase", phase)],
                d.as_secs_f64(),
            );
        }
        let a = self.answer.unwrap_or_default();
        let counts = [a.answer_rrs, a.authority_rrs, a.additional_rrs];
        for ((name, help), n) in SECTIONS.into_iter().zip(counts) {
            out.gauge(name, help, n as f64);
        }
        out.gauge(
            "probe_dns_query_succeeded",
            "Displays whether or not the query was executed successfully",
            if self.answer.is_some() { 1.0 } else { 0.0 },
        );
        if let Some(serial) = a.serial {
            out.gauge(
                "probe_dns_serial",
                "Returns the serial number of the zone",
                f64::from(serial),
            );
        }
        if self.resolved.lookup.is_some() {
            self.resolved.render(out);
        } else if self.resolving {
            self.resolved.render_address(out);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.resolved.lookup.unwrap_or_default(),
            connect: self.timing.connect,
            tls: self.timing.tls,
            processing: self.timing.first_byte,
            transfer: self.timing.rtt.saturating_sub(self.timing.first_byte),
        }
    }

    fn bytes(&self) -> u64 {
        0
    }
}

/// Runs one DNS probe, filling in `facts` as it goes.
pub async fn probe(
    module: &DnsModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let built;
    let c = match &module.compiled.0 {
        Some(c) => c.as_ref(),
        None => {
            built = module.build().map_err(|e| {
                plog!(log, Error, "{e}");
                Fail::new(Reason::Setup, e.to_string())
            })?;
            &built
        }
    };
    let (host, port) = match split_host_port(&ctx.target) {
        Ok((h, p)) => (h, p),
        // Target only contains the host: the default port.
        Err(_) => (
            ctx.target.clone(),
            if module.dns_over_tls { "853" } else { "53" }.to_string(),
        ),
    };
    facts.resolving = true;
    let port_number = port.parse::<u16>().ok();
    let ip = lookup(
        &host,
        port_number,
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        &mut facts.resolved,
        log,
    )
    .await?;
    let Some(port) = port_number else {
        plog!(log, Error, "invalid port `{port}`");
        return Err(Fail::new(
            Reason::Setup,
            format!("invalid port `{port}` in target `{}`", ctx.target),
        ));
    };
    let server = SocketAddr::new(ip, port);
    let name = c.name.clone().map_err(|e| {
        plog!(log, Error, "{e}");
        Fail::new(Reason::Setup, e)
    })?;
    let id = query_id();
    let wire = query(module, c, name, id).map_err(|e| {
        plog!(log, Error, "{e}");
        Fail::new(Reason::Setup, e)
    })?;
    plog!(
        log,
        Debug,
        "making DNS query to {server} over {:?}: {} {} {}",
        module.transport_protocol,
        module.query_name,
        c.qtype,
        c.qclass
    );
    let start = Instant::now();
    let result = tokio::time::timeout_at(
        ctx.deadline,
        exchange(module, c, &host, server, &wire, id, &mut facts.timing),
    )
    .await
    .unwrap_or_else(|_| Err(deadline_passed(module, &facts.timing)));
    facts.exchange = start.elapsed();
    let response = match result {
        Ok(r) => r,
        Err(f) => {
            plog!(log, Error, "error while sending a DNS query: {}", f.detail);
            return Err(f);
        }
    };
    check(module, c, &response, facts, log)
}

/// The query's wire form.
fn query(module: &DnsModule, c: &Compiled, name: Name, id: u16) -> Result<Vec<u8>, String> {
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(module.recursion_desired);
    let mut query = Query::query(name, c.qtype);
    query.set_query_class(c.qclass);
    msg.add_query(query);
    msg.to_vec()
        .map_err(|e| format!("cannot encode the query: {e}"))
}

/// Records what the answer holds, then checks its rcode and its sections.
fn check(
    module: &DnsModule,
    c: &Compiled,
    response: &Message,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let rcode = u16::from(response.response_code());
    // miekg/dns keeps the EDNS OPT record in the additional section; hickory lifts it out.
    let opt = usize::from(response.extensions().is_some());
    // The last SOA in the answer, as blackbox sets the gauge for each in turn.
    let serial = (c.qtype == RecordType::SOA).then(|| {
        response
            .answers()
            .iter()
            .rev()
            .find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.serial()),
                _ => None,
            })
            .unwrap_or(0)
    });
    facts.answer = Some(Answer {
        answer_rrs: response.answers().len(),
        authority_rrs: response.name_servers().len(),
        additional_rrs: response.additionals().len() + opt,
        rcode,
        serial,
    });
    if !c.valid_rcodes.contains(&rcode) {
        let detail = format!(
            "rcode {} is not one of the valid rcodes {:?}",
            rcode_name(rcode),
            module.valid_rcodes
        );
        plog!(log, Error, "{detail}");
        return Err(Fail::new(Reason::Rcode, detail));
    }
    plog!(log, Debug, "rcode {} is valid", rcode_name(rcode));
    let checks = [
        ("answer", response.answers(), &c.answer),
        ("authority", response.name_servers(), &c.authority),
        ("additional", response.additionals(), &c.additional),
    ];
    for (section, rrs, rules) in checks {
        let texts: Vec<String> = rrs.iter().map(rr_string).collect();
        if let Err(e) = rules.check(&texts) {
            let detail = format!("{section} RRs validation failed: {e}");
            plog!(log, Error, "{detail}");
            return Err(Fail::new(Reason::AnswerMismatch, detail));
        }
    }
    Ok(())
}

/// A fresh query id (SipHash of a counter under a random key).
fn query_id() -> u16 {
    use std::hash::BuildHasher as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n) as u16
}

/// The failure of an exchange the deadline cut short: before a TCP connection was up it is
/// `connect_timeout`, after it (and always for udp) `timeout`.
fn deadline_passed(module: &DnsModule, timing: &Timing) -> Fail {
    if module.transport_protocol == Transport::Tcp && !timing.connected {
        Fail::new(
            Reason::ConnectTimeout,
            "timeout: the probe's deadline passed while connecting",
        )
    } else {
        Fail::new(Reason::Timeout, "timeout: the probe's deadline passed")
    }
}

/// Sends the query and reads the answer under the probe's deadline, recording the exchange's
/// parts in `timing` as they happen.
async fn exchange(
    module: &DnsModule,
    c: &Compiled,
    host: &str,
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    timing: &mut Timing,
) -> Result<Message, Fail> {
    match module.transport_protocol {
        Transport::Udp => udp_exchange(c.source, server, wire, id, timing).await,
        Transport::Tcp => tcp_exchange(module, c.source, host, server, wire, id, timing).await,
    }
}

async fn udp_exchange(
    source: Option<IpAddr>,
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    timing: &mut Timing,
) -> Result<Message, Fail> {
    let start = Instant::now();
    let local = match (source, server) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await.map_err(|e| {
        // Out of descriptors, buffers or memory is watchfire's own shortage; an address that
        // cannot be bound (`source_ip_address`) is the module's setup.
        let reason = match crate::net::io_local_cause(&e) {
            Some(c) if c != crate::net::LocalCause::EphemeralPorts => Reason::Prober,
            _ => Reason::Setup,
        };
        Fail::new(reason, format!("cannot bind {local}: {e}"))
    })?;
    sock.connect(server)
        .await
        .map_err(|e| fail_from(Reason::Connect, &format!("cannot connect to {server}"), &e))?;
    timing.connect = start.elapsed();
    timing.connected = true;
    let start = Instant::now();
    sock.send(wire)
        .await
        .map_err(|e| fail_from(Reason::Connect, "send", &e))?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| fail_from(Reason::Reset, "read", &e))?;
        if timing.first_byte.is_zero() {
            timing.first_byte = start.elapsed();
        }
        // Like miekg/dns: answers with another id are skipped.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.id() == id => {
                timing.rtt = start.elapsed();
                return Ok(m);
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(Fail::new(
                    Reason::Protocol,
                    format!("cannot parse the answer: {e}"),
                ))
            }
        }
    }
}

async fn tcp_exchange(
    module: &DnsModule,
    source: Option<IpAddr>,
    host: &str,
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    timing: &mut Timing,
) -> Result<Message, Fail> {
    let start = Instant::now();
    let opts = SocketOptions {
        source,
        ..SocketOptions::default()
    };
    let stream = net::connect(server, opts, || format!("cannot connect to {server}")).await?;
    timing.connect = start.elapsed();
    timing.connected = true;
    if !module.dns_over_tls {
        return framed_exchange(stream, wire, id, timing).await;
    }
    let start = Instant::now();
    let cfg = module
        .tls_config
        .client_config(&[])
        .map_err(|e| Fail::new(Reason::Setup, e.to_string()))?;
    let name = net::tls::server_name(module.tls_config.server_name.as_deref(), host)
        .map_err(|e| Fail::new(Reason::Setup, e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .map_err(|e| Fail::new(Reason::Tls, format!("TLS handshake failed: {}", chain(&e))))?;
    timing.tls = start.elapsed();
    framed_exchange(tls, wire, id, timing).await
}

/// One query and its answer over a stream, each framed by its 2-byte length.
async fn framed_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    wire: &[u8],
    id: u16,
    timing: &mut Timing,
) -> Result<Message, Fail> {
    let len = u16::try_from(wire.len()).map_err(|_| Fail::new(Reason::Setup, "query too long"))?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    let start = Instant::now();
    s.write_all(&framed)
        .await
        .map_err(|e| fail_from(Reason::Reset, "write", &e))?;
    s.flush()
        .await
        .map_err(|e| fail_from(Reason::Reset, "write", &e))?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .await
            .map_err(|e| fail_from(Reason::Reset, "read", &e))?;
        if timing.first_byte.is_zero() {
            timing.first_byte = start.elapsed();
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| fail_from(Reason::Reset, "read", &e))?;
        let m = Message::from_vec(&buf)
            .map_err(|e| Fail::new(Reason::Protocol, format!("cannot parse the answer: {e}")))?;
        if m.id() == id {
            timing.rtt = start.elapsed();
            return Ok(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcodes_and_types_use_miekg_names() {
        assert_eq!(rcode_value("NXDOMAIN"), Some(3));
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(4000), "4000");
        assert!(parse_type("AAAA").is_ok());
        assert!(parse_type("aaaa").is_err(), "miekg/dns is case-sensitive");
        assert!(parse_class("CH").is_ok());
        assert!(parse_class("in").is_err());
    }

    #[test]
    fn compile_keeps_the_compiled_form_and_modules_still_compare_by_options() {
        let mut m = DnsModule {
            query_name: "a.test".into(),
            ..DnsModule::default()
        };
        let plain = m.clone();
        m.compile().expect("valid");
        assert!(m.compiled.0.is_some());
        assert_eq!(m, plain);
        m.valid_rcodes = vec!["NOPE".into()];
        assert_eq!(m.compile().unwrap_err().field, "dns.valid_rcodes");
    }

    #[test]
    fn facts_render_zeroes_before_anything_happened() {
        let mut out = Output::new();
        Facts::default().render(&mut out);
        assert_eq!(out.value("probe_dns_query_succeeded"), Some(0.0));
        assert_eq!(out.value("probe_ip_protocol"), None);
        assert_eq!(out.value_with(DURATION, &[("phase", "request")]), Some(0.0));
    }
}
