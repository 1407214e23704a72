//! [`Stats`] and [`HubStats`] handed to the `metrics` facade (feature
//! `metrics`), under Prometheus-style names.

use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::{HubStats, Stats};

impl Stats {
    /// Records this snapshot in the [`metrics`](https://docs.rs/metrics)
    /// facade: counters as `tower_ws_*_total` (set to their absolute
    /// values), gauges for open connections and buffered bytes. Call it
    /// before each scrape (or on a timer); the recorder the application
    /// installed (Prometheus, StatsD, ...) exports them.
    ///
    /// ```no_run
    /// # use tower_ws::{RequestHead, UpgradedWebSocket, WebSocketService};
    /// # let service = WebSocketService::new(|_ws: UpgradedWebSocket, _h: RequestHead| async {});
    /// // In the handler of GET /metrics, with metrics-exporter-prometheus:
    /// // let handle = PrometheusBuilder::new().install_recorder()?; (once)
    /// service.stats().publish();
    /// // let body = handle.render();
    /// ```
    ///
    /// Names: `tower_ws_connections_open{http}`,
    /// `tower_ws_handshakes_accepted_total`,
    /// `tower_ws_handshakes_refused_total{reason}`,
    /// `tower_ws_messages_total{direction}`,
    /// `tower_ws_payload_bytes_total{direction}`,
    /// `tower_ws_wire_bytes_total{direction}`,
    /// `tower_ws_deflate_bytes_total{direction,stage}`,
    /// `tower_ws_close_frames_total{direction,code}`,
    /// `tower_ws_protocol_errors_total`, `tower_ws_keepalive_timeouts_total`,
    /// `tower_ws_idle_timeouts_total`, `tower_ws_buffered_bytes`,
    /// `tower_ws_memory_budget_bytes`, `tower_ws_budget_closes_total`.
    pub fn publish(&self) {
        static DESCRIBED: Once = Once::new();
        DESCRIBED.call_once(describe);
        gauge!("tower_ws_connections_open", "http" => "1.1").set(self.open_http1 as f64);
        gauge!("tower_ws_connections_open", "http" => "2").set(self.open_http2 as f64);
        counter!("tower_ws_handshakes_accepted_total").absolute(self.handshakes_accepted);
        for (reason, n) in self.handshakes_refused.iter() {
            counter!("tower_ws_handshakes_refused_total", "reason" => reason).absolute(n);
        }
        for (direction, messages, payload, wire) in [
            (
                "in",
                self.messages_received,
                self.bytes_received,
                self.wire_bytes_received,
            ),
            (
                "out",
                self.messages_sent,
                self.bytes_sent,
                self.wire_bytes_sent,
            ),
        ] {
            counter!("tower_ws_messages_total", "direction" => direction).absolute(messages);
            counter!("tower_ws_payload_bytes_total", "direction" => direction).absolute(payload);
            counter!("tower_ws_wire_bytes_total", "direction" => direction).absolute(wire);
        }
        for (direction, stage, n) in [
            ("in", "compressed", self.compressed_bytes_received),
            ("in", "uncompressed", self.inflated_bytes_received),
            ("out", "uncompressed", self.deflate_input_bytes_sent),
            ("out", "compressed", self.compressed_bytes_sent),
        ] {
            counter!("tower_ws_deflate_bytes_total", "direction" => direction, "stage" => stage)
                .absolute(n);
        }
        for (direction, codes) in [
            ("sent", &self.close_codes_sent),
            ("received", &self.close_codes_received),
        ] {
            for (code, n) in codes.iter() {
                counter!("tower_ws_close_frames_total", "direction" => direction, "code" => code)
                    .absolute(n);
            }
        }
        counter!("tower_ws_protocol_errors_total").absolute(self.protocol_errors);
        counter!("tower_ws_keepalive_timeouts_total").absolute(self.keepalive_timeouts);
        counter!("tower_ws_idle_timeouts_total").absolute(self.idle_timeouts);
        gauge!("tower_ws_buffered_bytes").set(self.buffered_bytes as f64);
        if let Some(limit) = self.memory_budget {
            gauge!("tower_ws_memory_budget_bytes").set(limit as f64);
        }
        counter!("tower_ws_budget_closes_total").absolute(self.budget_closes);
    }
}

