//! The `http` module's load-time step: every option checked (each problem names its field and
//! position) and compiled once — regexps, CEL programs, headers, the request body, the TLS
//! client config, auth and proxies — into an [`HttpProbe`], so a probe only runs.

use std::path::Path;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use regex::Regex;
use serde_saphyr::{Location, Spanned};

use super::http::{
    accept_encoding_allows, alpn, parse_byte_size, Cel, Compression, HeaderCheck, HeaderMatch,
    HttpModule, HttpProbe, Problem, ReqBody,
};
use super::http_client::relative_to;

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// Records `message` at `field` (below `http.`), at `at` when known.
    fn add(&mut self, field: String, at: Option<&Location>, message: String) {
        let (line, column) = at.map(|a| (a.line(), a.column())).unwrap_or((0, 0));
        self.0.push(Problem {
            field,
            line,
            column,
            message,
        });
    }
}

impl HttpProbe {
    /// Checks and compiles `m`; relative paths are relative to `file`'s directory.
    pub fn compile(m: &HttpModule, file: &Path) -> Result<HttpProbe, Vec<Problem>> {
        compile(m, file)
    }
}

/// Checks and compiles `m`; relative paths are relative to `file`'s directory.
fn compile(m: &HttpModule, file: &Path) -> Result<HttpProbe, Vec<Problem>> {
    let mut p = Problems::default();
    let valid_status_codes = status_codes(m, &mut p);
    let method = method(m, &mut p);
    let (headers, host) = request_headers(m, &mut p);
    let header_files = header_files(m, file, &mut p);
    let body_fail = regexps(
        &m.fail_if_body_matches_regexp,
        "fail_if_body_matches_regexp",
        &mut p,
    );
    let body_need = regexps(
        &m.fail_if_body_not_matches_regexp,
        "fail_if_body_not_matches_regexp",
        &mut p,
    );
    let header_fail = header_checks(&m.fail_if_header_matches, "fail_if_header_matches", &mut p);
    let header_need = header_checks(
        &m.fail_if_header_not_matches,
        "fail_if_header_not_matches",
        &mut p,
    );
    let cel_fail = cel(
        &m.fail_if_body_json_matches_cel,
        "fail_if_body_json_matches_cel",
        &mut p,
    );
    let cel_need = cel(
        &m.fail_if_body_json_not_matches_cel,
        "fail_if_body_json_not_matches_cel",
        &mut p,
    );
    let body = request_body(m, file, &mut p);
    let auth = {
        let mut bad = |f: String, at: Option<&Location>, msg: String| p.add(f, at, msg);
        super::http_settings::auth(m, file, &mut bad)
    };
    let proxies = {
        let mut bad = |f: String, at: Option<&Location>, msg: String| p.add(f, at, msg);
        super::http_settings::proxies(m, &mut bad)
    };
    let compression = compression(m, &headers, &mut p);
    let body_size_limit = body_size_limit(m, &mut p);
    let tls = tls(m, file, &mut p);
    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(HttpProbe {
        valid_status_codes,
        valid_http_versions: m.valid_http_versions.clone(),
        ip_protocol: m.preferred_ip_protocol,
        ip_protocol_fallback: m.ip_protocol_fallback,
        accept_any_response: m.accept_any_response,
        enable_http2: m.enable_http2,
        follow_redirects: match m.no_follow_redirects {
            Some(no) => !no,
            None => m.follow_redirects,
        },
        fail_if_ssl: m.fail_if_ssl,
        fail_if_not_ssl: m.fail_if_not_ssl,
        method,
        headers,
        header_files,
        host,
        body,
        body_fail,
        body_need,
        header_fail,
        header_need,
        cel_fail,
        cel_need,
        auth,
        tls: tls.config,
        tls_server_name: tls.server_name,
        tls_insecure: tls.insecure,
        tls_min: tls.min,
        tls_max: tls.max,
        proxies,
        compression,
        body_size_limit,
    })
}

fn status_codes(m: &HttpModule, p: &mut Problems) -> Vec<i64> {
    let mut codes = Vec::new();
    for (i, c) in m.valid_status_codes.iter().enumerate() {
        if !(100..=999).contains(&c.value) {
            p.add(
                format!("valid_status_codes[{i}]"),
                Some(&c.referenced),
                format!("{} is not an HTTP status code", c.value),
            );
        }
        codes.push(c.value);
    }
    codes
}

fn method(m: &HttpModule, p: &mut Problems) -> Method {
    match &m.method {
        None => Method::GET,
        Some(s) if s.value.is_empty() => Method::GET,
        Some(s) => Method::from_bytes(s.value.as_bytes()).unwrap_or_else(|_| {
            let msg = format!("`{}` is not an HTTP method", s.value);
            p.add("method".into(), Some(&s.referenced), msg);
            Method::GET
        }),
    }
}

