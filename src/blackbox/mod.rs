//! blackbox_exporter compatibility: `modules:` from a blackbox.yml, the `/probe` endpoint, and one
//! prober per blackbox prober kind, each producing the exporter's own metric names.
//!
//! # Layout
//!
//! - this file — what every prober shares: [`Output`] (the metrics of one probe, rendered in
//!   the exposition format), [`Ctx`] (target, deadline, debug log), [`IpProtocol`] and
//!   [`resolve`] (`preferred_ip_protocol` / `ip_protocol_fallback`, `probe_dns_lookup_time_seconds`,
//!   `probe_ip_protocol`, `probe_ip_addr_hash`), and [`TlsConfig`] (`tls_config`).
//! - `client_cert` — `tls_config.cert_file` / `key_file`: the client certificate of mutual TLS,
//!   reloaded when its files change.
//! - `config` — the `modules:` section (blackbox's field names, unknown fields rejected).
//! - `endpoint` — `/probe`, `/config`: timeout rule, module lookup, `probe_success`,
//!   `probe_duration_seconds`, `debug=true`.
//! - `history` — the recent `/probe` results (`--history.limit`): the `/` page and `/logs?id=`.
//! - `http`, `tcp`, `dns`, `icmp`, `grpc` — one file per prober: the module's options struct
//!   and `probe(module, ctx, out) -> bool`. The HTTP prober's probe is in `http_probe`, one
//!   connection of it in `http_conn`, its response-side helpers (decompression, Content-Length,
//!   Last-Modified, CEL) in `http_body`, its client settings (auth incl. OAuth2, proxies) in
//!   `http_client`.
//! - `tls_info` — the TLS certificate metrics blackbox reports after a handshake.

pub mod client_cert;
pub mod config;
pub mod dns;
pub mod endpoint;
pub mod grpc;
pub mod history;
pub mod http;
mod http_body;
pub mod http_client;
mod http_conn;
mod http_probe;
pub mod icmp;
pub mod tcp;
pub mod tls_info;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// A metric type, as blackbox_exporter declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `gauge`
    Gauge,
    /// `counter`
    Counter,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(Vec<(String, String)>, f64)>,
}

/// The metrics of one probe, in the order first reported, plus the debug log.
#[derive(Debug, Default, Clone)]
pub struct Output {
    families: Vec<Family>,
    log: Vec<String>,
    started: Option<Instant>,
    /// Log lines are dropped (a probe nobody asked to debug); see [`Output::quiet`].
    quiet: bool,
}

impl Output {
    /// An empty output; the log's timestamps count from now.
    pub fn new() -> Output {
        Output {
            started: Some(Instant::now()),
            ..Output::default()
        }
    }

    /// An output that keeps no log: `/probe` without `debug=true` (nobody reads it). Probers
    /// may skip formatting log lines when [`Output::logging`] is false.
    pub fn quiet() -> Output {
        Output {
            quiet: true,
            ..Output::new()
        }
    }

    /// Whether log lines are kept.
    pub fn logging(&self) -> bool {
        !self.quiet
    }

    /// Sets an unlabelled gauge (replacing an earlier value of the same name).
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.sample(name, help, Kind::Gauge, &[], value);
    }

    /// Sets a labelled gauge sample (replacing an earlier sample with the same labels).
    pub fn gauge_with(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, Kind::Gauge, labels, value);
    }

    /// Sets a sample of any kind.
    pub fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let fam = match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        };
        match fam.samples.iter_mut().find(|(l, _)| *l == labels) {
            Some(s) => s.1 = value,
            None => fam.samples.push((labels, value)),
        }
    }

    /// The value of an unlabelled sample, if set (tests, debug).
    pub fn value(&self, name: &str) -> Option<f64> {
        self.families
            .iter()
            .find(|f| f.name == name)
            .and_then(|f| f.samples.first())
            .map(|s| s.1)
    }

    /// The value of the sample of `name` with exactly these labels, if set.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .iter()
            .find(|f| f.name == name)?
            .samples
            .iter()
            .find(|(l, _)| {
                l.len() == labels.len()
                    && l.iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map(|s| s.1)
    }

    /// Metric names reported so far.
    pub fn names(&self) -> Vec<&str> {
        self.families.iter().map(|f| f.name.as_str()).collect()
    }

    /// Adds a line to the debug log (shown by `/probe?debug=true`).
    pub fn log(&mut self, line: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let at = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        self.log.push(format!("{at:.6}s {}", line.as_ref()));
    }

    /// Orders families by name and samples by label values, as Go's registry writes them.
    pub fn sort(&mut self) {
        self.families.sort_by(|a, b| a.name.cmp(&b.name));
        for f in &mut self.families {
            f.samples.sort_by(|a, b| {
                let va = a.0.iter().map(|(_, v)| v.as_str());
                let vb = b.0.iter().map(|(_, v)| v.as_str());
                va.cmp(vb)
            });
        }
    }

    /// The debug log.
    pub fn log_lines(&self) -> &[String] {
        &self.log
    }

    /// Renders the metrics in the text exposition format.
    pub fn render(&self, out: &mut String) {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            // push_str rather than write!: this runs for every family of every probe.
            for part in [
                "# HELP ",
                &f.name,
                " ",
                &f.help,
                "\n# TYPE ",
                &f.name,
                " ",
                kind,
                "\n",
            ] {
                out.push_str(part);
            }
            for (labels, v) in &f.samples {
                out.push_str(&f.name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(k);
                        out.push_str("=\"");
                        crate::metrics::escape_label(val, out);
                        out.push('"');
                    }
                    out.push('}');
                }
                out.push(' ');
                if v.is_nan() {
                    out.push_str("NaN");
                } else if v.is_infinite() {
                    out.push_str(if *v > 0.0 { "+Inf" } else { "-Inf" });
                } else {
                    write_value(*v, out);
                }
                out.push('\n');
            }
        }
    }
}

