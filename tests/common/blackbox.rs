//! Differential harness: the real blackbox_exporter and watchfire's `/probe` side by side on one
//! blackbox.yml, probed with the same `(target, module)`, their answers parsed and compared.
//!
//! Use it from a test crate with
//!
//! ```text
//! mod common;
//! #[path = "common/blackbox.rs"]
//! mod harness;
//! ```
//!
//! and then, in a `#[tokio::test(flavor = "multi_thread")]`:
//!
//! ```text
//! let pair = harness::Pair::start(YAML).await;          // both servers, same config file
//! let (bb, wf) = pair.probe("http://127.0.0.1:8080/", "http_2xx").await;
//! harness::assert_equivalent("ok", &bb, &wf, &["probe_http_status_code"]);
//! ```
//!
//! The exporter is `prometheus-blackbox-exporter` from `PATH` (Debian's package); when it is
//! missing the harness panics: differential tests never pass by skipping. Each server is stopped
//! when its guard is dropped.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::server::{self, AppState};

/// The real exporter's binary (Debian: `apt-get install prometheus-blackbox-exporter`).
pub const EXPORTER_BIN: &str = "prometheus-blackbox-exporter";

/// How long a server may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A free loopback port (bound then released; the exporter binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, empty when absent.
    pub content_type: String,
    /// Body text.
    pub body: String,
}

/// `GET http://addr{path_and_query}` with extra request headers.
pub async fn get(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(150))
        .build()
        .expect("reqwest client");
    let mut req = client.get(format!("http://{addr}{path_and_query}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path_and_query}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().await.expect("reply body");
    Reply {
        status,
        content_type,
        body,
    }
}

/// The real blackbox_exporter, killed on drop.
pub struct Exporter {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Exporter {
    /// Starts the exporter on a free loopback port with `config` and waits until `/-/healthy`
    /// answers. Panics (with the exporter's log) when it is not installed or does not come up.
    pub async fn start(config: &Path) -> Exporter {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {EXPORTER_BIN}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{EXPORTER_BIN} is not installed: the differential tests need the real exporter \
             (run .ci/run, or apt-get install prometheus-blackbox-exporter)"
        );
        let mut last = String::new();
        // The port is released before the exporter binds it: retry on the rare race.
        for _ in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("loopback address");
            let log = config.with_extension(format!("exporter-{}.log", addr.port()));
            let log_file = std::fs::File::create(&log).expect("exporter log file");
            let child = Command::new(EXPORTER_BIN)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=debug")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {EXPORTER_BIN}: {e}"));
            let mut ex = Exporter { child, addr, log };
            match ex.wait_ready().await {
                Ok(()) => return ex,
                Err(e) => last = e,
            }
        }
        panic!("{EXPORTER_BIN} did not come up: {last}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let url = format!("http://{}/-/healthy", self.addr);
        let child = &mut self.child;
        let ready = crate::common::poll_until(READY_WITHIN, || {
            let exited = child.try_wait().ok().flatten();
            let (client, url) = (client.clone(), url.clone());
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let r = client.get(url).send().await.ok()?;
                r.status().is_success().then_some(Ok(()))
            }
        })
        .await;
        match ready {
            Some(Ok(())) => Ok(()),
            Some(Err(status)) => Err(format!(
                "it exited with {status}; log:\n{}",
                self.log_text()
            )),
            None => Err(format!(
                "not healthy after {READY_WITHIN:?}; log:\n{}",
                self.log_text()
            )),
        }
    }

    /// Everything the exporter logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// watchfire's server, in-process, stopped on drop.
pub struct Watchfire {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The running runtime (config, targets).
    pub runtime: Arc<Runtime>,
    cancel: CancellationToken,
}

