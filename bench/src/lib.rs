//! Bits shared by the load generator and the peer echo servers.

use std::io::Write;
use std::net::SocketAddr;

use base64::Engine;
use sha1::{Digest, Sha1};

/// Every peer accepts messages at least this large (the brief's 64 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// The listen address: first CLI argument, as all servers in the matrix take it.
pub fn listen_addr() -> SocketAddr {
    let arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    arg.parse()
        .unwrap_or_else(|e| panic!("bad listen address {arg:?}: {e}"))
}

/// Single-threaded runtime: each server gets one core (the harness pins it), so
/// a multi-threaded scheduler would only add cross-thread wake-ups.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The harness waits for this first stdout line (same shape as tower-ws's example).
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on ws://{addr}");
    let _ = out.flush();
}

/// The accept loop every raw-TCP peer shares: on the current-thread runtime,
/// bind the CLI address, announce it, and spawn `serve` for each connection
/// (with `TCP_NODELAY`, as in every server of the matrix).
pub fn serve_each<F, Fut>(serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(listen_addr())
            .await
            .expect("bind");
        announce(listener.local_addr().unwrap());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(serve(tcp));
        }
    });
}

/// Clock ticks per second in /proc (USER_HZ): 100 on every Linux ABI.
pub const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process (all its threads) in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// XOR `buf` with the 4-byte mask, starting at mask offset 0.
/// Word-at-a-time so the compiler vectorises it; masking must not be the
/// bottleneck of either the floor server or the load generator.
pub fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().unwrap()) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Find a header's value in a raw HTTP head (case-insensitive name).
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (k, v) = line.split_at(colon);
        k.eq_ignore_ascii_case(name.as_bytes())
            .then(|| v[1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_accept_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn unmask_matches_bytewise() {
        let mask = [1, 2, 3, 4];
        let mut a: Vec<u8> = (0..37).collect();
        let b: Vec<u8> = a.iter().enumerate().map(|(i, x)| x ^ mask[i % 4]).collect();
        unmask(&mut a, mask);
        assert_eq!(a, b);
    }

    #[test]
    fn finds_headers() {
        let head = b"GET / HTTP/1.1\r\nSec-WebSocket-Key:  abc \r\nX: y\r\n\r\n";
        assert_eq!(header(head, "sec-websocket-key"), Some(&b"abc"[..]));
        assert_eq!(header(head, "missing"), None);
    }
}

pub mod client;
pub mod floor;
pub mod payload;
pub mod transport;
