//! Intent for state-changing requests (`POST /-/reload`, failover switch and failback): a
//! browser visiting some other site must not be able to make them.
//!
//! The rule, checked in this order:
//! 1. an `Origin` header, when present, must be this server's own origin: its host and port
//!    equal to the request's `Host` (or to `--web.external-url`'s); `Origin: null` is refused;
//! 2. `Sec-Fetch-Site`, when present, must be `same-origin` or `none` (a typed URL, a tool);
//! 3. a body a browser form can send (`Content-Type` `application/x-www-form-urlencoded`,
//!    `multipart/form-data` or `text/plain`) must come with an `X-Requested-With` header, which
//!    a cross-origin page cannot add without a CORS preflight this server never grants.
//!
//! `curl -X POST URL` (no Origin, no body) passes, as with blackbox_exporter; so do scripts and
//! same-origin requests. A refusal is `403` and changes nothing.

use http::{header, HeaderMap};

/// Why a state-changing request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The `Origin` header names another site (or is `null`).
    #[error("cross-origin request refused (Origin: {0})")]
    ForeignOrigin(String),
    /// The browser says the request comes from another site.
    #[error("cross-site request refused (Sec-Fetch-Site: {0})")]
    CrossSite(String),
    /// A form-like body without the custom header.
    #[error(
        "a {0} body needs an X-Requested-With header (browser forms cannot send one); \
         `curl -X POST` with no body needs nothing"
    )]
    FormPost(String),
}

/// Checks the request's headers against the rule of this module. `external` is the
/// `host[:port]` of `--web.external-url`, when set.
pub fn check(headers: &HeaderMap, external: Option<&str>) -> Result<(), Refusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let own = origin_authority(&text).is_some_and(|(scheme_port, authority)| {
            [host, external]
                .into_iter()
                .flatten()
                .any(|h| same_authority(&authority, scheme_port, h))
        });
        if !own {
            return Err(Refusal::ForeignOrigin(text));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = String::from_utf8_lossy(site.as_bytes()).to_ascii_lowercase();
        if site != "same-origin" && site != "none" {
            return Err(Refusal::CrossSite(site));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim().to_string();
        let form = matches!(
            essence.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        );
        if form && !headers.contains_key("x-requested-with") {
            return Err(Refusal::FormPost(essence));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` → (the scheme's default port, `host[:port]` lower-cased).
fn origin_authority(origin: &str) -> Option<(u16, String)> {
    let (scheme, rest) = origin.split_once("://")?;
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains('/') {
        return None;
    }
    Some((port, rest.to_ascii_lowercase()))
}

/// Whether `a` (from an Origin, default port `default`) and `b` (a Host header) name the same
/// host and port.
fn same_authority(a: &str, default: u16, b: &str) -> bool {
    split_port(a, default) == split_port(&b.to_ascii_lowercase(), default)
}

fn split_port(authority: &str, default: u16) -> (String, u16) {
    // `[::1]:9115`, `host:9115`, `host`, `[::1]`.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => {
            (&authority[..i], authority[i + 1..].parse().ok())
        }
        _ => (authority, None),
    };
    (host.to_string(), port.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn curl_style_posts_pass() {
        assert_eq!(check(&headers(&[("host", "127.0.0.1:9115")]), None), Ok(()));
        let json = [("host", "h:1"), ("content-type", "application/json")];
        assert_eq!(check(&headers(&json), None), Ok(()));
    }

    #[test]
    fn same_origin_passes_and_foreign_origin_is_refused() {
        let same = [
            ("host", "mon.example:9115"),
            ("origin", "http://mon.example:9115"),
        ];
        assert_eq!(check(&headers(&same), None), Ok(()));
        let default_port = [("host", "mon.example"), ("origin", "https://mon.example")];
        assert_eq!(check(&headers(&default_port), None), Ok(()));
        let v6 = [("host", "[::1]:9115"), ("origin", "http://[::1]:9115")];
        assert_eq!(check(&headers(&v6), None), Ok(()));
        let foreign = [
            ("host", "mon.example:9115"),
            ("origin", "http://evil.example"),
        ];
        assert!(matches!(
            check(&headers(&foreign), None),
            Err(Refusal::ForeignOrigin(_))
        ));
        let null = [("host", "h:1"), ("origin", "null")];
        assert!(check(&headers(&null), None).is_err());
        let proxied = [("host", "10.0.0.5:9115"), ("origin", "https://mon.example")];
        assert_eq!(check(&headers(&proxied), Some("mon.example")), Ok(()));
    }

    #[test]
    fn cross_site_fetches_and_bare_forms_are_refused() {
        let site = [("host", "h:1"), ("sec-fetch-site", "cross-site")];
        assert!(matches!(
            check(&headers(&site), None),
            Err(Refusal::CrossSite(_))
        ));
        let form = [
            ("host", "h:1"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        assert!(matches!(
            check(&headers(&form), None),
            Err(Refusal::FormPost(_))
        ));
        let text = [
            ("host", "h:1"),
            ("content-type", "text/plain;charset=utf-8"),
        ];
        assert!(check(&headers(&text), None).is_err());
        let marked = [
            ("host", "h:1"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-requested-with", "curl"),
        ];
        assert_eq!(check(&headers(&marked), None), Ok(()));
    }
}
