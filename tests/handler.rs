//! The callback interface (`tower_ws::handler`) over real TCP, with
//! tokio-tungstenite as the client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tower_ws::handler::{Client, Clients, Handler, Hub, Options, Overflow};
use tower_ws::{CloseCode, CloseFrame, Config, Message, UpgradeHandler, WebSocketService};

type WsClient = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// Serves `service` on a free port of 127.0.0.1.
async fn serve<H: UpgradeHandler>(service: WebSocketService<H>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn connect(addr: SocketAddr, path: &str) -> WsClient {
    let (ws, _) = timeout(WAIT, connect_async(format!("ws://{addr}{path}")))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    ws
}

/// The next data or close message (pings and pongs skipped).
async fn next_message(ws: &mut WsClient) -> WsMessage {
    loop {
        let msg = timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("the stream goes on")
            .expect("no error");
        if !(msg.is_ping() || msg.is_pong()) {
            return msg;
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
async fn close_frame_of(ws: &mut WsClient) -> (u16, String) {
    loop {
        match next_message(ws).await {
            WsMessage::Close(Some(frame)) => return (frame.code.into(), frame.reason.to_string()),
            WsMessage::Close(None) => panic!("close frame without a code"),
            _ => {}
        }
    }
}

#[derive(Debug, PartialEq)]
enum Event {
    Open {
        id: u64,
        path: String,
        header: Option<String>,
    },
    Message(u64, Message),
    Ping(u64, Bytes),
    Pong(u64, Bytes),
    Close(u64, Option<CloseFrame>),
}

/// Records every callback; answers a few commands.
struct Recorder {
    events: mpsc::UnboundedSender<Event>,
}

impl Handler for Recorder {
    async fn on_open(&self, client: &Client) {
        let header = client
            .headers()
            .get("x-test")
            .map(|v| v.to_str().unwrap().to_owned());
        let open = Event::Open {
            id: client.id(),
            path: client.path().to_owned(),
            header,
        };
        self.events.send(open).unwrap();
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        match msg.as_text() {
            Some("ping me") => client.ping("from server").unwrap(),
            Some("close me") => client.close(4000, "as you wish").await,
            Some("panic") => panic!("a handler bug"),
            Some("echo") => client.write_message("echo").unwrap(),
            _ => {}
        }
        self.events.send(Event::Message(client.id(), msg)).unwrap();
    }

    async fn on_close(&self, client: &Client, frame: Option<CloseFrame>) {
        assert!(!client.is_open());
        assert!(
            client.clients().get(client.id()).is_none(),
            "left the registry"
        );
        self.events.send(Event::Close(client.id(), frame)).unwrap();
    }

    async fn on_ping(&self, client: &Client, payload: Bytes) {
        self.events.send(Event::Ping(client.id(), payload)).unwrap();
    }

    async fn on_pong(&self, client: &Client, payload: Bytes) {
        self.events.send(Event::Pong(client.id(), payload)).unwrap();
    }
}

fn recorder(options: Options) -> (Hub<Recorder>, mpsc::UnboundedReceiver<Event>) {
    let (events, rx) = mpsc::unbounded_channel();
    (Hub::new(Recorder { events }, options), rx)
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("events go on")
}

#[tokio::test]
async fn callbacks_run_in_order_with_their_arguments() {
    let (hub, mut events) = recorder(Options::default());
    let addr = serve(WebSocketService::new(hub)).await;
    let mut request = format!("ws://{addr}/chat?room=1")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-test", "yes".parse().unwrap());
    let (mut ws, _) = connect_async(request).await.unwrap();

    let open = next_event(&mut events).await;
    let Event::Open { id, .. } = open else {
        panic!("first event is on_open, got {open:?}");
    };
    let expected = Event::Open {
        id,
        path: "/chat".into(),
        header: Some("yes".into()),
    };
    assert_eq!(open, expected);

    ws.send(WsMessage::text("hello")).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(id, Message::text("hello"))
    );
    ws.send(WsMessage::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(id, Message::binary(vec![1, 2, 3]))
    );
    ws.send(WsMessage::Ping("from client".into()))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Ping(id, Bytes::from("from client"))
    );
    // The connection answered the ping itself.
    let pong = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(pong, WsMessage::Pong("from client".into()));

    // Client::ping: tungstenite answers it, and on_pong reports the answer.
    ws.send(WsMessage::text("ping me")).await.unwrap();
    let ping = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(ping, WsMessage::Ping("from server".into()));
    ws.flush().await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(id, Message::text("ping me"))
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Pong(id, Bytes::from("from server"))
    );

    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: 4001.into(),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(
        next_event(&mut events).await,
        Event::Close(id, Some(CloseFrame::new(4001, "bye")))
    );
}

#[tokio::test]
async fn client_close_sends_the_frame_and_completes_on_the_reply() {
    let (hub, mut events) = recorder(Options::default().close_timeout(Duration::from_secs(5)));
    let addr = serve(WebSocketService::new(hub)).await;
    let mut ws = connect(addr, "/").await;
    let Event::Open { id, .. } = next_event(&mut events).await else {
        panic!("on_open first");
    };
    let started = Instant::now();
    ws.send(WsMessage::text("close me")).await.unwrap();
    assert_eq!(close_frame_of(&mut ws).await, (4000, "as you wish".into()));
    // Reading on lets tokio-tungstenite send its reply; the handler's
    // `close().await` then returns, before the close timeout.
    tokio::spawn(async move { while ws.next().await.is_some() {} });
    assert_eq!(
        next_event(&mut events).await,
        Event::Message(id, Message::text("close me"))
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait for the timeout"
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Close(id, Some(CloseFrame::new(4000, "as you wish")))
    );
}

#[tokio::test]
async fn client_close_gives_up_after_the_close_timeout() {
    let (hub, mut events) = recorder(Options::default().close_timeout(Duration::from_millis(300)));
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    // Never read by the test: the close frame stays unanswered.
    let _silent = connect(addr, "/").await;
    let Event::Open { id, .. } = next_event(&mut events).await else {
        panic!("on_open first");
    };
    let client = clients.get(id).unwrap();
    assert!(client.is_open());
    let started = Instant::now();
    timeout(WAIT, client.close(CloseCode::NORMAL, "going"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(!client.is_open());
    assert!(
        took >= Duration::from_millis(250),
        "waited for the reply: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "gave up after the timeout: {took:?}"
    );
    assert_eq!(
        client.write_message("late"),
        Err(tower_ws::handler::SendError::Closed)
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Close(id, Some(CloseFrame::new(1000, "going")))
    );
}

/// Broadcasts `count` numbered 64 KiB messages to `readers`, waiting for
/// each to arrive everywhere before the next; `stalled` never reads.
async fn broadcast_past(clients: &Clients, readers: &mut [WsClient], count: u32) -> Vec<usize> {
    let mut reached = Vec::new();
    for i in 0..count {
        let mut payload = vec![(i % 251) as u8; 64 << 10];
        payload[..4].copy_from_slice(&i.to_be_bytes());
        reached.push(clients.broadcast(Message::binary(payload)));
        for reader in readers.iter_mut() {
            let WsMessage::Binary(got) = next_message(reader).await else {
                panic!("binary messages only");
            };
            assert_eq!(got[..4], i.to_be_bytes(), "in order, none missing");
        }
    }
    reached
}

fn uncompressed() -> Config {
    // Compression would shrink these payloads to nothing; the stalled
    // client must really fill its buffers.
    Config::default().deflate(None)
}

#[tokio::test]
async fn broadcast_drops_messages_for_a_stalled_client_while_others_keep_up() {
    let (hub, mut events) = recorder(
        Options::default()
            .queue_capacity(8)
            .overflow(Overflow::DropMessage),
    );
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub).config(uncompressed())).await;
    let mut stalled = connect(addr, "/").await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(connect(addr, "/").await);
    }
    for _ in 0..4 {
        assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    }

    let reached = broadcast_past(&clients, &mut readers, 400).await;
    assert_eq!(reached[0], 4, "at first every client takes the message");
    assert_eq!(
        *reached.last().unwrap(),
        3,
        "the stalled client's queue is full"
    );
    assert_eq!(
        clients.len(),
        4,
        "dropping messages keeps the client connected"
    );

    // Once it reads, it gets what was queued, in order, with a gap.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(WsMessage::Binary(got)))) =
        timeout(Duration::from_millis(500), stalled.next()).await
    {
        seen.push(u32::from_be_bytes(got[..4].try_into().unwrap()));
    }
    assert!(!seen.is_empty());
    assert!(seen.len() < 400, "some messages were dropped");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
}

