//! [`RedisConfig`] and [`RedisError`].

use std::fmt;
use std::time::Duration;

/// Where and how a [`RedisBackplane`](super::RedisBackplane) reaches Redis.
///
/// ```
/// use std::time::Duration;
/// use tower_ws::backplane::RedisConfig;
///
/// let single = RedisConfig::new("redis://127.0.0.1:6379")
///     .channel_prefix("chat:")
///     .response_timeout(Duration::from_secs(1));
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .password("secret");
/// # let _ = (single, cluster);
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(super) urls: Vec<String>,
    pub(super) cluster: bool,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) prefix: String,
    pub(super) publish_queue: usize,
    pub(super) receive_queue: usize,
    pub(super) max_payload: usize,
    pub(super) heartbeat: Duration,
    pub(super) presence_ttl: Duration,
    pub(super) reconnect_min: Duration,
    pub(super) reconnect_max: Duration,
}

impl RedisConfig {
    /// One Redis server (or a primary behind a proxy):
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]`, or `rediss://...` for TLS.
    /// Messages go through classic pub/sub (`PUBLISH`/`SUBSCRIBE`).
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            prefix: "tower-ws:".into(),
            publish_queue: 1024,
            receive_queue: 4096,
            max_payload: 1 << 20,
            heartbeat: Duration::from_secs(1),
            presence_ttl: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
        }
    }

    /// A Redis Cluster (7.0 or later), from the URL of one or more of its
    /// nodes. Messages go through sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`):
    /// each room's traffic passes through the one shard that owns its
    /// channel, not the whole cluster.
    pub fn cluster<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut config = RedisConfig::new(String::new());
        config.urls = urls.into_iter().map(Into::into).collect();
        config.cluster = true;
        config
    }

    /// The ACL user name, if not in the URL.
    ///
    /// Default is the URL's (none: the `default` user).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password, if not in the URL.
    ///
    /// Default is the URL's (none).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// How long a connection attempt may take.
    ///
    /// Default is 2 seconds.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long Redis may take to answer a command before the connection is
    /// treated as lost (and reconnected). This bounds how long a slow Redis
    /// holds up publishing; WebSocket connections never wait for it.
    ///
    /// Default is 2 seconds.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Prepended to every channel and key name, so several applications
    /// can share one Redis. Avoid `{` and `}`: they would change which
    /// cluster slot the keys hash to.
    ///
    /// Default is `"tower-ws:"`.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many broadcasts may wait to be published; past that (Redis slow
    /// or away) they are dropped and counted in
    /// [`RedisStats::publish_dropped`](super::RedisStats::publish_dropped).
    ///
    /// Default is 1024.
    pub fn publish_queue(mut self, messages: usize) -> Self {
        self.publish_queue = messages.max(1);
        self
    }

    /// How many received messages may wait to be delivered locally; past
    /// that they are dropped and counted in
    /// [`RedisStats::receive_dropped`](super::RedisStats::receive_dropped).
    ///
    /// Default is 4096.
    pub fn receive_queue(mut self, messages: usize) -> Self {
        self.receive_queue = messages.max(1);
        self
    }

    /// The largest broadcast (WebSocket payload, in bytes) sent through
    /// Redis. A larger one still reaches this node's clients, but not the
    /// other nodes': it is dropped and counted in
    /// [`RedisStats::publish_too_large`](super::RedisStats::publish_too_large)
    /// (and in `publish_dropped`).
    ///
    /// Redis copies each message into every subscriber's output buffer,
    /// and by default (`client-output-buffer-limit pubsub 32mb 8mb 60`)
    /// disconnects a subscriber whose buffer passes 32 MB, or stays over
    /// 8 MB for a minute. One broadcast over 32 MB would cut every node's
    /// subscriber off, and with it everything the other nodes publish
    /// until they reconnect. Keep this well under that limit (and under
    /// Redis's if you changed it); raise both together.
    ///
    /// Default is 1 MiB.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// How often the node writes its member counts to Redis, reads the
    /// other nodes' and checks its connections.
    ///
    /// Default is 1 second.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    /// How long a node's counts outlive its last heartbeat: the members of
    /// a node that crashed disappear from every other node's counts within
    /// `presence_ttl + heartbeat`. Keep it a few heartbeats long.
    ///
    /// Default is 3 seconds.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// The wait before reconnecting a lost connection: `min` first, doubled
    /// after each failure up to `max`.
    ///
    /// Default is 100 milliseconds to 2 seconds.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No credentials in logs: URLs only up to their host.
        let hosts: Vec<&str> = self
            .urls
            .iter()
            .map(|url| url.rsplit('@').next().unwrap_or(url))
            .collect();
        f.debug_struct("RedisConfig")
            .field("hosts", &hosts)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("presence_ttl", &self.presence_ttl)
            .finish_non_exhaustive()
    }
}

/// Why a [`RedisBackplane`](super::RedisBackplane) could not be created.
#[derive(Debug)]
pub struct RedisError {
    message: String,
}

impl RedisError {
    pub(super) fn new(message: impl Into<String>) -> Self {
        RedisError {
            message: message.into(),
        }
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisError {}
