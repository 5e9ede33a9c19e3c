//! The `query_response` dialogue the `tcp` and `unix` probers share, over any byte stream: the
//! optional TLS handshake (`tls: true`), then the steps — read lines until `expect` matches (or
//! read `expect_bytes`), `send` (with `${1}` from that match), `starttls`. Each step records its
//! facts in [`Facts`](super::tcp::Facts) as it goes; a failure is a [`Fail`] with its reason.

use std::time::Duration;

use regex::bytes::Captures;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::time::Instant;

use super::tcp::{ExpectLabel, Facts, QueryResponse, TlsFacts};
use super::{Log, TlsConfig};
use crate::net::classify;
use crate::probe::{Fail, Reason};

/// Longest line read (Go's `bufio.Scanner` default token limit).
pub(super) const MAX_LINE: usize = 64 * 1024;

/// A byte stream, plain or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a dialogue runs: the module's steps and TLS settings.
#[derive(Clone, Copy)]
pub(super) struct Script<'a> {
    /// The `query_response` steps.
    pub steps: &'a [QueryResponse],
    /// `tls: true`: a TLS handshake before the first step.
    pub tls: bool,
    /// The settings of that handshake and of every `starttls`.
    pub tls_config: &'a TlsConfig,
    /// The TLS server name when `tls_config.server_name` is not set.
    pub host: &'a str,
}

/// Why a line could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The line is longer than [`MAX_LINE`] (Go's "token too long").
    TooLong,
    /// The connection failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLong => f.write_str("token too long"),
            ReadError::Io(e) => e.fmt(f),
        }
    }
}

impl ReadError {
    /// The reason of a failed read: a line too long breaks the protocol; an IO error is what
    /// its source chain says, else the connection was lost ([`Reason::Reset`]).
    fn reason(&self) -> Reason {
        match self {
            ReadError::TooLong => Reason::Protocol,
            ReadError::Io(e) => classify(e).unwrap_or(Reason::Reset),
        }
    }
}

/// When the dialogue's phases started, to fill in [`Facts::phases`] as it goes.
struct Clock {
    /// The connection was ready (connected, and after the TLS handshake of `tls: true`).
    ready: Instant,
    /// The first line or bytes of the answer arrived.
    first: Option<Instant>,
    /// Time spent in STARTTLS handshakes after `first` (counted under `tls`, not `transfer`).
    starttls_after_first: Duration,
}

impl Clock {
    /// Notes that an answer arrived (the first one starts `transfer`).
    fn answered(&mut self, facts: &mut Facts) {
        if self.first.is_none() {
            let now = Instant::now();
            self.first = Some(now);
            facts.phases.processing = now - self.ready;
        }
        self.update(facts);
    }

    /// Brings `transfer` up to now.
    fn update(&self, facts: &mut Facts) {
        if let Some(first) = self.first {
            facts.phases.transfer = first.elapsed().saturating_sub(self.starttls_after_first);
        }
    }
}

/// Makes a connected `stream` ready for the steps: the TLS handshake when the script has
/// `tls: true` (its time counted under `tls`), else the stream as it is.
pub(super) async fn open<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    script: &Script<'_>,
    stream: S,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<Box<dyn Io>, Fail> {
    if !script.tls {
        return Ok(Box::new(stream));
    }
    plog!(log, Debug, "starting TLS handshake");
    let at = Instant::now();
    let tls = tls_handshake(stream, script.tls_config, script.host, facts, log).await;
    facts.phases.tls += at.elapsed();
    Ok(Box::new(tls?))
}

/// Runs the script's steps over `conn` (made ready by [`open`]).
pub(super) async fn converse(
    script: &Script<'_>,
    conn: Box<dyn Io>,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let mut clock = Clock {
        ready: Instant::now(),
        first: None,
        starttls_after_first: Duration::ZERO,
    };
    let mut reader = BufReader::new(conn);
    for (i, qr) in script.steps.iter().enumerate() {
        plog!(log, Debug, "processing query response entry {i}");
        reader = step(script, qr, reader, &mut clock, facts, log).await?;
        clock.update(facts);
    }
    Ok(())
}

