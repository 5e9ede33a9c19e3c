//! The `modules:` section: blackbox_exporter's modules, with its field names, checked once at
//! load into [`Module`]s.
//!
//! A blackbox.yml is a valid watchfire config as it stands: `modules:` sits beside `targets:`,
//! `failover:` and the rest, in one file or spread over a directory (a module name may be defined
//! once). Unknown fields are errors, reported like every other config error with file, line and
//! field (`blackbox.yml:7:7: modules.http_2xx.http.bogus: unknown key ...`), and so are the
//! problems blackbox itself only finds at probe time: an unknown prober, an invalid regexp, an
//! invalid CEL expression, an unsupported compression.
//!
//! [`Modules::to_yaml`] renders the modules for `/config` and `debug=true`, secrets (passwords,
//! bearer tokens, credentials) shown as `<secret>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, FieldError, Pos};
use crate::net::guard::Guard;
use crate::probers::dns::DnsModule;
use crate::probers::grpc::GrpcModule;
use crate::probers::http::{HttpModule, HttpProbe};
use crate::probers::icmp::IcmpModule;
use crate::probers::tcp::TcpModule;
use crate::probers::unix::UnixModule;
use crate::probers::websocket::WebsocketModule;

/// The module `/probe` uses when the request names none.
pub const DEFAULT_MODULE: &str = "http_2xx";

/// blackbox's prober kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prober {
    /// `http`
    Http,
    /// `tcp`
    Tcp,
    /// `dns`
    Dns,
    /// `icmp`
    Icmp,
    /// `grpc`
    Grpc,
    /// `unix`
    Unix,
    /// `websocket`
    Websocket,
}

impl Prober {
    /// Every prober, by its name in the config.
    pub const ALL: [(&'static str, Prober); 7] = [
        ("http", Prober::Http),
        ("tcp", Prober::Tcp),
        ("dns", Prober::Dns),
        ("icmp", Prober::Icmp),
        ("grpc", Prober::Grpc),
        ("unix", Prober::Unix),
        ("websocket", Prober::Websocket),
    ];

    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        Prober::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .expect("every prober is in ALL")
    }

    fn parse(s: &str) -> Option<Prober> {
        Prober::ALL.iter().find(|(n, _)| *n == s).map(|(_, p)| *p)
    }
}

/// One module as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    /// `http`, `tcp`, `dns`, `icmp`, `grpc`, `unix` or `websocket`.
    pub prober: Option<Spanned<String>>,
    /// Upper bound on one probe (blackbox duration: `5s`, `1m`, `500ms`).
    pub timeout: Option<Spanned<String>>,
    /// `http` prober options.
    pub http: Option<Spanned<HttpModule>>,
    /// `tcp` prober options.
    pub tcp: Option<Spanned<TcpModule>>,
    /// `dns` prober options.
    pub dns: Option<Spanned<DnsModule>>,
    /// `icmp` prober options.
    pub icmp: Option<Spanned<IcmpModule>>,
    /// `grpc` prober options.
    pub grpc: Option<Spanned<GrpcModule>>,
    /// `unix` prober options.
    pub unix: Option<Spanned<UnixModule>>,
    /// `websocket` prober options.
    pub websocket: Option<Spanned<WebsocketModule>>,
}

/// A checked module, ready to probe with.
#[derive(Debug)]
pub struct Module {
    /// The module's name (`http_2xx`).
    pub name: String,
    /// Which prober runs it.
    pub prober: Prober,
    /// The module's own timeout; `None` when not set (the scrape's timeout rules then).
    pub timeout: Option<Duration>,
    /// The HTTP options, compiled (regexps, CEL, TLS config).
    pub http: HttpProbe,
    /// The TCP options.
    pub tcp: TcpModule,
    /// The DNS options.
    pub dns: DnsModule,
    /// The ICMP options.
    pub icmp: IcmpModule,
    /// The gRPC options.
    pub grpc: GrpcModule,
    /// The unix socket options.
    pub unix: UnixModule,
    /// The websocket options, compiled (regexps, TLS config, credentials, headers).
    pub websocket: WebsocketModule,
    /// The module as `/config` and `debug=true` show it, secrets hidden.
    pub shown: serde_json::Value,
    /// Where the module was defined.
    pub file: PathBuf,
    /// Line of the definition.
    pub line: u64,
}

