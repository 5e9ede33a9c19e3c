//! `--web.config.file`: the web configuration file of Prometheus' exporter-toolkit (the file
//! blackbox_exporter, node_exporter and Prometheus itself read), for every listener watchfire
//! serves.
//!
//! ```yaml
//! tls_server_config:          # TLS on every connection (rustls)
//!   cert_file: server.crt     # or `cert:` with the PEM inline
//!   key_file: server.key      # or `key:`
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//!   min_version: TLS12        # TLS12 (default) or TLS13
//!   max_version: TLS13
//!   cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]   # TLS 1.2 suites, Go's names
//!   curve_preferences: [X25519, CurveP256]
//!   prefer_server_cipher_suites: true                         # accepted; rustls always does
//! http_server_config:
//!   headers: { Strict-Transport-Security: max-age=31536000 }
//!   http2: true               # accepted; watchfire's server speaks HTTP/1.1
//! basic_auth_users:
//!   ops: $2y$10$...           # bcrypt hash (htpasswd -nBC 10 ops)
//! ```
//!
//! Unknown keys are errors, as exporter-toolkit's strict reading makes them; every error names
//! the file, the line and the field. [`WebConfig::load`] reads and checks a file once;
//! [`WebSource`] keeps the current one and reads it again when the file (or a certificate, key
//! or CA file it names) changes, so certificates can be rotated in place, as exporter-toolkit
//! reads them again per connection. A change that does not load keeps the last good one and is
//! logged.
//!
//! [`WebConfig::accept`] wraps an accepted TCP connection (a TLS handshake when TLS is
//! configured) and [`WebConfig::authorize`] checks a request's basic-auth credentials; the
//! server and the failover proxy's listener both use them. Secrets (passwords, keys, hashes) are
//! never printed.

mod auth;
mod schema;
mod stream;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderName, HeaderValue};
use tracing::{error, info};

use crate::diag::{ConfigError, ConfigErrors};

pub use auth::{Authorization, Users};
pub use stream::ServerStream;

/// The largest web config file read (exporter-toolkit's files are a few hundred bytes).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// How often [`WebSource::current`] looks at the files for a change, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A web config that loaded and passed its checks.
#[derive(Debug, Default)]
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    users: Users,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The files whose change means the config must be read again.
    watched: Vec<PathBuf>,
}

/// Why a web config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read the web config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{}: the web config file is larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file was read; these are its problems, each with its line and field.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl WebConfig {
    /// No TLS, no users, no headers: what watchfire serves without `--web.config.file`.
    pub fn none() -> WebConfig {
        WebConfig::default()
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = read_capped(path)?;
        WebConfig::parse(path, &text)
    }

    /// Checks `text`, the contents of `path` (relative file names in it are taken from the
    /// file's directory, as exporter-toolkit does).
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
        let raw = schema::parse(path, text).map_err(WebConfigError::Invalid)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        let mut bad = |field: &str, line: u64, message: String| {
            errors.push(ConfigError {
                file: path.to_path_buf(),
                line,
                column: 0,
                field: field.to_string(),
                message,
            })
        };
        let mut watched = vec![path.to_path_buf()];
        let tls = match &raw.tls_server_config {
            Some(t) => match tls::build(t, dir, &mut watched) {
                Ok(c) => c.map(Arc::new),
                Err(e) => {
                    bad(&format!("tls_server_config.{}", e.field), e.line, e.message);
                    None
                }
            },
            None => None,
        };
        let mut headers = Vec::new();
        if let Some(h) = &raw.http_server_config {
            for (name, value) in &h.headers.0 {
                match schema::header(&name.value, value) {
                    Ok(pair) => headers.push(pair),
                    Err(message) => bad(
                        &format!("http_server_config.headers.{}", name.value),
                        name.referenced.line(),
                        message,
                    ),
                }
            }
        }
        let users = match Users::new(&raw.basic_auth_users) {
            Ok(u) => u,
            Err((user, line, message)) => {
                bad(&format!("basic_auth_users.{user}"), line, message);
                Users::default()
            }
        };
        if !errors.is_empty() {
            return Err(WebConfigError::Invalid(ConfigErrors(errors)));
        }
        Ok(WebConfig {
            tls,
            users,
            headers,
            watched,
        })
    }

    /// Whether connections are TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The users of `basic_auth_users` (empty: no authentication).
    pub fn users(&self) -> &Users {
        &self.users
    }

    /// The headers of `http_server_config.headers`, added to every response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Wraps an accepted connection: the TLS handshake (bounded by `timeout`) when TLS is
    /// configured, the plain stream otherwise.
    pub async fn accept(
        &self,
        stream: tokio::net::TcpStream,
        timeout: Duration,
    ) -> std::io::Result<ServerStream> {
        match &self.tls {
            None => Ok(ServerStream::Plain(stream)),
            Some(cfg) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(r) => r.map(|s| ServerStream::Tls(Box::new(s))),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            }
        }
    }

    /// Checks a request's `Authorization` header against `basic_auth_users`.
    pub async fn authorize(&self, authorization: Option<&HeaderValue>) -> Authorization {
        self.users.check(authorization).await
    }
}

