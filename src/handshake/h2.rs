//! WebSockets over HTTP/2: the extended CONNECT handshake (RFC 8441).
//!
//! The client sends `CONNECT` with the pseudo-header `:protocol = websocket`
//! on a new stream, after the server announced
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` (§3); a `200` answer opens the
//! WebSocket on that stream (§5). The HTTP/1.1 `Upgrade`, `Connection`,
//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` play no part; the version,
//! subprotocol, `Origin` and extension rules are RFC 6455's, shared with
//! [`negotiate`](super::negotiate).

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, Version};

#[cfg(feature = "deflate")]
use super::{DeflateParams, negotiate_deflate};
use super::{Policy, Reject, check_origin, check_version, insert_agreement, select_protocol};

/// The `:protocol` value that opens a WebSocket (RFC 8441 §4, the token of
/// the HTTP Upgrade Token Registry).
const WEBSOCKET: &str = "websocket";

/// Whether a request is an extended CONNECT (RFC 8441 §4): method `CONNECT`
/// with a `:protocol` pseudo-header. Such a request is a WebSocket handshake
/// when `protocol` is `websocket`, and a protocol this server does not speak
/// otherwise; a plain `CONNECT` (no `:protocol`) is an ordinary request.
///
/// ```
/// use http::Method;
/// use tower_ws::handshake::is_extended_connect;
///
/// assert!(is_extended_connect(&Method::CONNECT, Some("websocket")));
/// assert!(!is_extended_connect(&Method::CONNECT, None));
/// assert!(!is_extended_connect(&Method::GET, None));
/// ```
pub fn is_extended_connect(method: &Method, protocol: Option<&str>) -> bool {
    method == Method::CONNECT && protocol.is_some()
}

/// A valid extended CONNECT, and what was agreed.
#[derive(Clone, Debug)]
pub struct ConnectAccept {
    /// The selected subprotocol, if any.
    pub protocol: Option<HeaderValue>,
    /// The agreed permessage-deflate parameters and memory level, if any.
    #[cfg(feature = "deflate")]
    pub deflate: Option<(DeflateParams, u8)>,
}

impl ConnectAccept {
    /// The `200 OK` response that opens the WebSocket on the stream (RFC
    /// 8441 §5), with `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`
    /// as agreed. It carries no `Upgrade`, `Connection` or
    /// `Sec-WebSocket-Accept`: HTTP/2 forbids the first two (RFC 9113
    /// §8.2.2) and RFC 8441 §5 drops the last.
    pub fn response<B: Default>(&self) -> Response<B> {
        let mut res = Response::new(B::default());
        insert_agreement(
            res.headers_mut(),
            self.protocol.as_ref(),
            #[cfg(feature = "deflate")]
            self.deflate.as_ref(),
        );
        res
    }
}

/// Decides on an extended CONNECT (RFC 8441 §4–5); call it when
/// [`is_extended_connect`] holds. `uri` carries `:scheme`, `:authority` and
/// `:path`; `protocol` is the `:protocol` value.
///
/// - `:protocol` other than `websocket`: `501 Not Implemented`.
/// - not `CONNECT`, not HTTP/2 (or HTTP/3, RFC 9220), or `:scheme`,
///   `:authority` or `:path` missing: `400 Bad Request`.
/// - `Sec-WebSocket-Version` other than one `13`: `426 Upgrade Required`.
/// - a refused `Origin`: `403 Forbidden`.
///
/// `Sec-WebSocket-Key` is not processed (RFC 8441 §5: the `:protocol`
/// pseudo-header supersedes it), so a client that adds one out of HTTP/1.1
/// habit is still served, and no `Sec-WebSocket-Accept` is sent.
///
/// ```
/// use http::{Method, Request, Version};
/// use tower_ws::handshake::{negotiate_extended_connect, Policy};
///
/// let req = Request::connect("https://server.example.com/chat")
///     .version(Version::HTTP_2)
///     .header("sec-websocket-version", "13")
///     .body(())
///     .unwrap();
/// let accept = negotiate_extended_connect(
///     req.method(), req.version(), req.uri(), "websocket", req.headers(), &Policy::default(),
/// ).unwrap();
/// assert_eq!(accept.response::<()>().status(), 200);
/// ```
pub fn negotiate_extended_connect(
    method: &Method,
    version: Version,
    uri: &Uri,
    protocol: &str,
    headers: &HeaderMap,
    policy: &Policy,
) -> Result<ConnectAccept, Reject> {
    use StatusCode as S;
    // RFC 8441 §4: `:protocol` names the protocol to tunnel; this server
    // tunnels WebSocket only (tokens compare case-insensitively, RFC 9110 §7.8).
    if !protocol.eq_ignore_ascii_case(WEBSOCKET) {
        return Err(Reject::new(
            S::NOT_IMPLEMENTED,
            "this server tunnels only :protocol websocket over extended CONNECT",
        ));
    }
    // RFC 8441 §4: the extended CONNECT is the method CONNECT.
    if method != Method::CONNECT {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "a WebSocket over HTTP/2 must open with the method CONNECT",
        ));
    }
    // RFC 8441 §4 defines it for HTTP/2; RFC 9220 carries it to HTTP/3.
    if version != Version::HTTP_2 && version != Version::HTTP_3 {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "an extended CONNECT needs HTTP/2 or later",
        ));
    }
    // RFC 8441 §4: ":scheme and :path pseudo-header fields MUST be included",
    // and :authority as for any CONNECT (RFC 9113 §8.5).
    // (An http::Uri holds a scheme only beside an authority: check that first.)
    if uri.authority().is_none() {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "an extended CONNECT needs an :authority pseudo-header",
        ));
    }
    if uri.scheme().is_none() {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "an extended CONNECT needs a :scheme pseudo-header",
        ));
    }
    if uri.path_and_query().is_none_or(|p| p.as_str().is_empty()) {
        return Err(Reject::new(
            S::BAD_REQUEST,
            "an extended CONNECT needs a :path pseudo-header",
        ));
    }
    // RFC 8441 §5: Sec-WebSocket-Version, Origin, Sec-WebSocket-Protocol and
    // Sec-WebSocket-Extensions are used as RFC 6455 defines them.
    check_version(headers)?;
    check_origin(headers, policy)?;
    Ok(ConnectAccept {
        protocol: select_protocol(headers, &policy.protocols),
        #[cfg(feature = "deflate")]
        deflate: negotiate_deflate(headers, policy),
    })
}

#[cfg(test)]
mod tests;
