//! Chat demo: one server on one port serves the chat page from
//! `examples/static/` at `/` and the chat WebSocket at `/ws`, with
//! permessage-deflate, keepalive pings and graceful shutdown on Ctrl-C
//! (every browser is told 1001 Going Away).
//!
//! Run: `cargo run --release --example demo -- [ADDR] [--redis URL]` (ADDR
//! defaults to 127.0.0.1:8080; 127.0.0.1:0 picks a free port), then open the
//! URL it prints, `tower-ws chat demo on http://ADDR/`, in two browser tabs.
//!
//! The chat is python-WS's example written with [`tower_ws::handler`]: every
//! message is broadcast to the sender's room (`/#room-name` or `/?room=`,
//! the lobby by default), as JSON the page renders.
//!
//! Several nodes: with `--redis redis://HOST:PORT`, any number of demo
//! processes on different ports form one chat through Redis; "N online"
//! counts everyone on every node.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower_http::services::ServeDir;
use tower_ws::backplane::{RedisBackplane, RedisConfig};
use tower_ws::handler::{Client, Clients, Handler, Hub, Options};
use tower_ws::{CloseFrame, Message, WebSocketService};

const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static");

/// How long a client may take to send a request head (also the idle limit of
/// a keep-alive HTTP connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long Ctrl-C waits for the browsers to answer the 1001 close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

/// The chat; `node` tags client ids so they are unique across nodes.
struct Chat {
    node: String,
}

impl Chat {
    fn who(&self, client: &Client) -> String {
        format!("{}{}", self.node, client.id())
    }
}

/// The room a page asked for (`/ws?room=NAME`): up to 40 of `a-z 0-9 - _`,
/// else the lobby.
fn room_of(client: &Client) -> String {
    let room = client
        .request()
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("room=")))
        .unwrap_or_default();
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if room.is_empty() || room.len() > 40 || !room.chars().all(valid) {
        "lobby".into()
    } else {
        room.into()
    }
}

impl Handler for Chat {
    async fn on_open(&self, client: &Client) {
        let room = room_of(client);
        client.join(&room);
        let clients = client.clients();
        let me = self.who(client);
        client
            .write_message(event("welcome", &me, &room, clients.len()))
            .ok();
        clients
            .to(&room)
            .broadcast_except(event("join", &me, "", clients.len()), client);
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        if let Some(text) = msg.as_text() {
            let clients = client.clients();
            // Encoded once; every connection (and Redis) shares the bytes.
            let event = event("message", &self.who(client), text, clients.len());
            for room in client.rooms() {
                clients.to(&room).broadcast(event.clone());
            }
        }
    }

    async fn on_close(&self, client: &Client, _frame: Option<CloseFrame>) {
        // The client left its room already; tell the room.
        let clients = client.clients();
        let leave = event("leave", &self.who(client), "", clients.len());
        clients.to(&room_of(client)).broadcast(leave);
    }
}

/// `{"type":..,"from":..,"online":..,"text":..}`, the page's one message shape.
fn event(kind: &str, from: &str, text: &str, online: usize) -> String {
    let mut json = format!(r#"{{"type":"{kind}","from":"{from}","online":{online},"text":""#);
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if (c as u32) < 0x20 => json.push_str(&format!("\\u{:04x}", c as u32)),
            c => json.push(c),
        }
    }
    json.push_str("\"}");
    json
}

/// With several nodes, counts change elsewhere: every second, tell this
/// node's pages the total when it changed.
async fn announce_online(clients: Clients) {
    let mut last = clients.len();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let online = clients.len();
        if online != last {
            last = online;
            let msg = Message::text(event("online", "", "", online));
            for client in clients.to_vec() {
                let _ = client.send(msg.clone());
            }
        }
    }
}

/// `--redis URL`: the Redis that joins this node to the others.
fn redis_url() -> Option<String> {
    let mut args = std::env::args().skip_while(|arg| arg != "--redis");
    args.next().and(args.next())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1).filter(|arg| !arg.starts_with("--")) {
        Some(arg) => arg.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{arg:?} is not an address like 127.0.0.1:8080: {e}"),
            )
        })?,
        None => "127.0.0.1:8080".parse().expect("valid default address"),
    };

    let mut options = Options::default()
        .ping_interval(Some(Duration::from_secs(20)))
        .pong_timeout(Duration::from_secs(20));
    let mut node = String::new();
    if let Some(url) = redis_url() {
        let redis = RedisBackplane::new(RedisConfig::new(&url))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        node = format!("{:04x}-", redis.node_id() & 0xffff);
        options = options.backplane(redis);
    }
    let joined = !node.is_empty();
    let hub = Hub::new(Chat { node }, options);
    let clients = hub.clients().clone();
    if joined {
        tokio::spawn(announce_online(clients.clone()));
    }
    // The default Config negotiates permessage-deflate with browsers.
    let service = WebSocketService::new(hub)
        .path("/ws")
        .max_connections(1000)
        .with_inner(ServeDir::new(STATIC_DIR));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "tower-ws chat demo on http://{}/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    if joined {
        println!("joined to the other nodes through Redis");
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // Out of file descriptors or similar: keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut ctrl_c => break,
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            // HTTP/1.1 only (browsers upgrade over it), with a deadline for
            // request heads so slow or silent clients cannot hold sockets.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }

    drop(listener);
    let open = clients.local_len();
    let left = clients.shutdown(SHUTDOWN_DEADLINE).await;
    println!(
        "shut down: closed {} of {open} WebSocket(s) with 1001",
        open - left
    );
    Ok(())
}
