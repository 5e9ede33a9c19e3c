//! The `icmp` prober: one echo request per probe over IPv4 or IPv6.
//!
//! Sockets: an unprivileged datagram ICMP socket (`SOCK_DGRAM` + `IPPROTO_ICMP[V6]`, allowed by
//! `net.ipv4.ping_group_range`) where the system allows it, a raw socket otherwise
//! (root / `CAP_NET_RAW`), as blackbox does. No `unsafe`: socket2's safe API opens the socket,
//! which then serves as a tokio `UdpSocket`; replies are read with nix's safe `recvmsg`.
//!
//! `probe_icmp_reply_hop_limit` (the reply's TTL for IPv4, hop limit for IPv6) is reported as
//! blackbox reports it: on every socket type, from the control message the kernel attaches to
//! each reply once asked with `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` (raw IPv4 sockets also show the
//! IP header, which serves when no control message came). When the kernel refuses the option,
//! or a reply carries neither, the metric is absent and the probe's log says why.
//!
//! Phases ([`Phases`]) from blackbox's `probe_icmp_duration_seconds`: `resolve` is the name
//! lookup (blackbox's `resolve`, which it reports as 0 when the lookup failed); `connect` is
//! the socket setup (blackbox's `setup`: opening the socket and building the request);
//! `processing` is the echo request written to its reply read (blackbox's `rtt`); `tls` and
//! `transfer` are 0 (a reply is one datagram).
//!
//! Failures: resolution is [`Reason::Dns`]; a socket that cannot be opened (neither a datagram
//! nor a raw ICMP socket permitted), bound or configured is [`Reason::Setup`]; a request that
//! cannot be sent is what its error says, else [`Reason::Connect`]; no reply before the deadline
//! is [`Reason::Timeout`].

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::tcp::ser_ip_protocol;
use super::{lookup, Ctx, IpProtocol, Log, Output, Resolved, View};
use crate::diag::FieldError;
use crate::net::classify;
use crate::probe::{Fail, Phases, Reason};

/// blackbox's default `ttl`.
pub const DEFAULT_TTL: i64 = 64;

/// blackbox's `icmp:` module options.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpModule {
    /// `ip4` or `ip6` (default).
    #[serde(serialize_with = "ser_ip_protocol")]
    pub preferred_ip_protocol: IpProtocol,
    /// Use the other family when the preferred one has no address (default true).
    pub ip_protocol_fallback: bool,
    /// Local address to send from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<String>,
    /// Echo payload size in bytes (0: blackbox's 28-byte default payload).
    pub payload_size: usize,
    /// Set the IPv4 don't-fragment bit.
    pub dont_fragment: bool,
    /// TTL / hop limit of the request (0..=255, default 64).
    pub ttl: i64,
}

impl Default for IcmpModule {
    fn default() -> Self {
        IcmpModule {
            preferred_ip_protocol: IpProtocol::Ip6,
            ip_protocol_fallback: true,
            source_ip_address: None,
            payload_size: 0,
            dont_fragment: false,
            ttl: DEFAULT_TTL,
        }
    }
}

impl IcmpModule {
    /// Checks what serde cannot: `ttl` range, the source address.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.ttl < 0 {
            return Err(FieldError::new("icmp.ttl", "\"ttl\" cannot be negative"));
        }
        if self.ttl > 255 {
            return Err(FieldError::new("icmp.ttl", "\"ttl\" cannot exceed 255"));
        }
        if self.payload_size > 65_000 {
            return Err(FieldError::new(
                "icmp.payload_size",
                "cannot exceed 65000 bytes",
            ));
        }
        if let Some(src) = &self.source_ip_address {
            src.parse::<std::net::IpAddr>().map_err(|_| {
                FieldError::new(
                    "icmp.source_ip_address",
                    format!("`{src}` is not an IP address"),
                )
            })?;
        }
        Ok(())
    }
}

const DURATION: &str = "probe_icmp_duration_seconds";
const DURATION_HELP: &str = "Duration of icmp request by phase";
/// blackbox's echo payload.
const PAYLOAD: &[u8] = b"Prometheus Blackbox Exporter";

/// The echo identifier: the PID, or a random value when running as PID 1 (containers), so that
/// several instances do not clash (as blackbox does).
fn echo_id() -> u16 {
    static ID: OnceLock<u16> = OnceLock::new();
    *ID.get_or_init(|| match std::process::id() {
        1 => random_u16(),
        pid => (pid & 0xffff) as u16,
    })
}

