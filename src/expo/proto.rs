//! The Prometheus protobuf exposition: varint-length-delimited `io.prometheus.client.MetricFamily`
//! messages (`metrics.proto` of prometheus/client_model), encoded by hand.
//!
//! The messages and fields written:
//!
//! | message | fields |
//! | --- | --- |
//! | `MetricFamily` | `name` 1, `help` 2, `type` 3 (enum), `metric` 4 |
//! | `Metric` | `label` 1, `gauge` 2, `counter` 3, `summary` 4, `untyped` 5, `histogram` 7 |
//! | `LabelPair` | `name` 1, `value` 2 |
//! | `Gauge`, `Counter`, `Untyped` | `value` 1 (double) |
//! | `Summary` | `sample_count` 1, `sample_sum` 2, `quantile` 3 (`quantile` 1, `value` 2) |
//! | `Histogram` | `sample_count` 1, `sample_sum` 2, `bucket` 3 (`cumulative_count` 1, `upper_bound` 2), `schema` 5 (sint32), `zero_threshold` 6, `zero_count` 7, `positive_span` 12 (`offset` 1 sint32, `length` 2), `positive_delta` 13 (sint64, packed) |
//!
//! A family is buffered until the next header (or the end), then written with its length; a
//! family without samples is left out, as client_golang does. Summary quantiles, `_sum` and
//! `_count` written one by one are gathered into one `Summary` per label set.

use super::{LabelSet, Native, Type};

/// Wire type of varints.
const VARINT: u8 = 0;
/// Wire type of doubles.
const I64: u8 = 1;
/// Wire type of strings, bytes, messages and packed repeated fields.
const LEN: u8 = 2;

/// Appends `v` as a base-128 varint.
pub(crate) fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | u32::from(wire)), out);
}

