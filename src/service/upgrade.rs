//! The handshake decision and the end of an accepted handshake, shared by
//! every way of mounting tower-ws ([`WebSocketService`](super::WebSocketService),
//! the axum extractor): decide on a request (an HTTP/1.1 upgrade, or an
//! RFC 8441 extended CONNECT over HTTP/2), take hyper's upgrade handle from
//! the request, build the negotiated extension, and once hyper hands the
//! connection over, wrap it in a [`WebSocket`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Response, StatusCode, Uri, Version};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::UpgradedWebSocket;
use crate::config::Config;
use crate::extensions::Extension;
#[cfg(feature = "deflate")]
use crate::extensions::deflate::DeflateParams;
use crate::handshake::{self, Policy, Reject};
use crate::stream::WebSocket;

/// The permessage-deflate agreement of a handshake, if any.
#[cfg(feature = "deflate")]
pub(crate) type Agreed = Option<(DeflateParams, u8)>;
/// The permessage-deflate agreement of a handshake (none without `deflate`).
#[cfg(not(feature = "deflate"))]
pub(crate) type Agreed = ();

/// An accepted handshake: the response to send (`101` over HTTP/1.1, `200`
/// for an extended CONNECT), and what was agreed.
pub(crate) struct Accepted {
    pub(crate) response: Response<Full<Bytes>>,
    pub(crate) agreed: Agreed,
}

impl From<handshake::Accept> for Accepted {
    fn from(accept: handshake::Accept) -> Self {
        Accepted {
            response: accept.response(),
            #[cfg(feature = "deflate")]
            agreed: accept.deflate,
            #[cfg(not(feature = "deflate"))]
            agreed: (),
        }
    }
}

impl From<handshake::ConnectAccept> for Accepted {
    fn from(accept: handshake::ConnectAccept) -> Self {
        Accepted {
            response: accept.response(),
            #[cfg(feature = "deflate")]
            agreed: accept.deflate,
            #[cfg(not(feature = "deflate"))]
            agreed: (),
        }
    }
}

/// The parts of a request the handshake looks at.
pub(crate) struct RequestParts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) version: Version,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl<'a, B> From<&'a http::Request<B>> for RequestParts<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        RequestParts {
            method: req.method(),
            version: req.version(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

impl<'a> From<&'a http::request::Parts> for RequestParts<'a> {
    fn from(parts: &'a http::request::Parts) -> Self {
        RequestParts {
            method: &parts.method,
            version: parts.version,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// Decides on a request: `None` if it is no WebSocket handshake at all,
/// else the accepted handshake or the rejection.
pub(crate) fn negotiate(
    req: RequestParts<'_>,
    policy: &Policy,
) -> Option<Result<Accepted, Reject>> {
    if let Some(protocol) = connect_protocol(req.extensions) {
        if handshake::is_extended_connect(req.method, Some(protocol)) {
            let accept = handshake::negotiate_extended_connect(
                req.method,
                req.version,
                req.uri,
                protocol,
                req.headers,
                policy,
            );
            return Some(accept.map(Accepted::from));
        }
    }
    if !handshake::is_upgrade_attempt(req.headers) {
        return None;
    }
    let accept = handshake::negotiate(req.method, req.version, req.headers, policy);
    Some(accept.map(Accepted::from))
}

/// The `:protocol` pseudo-header of an HTTP/2 request (RFC 8441 §4).
#[cfg(feature = "http2")]
pub(crate) fn connect_protocol(extensions: &Extensions) -> Option<&str> {
    extensions
        .get::<hyper::ext::Protocol>()
        .map(hyper::ext::Protocol::as_str)
}

/// The `:protocol` pseudo-header of an HTTP/2 request (none without `http2`).
#[cfg(not(feature = "http2"))]
pub(crate) fn connect_protocol(_extensions: &Extensions) -> Option<&str> {
    None
}

/// Takes hyper's upgrade handle out of the request extensions. It is missing
/// when the connection is not served with upgrades enabled (or was already
/// taken), which is a server setup error: `500` with what to do.
pub(crate) fn take_on_upgrade(extensions: &mut Extensions) -> Result<OnUpgrade, Reject> {
    extensions.remove::<OnUpgrade>().ok_or(Reject::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "this connection cannot be upgraded: serve it with hyper's serve_connection_with_upgrades",
    ))
}

/// An accepted handshake whose response is on its way: the connection is
/// not ours until hyper has written that response.
pub(crate) struct PendingUpgrade {
    on_upgrade: OnUpgrade,
    extension: Option<Box<dyn Extension>>,
    /// An HTTP/2 stream (RFC 8441) rather than a connection of its own.
    multiplexed: bool,
}

impl PendingUpgrade {
    /// Prepares the extension agreed in the handshake, configured by
    /// `config` (the same config the handshake negotiated with), for a
    /// handshake made over HTTP `version`.
    pub(crate) fn new(
        on_upgrade: OnUpgrade,
        agreed: Agreed,
        config: &Config,
        version: Version,
    ) -> Self {
        #[cfg(feature = "deflate")]
        let extension = agreed.map(|(params, mem_level)| {
            let deflate = config.deflate.as_ref().expect("negotiated with a config");
            Box::new(crate::extensions::deflate::PerMessageDeflate::new(
                params, mem_level, deflate,
            )) as Box<dyn Extension>
        });
        #[cfg(not(feature = "deflate"))]
        let extension = {
            let _ = (agreed, config);
            None
        };
        PendingUpgrade {
            on_upgrade,
            extension,
            multiplexed: version >= Version::HTTP_2,
        }
    }

    /// Waits for hyper to hand the connection over, and wraps it in a
    /// WebSocket. Fails only if the client went away before the upgrade
    /// finished. Not to be polled again once ready.
    pub(crate) fn poll_upgraded(
        &mut self,
        cx: &mut Context<'_>,
        config: &Config,
    ) -> Poll<Result<UpgradedWebSocket, hyper::Error>> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx))?;
        let ws = WebSocket::from_raw(TokioIo::new(upgraded), config, self.extension.take());
        Poll::Ready(Ok(if self.multiplexed {
            ws.multiplexed()
        } else {
            ws
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_upgrade_handle_is_a_server_setup_error() {
        let reject = take_on_upgrade(&mut http::Extensions::new()).unwrap_err();
        assert_eq!(reject.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(reject.reason.contains("serve_connection_with_upgrades"));
    }
}