/// The next echo sequence number; starts at a random offset.
fn next_sequence() -> u16 {
    static SEQ: OnceLock<AtomicU16> = OnceLock::new();
    SEQ.get_or_init(|| AtomicU16::new(random_u16()))
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1)
}

fn random_u16() -> u16 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u16
}

/// How the socket was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Unprivileged datagram ICMP socket: the kernel owns the echo id; no IP header.
    Dgram,
    /// Raw socket: IPv4 replies come with their IP header (hence the TTL); IPv6 ones without.
    Raw,
    /// Raw IPv4 socket with `IP_HDRINCL`, to send the don't-fragment bit.
    RawHeader,
}

/// What one icmp probe found, filled in as it goes.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The target's resolution.
    pub resolved: Resolved,
    /// `probe_icmp_duration_seconds{phase="setup"}`: opening the socket and building the
    /// request.
    pub setup: Duration,
    /// `probe_icmp_duration_seconds{phase="rtt"}`: the request written to its reply read.
    pub rtt: Duration,
    /// `probe_icmp_reply_hop_limit`, when the reply carried one.
    pub hop_limit: Option<u8>,
}

impl View for Facts {
    fn render(&self, out: &mut Output) {
        // As blackbox: the resolve phase is the lookup's time once an address was found.
        let resolve = match (self.resolved.ip, self.resolved.lookup) {
            (Some(_), Some(took)) => took,
            _ => Duration::ZERO,
        };
        for (phase, took) in [
            ("resolve", resolve),
            ("setup", self.setup),
            ("rtt", self.rtt),
        ] {
            out.gauge_with(
                DURATION,
                DURATION_HELP,
                &[("phase", phase)],
                took.as_secs_f64(),
            );
        }
        if self.resolved.lookup.is_some() {
            self.resolved.render(out);
        } else {
            self.resolved.render_address(out);
        }
        if let Some(h) = self.hop_limit {
            out.gauge(
                "probe_icmp_reply_hop_limit",
                "Replied packet hop limit (TTL for ipv4)",
                f64::from(h),
            );
        }
    }

    fn phases(&self) -> Phases {
        Phases {
            resolve: self.resolved.lookup.unwrap_or_default(),
            connect: self.setup,
            processing: self.rtt,
            ..Phases::default()
        }
    }
}

/// Runs one ICMP probe, filling in `facts` as it goes.
pub async fn probe(
    module: &IcmpModule,
    ctx: &Ctx,
    facts: &mut Facts,
    log: &mut Log,
) -> Result<(), Fail> {
    let fail = |log: &mut Log, f: Fail| {
        plog!(log, Error, "{}", f.detail);
        Err(f)
    };
    let dst = lookup(
        &ctx.target,
        None,
        module.preferred_ip_protocol,
        module.ip_protocol_fallback,
        ctx,
        &mut facts.resolved,
        log,
    )
    .await?;
    let src: Option<IpAddr> = match &module.source_ip_address {
        None => None,
        Some(s) => match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                let f = Fail::new(
                    Reason::Setup,
                    format!("error parsing source ip address: {s}"),
                );
                return fail(log, f);
            }
        },
    };

    let setup_start = Instant::now();
    let Opened {
        socket,
        mode,
        hop_limit_asked,
    } = match open(dst, src, module) {
        Ok(s) => s,
        Err(e) => {
            let f = Fail::new(Reason::Setup, format!("error listening to socket: {e}"));
            return fail(log, f);
        }
    };
    plog!(log, Debug, "created {mode:?} ICMP socket");
    if let Err(e) = &hop_limit_asked {
        plog!(log, Debug,
            "cannot ask for the reply's hop limit ({e}); probe_icmp_reply_hop_limit will be missing"
        );
    }
    let id = echo_id();
    let seq = next_sequence();
    let data = payload(module.payload_size);
    let echo = echo_request(dst.is_ipv6(), id, seq, &data);
    let packet = if mode == Mode::RawHeader {
        ipv4_with_df(src, dst, ttl_or_default(module.ttl), &echo)
    } else {
        echo
    };
    facts.setup = setup_start.elapsed();
    plog!(log, Debug, "writing echo request id={id} seq={seq}");
    let rtt_start = Instant::now();
    let request = Request {
        mode,
        dst,
        id,
        seq,
        data: &data,
    };
    match tokio::time::timeout_at(ctx.deadline, exchange(&socket, &packet, request)).await {
        Ok(Ok(hop_limit)) => {
            facts.rtt = rtt_start.elapsed();
            facts.hop_limit = hop_limit;
            if hop_limit.is_none() && hop_limit_asked.is_ok() {
                plog!(
                    log,
                    Debug,
                    "the reply carried no hop limit; probe_icmp_reply_hop_limit will be missing"
                );
            }
            plog!(log, Debug, "found matching reply packet");
            Ok(())
        }
        Ok(Err(f)) => fail(log, f),
        Err(_) => fail(
            log,
            Fail::new(Reason::Timeout, "timeout reading from socket"),
        ),
    }
}