fn bytes_field(field: u32, b: &[u8], out: &mut Vec<u8>) {
    tag(field, LEN, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

fn double_field(field: u32, v: f64, out: &mut Vec<u8>) {
    tag(field, I64, out);
    out.extend_from_slice(&v.to_le_bytes());
}

fn uint_field(field: u32, v: u64, out: &mut Vec<u8>) {
    tag(field, VARINT, out);
    varint(v, out);
}

/// ZigZag encoding of a signed integer (`sint32`, `sint64`).
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends a `Metric.label` field: a `LabelPair` message.
pub(crate) fn label_field(name: &str, value: &str, out: &mut Vec<u8>) {
    tag(1, LEN, out);
    // Both lengths are below 2^63; the message length is their fields' sizes.
    let inner = field_len(name.len()) + field_len(value.len());
    varint(inner as u64, out);
    bytes_field(1, name.as_bytes(), out);
    bytes_field(2, value.as_bytes(), out);
}

/// Bytes of a length-delimited field of `n` bytes with a one-byte tag.
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `MetricType` of `metrics.proto`.
fn type_number(kind: Type) -> u64 {
    match kind {
        Type::Counter => 0,
        Type::Gauge => 1,
        Type::Summary => 2,
        Type::Untyped => 3,
        Type::Histogram => 4,
    }
}

/// A summary (or histogram without buckets) gathered from separate quantile, `_sum` and
/// `_count` calls.
#[derive(Debug, Default)]
struct Pending {
    /// Encoded label fields.
    labels: Vec<u8>,
    quantiles: Vec<(f64, f64)>,
    /// Left out of the message when no `_sum` was written (as the text has no `_sum` line).
    sum: Option<f64>,
    count: u64,
}

/// The protobuf output of a [`super::Writer`] made by [`super::Writer::proto`]: the finished
/// families, and the one being written. [`Encoder::into_bytes`] completes the last family, so no
/// family can be lost by a writer going out of scope.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
    /// Whether a family is open.
    open: bool,
    name: String,
    kind: Type,
    /// The open family's fields (name, help, type, metrics so far).
    family: Vec<u8>,
    metrics: usize,
    pending: Option<Pending>,
    /// Scratch: one `Metric` message.
    metric: Vec<u8>,
    /// Scratch: the value message inside it.
    inner: Vec<u8>,
    /// Scratch: label fields.
    labels: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An empty output.
    pub fn new() -> Encoder {
        Encoder::with_capacity(0)
    }

    /// An empty output with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Encoder {
        Encoder {
            out: Vec::with_capacity(bytes),
            open: false,
            name: String::new(),
            kind: Type::Untyped,
            family: Vec::new(),
            metrics: 0,
            pending: None,
            metric: Vec::new(),
            inner: Vec::new(),
            labels: Vec::new(),
        }
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.out.reserve(additional);
    }

    /// Ends the open family and opens `name`.
    pub(super) fn header(&mut self, name: &str, help: &str, kind: Type) {
        self.finish();
        self.open = true;
        self.name.clear();
        self.name.push_str(name);
        self.kind = kind;
        self.family.clear();
        self.metrics = 0;
        bytes_field(1, name.as_bytes(), &mut self.family);
        if !help.is_empty() {
            bytes_field(2, help.as_bytes(), &mut self.family);
        }
        uint_field(3, type_number(kind), &mut self.family);
    }

    /// The delimited `MetricFamily` messages, the last family completed.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.finish();
        self.out
    }

    /// Writes the open family (when it has samples) with its length; idempotent.
    fn finish(&mut self) {
        self.flush_pending();
        if self.open && self.metrics > 0 {
            varint(self.family.len() as u64, &mut self.out);
            self.out.extend_from_slice(&self.family);
        }
        self.open = false;
        self.metrics = 0;
        self.family.clear();
    }

    /// Opens `name` as an untyped family when it is not the open one (a sample written without
    /// its header).
    fn ensure(&mut self, name: &str) {
        if !self.open || self.name != name {
            self.header(name, "", Type::Untyped);
        }
    }

    /// Encodes `set` then `extra` (leaving out `skip`) into the label scratch.
    fn encode_labels(&mut self, set: Option<&LabelSet>, extra: &[(&str, &str)], skip: &str) {
        self.labels.clear();
        if let Some(set) = set {
            self.labels.extend_from_slice(&set.proto);
        }
        for (k, v) in extra {
            if *k != skip {
                label_field(k, v, &mut self.labels);
            }
        }
    }

    /// One series: `suffix` is `""`, `"_sum"` or `"_count"` as in the text format.
    pub(super) fn line(
        &mut self,
        name: &str,
        suffix: &str,
        set: Option<&LabelSet>,
        extra: &[(&str, &str)],
        v: f64,
    ) {
        self.ensure(name);
        match (self.kind, suffix) {
            (Type::Summary | Type::Histogram, "_sum" | "_count") => {
                self.encode_labels(set, extra, "");
                let p = self.pending_for_labels();
                if suffix == "_sum" {
                    p.sum = Some(v);
                } else {
                    p.count = v as u64;
                }
            }
            (Type::Summary, "") if extra.iter().any(|(k, _)| *k == "quantile") => {
                let q = extra
                    .iter()
                    .find(|(k, _)| *k == "quantile")
                    .and_then(|(_, q)| q.parse::<f64>().ok())
                    .unwrap_or(f64::NAN);
                self.encode_labels(set, extra, "quantile");
                self.pending_for_labels().quantiles.push((q, v));
            }
            (kind, _) => {
                self.flush_pending();
                self.encode_labels(set, extra, "");
                let field = match kind {
                    Type::Counter => 3,
                    Type::Gauge => 2,
                    _ => 5,
                };
                self.inner.clear();
                double_field(1, v, &mut self.inner);
                self.push_metric(field);
            }
        }
    }

    /// The pending summary for the labels in the scratch, flushing another one first.
    fn pending_for_labels(&mut self) -> &mut Pending {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.labels != self.labels)
        {
            self.flush_pending();
        }
        let labels = &self.labels;
        self.pending.get_or_insert_with(|| Pending {
            labels: labels.clone(),
            ..Pending::default()
        })
    }

    fn flush_pending(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        self.inner.clear();
        uint_field(1, p.count, &mut self.inner);
        if let Some(sum) = p.sum {
            double_field(2, sum, &mut self.inner);
        }
        let field = if self.kind == Type::Histogram {
            7
        } else {
            for (q, v) in &p.quantiles {
                tag(3, LEN, &mut self.inner);
                varint(18, &mut self.inner);
                double_field(1, *q, &mut self.inner);
                double_field(2, *v, &mut self.inner);
            }
            4
        };
        // Written with its own labels; the scratch (maybe the next metric's) is kept.
        let mut labels = p.labels;
        std::mem::swap(&mut self.labels, &mut labels);
        self.push_metric(field);
        std::mem::swap(&mut self.labels, &mut labels);
    }

    /// Appends a `Metric` of the label scratch and the value message in `inner` as `field`.
    fn push_metric(&mut self, field: u32) {
        self.metric.clear();
        self.metric.extend_from_slice(&self.labels);
        bytes_field(field, &self.inner, &mut self.metric);
        bytes_field(4, &self.metric, &mut self.family);
        self.metrics += 1;
    }

    /// One `Histogram` metric: classic buckets, and the native fields when `native` is given
    /// and counts the same observations.
    pub(super) fn histogram(
        &mut self,
        name: &str,
        set: &LabelSet,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
        native: Option<&Native>,
    ) {
        self.ensure(name);
        self.flush_pending();
        self.encode_labels(Some(set), &[], "");
        let total: u64 = counts.iter().sum();
        let inner = &mut self.inner;
        inner.clear();
        uint_field(1, total, inner);
        double_field(2, sum, inner);
        let mut cum = 0u64;
        // The +Inf bucket is implied by sample_count, as client_golang leaves it out.
        for (b, c) in bounds.iter().zip(counts) {
            cum += c;
            tag(3, LEN, inner);
            varint(1 + varint_len(cum) as u64 + 9, inner);
            uint_field(1, cum, inner);
            double_field(2, *b, inner);
        }
        if let Some(n) = native.filter(|n| n.count == total) {
            native_fields(n, inner);
        }
        self.push_metric(7);
    }
}

