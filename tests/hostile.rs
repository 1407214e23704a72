//! Hostile and broken peers over real TCP: malformed and abusive handshakes,
//! slow heads, frames built to exhaust memory or CPU, broken compression,
//! resets, half-closes, peers that never read, and thousands of connections
//! dropped abruptly. Each test checks the documented close code or HTTP
//! status, that resources stay bounded, and that the server keeps serving.
//!
//! The last part holds property tests of the engine that complement those in
//! `src/proto/connection/tests.rs`, and regression tests for fuzz findings.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{
    Live, RawClient, counted_echo, echo, masked_frame, serve, serve_with_timeouts, upgrade_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ws::{Config, Message, RequestHead, UpgradedWebSocket, WebSocketService};

const DEFLATE: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

/// `Config::write_buffer_high_water`'s default, set explicitly.
const HIGH_WATER: usize = 128 << 10;

// ---------------------------------------------------------------------------
// Helpers

/// Sends `request` on a fresh connection and reads the response head: the
/// status, or `None` if the server closed (or reset) without answering.
async fn http_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before the request is fully sent.
    let _ = tcp.write_all(request).await;
    read_status(&mut tcp).await
}

async fn read_status(tcp: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1)?.parse().ok();
            return status;
        }
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no response and no close within 5 s"),
        }
    }
}

/// The server still completes a handshake and echoes a message.
async fn assert_still_serves(addr: SocketAddr) {
    let (mut raw, head) = RawClient::connect(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(true, 0, 0x1, b"still alive?").await;
    let echo = raw.recv().await.expect("an echo");
    assert_eq!(
        (echo.opcode, echo.payload.as_slice()),
        (1, &b"still alive?"[..])
    );
}

/// Reads frames until a close frame arrives; returns its code.
async fn close_code(raw: &mut RawClient) -> Option<u16> {
    loop {
        let frame = raw.recv().await?;
        if frame.opcode == 0x8 {
            return frame.close_code();
        }
    }
}

/// What a handler saw: the last event of its stream.
#[derive(Debug, PartialEq, Eq)]
enum Last {
    /// The stream ended (`None`) after a close message.
    Closed,
    /// An error with this close code (`None`: no close code, e.g. I/O).
    Error { io: bool, code: Option<u16> },
    /// The stream ended without either.
    Ended,
}

/// An echo service that reports how each connection ended.
fn reporting_echo() -> (
    WebSocketService<impl tower_ws::UpgradeHandler>,
    tokio::sync::mpsc::UnboundedReceiver<Last>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let tx = tx.clone();
        async move {
            let mut last = Last::Ended;
            while let Some(ev) = ws.next().await {
                match ev {
                    Ok(Message::Close(_)) => last = Last::Closed,
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        last = Last::Error {
                            io: e.is_io(),
                            code: e.close_code().map(|c| c.as_u16()),
                        };
                        break;
                    }
                }
            }
            let _ = tx.send(last);
        }
    });
    (service, rx)
}

async fn next_report(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Last>) -> Last {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the handler ended within 5 s")
        .expect("a report")
}

// ---------------------------------------------------------------------------
// Handshake

