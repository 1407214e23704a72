//! [`RedisBackplane`]: nodes joined through Redis pub/sub (feature `redis`).
//!
//! Per process: one subscriber connection and one multiplexed publisher
//! connection (which also carries presence), whatever the number of
//! clients and rooms. Each node subscribes to a room's channel only while
//! it has members in that room, so room traffic reaches only the nodes that
//! need it. With [`RedisConfig::cluster`], channels are sharded
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): a room's traffic goes through the
//! shard that owns its channel.
//!
//! ## Guarantees
//!
//! One Redis message per broadcast, whatever the number of recipients. A
//! node delivers each message at most once to each local member (its own
//! broadcasts at once, locally, ignoring their echo); messages from one
//! node to one room keep their order on every node. Redis pub/sub is
//! at-most-once: what is published while a node is disconnected from
//! Redis, or before its subscription to a room is in place, is lost for
//! that node, never replayed.
//!
//! ## Presence
//!
//! Every heartbeat ([`RedisConfig::heartbeat`], 1 s) each node writes its
//! member counts to a Redis hash that expires after
//! [`RedisConfig::presence_ttl`] (3 s) and reads the other nodes' hashes.
//! [`Clients::len`](crate::handler::Clients::len) is this node's exact
//! count plus the others' as last read: at most two heartbeats old, and the
//! members of a node that crashed are gone within `presence_ttl +
//! heartbeat` (4 s by default). While Redis is away a node counts only its
//! own members.
//!
//! ## Failures
//!
//! Redis unreachable at start or lost later: the node keeps serving and
//! broadcasting locally; it reconnects with exponential backoff
//! ([`RedisConfig::reconnect_backoff`]) and restores every subscription.
//! Publishing never waits: broadcasts join a bounded queue, and what cannot
//! be published (queue full, Redis away or slower than
//! [`RedisConfig::response_timeout`]) is dropped and counted in
//! [`RedisStats`]. So is a broadcast larger than
//! [`RedisConfig::max_payload`] (1 MiB), which would overflow Redis's
//! output buffer for subscribers. Nothing here panics or grows without
//! bound.
//!
//! Redis refusing a command on a working connection (`-OOM` when full at
//! `maxmemory` with `noeviction`, `-LOADING`, `-NOPERM`) is not a lost
//! connection: nothing is reconnected and pub/sub, which Redis still
//! serves, goes on. (`-READONLY` is: the connection reaches a replica, a
//! primary demoted by a failover, and a new one finds the primary.) Presence and refused subscriptions are tried again at
//! the next heartbeat; each refusal is counted in
//! [`RedisStats::redis_errors`].

mod config;
mod conn;
mod tasks;
mod wire;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};

pub use config::{RedisConfig, RedisError};

use super::{Backplane, Local, Topic};
use crate::message::Message;
use conn::Target;

/// A [`Backplane`] through Redis: give a clone to
/// [`Options::backplane`](crate::handler::Options::backplane) and keep one
/// to read its [`stats`](Self::stats).
///
/// ```no_run
/// use tower_ws::backplane::{RedisBackplane, RedisConfig};
/// use tower_ws::handler::{Handler, Hub, Options};
///
/// struct Chat;
/// impl Handler for Chat {}
///
/// # async fn run() -> Result<(), tower_ws::backplane::RedisError> {
/// let redis = RedisBackplane::new(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let hub = Hub::new(Chat, Options::default().backplane(redis.clone()));
/// // ... serve the hub; later:
/// println!("{:?}", redis.stats());
/// # let _ = hub; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
    /// Dropping the last handle stops the tasks.
    _stop: Arc<watch::Sender<()>>,
}

struct Inner {
    config: RedisConfig,
    node: u64,
    seq: AtomicU64,
    local: OnceLock<Arc<dyn Local>>,
    publish: mpsc::Sender<(String, Bytes)>,
    /// Channels with local members, and a wake-up for the subscriber.
    wanted: Mutex<HashSet<String>>,
    wanted_changed: Notify,
    /// The other nodes' member counts, as of the last heartbeat.
    remote: Mutex<Remote>,
    stats: Counters,
}

#[derive(Default)]
struct Remote {
    everyone: usize,
    rooms: HashMap<String, usize>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_dropped: AtomicU64,
    publish_too_large: AtomicU64,
    received: AtomicU64,
    receive_dropped: AtomicU64,
    reconnects: AtomicU64,
    redis_errors: AtomicU64,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    subscriptions: AtomicUsize,
}

