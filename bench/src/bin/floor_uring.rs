//! The echo floor on io_uring: `floor_echo`'s work (unmask and re-frame a
//! whole read batch in place, one write) with the I/O submitted through one
//! io_uring instead of tokio's epoll reactor, to measure what a completion
//! based I/O model would buy a WebSocket server on this kernel (issue
//! "Speed, round two"). One thread; every connection has one operation in
//! flight, a send or none, and one `io_uring_enter` submits every queued
//! operation and reaps every completion ready, so the system calls are
//! amortised over all connections that have work. Receives are multishot
//! (armed once per connection) into a ring of provided buffers shared by
//! all connections; task work is deferred to the ring's own enter
//! (`DEFER_TASKRUN`): the setup that io_uring's authors recommend for
//! network servers.
//!
//! The handshake is done with blocking I/O on a thread of its own before the
//! connection joins the ring (a pipe wakes the ring). Like the other floors it
//! is a yardstick, not a server: no limits, no UTF-8 checks.
//!
//!   floor_uring 127.0.0.1:9001

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tower_ws_bench::floor::{echo_frames, parse_client_header};
use tower_ws_bench::{MAX_MESSAGE, accept_key, announce, header, listen_addr};

const READ_CHUNK: usize = 64 * 1024;
const RING_ENTRIES: u32 = 4096;
/// Provided receive buffers: how many, how large, their group id.
const BUFFERS: u16 = 256;
const BUFFER_SIZE: usize = 64 * 1024;
const BUFFER_GROUP: u16 = 0;
/// No provided buffer was free: the multishot receive stopped.
const ENOBUFS: i32 = 105;
/// `user_data` of the pipe read that announces new connections.
const WAKE: u64 = u64::MAX;

/// Upgraded connections on their way to the ring, with the bytes read
/// after their request.
type Arrivals = Arc<Mutex<VecDeque<(TcpStream, Vec<u8>)>>>;

struct Conn {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding input.
    len: usize,
    /// The reply being sent, how much of it went, the input it consumed,
    /// and whether it ends with a close.
    out: std::ops::Range<usize>,
    sent: usize,
    consumed: usize,
    closed: bool,
    /// A send is in flight: `buf` must not move.
    sending: bool,
    /// Ended; dropped once no send is in flight.
    dead: bool,
    /// Input that arrived during a send when `buf` had no room for it.
    stash: Vec<u8>,
}

impl Conn {
    /// Appends input after what `buf` holds, growing it (never during a
    /// send).
    fn append(&mut self, data: &[u8]) {
        if self.buf.len() - self.len < data.len() {
            let grown = (self.len + data.len()).max(self.buf.len() * 2);
            self.buf.resize(grown, 0);
        }
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
    }
}

fn main() {
    let listener = TcpListener::bind(listen_addr()).expect("bind");
    announce(listener.local_addr().unwrap());
    let (mut wake_rx, mut wake_tx) = std::io::pipe().expect("pipe");
    let arrivals: Arrivals = Arc::default();
    let queue = arrivals.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_nodelay(true);
            if let Ok(Some(rest)) = upgrade(&mut tcp) {
                queue.lock().unwrap().push_back((tcp, rest));
                let _ = wake_tx.write_all(&[1]);
            }
        }
    });

    // Task work (completing a recv once data arrived) runs only when this
    // thread enters the ring, not as an interrupt of whatever it is doing
    // (DEFER_TASKRUN, kernel 6.1; it needs SINGLE_ISSUER).
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .expect("io_uring (kernel 6.1 or later, not disabled)");
    let mut bufs = BufRing::new(&ring, BUFFERS, BUFFER_SIZE);
    // Connections are never reused: a late completion of a closed one's
    // receive finds its slot empty.
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut wake_buf = [0u8; 256];
    let mut pending: Vec<squeue::Entry> = Vec::new();
    pending.push(read_wake(&mut wake_rx, &mut wake_buf));
    let mut completions = Vec::new();
    loop {
        for entry in pending.drain(..) {
            // SAFETY: every buffer an entry points into (a connection's
            // `buf` for a send, `wake_buf`, the provided buffers) stays
            // allocated and untouched until its completion is reaped: a
            // connection has at most one send in flight and is dropped only
            // when none is.
            while unsafe { ring.submission().push(&entry) }.is_err() {
                ring.submit().expect("io_uring_enter");
            }
        }
        ring.submit_and_wait(1).expect("io_uring_enter");
        completions.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (user_data, result, flags) in completions.drain(..) {
            if user_data == WAKE {
                let mut arrived = arrivals.lock().unwrap();
                while let Some((tcp, rest)) = arrived.pop_front() {
                    let id = conns.len();
                    let mut buf = vec![0u8; READ_CHUNK.max(rest.len())];
                    buf[..rest.len()].copy_from_slice(&rest);
                    conns.push(Some(Conn {
                        tcp,
                        buf,
                        len: rest.len(),
                        out: 0..0,
                        sent: 0,
                        consumed: 0,
                        closed: false,
                        sending: false,
                        dead: false,
                        stash: Vec::new(),
                    }));
                    let conn = conns[id].as_mut().unwrap();
                    pending.push(recv_multi(id, conn));
                    if let Some(send) = next_send(id, conn) {
                        pending.push(send);
                    }
                }
                pending.push(read_wake(&mut wake_rx, &mut wake_buf));
                continue;
            }
            let id = (user_data >> 1) as usize;
            let Some(conn) = conns[id].as_mut() else {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    bufs.give_back(bid);
                }
                continue;
            };
            if user_data & 1 == 0 {
                // A receive into a provided buffer: copy it after what the
                // connection holds and give the buffer back at once.
                if let Some(bid) = cqueue::buffer_select(flags) {
                    let n = result.max(0) as usize;
                    if conn.sending && (conn.buf.len() - conn.len < n || !conn.stash.is_empty()) {
                        // `buf` may not move under the send.
                        conn.stash.extend_from_slice(bufs.get(bid, n));
                    } else {
                        conn.append(bufs.get(bid, n));
                    }
                    bufs.give_back(bid);
                }
                if result == 0 || (result < 0 && result != -ENOBUFS) {
                    conn.dead = true;
                } else if !cqueue::more(flags) {
                    pending.push(recv_multi(id, conn));
                }
            } else {
                conn.sending = false;
                if result <= 0 {
                    conn.dead = true;
                } else {
                    conn.sent += result as usize;
                    if conn.sent < conn.out.len() {
                        pending.push(send(id, conn));
                        continue;
                    }
                    if conn.closed {
                        conn.dead = true;
                    }
                    // Keep the input not consumed yet.
                    conn.buf.copy_within(conn.consumed..conn.len, 0);
                    conn.len -= conn.consumed;
                    conn.out = 0..0;
                    let stash = std::mem::take(&mut conn.stash);
                    conn.append(&stash);
                }
            }
            if conn.dead {
                if !conn.sending {
                    conns[id] = None;
                }
                continue;
            }
            if let Some(send) = next_send(id, conn) {
                pending.push(send);
            }
        }
        bufs.publish();
    }
}

