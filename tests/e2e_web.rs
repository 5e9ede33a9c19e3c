//! `--web.config.file` against a real TLS client: curl (`cargo test --features e2e`; `.ci/run`
//! installs it). A missing curl fails the test loudly: it never passes by skipping.
#![cfg(feature = "e2e")]

mod common;
#[path = "common/served.rs"]
mod served;

use std::path::Path;
use std::process::Command;

use served::{bcrypt_hash, web_source, Pki, Served};
use watchfire::server::ServeOptions;

const MODULES: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n";

/// curl's HTTP status for `args`, or 0 when curl could not complete the request.
fn curl(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .args(args)
        .output()
        .expect("curl must be installed for the e2e tests (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_watchfire_over_tls_with_basic_auth_and_a_client_certificate() {
    let pki = Pki::new();
    let web = pki.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\nbasic_auth_users:\n  ops: {}\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca_file.display(),
            bcrypt_hash("s3cret")
        ),
    );
    let opts = ServeOptions {
        web: web_source(&web),
        ..ServeOptions::default()
    };
    let srv = Served::start(MODULES, opts, 1).await;
    let port = srv.addr().port();
    let url = format!("https://localhost:{port}/metrics");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let (ca, cert, key) = (
        path(&pki.ca_file).to_string(),
        path(&pki.client_cert).to_string(),
        path(&pki.client_key).to_string(),
    );
    let codes = tokio::task::spawn_blocking(move || {
        let with = |extra: &[&str]| {
            let mut args = vec!["--resolve", resolve.as_str(), "--cacert", ca.as_str()];
            args.extend_from_slice(extra);
            args.push(&url);
            curl(&args)
        };
        (
            with(&["--cert", &cert, "--key", &key, "--user", "ops:s3cret"]),
            with(&["--cert", &cert, "--key", &key, "--user", "ops:wrong"]),
            with(&["--cert", &cert, "--key", &key]),
            with(&["--user", "ops:s3cret"]),
        )
    })
    .await
    .expect("curl runs");
    assert_eq!(codes.0, 200, "certificate and password");
    assert_eq!(codes.1, 401, "wrong password");
    assert_eq!(codes.2, 401, "no password");
    assert_eq!(codes.3, 0, "no client certificate: the handshake fails");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_x_post_reloads_and_a_cross_origin_post_does_not() {
    let srv = Served::start(MODULES, ServeOptions::default(), 1).await;
    let url = format!("http://{}/-/reload", srv.addr());
    let u = url.clone();
    let (plain, foreign, form) = tokio::task::spawn_blocking(move || {
        (
            curl(&["-X", "POST", &u]),
            curl(&["-X", "POST", "-H", "Origin: http://evil.example", &u]),
            curl(&["-X", "POST", "-d", "x=1", &u]),
        )
    })
    .await
    .expect("curl runs");
    assert_eq!(plain, 200, "curl -X POST, as the exporter's docs say");
    assert_eq!(foreign, 403);
    assert_eq!(form, 403, "a form body without X-Requested-With");
    srv.stop().await;
}
