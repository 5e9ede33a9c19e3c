//! Loopback servers for the tcp, dns and grpc prober tests (hermetic and differential): an
//! SMTP-like banner server with STARTTLS, a TLS banner server, a DNS server on UDP and TCP, gRPC
//! health servers (plain, TLS, with a required metadata token, without the health service), a
//! listener that closes every connection, an HTTPS server, client certificates for servers that
//! require them (mutual TLS), servers on unix sockets and scripted line dialogues. All bind
//! 127.0.0.1:0 (or a socket in a temporary directory); each stops when dropped.

#![allow(dead_code)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

mod dialogues;
// Not every test crate that includes these servers uses the dialogues.
#[allow(unused_imports)]
pub use dialogues::*;

/// A running server; its tasks are aborted on drop.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1, its server config and its PEM.
pub struct Cert {
    /// Server config with that certificate.
    pub server: Arc<rustls::ServerConfig>,
    /// The certificate (PEM), to trust as `ca_file`.
    pub pem: String,
    /// A file holding `pem` (kept alive with this value).
    pub ca_file: tempfile::NamedTempFile,
}

/// A fresh self-signed certificate (`alpn`: the server's ALPN protocols).
pub fn self_signed(alpn: &[&[u8]]) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .expect("server certificate");
    finish_cert(cfg, &ck.cert, alpn)
}

/// `cfg` with `alpn`, as a [`Cert`]: the server config, its certificate's PEM and a CA file
/// holding that PEM (the certificate is its own CA).
fn finish_cert(mut cfg: rustls::ServerConfig, cert: &rcgen::Certificate, alpn: &[&[u8]]) -> Cert {
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let pem = cert.pem();
    let mut ca_file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut ca_file, pem.as_bytes()).expect("write CA file");
    Cert {
        server: Arc::new(cfg),
        pem,
        ca_file,
    }
}

/// Client certificates for mutual TLS: a test CA, a client certificate it signed and one it did
/// not (self-signed), each with its key, as PEM files in a temporary directory.
pub struct ClientPki {
    /// The CA's certificate (what a server requiring client certificates trusts).
    pub ca: rustls::pki_types::CertificateDer<'static>,
    /// The signed client certificate (PEM file).
    pub cert_file: std::path::PathBuf,
    /// Its private key (PEM file).
    pub key_file: std::path::PathBuf,
    /// A client certificate the CA did not sign (PEM file).
    pub stranger_cert_file: std::path::PathBuf,
    /// Its private key (PEM file).
    pub stranger_key_file: std::path::PathBuf,
    /// Holds the files.
    pub dir: tempfile::TempDir,
}

/// A fresh [`ClientPki`].
pub fn client_pki() -> ClientPki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "watchfire test client CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
    let mut params =
        rcgen::CertificateParams::new(vec!["prober.test".to_string()]).expect("client params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "watchfire prober");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("client key");
    let cert = params.signed_by(&key, &ca).expect("client certificate");
    let stranger = rcgen::generate_simple_self_signed(vec!["stranger.test".into()])
        .expect("stranger certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write PEM");
        p
    };
    ClientPki {
        ca: ca.der().clone(),
        cert_file: write("client.pem", cert.pem()),
        key_file: write("client-key.pem", key.serialize_pem()),
        stranger_cert_file: write("stranger.pem", stranger.cert.pem()),
        stranger_key_file: write("stranger-key.pem", stranger.signing_key.serialize_pem()),
        dir,
    }
}

/// Like [`self_signed`], but the server requires a client certificate signed by `pki`'s CA.
pub fn self_signed_requiring_client(alpn: &[&[u8]], pki: &ClientPki) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("client CA");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("client verifier");
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server certificate");
    finish_cert(cfg, &ck.cert, alpn)
}

/// HTTPS on 127.0.0.1:0 with `cert`'s config: every request is answered `200 OK`, body
/// `mtls ok` (one request per connection).
pub async fn https_ok(cert: &Cert) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    tcp_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(tls) = acceptor.accept(s).await else {
                return;
            };
            let mut r = BufReader::new(tls);
            let mut line = String::new();
            // The request head ends with an empty line.
            loop {
                line.clear();
                match r.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" || line == "\n" => break,
                    Ok(_) => {}
                }
            }
            let _ = r
                .get_mut()
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nmtls ok",
                )
                .await;
            let _ = r.get_mut().shutdown().await;
        }
    })
    .await
}

