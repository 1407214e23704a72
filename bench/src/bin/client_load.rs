//! Client-side load: a WebSocket client library as the load generator
//! against one echo server (the floor), to compare the clients' own cost.
//!
//!   client_load --client tower-ws|tokio-tungstenite|fastwebsockets
//!               --addr 127.0.0.1:9001 [--conns 100] [--size 20] [--inflight 1]
//!               [--seconds 5] [--warmup 1] [--pid SERVER_PID]
//!
//! Each connection sends `--inflight` binary messages through the library's
//! client (masked with the library's own keys: its masking cost is in the
//! figure), reads every echo back, checks it byte for byte and repeats. One
//! JSON line goes to stdout: messages per second and this process's CPU per
//! message (`client_cpu_us_per_msg`), the number to compare; with `--pid`,
//! the server's too. Exits 3 on an echo that differs from what was sent.

use std::cell::Cell;
use std::future::Future;
use std::io::{Error, ErrorKind, Result};
use std::pin::Pin;
use std::process::exit;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tower_ws_bench::{cpu_ticks, payload};

struct Args {
    client: String,
    addr: String,
    conns: usize,
    size: usize,
    inflight: usize,
    seconds: f64,
    warmup: f64,
    pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut a = Args {
        client: "tower-ws".into(),
        addr: "127.0.0.1:9001".into(),
        conns: 100,
        size: 20,
        inflight: 1,
        seconds: 5.0,
        warmup: 1.0,
        pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--client" => a.client = val,
            "--addr" => a.addr = val,
            "--conns" => a.conns = num(&val),
            "--size" => a.size = num(&val),
            "--inflight" => a.inflight = num(&val),
            "--seconds" => a.seconds = num(&val),
            "--warmup" => a.warmup = num(&val),
            "--pid" => a.pid = Some(num(&val)),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    a
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(msg: &str) -> ! {
    eprintln!("client_load: {msg}\nsee the top of bench/src/bin/client_load.rs");
    exit(2)
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidData, msg.into())
}

/// What the load loop needs from a client library.
trait Client {
    /// Queues a binary message (written by `flush`, or earlier).
    async fn feed(&mut self, payload: &Bytes) -> Result<()>;
    async fn flush(&mut self) -> Result<()>;
    /// Reads the next data message and compares it with `expected`.
    async fn recv_matches(&mut self, expected: &[u8]) -> Result<bool>;
}

struct TowerWs(tower_ws::UpgradedWebSocket);

impl Client for TowerWs {
    async fn feed(&mut self, payload: &Bytes) -> Result<()> {
        self.0
            .feed(tower_ws::Message::Binary(payload.clone()))
            .await
            .map_err(Error::other)
    }
    async fn flush(&mut self) -> Result<()> {
        self.0.flush().await.map_err(Error::other)
    }
    async fn recv_matches(&mut self, expected: &[u8]) -> Result<bool> {
        loop {
            match self.0.next().await {
                Some(Ok(tower_ws::Message::Binary(b))) => return Ok(b == expected),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Error::other(e)),
                None => return Err(bad("closed")),
            }
        }
    }
}

type Tungstenite = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

impl Client for Tungstenite {
    async fn feed(&mut self, payload: &Bytes) -> Result<()> {
        SinkExt::feed(
            self,
            tokio_tungstenite::tungstenite::Message::Binary(payload.clone()),
        )
        .await
        .map_err(Error::other)
    }
    async fn flush(&mut self) -> Result<()> {
        SinkExt::flush(self).await.map_err(Error::other)
    }
    async fn recv_matches(&mut self, expected: &[u8]) -> Result<bool> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            match self.next().await {
                Some(Ok(Message::Binary(b))) => return Ok(b == expected),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Error::other(e)),
                None => return Err(bad("closed")),
            }
        }
    }
}

struct Fast(fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>);

impl Client for Fast {
    async fn feed(&mut self, payload: &Bytes) -> Result<()> {
        let frame = fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(payload));
        self.0.write_frame(frame).await.map_err(Error::other)
    }
    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    async fn recv_matches(&mut self, expected: &[u8]) -> Result<bool> {
        loop {
            let frame = self.0.read_frame().await.map_err(Error::other)?;
            match frame.opcode {
                fastwebsockets::OpCode::Binary => return Ok(&frame.payload[..] == expected),
                fastwebsockets::OpCode::Close => return Err(bad("closed")),
                _ => {}
            }
        }
    }
}

