//! Helpers shared by the fuzz targets: building engines, encoding client
//! frames, parsing server frames, and the invariants every target checks.
#![allow(dead_code)]

use bytes::Buf;
use tower_ws::extensions::deflate::{PerMessageDeflate, negotiate};
use tower_ws::extensions::{Extension, parse_extensions};
use tower_ws::proto::{Connection, Role, WriteBuf};
use tower_ws::{Config, DeflateConfig, Message};

/// The largest frame header (2 + 8 + 4 bytes).
pub const MAX_HEADER: usize = 14;

/// Offers a client may send, chosen by a selector byte.
pub const OFFERS: [&str; 6] = [
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; client_max_window_bits=9; server_max_window_bits=8",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_max_window_bits=8; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10",
];

/// A permessage-deflate codec negotiated from `offer` the way the handshake
/// does it: `parse_extensions`, then `negotiate`.
pub fn deflate_codec(offer: &str, config: &DeflateConfig) -> PerMessageDeflate {
    let offers = parse_extensions([offer]).expect("well-formed offer");
    let (params, mem_level) = negotiate(&offers, config).expect("acceptable offer");
    PerMessageDeflate::new(params, mem_level, config)
}

/// A server engine, with a deflate extension negotiated from `offer`.
pub fn server(config: &Config, offer: Option<&str>, deflate: &DeflateConfig) -> Connection {
    let ext = offer.map(|o| Box::new(deflate_codec(o, deflate)) as Box<dyn Extension>);
    Connection::new(Role::Server, config, ext)
}

/// Encodes one client (masked) frame.
pub fn masked_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A frame the server wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Takes everything out of `out` (as the I/O layer would write it).
pub fn drain(out: &mut WriteBuf) -> Vec<u8> {
    let mut v = Vec::with_capacity(out.len());
    while out.has_remaining() {
        let chunk = out.chunk();
        assert!(
            !chunk.is_empty(),
            "WriteBuf reports bytes but gives an empty chunk"
        );
        v.extend_from_slice(chunk);
        let n = chunk.len();
        out.advance(n);
    }
    assert_eq!(out.len(), 0);
    v
}

/// Parses the server's output; every frame must be complete, unmasked and
/// well-formed (server output is never cut mid-frame in a WriteBuf).
pub fn parse_server_frames(mut buf: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while !buf.is_empty() {
        assert!(buf.len() >= 2, "truncated server frame header");
        assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
        let (len, pos) = match buf[1] & 0x7f {
            126 => {
                let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                assert!(len >= 126, "non-minimal 16-bit length");
                (len, 4)
            }
            127 => {
                let len = u64::from_be_bytes(buf[2..10].try_into().unwrap());
                assert!(len > 0xffff && len >> 63 == 0, "non-minimal 64-bit length");
                (len as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert!(buf.len() >= pos + len, "truncated server frame payload");
        let opcode = buf[0] & 0x0f;
        let fin = buf[0] & 0x80 != 0;
        if opcode >= 8 {
            assert!(fin && len <= 125, "bad control frame from the server");
        }
        frames.push(ServerFrame {
            fin,
            rsv: (buf[0] >> 4) & 7,
            opcode,
            payload: buf[pos..pos + len].to_vec(),
        });
        buf = &buf[pos + len..];
    }
    frames
}

/// Checks what a message may look like whatever the input was.
pub fn check_message(msg: &Message, max_message_size: usize) {
    match msg {
        Message::Text(t) => {
            assert!(
                std::str::from_utf8(t.as_bytes()).is_ok(),
                "a Text message must be valid UTF-8"
            );
            assert!(t.len() <= max_message_size, "message over the limit");
        }
        Message::Binary(b) => assert!(b.len() <= max_message_size, "message over the limit"),
        Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
        Message::Close(Some(f)) => {
            assert!(f.reason.len() <= 123);
            let code = f.code.as_u16();
            assert!(
                (1000..=1003).contains(&code)
                    || (1007..=1014).contains(&code)
                    || (3000..=4999).contains(&code),
                "close code {code} must have been rejected"
            );
        }
        Message::Close(None) => {}
    }
}
