//! Checking one entry of `targets:`: its name, what it probes (`url:` for the native HTTP
//! prober or an http module, `target:` for a module of any kind), its timing and thresholds.
//!
//! A target with `module:` is probed by the module alone, so the native prober's fields written
//! on the target itself (`method`, `headers`, `body`, `body_json`, `expect`, `keep_alive`,
//! `tls`, `body_limit`) would be silently ignored: each is an error naming the field and the
//! module. Values inherited from `defaults:` simply do not apply. The module is only known once
//! every file is read, so those checks run last ([`check_module_refs`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_saphyr::Spanned;

use crate::blackbox::config::Prober;
use crate::diag::{Diagnostics, Origin, Pos};

use super::fields::{
    body, expect, headers, labels, method, positive, size, target_tls, timing, valid_name, Defaults,
};
use super::raw::RawTarget;
use super::{
    Check, Config, HttpCheck, ProbeUrl, TargetSpec, Uncompared, DEFAULT_BODY_LIMIT,
    DEFAULT_DOWN_AFTER, DEFAULT_UP_AFTER,
};

/// A target's `module:`, checked once every file's modules are known.
#[derive(Debug, Clone)]
pub(super) struct ModuleRef {
    file: PathBuf,
    /// `targets[i]`.
    field: String,
    /// Where `module:` is written.
    at: Pos,
    name: String,
    /// How the target says what the module probes.
    form: Form,
    /// Fields written on the target that the module makes meaningless, with their positions.
    ignored: Vec<(&'static str, Pos)>,
}

/// How a module target says what it probes.
#[derive(Debug, Clone)]
enum Form {
    /// `url:` (http modules only).
    Url,
    /// `target:`, to be parsed by the module's prober, and where it is written.
    Target(Pos, String),
    /// Neither or both: already reported.
    Invalid,
}

/// Checks one target; its `module:`, when it has one, is returned for [`check_module_refs`].
pub(super) fn check_target(
    diag: &mut Diagnostics,
    d: &Defaults,
    t: &Spanned<RawTarget>,
    field: &str,
) -> (Option<TargetSpec>, Option<ModuleRef>) {
    let before = diag.count();
    let r = &t.value;
    let name = target_name(diag, t, field);
    let (interval, timeout, jitter) = timing(diag, d, &r.interval, &r.timeout, &r.jitter, t, field);
    let mut lbls = d.labels.clone();
    lbls.extend(labels(diag, &r.labels, &format!("{field}.labels")));
    let (check, module_ref) = match &r.module {
        Some(m) => {
            let (c, m) = module_check(diag, t, field, m);
            (c, Some(m))
        }
        None => (
            http_check(diag, d, t, field).map(|h| Check::Http(Arc::new(h))),
            None,
        ),
    };
    let down_after = r
        .down_after
        .as_ref()
        .and_then(|v| positive(diag, v, &format!("{field}.down_after")))
        .or(d.down_after)
        .unwrap_or(DEFAULT_DOWN_AFTER);
    let up_after = r
        .up_after
        .as_ref()
        .and_then(|v| positive(diag, v, &format!("{field}.up_after")))
        .or(d.up_after)
        .unwrap_or(DEFAULT_UP_AFTER);
    if diag.count() > before {
        return (None, module_ref);
    }
    let spec = check.map(|check| TargetSpec {
        name,
        check,
        interval,
        timeout,
        jitter,
        labels: lbls,
        down_after,
        up_after,
        origin: Uncompared(Origin {
            file: diag.file().to_path_buf(),
            line: t.referenced.line(),
        }),
    });
    (spec, module_ref)
}

fn target_name(diag: &mut Diagnostics, t: &Spanned<RawTarget>, field: &str) -> String {
    match &t.value.name {
        Some(n) if valid_name(&n.value) => n.value.clone(),
        Some(n) => {
            diag.error(n, format!("{field}.name"), format!("`{}` is not a usable name: use letters, digits, `-`, `_`, `.`, `/` (1–128 characters)", n.value));
            String::new()
        }
        None => {
            diag.error(
                t,
                format!("{field}.name"),
                "missing: every target needs a unique name",
            );
            String::new()
        }
    }
}

/// `url:` checked as the native prober and http modules take it.
fn probe_url(diag: &mut Diagnostics, u: &Spanned<String>, field: &str) -> Option<ProbeUrl> {
    match ProbeUrl::parse(&u.value) {
        Ok(p) => Some(p),
        Err(m) => {
            diag.error(u, format!("{field}.url"), format!("`{}`: {m}", u.value));
            None
        }
    }
}

/// A target without `module:`: the native HTTP check.
fn http_check(
    diag: &mut Diagnostics,
    d: &Defaults,
    t: &Spanned<RawTarget>,
    field: &str,
) -> Option<HttpCheck> {
    let r = &t.value;
    if let Some(x) = &r.target {
        diag.error(
            x,
            format!("{field}.target"),
            "`target` needs a `module` (the module says how to probe it); a native HTTP check takes `url`",
        );
    }
    let url = match &r.url {
        Some(u) => probe_url(diag, u, field),
        None => {
            if r.target.is_none() {
                diag.error(
                    t,
                    format!("{field}.url"),
                    "missing: every target needs a `url` (or a `module` with a `target`)",
                );
            }
            None
        }
    };
    let method = method(diag, &r.method, &format!("{field}.method"));
    let mut hdrs = d.headers.clone();
    for (k, v) in headers(diag, &r.headers, &format!("{field}.headers")).drain() {
        if let Some(k) = k {
            hdrs.insert(k, v);
        }
    }
    let body = body(diag, &r.body, &r.body_json, field, &mut hdrs);
    let expect = expect(diag, &r.expect, &format!("{field}.expect"));
    let tls = target_tls(diag, d, &r.tls, field);
    let body_limit = r
        .body_limit
        .as_ref()
        .and_then(|v| size(diag, v, &format!("{field}.body_limit")))
        .or(d.body_limit)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    Some(HttpCheck {
        url: url?,
        method,
        headers: hdrs,
        body,
        expect,
        keep_alive: r
            .keep_alive
            .as_ref()
            .map(|k| k.value)
            .or(d.keep_alive)
            .unwrap_or(false),
        body_limit,
        tls,
    })
}

/// A target with `module:`: what it probes, and what is left to check against the module.
fn module_check(
    diag: &mut Diagnostics,
    t: &Spanned<RawTarget>,
    field: &str,
    m: &Spanned<String>,
) -> (Option<Check>, ModuleRef) {
    let r = &t.value;
    let (target, form) = match (&r.url, &r.target) {
        (Some(_), Some(x)) => {
            diag.error(
                x,
                format!("{field}.target"),
                "set either `url` (an http module's URL) or `target`, not both",
            );
            (None, Form::Invalid)
        }
        (Some(u), None) => (probe_url(diag, u, field).map(|p| p.full), Form::Url),
        (None, Some(x)) => (
            Some(x.value.clone()),
            Form::Target(Pos::from(x), x.value.clone()),
        ),
        (None, None) => {
            diag.error(
                t,
                format!("{field}.target"),
                format!(
                    "missing: a target with `module: {}` needs a `target` (or a `url` for an http module)",
                    m.value
                ),
            );
            (None, Form::Invalid)
        }
    };
    let module_ref = ModuleRef {
        file: diag.file().to_path_buf(),
        field: field.to_string(),
        at: Pos::from(m),
        name: m.value.clone(),
        form,
        ignored: ignored_fields(r),
    };
    let check = target.map(|target| Check::Module {
        module: m.value.clone(),
        target,
    });
    (check, module_ref)
}

/// The native prober's fields written on the target itself, which a module makes meaningless.
fn ignored_fields(r: &RawTarget) -> Vec<(&'static str, Pos)> {
    let mut out = Vec::new();
    let mut note = |key: &'static str, at: Option<Pos>| {
        if let Some(at) = at {
            out.push((key, at));
        }
    };
    note("method", r.method.as_ref().map(Pos::from));
    note("headers", r.headers.values().next().map(Pos::from));
    note("body", r.body.as_ref().map(Pos::from));
    note("body_json", r.body_json.as_ref().map(Pos::from));
    note("expect", r.expect.as_ref().map(Pos::from));
    note("keep_alive", r.keep_alive.as_ref().map(Pos::from));
    note("tls", r.tls.as_ref().map(Pos::from));
    note("body_limit", r.body_limit.as_ref().map(Pos::from));
    out
}

