//! The one redaction rule: what watchfire never shows — in `/config`, `/probe?debug=true`,
//! `/logs`, the JSON API, log lines at every level and error messages.
//!
//! - **URLs** ([`url()`]): the userinfo password (`http://user:<secret>@host/`; the user name is
//!   kept, as blackbox_exporter shows a `proxy_url`), and the values of query parameters whose
//!   names say they carry a secret ([`is_secret_name`]).
//! - **Header values** ([`header_is_shown`]): every module header's value is `<secret>` except
//!   those of a short list of headers that never carry credentials (`Host`, `User-Agent`,
//!   `Accept`, `Content-Type`, ...). Hiding by default means a header nobody thought of (an
//!   `X-Tenant-Token`, a signed `X-Request-Signature`) is hidden too.
//! - **Bodies, passwords, bearer tokens, credentials, client secrets, webhook URLs**: hidden
//!   where they are held or shown ([`Secret`], `<secret>`).
//!
//! Redaction works on the structure (a URL's parts, a named field), never by searching a whole
//! log line for things that look like secrets.

use std::borrow::Cow;
use std::fmt;

/// What a hidden value is shown as (blackbox_exporter's and Prometheus' marker).
pub const MASK: &str = "<secret>";

/// Substrings of a query parameter or field name (lower case, `-` read as `_`) that mark its
/// value as a secret: `token` (`access_token`, `id_token`, `X-Auth-Token`), `secret`
/// (`client_secret`), `password`, `passwd`, `pwd`, `apikey`, `api_key`, `signature`,
/// `credential` (`X-Amz-Credential`), `session`.
pub const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "signature",
    "credential",
    "session",
];

/// Query parameter names that are secrets in full (compared ignoring case): `key`, `sig`,
/// `auth`, `authorization`, `pass`, `code`, `jwt`.
pub const SECRET_NAMES: &[&str] = &["key", "sig", "auth", "authorization", "pass", "code", "jwt"];

/// Headers whose values are shown (compared ignoring case); every other header's value is
/// hidden.
pub const SHOWN_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "connection",
    "content-type",
    "host",
    "origin",
    "pragma",
    "referer",
    "user-agent",
];

/// Whether a query parameter or field called `name` holds a secret ([`SECRET_NAMES`],
/// [`SECRET_NAME_PARTS`]).
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    SECRET_NAMES.contains(&lower.as_str()) || SECRET_NAME_PARTS.iter().any(|p| lower.contains(p))
}

/// Whether a header called `name` may be shown with its value ([`SHOWN_HEADERS`]).
pub fn header_is_shown(name: &str) -> bool {
    SHOWN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// `value` as a header called `name` may be shown: as it is, or [`MASK`].
pub fn header_value<'a>(name: &str, value: &'a str) -> &'a str {
    if header_is_shown(name) || value.is_empty() {
        value
    } else {
        MASK
    }
}

/// `u` with its userinfo password and its secret query values ([`is_secret_name`]) replaced
/// by [`MASK`]. Works on anything URL-shaped, with or without a scheme (`user:pw@host:80`),
/// without parsing or re-encoding the rest; borrowed (no copy) when there is nothing to hide.
pub fn url(u: &str) -> Cow<'_, str> {
    let start = u.find("://").map_or(0, |i| i + 3);
    let rest = &u[start..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut out = String::new();
    let mut copied = 0;
    // Userinfo: everything before the last `@` of the authority.
    if let Some(at) = rest[..auth_end].rfind('@') {
        if let Some(colon) = rest[..at].find(':') {
            let (a, b) = (start + colon + 1, start + at);
            if a < b {
                out.push_str(&u[..a]);
                out.push_str(MASK);
                copied = b;
            }
        }
    }
    if let Some(q) = rest.find('?').map(|q| start + q) {
        let end = u[q..].find('#').map_or(u.len(), |f| q + f);
        let mut pos = q + 1;
        for pair in u[q + 1..end].split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                let name_dec = percent_decoded(name);
                if !value.is_empty() && is_secret_name(&name_dec) {
                    let v = pos + name.len() + 1;
                    out.push_str(&u[copied..v]);
                    out.push_str(MASK);
                    copied = v + value.len();
                }
            }
            pos += pair.len() + 1;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(u);
    }
    out.push_str(&u[copied..]);
    Cow::Owned(out)
}

