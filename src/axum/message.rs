//! axum's message shapes: [`Message`], [`Utf8Bytes`], [`CloseFrame`] and
//! [`CloseCode`] (`u16`), each converting to and from tower-ws's own type
//! without copying.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// Status code used to indicate why an endpoint is closing the WebSocket
/// connection (RFC 6455 §7.4), as a plain `u16` the way axum has it.
///
/// tower-ws's own [`crate::CloseCode`] is a newtype with named constants;
/// [`close_code`] has them as `u16` under axum's names.
pub type CloseCode = u16;

/// Text that is guaranteed to be valid UTF-8, shared without copying: the
/// payload of [`Message::Text`].
///
/// ```
/// use tower_ws::axum::Utf8Bytes;
///
/// let text = Utf8Bytes::from_static("foo123");
/// assert_eq!(text.len(), 6);
/// assert_eq!(text, "foo123");
/// assert_eq!(text, "foo123".to_string());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Utf8Bytes(crate::Utf8Bytes);

impl Utf8Bytes {
    /// Text from a static string, without allocating.
    #[inline]
    #[must_use]
    pub const fn from_static(str: &'static str) -> Self {
        Utf8Bytes(crate::Utf8Bytes::from_static(str))
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Utf8Bytes {
    #[inline]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;

    #[inline]
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        crate::Utf8Bytes::try_from(bytes).map(Utf8Bytes)
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = std::str::Utf8Error;

    #[inline]
    fn try_from(v: Vec<u8>) -> Result<Self, Self::Error> {
        Utf8Bytes::try_from(Bytes::from(v))
    }
}

impl From<String> for Utf8Bytes {
    #[inline]
    fn from(s: String) -> Self {
        Utf8Bytes(s.into())
    }
}

impl From<&str> for Utf8Bytes {
    /// Copies the text (as axum does); [`Utf8Bytes::from_static`] does not.
    #[inline]
    fn from(s: &str) -> Self {
        Utf8Bytes(s.to_owned().into())
    }
}

impl From<&String> for Utf8Bytes {
    #[inline]
    fn from(s: &String) -> Self {
        Utf8Bytes(s.into())
    }
}

impl From<Utf8Bytes> for Bytes {
    #[inline]
    fn from(text: Utf8Bytes) -> Self {
        text.0.into_bytes()
    }
}

impl From<crate::Utf8Bytes> for Utf8Bytes {
    #[inline]
    fn from(text: crate::Utf8Bytes) -> Self {
        Utf8Bytes(text)
    }
}

impl From<Utf8Bytes> for crate::Utf8Bytes {
    #[inline]
    fn from(text: Utf8Bytes) -> Self {
        text.0
    }
}

impl<T> PartialEq<T> for Utf8Bytes
where
    for<'a> &'a str: PartialEq<T>,
{
    #[inline]
    fn eq(&self, other: &T) -> bool {
        self.as_str() == *other
    }
}

/// The code and reason of a close frame (RFC 6455 §5.5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (RFC 6455 §7.4); [`close_code`] names the common ones.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8 on the wire.
    pub reason: Utf8Bytes,
}

impl From<crate::CloseFrame> for CloseFrame {
    fn from(frame: crate::CloseFrame) -> Self {
        CloseFrame {
            code: frame.code.as_u16(),
            reason: frame.reason.into(),
        }
    }
}

impl From<CloseFrame> for crate::CloseFrame {
    fn from(frame: CloseFrame) -> Self {
        crate::CloseFrame::new(frame.code, frame.reason)
    }
}

/// A WebSocket message, in axum's shape.
///
/// Pings are answered and close frames replied to by the connection on its
/// own; they are still handed to the application, as axum does.
///
/// ```
/// use tower_ws::axum::{CloseFrame, Message, close_code};
///
/// let hello = Message::Text("hello".into());
/// assert_eq!(hello.to_text().unwrap(), "hello");
/// let bye = Message::Close(Some(CloseFrame {
///     code: close_code::AWAY,
///     reason: "shutting down".into(),
/// }));
/// // The same message in tower-ws's own shape, without copying.
/// assert!(tower_ws::Message::from(bye).is_close());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its application data (at most 125 bytes, RFC 6455 §5.5).
    Ping(Bytes),
    /// A pong with its application data (at most 125 bytes). Sending one
    /// unprompted is a unidirectional heartbeat (RFC 6455 §5.5.3).
    Pong(Bytes),
    /// A close message, with the code and reason if the frame carried them.
    ///
    /// Sending one starts the closing handshake; afterwards reading still
    /// works (it ends with the peer's close frame) and sending fails.
    /// Receiving one means the reply is already on its way: nothing more
    /// will arrive.
    Close(Option<CloseFrame>),
}

impl Message {
    /// The payload as `Bytes` (for `Close`, the reason), without copying.
    pub fn into_data(self) -> Bytes {
        crate::Message::from(self).into_payload()
    }

    /// The payload as text; fails if a binary, ping or pong payload is not
    /// UTF-8.
    pub fn into_text(self) -> Result<Utf8Bytes, axum_core::Error> {
        match self {
            Message::Text(text) => Ok(text),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => {
                Utf8Bytes::try_from(data).map_err(axum_core::Error::new)
            }
            Message::Close(None) => Ok(Utf8Bytes::default()),
            Message::Close(Some(frame)) => Ok(frame.reason),
        }
    }

