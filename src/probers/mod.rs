//! Every probe kind: watchfire's own HTTP prober and the blackbox-compatible ones, each with
//! its options (blackbox's field names for the modules) compiled once at load, a `probe()` that
//! fills in the kind's typed facts as it goes and returns `Result<(), Fail>` (the reason from the
//! one fixed set), and a [`View`] of those facts: the blackbox families `/probe` answers with and
//! the phases, status and size watchfire's own series record. Nothing reads a rendered metric or
//! a log line back.
//!
//! # Layout
//!
//! - this file — what every prober shares: [`Ctx`] (target, deadline), [`Log`] (the probe log,
//!   its [`Line`]s at a [`Level`]),
//!   [`IpProtocol`], [`lookup`] and its [`Resolved`] facts (`preferred_ip_protocol` /
//!   `ip_protocol_fallback`; `probe_dns_lookup_time_seconds`, `probe_ip_protocol`,
//!   `probe_ip_addr_hash`), [`TlsConfig`] (`tls_config`), the [`View`] trait, the [`Facts`] of
//!   any kind, and [`Output`] (the rendered families of one `/probe` answer).
//! - `http` (options), `http_compile` (the load-time step), `http_probe` (one probe, its final
//!   answer in `http_probe/answer`), `http_facts` (its facts and view), `http_conn` (one
//!   connection), `http_body` (decompression, Content-Length, Last-Modified, the regexp and CEL
//!   checks), `http_client` (auth incl. OAuth2, proxies).
//! - `tcp` (options and facts) and `tcp_dialogue` (the connection and the `query_response`
//!   dialogue, which `unix` shares over a unix domain socket); `dns`, `icmp`, `grpc`, `unix`,
//!   `websocket`: one file (or a few) per kind.
//! - `tls_info` — the one TLS emitter every kind reports its handshake with; `client_cert` —
//!   `tls_config.cert_file` / `key_file`, reloaded when the files change.
//! - [`native`] — watchfire's own HTTP prober (a target's `url:` without `module:`): its
//!   options ([`native::HttpCheck`]) and [`native::HttpProber`].

/// Adds a formatted line at a [`Level`] to a [`Log`], formatting it only when the log keeps
/// lines of that level: `plog!(log, Debug, "resolved {host} to {ip}")`.
macro_rules! plog {
    ($log:expr, $level:ident, $($arg:tt)*) => {
        if $log.enabled($crate::probers::Level::$level) {
            $log.write($crate::probers::Level::$level, format_args!($($arg)*));
        }
    };
}
pub(crate) use plog;

pub mod client_cert;
pub mod dns;
pub mod grpc;
pub mod http;
mod http_body;
pub mod http_client;
mod http_compile;
mod http_conn;
pub mod http_facts;
pub mod http_probe;
mod http_settings;
pub mod icmp;
pub mod native;
pub mod tcp;
mod tcp_dialogue;
pub mod tcp_probe;
pub mod tls_info;
pub mod unix;
pub mod websocket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::expo::{Families, Type};
use crate::net;
use crate::probe::{Fail, Phases, Reason};

/// The metrics of one probe as `/probe` answers them (blackbox's families, buffered and sorted as
/// Go's registry writes them), and the probe's debug log beside them for `debug=true` and the
/// recent-probe history.
#[derive(Debug, Default, Clone)]
pub struct Output {
    families: Families,
    log: Vec<Line>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Output {
        Output::default()
    }

