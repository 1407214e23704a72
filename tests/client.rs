//! The client over real TCP: against our own server, and against scripted
//! servers that break the handshake or the protocol (each must give a clear
//! error, never a hang).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_ws::client::{self, Builder};
use tower_ws::extensions::deflate::DeflateOffer;
use tower_ws::handshake::accept_key;
use tower_ws::handshake::client::HandshakeError;
use tower_ws::{CloseCode, Config, DeflateConfig, Message, WebSocketService};

async fn echo_server() -> SocketAddr {
    support::serve(WebSocketService::new(support::echo)).await
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

#[tokio::test]
async fn echoes_text_binary_large_and_fragmented_messages() {
    let addr = echo_server().await;
    let (mut ws, res) = client::connect(&url(addr, "/echo?x=1")).await.unwrap();
    assert_eq!(res.status(), 101);
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let msgs = [
        Message::text("hello"),
        Message::text(""),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("ünïcødé ✓ 🎉".repeat(1000)),
        Message::binary(big),
    ];
    for msg in msgs {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), msg);
    }
    ws.close(CloseCode::NORMAL, "done").await.unwrap();
    assert!(ws.next().await.is_none());
}

#[tokio::test]
async fn fragments_what_it_sends_and_reassembles_what_it_receives() {
    let server =
        WebSocketService::new(support::echo).config(Config::default().out_frame_size(1000));
    let addr = support::serve(server).await;
    let (mut ws, _) = Builder::new()
        .config(Config::default().out_frame_size(333))
        .deflate(None)
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    let text = "fragmented ".repeat(500);
    ws.send(Message::text(text.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
}

#[tokio::test]
async fn pings_are_answered_and_pongs_delivered() {
    let addr = echo_server().await;
    let (mut ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    ws.send(Message::ping("are you there")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::pong("are you there")
    );
}

#[tokio::test]
async fn close_codes_travel_both_ways() {
    // Client-initiated: the server echoes the code.
    let addr = echo_server().await;
    let (mut ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    ws.send(Message::close(4000, "custom")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::close(4000, ""));
    assert!(ws.next().await.is_none());

    // Server-initiated: the client sees the code and reason, and replies.
    let server = WebSocketService::new(
        |mut ws: tower_ws::UpgradedWebSocket, _: tower_ws::RequestHead| async move {
            ws.close(CloseCode::AWAY, "going away").await.unwrap();
        },
    );
    let addr = support::serve(server).await;
    let (mut ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::close(CloseCode::AWAY, "going away")
    );
    assert!(ws.next().await.is_none());
}

#[tokio::test]
async fn subprotocol_and_headers_reach_the_server() {
    let server = WebSocketService::new(
        |mut ws: tower_ws::UpgradedWebSocket, head: tower_ws::RequestHead| async move {
            let h = &head.headers;
            let seen = format!(
                "{} {} {}",
                h["authorization"].to_str().unwrap(),
                h["origin"].to_str().unwrap(),
                head.uri
            );
            ws.send(Message::text(seen)).await.unwrap();
        },
    )
    .protocols(["v2", "v1"]);
    let addr = support::serve(server).await;
    let (mut ws, res) = Builder::new()
        .protocols(["v1", "v2"])
        .header("Authorization", "Bearer t0k3n")
        .origin("https://app.example")
        .connect(&url(addr, "/room/7?user=ann"))
        .await
        .unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "v2");
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("Bearer t0k3n https://app.example /room/7?user=ann")
    );
}

#[tokio::test]
async fn permessage_deflate_with_our_server_for_every_client_offer() {
    let server = WebSocketService::new(support::echo).config(Config::default().deflate(Some(
        DeflateConfig::default().threshold(0).max_memory(1 << 20),
    )));
    let addr = support::serve(server).await;
    let text = "compress me, compress me, compress me! ".repeat(3000);
    for snct in [false, true] {
        for cnct in [false, true] {
            for server_bits in [None, Some(8), Some(11)] {
                for client_bits in [None, Some(8), Some(15)] {
                    let offer = DeflateOffer::default()
                        .threshold(0)
                        .server_no_context_takeover(snct)
                        .client_no_context_takeover(cnct)
                        .server_max_window_bits(server_bits)
                        .client_max_window_bits(client_bits);
                    let header = offer.header_value();
                    let (mut ws, res) = Builder::new()
                        .deflate(Some(offer))
                        .connect(&url(addr, "/"))
                        .await
                        .unwrap();
                    let agreed = res.headers()["sec-websocket-extensions"].to_str().unwrap();
                    assert!(agreed.starts_with("permessage-deflate"), "{header}");
                    for _ in 0..3 {
                        ws.send(Message::text(text.clone())).await.unwrap();
                        assert_eq!(
                            ws.next().await.unwrap().unwrap(),
                            Message::text(text.clone()),
                            "{header}"
                        );
                    }
                    ws.close(CloseCode::NORMAL, "").await.unwrap();
                }
            }
        }
    }
}

#[tokio::test]
async fn connect_on_runs_the_handshake_over_any_stream() {
    let (client_io, server_io) = tokio::io::duplex(64 << 10);
    let service =
        hyper_util::service::TowerToHyperService::new(WebSocketService::new(support::echo));
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server_io), service)
            .with_upgrades(),
    );
    let request = http::Request::get("ws://in-memory.example/duplex")
        .header("cookie", "session=1")
        .body(())
        .unwrap();
    let (mut ws, _) = client::connect_on(client_io, request).await.unwrap();
    ws.send(Message::text("through a duplex")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through a duplex")
    );
}

