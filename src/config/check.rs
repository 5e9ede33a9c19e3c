//! Raw YAML structs → checked config, collecting every problem with its file, line and field.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method};
use regex::Regex;
use serde_saphyr::Spanned;

use super::raw::{RawDefaults, RawExpect, RawFile, RawSize, RawStatus, RawTarget, RawTls};
use super::{
    Config, ConfigError, ConfigErrors, Expect, Origin, ProbeUrl, TargetSpec, TlsOptions,
    DEFAULT_BODY_LIMIT, DEFAULT_DOWN_AFTER, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_UP_AFTER,
    MIN_INTERVAL, RESERVED_LABELS,
};

/// Parses a humantime duration (`5s`, `500ms`, `1m30s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. `5s` or `500ms`"))
}

/// Parses a size: bytes, or a number with `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; write e.g. `1MiB` or `65536`"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "KiB" => 1024.0,
        "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((n * mult) as u64)
}

/// Collects problems while checking one file.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(super) fn err<T>(
        &mut self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.err_at(at.referenced.line(), at.referenced.column(), field, message);
    }

    pub(super) fn err_at(
        &mut self,
        line: u64,
        column: u64,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        field: &str,
    ) -> Option<Duration> {
        let s = v.as_ref()?;
        match parse_duration(&s.value) {
            Ok(d) => Some(d),
            Err(m) => {
                self.err(s, field, m);
                None
            }
        }
    }
}

/// Where a target inherits from: the file's defaults, already checked.
#[derive(Default)]
pub(super) struct Defaults {
    pub(super) interval: Option<Duration>,
    pub(super) timeout: Option<Duration>,
    pub(super) jitter: Option<Duration>,
    pub(super) down_after: Option<u32>,
    pub(super) up_after: Option<u32>,
    pub(super) keep_alive: Option<bool>,
    pub(super) body_limit: Option<usize>,
    pub(super) headers: HeaderMap,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) tls: Option<TlsOptions>,
}