impl Module {
    /// The module's configuration as YAML (secrets hidden), as `debug=true` shows it.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        write_yaml(&self.shown, 0, &mut out);
        out
    }
}

/// Every configured module, by name, and the `/probe` guard over them (`probe_guard:`).
#[derive(Debug, Clone, Default)]
pub struct Modules {
    map: BTreeMap<String, Arc<Module>>,
    guard: Option<Arc<Guard>>,
}

impl Modules {
    /// The `/probe` guard, when `probe_guard:` is configured.
    pub fn guard(&self) -> Option<&Arc<Guard>> {
        self.guard.as_ref()
    }

    /// Sets the `/probe` guard.
    pub fn set_guard(&mut self, guard: Option<Arc<Guard>>) {
        self.guard = guard;
    }

    /// The module called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Module>> {
        self.map.get(name)
    }

    /// How many modules there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no module is configured.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Modules in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Module>> {
        self.map.values()
    }

    /// `modules:` as YAML, secrets hidden (`/config`).
    pub fn to_yaml(&self) -> String {
        let modules: serde_json::Map<String, serde_json::Value> = self
            .map
            .iter()
            .map(|(k, m)| (k.clone(), m.shown.clone()))
            .collect();
        let mut root = serde_json::Map::new();
        root.insert("modules".into(), serde_json::Value::Object(modules));
        let mut out = String::new();
        write_yaml(&serde_json::Value::Object(root), 0, &mut out);
        out
    }
}

/// Parses a blackbox duration: Prometheus' format (`5s`, `1m30s`, `500ms`, `1h`, `1d`), which
/// humantime also reads.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `5s` or `500ms`"))
}

/// Checks the `modules:` of the file `diag` is at into `out`, recording problems in `diag`.
/// `seen` remembers where each name was defined, to report a module defined in two files.
pub(crate) fn check_section(
    diag: &mut Diagnostics,
    raw: &BTreeMap<String, Spanned<RawModule>>,
    out: &mut Modules,
    seen: &mut HashMap<String, (PathBuf, u64)>,
) {
    for (name, m) in raw {
        let line = m.referenced.line();
        if let Some((f, l)) = seen.get(name) {
            diag.error(
                m,
                format!("modules.{name}"),
                format!("module `{name}` is already defined at {}:{l}", f.display()),
            );
            continue;
        }
        seen.insert(name.clone(), (diag.file().to_path_buf(), line));
        if let Some(m) = check_module(diag, name, m) {
            out.map.insert(name.clone(), Arc::new(m));
        }
    }
}

/// The tcp, dns, icmp, grpc, unix and websocket options of one module, checked and compiled.
struct Kinds {
    tcp: TcpModule,
    dns: DnsModule,
    icmp: IcmpModule,
    grpc: GrpcModule,
    unix: UnixModule,
    websocket: WebsocketModule,
}

