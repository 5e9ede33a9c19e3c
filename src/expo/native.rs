//! The index math of native (sparse, exponential) histograms, and [`NativeBuilder`], which fills
//! an [`Native`] from values given in ascending order.
//!
//! Bucket `i` of schema `s` holds `(2^((i-1)/2^s), 2^(i/2^s)]`. [`bucket_index`] and
//! [`bucket_upper`] are computed from the same table (`2^(r/2^s)` for `r` in `0..2^s`, scaled by
//! exact powers of two), so a value equal to a bucket's upper bound always lands in that bucket.

use super::Native;

/// The smallest schema Prometheus accepts.
pub const MIN_SCHEMA: i8 = -4;
/// The largest schema Prometheus accepts.
pub const MAX_SCHEMA: i8 = 8;
/// The zero bucket's width client_golang uses by default (`2^-128`): a histogram with no
/// observations is still recognised as native by Prometheus when its zero threshold is above 0.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// `v = frac * 2^exp` with `frac` in `[0.5, 1)`, for a finite `v > 0` (C's `frexp`).
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (f, e) = frexp(v * 2f64.powi(64));
        return (f, e - 64);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, biased - 1022)
}

/// `2^(r/2^schema)` for `0 <= r < 2^schema` (schema > 0).
fn step(r: i32, schema: i8) -> f64 {
    (f64::from(r) / f64::from(1i32 << schema)).exp2()
}

/// The index of the bucket of `schema` (clamped to `-4..=8`) holding `v > 0`: the smallest `i`
/// with `v <= 2^(i/2^schema)`. Values at or below 0, and NaN, give `i32::MIN` (the caller puts
/// them in the zero bucket); `+Inf` gives `i32::MAX`.
pub fn bucket_index(v: f64, schema: i8) -> i32 {
    if v.is_nan() || v <= 0.0 {
        return i32::MIN;
    }
    if v.is_infinite() {
        return i32::MAX;
    }
    let schema = schema.clamp(MIN_SCHEMA, MAX_SCHEMA);
    let (frac, exp) = frexp(v);
    // v = m * 2^(exp-1) with m = 2 * frac in [1, 2).
    let m = 2.0 * frac;
    if schema <= 0 {
        // The smallest k with v <= 2^k, then the smallest i with k <= i * 2^-schema.
        let k = if m == 1.0 { exp - 1 } else { exp };
        let width = 1i32 << -schema;
        return k.div_euclid(width) + i32::from(k.rem_euclid(width) != 0);
    }
    let per = 1i32 << schema;
    // The smallest r in 0..per with m <= 2^(r/per); per when m is above all of them.
    let (mut lo, mut hi) = (0, per);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if m <= step(mid, schema) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    (exp - 1) * per + lo
}

/// The upper bound `2^(i/2^schema)` of bucket `i` of `schema` (clamped to `-4..=8`).
pub fn bucket_upper(i: i32, schema: i8) -> f64 {
    let schema = schema.clamp(MIN_SCHEMA, MAX_SCHEMA);
    if schema <= 0 {
        return 2f64.powi(i.saturating_mul(1 << -schema));
    }
    let per = 1i32 << schema;
    let (q, r) = (i.div_euclid(per), i.rem_euclid(per));
    step(r, schema) * 2f64.powi(q)
}

/// Builds a [`Native`] from observations given in ascending order of value, each with a count.
/// The index is computed once per native bucket, not once per value.
#[derive(Debug, Clone)]
pub struct NativeBuilder {
    native: Native,
    /// Upper bound of the last bucket in `native.buckets`.
    upper: f64,
}

impl NativeBuilder {
    /// An empty histogram of `schema` (clamped to `-4..=8`) whose zero bucket holds the values
    /// at or below `zero_threshold`.
    pub fn new(schema: i8, zero_threshold: f64) -> NativeBuilder {
        NativeBuilder {
            native: Native {
                schema: schema.clamp(MIN_SCHEMA, MAX_SCHEMA),
                zero_threshold,
                ..Native::default()
            },
            upper: f64::NEG_INFINITY,
        }
    }

    /// Adds `count` observations of `v`. Values must come in ascending order (a smaller value
    /// after a larger one is counted in the larger one's bucket).
    pub fn push(&mut self, v: f64, count: u64) {
        if count == 0 {
            return;
        }
        self.native.count += count;
        if v.is_nan() || v <= self.native.zero_threshold {
            self.native.zero_count += count;
            return;
        }
        if v <= self.upper {
            if let Some(last) = self.native.buckets.last_mut() {
                last.1 += count;
                return;
            }
        }
        let i = bucket_index(v, self.native.schema);
        self.upper = bucket_upper(i, self.native.schema);
        self.native.buckets.push((i, count));
    }

