//! The TLS metrics blackbox reports after a handshake, one emitter for every prober kind (see
//! [`Handshake::of`] and [`Handshake::report`]): `probe_ssl_earliest_cert_expiry`,
//! `probe_ssl_last_chain_expiry_timestamp_seconds`,
//! `probe_ssl_last_chain_info{fingerprint_sha256,subject,issuer,subjectalternative,serialnumber}`,
//! `probe_tls_version_info{version}` and `probe_tls_cipher_info{cipher}`, with blackbox's HELP texts (its own wording, kept as is) and Go's formatting of names
//! (`CN=example.com,O=Example,C=US`).

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use super::Output;

/// What Go reports for a chain it never verified (`insecure_skip_verify`): the Unix time of
/// Go's zero `time.Time`, 0001-01-01T00:00:00Z.
pub const GO_ZERO_TIME: f64 = -62_135_596_800.0;

/// What a finished TLS handshake tells the metrics.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The certificates the server sent, leaf first.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The negotiated version.
    pub version: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher: Option<rustls::CipherSuite>,
}

impl Handshake {
    /// Reads it off a client connection after the handshake.
    pub fn of(conn: &rustls::ClientConnection) -> Handshake {
        Handshake {
            certs: conn
                .peer_certificates()
                .unwrap_or(&[])
                .iter()
                .map(|c| c.clone().into_owned())
                .collect(),
            version: conn.protocol_version(),
            cipher: conn.negotiated_cipher_suite().map(|s| s.suite()),
        }
    }
}

impl Handshake {
    /// Reports the TLS metrics of a finished handshake: every prober kind's one emitter, so
    /// every kind reports the same families with the same label sets. `verified` is false under
    /// `insecure_skip_verify` (blackbox then has no verified chain); `last_chain_expiry`:
    /// whether the kind reports `probe_ssl_last_chain_expiry_timestamp_seconds` (http, tcp,
    /// unix; grpc does not, as upstream).
    ///
    /// The last chain's expiry is the earliest `notAfter` of the certificates the server sent
    /// (Go also counts the root it found in its own store, which rustls does not expose; roots
    /// outlive the certificates they sign, so the figure is the same in practice).
    ///
    /// Follows upstream (0.25+/0.26+) where it differs from Debian's 0.23:
    /// `probe_ssl_last_chain_info` has a `serialnumber` label and `probe_tls_cipher_info{cipher}`
    /// is reported.
    pub fn report(&self, out: &mut Output, verified: bool, last_chain_expiry: bool) {
        report(self, verified, last_chain_expiry, out);
    }
}

fn report(h: &Handshake, verified: bool, last_chain_expiry: bool, out: &mut Output) {
    let parsed: Vec<X509Certificate<'_>> = h
        .certs
        .iter()
        .filter_map(|c| X509Certificate::from_der(c.as_ref()).ok().map(|(_, x)| x))
        .collect();
    let earliest = parsed
        .iter()
        .map(|c| c.validity().not_after.timestamp())
        .min()
        .map(|t| t as f64)
        .unwrap_or(GO_ZERO_TIME);
    out.gauge(
        "probe_ssl_earliest_cert_expiry",
        "Returns last SSL chain expiry in unixtime",
        earliest,
    );
    if last_chain_expiry {
        let last_chain = if verified { earliest } else { GO_ZERO_TIME };
        out.gauge(
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            "Returns last SSL chain expiry in timestamp",
            last_chain,
        );
    }
    if let (Some(der), Some(leaf)) = (h.certs.first(), parsed.first()) {
        let fingerprint = hex(&Sha256::digest(der.as_ref()));
        let subject = go_name(leaf.subject());
        let issuer = go_name(leaf.issuer());
        let sans = dns_names(leaf).join(",");
        // Go: `fmt.Sprintf("%x", SerialNumber.Bytes())`, the magnitude without leading zeros.
        let raw = leaf.raw_serial();
        let serial = hex(&raw[raw.iter().position(|b| *b != 0).unwrap_or(raw.len())..]);
        out.gauge_with(
            "probe_ssl_last_chain_info",
            "Contains SSL leaf certificate information",
            &[
                ("fingerprint_sha256", &fingerprint),
                ("subject", &subject),
                ("issuer", &issuer),
                ("subjectalternative", &sans),
                ("serialnumber", &serial),
            ],
            1.0,
        );
    }
    out.gauge_with(
        "probe_tls_version_info",
        "Returns the TLS version used or NaN when unknown",
        &[("version", tls_version_name(h.version))],
        1.0,
    );
    out.gauge_with(
        "probe_tls_cipher_info",
        "Returns the TLS cipher negotiated during handshake",
        &[("cipher", &cipher_name(h.cipher))],
        1.0,
    );
}

