//! What a WebSocket holds of an unfinished message. tungstenite gathers a message's
//! frames in memory up to its `max_message_size`, fixed when the socket is made; the
//! stream's limit is smaller before authentication and larger after. [`Gauged`] counts
//! the bytes read from the socket since the last complete message and fails the read
//! once they pass the stream's current limit, so a connection that never finishes a
//! message holds no more than that. Before authentication the count also goes to the
//! server-wide total of unauthenticated connections ([`UnauthBuffer`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use heliograph_core::limits::UnauthBuffer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Room for frame headers and what a read brings of the next message.
const SLACK: usize = 16 * 1024;

/// The count shared by the socket wrapper and the link.
#[derive(Debug)]
pub struct Gauge {
    since_message: AtomicUsize,
    limit: AtomicUsize,
    over: AtomicBool,
    /// The server-wide count while unauthenticated.
    unauth: Option<UnauthBuffer>,
    over_total: AtomicBool,
}

impl Gauge {
    /// A gauge allowing messages of `limit` bytes, counting them in `unauth` too.
    pub fn new(limit: usize, unauth: Option<UnauthBuffer>) -> Arc<Gauge> {
        Arc::new(Gauge {
            since_message: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            over: AtomicBool::new(false),
            unauth,
            over_total: AtomicBool::new(false),
        })
    }

    /// The stream's limit changed (it was authenticated).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// A complete message was read: the count starts again.
    pub fn message_read(&self) {
        self.since_message.store(0, Ordering::Relaxed);
        if let Some(unauth) = &self.unauth {
            unauth.hold(0);
        }
    }

    /// True once a read failed because an unfinished message went past the limit.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// True once a read failed because unauthenticated connections held too much
    /// together.
    pub fn is_over_total(&self) -> bool {
        self.over_total.load(Ordering::Relaxed)
    }

    /// Counts `n` bytes read; false when that passes the limit.
    fn read(&self, n: usize) -> bool {
        let held = self.since_message.fetch_add(n, Ordering::Relaxed) + n;
        let limit = self.limit.load(Ordering::Relaxed).saturating_add(SLACK);
        if held > limit {
            self.over.store(true, Ordering::Relaxed);
            return false;
        }
        if let Some(unauth) = &self.unauth
            && !unauth.hold(held)
        {
            self.over_total.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// A socket whose reads are counted by a [`Gauge`].
pub struct Gauged<S> {
    inner: S,
    gauge: Arc<Gauge>,
}

impl<S> Gauged<S> {
    pub fn new(inner: S, gauge: Arc<Gauge>) -> Self {
        Gauged { inner, gauge }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gauged<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if this.gauge.read(n) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::other("unfinished message over the limit")))
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gauged<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_message_past_the_limit_fails_the_read() {
        let gauge = Gauge::new(1000, None);
        assert!(gauge.read(1000 + SLACK));
        gauge.message_read();
        assert!(gauge.read(SLACK));
        assert!(!gauge.read(1001), "over the limit without a message");
        assert!(gauge.is_over());
        let gauge = Gauge::new(1000, None);
        gauge.set_limit(100_000);
        assert!(gauge.read(90_000), "the authenticated limit");
    }
}