#[tokio::test]
async fn broken_handshakes_get_their_status_and_the_server_keeps_serving() {
    let addr = serve(WebSocketService::new(echo)).await;
    let base = |lines: &str| {
        format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{lines}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let version = "Sec-WebSocket-Version: 13\r\n";
    let cases: Vec<(&str, String, u16)> = vec![
        ("missing key", base(version), 400),
        ("duplicated key", base(&format!("{key}{key}{version}")), 400),
        (
            "key of 5 bytes",
            base(&format!("Sec-WebSocket-Key: c2hvcnQ=\r\n{version}")),
            400,
        ),
        (
            "key of 17 bytes",
            base(&format!(
                "Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZmc=\r\n{version}"
            )),
            400,
        ),
        (
            "key not base64",
            base(&format!(
                "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n{version}"
            )),
            400,
        ),
        ("missing version", base(key), 426),
        (
            "version 8",
            base(&format!("{key}Sec-WebSocket-Version: 8\r\n")),
            426,
        ),
        (
            "duplicated version",
            base(&format!("{key}{version}{version}")),
            426,
        ),
        (
            "duplicated host",
            base(&format!("Host: other\r\n{key}{version}")),
            400,
        ),
        (
            "HTTP/1.0",
            format!(
                "GET / HTTP/1.0\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}{version}\r\n"
            ),
            400,
        ),
        (
            "POST",
            format!(
                "POST / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{key}{version}Content-Length: 0\r\n\r\n"
            ),
            405,
        ),
        (
            "Connection without upgrade",
            format!(
                "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n{key}{version}\r\n"
            ),
            400,
        ),
    ];
    for (name, request, status) in cases {
        assert_eq!(
            http_status(addr, request.as_bytes()).await,
            Some(status),
            "{name}"
        );
    }
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn a_one_mib_header_line_gets_431_before_it_is_read_whole() {
    let addr = serve(WebSocketService::new(echo)).await;
    let start = Instant::now();
    let mut request = upgrade_request("/", "").into_bytes();
    request.truncate(request.len() - 2);
    request.extend_from_slice(b"X-Long: ");
    request.extend(std::iter::repeat_n(b'a', 1 << 20));
    request.extend_from_slice(b"\r\n\r\n");
    // hyper buffers at most ~400 KiB of head (max_buf_size), then answers 431
    // "Request Header Fields Too Large" and closes.
    assert_eq!(http_status(addr, &request).await, Some(431));
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let addr = serve(WebSocketService::new(echo)).await;
    let extra: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    // hyper parses at most 100 headers by default.
    let status = http_status(addr, upgrade_request("/", &extra).as_bytes()).await;
    assert_eq!(status, Some(431));
    // 90 headers are fine.
    let extra: String = (0..90).map(|i| format!("X-H{i}: v\r\n")).collect();
    let status = http_status(addr, upgrade_request("/", &extra).as_bytes()).await;
    assert_eq!(status, Some(101));
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn slowloris_head_is_cut_off_by_the_header_read_timeout() {
    let addr = serve_with_timeouts(WebSocketService::new(echo), Duration::from_millis(500)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Trickle one header byte every 100 ms: the head never completes.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tcp.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle).await;
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(3),
        "the slow head was held for {elapsed:?}"
    );
    // hyper answers 408 Request Timeout (or just closes).
    let status = read_status(&mut tcp).await;
    assert!(matches!(status, None | Some(408)), "{status:?}");
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn without_a_timer_a_slow_head_is_held_open() {
    // Documents why `serve_with_timeouts` (and examples/echo.rs) set a timer:
    // hyper's default 30 s header_read_timeout needs one, and without it a
    // request head that never completes holds the connection forever.
    let addr = serve(WebSocketService::new(echo)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(1500), tcp.read(&mut byte)).await;
    assert!(
        read.is_err(),
        "the connection was answered or closed: {read:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_cut_off_too() {
    // hyper starts its header read timer at the first byte of a head (and
    // hyper-util's auto builder first waits for up to 24 bytes to tell
    // HTTP/1 from HTTP/2, with no timeout): a client that sends nothing at
    // all is held forever unless the server waits for the first byte with a
    // timeout of its own, as `serve_with_timeouts` and examples/echo.rs do.
    let addr = serve_with_timeouts(WebSocketService::new(echo), Duration::from_millis(500)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "a silent connection was held open: {read:?}"
    );
}

#[tokio::test]
async fn a_stalled_http2_preface_prefix_is_held_open_by_the_auto_builder() {
    // Documents a gap: hyper-util's auto::Builder reads up to 24 bytes to
    // tell HTTP/1 from HTTP/2 before hyper's timers exist, and
    // `http1_only()` does not apply to `serve_connection_with_upgrades`. A
    // client that sends "PRI" and stalls holds the connection. Serving with
    // `hyper::server::conn::http1::Builder` (`.with_upgrades()`) avoids it.
    let addr = serve_with_timeouts(WebSocketService::new(echo), Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI").await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(1500), tcp.read(&mut byte)).await;
    assert!(
        read.is_err(),
        "the connection was answered or closed: {read:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_header_read_timeout() {
    // After a plain HTTP response, hyper waits for the next request head
    // with the header read timer already running: an idle keep-alive
    // connection is closed after the timeout too.
    let addr = serve_with_timeouts(WebSocketService::new(echo), Duration::from_millis(300)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut tcp).await, Some(200));
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let idle = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), idle)
        .await
        .expect("the idle connection is closed");
    assert!(start.elapsed() >= Duration::from_millis(250));
}

// ---------------------------------------------------------------------------
// Frames

#[tokio::test]
async fn a_2_pow_63_minus_1_byte_payload_is_refused_with_1009_without_allocating() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let start = Instant::now();
    let mut header = vec![0x82, 0xff];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.send_raw(&header).await;
    assert_eq!(close_code(&mut raw).await, Some(1009));
    assert!(raw.expect_eof().await);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn endless_empty_continuations_hit_the_fragment_limit_with_1009() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    // Default max_fragments is 131,072: the first frame plus 131,071
    // continuations fit, one more does not. Send a few thousand more.
    let mut wire = masked_frame(false, 0, 0x2, b"");
    let empty = masked_frame(false, 0, 0x0, b"");
    for _ in 0..135_000 {
        wire.extend_from_slice(&empty);
    }
    // The server drains input after failing, so the write completes; it may
    // also be reset: ignore the result.
    let _ = raw.tcp.write_all(&wire).await;
    assert_eq!(close_code(&mut raw).await, Some(1009));
    assert!(raw.expect_eof().await);
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn a_4_mib_message_in_64_byte_fragments_passes_the_default_limits() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (raw, _) = RawClient::connect(addr, "").await;
    let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let chunks: Vec<&[u8]> = data.chunks(64).collect();
    let mut wire = Vec::with_capacity(data.len() * 70 / 64);
    for (i, chunk) in chunks.iter().enumerate() {
        let op = if i == 0 { 0x2 } else { 0x0 };
        wire.extend(masked_frame(i == chunks.len() - 1, 0, op, chunk));
    }
    let (mut rd, mut wr) = raw.tcp.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&wire).await.unwrap();
        wr
    });
    // The echo is one 4 MiB frame: header of 10 bytes.
    let mut got = vec![0u8; 10 + data.len()];
    tokio::time::timeout(Duration::from_secs(20), rd.read_exact(&mut got))
        .await
        .expect("the echo within 20 s")
        .unwrap();
    assert_eq!(got[0], 0x82);
    assert_eq!(&got[10..], &data[..]);
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_gets_1007() {
    let (service, mut rx) = reporting_echo();
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    // "κόσμε" then F4, and 90 80 80 in the next fragment: U+110000, past the
    // last code point. Each fragment alone could be a valid prefix.
    let mut first = "κόσμε".as_bytes().to_vec();
    first.push(0xf4);
    raw.send(false, 0, 0x1, &first).await;
    raw.send(true, 0, 0x0, &[0x90, 0x80, 0x80]).await;
    assert_eq!(close_code(&mut raw).await, Some(1007));
    assert!(raw.expect_eof().await);
    assert_eq!(
        next_report(&mut rx).await,
        Last::Error {
            io: false,
            code: Some(1007)
        }
    );
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn a_close_frame_with_a_one_byte_payload_gets_1002() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    raw.send(true, 0, 0x8, &[0x03]).await;
    assert_eq!(close_code(&mut raw).await, Some(1002));
    assert!(raw.expect_eof().await);
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn data_after_a_close_frame_is_ignored() {
    let (service, mut rx) = reporting_echo();
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let mut wire = masked_frame(true, 0, 0x8, &1000u16.to_be_bytes());
    wire.extend(masked_frame(true, 0, 0x1, b"after the close"));
    wire.extend(masked_frame(true, 0, 0x9, b"ping after the close"));
    raw.send_raw(&wire).await;
    let reply = raw.recv().await.expect("the close reply");
    assert_eq!(reply.close_code(), Some(1000));
    // Nothing else: no echo, no pong, then EOF.
    assert_eq!(raw.recv().await, None);
    assert_eq!(next_report(&mut rx).await, Last::Closed);
    assert_still_serves(addr).await;
}

// ---------------------------------------------------------------------------
// Compression

#[tokio::test]
async fn rsv1_on_a_continuation_gets_1002() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, head) = RawClient::connect(addr, DEFLATE).await;
    assert!(head.contains("permessage-deflate"), "{head}");
    // "Hello" compressed (RFC 7692 §7.2.3.1), split; RSV1 on both frames.
    let z = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    raw.send(false, 0b100, 0x1, &z[..3]).await;
    raw.send(true, 0b100, 0x0, &z[3..]).await;
    assert_eq!(close_code(&mut raw).await, Some(1002));
    assert!(raw.expect_eof().await);
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn garbage_deflate_data_gets_1007() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, _) = RawClient::connect(addr, DEFLATE).await;
    // BFINAL=1, BTYPE=11: a reserved block type.
    raw.send(true, 0b100, 0x2, &[0xff; 16]).await;
    assert_eq!(close_code(&mut raw).await, Some(1007));
    assert!(raw.expect_eof().await);
    // And a valid compressed message still works on a new connection.
    let (mut raw, _) = RawClient::connect(addr, DEFLATE).await;
    raw.send(
        true,
        0b100,
        0x1,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    )
    .await;
    let echo = raw.recv().await.unwrap();
    assert_eq!(echo.opcode, 0x1);
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn rsv1_without_negotiated_deflate_gets_1002() {
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut raw, head) = RawClient::connect(addr, "").await;
    assert!(!head.to_ascii_lowercase().contains("permessage-deflate"));
    raw.send(
        true,
        0b100,
        0x1,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    )
    .await;
    assert_eq!(close_code(&mut raw).await, Some(1002));
}

