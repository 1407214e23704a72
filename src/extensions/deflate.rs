//! permessage-deflate (RFC 7692): negotiation and the compression codec.
//!
//! ## Window bits 8
//!
//! A client may ask the server to compress with a 256-byte window
//! (`server_max_window_bits=8`). zlib refuses a raw deflate stream with
//! `windowBits = 8`, and many servers then fail the handshake or answer 9.
//! We answer 8 and compress with `windowBits = 9`: zlib never emits a match
//! farther back than `window size - 262` bytes (`MAX_DIST`), which is 250 at
//! 9 bits, so the stream is valid for a decoder with a 256-byte window. Node's
//! zlib binding does the same ("windowBits = 9 ... results in a compressed
//! stream that effectively uses an 8-bit window only"); a unit test inflates
//! our output with an 8-bit window to prove it.
//!
//! ## Memory
//!
//! zlib's deflate state takes about `2^(window_bits + 2) + 2^(mem_level + 9)`
//! bytes and inflate about `2^window_bits + 7 KiB`. The defaults (12-bit
//! windows where the client allows it, `mem_level` 5) keep a connection under
//! 64 KiB, as python-websockets does. Without context takeover on a side, that
//! side's state is dropped after each message instead of kept.

use std::cell::RefCell;
use std::fmt;

use bytes::{Bytes, BytesMut};
use zlib_rs::{
    DeflateConfig as ZDeflateConfig, DeflateFlush, InflateFlush, Method, Status, Strategy,
};

mod client;

pub use client::{DeflateOffer, negotiate_response};

use super::{Extension, ExtensionOffer};
use crate::error::{CapacityError, Error, PayloadError};
use crate::proto::frame::RSV1;

/// The extension token (RFC 7692 §6).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced in steps of at most this many bytes, so a small
/// compressed message never reserves a large buffer up front.
const STEP: usize = 16 << 10;

/// Server-side permessage-deflate settings.
///
/// ```
/// use tower_ws::{Config, DeflateConfig};
///
/// let config = Config::default().deflate(Some(
///     DeflateConfig::default()
///         .level(1)
///         .server_max_window_bits(10)
///         .threshold(256),
/// ));
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    level: u8,
    server_max_window_bits: u8,
    client_max_window_bits: u8,
    mem_level: u8,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    threshold: usize,
    max_memory: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            level: 6,
            server_max_window_bits: 12,
            client_max_window_bits: 12,
            mem_level: 5,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            threshold: 128,
            max_memory: 64 << 10,
        }
    }
}

impl DeflateConfig {
    /// zlib compression level, 0 (store) to 9 (smallest output).
    ///
    /// Default is 6.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// The largest window the server compresses with, 8 to 15 bits (a
    /// client's `server_max_window_bits` may lower it further).
    ///
    /// Default is 12 (a 4 KiB window).
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// The window the server asks the client to compress with, 8 to 15 bits;
    /// only sent to clients that offer `client_max_window_bits`. Smaller
    /// windows shrink the server's inflate state.
    ///
    /// Default is 12.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// zlib `memLevel`, 1 to 9: memory for the compressor's hash tables.
    ///
    /// Default is 5.
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(1, 9);
        self
    }

    /// Compress every message with a fresh context, so no compressor state is
    /// held between messages (less memory, less compression).
    ///
    /// Default is `false` (unless the client asks for it).
    pub fn server_no_context_takeover(mut self, yes: bool) -> Self {
        self.server_no_context_takeover = yes;
        self
    }

    /// Ask the client to compress every message with a fresh context, so the
    /// server holds no inflate state between messages.
    ///
    /// Default is `false`.
    pub fn client_no_context_takeover(mut self, yes: bool) -> Self {
        self.client_no_context_takeover = yes;
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed.
    ///
    /// Default is 128.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The most memory the zlib state of one connection may hold between
    /// messages. The decompressor must fit (the client is asked for a
    /// smaller window if it allows, else compression is declined). The
    /// compressor is held, keeping its context across messages for the best
    /// ratio, only if it fits as well; otherwise every message is compressed
    /// on its own by a compressor borrowed from a small per-thread pool.
    /// zlib-rs's compressor takes at least 150 KiB (it allocates a fixed
    /// 128 KiB hash table), so context takeover needs about 192 KiB here.
    ///
    /// Default is 64 KiB, as frugal as python-websockets' defaults.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }
}

