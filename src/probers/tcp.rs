//! The `tcp` prober: connect (optionally over TLS), then the `query_response` dialogue — read
//! lines until `expect` matches (or read `expect_bytes`), `send` a line (with `${1}` from that
//! match), `starttls`. The connection and the dialogue are in `tcp_dialogue`; this file holds the
//! module options (regexps compiled once, at load), the probe's [`Facts`] and their view.
//!
//! Phases ([`Phases`]; blackbox reports none for tcp): `resolve` is the name lookup; `connect`
//! the TCP connect; `tls` the TLS handshakes (`tls: true` and every `starttls`); `processing`
//! from the connection being ready (after the `tls: true` handshake) to the first line or bytes
//! read; `transfer` from there to the end of the dialogue, STARTTLS handshakes excluded.
//!
//! Failures: a target that is not `host:port` and a socket that cannot be created, bound or
//! given its TLS settings are `Setup`; resolution `Dns`; the connect
//! `Refused` / `Connect`, or `ConnectTimeout` when the deadline
//! passes before it is up; the handshake `Tls`; a lost connection `Reset`;
//! a line longer than 64 KiB `Protocol`; an `expect` that no line matched or
//! `expect_bytes` that differ `ExpectMismatch`; the deadline after connecting
//! `Timeout`.
//!
//! Also home of what the tcp, grpc and dns probers share: the TLS metrics
//! (`TlsFacts`), `host:port` splitting, and the address metrics blackbox registers before
//! resolving (`resolve_target`).

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;

use regex::bytes::Regex;
use serde::{Deserialize, Serialize};

use super::{IpProtocol, Output, Resolved, TlsConfig, View};
use crate::diag::FieldError;
use crate::probe::Phases;

/// Bytes of a `send` or `expect_bytes`: a YAML string, or a `!!binary` value (base64) for
/// control bytes, which need not be UTF-8 (`!!binary AAAACATSFi8=`, PostgreSQL's SSLRequest).
///
/// The YAML reader decodes a `!!binary` value itself only for a byte field, and a byte field
/// does not take plain strings; for a string field it requires the decoded bytes to be UTF-8.
/// So a payload is read as a string together with its tag, and a `!!binary` one is decoded
/// here. That needs the reader to hand such a value over as its base64 text: configs are read
/// with [`Payload::yaml_options`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Payload(pub Vec<u8>);

impl Payload {
    /// The YAML reader's options for reading a config: `!!binary` values reach a string field
    /// as their base64 text, which [`Payload`] decodes.
    pub fn yaml_options() -> serde_saphyr::Options {
        let mut o = serde_saphyr::Options::default();
        o.ignore_binary_tag_for_string = true;
        o
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Payload {
        Payload(s.as_bytes().to_vec())
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A scalar's text, as written (a plain `042` stays `042`, as Go's YAML keeps it).
struct Text(Vec<u8>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or !!binary bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.as_bytes().to_vec()))
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Text, E> {
                Ok(Text(v.to_vec()))
            }
        }
        d.deserialize_string(V)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Payload, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or !!binary bytes")
            }
            // The YAML reader: the value, then its tag.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Payload, A::Error> {
                use serde::de::Error as _;
                let Text(text) = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let tag: Option<String> = seq.next_element()?;
                if !tag.as_deref().is_some_and(is_binary_tag) {
                    return Ok(Payload(text));
                }
                base64_decode(&text).map(Payload).map_err(A::Error::custom)
            }
            // Other readers, which have no tags.
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Payload, D::Error> {
                Text::deserialize(d).map(|t| Payload(t.0))
            }
        }
        // The YAML reader's way to hand over a value with its tag (see `serde_saphyr::Tagged`).
        d.deserialize_newtype_struct("__yaml_tagged", V)
    }
}

/// Whether a YAML tag is the binary one, in any of its spellings.
fn is_binary_tag(tag: &str) -> bool {
    matches!(
        tag,
        "!!binary" | "!binary" | "tag:yaml.org,2002:binary" | "tag:yaml.org,2002:!binary"
    )
}

/// Decodes standard base64 (padding optional, white space ignored), as YAML's `!!binary`.
fn base64_decode(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut padding = 0;
    for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => {
                return Err(format!(
                    "invalid !!binary value: `{}` is not base64",
                    c as char
                ))
            }
        };
        if padding > 0 {
            return Err("invalid !!binary value: data after its padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 || padding > 2 {
        return Err("invalid !!binary value: truncated base64".into());
    }
    Ok(out)
}

/// An `expect` regexp compiled once (by [`TcpModule::compile`] at load): not part of the
/// module's identity or of its shown configuration.
#[derive(Debug, Clone, Default)]
pub struct Compiled(OnceLock<Regex>);

