//! `--web.config.file` (exporter-toolkit's format) on watchfire's server, in-process: basic
//! auth with bcrypt hashes (401 with `WWW-Authenticate: Basic`, 200), response headers, TLS
//! with a real rustls client (reqwest), client certificates required, the TLS version floor,
//! a changed file taking effect, and bad files refused with their file, line and field and
//! without their secrets.

mod common;
#[path = "common/served.rs"]
mod served;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use served::{bcrypt_hash, send, web_source, Pki, Served};
use watchfire::server::ServeOptions;
use watchfire::web::{WebConfig, WebConfigError};

const MODULES: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n";
const T: Duration = Duration::from_secs(5);

async fn start_with(web: &Path) -> Served {
    let opts = ServeOptions {
        web: web_source(web),
        ..ServeOptions::default()
    };
    Served::start(MODULES, opts, 1).await
}

fn basic(user: &str, password: &str) -> String {
    // Standard base64, enough for the ASCII credentials of these tests.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn basic_auth_users_guard_every_endpoint_and_headers_are_added() {
    let pki = Pki::new();
    let web = pki.write(
        "web.yml",
        &format!(
            "basic_auth_users:\n  ops: {}\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            bcrypt_hash("s3cret")
        ),
    );
    let srv = start_with(&web).await;
    for path in ["/-/healthy", "/metrics", "/api/v1/targets", "/"] {
        let r = send(srv.addr(), "GET", path, &[], T).await.unwrap();
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.headers["www-authenticate"], "Basic");
        assert_eq!(r.headers["x-frame-options"], "deny");
        let wrong = basic("ops", "guess");
        let r = send(srv.addr(), "GET", path, &[("authorization", &wrong)], T)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{path} with a wrong password");
        let stranger = basic("eve", "s3cret");
        let r = send(srv.addr(), "GET", path, &[("authorization", &stranger)], T)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{path} for an unknown user");
        let right = basic("ops", "s3cret");
        let r = send(srv.addr(), "GET", path, &[("authorization", &right)], T)
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.headers["x-frame-options"], "deny");
    }
    // State-changing requests need the users too.
    let r = send(srv.addr(), "POST", "/-/reload", &[], T).await.unwrap();
    assert_eq!(r.status, 401);
    let right = basic("ops", "s3cret");
    let r = send(
        srv.addr(),
        "POST",
        "/-/reload",
        &[("authorization", &right)],
        T,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    srv.stop().await;
}

fn tls_yaml(pki: &Pki, extra: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{extra}",
        pki.server_cert.display(),
        pki.server_key.display()
    )
}

