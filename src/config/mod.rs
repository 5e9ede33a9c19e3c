//! Configuration: YAML read once and checked into the types the rest of watchfire trusts.
//!
//! A config is a file or a directory of `*.yaml` / `*.yml` files (read in name order). Each file
//! may hold `defaults:` (applied to the targets of that file), `targets:`, `failover:`,
//! `memory:`, the discovery sections `file_sd:` and `http_sd:` ([`sd`]) and blackbox_exporter's
//! `modules:` (a blackbox.yml loads as it stands).
//! Every problem found is reported — not only the first — as a [`ConfigError`] naming the file,
//! the line and the field, so `watchfire check` can list them all; every checker records its
//! problems into one [`crate::diag::Diagnostics`] collector.

mod check;
mod failover;
mod fields;
pub mod file_sd;
pub mod http_sd;
pub mod inline;
pub mod metrics;
mod names;
pub mod quorum;
pub mod raw;
pub mod sd;
pub mod sd_template;
pub mod status_page;
mod target;
mod yaml;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::probers::native::{Expect, HttpCheck, ProbeUrl};
pub use fields::{parse_duration, parse_size};
pub use file_sd::{FileSd, FileSdCache};
pub use http_sd::HttpSd;

use crate::diag::{ConfigError, ConfigErrors, Origin};

/// Default time between planned starts.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default bound on one probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default consecutive failures before a target is down.
pub const DEFAULT_DOWN_AFTER: u32 = 3;
/// Default consecutive successes before a target is up.
pub const DEFAULT_UP_AFTER: u32 = 2;
/// Default cap on the response body read by a probe.
pub const DEFAULT_BODY_LIMIT: usize = crate::probers::native::DEFAULT_BODY_LIMIT;
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
    /// `incidents:`: the SLO and request rate incident figures are computed with.
    pub incidents: crate::incident::config::IncidentsConfig,
    /// `maintenance:`: the config's maintenance windows.
    pub maintenance: Vec<crate::incident::maintenance::WindowSpec>,
    /// `notify:`: receivers, routes, escalation and templates of incident messages.
    pub notify: crate::notify::NotifyConfig,
    /// The files this config was read from.
    pub sources: Vec<PathBuf>,
    /// `file_sd:` sections: their files are watched for a change ([`file_sd::changed`]).
    pub file_sd: Vec<FileSd>,
    /// file_sd files that failed to read on this load and kept the targets of their last
    /// good reading (a reload still applies; the problem is reported as a failed reload).
    pub file_sd_stale: Vec<ConfigError>,
    /// `http_sd:` sections: polled by the runtime; their targets, from the last good answer
    /// of each endpoint, are in `targets`.
    pub http_sd: Vec<HttpSd>,
    /// The `status_page:` section, when set ([`status_page::StatusPage::effective`] gives the
    /// page in force either way).
    pub status_page: Option<status_page::StatusPage>,
    /// `metrics:`: detail levels and fleet aggregates of `/metrics`.
    pub metrics: metrics::MetricsConfig,
    /// `quorum:`: locations and k of cluster mode, globally and per target.
    pub quorum: quorum::QuorumConfig,
}

/// One scheduled target, fully resolved (defaults applied, values checked): what is probed
/// ([`TargetSpec::check`]), when, and how its series are labelled and judged.
///
/// Equality is derived: two specs are equal when everything that changes what is probed or how
/// the series are labelled is the same. Where the target was written ([`TargetSpec::origin`])
/// is not compared.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// Unique name; the `target` label.
    pub name: String,
    /// What is probed, and by which prober.
    pub check: Check,
    /// Time between planned starts.
    pub interval: Duration,
    /// Bound on the whole probe.
    pub timeout: Duration,
    /// Upper bound of the random delay added to the first planned start.
    pub jitter: Duration,
    /// User labels, added to every series of this target.
    pub labels: BTreeMap<String, String>,
    /// Consecutive failures before down.
    pub down_after: u32,
    /// Consecutive successes before up.
    pub up_after: u32,
    /// Where the target was defined (for messages); not compared.
    pub origin: Uncompared<Origin>,
}