/// Writes a sample value: integers (most probe metrics) without the float formatter.
fn write_value(v: f64, out: &mut String) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let mut n = v.abs() as u64;
        if v < 0.0 {
            out.push('-');
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
    } else {
        let _ = write!(out, "{v}");
    }
}

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
/// `fallback` allows; sets `probe_dns_lookup_time_seconds`, `probe_ip_protocol` and
/// `probe_ip_addr_hash`. An IP literal resolves to itself with a lookup time of 0.
pub async fn resolve(
    host: &str,
    preferred: IpProtocol,
    fallback: bool,
    ctx: &Ctx,
    out: &mut Output,
) -> Result<IpAddr, String> {
    let start = Instant::now();
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    let result = if let Ok(ip) = host_trim.parse::<IpAddr>() {
        Ok(ip)
    } else {
        let lookup = tokio::net::lookup_host((host_trim, 0));
        match tokio::time::timeout(ctx.remaining(), lookup).await {
            Err(_) => Err(format!("resolving {host_trim} timed out")),
            Ok(Err(e)) => Err(format!("cannot resolve {host_trim}: {e}")),
            Ok(Ok(addrs)) => {
                let addrs: Vec<IpAddr> = addrs.map(|a: SocketAddr| a.ip()).collect();
                let want_v6 = preferred == IpProtocol::Ip6;
                let pick = addrs
                    .iter()
                    .find(|a| a.is_ipv6() == want_v6)
                    .or_else(|| if fallback { addrs.first() } else { None })
                    .copied();
                pick.ok_or_else(|| {
                    format!(
                        "{host_trim} has no {} address",
                        if want_v6 { "IPv6" } else { "IPv4" }
                    )
                })
            }
        }
    };
    out.gauge(
        "probe_dns_lookup_time_seconds",
        "Returns the time taken for probe dns lookup in seconds",
        start.elapsed().as_secs_f64(),
    );
    if result.is_err() {
        // blackbox registers both gauges before resolving: a failed lookup reports them as 0.
        out.gauge(
            "probe_ip_protocol",
            "Specifies whether probe ip protocol is IP4 or IP6",
            0.0,
        );
        out.gauge(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
            0.0,
        );
    }
    if let Ok(ip) = &result {
        out.gauge(
            "probe_ip_protocol",
            "Specifies whether probe ip protocol is IP4 or IP6",
            if ip.is_ipv4() { 4.0 } else { 6.0 },
        );
        out.gauge(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
            f64::from(ip_hash(ip)),
        );
        if out.logging() {
            out.log(format!("resolved {host_trim} to {ip}"));
        }
    }
    result
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
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, String> {
        let identity = client_cert::pair(self.cert_file.as_deref(), self.key_file.as_deref())?;
        let opts = crate::probe::tls::TlsOptions {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.as_ref().map(Into::into),
            server_name: self.server_name.clone(),
        };
        let base = crate::probe::tls::client_config(&opts)?;
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
        // The client-certificate checks name their field in the text (`tls_config.key_file:
        // ...`); any other problem is about `tls_config` as a whole.
        let problem = |text: String| {
            config::field_from_text("tls_config.", "tls_config", text).under(section)
        };
        client_cert::pair(self.cert_file.as_deref(), self.key_file.as_deref()).map_err(problem)?;
        let missing = self.missing_files();
        if !missing.is_empty() {
            tracing::warn!(section, files = ?missing, "tls_config names files that do not exist yet; probes with this module fail until they do");
            return Ok(());
        }
        self.client_config(&[]).map(|_| ()).map_err(problem)
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
