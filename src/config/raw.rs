//! The YAML schema as written by users: serde structs that keep source positions
//! ([`Spanned`]) wherever a later check may need to point at a line.
//!
//! Nothing here is trusted: the `check` module turns these into the checked types.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// One YAML file. `T` is what `targets:` is read as: the targets, or
/// [`serde::de::IgnoredAny`] to read past them (a file whose text did not change since its
/// targets were checked: see [`super::inline`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile<T = Vec<Spanned<RawTarget>>> {
    /// Values every target in this file inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Option<Spanned<RawDefaults>>,
    /// Scheduled probes: native HTTP checks and blackbox module targets.
    #[serde(default)]
    pub targets: T,
    /// Targets listed in Prometheus file_sd-style files (checked by [`super::file_sd`]).
    #[serde(default)]
    pub file_sd: Vec<Spanned<RawFileSd>>,
    /// Targets from Prometheus HTTP SD endpoints (checked by [`super::http_sd`]).
    #[serde(default)]
    pub http_sd: Vec<Spanned<RawHttpSd>>,
    /// Failover groups: ordered instances with a health check each.
    #[serde(default)]
    pub failover: Vec<Spanned<RawFailoverGroup>>,
    /// Containers whose memory is exported (checked by [`crate::memory::check_section`]).
    #[serde(default)]
    pub memory: Vec<Spanned<crate::memory::RawWatch>>,
    /// blackbox_exporter modules, by name (checked by [`crate::blackbox::config`]).
    #[serde(default)]
    pub modules: BTreeMap<String, Spanned<crate::blackbox::config::RawModule>>,
    /// The `/probe` guard: which addresses on-demand probes may connect to (checked by
    /// [`crate::net::guard::Guard::compile`]); at most one file may set it.
    #[serde(default)]
    pub probe_guard: Option<Spanned<crate::net::guard::RawGuard>>,
    /// Incident figures' settings (checked by [`crate::incident::config::check_incidents`]).
    #[serde(default)]
    pub incidents: Option<Spanned<crate::incident::config::RawIncidents>>,
    /// Maintenance windows (checked by [`crate::incident::config::check_maintenance`]).
    #[serde(default)]
    pub maintenance: Vec<Spanned<crate::incident::config::RawMaintenance>>,
    /// Incident messages: receivers, routes, escalation, templates (checked by
    /// [`crate::notify::config_check::check_section`]); at most one file may set it.
    #[serde(default)]
    pub notify: Option<Spanned<crate::notify::config::RawNotify>>,
    /// The status page (checked by [`super::status_page`]); at most one file may set it.
    #[serde(default)]
    pub status_page: Option<Spanned<super::status_page::RawStatusPage>>,
    /// What `/metrics` exports (checked by [`super::metrics`]); at most one file may set it.
    #[serde(default)]
    pub metrics: Option<Spanned<super::metrics::RawMetrics>>,
    /// Locations and k of cluster mode (checked by [`super::quorum`]); at most one file may
    /// set it.
    #[serde(default)]
    pub quorum: Option<Spanned<super::quorum::RawQuorum>>,
}

impl RawFile<serde::de::IgnoredAny> {
    /// The file with no targets: what a file read past its `targets:` holds besides them.
    pub fn without_targets(self) -> RawFile {
        let RawFile {
            defaults,
            targets: _,
            file_sd,
            http_sd,
            failover,
            memory,
            modules,
            probe_guard,
            incidents,
            maintenance,
            notify,
            status_page,
            metrics,
            quorum,
        } = self;
        RawFile {
            defaults,
            targets: Vec::new(),
            file_sd,
            http_sd,
            failover,
            memory,
            modules,
            probe_guard,
            incidents,
            maintenance,
            notify,
            status_page,
            metrics,
            quorum,
        }
    }
}

