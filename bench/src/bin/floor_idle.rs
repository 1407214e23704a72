//! The idle-memory floor on tokio: the least a server with one task per
//! connection holds per idle WebSocket.
//!
//! After the handshake a connection's task keeps its socket and the bytes of
//! an unfinished frame, nothing else: it waits for the socket to be readable,
//! reads into one buffer per thread (as uWebSockets does per event loop), and
//! echoes the complete frames from there as `floor_echo` does. What an idle
//! connection holds is then its task and tokio's registration of its socket.
//! The idle rows of `bench/run.sh` measure it beside tower-ws; it is a
//! yardstick for memory, not a server (the unfinished frame is copied in and
//! out on every read, so it is no floor for large messages).

use std::cell::RefCell;
use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_ws_bench::floor::{echo_frames, parse_client_header, upgrade};
use tower_ws_bench::{MAX_MESSAGE, serve_each};

const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Every connection of the thread reads into this buffer.
    static SHARED: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(READ_CHUNK));
}

fn main() {
    serve_each(|tcp| async move {
        let _ = serve(tcp).await;
    });
}

/// What one read did.
enum Step {
    /// Nothing to read after all.
    Again,
    /// Frames were echoed; `rest` is what the socket did not take at once.
    Echoed { rest: Vec<u8>, closed: bool },
    /// The peer closed the connection.
    Closed,
}

async fn serve(mut tcp: TcpStream) -> io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    if upgrade(&mut tcp, &mut head, None).await?.is_none() {
        return Ok(());
    }
    // Bytes that came after the request head: the start of a frame.
    let mut tail = head.to_vec();
    drop(head);
    loop {
        tcp.readable().await?;
        let step = SHARED.with_borrow_mut(|shared| read_and_echo(&tcp, shared, &mut tail))?;
        match step {
            Step::Again => {}
            Step::Closed => return Ok(()),
            Step::Echoed { rest, closed } => {
                if !rest.is_empty() {
                    tcp.write_all(&rest).await?;
                }
                if closed {
                    return Ok(());
                }
            }
        }
    }
}

/// Reads what the socket has after the unfinished frame's bytes, echoes the
/// complete frames, and keeps what is left of an unfinished one in `tail`.
fn read_and_echo(tcp: &TcpStream, shared: &mut Vec<u8>, tail: &mut Vec<u8>) -> io::Result<Step> {
    shared.clear();
    shared.extend_from_slice(tail);
    let pending = parse_client_header(shared).map_or(0, |(h, len, _)| (h + len).min(MAX_MESSAGE));
    shared.reserve(pending.saturating_sub(shared.len()).max(READ_CHUNK));
    match tcp.try_read_buf(shared) {
        Ok(0) => return Ok(Step::Closed),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Again),
        Err(e) => return Err(e),
    }
    let (out, consumed, closed) = echo_frames(shared);
    let mut rest = Vec::new();
    if out.end > out.start {
        let written = match tcp.try_write(&shared[out.clone()]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        rest.extend_from_slice(&shared[out.start + written..out.end]);
    }
    if consumed == shared.len() {
        // Nothing unfinished: the connection holds no buffer.
        *tail = Vec::new();
    } else {
        tail.clear();
        tail.extend_from_slice(&shared[consumed..]);
    }
    Ok(Step::Echoed { rest, closed })
}
