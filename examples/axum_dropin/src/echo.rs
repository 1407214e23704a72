//! Echo with `recv()`/`send()`, the loop of axum's documentation. Text
//! `close me` makes the server close with code 4001. Mounted with `any`, so
//! HTTP/2 extended CONNECT (RFC 8441) reaches it as well as HTTP/1.1 GET.

use axum::response::Response;

#[cfg(feature = "upstream")]
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
#[cfg(not(feature = "upstream"))]
use tower_ws::axum::{CloseFrame, Message, WebSocket, WebSocketUpgrade};

/// `/echo`: any method, so both the HTTP/1.1 upgrade and the HTTP/2
/// extended CONNECT are handled.
pub async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(16 << 20).on_upgrade(handle_socket)
}

async fn handle_socket(mut socket: WebSocket) {
    while let Some(msg) = socket.recv().await {
        let msg = if let Ok(msg) = msg {
            msg
        } else {
            // client disconnected
            return;
        };
        let reply = match msg {
            Message::Text(text) if text == "close me" => Message::Close(Some(CloseFrame {
                code: 4001,
                reason: "closing as asked".into(),
            })),
            Message::Text(_) | Message::Binary(_) => msg,
            // Pings are answered by the library.
            Message::Ping(_) | Message::Pong(_) => continue,
            // The client is closing.
            Message::Close(_) => return,
        };
        if socket.send(reply).await.is_err() {
            // client disconnected
            return;
        }
    }
}
