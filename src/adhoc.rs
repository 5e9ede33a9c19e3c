//! An ad-hoc probe: what `watchfire probe` and `watchfire verify --target` know about one URL,
//! as plain data (no command-line parsing here), and the [`TargetSpec`] it builds. The command
//! line fills [`AdhocProbe`] from its flags; `verify` fills it from its own. A module target
//! (`watchfire probe --module NAME TARGET`) is built by [`module_target`]. [`OneProber`] probes
//! either kind of target outside the scheduler (`probe`, `verify`). Also the default config
//! location, which `run`, `check` and `verify --name` share.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use tokio::time::Instant;

use crate::blackbox::config::{Module, Modules};
use crate::config::{self, Check, HttpCheck, TargetSpec};
use crate::probe::Outcome;
use crate::probers::native::HttpProber;

/// Default config location.
pub const DEFAULT_CONFIG: &str = "probes/";

/// One URL to probe now, with the request and the expectations. Each field is named after the
/// `watchfire probe` flag that sets it, and errors name that flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdhocProbe {
    /// The URL to probe (http:// or https://).
    pub url: String,
    /// HTTP method, any case.
    pub method: String,
    /// Request headers, each `Name: value`.
    pub headers: Vec<String>,
    /// Raw request body.
    pub body: Option<String>,
    /// JSON request body: replaces `body` and sets Content-Type: application/json unless a
    /// header does.
    pub json: Option<String>,
    /// Bound on the whole probe; the interval is twice this.
    pub timeout: Duration,
    /// Accepted statuses: codes, classes (`2xx`) or ranges (`200-299`); empty means 2xx.
    pub expect_status: Vec<String>,
    /// Expected JSON fields, each `path=value` (the value parsed as JSON, else a string).
    pub expect_json: Vec<String>,
    /// Regular expression the body must match.
    pub expect_body: Option<String>,
    /// Slowest acceptable answer.
    pub max_latency: Option<Duration>,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Trust this CA (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Cap on the body read, bytes (at least 1).
    pub body_limit: u64,
}

/// Why an [`AdhocProbe`] does not make a target; each names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum AdhocError {
    /// The URL is not one watchfire can probe.
    #[error("URL `{url}`: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// Why not.
        reason: String,
    },
    /// `--method` is not an HTTP method.
    #[error("--method `{0}` is not an HTTP method")]
    Method(String),
    /// A `--header` without a colon.
    #[error("--header `{0}`: write `Name: value`")]
    HeaderForm(String),
    /// A `--header` whose name is not a header name.
    #[error("--header `{header}`: `{name}` is not a header name")]
    HeaderName {
        /// The flag's value.
        header: String,
        /// The name part.
        name: String,
    },
    /// A `--header` whose value HTTP does not allow.
    #[error("--header `{0}`: the value has characters HTTP does not allow")]
    HeaderValue(String),
    /// `--json` is not JSON.
    #[error("--json: not valid JSON: {0}")]
    Json(serde_json::Error),
    /// `--expect-status` values that do not check.
    #[error("--expect-status: {0}")]
    ExpectStatus(String),
    /// An `--expect-json` without `=`.
    #[error("--expect-json `{0}`: write `path=value`")]
    ExpectJsonForm(String),
    /// An `--expect-json` path with an empty key.
    #[error("--expect-json `{0}`: the path is dot-separated keys, none empty")]
    ExpectJsonPath(String),
    /// `--expect-body` is not a regular expression.
    #[error("--expect-body: invalid regular expression: {0}")]
    ExpectBody(regex::Error),
    /// `--module` names no module of the config.
    #[error("--module {name}: no such module in the config (it has: {known})")]
    NoModule {
        /// The name given.
        name: String,
        /// The modules the config has, comma-separated.
        known: String,
    },
    /// The target is not one the module's prober can probe.
    #[error(
        "target `{target}`: the {prober} prober of module `{module}` cannot probe it: {reason}"
    )]
    ModuleTarget {
        /// The target given.
        target: String,
        /// The module.
        module: String,
        /// The module's prober kind.
        prober: &'static str,
        /// Why not.
        reason: String,
    },
}

