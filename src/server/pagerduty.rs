//! `POST /api/v1/notify/pagerduty/{RECEIVER}`: PagerDuty's V3 webhooks
//! ([`crate::notify::inbound`] verifies, reads and applies them).
//!
//! Answers, and the result counted in `watchfire_notify_inbound_total`:
//!
//! | answer | when | result |
//! |--------|------|--------|
//! | `404` | no pagerduty receiver of that name has a `webhook_secret` | (not counted) |
//! | `413` | the body is over [`MAX_BODY`] bytes | `too_large` |
//! | `401` | no signature, or none matches the body | `unsigned`, `bad_signature` |
//! | `400` | signed, but not a V3 payload | `bad_request` |
//! | `200` | an acknowledgement applied (or one already there), a resolve recorded | `acknowledged`, `recorded` |
//! | `204` | another event, or another service's incident | `ignored` |
//! | `404` | a `watchfire-inc{ID}` key with no such incident | `unknown_incident` |
//! | `409` | an acknowledgement of a resolved incident | `resolved_incident` |
//! | `503` | the store failed (PagerDuty retries) | `error` |
//!
//! Without a secret the endpoint is `404`, not `403`: there is nothing there to be refused,
//! and an unauthenticated caller learns nothing about which receivers exist. The signature is
//! the authentication: the browser intent check does not apply (PagerDuty sends no `Origin`),
//! the web config's basic auth does (PagerDuty can send it as a custom header).

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use tracing::{info, warn};

use super::{json, AppState, Body};
use crate::notify::config::ReceiverKind;
use crate::notify::inbound::{self, Outcome, MAX_BODY, SIGNATURE_HEADER};
use crate::store::now_millis;

/// The path prefix; the receiver's name follows.
pub const PREFIX: &str = "/api/v1/notify/pagerduty/";

#[derive(Serialize)]
struct Answer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incident: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let a = Answer {
        result: None,
        incident: None,
        error: Some(msg.into()),
    };
    json(status, &a)
}

/// Answers a request whose path starts with [`PREFIX`].
pub async fn route(state: &Arc<AppState>, path: &str, req: Request<Incoming>) -> Response<Body> {
    let name = path.strip_prefix(PREFIX).unwrap_or("");
    if req.method() != Method::POST {
        return super::method_not_allowed("POST");
    }
    let config = state.runtime.config();
    let secret = config.notify.receiver(name).and_then(|r| match &r.kind {
        ReceiverKind::PagerDuty(c) => c.webhook_secret.clone(),
        _ => None,
    });
    let Some(secret) = secret else {
        let msg = format!(
            "no PagerDuty webhook here: `{name}` is not a pagerduty receiver with a webhook_secret"
        );
        return error(StatusCode::NOT_FOUND, msg);
    };
    let counters = state.runtime.notifier().inbound();
    let signature = req.headers().get(SIGNATURE_HEADER).cloned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            counters.count(name, "too_large");
            let msg = format!("the body is larger than {MAX_BODY} bytes or was cut short");
            return error(StatusCode::PAYLOAD_TOO_LARGE, msg);
        }
    };
    let sig = signature.as_ref().map(|v| v.as_bytes());
    if let Err(e) = inbound::verify(secret.expose().as_bytes(), &body, sig) {
        let result = match e {
            inbound::SignatureError::Missing => "unsigned",
            _ => "bad_signature",
        };
        counters.count(name, result);
        warn!(receiver = name, refusal = %e, "PagerDuty webhook refused");
        return error(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let ev = match inbound::parse(&body) {
        Ok(ev) => ev,
        Err(e) => {
            counters.count(name, "bad_request");
            warn!(receiver = name, error = %e, "PagerDuty webhook unreadable");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    match inbound::apply(state.runtime.store(), &ev, now_millis()).await {
        Ok(outcome) => {
            counters.count(name, outcome.label());
            answer(state, name, &ev, &outcome)
        }
        Err(e) => {
            counters.count(name, e.label());
            let status = match e {
                inbound::InboundError::UnknownIncident { .. } => StatusCode::NOT_FOUND,
                inbound::InboundError::Resolved(_) => StatusCode::CONFLICT,
                inbound::InboundError::Incident(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            warn!(receiver = name, event = %ev.id, error = %e, "PagerDuty webhook not applied");
            error(status, e.to_string())
        }
    }
}

fn answer(state: &AppState, name: &str, ev: &inbound::Event, o: &Outcome) -> Response<Body> {
    let incident = match o {
        Outcome::Acknowledged { incident, .. } | Outcome::Recorded { incident } => *incident,
        Outcome::Ignored(_) => {
            return Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::default())
                .expect("static response parts are valid")
        }
    };
    info!(
        receiver = name,
        event = %ev.id,
        event_type = %ev.event_type,
        incident,
        result = o.label(),
        "PagerDuty webhook applied"
    );
    state.runtime.wake_notifier();
    let a = Answer {
        result: Some(o.label()),
        incident: Some(incident),
        error: None,
    };
    json(StatusCode::OK, &a)
}
