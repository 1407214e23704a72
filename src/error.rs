//! The error type.

use std::fmt;
use std::io;

use crate::message::CloseCode;

/// Errors from a WebSocket connection.
///
/// The type is opaque and pointer-sized; ask it what went wrong with the
/// `is_*` queries, and which close code was (or would be) sent to the peer
/// with [`close_code`](Error::close_code).
///
/// A normal close is not an error: the stream yields the close message and
/// then ends.
///
/// ```
/// # use tower_ws::{Error, CloseCode};
/// fn report(err: &Error) {
///     if err.is_protocol() {
///         eprintln!("peer broke the protocol ({:?}): {err}", err.close_code());
///     } else if err.is_io() {
///         eprintln!("network error: {err}");
///     }
/// }
/// ```
pub struct Error {
    inner: Box<ErrorImpl>,
}

struct ErrorImpl {
    kind: Kind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What went wrong, and the close code that goes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The peer broke RFC 6455 (or an extension's rules): close 1002.
    Protocol(ProtocolError),
    /// Text or a close reason that is not UTF-8, or corrupt compressed data: close 1007.
    InvalidPayload(PayloadError),
    /// A frame or message above a configured limit: close 1009.
    Capacity(CapacityError),
    /// The transport failed.
    Io,
    /// The connection is closed; nothing more can be sent.
    Closed,
    /// The application tried to send something invalid (an oversized control
    /// frame, a close code that may not be sent).
    InvalidMessage(&'static str),
    /// The close handshake did not complete within the close timeout.
    CloseTimeout,
    /// The client's opening handshake broke a rule (RFC 6455 §4.1).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    Handshake(crate::handshake::client::HandshakeError),
    /// The client's HTTP exchange failed before a response was complete
    /// (the source says why).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    HandshakeHttp,
    /// The client's TLS handshake failed (the source says why).
    #[cfg_attr(not(all(feature = "client", feature = "tls")), allow(dead_code))]
    Tls,
    /// Connecting or the opening handshake took longer than its timeout.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    Timeout(&'static str),
    /// The client cannot connect to this URL or send this request.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    InvalidRequest(&'static str),
    /// A keepalive ping went unanswered: close 1011.
    KeepaliveTimeout,
    /// No message arrived within the idle timeout: close 1001.
    IdleTimeout,
    /// The server's memory budget ran out while this connection held the
    /// most buffered bytes: close with the budget's code (1013 or 1008).
    Overloaded(CloseCode),
}

/// A violation of RFC 6455 by the peer, each closing with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtocolError {
    UnmaskedFrame,
    MaskedFrame,
    ReservedBits,
    ReservedOpcode(u8),
    FragmentedControl,
    ControlTooLong,
    UnexpectedContinuation,
    ExpectedContinuation,
    LengthMsbSet,
    CloseOneBytePayload,
    InvalidCloseCode(u16),
    ExtensionRsvOnContinuation,
}

/// Invalid payload data, closing with 1007.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadError {
    InvalidUtf8,
    InvalidCloseReason,
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    CorruptCompressedData,
}