/// The parameters agreed between client and server (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's compression window, as announced (8 to 15).
    pub server_max_window_bits: u8,
    /// The client's compression window (8 to 15; 15 when not limited).
    pub client_max_window_bits: u8,
    /// Whether the compressor is kept between messages (context takeover).
    hold_compressor: bool,
    /// Whether the response names `server_max_window_bits`.
    announce_server_bits: bool,
    /// Whether the response names `client_max_window_bits`.
    announce_client_bits: bool,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value that accepts these parameters.
    pub fn response(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.announce_server_bits {
            s.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.announce_client_bits {
            s.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        s
    }
}

/// A client's offer, validated.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses one offer; `None` declines it (unknown, duplicate or invalid
/// parameters, RFC 7692 §7.1).
fn parse_offer(offer: &ExtensionOffer) -> Option<Offer> {
    let mut o = Offer::default();
    let mut seen = [false; 4];
    for (name, value) in &offer.params {
        let (slot, ok) = match name.as_str() {
            "server_no_context_takeover" => {
                o.server_no_context_takeover = true;
                (0, value.is_none())
            }
            "client_no_context_takeover" => {
                o.client_no_context_takeover = true;
                (1, value.is_none())
            }
            "server_max_window_bits" => {
                o.server_max_window_bits = value.as_deref().and_then(window_bits);
                (2, o.server_max_window_bits.is_some())
            }
            "client_max_window_bits" => match value {
                None => {
                    o.client_max_window_bits = Some(None);
                    (3, true)
                }
                Some(v) => {
                    let bits = window_bits(v);
                    o.client_max_window_bits = Some(bits);
                    (3, bits.is_some())
                }
            },
            _ => return None,
        };
        if !ok || std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(o)
}

/// A window-bits value: a decimal 8 to 15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.len() > 2 {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Resident bytes of a zlib-rs compressor: its window and chain (four
/// bytes per window byte), literal buffers (seven bytes per `2^(mem+6)`),
/// and a hash table of 64 Ki entries that zlib-rs allocates whatever the
/// settings (128 KiB), plus the state itself.
fn compressor_memory(bits: u8, mem_level: u8) -> usize {
    (4 << bits.max(9)) + (7 << (mem_level + 6)) + (128 << 10) + (6 << 10)
}

/// Resident bytes of a zlib-rs decompressor: its window plus the state.
fn decompressor_memory(bits: u8) -> usize {
    (1 << bits) + (7 << 10)
}

/// Picks the first permessage-deflate offer we can accept, in the client's
/// order, and the parameters to answer it with.
///
/// ```
/// use tower_ws::DeflateConfig;
/// use tower_ws::extensions::{deflate::negotiate, parse_extensions};
///
/// let offers = parse_extensions(["permessage-deflate; server_max_window_bits=8"]).unwrap();
/// let (params, _mem_level) = negotiate(&offers, &DeflateConfig::default()).unwrap();
/// assert_eq!(params.response(), "permessage-deflate; server_max_window_bits=8");
/// ```
pub fn negotiate(offers: &[ExtensionOffer], config: &DeflateConfig) -> Option<(DeflateParams, u8)> {
    offers
        .iter()
        .filter(|o| o.name == PERMESSAGE_DEFLATE)
        .filter_map(parse_offer)
        .find_map(|offer| accept(&offer, config))
}

/// Accepts an offer: returns the parameters and the memory level to use.
fn accept(offer: &Offer, config: &DeflateConfig) -> Option<(DeflateParams, u8)> {
    let server_bits = config
        .server_max_window_bits
        .min(offer.server_max_window_bits.unwrap_or(15));
    // Without the parameter in the offer the client's window may be 15 bits
    // and the response must not name it (RFC 7692 §7.1.2.2).
    let client_limit = offer
        .client_max_window_bits
        .map(|offered| config.client_max_window_bits.min(offered.unwrap_or(15)));
    let mut client_bits = client_limit.unwrap_or(15);
    let client_no_context_takeover =
        offer.client_no_context_takeover || config.client_no_context_takeover;
    let server_no_context_takeover =
        offer.server_no_context_takeover || config.server_no_context_takeover;
    // The decompressor is held between messages unless the client resets its
    // context; fit it in the budget by asking the client for a smaller window.
    let held_decompressor = |bits| {
        if client_no_context_takeover {
            0
        } else {
            decompressor_memory(bits)
        }
    };
    while held_decompressor(client_bits) > config.max_memory {
        if client_limit.is_some() && client_bits > 8 {
            client_bits -= 1;
        } else {
            return None;
        }
    }
    // The compressor is held (context takeover, the best ratio) only when it
    // fits too; otherwise each message borrows a fresh compressor from a
    // per-thread pool, which is always decodable by the client.
    let hold_compressor = !server_no_context_takeover
        && held_decompressor(client_bits) + compressor_memory(server_bits, config.mem_level)
            <= config.max_memory;
    let mem_level = config.mem_level;
    let params = DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        hold_compressor,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        // Answer the client's limit whenever it sent one (RFC 7692 §7.1.2.1),
        // and announce a smaller window than 15 even unasked.
        announce_server_bits: offer.server_max_window_bits.is_some() || server_bits < 15,
        announce_client_bits: client_limit.is_some()
            && (offer.client_max_window_bits != Some(None) || client_bits < 15),
    };
    Some((params, mem_level))
}

/// The permessage-deflate codec of one connection.
pub struct PerMessageDeflate {
    params: DeflateParams,
    /// The window our compressor uses (8 to 15).
    compress_bits: u8,
    /// The window the peer compresses with (8 to 15).
    decompress_bits: u8,
    /// The peer resets its compressor after each message, so ours is not kept.
    reset_decompressor: bool,
    level: u8,
    mem_level: u8,
    threshold: usize,
    compressor: Option<zlib_rs::Deflate>,
    decompressor: Option<zlib_rs::Inflate>,
    /// The peer's DEFLATE stream ended inside the current message.
    stream_ended: bool,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("params", &self.params)
            .field("level", &self.level)
            .field("mem_level", &self.mem_level)
            .field("threshold", &self.threshold)
            .field("compressor_held", &self.compressor.is_some())
            .field("decompressor_held", &self.decompressor.is_some())
            .finish()
    }
}

