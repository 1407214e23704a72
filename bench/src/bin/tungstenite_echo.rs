//! tokio-tungstenite echo peer: plain `accept_async` (with the 64 MiB limits) and
//! the `forward` echo loop from tokio-tungstenite's own example server.

use futures_util::{StreamExt, TryStreamExt, future};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_ws_bench::{MAX_MESSAGE, serve_each};

fn main() {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    serve_each(move |tcp| async move {
        let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
            return;
        };
        let (write, read) = ws.split();
        // Pings are answered by tungstenite itself; only data is echoed.
        let _ = read
            .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
            .forward(write)
            .await;
    });
}