/// Appends the native fields of `n` to a `Histogram` message: schema, zero bucket, spans of
/// consecutive buckets and the count deltas.
fn native_fields(n: &Native, out: &mut Vec<u8>) {
    tag(5, VARINT, out);
    varint(zigzag(i64::from(n.schema)), out);
    // A zero threshold above 0 marks the histogram native even before any observation.
    let zero_threshold = if n.zero_threshold > 0.0 {
        n.zero_threshold
    } else {
        super::native::DEFAULT_ZERO_THRESHOLD
    };
    double_field(6, zero_threshold, out);
    uint_field(7, n.zero_count, out);
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut prev: Option<i32> = None;
    for (i, _) in &n.buckets {
        match (prev, spans.last_mut()) {
            (Some(p), Some(last)) if *i == p + 1 => last.1 += 1,
            (Some(p), _) => spans.push((i - p - 1, 1)),
            (None, _) => spans.push((*i, 1)),
        }
        prev = Some(*i);
    }
    if spans.is_empty() {
        // client_golang's marker of an empty native histogram: one span of no buckets.
        spans.push((0, 0));
    }
    let mut span = Vec::with_capacity(12);
    for (offset, length) in spans {
        span.clear();
        tag(1, VARINT, &mut span);
        varint(zigzag(i64::from(offset)), &mut span);
        uint_field(2, u64::from(length), &mut span);
        bytes_field(12, &span, out);
    }
    if !n.buckets.is_empty() {
        let mut deltas = Vec::with_capacity(n.buckets.len() * 2);
        let mut last = 0i64;
        for (_, c) in &n.buckets {
            let c = *c as i64;
            varint(zigzag(c - last), &mut deltas);
            last = c;
        }
        bytes_field(13, &deltas, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag_follow_the_wire_format() {
        let mut out = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            varint(v, &mut out);
            assert_eq!(varint_len(v), {
                let mut b = Vec::new();
                varint(v, &mut b);
                b.len()
            });
        }
        assert_eq!(
            out,
            [
                0, 1, 127, 0x80, 1, 0xac, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                1
            ]
        );
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn a_label_pair_is_a_nested_message() {
        let mut out = Vec::new();
        label_field("a", "xy", &mut out);
        assert_eq!(out, [0x0a, 7, 0x0a, 1, b'a', 0x12, 2, b'x', b'y']);
    }

    #[test]
    fn spans_cover_runs_and_deltas_follow_counts() {
        let n = Native {
            schema: 3,
            zero_threshold: 0.0,
            zero_count: 0,
            count: 10,
            sum: 1.0,
            buckets: vec![(-3, 2), (-2, 5), (2, 1), (3, 2)],
        };
        let mut out = Vec::new();
        native_fields(&n, &mut out);
        let mut want = vec![0x28, 6]; // schema 3, zigzag
        want.push(0x31);
        want.extend_from_slice(&super::super::native::DEFAULT_ZERO_THRESHOLD.to_le_bytes());
        want.extend_from_slice(&[0x38, 0]); // zero_count
        want.extend_from_slice(&[0x62, 4, 0x08, 5, 0x10, 2]); // span offset -3, length 2
        want.extend_from_slice(&[0x62, 4, 0x08, 6, 0x10, 2]); // gap of 3, length 2
        want.extend_from_slice(&[0x6a, 4, 4, 6, 7, 2]); // deltas 2, 3, -4, 1
        assert_eq!(out, want);
    }
}
