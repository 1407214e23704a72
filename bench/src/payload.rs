//! Message bodies and pre-built client frames for the load generator.
//!
//! Frames are built (and masked, and compressed) once before the clock starts, so
//! the load generator's per-message cost is a memcpy-free `write_all` of bytes it
//! already has; the server does all the WebSocket work.

use flate2::{Compress, Compression, FlushCompress};

/// Deterministic xorshift so runs are reproducible without a `rand` dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `size` incompressible bytes, distinct per `seed` (so a mixed-up echo shows).
pub fn binary(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed + 1);
    let mut v: Vec<u8> = (0..size.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    v.truncate(size);
    v
}

/// A JSON array of event records of roughly `size` bytes (at least one record):
/// repetitive keys, varying values, the kind of text permessage-deflate is for.
pub fn json(size: usize, seed: u64) -> Vec<u8> {
    const EVENTS: [&str; 4] = ["price_update", "order_filled", "heartbeat", "user_joined"];
    const SYMBOLS: [&str; 5] = ["BTC-USD", "ETH-USD", "SOL-EUR", "AAPL", "TSLA"];
    let mut rng = Rng::new(seed + 7);
    let mut out = String::from("[");
    loop {
        let rec = format!(
            r#"{{"id":{},"ts":17326{:08},"event":"{}","symbol":"{}","price":{}.{:02},"qty":{},"user":"user_{:05}","tags":["live","v2"],"ok":{}}}"#,
            rng.below(1_000_000),
            rng.below(100_000_000),
            EVENTS[rng.below(4) as usize],
            SYMBOLS[rng.below(5) as usize],
            rng.below(50_000),
            rng.below(100),
            rng.below(1000),
            rng.below(100_000),
            rng.below(2) == 0,
        );
        if out.len() > 1 && out.len() + rec.len() + 2 > size {
            break;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&rec);
    }
    out.push(']');
    out.into_bytes()
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_PONG: u8 = 0xA;

/// A complete masked client frame: FIN, optional RSV1 (compressed), `opcode`.
pub fn client_frame(opcode: u8, rsv1: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 14);
    f.push(0x80 | if rsv1 { 0x40 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    let start = f.len();
    f.extend_from_slice(payload);
    crate::unmask(&mut f[start..], mask);
    f
}

/// permessage-deflate body of one message, compressed on its own (no context
/// takeover: the client announces `client_no_context_takeover`, which also lets
/// every frame be built ahead of time).
pub fn deflate(payload: &[u8], window_bits: u8) -> Vec<u8> {
    // zlib cannot make 8-bit windows; 9 is what every implementation uses instead.
    let mut c = Compress::new_with_window_bits(Compression::default(), false, window_bits.max(9));
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    loop {
        let consumed = c.total_in() as usize;
        c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    // RFC 7692 7.2.1: drop the 00 00 FF FF tail of the sync flush.
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_near_size_and_distinct() {
        let a = json(2048, 1);
        assert!(a.len() <= 2048 && a.len() > 1500, "{}", a.len());
        assert_ne!(a, json(2048, 2));
        assert!(a.starts_with(b"[{") && a.ends_with(b"}]"));
    }

    #[test]
    fn deflate_round_trips() {
        let text = json(4096, 3);
        let mut body = deflate(&text, 15);
        assert!(body.len() < text.len() / 2);
        body.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut d = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(8192);
        d.decompress_vec(&body, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text);
    }
}
