//! One connection to Redis, a single server or a cluster, and how to open
//! it.

use redis::aio::{AsyncPushSender, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, IntoConnectionInfo, ProtocolVersion};

use super::config::{RedisConfig, RedisError};

/// What connections are opened from: parsed once, at start.
pub(super) enum Target {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A multiplexed connection: cheap to clone, every clone is the same
/// connection.
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Target {
    /// Parses the URLs; `push` receives the pushes (pub/sub messages) of
    /// every connection opened from this target.
    pub(super) fn new(
        config: &RedisConfig,
        push: Option<impl AsyncPushSender + Clone>,
    ) -> Result<Self, RedisError> {
        let invalid = |e: redis::RedisError| {
            RedisError::new(format!(
                "invalid Redis URL (expected redis://[USER:PASSWORD@]HOST:PORT or rediss://...): {e}"
            ))
        };
        if config.cluster {
            let mut builder = ClusterClientBuilder::new(config.urls.clone())
                .use_protocol(ProtocolVersion::RESP3)
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.response_timeout);
            if let Some(username) = &config.username {
                builder = builder.username(username);
            }
            if let Some(password) = &config.password {
                builder = builder.password(password);
            }
            if let Some(push) = push {
                builder = builder.push_sender(push);
            }
            return builder.build().map(Target::Cluster).map_err(invalid);
        }
        let url = config.urls.first().map(String::as_str).unwrap_or_default();
        let info = url.into_connection_info().map_err(invalid)?;
        let mut settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        if let Some(username) = &config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password);
        }
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(invalid)?;
        let _ = push;
        Ok(Target::Single(client))
    }

    /// Opens a connection (within the connect timeout).
    pub(super) async fn connect(
        &self,
        config: &RedisConfig,
        push: Option<impl AsyncPushSender + Clone>,
    ) -> redis::RedisResult<Conn> {
        match self {
            Target::Single(client) => {
                let mut options = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    .set_response_timeout(Some(config.response_timeout));
                if let Some(push) = push {
                    options = options.set_push_sender(push);
                }
                client
                    .get_multiplexed_async_connection_with_config(&options)
                    .await
                    .map(Conn::Single)
            }
            Target::Cluster(client) => {
                let connect = client.get_async_connection();
                match tokio::time::timeout(config.connect_timeout, connect).await {
                    Ok(result) => result.map(Conn::Cluster),
                    Err(_) => Err(timed_out()),
                }
            }
        }
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "Redis did not answer in time",
    ))
}

impl Conn {
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }

    pub(super) async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> redis::RedisResult<T> {
        match self {
            Conn::Single(conn) => cmd.query_async(conn).await,
            Conn::Cluster(conn) => cmd.query_async(conn).await,
        }
    }

    pub(super) async fn pipeline<T: FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(conn) => pipe.query_async(conn).await,
            Conn::Cluster(conn) => pipe.query_async(conn).await,
        }
    }

    /// `SUBSCRIBE`, or `SSUBSCRIBE` on a cluster.
    pub(super) async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.subscribe(channel).await,
            Conn::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }

    /// `UNSUBSCRIBE`, or `SUNSUBSCRIBE` on a cluster.
    pub(super) async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Conn::Single(conn) => conn.unsubscribe(channel).await,
            Conn::Cluster(conn) => conn.sunsubscribe(channel).await,
        }
    }
}
