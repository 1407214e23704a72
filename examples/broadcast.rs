//! Fan-out server for the broadcast benchmark (`bench/fanout.sh`): every
//! text or binary message a client sends is broadcast to every client, with
//! [`Clients::broadcast`](tower_ws::handler::Clients::broadcast); with
//! `--redis URL`, to the clients of every node sharing that Redis.
//!
//! Run: `cargo run --release --example broadcast -- [ADDR] [--redis URL]
//! [--room] [--deflate] [--threads N]` (ADDR defaults to 127.0.0.1:9002).
//! `--room`: every client joins the room named by its request path (`/` for
//! most clients) and messages go to that room with
//! [`Clients::to`](tower_ws::handler::Clients::to) (the rooms path; two
//! paths make two independent fan-outs on one server).
//! `--threads N`: N runtime worker threads (default 1, a current-thread
//! runtime, as every server of the benchmark).
//! `--deflate`: permessage-deflate with the default [`DeflateConfig`]
//! (each message compressed once, shared by every recipient); without it,
//! no compression, so the benchmark measures the broadcast path alone.
//! No connection limit: 10,000 subscribers need only as many file
//! descriptors (`ulimit -n`). Prints the hub's and the backplane's counters
//! on Ctrl-C.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_ws::backplane::{RedisBackplane, RedisConfig};
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::{Config, DeflateConfig, Message, WebSocketService};

struct Broadcast {
    room: bool,
}

impl Handler for Broadcast {
    async fn on_open(&self, client: &Client) {
        if self.room {
            client.join(client.path());
        }
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        if self.room {
            client.clients().to(client.path()).broadcast(msg);
        } else {
            client.clients().broadcast(msg);
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr: SocketAddr = "127.0.0.1:9002".parse().expect("valid default address");
    let mut redis_url = None;
    let mut handler = Broadcast { room: false };
    let mut config = Config::default().deflate(None);
    let mut threads = 1;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis_url = args.next(),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "--threads needs a number of threads, 1 or more",
                        )
                    })?
            }
            "--room" => handler.room = true,
            "--deflate" => config = Config::default().deflate(Some(DeflateConfig::default())),
            other => {
                addr = other.parse().map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{other:?} is not an address like 127.0.0.1:9002: {e}"),
                    )
                })?
            }
        }
    }
    // One thread by default, as every server of the benchmark (pinned to
    // one core); `--threads N` for the scaling runs (bench/scaling.sh).
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(addr, redis_url, handler, config))
}

async fn serve(
    addr: SocketAddr,
    redis_url: Option<String>,
    handler: Broadcast,
    config: Config,
) -> std::io::Result<()> {
    let mut options = Options::default();
    let mut redis = None;
    if let Some(url) = redis_url {
        let backplane = RedisBackplane::new(RedisConfig::new(url))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        options = options.backplane(backplane.clone());
        redis = Some(backplane);
    }
    let hub = Hub::new(handler, options);
    let service = WebSocketService::new(hub.clone()).config(config);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
            _ = &mut ctrl_c => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        });
    }
    println!("{:?}", hub.stats());
    if let Some(redis) = redis {
        println!("{:?}", redis.stats());
    }
    Ok(())
}
