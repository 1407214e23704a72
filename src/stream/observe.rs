//! What a connection reports about itself: its traffic, folded into the
//! service's counters at batch boundaries, and its close.

use std::sync::Arc;

use crate::metrics::{ConnEvent, ServiceMetrics};
use crate::proto::{Connection, Traffic};

/// Fold at the latest after this many messages, for connections that
/// rarely wait (a writer that never blocks).
const FOLD_EVERY: u64 = 64;

/// A connection's link to its service's metrics.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    metrics: Option<Arc<ServiceMetrics>>,
    /// The engine's traffic as of the last fold.
    folded: Traffic,
    /// Transport bytes since the last fold.
    wire_received: u64,
    wire_sent: u64,
    /// Transport bytes ever received.
    received_total: u64,
    finished: bool,
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

    pub(crate) fn wrote(&mut self, n: usize) {
        self.wire_sent += n as u64;
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

    /// The connection is over: last fold, and its close codes counted.
    pub(crate) fn finish(&mut self, conn: &Connection) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.fold(conn);
        if let Some(metrics) = &self.metrics {
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
