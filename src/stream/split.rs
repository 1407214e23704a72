//! The two halves of a split [`WebSocket`](super::WebSocket).
//!
//! Both halves drive one engine and one transport behind a mutex held only
//! for the duration of a poll. A transport keeps one waker for read
//! readiness and one for write readiness, so the halves never register their
//! own wakers with it: every poll of the engine runs with one shared *fan-out*
//! waker that wakes both halves' tasks. Either half may then poll either
//! direction (the reader writes pongs, close replies and whatever the writer
//! queued; the writer reads ahead to answer pings while nobody reads), and
//! whichever half polled last, readiness reaches the one that waits for it.
//! A half cancelled while pending (a send dropped by `select!` or `timeout`)
//! leaves nothing behind that the other half depends on.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Inner;
use crate::error::Error;
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};
use crate::shutdown::Signal;

/// The wakers of the two halves' tasks, woken together.
#[derive(Debug, Default)]
struct Fanout {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Fanout {
    fn slot(&self, half: Half) -> &Mutex<Option<Waker>> {
        match half {
            Half::Reader => &self.reader,
            Half::Writer => &self.writer,
        }
    }

    /// Records the waker of `half`'s task (cloned only when it changed).
    fn register(&self, half: Half, waker: &Waker) {
        let mut slot = lock_slot(self.slot(half));
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Wakes `half`'s task if it is waiting.
    fn wake_half(&self, half: Half) {
        if let Some(w) = lock_slot(self.slot(half)).take() {
            w.wake();
        }
    }
}

impl Wake for Fanout {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_half(Half::Reader);
        self.wake_half(Half::Writer);
    }
}

fn lock_slot(slot: &Mutex<Option<Waker>>) -> MutexGuard<'_, Option<Waker>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy)]
enum Half {
    Reader,
    Writer,
}

#[derive(Debug)]
struct Shared<IO> {
    inner: Inner<IO>,
    /// The writer's own waiter on the shutdown signal (the reader polls the
    /// one in `inner`).
    writer_signal: Option<Signal>,
    fanout: Arc<Fanout>,
    /// `fanout` as a waker, made once.
    waker: Waker,
}

type Locked<IO> = Arc<Mutex<Shared<IO>>>;

fn lock<IO>(shared: &Locked<IO>) -> MutexGuard<'_, Shared<IO>> {
    // A panic in another half cannot leave the engine half-updated in a way
    // that matters more than losing the connection; keep going.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn split<IO>(inner: Inner<IO>) -> (WebSocketReader<IO>, WebSocketWriter<IO>) {
    let fanout = Arc::new(Fanout::default());
    let shared = Arc::new(Mutex::new(Shared {
        writer_signal: inner.watch.as_ref().map(|watch| watch.signal.fork()),
        inner,
        waker: Waker::from(fanout.clone()),
        fanout,
    }));
    (
        WebSocketReader {
            shared: shared.clone(),
        },
        WebSocketWriter { shared },
    )
}

/// The reading half of a split [`WebSocket`](super::WebSocket): a `Stream`
/// of messages. Pings are answered as they are read.
#[derive(Debug)]
pub struct WebSocketReader<IO> {
    shared: Locked<IO>,
}

/// The writing half of a split [`WebSocket`](super::WebSocket): a `Sink` of
/// messages. While the reading half is not waiting for input, the writer
/// reads ahead so pings are answered and close frames replied to.
#[derive(Debug)]
pub struct WebSocketWriter<IO> {
    shared: Locked<IO>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Stream for WebSocketReader<IO> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        s.fanout.register(Half::Reader, cx.waker());
        let mut cx = Context::from_waker(&s.waker);
        s.inner.poll_signal(&mut cx);
        let had_output = s.inner.out.len();
        let result = s.inner.poll_next_message(&mut cx);
        if s.inner.out.len() < had_output || s.inner.done {
            // Room in the queue, or the end: a writer waiting on either
            // learns it from its next poll, not from the transport.
            s.fanout.wake_half(Half::Writer);
        }
        result
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<IO> {
    /// Runs one write-side operation; it reads ahead first, so pings are
    /// answered and close frames replied to while nobody reads.
    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Inner<IO>, &mut Context<'_>) -> Poll<Result<T, Error>>,
    ) -> Poll<Result<T, Error>> {
        let mut guard = lock(&self.shared);
        let s = &mut *guard;
        s.fanout.register(Half::Writer, cx.waker());
        let mut cx = Context::from_waker(&s.waker);
        if s.writer_signal
            .as_mut()
            .is_some_and(|sig| sig.poll_fired(&mut cx))
        {
            s.inner.go_away();
            // A writer whose reader is idle still gets the close frame out.
            let _ = s.inner.poll_write_out(&mut cx);
        }
        let buffered = s.inner.conn.buffered_events();
        s.inner.drive_input(&mut cx)?;
        s.inner.poll_timers(&mut cx);
        let result = op(&mut s.inner, &mut cx);
        if result.is_ready() || s.inner.conn.buffered_events() != buffered {
            // Room in the queue for a reader paused by it, or input read
            // ahead that the reader has yet to see.
            s.fanout.wake_half(Half::Reader);
        }
        result
    }

    /// Sends a close frame, waits for the peer's reply up to the close
    /// timeout, then closes the transport (see
    /// [`WebSocket::close`](super::WebSocket::close)).
    pub async fn close(
        &mut self,
        code: impl Into<CloseCode>,
        reason: impl Into<Utf8Bytes>,
    ) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason);
        std::future::poll_fn(|cx| {
            self.with(cx, |inner, cx| {
                inner.poll_close_with(cx, Some(frame.clone()))
            })
        })
        .await
    }

    /// Bytes queued for the peer but not yet written.
    pub fn buffered_amount(&self) -> usize {
        lock(&self.shared).inner.out.len()
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocketWriter<IO> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, Inner::poll_ready)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        lock(&self.shared).inner.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, Inner::poll_flush)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.with(cx, |inner, cx| inner.poll_close_with(cx, None))
    }
}
