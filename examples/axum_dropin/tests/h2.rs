//! The `/echo` route over HTTP/2: an extended CONNECT (RFC 8441 §4) from
//! hyper's HTTP/2 client, then WebSocket frames over the stream.
//! Both builds answer it: axum's and `tower_ws::axum`'s `WebSocketUpgrade`.

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::Role;

#[tokio::test]
async fn echo_route_over_http2_extended_connect() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, axum_dropin::app()).await });

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send_request, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, String>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("http://{addr}/echo"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .body(String::new())
        .unwrap();
    let mut response = send_request.send_request(request).await.unwrap();

    assert_eq!(response.status(), 200);
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
    ws.send(TMessage::text("over h2")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("over h2"));
    ws.send(TMessage::binary(vec![7u8; 100_000])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        TMessage::binary(vec![7u8; 100_000])
    );
}
