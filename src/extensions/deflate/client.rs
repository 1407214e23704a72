//! permessage-deflate from the client's side: the offer, and the checks on
//! the server's response (RFC 7692 §5, §7.1).

use super::{DeflateParams, PERMESSAGE_DEFLATE, PerMessageDeflate, window_bits};
use crate::extensions::ExtensionOffer;

/// A client's permessage-deflate offer, and how the client compresses.
///
/// The default offer is the one browsers send,
/// `permessage-deflate; client_max_window_bits`: every parameter left to the
/// server, which may limit the client's window. A client may send several
/// offers in order of preference; the server accepts at most one.
///
/// ```
/// use tower_ws::extensions::deflate::DeflateOffer;
///
/// let offer = DeflateOffer::default()
///     .server_max_window_bits(Some(10))
///     .client_no_context_takeover(true);
/// assert_eq!(
///     offer.header_value(),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateOffer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    offer_client_max_window_bits: bool,
    client_max_window_bits: Option<u8>,
    pub(super) level: u8,
    pub(super) mem_level: u8,
    pub(super) threshold: usize,
}

impl Default for DeflateOffer {
    fn default() -> Self {
        DeflateOffer {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            offer_client_max_window_bits: true,
            client_max_window_bits: None,
            level: 6,
            mem_level: 8,
            threshold: 128,
        }
    }
}

impl DeflateOffer {
    /// Ask the server to compress every message with a fresh context, so the
    /// client holds no inflate state between messages (RFC 7692 §7.1.1.1).
    ///
    /// Default is `false`.
    pub fn server_no_context_takeover(mut self, yes: bool) -> Self {
        self.server_no_context_takeover = yes;
        self
    }

    /// Announce that the client compresses every message with a fresh
    /// context (RFC 7692 §7.1.1.2): less memory, less compression.
    ///
    /// Default is `false` (unless the server asks for it).
    pub fn client_no_context_takeover(mut self, yes: bool) -> Self {
        self.client_no_context_takeover = yes;
        self
    }

    /// Ask the server to compress with a window of at most `2^bits` bytes, 8
    /// to 15 (RFC 7692 §7.1.2.1); smaller windows shrink the client's
    /// inflate state. `None` leaves the server's window to the server.
    ///
    /// Default is `None`.
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits.map(|b| b.clamp(8, 15));
        self
    }

    /// The largest window the client compresses with, 8 to 15 bits, sent as
    /// `client_max_window_bits=N` (RFC 7692 §7.1.2.2). `None` sends the
    /// parameter without a value: the server may choose the client's window.
    ///
    /// Default is `None`.
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits.map(|b| b.clamp(8, 15));
        self
    }

    /// Whether the offer names `client_max_window_bits` at all. Without it
    /// the server may not limit the client's window.
    ///
    /// Default is `true`.
    pub fn offer_client_max_window_bits(mut self, yes: bool) -> Self {
        self.offer_client_max_window_bits = yes;
        self
    }

    /// zlib compression level, 0 (store) to 9 (smallest output).
    ///
    /// Default is 6.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// zlib `memLevel`, 1 to 9: memory for the compressor's hash tables.
    ///
    /// Default is 8.
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(1, 9);
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed.
    ///
    /// Default is 128.
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// This offer as one element of a `Sec-WebSocket-Extensions` header.
    pub fn header_value(&self) -> String {
        let mut s = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if self.offer_client_max_window_bits {
            match self.client_max_window_bits {
                Some(bits) => s.push_str(&format!("; client_max_window_bits={bits}")),
                None => s.push_str("; client_max_window_bits"),
            }
        }
        s
    }

    /// Checks the server's acceptance against this offer (RFC 7692 §7.1)
    /// and returns the agreed parameters, or the rule the response breaks.
    fn accept_response(&self, response: &ExtensionOffer) -> Result<DeflateParams, &'static str> {
        let r = parse_response(response)?;
        // RFC 7692 §7.1.1.1: the server accepts an offer of
        // server_no_context_takeover by including it in the response.
        if self.server_no_context_takeover && !r.server_no_context_takeover {
            return Err(
                "the response ignores the server_no_context_takeover that was offered (RFC 7692 §7.1.1.1)",
            );
        }
        // RFC 7692 §7.1.2.1: the server accepts an offer of
        // server_max_window_bits by answering the same or a smaller value.
        let server_bits = match (self.server_max_window_bits, r.server_max_window_bits) {
            (Some(_), None) => {
                return Err(
                    "the response ignores the server_max_window_bits that was offered (RFC 7692 §7.1.2.1)",
                );
            }
            (Some(offered), Some(answered)) if answered > offered => {
                return Err(
                    "the response's server_max_window_bits is larger than the one offered (RFC 7692 §7.1.2.1)",
                );
            }
            (_, answered) => answered.unwrap_or(15),
        };
        // RFC 7692 §7.1.2.2: client_max_window_bits may be answered only if
        // offered, and then no larger than an offered value.
        let client_bits = match (self.offer_client_max_window_bits, r.client_max_window_bits) {
            (false, Some(_)) => {
                return Err(
                    "the response has client_max_window_bits, which the client did not offer (RFC 7692 §7.1.2.2)",
                );
            }
            (true, Some(answered)) if self.client_max_window_bits.is_some_and(|o| answered > o) => {
                return Err(
                    "the response's client_max_window_bits is larger than the one offered (RFC 7692 §7.1.2.2)",
                );
            }
            (_, Some(answered)) => answered,
            (_, None) => self.client_max_window_bits.unwrap_or(15),
        };
        // RFC 7692 §7.1.1.2: the server may ask for client_no_context_takeover
        // unasked; the client then resets its compressor after each message.
        let client_no_context_takeover =
            self.client_no_context_takeover || r.client_no_context_takeover;
        Ok(DeflateParams {
            server_no_context_takeover: r.server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            hold_compressor: !client_no_context_takeover,
            announce_server_bits: r.server_max_window_bits.is_some(),
            announce_client_bits: r.client_max_window_bits.is_some(),
        })
    }
}

