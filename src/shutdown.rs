//! [`Shutdown`]: tells every open WebSocket that the server is going away.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::sync::watch;

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
    triggered: AtomicBool,
    /// The wakers of the signals waiting for the trigger.
    waiters: Mutex<Waiters>,
    /// How many WebSockets watch this signal and are not dropped yet.
    open: watch::Sender<usize>,
}

/// Waker slots, reused after a signal is dropped.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Shared {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic elsewhere while holding the lock leaves the slots usable.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shutdown {
    /// A signal that has not been triggered.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Tells every WebSocket watching this signal, now and from now on, to
    /// close with 1001 Going Away.
    pub fn trigger(&self) {
        // Set before the lock: a signal registering after this sees it
        // under the lock; one registered before is woken here.
        self.shared.triggered.store(true, Release);
        let wakers: Vec<Waker> = {
            let mut waiters = self.shared.waiters();
            waiters.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.shared.triggered.load(Acquire)
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
        }
    }

    /// One more waiter on the signal (each half of a split WebSocket polls
    /// its own, so neither steals the other's waker).
    pub(crate) fn signal(&self) -> Signal {
        Signal {
            shutdown: self.clone(),
            slot: None,
            waker: None,
            fired: false,
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
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.signal.shutdown.shared.open.send_modify(|n| *n -= 1);
    }
}

/// Fires once when the shutdown is triggered.
///
/// A connection polls it on every poll, so the common case costs one
/// atomic load and a waker comparison: the lock is taken only to register
/// a waker that changed (in practice, once per task).
pub(crate) struct Signal {
    shutdown: Shutdown,
    /// This signal's slot in the waiters, once it registered a waker.
    slot: Option<u32>,
    /// The waker registered there.
    waker: Option<Waker>,
    fired: bool,
}

impl Signal {
    /// True exactly once: at the first poll after the trigger.
    #[inline]
    pub(crate) fn poll_fired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.fired {
            return false;
        }
        if self.shutdown.shared.triggered.load(Acquire) {
            return self.fire();
        }
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return false;
        }
        self.register(cx)
    }

    /// Registers the task's waker (it changed, or this is the first poll);
    /// true if the trigger came first.
    fn register(&mut self, cx: &Context<'_>) -> bool {
        let shared = &*self.shutdown.shared;
        let mut waiters = shared.waiters();
        if shared.triggered.load(Acquire) {
            drop(waiters);
            return self.fire();
        }
        let waker = cx.waker().clone();
        match self.slot {
            Some(slot) => waiters.slots[slot as usize] = Some(waker.clone()),
            None => {
                let slot = match waiters.free.pop() {
                    Some(slot) => {
                        waiters.slots[slot] = Some(waker.clone());
                        slot
                    }
                    None => {
                        waiters.slots.push(Some(waker.clone()));
                        waiters.slots.len() - 1
                    }
                };
                self.slot = Some(u32::try_from(slot).expect("fewer than 2^32 waiters"));
            }
        }
        drop(waiters);
        self.waker = Some(waker);
        false
    }

    fn fire(&mut self) -> bool {
        self.fired = true;
        self.waker = None;
        self.release();
        true
    }

    /// Gives the slot back.
    fn release(&mut self) {
        if let Some(slot) = self.slot.take() {
            let mut waiters = self.shutdown.shared.waiters();
            waiters.slots[slot as usize] = None;
            waiters.free.push(slot as usize);
        }
    }

    /// Another waiter on the same shutdown, not yet fired.
    pub(crate) fn fork(&self) -> Signal {
        self.shutdown.signal()
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("fired", &self.fired)
            .finish()
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

    struct Count(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(Default::default()));
        (count.clone(), Waker::from(count))
    }

    fn wakes(count: &Count) -> usize {
        count.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn the_trigger_wakes_the_waker_of_each_signals_latest_poll_once() {
        let shutdown = Shutdown::new();
        let (first, first_waker) = counting();
        let (second, second_waker) = counting();
        let (other, other_waker) = counting();
        let mut a = shutdown.signal();
        let mut b = shutdown.signal();
        assert!(!a.poll_fired(&mut Context::from_waker(&first_waker)));
        // The task moved: the latest waker is the one to wake.
        assert!(!a.poll_fired(&mut Context::from_waker(&second_waker)));
        assert!(!a.poll_fired(&mut Context::from_waker(&second_waker)));
        assert!(!b.poll_fired(&mut Context::from_waker(&other_waker)));
        // A dropped signal gives its slot back and is not woken.
        let (gone, gone_waker) = counting();
        let mut dropped = shutdown.signal();
        assert!(!dropped.poll_fired(&mut Context::from_waker(&gone_waker)));
        drop(dropped);
        let mut reuse = shutdown.signal();
        assert!(!reuse.poll_fired(&mut Context::from_waker(&other_waker)));
        assert_eq!(shutdown.shared.waiters().slots.len(), 3, "slot reused");

        shutdown.trigger();
        assert_eq!((wakes(&first), wakes(&second)), (0, 1));
        assert_eq!(wakes(&other), 2, "b and reuse");
        assert_eq!(wakes(&gone), 0);
        assert!(a.poll_fired(&mut Context::from_waker(&second_waker)));
        assert!(b.poll_fired(&mut Context::from_waker(&other_waker)));
        assert!(reuse.poll_fired(&mut Context::from_waker(&other_waker)));
        assert!(
            shutdown.shared.waiters().slots.iter().all(Option::is_none),
            "fired signals hold no waker"
        );
    }

    fn futures_task_noop() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
