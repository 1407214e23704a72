//! No allocation per message on the echo hot path: counted with a counting
//! global allocator, in the sans-I/O engine and in the async WebSocket over
//! real TCP.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};

use bytes::Buf;
use tower_ws::proto::{Connection, Role, WriteBuf};
use tower_ws::{Config, Message, WebSocket};

mod support;

struct Counting;

thread_local! {
    /// Only allocations made on a thread that opted in are counted, per
    /// thread, so tests running in parallel do not count each other's.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator; counting touches no allocation.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the allocations `f` makes on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = allocations();
    COUNTED.with(|c| c.set(true));
    let result = f();
    COUNTED.with(|c| c.set(false));
    (result, allocations() - before)
}

/// Echoes binary messages; returns the allocations this thread made while
/// echoing `measured` messages after `warmup` ones (`None` if the peer left
/// before).
async fn echo_counting<IO>(ws: &mut WebSocket<IO>, warmup: usize, measured: usize) -> Option<usize>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};

    let mut echoed = 0;
    let mut baseline = 0;
    while let Some(Ok(msg)) = ws.next().await {
        if echoed == warmup {
            COUNTED.with(|c| c.set(true));
            baseline = allocations();
        }
        if let Message::Binary(_) = msg {
            ws.send(msg).await.unwrap();
            echoed += 1;
        }
        if echoed == warmup + measured {
            COUNTED.with(|c| c.set(false));
            return Some(allocations() - baseline);
        }
    }
    None
}

#[test]
fn engine_echo_allocates_nothing_per_message() {
    for size in [20usize, 1024, 4000] {
        let frame = support::masked_frame(true, 0, 0x2, &vec![7u8; size]);
        let mut conn = Connection::new(Role::Server, &Config::default(), None);
        let mut out = WriteBuf::new();
        let echo_one = |conn: &mut Connection, out: &mut WriteBuf| {
            let buf = conn.read_buf();
            buf.reserve(8 << 10);
            buf.extend_from_slice(&frame);
            let msg = conn.poll_event(out).unwrap().unwrap();
            assert_eq!(msg.len(), size);
            conn.send(msg, out).unwrap();
            let n = out.remaining();
            out.advance(n);
        };
        for _ in 0..100 {
            echo_one(&mut conn, &mut out);
        }
        let ((), allocations) = count(|| {
            for _ in 0..10_000 {
                echo_one(&mut conn, &mut out);
            }
        });
        assert_eq!(
            allocations, 0,
            "{size}-byte messages: {allocations} allocations in 10,000 echoes"
        );
    }
}

#[test]
fn websocket_echo_over_tcp_allocates_nothing_per_message() {
    const WARMUP: usize = 500;
    const MEASURED: usize = 5_000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_nonblocking(true).unwrap();
        tcp.set_nodelay(true).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
            // The transport after a handshake: the client starts with frames.
            let mut ws = WebSocket::from_raw(tcp, &Config::default(), None);
            echo_counting(&mut ws, WARMUP, MEASURED)
                .await
                .expect("the client stays for every message")
        })
    });

    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    let frame = support::masked_frame(true, 0, 0x2, &[42u8; 20]);
    let mut reply = [0u8; 22];
    for _ in 0..WARMUP + MEASURED {
        client.write_all(&frame).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..2], &[0x82, 20]);
    }
    let allocations = server.join().unwrap();
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {MEASURED} echoes over TCP"
    );
}

/// An unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

#[test]
fn client_engine_echo_allocates_nothing_per_message() {
    // Masking writes into the reused write buffer: no allocation either,
    // and drawing keys from the thread-local CSPRNG allocates nothing.
    let keys = tower_ws::client::mask_keys();
    for size in [20usize, 1024, 4000, 60_000] {
        let frame = server_frame(0x2, &vec![7u8; size]);
        let mut conn = Connection::new(Role::Client(keys), &Config::default(), None);
        let mut out = WriteBuf::new();
        let echo_one = |conn: &mut Connection, out: &mut WriteBuf| {
            let buf = conn.read_buf();
            buf.reserve(64 << 10);
            buf.extend_from_slice(&frame);
            let msg = conn.poll_event(out).unwrap().unwrap();
            assert_eq!(msg.len(), size);
            conn.send(msg, out).unwrap();
            let n = out.remaining();
            out.advance(n);
        };
        for _ in 0..100 {
            echo_one(&mut conn, &mut out);
        }
        let ((), allocations) = count(|| {
            for _ in 0..10_000 {
                echo_one(&mut conn, &mut out);
            }
        });
        assert_eq!(
            allocations, 0,
            "client, {size}-byte messages: {allocations} allocations in 10,000 echoes"
        );
    }
}