/// What a [`RedisBackplane`] did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Messages published to Redis (one per broadcast).
    pub published: u64,
    /// Broadcasts that could not be published: queue full, Redis away or
    /// too slow, refused, or larger than
    /// [`RedisConfig::max_payload`]. The other nodes missed them.
    pub publish_dropped: u64,
    /// Of `publish_dropped`, the broadcasts larger than
    /// [`RedisConfig::max_payload`], kept off Redis so as not to overflow
    /// its subscribers' output buffers. Raise the limit (and Redis's
    /// `client-output-buffer-limit pubsub`) or send less.
    pub publish_too_large: u64,
    /// Messages from other nodes received and delivered locally.
    pub received: u64,
    /// Messages from other nodes dropped because the receive queue was full.
    pub receive_dropped: u64,
    /// Connections re-established after a loss (publisher and subscriber).
    pub reconnects: u64,
    /// Commands Redis answered with an error on a working connection:
    /// `-OOM` (at `maxmemory` with `noeviction`), `-LOADING`, `-NOPERM`...
    /// These do not cost the connection: the command is tried
    /// again at the next heartbeat (presence, subscriptions) or the message
    /// is dropped and counted in `publish_dropped` (a refused publish). If
    /// this grows, look at the Redis server's state and the ACL of the
    /// backplane's user.
    pub redis_errors: u64,
    /// Whether the publisher connection is up.
    pub publisher_connected: bool,
    /// Whether the subscriber connection is up.
    pub subscriber_connected: bool,
    /// Channels this node is subscribed to now.
    pub subscriptions: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; recover all the same.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RedisBackplane {
    /// Starts the backplane's connection tasks on the current tokio
    /// runtime and returns at once: connecting, and reconnecting whenever
    /// Redis is away, happens in the background.
    ///
    /// # Errors
    ///
    /// An invalid URL, or no tokio runtime to run on.
    pub fn new(config: RedisConfig) -> Result<Self, RedisError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            RedisError::new("RedisBackplane::new must be called within a tokio runtime")
        })?;
        let (push, pushes) = mpsc::channel(config.receive_queue);
        let (publish, outgoing) = mpsc::channel(config.publish_queue);
        let inner = Arc::new(Inner {
            node: tasks::random_node_id(),
            seq: AtomicU64::new(0),
            local: OnceLock::new(),
            publish,
            wanted: Mutex::new(HashSet::new()),
            wanted_changed: Notify::new(),
            remote: Mutex::new(Remote::default()),
            stats: Counters::default(),
            config,
        });
        let counted = tasks::PushQueue::new(push, inner.clone());
        let subscriber = Target::new(&inner.config, Some(counted.clone()))?;
        let publisher = Target::new(&inner.config, None::<tasks::PushQueue>)?;
        let (stop, stopped) = watch::channel(());
        let link = Arc::new(tasks::Link::default());
        runtime.spawn(tasks::subscriber(
            inner.clone(),
            subscriber,
            counted,
            pushes,
            stopped.clone(),
        ));
        runtime.spawn(tasks::publisher(
            inner.clone(),
            link.clone(),
            outgoing,
            stopped.clone(),
        ));
        runtime.spawn(tasks::heartbeat(inner.clone(), publisher, link, stopped));
        Ok(RedisBackplane {
            inner,
            _stop: Arc::new(stop),
        })
    }

    /// This node's id, random per backplane; it tags every message this
    /// node publishes.
    pub fn node_id(&self) -> u64 {
        self.inner.node
    }

    /// The counters so far.
    pub fn stats(&self) -> RedisStats {
        let s = &self.inner.stats;
        RedisStats {
            published: s.published.load(Ordering::Relaxed),
            publish_dropped: s.publish_dropped.load(Ordering::Relaxed),
            publish_too_large: s.publish_too_large.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            receive_dropped: s.receive_dropped.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            redis_errors: s.redis_errors.load(Ordering::Relaxed),
            publisher_connected: s.publisher_up.load(Ordering::Relaxed),
            subscriber_connected: s.subscriber_up.load(Ordering::Relaxed),
            subscriptions: s.subscriptions.load(Ordering::Relaxed),
        }
    }
}

impl Backplane for RedisBackplane {
    fn attach(&self, local: Arc<dyn Local>) {
        let _ = self.inner.local.set(local);
    }

    fn publish(&self, topic: Topic<'_>, msg: &Message) {
        let inner = &self.inner;
        if msg.as_payload().len() > inner.config.max_payload {
            // Over Redis's pub/sub output-buffer limit, it would disconnect
            // every node's subscriber.
            inner
                .stats
                .publish_too_large
                .fetch_add(1, Ordering::Relaxed);
            inner.stats.publish_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = inner.seq.fetch_add(1, Ordering::Relaxed);
        let Some(payload) = wire::encode(inner.node, seq, msg) else {
            return;
        };
        let channel = wire::channel(&inner.config.prefix, topic);
        if inner.publish.try_send((channel, payload)).is_err() {
            inner.stats.publish_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn subscribe(&self, topic: Topic<'_>) {
        let channel = wire::channel(&self.inner.config.prefix, topic);
        if lock(&self.inner.wanted).insert(channel) {
            self.inner.wanted_changed.notify_one();
        }
    }

    fn unsubscribe(&self, topic: Topic<'_>) {
        let channel = wire::channel(&self.inner.config.prefix, topic);
        if lock(&self.inner.wanted).remove(&channel) {
            self.inner.wanted_changed.notify_one();
        }
    }

    fn remote_len(&self, topic: Topic<'_>) -> usize {
        let remote = lock(&self.inner.remote);
        match topic {
            Topic::Everyone => remote.everyone,
            Topic::Room(room) => remote.rooms.get(room).copied().unwrap_or(0),
        }
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &format_args!("{:016x}", self.inner.node))
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}
