//! watchfire — a synthetic-monitoring prober that measures honestly, keeps up/down state with
//! fall/rise thresholds and exports Prometheus metrics rendered from compact per-target state.
//!
//! # Layout, by layer
//!
//! Each layer imports only from the layers below it; `tests/layers.rs` fails on an import that
//! points up or on a cycle between modules.
//!
//! - **core** (imports nothing of the crate above it)
//!   - [`probe`] — the result of any probe: [`probe::Outcome`], [`probe::Fail`], the closed set of
//!     failure reasons [`probe::Reason`] and [`probe::Phases`] (one definition per phase).
//!   - [`state`] — the pure up/down state machine (`down_after` / `up_after`) and its transition
//!     events.
//!   - [`record`] — per-target recording: HDR histograms (from the send and from the planned
//!     start), Prometheus buckets, counters by result, last-probe gauges.
//!   - [`schedule`] — planned starts spread across each interval, no overlap, bounded
//!     concurrency, schedule lag. The timing core is pure; the driver sleeps precisely
//!     (timerfd).
//!   - [`expo`] — the one Prometheus text writer (labels escaped by construction) and the
//!     metric-name catalog.
//!   - [`diag`] — config diagnostics: [`diag::ConfigError`] (file, line, column, field,
//!     message) and the [`diag::Diagnostics`] collector every config checker records into.
//!   - [`threads`] — the per-CPU single-threaded runtimes of the probe and proxy threads.
//!   - [`resources`] — the open-file limit raised at start and the probes in flight it allows.
//!   - [`redact`] — the one redaction rule (URL passwords and secret query values, header
//!     values, [`redact::Secret`]) for every page, log line and error message.
//!   - [`limits`] — bounds on untrusted input: capped file reads, and regular and CEL expressions
//!     measured (length, nesting) before they are parsed.
//! - **net** — [`net`]: error classification by walking `source()`, the detail chain, one
//!   socket setup ([`net::connect`]), one resolution with an address-family policy
//!   ([`net::resolve()`]), the `/probe` guard ([`net::guard`]), and [`net::tls`] (client
//!   configuration, the one server-name rule).
//! - **probers** — [`probers`]: every probe kind, each with its options compiled at load, a
//!   `probe()` that fills in typed facts and returns `Result<(), Fail>`, and a view that renders
//!   blackbox_exporter's families from those facts (http, tcp, dns, icmp, grpc), plus watchfire's
//!   own HTTP prober ([`probers::native`]).
//! - **features**
//!   - [`config`] — YAML files (a file or a directory of `*.yaml`) parsed once into checked
//!     types; every error names file, line and field.
//!   - [`blackbox`] — blackbox_exporter compatibility: `modules:`, `/probe`, `/config`, the
//!     recent-probe history (`/`, `/logs`); `endpoint::run` is what `/probe` and scheduled module
//!     targets both run.
//!   - [`failover`] — failover groups over a small `Instance` trait: pure selection, the
//!     controller, hooks, and the proxy that forwards to the active instance.
//!   - [`cluster`] — several instances as one, in PostgreSQL: membership and rendezvous
//!     sharding with replication, leases with fencing so each failover and notification decision
//!     has one voice, and locations with a k-of-n quorum.
//!   - [`memory`] — container memory from cgroups (v1/v2; by path, PID or Docker container),
//!     exported under cAdvisor's names.
//!   - [`incident`] — incidents (one per component outage, with a timeline and the runbook's
//!     figures at resolution) and maintenance windows (config and API, recurring, time zones).
//!   - [`store`] — what watchfire remembers across restarts (state, transitions, incidents,
//!     maintenance, rollups) behind one interface; writes queued off the probe path.
//!   - [`web`] — `--web.config.file` (exporter-toolkit's format): TLS, basic-auth users and
//!     response headers for every listener (the server's, the failover proxy's if wired).
//! - **runtime**
//!   - [`runtime`] — the live set of targets: applies a config, keeps unchanged targets' state
//!     across reloads, runs probes and records them.
//!   - [`metrics`] — watchfire's own series, rendered from the targets' state at scrape time.
//! - **app**
//!   - [`cli`] — the command line (clap): `run`, `check`, `probe`, `verify`, `impact`, `sim`,
//!     `demo`.
//!   - [`adhoc`] — the one-off probe of `watchfire probe` as plain data, and the prober of one
//!     target (native or module) that `probe` and `verify` run outside the scheduler.
//!   - [`server`] — the HTTP server: `/metrics` (composed from each subsystem's collector),
//!     `/probe`, `/api/v1/targets`, `/-/healthy`, `/-/ready`, `/-/reload`; admission by class
//!     and a connection cap that closes idle connections first, the web config on every
//!     listener, intent for state-changing requests, the route prefix.
//!   - [`status`] — the status page (`/status`, one page per incident), Statuspage-shaped
//!     JSON, the Atom feed and badges, rendered from one view model built with a fixed number
//!     of store queries.
//!   - [`verify`] — `watchfire verify` (post-fix stability verdict) and `watchfire impact`.
//!   - [`report`] — `watchfire report`: uptime, latency, incidents and error budget over a
//!     range, from the store's rollups.
//!   - [`demo`] — `watchfire demo`: the whole story in under a minute.
//!   - [`sim`] — a simulated inference gateway with switchable faults.
//!   - [`shutdown`] — signal handling (SIGINT/SIGTERM, SIGHUP for reload).
//!   - [`telemetry`] — logging setup (`--log-format text|json`, `-v`).
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
pub mod cluster;
pub mod config;
pub mod demo;
pub mod diag;
pub mod expo;
pub mod failover;
pub mod incident;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod probe;
pub mod probers;
pub mod record;
pub mod redact;
pub mod report;
pub mod resources;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod threads;
pub mod verify;
pub mod web;
