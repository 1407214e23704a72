//! The two halves of a split [`WebSocket`](super::WebSocket).
//!
//! Both halves drive one engine and one transport behind a mutex held only
//! for the duration of a poll. A transport keeps one waker for read
//! readiness and one for write readiness, so a half must not poll the
//! direction the other half is waiting on, or that half would never wake.
//! The rule: the reader writes pending output (pongs, close replies) unless
//! the writer is blocked on the transport; the writer reads ahead (to answer
//! pings while nobody reads) unless the reader is waiting for input. Each
//! half wakes the other after making progress it might be waiting for.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Inner;
use crate::error::Error;
use crate::message::{CloseCode, CloseFrame, Message, Utf8Bytes};
use crate::shutdown::Signal;

#[derive(Debug)]
struct Shared<IO> {
    inner: Inner<IO>,
    /// The writer's own waiter on the shutdown signal (the reader polls the
    /// one in `inner`): one waker each.
    writer_signal: Option<Signal>,
    reader_waiting: bool,
    writer_waiting: bool,
    reader_waker: Option<Waker>,
    writer_waker: Option<Waker>,
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
    let shared = Arc::new(Mutex::new(Shared {
        writer_signal: inner.watch.as_ref().map(|watch| watch.signal.fork()),
        inner,
        reader_waiting: false,
        writer_waiting: false,
        reader_waker: None,
        writer_waker: None,
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
        let mut s = lock(&self.shared);
        let flush = !s.writer_waiting;
        s.inner.poll_signal(cx);
        let had_output = s.inner.out.len();
        let result = s.inner.poll_next_message(cx, flush);
        s.reader_waiting = result.is_pending();
        if result.is_pending() {
            s.reader_waker = Some(cx.waker().clone());
        }
        if s.inner.out.len() < had_output || s.inner.done {
            if let Some(w) = s.writer_waker.take() {
                w.wake();
            }
        }
        result
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> WebSocketWriter<IO> {
    /// Runs one write-side operation under the split rules.
    fn with<T>(
        &self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Inner<IO>, &mut Context<'_>) -> Poll<Result<T, Error>>,
    ) -> Poll<Result<T, Error>> {
        let mut s = lock(&self.shared);
        if s.writer_signal
            .as_mut()
            .is_some_and(|sig| sig.poll_fired(cx))
        {
            s.inner.go_away();
            // A writer whose reader is idle still gets the close frame out.
            let _ = s.inner.poll_write_out(cx);
        }
        if !s.reader_waiting {
            s.inner.drive_input(cx)?;
            s.inner.poll_timers(cx);
        }
        let result = op(&mut s.inner, cx);
        s.writer_waiting = result.is_pending();
        if result.is_pending() {
            s.writer_waker = Some(cx.waker().clone());
        } else if let Some(w) = s.reader_waker.take() {
            w.wake();
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

impl<IO> Drop for WebSocketWriter<IO> {
    fn drop(&mut self) {
        // A writer dropped while blocked must not leave the reader waiting for
        // it: the reader takes over writing output (pongs, close replies).
        let mut s = lock(&self.shared);
        s.writer_waiting = false;
        if let Some(w) = s.reader_waker.take() {
            w.wake();
        }
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
