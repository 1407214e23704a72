//! The counters a service and a hub keep, read through `stats()` after real
//! traffic over TCP.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::{RawClient, echo, serve, upgrade_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_ws::handler::{Client, Handler, Hub, Options, Overflow};
use tower_ws::metrics::Stats;
use tower_ws::{CloseCode, Config, Message, RequestHead, UpgradedWebSocket, WebSocketService};

const WAIT: Duration = Duration::from_secs(5);

/// Polls `stats` until `done` holds (counters are folded when connections
/// wait or end), or panics with the last snapshot.
async fn wait_for<S: std::fmt::Debug>(
    mut stats: impl FnMut() -> S,
    done: impl Fn(&S) -> bool,
) -> S {
    let start = tokio::time::Instant::now();
    loop {
        let s = stats();
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < WAIT, "counters never got there: {s:#?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status_of(addr: std::net::SocketAddr, request: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&head[..n])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn traffic_and_close_codes_are_counted_per_service() {
    let service = WebSocketService::new(echo).config(Config::default().deflate(None));
    let probe = service.clone();
    let addr = serve(service).await;

    let (mut a, _) = RawClient::connect(addr, "").await;
    let s = wait_for(|| probe.stats(), |s| s.open_connections == 1).await;
    assert_eq!((s.handshakes_accepted, s.open_http1), (1, 1));
    for size in [5usize, 300, 70_000] {
        a.send(true, 0, 0x2, &vec![7u8; size]).await;
        assert_eq!(a.recv().await.unwrap().payload.len(), size);
    }
    a.send(true, 0, 0x1, b"hi").await;
    a.recv().await.unwrap();
    a.send(true, 0, 0x8, &1000u16.to_be_bytes()).await;
    assert_eq!(a.recv().await.unwrap().close_code(), Some(1000));

    // A second client breaks the protocol: an unmasked frame gets 1002.
    let (mut b, _) = RawClient::connect(addr, "").await;
    b.send_raw(&[0x81, 0x01, b'x']).await;
    assert_eq!(b.recv().await.unwrap().close_code(), Some(1002));

    let s = wait_for(
        || probe.stats(),
        |s| s.open_connections == 0 && s.close_codes_sent.total() == 2,
    )
    .await;
    let payload = (5 + 300 + 70_000 + 2) as u64;
    assert_eq!((s.messages_received, s.messages_sent), (4, 4));
    assert_eq!((s.bytes_received, s.bytes_sent), (payload, payload));
    // Frame headers and masks come on top of the payload, each way.
    assert!(s.wire_bytes_received > payload && s.wire_bytes_received < payload + 200);
    assert!(s.wire_bytes_sent > payload && s.wire_bytes_sent < payload + 100);
    assert_eq!(s.close_codes_received.get(CloseCode::NORMAL), 1);
    assert_eq!(s.close_codes_sent.get(CloseCode::NORMAL), 1);
    assert_eq!(s.close_codes_sent.get(CloseCode::PROTOCOL), 1);
    assert_eq!(s.protocol_errors, 1);
    assert_eq!(s.handshakes_accepted, 2);
    assert_eq!(s.compression_ratio(), None);
}

#[tokio::test]
async fn compressed_bytes_are_counted_before_and_after() {
    let service = WebSocketService::new(echo);
    let probe = service.clone();
    let addr = serve(service).await;
    let (mut ws, head) = RawClient::connect(
        addr,
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n",
    )
    .await;
    assert!(head.contains("permessage-deflate"), "{head}");
    // 'aaaa...' deflated: a stored-free fixed-Huffman block.
    let text = "a".repeat(10_000);
    let mut z = zlib_rs::Deflate::new(6, false, 15);
    let mut packed = vec![0u8; 1024];
    z.compress(
        text.as_bytes(),
        &mut packed,
        zlib_rs::DeflateFlush::SyncFlush,
    )
    .unwrap();
    packed.truncate(z.total_out() as usize - 4);
    ws.send(true, 0b100, 0x1, &packed).await;
    let echoed = ws.recv().await.unwrap();
    assert_eq!(echoed.rsv, 0b100);
    ws.send(true, 0, 0x8, &1000u16.to_be_bytes()).await;
    ws.recv().await.unwrap();

    let s = wait_for(|| probe.stats(), |s| s.open_connections == 0).await;
    assert_eq!(s.compressed_bytes_received, packed.len() as u64);
    assert_eq!(s.inflated_bytes_received, 10_000);
    assert_eq!(s.deflate_input_bytes_sent, 10_000);
    assert_eq!(s.compressed_bytes_sent, echoed.payload.len() as u64);
    let ratio = s.compression_ratio().unwrap();
    assert!(ratio > 0.0 && ratio < 0.05, "{ratio}");
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let service = WebSocketService::new(echo)
        .allowed_origins(["https://good.example"])
        .max_connections(1);
    let probe = service.clone();
    let addr = serve(service).await;

    let bad_version =
        upgrade_request("/", "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    assert_eq!(status_of(addr, &bad_version).await, 426);
    let no_key = upgrade_request("/", "").replace("Sec-WebSocket-Key", "X-Key");
    assert_eq!(status_of(addr, &no_key).await, 400);
    let post = upgrade_request("/", "").replacen("GET", "POST", 1);
    assert_eq!(status_of(addr, &post).await, 405);
    let evil = upgrade_request("/", "Origin: https://evil.example\r\n");
    assert_eq!(status_of(addr, &evil).await, 403);
    let (_held, _) = RawClient::connect(addr, "").await;
    assert_eq!(status_of(addr, &upgrade_request("/", "")).await, 503);

    let r = probe.stats().handshakes_refused;
    assert_eq!(
        (
            r.unsupported_version,
            r.bad_request,
            r.method_not_allowed,
            r.forbidden,
            r.connection_limit
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(r.total(), 5);
    assert_eq!(probe.stats().handshakes_accepted, 1);
}

/// A handler that panics still gives back its slot of the connection
/// limit and counts its WebSocket as closed (the task does both when it is
/// dropped, after the handler's future).
#[tokio::test]
async fn a_panicking_handler_frees_its_slot_and_is_counted_closed() {
    let service = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
        let _ = ws.next().await;
        panic!("handler bug");
    })
    .max_connections(1);
    let probe = service.clone();
    let addr = serve(service).await;
    for round in 1..=3 {
        let (mut client, _) = RawClient::connect(addr, "").await;
        wait_for(|| probe.stats(), |s| s.open_connections == 1).await;
        assert_eq!(status_of(addr, &upgrade_request("/", "")).await, 503);
        client.send(true, 0, 0x1, b"boom").await;
        let s = wait_for(|| probe.stats(), |s| s.open_connections == 0).await;
        assert_eq!((s.open_http1, s.handshakes_accepted), (0, round));
    }
    assert_eq!(probe.stats().handshakes_refused.connection_limit, 3);
}

#[tokio::test]
async fn a_service_starts_at_zero() {
    let service = WebSocketService::new(echo);
    assert_eq!(service.stats(), Stats::default());
}

struct Silent;

impl Handler for Silent {
    async fn on_message(&self, msg: Message, _client: &Client) {
        if msg.as_text() == Some("panic") {
            panic!("handler bug");
        }
    }
}

#[tokio::test]
async fn hub_counts_queued_dropped_overflow_closes_and_panics() {
    let hub = Hub::new(
        Silent,
        Options::default()
            .queue_capacity(4)
            .overflow(Overflow::DropMessage),
    );
    let probe = hub.clone();
    let addr = serve(
        WebSocketService::new(hub.clone()).config(
            Config::default()
                .deflate(None)
                .write_buffer_high_water(1024),
        ),
    )
    .await;
    // A client that never reads: its queue fills and broadcasts to it drop.
    let (_stalled, _) = RawClient::connect(addr, "").await;
    let s = wait_for(|| probe.stats(), |s| s.clients == 1).await;
    assert_eq!(s.broadcasts, 0);
    let big = vec![1u8; 256 << 10];
    for _ in 0..200 {
        hub.clients().broadcast(Message::binary(big.clone()));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let s = probe.stats();
    assert_eq!(s.broadcasts, 200);
    assert_eq!(s.messages_queued + s.messages_dropped, 200);
    assert!(s.messages_dropped > 0, "{s:?}");
    assert_eq!(s.overflow_closes, 0);

    // A callback panic is contained and counted.
    let (mut c, _) = RawClient::connect(addr, "").await;
    wait_for(|| probe.stats(), |s| s.clients == 2).await;
    c.send(true, 0, 0x1, b"panic").await;
    loop {
        let frame = c.recv().await.expect("the close frame");
        if frame.opcode == 8 {
            assert_eq!(frame.close_code(), Some(1011));
            break;
        }
    }
    let s = wait_for(|| probe.stats(), |s| s.handler_panics == 1).await;
    assert_eq!(s.handler_panics, 1);
}

#[tokio::test]
async fn hub_counts_clients_closed_for_overflow() {
    let hub = Hub::new(
        Silent,
        Options::default()
            .queue_capacity(2)
            .overflow(Overflow::Close(CloseCode::TRY_AGAIN_LATER)),
    );
    let addr = serve(
        WebSocketService::new(hub.clone()).config(
            Config::default()
                .deflate(None)
                .write_buffer_high_water(1024),
        ),
    )
    .await;
    let (_stalled, _) = RawClient::connect(addr, "").await;
    wait_for(|| hub.stats(), |s| s.clients == 1).await;
    let big = vec![1u8; 256 << 10];
    for _ in 0..100 {
        hub.clients().broadcast(Message::binary(big.clone()));
    }
    let s = wait_for(|| hub.stats(), |s| s.clients == 0).await;
    assert_eq!(s.overflow_closes, 1, "{s:?}");
    assert!(s.messages_dropped >= 1);
}

/// Panics when dropped before the handler finished (a user guard whose
/// `Drop` asserts, or does something that fails during runtime shutdown).
struct PanicsIfCancelled(bool);

impl Drop for PanicsIfCancelled {
    fn drop(&mut self) {
        if !self.0 {
            panic!("handler future dropped mid-run");
        }
    }
}

/// The runtime shuts down while a handler runs: its task is dropped, and
/// the handler's future panics in its drop (tokio contains that panic).
/// The slot of the connection limit must still be given back and the
/// WebSocket counted closed, as when the permit and the gauge were fields
/// dropped during the unwinding.
#[test]
fn a_handler_panicking_in_drop_frees_its_slot_and_is_counted_closed() {
    let service = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
        let mut guard = PanicsIfCancelled(false);
        let _ = ws.next().await;
        guard.0 = true;
    })
    .max_connections(1);
    let probe = service.clone();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let rt = runtime();
    let _client = rt.block_on(async {
        let addr = serve(service.clone()).await;
        let (client, head) = RawClient::connect(addr, "").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        wait_for(|| probe.stats(), |s| s.open_connections == 1).await;
        client
    });
    drop(rt);
    let open = probe.stats().open_connections;
    let rt = runtime();
    let status = rt.block_on(async {
        let addr = serve(service).await;
        status_of(addr, &upgrade_request("/", "")).await
    });
    assert_eq!(
        (open, status),
        (0, 101),
        "(open gauge, status of a new upgrade): the gauge must be 0 and the slot free"
    );
}

/// Counts its clones, and panics at the one numbered `PANIC_AT` (a user
/// handler whose `Clone` can fail).
struct CountedHandler;

static CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PANIC_AT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

impl Clone for CountedHandler {
    fn clone(&self) -> Self {
        use std::sync::atomic::Ordering::SeqCst;
        let n = CLONES.fetch_add(1, SeqCst) + 1;
        if n == PANIC_AT.load(SeqCst) {
            panic!("handler clone failed");
        }
        CountedHandler
    }
}

impl tower_ws::UpgradeHandler for CountedHandler {
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    fn call(&self, ws: UpgradedWebSocket, head: RequestHead) -> Self::Future {
        Box::pin(echo(ws, head))
    }
}

/// A panic in `call` after the slot was taken (here the handler's clone
/// for the task) must not keep the slot: it was an `OwnedSemaphorePermit`
/// dropped on unwinding, it is now forgotten before the task exists.
#[tokio::test]
async fn a_panic_before_the_task_is_spawned_frees_its_slot() {
    use std::sync::atomic::Ordering::SeqCst;
    let service = WebSocketService::new(CountedHandler).max_connections(1);
    let addr = serve(service).await;
    // How many clones one connection makes (the last is the task's).
    let before = CLONES.load(SeqCst);
    let (client, head) = RawClient::connect(addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let per_conn = CLONES.load(SeqCst) - before;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next connection's last clone (the task's handler) panics.
    PANIC_AT.store(CLONES.load(SeqCst) + per_conn, SeqCst);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/", "").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await;
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        status_of(addr, &upgrade_request("/", "")).await,
        101,
        "the only slot was leaked by the panic"
    );
}
