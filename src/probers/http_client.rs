//! The `http` module's client settings, as Prometheus' HTTP client (`prometheus/common`) reads
//! them: authentication (`basic_auth`, `authorization`, `bearer_token(_file)`, `oauth2` with the
//! client-credentials grant) and proxies (`proxy_url`, `no_proxy`, `proxy_from_environment`,
//! `proxy_connect_header`), with the same validation messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::ser_secret;
use super::TlsConfig;

/// Largest HTTP/1 response head (status line and headers) a prober reads: Go's `net/http`
/// default (`MaxResponseHeaderBytes` unset is 10 MiB), so that a target blackbox_exporter
/// accepts is accepted here too. The read buffer only grows this far when a head needs it.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 10 << 20;

/// `basic_auth`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// File holding the user name (read at each probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_file: Option<String>,
    /// Password (shown as `<secret>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        serialize_with = "ser_secret"
    )]
    pub password: String,
    /// File holding the password (read at each probe, surrounding whitespace trimmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `authorization`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    /// Scheme (`Bearer` when empty).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Credentials (shown as `<secret>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        serialize_with = "ser_secret"
    )]
    pub credentials: String,
    /// File holding the credentials (read at each probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
}

/// `oauth2` (the client-credentials grant).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    /// Client id.
    pub client_id: String,
    /// Client secret (shown as `<secret>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        serialize_with = "ser_secret"
    )]
    pub client_secret: String,
    /// File holding the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<String>,
    /// Scopes asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The token endpoint.
    pub token_url: String,
    /// Extra form parameters of the token request.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_params: BTreeMap<String, String>,
    /// TLS settings of the token request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
    /// Proxy of the token request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
}

/// A secret given inline or by file (read at each use, whitespace trimmed, as Prometheus' HTTP
/// client does).
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// Inline.
    Inline(String),
    /// From a file.
    File(PathBuf),
}

impl SecretSource {
    /// The secret's current value.
    pub async fn read(&self) -> Result<String, String> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(p) => crate::limits::read_capped_string_async(
                p,
                crate::limits::MAX_SECRET_FILE_BYTES,
                "secret file",
            )
            .await
            .map(|s| s.trim().to_string())
            .map_err(|e| e.to_string()),
        }
    }
}

/// How the request authenticates.
#[derive(Debug)]
pub enum Auth {
    /// No `Authorization` header.
    None,
    /// `basic_auth`.
    Basic {
        /// User name.
        user: SecretSource,
        /// Password.
        pass: SecretSource,
    },
    /// `authorization` or `bearer_token`.
    Scheme {
        /// `Bearer` etc.
        kind: String,
        /// Credentials.
        credentials: SecretSource,
    },
    /// `oauth2`.
    OAuth2(Box<OAuth2>),
}

impl Auth {
    /// The `Authorization` header value now (files read, an OAuth2 token fetched or reused).
    pub async fn header(&self, deadline: Instant) -> Result<Option<HeaderValue>, String> {
        let v = match self {
            Auth::None => return Ok(None),
            Auth::Basic { user, pass } => {
                let (u, pw) = (user.read().await?, pass.read().await?);
                format!("Basic {}", base64(format!("{u}:{pw}").as_bytes()))
            }
            Auth::Scheme { kind, credentials } => format!("{kind} {}", credentials.read().await?),
            Auth::OAuth2(o) => return o.header(deadline).await.map(Some),
        };
        HeaderValue::from_str(&v)
            .map(Some)
            .map_err(|_| "the credentials hold characters HTTP does not allow".into())
    }
}

/// An OAuth2 client-credentials token source, its token cached until 10 s before it expires
/// (as golang.org/x/oauth2 does).
#[derive(Debug)]
pub struct OAuth2 {
    cfg: OAuth2Config,
    secret: SecretSource,
    client: reqwest::Client,
    cached: Mutex<Option<(HeaderValue, Option<Instant>)>>,
}