/// One `query_response` entry; returns the connection (upgraded after `starttls`).
async fn step(
    script: &Script<'_>,
    qr: &QueryResponse,
    mut reader: BufReader<Box<dyn Io>>,
    clock: &mut Clock,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<BufReader<Box<dyn Io>>, Fail> {
    let mut send = qr.send.as_ref().map(|s| s.0.clone());
    if let Some(expect) = &qr.expect {
        let re = qr.regex();
        let mut line = Vec::new();
        let caps = loop {
            line.clear();
            match read_line(&mut reader, &mut line).await {
                Err(e) => {
                    return Err(Fail::new(
                        e.reason(),
                        format!("error reading from connection: {e}"),
                    ))
                }
                Ok(false) => {
                    facts.failed_due_to_regex = true;
                    return Err(Fail::new(
                        Reason::ExpectMismatch,
                        format!("regexp `{expect}` did not match any line"),
                    ));
                }
                Ok(true) => clock.answered(facts),
            }
            plog!(log, Debug, "read line: {}", String::from_utf8_lossy(&line));
            if let Some(c) = re.captures(&line) {
                break c;
            }
        };
        plog!(log, Debug, "regexp `{expect}` matched");
        facts.failed_due_to_regex = false;
        if let Some(s) = &send {
            send = Some(expand(&caps, s));
        }
        if !qr.labels.is_empty() {
            facts.expect_info.push(expect_info(&qr.labels, &caps));
        }
    }
    if let Some(want) = qr.expect_bytes.as_ref().filter(|b| !b.0.is_empty()) {
        expect_bytes(&mut reader, &want.0, clock, facts, log).await?;
    }
    if let Some(s) = send.filter(|s| !s.is_empty()) {
        plog!(log, Debug, "sending line ({} bytes, not shown)", s.len());
        let w = reader.get_mut();
        let mut msg = s;
        msg.push(b'\n');
        let sent = match w.write_all(&msg).await {
            Ok(()) => w.flush().await,
            Err(e) => Err(e),
        };
        sent.map_err(|e| {
            Fail::new(
                classify(&e).unwrap_or(Reason::Reset),
                format!("failed to send: {e}"),
            )
        })?;
    }
    if qr.starttls {
        // Like blackbox, anything read ahead of the upgrade is dropped.
        let conn = reader.into_inner();
        plog!(log, Debug, "starting TLS (STARTTLS)");
        let at = Instant::now();
        let tls = tls_handshake(conn, script.tls_config, script.host, facts, log).await;
        let took = at.elapsed();
        facts.phases.tls += took;
        if clock.first.is_some() {
            clock.starttls_after_first += took;
        }
        let tls: Box<dyn Io> = Box::new(tls?);
        reader = BufReader::new(tls);
    }
    Ok(reader)
}

/// Reads as many bytes as `want` holds and compares them (`expect_bytes`).
async fn expect_bytes(
    reader: &mut BufReader<Box<dyn Io>>,
    want: &[u8],
    clock: &mut Clock,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let mut got = vec![0u8; want.len()];
    let mut n = 0;
    while n < got.len() {
        match reader.read(&mut got[n..]).await {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                clock.answered(facts);
            }
            Err(e) => {
                return Err(Fail::new(
                    classify(&e).unwrap_or(Reason::Reset),
                    format!("error reading from connection: {e}"),
                ))
            }
        }
    }
    got.truncate(n);
    plog!(log, Debug, "read bytes: {got:?}");
    if n < want.len() {
        return Err(Fail::new(
            Reason::Reset,
            format!("read less data than expected: expected {want:?}, read {got:?}"),
        ));
    }
    if got != want {
        facts.failed_due_to_bytes = Some(true);
        return Err(Fail::new(
            Reason::ExpectMismatch,
            format!("bytes did not match: expected {want:?}, read {got:?}"),
        ));
    }
    plog!(log, Debug, "bytes matched: {want:?}");
    facts.failed_due_to_bytes = Some(false);
    Ok(())
}

