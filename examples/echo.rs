//! Echo server: echoes every text and binary message unchanged.
//!
//! The server that conformance suites, interop tests and the load benchmark
//! talk to. It accepts the WebSocket on any path, over HTTP/1.1 (upgrade)
//! and HTTP/2 (RFC 8441 extended CONNECT; clear-text HTTP/2 with prior
//! knowledge, or ALPN `h2` with `--tls`), negotiates permessage-deflate
//! (every RFC 7692 parameter) unless `--no-deflate` is given, and prints
//! nothing per connection.
//!
//! Run: `cargo run --release --example echo -- [ADDR] [--no-deflate]
//! [--tls CERT.pem KEY.pem] [--threads N]` (ADDR defaults to 127.0.0.1:9001; use
//! 127.0.0.1:0 for a free port). The first line printed is
//! `tower-ws echo server listening on ws://ADDR` (`wss://` with `--tls`).
//! `--threads N` runs N runtime worker threads (default 1).

use std::net::SocketAddr;
use std::path::PathBuf;

use futures_util::{SinkExt, StreamExt};
use tower_ws::server::TlsConfig;
use tower_ws::{Config, DeflateConfig, Message, RequestHead, UpgradedWebSocket, WebSocketService};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: echo [ADDR] [--no-deflate] [--tls CERT.pem KEY.pem] [--threads N]   (ADDR defaults to 127.0.0.1:9001; N runtime worker threads, default 1)";

/// Echoes data messages. `feed` queues the reply without flushing: the
/// WebSocket writes everything queued once it has no more complete input,
/// so a burst of messages is answered with one write.
///
/// A function returning an `async move` block rather than an `async fn`:
/// rustc keeps an `async fn`'s arguments in its future beside the locals
/// they are moved to, so `async fn echo(mut ws: ..)` would hold the
/// WebSocket twice (728 bytes more per connection, for as long as it is
/// open). The block uses the captured `ws` itself.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn echo(mut ws: UpgradedWebSocket, _head: RequestHead) -> impl Future<Output = ()> {
    async move {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(_) | Message::Binary(_) = msg {
                if ws.feed(msg).await.is_err() {
                    break;
                }
            }
        }
    }
}

struct Args {
    addr: SocketAddr,
    deflate: bool,
    tls: Option<(PathBuf, PathBuf)>,
    threads: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        addr: "127.0.0.1:9001".parse().expect("valid default address"),
        deflate: true,
        tls: None,
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--no-deflate" => args.deflate = false,
            "--tls" => match (it.next(), it.next()) {
                (Some(cert), Some(key)) => args.tls = Some((cert.into(), key.into())),
                _ => return Err("--tls needs a certificate and a key file".into()),
            },
            "--threads" => {
                args.threads = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or("--threads needs a number of threads, 1 or more")?
            }
            "-h" | "--help" => return Ok(None),
            other => {
                args.addr = other
                    .parse()
                    .map_err(|e| format!("{other:?} is not an address like 127.0.0.1:9001: {e}"))?;
            }
        }
    }
    Ok(Some(args))
}

fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(e) => {
            eprintln!("echo: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // One thread by default (what the benchmarks pin to one core);
    // `--threads N` for a multi-threaded runtime (bench/scaling.sh).
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> std::io::Result<()> {
    // No keepalive pings here: conformance suites compare every frame the
    // server sends, and an unasked ping would be one too many.
    let config = Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20)
        .deflate(args.deflate.then(|| {
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

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let scheme = if args.tls.is_some() { "wss" } else { "ws" };
    println!(
        "tower-ws echo server listening on {scheme}://{}",
        listener.local_addr()?
    );
    let mut server = tower_ws::serve(listener, service);
    if let Some((cert, key)) = &args.tls {
        server = server.tls(TlsConfig::from_pem_files(cert, key)?);
    }
    server.await
}
