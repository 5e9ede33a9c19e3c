//! Configuration: YAML read once and checked into the types the rest of watchfire trusts.
//!
//! A config is a file or a directory of `*.yaml` / `*.yml` files (read in name order). Each file
//! may hold `defaults:` (applied to the targets of that file), `targets:`, `failover:`,
//! `memory:` and blackbox_exporter's `modules:` (a blackbox.yml loads as it stands).
//! Every problem found is reported — not only the first — as a [`ConfigError`] naming the file,
//! the line and the field, so `watchfire check` can list them all; every checker records its
//! problems into one [`crate::diag::Diagnostics`] collector.

mod check;
mod failover;
pub mod raw;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use regex::Regex;

pub use check::{parse_duration, parse_size};

use crate::diag::{ConfigError, ConfigErrors, Origin};
use crate::net::tls::TlsOptions;

/// Default time between planned starts.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default bound on one probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default consecutive failures before a target is down.
pub const DEFAULT_DOWN_AFTER: u32 = 3;
/// Default consecutive successes before a target is up.
pub const DEFAULT_UP_AFTER: u32 = 2;
/// Default cap on the response body read by a probe.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// Shortest interval accepted: below this the schedule would be all overhead.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Label names watchfire itself uses on per-target series; users may not redefine them.
pub const RESERVED_LABELS: &[&str] = &[
    "target", "result", "reason", "to", "le", "quantile", "from", "phase", "job", "instance",
];

/// A checked configuration, ready to run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Scheduled targets, in file order. Failover groups' checks are included, named
    /// `GROUP/INSTANCE-INDEX`.
    pub targets: Vec<Arc<TargetSpec>>,
    /// Failover groups.
    pub failover: Vec<FailoverGroup>,
    /// Containers whose memory is exported.
    pub memory: Vec<crate::memory::Watch>,
    /// blackbox_exporter modules (`modules:`), for `/probe` and targets' `module:`.
    pub modules: crate::blackbox::config::Modules,
    /// The files this config was read from.
    pub sources: Vec<PathBuf>,
}

/// One scheduled HTTP probe, fully resolved (defaults applied, values checked).
///
/// Equality is derived: two specs are equal when everything that changes what is probed or how
/// the series are labelled is the same. Where the target was written ([`TargetSpec::origin`])
/// is not compared.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// Unique name; the `target` label.
    pub name: String,
    /// The URL probed.
    pub url: ProbeUrl,
    /// HTTP method.
    pub method: Method,
    /// Request headers (user-supplied; `Host`, `User-Agent` and `Connection` are added by the
    /// prober unless set here).
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Time between planned starts.
    pub interval: Duration,
    /// Bound on the whole probe.
    pub timeout: Duration,
    /// Upper bound of the random delay added to the first planned start.
    pub jitter: Duration,
    /// User labels, added to every series of this target.
    pub labels: BTreeMap<String, String>,
    /// Checks a response must pass.
    pub expect: Expect,
    /// Reuse one connection across probes.
    pub keep_alive: bool,
    /// Cap on the response body read.
    pub body_limit: usize,
    /// TLS settings (used for `https://`).
    pub tls: TlsOptions,
    /// Consecutive failures before down.
    pub down_after: u32,
    /// Consecutive successes before up.
    pub up_after: u32,
    /// The blackbox module (`prober: http`) whose checks the probe also runs.
    pub module: Option<String>,
    /// Where the target was defined (for messages); not compared.
    pub origin: Uncompared<Origin>,
}

impl TargetSpec {
    /// A target built in code (CLI `probe`, `demo`, tests) with the defaults applied.
    pub fn new(name: impl Into<String>, url: &str) -> Result<TargetSpec, String> {
        Ok(TargetSpec {
            name: name.into(),
            url: ProbeUrl::parse(url)?,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            jitter: Duration::ZERO,
            labels: BTreeMap::new(),
            expect: Expect::default(),
            keep_alive: false,
            body_limit: DEFAULT_BODY_LIMIT,
            tls: TlsOptions::default(),
            down_after: DEFAULT_DOWN_AFTER,
            up_after: DEFAULT_UP_AFTER,
            module: None,
            origin: Uncompared::default(),
        })
    }

    /// True when a reload can keep this target's recorded state: everything that changes what
    /// is probed or how the series are labelled is the same (the derived equality).
    pub fn same_probe(&self, other: &TargetSpec) -> bool {
        self == other
    }
}

/// A value carried beside the ones that matter, which equality ignores: every `Uncompared`
/// equals every other, so a derived `PartialEq` of the struct holding it skips it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uncompared<T>(pub T);

impl<T> PartialEq for Uncompared<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Deref for Uncompared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A checked probe URL: scheme, host, port and the request target, split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// The URL as written (normalised).
    pub full: String,
    /// `https` when true.
    pub tls: bool,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// `Host` header value (`host` or `host:port`).
    pub authority: String,
    /// Path and query (`/health?x=1`).
    pub path_and_query: String,
    /// The host parsed as an IP address, when it is one (no DNS needed).
    pub ip: Option<std::net::IpAddr>,
}

