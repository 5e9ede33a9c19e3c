//! When a request reached this machine, from the kernel.
//!
//! A scrape's timeout counts from when Prometheus sent it. Under a burst of fresh connections
//! the server gets to each one a little later than the one before (accepting, reading and
//! routing take CPU), so a `/probe` deadline counted from the moment the handler starts drifts
//! later with every request in the burst: 1,500 at once on two cores put the last one ~0.2 s
//! behind the first. The kernel knows better: every listener asks for receive timestamps
//! (`SO_TIMESTAMPNS`, inherited by the connections it accepts), and a connection's first bytes
//! are peeked (`MSG_PEEK`, nothing consumed) for the time they arrived. A request whose first
//! bytes are not there yet when its connection starts, and every later request of a keep-alive
//! connection, count from when the server reads them, which is then close to their arrival.
//! The kernel turns stamping on for the machine a moment after the first socket asks (deferred
//! work), so the first requests after start may count from reading too.

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::net::{TcpListener, TcpStream};

/// When a request arrived: set on every request the server routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrived(pub Instant);

/// Asks the kernel to timestamp what `listener`'s connections receive. A kernel that refuses
/// leaves the server counting from when it reads each request.
pub fn enable(listener: &TcpListener) {
    if let Err(e) = setsockopt(listener, sockopt::ReceiveTimestampns, &true) {
        tracing::debug!(error = %e, "receive timestamps unavailable; deadlines count from reading");
    }
}

/// What a peek at a connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peeked {
    /// Nothing is waiting (or the connection is closed or failed).
    Nothing,
    /// Bytes are waiting; when they arrived, if the kernel stamped them.
    Bytes(Option<Instant>),
}

/// What is waiting on `stream`, and when the first of it arrived. Never waits and consumes
/// nothing. An arrival older than `max_age` (a stamp from a clock step) is not believed.
pub fn peek(stream: &TcpStream, max_age: Duration) -> Peeked {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    // Room for one `cmsghdr` with a `timespec` (32 bytes on 64-bit Linux), with margin.
    let mut space = [0u8; 64];
    let msg = match recvmsg::<SockaddrStorage>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) if m.bytes > 0 => m,
        _ => return Peeked::Nothing,
    };
    let stamp = msg.cmsgs().ok().and_then(|mut cs| {
        cs.find_map(|c| match c {
            ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
            _ => None,
        })
    });
    Peeked::Bytes(
        stamp
            .and_then(|s| age(s, SystemTime::now(), max_age))
            .map(|a| Instant::now() - a),
    )
}

/// How long before `now` the wall-clock `stamp` was, when that is within `max_age`.
fn age(stamp: TimeSpec, now: SystemTime, max_age: Duration) -> Option<Duration> {
    let secs = u64::try_from(stamp.tv_sec()).ok()?;
    let nanos = u32::try_from(stamp.tv_nsec()).ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
    let age = now.duration_since(at).unwrap_or(Duration::ZERO);
    (age <= max_age).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn age_is_the_distance_back_from_now_and_bounded() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let stamp = TimeSpec::new(999, 750_000_000);
        assert_eq!(
            age(stamp, now, Duration::from_secs(5)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(age(stamp, now, Duration::from_millis(100)), None);
        // A stamp from the future (the wall clock stepped back) is an age of zero.
        let ahead = TimeSpec::new(1_001, 0);
        assert_eq!(
            age(ahead, now, Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
    }

    /// A connection on `listener` whose request has been written, and when it was written.
    async fn written(listener: &TcpListener) -> (TcpStream, TcpStream, Instant) {
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(peek(&server, Duration::from_secs(5)), Peeked::Nothing);
        let sent = Instant::now();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        server.readable().await.unwrap();
        (client, server, sent)
    }

    #[tokio::test]
    async fn a_connections_first_bytes_carry_their_arrival() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        enable(&listener);
        // The kernel turns receive timestamps on for the whole machine a moment after the first
        // socket asks (deferred work); until then bytes arrive unstamped. Wait for that moment.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (_c, server, _) = written(&listener).await;
            if peek(&server, Duration::from_secs(5)) != Peeked::Bytes(None) {
                break;
            }
            assert!(
                Instant::now() < until,
                "the kernel never stamped received bytes"
            );
            tokio::task::yield_now().await;
        }
        let (_client, server, sent) = written(&listener).await;
        // Some time passes between the arrival and the peek; the stamp does not move with it.
        std::thread::sleep(Duration::from_millis(50));
        let Peeked::Bytes(Some(arrived)) = peek(&server, Duration::from_secs(5)) else {
            panic!("a stamp")
        };
        let peeked = Instant::now();
        assert!(
            peeked - arrived >= Duration::from_millis(45),
            "the arrival is when the bytes came, not when they were read: {:?} before the peek",
            peeked - arrived
        );
        assert!(arrived + Duration::from_millis(5) >= sent);
        // Nothing was consumed.
        let mut buf = [0u8; 32];
        let n = server.try_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
    }
}
