//! A chat room: every browser tab that joins gets every message, over a
//! `tokio::sync::broadcast` channel. Each socket is `split()` into a
//! sending task (broadcast → socket) and a receiving task (socket →
//! broadcast); when either ends, the other is aborted.
//!
//! The first text message a client sends is its name; a name already in
//! use is refused with a close frame (code 4000).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{Html, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast;

#[cfg(feature = "upstream")]
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
#[cfg(not(feature = "upstream"))]
use tower_ws::axum::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};

/// The room: who is in it, and the channel every message goes through.
#[derive(Clone)]
pub struct Room {
    names: Arc<Mutex<HashSet<String>>>,
    tx: broadcast::Sender<Utf8Bytes>,
}

impl Default for Room {
    fn default() -> Self {
        Room {
            names: Arc::default(),
            tx: broadcast::channel(100).0,
        }
    }
}

/// The chat page.
pub async fn page() -> Html<&'static str> {
    Html(include_str!("chat.html"))
}

/// `GET /chat`: the WebSocket.
pub async fn upgrade(ws: WebSocketUpgrade, State(room): State<Room>) -> Response {
    ws.on_upgrade(move |socket| join(socket, room))
}

async fn join(socket: WebSocket, room: Room) {
    let (mut sender, mut receiver) = socket.split();

    // The first message is the name.
    let mut name = String::new();
    while let Some(Ok(msg)) = receiver.next().await {
        if let Message::Text(text) = msg {
            let wanted = text.trim();
            if !wanted.is_empty() && room.names.lock().unwrap().insert(wanted.to_owned()) {
                name = wanted.to_owned();
            }
            break;
        }
    }
    if name.is_empty() {
        let refusal = CloseFrame {
            code: 4000,
            reason: Utf8Bytes::from_static("name missing or already taken"),
        };
        let _ = sender.send(Message::Close(Some(refusal))).await;
        return;
    }

    let mut rx = room.tx.subscribe();
    let _ = room.tx.send(format!("{name} joined.").into());

    let mut send_task = tokio::spawn(async move {
        while let Ok(line) = rx.recv().await {
            if sender.send(Message::Text(line)).await.is_err() {
                break;
            }
        }
    });
    let tx = room.tx.clone();
    let speaker = name.clone();
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = receiver.next().await {
            let _ = tx.send(format!("{speaker}: {}", text.as_str()).into());
        }
    });
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    }

    let _ = room.tx.send(format!("{name} left.").into());
    room.names.lock().unwrap().remove(&name);
}
