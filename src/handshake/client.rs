//! The client's side of the opening handshake, as pure functions: the
//! request (RFC 6455 §4.1 over HTTP/1.1, RFC 8441 §4 over HTTP/2) and the
//! checks on the server's response, each broken rule its own error.

use std::fmt;

use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version, header};

use super::accept_key;
use super::headers::{header_has_token, header_tokens};
#[cfg(feature = "deflate")]
use crate::extensions::deflate::{self, DeflateOffer, DeflateParams};

/// A server response that breaks the opening handshake: the rule it breaks.
///
/// RFC 6455 §4.1: the client "MUST _Fail the WebSocket Connection_" on each
/// of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The status is not `101 Switching Protocols` (HTTP/1.1) or 2xx
    /// (HTTP/2, RFC 8441 §5): the server refused the handshake or is no
    /// WebSocket endpoint.
    Status(StatusCode),
    /// The `Upgrade` header does not name `websocket`.
    MissingUpgrade,
    /// The `Connection` header does not list `upgrade`.
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Accept` is missing or is not the value derived from
    /// the key the client sent.
    WrongAccept,
    /// `Sec-WebSocket-Protocol` names a subprotocol the client did not offer,
    /// or more than one.
    UnofferedProtocol,
    /// `Sec-WebSocket-Extensions` is malformed, names an extension the client
    /// did not offer, or names one twice.
    UnofferedExtension,
    /// The permessage-deflate response breaks RFC 7692 (the rule is named).
    InvalidDeflateResponse(&'static str),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Status(status) => write!(
                f,
                "the server answered {status} instead of accepting the WebSocket \
                 (101 Switching Protocols, or 2xx over HTTP/2; RFC 6455 §4.1, RFC 8441 §5): \
                 it refused the handshake or this URL is no WebSocket endpoint"
            ),
            HandshakeError::MissingUpgrade => f.write_str(
                "the response's Upgrade header is not \"websocket\" (RFC 6455 §4.1)",
            ),
            HandshakeError::MissingConnectionUpgrade => f.write_str(
                "the response's Connection header does not list \"upgrade\" (RFC 6455 §4.1)",
            ),
            HandshakeError::WrongAccept => f.write_str(
                "the response's Sec-WebSocket-Accept is missing or does not match the key sent (RFC 6455 §4.1)",
            ),
            HandshakeError::UnofferedProtocol => f.write_str(
                "the response selects a subprotocol the client did not offer (RFC 6455 §4.1)",
            ),
            HandshakeError::UnofferedExtension => f.write_str(
                "the response's Sec-WebSocket-Extensions is malformed or names an extension the client did not offer, or one twice (RFC 6455 §4.1, §9.1)",
            ),
            HandshakeError::InvalidDeflateResponse(rule) => {
                write!(f, "invalid permessage-deflate response: {rule}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// What the client offers in its handshake, besides RFC 6455's fixed
/// headers: subprotocols and permessage-deflate offers, both in order of
/// preference, and a `Sec-WebSocket-Key`.
///
/// The key must be 16 random bytes, fresh for each handshake (RFC 6455
/// §4.1); the caller passes it in, so this stays free of randomness.
///
/// ```
/// use http::Uri;
/// use tower_ws::handshake::client::ClientHandshake;
///
/// // The nonce of RFC 6455 §1.3 (a real client draws a random one).
/// let handshake = ClientHandshake::new(*b"the sample nonce").protocols(["chat"]);
/// let uri: Uri = "ws://server.example.com/chat".parse().unwrap();
/// let req = handshake.http1_request(&uri, http::HeaderMap::new());
/// assert_eq!(req.uri(), "/chat");
/// assert_eq!(req.headers()["host"], "server.example.com");
/// assert_eq!(req.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
///
/// let res = http::Response::builder()
///     .status(101)
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
///     .header("sec-websocket-protocol", "chat")
///     .body(())
///     .unwrap();
/// let agreed = handshake.validate_http1(res.status(), res.headers()).unwrap();
/// assert_eq!(agreed.protocol.as_deref(), Some("chat"));
/// ```
#[derive(Clone, Debug)]
pub struct ClientHandshake {
    key: HeaderValue,
    protocols: Vec<String>,
    #[cfg(feature = "deflate")]
    deflate: Vec<DeflateOffer>,
}

