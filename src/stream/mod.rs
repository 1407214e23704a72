//! [`WebSocket`]: the protocol engine driven over an async transport, as a
//! `Stream` of received messages and a `Sink` of messages to send.

mod keepalive;
mod observe;
mod pool;
mod split;

use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use keepalive::{Activity, Due, Keepalive, PING_PAYLOAD};
use observe::Observer;
pub use split::{WebSocketReader, WebSocketWriter};

use crate::budget::{Account, Budget, QueueCharge, RESERVE_MIN};
use crate::config::Config;
use crate::error::{Error, Kind};
use crate::extensions::Extension;
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};
use crate::metrics::{ConnEvent, ServiceMetrics};
use crate::proto::{Connection, Role, WriteBuf};
use crate::shutdown::{Shutdown, Watch};

/// The most a single read asks for beyond `read_buffer_size`, to finish a
/// large frame in fewer reads.
const MAX_READ_AHEAD: usize = 256 << 10;

/// The largest frame header (RFC 6455 §5.2).
const MAX_HEADER_LEN: usize = 14;

/// Up to this many buffers go into one vectored write.
const MAX_IOVECS: usize = 64;

/// The most handed to a multiplexed transport (an HTTP/2 stream) per write.
/// hyper's HTTP/2 stream takes every write at once, whatever the peer's
/// flow-control window, into a buffer of its own (about two per stream):
/// written whole, a large message would sit there, outside this
/// connection's output queue, its write high-water mark and the memory
/// budget. One HTTP/2 DATA frame's worth (the default maximum frame size).
const MULTIPLEXED_WRITE_MAX: usize = 16 << 10;

/// A WebSocket connection over an async transport.
///
/// Read messages through [`Stream`] (`next()` from `futures::StreamExt`) and
/// send them through [`Sink`] (`send()` from `futures::SinkExt`). Pings are
/// answered and close frames replied to as they are read. A normal close is
/// not an error: the stream yields `Message::Close` and then ends.
///
/// Reading is cancel-safe: all partial state lives in the connection, so a
/// `next()` dropped inside `tokio::select!` loses nothing.
///
/// ```no_run
/// use futures_util::{SinkExt, StreamExt};
/// use tower_ws::{Message, WebSocket};
///
/// async fn echo<IO>(mut ws: WebSocket<IO>) -> Result<(), tower_ws::Error>
/// where
///     IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
/// {
///     while let Some(msg) = ws.next().await {
///         match msg? {
///             msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
///             _ => {}
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct WebSocket<IO> {
    inner: Inner<IO>,
}

/// The shared state of a connection: transport, engine and output queue.
#[derive(Debug)]
pub(crate) struct Inner<IO> {
    io: IO,
    conn: Connection,
    out: WriteBuf,
    /// The size of the last message received, to size the next read.
    read_hint: usize,
    /// What only a closing or failed connection needs, made on first use.
    closing: Option<Box<Closing>>,
    /// Our side of TCP is shut down.
    shutdown: bool,
    /// The transport is one stream of a multiplexed connection (HTTP/2):
    /// closing ends our side and waits for the peer's end, in both roles.
    multiplexed: bool,
    /// The stream has ended; nothing more will be read or written.
    done: bool,
    /// The server's graceful-shutdown signal, if one is watched.
    watch: Option<Watch>,
    obs: Observer,
    keepalive: Keepalive,
    /// The reader was told of the fault (see [`Closing::fault`]).
    fault_reported: bool,
    /// A write from outside the task went into the transport, but its
    /// flush did not finish (a TLS stream holds what the socket refused):
    /// the task flushes even with nothing of its own to write.
    flush_owed: bool,
    /// This connection's share of the service's memory budget.
    account: Account,
    /// The size of the large message just delivered: it stays charged
    /// until the application asks for the next one (a hub's callback has
    /// then returned), as the application holds it meanwhile.
    delivered: usize,
}

impl<IO> Drop for Inner<IO> {
    fn drop(&mut self) {
        self.obs.finish(&self.conn);
    }
}

