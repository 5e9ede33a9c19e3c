//! The `metrics:` section: how much `/metrics` says about each target (the detail level, with a
//! per-target override) and the fleet aggregates (`aggregate_by`, `per_target`).
//!
//! At most one file may set the section. The labels of `aggregate_by` are checked once every
//! file is read: a label no target has is an error naming it (it would put every target in one
//! group whose label is empty, which is never what was meant).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};

use super::Config;

/// How long a target keeps its own series in `per_target: failing` mode after its last failed
/// probe: longer than the 5-minute `rate()` windows of the shipped rules, so they see a whole
/// window of a target that failed.
pub const DEFAULT_FAILING_HOLD: Duration = Duration::from_secs(10 * 60);

/// How much `/metrics` says about a target. Each level includes the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Detail {
    /// `watchfire_target_up` and `watchfire_probes_total` by result.
    Minimal,
    /// Minimal and the duration histogram over coarse buckets.
    #[default]
    Standard,
    /// Every per-target family, the duration histogram over its full buckets.
    Full,
}

impl Detail {
    /// Every level, as written in the config.
    pub const ALL: [Detail; 3] = [Detail::Minimal, Detail::Standard, Detail::Full];

    /// The name in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Detail::Minimal => "minimal",
            Detail::Standard => "standard",
            Detail::Full => "full",
        }
    }

    /// The level named `s`.
    pub fn parse(s: &str) -> Option<Detail> {
        Detail::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Which targets keep their own series when `aggregate_by` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerTarget {
    /// Every target.
    All,
    /// Only targets that are down or failing ([`MetricsConfig::failing_hold`]).
    #[default]
    Failing,
}

impl PerTarget {
    /// The name in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            PerTarget::All => "all",
            PerTarget::Failing => "failing",
        }
    }
}

/// The checked `metrics:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// The level of targets without their own.
    pub detail: Detail,
    /// Targets' own levels (`targets[i].metrics.detail`), by target name.
    pub overrides: HashMap<String, Detail>,
    /// Labels of the fleet aggregates; empty: no aggregates.
    pub aggregate_by: Vec<String>,
    /// Which targets keep their own series while aggregates are exported.
    pub per_target: PerTarget,
    /// How long after its last failed probe a target counts as failing.
    pub failing_hold: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            detail: Detail::default(),
            overrides: HashMap::new(),
            aggregate_by: Vec::new(),
            per_target: PerTarget::default(),
            failing_hold: DEFAULT_FAILING_HOLD,
        }
    }
}

impl MetricsConfig {
    /// The level of the target named `name`.
    pub fn detail_of(&self, name: &str) -> Detail {
        self.overrides.get(name).copied().unwrap_or(self.detail)
    }

    /// True when only failing targets keep their own series.
    pub fn failing_only(&self) -> bool {
        !self.aggregate_by.is_empty() && self.per_target == PerTarget::Failing
    }
}

/// `metrics:` as written at the top level.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `minimal`, `standard` (the default) or `full`.
    pub detail: Option<Spanned<String>>,
    /// Target labels (`component` or a user label) to export fleet aggregates by.
    #[serde(default)]
    pub aggregate_by: Vec<Spanned<String>>,
    /// `failing` (the default with `aggregate_by`) or `all`.
    pub per_target: Option<Spanned<String>>,
    /// How long after its last failed probe a target keeps its own series (`10m`).
    pub failing_hold: Option<Spanned<String>>,
}

/// `metrics:` as written on a target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetMetrics {
    /// This target's level.
    pub detail: Option<Spanned<String>>,
}

/// The section while files are read: where it was set, its labels to check at the end.
#[derive(Default)]
pub(super) struct MetricsSection {
    at: Option<(PathBuf, u64)>,
    labels: Vec<(String, PathBuf, Pos)>,
}

fn detail(diag: &mut Diagnostics, s: &Spanned<String>, field: &str) -> Option<Detail> {
    let d = Detail::parse(&s.value);
    if d.is_none() {
        let msg = format!(
            "unknown detail level `{}`: use minimal, standard or full",
            s.value
        );
        diag.error(s, field, msg);
    }
    d
}

impl MetricsSection {
    /// Checks the top-level section of one file.
    pub(super) fn check(
        &mut self,
        diag: &mut Diagnostics,
        m: &Spanned<RawMetrics>,
        out: &mut MetricsConfig,
    ) {
        if let Some((f, l)) = &self.at {
            let msg = format!("metrics is already set at {}:{l}", f.display());
            diag.error(m, "metrics", msg);
            return;
        }
        self.at = Some((diag.file().to_path_buf(), m.referenced.line()));
        let r = &m.value;
        if let Some(d) = r
            .detail
            .as_ref()
            .and_then(|d| detail(diag, d, "metrics.detail"))
        {
            out.detail = d;
        }
        let mut seen = BTreeSet::new();
        for (i, l) in r.aggregate_by.iter().enumerate() {
            let field = format!("metrics.aggregate_by[{i}]");
            if l.value == "target" {
                let msg = "`target` cannot be aggregated by: it has one value per target";
                diag.error(l, field, msg);
            } else if !seen.insert(l.value.clone()) {
                diag.error(l, field, format!("`{}` is listed twice", l.value));
            } else {
                out.aggregate_by.push(l.value.clone());
                self.labels
                    .push((l.value.clone(), diag.file().to_path_buf(), l.into()));
            }
        }
        if let Some(p) = &r.per_target {
            match p.value.as_str() {
                "all" => out.per_target = PerTarget::All,
                "failing" => out.per_target = PerTarget::Failing,
                other => {
                    let msg = format!("unknown value `{other}`: use failing or all");
                    diag.error(p, "metrics.per_target", msg);
                }
            }
        }
        if let Some(h) = &r.failing_hold {
            match super::parse_duration(&h.value) {
                Ok(d) => out.failing_hold = d,
                Err(e) => diag.error(h, "metrics.failing_hold", e),
            }
        }
    }

