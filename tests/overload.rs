//! The memory budget under overload, against `examples/ops.rs` in its own
//! process (so its resident memory is its own): thousands of connections
//! that never read while the server broadcasts 64 KiB messages as fast as
//! it can, plus hundreds of connections sending 16 MiB messages at once.
//!
//! Checks that the server's peak resident memory stays under the budget
//! plus a stated fixed overhead, that healthy readers keep receiving, that
//! every connection the server dropped or refused is counted by it, and
//! that the buffered bytes return to nothing when the pressure ends.
//! Prints the figures.
//!
//! Full size in a release build (`cargo test --release --test overload --
//! --nocapture`, as `scripts/test.sh` runs it: 5,000 + 500 + 20
//! connections, budget 256 MiB); smaller in a debug build, so plain
//! `cargo test` stays quick (300 + 20 + 5 connections, 1 MiB messages,
//! budget 16 MiB). `cargo build --examples` (or plain `cargo
//! test`) builds the server first.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// The sizes of the run.
struct Scale {
    never_readers: usize,
    senders: usize,
    readers: usize,
    message: usize,
    budget_mib: usize,
}

const FULL: Scale = Scale {
    never_readers: 5_000,
    senders: 500,
    readers: 20,
    message: 16 << 20,
    budget_mib: 256,
};

const SMALL: Scale = Scale {
    never_readers: 300,
    senders: 20,
    readers: 5,
    message: 1 << 20,
    budget_mib: 16,
};

/// Memory the server holds besides what the budget counts: its baseline
/// (code, runtime, allocator arenas), and per open connection its task,
/// socket, hyper and WebSocket state and hub client (a few KiB), with
/// allocator slack on top.
const OVERHEAD_PER_CONNECTION: u64 = 32 << 10;
const OVERHEAD_BASE: u64 = 64 << 20;

const FEED_SIZE: usize = 64 << 10;
const GRACE_MS: u64 = 1000;

fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The soft and hard RLIMIT_NOFILE, the soft one raised towards `want`
/// with util-linux `prlimit` (children inherit it).
fn raise_nofile(want: u64) -> u64 {
    let read = || -> Option<(u64, u64)> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut cols = line.split_whitespace().skip(3);
        let parse = |c: Option<&str>| c.and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        Some((parse(cols.next()), parse(cols.next())))
    };
    let Some((soft, hard)) = read() else {
        return 1024;
    };
    if soft < want {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={}:{hard}", want.min(hard)))
            .status();
    }
    read().map_or(soft, |(now, _)| now)
}

/// `(VmRSS, VmHWM)` of a process, in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Server {
    child: Child,
    addr: String,
}

async fn start_server(scale: &Scale) -> Server {
    let path = example_path("ops");
    let mut child = Command::new(&path)
        .args(["127.0.0.1:0", "--budget-mib", &scale.budget_mib.to_string()])
        .args(["--grace-ms", &GRACE_MS.to_string()])
        .args(["--queue", "256", "--overflow", "drop"])
        .args([
            "--feed-size",
            &FEED_SIZE.to_string(),
            "--feed-interval-ms",
            "0",
        ])
        .args(["--ping-secs", "120"])
        .args([
            "--feed-after",
            &(scale.readers + scale.never_readers).to_string(),
        ])
        // glibc's allocator keeps freed memory for reuse (an arena per
        // thread, an mmap threshold that moves up); these settings, which
        // the README recommends for a tight memory bound, make it give
        // large blocks back at once.
        .env("MALLOC_ARENA_MAX", "2")
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} (cargo build --examples): {e}",
                path.display()
            )
        });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line))
        .await
        .expect("the server prints its URL")
        .unwrap();
    let start = line.find("http://").expect("a URL") + "http://".len();
    let addr = line[start..].split('/').next().unwrap().to_owned();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stdout.read_to_end(&mut sink).await;
    });
    Server { child, addr }
}

/// One counter of the server's `/metrics` (Prometheus text), summed over
/// its label sets that contain `label`.
async fn metric(addr: &str, name: &str, label: &str) -> u64 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Opens a WebSocket on `/ws` by hand; `Err(status)` if refused.
async fn handshake(addr: &str, path: &str, rcvbuf: Option<u32>) -> Result<TcpStream, u16> {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut tcp = socket
        .connect(addr.parse().unwrap())
        .await
        .map_err(|_| 0u16)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.map_err(|_| 0u16)?;
    // Byte by byte, so no frame after the head is read by accident.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if tcp.read_exact(&mut byte).await.is_err() {
            return Err(0);
        }
        head.push(byte[0]);
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status == 101 { Ok(tcp) } else { Err(status) }
}

