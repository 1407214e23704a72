//! What a connection reports about itself: its traffic, folded into the
//! service's counters at batch boundaries, and its close (with the
//! `tracing` feature, an event with the whole story).

use std::sync::Arc;

use crate::metrics::{ConnEvent, ServiceMetrics};
use crate::proto::{Connection, Traffic};

/// Fold at the latest after this many messages, for connections that
/// rarely wait (a writer that never blocks).
const FOLD_EVERY: u64 = 64;

/// A connection's link to its service's metrics.
#[derive(Debug)]
#[cfg_attr(not(feature = "tracing"), derive(Default))]
pub(crate) struct Observer {
    metrics: Option<Arc<ServiceMetrics>>,
    /// The engine's traffic as of the last fold.
    folded: Traffic,
    /// Transport bytes since the last fold.
    wire_received: u64,
    wire_sent: u64,
    /// Transport bytes ever received, and sent.
    received_total: u64,
    sent_total: u64,
    /// When the connection opened; taken when it is logged as closed.
    #[cfg(feature = "tracing")]
    opened: Option<std::time::Instant>,
}

#[cfg(feature = "tracing")]
impl Default for Observer {
    fn default() -> Self {
        Observer {
            metrics: None,
            folded: Traffic::default(),
            wire_received: 0,
            wire_sent: 0,
            received_total: 0,
            sent_total: 0,
            opened: Some(std::time::Instant::now()),
        }
    }
}

impl Observer {
    pub(crate) fn attach(&mut self, metrics: Arc<ServiceMetrics>) {
        self.metrics = Some(metrics);
    }

    pub(crate) fn read(&mut self, n: usize) {
        self.wire_received += n as u64;
        self.received_total += n as u64;
    }

    pub(crate) fn received_total(&self) -> u64 {
        self.received_total
    }

    pub(crate) fn sent_total(&self) -> u64 {
        self.sent_total
    }

    pub(crate) fn wrote(&mut self, n: usize) {
        self.wire_sent += n as u64;
        self.sent_total += n as u64;
    }

    /// Folds what changed since the last fold into the service's counters:
    /// called when the connection waits for I/O, so a busy connection pays
    /// a few atomic adds per batch of messages rather than per message.
    pub(crate) fn fold(&mut self, conn: &Connection) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let now = *conn.traffic();
        if now == self.folded && self.wire_received == 0 && self.wire_sent == 0 {
            return;
        }
        metrics.fold(&now.since(&self.folded), self.wire_received, self.wire_sent);
        self.folded = now;
        self.wire_received = 0;
        self.wire_sent = 0;
    }

    /// Folds if many messages passed since the last fold.
    pub(crate) fn fold_if_due(&mut self, conn: &Connection) {
        let t = conn.traffic();
        if t.messages_sent + t.messages_received
            >= self.folded.messages_sent + self.folded.messages_received + FOLD_EVERY
        {
            self.fold(conn);
        }
    }

    pub(crate) fn event(&self, event: ConnEvent) {
        if let Some(metrics) = &self.metrics {
            metrics.event(event);
        }
    }

    /// The connection is over: last fold, and its close codes counted (and
    /// logged).
    pub(crate) fn finish(&mut self, conn: &Connection) {
        // Once only: what it needs is taken.
        #[cfg(feature = "tracing")]
        if let Some(opened) = self.opened.take() {
            self.log_close(conn, opened);
        }
        self.fold(conn);
        if let Some(metrics) = self.metrics.take() {
            let record = conn.close_record();
            if let Some(frame) = &record.sent {
                metrics.close_sent(frame.code);
            }
            if let Some(frame) = &record.received {
                metrics.close_received(frame.code);
            }
        }
    }
}

#[cfg(feature = "tracing")]
impl Observer {
    fn log_close(&self, conn: &Connection, opened: std::time::Instant) {
        let record = conn.close_record();
        let t = conn.traffic();
        let closed_by = match (&record.sent, &record.received) {
            (_, Some(_)) if record.peer_first => "peer",
            (Some(_), _) => "server",
            _ => "nobody (the connection dropped without a close frame)",
        };
        let ratio = |packed: u64, raw: u64| (raw > 0).then(|| packed as f64 / raw as f64);
        tracing::debug!(
            closed_by,
            code_sent = record.sent.as_ref().map(|f| f.code.as_u16()),
            reason_sent = record.sent.as_ref().map(|f| display(f.reason.as_str())),
            code_received = record.received.as_ref().map(|f| f.code.as_u16()),
            reason_received = record.received.as_ref().map(|f| display(f.reason.as_str())),
            duration_ms = opened.elapsed().as_millis() as u64,
            messages_in = t.messages_received,
            messages_out = t.messages_sent,
            bytes_in = t.bytes_received,
            bytes_out = t.bytes_sent,
            wire_bytes_in = self.received_total,
            wire_bytes_out = self.sent_total,
            compression_in = ratio(t.compressed_bytes_received, t.inflated_bytes_received),
            compression_out = ratio(t.compressed_bytes_sent, t.deflate_input_bytes_sent),
            "WebSocket closed"
        );
    }
}
