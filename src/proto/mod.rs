//! The sans-I/O protocol engine (RFC 6455 §5–§7).
//!
//! Bytes in, messages out; frames out into a caller-owned [`WriteBuf`]. No
//! tokio, no clock, no sockets: every rule is testable byte by byte and the
//! whole engine is fuzzable. The async [`WebSocket`](crate::WebSocket) is a
//! thin driver around [`Connection`].

mod connection;
pub(crate) mod frame;
pub mod mask;
mod traffic;
mod utf8;
mod write_buf;

pub(crate) use connection::encode_frame;
pub use connection::{Connection, MaskKeys, Role};
pub use traffic::{CloseRecord, Traffic};
pub use utf8::{Invalid as InvalidUtf8, Utf8Validator};
pub use write_buf::WriteBuf;