/// Retries a handshake refused with 503 (the server asks for a second);
/// counts the refusals.
async fn connect(addr: &str, path: &str, rcvbuf: Option<u32>, refused: &AtomicU64) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match handshake(addr, path, rcvbuf).await {
            Ok(tcp) => return tcp,
            Err(status) => {
                assert!(
                    status == 503 || status == 0,
                    "unexpected handshake status {status}"
                );
                if status == 503 {
                    refused.fetch_add(1, Relaxed);
                }
                assert!(Instant::now() < deadline, "could not connect for 5 minutes");
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
        }
    }
}

/// A frame header as the server sends it (unmasked).
async fn read_header(r: &mut BufReader<TcpStream>) -> std::io::Result<(u8, usize)> {
    let mut two = [0u8; 2];
    r.read_exact(&mut two).await?;
    let len = match two[1] & 0x7f {
        126 => usize::from(r.read_u16().await?),
        127 => r.read_u64().await? as usize,
        n => usize::from(n),
    };
    Ok((two[0] & 0x0f, len))
}

/// What a healthy reader saw.
#[derive(Default)]
struct Reader {
    messages: AtomicU64,
    gaps: AtomicU64,
    corrupt: AtomicU64,
    closed: AtomicU64,
}

/// Reads the feed as fast as it comes, checking every message.
async fn healthy_reader(tcp: TcpStream, seen: Arc<Reader>) {
    let mut r = BufReader::with_capacity(256 << 10, tcp);
    let mut last = 0u64;
    let mut payload = vec![0u8; FEED_SIZE + 8];
    loop {
        let Ok((opcode, len)) = read_header(&mut r).await else {
            seen.closed.fetch_add(1, Relaxed);
            return;
        };
        if opcode == 0x8 || len > payload.len() {
            seen.closed.fetch_add(1, Relaxed);
            return;
        }
        if r.read_exact(&mut payload[..len]).await.is_err() {
            seen.closed.fetch_add(1, Relaxed);
            return;
        }
        if opcode != 0x2 {
            continue;
        }
        let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
        let body = &payload[8..len];
        let intact = body.len() == FEED_SIZE
            && body
                .iter()
                .enumerate()
                .step_by(97)
                .all(|(i, b)| *b == (seq as usize + i) as u8);
        if !intact {
            seen.corrupt.fetch_add(1, Relaxed);
        }
        if last != 0 && seq != last + 1 {
            seen.gaps.fetch_add(1, Relaxed);
        }
        last = seq;
        seen.messages.fetch_add(1, Relaxed);
    }
}

fn word_sum(data: &[u8]) -> u64 {
    data.chunks(8).fold(0u64, |s, w| {
        let mut word = [0u8; 8];
        word[..w.len()].copy_from_slice(w);
        s.wrapping_add(u64::from_le_bytes(word))
    })
}

/// How a 16 MiB sender fared.
#[derive(Debug, PartialEq)]
enum Sent {
    Acked,
    WrongAck(String),
    Closed(Option<u16>),
}

/// Sends one large message (masked with the key 0, so the payload goes out
/// as it is and one buffer serves every sender) and waits for its ack,
/// reading and dropping the feed meanwhile.
async fn sender(tcp: TcpStream, frame: Arc<Vec<u8>>, expected: String) -> Sent {
    let (read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move { write.write_all(&frame).await.map(|_| write) });
    let mut r = BufReader::with_capacity(256 << 10, read);
    let mut skip = vec![0u8; 64 << 10];
    let outcome = loop {
        let mut two = [0u8; 2];
        if r.read_exact(&mut two).await.is_err() {
            break Sent::Closed(None);
        }
        let len = match two[1] & 0x7f {
            126 => usize::from(r.read_u16().await.unwrap_or(0)),
            127 => r.read_u64().await.unwrap_or(0) as usize,
            n => usize::from(n),
        };
        let mut left = len;
        let mut head = Vec::new();
        while left > 0 {
            let n = left.min(skip.len());
            if r.read_exact(&mut skip[..n]).await.is_err() {
                break;
            }
            if head.len() < 128 {
                head.extend_from_slice(&skip[..n.min(128)]);
            }
            left -= n;
        }
        match two[0] & 0x0f {
            0x1 => {
                let text = String::from_utf8_lossy(&head).into_owned();
                break if text == expected {
                    Sent::Acked
                } else {
                    Sent::WrongAck(text)
                };
            }
            0x8 => {
                break Sent::Closed(
                    (head.len() >= 2).then(|| u16::from_be_bytes([head[0], head[1]])),
                );
            }
            _ => {}
        }
    };
    writer.abort();
    outcome
}

