//! Broadcast and presence beyond one process: a [`Backplane`] carries what
//! a [`Hub`](crate::handler::Hub) broadcasts to the hubs of other server
//! instances ("nodes"), and counts their members.
//!
//! Without a backplane (the default), a hub is one node on its own and
//! broadcast costs what it always did. With one, set through
//! [`Options::backplane`](crate::handler::Options::backplane):
//!
//! - every [`Clients::broadcast`](crate::handler::Clients::broadcast) and
//!   room broadcast is delivered to the local members at once and handed to
//!   the backplane, which delivers it on every other node that has members
//!   of that room; "everyone" is a room of its own ([`Topic::Everyone`]);
//! - a node asks for a room's traffic only while it has local members
//!   ([`Backplane::subscribe`] on the first, [`Backplane::unsubscribe`]
//!   after the last);
//! - [`Clients::len`](crate::handler::Clients::len) and
//!   [`Room::len`](crate::handler::Room::len) add the members of the other
//!   nodes ([`Backplane::remote_len`]).
//!
//! Two backplanes ship: [`InProcessBus`] joins several hubs of one process
//! (tests, several listeners), and `RedisBackplane` (feature `redis`) joins
//! processes through Redis pub/sub, Redis Cluster included.
//!
//! ## Delivery guarantee
//!
//! Only text and binary messages cross nodes (pings and closes stay local).
//! Each node delivers a message **at most once** to each of its members: the
//! origin node delivers locally when the message is broadcast and ignores
//! its own copy coming back; every other node delivers what it receives
//! once. Messages from one publisher to one room arrive in the order they
//! were broadcast, on every node. A message is lost, never repeated, when
//! the transport loses it (Redis pub/sub keeps nothing for a subscriber
//! that is disconnected or not yet subscribed), and a node that just got its
//! first member of a room receives that room's traffic from the moment its
//! subscription is in place.

mod in_process;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Arc;

pub use in_process::{InProcess, InProcessBus};
#[cfg(feature = "redis")]
pub use redis::{RedisBackplane, RedisConfig, RedisError, RedisStats};

use crate::message::Message;

/// Who a broadcast goes to: everyone, or the members of one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic<'a> {
    /// Every client of every node ([`Clients::broadcast`](crate::handler::Clients::broadcast)).
    Everyone,
    /// The members of a room ([`Clients::to`](crate::handler::Clients::to)).
    Room(&'a str),
}

/// Carries broadcasts between nodes and counts the members of other nodes.
///
/// The hub calls these methods from WebSocket callbacks and, for
/// `subscribe`/`unsubscribe`, while it holds its registry lock: none may
/// wait for I/O or call back into the hub. Queue the work and do it on a
/// task of your own.
pub trait Backplane: Send + Sync + fmt::Debug + 'static {
    /// Called once by [`Hub::new`](crate::handler::Hub::new): what other
    /// nodes publish is delivered to `local`, which also reports the local
    /// member counts. A backplane serves one hub.
    fn attach(&self, local: Arc<dyn Local>);

    /// Sends `msg` (text or binary) to the other nodes' members of `topic`.
    /// Never waits: a message that cannot be sent now is dropped (and
    /// counted, where the backplane counts).
    fn publish(&self, topic: Topic<'_>, msg: &Message);

    /// This node has members of `topic` now (the first one arrived).
    fn subscribe(&self, topic: Topic<'_>);

    /// This node has no members of `topic` any more.
    fn unsubscribe(&self, topic: Topic<'_>);

    /// How many members `topic` has on the other nodes (as last known).
    fn remote_len(&self, topic: Topic<'_>) -> usize;
}

/// The local side of a node, as a [`Backplane`] sees it.
pub trait Local: Send + Sync {
    /// Delivers a message another node published to the local members of
    /// `topic` (never publishes it again).
    fn deliver(&self, topic: Topic<'_>, msg: Message);

    /// How many local members `topic` has.
    fn count(&self, topic: Topic<'_>) -> usize;

    /// Calls `each` with every topic that has local members, and their count.
    fn for_each_count(&self, each: &mut dyn FnMut(Topic<'_>, usize));
}
