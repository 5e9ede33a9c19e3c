//! How the proxy rewrites a request's head on its way to an instance and a response's on its way
//! back: hop-by-hop headers dropped, the forwarding headers added, the target in origin form.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use super::ConnCtx;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Whether `name` is hop-by-hop by itself (RFC 9110 §7.6.1, plus the obsolete `Keep-Alive`,
/// `Proxy-Connection` and `Transfer-Encoding`, which hyper frames itself).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Names are lowercase; the length picks the one or two candidates to compare.
    let s = name.as_str();
    match s.len() {
        2 => s == "te",
        7 => s == "trailer" || s == "upgrade",
        10 => s == "connection" || s == "keep-alive",
        16 => s == "proxy-connection",
        17 => s == "transfer-encoding",
        18 => s == "proxy-authenticate",
        19 => s == "proxy-authorization",
        _ => false,
    }
}

/// Drops the hop-by-hop headers and those that `Connection` names. One pass over the headers,
/// and a removal only for a header that is there: a typical request or response has none but
/// `Connection` (eight removals by name on every request and response were ~8 % of the proxy's
/// CPU).
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Allocates only when something is found (the common request has nothing to drop).
    let mut found: Vec<HeaderName> = Vec::new();
    for (name, value) in h.iter() {
        if *name == header::CONNECTION {
            // Headers named in Connection are hop-by-hop too.
            // `close` and `keep-alive` are options, not header names (a `Keep-Alive` header is
            // dropped anyway): skip them without building a name.
            let named = value.to_str().unwrap_or("").split(',').map(str::trim);
            found.extend(
                named
                    .filter(|n| {
                        !n.eq_ignore_ascii_case("close") && !n.eq_ignore_ascii_case("keep-alive")
                    })
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()),
            );
        }
        if is_hop_by_hop(name) && !found.contains(name) {
            found.push(name.clone());
        }
    }
    for n in &found {
        h.remove(n);
    }
}

/// Idempotent methods (RFC 9110 §9.2.2): sending one twice has the effect of sending it once.
pub(super) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Rewrites a client's request head for an instance: hop-by-hop headers out,
/// `X-Forwarded-For` (appended to), `X-Forwarded-Host`, `Forwarded` and `X-Forwarded-Proto` in,
/// HTTP/1.1, the target in origin form. `client_host` is the client's `Host`.
pub(super) fn rewrite_request(
    ctx: &ConnCtx,
    parts: &mut http::request::Parts,
    client_host: Option<&HeaderValue>,
) {
    strip_hop_by_hop(&mut parts.headers);
    let xff = match parts.headers.get(X_FORWARDED_FOR) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + ctx.client_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(ctx.client_ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
        }
        None => Some(ctx.client_ip.clone()),
    };
    if let Some(v) = xff {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    if let Some(h) = client_host {
        parts.headers.insert(X_FORWARDED_HOST, h.clone());
    }
    if let Some(v) = ctx.forwarded(client_host) {
        parts.headers.append(header::FORWARDED, v);
    }
    let proto = if ctx.web.as_ref().is_some_and(|w| w.tls()) {
        "https"
    } else {
        "http"
    };
    parts
        .headers
        .insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    parts.version = Version::HTTP_11;
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        parts.uri = http::Uri::from(pq);
    }
}