#[test]
fn client_websocket_over_tcp_allocates_nothing_per_message() {
    use futures_util::{SinkExt, StreamExt};

    const WARMUP: usize = 500;
    const MEASURED: usize = 5_000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A plain echo peer on a thread: reads masked client frames, answers
    // with unmasked ones.
    let peer = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut frame = [0u8; 26];
        for _ in 0..WARMUP + MEASURED {
            tcp.read_exact(&mut frame).unwrap();
            assert_eq!(&frame[..2], &[0x82, 0x80 | 20], "a masked binary frame");
            let key = [frame[2], frame[3], frame[4], frame[5]];
            let mut reply = vec![0x82, 20];
            reply.extend(frame[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            tcp.write_all(&reply).unwrap();
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let allocations = runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let role = Role::Client(tower_ws::client::mask_keys());
        let mut ws = WebSocket::from_raw_with_role(tcp, role, &Config::default(), None);
        let payload = bytes::Bytes::from_static(&[42u8; 20]);
        let mut baseline = 0;
        for i in 0..WARMUP + MEASURED {
            if i == WARMUP {
                COUNTED.with(|c| c.set(true));
                baseline = allocations();
            }
            ws.send(Message::Binary(payload.clone())).await.unwrap();
            let reply = ws.next().await.unwrap().unwrap();
            assert_eq!(reply.len(), 20);
        }
        COUNTED.with(|c| c.set(false));
        allocations() - baseline
    });
    peer.join().unwrap();
    assert_eq!(
        allocations, 0,
        "client: {allocations} allocations in {MEASURED} echoes over TCP"
    );
}

#[test]
fn the_counter_sees_allocations() {
    let (v, allocations) = count(|| vec![1u8; 100]);
    assert_eq!(v.len(), 100);
    assert_eq!(allocations, 1);
}

/// The same through `WebSocketService`, whose connections count their
/// traffic in the service's metrics (and account their buffers in its
/// memory budget): counting allocates nothing per message either.
#[test]
fn service_echo_with_metrics_allocates_nothing_per_message() {
    use hyper_util::rt::TokioIo;
    use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};

    const WARMUP: usize = 500;
    const MEASURED: usize = 5_000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let handler = move |mut ws: UpgradedWebSocket, _: RequestHead| {
                let done = done_tx.clone();
                async move {
                    if let Some(allocations) = echo_counting(&mut ws, WARMUP, MEASURED).await {
                        done.send(allocations).unwrap();
                    }
                }
            };
            let service = WebSocketService::new(handler).config(Config::default().deflate(None));
            let probe = service.clone();
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    TokioIo::new(tcp),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .with_upgrades()
                .await
                .unwrap();
            // The handler runs on: wait until it finished and was counted.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let stats = probe.stats();
                if stats.open_connections == 0
                    && stats.messages_received == (WARMUP + MEASURED) as u64
                {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{stats:?}");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    });

    let mut client = support::blocking_upgrade(addr);
    client.set_nodelay(true).unwrap();
    let frame = support::masked_frame(true, 0, 0x2, &[42u8; 20]);
    let mut reply = [0u8; 22];
    for _ in 0..WARMUP + MEASURED {
        client.write_all(&frame).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..2], &[0x82, 20]);
    }
    let allocations = done_rx.recv().unwrap();
    drop(client);
    server.join().unwrap();
    assert_eq!(
        allocations, 0,
        "{allocations} allocations in {MEASURED} echoes through the service"
    );
}
