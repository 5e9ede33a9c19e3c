//! blackbox_exporter compatibility: `modules:` from a blackbox.yml, the `/probe` endpoint,
//! `/config`, and the recent-probe history. The probers themselves are in [`crate::probers`].
//!
//! # Layout
//!
//! - `config` — the `modules:` section (blackbox's field names, unknown fields rejected).
//! - `endpoint` — `/probe`, `/config`: timeout rule, module lookup, `probe_success`,
//!   `probe_duration_seconds`, `debug=true`.
//! - `history` — the recent `/probe` results (`--history.limit`): the `/` page and `/logs?id=`.

pub mod config;
pub mod endpoint;
pub mod history;
