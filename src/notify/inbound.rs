//! PagerDuty's V3 webhooks: an acknowledgement in PagerDuty acknowledges the watchfire
//! incident, which stops its escalation (`docs/notify.md`, "PagerDuty's acknowledge").
//!
//! PagerDuty POSTs one event per request to `POST /api/v1/notify/pagerduty/{RECEIVER}`
//! (a "Generic Webhook (v3)" subscription). Each request is, in this order:
//!
//! 1. **verified** ([`verify`]): `X-PagerDuty-Signature` holds one or more comma-separated
//!    `v1=<hex HMAC-SHA256 of the raw body>`, one per signing secret PagerDuty has (several
//!    while a secret is rotated); one of them must be the HMAC keyed with the receiver's
//!    `webhook_secret`, compared in constant time. Nothing is read from an unverified body.
//! 2. **parsed** ([`parse`]): `event.event_type`, `event.agent` (who did it: a
//!    `user_reference` whose `summary` is the person's name, or `null` for automation) and,
//!    for incident events, `event.data.incident_key`. watchfire's Events API v2 alert
//!    creates the PagerDuty incident with its `dedup_key` as the incident's key, so the key of
//!    watchfire's incident N is `watchfire-inc{N}` ([`incident_of`]).
//! 3. **applied** ([`apply`]):
//!    - `incident.acknowledged`: the incident is acknowledged exactly as
//!      `watchfire incident ack` does, by `PagerDuty (NAME)`; its escalation stops and the
//!      acknowledgement goes to the other receivers and the timeline (the notifier is woken by
//!      the caller). Acknowledged already: unchanged. Resolved: [`InboundError::Resolved`].
//!    - `incident.resolved`: written on the open incident's timeline only ("Resolved in
//!      PagerDuty by NAME"): watchfire resolves an incident when its probes see the component
//!      up again, so a page closed by hand while the component is still down does not close
//!      the incident, stop its updates or clear the status page. An incident watchfire
//!      resolved already is left as it is (PagerDuty echoes watchfire's own resolve).
//!    - every other event, and incidents that are not watchfire's (another key): ignored.
//!
//! A watchfire key whose incident is not in the store is [`InboundError::UnknownIncident`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::expo::{catalog, Writer};
use crate::incident::manual::{self, MAX_NAME};
use crate::incident::IncidentError;
use crate::store::{IncidentStatus, IncidentUpdate, Millis, Store};

/// The largest body read: PagerDuty's incident events are a few kilobytes.
pub const MAX_BODY: usize = 256 * 1024;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-pagerduty-signature";

/// Prefix of the incident key of watchfire's incidents (the Events API `dedup_key`).
pub const KEY_PREFIX: &str = "watchfire-inc";

/// Why a request's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-PagerDuty-Signature` header.
    #[error("no X-PagerDuty-Signature header")]
    Missing,
    /// The header holds no `v1=` signature (or is not text).
    #[error("X-PagerDuty-Signature holds no v1 signature")]
    NoV1,
    /// No `v1=` signature is the body's HMAC under this receiver's secret.
    #[error("no signature in X-PagerDuty-Signature matches the body and webhook_secret")]
    Mismatch,
}

