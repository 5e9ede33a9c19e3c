//! The `dns` prober: one query (udp or tcp, optionally DNS over TLS) built with hickory-proto,
//! then the rcode check and the answer/authority/additional validators.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use regex::Regex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::Instant;

use super::tcp::{
    resolve_target, ser_ip_protocol, server_name, split_host_port, validate_source_ip,
};
use super::{Ctx, IpProtocol, Output, TlsConfig};

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

/// Regexp checks on one section of the response; each RR is matched in its presentation form
/// (`name<TAB>ttl<TAB>class<TAB>type<TAB>rdata`, as miekg/dns prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrValidator {
    /// Fail if any RR matches any of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_matches_regexp: Vec<String>,
    /// Fail if any RR does not match one of these (also when there are no RRs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_not_matches_regexp: Vec<String>,
    /// Named so, but blackbox fails the probe when *not* every RR matches all of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_all_match_regexp: Vec<String>,
    /// Fail if no RR matches one of these (also when there are no RRs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_none_matches_regexp: Vec<String>,
}

impl RrValidator {
    fn validate(&self, section: &str) -> Result<(), String> {
        let lists = [
            ("fail_if_matches_regexp", &self.fail_if_matches_regexp),
            (
                "fail_if_not_matches_regexp",
                &self.fail_if_not_matches_regexp,
            ),
            ("fail_if_all_match_regexp", &self.fail_if_all_match_regexp),
            (
                "fail_if_none_matches_regexp",
                &self.fail_if_none_matches_regexp,
            ),
        ];
        for (field, list) in lists {
            for re in list.iter() {
                Regex::new(re)
                    .map_err(|e| format!("dns.{section}.{field}: invalid regexp `{re}`: {e}"))?;
            }
        }
        Ok(())
    }
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
        }
    }
}

