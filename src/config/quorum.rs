//! The `quorum:` settings of cluster mode with several locations (`--location NAME`): which
//! locations probe a target and how many of them (`k`) must see it down before it is down.
//!
//! ```yaml
//! quorum:                      # global, in one file at most
//!   locations: [eu, us, ap]    # every location (n = 3); default: those seen in the cluster
//!   k: 2                       # default: max(1, n - 1) for n <= 3, a majority above
//! targets:
//!   - name: gateway-health
//!     url: http://gateway/health
//!     quorum: { locations: [eu, us], k: 1 }   # this target only
//! failover:
//!   - name: inference-gateway
//!     quorum: { k: 3 }         # every instance check of the group
//! ```
//!
//! A `k` larger than the locations it counts (`k > n`) is an error naming the file, line and
//! field, as is a location a target names that the global list does not have. The verdict
//! itself is computed by `crate::cluster::quorum` from every location's observations.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{Diagnostics, Pos};

use super::Config;

/// `quorum:`, globally or on one target or failover group.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuorum {
    /// Locations that must see a target down before it is down.
    pub k: Option<Spanned<u32>>,
    /// Which locations probe (globally: every location there is).
    pub locations: Option<Vec<Spanned<String>>>,
}

/// Checked `quorum:` settings; `None` fields inherit (a target's from the global section, the
/// global section's from what the cluster sees).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumSpec {
    /// Locations that must see a target down.
    pub k: Option<u32>,
    /// The locations that probe, in the order written.
    pub locations: Option<Vec<String>>,
}

/// Every `quorum:` setting of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumConfig {
    /// The global section (all `None` when absent).
    pub global: QuorumSpec,
    /// Overrides by target name; a failover group's apply to each of its instance checks.
    pub targets: BTreeMap<String, QuorumSpec>,
}

/// The quorum in force for one target: the locations that count (n) and k.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective<'a> {
    /// The locations whose views count for this target.
    pub locations: std::borrow::Cow<'a, [String]>,
    /// Locations that must see it down; 1 ≤ k ≤ n whenever n ≥ 1.
    pub k: usize,
}

/// The default k for n locations: it tolerates one location's own outage where that still
/// leaves a meaningful vote — `max(1, n − 1)` for n ≤ 3 (1 → 1, 2 → 1, 3 → 2) and a majority
/// (`n / 2 + 1`) above (4 → 3, 5 → 3, 7 → 4), so that several locations failing together
/// still cannot page alone.
pub const fn default_k(n: usize) -> usize {
    if n <= 3 {
        if n > 1 {
            n - 1
        } else {
            1
        }
    } else {
        n / 2 + 1
    }
}

impl QuorumConfig {
    /// The quorum of `target`: its own settings over the global ones; `known` (the locations
    /// the cluster has seen) when no list is configured. k is clamped to n at run time (a
    /// configured k > n is refused at load; one from `known` may shrink when locations go).
    pub fn effective<'a>(&'a self, target: &str, known: &'a [String]) -> Effective<'a> {
        let own = self.targets.get(target);
        let locations: &'a [String] = own
            .and_then(|o| o.locations.as_deref())
            .or(self.global.locations.as_deref())
            .unwrap_or(known);
        let n = locations.len();
        let k = own
            .and_then(|o| o.k)
            .or(self.global.k)
            .map_or(default_k(n), |k| k as usize)
            .clamp(1, n.max(1));
        Effective {
            locations: std::borrow::Cow::Borrowed(locations),
            k,
        }
    }
}

