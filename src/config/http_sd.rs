//! `http_sd:`: targets from an HTTP endpoint answering Prometheus' HTTP SD format (a JSON list
//! of `{"targets": [...], "labels": {...}}` groups, `Content-Type: application/json`, status
//! 200), polled every `refresh_interval` by the runtime.
//!
//! The config side: the section checked into [`HttpSd`], and the targets of the groups last
//! fetched ([`HttpSdCache`], filled by the runtime's pollers) added to the config on each load.
//! Before an endpoint's first good answer its section has no targets; after it, the last good
//! answer's targets stay until a good answer changes them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};
use crate::redact::Secret;

use super::fields::{duration, resolve_relative, size, Defaults};
use super::sd::{Group, GroupError, SdSection};
use super::{Config, TargetSpec};

pub use super::raw::{RawBasicAuth, RawHttpSd};

/// Default time between two requests to an endpoint.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Default bound on one request, from connecting to the end of the body.
pub const DEFAULT_REFRESH_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on an answer's body.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;
/// Shortest `refresh_interval` accepted.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// How requests to an endpoint authenticate; the secrets stay in their files, read at each
/// request (so a rotated secret is used at the next one) and never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdAuth {
    /// `Authorization: Basic`, the password from a file.
    Basic {
        /// The user name.
        username: String,
        /// The password's file.
        password_file: PathBuf,
    },
    /// `Authorization: Bearer`, the token from a file.
    Bearer {
        /// The token's file.
        token_file: PathBuf,
    },
}

/// One checked `http_sd:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSd {
    /// The endpoint (a secret: a query may hold a token; see [`HttpSd::shown`]).
    pub url: Secret<String>,
    /// The endpoint as it may be shown (in logs, metrics' `url` label).
    pub shown: String,
    /// Time between two requests.
    pub refresh_interval: Duration,
    /// Bound on one request.
    pub refresh_timeout: Duration,
    /// Cap on the answer's body.
    pub max_body: usize,
    /// Authentication, when set.
    pub auth: Option<SdAuth>,
    /// What every discovered target shares, and how a group becomes targets.
    pub section: SdSection,
    /// Where the section is written: file, position, dotted field.
    at: (PathBuf, Pos, String),
}

impl HttpSd {
    /// Where the section is written, as `file:line` and its field (`http_sd[0]`).
    pub fn written_at(&self) -> String {
        let (f, p, field) = &self.at;
        format!("{}:{}: {field}", f.display(), p.line)
    }

    /// The fetch settings: two sections equal in these poll alike.
    pub fn same_fetch(&self, o: &HttpSd) -> bool {
        (&self.url, self.refresh_interval, self.refresh_timeout)
            == (&o.url, o.refresh_interval, o.refresh_timeout)
            && (self.max_body, &self.auth) == (o.max_body, &o.auth)
    }
}

/// Checks one `http_sd:` entry of the file being checked.
pub(super) fn check_section(
    diag: &mut Diagnostics,
    d: &Defaults,
    s: &Spanned<RawHttpSd>,
    field: &str,
) -> Option<HttpSd> {
    let before = diag.count();
    let r = &s.value;
    let url = match &r.url {
        None => {
            diag.error(s, format!("{field}.url"), "missing: the endpoint's URL");
            None
        }
        Some(u) => match url::Url::parse(&u.value) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {
                Some(u.value.clone())
            }
            _ => {
                let shown = crate::redact::url(&u.value);
                let msg = format!("`{shown}` is not an http:// or https:// URL with a host");
                diag.error(u, format!("{field}.url"), msg);
                None
            }
        },
    };
    let limits = (DEFAULT_REFRESH_INTERVAL, MIN_REFRESH_INTERVAL);
    let refresh = super::sd::refresh_interval(diag, &r.refresh_interval, field, limits);
    let timeout = duration(
        diag,
        &r.refresh_timeout,
        &format!("{field}.refresh_timeout"),
    )
    .unwrap_or(DEFAULT_REFRESH_TIMEOUT.min(refresh));
    if let Some(at) = &r.refresh_timeout {
        if timeout.is_zero() || timeout > refresh {
            let msg = "must be longer than 0 and at most refresh_interval";
            diag.error(at, format!("{field}.refresh_timeout"), msg);
        }
    }
    let max_body = r
        .max_body
        .as_ref()
        .and_then(|m| size(diag, m, &format!("{field}.max_body")))
        .unwrap_or(DEFAULT_MAX_BODY);
    let auth = check_auth(diag, r, field);
    let section = SdSection::check(diag, d, r.common(), s, field);
    if diag.count() > before {
        return None;
    }
    let url = url?;
    Some(HttpSd {
        shown: crate::redact::url(&url).into_owned(),
        url: Secret::new(url),
        refresh_interval: refresh,
        refresh_timeout: timeout,
        max_body,
        auth,
        section: section?,
        at: (diag.file().to_path_buf(), Pos::from(s), field.to_string()),
    })
}

