//! Why [`WebSocketUpgrade`](super::WebSocketUpgrade) refused a request:
//! axum's rejection types, with axum's texts and the statuses RFC 6455 and
//! RFC 9110 name.
//!
//! | rejection | status | axum's status |
//! | --- | --- | --- |
//! | [`MethodNotGet`] | 405, `Allow: GET` | 405 |
//! | [`MethodNotConnect`] | 405, `Allow: CONNECT` | 405 |
//! | [`InvalidConnectionHeader`] | 400 | 400 |
//! | [`InvalidUpgradeHeader`] | 426, `Upgrade: websocket` (RFC 9110 §15.5.22) | 400 |
//! | [`InvalidProtocolPseudoheader`] | 501: this server tunnels only `websocket` | 400 |
//! | [`InvalidWebSocketVersionHeader`] | 426, `Sec-WebSocket-Version: 13` (RFC 6455 §4.2.2) | 400 |
//! | [`WebSocketKeyHeaderMissing`] | 400 | 400 |
//! | [`ConnectionNotUpgradable`] | 500: the server is not serving upgrades | 426 |
//! | [`InvalidHandshake`] (not in axum) | 400: a rule axum does not check | — |

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::handshake::Reject;

macro_rules! define_rejection {
    (
        #[status = $status:ident]
        $(#[allow = $allow:literal])?
        #[body = $body:literal]
        $(#[$m:meta])*
        pub struct $name:ident;
    ) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        #[non_exhaustive]
        pub struct $name;

        impl $name {
            /// The response body text of this rejection (axum's text).
            pub fn body_text(&self) -> String {
                self.to_string()
            }

            /// The status code of this rejection.
            pub fn status(&self) -> StatusCode {
                StatusCode::$status
            }
        }

        impl IntoResponse for $name {
            fn into_response(self) -> Response {
                #[allow(unused_mut)]
                let mut response = Reject {
                    status: self.status(),
                    reason: $body,
                }
                .response();
                $(
                    // RFC 9110 §15.5.6: a 405 lists the methods the resource allows.
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static($allow));
                )?
                response
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($body)
            }
        }

        impl std::error::Error for $name {}
    };
}

define_rejection! {
    #[status = METHOD_NOT_ALLOWED]
    #[body = "Request method must be `GET`"]
    /// An HTTP/1.1 upgrade request that is not a `GET` (RFC 6455 §4.1).
    pub struct MethodNotGet;
}

define_rejection! {
    #[status = METHOD_NOT_ALLOWED]
    #[allow = "CONNECT"]
    #[body = "Request method must be `CONNECT`"]
    /// An HTTP/2 request that is not an extended `CONNECT` (RFC 8441 §4).
    /// Its response says `Allow: CONNECT`.
    pub struct MethodNotConnect;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "Connection header did not include 'upgrade'"]
    /// The `Connection` header does not list `upgrade` (RFC 6455 §4.2.1).
    pub struct InvalidConnectionHeader;
}

define_rejection! {
    #[status = UPGRADE_REQUIRED]
    #[body = "`Upgrade` header did not include 'websocket'"]
    /// Not a WebSocket request at all: the `Upgrade` header does not list
    /// `websocket`. Answered `426 Upgrade Required` with
    /// `Upgrade: websocket`, as `WebSocketService` answers ordinary requests
    /// on a WebSocket-only route (axum answers 400).
    pub struct InvalidUpgradeHeader;
}

define_rejection! {
    #[status = NOT_IMPLEMENTED]
    #[body = "`:protocol` pseudo-header did not include 'websocket'"]
    /// An HTTP/2 `CONNECT` without `:protocol`, or an extended `CONNECT` for
    /// another protocol than `websocket` (RFC 8441 §4): `501 Not
    /// Implemented`, as `WebSocketService` answers (axum answers 400).
    pub struct InvalidProtocolPseudoheader;
}

define_rejection! {
    #[status = UPGRADE_REQUIRED]
    #[body = "`Sec-WebSocket-Version` header did not include '13'"]
    /// A missing or unsupported `Sec-WebSocket-Version`: answered
    /// `426 Upgrade Required` with `Sec-WebSocket-Version: 13`, as RFC 6455
    /// §4.2.2 asks (axum answers 400).
    pub struct InvalidWebSocketVersionHeader;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "`Sec-WebSocket-Key` header missing"]
    /// No `Sec-WebSocket-Key` header (RFC 6455 §4.2.1).
    pub struct WebSocketKeyHeaderMissing;
}

define_rejection! {
    #[status = INTERNAL_SERVER_ERROR]
    #[body = "WebSocket request couldn't be upgraded since no upgrade state was present"]
    /// hyper's upgrade handle is missing from the request: the server does
    /// not serve connections with upgrades enabled (`axum::serve` does), or
    /// the request did not come from hyper (a `oneshot` test). A server
    /// setup error, so `500` (axum answers 426).
    pub struct ConnectionNotUpgradable;
}

