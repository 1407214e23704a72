//! The connection a client opens: TCP, or TLS over TCP (feature `tls`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::target::Target;
use crate::error::{Error, Kind};

/// A TCP or TLS stream to the server.
#[derive(Debug)]
pub(super) enum Transport {
    Tcp(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// How a connection is opened.
#[derive(Clone, Copy, Debug)]
pub(super) struct Open<'a> {
    pub timeout: Duration,
    /// Offer HTTP/2 in TLS's ALPN (else HTTP/1.1 only).
    pub offer_h2: bool,
    #[cfg(feature = "tls")]
    pub tls: Option<&'a std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
    #[cfg(not(feature = "tls"))]
    pub tls: Option<&'a ()>,
}

impl Transport {
    /// Resolves the host, connects TCP (and TLS for `wss://`), within the
    /// connect timeout.
    pub async fn open(target: &Target, how: Open<'_>) -> Result<Transport, Error> {
        let connecting = async {
            let tcp = TcpStream::connect((target.host.as_str(), target.port))
                .await
                .map_err(Error::io)?;
            // Frames are coalesced by the write buffer already: send each
            // flush at once rather than waiting for an ACK (Nagle).
            tcp.set_nodelay(true).map_err(Error::io)?;
            if !target.tls {
                return Ok(Transport::Tcp(tcp));
            }
            Self::tls(tcp, target, how).await
        };
        tokio::time::timeout(how.timeout, connecting)
            .await
            .map_err(|_| {
                Error::new(Kind::Timeout(
                    "connecting to the server took longer than the connect timeout (client::Builder::connect_timeout)",
                ))
            })?
    }

    #[cfg(feature = "tls")]
    async fn tls(tcp: TcpStream, target: &Target, how: Open<'_>) -> Result<Transport, Error> {
        let config = match how.tls {
            Some(c) => c.clone(),
            None => super::tls::default_config(),
        };
        super::tls::handshake(tcp, &target.host, &config, how.offer_h2)
            .await
            .map(|s| Transport::Tls(Box::new(s)))
    }

    #[cfg(not(feature = "tls"))]
    async fn tls(_: TcpStream, _: &Target, how: Open<'_>) -> Result<Transport, Error> {
        let _ = (how.offer_h2, how.tls);
        Err(super::target::invalid(
            "wss:// needs the `tls` feature of tower-ws",
        ))
    }

    /// Whether TLS's ALPN selected HTTP/2.
    pub fn is_h2(&self) -> bool {
        match self {
            Transport::Tcp(_) => false,
            #[cfg(feature = "tls")]
            Transport::Tls(s) => s.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
