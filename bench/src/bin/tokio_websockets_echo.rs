//! tokio-websockets echo peer, shaped like its examples/echo_server.rs
//! (default frame config, payload limit raised to 64 MiB).

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_websockets::{Limits, ServerBuilder};
use tower_ws_bench::{MAX_MESSAGE, announce, listen_addr, runtime};

fn main() {
    runtime().block_on(async {
        let listener = TcpListener::bind(listen_addr()).await.expect("bind");
        announce(listener.local_addr().unwrap());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(tokio::task::unconstrained(async move {
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
            }));
        }
    });
}