/// Whether `name` is a usable location name: 1–64 characters of letters, digits, `.`, `_`,
/// `-` (it becomes a label value and a database key).
pub fn valid_location(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A target's or group's `quorum:` waiting for the global section (it may be in a later file).
struct Pending {
    file: PathBuf,
    at: Pos,
    field: String,
    /// The target names it applies to (one, or a group's instance checks).
    targets: Vec<String>,
    spec: QuorumSpec,
    /// Where each location was written, for errors naming it.
    location_at: Vec<Pos>,
    /// Where its own `k` was written.
    k_at: Option<Pos>,
}

/// Collects the `quorum:` settings of every file; [`QuorumSection::finish`] checks them
/// against the global list once every file is read.
#[derive(Default)]
pub(super) struct QuorumSection {
    /// Where the global section was set: file, line.
    at: Option<(PathBuf, u64)>,
    global_at: Option<(PathBuf, Pos)>,
    pending: Vec<Pending>,
}

impl QuorumSection {
    /// The global `quorum:` (one file at most).
    pub(super) fn check_global(
        &mut self,
        diag: &mut Diagnostics,
        raw: &Spanned<RawQuorum>,
        out: &mut Config,
    ) {
        if let Some((f, l)) = &self.at {
            let msg = format!("quorum is already set at {}:{l}", f.display());
            diag.error(raw, "quorum", msg);
            return;
        }
        self.at = Some((diag.file().to_path_buf(), raw.referenced.line()));
        let (spec, _) = check_spec(diag, raw, "quorum");
        if let (Some(k), Some(l)) = (spec.k, &spec.locations) {
            if k as usize > l.len() {
                let at = raw.value.k.as_ref().map_or(Pos::from(raw), Pos::from);
                let msg = format!(
                    "k = {k} is more than the {} location(s) listed: no target could ever be down",
                    l.len()
                );
                diag.error(at, "quorum.k", msg);
            }
        }
        self.global_at = Some((diag.file().to_path_buf(), Pos::from(raw)));
        out.quorum.global = spec;
    }

    /// A target's or failover group's `quorum:` (field: `targets[3].quorum`), applying to
    /// `targets`.
    pub(super) fn check_override(
        &mut self,
        diag: &mut Diagnostics,
        raw: &Spanned<RawQuorum>,
        field: &str,
        targets: Vec<String>,
    ) {
        let (spec, location_at) = check_spec(diag, raw, field);
        self.pending.push(Pending {
            file: diag.file().to_path_buf(),
            at: Pos::from(raw),
            field: field.to_string(),
            targets,
            spec,
            location_at,
            k_at: raw.value.k.as_ref().map(Pos::from),
        });
    }

    /// Checks the overrides against the global section and puts them in `config`.
    pub(super) fn finish(self, diag: &mut Diagnostics, config: &mut Config) {
        let here = diag.file().to_path_buf();
        let global = config.quorum.global.clone();
        for p in self.pending {
            diag.set_file(&p.file);
            if let (Some(all), Some(own)) = (&global.locations, &p.spec.locations) {
                for (i, l) in own.iter().enumerate() {
                    if !all.contains(l) {
                        let msg = format!(
                            "location `{l}` is not one of quorum.locations ({})",
                            all.join(", ")
                        );
                        diag.error(p.location_at[i], format!("{}.locations[{i}]", p.field), msg);
                    }
                }
            }
            let n = p.spec.locations.as_ref().or(global.locations.as_ref());
            let k = p.spec.k.or(global.k);
            if let (Some(k), Some(n)) = (k, n) {
                if k as usize > n.len() {
                    let inherited = if p.spec.k.is_some() {
                        ""
                    } else {
                        " (inherited from quorum.k)"
                    };
                    let msg = format!(
                        "k = {k}{inherited} is more than the {} location(s) probing: it could \
                         never be down",
                        n.len()
                    );
                    diag.error(p.k_at.unwrap_or(p.at), format!("{}.k", p.field), msg);
                }
            }
            for t in p.targets {
                config.quorum.targets.insert(t, p.spec.clone());
            }
        }
        diag.set_file(here);
    }
}

/// The spec of one `quorum:` and where each location was written.
fn check_spec(
    diag: &mut Diagnostics,
    raw: &Spanned<RawQuorum>,
    field: &str,
) -> (QuorumSpec, Vec<Pos>) {
    let mut spec = QuorumSpec::default();
    if let Some(k) = &raw.value.k {
        if k.value == 0 {
            diag.error(k, format!("{field}.k"), "k must be at least 1");
        } else {
            spec.k = Some(k.value);
        }
    }
    let mut at = Vec::new();
    if let Some(ls) = &raw.value.locations {
        if ls.is_empty() {
            let msg = "an empty list: at least one location must probe";
            diag.error(raw, format!("{field}.locations"), msg);
        }
        let mut names: Vec<String> = Vec::with_capacity(ls.len());
        for (i, l) in ls.iter().enumerate() {
            let f = format!("{field}.locations[{i}]");
            if !valid_location(&l.value) {
                let msg = format!(
                    "`{}` is not a location name (1-64 letters, digits, `.`, `_`, `-`)",
                    l.value
                );
                diag.error(l, f, msg);
            } else if names.contains(&l.value) {
                diag.error(l, f, format!("location `{}` is listed twice", l.value));
            }
            names.push(l.value.clone());
            at.push(Pos::from(l));
        }
        spec.locations = Some(names);
    }
    (spec, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_k_tolerates_one_location_up_to_three_then_takes_a_majority() {
        let got: Vec<usize> = (1..=7).map(default_k).collect();
        assert_eq!(got, vec![1, 1, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn a_targets_settings_override_the_global_ones_and_k_is_clamped_to_n() {
        let known = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut q = QuorumConfig::default();
        let e = q.effective("t", &known);
        assert_eq!((e.locations.len(), e.k), (3, 2));
        q.global.k = Some(3);
        assert_eq!(q.effective("t", &known).k, 3);
        q.targets.insert(
            "t".into(),
            QuorumSpec {
                k: None,
                locations: Some(vec!["a".into(), "b".into()]),
            },
        );
        // Inherits k = 3 from the global section with two locations: clamped to 2.
        let e = q.effective("t", &known);
        assert_eq!(
            (e.locations.to_vec(), e.k),
            (vec!["a".into(), "b".into()], 2)
        );
        assert_eq!(q.effective("other", &known).k, 3);
        assert_eq!(q.effective("other", &[]).k, 1);
    }

    #[test]
    fn location_names_are_label_safe() {
        assert!(valid_location("eu-west-1"));
        assert!(!valid_location(""));
        assert!(!valid_location("a b"));
        assert!(!valid_location(&"x".repeat(65)));
    }
}