impl ProbeUrl {
    /// Parses and checks an `http://` or `https://` URL.
    pub fn parse(s: &str) -> Result<ProbeUrl, String> {
        let u = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        let tls = match u.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "scheme `{other}` is not supported (use http or https)"
                ))
            }
        };
        let (host, ip) = match u.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), None),
            Some(url::Host::Ipv4(a)) => (a.to_string(), Some(std::net::IpAddr::V4(a))),
            Some(url::Host::Ipv6(a)) => (a.to_string(), Some(std::net::IpAddr::V6(a))),
            None => return Err("the URL has no host".into()),
        };
        if !u.username().is_empty() || u.password().is_some() {
            return Err(
                "credentials in the URL are not supported (use an Authorization header)".into(),
            );
        }
        let port = u
            .port_or_known_default()
            .expect("http and https have default ports");
        let authority = match (u.port(), ip) {
            (None, Some(std::net::IpAddr::V6(a))) => format!("[{a}]"),
            (None, _) => host.clone(),
            (Some(p), Some(std::net::IpAddr::V6(a))) => format!("[{a}]:{p}"),
            (Some(p), _) => format!("{host}:{p}"),
        };
        let mut path_and_query = u.path().to_string();
        if let Some(q) = u.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Ok(ProbeUrl {
            full: u.to_string(),
            tls,
            host,
            port,
            authority,
            path_and_query,
            ip,
        })
    }
}

impl fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// What a successful response looks like.
#[derive(Debug, Clone)]
pub struct Expect {
    /// Accepted status ranges (inclusive); default 200–299.
    pub status: Vec<(u16, u16)>,
    /// JSON path (split on dots) → expected value.
    pub json: Vec<(Vec<String>, serde_json::Value)>,
    /// Regular expression the body must match.
    pub body: Option<Regex>,
    /// Slowest acceptable probe.
    pub max_latency: Option<Duration>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            status: vec![(200, 299)],
            json: Vec::new(),
            body: None,
            max_latency: None,
        }
    }
}

/// Field by field, regular expressions by their source (`Regex` has no equality). The
/// destructuring names every field, so a new one cannot be left out.
impl PartialEq for Expect {
    fn eq(&self, other: &Self) -> bool {
        let Expect {
            status,
            json,
            body,
            max_latency,
        } = self;
        *status == other.status
            && *json == other.json
            && body.as_ref().map(Regex::as_str) == other.body.as_ref().map(Regex::as_str)
            && *max_latency == other.max_latency
    }
}

impl Expect {
    /// True when the body must be read in full before the verdict.
    pub fn needs_body(&self) -> bool {
        self.body.is_some() || !self.json.is_empty()
    }

    /// True when `code` is accepted.
    pub fn status_ok(&self, code: u16) -> bool {
        self.status
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// A failover group: ordered instances, primary first.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverGroup {
    /// Group name.
    pub name: String,
    /// Instances, primary first.
    pub instances: Vec<Instance>,
    /// `auto` failback when true, `manual` otherwise.
    pub auto_failback: bool,
    /// Minimum time a preferred instance must have been up before traffic fails back to it.
    pub hold: Duration,
    /// Minimum time between two switches that are not forced by the active instance failing.
    pub min_switch_interval: Duration,
    /// The failover proxy, when configured.
    pub proxy: Option<ProxyConfig>,
    /// Hooks run on every switch.
    pub hooks: Hooks,
}

/// One instance of a failover group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Base URL as written, without a trailing slash (`http://127.0.0.1:8000`).
    pub base: String,
    /// `host:port`: the `instance` label value and the proxy's upstream.
    pub authority: String,
    /// Host (name or IP literal).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Name of the scheduled health-check target (`GROUP/INDEX`).
    pub target: String,
}

/// The failover proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Listen address.
    pub listen: std::net::SocketAddr,
    /// Most requests in flight.
    pub max_in_flight: usize,
    /// Bound on connecting to an instance.
    pub connect_timeout: Duration,
    /// Bound on an instance's response head.
    pub timeout: Duration,
    /// Pass the client's `Host` on (true) or send the instance's `host:port`.
    pub preserve_host: bool,
    /// `Retry-After` of the 503 when no instance is up.
    pub retry_after: Duration,
}

/// Hooks run on every switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// A command.
    pub exec: Option<ExecHook>,
    /// A webhook.
    pub webhook: Option<WebhookHook>,
}

/// `hooks.exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecHook {
    /// argv.
    pub command: Vec<String>,
    /// Kill after this long.
    pub timeout: Duration,
}

/// `hooks.webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHook {
    /// Where to POST.
    pub url: String,
    /// Bound on one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// Reads and checks a config from a file or a directory of `*.yaml` / `*.yml` files.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let files = config_files(path).map_err(|e| ConfigErrors(vec![e]))?;
    let mut sources = Vec::with_capacity(files.len());
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => sources.push((f.clone(), text)),
            Err(e) => {
                let e = ConfigError::in_file(f, format!("cannot read the file: {e}"));
                return Err(ConfigErrors(vec![e]));
            }
        }
    }
    let named: Vec<(&Path, &str)> = sources
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    check::check_sources(&named)
}

/// Checks config text as if it were read from `name` (tests, embedded configs).
pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    check::check_sources(&[(Path::new(name), text)])
}

/// The files a config path stands for.
fn config_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::in_file(path, format!("cannot open the config: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let entries = std::fs::read_dir(path)
        .map_err(|e| ConfigError::in_file(path, format!("cannot list the directory: {e}")))?;
    for entry in entries {
        let entry = entry
            .map_err(|e| ConfigError::in_file(path, format!("cannot list the directory: {e}")))?;
        let p = entry.path();
        let yaml = matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        if yaml && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::in_file(
            path,
            "the directory holds no *.yaml or *.yml file",
        ));
    }
    Ok(files)
}