    /// Checks a target's own `metrics:`; `field` is `targets[i]`.
    pub(super) fn check_target(
        diag: &mut Diagnostics,
        name: Option<&str>,
        m: &Spanned<RawTargetMetrics>,
        field: &str,
        out: &mut MetricsConfig,
    ) {
        let Some(d) = &m.value.detail else { return };
        let field = format!("{field}.metrics.detail");
        if let (Some(d), Some(name)) = (detail(diag, d, &field), name) {
            out.overrides.insert(name.to_string(), d);
        }
    }

    /// Checks the aggregation labels against every target's labels, once every file is read.
    pub(super) fn finish(self, diag: &mut Diagnostics, config: &Config) {
        if config.targets.is_empty() {
            return;
        }
        let here = diag.file().to_path_buf();
        for (i, (label, file, at)) in self.labels.iter().enumerate() {
            let known =
                label == "component" || config.targets.iter().any(|t| t.labels.contains_key(label));
            if !known {
                diag.set_file(file);
                let msg = format!(
                    "no target has the label `{label}`: aggregates are by `component` or a label \
                     under targets' `labels:`"
                );
                diag.error(*at, format!("metrics.aggregate_by[{i}]"), msg);
            }
        }
        diag.set_file(here);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: &str = "targets:
  - name: a
    url: http://127.0.0.1:1/
    labels: { team: x }
  - name: b
    url: http://127.0.0.1:1/
    metrics: { detail: full }
";

    fn load(extra: &str) -> Result<Config, crate::diag::ConfigErrors> {
        crate::config::load_str("m.yaml", &format!("{TARGETS}{extra}"))
    }

    #[test]
    fn standard_is_the_default_and_a_target_can_override_it() {
        let c = load("").expect("valid");
        assert_eq!(c.metrics.detail, Detail::Standard);
        assert_eq!(c.metrics.detail_of("a"), Detail::Standard);
        assert_eq!(c.metrics.detail_of("b"), Detail::Full);
        assert!(!c.metrics.failing_only());
    }

    #[test]
    fn the_section_sets_detail_aggregates_and_per_target() {
        let c = load(
            "metrics:\n  detail: minimal\n  aggregate_by: [team, component]\n  failing_hold: 2m\n",
        )
        .expect("valid");
        assert_eq!(c.metrics.detail_of("a"), Detail::Minimal);
        assert_eq!(c.metrics.aggregate_by, ["team", "component"]);
        assert!(
            c.metrics.failing_only(),
            "failing is the default with aggregates"
        );
        assert_eq!(c.metrics.failing_hold, Duration::from_secs(120));
        let c = load("metrics: { aggregate_by: [team], per_target: all }\n").expect("valid");
        assert!(!c.metrics.failing_only());
    }

    fn error(extra: &str) -> String {
        let e = load(extra).expect_err("invalid");
        assert_eq!(e.0.len(), 1, "{e}");
        let e = &e.0[0];
        format!("m.yaml:{} {}: {}", e.line, e.field, e.message)
    }

    #[test]
    fn bad_values_name_the_file_line_and_field() {
        let e = error("metrics:\n  detail: verbose\n");
        assert!(
            e.starts_with("m.yaml:9 metrics.detail: unknown detail level `verbose`"),
            "{e}"
        );
        let e = error("metrics:\n  aggregate_by: [team, region]\n");
        assert!(
            e.starts_with("m.yaml:9 metrics.aggregate_by[1]: no target has the label `region`"),
            "{e}"
        );
        let e = error("metrics:\n  aggregate_by: [target]\n");
        assert!(
            e.contains("metrics.aggregate_by[0]: `target` cannot"),
            "{e}"
        );
        let e = error("metrics:\n  per_target: some\n");
        assert!(
            e.contains("metrics.per_target: unknown value `some`"),
            "{e}"
        );
        let e = error("metrics:\n  detail: full\n  extra: 1\n");
        assert!(e.contains("extra"), "{e}");
        let bad = TARGETS.replace("detail: full", "detail: everything");
        let e = crate::config::load_str("m.yaml", &bad).expect_err("invalid");
        let e = &e.0[0];
        assert_eq!((e.line, e.field.as_str()), (7, "targets[1].metrics.detail"));
        assert!(
            e.message.contains("use minimal, standard or full"),
            "{}",
            e.message
        );
    }
}