/// What the server agreed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The selected subprotocol, if any.
    pub protocol: Option<String>,
    /// The accepted permessage-deflate offer (its index among the offers)
    /// and the agreed parameters, if any.
    #[cfg(feature = "deflate")]
    pub deflate: Option<(usize, DeflateParams)>,
}

impl ClientHandshake {
    /// A handshake with the nonce `key` (16 random bytes), offering no
    /// subprotocol and no extension.
    pub fn new(key: [u8; 16]) -> Self {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(key);
        ClientHandshake {
            key: HeaderValue::from_str(&encoded).expect("base64 is a valid header value"),
            protocols: Vec::new(),
            #[cfg(feature = "deflate")]
            deflate: Vec::new(),
        }
    }

    /// Subprotocols to offer, in order of preference.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// permessage-deflate offers, in order of preference (none: no
    /// compression).
    #[cfg(feature = "deflate")]
    pub fn deflate_offers(mut self, offers: Vec<DeflateOffer>) -> Self {
        self.deflate = offers;
        self
    }

    /// The permessage-deflate offers.
    #[cfg(feature = "deflate")]
    pub fn get_deflate_offers(&self) -> &[DeflateOffer] {
        &self.deflate
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &HeaderValue {
        &self.key
    }

    /// The HTTP/1.1 upgrade request for `uri` (RFC 6455 §4.1): `GET` of the
    /// path and query, `Host` from the URI, `Upgrade`, `Connection`, the key,
    /// version 13, the offers, then the caller's `headers` (e.g.
    /// `Authorization`, `Cookie`, `Origin`; a `Host` there replaces the
    /// derived one).
    pub fn http1_request(&self, uri: &Uri, headers: HeaderMap) -> Request<()> {
        let target = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut req = Request::new(());
        *req.method_mut() = Method::GET;
        *req.version_mut() = Version::HTTP_11;
        *req.uri_mut() = target;
        let h = req.headers_mut();
        if let Some(host) = host_header(uri) {
            h.insert(header::HOST, host);
        }
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::SEC_WEBSOCKET_KEY, self.key.clone());
        self.common_headers(h);
        extend(h, headers);
        req
    }

