//! The load generator's WebSocket client: a hand-written handshake and a
//! streaming frame reader that checks echoes without copying them.

use std::io::{Error, ErrorKind, Result};
use std::net::{IpAddr, SocketAddr};

use base64::Engine;
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::payload::Rng;
use crate::transport::{H2Recv, Transport};
use crate::{accept_key, header};

/// What the server agreed to in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deflate {
    /// LZ77 window the client's compressor may use (`client_max_window_bits`).
    pub client_window_bits: u8,
}

/// An open WebSocket connection: its transport (a socket, or a stream of an
/// HTTP/2 connection), bytes already read past the handshake, and the
/// negotiated permessage-deflate parameters, if any.
pub struct Conn {
    pub io: Transport,
    pub reader: FrameReader,
    pub deflate: Option<Deflate>,
}

pub fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidData, msg.into())
}

/// Connect and upgrade. `offer_deflate` adds the offer a browser would make,
/// plus the `client_no_context_takeover` hint (RFC 7692 7.1.1.2) because our
/// pre-built frames are compressed one by one.
pub async fn connect(addr: &str, path: &str, seed: u64, offer_deflate: bool) -> Result<Conn> {
    connect_from(None, addr, path, seed, offer_deflate, READ_BUFFER).await
}

/// [`connect`] from the local address `from` (port chosen by the kernel),
/// with a `read_buffer`-byte receive buffer. Thousands of connections to
/// one server spread over several loopback source addresses so that they
/// do not share one range of ephemeral ports.
pub async fn connect_from(
    from: Option<IpAddr>,
    addr: &str,
    path: &str,
    seed: u64,
    offer_deflate: bool,
    read_buffer: usize,
) -> Result<Conn> {
    let tcp = match from {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let to = tokio::net::lookup_host(addr)
                .await?
                .next()
                .ok_or_else(|| bad(format!("{addr} resolves to nothing")))?;
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(to).await?
        }
    };
    tcp.set_nodelay(true)?;
    let mut rng = Rng::new(seed);
    let raw_key: Vec<u8> = (0..2).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
    let key = base64::engine::general_purpose::STANDARD.encode(raw_key);
    let ext = if offer_deflate {
        format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n")
    } else {
        String::new()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    let mut conn = Conn {
        io: Transport::Tcp(tcp),
        reader: FrameReader::with_capacity(read_buffer),
        deflate: None,
    };
    conn.io.write_all(request.as_bytes()).await?;

    let head_end = loop {
        let r = &mut conn.reader;
        if let Some(i) = r.buf[..r.end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if r.end == r.buf.len() {
            return Err(bad("handshake response too large"));
        }
        r.fill(&mut conn.io).await?;
    };
    let head = &conn.reader.buf[..head_end];
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(bad(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(line)
        )));
    }
    if header(head, "sec-websocket-accept") != Some(accept_key(key.as_bytes()).as_bytes()) {
        return Err(bad("wrong Sec-WebSocket-Accept"));
    }
    if let Some(ext) = header(head, "sec-websocket-extensions") {
        conn.deflate = Some(parse_deflate(ext)?);
    }
    conn.reader.start = head_end;
    Ok(conn)
}

/// The offer a browser would make, plus the `client_no_context_takeover`
/// hint (RFC 7692 7.1.1.2) because our pre-built frames are compressed one by one.
const DEFLATE_OFFER: &str =
    "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Opens `streams` WebSockets on one HTTP/2 connection (prior knowledge,
