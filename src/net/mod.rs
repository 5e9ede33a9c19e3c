//! The network layer every prober and the failover proxy share: how an error becomes a
//! [`Reason`] (by walking its `source()` chain, never by reading its text; an OS error that says
//! watchfire itself is short of a resource, [`LocalCause`], is [`Reason::Prober`]) and the
//! one-line detail people read; [`resolve()`], name resolution with an address-family policy (the one
//! place every probe's address is chosen, and checked by the `/probe` [`guard`]); [`tls`], the
//! TLS client configuration and server-name rule; [`driver`], the HTTP/1.1 handshake and a hyper
//! connection driven beside the probe; [`timed`], the IO wrapper that stamps a request's last
//! write and its answer's first read.

mod classify;
pub mod driver;
pub mod guard;
pub mod ip;
pub mod resolve;
pub mod timed;
pub mod tls;

pub use classify::{io_local_cause, local_cause, LocalCause};
pub use resolve::{resolve, Family, Policy, ResolveError};

use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::probe::{Fail, Reason};

/// How a probe's TCP socket is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Bind to this local address first (`source_ip_address`).
    pub source: Option<IpAddr>,
    /// `SO_LINGER` 0: closing sends a reset and leaves no TIME_WAIT on the prober's side (the
    /// probers that open a fresh connection per probe at high rates).
    pub linger_zero: bool,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
}

/// Opens a TCP connection to `addr` — every prober's one socket setup. A socket that cannot be
/// created or bound is [`Reason::Setup`] (a local problem); a failed connect is what its error
/// says ([`classify`]), else [`Reason::Connect`], with `context()` (`connecting to ADDR`, made
/// only on failure) before the error chain. Deadlines are the caller's: each kind names a
/// connect cut short its own way.
///
/// The socket is made non-blocking and close-on-exec in one `socket()` call, and the connect's
/// outcome is read from the readiness the reactor reports: `SO_ERROR` is read only when that
/// readiness says there is an error, not after every connect as `TcpSocket::connect` does (one
/// `getsockopt` less per probe; a refused or unreachable connect sets `EPOLLERR` with its
/// error).
pub async fn connect(
    addr: SocketAddr,
    opts: SocketOptions,
    context: impl FnOnce() -> String,
) -> Result<TcpStream, Fail> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(|e| fail_from(Reason::Setup, "cannot create a socket", &e))?;
    if let Some(ip) = opts.source {
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| bind_failure(ip, &e))?;
    }
    if opts.linger_zero {
        let _ = socket.set_linger(Some(Duration::ZERO));
    }
    if opts.nodelay {
        let _ = socket.set_tcp_nodelay(true);
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EINPROGRESS as i32) => {}
        Err(e) => return Err(fail_from(Reason::Connect, &context(), &e)),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))
        .map_err(|e| fail_from(Reason::Setup, "cannot register a socket", &e))?;
    match connected(&stream).await {
        Ok(()) => Ok(stream),
        Err(e) => Err(fail_from(Reason::Connect, &context(), &e)),
    }
}

/// Waits for a connect in progress on `stream` to end: writable without an error is
/// connected; with one, the error is the socket's `SO_ERROR`.
async fn connected(stream: &TcpStream) -> io::Result<()> {
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if !ready.is_error() {
        return Ok(());
    }
    match stream.take_error()? {
        Some(e) => Err(e),
        // Readiness said error but the socket holds none: the connect did not complete.
        None => Err(io::Error::from(io::ErrorKind::NotConnected)),
    }
}

/// A failed bind to source address `ip`: [`Reason::Setup`] (the address is not this host's),
/// unless watchfire is short of a resource other than ports ([`Reason::Prober`]).
fn bind_failure(ip: IpAddr, e: &io::Error) -> Fail {
    let detail = format!("cannot bind to {ip}: {}", chain(e));
    match io_local_cause(e) {
        Some(c) if c != LocalCause::EphemeralPorts => Fail::new(Reason::Prober, detail),
        _ => Fail::new(Reason::Setup, detail),
    }
}

