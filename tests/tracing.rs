//! What the `tracing` feature logs, captured with a `tracing-subscriber`
//! writing to memory: the connection span and its fields, refused
//! handshakes, closes, protocol errors, keepalive timeouts, slow consumers,
//! contained panics, and nothing per message above TRACE.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use support::{RawClient, echo, upgrade_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use tower_ws::handler::{Client, Handler, Hub, Options, Overflow};
use tower_ws::{Config, Message, PeerAddr, UpgradeHandler, WebSocketService};
use tracing_subscriber::fmt::MakeWriter;

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a line contains every one of `needles`; returns it.
    async fn line_with(&self, needles: &[&str]) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Some(line) = self
                .text()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.to_owned();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no line with {needles:?} in:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Installs a capturing subscriber for this test's thread (the test runs
/// on a current-thread runtime, so the server's tasks log here too).
fn capture(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

/// Serves on a free port; the accept loop puts the peer address in every
/// request, as the docs of `PeerAddr` say.
async fn serve<H: UpgradeHandler>(service: WebSocketService<H>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let service = service.clone().map_request(
                move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    req
                },
            );
            tokio::spawn(
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(
                        TokioIo::new(tcp),
                        TowerToHyperService::new(service),
                    )
                    .into_owned(),
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_connection_logs_its_span_and_its_close() {
    let (log, _guard) = capture("tower_ws=debug");
    let service = WebSocketService::new(echo).protocols(["chat"]);
    let addr = serve(service).await;
    let (mut ws, _) = RawClient::connect(
        addr,
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    let local = ws.tcp.local_addr().unwrap().to_string();
    for _ in 0..50 {
        ws.send(true, 0, 0x2, b"payload").await;
        ws.recv().await.unwrap();
    }
    ws.send(true, 0, 0x8, &[0x03, 0xe8, b'b', b'y', b'e']).await;
    ws.recv().await.unwrap();

    let opened = log.line_with(&["WebSocket opened"]).await;
    assert!(opened.contains(&format!("peer={local}")), "{opened}");
    assert!(opened.contains("path=/ "), "{opened}");
    assert!(opened.contains("HTTP/1.1"), "{opened}");
    assert!(opened.contains("subprotocol=chat"), "{opened}");
    assert!(opened.contains("extensions=permessage-deflate"), "{opened}");
    let closed = log.line_with(&["WebSocket closed"]).await;
    for field in [
        "closed_by=\"peer\"",
        "code_sent=1000",
        "code_received=1000",
        "reason_received=bye",
        "messages_in=50",
        "messages_out=50",
        "bytes_in=350",
        "duration_ms=",
        &format!("peer={local}"),
    ] {
        assert!(closed.contains(field), "{field} missing: {closed}");
    }
    // 50 messages each way, and nothing logged per message at DEBUG.
    assert!(log.text().lines().count() <= 3, "{}", log.text());
}

#[tokio::test]
async fn messages_are_logged_at_trace_only() {
    let (log, _guard) = capture("tower_ws=trace");
    let addr = serve(WebSocketService::new(echo)).await;
    let (mut ws, _) = RawClient::connect(addr, "").await;
    ws.send(true, 0, 0x1, b"hello").await;
    ws.recv().await.unwrap();
    let received = log.line_with(&["message received"]).await;
    assert!(
        received.contains("TRACE") && received.contains("len=5"),
        "{received}"
    );
    log.line_with(&["message sent", "text"]).await;
}

#[tokio::test]
async fn refused_handshakes_and_protocol_errors_are_logged() {
    let (log, _guard) = capture("tower_ws=debug");
    let addr = serve(WebSocketService::new(echo)).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = upgrade_request("/x", "").replace("13", "8");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 256];
    let _ = tcp.read(&mut buf).await.unwrap();
    let refused = log.line_with(&["handshake refused"]).await;
    for field in [
        "status=426",
        "Sec-WebSocket-Version",
        "path=\"/x\"",
        "peer=",
    ] {
        assert!(refused.contains(field), "{field} missing: {refused}");
    }

    let (mut ws, _) = RawClient::connect(addr, "").await;
    ws.send_raw(&[0x81, 0x01, b'x']).await; // unmasked
    assert_eq!(ws.recv().await.unwrap().close_code(), Some(1002));
    let broken = log.line_with(&["broke the protocol"]).await;
    assert!(
        broken.contains("unmasked") && broken.contains("code=1002"),
        "{broken}"
    );
}

#[tokio::test]
async fn keepalive_timeouts_are_logged() {
    let (log, _guard) = capture("tower_ws=debug");
    let config = Config::default()
        .ping_interval(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(100));
    let addr = serve(WebSocketService::new(echo).config(config)).await;
    let (mut silent, _) = RawClient::connect(addr, "").await;
    assert_eq!(silent.recv().await.unwrap().opcode, 0x9);
    log.line_with(&["keepalive ping unanswered", "peer="]).await;
    let closed = log.line_with(&["WebSocket closed"]).await;
    assert!(closed.contains("code_sent=1011"), "{closed}");
}

struct Fragile;

impl Handler for Fragile {
    async fn on_message(&self, msg: Message, _client: &Client) {
        if msg.as_text() == Some("boom") {
            panic!("the handler has a bug");
        }
    }
}

#[tokio::test]
async fn contained_panics_and_slow_consumers_are_logged() {
    let (log, _guard) = capture("tower_ws=debug");
    let hub = Hub::new(
        Fragile,
        Options::default()
            .queue_capacity(1)
            .overflow(Overflow::DropMessage),
    );
    let config = Config::default()
        .deflate(None)
        .write_buffer_high_water(1024);
    let addr = serve(WebSocketService::new(hub.clone()).config(config)).await;

    let (mut a, _) = RawClient::connect(addr, "").await;
    a.send(true, 0, 0x1, b"boom").await;
    let panic = log.line_with(&["panicked"]).await;
    assert!(panic.contains("ERROR"), "{panic}");
    assert!(panic.contains("the handler has a bug") && panic.contains("on_message"));

    let (_stalled, _) = RawClient::connect(addr, "").await;
    while hub.clients().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..100 {
        hub.clients()
            .broadcast(Message::binary(vec![0u8; 64 << 10]));
        tokio::task::yield_now().await;
    }
    log.line_with(&["slow consumer", "dropping messages"]).await;
    let drops = log.text().matches("slow consumer").count();
    assert_eq!(
        drops, 1,
        "one event for the first drop, not one per message"
    );
}