/// Checks `header` (the raw `X-PagerDuty-Signature`) against `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| SignatureError::NoV1)?;
    let mut any = false;
    let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    let mac = {
        let mut m = mac;
        m.update(body);
        m
    };
    for sig in header.split(',').map(str::trim) {
        let Some(hex) = sig.strip_prefix("v1=") else {
            continue;
        };
        any = true;
        // A signature that is not 64 hex digits cannot match; which one matched, or how far a
        // comparison went, is not observable (verify_slice compares in constant time).
        if let Some(bytes) = unhex(hex) {
            if mac.clone().verify_slice(&bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err(if any {
        SignatureError::Mismatch
    } else {
        SignatureError::NoV1
    })
}

/// `v1=<hex>` of `body` under `secret`, as PagerDuty signs (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let mut out = String::from("v1=");
    for b in mac.finalize().into_bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The part of a V3 webhook payload watchfire reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event.id`.
    pub id: String,
    /// `event.event_type` (`incident.acknowledged`, ...).
    pub event_type: String,
    /// `event.agent.summary` when the agent is a user (the person's name).
    pub agent: Option<String>,
    /// `event.data.incident_key`, for incident events.
    pub incident_key: Option<String>,
    /// `event.data.html_url`: the PagerDuty incident's page.
    pub html_url: Option<String>,
}

/// Why a verified body is not an event.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or not the V3 shape (serde names the field).
    #[error("not a PagerDuty V3 webhook payload: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct RawPayload {
    event: RawEvent,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    id: String,
    event_type: String,
    #[serde(default)]
    agent: Option<RawRef>,
    #[serde(default)]
    data: Option<RawData>,
}

#[derive(Deserialize)]
struct RawRef {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    summary: Option<String>,
}

#[derive(Deserialize)]
struct RawData {
    #[serde(default)]
    incident_key: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

/// Reads `body` (verified already).
pub fn parse(body: &[u8]) -> Result<Event, PayloadError> {
    let p: RawPayload = serde_json::from_slice(body)?;
    let e = p.event;
    let agent = e
        .agent
        .filter(|a| a.kind.as_deref() == Some("user_reference"))
        .and_then(|a| a.summary)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let (incident_key, html_url) = match e.data {
        Some(d) => (d.incident_key, d.html_url),
        None => (None, None),
    };
    Ok(Event {
        id: e.id,
        event_type: e.event_type,
        agent,
        incident_key,
        html_url,
    })
}

/// watchfire's incident id in `key` (`watchfire-inc42` → 42); `None` for another key.
pub fn incident_of(key: &str) -> Option<i64> {
    let digits = key.strip_prefix(KEY_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}

/// Who did it, as the timeline names them: `PagerDuty (NAME)`, or `PagerDuty`.
pub fn actor(agent: Option<&str>) -> String {
    match agent {
        Some(name) => {
            // The name is cut so that the whole stays within the acknowledgement's limit.
            let room = MAX_NAME.saturating_sub("PagerDuty ()".len());
            let cut: String = name
                .chars()
                .scan(0usize, |len, c| {
                    *len += c.len_utf8();
                    (*len <= room).then_some(c)
                })
                .collect();
            format!("PagerDuty ({cut})")
        }
        None => "PagerDuty".to_string(),
    }
}

/// What a verified event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The incident is acknowledged now (`already`: it was before this event).
    Acknowledged {
        /// watchfire's incident id.
        incident: i64,
        /// Whether it had been acknowledged before.
        already: bool,
    },
    /// Written on the incident's timeline (a resolve in PagerDuty).
    Recorded {
        /// watchfire's incident id.
        incident: i64,
    },
    /// Nothing to do, and why.
    Ignored(&'static str),
}

impl Outcome {
    /// The `result` label of `watchfire_notify_inbound_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Acknowledged { .. } => "acknowledged",
            Outcome::Recorded { .. } => "recorded",
            Outcome::Ignored(_) => "ignored",
        }
    }
}

/// Why a verified event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The key is watchfire's but no such incident is stored.
    #[error("no watchfire incident {id} (PagerDuty incident key `{key}`)")]
    UnknownIncident {
        /// The id in the key.
        id: i64,
        /// The key.
        key: String,
    },
    /// An acknowledgement for an incident watchfire resolved already.
    #[error("incident {0} is resolved already: there is nothing to acknowledge")]
    Resolved(i64),
    /// The store (or the acknowledgement's checks) failed.
    #[error(transparent)]
    Incident(#[from] IncidentError),
}

