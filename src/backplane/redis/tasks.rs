//! The backplane's three tasks: the subscriber (receives and delivers), the
//! publisher (drains the publish queue) and the heartbeat (keeps the
//! publisher connection and presence).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval, sleep, timeout};

use super::conn::{Conn, Target};
use super::{Inner, Remote, lock, wire};

/// Messages handed to Redis in one round trip at most.
const BATCH: usize = 64;

/// Whether `error` means the connection itself is gone (I/O error, time
/// out, or an error redis-rs says only a new connection cures) or reaches
/// the wrong server (`-READONLY`), as opposed to Redis refusing one command
/// (`-OOM` at `maxmemory`, `-LOADING`, `-NOPERM`...) on a connection that
/// still works. Only the former tears a connection down: reconnecting
/// cures nothing when Redis answers, and would drop what the connection
/// still carries.
fn connection_lost(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_timeout() || error.is_unrecoverable_error() || read_only(error)
}

/// `-READONLY`: the connection reaches a replica, a primary demoted by a
/// failover that moved its DNS name (managed Redis) or by `REPLICAOF`. A
/// PUBLISH there reaches none of the primary's subscribers, so a new
/// connection, which finds the primary, is the cure. Inside the presence
/// `MULTI` it comes as `EXECABORT`, with the `READONLY` among its errors.
fn read_only(error: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    error.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || error.clone().into_server_errors().is_some_and(|errors| {
            errors
                .iter()
                .any(|(_, e)| e.kind() == Some(ServerErrorKind::ReadOnly))
        })
}

/// A random id for this node.
pub(super) fn random_node_id() -> u64 {
    RandomState::new().hash_one((std::process::id(), SystemTime::now()))
}

/// Where the subscriber connection puts what Redis pushes: a bounded
/// queue; a message that does not fit is dropped and counted.
#[derive(Clone)]
pub(super) struct PushQueue {
    queue: mpsc::Sender<PushInfo>,
    inner: Arc<Inner>,
}

impl PushQueue {
    pub(super) fn new(queue: mpsc::Sender<PushInfo>, inner: Arc<Inner>) -> Self {
        PushQueue { queue, inner }
    }
}

impl AsyncPushSender for PushQueue {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match self.queue.try_send(info) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(info)) => {
                if matches!(info.kind, PushKind::Message | PushKind::SMessage) {
                    let dropped = &self.inner.stats.receive_dropped;
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError),
        }
    }
}

/// The publisher connection, shared by the publisher and the heartbeat
/// (which opens it again when it is lost).
#[derive(Default)]
pub(super) struct Link {
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    conn: Option<Conn>,
    /// Which connection `conn` is: one more each time one is set.
    generation: u64,
}

impl Link {
    /// The connection and its generation, to hand to [`lost`](Self::lost).
    fn get(&self) -> Option<(u64, Conn)> {
        let state = lock(&self.state);
        state.conn.clone().map(|conn| (state.generation, conn))
    }

    /// Sets a new connection; returns its generation.
    fn set(&self, inner: &Inner, conn: Conn) -> u64 {
        let mut state = lock(&self.state);
        state.conn = Some(conn);
        state.generation += 1;
        inner.stats.publisher_up.store(true, Ordering::Relaxed);
        state.generation
    }

    /// Connection `generation` is lost. An error from a connection already
    /// replaced (a publish that timed out on it while the heartbeat opened
    /// a new one) leaves the new one alone.
    fn lost(&self, inner: &Inner, generation: u64) {
        let mut state = lock(&self.state);
        if state.generation == generation && state.conn.take().is_some() {
            inner.stats.publisher_up.store(false, Ordering::Relaxed);
        }
    }
}

/// Waits `duration`; false if the backplane was dropped meanwhile.
async fn pause(duration: Duration, stop: &mut watch::Receiver<()>) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        () = sleep(duration) => true,
    }
}

