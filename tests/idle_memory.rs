//! What an idle connection holds after traffic: no read buffer, and in all
//! (task, WebSocket, socket registration, transport) about 1.25 KiB.
//! Measured as the heap bytes live in the process (a counting global
//! allocator), with a thousand and more WebSockets over real TCP.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tower_ws::{Config, RequestHead, UpgradedWebSocket, WebSocket, WebSocketService};

mod support;

/// The tests count the same allocator: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; counting touches no allocation.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap bytes that stay per connection after one echo, beyond what it held
/// right after it was set up, once every connection waits again. The read
/// buffer (8 KiB by default) must not be among them: it goes back to a
/// per-thread pool of at most 64 buffers.
#[test]
fn an_idle_connection_holds_no_read_buffer_after_traffic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const CONNS: usize = 1000;
    // The server: one WebSocket task per connection, echoing.
    let set_up = Arc::new(AtomicUsize::new(0));
    let counter = set_up.clone();
    let (addr, server) = server(|listener| async move {
        let config = Config::default();
        let mut tasks = Vec::new();
        for _ in 0..CONNS {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = WebSocket::from_raw(tcp, &config, None);
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }));
            counter.fetch_add(1, Ordering::Relaxed);
        }
        for task in tasks {
            task.await.unwrap();
        }
    });

    let mut clients: Vec<_> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // Every connection accepted and its task spawned (and then polled once
    // while the tasks wait): only what one echo leaves counts.
    let start = std::time::Instant::now();
    while set_up.load(Ordering::Relaxed) < CONNS {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "connections not accepted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = live();

    let frame = support::masked_frame(true, 0, 0x2, &[42u8; 20]);
    let mut reply = [0u8; 22];
    for client in &mut clients {
        client.write_all(&frame).unwrap();
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..2], &[0x82, 20]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = live();

    let per_conn = (after - before) / CONNS as isize;
    eprintln!(
        "held per connection after one 20-byte echo: {per_conn} B more than before \
         ({} B in all)",
        after - before
    );
    // The pool holds at most 64 buffers of 8 KiB per thread: 0.5 KiB per
    // connection here at worst. Without it, every connection keeps 8 KiB.
    assert!(
        per_conn <= 1024,
        "{per_conn} B per idle connection after one echo: the read buffer stays"
    );
    drop(clients);
    server.join().unwrap();
}

/// Everything a WebSocket accepted by `serve` and `WebSocketService` holds
/// on the heap while it waits, after the handshake and one echo: its task
/// (with the handler's future and the WebSocket in it), the socket's
/// registration with tokio, the upgraded transport, the copied request
/// head, its budget account, and its share of the read-buffer pool.
///
/// The task once held the WebSocket twice (3.6 KiB per connection in all):
/// an `async` block kept the WebSocket on its way from the upgrade to the
/// handler in a slot of its own, beside the handler's future.
#[test]
fn an_idle_websocket_behind_serve_holds_about_1_25_kib() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const CONNS: usize = 2000;
    // Not waited for: the server thread ends with the test process (or
    // after a minute).
    let (addr, _server) = server(|listener| async move {
        let echo = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
            while let Some(Ok(msg)) = ws.next().await {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let _ =
            tokio::time::timeout(Duration::from_secs(60), tower_ws::serve(listener, echo)).await;
    });
    // Warm up: the first connection sets up what every later one shares.
    let mut warm = support::blocking_upgrade(addr);
    echo_once(&mut warm);
    std::thread::sleep(Duration::from_millis(200));
    let before = live();

    let mut clients: Vec<_> = (0..CONNS)
        .map(|_| support::blocking_upgrade(addr))
        .collect();
    for client in &mut clients {
        echo_once(client);
    }
    std::thread::sleep(Duration::from_millis(500));
    let per_conn = (live() - before) / CONNS as isize;
    eprintln!("held per idle WebSocket behind serve, after one echo: {per_conn} B");
    // 1,274 B: the task 896 (1,280 before the limits were shared and what
    // only an unusual or closing connection needs was folded out of it, in
    // three steps of 128), tokio's registration 256, hyper's boxed
    // transport 80, the rest small. The budget account's holder (104 B)
    // is made only when something is charged or the budget has a limit.
    // It was 3,018 B when the task held the WebSocket twice.
    assert!(
        per_conn <= 1350,
        "{per_conn} B per idle WebSocket: more than 1,350 B"
    );
    drop(clients);
    drop(warm);
}

/// Runs `serve` on a listener of its own, on a one-thread runtime in a
/// thread of its own.
fn server<F, Fut>(serve: F) -> (std::net::SocketAddr, std::thread::JoinHandle<()>)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            serve(tokio::net::TcpListener::from_std(listener).unwrap()).await
        });
    });
    (addr, thread)
}

fn echo_once(tcp: &mut std::net::TcpStream) {
    tcp.write_all(&support::masked_frame(true, 0, 0x2, &[42u8; 20]))
        .unwrap();
    let mut reply = [0u8; 22];
    tcp.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..2], &[0x82, 20]);
}
