//! Unit tests of the engine, grouped by the RFC section whose rule they check.
//!
//! Frames are written as byte literals; client frames go through [`masked`],
//! which masks them as a client must (RFC 6455 §5.3). Every failure asserts
//! the exact close frame the engine wrote and the error's class and code.

use super::*;
use crate::proto::mask::apply_mask_reference;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The masking key of RFC 6455 §5.7's examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// First header byte: FIN bit and opcodes.
const FIN: u8 = 0x80;
const RSV1_BIT: u8 = 0x40;
const RSV2_BIT: u8 = 0x20;
const RSV3_BIT: u8 = 0x10;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// The close frames the engine sends when it fails the connection.
const CLOSE_1002: &[u8] = b"\x88\x10\x03\xeaprotocol error";
const CLOSE_1007: &[u8] = b"\x88\x0f\x03\xefinvalid UTF-8";
const CLOSE_1007_DEFLATE: &[u8] = b"\x88\x19\x03\xefinvalid compressed data";
const CLOSE_1009: &[u8] = b"\x88\x11\x03\xf1message too big";

/// A client frame masked with `key`: first byte `b0`, minimal length
/// encoding, masked payload.
pub(super) fn masked_with(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask_reference(&mut out[start..], key, 0);
    out
}

/// A client frame masked with [`KEY`].
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked_with(b0, payload, KEY)
}

/// A close frame payload: code and reason.
fn close_payload_of(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

fn server() -> Connection {
    Connection::new(Role::Server, &Config::default(), None)
}

fn server_with(config: Config) -> Connection {
    Connection::new(Role::Server, &config, None)
}

/// Everything queued in `out`, consumed.
pub(super) fn drain(out: &mut WriteBuf) -> Vec<u8> {
    let mut v = Vec::with_capacity(out.remaining());
    while out.has_remaining() {
        let chunk = out.chunk();
        let n = chunk.len();
        v.extend_from_slice(chunk);
        out.advance(n);
    }
    v
}

/// Polls until the engine needs more input; returns the events.
fn poll_all(conn: &mut Connection, out: &mut WriteBuf) -> Vec<Result<Message, Error>> {
    let mut events = Vec::new();
    while let Some(ev) = conn.poll_event(out) {
        events.push(ev);
    }
    events
}

/// Feeds `input` in one chunk and returns the messages delivered and the
/// bytes written, panicking on an error.
fn messages(conn: &mut Connection, input: &[u8]) -> (Vec<Message>, Vec<u8>) {
    let mut out = WriteBuf::new();
    conn.receive_data(input);
    let msgs = poll_all(conn, &mut out)
        .into_iter()
        .map(|e| e.expect("no error expected"))
        .collect();
    (msgs, drain(&mut out))
}

/// Feeds `input` and expects the connection to fail; returns the messages
/// delivered before the error, the error, and everything written.
fn failure(conn: &mut Connection, input: &[u8]) -> (Vec<Message>, Error, Vec<u8>) {
    let mut out = WriteBuf::new();
    conn.receive_data(input);
    let mut msgs = Vec::new();
    loop {
        match conn.poll_event(&mut out) {
            Some(Ok(m)) => msgs.push(m),
            Some(Err(e)) => {
                // Once failed: closed, no more events, nothing more written.
                assert!(conn.is_closed(), "a failed connection is closed");
                let written = drain(&mut out);
                assert!(
                    conn.poll_event(&mut out).is_none(),
                    "no event after an error"
                );
                assert!(out.is_empty());
                return (msgs, e, written);
            }
            None => panic!("expected the connection to fail; got {msgs:?}"),
        }
    }
}

/// Asserts that `input` fails a fresh default connection with 1002.
fn assert_protocol_error(input: &[u8]) {
    assert_fails_with(&mut server(), input, 1002);
}

/// Asserts that `input` fails `conn` with close code `code`, and that the
/// close frame it wrote is the exact one for that code.
fn assert_fails_with(conn: &mut Connection, input: &[u8], code: u16) -> Vec<Message> {
    let (msgs, err, written) = failure(conn, input);
    let frame = match code {
        1002 => CLOSE_1002,
        1007 => CLOSE_1007,
        1009 => CLOSE_1009,
        _ => unreachable!(),
    };
    assert_eq!(err.close_code(), Some(CloseCode::from(code)), "{err}");
    match code {
        1002 => assert!(err.is_protocol(), "{err:?}"),
        1007 => assert!(err.is_invalid_payload(), "{err:?}"),
        1009 => assert!(err.is_capacity(), "{err:?}"),
        _ => unreachable!(),
    }
    assert_eq!(written, frame, "close frame for {code}");
    msgs
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.2: base framing protocol
// ---------------------------------------------------------------------------

mod rfc6455_5_2_framing {
    use super::*;

    /// A masked binary frame with an explicit header (no helper), so the
    /// length encodings are checked against literal bytes.
    fn literal_frame(header: &[u8], len: usize) -> (Vec<u8>, Vec<u8>) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let mut frame = header.to_vec();
        frame.extend_from_slice(&KEY);
        let start = frame.len();
        frame.extend_from_slice(&payload);
        apply_mask_reference(&mut frame[start..], KEY, 0);
        (frame, payload)
    }

    fn assert_binary_frame_decodes(header: &[u8], len: usize) {
        let (frame, payload) = literal_frame(header, len);
        assert_eq!(frame, masked(FIN | BINARY, &payload), "the helper agrees");
        let (msgs, written) = messages(&mut server(), &frame);
        assert_eq!(msgs, vec![Message::Binary(payload.into())], "length {len}");
        assert!(written.is_empty());
    }

    #[test]
    fn decodes_empty_7_bit_length() {
        assert_binary_frame_decodes(&[0x82, 0x80], 0);
    }

    #[test]
    fn decodes_7_bit_length_at_125() {
        assert_binary_frame_decodes(&[0x82, 0xfd], 125);
    }

    #[test]
    fn decodes_16_bit_length_at_126() {
        assert_binary_frame_decodes(&[0x82, 0xfe, 0x00, 0x7e], 126);
    }

    #[test]
    fn decodes_16_bit_length_at_65535() {
        assert_binary_frame_decodes(&[0x82, 0xfe, 0xff, 0xff], 65535);
    }

    #[test]
    fn decodes_64_bit_length_at_65536() {
        assert_binary_frame_decodes(&[0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00], 65536);
    }

    #[test]
    fn accepts_non_minimal_length_encodings() {
        // RFC 6455 §5.2 asks senders for the minimal encoding; the receiver
        // reads the value it was given.
        let (frame, payload) = literal_frame(&[0x82, 0xfe, 0x00, 0x05], 5);
        let (msgs, _) = messages(&mut server(), &frame);
        assert_eq!(msgs, vec![Message::Binary(payload.into())]);
        let (frame, payload) = literal_frame(&[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x05], 5);
        let (msgs, _) = messages(&mut server(), &frame);
        assert_eq!(msgs, vec![Message::Binary(payload.into())]);
    }

    #[test]
    fn rfc_5_7_single_frame_masked_text() {
        let (msgs, _) = messages(
            &mut server(),
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        );
        assert_eq!(msgs, vec![Message::text("Hello")]);
    }

    #[test]
    fn rfc_5_7_fragmented_text() {
        // "Hel" then "lo", each masked.
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(FIN | CONT, b"lo"));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::text("Hello")]);
    }

    #[test]
    fn rfc_5_7_masked_ping_and_pong() {
        // Ping "Hello" (masked as the client sends it), answered unmasked.
        let ping = masked(FIN | PING, b"Hello");
        assert_eq!(&ping[..2], &[0x89, 0x85]);
        let (msgs, written) = messages(&mut server(), &ping);
        assert_eq!(msgs, vec![Message::Ping(Bytes::from_static(b"Hello"))]);
        assert_eq!(written, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);

        // The masked pong of §5.7.
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (msgs, written) = messages(&mut server(), &pong);
        assert_eq!(msgs, vec![Message::Pong(Bytes::from_static(b"Hello"))]);
        assert!(written.is_empty());
    }

    #[test]
    fn rfc_5_7_binary_256_bytes_and_64_kib() {
        assert_binary_frame_decodes(&[0x82, 0xfe, 0x01, 0x00], 256);
        assert_binary_frame_decodes(&[0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00], 65536);
    }

    #[test]
    fn rfc_5_7_unmasked_hello_is_refused_by_a_server() {
        assert_protocol_error(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rejects_64_bit_length_with_msb_set() {
        let mut input = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0];
        input.extend_from_slice(&KEY);
        assert_protocol_error(&input);
    }

    #[test]
    fn rejects_rsv1_without_extension() {
        assert_protocol_error(&masked(FIN | RSV1_BIT | TEXT, b"hi"));
    }

    #[test]
    fn rejects_rsv2_without_extension() {
        assert_protocol_error(&masked(FIN | RSV2_BIT | TEXT, b"hi"));
    }

    #[test]
    fn rejects_rsv3_without_extension() {
        assert_protocol_error(&masked(FIN | RSV3_BIT | BINARY, b"hi"));
    }

    #[test]
    fn rejects_rsv_bits_on_control_frames_without_extension() {
        for rsv in [RSV1_BIT, RSV2_BIT, RSV3_BIT] {
            assert_protocol_error(&masked(FIN | rsv | PING, b"p"));
        }
    }

    #[test]
    fn rejects_reserved_non_control_opcodes_3_to_7() {
        for op in 0x3..=0x7u8 {
            assert_protocol_error(&masked(FIN | op, b""));
            assert_protocol_error(&masked(FIN | op, b"payload"));
        }
    }

    #[test]
    fn rejects_reserved_control_opcodes_b_to_f() {
        for op in 0xb..=0xfu8 {
            assert_protocol_error(&masked(FIN | op, b""));
            assert_protocol_error(&masked(FIN | op, b"payload"));
        }
    }

    #[test]
    fn rejects_reserved_opcode_from_first_two_bytes() {
        // The opcode decides: no need to wait for the masking key or payload.
        assert_protocol_error(&[0x83, 0xff]);
    }

    #[test]
    fn incomplete_header_waits_for_more_bytes() {
        let frame = masked(FIN | BINARY, &[1u8; 300]);
        let mut conn = server();
        let mut out = WriteBuf::new();
        for b in &frame[..frame.len() - 1] {
            conn.receive_data(std::slice::from_ref(b));
            assert!(conn.poll_event(&mut out).is_none());
        }
        conn.receive_data(&frame[frame.len() - 1..]);
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::Binary(vec![1u8; 300].into())
        );
        assert!(out.is_empty());
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.3: client-to-server masking
// ---------------------------------------------------------------------------

mod rfc6455_5_3_masking {
    use super::*;

    #[test]
    fn rejects_unmasked_client_frame() {
        assert_protocol_error(&[0x82, 0x03, 1, 2, 3]);
    }

    #[test]
    fn rejects_unmasked_empty_frame() {
        assert_protocol_error(&[0x81, 0x00]);
    }

    #[test]
    fn rejects_unmasked_control_frame() {
        assert_protocol_error(&[0x89, 0x02, b'h', b'i']);
        assert_protocol_error(&[0x88, 0x00]);
    }

    #[test]
    fn rejects_unmasked_continuation_after_masked_first_fragment() {
        let mut input = masked(TEXT, b"Hel");
        input.extend_from_slice(&[0x80, 0x02, b'l', b'o']);
        assert_fails_with(&mut server(), &input, 1002);
    }

    #[test]
    fn unmasks_with_any_key() {
        for key in [[0, 0, 0, 0], [0xff; 4], [1, 2, 3, 4], KEY] {
            let payload: Vec<u8> = (0..=255u8).collect();
            let (msgs, _) = messages(&mut server(), &masked_with(FIN | BINARY, &payload, key));
            assert_eq!(msgs, vec![Message::Binary(payload.into())], "key {key:?}");
        }
    }

    #[test]
    fn unmasks_payload_arriving_in_pieces_at_every_offset() {
        let payload: Vec<u8> = (0..200u8).collect();
        let frame = masked(FIN | BINARY, &payload);
        let header = 2 + 2 + 4;
        for split1 in header..frame.len() {
            for split2 in [split1 + 1, split1 + 2, split1 + 3, split1 + 5, frame.len()] {
                let split2 = split2.min(frame.len());
                let mut conn = server();
                let mut out = WriteBuf::new();
                let mut got = Vec::new();
                for piece in [&frame[..split1], &frame[split1..split2], &frame[split2..]] {
                    conn.receive_data(piece);
                    got.extend(poll_all(&mut conn, &mut out));
                }
                assert_eq!(got.len(), 1, "split at {split1},{split2}");
                assert_eq!(
                    got.pop().unwrap().unwrap(),
                    Message::Binary(payload.clone().into())
                );
            }
        }
    }

    #[test]
    fn each_frame_uses_its_own_key() {
        let mut input = masked_with(TEXT, b"Hel", [1, 2, 3, 4]);
        input.extend(masked_with(FIN | CONT, b"lo", [9, 8, 7, 6]));
        input.extend(masked_with(FIN | TEXT, b"world", [0xaa, 0xbb, 0xcc, 0xdd]));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::text("Hello"), Message::text("world")]);
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.4: fragmentation
// ---------------------------------------------------------------------------

mod rfc6455_5_4_fragmentation {
    use super::*;

    #[test]
    fn reassembles_fragmented_text() {
        let mut input = masked(TEXT, b"frag");
        input.extend(masked(CONT, b"men"));
        input.extend(masked(FIN | CONT, b"ted"));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::text("fragmented")]);
    }

    #[test]
    fn reassembles_fragmented_binary_with_empty_fragments() {
        let mut input = masked(BINARY, b"");
        input.extend(masked(CONT, b"\x00\x01"));
        input.extend(masked(CONT, b""));
        input.extend(masked(FIN | CONT, b"\x02"));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::binary(vec![0u8, 1, 2])]);
    }

    #[test]
    fn reassembles_all_empty_fragments_into_empty_message() {
        let mut input = masked(TEXT, b"");
        input.extend(masked(FIN | CONT, b""));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::text("")]);
    }

    #[test]
    fn delivers_message_whole_with_ping_and_pong_between_fragments() {
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(FIN | PING, b"ping-1"));
        input.extend(masked(CONT, b"l"));
        input.extend(masked(FIN | PONG, b"pong-1"));
        input.extend(masked(FIN | PING, b""));
        input.extend(masked(FIN | CONT, b"o"));
        let (msgs, written) = messages(&mut server(), &input);
        assert_eq!(
            msgs,
            vec![
                Message::Ping(Bytes::from_static(b"ping-1")),
                Message::Pong(Bytes::from_static(b"pong-1")),
                Message::Ping(Bytes::new()),
                Message::text("Hello"),
            ]
        );
        // Each ping is answered with its own payload, unmasked; pongs are not answered.
        assert_eq!(written, b"\x8a\x06ping-1\x8a\x00");
    }

    #[test]
    fn rejects_continuation_without_message() {
        assert_protocol_error(&masked(FIN | CONT, b"orphan"));
    }

    #[test]
    fn rejects_non_final_continuation_without_message() {
        assert_protocol_error(&masked(CONT, b"orphan"));
    }

    #[test]
    fn rejects_continuation_after_message_completed() {
        let mut input = masked(FIN | TEXT, b"done");
        input.extend(masked(FIN | CONT, b"more"));
        let msgs = assert_fails_with(&mut server(), &input, 1002);
        assert_eq!(msgs, vec![Message::text("done")]);
    }

    #[test]
    fn rejects_new_data_frame_during_fragmented_message() {
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(FIN | BINARY, b"x"));
        assert_protocol_error(&input);

        let mut input = masked(BINARY, b"Hel");
        input.extend(masked(TEXT, b"x"));
        assert_protocol_error(&input);
    }

    #[test]
    fn rejects_new_data_frame_after_interleaved_ping() {
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(FIN | PING, b"p"));
        input.extend(masked(FIN | TEXT, b"x"));
        let mut conn = server();
        let (msgs, err, written) = failure(&mut conn, &input);
        assert_eq!(msgs, vec![Message::Ping(Bytes::from_static(b"p"))]);
        assert!(err.is_protocol());
        let mut expected = b"\x8a\x01p".to_vec();
        expected.extend_from_slice(CLOSE_1002);
        assert_eq!(written, expected);
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.5: control frames
// ---------------------------------------------------------------------------