impl HubStats {
    /// Records this snapshot in the `metrics` facade, as
    /// [`Stats::publish`] does: `tower_ws_hub_clients`,
    /// `tower_ws_hub_broadcasts_total`, `tower_ws_hub_messages_queued_total`,
    /// `tower_ws_hub_messages_written_directly_total`,
    /// `tower_ws_hub_messages_dropped_total`,
    /// `tower_ws_hub_overflow_closes_total`,
    /// `tower_ws_hub_handler_panics_total`.
    pub fn publish(&self) {
        static DESCRIBED: Once = Once::new();
        DESCRIBED.call_once(describe_hub);
        gauge!("tower_ws_hub_clients").set(self.clients as f64);
        counter!("tower_ws_hub_broadcasts_total").absolute(self.broadcasts);
        counter!("tower_ws_hub_messages_queued_total").absolute(self.messages_queued);
        counter!("tower_ws_hub_messages_written_directly_total")
            .absolute(self.messages_written_directly);
        counter!("tower_ws_hub_messages_dropped_total").absolute(self.messages_dropped);
        counter!("tower_ws_hub_overflow_closes_total").absolute(self.overflow_closes);
        counter!("tower_ws_hub_handler_panics_total").absolute(self.handler_panics);
    }
}

fn describe() {
    describe_gauge!(
        "tower_ws_connections_open",
        "WebSockets open now, by HTTP version"
    );
    describe_counter!(
        "tower_ws_handshakes_accepted_total",
        "WebSocket handshakes answered 101"
    );
    describe_counter!(
        "tower_ws_handshakes_refused_total",
        "WebSocket handshakes refused, by reason"
    );
    describe_counter!(
        "tower_ws_messages_total",
        "Text and binary messages, by direction"
    );
    describe_counter!(
        "tower_ws_payload_bytes_total",
        Unit::Bytes,
        "Message payload bytes (uncompressed), by direction"
    );
    describe_counter!(
        "tower_ws_wire_bytes_total",
        Unit::Bytes,
        "Bytes read from and written to the transports"
    );
    describe_counter!(
        "tower_ws_deflate_bytes_total",
        Unit::Bytes,
        "Payload bytes of permessage-deflate messages, before and after compression"
    );
    describe_counter!(
        "tower_ws_close_frames_total",
        "Close frames sent and received, by code"
    );
    describe_counter!(
        "tower_ws_protocol_errors_total",
        "Connections failed for breaking the protocol (1002, 1007, 1009)"
    );
    describe_counter!(
        "tower_ws_keepalive_timeouts_total",
        "Connections failed for an unanswered keepalive ping (1011)"
    );
    describe_counter!(
        "tower_ws_idle_timeouts_total",
        "Connections closed for the idle timeout (1001)"
    );
    describe_gauge!(
        "tower_ws_buffered_bytes",
        Unit::Bytes,
        "Bytes buffered by all connections now"
    );
    describe_gauge!(
        "tower_ws_memory_budget_bytes",
        Unit::Bytes,
        "The memory budget of all connections"
    );
    describe_counter!(
        "tower_ws_budget_closes_total",
        "Connections closed because the memory budget ran out"
    );
}

fn describe_hub() {
    describe_gauge!("tower_ws_hub_clients", "Clients connected to the hub");
    describe_counter!("tower_ws_hub_broadcasts_total", "Broadcasts");
    describe_counter!(
        "tower_ws_hub_messages_queued_total",
        "Messages queued for clients"
    );
    describe_counter!(
        "tower_ws_hub_messages_written_directly_total",
        "Messages written into a client's socket by their sender, without a task wakeup"
    );
    describe_counter!(
        "tower_ws_hub_messages_dropped_total",
        "Messages dropped for a full client queue"
    );
    describe_counter!(
        "tower_ws_hub_overflow_closes_total",
        "Clients closed for a full queue"
    );
    describe_counter!(
        "tower_ws_hub_handler_panics_total",
        "Handler callback panics contained"
    );
}
