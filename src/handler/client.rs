//! [`Client`]: a handle on one connection, usable from any task.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::HeaderMap;
use tokio::sync::{Notify, mpsc, watch};

use super::hub::Overflow;
use super::registry::Clients;
use crate::budget::QueueCharge;
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};
use crate::service::{RequestHead, UpgradedWebSocket};
use crate::stream::{SentNow, SharedMessage};

/// One connected client: a cheap, cloneable handle that any task may keep
/// and use, python-WS's `client`.
///
/// Sending never waits. A message is written to the socket at once when
/// nothing is queued before it and the socket takes it (so a broadcast
/// costs one write per client, not a task wakeup each); otherwise it joins
/// the client's bounded queue, drained by its connection as fast as the
/// peer reads (see [`Overflow`] for a full queue). After the connection
/// ended, sending fails with [`SendError::Closed`].
#[derive(Clone)]
pub struct Client {
    pub(super) shared: Arc<Shared>,
}

/// A connection as its handles see it.
///
/// `repr(C)`, hot fields first: a broadcast reads `open` and `queued` and
/// locks `socket` on every recipient, so they share the first cache line
/// (rustc's own order put them lines apart: one more miss per recipient).
#[repr(C)]
pub(super) struct Shared {
    /// Cleared when the closing handshake starts or the connection ends.
    pub(super) open: AtomicBool,
    /// Messages in `queue` or on their way into it: a send writes at once
    /// only when this is 0 (read here, not in the channel, which is one
    /// more cache line per recipient of a broadcast).
    pub(super) queued: AtomicUsize,
    /// The connection's WebSocket, driven by its task, which holds the lock
    /// only while it polls; a send writes into it directly when it finds
    /// it free. `None` before the task starts and once it ended.
    pub(super) socket: Mutex<Option<UpgradedWebSocket>>,
    pub(super) id: u64,
    pub(super) head: RequestHead,
    /// Messages with the bytes charged for them in the memory budget.
    pub(super) queue: mpsc::Sender<(Message, usize)>,
    /// Charges queued messages to the connection's memory budget.
    pub(super) charge: QueueCharge,
    pub(super) overflow: Overflow,
    pub(super) clients: Clients,
    /// A close asked for by a handle, taken by the connection.
    pub(super) close_request: Mutex<Option<CloseRequest>>,
    pub(super) wake: Notify,
    /// Becomes true once the connection is over.
    pub(super) closed: watch::Sender<bool>,
    /// Messages dropped because the queue was full.
    pub(super) dropped: AtomicU64,
}

/// A close asked of the connection.
pub(super) struct CloseRequest {
    pub(super) frame: CloseFrame,
    /// Send what is queued before the close frame (not for a client whose
    /// queue overflowed: it does not read anyway).
    pub(super) drain: bool,
}

/// Why a message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed.
    Closed,
    /// The client's queue is full: the message was dropped and, under
    /// [`Overflow::Close`], the client is being closed.
    QueueFull,
    /// A ping payload above 125 bytes (RFC 6455 §5.5).
    PayloadTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the WebSocket connection is closed",
            SendError::QueueFull => "the client's send queue is full",
            SendError::PayloadTooLong => "control frame payloads are limited to 125 bytes",
        })
    }
}

impl std::error::Error for SendError {}

impl Client {
    /// A number that identifies this client for as long as its hub lives,
    /// assigned in connection order.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The path of the handshake request (e.g. `/ws`).
    pub fn path(&self) -> &str {
        self.shared.head.uri.path()
    }

    /// The headers of the handshake request (cookies, `Origin`, ...).
    pub fn headers(&self) -> &HeaderMap {
        &self.shared.head.headers
    }

    /// The whole head of the handshake request: URI with query, headers,
    /// and extensions left by earlier middleware.
    pub fn request(&self) -> &RequestHead {
        &self.shared.head
    }

