//! Fan-out load generator: one publisher connection, N subscriber
//! connections, against any server that broadcasts every message it
//! receives to every connected client (tower-ws's `examples/broadcast.rs`;
//! with several `--addr`, nodes of one cluster: the publisher talks to the
//! first, subscribers are spread over all of them).
//!
//!   fanout --addr 127.0.0.1:9002 [--addr 127.0.0.1:9003 ...] [--path /]
//!          [--subscribers 1000] [--size 64] [--inflight 16] [--seconds 5]
//!          [--warmup 1] [--pid SERVER_PID ...]
//!
//! Each message carries its sequence number and send time; the publisher
//! keeps at most `--inflight` messages ahead of the slowest subscriber, so
//! the run measures the sustainable rate rather than queue overflow. A
//! subscriber that falls behind longer than 200 ms is counted in `stalls`
//! and the publisher goes on. One JSON line goes to stdout: broadcasts and
//! deliveries per second, publish-to-delivery latency p50/p99 (all
//! subscribers, 1 µs buckets), deliveries lost (gaps in the sequence a
//! subscriber saw), and with `--pid` the
//! servers' CPU utilisation over the window.

use std::cell::{Cell, RefCell};
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tower_ws_bench::client::{Conn, FrameReader, connect};
use tower_ws_bench::payload::{OP_BINARY, OP_PONG, client_frame};
use tower_ws_bench::{TICKS_PER_SEC, cpu_ticks};

const MASK: [u8; 4] = [0x5a, 0x11, 0xc3, 0x7e];
const CONNECT_WAVE: usize = 64;
/// Sequence number and send time (ns since start), little-endian.
const HEAD: usize = 16;
/// Latency histogram: 1 µs buckets up to 1 s (the last collects the rest).
const BUCKETS: usize = 1_000_000;
/// How long the publisher waits for the slowest subscriber.
const STALL: Duration = Duration::from_millis(200);

struct Args {
    addrs: Vec<String>,
    path: String,
    subscribers: usize,
    size: usize,
    inflight: u64,
    seconds: f64,
    warmup: f64,
    pids: Vec<u32>,
}