/// What only a closing or failed connection needs: an open one holds none
/// of it (one pointer, not three).
#[derive(Debug, Default)]
struct Closing {
    /// Closing: the deadline for the peer's close frame, then for its EOF.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Going away on the shutdown signal: the deadline for the peer's close
    /// reply.
    going_away: Option<Pin<Box<Sleep>>>,
    /// Why this side ended the connection (keepalive, idle timeout,
    /// overload).
    fault: Option<Kind>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WebSocket<IO> {
    /// Wraps a transport on which the opening handshake already completed,
    /// as the server, with an optional negotiated extension.
    ///
    /// [`WebSocketService`](crate::WebSocketService) calls this for you; use
    /// it directly to serve WebSockets on a transport you upgraded yourself.
    pub fn from_raw(io: IO, config: &Config, extension: Option<Box<dyn Extension>>) -> Self {
        Self::from_raw_with_role(io, Role::Server, config, extension)
    }

    /// Wraps a transport on which the opening handshake already completed,
    /// playing `role`. A client masks every frame with keys from its
    /// [`MaskKeys`](crate::proto::MaskKeys), and closes as RFC 6455 §7.1.1
    /// asks: it sends its close frame and waits (up to the close timeout)
    /// for the server to close the transport first.
    ///
    /// `tower_ws::client` does this for you (feature `client`); use it
    /// directly after a handshake of your own.
    pub fn from_raw_with_role(
        io: IO,
        role: Role,
        config: &Config,
        extension: Option<Box<dyn Extension>>,
    ) -> Self {
        WebSocket {
            inner: Inner::new(io, role, config, extension),
        }
    }

    /// Sends a close frame with `code` and `reason`, waits for the peer's
    /// close frame up to the close timeout, then closes the transport.
    ///
    /// Messages that arrive meanwhile are discarded. Returns an error whose
    /// [`is_timeout`](Error::is_timeout) is true if the peer did not answer
    /// in time (the connection is dropped all the same).
    ///
    /// ```no_run
    /// # async fn f(mut ws: tower_ws::WebSocket<tokio::net::TcpStream>) {
    /// ws.close(tower_ws::CloseCode::AWAY, "server shutting down").await.ok();
    /// # }
    /// ```
    pub async fn close(
        &mut self,
        code: impl Into<CloseCode>,
        reason: impl Into<Utf8Bytes>,
    ) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason);
        poll_fn(|cx| self.inner.poll_close_with(cx, Some(frame.clone()))).await
    }

    /// Closes this WebSocket with 1001 Going Away when `shutdown` is
    /// triggered (see [`Shutdown`]). [`WebSocketService`](crate::WebSocketService)
    /// does this for you with the signal of [`serve`](crate::serve) or of
    /// [`WebSocketService::shutdown`](crate::WebSocketService::shutdown);
    /// call it for WebSockets on transports you upgraded yourself. A second
    /// call replaces the first signal.
    pub fn watch_shutdown(&mut self, shutdown: &Shutdown) {
        self.inner.watch = Some(shutdown.watch());
    }

    /// Splits the connection into a reading and a writing half, to use from
    /// two tasks. Pongs and close replies still go out while only one half is
    /// in use, and either half's operations may be cancelled (a `send` or
    /// `next` dropped by `select!` or `timeout`) without stalling the other:
    /// a message whose send was cancelled after it was queued still goes out.
    pub fn split(self) -> (WebSocketReader<IO>, WebSocketWriter<IO>) {
        split::split(self.inner)
    }

    /// The transport.
    pub fn get_ref(&self) -> &IO {
        &self.inner.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the
    /// WebSocket stream.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.inner.io
    }

    /// Marks the transport as one stream of a multiplexed connection: an
    /// HTTP/2 stream opened with an extended CONNECT (RFC 8441), rather than
    /// a connection of its own.
    ///
    /// Closing then follows RFC 8441 §6: after the closing handshake each
    /// end finishes its side of the stream (END_STREAM) and waits, up to the
    /// close timeout, for the other's, so the stream is never reset under
    /// the last frames. Over TCP the server closes first instead (RFC 6455
    /// §7.1.1). [`WebSocketService`](crate::WebSocketService) and the
    /// client set this for HTTP/2; set it yourself on a stream you upgraded.
    pub fn multiplexed(mut self) -> Self {
        self.inner.multiplexed = true;
        self
    }

    /// Bytes queued for the peer but not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.inner.out.len()
    }

    /// Sends `msg` at once, from outside the task that drives this
    /// connection (a hub's broadcast writes into each socket directly, as
    /// uWebSockets' `publish` does, instead of waking every connection's
    /// task). Only when nothing is waiting to be written before it.
    ///
    /// The write does not wait: what the transport does not take stays
    /// queued ([`SentNow::Partly`]) and the connection's task must be woken
    /// to write it, as its write waker was replaced by a no-op one.
    pub(crate) fn try_send_now(&mut self, msg: Message) -> SentNow {
        let inner = &mut self.inner;
        if !inner.may_send_now() {
            return SentNow::NotNow(msg);
        }
        if inner.start_send(msg).is_err() {
            // Not a message that may be sent (never built by a hub).
            return SentNow::Whole;
        }
        inner.write_now(None)
    }

    /// [`try_send_now`](Self::try_send_now) for a message sent to many
    /// connections: where the connection can take the frame as it is (a
    /// server that does not compress it), the frame encoded once for all
    /// of them is written straight from its shared buffer, with no copy
    /// into this connection's output.
    pub(crate) fn try_send_shared_now(&mut self, shared: &SharedMessage) -> SentNow {
        let inner = &mut self.inner;
        if !inner.may_send_now() {
            return SentNow::NotNow(shared.msg.clone());
        }
        let len = shared.msg.len();
        if !inner.conn.shares_frame_of(len) {
            return self.try_send_now(shared.msg.clone());
        }
        let Some(frame) = shared.frame() else {
            return self.try_send_now(shared.msg.clone());
        };
        if inner.conn.sent_shared(len).is_err() {
            return SentNow::Whole;
        }
        #[cfg(feature = "tracing")]
        tracing::trace!(len, kind = ?msg_kind(&shared.msg), "message sent");
        inner.write_now(Some(frame))
    }

    /// Counts this connection's traffic and close in a service's metrics.
    pub(crate) fn observe(&mut self, metrics: Arc<ServiceMetrics>) {
        self.inner.obs.attach(metrics);
    }

    /// Charges this connection's buffers to a service's memory budget.
    pub(crate) fn attach_budget(&mut self, budget: &Arc<Budget>) {
        self.inner.account.attach(budget);
    }

    /// Where a hub charges the messages queued for this connection.
    pub(crate) fn queue_charge(&mut self) -> QueueCharge {
        self.inner.account.queue_charge()
    }

    /// Overrides the keepalive settings of the `Config` (those given).
    pub(crate) fn configure_keepalive(
        &mut self,
        ping_interval: Option<Duration>,
        pong_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) {
        let default_pong_timeout = self.inner.conn.limits().pong_timeout;
        self.inner.keepalive.configure(
            ping_interval,
            pong_timeout,
            idle_timeout,
            default_pong_timeout,
        );
    }
}

/// A message on its way to many connections, and its frame, encoded on
/// first use: one encoding (and one copy of the payload) per broadcast,
/// not one per recipient.
#[derive(Debug)]
pub(crate) struct SharedMessage {
    msg: Message,
    /// `None` inside: not worth a copy (one recipient), or not a data
    /// message.
    frame: std::cell::OnceCell<Option<Bytes>>,
    /// Where the frame is charged, once, while anything holds it.
    charge: QueueCharge,
}

impl SharedMessage {
    /// `msg` for `recipients` connections, its frame charged to `charge`'s
    /// memory budget: with one recipient, it is not encoded ahead (a copy
    /// of the payload for a single write).
    pub(crate) fn new(msg: Message, recipients: usize, charge: &QueueCharge) -> Self {
        let frame = std::cell::OnceCell::new();
        if recipients < 2 {
            let _ = frame.set(None);
        }
        SharedMessage {
            msg,
            frame,
            charge: charge.clone(),
        }
    }

    pub(crate) fn message(&self) -> &Message {
        &self.msg
    }

    /// The whole unmasked frame of a data message (none for the others).
    fn frame(&self) -> Option<&Bytes> {
        self.frame
            .get_or_init(|| {
                crate::proto::encode_frame(&self.msg).map(|f| self.charge.share_bytes(f))
            })
            .as_ref()
    }
}

/// What [`WebSocket::try_send_now`] did with a message.
#[derive(Debug)]
pub(crate) enum SentNow {
    /// Written to the transport whole.
    Whole,
    /// Queued, partly written or not at all: the connection's task must
    /// be woken to write the rest.
    Partly,
    /// Not sent: something is queued before it, or the connection is
    /// closing. The message is given back.
    NotNow(Message),
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<IO> {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_signal(cx);
        self.inner.poll_next_message(cx)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<IO> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_timers(cx);
        if self.inner.poll_signal(cx) {
            // A task that only writes still gets the close frame on the wire.
            let _ = self.inner.poll_write_out(cx);
        }
        self.inner.poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.inner.start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_timers(cx);
        self.inner.poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_close_with(cx, None)
    }
}

impl<IO> Inner<IO> {
    /// Why this side ended the connection, if it did.
    #[inline]
    fn fault(&self) -> Option<Kind> {
        self.closing.as_ref().and_then(|c| c.fault)
    }