/// What a scheduled target probes.
// One per target, held in the target's `Arc`: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// The native HTTP prober (`url:` without `module:`); shared with the target's prober.
    Http(Arc<HttpCheck>),
    /// A blackbox module (`module:`) of any prober kind, with its target in that prober's
    /// syntax (`url:` or `target:`). The module itself is looked up by name when the config is
    /// applied, so a reload that changes only the module keeps the target's state.
    Module {
        /// The module's name under `modules:`.
        module: String,
        /// The target, as `/probe?target=` would take it (a URL for http, `host:port` for tcp
        /// and grpc, a host for icmp and dns).
        target: String,
    },
}

impl TargetSpec {
    /// A native HTTP target built in code (CLI `probe`, `demo`, tests) with the defaults applied.
    pub fn new(name: impl Into<String>, url: &str) -> Result<TargetSpec, String> {
        Ok(TargetSpec::with_check(
            name,
            Check::Http(Arc::new(HttpCheck::new(url)?)),
        ))
    }

    /// A target probing `check`, with the default timing and thresholds.
    pub fn with_check(name: impl Into<String>, check: Check) -> TargetSpec {
        TargetSpec {
            name: name.into(),
            check,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            jitter: Duration::ZERO,
            labels: BTreeMap::new(),
            down_after: DEFAULT_DOWN_AFTER,
            up_after: DEFAULT_UP_AFTER,
            origin: Uncompared::default(),
        }
    }

    /// True when a reload can keep this target's recorded state: everything that changes what
    /// is probed or how the series are labelled is the same (the derived equality).
    pub fn same_probe(&self, other: &TargetSpec) -> bool {
        self == other
    }

    /// What is probed, as people read it: the URL of a native check, the module's target.
    pub fn target_text(&self) -> &str {
        match &self.check {
            Check::Http(h) => &h.url.full,
            Check::Module { target, .. } => target,
        }
    }

    /// The module's name, for a module target.
    pub fn module(&self) -> Option<&str> {
        match &self.check {
            Check::Http(_) => None,
            Check::Module { module, .. } => Some(module),
        }
    }

    /// The native HTTP check, for a target without a module.
    pub fn http(&self) -> Option<&HttpCheck> {
        match &self.check {
            Check::Http(h) => Some(h.as_ref()),
            Check::Module { .. } => None,
        }
    }

    /// The native HTTP check, mutably, for a target without a module.
    pub fn http_mut(&mut self) -> Option<&mut HttpCheck> {
        match &mut self.check {
            Check::Http(h) => Some(Arc::make_mut(h)),
            Check::Module { .. } => None,
        }
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
    /// Flap dampening of failbacks.
    pub dampening: Dampening,
    /// The failover proxy, when configured.
    pub proxy: Option<ProxyConfig>,
    /// Hooks run on every switch.
    pub hooks: Hooks,
}

/// Flap dampening of a failover group: the hold before a failback is `hold × 2^(n−1)`, `n` the
/// switches (this group's, failovers and failbacks alike) in the last `window`, at most
/// `max_hold`. An instance that flaps faster than the hold grows never gets traffic back until it
/// has been up for that long; as switches leave the window, the hold shrinks back to `hold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dampening {
    /// How far back switches count; zero turns dampening off.
    pub window: Duration,
    /// The longest hold dampening makes (never less than `hold`).
    pub max_hold: Duration,
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
    /// `web_config: true`: TLS and basic auth from `--web.config.file` on the listener.
    pub web_config: bool,
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
    /// Where to POST: a secret as a whole (its path is often its credential), shown and logged
    /// only through [`crate::redact::origin`].
    pub url: crate::redact::Secret<String>,
    /// Bound on one attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// How a config is loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept a config that defines nothing (no targets, modules, failover groups or memory
    /// watches). Off by default: an empty or comment-only file is far more often a mistake (a
    /// truncated deploy, a wrong path) than an intent, and running it would stop every probe.
    pub allow_empty: bool,
}