// ---------------------------------------------------------------------------
// Transport

#[tokio::test]
async fn a_reset_mid_frame_ends_the_handler_with_an_io_error() {
    let (service, mut rx) = reporting_echo();
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let frame = masked_frame(true, 0, 0x2, &[7u8; 1000]);
    raw.send_raw(&frame[..100]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.tcp.set_zero_linger().unwrap();
    drop(raw);
    let last = next_report(&mut rx).await;
    assert!(
        matches!(
            last,
            Last::Error {
                io: true,
                code: None
            }
        ),
        "{last:?}"
    );
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn a_half_close_mid_message_ends_with_1006_and_tcp_is_closed() {
    let (service, mut rx) = reporting_echo();
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    let frame = masked_frame(true, 0, 0x2, &[7u8; 1000]);
    raw.send_raw(&frame[..500]).await;
    raw.tcp.shutdown().await.unwrap();
    // No close frame can follow an abnormal closure (1006 is never sent).
    assert_eq!(raw.recv().await, None);
    let last = next_report(&mut rx).await;
    assert!(
        matches!(
            last,
            Last::Error {
                io: true,
                code: None
            }
        ),
        "{last:?}"
    );
    assert_still_serves(addr).await;
}

#[tokio::test]
async fn a_half_close_after_a_message_still_gets_the_echo() {
    let (service, mut rx) = reporting_echo();
    let addr = serve(service).await;
    let (mut raw, _) = RawClient::connect(addr, "").await;
    raw.send(true, 0, 0x1, b"last words").await;
    raw.tcp.shutdown().await.unwrap();
    let echo = raw.recv().await.expect("the echo despite our half-close");
    assert_eq!(echo.payload, b"last words");
    assert_eq!(raw.recv().await, None);
    let last = next_report(&mut rx).await;
    assert!(
        matches!(
            last,
            Last::Error {
                io: true,
                code: None
            }
        ),
        "{last:?}"
    );
}

/// Statistics of a sending handler facing a peer that never reads.
#[derive(Default)]
struct SendStats {
    sent: AtomicUsize,
    max_buffered: AtomicUsize,
    done: AtomicBool,
}

/// A handler sending `size`-byte messages in a loop (with `send` or with
/// `feed`), recording the most bytes it ever had buffered.
fn flooding_service(
    stats: Arc<SendStats>,
    size: usize,
    use_feed: bool,
) -> WebSocketService<impl tower_ws::UpgradeHandler> {
    WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let stats = stats.clone();
        async move {
            let msg = Message::binary(vec![0x5a; size]);
            loop {
                let r = if use_feed {
                    ws.feed(msg.clone()).await
                } else {
                    ws.send(msg.clone()).await
                };
                if r.is_err() {
                    break;
                }
                stats.sent.fetch_add(1, Ordering::SeqCst);
                stats
                    .max_buffered
                    .fetch_max(ws.buffered_amount(), Ordering::SeqCst);
            }
            stats.done.store(true, Ordering::SeqCst);
        }
    })
}