mod rfc6455_5_5_control_frames {
    use super::*;

    #[test]
    fn answers_ping_with_same_payload() {
        let (msgs, written) = messages(&mut server(), &masked(FIN | PING, b"are you there?"));
        assert_eq!(
            msgs,
            vec![Message::Ping(Bytes::from_static(b"are you there?"))]
        );
        assert_eq!(written, b"\x8a\x0eare you there?");
    }

    #[test]
    fn answers_empty_ping_with_empty_pong() {
        let (_, written) = messages(&mut server(), &masked(FIN | PING, b""));
        assert_eq!(written, [0x8a, 0x00]);
    }

    #[test]
    fn answers_125_byte_ping() {
        let payload = [0x5au8; 125];
        let (msgs, written) = messages(&mut server(), &masked(FIN | PING, &payload));
        assert_eq!(msgs, vec![Message::Ping(payload.to_vec().into())]);
        assert_eq!(&written[..2], &[0x8a, 125]);
        assert_eq!(&written[2..], &payload[..]);
    }

    #[test]
    fn answers_every_ping_of_a_burst_in_order() {
        let mut input = Vec::new();
        for i in 0..10u8 {
            input.extend(masked(FIN | PING, &[i]));
        }
        let (msgs, written) = messages(&mut server(), &input);
        assert_eq!(msgs.len(), 10);
        let expected: Vec<u8> = (0..10u8).flat_map(|i| [0x8a, 0x01, i]).collect();
        assert_eq!(written, expected);
    }

    #[test]
    fn reports_unsolicited_pong_without_answering() {
        let (msgs, written) = messages(&mut server(), &masked(FIN | PONG, b"beat"));
        assert_eq!(msgs, vec![Message::Pong(Bytes::from_static(b"beat"))]);
        assert!(written.is_empty());
    }

    #[test]
    fn rejects_fragmented_ping() {
        assert_protocol_error(&masked(PING, b"frag"));
    }

    #[test]
    fn rejects_fragmented_close_and_pong() {
        assert_protocol_error(&masked(CLOSE, &close_payload_of(1000, b"")));
        assert_protocol_error(&masked(PONG, b""));
    }

