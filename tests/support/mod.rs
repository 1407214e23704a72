//! Shared helpers for the integration tests: an in-process server on a real
//! TCP port, and a raw client that writes frames byte by byte.
#![allow(dead_code)]

pub mod http2;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ws::{UpgradeHandler, WebSocketService};

/// Serves `service` (wrapping a "hello from the inner service" route) on a
/// free loopback port, on the test's runtime.
pub async fn serve<H: UpgradeHandler>(
    service: WebSocketService<H, tower_ws::UpgradeRequired>,
) -> SocketAddr {
    serve_on_loopback(service, None).await
}

/// Like [`serve`], with hyper's HTTP/1 `header_read_timeout` set (and the
/// timer it needs): a client that does not complete its request head within
/// `header_read_timeout`, or sends nothing at all, is disconnected
/// (slowloris). Not covered: a client whose first bytes are a prefix of the
/// HTTP/2 preface (`PRI * HTTP/2.0...`), which hyper-util's auto builder
/// waits on without a timeout (see tests/hostile.rs).
pub async fn serve_with_timeouts<H: UpgradeHandler>(
    service: WebSocketService<H, tower_ws::UpgradeRequired>,
    header_read_timeout: Duration,
) -> SocketAddr {
    serve_on_loopback(service, Some(header_read_timeout)).await
}

/// The inner service of the test servers.
pub type Hello = tower::util::ServiceFn<
    fn(
        http::Request<hyper::body::Incoming>,
    ) -> std::future::Ready<Result<http::Response<Full<Bytes>>, Infallible>>,
>;

/// An inner service answering every request with "hello from the inner service".
pub fn hello() -> Hello {
    fn respond(
        _req: http::Request<hyper::body::Incoming>,
    ) -> std::future::Ready<Result<http::Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"hello from the inner service",
        )))))
    }
    tower::service_fn(respond as fn(_) -> _)
}

async fn serve_on_loopback<H: UpgradeHandler>(
    service: WebSocketService<H, tower_ws::UpgradeRequired>,
    header_read_timeout: Option<Duration>,
) -> SocketAddr {
    let service = service.with_inner(hello());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let svc = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                if let Some(timeout) = header_read_timeout {
                    // hyper starts the header timer at the first byte of a
                    // head: a client that sends nothing needs a timer of its own.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    builder
                        .http1()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(timeout);
                }
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Opens a WebSocket on `addr` with a blocking socket (for tests that
/// count what the server allocates, outside any runtime): the upgrade
/// request, then the response read up to its empty line, which must be
/// `101`. Nothing follows the response unasked.
pub fn blocking_upgrade(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    tcp.write_all(upgrade_request("/", "").as_bytes()).unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "{response:?}");
    tcp
}

/// A client that speaks WebSocket by hand, to send what real clients won't.
pub struct RawClient {
    pub tcp: TcpStream,
    buf: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawClient {
    /// Connects and completes the handshake; returns the response head too.
    pub async fn connect(addr: SocketAddr, extra_headers: &str) -> (RawClient, String) {
        Self::connect_with(addr, &upgrade_request("/", extra_headers), &[]).await
    }

    /// Sends `request` followed immediately by `pipelined` bytes.
    pub async fn connect_with(
        addr: SocketAddr,
        request: &str,
        pipelined: &[u8],
    ) -> (RawClient, String) {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut first = request.as_bytes().to_vec();
        first.extend_from_slice(pipelined);
        tcp.write_all(&first).await.unwrap();
        let mut client = RawClient {
            tcp,
            buf: Vec::new(),
        };
        let head = client.read_head().await;
        (client, head)
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                return head;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
                .await
                .expect("response head in time")
                .unwrap();
            assert!(n > 0, "connection closed before the response head");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, fin: bool, rsv: u8, opcode: u8, payload: &[u8]) {
        self.tcp
            .write_all(&masked_frame(fin, rsv, opcode, payload))
            .await
            .unwrap();
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// Reads the next frame, or `None` on EOF/reset (within 5 s).
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = vec![0u8; 64 << 10];
            let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
                .await
                .expect("a frame or EOF within 5 s");
            match n {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until EOF; true if the server closed the TCP connection within 5 s.
    pub async fn expect_eof(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Encodes a client frame with a fixed masking key.
pub fn masked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

pub fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(pos..pos + len)?.to_vec();
    pos += len;
    Some((
        Frame {
            fin: buf[0] & 0x80 != 0,
            rsv: (buf[0] >> 4) & 7,
            opcode: buf[0] & 0x0f,
            payload,
        },
        pos,
    ))
}

/// An echo handler: echoes text and binary messages.
pub async fn echo(mut ws: tower_ws::UpgradedWebSocket, _head: tower_ws::RequestHead) {
    use futures_util::{SinkExt, StreamExt};
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Counts handlers that are running: incremented when one starts,
/// decremented when its future is dropped (returned or cancelled).
#[derive(Clone, Default)]
pub struct Live(Arc<AtomicUsize>);

pub struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    pub fn enter(&self) -> LiveGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        LiveGuard(self.0.clone())
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// Waits until no handler runs.
    pub async fn wait_zero(&self, within: Duration) {
        self.wait_for(0, within).await;
    }

    /// Waits until exactly `n` handlers run.
    pub async fn wait_for(&self, n: usize, within: Duration) {
        let start = Instant::now();
        while self.get() != n {
            assert!(
                start.elapsed() < within,
                "{} handlers still running after {within:?}, not {n}",
                self.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An echo service whose handlers are counted by `live`.
pub fn counted_echo(live: &Live) -> WebSocketService<impl UpgradeHandler> {
    let live = live.clone();
    WebSocketService::new(
        move |ws: tower_ws::UpgradedWebSocket, head: tower_ws::RequestHead| {
            let guard = live.enter();
            async move {
                let _guard = guard;
                echo(ws, head).await;
            }
        },
    )
}
