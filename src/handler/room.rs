//! [`Room`]: the members of one room, for broadcast and presence.

use super::client::Client;
use super::registry::Clients;
use crate::backplane::Topic;
use crate::message::Message;

/// The members of one room of a hub, from [`Clients::to`]: clients enter
/// with [`Client::join`] and leave with [`Client::leave`] or when their
/// connection ends. A room exists while it has members; broadcasting to an
/// empty room reaches no one.
///
/// With a [`Backplane`](crate::backplane::Backplane), a room spans every
/// node: broadcasts reach its members on every node, and
/// [`len`](Self::len) counts them all.
///
/// ```no_run
/// use tower_ws::handler::{Client, Handler};
/// use tower_ws::Message;
///
/// struct Rooms;
///
/// impl Handler for Rooms {
///     async fn on_open(&self, client: &Client) {
///         // `/ws?room=blue` joins "blue".
///         let room = client.request().uri.query().and_then(|q| q.strip_prefix("room="));
///         client.join(room.unwrap_or("lobby"));
///     }
///
///     async fn on_message(&self, msg: Message, client: &Client) {
///         for room in client.rooms() {
///             client.clients().to(&room).broadcast(msg.clone());
///         }
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Room<'a> {
    clients: &'a Clients,
    name: &'a str,
}

impl<'a> Room<'a> {
    pub(super) fn new(clients: &'a Clients, name: &'a str) -> Self {
        Room { clients, name }
    }

    /// The room's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// Queues `msg` for every member of the room and returns to how many
    /// members of this node it was queued. As
    /// [`Clients::broadcast`]: converted once, payload shared, never waits;
    /// with a backplane, text and binary messages reach the members on the
    /// other nodes too.
    pub fn broadcast(&self, msg: impl Into<Message>) -> usize {
        self.clients
            .broadcast_to(Topic::Room(self.name), msg.into(), None)
    }

    /// As [`broadcast`](Self::broadcast), to every member but `except`.
    pub fn broadcast_except(&self, msg: impl Into<Message>, except: &Client) -> usize {
        self.clients
            .broadcast_to(Topic::Room(self.name), msg.into(), Some(except))
    }

    /// How many members the room has on every node (this node's plus, with
    /// a backplane, the others' as last reported).
    pub fn len(&self) -> usize {
        self.clients.room_len(self.name)
    }

    /// How many members the room has on this node.
    pub fn local_len(&self) -> usize {
        self.clients.room_local_len(self.name)
    }

    /// Whether the room has no member on any node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The members on this node, in connection order (a snapshot).
    pub fn to_vec(&self) -> Vec<Client> {
        self.clients.room_members(self.name)
    }
}
