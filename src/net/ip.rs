//! IP addresses as written in targets: every form a URL or the C library reads, so that the
//! resolver and the `/probe` guard see the address a socket would connect to.

use std::net::{IpAddr, Ipv4Addr};

/// Parses an IP address as a URL or the C library would read it: IPv6 with or without
/// brackets, dotted-quad IPv4, and the numeric IPv4 forms — one to four parts, each decimal,
/// hex (`0x`) or octal (leading `0`), the last filling the remaining bytes (`2130706433`,
/// `0x7f000001`, `0177.0.0.1`, `127.1`). `None` for a name.
pub fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip);
    }
    parse_ipv4_numeric(h).map(IpAddr::V4)
}

/// `inet_aton`'s forms.
fn parse_ipv4_numeric(s: &str) -> Option<Ipv4Addr> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut parts = [0u64; 4];
    let mut n = 0;
    for p in s.split('.') {
        if n == 4 {
            return None;
        }
        let (digits, radix) = if let Some(x) = p.strip_prefix("0x").or(p.strip_prefix("0X")) {
            (x, 16)
        } else if p.len() > 1 && p.starts_with('0') {
            (&p[1..], 8)
        } else {
            (p, 10)
        };
        parts[n] = if digits.is_empty() {
            // `0x` alone is 0, as the C library reads it.
            if radix == 16 {
                0
            } else {
                return None;
            }
        } else {
            u64::from_str_radix(digits, radix).ok()?
        };
        n += 1;
    }
    let last_bits = 8 * (5 - n as u32);
    if parts[..n - 1].iter().any(|&p| p > 255) || parts[n - 1] >= 1u64 << last_bits.min(32) {
        return None;
    }
    let mut v: u64 = 0;
    for (i, p) in parts[..n - 1].iter().enumerate() {
        v |= p << (24 - 8 * i);
    }
    v |= parts[n - 1];
    Some(Ipv4Addr::from(u32::try_from(v).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn numeric_ipv4_forms_parse_to_the_address_they_stand_for() {
        for form in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "127.1",
            "127.0.1",
            "0177.0.0.01",
            "127.0.0.1.",
        ] {
            assert_eq!(parse_ip(form), Some(ip("127.0.0.1")), "{form}");
        }
        assert_eq!(parse_ip("[::1]"), Some(ip("::1")));
        assert_eq!(parse_ip("0x"), Some(ip("0.0.0.0")));
        assert_eq!(parse_ip("0"), Some(ip("0.0.0.0")));
        assert_eq!(parse_ip("::ffff:127.0.0.1"), Some(ip("::ffff:127.0.0.1")));
        for name in [
            "example.com",
            "",
            "1.2.3.4.5",
            "256.0.0.1",
            "08.0.0.1",
            "4294967296",
            "1.2.3.256",
            "1..2",
            "1e3",
        ] {
            assert_eq!(parse_ip(name), None, "{name}");
        }
    }
}
