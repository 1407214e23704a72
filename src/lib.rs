//! # tower-ws
//!
//! A conformant, fast RFC 6455 WebSocket server for the hyper and tower
//! ecosystem, with complete permessage-deflate (RFC 7692).
//!
//! - [`WebSocketService`] answers WebSocket handshakes and passes every other
//!   request to an inner service, so one server on one port serves your
//!   pages and your WebSockets; [`WebSocketLayer`] wraps any service with it.
//! - Each upgraded connection becomes a [`WebSocket`]: a `Stream` of
//!   [`Message`]s and a `Sink` of them, driven by an in-crate sans-I/O
//!   engine ([`proto::Connection`]).
//! - [`handler`] is python-WS's callback interface on top of it: implement
//!   [`handler::Handler`] (`on_open`, `on_message`, `on_close`, ...), serve
//!   it with a [`handler::Hub`], and broadcast to its [`handler::Clients`],
//!   with bounded send queues, keepalive pings and graceful shutdown.
//!   [`WebSocketService::max_connections`] caps how many are open at once.
//! - Rooms ([`handler::Client::join`], [`handler::Clients::to`]) and, through
//!   a [`backplane`], broadcast and presence across server instances: Redis
//!   and Redis Cluster with the `redis` feature.
//! - [`serve`] is the accept loop: HTTP/1.1 and HTTP/2 (RFC 8441) on one
//!   port, TLS, deadlines, and a graceful shutdown that tells every open
//!   WebSocket 1001 Going Away ([`Shutdown`]).
//!
//! ## Quick start
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let echo = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     });
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
//!     tower_ws::serve(listener, echo).await
//! }
//! ```
//!
//! [`serve`] (feature `server`, on by default) speaks HTTP/1.1 and HTTP/2 on
//! one port, with TLS under feature `tls` (`.tls(TlsConfig::from_pem_files(..)?)`):
//! browsers on HTTPS then open their WebSockets on the page's HTTP/2
//! connection (RFC 8441). `WebSocketService` also runs under axum or your
//! own hyper loop.
//!
//! ## Limits and security defaults
//!
//! Every limit lives in [`Config`], with defaults safe for the open
//! internet: messages up to 64 MiB (counted after decompression), frames up
//! to 16 MiB, at most 131,072 fragments per message, 128 KiB of unsent
//! output before `Sink::poll_ready` waits, a 1 second close timeout. A peer
//! that breaks a rule gets the close code RFC 6455 names (1002, 1007, 1009)
//! and the application gets an [`Error`] that says which rule.
//!
//! Browsers let any web page open a WebSocket to any server; check the
//! `Origin` with [`WebSocketService::allowed_origins`] to stop cross-site
//! WebSocket hijacking.
//!
//! ## Operations
//!
//! - [`WebSocketService::stats`] and [`handler::Hub::stats`]: always-on
//!   counters ([`metrics::Stats`]), exported through the `metrics` facade
//!   with the `metrics` feature.
//! - The `tracing` feature: a span per connection ([`PeerAddr`] gives it the
//!   peer address) and events for handshakes, closes, protocol errors,
//!   timeouts, slow consumers and contained panics.
//! - [`Config::ping_interval`] and [`Config::idle_timeout`]: keepalive for
//!   every `WebSocket`.
//! - [`WebSocketService::memory_budget`]: one [`MemoryBudget`] for what all
//!   connections buffer together, holding under overload.
//!
//! ## Cancel safety
//!
//! Reading is cancel-safe: a `next()` dropped in `tokio::select!` loses no
//! data, because all partial state lives in the engine, not in a future.
//!
//! ## Runtime
//!
//! The close timeout uses tokio's timer: run on a runtime with time enabled
//! (`#[tokio::main]` and hyper-util servers do).
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
pub mod backplane;
mod budget;
#[cfg(feature = "client")]
pub mod client;
mod config;
mod error;
pub mod extensions;
pub mod handler;
pub mod handshake;
mod message;
pub mod metrics;
pub mod proto;
#[cfg(feature = "server")]
pub mod server;
mod service;
mod shutdown;
mod stream;

pub use budget::MemoryBudget;
pub use config::Config;
pub use error::Error;
#[cfg(feature = "deflate")]
pub use extensions::deflate::DeflateConfig;
pub use message::{CloseCode, CloseFrame, Message, Utf8Bytes};
#[cfg(feature = "server")]
pub use server::serve;
pub use service::{
    PeerAddr, RequestHead, ResponseFuture, UpgradeHandler, UpgradeRequired, UpgradedWebSocket,
    WebSocketLayer, WebSocketService,
};
pub use shutdown::Shutdown;
pub use stream::{WebSocket, WebSocketReader, WebSocketWriter};