impl Watchfire {
    /// Loads `config` (panicking with every config error) and serves it on a free loopback port.
    pub async fn start(config: &Path) -> Watchfire {
        let cfg = watchfire::config::load(config)
            .unwrap_or_else(|e| panic!("watchfire rejects {}:\n{e}", config.display()));
        let cancel = CancellationToken::new();
        let opts = RuntimeOptions {
            precise_timer: false,
            ..RuntimeOptions::default()
        };
        let runtime = Runtime::start(cfg, Some(config.to_path_buf()), opts, cancel.clone())
            .await
            .expect("runtime starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(AppState {
            runtime: runtime.clone(),
            registry: prometheus::Registry::new(),
        });
        let c = cancel.clone();
        tokio::spawn(server::serve(listener, state, async move {
            c.cancelled().await
        }));
        Watchfire {
            addr,
            runtime,
            cancel,
        }
    }
}

impl Drop for Watchfire {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Both servers on one config file.
pub struct Pair {
    /// The real exporter.
    pub exporter: Exporter,
    /// watchfire.
    pub watchfire: Watchfire,
    /// The blackbox.yml both read.
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Pair {
    /// Writes `yaml` to a temporary blackbox.yml and starts both servers on it.
    pub async fn start(yaml: &str) -> Pair {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("blackbox.yml");
        std::fs::write(&config, yaml).expect("write blackbox.yml");
        let watchfire = Watchfire::start(&config).await;
        let exporter = Exporter::start(&config).await;
        Pair {
            exporter,
            watchfire,
            config,
            _dir: dir,
        }
    }

    /// `/probe?target=T&module=M` on both at once; returns (exporter, watchfire), parsed.
    /// Panics when either does not answer 200.
    pub async fn probe(&self, target: &str, module: &str) -> (ParsedMetrics, ParsedMetrics) {
        let q = format!("target={}&module={}", enc(target), enc(module));
        self.probe_params(&q, &[]).await
    }

    /// `/probe?{query}` with request headers on both at once; both must answer 200.
    pub async fn probe_params(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> (ParsedMetrics, ParsedMetrics) {
        let (bb, wf) = self.get_both(&format!("/probe?{query}"), headers).await;
        assert_eq!(
            bb.status, 200,
            "exporter answered {} to /probe?{query}: {}",
            bb.status, bb.body
        );
        assert_eq!(
            wf.status, 200,
            "watchfire answered {} to /probe?{query}: {}",
            wf.status, wf.body
        );
        (
            ParsedMetrics::parse(&bb.body),
            ParsedMetrics::parse(&wf.body),
        )
    }

    /// The same GET on both at once, raw; returns (exporter, watchfire).
    pub async fn get_both(&self, path_and_query: &str, headers: &[(&str, &str)]) -> (Reply, Reply) {
        tokio::join!(
            get(self.exporter.addr, path_and_query, headers),
            get(self.watchfire.addr, path_and_query, headers)
        )
    }
}

#[path = "blackbox_scenarios.rs"]
mod scenarios;
#[allow(unused_imports)] // Not every test crate uses the scenario server.
pub use scenarios::{Scenarios, COMPRESSED_TEXT, HUGE_LEN};

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// One metric family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    /// `# HELP` text.
    pub help: String,
    /// `# TYPE`.
    pub kind: String,
    /// Samples in order.
    pub samples: Vec<Sample>,
}

/// A parsed text exposition.
#[derive(Debug, Clone, Default)]
pub struct ParsedMetrics {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
    /// The text parsed.
    pub text: String,
}

impl ParsedMetrics {
    /// Parses the Prometheus text format (panics on a line it cannot read).
    pub fn parse(text: &str) -> ParsedMetrics {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_string()).or_default().help = help.to_string();
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                families.entry(name.to_string()).or_default().kind = kind.to_string();
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (name, labels, rest) = split_sample(line);
            let value = rest
                .split_whitespace()
                .next()
                .and_then(parse_value)
                .unwrap_or_else(|| panic!("no value in sample line `{line}`"));
            families
                .entry(name)
                .or_default()
                .samples
                .push(Sample { labels, value });
        }
        ParsedMetrics {
            families,
            text: text.to_string(),
        }
    }

    /// `probe_success`.
    pub fn success(&self) -> Option<f64> {
        self.value("probe_success")
    }