    #[test]
    fn rejects_fragmented_control_frame_inside_fragmented_message() {
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(PING, b"p"));
        assert_protocol_error(&input);
    }

    #[test]
    fn rejects_control_frame_over_125_bytes() {
        // 126 bytes in the 16-bit encoding.
        assert_protocol_error(&masked(FIN | PING, &[0u8; 126]));
        assert_protocol_error(&masked(FIN | PONG, &[0u8; 126]));
        assert_protocol_error(&masked(FIN | CLOSE, &close_payload_of(1000, &[b'a'; 124])));
    }

    #[test]
    fn rejects_control_frame_with_64_bit_length() {
        let mut input = vec![0x89, 0xff, 0, 0, 0, 0, 0, 0, 0, 5];
        input.extend_from_slice(&KEY);
        input.extend_from_slice(&[0; 5]);
        assert_protocol_error(&input);
    }

    #[test]
    fn rejects_long_control_frame_from_its_header_alone() {
        // The header says 126 bytes: no need to wait for them.
        let mut conn = server();
        assert_fails_with(&mut conn, &[0x89, 0xfe, 0x00, 0x7e], 1002);
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.5.1 and §7.4: close frames and codes
// ---------------------------------------------------------------------------

mod rfc6455_5_5_1_close {
    use super::*;

    #[test]
    fn answers_empty_close_with_empty_close() {
        let mut conn = server();
        let (msgs, written) = messages(&mut conn, &masked(FIN | CLOSE, b""));
        assert_eq!(msgs, vec![Message::Close(None)]);
        assert_eq!(written, [0x88, 0x00]);
        assert!(conn.is_closed());
        assert!(conn.close_received());
        assert!(conn.close_sent());
    }

    #[test]
    fn rejects_one_byte_close_payload() {
        assert_protocol_error(&masked(FIN | CLOSE, &[0x03]));
    }

    #[test]
    fn delivers_close_code_and_reason() {
        let mut conn = server();
        let (msgs, written) = messages(
            &mut conn,
            &masked(FIN | CLOSE, &close_payload_of(1001, "bye ✓".as_bytes())),
        );
        assert_eq!(msgs, vec![Message::close(1001, "bye ✓")]);
        // The reply echoes the code, without the reason.
        assert_eq!(written, [0x88, 0x02, 0x03, 0xe9]);
    }

    #[test]
    fn accepts_close_with_123_byte_reason() {
        let reason = [b'r'; 123];
        let payload = close_payload_of(1000, &reason);
        assert_eq!(payload.len(), 125);
        let (msgs, written) = messages(&mut server(), &masked(FIN | CLOSE, &payload));
        assert_eq!(
            msgs,
            vec![Message::close(
                1000,
                String::from_utf8(reason.to_vec()).unwrap()
            )]
        );
        assert_eq!(written, [0x88, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn accepts_and_echoes_every_sendable_close_code() {
        let codes = (1000..=1003u16)
            .chain(1007..=1014)
            .chain([3000, 3001, 3999, 4000, 4001, 4999]);
        for code in codes {
            let mut conn = server();
            let (msgs, written) = messages(
                &mut conn,
                &masked(FIN | CLOSE, &close_payload_of(code, b"why")),
            );
            assert_eq!(msgs, vec![Message::close(code, "why")], "code {code}");
            let mut expected = vec![0x88, 0x02];
            expected.extend_from_slice(&code.to_be_bytes());
            assert_eq!(written, expected, "reply to code {code}");
            assert!(conn.is_closed());
        }
    }

    #[test]
    fn rejects_close_codes_that_may_not_be_sent() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let mut conn = server();
            let (_, err, written) = failure(
                &mut conn,
                &masked(FIN | CLOSE, &close_payload_of(code, b"")),
            );
            assert!(err.is_protocol(), "code {code}: {err:?}");
            assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL));
            assert_eq!(written, CLOSE_1002, "code {code}");
            assert!(
                !conn.close_received(),
                "code {code}: an invalid close is not a close"
            );
        }
    }

    #[test]
    fn rejects_close_reason_with_invalid_utf8() {
        let mut conn = server();
        assert_fails_with(
            &mut conn,
            &masked(FIN | CLOSE, &close_payload_of(1000, b"\xff\xfe")),
            1007,
        );
        let mut conn = server();
        // A truncated multi-byte character is invalid too.
        assert_fails_with(
            &mut conn,
            &masked(FIN | CLOSE, &close_payload_of(1000, b"ok\xe2\x82")),
            1007,
        );
    }

    #[test]
    fn close_may_arrive_between_fragments() {
        let mut input = masked(TEXT, b"Hel");
        input.extend(masked(FIN | CLOSE, &close_payload_of(1000, b"")));
        let mut conn = server();
        let (msgs, written) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::close(1000, "")]);
        assert_eq!(written, [0x88, 0x02, 0x03, 0xe8]);
        assert!(conn.is_closed());
    }

    #[test]
    fn no_events_after_close() {
        let mut input = masked(FIN | CLOSE, b"");
        input.extend(masked(FIN | TEXT, b"late"));
        input.extend(masked(FIN | PING, b"late"));
        let mut conn = server();
        let (msgs, written) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::Close(None)]);
        // The ping after the close is not answered.
        assert_eq!(written, [0x88, 0x00]);
        let mut out = WriteBuf::new();
        assert!(conn.poll_event(&mut out).is_none());
        conn.process_input(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn ignores_data_received_after_close() {
        let mut conn = server();
        messages(&mut conn, &masked(FIN | CLOSE, b""));
        conn.receive_data(&masked(FIN | TEXT, b"late"));
        conn.receive_data(b"\xff\xff garbage that would fail an open connection");
        assert!(conn.read_buf().is_empty());
        let mut out = WriteBuf::new();
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty());
        assert!(!conn.wants_read());
        assert!(
            conn.receive_eof().is_none(),
            "EOF after the handshake is no error"
        );
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.6 and §8.1: data frames, UTF-8
// ---------------------------------------------------------------------------

mod rfc6455_5_6_data_utf8 {
    use super::*;

    #[test]
    fn delivers_multibyte_text() {
        let text = "κόσμε ¢€𐍈";
        let (msgs, _) = messages(&mut server(), &masked(FIN | TEXT, text.as_bytes()));
        assert_eq!(msgs, vec![Message::text(text)]);
    }

    #[test]
    fn binary_is_not_utf8_checked() {
        let (msgs, _) = messages(
            &mut server(),
            &masked(FIN | BINARY, b"\xff\xfe\xed\xa0\x80"),
        );
        assert_eq!(
            msgs,
            vec![Message::binary(b"\xff\xfe\xed\xa0\x80".to_vec())]
        );
    }

    #[test]
    fn rejects_invalid_text_in_single_frame() {
        assert_fails_with(&mut server(), &masked(FIN | TEXT, b"abc\xff"), 1007);
    }

    #[test]
    fn rejects_text_ending_inside_a_character() {
        assert_fails_with(&mut server(), &masked(FIN | TEXT, b"ok\xe2\x82"), 1007);
        let mut input = masked(TEXT, b"ok");
        input.extend(masked(FIN | CONT, b"\xe2\x82"));
        assert_fails_with(&mut server(), &input, 1007);
    }

    #[test]
    fn accepts_multibyte_character_split_across_fragments() {
        // "€" = e2 82 ac, one byte per fragment; "𐍈" = f0 90 8d 88 split 1/3.
        let mut input = masked(TEXT, b"a\xe2");
        input.extend(masked(CONT, b"\x82"));
        input.extend(masked(CONT, b"\xacb\xf0"));
        input.extend(masked(FIN | CONT, b"\x90\x8d\x88"));
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::text("a€b𐍈")]);
    }

    #[test]
    fn fails_on_invalid_fragment_before_message_completes() {
        // Autobahn 6.4.1: the second fragment is invalid; no final fragment
        // ever arrives, yet the connection fails at once.
        let mut input = masked(TEXT, "κόσμε".as_bytes());
        input.extend(masked(CONT, b"\xf4\x90\x80\x80"));
        let mut conn = server();
        assert_fails_with(&mut conn, &input, 1007);
    }

    #[test]
    fn fails_on_invalid_partial_frame_before_frame_completes() {
        // Autobahn 6.4.3: a single frame whose first bytes are already
        // invalid fails before the rest of its payload arrives.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(b"\xf4\x90\x80\x80");
        payload.extend_from_slice(&[b'-'; 100]);
        let frame = masked(FIN | TEXT, &payload);
        assert!(payload.len() < 126, "2-byte header + 4-byte key");
        let invalid_at = 6 + "κόσμε".len() + 1; // index of the 0x90 after 0xf4
        let mut conn = server();
        let mut out = WriteBuf::new();
        let mut fed = 0;
        let err = loop {
            conn.receive_data(&frame[fed..fed + 1]);
            fed += 1;
            if let Some(ev) = conn.poll_event(&mut out) {
                break ev.unwrap_err();
            }
            assert!(fed < frame.len(), "never failed");
        };
        assert_eq!(
            fed,
            invalid_at + 1,
            "fails at the byte that makes it invalid"
        );
        assert!(err.is_invalid_payload());
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        assert_eq!(drain(&mut out), CLOSE_1007);
        assert!(fed < frame.len());
    }

    #[test]
    fn fails_on_invalid_partial_frame_fed_in_two_pieces() {
        let mut payload = b"valid start \xc0\xaf".to_vec();
        payload.extend_from_slice(&[b'x'; 1000]);
        let frame = masked(FIN | TEXT, &payload);
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&frame[..8 + 20]);
        let err = conn.poll_event(&mut out).unwrap().unwrap_err();
        assert!(err.is_invalid_payload());
        assert_eq!(drain(&mut out), CLOSE_1007);
    }

    #[test]
    fn fails_on_surrogate_split_across_fragments() {
        // ED A0 80 encodes a UTF-16 surrogate: invalid once the A0 arrives.
        let mut input = masked(TEXT, b"x\xed");
        input.extend(masked(CONT, b"\xa0"));
        assert_fails_with(&mut server(), &input, 1007);
    }

    #[test]
    fn text_split_in_partial_frames_at_every_byte_is_accepted() {
        let text = "ü€𐍈 mixed ascii and κόσμε";
        let mut input = masked(TEXT, &text.as_bytes()[..7]);
        input.extend(masked(FIN | CONT, &text.as_bytes()[7..]));
        let mut conn = server();
        let mut out = WriteBuf::new();
        let mut got = Vec::new();
        for b in &input {
            conn.receive_data(std::slice::from_ref(b));
            got.extend(
                poll_all(&mut conn, &mut out)
                    .into_iter()
                    .map(Result::unwrap),
            );
        }
        assert_eq!(got, vec![Message::text(text)]);
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §7: the closing handshake
// ---------------------------------------------------------------------------

mod rfc6455_7_closing {
    use super::*;

    #[test]
    fn app_initiated_close_then_peer_reply_completes_handshake() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send(Message::close(CloseCode::NORMAL, "bye"), &mut out)
            .unwrap();
        assert_eq!(drain(&mut out), b"\x88\x05\x03\xe8bye");
        assert!(conn.close_sent());
        assert!(!conn.is_closed(), "waits for the peer's close");
        assert!(conn.wants_read());

        conn.receive_data(&masked(FIN | CLOSE, &close_payload_of(1000, b"")));
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::close(1000, "")
        );
        assert!(out.is_empty(), "no second close frame");
        assert!(conn.is_closed());
        assert!(conn.close_received());
        assert!(conn.poll_event(&mut out).is_none());
    }

    #[test]
    fn app_close_without_code_sends_empty_close() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send(Message::Close(None), &mut out).unwrap();
        assert_eq!(drain(&mut out), [0x88, 0x00]);
        conn.receive_data(&masked(FIN | CLOSE, b""));
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::Close(None)
        );
        assert!(out.is_empty());
        assert!(conn.is_closed());
    }

    #[test]
    fn data_still_arrives_while_waiting_for_close_reply() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send(Message::close(1001, ""), &mut out).unwrap();
        drain(&mut out);
        let mut input = masked(FIN | TEXT, b"in flight");
        input.extend(masked(FIN | PING, b"p"));
        input.extend(masked(FIN | CLOSE, &close_payload_of(1001, b"")));
        let (msgs, written) = messages(&mut conn, &input);
        assert_eq!(
            msgs,
            vec![
                Message::text("in flight"),
                Message::Ping(Bytes::from_static(b"p")),
                Message::close(1001, ""),
            ]
        );
        // After our close frame, pings are not answered (RFC 6455 §5.5.1).
        assert!(written.is_empty());
        assert!(conn.is_closed());
    }

    #[test]
    fn failure_after_close_sent_writes_no_second_close_frame() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send(Message::close(1000, ""), &mut out).unwrap();
        drain(&mut out);
        conn.receive_data(&[0x81, 0x00]); // unmasked
        let err = conn.poll_event(&mut out).unwrap().unwrap_err();
        assert!(err.is_protocol());
        assert!(out.is_empty());
        assert!(conn.is_closed());
    }

    #[test]
    fn sending_after_peer_close_fails_with_closed() {
        let mut conn = server();
        messages(&mut conn, &masked(FIN | CLOSE, b""));
        let mut out = WriteBuf::new();
        for msg in [
            Message::text("late"),
            Message::ping(""),
            Message::close(1000, ""),
        ] {
            assert!(conn.send(msg, &mut out).unwrap_err().is_closed());
        }
        assert!(
            conn.send_encoded(Bytes::from_static(b"\x81\x00"), &mut out)
                .unwrap_err()
                .is_closed()
        );
        assert!(out.is_empty());
    }

    #[test]
    fn eof_before_close_is_an_io_error_once() {
        let mut conn = server();
        conn.receive_data(&masked(TEXT, b"partial"));
        let err = conn.receive_eof().unwrap();
        assert!(err.is_io());
        assert_eq!(err.close_code(), None);
        assert!(conn.is_closed());
        assert!(conn.receive_eof().is_none());
        let mut out = WriteBuf::new();
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty());
    }

    #[test]
    fn failed_connection_refuses_sends() {
        let mut conn = server();
        failure(&mut conn, &[0x81, 0x00]);
        let mut out = WriteBuf::new();
        assert!(
            conn.send(Message::text("x"), &mut out)
                .unwrap_err()
                .is_closed()
        );
        assert!(out.is_empty());
    }
}

