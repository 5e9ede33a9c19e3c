//! A client of a running watchfire's incidents API ([`crate::incident::view`] is what it reads
//! back): `watchfire incident ...` and `watchfire verify --incident` talk through it.
//!
//! Basic auth is sent when a user is given. Requests carry a JSON body (or none), which the
//! server's intent check accepts from a tool. Every error names the URL (its password, if it
//! has one, redacted).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::redact;

/// The instance asked unless told otherwise (blackbox_exporter's port on this host).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9115";

/// How long one API request may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// No request body.
pub const NO_BODY: Option<&()> = None;

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The HTTP client could not be built.
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer: refused, unreachable, timed out, or the answer was cut short.
    #[error("cannot reach {url}")]
    Unreachable {
        /// The request's URL (redacted).
        url: String,
        /// What happened.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("{url}: {status}: {message}")]
    Refused {
        /// The request's URL (redacted).
        url: String,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The API's `error` message, or the answer's text.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("{url} answered something other than the expected JSON")]
    Answer {
        /// The request's URL (redacted).
        url: String,
        /// What did not decode.
        #[source]
        source: serde_json::Error,
    },
}

/// A client of the incidents API of the watchfire at one base URL.
pub struct ApiClient {
    http: reqwest::Client,
    url: String,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("url", &redact::url(&self.url))
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the watchfire at `url` (with its route prefix, if any), with basic auth when
    /// `user` is given.
    pub fn new(
        url: &str,
        user: Option<String>,
        password: Option<String>,
    ) -> Result<ApiClient, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(ApiError::Client)?;
        Ok(ApiClient {
            http,
            url: url.trim_end_matches('/').to_string(),
            user,
            password,
        })
    }

    /// Sends `method path` with `body` as JSON; the answer decoded, and as text. A non-2xx
    /// answer is [`ApiError::Refused`] with the API's `error` message.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(T, String), ApiError> {
        let url = format!("{}{path}", self.url);
        let shown = || redact::url(&url).into_owned();
        let mut req = self.http.request(method, &url);
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |source| ApiError::Unreachable {
            url: shown(),
            source,
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| text.trim().to_string());
            return Err(ApiError::Refused {
                url: shown(),
                status,
                message,
            });
        }
        let v = serde_json::from_str(&text).map_err(|source| ApiError::Answer {
            url: shown(),
            source,
        })?;
        Ok((v, text))
    }
}