impl PerMessageDeflate {
    /// A server's codec for negotiated parameters. zlib state is created on
    /// first use.
    pub fn new(params: DeflateParams, mem_level: u8, config: &DeflateConfig) -> Self {
        PerMessageDeflate {
            params,
            compress_bits: params.server_max_window_bits,
            decompress_bits: params.client_max_window_bits,
            reset_decompressor: params.client_no_context_takeover,
            level: config.level,
            mem_level,
            threshold: config.threshold,
            compressor: None,
            decompressor: None,
            stream_ended: false,
        }
    }

    /// The negotiated parameters.
    pub fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// The zlib settings of this connection's compressor: level, window
    /// bits, memory level.
    fn compressor_key(&self) -> CompressorKey {
        let bits = self.compress_bits.max(9);
        // zlib-rs follows zlib-ng, whose fast and medium strategies (levels
        // 1-6) lose most of their ratio on tiny windows: 900 kB of repeated
        // text deflates to 80 kB at 9 bits and level 6, but to 2.7 kB with
        // the lazy strategy of level 7, which costs little when the window
        // is this small. Measured with zlib-rs 0.6.
        let level = if bits <= 10 && (1..7).contains(&self.level) {
            7
        } else {
            self.level
        };
        // Window bits 8 becomes 9: see the module docs.
        (level, bits, self.mem_level)
    }

    fn new_decompressor(&self) -> zlib_rs::Inflate {
        zlib_rs::Inflate::new(false, self.decompress_bits)
    }
}

impl Extension for PerMessageDeflate {
    fn rsv(&self) -> u8 {
        RSV1
    }