// ---------------------------------------------------------------------------
// Limits (Config)
// ---------------------------------------------------------------------------

mod limits {
    use super::*;

    #[test]
    fn rejects_header_declaring_2_pow_62_bytes_without_allocating() {
        let mut conn = server();
        let mut input = vec![0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0];
        input.extend_from_slice(&KEY);
        input.extend_from_slice(b"some payload");
        assert_fails_with(&mut conn, &input, 1009);
        assert!(
            conn.read_buf().capacity() < 4096,
            "read buffer grew to {}",
            conn.read_buf().capacity()
        );
    }

    /// A message keeps alive only memory of about its size: a small one
    /// read into a buffer sized for large messages is copied out of it, and
    /// a large one takes its allocation along (the few bytes after it move).
    #[test]
    fn a_message_does_not_keep_a_much_larger_read_buffer_alive() {
        let within = |msg: &Message, base: *const u8, cap: usize| {
            let at = msg.as_payload().as_ptr() as usize;
            (base as usize..base as usize + cap).contains(&at)
        };
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.read_buf().reserve(300 << 10);
        let (base, cap) = (conn.read_buf().as_ptr(), conn.read_buf().capacity());
        let small = masked(FIN | BINARY, &[1u8; 1000]);
        let large = masked(FIN | BINARY, &[2u8; 100 << 10]);
        let mut input = small.clone();
        input.extend_from_slice(&large);
        input.extend_from_slice(&small);
        conn.read_buf().extend_from_slice(&input);
        assert_eq!(conn.read_buf().as_ptr(), base, "no reallocation");

        let first = conn.poll_event(&mut out).unwrap().unwrap();
        assert_eq!(first.as_payload(), &[1u8; 1000][..]);
        assert!(
            !within(&first, base, cap),
            "a 1000 B message keeps 300 KiB alive"
        );
        let second = conn.poll_event(&mut out).unwrap().unwrap();
        assert_eq!(second.len(), 100 << 10);
        assert!(within(&second, base, cap), "a large message is not copied");
        let third = conn.poll_event(&mut out).unwrap().unwrap();
        assert_eq!(third.as_payload(), &[1u8; 1000][..]);
        assert!(
            !within(&third, base, cap),
            "the bytes after a large message moved"
        );
    }

    #[test]
    fn does_not_preallocate_a_declared_frame_length() {
        // A header declaring the largest accepted frame (16 MiB) followed by
        // a few bytes: nothing is reserved for the declared length.
        let mut conn = server();
        let mut input = vec![0x82, 0xff, 0, 0, 0, 0, 0x01, 0, 0, 0];
        input.extend_from_slice(&KEY);
        input.extend_from_slice(&[0; 10]);
        conn.receive_data(&input);
        let mut out = WriteBuf::new();
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty());
        assert!(
            conn.read_buf().capacity() < 4096,
            "read buffer grew to {}",
            conn.read_buf().capacity()
        );
    }

    #[test]
    fn rejects_frame_above_max_frame_size() {
        let config = Config::default().max_frame_size(100);
        let (msgs, _) = messages(
            &mut server_with(config.clone()),
            &masked(FIN | BINARY, &[0; 100]),
        );
        assert_eq!(msgs.len(), 1);
        // Failed from the header alone: the payload never needs to arrive.
        let frame = masked(FIN | BINARY, &[0; 101]);
        assert_fails_with(&mut server_with(config), &frame[..8], 1009);
    }

    #[test]
    fn max_frame_size_applies_to_each_fragment() {
        let config = Config::default().max_frame_size(10);
        let mut input = masked(TEXT, b"0123456789");
        input.extend(masked(FIN | CONT, b"0123456789x"));
        assert_fails_with(&mut server_with(config), &input, 1009);
    }

    #[test]
    fn rejects_single_frame_above_max_message_size() {
        let config = Config::default().max_message_size(10);
        let (msgs, _) = messages(
            &mut server_with(config.clone()),
            &masked(FIN | TEXT, b"0123456789"),
        );
        assert_eq!(msgs, vec![Message::text("0123456789")]);
        let frame = masked(FIN | TEXT, b"0123456789x");
        assert_fails_with(&mut server_with(config), &frame[..8], 1009);
    }

    #[test]
    fn rejects_message_above_max_message_size_across_fragments() {
        let config = Config::default().max_message_size(10);
        let mut ok = masked(TEXT, b"01234");
        ok.extend(masked(CONT, b"567"));
        ok.extend(masked(FIN | CONT, b"89"));
        let (msgs, _) = messages(&mut server_with(config.clone()), &ok);
        assert_eq!(msgs, vec![Message::text("0123456789")]);

        let mut input = masked(TEXT, b"01234");
        input.extend(masked(CONT, b"567"));
        // The header of the fragment that crosses the limit fails it.
        let third = masked(FIN | CONT, b"89x");
        input.extend_from_slice(&third[..6]);
        assert_fails_with(&mut server_with(config), &input, 1009);
    }

    #[test]
    fn rejects_message_with_more_than_max_fragments() {
        let config = Config::default().max_fragments(3);
        let mut ok = masked(BINARY, b"a");
        ok.extend(masked(CONT, b"b"));
        ok.extend(masked(FIN | CONT, b"c"));
        let (msgs, _) = messages(&mut server_with(config.clone()), &ok);
        assert_eq!(msgs, vec![Message::binary(b"abc".to_vec())]);

        let mut input = masked(BINARY, b"a");
        input.extend(masked(CONT, b"b"));
        input.extend(masked(CONT, b"c"));
        input.extend(masked(FIN | CONT, b"d"));
        assert_fails_with(&mut server_with(config), &input, 1009);
    }

    #[test]
    fn control_frames_between_fragments_do_not_count_as_fragments() {
        let config = Config::default().max_fragments(2);
        let mut input = masked(BINARY, b"a");
        for _ in 0..5 {
            input.extend(masked(FIN | PING, b""));
        }
        input.extend(masked(FIN | CONT, b"b"));
        let (msgs, _) = messages(&mut server_with(config), &input);
        assert_eq!(msgs.last(), Some(&Message::binary(b"ab".to_vec())));
    }

    #[test]
    fn fragment_count_resets_for_each_message() {
        let config = Config::default().max_fragments(2);
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend(masked(TEXT, b"a"));
            input.extend(masked(FIN | CONT, b"b"));
        }
        let (msgs, _) = messages(&mut server_with(config), &input);
        assert_eq!(msgs, vec![Message::text("ab"); 3]);
    }

    #[test]
    fn endless_empty_continuations_hit_default_max_fragments() {
        let mut input = masked(BINARY, b"");
        let empty = masked(CONT, b"");
        for _ in 0..(1 << 17) {
            input.extend_from_slice(&empty);
        }
        assert_fails_with(&mut server(), &input, 1009);
    }

    #[test]
    fn four_mib_message_in_64_byte_fragments_passes_default_config() {
        const TOTAL: usize = 4 << 20;
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<&[u8]> = data.chunks(64).collect();
        let mut input = Vec::with_capacity(TOTAL / 64 * 70);
        for (i, chunk) in chunks.iter().enumerate() {
            let op = if i == 0 { BINARY } else { CONT };
            let fin = if i == chunks.len() - 1 { FIN } else { 0 };
            input.extend(masked_with(fin | op, chunk, [i as u8, 1, 2, 3]));
        }
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0] == Message::Binary(data.into()),
            "reassembled payload differs"
        );
    }
}