impl DnsModule {
    /// Checks what serde cannot: the required name, type/class/rcode names, regexps.
    pub fn validate(&self) -> Result<(), String> {
        if self.query_name.is_empty() {
            return Err("dns.query_name: query name must be set for DNS module".into());
        }
        validate_source_ip("dns", self.source_ip_address.as_deref())?;
        parse_type(&self.query_type).map_err(|e| format!("dns.query_type: {e}"))?;
        parse_class(&self.query_class).map_err(|e| format!("dns.query_class: {e}"))?;
        for rc in &self.valid_rcodes {
            if rcode_value(rc).is_none() {
                return Err(format!("dns.valid_rcodes: `{rc}` is not a DNS rcode"));
            }
        }
        if self.dns_over_tls && self.transport_protocol != Transport::Tcp {
            return Err("dns.dns_over_tls: needs transport_protocol: tcp".into());
        }
        self.validate_answer_rrs.validate("validate_answer_rrs")?;
        self.validate_authority_rrs
            .validate("validate_authority_rrs")?;
        self.validate_additional_rrs
            .validate("validate_additional_rrs")?;
        Ok(())
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

/// Runs one DNS probe.
pub async fn probe(module: &DnsModule, ctx: &Ctx, out: &mut Output) -> bool {
    for phase in ["resolve", "connect", "request"] {
        out.gauge_with(DURATION, DURATION_HELP, &[("phase", phase)], 0.0);
    }
    let counts = [
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
    for (name, help) in counts {
        out.gauge(name, help, 0.0);
    }
    out.gauge(
        "probe_dns_query_succeeded",
        "Displays whether or not the query was executed successfully",
        0.0,
    );
    let (qtype, qclass) = match (
        parse_type(&module.query_type),
        parse_class(&module.query_class),
    ) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => {
            out.log(e);
            return false;
        }
    };
    if module.dns_over_tls && module.transport_protocol != Transport::Tcp {
        out.log("configuration error: expected transport protocol tcp for DoT");
        return false;
    }
    let (host, port) = match split_host_port(&ctx.target) {
        Ok((h, p)) => (h, p),
        // Target only contains the host: the default port.
        Err(_) => (
            ctx.target.clone(),
            if module.dns_over_tls { "853" } else { "53" }.to_string(),
        ),
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
    let Ok(port) = port.parse::<u16>() else {
        out.log(format!("invalid port `{port}`"));
        return false;
    };
    let server = SocketAddr::new(ip, port);

    let name = match Name::from_utf8(&module.query_name) {
        Ok(mut n) => {
            n.set_fqdn(true);
            n
        }
        Err(e) => {
            out.log(format!("invalid query name `{}`: {e}", module.query_name));
            return false;
        }
    };
    let id = query_id();
    let mut msg = Message::new();
    msg.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(module.recursion_desired);
    let mut query = Query::query(name, qtype);
    query.set_query_class(qclass);
    msg.add_query(query);
    let wire = match msg.to_vec() {
        Ok(w) => w,
        Err(e) => {
            out.log(format!("cannot encode the query: {e}"));
            return false;
        }
    };
    out.log(format!(
        "making DNS query to {server} over {:?}: {} {qtype} {qclass}",
        module.transport_protocol, module.query_name
    ));
    let start = Instant::now();
    let mut rtt = Duration::ZERO;
    let result = tokio::time::timeout_at(
        ctx.deadline,
        exchange(module, &host, server, &wire, id, &mut rtt),
    )
    .await
    .unwrap_or_else(|_| Err("timeout: the probe's deadline passed".into()));
    let total = start.elapsed();
    out.gauge_with(
        DURATION,
        DURATION_HELP,
        &[("phase", "connect")],
        total.saturating_sub(rtt).as_secs_f64(),
    );
    out.gauge_with(
        DURATION,
        DURATION_HELP,
        &[("phase", "request")],
        rtt.as_secs_f64(),
    );
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            out.log(format!("error while sending a DNS query: {e}"));
            return false;
        }
    };
    // miekg/dns keeps the EDNS OPT record in the additional section; hickory lifts it out.
    let opt = usize::from(response.extensions().is_some());
    let sections = [
        response.answers().len(),
        response.name_servers().len(),
        response.additionals().len() + opt,
    ];
    for ((name, help), n) in counts.into_iter().zip(sections) {
        out.gauge(name, help, n as f64);
    }
    out.gauge(
        "probe_dns_query_succeeded",
        "Displays whether or not the query was executed successfully",
        1.0,
    );
    if qtype == RecordType::SOA {
        // The last SOA in the answer, as blackbox sets the gauge for each in turn.
        let serial = response
            .answers()
            .iter()
            .rev()
            .find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.serial()),
                _ => None,
            })
            .unwrap_or(0);
        out.gauge(
            "probe_dns_serial",
            "Returns the serial number of the zone",
            f64::from(serial),
        );
    }
    let rcode = u16::from(response.response_code());
    let valid: Vec<u16> = module
        .valid_rcodes
        .iter()
        .filter_map(|n| rcode_value(n))
        .collect();
    if !valid.contains(&rcode) {
        out.log(format!(
            "rcode {} is not one of the valid rcodes {:?}",
            rcode_name(rcode),
            module.valid_rcodes
        ));
        return false;
    }
    out.log(format!("rcode {} is valid", rcode_name(rcode)));
    let checks = [
        ("answer", response.answers(), &module.validate_answer_rrs),
        (
            "authority",
            response.name_servers(),
            &module.validate_authority_rrs,
        ),
        (
            "additional",
            response.additionals(),
            &module.validate_additional_rrs,
        ),
    ];
    for (section, rrs, validator) in checks {
        let texts: Vec<String> = rrs.iter().map(rr_string).collect();
        if let Err(e) = valid_rrs(&texts, validator) {
            out.log(format!("{section} RRs validation failed: {e}"));
            return false;
        }
    }
    true
}

/// A fresh query id (SipHash of a counter under a random key).
fn query_id() -> u16 {
    use std::hash::BuildHasher as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n) as u16
}

