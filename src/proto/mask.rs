//! Payload masking (RFC 6455 §5.3).
//!
//! Masking XORs the payload with a repeating 4-byte key. Done byte by byte it
//! is the slowest step of receiving a large frame; done a 64-byte block at a
//! time over `u64` words the compiler turns it into SIMD, in safe code.

/// XORs `buf` with `mask`, where `buf[0]` is byte number `offset` of the
/// frame's payload (so a payload can be unmasked in pieces as it arrives).
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mask = rotate(mask, offset);
    // Two copies of the key in memory order, whatever the endianness.
    let mut doubled = [0u8; 8];
    doubled[..4].copy_from_slice(&mask);
    doubled[4..].copy_from_slice(&mask);
    let key64 = u64::from_ne_bytes(doubled);

    // Blocks of 64 bytes: eight independent u64 XORs the optimiser vectorises.
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(8) {
            let w = u64::from_ne_bytes(word.try_into().expect("8-byte chunk"));
            word.copy_from_slice(&(w ^ key64).to_ne_bytes());
        }
    }
    // Whole words left over, then single bytes. Every block and word is a
    // multiple of 4 bytes long, so the key phase is unchanged here.
    let rest = blocks.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().expect("8-byte chunk"));
        word.copy_from_slice(&(w ^ key64).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The key as seen from payload byte `offset`.
#[inline]
fn rotate(mask: [u8; 4], offset: usize) -> [u8; 4] {
    // Byte 0 first: in a little-endian word, a right rotation by whole
    // bytes (one instruction, where `[u8]::rotate_left` is a call).
    u32::from_le_bytes(mask)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes()
}

/// The byte-at-a-time reference: the definition in RFC 6455 §5.3.
pub fn apply_mask_reference(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= mask[(offset + i) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_for_every_length_and_alignment() {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let data: Vec<u8> = (0..200u16).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..=64 + 16 {
                for offset in 0..4 {
                    let mut fast = data[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, mask, offset);
                    apply_mask_reference(&mut slow, mask, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        for split in [1, 3, 5, 64, 65, 511] {
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
    }

    #[test]
    fn rfc_6455_section_5_7_masked_hello() {
        // A single-frame masked text message containing "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