/// Checks and compiles the options of every prober kind but http that the module sets.
fn compile_kinds(diag: &mut Diagnostics, field: &str, file: &Path, r: &RawModule) -> Kinds {
    // The other probers' options: what serde cannot check, each module's `validate()` does, and
    // `tls_config` must be usable. A problem is placed at its prober's section.
    let mut validated = |at: Pos, r: Result<(), FieldError>| {
        if let Err(e) = r {
            diag.field_error(at, field, e);
        }
    };
    // tls_config paths are relative to the config file, like every path in it.
    let mut tcp = r.tcp.as_ref().map(|t| t.value.clone()).unwrap_or_default();
    tcp.tls_config.resolve_paths(file);
    let mut dns = r.dns.as_ref().map(|t| t.value.clone()).unwrap_or_default();
    dns.tls_config.resolve_paths(file);
    let mut grpc = r.grpc.as_ref().map(|t| t.value.clone()).unwrap_or_default();
    grpc.tls_config.resolve_paths(file);
    if let Some(t) = &r.tcp {
        // Compiles the `expect` regexps once, here, for every probe of the module.
        let checked = tcp
            .compile()
            .and_then(|()| tcp.tls_config.check_at_load("tcp"));
        validated(Pos::from(t), checked);
    }
    if let Some(d) = &r.dns {
        let checked = dns
            .compile()
            .and_then(|()| dns.tls_config.check_at_load("dns"));
        validated(Pos::from(d), checked);
    }
    if let Some(i) = &r.icmp {
        validated(Pos::from(i), i.value.validate());
    }
    if let Some(g) = &r.grpc {
        let checked = grpc
            .compile()
            .and_then(|()| grpc.tls_config.check_at_load("grpc"));
        validated(Pos::from(g), checked);
    }
    let mut unix = r.unix.as_ref().map(|t| t.value.clone()).unwrap_or_default();
    unix.tls_config.resolve_paths(file);
    if let Some(u) = &r.unix {
        let checked = unix
            .compile()
            .and_then(|()| unix.tls_config.check_at_load("unix"));
        validated(Pos::from(u), checked);
    }
    let mut websocket = r
        .websocket
        .as_ref()
        .map(|t| t.value.clone())
        .unwrap_or_default();
    websocket.http_config.tls_config.resolve_paths(file);
    if let Some(w) = &r.websocket {
        let checked = websocket.compile(file).and_then(|()| {
            let tls = &websocket.http_config.tls_config;
            tls.check_at_load("websocket.http_config")
        });
        validated(Pos::from(w), checked);
    }
    Kinds {
        tcp,
        dns,
        icmp: r.icmp.as_ref().map(|t| t.value.clone()).unwrap_or_default(),
        grpc,
        unix,
        websocket,
    }
}

fn check_module(diag: &mut Diagnostics, name: &str, m: &Spanned<RawModule>) -> Option<Module> {
    let field = format!("modules.{name}");
    let file = diag.file().to_path_buf();
    let before = diag.count();
    let r = &m.value;
    let prober = match &r.prober {
        None => {
            diag.error(
                m,
                format!("{field}.prober"),
                "missing: every module needs a prober (http, tcp, dns, icmp, grpc, unix or websocket)",
            );
            None
        }
        Some(p) => Prober::parse(&p.value).or_else(|| {
            diag.error(
                p,
                format!("{field}.prober"),
                format!(
                    "unknown prober `{}` (watchfire supports http, tcp, dns, icmp, grpc, unix, websocket)",
                    p.value
                ),
            );
            None
        }),
    };
    let timeout = r.timeout.as_ref().and_then(|t| {
        parse_duration(&t.value)
            .map_err(|msg| diag.error(t, format!("{field}.timeout"), msg))
            .ok()
    });
    let http_raw = r.http.as_ref().map(|h| h.value.clone()).unwrap_or_default();
    let http = compile_http(diag, &field, m, &http_raw);
    let kinds = compile_kinds(diag, &field, &file, r);
    let (prober, http) = (prober?, http?);
    if diag.count() > before {
        return None;
    }
    let shown = shown(prober, r, &http_raw);
    Some(Module {
        name: name.to_string(),
        prober,
        timeout,
        http,
        tcp: kinds.tcp,
        dns: kinds.dns,
        icmp: kinds.icmp,
        grpc: kinds.grpc,
        unix: kinds.unix,
        websocket: kinds.websocket,
        shown,
        file,
        line: m.referenced.line(),
    })
}

/// The module's `http:` options compiled, or `None` with every problem recorded (a problem
/// without a line of its own is placed at the `http:` section).
fn compile_http(
    diag: &mut Diagnostics,
    field: &str,
    m: &Spanned<RawModule>,
    raw: &HttpModule,
) -> Option<HttpProbe> {
    let problems = match HttpProbe::compile(raw, diag.file()) {
        Ok(h) => return Some(h),
        Err(problems) => problems,
    };
    let section = m.value.http.as_ref().map_or(Pos::from(m), Pos::from);
    for p in problems {
        let at = if p.line == 0 {
            section
        } else {
            Pos::new(p.line, p.column)
        };
        diag.field_error(at, field, FieldError::new(p.field, p.message).under("http"));
    }
    None
}

