//! Closed-loop WebSocket load generator in the style of uWebSockets' load_test.
//!
//! Each connection sends `--inflight` pre-built masked messages, waits for every
//! echo, checks it byte for byte, and repeats. One JSON line goes to stdout.
//!
//!   load --addr 127.0.0.1:9001 [--path /] [--conns 1] [--size 20] [--inflight 1]
//!        [--seconds 5] [--warmup 1] [--deflate] [--idle [--echo-once]]
//!        [--pid SERVER_PID] [--h2 STREAMS_PER_CONNECTION]
//!
//! `--deflate` offers permessage-deflate and sends JSON-like text (compressed when
//! the server accepts); `--idle` only opens `--conns` connections, prints a line
//! and holds them for `--seconds` (the harness measures server RSS meanwhile),
//! with `--echo-once` after one `--size` message echoed on each (what an idle
//! connection keeps after traffic);
//! `--pid` samples the server's CPU time over the measured window; `--h2 N`
//! opens the `--conns` WebSockets as HTTP/2 streams (extended CONNECT, RFC
//! 8441, clear-text prior knowledge), N per HTTP/2 connection (1: one
//! connection per stream).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tower_ws_bench::client::{Check, Conn, Deflate, connect, connect_h2};
use tower_ws_bench::payload::{self, OP_BINARY, OP_PONG, OP_TEXT, client_frame};
use tower_ws_bench::{TICKS_PER_SEC, cpu_ticks};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Handshakes in flight at once: stays under the listen backlog with 10k conns.
const CONNECT_WAVE: usize = 64;
/// Distinct JSON messages per connection in deflate mode: more than a 32 KiB
/// window holds, so a context-takeover server cannot just back-reference whole
/// repeats.
const JSON_POOL: usize = 64;

