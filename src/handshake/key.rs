//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 §4.2.2, §1.3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether a key is the base64 encoding of exactly 16 bytes (RFC 6455 §4.1).
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to 24 characters with "==" padding.
    key.len() == 24 && matches!(STANDARD.decode(key), Ok(raw) if raw.len() == 16)
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// let accept = tower_ws::handshake::accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let encoded = STANDARD.encode(sha.finalize());
    HeaderValue::from_str(&encoded).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_key_length_and_alphabet() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAAAAAAA=")); // 20 bytes
        assert!(!is_valid_key(b"AAAAAAAAAAAAAAAAAAAAAA=")); // too short
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!==")); // not base64
        assert!(!is_valid_key(b""));
    }
}