/// A server's response, validated on its own.
#[derive(Default)]
struct Response {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
}

/// Parses the parameters of the server's permessage-deflate response.
fn parse_response(response: &ExtensionOffer) -> Result<Response, &'static str> {
    let mut r = Response::default();
    let mut seen = [false; 4];
    for (name, value) in &response.params {
        let slot = match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(
                        "a no_context_takeover parameter in the response has a value (RFC 7692 §7.1.1)",
                    );
                }
                if name == "server_no_context_takeover" {
                    r.server_no_context_takeover = true;
                    0
                } else {
                    r.client_no_context_takeover = true;
                    1
                }
            }
            "server_max_window_bits" | "client_max_window_bits" => {
                let bits = value.as_deref().and_then(window_bits).ok_or(
                    "a max_window_bits parameter in the response is not a number from 8 to 15 (RFC 7692 §7.1.2)",
                )?;
                if name == "server_max_window_bits" {
                    r.server_max_window_bits = Some(bits);
                    2
                } else {
                    r.client_max_window_bits = Some(bits);
                    3
                }
            }
            _ => {
                return Err(
                    "the response has a permessage-deflate parameter that RFC 7692 does not define (RFC 7692 §7.1)",
                );
            }
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err("the response repeats a permessage-deflate parameter (RFC 7692 §7.1)");
        }
    }
    Ok(r)
}

/// Matches the server's permessage-deflate response against the client's
/// offers, in order of preference (RFC 7692 §5.1): returns the index of the
/// first offer it accepts and the agreed parameters, or the rule it breaks
/// (for the first offer).
///
/// ```
/// use tower_ws::extensions::deflate::{negotiate_response, DeflateOffer};
/// use tower_ws::extensions::parse_extensions;
///
/// let offers = [DeflateOffer::default()];
/// let response = &parse_extensions(["permessage-deflate; client_max_window_bits=10"]).unwrap()[0];
/// let (index, params) = negotiate_response(&offers, response).unwrap();
/// assert_eq!((index, params.client_max_window_bits), (0, 10));
///
/// let bad = &parse_extensions(["permessage-deflate; server_max_window_bits=16"]).unwrap()[0];
/// assert!(negotiate_response(&offers, bad).unwrap_err().contains("8 to 15"));
/// ```
pub fn negotiate_response(
    offers: &[DeflateOffer],
    response: &ExtensionOffer,
) -> Result<(usize, DeflateParams), &'static str> {
    let mut first_error = "permessage-deflate was not offered (RFC 6455 §9.1)";
    for (i, offer) in offers.iter().enumerate() {
        match offer.accept_response(response) {
            Ok(params) => return Ok((i, params)),
            Err(e) if i == 0 => first_error = e,
            Err(_) => {}
        }
    }
    Err(first_error)
}