fn client(pki: &Pki, addr: SocketAddr, identity: bool) -> reqwest::Client {
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", addr)
        .timeout(T);
    if identity {
        let mut pem = std::fs::read(&pki.client_cert).unwrap();
        pem.extend(std::fs::read(&pki.client_key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_serves_a_real_client_and_plain_http_gets_nothing() {
    let pki = Pki::new();
    let web = pki.write("web.yml", &tls_yaml(&pki, ""));
    let srv = start_with(&web).await;
    let url = format!("https://localhost:{}/-/healthy", srv.addr().port());
    let r = client(&pki, srv.addr(), false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(send(srv.addr(), "GET", "/-/healthy", &[], T).await.is_err());
    srv.stop().await;
}

#[tokio::test]
async fn a_required_client_certificate_is_required() {
    let pki = Pki::new();
    let extra = format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.ca_file.display()
    );
    let web = pki.write("web.yml", &tls_yaml(&pki, &extra));
    let srv = start_with(&web).await;
    let url = format!("https://localhost:{}/metrics", srv.addr().port());
    let without = client(&pki, srv.addr(), false).get(&url).send().await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let with = client(&pki, srv.addr(), true)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_client() {
    let pki = Pki::new();
    let web = pki.write("web.yml", &tls_yaml(&pki, "  min_version: TLS13\n"));
    let srv = start_with(&web).await;
    let url = format!("https://localhost:{}/-/healthy", srv.addr().port());
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let old = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", srv.addr())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(old.get(&url).send().await.is_err());
    let r = client(&pki, srv.addr(), false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn a_changed_web_config_takes_effect_and_a_broken_change_is_ignored() {
    let pki = Pki::new();
    let web = pki.write(
        "web.yml",
        &format!("basic_auth_users:\n  ops: {}\n", bcrypt_hash("one")),
    );
    let srv = start_with(&web).await;
    let one = basic("ops", "one");
    let two = basic("ops", "two");
    let r = send(srv.addr(), "GET", "/metrics", &[("authorization", &one)], T)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  ops: {}\n", bcrypt_hash("two")),
    )
    .unwrap();
    common::eventually(
        Duration::from_secs(5),
        "the new password accepted",
        || async {
            let r = send(srv.addr(), "GET", "/metrics", &[("authorization", &two)], T)
                .await
                .ok()?;
            (r.status == 200).then_some(())
        },
    )
    .await;
    std::fs::write(&web, "basic_auth_users: [not, a, map]\n").unwrap();
    // Each request looks at the file at most once a second; two seconds of answers with the
    // last good config show that the broken one was not taken.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        let r = send(srv.addr(), "GET", "/metrics", &[("authorization", &two)], T)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        tokio::time::sleep(common::POLL_EVERY * 10).await;
    }
    srv.stop().await;
}

fn load_err(pki: &Pki, yaml: &str) -> String {
    let path = pki.write("bad.yml", yaml);
    match WebConfig::load(&path) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("bad.yml"), "names the file: {text}");
            text
        }
    }
}

#[test]
fn bad_web_config_files_are_refused_with_file_line_and_field() {
    let pki = Pki::new();
    let e = load_err(&pki, "tls_server_config:\n  cert_file: a\n  bogus: 1\n");
    assert!(e.contains(":3") && e.contains("bogus"), "{e}");
    let e = load_err(&pki, "basic_auth_users:\n  ops: plaintext-password\n");
    assert!(
        e.contains(":2") && e.contains("basic_auth_users.ops"),
        "{e}"
    );
    assert!(
        !e.contains("plaintext-password"),
        "the secret is not printed: {e}"
    );
    let e = load_err(
        &pki,
        &format!(
            "tls_server_config:\n  cert_file: {}\n",
            pki.server_cert.display()
        ),
    );
    assert!(e.contains("key_file"), "{e}");
    let extra = format!("  client_ca_file: {}\n", pki.ca_file.display());
    let e = load_err(&pki, &tls_yaml(&pki, &extra));
    assert!(
        e.contains("client_ca_file") && e.contains("NoClientCert"),
        "{e}"
    );
    let e = load_err(&pki, &tls_yaml(&pki, "  client_auth_type: Sometimes\n"));
    assert!(
        e.contains("client_auth_type") && e.contains("RequireAndVerifyClientCert"),
        "{e}"
    );
    let e = load_err(
        &pki,
        &tls_yaml(&pki, "  client_auth_type: RequireAndVerifyClientCert\n"),
    );
    assert!(e.contains("needs client_ca_file"), "{e}");
    let e = load_err(
        &pki,
        &tls_yaml(&pki, "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
    );
    assert!(
        e.contains("cipher_suites") && e.contains("TLS_RSA_WITH_RC4_128_SHA"),
        "{e}"
    );
    let e = load_err(&pki, &tls_yaml(&pki, "  min_version: TLS10\n"));
    assert!(e.contains("min_version"), "{e}");
    let e = load_err(&pki, "http_server_config:\n  headers:\n    Set-Cookie: x\n");
    assert!(e.contains("http_server_config.headers.Set-Cookie"), "{e}");
    let key = std::fs::read_to_string(&pki.server_key).unwrap();
    let e = load_err(
        &pki,
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.server_cert.display(),
            pki.ca_file.display()
        ),
    );
    assert!(e.contains("key_file"), "{e}");
    assert!(!e.contains(key.lines().nth(1).unwrap()), "no key material");
    match WebConfig::load(&pki.dir.path().join("missing.yml")) {
        Err(WebConfigError::Read { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn accepted_exporter_toolkit_keys_load() {
    let pki = Pki::new();
    let extra = format!(
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {}\n  min_version: TLS12\n  max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n  curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\nhttp_server_config:\n  http2: true\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
        pki.ca_file.display()
    );
    let path = pki.write("web.yml", &tls_yaml(&pki, &extra));
    let cfg = WebConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.tls());
    assert_eq!(cfg.headers().len(), 1);
    let empty = pki.write("empty.yml", "");
    assert!(!WebConfig::load(&empty).unwrap().tls());
}

#[test]
fn run_refuses_to_start_on_a_bad_web_config() {
    let pki = Pki::new();
    let bad = pki.write("web.yml", "basic_auth_users:\n  ops: nope\n");
    let cfg = pki.write("watchfire.yaml", MODULES);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_watchfire"))
        .args(["run", "--storage.memory", "--config"])
        .arg(&cfg)
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--web.config.file")
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.yml:2") && err.contains("basic_auth_users.ops"),
        "{err}"
    );
}

#[tokio::test]
async fn require_any_client_cert_takes_an_unverified_certificate_but_not_none() {
    let pki = Pki::new();
    // A client certificate no configured CA signed: RequireAnyClientCert asks for one and, as
    // Go does, does not verify it (its signature over the handshake still is).
    let stranger = rcgen::generate_simple_self_signed(vec!["stranger.test".into()]).unwrap();
    let mut identity = stranger.cert.pem().into_bytes();
    identity.extend(stranger.signing_key.serialize_pem().into_bytes());
    let web = pki.write(
        "web.yml",
        &tls_yaml(&pki, "  client_auth_type: RequireAnyClientCert\n"),
    );
    let srv = start_with(&web).await;
    let url = format!("https://localhost:{}/-/healthy", srv.addr().port());
    let without = client(&pki, srv.addr(), false).get(&url).send().await;
    assert!(without.is_err(), "a certificate is required: {without:?}");
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let with = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", srv.addr())
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap();
    let r = with.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}