    /// Sets an unlabelled gauge (replacing an earlier value of the same name).
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.families.set(name, help, Type::Gauge, &[], value);
    }

    /// Sets a labelled gauge sample (replacing an earlier sample with the same labels).
    pub fn gauge_with(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.families.set(name, help, Type::Gauge, labels, value);
    }

    /// Sets a labelled gauge sample whose label names are not static (a module's `labels:`).
    pub fn gauge_with_owned(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(String, String)],
        value: f64,
    ) {
        self.families
            .set_owned(name, help, Type::Gauge, labels, value);
    }

    /// Sets a sample of any type.
    pub fn sample(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Type,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.families.set(name, help, kind, labels, value);
    }

    /// The value of an unlabelled sample, if set (tests, debug).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.families.value(name)
    }

    /// The value of the sample of `name` with exactly these labels, if set.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families.value_with(name, labels)
    }

    /// Metric names reported so far.
    pub fn names(&self) -> Vec<&str> {
        self.families.names()
    }

    /// Adds a line to the debug log as it is (at `info`, stamped 0 s).
    pub fn log(&mut self, line: impl Into<String>) {
        self.log.push(Line {
            at: Duration::ZERO,
            level: Level::Info,
            msg: line.into(),
        });
    }

    /// Orders families by name and samples by label values, as Go's registry writes them.
    pub fn sort(&mut self) {
        self.families.sort();
    }

    /// Replaces the log with `lines` (the history keeps a probe's families and log together).
    pub fn set_log(&mut self, lines: Vec<Line>) {
        self.log = lines;
    }

    /// The debug log.
    pub fn log_lines(&self) -> &[Line] {
        &self.log
    }

    /// Renders the metrics in the text exposition format.
    pub fn render(&self, out: &mut String) {
        self.families.render(out);
    }
}

/// A module's compiled form, kept in the module beside the options it follows from. Equal
/// whatever it holds, so that comparing modules compares their options only.
#[derive(Debug)]
pub(crate) struct Loaded<T>(pub(crate) Option<Arc<T>>);

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Loaded(None)
    }
}

impl<T> Clone for Loaded<T> {
    fn clone(&self) -> Self {
        Loaded(self.0.clone())
    }
}

impl<T> PartialEq for Loaded<T> {
    fn eq(&self, _: &Loaded<T>) -> bool {
        true
    }
}

impl<T> Eq for Loaded<T> {}

/// What one probe works with.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The `target` parameter as given.
    pub target: String,
    /// The `hostname` parameter (HTTP: Host header and TLS server name), when given.
    pub hostname: Option<String>,
    /// When the probe must be over.
    pub deadline: Instant,
    /// The effective timeout.
    pub timeout: Duration,
    /// The `/probe` guard every connection of this probe is checked against (`None` for
    /// scheduled targets and when no `probe_guard:` is configured).
    pub guard: Option<Arc<net::guard::Session>>,
}

impl Ctx {
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// `preferred_ip_protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum IpProtocol {
    /// IPv4
    #[serde(rename = "ip4", alias = "ipv4")]
    Ip4,
    /// IPv6 (blackbox's default)
    #[default]
    #[serde(rename = "ip6", alias = "ipv6")]
    Ip6,
}

/// Resolves `host` like blackbox_exporter does: the preferred family first, the other one when
/// `fallback` allows ([`net::resolve()`]). An IP literal resolves to itself with a lookup time of
/// 0. What happened is kept in `facts` (rendered as `probe_dns_lookup_time_seconds`,
/// `probe_ip_protocol` and `probe_ip_addr_hash`); a failure is [`Reason::Dns`]. Under a `/probe`
/// guard ([`Ctx::guard`]) the address is checked with `port` (`None` when the probe has none);
/// a refusal is [`Reason::Policy`].
pub async fn lookup(
    host: &str,
    port: Option<u16>,
    preferred: IpProtocol,
    fallback: bool,
    ctx: &Ctx,
    facts: &mut Resolved,
    log: &mut Log,
) -> Result<IpAddr, Fail> {
    let start = Instant::now();
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    let policy = net::Policy {
        preferred: Some(match preferred {
            IpProtocol::Ip4 => net::Family::V4,
            IpProtocol::Ip6 => net::Family::V6,
        }),
        fallback,
        source: None,
    };
    let result = net::resolve(host_trim, port, &policy, ctx.deadline, ctx.guard.as_deref()).await;
    facts.lookup = Some(start.elapsed());
    facts.ip = result.as_ref().ok().copied();
    match result {
        Ok(ip) => {
            plog!(log, Debug, "resolved {host_trim} to {ip}");
            Ok(ip)
        }
        Err(e) => Err(resolve_fail(e, log)),
    }
}

