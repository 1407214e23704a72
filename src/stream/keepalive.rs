//! Keepalive pings and the idle timeout of a [`WebSocket`](super::WebSocket).
//!
//! Two timers, armed lazily on the first poll and only when configured.
//! Nothing is done per message: liveness is read from counters the
//! connection keeps anyway (bytes received, messages received), compared
//! when a timer fires. So an idle timeout fires between `idle` and twice
//! `idle` after the last message, the usual price of a timer that is not
//! reset per message. The counters may miss input the application has
//! not read yet (it was busy elsewhere, or only sends): a deadline with
//! nothing counted asks the connection to read what the transport holds
//! first ([`Due::Unread`]), and is judged on that.
//!
//! A connection with neither timer configured (the default) holds one
//! empty pointer: the settings and timers are boxed, made when a timer is
//! configured.

use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep};

use crate::config::Config;

/// The payload of keepalive pings.
pub(crate) const PING_PAYLOAD: &[u8] = b"tower-ws keepalive";

/// What the timers decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a keepalive ping now.
    Ping,
    /// The last ping went unanswered for the pong timeout: fail with 1011.
    PongTimeout,
    /// No message for the idle timeout: close with 1001.
    Idle,
    /// A deadline passed with nothing counted since, but the counters are
    /// not [`fresh`](Activity::fresh): read what the transport holds
    /// without waiting, then poll again with fresh counters. (An answer
    /// may wait unread while the application was busy elsewhere, or only
    /// sends.)
    Unread,
}

/// The counters liveness is judged by, read when a timer fires.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Activity {
    /// Bytes ever received from the peer.
    pub(crate) bytes: u64,
    /// Text and binary messages ever received.
    pub(crate) messages: u64,
    /// Reading is paused (memory budget): an answer may be waiting unread.
    pub(crate) paused: bool,
    /// The transport was just read: what it held is counted.
    pub(crate) fresh: bool,
}

/// A connection's keepalive: nothing until a timer is configured.
#[derive(Debug)]
pub(crate) struct Keepalive {
    timers: Option<Box<Timers>>,
}

impl Keepalive {
    pub(crate) fn new(config: &Config) -> Self {
        let configured = config.ping_interval.is_some() || config.idle_timeout.is_some();
        Keepalive {
            timers: configured.then(|| {
                Box::new(Timers::new(
                    config.ping_interval,
                    config.limits.pong_timeout,
                    config.idle_timeout,
                ))
            }),
        }
    }

    /// Replaces the settings given (a [`Hub`](crate::handler::Hub) applies
    /// its own); timers restart from now. `pong_timeout` applies to a ping
    /// already out, counted from when it went out. `default_pong_timeout`
    /// is the configuration's, for pings turned on here.
    pub(crate) fn configure(
        &mut self,
        ping_interval: Option<Duration>,
        pong_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
        default_pong_timeout: Duration,
    ) {
        let timers = match &mut self.timers {
            Some(timers) => timers,
            None if ping_interval.is_none() && pong_timeout.is_none() && idle_timeout.is_none() => {
                return;
            }
            None => self
                .timers
                .insert(Box::new(Timers::new(None, default_pong_timeout, None))),
        };
        timers.configure(ping_interval, pong_timeout, idle_timeout);
    }

    /// What the timers decided, if anything; `cx` is woken when a timer
    /// fires.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, now: Activity) -> Option<Due> {
        self.timers.as_mut()?.poll(cx, now)
    }

    /// Whether a timer is configured (and has not ended the connection).
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.timers.as_ref().is_some_and(|t| t.is_active())
    }
}

/// The settings and timers of a connection with keepalive.
#[derive(Debug)]
struct Timers {
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    idle_timeout: Option<Duration>,
    ping_timer: Option<Pin<Box<Sleep>>>,
    /// The bytes received when the unanswered ping went out (it went out
    /// a pong timeout before the ping timer's deadline).
    awaiting: Option<u64>,
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// Messages received when the idle timer was last armed.
    messages_at_arm: u64,
}

impl Timers {
    fn new(
        ping_interval: Option<Duration>,
        pong_timeout: Duration,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Timers {
            ping_interval,
            pong_timeout,
            idle_timeout,
            ping_timer: None,
            awaiting: None,
            idle_timer: None,
            messages_at_arm: 0,
        }
    }

