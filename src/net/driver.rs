//! Driving a hyper client connection: every prober that speaks HTTP over a connection of its
//! own (the native prober, blackbox's http prober) runs the connection's future *beside* what
//! it awaits — the response head, then the body — in the probe's own task. No task is spawned
//! per probe, and the socket closes the moment the probe drops the [`Driver`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's future, boxed (`'a`: it may borrow the probe's IO wrapper).
pub type ConnFuture<'a> = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send + 'a>>;

/// The HTTP/1.1 client options a prober sets.
#[derive(Debug, Clone, Copy)]
pub struct Http1Options {
    /// Largest read buffer, which bounds the response head (status line and headers).
    pub max_buf_size: usize,
    /// Write header names in Title-Case, as Go's client does (blackbox's wire form).
    pub title_case_headers: bool,
}

/// The HTTP/1.1 handshake on `io`: the request sender and the connection's future.
pub async fn handshake_http1<T>(
    io: T,
    opts: Http1Options,
) -> Result<
    (
        http1::SendRequest<Full<Bytes>>,
        http1::Connection<TokioIo<T>, Full<Bytes>>,
    ),
    hyper::Error,
>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    http1::Builder::new()
        .max_buf_size(opts.max_buf_size)
        .title_case_headers(opts.title_case_headers)
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
}

/// A connection being driven beside the probe's own futures, until it ends.
pub struct Driver<'a> {
    fut: Option<ConnFuture<'a>>,
}

impl<'a> Driver<'a> {
    /// Drives `conn` from now on.
    pub fn new(conn: ConnFuture<'a>) -> Driver<'a> {
        Driver { fut: Some(conn) }
    }

    /// Nothing to drive: the connection runs elsewhere (a kept-alive connection's own task).
    pub fn detached() -> Driver<'a> {
        Driver { fut: None }
    }

    /// Awaits `f` while driving the connection. The connection ending cleanly (the server
    /// closed after answering) lets `f` go on; the connection failing first is the error.
    pub async fn drive<F: Future>(&mut self, f: F) -> Result<F::Output, hyper::Error> {
        tokio::pin!(f);
        loop {
            let ended = tokio::select! {
                biased;
                v = &mut f => return Ok(v),
                r = async { self.fut.as_mut().expect("polled only while present").await }, if self.fut.is_some() => r,
            };
            self.fut = None;
            ended?;
        }
    }
}

impl std::fmt::Debug for Driver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("driving", &self.fut.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_clean_end_lets_the_awaited_future_finish_and_a_failure_is_returned() {
        let mut d = Driver::new(Box::pin(async { Ok(()) }));
        assert_eq!(d.drive(async { 7 }).await.expect("no failure"), 7);
        let mut d = Driver::detached();
        assert_eq!(d.drive(async { 8 }).await.expect("nothing driven"), 8);
    }
}
