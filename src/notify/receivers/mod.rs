//! Each receiver kind's payload and delivery: one file per kind, [`send`] picks by the
//! receiver's kind.
//!
//! - [`slack`]: an incoming webhook, Block Kit with a text fallback.
//! - [`pagerduty`]: Events API v2, trigger / acknowledge / resolve on one `dedup_key` per
//!   incident.
//! - [`alertmanager`]: alerts as Prometheus posts them to `/api/v2/alerts`.
//! - [`webhook`]: JSON in watchfire's versioned schema (`docs/webhook.md`), optionally signed.
//! - [`exec`]: a command with the webhook's JSON on its standard input.
//!
//! A delivery ends in `Ok` or a [`SendError`] that says whether trying again can help: refused
//! connections, timeouts, `408`, `429` and `5xx` are [`SendError::Retry`] (with the receiver's
//! `Retry-After`, capped at [`MAX_RETRY_AFTER`]); other answers are [`SendError::Permanent`].
//! Transport errors are classified with reqwest's own predicates and by walking `source()`,
//! never by reading a message. Error texts name the receiver's kind, its name and its URL as it
//! may be shown ([`crate::redact`]); the secret URL, routing key, signing secret, header values
//! and environment are never in them, and a quoted response body has any of them masked.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime};

use super::config::{Receiver, ReceiverKind};
use super::Message;
use crate::redact::MASK;

pub mod alertmanager;
pub mod exec;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

/// The longest `Retry-After` honoured: a receiver asking for more is tried again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How much of a response body (or a command's output) is read and quoted in an error.
pub const QUOTE_LIMIT: usize = 4096;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("watchfire/", env!("CARGO_PKG_VERSION"));

/// Why a delivery failed. The text never holds a secret (URLs are redacted).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (refused, timed out, 5xx, 429), after `after` when the receiver
    /// said (Retry-After).
    #[error("{error}")]
    Retry {
        /// What happened.
        error: String,
        /// The receiver's Retry-After, if any.
        after: Option<Duration>,
    },
    /// Trying again will not help (4xx other than 408/429, a rejected routing key, a command
    /// that is not there).
    #[error("{error}")]
    Permanent {
        /// What happened.
        error: String,
    },
}

impl SendError {
    /// Whether trying again may help.
    pub fn is_retry(&self) -> bool {
        matches!(self, SendError::Retry { .. })
    }
}

/// The HTTP client receivers share: `timeout` bounds one attempt from connect to the end of
/// the answer. Redirects are not followed (a receiver's URL that moved is a config error, and
/// a redirected POST would silently become a GET).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .expect("the notification HTTP client builds")
}

/// Delivers `m` to `r`.
pub async fn send(http: &reqwest::Client, r: &Receiver, m: &Message) -> Result<(), SendError> {
    match &r.kind {
        ReceiverKind::Slack(c) => slack::send(http, &r.name, c, m).await,
        ReceiverKind::PagerDuty(c) => pagerduty::send(http, &r.name, c, m).await,
        ReceiverKind::Alertmanager(c) => {
            let alert = alertmanager::alert_of(m, c.resend);
            alertmanager::post(http, &r.name, c, &[alert]).await
        }
        ReceiverKind::Webhook(c) => webhook::send(http, &r.name, c, m).await,
        ReceiverKind::Exec(c) => exec::run(&r.name, c, m).await,
    }
}

/// Where one HTTP delivery goes, as errors name it, and the secret values its errors must
/// never quote.
pub(crate) struct Endpoint<'a> {
    /// `slack`, `pagerduty`, ...
    pub kind: &'static str,
    /// The receiver's name.
    pub name: &'a str,
    /// The URL as it may be shown.
    pub shown: String,
    /// Values masked wherever they would appear in a quoted answer.
    pub secrets: Vec<&'a str>,
}

impl Endpoint<'_> {
    /// `what` prefixed with the receiver's kind, name and shown URL.
    pub fn says(&self, what: impl std::fmt::Display) -> String {
        format!(
            "{} receiver {} ({}): {what}",
            self.kind, self.name, self.shown
        )
    }
}

