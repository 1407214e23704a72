//! What the two floor servers (`floor_echo`, `floor_fanout`) share: the
//! least a WebSocket server must do to accept a client and frame a reply.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{accept_key, header, unmask};

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

/// Rewrite every complete frame at the front of `buf` into server frames.
/// Returns the output range, how many input bytes were consumed, and whether a
/// close frame was seen. The output always lies within the consumed bytes.
pub fn echo_frames(buf: &mut [u8]) -> (std::ops::Range<usize>, usize, bool) {
    let mut pos = 0; // start of the next input frame
    let mut out_start = None;
    let mut out_end = 0;
    while let Some((hdr_len, payload_len, mask)) = parse_client_header(&buf[pos..]) {
        let frame_end = pos + hdr_len + payload_len;
        if frame_end > buf.len() {
            break;
        }
        let payload = pos + hdr_len..frame_end;
        unmask(&mut buf[payload.clone()], mask);
        let mut b0 = buf[pos];
        let opcode = b0 & 0x0f;
        if opcode == 0x9 {
            b0 = (b0 & 0xf0) | 0xA; // ping -> pong
        }
        let mut head = [0u8; 10];
        head[0] = b0;
        let new_hdr = write_len(&mut head, payload_len);
        // The first frame's header goes right before its payload, so a batch of one
        // frame (the common case) is written without moving the payload at all.
        let dst = *out_start.get_or_insert(pos + hdr_len - new_hdr);
        let dst = dst.max(out_end);
        buf[dst..dst + new_hdr].copy_from_slice(&head[..new_hdr]);
        if dst + new_hdr != payload.start {
            buf.copy_within(payload, dst + new_hdr);
        }
        out_end = dst + new_hdr + payload_len;
        pos = frame_end;
        if opcode == 0x8 {
            return (out_start.unwrap_or(0)..out_end, pos, true);
        }
    }
    (out_start.unwrap_or(0)..out_end, pos, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        let mut head = [0u8; 10];
        let n = write_len(&mut head, payload.len());
        f.push(head[1] | 0x80);
        f.extend_from_slice(&head[2..n]);
        f.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask);
        f.extend(p);
        f
    }

    #[test]
    fn batch_with_tail() {
        let big = vec![7u8; 70_000];
        let mut buf = client_frame(0x82, b"hello", [1, 2, 3, 4]);
        buf.extend(client_frame(0x82, &big, [9, 8, 7, 6]));
        buf.extend(client_frame(0x89, b"p", [5, 5, 5, 5]));
        let partial = client_frame(0x81, b"later", [1, 1, 1, 1]);
        buf.extend(&partial[..4]);
        let total = buf.len();
        let (out, consumed, closed) = echo_frames(&mut buf);
        assert!(!closed);
        assert_eq!(consumed, total - 4);
        let mut want = vec![0x82, 5];
        want.extend(b"hello");
        want.extend([0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        want.extend(&big);
        want.extend([0x8A, 1, b'p']);
        assert_eq!(&buf[out], &want[..]);
    }
}
