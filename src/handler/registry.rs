//! [`Clients`]: the registry of connected clients and their rooms, for
//! broadcast, presence and graceful shutdown.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::client::Client;
use super::room::Room;
use crate::backplane::{Backplane, Local, Topic};
use crate::message::{CloseCode, CloseFrame, Message};
use crate::metrics::{HubMetrics, HubStats};
use crate::stream::SharedMessage;

/// Every client connected to one [`Hub`](super::Hub): python-WS's
/// `self.clients`, plus rooms, broadcast and graceful shutdown.
///
/// Cheap to clone; every clone is the same registry. A client is in it from
/// just before `on_open` until just before `on_close`, and in a room from
/// [`Client::join`] until [`Client::leave`] or the end of its connection.
///
/// With a [`Backplane`] ([`Options::backplane`](super::Options::backplane)),
/// broadcasts also reach the clients of the other nodes and
/// [`len`](Self::len) counts them; [`local_len`](Self::local_len) counts
/// this node's.
#[derive(Clone)]
pub struct Clients {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
    shutting_down: AtomicBool,
    /// How many clients are connected here, to wait for zero.
    count: watch::Sender<usize>,
    backplane: Option<Arc<dyn Backplane>>,
    metrics: HubMetrics,
}

#[derive(Default)]
struct State {
    /// Every client, as before rooms existed: broadcast to everyone walks
    /// this map alone.
    everyone: BTreeMap<u64, Client>,
    rooms: HashMap<Arc<str>, BTreeMap<u64, Client>>,
    /// The rooms of each client that is in any.
    joined: HashMap<u64, Vec<Arc<str>>>,
    /// Members of everyone and of rooms as broadcast walks them, built on
    /// the first broadcast after a change: a broadcast to unchanged members
    /// holds the lock for one `Arc` clone, not one per member, and
    /// allocates nothing.
    snapshots: HashMap<Option<Arc<str>>, Arc<[Client]>>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new(None)
    }
}