    fn closing(&mut self) -> &mut Closing {
        self.closing.get_or_insert_default()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Inner<IO> {
    fn new(io: IO, role: Role, config: &Config, extension: Option<Box<dyn Extension>>) -> Self {
        Inner {
            io,
            conn: Connection::new(role, config, extension),
            out: WriteBuf::new(),
            read_hint: 0,
            closing: None,
            shutdown: false,
            multiplexed: false,
            done: false,
            watch: None,
            obs: Observer::default(),
            keepalive: Keepalive::new(config),
            fault_reported: false,
            flush_owed: false,
            account: Account::default(),
            delivered: 0,
        }
    }

    /// The memory budget chose this connection to close (it holds the most
    /// while memory is short): its unsent output is dropped (but for the
    /// rest of a frame being written), its input too, and it is failed
    /// with the budget's close code.
    #[inline]
    fn check_evicted(&mut self) {
        if self.fault().is_none() && self.account.is_evicted() {
            self.evicted();
        }
    }

    #[cold]
    fn evicted(&mut self) {
        let _dropped = self.out.discard_unsent();
        #[cfg(feature = "tracing")]
        tracing::info!(
            unsent_bytes_dropped = _dropped,
            code = self.account.close_code().as_u16(),
            "closed for the memory budget: this connection held the most"
        );
        self.fail(Kind::Overloaded(self.account.close_code()));
        self.account.sync(
            self.input_held(false),
            self.out.buffered_bytes(),
            self.obs.sent_total(),
        );
    }

    /// Runs the keepalive and idle timers: queues a ping, or ends the
    /// connection when the peer stopped answering or went idle. A reader
    /// calls this on every poll; a split writer only while the reader is
    /// not waiting (the timers keep one waker, like the transport).
    #[inline]
    pub(crate) fn poll_timers(&mut self, cx: &mut Context<'_>) {
        if self.keepalive.is_active() {
            self.run_timers(cx);
        }
    }

    fn run_timers(&mut self, cx: &mut Context<'_>) {
        if self.conn.close_sent() || self.done {
            return;
        }
        let mut fresh = false;
        loop {
            let activity = Activity {
                bytes: self.obs.received_total(),
                messages: self.conn.traffic().messages_received,
                paused: self.account.is_paused(),
                fresh,
            };
            match self.keepalive.poll(cx, activity) {
                None => return,
                Some(Due::Unread) => {
                    // Judged on what the peer sent, not on when the
                    // application last read: a pong (or message) may wait
                    // in the transport while the application was busy
                    // elsewhere or only sends.
                    self.read_ahead(cx);
                    if self.conn.close_sent() || self.done {
                        // What was read closed or failed the connection.
                        return;
                    }
                    fresh = true;
                }
                Some(Due::Ping) => {
                    let ping = Message::Ping(Bytes::from_static(PING_PAYLOAD));
                    let _ = self.conn.send(ping, &mut self.out);
                }
                Some(Due::PongTimeout) => {
                    self.obs.event(ConnEvent::KeepaliveTimeout);
                    #[cfg(feature = "tracing")]
                    tracing::debug!("keepalive ping unanswered: failing the connection with 1011");
                    self.fail(Kind::KeepaliveTimeout);
                    return;
                }
                Some(Due::Idle) => {
                    self.obs.event(ConnEvent::IdleTimeout);
                    #[cfg(feature = "tracing")]
                    tracing::debug!("no message within the idle timeout: closing with 1001");
                    let frame = CloseFrame::new(CloseCode::AWAY, "idle timeout");
                    let _ = self.conn.send(Message::Close(Some(frame)), &mut self.out);
                    self.closing().fault = Some(Kind::IdleTimeout);
                    return;
                }
            }
        }
    }

    /// Reads what the transport holds, without waiting, and parses it
    /// ahead of the application, as for a split writer: up to
    /// `max_pending_events` messages or `max_message_size` bytes (see
    /// [`Connection::wants_read`]). End of stream and errors are left for
    /// the next read to find.
    fn read_ahead(&mut self, cx: &mut Context<'_>) {
        while self.conn.wants_read() {
            match self.poll_read_some(cx) {
                Poll::Ready(Ok(true)) => self.conn.process_input(&mut self.out),
                _ => return,
            }
        }
    }

    /// Fails the connection for a reason of this side: close frame queued,
    /// buffered input dropped; the reader reports `kind` next.
    fn fail(&mut self, kind: Kind) {
        self.conn.fail_with(&Error::new(kind), &mut self.out);
        self.closing().fault = Some(kind);
    }

    /// Bookkeeping at the end of every poll: a connection that is about to
    /// wait folds its counters.
    ///
    /// The memory budget is synced here when the connection waits or just
    /// handed a message over (what it holds then); a busy connection's
    /// other polls add to its buffers only up to the write high-water mark
    /// and one read, which the next wait or read syncs.
    fn after_poll(&mut self, cx: &Context<'_>, pending: bool, reader: bool) {
        // Also when something is charged: a connection whose output went
        // out since it last waited must not stay charged (or marked as
        // stuck) while the application is busy elsewhere.
        if pending || self.delivered != 0 || self.account.has_charges() {
            self.account.sync(
                self.input_held(pending),
                self.out.buffered_bytes(),
                self.obs.sent_total(),
            );
        }
        if pending {
            self.obs.fold(&self.conn);
            self.account.register_waker(cx, reader);
        } else {
            self.obs.fold_if_due(&self.conn);
        }
    }

    /// Polls the shutdown signal; once it fires, starts closing with 1001.
    /// True when it fired just now.
    #[inline]
    fn poll_signal(&mut self, cx: &mut Context<'_>) -> bool {
        let fired = self
            .watch
            .as_mut()
            .is_some_and(|watch| watch.signal.poll_fired(cx));
        if fired {
            self.go_away();
        }
        fired
    }

    /// Queues a close frame with 1001 Going Away, "server shutting down"
    /// (RFC 6455 §7.4.1: an endpoint going away, such as a server going
    /// down), and gives the peer the close timeout to answer it.
    pub(crate) fn go_away(&mut self) {
        if self.conn.close_sent() || self.done {
            return;
        }
        let frame = CloseFrame::new(CloseCode::AWAY, "server shutting down");
        if self
            .conn
            .send(Message::Close(Some(frame)), &mut self.out)
            .is_ok()
        {
            let timeout = self.conn.limits().close_timeout;
            self.closing().going_away = Some(Box::pin(tokio::time::sleep(timeout)));
        }
    }

    /// Writes out everything queued, then flushes the transport.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.out.has_remaining() {
            // One chunk goes with `write` (`send` on a socket), which skips
            // the VFS layer `writev` goes through: measurably cheaper per
            // small frame in a broadcast to thousands of sockets.
            let n = if self.io.is_write_vectored() && self.out.chunk().len() < self.out.len() {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let count = self.out.chunks_vectored(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))
            } else {
                let chunk = self.out.chunk();
                let chunk = &chunk[..chunk.len().min(self.write_max())];
                ready!(Pin::new(&mut self.io).poll_write(cx, chunk))
            }
            .map_err(Error::io)?;
            if n == 0 {
                return Poll::Ready(Err(Error::io(std::io::ErrorKind::WriteZero.into())));
            }
            self.obs.wrote(n);
            self.out.advance(n);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(Error::io)?;
        self.flush_owed = false;
        Poll::Ready(Ok(()))
    }

