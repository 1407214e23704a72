//! The physical floor: the least work a correct echo can do on tokio.
//!
//! Per read batch, every complete client frame is unmasked in place, its header is
//! rewritten as an unmasked server frame (4 bytes shorter), the frames are packed
//! together and the batch goes back in one write. An incomplete trailing frame
//! stays in the buffer for the next read. Fragmented messages are echoed frame by
//! frame (still valid), pings become pongs, a close is echoed and ends the
//! connection. No UTF-8 validation and no limits beyond memory: this is a
//! yardstick, not a server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ws_bench::floor::{parse_client_header, upgrade, write_len};
use tower_ws_bench::{MAX_MESSAGE, serve_each, unmask};

const READ_CHUNK: usize = 64 * 1024;

fn main() {
    serve_each(|tcp| async move {
        let _ = serve(tcp).await;
    });
}

async fn serve(mut tcp: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(READ_CHUNK);
    if upgrade(&mut tcp, &mut buf, None).await?.is_none() {
        return Ok(());
    }

    loop {
        let (out, consumed, closed) = echo_frames(&mut buf);
        if out.end > out.start {
            tcp.write_all(&buf[out]).await?;
        }
        if closed {
            return Ok(());
        }
        // Keep the incomplete tail; usually nothing, so this is a no-op.
        buf.drain(..consumed);
        // Room for the whole pending frame at once, so a large one needs no
        // repeated regrowth and each read can take all the socket has.
        let pending = parse_client_header(&buf).map_or(0, |(h, len, _)| (h + len).min(MAX_MESSAGE));
        let room = pending.saturating_sub(buf.len()).max(READ_CHUNK / 2);
        if buf.capacity() - buf.len() < room {
            buf.reserve(room.max(READ_CHUNK));
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Rewrite every complete frame at the front of `buf` into server frames.
/// Returns the output range, how many input bytes were consumed, and whether a
/// close frame was seen. The output always lies within the consumed bytes.
fn echo_frames(buf: &mut [u8]) -> (std::ops::Range<usize>, usize, bool) {
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