/// "h2c"), each with an extended CONNECT (RFC 8441). The connection is
/// driven on a local task; windows are large so that flow control does not
/// limit a loopback run.
pub async fn connect_h2(
    addr: &str,
    path: &str,
    streams: usize,
    offer_deflate: bool,
) -> Result<Vec<Conn>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(4 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .map_err(Error::other)?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    let mut conns = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut request = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("http://{addr}{path}"))
            .header("sec-websocket-version", "13")
            .extension(h2::ext::Protocol::from_static("websocket"));
        if offer_deflate {
            request = request.header("sec-websocket-extensions", DEFLATE_OFFER);
        }
        let request = request.body(()).map_err(Error::other)?;
        let mut ready = send.clone().ready().await.map_err(Error::other)?;
        let (response, stream) = ready.send_request(request, false).map_err(Error::other)?;
        let response = response.await.map_err(Error::other)?;
        if response.status() != http::StatusCode::OK {
            return Err(bad(format!(
                "extended CONNECT answered {}",
                response.status()
            )));
        }
        let deflate = match response.headers().get("sec-websocket-extensions") {
            Some(ext) => Some(parse_deflate(ext.as_bytes())?),
            None => None,
        };
        conns.push(Conn {
            io: Transport::H2(H2Recv::new(response.into_body()), stream),
            reader: FrameReader::new(),
            deflate,
        });
    }
    Ok(conns)
}

fn parse_deflate(ext: &[u8]) -> Result<Deflate> {
    let ext = std::str::from_utf8(ext).map_err(|_| bad("extension header not UTF-8"))?;
    let mut params = ext.split(';').map(str::trim);
    if params.next() != Some("permessage-deflate") || ext.contains(',') {
        return Err(bad(format!("unexpected extension response: {ext}")));
    }
    let mut d = Deflate {
        client_window_bits: 15,
    };
    for p in params {
        if let Some(v) = p.strip_prefix("client_max_window_bits=") {
            d.client_window_bits = v.trim_matches('"').parse().map_err(|_| bad(p))?;
        }
    }
    Ok(d)
}

/// Default size of a connection's receive buffer.
pub const READ_BUFFER: usize = 256 * 1024;

/// Receive-side state of one connection.
pub struct FrameReader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Server-to-client inflater; persistent because the server may use context takeover.
    inflate: Decompress,
    compressed: Vec<u8>,
    inflated: Vec<u8>,
}

/// One received, verified message.
pub struct Received {
    /// Bytes on the wire, frame headers included.
    pub wire_bytes: usize,
    /// Pongs owed for pings seen meanwhile (sent by the caller).
    pub pings: Vec<Vec<u8>>,
}

/// Outcome of checking an echo against what was sent.
pub enum Check {
    Ok(Received),
    Mismatch(String),
}

impl FrameReader {
    pub fn new() -> Self {
        Self::with_capacity(READ_BUFFER)
    }

    /// A reader with a `capacity`-byte receive buffer (at least one frame
    /// header plus a control frame; payloads stream through it).
    pub fn with_capacity(capacity: usize) -> Self {
        FrameReader {
            buf: vec![0; capacity.max(1024)].into_boxed_slice(),
            start: 0,
            end: 0,
            inflate: Decompress::new(false),
            compressed: Vec::new(),
            inflated: Vec::new(),
        }
    }

