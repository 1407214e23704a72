//! Raw bytes into a server `Connection`, with and without permessage-deflate.
//!
//! Input: byte 0 picks the extension offer (or none) and the limits, byte 1
//! how the input is cut and fed; the rest is what the peer sends.
//!
//! Invariants: no panic; after an `Err` event no event ever follows; a Text
//! message is valid UTF-8 and no message exceeds `max_message_size`; after
//! the engine is drained the read buffer holds less than one header plus
//! `max_frame_size`; the engine's own output (pongs, close replies, the
//! failure close) is well-formed, unmasked, and never more bytes than were
//! received plus one close frame.
#![no_main]

mod common;

use common::{MAX_HEADER, OFFERS, check_message, drain, parse_server_frames, server};
use libfuzzer_sys::fuzz_target;
use tower_ws::proto::WriteBuf;
use tower_ws::{Config, DeflateConfig};

const CHUNKS: [usize; 8] = [1, 2, 3, 7, 64, 512, 4096, usize::MAX];

fn limits(sel: u8) -> Config {
    match sel & 3 {
        0 => Config::default()
            .max_frame_size(64)
            .max_message_size(256)
            .max_fragments(4)
            .max_pending_events(2),
        1 => Config::default()
            .max_frame_size(4096)
            .max_message_size(16384)
            .max_fragments(64)
            .max_pending_events(8),
        2 => Config::default().max_frame_size(0).max_message_size(0),
        _ => Config::default(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (sel, mode, input) = (data[0], data[1], &data[2..]);
    let config = limits(sel >> 3);
    let max_frame = config.get_max_frame_size();
    let max_message = config.get_max_message_size();
    let offer = OFFERS.get(usize::from(sel & 7)).copied();
    let deflate = DeflateConfig::default().threshold(0);
    let mut conn = server(&config, offer, &deflate);
    let mut out = WriteBuf::new();

    let chunk = CHUNKS[usize::from(mode & 7)];
    let read_ahead = mode & 0x08 != 0;
    let via_read_buf = mode & 0x10 != 0;
    let eof_at_end = mode & 0x20 != 0;

    let mut failed = false;
    let mut closed_by_peer = false;
    let mut fed_total = 0usize;
    let mut written = Vec::new();

    for piece in input.chunks(chunk.min(input.len().max(1))) {
        let before = conn.read_buf().len();
        if via_read_buf {
            if !conn.is_closed() {
                conn.read_buf().extend_from_slice(piece);
            }
        } else {
            conn.receive_data(piece);
        }
        fed_total += piece.len();
        assert!(
            conn.read_buf().len() <= before + piece.len(),
            "the read buffer grew by more than what was fed"
        );
        if read_ahead {
            conn.process_input(&mut out);
        }
        while let Some(ev) = conn.poll_event(&mut out) {
            assert!(!failed, "an event after a failure: {ev:?}");
            match ev {
                Ok(msg) => {
                    assert!(!closed_by_peer, "a message after the peer's close");
                    check_message(&msg, max_message);
                    closed_by_peer |= msg.is_close();
                }
                Err(e) => {
                    // Every failure of the engine has a close code to send.
                    assert!(
                        e.close_code().is_some(),
                        "failure without a close code: {e}"
                    );
                    failed = true;
                }
            }
        }
        assert!(
            conn.read_buf().len() <= max_frame + MAX_HEADER,
            "read buffer {} over max_frame_size {} + header after draining",
            conn.read_buf().len(),
            max_frame
        );
        if failed || closed_by_peer {
            assert!(conn.is_closed());
            assert!(conn.read_buf().is_empty(), "input kept after closing");
        }
        written.extend(drain(&mut out));
        assert!(
            written.len() <= fed_total + 2 + 125,
            "server output {} for {} bytes of input",
            written.len(),
            fed_total
        );
    }
    if eof_at_end {
        let already = conn.is_closed();
        let ev = conn.receive_eof();
        assert_eq!(ev.is_some(), !already);
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty(), "EOF produced output");
    }
    // After a failure or close nothing more is produced, whatever arrives.
    if conn.is_closed() {
        conn.receive_data(&[0x81, 0x80, 0, 0, 0, 0]);
        conn.process_input(&mut out);
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty());
    }

    let frames = parse_server_frames(&written);
    for (i, f) in frames.iter().enumerate() {
        assert!(
            f.opcode == 0xA || f.opcode == 0x8,
            "the engine alone only writes pongs and close frames"
        );
        assert_eq!(f.rsv, 0);
        if f.opcode == 0x8 {
            assert_eq!(i, frames.len() - 1, "a frame after the close frame");
            assert!(f.payload.len() != 1);
        }
    }
});
