//! The `http` prober's module options — every field blackbox's `http:` section has — and their
//! compiled form, [`HttpProbe`], built once at config load (regexps, CEL programs, the TLS client
//! config, auth), so a probe only runs.
//!
//! The probe itself is in `http_probe` (its entry point is `http_probe::probe`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, Method};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::http_client::ser_secret_map;
pub use super::http_client::{Auth, Authorization, BasicAuth, OAuth2Config, Proxies};
use super::ser_secret;
use super::tcp::ser_ip_protocol;
use super::{IpProtocol, TlsConfig};

/// One `fail_if_header_matches` / `fail_if_header_not_matches` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderMatch {
    /// Response header name (case-insensitive).
    pub header: String,
    /// Regexp matched against each of the header's values.
    pub regexp: String,
    /// A missing header passes instead of failing.
    #[serde(skip_serializing_if = "is_false")]
    pub allow_missing: bool,
}

/// One `http_headers` entry: the header's values, in this order.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpHeader {
    /// Plain values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Secret values (shown as `<secret>`).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "ser_secrets")]
    pub secrets: Vec<String>,
    /// Files whose contents (trailing newline trimmed) are values, read at each probe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

fn ser_secrets<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for _ in v {
        seq.serialize_element("<secret>")?;
    }
    seq.end()
}

/// `body_size_limit`: bytes, or a number with a unit (`1MB`, `512KiB`; blackbox's units are
/// all powers of 1024). 0 or negative means no limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "a size: bytes (1048576) or a number with a unit (\"1MB\")"
)]
pub enum ByteSize {
    /// Bytes.
    Bytes(i64),
    /// With a unit.
    Text(String),
}

/// blackbox's `http:` module options, with its field names.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpModule {
    /// Accepted status codes; empty means any 2xx.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub valid_status_codes: Vec<Spanned<i64>>,
    /// Accepted protocol versions as the response states them (`HTTP/1.1`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub valid_http_versions: Vec<String>,
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// With a proxy, let the proxy resolve the target instead.
    #[serde(skip_serializing_if = "is_false")]
    pub skip_resolve_phase_with_proxy: bool,
    /// The old spelling of `follow_redirects: false`.
    #[serde(skip_serializing)]
    pub no_follow_redirects: Option<bool>,
    /// Fail when the final response came over TLS.
    #[serde(skip_serializing_if = "is_false")]
    pub fail_if_ssl: bool,
    /// Fail when the final response did not come over TLS.
    #[serde(skip_serializing_if = "is_false")]
    pub fail_if_not_ssl: bool,
    /// Request method (GET).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Spanned<String>>,
    /// Request headers; `Host` sets the Host header (and the TLS server name).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// The HTTP client's headers (`http_headers`, blackbox 0.25+): per header, plain `values`,
    /// `secrets` (shown as `<secret>`) and `files` whose contents are read at each probe.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub http_headers: BTreeMap<String, Spanned<HttpHeader>>,
    /// Fail when the body matches any of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_body_matches_regexp: Vec<Spanned<String>>,
    /// Fail unless the body matches every one of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_body_not_matches_regexp: Vec<Spanned<String>>,
    /// Fail when a header matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_header_matches: Vec<Spanned<HeaderMatch>>,
    /// Fail unless a header matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_header_not_matches: Vec<Spanned<HeaderMatch>>,
    /// CEL over the JSON body (root variable `body`): fail when it is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_if_body_json_matches_cel: Option<Spanned<String>>,
    /// CEL over the JSON body (root variable `body`): fail unless it is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_if_body_json_not_matches_cel: Option<Spanned<String>>,
    /// Request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Request body from a file (read at each probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_file: Option<Spanned<String>>,
    /// Basic authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<Spanned<BasicAuth>>,
    /// `Authorization: TYPE CREDENTIALS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Spanned<Authorization>>,
    /// OAuth2 client credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<Spanned<OAuth2Config>>,
    /// `Authorization: Bearer TOKEN` (shown as `<secret>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        serialize_with = "ser_secret"
    )]
    pub bearer_token: String,
    /// File holding the bearer token (read at each probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    /// TLS settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<Spanned<TlsConfig>>,
    /// An `http://` proxy (CONNECT for `https://` targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<Spanned<String>>,
    /// Hosts not proxied (`proxy_url` only): domains, `.suffix`, IPs, CIDRs, `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// Use `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (loopback never proxied).
    #[serde(skip_serializing_if = "is_false")]
    pub proxy_from_environment: bool,
    /// Headers sent to the proxy with `CONNECT` (shown as `<secret>`).
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "ser_secret_map"
    )]
    pub proxy_connect_header: BTreeMap<String, Vec<String>>,
    /// Any status code passes the status check (the other checks still run).
    #[serde(skip_serializing_if = "is_false")]
    pub accept_any_response: bool,
    /// Follow redirects, at most 10 (default true).
    pub follow_redirects: bool,
    /// Offer HTTP/2 over TLS (ALPN `h2`, then `http/1.1`); default true, as blackbox.
    pub enable_http2: bool,
    /// Decompress the body: `gzip`, `deflate`, `br` or `identity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<Spanned<String>>,
    /// Most body bytes read (after decompression); more fails the probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_size_limit: Option<Spanned<ByteSize>>,
}

