//! The status page's routes ([`crate::status`]), all read-only (GET and HEAD):
//!
//! - `/status`, `/status/incidents/ID`, `/status/feed.atom`;
//! - Statuspage's `/api/v2/summary.json`, `status.json`, `components.json`, `incidents.json`,
//!   `incidents/unresolved.json`, `scheduled-maintenances.json` (and its `upcoming.json`,
//!   `active.json`);
//! - `/badge/COMPONENT/status.svg`, `/badge/COMPONENT/uptime/{24h,7d,30d,90d}.svg`,
//!   `/badge/COMPONENT/shields.json` (COMPONENT percent-encoded as in any URL path).
//!
//! They are admitted in the server's class for pages and the API and behind the web config's
//! users like every other route.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{json, method_not_allowed, text, AppState, Body};
use crate::status::{self, api, badge::Badge, feed, html, History, View};
use crate::store::{now_millis, StoreError};

/// Whether `path` is one of the status page's.
fn is_status_path(path: &str) -> bool {
    path == "/status"
        || path.starts_with("/status/")
        || path.starts_with("/api/v2/")
        || path.starts_with("/badge/")
}

/// Answers `path` when it is one of the status page's routes; `None` otherwise.
pub async fn route(
    state: &Arc<AppState>,
    path: &str,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    if !is_status_path(path) {
        return None;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(method_not_allowed("GET"));
    }
    let rt = &state.runtime;
    let now = now_millis();
    let answer = match path {
        "/status" => view(rt, now, History::Read)
            .await
            .map(|v| page(html::status_page(&v))),
        "/status/feed.atom" => view(rt, now, History::Skip)
            .await
            .map(|v| with_type(feed::atom(&v).into(), "application/atom+xml; charset=utf-8")),
        p if p.starts_with("/status/incidents/") => {
            incident_page(rt, &p["/status/incidents/".len()..], now).await
        }
        p if p.starts_with("/api/v2/") => match api_doc(rt, &p["/api/v2/".len()..], now).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => return Some(not_found(path)),
            Err(e) => Err(e),
        },
        p if p.starts_with("/badge/") => badge(rt, &p["/badge/".len()..], now).await,
        _ => return Some(not_found(path)),
    };
    Some(answer.unwrap_or_else(|e| {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store cannot be read: {e}\n"),
        )
    }))
}

async fn view(
    rt: &crate::runtime::Runtime,
    now: i64,
    history: History,
) -> Result<View, StoreError> {
    status::view(rt, now, history).await
}

fn not_found(path: &str) -> Response<Body> {
    text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n"))
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(body))
        .expect("static response parts are valid")
}

fn page(body: String) -> Response<Body> {
    with_type(body.into(), "text/html; charset=utf-8")
}

async fn incident_page(
    rt: &crate::runtime::Runtime,
    id: &str,
    now: i64,
) -> Result<Response<Body>, StoreError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            format!("`{id}` is not an incident id (a number)\n"),
        ));
    };
    let mut inputs = status::inputs(rt, now, History::Skip).await?;
    if !inputs.incidents.iter().any(|i| i.id == id) {
        let Some(inc) = rt.store().incident(id).await? else {
            return Ok(text(
                StatusCode::NOT_FOUND,
                format!("no incident with id {id}\n"),
            ));
        };
        inputs.incidents.push(inc);
        inputs.updates.extend(rt.store().updates(&[id]).await?);
    }
    let v = status::model::build(inputs);
    let i = v
        .incidents
        .iter()
        .find(|i| i.incident.id == id)
        .expect("the incident was added to the view");
    Ok(page(html::incident_page(&v, i)))
}

/// One of `/api/v2/`'s documents, `None` for an unknown one.
async fn api_doc(
    rt: &crate::runtime::Runtime,
    name: &str,
    now: i64,
) -> Result<Option<Response<Body>>, StoreError> {
    const KNOWN: [&str; 8] = [
        "summary.json",
        "status.json",
        "components.json",
        "incidents.json",
        "incidents/unresolved.json",
        "scheduled-maintenances.json",
        "scheduled-maintenances/upcoming.json",
        "scheduled-maintenances/active.json",
    ];
    if !KNOWN.contains(&name) {
        return Ok(None);
    }
    let history = if name == "components.json" {
        History::Read
    } else {
        History::Skip
    };
    let v = view(rt, now, history).await?;
    fn doc<T: serde::Serialize>(d: T) -> Option<Response<Body>> {
        Some(json(StatusCode::OK, &d))
    }
    Ok(match name {
        "summary.json" => doc(api::summary(&v)),
        "status.json" => doc(api::StatusDoc {
            page: api::page(&v),
            status: api::status(&v),
        }),
        "components.json" => doc(api::ComponentsDoc {
            page: api::page(&v),
            components: api::components(&v),
        }),
        "incidents.json" => doc(api::incidents(&v, false)),
        "incidents/unresolved.json" => doc(api::incidents(&v, true)),
        "scheduled-maintenances.json" => doc(api::maintenances(&v, None)),
        "scheduled-maintenances/upcoming.json" => doc(api::maintenances(&v, Some("scheduled"))),
        _ => doc(api::maintenances(&v, Some("in_progress"))),
    })
}

/// `/badge/COMPONENT/...`.
async fn badge(
    rt: &crate::runtime::Runtime,
    rest: &str,
    now: i64,
) -> Result<Response<Body>, StoreError> {
    let Some((raw_name, what)) = rest.split_once('/') else {
        return Ok(not_found(&format!("/badge/{rest}")));
    };
    let Some(name) = percent_decode(raw_name) else {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            format!("the component `{raw_name}` is not valid percent-encoded UTF-8\n"),
        ));
    };
    let unknown = || {
        text(
            StatusCode::NOT_FOUND,
            format!("no component named `{name}` on the status page\n"),
        )
    };
    let b = match what {
        "status.svg" | "shields.json" => {
            let v = view(rt, now, History::Skip).await?;
            let Some(c) = v.find(&name) else {
                return Ok(unknown());
            };
            Badge::state(&c.name, c.state)
        }
        w => {
            let Some(span) = w
                .strip_prefix("uptime/")
                .and_then(|s| s.strip_suffix(".svg").or_else(|| s.strip_suffix(".json")))
            else {
                return Ok(not_found(&format!("/badge/{rest}")));
            };
            match status::uptime(rt, &name, span, now).await? {
                Some(u) => Badge::uptime(span, u),
                None if status::UPTIME_SPANS.iter().any(|s| s.0 == span) => return Ok(unknown()),
                None => return Ok(not_found(&format!("/badge/{rest}"))),
            }
        }
    };
    Ok(if what.ends_with(".json") {
        let mut r = json(StatusCode::OK, &b.shields());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, "no-cache".parse().expect("valid"));
        r
    } else {
        with_type(b.svg().into(), "image/svg+xml; charset=utf-8")
    })
}

/// `%XX` sequences decoded; `None` when they are malformed or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