/// Declares a discovery section as written: its own keys, then the keys every discovery
/// section shares (the same names, in the same order, under `file_sd:` and `http_sd:`), which
/// [`RawSdCommon`] borrows for [`super::sd`] to check once.
macro_rules! sd_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident: $ty:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Time between planned starts of every discovered target.
            pub interval: Option<Spanned<String>>,
            /// Bound on one probe.
            pub timeout: Option<Spanned<String>>,
            /// Extra random delay added to the first start.
            pub jitter: Option<Spanned<String>>,
            /// A blackbox module that probes the discovered targets; without it each is a URL
            /// for the native HTTP prober.
            pub module: Option<Spanned<String>>,
            /// Labels of every discovered target (a group's own labels win).
            #[serde(default)]
            pub labels: BTreeMap<String, Spanned<String>>,
            /// Consecutive failures before down.
            pub down_after: Option<Spanned<u32>>,
            /// Consecutive successes before up.
            pub up_after: Option<Spanned<u32>>,
            /// How a group's labels become each target's name, URL or target, module,
            /// interval and labels ([`super::sd_template`]); without it each listed string is
            /// probed as it is.
            pub template: Option<Spanned<RawTemplate>>,
        }

        impl $name {
            /// The keys every discovery section shares.
            pub fn common(&self) -> RawSdCommon<'_> {
                RawSdCommon {
                    interval: &self.interval,
                    timeout: &self.timeout,
                    jitter: &self.jitter,
                    module: &self.module,
                    labels: &self.labels,
                    down_after: &self.down_after,
                    up_after: &self.up_after,
                    template: &self.template,
                }
            }
        }
    };
}

/// The keys of a discovery section that every discovered target shares, as written
/// (borrowed from a [`RawFileSd`] or a [`RawHttpSd`]).
#[derive(Debug, Clone, Copy)]
pub struct RawSdCommon<'a> {
    /// `interval:`.
    pub interval: &'a Option<Spanned<String>>,
    /// `timeout:`.
    pub timeout: &'a Option<Spanned<String>>,
    /// `jitter:`.
    pub jitter: &'a Option<Spanned<String>>,
    /// `module:`.
    pub module: &'a Option<Spanned<String>>,
    /// `labels:`.
    pub labels: &'a BTreeMap<String, Spanned<String>>,
    /// `down_after:`.
    pub down_after: &'a Option<Spanned<u32>>,
    /// `up_after:`.
    pub up_after: &'a Option<Spanned<u32>>,
    /// `template:`.
    pub template: &'a Option<Spanned<RawTemplate>>,
}

sd_section! {
    /// One entry of `file_sd:` as written.
    pub struct RawFileSd {
        /// Paths of the files, relative to the file declaring the section; `*` and `?` may
        /// match in the last path element (`targets/*.json`).
        #[serde(default)]
        pub files: Vec<Spanned<String>>,
        /// Time between two looks at the files for a change (default 5m).
        pub refresh_interval: Option<Spanned<String>>,
    }
}

sd_section! {
    /// One entry of `http_sd:` as written.
    pub struct RawHttpSd {
        /// The endpoint, `http://` or `https://`.
        pub url: Option<Spanned<String>>,
        /// Time between two requests (default 60s, at least 100ms).
        pub refresh_interval: Option<Spanned<String>>,
        /// Bound on one request, connect to the end of the body (default 10s, at most the
        /// refresh interval).
        pub refresh_timeout: Option<Spanned<String>>,
        /// Cap on the answer's body (default 16MiB); a longer answer is refused.
        pub max_body: Option<Spanned<RawSize>>,
        /// Basic authentication, the password read from a file at each request.
        pub basic_auth: Option<Spanned<RawBasicAuth>>,
        /// A file holding a bearer token, read at each request (`Authorization: Bearer ...`).
        pub bearer_token_file: Option<Spanned<String>>,
    }
}

/// `basic_auth:` of an `http_sd:` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    /// The user name.
    pub username: Spanned<String>,
    /// A file holding the password (trailing line breaks are ignored).
    pub password_file: Spanned<String>,
}

/// `template:` of a discovery section as written (compiled by [`super::sd_template`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    /// The target's name (its `target` label); default: what it probes.
    pub name: Option<Spanned<String>>,
    /// What is probed, a URL (native checks and http modules); default `{{ __address__ }}`.
    pub url: Option<Spanned<String>>,
    /// What a non-HTTP module probes (`host:port`, a host): `url` under another name, for
    /// readability; set at most one of the two.
    pub target: Option<Spanned<String>>,
    /// The blackbox module probing the target; default the section's `module:`; empty: the
    /// native HTTP prober.
    pub module: Option<Spanned<String>>,
    /// Time between planned starts (`30s`); default the section's `interval:`.
    pub interval: Option<Spanned<String>>,
    /// Labels added to the target (after the section's and the group's own).
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
}

