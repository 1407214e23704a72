//! [`Clients`]: the registry of connected clients, for broadcast and
//! graceful shutdown.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::client::Client;
use crate::message::{CloseCode, CloseFrame, Message};
use crate::metrics::{HubMetrics, HubStats};

/// Every client connected to one [`Hub`](super::Hub): python-WS's
/// `self.clients`, plus broadcast and graceful shutdown.
///
/// Cheap to clone; every clone is the same registry. A client is in it from
/// just before `on_open` until just before `on_close`.
#[derive(Clone)]
pub struct Clients {
    shared: Arc<Shared>,
}

struct Shared {
    map: Mutex<BTreeMap<u64, Client>>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    /// How many clients are connected, to wait for zero.
    count: watch::Sender<usize>,
    metrics: HubMetrics,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            shared: Arc::new(Shared {
                map: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                count: watch::Sender::new(0),
                metrics: HubMetrics::default(),
            }),
        }
    }
}

impl Clients {
    fn map(&self) -> MutexGuard<'_, BTreeMap<u64, Client>> {
        // Nothing panics while the lock is held; recover all the same.
        self.shared
            .map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn insert(&self, client: Client) {
        let mut map = self.map();
        map.insert(client.id(), client);
        self.shared.count.send_replace(map.len());
    }

    pub(super) fn remove(&self, id: u64) {
        let mut map = self.map();
        if map.remove(&id).is_some() {
            self.shared.count.send_replace(map.len());
        }
    }

    pub(super) fn metrics(&self) -> &HubMetrics {
        &self.shared.metrics
    }

    pub(super) fn stats(&self) -> HubStats {
        let clients = *self.shared.count.borrow();
        self.shared.metrics.snapshot(clients as u64)
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client with this [`id`](Client::id), if connected.
    pub fn get(&self, id: u64) -> Option<Client> {
        self.map().get(&id).cloned()
    }

    /// The connected clients, in connection order (a snapshot).
    pub fn to_vec(&self) -> Vec<Client> {
        self.map().values().cloned().collect()
    }

    /// Queues `msg` for every open client and returns to how many it was
    /// queued. The message is converted once and its payload shared, not
    /// copied; each connection frames (and compresses) it itself.
    ///
    /// Never waits: a client whose queue is full gets the
    /// [`Overflow`](super::Overflow) policy, the others are not held up.
    pub fn broadcast(&self, msg: impl Into<Message>) -> usize {
        self.broadcast_filter(msg.into(), |_| true)
    }

    /// As [`broadcast`](Self::broadcast), to every client but `except`
    /// (typically the sender).
    pub fn broadcast_except(&self, msg: impl Into<Message>, except: &Client) -> usize {
        self.broadcast_filter(msg.into(), |c| c != except)
    }

    fn broadcast_filter(&self, msg: Message, keep: impl Fn(&Client) -> bool) -> usize {
        // Send outside the lock: a send may close a client, which unregisters.
        self.shared.metrics.broadcast();
        let clients = self.to_vec();
        // The payload is shared by every queue: the memory budget counts it
        // once, for as long as any connection holds it.
        let msg = match clients.first() {
            Some(c) => c.shared.charge.share(msg),
            None => msg,
        };
        clients
            .iter()
            .filter(|c| keep(c))
            .filter(|c| c.send_charged(msg.clone(), true).is_ok())
            .count()
    }

    /// Graceful shutdown: closes every client with 1001 Going Away ("server
    /// shutting down"), refuses clients that connect from now on (closed
    /// with 1001 right after their handshake, without callbacks), and waits
    /// until every connection is over or `deadline` passed.
    ///
    /// Returns how many connections were still open at the deadline (0 when
    /// all closed in time); those end on their own within their close
    /// timeout. Stop accepting TCP connections before or after, as suits
    /// the server loop.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.shared.shutting_down.store(true, Ordering::Release);
        for client in self.to_vec() {
            client.request_close(
                CloseFrame::new(CloseCode::AWAY, "server shutting down"),
                true,
            );
        }
        let mut count = self.shared.count.subscribe();
        let all_closed = count.wait_for(|n| *n == 0);
        match tokio::time::timeout(deadline, all_closed).await {
            Ok(_) => 0,
            Err(_) => self.len(),
        }
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("len", &self.len())
            .field("shutting_down", &self.is_shutting_down())
            .finish()
    }
}