    fn decode(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: usize,
    ) -> Result<(), Error> {
        if self.stream_ended {
            // The sender ended the DEFLATE stream (BFINAL) earlier in this
            // message: what follows until the message ends carries nothing.
            self.stream_ended = !fin;
            return Ok(());
        }
        let mut inflater = match self.decompressor.take() {
            Some(d) => d,
            None => self.new_decompressor(),
        };
        let mut ended = inflate(&mut inflater, payload, out, max)?;
        if fin && !ended {
            // RFC 7692 §7.2.2: append 00 00 ff ff to the message's payload.
            ended = inflate(&mut inflater, &TRAILER, out, max)?;
        }
        if ended {
            // RFC 7692 §7.2.3.4: a message may end with a final block. The
            // stream cannot continue, so the next message starts a new one.
            self.stream_ended = !fin;
            return Ok(());
        }
        if fin && self.reset_decompressor {
            // The next message starts a fresh stream: hold no state.
            return Ok(());
        }
        self.decompressor = Some(inflater);
        Ok(())
    }

    fn encode_shared(&mut self, payload: &Bytes) -> Result<Option<Bytes>, Error> {
        if self.params.hold_compressor
            || payload.len() < self.threshold
            || payload.len() > SHARED_MAX
        {
            return self.encode(payload);
        }
        let key = self.compressor_key();
        let same = |(k, p, _): &(CompressorKey, Bytes, Bytes)| {
            *k == key && p.as_ptr() == payload.as_ptr() && p.len() == payload.len()
        };
        if let Some(out) =
            LAST.with_borrow(|last| last.as_ref().filter(|l| same(l)).map(|l| l.2.clone()))
        {
            return Ok(Some(out));
        }
        let out = self.encode(payload)?;
        if let Some(out) = &out {
            LAST.with_borrow_mut(|last| *last = Some((key, payload.clone(), out.clone())));
        }
        Ok(out)
    }

    fn encode(&mut self, payload: &[u8]) -> Result<Option<Bytes>, Error> {
        if payload.len() < self.threshold {
            return Ok(None);
        }
        // The output is the frame payload: it lives until written, so it is
        // allocated per message rather than kept in the codec.
        let mut out = BytesMut::new();
        if self.params.hold_compressor {
            let key = self.compressor_key();
            let deflater = self.compressor.get_or_insert_with(|| new_compressor(key));
            deflate(deflater, payload, &mut out)?;
        } else {
            with_pooled_compressor(self.compressor_key(), |deflater| {
                deflate(deflater, payload, &mut out)
            })?;
        }
        // RFC 7692 §7.2.1: remove the 00 00 ff ff the sync flush ended with.
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if out.is_empty() {
            // zlib emits nothing for an empty input right after a flush; the
            // peer still needs a block to append 00 00 ff ff to: an empty
            // stored block's header (RFC 7692 §7.2.3.6).
            out.extend_from_slice(&[0x00]);
        }
        if out.capacity() > 2 * out.len() + 1024 {
            // Compressed far below its buffer: do not keep the slack alive
            // while the frame waits to be written.
            return Ok(Some(Bytes::copy_from_slice(&out)));
        }
        Ok(Some(out.freeze()))
    }
}

/// Level, window bits and memory level of a compressor.
type CompressorKey = (u8, u8, u8);

fn new_compressor((level, bits, mem_level): CompressorKey) -> zlib_rs::Deflate {
    zlib_rs::Deflate::new_with_config(ZDeflateConfig {
        level: i32::from(level),
        method: Method::Deflated,
        // Negative window bits: raw deflate, no zlib header.
        window_bits: -i32::from(bits),
        mem_level: i32::from(mem_level),
        strategy: Strategy::Default,
    })
}

/// Compressors kept per thread for connections that do not hold their own.
const POOL_PER_THREAD: usize = 4;

