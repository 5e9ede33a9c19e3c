//! Response-side helpers of the `http` prober, with blackbox's (Go's) semantics: the body read
//! through the configured decompression into a counting, size-limited sink; `Content-Length`
//! as Go's `resp.ContentLength`; `Last-Modified` as Go's `http.ParseTime`; the header and body
//! regexps and the CEL checks over the JSON body.

use std::io::{self, Write};

use http::{HeaderMap, Method};

use super::http::{Cel, Compression, HttpProbe};
use super::{Level, Log};
use crate::probe::{Fail, Reason};

/// Where the (decompressed) body goes: counted, capped, kept when a check needs it.
#[derive(Debug, Default)]
pub struct Sink {
    /// Bytes accepted (Go's `byteCounter.n`).
    pub count: u64,
    /// `body_size_limit`.
    pub limit: Option<u64>,
    /// Keep the bytes in `buf`.
    pub keep: bool,
    /// The body, when kept.
    pub buf: Vec<u8>,
    /// The limit was passed.
    pub too_large: bool,
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut take = data.len();
        if let Some(limit) = self.limit {
            let room = limit.saturating_sub(self.count) as usize;
            if take > room {
                // Go's MaxBytesReader hands out exactly the limit, then fails.
                take = room;
                self.too_large = true;
            }
        }
        self.count += take as u64;
        if self.keep {
            self.buf.extend_from_slice(&data[..take]);
        }
        if self.too_large {
            return Err(io::Error::other("http: response body too large"));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The buffer Go's `gzip.NewReader` reads through (`bufio.NewReader`).
const GO_BUFIO_SIZE: usize = 4096;

/// The body decoder in front of a [`Sink`].
pub struct Decoder<'a> {
    kind: Kind<'a>,
    /// Go's gzip reader checks the header when it is created; until 10 bytes arrived they wait
    /// here.
    gzip_head: Option<Vec<u8>>,
    /// The decompressor could not be set up (bad gzip header): like blackbox, the probe fails
    /// and the raw body is counted instead, less what Go's reader swallowed (up to 4 KiB).
    pub init_failed: bool,
}

enum Kind<'a> {
    Identity(&'a mut Sink),
    /// gzip, until its header has been seen.
    GzipHead(&'a mut Sink),
    Gzip(flate2::write::MultiGzDecoder<&'a mut Sink>),
    Deflate(flate2::write::DeflateDecoder<&'a mut Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<&'a mut Sink>>),
    /// Transient, while switching kinds.
    Gone,
}

impl<'a> Decoder<'a> {
    /// A decoder for `compression` writing into `sink`.
    pub fn new(compression: Compression, sink: &'a mut Sink) -> Decoder<'a> {
        let (kind, gzip_head) = match compression {
            Compression::Identity => (Kind::Identity(sink), None),
            Compression::Gzip => (Kind::GzipHead(sink), Some(Vec::with_capacity(10))),
            Compression::Deflate => (
                Kind::Deflate(flate2::write::DeflateDecoder::new(sink)),
                None,
            ),
            Compression::Brotli => (
                Kind::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                    sink, 4096,
                ))),
                None,
            ),
        };
        Decoder {
            kind,
            gzip_head,
            init_failed: false,
        }
    }

    /// Feeds raw body bytes.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(head) = &mut self.gzip_head {
            head.extend_from_slice(data);
            if head.len() < 10 {
                return Ok(());
            }
            let head = self.gzip_head.take().expect("checked above");
            let valid = head[0] == 0x1f && head[1] == 0x8b && head[2] == 8;
            self.start_gzip(valid);
            if !valid {
                // Go's gzip reader read the body through a 4 KiB bufio buffer while looking for
                // the header; blackbox counts only what is left after it.
                return self.write_now(&head[head.len().min(GO_BUFIO_SIZE)..]);
            }
            return self.write_now(&head);
        }
        self.write_now(data)
    }

    fn write_now(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Identity(s) | Kind::GzipHead(s) => s.write_all(data),
            Kind::Gzip(d) => d.write_all(data),
            Kind::Deflate(d) => d.write_all(data),
            Kind::Brotli(d) => d.write_all(data),
            Kind::Gone => Ok(()),
        }
    }

    /// The gzip header has been seen: decode, or (not gzip) count the raw bytes.
    fn start_gzip(&mut self, valid: bool) {
        self.init_failed = !valid;
        self.kind = match std::mem::replace(&mut self.kind, Kind::Gone) {
            Kind::GzipHead(s) if valid => Kind::Gzip(flate2::write::MultiGzDecoder::new(s)),
            Kind::GzipHead(s) => Kind::Identity(s),
            other => other,
        };
    }

    /// The body ended: flushes the decoder. A gzip body shorter than its header fails the way
    /// Go's `gzip.NewReader` does.
    pub fn finish(&mut self) -> io::Result<()> {
        if self.gzip_head.take().is_some() {
            // Shorter than a gzip header: Go's reader swallowed it all and failed.
            self.start_gzip(false);
            return Ok(());
        }
        match &mut self.kind {
            Kind::Identity(_) | Kind::GzipHead(_) | Kind::Gone => Ok(()),
            Kind::Gzip(d) => d.try_finish(),
            Kind::Deflate(d) => d.try_finish(),
            Kind::Brotli(d) => d.close(),
        }
    }
}

