//! [`WebSocket`]: a tower-ws connection with axum's surface.

use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, SplitStream, StreamExt};
use http::HeaderValue;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::message::{CloseCode, Message, Utf8Bytes};
use crate::{Error, UpgradedWebSocket, WebSocketReader, WebSocketWriter};

type Io = TokioIo<Upgraded>;

/// tower-ws's sink, whole or half.
type DynSink = dyn Sink<crate::Message, Error = Error> + Unpin;

/// An upgraded WebSocket connection, as `on_upgrade`'s callback receives it:
/// a [`Stream`] of `Result<Message, axum::Error>` and a [`Sink`] of
/// [`Message`], with `recv`, `send` and `protocol` as in axum.
///
/// Underneath it is tower-ws's [`WebSocket`](crate::WebSocket): pings are
/// answered and close frames replied to as they are read, and reading is
/// cancel-safe. Errors are tower-ws's [`Error`] inside an `axum::Error`
/// (`err.into_inner().downcast::<tower_ws::Error>()` gets it back).
///
/// ```
/// use tower_ws::axum::{Message, WebSocket};
///
/// async fn echo(mut socket: WebSocket) {
///     while let Some(Ok(msg)) = socket.recv().await {
///         if let Message::Text(_) | Message::Binary(_) = msg {
///             if socket.send(msg).await.is_err() {
///                 break;
///             }
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct WebSocket {
    socket: Socket,
    protocol: Option<HeaderValue>,
    terminated: bool,
}

#[derive(Debug)]
// The whole connection is the common case and lives inline; boxing it would
// cost every connection an allocation to save the few that split.
#[allow(clippy::large_enum_variant)]
enum Socket {
    /// One connection, read and written by one task. The wakers of the tasks
    /// that last polled each direction tell when a second task joins in.
    Whole {
        ws: UpgradedWebSocket,
        reader: Option<Waker>,
        writer: Option<Waker>,
    },
    /// tower-ws's own halves, which coordinate who writes pending pongs and
    /// who reads ahead, so two tasks can drive them (see [`WebSocket::split`]).
    Halves(WebSocketReader<Io>, WebSocketWriter<Io>),
    /// Only while switching from `Whole` to `Halves`; behaves as closed.
    Closed,
}

impl WebSocket {
    pub(crate) fn new(ws: UpgradedWebSocket, protocol: Option<HeaderValue>) -> Self {
        WebSocket {
            socket: Socket::Whole {
                ws,
                reader: None,
                writer: None,
            },
            protocol,
            terminated: false,
        }
    }

    /// Receives the next message; `None` once the connection has closed.
    ///
    /// Cancel-safe: dropped inside `tokio::select!`, it loses nothing.
    pub async fn recv(&mut self) -> Option<Result<Message, axum_core::Error>> {
        self.next().await
    }

    /// Sends a message and flushes it.
    pub async fn send(&mut self, msg: Message) -> Result<(), axum_core::Error> {
        SinkExt::send(self, msg).await
    }

    /// The subprotocol agreed in the handshake, if any.
    pub fn protocol(&self) -> Option<&HeaderValue> {
        self.protocol.as_ref()
    }

    /// Splits the connection into a sending and a receiving half, to use from
    /// two tasks: the types `futures::StreamExt::split` gives axum's socket,
    /// `SplitSink<WebSocket, Message>` and `SplitStream<WebSocket>`.
    ///
    /// The halves keep answering pings and replying to close frames while
    /// only one of them is in use. (A socket split through the trait,
    /// `StreamExt::split(socket)`, switches to the same coordinated halves
    /// when it sees a second task poll it.)
    ///
    /// ```
    /// use futures_util::{SinkExt, StreamExt};
    /// use tower_ws::axum::{Message, WebSocket};
    ///
    /// async fn shout(socket: WebSocket) {
    ///     let (mut sender, mut receiver) = socket.split();
    ///     while let Some(Ok(Message::Text(text))) = receiver.next().await {
    ///         if sender.send(Message::text(text.to_uppercase())).await.is_err() {
    ///             break;
    ///         }
    ///     }
    /// }
    /// ```
    pub fn split(mut self) -> (SplitSink<WebSocket, Message>, SplitStream<WebSocket>) {
        self.switch_to_halves();
        StreamExt::split(self)
    }