impl OAuth2 {
    pub(super) fn new(cfg: &OAuth2Config, file: &Path) -> Result<OAuth2, String> {
        url::Url::parse(&cfg.token_url)
            .map_err(|e| format!("token_url `{}` is not a URL ({e})", cfg.token_url))?;
        let mut b = reqwest::Client::builder().no_proxy();
        if let Some(t) = &cfg.tls_config {
            if t.insecure_skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            if let Some(ca) = &t.ca_file {
                let p = relative_to(file, ca);
                let pem =
                    crate::limits::read_capped(&p, crate::limits::MAX_PEM_FILE_BYTES, "CA file")
                        .map_err(|e| format!("tls_config.ca_file: {e}"))?;
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| format!("tls_config.ca_file: {e}"))?;
                b = b.add_root_certificate(cert);
            }
            if let Some((c, k)) =
                super::client_cert::pair(t.cert_file.as_deref(), t.key_file.as_deref())
                    .map_err(|e| e.to_string())?
            {
                // Checked with watchfire's messages first; reqwest takes key and chain as one PEM.
                let (c, k) = (relative_to(file, c), relative_to(file, k));
                use super::client_cert::{chain_in, key_in, read_pem};
                let cert_pem = read_pem("cert_file", &c).map_err(|e| e.to_string())?;
                chain_in(&cert_pem, &c).map_err(|e| e.to_string())?;
                let mut pem = read_pem("key_file", &k).map_err(|e| e.to_string())?;
                key_in(&pem, &k).map_err(|e| e.to_string())?;
                pem.push(b'\n');
                pem.extend(cert_pem);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("tls_config.cert_file/key_file: {e}"))?;
                b = b.identity(id);
            }
        }
        if let Some(p) = &cfg.proxy_url {
            b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url: {e}"))?);
        }
        let client = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        let secret = match &cfg.client_secret_file {
            Some(f) => SecretSource::File(relative_to(file, f)),
            None => SecretSource::Inline(cfg.client_secret.clone()),
        };
        Ok(OAuth2 {
            cfg: cfg.clone(),
            secret,
            client,
            cached: Mutex::new(None),
        })
    }

    async fn header(&self, deadline: Instant) -> Result<HeaderValue, String> {
        if let Some((h, exp)) = self.cached.lock().expect("token lock poisoned").clone() {
            if exp.is_none_or(|e| Instant::now() + Duration::from_secs(10) < e) {
                return Ok(h);
            }
        }
        let secret = self.secret.read().await?;
        let mut form: Vec<(String, String)> =
            vec![("grant_type".into(), "client_credentials".into())];
        if !self.cfg.scopes.is_empty() {
            form.push(("scope".into(), self.cfg.scopes.join(" ")));
        }
        for (k, v) in &self.cfg.endpoint_params {
            form.retain(|(fk, _)| fk != k);
            form.push((k.clone(), v.clone()));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        // golang.org/x/oauth2's auto-detection: credentials in the header first, then in the
        // form when the server refuses that.
        let mut last = String::new();
        for in_header in [true, false] {
            let mut req = self.client.post(&self.cfg.token_url).timeout(remaining);
            let mut f = form.clone();
            if in_header {
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                req = req.basic_auth(enc(&self.cfg.client_id), Some(enc(&secret)));
            } else {
                f.push(("client_id".into(), self.cfg.client_id.clone()));
                f.push(("client_secret".into(), secret.clone()));
            }
            let resp = req
                .form(&f)
                .send()
                .await
                .map_err(|e| format!("oauth2: token request: {}", e.without_url()))?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .map_err(|e| format!("oauth2: token response: {}", e.without_url()))?;
            if !status.is_success() {
                last = format!(
                    "oauth2: cannot fetch token: {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                );
                if in_header && (status.as_u16() == 400 || status.as_u16() == 401) {
                    continue;
                }
                return Err(last);
            }
            let (token, kind, expires_in) = parse_token(&body)?;
            let kind = match kind.to_ascii_lowercase().as_str() {
                "" | "bearer" => "Bearer".to_string(),
                "mac" => "MAC".to_string(),
                "basic" => "Basic".to_string(),
                _ => kind,
            };
            let h = HeaderValue::from_str(&format!("{kind} {token}")).map_err(|_| {
                "oauth2: the token holds characters HTTP does not allow".to_string()
            })?;
            let exp = expires_in
                .filter(|s| *s > 0)
                .map(|s| Instant::now() + Duration::from_secs(s));
            *self.cached.lock().expect("token lock poisoned") = Some((h.clone(), exp));
            return Ok(h);
        }
        Err(last)
    }
}

/// `(access_token, token_type, expires_in)` from a JSON or form-encoded token response.
fn parse_token(body: &[u8]) -> Result<(String, String, Option<u64>), String> {
    let num = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_f64().map(|f| f as u64))
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let token = v["access_token"].as_str().unwrap_or("").to_string();
        if token.is_empty() {
            return Err("oauth2: server response missing access_token".into());
        }
        let kind = v["token_type"].as_str().unwrap_or("").to_string();
        return Ok((token, kind, num(&v["expires_in"])));
    }
    let mut token = String::new();
    let mut kind = String::new();
    let mut exp = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "access_token" => token = v.into_owned(),
            "token_type" => kind = v.into_owned(),
            "expires_in" => exp = v.parse().ok(),
            _ => {}
        }
    }
    if token.is_empty() {
        return Err("oauth2: server response missing access_token".into());
    }
    Ok((token, kind, exp))
}