/// A broadcast writes into idle sockets itself (counted in
/// `messages_written_directly`); once a slow reader's socket is full it
/// falls back to the queue, and back again when the queue drained. Every
/// message arrives, whole and in order, to fast and slow readers alike.
#[tokio::test]
async fn broadcast_writes_directly_then_queues_for_a_slow_reader_in_order() {
    let (hub, mut events) = recorder(Options::default().queue_capacity(4096));
    let clients = hub.clients().clone();
    let stats = hub.clone();
    let addr = serve(WebSocketService::new(hub).config(uncompressed())).await;
    let mut fast = Vec::new();
    for _ in 0..4 {
        fast.push(connect(addr, "/").await);
    }
    let mut slow = connect(addr, "/").await;
    for _ in 0..5 {
        assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    }

    const COUNT: u32 = 600;
    let publisher = tokio::spawn(async move {
        for i in 0..COUNT {
            // Small and large messages: copied next to their header or
            // queued as shared chunks; 16 MiB in all, more than a socket holds.
            let len = if i % 3 == 0 { 20 } else { 40 << 10 };
            let mut payload = vec![(i % 251) as u8; len];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            assert_eq!(clients.broadcast(Message::binary(payload)), 5);
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let check = |i: u32, got: &[u8]| {
        let len = if i % 3 == 0 { 20 } else { 40 << 10 };
        assert_eq!(got.len(), len, "message {i}: length");
        assert_eq!(got[..4], i.to_be_bytes(), "in order, none missing");
        assert!(
            got[4..].iter().all(|b| *b == (i % 251) as u8),
            "message {i} intact"
        );
    };
    let readers = fast.into_iter().map(|mut ws| {
        tokio::spawn(async move {
            for i in 0..COUNT {
                let WsMessage::Binary(got) = next_message(&mut ws).await else {
                    panic!("binary messages only");
                };
                check(i, &got);
            }
        })
    });
    let readers: Vec<_> = readers.collect();
    // The slow reader starts late and reads in bursts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..COUNT {
        let WsMessage::Binary(got) = next_message(&mut slow).await else {
            panic!("binary messages only");
        };
        check(i, &got);
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    publisher.await.unwrap();
    for reader in readers {
        reader.await.unwrap();
    }
    let s = stats.stats();
    assert_eq!(s.messages_queued, 5 * u64::from(COUNT));
    assert_eq!(s.messages_dropped, 0);
    assert!(
        s.messages_written_directly > 0,
        "no message was written directly: {s:?}"
    );
    assert!(
        s.messages_written_directly < s.messages_queued,
        "the slow reader's messages were queued: {s:?}"
    );
}

#[tokio::test]
async fn broadcast_closes_a_stalled_client_with_the_overflow_code() {
    let (hub, mut events) = recorder(
        Options::default()
            .queue_capacity(8)
            .overflow(Overflow::Close(CloseCode::POLICY))
            .close_timeout(Duration::from_millis(300)),
    );
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub).config(uncompressed())).await;
    let _stalled = connect(addr, "/").await;
    let Event::Open { id: stalled_id, .. } = next_event(&mut events).await else {
        panic!("on_open first");
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(connect(addr, "/").await);
        assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    }

    let reached = broadcast_past(&clients, &mut readers, 400).await;
    assert_eq!(*reached.last().unwrap(), 3);
    // The stalled client was closed with 1008 (it cannot read the frame, so
    // the close timeout ends it), the others were never held up.
    let closed = loop {
        if let Event::Close(id, frame) = next_event(&mut events).await {
            break (id, frame);
        }
    };
    assert_eq!(
        closed,
        (
            stalled_id,
            Some(CloseFrame::new(CloseCode::POLICY, "send queue full"))
        )
    );
    assert_eq!(clients.len(), 3);
    for reader in &mut readers {
        reader.send(WsMessage::text("echo")).await.unwrap();
        assert_eq!(next_message(reader).await, WsMessage::text("echo"));
    }
}

#[tokio::test]
async fn connection_limit_answers_503_then_admits_after_a_close() {
    let (hub, _events) = recorder(Options::default());
    let addr = serve(WebSocketService::new(hub).max_connections(2)).await;
    let mut first = connect(addr, "/").await;
    let mut second = connect(addr, "/").await;

    let refused = connect_async(format!("ws://{addr}/")).await.unwrap_err();
    let tungstenite::Error::Http(response) = refused else {
        panic!("an HTTP answer, got {refused:?}");
    };
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");

    // The open connections are unaffected.
    for ws in [&mut first, &mut second] {
        ws.send(WsMessage::text("echo")).await.unwrap();
        assert_eq!(next_message(ws).await, WsMessage::text("echo"));
    }

    first.close(None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let mut third = loop {
        match connect_async(format!("ws://{addr}/")).await {
            Ok((ws, _)) => break ws,
            Err(tungstenite::Error::Http(r)) if r.status() == 503 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the freed slot is taken: {e:?}"),
        }
    };
    third.send(WsMessage::text("echo")).await.unwrap();
    assert_eq!(next_message(&mut third).await, WsMessage::text("echo"));
}

/// Completes a WebSocket handshake over raw TCP; the caller then holds a
/// client that answers nothing.
async fn raw_handshake(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Splits unmasked server frames into (opcode, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "small control frames only");
        out.push((opcode, bytes[2..2 + len].to_vec()));
        bytes = &bytes[2 + len..];
    }
    out
}

#[tokio::test]
async fn keepalive_fails_a_silent_peer_with_1011() {
    let interval = Duration::from_millis(200);
    let pong_timeout = Duration::from_millis(200);
    let (hub, mut events) = recorder(
        Options::default()
            .ping_interval(Some(interval))
            .pong_timeout(pong_timeout),
    );
    let addr = serve(WebSocketService::new(hub)).await;
    let mut silent = raw_handshake(addr).await;
    let started = Instant::now();
    let Event::Open { id, .. } = next_event(&mut events).await else {
        panic!("on_open first");
    };

    let mut received = Vec::new();
    timeout(WAIT, silent.read_to_end(&mut received))
        .await
        .expect("the server hangs up")
        .unwrap();
    let took = started.elapsed();
    // The server's clock starts before the client has read the 101.
    assert!(
        took >= interval + pong_timeout - Duration::from_millis(50),
        "not before the timeout: {took:?}"
    );
    assert!(
        took < interval + pong_timeout + Duration::from_secs(3),
        "soon after the timeout: {took:?}"
    );
    let frames = frames(&received);
    assert_eq!(frames[0].0, 0x9, "a keepalive ping first");
    let (opcode, payload) = frames.last().unwrap();
    assert_eq!(*opcode, 0x8, "then a close frame");
    assert_eq!(payload[..2], 1011u16.to_be_bytes());
    assert_eq!(
        next_event(&mut events).await,
        Event::Close(
            id,
            Some(CloseFrame::new(
                CloseCode::INTERNAL,
                "keepalive ping timeout"
            ))
        )
    );
}

#[tokio::test]
async fn keepalive_keeps_an_answering_peer() {
    let (hub, mut events) = recorder(
        Options::default()
            .ping_interval(Some(Duration::from_millis(100)))
            // Room for a stall of a loaded machine (client and server share
            // this thread). A ping goes out every 400 ms: the next one
            // follows the pong timeout of the last.
            .pong_timeout(Duration::from_millis(400)),
    );
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    let mut ws = connect(addr, "/").await;
    assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    // Reading lets tokio-tungstenite answer the pings.
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(1500);
    while let Ok(msg) = tokio::time::timeout_at(until.into(), ws.next()).await {
        if msg.unwrap().unwrap().is_ping() {
            pings += 1;
        }
    }
    assert!(pings >= 3, "pings every interval: {pings}");
    assert_eq!(clients.len(), 1, "still connected");
    assert!(matches!(next_event(&mut events).await, Event::Pong(..)));
}

#[tokio::test]
async fn idle_timeout_closes_a_quiet_client_with_1001() {
    let (hub, _events) =
        recorder(Options::default().idle_timeout(Some(Duration::from_millis(300))));
    let addr = serve(WebSocketService::new(hub)).await;
    let mut ws = connect(addr, "/").await;
    let started = Instant::now();
    assert_eq!(close_frame_of(&mut ws).await, (1001, "idle timeout".into()));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn shutdown_sends_1001_to_every_client_within_the_deadline() {
    let (hub, mut events) = recorder(Options::default().close_timeout(Duration::from_millis(500)));
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(connect(addr, "/").await);
    }
    // One client never reads: it cannot answer, the close timeout ends it.
    let _silent = connect(addr, "/").await;
    for _ in 0..4 {
        assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    }
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { close_frame_of(&mut ws).await }))
        .collect();

    let started = Instant::now();
    let left = clients.shutdown(Duration::from_secs(2)).await;
    let took = started.elapsed();
    assert_eq!(left, 0, "every connection closed");
    assert!(
        took < Duration::from_secs(2),
        "within the deadline: {took:?}"
    );
    assert!(clients.is_empty());
    for task in tasks {
        assert_eq!(task.await.unwrap(), (1001, "server shutting down".into()));
    }
    // A connection leaves the registry before its `on_close` runs.
    let mut closes = 0;
    while closes < 4 {
        if let Event::Close(_, frame) = next_event(&mut events).await {
            assert_eq!(frame.unwrap().code, CloseCode::AWAY);
            closes += 1;
        }
    }

    // A client that connects after the shutdown is turned away at once.
    let mut late = connect(addr, "/").await;
    assert_eq!(
        close_frame_of(&mut late).await,
        (1001, "server shutting down".into())
    );
}