/// Go's `resp.ContentLength`: 0 when no body is allowed, -1 when the length is not declared
/// (chunked, or read until close), the declared length otherwise.
pub fn content_length(method: &Method, status: u16, headers: &HeaderMap) -> i64 {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    if *method == Method::HEAD {
        return declared.unwrap_or(-1);
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return 0;
    }
    let chunked = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("chunked"))
        });
    if chunked {
        return -1;
    }
    declared.unwrap_or(-1)
}

/// Go's `http.ParseTime`: RFC 1123 with `GMT`, RFC 850, or ANSI C `asctime`; Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1);
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let hms = |t: &str| -> Option<(u32, u32, u32)> {
        let mut it = t.split(':');
        let h = num(it.next()?, 2)?;
        let m = num(it.next()?, 2)?;
        let s = num(it.next()?, 2)?;
        (it.next().is_none() && h < 24 && m < 60 && s < 61).then_some((h, m, s))
    };
    let parts: Vec<&str> = s.split(' ').collect();
    let (y, mo, d, (h, mi, se)) = match parts.as_slice() {
        // Mon, 02 Jan 2006 15:04:05 GMT
        [wd, d, mo, y, t, "GMT"] if wd.ends_with(',') => {
            (num(y, 4)? as i64, month(mo)?, num(d, 2)?, hms(t)?)
        }
        // Monday, 02-Jan-06 15:04:05 MST
        [wd, date, t, zone]
            if wd.ends_with(',') && zone.chars().all(|c| c.is_ascii_uppercase()) =>
        {
            let mut it = date.split('-');
            let d = num(it.next()?, 2)?;
            let mo = month(it.next()?)?;
            let yy = num(it.next()?, 2)? as i64;
            (if yy >= 69 { 1900 + yy } else { 2000 + yy }, mo, d, hms(t)?)
        }
        // Mon Jan _2 15:04:05 2006 (the day padded with a space)
        [_, mo, "", d, t, y] => (num(y, 4)? as i64, month(mo)?, num(d, 1)?, hms(t)?),
        [_, mo, d, t, y] if d.len() == 2 => (num(y, 4)? as i64, month(mo)?, num(d, 2)?, hms(t)?),
        _ => return None,
    };
    if d == 0 || d > 31 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The JSON body as CEL sees it in blackbox: Go's `json.Unmarshal` into `any`, so every
