//! Several watchfire instances as one: leases that give each decision one voice.

pub mod lease;
pub mod voice;

use std::time::Duration;

/// The cluster flags of `watchfire run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `--cluster`: the PostgreSQL URL (the store's database); none outside cluster mode.
    pub url: Option<String>,
    /// `--cluster.id`: this member's identity.
    pub id: String,
    /// `--cluster.replication`: members probing each target.
    pub replication: usize,
    /// `--cluster.lease`: how long a membership or lease lasts without renewal.
    pub lease: Duration,
    /// `--location`: where this member probes from.
    pub location: String,
}