/// Checks every target's `module:` once every file's modules are known: the module exists, a
/// `url:` goes with an http module, a `target:` is one the module's prober can parse, and no
/// field the module makes meaningless is written on the target.
pub(super) fn check_module_refs(
    diag: &mut Diagnostics,
    config: &Config,
    seen_modules: &HashMap<String, (PathBuf, u64)>,
    refs: Vec<ModuleRef>,
) {
    for r in refs {
        diag.set_file(&r.file);
        let name = &r.name;
        let Some(m) = config.modules.get(name) else {
            // A module with errors of its own is already reported.
            if !seen_modules.contains_key(name) {
                diag.error(
                    r.at,
                    format!("{}.module", r.field),
                    format!("no module named `{name}` is configured under `modules:`"),
                );
            }
            continue;
        };
        let prober = m.prober;
        match &r.form {
            Form::Url if prober != Prober::Http => diag.error(
                r.at,
                format!("{}.module", r.field),
                format!(
                    "module `{name}` uses the {} prober; `url` is for http modules: write what it probes as `target`",
                    prober.as_str()
                ),
            ),
            Form::Url | Form::Invalid => {}
            Form::Target(at, target) => {
                if let Err(e) = crate::blackbox::endpoint::check_target(prober, target) {
                    diag.error(
                        *at,
                        format!("{}.target", r.field),
                        format!(
                            "`{target}` is not a target the {} prober of `module: {name}` can probe: {e}",
                            prober.as_str()
                        ),
                    );
                }
            }
        }
        for (key, at) in &r.ignored {
            diag.error(
                *at,
                format!("{}.{key}", r.field),
                format!(
                    "`{key}` has no effect with `module: {name}` (prober {}): {}",
                    prober.as_str(),
                    advice(key)
                ),
            );
        }
    }
}

/// Where a field that a module makes meaningless belongs instead.
fn advice(key: &str) -> &'static str {
    match key {
        "expect" => "put the checks in the module",
        "method" | "headers" | "body" | "body_json" => "put the request in the module",
        _ => "set it in the module",
    }
}
