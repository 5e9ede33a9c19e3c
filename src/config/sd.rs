//! What the discovery sections (`file_sd:`, `http_sd:`) share: the groups they discover
//! (Prometheus' `[{"targets": [...], "labels": {...}}]`), the settings every discovered target
//! gets ([`SdSection`]), and how a group becomes targets.
//!
//! Without a `template:`, each listed string is one target, named by what it probes (the URL
//! as normalised, or a module's target as written), labelled with the section's labels and then
//! the group's (`__`-prefixed ones dropped). With one ([`super::sd_template`]), the name, what is
//! probed, the module, the interval and extra labels are rendered from the group's labels and
//! `__address__`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::blackbox::config::{Modules, Prober};
use crate::diag::{Diagnostics, Origin, Pos};

use super::fields::{duration, labels, positive, timing, Defaults};
use super::raw::RawSdCommon;
use super::sd_template::Template;
use super::{Check, HttpCheck, ProbeUrl, TargetSpec, Uncompared};

pub use super::fields::MAX_TARGET_LEN;

/// One discovered group, as Prometheus' file_sd files and HTTP SD answers write it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The listed strings: each one target (`__address__` to a template).
    #[serde(default)]
    pub targets: Vec<String>,
    /// The group's labels, `__meta_*` and the like included.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A group's problem: where in the list (`[2].targets[0]`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    /// The place in the list of groups.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What every target of one discovery section shares, and how its groups become targets.
#[derive(Debug, Clone, PartialEq)]
pub struct SdSection {
    /// Every discovered target's spec but its name and what it probes.
    spec: TargetSpec,
    /// The native check of a discovered URL (the file's `defaults:`), its URL set per target.
    http: HttpCheck,
    /// The section's module's prober, once the module is resolved ([`SdSection::resolve`]).
    prober: Option<Prober>,
    /// The `template:`, when set.
    template: Option<Template>,
}

impl SdSection {
    /// Checks the shared settings of the section at `at` (`field` = `file_sd[0]`).
    pub(super) fn check<T>(
        diag: &mut Diagnostics,
        d: &Defaults,
        r: RawSdCommon<'_>,
        at: &Spanned<T>,
        field: &str,
    ) -> Option<SdSection> {
        let before = diag.count();
        let (interval, timeout, jitter) =
            timing(diag, d, r.interval, r.timeout, r.jitter, at, field);
        let mut lbls = d.labels.clone();
        lbls.extend(labels(diag, r.labels, &format!("{field}.labels")));
        let http = http_template(d);
        let check = match r.module {
            Some(m) => Check::Module {
                module: m.value.clone(),
                target: String::new(),
            },
            None => Check::Http(Arc::new(http.clone())),
        };
        let thresholds = |v: &Option<Spanned<u32>>, key: &str, diag: &mut Diagnostics| {
            v.as_ref()
                .and_then(|v| positive(diag, v, &format!("{field}.{key}")))
        };
        let down_after = thresholds(r.down_after, "down_after", diag)
            .or(d.down_after)
            .unwrap_or(super::DEFAULT_DOWN_AFTER);
        let up_after = thresholds(r.up_after, "up_after", diag)
            .or(d.up_after)
            .unwrap_or(super::DEFAULT_UP_AFTER);
        let template = r
            .template
            .as_ref()
            .and_then(|t| Template::check(diag, t, field));
        if diag.count() > before {
            return None;
        }
        let spec = TargetSpec {
            name: String::new(),
            check,
            interval,
            timeout,
            jitter,
            labels: lbls,
            down_after,
            up_after,
            origin: Uncompared(Default::default()),
        };
        Some(SdSection {
            spec,
            http,
            prober: None,
            template,
        })
    }

    /// Resolves the section's `module:` against `modules`; false (with the problem recorded at
    /// `pos`, `{field}.module`) when no such module exists, or when it is written with errors
    /// of its own (`written`), which are reported already.
    pub(super) fn resolve(
        &mut self,
        diag: &mut Diagnostics,
        modules: &Modules,
        written: &dyn Fn(&str) -> bool,
        (pos, field): (Pos, &str),
    ) -> bool {
        let Check::Module { module, .. } = &self.spec.check else {
            return true;
        };
        match modules.get(module) {
            Some(m) => {
                self.prober = Some(m.prober);
                true
            }
            None if written(module) => false,
            None => {
                let msg = format!("no module named `{module}` is configured under `modules:`");
                diag.error(pos, format!("{field}.module"), msg);
                false
            }
        }
    }