    /// The HTTP/2 extended CONNECT request for `uri` (RFC 8441 §4, §5):
    /// `CONNECT` with `:protocol = websocket` (hyper's `Protocol` request
    /// extension), `:scheme` `https` for `wss` and `http` for `ws`, version
    /// 13 and the offers, no key.
    #[cfg(feature = "client")]
    pub fn http2_request(&self, uri: &Uri, headers: HeaderMap) -> Request<()> {
        // Schemes are case-insensitive (RFC 3986 §3.1): `WSS://` is TLS too.
        let scheme = if uri
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("wss"))
        {
            "https"
        } else {
            "http"
        };
        let mut parts = uri.clone().into_parts();
        parts.scheme = Some(scheme.parse().expect("a valid scheme"));
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some("/".parse().expect("a valid path"));
        }
        let mut req = Request::new(());
        *req.method_mut() = Method::CONNECT;
        *req.version_mut() = Version::HTTP_2;
        *req.uri_mut() = Uri::from_parts(parts).unwrap_or_else(|_| uri.clone());
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        self.common_headers(req.headers_mut());
        extend(req.headers_mut(), headers);
        req
    }

    fn common_headers(&self, h: &mut HeaderMap) {
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        if !self.protocols.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&self.protocols.join(", ")) {
                h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
        #[cfg(feature = "deflate")]
        if !self.deflate.is_empty() {
            let offers: Vec<String> = self.deflate.iter().map(|o| o.header_value()).collect();
            if let Ok(v) = HeaderValue::from_str(&offers.join(", ")) {
                h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
            }
        }
    }

    /// Checks an HTTP/1.1 response (RFC 6455 §4.1, the client's checks 1
    /// to 6) and returns what was agreed.
    pub fn validate_http1(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Agreed, HandshakeError> {
        // 1. "If the status code received from the server is not 101..."
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(HandshakeError::Status(status));
        }
        // 2. "If the response lacks an |Upgrade| header field or the
        // |Upgrade| header field contains a value that is not an ASCII
        // case-insensitive match for the value "websocket"..."
        let mut upgrade = header_tokens(headers, header::UPGRADE);
        match (upgrade.next(), upgrade.next()) {
            (Some(u), None) if u.eq_ignore_ascii_case("websocket") => {}
            _ => return Err(HandshakeError::MissingUpgrade),
        }
        // 3. "If the response lacks a |Connection| header field or the
        // |Connection| header field doesn't contain a token that is an
        // ASCII case-insensitive match for the value "Upgrade"..."
        if !header_has_token(headers, header::CONNECTION, "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        // 4. "If the response lacks a |Sec-WebSocket-Accept| header field or
        // the |Sec-WebSocket-Accept| contains a value other than the
        // base64-encoded SHA-1 of the concatenation of the
        // |Sec-WebSocket-Key| (as a string, not base64-decoded) with
        // "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"..."
        let mut accepts = headers.get_all(header::SEC_WEBSOCKET_ACCEPT).iter();
        match (accepts.next(), accepts.next()) {
            (Some(a), None) if a == accept_key(self.key.as_bytes()) => {}
            _ => return Err(HandshakeError::WrongAccept),
        }
        self.validate_offers(headers)
    }

    /// Checks an HTTP/2 response to the extended CONNECT (RFC 8441 §5: a 2xx
    /// status; no key, no accept) and returns what was agreed.
    pub fn validate_http2(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<Agreed, HandshakeError> {
        if !status.is_success() {
            return Err(HandshakeError::Status(status));
        }
        self.validate_offers(headers)
    }

    /// RFC 6455 §4.1, checks 5 and 6: extensions and subprotocol.
    fn validate_offers(&self, headers: &HeaderMap) -> Result<Agreed, HandshakeError> {
        // 6. "If the response includes a |Sec-WebSocket-Protocol| header field
        // and this header field indicates the use of a subprotocol that was
        // not present in the client's handshake..."
        let mut selected = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
        let protocol = match (selected.next(), selected.next()) {
            (None, _) => None,
            (Some(p), None) => {
                let p = p.to_str().map_err(|_| HandshakeError::UnofferedProtocol)?;
                if !self.protocols.iter().any(|o| o == p) {
                    return Err(HandshakeError::UnofferedProtocol);
                }
                Some(p.to_owned())
            }
            _ => return Err(HandshakeError::UnofferedProtocol),
        };
        // 5. "If the response includes a |Sec-WebSocket-Extensions| header
        // field and this header field indicates the use of an extension that
        // was not present in the client's handshake..."
        let lines: Vec<&str> = headers
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(|v| v.to_str().map_err(|_| HandshakeError::UnofferedExtension))
            .collect::<Result<_, _>>()?;
        let extensions = crate::extensions::parse_extensions(lines)
            .map_err(|_| HandshakeError::UnofferedExtension)?;
        #[cfg(feature = "deflate")]
        let deflate = self.deflate_response(&extensions)?;
        #[cfg(not(feature = "deflate"))]
        if !extensions.is_empty() {
            return Err(HandshakeError::UnofferedExtension);
        }
        Ok(Agreed {
            protocol,
            #[cfg(feature = "deflate")]
            deflate,
        })
    }
}

impl ClientHandshake {
    /// The accepted permessage-deflate offer: every extension in the
    /// response must be permessage-deflate, offered, and named once.
    #[cfg(feature = "deflate")]
    fn deflate_response(
        &self,
        extensions: &[crate::extensions::ExtensionOffer],
    ) -> Result<Option<(usize, DeflateParams)>, HandshakeError> {
        let mut agreed = None;
        for ext in extensions {
            if ext.name != deflate::PERMESSAGE_DEFLATE
                || self.deflate.is_empty()
                || agreed.is_some()
            {
                return Err(HandshakeError::UnofferedExtension);
            }
            agreed = Some(
                deflate::negotiate_response(&self.deflate, ext)
                    .map_err(HandshakeError::InvalidDeflateResponse)?,
            );
        }
        Ok(agreed)
    }
}

/// Adds the caller's headers, replacing ours of the same name.
fn extend(h: &mut HeaderMap, extra: HeaderMap) {
    let mut last = None;
    for (name, value) in extra {
        let name = match name {
            Some(n) => {
                h.remove(&n);
                last = Some(n.clone());
                n
            }
            None => last.clone().expect("the first header has a name"),
        };
        h.append(name, value);
    }
}

/// `Host` for a URI: the host, and the port unless it is the scheme's
/// default (RFC 6455 §4.1, RFC 9110 §7.2).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("wss") || s.eq_ignore_ascii_case("https"));
    let default = if secure { 443 } else { 80 };
    let value = match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests;
