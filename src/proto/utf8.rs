//! Incremental UTF-8 validation (RFC 6455 §8.1).
//!
//! A text message may arrive in many fragments, and a fragment (or a TCP
//! segment) may end in the middle of a multi-byte character. The validator
//! keeps the incomplete tail between calls so the connection can fail as soon
//! as the bytes received so far cannot start a valid message, before the
//! message completes.

/// State of a UTF-8 check across chunks.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The bytes of an incomplete character at the end of the last chunk.
    partial: [u8; 4],
    partial_len: u8,
}

/// The bytes seen so far can never be valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next chunk of the message.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Invalid> {
        if self.partial_len > 0 {
            // Complete the character left over from the previous chunk.
            let have = self.partial_len as usize;
            let need = char_width(self.partial[0]).ok_or(Invalid)?;
            let take = (need - have).min(chunk.len());
            self.partial[have..have + take].copy_from_slice(&chunk[..take]);
            let now = have + take;
            chunk = &chunk[take..];
            match std::str::from_utf8(&self.partial[..now]) {
                Ok(_) => self.partial_len = 0,
                Err(e) if e.error_len().is_none() && now < need => {
                    // Still incomplete: the chunk was shorter than the character.
                    self.partial_len = now as u8;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(Invalid),
                None => {
                    // The chunk ends inside a character that may still complete;
                    // check that its first bytes are a valid prefix.
                    let tail = &chunk[e.valid_up_to()..];
                    self.partial[..tail.len()].copy_from_slice(tail);
                    self.partial_len = tail.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Checks that the message ended on a character boundary.
    pub fn finish(&mut self) -> Result<(), Invalid> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete { Ok(()) } else { Err(Invalid) }
    }
}

/// The length of the character a leading byte starts, if it can start one.
fn char_width(first: u8) -> Option<usize> {
    match first {
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split_everywhere(bytes: &[u8]) -> bool {
        let whole = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&bytes[..a]).is_ok()
                    && v.feed(&bytes[a..b]).is_ok()
                    && v.feed(&bytes[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, whole, "{bytes:x?} split at {a},{b}");
            }
        }
        whole
    }

    #[test]
    fn agrees_with_std_for_any_split() {
        assert!(check_split_everywhere("κόσμε ¢€𐍈 a".as_bytes()));
        assert!(!check_split_everywhere(
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"
        ));
        assert!(!check_split_everywhere(b"abc\xf4\x90\x80\x80"));
        assert!(!check_split_everywhere(b"\xc0\xaf"));
        assert!(!check_split_everywhere(b"ok\xe2\x82"));
        assert!(!check_split_everywhere(b"\x80"));
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // Autobahn 6.4.1: the second fragment makes the message invalid; the
        // validator must say so before the rest arrives.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert_eq!(v.feed(b"\xf4\x90\x80\x80"), Err(Invalid));

        // A lone lead byte of a surrogate (ED A0..) is rejected at its second byte.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xed").is_ok());
        assert_eq!(v.feed(b"\xa0"), Err(Invalid));
    }

    #[test]
    fn incomplete_message_fails_on_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xe2\x82").is_ok());
        assert_eq!(v.finish(), Err(Invalid));
    }
}