/// The `defaults:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Time between planned starts.
    pub interval: Option<Spanned<String>>,
    /// Bound on one whole probe.
    pub timeout: Option<Spanned<String>>,
    /// Extra random delay (up to this much) added to the first start.
    pub jitter: Option<Spanned<String>>,
    /// Consecutive failures before a target is down.
    pub down_after: Option<Spanned<u32>>,
    /// Consecutive successes before a target is up.
    pub up_after: Option<Spanned<u32>>,
    /// Reuse one connection across probes instead of a fresh one each time.
    pub keep_alive: Option<bool>,
    /// Cap on the body read, bytes (`1048576`) or with a unit (`1MiB`, `64KiB`).
    pub body_limit: Option<Spanned<RawSize>>,
    /// Headers added to every request.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Labels added to every target's series.
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    /// TLS settings for `https://` targets.
    pub tls: Option<Spanned<RawTls>>,
}

/// A size: a plain number of bytes or a string with a binary or decimal unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a size: bytes (65536) or a number with a unit (\"1MiB\")"
)]
pub enum RawSize {
    /// Bytes.
    Bytes(u64),
    /// `"1MiB"`, `"512KiB"`, `"2MB"`, `"100B"`.
    Text(String),
}

/// One entry of `targets:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name; becomes the `target` label.
    pub name: Option<Spanned<String>>,
    /// `http://` or `https://` URL: probed by the native HTTP prober, or by an http `module:`.
    pub url: Option<Spanned<String>>,
    /// What a `module:` of any prober kind probes, in that prober's syntax (blackbox's
    /// `target=`): `host:port` for tcp and grpc, a host for icmp and dns, a URL for http.
    pub target: Option<Spanned<String>>,
    /// HTTP method, `GET` by default.
    pub method: Option<Spanned<String>>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Raw request body.
    pub body: Option<Spanned<String>>,
    /// Request body as YAML turned into JSON (sets `Content-Type: application/json`).
    pub body_json: Option<Spanned<serde_json::Value>>,
    /// Time between planned starts.
    pub interval: Option<Spanned<String>>,
    /// Bound on one whole probe.
    pub timeout: Option<Spanned<String>>,
    /// Extra random delay (up to this much) added to the first start.
    pub jitter: Option<Spanned<String>>,
    /// Extra labels on every series of this target.
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
    /// What a successful answer looks like.
    pub expect: Option<Spanned<RawExpect>>,
    /// Reuse one connection across probes.
    pub keep_alive: Option<Spanned<bool>>,
    /// Cap on the body read.
    pub body_limit: Option<Spanned<RawSize>>,
    /// TLS settings.
    pub tls: Option<Spanned<RawTls>>,
    /// Consecutive failures before down.
    pub down_after: Option<Spanned<u32>>,
    /// Consecutive successes before up.
    pub up_after: Option<Spanned<u32>>,
    /// A blackbox module (any prober) that probes this target instead of the native HTTP
    /// prober; the request and the checks are the module's.
    pub module: Option<Spanned<String>>,
    /// This target's own `/metrics` detail level (see [`super::metrics`]).
    pub metrics: Option<Spanned<super::metrics::RawTargetMetrics>>,
    /// This target's own quorum: which locations probe it and k (see [`super::quorum`]).
    pub quorum: Option<Spanned<super::quorum::RawQuorum>>,
}

/// `expect:` — every listed check must pass.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    /// Accepted status codes: numbers (`200`), classes (`"2xx"`) or ranges (`"200-299"`).
    #[serde(default)]
    pub status: Option<Vec<Spanned<RawStatus>>>,
    /// Dotted JSON path → expected value (`status: healthy`, `items.0.id: 7`).
    #[serde(default)]
    pub json: BTreeMap<String, Spanned<serde_json::Value>>,
    /// Regular expression the body must match.
    pub body: Option<Spanned<String>>,
    /// Slowest acceptable probe (`500ms`).
    pub max_latency: Option<Spanned<String>>,
}

