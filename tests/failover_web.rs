//! The failover proxy's listener under `--web.config.file` when its group says
//! `proxy: { web_config: true }`: TLS from a real rustls client (reqwest), basic auth with a
//! bcrypt hash (401 without it, the instance's answer with it),
//! plain HTTP refused; and a group that asks for it without a web config refused at start.

mod common;
#[path = "common/failover.rs"]
mod fixture;
#[path = "common/served.rs"]
mod served;

use std::time::Duration;

use fixture::start_gw;
use served::{bcrypt_hash, web_source, Pki};
use tokio_util::sync::CancellationToken;
use watchfire::config;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::sim::{FaultConfig, Sim};

const T: Duration = Duration::from_secs(5);

fn group_yaml(primary: &str, backup: &str) -> String {
    format!(
        "failover:\n  - name: gw\n    instances: [http://{primary}, http://{backup}]\n    check: {{ path: /health, interval: 200ms, timeout: 150ms }}\n    proxy: {{ listen: \"127.0.0.1:0\", web_config: true }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_serves_tls_and_asks_the_web_configs_users() {
    let primary = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let backup = Sim::start("127.0.0.1:0".parse().unwrap(), FaultConfig::default())
        .await
        .unwrap();
    let pki = Pki::new();
    let web = pki.write(
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  ops: {}\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            bcrypt_hash("s3cret")
        ),
    );
    let yaml = group_yaml(
        &primary.local_addr().to_string(),
        &backup.local_addr().to_string(),
    );
    let opts = RuntimeOptions {
        web: Some(web_source(&web)),
        ..RuntimeOptions::default()
    };
    let (rt, _group, proxy, cancel) = start_gw(&yaml, opts).await;

    let ca = std::fs::read(&pki.ca_file).unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", proxy)
        .no_proxy()
        .timeout(T)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/health", proxy.port());
    let r = client.get(&url).send().await.expect("TLS to the proxy");
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Basic");
    let r = client
        .get(&url)
        .basic_auth("ops", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "a wrong password");
    let r = client
        .get(&url)
        .basic_auth("ops", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "the instance answers through TLS and auth"
    );
    assert!(r.text().await.unwrap().contains("healthy"));

    // Plain HTTP gets no answer from a TLS listener.
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(T)
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{}/health", proxy.port()))
        .send()
        .await;
    assert!(
        r.as_ref().map_or(true, |r| r.status().as_u16() != 200),
        "plain HTTP was served: {r:?}"
    );
    cancel.cancel();
    rt.drain(T).await;
}

#[tokio::test]
async fn a_group_asking_for_the_web_config_without_one_is_refused() {
    let yaml = group_yaml("127.0.0.1:1", "127.0.0.1:2");
    let cfg = config::load_str("failover.yaml", &yaml).expect("config");
    let cancel = CancellationToken::new();
    let Err(e) = Runtime::start(cfg, None, RuntimeOptions::default(), cancel.clone()).await else {
        panic!("a proxy asking for a web config started without one");
    };
    assert!(
        e.contains("proxy.web_config is true but no --web.config.file was given"),
        "{e}"
    );
    cancel.cancel();
}
