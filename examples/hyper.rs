//! Plain hyper 1 and hyper-util: `WebSocketLayer` wraps an ordinary
//! `service_fn`, so one port serves both; the WebSocket side uses the
//! `Stream`/`Sink` interface directly.
//!
//! Run: `cargo run --example hyper -- [ADDR]` (ADDR defaults to
//! 127.0.0.1:3000; 127.0.0.1:0 picks a free port). It prints
//! `tower-ws with hyper on http://ADDR/`. Then `curl http://ADDR/` for the
//! HTTP route, and `websocat ws://ADDR/ws` for an echo WebSocket.

use std::convert::Infallible;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketLayer, WebSocketService};
use tracing_subscriber::EnvFilter;

/// The ordinary HTTP routes.
async fn routes(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match req.uri().path() {
        "/" => Response::new(Full::from("hello from hyper; a WebSocket echo is at /ws\n")),
        _ => {
            let mut not_found = Response::new(Full::from("not found\n"));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            not_found
        }
    };
    Ok(response)
}

/// Echoes text and binary messages. A `fn` returning an `async move`
/// block, not an `async fn`, so the future holds the WebSocket once (see
/// [`UpgradeHandler`](tower_ws::UpgradeHandler)).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn echo(mut ws: UpgradedWebSocket, _head: RequestHead) -> impl Future<Output = ()> {
    async move {
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
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
        .unwrap_or("127.0.0.1:3000")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;

    // Keepalive: a ping every 20 s finds peers that vanished (1011 after
    // 20 s more without an answer).
    let config =
        tower_ws::Config::default().ping_interval(Some(std::time::Duration::from_secs(20)));
    let websocket = WebSocketLayer::from(WebSocketService::new(echo).path("/ws").config(config));
    let app = ServiceBuilder::new()
        .layer(websocket)
        .service(tower::service_fn(routes));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("tower-ws with hyper on http://{}/", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        });
    }
}