    /// The most handed to the transport per write.
    #[inline]
    fn write_max(&self) -> usize {
        if self.multiplexed {
            MULTIPLEXED_WRITE_MAX
        } else {
            usize::MAX
        }
    }

    /// Reads once from the transport into the engine. `Ok(false)` is EOF.
    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        // While the memory budget is exhausted, nothing more is read: the
        // peer feels TCP backpressure.
        let input = self.input_held(true);
        let (remaining, received) = (self.conn.frame_remaining(), self.obs.received_total());
        ready!(
            self.account
                .poll_read_permit(cx, input, remaining, received)
        );
        let result = self.read_some(cx);
        if let Poll::Ready(Ok(true)) = result {
            self.account.sync(
                self.input_held(false),
                self.out.buffered_bytes(),
                self.obs.sent_total(),
            );
        }
        result
    }

    /// What the connection holds on the input side, counting the rest of
    /// the frame being received when it is large (the memory budget admits
    /// large frames whole) and a large message the application is handling.
    ///
    /// A read buffer of the configured read size (or smaller) counts whole
    /// only while the connection `waiting` keeps it (an unfinished frame);
    /// while the connection works it counts by its content, since it goes
    /// back to the thread's pool once emptied. So an exchange of small
    /// messages never moves the counter every thread shares, and what goes
    /// uncharged is at most that one buffer (a larger one, sized for large
    /// messages, always counts whole).
    fn input_held(&self, waiting: bool) -> usize {
        let remaining = self.conn.frame_remaining();
        let large = remaining >= RESERVE_MIN;
        // The part of the frame the read buffer has no room for yet.
        let rest = if large {
            remaining.saturating_sub(self.conn.read_spare())
        } else {
            0
        };
        let spare = if waiting || self.conn.read_capacity() > self.conn.limits().read_buffer_size {
            0
        } else {
            self.conn.read_spare()
        };
        self.conn.buffered_bytes() - spare + rest + self.delivered
    }

    fn read_some(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        // Room for the rest of a large frame (up to a cap: a declared length
        // is not trusted with memory, unless a memory budget admitted the
        // frame whole, when it is allocated once), or for a message as large
        // as the last one, so a message usually arrives in one read. When
        // the buffer is empty and no message still uses it, `reserve` takes
        // it back from the start without copying.
        let remaining = self.conn.frame_remaining();
        let frame = if self.account.admits_whole_frames() {
            remaining
        } else {
            remaining.min(MAX_READ_AHEAD)
        };
        let want = self
            .conn
            .limits()
            .read_buffer_size
            .max(self.read_hint)
            .max(frame);
        let buf = self.conn.read_buf();
        // Whether `buf` was taken for this read (and is given back whole if
        // nothing arrives).
        let whole = buf.capacity() == 0;
        if whole {
            if remaining == 0 && want > pool::POOLED_MAX_CAPACITY {
                // Between frames, after a large message: a buffer for one as
                // large, so it arrives in one read. (The rest of a frame in
                // progress has the budget's terms: `read_first` then a
                // buffer of exactly the size it admits.)
                *buf = pool::large(want);
            } else {
                match pool::take(want) {
                    Some(pooled) => *buf = pooled,
                    None => return self.read_first(cx),
                }
            }
        }
        let buf = self.conn.read_buf();
        // Room for the rest of the frame, or for `want` bytes counted with
        // what the buffer holds already (less a header it may have taken
        // off its front): a buffer of the wanted size is not grown for a
        // frame begun in it.
        let needed = frame.max(want.saturating_sub(buf.len() + MAX_HEADER_LEN));
        if buf.capacity() - buf.len() < needed && !buf.try_reclaim(needed) {
            // A message split off this buffer still holds its start: a
            // buffer of the size wanted, with what this one holds. (What
            // `reserve` makes is twice the old allocation: a read buffer
            // over the configured size counts whole in the memory budget,
            // and would move its shared counter on every message.)
            let size = want.max(buf.len() + needed);
            if size > pool::POOLED_MAX_CAPACITY {
                // A large frame: grown geometrically (counted whole in the
                // budget anyway), so a frame arriving in many reads is not
                // copied whole on each one.
                buf.reserve(needed);
            } else {
                let mut fresh = pool::take(size).unwrap_or_else(|| BytesMut::with_capacity(size));
                fresh.extend_from_slice(buf);
                *buf = fresh;
            }
        }
        let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, buf);
        let buf = self.conn.read_buf();
        if polled.is_pending() && buf.is_empty() {
            // Idle between frames: the buffer goes back to this thread's
            // pool, so a waiting connection holds none.
            let buf = std::mem::take(buf);
            if whole {
                pool::give_whole(buf);
            } else {
                pool::give(buf);
            }
        }
        let n = ready!(polled).map_err(Error::io)?;
        self.obs.read(n);
        Poll::Ready(Ok(n > 0))
    }

    /// Reads with no buffer of its own and none pooled: waits for the first
    /// bytes with a small one on the stack, so thousands of connections that
    /// wait cost little memory, then allocates one.
    fn read_first(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        let mut first = [0u8; 1024];
        let mut first = tokio::io::ReadBuf::new(&mut first);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut first)).map_err(Error::io)?;
        if first.filled().is_empty() {
            return Poll::Ready(Ok(false));
        }
        self.obs.read(first.filled().len());
        let size = self.conn.limits().read_buffer_size;
        let buf = self.conn.read_buf();
        buf.reserve(size);
        buf.extend_from_slice(first.filled());
        Poll::Ready(Ok(true))
    }

    /// The next message. Pending output (pongs, close replies, messages fed
    /// without a flush) is written before waiting for input.
    ///
    /// After a 1001 sent on the shutdown signal, a peer that does not answer
    /// within the close timeout ends the stream with a timeout error.
    pub(crate) fn poll_next_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        let result = self.poll_next_bounded(cx);
        self.after_poll(cx, result.is_pending(), true);
        result
    }

    /// The next message, or a timeout error once a 1001 sent on the
    /// shutdown signal went unanswered for the close timeout.
    fn poll_next_bounded(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        let next = self.next_message(cx);
        let Some(closing) = &mut self.closing else {
            return next;
        };
        if closing.going_away.is_some() && self.conn.close_received() {
            // The peer answered the 1001: what is left of the closing
            // handshake (its EOF, or END_STREAM on HTTP/2) has the closing
            // handshake's own deadline, and ending there is no timeout.
            closing.going_away = None;
        }
        if next.is_pending() {
            if let Some(deadline) = &mut closing.going_away {
                if deadline.as_mut().poll(cx).is_ready() {
                    closing.going_away = None;
                    let timeout = self.terminate(Error::new(Kind::CloseTimeout));
                    return Poll::Ready(Some(Err(timeout)));
                }
            }
        }
        next
    }

    fn next_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        // The application is back for more: the last message is its own.
        self.delivered = 0;
        self.check_evicted();
        self.poll_timers(cx);
        if let (Some(kind), false) = (self.fault(), self.fault_reported) {
            self.fault_reported = true;
            // Get the close frame on its way even if the application drops
            // the connection on this error.
            let _ = self.poll_write_out(cx);
            return Poll::Ready(Some(Err(Error::new(kind))));
        }
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if let Some(event) = self.conn.poll_event(&mut self.out) {
                match &event {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        self.read_hint = (msg.len() + MAX_HEADER_LEN).min(MAX_READ_AHEAD);
                        if msg.len() >= RESERVE_MIN {
                            self.delivered = msg.len();
                        }
                        #[cfg(feature = "tracing")]
                        tracing::trace!(len = msg.len(), text = msg.is_text(), "message received");
                    }
                    Err(e) if e.is_protocol() || e.is_invalid_payload() || e.is_capacity() => {
                        self.obs.event(ConnEvent::ProtocolError);
                        #[cfg(feature = "tracing")]
                        tracing::debug!(
                            error = %e,
                            code = e.close_code().map(|c| c.as_u16()),
                            "the peer broke the protocol: failing the connection"
                        );
                    }
                    _ => {}
                }
                if self.conn.is_closed() {
                    // Get the close reply (or failure close) on the wire even if
                    // the application stops reading after this event.
                    let _ = self.poll_write_out(cx);
                }
                return Poll::Ready(Some(event));
            }
            if self.conn.is_closed() {
                let result = ready!(self.poll_shutdown(cx));
                self.done = true;
                return match result {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                };
            }
            if !self.out.is_empty() || self.flush_owed {
                // Write coalescing: what the application fed without flushing
                // leaves now that the input is exhausted.
                match self.poll_write_out(cx) {
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.terminate(e)))),
                    Poll::Pending
                        if self.out.len() >= self.conn.limits().write_buffer_high_water =>
                    {
                        // The peer does not read: stop reading too, so pongs to
                        // its pings cannot pile up without bound.
                        return Poll::Pending;
                    }
                    _ => {}
                }
            }
            match ready!(self.poll_read_some(cx)) {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return Poll::Ready(self.conn.receive_eof().map(Err));
                }
                Err(e) => return Poll::Ready(Some(Err(self.terminate(e)))),
            }
        }
    }

    /// A transport error ends the connection.
    fn terminate(&mut self, e: Error) -> Error {
        self.conn.receive_eof();
        self.done = true;
        e
    }

    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let result = self.ready_to_send(cx);
        self.after_poll(cx, result.is_pending(), false);
        result
    }

    fn ready_to_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.check_evicted();
        if let Some(kind) = self.fault() {
            return Poll::Ready(Err(Error::new(kind)));
        }
        if self.conn.close_sent() || self.done {
            return Poll::Ready(Err(Error::closed()));
        }
        if self.out.len() >= self.conn.limits().write_buffer_high_water {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Whether a send from outside the connection's task may write at
    /// once: nothing waits to be written before it and the connection may
    /// still send.
    fn may_send_now(&self) -> bool {
        self.out.is_empty()
            && self.fault().is_none()
            && !self.done
            && !self.shutdown
            && !self.conn.close_sent()
    }

    /// Writes, for a send from outside the connection's task, `frame` (a
    /// shared frame, straight from its buffer) and then what is queued,
    /// without waiting. The rest of a frame the transport did not take is
    /// queued for the connection's task.
    fn write_now(&mut self, frame: Option<&Bytes>) -> SentNow {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut written = 0;
        let result = {
            let write = poll_fn(|cx| {
                if let Some(frame) = frame {
                    while written < frame.len() {
                        let end = written + (frame.len() - written).min(self.write_max());
                        let n = ready!(Pin::new(&mut self.io).poll_write(cx, &frame[written..end]))
                            .map_err(Error::io)?;
                        if n == 0 {
                            return Poll::Ready(Err(Error::io(
                                std::io::ErrorKind::WriteZero.into(),
                            )));
                        }
                        self.obs.wrote(n);
                        written += n;
                    }
                }
                self.poll_write_out(cx)
            });
            // Outside tokio's cooperative budget, as a `try_write` would
            // be: a broadcast is one bounded pass over the recipients, and
            // a budget spent after ~128 writes would turn every later write
            // into a wakeup of that connection's task, the cost this path
            // avoids.
            let mut write = std::pin::pin!(tokio::task::coop::unconstrained(write));
            write.as_mut().poll(&mut cx)
        };
        match frame {
            // Not a byte of it went: a frame like any other.
            Some(frame) if written == 0 => self.out.push_encoded(frame.clone()),
            Some(frame) if written < frame.len() => {
                self.out.push_frame_rest(frame.slice(written..));
            }
            _ => {}
        }
        match result {
            Poll::Ready(Ok(())) => SentNow::Whole,
            Poll::Pending => {
                self.flush_owed = true;
                SentNow::Partly
            }
            // An error shows again to the connection's own task.
            Poll::Ready(Err(_)) => SentNow::Partly,
        }
    }

    pub(crate) fn start_send(&mut self, msg: Message) -> Result<(), Error> {
        #[cfg(feature = "tracing")]
        tracing::trace!(len = msg.len(), kind = ?msg_kind(&msg), "message sent");
        self.conn.send(msg, &mut self.out)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.shutdown {
            return Poll::Ready(Ok(()));
        }
        self.check_evicted();
        if let Some(kind) = self.fault().filter(|k| *k != Kind::IdleTimeout) {
            // Failed: what is left unsent goes out only while the reader
            // shuts the connection down (bounded by the close timeout).
            return Poll::Ready(Err(Error::new(kind)));
        }
        let result = self.poll_write_out(cx);
        self.after_poll(cx, result.is_pending(), false);
        result
    }

    /// Parses input ahead of the application so pings are answered while it
    /// only writes (split writer). Reads without blocking.
    pub(crate) fn drive_input(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        loop {
            self.conn.process_input(&mut self.out);
            if !self.conn.wants_read() || self.done {
                return Ok(());
            }
            match self.poll_read_some(cx) {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => {
                    if let Some(e) = self.conn.receive_eof() {
                        self.conn.defer_error(e);
                    }
                    return Ok(());
                }
                Poll::Ready(Err(e)) => return Err(self.terminate(e)),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Starts (if needed) and completes the closing handshake, then closes
    /// the transport. Data arriving meanwhile is discarded.
    pub(crate) fn poll_close_with(
        &mut self,
        cx: &mut Context<'_>,
        frame: Option<CloseFrame>,
    ) -> Poll<Result<(), Error>> {
        if !self.conn.close_sent() && !self.done {
            let frame = frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NORMAL, ""));
            self.conn.send(Message::Close(Some(frame)), &mut self.out)?;
        }
        let mut timed_out = false;
        while !self.conn.is_closed() && !self.done {
            let timeout = self.conn.limits().close_timeout;
            let closing = self.closing();
            if closing.deadline.is_none() {
                closing.deadline = Some(Box::pin(tokio::time::sleep(timeout)));
            }
            match self.poll_next_message(cx) {
                Poll::Ready(Some(Ok(_))) => {}
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => break,
                Poll::Pending => {
                    let closing = self.closing.as_mut().expect("set above");
                    let deadline = closing.deadline.as_mut().expect("set above");
                    ready!(deadline.as_mut().poll(cx));
                    timed_out = true;
                    break;
                }
            }
        }
        ready!(self.poll_shutdown(cx))?;
        self.done = true;
        if timed_out {
            Poll::Ready(Err(Error::new(Kind::CloseTimeout)))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// Closes the transport once the engine is done: flush, then shut down
    /// our side. RFC 6455 §7.1.1: the server closes TCP first, so a server
    /// shuts down at once and, when it failed the connection, drains the
    /// peer's input until it closes (or the close timeout passes) so its close
    /// frame is not lost to a TCP reset; a client waits for the server to
    /// close (up to the close timeout) before shutting down.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let client = self.conn.is_client();
        if !self.shutdown {
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.shutdown = true;
                    // After both close frames, a transport that fails (an
                    // HTTP/2 stream the peer already reset) loses nothing.
                    if self.conn.close_received() && self.conn.close_sent() {
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    // A peer that does not read cannot hold the connection
                    // open: past the close timeout, drop what is unsent.
                    ready!(self.poll_deadline(cx));
                    self.shutdown = true;
                    return Poll::Ready(Ok(()));
                }
            }
            if client && !self.multiplexed {
                // RFC 6455 §7.1.1: over TCP the server closes first.
                ready!(self.poll_drain(cx));
            }
            // A failed shutdown means the peer is gone: nothing left to do.
            // One that does not finish is bounded by the close timeout too:
            // hyper's HTTP/2 stream ends only once it has sent what it took,
            // which needs flow-control credit from the peer, and a peer that
            // does not read gives none (nor does the write before notice:
            // hyper takes writes before it sends them).
            if Pin::new(&mut self.io).poll_shutdown(cx).is_pending() {
                ready!(self.poll_deadline(cx));
                self.shutdown = true;
                return Poll::Ready(Ok(()));
            }
            self.shutdown = true;
        }
        if self.multiplexed || (!client && !self.conn.close_received()) {
            // RFC 8441 §6: an HTTP/2 stream ends with END_STREAM both ways;
            // dropping it before the peer's would reset it under the last
            // frames.
            ready!(self.poll_drain(cx));
        }
        Poll::Ready(Ok(()))
    }

    /// Discards input until the peer closes the transport or the close
    /// timeout passes.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.poll_deadline(cx).is_ready() {
            return Poll::Ready(());
        }
        let size = self.conn.limits().read_buffer_size;
        loop {
            let buf = self.conn.read_buf();
            buf.clear();
            buf.reserve(size);
            match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut self.io),
                cx,
                buf
            )) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.conn.read_buf().clear();
        Poll::Ready(())
    }

    /// The close timeout, started on first use.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let close_timeout = self.conn.limits().close_timeout;
        self.closing()
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(close_timeout)))
            .as_mut()
            .poll(cx)
    }
}