/// Go's `tls.CipherSuiteName`: IANA names (`TLS_AES_128_GCM_SHA256`,
/// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`), `0xABCD` when unknown.
pub fn cipher_name(c: Option<rustls::CipherSuite>) -> String {
    let Some(c) = c else {
        return "unknown".into();
    };
    match c.as_str() {
        Some(n) => match n.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => n.to_string(),
        },
        None => format!("0x{:04X}", u16::from(c)),
    }
}

/// Go's names for TLS versions (`TLS 1.3`).
pub fn tls_version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_0) => "TLS 1.0",
        Some(rustls::ProtocolVersion::TLSv1_1) => "TLS 1.1",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        _ => "unknown",
    }
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn dns_names(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = c.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// The attribute types Go parses into named fields, in the order `pkix.Name.ToRDNSequence`
/// emits them, with their short names.
const STANDARD: [(&str, &str); 9] = [
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];

/// A name as Go's `pkix.Name.String()` writes it: the parsed standard attributes in Go's fixed
/// order (multiple values of one type joined with `+`), other attributes first in the sequence
/// (so last in the string) as `OID=#HEX`, the whole sequence reversed, RFC 2253 escaping.
pub fn go_name(name: &X509Name<'_>) -> String {
    // (type, value) as Go keeps them.
    let mut standard: Vec<Vec<String>> = vec![Vec::new(); STANDARD.len()];
    let mut rdns: Vec<Vec<String>> = Vec::new();
    for rdn in name.iter() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().to_id_string();
            match STANDARD.iter().position(|(o, _)| *o == oid) {
                Some(i) => {
                    let Ok(v) = atv.as_str() else { continue };
                    // Go keeps the last CN and SERIALNUMBER only.
                    if matches!(STANDARD[i].1, "CN" | "SERIALNUMBER") {
                        standard[i] = vec![v.to_string()];
                    } else {
                        standard[i].push(v.to_string());
                    }
                }
                None => {
                    let v = match atv.as_str() {
                        Ok(s) => go_asn1_string(s),
                        Err(_) => {
                            let a = atv.attr_value();
                            let mut der = vec![a.header.tag().0 as u8];
                            der_len(a.data.len(), &mut der);
                            der.extend_from_slice(a.data);
                            der
                        }
                    };
                    rdns.push(vec![format!("{oid}=#{}", hex(&v))]);
                }
            }
        }
    }
    for (i, (_, short)) in STANDARD.iter().enumerate() {
        if !standard[i].is_empty() {
            rdns.push(
                standard[i]
                    .iter()
                    .map(|v| format!("{short}={}", escape_rdn(v)))
                    .collect(),
            );
        }
    }
    rdns.iter()
        .rev()
        .map(|r| r.join("+"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How Go's `asn1.Marshal` encodes a string: PrintableString when every character allows it,
/// UTF8String otherwise.
fn go_asn1_string(s: &str) -> Vec<u8> {
    let printable = s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                ' ' | '\'' | '(' | ')' | '+' | ',' | '-' | '.' | '/' | ':' | '=' | '?'
            )
    });
    let mut der = vec![if printable { 0x13 } else { 0x0c }];
    der_len(s.len(), &mut der);
    der.extend_from_slice(s.as_bytes());
    der
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 128 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// RFC 2253 escaping as Go does it.
fn escape_rdn(v: &str) -> String {
    let n = v.chars().count();
    let mut out = String::with_capacity(v.len());
    for (k, c) in v.chars().enumerate() {
        let esc = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == n - 1,
            '#' => k == 0,
            _ => false,
        };
        if esc {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn names_are_written_like_go_pkix_name_string() {
        let mut p = rcgen::CertificateParams::new(vec!["a.example".into(), "b.example".into()])
            .expect("params");
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        dn.push(rcgen::DnType::CommonName, "a.example");
        p.distinguished_name = dn;
        let der = cert(p);
        let (_, c) = X509Certificate::from_der(&der).expect("parses");
        assert_eq!(go_name(c.subject()), "CN=a.example,O=Acme\\, Inc.,C=US");
        assert_eq!(dns_names(&c), vec!["a.example", "b.example"]);
    }

    #[test]
    fn insecure_chains_report_go_zero_time() {
        let der = cert(rcgen::CertificateParams::new(vec!["x".into()]).expect("params"));
        let h = Handshake {
            certs: vec![rustls::pki_types::CertificateDer::from(der)],
            version: Some(rustls::ProtocolVersion::TLSv1_3),
            cipher: Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
        };
        let mut out = Output::new();
        h.report(&mut out, false, true);
        assert_eq!(
            out.value("probe_ssl_last_chain_expiry_timestamp_seconds"),
            Some(GO_ZERO_TIME)
        );
        assert!(out.value("probe_ssl_earliest_cert_expiry").unwrap() > 1.0e9);
        let mut s = String::new();
        out.render(&mut s);
        assert!(
            s.contains("probe_tls_version_info{version=\"TLS 1.3\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("probe_tls_cipher_info{cipher=\"TLS_AES_128_GCM_SHA256\"} 1"),
            "{s}"
        );
    }
}
