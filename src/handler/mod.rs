//! python-WS's callback interface: implement [`Handler`], serve it with a
//! [`Hub`], and talk to clients through [`Client`] handles from any task.
//!
//! Built on the `Stream`/`Sink` [`WebSocket`](crate::WebSocket): each
//! connection runs on its own task, which calls the handler's methods in
//! order (`on_open`, then `on_message`/`on_ping`/`on_pong` as frames arrive,
//! then `on_close` exactly once) and drains the client's bounded send queue
//! into the WebSocket.
//!
//! ```no_run
//! use tower_ws::handler::{Client, Handler, Hub, Options};
//! use tower_ws::{Message, WebSocketService};
//!
//! struct Chat;
//!
//! impl Handler for Chat {
//!     async fn on_message(&self, msg: Message, client: &Client) {
//!         // The payload is shared, not copied, between the clients.
//!         client.clients().broadcast(msg);
//!     }
//! }
//!
//! let hub = Hub::new(Chat, Options::default());
//! let clients = hub.clients().clone(); // keep it to shut down gracefully
//! let service = WebSocketService::new(hub).max_connections(10_000);
//! # let _ = (service, clients);
//! ```
//!
//! ## What each callback may rely on
//!
//! - Callbacks of one connection never overlap: the connection reads its
//!   next frame only after the previous callback returned, so a slow
//!   callback slows that client alone. Spawn long work.
//! - Pings are answered by the connection itself; `on_ping` only observes.
//! - A panic in a callback is contained: that connection is closed with
//!   1011, `on_close` still runs (unless it was `on_close` that panicked),
//!   the client leaves the registry, and every other connection goes on.
//!
//! ## Sending
//!
//! [`Client::send`] and its shorthands never wait: the message joins the
//! client's bounded queue, which its connection drains as fast as the peer
//! reads. When the queue is full, [`Overflow`] decides: drop the message, or
//! close that client (1008 or 1013). [`Clients::broadcast`] converts the
//! message once and shares its payload; one stalled client never holds up
//! the others.
//!
//! ## Rooms and several nodes
//!
//! [`Client::join`] puts a client in a named [`Room`]; [`Clients::to`]
//! broadcasts to a room's members and counts them. Membership ends with the
//! connection. With a [`Backplane`](crate::backplane::Backplane) set in
//! [`Options::backplane`], broadcasts, rooms and counts span every server
//! instance that shares it (Redis with the `redis` feature).

mod client;
mod driver;
mod hub;
mod registry;
mod room;

use std::future::Future;

use bytes::Bytes;

pub use client::{Client, SendError};
pub use hub::{Hub, Options, Overflow};
pub use registry::Clients;
pub use room::Room;

use crate::message::{CloseFrame, Message};

/// The callbacks of a WebSocket server, python-WS style.
///
/// Every method has a default that does nothing; override what you need.
/// Write them as `async fn` (the futures must be `Send`):
///
/// ```
/// use tower_ws::handler::{Client, Handler};
/// use tower_ws::{CloseFrame, Message};
///
/// struct Logger;
///
/// impl Handler for Logger {
///     async fn on_open(&self, client: &Client) {
///         println!("client {} connected on {}", client.id(), client.path());
///     }
///
///     async fn on_message(&self, msg: Message, client: &Client) {
///         if let Some(text) = msg.as_text() {
///             let _ = client.write_message(format!("you said: {text}"));
///         }
///     }
///
///     async fn on_close(&self, client: &Client, frame: Option<CloseFrame>) {
///         println!("client {} left: {frame:?}", client.id());
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A client completed the handshake and is now in
    /// [`Client::clients`].
    fn on_open(&self, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = client;
        async {}
    }

    /// A text or binary message arrived (reassembled and decompressed).
    fn on_message(&self, msg: Message, client: &Client) -> impl Future<Output = ()> + Send {
        let _ = (msg, client);
        async {}
    }

    /// The connection ended; called exactly once per opened client, after it
    /// left the registry.
    ///
    /// `frame` is the close frame that started the closing handshake: the
    /// peer's if the peer closed first, ours if the server did
    /// ([`Client::close`], [`Clients::shutdown`] with 1001, a full queue with
    /// the [`Overflow`] code, a keepalive failure with 1011, an idle timeout
    /// with 1001, a handler panic with 1011, a protocol violation by the peer
    /// with 1002/1007/1009). `None` if the connection ended without any close
    /// frame (the peer vanished).
    fn on_close(
        &self,
        client: &Client,
        frame: Option<CloseFrame>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (client, frame);
        async {}
    }

    /// The peer sent a ping (already answered with a pong).
    fn on_ping(&self, client: &Client, payload: Bytes) -> impl Future<Output = ()> + Send {
        let _ = (client, payload);
        async {}
    }

    /// The peer sent a pong (an answer to [`Client::ping`], to a keepalive
    /// ping, or unsolicited).
    fn on_pong(&self, client: &Client, payload: Bytes) -> impl Future<Output = ()> + Send {
        let _ = (client, payload);
        async {}
    }
}
