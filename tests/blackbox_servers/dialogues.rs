//! Servers on unix sockets (the unix prober), scripted line dialogues on TCP (plain, TLS, with
//! STARTTLS) and a small HTTP/1.1 site: what upstream's example modules probe.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::{tcp_server, Cert, Server};

/// A server on a unix domain socket in a fresh temporary directory; the task is aborted and
/// the directory removed when dropped.
pub struct UnixServer {
    /// The socket's path.
    pub path: std::path::PathBuf,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl UnixServer {
    /// The socket's path, as a prober target.
    pub fn target(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections on a unix socket and runs `handle` on each.
pub async fn unix_server<F, Fut>(handle: F) -> UnixServer
where
    F: Fn(tokio::net::UnixStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("probe.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix socket");
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(handle(s));
        }
    });
    UnixServer {
        path,
        task,
        _dir: dir,
    }
}

/// Answers each `PING` line with `PONG` until the client leaves (upstream's `unix_socket_ping`
/// example), over TLS when `cert` is given.
pub async fn unix_ping(cert: Option<&Cert>) -> UnixServer {
    let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server.clone()));
    unix_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            match acceptor {
                None => ping_pong(s).await,
                Some(a) => {
                    if let Ok(tls) = a.accept(s).await {
                        ping_pong(tls).await;
                    }
                }
            }
        }
    })
    .await
}

/// The PING / PONG dialogue of [`unix_ping`].
async fn ping_pong<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while matches!(r.read_line(&mut line).await, Ok(n) if n > 0) {
        if line.trim_end() == "PING" && r.get_mut().write_all(b"PONG\n").await.is_err() {
            return;
        }
        let _ = r.get_mut().flush().await;
        line.clear();
    }
}

/// A socket path in a fresh temporary directory where nothing listens: the socket file stays
/// after its listener is closed (a connect is refused).
pub fn stale_unix_socket() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind unix socket"));
    let target = path.to_string_lossy().into_owned();
    (dir, target)
}

/// One step of a [`scripted`] server.
#[derive(Debug, Clone, Copy)]
pub enum Say {
    /// Send these bytes.
    Send(&'static [u8]),
    /// Read one line (whatever it holds).
    Line,
    /// Read exactly this many bytes.
    Bytes(usize),
    /// Switch to TLS (as the first step: TLS from the first byte).
    Tls,
}

/// A TCP server that plays `script` on each connection (TLS steps with `cert`), then reads
/// until the client leaves.
pub async fn scripted(script: &'static [Say], cert: Option<&Cert>) -> Server {
    let acceptor = cert.map(|c| tokio_rustls::TlsAcceptor::from(c.server.clone()));
    tcp_server(move |s| {
        let acceptor = acceptor.clone();
        async move {
            let mut conn: Box<dyn Stream> = Box::new(s);
            for say in script {
                conn = match play(conn, *say, acceptor.as_ref()).await {
                    Some(c) => c,
                    None => return,
                };
            }
            let _ = conn.flush().await;
            let mut sink = [0u8; 1024];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await
}

/// A byte stream, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// One step of [`scripted`]; `None` when the connection is over.
async fn play(
    mut conn: Box<dyn Stream>,
    say: Say,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
) -> Option<Box<dyn Stream>> {
    match say {
        Say::Send(b) => {
            conn.write_all(b).await.ok()?;
            conn.flush().await.ok()?;
        }
        Say::Line => {
            // Byte by byte, so that nothing after the line is read ahead (a STARTTLS follows).
            let mut b = [0u8; 1];
            loop {
                conn.read_exact(&mut b).await.ok()?;
                if b[0] == b'\n' {
                    break;
                }
            }
        }
        Say::Bytes(n) => {
            let mut got = vec![0u8; n];
            conn.read_exact(&mut got).await.ok()?;
        }
        Say::Tls => {
            let tls = acceptor
                .expect("a TLS step needs a certificate")
                .accept(conn);
            return Some(Box::new(tls.await.ok()?));
        }
    }
    Some(conn)
}

/// A request as [`http_site`] saw it.
#[derive(Debug, Clone, Default)]
pub struct SeenRequest {
    /// The request line (`GET / HTTP/1.1`).
    pub line: String,
    /// The header lines, as sent.
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// An HTTP/1.1 server on 127.0.0.1:0 for upstream's example http modules, one request per
/// connection, every request kept in `seen`:
///
/// - `/token` — an OAuth2 token (`{"access_token": ...}`)
/// - `/json` — `{"foo": "bar", "baz": "qux"}`
/// - `/gzip` — a gzip-encoded body (`Content-Encoding: gzip`)
/// - anything else (also in a proxy's absolute form) — `Download the latest version here`, with
///   `Access-Control-Allow-Origin: *`
pub async fn http_site(seen: Arc<std::sync::Mutex<Vec<SeenRequest>>>) -> Server {
    tcp_server(move |s| {
        let seen = seen.clone();
        async move {
            let mut r = BufReader::new(s);
            let Some(req) = read_request(&mut r).await else {
                return;
            };
            let path = req.line.split(' ').nth(1).unwrap_or("/").to_string();
            let path = path.rsplit_once("://").map_or(path.as_str(), |(_, rest)| {
                rest.find('/').map_or("/", |i| &rest[i..])
            });
            let (headers, body): (&str, Vec<u8>) = match path {
                "/token" => (
                    "Content-Type: application/json\r\n",
                    br#"{"access_token":"t0ken","token_type":"Bearer","expires_in":3600}"#.to_vec(),
                ),
                "/json" => (
                    "Content-Type: application/json\r\n",
                    br#"{"foo": "bar", "baz": "qux"}"#.to_vec(),
                ),
                "/gzip" => ("Content-Encoding: gzip\r\n", gzip(b"compressed hello")),
                _ => (
                    "Access-Control-Allow-Origin: *\r\n",
                    b"Download the latest version here".to_vec(),
                ),
            };
            seen.lock().expect("requests").push(req);
            let head = format!(
                "HTTP/1.1 200 OK\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = r.get_mut().write_all(head.as_bytes()).await;
            let _ = r.get_mut().write_all(&body).await;
            let _ = r.get_mut().shutdown().await;
        }
    })
    .await
}

/// Reads a request head and its `Content-Length` body.
async fn read_request(r: &mut BufReader<TcpStream>) -> Option<SeenRequest> {
    let mut req = SeenRequest::default();
    let mut line = String::new();
    r.read_line(&mut line).await.ok()?;
    req.line = line.trim_end().to_string();
    loop {
        line.clear();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        req.headers.push(h.to_string());
    }
    let len = req
        .headers
        .iter()
        .find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    req.body = vec![0u8; len];
    r.read_exact(&mut req.body).await.ok()?;
    Some(req)
}

/// `data`, gzip-compressed.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("compress");
    e.finish().expect("compress")
}
