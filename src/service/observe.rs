//! What the service reports about handshakes and connections: refusals
//! counted (and logged), the open-connections gauge, and with the `tracing`
//! feature a span per connection.

use std::net::SocketAddr;

use http::{Request, Version};

use super::future::ResponseFuture;
use crate::handshake::Reject;
use crate::metrics::{Refusal, ServiceMetrics};

/// The address of the peer of an HTTP connection, for the service to learn
/// it: hyper does not put it in the request, so the accept loop does.
///
/// With it in the request extensions, the connection's span (feature
/// `tracing`) and the refused-handshake events carry the peer address.
/// Insert it per connection, for example with `ServiceExt::map_request`:
///
/// ```no_run
/// use hyper_util::rt::{TokioExecutor, TokioIo};
/// use hyper_util::server::conn::auto;
/// use hyper_util::service::TowerToHyperService;
/// use tower::ServiceExt;
/// use tower_ws::{PeerAddr, RequestHead, UpgradedWebSocket, WebSocketService};
///
/// # async fn run() -> std::io::Result<()> {
/// let service = WebSocketService::new(|_ws: UpgradedWebSocket, _head: RequestHead| async {});
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (tcp, peer) = listener.accept().await?;
///     let service = service.clone().map_request(move |mut req: http::Request<_>| {
///         req.extensions_mut().insert(PeerAddr(peer));
///         req
///     });
///     tokio::spawn(
///         auto::Builder::new(TokioExecutor::new())
///             .serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service))
///             .into_owned(),
///     );
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Counts a refused handshake, logs it, and answers it.
pub(super) fn refuse<F, B>(
    metrics: &ServiceMetrics,
    why: Refusal,
    reject: Reject,
    req: &Request<B>,
) -> ResponseFuture<F> {
    metrics.refused(why);
    #[cfg(feature = "tracing")]
    tracing::debug!(
        peer = req
            .extensions()
            .get::<PeerAddr>()
            .map(|p| tracing::field::display(p.0)),
        path = req.uri().path(),
        status = reject.status.as_u16(),
        reason = reject.reason,
        "WebSocket handshake refused"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = req;
    ResponseFuture::ready(reject.response())
}

/// Counts a WebSocket as open (its task counts it as closed when the
/// handler's future ends or is dropped).
pub(super) fn opened(metrics: &ServiceMetrics, version: Version) {
    metrics.opened(version);
    #[cfg(feature = "tracing")]
    tracing::debug!("WebSocket opened");
}

/// The span a connection's task runs in: every event of the connection
/// (its close, protocol errors, timeouts, the hub's callbacks) carries the
/// peer address, path, HTTP version, subprotocol and extensions.
#[cfg(feature = "tracing")]
pub(super) fn connection_span<B>(req: &Request<B>, response: &http::HeaderMap) -> tracing::Span {
    use tracing::field::{Empty, display};
    let span = tracing::info_span!(
        "websocket",
        peer = Empty,
        path = %req.uri().path(),
        http = ?req.version(),
        subprotocol = Empty,
        extensions = Empty,
    );
    if !span.is_disabled() {
        if let Some(peer) = req.extensions().get::<PeerAddr>() {
            span.record("peer", display(peer.0));
        }
        let agreed = |name| response.get(name).and_then(|v| v.to_str().ok());
        if let Some(p) = agreed(http::header::SEC_WEBSOCKET_PROTOCOL) {
            span.record("subprotocol", display(p));
        }
        if let Some(e) = agreed(http::header::SEC_WEBSOCKET_EXTENSIONS) {
            span.record("extensions", display(e));
        }
    }
    span
}
