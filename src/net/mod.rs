//! The network layer every prober and the failover proxy share: how an error becomes a
//! [`Reason`] (by walking its `source()` chain, never by reading its text) and the one-line
//! detail people read; [`tls`], the TLS client configuration and server-name rule.

pub mod tls;

use std::error::Error as StdError;
use std::io;

use crate::probe::{Fail, Reason};

/// A failure from error `e` met while doing `context`: the reason its source chain names, else
/// `default`; the detail is `context: chain`.
pub fn fail_from(default: Reason, context: &str, e: &(dyn StdError + 'static)) -> Fail {
    Fail::new(
        classify(e).unwrap_or(default),
        format!("{context}: {}", chain(e)),
    )
}

/// Maps an error to a reason by walking its `source()` chain (never by matching text).
pub fn classify(e: &(dyn StdError + 'static)) -> Option<Reason> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
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
    fn fail_from_keeps_the_chain_and_falls_back_to_the_default() {
        let e = io::Error::other("boom");
        let f = fail_from(Reason::Connect, "connecting", &e);
        assert_eq!(f.reason, Reason::Connect);
        assert_eq!(f.detail, "connecting: boom");
    }
}
