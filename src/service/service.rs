//! [`WebSocketService`]: the handshake as a Tower service.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tokio::sync::Semaphore;
use tower_service::Service;

use super::future::ResponseFuture;
use super::observe::{self, refuse};
use super::upgrade::{self, Accepted, PendingUpgrade, take_on_upgrade};
use super::{RequestHead, UpgradeHandler, WebSocketLayer};
use crate::budget::{Budget, MemoryBudget};
use crate::config::Config;
use crate::handshake::{OriginPolicy, Policy, Protocols, Reject};
use crate::metrics::{Refusal, ServiceMetrics, Stats};
use crate::shutdown::Shutdown;

/// Answers WebSocket handshakes and hands each upgraded connection to a
/// handler on its own task; every request that is not a WebSocket upgrade
/// goes to the inner service `S` unchanged.
///
/// A broken upgrade attempt gets an HTTP response, never a service error:
/// `400` with a one-line reason, `403` for a refused `Origin`, `405` with
/// `Allow: GET`, `426` with `Sec-WebSocket-Version: 13`.
///
/// Over HTTP/2 (feature `http2`, on by default) it answers the extended
/// CONNECT of RFC 8441 with `200`, under the same rules; a `CONNECT` with
/// another `:protocol` gets `501`, and a plain `CONNECT` goes to the inner
/// service. The server must announce `SETTINGS_ENABLE_CONNECT_PROTOCOL`
/// ([`serve`](crate::serve) does; with hyper, call
/// `enable_connect_protocol()` on its HTTP/2 builder). The handler gets the
/// same [`UpgradedWebSocket`](crate::UpgradedWebSocket) either way;
/// `head.version` tells which HTTP version carries it.
///
/// Serve it with [`serve`](crate::serve), hyper's
/// `serve_connection_with_upgrades` or axum, or upgrades cannot happen.
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};
///
/// # async fn run() -> std::io::Result<()> {
/// let echo = WebSocketService::new(|mut ws: UpgradedWebSocket, head: RequestHead| async move {
///     println!("a WebSocket over {:?}", head.version);
///     while let Some(Ok(msg)) = ws.next().await {
///         if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
///             break;
///         }
///     }
/// });
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// tower_ws::serve(listener, echo).await
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct WebSocketService<H, S = UpgradeRequired> {
    handler: H,
    inner: S,
    settings: Arc<Settings>,
}

#[derive(Clone, Debug, Default)]
struct Settings {
    config: Config,
    policy: Policy,
    path: Option<String>,
    /// One permit per open WebSocket, shared by every clone of the service.
    connections: Option<Arc<Semaphore>>,
    /// The graceful-shutdown signal given to every WebSocket.
    shutdown: Option<Shutdown>,
    /// The counters, shared by every clone of the service.
    metrics: Arc<ServiceMetrics>,
    /// The memory all connections buffer, against an optional limit.
    budget: Arc<Budget>,
}

impl<H> WebSocketService<H, UpgradeRequired> {
    /// A service with default settings, whose non-upgrade requests get
    /// `426 Upgrade Required` (mount it on a route of its own), until
    /// [`with_inner`](Self::with_inner) gives it another inner service.
    pub fn new(handler: H) -> Self {
        let config = Config::default();
        WebSocketService {
            handler,
            inner: UpgradeRequired,
            settings: Arc::new(Settings {
                policy: Policy {
                    #[cfg(feature = "deflate")]
                    deflate: config.deflate.clone(),
                    ..Policy::default()
                },
                config,
                path: None,
                connections: None,
                shutdown: None,
                metrics: Arc::default(),
                budget: Arc::default(),
            }),
        }
    }

    /// A layer that wraps other services with this service's settings.
    pub fn into_layer(self) -> WebSocketLayer<H> {
        WebSocketLayer::from(self)
    }
}

impl<H, S> WebSocketService<H, S> {
    /// Replaces the inner service that non-upgrade requests go to.
    pub fn with_inner<T>(self, inner: T) -> WebSocketService<H, T> {
        WebSocketService {
            handler: self.handler,
            inner,
            settings: self.settings,
        }
    }

    fn settings(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }

    /// The connection settings (limits, timeouts, permessage-deflate).
    ///
    /// Default is [`Config::default()`].
    pub fn config(mut self, config: Config) -> Self {
        #[cfg(feature = "deflate")]
        {
            self.settings().policy.deflate = config.deflate.clone();
        }
        self.settings().config = config;
        self
    }