/// The module as shown by `/config`: the prober, the timeout when set, the prober's own options
/// with defaults filled in, and any other section written in the file.
fn shown(prober: Prober, r: &RawModule, http: &HttpModule) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("prober".into(), prober.as_str().into());
    if let Some(t) = &r.timeout {
        m.insert("timeout".into(), t.value.trim().into());
    }
    let to_value = |v: Result<serde_json::Value, serde_json::Error>| {
        v.unwrap_or_else(|e| serde_json::Value::String(format!("<cannot show: {e}>")))
    };
    if prober == Prober::Http || r.http.is_some() {
        m.insert("http".into(), to_value(serde_json::to_value(http)));
    }
    if prober == Prober::Tcp || r.tcp.is_some() {
        let v = r.tcp.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        m.insert("tcp".into(), to_value(serde_json::to_value(v)));
    }
    if prober == Prober::Dns || r.dns.is_some() {
        let v = r.dns.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        m.insert("dns".into(), to_value(serde_json::to_value(v)));
    }
    if prober == Prober::Icmp || r.icmp.is_some() {
        let v = r.icmp.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        m.insert("icmp".into(), to_value(serde_json::to_value(v)));
    }
    if prober == Prober::Grpc || r.grpc.is_some() {
        let v = r.grpc.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        m.insert("grpc".into(), to_value(serde_json::to_value(v)));
    }
    if prober == Prober::Unix || r.unix.is_some() {
        let v = r.unix.as_ref().map(|t| t.value.clone()).unwrap_or_default();
        m.insert("unix".into(), to_value(serde_json::to_value(v)));
    }
    if prober == Prober::Websocket || r.websocket.is_some() {
        let v = r
            .websocket
            .as_ref()
            .map(|t| t.value.clone())
            .unwrap_or_default();
        m.insert("websocket".into(), to_value(serde_json::to_value(v)));
    }
    let mut v = serde_json::Value::Object(m);
    hide_secrets(&mut v);
    v
}

/// Applies the redaction rule ([`crate::redact`]) to a module as shown: header values (of
/// `headers`, `http_headers` values, websocket headers) but the harmless ones, request bodies
/// (`body`), the values of `endpoint_params`, fields whose names say they hold a secret, and
/// the passwords and secret query values of every URL (`proxy_url`, `token_url`, ...).
/// Password fields the probers' options already serialize as `<secret>` stay so.
fn hide_secrets(v: &mut serde_json::Value) {
    use crate::redact::{self, MASK};
    use serde_json::Value;
    let mask = |v: &mut Value| {
        if v.as_str().is_some_and(|s| !s.is_empty()) || v.is_array() || v.is_object() {
            *v = Value::String(MASK.into());
        }
    };
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                let key = k.to_ascii_lowercase();
                if key == "headers" {
                    if let Value::Object(hs) = val {
                        for (name, hv) in hs.iter_mut() {
                            if !redact::header_is_shown(name) {
                                mask_strings(hv);
                            }
                        }
                        continue;
                    }
                }
                if key == "http_headers" {
                    if let Value::Object(hs) = val {
                        for (name, h) in hs.iter_mut() {
                            if !redact::header_is_shown(name) {
                                if let Some(values) = h.get_mut("values") {
                                    mask_strings(values);
                                }
                            }
                        }
                        continue;
                    }
                }
                match val {
                    _ if key == "body" || key == "endpoint_params" => mask(val),
                    Value::String(s) if key.ends_with("url") => {
                        *s = redact::url(s).into_owned();
                    }
                    // A file's path is not its content.
                    Value::String(_) if key.ends_with("_file") => {}
                    Value::String(_) | Value::Array(_) if redact::is_secret_name(&key) => {
                        mask_strings(val);
                    }
                    _ => hide_secrets(val),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(hide_secrets),
        _ => {}
    }
}