/// An `http://` proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Proxy-Authorization` from the URL's user info.
    pub auth: Option<HeaderValue>,
}

/// Parses an `http://[user:pass@]host[:port]` proxy URL.
pub fn parse_proxy(s: &str) -> Result<Proxy, String> {
    let u = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL ({e})"))?;
    if u.scheme() != "http" {
        return Err(format!(
            "proxy scheme `{}` is not supported (use an http:// proxy)",
            u.scheme()
        ));
    }
    let host = u
        .host_str()
        .ok_or_else(|| format!("`{s}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let auth = if u.username().is_empty() {
        None
    } else {
        let user = percent_decode(u.username());
        let pass = percent_decode(u.password().unwrap_or(""));
        HeaderValue::from_str(&format!(
            "Basic {}",
            base64(format!("{user}:{pass}").as_bytes())
        ))
        .ok()
    };
    Ok(Proxy { host, port, auth })
}

/// A `NO_PROXY` / `no_proxy` list, matched as golang.org/x/net/http/httpproxy matches it.
#[derive(Debug, Clone, Default)]
pub struct NoProxy {
    all: bool,
    ips: Vec<std::net::IpAddr>,
    nets: Vec<(std::net::IpAddr, u8)>,
    /// (`.suffix`, also the bare domain, port or empty).
    domains: Vec<(String, bool, String)>,
}

impl NoProxy {
    /// Parses a comma-separated list.
    pub fn parse(s: &str) -> NoProxy {
        let mut n = NoProxy::default();
        for e in s.split(',').map(|e| e.trim().to_ascii_lowercase()) {
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                n.all = true;
                continue;
            }
            if let Some((ip, bits)) = e.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse(), bits.parse()) {
                    n.nets.push((ip, bits));
                }
                continue;
            }
            if let Ok(ip) = e.parse() {
                n.ips.push(ip);
                continue;
            }
            let (mut host, port) = match e.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => {
                    (h.to_string(), p.to_string())
                }
                _ => (e.clone(), String::new()),
            };
            if let Some(rest) = host.strip_prefix("*.") {
                host = format!(".{rest}");
            }
            let bare = !host.starts_with('.');
            if bare {
                host = format!(".{host}");
            }
            n.domains.push((host, bare, port));
        }
        n
    }

    /// True when `host:port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host.to_ascii_lowercase();
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.ips.contains(&ip)
                || self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits));
        }
        let port = port.to_string();
        self.domains.iter().any(|(suffix, bare, p)| {
            (host.ends_with(suffix.as_str()) || (*bare && host == suffix[1..]))
                && (p.is_empty() || *p == port)
        })
    }
}

