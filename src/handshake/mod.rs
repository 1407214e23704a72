//! The opening handshake (RFC 6455 §4.2), as pure functions of the request.
//!
//! [`negotiate`] looks at a request head and decides: not a WebSocket request
//! at all (pass it on), a valid upgrade ([`Accept`], answered `101`), or a
//! broken upgrade attempt ([`Reject`], answered with the status RFC 6455
//! names). No I/O happens here, so every rule is a unit test.
//!
//! Over HTTP/2, a WebSocket opens with an extended CONNECT instead (RFC
//! 8441): [`is_extended_connect`] recognises one and
//! [`negotiate_extended_connect`] decides on it ([`ConnectAccept`], answered
//! `200`), with the same subprotocol, `Origin` and permessage-deflate rules.

pub mod client;
mod h2;
mod headers;
mod key;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Version, header};

pub use h2::{ConnectAccept, is_extended_connect, negotiate_extended_connect};
pub use headers::{header_has_token, header_tokens};
pub use key::accept_key;

#[cfg(feature = "deflate")]
use crate::extensions::deflate::{self, DeflateParams};

/// Picks a subprotocol from the client's list (in the client's order).
type Selector = dyn Fn(&[&str]) -> Option<String> + Send + Sync;
/// Decides whether an `Origin` (or its absence) may connect.
type OriginCheck = dyn Fn(Option<&HeaderValue>) -> bool + Send + Sync;

/// Subprotocol negotiation (`Sec-WebSocket-Protocol`, RFC 6455 §4.2.2).
#[derive(Clone, Default)]
pub enum Protocols {
    /// No subprotocol is ever selected.
    #[default]
    None,
    /// The server's supported protocols in its order of preference: the first
    /// one the client also offered is selected.
    Preferred(Arc<[String]>),
    /// A closure given the client's offers (in its order) that selects one.
    Select(Arc<Selector>),
}

impl fmt::Debug for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocols::None => f.write_str("None"),
            Protocols::Preferred(list) => f.debug_tuple("Preferred").field(list).finish(),
            Protocols::Select(_) => f.write_str("Select(..)"),
        }
    }
}

/// Which `Origin` headers may open a WebSocket.
///
/// Browsers send `Origin` on every WebSocket handshake and let any page open
/// a WebSocket to any server; the cookies of your site go along. Checking the
/// origin is the defence against cross-site WebSocket hijacking.
#[derive(Clone, Default)]
pub enum OriginPolicy {
    /// Any origin, and requests without one (non-browser clients).
    #[default]
    Any,
    /// Only these origins (compared case-insensitively, e.g.
    /// `https://example.com`); requests without `Origin` are let through,
    /// since only browsers are subject to cross-site attacks.
    AllowList(Arc<[String]>),
    /// A closure deciding on the `Origin` header (or its absence).
    Check(Arc<OriginCheck>),
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::Any => f.write_str("Any"),
            OriginPolicy::AllowList(list) => f.debug_tuple("AllowList").field(list).finish(),
            OriginPolicy::Check(_) => f.write_str("Check(..)"),
        }
    }
}

impl OriginPolicy {
    fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(list) => match origin.and_then(|o| o.to_str().ok()) {
                None => origin.is_none(),
                Some(o) => list.iter().any(|allowed| allowed.eq_ignore_ascii_case(o)),
            },
            OriginPolicy::Check(check) => check(origin),
        }
    }
}

/// What the handshake may agree to, besides RFC 6455's fixed rules.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Subprotocol selection.
    pub protocols: Protocols,
    /// Origin check.
    pub origins: OriginPolicy,
    /// permessage-deflate settings; `None` declines compression.
    #[cfg(feature = "deflate")]
    pub deflate: Option<deflate::DeflateConfig>,
}

/// A valid upgrade request, and what was agreed.
#[derive(Clone, Debug)]
pub struct Accept {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: HeaderValue,
    /// The selected subprotocol, if any.
    pub protocol: Option<HeaderValue>,
    /// The agreed permessage-deflate parameters and memory level, if any.
    #[cfg(feature = "deflate")]
    pub deflate: Option<(DeflateParams, u8)>,
}

impl Accept {
    /// The `101 Switching Protocols` response.
    pub fn response<B: Default>(&self) -> Response<B> {
        let mut res = Response::new(B::default());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept.clone());
        insert_agreement(
            h,
            self.protocol.as_ref(),
            #[cfg(feature = "deflate")]
            self.deflate.as_ref(),
        );
        res
    }
}

/// A broken upgrade attempt, answered with an HTTP error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The status: 400, 403, 405, 426, 501 or 503.
    pub status: StatusCode,
    /// A one-line reason, sent as the body.
    pub reason: &'static str,
}

impl Reject {
    pub(crate) fn new(status: StatusCode, reason: &'static str) -> Self {
        Reject { status, reason }
    }

