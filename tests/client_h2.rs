//! WebSockets over HTTP/2 cleartext (h2c, prior knowledge): extended CONNECT
//! once the server enables it (RFC 8441 §3), several WebSockets per
//! connection, and the fall back to HTTP/1.1.

mod client_support;

use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use tower_ws::client::Builder;
use tower_ws::{CloseCode, Message};

use client_support::{Serve, echo_server};

const H2_CONNECT: Serve = Serve {
    h2: true,
    connect_protocol: true,
};

#[tokio::test]
async fn several_websockets_share_one_h2c_connection() {
    let (addr, accepted) = echo_server(H2_CONNECT, None).await;
    let client = Builder::new().http2(true);
    let url = format!("ws://{addr}/h2c");
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let (ws, res) = client.connect(&url).await.unwrap();
        assert_eq!(res.status(), 200);
        sockets.push(ws);
    }
    // Interleaved traffic, a large message (HTTP/2 flow control) and
    // compression on every stream.
    let big = "flow control ".repeat(250_000);
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("{i}: {big}"))).await.unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("{i}: {big}"))
        );
    }
    // Closing one stream leaves the others open.
    let mut first = sockets.remove(0);
    first.close(CloseCode::NORMAL, "").await.unwrap();
    for ws in &mut sockets {
        ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(vec![1, 2, 3])
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TCP connection");
}

#[tokio::test]
async fn a_pooled_h2_connection_is_used_even_without_the_option() {
    let (addr, accepted) = echo_server(H2_CONNECT, None).await;
    let client = Builder::new().http2(true);
    let url = format!("ws://{addr}/");
    let (_first, _) = client.connect(&url).await.unwrap();
    let (mut second, res) = client.clone().http2(false).connect(&url).await.unwrap();
    assert_eq!(res.status(), 200);
    second.send(Message::text("pooled")).await.unwrap();
    assert_eq!(
        second.next().await.unwrap().unwrap(),
        Message::text("pooled")
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // A builder of its own has its own pool.
    let (_third, res) = Builder::new().connect(&url).await.unwrap();
    assert_eq!(res.status(), 101);
}

#[tokio::test]
async fn an_h2_server_without_extended_connect_gets_http1() {
    let serve = Serve {
        h2: true,
        connect_protocol: false,
    };
    let (addr, accepted) = echo_server(serve, None).await;
    let (mut ws, res) = Builder::new()
        .http2(true)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    ws.send(Message::text("h1")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("h1"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_http1_only_server_gets_http1() {
    let serve = Serve {
        h2: false,
        connect_protocol: false,
    };
    let (addr, _) = echo_server(serve, None).await;
    let (mut ws, res) = Builder::new()
        .http2(true)
        .connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    ws.send(Message::text("h1")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("h1"));
}