/// Accepts TCP connections on 127.0.0.1:0 and runs `handle` on each.
pub async fn tcp_server<F, Fut>(handle: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handle(s));
        }
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// An SMTP-like dialogue:
///
/// ```text
/// S: 220 mx.test ESMTP ready
/// C: EHLO mx.test            (anything else: 500)
/// S: 250 STARTTLS
/// C: STARTTLS
/// S: 220 go ahead            then TLS
/// S: 250 tls-ok mx.test      (over TLS)
/// ```
pub async fn smtp(cert: &Cert) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    tcp_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            let mut r = BufReader::new(s);
            if r.get_mut()
                .write_all(b"220 mx.test ESMTP ready\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut line = String::new();
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            if line.trim_end() != "EHLO mx.test" {
                let _ = r.get_mut().write_all(b"500 bad greeting\r\n").await;
                return;
            }
            let _ = r.get_mut().write_all(b"250 STARTTLS\r\n").await;
            line.clear();
            if r.read_line(&mut line).await.is_err() || line.trim_end() != "STARTTLS" {
                return;
            }
            let _ = r.get_mut().write_all(b"220 go ahead\r\n").await;
            let Ok(mut tls) = acceptor.accept(r.into_inner()).await else {
                return;
            };
            let _ = tls.write_all(b"250 tls-ok mx.test\r\n").await;
            let _ = tls.flush().await;
            // Wait for the client to go away.
            let mut sink = [0u8; 64];
            let _ = tls.read(&mut sink).await;
        }
    })
    .await
}

/// TLS from the first byte, then `220 tls banner`.
pub async fn tls_banner(cert: &Cert) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    tcp_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(s).await else {
                return;
            };
            let _ = tls.write_all(b"220 tls banner\r\n").await;
            let _ = tls.flush().await;
            let mut sink = [0u8; 64];
            let _ = tls.read(&mut sink).await;
        }
    })
    .await
}