impl AdhocProbe {
    /// The one-off target (named `probe`) these options describe.
    pub fn target_spec(&self) -> Result<TargetSpec, AdhocError> {
        let mut spec = HttpCheck::new(&self.url).map_err(|e| AdhocError::Url {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        spec.method = http::Method::from_bytes(self.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| AdhocError::Method(self.method.clone()))?;
        for h in &self.headers {
            let (name, value) = header(h)?;
            spec.headers.append(name, value);
        }
        if let Some(b) = &self.body {
            spec.body = bytes::Bytes::from(b.clone());
        }
        if let Some(j) = &self.json {
            let v: serde_json::Value = serde_json::from_str(j).map_err(AdhocError::Json)?;
            spec.body = bytes::Bytes::from(v.to_string());
            if !spec.headers.contains_key(CONTENT_TYPE) {
                spec.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        if !self.expect_status.is_empty() {
            spec.expect.status = expect_status(&self.expect_status)?;
        }
        for j in &self.expect_json {
            spec.expect.json.push(expect_json(j)?);
        }
        if let Some(re) = &self.expect_body {
            spec.expect.body = Some(regex::Regex::new(re).map_err(AdhocError::ExpectBody)?);
        }
        spec.expect.max_latency = self.max_latency;
        spec.tls.insecure_skip_verify = self.insecure;
        spec.tls.ca_file = self.ca_file.clone();
        spec.body_limit = usize::try_from(self.body_limit)
            .unwrap_or(usize::MAX)
            .max(1);
        let mut target = TargetSpec::with_check("probe", Check::Http(Arc::new(spec)));
        target.timeout = self.timeout;
        target.interval = self.timeout * 2;
        Ok(target)
    }
}

/// The one-off target (named `probe`) that probes `target` with the module `module` of
/// `modules`, bounded by `timeout` (and by the module's own `timeout`, when shorter).
pub fn module_target(
    modules: &Modules,
    module: &str,
    target: &str,
    timeout: Duration,
) -> Result<TargetSpec, AdhocError> {
    let Some(m) = modules.get(module) else {
        return Err(AdhocError::NoModule {
            name: module.to_string(),
            known: modules
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    crate::blackbox::endpoint::check_target(m.prober, target).map_err(|reason| {
        AdhocError::ModuleTarget {
            target: target.to_string(),
            module: module.to_string(),
            prober: m.prober.as_str(),
            reason,
        }
    })?;
    let check = Check::Module {
        module: module.to_string(),
        target: target.to_string(),
    };
    let mut spec = TargetSpec::with_check("probe", check);
    spec.timeout = timeout;
    spec.interval = timeout * 2;
    Ok(spec)
}

/// Probes one target outside the scheduler (`watchfire probe`, `watchfire verify`): the native
/// HTTP prober, or the target's blackbox module.
// One per probed target, made once: boxing the larger variant would save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum OneProber {
    /// A native HTTP check.
    Native(HttpProber),
    /// A module target.
    Module {
        /// The module.
        module: Arc<Module>,
        /// What it probes.
        target: String,
        /// Bound on one probe.
        timeout: Duration,
    },
}

impl OneProber {
    /// The prober for `spec`, its module (if any) taken from `modules`.
    pub fn new(spec: &TargetSpec, modules: &Modules) -> Result<OneProber, String> {
        match &spec.check {
            Check::Http(h) => Ok(OneProber::Native(HttpProber::new(h.clone(), spec.timeout)?)),
            Check::Module { module, target } => {
                let m = modules
                    .get(module)
                    .ok_or_else(|| format!("no module named `{module}` is configured"))?;
                Ok(OneProber::Module {
                    module: m.clone(),
                    target: target.clone(),
                    timeout: spec.timeout,
                })
            }
        }
    }

    /// Runs one probe now; `planned` is when it was meant to start.
    pub async fn probe(&self, planned: Instant) -> Outcome {
        match self {
            OneProber::Native(p) => p.probe(planned).await,
            OneProber::Module {
                module,
                target,
                timeout,
            } => {
                Box::pin(crate::blackbox::endpoint::scheduled(
                    module, target, *timeout, planned,
                ))
                .await
            }
        }
    }
}

/// One `Name: value` header.
fn header(h: &str) -> Result<(HeaderName, HeaderValue), AdhocError> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| AdhocError::HeaderForm(h.to_string()))?;
    let name = HeaderName::from_bytes(k.trim().as_bytes()).map_err(|_| AdhocError::HeaderName {
        header: h.to_string(),
        name: k.trim().to_string(),
    })?;
    let value =
        HeaderValue::from_str(v.trim()).map_err(|_| AdhocError::HeaderValue(h.to_string()))?;
    Ok((name, value))
}

/// The accepted statuses, checked as the config checks a target's `expect.status`.
fn expect_status(values: &[String]) -> Result<Vec<(u16, u16)>, AdhocError> {
    let list = values
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "targets:\n  - name: x\n    url: http://127.0.0.1/\n    expect:\n      status: [{list}]\n"
    );
    let c = config::load_str("--expect-status", &yaml).map_err(|e| {
        AdhocError::ExpectStatus(
            e.0.iter()
                .map(|x| x.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let expect = c.targets[0].http().map(|h| h.expect.status.clone());
    Ok(expect.expect("a target with a url and no module is a native HTTP check"))
}

/// One `path=value` JSON expectation: the path's keys and the value.
fn expect_json(j: &str) -> Result<(Vec<String>, serde_json::Value), AdhocError> {
    let (path, value) = j
        .split_once('=')
        .ok_or_else(|| AdhocError::ExpectJsonForm(j.to_string()))?;
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(AdhocError::ExpectJsonPath(j.to_string()));
    }
    let v = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((path.split('.').map(str::to_string).collect(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(url: &str) -> AdhocProbe {
        AdhocProbe {
            url: url.into(),
            method: "get".into(),
            headers: Vec::new(),
            body: None,
            json: None,
            timeout: Duration::from_secs(5),
            expect_status: Vec::new(),
            expect_json: Vec::new(),
            expect_body: None,
            max_latency: None,
            insecure: false,
            ca_file: None,
            body_limit: 1024 * 1024,
        }
    }

    #[test]
    fn a_json_body_sets_the_content_type_and_the_flags_fill_the_target() {
        let spec = AdhocProbe {
            json: Some(r#"{ "a": 1 }"#.into()),
            headers: vec!["X-Trace: 7".into()],
            expect_status: vec!["2xx".into(), "404".into()],
            expect_json: vec!["status.ok=true".into()],
            ..probe("http://127.0.0.1:8000/predict")
        }
        .target_spec()
        .expect("valid flags");
        assert_eq!(spec.name, "probe");
        assert_eq!(spec.interval, Duration::from_secs(10));
        let spec = spec.http().expect("a native check").clone();
        assert_eq!(spec.method, http::Method::GET);
        assert_eq!(&spec.body[..], br#"{"a":1}"#);
        assert_eq!(spec.headers[CONTENT_TYPE], "application/json");
        assert_eq!(spec.headers["x-trace"], "7");
        assert_eq!(spec.expect.status, vec![(200, 299), (404, 404)]);
        assert_eq!(
            spec.expect.json,
            vec![(
                vec!["status".to_string(), "ok".to_string()],
                serde_json::Value::Bool(true)
            )]
        );
    }

    #[test]
    fn each_error_names_its_flag() {
        let cases = [
            (
                AdhocProbe {
                    method: "GE T".into(),
                    ..probe("http://x/")
                },
                "--method `GE T` is not an HTTP method",
            ),
            (
                AdhocProbe {
                    headers: vec!["nocolon".into()],
                    ..probe("http://x/")
                },
                "--header `nocolon`: write `Name: value`",
            ),
            (
                AdhocProbe {
                    expect_json: vec!["a..b=1".into()],
                    ..probe("http://x/")
                },
                "--expect-json `a..b=1`: the path is dot-separated keys, none empty",
            ),
        ];
        for (p, want) in cases {
            assert_eq!(p.target_spec().expect_err(want).to_string(), want);
        }
        let e = AdhocProbe {
            json: Some("{".into()),
            ..probe("http://x/")
        }
        .target_spec()
        .expect_err("not JSON");
        assert!(matches!(e, AdhocError::Json(_)), "{e:?}");
        let e = probe("ftp://x/").target_spec().expect_err("not http");
        assert!(matches!(e, AdhocError::Url { .. }), "{e:?}");
    }
}