    /// The histogram, with `sum` as the sum of its observations.
    pub fn finish(mut self, sum: f64) -> Native {
        self.native.sum = sum;
        self.native
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: the upper bound of bucket `i`.
    fn def_upper(i: i32, s: i8) -> f64 {
        2f64.powf(f64::from(i) / 2f64.powi(i32::from(s)))
    }

    #[test]
    fn frexp_matches_its_definition() {
        for v in [1.0, 0.5, 0.75, 3.0, 1e-300, 5e-324, 1e300, 0.001] {
            let (f, e) = frexp(v);
            assert!((0.5..1.0).contains(&f), "{v}: {f}");
            let back = if e < 0 {
                f * 2f64.powi(e + 600) * 2f64.powi(-600)
            } else {
                f * 2f64.powi(e)
            };
            assert_eq!(back, v, "{v}");
        }
    }

    #[test]
    fn powers_of_two_close_their_bucket() {
        for s in MIN_SCHEMA..=MAX_SCHEMA {
            for k in [-20, -1, 0, 1, 7, 16] {
                let v = 2f64.powi(k);
                let i = bucket_index(v, s);
                if s < 0 && k % (1 << -s) != 0 {
                    // Not a bound of a coarse schema: inside a bucket.
                    assert!(bucket_upper(i - 1, s) < v && v < bucket_upper(i, s));
                    continue;
                }
                assert_eq!(bucket_upper(i, s), v, "schema {s}, 2^{k}");
                if s >= 0 {
                    assert_eq!(i, k * (1 << s), "schema {s}, 2^{k}");
                }
                // Just above the bound: the next bucket.
                assert_eq!(bucket_index(v.next_up(), s), i + 1, "schema {s}, 2^{k}+");
            }
        }
    }

    #[test]
    fn schema_3_indices_follow_the_definition() {
        // Bucket 0 is (2^-1/8, 1], bucket 1 is (1, 2^1/8], bucket -8 is (2^-9/8, 1/2].
        assert_eq!(bucket_index(1.0, 3), 0);
        assert_eq!(bucket_index(1.05, 3), 1);
        assert_eq!(bucket_index(0.95, 3), 0);
        assert_eq!(bucket_index(0.5, 3), -8);
        // 1 ms: 2^-10 = 0.000977 < 0.001 <= 2^(-79/8) = 0.001065.
        assert_eq!(bucket_index(0.001, 3), -79);
        let mut v = 1e-6;
        while v < 100.0 {
            let i = bucket_index(v, 3);
            let (lo, hi) = (def_upper(i - 1, 3), def_upper(i, 3));
            // The definition computed with powf may differ from the table by an ulp or two:
            // compare with a relative slack far below a bucket's width.
            assert!(
                lo < v * (1.0 + 1e-12) && v <= hi * (1.0 + 1e-12),
                "{v}: bucket {i}"
            );
            assert!(lo < v && v <= hi || (v - lo).abs() / v < 1e-12 || (v - hi).abs() / v < 1e-12);
            // Each bound itself lands in its own bucket, the next float above it in the next.
            let b = bucket_upper(i, 3);
            assert_eq!(bucket_index(b, 3), i);
            assert_eq!(bucket_index(b.next_up(), 3), i + 1);
            assert_eq!(bucket_index(bucket_upper(i - 1, 3).next_up(), 3), i);
            v *= 1.013;
        }
    }

    #[test]
    fn negative_schemas_merge_powers() {
        // Schema -1: bucket i is (4^(i-1), 4^i].
        assert_eq!(bucket_index(1.0, -1), 0);
        assert_eq!(bucket_index(1.5, -1), 1);
        assert_eq!(bucket_index(4.0, -1), 1);
        assert_eq!(bucket_index(4.5, -1), 2);
        assert_eq!(bucket_index(0.25, -1), -1);
        assert_eq!(bucket_index(0.2, -1), -1);
        assert_eq!(bucket_index(0.0625, -1), -2);
        assert_eq!(bucket_upper(2, -1), 16.0);
    }

    #[test]
    fn edge_values_have_an_index() {
        assert_eq!(bucket_index(0.0, 3), i32::MIN);
        assert_eq!(bucket_index(-1.0, 3), i32::MIN);
        assert_eq!(bucket_index(f64::NAN, 3), i32::MIN);
        assert_eq!(bucket_index(f64::INFINITY, 3), i32::MAX);
        let tiny = bucket_index(5e-324, 3);
        assert!(tiny < -8000, "{tiny}");
        assert_eq!(bucket_index(f64::MAX, 3), 1024 * 8);
        // Out-of-range schemas are clamped.
        assert_eq!(bucket_index(2.0, 20), bucket_index(2.0, 8));
    }

    #[test]
    fn the_builder_groups_ascending_values_and_fills_the_zero_bucket() {
        let mut b = NativeBuilder::new(3, 0.001);
        b.push(0.0, 2);
        b.push(0.001, 1); // at the threshold: zero bucket
        b.push(0.0011, 0); // no count: nothing
        b.push(1.0, 3);
        b.push(0.99, 1); // same bucket as 1.0 (0.917, 1]
        b.push(1.01, 4);
        b.push(1.09, 5); // 1.0905 is the bound of bucket 1
        b.push(1.1, 6);
        let n = b.finish(12.5);
        assert_eq!(n.zero_count, 3);
        assert_eq!(n.count, 22);
        assert_eq!(n.sum, 12.5);
        assert_eq!(n.buckets, vec![(0, 4), (1, 9), (2, 6)]);
        assert_eq!(n.zero_threshold, 0.001);
    }
}
