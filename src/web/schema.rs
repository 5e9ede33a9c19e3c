//! The web config file as written: exporter-toolkit's keys, read strictly (an unknown key is an
//! error naming its line and field).

use std::path::Path;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{ConfigError, ConfigErrors, Pos};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeb {
    /// TLS for every connection.
    pub tls_server_config: Option<RawTls>,
    /// Response headers and HTTP/2.
    pub http_server_config: Option<RawHttp>,
    /// User name → bcrypt hash.
    #[serde(default)]
    pub basic_auth_users: Entries<String>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// Server certificate chain (PEM file).
    pub cert_file: Option<Spanned<String>>,
    /// Server private key (PEM file).
    pub key_file: Option<Spanned<String>>,
    /// Server certificate chain, PEM inline.
    pub cert: Option<Spanned<String>>,
    /// Server private key, PEM inline.
    pub key: Option<Spanned<String>>,
    /// Client-certificate policy (Go's `tls.ClientAuthType` names).
    pub client_auth_type: Option<Spanned<String>>,
    /// CAs client certificates are verified against (PEM file).
    pub client_ca_file: Option<Spanned<String>>,
    /// The same, PEM inline.
    pub client_ca: Option<Spanned<String>>,
    /// TLS 1.2 cipher suites, Go's names.
    pub cipher_suites: Option<Spanned<Vec<String>>>,
    /// Key-exchange groups, Go's names.
    pub curve_preferences: Option<Spanned<Vec<String>>>,
    /// `TLS12` or `TLS13`.
    pub min_version: Option<Spanned<String>>,
    /// `TLS12` or `TLS13`.
    pub max_version: Option<Spanned<String>>,
    /// Accepted for compatibility: rustls always prefers the server's order.
    #[allow(dead_code)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Not supported: refused with a message rather than ignored.
    pub client_allowed_sans: Option<Spanned<Vec<String>>>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// Accepted for compatibility: watchfire's server speaks HTTP/1.1.
    #[allow(dead_code)]
    pub http2: Option<bool>,
    /// Headers added to every response.
    #[serde(default)]
    pub headers: Entries<String>,
}

/// A mapping in file order, each key with its position.
#[derive(Debug)]
pub(super) struct Entries<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Entries(Vec::new()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    out.push((k, m.next_value::<V>()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

/// The headers exporter-toolkit lets a web config set.
const ALLOWED_HEADERS: &[&str] = &[
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// One `http_server_config.headers` entry, checked.
pub(super) fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    if !ALLOWED_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "header `{name}` cannot be set here (allowed: {})",
            ALLOWED_HEADERS.join(", ")
        ));
    }
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "not a header name".to_string())?;
    let v = HeaderValue::from_str(value).map_err(|_| "not a valid header value".to_string())?;
    Ok((n, v))
}

/// Reads the file's text into [`RawWeb`]; a syntax or schema error names its line and field.
pub(super) fn parse(path: &Path, text: &str) -> Result<RawWeb, ConfigErrors> {
    if text.trim().is_empty() {
        return Ok(RawWeb::default());
    }
    serde_saphyr::from_str::<RawWeb>(text).map_err(|e| {
        let at = e.location().map(Pos::from).unwrap_or_default();
        let (field, message) = describe(&e);
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: at.line,
            column: at.column,
            field,
            message,
        }])
    })
}

/// The field and the message of a YAML or schema error, without the library's snippet.
fn describe(e: &serde_saphyr::Error) -> (String, String) {
    let mut inner = e;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    match inner {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => (
            field.clone(),
            format!(
                "unknown key `{field}` (expected one of: {})",
                expected.join(", ")
            ),
        ),
        other => {
            use serde_saphyr::MessageFormatter as _;
            let text = serde_saphyr::DefaultMessageFormatter.format_message(other);
            (
                String::new(),
                text.lines().next().unwrap_or("").trim().to_string(),
            )
        }
    }
}
