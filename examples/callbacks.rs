//! python-WS's own example with tower-ws's callback interface: every
//! message is broadcast to every client, and opens, closes, pings and pongs
//! are printed.
//!
//! Run: `cargo run --example callbacks -- [ADDR]` (ADDR defaults to
//! 127.0.0.1:8080; 127.0.0.1:0 picks a free port). It prints
//! `tower-ws callbacks example on http://ADDR/ (WebSocket on any path)`, then
//! one line per event. Try it with two `websocat ws://ADDR/` windows, or
//! the chat page of the `demo` example. Ctrl-C closes every client with 1001.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::{CloseFrame, Message, WebSocketService};
use tracing_subscriber::EnvFilter;

struct WsHandler;

impl Handler for WsHandler {
    async fn on_message(&self, msg: Message, client: &Client) {
        // python-WS: `for client in self.clients: client.write_message(msg)`.
        client.clients().broadcast(msg);
    }

    async fn on_open(&self, client: &Client) {
        println!("Client {} connected!", client.id());
    }

    async fn on_close(&self, client: &Client, frame: Option<CloseFrame>) {
        match frame {
            Some(frame) => println!(
                "Client {} left ({} {:?})",
                client.id(),
                frame.code,
                frame.reason.as_str()
            ),
            None => println!("Client {} left (no close frame)", client.id()),
        }
    }

    async fn on_ping(&self, client: &Client, payload: Bytes) {
        println!("Received ping from client {}: {payload:?}", client.id());
    }

    async fn on_pong(&self, client: &Client, payload: Bytes) {
        println!("Received pong from client {}: {payload:?}", client.id());
    }
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
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;

    // Keepalive pings every 20 s show up as pongs in the output.
    let options = Options::default().ping_interval(Some(Duration::from_secs(20)));
    let hub = Hub::new(WsHandler, options);
    let clients = hub.clients().clone();
    let service = WebSocketService::new(hub);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "tower-ws callbacks example on http://{}/ (WebSocket on any path)",
        listener.local_addr()?
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            _ = &mut ctrl_c => break,
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        });
    }
    clients.shutdown(Duration::from_secs(3)).await;
    Ok(())
}
