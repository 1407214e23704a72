//! Fan-out load generator: one publisher connection, N subscriber
//! connections, against any server that broadcasts every message it
//! receives to every connected client (tower-ws's `examples/broadcast.rs`,
//! `bench/uws/pubsub.cpp`, `bench/node/broadcast.js`, the `floor_fanout`
//! bin; with several `--addr`, nodes of one cluster: the publisher talks to
//! the first, subscribers are spread over all of them).
//!
//!   fanout --addr 127.0.0.1:9002 [--addr 127.0.0.1:9003 ...] [--path /]
//!          [--subscribers 1000] [--size 20] [--seconds 5] [--warmup 1]
//!          [--inflight 1 | --rate BROADCASTS_PER_SEC] [--deflate]
//!          [--sources 1] [--pid SERVER_PID ...]
//!
//! Closed loop (default): the publisher keeps at most `--inflight`
//! broadcasts unfinished, a broadcast being finished when every subscriber
//! has it; `--inflight 1` sends the next message only when every subscriber
//! got the previous one. A broadcast unfinished for a second (or 500 µs per
//! subscriber) is counted in `stalls` and the publisher goes on. Open loop (`--rate R`): R broadcasts
//! per second on a fixed schedule whatever the subscribers do, for latency
//! under a given load.
//!
//! Each message is `--size` bytes: its sequence number and send time, then
//! JSON-like text (so `--deflate`, which offers permessage-deflate, has
//! something realistic to compress). The publisher sends uncompressed; the
//! server compresses what it sends if it negotiated the extension.
//! `--sources K` spreads the subscribers' sockets over the loopback source
//! addresses 127.0.0.1 ..= 127.0.0.K.
//!
//! One JSON line goes to stdout: broadcasts and deliveries per second,
//! publish-to-delivery latency p50/p99 over all deliveries, the slowest
//! subscriber's lag (publish to last delivery of each broadcast) p50/p99,
//! deliveries lost (gaps in the sequence a subscriber saw), and with `--pid`
//! the servers' CPU over the window, also per delivered message. The
//! server's copy to the publisher itself (if it sends one) is not counted.

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tower_ws_bench::client::{Conn, FrameReader, connect_from};
use tower_ws_bench::payload::{OP_BINARY, OP_PONG, client_frame, json};
use tower_ws_bench::transport::Transport;
use tower_ws_bench::{TICKS_PER_SEC, cpu_ticks};

const MASK: [u8; 4] = [0x5a, 0x11, 0xc3, 0x7e];
const CONNECT_WAVE: usize = 64;
/// Sequence number and send time (ns since start), little-endian.
const HEAD: usize = 16;
/// Latency histograms: 1 µs buckets up to 1 s (the last collects the rest).
const BUCKETS: usize = 1_000_000;
/// How long the closed-loop publisher waits for the slowest subscriber:
/// this, or 500 µs per subscriber if longer (a slow server takes seconds to
/// compress a message for each of 10,000 subscribers).
const STALL: Duration = Duration::from_secs(1);
/// Broadcasts tracked at once (for the slowest-subscriber lag).
const RING: usize = 1 << 16;
/// Each subscriber's receive buffer: payloads stream through it.
const SUBSCRIBER_BUFFER: usize = 32 * 1024;

struct Args {
    addrs: Vec<String>,
    path: String,
    subscribers: usize,
    size: usize,
    inflight: u64,
    rate: Option<f64>,
    deflate: bool,
    sources: u8,
    seconds: f64,
    warmup: f64,
    pids: Vec<u32>,
}

