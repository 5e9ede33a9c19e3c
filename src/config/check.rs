//! The config's top-level check: every source file parsed, each section checked into one
//! [`Config`], names unique across files, targets' modules resolved once every file is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Spanned;

use serde::de::IgnoredAny;

use crate::diag::{ConfigErrors, Diagnostics, Pos};

use super::fields::{check_defaults, valid_name};
use super::inline::{Found, InlineCache};
use super::quorum::QuorumSection;
use super::raw::{RawFailoverGroup, RawFile, RawTarget};
use super::Config;

/// Checks every source, returning the config or every problem found.
pub(super) fn check_sources(
    sources: &[(&Path, &str)],
    cache: &mut super::FileSdCache,
) -> Result<Config, ConfigErrors> {
    let mut diag = Diagnostics::default();
    let mut config = Config::default();
    // name → where first defined, to report duplicates across files.
    let mut seen: HashMap<String, (PathBuf, u64)> = HashMap::new();
    // Module names → where defined; targets' `module:` are checked once every file is read.
    let mut seen_modules: HashMap<String, (PathBuf, u64)> = HashMap::new();
    let mut module_refs = Vec::new();
    let mut sections = Sections::default();
    let mut file_sd = Vec::new();
    let mut quorum = super::quorum::QuorumSection::default();
    let mut http_sd = Vec::new();
    for (file, text) in sources {
        config.sources.push(file.to_path_buf());
        diag.set_file(*file);
        // A file whose text is the one its targets were last checked from is read past them.
        let reuse = cache.inline.unchanged(file, text);
        let raw = if reuse {
            super::yaml::parse_file::<IgnoredAny>(&mut diag, text).map(RawFile::without_targets)
        } else {
            super::yaml::parse_file(&mut diag, text)
        };
        let Some(raw) = raw else {
            continue;
        };
        let defaults = raw
            .defaults
            .as_ref()
            .map(|d| check_defaults(&mut diag, d))
            .unwrap_or_default();
        let found = Found {
            seen: &mut seen,
            module_refs: &mut module_refs,
            targets: &mut config.targets,
        };
        if reuse {
            cache.inline.replay(&mut diag, file, found);
        } else {
            let inline = &mut cache.inline;
            let sections = (&mut config.metrics, &mut quorum);
            check_targets(
                &mut diag,
                &defaults,
                (file, text),
                &raw.targets,
                found,
                sections,
                inline,
            );
        }
        for (i, s) in raw.file_sd.iter().enumerate() {
            let field = format!("file_sd[{i}]");
            file_sd.extend(super::file_sd::check_section(
                &mut diag, &defaults, s, &field,
            ));
        }
        for (i, s) in raw.http_sd.iter().enumerate() {
            let field = format!("http_sd[{i}]");
            http_sd.extend(super::http_sd::check_section(
                &mut diag, &defaults, s, &field,
            ));
        }
        check_failover(
            &mut diag,
            &defaults,
            &raw.failover,
            &mut seen,
            &mut quorum,
            &mut config,
        );
        sections.check(&mut diag, &raw, &mut config, &mut seen_modules, &mut quorum);
    }
    cache.inline.retain(sources);
    super::target::check_module_refs(&mut diag, &config, &seen_modules, module_refs);
    if !file_sd.is_empty() {
        config.file_sd = file_sd.clone();
        let known = |m: &str| seen_modules.contains_key(m);
        super::file_sd::expand(&mut diag, &mut config, file_sd, &seen, &known, cache);
    }
    if !http_sd.is_empty() {
        let known = |m: &str| seen_modules.contains_key(m);
        super::http_sd::expand(&mut diag, &mut config, http_sd, &known, &mut cache.http);
    }
    sections.finish(&mut diag, &mut config, quorum);
    diag.finish(config)
}

