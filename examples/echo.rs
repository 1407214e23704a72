//! Echo server: echoes every text and binary message unchanged.
//!
//! The server that conformance suites, interop tests and the load benchmark
//! talk to. It accepts the upgrade on any path, negotiates permessage-deflate
//! (every RFC 7692 parameter) unless `--no-deflate` is given, and prints
//! nothing per connection.
//!
//! Run: `cargo run --release --example echo -- [ADDR] [--no-deflate]`
//! (ADDR defaults to 127.0.0.1:9001; use 127.0.0.1:0 for a free port). The
//! first line printed is `tower-ws echo server listening on ws://ADDR`.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_ws::{Config, DeflateConfig, Message, RequestHead, UpgradedWebSocket, WebSocketService};
use tracing_subscriber::EnvFilter;

/// How long a client may take to send its request head.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Echoes data messages. `feed` queues the reply without flushing: the
/// WebSocket writes everything queued once it has no more complete input,
/// so a burst of messages is answered with one write.
async fn echo(mut ws: UpgradedWebSocket, _head: RequestHead) {
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(_) | Message::Binary(_) = msg {
            if ws.feed(msg).await.is_err() {
                break;
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut addr: SocketAddr = "127.0.0.1:9001".parse().expect("valid default address");
    let mut deflate = true;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-deflate" => deflate = false,
            "-h" | "--help" => {
                println!("usage: echo [ADDR] [--no-deflate]   (ADDR defaults to 127.0.0.1:9001)");
                return Ok(());
            }
            other => {
                addr = other.parse().map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{other:?} is not an address like 127.0.0.1:9001: {e}"),
                    )
                })?;
            }
        }
    }

    // No keepalive pings here: conformance suites compare every frame the
    // server sends, and an unasked ping would be one too many.
    let config = Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .deflate(deflate.then(|| {
            // Compress everything, with the client's window wherever it asks,
            // and keep the compressor's context between messages (a budget
            // that holds 15-bit windows both ways).
            DeflateConfig::default()
                .threshold(0)
                .server_max_window_bits(15)
                .client_max_window_bits(15)
                .max_memory(1 << 20)
        }));
    let service = WebSocketService::new(echo).config(config);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "tower-ws echo server listening on ws://{}",
        listener.local_addr()?
    );
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors or similar: keep serving the others.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tcp.set_nodelay(true)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // Slow or silent clients: hyper's header read timeout (which needs
            // a timer) runs from the first byte of a request head, so a
            // connection that sends nothing gets the same deadline here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        });
    }
}