/// Keeps a subscriber connection, subscribed to the channels with local
/// members, and delivers what arrives.
pub(super) async fn subscriber(
    inner: Arc<Inner>,
    target: Target,
    push: PushQueue,
    mut pushes: mpsc::Receiver<PushInfo>,
    mut stop: watch::Receiver<()>,
) {
    let config = &inner.config;
    let stats = &inner.stats;
    let mut backoff = config.reconnect_min;
    let mut connected_before = false;
    loop {
        let connect = target.connect(config, Some(push.clone()));
        let connected = tokio::select! {
            _ = stop.changed() => return,
            connected = connect => connected,
        };
        let Ok(mut conn) = connected else {
            if !pause(backoff, &mut stop).await {
                return;
            }
            backoff = (backoff * 2).min(config.reconnect_max);
            continue;
        };
        backoff = config.reconnect_min;
        if connected_before {
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        connected_before = true;
        stats.subscriber_up.store(true, Ordering::Relaxed);
        // Pushes of the lost connection are stale; drop them.
        while pushes.try_recv().is_ok() {}
        let mut subscribed = HashSet::new();
        let mut ping = interval(config.heartbeat);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dirty = true;
        let mut incomplete = false;
        loop {
            if dirty {
                match sync(&inner, &mut conn, &mut subscribed).await {
                    Ok(complete) => incomplete = !complete,
                    Err(_) => break,
                }
            }
            dirty = false;
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                () = inner.wanted_changed.notified() => dirty = true,
                _ = ping.tick() => {
                    let ping = redis::cmd("PING");
                    if let Err(error) = conn.query::<Value>(&ping).await {
                        if connection_lost(&error) {
                            break;
                        }
                        // Redis answered (with an error: loading, say):
                        // the connection is alive.
                        refused(&inner, "PING", &error);
                    }
                    // Channels Redis refused are tried again once per
                    // heartbeat.
                    dirty = dirty || incomplete;
                }
                push = pushes.recv() => {
                    let Some(push) = push else { return };
                    let mut pushed = vec![push];
                    // Deliver what else is waiting before looking around again.
                    for _ in 0..BATCH {
                        let Ok(push) = pushes.try_recv() else { break };
                        pushed.push(push);
                    }
                    let mut alive = true;
                    for push in pushed {
                        match deliver(&inner, push, &mut subscribed) {
                            Pushed::Handled => {}
                            Pushed::Unsubscribed => dirty = true,
                            Pushed::Lost => alive = false,
                        }
                    }
                    if !alive {
                        break;
                    }
                }
            }
        }
        stats.subscriber_up.store(false, Ordering::Relaxed);
        stats.subscriptions.store(0, Ordering::Relaxed);
        if !pause(config.reconnect_min, &mut stop).await {
            return;
        }
    }
}

/// Subscribes to the channels wanted and not yet subscribed, and
/// unsubscribes from those no longer wanted. `Ok(false)` when Redis refused
/// some of it (the connection is fine: try again later); an error only when
/// the connection is lost.
async fn sync(
    inner: &Inner,
    conn: &mut Conn,
    subscribed: &mut HashSet<String>,
) -> redis::RedisResult<bool> {
    let wanted = lock(&inner.wanted).clone();
    let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
    let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
    let mut complete = true;
    for channel in add {
        match conn.subscribe(&channel).await {
            Ok(()) => {
                subscribed.insert(channel);
            }
            Err(error) if connection_lost(&error) => return Err(error),
            Err(error) => {
                refused(inner, "SUBSCRIBE", &error);
                complete = false;
            }
        }
    }
    for channel in remove {
        match conn.unsubscribe(&channel).await {
            Ok(()) => {
                subscribed.remove(&channel);
            }
            Err(error) if connection_lost(&error) => return Err(error),
            Err(error) => {
                refused(inner, "UNSUBSCRIBE", &error);
                complete = false;
            }
        }
    }
    let count = subscribed.len();
    inner.stats.subscriptions.store(count, Ordering::Relaxed);
    Ok(complete)
}

/// Counts (and logs, with the `tracing` feature) a command Redis refused
/// on a connection that still works.
fn refused(inner: &Inner, command: &str, error: &redis::RedisError) {
    inner.stats.redis_errors.fetch_add(1, Ordering::Relaxed);
    #[cfg(feature = "tracing")]
    tracing::warn!(%error, "Redis refused {command}; the backplane tries again later");
    #[cfg(not(feature = "tracing"))]
    let _ = (command, error);
}

/// What a push from Redis meant to the subscriber.
enum Pushed {
    /// Delivered, or nothing to do.
    Handled,
    /// Redis dropped a subscription of ours: subscribe again.
    Unsubscribed,
    /// The connection is lost.
    Lost,
}

