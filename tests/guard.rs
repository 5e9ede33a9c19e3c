//! The `/probe` guard (`probe_guard:`): allow and deny by CIDR, host and port, each numeric
//! form of an address normalised before matching, checked again at every redirect hop and for
//! the proxy; scheduled-only modules refused on `/probe` while their scheduled targets still
//! probe; a refusal is a failed probe with reason `policy`, counted on `/metrics`; without a
//! guard nothing changes.

mod common;
#[path = "common/blackbox.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{get, Watchfire};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback HTTP server answering every request with `response` (a whole HTTP/1.1 answer).
async fn serve(response: String) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

fn ok_response() -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into()
}

/// watchfire serving `yaml` (kept alive with its directory).
async fn start(yaml: &str) -> (tempfile::TempDir, Watchfire) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("watchfire.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let wf = Watchfire::start(&path).await;
    (dir, wf)
}

/// `/probe?debug=true` of `target` with `module`: (probe_success, the debug text).
async fn probe(wf: &Watchfire, module: &str, target: &str) -> (bool, String) {
    let enc: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    let r = get(
        wf.addr,
        &format!("/probe?debug=true&module={module}&target={enc}"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ok = r.body.contains("\nprobe_success 1\n");
    assert!(
        ok || r.body.contains("\nprobe_success 0\n"),
        "no probe_success in {}",
        r.body
    );
    (ok, r.body)
}

async fn refusals(wf: &Watchfire) -> f64 {
    let m = get(wf.addr, "/metrics", &[]).await.body;
    common::sample(&m, "watchfire_probe_guard_refusals_total").expect("the refusal counter")
}

const MODULES: &str = "modules:
  tcp_connect:
    prober: tcp
    timeout: 2s
  http_2xx:
    prober: http
    timeout: 2s
    http:
      preferred_ip_protocol: ip4
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_cidr_is_refused_in_every_form_of_the_address() {
    let up = serve(ok_response()).await;
    let yaml = format!("{MODULES}probe_guard:\n  deny:\n    - cidr: 127.0.0.0/8\n");
    let (_d, wf) = start(&yaml).await;
    let port = up.port();
    let forms = [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
    ];
    for form in forms {
        let (ok, text) = probe(&wf, "tcp_connect", &format!("{form}:{port}")).await;
        assert!(!ok, "tcp {form}: {text}");
        assert!(
            text.contains("the probe guard refuses") && text.contains("reason=policy"),
            "tcp {form}: {text}"
        );
        let (ok, text) = probe(&wf, "http_2xx", &format!("http://{form}:{port}/")).await;
        assert!(!ok, "http {form}: {text}");
        assert!(
            text.contains("the probe guard refuses"),
            "http {form}: {text}"
        );
    }
    assert_eq!(refusals(&wf).await, 2.0 * forms.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_rules_admit_only_matching_hosts_and_ports() {
    let up = serve(ok_response()).await;
    let other = serve(ok_response()).await;
    let yaml = format!(
        "{MODULES}probe_guard:\n  allow:\n    - host: localhost\n      ports: [{}]\n",
        up.port()
    );
    let (_d, wf) = start(&yaml).await;
    let (ok, text) = probe(&wf, "http_2xx", &format!("http://localhost:{}/", up.port())).await;
    assert!(ok, "{text}");
    let (ok, text) = probe(
        &wf,
        "http_2xx",
        &format!("http://localhost:{}/", other.port()),
    )
    .await;
    assert!(!ok && text.contains("matches no allow rule"), "{text}");
    // The same address without the allowed name.
    let (ok, text) = probe(&wf, "tcp_connect", &up.to_string()).await;
    assert!(!ok && text.contains("matches no allow rule"), "{text}");
    assert_eq!(refusals(&wf).await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_denied_address_is_refused_at_the_hop() {
    let denied = serve(ok_response()).await;
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: http://2130706433:{}/inside\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        denied.port()
    );
    let start_at = serve(redirect).await;
    let yaml = format!(
        "{MODULES}probe_guard:\n  deny:\n    - cidr: 127.0.0.0/8\n      ports: [{}]\n",
        denied.port()
    );
    let (_d, wf) = start(&yaml).await;
    let (ok, text) = probe(&wf, "http_2xx", &format!("http://{start_at}/")).await;
    assert!(!ok, "{text}");
    assert!(text.contains("Received redirect"), "{text}");
    assert!(
        text.contains(&format!("refuses 127.0.0.1 port {}", denied.port())),
        "{text}"
    );
    assert_eq!(refusals(&wf).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_proxy_is_refused() {
    let proxy = serve(ok_response()).await;
    let up = serve(ok_response()).await;
    let yaml = format!(
        "{MODULES}  via_proxy:\n    prober: http\n    timeout: 2s\n    http:\n      proxy_url: http://{proxy}\n  via_proxy_unresolved:\n    prober: http\n    timeout: 2s\n    http:\n      proxy_url: http://localhost:{}\n      skip_resolve_phase_with_proxy: true\nprobe_guard:\n  deny:\n    - ports: [{}]\n    - cidr: 10.0.0.0/8\n",
        up.port(),
        proxy.port()
    );
    let (_d, wf) = start(&yaml).await;
    let (ok, text) = probe(&wf, "via_proxy", &format!("http://{up}/")).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "port {}: it matches deny rule (ports",
            proxy.port()
        )),
        "{text}"
    );
    // Behind a proxy that resolves the target itself, the target is still checked.
    let (ok, text) = probe(&wf, "via_proxy_unresolved", "http://0x0a000001/").await;
    assert!(!ok && text.contains("refuses 10.0.0.1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_only_module_is_refused_on_probe_but_its_targets_still_probe() {
    let up = serve(ok_response()).await;
    let yaml = format!(
        "{MODULES}  internal:\n    prober: tcp\n    timeout: 1s\ntargets:\n  - name: inside\n    module: internal\n    target: \"{up}\"\n    interval: 100ms\n    timeout: 90ms\nprobe_guard:\n  scheduled_only: [internal]\n"
    );
    let (_d, wf) = start(&yaml).await;
    let (ok, text) = probe(&wf, "internal", &up.to_string()).await;
    assert!(!ok && text.contains("scheduled_only"), "{text}");
    // Other modules are not limited by an empty rule set.
    let (ok, text) = probe(&wf, "tcp_connect", &up.to_string()).await;
    assert!(ok, "{text}");
    common::eventually(
        Duration::from_secs(10),
        "the scheduled target to succeed",
        || {
            let addr = wf.addr;
            async move {
                let m = get(addr, "/metrics", &[]).await.body;
                let ok = "watchfire_probes_total{target=\"inside\",result=\"success\"}";
                common::sample(&m, ok)
                    .is_some_and(|v| v >= 1.0)
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(refusals(&wf).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_are_refused_unless_the_guard_allows_them() {
    let yaml = format!(
        "{MODULES}  sock:\n    prober: unix\n    timeout: 1s\nprobe_guard:\n  deny:\n    - cidr: 10.0.0.0/8\n"
    );
    let (_d, wf) = start(&yaml).await;
    let (ok, text) = probe(&wf, "sock", "/run/watchfire-guard-test.sock").await;
    assert!(!ok && text.contains("unix_sockets is false"), "{text}");
    let allowed = format!("{yaml}  unix_sockets: true\n");
    let (_d2, wf2) = start(&allowed).await;
    let (ok, text) = probe(&wf2, "sock", "/run/watchfire-guard-test.sock").await;
    // Allowed: it runs, and fails only because nothing is there.
    assert!(!ok && !text.contains("probe guard"), "{text}");
    assert_eq!(refusals(&wf).await, 1.0);
    assert_eq!(refusals(&wf2).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_guard_nothing_is_refused() {
    let up = serve(ok_response()).await;
    let (_d, wf) = start(MODULES).await;
    let (ok, text) = probe(&wf, "tcp_connect", &format!("2130706433:{}", up.port())).await;
    assert!(ok, "{text}");
    let (ok, text) = probe(&wf, "http_2xx", &format!("http://{up}/")).await;
    assert!(ok, "{text}");
    assert_eq!(refusals(&wf).await, 0.0);
}

#[test]
fn guard_mistakes_are_config_errors_naming_the_field() {
    let yaml = format!(
        "{MODULES}probe_guard:\n  deny:\n    - cidr: 10.0.0.0/40\n  scheduled_only: [nope]\n"
    );
    let e = watchfire::config::load_str("w.yaml", &yaml)
        .expect_err("bad guard")
        .to_string();
    assert!(e.contains("probe_guard.deny[0].cidr"), "{e}");
    assert!(e.contains("probe_guard.scheduled_only[0]"), "{e}");
}