/// Checks every source, returning the config or every problem found.
pub(super) fn check_sources(sources: &[(&Path, &str)]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut config = Config::default();
    // name → where first defined, to report duplicates across files.
    let mut seen: HashMap<String, (std::path::PathBuf, u64)> = HashMap::new();
    // Module names → where defined; targets' `module:` are checked once every file is read.
    let mut seen_modules: HashMap<String, (std::path::PathBuf, u64)> = HashMap::new();
    let mut module_refs: Vec<(ConfigError, String)> = Vec::new();
    for (file, text) in sources {
        config.sources.push(file.to_path_buf());
        let mut ctx = Ctx {
            file,
            errors: Vec::new(),
        };
        let raw: RawFile = if text.trim().is_empty() {
            RawFile::default()
        } else {
            match serde_saphyr::from_str(text) {
                Ok(r) => r,
                Err(e) => {
                    // A document that is not YAML at all is reported as a syntax error, even when
                    // the typed parse tripped over something else first; otherwise the error is
                    // about the schema and the field is found by its position.
                    let (e, paths) = match serde_saphyr::from_str::<Node>(text) {
                        Ok(tree) => {
                            let mut paths = Vec::new();
                            collect_paths(&tree, "", &mut paths);
                            (e, paths)
                        }
                        Err(syntax) => (syntax, Vec::new()),
                    };
                    let (line, column) = e
                        .location()
                        .map(|l| (l.line(), l.column()))
                        .unwrap_or((0, 0));
                    let field = yaml_error_field(&e, &paths, line, column);
                    let message = plain_yaml_message(&e);
                    ctx.err_at(line, column, field, message);
                    errors.append(&mut ctx.errors);
                    continue;
                }
            }
        };
        let defaults = raw
            .defaults
            .as_ref()
            .map(|d| check_defaults(&mut ctx, d))
            .unwrap_or_default();
        for (i, t) in raw.targets.iter().enumerate() {
            let spec = check_target(&mut ctx, &defaults, t, &format!("targets[{i}]"));
            if let Some(m) = &t.value.module {
                let at = ConfigError {
                    file: file.to_path_buf(),
                    line: m.referenced.line(),
                    column: m.referenced.column(),
                    field: format!("targets[{i}].module"),
                    message: String::new(),
                };
                module_refs.push((at, m.value.clone()));
            }
            // Duplicates are found even when the target has other problems.
            if let Some(n) = t.value.name.as_ref().filter(|n| valid_name(&n.value)) {
                note_name(
                    &mut ctx,
                    &mut seen,
                    &n.value,
                    (n.referenced.line(), n.referenced.column()),
                    &format!("targets[{i}].name"),
                );
            }
            if let Some(spec) = spec {
                config.targets.push(Arc::new(spec));
            }
        }
        for (i, g) in raw.failover.iter().enumerate() {
            let field = format!("failover[{i}]");
            let checked = super::failover::check_group(&mut ctx, &defaults, g, &field);
            if let Some(n) = g
                .value
                .name
                .as_ref()
                .filter(|n| valid_name(&n.value) && !n.value.contains('/'))
            {
                note_name(
                    &mut ctx,
                    &mut seen,
                    &n.value,
                    (n.referenced.line(), n.referenced.column()),
                    &format!("{field}.name"),
                );
            }
            if let Some((group, checks)) = checked {
                for c in checks {
                    config.targets.push(Arc::new(c));
                }
                config.failover.push(group);
            }
        }
        crate::memory::check_section(ctx.file, &raw.memory, &mut config.memory, &mut ctx.errors);
        crate::blackbox::config::check_section(
            ctx.file,
            &raw.modules,
            &mut config.modules,
            &mut seen_modules,
            &mut ctx.errors,
        );
        errors.append(&mut ctx.errors);
    }
    for (mut at, name) in module_refs {
        match config.modules.get(&name) {
            Some(m) if m.prober == crate::blackbox::config::Prober::Http => continue,
            Some(m) => {
                at.message = format!(
                    "module `{name}` uses the {} prober; a target's module must be an http one",
                    m.prober.as_str()
                )
            }
            // A module with errors of its own is already reported.
            None if seen_modules.contains_key(&name) => continue,
            None => at.message = format!("no module named `{name}` is configured under `modules:`"),
        }
        errors.push(at);
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn note_name(
    ctx: &mut Ctx<'_>,
    seen: &mut HashMap<String, (std::path::PathBuf, u64)>,
    name: &str,
    (line, column): (u64, u64),
    field: &str,
) {
    if let Some((f, l)) = seen.get(name) {
        let msg = format!(
            "duplicate name `{name}` (first defined at {}:{l})",
            f.display()
        );
        ctx.err_at(line, column, field, msg);
    } else {
        seen.insert(name.to_string(), (ctx.file.to_path_buf(), line));
    }
}

/// The error behind the snippet and alias wrappers `serde_saphyr` puts around it.
fn inner_yaml_error(mut e: &serde_saphyr::Error) -> &serde_saphyr::Error {
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    e
}

/// The dotted field a YAML/serde error is about (`targets[1].bogus`), found from its position
/// in `paths` (see [`collect_paths`]); empty when unknown.
fn yaml_error_field(e: &serde_saphyr::Error, paths: &[Located], line: u64, column: u64) -> String {
    let at = (line, column);
    match inner_yaml_error(e) {
        serde_saphyr::Error::SerdeUnknownField { field, .. } => paths
            .iter()
            .find(|p| p.key && p.at == at && p.path.rsplit('.').next() == Some(field.as_str()))
            .map(|p| p.path.clone())
            .unwrap_or_else(|| field.clone()),
        serde_saphyr::Error::SerdeMissingField { field, .. } => match enclosing(paths, at) {
            Some(p) => format!("{}.{field}", p.path),
            None => (*field).to_string(),
        },
        _ => enclosing(paths, at)
            .map(|p| p.path.clone())
            .unwrap_or_default(),
    }
}

/// The last key or sequence element starting at or before `at` (the shallowest on a tie).
fn enclosing(paths: &[Located], at: (u64, u64)) -> Option<&Located> {
    if at.0 == 0 {
        return None;
    }
    let mut best: Option<&Located> = None;
    for p in paths {
        if p.at <= at && best.is_none_or(|b| p.at > b.at) {
            best = Some(p);
        }
    }
    best
}

/// The YAML error's message without the location and snippet (we print our own).
fn plain_yaml_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    match inner_yaml_error(e) {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown key `{field}` (expected one of: {})",
            expected.join(", ")
        ),
        inner => one_line(&serde_saphyr::DefaultMessageFormatter.format_message(inner)),
    }
}

