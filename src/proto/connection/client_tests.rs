//! Unit tests of the engine in the client role, grouped by RFC section.
//!
//! The server's frames are unmasked byte literals; what the client writes is
//! compared byte for byte, masked with keys from a deterministic source
//! (real clients pass a CSPRNG, see `tower_ws::client`).

use std::cell::Cell;

use super::tests::{drain, masked_with};
use super::*;
use crate::proto::mask::apply_mask_reference;

/// The masking key of RFC 6455 §5.7's examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// First header bytes of final control frames.
const FIN_CLOSE: u8 = 0x88;
const FIN_PING: u8 = 0x89;
const FIN_PONG: u8 = 0x8a;

fn fixed_key() -> [u8; 4] {
    KEY
}

thread_local! {
    static COUNTER: Cell<u8> = const { Cell::new(0) };
}

/// A different key for every frame: 01 01 01 01, 02 02 02 02, ...
fn counting_key() -> [u8; 4] {
    let n = COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    [n; 4]
}

fn client() -> Connection {
    client_with(Config::default())
}

fn client_with(config: Config) -> Connection {
    Connection::new(Role::Client(MaskKeys::new(fixed_key)), &config, None)
}

/// A client frame as it must appear on the wire, masked with [`KEY`].
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked_with(b0, payload, KEY)
}

fn sent(conn: &mut Connection, msg: Message) -> Vec<u8> {
    let mut out = WriteBuf::new();
    conn.send(msg, &mut out).unwrap();
    drain(&mut out)
}

/// Feeds server bytes; returns the events and what the client wrote.
fn receive(conn: &mut Connection, input: &[u8]) -> (Vec<Result<Message, Error>>, Vec<u8>) {
    let mut out = WriteBuf::new();
    conn.receive_data(input);
    let mut events = Vec::new();
    while let Some(ev) = conn.poll_event(&mut out) {
        events.push(ev);
    }
    (events, drain(&mut out))
}