impl InboundError {
    /// The `result` label of `watchfire_notify_inbound_total`.
    pub fn label(&self) -> &'static str {
        match self {
            InboundError::UnknownIncident { .. } => "unknown_incident",
            InboundError::Resolved(_) => "resolved_incident",
            InboundError::Incident(_) => "error",
        }
    }
}

/// Applies `ev` to the store at `now` (the module docs say what each event does).
pub async fn apply(store: &Store, ev: &Event, now: Millis) -> Result<Outcome, InboundError> {
    let resolving = match ev.event_type.as_str() {
        "incident.acknowledged" => false,
        "incident.resolved" => true,
        _ => return Ok(Outcome::Ignored("an event watchfire does not act on")),
    };
    let Some(key) = ev.incident_key.as_deref() else {
        return Ok(Outcome::Ignored("the event names no incident_key"));
    };
    let Some(id) = incident_of(key) else {
        return Ok(Outcome::Ignored("not a watchfire incident"));
    };
    let unknown = || InboundError::UnknownIncident {
        id,
        key: key.to_string(),
    };
    let inc = store
        .incident(id)
        .await
        .map_err(IncidentError::from)?
        .ok_or_else(unknown)?;
    let who = actor(ev.agent.as_deref());
    if resolving {
        if inc.status == IncidentStatus::Resolved {
            return Ok(Outcome::Ignored("resolved in watchfire already"));
        }
        let message = format!(
            "Resolved in PagerDuty by {who}; watchfire resolves the incident when its probes \
             see the component up"
        );
        let updates = store.updates(&[id]).await.map_err(IncidentError::from)?;
        if updates.last().is_none_or(|u| u.message != message) {
            let u = IncidentUpdate {
                id: 0,
                incident: id,
                at: now,
                status: inc.status,
                message,
                automatic: true,
                kind: None,
            };
            store.add_update(&u).await.map_err(IncidentError::from)?;
        }
        return Ok(Outcome::Recorded { incident: id });
    }
    if inc.status == IncidentStatus::Resolved {
        return Err(InboundError::Resolved(id));
    }
    let already = inc.acknowledged.is_some();
    match manual::ack(store, id, now, Some(who.as_str()), None).await {
        Ok(_) => Ok(Outcome::Acknowledged {
            incident: id,
            already,
        }),
        Err(IncidentError::NotFound(_)) => Err(unknown()),
        // Resolved between the read and the acknowledgement.
        Err(IncidentError::Invalid { field: "id", .. }) => Err(InboundError::Resolved(id)),
        Err(e) => Err(e.into()),
    }
}

/// Requests to the endpoint since start, by receiver and result (`acknowledged`,
/// `recorded`, `ignored`, `unsigned`, `bad_signature`, `bad_request`, `too_large`,
/// `unknown_incident`, `resolved_incident`, `error`).
#[derive(Debug, Default)]
pub struct Counters {
    by: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Counters {
    /// One request to `receiver` ended in `result`.
    pub fn count(&self, receiver: &str, result: &'static str) {
        let mut by = self.by.lock().expect("inbound counters lock poisoned");
        *by.entry((receiver.to_string(), result)).or_default() += 1;
    }

    /// Requests to `receiver` that ended in `result` so far.
    pub fn get(&self, receiver: &str, result: &'static str) -> u64 {
        let by = self.by.lock().expect("inbound counters lock poisoned");
        by.get(&(receiver.to_string(), result))
            .copied()
            .unwrap_or(0)
    }

    /// Writes `watchfire_notify_inbound_total`.
    pub fn render(&self, w: &mut Writer<'_>) {
        let by = self
            .by
            .lock()
            .expect("inbound counters lock poisoned")
            .clone();
        w.header(&catalog::NOTIFY_INBOUND);
        for ((r, result), n) in &by {
            w.sample(
                &catalog::NOTIFY_INBOUND,
                &[("receiver", r), ("result", result)],
                *n,
            );
        }
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
