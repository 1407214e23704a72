//! [`serve`]: the accept loop, done right for WebSockets (feature `server`,
//! on by default).
//!
//! One port serves HTTP/1.1 and HTTP/2, in clear text (HTTP/2 with prior
//! knowledge, "h2c") or over TLS (feature `tls`, ALPN `h2` and `http/1.1`),
//! with HTTP/1.1 upgrades and HTTP/2 extended CONNECT (RFC 8441) enabled, so
//! a [`WebSocketService`](crate::WebSocketService) accepts WebSockets over
//! both. Every stage of a new connection has a deadline (TLS handshake,
//! first bytes and HTTP/2 preface, request head), none of them holds up the
//! accept loop, and [`with_graceful_shutdown`](Serve::with_graceful_shutdown)
//! stops accepting, closes every WebSocket with 1001 Going Away and waits
//! for them up to a deadline.
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
//!     tower_ws::serve(listener, echo)
//!         .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.ok(); })
//!         .await
//! }
//! ```
//!
//! Any Tower service of `http::Request<hyper::body::Incoming>` runs under
//! it: an axum `Router`, tower-http layers, [`WebSocketLayer`](crate::WebSocketLayer).

mod conn;
mod io;
#[cfg(feature = "tls")]
mod tls;

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, IntoFuture, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

#[cfg(feature = "tls")]
pub use tls::TlsConfig;

use crate::service::PeerAddr;
use crate::shutdown::Shutdown;
use conn::{AddExtensions, Conn};

/// Serves `service` on every connection `listener` accepts: HTTP/1.1 and
/// HTTP/2, WebSocket upgrades and extended CONNECTs. Await the returned
/// [`Serve`] to run it; its builder methods set TLS, timeouts and graceful
/// shutdown. See the [module docs](self).
pub fn serve<S>(listener: TcpListener, service: S) -> Serve<S> {
    Serve {
        listener,
        service,
        settings: Settings::default(),
        #[cfg(feature = "tls")]
        tls: None,
    }
}

/// The server [`serve`] returns; a future (through `IntoFuture`) that runs
/// until an accept error it cannot recover from, or forever.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    service: S,
    settings: Settings,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

/// Connection settings of [`Serve`].
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) header_read_timeout: Duration,
    pub(crate) tls_handshake_timeout: Duration,
    pub(crate) shutdown_deadline: Duration,
    pub(crate) tcp_nodelay: bool,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
    pub(crate) http2_keep_alive_timeout: Duration,
    pub(crate) http2_max_concurrent_streams: u32,
    pub(crate) http2_stream_window: u32,
    pub(crate) http2_connection_window: u32,
    pub(crate) http2_max_pending_reset_streams: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_read_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(10),
            tcp_nodelay: true,
            http2_keep_alive_interval: Some(Duration::from_secs(20)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            http2_max_concurrent_streams: 200,
            http2_stream_window: 1 << 20,
            http2_connection_window: 8 << 20,
            http2_max_pending_reset_streams: 20,
        }
    }
}