    /// Read more bytes, compacting first so there is always room.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<()> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let n = io.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "server closed"));
        }
        self.end += n;
        Ok(())
    }

    /// Make `n` bytes (n <= 14 + 125) available from `start`.
    async fn want<R: AsyncRead + Unpin>(&mut self, io: &mut R, n: usize) -> Result<()> {
        while self.end - self.start < n {
            if self.buf.len() - self.start < n {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            self.fill(io).await?;
        }
        Ok(())
    }

    /// Read one whole message (reassembling continuation frames, inflating if
    /// RSV1 is set) and compare it with `expect`, which was sent as `opcode`.
    pub async fn recv<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        opcode: u8,
        expect: &[u8],
    ) -> Result<Check> {
        let mut got = 0; // plain payload bytes matched so far
        let read = self
            .read_message(
                io,
                |op| (op != opcode).then(|| format!("opcode {op}, sent {opcode}")),
                |chunk| {
                    if expect.get(got..got + chunk.len()) != Some(chunk) {
                        return Some(format!(
                            "payload differs within bytes {got}..{}",
                            got + chunk.len()
                        ));
                    }
                    got += chunk.len();
                    None
                },
            )
            .await?;
        let (done, compressed) = match read {
            Err(why) => return Ok(Check::Mismatch(why)),
            Ok(read) => read,
        };
        if compressed {
            self.inflate_message(expect.len())?;
            if self.inflated != expect {
                return Ok(Check::Mismatch(format!(
                    "inflated payload differs ({} bytes, sent {})",
                    self.inflated.len(),
                    expect.len()
                )));
            }
        } else if got != expect.len() {
            return Ok(Check::Mismatch(format!(
                "echo has {got} bytes, sent {}",
                expect.len()
            )));
        }
        Ok(Check::Ok(done))
    }

    /// Read one whole message of any content, copying its first
    /// `head.len()` payload bytes into `head` (the rest is skipped; a
    /// compressed message is inflated first). Returns the opcode and the
    /// payload length.
    pub async fn recv_head<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        head: &mut [u8],
    ) -> Result<(u8, usize, Received)> {
        let mut opcode = 0;
        let mut len = 0;
        let read = self
            .read_message(
                io,
                |op| {
                    opcode = op;
                    None
                },
                |chunk| {
                    if len < head.len() {
                        let n = chunk.len().min(head.len() - len);
                        head[len..len + n].copy_from_slice(&chunk[..n]);
                    }
                    len += chunk.len();
                    None
                },
            )
            .await?;
        match read {
            Ok((done, true)) => {
                self.inflate_message(head.len())?;
                let n = head.len().min(self.inflated.len());
                head[..n].copy_from_slice(&self.inflated[..n]);
                Ok((opcode, self.inflated.len(), done))
            }
            Ok((done, false)) => Ok((opcode, len, done)),
            Err(why) => Err(bad(why)),
        }
    }

    /// The frame loop: `first` sees the message's opcode, `chunk` each piece
    /// of uncompressed payload (compressed payload is gathered in
    /// `self.compressed`); either may refuse the message with a reason.
    /// Returns what was received and whether it was compressed.
    async fn read_message<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        mut first_op: impl FnMut(u8) -> Option<String>,
        mut chunk: impl FnMut(&[u8]) -> Option<String>,
    ) -> Result<std::result::Result<(Received, bool), String>> {
        let mut first = true;
        let mut compressed = false;
        let mut done = Received {
            wire_bytes: 0,
            pings: Vec::new(),
        };
        loop {
            self.want(io, 2).await?;
            let b = &self.buf[self.start..];
            let (fin, rsv1, op) = (b[0] & 0x80 != 0, b[0] & 0x40 != 0, b[0] & 0x0f);
            if b[1] & 0x80 != 0 {
                return Err(bad("server frame is masked"));
            }
            let hdr = match b[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            self.want(io, hdr).await?;
            let b = &self.buf[self.start..];
            let mut len = match hdr {
                4 => u16::from_be_bytes([b[2], b[3]]) as usize,
                10 => u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                _ => (b[1] & 0x7f) as usize,
            };
            done.wire_bytes += hdr + len;
            if op >= 0x8 {
                // Control frames are small and may sit between fragments.
                self.want(io, hdr + len).await?;
                let payload = &self.buf[self.start + hdr..self.start + hdr + len];
                match op {
                    0x9 => done.pings.push(payload.to_vec()),
                    0xA => {}
                    0x8 => return Err(bad("server sent close")),
                    _ => return Err(bad("unknown control opcode")),
                }
                self.start += hdr + len;
                continue;
            }
            self.start += hdr;
            if first {
                if let Some(why) = first_op(op) {
                    return Ok(Err(why));
                }
                compressed = rsv1;
                self.compressed.clear();
                first = false;
            } else if op != 0 {
                return Err(bad("expected continuation frame"));
            }
            // Payload: consume whatever is buffered, as it comes.
            while len > 0 {
                if self.start == self.end {
                    self.fill(io).await?;
                }
                let n = len.min(self.end - self.start);
                let piece = &self.buf[self.start..self.start + n];
                if compressed {
                    self.compressed.extend_from_slice(piece);
                } else if let Some(why) = chunk(piece) {
                    return Ok(Err(why));
                }
                self.start += n;
                len -= n;
            }
            if fin {
                return Ok(Ok((done, compressed)));
            }
        }
    }

    fn inflate_message(&mut self, hint: usize) -> Result<()> {
        self.compressed.extend_from_slice(&[0, 0, 0xff, 0xff]);
        self.inflated.clear();
        self.inflated.reserve(hint + 64);
        let start = self.inflate.total_in();
        loop {
            let used = (self.inflate.total_in() - start) as usize;
            let before = self.inflated.len();
            self.inflate
                .decompress_vec(
                    &self.compressed[used..],
                    &mut self.inflated,
                    FlushDecompress::Sync,
                )
                .map_err(|e| bad(format!("inflate: {e}")))?;
            let used = (self.inflate.total_in() - start) as usize;
            if used == self.compressed.len() && self.inflated.len() < self.inflated.capacity() {
                return Ok(());
            }
            if self.inflated.len() == self.inflated.capacity() {
                self.inflated.reserve(self.inflated.capacity().max(1024));
            } else if self.inflated.len() == before {
                return Err(bad("inflate made no progress"));
            }
        }
    }
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{OP_BINARY, OP_TEXT, binary, deflate};

    /// An unmasked server frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = crate::payload::client_frame(0, false, payload, [0; 4]);
        f[0] = b0;
        // Drop the mask bit and the (zero) mask key.
        let hdr = f.len() - payload.len();
        f[1] &= 0x7f;
        f.drain(hdr - 4..hdr);
        f
    }

    async fn check(wire: &[u8], opcode: u8, expect: &[u8]) -> Result<Check> {
        let mut io = wire;
        FrameReader::new().recv(&mut io, opcode, expect).await
    }

    #[tokio::test]
    async fn reassembles_fragments_around_a_ping() {
        let body = binary(300_000, 1);
        let mut wire = frame(0x02, &body[..1000]);
        wire.extend(frame(0x89, b"hi"));
        wire.extend(frame(0x00, &body[1000..200_000]));
        wire.extend(frame(0x80, &body[200_000..]));
        let Check::Ok(r) = check(&wire, OP_BINARY, &body).await.unwrap() else {
            panic!("mismatch")
        };
        assert_eq!(r.wire_bytes, wire.len());
        assert_eq!(r.pings, vec![b"hi".to_vec()]);
    }

    #[tokio::test]
    async fn catches_wrong_bytes_length_and_opcode() {
        let body = binary(100, 2);
        let mut bad = body.clone();
        bad[50] ^= 1;
        let cases = [
            (frame(0x82, &bad), OP_BINARY),
            (frame(0x82, &body[..99]), OP_BINARY),
            (frame(0x81, &body), OP_BINARY),
        ];
        for (wire, op) in cases {
            assert!(matches!(
                check(&wire, op, &body).await,
                Ok(Check::Mismatch(_))
            ));
        }
        assert!(
            check(&frame(0x88, &[3, 232]), OP_BINARY, &body)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn inflates_compressed_echo() {
        let text = crate::payload::json(4000, 5);
        let wire = frame(0xC1, &deflate(&text, 15));
        assert!(matches!(
            check(&wire, OP_TEXT, &text).await,
            Ok(Check::Ok(_))
        ));
    }

    #[tokio::test]
    async fn reads_the_head_of_plain_and_compressed_messages() {
        let body = crate::payload::json(3000, 7);
        let mut wire = frame(0xC2, &deflate(&body, 15));
        wire.extend(frame(0x82, &body[..100]));
        let mut io = &wire[..];
        // A small buffer: payloads stream through it.
        let mut reader = FrameReader::with_capacity(1024);
        let mut head = [0u8; 16];
        let (op, len, _) = reader.recv_head(&mut io, &mut head).await.unwrap();
        assert_eq!((op, len, &head[..]), (OP_BINARY, body.len(), &body[..16]));
        head = [0; 16];
        let (op, len, _) = reader.recv_head(&mut io, &mut head).await.unwrap();
        assert_eq!((op, len, &head[..]), (OP_BINARY, 100, &body[..16]));
    }

    #[test]
    fn parses_deflate_response() {
        let d = parse_deflate(
            b"permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
        )
        .unwrap();
        assert_eq!(d.client_window_bits, 10);
        assert_eq!(
            parse_deflate(b"permessage-deflate")
                .unwrap()
                .client_window_bits,
            15
        );
        assert!(parse_deflate(b"x-webkit-deflate-frame").is_err());
    }
}
