//! tokio-tungstenite echo peer: plain `accept_async` (with the 64 MiB limits) and
//! the `forward` echo loop from tokio-tungstenite's own example server.

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_ws_bench::{MAX_MESSAGE, announce, listen_addr, runtime};

fn main() {
    runtime().block_on(async {
        let listener = TcpListener::bind(listen_addr()).await.expect("bind");
        announce(listener.local_addr().unwrap());
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
                else {
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
    });
}
