//! Always-on counters and their snapshots: [`Stats`] for a
//! [`WebSocketService`](crate::WebSocketService), [`HubStats`] for a
//! [`Hub`](crate::handler::Hub).
//!
//! Counting costs no lock and no contended cache line per message: each
//! connection tallies its own traffic in plain integers (in the engine) and
//! folds the difference into the shared counters when it waits for I/O;
//! those counters are sharded per thread, each shard on a cache line of its
//! own, and summed only when a snapshot is taken. Rare events (handshakes,
//! closes, timeouts) go straight to one atomic each.
//!
//! With the `metrics` feature, `Stats::publish` and `HubStats::publish`
//! hand a snapshot to the [`metrics`](https://docs.rs/metrics) facade, so any
//! recorder (Prometheus, StatsD, ...) exports them; see `examples/demo.rs`
//! for `/metrics` in Prometheus text.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use http::{StatusCode, Version};

use crate::message::CloseCode;
use crate::proto::Traffic;

#[cfg(feature = "metrics")]
mod export;

/// The HTTP versions a WebSocket can be opened over, as gauge indices.
const HTTP1: usize = 0;
const HTTP2: usize = 1;
const HTTP_OTHER: usize = 2;

fn version_index(version: Version) -> usize {
    match version {
        Version::HTTP_2 => HTTP2,
        Version::HTTP_11 | Version::HTTP_10 | Version::HTTP_09 => HTTP1,
        _ => HTTP_OTHER,
    }
}

/// Counters summed over per-thread shards, each on its own cache line, so
/// threads counting at once never write the same line.
pub(crate) struct Sharded<const N: usize> {
    shards: Box<[Shard<N>]>,
}

#[repr(align(128))]
struct Shard<const N: usize>([AtomicU64; N]);

/// A small number per thread, assigned on first use, picking its shard.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Relaxed);
    }
    NUMBER.with(|n| *n)
}

