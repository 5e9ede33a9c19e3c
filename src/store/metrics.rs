//! The store's metric families, in the exposition catalog's style.

use super::{StoreStatus, BATCH_BOUNDS};
use crate::expo::{catalog, LabelSet, Writer};

/// Writes the `watchfire_store_*` families: `status`, and the batch durations' bucket
/// `counts` (one per [`BATCH_BOUNDS`] bound plus `+Inf`) and `sum`.
pub fn render(status: &StoreStatus, counts: &[u64], sum: f64, w: &mut Writer<'_>) {
    let backend = [("backend", status.backend)];
    w.header(&catalog::STORE_UP);
    w.sample(&catalog::STORE_UP, &backend, status.healthy);
    w.header(&catalog::STORE_WRITES);
    w.sample(&catalog::STORE_WRITES, &[], status.writes);
    w.header(&catalog::STORE_DROPPED);
    w.sample(&catalog::STORE_DROPPED, &[], status.dropped);
    w.header(&catalog::STORE_WRITE_ERRORS);
    w.sample(&catalog::STORE_WRITE_ERRORS, &[], status.write_errors);
    w.header(&catalog::STORE_QUEUE);
    w.sample(&catalog::STORE_QUEUE, &[], status.queue);
    w.header(&catalog::STORE_BATCH);
    w.histogram(
        &catalog::STORE_BATCH,
        &LabelSet::new(),
        &BATCH_BOUNDS,
        counts,
        sum,
    );
}