async fn assert_sender_blocks_with_bounded_buffer(use_feed: bool) {
    let size = 16 << 10;
    let high_water = HIGH_WATER;
    let stats = Arc::new(SendStats::default());
    let service = flooding_service(stats.clone(), size, use_feed)
        .config(Config::default().write_buffer_high_water(HIGH_WATER));
    let addr = serve(service).await;
    let (raw, _) = RawClient::connect(addr, "").await;
    // Never read. The kernel's socket buffers fill, then the handler blocks.
    let mut last = 0;
    let mut stable = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = stats.sent.load(Ordering::SeqCst);
        if sent == last {
            stable += 1;
            if stable == 5 {
                break;
            }
        } else {
            stable = 0;
            last = sent;
        }
    }
    assert_eq!(stable, 5, "the handler never blocked: {last} messages sent");
    let max = stats.max_buffered.load(Ordering::SeqCst);
    assert!(
        max <= high_water + size + 14,
        "buffered {max} bytes, high water {high_water} + one message {size}"
    );
    // The peer goes away: the blocked send fails and the handler ends.
    raw.tcp.set_zero_linger().unwrap();
    drop(raw);
    let start = Instant::now();
    while !stats.done.load(Ordering::SeqCst) {
        assert!(start.elapsed() < Duration::from_secs(5), "handler stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_peer_that_never_reads_blocks_send_with_a_bounded_buffer() {
    assert_sender_blocks_with_bounded_buffer(false).await;
}

#[tokio::test]
async fn a_peer_that_never_reads_blocks_feed_with_a_bounded_buffer() {
    assert_sender_blocks_with_bounded_buffer(true).await;
}

/// A client that sends 125-byte pings as fast as it can and never reads.
/// Returns how many bytes it managed to send before the server stopped
/// reading (no progress for a second), or panics after `limit`.
async fn ping_flood_until_blocked(addr: SocketAddr, limit: Duration) -> usize {
    let (raw, _) = RawClient::connect(addr, "").await;
    let (_rd, mut wr) = raw.tcp.into_split();
    let ping = masked_frame(true, 0, 0x9, &[0x70; 125]);
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 64).collect();
    let start = Instant::now();
    let mut sent = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(1), wr.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            Ok(Err(e)) => panic!("the server dropped the flooding peer: {e}"),
            // No progress for a second: the server stopped reading.
            Err(_) => return sent,
        }
        assert!(
            start.elapsed() < limit,
            "the server kept reading pings for {limit:?}: {sent} bytes"
        );
    }
}

