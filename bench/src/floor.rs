//! What the two floor servers (`floor_echo`, `floor_fanout`) share: the
//! least a WebSocket server must do to accept a client and frame a reply.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{accept_key, header};

/// The server's answer when the client offers permessage-deflate and the
/// server compresses: each message on its own (RFC 7692 §7.1.1), so one
/// compressed frame can go to every client.
pub const DEFLATE_ANSWER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The opening handshake: reads up to the blank line, answers 101 (with
/// `deflate` as the extension answer if the client offered
/// permessage-deflate), and leaves in `buf` any bytes after the request.
/// `None` when the client left or sent no key (it got a 400); otherwise
/// whether permessage-deflate was agreed.
pub async fn upgrade(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    deflate: Option<&str>,
) -> std::io::Result<Option<bool>> {
    let head_end = loop {
        if tcp.read_buf(buf).await? == 0 {
            return Ok(None);
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = &buf[..head_end];
    let Some(key) = header(head, "sec-websocket-key") else {
        tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(None);
    };
    let offered = header(head, "sec-websocket-extensions")
        .is_some_and(|e| e.windows(18).any(|w| w == b"permessage-deflate"));
    let answer = deflate.filter(|_| offered);
    let extension = answer.map_or(String::new(), |a| {
        format!("Sec-WebSocket-Extensions: {a}\r\n")
    });
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extension}\r\n",
        accept_key(key)
    );
    tcp.write_all(response.as_bytes()).await?;
    buf.drain(..head_end);
    Ok(Some(answer.is_some()))
}

/// (header length, payload length, mask) of a masked client frame, or None if
/// the header itself is incomplete.
pub fn parse_client_header(b: &[u8]) -> Option<(usize, usize, [u8; 4])> {
    if b.len() < 2 {
        return None;
    }
    let (len, at) = match b[1] & 0x7f {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    // Clients must mask (RFC 6455 5.1); an unmasked frame is answered as if masked
    // with zeros, which the floor tolerates rather than checks.
    let mask = if b[1] & 0x80 != 0 {
        b.get(at..at + 4)?.try_into().ok()?
    } else {
        return Some((at, len, [0; 4]));
    };
    Some((at + 4, len, mask))
}

/// Write the unmasked length field after `head[0]`; returns the header length.
pub fn write_len(head: &mut [u8; 10], len: usize) -> usize {
    if len < 126 {
        head[1] = len as u8;
        2
    } else if len <= u16::MAX as usize {
        head[1] = 126;
        head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}
