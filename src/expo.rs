//! The Prometheus exposition writer (text, or protobuf with native histograms), and the catalog
//! of metric names.
//!
//! Every family watchfire writes goes through [`Writer`]: a family header (`# HELP`, `# TYPE`),
//! then its samples. [`Writer::new`] writes the text format, [`Writer::proto`] the protobuf
//! format (see [`proto`]) from the same calls. Label values and help text are escaped by the writer itself; callers pass
//! label names and values, never pre-rendered label text. The one exception is [`LabelSet`], a
//! label set escaped once and reused for many samples (one target's labels on each of its
//! series), which can only be built through the same escaping.
//!
//! Values are written as the text format wants them: integers without the float formatter,
//! `NaN`, `+Inf` and `-Inf`. Everything is appended to one `String` (or one `Vec<u8>`), with no
//! allocation per sample.
//!
//! [`Families`] buffers families and samples instead (set-or-replace by labels, then sorted as
//! Go's registry sorts them): the shape of a blackbox `/probe` answer.
//!
//! This module is a leaf: it imports nothing from the rest of the crate.

pub mod catalog;
mod families;
pub mod native;
pub mod proto;

pub use families::Families;
pub use native::{bucket_index, bucket_upper, NativeBuilder};

/// An exposition format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The text format, version 0.0.4.
    Text,
    /// Varint-delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }
}

/// A native (sparse, exponential) histogram's state, as the protobuf exposition carries it.
///
/// Bucket `i` of schema `s` holds the observations in `(base^(i-1), base^i]` where
/// `base = 2^(2^-s)`; observations at or below `zero_threshold` go to `zero_count`. Only
/// positive buckets are kept (durations are never negative), as `(index, count)` pairs in
/// ascending index order, each count non-cumulative and non-zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Native {
    /// The resolution: `-4..=8`; each power of two is split into `2^schema` buckets.
    pub schema: i8,
    /// Width of the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Observations in all.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// `(index, count)` of each non-empty positive bucket, ascending by index.
    pub buckets: Vec<(i32, u64)>,
}

/// A metric type, as written on the `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `gauge`
    Gauge,
    /// `counter`
    Counter,
    /// `histogram`
    Histogram,
    /// `summary`
    Summary,
    /// `untyped` (a registry's family of no declared type)
    Untyped,
}

impl Type {
    /// The name on the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Type::Gauge => "gauge",
            Type::Counter => "counter",
            Type::Histogram => "histogram",
            Type::Summary => "summary",
            Type::Untyped => "untyped",
        }
    }
}

/// A metric family: its name, type and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The family's name (series of histograms and summaries add `_bucket`, `_sum`, `_count`).
    pub name: &'static str,
    /// The type on the `# TYPE` line.
    pub kind: Type,
    /// The text on the `# HELP` line (escaped when written).
    pub help: &'static str,
}

/// A sample value the writer can format.
pub trait Value: Copy {
    /// Appends the value in the text format.
    fn write_to(self, out: &mut String);
    /// The value as the protobuf format carries it (a double).
    fn to_f64(self) -> f64;
}