// ---------------------------------------------------------------------------
// Ordering: a message that arrived before a violation is delivered first,
// and the application's reply is written before the close frame.
// ---------------------------------------------------------------------------

mod ordering {
    use super::*;

    #[test]
    fn message_before_violation_is_delivered_and_reply_precedes_close_frame() {
        let mut input = masked(FIN | TEXT, b"hi");
        input.extend(masked(FIN | 0x3, b""));
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&input);

        let msg = conn.poll_event(&mut out).unwrap().unwrap();
        assert_eq!(msg, Message::text("hi"));
        assert!(out.is_empty(), "nothing written before the app replies");
        assert!(!conn.is_closed());

        conn.send(msg, &mut out).unwrap();
        let err = conn.poll_event(&mut out).unwrap().unwrap_err();
        assert!(err.is_protocol());
        assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL));

        let mut expected = b"\x81\x02hi".to_vec();
        expected.extend_from_slice(CLOSE_1002);
        assert_eq!(drain(&mut out), expected);
        assert!(conn.poll_event(&mut out).is_none());
    }

    #[test]
    fn pong_for_ping_before_violation_precedes_close_frame() {
        let mut input = masked(FIN | PING, b"p");
        input.extend_from_slice(&[0x82, 0x00]); // unmasked
        let mut conn = server();
        let (msgs, err, written) = failure(&mut conn, &input);
        assert_eq!(msgs, vec![Message::Ping(Bytes::from_static(b"p"))]);
        assert!(err.is_protocol());
        let mut expected = b"\x8a\x01p".to_vec();
        expected.extend_from_slice(CLOSE_1002);
        assert_eq!(written, expected);
    }

    #[test]
    fn several_messages_before_violation_are_all_delivered() {
        let mut input = Vec::new();
        for i in 0..5u8 {
            input.extend(masked(FIN | BINARY, &[i]));
        }
        input.extend(masked(FIN | CONT, b""));
        let msgs = assert_fails_with(&mut server(), &input, 1002);
        assert_eq!(
            msgs,
            (0..5u8)
                .map(|i| Message::binary(vec![i]))
                .collect::<Vec<_>>()
        );
    }

    /// A stream exercising every kind of frame.
    fn mixed_stream() -> Vec<u8> {
        let mut input = masked(FIN | TEXT, "héllo".as_bytes());
        input.extend(masked(TEXT, b"frag \xe2"));
        input.extend(masked(FIN | PING, b"in between"));
        input.extend(masked(FIN | CONT, b"\x82\xac"));
        input.extend(masked(FIN | BINARY, &[7u8; 300]));
        input.extend(masked(BINARY, &[1u8; 70_000]));
        input.extend(masked(FIN | PONG, b""));
        input.extend(masked(FIN | CONT, &[2u8; 10]));
        input.extend(masked(FIN | BINARY, b""));
        input.extend(masked(FIN | CLOSE, &close_payload_of(1000, b"done")));
        input
    }

    fn run_in_pieces(input: &[u8], piece: usize) -> (Vec<Message>, Vec<u8>) {
        let mut conn = server();
        let mut out = WriteBuf::new();
        let mut got = Vec::new();
        for chunk in input.chunks(piece) {
            conn.receive_data(chunk);
            got.extend(
                poll_all(&mut conn, &mut out)
                    .into_iter()
                    .map(Result::unwrap),
            );
        }
        assert!(conn.is_closed());
        (got, drain(&mut out))
    }

    #[test]
    fn byte_by_byte_and_one_chunk_give_the_same_events() {
        let input = mixed_stream();
        let whole = run_in_pieces(&input, input.len());
        assert_eq!(whole.0.len(), 8);
        for piece in [1, 2, 3, 7, 64, 1000] {
            assert!(
                run_in_pieces(&input, piece) == whole,
                "pieces of {piece} bytes"
            );
        }
    }

    #[test]
    fn mixed_stream_yields_expected_events() {
        let (msgs, written) = run_in_pieces(&mixed_stream(), 5);
        assert_eq!(
            msgs,
            vec![
                Message::text("héllo"),
                Message::Ping(Bytes::from_static(b"in between")),
                Message::text("frag €"),
                Message::binary(vec![7u8; 300]),
                Message::Pong(Bytes::new()),
                Message::Binary([vec![1u8; 70_000], vec![2u8; 10]].concat().into()),
                Message::binary(Vec::new()),
                Message::close(1000, "done"),
            ]
        );
        assert_eq!(written, b"\x8a\x0ain between\x88\x02\x03\xe8");
    }

    mod split_property {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Spec {
            Text(String, usize),
            Binary(Vec<u8>, usize),
            Ping(Vec<u8>),
        }

        fn spec() -> impl Strategy<Value = Spec> {
            prop_oneof![
                (".{0,40}", 1usize..5).prop_map(|(s, n)| Spec::Text(s, n)),
                (proptest::collection::vec(any::<u8>(), 0..400), 1usize..5)
                    .prop_map(|(b, n)| Spec::Binary(b, n)),
                proptest::collection::vec(any::<u8>(), 0..=125).prop_map(Spec::Ping),
            ]
        }

        /// Splits `data` into `n` fragments at arbitrary byte offsets (text
        /// may be cut inside a character).
        fn fragment(first_op: u8, data: &[u8], n: usize, key: u8, out: &mut Vec<u8>) {
            let mut bounds: Vec<usize> = (0..=n).map(|i| data.len() * i / n).collect();
            bounds.dedup();
            if bounds.len() < 2 {
                bounds = vec![0, data.len()];
            }
            let last = bounds.len() - 2;
            for i in 0..=last {
                let op = if i == 0 { first_op } else { CONT };
                let fin = if i == last { FIN } else { 0 };
                out.extend(masked_with(
                    fin | op,
                    &data[bounds[i]..bounds[i + 1]],
                    [key, i as u8, 0x5a, 0xa5],
                ));
            }
        }

        fn build(specs: &[Spec]) -> (Vec<u8>, Vec<Message>, Vec<u8>) {
            let mut input = Vec::new();
            let mut expected = Vec::new();
            let mut pongs = Vec::new();
            for (k, s) in specs.iter().enumerate() {
                match s {
                    Spec::Text(t, n) => {
                        fragment(TEXT, t.as_bytes(), *n, k as u8, &mut input);
                        expected.push(Message::text(t.clone()));
                    }
                    Spec::Binary(b, n) => {
                        fragment(BINARY, b, *n, k as u8, &mut input);
                        expected.push(Message::binary(b.clone()));
                    }
                    Spec::Ping(p) => {
                        input.extend(masked_with(FIN | PING, p, [k as u8, 3, 2, 1]));
                        expected.push(Message::Ping(p.clone().into()));
                        pongs.push(0x8a);
                        pongs.push(p.len() as u8);
                        pongs.extend_from_slice(p);
                    }
                }
            }
            (input, expected, pongs)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_split_of_a_valid_stream_yields_the_same_messages(
                specs in proptest::collection::vec(spec(), 1..8),
                cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
            ) {
                let (input, expected, pongs) = build(&specs);
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
                cuts.push(0);
                cuts.push(input.len());
                cuts.sort_unstable();
                let mut conn = server();
                let mut out = WriteBuf::new();
                let mut got = Vec::new();
                for w in cuts.windows(2) {
                    conn.receive_data(&input[w[0]..w[1]]);
                    while let Some(ev) = conn.poll_event(&mut out) {
                        got.push(ev.map_err(|e| e.to_string()));
                    }
                }
                let expected: Vec<Result<Message, String>> = expected.into_iter().map(Ok).collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(drain(&mut out), pongs);
                prop_assert!(conn.read_buf().is_empty());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// UTF-8 validation against std, byte by byte (RFC 6455 §8.1 fail-fast)
// ---------------------------------------------------------------------------

mod utf8_property {
    use super::*;
    use proptest::prelude::*;

    /// Mostly valid characters, with stray bytes mixed in.
    fn text_like() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                6 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
                1 => any::<u8>().prop_map(|b| vec![b]),
                1 => Just(b"\xed\xa0\x80".to_vec()),
                1 => Just(b"\xf4\x90".to_vec()),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    /// The first payload index at which the bytes so far can never become
    /// valid UTF-8, according to std.
    fn first_definitely_invalid(data: &[u8]) -> Option<usize> {
        (0..data.len()).find(
            |&k| matches!(std::str::from_utf8(&data[..=k]), Err(e) if e.error_len().is_some()),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn text_fails_exactly_when_std_says_invalid_and_as_early(
            data in text_like(),
            fragments in 1usize..5,
            cut_every in 1usize..40,
        ) {
            // Fragment at arbitrary byte offsets; remember where each payload
            // byte lands on the wire.
            let mut wire = Vec::new();
            let mut wire_pos = Vec::with_capacity(data.len());
            let n = fragments.min(data.len().max(1));
            for i in 0..n {
                let (a, b) = (data.len() * i / n, data.len() * (i + 1) / n);
                let op = if i == 0 { TEXT } else { CONT };
                let fin = if i == n - 1 { FIN } else { 0 };
                let frame = masked(fin | op, &data[a..b]);
                let header = frame.len() - (b - a);
                for k in 0..(b - a) {
                    wire_pos.push(wire.len() + header + k);
                }
                wire.extend(frame);
            }

            let mut conn = server();
            let mut out = WriteBuf::new();
            let mut result = None;
            let mut failed_at = None;
            for (i, byte) in wire.iter().enumerate() {
                conn.receive_data(std::slice::from_ref(byte));
                if let Some(ev) = conn.poll_event(&mut out) {
                    if ev.is_err() {
                        failed_at = Some(i);
                    }
                    result = Some(ev);
                    break;
                }
            }
            let valid = std::str::from_utf8(&data).is_ok();
            match result {
                Some(Ok(msg)) => {
                    prop_assert!(valid);
                    prop_assert_eq!(msg.as_payload(), &data[..]);
                }
                Some(Err(e)) => {
                    prop_assert!(!valid, "valid text refused: {:?}", data);
                    prop_assert!(e.is_invalid_payload());
                    prop_assert_eq!(drain(&mut out), CLOSE_1007);
                    let failed_at = failed_at.unwrap();
                    match first_definitely_invalid(&data) {
                        // Fail-fast: at the very byte that makes it invalid.
                        Some(k) => prop_assert_eq!(failed_at, wire_pos[k]),
                        // Only truncated at the end: fails when the message ends.
                        None => prop_assert_eq!(failed_at, wire.len() - 1),
                    }
                }
                None => prop_assert!(false, "no event for a complete message"),
            }

            // Fed in larger pieces, the verdict is the same.
            let mut conn = server();
            let mut verdict = None;
            for piece in wire.chunks(cut_every) {
                conn.receive_data(piece);
                if let Some(ev) = conn.poll_event(&mut out) {
                    verdict = Some(ev.is_ok());
                    break;
                }
            }
            prop_assert_eq!(verdict, Some(valid));
        }
    }
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

mod send {
    use super::*;

    fn sent(conn: &mut Connection, msg: Message) -> Vec<u8> {
        let mut out = WriteBuf::new();
        conn.send(msg, &mut out).unwrap();
        drain(&mut out)
    }

    #[test]
    fn server_frames_are_unmasked() {
        let mut conn = server();
        assert_eq!(sent(&mut conn, Message::text("Hello")), b"\x81\x05Hello");
        assert_eq!(
            sent(&mut conn, Message::binary(vec![1, 2])),
            [0x82, 0x02, 1, 2]
        );
        assert_eq!(sent(&mut conn, Message::ping("p")), b"\x89\x01p");
        assert_eq!(sent(&mut conn, Message::pong("q")), b"\x8a\x01q");
        assert_eq!(sent(&mut conn, Message::text("")), [0x81, 0x00]);
    }

    #[test]
    fn encodes_length_boundaries_minimally() {
        let mut conn = server();
        for (len, header) in [
            (125usize, vec![0x82, 125]),
            (126, vec![0x82, 126, 0x00, 0x7e]),
            (65535, vec![0x82, 126, 0xff, 0xff]),
            (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
        ] {
            let wire = sent(&mut conn, Message::binary(vec![9u8; len]));
            assert_eq!(&wire[..header.len()], &header[..], "length {len}");
            assert_eq!(wire.len(), header.len() + len);
            assert!(
                wire[header.len()..].iter().all(|&b| b == 9),
                "unmasked payload"
            );
        }
    }

    #[test]
    fn fragments_messages_above_out_frame_size() {
        let mut conn = server_with(Config::default().out_frame_size(4));
        assert_eq!(
            sent(&mut conn, Message::text("abcdefghij")),
            b"\x01\x04abcd\x00\x04efgh\x80\x02ij"
        );
        assert_eq!(
            sent(&mut conn, Message::binary(b"12345678".to_vec())),
            b"\x02\x04\x31\x32\x33\x34\x80\x04\x35\x36\x37\x38"
        );
    }

    #[test]
    fn message_of_exactly_out_frame_size_is_one_frame() {
        let mut conn = server_with(Config::default().out_frame_size(4));
        assert_eq!(sent(&mut conn, Message::text("abcd")), b"\x81\x04abcd");
    }

    #[test]
    fn control_messages_are_never_fragmented() {
        let mut conn = server_with(Config::default().out_frame_size(1));
        assert_eq!(sent(&mut conn, Message::ping("abc")), b"\x89\x03abc");
    }

    #[test]
    fn fragmented_output_reassembles_on_a_receiver() {
        let mut conn = server_with(Config::default().out_frame_size(1000));
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let wire = sent(&mut conn, Message::binary(data.clone()));
        // Re-mask each frame as a client would and feed it back.
        let mut input = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest).unwrap().unwrap();
            assert_eq!(h.mask, None);
            let end = h.header_len + h.payload_len as usize;
            let b0 = rest[0];
            input.extend(masked(b0, &rest[h.header_len..end]));
            rest = &rest[end..];
        }
        let (msgs, _) = messages(&mut server(), &input);
        assert_eq!(msgs, vec![Message::Binary(data.into())]);
    }

    #[test]
    fn refuses_ping_and_pong_over_125_bytes() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        assert!(
            conn.send(Message::ping(vec![0u8; 126]), &mut out)
                .unwrap_err()
                .is_invalid_message()
        );
        assert!(
            conn.send(Message::pong(vec![0u8; 126]), &mut out)
                .unwrap_err()
                .is_invalid_message()
        );
        assert!(out.is_empty());
        // Still open, and 125 bytes are fine.
        conn.send(Message::ping(vec![0u8; 125]), &mut out).unwrap();
        assert_eq!(out.len(), 127);
    }

    #[test]
    fn refuses_close_with_unsendable_code() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            let err = conn.send(Message::close(code, ""), &mut out).unwrap_err();
            assert!(err.is_invalid_message(), "code {code}");
        }
        assert!(out.is_empty());
        assert!(
            !conn.close_sent(),
            "a refused close does not start the handshake"
        );
        conn.send(Message::close(4000, "app"), &mut out).unwrap();
        assert_eq!(drain(&mut out), b"\x88\x05\x0f\xa0app");
    }

    #[test]
    fn refuses_close_reason_over_123_bytes() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        let long = "r".repeat(124);
        assert!(
            conn.send(Message::close(1000, long), &mut out)
                .unwrap_err()
                .is_invalid_message()
        );
        assert!(out.is_empty());
        conn.send(Message::close(1000, "r".repeat(123)), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn sending_after_close_fails_with_closed() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send(Message::close(1000, ""), &mut out).unwrap();
        let before = out.len();
        assert!(
            conn.send(Message::text("late"), &mut out)
                .unwrap_err()
                .is_closed()
        );
        assert!(
            conn.send(Message::pong(""), &mut out)
                .unwrap_err()
                .is_closed()
        );
        assert!(
            conn.send(Message::close(1000, ""), &mut out)
                .unwrap_err()
                .is_closed()
        );
        assert_eq!(out.len(), before);
    }

    #[test]
    fn send_encoded_queues_the_bytes_verbatim() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.send_encoded(Bytes::from_static(b"\x81\x02hi"), &mut out)
            .unwrap();
        assert_eq!(drain(&mut out), b"\x81\x02hi");
        assert!(conn.accepts_shared_frames());
        // `Traffic::bytes_sent` counts payload bytes, not the header.
        assert_eq!(conn.traffic().messages_sent, 1);
        assert_eq!(conn.traffic().bytes_sent, 2);
    }

    #[test]
    fn send_encoded_refuses_anything_but_one_whole_frame() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        for bad in [
            &b"\x81"[..],
            b"\x81\x03hi",
            b"\x81\x01hi",
            b"\x81\x01h\x81\x01i",
        ] {
            let err = conn
                .send_encoded(Bytes::copy_from_slice(bad), &mut out)
                .unwrap_err();
            assert!(err.is_invalid_message(), "{bad:?}: {err}");
        }
        assert!(out.is_empty());
        assert_eq!(conn.traffic().messages_sent, 0);
    }

    #[test]
    fn the_shared_frame_of_a_message_is_what_send_writes() {
        for msg in [
            Message::text("hi"),
            Message::binary(vec![3u8; 200]),
            Message::binary(vec![4u8; 70_000]),
        ] {
            let mut conn = server();
            let mut out = WriteBuf::new();
            conn.send(msg.clone(), &mut out).unwrap();
            let frame = encode_frame(&msg).unwrap();
            assert_eq!(drain(&mut out), &frame[..]);
            assert!(conn.shares_frame_of(msg.len()));
        }
        assert!(encode_frame(&Message::ping("x")).is_none());
        let small = Connection::new(Role::Server, &Config::default().out_frame_size(100), None);
        assert!(!small.shares_frame_of(101), "it would fragment the message");
    }
}

