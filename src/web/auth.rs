//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design, so a success is remembered (by a
//! SHA-256 of user, password and hash, never the password itself) and later requests with the
//! same credentials cost a hash lookup, as exporter-toolkit's cache does. Checks run on the
//! blocking pool, at most [`MAX_CONCURRENT_CHECKS`] at once; a request that finds them all busy
//! is answered `503` rather than queued, so a flood of wrong passwords cannot pile up work. An
//! unknown user costs a check against a fixed hash too, so answer times do not tell which
//! users exist.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::schema::Entries;

/// Bcrypt checks running at once, at most.
pub const MAX_CONCURRENT_CHECKS: usize = 4;
/// Remembered successes, at most (forgotten all at once past it).
pub const CACHE_ENTRIES: usize = 1024;

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// No users are configured, or the credentials are right (the user's name).
    Allowed(Option<String>),
    /// Credentials missing or wrong: answer `401` with `WWW-Authenticate: Basic`.
    Denied,
    /// Every bcrypt check is busy: answer `503`.
    Busy,
}

/// The users and their bcrypt hashes, and the successes remembered.
#[derive(Debug, Default)]
pub struct Users {
    hashes: Vec<(String, String)>,
    /// A hash of the first user's cost that an unknown user's password is checked against, so
    /// that it costs what a known user's check does.
    decoy: String,
    cache: Mutex<HashSet<[u8; 32]>>,
    checks: Option<Arc<Semaphore>>,
}

impl Users {
    /// Checked users: `Err` names the user, its line and what is wrong (never the hash).
    pub(super) fn new(entries: &Entries<String>) -> Result<Users, (String, u64, String)> {
        let mut hashes = Vec::new();
        for (name, hash) in &entries.0 {
            let user = name.value.clone();
            let line = name.referenced.line();
            if user.contains(':') {
                return Err((user, line, "a user name cannot contain `:`".into()));
            }
            if hashes.iter().any(|(u, _)| *u == user) {
                return Err((user, line, "listed twice".into()));
            }
            let parts: Vec<&str> = hash.split('$').collect();
            let looks_bcrypt = parts.len() == 4
                && parts[0].is_empty()
                && matches!(parts[1], "2a" | "2b" | "2x" | "2y")
                && parts[2].parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
                && parts[3].len() == 53;
            if !looks_bcrypt {
                return Err((
                    user,
                    line,
                    "is not a bcrypt hash (`$2y$10$` and 53 characters; make one with \
                     `htpasswd -nBC 10 USER`)"
                        .into(),
                ));
            }
            hashes.push((user, hash.clone()));
        }
        let checks = (!hashes.is_empty()).then(|| Arc::new(Semaphore::new(MAX_CONCURRENT_CHECKS)));
        let cost = hashes
            .first()
            .and_then(|(_, h)| h.split('$').nth(2)?.parse().ok())
            .unwrap_or(4);
        let decoy = match checks {
            Some(_) => bcrypt::hash_with_salt("decoy", cost, [7u8; 16])
                .map(|h| h.to_string())
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok(Users {
            hashes,
            decoy,
            cache: Mutex::new(HashSet::new()),
            checks,
        })
    }

    /// How many users.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when no users are configured (every request is allowed).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Checks the `Authorization` header's basic credentials.
    pub async fn check(&self, header: Option<&HeaderValue>) -> Authorization {
        let Some(checks) = &self.checks else {
            return Authorization::Allowed(None);
        };
        let Some((user, password)) = header.and_then(basic_credentials) else {
            return Authorization::Denied;
        };
        let hash = self
            .hashes
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, h)| h.clone());
        let key = cache_key(&user, &password, hash.as_deref().unwrap_or(&self.decoy));
        if hash.is_some() && self.cache.lock().expect("auth cache lock").contains(&key) {
            return Authorization::Allowed(Some(user));
        }
        let Ok(permit) = checks.clone().try_acquire_owned() else {
            return Authorization::Busy;
        };
        let known = hash.is_some();
        let against = hash.unwrap_or_else(|| self.decoy.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password.as_bytes(), &against).unwrap_or(false);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        if !(ok && known) {
            return Authorization::Denied;
        }
        let mut cache = self.cache.lock().expect("auth cache lock");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key);
        Authorization::Allowed(Some(user))
    }
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [user, password, hash] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// `Basic base64(user:password)` taken apart.
fn basic_credentials(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Standard base64 with padding (what every client sends for basic auth).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 != 0 || s.len() - bytes.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_clients_send() {
        assert_eq!(base64_decode("b3BzOnNlY3JldA==").unwrap(), b"ops:secret");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("YW=").is_none());
        assert!(base64_decode("Y!Jj").is_none());
    }

    #[test]
    fn basic_credentials_are_taken_apart() {
        let v = HeaderValue::from_static("Basic b3BzOnNlY3JldA==");
        assert_eq!(
            basic_credentials(&v),
            Some(("ops".to_string(), "secret".to_string()))
        );
        assert!(basic_credentials(&HeaderValue::from_static("Bearer x")).is_none());
    }
}
