//! The task behind each [`Client`]: runs the callbacks, drains the send
//! queue into the WebSocket and closes it. Keepalive pings and the idle
//! timeout are the WebSocket's own (`Config::ping_interval`), configured
//! from the hub's [`Options`] when those are set.

use std::future::{Future, pending, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use futures_sink::Sink;
use pin_project_lite::pin_project;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::Handler;
use super::client::{self, Client};
use super::hub::{Options, Shared};
use crate::budget::QueueCharge;
use crate::error::Error;
use crate::message::{CloseCode, CloseFrame, Message};
use crate::service::{RequestHead, UpgradedWebSocket};

/// Serves one connection with the hub's handler.
pub(super) async fn run<H: Handler>(
    hub: Arc<Shared<H>>,
    mut ws: Box<UpgradedWebSocket>,
    head: RequestHead,
) {
    let options = &hub.options;
    let clients = &hub.clients;
    if clients.is_shutting_down() {
        let close = ws.close(CloseCode::AWAY, "server shutting down");
        let _ = timeout(options.close_timeout, close).await;
        return;
    }
    let (queue, rx) = mpsc::channel(options.queue_capacity);
    // Queued messages count in the service's memory budget.
    let charge = ws.queue_charge();
    let client = Client {
        shared: Arc::new(client::Shared {
            id: clients.next_id(),
            head,
            queue,
            queued: AtomicUsize::new(0),
            charge: charge.clone(),
            overflow: options.overflow,
            clients: clients.clone(),
            open: AtomicBool::new(true),
            close_request: Mutex::new(None),
            wake: Notify::new(),
            closed: watch::Sender::new(false),
            dropped: AtomicU64::new(0),
            socket: Mutex::new(None),
        }),
    };
    // Whatever happens from here on, even a panic outside the callbacks, the
    // client leaves the registry and its `close()` futures complete.
    let registration = Registration(client.clone());
    clients.insert(client.clone());
    if clients.is_shutting_down() {
        // Shutdown began between the check above and the insert.
        shutdown_close(&client);
    }

    ws.configure_keepalive(
        options.ping_interval,
        options.pong_timeout,
        options.idle_timeout,
    );
    *lock_socket(&client) = Some(*ws);
    let mut driver = Driver {
        client: client.clone(),
        rx,
        charge,
        options,
        close_frame: None,
        deadline: None,
        ended: false,
    };
    if driver
        .callback(&client, "on_open", hub.handler.on_open(&client))
        .await
        .is_err()
    {
        driver.start_close(&client, internal_error(), false);
    }
    let frame = driver.serve(&hub.handler, &client).await;
    drop(driver);
    registration.end();
    #[cfg(feature = "tracing")]
    match client.shared.dropped.load(Ordering::Relaxed) {
        0 => {}
        dropped => tracing::debug!(
            client = client.id(),
            dropped,
            "slow consumer left; messages dropped for it"
        ),
    }
    if let Err(panic) = CatchUnwind::new(hub.handler.on_close(&client, frame)).await {
        contained(&client, "on_close", &panic);
    }
}

fn shutdown_close(client: &Client) {
    client.request_close(
        CloseFrame::new(CloseCode::AWAY, "server shutting down"),
        true,
    );
}

/// The payload of a panic caught in a callback.
struct Panic(Box<dyn std::any::Any + Send>);

impl Panic {
    /// The panic message, when it is a string (as `panic!` makes it).
    fn message(&self) -> &str {
        match (
            self.0.downcast_ref::<&str>(),
            self.0.downcast_ref::<String>(),
        ) {
            (Some(s), _) => s,
            (_, Some(s)) => s,
            _ => "(not a string)",
        }
    }
}

/// A callback panicked: counted and logged; the caller closes the client.
fn contained(client: &Client, callback: &str, panic: &Panic) {
    client.clients().metrics().panic();
    #[cfg(feature = "tracing")]
    tracing::error!(
        client = client.id(),
        callback,
        panic = panic.message(),
        "a handler callback panicked: closing this client with 1011, the others go on"
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (callback, panic.message());
}

fn internal_error() -> CloseFrame {
    CloseFrame::new(CloseCode::INTERNAL, "internal server error")
}

/// Takes the client out of the registry and marks it closed, at the end of
/// the connection or when its task unwinds.
struct Registration(Client);

impl Registration {
    fn end(&self) {
        let shared = &self.0.shared;
        shared.open.store(false, Ordering::Release);
        shared.clients.remove(shared.id);
        shared.closed.send_replace(true);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.end();
    }
}

/// What woke the connection up.
enum Step {
    CloseRequested,
    Deadline,
    Incoming(Option<Result<Message, Error>>),
}

struct Driver<'a> {
    /// The WebSocket is in `client.shared.socket`, locked while polled.
    client: Client,
    rx: mpsc::Receiver<(Message, usize)>,
    charge: QueueCharge,
    options: &'a Options,
    /// The frame that started the closing handshake, whoever sent it.
    close_frame: Option<CloseFrame>,
    /// Closing: the connection is dropped at this instant.
    deadline: Option<Instant>,
    /// The connection is over (the WebSocket may still wait to be dropped).
    ended: bool,
}

impl Driver<'_> {
    /// Runs the connection to its end; returns the frame for `on_close`.
    async fn serve<H: Handler>(&mut self, handler: &H, client: &Client) -> Option<CloseFrame> {
        loop {
            if self.ended {
                return self.close_frame.take();
            }
            let closing = self.deadline.is_some();
            let deadline = self.deadline;
            let step = tokio::select! {
                biased;
                () = client.shared.wake.notified(), if !closing => Step::CloseRequested,
                () = sleep_opt(deadline) => Step::Deadline,
                item = poll_fn(|cx| self.poll_io(cx)) => Step::Incoming(item),
            };
            match step {
                Step::CloseRequested => {
                    let request = client
                        .shared
                        .close_request
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .take();
                    if let Some(request) = request {
                        self.start_close(client, request.frame, request.drain);
                    }
                }
                Step::Deadline | Step::Incoming(None) => self.end(client),
                Step::Incoming(Some(Ok(msg))) => {
                    let result = match msg {
                        Message::Text(_) | Message::Binary(_) => {
                            self.callback(client, "on_message", handler.on_message(msg, client))
                                .await
                        }
                        Message::Ping(payload) => {
                            self.callback(client, "on_ping", handler.on_ping(client, payload))
                                .await
                        }
                        Message::Pong(payload) => {
                            self.callback(client, "on_pong", handler.on_pong(client, payload))
                                .await
                        }
                        Message::Close(frame) => {
                            // RFC 6455 §7.1.5: a close frame without a code is 1005.
                            let frame =
                                frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS, ""));
                            self.closing(client, frame);
                            Ok(())
                        }
                    };
                    if result.is_err() {
                        self.start_close(client, internal_error(), false);
                    }
                }
                // Keepalive and idle timeouts come as errors with their
                // close frame; I/O errors end the stream without one.
                Step::Incoming(Some(Err(err))) => self.failed(client, &err),
            }
        }
    }

    /// Runs a callback. Meanwhile the connection keeps sending what is
    /// queued and carries out a close asked for (by the callback itself,
    /// say, awaiting [`Client::close`]) without reading ahead: messages that
    /// arrive after our close frame are discarded.
    async fn callback<F: Future<Output = ()>>(
        &mut self,
        client: &Client,
        name: &'static str,
        callback: F,
    ) -> Result<(), Panic> {
        let mut callback = pin!(CatchUnwind::new(callback));
        loop {
            let closing = self.deadline.is_some();
            let deadline = self.deadline;
            tokio::select! {
                biased;
                result = &mut callback => {
                    if let Err(panic) = &result {
                        contained(client, name, panic);
                    }
                    return result;
                }
                () = client.shared.wake.notified(), if !closing => {
                    let request = client
                        .shared
                        .close_request
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .take();
                    if let Some(request) = request {
                        self.start_close(client, request.frame, request.drain);
                    }
                }
                () = sleep_opt(deadline), if !self.ended => self.end(client),
                () = poll_fn(|cx| self.poll_background(cx, client)), if !self.ended => {}
            }
        }
    }

    /// Work done while a callback runs; ready when the connection ended.
    fn poll_background(&mut self, cx: &mut Context<'_>, client: &Client) -> Poll<()> {
        if self.deadline.is_none() {
            self.poll_queue(cx);
            let _ = socket(&mut lock_socket(&self.client)).poll_flush(cx);
            return Poll::Pending;
        }
        loop {
            let next = socket(&mut lock_socket(&self.client)).poll_next(cx);
            match ready!(next) {
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.unwrap_or_else(|| CloseFrame::new(CloseCode::NO_STATUS, ""));
                    self.closing(client, frame);
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => self.failed(client, &err),
                None => {
                    self.end(client);
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Moves queued messages into the WebSocket while it accepts them.
    fn poll_queue(&mut self, cx: &mut Context<'_>) {
        let mut slot = lock_socket(&self.client);
        let mut ws = socket(&mut slot);
        while let Poll::Ready(Ok(())) = ws.as_mut().poll_ready(cx) {
            match self.rx.poll_recv(cx) {
                // An invalid message (never built by `Client`) is dropped.
                Poll::Ready(Some((msg, charged))) => {
                    self.charge.remove(charged);
                    drop(ws.as_mut().start_send(msg));
                    // Uncounted only once in the WebSocket's output, so a
                    // send that writes at once cannot overtake it.
                    self.client.shared.queued.fetch_sub(1, Ordering::AcqRel);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
    }

    /// Sends what is queued, then reads (which also writes out what is
    /// pending).
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        if self.deadline.is_none() {
            self.poll_queue(cx);
        }
        socket(&mut lock_socket(&self.client)).poll_next(cx)
    }

    /// The connection failed (or timed out) with `err`: the WebSocket sent
    /// the close frame that goes with it, if any.
    fn failed(&mut self, client: &Client, err: &Error) {
        if err.is_overloaded() {
            // Closed to free memory: what is queued will never be sent.
            self.discard_queue();
        }
        if let Some(code) = err.close_code() {
            self.closing(client, CloseFrame::new(code, err.close_reason()));
        }
    }

    /// Drops what is queued, releasing its memory; nothing can be queued
    /// after this.
    fn discard_queue(&mut self) {
        self.rx.close();
        while let Ok((_, charged)) = self.rx.try_recv() {
            self.charge.remove(charged);
            self.client.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The connection is over: `close()` futures complete.
    fn end(&mut self, client: &Client) {
        self.ended = true;
        client.shared.open.store(false, Ordering::Release);
        client.shared.closed.send_replace(true);
    }

    /// The closing handshake started (either side): it gets the close
    /// timeout to finish.
    fn closing(&mut self, client: &Client, frame: CloseFrame) {
        client.shared.open.store(false, Ordering::Release);
        if self.close_frame.is_none() {
            self.close_frame = Some(frame);
        }
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.options.close_timeout);
        }
    }

    /// Sends our close frame (after what is queued, if `drain`).
    fn start_close(&mut self, client: &Client, frame: CloseFrame, drain: bool) {
        if self.close_frame.is_some() {
            return;
        }
        {
            let mut slot = lock_socket(&self.client);
            let mut ws = socket(&mut slot);
            if drain {
                while let Ok((msg, charged)) = self.rx.try_recv() {
                    self.charge.remove(charged);
                    drop(ws.as_mut().start_send(msg));
                    self.client.shared.queued.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let close = Message::Close(Some(frame.clone()));
            if let Err(err) = ws.as_mut().start_send(close) {
                if err.is_invalid_message() {
                    // A code that may not be sent, or an over-long reason.
                    drop(ws.start_send(Message::Close(None)));
                }
            }
        }
        self.closing(client, frame);
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        self.discard_queue();
        // The connection ends here, whoever still holds a `Client`.
        drop(lock_socket(&self.client).take());
    }
}

/// The client's WebSocket, locked for one poll.
fn lock_socket(client: &Client) -> MutexGuard<'_, Option<UpgradedWebSocket>> {
    // Nothing panics while it is held; recover all the same.
    client
        .shared
        .socket
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The WebSocket in a locked slot: there from the start of a connection's
/// task until its driver is dropped.
fn socket(slot: &mut Option<UpgradedWebSocket>) -> Pin<&mut UpgradedWebSocket> {
    Pin::new(
        slot.as_mut()
            .expect("a connection's task holds its WebSocket until it ends"),
    )
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

pin_project! {
    /// Contains a panic of a callback: the connection is closed, the server
    /// and the other connections go on.
    struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(Panic(payload))),
        }
    }
}
