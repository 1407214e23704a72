//! The fan-out floor: the least work a broadcast can do on tokio.
//!
//! Every message a client sends is framed once (compressed once, with
//! `--deflate`) and that one buffer is written to every connected client,
//! the sender included, with one non-blocking `send` per socket from the
//! task that read it. Only a socket that cannot take the whole frame gets
//! the rest queued for its own writer task. No limits, no UTF-8 checks, no
//! per-client queue in the common case: a yardstick, not a server.
//!
//!   floor_fanout HOST:PORT [--deflate]
//!
//! With `--deflate`, permessage-deflate is agreed without context takeover
//! either way, so one compressed frame suits every client, and a frame the
//! client compressed is passed on as it is.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use flate2::{Compress, Compression, FlushCompress};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_ws_bench::floor::{DEFLATE_ANSWER, parse_client_header, upgrade, write_len};
use tower_ws_bench::{MAX_MESSAGE, announce, listen_addr, runtime, unmask};

const READ_CHUNK: usize = 64 * 1024;

/// One connected client.
struct Peer {
    tcp: TcpStream,
    /// Bytes the socket did not take yet (empty almost always).
    backlog: RefCell<Vec<u8>>,
    wake: Notify,
    closed: Cell<bool>,
    deflate: bool,
}

impl Peer {
    /// One frame to this client: straight to the socket when nothing is
    /// queued ahead of it, else after the rest.
    fn send(&self, frame: &[u8]) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            match self.tcp.try_write(frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => backlog.extend_from_slice(&frame[n..]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    backlog.extend_from_slice(frame)
                }
                Err(_) => return,
            }
            self.wake.notify_one();
        } else {
            backlog.extend_from_slice(frame);
        }
    }

    /// The writer task: flushes the backlog whenever there is one.
    async fn flush(self: Rc<Self>) {
        while !self.closed.get() {
            self.wake.notified().await;
            while !self.backlog.borrow().is_empty() {
                if self.tcp.writable().await.is_err() {
                    return;
                }
                let written = self.tcp.try_write(&self.backlog.borrow());
                match written {
                    Ok(n) => drop(self.backlog.borrow_mut().drain(..n)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        }
    }
}

/// Every connected client, and the frame being broadcast.
#[derive(Default)]
struct Hub {
    peers: RefCell<Vec<Rc<Peer>>>,
}

impl Hub {
    fn broadcast(&self, frame: &[u8], compressed: Option<&[u8]>) {
        for peer in self.peers.borrow().iter() {
            match compressed {
                Some(c) if peer.deflate => peer.send(c),
                _ => peer.send(frame),
            }
        }
    }

    fn remove(&self, peer: &Rc<Peer>) {
        self.peers.borrow_mut().retain(|p| !Rc::ptr_eq(p, peer));
    }
}

fn main() {
    let deflate = std::env::args().any(|a| a == "--deflate");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime(), async move {
        let listener = tokio::net::TcpListener::bind(listen_addr())
            .await
            .expect("bind");
        announce(listener.local_addr().unwrap());
        let hub = Rc::new(Hub::default());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::task::spawn_local(serve(tcp, hub.clone(), deflate));
        }
    });
}