impl PartialEq for Compiled {
    fn eq(&self, _: &Compiled) -> bool {
        true
    }
}
impl Eq for Compiled {}

/// One `query_response` step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryResponse {
    /// Regexp a received line must match; lines are read until one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// Bytes that must come next, exactly (upstream 0.27+; exclusive with `expect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_bytes: Option<Payload>,
    /// Line to send (a newline is added); `${1}`, `${name}` expand from the `expect` match.
    /// Shown as `<secret>` (`/config`, `debug=true`): a dialogue may send a password
    /// (`AUTH ...`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_send")]
    pub send: Option<Payload>,
    /// Upgrade the connection to TLS after this step.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub starttls: bool,
    /// Labels of `probe_expect_info`, their values expanded from the `expect` match
    /// (upstream 0.25+; 0.23 rejects the field).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<ExpectLabel>,
    /// `expect`, compiled.
    #[serde(skip)]
    pub compiled: Compiled,
}

impl QueryResponse {
    /// The compiled `expect` (compiled here, once, if the module skipped
    /// [`TcpModule::compile`]; an invalid one then matches nothing).
    pub(crate) fn regex(&self) -> &Regex {
        self.compiled.0.get_or_init(|| {
            let re = self.expect.as_deref().unwrap_or_default();
            crate::limits::regex_bytes(re)
                .unwrap_or_else(|_| Regex::new("[^\\s\\S]").expect("a valid regexp"))
        })
    }
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

/// A `send` line as `/config` shows it: `<secret>` (the line is never shown).
fn ser_send<S: serde::Serializer>(v: &Option<Payload>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<secret>"),
        None => s.serialize_none(),
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
pub(crate) fn validate_source_ip(prober: &str, src: Option<&str>) -> Result<(), FieldError> {
    match src {
        Some(s) if s.parse::<IpAddr>().is_err() => Err(FieldError::new(
            format!("{prober}.source_ip_address"),
            format!("`{s}` is not an IP address"),
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
    /// Checks what serde cannot: regexps, `expect` / `expect_bytes` exclusion, label names and
    /// the source address. Errors start with the field (`tcp.query_response[0].expect: ...`).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.clone().compile()
    }

    /// The load-time step: checks the module as [`TcpModule::validate`] does and keeps each
    /// `expect` compiled, so that probes only use it.
    pub fn compile(&mut self) -> Result<(), FieldError> {
        validate_source_ip("tcp", self.source_ip_address.as_deref())?;
        compile_steps("tcp", &mut self.query_response)
    }

    /// Whether a step has `expect_bytes` (then `probe_failed_due_to_bytes` is reported).
    pub(super) fn expects_bytes(&self) -> bool {
        self.query_response
            .iter()
            .any(|q| q.expect_bytes.as_ref().is_some_and(|b| !b.0.is_empty()))
    }
}

/// Checks the `query_response` steps of a `prober` (`tcp`, `unix`) module and keeps each
/// `expect` compiled: regexps, `expect` / `expect_bytes` exclusion, label names. Errors start
/// with the field (`unix.query_response[0].expect: ...`).
pub(crate) fn compile_steps(prober: &str, steps: &mut [QueryResponse]) -> Result<(), FieldError> {
    for (i, qr) in steps.iter_mut().enumerate() {
        let field = format!("{prober}.query_response[{i}]");
        if let Some(re) = &qr.expect {
            let compiled = crate::limits::regex_bytes(re).map_err(|e| {
                FieldError::new(
                    format!("{field}.expect"),
                    format!("invalid regexp `{re}`: {e}"),
                )
            })?;
            qr.compiled = Compiled(OnceLock::from(compiled));
        }
        if qr.expect.is_some() && qr.expect_bytes.is_some() {
            return Err(FieldError::new(
                format!("{field}.expect_bytes"),
                "expect and expect_bytes are mutually exclusive",
            ));
        }
        if !qr.labels.is_empty() && qr.expect.is_none() {
            return Err(FieldError::new(
                format!("{field}.labels"),
                "needs an `expect` to take values from",
            ));
        }
        if let Some(l) = qr.labels.iter().find(|l| !is_label_name(&l.name)) {
            return Err(FieldError::new(
                format!("{field}.labels"),
                format!("`{}` is not a valid label name", l.name),
            ));
        }
    }
    Ok(())
}

const FAILED_DUE_TO_REGEX: &str = "probe_failed_due_to_regex";
const FAILED_DUE_TO_REGEX_HELP: &str = "Indicates if probe failed due to regex";
const FAILED_DUE_TO_BYTES: &str = "probe_failed_due_to_bytes";
const FAILED_DUE_TO_BYTES_HELP: &str = "Indicates if probe failed due to bytes";

/// What one tcp probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The target's resolution (`lookup` is `None` when the target did not split into host and
    /// port, and nothing was resolved).
    pub resolved: Resolved,
    /// `probe_failed_due_to_regex`: the last `expect` read to the end without a match.
    pub failed_due_to_regex: bool,
    /// `probe_failed_due_to_bytes`: `Some` for modules with an `expect_bytes` step (upstream
    /// 0.27+ reports it always; watchfire only there, to stay as 0.23 otherwise).
    pub failed_due_to_bytes: Option<bool>,
    /// `probe_expect_info` label sets, one per matched step with `labels`.
    pub expect_info: Vec<Vec<(String, String)>>,
    /// The TLS facts of the last handshake (`tls: true` or `starttls`).
    pub(crate) tls: Option<TlsFacts>,
    /// Whether that handshake verified the chain (no `insecure_skip_verify`).
    pub tls_verified: bool,
    /// The TCP connection was established.
    pub connected: bool,
    /// Phase timings (see the module doc).
    pub phases: Phases,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        out.gauge(
            FAILED_DUE_TO_REGEX,
            FAILED_DUE_TO_REGEX_HELP,
            f64::from(u8::from(self.failed_due_to_regex)),
        );
        if let Some(failed) = self.failed_due_to_bytes {
            out.gauge(
                FAILED_DUE_TO_BYTES,
                FAILED_DUE_TO_BYTES_HELP,
                f64::from(u8::from(failed)),
            );
        }
        self.resolved.render(out);
        if let Some(tls) = &self.tls {
            tls.report(out, self.tls_verified, true);
        }
        for labels in &self.expect_info {
            out.gauge_with_owned("probe_expect_info", "Explicit content matched", labels, 1.0);
        }
    }

    fn phases(&self) -> Phases {
        self.phases
    }
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

// ---- TLS metrics, shared by the tcp, grpc and dns probers ----

/// The facts of a finished TLS handshake: the one type (and metrics emitter) every kind shares.
pub(crate) use super::tls_info::Handshake as TlsFacts;

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
        assert_eq!(e.field, "tcp.query_response[0].expect", "{e}");
        let m = TcpModule {
            source_ip_address: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(m.validate().unwrap_err().field, "tcp.source_ip_address");
        let m = TcpModule {
            query_response: vec![QueryResponse {
                expect: Some("x".into()),
                expect_bytes: Some("x".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = m.validate().unwrap_err();
        assert_eq!(e.field, "tcp.query_response[0].expect_bytes", "{e}");
    }

    #[test]
    fn send_lines_are_not_shown() {
        let m: TcpModule =
            serde_saphyr::from_str("query_response: [{expect: '^\\+OK'}, {send: 'AUTH s3cret'}]")
                .expect("parses");
        let shown = serde_json::to_string(&m).expect("serializes");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<secret>"), "{shown}");
    }

    #[test]
    fn compile_keeps_the_regexp() {
        let mut m = TcpModule {
            query_response: vec![QueryResponse {
                expect: Some("^2(\\d+)".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        m.compile().expect("valid");
        assert!(m.query_response[0].compiled.0.get().is_some());
        assert!(m.query_response[0].regex().is_match(b"220 hi"));
    }

    #[test]
    fn payloads_take_text_and_binary() {
        let read = |yaml: &str| -> QueryResponse {
            serde_saphyr::from_str_with_options(yaml, Payload::yaml_options()).expect("parses")
        };
        let q = read("{send: !!binary AAAACFBJTkc=, expect_bytes: S}");
        assert_eq!(q.send, Some(Payload(b"\0\0\0\x08PING".to_vec())));
        assert_eq!(q.expect_bytes, Some(Payload(b"S".to_vec())));
        // Bytes that are not UTF-8: PostgreSQL's SSLRequest.
        let q = read("{send: !!binary AAAACATSFi8=}");
        assert_eq!(
            q.send,
            Some(Payload(vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]))
        );
        let q = read("{send: !<tag:yaml.org,2002:binary> 'AAAA\nCATSFi8='}");
        assert_eq!(q.send.map(|p| p.0.len()), Some(8));
        for plain in ["042", "N", "yes", "'AAAACATSFi8='"] {
            let q = read(&format!("{{send: {plain}}}"));
            let want = plain.trim_matches('\'');
            assert_eq!(q.send, Some(Payload(want.as_bytes().to_vec())));
        }
        let bad = serde_saphyr::from_str_with_options::<QueryResponse>(
            "{send: !!binary 'not base64!'}",
            Payload::yaml_options(),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode(b"TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode(b"TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode(b"TWE").unwrap(), b"Ma");
        assert_eq!(base64_decode(b"TQ==").unwrap(), b"M");
        assert!(base64_decode(b"T").is_err());
        assert!(base64_decode(b"TQ==TQ").is_err());
    }
}