/// The failure a [`net::ResolveError`] is: [`Reason::Policy`] for a guard's refusal,
/// [`Reason::Dns`] otherwise.
pub(crate) fn resolve_fail(e: net::ResolveError, log: &mut Log) -> Fail {
    if let net::ResolveError::Denied(d) = &e {
        plog!(log, Error, "{d}");
        return Fail::new(Reason::Policy, d.to_string());
    }
    plog!(log, Error, "error resolving address: {e}");
    Fail::new(Reason::Dns, e.to_string())
}

/// What resolving the target found: rendered as blackbox's `probe_dns_lookup_time_seconds`,
/// `probe_ip_protocol` and `probe_ip_addr_hash` (the last two 0 when the lookup failed, absent
/// when none was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolved {
    /// How long the lookup took, when one was made.
    pub lookup: Option<Duration>,
    /// The address chosen.
    pub ip: Option<IpAddr>,
}

impl Resolved {
    /// Writes the resolution families.
    pub fn render(&self, out: &mut Output) {
        let Some(took) = self.lookup else { return };
        out.gauge(
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds",
            took.as_secs_f64(),
        );
        self.render_address(out);
    }

    /// Writes `probe_ip_protocol` and `probe_ip_addr_hash` only (0 without an address): the
    /// probers that declare them before resolving.
    pub fn render_address(&self, out: &mut Output) {
        out.gauge(
            "probe_ip_protocol",
            "Specifies whether probe ip protocol is IP4 or IP6",
            match self.ip {
                Some(IpAddr::V4(_)) => 4.0,
                Some(IpAddr::V6(_)) => 6.0,
                None => 0.0,
            },
        );
        out.gauge(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
            self.ip.as_ref().map_or(0.0, |ip| f64::from(ip_hash(ip))),
        );
    }
}

/// The level of a probe log line, blackbox_exporter's four (`--log.prober`): `debug` for each
/// step, `info` for a redirect, `error` for why a probe failed. Ordered from the least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, clap::ValueEnum)]
pub enum Level {
    /// Each step of a probe (resolving, connecting, each request and answer).
    Debug,
    /// What a reader should notice though the probe went on (a redirect, one not followed);
    /// `--log.prober`'s default.
    #[default]
    Info,
    /// Worth a warning.
    Warn,
    /// Why a probe failed (`Probe failed` and the check that failed it).
    Error,
}

impl Level {
    /// The level's name as logfmt writes it (`debug`, `info`, `warn`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// The level with this index (`self as u8`); `Error` past the last.
    pub fn from_index(i: u8) -> Level {
        match i {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warn,
            _ => Level::Error,
        }
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a probe log, kept as data: when it was written (from the probe's start), its
/// level and its message. Shown (`Display`) as `0.000123s level=debug message`; it reads as its
/// message (`Deref<Target = str>`) for searching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// From the probe's start.
    pub at: Duration,
    /// The line's level.
    pub level: Level,
    /// The message, formatted once when the line was written.
    pub msg: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.6}s level={} {}",
            self.at.as_secs_f64(),
            self.level,
            self.msg
        )
    }
}

impl std::ops::Deref for Line {
    type Target = str;
    fn deref(&self) -> &str {
        &self.msg
    }
}

impl std::borrow::Borrow<str> for Line {
    fn borrow(&self) -> &str {
        &self.msg
    }
}

/// The log of one probe (`/probe?debug=true`, the history's `/logs?id=`, and the lines
/// `/probe` writes to stderr): the lines at or above its least level, or nothing at all when
/// nobody will read it ([`Log::off`]). A line below the level is never even formatted.
#[derive(Debug, Clone, Default)]
pub struct Log {
    lines: Vec<Line>,
    started: Option<Instant>,
    least: Level,
}

impl Log {
    /// A log that keeps every line, its timestamps counting from now.
    pub fn new() -> Log {
        Log::at(Level::Debug)
    }

    /// A log that keeps the lines at `least` and above (`--log.prober`), timestamps from now.
    pub fn at(least: Level) -> Log {
        Log {
            lines: Vec::new(),
            started: Some(Instant::now()),
            least,
        }
    }