fn parse_args() -> Args {
    let mut a = Args {
        addrs: Vec::new(),
        path: "/".into(),
        subscribers: 1000,
        size: 64,
        inflight: 16,
        seconds: 5.0,
        warmup: 1.0,
        pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => a.addrs.push(val()),
            "--path" => a.path = val(),
            "--subscribers" => a.subscribers = num(&val()),
            "--size" => a.size = num(&val()),
            "--inflight" => a.inflight = num(&val()),
            "--seconds" => a.seconds = num(&val()),
            "--warmup" => a.warmup = num(&val()),
            "--pid" => a.pids.push(num(&val())),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if a.addrs.is_empty() {
        a.addrs.push("127.0.0.1:9002".into());
    }
    if a.subscribers == 0 || a.inflight == 0 {
        usage("--subscribers and --inflight must be at least 1");
    }
    a.size = a.size.max(HEAD);
    a
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(msg: &str) -> ! {
    eprintln!("fanout: {msg}\nsee the top of bench/src/bin/fanout.rs for the arguments");
    exit(2)
}

/// Shared by the tasks on the one thread.
struct State {
    start: Instant,
    /// The measuring window, set once every subscriber is reached.
    window: Cell<(Instant, Instant)>,
    /// Per subscriber: one past the highest sequence number received.
    seen: Vec<Cell<u64>>,
    delivered: Cell<u64>,
    published: Cell<u64>,
    published_total: Cell<u64>,
    stalls: Cell<u64>,
    /// Messages a subscriber never got (gaps in the sequence it saw).
    lost: Cell<u64>,
    errors: Cell<u64>,
    latency: RefCell<Vec<u64>>,
    progress: Notify,
}

impl State {
    fn in_window(&self, t: Instant) -> bool {
        let (from, to) = self.window.get();
        t >= from && t <= to
    }

    fn min_seen(&self) -> u64 {
        self.seen.iter().map(Cell::get).min().unwrap_or(0)
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    exit(local.block_on(&rt, run(args)));
}

async fn run(args: Args) -> i32 {
    let mut subscribers = Vec::with_capacity(args.subscribers);
    let mut errors = 0;
    for wave in (0..args.subscribers)
        .collect::<Vec<_>>()
        .chunks(CONNECT_WAVE)
    {
        let attempts = wave.iter().map(|&i| {
            let addr = &args.addrs[i % args.addrs.len()];
            connect(addr, &args.path, i as u64, false)
        });
        for r in futures_util::future::join_all(attempts).await {
            match r {
                Ok(c) => subscribers.push(c),
                Err(e) => {
                    if errors == 0 {
                        eprintln!("fanout: connect: {e}");
                    }
                    errors += 1;
                }
            }
        }
    }
    let publisher = match connect(&args.addrs[0], &args.path, u64::MAX, false).await {
        Ok(c) => c,
        Err(e) => {
            println!(r#"{{"error":"publisher: {e}","errors":{}}}"#, errors + 1);
            return 1;
        }
    };
    if subscribers.len() < args.subscribers {
        println!(r#"{{"error":"not every subscriber connected","errors":{errors}}}"#);
        return 1;
    }

    let start = Instant::now();
    let state = Rc::new(State {
        start,
        window: Cell::new((start, start)),
        seen: (0..subscribers.len()).map(|_| Cell::new(0)).collect(),
        delivered: Cell::new(0),
        published: Cell::new(0),
        published_total: Cell::new(0),
        stalls: Cell::new(0),
        lost: Cell::new(0),
        errors: Cell::new(errors),
        latency: RefCell::new(vec![0; BUCKETS]),
        progress: Notify::new(),
    });
    let Conn { tcp, reader, .. } = publisher;
    let (publisher_rd, mut publisher_wr) = tcp.into_split();
    // The publisher's own copies (if the server sends them) are read and
    // dropped, so its socket never fills.
    tokio::task::spawn_local(drain(publisher_rd, reader));
    for (i, conn) in subscribers.into_iter().enumerate() {
        tokio::task::spawn_local(subscribe(i, conn, state.clone()));
    }

    // Probe until every subscriber got a message: on several nodes, the
    // others subscribe to the broadcast when their first client arrives.
    let mut seq = 0;
    let probing = Instant::now();
    while state.min_seen() == 0 {
        if probing.elapsed() > Duration::from_secs(10) {
            println!(
                r#"{{"error":"a subscriber received nothing within 10 s","errors":{}}}"#,
                state.errors.get()
            );
            return 1;
        }
        if send(&mut publisher_wr, seq, &state, args.size)
            .await
            .is_err()
        {
            println!(r#"{{"error":"publisher write failed"}}"#);
            return 1;
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let window_start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);
    state.window.set((window_start, window_end));
    let mut cpu_start = None;
    let mut floor = state.min_seen();
    while Instant::now() < window_end {
        if cpu_start.is_none() && Instant::now() >= window_start {
            cpu_start = Some(sample(&args.pids));
        }
        if seq >= floor + args.inflight {
            floor = state.min_seen();
            if seq >= floor + args.inflight {
                let wait = tokio::time::timeout(STALL, state.progress.notified()).await;
                if wait.is_err() {
                    // A subscriber is stuck (or lost a message): go on.
                    state.stalls.set(state.stalls.get() + 1);
                    floor = seq + 1 - args.inflight;
                }
                continue;
            }
        }
        if send(&mut publisher_wr, seq, &state, args.size)
            .await
            .is_err()
        {
            state.errors.set(state.errors.get() + 1);
            break;
        }
        seq += 1;
    }
    let cpu_end = sample(&args.pids);
    report(&args, &state, cpu_start.unwrap_or(cpu_end), cpu_end);
    0
}

/// CPU ticks of the servers (summed) and of this process.
fn sample(pids: &[u32]) -> (Option<u64>, Option<u64>) {
    let servers = pids.iter().map(|&pid| cpu_ticks(pid)).sum::<Option<u64>>();
    (
        servers.filter(|_| !pids.is_empty()),
        cpu_ticks(std::process::id()),
    )
}

/// Sends message `seq`, stamped with the time since start.
async fn send(
    wr: &mut OwnedWriteHalf,
    seq: u64,
    state: &State,
    size: usize,
) -> std::io::Result<()> {
    let mut payload = vec![0x42; size];
    payload[..8].copy_from_slice(&seq.to_le_bytes());
    let now = state.start.elapsed().as_nanos() as u64;
    payload[8..HEAD].copy_from_slice(&now.to_le_bytes());
    wr.write_all(&client_frame(OP_BINARY, false, &payload, MASK))
        .await?;
    state.published_total.set(state.published_total.get() + 1);
    if state.in_window(Instant::now()) {
        state.published.set(state.published.get() + 1);
    }
    Ok(())
}

/// One subscriber: records each message's delay and its progress.
async fn subscribe(i: usize, conn: Conn, state: Rc<State>) {
    let Conn {
        tcp, mut reader, ..
    } = conn;
    let (mut rd, mut wr) = tcp.into_split();
    let mut head = [0u8; HEAD];
    loop {
        let (_, len, received) = match reader.recv_head(&mut rd, &mut head).await {
            Ok(got) => got,
            Err(e) => {
                eprintln!("fanout: subscriber {i}: {e}");
                state.errors.set(state.errors.get() + 1);
                return;
            }
        };
        for ping in &received.pings {
            let _ = wr
                .write_all(&client_frame(OP_PONG, false, ping, MASK))
                .await;
        }
        if len < HEAD {
            continue;
        }
        let seq = u64::from_le_bytes(head[..8].try_into().unwrap());
        let sent = Duration::from_nanos(u64::from_le_bytes(head[8..].try_into().unwrap()));
        let now = Instant::now();
        let seen = &state.seen[i];
        if seen.get() > 0 && seq > seen.get() {
            state.lost.set(state.lost.get() + seq - seen.get());
        }
        seen.set(seen.get().max(seq + 1));
        if state.in_window(now) {
            state.delivered.set(state.delivered.get() + 1);
            let us = now
                .duration_since(state.start)
                .saturating_sub(sent)
                .as_micros() as usize;
            state.latency.borrow_mut()[us.min(BUCKETS - 1)] += 1;
        }
        state.progress.notify_one();
    }
}

/// Reads and drops whatever reaches the publisher.
async fn drain(mut rd: tokio::net::tcp::OwnedReadHalf, mut reader: FrameReader) {
    let mut head = [0u8; HEAD];
    while reader.recv_head(&mut rd, &mut head).await.is_ok() {}
}

/// The `p`-quantile of the histogram, in µs.
fn quantile(hist: &[u64], p: f64) -> Option<usize> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * p).ceil() as u64).max(1);
    let mut seen = 0;
    hist.iter().position(|&n| {
        seen += n;
        seen >= rank
    })
}

fn report(
    args: &Args,
    state: &State,
    a: (Option<u64>, Option<u64>),
    b: (Option<u64>, Option<u64>),
) {
    let hist = state.latency.borrow();
    let fmt = |v: Option<usize>| v.map_or("null".into(), |v| v.to_string());
    let util = |a: Option<u64>, b: Option<u64>| {
        a.zip(b).map_or("null".into(), |(a, b)| {
            format!("{:.2}", (b - a) as f64 / TICKS_PER_SEC / args.seconds)
        })
    };
    let published = state.published.get();
    let delivered = state.delivered.get();
    println!(
        concat!(
            r#"{{"mode":"fanout","nodes":{},"subscribers":{},"size":{},"inflight":{},"seconds":{},"#,
            r#""published":{},"published_total":{},"delivered":{},"#,
            r#""broadcasts_per_sec":{:.1},"delivered_per_sec":{:.1},"#,
            r#""p50_us":{},"p99_us":{},"lost":{},"stalls":{},"errors":{},"#,
            r#""server_cpu_util":{},"load_cpu_util":{}}}"#
        ),
        args.addrs.len(),
        args.subscribers,
        args.size,
        args.inflight,
        args.seconds,
        published,
        state.published_total.get(),
        delivered,
        published as f64 / args.seconds,
        delivered as f64 / args.seconds,
        fmt(quantile(&hist, 0.50)),
        fmt(quantile(&hist, 0.99)),
        state.lost.get(),
        state.stalls.get(),
        state.errors.get(),
        util(a.0, b.0),
        util(a.1, b.1),
    );
}