#[cfg(feature = "tracing")]
fn msg_kind(msg: &Message) -> &'static str {
    match msg {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
    }
}

use std::future::Future;

#[cfg(test)]
mod budget_tests {
    use std::sync::Arc;
    use std::task::{Context, Waker};

    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;
    use crate::budget::{Budget, MemoryBudget};

    /// A server WebSocket on `io`, charged to a budget of its own (1 GiB).
    fn budgeted(io: DuplexStream) -> (WebSocket<DuplexStream>, Arc<Budget>) {
        let mut ws = WebSocket::from_raw(io, &Config::default(), None);
        let budget = Arc::new(Budget::new(Some(MemoryBudget::new(1 << 30))));
        ws.attach_budget(&budget);
        (ws, budget)
    }

    /// A send that had to wait is charged while it waits; once it is all
    /// written, the charge goes even though the connection does not wait
    /// again (a hub callback busy elsewhere, a task that only writes).
    /// Otherwise the budget would count, and could close the connection
    /// for, output it no longer holds.
    #[tokio::test]
    async fn output_written_out_is_no_longer_charged() {
        let (ours, mut theirs) = tokio::io::duplex(16 << 10);
        let (mut ws, budget) = budgeted(ours);
        const LEN: usize = 200 << 10;
        ws.feed(Message::binary(vec![7u8; LEN])).await.unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut ws).poll_flush(&mut cx).is_pending());
        assert!(
            budget.used() >= 128 << 10,
            "waiting with {} B unsent, charged {}",
            LEN,
            budget.used()
        );
        let reader = tokio::spawn(async move {
            let mut frame = vec![0u8; LEN + 10];
            theirs.read_exact(&mut frame).await.unwrap();
            theirs
        });
        ws.flush().await.unwrap();
        let _theirs = reader.await.unwrap();
        assert_eq!(budget.used(), 0, "written out, still charged");
    }

    fn masked(payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![0x82];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    /// A read buffer grown for large messages stays charged while the
    /// application handles a small one: only a buffer of the configured
    /// read size goes uncharged then (a peer cannot hold 64 KiB per
    /// connection uncounted by sending one large message, then small ones).
    #[tokio::test]
    async fn a_grown_read_buffer_stays_charged_while_the_application_is_busy() {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;

        let (ours, mut theirs) = tokio::io::duplex(256 << 10);
        let (mut ws, budget) = budgeted(ours);
        theirs.write_all(&masked(&[5u8; 60 << 10])).await.unwrap();
        let large = ws.next().await.unwrap().unwrap();
        assert_eq!(large.len(), 60 << 10);
        drop(large);
        theirs.write_all(&masked(&[6u8; 20])).await.unwrap();
        let small = ws.next().await.unwrap().unwrap();
        assert_eq!(small.len(), 20);
        // The application now holds the small message and is busy.
        assert!(
            budget.used() >= 56 << 10,
            "a read buffer sized for 60 KiB messages is charged {} B",
            budget.used()
        );
    }
}

