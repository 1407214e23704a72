//! The axum peer (axum_echo.rs) with one line changed: its `use` of
//! `axum::extract::ws` now names `tower_ws::axum`. Same handler, same
//! `axum::serve`; the connection underneath is tower-ws's.

use axum::Router;
use axum::response::Response;
use axum::serve::ListenerExt;
use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};
use tower_ws_bench::{MAX_MESSAGE, announce, listen_addr, runtime};

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) && socket.send(msg).await.is_err() {
            break;
        }
    }
}

fn main() {
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(listen_addr())
            .await
            .expect("bind");
        announce(listener.local_addr().unwrap());
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        // `fallback` rather than a route: the upgrade is accepted on any path.
        let app = Router::new().fallback(upgrade);
        axum::serve(listener, app).await.expect("serve");
    });
}