/// Sends the query and reads the answer; `rtt` gets the time from the first byte sent to the
/// last byte received (miekg/dns's rtt; the rest of the exchange counts as `connect`).
async fn exchange(
    module: &DnsModule,
    host: &str,
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    rtt: &mut Duration,
) -> Result<Message, String> {
    let source: Option<IpAddr> = match &module.source_ip_address {
        Some(s) => Some(
            s.parse()
                .map_err(|_| format!("error parsing source ip address: {s}"))?,
        ),
        None => None,
    };
    match module.transport_protocol {
        Transport::Udp => {
            let local = match (source, server) {
                (Some(ip), _) => SocketAddr::new(ip, 0),
                (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock = UdpSocket::bind(local)
                .await
                .map_err(|e| format!("cannot bind {local}: {e}"))?;
            sock.connect(server)
                .await
                .map_err(|e| format!("cannot connect to {server}: {e}"))?;
            let start = Instant::now();
            sock.send(wire).await.map_err(|e| format!("send: {e}"))?;
            let mut buf = vec![0u8; 65_535];
            loop {
                let n = sock
                    .recv(&mut buf)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                // Like miekg/dns: answers with another id are skipped.
                match Message::from_vec(&buf[..n]) {
                    Ok(m) if m.id() == id => {
                        *rtt = start.elapsed();
                        return Ok(m);
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(format!("cannot parse the answer: {e}")),
                }
            }
        }
        Transport::Tcp => {
            let socket = if server.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| format!("cannot create socket: {e}"))?;
            if let Some(ip) = source {
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| format!("cannot bind to {ip}: {e}"))?;
            }
            let stream = socket
                .connect(server)
                .await
                .map_err(|e| format!("cannot connect to {server}: {e}"))?;
            if module.dns_over_tls {
                let cfg = module.tls_config.client_config(&[])?;
                let name = server_name(&module.tls_config, host)?;
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                tcp_exchange(tls, wire, id, rtt).await
            } else {
                tcp_exchange(stream, wire, id, rtt).await
            }
        }
    }
}

async fn tcp_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    wire: &[u8],
    id: u16,
    rtt: &mut Duration,
) -> Result<Message, String> {
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    let start = Instant::now();
    s.write_all(&framed)
        .await
        .map_err(|e| format!("write: {e}"))?;
    s.flush().await.map_err(|e| format!("write: {e}"))?;
    loop {
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let m = Message::from_vec(&buf).map_err(|e| format!("cannot parse the answer: {e}"))?;
        if m.id() == id {
            *rtt = start.elapsed();
            return Ok(m);
        }
    }
}

/// blackbox's `validRRs`: the four regexp checks over one section.
fn valid_rrs(rrs: &[String], v: &RrValidator) -> Result<(), String> {
    let compile = |list: &[String]| -> Result<Vec<Regex>, String> {
        list.iter()
            .map(|r| Regex::new(r).map_err(|e| format!("invalid regexp `{r}`: {e}")))
            .collect()
    };
    let fail_matches = compile(&v.fail_if_matches_regexp)?;
    let fail_all = compile(&v.fail_if_all_match_regexp)?;
    let fail_not = compile(&v.fail_if_not_matches_regexp)?;
    let fail_none = compile(&v.fail_if_none_matches_regexp)?;
    if rrs.is_empty() && !fail_not.is_empty() {
        return Err("fail_if_not_matches_regexp specified but no RRs returned".into());
    }
    if rrs.is_empty() && !fail_none.is_empty() {
        return Err("fail_if_none_matches_regexp specified but no RRs returned".into());
    }
    let mut all_match = true;
    let mut any_match = false;
    for rr in rrs {
        if let Some(re) = fail_matches.iter().find(|re| re.is_match(rr)) {
            return Err(format!("at least one RR matched regexp `{re}`: {rr}"));
        }
        if fail_all.iter().any(|re| !re.is_match(rr)) {
            all_match = false;
        }
        if let Some(re) = fail_not.iter().find(|re| !re.is_match(rr)) {
            return Err(format!("at least one RR did not match regexp `{re}`: {rr}"));
        }
        if fail_none.iter().any(|re| re.is_match(rr)) {
            any_match = true;
        }
    }
    // Despite its name, blackbox fails `fail_if_all_match_regexp` when *not* every RR matches
    // (0.23 and upstream alike); dashboards and alerts rely on that behaviour, so keep it.
    if !fail_all.is_empty() && !all_match {
        return Err("not all RRs matched regexp".into());
    }
    if !fail_none.is_empty() && !any_match {
        return Err("none of the RRs matched any regexp".into());
    }
    Ok(())
}

