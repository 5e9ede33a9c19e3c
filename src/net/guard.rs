//! The `/probe` guard: which addresses an on-demand probe may connect to (`probe_guard:` in the
//! config). Off unless configured, as blackbox_exporter has none.
//!
//! A guard holds `deny` and `allow` rules. Each rule matches on any of a CIDR (`cidr`), a host
//! name (`host`: exact, or `*.suffix` for any name below `suffix`) and ports (`ports`: numbers
//! or `"LOW-HIGH"` ranges); every field a rule sets must match. A connection is refused when a
//! `deny` rule matches it, or when there are `allow` rules and none matches it.
//!
//! What is checked is each connection a probe makes — after resolution, at every HTTP redirect
//! hop and for the proxy itself — as (the host name when there was one, the address, the port).
//! Addresses are matched in their canonical form, so a target cannot slip past a rule by how it
//! is written: the numeric IPv4 forms are parsed into the address they stand for
//! ([`super::ip::parse_ip`]), an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is matched
//! as its IPv4 address, and the unspecified addresses (`0.0.0.0`, `::`), which reach this host
//! when connected to, are matched as loopback (`127.0.0.1`, `::1`). A rule with `host` never
//! matches a connection made to an IP literal; a rule with `ports` never matches a portless
//! probe (ICMP).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::diag::{FieldError, Pos};

/// `probe_guard:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// Connections matching any of these are refused.
    #[serde(default)]
    pub deny: Vec<Spanned<RawRule>>,
    /// When not empty, only connections matching one of these are made.
    #[serde(default)]
    pub allow: Vec<Spanned<RawRule>>,
    /// Modules `/probe` refuses (scheduled targets may still use them).
    #[serde(default)]
    pub scheduled_only: Vec<Spanned<String>>,
    /// Whether `/probe` may connect to unix domain sockets (the `unix` prober); default false
    /// when a guard is configured, since a socket path is outside what the rules can name.
    #[serde(default)]
    pub unix_sockets: bool,
}

/// One rule as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// `10.0.0.0/8`, `::1/128`, or a single address.
    pub cidr: Option<String>,
    /// `example.com` or `*.example.com`.
    pub host: Option<String>,
    /// Ports: `443` or `"8000-8099"`.
    #[serde(default)]
    pub ports: Vec<RawPorts>,
}

/// A port or a range of ports as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a port (443) or a range (\"8000-8099\")")]
pub enum RawPorts {
    /// One port.
    One(u16),
    /// `"LOW-HIGH"`, or one port as text.
    Range(String),
}

/// A checked guard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
    scheduled_only: Vec<String>,
    unix_sockets: bool,
}

