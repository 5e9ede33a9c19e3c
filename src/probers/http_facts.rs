//! What an `http` probe found ([`Facts`]), and the blackbox families rendered from it.

use std::time::Duration;

use super::{tls_info, Output, Resolved, View};
use crate::probe::Phases;

pub(super) const RESOLVE: usize = 0;
pub(super) const CONNECT: usize = 1;
pub(super) const TLS: usize = 2;
pub(super) const PROCESSING: usize = 3;
pub(super) const TRANSFER: usize = 4;
const PHASES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

/// What an `http` probe found, filled in as it goes; the blackbox families are rendered from it.
///
/// Phases are blackbox's and watchfire's alike, summed over the hops (the first request and
/// each redirect followed): resolve = name lookup; connect = TCP connect (a proxy's `CONNECT`
/// included); tls = TLS handshake; processing = connection ready → first response byte (the
/// request written included); transfer = first response byte → body read.
#[derive(Debug, Default)]
pub struct Facts {
    /// The first hop's name lookup (none with a proxy that resolves).
    pub resolved: Resolved,
    /// Phase sums in seconds; a phase blackbox never created stays `None` (no sample).
    pub phases: [Option<f64>; 5],
    /// The final response's status (0 without one).
    pub status: u16,
    /// Go's `resp.ContentLength` (-1 when unknown).
    pub content_length: i64,
    /// Body bytes read, after decompression.
    pub body_len: u64,
    /// Redirects seen.
    pub redirects: usize,
    /// The final request went over TLS.
    pub ssl: bool,
    /// The final response's HTTP version (0 without one).
    pub version: f64,
    /// A header or body regexp failed the probe.
    pub regex_failed: bool,
    /// `Some(failed)` when the module has a CEL check.
    pub cel_failed: Option<bool>,
    /// `Last-Modified`, in Unix seconds.
    pub last_modified: Option<i64>,
    /// The final hop's TLS handshake, and whether its chain was verified.
    pub tls: Option<(tls_info::Handshake, bool)>,
}

impl Facts {
    pub(super) fn add(&mut self, phase: usize, d: Duration) {
        let v = self.phases[phase].get_or_insert(0.0);
        *v += d.as_secs_f64();
    }

    fn phase(&self, phase: usize) -> Duration {
        Duration::try_from_secs_f64(self.phases[phase].unwrap_or(0.0)).unwrap_or_default()
    }
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        self.resolved.render(out);
        for (i, name) in PHASES.iter().enumerate() {
            if let Some(v) = self.phases[i] {
                out.gauge_with(
                    "probe_http_duration_seconds",
                    "Duration of http request by phase, summed over all redirects",
                    &[("phase", name)],
                    v,
                );
            }
        }
        out.gauge(
            "probe_http_content_length",
            "Length of http content response",
            self.content_length as f64,
        );
        out.gauge(
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            self.body_len as f64,
        );
        out.gauge(
            "probe_http_redirects",
            "The number of redirects",
            self.redirects as f64,
        );
        out.gauge(
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            if self.ssl { 1.0 } else { 0.0 },
        );
        out.gauge(
            "probe_http_status_code",
            "Response HTTP status code",
            f64::from(self.status),
        );
        out.gauge(
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            self.version,
        );
        out.gauge(
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            if self.regex_failed { 1.0 } else { 0.0 },
        );
        // Upstream (0.27+) reports this only for modules with a CEL check; 0.23 has no CEL.
        if let Some(failed) = self.cel_failed {
            out.gauge(
                "probe_failed_due_to_cel",
                "Indicates if probe failed due to CEL expression not matching",
                if failed { 1.0 } else { 0.0 },
            );
        }
        if let Some(t) = self.last_modified {
            out.gauge(
                "probe_http_last_modified_timestamp_seconds",
                "Returns the Last-Modified HTTP response header in unixtime",
                t as f64,
            );
        }
        if let Some((h, verified)) = &self.tls {
            h.report(out, *verified, true);
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.phase(RESOLVE),
            connect: self.phase(CONNECT),
            tls: self.phase(TLS),
            processing: self.phase(PROCESSING),
            transfer: self.phase(TRANSFER),
        }
    }

    fn status(&self) -> Option<u16> {
        (self.status > 0).then_some(self.status)
    }

    fn bytes(&self) -> u64 {
        self.body_len
    }
}
