//! HTTP SD on the running prober: one poller per `http_sd:` endpoint, each asking every
//! `refresh_interval` and, when a good answer changes the endpoint's targets, reloading.
//!
//! A request is bounded in time (`refresh_timeout`, connect to the end of the body) and size
//! (`max_body`). An answer that is not a 200, not `application/json`, too long, not an HTTP SD
//! list, or whose groups do not make valid targets (a bad URL, a reserved label, a template
//! that fails, a name listed twice) is a failed refresh: the endpoint's last good targets stay,
//! the failure is logged (once per streak, and when its reason changes) and counted
//! (`watchfire_sd_refresh_failures_total{sd,url,reason}`). Before an endpoint's first good
//! answer its section has no targets, and watchfire says so in its log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Runtime;
use crate::config::http_sd::{HttpSd, SdAuth};
use crate::config::sd::{self, Group};

/// Largest credentials file read (a password or a token).
const MAX_SECRET_BYTES: u64 = 64 << 10;

/// Why a refresh failed: the `reason` label of `watchfire_sd_refresh_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailReason {
    /// The credentials file could not be read.
    Credentials,
    /// No connection.
    Connect,
    /// No complete answer within `refresh_timeout`.
    Timeout,
    /// The request failed otherwise (reset, broken answer, TLS).
    Request,
    /// A status other than 200.
    Status,
    /// A `Content-Type` other than `application/json`.
    ContentType,
    /// A body longer than `max_body`.
    TooLarge,
    /// Not a JSON list of groups.
    Parse,
    /// Groups that do not make valid targets.
    Invalid,
}

impl FailReason {
    /// Every reason, in label order.
    pub const ALL: [FailReason; 9] = [
        FailReason::Connect,
        FailReason::ContentType,
        FailReason::Credentials,
        FailReason::Invalid,
        FailReason::Parse,
        FailReason::Request,
        FailReason::Status,
        FailReason::Timeout,
        FailReason::TooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Credentials => "credentials",
            FailReason::Connect => "connect",
            FailReason::Timeout => "timeout",
            FailReason::Request => "request",
            FailReason::Status => "status",
            FailReason::ContentType => "content_type",
            FailReason::TooLarge => "too_large",
            FailReason::Parse => "parse",
            FailReason::Invalid => "invalid",
        }
    }
}

/// A failed refresh.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The credentials file could not be read (its content is never shown).
    #[error("cannot read the credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No connection.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No complete answer in time.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// The request failed otherwise.
    #[error("the request failed: {0}")]
    Request(String),
    /// Not a 200.
    #[error("answered HTTP {0}, not 200")]
    Status(u16),
    /// Not JSON.
    #[error("answered Content-Type `{0}`, not application/json")]
    ContentType(String),
    /// Too long.
    #[error("the answer is longer than max_body ({0} bytes)")]
    TooLarge(usize),
    /// Not a list of groups.
    #[error(
        "not an HTTP SD list ({0}); the format is [{{\"targets\": [...], \"labels\": {{...}}}}]"
    )]
    Parse(#[source] serde_json::Error),
    /// Groups that make no valid targets.
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// The failure's reason label.
    pub fn reason(&self) -> FailReason {
        match self {
            FetchError::Credentials { .. } => FailReason::Credentials,
            FetchError::Connect(_) => FailReason::Connect,
            FetchError::Timeout(_) => FailReason::Timeout,
            FetchError::Request(_) => FailReason::Request,
            FetchError::Status(_) => FailReason::Status,
            FetchError::ContentType(_) => FailReason::ContentType,
            FetchError::TooLarge(_) => FailReason::TooLarge,
            FetchError::Parse(_) => FailReason::Parse,
            FetchError::Invalid(_) => FailReason::Invalid,
        }
    }
}

/// One endpoint's refreshes so far, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct SdStatus {
    /// Targets of the last good answer.
    pub targets: usize,
    /// When the last good answer came.
    pub last_success: Option<SystemTime>,
    /// Failed refreshes by reason.
    pub failures: BTreeMap<FailReason, u64>,
    /// The reason of the failure streak going on, if one is.
    failing: Option<FailReason>,
}