/// Delivers a pushed message locally, unless it is our own. An
/// unsubscription this node did not ask for (Redis 7 sends one to every
/// subscriber of a shard channel whose slot moved to another shard) takes
/// the channel out of `subscribed`, so that [`sync`] subscribes to it
/// again, on the shard that owns it now; otherwise the room would be cut
/// off for good.
fn deliver(inner: &Inner, push: PushInfo, subscribed: &mut HashSet<String>) -> Pushed {
    match push.kind {
        PushKind::Disconnection => return Pushed::Lost,
        PushKind::Message | PushKind::SMessage => {}
        PushKind::Unsubscribe | PushKind::SUnsubscribe => {
            // Our own unsubscriptions were taken out of `subscribed` when
            // made; one subscribed again since is merely subscribed twice.
            if let Some(Value::BulkString(channel)) = push.data.first() {
                let channel = String::from_utf8_lossy(channel);
                if subscribed.remove(channel.as_ref()) {
                    return Pushed::Unsubscribed;
                }
            }
            return Pushed::Handled;
        }
        _ => return Pushed::Handled,
    }
    let mut data = push.data.into_iter();
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        return Pushed::Handled;
    };
    let Ok(channel) = std::str::from_utf8(&channel) else {
        return Pushed::Handled;
    };
    let Some(topic) = wire::topic(&inner.config.prefix, channel) else {
        return Pushed::Handled;
    };
    let Some(decoded) = wire::decode(Bytes::from(payload)) else {
        return Pushed::Handled;
    };
    if decoded.origin == inner.node {
        // Our own broadcast: delivered locally when it was sent.
        return Pushed::Handled;
    }
    inner.stats.received.fetch_add(1, Ordering::Relaxed);
    if let Some(local) = inner.local.get() {
        local.deliver(topic, decoded.message);
    }
    Pushed::Handled
}