/// The sections of a config that are set once for all files, gathered file by file, then
/// finished once every file is read (and every target known).
#[derive(Default)]
struct Sections {
    guard: GuardSection,
    /// Where `incidents:` was set (file, line), to refuse a second.
    incidents_at: Option<(PathBuf, u64)>,
    /// Maintenance windows, checked against the components once every target is known.
    windows: Vec<crate::incident::config::Pending>,
    /// Where `notify:` was set (file, line), to refuse a second.
    notify_at: Option<(PathBuf, u64)>,
    status_page: super::status_page::StatusPageSection,
    metrics: super::metrics::MetricsSection,
}

impl Sections {
    /// One file's `memory:`, `modules:`, `probe_guard:`, `incidents:`, `maintenance:`,
    /// `status_page:`, `metrics:`, `quorum:` and `notify:`.
    fn check(
        &mut self,
        diag: &mut Diagnostics,
        raw: &RawFile,
        config: &mut Config,
        seen_modules: &mut HashMap<String, (PathBuf, u64)>,
        quorum: &mut QuorumSection,
    ) {
        crate::memory::check_section(diag, &raw.memory, &mut config.memory);
        crate::blackbox::config::check_section(
            diag,
            &raw.modules,
            &mut config.modules,
            seen_modules,
        );
        if let Some(g) = &raw.probe_guard {
            self.guard.check(diag, g);
        }
        if let Some(i) = &raw.incidents {
            let out = &mut config.incidents;
            crate::incident::config::check_incidents(diag, i, &mut self.incidents_at, out);
        }
        let out = &mut config.maintenance;
        crate::incident::config::check_maintenance(diag, &raw.maintenance, out, &mut self.windows);
        if let Some(p) = &raw.status_page {
            self.status_page.check(diag, p);
        }
        if let Some(m) = &raw.metrics {
            self.metrics.check(diag, m, &mut config.metrics);
        }
        if let Some(q) = &raw.quorum {
            quorum.check_global(diag, q, config);
        }
        if let Some(n) = &raw.notify {
            let out = &mut config.notify;
            crate::notify::config_check::check_section(diag, n, &mut self.notify_at, out);
        }
    }

    /// Once every file is read; `quorum` (gathered with the targets) is finished here too,
    /// before the maintenance windows are checked against the components.
    fn finish(self, diag: &mut Diagnostics, config: &mut Config, quorum: QuorumSection) {
        self.guard.finish(diag, config);
        self.status_page.finish(diag, config);
        self.metrics.finish(diag, config);
        quorum.finish(diag, config);
        // Components are only looked up by maintenance windows: a fleet without windows does
        // not pay for a map of every target.
        if !self.windows.is_empty() {
            crate::incident::config::check_components(diag, &config.components(), &self.windows);
        }
    }
}

/// `failover:` groups of one file: each group goes to `config` with its instances' checks as
/// targets (and its `quorum:` override checked), its name noted among the target names seen.
fn check_failover(
    diag: &mut Diagnostics,
    defaults: &super::fields::Defaults,
    groups: &[Spanned<RawFailoverGroup>],
    seen: &mut HashMap<String, (PathBuf, u64)>,
    quorum: &mut QuorumSection,
    config: &mut Config,
) {
    for (i, g) in groups.iter().enumerate() {
        let field = format!("failover[{i}]");
        let checked = super::failover::check_group(diag, defaults, g, &field);
        if let Some(n) = g
            .value
            .name
            .as_ref()
            .filter(|n| valid_name(&n.value) && !n.value.contains('/'))
        {
            note_name(diag, seen, n, &format!("{field}.name"));
        }
        if let Some((group, checks)) = checked {
            if let Some(q) = &g.value.quorum {
                let names = checks.iter().map(|c| c.name.clone()).collect();
                quorum.check_override(diag, q, &format!("{field}.quorum"), names);
            }
            for c in checks {
                config.targets.push(Arc::new(c));
            }
            config.failover.push(group);
        }
    }
}

