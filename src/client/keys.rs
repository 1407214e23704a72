//! Randomness for the client, from a thread-local CSPRNG: masking keys
//! (RFC 6455 §5.3) and `Sec-WebSocket-Key` nonces (RFC 6455 §4.1).

use rand::RngCore;

use crate::proto::MaskKeys;

/// A fresh masking key from this thread's CSPRNG (rand's `ThreadRng`:
/// ChaCha12, reseeded from the operating system).
fn next_mask_key() -> [u8; 4] {
    rand::rng().next_u32().to_ne_bytes()
}

/// The masking keys every client connection uses: RFC 6455 §5.3 asks for a
/// fresh key per frame, "derived from a strong source of entropy", that the
/// server cannot predict. Pass it to
/// [`WebSocket::from_raw_with_role`](crate::WebSocket::from_raw_with_role)
/// to run a client over a handshake of your own.
///
/// ```
/// use tower_ws::proto::Role;
///
/// let role = Role::Client(tower_ws::client::mask_keys());
/// # let _ = role;
/// ```
pub fn mask_keys() -> MaskKeys {
    MaskKeys::new(next_mask_key)
}

/// A `Sec-WebSocket-Key` nonce: 16 random bytes (RFC 6455 §4.1).
pub(super) fn nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_nonces_do_not_repeat() {
        let keys = mask_keys();
        let mut seen: Vec<[u8; 4]> = (0..1000).map(|_| keys.next_key()).collect();
        seen.sort_unstable();
        seen.dedup();
        // 1000 draws from 2^32 values: a repeat has probability ~1e-4.
        assert!(seen.len() >= 999);
        assert_ne!(nonce(), nonce());
    }
}
