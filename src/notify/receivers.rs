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

/// Alertmanager's alerts, for the glue's resend of firing incidents.
pub mod alertmanager {
    use std::time::Duration;

    use serde::Serialize;

    use super::SendError;
    use crate::notify::config::AlertmanagerConfig;
    use crate::notify::Message;

    /// One alert as Alertmanager's `/api/v2/alerts` takes it.
    #[derive(Debug, Clone, Serialize)]
    pub struct Alert {}

    /// The alert `m` stands for, firing until `resend` × 4 from now unless resolved.
    pub fn alert_of(m: &Message, resend: Duration) -> Alert {
        let _ = (m, resend);
        todo!("receivers")
    }

    /// Posts `alerts` in one request.
    pub async fn post_alerts(
        http: &reqwest::Client,
        c: &AlertmanagerConfig,
        alerts: &[Alert],
    ) -> Result<(), SendError> {
        let _ = (http, c, alerts);
        todo!("receivers")
    }
}