/// `basic_auth` or `bearer_token_file` (not both), their files relative to the config file
/// and readable now.
fn check_auth(diag: &mut Diagnostics, r: &RawHttpSd, field: &str) -> Option<SdAuth> {
    let file = |f: &Spanned<String>, key: &str, diag: &mut Diagnostics| {
        let p = resolve_relative(diag.file(), Path::new(&f.value));
        if let Err(e) = std::fs::metadata(&p) {
            let msg = format!("cannot read `{}`: {e}", p.display());
            diag.error(f, format!("{field}.{key}"), msg);
        }
        p
    };
    match (&r.basic_auth, &r.bearer_token_file) {
        (Some(_), Some(b)) => {
            let msg = "set basic_auth or bearer_token_file, not both";
            diag.error(b, format!("{field}.bearer_token_file"), msg);
            None
        }
        (Some(b), None) => Some(SdAuth::Basic {
            username: b.value.username.value.clone(),
            password_file: file(&b.value.password_file, "basic_auth.password_file", diag),
        }),
        (None, Some(t)) => Some(SdAuth::Bearer {
            token_file: file(t, "bearer_token_file", diag),
        }),
        (None, None) => None,
    }
}

/// The groups of an endpoint's last good answer and the targets they made.
#[derive(Debug, Clone)]
struct Fetched {
    groups: Arc<Vec<Group>>,
    /// The section the targets were made for, and the targets.
    built: SdSection,
    targets: Arc<[Arc<TargetSpec>]>,
}

/// The last good answer of each endpoint, by URL: written by the runtime's pollers, read by
/// every config load.
#[derive(Debug, Default)]
pub struct HttpSdCache {
    by_url: HashMap<String, Fetched>,
}

impl HttpSdCache {
    /// Records `groups`, the answer of `sd`'s endpoint, and the `targets` made of them; true
    /// when they differ from the last good answer's targets.
    pub fn record(
        &mut self,
        sd: &HttpSd,
        groups: Vec<Group>,
        targets: Vec<Arc<TargetSpec>>,
    ) -> bool {
        let key = sd.url.expose();
        let changed = match self.by_url.get(key) {
            Some(f) => f.built != sd.section || f.targets[..] != targets[..],
            None => true,
        };
        if changed {
            let targets = match self.by_url.get(key) {
                Some(f) => super::sd::reuse_equal(&f.targets, targets),
                None => targets,
            };
            let entry = Fetched {
                groups: Arc::new(groups),
                built: sd.section.clone(),
                targets: targets.into(),
            };
            self.by_url.insert(key.clone(), entry);
        }
        changed
    }

    /// Targets of the last good answer of `sd`'s endpoint (none before the first).
    pub fn targets(&self, sd: &HttpSd) -> usize {
        self.by_url
            .get(sd.url.expose())
            .map_or(0, |f| f.targets.len())
    }
}

/// Adds every section's targets (from `cache`) to `config.targets`: the ones already made when
/// the section is unchanged, else made anew from the stored groups (a failure is an error
/// naming the section). A name already taken is an error naming both places.
pub(super) fn expand(
    diag: &mut Diagnostics,
    config: &mut Config,
    mut sections: Vec<HttpSd>,
    written: &dyn Fn(&str) -> bool,
    cache: &mut HttpSdCache,
) {
    let mut taken: HashMap<String, String> = config
        .targets
        .iter()
        .map(|t| (t.name.clone(), t.origin.file.display().to_string()))
        .collect();
    // One section per endpoint: the pollers and the cache know an endpoint by its URL.
    let mut first: HashMap<&str, String> = HashMap::new();
    for s in &sections {
        if let Some(other) = first.insert(s.url.expose(), s.written_at()) {
            let (file, pos, field) = &s.at;
            diag.set_file(file);
            let msg = format!("the endpoint {} is already asked at {other}", s.shown);
            diag.error(*pos, format!("{field}.url"), msg);
        }
    }
    drop(first);
    let live: HashSet<String> = sections.iter().map(|s| s.url.expose().clone()).collect();
    cache.by_url.retain(|u, _| live.contains(u));
    for s in &mut sections {
        let (file, pos, field) = s.at.clone();
        diag.set_file(&file);
        if !s
            .section
            .resolve(diag, &config.modules, written, (pos, &field))
        {
            continue;
        }
        let Some(f) = cache.by_url.get_mut(s.url.expose()) else {
            continue;
        };
        if f.built != s.section {
            match s
                .section
                .targets(&config.modules, (*f.groups).clone(), Path::new(&s.shown))
            {
                Ok(t) => {
                    f.built = s.section.clone();
                    f.targets = super::sd::reuse_equal(&f.targets, t).into();
                }
                Err(GroupError { field: g, message }) => {
                    let msg = format!("the last answer of {} at {g}: {message}", s.shown);
                    diag.error(pos, field.clone(), msg);
                    continue;
                }
            }
        }
        for t in f.targets.iter() {
            if let Some(other) = taken.insert(t.name.clone(), s.shown.clone()) {
                let msg = format!(
                    "duplicate target `{}` discovered at {}: also defined in {other}",
                    t.name, s.shown
                );
                diag.error(pos, field.clone(), msg);
            }
        }
        config.targets.extend(f.targets.iter().cloned());
    }
    config.http_sd = sections;
}