/// `probe_guard:`: set in one file at most, its `scheduled_only` modules checked once every
/// file's modules are known.
#[derive(Default)]
struct GuardSection {
    guard: Option<crate::net::guard::Guard>,
    /// Where it was set: file, line.
    at: Option<(PathBuf, u64)>,
    /// Each `scheduled_only` entry: name, file, position.
    names: Vec<(String, PathBuf, crate::diag::Pos)>,
}

impl GuardSection {
    fn check(&mut self, diag: &mut Diagnostics, g: &Spanned<crate::net::guard::RawGuard>) {
        if let Some((f, l)) = &self.at {
            let msg = format!("probe_guard is already set at {}:{l}", f.display());
            diag.error(g, "probe_guard", msg);
            return;
        }
        self.at = Some((diag.file().to_path_buf(), g.referenced.line()));
        for n in &g.value.scheduled_only {
            self.names
                .push((n.value.clone(), diag.file().to_path_buf(), n.into()));
        }
        match crate::net::guard::Guard::compile(&g.value) {
            Ok(guard) => self.guard = Some(guard),
            Err(problems) => {
                for (at, e) in problems {
                    diag.field_error(at, "probe_guard", e);
                }
            }
        }
    }

    fn finish(self, diag: &mut Diagnostics, config: &mut Config) {
        let here = diag.file().to_path_buf();
        for (i, (name, file, at)) in self.names.iter().enumerate() {
            if config.modules.get(name).is_none() {
                diag.set_file(file);
                let msg = format!("no module named `{name}` is configured under `modules:`");
                diag.error(*at, format!("probe_guard.scheduled_only[{i}]"), msg);
            }
        }
        diag.set_file(here);
        config.modules.set_guard(self.guard.map(Arc::new));
    }
}

/// Records `name` as defined here, or a problem when it was defined before.
fn note_name(
    diag: &mut Diagnostics,
    seen: &mut HashMap<String, (PathBuf, u64)>,
    name: &Spanned<String>,
    field: &str,
) {
    super::names::note_name_at(diag, seen, &name.value, Pos::from(name), field);
}

/// Checks one file's `targets:` (read from `source`, a path and its text) into `out`, and
/// keeps what the check made in `inline` when it found no problem and no target has a
/// `metrics:` or `quorum:` of its own (see [`super::inline`]).
fn check_targets(
    diag: &mut Diagnostics,
    defaults: &super::fields::Defaults,
    source: (&Path, &str),
    raw: &[Spanned<RawTarget>],
    out: Found<'_>,
    sections: (&mut super::metrics::MetricsConfig, &mut QuorumSection),
    inline: &mut InlineCache,
) {
    let (metrics, quorum) = sections;
    inline.parsing(source.0);
    let (errors, first, first_ref) = (diag.count(), out.targets.len(), out.module_refs.len());
    let mut names = Vec::with_capacity(raw.len());
    let mut keep = true;
    for (i, t) in raw.iter().enumerate() {
        let (spec, module_ref) =
            super::target::check_target(diag, defaults, t, &format!("targets[{i}]"));
        out.module_refs.extend(module_ref);
        if let Some(m) = &t.value.metrics {
            keep = false;
            let name = t.value.name.as_ref().map(|n| n.value.as_str());
            let field = format!("targets[{i}]");
            super::metrics::MetricsSection::check_target(diag, name, m, &field, metrics);
        }
        if let (Some(q), Some(n)) = (&t.value.quorum, &t.value.name) {
            keep = false;
            let field = format!("targets[{i}].quorum");
            quorum.check_override(diag, q, &field, vec![n.value.clone()]);
        }
        // Duplicates are found even when the target has other problems.
        if let Some(n) = t.value.name.as_ref().filter(|n| valid_name(&n.value)) {
            note_name(diag, out.seen, n, &format!("targets[{i}].name"));
            names.push(Pos::from(n));
        }
        if let Some(spec) = spec {
            out.targets.push(Arc::new(spec));
        }
    }
    if keep && diag.count() == errors {
        let (file, text) = source;
        let refs = &out.module_refs[first_ref..];
        inline.keep(file, text, &out.targets[first..], names, refs);
    }
}