/// An RR in miekg/dns's presentation format: `name\tttl\tclass\ttype\trdata`.
pub(crate) fn rr_string(r: &Record) -> String {
    let class = match r.dns_class() {
        DNSClass::IN => "IN".to_string(),
        DNSClass::CH => "CH".to_string(),
        DNSClass::HS => "HS".to_string(),
        DNSClass::NONE => "NONE".to_string(),
        DNSClass::ANY => "ANY".to_string(),
        other => format!("CLASS{}", u16::from(other)),
    };
    let rtype = match r.record_type() {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    };
    let rdata = match r.data() {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => n.0.to_string(),
        RData::NS(n) => n.0.to_string(),
        RData::PTR(n) => n.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference(), mx.exchange()),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority(),
            srv.weight(),
            srv.port(),
            srv.target()
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            soa.mname(),
            soa.rname(),
            soa.serial(),
            soa.refresh(),
            soa.retry(),
            soa.expire(),
            soa.minimum()
        ),
        RData::TXT(txt) => txt
            .txt_data()
            .iter()
            .map(|s| go_txt(s))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!("{}\t{}\t{class}\t{rtype}\t{rdata}", r.name(), r.ttl())
}

/// One TXT string as miekg/dns quotes it.
fn go_txt(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validators_follow_blackbox_including_its_all_match_quirk() {
        let two = rrs(&["a.\t1\tIN\tA\t192.0.2.1", "a.\t1\tIN\tA\t192.0.2.2"]);
        let v = |f: fn(&mut RrValidator)| {
            let mut v = RrValidator::default();
            f(&mut v);
            v
        };
        assert!(valid_rrs(
            &two,
            &v(|v| v.fail_if_matches_regexp = vec!["\\.2$".into()])
        )
        .is_err());
        assert!(valid_rrs(
            &two,
            &v(|v| v.fail_if_not_matches_regexp = vec!["\\.1$".into()])
        )
        .is_err());
        // Fails unless every RR matches.
        assert!(valid_rrs(
            &two,
            &v(|v| v.fail_if_all_match_regexp = vec!["192".into()])
        )
        .is_ok());
        assert!(valid_rrs(
            &two,
            &v(|v| v.fail_if_all_match_regexp = vec!["\\.1$".into()])
        )
        .is_err());
        assert!(valid_rrs(
            &two,
            &v(|v| v.fail_if_none_matches_regexp = vec!["\\.3$".into()])
        )
        .is_err());
        assert!(valid_rrs(
            &[],
            &v(|v| v.fail_if_none_matches_regexp = vec![".".into()])
        )
        .is_err());
        assert!(valid_rrs(&[], &v(|v| v.fail_if_not_matches_regexp = vec![".".into()])).is_err());
        assert!(valid_rrs(&[], &v(|v| v.fail_if_all_match_regexp = vec![".".into()])).is_ok());
    }

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
    fn txt_strings_are_quoted_like_miekg() {
        assert_eq!(go_txt(b"a \"b\"\\"), "\"a \\\"b\\\"\\\\\"");
        assert_eq!(go_txt(&[0x01, b'x']), "\"\\001x\"");
    }
}
