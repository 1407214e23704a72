//! tower-ws in an axum 0.8 Router, mounted both ways: the WebSockets are
//! routes among ordinary ones, and all of them share state.
//!
//! - `/ws` is a `WebSocketService` mounted with `route_service`, serving
//!   the callback interface (`tower_ws::handler`) with a connection limit;
//! - `/echo` is an ordinary axum handler with the `WebSocketUpgrade`
//!   extractor of `tower_ws::axum` next to `State`: axum's own API, where
//!   switching from `axum::extract::ws` is one `use` line.
//!
//! Run: `cargo run --example axum -- [ADDR]` (ADDR defaults to
//! 127.0.0.1:3000; 127.0.0.1:0 picks a free port). It prints
//! `tower-ws in axum on http://ADDR/`. Then:
//! - `curl http://ADDR/` — an ordinary route;
//! - `websocat ws://ADDR/ws` — every message comes back numbered, `#N: text`;
//! - `websocat ws://ADDR/echo` — every message comes back as it was;
//! - `curl http://ADDR/stats` — how many WebSocket messages arrived so far
//!   on both, counted by the WebSocket handlers in state the route shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get};
use tower_ws::axum::{WebSocket, WebSocketUpgrade};
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::{Message, WebSocketService};
use tracing_subscriber::EnvFilter;

/// State shared by the HTTP routes and the WebSocket handler.
#[derive(Clone, Default)]
struct Stats {
    messages: Arc<AtomicU64>,
}

/// Answers every message with its number.
struct Numbered {
    stats: Stats,
}

impl Handler for Numbered {
    async fn on_message(&self, msg: Message, client: &Client) {
        let n = self.stats.messages.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(text) = msg.as_text() {
            client.write_message(format!("#{n}: {text}")).ok();
        }
    }
}

/// The extractor, composed with `State` like any axum extractor.
async fn echo(ws: WebSocketUpgrade, State(stats): State<Stats>) -> Response {
    ws.max_message_size(1 << 20)
        .on_upgrade(move |socket| echo_socket(socket, stats))
}

async fn echo_socket(mut socket: WebSocket, stats: Stats) {
    use tower_ws::axum::Message;
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(_) | Message::Binary(_) = msg {
            stats.messages.fetch_add(1, Ordering::Relaxed);
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    }
}

async fn index() -> &'static str {
    "tower-ws in axum: WebSockets at /ws (service) and /echo (extractor), message count at /stats\n"
}

async fn show_stats(State(stats): State<Stats>) -> String {
    format!("messages: {}\n", stats.messages.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;

    let stats = Stats::default();
    let hub = Hub::new(
        Numbered {
            stats: stats.clone(),
        },
        // Keepalive: a ping every 20 s finds peers that vanished.
        Options::default().ping_interval(Some(std::time::Duration::from_secs(20))),
    );
    let clients = hub.clients().clone();
    let app = Router::new()
        .route("/", get(index))
        .route("/stats", get(show_stats))
        .route("/echo", any(echo))
        .route_service("/ws", WebSocketService::new(hub).max_connections(1000))
        .with_state(stats);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("tower-ws in axum on http://{}/", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            clients.shutdown(Duration::from_secs(3)).await;
        })
        .await
}