    fn configure(
        &mut self,
        ping_interval: Option<Duration>,
        pong_timeout: Option<Duration>,
        idle_timeout: Option<Duration>,
    ) {
        if ping_interval.is_some() {
            self.ping_interval = ping_interval;
            self.ping_timer = None;
            self.awaiting = None;
        }
        if let Some(timeout) = pong_timeout {
            if let (Some(_), Some(timer)) = (self.awaiting, &mut self.ping_timer) {
                // A ping is out: its answer is now due the new timeout after
                // it went out (the send time is the deadline less the
                // timeout, so the deadline moves with it).
                let deadline = timer.deadline();
                let sent = deadline.checked_sub(self.pong_timeout).unwrap_or(deadline);
                timer.as_mut().reset(sent + timeout);
            }
            self.pong_timeout = timeout;
        }
        if idle_timeout.is_some() {
            self.idle_timeout = idle_timeout;
            self.idle_timer = None;
        }
    }

    /// Polls the timers (registering `cx` with them); returns what is due.
    fn poll(&mut self, cx: &mut Context<'_>, now: Activity) -> Option<Due> {
        if let Some(due) = self.poll_ping(cx, now) {
            return Some(due);
        }
        self.poll_idle(cx, now)
    }

    fn poll_ping(&mut self, cx: &mut Context<'_>, now: Activity) -> Option<Due> {
        let interval = self.ping_interval?;
        let timer = self
            .ping_timer
            .get_or_insert_with(|| Box::pin(sleep(interval)));
        while timer.as_mut().poll(cx).is_ready() {
            let fired = timer.deadline();
            match self.awaiting {
                None => {
                    self.awaiting = Some(now.bytes);
                    timer.as_mut().reset(fired + self.pong_timeout);
                    return Some(Due::Ping);
                }
                Some(bytes) if now.bytes != bytes || now.paused => {
                    // Answered (or the answer may wait behind paused reads):
                    // the next ping an interval after this one went out.
                    self.awaiting = None;
                    let sent = fired.checked_sub(self.pong_timeout).unwrap_or(fired);
                    timer.as_mut().reset((sent + interval).max(Instant::now()));
                }
                Some(_) if !now.fresh => return Some(Due::Unread),
                Some(_) => {
                    self.ping_interval = None;
                    self.ping_timer = None;
                    return Some(Due::PongTimeout);
                }
            }
        }
        None
    }

    fn poll_idle(&mut self, cx: &mut Context<'_>, now: Activity) -> Option<Due> {
        let idle = self.idle_timeout?;
        let timer = self.idle_timer.get_or_insert_with(|| {
            self.messages_at_arm = now.messages;
            Box::pin(sleep(idle))
        });
        while timer.as_mut().poll(cx).is_ready() {
            if now.messages == self.messages_at_arm {
                if !now.fresh {
                    return Some(Due::Unread);
                }
                self.idle_timeout = None;
                self.idle_timer = None;
                return Some(Due::Idle);
            }
            self.messages_at_arm = now.messages;
            timer.as_mut().reset(Instant::now() + idle);
        }
        None
    }