impl<S> Serve<S> {
    /// Speaks TLS on every connection (feature `tls`), HTTP/2 or HTTP/1.1
    /// as ALPN agrees.
    ///
    /// Default is clear text (HTTP/1.1, and HTTP/2 with prior knowledge).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long a new connection may take to send its first request head
    /// (HTTP/1.1) or its connection preface (HTTP/2), counted after the TLS
    /// handshake; an idle keep-alive HTTP/1.1 connection is closed after it
    /// too. Slow or silent clients cannot hold sockets.
    ///
    /// Default is 10 seconds.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.settings.header_read_timeout = timeout;
        self
    }

    /// How long a TLS handshake may take.
    ///
    /// Default is 10 seconds.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.tls_handshake_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for WebSockets to finish their
    /// closing handshake and for requests in flight to complete; then the
    /// connections left are dropped.
    ///
    /// Default is 10 seconds.
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.settings.shutdown_deadline = deadline;
        self
    }

    /// Sets `TCP_NODELAY` on accepted sockets, so small WebSocket messages
    /// leave at once.
    ///
    /// Default is `true`.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.settings.tcp_nodelay = nodelay;
        self
    }

    /// HTTP/2: send a PING after this long without traffic, and drop the
    /// connection if the answer takes longer than
    /// [`http2_keep_alive_timeout`](Self::http2_keep_alive_timeout); `None`
    /// sends none.
    ///
    /// Default is 20 seconds.
    pub fn http2_keep_alive_interval(mut self, interval: Option<Duration>) -> Self {
        self.settings.http2_keep_alive_interval = interval;
        self
    }

    /// HTTP/2: how long a keep-alive PING may go unanswered.
    ///
    /// Default is 20 seconds.
    pub fn http2_keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.settings.http2_keep_alive_timeout = timeout;
        self
    }

    /// HTTP/2: how many streams (requests and WebSockets) one connection may
    /// have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    ///
    /// Default is 200.
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.settings.http2_max_concurrent_streams = max;
        self
    }

    /// HTTP/2: the flow-control window of each stream, the most a client
    /// may send on one WebSocket that its handler has not read yet.
    ///
    /// Default is 1 MiB.
    pub fn http2_stream_window(mut self, bytes: u32) -> Self {
        self.settings.http2_stream_window = bytes;
        self
    }

    /// HTTP/2: the flow-control window of a whole connection. Larger than
    /// the stream window, so a WebSocket whose handler stops reading does
    /// not stall the other streams of its connection.
    ///
    /// Default is 8 MiB.
    pub fn http2_connection_window(mut self, bytes: u32) -> Self {
        self.settings.http2_connection_window = bytes;
        self
    }

    /// HTTP/2: how many streams the client may open and reset before the
    /// server accepted them (the "rapid reset" attack, CVE-2023-44487);
    /// beyond it the connection is closed with `ENHANCE_YOUR_CALM`.
    ///
    /// Default is 20.
    pub fn http2_max_pending_reset_streams(mut self, max: usize) -> Self {
        self.settings.http2_max_pending_reset_streams = max;
        self
    }

    /// The local address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `signal` completes, then shuts down gracefully: stops
    /// accepting, sends 1001 Going Away to every open WebSocket (including
    /// plain `Stream`/`Sink` ones, through [`Shutdown`]), lets requests in
    /// flight finish (HTTP/2 connections get GOAWAY), and waits for all of
    /// it up to the [`shutdown_deadline`](Self::shutdown_deadline).
    pub fn with_graceful_shutdown<F>(self, signal: F) -> WithGracefulShutdown<S, F>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        WithGracefulShutdown {
            serve: self,
            signal,
        }
    }
}

impl<S> fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Serve");
        d.field("listener", &self.listener)
            .field("settings", &self.settings);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        d.finish_non_exhaustive()
    }
}

/// A [`Serve`] with a graceful-shutdown signal; await it to run it.
#[must_use = "a server does nothing until it is awaited"]
pub struct WithGracefulShutdown<S, F> {
    serve: Serve<S>,
    signal: F,
}

impl<S, F> fmt::Debug for WithGracefulShutdown<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithGracefulShutdown")
            .field("serve", &self.serve)
            .finish_non_exhaustive()
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The services [`serve`] runs: any cloneable Tower service of
/// `http::Request<hyper::body::Incoming>` whose futures, responses and
/// errors can cross threads (an axum `Router`, a [`WebSocketService`](crate::WebSocketService),
/// tower-http services and layers). Implemented for all of them.
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::ResponseBody>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResponseBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type ResponseBody = B;
}

impl<S: HttpService> IntoFuture for Serve<S> {
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self, pending()))
    }
}

impl<S, F> IntoFuture for WithGracefulShutdown<S, F>
where
    S: HttpService,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.serve, self.signal))
    }
}

/// The accept loop, then the graceful shutdown.
async fn run<S, F>(serve: Serve<S>, signal: F) -> std::io::Result<()>
where
    S: HttpService,
    F: Future<Output = ()> + Send,
{
    let Serve {
        listener,
        service,
        settings,
        #[cfg(feature = "tls")]
        tls,
    } = serve;
    let settings = Arc::new(settings);
    let shutdown = Shutdown::new();
    let service = AddExtensions {
        inner: service,
        shutdown: shutdown.clone(),
        peer: None,
    };
    #[cfg(feature = "tls")]
    let tls = tls.map(|tls| tokio_rustls::TlsAcceptor::from(tls.config));
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut signal => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(_) => {
                    // Out of file descriptors or similar: the open
                    // connections go on; try again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = Conn {
            service: AddExtensions {
                peer: Some(PeerAddr(peer)),
                ..service.clone()
            },
            settings: settings.clone(),
            #[cfg(feature = "tls")]
            tls: tls.clone(),
            stop: stop.clone(),
        };
        connections.spawn(conn.run(tcp));
    }

    drop(listener);
    shutdown.trigger();
    stop.cancel();
    let connections_done = async { while connections.join_next().await.is_some() {} };
    let all_done =
        async { tokio::join!(connections_done, shutdown.wait(settings.shutdown_deadline)) };
    let _ = tokio::time::timeout(settings.shutdown_deadline, all_done).await;
    // Past the deadline, what is left is dropped.
    connections.shutdown().await;
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
