//! Connection limits below HTTP (spec section 6 "Limits"): [`LimitedAcceptor`] caps the open
//! connections (further ones wait in the kernel's accept queue) and closes a connection that has
//! not sent a complete request header (`\r\n\r\n`) within the header timeout, so half-open
//! clients cannot hold sockets. After the first header, poem's idle timeout (no I/O for
//! `http.idle_timeout`) bounds keep-alive connections.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

/// Wraps an acceptor with a connection cap and a request-header deadline.
#[derive(Debug)]
pub struct LimitedAcceptor<A> {
    inner: A,
    slots: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<A> LimitedAcceptor<A> {
    /// At most `max_connections` open at once; each must complete its first request header
    /// within `header_timeout`.
    pub fn new(inner: A, max_connections: usize, header_timeout: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(
                max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            header_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for LimitedAcceptor<A> {
    type Io = LimitedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        // Wait for a free slot before taking the next connection off the queue.
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let io = LimitedIo {
            inner: io,
            _permit: permit,
            deadline: Some(Box::pin(tokio::time::sleep(self.header_timeout))),
            tail: [0; 3],
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection holding its slot; fails reads once the header deadline passes without a
/// complete request header.
#[derive(Debug)]
pub struct LimitedIo<T> {
    inner: T,
    _permit: OwnedSemaphorePermit,
    /// `None` once the first request header is complete.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last three bytes read, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
}

impl<T> LimitedIo<T> {
    /// Looks for the end of the header in `new` (continuing from earlier reads).
    fn scan(&mut self, new: &[u8]) {
        let mut window: Vec<u8> = Vec::with_capacity(3 + new.len());
        window.extend_from_slice(&self.tail);
        window.extend_from_slice(new);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            self.deadline = None;
            return;
        }
        let n = window.len();
        self.tail.copy_from_slice(&window[n - 3..]);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for LimitedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request header within the header timeout",
            )));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && matches!(r, Poll::Ready(Ok(()))) {
            let new = buf.filled()[before..].to_vec();
            this.scan(&new);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LimitedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn header_end_is_found_across_reads() {
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let mut io = LimitedIo {
            inner: tokio::io::empty(),
            _permit: permit,
            deadline: Some(Box::pin(tokio::time::sleep(Duration::from_secs(1)))),
            tail: [0; 3],
        };
        io.scan(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(io.deadline.is_some());
        io.scan(b"\n\r");
        assert!(io.deadline.is_some());
        io.scan(b"\n");
        assert!(io.deadline.is_none());
    }
}
