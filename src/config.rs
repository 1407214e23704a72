//! Connection configuration: every limit, with secure defaults.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "deflate")]
use crate::extensions::deflate::DeflateConfig;

/// Settings of a WebSocket connection.
///
/// Every limit the connection enforces lives here; nothing is hard-coded.
/// The defaults are safe for a server on the open internet and generous
/// enough for ordinary applications.
///
/// ```
/// use std::time::Duration;
/// use tower_ws::Config;
///
/// let config = Config::default()
///     .max_message_size(1 << 20)
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(config.get_max_message_size(), 1 << 20);
/// ```
#[derive(Clone)]
pub struct Config {
    /// Shared by every connection made with this configuration (one
    /// allocation, not a copy in each connection).
    pub(crate) limits: Arc<Limits>,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<DeflateConfig>,
}

/// Every setting in one flat list, as the builder methods name them (how
/// they are stored, some shared between connections, is no concern of the
/// reader).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Limits {
            max_message_size,
            max_frame_size,
            max_fragments,
            out_frame_size,
            write_buffer_high_water,
            read_buffer_size,
            close_timeout,
            max_pending_events,
            pong_timeout,
        } = &*self.limits;
        let mut d = f.debug_struct("Config");
        d.field("max_message_size", max_message_size)
            .field("max_frame_size", max_frame_size)
            .field("max_fragments", max_fragments)
            .field("out_frame_size", out_frame_size)
            .field("write_buffer_high_water", write_buffer_high_water)
            .field("read_buffer_size", read_buffer_size)
            .field("close_timeout", close_timeout)
            .field("max_pending_events", max_pending_events)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", pong_timeout)
            .field("idle_timeout", &self.idle_timeout);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.finish()
    }
}

/// What a connection reads of its [`Config`] for as long as it lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_message_size: usize,
    pub(crate) max_frame_size: usize,
    pub(crate) max_fragments: usize,
    pub(crate) out_frame_size: usize,
    pub(crate) write_buffer_high_water: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) max_pending_events: usize,
    /// Here rather than beside the ping interval: a connection made without
    /// pings keeps no keepalive state, and needs the timeout if a
    /// [`Hub`](crate::handler::Hub) turns pings on.
    pub(crate) pong_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Arc::new(Limits {
                max_message_size: 64 << 20,
                max_frame_size: 16 << 20,
                max_fragments: 1 << 17,
                out_frame_size: 16 << 20,
                write_buffer_high_water: 128 << 10,
                read_buffer_size: 8 << 10,
                close_timeout: Duration::from_secs(1),
                max_pending_events: 64,
                pong_timeout: Duration::from_secs(20),
            }),
            ping_interval: None,
            idle_timeout: None,
            #[cfg(feature = "deflate")]
            deflate: Some(DeflateConfig::default()),
        }
    }
}

