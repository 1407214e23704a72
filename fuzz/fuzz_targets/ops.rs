//! A structured sequence of operations on a server `Connection`: client
//! messages generated as valid frames (fragmented, compressed, with pings in
//! between) and delivered split anywhere, raw garbage, server sends, pings,
//! closes, `process_input`, `poll_event` and EOF.
//!
//! Invariants: no panic; no event after a failure; while the input is only
//! valid frames, the messages come out identical and in order, every ping is
//! answered with the same payload, and everything the server sends decodes
//! (after a client-side masking re-encode, through a second engine) to the
//! messages that were sent; the read buffer stays within one frame plus what
//! one call fed; the output holds no more than what was sent plus pongs.
#![no_main]

mod common;

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use common::{MAX_HEADER, check_message, deflate_codec, drain, masked_frame, parse_server_frames};
use libfuzzer_sys::fuzz_target;
use tower_ws::extensions::Extension;
use tower_ws::proto::{Connection, Role, WriteBuf};
use tower_ws::{CloseCode, CloseFrame, Config, DeflateConfig, Message};

/// Symmetric settings, so one codec can play the client's compressor and a
/// mirror engine can decode what the server compressed.
const OFFERS: [&str; 2] = [
    "permessage-deflate",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
];

#[derive(Arbitrary, Debug)]
enum Op {
    /// A valid data message from the client.
    ClientMessage {
        text: bool,
        data: Vec<u8>,
        fragments: u8,
        compress: bool,
        ping_between: Option<Vec<u8>>,
        key: [u8; 4],
    },
    /// A valid ping from the client.
    ClientPing(Vec<u8>),
    /// A valid close frame from the client.
    ClientClose(Option<u16>),
    /// Arbitrary bytes on the wire: the stream is no longer known valid.
    ClientRaw(Vec<u8>),
    /// Delivers the next n bytes of the wire.
    Deliver(u16),
    /// Delivers the whole wire.
    DeliverAll,
    /// The server sends a message.
    Send {
        text: bool,
        data: Vec<u8>,
    },
    SendPing(Vec<u8>),
    SendClose(u16, String),
    ProcessInput,
    Poll,
    Eof,
}

#[derive(Arbitrary, Debug)]
struct Input {
    deflate: Option<bool>,
    out_frame_size: u16,
    ops: Vec<Op>,
}

struct Mirror {
    conn: Connection,
    out: WriteBuf,
    data: Vec<Message>,
    pongs: Vec<Vec<u8>>,
    pings: Vec<Vec<u8>>,
    close: Option<Option<CloseFrame>>,
}

impl Mirror {
    /// Re-encodes the server's frames as a client would (masked) and decodes
    /// them with a second engine.
    fn feed(&mut self, wire: &[u8]) {
        for f in parse_server_frames(wire) {
            let frame = masked_frame(f.fin, f.rsv, f.opcode, &f.payload, [7, 1, 9, 3]);
            self.conn.receive_data(&frame);
            while let Some(ev) = self.conn.poll_event(&mut self.out) {
                match ev.expect("the server's output must decode") {
                    Message::Pong(p) => self.pongs.push(p.to_vec()),
                    Message::Ping(p) => self.pings.push(p.to_vec()),
                    Message::Close(c) => self.close = Some(c),
                    m => self.data.push(m),
                }
            }
        }
        drain(&mut self.out);
    }
}

