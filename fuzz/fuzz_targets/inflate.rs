//! permessage-deflate decoding through the `Extension` trait with tiny
//! limits: the output never exceeds the limit, corrupt data fails cleanly,
//! and data the codec compressed inflates back to itself.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use common::{OFFERS, deflate_codec};
use libfuzzer_sys::fuzz_target;
use tower_ws::extensions::Extension;
use tower_ws::{DeflateConfig, Error};

#[derive(Arbitrary, Debug)]
struct Input {
    offer: u8,
    max: u16,
    /// Plain messages: compressed by the codec, then inflated.
    plain: Vec<Vec<u8>>,
    /// Raw frames of compressed messages: (payload, fin).
    frames: Vec<(Vec<u8>, bool)>,
}

/// Room `inflate` may take beyond the limit: one step of output.
const SLACK: usize = 64 << 10;

fn decode(
    z: &mut dyn Extension,
    payload: &[u8],
    fin: bool,
    out: &mut BytesMut,
    max: usize,
) -> Result<(), Error> {
    let r = z.decode(payload, fin, out, max);
    match &r {
        Ok(()) => assert!(
            out.len() <= max,
            "{} bytes out with a limit of {max}",
            out.len()
        ),
        Err(e) => {
            // Past the limit by at most the byte that detected it.
            assert!(
                out.len() <= max + 1,
                "{} bytes out with a limit of {max}",
                out.len()
            );
            assert!(
                e.is_capacity() || e.is_invalid_payload(),
                "unexpected error: {e}"
            );
            let code = e.close_code().map(|c| c.as_u16());
            assert!(
                code == Some(1009) || code == Some(1007),
                "close code {code:?}"
            );
        }
    }
    assert!(
        out.capacity() <= max + 1 + SLACK,
        "capacity {} for a limit of {max}",
        out.capacity()
    );
    r
}

fuzz_target!(|input: Input| {
    let offer = OFFERS[usize::from(input.offer) % OFFERS.len()];
    let config = DeflateConfig::default().threshold(0);
    let max = usize::from(input.max % 4096);

    // Round trip: the receiving codec is negotiated the same way, so its
    // decoder window equals the sender's encoder window when symmetric.
    let sym = DeflateConfig::default()
        .threshold(0)
        .server_max_window_bits(15)
        .client_max_window_bits(15);
    // OFFERS[4] limits only the client's window and context: asymmetric.
    let sym_offer = if offer.contains("client_max_window_bits=8") {
        OFFERS[0]
    } else {
        offer
    };
    let mut tx = deflate_codec(sym_offer, &sym);
    let mut rx = deflate_codec(sym_offer, &sym);
    for data in input.plain.iter().take(8) {
        let z = tx
            .encode(data)
            .unwrap()
            .expect("threshold 0 always compresses");
        let mut out = BytesMut::new();
        let limit = data.len().max(max);
        decode(&mut rx, &z, true, &mut out, limit).expect("own output inflates");
        assert_eq!(&out[..], &data[..], "round trip");
    }

    // Arbitrary input with a small limit.
    let mut rx = deflate_codec(offer, &config);
    let mut out = BytesMut::new();
    for (payload, fin) in input.frames {
        if decode(&mut rx, &payload, fin, &mut out, max).is_err() {
            // The engine fails the connection: the codec is not used again.
            return;
        }
        if fin {
            out.clear();
        }
    }
});
