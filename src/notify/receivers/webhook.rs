//! The generic webhook: a POST of watchfire's own JSON, schema version `"1"` (documented in
//! `docs/webhook.md`), with `Idempotency-Key: <outbox key>` so a receiver can drop a repeat
//! (delivery is at least once), and, when a secret is configured,
//! `X-Watchfire-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>` and
//! `X-Watchfire-Timestamp: <sent_at, seconds since the epoch>` (the same instant the signed
//! body's `sent_at` holds). Custom headers are added as configured; their values are secrets.
//!
//! `2xx` is delivered; `408`, `429` (with `Retry-After`) and `5xx` are retried; any other
//! answer is permanent.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::{post_json, rfc3339, Endpoint, SendError};
use crate::notify::config::WebhookConfig;
use crate::notify::{Facts, Message};
use crate::store::Millis;

/// The schema's version, the body's `version`.
pub const SCHEMA_VERSION: &str = "1";
/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Watchfire-Signature";
/// The timestamp header (seconds since the epoch), sent with the signature.
pub const TIMESTAMP_HEADER: &str = "X-Watchfire-Timestamp";
/// The header that carries the outbox key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The body, schema version 1 (`docs/webhook.md`).
#[derive(Debug, Serialize)]
pub struct Body<'a> {
    /// Always [`SCHEMA_VERSION`].
    pub version: &'static str,
    /// The outbox key: unique per message and receiver, the same on every retry.
    pub key: &'a str,
    /// `declared`, `update`, ...
    pub kind: &'static str,
    /// The incident.
    pub incident: IncidentPart<'a>,
    /// The rendered words.
    pub message: MessagePart<'a>,
    /// Everything the message was rendered from.
    pub facts: &'a Facts,
    /// When this attempt was made (RFC 3339).
    pub sent_at: String,
}

/// The body's `incident`.
#[derive(Debug, Serialize)]
pub struct IncidentPart<'a> {
    /// Its id (0 for a test message).
    pub id: i64,
    /// The component.
    pub service: &'a str,
    /// Its title.
    pub title: &'a str,
    /// investigating, identified, monitoring or resolved.
    pub status: &'a str,
    /// `P0`, ...
    pub severity: &'a str,
    /// none, minor, major or critical.
    pub impact: &'a str,
    /// When it began (RFC 3339).
    pub started: String,
    /// When it was resolved (RFC 3339), or null.
    pub resolved: Option<String>,
}

/// The body's `message`.
#[derive(Debug, Serialize)]
pub struct MessagePart<'a> {
    /// One line.
    pub title: &'a str,
    /// The body, plain text.
    pub text: &'a str,
}

/// The schema-1 body of `m`, sent at `sent_at`.
pub fn body(m: &Message, sent_at: Millis) -> Vec<u8> {
    let f = &m.facts;
    let b = Body {
        version: SCHEMA_VERSION,
        key: &m.key,
        kind: m.kind.as_str(),
        incident: IncidentPart {
            id: m.incident,
            service: &f.service,
            title: &f.title,
            status: &f.status,
            severity: &f.severity,
            impact: &f.impact,
            started: rfc3339(f.started),
            resolved: f.resolved.map(rfc3339),
        },
        message: MessagePart {
            title: &m.title,
            text: &m.text,
        },
        facts: f,
        sent_at: rfc3339(sent_at),
    };
    serde_json::to_vec(&b).expect("the webhook body serializes")
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// POSTs `m` to `c`'s URL.
pub async fn send(
    http: &reqwest::Client,
    name: &str,
    c: &WebhookConfig,
    m: &Message,
) -> Result<(), SendError> {
    let url = c.url.expose();
    let mut secrets = vec![url.as_str()];
    secrets.extend(c.secret.iter().map(|s| s.expose().as_str()));
    secrets.extend(c.headers.values().map(|v| v.expose().as_str()));
    let to = Endpoint {
        kind: "webhook",
        name,
        shown: crate::redact::origin(url),
        secrets,
    };
    let sent_at = crate::store::now_millis();
    let body = body(m, sent_at);
    let ours = [
        IDEMPOTENCY_HEADER,
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        "content-type",
    ];
    let mut headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .filter(|(n, _)| !ours.iter().any(|o| o.eq_ignore_ascii_case(n)))
        .map(|(n, v)| (n.as_str(), v.expose().as_str()))
        .collect();
    headers.push((IDEMPOTENCY_HEADER, &m.key));
    let (sig, ts);
    if let Some(secret) = &c.secret {
        sig = signature(secret.expose().as_bytes(), &body);
        ts = (sent_at / 1000).to_string();
        headers.push((SIGNATURE_HEADER, &sig));
        headers.push((TIMESTAMP_HEADER, &ts));
    }
    post_json(http, &to, url, body, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