    /// A log that keeps nothing: the `plog!` macro then does not even format its line.
    pub fn off() -> Log {
        Log::default()
    }

    /// Whether lines are kept at all.
    pub fn on(&self) -> bool {
        self.started.is_some()
    }

    /// Whether a line at `level` would be kept.
    pub fn enabled(&self, level: Level) -> bool {
        self.started.is_some() && level >= self.least
    }

    /// Adds a line as it is (dropped when the level is not kept).
    pub fn line(&mut self, level: Level, line: impl AsRef<str>) {
        if self.enabled(level) {
            self.push(level, line.as_ref().to_string());
        }
    }

    /// Adds a formatted line (what `plog!` calls: the message formatted once, its stamp only
    /// when shown); dropped when the level is not kept.
    pub fn write(&mut self, level: Level, args: std::fmt::Arguments<'_>) {
        if self.enabled(level) {
            self.push(level, args.to_string());
        }
    }

    fn push(&mut self, level: Level, msg: String) {
        let Some(started) = self.started else { return };
        self.lines.push(Line {
            at: started.elapsed(),
            level,
            msg,
        });
    }

    /// The lines so far.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The lines, taken out.
    pub fn into_lines(self) -> Vec<Line> {
        self.lines
    }
}

/// One probe's facts, whatever its kind.
#[derive(Debug)]
pub enum Facts {
    /// An http probe's.
    Http(http_facts::Facts),
    /// A tcp probe's.
    Tcp(tcp::Facts),
    /// A dns probe's.
    Dns(dns::Facts),
    /// An icmp probe's.
    Icmp(icmp::Facts),
    /// A grpc probe's.
    Grpc(grpc::Facts),
    /// A unix probe's.
    Unix(unix::Facts),
    /// A websocket probe's.
    Websocket(websocket::Facts),
}

impl Facts {
    /// The kind's own facts, as a [`View`].
    fn view(&self) -> &dyn View {
        match self {
            Facts::Http(f) => f,
            Facts::Tcp(f) => f,
            Facts::Dns(f) => f,
            Facts::Icmp(f) => f,
            Facts::Grpc(f) => f,
            Facts::Unix(f) => f,
            Facts::Websocket(f) => f,
        }
    }
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        self.view().render(out);
    }

    fn phases(&self) -> Phases {
        self.view().phases()
    }

    fn status(&self) -> Option<u16> {
        self.view().status()
    }

    fn bytes(&self) -> u64 {
        self.view().bytes()
    }
}

/// A kind's facts as data. The blackbox metric families and watchfire's own series are views
/// of them: nothing reads a rendered metric or a log line back.
pub trait View {
    /// Writes the kind's blackbox families (all but `probe_success` and
    /// `probe_duration_seconds`, which the caller adds).
    fn render(&self, out: &mut Output);
    /// The phase timings, under watchfire's one definition per phase ([`Phases`]).
    fn phases(&self) -> Phases;
    /// The HTTP status of the final answer, for the kinds that have one.
    fn status(&self) -> Option<u16> {
        None
    }
    /// Bytes of answer read (the uncompressed body for HTTP).
    fn bytes(&self) -> u64 {
        0
    }
}

/// FNV-32a of the address bytes (blackbox_exporter's `probe_ip_addr_hash`).
pub fn ip_hash(ip: &IpAddr) -> u32 {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// blackbox's `tls_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Skip certificate verification.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// CA certificates (PEM file).
    pub ca_file: Option<String>,
    /// Client certificate (PEM file).
    pub cert_file: Option<String>,
    /// Client key (PEM file).
    pub key_file: Option<String>,
    /// Server name for SNI and verification.
    pub server_name: Option<String>,
    /// `TLS10`..`TLS13`.
    pub min_version: Option<String>,
    /// `TLS10`..`TLS13`.
    pub max_version: Option<String>,
}

