//! [`Hub`]: serves a [`Handler`] as an [`UpgradeHandler`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::Handler;
use super::driver;
use super::registry::Clients;
use crate::backplane::Backplane;
use crate::message::CloseCode;
use crate::metrics::HubStats;
use crate::service::{RequestHead, UpgradeHandler, UpgradedWebSocket};

/// Runs a [`Handler`] for every WebSocket a
/// [`WebSocketService`](crate::WebSocketService) accepts, and keeps the
/// registry of connected [`Clients`].
///
/// ```no_run
/// use tower_ws::handler::{Handler, Hub, Options};
/// use tower_ws::WebSocketService;
///
/// struct Quiet;
/// impl Handler for Quiet {}
///
/// let hub = Hub::new(Quiet, Options::default().ping_interval(Some(std::time::Duration::from_secs(20))));
/// let service = WebSocketService::new(hub.clone()).path("/ws");
/// # let _ = service;
/// ```
pub struct Hub<H> {
    shared: Arc<Shared<H>>,
}

pub(super) struct Shared<H> {
    pub(super) handler: H,
    pub(super) options: Options,
    pub(super) clients: Clients,
}

impl<H: Handler> Hub<H> {
    /// A hub running `handler` with `options`.
    pub fn new(handler: H, options: Options) -> Self {
        Hub {
            shared: Arc::new(Shared {
                handler,
                clients: Clients::new(options.backplane.clone()),
                options,
            }),
        }
    }

    /// The connected clients: broadcast to them, or shut them down.
    pub fn clients(&self) -> &Clients {
        &self.shared.clients
    }

    /// A snapshot of this hub's counters: clients, broadcasts, messages
    /// queued and dropped, clients closed for a full queue, contained panics.
    pub fn stats(&self) -> HubStats {
        self.shared.clients.stats()
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.shared.handler
    }
}

impl<H> Clone for Hub<H> {
    fn clone(&self) -> Self {
        Hub {
            shared: self.shared.clone(),
        }
    }
}

impl<H> fmt::Debug for Hub<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("options", &self.shared.options)
            .field("clients", &self.shared.clients)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> UpgradeHandler for Hub<H> {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn call(&self, ws: UpgradedWebSocket, head: RequestHead) -> Self::Future {
        // The WebSocket goes in a box: an `async fn` keeps its arguments in
        // its future for good, and `run` moves it on to the client's handle.
        Box::pin(driver::run(self.shared.clone(), Box::new(ws), head))
    }
}

/// What happens to a message for a client whose send queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the message; the client stays connected and misses it.
    DropMessage,
    /// Drop the message and close the client with this code (1008 Policy
    /// Violation or 1013 Try Again Later are the usual ones) and the reason
    /// "send queue full". Messages already queued are not sent.
    Close(CloseCode),
}

/// Settings of a [`Hub`]: send queues, keepalive, timeouts.
///
/// ```
/// use std::time::Duration;
/// use tower_ws::CloseCode;
/// use tower_ws::handler::{Options, Overflow};
///
/// let options = Options::default()
///     .queue_capacity(32)
///     .overflow(Overflow::Close(CloseCode::POLICY))
///     .ping_interval(Some(Duration::from_secs(20)))
///     .pong_timeout(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(super) backplane: Option<Arc<dyn Backplane>>,
    pub(super) queue_capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) ping_interval: Option<Duration>,
    pub(super) pong_timeout: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) close_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backplane: None,
            queue_capacity: 128,
            overflow: Overflow::Close(CloseCode::TRY_AGAIN_LATER),
            ping_interval: None,
            pong_timeout: None,
            idle_timeout: None,
            close_timeout: Duration::from_secs(1),
        }
    }
}

impl Options {
    /// Joins this hub to other server instances through `backplane`:
    /// broadcasts and rooms reach their clients too, and
    /// [`Clients::len`] counts them (see [`crate::backplane`]).
    ///
    /// Default is none: the hub is a node on its own, and broadcast costs
    /// nothing more than the local sends.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// How many messages may wait in each client's send queue (messages
    /// the WebSocket already accepted are bounded separately by
    /// [`Config::write_buffer_high_water`](crate::Config::write_buffer_high_water)).
    ///
    /// Default is 128.
    pub fn queue_capacity(mut self, messages: usize) -> Self {
        self.queue_capacity = messages.max(1);
        self
    }

    /// What to do with a message for a client whose queue is full.
    ///
    /// Default is `Overflow::Close(CloseCode::TRY_AGAIN_LATER)` (1013): a
    /// client that cannot keep up is told to reconnect rather than silently
    /// miss messages.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Keepalive: send a ping this often; a peer that then sends nothing
    /// (no pong, no message) for [`pong_timeout`](Self::pong_timeout) is
    /// failed with close code 1011 ("keepalive ping timeout") without
    /// waiting for a reply, and `on_close` gets that frame.
    ///
    /// This is the WebSocket's own keepalive
    /// ([`Config::ping_interval`](crate::Config::ping_interval)) set for the
    /// hub's connections; `Some` here overrides the `Config`.
    ///
    /// Default is `None`: the `Config`'s setting applies (itself no pings
    /// by default).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long a keepalive ping may go unanswered; overrides
    /// [`Config::pong_timeout`](crate::Config::pong_timeout).
    ///
    /// Default is the `Config`'s (20 seconds unless changed).
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = Some(timeout);
        self
    }

    /// Close a client (1001, "idle timeout") that sent no text or binary
    /// message for this long. Pings and pongs do not count as activity.
    /// `Some` overrides [`Config::idle_timeout`](crate::Config::idle_timeout).
    ///
    /// Default is `None`: the `Config`'s setting applies (itself never by
    /// default).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a closing connection waits for the peer's close frame (and
    /// then its end of TCP) before dropping it: this bounds
    /// [`Client::close`](super::Client::close) and every close the hub starts.
    ///
    /// Default is 1 second, like python-WS's `close`.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}
