//! Channel and key names, and the message format on Redis.
//!
//! A message is `[1][kind][origin: u64 BE][seq: u64 BE][payload]`: version
//! 1, kind 1 for text and 2 for binary, the publishing node and its
//! sequence number, then the WebSocket payload unchanged.

use bytes::{BufMut, Bytes, BytesMut};

use crate::backplane::Topic;
use crate::message::{Message, Utf8Bytes};

const VERSION: u8 = 1;
const TEXT: u8 = 1;
const BINARY: u8 = 2;
const HEADER: usize = 18;

/// The channel of `topic`: `{prefix}all` or `{prefix}room:{name}`.
pub(super) fn channel(prefix: &str, topic: Topic<'_>) -> String {
    match topic {
        Topic::Everyone => format!("{prefix}all"),
        Topic::Room(room) => format!("{prefix}room:{room}"),
    }
}

/// The topic of a channel named by [`channel`].
pub(super) fn topic<'a>(prefix: &str, channel: &'a str) -> Option<Topic<'a>> {
    let rest = channel.strip_prefix(prefix)?;
    if rest == "all" {
        return Some(Topic::Everyone);
    }
    rest.strip_prefix("room:").map(Topic::Room)
}

/// The field of `topic` in a node's presence hash.
pub(super) fn field(topic: Topic<'_>) -> String {
    match topic {
        Topic::Everyone => "*".into(),
        Topic::Room(room) => format!("r:{room}"),
    }
}

/// The set of live node ids. The `{presence}` hash tag keeps every
/// presence key in one cluster slot.
pub(super) fn nodes_key(prefix: &str) -> String {
    format!("{prefix}{{presence}}:nodes")
}

/// The hash of one node's member counts, expiring without heartbeats.
pub(super) fn node_key(prefix: &str, node: &str) -> String {
    format!("{prefix}{{presence}}:node:{node}")
}

/// A node id as written in presence keys.
pub(super) fn node_name(node: u64) -> String {
    format!("{node:016x}")
}

pub(super) fn encode(origin: u64, seq: u64, msg: &Message) -> Option<Bytes> {
    let kind = match msg {
        Message::Text(_) => TEXT,
        Message::Binary(_) => BINARY,
        _ => return None,
    };
    let payload = msg.as_payload();
    let mut buf = BytesMut::with_capacity(HEADER + payload.len());
    buf.put_u8(VERSION);
    buf.put_u8(kind);
    buf.put_u64(origin);
    buf.put_u64(seq);
    buf.put_slice(payload);
    Some(buf.freeze())
}

/// A decoded message: its origin node, sequence number and content.
pub(super) struct Decoded {
    pub(super) origin: u64,
    pub(super) message: Message,
}

/// `None` for anything that is not a version-1 message (another
/// application on the same channel, say) or text that is not UTF-8.
pub(super) fn decode(bytes: Bytes) -> Option<Decoded> {
    if bytes.len() < HEADER || bytes[0] != VERSION {
        return None;
    }
    let origin = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
    let payload = bytes.slice(HEADER..);
    let message = match bytes[1] {
        TEXT => Message::Text(Utf8Bytes::try_from(payload).ok()?),
        BINARY => Message::Binary(payload),
        _ => return None,
    };
    Some(Decoded { origin, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_with_their_origin() {
        for msg in [Message::text("héllo"), Message::binary(vec![0, 255, 7])] {
            let bytes = encode(0xfeed, 9, &msg).unwrap();
            let decoded = decode(bytes).unwrap();
            assert_eq!(decoded.origin, 0xfeed);
            assert_eq!(decoded.message, msg);
        }
        assert!(encode(1, 1, &Message::ping("x")).is_none());
    }

    #[test]
    fn foreign_or_broken_payloads_are_ignored() {
        assert!(decode(Bytes::from_static(b"hello")).is_none());
        let mut bad = encode(1, 1, &Message::text("ok")).unwrap().to_vec();
        bad.push(0xff);
        assert!(decode(Bytes::from(bad)).is_none());
    }

    #[test]
    fn channels_map_back_to_topics() {
        for t in [Topic::Everyone, Topic::Room("lobby"), Topic::Room("a:b")] {
            assert_eq!(topic("p:", &channel("p:", t)), Some(t));
        }
        assert_eq!(topic("p:", "q:all"), None);
    }
}
