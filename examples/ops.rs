//! A server set up for production: a memory budget for all connections,
//! keepalive pings, a connection limit, tracing logs, Prometheus `/metrics`
//! and `/healthz`, next to a WebSocket feed at `/ws`. The overload test
//! (`tests/overload.rs`) and the soak (`scripts/soak.sh`) drive it.
//!
//! Run: `cargo run --release --example ops -- [ADDR] [OPTIONS]` (ADDR
//! defaults to 127.0.0.1:8090; 127.0.0.1:0 picks a free port). It prints
//! `tower-ws ops server on http://ADDR/` first.
//!
//! A WebSocket on `/upload` gets the same answers without the feed; on
//! any other path (`/ws`) a [`Hub`] runs: every client receives the feed, a
//! binary message of a sequence number (8 bytes, big-endian) and
//! `--feed-size` bytes whose value at offset `i` is `(seq + i) % 256`,
//! every `--feed-interval-ms` (0: as fast as the server can), once
//! `--feed-after` clients have connected (0: from the start); a text
//! message is echoed to its sender; a binary message is answered with the
//! text `ack LEN SUM`, SUM being the wrapping sum of its little-endian
//! 64-bit words (the tail zero-padded) in hex.
//!
//! Options: `--budget-mib N` (256), `--grace-ms N` (2000), `--queue N`
//! (send queue per client, 128), `--overflow drop|close` (close: 1013),
//! `--feed-size N` (1024), `--feed-interval-ms N` (1000), `--ping-secs N`
//! (20), `--max-connections N` (20000), `--feed-after N` (0).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceExt;
use tower_ws::handler::{Client, Clients, Handler, Hub, Options, Overflow};
use tower_ws::metrics::{HubStats, Stats};
use tower_ws::{
    CloseCode, Config, MemoryBudget, Message, PeerAddr, RequestHead, UpgradeHandler,
    UpgradedWebSocket, WebSocketService,
};
use tracing_subscriber::EnvFilter;

struct Settings {
    addr: SocketAddr,
    budget_mib: usize,
    grace_ms: u64,
    queue: usize,
    overflow: Overflow,
    feed_size: usize,
    feed_interval_ms: u64,
    ping_secs: u64,
    max_connections: usize,
    feed_after: usize,
}

fn parse_args() -> Result<Settings, String> {
    let mut s = Settings {
        addr: "127.0.0.1:8090".parse().expect("valid default address"),
        budget_mib: 256,
        grace_ms: 2000,
        queue: 128,
        overflow: Overflow::Close(CloseCode::TRY_AGAIN_LATER),
        feed_size: 1024,
        feed_interval_ms: 1000,
        ping_secs: 20,
        max_connections: 20_000,
        feed_after: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match arg.as_str() {
            "--budget-mib" => s.budget_mib = number(value()?)? as usize,
            "--grace-ms" => s.grace_ms = number(value()?)?,
            "--queue" => s.queue = number(value()?)? as usize,
            "--overflow" => {
                s.overflow = match value()?.as_str() {
                    "drop" => Overflow::DropMessage,
                    "close" => Overflow::Close(CloseCode::TRY_AGAIN_LATER),
                    other => return Err(format!("--overflow drop|close, not {other}")),
                }
            }
            "--feed-size" => s.feed_size = number(value()?)? as usize,
            "--feed-interval-ms" => s.feed_interval_ms = number(value()?)?,
            "--ping-secs" => s.ping_secs = number(value()?)?,
            "--max-connections" => s.max_connections = number(value()?)? as usize,
            "--feed-after" => s.feed_after = number(value()?)? as usize,
            addr if !addr.starts_with("--") => {
                s.addr = addr
                    .parse()
                    .map_err(|e| format!("{addr:?} is not an address like 127.0.0.1:8090: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(s)
}

struct Feed;

impl Handler for Feed {
    async fn on_message(&self, msg: Message, client: &Client) {
        match msg {
            Message::Text(text) => {
                let _ = client.write_message(text);
            }
            Message::Binary(data) => {
                let ack = format!("ack {} {:016x}", data.len(), word_sum(&data));
                let _ = client.write_message(ack);
            }
            _ => {}
        }
    }
}

/// The wrapping sum of the little-endian 64-bit words of `data`.
fn word_sum(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let mut sum = words.by_ref().fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
    });
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        sum = sum.wrapping_add(u64::from_le_bytes(last));
    }
    sum
}

/// Broadcasts the feed to every client, forever, once `after` clients
/// have connected.
async fn feed(clients: Clients, size: usize, interval: Duration, after: usize) {
    while clients.len() < after {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut seq: u64 = 0;
    loop {
        seq += 1;
        let mut payload = Vec::with_capacity(8 + size);
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.extend((0..size).map(|i| (seq as usize + i) as u8));
        clients.broadcast(Message::binary(payload));
        if interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(interval).await;
        }
    }
}

/// `/upload` to the uploads hub, any other path to the feed hub.
#[derive(Clone)]
struct Route {
    feed: Hub<Feed>,
    uploads: Hub<Feed>,
}

impl UpgradeHandler for Route {
    type Future = <Hub<Feed> as UpgradeHandler>::Future;

    fn call(&self, ws: UpgradedWebSocket, head: RequestHead) -> Self::Future {
        if head.uri.path() == "/upload" {
            self.uploads.call(ws, head)
        } else {
            self.feed.call(ws, head)
        }
    }
}

/// `/metrics` (Prometheus text), `/healthz`, and 404 for the rest.
async fn routes(
    req: Request<Incoming>,
    stats: Stats,
    hub: HubStats,
    prometheus: PrometheusHandle,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match req.uri().path() {
        "/metrics" => {
            stats.publish();
            hub.publish();
            (StatusCode::OK, prometheus.render())
        }
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    Ok(res)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Logs on stderr, filtered by RUST_LOG (e.g. `RUST_LOG=tower_ws=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let s = parse_args().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(std::io::Error::other)?;

    let hub = Hub::new(
        Feed,
        Options::default()
            .queue_capacity(s.queue)
            .overflow(s.overflow),
    );
    let config = Config::default()
        .ping_interval(Some(Duration::from_secs(s.ping_secs)))
        .pong_timeout(Duration::from_secs(s.ping_secs));
    // Uploads get a hub of their own, without the feed; one service (and
    // so one memory budget) serves both.
    let uploads = Hub::new(Feed, Options::default().queue_capacity(s.queue));
    let route = Route {
        feed: hub.clone(),
        uploads,
    };
    let websocket = WebSocketService::new(route)
        .config(config)
        .max_connections(s.max_connections)
        .memory_budget(
            MemoryBudget::new(s.budget_mib << 20).grace_period(Duration::from_millis(s.grace_ms)),
        );
    let probe = websocket.clone();
    let clients = hub.clients().clone();
    let service = websocket.with_inner(tower::service_fn(move |req| {
        routes(req, probe.stats(), hub.stats(), prometheus.clone())
    }));
    let interval = Duration::from_millis(s.feed_interval_ms);
    tokio::spawn(feed(clients, s.feed_size, interval, s.feed_after));

    let listener = tokio::net::TcpListener::bind(s.addr).await?;
    println!(
        "tower-ws ops server on http://{}/ (WebSockets at /ws and /upload, /metrics, /healthz)",
        listener.local_addr()?
    );
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of file descriptors or similar: keep serving.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(service.clone().map_request(
            move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            },
        ));
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}
