//! wss:// with rustls: a test CA made at run time, server name checks, and
//! HTTP/2 chosen through ALPN.

mod client_support;

use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use tower_ws::Message;
use tower_ws::client::Builder;

use client_support::{Pki, Serve, echo_server};

const H1: Serve = Serve {
    h2: false,
    connect_protocol: false,
};

#[tokio::test]
async fn wss_with_a_private_ca_echoes_with_compression() {
    let pki = Pki::new(&["localhost"]);
    let (addr, _) = echo_server(H1, Some(pki.acceptor(&[b"http/1.1"]))).await;
    let (mut ws, res) = Builder::new()
        .root_certificates(pki.roots())
        .connect(&format!("wss://localhost:{}/secure", addr.port()))
        .await
        .unwrap();
    assert!(res.headers().contains_key("sec-websocket-extensions"));
    let text = "over TLS ".repeat(10_000);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    ws.close(1000, "").await.unwrap();
}

#[tokio::test]
async fn the_server_name_is_checked() {
    // The certificate names localhost; 127.0.0.1 is the same server, but
    // not the name the certificate was issued for.
    let pki = Pki::new(&["localhost"]);
    let (addr, _) = echo_server(H1, Some(pki.acceptor(&[b"http/1.1"]))).await;
    let err = Builder::new()
        .root_certificates(pki.roots())
        .connect(&format!("wss://127.0.0.1:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn an_unknown_ca_is_refused_by_the_default_roots() {
    let pki = Pki::new(&["localhost"]);
    let (addr, _) = echo_server(H1, Some(pki.acceptor(&[b"http/1.1"]))).await;
    let err = tower_ws::client::connect(&format!("wss://localhost:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(err.is_tls(), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn alpn_h2_carries_several_websockets_on_one_tls_connection() {
    let pki = Pki::new(&["localhost"]);
    let serve = Serve {
        h2: true,
        connect_protocol: true,
    };
    let (addr, accepted) = echo_server(serve, Some(pki.acceptor(&[b"h2", b"http/1.1"]))).await;
    let client = Builder::new().root_certificates(pki.roots()).http2(true);
    let url = format!("wss://localhost:{}/h2", addr.port());
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let (ws, res) = client.connect(&url).await.unwrap();
        assert_eq!(res.status(), 200, "an HTTP/2 extended CONNECT answer");
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("stream {i}"))).await.unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("stream {i}"))
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one TLS connection");
}

#[tokio::test]
async fn alpn_http1_answer_uses_the_same_tls_connection() {
    let pki = Pki::new(&["localhost"]);
    let (addr, accepted) = echo_server(H1, Some(pki.acceptor(&[b"http/1.1"]))).await;
    let (mut ws, res) = Builder::new()
        .root_certificates(pki.roots())
        .http2(true)
        .connect(&format!("wss://localhost:{}/", addr.port()))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    ws.send(Message::text("h1")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("h1"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn h2_without_extended_connect_falls_back_to_http1_over_tls() {
    let pki = Pki::new(&["localhost"]);
    let serve = Serve {
        h2: true,
        connect_protocol: false,
    };
    let (addr, accepted) = echo_server(serve, Some(pki.acceptor(&[b"h2", b"http/1.1"]))).await;
    let (mut ws, res) = Builder::new()
        .root_certificates(pki.roots())
        .http2(true)
        .connect(&format!("wss://localhost:{}/", addr.port()))
        .await
        .unwrap();
    assert_eq!(res.status(), 101, "HTTP/1.1 after all");
    ws.send(Message::text("fallback")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("fallback"));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "a second connection for HTTP/1.1"
    );
}