/// `headers` and the plain and secret values of `http_headers`; the `Host` header apart.
fn request_headers(m: &HttpModule, p: &mut Problems) -> (HeaderMap, Option<String>) {
    let mut headers = HeaderMap::new();
    let mut host = None;
    for (k, v) in &m.headers {
        let field = format!("headers.{k}");
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            let msg = format!("`{k}` is not a valid header name");
            p.add(field, Some(&v.referenced), msg);
            continue;
        };
        if name == http::header::HOST {
            host = Some(v.value.clone());
            continue;
        }
        match HeaderValue::from_str(&v.value) {
            Ok(val) => {
                headers.insert(name, val);
            }
            Err(_) => p.add(
                field,
                Some(&v.referenced),
                "the value holds characters HTTP does not allow".into(),
            ),
        }
    }
    for (k, h) in &m.http_headers {
        let field = format!("http_headers.{k}");
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            let msg = format!("`{k}` is not a valid header name");
            p.add(field, Some(&h.referenced), msg);
            continue;
        };
        let plain = h.value.values.iter().map(|v| (v, "values"));
        let secret = h.value.secrets.iter().map(|v| (v, "secrets"));
        for (v, list) in plain.chain(secret) {
            match HeaderValue::from_str(v) {
                Ok(mut val) => {
                    val.set_sensitive(list == "secrets");
                    headers.append(name.clone(), val);
                }
                // The value itself is never repeated: it may be a secret.
                Err(_) => p.add(
                    format!("{field}.{list}"),
                    Some(&h.referenced),
                    "a value holds characters HTTP does not allow".into(),
                ),
            }
        }
    }
    (headers, host)
}

/// The `files` of `http_headers`, resolved; like blackbox, they are read at each probe, so a
/// file that is not there yet fails the probes (with a warning now), not the config.
fn header_files(
    m: &HttpModule,
    file: &Path,
    p: &mut Problems,
) -> Vec<(HeaderName, Vec<std::path::PathBuf>)> {
    let mut out = Vec::new();
    for (k, h) in &m.http_headers {
        if h.value.files.is_empty() {
            continue;
        }
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            continue; // reported by request_headers
        };
        let mut paths = Vec::new();
        for (i, f) in h.value.files.iter().enumerate() {
            if f.is_empty() {
                let field = format!("http_headers.{k}.files[{i}]");
                p.add(field, Some(&h.referenced), "the path is empty".into());
                continue;
            }
            let path = relative_to(file, f);
            if let Err(e) = std::fs::metadata(&path) {
                tracing::warn!(file = %path.display(), error = %e, header = %k, "http.http_headers file cannot be read; probes with this module will fail until it can");
            }
            paths.push(path);
        }
        out.push((name, paths));
    }
    out
}

fn regexps(list: &[Spanned<String>], name: &str, p: &mut Problems) -> Vec<Regex> {
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        match Regex::new(&r.value) {
            Ok(re) => out.push(re),
            Err(e) => p.add(
                format!("{name}[{i}]"),
                Some(&r.referenced),
                format!("invalid regular expression: {}", one_line(&e.to_string())),
            ),
        }
    }
    out
}

fn header_checks(list: &[Spanned<HeaderMatch>], name: &str, p: &mut Problems) -> Vec<HeaderCheck> {
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let Ok(hn) = HeaderName::from_bytes(h.value.header.as_bytes()) else {
            p.add(
                format!("{name}[{i}].header"),
                Some(&h.referenced),
                format!("`{}` is not a valid header name", h.value.header),
            );
            continue;
        };
        match Regex::new(&h.value.regexp) {
            Ok(re) => out.push(HeaderCheck {
                name: hn,
                written: h.value.header.clone(),
                re,
                allow_missing: h.value.allow_missing,
            }),
            Err(e) => p.add(
                format!("{name}[{i}].regexp"),
                Some(&h.referenced),
                format!("invalid regular expression: {}", one_line(&e.to_string())),
            ),
        }
    }
    out
}

fn cel(c: &Option<Spanned<String>>, name: &str, p: &mut Problems) -> Option<Cel> {
    let c = c.as_ref()?;
    match cel::Program::compile(&c.value) {
        Ok(program) => Some(Cel {
            source: c.value.clone(),
            program,
        }),
        Err(e) => {
            p.add(
                name.to_string(),
                Some(&c.referenced),
                format!("invalid CEL expression: {}", one_line(&e.to_string())),
            );
            None
        }
    }
}

