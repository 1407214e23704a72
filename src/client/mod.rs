//! The WebSocket client (feature `client`): `ws://`, `wss://` (feature
//! `tls`) and WebSockets over HTTP/2 (RFC 8441), with permessage-deflate.
//!
//! The client runs the same sans-I/O engine as the server, in the client
//! role ([`Role::Client`](crate::proto::Role::Client)): every frame it sends
//! is masked with a fresh key from a thread-local CSPRNG, a masked frame from
//! the server fails the connection, and every other rule is checked exactly
//! as on the server. It returns the same [`WebSocket`](crate::WebSocket)
//! type, so code is shared between both roles.
//!
//! ## Connect and echo
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use tower_ws::Message;
//!
//! # async fn run() -> Result<(), tower_ws::Error> {
//! let (mut ws, _response) = tower_ws::client::connect("ws://127.0.0.1:9001/chat").await?;
//! ws.send(Message::text("hello")).await?;
//! if let Some(reply) = ws.next().await {
//!     println!("{:?}", reply?);
//! }
//! ws.close(tower_ws::CloseCode::NORMAL, "bye").await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Options
//!
//! [`Builder`] sets headers (`Authorization`, cookies, `Origin`),
//! subprotocols, the permessage-deflate offers, [`Config`](crate::Config)
//! limits, timeouts, TLS roots, and HTTP/2. [`connect_on`] runs the handshake
//! over a stream you already have.
//!
//! ## What is checked
//!
//! The response is validated to the letter of RFC 6455 §4.1: status 101,
//! `Upgrade: websocket`, `Connection: upgrade`, the `Sec-WebSocket-Accept`
//! derived from the key sent, a subprotocol that was offered, extensions that
//! were offered with parameters that were offered and are in range (RFC 7692
//! §7.1). Anything else fails with a [`crate::Error`] whose
//! [`handshake_error`](crate::Error::handshake_error) names the rule. Bytes
//! the server sends right behind its response are kept.
//!
//! ## Closing
//!
//! [`WebSocket::close`](crate::WebSocket::close) sends a close frame, waits
//! for the server's, then waits for the server to close TCP (RFC 6455
//! §7.1.1: the server closes first), each within the close timeout.

mod builder;
mod http1;
mod http2;
mod keys;
mod target;
#[cfg(feature = "tls")]
mod tls;
mod transport;

pub use builder::{Builder, Connected};
pub use keys::mask_keys;
/// The rustls version the client is built with, to name its configuration
/// types (`ClientConfig`, `RootCertStore`, certificates).
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;

use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Error;

/// Connects to a `ws://` or `wss://` URL with the default options
/// (permessage-deflate offered, HTTP/1.1, 10 second timeouts).
///
/// ```no_run
/// # async fn run() -> Result<(), tower_ws::Error> {
/// let (ws, response) = tower_ws::client::connect("ws://127.0.0.1:9001/").await?;
/// assert_eq!(response.status(), 101);
/// # drop(ws);
/// # Ok(())
/// # }
/// ```
pub async fn connect(url: &str) -> Result<Connected, Error> {
    Builder::new().connect(url).await
}

/// Runs the opening handshake over HTTP/1.1 on a transport the caller
/// already has (a proxy tunnel, a Unix socket, an in-memory duplex), with
/// the default options. The request's URI gives the path (and `Host`, if
/// absolute); its headers are sent along.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (client_io, _server_io) = tokio::io::duplex(4096);
/// let request = http::Request::get("ws://example.com/chat").body(()).unwrap();
/// let handshake = tower_ws::client::connect_on(client_io, request);
/// # drop(handshake);
/// # }
/// ```
pub async fn connect_on<IO>(io: IO, request: Request<()>) -> Result<Connected, Error>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    Builder::new().connect_on(io, request).await
}