/// Every non-empty string in `v` (a value, a list of values) replaced by `<secret>`.
fn mask_strings(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if !s.is_empty() => *s = crate::redact::MASK.into(),
        Value::Array(a) => a.iter_mut().for_each(mask_strings),
        Value::Object(m) => m.values_mut().for_each(mask_strings),
        _ => {}
    }
}

/// Writes `v` as block-style YAML at `indent` spaces.
fn write_yaml(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                out.push_str(&pad);
                out.push_str(&yaml_scalar(k));
                out.push(':');
                write_yaml_value(val, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash's line, the rest aligned under it.
                        let mut inner = String::new();
                        write_yaml(item, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(inner.trim_start());
                    }
                    _ => write_yaml_value(item, indent, out),
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&inline_scalar(other));
            out.push('\n');
        }
    }
}

/// The part after `key:` or `-`: an inline scalar, or a nested block on the next lines.
fn write_yaml_value(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 4, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 4, out);
        }
        other => {
            out.push(' ');
            out.push_str(&inline_scalar(other));
            out.push('\n');
        }
    }
}

fn inline_scalar(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_scalar(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a YAML scalar: plain when that reads back as the same string, double-quoted
/// (JSON escapes, which YAML shares) otherwise.
fn yaml_scalar(s: &str) -> String {
    let plain_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '<' | '>' | ' ');
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '/' | '<' | '.'));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "~"
    );
    let plain = first_ok
        && !reserved
        && !s.ends_with(' ')
        && s.chars().all(plain_char)
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        let mut q = String::new();
        let _ = write!(q, "{}", serde_json::Value::String(s.to_string()));
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_rendering_reads_back_as_the_same_value() {
        let v = serde_json::json!({
            "modules": {
                "a": {"prober": "http", "http": {
                    "headers": {"Host": "x.example", "X-Empty": ""},
                    "valid_status_codes": [200, 301],
                    "fail_if_header_matches": [{"header": "X", "regexp": "y: z", "allow_missing": true}],
                    "basic_auth": {"username": "u", "password": "<secret>"},
                    "body": "{\"a\": 1}\nline2",
                    "compression": "true",
                }},
                "b": {"prober": "icmp"},
            }
        });
        let mut out = String::new();
        write_yaml(&v, 0, &mut out);
        let back: serde_json::Value = serde_saphyr::from_str(&out).expect("valid YAML");
        assert_eq!(back, v, "{out}");
        assert!(out.contains("password: <secret>"), "{out}");
    }

    #[test]
    fn shown_modules_hide_header_values_bodies_and_url_secrets() {
        let yaml = "modules:\n  m:\n    prober: http\n    http:\n      headers: {Authorization: S1, X-Custom: S2, Host: h.example}\n      body: S3\n      proxy_url: \"http://u:S4@p:3128\"\n      oauth2: {client_id: c, client_secret: S5, token_url: \"https://t/x?client_secret=S6\", endpoint_params: {a: S7}}\n      tls_config: {ca_file: /run/ca.pem}\n";
        let c = crate::config::load_str("m.yml", yaml).expect("module loads");
        let shown = c.modules.to_yaml();
        for s in ["S1", "S2", "S3", "S4", "S5", "S6", "S7"] {
            assert!(!shown.contains(s), "{s} shown:\n{shown}");
        }
        for kept in [
            "Host: h.example",
            "u:<secret>@p:3128",
            "ca_file: /run/ca.pem",
            "client_id: c",
        ] {
            assert!(shown.contains(kept), "{kept} missing:\n{shown}");
        }
    }

    #[test]
    fn prober_names_round_trip() {
        for (n, p) in Prober::ALL {
            assert_eq!(Prober::parse(n), Some(p));
            assert_eq!(p.as_str(), n);
        }
        assert_eq!(Prober::parse("smtp"), None);
    }
}
