//! The first bytes of a connection: which HTTP version it speaks, read
//! under a deadline, and replayed to hyper afterwards.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP version a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Http {
    H1,
    H2,
}

/// Reads until the bytes tell HTTP/1.1 (they stop matching the HTTP/2
/// preface) from HTTP/2 (the whole preface arrived), and returns the
/// transport with those bytes to replay. `None` if the peer closed first.
/// Run it under a timeout: a peer may stop halfway through the preface.
pub(super) async fn sniff<IO: AsyncRead + Unpin>(
    mut io: IO,
) -> io::Result<Option<(Http, Prefixed<IO>)>> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    let http = loop {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        if buf[..filled] != PREFACE[..filled] {
            break Http::H1;
        }
        if filled == PREFACE.len() {
            break Http::H2;
        }
    };
    let prefix = Prefix {
        buf,
        pos: 0,
        len: filled,
    };
    Ok(Some((http, Prefixed { prefix, io })))
}

#[derive(Debug)]
struct Prefix {
    buf: [u8; PREFACE.len()],
    pos: usize,
    len: usize,
}

/// A transport whose first bytes were already read: reads replay them
/// first. Writes, vectored ones too, go straight through.
#[derive(Debug)]
pub(super) struct Prefixed<IO> {
    prefix: Prefix,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let p = &mut self.prefix;
        if p.pos < p.len {
            let n = (p.len - p.pos).min(buf.remaining());
            buf.put_slice(&p.buf[p.pos..p.pos + n]);
            p.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Writes `chunks` one by one into a pipe and sniffs the other end.
    async fn sniff_chunks(chunks: &[&[u8]]) -> Option<(Http, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(1024);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let (http, mut io) = sniff(server).await.unwrap()?;
        let mut replayed = Vec::new();
        io.read_to_end(&mut replayed).await.unwrap();
        Some((http, replayed))
    }

    #[tokio::test]
    async fn tells_http1_at_the_first_byte_that_leaves_the_preface() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniff_chunks(&[get]).await, Some((Http::H1, get.to_vec())));
        // "PRI" shares three bytes with the preface, then parts.
        let odd = b"PRIVATE / HTTP/1.1\r\n\r\n";
        assert_eq!(
            sniff_chunks(&[&odd[..2], &odd[2..]]).await.unwrap().0,
            Http::H1
        );
    }

    #[tokio::test]
    async fn tells_http2_after_the_whole_preface_even_in_pieces() {
        let mut stream = PREFACE.to_vec();
        stream.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let pieces: Vec<&[u8]> = stream.chunks(5).collect();
        assert_eq!(
            sniff_chunks(&pieces).await,
            Some((Http::H2, stream.clone()))
        );
    }

    #[tokio::test]
    async fn a_peer_that_closes_in_the_preface_is_no_connection() {
        assert_eq!(sniff_chunks(&[&PREFACE[..10]]).await, None);
        assert_eq!(sniff_chunks(&[]).await, None);
    }
}
