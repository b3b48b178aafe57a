//! A client socket that is either plain TCP or TLS over TCP, with the STARTTLS upgrade.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A plain or TLS client connection.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Bytes read at most per wake-up.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// One read buffer per runtime thread, shared by every connection it serves: a
    /// connection waiting for data holds no buffer of its own, which keeps idle sessions
    /// small. It is only borrowed inside a single poll, never across an await.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

impl ClientIo {
    /// Waits for data and hands what arrived to `sink` (without copying it into a
    /// per-connection buffer); returns the number of bytes, 0 at end of stream.
    /// Cancel-safe, so it can sit in a `select!`.
    pub async fn read_with(&mut self, mut sink: impl FnMut(&[u8])) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| {
            READ_BUF.with_borrow_mut(|buf| {
                let mut rb = ReadBuf::new(&mut buf[..]);
                let polled = match self {
                    ClientIo::Plain(s) => Pin::new(s).poll_read(cx, &mut rb),
                    ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut rb),
                };
                match polled {
                    Poll::Ready(Ok(())) => {
                        let data = rb.filled();
                        sink(data);
                        Poll::Ready(Ok(data.len()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            })
        })
        .await
    }

    /// Writes everything and flushes it to the socket.
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            ClientIo::Plain(s) => s.write_all(data).await,
            ClientIo::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    /// Shuts the write side down (sends TLS close_notify first when encrypted).
    pub async fn shutdown(&mut self) {
        let _ = match self {
            ClientIo::Plain(s) => s.shutdown().await,
            ClientIo::Tls(s) => s.shutdown().await,
        };
    }

    /// Bytes written to the socket that the peer has not acknowledged yet: see
    /// [`unacknowledged`].
    pub fn unacknowledged(&self) -> Option<u32> {
        match self {
            ClientIo::Plain(s) => unacknowledged(socket_of(s)),
            ClientIo::Tls(s) => unacknowledged(socket_of(s.get_ref().0)),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, ClientIo::Tls(_))
    }
}

/// The socket of a connection, for [`unacknowledged`].
#[cfg(unix)]
pub type SocketId = std::os::fd::RawFd;
#[cfg(not(unix))]
pub type SocketId = ();

/// The socket of a TCP stream.
pub fn socket_of(s: &TcpStream) -> SocketId {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd as _;
        s.as_raw_fd()
    }
    #[cfg(not(unix))]
    {
        let _ = s;
    }
}

/// Bytes written to a connection's socket that the peer has not acknowledged yet (Linux'
/// `SIOCOUTQ`): while it shrinks, the peer is still taking what was written. `None`
/// where the system does not tell. `socket` must belong to a connection still open.
pub fn unacknowledged(socket: SocketId) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) on an open TCP socket writes one int through the
        // pointer, which points at a live `c_int`.
        let r = unsafe { libc::ioctl(socket, libc::TIOCOUTQ, &mut queued) };
        (r == 0).then_some(queued.max(0) as u32)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}
