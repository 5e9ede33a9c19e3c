//! watchfire's server in-process with chosen [`ServeOptions`], a request helper that returns
//! headers, and a small PKI (CA, server and client certificates) for the TLS tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use watchfire::runtime::{Runtime, RuntimeOptions};
use watchfire::server::{self, AppState, ServeOptions};

/// watchfire serving a config on one or more loopback listeners; stopped on drop.
pub struct Served {
    /// Where it listens, in the order the listeners were made.
    pub addrs: Vec<SocketAddr>,
    /// The runtime.
    pub runtime: Arc<Runtime>,
    cancel: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Holds the config file (reloads read it).
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serves `yaml` on `listeners` fresh loopback ports with `opts`.
    pub async fn start(yaml: &str, opts: ServeOptions, listeners: usize) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("watchfire.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let cfg = watchfire::config::load(&path).expect("config loads");
        let cancel = CancellationToken::new();
        let ropts = RuntimeOptions {
            precise_timer: false,
            ..RuntimeOptions::default()
        };
        let runtime = Runtime::start(cfg, Some(path), ropts, cancel.clone())
            .await
            .expect("runtime starts");
        let mut ls = Vec::new();
        for _ in 0..listeners {
            ls.push(server::bind("127.0.0.1:0".parse().unwrap()).expect("bind loopback"));
        }
        let addrs = ls.iter().map(|l| l.local_addr().expect("addr")).collect();
        let state = Arc::new(AppState {
            runtime: runtime.clone(),
            registry: prometheus::Registry::new(),
        });
        let c = cancel.clone();
        let server = tokio::spawn(server::serve_with(ls, state, opts, async move {
            c.cancelled().await
        }));
        Served {
            addrs,
            runtime,
            cancel,
            server: Some(server),
            _dir: dir,
        }
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Stops the server and waits for it (bounded).
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops within its grace period")
            .expect("server task")
            .expect("server ends cleanly");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An answer: status, headers, body text.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Body as text.
    pub body: String,
}

/// One request on a fresh plain connection, with `headers`; `Err` on any transport failure or
/// after `limit`.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> Result<Answer, String> {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}

/// A test CA, a server certificate for `localhost`/`127.0.0.1` and a client certificate it
/// signed, written as PEM files in a temporary directory.
pub struct Pki {
    /// The directory holding every file.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM), trusted for both sides.
    pub ca_file: PathBuf,
    /// The server's certificate and key.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate the CA signed, and its key.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

impl Pki {
    /// A fresh PKI.
    pub fn new() -> Pki {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "watchfire test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA cert");
        let leaf = |names: Vec<String>, usage| {
            let mut p = rcgen::CertificateParams::new(names).expect("params");
            p.extended_key_usages = vec![usage];
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &ca).expect("signed");
            (cert.pem(), key.serialize_pem())
        };
        let (scert, skey) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (ccert, ckey) = leaf(
            vec!["scraper.test".into()],
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        Pki {
            ca_file: write("ca.pem", &ca.pem()),
            server_cert: write("server.pem", &scert),
            server_key: write("server-key.pem", &skey),
            client_cert: write("client.pem", &ccert),
            client_key: write("client-key.pem", &ckey),
            dir,
        }
    }

    /// Writes `text` as `name` in the PKI's directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }
}

/// A bcrypt hash of `password` (cost 4: fast enough for tests, and a valid hash all the same).
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash_with_salt(password, 4, [3u8; 16])
        .expect("bcrypt")
        .to_string()
}

/// The `WebSource` of the web config file at `path`, panicking with its errors.
pub fn web_source(path: &Path) -> Arc<watchfire::web::WebSource> {
    Arc::new(watchfire::web::WebSource::load(path).unwrap_or_else(|e| panic!("{e}")))
}