impl Clients {
    pub(super) fn new(backplane: Option<Arc<dyn Backplane>>) -> Self {
        let clients = Clients {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                next_id: AtomicU64::new(1),
                shutting_down: AtomicBool::new(false),
                count: watch::Sender::new(0),
                backplane,
                metrics: HubMetrics::default(),
            }),
        };
        if let Some(backplane) = &clients.shared.backplane {
            // Weak: the backplane lives in the registry it delivers to.
            backplane.attach(Arc::new(LocalNode(Arc::downgrade(&clients.shared))));
        }
        clients
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    pub(super) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(super) fn insert(&self, client: Client) {
        let mut state = self.state();
        state.snapshots.remove(&None);
        state.everyone.insert(client.id(), client);
        if state.everyone.len() == 1 {
            self.subscribe(Topic::Everyone);
        }
        self.shared.count.send_replace(state.everyone.len());
    }

    /// Takes the client out of the registry and out of its rooms.
    pub(super) fn remove(&self, id: u64) {
        let mut state = self.state();
        if state.everyone.remove(&id).is_none() {
            return;
        }
        state.snapshots.remove(&None);
        for room in state.joined.remove(&id).unwrap_or_default() {
            state.leave_room(&room, id, self.shared.backplane.as_deref());
        }
        if state.everyone.is_empty() {
            self.unsubscribe(Topic::Everyone);
        }
        self.shared.count.send_replace(state.everyone.len());
    }

    /// Puts a registered client in `room`; false if it was in it already
    /// or is not registered (its connection ended).
    pub(super) fn join(&self, client: &Client, room: &str) -> bool {
        let mut state = self.state();
        let state = &mut *state;
        if !state.everyone.contains_key(&client.id()) {
            return false;
        }
        let joined = state.joined.entry(client.id()).or_default();
        if joined.iter().any(|r| &**r == room) {
            return false;
        }
        let name = match state.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => {
                let name: Arc<str> = Arc::from(room);
                state.rooms.insert(name.clone(), BTreeMap::new());
                self.subscribe(Topic::Room(room));
                name
            }
        };
        if let Some(members) = state.rooms.get_mut(room) {
            members.insert(client.id(), client.clone());
        }
        state.snapshots.remove(&Some(name.clone()));
        joined.push(name);
        true
    }

    /// Takes the client out of `room`; false if it was not in it.
    pub(super) fn leave(&self, client: &Client, room: &str) -> bool {
        let mut state = self.state();
        let Some(joined) = state.joined.get_mut(&client.id()) else {
            return false;
        };
        let Some(at) = joined.iter().position(|r| &**r == room) else {
            return false;
        };
        joined.swap_remove(at);
        if joined.is_empty() {
            state.joined.remove(&client.id());
        }
        state.leave_room(room, client.id(), self.shared.backplane.as_deref());
        true
    }

    /// The rooms `client` is in.
    pub(super) fn rooms_of(&self, client: &Client) -> Vec<String> {
        let state = self.state();
        state.joined.get(&client.id()).map_or(Vec::new(), |rooms| {
            rooms.iter().map(|r| r.to_string()).collect()
        })
    }

    fn subscribe(&self, topic: Topic<'_>) {
        if let Some(backplane) = &self.shared.backplane {
            backplane.subscribe(topic);
        }
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        if let Some(backplane) = &self.shared.backplane {
            backplane.unsubscribe(topic);
        }
    }

    pub(super) fn metrics(&self) -> &HubMetrics {
        &self.shared.metrics
    }

    pub(super) fn stats(&self) -> HubStats {
        let clients = *self.shared.count.borrow();
        self.shared.metrics.snapshot(clients as u64)
    }

    pub(super) fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }

    /// How many clients are connected, on every node: this node's
    /// ([`local_len`](Self::local_len)) plus, with a backplane, the other
    /// nodes' as last reported (see the backplane for how fresh that is).
    pub fn len(&self) -> usize {
        self.local_len() + self.remote_len(Topic::Everyone)
    }

    /// How many clients are connected to this node.
    pub fn local_len(&self) -> usize {
        self.state().everyone.len()
    }

    fn remote_len(&self, topic: Topic<'_>) -> usize {
        self.shared
            .backplane
            .as_ref()
            .map_or(0, |backplane| backplane.remote_len(topic))
    }

    /// Whether no client is connected (on any node).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client of this node with this [`id`](Client::id), if connected.
    pub fn get(&self, id: u64) -> Option<Client> {
        self.state().everyone.get(&id).cloned()
    }

    /// The clients connected to this node, in connection order (a snapshot).
    pub fn to_vec(&self) -> Vec<Client> {
        self.shared.members(Topic::Everyone).to_vec()
    }

    /// The members of `room`, to broadcast to them or count them.
    ///
    /// ```no_run
    /// # fn f(client: &tower_ws::handler::Client) {
    /// client.join("lobby");
    /// let lobby = client.clients().to("lobby");
    /// lobby.broadcast_except(format!("{} joined", client.id()), client);
    /// println!("{} in the lobby", lobby.len());
    /// # }
    /// ```
    pub fn to<'a>(&'a self, room: &'a str) -> Room<'a> {
        Room::new(self, room)
    }

    /// Queues `msg` for every open client and returns to how many clients
    /// of this node it was queued. The message is converted once and its
    /// payload shared, not copied; each connection frames (and compresses)
    /// it itself. With a backplane, a text or binary message also goes to
    /// the clients of every other node.
    ///
    /// Never waits: a client whose queue is full gets the
    /// [`Overflow`](super::Overflow) policy, the others are not held up.
    pub fn broadcast(&self, msg: impl Into<Message>) -> usize {
        self.broadcast_to(Topic::Everyone, msg.into(), None)
    }

    /// As [`broadcast`](Self::broadcast), to every client but `except`
    /// (typically the sender).
    pub fn broadcast_except(&self, msg: impl Into<Message>, except: &Client) -> usize {
        self.broadcast_to(Topic::Everyone, msg.into(), Some(except))
    }

    pub(super) fn broadcast_to(
        &self,
        topic: Topic<'_>,
        msg: Message,
        except: Option<&Client>,
    ) -> usize {
        self.shared.metrics.broadcast();
        let queued = self.shared.send_local(topic, &msg, except);
        if let Some(backplane) = &self.shared.backplane {
            backplane.publish(topic, &msg);
        }
        queued
    }

    pub(super) fn room_len(&self, room: &str) -> usize {
        self.room_local_len(room) + self.remote_len(Topic::Room(room))
    }

    pub(super) fn room_local_len(&self, room: &str) -> usize {
        self.state().rooms.get(room).map_or(0, BTreeMap::len)
    }

    pub(super) fn room_members(&self, room: &str) -> Vec<Client> {
        self.shared.members(Topic::Room(room)).to_vec()
    }

    /// Graceful shutdown: closes every client with 1001 Going Away ("server
    /// shutting down"), refuses clients that connect from now on (closed
    /// with 1001 right after their handshake, without callbacks), and waits
    /// until every connection is over or `deadline` passed.
    ///
    /// Returns how many connections of this node were still open at the
    /// deadline (0 when all closed in time); those end on their own within
    /// their close timeout. Stop accepting TCP connections before or after,
    /// as suits the server loop.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.shared.shutting_down.store(true, Ordering::Release);
        for client in self.to_vec() {
            client.request_close(
                CloseFrame::new(CloseCode::AWAY, "server shutting down"),
                true,
            );
        }
        let mut count = self.shared.count.subscribe();
        let all_closed = count.wait_for(|n| *n == 0);
        match tokio::time::timeout(deadline, all_closed).await {
            Ok(_) => 0,
            Err(_) => self.local_len(),
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; recover all the same.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The local members of `topic` (a snapshot).
    fn members(&self, topic: Topic<'_>) -> Arc<[Client]> {
        let mut state = self.state();
        let state = &mut *state;
        let (key, members) = match topic {
            Topic::Everyone => (None, &state.everyone),
            Topic::Room(room) => match state.rooms.get_key_value(room) {
                Some((name, members)) => (Some(name.clone()), members),
                None => return Arc::new([]),
            },
        };
        state
            .snapshots
            .entry(key)
            .or_insert_with(|| members.values().cloned().collect())
            .clone()
    }

    /// Queues `msg` for the local members of `topic`; returns for how many.
    fn send_local(&self, topic: Topic<'_>, msg: &Message, except: Option<&Client>) -> usize {
        // Send outside the lock: a send may close a client, which unregisters.
        let members = self.members(topic);
        // The payload is shared by every queue: the memory budget counts it
        // once, for as long as any connection holds it.
        let msg = match members.first() {
            Some(c) => SharedMessage::new(
                c.shared.charge.share(msg.clone()),
                members.len() - usize::from(except.is_some()),
                &c.shared.charge,
            ),
            None => return 0,
        };
        let (mut sent, mut written) = (0, 0);
        for client in members.iter().filter(|c| except != Some(*c)) {
            if let Ok(now) = client.send_shared(&msg) {
                sent += 1;
                written += usize::from(now);
            }
        }
        self.metrics.written_directly(written as u64);
        sent
    }
}