    /// The value of the first sample of `name`.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.families
            .get(name)
            .and_then(|f| f.samples.first())
            .map(|s| s.value)
    }

    /// The value of the sample of `name` whose labels include `labels`.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families.get(name).and_then(|f| {
            f.samples
                .iter()
                .find(|s| {
                    labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|s| s.value)
        })
    }

    /// The label sets of `name`'s samples.
    pub fn labels_of(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.families
            .get(name)
            .map(|f| f.samples.iter().map(|s| s.labels.clone()).collect())
            .unwrap_or_default()
    }

    /// Drops a metric (one the other side does not have on purpose).
    pub fn remove_metric(&mut self, name: &str) {
        self.families.remove(name);
    }

    /// Drops a label from every sample of `name`.
    pub fn remove_label(&mut self, name: &str, label: &str) {
        if let Some(f) = self.families.get_mut(name) {
            for s in &mut f.samples {
                s.labels.remove(label);
            }
        }
    }

    /// Names of the families that have at least one sample.
    pub fn names(&self) -> BTreeSet<String> {
        self.families
            .iter()
            .filter(|(_, f)| !f.samples.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Label names used by each family.
    pub fn label_names(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.families
            .iter()
            .filter(|(_, f)| !f.samples.is_empty())
            .map(|(n, f)| {
                let names = f
                    .samples
                    .iter()
                    .flat_map(|s| s.labels.keys().cloned())
                    .collect();
                (n.clone(), names)
            })
            .collect()
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// `name{a="b"} rest` → (name, labels, rest).
fn split_sample(line: &str) -> (String, BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let Some(open) = line.find('{').filter(|&i| !line[..i].contains(' ')) else {
        let (name, rest) = line.split_once(' ').unwrap_or((line, ""));
        return (name.to_string(), labels, rest);
    };
    let name = line[..open].to_string();
    let bytes: Vec<char> = line[open + 1..].chars().collect();
    let mut i = 0;
    let mut consumed = open + 1;
    loop {
        while i < bytes.len() && (bytes[i] == ',' || bytes[i] == ' ') {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == '}' {
            i += 1;
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != '=' {
            i += 1;
        }
        let key: String = bytes[start..i].iter().collect();
        i += 1; // '='
        assert!(
            i < bytes.len() && bytes[i] == '"',
            "bad label in sample line `{line}`"
        );
        i += 1;
        let mut val = String::new();
        while i < bytes.len() && bytes[i] != '"' {
            if bytes[i] == '\\' && i + 1 < bytes.len() {
                i += 1;
                val.push(match bytes[i] {
                    'n' => '\n',
                    c => c,
                });
            } else {
                val.push(bytes[i]);
            }
            i += 1;
        }
        i += 1; // closing quote
        labels.insert(key.trim().to_string(), val);
    }
    consumed += bytes[..i].iter().map(|c| c.len_utf8()).sum::<usize>();
    (name, labels, line[consumed..].trim_start())
}

/// Equal `probe_success`.
pub fn assert_same_success(what: &str, bb: &ParsedMetrics, wf: &ParsedMetrics) {
    assert_eq!(
        bb.success(),
        wf.success(),
        "{what}: probe_success differs (exporter vs watchfire)\n--- exporter:\n{}\n--- watchfire:\n{}",
        bb.text,
        wf.text
    );
}

/// Equal sets of metric names, apart from `ignore`.
pub fn assert_same_names(what: &str, bb: &ParsedMetrics, wf: &ParsedMetrics, ignore: &[&str]) {
    let keep = |s: BTreeSet<String>| -> BTreeSet<String> {
        s.into_iter()
            .filter(|n| !ignore.contains(&n.as_str()))
            .collect()
    };
    let (a, b) = (keep(bb.names()), keep(wf.names()));
    assert_eq!(
        a,
        b,
        "{what}: metric names differ\n only exporter: {:?}\n only watchfire: {:?}\n--- exporter:\n{}\n--- watchfire:\n{}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>(),
        bb.text,
        wf.text
    );
}

/// Equal label names per metric (for the metrics both have).
pub fn assert_same_label_names(what: &str, bb: &ParsedMetrics, wf: &ParsedMetrics) {
    let (a, b) = (bb.label_names(), wf.label_names());
    for (name, la) in &a {
        if let Some(lb) = b.get(name) {
            assert_eq!(la, lb, "{what}: label names of {name} differ");
        }
    }
}

/// Equal `# HELP` and `# TYPE` for the metrics both have.
pub fn assert_same_help(what: &str, bb: &ParsedMetrics, wf: &ParsedMetrics) {
    for (name, fa) in &bb.families {
        if let Some(fb) = wf.families.get(name) {
            assert_eq!(fa.help, fb.help, "{what}: HELP of {name} differs");
            assert_eq!(fa.kind, fb.kind, "{what}: TYPE of {name} differs");
        }
    }
}

/// Equal samples (label sets and values) for each metric in `names`; a metric absent from both
/// is equal.
pub fn assert_same_values(what: &str, bb: &ParsedMetrics, wf: &ParsedMetrics, names: &[&str]) {
    for name in names {
        let norm = |m: &ParsedMetrics| -> Vec<(BTreeMap<String, String>, String)> {
            let mut v: Vec<_> = m
                .families
                .get(*name)
                .map(|f| {
                    f.samples
                        .iter()
                        .map(|s| (s.labels.clone(), format!("{}", s.value)))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        assert_eq!(
            norm(bb),
            norm(wf),
            "{what}: {name} differs (exporter vs watchfire)\n--- exporter:\n{}\n--- watchfire:\n{}",
            bb.text,
            wf.text
        );
    }
}

/// Everything the differential suite asserts per scenario: equal `probe_success`, metric names
/// (apart from `ignore_names`), label names, HELP/TYPE, and the values of `values`.
/// Where Debian's 0.23 and upstream differ, watchfire follows upstream: the TLS metrics gained
/// `probe_tls_cipher_info{cipher}` (0.25) and a `serialnumber` label on
/// `probe_ssl_last_chain_info` (0.26), for every prober kind alike (one TLS emitter). Checked
/// here, then set aside for the comparison.
pub fn set_aside_upstream_additions(wf: &mut ParsedMetrics) {
    if wf.families.contains_key("probe_ssl_last_chain_info") {
        let labels = wf.labels_of("probe_ssl_last_chain_info");
        assert!(
            labels
                .iter()
                .all(|l| l.get("serialnumber").is_some_and(|v| !v.is_empty())),
            "serialnumber label: {labels:?}"
        );
        assert!(wf.value("probe_tls_cipher_info").is_some());
    }
    wf.remove_label("probe_ssl_last_chain_info", "serialnumber");
    wf.remove_metric("probe_tls_cipher_info");
}

pub fn assert_equivalent(
    what: &str,
    bb: &ParsedMetrics,
    wf: &ParsedMetrics,
    values: &[&str],
    ignore_names: &[&str],
) {
    assert_same_success(what, bb, wf);
    assert_same_names(what, bb, wf, ignore_names);
    assert_same_label_names(what, bb, wf);
    assert_same_help(what, bb, wf);
    assert_same_values(what, bb, wf, values);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_exposition() {
        let m = ParsedMetrics::parse(
            "# HELP probe_ip_addr_hash Specifies the hash.\n# TYPE probe_ip_addr_hash gauge\n\
             probe_ip_addr_hash 3.668918509e+09\n\
             probe_http_duration_seconds{phase=\"connect\"} 0.0001\n\
             x{a=\"q\\\"b\",c=\"d, e\"} 1\n",
        );
        assert_eq!(m.value("probe_ip_addr_hash"), Some(3_668_918_509.0));
        assert_eq!(
            m.value_with("probe_http_duration_seconds", &[("phase", "connect")]),
            Some(0.0001)
        );
        assert_eq!(
            m.value_with("x", &[("a", "q\"b"), ("c", "d, e")]),
            Some(1.0)
        );
        assert_eq!(m.families["probe_ip_addr_hash"].help, "Specifies the hash.");
    }
}