/// Expands `$1`, `${1}`, `$name`, `${name}` and `$$` (Go's `Regexp.Expand` rules).
pub(super) fn expand(caps: &Captures<'_>, template: &[u8]) -> Vec<u8> {
    let mut dst = Vec::new();
    caps.expand(template, &mut dst);
    dst
}

/// The label set of `probe_expect_info`, its values expanded from the match.
fn expect_info(labels: &[ExpectLabel], caps: &Captures<'_>) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|l| {
            let v = expand(caps, l.value.as_bytes());
            (l.name.clone(), String::from_utf8_lossy(&v).into_owned())
        })
        .collect()
}

/// Reads one line like Go's `bufio.Scanner` (`\n`-terminated, a trailing `\r` dropped, the last
/// line may lack its newline). `Ok(false)` at end of stream; [`ReadError::TooLong`] past
/// [`MAX_LINE`] bytes.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut Vec<u8>,
) -> Result<bool, ReadError> {
    loop {
        let buf = r.fill_buf().await.map_err(ReadError::Io)?;
        if buf.is_empty() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(!line.is_empty());
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > MAX_LINE {
            return Err(ReadError::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(true);
        }
    }
}

/// A TLS client handshake over `io` (server name: `tls_config.server_name`, else `host`),
/// recording the TLS facts. A client config that cannot be built (a file the module names is
/// missing or unusable) is [`Reason::Setup`]; a failed handshake is [`Reason::Tls`] unless its
/// error names a lost connection.
async fn tls_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    tls_config: &TlsConfig,
    host: &str,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<tokio_rustls::client::TlsStream<S>, Fail> {
    let cfg = tls_config
        .client_config(&[])
        .map_err(|e| Fail::new(Reason::Setup, e.to_string()))?;
    let name = crate::net::tls::server_name(tls_config.server_name.as_deref(), host)
        .map_err(|e| Fail::new(Reason::Setup, e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, io)
        .await
        .map_err(|e| {
            Fail::new(
                classify(&e).unwrap_or(Reason::Tls),
                format!("TLS handshake (client) failed: {e}"),
            )
        })?;
    plog!(log, Debug, "TLS handshake (client) succeeded");
    facts.tls = Some(TlsFacts::of(tls.get_ref().1));
    facts.tls_verified = !tls_config.insecure_skip_verify;
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::bytes::Regex;

    #[tokio::test]
    async fn read_line_splits_like_a_go_scanner() {
        let data: &[u8] = b"one\r\ntwo\n\nthree\r";
        let mut r = BufReader::new(data);
        let mut l = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut r, &mut l).await.unwrap() {
            lines.push(String::from_utf8(l.clone()).unwrap());
            l.clear();
        }
        assert_eq!(lines, ["one", "two", "", "three"]);
    }

    #[tokio::test]
    async fn read_line_rejects_overlong_lines() {
        let data = vec![b'x'; MAX_LINE + 10];
        let mut r = BufReader::new(&data[..]);
        let mut l = Vec::new();
        let e = read_line(&mut r, &mut l).await.unwrap_err();
        assert!(matches!(e, ReadError::TooLong), "{e}");
        assert_eq!(e.reason(), Reason::Protocol);
    }

    #[test]
    fn expand_uses_go_template_rules() {
        let re = Regex::new(r"^220 (?P<host>\S+) (.*)$").unwrap();
        let caps = re.captures(b"220 mx.example ESMTP ready").unwrap();
        assert_eq!(expand(&caps, b"EHLO ${1}"), b"EHLO mx.example");
        assert_eq!(expand(&caps, b"$host/$2/$$"), b"mx.example/ESMTP ready/$");
    }
}