#[cfg(test)]
mod shared_send_tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;

    fn server(io: DuplexStream, config: &Config) -> WebSocket<DuplexStream> {
        WebSocket::from_raw(io, config, None)
    }

    /// A broadcast's frame goes out as the one buffer encoded for every
    /// recipient, and counts as one message of its payload's size.
    #[tokio::test]
    async fn a_shared_frame_is_written_whole_and_counted_as_its_payload() {
        let (ours, mut theirs) = tokio::io::duplex(64 << 10);
        let mut ws = server(ours, &Config::default());
        let shared = SharedMessage::new(Message::text("hello"), 2, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&shared), SentNow::Whole));
        assert!(matches!(ws.try_send_shared_now(&shared), SentNow::Whole));
        let mut wire = [0u8; 14];
        theirs.read_exact(&mut wire).await.unwrap();
        assert_eq!(&wire, b"\x81\x05hello\x81\x05hello");
        assert_eq!(ws.inner.conn.traffic().messages_sent, 2);
        assert_eq!(ws.inner.conn.traffic().bytes_sent, 10);
        assert_eq!(ws.inner.obs.sent_total(), 14);
        // For one recipient the payload is not copied into a frame ahead.
        let single = SharedMessage::new(Message::text("solo"), 1, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&single), SentNow::Whole));
        assert_eq!(single.frame.get(), Some(&None));
        let mut wire = [0u8; 6];
        theirs.read_exact(&mut wire).await.unwrap();
        assert_eq!(&wire, b"\x81\x04solo");
    }

    /// What the transport does not take of a shared frame is written by
    /// the connection before anything sent after it, and the frame is
    /// whole on the wire.
    #[tokio::test]
    async fn the_rest_of_a_shared_frame_goes_out_before_later_messages() {
        let (ours, mut theirs) = tokio::io::duplex(1000);
        let mut ws = server(ours, &Config::default());
        let big = vec![9u8; 5000];
        let shared = SharedMessage::new(Message::binary(big.clone()), 2, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&shared), SentNow::Partly));
        assert!(ws.buffered_amount() > 0 && ws.buffered_amount() < 5004);
        // Nothing overtakes it: a second broadcast is given back.
        let again = SharedMessage::new(Message::text("late"), 2, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&again), SentNow::NotNow(_)));
        let reader = tokio::spawn(async move {
            let mut wire = vec![0u8; 4 + 5000 + 6];
            theirs.read_exact(&mut wire).await.unwrap();
            wire
        });
        ws.send(Message::text("late")).await.unwrap();
        let wire = reader.await.unwrap();
        assert_eq!(&wire[..4], &[0x82, 126, 0x13, 0x88]);
        assert_eq!(&wire[4..5004], &big[..]);
        assert_eq!(&wire[5004..], b"\x81\x04late");
    }

    /// A transport that holds what it is given until flushed, and whose
    /// flush waits while `blocked` (a TLS stream whose socket is full).
    struct HoldsUntilFlushed {
        held: Vec<u8>,
        blocked: bool,
        inner: DuplexStream,
    }

    impl tokio::io::AsyncRead for HoldsUntilFlushed {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for HoldsUntilFlushed {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            if self.blocked {
                return Poll::Pending;
            }
            let this = &mut *self;
            while !this.held.is_empty() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
                this.held.drain(..n);
            }
            Pin::new(&mut this.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A write from outside the task that the transport took but could not
    /// flush is flushed by the connection's task when it next runs, though
    /// it has nothing of its own to write.
    #[tokio::test]
    async fn an_unfinished_flush_is_finished_by_the_connections_task() {
        let (ours, mut theirs) = tokio::io::duplex(64 << 10);
        let io = HoldsUntilFlushed {
            held: Vec::new(),
            blocked: true,
            inner: ours,
        };
        let mut ws = WebSocket::from_raw(io, &Config::default(), None);
        let shared = SharedMessage::new(Message::text("hello"), 2, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&shared), SentNow::Partly));
        assert_eq!(ws.buffered_amount(), 0, "the transport took it all");
        ws.inner.io.blocked = false;
        // The task wakes (the hub notifies it) and polls for input.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut ws).poll_next(&mut cx).is_pending());
        let mut wire = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(5), theirs.read_exact(&mut wire))
            .await
            .expect("the frame was never flushed")
            .unwrap();
        assert_eq!(&wire, b"\x81\x05hello");
    }

    /// A broadcast's frame counts in the memory budget, once, while
    /// anything holds it.
    #[tokio::test]
    async fn a_shared_frame_is_charged_once_while_held() {
        let (ours, _theirs) = tokio::io::duplex(64 << 10);
        let mut ws = server(ours, &Config::default());
        let budget = Arc::new(crate::budget::Budget::new(Some(crate::MemoryBudget::new(
            1 << 30,
        ))));
        ws.attach_budget(&budget);
        let charge = ws.queue_charge();
        let shared = SharedMessage::new(Message::binary(vec![0u8; 40 << 10]), 2, &charge);
        let frame = shared.frame().unwrap().clone();
        assert_eq!(budget.used(), frame.len());
        drop(shared);
        assert_eq!(budget.used(), frame.len(), "still held");
        drop(frame);
        assert_eq!(budget.used(), 0);
    }

    /// A connection that would fragment the message (its `out_frame_size`
    /// is smaller) sends its own frames, not the shared one.
    #[tokio::test]
    async fn a_connection_that_fragments_sends_its_own_frames() {
        let (ours, theirs) = tokio::io::duplex(64 << 10);
        let config = Config::default().out_frame_size(1000);
        let mut ws = server(ours, &config);
        let shared =
            SharedMessage::new(Message::binary(vec![1u8; 1500]), 2, &QueueCharge::default());
        assert!(matches!(ws.try_send_shared_now(&shared), SentNow::Whole));
        // Two frames, 1000 and 500 bytes, each with a 4-byte header (one
        // shared frame would be 4 + 1500).
        assert_eq!(ws.inner.obs.sent_total(), 4 + 1000 + 4 + 500);
        let keys = crate::proto::MaskKeys::new(|| [1, 2, 3, 4]);
        let mut peer =
            WebSocket::from_raw_with_role(theirs, Role::Client(keys), &Config::default(), None);
        let msg = peer.next().await.unwrap().unwrap();
        assert_eq!(msg, Message::binary(vec![1u8; 1500]));
    }
}