impl PerMessageDeflate {
    /// A client's codec for the parameters agreed with
    /// [`negotiate_response`]: it compresses with the client's window and
    /// inflates with the server's. zlib state is created on first use.
    pub fn client(params: DeflateParams, offer: &DeflateOffer) -> Self {
        PerMessageDeflate {
            params,
            compress_bits: params.client_max_window_bits,
            decompress_bits: params.server_max_window_bits,
            reset_decompressor: params.server_no_context_takeover,
            level: offer.level,
            mem_level: offer.mem_level,
            threshold: offer.threshold,
            compressor: None,
            decompressor: None,
            stream_ended: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{DeflateConfig, negotiate};
    use super::*;
    use crate::extensions::{Extension, parse_extensions};
    use bytes::BytesMut;

    fn response(header: &str) -> ExtensionOffer {
        parse_extensions([header]).unwrap().remove(0)
    }

    fn agree(offer: &DeflateOffer, header: &str) -> Result<DeflateParams, &'static str> {
        negotiate_response(std::slice::from_ref(offer), &response(header)).map(|(_, p)| p)
    }

    #[test]
    fn offers_are_written_as_rfc_7692_asks() {
        let cases = [
            (
                DeflateOffer::default(),
                "permessage-deflate; client_max_window_bits",
            ),
            (
                DeflateOffer::default().offer_client_max_window_bits(false),
                "permessage-deflate",
            ),
            (
                DeflateOffer::default()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true)
                    .server_max_window_bits(Some(8))
                    .client_max_window_bits(Some(9)),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8; client_max_window_bits=9",
            ),
            (
                DeflateOffer::default().server_max_window_bits(Some(20)),
                "permessage-deflate; server_max_window_bits=15; client_max_window_bits",
            ),
        ];
        for (offer, header) in cases {
            assert_eq!(offer.header_value(), header);
            // Our own server parses every offer we write.
            let offers = parse_extensions([header]).unwrap();
            assert!(negotiate(&offers, &DeflateConfig::default().max_memory(1 << 20)).is_some());
        }
    }

