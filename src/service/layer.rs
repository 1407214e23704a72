//! [`WebSocketLayer`]: wraps any service with WebSocket handshakes.

use tower_layer::Layer;

use super::service::{UpgradeRequired, WebSocketService};

/// Wraps an inner service: WebSocket upgrade requests are answered by the
/// wrapped [`WebSocketService`], every other request goes to the inner
/// service unchanged. This is how one server on one port serves both
/// static files and WebSockets.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketLayer};
///
/// let app = ServiceBuilder::new()
///     .layer(WebSocketLayer::new(|ws: UpgradedWebSocket, _head: RequestHead| async move {
///         drop(ws);
///     }))
///     .service(tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
///     }));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct WebSocketLayer<H> {
    template: WebSocketService<H, UpgradeRequired>,
}

impl<H> WebSocketLayer<H> {
    /// A layer with default settings.
    pub fn new(handler: H) -> Self {
        WebSocketLayer {
            template: WebSocketService::new(handler),
        }
    }
}

impl<H> From<WebSocketService<H, UpgradeRequired>> for WebSocketLayer<H> {
    /// A layer with the settings of a configured service.
    fn from(template: WebSocketService<H, UpgradeRequired>) -> Self {
        WebSocketLayer { template }
    }
}

impl<H: Clone, S> Layer<S> for WebSocketLayer<H> {
    type Service = WebSocketService<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.template.clone().with_inner(inner)
    }
}
