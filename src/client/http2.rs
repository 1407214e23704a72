//! WebSockets over HTTP/2 (RFC 8441): the extended CONNECT, once the server
//! has announced `SETTINGS_ENABLE_CONNECT_PROTOCOL`, and a pool of HTTP/2
//! connections shared by the WebSockets to one server.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::http1::{head_and_upgrade, http_error};
use super::target::Target;
use crate::error::Error;

/// A request sender on an HTTP/2 connection.
pub(super) type Sender = SendRequest<Empty<Bytes>>;

/// Open HTTP/2 connections that carry WebSockets, by server. Clones share
/// the connections.
#[derive(Clone, Debug, Default)]
pub(super) struct Pool {
    conns: Arc<Mutex<HashMap<Target, Sender>>>,
}

impl Pool {
    /// A live connection to `target`, if one is open.
    pub fn get(&self, target: &Target) -> Option<Sender> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.get(target) {
            Some(s) if !s.is_closed() => Some(s.clone()),
            Some(_) => {
                conns.remove(target);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, target: Target, sender: Sender) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.insert(target, sender);
    }

    pub fn remove(&self, target: &Target) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.remove(target);
    }
}

/// Starts HTTP/2 on `io` (prior knowledge, or ALPN `h2`) and waits for the
/// server's first SETTINGS frame. Returns the sender if the server enabled
/// extended CONNECT, `None` if it did not or does not speak HTTP/2 at all.
pub(super) async fn open<IO>(io: IO) -> Result<Option<Sender>, Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = oneshot::channel();
    let watched = FirstFrame {
        io,
        seen: 0,
        header: [0; 9],
        payload: Vec::new(),
        tx: Some(tx),
    };
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(watched))
            .await
            .map_err(http_error)?;
    tokio::spawn(conn);
    // RFC 8441 §3, §4: "A client MUST NOT send a :protocol pseudo-header
    // unless the server has sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1"; the
    // server's SETTINGS is its first frame (RFC 9113 §3.4). A server that
    // closes or answers in HTTP/1.1 does not speak HTTP/2.
    match rx.await {
        Ok(true) => Ok(Some(sender)),
        Ok(false) | Err(_) => Ok(None),
    }
}

/// Sends the extended CONNECT on an HTTP/2 connection.
pub(super) async fn send(
    sender: &mut Sender,
    req: Request<()>,
) -> Result<(Response<()>, OnUpgrade), Error> {
    sender.ready().await.map_err(http_error)?;
    let res = sender
        .send_request(req.map(|()| Empty::<Bytes>::new()))
        .await
        .map_err(http_error)?;
    Ok(head_and_upgrade(res))
}

/// The largest first SETTINGS frame looked at: the default maximum frame
/// size (RFC 9113 §4.2).
const MAX_SETTINGS: usize = 16_384;

/// SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3).
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The transport under hyper's HTTP/2 connection, reporting whether the
/// server's first frame (its SETTINGS) enables extended CONNECT. hyper
/// exposes that setting only on the connection future it drives, so the
/// frame is read as it passes; after it the wrapper only forwards.
struct FirstFrame<IO> {
    io: IO,
    /// Bytes of the first frame's header seen so far.
    seen: usize,
    header: [u8; 9],
    payload: Vec<u8>,
    tx: Option<oneshot::Sender<bool>>,
}

impl<IO> FirstFrame<IO> {
    fn observe(&mut self, mut bytes: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        if self.seen < 9 {
            let n = (9 - self.seen).min(bytes.len());
            self.header[self.seen..self.seen + n].copy_from_slice(&bytes[..n]);
            self.seen += n;
            bytes = &bytes[n..];
            if self.seen < 9 {
                return;
            }
            if !self.is_settings() {
                self.report(false);
                return;
            }
        }
        let len = self.len();
        let n = (len - self.payload.len()).min(bytes.len());
        self.payload.extend_from_slice(&bytes[..n]);
        if self.payload.len() == len {
            // Parameters are 6 bytes each: identifier, value (RFC 9113 §6.5.1).
            let enabled = self.payload.chunks_exact(6).any(|p| {
                u16::from_be_bytes([p[0], p[1]]) == ENABLE_CONNECT_PROTOCOL
                    && u32::from_be_bytes([p[2], p[3], p[4], p[5]]) == 1
            });
            self.report(enabled);
        }
    }

    fn len(&self) -> usize {
        u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]) as usize
    }

    /// A SETTINGS frame (type 4) without ACK on stream 0, of a sane length.
    fn is_settings(&self) -> bool {
        let h = &self.header;
        h[3] == 0x4
            && h[4] & 0x1 == 0
            && h[5..9] == [0, 0, 0, 0]
            && self.len() % 6 == 0
            && self.len() <= MAX_SETTINGS
    }

    fn report(&mut self, enabled: bool) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(enabled);
        }
        self.payload = Vec::new();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstFrame<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.tx.is_some() {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                // EOF before the first frame: not an HTTP/2 server.
                this.report(false);
            } else {
                this.observe(new);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstFrame<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]]) -> Option<bool> {
        let (tx, mut rx) = oneshot::channel();
        let mut f = FirstFrame {
            io: (),
            seen: 0,
            header: [0; 9],
            payload: Vec::new(),
            tx: Some(tx),
        };
        for c in chunks {
            f.observe(c);
        }
        rx.try_recv().ok()
    }

    /// A SETTINGS frame with the given parameters.
    fn settings(params: &[(u16, u32)]) -> Vec<u8> {
        let len = params.len() * 6;
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            4,
            0,
            0,
            0,
            0,
            0,
        ];
        for (id, v) in params {
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&v.to_be_bytes());
        }
        f
    }

    #[test]
    fn reads_enable_connect_protocol_from_the_first_settings() {
        let on = settings(&[(0x3, 100), (0x8, 1)]);
        assert_eq!(watch(&[&on]), Some(true));
        // Byte by byte, and with the next frame in the same read.
        let pieces: Vec<&[u8]> = on.chunks(1).collect();
        assert_eq!(watch(&pieces), Some(true));
        let mut two = on.clone();
        two.extend_from_slice(&[0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(watch(&[&two]), Some(true));
        assert_eq!(watch(&[&settings(&[(0x8, 0)])]), Some(false));
        assert_eq!(watch(&[&settings(&[])]), Some(false));
        assert_eq!(watch(&[&on[..12]]), None, "incomplete");
    }

    #[test]
    fn an_http1_answer_is_not_http2() {
        assert_eq!(watch(&[b"HTTP/1.1 400 Bad Request\r\n"]), Some(false));
    }
}
