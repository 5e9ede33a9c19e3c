//! Fleet aggregates (`metrics.aggregate_by`): per distinct set of values of those labels, the
//! probes by result, the duration histogram and the targets by health, summed over the targets
//! that have that set (a target without one of the labels has it empty).

use std::collections::HashMap;

use crate::config::metrics::MetricsConfig;
use crate::expo::catalog::{AGG_DURATION, AGG_PROBES, AGG_TARGETS};
use crate::expo::{LabelSet, Writer};
use crate::probe::Reason;
use crate::record::{Buckets, Hdr, TargetStats, DURATION_BUCKETS};
use crate::state::Health;

use super::{TargetView, NATIVE_SCHEMA};

/// The sums of one label set.
#[derive(Default)]
struct Group {
    values: Vec<String>,
    successes: u64,
    failures: [u64; Reason::ALL.len()],
    duration: Buckets<16>,
    /// The targets' latency merged, for the native histogram (only when the format carries it).
    hdr: Option<Hdr>,
    up: u64,
    down: u64,
    unknown: u64,
}

/// The aggregates being summed during one scrape.
pub(super) struct Aggregates<'c> {
    labels: &'c [String],
    native: bool,
    /// The values of a label set joined by `\u{1f}` → its index in `groups`.
    index: HashMap<String, usize>,
    groups: Vec<Group>,
    key: String,
}

impl<'c> Aggregates<'c> {
    /// No sums yet; nothing is summed when `cfg` has no `aggregate_by`.
    pub(super) fn new(cfg: &'c MetricsConfig, native: bool) -> Aggregates<'c> {
        Aggregates {
            labels: &cfg.aggregate_by,
            native,
            index: HashMap::new(),
            groups: Vec::new(),
            key: String::new(),
        }
    }

    /// The value of aggregation label `l` on target `t`.
    fn value<'a>(t: &TargetView<'a>, l: &str) -> &'a str {
        match t.labels.get(l) {
            Some(v) => v,
            None if l == "component" => t.component,
            None => "",
        }
    }

    /// Adds one target to its label set's sums.
    pub(super) fn add(&mut self, t: &TargetView, s: &TargetStats) {
        if self.labels.is_empty() {
            return;
        }
        self.key.clear();
        for l in self.labels {
            self.key.push_str(Self::value(t, l));
            self.key.push('\u{1f}');
        }
        let i = match self.index.get(self.key.as_str()) {
            Some(&i) => i,
            None => {
                let values = self.labels.iter().map(|l| Self::value(t, l).to_string());
                self.groups.push(Group {
                    values: values.collect(),
                    hdr: self.native.then(Hdr::default),
                    ..Group::default()
                });
                self.index.insert(self.key.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        g.successes += s.successes;
        for (sum, n) in g.failures.iter_mut().zip(s.failures) {
            *sum += n;
        }
        for (sum, n) in g.duration.counts.iter_mut().zip(s.duration.counts) {
            *sum += n;
        }
        g.duration.sum += s.duration.sum;
        if let Some(h) = &mut g.hdr {
            h.merge(&s.latency);
        }
        match s.state.health {
            Health::Up => g.up += 1,
            Health::Down => g.down += 1,
            Health::Unknown => g.unknown += 1,
        }
    }

    /// Writes the three aggregate families, label sets in order of their values.
    pub(super) fn render(mut self, w: &mut Writer) {
        if self.groups.is_empty() {
            return;
        }
        self.groups.sort_by(|a, b| a.values.cmp(&b.values));
        let sets: Vec<LabelSet> = self
            .groups
            .iter()
            .map(|g| {
                let mut set = LabelSet::new();
                for (l, v) in self.labels.iter().zip(&g.values) {
                    set.push(l, v);
                }
                set
            })
            .collect();
        w.header(&AGG_TARGETS);
        for (g, set) in self.groups.iter().zip(&sets) {
            for (state, n) in [("up", g.up), ("down", g.down), ("unknown", g.unknown)] {
                w.sample_in(&AGG_TARGETS, set, &[("state", state)], n);
            }
        }
        w.header(&AGG_PROBES);
        for (g, set) in self.groups.iter().zip(&sets) {
            super::targets::probes_by_result(w, &AGG_PROBES, set, g.successes, &g.failures);
        }
        w.header(&AGG_DURATION);
        for (g, set) in self.groups.iter().zip(&sets) {
            let b = &g.duration;
            let native = g.hdr.as_ref().map(|h| h.to_native(NATIVE_SCHEMA, b.sum));
            let counts = &b.counts;
            w.native_histogram(
                &AGG_DURATION,
                set,
                &DURATION_BUCKETS,
                counts,
                b.sum,
                native.as_ref(),
            );
        }
    }
}
