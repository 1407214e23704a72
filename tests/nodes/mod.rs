//! Helpers for the rooms and multi-node tests: a chat handler driven by
//! text commands, nodes on free ports, and WebSocket clients.
#![allow(dead_code)]

pub mod redis_server;
#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::{Message, WebSocketService};

pub type WsClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(10);

/// A chat driven by text commands, one per message:
/// `all BODY`, `room R BODY`, `others R BODY` (all of R but the sender),
/// `join R`, `leave R`, `len`, `len R`. A `?room=R` query joins R on open;
/// every client is greeted with `welcome` once joined.
pub struct RoomChat;

impl Handler for RoomChat {
    async fn on_open(&self, client: &Client) {
        if let Some(room) = client
            .request()
            .uri
            .query()
            .and_then(|q| q.strip_prefix("room="))
        {
            client.join(room);
        }
        let _ = client.write_message("welcome");
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        let Some(text) = msg.as_text() else { return };
        let clients = client.clients();
        let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
        let (room, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let reply = match command {
            "all" => {
                clients.broadcast(rest.to_owned());
                return;
            }
            "room" => {
                clients.to(room).broadcast(body.to_owned());
                return;
            }
            "others" => {
                clients.to(room).broadcast_except(body.to_owned(), client);
                return;
            }
            "join" => format!("join {}", client.join(room)),
            "leave" => format!("leave {}", client.leave(room)),
            "len" if room.is_empty() => format!("len {}", clients.len()),
            "len" => format!("len {}", clients.to(room).len()),
            _ => return,
        };
        let _ = client.write_message(reply);
    }
}

/// A hub with `options` serving [`RoomChat`] on a free loopback port.
pub async fn start_node(options: Options) -> (Hub<RoomChat>, SocketAddr) {
    let hub = Hub::new(RoomChat, options);
    let addr = support::serve(WebSocketService::new(hub.clone())).await;
    (hub, addr)
}

/// A client of `addr`, in `room` if given, once greeted.
pub async fn connect(addr: SocketAddr, room: Option<&str>) -> WsClient {
    let url = match room {
        Some(room) => format!("ws://{addr}/?room={room}"),
        None => format!("ws://{addr}/"),
    };
    let (mut ws, _) = timeout(WAIT, connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    assert_eq!(recv(&mut ws).await, "welcome");
    ws
}

pub async fn send(ws: &mut WsClient, text: &str) {
    ws.send(WsMessage::text(text)).await.expect("send");
}

/// The next text message.
pub async fn recv(ws: &mut WsClient) -> String {
    loop {
        let msg = timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the stream goes on")
            .expect("no error");
        match msg {
            WsMessage::Text(text) => return text.to_string(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends a command and returns its one-line answer.
pub async fn ask(ws: &mut WsClient, command: &str) -> String {
    send(ws, command).await;
    recv(ws).await
}

/// Asserts that nothing arrives within `quiet`.
pub async fn assert_silent(ws: &mut WsClient, quiet: Duration) {
    if let Ok(msg) = timeout(quiet, ws.next()).await {
        panic!("expected nothing, got {msg:?}");
    }
}

/// Waits until `check` holds, polling; panics after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