/// The echo payload: blackbox's text, or `size` bytes starting with it (0: the text alone).
fn payload(size: usize) -> Vec<u8> {
    if size == 0 {
        return PAYLOAD.to_vec();
    }
    let mut d = vec![0u8; size];
    let n = PAYLOAD.len().min(d.len());
    d[..n].copy_from_slice(&PAYLOAD[..n]);
    d
}

/// What identifies the reply to one echo request.
#[derive(Debug, Clone, Copy)]
struct Request<'a> {
    mode: Mode,
    dst: IpAddr,
    id: u16,
    seq: u16,
    data: &'a [u8],
}

/// Sends `packet` and reads until the reply to `req` comes; its hop limit when known. A send
/// that fails is what its error says, else [`Reason::Connect`].
async fn exchange(socket: &UdpSocket, packet: &[u8], req: Request<'_>) -> Result<Option<u8>, Fail> {
    socket
        .send_to(packet, SocketAddr::new(req.dst, 0))
        .await
        .map_err(|e| {
            Fail::new(
                classify(&e).unwrap_or(Reason::Connect),
                format!("error writing to socket: {e}"),
            )
        })?;
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = nix::cmsg_space!(CInt);
    let fd = socket.as_raw_fd();
    loop {
        let read = socket
            .async_io(Interest::READABLE, || receive(fd, &mut buf, &mut cmsg))
            .await;
        let Received {
            len,
            peer,
            hop_limit,
        } = match read {
            Ok(r) => r,
            Err(e) => {
                // blackbox keeps reading after a read error, until the deadline.
                tracing::debug!(error = %e, "error reading from ICMP socket");
                continue;
            }
        };
        if peer != Some(req.dst) {
            continue;
        }
        let v6 = req.dst.is_ipv6();
        if let Some(from_header) = match_reply(&buf[..len], req.mode, v6, req.id, req.seq, req.data)
        {
            return Ok(hop_limit.or(from_header));
        }
    }
}

fn ttl_or_default(ttl: i64) -> u8 {
    u8::try_from(ttl)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(DEFAULT_TTL as u8)
}

/// `c_int`, the type of the `IP_TTL` / `IPV6_HOPLIMIT` control messages' payload.
type CInt = i32;

/// One datagram read with [`receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Received {
    /// Its length.
    len: usize,
    /// Who sent it.
    peer: Option<IpAddr>,
    /// The TTL / hop limit of its IP header, from the control message.
    hop_limit: Option<u8>,
}

/// Reads one datagram into `buf` with its control messages (`recvmsg`); `WouldBlock` when
/// there is none yet.
fn receive(fd: RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> std::io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut hop_limit = None;
    // Truncated control data (ENOBUFS) cannot be read: the hop limit is then unknown.
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::Ipv4Ttl(h) | ControlMessageOwned::Ipv6HopLimit(h) = c {
                hop_limit = u8::try_from(h).ok();
            }
        }
    }
    let peer = msg.address.as_ref().and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| IpAddr::V4(v4.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
    });
    Ok(Received {
        len: msg.bytes,
        peer,
        hop_limit,
    })
}

/// An open ICMP socket.
struct Opened {
    socket: UdpSocket,
    mode: Mode,
    /// Whether the kernel agreed to attach the hop limit to replies (why not, if it refused).
    hop_limit_asked: Result<(), String>,
}