fn parse_args() -> Args {
    let mut a = Args {
        addrs: Vec::new(),
        path: "/".into(),
        subscribers: 1000,
        size: 20,
        inflight: 1,
        rate: None,
        deflate: false,
        sources: 1,
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
            "--rate" => a.rate = Some(num(&val())),
            "--deflate" => a.deflate = true,
            "--sources" => a.sources = num(&val()),
            "--seconds" => a.seconds = num(&val()),
            "--warmup" => a.warmup = num(&val()),
            "--pid" => a.pids.push(num(&val())),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if a.addrs.is_empty() {
        a.addrs.push("127.0.0.1:9002".into());
    }
    if a.subscribers == 0 || a.inflight == 0 || a.sources == 0 {
        usage("--subscribers, --inflight and --sources must be at least 1");
    }
    if a.inflight as usize > RING / 2 || a.rate.is_some_and(|r| r <= 0.0) {
        usage("--inflight must be at most 32768 and --rate above 0");
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

/// One broadcast in flight: how many subscribers still miss it.
#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    missing: usize,
}

/// Shared by the tasks on the one thread.
struct State {
    start: Instant,
    subscribers: usize,
    /// The measuring window, set once every subscriber is reached.
    window: Cell<(Instant, Instant)>,
    /// Per subscriber: one past the highest sequence number received.
    seen: Vec<Cell<u64>>,
    /// Broadcasts by `seq % RING`.
    ring: RefCell<Vec<Slot>>,
    /// Every broadcast below this one is finished (or given up).
    finished_below: Cell<u64>,
    /// Sequence numbers handed out so far.
    sent: Cell<u64>,
    delivered: Cell<u64>,
    published: Cell<u64>,
    stalls: Cell<u64>,
    /// Messages a subscriber never got (gaps in the sequence it saw).
    lost: Cell<u64>,
    errors: Cell<u64>,
    /// Publish to delivery, every delivery in the window.
    latency: RefCell<Vec<u64>>,
    /// Publish to last delivery, every broadcast sent in the window.
    lag: RefCell<Vec<u64>>,
    negotiated_deflate: Cell<bool>,
    /// Wakes the closed-loop publisher when `finished_below` moves.
    progress: Notify,
}

impl State {
    /// Before the run: the window is empty until the probing is over.
    fn new(subscribers: usize, errors: u64, negotiated_deflate: bool) -> Self {
        let start = Instant::now();
        let empty = Slot {
            seq: u64::MAX,
            missing: 0,
        };
        State {
            start,
            subscribers,
            window: Cell::new((start, start)),
            seen: (0..subscribers).map(|_| Cell::new(0)).collect(),
            ring: RefCell::new(vec![empty; RING]),
            finished_below: Cell::new(0),
            sent: Cell::new(0),
            delivered: Cell::new(0),
            published: Cell::new(0),
            stalls: Cell::new(0),
            lost: Cell::new(0),
            errors: Cell::new(errors),
            latency: RefCell::new(vec![0; BUCKETS]),
            lag: RefCell::new(vec![0; BUCKETS]),
            negotiated_deflate: Cell::new(negotiated_deflate),
            progress: Notify::new(),
        }
    }

    fn in_window(&self, t: Instant) -> bool {
        let (from, to) = self.window.get();
        t >= from && t <= to
    }

    fn min_seen(&self) -> u64 {
        self.seen.iter().map(Cell::get).min().unwrap_or(0)
    }

    fn since_start(&self, t: Instant) -> Duration {
        t.duration_since(self.start)
    }

    /// A new broadcast: every subscriber misses it.
    fn publish(&self, seq: u64) {
        self.ring.borrow_mut()[seq as usize % RING] = Slot {
            seq,
            missing: self.subscribers,
        };
        self.sent.set(seq + 1);
    }

    /// Subscriber got broadcast `seq`, published `lag` ago.
    fn got(&self, seq: u64, sent_at: Instant, lag: Duration) {
        let mut ring = self.ring.borrow_mut();
        let slot = &mut ring[seq as usize % RING];
        if slot.seq != seq || slot.missing == 0 {
            return;
        }
        slot.missing -= 1;
        if slot.missing > 0 {
            return;
        }
        if self.in_window(sent_at) {
            record(&mut self.lag.borrow_mut(), lag);
        }
        let mut below = self.finished_below.get();
        if seq != below {
            return;
        }
        while below < self.sent.get() && ring[below as usize % RING].missing == 0 {
            below += 1;
        }
        self.finished_below.set(below);
        self.progress.notify_one();
    }

    /// The closed-loop publisher gives up waiting for broadcasts below `seq`.
    fn give_up_below(&self, seq: u64) {
        let mut ring = self.ring.borrow_mut();
        for s in self.finished_below.get()..seq {
            ring[s as usize % RING].missing = 0;
        }
        self.finished_below.set(seq.max(self.finished_below.get()));
    }
}

fn record(hist: &mut [u64], d: Duration) {
    hist[(d.as_micros() as usize).min(BUCKETS - 1)] += 1;
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
            let from = (args.sources > 1)
                .then(|| IpAddr::from([127, 0, 0, 1 + (i % args.sources as usize) as u8]));
            let buffer = SUBSCRIBER_BUFFER;
            connect_from(from, addr, &args.path, i as u64, args.deflate, buffer)
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
    let publisher = connect_from(
        None,
        &args.addrs[0],
        &args.path,
        u64::MAX,
        args.deflate,
        1024,
    );
    let publisher = match publisher.await {
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

    let deflate = subscribers.iter().all(|c| c.deflate.is_some());
    let state = Rc::new(State::new(subscribers.len(), errors, deflate));
    let (tcp, reader) = tcp_of(publisher);
    let (publisher_rd, mut publisher_wr) = tcp.into_split();
    // The publisher's own copies (if the server sends them) are read and
    // dropped, so its socket never fills.
    tokio::task::spawn_local(drain(publisher_rd, reader));
    for (i, conn) in subscribers.into_iter().enumerate() {
        tokio::task::spawn_local(subscribe(i, conn, state.clone()));
    }
    let mut publisher = Publisher {
        wr: &mut publisher_wr,
        body: body(args.size),
        seq: 0,
        state: &state,
    };

    // Probe until every subscriber got a message: on several nodes, the
    // others subscribe to the broadcast when their first client arrives.
    // Each probe gets time to reach everyone (10,000 subscribers take a
    // while), so the run does not start behind a queue of probes.
    let probing = Instant::now();
    while state.min_seen() == 0 {
        if probing.elapsed() > Duration::from_secs(10) {
            println!(
                r#"{{"error":"a subscriber received nothing within 10 s","errors":{}}}"#,
                state.errors.get()
            );
            return 1;
        }
        if publisher.send().await.is_err() {
            println!(r#"{{"error":"publisher write failed"}}"#);
            return 1;
        }
        let sent = Instant::now();
        while state.min_seen() == 0 && sent.elapsed() < Duration::from_millis(500) {
            let _ =
                tokio::time::timeout(Duration::from_millis(20), state.progress.notified()).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    state.give_up_below(publisher.seq);

    let window_start = Instant::now() + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);
    state.window.set((window_start, window_end));
    let mut cpu_start = None;
    let mut next = Instant::now();
    let stall = STALL.max(Duration::from_micros(500) * args.subscribers as u32);
    while Instant::now() < window_end {
        if cpu_start.is_none() && Instant::now() >= window_start {
            cpu_start = Some(sample(&args.pids));
            // For bench/instructions.sh, which brackets the window.
            eprintln!("fanout: window open");
        }
        if let Some(rate) = args.rate {
            // Open loop: the schedule does not wait for anyone; behind it
            // (a slow load generator), messages go out back to back.
            if next > Instant::now() {
                tokio::time::sleep_until(next.into()).await;
            }
            next += Duration::from_secs_f64(1.0 / rate);
        } else if publisher.seq >= state.finished_below.get() + args.inflight {
            let wait = tokio::time::timeout(stall, state.progress.notified()).await;
            if wait.is_err() {
                // A subscriber is stuck (or lost a message): go on.
                state.stalls.set(state.stalls.get() + 1);
                state.give_up_below(publisher.seq + 1 - args.inflight);
            }
            continue;
        }
        if publisher.send().await.is_err() {
            state.errors.set(state.errors.get() + 1);
            break;
        }
    }
    let cpu_end = sample(&args.pids);
    eprintln!("fanout: window closed");
    report(&args, &state, cpu_start.unwrap_or(cpu_end), cpu_end);
    0
}

/// The message body after the head: JSON-like text, exactly `size` bytes in all.
fn body(size: usize) -> Vec<u8> {
    let mut body = json(size - HEAD, 1);
    body.resize(size - HEAD, b' ');
    body
}

/// CPU ticks of the servers (summed) and of this process.
fn sample(pids: &[u32]) -> (Option<u64>, Option<u64>) {
    let servers = pids.iter().map(|&pid| cpu_ticks(pid)).sum::<Option<u64>>();
    (
        servers.filter(|_| !pids.is_empty()),
        cpu_ticks(std::process::id()),
    )
}

struct Publisher<'a> {
    wr: &'a mut OwnedWriteHalf,
    body: Vec<u8>,
    seq: u64,
    state: &'a State,
}

impl Publisher<'_> {
    /// Sends the next message, stamped with its sequence number and the time.
    async fn send(&mut self) -> std::io::Result<()> {
        let state = self.state;
        let mut payload = Vec::with_capacity(HEAD + self.body.len());
        let now = Instant::now();
        payload.extend_from_slice(&self.seq.to_le_bytes());
        payload.extend_from_slice(&(state.since_start(now).as_nanos() as u64).to_le_bytes());
        payload.extend_from_slice(&self.body);
        state.publish(self.seq);
        self.seq += 1;
        self.wr
            .write_all(&client_frame(OP_BINARY, false, &payload, MASK))
            .await?;
        if state.in_window(now) {
            state.published.set(state.published.get() + 1);
        }
        Ok(())
    }
}

/// One subscriber: records each message's delay and its progress.
async fn subscribe(i: usize, conn: Conn, state: Rc<State>) {
    let (tcp, mut reader) = tcp_of(conn);
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
        let delay = state.since_start(now).saturating_sub(sent);
        if state.in_window(now) {
            state.delivered.set(state.delivered.get() + 1);
            record(&mut state.latency.borrow_mut(), delay);
        }
        state.got(seq, state.start + sent, delay);
    }
}

/// The socket and reader of an HTTP/1.1 connection (all `connect_from` makes).
fn tcp_of(conn: Conn) -> (tokio::net::TcpStream, FrameReader) {
    match conn.io {
        Transport::Tcp(tcp) => (tcp, conn.reader),
        Transport::H2(..) => unreachable!("fanout connects over HTTP/1.1 only"),
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

type Sample = (Option<u64>, Option<u64>);

fn report(args: &Args, state: &State, a: Sample, b: Sample) {
    let latency = state.latency.borrow();
    let lag = state.lag.borrow();
    let fmt = |v: Option<usize>| v.map_or("null".into(), |v| v.to_string());
    let secs =
        |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| (b - a) as f64 / TICKS_PER_SEC);
    let util = |cpu: Option<f64>| cpu.map_or("null".into(), |c| format!("{:.2}", c / args.seconds));
    let published = state.published.get();
    let delivered = state.delivered.get();
    let server_cpu = secs(a.0, b.0);
    let per_delivery = server_cpu
        .filter(|_| delivered > 0)
        .map_or("null".into(), |c| {
            format!("{:.3}", c * 1e6 / delivered as f64)
        });
    let rate = args.rate.map_or("null".into(), |r| r.to_string());
    println!(
        concat!(
            r#"{{"mode":"fanout","nodes":{},"subscribers":{},"size":{},"deflate":{},"#,
            r#""negotiated_deflate":{},"loop":"{}","inflight":{},"rate":{},"seconds":{},"#,
            r#""published":{},"published_total":{},"delivered":{},"#,
            r#""broadcasts_per_sec":{:.1},"delivered_per_sec":{:.1},"#,
            r#""p50_us":{},"p99_us":{},"lag_p50_us":{},"lag_p99_us":{},"#,
            r#""lost":{},"stalls":{},"errors":{},"#,
            r#""server_cpu_util":{},"server_cpu_us_per_delivery":{},"load_cpu_util":{}}}"#
        ),
        args.addrs.len(),
        args.subscribers,
        args.size,
        args.deflate,
        state.negotiated_deflate.get(),
        if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        args.inflight,
        rate,
        args.seconds,
        published,
        state.sent.get(),
        delivered,
        published as f64 / args.seconds,
        delivered as f64 / args.seconds,
        fmt(quantile(&latency, 0.50)),
        fmt(quantile(&latency, 0.99)),
        fmt(quantile(&lag, 0.50)),
        fmt(quantile(&lag, 0.99)),
        state.lost.get(),
        state.stalls.get(),
        state.errors.get(),
        util(server_cpu),
        per_delivery,
        util(secs(a.1, b.1)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(subscribers: usize) -> State {
        let s = State::new(subscribers, 0, false);
        s.window.set((s.start, s.start + Duration::from_secs(60)));
        s
    }

    #[test]
    fn a_broadcast_finishes_when_its_last_subscriber_has_it() {
        let s = state(2);
        let at = s.start;
        let ms = Duration::from_millis;
        for seq in 0..3 {
            s.publish(seq);
        }
        // Broadcast 1 reaches both before 0 does: nothing finishes below 0.
        s.got(1, at, ms(1));
        s.got(1, at, ms(2));
        s.got(0, at, ms(3));
        assert_eq!(s.finished_below.get(), 0);
        // The last copy of 0 finishes 0 and, already done, 1.
        s.got(0, at, ms(7));
        assert_eq!(s.finished_below.get(), 2);
        let lag = s.lag.borrow();
        // The slowest subscriber's lag of each broadcast: 2 ms and 7 ms.
        assert_eq!((lag[2_000], lag[7_000], lag.iter().sum::<u64>()), (1, 1, 2));
    }

    #[test]
    fn giving_up_moves_past_a_missing_delivery() {
        let s = state(2);
        s.publish(0);
        s.publish(1);
        s.got(0, s.start, Duration::ZERO);
        s.give_up_below(1);
        assert_eq!(s.finished_below.get(), 1);
        // A late copy of a given-up broadcast changes nothing.
        s.got(0, s.start, Duration::ZERO);
        assert_eq!(s.lag.borrow().iter().sum::<u64>(), 0);
        s.got(1, s.start, Duration::ZERO);
        s.got(1, s.start, Duration::ZERO);
        assert_eq!(s.finished_below.get(), 2);
    }

    #[test]
    fn quantiles_of_a_histogram() {
        let mut hist = vec![0; 10];
        hist[1] = 50;
        hist[9] = 50;
        assert_eq!(quantile(&hist, 0.5), Some(1));
        assert_eq!(quantile(&hist, 0.99), Some(9));
        assert_eq!(quantile(&[0; 4], 0.5), None);
    }
}