    /// Whether a timer is configured at all (no polling needed otherwise).
    #[inline]
    fn is_active(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn activity(bytes: u64, messages: u64) -> Activity {
        Activity {
            bytes,
            messages,
            paused: false,
            fresh: true,
        }
    }

    fn poll(k: &mut Keepalive, now: Activity) -> Option<Due> {
        k.poll(&mut Context::from_waker(Waker::noop()), now)
    }

    /// A keepalive pinging every `interval` with `pong_timeout`, a moment
    /// after its first ping went out (nothing received yet).
    async fn first_ping(interval: Duration, pong_timeout: Duration) -> Keepalive {
        let config = Config::default()
            .ping_interval(Some(interval))
            .pong_timeout(pong_timeout);
        let mut k = Keepalive::new(&config);
        assert_eq!(poll(&mut k, activity(0, 0)), None);
        tokio::time::advance(interval).await;
        assert_eq!(poll(&mut k, activity(0, 0)), Some(Due::Ping));
        k
    }

    /// Advances the clock by `secs`, then polls with `bytes` received in
    /// all (a pong is 2 bytes more than at the ping).
    async fn after(k: &mut Keepalive, secs: u64, bytes: u64) -> Option<Due> {
        tokio::time::advance(Duration::from_secs(secs)).await;
        poll(k, activity(bytes, 0))
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_fails_when_nothing_answers() {
        let mut k = first_ping(Duration::from_secs(10), Duration::from_secs(5)).await;
        // The pong arrived.
        assert_eq!(after(&mut k, 5, 2).await, None);
        assert_eq!(after(&mut k, 4, 2).await, None);
        assert_eq!(after(&mut k, 1, 2).await, Some(Due::Ping));
        assert_eq!(after(&mut k, 5, 2).await, Some(Due::PongTimeout));
        // Failed once; nothing more is due.
        assert_eq!(after(&mut k, 60, 2).await, None);
    }

    /// With counters that may miss unread input, a passed deadline asks for
    /// a read first, and changes nothing until fresh counters come.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_with_stale_counters_asks_for_a_read() {
        let stale = |bytes, messages| Activity {
            fresh: false,
            ..activity(bytes, messages)
        };
        let config = Config::default()
            .ping_interval(Some(Duration::from_secs(10)))
            .pong_timeout(Duration::from_secs(5));
        let mut k = Keepalive::new(&config);
        assert_eq!(poll(&mut k, stale(0, 0)), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(poll(&mut k, stale(0, 0)), Some(Due::Ping));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(poll(&mut k, stale(0, 0)), Some(Due::Unread));
        assert_eq!(poll(&mut k, stale(0, 0)), Some(Due::Unread));
        // The read found the pong: answered, the next ping at t = 20.
        assert_eq!(poll(&mut k, activity(2, 0)), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(poll(&mut k, stale(2, 0)), Some(Due::Ping));

        // The idle deadline the same way: the first read found a message,
        // the second nothing.
        let config = Config::default().idle_timeout(Some(Duration::from_secs(60)));
        let mut k = Keepalive::new(&config);
        assert_eq!(poll(&mut k, stale(0, 0)), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(poll(&mut k, stale(0, 0)), Some(Due::Unread));
        assert_eq!(poll(&mut k, activity(9, 1)), None);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(poll(&mut k, stale(9, 1)), Some(Due::Unread));
        assert_eq!(poll(&mut k, activity(9, 1)), Some(Due::Idle));
    }

    /// A pong timeout set while a ping is out (a hub adopting the
    /// connection) applies to that ping, counted from when it went out, and
    /// the next ping still comes an interval after it.
    #[tokio::test(start_paused = true)]
    async fn a_new_pong_timeout_applies_to_the_ping_already_out() {
        let mut k = first_ping(Duration::from_secs(10), Duration::from_secs(5)).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        k.configure(None, Some(Duration::from_secs(3)), None, Duration::ZERO);
        // Due 3 s after the ping (t = 13), not 3 s after the change; the
        // pong came, so the next ping is at t = 20.
        assert_eq!(after(&mut k, 1, 2).await, None);
        assert_eq!(after(&mut k, 1, 2).await, None);
        assert_eq!(after(&mut k, 6, 2).await, None);
        assert_eq!(after(&mut k, 1, 2).await, Some(Due::Ping));
        // Unanswered: it fails 3 s later.
        assert_eq!(after(&mut k, 3, 2).await, Some(Due::PongTimeout));
    }

    /// Without timers a connection keeps no keepalive state; pings turned
    /// on later time out after the configuration's pong timeout.
    #[tokio::test(start_paused = true)]
    async fn timers_are_made_when_configured() {
        let config = Config::default().pong_timeout(Duration::from_secs(5));
        let mut k = Keepalive::new(&config);
        assert!(k.timers.is_none());
        assert!(!k.is_active());
        k.configure(None, None, None, config.get_pong_timeout());
        assert!(k.timers.is_none());
        k.configure(
            Some(Duration::from_secs(10)),
            None,
            None,
            config.get_pong_timeout(),
        );
        assert!(k.is_active());
        assert_eq!(poll(&mut k, activity(0, 0)), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(poll(&mut k, activity(0, 0)), Some(Due::Ping));
        assert_eq!(after(&mut k, 4, 0).await, None);
        assert_eq!(after(&mut k, 1, 0).await, Some(Due::PongTimeout));
        assert!(!k.is_active());
    }

    #[tokio::test(start_paused = true)]
    async fn paused_reading_does_not_count_as_silence() {
        let mut k = first_ping(Duration::from_secs(1), Duration::from_millis(500)).await;
        tokio::time::advance(Duration::from_millis(500)).await;
        let paused = Activity {
            paused: true,
            ..activity(0, 0)
        };
        assert_eq!(poll(&mut k, paused), None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_without_messages() {
        let config = Config::default().idle_timeout(Some(Duration::from_secs(10)));
        let mut k = Keepalive::new(&config);
        assert_eq!(poll(&mut k, activity(0, 0)), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        // A message arrived meanwhile: the timer restarts.
        assert_eq!(poll(&mut k, activity(100, 1)), None);
        tokio::time::advance(Duration::from_secs(9)).await;
        // Pings and pongs (bytes without messages) are not activity.
        assert_eq!(poll(&mut k, activity(200, 1)), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(poll(&mut k, activity(200, 1)), Some(Due::Idle));
        assert!(!k.is_active());
    }
}
