//! Unit tests of the failover proxy: hop-by-hop headers, listeners sharing a port, in-flight bounds.

use super::*;
use http::header::HeaderName;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
    let mut h = headers(&[
        ("host", "gw"),
        ("connection", "keep-alive, X-Trace , close"),
        ("keep-alive", "timeout=5"),
        ("x-trace", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("proxy-authorization", "secret"),
        ("proxy-authenticate", "Basic"),
        ("proxy-connection", "keep-alive"),
        ("trailer", "x-sum"),
        ("content-type", "application/json"),
        ("x-keep", "yes"),
    ]);
    strip_hop_by_hop(&mut h);
    let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["content-type", "host", "x-keep"]);
}

#[test]
fn listeners_share_the_port_the_first_one_got() {
    let all = bind("127.0.0.1:0".parse().unwrap(), 3).expect("bind");
    assert_eq!(all.len(), 3);
    let port = all[0].local_addr().unwrap().port();
    assert_ne!(port, 0);
    for l in &all {
        assert_eq!(l.local_addr().unwrap().port(), port);
    }
    // Every one of them accepts: the kernel spreads connections over all of them.
    let mut seen = [false; 3];
    for _ in 0..200 {
        let _c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // A connection waits in exactly one listener's queue: find it.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        'found: loop {
            for (k, l) in all.iter().enumerate() {
                if l.accept().is_ok() {
                    seen[k] = true;
                    break 'found;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no listener got the connection"
            );
            std::thread::yield_now();
        }
        if seen.iter().all(|s| *s) {
            break;
        }
    }
    assert_eq!(seen, [true; 3], "connections reached every listener");
    // A program without SO_REUSEPORT cannot take the port meanwhile.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());
}

#[test]
fn in_flight_slots_are_bounded_and_given_back() {
    let stats = Stats::new(1, 2);
    let a = stats.enter().expect("first slot");
    let b = stats.enter().expect("second slot");
    assert!(stats.enter().is_none(), "a third request is over the bound");
    assert_eq!(
        stats.in_flight.load(Ordering::Relaxed),
        2,
        "a refusal takes no slot"
    );
    drop(a);
    let c = stats.enter().expect("a slot given back is free again");
    drop((b, c));
    assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
}

#[test]
fn a_message_without_hop_by_hop_headers_is_untouched() {
    let mut h = headers(&[("host", "gw"), ("accept", "*/*"), ("accept", "text/plain")]);
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 3);
}