/// Reads and checks a config from a file or a directory of `*.yaml` / `*.yml` files. An empty
/// config is accepted; [`load_with`] refuses it unless told otherwise.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, LoadOptions { allow_empty: true })
}

/// Reads and checks a config as [`load`] does; a config that defines nothing is an error
/// naming the file(s) unless `opts.allow_empty`. Every file read is capped at
/// [`crate::limits::MAX_CONFIG_FILE_BYTES`].
pub fn load_with(path: &Path, opts: LoadOptions) -> Result<Config, ConfigErrors> {
    load_cached(path, opts, &mut FileSdCache::default())
}

/// [`load_with`], reading file_sd files through `cache`: unchanged files give back the same
/// target specs, and a file that fails keeps its last good reading (see [`file_sd`]).
pub fn load_cached(
    path: &Path,
    opts: LoadOptions,
    cache: &mut FileSdCache,
) -> Result<Config, ConfigErrors> {
    let files = config_files(path).map_err(|e| ConfigErrors(vec![e]))?;
    let mut sources = Vec::with_capacity(files.len());
    for f in &files {
        let limit = crate::limits::MAX_CONFIG_FILE_BYTES;
        match crate::limits::read_capped_string(f, limit, "config file") {
            Ok(text) => sources.push((f.clone(), text)),
            Err(e) => return Err(ConfigErrors(vec![ConfigError::in_file(f, e.to_string())])),
        }
    }
    let named: Vec<(&Path, &str)> = sources
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let config = check::check_sources(&named, cache)?;
    if !opts.allow_empty && config.is_empty() {
        return Err(ConfigErrors(vec![empty_config_error(path, &files)]));
    }
    Ok(config)
}

impl Config {
    /// Every target's and failover group's component, by name
    /// ([`crate::incident::component_of`]).
    pub fn components(&self) -> std::collections::HashMap<String, String> {
        let groups: Vec<&str> = self.failover.iter().map(|g| g.name.as_str()).collect();
        let targets = self.targets.iter().map(|t| (t.name.as_str(), &t.labels));
        crate::incident::components(targets, &groups)
    }

    /// True when the config defines nothing at all: no targets, modules, failover groups or
    /// memory watches.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
            && self.file_sd.is_empty()
            && self.http_sd.is_empty()
            && self.modules.is_empty()
            && self.failover.is_empty()
            && self.memory.is_empty()
    }
}

/// The error of a config that defines nothing, naming the file(s).
fn empty_config_error(path: &Path, files: &[PathBuf]) -> ConfigError {
    let which = if files.len() == 1 && files[0] == path {
        "the file".to_string()
    } else {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        format!("the {} file(s) {}", files.len(), names.join(", "))
    };
    ConfigError::in_file(
        path,
        format!(
            "the config is empty: no targets, modules, failover groups or memory watches in \
             {which} (is it empty, or only comments?); refusing it, as it would stop every \
             probe (--allow-empty-config accepts it)"
        ),
    )
}

/// Checks config text as if it were read from `name` (tests, embedded configs).
pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigErrors> {
    check::check_sources(&[(Path::new(name), text)], &mut FileSdCache::default())
}

/// A fingerprint of the config's files (their names and contents) to notice a change on disk;
/// `None` when the config cannot be read (which is a change too, and the reload says why).
pub fn fingerprint(path: &Path) -> Option<u64> {
    use std::hash::{Hash as _, Hasher as _};
    let files = config_files(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        f.hash(&mut h);
        crate::limits::read_capped(f, crate::limits::MAX_CONFIG_FILE_BYTES, "config file")
            .ok()?
            .hash(&mut h);
    }
    Some(h.finish())
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
    for (n, entry) in entries.enumerate() {
        if n == crate::limits::MAX_CONFIG_DIR_ENTRIES {
            let msg = format!(
                "the directory holds more than {} entries; a config directory holds only its \
                 *.yaml or *.yml files",
                crate::limits::MAX_CONFIG_DIR_ENTRIES
            );
            return Err(ConfigError::in_file(path, msg));
        }
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