// ---------------------------------------------------------------------------
// process_input: parsing ahead of the application
// ---------------------------------------------------------------------------

mod process_input {
    use super::*;

    #[test]
    fn answers_pings_without_poll_event() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&masked(FIN | PING, b"1"));
        conn.receive_data(&masked(FIN | PING, b"2"));
        conn.process_input(&mut out);
        assert_eq!(drain(&mut out), b"\x8a\x011\x8a\x012");
        // The pings are still reported, in order.
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::ping("1")
        );
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::ping("2")
        );
        assert!(conn.poll_event(&mut out).is_none());
        assert!(out.is_empty(), "answered once");
    }

    #[test]
    fn answers_close_without_poll_event() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&masked(FIN | CLOSE, &close_payload_of(1001, b"")));
        conn.process_input(&mut out);
        assert_eq!(drain(&mut out), [0x88, 0x02, 0x03, 0xe9]);
        assert!(conn.is_closed());
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::close(1001, "")
        );
        assert!(conn.poll_event(&mut out).is_none());
    }

    #[test]
    fn queues_messages_up_to_max_pending_events() {
        let mut conn = server_with(Config::default().max_pending_events(2));
        let mut out = WriteBuf::new();
        for i in 0..3u8 {
            conn.receive_data(&masked(FIN | BINARY, &[i]));
        }
        conn.receive_data(&masked(FIN | PING, b"p"));
        conn.process_input(&mut out);
        assert!(!conn.wants_read(), "two messages wait: reading pauses");
        assert!(!conn.read_buf().is_empty(), "the rest is not parsed");
        assert!(
            out.is_empty(),
            "the ping behind the queue is not answered yet"
        );

        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::binary(vec![0])
        );
        assert!(conn.wants_read());
        conn.process_input(&mut out);
        assert!(!conn.wants_read());
        assert!(out.is_empty());
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::binary(vec![1])
        );
        conn.process_input(&mut out);
        assert_eq!(drain(&mut out), b"\x8a\x01p");
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::binary(vec![2])
        );
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::ping("p")
        );
        assert!(conn.poll_event(&mut out).is_none());
        assert!(conn.read_buf().is_empty());
    }

    #[test]
    fn error_is_queued_after_earlier_messages() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&masked(FIN | TEXT, b"ok"));
        conn.receive_data(&masked(FIN | TEXT, b"\xff"));
        conn.process_input(&mut out);
        // The failure waits behind the message: a reply to "ok" still goes
        // out before the close frame.
        assert!(out.is_empty());
        assert!(!conn.is_closed());
        assert!(!conn.wants_read());
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::text("ok")
        );
        conn.send(Message::text("reply"), &mut out).unwrap();
        let err = conn.poll_event(&mut out).unwrap().unwrap_err();
        assert!(err.is_invalid_payload());
        let mut expected = b"\x81\x05reply".to_vec();
        expected.extend_from_slice(CLOSE_1007);
        assert_eq!(drain(&mut out), expected);
        assert!(conn.is_closed());
        assert!(conn.poll_event(&mut out).is_none());
    }

    #[test]
    fn error_with_nothing_waiting_fails_at_once() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        conn.receive_data(&masked(FIN | TEXT, b"\xff"));
        conn.process_input(&mut out);
        assert_eq!(drain(&mut out), CLOSE_1007);
        assert!(conn.is_closed());
        assert!(
            conn.poll_event(&mut out)
                .unwrap()
                .unwrap_err()
                .is_invalid_payload()
        );
        assert!(conn.poll_event(&mut out).is_none());
    }

    #[test]
    fn partial_frame_waits_for_more_input() {
        let mut conn = server();
        let mut out = WriteBuf::new();
        let frame = masked(FIN | TEXT, b"hello");
        conn.receive_data(&frame[..7]);
        conn.process_input(&mut out);
        assert!(conn.wants_read());
        assert!(conn.poll_event(&mut out).is_none());
        conn.receive_data(&frame[7..]);
        assert_eq!(
            conn.poll_event(&mut out).unwrap().unwrap(),
            Message::text("hello")
        );
    }
}

