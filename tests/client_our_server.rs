//! Our client against our own server, `tower_ws::serve` (HTTP/1.1, h2c and
//! TLS + HTTP/2 with extended CONNECT on one port).

mod client_support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tower_ws::client::Builder;
use tower_ws::{Message, RequestHead, UpgradedWebSocket, WebSocketService};

use client_support::Pki;

/// `tower_ws::serve` with an echo `WebSocketService`, over TLS when given.
async fn our_server(tls: Option<tower_ws::server::TlsConfig>) -> SocketAddr {
    let echo = WebSocketService::new(|mut ws: UpgradedWebSocket, _: RequestHead| async move {
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = tower_ws::serve(listener, echo);
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    tokio::spawn(async move {
        let _ = server.await;
    });
    addr
}

async fn echo_three(client: &Builder, url: &str, status: u16) {
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (ws, res) = client.connect(url).await.unwrap();
        assert_eq!(res.status(), status, "{url}");
        assert!(res.headers().contains_key("sec-websocket-extensions"));
        sockets.push(ws);
    }
    let text = "our own server ".repeat(5000);
    for ws in &mut sockets {
        ws.send(Message::text(text.clone())).await.unwrap();
    }
    for mut ws in sockets {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(text.clone())
        );
        ws.close(1000, "").await.unwrap();
    }
}

#[tokio::test]
async fn http1_and_h2c_on_one_port() {
    let addr = our_server(None).await;
    let url = format!("ws://{addr}/");
    echo_three(&Builder::new(), &url, 101).await;
    echo_three(&Builder::new().http2(true), &url, 200).await;
}

#[tokio::test]
async fn tls_with_http2_and_http1() {
    let pki = Pki::new(&["localhost"]);
    let tls = tower_ws::server::TlsConfig::from_rustls(pki.server_config(&[b"h2", b"http/1.1"]));
    let addr = our_server(Some(tls)).await;
    let url = format!("wss://localhost:{}/", addr.port());
    let client = Builder::new().root_certificates(pki.roots());
    echo_three(&client, &url, 101).await;
    echo_three(&client.clone().http2(true), &url, 200).await;
}
