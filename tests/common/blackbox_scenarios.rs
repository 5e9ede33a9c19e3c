//! The HTTP prober's scenario server for the blackbox tests (see [`Scenarios`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP server (plain and TLS, one handler) with one scenario per path, for the HTTP
/// prober's tests. Raw HTTP/1.x on purpose: it can answer HTTP/1.0, omit `Location`, stall.
///
/// Paths: `/status/NNN`, `/redirect/N` (relative 302s down to `/redirect/0`), `/redirect-abs/N`
/// (absolute), `/loop`, `/no-location`, `/see-other` (303 → `/method`), `/method` (echoes the
/// method), `/body/ok`, `/body/error`, `/headers`, `/gzip`, `/deflate`, `/http10`, `/chunked`,
/// `/slow` (3 s), `/huge` (4 MiB), `/json`, `/json-bad`, `/last-modified`, `/auth` (401 unless
/// `Basic u:p` or `Bearer tok`), `/need-post` (400 unless POST `ping` with `X-Probe: yes`),
/// `/vhost` (421 unless `Host: vhost.example`), `/cookie-set` → `/cookie-check`, `/token` (an
/// OAuth2 token endpoint for `client:secret`). Absolute-form requests are answered by their
/// path, so the server also works as an HTTP proxy.
pub struct Scenarios {
    /// Plain HTTP.
    pub addr: SocketAddr,
    /// TLS (self-signed for `localhost` and `127.0.0.1`).
    pub tls_addr: SocketAddr,
    /// TLS offering HTTP/2 and HTTP/1.1 by ALPN (hyper); answers `200 ok over HTTP/x` anywhere.
    pub h2_addr: SocketAddr,
    /// The certificate, PEM, for `ca_file`.
    pub cert_path: PathBuf,
    /// Request heads received, in order.
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Scenarios {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The body `/huge` sends.
pub const HUGE_LEN: usize = 4 * 1024 * 1024;

/// The text `/gzip` and `/deflate` compress (repeated 100 times).
pub const COMPRESSED_TEXT: &str = "compressed hello world\n";

impl Scenarios {
    /// Starts both listeners on loopback.
    pub async fn start() -> Scenarios {
        let dir = tempfile::tempdir().expect("tempdir");
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("self-signed certificate");
        let cert_path = dir.path().join("scenarios.pem");
        std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
        );
        let tls_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server certificate");
        let mut h2_cfg = tls_cfg.clone();
        h2_cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_cfg));
        let h2_acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(h2_cfg));
        let h2 = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let h2_addr = h2.local_addr().expect("addr");
        let t3 = tokio::spawn(async move {
            while let Ok((s, _)) = h2.accept().await {
                let acc = h2_acceptor.clone();
                tokio::spawn(async move {
                    let Ok(s) = acc.accept(s).await else { return };
                    let is_h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let body = format!("ok over {:?}\n", req.version());
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(s);
                    if is_h2 {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, svc)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .await;
                    }
                });
            }
        });
        let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = plain.local_addr().expect("addr");
        let tls_addr = tls.local_addr().expect("addr");
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r1 = requests.clone();
        let t1 = tokio::spawn(async move {
            while let Ok((s, _)) = plain.accept().await {
                let r = r1.clone();
                tokio::spawn(async move {
                    let _ = scenario(s, addr, r).await;
                });
            }
        });
        let r2 = requests.clone();
        let t2 = tokio::spawn(async move {
            while let Ok((s, _)) = tls.accept().await {
                let (r, acc) = (r2.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Ok(s) = acc.accept(s).await {
                        let _ = scenario(s, addr, r).await;
                    }
                });
            }
        });
        Scenarios {
            addr,
            tls_addr,
            h2_addr,
            cert_path,
            requests,
            _dir: dir,
            tasks: vec![t1, t2, t3],
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn tls_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.tls_addr)
    }

    /// `https://127.0.0.1:PORT{path}` on the HTTP/2 listener.
    pub fn h2_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.h2_addr)
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        self.requests.lock().expect("requests lock").len()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("deflate");
    e.finish().expect("deflate")
}