/// The pollers of the running config's endpoints and what they found.
#[derive(Debug, Default)]
pub(super) struct Pollers {
    /// By URL: the section a poller runs for, and its stop.
    running: Mutex<HashMap<String, (HttpSd, CancellationToken)>>,
    /// By shown URL.
    status: Mutex<BTreeMap<String, SdStatus>>,
    /// Told when a good answer changed an endpoint's targets.
    pub(super) changed: Notify,
}

impl Pollers {
    /// Starts a poller for each endpoint of `sections` without one (or whose fetch settings
    /// changed) and stops those of endpoints gone.
    pub(super) fn reconcile(
        self: &Arc<Self>,
        rt: Weak<Runtime>,
        sections: &[HttpSd],
        cancel: &CancellationToken,
    ) {
        let mut running = self.running.lock().expect("pollers lock poisoned");
        let live: HashSet<&String> = sections.iter().map(|s| s.url.expose()).collect();
        running.retain(|url, (_, stop)| {
            let keep = live.contains(url);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for s in sections {
            if let Some((old, stop)) = running.get(s.url.expose()) {
                if old.same_fetch(s) {
                    continue;
                }
                stop.cancel();
            }
            let stop = cancel.child_token();
            running.insert(s.url.expose().clone(), (s.clone(), stop.clone()));
            tokio::spawn(poll(rt.clone(), self.clone(), s.clone(), stop));
        }
        let shown: HashSet<&String> = sections.iter().map(|s| &s.shown).collect();
        let mut status = self.status.lock().expect("status lock poisoned");
        status.retain(|u, _| shown.contains(u));
        for s in sections {
            status.entry(s.shown.clone()).or_default();
        }
    }

    /// Every endpoint's status, by shown URL.
    pub(super) fn status(&self) -> Vec<(String, SdStatus)> {
        let status = self.status.lock().expect("status lock poisoned");
        status.iter().map(|(u, s)| (u.clone(), s.clone())).collect()
    }

    fn succeeded(&self, sd: &HttpSd, targets: usize) {
        let mut status = self.status.lock().expect("status lock poisoned");
        let st = status.entry(sd.shown.clone()).or_default();
        if st.failing.take().is_some() {
            info!(sd = "http", url = %sd.shown, targets, "HTTP SD endpoint answers again");
        }
        st.targets = targets;
        st.last_success = Some(SystemTime::now());
    }

    fn failed(&self, sd: &HttpSd, e: &FetchError) {
        let mut status = self.status.lock().expect("status lock poisoned");
        let st = status.entry(sd.shown.clone()).or_default();
        let reason = e.reason();
        *st.failures.entry(reason).or_default() += 1;
        if st.failing == Some(reason) {
            return;
        }
        st.failing = Some(reason);
        if st.last_success.is_none() {
            warn!(sd = "http", url = %sd.shown, reason = reason.as_str(), error = %e,
                "HTTP SD refresh failed and no answer was good yet: the section has no targets until one is");
        } else {
            warn!(sd = "http", url = %sd.shown, reason = reason.as_str(), error = %e, kept = st.targets,
                "HTTP SD refresh failed; keeping the last good targets");
        }
    }
}

/// Reloads when an HTTP SD endpoint's good answer changed its targets (several changes while
/// a reload runs make one more reload).
pub(super) async fn reload_on_change(rt: Weak<Runtime>, cancel: CancellationToken) {
    loop {
        let Some(pollers) = rt.upgrade().map(|r| r.http_sd.clone()) else {
            return;
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = pollers.changed.notified() => {}
        }
        let Some(rt) = rt.upgrade() else { return };
        info!("an HTTP SD endpoint's targets changed; reloading");
        let _ = rt.reload().await;
    }
}

/// Asks `sd`'s endpoint now and every refresh interval until `stop`.
async fn poll(rt: Weak<Runtime>, pollers: Arc<Pollers>, sd: HttpSd, stop: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(sd.refresh_timeout)
        .connect_timeout(sd.refresh_timeout)
        .user_agent(concat!("watchfire/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let e = FetchError::Request(format!("cannot build the HTTP client: {e}"));
            pollers.failed(&sd, &e);
            return;
        }
    };
    loop {
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            a = fetch(&client, &sd) => a,
        };
        let Some(rt) = rt.upgrade() else { return };
        // Making the targets is CPU work, and the discovery cache's lock may be held by a
        // config load for a while: both off the async threads.
        let recorded = match answer {
            Ok(groups) => {
                let (rt, sd) = (rt.clone(), sd.clone());
                tokio::task::spawn_blocking(move || record(&rt, &sd, groups))
                    .await
                    .unwrap_or_else(|e| Err(FetchError::Invalid(format!("recording failed: {e}"))))
            }
            Err(e) => Err(e),
        };
        match recorded {
            Ok((targets, changed)) => {
                pollers.succeeded(&sd, targets);
                if changed {
                    pollers.changed.notify_one();
                }
            }
            Err(e) => pollers.failed(&sd, &e),
        }
        drop(rt);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(sd.refresh_interval) => {}
        }
    }
}

