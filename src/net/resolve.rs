//! Name resolution with an address-family policy: the one function every prober resolves a
//! host with ([`resolve`]), and the one place a `/probe` guard ([`super::guard::Session`]) sees
//! the address a probe is about to connect to.
//!
//! An IP literal never reaches the system resolver, and neither do the numeric IPv4 forms the
//! C library would accept (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`): they are parsed
//! here ([`parse_ip`]) into the address they stand for, so that a guard matches what the socket
//! connects to rather than how it was written.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::time::{timeout_at, Instant};

use super::guard::{Denied, Session};
use super::ip::parse_ip;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn article(self) -> &'static str {
        match self {
            Family::V4 => "IPv4 ",
            Family::V6 => "IPv6 ",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// Which of a name's addresses is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The family tried first (blackbox's `preferred_ip_protocol`); `None` takes the
    /// resolver's order as it is (the system's address selection).
    pub preferred: Option<Family>,
    /// Whether an address of the other family will do when the preferred one has none
    /// (`ip_protocol_fallback`); without it such a name fails.
    pub fallback: bool,
    /// The local address the socket is bound to, when one is: only addresses of its family can
    /// be reached from it, whatever the preference says.
    pub source: Option<IpAddr>,
}

impl Policy {
    /// The preferred family, falling back to the other one: the first address of `preferred`,
    /// else the first address at all.
    pub const fn prefer(preferred: Family) -> Policy {
        Policy {
            preferred: Some(preferred),
            fallback: true,
            source: None,
        }
    }

    /// The resolver's first address (of the source address's family, when one is set).
    pub const SYSTEM: Policy = Policy {
        preferred: None,
        fallback: true,
        source: None,
    };

    /// Whether `ip` is usable at all (the source address's family, when one is set).
    fn usable(&self, ip: &IpAddr) -> bool {
        self.source.is_none_or(|s| Family::of(&s) == Family::of(ip))
    }
}

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The deadline passed during the lookup.
    #[error("resolving {host} timed out")]
    TimedOut {
        /// The name.
        host: String,
    },
    /// The resolver failed.
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No address of a usable family.
    #[error("{host} has no {}address", .family.map_or("", Family::article))]
    NoAddress {
        /// The name.
        host: String,
        /// The family that was needed (`None`: any).
        family: Option<Family>,
    },
    /// The `/probe` guard refuses the address.
    #[error(transparent)]
    Denied(#[from] Denied),
}

/// Resolves `host` (port `port`, `None` for a portless probe such as ICMP) to the one address a
/// probe connects to, by `policy`, before `deadline`; checked by the `/probe` guard's `guard` session when there is one. An
/// IP literal (any form [`parse_ip`] reads) is not looked up. Allocation-free for literals.
pub async fn resolve(
    host: &str,
    port: Option<u16>,
    policy: &Policy,
    deadline: Instant,
    guard: Option<&Session>,
) -> Result<IpAddr, ResolveError> {
    let (name, ip) = match parse_ip(host) {
        Some(ip) => (None, ip),
        None => (Some(host), lookup(host, policy, deadline).await?),
    };
    if let Some(g) = guard {
        g.check(name, ip, port)?;
    }
    Ok(ip)
}

/// The system resolver's answer, chosen by `policy`.
async fn lookup(host: &str, policy: &Policy, deadline: Instant) -> Result<IpAddr, ResolveError> {
    let addrs = match timeout_at(deadline, tokio::net::lookup_host((host, 0))).await {
        Err(_) => {
            return Err(ResolveError::TimedOut {
                host: host.to_string(),
            })
        }
        Ok(Err(source)) => {
            return Err(ResolveError::Lookup {
                host: host.to_string(),
                source,
            })
        }
        Ok(Ok(addrs)) => addrs,
    };
    choose(addrs.map(|a: SocketAddr| a.ip()), policy).ok_or_else(|| ResolveError::NoAddress {
        host: host.to_string(),
        family: policy.source.as_ref().map(Family::of).or(policy.preferred),
    })
}

/// The first usable address of the preferred family, else (with fallback) the first usable one.
fn choose(addrs: impl Iterator<Item = IpAddr>, policy: &Policy) -> Option<IpAddr> {
    let mut other = None;
    for ip in addrs.filter(|ip| policy.usable(ip)) {
        if policy.preferred.is_none_or(|f| f == Family::of(&ip)) {
            return Some(ip);
        }
        if other.is_none() {
            other = Some(ip);
        }
    }
    // A source address decides the family by itself: its addresses are never a "fallback".
    if policy.fallback || policy.source.is_some() {
        other
    } else {
        None
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_preferred_family_wins_and_fallback_decides_the_rest() {
        let both = || [ip("10.0.0.1"), ip("fd00::1")].into_iter();
        let v6 = Policy::prefer(Family::V6);
        assert_eq!(choose(both(), &v6), Some(ip("fd00::1")));
        let v4 = Policy::prefer(Family::V4);
        assert_eq!(choose(both(), &v4), Some(ip("10.0.0.1")));
        let only4 = || [ip("10.0.0.1")].into_iter();
        assert_eq!(choose(only4(), &v6), Some(ip("10.0.0.1")));
        let strict = Policy {
            fallback: false,
            ..v6
        };
        assert_eq!(choose(both(), &Policy::SYSTEM), Some(ip("10.0.0.1")));
        assert_eq!(choose(only4(), &strict), None);
        let from_v4 = Policy {
            source: Some(ip("10.0.0.9")),
            ..strict
        };
        assert_eq!(choose(both(), &from_v4), Some(ip("10.0.0.1")));
    }

    #[tokio::test]
    async fn literals_skip_the_resolver_and_names_resolve() {
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let p = Policy::prefer(Family::V4);
        let got = resolve("0x7f000001", Some(80), &p, deadline, None).await;
        assert_eq!(got.expect("literal"), ip("127.0.0.1"));
        let got = resolve("localhost", Some(80), &p, deadline, None).await;
        assert!(got.expect("localhost resolves").is_loopback());
    }
}