    /// Subprotocols the server speaks, in its order of preference: the first
    /// one the client also offers is selected (RFC 6455 §4.2.2).
    ///
    /// Default is none: `Sec-WebSocket-Protocol` is never answered.
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.settings().policy.protocols =
            Protocols::Preferred(protocols.into_iter().map(Into::into).collect());
        self
    }

    /// Selects a subprotocol from the client's offers with a closure; a
    /// value the client did not offer is ignored.
    pub fn select_protocol<F>(mut self, select: F) -> Self
    where
        F: Fn(&[&str]) -> Option<String> + Send + Sync + 'static,
    {
        self.settings().policy.protocols = Protocols::Select(Arc::new(select));
        self
    }

    /// Only these origins (e.g. `https://example.com`) may connect; others
    /// get `403 Forbidden`. Requests without `Origin` (non-browser clients)
    /// are allowed. This defends against cross-site WebSocket hijacking.
    ///
    /// Default is any origin.
    pub fn allowed_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.settings().policy.origins =
            OriginPolicy::AllowList(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Decides with a closure whether an `Origin` (or its absence) may
    /// connect; `false` answers `403 Forbidden`.
    pub fn check_origin<F>(mut self, check: F) -> Self
    where
        F: Fn(Option<&http::HeaderValue>) -> bool + Send + Sync + 'static,
    {
        self.settings().policy.origins = OriginPolicy::Check(Arc::new(check));
        self
    }

    /// Only upgrade requests for this exact path are WebSocket handshakes;
    /// upgrade requests for other paths go to the inner service. A request
    /// for this path that is not a WebSocket handshake (someone opening the
    /// WebSocket URL in a browser tab) gets `426 Upgrade Required` with a
    /// one-line hint.
    ///
    /// Default is every path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.settings().path = Some(path.into());
        self
    }

    /// At most this many WebSockets open at once, counted over every clone
    /// of this service (and every service made by its layer). An upgrade
    /// beyond it gets `503 Service Unavailable` with `Retry-After: 1`;
    /// open connections are unaffected, and a slot frees when a handler
    /// returns.
    ///
    /// Default is no limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.settings().connections =
            Some(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))));
        self
    }

    /// Closes every WebSocket of this service with 1001 Going Away when
    /// `shutdown` is triggered (see [`Shutdown`]). Without it, a WebSocket
    /// watches the [`Shutdown`] found in the request extensions, which is
    /// how [`serve`](crate::serve)'s graceful shutdown reaches it.
    ///
    /// Default is none.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.settings().shutdown = Some(shutdown);
        self
    }

    /// One memory budget for every connection of this service (and its
    /// clones): what they buffer together. While it is exhausted, upgrades
    /// get `503 Service Unavailable` with `Retry-After: 1`, connections stop
    /// reading (their peers feel TCP backpressure), and past the grace
    /// period the connections holding the most unsent output (or, when
    /// none does, the most input, such as a message in many frames that
    /// cannot finish while reading is paused) are closed
    /// with 1013 (or the code set) and counted in
    /// [`Stats::budget_closes`](crate::metrics::Stats::budget_closes). See
    /// [`MemoryBudget`] for what counts.
    ///
    /// ```
    /// use tower_ws::{MemoryBudget, RequestHead, UpgradedWebSocket, WebSocketService};
    ///
    /// let service = WebSocketService::new(|_ws: UpgradedWebSocket, _head: RequestHead| async {})
    ///     .memory_budget(MemoryBudget::new(512 << 20));
    /// assert_eq!(service.stats().memory_budget, Some(512 << 20));
    /// ```
    ///
    /// Default is no limit (buffered bytes are still counted in
    /// [`Stats::buffered_bytes`](crate::metrics::Stats::buffered_bytes)).
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.settings().budget = Arc::new(Budget::new(Some(budget)));
        self
    }

    /// A snapshot of the counters of this service and all its clones:
    /// open connections, handshakes, traffic, close codes, buffered bytes.
    /// Cheap enough to call on every scrape.
    pub fn stats(&self) -> Stats {
        let budget = &self.settings.budget;
        self.settings.metrics.snapshot(
            budget.used() as u64,
            budget.limit().map(|l| l as u64),
            budget.closes(),
        )
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<H, S, B, ResBody> Service<Request<B>> for WebSocketService<H, S>
where
    H: UpgradeHandler,
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let settings = &*self.settings;
        let wanted_path = settings
            .path
            .as_deref()
            .is_none_or(|p| p == req.uri().path());
        if !wanted_path {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let Accepted { response, agreed } = match upgrade::negotiate(
            (&req).into(),
            &settings.policy,
        ) {
            None if settings.path.is_some() => {
                let reject = Reject::new(
                    StatusCode::UPGRADE_REQUIRED,
                    "this URL is a WebSocket endpoint: open it with new WebSocket(url), not as a page",
                );
                return ResponseFuture::ready(reject.response());
            }
            None => return ResponseFuture::inner(self.inner.call(req)),
            Some(Err(reject)) => {
                let why = Refusal::of_status(reject.status);
                return refuse(&settings.metrics, why, reject, &req);
            }
            Some(Ok(accepted)) => accepted,
        };
        let on_upgrade = match take_on_upgrade(req.extensions_mut()) {
            Ok(on_upgrade) => on_upgrade,
            Err(reject) => return refuse(&settings.metrics, Refusal::NotUpgradable, reject, &req),
        };
        if settings.budget.is_exhausted() {
            let reject = Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is short of memory for new WebSockets: try again later",
            );
            return refuse(&settings.metrics, Refusal::MemoryBudget, reject, &req);
        }
        let permit = match &settings.connections {
            None => None,
            Some(connections) => match connections.try_acquire() {
                // Forgotten when the task exists, which gives it back when
                // it ends (see its drop); dropped on a panic before that.
                Ok(permit) => Some(permit),
                Err(_) => {
                    let reject = Reject::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many WebSocket connections: try again later",
                    );
                    return refuse(&settings.metrics, Refusal::ConnectionLimit, reject, &req);
                }
            },
        };
        let shutdown = settings
            .shutdown
            .clone()
            .or_else(|| req.extensions().get::<Shutdown>().cloned());
        let version = req.version();
        #[cfg(feature = "tracing")]
        let span = {
            let span = observe::connection_span(&req, response.headers());
            (!span.is_disabled()).then(|| Box::new(span))
        };
        #[cfg(not(feature = "tracing"))]
        let span = ();
        settings.metrics.accepted();
        let pending = PendingUpgrade::new(on_upgrade, agreed, &settings.config, version);
        let (head, _body) = req.into_parts();
        let head = detach(head);
        let task = ConnectionTask {
            state: State::Upgrading {
                pending,
                start: Some(Start {
                    handler: self.handler.clone(),
                    head,
                    shutdown,
                    version,
                }),
            },
            settings: self.settings.clone(),
            span,
        };
        // From here the task's drop gives the slot back.
        if let Some(permit) = permit {
            permit.forget();
        }
        tokio::spawn(task);
        ResponseFuture::ready(response)
    }
}