/// Accepts, reads whatever comes and says nothing until the client leaves.
pub async fn silent() -> Server {
    tcp_server(|mut s| async move {
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
}

/// Accepts and closes at once (not HTTP/2, not anything).
pub async fn closing() -> Server {
    tcp_server(|s| async move { drop(s) }).await
}

// ---- DNS ----

/// The zone served by [`dns`]:
///
/// - `a.test.` A → 192.0.2.1, 192.0.2.2 (authority: NS ns1.test.; additional: A of ns1.test.)
/// - `a.test.` AAAA → 2001:db8::1
/// - `a.test.` ANY → the two A records
/// - `test.` SOA → serial 2024010101 (authority: NS ns1.test.)
/// - `mx.test.` MX → 10 mail.test.
/// - `txt.test.` TXT → "hello world"
/// - `missing.test.` → NXDOMAIN (authority: the SOA)
/// - `fail.test.` → SERVFAIL
/// - anything else → NOERROR, empty
pub const DNS_SERIAL: u32 = 2_024_010_101;

fn name(s: &str) -> Name {
    Name::from_str(s).expect("a DNS name")
}

fn soa() -> Record {
    Record::from_rdata(
        name("test."),
        300,
        RData::SOA(SOA::new(
            name("ns1.test."),
            name("hostmaster.test."),
            DNS_SERIAL,
            7200,
            3600,
            1_209_600,
            300,
        )),
    )
}

fn ns() -> Record {
    Record::from_rdata(name("test."), 300, RData::NS(NS(name("ns1.test."))))
}

/// The answer to `query`.
pub fn dns_answer(query: &Message) -> Message {
    let mut resp = Message::new();
    resp.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_authoritative(true);
    resp.add_queries(query.queries().to_vec());
    let Some(q) = query.queries().first() else {
        resp.set_response_code(ResponseCode::FormErr);
        return resp;
    };
    let qname = q.name().to_ascii().to_lowercase();
    let a =
        |ip: &str| Record::from_rdata(name("a.test."), 300, RData::A(A(ip.parse().expect("IPv4"))));
    match (qname.as_str(), q.query_type()) {
        ("a.test.", RecordType::A | RecordType::ANY) => {
            resp.add_answer(a("192.0.2.1"));
            resp.add_answer(a("192.0.2.2"));
            resp.add_name_server(ns());
            resp.add_additional(Record::from_rdata(
                name("ns1.test."),
                300,
                RData::A(A("192.0.2.53".parse().expect("IPv4"))),
            ));
        }
        ("a.test.", RecordType::AAAA) => {
            resp.add_answer(Record::from_rdata(
                name("a.test."),
                300,
                RData::AAAA(AAAA("2001:db8::1".parse().expect("IPv6"))),
            ));
        }
        ("test.", RecordType::SOA) => {
            resp.add_answer(soa());
            resp.add_name_server(ns());
        }
        ("mx.test.", RecordType::MX) => {
            resp.add_answer(Record::from_rdata(
                name("mx.test."),
                300,
                RData::MX(MX::new(10, name("mail.test."))),
            ));
        }
        ("txt.test.", RecordType::TXT) => {
            resp.add_answer(Record::from_rdata(
                name("txt.test."),
                300,
                RData::TXT(TXT::new(vec!["hello world".into()])),
            ));
        }
        ("missing.test.", _) => {
            resp.set_response_code(ResponseCode::NXDomain);
            resp.add_name_server(soa());
        }
        ("fail.test.", _) => {
            resp.set_response_code(ResponseCode::ServFail);
        }
        _ => {}
    }
    resp
}

/// A DNS server for [`dns_answer`]'s zone on UDP and TCP, on one port of 127.0.0.1.
pub async fn dns() -> Server {
    // UDP and TCP on the same port; retry on the rare clash.
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr = udp.local_addr().expect("local address");
        let Ok(tcp) = TcpListener::bind(addr).await else {
            continue;
        };
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Ok(wire) = dns_answer(&q).to_vec() {
                    let _ = udp.send_to(&wire, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((s, _)) = tcp.accept().await {
                tokio::spawn(dns_stream(s));
            }
        });
        return Server {
            addr,
            tasks: vec![udp_task, tcp_task],
        };
    }
    panic!("no port free on both UDP and TCP");
}

/// Answers length-prefixed DNS messages on a stream until it ends.
async fn dns_stream<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Ok(q) = Message::from_vec(&buf) else {
            return;
        };
        let Ok(wire) = dns_answer(&q).to_vec() else {
            return;
        };
        let mut framed = (wire.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&wire);
        if s.write_all(&framed).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// The DNS server of [`dns`] over TLS (DNS over TLS, RFC 7858), TCP only.
pub async fn dns_over_tls(cert: &Cert) -> Server {
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    tcp_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(tls) = acceptor.accept(s).await {
                dns_stream(tls).await;
            }
        }
    })
    .await
}

// ---- gRPC ----

/// Services registered in the health servers.
pub const GRPC_SERVING: &str = "ok.Service";
/// Registered as NOT_SERVING.
pub const GRPC_NOT_SERVING: &str = "down.Service";
/// The metadata [`grpc_health_with_token`] requires.
pub const GRPC_TOKEN: (&str, &str) = ("x-probe-token", "s3cret");

async fn health_service(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(GRPC_SERVING, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(GRPC_NOT_SERVING, tonic_health::ServingStatus::NotServing)
        .await;
    // The statuses live in the service; the reporter may go.
    drop(reporter);
    service
}

/// A plain gRPC server with the standard health service ("" and [`GRPC_SERVING`] SERVING,
/// [`GRPC_NOT_SERVING`] NOT_SERVING).
pub async fn grpc_health() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let svc = health_service().await;
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(svc, tonic::transport::server::TcpIncoming::from(listener))
            .await;
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// Like [`grpc_health`], but every call must carry the [`GRPC_TOKEN`] metadata
/// (else `UNAUTHENTICATED`).
pub async fn grpc_health_with_token() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let svc = health_service().await;
    let check = |req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
        match req.metadata().get(GRPC_TOKEN.0) {
            Some(v) if v == GRPC_TOKEN.1 => Ok(req),
            _ => Err(tonic::Status::unauthenticated("no token")),
        }
    };
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(
                tonic::service::interceptor::InterceptedService::new(svc, check),
                tonic::transport::server::TcpIncoming::from(listener),
            )
            .await;
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// A gRPC server with no services at all (every call: `UNIMPLEMENTED`).
pub async fn grpc_without_health() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(
                Unimplemented,
                tonic::transport::server::TcpIncoming::from(listener),
            )
            .await;
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// Answers every call with `UNIMPLEMENTED`, like a gRPC server without the called service.
#[derive(Clone)]
struct Unimplemented;

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Unimplemented {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        std::future::ready(Ok(
            tonic::Status::unimplemented("no such service").into_http()
        ))
    }
}