impl<const N: usize> Sharded<N> {
    fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let count = threads.next_power_of_two().clamp(2, 64);
        Sharded {
            shards: (0..count)
                .map(|_| Shard(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    fn shard(&self) -> &[AtomicU64; N] {
        &self.shards[thread_number() & (self.shards.len() - 1)].0
    }

    /// Adds `values[i]` to counter `i` (zeros are skipped).
    pub(crate) fn add_all(&self, values: [u64; N]) {
        let shard = self.shard();
        for (cell, v) in shard.iter().zip(values) {
            if v != 0 {
                cell.fetch_add(v, Relaxed);
            }
        }
    }

    pub(crate) fn add(&self, index: usize, value: u64) {
        self.shard()[index].fetch_add(value, Relaxed);
    }

    fn sum(&self) -> [u64; N] {
        let mut total = [0u64; N];
        for shard in self.shards.iter() {
            for (t, cell) in total.iter_mut().zip(&shard.0) {
                *t = t.wrapping_add(cell.load(Relaxed));
            }
        }
        total
    }
}

impl<const N: usize> std::fmt::Debug for Sharded<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded")
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Indices of the per-message counters of a service.
const MESSAGES_RECEIVED: usize = 0;
const MESSAGES_SENT: usize = 1;
const BYTES_RECEIVED: usize = 2;
const BYTES_SENT: usize = 3;
const COMPRESSED_RECEIVED: usize = 4;
const INFLATED_RECEIVED: usize = 5;
const DEFLATE_INPUT_SENT: usize = 6;
const COMPRESSED_SENT: usize = 7;
const WIRE_RECEIVED: usize = 8;
const WIRE_SENT: usize = 9;
const TRAFFIC_COUNTERS: usize = 10;

/// Why a handshake was refused, as counted in [`Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    UnsupportedVersion,
    ConnectionLimit,
    MemoryBudget,
    NotUpgradable,
    Other,
}

impl Refusal {
    const COUNT: usize = 8;

    /// The reason of a handshake refused with `status` by the handshake
    /// rules (the two 503 reasons are named where they are decided).
    pub(crate) fn of_status(status: StatusCode) -> Refusal {
        match status {
            StatusCode::BAD_REQUEST => Refusal::BadRequest,
            StatusCode::FORBIDDEN => Refusal::Forbidden,
            StatusCode::METHOD_NOT_ALLOWED => Refusal::MethodNotAllowed,
            StatusCode::UPGRADE_REQUIRED => Refusal::UnsupportedVersion,
            StatusCode::INTERNAL_SERVER_ERROR => Refusal::NotUpgradable,
            _ => Refusal::Other,
        }
    }
}

/// Close codes as counted: 1000–1015 one by one, then the ranges.
const CODE_SLOTS: usize = 19;

fn code_slot(code: CloseCode) -> usize {
    match code.as_u16() {
        c @ 1000..=1015 => usize::from(c - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

const CODE_LABELS: [&str; CODE_SLOTS] = [
    "1000",
    "1001",
    "1002",
    "1003",
    "1004",
    "1005",
    "1006",
    "1007",
    "1008",
    "1009",
    "1010",
    "1011",
    "1012",
    "1013",
    "1014",
    "1015",
    "3000-3999",
    "4000-4999",
    "other",
];

/// The counters of one [`WebSocketService`](crate::WebSocketService) and
/// all its clones.
#[derive(Debug)]
pub(crate) struct ServiceMetrics {
    traffic: Sharded<TRAFFIC_COUNTERS>,
    open: [AtomicU64; 3],
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::COUNT],
    close_sent: [AtomicU64; CODE_SLOTS],
    close_received: [AtomicU64; CODE_SLOTS],
    keepalive_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    protocol_errors: AtomicU64,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        ServiceMetrics {
            traffic: Sharded::new(),
            open: Default::default(),
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            close_sent: Default::default(),
            close_received: Default::default(),
            keepalive_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
        }
    }
}

/// Per-connection events the stream reports once each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnEvent {
    KeepaliveTimeout,
    IdleTimeout,
    ProtocolError,
}

impl ServiceMetrics {
    pub(crate) fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    pub(crate) fn opened(&self, version: Version) {
        self.open[version_index(version)].fetch_add(1, Relaxed);
    }

    pub(crate) fn ended(&self, version: Version) {
        self.open[version_index(version)].fetch_sub(1, Relaxed);
    }

    /// Folds a connection's traffic since its last fold, and the bytes it
    /// read and wrote on the transport meanwhile.
    pub(crate) fn fold(&self, t: &Traffic, wire_received: u64, wire_sent: u64) {
        self.traffic.add_all([
            t.messages_received,
            t.messages_sent,
            t.bytes_received,
            t.bytes_sent,
            t.compressed_bytes_received,
            t.inflated_bytes_received,
            t.deflate_input_bytes_sent,
            t.compressed_bytes_sent,
            wire_received,
            wire_sent,
        ]);
    }

    pub(crate) fn close_sent(&self, code: CloseCode) {
        self.close_sent[code_slot(code)].fetch_add(1, Relaxed);
    }

    pub(crate) fn close_received(&self, code: CloseCode) {
        self.close_received[code_slot(code)].fetch_add(1, Relaxed);
    }

    pub(crate) fn event(&self, event: ConnEvent) {
        let counter = match event {
            ConnEvent::KeepaliveTimeout => &self.keepalive_timeouts,
            ConnEvent::IdleTimeout => &self.idle_timeouts,
            ConnEvent::ProtocolError => &self.protocol_errors,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A snapshot; `buffered`, `budget` and `budget_closes` come from the
    /// service's memory accounting.
    pub(crate) fn snapshot(&self, buffered: u64, budget: Option<u64>, budget_closes: u64) -> Stats {
        let t = self.traffic.sum();
        let load = |a: &AtomicU64| a.load(Relaxed);
        let open = self.open.each_ref().map(load);
        let refused = self.refused.each_ref().map(load);
        Stats {
            open_connections: open.iter().sum(),
            open_http1: open[HTTP1],
            open_http2: open[HTTP2],
            handshakes_accepted: load(&self.accepted),
            handshakes_refused: Refused {
                bad_request: refused[Refusal::BadRequest as usize],
                forbidden: refused[Refusal::Forbidden as usize],
                method_not_allowed: refused[Refusal::MethodNotAllowed as usize],
                unsupported_version: refused[Refusal::UnsupportedVersion as usize],
                connection_limit: refused[Refusal::ConnectionLimit as usize],
                memory_budget: refused[Refusal::MemoryBudget as usize],
                not_upgradable: refused[Refusal::NotUpgradable as usize],
                other: refused[Refusal::Other as usize],
            },
            messages_received: t[MESSAGES_RECEIVED],
            messages_sent: t[MESSAGES_SENT],
            bytes_received: t[BYTES_RECEIVED],
            bytes_sent: t[BYTES_SENT],
            compressed_bytes_received: t[COMPRESSED_RECEIVED],
            inflated_bytes_received: t[INFLATED_RECEIVED],
            deflate_input_bytes_sent: t[DEFLATE_INPUT_SENT],
            compressed_bytes_sent: t[COMPRESSED_SENT],
            wire_bytes_received: t[WIRE_RECEIVED],
            wire_bytes_sent: t[WIRE_SENT],
            close_codes_sent: CloseCodes(self.close_sent.each_ref().map(load)),
            close_codes_received: CloseCodes(self.close_received.each_ref().map(load)),
            protocol_errors: load(&self.protocol_errors),
            keepalive_timeouts: load(&self.keepalive_timeouts),
            idle_timeouts: load(&self.idle_timeouts),
            buffered_bytes: buffered,
            memory_budget: budget,
            budget_closes,
        }
    }
}

/// A snapshot of a [`WebSocketService`](crate::WebSocketService)'s
/// counters, from [`WebSocketService::stats`](crate::WebSocketService::stats).
///
/// Counters (`_total` in Prometheus terms) only grow; the `open_*` and
/// `buffered_bytes` gauges go up and down. Traffic counters lag by at most
/// the messages a connection handled since it last waited for I/O.
///
/// ```
/// use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};
///
/// let service = WebSocketService::new(|_ws: UpgradedWebSocket, _head: RequestHead| async {});
/// let stats = service.stats();
/// assert_eq!(stats.open_connections, 0);
/// assert_eq!(stats.handshakes_refused.total(), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// WebSockets open now, over any HTTP version.
    pub open_connections: u64,
    /// WebSockets open now over HTTP/1.1 (`Upgrade`).
    pub open_http1: u64,
    /// WebSockets open now over HTTP/2 (extended CONNECT, RFC 8441).
    pub open_http2: u64,
    /// Handshakes answered `101 Switching Protocols`.
    pub handshakes_accepted: u64,
    /// Handshakes refused, by reason.
    pub handshakes_refused: Refused,
    /// Text and binary messages received whole.
    pub messages_received: u64,
    /// Text and binary messages sent.
    pub messages_sent: u64,
    /// Payload bytes of the messages received, after decompression.
    pub bytes_received: u64,
    /// Payload bytes of the messages sent, before compression.
    pub bytes_sent: u64,
    /// Payload bytes of compressed messages received, as on the wire.
    pub compressed_bytes_received: u64,
    /// The same messages' payload bytes after inflating.
    pub inflated_bytes_received: u64,
    /// Payload bytes of messages sent compressed, before compressing.
    pub deflate_input_bytes_sent: u64,
    /// The same messages' payload bytes after compressing.
    pub compressed_bytes_sent: u64,
    /// Bytes read from the transports (frames, headers and all).
    pub wire_bytes_received: u64,
    /// Bytes written to the transports.
    pub wire_bytes_sent: u64,
    /// Close frames sent, by code.
    pub close_codes_sent: CloseCodes,
    /// Close frames received, by code.
    pub close_codes_received: CloseCodes,
    /// Connections failed because the peer broke the protocol (1002, 1007,
    /// 1009).
    pub protocol_errors: u64,
    /// Connections failed because a keepalive ping went unanswered (1011).
    pub keepalive_timeouts: u64,
    /// Connections closed for sending no message within the idle timeout
    /// (1001).
    pub idle_timeouts: u64,
    /// Bytes the open connections buffer now: read buffers, messages being
    /// reassembled or inflated, read-ahead, unsent output and
    /// [`Hub`](crate::handler::Hub) send queues.
    pub buffered_bytes: u64,
    /// The memory budget, if one is set.
    pub memory_budget: Option<u64>,
    /// Connections closed because the memory budget ran out.
    pub budget_closes: u64,
}

impl Stats {
    /// Compressed over uncompressed payload bytes, both directions
    /// together, of the messages that went through permessage-deflate
    /// (`None` before any did). 0.25 means a quarter of the size.
    pub fn compression_ratio(&self) -> Option<f64> {
        let raw = self.inflated_bytes_received + self.deflate_input_bytes_sent;
        let packed = self.compressed_bytes_received + self.compressed_bytes_sent;
        (raw > 0).then(|| packed as f64 / raw as f64)
    }
}

/// Refused handshakes by reason (part of [`Stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refused {
    /// `400 Bad Request`: a malformed upgrade request.
    pub bad_request: u64,
    /// `403 Forbidden`: an `Origin` that may not connect.
    pub forbidden: u64,
    /// `405 Method Not Allowed`: not a `GET`.
    pub method_not_allowed: u64,
    /// `426 Upgrade Required`: a `Sec-WebSocket-Version` other than 13.
    pub unsupported_version: u64,
    /// `503 Service Unavailable`: the connection limit was reached.
    pub connection_limit: u64,
    /// `503 Service Unavailable`: the memory budget was exhausted.
    pub memory_budget: u64,
    /// `500 Internal Server Error`: the server connection cannot upgrade.
    pub not_upgradable: u64,
    /// Any other status.
    pub other: u64,
}

impl Refused {
    /// All refusals together.
    pub fn total(&self) -> u64 {
        self.iter().map(|(_, n)| n).sum()
    }

    /// `(reason, count)` pairs, with the reasons as metric labels
    /// (`bad_request`, `forbidden`, ...).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("bad_request", self.bad_request),
            ("forbidden", self.forbidden),
            ("method_not_allowed", self.method_not_allowed),
            ("unsupported_version", self.unsupported_version),
            ("connection_limit", self.connection_limit),
            ("memory_budget", self.memory_budget),
            ("not_upgradable", self.not_upgradable),
            ("other", self.other),
        ]
        .into_iter()
    }
}