/// number is a double.
pub fn json_to_cel(v: &serde_json::Value) -> cel::Value {
    use std::sync::Arc;
    match v {
        serde_json::Value::Null => cel::Value::Null,
        serde_json::Value::Bool(b) => cel::Value::Bool(*b),
        serde_json::Value::Number(n) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => {
            cel::Value::List(Arc::new(a.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(m) => {
            let map: std::collections::HashMap<String, cel::Value> =
                m.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// Evaluates `cel` over the body; `Ok(matched)` or why it could not be evaluated.
pub fn eval_cel(cel: &Cel, body: &cel::Value) -> Result<bool, String> {
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("body", body.clone());
    match cel.program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "CEL evaluation result is not a boolean ({:?})",
            other.type_of()
        )),
        Err(e) => Err(format!("Error evaluating CEL expression: {e}")),
    }
}

/// Logs `detail` and returns it as a failure for `reason`.
fn failed(log: &mut Log, reason: Reason, detail: String) -> Result<(), Fail> {
    log.line(Level::Error, &detail);
    Err(Fail::new(reason, detail))
}

/// The values of `name` that are text.
fn header_values<'h>(headers: &'h http::HeaderMap, name: &http::HeaderName) -> Vec<&'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// `fail_if_header_matches` / `fail_if_header_not_matches`, as blackbox checks them; a failure
/// is [`Reason::HeaderMismatch`].
pub(super) fn check_headers(
    p: &HttpProbe,
    headers: &http::HeaderMap,
    log: &mut Log,
) -> Result<(), Fail> {
    for (rules, fail_on_match) in [(&p.header_fail, true), (&p.header_need, false)] {
        for c in rules {
            let values = header_values(headers, &c.name);
            if values.is_empty() {
                if c.allow_missing {
                    continue;
                }
                let detail = format!("Missing required header header={}", c.written);
                return failed(log, Reason::HeaderMismatch, detail);
            }
            if values.iter().any(|v| c.re.is_match(v)) == fail_on_match {
                let verb = if fail_on_match {
                    "matched"
                } else {
                    "did not match"
                };
                let detail = format!(
                    "Header {verb} regular expression header={} regexp={}",
                    c.written,
                    c.re.as_str()
                );
                return failed(log, Reason::HeaderMismatch, detail);
            }
        }
    }
    Ok(())
}

/// `fail_if_body_matches_regexp` / `fail_if_body_not_matches_regexp`; a failure is
/// [`Reason::BodyMismatch`].
pub(super) fn check_body_regexps(p: &HttpProbe, body: &[u8], log: &mut Log) -> Result<(), Fail> {
    // Go matches bytes; lossy UTF-8 keeps ASCII patterns equivalent.
    let text = String::from_utf8_lossy(body);
    if let Some(re) = p.body_fail.iter().find(|re| re.is_match(&text)) {
        let detail = format!("Body matched regular expression regexp={}", re.as_str());
        return failed(log, Reason::BodyMismatch, detail);
    }
    if let Some(re) = p.body_need.iter().find(|re| !re.is_match(&text)) {
        let detail = format!(
            "Body did not match regular expression regexp={}",
            re.as_str()
        );
        return failed(log, Reason::BodyMismatch, detail);
    }
    Ok(())
}

/// The CEL checks over the body parsed as JSON; a failure (a body that is not JSON included) is
/// [`Reason::JsonMismatch`].
pub(super) fn check_cel(p: &HttpProbe, body: &[u8], log: &mut Log) -> Result<(), Fail> {
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let detail = format!("Error unmarshalling HTTP body to JSON: {e}");
            return failed(log, Reason::JsonMismatch, detail);
        }
    };
    let value = json_to_cel(&json);
    for (program, fail_on_true) in [(&p.cel_fail, true), (&p.cel_need, false)] {
        let Some(c) = program else { continue };
        match eval_cel(c, &value) {
            Ok(v) if v != fail_on_true => {}
            Ok(_) => {
                let verb = if fail_on_true {
                    "matched"
                } else {
                    "did not match"
                };
                let detail = format!("Body {verb} CEL expression expression={}", c.source);
                return failed(log, Reason::JsonMismatch, detail);
            }
            Err(e) => return failed(log, Reason::JsonMismatch, e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_in_all_three_go_formats() {
        let t = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"), Some(t));
        assert_eq!(
            parse_http_date("Wednesday, 21-Oct-15 07:28:00 GMT"),
            Some(t)
        );
        assert_eq!(parse_http_date("Wed Oct 21 07:28:00 2015"), Some(t));
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Wed, 21 Oct 2015 07:28:00 CET"), None);
    }

    #[test]
    fn content_length_follows_go() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&Method::GET, 200, &h), -1);
        h.insert("content-length", "12".parse().unwrap());
        assert_eq!(content_length(&Method::GET, 200, &h), 12);
        assert_eq!(content_length(&Method::GET, 204, &h), 0);
        assert_eq!(content_length(&Method::HEAD, 200, &h), 12);
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        assert_eq!(content_length(&Method::GET, 200, &h), -1);
    }

    #[test]
    fn sink_hands_out_exactly_the_limit_then_fails() {
        let mut s = Sink {
            limit: Some(5),
            keep: true,
            ..Sink::default()
        };
        assert!(s.write_all(b"abc").is_ok());
        assert!(s.write_all(b"defg").is_err());
        assert_eq!(s.count, 5);
        assert_eq!(s.buf, b"abcde");
    }

    #[test]
    fn gzip_decoding_counts_uncompressed_bytes_and_spots_a_bad_header() {
        use flate2::write::GzEncoder;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'x'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        let mut sink = Sink::default();
        let mut d = Decoder::new(Compression::Gzip, &mut sink);
        for chunk in gz.chunks(7) {
            d.write(chunk).unwrap();
        }
        d.finish().unwrap();
        assert!(!d.init_failed);
        drop(d);
        assert_eq!(sink.count, 1000);

        let mut sink = Sink::default();
        let mut d = Decoder::new(Compression::Gzip, &mut sink);
        d.write(b"plain text, not gzip").unwrap();
        d.finish().unwrap();
        assert!(d.init_failed);
        drop(d);
        assert_eq!(sink.count, 0, "Go's bufio swallowed it");
        let mut sink = Sink::default();
        let mut d = Decoder::new(Compression::Gzip, &mut sink);
        d.write(&[b'x'; 5000]).unwrap();
        d.write(&[b'x'; 1000]).unwrap();
        d.finish().unwrap();
        drop(d);
        assert_eq!(sink.count, 6000 - 4096);
    }

    #[test]
    fn brotli_bodies_are_decoded() {
        // A brotli stream with one uncompressed meta-block ("hello") and an empty last one.
        let br = [0x40, 0x00, 0x10, b'h', b'e', b'l', b'l', b'o', 0x03];
        let mut sink = Sink {
            keep: true,
            ..Sink::default()
        };
        let mut d = Decoder::new(Compression::Brotli, &mut sink);
        d.write(&br).unwrap();
        d.finish().unwrap();
        drop(d);
        assert_eq!(sink.buf, b"hello");
    }

    #[test]
    fn cel_sees_json_numbers_as_doubles() {
        let prog = |s: &str| Cel {
            source: s.into(),
            program: cel::Program::compile(s).unwrap(),
        };
        let body = json_to_cel(&serde_json::json!({"status": "ok", "n": 3, "items": [1, 2]}));
        assert_eq!(eval_cel(&prog("body.status == 'ok'"), &body), Ok(true));
        assert_eq!(eval_cel(&prog("body.n > 2"), &body), Ok(true));
        assert_eq!(eval_cel(&prog("size(body.items) == 2"), &body), Ok(true));
        assert!(eval_cel(&prog("body.n"), &body).is_err());
        assert!(eval_cel(&prog("body.missing == 1"), &body).is_err());
    }
}