#[cfg(test)]
mod read_tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use futures_util::StreamExt;

    use super::*;

    /// A transport that hands out queued chunks, one read at most each, and
    /// records what every read asked for and got.
    #[derive(Default)]
    struct Chunks {
        queued: VecDeque<Vec<u8>>,
        /// (room offered, bytes given) per read that found data.
        reads: Vec<(usize, usize)>,
        waker: Option<Waker>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let Some(chunk) = self.queued.front_mut() else {
                self.waker = Some(cx.waker().clone());
                return Poll::Pending;
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.queued.pop_front();
            }
            let room = buf.capacity();
            self.reads.push((room, n));
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn masked(payload: &[u8]) -> Vec<u8> {
        let key = [9, 8, 7, 6];
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    /// One large message after another, each arriving while the connection
    /// waits with nothing buffered (an echo, a request and its answer):
    /// each is read with one read into a buffer with room to spare, not a
    /// small first read and then the rest (two system calls), and not a
    /// read that fills the buffer exactly (which leaves the socket marked
    /// readable, so the next read finds nothing). Between messages the
    /// connection holds no buffer.
    #[tokio::test]
    async fn large_messages_in_a_row_are_read_in_one_read_each() {
        const LEN: usize = 64 << 10;
        let mut ws = WebSocket::from_raw(Chunks::default(), &Config::default(), None);
        for round in 0..4u8 {
            let mut cx = Context::from_waker(Waker::noop());
            assert!(ws.poll_next_unpin(&mut cx).is_pending());
            assert_eq!(
                ws.inner.conn.read_capacity(),
                0,
                "a waiting connection holds a buffer"
            );
            let frame = masked(&vec![round; LEN]);
            let frame_len = frame.len();
            ws.inner.io.queued.push_back(frame);
            ws.inner.io.reads.clear();
            let msg = ws.next().await.unwrap().unwrap();
            assert_eq!(msg.len(), LEN);
            assert!(msg.as_payload().iter().all(|&b| b == round));
            let reads = &ws.inner.io.reads;
            if round > 0 {
                assert_eq!(reads.len(), 1, "round {round}: reads {reads:?}");
                assert!(
                    reads[0].0 > frame_len,
                    "round {round}: a read filled the buffer: {reads:?}"
                );
            }
        }
    }

    /// A frame larger than `MAX_READ_AHEAD`, with no memory budget that
    /// admits it whole, arriving in many reads of 16 KiB: the read buffer
    /// grows geometrically, so what it holds is copied a bounded number of
    /// times in all, not once per read (quadratic in the frame's size).
    #[tokio::test]
    async fn a_large_frame_in_many_reads_is_not_copied_on_every_read() {
        const LEN: usize = 4 << 20;
        const CHUNK: usize = 16 << 10;
        let mut ws = WebSocket::from_raw(Chunks::default(), &Config::default(), None);
        let frame = masked(&vec![7u8; LEN]);
        let mut cx = Context::from_waker(Waker::noop());
        let (mut copied, mut copies, mut last) = (0usize, 0usize, None::<(usize, usize)>);
        let mut received = None;
        for chunk in frame.chunks(CHUNK) {
            ws.inner.io.queued.push_back(chunk.to_vec());
            if let Poll::Ready(msg) = ws.poll_next_unpin(&mut cx) {
                received = Some(msg.unwrap().unwrap());
                break;
            }
            let buf = ws.inner.conn.read_buf();
            let at = buf.as_ptr() as usize;
            if let Some((was, len)) = last {
                if was != at {
                    copied += len;
                    copies += 1;
                }
            }
            last = Some((at, buf.len()));
        }
        let msg = received.expect("the message");
        assert_eq!(msg.len(), LEN);
        assert!(msg.as_payload().iter().all(|&b| b == 7));
        assert!(
            copied <= 2 * LEN,
            "{copied} B copied in {copies} moves of the read buffer for a {LEN} B frame"
        );
    }

    /// Messages of 1 KiB, each arriving in two reads (its first 1,024 bytes,
    /// then the rest) while the application still holds earlier ones, so no
    /// buffer can be taken back from its start: the read buffer keeps the
    /// configured size, so while the connection works it counts by its
    /// content, and the memory budget's shared counter never moves. (It
    /// grew to twice the size at the first such frame, then every message
    /// charged and released a granule of it.)
    #[tokio::test]
    async fn a_frame_begun_in_the_read_buffer_does_not_grow_it() {
        let budget = Arc::new(Budget::default());
        let config = Config::default();
        let size = config.limits.read_buffer_size;
        let mut ws = WebSocket::from_raw(Chunks::default(), &config, None);
        ws.attach_budget(&budget);
        let mut held = VecDeque::new();
        for round in 0..20u8 {
            let frame = masked(&[round; 1024]);
            let (first, rest) = frame.split_at(1024);
            ws.inner.io.queued.push_back(first.to_vec());
            ws.inner.io.queued.push_back(rest.to_vec());
            let msg = ws.next().await.unwrap().unwrap();
            assert_eq!(msg.len(), 1024);
            let capacity = ws.inner.conn.read_capacity();
            assert!(
                capacity <= size,
                "round {round}: a read buffer of {capacity} B, more than {size}"
            );
            assert_eq!(budget.used(), 0, "round {round}: charged while working");
            held.push_back(msg);
            if held.len() > 2 {
                held.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// Most of what an idle connection holds is its task, and most of the
    /// task is the WebSocket; tokio allocates tasks in steps of 128 bytes
    /// (`tests/idle_memory.rs` measures the whole). What an open connection
    /// rarely needs is boxed or folded, and what every connection of a
    /// configuration reads is shared: the limits (one allocation per
    /// `Config`), the close frames (made at the first close), the closing
    /// deadlines and a fault (one box, made on first use), the keepalive
    /// settings and timers (one box, made when configured), the payload of
    /// a message's first frame and the buffer of a reassembled one (one or
    /// the other).
    #[test]
    fn an_upgraded_websocket_stays_small() {
        type Upgraded = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;
        let size = std::mem::size_of::<super::WebSocket<Upgraded>>();
        // 632 B, and 16 more for the open time kept with `tracing` (which
        // the crate's tests always have, through its dev-dependencies).
        let most = if cfg!(feature = "tracing") { 648 } else { 632 };
        assert!(
            size <= most,
            "a WebSocket is {size} B, more than {most} (it was 976 B before the limits were shared and \
             the close record, closing state, message body and keepalive state were folded)"
        );
    }
}