/// A failure from error `e` met while doing `context`: the reason its source chain names, else
/// `default`; the detail is `context: chain`.
pub fn fail_from(default: Reason, context: &str, e: &(dyn StdError + 'static)) -> Fail {
    Fail::new(
        classify(e).unwrap_or(default),
        format!("{context}: {}", chain(e)),
    )
}

/// Maps an error to a reason by walking its `source()` chain (never by matching text). An OS
/// error that says watchfire itself is short of a resource ([`LocalCause`]) is
/// [`Reason::Prober`], whatever the operation.
pub fn classify(e: &(dyn StdError + 'static)) -> Option<Reason> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    // Below a hyper error, an I/O error of kind `InvalidInput` is hyper's decoder refusing the
    // bytes (an invalid chunk size line): the answer is not valid HTTP.
    let mut under_hyper = false;
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            under_hyper = true;
            if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                return Some(Reason::Protocol);
            }
            if h.is_timeout() {
                return Some(Reason::Timeout);
            }
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                // Keep walking: an io error underneath is more precise.
                if err.source().is_none() {
                    return Some(Reason::Reset);
                }
            }
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Some(Reason::Tls);
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if local_cause(io).is_some() {
                return Some(Reason::Prober);
            }
            if let Some(inner) = io.get_ref() {
                if inner.downcast_ref::<rustls::Error>().is_some() {
                    return Some(Reason::Tls);
                }
            }
            return Some(match io.kind() {
                io::ErrorKind::ConnectionRefused => Reason::Refused,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Reason::Reset,
                io::ErrorKind::TimedOut => Reason::Timeout,
                io::ErrorKind::InvalidData => Reason::Tls,
                io::ErrorKind::InvalidInput if under_hyper => Reason::Protocol,
                _ => return None,
            });
        }
        cur = err.source();
    }
    None
}

/// The error and its sources, joined (for the human detail only).
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_classify_by_kind() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&e), Some(Reason::Refused));
        let e = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&e), Some(Reason::Reset));
        let e = io::Error::other("something else");
        assert_eq!(classify(&e), None);
    }

    #[test]
    fn local_resource_errors_are_the_probers_not_the_targets() {
        for errno in [
            nix::errno::Errno::EMFILE,
            nix::errno::Errno::ENFILE,
            nix::errno::Errno::ENOBUFS,
            nix::errno::Errno::EADDRNOTAVAIL,
            nix::errno::Errno::ENOMEM,
        ] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(classify(&e), Some(Reason::Prober), "{errno}");
            let f = fail_from(Reason::Connect, "connecting to 127.0.0.1:80", &e);
            assert_eq!(f.reason, Reason::Prober, "{errno}");
        }
    }

    #[tokio::test]
    async fn connect_classifies_a_refused_connection_and_a_bad_source() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let f = connect(addr, SocketOptions::default(), || "connecting".into())
            .await
            .expect_err("nothing listens");
        assert_eq!(f.reason, Reason::Refused, "{f}");
        assert!(f.detail.starts_with("connecting: "), "{f}");
        let opts = SocketOptions {
            // TEST-NET-1: not an address of this host, so the bind fails locally.
            source: Some("192.0.2.1".parse().expect("ip")),
            ..SocketOptions::default()
        };
        let f = connect(addr, opts, || "connecting".into())
            .await
            .expect_err("cannot bind");
        assert_eq!(f.reason, Reason::Setup, "{f}");
    }

    /// The connect reads `SO_ERROR` only when the reactor reports an error: a connect that
    /// succeeds is still a connected stream with the options asked for, ready to carry bytes.
    #[tokio::test]
    async fn connect_succeeds_with_its_options_and_carries_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let opts = SocketOptions {
            linger_zero: true,
            nodelay: true,
            ..SocketOptions::default()
        };
        let mut s = connect(addr, opts, || "connecting".into())
            .await
            .expect("connected");
        let (mut server, _) = l.accept().await.expect("accept");
        assert_eq!(s.peer_addr().expect("peer"), addr);
        let sock = socket2::SockRef::from(&s);
        assert_eq!(sock.linger().expect("linger"), Some(Duration::ZERO));
        assert!(sock.tcp_nodelay().expect("nodelay"));
        s.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        let plain = connect(addr, SocketOptions::default(), || "connecting".into())
            .await
            .expect("connected");
        assert!(!socket2::SockRef::from(&plain)
            .tcp_nodelay()
            .expect("nodelay"));
    }

    #[test]
    fn fail_from_keeps_the_chain_and_falls_back_to_the_default() {
        let e = io::Error::other("boom");
        let f = fail_from(Reason::Connect, "connecting", &e);
        assert_eq!(f.reason, Reason::Connect);
        assert_eq!(f.detail, "connecting: boom");
    }
}
