//! The client side: raw server bytes into a client `Connection` (with and
//! without permessage-deflate), and arbitrary handshake responses into
//! `ClientHandshake::validate_http1`.
//!
//! Input: byte 0 picks the deflate response (or none) and the limits, byte 1
//! the cut size and whether the rest is a handshake response (header lines
//! `name: value`) or what the server sends after one.
//!
//! Invariants: no panic; after an `Err` event no event follows; messages are
//! within the limits (Text is UTF-8); every frame the client writes is
//! masked, complete and well-formed, with the engine's fixed key; an accepted
//! response named only offered things, with window bits from 8 to 15.
#![no_main]

mod common;

use common::{check_message, drain};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_ws::Config;
use tower_ws::extensions::deflate::{DeflateOffer, PerMessageDeflate, negotiate_response};
use tower_ws::extensions::{Extension, parse_extensions};
use tower_ws::handshake::accept_key;
use tower_ws::handshake::client::ClientHandshake;
use tower_ws::proto::{Connection, MaskKeys, Role, WriteBuf};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const RESPONSES: [&str; 4] = [
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
    "permessage-deflate; client_max_window_bits=10",
];
const CHUNKS: [usize; 4] = [1, 7, 512, usize::MAX];

fn engine(sel: u8) -> Connection {
    let config = if sel & 8 != 0 {
        Config::default()
            .max_frame_size(4096)
            .max_message_size(16384)
            .max_fragments(64)
    } else {
        Config::default()
    };
    let ext = RESPONSES.get(usize::from(sel & 7)).map(|r| {
        let offer = DeflateOffer::default().threshold(0);
        let response = parse_extensions([*r]).unwrap().remove(0);
        let (_, params) = negotiate_response(std::slice::from_ref(&offer), &response).unwrap();
        Box::new(PerMessageDeflate::client(params, &offer)) as Box<dyn Extension>
    });
    Connection::new(Role::Client(MaskKeys::new(|| KEY)), &config, ext)
}

/// Every client frame is masked with `KEY`, whole and minimally encoded.
fn check_client_output(mut buf: &[u8]) {
    while !buf.is_empty() {
        assert!(
            buf.len() >= 2 && buf[1] & 0x80 != 0,
            "client frames are masked"
        );
        let (len, pos) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        assert_eq!(buf[pos..pos + 4], KEY, "the key from the key source");
        assert!(buf.len() >= pos + 4 + len, "a whole frame");
        buf = &buf[pos + 4 + len..];
    }
}

fn handshake(input: &[u8]) {
    let handshake = ClientHandshake::new(*b"the sample nonce")
        .protocols(["chat"])
        .deflate_offers(vec![
            DeflateOffer::default().server_max_window_bits(Some(10)),
            DeflateOffer::default(),
        ]);
    let mut headers = HeaderMap::new();
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert(
        "sec-websocket-accept",
        accept_key(handshake.key().as_bytes()),
    );
    for line in input.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(agreed) = handshake.validate_http1(StatusCode::SWITCHING_PROTOCOLS, &headers) {
        assert!(agreed.protocol.is_none() || agreed.protocol.as_deref() == Some("chat"));
        if let Some((index, p)) = agreed.deflate {
            assert!(index < 2);
            assert!((8..=15).contains(&p.server_max_window_bits));
            assert!((8..=15).contains(&p.client_max_window_bits));
            assert!(index == 1 || p.server_max_window_bits <= 10);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sel, mode, input) = (data[0], data[1], &data[2..]);
    if mode & 0x80 != 0 {
        handshake(input);
        return;
    }
    let mut conn = engine(sel);
    let max = conn_limit(sel);
    let mut out = WriteBuf::new();
    let mut written = Vec::new();
    let mut failed = false;
    for piece in input.chunks(CHUNKS[usize::from(mode & 3)].min(input.len().max(1))) {
        conn.receive_data(piece);
        while let Some(event) = conn.poll_event(&mut out) {
            assert!(!failed, "no event after an error");
            match event {
                Ok(msg) => {
                    check_message(&msg, max);
                    if (msg.is_text() || msg.is_binary()) && !conn.close_sent() {
                        conn.send(msg, &mut out).unwrap();
                    }
                }
                Err(_) => failed = true,
            }
        }
        written.extend(drain(&mut out));
    }
    check_client_output(&written);
});

fn conn_limit(sel: u8) -> usize {
    if sel & 8 != 0 {
        16384
    } else {
        Config::default().get_max_message_size()
    }
}
