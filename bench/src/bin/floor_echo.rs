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
use tower_ws_bench::floor::{echo_frames, parse_client_header, upgrade};
use tower_ws_bench::{MAX_MESSAGE, serve_each};

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