/// The bound on how much a ping flood may push into a server that stops
/// reading at the high-water mark: what loopback TCP buffers hold on both
/// sides (a few MiB each with autotuning) and the pongs queued. A server
/// that kept reading would take everything, ~100 MB/s or more.
const FLOOD_BOUND: usize = 48 << 20;

#[tokio::test]
async fn a_ping_flood_from_a_peer_that_never_reads_keeps_pongs_bounded() {
    let max_buffered = Arc::new(AtomicUsize::new(0));
    let max2 = max_buffered.clone();
    // The handler only reads; it samples its output queue as it goes.
    let service = WebSocketService::new(move |mut ws: UpgradedWebSocket, _: RequestHead| {
        let max = max2.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tokio::select! {
                    ev = ws.next() => if !matches!(ev, Some(Ok(_))) { break },
                    _ = tick.tick() => {}
                }
                max.fetch_max(ws.buffered_amount(), Ordering::SeqCst);
            }
        }
    })
    .config(Config::default().write_buffer_high_water(HIGH_WATER));
    let addr = serve(service).await;
    let sent = ping_flood_until_blocked(addr, Duration::from_secs(15)).await;
    let max = max_buffered.load(Ordering::SeqCst);
    assert!(sent < FLOOD_BOUND, "{sent} bytes of pings accepted");
    // Pongs stop being produced once the queue reaches the high-water mark:
    // at most one read's worth of pings more.
    assert!(
        max <= HIGH_WATER + (64 << 10),
        "{max} bytes of pongs queued (high water {HIGH_WATER})"
    );
}

#[tokio::test]
async fn a_ping_flood_against_a_split_socket_whose_writer_is_blocked_keeps_pongs_bounded() {
    // The writer half sends until blocked (the peer never reads); the reader
    // half keeps reading, and so answering, the peer's pings.
    let service = WebSocketService::new(move |ws: UpgradedWebSocket, _: RequestHead| async move {
        let (mut reader, mut writer) = ws.split();
        let sender = tokio::spawn(async move {
            let msg = Message::binary(vec![1u8; 16 << 10]);
            while writer.send(msg.clone()).await.is_ok() {}
        });
        while let Some(Ok(_)) = reader.next().await {}
        sender.abort();
    })
    .config(Config::default().write_buffer_high_water(HIGH_WATER));
    let addr = serve(service).await;
    let sent = ping_flood_until_blocked(addr, Duration::from_secs(15)).await;
    assert!(sent < FLOOD_BOUND, "{sent} bytes of pings accepted");
}

/// Sockets of this process connected to or listening on `port` (both ends
/// of in-process connections count), from /proc/self/fd and /proc/net/tcp.
fn sockets_on_port(port: u16) -> usize {
    socket_states(port).len()
}

/// The TCP state (hex, as in /proc/net/tcp: 01 established, 08 close-wait,
/// 0A listen...), addresses and queues of the sockets `sockets_on_port`
/// counts.
fn socket_states(port: u16) -> Vec<String> {
    let mut inodes = std::collections::HashMap::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 {
                continue;
            }
            let port_of = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port_of(cols[1]) == Some(port) || port_of(cols[2]) == Some(port) {
                inodes.insert(
                    cols[9].to_string(),
                    format!("{} {}->{} q={}", cols[3], cols[1], cols[2], cols[4]),
                );
            }
        }
    }
    inodes.remove("0");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .filter_map(|inode| inodes.get(&inode).cloned())
        .collect()
}

