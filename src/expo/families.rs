//! [`Families`]: families and samples buffered until rendered, as a blackbox `/probe` answer
//! collects them.

use std::borrow::Cow;

use super::{Type, Writer};

/// A sample's label pairs, in the order given: static names (the catalog's) or a user's.
type Labels = Vec<(Cow<'static, str>, String)>;

/// One buffered family.
#[derive(Debug, Clone)]
struct Buffered {
    name: &'static str,
    help: &'static str,
    kind: Type,
    /// Label pairs (in the order given) and the value.
    samples: Vec<(Labels, f64)>,
}

/// Metric families buffered in the order first set; a sample set again with the same labels
/// replaces the earlier value. [`Families::sort`] orders them as Go's registry writes them;
/// [`Families::render`] writes them through [`Writer`].
#[derive(Debug, Clone, Default)]
pub struct Families {
    families: Vec<Buffered>,
}

impl Families {
    /// No families.
    pub fn new() -> Families {
        Families::default()
    }

    /// Whether no sample was set.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    /// Sets the sample of `name` with these labels, replacing an earlier one with the same
    /// labels (same names and values in the same order). The family's help and type are those
    /// given when its first sample was set.
    ///
    /// Names, help texts and label names are static (the catalog's), so a family costs no
    /// allocation but its label values'.
    pub fn set(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Type,
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        let fam = self.family_mut(name, help, kind);
        match fam.samples.iter_mut().find(|(l, _)| same(l, labels)) {
            Some(s) => s.1 = value,
            None => fam.samples.push((
                labels
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(*k), v.to_string()))
                    .collect(),
                value,
            )),
        }
    }

    /// [`Families::set`] for label names that are not static (a user's `labels:`).
    pub fn set_owned(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Type,
        labels: &[(String, String)],
        value: f64,
    ) {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let fam = self.family_mut(name, help, kind);
        match fam.samples.iter_mut().find(|(l, _)| same(l, &pairs)) {
            Some(s) => s.1 = value,
            None => fam.samples.push((
                labels
                    .iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), v.clone()))
                    .collect(),
                value,
            )),
        }
    }

    /// The value of the first sample of `name`, if any was set.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.family(name)?.samples.first().map(|s| s.1)
    }

    /// The value of the sample of `name` with exactly these labels, if set.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.family(name)?
            .samples
            .iter()
            .find(|(l, _)| same(l, labels))
            .map(|s| s.1)
    }

    /// Family names, in the order first set (or sorted, after [`Families::sort`]).
    pub fn names(&self) -> Vec<&str> {
        self.families.iter().map(|f| f.name).collect()
    }

    /// Orders families by name and each family's samples by their label values, as Go's
    /// registry writes them.
    pub fn sort(&mut self) {
        self.families.sort_by(|a, b| a.name.cmp(b.name));
        for f in &mut self.families {
            f.samples.sort_by(|a, b| {
                let va = a.0.iter().map(|(_, v)| v.as_str());
                let vb = b.0.iter().map(|(_, v)| v.as_str());
                va.cmp(vb)
            });
        }
    }

    /// Appends every family, header then samples, in the text format.
    pub fn render(&self, out: &mut String) {
        let mut w = Writer::new(out);
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for f in &self.families {
            w.header_parts(f.name, f.help, f.kind);
            for (labels, v) in &f.samples {
                pairs.clear();
                pairs.extend(labels.iter().map(|(k, v)| (k.as_ref(), v.as_str())));
                w.line(f.name, "", None, &pairs, *v);
            }
        }
    }

    /// The family `name`, added (with `help` and `kind`) when it is not there yet.
    fn family_mut(&mut self, name: &'static str, help: &'static str, kind: Type) -> &mut Buffered {
        match self.families.iter().position(|f| f.name == name) {
            Some(i) => &mut self.families[i],
            None => {
                self.families.push(Buffered {
                    name,
                    help,
                    kind,
                    samples: Vec::new(),
                });
                self.families.last_mut().expect("just pushed")
            }
        }
    }

    fn family(&self, name: &str) -> Option<&Buffered> {
        self.families.iter().find(|f| f.name == name)
    }
}

/// Whether stored labels equal `labels`, pair by pair.
fn same(stored: &[(Cow<'static, str>, String)], labels: &[(&str, &str)]) -> bool {
    stored.len() == labels.len()
        && stored
            .iter()
            .zip(labels)
            .all(|((k, v), (k2, v2))| k == k2 && v == v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_set_or_replaced_by_labels() {
        let mut f = Families::new();
        assert!(f.is_empty());
        f.set("probe_success", "Success", Type::Gauge, &[], 0.0);
        f.set("probe_success", "ignored", Type::Counter, &[], 1.0);
        f.set("d", "Duration", Type::Gauge, &[("phase", "connect")], 0.5);
        f.set("d", "Duration", Type::Gauge, &[("phase", "connect")], 0.25);
        f.set("d", "Duration", Type::Gauge, &[("phase", "tls")], 0.125);
        assert_eq!(f.value("probe_success"), Some(1.0));
        assert_eq!(f.value_with("d", &[("phase", "connect")]), Some(0.25));
        assert_eq!(f.value_with("d", &[("phase", "resolve")]), None);
        assert_eq!(f.value_with("d", &[]), None);
        assert_eq!(f.value("nope"), None);
        assert_eq!(f.names(), ["probe_success", "d"]);
        let mut s = String::new();
        f.render(&mut s);
        assert_eq!(
            s,
            "# HELP probe_success Success\n# TYPE probe_success gauge\nprobe_success 1\n\
             # HELP d Duration\n# TYPE d gauge\n\
             d{phase=\"connect\"} 0.25\nd{phase=\"tls\"} 0.125\n"
        );
    }

    #[test]
    fn sort_orders_families_by_name_and_samples_by_label_values() {
        let mut f = Families::new();
        f.set("z", "Z", Type::Counter, &[("a", "2"), ("b", "x")], 1.0);
        f.set("z", "Z", Type::Counter, &[("a", "10"), ("b", "y")], 2.0);
        f.set("z", "Z", Type::Counter, &[("a", "2"), ("b", "a")], 3.0);
        f.set("a", "A", Type::Gauge, &[], f64::NAN);
        f.sort();
        assert_eq!(f.names(), ["a", "z"]);
        let mut s = String::new();
        f.render(&mut s);
        assert_eq!(
            s,
            "# HELP a A\n# TYPE a gauge\na NaN\n\
             # HELP z Z\n# TYPE z counter\n\
             z{a=\"10\",b=\"y\"} 2\nz{a=\"2\",b=\"a\"} 3\nz{a=\"2\",b=\"x\"} 1\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut f = Families::new();
        f.set("x", "a\\b\nc", Type::Gauge, &[("v", "q\"\\\n")], 1.0);
        let mut s = String::new();
        f.render(&mut s);
        assert_eq!(
            s,
            "# HELP x a\\\\b\\nc\n# TYPE x gauge\nx{v=\"q\\\"\\\\\\n\"} 1\n"
        );
    }
}
