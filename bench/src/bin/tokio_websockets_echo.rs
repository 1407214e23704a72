//! tokio-websockets echo peer, shaped like its examples/echo_server.rs
//! (default frame config, payload limit raised to 64 MiB).

use futures_util::{SinkExt, StreamExt};
use tokio_websockets::{Limits, ServerBuilder};
use tower_ws_bench::{MAX_MESSAGE, serve_each};

fn main() {
    serve_each(|tcp| {
        tokio::task::unconstrained(async move {
            let Ok((_req, mut ws)) = ServerBuilder::new()
                .limits(Limits::default().max_payload_len(Some(MAX_MESSAGE)))
                .accept(tcp)
                .await
            else {
                return;
            };
            // Pings are answered and closes completed by the library itself.
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        })
    });
}