/// One element of `expect.status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a status code (200), class (\"2xx\") or range (\"200-299\")"
)]
pub enum RawStatus {
    /// `200`
    Code(u64),
    /// `"2xx"` or `"200-299"` or `"200"`.
    Text(String),
}

/// `tls:` settings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// Accept any certificate (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<String>,
    /// Name to verify the certificate against (SNI), instead of the URL's host.
    pub server_name: Option<String>,
}

/// One entry of `failover:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailoverGroup {
    /// Group name.
    pub name: Option<Spanned<String>>,
    /// Base URLs, primary first.
    #[serde(default)]
    pub instances: Vec<Spanned<String>>,
    /// The health check run against every instance.
    pub check: Option<Spanned<RawCheck>>,
    /// Consecutive failures before an instance is down.
    pub down_after: Option<Spanned<u32>>,
    /// Consecutive successes before an instance is up.
    pub up_after: Option<Spanned<u32>>,
    /// `auto` or `manual`.
    pub failback: Option<Spanned<String>>,
    /// Minimum time an instance must stay up before traffic fails back to it.
    pub hold: Option<Spanned<String>>,
    /// Minimum time between two switches.
    pub min_switch_interval: Option<Spanned<String>>,
    /// Flap dampening: each switch within a window lengthens the hold before the next failback.
    pub dampening: Option<Spanned<RawDampening>>,
    /// The failover proxy.
    pub proxy: Option<Spanned<RawProxy>>,
    /// Commands and webhooks run on every switch.
    pub hooks: Option<Spanned<RawHooks>>,
    /// The quorum of every instance check of the group (see [`super::quorum`]).
    pub quorum: Option<Spanned<super::quorum::RawQuorum>>,
}

/// `hooks:` of a failover group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    /// A command run on every switch.
    pub exec: Option<Spanned<RawExec>>,
    /// A JSON POST sent on every switch.
    pub webhook: Option<Spanned<RawWebhook>>,
}

/// `hooks.exec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExec {
    /// argv: program first (a path, or a name looked up on PATH).
    pub command: Vec<Spanned<String>>,
    /// Kill the command after this long (default 30s).
    pub timeout: Option<Spanned<String>>,
}

/// `hooks.webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// `http://` or `https://` URL receiving the JSON POST.
    pub url: Spanned<String>,
    /// Bound on one attempt (default 5s).
    pub timeout: Option<Spanned<String>>,
    /// Attempts after the first, with exponential backoff (default 3).
    pub retries: Option<Spanned<u32>>,
}

/// A failover group's health check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// Path appended to each instance's base URL (`/health`).
    pub path: Option<Spanned<String>>,
    /// HTTP method.
    pub method: Option<Spanned<String>>,
    /// Raw body.
    pub body: Option<Spanned<String>>,
    /// Body as JSON.
    pub body_json: Option<Spanned<serde_json::Value>>,
    /// Time between checks.
    pub interval: Option<Spanned<String>>,
    /// Bound on one check.
    pub timeout: Option<Spanned<String>>,
    /// What a healthy answer looks like.
    pub expect: Option<Spanned<RawExpect>>,
}

/// `dampening:` of a failover group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDampening {
    /// How far back switches count (default 5m; 0s turns dampening off).
    pub window: Option<Spanned<String>>,
    /// The longest hold dampening makes (default 5m).
    pub max_hold: Option<Spanned<String>>,
}

/// A failover group's proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Listen address (`127.0.0.1:8080`).
    pub listen: Spanned<String>,
    /// Most requests forwarded at once; more are answered 503 at once (default 1024).
    pub max_in_flight: Option<Spanned<usize>>,
    /// Bound on connecting to an instance (default 1s).
    pub connect_timeout: Option<Spanned<String>>,
    /// Bound on an instance's response head (default 30s).
    pub timeout: Option<Spanned<String>>,
    /// `preserve` (default: pass the client's Host on) or `instance` (the instance's host:port).
    pub host: Option<Spanned<String>>,
    /// `Retry-After` sent with the 503 when no instance is up (default 5s).
    pub retry_after: Option<Spanned<String>>,
    /// Serve the proxy's listener with `--web.config.file`'s TLS and basic-auth users, as
    /// watchfire's own endpoints are (default false: plain HTTP, no authentication).
    pub web_config: Option<Spanned<bool>>,
}
