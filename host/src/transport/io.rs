//! A client socket that is either plain TCP or TLS over TCP, with the STARTTLS upgrade.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A plain or TLS client connection.
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientIo {
    /// Reads some bytes (cancel-safe, so it can sit in a `select!`).
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ClientIo::Plain(s) => s.read(buf).await,
            ClientIo::Tls(s) => s.read(buf).await,
        }
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

    pub fn is_tls(&self) -> bool {
        matches!(self, ClientIo::Tls(_))
    }
}
