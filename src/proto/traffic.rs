//! What one connection has carried: plain counters kept by the engine and
//! read by the I/O layer (for metrics and the close log), and the close
//! frames exchanged.

use crate::message::{CloseCode, CloseFrame};

/// Messages and bytes one [`Connection`](super::Connection) has carried so
/// far. Plain integers updated as messages pass through the engine: no
/// atomics, no clock. The I/O layer folds them into shared metrics.
///
/// Bytes count data message payloads (text and binary) as the application
/// sees them, after decompression; the `compressed_*` and `deflate_*` pairs
/// count the messages that went through permessage-deflate, before and after.
///
/// ```
/// use tower_ws::proto::{Connection, Role, WriteBuf};
/// use tower_ws::{Config, Message};
///
/// let mut conn = Connection::new(Role::Server, &Config::default(), None);
/// let mut out = WriteBuf::new();
/// conn.send(Message::text("hello"), &mut out).unwrap();
/// assert_eq!(conn.traffic().messages_sent, 1);
/// assert_eq!(conn.traffic().bytes_sent, 5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Traffic {
    /// Data messages received whole.
    pub messages_received: u64,
    /// Data messages queued for sending.
    pub messages_sent: u64,
    /// Payload bytes of the data messages received (after decompression).
    pub bytes_received: u64,
    /// Payload bytes of the data messages sent (before compression).
    pub bytes_sent: u64,
    /// Payload bytes of compressed messages as they arrived.
    pub compressed_bytes_received: u64,
    /// The same messages' payload bytes after inflating.
    pub inflated_bytes_received: u64,
    /// Payload bytes of messages that were sent compressed, before compressing.
    pub deflate_input_bytes_sent: u64,
    /// The same messages' payload bytes as sent, compressed.
    pub compressed_bytes_sent: u64,
}

impl Traffic {
    /// The counts added since `earlier` (a previous copy of these counters).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            messages_received: self.messages_received - earlier.messages_received,
            messages_sent: self.messages_sent - earlier.messages_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            compressed_bytes_received: self.compressed_bytes_received
                - earlier.compressed_bytes_received,
            inflated_bytes_received: self.inflated_bytes_received - earlier.inflated_bytes_received,
            deflate_input_bytes_sent: self.deflate_input_bytes_sent
                - earlier.deflate_input_bytes_sent,
            compressed_bytes_sent: self.compressed_bytes_sent - earlier.compressed_bytes_sent,
        }
    }
}

/// The close frames of a connection: ours, the peer's, and who was first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloseRecord {
    /// The close frame we sent (code 1005 when it carried no code).
    pub sent: Option<CloseFrame>,
    /// The close frame the peer sent (code 1005 when it carried no code).
    pub received: Option<CloseFrame>,
    /// The peer's close frame came before ours.
    pub peer_first: bool,
}

impl CloseRecord {
    /// No close frame either way: what an open connection reports.
    pub(super) const NONE: CloseRecord = CloseRecord {
        sent: None,
        received: None,
        peer_first: false,
    };

    pub(super) fn on_sent(&mut self, frame: Option<&CloseFrame>) {
        if self.sent.is_none() {
            self.sent = Some(frame.cloned().unwrap_or_else(no_status));
        }
    }

    pub(super) fn on_received(&mut self, frame: Option<&CloseFrame>) {
        if self.received.is_none() {
            self.peer_first = self.sent.is_none();
            self.received = Some(frame.cloned().unwrap_or_else(no_status));
        }
    }
}

/// RFC 6455 §7.1.5: a close frame without a code counts as 1005.
fn no_status() -> CloseFrame {
    CloseFrame::new(CloseCode::NO_STATUS, "")
}
