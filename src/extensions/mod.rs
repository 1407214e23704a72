//! WebSocket extensions: the seam in the engine, and the
//! `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1).

#[cfg(feature = "deflate")]
pub mod deflate;

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::error::Error;

/// An extension that transforms whole data messages (RFC 6455 §9).
///
/// The engine consults it in exactly two places: a received data message
/// whose first frame carries the claimed RSV bits is passed through
/// [`decode`](Extension::decode) frame by frame; an outgoing data message is
/// offered to [`encode`](Extension::encode). Everything else (control frames,
/// continuation rules, size limits) stays in the engine.
pub trait Extension: Send + Sync + fmt::Debug {
    /// The RSV bits this extension claims (RSV1 = `0b100`).
    fn rsv(&self) -> u8;

    /// Decodes one frame of a message whose first frame carried the RSV bits,
    /// appending the output to `out`. `fin` marks the last frame. The output
    /// of the whole message must stay within `max` bytes: past it, fail with
    /// a capacity error (close code 1009) without producing more.
    fn decode(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: usize,
    ) -> Result<(), Error>;

    /// Encodes an outgoing message: `Some(payload)` to send it with the RSV
    /// bits set, or `None` to send it untransformed.
    fn encode(&mut self, payload: &[u8]) -> Result<Option<Bytes>, Error>;

    /// Like [`encode`](Extension::encode), for a payload held as `Bytes`: an
    /// extension may recognise a payload it just encoded for another
    /// connection (a broadcast shares one `Bytes`) and share its output.
    fn encode_shared(&mut self, payload: &Bytes) -> Result<Option<Bytes>, Error> {
        self.encode(payload)
    }
}

/// One offer in a `Sec-WebSocket-Extensions` header: a name and its
/// parameters, each with an optional value (quotes removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// The parameters in the order given.
    pub params: Vec<(String, Option<String>)>,
}

/// The header is not well-formed according to RFC 6455 §9.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedHeader;

/// Parses the values of every `Sec-WebSocket-Extensions` header line, in
/// order, into offers (RFC 6455 §9.1, with RFC 7230 token and quoted-string).
///
/// ```
/// use tower_ws::extensions::parse_extensions;
///
/// let offers = parse_extensions([
///     "permessage-deflate; client_max_window_bits, permessage-deflate",
///     "x-custom; key=\"quoted, value\"",
/// ])
/// .unwrap();
/// assert_eq!(offers.len(), 3);
/// assert_eq!(offers[0].params, vec![("client_max_window_bits".into(), None)]);
/// assert_eq!(offers[2].params[0].1.as_deref(), Some("quoted, value"));
/// ```
pub fn parse_extensions<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ExtensionOffer>, MalformedHeader> {
    let mut offers = Vec::new();
    for line in lines {
        let mut p = Parser {
            s: line.as_bytes(),
            i: 0,
        };
        loop {
            p.skip_ws();
            if p.done() {
                break;
            }
            if p.eat(b',') {
                // Empty list elements are allowed by the #rule (RFC 7230 §7).
                continue;
            }
            let name = p.token()?;
            let mut params = Vec::new();
            loop {
                p.skip_ws();
                if !p.eat(b';') {
                    break;
                }
                p.skip_ws();
                let key = p.token()?;
                p.skip_ws();
                let value = if p.eat(b'=') {
                    p.skip_ws();
                    Some(if p.peek() == Some(b'"') {
                        p.quoted()?
                    } else {
                        p.token()?
                    })
                } else {
                    None
                };
                params.push((key.to_ascii_lowercase(), value));
            }
            p.skip_ws();
            if !p.done() && !p.eat(b',') {
                return Err(MalformedHeader);
            }
            offers.push(ExtensionOffer {
                name: name.to_ascii_lowercase(),
                params,
            });
        }
    }
    Ok(offers)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<String, MalformedHeader> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        if self.i == start {
            return Err(MalformedHeader);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, MalformedHeader> {
        self.i += 1; // opening quote
        let mut value = Vec::new();
        loop {
            match self.peek() {
                None => return Err(MalformedHeader),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(value).map_err(|_| MalformedHeader);
                }
                Some(b'\\') => {
                    self.i += 1;
                    value.push(self.peek().ok_or(MalformedHeader)?);
                    self.i += 1;
                }
                Some(c) => {
                    value.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> ExtensionOffer {
        ExtensionOffer {
            name: name.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn parses_offers_parameters_and_quotes() {
        let parsed = parse_extensions([
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            " permessage-deflate ;client_max_window_bits=\"9\" , foo",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            vec![
                offer(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                offer(
                    "permessage-deflate",
                    &[("client_max_window_bits", Some("9"))]
                ),
                offer("foo", &[]),
            ]
        );
    }

    #[test]
    fn tolerates_empty_elements_and_rejects_garbage() {
        assert_eq!(
            parse_extensions([", ,permessage-deflate,"]).unwrap().len(),
            1
        );
        assert_eq!(parse_extensions([""]).unwrap(), vec![]);
        for bad in [
            "permessage-deflate; =1",
            "a b",
            "x; y=\"unterminated",
            "x;",
            "@",
        ] {
            assert_eq!(parse_extensions([bad]), Err(MalformedHeader), "{bad}");
        }
    }
}
