//! What an idle connection holds after traffic: no read buffer. Measured
//! as the heap bytes live in the process (a counting global allocator),
//! with hundreds of WebSockets over real TCP.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tower_ws::{Config, WebSocket};

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

fn masked_frame(payload: &[u8]) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let mut f = vec![0x82, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Heap bytes that stay per connection after one echo, beyond what it held
/// right after it was set up, once every connection waits again. The read
/// buffer (8 KiB by default) must not be among them: it goes back to a
/// per-thread pool of at most 64 buffers.
#[test]
fn an_idle_connection_holds_no_read_buffer_after_traffic() {
    const CONNS: usize = 1000;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The server: one thread, one WebSocket task per connection, echoing.
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
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
            }
            for task in tasks {
                task.await.unwrap();
            }
        });
    });

    let mut clients: Vec<_> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = live();

    let frame = masked_frame(&[42u8; 20]);
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
