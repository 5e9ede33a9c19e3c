//! watchfire — a synthetic-monitoring prober that measures honestly, keeps up/down state with
//! fall/rise thresholds and exports Prometheus metrics rendered from compact per-target state.
//!
//! # Layout
//!
//! - [`blackbox`] — blackbox_exporter compatibility: `modules:`, `/probe`, the recent-probe
//!   history (`/`, `/logs`), and the http, tcp, dns, icmp and grpc probers with the exporter's
//!   metric names.
//! - [`cli`] — the command line (clap): `run`, `check`, `probe`, `sim`, `demo`.
//! - [`config`] — YAML files (a file or a directory of `*.yaml`) parsed once into checked types;
//!   every error names file, line and field.
//! - [`diag`] — config diagnostics: [`diag::ConfigError`] (file, line, column, field, message)
//!   and the [`diag::Diagnostics`] collector every config checker records into.
//! - [`schedule`] — the scheduler: planned starts spread across each interval, no overlap, bounded
//!   concurrency, schedule lag. The timing core is pure; the driver sleeps precisely (timerfd).
//! - [`probe`] — one probe: the [`probe::Outcome`] type and the failure-reason enum;
//!   [`probers::native`] is the native HTTP prober on hyper's connection-level client with
//!   phase timings.
//! - [`record`] — per-target recording: HDR histograms (from the send and from the planned start),
//!   Prometheus buckets, counters by result, last-probe gauges.
//! - [`state`] — the pure up/down state machine (`down_after` / `up_after`).
//! - [`memory`] — container memory from cgroups (v1/v2; by path, PID or Docker container),
//!   exported under cAdvisor's names.
//! - [`metrics`] — metric names and the text renderer used at scrape time.
//! - [`runtime`] — the live set of targets: applies a config, keeps unchanged targets' state
//!   across reloads, runs probes and records them.
//! - [`server`] — the HTTP server: `/metrics`, `/api/v1/targets`, `/-/healthy`, `/-/ready`,
//!   `/-/reload`.
//! - [`sim`] — a simulated inference gateway with switchable faults.
//! - [`demo`] — `watchfire demo`: the whole story in under a minute.
//! - [`failover`] — failover groups: pure selection, the controller, hooks, and the failover
//!   proxy that forwards to the active instance.
//! - [`shutdown`] — signal handling (SIGINT/SIGTERM, SIGHUP for reload).
//! - [`telemetry`] — logging setup (`--log-format text|json`, `-v`).
//! - [`verify`] — `watchfire verify` (post-fix stability verdict) and `watchfire impact`.
//!
//! Deviation from DESIGN.md's suggested layout: the target set and its probe loop live in
//! [`runtime`] rather than inside [`schedule`], so that the scheduler stays a pure timing core that
//! can be tested under paused time without any network code.
//!
//! # Platform
//!
//! Linux: the probe threads' timers are timerfds, container memory comes from cgroups, and the
//! failover proxy's listeners share a port with `SO_REUSEPORT`.
//!
//! # Threads
//!
//! The main tokio runtime (multi-threaded) serves HTTP, runs reloads, failover controllers and
//! hooks. Two hot paths run beside it on threads of their own, one per CPU, each a
//! single-threaded runtime: the probes (each thread schedules and runs its own share of the
//! targets, waking on a timerfd) and the failover proxy (one `SO_REUSEPORT` listener each). Work that starts on one
//! of those threads ends there, with no wake-ups across threads; measured in `bench/`, this is
//! what brought the proxy past 80 % of nginx's throughput.
#![forbid(unsafe_code)]

pub mod adhoc;
pub mod blackbox;
pub mod cli;
pub mod config;
pub mod demo;
pub mod diag;
pub mod expo;
pub mod failover;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod probe;
pub mod probers;
pub mod record;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod threads;
pub mod verify;