/// Publishes what the handlers queued, in order, a batch per round trip.
pub(super) async fn publisher(
    inner: Arc<Inner>,
    link: Arc<Link>,
    mut outgoing: mpsc::Receiver<(String, Bytes)>,
    mut stop: watch::Receiver<()>,
) {
    let stats = &inner.stats;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        let received = tokio::select! {
            _ = stop.changed() => return,
            n = outgoing.recv_many(&mut batch, BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let sent = match link.get() {
            Some((generation, mut conn)) => {
                let (sent, ok) = publish(&inner, &mut conn, &batch).await;
                if !ok {
                    link.lost(&inner, generation);
                }
                sent
            }
            None => 0,
        };
        stats.published.fetch_add(sent as u64, Ordering::Relaxed);
        let dropped = (batch.len() - sent) as u64;
        stats.publish_dropped.fetch_add(dropped, Ordering::Relaxed);
    }
}

/// Publishes `batch`; returns how many went out and whether the
/// connection is still good. A message Redis refuses (`-NOPERM`, say) is
/// dropped; only a lost connection ends the batch.
async fn publish(inner: &Inner, conn: &mut Conn, batch: &[(String, Bytes)]) -> (usize, bool) {
    if conn.is_cluster() {
        // Channels live on different shards: one command each, in order.
        let mut sent = 0;
        for (channel, payload) in batch {
            let mut cmd = redis::cmd("SPUBLISH");
            cmd.arg(channel).arg(payload.as_ref());
            match conn.query::<Value>(&cmd).await {
                Ok(_) => sent += 1,
                Err(error) if connection_lost(&error) => return (sent, false),
                Err(error) => refused(inner, "SPUBLISH", &error),
            }
        }
        return (sent, true);
    }
    let mut pipe = redis::pipe();
    for (channel, payload) in batch {
        pipe.cmd("PUBLISH")
            .arg(channel)
            .arg(payload.as_ref())
            .ignore();
    }
    match conn.pipeline::<()>(&pipe).await {
        Ok(()) => (batch.len(), true),
        Err(error) if connection_lost(&error) => (0, false),
        Err(error) => {
            refused(inner, "PUBLISH", &error);
            let failed = error
                .into_server_errors()
                .map_or(batch.len(), |failed| failed.len());
            (batch.len().saturating_sub(failed), true)
        }
    }
}

/// Every heartbeat: (re)opens the publisher connection, writes this node's
/// member counts and reads the other nodes'.
pub(super) async fn heartbeat(
    inner: Arc<Inner>,
    target: Target,
    link: Arc<Link>,
    mut stop: watch::Receiver<()>,
) {
    let config = &inner.config;
    let mut tick = interval(config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut backoff = config.reconnect_min;
    let mut next_attempt = Instant::now();
    let mut connected_before = false;
    // When the other nodes' counts were last read.
    let mut read_at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let (generation, mut conn) = match link.get() {
            Some(link) => link,
            None if Instant::now() < next_attempt => continue,
            None => match target.connect(config, None::<PushQueue>).await {
                Ok(conn) => {
                    let generation = link.set(&inner, conn.clone());
                    if connected_before {
                        inner.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected_before = true;
                    backoff = config.reconnect_min;
                    (generation, conn)
                }
                Err(_) => {
                    // Alone until Redis is back: count only our members.
                    *lock(&inner.remote) = Remote::default();
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(config.reconnect_max);
                    continue;
                }
            },
        };
        match presence(&inner, &mut conn).await {
            Ok(remote) => {
                *lock(&inner.remote) = remote;
                read_at = Instant::now();
            }
            Err(error) if connection_lost(&error) => {
                *lock(&inner.remote) = Remote::default();
                link.lost(&inner, generation);
            }
            Err(error) => {
                // Redis answers but refuses (loading, full...): the
                // connection, which publishing shares, stays. The counts
                // last read are kept as long as the other nodes' own
                // would live, then this node counts only its members.
                // Tried again next heartbeat.
                refused(&inner, "presence", &error);
                if read_at.elapsed() > config.presence_ttl {
                    *lock(&inner.remote) = Remote::default();
                }
            }
        }
    }
    // Stopping: take this node's counts out now rather than at expiry.
    if let Some((_, mut conn)) = link.get() {
        let prefix = &config.prefix;
        let mut pipe = redis::pipe();
        let me = wire::node_name(inner.node);
        pipe.del(wire::node_key(prefix, &me)).ignore();
        pipe.srem(wire::nodes_key(prefix), &me).ignore();
        let _ = timeout(config.response_timeout, conn.pipeline::<()>(&pipe)).await;
    }
}

/// Writes this node's counts (expiring after the presence TTL), reads the
/// other live nodes' and forgets the expired ones.
async fn presence(inner: &Inner, conn: &mut Conn) -> redis::RedisResult<Remote> {
    let prefix = &inner.config.prefix;
    let me = wire::node_name(inner.node);
    let my_key = wire::node_key(prefix, &me);
    let nodes_key = wire::nodes_key(prefix);
    let mut counts: Vec<(String, usize)> = Vec::new();
    if let Some(local) = inner.local.get() {
        local.for_each_count(&mut |topic, n| counts.push((wire::field(topic), n)));
    }
    let ttl = i64::try_from(inner.config.presence_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut pipe = redis::pipe();
    pipe.atomic().del(&my_key).ignore();
    if !counts.is_empty() {
        pipe.hset_multiple(&my_key, &counts).ignore();
    }
    pipe.pexpire(&my_key, ttl).ignore();
    pipe.sadd(&nodes_key, &me).ignore();
    pipe.smembers(&nodes_key);
    let nodes: Vec<String> = match conn.pipeline::<(Vec<String>,)>(&pipe).await {
        Ok((nodes,)) => nodes,
        Err(error) if connection_lost(&error) => return Err(error),
        Err(error) => {
            // Refused (out of memory at `maxmemory`, say): this node's
            // counts expire, but the others' can still be read.
            refused(inner, "presence", &error);
            let mut smembers = redis::cmd("SMEMBERS");
            smembers.arg(&nodes_key);
            conn.query(&smembers).await?
        }
    };

    let others: Vec<String> = nodes.into_iter().filter(|node| *node != me).collect();
    let mut remote = Remote::default();
    if others.is_empty() {
        return Ok(remote);
    }
    let mut pipe = redis::pipe();
    for node in &others {
        pipe.hgetall(wire::node_key(prefix, node));
    }
    let hashes: Vec<HashMap<String, usize>> = conn.pipeline(&pipe).await?;
    let mut gone = Vec::new();
    for (node, hash) in others.iter().zip(hashes) {
        if hash.is_empty() {
            gone.push(node);
        }
        for (field, count) in hash {
            if field == "*" {
                remote.everyone += count;
            } else if let Some(room) = field.strip_prefix("r:") {
                *remote.rooms.entry(room.to_owned()).or_default() += count;
            }
        }
    }
    if !gone.is_empty() {
        let mut srem = redis::cmd("SREM");
        srem.arg(&nodes_key).arg(gone);
        // Housekeeping: a refusal (read-only replica, say) is no reason to
        // discard the counts just read.
        if let Err(error) = conn.query::<Value>(&srem).await {
            if connection_lost(&error) {
                return Err(error);
            }
        }
    }
    Ok(remote)
}
