//! The final answer of an `http` probe: the status and header checks, the body read through
//! the decompression into a counting sink and its regexp and CEL checks, the version and TLS
//! policy — every check recording its facts, the first failure kept as the probe's reason.

use http::header;
use http_body_util::BodyExt;
use tokio::time::timeout_at;

use super::super::http::HttpProbe;
use super::super::http_body::{self, check_body_regexps, check_cel, check_headers, Decoder, Sink};
use super::super::{Level, Log};
use super::{Answer, Facts, Hop, TRANSFER};
use crate::net::driver::Driver;
use crate::net::fail_from;
use crate::probe::{Fail, Reason};
use crate::probers::Ctx;

/// The first failure of a probe's checks, kept while the later checks still record their facts
/// (blackbox reports every family whatever failed first).
#[derive(Default)]
struct Verdict(Option<Fail>);

impl Verdict {
    fn ok(&self) -> bool {
        self.0.is_none()
    }

    /// Records `r`'s failure unless an earlier one is kept; returns whether `r` passed.
    fn check(&mut self, r: Result<(), Fail>) -> bool {
        match r {
            Ok(()) => true,
            Err(f) => {
                self.0.get_or_insert(f);
                false
            }
        }
    }

    /// Records a failure for `reason`, logging `detail`.
    fn fail(&mut self, log: &mut Log, reason: Reason, detail: String) {
        log.line(Level::Error, &detail);
        self.0.get_or_insert(Fail::new(reason, detail));
    }

    fn into_result(self) -> Result<(), Fail> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The status check: `accept_any_response`, `valid_status_codes`, or any 2xx.
fn check_status(p: &HttpProbe, status: u16) -> Result<(), Fail> {
    let detail = if p.accept_any_response {
        return Ok(());
    } else if p.valid_status_codes.is_empty() {
        if (200..300).contains(&status) {
            return Ok(());
        }
        format!("Invalid HTTP response status code, wanted 2xx status_code={status}")
    } else {
        if p.valid_status_codes.contains(&i64::from(status)) {
            return Ok(());
        }
        format!(
            "Invalid HTTP response status code status_code={status} valid_status_codes={:?}",
            p.valid_status_codes
        )
    };
    Err(Fail::new(Reason::Status, detail))
}

/// The final response: status, header checks, body (decompressed, counted, checked), version,
/// TLS.
pub(super) async fn finish(
    p: &HttpProbe,
    ctx: &Ctx,
    r: &mut Facts,
    log: &mut Log,
    hop: &Hop,
    answer: Answer,
    errored: bool,
) -> Result<(), Fail> {
    let Answer {
        resp,
        mut conn,
        tls,
        first_byte,
        _sender,
    } = answer;
    let status = resp.status().as_u16();
    plog!(log, Debug, "Received HTTP response status_code={status}");
    r.status = status;
    r.content_length = http_body::content_length(&hop.method, status, resp.headers());
    let mut verdict = Verdict::default();
    if let Err(f) = check_status(p, status) {
        verdict.fail(log, f.reason, f.detail);
    }
    if verdict.ok() && (!p.header_fail.is_empty() || !p.header_need.is_empty()) {
        r.regex_failed = !verdict.check(check_headers(p, resp.headers(), log));
    }
    let (version, proto) = match resp.version() {
        http::Version::HTTP_09 => (0.9, "HTTP/0.9"),
        http::Version::HTTP_10 => (1.0, "HTTP/1.0"),
        http::Version::HTTP_2 => (2.0, "HTTP/2.0"),
        http::Version::HTTP_3 => (3.0, "HTTP/3.0"),
        _ => (1.1, "HTTP/1.1"),
    };
    let last_modified = resp
        .headers()
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_body::parse_http_date);
    if !errored {
        let keep = verdict.ok() && p.needs_body();
        read_body(p, ctx, r, log, resp, &mut conn, keep, &mut verdict).await;
    }
    r.add(TRANSFER, first_byte.elapsed());
    r.last_modified = last_modified;
    r.version = version;
    if !p.valid_http_versions.is_empty() && !p.valid_http_versions.iter().any(|v| v == proto) {
        let detail = format!("Invalid HTTP version number version={proto}");
        verdict.fail(log, Reason::Policy, detail);
    }
    if let Some(h) = tls {
        r.ssl = true;
        r.tls = Some((h, !p.tls_insecure));
        if p.fail_if_ssl {
            verdict.fail(log, Reason::Policy, "Final request was over SSL".into());
        }
    } else if p.fail_if_not_ssl && verdict.ok() {
        verdict.fail(log, Reason::Policy, "Final request was not over SSL".into());
    }
    verdict.into_result()
}

/// Reads the final response's body through the decompression into a counting sink (kept when
/// `keep`), then runs the body regexps and CEL checks as Go does: a read error fails those
/// checks (and sets their flag) before it fails the probe itself.
#[allow(clippy::too_many_arguments)]
async fn read_body(
    p: &HttpProbe,
    ctx: &Ctx,
    r: &mut Facts,
    log: &mut Log,
    resp: http::Response<hyper::body::Incoming>,
    conn: &mut Driver<'_>,
    keep: bool,
    verdict: &mut Verdict,
) {
    let mut sink = Sink {
        limit: p.body_size_limit,
        keep,
        ..Sink::default()
    };
    let mut decoder = Decoder::new(p.compression, &mut sink);
    let mut body = resp.into_body();
    let read = async {
        loop {
            match conn.drive(body.frame()).await {
                Err(e) => return Err(fail_from(Reason::Reset, "connection", &e)),
                Ok(None) => {
                    return decoder
                        .finish()
                        .map_err(|e| Fail::new(Reason::Protocol, e.to_string()))
                }
                Ok(Some(Err(e))) => return Err(fail_from(Reason::Reset, "reading the body", &e)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        decoder
                            .write(&data)
                            .map_err(|e| Fail::new(Reason::Protocol, e.to_string()))?;
                    }
                }
            }
        }
    };
    let read_err = match timeout_at(ctx.deadline, read).await {
        Err(_) => Some(Fail::new(Reason::Timeout, "context deadline exceeded")),
        Ok(Err(f)) => Some(f),
        Ok(Ok(())) => None,
    };
    let init_failed = decoder.init_failed;
    drop(decoder);
    let read_err = read_err.map(|f| {
        if sink.too_large {
            Fail::new(Reason::BodyTooLarge, f.detail)
        } else {
            f
        }
    });
    if init_failed {
        let detail = "Failed to get decompressor for HTTP response body".to_string();
        verdict.fail(log, Reason::Protocol, detail);
    }
    let read_failed = || {
        let f = read_err.clone().expect("called only after a read error");
        Err(Fail::new(
            f.reason,
            format!("Failed to read HTTP response body: {}", f.detail),
        ))
    };
    if verdict.ok() && (!p.body_fail.is_empty() || !p.body_need.is_empty()) {
        let checked = match &read_err {
            Some(_) => read_failed(),
            None => check_body_regexps(p, &sink.buf, log),
        };
        r.regex_failed = !verdict.check(checked);
    }
    if verdict.ok() && p.has_cel() {
        let checked = match &read_err {
            Some(_) => read_failed(),
            None => check_cel(p, &sink.buf, log),
        };
        r.cel_failed = Some(!verdict.check(checked));
    }
    if let Some(f) = &read_err {
        let detail = format!("Failed to read HTTP response body: {}", f.detail);
        verdict.fail(log, f.reason, detail);
    }
    r.body_len = sink.count;
}