struct Args {
    addr: String,
    path: String,
    conns: usize,
    size: usize,
    inflight: usize,
    seconds: f64,
    warmup: f64,
    deflate: bool,
    idle: bool,
    echo_once: bool,
    pid: Option<u32>,
    /// WebSockets per HTTP/2 connection; `None` is HTTP/1.1.
    h2: Option<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:9001".into(),
        path: "/".into(),
        conns: 1,
        size: 20,
        inflight: 1,
        seconds: 5.0,
        warmup: 1.0,
        deflate: false,
        idle: false,
        echo_once: false,
        pid: None,
        h2: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => a.addr = val(),
            "--path" => a.path = val(),
            "--conns" => a.conns = num(&val()),
            "--size" => a.size = num(&val()),
            "--inflight" => a.inflight = num(&val()),
            "--seconds" => a.seconds = num(&val()),
            "--warmup" => a.warmup = num(&val()),
            "--pid" => a.pid = Some(num(&val())),
            "--h2" => a.h2 = Some(num(&val())),
            "--deflate" => a.deflate = true,
            "--idle" => a.idle = true,
            "--echo-once" => a.echo_once = true,
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if a.conns == 0 || a.inflight == 0 || a.h2 == Some(0) {
        usage("--conns, --inflight and --h2 must be at least 1");
    }
    a
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(msg: &str) -> ! {
    eprintln!("load: {msg}\nsee the top of bench/src/bin/load.rs for the arguments");
    exit(2)
}

/// Everything the connection tasks report, shared on the one thread.
#[derive(Default)]
struct Stats {
    msgs: Cell<u64>,
    wire_in: Cell<u64>,
    wire_out: Cell<u64>,
    payload: Cell<u64>,
    errors: Cell<u64>,
    latencies_us: RefCell<Vec<u32>>,
}

/// The messages one connection cycles through, as payload and as ready frames.
struct Messages {
    opcode: u8,
    payloads: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
}

impl Messages {
    fn new(args: &Args, deflate: Option<Deflate>) -> Self {
        let (opcode, payloads): (u8, Vec<Vec<u8>>) = if args.deflate {
            let n = JSON_POOL.max(args.inflight);
            (
                OP_TEXT,
                (0..n as u64).map(|i| payload::json(args.size, i)).collect(),
            )
        } else {
            // Distinct bodies per in-flight slot, so a reordered echo is caught.
            let n = args.inflight as u64;
            (
                OP_BINARY,
                (0..n).map(|i| payload::binary(args.size, i)).collect(),
            )
        };
        let frames = payloads
            .iter()
            .map(|p| match deflate {
                Some(d) => client_frame(
                    opcode,
                    true,
                    &payload::deflate(p, d.client_window_bits),
                    MASK,
                ),
                None => client_frame(opcode, false, p, MASK),
            })
            .collect();
        Messages {
            opcode,
            payloads,
            frames,
        }
    }
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let code = local.block_on(&rt, run(args));
    exit(code);
}

async fn run(args: Args) -> i32 {
    let stats = Rc::new(Stats::default());
    let conns = open_all(&args, &stats).await;
    if conns.is_empty() {
        println!(
            r#"{{"error":"no connection could be opened","errors":{}}}"#,
            stats.errors.get()
        );
        return 1;
    }
    if args.idle {
        let mut conns = conns;
        if args.echo_once {
            let msgs = Messages::new(&args, conns[0].deflate);
            for (id, conn) in conns.iter_mut().enumerate() {
                if let Err(e) = echo_once(conn, &msgs).await {
                    eprintln!("load: connection {id}: {e}");
                    stats.errors.set(stats.errors.get() + 1);
                }
            }
        }
        println!(
            r#"{{"idle":true,"conns":{},"errors":{},"negotiated_deflate":{}}}"#,
            conns.len(),
            stats.errors.get(),
            conns[0].deflate.is_some()
        );
        let _ = std::io::stdout().flush();
        tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
        return 0;
    }
    let negotiated = conns[0].deflate;
    if conns.iter().any(|c| c.deflate != negotiated) {
        eprintln!("load: connections negotiated different extensions");
        return 1;
    }
    let msgs = Rc::new(Messages::new(&args, negotiated));
    let started = Instant::now();
    let window_start = started + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);
    for (id, conn) in conns.into_iter().enumerate() {
        let (stats, msgs) = (stats.clone(), msgs.clone());
        let window = (window_start, window_end);
        let inflight = args.inflight;
        tokio::task::spawn_local(async move {
            if let Err(e) = drive(id, conn, inflight, &msgs, &stats, window).await {
                eprintln!("load: connection {id}: {e}");
                stats.errors.set(stats.errors.get() + 1);
            }
        });
    }
    // CPU of the server and of this process over the window: the first gives
    // CPU per message; the second shows whether a run was bound by the load
    // generator rather than the server.
    let sample = || (args.pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
    tokio::time::sleep_until(window_start.into()).await;
    let (server_a, load_a) = sample();
    tokio::time::sleep_until(window_end.into()).await;
    let (server_b, load_b) = sample();
    let cpu = Cpu {
        server: server_a.zip(server_b).map(|(a, b)| b - a),
        load: load_a.zip(load_b).map(|(a, b)| b - a),
    };
    report(&args, &stats, negotiated.is_some(), cpu);
    0
}

/// Connect and upgrade all connections, a wave of TCP connections at a time.
async fn open_all(args: &Args, stats: &Stats) -> Vec<Conn> {
    let mut conns = Vec::with_capacity(args.conns);
    let per_tcp = args.h2.unwrap_or(1);
    let groups: Vec<(usize, usize)> = (0..args.conns)
        .step_by(per_tcp)
        .map(|first| (first, per_tcp.min(args.conns - first)))
        .collect();
    for wave in groups.chunks(CONNECT_WAVE) {
        let attempts = wave.iter().map(|&(first, n)| async move {
            match args.h2 {
                Some(_) => connect_h2(&args.addr, &args.path, n, args.deflate).await,
                None => connect(&args.addr, &args.path, first as u64, args.deflate)
                    .await
                    .map(|c| vec![c]),
            }
        });
        for r in futures_util::future::join_all(attempts).await {
            match r {
                Ok(c) => conns.extend(c),
                Err(e) => {
                    if stats.errors.get() == 0 {
                        eprintln!("load: connect: {e}");
                    }
                    stats.errors.set(stats.errors.get() + 1);
                }
            }
        }
    }
    conns
}

/// One connection's closed loop until the measuring window ends.
/// Sends the first message of the pool and checks its echo.
async fn echo_once(conn: &mut Conn, msgs: &Messages) -> std::io::Result<()> {
    conn.io.write_all(&msgs.frames[0]).await?;
    let (mut rd, _) = conn.io.split();
    match conn
        .reader
        .recv(&mut rd, msgs.opcode, &msgs.payloads[0])
        .await?
    {
        Check::Ok(_) => Ok(()),
        Check::Mismatch(why) => Err(std::io::Error::other(format!("echo mismatch: {why}"))),
    }
}

async fn drive(
    id: usize,
    mut conn: Conn,
    inflight: usize,
    msgs: &Messages,
    stats: &Stats,
    (window_start, window_end): (Instant, Instant),
) -> std::io::Result<()> {
    let n = msgs.frames.len();
    let mut next = 0; // index of the next pool message to send
    let mut batch = Vec::new();
    while Instant::now() < window_end {
        let first = next;
        batch.clear();
        for k in 0..inflight {
            batch.extend_from_slice(&msgs.frames[(first + k) % n]);
        }
        next = (first + inflight) % n;
        let sent_at = Instant::now();
        let (mut rd, mut wr) = conn.io.split();
        // Write and read concurrently: with large pipelined messages the server may
        // echo the first before it has read the last.
        let write = wr.write_all(&batch);
        let read = async {
            let mut pongs = Vec::new();
            for k in 0..inflight {
                let i = (first + k) % n;
                let got = conn
                    .reader
                    .recv(&mut rd, msgs.opcode, &msgs.payloads[i])
                    .await?;
                let now = Instant::now();
                let received = match got {
                    Check::Ok(r) => r,
                    Check::Mismatch(why) => {
                        eprintln!("load: ECHO MISMATCH on connection {id}, message {i}: {why}");
                        exit(3);
                    }
                };
                pongs.extend(
                    received
                        .pings
                        .iter()
                        .map(|p| client_frame(OP_PONG, false, p, MASK)),
                );
                if now >= window_start && now <= window_end {
                    stats.msgs.set(stats.msgs.get() + 1);
                    stats
                        .wire_in
                        .set(stats.wire_in.get() + received.wire_bytes as u64);
                    stats
                        .wire_out
                        .set(stats.wire_out.get() + msgs.frames[i].len() as u64);
                    stats
                        .payload
                        .set(stats.payload.get() + msgs.payloads[i].len() as u64);
                    let us = now.duration_since(sent_at).as_micros();
                    stats
                        .latencies_us
                        .borrow_mut()
                        .push(us.min(u32::MAX as u128) as u32);
                }
            }
            Ok::<_, std::io::Error>(pongs)
        };
        let (w, pongs) = tokio::join!(write, read);
        w?;
        for p in pongs? {
            conn.io.write_all(&p).await?;
        }
    }
    Ok(())
}

/// CPU clock ticks spent in the measuring window.
struct Cpu {
    server: Option<u64>,
    load: Option<u64>,
}

fn report(args: &Args, stats: &Stats, negotiated: bool, cpu: Cpu) {
    let msgs = stats.msgs.get();
    let mut lat = stats.latencies_us.take();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    let per_msg = |total: u64| {
        if msgs == 0 {
            0.0
        } else {
            total as f64 / msgs as f64
        }
    };
    let cpu_us = match cpu.server {
        Some(t) if msgs > 0 => format!("{:.3}", t as f64 * 1e6 / TICKS_PER_SEC / msgs as f64),
        _ => "null".into(),
    };
    let util = |t: Option<u64>| {
        t.map_or("null".into(), |t| {
            format!("{:.2}", t as f64 / TICKS_PER_SEC / args.seconds)
        })
    };
    println!(
        concat!(
            r#"{{"conns":{},"size":{},"inflight":{},"deflate":{},"negotiated_deflate":{},"h2":{},"#,
            r#""seconds":{},"msgs":{},"msgs_per_sec":{:.1},"p50_us":{},"p99_us":{},"errors":{},"#,
            r#""server_cpu_us_per_msg":{},"server_cpu_util":{},"load_cpu_util":{},"#,
            r#""payload_bytes_per_msg":{:.1},"#,
            r#""wire_bytes_out_per_msg":{:.1},"wire_bytes_in_per_msg":{:.1}}}"#
        ),
        args.conns,
        args.size,
        args.inflight,
        args.deflate,
        negotiated,
        args.h2.map_or("null".into(), |n| n.to_string()),
        args.seconds,
        msgs,
        msgs as f64 / args.seconds,
        pct(0.50).map_or("null".into(), u32::to_string),
        pct(0.99).map_or("null".into(), u32::to_string),
        stats.errors.get(),
        cpu_us,
        util(cpu.server),
        util(cpu.load),
        per_msg(stats.payload.get()),
        per_msg(stats.wire_out.get()),
        per_msg(stats.wire_in.get()),
    );
}
