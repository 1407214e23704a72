//! Chat demo: one server on one port serves the chat page from
//! `examples/static/` at `/` and the chat WebSocket at `/ws`, with
//! permessage-deflate, keepalive pings, a memory budget and graceful
//! shutdown on Ctrl-C (every browser is told 1001 Going Away); `/metrics`
//! (Prometheus text) and `/healthz` on the same port. Logs go to stderr:
//! `RUST_LOG=tower_ws=debug` shows connections coming and going.
//!
//! Run: `cargo run --release --example demo -- [ADDR] [--tls CERT.pem
//! KEY.pem] [--redis URL] [--max-connections N]` (at most N WebSockets at
//! once, 1000 by default; ADDR defaults to 127.0.0.1:8080; 127.0.0.1:0
//! picks a free port), then open the URL it prints, `tower-ws chat demo on
//! http://ADDR/`, in two browser tabs. With `--tls` it is `https://ADDR/`:
//! browsers then speak HTTP/2 and open the WebSocket on the same connection
//! (RFC 8441); the page shows which HTTP version carries it. Without it,
//! clear-text HTTP/1.1 (and HTTP/2 with prior knowledge) on the same port.
//!
//! The chat is python-WS's example written with [`tower_ws::handler`]: every
//! message is broadcast to the sender's room (`/#room-name` or `/?room=`,
//! the lobby by default), as JSON the page renders.
//!
//! Several nodes: with `--redis redis://HOST:PORT`, any number of demo
//! processes on different ports form one chat through Redis; "N online"
//! counts everyone on every node.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::services::fs::ServeFileSystemResponseBody;
use tower_ws::backplane::{RedisBackplane, RedisConfig};
use tower_ws::handler::{Client, Clients, Handler, Hub, Options};
use tower_ws::server::TlsConfig;
use tower_ws::{CloseFrame, MemoryBudget, Message, WebSocketService};
use tracing_subscriber::EnvFilter;

const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static");

/// How long Ctrl-C waits for the browsers to answer the 1001 close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

const USAGE: &str = "usage: demo [ADDR] [--tls CERT.pem KEY.pem] [--redis redis://HOST:PORT] \
                     [--max-connections N]   (ADDR defaults to 127.0.0.1:8080, N to 1000)";

/// The command line. Each option is one arm of `parse`.
struct Args {
    addr: SocketAddr,
    /// `--tls CERT.pem KEY.pem`: serve https/wss (HTTP/2 by ALPN).
    tls: Option<(PathBuf, PathBuf)>,
    /// `--redis URL`: the Redis that joins this node to the others.
    redis: Option<String>,
    /// `--max-connections N`: WebSockets open at once (1000 by default;
    /// the fan-out benchmark runs 10,000).
    max_connections: usize,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            addr: "127.0.0.1:8080".parse().expect("valid default address"),
            tls: None,
            redis: None,
            max_connections: 1000,
        };
        while let Some(arg) = args.next() {
            let mut value = |what: &str| args.next().ok_or_else(|| format!("{arg} needs {what}"));
            match arg.as_str() {
                "--tls" => {
                    let cert = value("a certificate file and a key file")?;
                    let key = value("a key file after the certificate file")?;
                    parsed.tls = Some((cert.into(), key.into()));
                }
                "--redis" => parsed.redis = Some(value("a URL like redis://127.0.0.1:6379")?),
                "--max-connections" => {
                    let n = value("a number of connections")?;
                    parsed.max_connections = n
                        .parse()
                        .map_err(|_| format!("--max-connections {n:?} is not a number"))?;
                }
                flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
                addr => {
                    parsed.addr = addr.parse().map_err(|e| {
                        format!("{addr:?} is not an address like 127.0.0.1:8080: {e}")
                    })?;
                }
            }
        }
        Ok(parsed)
    }
}

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
        // The welcome event names the room and tells the page which HTTP
        // version carries its WebSocket: "HTTP/2" (extended CONNECT) or
        // "HTTP/1.1" (upgrade).
        let http = match client.request().version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        };
        let mut welcome = event("welcome", &me, &room, clients.len());
        welcome.insert_str(welcome.len() - 1, &format!(r#","http":"{http}""#));
        client.write_message(welcome).ok();
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

/// The routes next to `/ws`: `/metrics` (Prometheus text), `/healthz`,
/// and the page's files.
#[derive(Clone)]
struct Ops {
    websocket: WebSocketService<Hub<Chat>>,
    hub: Hub<Chat>,
    prometheus: PrometheusHandle,
    files: ServeDir,
}

impl Ops {
    async fn serve(
        self,
        req: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<Either<Full<Bytes>, ServeFileSystemResponseBody>>, Infallible> {
        let text = |body: String| {
            let mut res = http::Response::new(Either::Left(Full::new(Bytes::from(body))));
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(res)
        };
        match req.uri().path() {
            "/metrics" => {
                self.websocket.stats().publish();
                self.hub.stats().publish();
                text(self.prometheus.render())
            }
            "/healthz" => text("ok\n".to_owned()),
            _ => {
                let res = self.files.oneshot(req).await?;
                Ok(res.map(Either::Right))
            }
        }
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("demo: {e}\n{USAGE}");
        std::process::exit(2);
    });

    let mut options = Options::default()
        .ping_interval(Some(Duration::from_secs(20)))
        .pong_timeout(Duration::from_secs(20));
    let mut node = String::new();
    if let Some(url) = &args.redis {
        let redis = RedisBackplane::new(RedisConfig::new(url))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        node = format!("{:04x}-", redis.node_id() & 0xffff);
        options = options.backplane(redis);
    }
    let hub = Hub::new(Chat { node }, options);
    let clients = hub.clients().clone();
    if args.redis.is_some() {
        tokio::spawn(announce_online(clients.clone()));
    }
    // The default Config negotiates permessage-deflate with browsers. A
    // plain GET /ws (the URL opened in a tab) gets 426 with a hint. All
    // connections together buffer at most 256 MiB (see MemoryBudget).
    let websocket = WebSocketService::new(hub.clone())
        .path("/ws")
        .max_connections(args.max_connections)
        .memory_budget(MemoryBudget::new(256 << 20));
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;
    let ops = Ops {
        websocket: websocket.clone(),
        hub,
        prometheus,
        files: ServeDir::new(STATIC_DIR),
    };
    let service = websocket.with_inner(tower::service_fn(move |req| ops.clone().serve(req)));

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    println!(
        "tower-ws chat demo on {scheme}://{}/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    if args.redis.is_some() {
        println!("joined to the other nodes through Redis");
    }
    let mut server = tower_ws::serve(listener, service).shutdown_deadline(SHUTDOWN_DEADLINE);
    if let Some((cert, key)) = &args.tls {
        server = server.tls(TlsConfig::from_pem_files(cert, key)?);
    }
    // Ctrl-C: stop accepting, tell every browser 1001 Going Away, wait for
    // the closing handshakes (up to the deadline).
    let signal_clients = clients.clone();
    server
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let open = signal_clients.local_len();
            println!("shutting down: closing {open} WebSocket(s) with 1001 Going Away");
        })
        .await?;
    println!("shut down ({} WebSocket(s) left open)", clients.local_len());
    Ok(())
}
