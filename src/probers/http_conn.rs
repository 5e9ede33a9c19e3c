//! One connection of the `http` prober: connect (`SO_LINGER` 0, `TCP_NODELAY`), an HTTP proxy's
//! `CONNECT` tunnel, the hyper connection driven in the probe's own task, and the URL and header
//! helpers of a hop (Host, Referer, cookies).

use std::net::SocketAddr;
use std::pin::Pin;

use http::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::net::guard::Session;
use crate::net::{self, fail_from, Policy, ResolveError, SocketOptions};
use crate::probe::{Fail, Reason};

/// The connection's IO without its half-close: once the answer is read, hyper would shut the
/// write side down (a FIN, a syscall) before the socket is dropped anyway; dropping it alone
/// closes with `SO_LINGER` 0, one packet instead of two.
pub(super) struct NoShutdown<S>(pub(super) S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Resolves `host` the system's way (redirect targets, proxies: the resolver's first address,
/// as Go's dialer starts with), checked by the `/probe` guard when there is one; a failure is
/// [`Reason::Dns`], a refusal [`Reason::Policy`].
pub(super) async fn lookup_first(
    host: &str,
    port: u16,
    deadline: Instant,
    guard: Option<&Session>,
) -> Result<SocketAddr, Fail> {
    let resolved = net::resolve(host, Some(port), &Policy::SYSTEM, deadline, guard).await;
    let detail = match resolved {
        Ok(ip) => return Ok(SocketAddr::new(ip, port)),
        Err(ResolveError::Denied(d)) => return Err(Fail::new(Reason::Policy, d.to_string())),
        Err(ResolveError::TimedOut { .. }) => format!("lookup {host}: context deadline exceeded"),
        Err(ResolveError::Lookup { source, .. }) => format!("lookup {host}: {source}"),
        Err(ResolveError::NoAddress { .. }) => format!("lookup {host}: no address"),
    };
    Err(Fail::new(Reason::Dns, detail))
}

/// Connects with `TCP_NODELAY` and `SO_LINGER` 0 (no TIME_WAIT on the prober's side); a
/// failure is classified by its cause (`refused`, `connect_timeout`, `connect`).
pub(super) async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, Fail> {
    let opts = SocketOptions {
        linger_zero: true,
        nodelay: true,
        ..SocketOptions::default()
    };
    let context = || format!("dial tcp {addr}");
    match timeout_at(deadline, net::connect(addr, opts, context)).await {
        Err(_) => Err(Fail::new(
            Reason::ConnectTimeout,
            format!("dial tcp {addr}: i/o timeout"),
        )),
        Ok(r) => r,
    }
}

/// `CONNECT host:port` through an HTTP proxy.
pub(super) async fn tunnel(
    tcp: &mut TcpStream,
    authority: &str,
    auth: Option<&HeaderValue>,
    headers: &[(HeaderName, HeaderValue)],
    deadline: Instant,
) -> Result<(), Fail> {
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = auth.and_then(|a| a.to_str().ok()) {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    let talk = async {
        tcp.write_all(req.as_bytes()).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            if tcp.read(&mut byte).await? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        Ok::<_, std::io::Error>(head)
    };
    let head = match timeout_at(deadline, talk).await {
        Err(_) => {
            let detail = "proxy CONNECT: context deadline exceeded";
            return Err(Fail::new(Reason::ConnectTimeout, detail));
        }
        Ok(Err(e)) => return Err(fail_from(Reason::Connect, "proxy CONNECT", &e)),
        Ok(Ok(h)) => h,
    };
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    if line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(Fail::new(
            Reason::Connect,
            format!("proxy CONNECT refused: {line}"),
        ))
    }
}

pub(super) fn cookie_header(jar: &[(String, String, String)], host: &str) -> Option<HeaderValue> {
    let v: Vec<String> = jar
        .iter()
        .filter(|(h, _, _)| h == host)
        .map(|(_, k, v)| format!("{k}={v}"))
        .collect();
    if v.is_empty() {
        None
    } else {
        HeaderValue::from_str(&v.join("; ")).ok()
    }
}

/// Go's `Referer` for a redirect from `prev` to `next`: `prev` without user info and fragment;
/// none from https to http.
pub(super) fn referer(prev: &url::Url, next: &url::Url) -> Option<HeaderValue> {
    if prev.scheme() == "https" && next.scheme() == "http" {
        return None;
    }
    let mut r = prev.clone();
    r.set_fragment(None);
    let _ = r.set_username("");
    let _ = r.set_password(None);
    HeaderValue::from_str(r.as_str()).ok()
}

/// The URL's host without IPv6 brackets.
pub(super) fn host_of(u: &url::Url) -> String {
    u.host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// `host[:port]` as the URL states it (the default `Host` header).
pub(super) fn authority(u: &url::Url) -> String {
    let h = u.host_str().unwrap_or("");
    match u.port() {
        Some(p) => format!("{h}:{p}"),
        None => h.to_string(),
    }
}

pub(super) fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `example.com:8443` → `example.com`; `[::1]:443` → `::1`.
pub(super) fn strip_port(h: &str) -> String {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest).to_string();
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.to_string()
        }
        _ => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_ports_are_stripped_for_the_server_name() {
        assert_eq!(strip_port("example.com:8443"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
