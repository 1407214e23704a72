//! `apply_mask` (word-at-a-time) against `apply_mask_reference` (the RFC's
//! definition), for any data, key and offset, whole and in two pieces.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_ws::proto::mask::{apply_mask, apply_mask_reference};

#[derive(Arbitrary, Debug)]
struct Input {
    key: [u8; 4],
    offset: usize,
    start: u8,
    split: u16,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // An unaligned start exercises the word loop on every alignment.
    let start = usize::from(input.start % 16).min(input.data.len());
    let data = &input.data[start..];
    let offset = input.offset;

    let mut fast = data.to_vec();
    let mut slow = data.to_vec();
    apply_mask(&mut fast, input.key, offset);
    apply_mask_reference(&mut slow, input.key, offset);
    assert_eq!(fast, slow, "apply_mask differs from the reference");

    // In two pieces, the second continuing at its payload offset.
    let split = usize::from(input.split).min(data.len());
    let mut pieces = data.to_vec();
    let (a, b) = pieces.split_at_mut(split);
    apply_mask(a, input.key, offset);
    apply_mask(b, input.key, offset.wrapping_add(split));
    assert_eq!(pieces, slow, "masking in pieces differs");

    // Masking twice is the identity.
    apply_mask(&mut fast, input.key, offset);
    assert_eq!(fast, data);
});
