//! The `http` module's client settings checked at load, the way Prometheus' HTTP client checks
//! them: authentication (`basic_auth`, `oauth2`, `authorization`, `bearer_token(_file)`) and
//! proxies (`proxy_url`, `no_proxy`, `proxy_from_environment`, `proxy_connect_header`).

use std::path::Path;

use http::header::{HeaderName, HeaderValue};
use serde_saphyr::Spanned;

use super::http::HttpModule;
use super::http_client::{
    parse_proxy, relative_to, Auth, Authorization, BasicAuth, NoProxy, OAuth2, OAuth2Config,
    Proxies, SecretSource,
};

/// Where an optional section starts.
fn at<T>(s: &Option<Spanned<T>>) -> Option<serde_saphyr::Location> {
    s.as_ref().map(|s| s.referenced)
}

/// Where a problem is reported: field, position (if known), message.
pub type Bad<'a> = &'a mut dyn FnMut(String, Option<&serde_saphyr::Location>, String);

/// The authentication settings, checked the way Prometheus' HTTP client checks them.
pub fn auth(m: &HttpModule, file: &Path, bad: Bad<'_>) -> Auth {
    let bearer = !m.bearer_token.is_empty() || m.bearer_token_file.is_some();
    if !m.bearer_token.is_empty() && m.bearer_token_file.is_some() {
        bad(
            "bearer_token_file".into(),
            None,
            "at most one of bearer_token & bearer_token_file must be configured".into(),
        );
    }
    if (m.basic_auth.is_some() || m.oauth2.is_some()) && bearer {
        bad(
            if m.basic_auth.is_some() { "basic_auth" } else { "oauth2" }.into(),
            at(&m.basic_auth).or(at(&m.oauth2)).as_ref(),
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
                .into(),
        );
    }
    if m.basic_auth.is_some() && m.oauth2.is_some() {
        bad(
            "oauth2".into(),
            at(&m.oauth2).as_ref(),
            "at most one of basic_auth, oauth2 & authorization must be configured".into(),
        );
    }
    if let Some(b) = &m.basic_auth {
        return basic_auth(m, b, file, bad);
    }
    if let Some(o) = &m.oauth2 {
        return oauth2(m, o, file, bad);
    }
    if let Some(a) = &m.authorization {
        return authorization(a, bearer, file, bad);
    }
    if let Some(f) = &m.bearer_token_file {
        return Auth::Scheme {
            kind: "Bearer".into(),
            credentials: SecretSource::File(relative_to(file, f)),
        };
    }
    if !m.bearer_token.is_empty() {
        return Auth::Scheme {
            kind: "Bearer".into(),
            credentials: SecretSource::Inline(m.bearer_token.clone()),
        };
    }
    Auth::None
}

/// `basic_auth`.
fn basic_auth(m: &HttpModule, b: &Spanned<BasicAuth>, file: &Path, bad: Bad<'_>) -> Auth {
    {
        if m.authorization.is_some() {
            bad(
                "basic_auth".into(),
                Some(&b.referenced),
                "at most one of basic_auth, oauth2 & authorization must be configured".into(),
            );
        }
        let b2 = &b.value;
        if !b2.password.is_empty() && b2.password_file.is_some() {
            bad(
                "basic_auth.password_file".into(),
                Some(&b.referenced),
                "at most one of basic_auth password & password_file must be configured".into(),
            );
        }
        if !b2.username.is_empty() && b2.username_file.is_some() {
            bad(
                "basic_auth.username_file".into(),
                Some(&b.referenced),
                "at most one of basic_auth username & username_file must be configured".into(),
            );
        }
        let user = match &b2.username_file {
            Some(f) => SecretSource::File(relative_to(file, f)),
            None => SecretSource::Inline(b2.username.clone()),
        };
        let pass = match &b2.password_file {
            Some(f) => SecretSource::File(relative_to(file, f)),
            None => SecretSource::Inline(b2.password.clone()),
        };
        Auth::Basic { user, pass }
    }
}