impl Default for HttpModule {
    fn default() -> Self {
        HttpModule {
            valid_status_codes: Vec::new(),
            valid_http_versions: Vec::new(),
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            skip_resolve_phase_with_proxy: false,
            no_follow_redirects: None,
            fail_if_ssl: false,
            fail_if_not_ssl: false,
            method: None,
            headers: BTreeMap::new(),
            http_headers: BTreeMap::new(),
            fail_if_body_matches_regexp: Vec::new(),
            fail_if_body_not_matches_regexp: Vec::new(),
            fail_if_header_matches: Vec::new(),
            fail_if_header_not_matches: Vec::new(),
            fail_if_body_json_matches_cel: None,
            fail_if_body_json_not_matches_cel: None,
            body: None,
            body_file: None,
            basic_auth: None,
            authorization: None,
            oauth2: None,
            bearer_token: String::new(),
            bearer_token_file: None,
            tls_config: None,
            proxy_url: None,
            no_proxy: None,
            proxy_from_environment: false,
            proxy_connect_header: BTreeMap::new(),
            accept_any_response: false,
            follow_redirects: true,
            enable_http2: true,
            compression: None,
            body_size_limit: None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A problem found while compiling an `http:` section: the field below `http.`, where (0 =
/// at the section), what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field below `http.` (`fail_if_body_matches_regexp[1]`).
    pub field: String,
    /// 1-based line, 0 when only the section's line is known.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What is wrong.
    pub message: String,
}

/// A compiled header check.
#[derive(Debug, Clone)]
pub struct HeaderCheck {
    /// Header name.
    pub name: HeaderName,
    /// As written (for logs).
    pub written: String,
    /// The regexp.
    pub re: Regex,
    /// A missing header passes.
    pub allow_missing: bool,
}

/// A compiled CEL expression over the JSON body.
#[derive(Debug)]
pub struct Cel {
    /// As written.
    pub source: String,
    /// The parsed program.
    pub program: cel::Program,
}

/// Where the request body comes from.
#[derive(Debug, Clone)]
pub enum ReqBody {
    /// None.
    Empty,
    /// `body`.
    Inline(Bytes),
    /// `body_file`, read at each probe.
    File(PathBuf),
}

/// `compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not set or `identity`: the body is read as it comes.
    Identity,
    /// `gzip` (multi-member, like Go's reader).
    Gzip,
    /// `deflate`: raw DEFLATE, as blackbox reads it (Go's `compress/flate`).
    Deflate,
    /// `br`.
    Brotli,
}

/// The `http:` options, checked and compiled.
#[derive(Debug)]
pub struct HttpProbe {
    /// Accepted codes; empty = any 2xx.
    pub valid_status_codes: Vec<i64>,
    /// Any status passes (`accept_any_response`).
    pub accept_any_response: bool,
    /// Accepted `HTTP/x.y` strings; empty = any.
    pub valid_http_versions: Vec<String>,
    /// Preferred family.
    pub ip_protocol: IpProtocol,
    /// Fall back to the other family.
    pub ip_protocol_fallback: bool,
    /// Follow redirects.
    pub follow_redirects: bool,
    /// Offer HTTP/2 over TLS.
    pub enable_http2: bool,
    /// Fail over TLS.
    pub fail_if_ssl: bool,
    /// Fail without TLS.
    pub fail_if_not_ssl: bool,
    /// Method.
    pub method: Method,
    /// Request headers other than `Host`.
    pub headers: HeaderMap,
    /// `http_headers` whose values come from files, read at each probe: the header and its
    /// files (paths resolved).
    pub header_files: Vec<(HeaderName, Vec<PathBuf>)>,
    /// The `Host` header from `headers`.
    pub host: Option<String>,
    /// Request body.
    pub body: ReqBody,
    /// `fail_if_body_matches_regexp`.
    pub body_fail: Vec<Regex>,
    /// `fail_if_body_not_matches_regexp`.
    pub body_need: Vec<Regex>,
    /// `fail_if_header_matches`.
    pub header_fail: Vec<HeaderCheck>,
    /// `fail_if_header_not_matches`.
    pub header_need: Vec<HeaderCheck>,
    /// `fail_if_body_json_matches_cel`.
    pub cel_fail: Option<Cel>,
    /// `fail_if_body_json_not_matches_cel`.
    pub cel_need: Option<Cel>,
    /// Authentication.
    pub auth: Auth,
    /// The TLS client config, built once; when a file it needs cannot be read at load (as
    /// blackbox, which reads them at probe time), the error, and the settings to retry with.
    pub tls: Result<Arc<rustls::ClientConfig>, (String, TlsConfig)>,
    /// `tls_config.server_name`.
    pub tls_server_name: Option<String>,
    /// `tls_config.insecure_skip_verify`.
    pub tls_insecure: bool,
    /// Lowest acceptable TLS version (checked after the handshake).
    pub tls_min: Option<rustls::ProtocolVersion>,
    /// Highest acceptable TLS version (checked after the handshake).
    pub tls_max: Option<rustls::ProtocolVersion>,
    /// Proxies.
    pub proxies: Proxies,
    /// Body decoding.
    pub compression: Compression,
    /// Cap on the (decompressed) body.
    pub body_size_limit: Option<u64>,
}

impl HttpProbe {
    /// True when the body must be kept (regexps or CEL look at it).
    pub fn needs_body(&self) -> bool {
        !self.body_fail.is_empty()
            || !self.body_need.is_empty()
            || self.cel_fail.is_some()
            || self.cel_need.is_some()
    }

    /// True when a CEL check is configured (`probe_failed_due_to_cel` is reported).
    pub fn has_cel(&self) -> bool {
        self.cel_fail.is_some() || self.cel_need.is_some()
    }
}

/// The ALPN protocols offered over TLS: HTTP/2 first when `enable_http2`, as Go's client.
pub fn alpn(enable_http2: bool) -> &'static [&'static [u8]] {
    if enable_http2 {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    }
}

/// blackbox's `body_size_limit` units (alecthomas/units `Base2Bytes`: every unit is a power of
/// 1024, `KB` and `KiB` alike).
pub fn parse_byte_size(v: &ByteSize) -> Result<i64, String> {
    let s = match v {
        ByteSize::Bytes(n) => return Ok(*n),
        ByteSize::Text(s) => s.trim(),
    };
    let bad = || format!("`{s}` is not a size; write e.g. `1MB`, `512KiB` or `1048576`");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let pow = match unit.trim() {
        "" | "B" => 0,
        "KB" | "KiB" | "kB" => 1,
        "MB" | "MiB" => 2,
        "GB" | "GiB" => 3,
        "TB" | "TiB" => 4,
        "PB" | "PiB" => 5,
        "EB" | "EiB" => 6,
        _ => return Err(bad()),
    };
    let v = n * 1024f64.powi(pow);
    if !v.is_finite() || v.abs() > 9.0e18 {
        return Err(bad());
    }
    Ok(v as i64)
}

/// blackbox's check that `compression` is one the `Accept-Encoding` header accepts (with a
/// non-zero quality), `*` included.
pub fn accept_encoding_allows(compression: &str, accept_encoding: &str) -> bool {
    if compression.is_empty() || accept_encoding.is_empty() {
        return true;
    }
    let mut encs: Vec<(String, f32)> = accept_encoding
        .split(',')
        .map(|part| match part.rfind(';') {
            None => (part.trim().to_string(), 1.0),
            Some(i) => {
                let q = part[i + 1..].trim();
                let q = q.strip_prefix("q=").unwrap_or(q);
                let q = q
                    .parse::<f64>()
                    .map(|q| ((q * 1000.0).round() / 1000.0) as f32)
                    .unwrap_or(0.0);
                (part[..i].trim().to_string(), q)
            }
        })
        .collect();
    // Stable, highest quality first.
    encs.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    encs.iter()
        .find(|(e, _)| e == compression || e == "*")
        .is_some_and(|(_, q)| *q > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_size_units_are_powers_of_1024() {
        let t = |s: &str| parse_byte_size(&ByteSize::Text(s.into()));
        assert_eq!(t("1MB"), Ok(1 << 20));
        assert_eq!(t("1MiB"), Ok(1 << 20));
        assert_eq!(t("512KB"), Ok(512 << 10));
        assert_eq!(t("100"), Ok(100));
        assert_eq!(parse_byte_size(&ByteSize::Bytes(-1)), Ok(-1));
        assert!(t("1 parsec").is_err());
    }

    #[test]
    fn accept_encoding_must_allow_the_compression() {
        assert!(accept_encoding_allows("gzip", "gzip"));
        assert!(accept_encoding_allows("gzip", "br, gzip;q=0.5"));
        assert!(accept_encoding_allows("gzip", "*"));
        assert!(!accept_encoding_allows("gzip", "br"));
        assert!(!accept_encoding_allows("gzip", "gzip;q=0"));
        assert!(accept_encoding_allows("", "br"));
    }
}
