//! The checks every config section shares: durations, sizes, headers, labels, TLS files, the
//! request body and `expect`, `defaults:` — each problem recorded with its field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method};
use serde_saphyr::Spanned;

use crate::diag::Diagnostics;
use crate::net::tls::TlsOptions;

use super::raw::{RawDefaults, RawExpect, RawSize, RawStatus, RawTls};
use super::{Expect, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, MIN_INTERVAL, RESERVED_LABELS};

/// Longest target string accepted (it is the target's name and `target` label).
pub const MAX_TARGET_LEN: usize = 2048;

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

/// Parses an optional duration field, recording a problem when it is not one.
pub(super) fn duration(
    diag: &mut Diagnostics,
    v: &Option<Spanned<String>>,
    field: &str,
) -> Option<Duration> {
    let s = v.as_ref()?;
    match parse_duration(&s.value) {
        Ok(d) => Some(d),
        Err(m) => {
            diag.error(s, field, m);
            None
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

pub(super) fn check_defaults(diag: &mut Diagnostics, d: &Spanned<RawDefaults>) -> Defaults {
    let d = &d.value;
    Defaults {
        interval: duration(diag, &d.interval, "defaults.interval"),
        timeout: duration(diag, &d.timeout, "defaults.timeout"),
        jitter: duration(diag, &d.jitter, "defaults.jitter"),
        down_after: d
            .down_after
            .as_ref()
            .and_then(|v| positive(diag, v, "defaults.down_after")),
        up_after: d
            .up_after
            .as_ref()
            .and_then(|v| positive(diag, v, "defaults.up_after")),
        keep_alive: d.keep_alive,
        body_limit: d
            .body_limit
            .as_ref()
            .and_then(|v| size(diag, v, "defaults.body_limit")),
        headers: headers(diag, &d.headers, "defaults.headers"),
        labels: labels(diag, &d.labels, "defaults.labels"),
        tls: d.tls.as_ref().map(|t| {
            let o = tls(&t.value);
            check_tls_file(diag, &o, t, "defaults.tls");
            o
        }),
    }
}

pub(super) fn positive(diag: &mut Diagnostics, v: &Spanned<u32>, field: &str) -> Option<u32> {
    if v.value == 0 {
        diag.error(v, field, "must be at least 1");
        None
    } else {
        Some(v.value)
    }
}

pub(super) fn size(diag: &mut Diagnostics, v: &Spanned<RawSize>, field: &str) -> Option<usize> {
    let n = match &v.value {
        RawSize::Bytes(n) => Ok(*n),
        RawSize::Text(s) => parse_size(s),
    };
    match n {
        Ok(0) => {
            diag.error(v, field, "must be larger than 0");
            None
        }
        Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Err(m) => {
            diag.error(v, field, m);
            None
        }
    }
}

pub(super) fn headers(
    diag: &mut Diagnostics,
    raw: &BTreeMap<String, Spanned<String>>,
    field: &str,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in raw {
        let name = match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                diag.error(
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
            Err(_) => diag.error(
                v,
                format!("{field}.{k}"),
                "header value holds characters HTTP does not allow",
            ),
        }
    }
    map
}

pub(super) fn labels(
    diag: &mut Diagnostics,
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
            diag.error(
                v,
                format!("{field}.{k}"),
                format!("`{k}` is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
            );
        } else if RESERVED_LABELS.contains(&k.as_str()) {
            diag.error(
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

fn tls(t: &RawTls) -> TlsOptions {
    TlsOptions {
        insecure_skip_verify: t.insecure_skip_verify,
        ca_file: t.ca_file.as_ref().map(Into::into),
        server_name: t.server_name.clone(),
    }
}

fn check_tls_file(diag: &mut Diagnostics, opts: &TlsOptions, at: &Spanned<RawTls>, field: &str) {
    if let Some(ca) = &opts.ca_file {
        let path = resolve_relative(diag.file(), ca);
        if let Err(e) = std::fs::metadata(&path) {
            diag.error(
                at,
                format!("{field}.ca_file"),
                format!("cannot read `{}`: {e}", path.display()),
            );
        }
    }
}

/// A target's `tls:` (or the defaults'), its `ca_file` relative to the config file.
pub(super) fn target_tls(
    diag: &mut Diagnostics,
    d: &Defaults,
    raw: &Option<Spanned<RawTls>>,
    field: &str,
) -> TlsOptions {
    let tls = match raw {
        Some(x) => {
            let o = tls(&x.value);
            check_tls_file(diag, &o, x, &format!("{field}.tls"));
            o
        }
        None => d.tls.clone().unwrap_or_default(),
    };
    TlsOptions {
        ca_file: tls.ca_file.map(|p| resolve_relative(diag.file(), &p)),
        ..tls
    }
}

/// Paths in a config are relative to the config file's directory.
pub(super) fn resolve_relative(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

pub(super) fn method(diag: &mut Diagnostics, m: &Option<Spanned<String>>, field: &str) -> Method {
    let Some(m) = m else { return Method::GET };
    let upper = m.value.to_ascii_uppercase();
    match Method::from_bytes(upper.as_bytes()) {
        Ok(x) if m.value.chars().all(|c| c.is_ascii_alphabetic()) => x,
        _ => {
            diag.error(m, field, format!("`{}` is not an HTTP method", m.value));
            Method::GET
        }
    }
}

pub(super) fn body(
    diag: &mut Diagnostics,
    body: &Option<Spanned<String>>,
    body_json: &Option<Spanned<serde_json::Value>>,
    field: &str,
    headers: &mut HeaderMap,
) -> Bytes {
    match (body, body_json) {
        (Some(b), Some(_)) => {
            diag.error(
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

pub(super) fn expect(
    diag: &mut Diagnostics,
    raw: &Option<Spanned<RawExpect>>,
    field: &str,
) -> Expect {
    let mut out = Expect::default();
    let Some(raw) = raw else { return out };
    let e = &raw.value;
    if let Some(codes) = &e.status {
        if codes.is_empty() {
            diag.error(
                raw,
                format!("{field}.status"),
                "the list is empty: name at least one status",
            );
        }
        let mut ranges = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            match status_range(&c.value) {
                Ok(r) => ranges.push(r),
                Err(m) => diag.error(c, format!("{field}.status[{i}]"), m),
            }
        }
        if !ranges.is_empty() {
            out.status = ranges;
        }
    }
    for (path, v) in &e.json {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            diag.error(
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
        match crate::limits::regex(&b.value) {
            Ok(r) => out.body = Some(r),
            Err(err) => diag.error(
                b,
                format!("{field}.body"),
                format!("invalid regular expression: {}", one_line(&err.to_string())),
            ),
        }
    }
    out.max_latency = duration(diag, &e.max_latency, &format!("{field}.max_latency"));
    out
}

/// `s` with every run of whitespace (newlines too) made one space.
pub(super) fn one_line(s: &str) -> String {
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
    diag: &mut Diagnostics,
    d: &Defaults,
    interval: &Option<Spanned<String>>,
    timeout: &Option<Spanned<String>>,
    jitter: &Option<Spanned<String>>,
    at: &Spanned<impl Sized>,
    field: &str,
) -> (Duration, Duration, Duration) {
    let iv = duration(diag, interval, &format!("{field}.interval"))
        .or(d.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    let to = duration(diag, timeout, &format!("{field}.timeout"))
        .or(d.timeout)
        .unwrap_or(DEFAULT_TIMEOUT.min(iv.mul_f64(0.8)));
    let ji = duration(diag, jitter, &format!("{field}.jitter"))
        .or(d.jitter)
        .unwrap_or(Duration::ZERO);
    if iv < MIN_INTERVAL {
        match interval {
            Some(s) => diag.error(
                s,
                format!("{field}.interval"),
                format!(
                    "must be at least {}",
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ),
            None => diag.error(
                at,
                format!("{field}.interval"),
                "the default interval is too short",
            ),
        }
    }
    if to.is_zero() {
        match timeout {
            Some(s) => diag.error(s, format!("{field}.timeout"), "must be larger than 0"),
            None => diag.error(
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
            Some(s) => diag.error(s, format!("{field}.timeout"), msg),
            None => diag.error(at, format!("{field}.timeout"), msg),
        }
    }
    if ji > iv {
        if let Some(s) = jitter {
            diag.error(
                s,
                format!("{field}.jitter"),
                "jitter may not exceed the interval",
            );
        }
    }
    (iv, to, ji)
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
}
