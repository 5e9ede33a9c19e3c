//! One probe and its result.
//!
//! A failed probe is data, not an error: every probe ends in an [`Outcome`] whose `result` is
//! `Ok(())` or a [`Reason`] from a fixed set, so labels never carry free text. The human detail
//! (the error chain) travels beside it for logs and the JSON API. The probers that produce
//! outcomes live in [`crate::probers`].

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// Why a probe failed. The set is closed: each value is a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The host name did not resolve.
    Dns,
    /// The connection was refused (nothing listening).
    Refused,
    /// The TCP connect did not finish within the timeout.
    ConnectTimeout,
    /// Another connect error (unreachable network or host, …).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The probe ran out of time after the connection was up.
    Timeout,
    /// The peer reset or closed the connection before a complete answer.
    Reset,
    /// The answer was not valid HTTP.
    Protocol,
    /// The status code was not an accepted one.
    Status,
    /// The body did not match the expected regular expression.
    BodyMismatch,
    /// A JSON field was missing or had another value (or the body was not JSON).
    JsonMismatch,
    /// The answer was correct but slower than `max_latency`.
    TooSlow,
    /// The body was larger than the read cap.
    BodyTooLarge,
    /// A response header matched `fail_if_header_matches` or missed
    /// `fail_if_header_not_matches` (http modules).
    HeaderMismatch,
    /// The answer broke the module's TLS or protocol policy: `fail_if_ssl`, `fail_if_not_ssl`,
    /// `valid_http_versions`, a TLS version outside `min_version` / `max_version`; or the
    /// `/probe` guard refused a connection (`probe_guard:`).
    Policy,
    /// A line or message did not match what the module expects (tcp, unix and websocket
    /// `query_response`, `expect`).
    ExpectMismatch,
    /// The DNS answer's rcode is not one of `valid_rcodes`.
    Rcode,
    /// A DNS answer, authority or additional section failed its `validate_*` rules.
    AnswerMismatch,
    /// The gRPC health service answered, but not `SERVING`.
    NotServing,
    /// The probe could not start: a local problem, not the target's (a file the module names is
    /// missing or unreadable, a raw socket not permitted, an auth token not obtained).
    Setup,
    /// watchfire itself could not run the probe: it is out of file descriptors (`EMFILE`,
    /// `ENFILE`), socket buffers (`ENOBUFS`), ephemeral ports (`EADDRNOTAVAIL` on connect) or
    /// memory (`ENOMEM`). Says nothing about the target: the up/down state machine ignores it.
    Prober,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 21] = [
        Reason::Dns,
        Reason::Refused,
        Reason::ConnectTimeout,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::Reset,
        Reason::Protocol,
        Reason::Status,
        Reason::BodyMismatch,
        Reason::JsonMismatch,
        Reason::TooSlow,
        Reason::BodyTooLarge,
        Reason::HeaderMismatch,
        Reason::Policy,
        Reason::ExpectMismatch,
        Reason::Rcode,
        Reason::AnswerMismatch,
        Reason::NotServing,
        Reason::Setup,
        Reason::Prober,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Refused => "refused",
            Reason::ConnectTimeout => "connect_timeout",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Reset => "reset",
            Reason::Protocol => "protocol",
            Reason::Status => "status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::JsonMismatch => "json_mismatch",
            Reason::TooSlow => "too_slow",
            Reason::BodyTooLarge => "body_too_large",
            Reason::HeaderMismatch => "header_mismatch",
            Reason::Policy => "policy",
            Reason::ExpectMismatch => "expect_mismatch",
            Reason::Rcode => "rcode",
            Reason::AnswerMismatch => "answer_mismatch",
            Reason::NotServing => "not_serving",
            Reason::Setup => "setup",
            Reason::Prober => "prober",
        }
    }

    /// True when the failure is watchfire's own ([`Reason::Prober`]), not the target's: it
    /// counts toward neither up nor down.
    pub fn is_local(self) -> bool {
        self == Reason::Prober
    }

    /// Index into per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: why (a label value) and what happened (one line, for people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// Why, from the fixed set.
    pub reason: Reason,
    /// One line of detail: the error chain, the mismatch.
    pub detail: String,
}

impl Fail {
    /// A failure for `reason`, with `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Fail {
        Fail {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// Time spent in each phase of a probe (zero for a phase not reached or not needed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    /// Name resolution.
    pub resolve: Duration,
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake.
    pub tls: Duration,
    /// Request written → first response byte.
    pub processing: Duration,
    /// First response byte → body read.
    pub transfer: Duration,
}

impl Phases {
    /// Phase names in order, as label values (the same as blackbox_exporter's).
    pub const NAMES: [&'static str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

    /// Durations in the order of [`Phases::NAMES`].
    pub fn as_array(&self) -> [Duration; 5] {
        [
            self.resolve,
            self.connect,
            self.tls,
            self.processing,
            self.transfer,
        ]
    }
}

/// The result of one probe.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the scheduler planned the probe to start.
    pub planned: Instant,
    /// When it actually started.
    pub started: Instant,
    /// When it ended (answer read, or failure).
    pub finished: Instant,
    /// Phase timings.
    pub phases: Phases,
    /// HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// Body bytes read.
    pub body_bytes: u64,
    /// `Ok(())` or why it failed.
    pub result: Result<(), Reason>,
    /// Human detail of a failure (error chain, mismatch), for logs and the API; never a label.
    pub detail: Option<String>,
    /// True when the probe reused a kept-alive connection.
    pub reused_connection: bool,
}

impl Outcome {
    /// Duration measured from the actual start.
    pub fn latency(&self) -> Duration {
        self.finished.saturating_duration_since(self.started)
    }

    /// Duration measured from the planned start: the coordinated-omission-corrected view, which
    /// includes any delay of the prober itself. A probe started ahead of its planned start
    /// ([`Sleeper::lead`](crate::schedule::Sleeper::lead)) is measured from its actual start:
    /// never less than [`Outcome::latency`].
    pub fn latency_from_planned(&self) -> Duration {
        self.finished
            .saturating_duration_since(self.planned.min(self.started))
    }

    /// Actual start − planned start; zero for a probe started ahead of its planned start.
    pub fn schedule_lag(&self) -> Duration {
        self.started.saturating_duration_since(self.planned)
    }

    /// True when the probe succeeded.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(planned: Instant, started: Instant, finished: Instant) -> Outcome {
        Outcome {
            planned,
            started,
            finished,
            phases: Phases::default(),
            status: Some(200),
            body_bytes: 3,
            result: Ok(()),
            detail: None,
            reused_connection: false,
        }
    }

    #[test]
    fn a_probe_started_ahead_of_its_plan_has_no_lag_and_is_measured_from_its_start() {
        let t = Instant::now();
        let us = Duration::from_micros;
        let early = outcome(t + us(700), t, t + us(500));
        assert_eq!(early.schedule_lag(), Duration::ZERO);
        assert_eq!(early.latency(), us(500));
        assert_eq!(early.latency_from_planned(), us(500));
        let late = outcome(t, t + us(300), t + us(800));
        assert_eq!(late.schedule_lag(), us(300));
        assert_eq!(late.latency(), us(500));
        assert_eq!(late.latency_from_planned(), us(800));
    }
}