    /// The payload as `&str`; fails if a binary, ping or pong payload is not
    /// UTF-8.
    pub fn to_text(&self) -> Result<&str, axum_core::Error> {
        match self {
            Message::Text(text) => Ok(text.as_str()),
            Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => {
                std::str::from_utf8(data).map_err(axum_core::Error::new)
            }
            Message::Close(None) => Ok(""),
            Message::Close(Some(frame)) => Ok(frame.reason.as_str()),
        }
    }

    /// A text message.
    pub fn text<S>(string: S) -> Message
    where
        S: Into<Utf8Bytes>,
    {
        Message::Text(string.into())
    }

    /// A binary message.
    pub fn binary<B>(bin: B) -> Message
    where
        B: Into<Bytes>,
    {
        Message::Binary(bin.into())
    }
}

impl From<String> for Message {
    fn from(string: String) -> Self {
        Message::Text(string.into())
    }
}

impl<'s> From<&'s str> for Message {
    fn from(string: &'s str) -> Self {
        Message::Text(string.into())
    }
}

impl<'b> From<&'b [u8]> for Message {
    fn from(data: &'b [u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(data))
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(data.into())
    }
}

impl From<Message> for Vec<u8> {
    fn from(msg: Message) -> Self {
        msg.into_data().to_vec()
    }
}

impl From<crate::Message> for Message {
    #[inline]
    fn from(msg: crate::Message) -> Self {
        match msg {
            crate::Message::Text(text) => Message::Text(text.into()),
            crate::Message::Binary(data) => Message::Binary(data),
            crate::Message::Ping(data) => Message::Ping(data),
            crate::Message::Pong(data) => Message::Pong(data),
            crate::Message::Close(frame) => Message::Close(frame.map(Into::into)),
        }
    }
}

impl From<Message> for crate::Message {
    #[inline]
    fn from(msg: Message) -> Self {
        match msg {
            Message::Text(text) => crate::Message::Text(text.into()),
            Message::Binary(data) => crate::Message::Binary(data),
            Message::Ping(data) => crate::Message::Ping(data),
            Message::Pong(data) => crate::Message::Pong(data),
            Message::Close(frame) => crate::Message::Close(frame.map(Into::into)),
        }
    }
}

/// Close codes (RFC 6455 §7.4.1) as `u16`, under axum's names.
pub mod close_code {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: u16 = 1000;
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const AWAY: u16 = 1001;
    /// 1002: protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// 1005: no status code was present (never sent on the wire).
    pub const STATUS: u16 = 1005;
    /// 1006: closed without a close frame (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
    /// 1007: data inconsistent with the message type (e.g. invalid UTF-8).
    pub const INVALID: u16 = 1007;
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY: u16 = 1008;
    /// 1009: a message too big to process.
    pub const SIZE: u16 = 1009;
    /// 1010: the client expected an extension the server did not negotiate.
    pub const EXTENSION: u16 = 1010;
    /// 1011: the server hit an unexpected condition.
    pub const ERROR: u16 = 1011;
    /// 1012: the server is restarting.
    pub const RESTART: u16 = 1012;
    /// 1013: try again later (temporary overload).
    pub const AGAIN: u16 = 1013;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_convert_both_ways_without_copying() {
        let payload = Bytes::from_static(b"shared");
        let ours = crate::Message::Binary(payload.clone());
        let theirs = Message::from(ours);
        let Message::Binary(data) = &theirs else {
            panic!("{theirs:?}")
        };
        assert_eq!(data.as_ptr(), payload.as_ptr());
        assert_eq!(
            crate::Message::from(theirs),
            crate::Message::Binary(payload)
        );

        let close = crate::Message::close(4000, "bye");
        assert_eq!(
            Message::from(close.clone()),
            Message::Close(Some(CloseFrame {
                code: 4000,
                reason: Utf8Bytes::from_static("bye")
            }))
        );
        assert_eq!(crate::Message::from(Message::from(close.clone())), close);
        assert_eq!(
            Message::from(crate::Message::Close(None)),
            Message::Close(None)
        );
    }

    #[test]
    fn text_accessors_follow_axum() {
        assert_eq!(Message::from("héllo").to_text().unwrap(), "héllo");
        assert_eq!(Message::binary(&b"abc"[..]).into_text().unwrap(), "abc");
        assert!(Message::binary(vec![0xff]).to_text().is_err());
        assert!(
            Message::Ping(Bytes::from_static(b"\xfe"))
                .into_text()
                .is_err()
        );
        assert_eq!(Message::Close(None).to_text().unwrap(), "");
        assert_eq!(Message::text(String::from("x")).into_data(), "x");
        assert_eq!(Vec::<u8>::from(Message::from(vec![1, 2])), vec![1, 2]);
        let borrowed = String::from("not static");
        assert_eq!(Message::text(borrowed.as_str()), Message::from(borrowed));
    }

    #[test]
    fn utf8_bytes_compare_with_every_string_shape() {
        let text = Utf8Bytes::from("foo123");
        assert_eq!(text, "foo123");
        assert_eq!(text, String::from("foo123"));
        assert_eq!(text, &String::from("foo123"));
        assert_eq!(text, std::borrow::Cow::from("foo123"));
        assert_eq!(text.to_string(), "foo123");
        assert!(Utf8Bytes::try_from(vec![0xc3]).is_err());
        assert_eq!(Bytes::from(text), "foo123");
    }
}
