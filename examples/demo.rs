//! Chat demo: one server on one port serves the chat page from
//! `examples/static/` at `/` and the chat WebSocket at `/ws`, with
//! permessage-deflate, keepalive pings and graceful shutdown on Ctrl-C
//! (every browser is told 1001 Going Away).
//!
//! Run: `cargo run --release --example demo -- [ADDR] [--tls CERT.pem
//! KEY.pem]` (ADDR defaults to 127.0.0.1:8080; 127.0.0.1:0 picks a free
//! port), then open the URL it prints, `tower-ws chat demo on
//! http://ADDR/`, in two browser tabs. With `--tls` it is `https://ADDR/`:
//! browsers then speak HTTP/2 and open the WebSocket on the same connection
//! (RFC 8441); the page shows which HTTP version carries it. Without it,
//! clear-text HTTP/1.1 (and HTTP/2 with prior knowledge) on the same port.
//!
//! The chat is python-WS's example written with [`tower_ws::handler`]: every
//! message is broadcast to everyone, as JSON the page renders.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tower_http::services::ServeDir;
use tower_ws::handler::{Client, Handler, Hub, Options};
use tower_ws::server::TlsConfig;
use tower_ws::{CloseFrame, Message, WebSocketService};

const STATIC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/static");

/// How long Ctrl-C waits for the browsers to answer the 1001 close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

const USAGE: &str =
    "usage: demo [ADDR] [--tls CERT.pem KEY.pem]   (ADDR defaults to 127.0.0.1:8080)";

/// The command line. Each option is one arm of `parse`.
struct Args {
    addr: SocketAddr,
    /// `--tls CERT.pem KEY.pem`: serve https/wss (HTTP/2 by ALPN).
    tls: Option<(PathBuf, PathBuf)>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut parsed = Args {
            addr: "127.0.0.1:8080".parse().expect("valid default address"),
            tls: None,
        };
        while let Some(arg) = args.next() {
            let mut value = |what: &str| args.next().ok_or_else(|| format!("{arg} needs {what}"));
            match arg.as_str() {
                "--tls" => {
                    let cert = value("a certificate file and a key file")?;
                    let key = value("a key file after the certificate file")?;
                    parsed.tls = Some((cert.into(), key.into()));
                }
                flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
                addr => {
                    parsed.addr = addr.parse().map_err(|e| {
                        format!("{addr:?} is not an address like 127.0.0.1:8080: {e}")
                    })?;
                }
            }
        }
        Ok(parsed)
    }
}

struct Chat;

impl Handler for Chat {
    async fn on_open(&self, client: &Client) {
        let clients = client.clients();
        // The welcome event tells the page which HTTP version carries its
        // WebSocket: "HTTP/2" (extended CONNECT) or "HTTP/1.1" (upgrade).
        let http = match client.request().version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        };
        client
            .write_message(event("welcome", client.id(), http, clients.len()))
            .ok();
        clients.broadcast_except(event("join", client.id(), "", clients.len()), client);
    }

    async fn on_message(&self, msg: Message, client: &Client) {
        if let Some(text) = msg.as_text() {
            let clients = client.clients();
            // Encoded once; every connection shares the bytes.
            clients.broadcast(event("message", client.id(), text, clients.len()));
        }
    }

    async fn on_close(&self, client: &Client, _frame: Option<CloseFrame>) {
        let clients = client.clients();
        clients.broadcast(event("leave", client.id(), "", clients.len()));
    }
}

/// `{"type":..,"from":..,"text":..,"online":..}`, the page's one message shape.
fn event(kind: &str, from: u64, text: &str, online: usize) -> String {
    let mut json = format!(r#"{{"type":"{kind}","from":{from},"online":{online},"text":""#);
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if (c as u32) < 0x20 => json.push_str(&format!("\\u{:04x}", c as u32)),
            c => json.push(c),
        }
    }
    json.push_str("\"}");
    json
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("demo: {e}\n{USAGE}");
        std::process::exit(2);
    });

    let hub = Hub::new(
        Chat,
        Options::default()
            .ping_interval(Some(Duration::from_secs(20)))
            .pong_timeout(Duration::from_secs(20)),
    );
    let clients = hub.clients().clone();
    // The default Config negotiates permessage-deflate with browsers. A
    // plain GET /ws (the URL opened in a tab) gets 426 with a hint.
    let service = WebSocketService::new(hub)
        .path("/ws")
        .max_connections(1000)
        .with_inner(ServeDir::new(STATIC_DIR));

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let scheme = if args.tls.is_some() { "https" } else { "http" };
    println!(
        "tower-ws chat demo on {scheme}://{}/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    let mut server = tower_ws::serve(listener, service).shutdown_deadline(SHUTDOWN_DEADLINE);
    if let Some((cert, key)) = &args.tls {
        server = server.tls(TlsConfig::from_pem_files(cert, key)?);
    }
    // Ctrl-C: stop accepting, tell every browser 1001 Going Away, wait for
    // the closing handshakes (up to the deadline).
    let signal_clients = clients.clone();
    server
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            let open = signal_clients.len();
            println!("shutting down: closing {open} WebSocket(s) with 1001 Going Away");
        })
        .await?;
    println!("shut down ({} WebSocket(s) left open)", clients.len());
    Ok(())
}