pin_project! {
    /// One WebSocket's task: waits for hyper to hand the connection over,
    /// then runs the handler.
    ///
    /// A future of its own rather than an `async` block, so that it holds
    /// the larger of its two states, not both: rustc's layout of an `async`
    /// block kept the WebSocket on its way from the upgrade to the handler
    /// in a slot of its own (976 bytes then, 728 now) beside the handler's future, for as
    /// long as the connection lived. This is most of an idle connection's
    /// memory.
    ///
    /// It holds no permit of the connection limit and no gauge of open
    /// WebSockets: a permit is taken when the task is spawned and given
    /// back when it is dropped, after the handler's future; the gauge is
    /// counted down when the handler's future ends or is dropped.
    struct ConnectionTask<H: UpgradeHandler> {
        #[pin]
        state: State<H>,
        settings: Arc<Settings>,
        span: TaskSpan,
    }

    impl<H: UpgradeHandler> PinnedDrop for ConnectionTask<H> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _entered = enter(this.span);
            // Given back after the handler's future, even if its drop panics.
            let _slot = this.settings.connections.as_deref().map(GiveBack);
            end(this.state.as_mut(), this.settings);
            // An upgrade still pending is dropped in the span too.
            this.state.set(State::Done);
        }
    }
}

/// A connection's span, entered on every poll of its task and on drop:
/// boxed, and none when no subscriber wants it (one pointer, not the 40
/// bytes of a `Span`).
#[cfg(feature = "tracing")]
type TaskSpan = Option<Box<tracing::Span>>;
#[cfg(not(feature = "tracing"))]
type TaskSpan = ();

#[cfg(feature = "tracing")]
fn enter(span: &TaskSpan) -> Option<tracing::span::Entered<'_>> {
    span.as_deref().map(tracing::Span::enter)
}

/// Nothing to enter without `tracing` (a value, not `()`, for the
/// `let _entered = ...` the callers keep).
#[cfg(not(feature = "tracing"))]
struct NoSpan;

#[cfg(not(feature = "tracing"))]
fn enter(_: &TaskSpan) -> NoSpan {
    NoSpan
}

/// What the handler gets once the upgrade completes.
struct Start<H> {
    handler: H,
    head: RequestHead,
    shutdown: Option<Shutdown>,
    version: http::Version,
}

pin_project! {
    #[project = StateProj]
    enum State<H: UpgradeHandler> {
        Upgrading {
            pending: PendingUpgrade,
            start: Option<Start<H>>,
        },
        Running {
            #[pin]
            handling: H::Future,
            // For the gauge of open WebSockets.
            version: http::Version,
        },
        Done,
    }
}