    /// The section's interval (a template may set another per target).
    pub fn interval(&self) -> Duration {
        self.spec.interval
    }

    /// The targets of `groups`, in order, defined at `origin` (for messages). The first
    /// problem (a bad URL, a reserved label, a template that fails) is the error.
    pub fn targets(
        &self,
        modules: &Modules,
        groups: Vec<Group>,
        origin: &Path,
    ) -> Result<Vec<Arc<TargetSpec>>, GroupError> {
        let mut out = Vec::with_capacity(groups.iter().map(|g| g.targets.len()).sum());
        for (gi, g) in groups.into_iter().enumerate() {
            let mut lbls = self.spec.labels.clone();
            lbls.extend(group_labels(gi, &g.labels)?);
            for (ti, t) in g.targets.into_iter().enumerate() {
                let spec = match &self.template {
                    None => self.plain(&lbls, t, origin),
                    Some(tpl) => self.templated(tpl, modules, &g.labels, lbls.clone(), t, origin),
                };
                let spec = spec.map_err(|message| GroupError {
                    field: format!("[{gi}].targets[{ti}]"),
                    message,
                })?;
                out.push(Arc::new(spec));
            }
        }
        Ok(out)
    }

    /// A listed string as it is: probed with the section's module (or natively), named by it.
    fn plain(
        &self,
        lbls: &BTreeMap<String, String>,
        t: String,
        origin: &Path,
    ) -> Result<TargetSpec, String> {
        check_len(&t)?;
        let module = match &self.spec.check {
            Check::Module { module, .. } => Some(module.as_str()),
            Check::Http(_) => None,
        };
        let check = self.check_of(t, module, self.prober)?;
        Ok(self.spec_of(check, None, None, lbls.clone(), origin))
    }

    /// A listed string through the template.
    fn templated(
        &self,
        tpl: &Template,
        modules: &Modules,
        group: &BTreeMap<String, String>,
        mut lbls: BTreeMap<String, String>,
        t: String,
        origin: &Path,
    ) -> Result<TargetSpec, String> {
        let r = tpl.render(group, &t)?;
        let probe = r.probe.unwrap_or(t);
        check_len(&probe)?;
        let section_module = match &self.spec.check {
            Check::Module { module, .. } => Some(module.as_str()),
            Check::Http(_) => None,
        };
        let (module, prober) = match r.module.as_deref() {
            None => (section_module, self.prober),
            Some("") => (None, None),
            Some(m) => match modules.get(m) {
                Some(found) => (Some(m), Some(found.prober)),
                None => {
                    return Err(format!(
                        "template.module: no module named `{m}` is configured under `modules:`"
                    ))
                }
            },
        };
        let check = self.check_of(probe, module, prober)?;
        if let Some(iv) = r.interval {
            if iv < super::MIN_INTERVAL || iv <= self.spec.timeout {
                return Err(format!(
                    "template.interval: {} must be at least {} and longer than the section's timeout {}",
                    humantime::format_duration(iv),
                    humantime::format_duration(super::MIN_INTERVAL),
                    humantime::format_duration(self.spec.timeout)
                ));
            }
        }
        if let Some(n) = &r.name {
            if n.is_empty() {
                return Err("template.name: the name is empty".into());
            }
        }
        for (k, v) in r.labels {
            if v.is_empty() {
                lbls.remove(&k);
            } else {
                lbls.insert(k, v);
            }
        }
        Ok(self.spec_of(check, r.name, r.interval, lbls, origin))
    }

    /// What probing `t` is: a native check of the URL, or `module`'s target in its prober's
    /// syntax.
    fn check_of(
        &self,
        t: String,
        module: Option<&str>,
        prober: Option<Prober>,
    ) -> Result<Check, String> {
        let Some(module) = module else {
            let url = ProbeUrl::parse(&t).map_err(|m| format!("`{t}`: {m}"))?;
            let mut h = self.http.clone();
            h.url = url;
            return Ok(Check::Http(Arc::new(h)));
        };
        let target = if prober == Some(Prober::Http) {
            ProbeUrl::parse(&t).map_err(|m| format!("`{t}`: {m}"))?.full
        } else {
            let p = prober.unwrap_or(Prober::Tcp);
            crate::blackbox::endpoint::check_target(p, &t).map_err(|e| {
                format!(
                    "`{t}` is not a target the {} prober of `module: {module}` can probe: {e}",
                    p.as_str()
                )
            })?;
            t
        };
        Ok(Check::Module {
            module: module.to_string(),
            target,
        })
    }