/// A leftover socket, the client case that opened it and its peer's state.
fn describe(state: &str, cases: &std::collections::HashMap<u16, usize>) -> String {
    let peer = state
        .split("->")
        .nth(1)
        .and_then(|a| a.split(':').nth(1))
        .and_then(|p| u16::from_str_radix(&p[..4], 16).ok());
    let case = peer.and_then(|p| cases.get(&p).copied());
    let all = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    let peer_line = peer.and_then(|p| {
        all.lines()
            .find(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&format!(":{p:04X}")))
            })
            .map(str::to_string)
    });
    format!("{state} case={case:?} peer={peer_line:?}")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The soft RLIMIT_NOFILE of this process, raised towards `want` (up to the
/// hard limit) with util-linux `prlimit` if it is lower. Returns the limit.
fn raise_nofile(want: u64) -> u64 {
    let soft = || -> Option<(u64, u64)> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut cols = line.split_whitespace().skip(3);
        let parse = |c: Option<&str>| c.and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        Some((parse(cols.next()), parse(cols.next())))
    };
    let Some((current, hard)) = soft() else {
        return 1024;
    };
    if current >= want {
        return current;
    }
    let target = want.min(hard);
    let _ = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={target}:{hard}"))
        .status();
    soft().map_or(current, |(now, _)| now)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_abruptly_dropped_connections_leak_nothing() {
    let live = Live::default();
    let addr = serve(counted_echo(&live)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // Let the accept loop start.
    assert_still_serves(addr).await;
    live.wait_zero(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base_sockets = sockets_on_port(addr.port());
    let base_fds = open_fds();
    let base_tasks = metrics.num_alive_tasks();
    let start = Instant::now();
    let upgraded = Arc::new(AtomicUsize::new(0));
    // Each connection takes two fds here (client and server end): 2,000 at
    // a time needs 4,000 and some room; fewer at a time if the limit is low.
    let limit = raise_nofile(8192);
    let per_batch = (limit.saturating_sub(base_fds as u64 + 256) / 2).clamp(100, 2000) as usize;
    let batches = 10_000usize.div_ceil(per_batch);
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    let cases = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));

    for batch in 0..batches {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..per_batch {
            let upgraded = upgraded.clone();
            let connecting = connecting.clone();
            let cases = cases.clone();
            set.spawn(async move {
                // At most 256 handshakes in flight: more would overflow the
                // listener's accept queue (backlog 1024), and the kernel then
                // drops handshake ACKs and FINs and retransmits them seconds
                // later, which would look like connections the server keeps.
                let permit = connecting.acquire().await.unwrap();
                let Ok(mut tcp) = TcpStream::connect(addr).await else {
                    return;
                };
                drop(permit);
                if let Ok(local) = tcp.local_addr() {
                    cases.lock().unwrap().insert(local.port(), i % 5);
                }
                match i % 5 {
                    // Connect and vanish.
                    0 => {}
                    // Half a request head, then a reset.
                    1 => {
                        let _ = tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
                        let _ = tcp.set_zero_linger();
                    }
                    // Upgrade, then drop without a close frame (FIN).
                    2..=4 => {
                        let _ = tcp.write_all(upgrade_request("/", "").as_bytes()).await;
                        if read_status(&mut tcp).await == Some(101) {
                            upgraded.fetch_add(1, Ordering::SeqCst);
                        }
                        if i % 5 == 3 {
                            // Half a frame, then a reset.
                            let f = masked_frame(true, 0, 0x2, &[1u8; 200]);
                            let _ = tcp.write_all(&f[..50]).await;
                            let _ = tcp.set_zero_linger();
                        } else if i % 5 == 4 {
                            // A message, and gone before the echo is read.
                            let _ = tcp.write_all(&masked_frame(true, 0, 0x1, b"hi")).await;
                        }
                    }
                    _ => unreachable!(),
                }
            });
        }
        while set.join_next().await.is_some() {}
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "batch {batch} done after {:?}",
            start.elapsed()
        );
    }
    assert!(upgraded.load(Ordering::SeqCst) >= 5_000, "too few upgrades");

    // Everything returns to the baseline. Typically at once; the margin is
    // for the kernel: a client FIN that met a full accept queue is
    // retransmitted with exponential backoff (0.2 s, 0.4 s, ... 6.4 s), and
    // the server only learns that such a client left when it arrives.
    live.wait_zero(Duration::from_secs(10)).await;
    let settle = Instant::now();
    loop {
        let (sockets, tasks) = (sockets_on_port(addr.port()), metrics.num_alive_tasks());
        if sockets <= base_sockets && tasks <= base_tasks {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(20),
            "sockets {sockets} (baseline {base_sockets}), tasks {tasks} (baseline {base_tasks}): {:?}",
            socket_states(addr.port())
                .iter()
                .take(8)
                .map(|st| describe(st, &cases.lock().unwrap()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fds = open_fds();
    // Other tests of this binary run in parallel and open sockets of their
    // own: the process-wide count gets a margin (a leak of this test's
    // 10,000 connections would exceed it many times), the port-based one
    // none.
    assert!(fds <= base_fds + 256, "open fds {fds}, baseline {base_fds}");
    assert_still_serves(addr).await;
}

// ---------------------------------------------------------------------------
// Property tests of the engine (complementing src/proto/connection/tests.rs,
// which covers any split of a valid client stream and UTF-8 boundaries):
// what the server encodes decodes back to the same messages, and any
// fragmentation with read-ahead under a tiny pending limit changes nothing.

mod properties {
    use bytes::Buf;
    use proptest::prelude::*;
    use tower_ws::extensions::deflate::{PerMessageDeflate, negotiate};
    use tower_ws::extensions::{Extension, parse_extensions};
    use tower_ws::proto::{Connection, Role, WriteBuf};
    use tower_ws::{Config, DeflateConfig, Message};

    const OFFERS: [&str; 2] = [
        "permessage-deflate",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ];

    fn codec(offer: &str, threshold: usize) -> PerMessageDeflate {
        // Symmetric windows: one side's encoder matches the other's decoder.
        let config = DeflateConfig::default()
            .threshold(threshold)
            .server_max_window_bits(15)
            .client_max_window_bits(15);
        let offers = parse_extensions([offer]).unwrap();
        let (params, mem_level) = negotiate(&offers, &config).unwrap();
        PerMessageDeflate::new(params, mem_level, &config)
    }

    fn engine(config: &Config, deflate: Option<(usize, usize)>) -> Connection {
        let ext = deflate.map(|(o, t)| Box::new(codec(OFFERS[o], t)) as Box<dyn Extension>);
        Connection::new(Role::Server, config, ext)
    }

    fn drain(out: &mut WriteBuf) -> Vec<u8> {
        let mut v = Vec::new();
        while out.has_remaining() {
            let n = out.chunk().len();
            v.extend_from_slice(out.chunk());
            out.advance(n);
        }
        v
    }

    /// Re-encodes server (unmasked) frames as client (masked) frames.
    fn mask_server_frames(mut wire: &[u8], keys: &[[u8; 4]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while !wire.is_empty() {
            let (len, pos) = match wire[1] & 0x7f {
                126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (n as usize, 2),
            };
            assert_eq!(wire[1] & 0x80, 0, "server frames are not masked");
            let key = keys[i % keys.len()];
            i += 1;
            out.push(wire[0]);
            out.push(wire[1] | 0x80);
            out.extend_from_slice(&wire[2..pos]);
            out.extend_from_slice(&key);
            out.extend(
                wire[pos..pos + len]
                    .iter()
                    .enumerate()
                    .map(|(j, b)| b ^ key[j % 4]),
            );
            wire = &wire[pos + len..];
        }
        out
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            4 => ".{0,300}".prop_map(Message::text),
            4 => proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Message::binary),
            1 => proptest::collection::vec(0u8..3, 0..5000).prop_map(Message::binary),
            1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Message::Ping(p.into())),
            1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Message::Pong(p.into())),
        ]
    }

    /// Feeds `wire` in pieces cut at `cuts`, alternating `process_input`
    /// (read-ahead) and `poll_event` as `read_ahead` says; collects events.
    fn receive(
        conn: &mut Connection,
        wire: &[u8],
        cuts: &[prop::sample::Index],
        read_ahead: &[bool],
    ) -> Vec<Message> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.extend([0, wire.len()]);
        cuts.sort_unstable();
        let mut out = WriteBuf::new();
        let mut got = Vec::new();
        for (k, w) in cuts.windows(2).enumerate() {
            conn.receive_data(&wire[w[0]..w[1]]);
            if read_ahead.get(k).copied().unwrap_or(false) {
                conn.process_input(&mut out);
                // Read-ahead alone may stop at the pending limit: take one.
                if let Some(ev) = conn.poll_event(&mut out) {
                    got.push(ev.expect("valid input"));
                }
            } else {
                while let Some(ev) = conn.poll_event(&mut out) {
                    got.push(ev.expect("valid input"));
                }
            }
        }
        while let Some(ev) = conn.poll_event(&mut out) {
            got.push(ev.expect("valid input"));
        }
        assert!(conn.read_buf().is_empty());
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Encode (server send) → client-side masking re-encode → decode
        /// (another engine) is the identity, whatever the outgoing frame
        /// size, compression and the way the bytes arrive.
        #[test]
        fn what_the_server_sends_decodes_to_the_same_messages(
            msgs in proptest::collection::vec(message(), 1..12),
            out_frame_size in 1usize..400,
            deflate in proptest::option::of((0usize..2, 0usize..200)),
            keys in proptest::collection::vec(any::<[u8; 4]>(), 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
            read_ahead in proptest::collection::vec(any::<bool>(), 0..17),
        ) {
            let mut tx = engine(&Config::default().out_frame_size(out_frame_size), deflate);
            let mut out = WriteBuf::new();
            for m in &msgs {
                tx.send(m.clone(), &mut out).unwrap();
            }
            let wire = mask_server_frames(&drain(&mut out), &keys);
            let mut rx = engine(&Config::default().max_pending_events(1), deflate);
            let got = receive(&mut rx, &wire, &cuts, &read_ahead);
            prop_assert_eq!(got, msgs);
        }

        /// A client's arbitrary fragmentation (uneven fragments, empty ones,
        /// pings in between), delivered in arbitrary pieces with read-ahead
        /// against a pending limit of 1, yields the same messages and answers
        /// every ping in order.
        #[test]
        fn any_client_fragmentation_with_read_ahead_yields_the_same_messages(
            msgs in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..600),
                 proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=125))),
                1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
            read_ahead in proptest::collection::vec(any::<bool>(), 0..25),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            let mut pings = Vec::new();
            for (text, data, splits, ping) in &msgs {
                let data = if *text {
                    String::from_utf8_lossy(data).into_owned().into_bytes()
                } else {
                    data.clone()
                };
                let mut points: Vec<usize> = splits.iter().map(|s| s.index(data.len() + 1)).collect();
                points.extend([0, data.len()]);
                points.sort_unstable();
                let n = points.len() - 1;
                for (i, w) in points.windows(2).enumerate() {
                    let op = if i == 0 { if *text { 1 } else { 2 } } else { 0 };
                    wire.extend(super::masked_frame(i == n - 1, 0, op, &data[w[0]..w[1]]));
                    if let (Some(p), true) = (ping, i + 1 < n) {
                        wire.extend(super::masked_frame(true, 0, 9, p));
                        expected.push(Message::Ping(p.clone().into()));
                        pings.push(p.clone());
                    }
                }
                expected.push(if *text {
                    Message::text(String::from_utf8(data).unwrap())
                } else {
                    Message::binary(data)
                });
            }
            let mut rx = engine(&Config::default().max_pending_events(1), None);
            let got = receive(&mut rx, &wire, &cuts, &read_ahead);
            prop_assert_eq!(got, expected);
        }
    }
}

