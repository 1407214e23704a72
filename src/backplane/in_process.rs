//! [`InProcessBus`]: a backplane between hubs of one process.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use super::{Backplane, Local, Topic};
use crate::message::Message;

/// Joins several [`Hub`](crate::handler::Hub)s of one process into one set
/// of nodes, as a Redis backplane joins processes: broadcast, rooms and
/// presence behave the same, with synchronous delivery and nothing lost.
/// Useful for tests and for serving several listeners from one process.
///
/// ```
/// use tower_ws::backplane::InProcessBus;
/// use tower_ws::handler::{Handler, Hub, Options};
///
/// struct Chat;
/// impl Handler for Chat {}
///
/// let bus = InProcessBus::new();
/// let a = Hub::new(Chat, Options::default().backplane(bus.node()));
/// let b = Hub::new(Chat, Options::default().backplane(bus.node()));
/// a.clients().broadcast("reaches the clients of a and of b");
/// # let _ = b;
/// ```
#[derive(Clone, Default)]
pub struct InProcessBus {
    nodes: Arc<Mutex<Vec<Weak<Slot>>>>,
}

/// One node of an [`InProcessBus`]; give it to one hub with
/// [`Options::backplane`](crate::handler::Options::backplane). Clones are
/// the same node (keep one to look at it); it leaves the bus when the last
/// clone is dropped.
#[derive(Clone, Debug)]
pub struct InProcess {
    bus: InProcessBus,
    me: Arc<Slot>,
}

#[derive(Default)]
struct Slot {
    local: OnceLock<Arc<dyn Local>>,
    /// Topics with local members: "everyone" is `None`, rooms by name.
    topics: Mutex<HashSet<Option<String>>>,
}

fn key(topic: Topic<'_>) -> Option<String> {
    match topic {
        Topic::Everyone => None,
        Topic::Room(name) => Some(name.to_owned()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; recover all the same.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InProcessBus {
    /// A bus without nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new node on this bus.
    pub fn node(&self) -> InProcess {
        let me = Arc::new(Slot::default());
        let mut nodes = lock(&self.nodes);
        nodes.retain(|slot| slot.strong_count() > 0);
        nodes.push(Arc::downgrade(&me));
        drop(nodes);
        InProcess {
            bus: self.clone(),
            me,
        }
    }

    /// The other nodes, attached to a hub (a snapshot, taken without
    /// holding the bus lock afterwards).
    fn others(&self, me: &Arc<Slot>) -> Vec<Arc<dyn Local>> {
        lock(&self.nodes)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|slot| !Arc::ptr_eq(slot, me))
            .filter_map(|slot| slot.local.get().cloned())
            .collect()
    }
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus")
            .field("nodes", &lock(&self.nodes).len())
            .finish()
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("topics", &lock(&self.topics).len())
            .finish_non_exhaustive()
    }
}

impl Backplane for InProcess {
    fn attach(&self, local: Arc<dyn Local>) {
        let _ = self.me.local.set(local);
    }

    fn publish(&self, topic: Topic<'_>, msg: &Message) {
        if msg.is_text() || msg.is_binary() {
            // A node without members of `topic` delivers to no one anyway.
            for other in self.bus.others(&self.me) {
                other.deliver(topic, msg.clone());
            }
        }
    }

    fn subscribe(&self, topic: Topic<'_>) {
        lock(&self.me.topics).insert(key(topic));
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        lock(&self.me.topics).remove(&key(topic));
    }

    fn remote_len(&self, topic: Topic<'_>) -> usize {
        self.bus
            .others(&self.me)
            .iter()
            .map(|other| other.count(topic))
            .sum()
    }
}

impl InProcess {
    /// Whether this node has asked for `topic`'s traffic (it has local
    /// members), as the hub told it.
    pub fn is_subscribed(&self, topic: Topic<'_>) -> bool {
        lock(&self.me.topics).contains(&key(topic))
    }
}