/// Any YAML document as a tree that remembers where each key and sequence element starts, to
/// name the field of a schema error from its position.
enum Node {
    Map(Vec<(Spanned<String>, Node)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    entries.push((k, m.next_value::<Node>()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = s.next_element::<Spanned<Node>>()? {
                    items.push(n);
                }
                Ok(Node::Seq(items))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_newtype_struct<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Node, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        d.deserialize_any(V)
    }
}

/// A key or sequence element: where it starts and its dotted path.
struct Located {
    at: (u64, u64),
    path: String,
    key: bool,
}

/// Every key and sequence element of `node`, in document order.
fn collect_paths(node: &Node, prefix: &str, out: &mut Vec<Located>) {
    match node {
        Node::Map(entries) => {
            for (k, v) in entries {
                let path = if prefix.is_empty() {
                    k.value.clone()
                } else {
                    format!("{prefix}.{}", k.value)
                };
                out.push(Located {
                    at: (k.referenced.line(), k.referenced.column()),
                    path: path.clone(),
                    key: true,
                });
                collect_paths(v, &path, out);
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{prefix}[{i}]");
                out.push(Located {
                    at: (item.referenced.line(), item.referenced.column()),
                    path: path.clone(),
                    key: false,
                });
                collect_paths(&item.value, &path, out);
            }
        }
        Node::Leaf => {}
    }
}

fn check_defaults(ctx: &mut Ctx<'_>, d: &Spanned<RawDefaults>) -> Defaults {
    let d = &d.value;
    Defaults {
        interval: ctx.duration(&d.interval, "defaults.interval"),
        timeout: ctx.duration(&d.timeout, "defaults.timeout"),
        jitter: ctx.duration(&d.jitter, "defaults.jitter"),
        down_after: d
            .down_after
            .as_ref()
            .and_then(|v| positive(ctx, v, "defaults.down_after")),
        up_after: d
            .up_after
            .as_ref()
            .and_then(|v| positive(ctx, v, "defaults.up_after")),
        keep_alive: d.keep_alive,
        body_limit: d
            .body_limit
            .as_ref()
            .and_then(|v| size(ctx, v, "defaults.body_limit")),
        headers: headers(ctx, &d.headers, "defaults.headers"),
        labels: labels(ctx, &d.labels, "defaults.labels"),
        tls: d.tls.as_ref().map(|t| {
            let o = tls(ctx, &t.value);
            check_tls_file(ctx, &o, t, "defaults.tls");
            o
        }),
    }
}

pub(super) fn positive(ctx: &mut Ctx<'_>, v: &Spanned<u32>, field: &str) -> Option<u32> {
    if v.value == 0 {
        ctx.err(v, field, "must be at least 1");
        None
    } else {
        Some(v.value)
    }
}

fn size(ctx: &mut Ctx<'_>, v: &Spanned<RawSize>, field: &str) -> Option<usize> {
    let n = match &v.value {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(s) => parse_size(s),
    };
    match n {
        Ok(0) => {
            ctx.err(v, field, "must be larger than 0");
            None
        }
        Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Err(m) => {
            ctx.err(v, field, m);
            None
        }
    }
}

fn headers(ctx: &mut Ctx<'_>, raw: &BTreeMap<String, Spanned<String>>, field: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in raw {
        let name = match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                ctx.err(
                    v,
                    format!("{field}.{k}"),
                    format!("`{k}` is not a valid header name"),
                );
                continue;
            }
        };
        match HeaderValue::from_str(&v.value) {
            Ok(val) => {
                map.append(name, val);
            }
            Err(_) => ctx.err(
                v,
                format!("{field}.{k}"),
                "header value holds characters HTTP does not allow",
            ),
        }
    }
    map
}

fn labels(
    ctx: &mut Ctx<'_>,
    raw: &BTreeMap<String, Spanned<String>>,
    field: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let valid = !k.is_empty()
            && !k.starts_with("__")
            && k.chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid {
            ctx.err(
                v,
                format!("{field}.{k}"),
                format!("`{k}` is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
            );
        } else if RESERVED_LABELS.contains(&k.as_str()) {
            ctx.err(
                v,
                format!("{field}.{k}"),
                format!("label `{k}` is reserved: watchfire sets it itself"),
            );
        } else {
            out.insert(k.clone(), v.value.clone());
        }
    }
    out
}

fn tls(ctx: &mut Ctx<'_>, t: &RawTls) -> TlsOptions {
    let _ = ctx;
    TlsOptions {
        insecure_skip_verify: t.insecure_skip_verify,
        ca_file: t.ca_file.as_ref().map(Into::into),
        server_name: t.server_name.clone(),
    }
}

fn check_tls_file(ctx: &mut Ctx<'_>, opts: &TlsOptions, at: &Spanned<RawTls>, field: &str) {
    if let Some(ca) = &opts.ca_file {
        let path = resolve_relative(ctx.file, ca);
        if let Err(e) = std::fs::metadata(&path) {
            ctx.err(
                at,
                format!("{field}.ca_file"),
                format!("cannot read `{}`: {e}", path.display()),
            );
        }
    }
}