    fn spec_of(
        &self,
        check: Check,
        name: Option<String>,
        interval: Option<Duration>,
        labels: BTreeMap<String, String>,
        origin: &Path,
    ) -> TargetSpec {
        let name = name.unwrap_or_else(|| match &check {
            Check::Http(h) => h.url.full.clone(),
            Check::Module { target, .. } => target.clone(),
        });
        let s = &self.spec;
        TargetSpec {
            name,
            check,
            interval: interval.unwrap_or(s.interval),
            timeout: s.timeout,
            jitter: s.jitter,
            labels,
            down_after: s.down_after,
            up_after: s.up_after,
            origin: Uncompared(Origin {
                file: origin.to_path_buf(),
                line: 0,
            }),
        }
    }
}

/// `next` (a discovery source read again), each spec equal to one of `prev` (its last reading)
/// replaced by that one: the targets running from `prev` are then the very specs of the config
/// (a reload compares pointers, and no equal copy is kept twice in memory).
pub(super) fn reuse_equal(
    prev: &[Arc<TargetSpec>],
    mut next: Vec<Arc<TargetSpec>>,
) -> Vec<Arc<TargetSpec>> {
    let by_name: HashMap<&str, &Arc<TargetSpec>> =
        prev.iter().map(|t| (t.name.as_str(), t)).collect();
    for t in &mut next {
        if let Some(p) = by_name.get(t.name.as_str()).filter(|p| ***p == *t) {
            *t = Arc::clone(p);
        }
    }
    next
}

/// A section's `refresh_interval` (`field` = `file_sd[0]`): `default` when not set, and at
/// least `min`.
pub(super) fn refresh_interval(
    diag: &mut Diagnostics,
    raw: &Option<Spanned<String>>,
    field: &str,
    (default, min): (Duration, Duration),
) -> Duration {
    let field = format!("{field}.refresh_interval");
    let refresh = duration(diag, raw, &field).unwrap_or(default);
    if let Some(at) = raw.as_ref().filter(|_| refresh < min) {
        let msg = format!("must be at least {}", humantime::format_duration(min));
        diag.error(at, field, msg);
    }
    refresh
}

fn check_len(t: &str) -> Result<(), String> {
    if t.is_empty() || t.len() > MAX_TARGET_LEN {
        return Err(format!("a target is 1 to {MAX_TARGET_LEN} bytes long"));
    }
    Ok(())
}

/// The native check of a discovered URL: the file's `defaults:` (headers, TLS, body limit,
/// keep-alive), a `GET` accepting 2xx; its URL is set per target.
fn http_template(d: &Defaults) -> HttpCheck {
    let mut h = HttpCheck::new("http://127.0.0.1/").expect("a valid URL");
    h.headers = d.headers.clone();
    h.keep_alive = d.keep_alive.unwrap_or(false);
    h.body_limit = d.body_limit.unwrap_or(super::DEFAULT_BODY_LIMIT);
    if let Some(tls) = &d.tls {
        h.tls = tls.clone();
    }
    h
}

/// A group's labels checked: names starting with `__` (Prometheus's meta labels) are dropped
/// (a template may still read them).
fn group_labels(
    gi: usize,
    raw: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, GroupError> {
    let kept: BTreeMap<String, Spanned<String>> = raw
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| {
            let v = Spanned::new(v.clone(), Location::UNKNOWN, Location::UNKNOWN);
            (k.clone(), v)
        })
        .collect();
    let mut diag = Diagnostics::new("");
    let out = labels(&mut diag, &kept, &format!("[{gi}].labels"));
    match diag.into_errors().into_iter().next() {
        Some(e) => Err(GroupError {
            field: e.field,
            message: e.message,
        }),
        None => Ok(out),
    }
}

/// Parses a JSON list of groups (a file_sd `.json` file, an HTTP SD answer).
pub fn parse_json(bytes: &[u8]) -> Result<Vec<Group>, serde_json::Error> {
    serde_json::from_slice(bytes)
}