#[tokio::test]
async fn shutdown_returns_at_the_deadline_when_clients_linger() {
    // A close timeout longer than the shutdown deadline: the silent client
    // is still closing when shutdown gives up.
    let (hub, mut events) = recorder(Options::default().close_timeout(Duration::from_secs(3)));
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    let _silent = connect(addr, "/").await;
    assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    let started = Instant::now();
    let left = clients.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert_eq!(left, 1);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_panicking_callback_closes_only_its_own_client() {
    let (hub, mut events) = recorder(Options::default());
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    let mut victim = connect(addr, "/").await;
    let Event::Open { id: victim_id, .. } = next_event(&mut events).await else {
        panic!("on_open first");
    };
    let mut other = connect(addr, "/").await;
    assert!(matches!(next_event(&mut events).await, Event::Open { .. }));

    victim.send(WsMessage::text("panic")).await.unwrap();
    assert_eq!(
        close_frame_of(&mut victim).await,
        (1011, "internal server error".into())
    );
    assert_eq!(
        next_event(&mut events).await,
        Event::Close(
            victim_id,
            Some(CloseFrame::new(
                CloseCode::INTERNAL,
                "internal server error"
            ))
        )
    );
    assert_eq!(clients.len(), 1);
    other.send(WsMessage::text("echo")).await.unwrap();
    assert_eq!(next_message(&mut other).await, WsMessage::text("echo"));
}

#[tokio::test]
async fn broadcast_reaches_every_client_with_permessage_deflate() {
    // Each connection compresses the shared payload with its own context.
    let (hub, mut events) = recorder(Options::default());
    let clients = hub.clients().clone();
    let addr = serve(WebSocketService::new(hub)).await;
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(connect(addr, "/").await);
        assert!(matches!(next_event(&mut events).await, Event::Open { .. }));
    }
    let text = "all together now ".repeat(1000);
    assert_eq!(clients.broadcast(text.clone()), 3);
    for ws in &mut all {
        assert_eq!(next_message(ws).await, WsMessage::text(text.clone()));
    }
}