/// Opens the socket: an unprivileged datagram ICMP socket where the system allows it, a raw
/// one otherwise (`dont_fragment` needs a raw IPv4 socket with `IP_HDRINCL`); asks for each
/// reply's TTL / hop limit.
fn open(dst: IpAddr, src: Option<IpAddr>, module: &IcmpModule) -> Result<Opened, String> {
    let (domain, proto) = if dst.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let (socket, mode) = if dst.is_ipv4() && module.dont_fragment {
        let s = Socket::new(domain, Type::RAW, Some(proto))
            .map_err(|e| format!("raw ICMP socket (needed for dont_fragment): {e}"))?;
        s.set_header_included_v4(true)
            .map_err(|e| format!("IP_HDRINCL: {e}"))?;
        (s, Mode::RawHeader)
    } else {
        match Socket::new(domain, Type::DGRAM, Some(proto)) {
            Ok(s) => (s, Mode::Dgram),
            Err(dgram) => match Socket::new(domain, Type::RAW, Some(proto)) {
                Ok(s) => (s, Mode::Raw),
                Err(raw) => {
                    return Err(format!(
                        "unprivileged ICMP socket: {dgram}; raw ICMP socket: {raw} \
                         (allow unprivileged ICMP with sysctl net.ipv4.ping_group_range, \
                         or grant CAP_NET_RAW)"
                    ))
                }
            },
        }
    };
    if let Some(ip) = src {
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| format!("cannot bind to {ip}: {e}"))?;
    }
    if module.ttl > 0 && mode != Mode::RawHeader {
        let ttl = u32::from(ttl_or_default(module.ttl));
        let set = if dst.is_ipv4() {
            socket.set_ttl_v4(ttl)
        } else {
            socket.set_unicast_hops_v6(ttl)
        };
        set.map_err(|e| format!("cannot set the TTL: {e}"))?;
    }
    let hop_limit_asked = if dst.is_ipv4() {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true).map_err(|e| format!("IP_RECVTTL: {e}"))
    } else {
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)
            .map_err(|e| format!("IPV6_RECVHOPLIMIT: {e}"))
    };
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
    let std_socket: std::net::UdpSocket = socket.into();
    let socket =
        UdpSocket::from_std(std_socket).map_err(|e| format!("cannot register the socket: {e}"))?;
    Ok(Opened {
        socket,
        mode,
        hop_limit_asked,
    })
}