impl<H: UpgradeHandler> Future for ConnectionTask<H> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let _entered = enter(this.span);
        loop {
            match this.state.as_mut().project() {
                StateProj::Upgrading { pending, start } => {
                    let upgraded = ready!(pending.poll_upgraded(cx, &this.settings.config));
                    let start = start.take().expect("polled once more after the upgrade");
                    let Ok(ws) = upgraded else {
                        // The upgrade fails only if the client went away
                        // before it finished.
                        this.state.set(State::Done);
                        return Poll::Ready(());
                    };
                    let ws = attach(ws, start.shutdown.as_ref(), this.settings);
                    let handling = start.handler.call(ws, start.head);
                    observe::opened(&this.settings.metrics, start.version);
                    this.state.set(State::Running {
                        handling,
                        version: start.version,
                    });
                }
                StateProj::Running { handling, .. } => {
                    ready!(handling.poll(cx));
                    end(this.state, this.settings);
                    return Poll::Ready(());
                }
                StateProj::Done => return Poll::Ready(()),
            }
        }
    }
}

/// Drops the handler's future, if it runs, and counts its WebSocket as
/// closed (even if the handler panicked).
fn end<H: UpgradeHandler>(mut state: Pin<&mut State<H>>, settings: &Settings) {
    if let StateProj::Running { version, .. } = state.as_mut().project() {
        // Counted down after the handler's future, even if its drop panics.
        let _closed = Closed(&settings.metrics, *version);
        state.set(State::Done);
    }
}

/// Gives a slot of the connection limit back when dropped.
struct GiveBack<'a>(&'a Semaphore);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.add_permits(1);
    }
}

/// Counts a WebSocket as closed when dropped.
struct Closed<'a>(&'a ServiceMetrics, http::Version);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.0.ended(self.1);
    }
}

/// Connects a new WebSocket to the service's shutdown signal, metrics and
/// memory budget.
fn attach(
    mut ws: super::UpgradedWebSocket,
    shutdown: Option<&Shutdown>,
    settings: &Settings,
) -> super::UpgradedWebSocket {
    if let Some(shutdown) = shutdown {
        ws.watch_shutdown(shutdown);
    }
    ws.observe(settings.metrics.clone());
    ws.attach_budget(&settings.budget);
    ws
}

/// Copies the URI and header values out of the request head. hyper parses
/// them without copying, as slices of its connection read buffer, so a head
/// kept for the life of a WebSocket would pin that whole buffer (8 KiB or
/// more): copying a few hundred bytes once per connection frees it.
fn detach(mut head: RequestHead) -> RequestHead {
    let mut headers = http::HeaderMap::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let mut copy = http::HeaderValue::from_bytes(value.as_bytes())
            .expect("copied from a valid header value");
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    head.headers = headers;
    if let Ok(uri) =
        http::Uri::from_maybe_shared(Bytes::copy_from_slice(head.uri.to_string().as_bytes()))
    {
        head.uri = uri;
    }
    head
}

/// The default inner service of a [`WebSocketService`] mounted on a route of
/// its own: every request that is not a WebSocket upgrade gets
/// `426 Upgrade Required`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpgradeRequired;

impl<B> Service<Request<B>> for UpgradeRequired {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<B>) -> Self::Future {
        std::future::ready(Ok(Reject::new(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint only speaks WebSocket: send an Upgrade: websocket request",
        )
        .response()))
    }
}

#[cfg(test)]
mod size_tests {
    use futures_util::{SinkExt, StreamExt};

    use super::*;
    use crate::UpgradedWebSocket;

    fn task_size<H: UpgradeHandler>(_: &H) -> usize {
        std::mem::size_of::<ConnectionTask<H>>()
    }

    /// An idle connection is mostly its task, which tokio allocates in
    /// steps of 128 bytes: 104 bytes of its own and 8 of state around the
    /// future. With an echo handler's future the task is 896 bytes while
    /// the future is at most 792 (1,024 bytes from 793). The WebSocket is
    /// 648 of them, the echo loop's message and send 112, the task's own
    /// state the rest.
    #[test]
    fn an_echo_task_stays_in_896_bytes() {
        let echo = |mut ws: UpgradedWebSocket, _: RequestHead| async move {
            while let Some(Ok(msg)) = ws.next().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        };
        let size = task_size(&echo);
        assert!(
            size <= 792,
            "an echo task's future is {size} B: tokio's task is 1,024 B from 793 B (it was 920 \
             when the connection limit's permit, the open gauge, an unused span and the keepalive \
             state were held in the task)"
        );
    }
}