thread_local! {
    static POOL: RefCell<Vec<(CompressorKey, zlib_rs::Deflate)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a fresh compressor for `key` from this thread's pool, and
/// resets it (a new stream for the next message) before putting it back.
fn with_pooled_compressor<R>(key: CompressorKey, f: impl FnOnce(&mut zlib_rs::Deflate) -> R) -> R {
    let pooled = POOL.with_borrow_mut(|pool| {
        let found = pool.iter().position(|(k, _)| *k == key)?;
        Some(pool.swap_remove(found).1)
    });
    let mut deflater = pooled.unwrap_or_else(|| new_compressor(key));
    let result = f(&mut deflater);
    deflater.reset();
    POOL.with_borrow_mut(|pool| {
        if pool.len() == POOL_PER_THREAD {
            pool.remove(0);
        }
        pool.push((key, deflater));
    });
    result
}

/// Payloads up to this size may be remembered for sharing (see `LAST`).
const SHARED_MAX: usize = 64 << 10;

thread_local! {
    /// The last payload this thread compressed with a fresh context, and the
    /// result. A broadcast hands every connection the same `Bytes`, and
    /// connections that compress each message on its own with the same
    /// settings produce the same bytes, so the message is compressed once per
    /// thread instead of once per connection. Holding the payload keeps its
    /// address from being reused while it is remembered.
    static LAST: RefCell<Option<(CompressorKey, Bytes, Bytes)>> = const { RefCell::new(None) };
}

/// Inflates `input` onto `out`, failing once `out` would exceed `max`.
/// Returns whether the DEFLATE stream ended (a block with BFINAL set).
fn inflate(
    z: &mut zlib_rs::Inflate,
    mut input: &[u8],
    out: &mut BytesMut,
    max: usize,
) -> Result<bool, Error> {
    loop {
        let start = out.len();
        // Never offer room past the limit (+1 byte to detect overflow).
        let room = STEP.min(max.saturating_sub(start).saturating_add(1));
        out.resize(start + room, 0);
        let before_in = z.total_in();
        let before_out = z.total_out();
        let result = z.decompress(input, &mut out[start..], InflateFlush::SyncFlush);
        let consumed = (z.total_in() - before_in) as usize;
        let produced = (z.total_out() - before_out) as usize;
        out.truncate(start + produced);
        input = &input[consumed..];
        if out.len() > max {
            return Err(Error::capacity(CapacityError::MessageTooLarge { max }));
        }
        match result {
            Ok(Status::StreamEnd) => return Ok(true),
            Ok(_) => {}
            Err(_) => return Err(Error::payload(PayloadError::CorruptCompressedData)),
        }
        if produced < room && input.is_empty() {
            return Ok(false);
        }
        if produced == 0 && consumed == 0 {
            // No progress with input left and room to write: corrupt data.
            return Err(Error::payload(PayloadError::CorruptCompressedData));
        }
    }
}

/// Deflates `input` with a sync flush onto `out`.
fn deflate(z: &mut zlib_rs::Deflate, mut input: &[u8], out: &mut BytesMut) -> Result<(), Error> {
    loop {
        let start = out.len();
        // Start small (most messages compress well) and grow as needed.
        let room = (input.len() / 4 + 64).clamp(64, 4 * STEP);
        out.resize(start + room, 0);
        let before_in = z.total_in();
        let before_out = z.total_out();
        z.compress(input, &mut out[start..], DeflateFlush::SyncFlush)
            .map_err(|_| Error::invalid_message("the compressor failed"))?;
        let consumed = (z.total_in() - before_in) as usize;
        let produced = (z.total_out() - before_out) as usize;
        out.truncate(start + produced);
        input = &input[consumed..];
        // Done when all input is in and zlib had output room to spare.
        if input.is_empty() && produced < room {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extensions::parse_extensions;

    fn respond(header: &str, config: &DeflateConfig) -> Option<String> {
        let offers = parse_extensions([header]).unwrap();
        negotiate(&offers, config).map(|(p, _)| p.response())
    }

    #[test]
    fn negotiation_table() {
        let d = DeflateConfig::default();
        let full = DeflateConfig::default()
            .server_max_window_bits(15)
            .client_max_window_bits(15);
        let cases: &[(&str, &DeflateConfig, Option<&str>)] = &[
            ("permessage-deflate", &full, Some("permessage-deflate")),
            (
                "permessage-deflate",
                &d,
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                &d,
                Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
            ),
            (
                "permessage-deflate; client_max_window_bits",
                &full,
                Some("permessage-deflate"),
            ),
            (
                "permessage-deflate; client_max_window_bits=10",
                &full,
                Some("permessage-deflate; client_max_window_bits=10"),
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                &full,
                Some("permessage-deflate; server_max_window_bits=8"),
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                &d,
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                &full,
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            ),
            // Declined offers fall through to the next one.
            (
                "permessage-deflate; server_max_window_bits=7, permessage-deflate",
                &full,
                Some("permessage-deflate"),
            ),
            ("permessage-deflate; server_max_window_bits=16", &full, None),
            ("permessage-deflate; server_max_window_bits=08", &full, None),
            ("permessage-deflate; server_max_window_bits", &full, None),
            (
                "permessage-deflate; client_max_window_bits=abc",
                &full,
                None,
            ),
            (
                "permessage-deflate; server_no_context_takeover=1",
                &full,
                None,
            ),
            ("permessage-deflate; unknown_param", &full, None),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                &full,
                None,
            ),
            ("x-webkit-deflate-frame", &full, None),
            (
                "permessage-deflate; server_max_window_bits=\"10\"",
                &full,
                Some("permessage-deflate; server_max_window_bits=10"),
            ),
        ];
        for (offer, config, expected) in cases {
            assert_eq!(
                respond(offer, config).as_deref(),
                *expected,
                "offer: {offer}"
            );
        }
    }

    #[test]
    fn server_requests_client_no_context_takeover_unasked() {
        let config = DeflateConfig::default()
            .server_max_window_bits(15)
            .client_no_context_takeover(true);
        assert_eq!(
            respond("permessage-deflate", &config).as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
    }

    fn codec(header: &str, config: &DeflateConfig) -> PerMessageDeflate {
        let (params, mem) = negotiate(&parse_extensions([header]).unwrap(), config).unwrap();
        PerMessageDeflate::new(params, mem, config)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"the quick brown fox jumps over "[i % 31] ^ (i / 997) as u8)
            .collect()
    }

    #[test]
    fn memory_budget_decides_what_is_held() {
        let offer = parse_extensions(["permessage-deflate; client_max_window_bits"]).unwrap();
        // The default budget holds the decompressor but not the compressor.
        let (params, _) = negotiate(&offer, &DeflateConfig::default()).unwrap();
        assert!(!params.hold_compressor);
        assert_eq!(params.client_max_window_bits, 12);
        // A generous budget keeps the compressor's context.
        let roomy = DeflateConfig::default().max_memory(256 << 10);
        assert!(negotiate(&offer, &roomy).unwrap().0.hold_compressor);
        // A tight one asks the client for a smaller window...
        let tight = DeflateConfig::default().max_memory(8 << 10);
        let (params, _) = negotiate(&offer, &tight).unwrap();
        assert!(decompressor_memory(params.client_max_window_bits) <= 8 << 10);
        assert_eq!(params.client_max_window_bits, 10);
        assert!(params.response().contains("client_max_window_bits=10"));
        // ...and declines compression when the client cannot shrink it.
        let plain = parse_extensions(["permessage-deflate"]).unwrap();
        assert_eq!(negotiate(&plain, &tight), None);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for header in [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=8",
        ] {
            let config = DeflateConfig::default().threshold(0);
            let mut tx = codec(header, &config);
            let mut rx = codec(header, &config);
            for size in [0, 0, 1, 100, 0, 5000, 70_000, 0] {
                let data = sample(size);
                let wire = tx.encode(&data).unwrap().unwrap();
                let mut out = BytesMut::new();
                rx.decode(&wire, true, &mut out, usize::MAX).unwrap();
                assert_eq!(&out[..], &data[..], "{header} size {size}");
            }
        }
    }

    #[test]
    fn a_broadcast_payload_is_compressed_once_per_thread() {
        let config = DeflateConfig::default();
        let mut a = codec("permessage-deflate", &config);
        let mut b = codec("permessage-deflate", &config);
        let payload = Bytes::from(sample(4000));
        let first = a.encode_shared(&payload).unwrap().unwrap();
        let second = b.encode_shared(&payload).unwrap().unwrap();
        // The same compressed bytes, not a second compression.
        assert_eq!(first.as_ptr(), second.as_ptr());
        // Equal content in another buffer is compressed anew, identically.
        let copy = Bytes::from(sample(4000));
        let third = b.encode_shared(&copy).unwrap().unwrap();
        assert_ne!(third.as_ptr(), first.as_ptr());
        assert_eq!(third, first);
        // A codec that keeps its context never shares.
        let roomy = DeflateConfig::default().max_memory(1 << 20);
        let mut held = codec("permessage-deflate", &roomy);
        let own = held.encode_shared(&payload).unwrap().unwrap();
        assert_ne!(own.as_ptr(), first.as_ptr());
        let mut rx = codec("permessage-deflate", &config);
        let mut out = BytesMut::new();
        rx.decode(&second, true, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &payload[..]);
    }

    #[test]
    fn no_context_takeover_holds_no_state_between_messages() {
        let config = DeflateConfig::default().threshold(0);
        let mut c = codec(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            &config,
        );
        let wire = c.encode(b"hello hello hello").unwrap().unwrap();
        assert!(c.compressor.is_none());
        c.decode(&wire, true, &mut BytesMut::new(), 100).unwrap();
        assert!(c.decompressor.is_none());
    }

    #[test]
    fn window_bits_8_output_inflates_with_a_256_byte_window() {
        let config = DeflateConfig::default().threshold(0).level(9);
        let mut c = codec("permessage-deflate; server_max_window_bits=8", &config);
        assert_eq!(c.params().server_max_window_bits, 8);
        // Repeats at distances from 200 to 600 bytes: a 512-byte window would
        // use the long ones; a 256-byte decoder must never see them.
        let mut data = Vec::new();
        let mut seed = 12345u32;
        for round in 0..200 {
            let block: Vec<u8> = (0..200 + round * 2)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 24) as u8
                })
                .collect();
            data.extend_from_slice(&block);
            data.extend_from_slice(&block);
        }
        let mut decoder = zlib_rs::Inflate::new(false, 8);
        for _ in 0..3 {
            let wire = c.encode(&data).unwrap().unwrap();
            assert!(wire.len() < data.len());
            let mut out = BytesMut::new();
            inflate(&mut decoder, &wire, &mut out, usize::MAX).unwrap();
            inflate(&mut decoder, &TRAILER, &mut out, usize::MAX).unwrap();
            assert_eq!(&out[..], &data[..]);
        }
    }

    #[test]
    fn tiny_windows_still_compress_well() {
        let data = "The quick brown fox jumps over the lazy dog. ".repeat(20_000);
        for bits in 8..=15 {
            let header = format!("permessage-deflate; server_max_window_bits={bits}");
            let mut c = codec(&header, &DeflateConfig::default().threshold(0));
            let wire = c.encode(data.as_bytes()).unwrap().unwrap();
            assert!(
                wire.len() < data.len() / 20,
                "{bits} bits: {} bytes",
                wire.len()
            );
        }
    }

    #[test]
    fn inflating_stops_at_the_limit() {
        let config = DeflateConfig::default().threshold(0);
        let mut tx = codec("permessage-deflate", &config);
        let mut rx = codec("permessage-deflate", &config);
        let bomb = tx.encode(&vec![0u8; 10 << 20]).unwrap().unwrap();
        assert!(bomb.len() < 20 << 10);
        let mut out = BytesMut::new();
        let err = rx.decode(&bomb, true, &mut out, 1 << 20).unwrap_err();
        assert!(err.is_capacity());
        // Bounded by the limit (BytesMut grows by doubling), not by the 10 MiB declared.
        assert!(
            out.capacity() <= (2 << 20) + 2 * STEP,
            "allocated {}",
            out.capacity()
        );
    }

    #[test]
    fn garbage_is_invalid_payload() {
        let mut rx = codec("permessage-deflate", &DeflateConfig::default());
        let err = rx
            .decode(
                &[0xff, 0xff, 0xff, 0xff, 0xff],
                true,
                &mut BytesMut::new(),
                1 << 20,
            )
            .unwrap_err();
        assert!(err.is_invalid_payload());
    }

    #[test]
    fn incompressible_data_round_trips_even_when_it_grows() {
        let config = DeflateConfig::default().threshold(0);
        let mut tx = codec("permessage-deflate", &config);
        let mut rx = codec("permessage-deflate", &config);
        let mut seed = 7u64;
        let data: Vec<u8> = (0..50_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let wire = tx.encode(&data).unwrap().unwrap();
        assert!(wire.len() > data.len());
        let mut out = BytesMut::new();
        rx.decode(&wire, true, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &data[..]);
    }
}