async fn serve(mut tcp: TcpStream, hub: Rc<Hub>, deflate: bool) {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let answer = deflate.then_some(DEFLATE_ANSWER);
    let Ok(Some(agreed)) = upgrade(&mut tcp, &mut buf, answer).await else {
        return;
    };
    let peer = Rc::new(Peer {
        tcp,
        backlog: RefCell::default(),
        wake: Notify::new(),
        closed: Cell::new(false),
        deflate: agreed,
    });
    hub.peers.borrow_mut().push(peer.clone());
    tokio::task::spawn_local(peer.clone().flush());
    let mut out = Out::new(deflate);
    while let Some(consumed) = out.frames(&mut buf, &hub, &peer) {
        buf.drain(..consumed);
        let pending = parse_client_header(&buf).map_or(0, |(h, len, _)| (h + len).min(MAX_MESSAGE));
        buf.reserve(pending.saturating_sub(buf.len()).max(READ_CHUNK / 2));
        if peer.tcp.readable().await.is_err() {
            break;
        }
        match peer.tcp.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    hub.remove(&peer);
    peer.closed.set(true);
    peer.wake.notify_one();
}

/// Reused output buffers: the frame as sent, and its compressed twin.
struct Out {
    frame: Vec<u8>,
    compressed: Option<(Compress, Vec<u8>)>,
}

impl Out {
    fn new(deflate: bool) -> Self {
        Out {
            frame: Vec::new(),
            compressed: deflate.then(|| (Compress::new(Compression::default(), false), Vec::new())),
        }
    }

    /// Handles every complete frame at the front of `buf`: data frames are
    /// broadcast, a ping is answered, a close is returned (`None`). Returns
    /// the bytes consumed.
    fn frames(&mut self, buf: &mut [u8], hub: &Hub, from: &Peer) -> Option<usize> {
        let mut pos = 0;
        while let Some((hdr, len, mask)) = parse_client_header(&buf[pos..]) {
            let end = pos + hdr + len;
            if end > buf.len() {
                break;
            }
            let b0 = buf[pos];
            let payload = &mut buf[pos + hdr..end];
            unmask(payload, mask);
            pos = end;
            match b0 & 0x0f {
                0x8 => {
                    frame(&mut self.frame, b0, payload);
                    from.send(&self.frame);
                    return None;
                }
                0x9 => {
                    frame(&mut self.frame, (b0 & 0xf0) | 0xA, payload);
                    from.send(&self.frame);
                }
                0xA => {}
                _ => {
                    frame(&mut self.frame, b0, payload);
                    let compressed = match &mut self.compressed {
                        // Already compressed by the client, or a fragment.
                        _ if b0 & 0x40 != 0 || b0 & 0x80 == 0 => None,
                        Some((z, out)) => {
                            compress(z, out, b0, payload);
                            Some(&out[..])
                        }
                        None => None,
                    };
                    hub.broadcast(&self.frame, compressed);
                }
            }
        }
        Some(pos)
    }
}

/// An unmasked server frame: `b0` (FIN, RSV1, opcode) and the payload.
fn frame(out: &mut Vec<u8>, b0: u8, payload: &[u8]) {
    let mut head = [0u8; 10];
    head[0] = b0;
    let n = write_len(&mut head, payload.len());
    out.clear();
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// The compressed frame of a whole message, without context takeover
/// (RFC 7692 §7.2.1: sync flush, its 00 00 FF FF tail removed).
fn compress(z: &mut Compress, out: &mut Vec<u8>, b0: u8, payload: &[u8]) {
    let mut body = Vec::with_capacity(payload.len() / 2 + 64);
    z.reset();
    while (z.total_in() as usize) < payload.len() || body.len() == body.capacity() {
        body.reserve(body.capacity().max(64));
        let at = z.total_in() as usize;
        z.compress_vec(&payload[at..], &mut body, FlushCompress::Sync)
            .expect("deflate");
    }
    body.truncate(body.len().saturating_sub(4));
    frame(out, b0 | 0x40, &body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn compressed_frame_inflates_to_the_payload() {
        let payload = tower_ws_bench::payload::json(5000, 3);
        let mut z = Compress::new(Compression::default(), false);
        let mut out = Vec::new();
        for _ in 0..2 {
            // Twice: the second message must not depend on the first.
            compress(&mut z, &mut out, 0x82, &payload);
            assert_eq!(out[0], 0xC2, "FIN, RSV1, binary");
            let (hdr, len, _) = parse_client_header(&out).unwrap();
            assert_eq!(hdr + len, out.len());
            assert!(len < payload.len() / 2);
            let mut body = out[hdr..].to_vec();
            body.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut inflated = Vec::with_capacity(payload.len() + 64);
            Decompress::new(false)
                .decompress_vec(&body, &mut inflated, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(inflated, payload);
        }
    }

    #[test]
    fn frames_are_unmasked_server_frames() {
        let mut out = Vec::new();
        frame(&mut out, 0x81, b"hi");
        assert_eq!(out, b"\x81\x02hi");
        frame(&mut out, 0x82, &[7; 300]);
        assert_eq!(&out[..4], &[0x82, 126, 1, 44]);
        assert_eq!(out.len(), 304);
    }
}