/// A limit that was exceeded, closing with 1009.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CapacityError {
    FrameTooLarge { size: u64, max: usize },
    MessageTooLarge { max: usize },
    TooManyFragments { max: usize },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Box::new(ErrorImpl { kind, source: None }),
        }
    }

    pub(crate) fn with_source(
        kind: Kind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error {
            inner: Box::new(ErrorImpl {
                kind,
                source: Some(source.into()),
            }),
        }
    }

    pub(crate) fn protocol(e: ProtocolError) -> Self {
        Error::new(Kind::Protocol(e))
    }

    pub(crate) fn payload(e: PayloadError) -> Self {
        Error::new(Kind::InvalidPayload(e))
    }

    pub(crate) fn capacity(e: CapacityError) -> Self {
        Error::new(Kind::Capacity(e))
    }

    pub(crate) fn io(e: io::Error) -> Self {
        Error::with_source(Kind::Io, e)
    }

    pub(crate) fn closed() -> Self {
        Error::new(Kind::Closed)
    }

    pub(crate) fn invalid_message(what: &'static str) -> Self {
        Error::new(Kind::InvalidMessage(what))
    }

    /// The peer violated the WebSocket protocol (RFC 6455 or a negotiated
    /// extension); the connection was failed with close code 1002.
    pub fn is_protocol(&self) -> bool {
        matches!(self.inner.kind, Kind::Protocol(_))
    }

    /// The peer sent text that is not UTF-8, an invalid close reason, or
    /// compressed data that does not inflate; the connection was failed with
    /// close code 1007.
    pub fn is_invalid_payload(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidPayload(_))
    }

    /// A frame, message or fragment count exceeded a configured limit; the
    /// connection was failed with close code 1009. Raise the limit in
    /// [`Config`](crate::Config) if the peer is legitimate.
    pub fn is_capacity(&self) -> bool {
        matches!(self.inner.kind, Kind::Capacity(_))
    }

    /// The underlying transport failed (connection reset, broken pipe, ...).
    pub fn is_io(&self) -> bool {
        matches!(self.inner.kind, Kind::Io)
    }

    /// The connection is already closed: the close handshake completed or the
    /// connection was failed, so nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        matches!(self.inner.kind, Kind::Closed)
    }

    /// The application tried to send a message that cannot be sent (a control
    /// payload over 125 bytes, a close code that may not appear on the wire).
    pub fn is_invalid_message(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidMessage(_))
    }

    /// The peer did not answer our close frame within the close timeout,
    /// or (client) connecting or the opening handshake timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::CloseTimeout | Kind::Timeout(_))
    }

    /// The client's opening handshake failed: the server refused it,
    /// answered with a response that breaks RFC 6455 §4.1 (see
    /// [`handshake_error`](Error::handshake_error)), or the HTTP exchange
    /// broke off.
    pub fn is_handshake(&self) -> bool {
        matches!(self.inner.kind, Kind::Handshake(_) | Kind::HandshakeHttp)
    }

    /// The rule of the opening handshake the server's response broke, if
    /// that is what went wrong.
    ///
    /// ```
    /// # use tower_ws::handshake::client::HandshakeError;
    /// # fn check(err: tower_ws::Error) {
    /// if let Some(HandshakeError::Status(status)) = err.handshake_error() {
    ///     eprintln!("the server answered {status}: is this a WebSocket URL?");
    /// }
    /// # }
    /// ```
    pub fn handshake_error(&self) -> Option<crate::handshake::client::HandshakeError> {
        match self.inner.kind {
            Kind::Handshake(e) => Some(e),
            _ => None,
        }
    }

    /// The client's TLS handshake failed (unknown certificate authority,
    /// wrong server name, ...).
    pub fn is_tls(&self) -> bool {
        matches!(self.inner.kind, Kind::Tls)
    }

    /// The client was given a URL or request it cannot use (not `ws://` or
    /// `wss://`, no host, `wss://` without the `tls` feature, ...).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidRequest(_))
    }

    /// The peer did not answer a keepalive ping within the pong timeout
    /// ([`Config::ping_interval`](crate::Config::ping_interval)); the
    /// connection was failed with close code 1011.
    pub fn is_keepalive_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::KeepaliveTimeout)
    }

    /// The peer sent no message within the idle timeout
    /// ([`Config::idle_timeout`](crate::Config::idle_timeout)); the closing
    /// handshake was started with close code 1001.
    pub fn is_idle_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::IdleTimeout)
    }

    /// The server's memory budget ran out and this connection held the most
    /// buffered bytes (see
    /// [`WebSocketService::memory_budget`](crate::WebSocketService::memory_budget));
    /// it was closed with 1013 (or the budget's configured code).
    pub fn is_overloaded(&self) -> bool {
        matches!(self.inner.kind, Kind::Overloaded(_))
    }

    /// The close code this error sent (or would send) to the peer, if it
    /// fails the connection.
    ///
    /// ```
    /// # use tower_ws::{CloseCode, Error};
    /// # fn check(err: Error) {
    /// if err.close_code() == Some(CloseCode::TOO_BIG) {
    ///     // raise Config::max_message_size if the peer is legitimate
    /// }
    /// # }
    /// ```
    pub fn close_code(&self) -> Option<CloseCode> {
        match self.inner.kind {
            Kind::Protocol(_) => Some(CloseCode::PROTOCOL),
            Kind::InvalidPayload(_) => Some(CloseCode::INVALID_PAYLOAD),
            Kind::Capacity(_) => Some(CloseCode::TOO_BIG),
            Kind::KeepaliveTimeout => Some(CloseCode::INTERNAL),
            Kind::IdleTimeout => Some(CloseCode::AWAY),
            Kind::Overloaded(code) => Some(code),
            _ => None,
        }
    }

    /// The reason sent in the close frame that fails the connection: short,
    /// and within the 123 bytes a close reason may hold.
    pub(crate) fn close_reason(&self) -> &'static str {
        match self.inner.kind {
            Kind::Protocol(_) => "protocol error",
            Kind::InvalidPayload(PayloadError::CorruptCompressedData) => "invalid compressed data",
            Kind::InvalidPayload(_) => "invalid UTF-8",
            Kind::Capacity(_) => "message too big",
            Kind::KeepaliveTimeout => "keepalive ping timeout",
            Kind::IdleTimeout => "idle timeout",
            Kind::Overloaded(_) => "server overloaded: try again later",
            _ => "",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError as P;
        match self.inner.kind {
            Kind::Protocol(p) => {
                f.write_str("WebSocket protocol error: ")?;
                match p {
                    P::UnmaskedFrame => f.write_str("client sent an unmasked frame (RFC 6455 §5.1)"),
                    P::MaskedFrame => f.write_str("server sent a masked frame (RFC 6455 §5.1)"),
                    P::ReservedBits => f.write_str(
                        "a frame set an RSV bit that no negotiated extension defines (RFC 6455 §5.2)",
                    ),
                    P::ReservedOpcode(op) => {
                        write!(f, "reserved opcode {op:#x} (RFC 6455 §5.2)")
                    }
                    P::FragmentedControl => {
                        f.write_str("fragmented control frame (RFC 6455 §5.5)")
                    }
                    P::ControlTooLong => {
                        f.write_str("control frame payload over 125 bytes (RFC 6455 §5.5)")
                    }
                    P::UnexpectedContinuation => f.write_str(
                        "continuation frame without a message in progress (RFC 6455 §5.4)",
                    ),
                    P::ExpectedContinuation => f.write_str(
                        "new data frame while a fragmented message is in progress (RFC 6455 §5.4)",
                    ),
                    P::LengthMsbSet => f.write_str(
                        "64-bit payload length with its most significant bit set (RFC 6455 §5.2)",
                    ),
                    P::CloseOneBytePayload => {
                        f.write_str("close frame with a 1-byte payload (RFC 6455 §5.5.1)")
                    }
                    P::InvalidCloseCode(code) => {
                        write!(f, "close code {code} may not be sent (RFC 6455 §7.4)")
                    }
                    P::ExtensionRsvOnContinuation => f.write_str(
                        "RSV1 set on a continuation or control frame (RFC 7692 §6.1)",
                    ),
                }
            }
            Kind::InvalidPayload(PayloadError::InvalidUtf8) => {
                f.write_str("text message is not valid UTF-8 (RFC 6455 §8.1)")
            }
            Kind::InvalidPayload(PayloadError::InvalidCloseReason) => {
                f.write_str("close reason is not valid UTF-8 (RFC 6455 §5.5.1)")
            }
            Kind::InvalidPayload(PayloadError::CorruptCompressedData) => {
                f.write_str("compressed message does not inflate (RFC 7692 §7.2.2)")
            }
            Kind::Capacity(CapacityError::FrameTooLarge { size, max }) => write!(
                f,
                "frame of {size} bytes exceeds max_frame_size ({max} bytes); raise Config::max_frame_size to accept it"
            ),
            Kind::Capacity(CapacityError::MessageTooLarge { max }) => write!(
                f,
                "message exceeds max_message_size ({max} bytes); raise Config::max_message_size to accept it"
            ),
            Kind::Capacity(CapacityError::TooManyFragments { max }) => write!(
                f,
                "message split into more than max_fragments ({max}) frames; raise Config::max_fragments to accept it"
            ),
            Kind::Io => match &self.inner.source {
                Some(source) => write!(f, "WebSocket transport error: {source}"),
                None => f.write_str("WebSocket transport error"),
            },
            Kind::Closed => f.write_str("the WebSocket connection is closed"),
            Kind::InvalidMessage(what) => write!(f, "cannot send this message: {what}"),
            Kind::CloseTimeout => {
                f.write_str("the peer did not answer the close frame within the close timeout")
            }
            Kind::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Kind::HandshakeHttp => match &self.inner.source {
                Some(source) => write!(f, "WebSocket handshake failed at the HTTP level: {source}"),
                None => f.write_str("WebSocket handshake failed at the HTTP level"),
            },
            Kind::Tls => match &self.inner.source {
                Some(source) => write!(f, "TLS handshake failed: {source}"),
                None => f.write_str("TLS handshake failed"),
            },
            Kind::Timeout(what) => f.write_str(what),
            Kind::InvalidRequest(what) => write!(f, "cannot open this WebSocket: {what}"),
            Kind::KeepaliveTimeout => f.write_str(
                "the peer did not answer a keepalive ping within the pong timeout (closed with 1011); \
                 raise Config::pong_timeout for slow networks",
            ),
            Kind::IdleTimeout => f.write_str(
                "the peer sent no message within the idle timeout (closed with 1001); \
                 see Config::idle_timeout",
            ),
            Kind::Overloaded(code) => write!(
                f,
                "the server's memory budget ran out and this connection held the most \
                 buffered bytes (closed with {code}); raise the memory budget or read faster"
            ),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("tower_ws::Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::io(e)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e.inner.kind {
            Kind::Io => match e.inner.source {
                Some(source) => match source.downcast::<io::Error>() {
                    Ok(io) => *io,
                    Err(other) => io::Error::other(other),
                },
                None => io::Error::other("WebSocket transport error"),
            },
            _ => io::Error::other(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_pointer_sized_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn close_codes_match_error_classes() {
        assert_eq!(
            Error::protocol(ProtocolError::UnmaskedFrame).close_code(),
            Some(CloseCode::PROTOCOL)
        );
        assert_eq!(
            Error::payload(PayloadError::InvalidUtf8).close_code(),
            Some(CloseCode::INVALID_PAYLOAD)
        );
        assert_eq!(
            Error::capacity(CapacityError::MessageTooLarge { max: 1 }).close_code(),
            Some(CloseCode::TOO_BIG)
        );
        assert_eq!(Error::closed().close_code(), None);
    }

    #[test]
    fn messages_tell_what_to_do() {
        let e = Error::capacity(CapacityError::MessageTooLarge { max: 10 });
        assert!(e.to_string().contains("max_message_size"));
        let e = Error::io(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(e.is_io());
        assert!(e.to_string().contains("reset"));
    }
}