impl Config {
    /// The largest message accepted, counted on the whole reassembled and
    /// decompressed message. A larger message fails the connection with
    /// close code 1009, before it is buffered whole.
    ///
    /// Default is 64 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits_mut().max_message_size = bytes;
        self
    }

    /// The largest single frame accepted. A frame header declaring more fails
    /// the connection with close code 1009 without allocating anything.
    ///
    /// Default is 16 MiB.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.limits_mut().max_frame_size = bytes;
        self
    }

    /// The most frames one message may be split into. Protects against a
    /// peer that sends endless tiny (or empty) continuation frames.
    ///
    /// Default is 131,072 (a 4 MiB message in 64-byte fragments fits).
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.limits_mut().max_fragments = count.max(1);
        self
    }

    /// Outgoing messages larger than this are split into frames of at most
    /// this many payload bytes.
    ///
    /// Default is 16 MiB.
    pub fn out_frame_size(mut self, bytes: usize) -> Self {
        self.limits_mut().out_frame_size = bytes.max(1);
        self
    }

    /// When this many bytes wait to be written, `Sink::poll_ready` waits for
    /// the peer to read before accepting another message (backpressure).
    ///
    /// Default is 128 KiB.
    pub fn write_buffer_high_water(mut self, bytes: usize) -> Self {
        self.limits_mut().write_buffer_high_water = bytes;
        self
    }

    /// How many bytes are asked of the transport per read.
    ///
    /// Default is 8 KiB.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.limits_mut().read_buffer_size = bytes.max(64);
        self
    }

    /// How long closing waits for the peer's close frame, and then for the
    /// peer to close the TCP connection, before dropping it.
    ///
    /// Default is 1 second, like python-WS's `close`.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.limits_mut().close_timeout = timeout;
        self
    }

    /// How many received messages may wait for the application while the
    /// connection reads on its own (to answer pings while only the write
    /// half is in use, or at a keepalive deadline). Past this, reading
    /// pauses until the application reads.
    ///
    /// Default is 64.
    pub fn max_pending_events(mut self, count: usize) -> Self {
        self.limits_mut().max_pending_events = count.max(1);
        self
    }

    /// Keepalive: send a ping this often. A peer that then sends nothing at
    /// all (no pong, no message) for [`pong_timeout`](Self::pong_timeout)
    /// is failed with close code 1011 ("keepalive ping timeout") and
    /// dropped, and the stream yields an error whose
    /// [`is_keepalive_timeout`](crate::Error::is_keepalive_timeout) is true.
    ///
    /// Keepalive runs while the connection is polled: a task waiting in
    /// `next()` (on the `WebSocket` or its reading half) or sending. An
    /// answer that came while the task was busy elsewhere, or only sent,
    /// still counts: at the deadline the connection reads what the
    /// transport holds (up to [`max_pending_events`](Self::max_pending_events)
    /// messages, kept for the application) before it judges the peer. A
    /// task that never reads stops reading once those are full, and its
    /// peer is then failed at the next deadline. This is how dead peers (a
    /// laptop that went to sleep, a NAT that forgot the connection) are
    /// found and their memory released.
    ///
    /// Default is `None` (no pings): pings a peer did not ask for would
    /// surprise some tests and tools. Servers on the internet should set it
    /// (20 to 30 seconds is usual).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long a keepalive ping may go unanswered (anything received
    /// counts as an answer).
    ///
    /// Default is 20 seconds.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.limits_mut().pong_timeout = timeout;
        self
    }

    /// Close a connection whose peer sent no text or binary message for
    /// this long: the closing handshake starts with 1001 ("idle timeout")
    /// and the stream yields an error whose
    /// [`is_idle_timeout`](crate::Error::is_idle_timeout) is true, then
    /// (if polled further) the rest of the closing handshake. Pings and
    /// pongs do not count as activity.
    ///
    /// Default is `None` (never).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// permessage-deflate settings, or `None` to never negotiate compression.
    ///
    /// Default is `Some(DeflateConfig::default())`: compression is offered to
    /// clients that ask for it.
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }

    fn limits_mut(&mut self) -> &mut Limits {
        Arc::make_mut(&mut self.limits)
    }

    /// The configured maximum message size.
    pub fn get_max_message_size(&self) -> usize {
        self.limits.max_message_size
    }

    /// The configured maximum frame size.
    pub fn get_max_frame_size(&self) -> usize {
        self.limits.max_frame_size
    }

    /// The configured close timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.limits.close_timeout
    }

    /// The configured keepalive ping interval.
    pub fn get_ping_interval(&self) -> Option<Duration> {
        self.ping_interval
    }

    /// The configured pong timeout.
    pub fn get_pong_timeout(&self) -> Duration {
        self.limits.pong_timeout
    }

    /// The configured idle timeout.
    pub fn get_idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// The permessage-deflate settings, if compression is enabled.
    #[cfg(feature = "deflate")]
    pub fn get_deflate(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{:?}` lists every setting by its builder's name, flat.
    #[test]
    fn debug_lists_every_setting_flat() {
        let config = Config::default()
            .max_message_size(1234)
            .pong_timeout(Duration::from_secs(7))
            .ping_interval(Some(Duration::from_secs(3)));
        let shown = format!("{config:?}");
        for wanted in [
            "max_message_size: 1234",
            "pong_timeout: 7s",
            "ping_interval: Some(3s)",
            "max_pending_events: 64",
            "close_timeout: 1s",
        ] {
            assert!(shown.contains(wanted), "{wanted} not in {shown}");
        }
        assert!(!shown.contains("limits"), "{shown}");
    }
}