/// A handshake rule axum does not check, answered with tower-ws's status
/// and reason: HTTP/1.0, a missing or repeated `Host`, a repeated
/// `Sec-WebSocket-Key` or `Origin`, a key that is not 16 bytes in base64
/// (all 400, RFC 6455 §4.2.1), or an extended CONNECT without
/// `:authority` (400, RFC 8441 §4).
#[derive(Debug)]
pub struct InvalidHandshake(Reject);

impl InvalidHandshake {
    /// The response body text: what was wrong with the request.
    pub fn body_text(&self) -> String {
        self.to_string()
    }

    /// The status code of this rejection.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl IntoResponse for InvalidHandshake {
    fn into_response(self) -> Response {
        self.0.response()
    }
}

impl fmt::Display for InvalidHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.reason)
    }
}

impl std::error::Error for InvalidHandshake {}

/// Every way the [`WebSocketUpgrade`](super::WebSocketUpgrade) extractor
/// can fail, one variant per rejection type (axum's, plus
/// [`InvalidHandshake`]).
///
/// ```
/// use axum_core::response::IntoResponse;
/// use tower_ws::axum::WebSocketUpgrade;
/// use tower_ws::axum::rejection::WebSocketUpgradeRejection;
///
/// async fn handler(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> axum_core::response::Response {
///     match ws {
///         Ok(ws) => ws.on_upgrade(|_socket| async {}),
///         Err(rejection) => {
///             eprintln!("not a WebSocket: {rejection} ({})", rejection.status());
///             rejection.into_response()
///         }
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WebSocketUpgradeRejection {
    #[allow(missing_docs)]
    MethodNotGet(MethodNotGet),
    #[allow(missing_docs)]
    MethodNotConnect(MethodNotConnect),
    #[allow(missing_docs)]
    InvalidConnectionHeader(InvalidConnectionHeader),
    #[allow(missing_docs)]
    InvalidUpgradeHeader(InvalidUpgradeHeader),
    #[allow(missing_docs)]
    InvalidProtocolPseudoheader(InvalidProtocolPseudoheader),
    #[allow(missing_docs)]
    InvalidWebSocketVersionHeader(InvalidWebSocketVersionHeader),
    #[allow(missing_docs)]
    WebSocketKeyHeaderMissing(WebSocketKeyHeaderMissing),
    #[allow(missing_docs)]
    ConnectionNotUpgradable(ConnectionNotUpgradable),
    #[allow(missing_docs)]
    InvalidHandshake(InvalidHandshake),
}

/// Applies `$f` to the rejection inside any variant.
macro_rules! each_variant {
    ($rejection:expr, $inner:ident => $f:expr) => {
        match $rejection {
            WebSocketUpgradeRejection::MethodNotGet($inner) => $f,
            WebSocketUpgradeRejection::MethodNotConnect($inner) => $f,
            WebSocketUpgradeRejection::InvalidConnectionHeader($inner) => $f,
            WebSocketUpgradeRejection::InvalidUpgradeHeader($inner) => $f,
            WebSocketUpgradeRejection::InvalidProtocolPseudoheader($inner) => $f,
            WebSocketUpgradeRejection::InvalidWebSocketVersionHeader($inner) => $f,
            WebSocketUpgradeRejection::WebSocketKeyHeaderMissing($inner) => $f,
            WebSocketUpgradeRejection::ConnectionNotUpgradable($inner) => $f,
            WebSocketUpgradeRejection::InvalidHandshake($inner) => $f,
        }
    };
}

impl WebSocketUpgradeRejection {
    /// The response body text of this rejection.
    pub fn body_text(&self) -> String {
        each_variant!(self, r => r.body_text())
    }

    /// The status code of this rejection.
    pub fn status(&self) -> StatusCode {
        each_variant!(self, r => r.status())
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        each_variant!(self, r => r.into_response())
    }
}

impl fmt::Display for WebSocketUpgradeRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        each_variant!(self, r => fmt::Display::fmt(r, f))
    }
}

impl std::error::Error for WebSocketUpgradeRejection {}

macro_rules! from_variants {
    ($($variant:ident),+) => {
        $(
            impl From<$variant> for WebSocketUpgradeRejection {
                fn from(inner: $variant) -> Self {
                    WebSocketUpgradeRejection::$variant(inner)
                }
            }
        )+
    };
}

from_variants!(
    MethodNotGet,
    MethodNotConnect,
    InvalidConnectionHeader,
    InvalidUpgradeHeader,
    InvalidProtocolPseudoheader,
    InvalidWebSocketVersionHeader,
    WebSocketKeyHeaderMissing,
    ConnectionNotUpgradable,
    InvalidHandshake
);

impl From<Reject> for InvalidHandshake {
    fn from(reject: Reject) -> Self {
        InvalidHandshake(reject)
    }
}