    #[test]
    fn valid_responses_give_the_agreed_parameters() {
        let d = DeflateOffer::default();
        let p = agree(&d, "permessage-deflate").unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (15, 15)
        );
        assert!(!p.server_no_context_takeover && !p.client_no_context_takeover);
        let p = agree(&d, "permessage-deflate; client_max_window_bits=8").unwrap();
        assert_eq!(p.client_max_window_bits, 8);
        // The server may set these unasked (RFC 7692 §7.1.1, §7.1.2.1).
        let p = agree(
            &d,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, 9);
        assert!(!p.hold_compressor);
        // An offered limit answered with the same or a smaller value.
        let asked = DeflateOffer::default().server_max_window_bits(Some(10));
        for bits in 8..=10 {
            let header = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(agree(&asked, &header).unwrap().server_max_window_bits, bits);
        }
        // A client's announced window holds when the server does not answer it.
        let hint = DeflateOffer::default().client_max_window_bits(Some(11));
        assert_eq!(
            agree(&hint, "permessage-deflate")
                .unwrap()
                .client_max_window_bits,
            11
        );
        assert_eq!(
            agree(&hint, "permessage-deflate; client_max_window_bits=9")
                .unwrap()
                .client_max_window_bits,
            9
        );
    }

    #[test]
    fn each_broken_rule_is_named() {
        let d = DeflateOffer::default();
        let no_client_bits = DeflateOffer::default().offer_client_max_window_bits(false);
        let cases: &[(&DeflateOffer, &str, &str)] = &[
            (&d, "permessage-deflate; foo", "does not define"),
            (&d, "permessage-deflate; server_max_window_bits", "8 to 15"),
            (
                &d,
                "permessage-deflate; server_max_window_bits=7",
                "8 to 15",
            ),
            (
                &d,
                "permessage-deflate; client_max_window_bits=16",
                "8 to 15",
            ),
            (&d, "permessage-deflate; client_max_window_bits", "8 to 15"),
            (
                &d,
                "permessage-deflate; client_max_window_bits=010",
                "8 to 15",
            ),
            (
                &d,
                "permessage-deflate; server_no_context_takeover=1",
                "value",
            ),
            (
                &d,
                "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
                "repeats",
            ),
            (
                &no_client_bits,
                "permessage-deflate; client_max_window_bits=10",
                "did not offer",
            ),
            (
                &DeflateOffer::default().client_max_window_bits(Some(10)),
                "permessage-deflate; client_max_window_bits=11",
                "larger than the one offered",
            ),
            (
                &DeflateOffer::default().server_max_window_bits(Some(10)),
                "permessage-deflate; server_max_window_bits=11",
                "larger than the one offered",
            ),
            (
                &DeflateOffer::default().server_max_window_bits(Some(10)),
                "permessage-deflate",
                "ignores the server_max_window_bits",
            ),
            (
                &DeflateOffer::default().server_no_context_takeover(true),
                "permessage-deflate",
                "ignores the server_no_context_takeover",
            ),
        ];
        for (offer, header, rule) in cases {
            let err = agree(offer, header).unwrap_err();
            assert!(err.contains(rule), "{header}: {err}");
            assert!(err.contains("RFC"), "{err}");
        }
    }

    #[test]
    fn several_offers_match_in_order_of_preference() {
        let offers = [
            DeflateOffer::default().server_max_window_bits(Some(10)),
            DeflateOffer::default().offer_client_max_window_bits(false),
        ];
        // Fits the first offer.
        let r = response("permessage-deflate; server_max_window_bits=9");
        assert_eq!(negotiate_response(&offers, &r).unwrap().0, 0);
        // Only the second one.
        let r = response("permessage-deflate");
        assert_eq!(negotiate_response(&offers, &r).unwrap().0, 1);
        // Neither: the first offer's rule is reported.
        let r = response("permessage-deflate; client_max_window_bits=9");
        let err = negotiate_response(&offers, &r).unwrap_err();
        assert!(err.contains("server_max_window_bits"), "{err}");
        assert!(negotiate_response(&[], &r).is_err());
    }

    /// A client and a server codec agreed from one offer, as a handshake
    /// between our client and our server would.
    fn pair(
        offer: &DeflateOffer,
        server: &DeflateConfig,
    ) -> (PerMessageDeflate, PerMessageDeflate) {
        let offers = parse_extensions([offer.header_value().as_ref()]).unwrap();
        let (params, mem) = negotiate(&offers, server).unwrap();
        let server_codec = PerMessageDeflate::new(params, mem, server);
        let agreed = agree(offer, &params.response()).unwrap();
        (PerMessageDeflate::client(agreed, offer), server_codec)
    }

    #[test]
    fn client_and_server_codecs_round_trip_both_ways_for_every_parameter() {
        let data: Vec<u8> = (0..40_000)
            .map(|i| b"permessage-deflate client "[i % 26] ^ (i / 1000) as u8)
            .collect();
        for snct in [false, true] {
            for cnct in [false, true] {
                for server_bits in [None, Some(8), Some(12)] {
                    for client_bits in [None, Some(8), Some(15)] {
                        let offer = DeflateOffer::default()
                            .threshold(0)
                            .server_no_context_takeover(snct)
                            .client_no_context_takeover(cnct)
                            .server_max_window_bits(server_bits)
                            .client_max_window_bits(client_bits);
                        let server = DeflateConfig::default().threshold(0).max_memory(1 << 20);
                        let (mut client, mut srv) = pair(&offer, &server);
                        assert_eq!(client.compress_bits, srv.decompress_bits);
                        assert_eq!(srv.compress_bits, client.decompress_bits);
                        for round in 0..3 {
                            let msg = &data[round * 1000..];
                            let up = client.encode(msg).unwrap().unwrap();
                            let mut got = BytesMut::new();
                            srv.decode(&up, true, &mut got, usize::MAX).unwrap();
                            assert_eq!(&got[..], msg, "{}", offer.header_value());
                            let down = srv.encode(msg).unwrap().unwrap();
                            let mut got = BytesMut::new();
                            client.decode(&down, true, &mut got, usize::MAX).unwrap();
                            assert_eq!(&got[..], msg, "{}", offer.header_value());
                        }
                        assert_eq!(client.compressor.is_some(), !cnct);
                    }
                }
            }
        }
    }

    #[test]
    fn client_window_bits_8_output_inflates_with_a_256_byte_window() {
        let offer = DeflateOffer::default().threshold(0).level(9);
        let params = agree(&offer, "permessage-deflate; client_max_window_bits=8").unwrap();
        let mut client = PerMessageDeflate::client(params, &offer);
        let mut data = Vec::new();
        let mut seed = 99u32;
        for round in 0..100 {
            let block: Vec<u8> = (0..200 + round * 3)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 24) as u8
                })
                .collect();
            data.extend_from_slice(&block);
            data.extend_from_slice(&block);
        }
        let mut decoder = zlib_rs::Inflate::new(false, 8);
        let wire = client.encode(&data).unwrap().unwrap();
        let mut out = BytesMut::new();
        super::super::inflate(&mut decoder, &wire, &mut out, usize::MAX).unwrap();
        super::super::inflate(&mut decoder, &super::super::TRAILER, &mut out, usize::MAX).unwrap();
        assert_eq!(&out[..], &data[..]);
    }
}