fn in_net(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    let (a, b, width): (u128, u128, u32) = match (ip, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => {
            (u32::from(a).into(), u32::from(b).into(), 32)
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

/// Which proxy, if any, a request goes through.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    /// `proxy_url`.
    pub(super) fixed: Option<Proxy>,
    /// `no_proxy`.
    pub(super) no_proxy: Option<NoProxy>,
    /// `HTTP_PROXY` (`proxy_from_environment`).
    pub(super) env_http: Option<Proxy>,
    /// `HTTPS_PROXY` (`proxy_from_environment`).
    pub(super) env_https: Option<Proxy>,
    /// `NO_PROXY` (`proxy_from_environment`).
    pub(super) env_no_proxy: NoProxy,
    /// `proxy_from_environment`.
    pub(super) from_env: bool,
    /// `proxy_connect_header`, sent with `CONNECT`.
    pub connect_headers: Vec<(HeaderName, HeaderValue)>,
    /// `skip_resolve_phase_with_proxy` applies (a fixed proxy is set).
    pub skip_resolve: bool,
}

impl Proxies {
    /// The proxy for a request to `scheme://host:port`. Like Go: a fixed `proxy_url` without
    /// `no_proxy` takes everything; with `no_proxy`, and from the environment, loopback and
    /// `localhost` are never proxied.
    pub fn for_target(&self, scheme: &str, host: &str, port: u16) -> Option<&Proxy> {
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if let Some(p) = &self.fixed {
            return match &self.no_proxy {
                None => Some(p),
                Some(n) if loopback || n.matches(host, port) => None,
                Some(_) => Some(p),
            };
        }
        if !self.from_env || loopback || self.env_no_proxy.matches(host, port) {
            return None;
        }
        if scheme == "https" {
            self.env_https.as_ref()
        } else {
            self.env_http.as_ref()
        }
    }
}

/// Serializes `proxy_connect_header` values as secrets.
pub(crate) fn ser_secret_map<S: serde::Serializer>(
    m: &BTreeMap<String, Vec<String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut out = s.serialize_map(Some(m.len()))?;
    for (k, vs) in m {
        let hidden: Vec<&str> = vs.iter().map(|_| "<secret>").collect();
        out.serialize_entry(k, &hidden)?;
    }
    out.end()
}

/// Paths in a config are relative to the config file's directory.
pub fn relative_to(file: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Standard base64 with padding (for `Basic` credentials).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("u:p", "dTpw"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn no_proxy_matches_like_go() {
        let n = NoProxy::parse("example.com, .internal, 10.0.0.0/8, 192.168.1.1, other.org:8080");
        assert!(n.matches("example.com", 80));
        assert!(n.matches("www.example.com", 80));
        assert!(!n.matches("badexample.com", 80));
        assert!(n.matches("db.internal", 5432));
        assert!(!n.matches("internal", 80));
        assert!(n.matches("10.1.2.3", 80));
        assert!(!n.matches("11.1.2.3", 80));
        assert!(n.matches("192.168.1.1", 80));
        assert!(n.matches("other.org", 8080));
        assert!(!n.matches("other.org", 80));
        assert!(NoProxy::parse("*").matches("anything", 1));
    }

    #[test]
    fn token_responses_parse_as_json_or_form() {
        assert_eq!(
            parse_token(br#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#),
            Ok(("abc".into(), "bearer".into(), Some(3600)))
        );
        assert_eq!(
            parse_token(b"access_token=abc&token_type=bearer&expires_in=60"),
            Ok(("abc".into(), "bearer".into(), Some(60)))
        );
        assert!(parse_token(br#"{"error":"invalid_client"}"#).is_err());
    }
}