/// Read-ahead (the split writer answering pings while nobody reads) is
/// bounded in bytes as well as in messages: a few KiB of compressed frames
/// that inflate to `max_message_size` each are not all inflated and held
/// before the application reads one.
#[test]
fn read_ahead_holds_at_most_one_message_worth_of_bytes() {
    use tower_ws::extensions::Extension;
    use tower_ws::extensions::deflate::{PerMessageDeflate, negotiate};
    use tower_ws::proto::{Connection, Role, WriteBuf};
    let config = tower_ws::DeflateConfig::default().threshold(0);
    let codec = || {
        let offers = tower_ws::extensions::parse_extensions(["permessage-deflate"]).unwrap();
        let (params, mem) = negotiate(&offers, &config).unwrap();
        PerMessageDeflate::new(params, mem, &config)
    };
    let limit = 1 << 20;
    let mut conn = Connection::new(
        Role::Server,
        &Config::default().max_message_size(limit),
        Some(Box::new(codec())),
    );
    let mut client = codec();
    let mut wire = Vec::new();
    for _ in 0..64 {
        let z = client.encode(&vec![0u8; limit]).unwrap().unwrap();
        wire.extend(masked_frame(true, 0b100, 0x2, &z));
    }
    let frame_len = wire.len() / 64;
    conn.receive_data(&wire);
    let mut out = WriteBuf::new();
    conn.process_input(&mut out);
    // At most one message was inflated ahead; the rest waits, unparsed.
    assert!(!conn.wants_read());
    assert_eq!(conn.read_buf().len(), wire.len() - frame_len);
    // Reading resumes as the application takes messages.
    let mut received = 0;
    while let Some(Ok(msg)) = conn.poll_event(&mut out) {
        assert_eq!(msg.len(), limit);
        received += 1;
    }
    assert_eq!(received, 64);
}