fuzz_target!(|input: Input| {
    let limit = 1 << 20;
    let config = Config::default()
        .max_message_size(limit)
        .max_frame_size(limit)
        .max_fragments(1 << 16)
        .max_pending_events(4)
        .out_frame_size(usize::from(input.out_frame_size).max(1));
    let deflate = DeflateConfig::default()
        .threshold(0)
        .server_max_window_bits(15)
        .client_max_window_bits(15);
    let offer = input.deflate.map(|nct| OFFERS[usize::from(nct)]);
    let ext = |o: &str| Box::new(deflate_codec(o, &deflate)) as Box<dyn Extension>;
    let mut conn = Connection::new(Role::Server, &config, offer.map(ext));
    let mut client_z = offer.map(|o| deflate_codec(o, &deflate));
    let mut mirror = Mirror {
        conn: Connection::new(Role::Server, &Config::default(), offer.map(ext)),
        out: WriteBuf::new(),
        data: Vec::new(),
        pongs: Vec::new(),
        pings: Vec::new(),
        close: None,
    };
    let mut out = WriteBuf::new();

    // What the client put on the wire and has not delivered yet.
    let mut wire: VecDeque<u8> = VecDeque::new();
    // While true, the wire carries only valid frames and no close.
    let mut clean = true;
    let mut expected: VecDeque<Message> = VecDeque::new();
    let mut sent: Vec<Message> = Vec::new();
    let mut sent_pings: Vec<Vec<u8>> = Vec::new();
    let mut failed = false;
    let mut got_close = false;
    let mut server_close_sent = false;
    let mut eof = false;

    let mut ping_events: Vec<Vec<u8>> = Vec::new();
    let mut poll = |conn: &mut Connection,
                    out: &mut WriteBuf,
                    expected: &mut VecDeque<Message>,
                    clean: bool,
                    failed: &mut bool,
                    got_close: &mut bool| {
        while let Some(ev) = conn.poll_event(out) {
            assert!(!*failed, "an event after a failure: {ev:?}");
            match ev {
                Ok(msg) => {
                    check_message(&msg, limit);
                    if let Message::Ping(p) = &msg {
                        ping_events.push(p.to_vec());
                    }
                    assert!(!*got_close, "a message after the peer's close");
                    if clean {
                        let want = expected.pop_front().expect("an unexpected message");
                        assert_eq!(msg, want, "a valid message did not round-trip");
                    }
                    *got_close |= msg.is_close();
                }
                Err(e) => {
                    assert!(!clean, "valid input failed the connection: {e}");
                    *failed = true;
                }
            }
        }
    };

    for op in input.ops {
        let mut fed = 0usize;
        let out_before = out.len();
        let read_before = conn.read_buf().len();
        let mut sent_bytes = 0usize;
        match op {
            Op::ClientMessage {
                text,
                data,
                fragments,
                compress,
                ping_between,
                key,
            } => {
                let (opcode, data) = if text {
                    (
                        1u8,
                        String::from_utf8_lossy(&data).into_owned().into_bytes(),
                    )
                } else {
                    (2u8, data)
                };
                let (payload, rsv) = match (&mut client_z, compress) {
                    (Some(z), true) => (z.encode(&data).unwrap().unwrap().to_vec(), 4u8),
                    _ => (data.clone(), 0u8),
                };
                let n = usize::from(fragments % 8).clamp(1, payload.len().max(1));
                for i in 0..n {
                    let (a, b) = (payload.len() * i / n, payload.len() * (i + 1) / n);
                    let (op, bits) = if i == 0 { (opcode, rsv) } else { (0, 0) };
                    wire.extend(masked_frame(i == n - 1, bits, op, &payload[a..b], key));
                    if let (true, Some(p)) = (i + 1 < n, &ping_between) {
                        let p = &p[..p.len().min(125)];
                        wire.extend(masked_frame(true, 0, 9, p, key));
                        expected.push_back(Message::Ping(p.to_vec().into()));
                    }
                }
                expected.push_back(if text {
                    Message::text(String::from_utf8(data).unwrap())
                } else {
                    Message::binary(data)
                });
            }
            Op::ClientPing(p) => {
                let p = &p[..p.len().min(125)];
                wire.extend(masked_frame(true, 0, 9, p, [1, 2, 3, 4]));
                expected.push_back(Message::Ping(p.to_vec().into()));
            }
            Op::ClientClose(code) => {
                let payload = code
                    .map(|c| (c % 4000 + 1000).to_be_bytes().to_vec())
                    .unwrap_or_default();
                wire.extend(masked_frame(true, 0, 8, &payload, [5, 6, 7, 8]));
                // Whether the code is valid decides the outcome: stop checking.
                clean = false;
            }
            Op::ClientRaw(bytes) => {
                wire.extend(bytes);
                clean = false;
            }
            Op::Deliver(_) | Op::DeliverAll if !eof => {
                let n = match op {
                    Op::Deliver(n) => usize::from(n).min(wire.len()),
                    _ => wire.len(),
                };
                let piece: Vec<u8> = wire.drain(..n).collect();
                let before = conn.read_buf().len();
                conn.receive_data(&piece);
                fed = piece.len();
                assert!(conn.read_buf().len() <= before + fed);
                assert!(
                    conn.read_buf().len() <= before.max(limit + MAX_HEADER) + fed,
                    "read buffer past one frame plus what one call fed"
                );
            }
            Op::Deliver(_) | Op::DeliverAll => {}
            Op::Send { text, data } => {
                let msg = if text {
                    Message::text(String::from_utf8_lossy(&data).into_owned())
                } else {
                    Message::binary(data)
                };
                let before = out.len();
                match conn.send(msg.clone(), &mut out) {
                    Ok(()) => {
                        assert!(!server_close_sent && !conn.close_sent());
                        sent.push(msg);
                    }
                    Err(e) => assert!(e.is_closed(), "send failed: {e}"),
                }
                sent_bytes = out.len() - before;
            }
            Op::SendPing(p) => {
                let before = out.len();
                let r = conn.send(Message::Ping(p.clone().into()), &mut out);
                assert_eq!(r.is_ok(), p.len() <= 125 && !conn.close_sent());
                if r.is_ok() {
                    sent_pings.push(p);
                }
                sent_bytes = out.len() - before;
            }
            Op::SendClose(code, reason) => {
                let was_sent = conn.close_sent();
                let before = out.len();
                let ok = conn
                    .send(
                        Message::Close(Some(CloseFrame::new(CloseCode::from(code), reason))),
                        &mut out,
                    )
                    .is_ok();
                if ok {
                    assert!(!was_sent);
                    server_close_sent = true;
                }
                sent_bytes = out.len() - before;
            }
            Op::ProcessInput => conn.process_input(&mut out),
            Op::Poll => {}
            Op::Eof => {
                let ev = conn.receive_eof();
                assert_eq!(ev.is_some(), !eof && !failed && !got_close);
                eof = true;
                // Bytes still on the wire will never arrive.
                wire.clear();
                clean = false;
            }
        }
        poll(
            &mut conn,
            &mut out,
            &mut expected,
            clean,
            &mut failed,
            &mut got_close,
        );
        if failed || got_close || eof {
            assert!(
                conn.poll_event(&mut out).is_none(),
                "an event after the end"
            );
        }
        // Output beyond what was sent is pongs (smaller than their pings)
        // and at most one close frame.
        let produced = out.len() - out_before - sent_bytes;
        assert!(
            produced <= read_before + fed + 2 + 125,
            "{produced} bytes of output for {} bytes of input",
            read_before + fed
        );
        let bytes = drain(&mut out);
        mirror.feed(&bytes);
    }
    if clean {
        // Deliver the rest: every valid message must come out.
        let rest: Vec<u8> = wire.drain(..).collect();
        conn.receive_data(&rest);
        poll(
            &mut conn,
            &mut out,
            &mut expected,
            clean,
            &mut failed,
            &mut got_close,
        );
        assert!(
            expected.is_empty(),
            "valid messages were lost: {expected:?}"
        );
        assert!(conn.read_buf().is_empty());
        let bytes = drain(&mut out);
        mirror.feed(&bytes);
    }
    // The server's data messages decode to exactly what was sent.
    assert_eq!(mirror.data, sent, "sent messages did not round-trip");
    assert_eq!(mirror.pings, sent_pings, "sent pings did not round-trip");
    if !server_close_sent {
        // Every ping is answered with its payload, in order, until the
        // server's own close frame.
        assert_eq!(mirror.pongs, ping_events, "pings and pongs differ");
    }
    if clean && !server_close_sent {
        assert!(mirror.close.is_none());
    }
});
