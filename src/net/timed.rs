//! Timing marks on a probe's connection: an IO wrapper that stamps the last write of the
//! request and the first read of the answer, which the `processing` phase is measured between.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When the request was last written and when the first answer byte arrived.
#[derive(Debug)]
pub struct Marks {
    epoch: Instant,
    /// Nanoseconds after `epoch` + 1 (0 = not yet).
    written: AtomicU64,
    first_read: AtomicU64,
}

impl Default for Marks {
    fn default() -> Self {
        Marks::new()
    }
}

impl Marks {
    /// No marks yet; times are taken from now.
    pub fn new() -> Marks {
        Marks {
            epoch: Instant::now(),
            written: AtomicU64::new(0),
            first_read: AtomicU64::new(0),
        }
    }

    /// Clears both marks, for the next request on a kept-alive connection.
    pub fn reset(&self) {
        self.written.store(0, Ordering::Relaxed);
        self.first_read.store(0, Ordering::Relaxed);
    }

    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    fn get(&self, v: &AtomicU64) -> Option<Instant> {
        match v.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }

    /// When the request was last written to, if it was.
    pub fn written(&self) -> Option<Instant> {
        self.get(&self.written)
    }

    /// When the first byte of the answer was read, if it was.
    pub fn first_read(&self) -> Option<Instant> {
        self.get(&self.first_read)
    }
}

/// An IO wrapper that stamps the last write before the answer and the first read of it.
pub struct TimedIo<T> {
    /// The connection.
    pub inner: T,
    /// Where the marks are stamped (shared with the prober that reads them).
    pub marks: Arc<Marks>,
    /// Fresh connections are closed with `SO_LINGER` 0 when dropped; a `shutdown(SHUT_WR)` first
    /// would cost a syscall per probe (~12 µs measured) and a FIN that leaves the server in
    /// TIME_WAIT for nothing. Kept-alive connections shut down normally.
    pub skip_shutdown: bool,
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let m = &self.marks;
            if m.first_read.load(Ordering::Relaxed) == 0 {
                m.first_read.store(m.stamp(), Ordering::Relaxed);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            let m = &self.marks;
            if m.first_read.load(Ordering::Relaxed) == 0 {
                m.written.store(m.stamp(), Ordering::Relaxed);
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            let m = &self.marks;
            if m.first_read.load(Ordering::Relaxed) == 0 {
                m.written.store(m.stamp(), Ordering::Relaxed);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.skip_shutdown {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