impl Value for f64 {
    fn write_to(self, out: &mut String) {
        write_f64(self, out);
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Value for u64 {
    fn write_to(self, out: &mut String) {
        write_u64(self, out);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for u32 {
    fn write_to(self, out: &mut String) {
        write_u64(u64::from(self), out);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for u16 {
    fn write_to(self, out: &mut String) {
        write_u64(u64::from(self), out);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for u8 {
    fn write_to(self, out: &mut String) {
        write_u64(u64::from(self), out);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for usize {
    fn write_to(self, out: &mut String) {
        write_u64(self as u64, out);
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for bool {
    fn write_to(self, out: &mut String) {
        out.push(if self { '1' } else { '0' });
    }
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
}

/// Appends an unsigned integer without the formatting machinery.
fn write_u64(mut n: u64, out: &mut String) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Appends a float: `NaN`, `+Inf`, `-Inf`, integral values as integers, others in Rust's
/// shortest round-trip decimal form (`0.0005`, `0.00000015`).
pub fn write_f64(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        if v < 0.0 {
            out.push('-');
        }
        write_u64(v.abs() as u64, out);
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{v}");
    }
}

/// Appends `v` escaped as a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str, out: &mut String) {
    escape(v, true, out);
}

/// Escapes `\` and newline (and `"` when `quote`); the common case of nothing to escape is one
/// copy.
fn escape(v: &str, quote: bool, out: &mut String) {
    if !v
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' if quote => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value"` pairs, comma-separated, with a leading comma when `comma`.
fn write_pairs(pairs: &[(&str, &str)], mut comma: bool, out: &mut String) {
    for (k, v) in pairs {
        if comma {
            out.push(',');
        }
        comma = true;
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
}

/// A label set escaped once, for the many samples that share it (a target's `target` label and
/// its configured labels). Built only through the writer's escaping. It keeps the pairs twice:
/// as escaped text, and raw as the protobuf `LabelPair` fields of a `Metric` (a copy of each
/// name and value with a few bytes of framing), so either format writes it with one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSet {
    /// `a="x",b="y"`, values escaped.
    text: String,
    /// The pairs unescaped, as encoded `Metric.label` fields.
    proto: Vec<u8>,
}

impl LabelSet {
    /// An empty set.
    pub fn new() -> LabelSet {
        LabelSet::default()
    }

    /// An empty set with room for `bytes` of label text.
    pub fn with_capacity(bytes: usize) -> LabelSet {
        LabelSet {
            text: String::with_capacity(bytes),
            proto: Vec::with_capacity(bytes),
        }
    }

    /// A set of these pairs, in order.
    pub fn of(pairs: &[(&str, &str)]) -> LabelSet {
        let mut s = LabelSet::new();
        for (k, v) in pairs {
            s.push(k, v);
        }
        s
    }

    /// Adds a label after those already in the set.
    pub fn push(&mut self, name: &str, value: &str) {
        write_pairs(&[(name, value)], !self.text.is_empty(), &mut self.text);
        proto::label_field(name, value, &mut self.proto);
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Where a [`Writer`] writes.
enum Out<'a> {
    Text(&'a mut String),
    Proto(&'a mut proto::Encoder),
}

/// Writes families and samples in the text format into one `String`, or in the protobuf format
/// into one `Vec<u8>`.
///
/// A family's header comes first ([`Writer::header`]), then its samples; the writer does not
/// check the order (the caller writes each family in one go). In the protobuf format a sample
/// written without its family's header opens an untyped family of its name.
pub struct Writer<'a> {
    out: Out<'a>,
}

impl<'a> Writer<'a> {
    /// A writer appending the text format to `out`.
    pub fn new(out: &'a mut String) -> Writer<'a> {
        Writer {
            out: Out::Text(out),
        }
    }

    /// A writer appending the protobuf format (delimited `MetricFamily` messages) to `out`;
    /// [`proto::Encoder::into_bytes`] gives them, the last family completed.
    pub fn proto(out: &'a mut proto::Encoder) -> Writer<'a> {
        Writer {
            out: Out::Proto(out),
        }
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        match self.out {
            Out::Text(_) => Format::Text,
            Out::Proto(_) => Format::Protobuf,
        }
    }

    /// Reserves room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        match &mut self.out {
            Out::Text(s) => s.reserve(additional),
            // The protobuf format is smaller: half the text's estimate is plenty.
            Out::Proto(p) => p.reserve(additional / 2),
        }
    }

    /// True when the format being written carries native histograms (so a caller computes
    /// [`Native`] state only when it will be used): the protobuf format does, the text format
    /// does not.
    pub fn wants_native(&self) -> bool {
        matches!(self.out, Out::Proto(_))
    }

    /// Writes one labelled series of histogram `f` as [`Writer::histogram`] does, and in the
    /// protobuf format also as a native histogram (same `Histogram` message) when `native` is
    /// given and counts as many observations as `counts`.
    pub fn native_histogram(
        &mut self,
        f: &Family,
        set: &LabelSet,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        native: Option<&Native>,
    ) {
        match &mut self.out {
            Out::Text(_) => self.histogram(f, set, bounds, counts, sum),
            Out::Proto(p) => p.histogram(f.name, set, bounds, counts, sum, native),
        }
    }

    /// Writes the `# HELP` and `# TYPE` lines of `f`.
    pub fn header(&mut self, f: &Family) {
        self.header_parts(f.name, f.help, f.kind);
    }

    /// Writes the `# HELP` (when `help` is not empty) and `# TYPE` lines of a family known only
    /// at run time.
    pub fn header_parts(&mut self, name: &str, help: &str, kind: Type) {
        let out = match &mut self.out {
            Out::Text(s) => s,
            Out::Proto(p) => return p.header(name, help, kind),
        };
        if !help.is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape(help, false, out);
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(kind.as_str());
        out.push('\n');
    }

    /// Writes a sample of `f` with these labels.
    pub fn sample(&mut self, f: &Family, labels: &[(&str, &str)], v: impl Value) {
        self.line(f.name, "", None, labels, v);
    }

    /// Writes a sample of the family `name` (known only at run time) with these labels.
    pub fn sample_parts(&mut self, name: &str, labels: &[(&str, &str)], v: impl Value) {
        self.line(name, "", None, labels, v);
    }

    /// Writes a sample of `f` with the labels of `set` followed by `extra`.
    pub fn sample_in(&mut self, f: &Family, set: &LabelSet, extra: &[(&str, &str)], v: impl Value) {
        self.line(f.name, "", Some(set), extra, v);
    }

    /// Writes the `_sum` series of a summary or histogram `f`.
    pub fn sum(&mut self, f: &Family, set: &LabelSet, v: impl Value) {
        self.line(f.name, "_sum", Some(set), &[], v);
    }

    /// Writes the `_count` series of a summary or histogram `f`.
    pub fn count(&mut self, f: &Family, set: &LabelSet, v: impl Value) {
        self.line(f.name, "_count", Some(set), &[], v);
    }

    /// Writes one labelled series of summary `name` (known only at run time): a sample per
    /// `(quantile, value)`, then `_sum` and `_count`.
    pub fn summary_parts(
        &mut self,
        name: &str,
        set: &LabelSet,
        quantiles: &[(f64, f64)],
        sum: f64,
        count: u64,
    ) {
        let mut q = String::new();
        for (quantile, v) in quantiles {
            q.clear();
            write_f64(*quantile, &mut q);
            self.line(name, "", Some(set), &[("quantile", &q)], *v);
        }
        self.line(name, "_sum", Some(set), &[], sum);
        self.line(name, "_count", Some(set), &[], count);
    }

    /// Writes one labelled series of histogram `f`: a cumulative `_bucket` line per bound and
    /// `+Inf`, then `_sum` and `_count`. `counts` holds the non-cumulative count of each bucket,
    /// the last one for `+Inf` (one more than `bounds`).
    pub fn histogram(
        &mut self,
        f: &Family,
        set: &LabelSet,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        self.histogram_parts(f.name, set, bounds, counts, sum);
    }

    /// [`Writer::histogram`] for a family known only at run time.
    pub fn histogram_parts(
        &mut self,
        name: &str,
        set: &LabelSet,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let out = match &mut self.out {
            Out::Text(s) => s,
            Out::Proto(p) => return p.histogram(name, set, bounds, counts, sum, None),
        };
        let mut cum = 0u64;
        for (i, c) in counts.iter().enumerate() {
            cum += c;
            out.push_str(name);
            out.push_str("_bucket{");
            out.push_str(&set.text);
            if !set.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            match bounds.get(i) {
                Some(b) => write_f64(*b, out),
                None => out.push_str("+Inf"),
            }
            out.push_str("\"} ");
            write_u64(cum, out);
            out.push('\n');
        }
        self.line(name, "_sum", Some(set), &[], sum);
        self.line(name, "_count", Some(set), &[], cum);
    }

    /// `name` `suffix` `{set,extra}` `value`, without braces when there are no labels.
    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        set: Option<&LabelSet>,
        extra: &[(&str, &str)],
        v: impl Value,
    ) {
        let out = match &mut self.out {
            Out::Text(s) => s,
            Out::Proto(p) => return p.line(name, suffix, set, extra, v.to_f64()),
        };
        out.push_str(name);
        out.push_str(suffix);
        let set = set.map(|s| s.text.as_str()).unwrap_or("");
        if !set.is_empty() || !extra.is_empty() {
            out.push('{');
            out.push_str(set);
            write_pairs(extra, !set.is_empty(), out);
            out.push('}');
        }
        out.push(' ');
        v.write_to(out);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Family = Family {
        name: "x_total",
        kind: Type::Counter,
        help: "Things.",
    };

    fn written(f: impl FnOnce(&mut Writer)) -> String {
        let mut s = String::new();
        f(&mut Writer::new(&mut s));
        s
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let s = written(|w| w.header_parts("m", "a \"q\" \\ b\nc", Type::Gauge));
        assert_eq!(s, "# HELP m a \"q\" \\\\ b\\nc\n# TYPE m gauge\n");
    }

    #[test]
    fn values_render_in_exposition_form() {
        let mut s = String::new();
        for v in [
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.0005,
            3.0,
            -2.0,
            1e20,
            1.5e-7,
        ] {
            write_f64(v, &mut s);
            s.push(' ');
        }
        assert_eq!(
            s,
            "+Inf -Inf NaN 0.0005 3 -2 100000000000000000000 0.00000015 "
        );
        let s = written(|w| {
            w.sample(&F, &[], u64::MAX);
            w.sample(&F, &[], true);
            w.sample(&F, &[], 0u8);
        });
        assert_eq!(s, "x_total 18446744073709551615\nx_total 1\nx_total 0\n");
    }

    #[test]
    fn samples_join_the_set_and_the_extra_labels() {
        let set = LabelSet::of(&[("target", "a\"b"), ("env", "x\\y\nz")]);
        let s = written(|w| {
            w.header(&F);
            w.sample_in(&F, &set, &[("result", "ok")], 2u64);
            w.sample_in(&F, &LabelSet::new(), &[("result", "ok")], 2u64);
            w.sample_in(&F, &LabelSet::new(), &[], 2u64);
            w.sample(&F, &[("a", "1"), ("b", "\"")], 0.5);
        });
        assert_eq!(
            s,
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{target=\"a\\\"b\",env=\"x\\\\y\\nz\",result=\"ok\"} 2\n\
             x_total{result=\"ok\"} 2\n\
             x_total 2\n\
             x_total{a=\"1\",b=\"\\\"\"} 0.5\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Family {
            name: "d_seconds",
            kind: Type::Histogram,
            help: "D.",
        };
        let set = LabelSet::of(&[("target", "t")]);
        let s = written(|w| w.histogram(&h, &set, &[0.5, 1.0], &[1, 2, 3], 7.25));
        assert_eq!(
            s,
            "d_seconds_bucket{target=\"t\",le=\"0.5\"} 1\n\
             d_seconds_bucket{target=\"t\",le=\"1\"} 3\n\
             d_seconds_bucket{target=\"t\",le=\"+Inf\"} 6\n\
             d_seconds_sum{target=\"t\"} 7.25\n\
             d_seconds_count{target=\"t\"} 6\n"
        );
        let s = written(|w| w.histogram(&h, &LabelSet::new(), &[], &[4], 1.0));
        assert_eq!(
            s,
            "d_seconds_bucket{le=\"+Inf\"} 4\nd_seconds_sum 1\nd_seconds_count 4\n"
        );
    }
}