async fn scenario<S>(
    mut s: S,
    plain: SocketAddr,
    log: Arc<std::sync::Mutex<Vec<String>>>,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    log.lock().expect("requests lock").push(head.clone());
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    // Absolute-form (the server used as an HTTP proxy): answer for the path.
    let path = match path.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string()),
        None => path,
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let hdr = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let want: usize = hdr("content-length").parse().unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < want {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let respond = |status: &str, extra: &[String], body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for h in extra {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        let mut out = r.into_bytes();
        out.extend_from_slice(body);
        out
    };
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let out: Vec<u8> = match seg.as_slice() {
        ["status", code] => respond(
            &format!("{code} Scenario"),
            &[],
            format!("status {code}\n").as_bytes(),
        ),
        ["redirect", n] => {
            let n: u32 = n.parse().unwrap_or(0);
            if n == 0 {
                respond("200 OK", &[], b"redirects done\n")
            } else {
                respond(
                    "302 Found",
                    &[format!("Location: /redirect/{}", n - 1)],
                    b"",
                )
            }
        }
        ["redirect-abs", n] => {
            let n: u32 = n.parse().unwrap_or(1).max(1);
            respond(
                "302 Found",
                &[format!("Location: http://{plain}/redirect/{}", n - 1)],
                b"",
            )
        }
        ["loop"] => respond("302 Found", &["Location: /loop".into()], b"loop\n"),
        ["no-location"] => respond("302 Found", &[], b"nowhere\n"),
        ["see-other"] => respond("303 See Other", &["Location: /method".into()], b""),
        ["method"] => respond("200 OK", &[], method.as_bytes()),
        ["body", "ok"] => respond("200 OK", &[], b"service is healthy\n"),
        ["body", "error"] => respond("200 OK", &[], b"ERROR: database down\n"),
        ["headers"] => respond(
            "200 OK",
            &[
                "X-Version: 1.2.3".into(),
                "X-Multi: a".into(),
                "X-Multi: b".into(),
                "Server: scenarios".into(),
            ],
            b"headers\n",
        ),
        ["gzip"] => respond(
            "200 OK",
            &["Content-Encoding: gzip".into()],
            &gzip(COMPRESSED_TEXT.repeat(100).as_bytes()),
        ),
        ["deflate"] => respond(
            "200 OK",
            &["Content-Encoding: deflate".into()],
            &deflate(COMPRESSED_TEXT.repeat(100).as_bytes()),
        ),
        ["http10"] => {
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold protocol\n".to_vec()
        }
        ["chunked"] => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        ["slow"] => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            respond("200 OK", &[], b"slow\n")
        }
        ["huge"] => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {HUGE_LEN}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await?;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..HUGE_LEN / block.len() {
                if s.write_all(&block).await.is_err() {
                    return Ok(());
                }
            }
            let _ = s.shutdown().await;
            return Ok(());
        }
        ["json"] => respond(
            "200 OK",
            &["Content-Type: application/json".into()],
            br#"{"status":"ok","version":3,"checks":[{"name":"db","ok":true}]}"#,
        ),
        ["json-bad"] => respond("200 OK", &[], b"{not json"),
        ["token"] => {
            let form = String::from_utf8_lossy(&body);
            // client:secret
            if hdr("authorization") == "Basic Y2xpZW50OnNlY3JldA=="
                && form.contains("grant_type=client_credentials")
            {
                respond(
                    "200 OK",
                    &["Content-Type: application/json".into()],
                    br#"{"access_token":"tok","token_type":"bearer","expires_in":3600}"#,
                )
            } else {
                respond("401 Unauthorized", &[], br#"{"error":"invalid_client"}"#)
            }
        }
        ["last-modified"] => respond(
            "200 OK",
            &["Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT".into()],
            b"old\n",
        ),
        ["auth"] => {
            let a = hdr("authorization");
            if a == "Basic dTpw" || a == "Bearer tok" {
                respond("200 OK", &[], b"welcome\n")
            } else {
                respond("401 Unauthorized", &[], b"who are you\n")
            }
        }
        ["need-post"] => {
            if method == "POST" && body == b"ping" && hdr("x-probe") == "yes" {
                respond("200 OK", &[], b"pong\n")
            } else {
                respond("400 Bad Request", &[], b"want POST ping\n")
            }
        }
        ["vhost"] => {
            if hdr("host") == "vhost.example" {
                respond("200 OK", &[], b"vhost\n")
            } else {
                respond("421 Misdirected Request", &[], b"wrong host\n")
            }
        }
        ["cookie-set"] => respond(
            "302 Found",
            &[
                "Set-Cookie: session=abc; Path=/".into(),
                "Location: /cookie-check".into(),
            ],
            b"",
        ),
        ["cookie-check"] => {
            if hdr("cookie").contains("session=abc") {
                respond("200 OK", &[], b"cookie ok\n")
            } else {
                respond("403 Forbidden", &[], b"no cookie\n")
            }
        }
        _ => respond("404 Not Found", &[], b"no such scenario\n"),
    };
    let head_only = method == "HEAD";
    if head_only {
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        s.write_all(&out[..end.unwrap_or(out.len())]).await?;
    } else {
        s.write_all(&out).await?;
    }
    let _ = s.shutdown().await;
    Ok(())
}