impl TlsConfig {
    /// Builds a rustls client config (ALPN as given), with the client certificate of
    /// `cert_file` / `key_file` when they are set ([`client_cert::FileClientCert`]: reloaded when
    /// the files change). Errors name the field and the file.
    pub fn client_config(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ClientConfig>, crate::diag::FieldError> {
        let identity = client_cert::pair(self.cert_file.as_deref(), self.key_file.as_deref())?;
        let opts = crate::net::tls::TlsOptions {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.as_ref().map(Into::into),
            server_name: self.server_name.clone(),
        };
        let base = crate::net::tls::client_config(&opts).map_err(|e| e.under("tls_config"))?;
        let mut cfg = (*base).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        if let Some((cert_file, key_file)) = identity {
            let resolver = client_cert::FileClientCert::new(
                cert_file.into(),
                key_file.into(),
                cfg.crypto_provider().clone(),
            )?;
            cfg.client_auth_cert_resolver = Arc::new(resolver);
        }
        Ok(Arc::new(cfg))
    }

    /// Makes `ca_file`, `cert_file` and `key_file` relative to the config file's directory
    /// (`file`), as watchfire reads every path in a config.
    pub fn resolve_paths(&mut self, file: &std::path::Path) {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file] {
            if let Some(path) = p.as_mut().filter(|s| !s.is_empty()) {
                *path = http_client::relative_to(file, path)
                    .to_string_lossy()
                    .into_owned();
            }
        }
    }

    /// The files named that do not exist (yet): like blackbox, which reads them at probe time,
    /// watchfire then fails the probes rather than the config, and warns at load.
    pub fn missing_files(&self) -> Vec<&str> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| !f.is_empty() && std::fs::metadata(f).is_err())
            .collect()
    }

    /// The load-time check of a tcp, dns or grpc module's `tls_config` (`section`: `tcp`, ...):
    /// `cert_file` and `key_file` come together, and files that exist must be usable. Files
    /// that do not exist yet are a warning ([`TlsConfig::missing_files`]). A problem names its
    /// field below the module (`tcp.tls_config.key_file`).
    pub fn check_at_load(&self, section: &str) -> Result<(), crate::diag::FieldError> {
        if *self == TlsConfig::default() {
            return Ok(());
        }
        let problem = |e: crate::diag::FieldError| e.under(section);
        client_cert::pair(self.cert_file.as_deref(), self.key_file.as_deref()).map_err(problem)?;
        let missing = self.missing_files();
        if !missing.is_empty() {
            tracing::warn!(section, files = ?missing, "tls_config names files that do not exist yet; probes with this module fail until they do");
            return Ok(());
        }
        self.client_config(&[]).map(|_| ()).map_err(problem)
    }
}

/// Serializes a secret as blackbox shows it: `<secret>` (an empty one is left out by the
/// field's `skip_serializing_if`).
pub(crate) fn ser_secret<S: serde::Serializer>(
    v: &impl AsRef<str>,
    s: S,
) -> Result<S::Ok, S::Error> {
    if v.as_ref().is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str("<secret>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_renders_families_in_order_with_escaped_labels() {
        let mut o = Output::new();
        o.gauge(
            "probe_success",
            "Displays whether or not the probe was a success",
            1.0,
        );
        o.gauge_with(
            "probe_http_duration_seconds",
            "Duration",
            &[("phase", "connect")],
            0.5,
        );
        o.gauge_with(
            "probe_http_duration_seconds",
            "Duration",
            &[("phase", "connect")],
            0.25,
        );
        o.gauge_with("x", "y", &[("a", "q\"")], 1.0);
        let mut s = String::new();
        o.render(&mut s);
        assert!(
            s.contains("# TYPE probe_success gauge\nprobe_success 1\n"),
            "{s}"
        );
        assert!(
            s.contains("probe_http_duration_seconds{phase=\"connect\"} 0.25\n"),
            "{s}"
        );
        assert!(s.contains("x{a=\"q\\\"\"} 1"), "{s}");
    }

    #[test]
    fn ip_hash_is_fnv32a_of_the_address_bytes() {
        // FNV-32a of [127, 0, 0, 1].
        assert_eq!(ip_hash(&"127.0.0.1".parse().unwrap()), 0xdaaf_40ed);
    }
}