fn messages(conn: &mut Connection, input: &[u8]) -> (Vec<Message>, Vec<u8>) {
    let (events, written) = receive(conn, input);
    let msgs = events.into_iter().map(|e| e.expect("no error")).collect();
    (msgs, written)
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.1 and §5.3: the client masks every frame
// ---------------------------------------------------------------------------

mod rfc6455_5_3_client_masks {
    use super::*;

    #[test]
    fn rfc_5_7_single_frame_masked_text_is_sent_exactly() {
        assert_eq!(
            sent(&mut client(), Message::text("Hello")),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn control_frames_are_masked_too() {
        let mut conn = client();
        assert_eq!(
            sent(&mut conn, Message::ping("Hello")),
            masked(FIN_PING, b"Hello")
        );
        assert_eq!(sent(&mut conn, Message::pong("")), masked(FIN_PONG, b""));
        assert_eq!(
            sent(&mut conn, Message::close(1000, "bye")),
            masked(FIN_CLOSE, b"\x03\xe8bye")
        );
    }

    #[test]
    fn every_frame_gets_a_fresh_key() {
        let config = Config::default().out_frame_size(3);
        let mut conn = Connection::new(Role::Client(MaskKeys::new(counting_key)), &config, None);
        let mut out = WriteBuf::new();
        COUNTER.with(|c| c.set(0));
        conn.send(Message::text("abcdefg"), &mut out).unwrap();
        conn.send(Message::binary(vec![9]), &mut out).unwrap();
        let mut expected = masked_with(0x01, b"abc", [1; 4]);
        expected.extend(masked_with(0x00, b"def", [2; 4]));
        expected.extend(masked_with(0x80, b"g", [3; 4]));
        expected.extend(masked_with(0x82, &[9], [4; 4]));
        assert_eq!(drain(&mut out), expected);
    }

    #[test]
    fn length_boundaries_are_encoded_minimally_with_the_mask_bit() {
        let mut conn = client();
        for len in [0usize, 125, 126, 65535, 65536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = sent(&mut conn, Message::binary(payload.clone()));
            assert_eq!(wire, masked(0x82, &payload), "length {len}");
        }
    }

    #[test]
    fn pings_are_answered_with_masked_pongs() {
        let (msgs, written) = messages(&mut client(), b"\x89\x05Hello");
        assert_eq!(msgs, vec![Message::ping("Hello")]);
        assert_eq!(written, masked(FIN_PONG, b"Hello"));
    }

    #[test]
    fn shared_unmasked_frames_are_refused() {
        let mut conn = client();
        assert!(!conn.accepts_shared_frames());
        let err = conn
            .send_encoded(Bytes::from_static(b"\x81\x00"), &mut WriteBuf::new())
            .unwrap_err();
        assert!(err.is_invalid_message(), "{err}");
    }

    #[test]
    fn masked_frame_from_the_server_fails_with_1002() {
        // RFC 6455 §5.1: "A client MUST close a connection if it detects a
        // masked frame." The close frame the client sends is masked itself.
        let (events, written) = receive(&mut client(), &masked(0x81, b"Hello"));
        assert_eq!(events.len(), 1);
        let err = events.into_iter().next().unwrap().unwrap_err();
        assert!(err.is_protocol());
        assert!(err.to_string().contains("masked frame"), "{err}");
        assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL));
        assert_eq!(written, masked(FIN_CLOSE, b"\x03\xeaprotocol error"));
    }

    #[test]
    fn masked_control_frame_from_the_server_fails_too() {
        let mut conn = client();
        let (msgs, _) = messages(&mut conn, b"\x81\x02hi");
        assert_eq!(msgs, vec![Message::text("hi")]);
        let (events, _) = receive(&mut conn, &masked(FIN_PING, b""));
        assert!(events[0].as_ref().unwrap_err().is_protocol());
        assert!(conn.is_closed());
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §5.2, §5.4, §5.6: the server's unmasked frames
// ---------------------------------------------------------------------------

mod rfc6455_5_7_unmasked_server_frames {
    use super::*;

    #[test]
    fn rfc_5_7_examples_decode() {
        let mut input = b"\x81\x05Hello".to_vec();
        input.extend_from_slice(b"\x01\x03Hel\x80\x02lo");
        input.extend_from_slice(&[0x82, 0x7e, 0x01, 0x00]);
        input.extend_from_slice(&[7u8; 256]);
        input.extend_from_slice(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        input.extend_from_slice(&vec![8u8; 65536]);
        let (msgs, written) = messages(&mut client(), &input);
        assert_eq!(
            msgs,
            vec![
                Message::text("Hello"),
                Message::text("Hello"),
                Message::binary(vec![7u8; 256]),
                Message::binary(vec![8u8; 65536]),
            ]
        );
        assert!(written.is_empty());
    }

    #[test]
    fn every_other_rule_applies_as_on_the_server() {
        // RSV bits without an extension, reserved opcode, continuation
        // without a message, invalid UTF-8, a frame above the limit.
        for (input, code) in [
            (&b"\xc1\x00"[..], 1002),
            (b"\x83\x00", 1002),
            (b"\x80\x00", 1002),
            (b"\x81\x02\xc3\x28", 1007),
            (b"\x82\x7e\x01\x00", 1009),
        ] {
            let mut conn = client_with(Config::default().max_frame_size(100));
            let (events, written) = receive(&mut conn, input);
            let err = events.into_iter().next().unwrap().unwrap_err();
            assert_eq!(err.close_code(), Some(CloseCode::from(code)), "{input:?}");
            let payload = &written[6..];
            let mut payload = payload.to_vec();
            apply_mask_reference(&mut payload, KEY, 0);
            assert_eq!(&payload[..2], &code.to_be_bytes(), "masked close {code}");
        }
    }
}

// ---------------------------------------------------------------------------
// RFC 6455 §7: the closing handshake from the client's side
// ---------------------------------------------------------------------------

mod rfc6455_7_client_closing {
    use super::*;

    #[test]
    fn client_close_then_server_reply_completes_the_handshake() {
        let mut conn = client();
        assert_eq!(
            sent(&mut conn, Message::close(1000, "")),
            masked(FIN_CLOSE, b"\x03\xe8")
        );
        assert!(!conn.is_closed());
        let (msgs, written) = messages(&mut conn, b"\x88\x02\x03\xe8");
        assert_eq!(msgs, vec![Message::close(1000, "")]);
        assert!(written.is_empty(), "no second close frame");
        assert!(conn.is_closed());
        assert!(conn.close_received());
    }

    #[test]
    fn server_close_is_answered_with_a_masked_close_echoing_the_code() {
        let mut conn = client();
        let (msgs, written) = messages(&mut conn, b"\x88\x06\x03\xe9gone");
        assert_eq!(msgs, vec![Message::close(1001, "gone")]);
        assert_eq!(written, masked(FIN_CLOSE, b"\x03\xe9"));
        assert!(conn.is_closed());
    }
}

// ---------------------------------------------------------------------------
// RFC 7692 from the client's side
// ---------------------------------------------------------------------------

#[cfg(feature = "deflate")]
mod rfc7692_client {
    use super::*;
    use crate::extensions::deflate::{DeflateOffer, PerMessageDeflate, negotiate_response};
    use crate::extensions::parse_extensions;

    fn deflate_client(response: &str) -> Connection {
        let offer = DeflateOffer::default().threshold(0);
        let r = parse_extensions([response]).unwrap().remove(0);
        let (_, params) = negotiate_response(std::slice::from_ref(&offer), &r).unwrap();
        let ext = PerMessageDeflate::client(params, &offer);
        Connection::new(
            Role::Client(MaskKeys::new(fixed_key)),
            &Config::default(),
            Some(Box::new(ext)),
        )
    }

    #[test]
    fn rfc_7_2_3_1_and_7_2_3_2_server_hello_literals_inflate() {
        let mut conn = deflate_client("permessage-deflate");
        let (msgs, _) = messages(
            &mut conn,
            b"\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00",
        );
        assert_eq!(msgs, vec![Message::text("Hello"), Message::text("Hello")]);
    }

    #[test]
    fn sends_rfc_7_2_3_1_hello_compressed_and_masked() {
        let mut conn = deflate_client("permessage-deflate; client_no_context_takeover");
        let wire = sent(&mut conn, Message::text("Hello"));
        // RFC 7692 §7.2.3.1's compressed "Hello", RSV1 set, masked.
        assert_eq!(
            wire,
            masked(0xc1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        );
    }

    #[test]
    fn rsv1_on_a_continuation_from_the_server_fails() {
        let mut conn = deflate_client("permessage-deflate");
        let (events, _) = receive(&mut conn, b"\x41\x01a\xc0\x01b");
        assert!(events[0].as_ref().unwrap_err().is_protocol());
    }
}