/// An echo request (ICMPv4 type 8 or ICMPv6 type 128). The ICMPv4 checksum is computed here;
/// the kernel computes ICMPv6 checksums itself.
fn echo_request(v6: bool, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + data.len());
    p.push(if v6 { 128 } else { 8 });
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(data);
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// An IPv4 header with the don't-fragment bit, for `IP_HDRINCL` (the kernel fills in the source
/// address when it is unspecified, the id and the header checksum).
fn ipv4_with_df(src: Option<IpAddr>, dst: IpAddr, ttl: u8, icmp: &[u8]) -> Vec<u8> {
    let total = (20 + icmp.len()) as u16;
    let src = match src {
        Some(IpAddr::V4(a)) => a.octets(),
        _ => [0; 4],
    };
    let dst = match dst {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    };
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0]); // id 0, flags DF, fragment offset 0
    h.extend_from_slice(&[ttl, 1, 0, 0]); // TTL, protocol ICMP, checksum
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(icmp);
    h
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `pkt` is the reply to our request; `Some(ttl)` if so, the TTL read from the IP
/// header when the socket delivers it (raw IPv4 sockets).
fn match_reply(
    pkt: &[u8],
    mode: Mode,
    v6: bool,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Option<Option<u8>> {
    let (icmp, hop_limit) = if !v6 && mode != Mode::Dgram {
        let ihl = usize::from(pkt.first()? & 0x0f) * 4;
        if ihl < 20 || pkt.len() < ihl {
            return None;
        }
        (&pkt[ihl..], Some(pkt[8]))
    } else {
        (pkt, None)
    };
    if icmp.len() < 8 {
        return None;
    }
    let reply_type = if v6 { 129 } else { 0 };
    let reply_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    let reply_seq = u16::from_be_bytes([icmp[6], icmp[7]]);
    // Datagram sockets: the kernel chose the id, and only hands us our own replies.
    let id_ok = mode == Mode::Dgram || reply_id == id;
    (icmp[0] == reply_type && icmp[1] == 0 && id_ok && reply_seq == seq && &icmp[8..] == data)
        .then_some(hop_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_an_echo_request_verifies() {
        let p = echo_request(false, 0x1234, 7, PAYLOAD);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn a_raw_ipv4_reply_yields_its_ttl() {
        let mut reply = echo_request(false, 9, 3, b"abc");
        reply[0] = 0;
        let pkt = ipv4_with_df(None, "127.0.0.1".parse().unwrap(), 61, &reply);
        assert_eq!(
            match_reply(&pkt, Mode::Raw, false, 9, 3, b"abc"),
            Some(Some(61))
        );
        assert_eq!(match_reply(&pkt, Mode::Raw, false, 9, 4, b"abc"), None);
        assert_eq!(match_reply(&pkt, Mode::Raw, false, 8, 3, b"abc"), None);
        // Our own request, seen on loopback, is not a reply.
        let req = ipv4_with_df(
            None,
            "127.0.0.1".parse().unwrap(),
            64,
            &echo_request(false, 9, 3, b"abc"),
        );
        assert_eq!(match_reply(&req, Mode::Raw, false, 9, 3, b"abc"), None);
    }

    #[test]
    fn datagram_replies_ignore_the_kernel_chosen_id() {
        let mut reply = echo_request(true, 4242, 5, b"xy");
        reply[0] = 129;
        assert_eq!(
            match_reply(&reply, Mode::Dgram, true, 1, 5, b"xy"),
            Some(None)
        );
        assert_eq!(match_reply(&reply, Mode::Raw, true, 1, 5, b"xy"), None);
        assert_eq!(
            match_reply(&reply[..5], Mode::Dgram, true, 1, 5, b"xy"),
            None
        );
        assert_eq!(match_reply(&[], Mode::Raw, false, 1, 5, b"xy"), None);
    }

    proptest::proptest! {
        #[test]
        fn match_reply_never_panics(pkt in proptest::collection::vec(proptest::num::u8::ANY, 0..64), v6: bool) {
            for mode in [Mode::Dgram, Mode::Raw, Mode::RawHeader] {
                let _ = match_reply(&pkt, mode, v6, 1, 1, b"x");
            }
        }
    }

    /// `receive` reads the TTL / hop limit control messages; UDP sockets carry the same ones as
    /// ICMP sockets, and need no privilege.
    #[test]
    fn receive_reads_the_hop_limit_from_the_control_message() {
        for (local, v6) in [("127.0.0.1:0", false), ("[::1]:0", true)] {
            let rx = std::net::UdpSocket::bind(local).expect("bind receiver");
            rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            let opt = if v6 {
                setsockopt(&rx, sockopt::Ipv6RecvHopLimit, &true)
            } else {
                setsockopt(&rx, sockopt::Ipv4RecvTtl, &true)
            };
            opt.expect("ask for the hop limit");
            let tx = Socket::new(
                if v6 { Domain::IPV6 } else { Domain::IPV4 },
                Type::DGRAM,
                None,
            )
            .expect("sender");
            if v6 {
                tx.set_unicast_hops_v6(7).expect("hops");
            } else {
                tx.set_ttl_v4(7).expect("ttl");
            }
            let to = rx.local_addr().expect("address");
            tx.send_to(b"ping", &to.into()).expect("send");
            let mut buf = [0u8; 64];
            let mut cmsg = nix::cmsg_space!(CInt);
            let r = receive(rx.as_raw_fd(), &mut buf, &mut cmsg).expect("receive");
            assert_eq!(
                r,
                Received {
                    len: 4,
                    peer: Some(to.ip()),
                    hop_limit: Some(7)
                },
                "{local}"
            );
            // Not asked: no control message, no hop limit.
            let quiet = std::net::UdpSocket::bind(local).expect("bind");
            quiet
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
            tx.send_to(b"x", &quiet.local_addr().expect("address").into())
                .expect("send");
            let r = receive(quiet.as_raw_fd(), &mut buf, &mut cmsg).expect("receive");
            assert_eq!((r.len, r.hop_limit), (1, None), "{local}");
        }
    }

    #[test]
    fn validate_bounds_ttl() {
        let m = IcmpModule {
            ttl: 256,
            ..Default::default()
        };
        assert_eq!(m.validate().unwrap_err().field, "icmp.ttl");
        let m = IcmpModule {
            ttl: -1,
            ..Default::default()
        };
        assert_eq!(m.validate().unwrap_err().field, "icmp.ttl");
        assert!(IcmpModule::default().validate().is_ok());
    }
}