/// One checked rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// What the rule was written as (for the refusal's detail).
    text: String,
    cidr: Option<Cidr>,
    host: Option<HostPattern>,
    ports: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.suffix`: stored as `.suffix`.
    Below(String),
}

/// One probe's use of a guard: checks its connections and remembers whether it refused one, so
/// that `/probe` counts and logs each refused probe once.
#[derive(Debug)]
pub struct Session {
    guard: Arc<Guard>,
    refused: AtomicBool,
}

impl Session {
    /// A session of `guard` for one probe.
    pub fn new(guard: Arc<Guard>) -> Session {
        Session {
            guard,
            refused: AtomicBool::new(false),
        }
    }

    /// The guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// [`Guard::check`], remembering a refusal.
    pub fn check(&self, name: Option<&str>, ip: IpAddr, port: Option<u16>) -> Result<(), Denied> {
        let r = self.guard.check(name, ip, port);
        if r.is_err() {
            self.refused.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Refuses a connection the rules cannot name (a unix socket) unless the guard allows such
    /// connections.
    pub fn check_unix(&self, path: &str) -> Result<(), Denied> {
        if self.guard.unix_sockets {
            return Ok(());
        }
        self.refused.store(true, Ordering::Relaxed);
        Err(Denied {
            what: format!("the unix socket {path}"),
            why: "probe_guard.unix_sockets is false".into(),
        })
    }

    /// Whether a connection of this probe was refused.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A connection the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the probe guard refuses {what}: {why}")]
pub struct Denied {
    what: String,
    why: String,
}

impl Guard {
    /// Checks `raw`; a problem names its field below `probe_guard` (`deny[2].cidr`).
    pub fn compile(raw: &RawGuard) -> Result<Guard, Vec<(Pos, FieldError)>> {
        let mut problems = Vec::new();
        let mut rules = |list: &[Spanned<RawRule>], name: &str| -> Vec<Rule> {
            let mut out = Vec::new();
            for (i, r) in list.iter().enumerate() {
                match Rule::compile(&r.value) {
                    Ok(rule) => out.push(rule),
                    Err(e) => problems.push((Pos::from(r), e.under(&format!("{name}[{i}]")))),
                }
            }
            out
        };
        let deny = rules(&raw.deny, "deny");
        let allow = rules(&raw.allow, "allow");
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Guard {
            deny,
            allow,
            scheduled_only: raw.scheduled_only.iter().map(|s| s.value.clone()).collect(),
            unix_sockets: raw.unix_sockets,
        })
    }

    /// The modules `/probe` refuses.
    pub fn scheduled_only(&self) -> &[String] {
        &self.scheduled_only
    }

    /// Whether `/probe` refuses `module`.
    pub fn is_scheduled_only(&self, module: &str) -> bool {
        self.scheduled_only.iter().any(|m| m == module)
    }

    /// Whether `/probe` may connect to unix domain sockets.
    pub fn allows_unix_sockets(&self) -> bool {
        self.unix_sockets
    }

    /// Checks one connection: to `ip` (named `name` when it was resolved from a name) on `port`
    /// (`None` for ICMP). Allocation-free unless refused.
    pub fn check(&self, name: Option<&str>, ip: IpAddr, port: Option<u16>) -> Result<(), Denied> {
        let ip = canonical(ip);
        let name = name.map(|n| n.strip_suffix('.').unwrap_or(n));
        let refused = |why: String| {
            let mut what = match name {
                Some(n) => format!("{n} ({ip})"),
                None => ip.to_string(),
            };
            if let Some(p) = port {
                what.push_str(&format!(" port {p}"));
            }
            Err(Denied { what, why })
        };
        if let Some(r) = self.deny.iter().find(|r| r.matches(name, &ip, port)) {
            return refused(format!("it matches deny rule {}", r.text));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(name, &ip, port)) {
            return refused("it matches no allow rule".into());
        }
        Ok(())
    }
}

impl Rule {
    fn compile(raw: &RawRule) -> Result<Rule, FieldError> {
        let cidr = raw
            .cidr
            .as_deref()
            .map(|c| Cidr::parse(c).map_err(|m| FieldError::new("cidr", m)))
            .transpose()?;
        let host = raw
            .host
            .as_deref()
            .map(|h| HostPattern::parse(h).map_err(|m| FieldError::new("host", m)))
            .transpose()?;
        let ports = raw
            .ports
            .iter()
            .map(|p| p.range().map_err(|m| FieldError::new("ports", m)))
            .collect::<Result<Vec<_>, _>>()?;
        if cidr.is_none() && host.is_none() && ports.is_empty() {
            return Err(FieldError::new(
                "",
                "a rule needs at least one of `cidr`, `host` and `ports`",
            ));
        }
        let mut text = Vec::new();
        if let Some(c) = &raw.cidr {
            text.push(format!("cidr {c}"));
        }
        if let Some(h) = &raw.host {
            text.push(format!("host {h}"));
        }
        if !ports.is_empty() {
            let ps: Vec<String> = ports
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            text.push(format!("ports {}", ps.join(",")));
        }
        Ok(Rule {
            text: format!("({})", text.join(", ")),
            cidr,
            host,
            ports,
        })
    }

    fn matches(&self, name: Option<&str>, ip: &IpAddr, port: Option<u16>) -> bool {
        if let Some(c) = &self.cidr {
            if !c.contains(ip) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            if !name.is_some_and(|n| h.matches(n)) {
                return false;
            }
        }
        if !self.ports.is_empty() {
            let Some(p) = port else { return false };
            if !self.ports.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)) {
                return false;
            }
        }
        true
    }
}

impl RawPorts {
    fn range(&self) -> Result<(u16, u16), String> {
        let bad = |s: &str| format!("`{s}` is not a port (1-65535) or a range (\"8000-8099\")");
        match self {
            RawPorts::One(0) => Err(bad("0")),
            RawPorts::One(p) => Ok((*p, *p)),
            RawPorts::Range(s) => {
                let (lo, hi) = s.split_once('-').unwrap_or((s, s));
                let lo: u16 = lo.trim().parse().map_err(|_| bad(s))?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad(s))?;
                if lo == 0 || lo > hi {
                    return Err(bad(s));
                }
                Ok((lo, hi))
            }
        }
    }
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let Some(net) = super::ip::parse_ip(addr.trim()) else {
            return Err(format!("`{s}` is not a CIDR (`10.0.0.0/8`, `fd00::/8`)"));
        };
        let net = canonical_addr(net);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            match prefix.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {max}")),
            }
        };
        Ok(Cidr { net, prefix })
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

impl HostPattern {
    fn parse(s: &str) -> Result<HostPattern, String> {
        let h = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if super::ip::parse_ip(&h).is_some() {
            return Err(format!(
                "`{s}` is an IP address: match addresses with `cidr`"
            ));
        }
        let (below, name) = match h.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, h.as_str()),
        };
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            return Err(format!(
                "`{s}` is not a host name or `*.` followed by one (`*.example.com`)"
            ));
        }
        Ok(if below {
            HostPattern::Below(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(h) => name.eq_ignore_ascii_case(h),
            HostPattern::Below(suffix) => {
                name.len() > suffix.len()
                    && name.is_char_boundary(name.len() - suffix.len())
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// The address a connection to `ip` reaches, for matching: IPv4-mapped IPv6 as IPv4, the
/// unspecified addresses as loopback.
fn canonical(ip: IpAddr) -> IpAddr {
    match canonical_addr(ip) {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

fn canonical_addr(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The warning due when `/probe` is served on a non-loopback address with neither basic-auth
/// users nor a guard: anyone who can reach it can make this host connect anywhere, carrying the
/// modules' credentials. `None` when no warning is due.
pub fn probe_exposure_warning(
    listen: &[std::net::SocketAddr],
    has_auth: bool,
    guard: Option<&Guard>,
) -> Option<String> {
    if has_auth || guard.is_some() {
        return None;
    }
    let exposed: Vec<String> = listen
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if exposed.is_empty() {
        return None;
    }
    Some(format!(
        "/probe is served on {} with neither basic-auth users (--web.config.file) nor a probe_guard: anyone who can reach it can make this host connect to any address and port, sending the modules' credentials",
        exposed.join(", ")
    ))
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} deny rule(s), {} allow rule(s), {} scheduled-only module(s)",
            self.deny.len(),
            self.allow.len(),
            self.scheduled_only.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(yaml: &str) -> Guard {
        let raw: RawGuard = serde_saphyr::from_str(yaml).expect("yaml");
        Guard::compile(&raw).expect("valid guard")
    }

    fn ip(s: &str) -> IpAddr {
        super::super::ip::parse_ip(s).expect("ip")
    }

    #[test]
    fn deny_by_cidr_matches_every_form_of_the_address() {
        let g = guard("deny:\n  - cidr: 127.0.0.0/8\n  - cidr: ::1/128\n");
        for form in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0177.0.0.1",
            "127.1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "::1",
            "::",
        ] {
            let e = g.check(None, ip(form), Some(80)).expect_err(form);
            assert!(e.to_string().contains("deny rule (cidr"), "{form}: {e}");
        }
        assert!(g.check(None, ip("10.0.0.1"), Some(80)).is_ok());
    }

    #[test]
    fn allow_rules_need_a_match_and_deny_wins() {
        let g = guard(
            "allow:\n  - host: '*.example.com'\n    ports: [443, '8000-8099']\n  - cidr: 10.0.0.0/8\ndeny:\n  - cidr: 10.9.0.0/16\n",
        );
        let a = ip("203.0.113.5");
        assert!(g.check(Some("www.example.com"), a, Some(443)).is_ok());
        assert!(g.check(Some("A.B.Example.COM."), a, Some(8050)).is_ok());
        assert!(g.check(Some("example.com"), a, Some(443)).is_err());
        assert!(g.check(Some("www.example.com"), a, Some(80)).is_err());
        assert!(g.check(Some("evil-example.com"), a, Some(443)).is_err());
        assert!(g.check(None, a, Some(443)).is_err());
        assert!(g.check(None, ip("10.1.2.3"), None).is_ok());
        assert!(g.check(None, ip("10.9.2.3"), Some(443)).is_err());
    }

    #[test]
    fn bad_rules_name_their_field() {
        for (yaml, field) in [
            ("deny:\n  - cidr: 10.0.0.0/33\n", "deny[0].cidr"),
            ("deny:\n  - cidr: nope\n", "deny[0].cidr"),
            ("allow:\n  - host: 127.0.0.1\n", "allow[0].host"),
            ("allow:\n  - host: 'a b'\n", "allow[0].host"),
            ("deny:\n  - ports: ['9-1']\n", "deny[0].ports"),
            ("deny:\n  - {}\n", "deny[0]"),
        ] {
            let raw: RawGuard = serde_saphyr::from_str(yaml).expect("yaml");
            let errs = Guard::compile(&raw).expect_err(yaml);
            assert_eq!(errs[0].1.field, field, "{yaml}");
        }
    }

    #[test]
    fn exposure_is_warned_about_only_without_auth_or_guard() {
        let any: std::net::SocketAddr = "0.0.0.0:9115".parse().expect("addr");
        let lo: std::net::SocketAddr = "127.0.0.1:9115".parse().expect("addr");
        assert!(probe_exposure_warning(&[lo], false, None).is_none());
        let w = probe_exposure_warning(&[lo, any], false, None).expect("warned");
        assert!(w.contains("0.0.0.0:9115"), "{w}");
        assert!(probe_exposure_warning(&[any], true, None).is_none());
        assert!(probe_exposure_warning(&[any], false, Some(&Guard::default())).is_none());
    }
}