/// Paths in a config are relative to the config file's directory.
pub(super) fn resolve_relative(file: &Path, p: &Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

pub(super) fn method(ctx: &mut Ctx<'_>, m: &Option<Spanned<String>>, field: &str) -> Method {
    let Some(m) = m else { return Method::GET };
    let upper = m.value.to_ascii_uppercase();
    match Method::from_bytes(upper.as_bytes()) {
        Ok(x) if m.value.chars().all(|c| c.is_ascii_alphabetic()) => x,
        _ => {
            ctx.err(m, field, format!("`{}` is not an HTTP method", m.value));
            Method::GET
        }
    }
}

pub(super) fn body(
    ctx: &mut Ctx<'_>,
    body: &Option<Spanned<String>>,
    body_json: &Option<Spanned<serde_json::Value>>,
    field: &str,
    headers: &mut HeaderMap,
) -> Bytes {
    match (body, body_json) {
        (Some(b), Some(_)) => {
            ctx.err(
                b,
                format!("{field}.body"),
                "set either `body` or `body_json`, not both",
            );
            Bytes::new()
        }
        (Some(b), None) => Bytes::from(b.value.clone()),
        (None, Some(j)) => {
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Bytes::from(serde_json::to_vec(&j.value).expect("a JSON value always serialises"))
        }
        (None, None) => Bytes::new(),
    }
}

pub(super) fn expect(ctx: &mut Ctx<'_>, raw: &Option<Spanned<RawExpect>>, field: &str) -> Expect {
    let mut out = Expect::default();
    let Some(raw) = raw else { return out };
    let e = &raw.value;
    if let Some(codes) = &e.status {
        if codes.is_empty() {
            ctx.err(
                raw,
                format!("{field}.status"),
                "the list is empty: name at least one status",
            );
        }
        let mut ranges = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            match status_range(&c.value) {
                Ok(r) => ranges.push(r),
                Err(m) => ctx.err(c, format!("{field}.status[{i}]"), m),
            }
        }
        if !ranges.is_empty() {
            out.status = ranges;
        }
    }
    for (path, v) in &e.json {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            ctx.err(
                v,
                format!("{field}.json.{path}"),
                "a JSON path is dot-separated keys or indexes, none empty",
            );
            continue;
        }
        out.json.push((
            path.split('.').map(str::to_string).collect(),
            v.value.clone(),
        ));
    }
    if let Some(b) = &e.body {
        match Regex::new(&b.value) {
            Ok(r) => out.body = Some(r),
            Err(err) => ctx.err(
                b,
                format!("{field}.body"),
                format!("invalid regular expression: {}", one_line(&err.to_string())),
            ),
        }
    }
    out.max_latency = ctx.duration(&e.max_latency, &format!("{field}.max_latency"));
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn status_range(s: &RawStatus) -> Result<(u16, u16), String> {
    let check = |lo: u64, hi: u64| -> Result<(u16, u16), String> {
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            Err(format!(
                "status `{lo}`..`{hi}` is outside 100–599 or reversed"
            ))
        } else {
            Ok((lo as u16, hi as u16))
        }
    };
    match s {
        RawStatus::Code(c) => check(*c, *c),
        RawStatus::Text(t) => {
            let t = t.trim();
            let bad = || format!("`{t}` is not a status code, class (`2xx`) or range (`200-299`)");
            if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                let d: u64 = class.parse().map_err(|_| bad())?;
                return check(d * 100, d * 100 + 99);
            }
            if let Some((a, b)) = t.split_once('-') {
                let a: u64 = a.trim().parse().map_err(|_| bad())?;
                let b: u64 = b.trim().parse().map_err(|_| bad())?;
                return check(a, b);
            }
            let c: u64 = t.parse().map_err(|_| bad())?;
            check(c, c)
        }
    }
}