/// Close frames counted by code (part of [`Stats`]): 1000–1015 one by
/// one, 3000–3999 and 4000–4999 as ranges, anything else as "other". A
/// close frame without a code counts as 1005.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseCodes([u64; CODE_SLOTS]);

impl CloseCodes {
    /// How many close frames carried `code` (or a code of its range, for
    /// 3000–4999).
    ///
    /// ```
    /// # let codes = tower_ws::metrics::CloseCodes::default();
    /// assert_eq!(codes.get(tower_ws::CloseCode::NORMAL), 0);
    /// ```
    pub fn get(&self, code: impl Into<CloseCode>) -> u64 {
        self.0[code_slot(code.into())]
    }

    /// All close frames.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(code label, count)` for every code seen at least once, e.g.
    /// `("1000", 12)` or `("4000-4999", 3)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CODE_LABELS
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(label, n)| (*label, n))
    }
}

/// Indices of the per-message counters of a hub.
const QUEUED: usize = 0;
const DROPPED: usize = 1;
const DIRECT: usize = 2;
const HUB_COUNTERS: usize = 3;

/// The counters of one [`Hub`](crate::handler::Hub).
#[derive(Debug)]
pub(crate) struct HubMetrics {
    per_message: Sharded<HUB_COUNTERS>,
    broadcasts: AtomicU64,
    overflow_closes: AtomicU64,
    panics: AtomicU64,
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics {
            per_message: Sharded::new(),
            broadcasts: AtomicU64::new(0),
            overflow_closes: AtomicU64::new(0),
            panics: AtomicU64::new(0),
        }
    }
}

