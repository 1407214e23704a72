//! `tower_ws::serve` itself: deadlines for silent, slow and stalled
//! connections (HTTP/1.1 heads and the HTTP/2 preface), the 426 on the
//! WebSocket path, and composition with axum, tower-http and
//! `WebSocketLayer`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use support::http2::{self, open_ws, start};
use support::{RawClient, echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tower_ws::{WebSocketLayer, WebSocketService};

/// Sends `bytes`, then waits for the server to close; how long it took.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Duration {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let start = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await {
            Err(_) => panic!("{bytes:?}: still open after 5 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// A plain HTTP/1.1 GET; the whole response.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn silent_slow_and_stalled_connections_are_cut_off() {
    let timeout = Duration::from_millis(400);
    let server = start(WebSocketService::new(echo), |s| {
        s.header_read_timeout(timeout)
    })
    .await;
    let cases: [(&str, &[u8]); 4] = [
        ("silent", b""),
        // hyper-util's auto builder waits on such a prefix forever.
        ("stalled HTTP/2 preface", b"PRI * HTTP/2.0\r\n"),
        ("slow HTTP/1.1 head", b"GET / HTTP/1.1\r\nHost: a\r\n"),
        (
            "slow upgrade",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n",
        ),
    ];
    for (name, bytes) in cases {
        let took = closed_after(server.addr, bytes).await;
        assert!(
            took < Duration::from_secs(2),
            "{name}: closed after {took:?}"
        );
    }
    // Nothing of it disturbed the server.
    let (mut raw, head) = RawClient::connect(server.addr, "").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(true, 0, 0x1, b"fine").await;
    assert_eq!(raw.recv().await.unwrap().payload, b"fine");
}

#[tokio::test]
async fn a_plain_request_for_the_websocket_path_gets_426_with_a_hint() {
    let server = start(WebSocketService::new(echo).path("/ws"), |s| s).await;
    let response = http_get(server.addr, "/ws").await;
    assert!(response.starts_with("HTTP/1.1 426"), "{response}");
    assert!(
        response
            .to_lowercase()
            .contains("sec-websocket-version: 13"),
        "{response}"
    );
    assert!(response.contains("WebSocket endpoint"), "{response}");
    // Other paths still reach the inner service.
    let response = http_get(server.addr, "/").await;
    assert!(
        response.ends_with("hello from the inner service"),
        "{response}"
    );
}

async fn spawn_serve<S>(app: S) -> SocketAddr
where
    tower_ws::server::Serve<S>: std::future::IntoFuture<Output = std::io::Result<()>>,
    <tower_ws::server::Serve<S> as std::future::IntoFuture>::IntoFuture: Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(std::future::IntoFuture::into_future(tower_ws::serve(
        listener, app,
    )));
    addr
}

#[tokio::test]
async fn an_axum_router_with_tower_http_layers_runs_under_serve() {
    let app = Router::new()
        .route("/", get(|| async { "axum under tower_ws::serve" }))
        .route_service("/ws", WebSocketService::new(echo))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            http::header::SERVER,
            http::HeaderValue::from_static("tower-ws"),
        ));
    let addr = spawn_serve(app).await;

    let response = http_get(addr, "/").await;
    assert!(
        response.to_lowercase().contains("server: tower-ws"),
        "{response}"
    );
    assert!(
        response.ends_with("axum under tower_ws::serve"),
        "{response}"
    );

    // The WebSocket route over HTTP/1.1 and over HTTP/2.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws.send(Message::text("through axum")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.into_text().unwrap().as_str(), "through axum");
    let h2 = http2::connect(addr).await;
    let mut ws = open_ws(&mut h2.clone(), "/ws").await;
    ws.assert_echo("through axum over HTTP/2").await;
}

#[tokio::test]
async fn a_websocket_layer_around_a_service_runs_under_serve() {
    let app = tower::ServiceBuilder::new()
        .layer(WebSocketLayer::from(
            WebSocketService::new(echo).path("/ws"),
        ))
        .service(support::hello());
    let addr = spawn_serve(app).await;
    let h2 = http2::connect(addr).await;
    open_ws(&mut h2.clone(), "/ws")
        .await
        .assert_echo("layered")
        .await;
    let (mut raw, head) =
        RawClient::connect_with(addr, &support::upgrade_request("/ws", ""), &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    raw.send(true, 0, 0x1, b"layered, HTTP/1.1").await;
    assert_eq!(raw.recv().await.unwrap().payload, b"layered, HTTP/1.1");
}