    /// Closes the connection gracefully: sends a close frame with `code` and
    /// `reason`, waits for the peer's reply up to the close timeout
    /// ([`Config::close_timeout`](crate::Config::close_timeout)), then closes
    /// the transport. (Not in axum, where sending `Message::Close` and
    /// dropping the socket is the way.)
    pub async fn close(
        &mut self,
        code: CloseCode,
        reason: impl Into<Utf8Bytes>,
    ) -> Result<(), axum_core::Error> {
        let reason = crate::Utf8Bytes::from(reason.into());
        match &mut self.socket {
            Socket::Whole { ws, .. } => ws.close(code, reason).await,
            Socket::Halves(_, writer) => writer.close(code, reason).await,
            Socket::Closed => Err(Error::closed()),
        }
        .map_err(axum_core::Error::new)
    }

    fn switch_to_halves(&mut self) {
        if let Socket::Whole { .. } = self.socket {
            if let Socket::Whole { ws, .. } = std::mem::replace(&mut self.socket, Socket::Closed) {
                let (reader, writer) = ws.split();
                self.socket = Socket::Halves(reader, writer);
            }
        }
    }

    /// Notes which task polls one direction of a whole socket. When the other
    /// direction was last polled by another task, the two would take each
    /// other's place as the transport's waiting reader or writer and one of
    /// them might never wake: switch to the coordinated halves, and wake the
    /// other task so it polls again under their rules.
    fn note_task(&mut self, cx: &Context<'_>, reading: bool) {
        let Socket::Whole { reader, writer, .. } = &mut self.socket else {
            return;
        };
        let (mine, theirs) = if reading {
            (reader, writer)
        } else {
            (writer, reader)
        };
        let waker = cx.waker();
        match theirs.as_ref().filter(|w| !w.will_wake(waker)).cloned() {
            Some(other) => {
                self.switch_to_halves();
                other.wake();
            }
            None if !mine.as_ref().is_some_and(|w| w.will_wake(waker)) => {
                *mine = Some(waker.clone());
            }
            None => {}
        }
    }

    /// Polls tower-ws's `Sink` method `op` on whichever form the socket has.
    fn poll_sink<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut DynSink>, &mut Context<'_>) -> Poll<Result<T, Error>>,
    ) -> Poll<Result<T, axum_core::Error>> {
        self.note_task(cx, false);
        let sink: &mut DynSink = match &mut self.socket {
            Socket::Whole { ws, .. } => ws,
            Socket::Halves(_, writer) => writer,
            Socket::Closed => return Poll::Ready(Err(axum_core::Error::new(Error::closed()))),
        };
        op(Pin::new(sink), cx).map_err(axum_core::Error::new)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, axum_core::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.terminated {
            return Poll::Ready(None);
        }
        self.note_task(cx, true);
        let next = match &mut self.socket {
            Socket::Whole { ws, .. } => ready!(Pin::new(ws).poll_next(cx)),
            Socket::Halves(reader, _) => ready!(Pin::new(reader).poll_next(cx)),
            Socket::Closed => None,
        };
        match next {
            Some(Ok(msg)) => Poll::Ready(Some(Ok(msg.into()))),
            Some(Err(e)) => Poll::Ready(Some(Err(axum_core::Error::new(e)))),
            None => {
                self.terminated = true;
                Poll::Ready(None)
            }
        }
    }
}

impl FusedStream for WebSocket {
    /// Whether the stream has ended.
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl Sink<Message> for WebSocket {
    type Error = axum_core::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_sink(cx, |sink, cx| sink.poll_ready(cx))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        let result = match &mut self.socket {
            Socket::Whole { ws, .. } => Pin::new(ws).start_send(item.into()),
            Socket::Halves(_, writer) => Pin::new(writer).start_send(item.into()),
            Socket::Closed => Err(Error::closed()),
        };
        result.map_err(axum_core::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_sink(cx, |sink, cx| sink.poll_flush(cx))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_sink(cx, |sink, cx| sink.poll_close(cx))
    }
}
