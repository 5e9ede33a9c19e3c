//! The delivery workers' counters and their metric families (`watchfire_notify_*`), written
//! through the one exposition writer.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::expo::{catalog, LabelSet, Writer};

/// Upper bounds (seconds) of the `watchfire_notify_delivery_seconds` buckets: from a message
/// delivered at once to one delivered after an hour of retries.
pub const DELIVERY_BOUNDS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// One receiver's figures.
#[derive(Debug, Default, Clone)]
struct Figures {
    /// Delivered messages by kind.
    sent: BTreeMap<String, u64>,
    failed: u64,
    retries: u64,
    /// Pending rows, as last read from the store.
    queue: u64,
    /// Due → delivered: a count per [`DELIVERY_BOUNDS`] bucket plus one, and the sum.
    latency: [u64; DELIVERY_BOUNDS.len() + 1],
    latency_sum: f64,
}

/// Every receiver's figures since start. Receivers removed by a reload keep theirs (counters
/// never go back).
#[derive(Debug, Default)]
pub struct Metrics {
    by: Mutex<BTreeMap<String, Figures>>,
}

impl Metrics {
    fn with(&self, receiver: &str, f: impl FnOnce(&mut Figures)) {
        let mut by = self.by.lock().expect("notify metrics lock poisoned");
        match by.get_mut(receiver) {
            Some(x) => f(x),
            None => f(by.entry(receiver.to_string()).or_default()),
        }
    }

    /// Makes `receiver`'s series exist (at zero), so that the first failure is an increase.
    pub fn ensure(&self, receiver: &str) {
        self.with(receiver, |_| {});
    }

    /// A message of `kind` delivered to `receiver`, `secs` after it was due.
    pub fn sent(&self, receiver: &str, kind: &str, secs: f64) {
        let secs = secs.max(0.0);
        self.with(receiver, |f| {
            match f.sent.get_mut(kind) {
                Some(n) => *n += 1,
                None => {
                    f.sent.insert(kind.to_string(), 1);
                }
            }
            let i = DELIVERY_BOUNDS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(DELIVERY_BOUNDS.len());
            f.latency[i] += 1;
            f.latency_sum += secs;
        });
    }

    /// A message to `receiver` given up.
    pub fn failed(&self, receiver: &str) {
        self.with(receiver, |f| f.failed += 1);
    }

    /// A failed attempt to `receiver` that will be retried.
    pub fn retried(&self, receiver: &str) {
        self.with(receiver, |f| f.retries += 1);
    }

    /// The pending rows per receiver, as the store counts them (receivers not listed have
    /// none).
    pub fn set_queue(&self, pending: &[(String, u64)]) {
        let mut by = self.by.lock().expect("notify metrics lock poisoned");
        for f in by.values_mut() {
            f.queue = 0;
        }
        for (r, n) in pending {
            by.entry(r.clone()).or_default().queue = *n;
        }
    }

    /// Delivered messages to `receiver` of `kind` so far.
    pub fn sent_count(&self, receiver: &str, kind: &str) -> u64 {
        let by = self.by.lock().expect("notify metrics lock poisoned");
        by.get(receiver)
            .and_then(|f| f.sent.get(kind).copied())
            .unwrap_or(0)
    }

    /// Writes the `watchfire_notify_*` families.
    pub fn render(&self, w: &mut Writer<'_>) {
        let by = self
            .by
            .lock()
            .expect("notify metrics lock poisoned")
            .clone();
        w.header(&catalog::NOTIFY_SENT);
        for (r, f) in &by {
            for (kind, n) in &f.sent {
                w.sample(
                    &catalog::NOTIFY_SENT,
                    &[("receiver", r), ("kind", kind)],
                    *n,
                );
            }
        }
        w.header(&catalog::NOTIFY_FAILED);
        for (r, f) in &by {
            w.sample(&catalog::NOTIFY_FAILED, &[("receiver", r)], f.failed);
        }
        w.header(&catalog::NOTIFY_RETRIES);
        for (r, f) in &by {
            w.sample(&catalog::NOTIFY_RETRIES, &[("receiver", r)], f.retries);
        }
        w.header(&catalog::NOTIFY_QUEUE);
        for (r, f) in &by {
            w.sample(&catalog::NOTIFY_QUEUE, &[("receiver", r)], f.queue);
        }
        w.header(&catalog::NOTIFY_DELIVERY);
        for (r, f) in &by {
            w.histogram(
                &catalog::NOTIFY_DELIVERY,
                &LabelSet::of(&[("receiver", r)]),
                &DELIVERY_BOUNDS,
                &f.latency,
                f.latency_sum,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_per_receiver_with_zeroes_for_the_quiet_ones() {
        let m = Metrics::default();
        m.ensure("quiet");
        m.sent("oncall", "declared", 0.05);
        m.sent("oncall", "declared", 75.0);
        m.sent("oncall", "update", 4000.0);
        m.retried("oncall");
        m.failed("oncall");
        m.set_queue(&[("oncall".into(), 3)]);
        let mut s = String::new();
        m.render(&mut crate::expo::Writer::new(&mut s));
        for line in [
            "watchfire_notify_sent_total{receiver=\"oncall\",kind=\"declared\"} 2",
            "watchfire_notify_sent_total{receiver=\"oncall\",kind=\"update\"} 1",
            "watchfire_notify_failed_total{receiver=\"quiet\"} 0",
            "watchfire_notify_failed_total{receiver=\"oncall\"} 1",
            "watchfire_notify_retries_total{receiver=\"oncall\"} 1",
            "watchfire_notify_queue{receiver=\"oncall\"} 3",
            "watchfire_notify_queue{receiver=\"quiet\"} 0",
            "watchfire_notify_delivery_seconds_bucket{receiver=\"oncall\",le=\"0.1\"} 1",
            "watchfire_notify_delivery_seconds_bucket{receiver=\"oncall\",le=\"60\"} 1",
            "watchfire_notify_delivery_seconds_bucket{receiver=\"oncall\",le=\"120\"} 2",
            "watchfire_notify_delivery_seconds_bucket{receiver=\"oncall\",le=\"+Inf\"} 3",
            "watchfire_notify_delivery_seconds_count{receiver=\"oncall\"} 3",
        ] {
            assert!(s.lines().any(|l| l == line), "{line} not in\n{s}");
        }
        assert_eq!(m.sent_count("oncall", "declared"), 2);
        m.set_queue(&[]);
        let mut s = String::new();
        m.render(&mut crate::expo::Writer::new(&mut s));
        assert!(s.contains("watchfire_notify_queue{receiver=\"oncall\"} 0"));
    }
}