#[tokio::test]
async fn split_halves_work_as_on_the_server() {
    let addr = echo_server().await;
    let (ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    let (mut rx, mut tx) = ws.split();
    let writer = tokio::spawn(async move {
        for i in 0..100 {
            tx.send(Message::text(format!("{i}"))).await.unwrap();
        }
        tx
    });
    for i in 0..100 {
        assert_eq!(
            rx.next().await.unwrap().unwrap(),
            Message::text(format!("{i}"))
        );
    }
    writer.await.unwrap().close(1000, "").await.unwrap();
}

// ---------------------------------------------------------------------------
// Servers that break the rules
// ---------------------------------------------------------------------------

/// A server that reads one request head and answers with `respond(accept)`,
/// where `accept` is the right `Sec-WebSocket-Accept` for the request; then
/// it keeps the connection open for a while.
async fn scripted(respond: impl Fn(&str) -> Vec<u8> + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let head = read_head(&mut tcp).await;
            let key = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim())
                })
                .unwrap_or("");
            let accept = accept_key(key.as_bytes());
            let _ = tcp.write_all(&respond(accept.to_str().unwrap())).await;
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut sink)).await
                {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn switching(accept: &str, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Connects (with a handshake timeout these errors come well before); the
/// error, and how long it took.
async fn failure(addr: SocketAddr) -> (tower_ws::Error, Duration) {
    failure_within(addr, Duration::from_secs(10)).await
}

async fn failure_within(addr: SocketAddr, limit: Duration) -> (tower_ws::Error, Duration) {
    let start = Instant::now();
    let err = Builder::new()
        .handshake_timeout(limit)
        .connect(&url(addr, "/"))
        .await
        .expect_err("the handshake must fail");
    (err, start.elapsed())
}

#[tokio::test]
async fn a_200_instead_of_101_is_a_handshake_error_naming_the_status() {
    let addr = scripted(|_| b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
    let (err, took) = failure(addr).await;
    assert!(err.is_handshake(), "{err}");
    assert_eq!(
        err.handshake_error(),
        Some(HandshakeError::Status(http::StatusCode::OK))
    );
    assert!(
        err.to_string()
            .contains("answered 200 OK instead of accepting"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "no waiting: {took:?}");
}

#[tokio::test]
async fn a_wrong_accept_key_is_refused() {
    let addr = scripted(|_| switching("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "")).await;
    let (err, _) = failure(addr).await;
    assert_eq!(err.handshake_error(), Some(HandshakeError::WrongAccept));
    assert!(err.to_string().contains("Sec-WebSocket-Accept"), "{err}");
}

#[tokio::test]
async fn an_unoffered_extension_parameter_is_refused() {
    let addr = scripted(|accept| {
        switching(
            accept,
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n",
        )
    })
    .await;
    let err = Builder::new()
        .deflate(Some(
            DeflateOffer::default().offer_client_max_window_bits(false),
        ))
        .connect(&url(addr, "/"))
        .await
        .unwrap_err();
    assert!(matches!(
        err.handshake_error(),
        Some(HandshakeError::InvalidDeflateResponse(_))
    ));
    assert!(err.to_string().contains("did not offer"), "{err}");
    // An extension nobody offered at all.
    let addr = scripted(|accept| {
        switching(
            accept,
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
        )
    })
    .await;
    let (err, _) = failure(addr).await;
    assert_eq!(
        err.handshake_error(),
        Some(HandshakeError::UnofferedExtension)
    );
}

#[tokio::test]
async fn a_stall_mid_handshake_times_out() {
    // Half a response, then nothing.
    let addr = scripted(|_| b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: web".to_vec()).await;
    let (err, took) = failure_within(addr, Duration::from_millis(500)).await;
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("handshake timeout"), "{err}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_masked_frame_from_the_server_fails_with_1002() {
    let addr = scripted(|accept| {
        let mut r = switching(accept, "");
        // A masked text frame "Hello" (RFC 6455 §5.7), right behind the 101.
        r.extend_from_slice(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        r
    })
    .await;
    let (mut ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    let err = ws.next().await.unwrap().unwrap_err();
    assert!(err.is_protocol());
    assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL));
    assert!(err.to_string().contains("masked frame"), "{err}");
}

#[tokio::test]
async fn bytes_right_behind_the_101_are_not_lost() {
    let addr = scripted(|accept| {
        let mut r = switching(accept, "");
        r.extend_from_slice(b"\x81\x05Hello\x82\x02\x01\x02\x89\x00");
        r
    })
    .await;
    let (mut ws, _) = client::connect(&url(addr, "/")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("Hello"));
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1, 2])
    );
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::ping(""));
}

#[tokio::test]
async fn the_client_waits_for_the_server_to_close_tcp_then_gives_up() {
    // The server answers the close frame but never closes TCP: the client
    // waits the close timeout for it (RFC 6455 §7.1.1), then drops it.
    let addr = scripted(|accept| {
        let mut r = switching(accept, "");
        r.extend_from_slice(b"\x88\x02\x03\xe8");
        r
    })
    .await;
    let (mut ws, _) = Builder::new()
        .config(Config::default().close_timeout(Duration::from_millis(300)))
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::close(1000, ""));
    let start = Instant::now();
    assert!(ws.next().await.is_none());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn the_client_closes_as_soon_as_the_server_closes_tcp() {
    let addr = echo_server().await;
    let (mut ws, _) = Builder::new()
        .config(Config::default().close_timeout(Duration::from_secs(5)))
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    let start = Instant::now();
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn unusable_urls_and_refused_connections_say_so() {
    for bad in ["http://127.0.0.1/", "ws://", "not a url"] {
        let err = client::connect(bad).await.unwrap_err();
        assert!(err.is_invalid_request(), "{bad}: {err}");
    }
    let err = Builder::new()
        .header("bad header", "x")
        .connect("ws://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(err.is_invalid_request(), "{err}");
    // Nothing listens on a port we just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = client::connect(&format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(err.is_io(), "{err}");
}

#[tokio::test]
async fn the_inner_service_route_is_not_a_websocket() {
    // Our server passes non-upgrade paths to its inner service; with a path
    // filter, a WebSocket request elsewhere gets a plain HTTP answer.
    let server = WebSocketService::new(support::echo).path("/ws");
    let addr = support::serve(server).await;
    let err = client::connect(&url(addr, "/elsewhere")).await.unwrap_err();
    assert!(
        matches!(err.handshake_error(), Some(HandshakeError::Status(_))),
        "{err}"
    );
    assert!(client::connect(&url(addr, "/ws")).await.is_ok());
}

/// A message in many frames under a memory budget smaller than the
/// message's growing buffers: it is never admitted whole (only single
/// large frames are), so once the budget is exhausted its reader is paused
/// with it unfinished. That once locked the server up for good (every
/// handshake 503, every reader paused); past the grace period the
/// connection holding that input is now closed with 1013, and the server
/// recovers.
#[tokio::test]
async fn a_fragmented_message_cannot_lock_up_a_server_with_a_memory_budget() {
    let service = WebSocketService::new(support::echo).memory_budget(
        tower_ws::MemoryBudget::new(1 << 20).grace_period(Duration::from_millis(500)),
    );
    let stats = service.clone();
    let addr = support::serve(service).await;
    let (mut ws, _) = Builder::new()
        .deflate(None)
        .config(Config::default().out_frame_size(16 << 10))
        .connect(&url(addr, "/"))
        .await
        .unwrap();
    ws.send(Message::binary(vec![1u8; 600 << 10]))
        .await
        .unwrap();
    // The sender is closed for the budget...
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the sender is closed within 10 s");
    assert_eq!(closed, Some(CloseCode::TRY_AGAIN_LATER));
    assert!(stats.stats().budget_closes >= 1);
    // ...and the server takes WebSockets again.
    let start = Instant::now();
    loop {
        match client::connect(&url(addr, "/")).await {
            Ok((mut other, _)) => {
                other.send(Message::text("after")).await.unwrap();
                let echoed = other.next().await.unwrap().unwrap();
                assert_eq!(echoed, Message::text("after"));
                break;
            }
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still refused 10 s later: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