/// Makes the targets of `groups` with the running config's section of this endpoint and
/// records them in the discovery cache: (targets, whether they changed).
fn record(rt: &Runtime, sd: &HttpSd, groups: Vec<Group>) -> Result<(usize, bool), FetchError> {
    let config = rt.config();
    let Some(current) = config.http_sd.iter().find(|s| s.url == sd.url) else {
        return Ok((0, false));
    };
    let origin = std::path::Path::new(&current.shown);
    let targets = current
        .section
        .targets(&config.modules, groups.clone(), origin)
        .map_err(|e| FetchError::Invalid(e.to_string()))?;
    let mut names = HashSet::with_capacity(targets.len());
    if let Some(t) = targets.iter().find(|t| !names.insert(t.name.as_str())) {
        let msg = format!("the target `{}` is listed twice", t.name);
        return Err(FetchError::Invalid(msg));
    }
    let n = targets.len();
    let mut cache = rt.file_sd.lock().expect("file_sd cache lock poisoned");
    Ok((n, cache.http.record(current, groups, targets)))
}

/// One request to `sd`'s endpoint: its groups, or why not.
pub async fn fetch(client: &reqwest::Client, sd: &HttpSd) -> Result<Vec<Group>, FetchError> {
    let mut req = client
        .get(sd.url.expose())
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            sd.refresh_interval.as_secs_f64().to_string(),
        );
    match &sd.auth {
        Some(SdAuth::Basic {
            username,
            password_file,
        }) => req = req.basic_auth(username, Some(read_secret(password_file).await?)),
        Some(SdAuth::Bearer { token_file }) => {
            req = req.bearer_auth(read_secret(token_file).await?)
        }
        None => {}
    }
    let answer = async {
        let mut resp = req.send().await.map_err(|e| transport(&e, sd))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(FetchError::ContentType(ct));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > sd.max_body as u64)
        {
            return Err(FetchError::TooLarge(sd.max_body));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e, sd))? {
            if body.len() + chunk.len() > sd.max_body {
                return Err(FetchError::TooLarge(sd.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        sd::parse_json(&body).map_err(FetchError::Parse)
    };
    // reqwest's own timeout bounds the request too; this one also bounds reading the body.
    tokio::time::timeout(sd.refresh_timeout, answer)
        .await
        .unwrap_or(Err(FetchError::Timeout(sd.refresh_timeout)))
}

/// A secret file's content without its trailing line breaks.
async fn read_secret(path: &std::path::Path) -> Result<String, FetchError> {
    let err = |source| FetchError::Credentials {
        path: path.display().to_string(),
        source,
    };
    let p = path.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || {
        crate::limits::read_capped(&p, MAX_SECRET_BYTES, "credentials file")
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .await
    .map_err(|e| err(std::io::Error::other(e.to_string())))?
    .map_err(err)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| err(std::io::Error::other("the file is not UTF-8 text")))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// A request that got no answer, typed by walking the error's `source()` chain.
fn transport(e: &reqwest::Error, sd: &HttpSd) -> FetchError {
    let outer: &(dyn std::error::Error + 'static) = e;
    let chain = || std::iter::successors(Some(outer), |err| (*err).source());
    let timed_out = e.is_timeout()
        || chain().any(|err| {
            err.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
    // The innermost cause says the most and never holds the URL (reqwest's own text does).
    let cause = chain()
        .skip(1)
        .last()
        .map(|c| crate::redact::urls_in(&c.to_string()).into_owned())
        .unwrap_or_else(|| "no detail".into());
    if timed_out {
        FetchError::Timeout(sd.refresh_timeout)
    } else if e.is_connect() {
        FetchError::Connect(cause)
    } else {
        FetchError::Request(cause)
    }
}
