//! [`Shutdown`]: tells every open WebSocket that the server is going away.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A graceful-shutdown signal for WebSockets, whatever drives them: the
/// callback [`Hub`](crate::handler::Hub) or your own `Stream`/`Sink` loop.
///
/// Each WebSocket that watches it, once it is [triggered](Self::trigger),
/// sends a close frame with 1001 Going Away ("server shutting down") on its
/// own: the next read yields the peer's close reply and then ends the
/// stream, or fails after the close timeout; the next send fails with
/// [`Error::is_closed`](crate::Error::is_closed). Nothing else changes for
/// the application, which sees an ordinary closing handshake.
///
/// [`serve`](crate::serve)'s graceful shutdown uses one for you. Elsewhere,
/// give one to [`WebSocketService::shutdown`](crate::WebSocketService::shutdown)
/// (or put one in the request extensions, as `serve` does) and trigger it
/// from your server's shutdown:
///
/// ```no_run
/// use std::time::Duration;
/// use tower_ws::{RequestHead, Shutdown, UpgradedWebSocket, WebSocketService};
///
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let shutdown = Shutdown::new();
/// let service = WebSocketService::new(|ws: UpgradedWebSocket, _: RequestHead| async move {
///     drop(ws);
/// })
/// .shutdown(shutdown.clone());
/// let app = axum::Router::new().route_service("/ws", service);
/// axum::serve(listener, app)
///     .with_graceful_shutdown(async move {
///         let _ = tokio::signal::ctrl_c().await;
///         shutdown.trigger();
///         shutdown.wait(Duration::from_secs(5)).await;
///     })
///     .await
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Shutdown {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    token: CancellationToken,
    /// How many WebSockets watch this signal and are not dropped yet.
    open: watch::Sender<usize>,
}

impl Shutdown {
    /// A signal that has not been triggered.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Tells every WebSocket watching this signal, now and from now on, to
    /// close with 1001 Going Away.
    pub fn trigger(&self) {
        self.shared.token.cancel();
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// How many WebSockets watching this signal are still open (not yet
    /// dropped by their handlers).
    pub fn open_websockets(&self) -> usize {
        *self.shared.open.borrow()
    }

    /// Waits until every WebSocket watching this signal is dropped, or
    /// `deadline` passed; returns how many were still open then (0 when
    /// all closed in time).
    pub async fn wait(&self, deadline: Duration) -> usize {
        let mut open = self.shared.open.subscribe();
        match tokio::time::timeout(deadline, open.wait_for(|n| *n == 0)).await {
            Ok(_) => 0,
            Err(_) => self.open_websockets(),
        }
    }

    /// A watch for one WebSocket, counted until it is dropped.
    pub(crate) fn watch(&self) -> Watch {
        self.shared.open.send_modify(|n| *n += 1);
        Watch {
            signal: self.signal(),
            _open: OpenGuard(self.shared.clone()),
        }
    }

    /// One more waiter on the signal (each half of a split WebSocket polls
    /// its own, so neither steals the other's waker).
    pub(crate) fn signal(&self) -> Signal {
        Signal {
            cancelled: Some(Box::pin(self.shared.token.clone().cancelled_owned())),
            shutdown: self.clone(),
        }
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("open_websockets", &self.open_websockets())
            .finish()
    }
}

/// One WebSocket's view of a [`Shutdown`]: the signal, and its place in the
/// count of open WebSockets.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) signal: Signal,
    _open: OpenGuard,
}

/// Fires once when the shutdown is triggered.
pub(crate) struct Signal {
    /// `None` once fired.
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    shutdown: Shutdown,
}

impl Signal {
    /// True exactly once: at the first poll after the trigger.
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let fired = self
            .cancelled
            .as_mut()
            .is_some_and(|cancelled| cancelled.as_mut().poll(cx).is_ready());
        if fired {
            self.cancelled = None;
        }
        fired
    }

    /// Another waiter on the same shutdown, not yet fired.
    pub(crate) fn fork(&self) -> Signal {
        self.shutdown.signal()
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("fired", &self.cancelled.is_none())
            .finish()
    }
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n -= 1);
    }
}

impl fmt::Debug for OpenGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpenGuard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_watches_until_dropped_and_fires_each_signal_once() {
        let shutdown = Shutdown::new();
        let mut a = shutdown.watch();
        let b = shutdown.watch();
        assert_eq!(shutdown.open_websockets(), 2);
        let waker = futures_task_noop();
        let mut cx = Context::from_waker(&waker);
        assert!(!a.signal.poll_fired(&mut cx));
        shutdown.trigger();
        assert!(shutdown.is_triggered());
        assert!(a.signal.poll_fired(&mut cx));
        assert!(!a.signal.poll_fired(&mut cx), "fires once");
        let mut late = a.signal.fork();
        assert!(
            late.poll_fired(&mut cx),
            "a signal made after the trigger fires"
        );
        drop(b);
        assert_eq!(shutdown.wait(Duration::from_millis(10)).await, 1);
        drop(a);
        assert_eq!(shutdown.wait(Duration::from_millis(10)).await, 0);
    }

    fn futures_task_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