// ---------------------------------------------------------------------------
// RFC 7692 §6: permessage-deflate and the RSV1 bit
// ---------------------------------------------------------------------------

#[cfg(feature = "deflate")]
mod deflate {
    use super::*;
    use crate::extensions::deflate::{DeflateConfig, PerMessageDeflate, negotiate};
    use crate::extensions::parse_extensions;

    /// A codec agreed on from `offer`, as the handshake would.
    fn codec(offer: &str, config: &DeflateConfig) -> PerMessageDeflate {
        let offers = parse_extensions([offer]).unwrap();
        let (params, mem_level) = negotiate(&offers, config).expect("offer accepted");
        PerMessageDeflate::new(params, mem_level, config)
    }

    /// A server connection with permessage-deflate, and a codec playing the
    /// client's compressor (it compresses every message, whatever its size).
    fn pair(config: Config) -> (Connection, PerMessageDeflate) {
        let dc = DeflateConfig::default().threshold(0);
        let server_ext = codec("permessage-deflate", &dc);
        let conn = Connection::new(Role::Server, &config, Some(Box::new(server_ext)));
        (conn, codec("permessage-deflate", &dc))
    }

    fn compress(client: &mut PerMessageDeflate, data: &[u8]) -> Vec<u8> {
        client.encode(data).unwrap().unwrap().to_vec()
    }

