//! The bytes of a lean probe's exchange: its request, serialised once per target, and the
//! head of the answer, parsed with `httparse` (the body's framing is the probe's state
//! machine, in `lean`).

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::Method;

use crate::probe::{Fail, Reason};
use crate::probers::http_client::MAX_RESPONSE_HEAD_BYTES;

/// Most headers an answer's head may carry.
const MAX_HEADERS: usize = 128;

/// Serialises the request of a lean probe: request line, the prober's headers in order, a
/// `Content-Length` when there is a body (or the method carries one), the body.
pub(super) fn request_bytes(
    method: &Method,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + path.len() + body.len() + 32 * headers.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let carries_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if (!body.is_empty() || carries_body) && !headers.contains_key(CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// What the prober needs of an answer's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Bytes of the head, blank line included.
    pub used: usize,
    pub code: u16,
    /// The last transfer coding is `chunked`.
    pub chunked: bool,
    pub length: Option<u64>,
}

/// Parses a head from the start of `avail`: `None` while it is incomplete.
pub(super) fn parse_head(avail: &[u8]) -> Result<Option<Head>, Fail> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(avail) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if avail.len() > MAX_RESPONSE_HEAD_BYTES => {
            return Err(Fail::new(
                Reason::Protocol,
                format!("request: the answer's head is over {MAX_RESPONSE_HEAD_BYTES} bytes"),
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Fail::new(
                Reason::Protocol,
                format!("request: the answer is not valid HTTP ({e})"),
            ))
        }
    };
    let mut head = Head {
        used,
        code: resp.code.unwrap_or(0),
        chunked: false,
        length: None,
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case(TRANSFER_ENCODING.as_str()) {
            head.chunked = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str()) {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| head.length.is_none_or(|l| l == *n))
                .ok_or_else(|| {
                    Fail::new(
                        Reason::Protocol,
                        "request: the answer's Content-Length is invalid",
                    )
                })?;
            head.length = Some(n);
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_serialised_with_its_headers_and_a_length_for_a_body() {
        let mut h = http::HeaderMap::new();
        h.insert("host", "127.0.0.1:8000".parse().expect("value"));
        h.insert("connection", "close".parse().expect("value"));
        let get = request_bytes(&Method::GET, "/health?x=1", &h, b"");
        assert_eq!(
            get,
            b"GET /health?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nconnection: close\r\n\r\n"
        );
        let post = request_bytes(&Method::POST, "/predict", &h, b"{}");
        assert!(post.ends_with(b"content-length: 2\r\n\r\n{}"), "{post:?}");
        let empty_post = request_bytes(&Method::POST, "/", &h, b"");
        assert!(empty_post.ends_with(b"content-length: 0\r\n\r\n"));
    }

    #[test]
    fn heads_are_parsed_for_status_and_framing() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nbody")
            .expect("valid")
            .expect("complete");
        assert_eq!(
            (h.code, h.length, h.chunked, h.used),
            (200, Some(12), false, 39)
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(h.chunked);
        let h = parse_head(b"HTTP/1.0 503 Nope\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!((h.code, h.length, h.chunked), (503, None, false));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nConte").expect("valid"),
            None
        );
        for bad in [
            &b"SSH-2.0-OpenSSH_9.6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        ] {
            let f = parse_head(bad).expect_err("invalid");
            assert_eq!(f.reason, Reason::Protocol, "{f}");
        }
        // Repeated equal lengths are one length.
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(h.length, Some(2));
    }
}
