//! What a load-generator connection runs on: a TCP socket (HTTP/1.1
//! upgrade) or an HTTP/2 stream (RFC 8441 extended CONNECT), each split
//! into a reading and a writing half without locks.

use std::io::{Error, ErrorKind, Result};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp;

pub enum Transport {
    Tcp(TcpStream),
    H2(H2Recv, SendStream<Bytes>),
}

/// The receiving side of an HTTP/2 stream as a byte stream: flow-control
/// capacity is released as the bytes are read.
pub struct H2Recv {
    recv: RecvStream,
    pending: Bytes,
}

impl H2Recv {
    pub fn new(recv: RecvStream) -> Self {
        H2Recv {
            recv,
            pending: Bytes::new(),
        }
    }
}

pub enum ReadHalf<'a> {
    Tcp(tcp::ReadHalf<'a>),
    H2(&'a mut H2Recv),
}

pub enum WriteHalf<'a> {
    Tcp(tcp::WriteHalf<'a>),
    H2(&'a mut SendStream<Bytes>),
}

impl Transport {
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Transport::Tcp(tcp) => {
                let (r, w) = tcp.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Transport::H2(recv, send) => (ReadHalf::H2(recv), WriteHalf::H2(send)),
        }
    }
}

fn poll_read_h2(h2: &mut H2Recv, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<Result<()>> {
    while h2.pending.is_empty() {
        match ready!(h2.recv.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = h2.recv.flow_control().release_capacity(data.len());
                h2.pending = data;
            }
            Some(Err(e)) => return Poll::Ready(Err(Error::other(e))),
            None => return Poll::Ready(Ok(())), // END_STREAM: EOF
        }
    }
    let n = h2.pending.len().min(buf.remaining());
    buf.put_slice(&h2.pending[..n]);
    h2.pending.advance(n);
    Poll::Ready(Ok(()))
}

/// Sends what HTTP/2 flow control lets through now, waiting for capacity.
fn poll_write_h2(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    send.reserve_capacity(buf.len());
    loop {
        let n = send.capacity().min(buf.len());
        if n > 0 {
            send.send_data(Bytes::copy_from_slice(&buf[..n]), false)
                .map_err(Error::other)?;
            return Poll::Ready(Ok(n));
        }
        match ready!(send.poll_capacity(cx)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(Error::other(e))),
            None => return Poll::Ready(Err(ErrorKind::BrokenPipe.into())),
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::H2(h2) => poll_read_h2(h2, cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::H2(send) => poll_write_h2(send, cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            // The connection task writes DATA frames out on its own.
            WriteHalf::H2(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::H2(send) => {
                Poll::Ready(send.send_data(Bytes::new(), true).map_err(Error::other))
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Result<()>> {
        match self.get_mut() {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::H2(recv, _) => poll_read_h2(recv, cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::H2(_, send) => poll_write_h2(send, cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.get_mut() {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Transport::H2(..) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.get_mut() {
            Transport::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Transport::H2(_, send) => {
                Poll::Ready(send.send_data(Bytes::new(), true).map_err(Error::other))
            }
        }
    }
}