/// Interval/timeout/jitter with defaults applied and their relation checked.
pub(super) fn timing(
    ctx: &mut Ctx<'_>,
    d: &Defaults,
    interval: &Option<Spanned<String>>,
    timeout: &Option<Spanned<String>>,
    jitter: &Option<Spanned<String>>,
    at: &Spanned<impl Sized>,
    field: &str,
) -> (Duration, Duration, Duration) {
    let iv = ctx
        .duration(interval, &format!("{field}.interval"))
        .or(d.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    let to = ctx
        .duration(timeout, &format!("{field}.timeout"))
        .or(d.timeout)
        .unwrap_or(DEFAULT_TIMEOUT.min(iv.mul_f64(0.8)));
    let ji = ctx
        .duration(jitter, &format!("{field}.jitter"))
        .or(d.jitter)
        .unwrap_or(Duration::ZERO);
    if iv < MIN_INTERVAL {
        match interval {
            Some(s) => ctx.err(
                s,
                format!("{field}.interval"),
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ),
            None => ctx.err(
                at,
                format!("{field}.interval"),
                "the default interval is too short",
            ),
        }
    }
    if to.is_zero() {
        match timeout {
            Some(s) => ctx.err(s, format!("{field}.timeout"), "must be larger than 0"),
            None => ctx.err(
                at,
                format!("{field}.timeout"),
                "defaults.timeout must be larger than 0",
            ),
        }
    } else if to >= iv {
        let msg = format!(
            "timeout {} must be shorter than interval {} (a probe may not overlap the next)",
            humantime::format_duration(to),
            humantime::format_duration(iv)
        );
        match timeout {
            Some(s) => ctx.err(s, format!("{field}.timeout"), msg),
            None => ctx.err(at, format!("{field}.timeout"), msg),
        }
    }
    if ji > iv {
        if let Some(s) = jitter {
            ctx.err(
                s,
                format!("{field}.jitter"),
                "jitter may not exceed the interval",
            );
        }
    }
    (iv, to, ji)
}

fn check_target(
    ctx: &mut Ctx<'_>,
    d: &Defaults,
    t: &Spanned<RawTarget>,
    field: &str,
) -> Option<TargetSpec> {
    let before = ctx.errors.len();
    let r = &t.value;
    let name = match &r.name {
        Some(n) if valid_name(&n.value) => n.value.clone(),
        Some(n) => {
            ctx.err(n, format!("{field}.name"), format!("`{}` is not a usable name: use letters, digits, `-`, `_`, `.`, `/` (1–128 characters)", n.value));
            String::new()
        }
        None => {
            ctx.err(
                t,
                format!("{field}.name"),
                "missing: every target needs a unique name",
            );
            String::new()
        }
    };
    let url = match &r.url {
        Some(u) => match ProbeUrl::parse(&u.value) {
            Ok(p) => Some(p),
            Err(m) => {
                ctx.err(u, format!("{field}.url"), format!("`{}`: {m}", u.value));
                None
            }
        },
        None => {
            ctx.err(
                t,
                format!("{field}.url"),
                "missing: every target needs a url",
            );
            None
        }
    };
    let method = method(ctx, &r.method, &format!("{field}.method"));
    let mut hdrs = d.headers.clone();
    for (k, v) in headers(ctx, &r.headers, &format!("{field}.headers")).drain() {
        if let Some(k) = k {
            hdrs.insert(k, v);
        }
    }
    let body = body(ctx, &r.body, &r.body_json, field, &mut hdrs);
    let (interval, timeout, jitter) = timing(ctx, d, &r.interval, &r.timeout, &r.jitter, t, field);
    let mut lbls = d.labels.clone();
    lbls.extend(labels(ctx, &r.labels, &format!("{field}.labels")));
    let expect = expect(ctx, &r.expect, &format!("{field}.expect"));
    let tls = match &r.tls {
        Some(x) => {
            let o = tls(ctx, &x.value);
            check_tls_file(ctx, &o, x, &format!("{field}.tls"));
            o
        }
        None => d.tls.clone().unwrap_or_default(),
    };
    let tls = TlsOptions {
        ca_file: tls.ca_file.map(|p| resolve_relative(ctx.file, &p)),
        ..tls
    };
    let down_after = r
        .down_after
        .as_ref()
        .and_then(|v| positive(ctx, v, &format!("{field}.down_after")))
        .or(d.down_after)
        .unwrap_or(DEFAULT_DOWN_AFTER);
    let up_after = r
        .up_after
        .as_ref()
        .and_then(|v| positive(ctx, v, &format!("{field}.up_after")))
        .or(d.up_after)
        .unwrap_or(DEFAULT_UP_AFTER);
    let body_limit = r
        .body_limit
        .as_ref()
        .and_then(|v| size(ctx, v, &format!("{field}.body_limit")))
        .or(d.body_limit)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    if ctx.errors.len() > before {
        return None;
    }
    Some(TargetSpec {
        name,
        url: url?,
        method,
        headers: hdrs,
        body,
        interval,
        timeout,
        jitter,
        labels: lbls,
        expect,
        keep_alive: r.keep_alive.or(d.keep_alive).unwrap_or(false),
        body_limit,
        tls,
        down_after,
        up_after,
        module: r.module.as_ref().map(|m| m.value.clone()),
        origin: Origin {
            file: ctx.file.to_path_buf(),
            line: t.referenced.line(),
        },
    })
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}