    /// The error response: the status, the reason as a plain-text body, and
    /// `Allow: GET` (405), `Sec-WebSocket-Version: 13` (426) or `Retry-After`
    /// (503) as RFC 6455 and RFC 9110 ask.
    pub fn response<B: From<Bytes>>(&self) -> Response<B> {
        let mut body = String::with_capacity(self.reason.len() + 1);
        body.push_str(self.reason);
        body.push('\n');
        let mut res = Response::new(B::from(Bytes::from(body)));
        *res.status_mut() = self.status;
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match self.status {
            StatusCode::METHOD_NOT_ALLOWED => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            StatusCode::UPGRADE_REQUIRED => {
                h.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

/// Whether a request tries to open a WebSocket: its `Upgrade` header lists
/// `websocket`. Every other request belongs to the inner service.
pub fn is_upgrade_attempt(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket")
}

/// Decides on an upgrade attempt (RFC 6455 §4.2.1, §4.2.2).
///
/// ```
/// use http::Request;
/// use tower_ws::handshake::{negotiate, Policy};
///
/// let req = Request::get("/chat")
///     .header("host", "server.example.com")
///     .header("upgrade", "websocket")
///     .header("connection", "Upgrade")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .body(())
///     .unwrap();
/// let accept = negotiate(req.method(), req.version(), req.headers(), &Policy::default()).unwrap();
/// assert_eq!(accept.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn negotiate(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    policy: &Policy,
) -> Result<Accept, Reject> {
    use StatusCode as S;
    if !is_upgrade_attempt(headers) {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "missing \"websocket\" in the Upgrade header",
        ));
    }
    if method != Method::GET {
        return Err(Reject::new(
            S::METHOD_NOT_ALLOWED,
            "a WebSocket handshake must use GET",
        ));
    }
    if version < Version::HTTP_11 {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "a WebSocket handshake needs HTTP/1.1 or later",
        ));
    }
    if !header_has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "missing \"upgrade\" in the Connection header",
        ));
    }
    match headers.get_all(header::HOST).iter().count() {
        1 => {}
        0 => return Err(Reject::new(S::BAD_REQUEST, "missing Host header")),
        _ => return Err(Reject::new(S::BAD_REQUEST, "more than one Host header")),
    }
    check_version(headers)?;
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => {
            return Err(Reject::new(
                S::BAD_REQUEST,
                "missing Sec-WebSocket-Key header",
            ));
        }
        _ => {
            return Err(Reject::new(
                S::BAD_REQUEST,
                "more than one Sec-WebSocket-Key header",
            ));
        }
    };
    if !key::is_valid_key(key.as_bytes()) {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    check_origin(headers, policy)?;

    Ok(Accept {
        accept: accept_key(key.as_bytes()),
        protocol: select_protocol(headers, &policy.protocols),
        #[cfg(feature = "deflate")]
        deflate: negotiate_deflate(headers, policy),
    })
}

/// `Sec-WebSocket-Version` must be exactly one `13` (RFC 6455 §4.2.1 item 6,
/// §4.4; RFC 8441 §5 keeps the rule).
fn check_version(headers: &HeaderMap) -> Result<(), Reject> {
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v == "13" => Ok(()),
        _ => Err(Reject::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version: this server speaks version 13",
        )),
    }
}

/// At most one `Origin`, and the policy allows it (RFC 6455 §4.2.1 item 7,
/// §10.2).
fn check_origin(headers: &HeaderMap, policy: &Policy) -> Result<(), Reject> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = origins.next();
    if origins.next().is_some() {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "more than one Origin header",
        ));
    }
    if !policy.origins.allows(origin) {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "this Origin may not open a WebSocket here",
        ));
    }
    Ok(())
}

/// permessage-deflate from the client's `Sec-WebSocket-Extensions` offers
/// (RFC 7692 §5).
#[cfg(feature = "deflate")]
fn negotiate_deflate(headers: &HeaderMap, policy: &Policy) -> Option<(DeflateParams, u8)> {
    let config = policy.deflate.as_ref()?;
    let lines = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    // A malformed header declines every extension, not the handshake.
    let offers = crate::extensions::parse_extensions(lines).ok()?;
    deflate::negotiate(&offers, config)
}

/// The response headers that carry what was agreed: the subprotocol and the
/// extension (RFC 6455 §4.2.2 items 5.4 and 5.5).
fn insert_agreement(
    h: &mut HeaderMap,
    protocol: Option<&HeaderValue>,
    #[cfg(feature = "deflate")] deflate: Option<&(DeflateParams, u8)>,
) {
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p.clone());
    }
    #[cfg(feature = "deflate")]
    if let Some((params, _)) = deflate {
        if let Ok(v) = HeaderValue::from_str(&params.response()) {
            h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
    }
}

fn select_protocol(headers: &HeaderMap, protocols: &Protocols) -> Option<HeaderValue> {
    if matches!(protocols, Protocols::None) {
        return None;
    }
    let offered: Vec<&str> = header_tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).collect();
    if offered.is_empty() {
        return None;
    }
    let chosen = match protocols {
        Protocols::None => None,
        Protocols::Preferred(list) => list
            .iter()
            .find(|p| offered.iter().any(|o| o == p))
            .cloned(),
        // RFC 6455 §4.2.2: the selected value must be one the client offered.
        Protocols::Select(select) => select(&offered).filter(|p| offered.contains(&p.as_str())),
    };
    chosen.and_then(|p| HeaderValue::from_str(&p).ok())
}

#[cfg(test)]
mod tests;
