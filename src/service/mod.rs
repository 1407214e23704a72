//! The Tower integration: a service that answers WebSocket handshakes and
//! passes every other request to an inner service, a layer that wraps it
//! around any service, and the handler that receives upgraded connections.

mod future;
mod layer;
mod observe;
#[allow(clippy::module_inception)]
mod service;
pub(crate) mod upgrade;

use std::future::Future;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

pub use future::ResponseFuture;
pub use layer::WebSocketLayer;
pub use observe::PeerAddr;
pub use service::{UpgradeRequired, WebSocketService};

use crate::stream::WebSocket;

/// The WebSocket a handler receives: the upgraded hyper connection.
pub type UpgradedWebSocket = WebSocket<TokioIo<Upgraded>>;

/// The head of the handshake request: method, URI (path and query), headers
/// and extensions (for example axum state or authentication results put there
/// by earlier middleware).
pub type RequestHead = http::request::Parts;

/// What runs for each accepted WebSocket, on its own task.
///
/// Implemented for every `Fn(UpgradedWebSocket, RequestHead) -> impl Future`
/// closure that can be cloned and shared between threads:
///
/// ```
/// use futures_util::{SinkExt, StreamExt};
/// use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};
///
/// let service = WebSocketService::new(|mut ws: UpgradedWebSocket, head: RequestHead| async move {
///     println!("connected on {}", head.uri.path());
///     while let Some(Ok(msg)) = ws.next().await {
///         if msg.is_text() && ws.send(msg).await.is_err() {
///             break;
///         }
///     }
/// });
/// # let _ = service;
/// ```
///
/// Memory per idle connection is mostly this future: prefer a closure (or a
/// `fn` returning an `async move` block, as `examples/echo.rs`) to an
/// `async fn handler(mut ws: UpgradedWebSocket, ..)`. rustc keeps an
/// `async fn`'s arguments in its future beside the locals they are moved
/// to, so such a handler holds the WebSocket twice, about 1 KiB more per
/// connection for as long as it is open.
pub trait UpgradeHandler: Clone + Send + Sync + 'static {
    /// The future that serves one connection.
    type Future: Future<Output = ()> + Send + 'static;

    /// Serves one connection.
    fn call(&self, ws: UpgradedWebSocket, head: RequestHead) -> Self::Future;
}

impl<F, Fut> UpgradeHandler for F
where
    F: Fn(UpgradedWebSocket, RequestHead) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type Future = Fut;

    fn call(&self, ws: UpgradedWebSocket, head: RequestHead) -> Fut {
        self(ws, head)
    }
}
