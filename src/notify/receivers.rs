//! Each receiver kind's payload and delivery.

use std::time::Duration;

use super::config::Receiver;
use super::Message;

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

/// The HTTP client receivers share.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("the notification HTTP client builds")
}

/// Delivers `m` to `r`.
pub async fn send(http: &reqwest::Client, r: &Receiver, m: &Message) -> Result<(), SendError> {
    let _ = (http, r, m);
    todo!("receivers")
}
