//! The frame header codec (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use crate::error::{Error, ProtocolError};

/// A frame opcode (RFC 6455 §5.2, §11.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Control frames: close, ping and pong (opcodes 0x8–0xF).
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    fn from_u8(op: u8) -> Result<Self, Error> {
        Ok(match op {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            // RFC 6455 §5.2: "If an unknown opcode is received, the receiving
            // endpoint MUST _Fail the WebSocket Connection_."
            other => return Err(Error::protocol(ProtocolError::ReservedOpcode(other))),
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits: RSV1 = 0b100.
    pub rsv: u8,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header itself took on the wire (2 to 14).
    pub header_len: usize,
}

/// RSV1, the bit permessage-deflate claims (RFC 7692 §6).
#[cfg_attr(not(feature = "deflate"), allow(dead_code))]
pub const RSV1: u8 = 0b100;

/// The largest header: 2 bytes, 8 of extended length, 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header. Only
    /// the rules that the header alone decides are checked here (opcode,
    /// control frame shape, length encoding); the connection checks the rest.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, Error> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;

        if opcode.is_control() {
            // RFC 6455 §5.5: "All control frames MUST have a payload length of
            // 125 bytes or less and MUST NOT be fragmented."
            if !fin {
                return Err(Error::protocol(ProtocolError::FragmentedControl));
            }
            if len7 > 125 {
                return Err(Error::protocol(ProtocolError::ControlTooLong));
            }
        }

        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(Error::protocol(ProtocolError::LengthMsbSet));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };

        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
            pos += 4;
            Some(key)
        } else {
            None
        };

        Ok(Some(FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
            header_len: pos,
        }))
    }

    /// Writes a header into `out` and returns its length. Lengths use their
    /// minimal encoding, as RFC 6455 §5.2 requires.
    pub fn encode(
        out: &mut [u8; MAX_HEADER_LEN],
        fin: bool,
        rsv: u8,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload_len: u64,
    ) -> usize {
        out[0] = (u8::from(fin) << 7) | ((rsv & 0x07) << 4) | opcode.as_u8();
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut pos = if payload_len < 126 {
            out[1] = mask_bit | payload_len as u8;
            2
        } else if payload_len <= u64::from(u16::MAX) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&payload_len.to_be_bytes());
            10
        };
        if let Some(key) = mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> FrameHeader {
        FrameHeader::parse(bytes).unwrap().unwrap()
    }

    #[test]
    fn rfc_6455_section_5_7_examples() {
        // A single-frame unmasked text message: "Hello".
        let h = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, None);
        assert_eq!(h.header_len, 2);

        // A single-frame masked text message.
        let h = parse(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(h.header_len, 6);

        // A fragmented unmasked text message: "Hel" then "lo".
        let first = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!first.fin);
        assert_eq!(first.opcode, OpCode::Text);
        let second = parse(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(second.fin);
        assert_eq!(second.opcode, OpCode::Continuation);

        // Unmasked ping and masked pong.
        assert_eq!(parse(&[0x89, 0x05]).opcode, OpCode::Ping);
        assert_eq!(parse(&[0x8a, 0x85, 1, 2, 3, 4]).opcode, OpCode::Pong);

        // 256 bytes binary in a single unmasked message: 16-bit length.
        let h = parse(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.payload_len, h.header_len), (256, 4));

        // 64 KiB binary in a single unmasked message: 64-bit length.
        let h = parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!((h.payload_len, h.header_len), (65536, 10));
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        for bytes in [
            &[][..],
            &[0x82],
            &[0x82, 0x7e, 0x01],
            &[0x82, 0xfe, 1, 0, 9],
        ] {
            assert_eq!(FrameHeader::parse(bytes).unwrap(), None, "{bytes:?}");
        }
    }

    #[test]
    fn rejects_64_bit_length_with_msb_set() {
        let err = FrameHeader::parse(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(err.is_protocol());
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            let err = FrameHeader::parse(&[0x80 | op, 0x80]).unwrap_err();
            assert!(err.is_protocol(), "opcode {op}");
        }
    }

    #[test]
    fn rejects_fragmented_or_long_control_frames() {
        assert!(FrameHeader::parse(&[0x09, 0x80]).unwrap_err().is_protocol());
        assert!(
            FrameHeader::parse(&[0x89, 0xfe, 0, 126])
                .unwrap_err()
                .is_protocol()
        );
        assert!(FrameHeader::parse(&[0x88, 0xfd]).is_ok());
    }

    #[test]
    fn encode_uses_minimal_lengths_and_round_trips() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let mut out = [0; MAX_HEADER_LEN];
                let n = FrameHeader::encode(&mut out, true, RSV1, OpCode::Binary, mask, len);
                let h = parse(&out[..n]);
                assert_eq!(h.payload_len, len);
                assert_eq!(h.mask, mask);
                assert_eq!(h.rsv, RSV1);
                assert_eq!(h.header_len, n);
                let expected = 2 + if len < 126 {
                    0
                } else if len < 65536 {
                    2
                } else {
                    8
                };
                assert_eq!(n, expected + if mask.is_some() { 4 } else { 0 });
            }
        }
    }
}