/// POSTs `body` as JSON to `url` with `headers`; 2xx is delivered, anything else is typed.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    to: &Endpoint<'_>,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Result<(), SendError> {
    let mut req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.map_err(|e| transport_error(to, &e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = retry_after(resp.headers(), SystemTime::now());
    let quoted = quote(&read_bounded(resp).await, &to.secrets);
    let error = to.says(format_args!("answered {status}{quoted}"));
    Err(classify_status(status.as_u16(), error, after))
}

/// An answer's status as a delivery error: `408`, `429` and `5xx` are worth trying again
/// (after `after`, when the receiver said); any other status is not.
pub fn classify_status(status: u16, error: String, after: Option<Duration>) -> SendError {
    match status {
        408 | 429 | 500..=599 => SendError::Retry { error, after },
        _ => SendError::Permanent { error },
    }
}

/// A request that got no answer, typed: an unusable URL or request is permanent; a connection
/// refused or reset, a timeout, a broken answer are worth trying again.
pub(crate) fn transport_error(to: &Endpoint<'_>, e: &reqwest::Error) -> SendError {
    if e.is_builder() {
        return SendError::Permanent {
            error: to.says(format_args!("the request cannot be made: {}", cause(e))),
        };
    }
    let what = if e.is_timeout() || has_timeout(e) {
        "no answer within the delivery timeout".to_string()
    } else if e.is_connect() {
        format!("cannot connect: {}", cause(e))
    } else {
        format!("the request failed: {}", cause(e))
    };
    SendError::Retry {
        error: to.says(what),
        after: None,
    }
}

/// Whether an I/O timeout is anywhere in `e`'s `source()` chain.
fn has_timeout(e: &(dyn StdError + 'static)) -> bool {
    chain(e).any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// `e` and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |err| (*err).source())
}

/// The innermost cause of `e` (an OS error, a TLS alert), which says the most and never holds
/// the request's URL (reqwest's own text does, so it is skipped).
fn cause(e: &reqwest::Error) -> String {
    let outer: &(dyn StdError + 'static) = e;
    match chain(outer).skip(1).last() {
        Some(inner) => crate::redact::urls_in(&inner.to_string()).into_owned(),
        None => "no detail".to_string(),
    }
}

/// The `Retry-After` of an answer (seconds, or an HTTP-date relative to `now`), capped at
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let after = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
            let now = jiff::Timestamp::try_from(now).ok()?;
            let ms = at.as_millisecond().saturating_sub(now.as_millisecond());
            Duration::from_millis(ms.max(0) as u64)
        }
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// At most [`QUOTE_LIMIT`] bytes of an answer's body (what does not arrive in time is left).
async fn read_bounded(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < QUOTE_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = QUOTE_LIMIT - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// `: "TEXT"` for a non-empty body or command output (lossy UTF-8, trimmed, URLs redacted and
/// each of `secrets` masked), or nothing.
pub(crate) fn quote(bytes: &[u8], secrets: &[&str]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut text = crate::redact::urls_in(text.trim()).into_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, MASK);
    }
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text:?}")
    }
}

/// `s` cut to at most `max` characters, the last one `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// RFC 3339 (UTC, milliseconds) of `ms`.
pub(crate) fn rfc3339(ms: crate::store::Millis) -> String {
    crate::incident::view::rfc3339(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        // 1994-11-06 08:49:37 UTC is 784111777 s after the epoch.
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("86400"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn statuses_are_classified() {
        for s in [408, 429, 500, 502, 503] {
            assert!(classify_status(s, String::new(), None).is_retry(), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(!classify_status(s, String::new(), None).is_retry(), "{s}");
        }
    }

    #[test]
    fn a_quote_masks_the_secrets_it_is_given() {
        let q = quote(b" bad key abc123 for http://u:pw@h/x \n", &["abc123", ""]);
        assert_eq!(q, r#": "bad key <secret> for http://u:<secret>@h/x""#);
        assert_eq!(quote(b"  ", &[]), "");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 4), "hél…");
    }
}
