//! Chat demo: one server on one port serves the chat page from
//! `examples/static/` at `/` and the chat WebSocket at `/ws`, with
//! permessage-deflate, keepalive pings, a memory budget and graceful
//! shutdown on Ctrl-C (every browser is told 1001 Going Away); `/metrics`
//! (Prometheus text) and `/healthz` on the same port. Logs go to stderr:
//! `RUST_LOG=tower_ws=debug` shows connections coming and going.
//!
//! Run: `cargo run --release --example demo -- [ADDR]` (ADDR defaults to
//! 127.0.0.1:8080; 127.0.0.1:0 picks a free port), then open the URL it
//! prints, `tower-ws chat demo on http://ADDR/`, in two browser tabs.
//!
//! The chat is python-WS's example written with [`tower_ws::handler`]: every
//! message is broadcast to everyone, as JSON the page renders.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::services::fs::ServeFileSystemResponseBody;
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::{CloseFrame, MemoryBudget, Message, PeerAddr, WebSocketService};
use tracing_subscriber::EnvFilter;

const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static");

/// How long a client may take to send a request head (also the idle limit of
/// a keep-alive HTTP connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long Ctrl-C waits for the browsers to answer the 1001 close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

struct Chat;

impl Handler for Chat {
    async fn on_open(&self, client: &Client) {
        let clients = client.clients();
        client
            .write_message(event("welcome", client.id(), "", clients.len()))
            .ok();
        clients.broadcast_except(event("join", client.id(), "", clients.len()), client);
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        if let Some(text) = msg.as_text() {
            let clients = client.clients();
            // Encoded once; every connection shares the bytes.
            clients.broadcast(event("message", client.id(), text, clients.len()));
        }
    }

    async fn on_close(&self, client: &Client, _frame: Option<CloseFrame>) {
        let clients = client.clients();
        clients.broadcast(event("leave", client.id(), "", clients.len()));
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

/// `{"type":..,"from":..,"text":..,"online":..}`, the page's one message shape.
fn event(kind: &str, from: u64, text: &str, online: usize) -> String {
    let mut json = format!(r#"{{"type":"{kind}","from":{from},"online":{online},"text":""#);
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg.parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{arg:?} is not an address like 127.0.0.1:8080: {e}"),
            )
        })?,
        None => "127.0.0.1:8080".parse().expect("valid default address"),
    };

    let hub = Hub::new(
        Chat,
        Options::default()
            .ping_interval(Some(Duration::from_secs(20)))
            .pong_timeout(Duration::from_secs(20)),
    );
    let clients = hub.clients().clone();
    // The default Config negotiates permessage-deflate with browsers. All
    // connections together buffer at most 256 MiB (see MemoryBudget).
    let websocket = WebSocketService::new(hub.clone())
        .path("/ws")
        .max_connections(1000)
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

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "tower-ws chat demo on http://{}/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of file descriptors or similar: keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut ctrl_c => break,
        };
        // The peer address goes into each request, for the connection's
        // log span (hyper does not put it there).
        let service = TowerToHyperService::new(service.clone().map_request(
            move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        ));
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
    let open = clients.len();
    let left = clients.shutdown(SHUTDOWN_DEADLINE).await;
    println!(
        "shut down: closed {} of {open} WebSocket(s) with 1001",
        open - left
    );
    Ok(())
}
