//! WebSockets over HTTP/2 from the test side: the `h2` crate (hyper's
//! HTTP/2 engine) as the client, extended CONNECTs (RFC 8441) built by
//! hand, and WebSocket frames written and read on the stream.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Method, Request, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Frame, masked_frame, parse_server_frame};

/// An HTTP/2 client connection (prior knowledge, "h2c").
pub async fn connect(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    handshake(tcp, &client()).await
}

/// A client like a browser's: 64 KiB stream windows (h2's default) in a
/// 16 MiB connection window, so one stream left unread cannot use up the
/// connection's.
pub fn client() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder.initial_connection_window_size(16 << 20);
    builder
}

/// The HTTP/2 handshake on any transport, with the connection driven on
/// its own task; returns once the server's SETTINGS arrived.
pub async fn handshake<IO>(io: IO, builder: &h2::client::Builder) -> SendRequest<Bytes>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut conn) = builder.handshake(io).await.expect("HTTP/2 handshake");
    let mut ping = conn.ping_pong().expect("a PING handle");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The server's SETTINGS come before its answer to our PING.
    ping.ping(h2::Ping::opaque()).await.expect("a PONG");
    send.ready().await.expect("HTTP/2 connection ready")
}

/// An extended CONNECT for a WebSocket at `path` (RFC 8441 §5).
pub fn websocket_request(path: &str) -> Request<()> {
    Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://localhost{path}"))
        .header("sec-websocket-version", "13")
        .extension(h2::ext::Protocol::from_static("websocket"))
        .body(())
        .unwrap()
}

/// The response to an extended CONNECT, and the stream if it opened.
pub struct Opened {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub ws: Option<H2Ws>,
}

/// Sends `req` and reads the response head; a 2xx keeps the stream open.
pub async fn open(send: &mut SendRequest<Bytes>, req: Request<()>) -> Opened {
    let mut ready = send.clone().ready().await.expect("stream slot");
    let (response, stream) = ready.send_request(req, false).expect("request sent");
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("a response within 5 s")
        .expect("a response, not a reset");
    let (parts, recv) = response.into_parts();
    let ws = parts.status.is_success().then(|| H2Ws {
        send: stream,
        recv,
        buf: Vec::new(),
    });
    Opened {
        status: parts.status,
        headers: parts.headers,
        ws,
    }
}

/// Opens a WebSocket at `path`, asserting the `200`.
pub async fn open_ws(send: &mut SendRequest<Bytes>, path: &str) -> H2Ws {
    let opened = open(send, websocket_request(path)).await;
    assert_eq!(opened.status, StatusCode::OK);
    opened.ws.unwrap()
}

/// A WebSocket on an HTTP/2 stream, spoken frame by frame.
pub struct H2Ws {
    pub send: SendStream<Bytes>,
    pub recv: RecvStream,
    buf: Vec<u8>,
}

impl H2Ws {
    /// Sends one masked frame in one DATA frame.
    pub fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = masked_frame(fin, 0, opcode, payload);
        self.send.send_data(Bytes::from(frame), false).unwrap();
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(true, 0x1, text.as_bytes());
    }

    /// The next frame, or `None` at the end of the stream or on a reset
    /// (within 5 s). Flow-control capacity is released as data is read.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(Duration::from_secs(5))
            .await
            .expect("a frame or the end of the stream within the time")
    }

    /// The next frame, `Some(None)` at the end of the stream or a reset,
    /// `None` if nothing came within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Option<Frame>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.recv.data()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(None),
                Ok(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    self.buf.extend_from_slice(&data);
                }
            }
        }
    }

    /// Sends a text message and asserts its echo.
    pub async fn assert_echo(&mut self, text: &str) {
        self.send_text(text);
        let echo = self.recv().await.expect("an echo");
        assert_eq!(
            (echo.opcode, String::from_utf8_lossy(&echo.payload)),
            (0x1, text.into())
        );
    }
}

/// A `tower_ws::serve` server on a free loopback port, stopped gracefully
/// by [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Serves `service` (with the "hello from the inner service" route inside)
/// with `tower_ws::serve`, configured by `configure`.
pub async fn start<H: tower_ws::UpgradeHandler>(
    service: tower_ws::WebSocketService<H, tower_ws::UpgradeRequired>,
    configure: impl FnOnce(ServeHello<H>) -> ServeHello<H>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = configure(tower_ws::serve(
        listener,
        service.with_inner(super::hello()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(
        serve
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    Server {
        addr,
        stop: Some(stop),
        done: Some(done),
    }
}

/// What [`start`] serves.
pub type ServeHello<H> = tower_ws::server::Serve<tower_ws::WebSocketService<H, super::Hello>>;

impl Server {
    /// Starts the graceful shutdown; returns how long `serve` took to return.
    pub async fn stop(&mut self) -> Duration {
        let started = tokio::time::Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(30), done)
                .await
                .expect("serve returns after its shutdown deadline")
                .unwrap()
                .unwrap();
        }
        started.elapsed()
    }
}

use std::future::IntoFuture;
