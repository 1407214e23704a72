//! A command-line WebSocket client (`tower_ws::client`): one command per
//! line on stdin, one event per line on stdout. The Python and Node interop
//! suites drive it against the `websockets` and `ws` servers.
//!
//! Run: `cargo run --example client -- URL [--offer OFFER]... [--no-deflate]
//! [--frame-size N] [--protocol P]... [--header 'Name: value']... [--http2]
//! [--ca CA.pem]`
//!
//! `--offer` takes permessage-deflate offers in preference order, e.g.
//! `'server_no_context_takeover; server_max_window_bits=10'` (parameters of
//! RFC 7692 §7.1; an empty string offers nothing but the name).
//!
//! Commands: `text STRING`, `repeat N STRING` (STRING N times, as text),
//! `binary N` (N bytes), `ping STRING`, `close CODE [REASON]`; the end of
//! stdin closes with 1000.
//! Events: `connected STATUS EXTENSIONS`, `text LEN HASH`, `binary LEN HASH`
//! (HASH: 64-bit FNV-1a of the payload, in hex), `pong STRING`,
//! `close CODE REASON` (or `close -`), `error MESSAGE`, `end`.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tower_ws::client::Builder;
use tower_ws::extensions::deflate::DeflateOffer;
use tower_ws::{Config, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().expect("usage: client URL [options]");
    let mut builder = Builder::new();
    let mut offers = Vec::new();
    let mut deflate = true;
    let mut config = Config::default();
    let mut protocols = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--offer" => offers.push(parse_offer(&value())),
            "--no-deflate" => deflate = false,
            "--frame-size" => config = config.out_frame_size(value().parse().expect("a size")),
            "--protocol" => protocols.push(value()),
            "--header" => {
                let header = value();
                let (name, v) = header.split_once(':').expect("'Name: value'");
                builder = builder.header(name.trim(), v.trim());
            }
            "--http2" => builder = builder.http2(true),
            "--ca" => builder = builder.root_certificates(roots(&value())),
            other => panic!("unknown option {other}"),
        }
    }
    if offers.is_empty() && deflate {
        offers.push(DeflateOffer::default());
    }
    if !deflate {
        offers.clear();
    }
    let builder = builder
        .config(config)
        .protocols(protocols)
        .deflate_offers(offers);

    let (mut ws, res) = match builder.connect(&url).await {
        Ok(ok) => ok,
        Err(e) => {
            say(&format!("error {e}"));
            return;
        }
    };
    let extensions = res
        .headers()
        .get("sec-websocket-extensions")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    say(&format!("connected {} {extensions}", res.status().as_u16()));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    if let Err(e) = command(&mut ws, &line).await {
                        say(&format!("error {e}"));
                    }
                }
                _ => {
                    // End of input: close normally, then wait for the server.
                    stdin_open = false;
                    let _ = ws.send(Message::close(1000, "")).await;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(msg)) => say(&event(&msg)),
                Some(Err(e)) => say(&format!("error {e}")),
                None => break,
            },
        }
    }
    say("end");
}

async fn command(ws: &mut tower_ws::UpgradedWebSocket, line: &str) -> Result<(), tower_ws::Error> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "text" => ws.send(Message::text(rest.to_owned())).await,
        "repeat" => {
            let (n, s) = rest.split_once(' ').unwrap_or((rest, ""));
            let n: usize = n.parse().unwrap_or(1);
            ws.send(Message::text(s.repeat(n))).await
        }
        "binary" => {
            let n: usize = rest.parse().unwrap_or(0);
            let data: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
            ws.send(Message::binary(data)).await
        }
        "ping" => ws.send(Message::ping(rest.to_owned())).await,
        "close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code: u16 = code.parse().unwrap_or(1000);
            ws.send(Message::close(code, reason.to_owned())).await
        }
        _ => {
            say(&format!("error unknown command {verb}"));
            Ok(())
        }
    }
}

fn event(msg: &Message) -> String {
    match msg {
        Message::Text(t) => format!("text {} {:016x}", t.len(), fnv1a(t.as_bytes())),
        Message::Binary(b) => format!("binary {} {:016x}", b.len(), fnv1a(b)),
        Message::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
        Message::Pong(p) => format!("pong {}", String::from_utf8_lossy(p)),
        Message::Close(Some(f)) => format!("close {} {}", f.code.as_u16(), f.reason.as_str()),
        Message::Close(None) => "close -".to_owned(),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// 64-bit FNV-1a.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A permessage-deflate offer from its parameters.
fn parse_offer(params: &str) -> DeflateOffer {
    let mut offer = DeflateOffer::default().offer_client_max_window_bits(false);
    for param in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().parse::<u8>().expect("window bits"))),
            None => (param, None),
        };
        offer = match name {
            "server_no_context_takeover" => offer.server_no_context_takeover(true),
            "client_no_context_takeover" => offer.client_no_context_takeover(true),
            "server_max_window_bits" => offer.server_max_window_bits(value),
            "client_max_window_bits" => offer
                .offer_client_max_window_bits(true)
                .client_max_window_bits(value),
            other => panic!("unknown permessage-deflate parameter {other}"),
        };
    }
    offer
}

/// A root store with the certificates of a PEM file.
fn roots(path: &str) -> tower_ws::client::rustls::RootCertStore {
    use tower_ws::client::rustls::pki_types::CertificateDer;
    use tower_ws::client::rustls::pki_types::pem::PemObject;
    let mut roots = tower_ws::client::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).expect("a PEM file") {
        roots
            .add(cert.expect("a certificate"))
            .expect("a CA certificate");
    }
    roots
}