impl HubMetrics {
    pub(crate) fn queued(&self) {
        self.per_message.add(QUEUED, 1);
    }

    pub(crate) fn dropped(&self) {
        self.per_message.add(DROPPED, 1);
    }

    /// `n` messages queued, and written into the socket by the sender
    /// itself.
    pub(crate) fn written_directly(&self, n: u64) {
        if n > 0 {
            self.per_message.add_all([n, 0, n]);
        }
    }

    pub(crate) fn broadcast(&self) {
        self.broadcasts.fetch_add(1, Relaxed);
    }

    pub(crate) fn overflow_close(&self) {
        self.overflow_closes.fetch_add(1, Relaxed);
    }

    pub(crate) fn panic(&self) {
        self.panics.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, clients: u64) -> HubStats {
        let n = self.per_message.sum();
        HubStats {
            clients,
            broadcasts: self.broadcasts.load(Relaxed),
            messages_queued: n[QUEUED],
            messages_written_directly: n[DIRECT],
            messages_dropped: n[DROPPED],
            overflow_closes: self.overflow_closes.load(Relaxed),
            handler_panics: self.panics.load(Relaxed),
        }
    }
}

/// A snapshot of a [`Hub`](crate::handler::Hub)'s counters, from
/// [`Hub::stats`](crate::handler::Hub::stats).
///
/// ```
/// use tower_ws::handler::{Handler, Hub, Options};
///
/// struct Quiet;
/// impl Handler for Quiet {}
///
/// let hub = Hub::new(Quiet, Options::default());
/// assert_eq!(hub.stats().clients, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Clients connected now.
    pub clients: u64,
    /// Calls to `broadcast` and `broadcast_except`.
    pub broadcasts: u64,
    /// Messages queued for a client (each client of a broadcast counts).
    pub messages_queued: u64,
    /// Of `messages_queued`, those the sender wrote into the client's
    /// socket itself (nothing was queued before them and the socket took
    /// them), without waking the client's connection task.
    pub messages_written_directly: u64,
    /// Messages dropped because a client's queue was full.
    pub messages_dropped: u64,
    /// Clients closed because their queue was full
    /// ([`Overflow::Close`](crate::handler::Overflow::Close)).
    pub overflow_closes: u64,
    /// Panics in callbacks, contained by closing that client with 1011.
    pub handler_panics: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counters_sum_across_threads() {
        let counters = std::sync::Arc::new(Sharded::<2>::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add_all([1, 2]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counters.sum(), [8000, 16000]);
    }

    #[test]
    fn close_codes_are_bucketed() {
        let m = ServiceMetrics::default();
        m.close_sent(CloseCode::NORMAL);
        m.close_sent(CloseCode::NORMAL);
        m.close_sent(CloseCode::from(4001));
        m.close_received(CloseCode::from(2999));
        let s = m.snapshot(0, None, 0);
        assert_eq!(s.close_codes_sent.get(CloseCode::NORMAL), 2);
        assert_eq!(s.close_codes_sent.get(4999), 1);
        assert_eq!(s.close_codes_sent.total(), 3);
        assert_eq!(
            s.close_codes_sent.iter().collect::<Vec<_>>(),
            vec![("1000", 2), ("4000-4999", 1)]
        );
        assert_eq!(
            s.close_codes_received.iter().collect::<Vec<_>>(),
            vec![("other", 1)]
        );
    }

    #[test]
    fn open_gauges_follow_the_http_version() {
        let m = ServiceMetrics::default();
        m.opened(Version::HTTP_11);
        m.opened(Version::HTTP_2);
        m.opened(Version::HTTP_2);
        m.ended(Version::HTTP_2);
        let s = m.snapshot(0, None, 0);
        assert_eq!((s.open_connections, s.open_http1, s.open_http2), (2, 1, 1));
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let m = ServiceMetrics::default();
        m.refused(Refusal::of_status(StatusCode::FORBIDDEN));
        m.refused(Refusal::MemoryBudget);
        m.refused(Refusal::of_status(StatusCode::UPGRADE_REQUIRED));
        let r = m.snapshot(0, None, 0).handshakes_refused;
        assert_eq!(
            (r.forbidden, r.memory_budget, r.unsupported_version),
            (1, 1, 1)
        );
        assert_eq!(r.total(), 3);
    }

    #[test]
    fn compression_ratio_uses_both_directions() {
        let s = Stats {
            compressed_bytes_received: 10,
            inflated_bytes_received: 40,
            deflate_input_bytes_sent: 60,
            compressed_bytes_sent: 15,
            ..Stats::default()
        };
        assert_eq!(s.compression_ratio(), Some(0.25));
        assert_eq!(Stats::default().compression_ratio(), None);
    }
}