fn request_body(m: &HttpModule, file: &Path, p: &mut Problems) -> ReqBody {
    match (&m.body, &m.body_file) {
        (Some(b), Some(f)) if !b.is_empty() => {
            p.add(
                "body_file".into(),
                Some(&f.referenced),
                "setting body and body_file both are not allowed".into(),
            );
            ReqBody::Empty
        }
        (_, Some(f)) => {
            // Read at each probe, as blackbox does: a file that is not there yet fails the
            // probes, not the config (blackbox's own example names one).
            let path = relative_to(file, &f.value);
            if let Err(e) = std::fs::metadata(&path) {
                tracing::warn!(file = %path.display(), error = %e, "http.body_file cannot be read; probes with this module will fail until it can");
            }
            ReqBody::File(path)
        }
        (Some(b), None) if !b.is_empty() => ReqBody::Inline(Bytes::from(b.clone())),
        _ => ReqBody::Empty,
    }
}

fn compression(m: &HttpModule, headers: &HeaderMap, p: &mut Problems) -> Compression {
    let Some(c) = m.compression.as_ref() else {
        return Compression::Identity;
    };
    let kind = match c.value.to_ascii_lowercase().as_str() {
        "" | "identity" => Compression::Identity,
        "gzip" => Compression::Gzip,
        "deflate" => Compression::Deflate,
        "br" => Compression::Brotli,
        other => {
            p.add(
                "compression".into(),
                Some(&c.referenced),
                format!("unsupported compression `{other}` (use gzip, deflate, br or identity)"),
            );
            Compression::Identity
        }
    };
    if let Some(ae) = headers.get(http::header::ACCEPT_ENCODING) {
        let ae = ae.to_str().unwrap_or("");
        if !accept_encoding_allows(&c.value, ae) {
            p.add(
                "headers.Accept-Encoding".into(),
                Some(&c.referenced),
                format!(
                    "invalid configuration \"Accept-Encoding: {ae}\", \"compression: {}\": the server would not send {} content",
                    c.value, c.value
                ),
            );
        }
    }
    kind
}

fn body_size_limit(m: &HttpModule, p: &mut Problems) -> Option<u64> {
    let s = m.body_size_limit.as_ref()?;
    match parse_byte_size(&s.value) {
        Ok(n) if n <= 0 => None,
        Ok(n) => Some(n as u64),
        Err(msg) => {
            p.add("body_size_limit".into(), Some(&s.referenced), msg);
            None
        }
    }
}

/// The compiled `tls_config`.
struct Tls {
    config: Result<std::sync::Arc<rustls::ClientConfig>, (String, super::TlsConfig)>,
    server_name: Option<String>,
    insecure: bool,
    min: Option<rustls::ProtocolVersion>,
    max: Option<rustls::ProtocolVersion>,
}

fn tls_version(
    v: &Option<String>,
    name: &str,
    at: Option<&Location>,
    p: &mut Problems,
) -> Option<rustls::ProtocolVersion> {
    match v.as_deref()? {
        "TLS10" | "TLS11" | "TLS12" => Some(rustls::ProtocolVersion::TLSv1_2),
        "TLS13" => Some(rustls::ProtocolVersion::TLSv1_3),
        other => {
            p.add(
                format!("tls_config.{name}"),
                at,
                format!("unknown TLS version `{other}` (use TLS10, TLS11, TLS12 or TLS13)"),
            );
            None
        }
    }
}

fn tls(m: &HttpModule, file: &Path, p: &mut Problems) -> Tls {
    let at = m.tls_config.as_ref().map(|t| t.referenced);
    let given = m
        .tls_config
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_default();
    let min = tls_version(&given.min_version, "min_version", at.as_ref(), p);
    let max = tls_version(&given.max_version, "max_version", at.as_ref(), p);
    let mut cfg = given.clone();
    cfg.resolve_paths(file);
    let paired =
        super::client_cert::pair(cfg.cert_file.as_deref(), cfg.key_file.as_deref()).map(|_| ());
    let config = match paired
        .clone()
        .and_then(|()| cfg.client_config(alpn(m.enable_http2)))
    {
        Ok(c) => Ok(c),
        // A CA file or client certificate that is not there (yet) fails the https probes, not
        // the config: blackbox reads them at probe time, and its own example names a CA file.
        Err(e) if paired.is_ok() && !cfg.missing_files().is_empty() => {
            tracing::warn!(error = %e, "http.tls_config cannot be used yet; https probes with this module will fail until it can");
            Err((e.to_string(), cfg.clone()))
        }
        Err(e) => {
            let msg = e.to_string();
            p.add(e.field, at.as_ref(), e.message);
            Err((msg, cfg.clone()))
        }
    };
    Tls {
        config,
        server_name: given.server_name.clone().filter(|s| !s.is_empty()),
        insecure: given.insecure_skip_verify,
        min,
        max,
    }
}

/// An error message on one line.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