/// A TLS stream tonic can serve.
struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for TlsConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The health server of [`grpc_health`] over TLS (`cert` must offer ALPN `h2`).
pub async fn grpc_health_tls(cert: &Cert) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let acceptor = tokio_rustls::TlsAcceptor::from(cert.server.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<TlsConn, std::io::Error>>(16);
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    let _ = tx.send(Ok(TlsConn(tls))).await;
                }
            });
        }
    });
    let svc = health_service().await;
    let serve = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .serve_with_incoming(svc, ReceiverStream::new(rx))
            .await;
    });
    Server {
        addr,
        tasks: vec![accept, serve],
    }
}

/// `host:port` of a loopback address.
pub fn target(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(_) => addr.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

// ---- failure modes for the dns and grpc reasons ----

/// Answers every UDP datagram with bytes that are not a DNS message.
pub async fn dns_garbage() -> Server {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let addr = udp.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((_, peer)) = udp.recv_from(&mut buf).await {
            let _ = udp.send_to(b"\x00\x01not dns", peer).await;
        }
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// A UDP socket that reads every datagram and never answers.
pub async fn udp_silent() -> Server {
    let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
    let addr = udp.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while udp.recv_from(&mut buf).await.is_ok() {}
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// An HTTP/1.1 server (not gRPC, not HTTP/2): answers whatever arrives with
/// `400 Bad Request`, then reads until the client leaves.
pub async fn http1_bad_request() -> Server {
    tcp_server(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
}

// ---- tcp prober failure modes ----

/// Reads `want` bytes (less if the client closes first), answers `reply`, then waits for the
/// client to leave (a PostgreSQL-like SSLRequest exchange, for `expect_bytes`).
pub async fn answers_after(want: usize, reply: &'static [u8]) -> Server {
    tcp_server(move |mut s| async move {
        let mut got = vec![0u8; want];
        if s.read_exact(&mut got).await.is_err() {
            return;
        }
        let _ = s.write_all(reply).await;
        let mut sink = [0u8; 1024];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await
}

/// A listener that never accepts, with its accept queue filled: a further connect gets no
/// answer to its SYN (Linux drops it), so it lasts until the client gives up.
pub async fn full_backlog() -> Server {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let addr = socket.local_addr().expect("local address");
    let listener = socket.listen(1).expect("listen");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            TcpStream::connect(addr),
        );
        match attempt.await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filling the accept queue of {addr}: {e}"),
            // A connect that gets no answer: the queue is full.
            Err(_) => break,
        }
    }
    let task = tokio::spawn(async move {
        let _keep = (listener, fillers);
        std::future::pending::<()>().await;
    });
    Server {
        addr,
        tasks: vec![task],
    }
}

/// Sends `data` at once, then waits for the client to leave.
pub async fn sends(data: Vec<u8>) -> Server {
    let data = Arc::new(data);
    tcp_server(move |mut s| {
        let data = data.clone();
        async move {
            let _ = s.write_all(&data).await;
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

/// Sends `220 hello` and then resets the connection (RST: linger 0) once the client sends
/// anything.
pub async fn resetting() -> Server {
    tcp_server(|mut s| async move {
        let _ = s.write_all(b"220 hello\r\n").await;
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink).await;
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await
}

/// A listener nobody accepts from, its queue full: a new connect gets no answer (its SYN is
/// dropped), so it can only time out. The returned streams hold the queue full.
pub fn unanswering() -> (SocketAddr, std::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    socket.listen(0).expect("listen");
    let listener: std::net::TcpListener = socket.into();
    let addr = listener.local_addr().expect("address");
    let mut held = Vec::new();
    // A backlog of 0 queues one connection or two; the first connect not answered at once
    // shows the queue is full.
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    (addr, listener, held)
}
