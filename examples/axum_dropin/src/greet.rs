//! A handler taking `State` and `Query` next to the extractor, selecting a
//! subprotocol from the client's offers: the greeting names the visitor,
//! counts visitors in shared state, and says which subprotocol was agreed;
//! then every text comes back prefixed with that subprotocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

#[cfg(feature = "upstream")]
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
#[cfg(not(feature = "upstream"))]
use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};

/// How many sockets were greeted so far.
#[derive(Clone, Default)]
pub struct Visitors(Arc<AtomicUsize>);

/// `?name=...`
#[derive(Deserialize)]
pub struct Params {
    name: String,
}

/// `/greet?name=NAME`, offering subprotocols `chat.v1` and/or `chat.v2`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(visitors): State<Visitors>,
    Query(params): Query<Params>,
) -> Response {
    let n = visitors.0.fetch_add(1, Ordering::Relaxed) + 1;
    let offered = ws.requested_protocols().count();
    let ws = ws.protocols(["chat.v2", "chat.v1"]);
    let protocol = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let greeting = format!(
        "hello {}, visitor #{n}, {offered} protocol(s) offered, speaking {protocol}",
        params.name
    );
    ws.on_upgrade(move |socket| talk(socket, greeting))
}

async fn talk(mut socket: WebSocket, greeting: String) {
    if socket.send(Message::text(greeting)).await.is_err() {
        return;
    }
    let prefix = match socket.protocol() {
        Some(protocol) => protocol.to_str().unwrap_or("?").to_owned(),
        None => "plain".to_owned(),
    };
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(text) = msg {
            let reply = Message::text(format!("[{prefix}] {}", text.as_str()));
            if socket.send(reply).await.is_err() {
                return;
            }
        }
    }
}