/// A URL that is a secret as a whole (a webhook, whose path often is its credential, as
/// Slack's and Alertmanager's are) as it may be shown: scheme, host and port, then `/<secret>`
/// when it has a path or query; the userinfo is dropped.
pub fn origin(u: &str) -> String {
    let start = u.find("://").map_or(0, |i| i + 3);
    let rest = &u[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end]
        .rsplit_once('@')
        .map_or(&rest[..end], |(_, h)| h);
    let tail = rest[end..].trim_start_matches('/');
    let mut out = format!("{}{host}", &u[..start]);
    if !tail.is_empty() {
        out.push('/');
        out.push_str(MASK);
    }
    out
}

fn percent_decoded(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        url::form_urlencoded::parse(format!("{s}=").as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default(),
    )
}

/// Every URL-shaped word of `text` redacted ([`url()`]): for messages that quote a URL
/// somewhere in them (a config error, a resolver's message). Words are split on whitespace and
/// on quotes and backticks only, so a URL is always one word.
pub fn urls_in(text: &str) -> Cow<'_, str> {
    let is_sep = |c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '(' | ')' | ',');
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    for word in text.split(is_sep) {
        let start = i;
        i += word.len()
            + text[start + word.len()..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
        if !(word.contains('@') || word.contains('?')) {
            continue;
        }
        if let Cow::Owned(r) = url(word) {
            out.push_str(&text[copied..start]);
            out.push_str(&r);
            copied = start + word.len();
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A value that is never shown: its `Debug`, `Display` and `Serialize` all write [`MASK`].
/// What it holds is read with [`Secret::expose`], at the one place it is used.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the place that uses it (never for showing).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_and_secret_query_values_are_hidden() {
        let cases = [
            (
                "http://user:pw@proxy.example:3128",
                "http://user:<secret>@proxy.example:3128",
            ),
            ("https://u:p@h/x?y=1", "https://u:<secret>@h/x?y=1"),
            (
                "https://h/p?access_token=abc&x=1&API-KEY=k&sig=s#frag",
                "https://h/p?access_token=<secret>&x=1&API-KEY=<secret>&sig=<secret>#frag",
            ),
            ("user:pw@host:80", "user:<secret>@host:80"),
            (
                "https://h/p?my%5Ftoken=t",
                "https://h/p?my%5Ftoken=<secret>",
            ),
            (
                "https://a:b@h/?password=c",
                "https://a:<secret>@h/?password=<secret>",
            ),
        ];
        for (u, want) in cases {
            assert_eq!(url(u), want, "{u}");
        }
        for plain in [
            "http://user@host/",
            "https://h/p?x=1&empty_token=",
            "host:80",
            "/var/run/x.sock",
            "https://h/a@b",
        ] {
            assert!(matches!(url(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn an_origin_keeps_only_scheme_host_and_port() {
        assert_eq!(
            origin("https://u:p@hooks.example:8443/services/T0/B0/XYZ?x=1"),
            "https://hooks.example:8443/<secret>"
        );
        assert_eq!(origin("http://h"), "http://h");
        assert_eq!(origin("http://h/"), "http://h");
    }

    #[test]
    fn urls_inside_messages_are_hidden_word_by_word() {
        let m = "url `https://a:SECRET@h/?token=T2` is bad (see http://x:Y@z)";
        assert_eq!(
            urls_in(m),
            "url `https://a:<secret>@h/?token=<secret>` is bad (see http://x:<secret>@z)"
        );
        assert!(matches!(urls_in("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn headers_are_hidden_unless_known_harmless() {
        assert_eq!(header_value("Authorization", "Bearer x"), MASK);
        assert_eq!(header_value("X-Whatever", "x"), MASK);
        assert_eq!(header_value("host", "example.com"), "example.com");
        assert_eq!(header_value("User-Agent", "ua"), "ua");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<secret>\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
