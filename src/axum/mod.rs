//! A drop-in for axum 0.8's `axum::extract::ws` (feature `axum`): the same
//! `WebSocketUpgrade` extractor, `WebSocket`, `Message` and friends, on
//! tower-ws's connection. Switching is one line:
//!
//! ```diff
//! -use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
//! +use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};
//! ```
//!
//! What changes underneath: permessage-deflate (RFC 7692) is negotiated with
//! clients that offer it, an idle connection costs a few KiB instead of a
//! 128 KiB read buffer, the handshake follows RFC 6455 to the letter (header
//! tokens parsed, not matched by substring), and the engine is tower-ws's,
//! Autobahn-conformant, with no allocation per message.
//!
//! # Example
//!
//! ```
//! use axum::{Router, response::Response, routing::any};
//! use tower_ws::axum::{Message, WebSocket, WebSocketUpgrade};
//!
//! let app: Router = Router::new().route("/ws", any(handler));
//!
//! async fn handler(ws: WebSocketUpgrade) -> Response {
//!     ws.on_upgrade(handle_socket)
//! }
//!
//! async fn handle_socket(mut socket: WebSocket) {
//!     while let Some(Ok(msg)) = socket.recv().await {
//!         if let Message::Text(_) | Message::Binary(_) = msg {
//!             if socket.send(msg).await.is_err() {
//!                 return; // client disconnected
//!             }
//!         }
//!     }
//! }
//! ```
//!
//! # Read and write concurrently
//!
//! `split` gives the halves axum code names `SplitSink<WebSocket, Message>`
//! and `SplitStream<WebSocket>`, and code generic over `Sink` and `Stream`
//! (testable with channels) takes them as they are:
//!
//! ```
//! use futures_util::{Sink, SinkExt, Stream, StreamExt};
//! use tower_ws::axum::{Message, WebSocket};
//!
//! async fn handle_socket(socket: WebSocket) {
//!     let (write, read) = socket.split();
//!     relay(write, read).await;
//! }
//!
//! async fn relay<W, R>(mut write: W, mut read: R)
//! where
//!     W: Sink<Message> + Unpin,
//!     R: Stream<Item = Result<Message, axum::Error>> + Unpin,
//! {
//!     while let Some(Ok(Message::Text(text))) = read.next().await {
//!         if write.send(Message::text(text.to_uppercase())).await.is_err() {
//!             break;
//!         }
//!     }
//! }
//! ```
//!
//! # Mounting tower-ws without the extractor
//!
//! A [`WebSocketService`](crate::WebSocketService) is a route of its own
//! (`Router::route_service("/ws", service)`), with the callback interface of
//! [`handler`](crate::handler) or a plain `Stream`/`Sink` handler, a
//! connection limit and origin checks; `examples/axum.rs` shows both ways.
//!
//! # Every item of `axum::extract::ws`, and its counterpart here
//!
//! Each item below has the same name and signature shape as axum's, so a
//! program written against axum's module compiles against this one with
//! only its `use` lines changed; the right column says where the meaning
//! differs, and why.
//!
//! | `axum::extract::ws` | `tower_ws::axum` | difference |
//! | --- | --- | --- |
//! | `WebSocketUpgrade<F = DefaultOnFailedUpgrade>`: `FromRequestParts<S>`, `Debug`, `#[must_use]` | [`WebSocketUpgrade`] | Validated with tower-ws's handshake rules, which are stricter (RFC 6455 §4.2.1: `Connection` and `Upgrade` tokens parsed, exactly one `Host`, a 16-byte key). Also reachable as `axum::extract::WebSocketUpgrade`; here only at this path. |
//! | HTTP/2 extended `CONNECT` (RFC 8441) | same | Answered `200` under the same rules as over HTTP/1.1 (subprotocol, permessage-deflate, Origin); a `CONNECT` for another `:protocol` gets 501 (axum: 400). |
//! | `read_buffer_size(usize)` | same | Allocated when the first bytes arrive, not per idle connection. Default 8 KiB (axum: 128 KiB). |
//! | `write_buffer_size(usize)` | same, no effect | Every `send`/`flush` writes; messages queued with `feed` leave together once the input is drained. |
//! | `max_write_buffer_size(usize)` | same | Past it, sending waits for the peer (backpressure) where axum fails the send. Default 128 KiB (axum: unlimited). |
//! | `max_message_size(usize)`, `max_frame_size(usize)` | same | The message limit counts the decompressed size. Same defaults (64 MiB, 16 MiB). |
//! | `accept_unmasked_frames(bool)` | same, no effect | Unmasked client frames always fail with 1002: RFC 6455 §5.1 says MUST. |
//! | `protocols(I)`, `set_selected_protocol`, `selected_protocol()` | same | — |
//! | `requested_protocols()` | same | In the client's order; axum's are sorted and deduplicated. |
//! | `on_failed_upgrade(C)`, `OnFailedUpgrade`, `DefaultOnFailedUpgrade` | same | — |
//! | `on_upgrade(C) -> Response` | same | The 101 also agrees permessage-deflate when the client offers it; a refused `Origin` (see [`WebSocketUpgrade::allowed_origins`]) gets 403. |
//! | — | [`WebSocketUpgrade::config`], [`deflate`](WebSocketUpgrade::deflate), [`allowed_origins`](WebSocketUpgrade::allowed_origins), [`check_origin`](WebSocketUpgrade::check_origin) | tower-ws's settings: every limit, compression (on by default), cross-site WebSocket hijacking defence. |
//! | `WebSocket`: `recv`, `send`, `protocol`, `Debug` | [`WebSocket`] | When `recv` returns the peer's `Message::Close`, the close reply is already on the wire (RFC 6455 §5.5.1); axum sends it on the next read or flush, so a handler that returns at once leaves its client with 1006. |
//! | `Stream<Item = Result<Message, axum::Error>>`, `FusedStream`, `Sink<Message, Error = axum::Error>` | same | The `axum::Error` wraps a [`tower_ws::Error`](crate::Error) (`downcast` it for `is_protocol()`, `close_code()`, ...). `Sink::poll_close` (`SinkExt::close`) completes the closing handshake: it waits for the peer's close frame up to the close timeout (1 s). |
//! | `StreamExt::split` → `SplitSink<WebSocket, Message>`, `SplitStream<WebSocket>` | [`WebSocket::split`], same types | An inherent method, so the halves coordinate pongs and reads across two tasks. |
//! | — | [`WebSocket::close`] | Graceful close with code and reason. |
//! | `Message`: its five variants, `into_data`, `into_text`, `to_text`, `text`, `binary`, `From<String, &str, &[u8], Bytes, Vec<u8>>`, `Vec<u8>: From<Message>`, `Clone`, `Debug`, `Eq` | [`Message`] | Plus `From` both ways with [`tower_ws::Message`](crate::Message), without copying. Sending a close code that may not go on the wire (1005, 1006, 1015, below 1000, ...) or a control payload over 125 bytes is an error (RFC 6455 §5.5, §7.4). |
//! | `Utf8Bytes`: `from_static`, `as_str`, `Deref<Target = str>`, `Display`, `TryFrom<Bytes, Vec<u8>>`, `From<String, &str, &String>`, `Bytes: From<Utf8Bytes>`, `PartialEq<T>` for every `&str: PartialEq<T>`, `Default`, `Clone`, `Debug`, `Eq` | [`Utf8Bytes`] | Plus `From` both ways with [`tower_ws::Utf8Bytes`](crate::Utf8Bytes). |
//! | `CloseFrame { code, reason }`, `CloseCode = u16`, `close_code::*` | [`CloseFrame`], [`CloseCode`], [`close_code`] | — |
//! | `rejection::*`: `WebSocketUpgradeRejection` and its eight rejection types, each with `body_text()`, `status()`, `IntoResponse`, `Display`, `Error` | [`rejection`] | axum's texts; the statuses RFC 6455 and RFC 9110 name (426 for a missing `Upgrade: websocket` or an unsupported version, 500 when the server does not serve upgrades, see [`rejection`]); rules axum does not check are [`rejection::InvalidHandshake`]. Checked in RFC order, `Upgrade` first, so a plain `GET` is `InvalidUpgradeHeader` where axum says `InvalidConnectionHeader`. |

mod message;
pub mod rejection;
mod socket;
mod upgrade;

pub use message::{CloseCode, CloseFrame, Message, Utf8Bytes, close_code};
pub use socket::WebSocket;
pub use upgrade::{DefaultOnFailedUpgrade, OnFailedUpgrade, WebSocketUpgrade};
