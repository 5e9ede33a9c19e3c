//! What the native HTTP prober probes: [`HttpCheck`] (the URL, the request, the checks a
//! response must pass and the connection settings), checked once when the config is loaded,
//! and the body checks run against an answer.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use regex::Regex;

use crate::net::tls::TlsOptions;
use crate::probe::{Fail, Reason};

/// Default cap on the response body read by a probe.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// One HTTP check: what the native prober requests and what the answer must look like.
///
/// Equality is derived (regular expressions compare by their source): two checks are equal when
/// they probe the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    /// The URL probed.
    pub url: ProbeUrl,
    /// HTTP method.
    pub method: Method,
    /// Request headers (user-supplied; `Host`, `User-Agent` and `Connection` are added by the
    /// prober unless set here).
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Checks a response must pass.
    pub expect: Expect,
    /// Reuse one connection across probes.
    pub keep_alive: bool,
    /// Cap on the response body read.
    pub body_limit: usize,
    /// TLS settings (used for `https://`).
    pub tls: TlsOptions,
}

impl HttpCheck {
    /// A `GET` of `url` with the defaults: 2xx accepted, a fresh connection per probe, a body
    /// cap of [`DEFAULT_BODY_LIMIT`], the system's trust roots.
    pub fn new(url: &str) -> Result<HttpCheck, String> {
        Ok(HttpCheck {
            url: ProbeUrl::parse(url)?,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            expect: Expect::default(),
            keep_alive: false,
            body_limit: DEFAULT_BODY_LIMIT,
            tls: TlsOptions::default(),
        })
    }
}

/// A checked probe URL: scheme, host, port and the request target, split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// The URL as written (normalised).
    pub full: String,
    /// `https` when true.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// `Host` header value (`host` or `host:port`).
    pub authority: String,
    /// Path and query (`/health?x=1`).
    pub path_and_query: String,
    /// The host parsed as an IP address, when it is one (no DNS needed).
    pub ip: Option<std::net::IpAddr>,
}

impl ProbeUrl {
    /// Parses and checks an `http://` or `https://` URL.
    pub fn parse(s: &str) -> Result<ProbeUrl, String> {
        let u = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported (use http or https)"
                ))
            }
        };
        let (host, ip) = match u.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), None),
            Some(url::Host::Ipv4(a)) => (a.to_string(), Some(std::net::IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => (a.to_string(), Some(std::net::IpAddr::V6(a))),
            None => return Err("the URL has no host".into()),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err(
                "credentials in the URL are not supported (use an Authorization header)".into(),
            );
        }
        let port = u
            .port_or_known_default()
            .expect("http and https have default ports");
        let authority = match (u.port(), ip) {
            (None, Some(std::net::IpAddr::V6(a))) => format!("[{a}]"),
            (None, _) => host.clone(),
            (Some(p), Some(std::net::IpAddr::V6(a))) => format!("[{a}]:{p}"),
            (Some(p), _) => format!("{host}:{p}"),
        };
        let mut path_and_query = u.path().to_string();
        if let Some(q) = u.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(ProbeUrl {
            full: u.to_string(),
            tls,
            host,
            port,
            authority,
            path_and_query,
            ip,
        })
    }
}

impl fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// What a successful response looks like.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Accepted status ranges (inclusive); default 200–299.
    pub status: Vec<(u16, u16)>,
    /// JSON path (split on dots) → expected value.
    pub json: Vec<(Vec<String>, serde_json::Value)>,
    /// Regular expression the body must match.
    pub body: Option<Regex>,
    /// Slowest acceptable probe.
    pub max_latency: Option<Duration>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            status: vec![(200, 299)],
            json: Vec::new(),
            body: None,
            max_latency: None,
        }
    }
}

/// Field by field, regular expressions by their source (`Regex` has no equality). The
/// destructuring names every field, so a new one cannot be left out.
impl PartialEq for Expect {
    fn eq(&self, other: &Self) -> bool {
        let Expect {
            status,
            json,
            body,
            max_latency,
        } = self;
        *status == other.status
            && *json == other.json
            && body.as_ref().map(Regex::as_str) == other.body.as_ref().map(Regex::as_str)
            && *max_latency == other.max_latency
    }
}

impl Expect {
    /// True when the body must be read in full before the verdict.
    pub fn needs_body(&self) -> bool {
        self.body.is_some() || !self.json.is_empty()
    }

    /// True when `code` is accepted.
    pub fn status_ok(&self, code: u16) -> bool {
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// The `expect.body` regex and `expect.json` fields, against the whole body.
pub(super) fn check_body(expect: &Expect, body: &[u8]) -> Result<(), Fail> {
    if let Some(re) = &expect.body {
        let text = String::from_utf8_lossy(body);
        if !re.is_match(&text) {
            return Err(Fail::new(
                Reason::BodyMismatch,
                format!("body does not match /{}/", re.as_str()),
            ));
        }
    }
    if !expect.json.is_empty() {
        check_json(&expect.json, body)?;
    }
    Ok(())
}

/// Checks every expected JSON field.
fn check_json(expect: &[(Vec<String>, serde_json::Value)], body: &[u8]) -> Result<(), Fail> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Fail::new(Reason::JsonMismatch, format!("body is not JSON: {e}")))?;
    for (path, want) in expect {
        let mut cur = &doc;
        for key in path {
            let next = match cur {
                serde_json::Value::Object(m) => m.get(key.as_str()),
                serde_json::Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            match next {
                Some(v) => cur = v,
                None => {
                    return Err(Fail::new(
                        Reason::JsonMismatch,
                        format!("JSON field `{}` is missing", path.join(".")),
                    ))
                }
            }
        }
        if !json_equal(cur, want) {
            return Err(Fail::new(
                Reason::JsonMismatch,
                format!("JSON field `{}` is {cur}, expected {want}", path.join(".")),
            ));
        }
    }
    Ok(())
}

/// Equality that treats `1` and `1.0` as the same number.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_walk_objects_and_arrays() {
        let body = br#"{"status":"healthy","items":[{"id":7}],"n":1.0}"#;
        let ok = vec![
            (vec!["status".to_string()], serde_json::json!("healthy")),
            (
                vec!["items".into(), "0".into(), "id".into()],
                serde_json::json!(7),
            ),
            (vec!["n".to_string()], serde_json::json!(1)),
        ];
        assert!(check_json(&ok, body).is_ok());
        let bad = vec![(vec!["status".to_string()], serde_json::json!("down"))];
        let f = check_json(&bad, body).expect_err("mismatch");
        assert_eq!(f.reason, Reason::JsonMismatch);
        assert!(f.detail.contains("`status`"), "{}", f.detail);
        let missing = vec![(vec!["nope".to_string()], serde_json::json!(1))];
        assert!(check_json(&missing, body)
            .expect_err("missing")
            .detail
            .contains("missing"));
        assert_eq!(
            check_json(&ok, b"not json").expect_err("not json").reason,
            Reason::JsonMismatch
        );
    }
}