/// A send of what complete frames the connection holds, echoed, unless
/// one is in flight or there are none.
fn next_send(id: usize, conn: &mut Conn) -> Option<squeue::Entry> {
    if conn.sending {
        return None;
    }
    let (out, consumed, closed) = echo_frames(&mut conn.buf[..conn.len]);
    if out.end == out.start {
        // Room for the whole pending frame, as floor_echo.
        let pending = parse_client_header(&conn.buf[..conn.len])
            .map_or(0, |(h, len, _)| (h + len).min(MAX_MESSAGE));
        if conn.buf.len() < pending {
            conn.buf.resize(pending, 0);
        }
        return None;
    }
    conn.out = out;
    conn.sent = 0;
    conn.consumed = consumed;
    conn.closed = closed;
    Some(send(id, conn))
}

fn recv_multi(id: usize, conn: &Conn) -> squeue::Entry {
    opcode::RecvMulti::new(types::Fd(conn.tcp.as_raw_fd()), BUFFER_GROUP)
        .build()
        .user_data((id as u64) << 1)
}

fn send(id: usize, conn: &mut Conn) -> squeue::Entry {
    conn.sending = true;
    let rest = &conn.buf[conn.out.start + conn.sent..conn.out.end];
    opcode::Send::new(
        types::Fd(conn.tcp.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .build()
    .user_data(((id as u64) << 1) | 1)
}

fn read_wake(rx: &mut std::io::PipeReader, buf: &mut [u8; 256]) -> squeue::Entry {
    opcode::Read::new(
        types::Fd(rx.as_raw_fd()),
        buf.as_mut_ptr(),
        buf.len() as u32,
    )
    .build()
    .user_data(WAKE)
}

/// The provided buffers every receive draws from (a buffer ring, kernel
/// 5.19): the receive buffer is shared by all connections, as uWebSockets'
/// is per event loop, and a connection keeps only what is unfinished.
struct BufRing {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    mask: u16,
    tail: u16,
    memory: Vec<u8>,
    size: usize,
}

impl BufRing {
    fn new(ring: &IoUring, count: u16, size: usize) -> Self {
        assert!(count.is_power_of_two());
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .unwrap();
        // SAFETY: a non-zero size; zeroed memory is a valid ring (the tail,
        // in the first entry's reserved field, starts at 0).
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        assert!(!entries.is_null());
        let mut bufs = BufRing {
            entries,
            layout,
            mask: count - 1,
            tail: 0,
            memory: vec![0u8; count as usize * size],
            size,
        };
        for bid in 0..count {
            bufs.give_back(bid);
        }
        bufs.publish();
        // SAFETY: the ring memory lives as long as `bufs`, which lives as
        // long as the process's ring (main never returns).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, BUFFER_GROUP, 0)
                .expect("register a buffer ring (kernel 5.19 or later)");
        }
        bufs
    }

    fn get(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size;
        &self.memory[start..start + len]
    }

    /// Puts buffer `bid` back at the tail (published by `publish`).
    fn give_back(&mut self, bid: u16) {
        // SAFETY: the index is masked into the ring's `count` entries.
        let entry = unsafe { &mut *self.entries.add((self.tail & self.mask) as usize) };
        entry.set_addr(self.memory.as_ptr() as u64 + (bid as usize * self.size) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` is the ring's first entry; the tail field is
        // shared with the kernel, so it is written atomically.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}

/// The opening handshake with blocking I/O: answers 101 and returns the
/// bytes after the request, or `None` (after a 400) without a key.
fn upgrade(tcp: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = tcp.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let Some(key) = header(&buf[..head_end], "sec-websocket-key") else {
        tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")?;
        return Ok(None);
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    tcp.write_all(response.as_bytes())?;
    Ok(Some(buf.split_off(head_end)))
}