impl State {
    fn leave_room(&mut self, room: &str, id: u64, backplane: Option<&dyn Backplane>) {
        let Some(name) = self.rooms.get_key_value(room).map(|(name, _)| name.clone()) else {
            return;
        };
        self.snapshots.remove(&Some(name));
        let Some(members) = self.rooms.get_mut(room) else {
            return;
        };
        members.remove(&id);
        if members.is_empty() {
            self.rooms.remove(room);
            if let Some(backplane) = backplane {
                backplane.unsubscribe(Topic::Room(room));
            }
        }
    }
}

/// The registry as its backplane sees it.
struct LocalNode(Weak<Shared>);

impl Local for LocalNode {
    fn deliver(&self, topic: Topic<'_>, msg: Message) {
        if let Some(shared) = self.0.upgrade() {
            shared.send_local(topic, &msg, None);
        }
    }

    fn count(&self, topic: Topic<'_>) -> usize {
        let Some(shared) = self.0.upgrade() else {
            return 0;
        };
        let state = shared.state();
        match topic {
            Topic::Everyone => state.everyone.len(),
            Topic::Room(room) => state.rooms.get(room).map_or(0, BTreeMap::len),
        }
    }

    fn for_each_count(&self, each: &mut dyn FnMut(Topic<'_>, usize)) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let state = shared.state();
        if !state.everyone.is_empty() {
            each(Topic::Everyone, state.everyone.len());
        }
        for (room, members) in &state.rooms {
            each(Topic::Room(room), members.len());
        }
    }
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("local_len", &self.local_len())
            .field("rooms", &self.state().rooms.len())
            .field("shutting_down", &self.is_shutting_down())
            .field("backplane", &self.shared.backplane)
            .finish()
    }
}