/// hyper's executor for fastwebsockets' handshake.
struct Spawn;

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for Spawn {
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

#[derive(Default)]
struct Stats {
    msgs: Cell<u64>,
    errors: Cell<u64>,
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
    let stats = Rc::new(Stats::default());
    let payloads: Rc<Vec<Bytes>> = Rc::new(
        (0..args.inflight as u64)
            .map(|i| Bytes::from(payload::binary(args.size, i)))
            .collect(),
    );
    let started = Instant::now();
    let window_start = started + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.seconds);
    let mut opened = 0;
    for id in 0..args.conns {
        let url = format!("ws://{}/", args.addr);
        let client: Pin<Box<dyn Future<Output = Result<()>>>> = {
            let (stats, payloads) = (stats.clone(), payloads.clone());
            let window = (window_start, window_end);
            match args.client.as_str() {
                "tower-ws" => {
                    let builder = tower_ws::client::Builder::new();
                    match builder.connect(&url).await {
                        Ok((ws, _)) => Box::pin(drive(TowerWs(ws), payloads, stats, window)),
                        Err(e) => Box::pin(async move { Err(Error::other(e)) }),
                    }
                }
                "tokio-tungstenite" => {
                    let tcp = tokio::net::TcpStream::connect(&args.addr).await;
                    match tcp {
                        Ok(tcp) => {
                            let _ = tcp.set_nodelay(true);
                            match tokio_tungstenite::client_async(url.as_str(), tcp).await {
                                Ok((ws, _)) => Box::pin(drive(ws, payloads, stats, window)),
                                Err(e) => Box::pin(async move { Err(Error::other(e)) }),
                            }
                        }
                        Err(e) => Box::pin(async move { Err(e) }),
                    }
                }
                "fastwebsockets" => match fast_connect(&args.addr).await {
                    Ok(ws) => Box::pin(drive(Fast(ws), payloads, stats, window)),
                    Err(e) => Box::pin(async move { Err(e) }),
                },
                other => usage(&format!("unknown client {other}")),
            }
        };
        let stats = stats.clone();
        opened += 1;
        tokio::task::spawn_local(async move {
            if let Err(e) = client.await {
                if stats.errors.get() == 0 {
                    eprintln!("client_load: connection {id}: {e}");
                }
                stats.errors.set(stats.errors.get() + 1);
            }
        });
    }
    let sample = || (args.pid.and_then(cpu_ticks), cpu_ticks(std::process::id()));
    tokio::time::sleep_until(window_start.into()).await;
    let (server_a, client_a) = sample();
    tokio::time::sleep_until(window_end.into()).await;
    let (server_b, client_b) = sample();
    let msgs = stats.msgs.get();
    let per_msg = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if msgs > 0 => {
            format!("{:.3}", (b - a) as f64 * 1e6 / 100.0 / msgs as f64)
        }
        _ => "null".into(),
    };
    println!(
        concat!(
            r#"{{"client":"{}","conns":{},"size":{},"inflight":{},"seconds":{},"msgs":{},"#,
            r#""msgs_per_sec":{:.1},"errors":{},"client_cpu_us_per_msg":{},"server_cpu_us_per_msg":{}}}"#
        ),
        args.client,
        opened,
        args.size,
        args.inflight,
        args.seconds,
        msgs,
        msgs as f64 / args.seconds,
        stats.errors.get(),
        per_msg(client_a, client_b),
        per_msg(server_a, server_b),
    );
    0
}

async fn fast_connect(
    addr: &str,
) -> Result<fastwebsockets::WebSocket<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let req = http::Request::get(format!("http://{addr}/"))
        .header("host", addr)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(Error::other)?;
    let (mut ws, _) = fastwebsockets::handshake::client(&Spawn, req, tcp)
        .await
        .map_err(Error::other)?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    Ok(ws)
}

/// One connection's closed loop until the window ends.
async fn drive(
    mut client: impl Client,
    payloads: Rc<Vec<Bytes>>,
    stats: Rc<Stats>,
    (window_start, window_end): (Instant, Instant),
) -> Result<()> {
    while Instant::now() < window_end {
        for p in payloads.iter() {
            client.feed(p).await?;
        }
        client.flush().await?;
        for p in payloads.iter() {
            if !client.recv_matches(p).await? {
                eprintln!("client_load: ECHO MISMATCH");
                exit(3);
            }
            let now = Instant::now();
            if now >= window_start && now <= window_end {
                stats.msgs.set(stats.msgs.get() + 1);
            }
        }
    }
    Ok(())
}