/// `oauth2` (client credentials).
fn oauth2(m: &HttpModule, o: &Spanned<OAuth2Config>, file: &Path, bad: Bad<'_>) -> Auth {
    {
        if m.authorization.is_some() {
            bad(
                "oauth2".into(),
                Some(&o.referenced),
                "at most one of basic_auth, oauth2 & authorization must be configured".into(),
            );
        }
        if !o.value.client_secret.is_empty() && o.value.client_secret_file.is_some() {
            bad(
                "oauth2.client_secret_file".into(),
                Some(&o.referenced),
                "at most one of oauth2 client_secret & client_secret_file must be configured"
                    .into(),
            );
        }
        match OAuth2::new(&o.value, file) {
            Ok(x) => Auth::OAuth2(Box::new(x)),
            Err(msg) => {
                bad("oauth2".into(), Some(&o.referenced), msg);
                Auth::None
            }
        }
    }
}

/// `authorization` (`type` and `credentials`).
fn authorization(a: &Spanned<Authorization>, bearer: bool, file: &Path, bad: Bad<'_>) -> Auth {
    {
        if bearer {
            bad(
                "authorization".into(),
                Some(&a.referenced),
                "authorization is not compatible with bearer_token & bearer_token_file".into(),
            );
        }
        let a2 = &a.value;
        if !a2.credentials.is_empty() && a2.credentials_file.is_some() {
            bad(
                "authorization.credentials_file".into(),
                Some(&a.referenced),
                "at most one of authorization credentials & credentials_file must be configured"
                    .into(),
            );
        }
        let kind = match a2.kind.trim() {
            "" => "Bearer".to_string(),
            k if k.eq_ignore_ascii_case("basic") => {
                bad(
                    "authorization.type".into(),
                    Some(&a.referenced),
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
                k.to_string()
            }
            k => k.to_string(),
        };
        let credentials = match &a2.credentials_file {
            Some(f) => SecretSource::File(relative_to(file, f)),
            None => SecretSource::Inline(a2.credentials.clone()),
        };
        Auth::Scheme { kind, credentials }
    }
}

/// The proxy settings, checked as Prometheus' HTTP client checks them.
pub fn proxies(m: &HttpModule, bad: Bad<'_>) -> Proxies {
    let mut p = Proxies::default();
    if let Some(u) = &m.proxy_url {
        match parse_proxy(&u.value) {
            Ok(x) => p.fixed = Some(x),
            Err(msg) => bad("proxy_url".into(), Some(&u.referenced), msg),
        }
        if m.proxy_from_environment {
            bad(
                "proxy_from_environment".into(),
                Some(&u.referenced),
                "if proxy_from_environment is configured, proxy_url must not be configured".into(),
            );
        }
    }
    if let Some(n) = &m.no_proxy {
        if m.proxy_url.is_none() {
            bad(
                "no_proxy".into(),
                None,
                "if no_proxy is configured, proxy_url must also be configured".into(),
            );
        }
        p.no_proxy = Some(NoProxy::parse(n));
    }
    if !m.proxy_connect_header.is_empty() && m.proxy_url.is_none() && !m.proxy_from_environment {
        bad(
            "proxy_connect_header".into(),
            None,
            "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured".into(),
        );
    }
    for (k, vs) in &m.proxy_connect_header {
        let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
            bad(
                format!("proxy_connect_header.{k}"),
                None,
                format!("`{k}` is not a valid header name"),
            );
            continue;
        };
        for v in vs {
            match HeaderValue::from_str(v) {
                Ok(v) => p.connect_headers.push((name.clone(), v)),
                Err(_) => bad(
                    format!("proxy_connect_header.{k}"),
                    None,
                    "the value holds characters HTTP does not allow".into(),
                ),
            }
        }
    }
    if m.proxy_from_environment {
        p.from_env = true;
        let env = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let parse = |v: Option<String>| {
            v.and_then(|v| {
                let v = if v.contains("://") {
                    v
                } else {
                    format!("http://{v}")
                };
                parse_proxy(&v).ok()
            })
        };
        p.env_http = parse(env(["HTTP_PROXY", "http_proxy"]));
        p.env_https = parse(env(["HTTPS_PROXY", "https_proxy"]));
        p.env_no_proxy = NoProxy::parse(&env(["NO_PROXY", "no_proxy"]).unwrap_or_default());
    }
    p.skip_resolve = m.skip_resolve_phase_with_proxy && p.fixed.is_some();
    p
}