/// Reads what a never-reader's socket still holds, to its end; whether the
/// server closed it (EOF within the timeout).
/// Reads what a never-reader's socket holds: a closed connection ends
/// after what the kernels buffered; an open one keeps receiving the feed
/// (more than the 64 MiB the kernels can hold for it) or nothing at all.
async fn drained_to_eof(mut tcp: TcpStream) -> bool {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0;
    while total < 64 << 20 {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => total += n,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_holds_under_overload() {
    let scale = if cfg!(debug_assertions) { SMALL } else { FULL };
    let total = scale.never_readers + scale.senders + scale.readers;
    let nofile = raise_nofile(2 * total as u64 + 1024);
    assert!(
        nofile >= total as u64 + 512,
        "need {} file descriptors, have {nofile}: raise `ulimit -n`",
        total + 512
    );
    let started = Instant::now();
    let server = start_server(&scale).await;
    let pid = server.child.id().unwrap();
    let addr = server.addr.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (base_rss, _) = memory_of(pid);
    let budget = (scale.budget_mib as u64) << 20;

    // Sample the server's memory all along.
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak_sampled.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(memory_of(pid).0, Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let refused = Arc::new(AtomicU64::new(0));

    // Healthy readers first; they read the whole time.
    let seen = Arc::new(Reader::default());
    for _ in 0..scale.readers {
        let tcp = connect(&addr, "/ws", None, &refused).await;
        tokio::spawn(healthy_reader(tcp, seen.clone()));
    }

    // Connections that never read (small receive buffers, so the kernel
    // holds little for them), opened a hundred at a time.
    let opened = Arc::new(AtomicUsize::new(0));
    let mut never: Vec<TcpStream> = Vec::with_capacity(scale.never_readers);
    for batch in (0..scale.never_readers).collect::<Vec<_>>().chunks(100) {
        let handles: Vec<_> = batch
            .iter()
            .map(|_| {
                let (addr, refused, opened) = (addr.clone(), refused.clone(), opened.clone());
                tokio::spawn(async move {
                    let tcp = connect(&addr, "/ws", Some(4096), &refused).await;
                    opened.fetch_add(1, Relaxed);
                    tcp
                })
            })
            .collect();
        for h in handles {
            never.push(h.await.unwrap());
        }
    }
    let connected_at = started.elapsed();

    // Then every sender at once, one large message each.
    let mut frame = vec![0x82u8, 0x80 | 127];
    frame.extend_from_slice(&(scale.message as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    let payload_start = frame.len();
    frame.extend((0..scale.message).map(|i| (i * 7 + i / 4096) as u8));
    let expected = format!(
        "ack {} {:016x}",
        scale.message,
        word_sum(&frame[payload_start..])
    );
    let frame = Arc::new(frame);
    let senders: Vec<_> = (0..scale.senders)
        .map(|_| {
            let (addr, refused, frame, expected) = (
                addr.clone(),
                refused.clone(),
                frame.clone(),
                expected.clone(),
            );
            tokio::spawn(async move {
                let tcp = connect(&addr, "/upload", None, &refused).await;
                sender(tcp, frame, expected).await
            })
        })
        .collect();
    // Progress, every few seconds.
    let monitor = {
        let (addr, seen) = (addr.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                println!(
                    "  .. {:.0} s: server RSS {:.1} MiB, buffered {:.1} MiB, open {}, budget closes {}, acks {}, readers got {}",
                    started.elapsed().as_secs_f64(),
                    memory_of(pid).0 as f64 / (1 << 20) as f64,
                    metric(&addr, "tower_ws_buffered_bytes", "").await as f64 / (1 << 20) as f64,
                    metric(&addr, "tower_ws_connections_open", "").await,
                    metric(&addr, "tower_ws_budget_closes_total", "").await,
                    metric(&addr, "tower_ws_payload_bytes_total", "direction=\"in\"").await >> 24,
                    seen.messages.load(Relaxed),
                );
            }
        })
    };
    let received_before = seen.messages.load(Relaxed);
    let peak_before_senders = peak_sampled.load(Relaxed);
    let mut outcomes = Vec::new();
    for s in senders {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(300), s)
                .await
                .expect("every sender finishes")
                .unwrap(),
        );
    }
    let sent_at = started.elapsed();
    let received_during = seen.messages.load(Relaxed) - received_before;

    // The budget closes never-readers while it is exhausted: wait until
    // that settles (every one of them, or no more closes for 3 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut budget_closes, mut settled) = (0, Instant::now());
    while Instant::now() < deadline && settled.elapsed() < Duration::from_secs(3) {
        let now = metric(&addr, "tower_ws_budget_closes_total", "").await;
        if now != budget_closes {
            (budget_closes, settled) = (now, Instant::now());
        }
        if budget_closes >= scale.never_readers as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, hwm) = memory_of(pid);
    let peak = hwm.max(peak_sampled.load(Relaxed));
    let drains: Vec<_> = never
        .into_iter()
        .map(|tcp| tokio::spawn(drained_to_eof(tcp)))
        .collect();
    let mut closed_never = 0;
    for drain in drains {
        if drain.await.unwrap() {
            closed_never += 1;
        }
    }
    // Closes that happened while draining count too.
    let budget_closes = metric(&addr, "tower_ws_budget_closes_total", "").await;

    // The never-readers are gone (dropped after the check): the pressure is
    // over, and the buffered bytes go back to almost nothing.
    let mut buffered = u64::MAX;
    for _ in 0..100 {
        buffered = metric(&addr, "tower_ws_buffered_bytes", "").await;
        if buffered < 4 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss_after, _) = memory_of(pid);
    let received_after = seen.messages.load(Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still_receiving = seen.messages.load(Relaxed) > received_after;
    let refused_server = metric(
        &addr,
        "tower_ws_handshakes_refused_total",
        "reason=\"memory_budget\"",
    )
    .await;
    let keepalive = metric(&addr, "tower_ws_keepalive_timeouts_total", "").await;
    let overflow = metric(&addr, "tower_ws_hub_overflow_closes_total", "").await;
    let dropped = metric(&addr, "tower_ws_hub_messages_dropped_total", "").await;
    sampler.abort();
    monitor.abort();

    let acked = outcomes.iter().filter(|o| **o == Sent::Acked).count();
    let closed_senders: Vec<_> = outcomes.iter().filter(|o| **o != Sent::Acked).collect();
    let allowed = budget + OVERHEAD_BASE + OVERHEAD_PER_CONNECTION * total as u64;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "overload: {} never-readers, {} senders of {} MiB, {} healthy readers; budget {} MiB",
        scale.never_readers,
        scale.senders,
        scale.message >> 20,
        scale.readers,
        scale.budget_mib
    );
    println!(
        "  connected in {:.1} s, senders done at {:.1} s, checked at {:.1} s",
        connected_at.as_secs_f64(),
        sent_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  server RSS: {:.1} MiB at start, peak {:.1} MiB before the senders and {:.1} MiB overall (bound {:.1} = budget + {:.0} MiB + {} KiB x {} connections), {:.1} MiB after",
        mib(base_rss),
        mib(peak_before_senders),
        mib(peak),
        mib(allowed),
        mib(OVERHEAD_BASE),
        OVERHEAD_PER_CONNECTION >> 10,
        total,
        mib(rss_after)
    );
    println!(
        "  never-readers: {closed_never} of {} closed by the server; budget closes counted {budget_closes}",
        scale.never_readers
    );
    println!(
        "  senders: {acked} of {} acked (checksum verified), others: {:?}",
        scale.senders, closed_senders
    );
    println!(
        "  handshakes refused with 503: {} seen by clients, {refused_server} counted by the server",
        refused.load(Relaxed)
    );
    println!(
        "  healthy readers: {} messages of 64 KiB ({received_during} while the senders ran), {} gaps (dropped for a full queue), {} corrupt, {} closed",
        seen.messages.load(Relaxed),
        seen.gaps.load(Relaxed),
        seen.corrupt.load(Relaxed),
        seen.closed.load(Relaxed)
    );
    println!(
        "  hub: {dropped} messages dropped for full queues, {overflow} overflow closes; keepalive timeouts {keepalive}; buffered after: {:.1} MiB",
        mib(buffered)
    );

    assert!(
        peak <= allowed,
        "peak RSS {:.1} MiB over the bound {:.1} MiB",
        mib(peak),
        mib(allowed)
    );
    assert_eq!(
        budget_closes, closed_never as u64,
        "every never-reader the server closed is counted as a budget close"
    );
    // The budget closes them until it is below seven eighths again: nearly
    // all, as each holds a full write buffer; the few left hold what fits.
    assert!(
        closed_never * 10 >= scale.never_readers * 9,
        "most never-readers are closed to relieve the pressure"
    );
    assert_eq!(acked, scale.senders, "every large message got through");
    assert_eq!(
        refused.load(Relaxed),
        refused_server,
        "every 503 is counted"
    );
    assert_eq!(
        seen.closed.load(Relaxed),
        0,
        "healthy readers stay connected"
    );
    assert_eq!(seen.corrupt.load(Relaxed), 0);
    assert!(
        received_during > 0,
        "healthy readers receive while the senders run"
    );
    assert!(still_receiving, "and after");
    assert!(
        buffered < 4 << 20,
        "buffered bytes return when the pressure ends: {buffered}"
    );
    assert_eq!(keepalive, 0);
}