fn read_capped(path: &Path) -> Result<String, WebConfigError> {
    use std::io::Read as _;
    let read = |source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(WebConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Reads a file named in the web config, capped at [`MAX_FILE_BYTES`].
fn read_named(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// What a file looked like: its length and modification time (`None` when it cannot be read).
type Stamp = Vec<Option<(u64, SystemTime)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        })
        .collect()
}

/// The web config in force: none, or a file read again when it (or a file it names) changes.
#[derive(Debug)]
pub struct WebSource {
    path: Option<PathBuf>,
    state: Mutex<SourceState>,
}

#[derive(Debug)]
struct SourceState {
    current: Arc<WebConfig>,
    stamp: Stamp,
    checked: tokio::time::Instant,
}

impl WebSource {
    /// No web config: plain HTTP, no authentication.
    pub fn none() -> WebSource {
        WebSource {
            path: None,
            state: Mutex::new(SourceState {
                current: Arc::new(WebConfig::none()),
                stamp: Vec::new(),
                checked: tokio::time::Instant::now(),
            }),
        }
    }

    /// Loads `path` (an error stops the start, as exporter-toolkit's does).
    pub fn load(path: &Path) -> Result<WebSource, WebConfigError> {
        let cfg = WebConfig::load(path)?;
        let stamp = stamp(&cfg.watched);
        Ok(WebSource {
            path: Some(path.to_path_buf()),
            state: Mutex::new(SourceState {
                current: Arc::new(cfg),
                stamp,
                checked: tokio::time::Instant::now(),
            }),
        })
    }

    /// A fixed config (tests, and callers that load it themselves).
    pub fn fixed(cfg: WebConfig) -> WebSource {
        let source = WebSource::none();
        source.state.lock().expect("web config lock").current = Arc::new(cfg);
        source
    }

    /// The config in force, read again first when a watched file changed (looked at no more
    /// than once per [`CHECK_EVERY`]).
    pub fn current(&self) -> Arc<WebConfig> {
        let mut s = self.state.lock().expect("web config lock");
        let Some(path) = &self.path else {
            return s.current.clone();
        };
        let now = tokio::time::Instant::now();
        if now.duration_since(s.checked) < CHECK_EVERY {
            return s.current.clone();
        }
        s.checked = now;
        let fresh = stamp(&s.current.watched);
        if fresh == s.stamp {
            return s.current.clone();
        }
        s.stamp = fresh;
        match WebConfig::load(path) {
            Ok(cfg) => {
                info!(file = %path.display(), tls = cfg.tls(), users = cfg.users.len(), "web config reloaded");
                s.stamp = stamp(&cfg.watched);
                s.current = Arc::new(cfg);
            }
            Err(e) => {
                error!(error = %e, "the changed web config does not load; keeping the last good one");
            }
        }
        s.current.clone()
    }
}
