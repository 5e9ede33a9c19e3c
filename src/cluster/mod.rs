//! Cluster mode: several watchfire instances sharing PostgreSQL.
//!
//! - [`quorum`] — locations and the k-of-n quorum: a pure evaluation from every location's
//!   views to a verdict per target and group, and each location's state (ok, degraded, stale).
//! - [`observe`] — each location's views written to and read from `cluster_observations`,
//!   batched off the probe path.

pub mod observe;
pub mod quorum;