    /// Every connected client, for broadcasting (python-WS's `self.clients`).
    pub fn clients(&self) -> &Clients {
        &self.shared.clients
    }

    /// Puts this client in `room` (created on its first member) until
    /// [`leave`](Self::leave) or the end of the connection. Returns false
    /// if it was in the room already or its connection has ended.
    ///
    /// ```no_run
    /// # fn f(client: &tower_ws::handler::Client) {
    /// client.join("lobby");
    /// client.clients().to("lobby").broadcast("someone joined the lobby");
    /// # }
    /// ```
    pub fn join(&self, room: &str) -> bool {
        self.shared.clients.join(self, room)
    }

    /// Takes this client out of `room`. Returns false if it was not in it.
    pub fn leave(&self, room: &str) -> bool {
        self.shared.clients.leave(self, room)
    }

    /// The rooms this client is in, in no particular order.
    pub fn rooms(&self) -> Vec<String> {
        self.shared.clients.rooms_of(self)
    }

    /// Whether the connection is open: the handshake completed and no close
    /// frame was sent or received yet.
    pub fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire)
    }

    /// Queues a message for this client without waiting.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once the connection is closing, and
    /// [`SendError::QueueFull`] if the queue is full, in which case the
    /// [`Overflow`] policy was applied.
    pub fn send(&self, msg: impl Into<Message>) -> Result<(), SendError> {
        self.send_charged(msg.into(), false)
    }

    /// Queues a message; its payload is charged to this client's memory
    /// budget unless `shared` (a broadcast payload, charged once).
    pub(super) fn send_charged(&self, msg: Message, shared: bool) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        if let Message::Close(frame) = msg {
            // Closing goes through `close`, so the connection knows.
            let frame = frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NORMAL, ""));
            self.request_close(frame, true);
            return Ok(());
        }
        match self.try_send_now(msg) {
            Some(msg) => self.queue(msg, shared),
            None => {
                self.shared.clients.metrics().written_directly(1);
                Ok(())
            }
        }
    }

    /// Queues `msg` for the connection's task, charging it to the memory
    /// budget (its payload too, unless `shared`).
    fn queue(&self, msg: Message, shared: bool) -> Result<(), SendError> {
        let metrics = self.shared.clients.metrics();
        let charged = QueueCharge::cost(&msg, shared);
        // Counted and charged before it is queued: the connection may take
        // it at once.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.shared.charge.add(charged);
        match self.shared.queue.try_send((msg, charged)) {
            Ok(()) => {
                metrics.queued();
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.charge.remove(charged);
                Err(SendError::Closed)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                self.shared.charge.remove(charged);
                metrics.dropped();
                let _earlier = self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if let Overflow::Close(code) = self.shared.overflow {
                    if self.request_close(CloseFrame::new(code, "send queue full"), false) {
                        metrics.overflow_close();
                        #[cfg(feature = "tracing")]
                        tracing::debug!(
                            client = self.id(),
                            code = code.as_u16(),
                            "slow consumer: send queue full, closing the client"
                        );
                    }
                } else {
                    // The first drop is news; the rest are counted (and
                    // reported when the client leaves).
                    #[cfg(feature = "tracing")]
                    if _earlier == 0 {
                        tracing::debug!(
                            client = self.id(),
                            "slow consumer: send queue full, dropping messages"
                        );
                    } else {
                        tracing::trace!(client = self.id(), "slow consumer: message dropped");
                    }
                }
                Err(SendError::QueueFull)
            }
        }
    }

    /// Sends a broadcast message (see [`send_charged`](Self::send_charged)),
    /// written from the frame encoded once for every recipient where this
    /// connection can take it as it is. `Ok(true)` when it was written at
    /// once: the caller counts those in the hub's metrics, once per
    /// broadcast.
    pub(super) fn send_shared(&self, shared: &SharedMessage) -> Result<bool, SendError> {
        if !self.is_open() {
            return Err(SendError::Closed);
        }
        if matches!(shared.message(), Message::Close(_)) {
            return self
                .send_charged(shared.message().clone(), true)
                .map(|()| false);
        }
        let unsent = match self.idle_socket() {
            Some(mut socket) => match socket.as_mut() {
                Some(ws) => {
                    let sent = ws.try_send_shared_now(shared);
                    self.sent_now(socket, sent)
                }
                None => Some(shared.message().clone()),
            },
            None => Some(shared.message().clone()),
        };
        match unsent {
            Some(msg) => self.queue(msg, true).map(|()| false),
            None => Ok(true),
        }
    }

    /// Writes `msg` straight into the socket when nothing is queued before
    /// it and the connection's task is not polling it; gives it back
    /// otherwise. Per-sender order holds: the queue is empty and the task
    /// has written out everything it took from it.
    fn try_send_now(&self, msg: Message) -> Option<Message> {
        let Some(mut socket) = self.idle_socket() else {
            return Some(msg);
        };
        let Some(ws) = socket.as_mut() else {
            return Some(msg);
        };
        let sent = ws.try_send_now(msg);
        self.sent_now(socket, sent)
    }

    /// The socket, locked, when nothing is queued for it and its task is
    /// not polling it.
    fn idle_socket(&self) -> Option<MutexGuard<'_, Option<UpgradedWebSocket>>> {
        if self.shared.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.shared.socket.try_lock().ok()
    }

    /// What became of a message written at once: `Some` if it was not
    /// sent. A write the socket did not take whole leaves the rest to the
    /// connection's task, woken here (its write waker was replaced).
    fn sent_now(
        &self,
        socket: MutexGuard<'_, Option<UpgradedWebSocket>>,
        sent: SentNow,
    ) -> Option<Message> {
        match sent {
            SentNow::Whole => None,
            SentNow::Partly => {
                drop(socket);
                self.shared.wake.notify_one();
                None
            }
            SentNow::NotNow(msg) => Some(msg),
        }
    }

    /// Queues a text message: python-WS's `write_message(msg)`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn write_message(&self, text: impl Into<Utf8Bytes>) -> Result<(), SendError> {
        self.send(Message::Text(text.into()))
    }

    /// Queues a binary message: python-WS's `write_message(msg, binary=True)`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn write_binary(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send(Message::Binary(data.into()))
    }

    /// Queues a ping; the answer arrives at
    /// [`Handler::on_pong`](super::Handler::on_pong).
    ///
    /// # Errors
    ///
    /// [`SendError::PayloadTooLong`] above 125 bytes, otherwise as
    /// [`send`](Self::send).
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        let payload = payload.into();
        if payload.len() > 125 {
            return Err(SendError::PayloadTooLong);
        }
        self.send(Message::Ping(payload))
    }

    /// Closes the connection: what is already queued is sent, then a close
    /// frame with `code` and `reason`; the returned future completes when
    /// the peer answered and the connection is gone, or after the close
    /// timeout ([`Options::close_timeout`](super::Options::close_timeout),
    /// 1 second by default).
    ///
    /// The close starts when this is called, so a callback that need not
    /// wait may drop the future: `drop(client.close(1000, "bye"))`. Closing
    /// a closed client completes at once; only the first close frame counts.
    pub fn close(
        &self,
        code: impl Into<CloseCode>,
        reason: impl Into<Utf8Bytes>,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.request_close(CloseFrame::new(code, reason), true);
        let mut closed = self.shared.closed.subscribe();
        async move {
            // An error means the connection state is gone: closed too.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    /// Asks the connection to close; false if it was closing already.
    pub(super) fn request_close(&self, frame: CloseFrame, drain: bool) -> bool {
        if !self.shared.open.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut request = self
            .shared
            .close_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        request.get_or_insert(CloseRequest { frame, drain });
        drop(request);
        self.shared.wake.notify_one();
        true
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id())
            .field("path", &self.path())
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Client {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Client {}