    #[test]
    fn inflates_compressed_text() {
        let (mut conn, mut client) = pair(Config::default());
        let z = compress(&mut client, b"Hello Hello Hello Hello");
        let (msgs, _) = messages(&mut conn, &masked(FIN | RSV1_BIT | TEXT, &z));
        assert_eq!(msgs, vec![Message::text("Hello Hello Hello Hello")]);
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_literal() {
        // RFC 7692 §7.2.3.1: "Hello" compressed is c1 07 f2 48 cd c9 c9 07 00.
        let (mut conn, _) = pair(Config::default());
        let (msgs, _) = messages(
            &mut conn,
            &masked(
                FIN | RSV1_BIT | TEXT,
                &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            ),
        );
        assert_eq!(msgs, vec![Message::text("Hello")]);
    }

    #[test]
    fn rfc7692_7_2_3_2_shared_window_literal() {
        // RFC 7692 §7.2.3.2: the second "Hello" refers back into the first
        // message's window: f2 00 11 00 00.
        let (mut conn, _) = pair(Config::default());
        let mut input = masked(
            FIN | RSV1_BIT | TEXT,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        );
        input.extend(masked(
            FIN | RSV1_BIT | TEXT,
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
        ));
        let (msgs, _) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::text("Hello"), Message::text("Hello")]);
    }

    #[test]
    fn rfc7692_7_2_3_4_bfinal_block_literal() {
        // RFC 7692 §7.2.3.4: "On platforms on which the flush method using an
        // empty DEFLATE block with no compression is not available,
        // implementors can choose to flush data using DEFLATE blocks with
        // BFINAL set to 1": "Hello" as f3 48 cd c9 c9 07 00 00 (a final fixed
        // block, then one 0x00 octet).
        let (mut conn, _) = pair(Config::default());
        let mut out = WriteBuf::new();
        conn.receive_data(&masked(
            FIN | RSV1_BIT | TEXT,
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ));
        let event = conn.poll_event(&mut out).unwrap();
        assert_eq!(event.map_err(|e| e.to_string()), Ok(Message::text("Hello")));
        assert!(out.is_empty(), "no close frame");

        // The stream ended with the final block: the sender starts a new one
        // for its next message, which must inflate too.
        conn.receive_data(&masked(
            FIN | RSV1_BIT | TEXT,
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        ));
        let event = conn.poll_event(&mut out).unwrap();
        assert_eq!(event.map_err(|e| e.to_string()), Ok(Message::text("Hello")));
    }

    #[test]
    fn rfc7692_7_2_3_5_two_deflate_blocks_in_one_message() {
        // RFC 7692 §7.2.3.5: "He" and "llo" as two blocks of one message.
        let (mut conn, _) = pair(Config::default());
        let (msgs, _) = messages(
            &mut conn,
            &masked(
                FIN | RSV1_BIT | TEXT,
                &[
                    0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
                ],
            ),
        );
        assert_eq!(msgs, vec![Message::text("Hello")]);
    }

    #[test]
    fn rfc7692_7_2_3_3_uncompressed_block_literal() {
        // RFC 7692 §7.2.3.3: "Hello" in a stored (no compression) block.
        let (mut conn, _) = pair(Config::default());
        let (msgs, _) = messages(
            &mut conn,
            &masked(
                FIN | RSV1_BIT | TEXT,
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
            ),
        );
        assert_eq!(msgs, vec![Message::text("Hello")]);
    }

    #[test]
    fn context_is_kept_across_messages() {
        let (mut conn, mut client) = pair(Config::default());
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend(masked(
                FIN | RSV1_BIT | BINARY,
                &compress(&mut client, b"same payload again"),
            ));
        }
        let (msgs, _) = messages(&mut conn, &input);
        assert_eq!(
            msgs,
            vec![Message::binary(b"same payload again".to_vec()); 3]
        );
    }

    #[test]
    fn uncompressed_messages_pass_with_deflate_negotiated() {
        let (mut conn, _) = pair(Config::default());
        let (msgs, _) = messages(&mut conn, &masked(FIN | TEXT, b"plain"));
        assert_eq!(msgs, vec![Message::text("plain")]);
    }

    #[test]
    fn inflates_compressed_message_split_across_frames() {
        let (mut conn, mut client) = pair(Config::default());
        let text = "permessage-deflate fragments ".repeat(200);
        let z = compress(&mut client, text.as_bytes());
        assert!(z.len() > 6);
        let (a, rest) = z.split_at(z.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        let mut input = masked(RSV1_BIT | TEXT, a);
        input.extend(masked(FIN | PING, b"p"));
        input.extend(masked(CONT, b));
        input.extend(masked(FIN | CONT, c));
        let (msgs, written) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::ping("p"), Message::text(text)]);
        assert_eq!(written, b"\x8a\x01p");
    }

    #[test]
    fn inflates_compressed_message_fed_byte_by_byte() {
        let (mut conn, mut client) = pair(Config::default());
        let z = compress(&mut client, "ünïcödé ".repeat(50).as_bytes());
        let mut input = masked(RSV1_BIT | TEXT, &z[..z.len() / 2]);
        input.extend(masked(FIN | CONT, &z[z.len() / 2..]));
        let mut out = WriteBuf::new();
        let mut got = Vec::new();
        for b in &input {
            conn.receive_data(std::slice::from_ref(b));
            got.extend(
                poll_all(&mut conn, &mut out)
                    .into_iter()
                    .map(Result::unwrap),
            );
        }
        assert_eq!(got, vec![Message::text("ünïcödé ".repeat(50))]);
    }

    #[test]
    fn inflates_compressed_empty_message() {
        let (mut conn, mut client) = pair(Config::default());
        // Our own encoder sends 0x00 for an empty message (RFC 7692 §7.2.3.6).
        let z = compress(&mut client, b"");
        let mut input = masked(FIN | RSV1_BIT | TEXT, &z);
        // An empty payload with RSV1 is an empty message too: inflating just
        // the appended 00 00 ff ff yields nothing.
        input.extend(masked(FIN | RSV1_BIT | BINARY, b""));
        let (msgs, _) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::text(""), Message::binary(Vec::new())]);
    }

    #[test]
    fn inflates_compressed_message_with_empty_fragments() {
        let (mut conn, mut client) = pair(Config::default());
        let z = compress(&mut client, b"fragmented and compressed");
        let mut input = masked(RSV1_BIT | TEXT, b"");
        input.extend(masked(CONT, &z));
        input.extend(masked(CONT, b""));
        input.extend(masked(FIN | CONT, b""));
        let (msgs, _) = messages(&mut conn, &input);
        assert_eq!(msgs, vec![Message::text("fragmented and compressed")]);
    }

    mod split_property {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn compressed_messages_inflate_whatever_the_fragmentation_and_split(
                messages_data in proptest::collection::vec(
                    proptest::collection::vec(0u8..4, 0..3000), 1..4),
                fragments in 1usize..6,
                cut_every in 1usize..200,
            ) {
                let (mut conn, mut client) = pair(Config::default());
                let mut wire = Vec::new();
                for data in &messages_data {
                    let z = compress(&mut client, data);
                    let n = fragments.min(z.len());
                    for i in 0..n {
                        let (a, b) = (z.len() * i / n, z.len() * (i + 1) / n);
                        let b0 = if i == 0 { RSV1_BIT | BINARY } else { CONT };
                        let fin = if i == n - 1 { FIN } else { 0 };
                        wire.extend(masked(fin | b0, &z[a..b]));
                    }
                }
                let mut out = WriteBuf::new();
                let mut got = Vec::new();
                for piece in wire.chunks(cut_every) {
                    conn.receive_data(piece);
                    while let Some(ev) = conn.poll_event(&mut out) {
                        got.push(ev.map_err(|e| e.to_string()));
                    }
                }
                let expected: Vec<Result<Message, String>> = messages_data
                    .into_iter()
                    .map(|d| Ok(Message::binary(d)))
                    .collect();
                prop_assert_eq!(got, expected);
            }
        }
    }

    #[test]
    fn rejects_rsv1_on_continuation_frame() {
        let (mut conn, mut client) = pair(Config::default());
        let z = compress(&mut client, b"compressed compressed");
        let mut input = masked(RSV1_BIT | TEXT, &z[..4]);
        input.extend(masked(FIN | RSV1_BIT | CONT, &z[4..]));
        assert_fails_with(&mut conn, &input, 1002);
    }

    #[test]
    fn rejects_rsv1_on_continuation_of_uncompressed_message() {
        let (mut conn, _) = pair(Config::default());
        let mut input = masked(TEXT, b"plain");
        input.extend(masked(FIN | RSV1_BIT | CONT, b"x"));
        assert_fails_with(&mut conn, &input, 1002);
    }

    #[test]
    fn rejects_rsv1_on_control_frame() {
        for op in [PING, PONG, CLOSE] {
            let (mut conn, _) = pair(Config::default());
            assert_fails_with(&mut conn, &masked(FIN | RSV1_BIT | op, b""), 1002);
        }
    }

    #[test]
    fn rejects_rsv2_and_rsv3_with_deflate_negotiated() {
        for rsv in [RSV2_BIT, RSV3_BIT, RSV1_BIT | RSV2_BIT] {
            let (mut conn, _) = pair(Config::default());
            assert_fails_with(&mut conn, &masked(FIN | rsv | TEXT, b"x"), 1002);
        }
    }

    #[test]
    fn rejects_decompression_bomb_beyond_max_message_size() {
        let (mut conn, mut client) = pair(Config::default().max_message_size(1 << 20));
        let bomb = compress(&mut client, &vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10, "bomb is small on the wire");
        assert_fails_with(&mut conn, &masked(FIN | RSV1_BIT | BINARY, &bomb), 1009);
    }

    #[test]
    fn rejects_bomb_split_across_fragments() {
        let (mut conn, mut client) = pair(Config::default().max_message_size(100_000));
        let bomb = compress(&mut client, &vec![b'a'; 1 << 20]);
        let mid = bomb.len() / 2;
        let mut input = masked(RSV1_BIT | TEXT, &bomb[..mid]);
        input.extend(masked(FIN | CONT, &bomb[mid..]));
        assert_fails_with(&mut conn, &input, 1009);
    }

    #[test]
    fn message_of_exactly_max_message_size_inflates() {
        let (mut conn, mut client) = pair(Config::default().max_message_size(100_000));
        let data = vec![b'z'; 100_000];
        let z = compress(&mut client, &data);
        let (msgs, _) = messages(&mut conn, &masked(FIN | RSV1_BIT | BINARY, &z));
        assert_eq!(msgs, vec![Message::Binary(data.into())]);
    }

    #[test]
    fn rejects_garbage_compressed_data() {
        let (mut conn, _) = pair(Config::default());
        let (_, err, written) = failure(
            &mut conn,
            &masked(FIN | RSV1_BIT | BINARY, &[0xff, 0xff, 0xff, 0xff, 0xff]),
        );
        assert!(err.is_invalid_payload());
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        assert_eq!(written, CLOSE_1007_DEFLATE);
    }

    #[test]
    fn rejects_compressed_text_that_inflates_to_invalid_utf8() {
        let (mut conn, mut client) = pair(Config::default());
        let z = compress(&mut client, b"abc\xff\xfe");
        assert_fails_with(&mut conn, &masked(FIN | RSV1_BIT | TEXT, &z), 1007);
    }

    #[test]
    fn compresses_sent_messages_with_rsv1_on_first_frame_only() {
        let dc = DeflateConfig::default().threshold(0);
        let ext = codec("permessage-deflate", &dc);
        let mut conn = Connection::new(
            Role::Server,
            &Config::default().out_frame_size(8),
            Some(Box::new(ext)),
        );
        assert!(!conn.accepts_shared_frames());
        let mut out = WriteBuf::new();
        let text = "a message long enough to span several frames once compressed 0123456789";
        conn.send(Message::text(text), &mut out).unwrap();
        let wire = drain(&mut out);

        // Walk the frames: RSV1 and opcode on the first, FIN on the last only.
        let mut rest = &wire[..];
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let h = FrameHeader::parse(rest).unwrap().unwrap();
            assert_eq!(h.mask, None, "server frames are unmasked");
            let end = h.header_len + h.payload_len as usize;
            frames.push((h, rest[h.header_len..end].to_vec()));
            rest = &rest[end..];
        }
        assert!(frames.len() > 1);
        for (i, (h, _)) in frames.iter().enumerate() {
            let first = i == 0;
            let last = i == frames.len() - 1;
            assert_eq!(h.rsv, if first { 0b100 } else { 0 }, "frame {i}");
            assert_eq!(
                h.opcode,
                if first {
                    OpCode::Text
                } else {
                    OpCode::Continuation
                }
            );
            assert_eq!(h.fin, last, "frame {i}");
        }

        // And a peer inflates it.
        let mut peer = codec("permessage-deflate", &dc);
        let compressed: Vec<u8> = frames.iter().flat_map(|(_, p)| p.clone()).collect();
        let mut inflated = BytesMut::new();
        peer.decode(&compressed, true, &mut inflated, usize::MAX)
            .unwrap();
        assert_eq!(&inflated[..], text.as_bytes());
    }
}
